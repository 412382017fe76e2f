"""remote_join -- a user of axon B joins a room of axon A with 1,000 members
(10,000 with --remote-join-members 1000,10000): how long the join takes and
what it costs the joining server.

A is the run's fresh axon; its room (public, default room version) gets its
members as local users registered and joined through the Client-Server API
(concurrently; that seeding is not measured).  B is a second fresh axon
started by the scenario, on its own data dir and ports, federating with A
over TLS on 127.0.0.1 (the run's CA, `outbound_allow_private = true`).  One
of B's users then calls POST /_matrix/client/v3/join/{roomId}?server_name=A
on B: B asks A for a join template (make_join), signs it and sends it
(send_join); A checks and persists the join and answers with the room's
whole state and auth chain (every member event); B verifies the
signatures and hashes of all of it, runs the auth rules and persists the
state before it answers.  The time is that request's, from B's client; B
is a new server for every measurement (a server already in the room would
join locally).  The table gives B's RSS (idle, peak, after) and both
servers' CPU time during the join; afterwards B must list every member.

The 10,000-member case is opt-in: joining 9,000 more users takes about half
a minute on a 2-core machine (joins slow down as the room grows,
docs/benchmarks.md "Problems found by the suite"), and the join itself a few
seconds more, which the full suite's 10-minute budget does not have.  Not available with --target: it needs two
axons started by bench/run.

Measurements: per room size, the join --reps times (at most 2; the 10,000
case once), each with a fresh B.
"""

import os
import time

from axbench import fed, matrix, scen, seed
from axbench.report import aggregate
from axbench.runner import Step
from axbench.servers import AxonServer
from axbench.util import BenchError, Unsupported, request

