"""Federation for the benchmarks: a throw-away certificate authority, a
synthetic remote homeserver run by the bench (its own ed25519 key, served
over TLS at /_matrix/key/v2/server), X-Matrix request signing, and events
hashed, signed and identified the way another homeserver makes them.

Copied, trimmed, from tests/api/fedutil.py (TestCA, FakeRemote, xmatrix,
redact, event_id, sign_event), which the API tests prove against axon; the
bench keeps its own copy so that it does not depend on the test harness
(tests/api/axontest.py).  Changes: the CA lives in a directory the caller
chooses, the remote generates its own key instead of the spec's test seed,
answers axon's outbound /send, and the client keeps one TLS connection open.

Needs Debian's python3-signedjson and python3-nacl (scripts/install-deps.sh
test or bench) and the openssl CLI.  Nothing here talks to anything but
127.0.0.1.
"""

import base64
import hashlib
import http.client
import http.server
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.parse

from .util import Unsupported, free_port

OPENSSL = shutil.which("openssl")


class MissingDependency(Unsupported):
    """Something this machine lacks (not the target): the scenario is skipped."""


def check_deps():
    """Raises MissingDependency unless signedjson, nacl and openssl are there."""
    import importlib.util
    missing = [pkg for mod, pkg in (("nacl", "python3-nacl"), ("signedjson", "python3-signedjson"))
               if importlib.util.find_spec(mod) is None]
    if OPENSSL is None:
        missing.append("openssl")
    if missing:
        raise MissingDependency("needs %s on this machine (scripts/install-deps.sh bench)" % ", ".join(missing))


# ---- the certificate authority -----------------------------------------------------

