"""fedutil -- helpers for federation tests: a test certificate authority made
with the openssl CLI, axon instances that federate over TLS on loopback,
and a fake remote homeserver (Python, in this process) that signs its keys
and requests with the spec's test seed, the way Complement's fake servers do.

Nothing here talks to anything but 127.0.0.1.
"""

import base64
import http.client
import http.server
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

from axontest import SOURCE_ROOT, Server, free_port

import signedjson.key
import signedjson.sign

OPENSSL = shutil.which("openssl")
VECTORS = os.path.join(SOURCE_ROOT, "tests", "vectors", "spec-vectors.json")


def spec_signing_key():
    """The spec's test signing key (appendices), as (key id, signedjson signing key)."""
    with open(VECTORS) as f:
        v = json.load(f)["signing_key"]
    version = v["key_id"].split(":", 1)[1]
    return v["key_id"], signedjson.key.decode_signing_key_base64("ed25519", version, v["seed_base64"])


class TestCA:
    """A throw-away CA, and certificates it (or nobody) signs."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="axon-ca-")
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                  "-keyout", self.key, "-out", self.cert, "-days", "2", "-subj", "/CN=axon test CA",
                  "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")

    def _run(self, *args):
        subprocess.run([OPENSSL] + list(args), check=True, capture_output=True, cwd=self.dir)

    def leaf(self, name, san, signed=True):
        """A certificate for 'san' ("DNS:localhost,IP:127.0.0.1"): (cert, key) paths."""
        key = os.path.join(self.dir, name + ".key")
        cert = os.path.join(self.dir, name + ".pem")
        if not signed:
            self._run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                      "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + name,
                      "-addext", "subjectAltName=" + san)
            return cert, key
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
        ctx = ssl.create_default_context(cafile=self.cert)
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def fed_server(ca, cert, key, name_style="localhost", config=None):
    """An axon that serves federation on its own TLS port; its server name is host:tls_port."""
    tls_port = free_port()
    host = "localhost" if name_style == "localhost" else "127.0.0.1"
    cfg = {
        "tls_listen": "127.0.0.1:%d" % tls_port,
        "tls_certificate": cert,
        "tls_private_key": key,
        "federation_ca_file": ca.cert,
        "outbound_allow_private": "true",
        "trusted_key_servers": "",
    }
    cfg.update(config or {})
    s = Server(config=cfg, server_name="%s:%d" % (host, tls_port))
    s.tls_port = tls_port
    return s


class FedTestCase(unittest.TestCase):
    """A class of tests against axons that serve federation over TLS, all with one certificate of one test CA.

    `fed_servers` lists them in start order as (attribute, name style, config): ("a", "localhost", None) makes cls.a,
    named localhost:PORT; "ip" names it 127.0.0.1:PORT (see fed_server); config is a dict of extra keys, or a function
    of the class for keys that name an earlier server. With `with_fake`, cls.fake is a FakeRemote that knows every
    axon's keys. tearDownClass stops every axon by PID, then the fake and the CA, and fails the class with every
    axon's stop error (a sanitizer report, an unclean exit) at once; a set-up that fails half way is cleaned up too."""

    fed_servers = (("a", "localhost", None),)
    with_fake = True

    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()
        cls.cert, cls.key = cls.ca.leaf("node", "DNS:localhost,IP:127.0.0.1")
        cls.axons = []
        try:
            for attr, style, config in cls.fed_servers:
                s = fed_server(cls.ca, cls.cert, cls.key, style, config=config(cls) if callable(config) else config)
                setattr(cls, attr, s)
                cls.axons.append(s)
                s.start()
            if cls.with_fake:
                cls.fake = FakeRemote(cls.cert, cls.key)
                for s in cls.axons:
                    cls.fake.key_sources[s.server_name] = s.port
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        errors = []
        for s in cls.axons:
            try:
                s.stop()
            except AssertionError as e:
                errors.append(str(e))
            finally:
                s.cleanup()
        if cls.with_fake and isinstance(getattr(cls, "fake", None), FakeRemote):
            cls.fake.stop()
        cls.ca.cleanup()
        if errors:
            raise AssertionError("\n".join(errors))


# ---- X-Matrix ----------------------------------------------------------------------

