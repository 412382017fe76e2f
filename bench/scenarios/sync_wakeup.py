"""sync_wakeup -- N idle /sync long-polls, one message, and how long until
every long-poll answered; and the memory the idle long-polls cost.

A load generator of the suite's own (bench/loadgen/longpoll.py, Python
asyncio: wrk cannot hold idle requests) opens one connection per long-poll
and sends GET /sync?since=TOKEN&timeout=120000&set_presence=offline; once all
are parked it PUTs one message into the room and times every answer, from
just before the PUT was written to the last byte of each answer.  The
long-polls come from the members of one room of 1,000 users: 1,000 long-polls
(one per member) and 10,000 (ten per member, as if each had ten devices);
and, to show what the room's size costs, 1,000 long-polls from the ten members
of a 10-member room.  Every long-poll starts from the same since token (sync
tokens are positions in the server's one stream, valid for any user), taken
after the seeding, and passes set_presence=offline so that presence updates
do not wake anyone early; a long-poll that answers before the send anyway is
sent again from its new token (counted as "early").  The server's RSS is read
before the long-polls and once they are all parked: the difference divided by
N is what an idle long-poll costs.  The 10,000 case needs 10,000 sockets in
the client and in the server: bench/run raises RLIMIT_NOFILE (soft to hard,
and the hard limit when it may) and skips the case when that is too low.
There is no nginx ratio: nginx cannot play this game.  The load generator's
times include its own work (Python, sharing the two cores with the server).

The sync engine issue's case ("flow", first, with bench/loadgen/wakeflow.py):
9,900 users in no room each park one long-poll for the whole run, and each of
the 100 members of one room holds a long-poll and re-polls at once from every
answer's next_batch; 2,000 messages go into the room at a paced 500/s.  Every
(message, member) pair is one delivery, timed from just before its PUT was
written to the end of the answer that carries it.  Reported: p50/p99/max,
missing deliveries, idle long-polls that answered (none may), the send's own
latency, the server's CPU per answer during the flow, and the server's RSS
with all 10,000 parked.  With --quick: 40 idle, 10 members, 50 messages/s for
1 s.  AXB_WAKE_FLOW_ONLY=1 in the environment runs this case alone.

Measurements: each case --reps times (at most 2; the 10,000 case once; the
flow case once).
"""

import os
import resource
import time

from axbench import scen, seed, wakeup
from axbench.runner import Step
from axbench.util import median

NAME = "sync_wakeup"
TITLE = "long-poll /sync: N idle long-polls, one send, time until all woke; RSS per idle long-poll"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/createRoom",
         "POST /_matrix/client/v3/join/{roomIdOrAlias}",
         "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
         "GET /_matrix/client/v3/sync?since=...&timeout=... (long-poll)"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
BIG, SMALL = 1000, 10
# the flow case: idle long-polls, members of the room, messages/s, seconds of sending
FLOW = {"idle": 9900, "members": 100, "rate": 500, "seconds": 4}
FLOW_QUICK = {"idle": 40, "members": 10, "rate": 50, "seconds": 1}
# members sync as a client with a filter would; the timeline limit (1000, the most axon gives) is
# high enough that an answer is not cut short ("limited") by what arrived while the member was away
# the idle long-polls' timeout: longer than connecting, parking and the flow take, short enough
# that the case can wait for them to end (see _run_flow)
FLOW_IDLE_TIMEOUT_S = 45
FLOW_FILTER = '{"room":{"timeline":{"limit":1000}},"presence":{"types":[]}}'
CS = "/_matrix/client/v3"
ORDER = 17
PREPARE_S = 20


def cases(ctx):
    """(label, room key, polls per user, reps)"""
    if ctx.quick:
        return [("20 long-polls, 20-member room", "big", 1, 1), ("100 long-polls, 20-member room", "big", 5, 1),
                ("30 long-polls, 3-member room", "small", 10, 1)]
    r = scen.reps(ctx)
    return [("1,000 long-polls, 1,000-member room (1 per member)", "big", 1, r),
            ("10,000 long-polls, 1,000-member room (10 per member)", "big", 10, 1),
            ("1,000 long-polls, 10-member room (100 per member)", "small", 100, r)]


