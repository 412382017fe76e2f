"""fed_send_ingest -- PUT /_matrix/federation/v1/send/{txnId}: inbound PDUs/s
from a synthetic remote server, 50 PDUs per transaction.

The bench runs a remote homeserver of its own (axbench/fed.py, after
tests/api/fedutil.py): a name 127.0.0.1:PORT, a fresh ed25519 key, and its
key document served over TLS with a certificate of the run's own CA, which
the fresh axon trusts (`federation_ca_file`; axon federates on a TLS
listener, `outbound_allow_private = true`, all on 127.0.0.1).  Its user
joins a public room of axon through make_join/send_join; then it sends
transactions of 50 m.room.message PDUs, each hashed and signed, chained one
after the other (prev_events = the previous PDU), one transaction at a time
over one kept-open TLS connection, as a server sends to one destination.
Per PDU axon checks the format, the content hash and the remote's
signature, runs the auth rules against the room's state and persists it
(`sync = true`); the answer must list every PDU without an error, and the
room's newest event must be the last PDU sent.  Transactions are built and
signed before the clock starts; times are per transaction, from the
request's first byte to the answer's last, the client's Python included.

With --target the same requests go to the target's URL with its server name
(from its key document); the target must fetch the bench's key over TLS from
127.0.0.1 without knowing the bench's CA (axon: `federation_verify_tls =
false`, `outbound_allow_private = true`), else the scenario reports that.
No nginx ratio: signature checks and durable writes bound it, not HTTP.

Measurements: N transactions (100, 5,000 PDUs) per repetition, --reps
times (at most 2).
"""

import json
import os
import secrets
import time

from axbench import fed, matrix, scen, seed
from axbench.runner import Step
from axbench.servers import AxonServer
from axbench.util import BenchError, Unsupported, median, percentile, request

NAME = "fed_send_ingest"
TITLE = "PUT /_matrix/federation/v1/send/{txnId}: inbound PDUs/s from a synthetic remote (50 PDUs per transaction)"
NEEDS = ["PUT /_matrix/federation/v1/send/{txnId}", "X-Matrix request authentication",
         "GET /_matrix/federation/v1/make_join, PUT /_matrix/federation/v2/send_join",
         "outbound TLS to the bench's remote for its key (GET /_matrix/key/v2/server)"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
AXON_FEDERATION = True
ORDER = 24
PREPARE_S = 3
PDUS_PER_TXN = 50
TXNS, TXNS_QUICK = 100, 2
FED1, FED2 = "/_matrix/federation/v1", "/_matrix/federation/v2"
CS = "/_matrix/client/v3"


def _endpoint(ctx):
    """(federation base URL, destination server name, CA or None)."""
    t = ctx.target
    if isinstance(t, AxonServer):
        if not t.fed_base or ctx.fed_ca is None:
            raise fed.MissingDependency("the fresh axon has no TLS listener (the run's CA could not be made)")
        return t.fed_base, t.server_name, ctx.fed_ca
    r = request(t.base, "GET", "/_matrix/key/v2/server")
    name = (r.json or {}).get("server_name") if isinstance(r.json, dict) else None
    if r.status != 200 or not name:
        raise Unsupported("GET /_matrix/key/v2/server answered %s" % r.describe())
    return t.base, name, None


class Remote:
    """The remote server's side of one room: its user's membership and the chain of PDUs it sends."""

    def __init__(self, fake, base, destination, ca):
        self.fake, self.base, self.destination = fake, base, destination
        self.client = fed.FedClient(base, ca)
        self.user = "@bench_%s:%s" % (secrets.token_hex(3), fake.server_name)

    def call(self, method, path, body=None):
        headers, data = self.fake.signed_request(self.destination, method, path, body)
        status, raw = self.client.request(method, path, headers, data)
        try:
            j = json.loads(raw) if raw else None
        except ValueError:
            j = None
        return status, j, raw

    def join(self, room_id):
        q = seed.quote
        status, tmpl, raw = self.call("GET", "%s/make_join/%s/%s?ver=10&ver=11&ver=12" % (FED1, q(room_id),
                                                                                         q(self.user)))
        if status == 401:
            raise Unsupported("the target refused the bench's signed request (401: it could not fetch the bench "
                              "remote's key over TLS from %s?): %r" % (self.fake.server_name, raw[:200]))
        if status in (404, 405) or (isinstance(tmpl, dict) and tmpl.get("errcode") == "M_UNRECOGNIZED"):
            raise Unsupported("GET %s/make_join answered %d" % (FED1, status))
        if status != 200:
            raise BenchError("make_join answered %d: %r" % (status, raw[:300]))
        self.version = tmpl["room_version"]
        ev = tmpl["event"]
        ev["origin_server_ts"] = int(time.time() * 1000)
        self.fake.sign_event(ev, self.version)
        join_id = fed.event_id(ev, self.version)
        status, body, raw = self.call("PUT", "%s/send_join/%s/%s" % (FED2, q(room_id), q(join_id)), ev)
        if status != 200:
            raise BenchError("send_join answered %d: %r" % (status, raw[:300]))
        state = {(e["type"], e["state_key"]): fed.event_id(e, self.version) for e in body["state"]}
        self.room_id = room_id
        self.auth = [state[("m.room.power_levels", "")], join_id]
        if int(self.version) < 12:
            self.auth.insert(0, state[("m.room.create", "")])
        self.last = join_id
        self.depth = ev["depth"]

    def pdu(self, body):
        self.depth += 1
        ev = {"type": "m.room.message", "sender": self.user, "room_id": self.room_id,
              "content": {"msgtype": "m.text", "body": body}, "origin": self.fake.server_name,
              "origin_server_ts": int(time.time() * 1000), "depth": self.depth, "prev_events": [self.last],
              "auth_events": list(self.auth)}
        self.fake.sign_event(ev, self.version)
        self.last = fed.event_id(ev, self.version)
        return self.last, ev

    def transaction(self, n, tag):
        """A signed PUT /send of n new PDUs: (path, headers, body bytes, [event IDs])."""
        pdus, ids = [], []
        for i in range(n):
            eid, ev = self.pdu("federated benchmark message %s-%d: the quick brown fox jumps over the lazy dog"
                               % (tag, i))
            pdus.append(ev)
            ids.append(eid)
        path = "%s/send/axb-%s" % (FED1, tag)
        body = {"origin": self.fake.server_name, "origin_server_ts": int(time.time() * 1000), "pdus": pdus,
                "edus": []}
        headers, data = self.fake.signed_request(self.destination, "PUT", path, body)
        return path, headers, data, ids

    def send(self, path, headers, data):
        status, raw = self.client.request("PUT", path, headers, data)
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"raw": raw[:200].decode("latin-1")}