def xmatrix(origin, destination, key_id, signing_key, method, uri, content=None, quote_all=True):
    """The Authorization header value for a request, signed as the spec's Python example does."""
    obj = {"method": method, "uri": uri, "origin": origin, "destination": destination}
    if content is not None:
        obj["content"] = content
    signed = signedjson.sign.sign_json(obj, origin, signing_key)
    sig = signed["signatures"][origin][key_id]
    return 'X-Matrix origin="%s",destination="%s",key="%s",sig="%s"' % (origin, destination, key_id, sig)


_PARAM = re.compile(r'\s*([A-Za-z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]+))\s*,?')


def parse_xmatrix(value):
    """The parameters of an X-Matrix header (a test-side parser, independent of axon's)."""
    if not value or not value.startswith("X-Matrix "):
        return None
    rest = value[len("X-Matrix "):]
    out = {}
    for m in _PARAM.finditer(rest):
        v = m.group(2) if m.group(2) is not None else m.group(3)
        out[m.group(1).lower()] = re.sub(r"\\(.)", r"\1", v)
    return out


def fetch_keys_plain(base_port):
    """An axon's key document over its plain listener."""
    c = http.client.HTTPConnection("127.0.0.1", base_port, timeout=30)
    try:
        c.request("GET", "/_matrix/key/v2/server")
        return json.loads(c.getresponse().read())
    finally:
        c.close()


def verify_doc(doc, server_name):
    """Checks a key document's self-signature; returns {key_id: verify key}."""
    keys = {}
    for kid, entry in doc["verify_keys"].items():
        vk = signedjson.key.decode_verify_key_base64("ed25519", kid.split(":", 1)[1], entry["key"])
        signedjson.sign.verify_signed_json(doc, server_name, vk)
        keys[kid] = vk
    return keys


# ---- the fake remote homeserver ---------------------------------------------------------

