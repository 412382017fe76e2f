#!/usr/bin/python3
"""The axon command line and configuration, black-box: every bad config
stops start-up with one line naming the key or resource and exit status 2,
and leaves the data dir untouched; the AXON_* variables are a contract."""

import os
import socket
import subprocess
import tempfile
import shutil
import unittest

from axontest import AXON_BIN, Server, main, free_port


def run(args, env=None, cwd=None, timeout=30):
    e = {k: v for k, v in os.environ.items() if not k.startswith("AXON_")}
    e.update(env or {})
    return subprocess.run([AXON_BIN] + args, capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout)


class CommandLine(unittest.TestCase):
    def test_version(self):
        r = run(["--version"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^axon \d+\.\d+\.\d+")

    def test_help(self):
        r = run(["--help"])
        self.assertEqual(r.returncode, 0)
        self.assertIn("generate-config", r.stdout)

    def test_unknown_flag_and_command(self):
        for args in (["--bogus"], ["serve", "--bogus"], ["frobnicate"], ["generate-config", "extra"]):
            r = run(args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn("usage:", r.stderr)

    def test_generate_config_is_a_working_config(self):
        r = run(["generate-config"])
        self.assertEqual(r.returncode, 0)
        for key in ("server_name", "listen", "tls_listen", "data_dir", "max_request_size", "allow_registration",
                    "registration_token", "log_level", "log_format", "well_known_client", "well_known_server",
                    "trusted_key_servers", "federation_enabled", "federation_ca_file", "federation_verify_tls",
                    "outbound_allow_private", "default_room_version", "sync", "threads",
                    "max_concurrent_requests", "max_upload_size"):
            self.assertRegex(r.stdout, r"(?m)^#?%s = " % key)
            self.assertIn("AXON_" + key.upper(), r.stdout)
        s = Server(use_config_file=False)
        try:
            path = os.path.join(s.tmp, "sample.conf")
            with open(path, "w") as f:
                f.write(r.stdout)
            s.env.update({"AXON_LISTEN": "127.0.0.1:%d" % s.port, "AXON_DATA_DIR": s.data_dir,
                          "AXON_SYNC": "false"})
            s.start(args=["-c", path])
            doc = s.request("GET", "/_matrix/key/v2/server").json
            self.assertEqual(doc["server_name"], "example.org")
            s.stop()
        finally:
            s.cleanup()


class BadConfig(unittest.TestCase):
    """Each case: exit 2, one line on stderr naming the key, nothing written."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="axon-cfg-")
        self.data = os.path.join(self.tmp, "data")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def start_with(self, text, env=None):
        path = os.path.join(self.tmp, "axon.conf")
        with open(path, "w") as f:
            f.write(text)
        return run(["serve", "-c", path], env=env)

    def base(self, port=None):
        return "server_name = example.org\nlisten = 127.0.0.1:%d\ndata_dir = %s\n" % (port or free_port(), self.data)

    def assertRejected(self, r, fragment):
        self.assertEqual(r.returncode, 2, r.stderr)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertIn(fragment, lines[0])
        self.assertFalse(os.path.exists(self.data), "the data dir was touched")

    def test_unknown_key(self):
        self.assertRejected(self.start_with(self.base() + "colour = blue\n"), "unknown key 'colour'")

    def test_wrong_types(self):
        self.assertRejected(self.start_with(self.base() + "threads = two\n"), "threads")
        self.assertRejected(self.start_with(self.base() + "sync = maybe\n"), "sync")
        self.assertRejected(self.start_with(self.base() + "max_request_size = huge\n"), "max_request_size")

    def test_missing_server_name(self):
        r = self.start_with("listen = 127.0.0.1:%d\ndata_dir = %s\n" % (free_port(), self.data))
        self.assertRejected(r, "server_name")

    def test_unreadable_certificate(self):
        text = self.base() + "tls_listen = 127.0.0.1:%d\ntls_certificate = %s/none.pem\ntls_private_key = %s/none.key\n" % (
            free_port(), self.tmp, self.tmp)
        self.assertRejected(self.start_with(text), "tls_certificate")

    def test_garbage_certificate(self):
        cert = os.path.join(self.tmp, "cert.pem")
        with open(cert, "w") as f:
            f.write("not a certificate\n")
        text = self.base() + "tls_listen = 127.0.0.1:%d\ntls_certificate = %s\ntls_private_key = %s\n" % (
            free_port(), cert, cert)
        self.assertRejected(self.start_with(text), "tls_certificate")

    def test_data_dir_not_writable(self):
        blocker = os.path.join(self.tmp, "file")
        with open(blocker, "w") as f:
            f.write("x")
        text = "server_name = example.org\nlisten = 127.0.0.1:%d\ndata_dir = %s/sub\n" % (free_port(), blocker)
        r = self.start_with(text)
        self.assertEqual(r.returncode, 2)
        self.assertIn("data_dir", r.stderr)

    def test_port_taken(self):
        port = free_port()
        holder = socket.socket()
        holder.bind(("127.0.0.1", port))
        holder.listen(1)
        try:
            self.assertRejected(self.start_with(self.base(port)), "port %d" % port)
        finally:
            holder.close()

    def test_port_taken_by_another_axon(self):
        s = Server().start()
        try:
            self.assertRejected(self.start_with(self.base(s.port)), "port %d" % s.port)
        finally:
            s.stop()
            s.cleanup()

    def test_bad_environment_value(self):
        self.assertRejected(self.start_with(self.base(), env={"AXON_THREADS": "lots"}), "AXON_THREADS")

    def test_missing_config_file(self):
        r = run(["serve", "-c", os.path.join(self.tmp, "nope.conf")])
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot read", r.stderr)


class Environment(unittest.TestCase):
    def test_env_only_contract(self):
        s = Server(use_config_file=False)
        try:
            s.env.update({"AXON_SERVER_NAME": "env.example", "AXON_LISTEN": "127.0.0.1:%d" % s.port,
                          "AXON_DATA_DIR": s.data_dir, "AXON_ALLOW_REGISTRATION": "true",
                          "AXON_MAX_REQUEST_SIZE": "2048", "AXON_MAX_UPLOAD_SIZE": "4096",
                          "AXON_OUTBOUND_ALLOW_PRIVATE": "true", "AXON_SYNC": "false"})
            s.start()
            self.assertEqual(s.request("GET", "/_matrix/key/v2/server").json["server_name"], "env.example")
            self.assertTrue(os.path.exists(os.path.join(s.data_dir, "signing.key")))
            r = s.request("POST", "/_matrix/client/versions", raw=b"{" + b" " * 3000 + b"}")
            self.assertEqual((r.status, r.errcode), (413, "M_TOO_LARGE"))
            s.stop()
        finally:
            s.cleanup()

    def test_embedded_default(self):
        s = Server(use_config_file=False)
        try:
            # the embedded default listens on 8008; the port is the one thing moved
            s.env.update({"AXON_LISTEN": "127.0.0.1:%d" % s.port, "AXON_SYNC": "false"})
            s.start()
            self.assertEqual(s.request("GET", "/_matrix/key/v2/server").json["server_name"], "localhost:8008")
            self.assertTrue(os.path.exists(os.path.join(s.tmp, "axon-data", "signing.key")))
            self.assertIn("registration is open", s.log_text())
            # open to clients on this machine only: a local proxy's remote client is refused
            body = {"username": "far", "password": "pw-far-away", "auth": {"type": "m.login.dummy"}}
            r = s.request("POST", "/_matrix/client/v3/register", body,
                          headers={"X-Forwarded-For": "203.0.113.9"})
            self.assertEqual((r.status, r.errcode), (403, "M_FORBIDDEN"))
            r = s.request("POST", "/_matrix/client/v3/register", dict(body, username="near"))
            self.assertEqual(r.status, 200, r.json)
            r = s.request("POST", "/_matrix/client/v3/register", dict(body, username="far"))
            self.assertEqual(r.status, 200, r.json)  # 'far' was not taken by the refused attempt
            s.stop()
        finally:
            s.cleanup()


if __name__ == "__main__":
    main()
