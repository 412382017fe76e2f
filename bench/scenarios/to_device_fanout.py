"""to_device_fanout -- PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}
to 100 devices of 10 users: messages/s, and delivery latency via /sync.

Ten users with ten devices each (a registration and nine password logins
per user: argon2id, the slow part of the seeding).  Every message is
addressed to each of the 100 devices by its ID, as an E2EE client addresses
Olm-encrypted messages, so one request writes 100 inbox entries (durably,
`sync = true`) and wakes those devices' /sync.

- Delivery latency: the 100 devices each hold a /sync long-poll
  (bench/loadgen/longpoll.py, set_presence=offline, all from one fresh since
  token); one message goes to all 100, and the time from just before the PUT
  to each long-poll's answer (which must carry the message) is recorded.
- Throughput: wrk PUTs messages to all 100 devices with unique txn IDs from
  10 connections (as one sender's device), nobody syncing.

No nginx ratio: the writes and the wake-ups bound it, not HTTP.  A fresh
axon gets the `[ratelimit]` login and registration keys raised; another
homeserver needs its login limits raised for the 90 logins.

Measurements: the wake-up --reps times (at most 2), then wrk -t2 -c10 -dS
--reps times (at most 2).
"""

import json
import time

from axbench import aio, matrix, scen, seed, wakeup, wrkscript
from axbench.runner import Step
from axbench.util import BenchError, median

NAME = "to_device_fanout"
TITLE = "PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId} to 100 devices of 10 users; delivery via /sync"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/login (m.login.password)",
         "PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}", "GET /_matrix/client/v3/sync (long-poll)"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000",
                 "ratelimit.login_per_second": "100000", "ratelimit.login_burst": "100000"}
ORDER = 23
PREPARE_S = 10
USERS, DEVICES = 10, 10
USERS_QUICK, DEVICES_QUICK = 2, 3
CONNS = 10
EVENT_TYPE = "m.axb.bench"
CS = "/_matrix/client/v3"


def shape(ctx):
    return (USERS_QUICK, DEVICES_QUICK) if ctx.quick else (USERS, DEVICES)


def setup(ctx):
    sender = seed.users(ctx, 1, "axb_tds")[0]
    # the endpoint exists (a message to nobody)
    matrix.call(ctx.target.base, "PUT", "%s/sendToDevice/%s/axb-setup-%d" % (CS, EVENT_TYPE, int(time.time() * 1000)),
                {"messages": {}}, token=sender.access_token)
    nu, nd = shape(ctx)
    ctx.scenario.state.update(sender=sender, users=nu, devices=nd)
    return []


def prepare(ctx):
    st = ctx.scenario.state
    nu, nd = st["users"], st["devices"]
    users = seed.users(ctx, nu, "axb_td", password=True)
    devices = [(u.user_id, u.device_id, u.access_token) for u in users]
    t0 = time.monotonic()
    calls = [aio.Call("POST", CS + "/login", {"type": "m.login.password", "password": u.password,
                                             "identifier": {"type": "m.id.user", "user": u.user_id},
                                             "initial_device_display_name": "axon bench %d" % k})
             for u in users for k in range(1, nd)]
    resps = aio.expect_ok(aio.batch(ctx.target.base, calls, 8), calls, "seeding logins")
    for c, r in zip(calls, resps):
        j = r.json or {}
        devices.append((j["user_id"], j["device_id"], j["access_token"]))
    seed.note(ctx, "logged in %d more devices in %.1f s" % (len(calls), time.monotonic() - t0))
    if len({d[1] for d in devices}) != nu * nd:
        raise BenchError("expected %d distinct devices, got %d" % (nu * nd, len({d[1] for d in devices})))
    st["targets"] = devices
    messages = {}
    for user_id, device_id, _ in devices:
        messages.setdefault(user_id, {})[device_id] = {"marker": "{n}", "body": "to-device benchmark"}
    body = json.dumps({"messages": messages})
    st["script"] = wrkscript.write(ctx, NAME, [{"method": "PUT", "path": "%s/sendToDevice/%s/axb-{n}" % (
        CS, EVENT_TYPE), "body": body, "token": st["sender"].access_token}])
    st["path"] = "%s/sendToDevice/%s/axb-x" % (CS, EVENT_TYPE)


def _wake(cx, rep):
    st = cx.scenario.state
    token = seed.sync_token(cx, st["sender"], query="&set_presence=offline")
    polls = [{"token": tok, "since": token} for _, _, tok in st["targets"]]
    marker = "axb-wake-%d-%d" % (rep, int(time.time() * 1000))
    messages = {}
    for user_id, device_id, _ in st["targets"]:
        messages.setdefault(user_id, {})[device_id] = {"marker": marker, "body": "wake up"}
    send = {"path": "%s/sendToDevice/%s/%s" % (CS, EVENT_TYPE, marker), "token": st["sender"].access_token,
            "body": {"messages": messages}}
    wakeup.measure(cx, "delivery", NAME, polls, send, {"rep": rep}, check="to_device", marker=marker)


def plan(ctx):
    st = ctx.scenario.state
    n = st["users"] * st["devices"]
    steps = [Step("%d long-polls, one message to all (rep %d)" % (n, rep + 1), 3,
                  lambda cx, rep=rep: _wake(cx, rep)) for rep in range(scen.reps(ctx))]
    steps += [Step("wrk -c%d, each message to %d devices (rep %d)" % (CONNS, n, rep + 1), ctx.opts.duration + 1.5,
                   lambda cx, rep=rep: scen.wrk_drained(cx, cx.target, st["path"], CONNS, script=st["script"],
                                                        timeout=10, kind="wrk", rep=rep))
              for rep in range(scen.reps(ctx))]
    return steps


def summarize(ctx, sc):
    st = sc.state
    n = st["users"] * st["devices"]
    rows = [scen.row(sc.results, ctx, "wrk -c%d: messages/s, each to %d devices of %d users" % (
        CONNS, n, st["users"]), "wrk", CONNS, note=scen.NO_RATIO_WRITE),
            scen.row(sc.results, ctx, "delivery to %d long-polling devices (req/s = answers / time to the last)" % n,
                     "delivery", n, note="n/a: not an HTTP throughput measurement")]
    tp, dl = rows[0]["target"] or {}, rows[1]["target"] or {}
    sends = [r["longpoll"]["send_ms"] for r in sc.results if r.get("longpoll")]
    extra = ["Throughput: %s messages/s = %s device deliveries/s written (each message to %d devices)." % (
        scen.fmt_rps(tp.get("rps")), scen.fmt_rps(tp["rps"] * n) if tp.get("rps") else "n/a", n),
        "",
        "Delivery: one message to all %d devices while each holds a /sync long-poll; time from just before the "
        "PUT to each answer: p50 %s, p99 %s, all delivered after %s (the PUT itself answered after %s)." % (
            n, scen.fmt_ms(dl.get("p50_ms")), scen.fmt_ms(dl.get("p99_ms")), scen.fmt_ms(dl.get("max_ms")),
            scen.fmt_ms(median(sends)))]
    return {"headline": rows, "extra": extra,
            "headline_text": "to_device_fanout: %s messages/s to %d devices; all %d long-polls answered in %s" % (
                scen.fmt_rps(tp.get("rps")), n, n, scen.fmt_ms(dl.get("max_ms")))}