class FakeRemote:
    """A minimal homeserver over TLS that signs with the spec's key.

    'key_sources' maps origin server names to the plain port of the axon whose
    key verifies its requests.  Every request it receives is recorded with
    the outcome of its X-Matrix check.

    PUT /send/{txnId} is answered like a real server does: a transaction ID
    seen before from the same origin gets the first answer again and is not
    processed twice.  'transactions' lists the processed ones in arrival
    order, 'send_attempts' every attempt.  'send_actions' scripts the next
    attempts: "500" answers 500, "drop" closes the connection without an
    answer, "hold:SECONDS" waits that long before processing, "400" refuses
    the transaction.  'pdu_errors' maps event IDs to the error to answer.
    Give 'port' to come back on the port of a stopped fake."""

    def __init__(self, cert, key, server_name=None, port=None):
        self.port = port or free_port()
        self.server_name = server_name or "127.0.0.1:%d" % self.port
        self.key_id, self.signing_key = spec_signing_key()
        self.serve_keys = True
        self.profiles = {}
        # endpoints that answer other than JSON (media): exact path -> fn(handler, method, url, body),
        # which replies itself; 'raw_routes' need a valid X-Matrix signature, 'open_routes' are
        # plain HTTPS (a CDN, say)
        self.raw_routes = {}
        self.open_routes = {}
        self.key_sources = {}
        self.requests = []
        self.routes = {}  # path regex -> fn(method, url, body, *groups) -> (status, body)
        self.connections = 0
        self.transactions = []
        self.send_attempts = []
        self.send_actions = []
        self.pdu_errors = {}
        self.reject_pdus = None  # an error for every PDU of the transactions it processes
        self._answers = {}
        self._socks = []
        self.lock = threading.Lock()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.ctx = ctx
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body leave in one write (flushed after each request): written apart, Nagle's
            # algorithm and the peer's delayed ACK hold the body back ~40 ms per answer
            wbufsize = 1 << 16

            def log_message(self, *args):
                pass

            def reply(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                fake.handle(self, "GET")

            def do_POST(self):
                fake.handle(self, "POST")

            def do_PUT(self):
                fake.handle(self, "PUT")

        class TLSServer(http.server.ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def get_request(self):
                sock, addr = self.socket.accept()
                wrapped = fake.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                with fake.lock:
                    fake.connections += 1
                    fake._socks.append(wrapped)  # wrap_socket took over the descriptor
                return wrapped, addr

            def handle_error(self, request, client_address):
                pass  # failed handshakes are part of the tests

        self.httpd = TLSServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        """Stops listening and cuts every open connection: the server is down, keep-alive or not."""
        self.httpd.shutdown()
        self.httpd.server_close()
        with self.lock:
            socks, self._socks = self._socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    # -- transactions received --

    def pdus(self, origin=None):
        """Every PDU of the processed transactions, in arrival order."""
        with self.lock:
            return [p for t in self.transactions if origin in (None, t["origin"]) for p in t["body"].get("pdus", [])]

    def edus(self, edu_type=None):
        with self.lock:
            return [e for t in self.transactions for e in t["body"].get("edus", [])
                    if edu_type in (None, e.get("edu_type"))]

    def wait_for(self, predicate, timeout=30, what="the condition"):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError("%s did not happen within %ds; transactions: %s" % (
            what, timeout, json.dumps([t["txn_id"] for t in self.transactions])))

    def handle_send(self, h, origin, txn_id, body):
        with self.lock:
            action = self.send_actions.pop(0) if self.send_actions else None
            self.send_attempts.append({"txn_id": txn_id, "origin": origin, "action": action, "time": time.time(),
                                       "pdus": len(body.get("pdus", [])), "edus": len(body.get("edus", []))})
        if action == "500":
            return h.reply(500, {"errcode": "M_UNKNOWN", "error": "scripted failure"})
        if action == "400":
            return h.reply(400, {"errcode": "M_BAD_JSON", "error": "scripted refusal"})
        if action == "drop":
            h.close_connection = True
            h.connection.close()
            return None
        if action is not None and action.startswith("hold:"):
            time.sleep(float(action[5:]))
        with self.lock:
            key = (origin, txn_id)
            if key in self._answers:  # a retry of a transaction we processed: the same answer, nothing twice
                answer = self._answers[key]
            else:
                assert len(body.get("pdus", [])) <= 50 and len(body.get("edus", [])) <= 100, "over the spec limits"
                answer = {"pdus": {}}
                for pdu in body.get("pdus", []):
                    eid = event_id(pdu, "12")  # the IDs of rooms v11 and v12 (those the sender tests use)
                    err = self.pdu_errors.get(eid, self.reject_pdus)
                    answer["pdus"][eid] = {"error": err} if err else {}
                self._answers[key] = answer
                self.transactions.append({"txn_id": txn_id, "origin": origin, "body": body, "time": time.time()})
        return h.reply(200, answer)

    def key_doc(self):
        doc = {
            "server_name": self.server_name,
            "valid_until_ts": int(time.time() * 1000) + 3600 * 1000,
            "verify_keys": {self.key_id: {"key": signedjson.key.encode_verify_key_base64(
                self.signing_key.verify_key)}},
            "old_verify_keys": {},
        }
        return signedjson.sign.sign_json(doc, self.server_name, self.signing_key)

    def check_auth(self, handler, method, body):
        """The X-Matrix check a real server does; returns (origin, error)."""
        p = parse_xmatrix(handler.headers.get("Authorization"))
        if p is None or "origin" not in p or "key" not in p or "sig" not in p:
            return None, "no X-Matrix"
        if p.get("destination") != self.server_name:
            return p["origin"], "wrong destination %r" % p.get("destination")
        src = self.key_sources.get(p["origin"])
        if src is None:
            return p["origin"], "unknown origin"
        doc = fetch_keys_plain(src)
        keys = verify_doc(doc, p["origin"])
        obj = {"method": method, "uri": handler.path, "origin": p["origin"], "destination": p["destination"],
               "signatures": {p["origin"]: {p["key"]: p["sig"]}}}
        if body is not None:
            obj["content"] = body
        try:
            signedjson.sign.verify_signed_json(obj, p["origin"], keys[p["key"]])
        except Exception as e:  # noqa: BLE001 - any failure is a failed check
            return p["origin"], "bad signature: %s" % e
        return p["origin"], None

    def handle(self, h, method):
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        body = json.loads(raw) if raw else None
        url = urllib.parse.urlsplit(h.path)
        rec = {"method": method, "path": h.path, "host": h.headers.get("Host"),
               "authorization": h.headers.get("Authorization")}
        if url.path == "/_matrix/key/v2/server":
            with self.lock:
                self.requests.append(rec)
            if self.serve_keys:
                return h.reply(200, self.key_doc())
            return h.reply(404, {"errcode": "M_NOT_FOUND", "error": "keys are switched off"})
        if url.path in self.open_routes:
            with self.lock:
                self.requests.append(rec)
            return self.open_routes[url.path](h, method, url, body)
        origin, err = self.check_auth(h, method, body)
        rec["origin"], rec["auth_error"] = origin, err
        with self.lock:
            self.requests.append(rec)
        if err is not None:
            return h.reply(401, {"errcode": "M_UNAUTHORIZED", "error": err})
        route = self.raw_routes.get(url.path)
        if route is not None:
            return route(h, method, url, body)
        for pattern, fn in list(self.routes.items()):
            m = re.fullmatch(pattern, url.path)
            if m is not None:
                status, answer = fn(method, url, body, *m.groups())
                return h.reply(status, answer)
        if method == "PUT" and url.path.startswith("/_matrix/federation/v1/send/"):
            return self.handle_send(h, origin, urllib.parse.unquote(url.path[len("/_matrix/federation/v1/send/"):]),
                                    body or {})
        if url.path == "/_matrix/federation/v1/query/profile":
            qs = urllib.parse.parse_qs(url.query)
            prof = self.profiles.get(qs.get("user_id", [""])[0])
            if prof is None:
                return h.reply(404, {"errcode": "M_NOT_FOUND", "error": "no such user"})
            field = qs.get("field", [None])[0]
            if field is not None:
                if field not in prof:
                    return h.reply(404, {"errcode": "M_NOT_FOUND", "error": "no such field"})
                return h.reply(200, {field: prof[field]})
            return h.reply(200, prof)
        return h.reply(404, {"errcode": "M_UNRECOGNIZED", "error": "Unrecognized request"})

    # -- as a client of axon --

    def send(self, axon, method, path, body=None, auth=None, destination=None, ca=None, key_id=None):
        """Sends a request to 'axon' over its TLS port, signed unless 'auth' (a header value, or "") is given."""
        if auth is None:
            auth = xmatrix(self.server_name, destination or axon.server_name, key_id or self.key_id,
                           self.signing_key, method, path, body)
        ctx = ca.client_context() if ca is not None else ssl._create_unverified_context()
        c = http.client.HTTPSConnection("127.0.0.1", axon.tls_port, timeout=60, context=ctx)
        headers = {"Host": axon.server_name}
        if auth:
            headers["Authorization"] = auth
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=headers)
            r = c.getresponse()
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
        finally:
            c.close()


def b64(data):
    return base64.b64encode(data).decode().rstrip("=")


# ---- events, built and signed the way another homeserver would -------------------------

from signedjson.sign import encode_canonical_json  # noqa: E402
import hashlib  # noqa: E402

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
        if t == "m.room.member" and int(version) >= 11 and "third_party_invite" in content:
            signed = content["third_party_invite"].get("signed")
            if signed is not None:
                out["content"]["third_party_invite"] = {"signed": signed}
    return out


def _b64(data, urlsafe=False):
    s = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return s.decode().rstrip("=")


def event_id(event, version):
    r = redact(event, version)
    r.pop("signatures", None)
    r.pop("unsigned", None)
    return "$" + _b64(hashlib.sha256(encode_canonical_json(r)).digest(), urlsafe=int(version) >= 4)


def sign_event(event, version, server_name, signing_key, hash_it=True):
    """Adds the content hash (unless 'hash_it' is false) and the signature of 'server_name'."""
    if hash_it:
        body = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
        event["hashes"] = {"sha256": _b64(hashlib.sha256(encode_canonical_json(body)).digest())}
    signed = signedjson.sign.sign_json(redact(event, version), server_name, signing_key)
    event.setdefault("signatures", {})[server_name] = signed["signatures"][server_name]
    return event


def verify_event(event, version, server_name, verify_key):
    """Raises unless 'server_name' signed 'event' with 'verify_key'."""
    signedjson.sign.verify_signed_json(redact(event, version), server_name, verify_key)


class RemoteRoom:
    """A room as a remote server holds it: events it makes and signs, with their DAG."""

    def __init__(self, fake, version, creator):
        self.fake, self.version, self.events, self.state = fake, version, {}, {}
        self.depth, self.last = 0, []
        content = {"room_version": version}
        if int(version) < 11:
            content["creator"] = creator
        create = {"type": "m.room.create", "state_key": "", "sender": creator, "content": content,
                  "origin_server_ts": int(time.time() * 1000), "depth": 1, "prev_events": [], "auth_events": []}
        if int(version) < 12:
            self.room_id = "!%s:%s" % (base64.b32encode(os.urandom(10)).decode().lower(), fake.server_name)
            create["room_id"] = self.room_id
        create["origin"] = fake.server_name
        sign_event(create, version, fake.server_name, fake.signing_key)
        cid = event_id(create, version)
        if int(version) >= 12:
            self.room_id = "!" + cid[1:]
        self.create_id = cid
        self._add(cid, create)

    def _add(self, eid, ev):
        self.events[eid] = ev
        if "state_key" in ev:
            self.state[(ev["type"], ev["state_key"])] = eid
        self.depth = max(self.depth, ev["depth"])
        self.last = [eid]

    def auth_for(self, ev):
        """Auth events selection against this room's state."""
        keys = [("m.room.power_levels", ""), ("m.room.member", ev["sender"])]
        if int(self.version) < 12:
            keys.insert(0, ("m.room.create", ""))
        if ev["type"] == "m.room.member":
            keys.append(("m.room.member", ev["state_key"]))
            if ev["content"].get("membership") in ("join", "invite", "knock"):
                keys.append(("m.room.join_rules", ""))
        out = []
        for k in keys:
            if k in self.state and self.state[k] not in out:
                out.append(self.state[k])
        return out

    def make(self, sender, type_, content, state_key=None, prev=None, depth=None, add=True):
        """A new event of this room signed by the fake server; returns (event_id, event)."""
        ev = {"type": type_, "sender": sender, "content": content, "room_id": self.room_id,
              "origin_server_ts": int(time.time() * 1000), "depth": depth or self.depth + 1,
              "prev_events": list(prev if prev is not None else self.last)}
        if state_key is not None:
            ev["state_key"] = state_key
        ev["origin"] = self.fake.server_name  # not covered by redaction from v11, but still sent
        ev["auth_events"] = self.auth_for(ev)
        sign_event(ev, self.version, self.fake.server_name, self.fake.signing_key)
        eid = event_id(ev, self.version)
        if add:
            self._add(eid, ev)
        return eid, ev

    def stripped(self):
        out = []
        for (t, sk), eid in self.state.items():
            if t in ("m.room.create", "m.room.join_rules", "m.room.name", "m.room.topic"):
                ev = self.events[eid]
                out.append({"type": t, "state_key": sk, "sender": ev["sender"], "content": ev["content"]})
        return out


def serve_room(fake, rr):
    """Makes 'fake' the resident server of RemoteRoom 'rr': make_join, send_join, backfill, event."""
    def template(method, url, body, room, user):
        content = {"membership": "join"}
        ev = {"type": "m.room.member", "state_key": urllib.parse.unquote(user),
              "sender": urllib.parse.unquote(user), "content": content, "room_id": rr.room_id,
              "origin": fake.server_name, "origin_server_ts": int(time.time() * 1000), "depth": rr.depth + 1,
              "prev_events": list(rr.last)}
        ev["auth_events"] = rr.auth_for(ev)
        return 200, {"event": ev, "room_version": rr.version}

    def send_join(method, url, body, room, eid):
        state = [rr.events[e] for e in rr.state.values()]
        chain, todo = {}, [e for e in rr.state.values()] + list(body.get("auth_events", []))
        while todo:
            e = todo.pop()
            if e in chain or e not in rr.events:
                continue
            chain[e] = rr.events[e]
            todo.extend(rr.events[e]["auth_events"])
        if int(rr.version) >= 12:
            chain[rr.create_id] = rr.events[rr.create_id]
        rr._add(urllib.parse.unquote(eid), body)
        return 200, {"origin": fake.server_name, "state": state, "auth_chain": list(chain.values()),
                     "members_omitted": False, "servers_in_room": [fake.server_name]}

    def backfill(method, url, body, room):
        qs = urllib.parse.parse_qs(url.query)
        limit = int(qs.get("limit", ["10"])[0])
        todo, out = list(qs.get("v", [])), []
        seen = set()
        while todo and len(out) < limit:
            todo.sort(key=lambda e: rr.events[e]["depth"] if e in rr.events else -1)
            e = todo.pop()
            if e in seen or e not in rr.events:
                continue
            seen.add(e)
            out.append(rr.events[e])
            todo.extend(rr.events[e]["prev_events"])
        return 200, {"origin": fake.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": out}

    def event(method, url, body, eid):
        ev = rr.events.get(urllib.parse.unquote(eid))
        if ev is None:
            return 404, {"errcode": "M_NOT_FOUND", "error": "no such event"}
        return 200, {"origin": fake.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": [ev]}

    fake.routes[r"/_matrix/federation/v1/make_join/([^/]+)/([^/]+)"] = template
    fake.routes[r"/_matrix/federation/v2/send_join/([^/]+)/([^/]+)"] = send_join
    fake.routes[r"/_matrix/federation/v1/backfill/([^/]+)"] = backfill
    fake.routes[r"/_matrix/federation/v1/event/([^/]+)"] = event
