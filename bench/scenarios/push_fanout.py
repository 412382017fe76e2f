"""push_fanout -- message sends into a room of 500 local members against a room of 2: what push evaluation costs per event.

Every event a room stores runs the push rules of every local member except
the sender, in the writer's transaction, and each notification bumps that
member's unread count and records it for GET /notifications (core/push.c).
With the default rules every member of a big room is notified of every
m.room.message, so a send into the 500-member room does 499 evaluations and
about 1,000 small writes where a send into the 2-member room does one.  The
scenario measures both with the same wrk load and reports the paired ratio
(500 / 2, repetitions back to back) and the server CPU per event.  No pusher
is registered: delivery to gateways happens on another thread and is not
part of a send.

Right before its measurements (prepare, not measured, so the earlier
scenarios' memory figures do not carry it) the scenario registers 500 users
(5 with --quick) with m.login.dummy and no password (nobody logs in, so no
argon2id hash is computed: seeding takes a second rather than a minute),
creates both rooms with the first user and joins the others.  A fresh axon
gets the `[ratelimit]` registration keys raised (AXON_SETTINGS); another
homeserver needs its registration limits raised for 500 users from one
address.  Measurements, --reps times (at most 2, like the other Matrix
scenarios), alternating which room goes first:
  wrk -t2 -cN -dS with a Lua script PUTting m.room.message with unique txnIds
"""

import os
import secrets
import urllib.parse

from axbench import matrix, scen, seed
from axbench.report import aggregate, fmt_ms, fmt_ratio, fmt_rps
from axbench.runner import Step
from axbench.servers import AxonServer
from axbench.util import BenchError, Unsupported, median

NAME = "push_fanout"
TITLE = "PUT .../send/m.room.message into a room of 500 local members vs a room of 2 (push evaluation)"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/createRoom",
         "POST /_matrix/client/v3/join/{roomIdOrAlias}",
         "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
ORDER = 18
PREPARE_S = 3
BIG, BIG_QUICK = 500, 5
SEND = "/_matrix/client/v3/rooms/%s/send/m.room.message/"

WRK_SCRIPT = """-- push_fanout: PUT m.room.message with a unique txnId per request
dofile(os.getenv("AXB_WRK_SUMMARY"))
local path, prefix = %(path)r, %(prefix)r
local headers = {["Authorization"] = "Bearer " .. %(token)r, ["Content-Type"] = "application/json"}
local body = '{"msgtype":"m.text","body":"how fast does this reach 499 people?"}'
local n = 0
local threads = 0
function setup(thread)
   threads = threads + 1
   thread:set("tid", threads)
end
request = function()
   n = n + 1
   return wrk.format("PUT", path .. prefix .. "-" .. tostring(tid) .. "-" .. n, headers, body)
end
"""


def _members(ctx):
    return BIG_QUICK if ctx.quick else BIG


def _check_limits(ctx, n):
    """A fresh axon must have been started with registration limits that let n users in."""
    t = ctx.target
    if not isinstance(t, AxonServer) or ctx.quick:
        return
    burst = float(t.settings.get("ratelimit.register_burst", 10))
    rate = float(t.settings.get("ratelimit.register_per_second", 0.2))
    if burst + rate * 60 < n + 5:
        raise Unsupported("registering %d users needs ratelimit.register_burst and register_per_second of "
                          "1000 or more (an --axon-set lowered them)" % n)


def setup(ctx):
    n = _members(ctx)
    _check_limits(ctx, n)
    owner = matrix.register(ctx.target.base, no_password=True)
    ctx.scenario.state.update(owner=owner, members=n)
    return []   # no nginx baseline: the 2-member room is the baseline


def prepare(ctx):
    st = ctx.scenario.state
    n = st["members"]
    base = ctx.target.base
    owner = st["owner"]
    users = [owner] + seed.users(ctx, n - 1, "axb_push")
    big = matrix.call(base, "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"},
                      token=owner.access_token).json["room_id"]
    small = matrix.call(base, "POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"},
                        token=owner.access_token).json["room_id"]
    join = "/_matrix/client/v3/join/%s"
    matrix.call(base, "POST", join % urllib.parse.quote(small, safe=""), {}, token=users[1].access_token)
    seed.join(ctx, users[1:], big)
    r = matrix.call(base, "GET", "/_matrix/client/v3/rooms/%s/joined_members" % urllib.parse.quote(big, safe=""),
                    token=owner.access_token)
    joined = len((r.json or {}).get("joined", {}))
    if joined != n:
        raise BenchError("the big room has %d joined members, expected %d" % (joined, n))
    st.update(token=owner.access_token, rooms={"big": big, "small": small})


