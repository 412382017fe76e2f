"""send -- PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId}:
durable messages/s.

Every message is an event hashed, signed, authorised against the room's
state and persisted; with axon's `sync = true` (the suite's default) the
answer comes after the fsync, and concurrent senders share one (group commit),
so messages/s grows with the number of concurrent senders.  Two layouts: all
senders in one room (8 users), and 50 or 100 rooms (each message goes to
one of the rooms, sent by the room's creator), each at several numbers of
concurrent senders (wrk connections).  Every request has a txn ID unique to
its run and wrk thread (bench/wrk/requests.lua), so none is a replay.  No
nginx ratio: fsync bounds it, not HTTP.

Measurements: wrk -t2 -cN -dS, 1 room at N = 1, 10, 100; 50 rooms at N = 50;
100 rooms at N = 100; --reps times (at most 2).
"""

from axbench import scen, seed, wrkscript
from axbench.runner import Step

NAME = "send"
TITLE = "PUT /_matrix/client/v3/rooms/{roomId}/send/m.room.message/{txnId} (durable, sync = true)"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/createRoom",
         "POST /_matrix/client/v3/join/{roomIdOrAlias}",
         "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
BODY = '{"msgtype":"m.text","body":"benchmark message {n}: the quick brown fox jumps over the lazy dog"}'
ORDER = 13
PREPARE_S = 2
# "50 rooms" at 50 senders is the rooms issue's case (latency p50/p99 at 50 senders in 50 rooms)
LAYOUTS = (("1 room", 1, (1, 10, 100)), ("50 rooms", 50, (50,)), ("100 rooms", 100, (100,)))


def path(room_id):
    return "/_matrix/client/v3/rooms/%s/send/m.room.message/axb-{n}" % seed.quote(room_id)


def setup(ctx):
    seed.users(ctx, 1, "axb_send")             # registration works (else: "not supported")
    return []


def prepare(ctx):
    users = seed.users(ctx, 2 if ctx.quick else 8, "axb_send")
    one = seed.create_rooms(ctx, users[:1], 1, name="send: one room")[0][0]
    seed.join(ctx, users[1:], one)
    many = seed.create_rooms(ctx, users, 4 if ctx.quick else 100, name="send: many rooms")
    seed.send_messages(ctx, [(one, users[0].access_token)])        # the path works
    st = ctx.scenario.state
    st["scripts"] = {
        "1 room": wrkscript.write(ctx, "send-1room", [{"method": "PUT", "path": path(one), "body": BODY,
                                                        "token": u.access_token} for u in users]),
        "50 rooms": wrkscript.write(ctx, "send-50rooms", [{"method": "PUT", "path": path(r), "body": BODY,
                                                           "token": u.access_token} for r, u in many[:50]]),
        "100 rooms": wrkscript.write(ctx, "send-100rooms", [{"method": "PUT", "path": path(r), "body": BODY,
                                                             "token": u.access_token} for r, u in many]),
    }
    st["path"] = path(one).replace("{n}", "x")          # what wrk is pointed at; the script overrides it


def plan(ctx):
    st = ctx.scenario.state
    layouts = (("1 room", 1, (1, 4)), ("100 rooms", 4, (4,))) if ctx.quick else LAYOUTS
    st["layouts"] = layouts
    steps = []
    for rep in range(scen.reps(ctx)):
        for name, _, conns in layouts:
            for c in conns:
                steps.append(Step("%s, wrk -c%d (rep %d)" % (name, c, rep + 1), ctx.opts.duration + 1.5,
                                  lambda cx, name=name, c=c, rep=rep: scen.wrk_drained(
                                      cx, cx.target, st["path"], c, script=st["scripts"][name], timeout=10,
                                      kind="wrk " + name, rep=rep)))
    return steps


def summarize(ctx, sc):
    rows = []
    for name, nrooms, conns in sc.state["layouts"]:
        label = name if not ctx.quick else "%d room%s" % (nrooms, "" if nrooms == 1 else "s")
        for c in conns:
            rows.append(scen.row(sc.results, ctx, "%s, %d concurrent senders: messages/s" % (label, c),
                                 "wrk " + name, c, note=scen.NO_RATIO_WRITE))
    parts = []
    for r in rows:
        ta = r["target"] or {}
        parts.append("%s %.0f/s" % (r["label"].split(":")[0].replace(" concurrent senders", " senders"),
                                    ta.get("rps") or 0))
    return {"headline": rows, "headline_text": "send (durable): " + "; ".join(parts)}