class TestCA:
    """A CA made with the openssl CLI in 'directory', and one leaf certificate
    for localhost and 127.0.0.1 that every TLS listener of the run uses."""

    def __init__(self, directory):
        self.dir = directory
        os.makedirs(directory, exist_ok=True)
        self.cert = os.path.join(directory, "ca.pem")
        self.key = os.path.join(directory, "ca.key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=axon bench CA",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
        self.leaf_cert, self.leaf_key = self.leaf("node", "DNS:localhost,IP:127.0.0.1")

    def _run(self, *args):
        subprocess.run([OPENSSL] + list(args), check=True, capture_output=True, cwd=self.dir)

    def leaf(self, name, san):
        key = os.path.join(self.dir, name + ".key")
        cert = os.path.join(self.dir, name + ".pem")
        csr = os.path.join(self.dir, name + ".csr")
        ext = os.path.join(self.dir, name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n" % san)
        self._run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                  "-out", csr, "-subj", "/CN=" + name)
        self._run("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key, "-CAcreateserial",
                  "-out", cert, "-days", "2", "-extfile", ext)
        return cert, key

    def client_context(self):
        return ssl.create_default_context(cafile=self.cert)


# ---- signing ------------------------------------------------------------------------

def canonical(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def b64(data, urlsafe=False):
    s = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return s.decode().rstrip("=")


def new_signing_key():
    """(key id, signedjson signing key): a fresh ed25519 key."""
    import signedjson.key
    key = signedjson.key.generate_signing_key("b" + os.urandom(3).hex())
    return "ed25519:" + key.version, key


def xmatrix(origin, destination, key_id, signing_key, method, uri, content=None):
    """The Authorization header value of a request (spec "Request Authentication")."""
    import signedjson.sign
    obj = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    signed = signedjson.sign.sign_json(obj, origin, signing_key)
    sig = signed["signatures"][origin][key_id]
    return 'X-Matrix origin="%s",destination="%s",key="%s",sig="%s"' % (origin, destination, key_id, sig)


_KEEP_CONTENT = {
    "m.room.member": ("membership", "join_authorised_via_users_server"),
    "m.room.join_rules": ("join_rule", "allow"),
    "m.room.power_levels": ("ban", "events", "events_default", "kick", "redact", "state_default", "users",
                            "users_default"),
    "m.room.history_visibility": ("history_visibility",),
    "m.room.redaction": ("redacts",),
}


def redact(event, version):
    """The redaction algorithm for room versions 10 to 12 (what event IDs and signatures cover)."""
    keys = ["event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
            "prev_events", "auth_events", "origin_server_ts"]
    if int(version) < 11:
        keys += ["origin", "membership", "prev_state"]
    out = {k: v for k, v in event.items() if k in keys}
    content = event.get("content", {})
    t = event.get("type")
    if t == "m.room.create":
        out["content"] = dict(content) if int(version) >= 11 else {k: v for k, v in content.items() if k == "creator"}
    else:
        keep = _KEEP_CONTENT.get(t, ())
        if t == "m.room.power_levels" and int(version) >= 11:
            keep = keep + ("invite",)
        out["content"] = {k: v for k, v in content.items() if k in keep}
    return out


def event_id(event, version):
    r = redact(event, version)
    r.pop("signatures", None)
    r.pop("unsigned", None)
    return "$" + b64(hashlib.sha256(canonical(r)).digest(), urlsafe=int(version) >= 4)


def sign_event(event, version, server_name, key_id, signing_key):
    """Adds the content hash and the signature of 'server_name' (spec "Signing events")."""
    body = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    event["hashes"] = {"sha256": b64(hashlib.sha256(canonical(body)).digest())}
    red = redact(event, version)
    red.pop("signatures", None)
    red.pop("unsigned", None)
    sig = signing_key.sign(canonical(red)).signature
    event.setdefault("signatures", {})[server_name] = {key_id: b64(sig)}
    return event


# ---- the synthetic remote homeserver -----------------------------------------------------

class FakeRemote:
    """A homeserver of the bench's own, over TLS on a free loopback port, named
    127.0.0.1:PORT.  It serves its key document (so axon can verify what it
    signs), accepts every transaction axon sends it, and sends signed requests
    to axon over one kept-open TLS connection."""

    def __init__(self, cert, key):
        self.port = free_port()
        self.server_name = "127.0.0.1:%d" % self.port
        self.key_id, self.signing_key = new_signing_key()
        self.requests = {}          # path prefix -> count, for the report
        self.lock = threading.Lock()
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(cert, key)
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_any(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                path = urllib.parse.urlsplit(self.path).path
                with fake.lock:
                    k = "/".join(path.split("/")[:5])
                    fake.requests[k] = fake.requests.get(k, 0) + 1
                if path == "/_matrix/key/v2/server":
                    return self.reply(200, fake.key_doc())
                if path.startswith("/_matrix/federation/v1/send/"):
                    return self.reply(200, {"pdus": {}})
                if path == "/_matrix/federation/v1/version":
                    return self.reply(200, {"server": {"name": "axon-bench-remote", "version": "0"}})
                return self.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})

            do_GET = do_PUT = do_POST = handle_any

        class TLSServer(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def get_request(self):
                sock, addr = self.socket.accept()
                return sctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

            def handle_error(self, request, client_address):
                pass

        self.httpd = TLSServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def key_doc(self):
        import signedjson.key
        import signedjson.sign
        doc = {"server_name": self.server_name, "valid_until_ts": int(time.time() * 1000) + 3600 * 1000,
               "verify_keys": {self.key_id: {"key": signedjson.key.encode_verify_key_base64(
                   self.signing_key.verify_key)}}, "old_verify_keys": {}}
        return signedjson.sign.sign_json(doc, self.server_name, self.signing_key)

    def sign_event(self, event, version):
        return sign_event(event, version, self.server_name, self.key_id, self.signing_key)

    def signed_request(self, destination, method, path, body=None):
        """(headers, body bytes) of a signed request to 'destination'."""
        headers = {"Authorization": xmatrix(self.server_name, destination, self.key_id, self.signing_key,
                                            method, path, body), "Host": destination}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        return headers, data


class FedClient:
    """One keep-alive connection (TLS when 'base' is https) to a server's
    federation API, for requests signed beforehand."""

    def __init__(self, base, ca=None, timeout=120):
        u = urllib.parse.urlsplit(base)
        self.host, self.port, self.tls = u.hostname, u.port, u.scheme == "https"
        self.ctx = ca.client_context() if (ca is not None and self.tls) else None
        if self.tls and self.ctx is None:
            self.ctx = ssl._create_unverified_context()
        # the CA's certificate names localhost and 127.0.0.1
        self.timeout = timeout
        self.conn = None

    def _connect(self):
        if self.tls:
            self.conn = http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.ctx)
        else:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        self.conn.connect()
        self.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, method, path, headers, data):
        """(status, raw body); reconnects once when a kept-open connection was closed."""
        for attempt in (0, 1):
            fresh = self.conn is None
            if fresh:
                self._connect()
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (ConnectionError, http.client.HTTPException, ssl.SSLError):
                self.close()
                if fresh or attempt == 1:
                    raise
        raise OSError("unreachable")

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = None