def flow_sizes(ctx):
    return FLOW_QUICK if ctx.quick else FLOW


def flow_label(ctx):
    fs = flow_sizes(ctx)
    return "%s idle long-polls + %d members of a %d-member room, %d msgs/s into it" % (
        "{:,}".format(fs["idle"]), fs["members"], fs["members"], fs["rate"])


def sizes(ctx):
    return {"big": 20, "small": 3} if ctx.quick else {"big": BIG, "small": SMALL}


def setup(ctx):
    seed.users(ctx, 1, "axb_wake")             # registration works (else: "not supported")
    st = ctx.scenario.state
    st["cases"] = cases(ctx)
    st["skipped"] = []
    return []


def prepare(ctx):
    big_n, small_n = sizes(ctx)["big"], sizes(ctx)["small"]
    users = seed.users(ctx, big_n + small_n, "axb_wake")
    big, small = users[:big_n], users[big_n:]
    rooms = {}
    for key, members in (("big", big), ("small", small)):
        room = seed.create_rooms(ctx, members[:1], 1, name="wake-up bench")[0][0]
        seed.join(ctx, members[1:], room, concurrency=32)
        rooms[key] = (room, members)
    ctx.scenario.state["rooms"] = rooms
    fs = flow_sizes(ctx)
    idle = seed.users(ctx, fs["idle"], "axb_idle")
    members = seed.users(ctx, fs["members"], "axb_flow")
    room = seed.create_rooms(ctx, members[:1], 1, name="wake-up flow bench")[0][0]
    seed.join(ctx, members[1:], room, concurrency=32)
    ctx.scenario.state["flow"] = (room, members, idle)


def fd_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _run(cx, label, key, per_user, rep):
    st = cx.scenario.state
    room, members = st["rooms"][key]
    token = seed.sync_token(cx, members[0], query="&set_presence=offline")
    polls = [{"token": u.access_token, "since": token} for _ in range(per_user) for u in members]
    send = {"path": "%s/rooms/%s/send/m.room.message/axb-wake-%d-%d" % (
        CS, seed.quote(room), os.getpid(), int(time.time() * 1000)),
        "token": members[0].access_token, "body": {"msgtype": "m.text", "body": "wake up"}}
    wakeup.measure(cx, label, key, polls, send, {"rep": rep}, room_id=room)


def _run_flow(cx, label, rep):
    fs = flow_sizes(cx)
    room, members, idle = cx.scenario.state["flow"]
    token = seed.sync_token(cx, members[0], query="&set_presence=offline")
    cfg = {"idle": [{"token": u.access_token, "since": token} for u in idle],
           "members": [{"token": u.access_token, "since": token} for u in members],
           "query": "&set_presence=offline&filter=" + seed.quote(FLOW_FILTER), "timeout_ms": 120000,
           "idle_timeout_ms": FLOW_IDLE_TIMEOUT_S * 1000,
           "room_id": room, "rate": fs["rate"], "count": fs["rate"] * fs["seconds"],
           "senders": [u.access_token for u in members], "send_conns": 64, "drain_s": 10,
           "txn_prefix": "axb-flow-%d-%d" % (os.getpid(), int(time.time() * 1000))}
    wakeup.measure_flow(cx, label, "flow", cfg, {"rep": rep})
    # axon (h2o 2.2.5) notices that a client closed a parked long-poll only when the long-poll
    # answers: wait for the idle ones to time out, so the next cases find the server's sockets free
    pids = cx.target.pids()
    deadline = time.monotonic() + FLOW_IDLE_TIMEOUT_S + 15
    while pids and time.monotonic() < deadline and _open_fds(pids[0]) > len(idle) // 10 + 200:
        time.sleep(0.5)


