"""Small helpers shared by the runner, the servers and the scenarios."""

import http.client
import json
import math
import os
import socket
import sys
import time
import urllib.parse


class Unsupported(Exception):
    """The target does not implement what a scenario needs (e.g. 404 M_UNRECOGNIZED).

    A scenario that raises it is reported as "not supported by target: <reason>";
    it is not a failure of the benchmark."""


class BenchError(Exception):
    """Something in the benchmark itself went wrong (a tool failed, a server died)."""


def free_port():
    """A TCP port on 127.0.0.1 that nobody listens on right now (bind to port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def is_loopback_url(url):
    host = urllib.parse.urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return False
    for family, _, _, _, addr in infos:
        a = addr[0]
        if not (a.startswith("127.") or a == "::1"):
            return False
    return bool(infos)


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

    def describe(self):
        """'404 M_UNRECOGNIZED' or '502' -- for messages."""
        return "%d%s" % (self.status, " " + self.errcode if self.errcode else "")


def request(base, method, path, body=None, token=None, headers=None, timeout=30):
    """One HTTP request to 'base' (http:// or https://); 'body' is JSON-encoded
    unless it is bytes.  Returns a Response; raises OSError when it cannot connect."""
    u = urllib.parse.urlsplit(base)
    if u.scheme == "https":
        import ssl
        conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=timeout,
                                           context=ssl._create_unverified_context())
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=timeout)
    h = dict(headers or {})
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    if token:
        h["Authorization"] = "Bearer " + token
    try:
        conn.request(method, u.path.rstrip("/") + path, body=data, headers=h)
        r = conn.getresponse()
        return Response(r.status, r.getheaders(), r.read())
    finally:
        conn.close()


def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list (p in 0..100); None if empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(math.ceil(p / 100.0 * len(sorted_values))) - 1))
    return sorted_values[k]


def median(values):
    v = sorted(x for x in values if x is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2.0


def fmt_duration(seconds):
    seconds = int(max(0, seconds))
    return "%d:%02d" % (seconds // 60, seconds % 60)


class Progress:
    """The progress line on stderr: '[ 3/26] label  0:41 elapsed, ~3:10 left'.

    On a terminal the line is rewritten in place; otherwise one line per step."""

    def __init__(self, total_steps, total_estimate_s, quiet=False):
        self.total = max(1, total_steps)
        self.remaining_estimate = total_estimate_s
        self.done = 0
        self.start = time.monotonic()
        self.tty = sys.stderr.isatty()
        self.quiet = quiet
        self._last_len = 0

    def step(self, label, estimate_s):
        self.done += 1
        elapsed = time.monotonic() - self.start
        left = max(0.0, self.remaining_estimate)
        self.remaining_estimate -= estimate_s
        line = "bench: [%*d/%d] %s  (%s elapsed, ~%s left)" % (
            len(str(self.total)), self.done, self.total, label, fmt_duration(elapsed), fmt_duration(left))
        self._emit(line)

    def note(self, text):
        self._emit("bench: " + text)

    def _emit(self, line):
        if self.quiet:
            return
        if self.tty:
            pad = max(0, self._last_len - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            self._last_len = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def finish(self, text):
        if self.tty and not self.quiet:
            sys.stderr.write("\n")
        self._last_len = 0
        self._emit("bench: " + text)
        if self.tty and not self.quiet:
            sys.stderr.write("\n")


def write_text(path, text):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
