#!/usr/bin/python3
"""Black-box tests of the HTTP core (server/http.c, routes, errors, CORS,
limits, /health, /metrics, discovery, HTTP/2, TLS, graceful shutdown)."""

import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import unittest

from axontest import AxonTestCase, Server, main, free_port

CURL = shutil.which("curl")
OPENSSL = shutil.which("openssl")


class Discovery(AxonTestCase):
    server_config = {"well_known_client": "https://matrix.example.org",
                     "well_known_server": "matrix.example.org:443"}

    def test_versions(self):
        r = self.req("GET", "/_matrix/client/versions")
        self.assertEqual(r.status, 200)
        self.assertIn("application/json", r.headers["content-type"])
        vs = r.json["versions"]
        self.assertTrue(all(re.fullmatch(r"(r\d+\.\d+\.\d+|v\d+\.\d+)", v) for v in vs), vs)
        self.assertIsInstance(r.json["unstable_features"], dict)
        self.assertSpec("GET", "/_matrix/client/versions", r)

    def test_versions_head(self):
        r = self.req("HEAD", "/_matrix/client/versions")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.raw, b"")

    def test_well_known(self):
        r = self.req("GET", "/.well-known/matrix/client")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json, {"m.homeserver": {"base_url": "https://matrix.example.org"}})
        self.assertSpec("GET", "/.well-known/matrix/client", r)
        self.assertEqual(r.headers.get("access-control-allow-origin"), "*")
        r = self.req("GET", "/.well-known/matrix/server")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json, {"m.server": "matrix.example.org:443"})

    def test_federation_version(self):
        r = self.req("GET", "/_matrix/federation/v1/version")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json["server"]["name"], "axon")
        self.assertSpec("GET", "/_matrix/federation/v1/version", r)


class WellKnownUnset(AxonTestCase):
    def test_well_known_unset_is_404(self):
        for path in ("/.well-known/matrix/client", "/.well-known/matrix/server"):
            self.assertError(self.req("GET", path), 404, "M_NOT_FOUND")


class Errors(AxonTestCase):
    server_config = {"max_request_size": "4096", "max_upload_size": "8192"}

    def test_unknown_endpoints(self):
        for path in ("/_matrix/client/v3/no/such/thing", "/_matrix/federation/v1/nothing",
                     "/_matrix/key/v2/nothing", "/_matrix/media/v3/nothing", "/", "/favicon.ico",
                     "/_matrix/client/versions/extra", "/_matrix/client//versions"):
            self.assertError(self.req("GET", path), 404, "M_UNRECOGNIZED")

    def test_wrong_method(self):
        r = self.req("POST", "/_matrix/client/versions", body={})
        self.assertError(r, 405, "M_UNRECOGNIZED")
        self.assertEqual(r.headers.get("allow"), "GET")
        self.assertError(self.req("DELETE", "/health"), 405, "M_UNRECOGNIZED")

    def test_cors_everywhere(self):
        for method, path in (("GET", "/_matrix/client/versions"), ("GET", "/nope"), ("PUT", "/health")):
            r = self.req(method, path)
            self.assertEqual(r.headers.get("access-control-allow-origin"), "*", (method, path))
            self.assertIn("Authorization", r.headers.get("access-control-allow-headers", ""))
            self.assertIn("PUT", r.headers.get("access-control-allow-methods", ""))

    def test_options_preflight_any_path(self):
        for path in ("/_matrix/client/v3/login", "/_matrix/client/v3/rooms/!x:y/send/m.room.message/1", "/anything"):
            r = self.req("OPTIONS", path, headers={"Origin": "https://app.element.io",
                                                   "Access-Control-Request-Method": "POST"})
            self.assertIn(r.status, (200, 204))
            self.assertEqual(r.headers.get("access-control-allow-origin"), "*")
            self.assertIn("POST", r.headers.get("access-control-allow-methods", ""))

    def test_body_over_max_request_size(self):
        # over max_request_size but under the upload limit: rejected by the route guard
        r = self.req("POST", "/_matrix/client/versions", raw=b"{" + b" " * 5000 + b"}",
                     headers={"Content-Type": "application/json"})
        self.assertError(r, 413, "M_TOO_LARGE")
        # over every limit: rejected by h2o before any handler, still Matrix JSON
        r = self.req("POST", "/_matrix/client/versions", raw=b"x" * 20000,
                     headers={"Content-Type": "application/json"})
        self.assertError(r, 413, "M_TOO_LARGE")

    def test_chunked_body_over_limit(self):
        s = socket.create_connection(("127.0.0.1", self.server.port))
        s.sendall(b"POST /_matrix/client/versions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 4096
        try:
            for _ in range(8):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server may close as soon as it has answered
        data = b""
        s.settimeout(10)
        try:
            while b"}" not in data:
                d = s.recv(4096)
                if not d:
                    break
                data += d
        except OSError:
            pass
        s.close()
        self.assertIn(b" 413 ", data.split(b"\r\n")[0])
        self.assertIn(b"M_TOO_LARGE", data)

    def test_r0_alias(self):
        # r0 is served as v3: an unknown r0 path is still M_UNRECOGNIZED, not a crash
        self.assertError(self.req("GET", "/_matrix/client/r0/no/such"), 404, "M_UNRECOGNIZED")

    def test_bad_percent_encoding_in_path(self):
        r = self.req("GET", "/_matrix/client/v3/%zz")
        self.assertError(r, 404, "M_UNRECOGNIZED")

    def test_keep_alive(self):
        c = self.server.connect()
        try:
            for _ in range(5):
                r = self.server.request("GET", "/_matrix/client/versions", conn=c)
                self.assertEqual(r.status, 200)
        finally:
            c.close()


class Operations(AxonTestCase):
    def test_health(self):
        r = self.req("GET", "/health")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.raw.strip(), b"ok")

    def test_metrics(self):
        for _ in range(3):
            self.req("GET", "/_matrix/client/versions")
        self.req("GET", "/nope")
        r = self.req("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertIn("text/plain", r.headers["content-type"])
        text = r.raw.decode()
        families = set(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
        for name, kind in (("axon_http_requests_total", "counter"),
                           ("axon_http_request_duration_seconds", "histogram"),
                           ("axon_http_requests_in_flight", "gauge"),
                           ("axon_writer_batch_size", "histogram"),
                           ("axon_writer_commit_seconds", "histogram"),
                           ("axon_db_map_size_bytes", "gauge"),
                           ("axon_db_used_bytes", "gauge"),
                           ("process_resident_memory_bytes", "gauge")):
            self.assertIn((name, kind), families)
        m = re.search(r'^axon_http_requests_total\{route="/_matrix/client/versions",method="GET",status="200"\} (\d+)$',
                      text, re.M)
        self.assertIsNotNone(m, text[:2000])
        self.assertGreaterEqual(int(m.group(1)), 3)
        self.assertRegex(text, r'axon_http_requests_total\{route="unmatched",method="",status="404"\} \d+')
        rss = int(re.search(r"^process_resident_memory_bytes (\d+)$", text, re.M).group(1))
        self.assertGreater(rss, 0)
        # every sample line is well-formed Prometheus text
        for line in text.splitlines():
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^}]*\})? [0-9.e+-]+$')

    def test_access_log_has_route_not_raw_path(self):
        self.req("GET", "/_matrix/client/versions?access_token=secret-token-value")
        time.sleep(0.5)  # access log is flushed every 200 ms
        log = self.server.log_text()
        self.assertIn("GET /_matrix/client/versions 200", log)
        self.assertNotIn("secret-token-value", log)