def _open_fds(pid):
    try:
        return len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return 0


def plan(ctx):
    st = ctx.scenario.state
    steps = []
    limit = fd_limit()
    # the flow case first: its RSS with 10,000 parked is then not inflated by the memory the
    # 10,000-answer case below leaves in the allocator
    fs = flow_sizes(ctx)
    n = fs["idle"] + fs["members"]
    label = flow_label(ctx)
    st["flow_label"] = label
    if limit != resource.RLIM_INFINITY and n + 300 > limit:
        st["skipped"].append("%s: skipped, the open-files limit is %d (needs %d + some)" % (label, limit, n))
    else:
        est = 8 + n / 700.0 + fs["seconds"] + (0 if ctx.quick else FLOW_IDLE_TIMEOUT_S)
        steps.append(Step(label, est, lambda cx, label=label: _run_flow(cx, label, 0)))
    if os.environ.get("AXB_WAKE_FLOW_ONLY"):
        return steps
    for label, key, per_user, r in st["cases"]:
        n = sizes(ctx)[key] * per_user
        if limit != resource.RLIM_INFINITY and n + 200 > limit:
            st["skipped"].append("%s: skipped, the open-files limit is %d (needs %d + some)" % (label, limit, n))
            continue
        for rep in range(r):
            steps.append(Step("%s (rep %d)" % (label, rep + 1), 3 + n / 700.0,
                              lambda cx, label=label, key=key, per_user=per_user, rep=rep:
                              _run(cx, label, key, per_user, rep)))
    return steps