def setup(ctx):
    fed.check_deps()
    base, destination, ca = _endpoint(ctx)
    fca = ctx.fed_ca or fed.TestCA(os.path.join(ctx.workdir, "ca-remote"))
    st = ctx.scenario.state
    st["fake"] = fake = fed.FakeRemote(fca.leaf_cert, fca.leaf_key)
    alice = seed.users(ctx, 1, "axb_fed")[0]
    room = matrix.call(ctx.target.base, "POST", CS + "/createRoom", {"preset": "public_chat", "name": "federated"},
                       token=alice.access_token).json["room_id"]
    remote = Remote(fake, base, destination, ca)
    remote.join(room)
    # one transaction of one PDU: the request's signature and the PDU's are accepted
    path, headers, data, ids = remote.transaction(1, "setup-" + secrets.token_hex(4))
    status, answer = remote.send(path, headers, data)
    if status == 401:
        raise Unsupported("the target refused the bench's transaction (401): %r" % answer)
    if status != 200 or answer.get("pdus", {}).get(ids[0]) != {}:
        raise BenchError("PUT /send of one PDU answered %d: %r" % (status, answer))
    st.update(remote=remote, alice=alice, room=room, txns=TXNS_QUICK if ctx.quick else TXNS, batches={})
    return []


def prepare(ctx):
    st = ctx.scenario.state
    t0 = time.monotonic()
    run = secrets.token_hex(3)
    for rep in range(scen.reps(ctx)):
        st["batches"][rep] = [st["remote"].transaction(PDUS_PER_TXN, "%s-%d-%d" % (run, rep, k))
                              for k in range(st["txns"])]
    st["build_s"] = time.monotonic() - t0
    seed.note(ctx, "built and signed %d transactions in %.1f s" % (sum(len(b) for b in st["batches"].values()),
                                                                    st["build_s"]))


