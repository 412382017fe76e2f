"""A fake push gateway for the push tests: POST /_matrix/push/v1/notify on
127.0.0.1 (a free port, or a given one so it can come back after being
stopped), recording every notification it accepts.

Runs in a thread of the test process (http.server) and is stopped with
shutdown(), never by name.  Optionally TLS (an ssl.SSLContext), a status
code to answer with (to play a broken gateway), and pushkeys to list as
"rejected".  Request bodies are checked against the spec's schema of the
Push Gateway API when ../shared is there.
"""

import http.server
import json
import os
import socket
import sys
import threading
import time

from axontest import SHARED, free_port

PATH = "/_matrix/push/v1/notify"

_schema = None
try:
    sys.path.insert(0, os.path.join(SHARED, "tools"))
    import jsonschema  # noqa: E402
    import spec_check  # noqa: E402

    _doc = os.path.join(spec_check.SPEC, "api", "push-gateway", "push_notifier.yaml")
    _op = spec_check._load(_doc)["paths"]["/notify"]["post"]
    _schema = spec_check._resolve(_op["requestBody"]["content"]["application/json"]["schema"],
                                  os.path.dirname(_doc))
except Exception:  # no ../shared, or no python3-yaml / python3-jsonschema
    _schema = None


def schema_errors(body):
    """Errors of a /notify request body against the spec's schema ([] when it cannot be checked)."""
    if _schema is None:
        return []
    v = jsonschema.Draft202012Validator(_schema)
    return ["%s: %s" % ("/".join(map(str, e.absolute_path)) or "(body)", e.message) for e in v.iter_errors(body)]


class Gateway:
    def __init__(self, port=None, ssl_context=None):
        self.port = port or free_port()
        self.ssl_context = ssl_context
        self.notifications = []   # the "notification" objects accepted, in order
        self.requests = 0         # every POST seen, accepted or not
        self.errors = []          # schema errors and malformed requests
        self.status = 200         # what to answer
        self.rejected = set()     # pushkeys to list as rejected
        self.cond = threading.Condition()
        self.httpd = None
        self.thread = None
        self.conns = set()        # open client connections, closed by stop()

    @property
    def url(self):
        return "%s://%s:%d%s" % ("https" if self.ssl_context else "http",
                                 "localhost" if self.ssl_context else "127.0.0.1", self.port, PATH)

    def start(self):
        gw = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def setup(self):
                super().setup()
                with gw.cond:
                    gw.conns.add(self.connection)

            def finish(self):
                with gw.cond:
                    gw.conns.discard(self.connection)
                super().finish()

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                with gw.cond:
                    gw.requests += 1
                if self.path != PATH:
                    return self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "wrong path"})
                try:
                    body = json.loads(raw)
                except ValueError:
                    with gw.cond:
                        gw.errors.append("not JSON: %r" % raw[:200])
                    return self.reply(400, {"errcode": "M_NOT_JSON", "error": "not JSON"})
                if gw.status != 200:
                    return self.reply(gw.status, {"errcode": "M_UNKNOWN", "error": "down"})
                errs = schema_errors(body)
                if self.headers.get("Content-Type", "").split(";")[0] != "application/json":
                    errs.append("content type %r" % self.headers.get("Content-Type"))
                note = body.get("notification", {})
                keys = [d.get("pushkey") for d in note.get("devices", [])]
                with gw.cond:
                    gw.errors.extend(errs)
                    gw.notifications.append(note)
                    gw.cond.notify_all()
                self.reply(200, {"rejected": [k for k in keys if k in gw.rejected]})

            def reply(self, status, obj):
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(http.server.ThreadingHTTPServer):
            allow_reuse_address = True
            daemon_threads = True

        self.httpd = Server(("127.0.0.1", self.port), Handler)
        if self.ssl_context is not None:
            self.httpd.socket = self.ssl_context.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """Stops listening and drops every open connection: a stopped gateway is down, kept-alive
        connections included (the port is free until start() again)."""
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
            self.thread.join(10)
            self.httpd = None
        with self.cond:
            conns, self.conns = list(self.conns), set()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def wait_for(self, pred, timeout=20):
        """Waits until pred(notifications) is true; returns the notifications (or raises AssertionError)."""
        deadline = time.time() + timeout
        with self.cond:
            while not pred(self.notifications):
                left = deadline - time.time()
                if left <= 0:
                    raise AssertionError("gateway: condition not met within %ds; got %r" %
                                         (timeout, self.notifications))
                self.cond.wait(left)
            return list(self.notifications)

    def for_event(self, event_id):
        with self.cond:
            return [n for n in self.notifications if n.get("event_id") == event_id]

    def clear(self):
        with self.cond:
            self.notifications = []
