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

Measurements: each case --reps times (at most 2; the 10,000 case once).
"""

import json
import os
import resource
import select
import subprocess
import sys
import time

from axbench import scen, seed
from axbench.runner import ROOT, Step
from axbench.util import BenchError, median

NAME = "sync_wakeup"
TITLE = "long-poll /sync: N idle long-polls, one send, time until all woke; RSS per idle long-poll"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/createRoom",
         "POST /_matrix/client/v3/join/{roomIdOrAlias}",
         "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
         "GET /_matrix/client/v3/sync?since=...&timeout=... (long-poll)"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
LOADGEN = os.path.join(ROOT, "bench", "loadgen", "longpoll.py")
BIG, SMALL = 1000, 10
CS = "/_matrix/client/v3"
ORDER = 17
PREPARE_S = 4


def cases(ctx):
    """(label, room key, polls per user, reps)"""
    if ctx.quick:
        return [("20 long-polls, 20-member room", "big", 1, 1), ("100 long-polls, 20-member room", "big", 5, 1),
                ("30 long-polls, 3-member room", "small", 10, 1)]
    r = scen.reps(ctx)
    return [("1,000 long-polls, 1,000-member room (1 per member)", "big", 1, r),
            ("10,000 long-polls, 1,000-member room (10 per member)", "big", 10, 1),
            ("1,000 long-polls, 10-member room (100 per member)", "small", 100, r)]


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


def fd_limit():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _run(cx, label, key, per_user, rep):
    st = cx.scenario.state
    room, members = st["rooms"][key]
    n = len(members) * per_user
    token = seed.sync_token(cx, members[0], query="&set_presence=offline")
    polls = [{"token": u.access_token, "since": token} for _ in range(per_user) for u in members]
    cfg = {"base": cx.target.base, "polls": polls, "query": "&set_presence=offline", "timeout_ms": 120000,
           "room_id": room, "settle_s": 0.3 if cx.quick else 1.0, "wake_deadline_s": 90,
           "send": {"path": "%s/rooms/%s/send/m.room.message/axb-wake-%d-%d" % (
               CS, seed.quote(room), os.getpid(), int(time.time() * 1000)),
               "token": members[0].access_token, "body": {"msgtype": "m.text", "body": "wake up"}}}
    cfg_path = os.path.join(cx.workdir, "longpoll-%s-%d-%d.json" % (key, n, rep))
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    cmd = [sys.executable, LOADGEN, cfg_path]
    server = cx.target
    log_path = cx._raw_path("longpoll", server)
    extra = {}

    def go():
        rss_idle, anon_idle = server.rss_kb(), server.rss_anon_kb()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        out = []
        try:
            parked = _readline(proc, 180, out)
            if not parked.startswith("parked"):
                raise BenchError("longpoll.py: %s" % "".join(out)[-1500:])
            time.sleep(0.3)
            rss_parked, anon_parked = server.rss_kb(), server.rss_anon_kb()
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = _readline(proc, 150, out)
            proc.wait(30)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
                proc.wait()
        wall = time.monotonic() - t0
        with open(log_path, "w") as f:
            f.write("$ %s\n%s" % (" ".join(cmd), "".join(out)))
        try:
            res = json.loads(line)
        except ValueError:
            raise BenchError("longpoll.py: %s" % "".join(out)[-1500:])
        lat = res.pop("wake_ms")
        from axbench.util import percentile
        r = {"requests": res["woken"], "duration_s": (lat[-1] / 1000.0) if lat else None,
             "rps": res["woken"] / (lat[-1] / 1000.0) if lat and lat[-1] > 0 else None,
             "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
             "max_ms": lat[-1] if lat else None, "mean_ms": sum(lat) / len(lat) if lat else None,
             "errors": res["errors"] + res["not_woken"] + res["missing_event"], "non2xx": 0,
             "bytes_per_req": res["bytes_per_response"], "error": None}
        if res["send_status"] != 200:
            r["error"] = "the send answered %s" % res["send_status"]
        elif res["woken"] == 0:
            r["error"] = "no long-poll answered: %s" % res["error_samples"][:2]
        r.update(longpoll=res, rss_idle_kb=rss_idle, rss_parked_kb=rss_parked, anon_idle_kb=anon_idle,
                 anon_parked_kb=anon_parked,
                 rss_per_poll_kb=(rss_parked - rss_idle) / float(n) if rss_idle and rss_parked else None,
                 anon_per_poll_kb=(anon_parked - anon_idle) / float(n) if anon_idle and anon_parked else None)
        extra["r"] = r
        return r, wall

    cx.measure(server, "longpoll", " ".join(cmd), go,
               {"kind": label, "connections": n, "rep": rep, "raw_log": log_path})


def _readline(proc, timeout, out):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if line.startswith("parked") or line.startswith("{"):
                return line
    raise BenchError("longpoll.py did not answer within %ds: %s" % (timeout, "".join(out)[-1500:]))


def plan(ctx):
    st = ctx.scenario.state
    steps = []
    limit = fd_limit()
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
    for s in st["skipped"]:
        extra.append("")
        extra.append("- " + s)
    return {"headline": rows, "extra": extra, "notes": st["skipped"],
            "headline_text": "sync_wakeup: " + "; ".join(parts)}