def _script(ctx, room_key, rep):
    st = ctx.scenario.state
    path = SEND % urllib.parse.quote(st["rooms"][room_key], safe="")
    fn = os.path.join(ctx.workdir, "push_fanout-%s-%d-%s.lua" % (room_key, rep, secrets.token_hex(4)))
    with open(fn, "w") as f:
        f.write(WRK_SCRIPT % {"path": path, "prefix": "b%s%d%s" % (room_key, rep, secrets.token_hex(4)),
                              "token": st["token"]})
    return fn


def plan(ctx):
    o = ctx.opts
    n = ctx.scenario.state["members"]
    kinds = [("big", "%d members" % n), ("small", "2 members")]
    path = lambda c, k: SEND % urllib.parse.quote(c.scenario.state["rooms"][k], safe="")  # noqa: E731
    steps = [Step("warm-up", 1 if ctx.quick else 2,
                  lambda c: c.wrk(c.target, path(c, "small"), o.connections, duration=1 if c.quick else 2,
                                  script=_script(c, "small", 99), record=False))]
    reps = scen.reps(ctx)
    for rep in range(reps):
        order = kinds if rep % 2 == 0 else list(reversed(kinds))
        for key, kind in order:
            steps.append(Step("wrk -c%d %s room (rep %d/%d)" % (o.connections, kind, rep + 1, reps),
                              o.duration + 0.5,
                              lambda c, key=key, kind=kind, rep=rep: c.wrk(
                                  c.target, path(c, key), o.connections, script=_script(c, key, rep),
                                  kind=kind, rep=rep)))
    return steps


def summarize(ctx, sc):
    o = ctx.opts
    n = sc.state["members"]
    reps = scen.reps(ctx)
    big_kind, small_kind = "%d members" % n, "2 members"
    agg = aggregate(sc.results)
    t = ctx.target.name
    big = agg.get((big_kind, o.connections), {}).get(t) or {}
    small = agg.get((small_kind, o.connections), {}).get(t) or {}
    # paired ratios: the two rooms of a repetition ran back to back
    ratios = [big["rps_by_rep"][k] / small["rps_by_rep"][k] for k in sorted(big.get("rps_by_rep", {}))
              if small.get("rps_by_rep", {}).get(k)]
    rng = (min(ratios), max(ratios)) if ratios else None
    r = median(ratios)

    def cpu_ms_per_event(kind):
        runs = [x for x in sc.results if x.get("kind") == kind and not x.get("error") and x.get("requests")
                and x.get("server_cpu_s") is not None]
        vals = [1000.0 * x["server_cpu_s"] / x["requests"] for x in runs]
        return median(vals)

    cb, cs = cpu_ms_per_event(big_kind), cpu_ms_per_event(small_kind)
    per_member_us = (1000.0 * (cb - cs) / (n - 2)) if cb is not None and cs is not None and n > 2 else None
    notes = [
        "%s room: %s events/s (p50 %s, p99 %s); 2-member room: %s events/s (p50 %s, p99 %s); "
        "ratio %s/2 = **%s**." % (big_kind, fmt_rps(big.get("rps")), fmt_ms(big.get("p50_ms")),
                                  fmt_ms(big.get("p99_ms")), fmt_rps(small.get("rps")), fmt_ms(small.get("p50_ms")),
                                  fmt_ms(small.get("p99_ms")), n, fmt_ratio(r, rng)),
        "Server CPU per event: %s ms in the %d-member room, %s ms in the 2-member room: about %s µs for each "
        "further member evaluated and notified." % (
            "n/a" if cb is None else "%.3f" % cb, n, "n/a" if cs is None else "%.3f" % cs,
            "n/a" if per_member_us is None else "%.1f" % per_member_us),
        "Both with wrk -t%d -c%d -d%ds, %d repetition%s, sync = %s." % (
            min(o.threads, o.connections), o.connections, o.duration, reps, "" if reps == 1 else "s",
            getattr(ctx.target, "settings", {}).get("sync", "true")),
    ]
    text = "push_fanout: %s events/s into %d members vs %s into 2 (ratio %s); %s µs per extra member" % (
        fmt_rps(big.get("rps")), n, fmt_rps(small.get("rps")), fmt_ratio(r),
        "n/a" if per_member_us is None else "%.1f" % per_member_us)
    # headline rows: the 2-member room is this scenario's baseline, so its ratio goes in the note
    rows = [scen.row(sc.results, ctx, "%s room, wrk -c%d: events/s" % (big_kind, o.connections), big_kind,
                     o.connections, note="n/a: against its own 2-member room: %s/2 = %s" % (n, fmt_ratio(r, rng))),
            scen.row(sc.results, ctx, "2-member room, wrk -c%d: events/s" % o.connections, small_kind,
                     o.connections, note="n/a: the baseline of the row above")]
    return {"headline": rows, "notes": notes, "headline_text": text}
