"""keys_claim -- POST /_matrix/client/v3/keys/claim: one-time-key claims/s
after uploading 10,000 keys.

One user's device uploads 10,000 signed_curve25519 one-time keys (in
batches of 2,000); another user then claims them, one key per request, as a
client does before it opens an Olm session.  A claim hands a key out once
and deletes it in the same write transaction, durably (with `sync = true`
the answer waits for the fsync; concurrent claims share one, group commit),
so this is a write benchmark.  Before each run the device's
keys are topped up to 10,000; a run is exactly 9,000 claims, by h2load over
HTTP/1.1 (wrk runs for a time, and at tens of thousands of claims a second
the keys would run out and later claims measure nothing); afterwards the
device must have lost exactly one key per successful claim.  No nginx
ratio: the writer and the fsync bound it, not HTTP.

Measurements: h2load --h1 -n 9000 -cN (N = --connections) POSTing the
claim, --reps times (at most 2).
"""

import json
import os
import secrets

from axbench import fed, matrix, scen, seed
from axbench.runner import Step
from axbench.util import BenchError

NAME = "keys_claim"
TITLE = "POST /_matrix/client/v3/keys/claim: one-time-key claims/s (each a durable delete) from 10,000 keys"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/keys/upload",
         "POST /_matrix/client/v3/keys/claim"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
ORDER = 22
KEYS, KEYS_QUICK = 10000, 200
CLAIMS, CLAIMS_QUICK = 9000, 150        # per run: fewer than the keys, so they never run out
BATCH = 2000
ALG = "signed_curve25519"
CS = "/_matrix/client/v3"


def _keys(prefix, n):
    """n one-time keys shaped like a client's (a Curve25519 key and a signature; the server checks the shape)."""
    out = {}
    for i in range(n):
        out["%s:%s%06d" % (ALG, prefix, i)] = {
            "key": secrets.token_urlsafe(32)[:43],
            "signatures": {"@x:x": {"ed25519:BENCH": secrets.token_urlsafe(64)[:86]}}}
    return out


def _count(ctx, owner):
    r = matrix.call(ctx.target.base, "POST", CS + "/keys/upload", {}, token=owner.access_token)
    return ((r.json or {}).get("one_time_key_counts") or {}).get(ALG, 0)


def _top_up(ctx, owner, want):
    """Uploads keys until the device has 'want'; returns how many it had."""
    have = _count(ctx, owner)
    missing = want - have
    while missing > 0:
        n = min(BATCH, missing)
        r = matrix.call(ctx.target.base, "POST", CS + "/keys/upload",
                        {"one_time_keys": _keys(secrets.token_hex(4), n)}, token=owner.access_token)
        got = ((r.json or {}).get("one_time_key_counts") or {}).get(ALG, 0)
        if got < want - missing + n:
            raise BenchError("keys/upload of %d keys: the device has %d, expected %d" % (n, got, want - missing + n))
        missing -= n
    return have


def setup(ctx):
    if not ctx.has_h2load:
        raise fed.MissingDependency("needs h2load (nghttp2-client; scripts/install-deps.sh bench)")
    owner, claimer = seed.users(ctx, 2, "axb_keys")
    _top_up(ctx, owner, 1)
    body = {"one_time_keys": {owner.user_id: {owner.device_id: ALG}}}
    r = matrix.call(ctx.target.base, "POST", CS + "/keys/claim", body, token=claimer.access_token)
    got = (((r.json or {}).get("one_time_keys") or {}).get(owner.user_id) or {}).get(owner.device_id) or {}
    if not any(k.startswith(ALG + ":") for k in got):
        raise BenchError("keys/claim handed out no key: %r" % r.raw[:300])
    st = ctx.scenario.state
    st.update(owner=owner, claimer=claimer, keys=KEYS_QUICK if ctx.quick else KEYS,
              claims=CLAIMS_QUICK if ctx.quick else CLAIMS, runs=[])
    return []


def prepare(ctx):
    st = ctx.scenario.state
    _top_up(ctx, st["owner"], st["keys"])
    path = os.path.join(ctx.workdir, "keys_claim.json")
    with open(path, "w") as f:
        json.dump({"one_time_keys": {st["owner"].user_id: {st["owner"].device_id: ALG}}}, f)
    st["body"] = path


def _run(cx, rep):
    st = cx.scenario.state
    owner = st["owner"]
    _top_up(cx, owner, st["keys"])
    before = _count(cx, owner)
    scen.drain(cx)
    r = cx.h2load(cx.target, CS + "/keys/claim", st["claims"], cx.opts.connections, 1, h1=True, data=st["body"],
                  headers=("Authorization: Bearer " + st["claimer"].access_token,
                           "Content-Type: application/json"), kind="h2load", rep=rep)
    left = _count(cx, owner)
    # every successful claim took one key, and no more keys went than there were claims
    ok = r.get("requests") or 0
    r.update(keys_before=before, keys_left=left)
    if not r.get("error") and before - left != ok:
        r["error"] = "%d keys before, %d after, but %d claims succeeded" % (before, left, ok)
    st["runs"].append({"rep": rep, "before": before, "left": left, "requests": ok})


def plan(ctx):
    c = ctx.opts.connections
    return [Step("h2load --h1 -c%d, %d claims (rep %d)" % (c, ctx.scenario.state["claims"], rep + 1),
                 3, lambda cx, rep=rep: _run(cx, rep)) for rep in range(scen.reps(ctx))]


def summarize(ctx, sc):
    st = sc.state
    c = ctx.opts.connections
    row = scen.row(sc.results, ctx, "h2load --h1 -c%d: claims/s (1 key each, durable delete)" % c, "h2load", c,
                   note=scen.NO_RATIO_WRITE)
    ta = row["target"] or {}
    extra = ["Each run: the device topped up to %d one-time keys, then exactly %d claims over %d HTTP/1.1 "
             "keep-alive connections (h2load counts requests, so the keys cannot run out as a timed run's could). "
             "Keys before → after each run: %s." % (
                 st["keys"], st["claims"], c,
                 ", ".join("%d → %d (%d claims)" % (x["before"], x["left"], x["requests"]) for x in st["runs"])
                 or "n/a")]
    return {"headline": [row], "extra": extra,
            "headline_text": "keys_claim: %s claims/s, p99 %s" % (scen.fmt_rps(ta.get("rps")),
                                                                 scen.fmt_ms(ta.get("p99_ms")))}