NAME = "remote_join"
TITLE = "POST /join on axon B for a room of axon A with 1,000 members (10,000 opt-in): time and B's RSS"
NEEDS = ["POST /_matrix/client/v3/join/{roomIdOrAlias}?server_name=...",
         "GET /_matrix/federation/v1/make_join/{roomId}/{userId}",
         "PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}",
         "two axons federating over TLS on 127.0.0.1 (started by bench/run)"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
AXON_FEDERATION = True
ORDER = 25
PREPARE_S = 6
SIZES_QUICK = (20,)
CS = "/_matrix/client/v3"


def sizes(ctx):
    if ctx.quick:
        return SIZES_QUICK
    return tuple(ctx.opts.remote_join_members)


def setup(ctx):
    fed.check_deps()
    t = ctx.target
    if not isinstance(t, AxonServer):
        raise Unsupported("remote_join needs two axons started by bench/run (not available with --target)")
    if not t.fed_base or ctx.fed_ca is None:
        raise fed.MissingDependency("the fresh axon has no TLS listener (the run's CA could not be made)")
    owner = seed.users(ctx, 1, "axb_rj")[0]
    room = matrix.call(t.base, "POST", CS + "/createRoom", {"preset": "public_chat", "name": "remote join bench"},
                       token=owner.access_token).json["room_id"]
    st = ctx.scenario.state
    st.update(owner=owner, room=room, members=1, sizes=sizes(ctx), b=None, joins=[], seeding={}, n_b=0)
    return []


def _grow(ctx, n):
    """Local users join A's room until it has n members."""
    st = ctx.scenario.state
    add = n - st["members"]
    if add <= 0:
        return
    t0 = time.monotonic()
    users = seed.users(ctx, add, "axb_rjm")
    t1 = time.monotonic()
    seed.join(ctx, users, st["room"], concurrency=64)
    t2 = time.monotonic()
    st["members"] = n
    st["seeding"][n] = {"added": add, "register_s": round(t1 - t0, 1), "join_s": round(t2 - t1, 1)}


def prepare(ctx):
    _grow(ctx, ctx.scenario.state["sizes"][0])


def _stop_b(ctx):
    st = ctx.scenario.state
    b = st.get("b")
    if b is not None:
        st["b"] = None
        rc = b.stop()
        if rc != 0:
            raise BenchError("axon B exited with status %s:\n%s" % (rc, b.log_tail(2000)))


def _join(cx, n, rep):
    st = cx.scenario.state
    a = cx.target
    st["n_b"] += 1
    b = AxonServer(a.binary, os.path.join(cx.workdir, "axon-b%d" % st["n_b"]), a.settings, tls=a.tls, name="axon B")
    os.makedirs(b.workdir)
    b.start()
    st["b"] = b
    cx.sampler.add(b)
    cx.commands.append(("axon B (remote_join)", " ".join(b.command)))
    try:
        user = matrix.register(b.base, no_password=True)
        time.sleep(0.3 if cx.quick else 1.0)
        path = "%s/join/%s?server_name=%s" % (CS, seed.quote(st["room"]), seed.quote(a.server_name))
        info = {}

        def go():
            a_cpu0, a_rss0 = a.cpu_s(), a.rss_kb()
            t0 = time.monotonic()
            r = request(b.base, "POST", path, body={}, token=user.access_token, timeout=600)
            wall = time.monotonic() - t0
            info.update(a_cpu_s=(a.cpu_s() or 0) - (a_cpu0 or 0), a_rss_before_kb=a_rss0, a_rss_end_kb=a.rss_kb())
            ms = wall * 1000.0
            res = {"requests": 1 if r.status == 200 else 0, "duration_s": wall, "rps": 1.0 / wall if wall else None,
                   "p50_ms": ms, "p90_ms": ms, "p99_ms": ms, "max_ms": ms, "mean_ms": ms,
                   "errors": 0 if r.status == 200 else 1, "non2xx": 0 if r.status == 200 else 1,
                   "bytes_per_req": len(r.raw), "error": None}
            if r.status != 200:
                res["error"] = "POST /join on B answered %s: %r" % (r.describe(), r.raw[:300])
            return res, wall

        r = cx.measure(b, "join", "POST %s (on axon B)" % path, go,
                       {"kind": "%d members" % n, "connections": n, "rep": rep})
        r.update(info)
        r["a_peak_kb"] = cx.sampler.peak(a, time.monotonic() - r["wall_s"] - 0.2, time.monotonic())
        if not r.get("error"):
            j = matrix.call(b.base, "GET", "%s/rooms/%s/joined_members" % (CS, seed.quote(st["room"])),
                            token=user.access_token).json
            seen = len((j or {}).get("joined", {}))
            r["members_seen_by_b"] = seen
            if seen != n + 1:
                r["error"] = "after the join B lists %d members, expected %d" % (seen, n + 1)
        st["joins"].append(r)
    finally:
        _stop_b(cx)


def plan(ctx):
    st = ctx.scenario.state
    steps = []
    for i, n in enumerate(st["sizes"]):
        if i > 0:
            steps.append(Step("seeding the room to %d members (not measured)" % n, n / 250.0,
                              lambda cx, n=n: _grow(cx, n)))
        for rep in range(1 if n >= 5000 else scen.reps(ctx)):
            steps.append(Step("%d members: a fresh axon B joins (rep %d)" % (n, rep + 1), 3 + n / 500.0,
                              lambda cx, n=n, rep=rep: _join(cx, n, rep)))
    return steps


def teardown(ctx):
    _stop_b(ctx)


def summarize(ctx, sc):
    st = sc.state
    rows, parts = [], []
    extra = ["| room | join took | B's RSS idle → peak → after | B's CPU | A's CPU | A's RSS peak | answer |",
             "|---|---|---|---|---|---|---|"]
    for n in st["sizes"]:
        # the measurements are axon B's (the joining server), not the run's target
        b = aggregate(sc.results).get(("%d members" % n, n), {}).get("axon B")
        rows.append({"label": "%d members: one POST /join on a new server B (req/s = 1 / its time)" % n, "kind": "%d members" % n,
                     "connections": n, "target": b, "target_name": "axon B", "baseline": None, "ratio": None,
                     "ratio_range": None, "ratio_note": "n/a: one request, timed"})
        for r in [x for x in st["joins"] if x.get("connections") == n]:
            extra.append("| %d members (rep %d) | %s | %s → %s → %s | %s | %.2f s | %s | %s |" % (
                n, r.get("rep", 0) + 1, scen.fmt_ms(r.get("max_ms")), scen.fmt_mb(r.get("rss_before_kb")),
                scen.fmt_mb(r.get("rss_peak_kb")), scen.fmt_mb(r.get("rss_end_kb")),
                "n/a" if r.get("server_cpu_s") is None else "%.2f s" % r["server_cpu_s"], r.get("a_cpu_s") or 0,
                scen.fmt_mb(r.get("a_peak_kb")), r.get("error") or "200, B lists %s members" % r.get(
                    "members_seen_by_b")))
        ta = rows[-1]["target"] or {}
        parts.append("%d members %s" % (n, scen.fmt_ms(ta.get("p50_ms"))))
    extra += ["", "B is a new axon for every join (same binary and settings as A, its own data dir). Seeding A's "
              "room (not measured): " + "; ".join(
                  "to %d members: %d users registered in %.1f s, joined in %.1f s" % (
                      n, s["added"], s["register_s"], s["join_s"]) for n, s in sorted(st["seeding"].items()))]
    if not ctx.quick and 10000 not in st["sizes"]:
        extra += ["", "The 10,000-member case is opt-in (`--remote-join-members 1000,10000`): its seeding alone "
                  "takes about half a minute."]
    return {"headline": rows, "extra": extra, "headline_text": "remote_join: " + "; ".join(parts)}
