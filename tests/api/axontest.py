"""axontest -- the harness for axon's black-box tests.

Each test module starts the real `axon` binary on 127.0.0.1 with a port
picked free, a fresh data dir and its own config, talks to it over HTTP, and
stops it by PID at the end.  Stopping checks that the server exited 0 and
that no sanitizer (ASan, LSan, UBSan) reported anything.

Results are printed as TAP so meson and tests/run can count them.

Run with Debian's /usr/bin/python3; needs only the standard library, plus
python3-yaml and python3-jsonschema for spec validation (skipped with a
message when ../shared is absent).
"""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import unittest

SOURCE_ROOT = os.environ.get("AX_SOURCE_ROOT",
                             os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
AXON_BIN = os.path.abspath(os.environ.get("AXON_BIN", os.path.join(SOURCE_ROOT, "build", "axon")))
SHARED = os.path.abspath(os.path.join(SOURCE_ROOT, "..", "shared"))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- spec validation ---------------------------------------------------------

_spec_validate = None
SPEC_SKIP_REASON = None
try:
    if os.path.isdir(os.path.join(SHARED, "tools")):
        sys.path.insert(0, os.path.join(SHARED, "tools"))
        from spec_check import validate as _spec_validate  # noqa: E402
    else:
        SPEC_SKIP_REASON = "../shared is absent: responses are not validated against the spec's schemas"
except ImportError as e:  # python3-yaml or python3-jsonschema missing
    SPEC_SKIP_REASON = "spec_check unavailable (%s)" % e


def spec_errors(method, path, status, body):
    """Errors of 'body' against the spec's schema, [] when valid or when validation is unavailable."""
    if _spec_validate is None:
        return []
    return _spec_validate(method, path, status, body)


# ---- the server under test ------------------------------------------------------

class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = {k.lower(): v for k, v in headers}
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    @property
    def errcode(self):
        return self.json.get("errcode") if isinstance(self.json, dict) else None

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.raw[:300])


class Server:
    """One axon process.  'config' is written to a file; 'env' adds AXON_* variables."""

    def __init__(self, config=None, env=None, server_name=None, port=None, data_dir=None, use_config_file=True):
        self.tmp = tempfile.mkdtemp(prefix="axon-test-")
        self.port = port or free_port()
        self.server_name = server_name or "localhost:%d" % self.port
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "axon.log")
        self.config = {
            "server_name": self.server_name,
            "listen": "127.0.0.1:%d" % self.port,
            "data_dir": self.data_dir,
            "sync": "false",           # tests do not need fsync; durability has its own tests
            "threads": "2",
            "trusted_key_servers": "",
            "allow_registration": "true",
            # tests register many users from 127.0.0.1; the rate-limit tests lower these
            "ratelimit.login_per_second": "1000",
            "ratelimit.login_burst": "1000",
            "ratelimit.register_per_second": "1000",
            "ratelimit.register_burst": "1000",
        }
        if config:
            self.config.update(config)
        self.env = dict(env or {})
        self.use_config_file = use_config_file
        self.proc = None

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def write_config(self):
        """Writes the config; keys named "section.key" go under [section]."""
        path = os.path.join(self.tmp, "axon.conf")
        sections = {}
        for k, v in self.config.items():
            if v is None:
                continue
            sec, _, key = k.rpartition(".") if "." in k else ("", "", k)
            sections.setdefault(sec, []).append((key, v))
        with open(path, "w") as f:
            for key, v in sections.pop("", []):
                f.write("%s = %s\n" % (key, v))
            for sec, items in sections.items():
                f.write("[%s]\n" % sec)
                for key, v in items:
                    f.write("%s = %s\n" % (key, v))
        return path

    def start(self, wait=True, args=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AXON_")}
        env.update(self.env)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        cmd = [AXON_BIN, "serve"]
        if self.use_config_file:
            cmd += ["-c", self.write_config()]
        cmd += args or []
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, cwd=self.tmp, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("axon exited with %d during start-up:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                r = self.request("GET", "/health")
                if r.status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("axon did not become ready:\n" + self.log_text())

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, check=True, sig=signal.SIGTERM, timeout=60):
        """Stops the server by PID; with 'check', asserts a clean exit and no sanitizer report."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("axon did not stop within %ds:\n%s" % (timeout, self.log_text()))
        rc = self.proc.returncode
        self.proc = None
        self.log.close()
        text = self.log_text()
        if check:
            for marker in SANITIZER_MARKERS:
                if marker in text:
                    raise AssertionError("sanitizer report in axon's output:\n" + text[-6000:])
            if rc != 0:
                raise AssertionError("axon exited with %d:\n%s" % (rc, text[-6000:]))
        return rc

    def kill(self):
        """kill -9: for crash-safety tests."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None
            self.log.close()

    def cleanup(self):
        if self.proc is not None:
            self.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- HTTP --

    def connect(self):
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def request(self, method, path, body=None, token=None, headers=None, raw=None, conn=None):
        """One request; 'body' is JSON-encoded unless 'raw' bytes are given."""
        h = dict(headers or {})
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if token is not None:
            h["Authorization"] = "Bearer " + token
        own = conn is None
        c = conn or self.connect()
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            out = Response(r.status, r.getheaders(), r.read())
        finally:
            if own:
                c.close()
        return out


    # -- accounts --

    def register(self, username=None, password="correct horse battery", device_id=None, extra=None):
        """Registers through the m.login.dummy flow; returns the response JSON (user_id, access_token, ...)."""
        body = {"password": password}
        if username is not None:
            body["username"] = username
        if device_id is not None:
            body["device_id"] = device_id
        body.update(extra or {})
        r = self.request("POST", "/_matrix/client/v3/register", body=body)
        if r.status == 401 and "session" in (r.json or {}):
            body["auth"] = {"type": "m.login.dummy", "session": r.json["session"]}
            r = self.request("POST", "/_matrix/client/v3/register", body=body)
        if r.status != 200:
            raise AssertionError("registration of %r failed: %r" % (username, r))
        return r.json

    def login(self, user, password="correct horse battery", device_id=None, **extra):
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user},
                "password": password}
        if device_id is not None:
            body["device_id"] = device_id
        body.update(extra)
        return self.request("POST", "/_matrix/client/v3/login", body=body)


