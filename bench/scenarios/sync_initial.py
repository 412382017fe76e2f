"""sync_initial -- GET /_matrix/client/v3/sync with no since token (initial
sync, no filter), for a user in 10, 100 and 1,000 rooms.

The heaviest thing a client asks for: every room's full state, the last
messages, the summaries.  Each room has the user and two other members, its
~6 creation state events and 5 messages.  axon runs initial syncs on its
worker pool (2 threads), so a few connections are enough to keep it busy;
the table gives syncs/s, latency and the bytes of one response.  No nginx
ratio: the server's work per request bounds it, not HTTP.

The sync engine issue's case comes last: a user in 500 rooms with 100
messages each (and the same 3 members and creation state), measured one
request at a time (wrk -t1 -c1), so its p50 is the latency of one initial
sync rather than of queueing behind others (target: under 250 ms).

Measurements: wrk -t2 -c4 -dS --timeout 60s per room count, then wrk -c1
for the 500 x 100 case, --reps times (at most 2).
"""

from axbench import scen, seed
from axbench.runner import Step

NAME = "sync_initial"
TITLE = "GET /_matrix/client/v3/sync (initial, no filter), user in 10/100/1000 rooms, and 500 rooms x 100 messages"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/createRoom",
         "POST /_matrix/client/v3/join/{roomIdOrAlias}",
         "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}", "GET /_matrix/client/v3/sync"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
PATH = "/_matrix/client/v3/sync"
CONNS = 4
ORDER = 16
PREPARE_S = 30


def setup(ctx):
    seed.users(ctx, 1, "axb_init")             # registration works (else: "not supported")
    ctx.scenario.state["counts"] = seed.sync_room_counts(ctx)
    return []


def prepare(ctx):
    seed.sync_users(ctx)                       # shared with sync_incremental
    seed.sync_deep_user(ctx)


def plan(ctx):
    steps = []
    c = 2 if ctx.quick else CONNS
    ctx.scenario.state["conns"] = c
    for rep in range(scen.reps(ctx)):
        for n in ctx.scenario.state["counts"]:
            steps.append(Step("%d rooms, wrk -c%d (rep %d)" % (n, c, rep + 1), ctx.opts.duration + 1,
                              lambda cx, n=n, rep=rep: cx.wrk(
                                  cx.target, PATH, c, timeout=60,
                                  headers=("Authorization: Bearer " + seed.sync_users(cx)[n][0].access_token,),
                                  kind="wrk %d rooms" % n, rep=rep)))
        dn, dper = seed.SYNC_DEEP_QUICK if ctx.quick else seed.SYNC_DEEP
        steps.append(Step("%d rooms x %d messages, wrk -c1 (rep %d)" % (dn, dper, rep + 1), ctx.opts.duration + 1,
                          lambda cx, rep=rep: cx.wrk(
                              cx.target, PATH, 1, timeout=60,
                              headers=("Authorization: Bearer " + seed.sync_deep_user(cx)[0].access_token,),
                              kind="wrk deep", rep=rep)))
    return steps


def summarize(ctx, sc):
    c = sc.state["conns"]
    rows = [scen.row(sc.results, ctx, "user in %d rooms, wrk -c%d: initial syncs/s" % (n, c), "wrk %d rooms" % n, c,
                     note=scen.NO_RATIO_WORK) for n in sc.state["counts"]]
    extra = ["| rooms | initial syncs/s | p50 | p99 | bytes/response | bytes per room |", "|---|---|---|---|---|---|"]
    parts = []
    for n, r in zip(sc.state["counts"], rows):
        ta = r["target"] or {}
        b = ta.get("bytes_per_req")
        extra.append("| %d | %s | %s | %s | %s | %s |" % (
            n, scen.fmt_rps(ta.get("rps")), scen.fmt_ms(ta.get("p50_ms")), scen.fmt_ms(ta.get("p99_ms")),
            "n/a" if b is None else "%.0f" % b, "n/a" if b is None else "%.0f" % (b / n)))
        parts.append("%d rooms %s/s p50 %s %s" % (n, scen.fmt_rps(ta.get("rps")), scen.fmt_ms(ta.get("p50_ms")),
                                                   "n/a" if b is None else "%.0f kB" % (b / 1024.0)))
    _, _, dn, dper = seed.sync_deep_user(ctx)
    deep = scen.row(sc.results, ctx, "user in %d rooms x %d messages, wrk -c1: initial syncs/s" % (dn, dper),
                    "wrk deep", 1, note=scen.NO_RATIO_WORK)
    rows.append(deep)
    ta = deep["target"] or {}
    b = ta.get("bytes_per_req")
    extra += ["", "%d rooms x %d messages, one request at a time (wrk -c1): p50 %s, p99 %s, %s per response" % (
        dn, dper, scen.fmt_ms(ta.get("p50_ms")), scen.fmt_ms(ta.get("p99_ms")),
        "n/a" if b is None else "%.0f kB" % (b / 1024.0))]
    parts.append("%dx%d p50 %s" % (dn, dper, scen.fmt_ms(ta.get("p50_ms"))))
    return {"headline": rows, "extra": extra, "headline_text": "sync_initial: " + "; ".join(parts)}