def summarize(ctx, sc):
    st = sc.state
    rows, extra, parts = [], [], []
    extra += ["Wake-up latency: from just before the PUT was written to the last byte of each long-poll's answer; "
              "req/s here = long-polls answered / time until the last answered.", "",
              "| case | all woke (max) | p50 | p99 | the send answered after | early answers | RSS per idle long-poll "
              "(anonymous) | server RSS idle → parked (anonymous) |", "|---|---|---|---|---|---|---|---|"]
    for label, key, per_user, _ in st["cases"]:
        rs = [r for r in sc.results if r.get("kind") == label]
        if not rs:
            continue
        n = rs[0]["connections"]
        rows.append(scen.row(sc.results, ctx, label, label, n, note="n/a: not an HTTP throughput measurement"))
        send = median([r["longpoll"]["send_ms"] for r in rs if r.get("longpoll")])
        per = median([r.get("rss_per_poll_kb") for r in rs])
        anon = median([r.get("anon_per_poll_kb") for r in rs])
        early = sum(r["longpoll"]["early"] for r in rs if r.get("longpoll"))
        ta = rows[-1]["target"] or {}
        extra.append("| %s | %s | %s | %s | %s | %d | %s (%s) | %s → %s (%s → %s) |" % (
            label, scen.fmt_ms(ta.get("max_ms")), scen.fmt_ms(ta.get("p50_ms")), scen.fmt_ms(ta.get("p99_ms")),
            scen.fmt_ms(send), early, "n/a" if per is None else "%.1f kB" % per,
            "n/a" if anon is None else "%.1f kB" % anon,
            scen.fmt_mb(rs[0].get("rss_idle_kb")), scen.fmt_mb(rs[0].get("rss_parked_kb")),
            scen.fmt_mb(rs[0].get("anon_idle_kb")), scen.fmt_mb(rs[0].get("anon_parked_kb"))))
        parts.append("%s: all woke in %s" % (label.split(" (")[0], scen.fmt_ms(ta.get("max_ms"))))
    extra += ["", "RSS per idle long-poll = (RSS with all parked − RSS before) / N, read 0.3 s after the last "
              "was parked. It is a lower bound: memory the server freed earlier in the run (seeding, other "
              "scenarios) is reused first, so the first cases can show almost nothing. Anonymous = RssAnon "
              "(heap, stacks), without the database pages mapped from disk."]
    checks = []
    label = st.get("flow_label")
    rs = [r for r in sc.results if label is not None and r.get("kind") == label and r.get("flow")]
    if rs:
        r, fl = rs[0], rs[0]["flow"]
        rows.append(scen.row(sc.results, ctx, label + ": deliveries", label, r["connections"],
                             note="n/a: not an HTTP throughput measurement"))
        extra += ["", "The issue's case: %s idle long-polls (users in no room, parked with timeout=120 s for the "
                  "whole run) and one long-poll from each of the %d members of a room; %d messages sent into "
                  "the room at %d/s (round-robin from its members, up to 64 PUTs in flight; the rate actually reached is given); every member "
                  "re-polls at once from its new next_batch. Latency per (message, member) delivery: from just "
                  "before the PUT was written to the end of the member's /sync answer that carries it; req/s "
                  "here = deliveries / time from the first send until every member had every message." % (
                      "{:,}".format(fl["idle"]), fl["members"], fl["messages"], fl["rate"]), "",
                  "| messages/s sent | deliveries (expected) | p50 | p99 | max | the send: p50 / p99 | member answers (limited) "
                  "| idle long-polls that answered | server CPU per member answer, during the flow | "
                  "server CPU / load generator CPU | server RSS idle → "
                  "%s parked (anonymous) |" % "{:,}".format(r["connections"]),
                  "|---|---|---|---|---|---|---|---|---|---|---|",
                  "| %.0f | %d (%d) | %s | %s | %s | %s / %s | %d (%d) | %d | %s | %s%% / %s%% | %s → %s (%s → %s) |" % (
                      fl["messages"] / fl["send_s"] if fl["send_s"] else 0.0,
                      fl["delivered"], fl["expected"], scen.fmt_ms(fl["p50_ms"]), scen.fmt_ms(fl["p99_ms"]),
                      scen.fmt_ms(fl["max_ms"]), scen.fmt_ms(fl["send_p50_ms"]), scen.fmt_ms(fl["send_p99_ms"]),
                      fl["answers"], fl["limited"], fl["idle_answers"],
                      "n/a" if fl.get("server_cpu_us_per_answer") is None
                      else "%.0f µs" % fl["server_cpu_us_per_answer"],
                      r.get("server_cpu_pct"),
                      None if fl["client_cpu_pct"] is None else round(fl["client_cpu_pct"], 1),
                      scen.fmt_mb(r.get("rss_idle_kb")), scen.fmt_mb(r.get("rss_parked_kb")),
                      scen.fmt_mb(r.get("anon_idle_kb")), scen.fmt_mb(r.get("anon_parked_kb")))]
        parts.append("flow: p99 %s over %d deliveries, RSS parked %s" % (
            scen.fmt_ms(fl["p99_ms"]), fl["delivered"], scen.fmt_mb(r.get("rss_parked_kb"))))
        if not ctx.quick:
            rss = r.get("rss_parked_kb")
            checks = [{"what": "wake-up p99, %s" % label, "value": scen.fmt_ms(fl["p99_ms"]), "goal": "< 20 ms",
                       "met": None if fl["p99_ms"] is None or fl["missing"] else fl["p99_ms"] < 20.0},
                      {"what": "server RSS with %s long-polls parked" % "{:,}".format(r["connections"]),
                       "value": scen.fmt_mb(rss), "goal": "< 150 MB",
                       "met": None if not rss else rss < 150 * 1024}]
            if ctx.fresh_rss_kb is None or sc.ran_before:
                # what other scenarios left mapped and allocated is in that RSS: not this target's
                checks[1]["value"] += " (not a fresh axon: %s ran on it before; run sync_wakeup alone)" % (
                    "%d scenarios" % len(sc.ran_before) if sc.ran_before else "--target")
                checks[1]["met"] = None
    for s in st["skipped"]:
        extra.append("")
        extra.append("- " + s)
    return {"headline": rows, "extra": extra, "notes": st["skipped"], "checks": checks,
            "headline_text": "sync_wakeup: " + "; ".join(parts)}