_counter = [0]


def unique(prefix="user"):
    """A fresh localpart for this test run."""
    _counter[0] += 1
    return "%s%d_%d" % (prefix, os.getpid(), _counter[0])


# ---- test case base and TAP runner ---------------------------------------------------

class AxonTestCase(unittest.TestCase):
    """A test class with one server for all its tests (override server_config / server_env)."""

    server_config = None
    server_env = None
    server = None

    @classmethod
    def setUpClass(cls):
        cls.server = Server(config=cls.server_config, env=cls.server_env).start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            cls.server.cleanup()

    def req(self, method, path, body=None, token=None, **kw):
        return self.server.request(method, path, body=body, token=token, **kw)

    def assertError(self, r, status, errcode):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.errcode, errcode, r)
        self.assertIsInstance(r.json.get("error"), str, r)
        self.assertIn("application/json", r.headers.get("content-type", ""))

    def assertSpec(self, method, path, r):
        """Validates a response against the spec's OpenAPI schema (when ../shared exists)."""
        errs = spec_errors(method, path, r.status, r.json)
        self.assertEqual(errs, [], "response does not match the spec: %r" % r)


class TapResult(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.n = 0
        self.passed = 0

    def _line(self, ok, test, extra=""):
        self.n += 1
        print("%s %d - %s%s" % ("ok" if ok else "not ok", self.n, test.id(), extra), flush=True)

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1
        self._line(True, test)

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._line(False, test)
        for line in self._exc_info_to_string(err, test).splitlines():
            print("# " + line)

    def addError(self, test, err):
        super().addError(test, err)
        self._line(False, test)
        for line in self._exc_info_to_string(err, test).splitlines():
            print("# " + line)

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._line(True, test, " # SKIP " + reason)


def main():
    """Runs the calling module's tests and prints TAP; exit status 1 on any failure."""
    module = sys.modules["__main__"]
    suite = unittest.defaultTestLoader.loadTestsFromModule(module)
    count = suite.countTestCases()
    print("TAP version 13")
    print("1..%d" % count, flush=True)
    if SPEC_SKIP_REASON:
        print("# note: " + SPEC_SKIP_REASON)
    result = TapResult()
    try:
        suite.run(result)
    except Exception:  # a class fixture blew up outside a test
        traceback.print_exc()
        return 1
    sys.exit(0 if result.wasSuccessful() else 1)