def _run(cx, rep):
    st = cx.scenario.state
    remote, batch = st["remote"], st["batches"][rep]

    def go():
        lat, bad, failed_txns, samples = [], 0, 0, []
        t0 = time.monotonic()
        for path, headers, data, ids in batch:
            t = time.monotonic()
            status, answer = remote.send(path, headers, data)
            lat.append((time.monotonic() - t) * 1000.0)
            pdus = answer.get("pdus", {}) if isinstance(answer, dict) else {}
            errs = [e for e in ids if pdus.get(e) != {}]
            if status != 200:
                failed_txns += 1
                bad += len(ids)
            elif errs:
                bad += len(errs)
            if (status != 200 or errs) and len(samples) < 3:
                samples.append("%d %s" % (status, json.dumps(pdus.get(errs[0]) if errs else answer)[:200]))
        wall = time.monotonic() - t0
        lat.sort()
        n = len(batch) * PDUS_PER_TXN
        r = {"requests": n - bad, "duration_s": wall, "rps": (n - bad) / wall if wall > 0 else None,
             "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
             "max_ms": lat[-1] if lat else None, "mean_ms": sum(lat) / len(lat) if lat else None,
             "errors": bad, "non2xx": failed_txns, "bytes_per_req": len(batch[0][2]) if batch else None,
             "error": None, "transactions": len(batch), "txn_per_s": len(batch) / wall if wall > 0 else None,
             "error_samples": samples}
        if bad:
            r["error"] = "%d of %d PDUs not accepted: %s" % (bad, n, "; ".join(samples))
        return r, wall

    r = cx.measure(cx.target, "fedsend", "PUT %s/send/{txnId} x %d, %d PDUs each, sequential, one TLS connection "
                   "(bench/scenarios/fed_send_ingest.py)" % (FED1, len(batch), PDUS_PER_TXN), go,
                   {"kind": "1 remote, sequential", "connections": 1, "rep": rep})
    # the room's newest event is the last PDU sent: they were persisted, in order
    last = batch[-1][3][-1]
    j = matrix.call(cx.target.base, "GET", "%s/rooms/%s/messages?dir=b&limit=1" % (CS, seed.quote(st["room"])),
                    token=st["alice"].access_token).json
    newest = (j.get("chunk") or [{}])[0].get("event_id")
    if newest != last and not r.get("error"):
        r["error"] = "the room's newest event is %s, not the last PDU sent (%s)" % (newest, last)


def plan(ctx):
    st = ctx.scenario.state
    return [Step("%d transactions x %d PDUs, sequential (rep %d)" % (st["txns"], PDUS_PER_TXN, rep + 1),
                 2 + st["txns"] * 0.03, lambda cx, rep=rep: _run(cx, rep)) for rep in range(scen.reps(ctx))]


def teardown(ctx):
    st = ctx.scenario.state
    if st.get("remote"):
        st["remote"].client.close()
    if st.get("fake"):
        st["fake"].stop()


def summarize(ctx, sc):
    st = sc.state
    row = scen.row(sc.results, ctx, "1 remote, %d-PDU transactions one at a time: PDUs/s (latency per "
                   "transaction)" % PDUS_PER_TXN, "1 remote, sequential", 1,
                   note="n/a: bound by signature checks and durable writes, not HTTP")
    ta = row["target"] or {}
    txn_s = [r.get("txn_per_s") for r in sc.results if r.get("txn_per_s")]
    extra = ["Each repetition: %d transactions of %d PDUs (%d PDUs), built and signed before the clock started "
             "(%.1f s for all repetitions in Python), sent one at a time over one TLS connection. req/s above is "
             "PDUs accepted per second; latency is per transaction (%s transactions/s)." % (
                 st["txns"], PDUS_PER_TXN, st["txns"] * PDUS_PER_TXN, st.get("build_s", 0),
                 scen.fmt_rps(median(txn_s)) if txn_s else "n/a"),
             "", "The remote: %s; requests it received from the target: %s." % (
                 st["fake"].server_name, ", ".join("%s %d" % kv for kv in sorted(st["fake"].requests.items())))]
    return {"headline": [row], "extra": extra,
            "headline_text": "fed_send_ingest: %s PDUs/s (%d-PDU transactions, p99 %s per transaction)" % (
                scen.fmt_rps(ta.get("rps")), PDUS_PER_TXN, scen.fmt_ms(ta.get("p99_ms")))}