class Http2AndTls(unittest.TestCase):
    @unittest.skipUnless(CURL, "curl is not installed")
    def test_h2c_prior_knowledge(self):
        s = Server().start()
        try:
            out = subprocess.run([CURL, "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                                  s.base + "/_matrix/client/versions"], capture_output=True, text=True, timeout=30)
            self.assertEqual(out.stdout, "2 200")
        finally:
            s.stop()
            s.cleanup()

    @unittest.skipUnless(CURL and OPENSSL, "curl and openssl are needed")
    def test_tls_listener_http2_and_http1(self):
        tmp = Server().tmp
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                        "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True)
        tls_port = free_port()
        s = Server(config={"tls_listen": "127.0.0.1:%d" % tls_port, "tls_certificate": cert,
                           "tls_private_key": key}).start()
        try:
            url = "https://127.0.0.1:%d/_matrix/key/v2/server" % tls_port
            for flag, want in (("--http2", "2"), ("--http1.1", "1.1")):
                out = subprocess.run([CURL, "-s", "--cacert", cert, flag, "-o", "/dev/null",
                                      "-w", "%{http_version} %{http_code}", url],
                                     capture_output=True, text=True, timeout=30)
                self.assertEqual(out.stdout, want + " 200", out.stderr)
        finally:
            s.stop()
            s.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)


class StartUp(unittest.TestCase):
    def test_metrics_scraped_while_threads_start(self):
        """A scrape that reaches the first HTTP thread before the others exist (Prometheus does not wait for a restart
        to finish) read their counters before they were allocated and crashed the server, about every other start."""
        for _ in range(6):
            s = Server(config={"threads": "4"})
            try:
                s.start(wait=False)
                deadline = time.time() + 30
                answered = 0
                while answered < 20 and time.time() < deadline and s.proc.poll() is None:
                    try:
                        with socket.create_connection(("127.0.0.1", s.port), timeout=5) as c:
                            c.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                            if c.recv(64).startswith(b"HTTP/1.1 200"):
                                answered += 1
                    except OSError:
                        time.sleep(0.001)  # not listening yet
                self.assertIsNone(s.proc.poll(), "axon died during start-up:\n" + s.log_text())
                self.assertEqual(answered, 20)
                s.stop()  # exit 0, no sanitizer report
            finally:
                s.cleanup()


class Shutdown(unittest.TestCase):
    def test_sigterm_finishes_in_flight_and_exits_zero(self):
        s = Server().start()
        try:
            # an idle keep-alive connection must not hold the shutdown
            idle = s.connect()
            s.request("GET", "/_matrix/client/versions", conn=idle)
            results = []

            def hammer():
                c = s.connect()
                try:
                    while True:
                        results.append(s.request("GET", "/_matrix/client/versions", conn=c).status)
                except (OSError, ConnectionError, Exception):
                    pass
                finally:
                    c.close()

            threads = [threading.Thread(target=hammer) for _ in range(4)]
            for t in threads:
                t.start()
            time.sleep(0.5)
            t0 = time.time()
            rc = s.stop()  # asserts exit 0 and no sanitizer report
            self.assertEqual(rc, 0)
            self.assertLess(time.time() - t0, 8)
            for t in threads:
                t.join(10)
            self.assertTrue(results)
            self.assertTrue(all(code == 200 for code in results), set(results))
            self.assertIn("shutting down gracefully", s.log_text())
            idle.close()
        finally:
            s.cleanup()

    def test_sigint_too(self):
        s = Server().start()
        try:
            self.assertEqual(s.stop(sig=signal.SIGINT), 0)
        finally:
            s.cleanup()


if __name__ == "__main__":
    main()
