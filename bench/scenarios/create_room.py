"""create_room -- POST /_matrix/client/v3/createRoom (preset private_chat).

A room is about six state events (create, the creator's membership, power
levels, join rules, history visibility, guest access), each hashed, signed
and persisted, in one durable commit.  wrk creates rooms round-robin as 8
users.  No nginx ratio: signing and fsync bound it, not HTTP.

Measurements: wrk -t2 -cN -dS for N in 1 and 16, --reps times (at most 2).
"""

from axbench import matrix, scen, seed, wrkscript
from axbench.runner import Step

NAME = "create_room"
TITLE = "POST /_matrix/client/v3/createRoom (rooms/s, ~6 signed state events each, durable)"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/createRoom"]
PATH = "/_matrix/client/v3/createRoom"
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
BODY = '{"preset":"private_chat","name":"bench room"}'
CONNS = (1, 16)
ORDER = 12


def setup(ctx):
    users = seed.users(ctx, 2 if ctx.quick else 8, "axb_cr")
    matrix.call(ctx.target.base, "POST", PATH, {"preset": "private_chat", "name": "bench room"},
                token=users[0].access_token)
    ctx.scenario.state["script"] = wrkscript.write(ctx, NAME, [{"method": "POST", "path": PATH, "body": BODY,
                                                                 "token": u.access_token} for u in users])
    return []


def plan(ctx):
    script = ctx.scenario.state["script"]
    conns = (1, 4) if ctx.quick else CONNS
    ctx.scenario.state["conns"] = conns
    steps = []
    for rep in range(scen.reps(ctx)):
        for c in conns:
            steps.append(Step("wrk -c%d (rep %d)" % (c, rep + 1), ctx.opts.duration + 1.5,
                              lambda cx, c=c, rep=rep: scen.wrk_drained(cx, cx.target, PATH, c, script=script,
                                                                        timeout=10, rep=rep)))
    return steps


def summarize(ctx, sc):
    rows = [scen.row(sc.results, ctx, "wrk -c%d: rooms/s" % c, "wrk", c, note=scen.NO_RATIO_WRITE)
            for c in sc.state["conns"]]
    best = max(rows, key=lambda r: (r["target"] or {}).get("rps") or 0)
    ta = best["target"] or {}
    return {"headline": rows, "headline_text": "create_room: %.0f rooms/s (%s), p99 %s" % (
        ta.get("rps") or 0, best["label"].split(":")[0], scen.fmt_ms(ta.get("p99_ms")))}
