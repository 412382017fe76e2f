"""sync_incremental -- GET /_matrix/client/v3/sync?since=...&timeout=0 when
nothing is new, for a user in 10, 100 and 1,000 rooms.

What a client's sync loop costs the server when nothing happened.  axon keeps
a room-change index (the change ring), so an empty incremental sync should
cost the same whatever the number of rooms: the table gives the figure per
room count.  The since token is taken just before each run (a token older
than the change ring falls back to looking at every room).  The baseline is
nginx answering the same bytes as the target's empty answer, so the ratio
prices the sync machinery (token parsing, the access token, the change
index, the JSON) against a constant.

Measurements: wrk -t2 -cN -dS (N = --connections) per room count, and nginx
once per repetition; --reps times (at most 2).
"""

import time

from axbench import matrix, scen, seed
from axbench.runner import Step
from axbench.util import BenchError

NAME = "sync_incremental"
TITLE = "GET /_matrix/client/v3/sync?since=...&timeout=0 with nothing new, user in 10/100/1000 rooms"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/createRoom",
         "POST /_matrix/client/v3/join/{roomIdOrAlias}",
         "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}", "GET /_matrix/client/v3/sync"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
BASELINE_PATH = "/_axb/sync_incremental"
CS = "/_matrix/client/v3"
ORDER = 15
PREPARE_S = 10


def sync_path(token):
    return "%s/sync?since=%s&timeout=0" % (CS, seed.quote(token))


def empty_sync(ctx, user):
    """(path, response) of an incremental sync that has nothing to say: takes a
    token, checks that syncing from it is empty (the first sync of a user may
    still bring its own presence change), tries again if not."""
    for _ in range(5):
        tok = seed.sync_token(ctx, user)
        p = sync_path(tok)
        r = matrix.call(ctx.target.base, "GET", p, token=user.access_token)
        j = r.json if isinstance(r.json, dict) else {}
        news = [k for k in ("rooms", "presence", "account_data", "to_device") if j.get(k)]
        if not news:
            return p, r
        time.sleep(0.2)
    raise BenchError("an incremental sync from a fresh token keeps bringing news: %s" % ", ".join(news))


def setup(ctx):
    # the baseline answers what an empty incremental sync answers (a user in no room)
    user = seed.users(ctx, 1, "axb_incr")[0]
    _, r = empty_sync(ctx, user)
    headers = {k: v for k, v in r.headers.items() if k.startswith("access-control-")}
    ctx.scenario.state["counts"] = seed.sync_room_counts(ctx)
    return [{"path": BASELINE_PATH, "status": 200, "body": r.raw.decode("utf-8"),
             "content_type": r.headers.get("content-type", "application/json"), "headers": headers}]


def prepare(ctx):
    seed.sync_users(ctx)


def _run(cx, n, rep):
    user, rooms = seed.sync_users(cx)[n]
    p, _ = empty_sync(cx, user)
    cx.wrk(cx.target, p, cx.opts.connections, headers=("Authorization: Bearer " + user.access_token,),
           kind="wrk %d rooms" % n, rep=rep)


def plan(ctx):
    steps = []
    c = ctx.opts.connections
    for rep in range(scen.reps(ctx)):
        order = list(ctx.scenario.state["counts"])
        if rep % 2:
            order.reverse()
        if ctx.baseline is not None and rep % 2 == 0:
            steps.append(Step("nginx (rep %d)" % (rep + 1), ctx.opts.duration + 0.5,
                              lambda cx, rep=rep: cx.wrk(cx.baseline, BASELINE_PATH, c, kind="wrk baseline",
                                                         rep=rep)))
        for n in order:
            steps.append(Step("%d rooms, wrk -c%d (rep %d)" % (n, c, rep + 1), ctx.opts.duration + 1,
                              lambda cx, n=n, rep=rep: _run(cx, n, rep)))
        if ctx.baseline is not None and rep % 2 == 1:
            steps.append(Step("nginx (rep %d)" % (rep + 1), ctx.opts.duration + 0.5,
                              lambda cx, rep=rep: cx.wrk(cx.baseline, BASELINE_PATH, c, kind="wrk baseline",
                                                         rep=rep)))
    return steps


def summarize(ctx, sc):
    c = ctx.opts.connections
    rows = []
    for n in sc.state["counts"]:
        row = scen.row(sc.results, ctx, "user in %d rooms, wrk -c%d" % (n, c), "wrk %d rooms" % n, c,
                       baseline_kind="wrk baseline")
        rows.append(row)
    parts = ["%d rooms %s/s (%s)" % (n, scen.fmt_rps((r["target"] or {}).get("rps")), scen.fmt_ms(
        (r["target"] or {}).get("p99_ms"))) for n, r in zip(sc.state["counts"], rows)]
    extra = []
    vals = [(r["target"] or {}).get("rps") for r in rows]
    if all(vals):
        extra = ["Flatness: the user in %d rooms gets %.2f× the syncs/s of the user in %d rooms "
                 "(1.00 = no cost per room)." % (sc.state["counts"][-1], vals[-1] / vals[0], sc.state["counts"][0])]
    return {"headline": rows, "extra": extra,
            "headline_text": "sync_incremental (empty): " + "; ".join(parts)}
