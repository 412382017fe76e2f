"""login -- POST /_matrix/client/v3/login (m.login.password), and whether the
HTTP threads stay responsive meanwhile.

Every login verifies an argon2id hash (on axon: on the worker pool, never on
an HTTP thread) and makes one durable write (a new device and its access
token).  wrk logs in round-robin as 8 users registered with passwords.  While
it runs, a prober in bench/run sends GET /_matrix/client/versions every 10 ms
on one keep-alive connection; its latency next to the same prober's on an idle
server shows whether password hashing holds up other requests.  No nginx
ratio: the hash bounds it, not HTTP.

Rate limits: axon's login limit is per client address (`[ratelimit]
login_per_second = 0.5`, `login_burst = 10` by default), so a fresh axon is
started with it raised (AXON_SETTINGS; the report shows the config).  Another
homeserver given with --target needs its own raised (Synapse:
`rc_login.address` and `rc_login.account`), or the run measures 429 answers.

Measurements: wrk -t2 -c16 -dS --reps times (at most 2), each with the prober;
the prober alone on the idle server for the same time.
"""

import json

from axbench import scen, seed, wrkscript
from axbench.runner import Step
from axbench.util import BenchError, request

NAME = "login"
TITLE = "POST /_matrix/client/v3/login (m.login.password: argon2id + a durable write)"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/login (m.login.password)"]
PATH = "/_matrix/client/v3/login"
PROBE = "/_matrix/client/versions"
AXON_SETTINGS = {"ratelimit.login_per_second": "100000", "ratelimit.login_burst": "100000",
                 "ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
USERS = 8
CONNS = 16
ORDER = 11
PREPARE_S = 2


def login_body(u):
    return json.dumps({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": u.user_id},
                       "password": u.password, "initial_device_display_name": "axon bench login"},
                      separators=(",", ":"))


def setup(ctx):
    seed.users(ctx, 1, "axb_login")            # registration works (else: "not supported")
    return []


def prepare(ctx):
    users = seed.users(ctx, 2 if ctx.quick else USERS, "axb_login", password=True)
    r = request(ctx.target.base, "POST", PATH, body=login_body(users[0]).encode(),
                headers={"Content-Type": "application/json"})
    if r.status != 200 or not (r.json or {}).get("access_token"):
        raise BenchError("POST %s answered %s: %r" % (PATH, r.describe(), r.raw[:200]))
    ctx.scenario.state["script"] = wrkscript.write(ctx, NAME, [{"method": "POST", "path": PATH,
                                                                 "body": login_body(u)} for u in users])


def _login_with_probe(cx, rep, c, script):
    p = scen.Prober(cx.target, PROBE)
    p.start()
    try:
        scen.wrk_drained(cx, cx.target, PATH, c, script=script, timeout=10, rep=rep)
    finally:
        r = p.stop()
    _record_probe(cx, r, "probe during login", rep, cx.opts.duration)


def _record_probe(cx, r, kind, rep, seconds):
    r.update(kind=kind, connections=1, rep=rep, tool="prober", server=cx.target.name, role="target",
             rps=None, command="GET %s every 10 ms on one keep-alive connection (bench/run's prober)" % PROBE,
             wall_s=seconds)
    cx.scenario.results.append(r)


def _probe_idle(cx, rep):
    r = scen.probe_alone(cx.target, PROBE, cx.opts.duration)
    _record_probe(cx, r, "probe idle", rep, cx.opts.duration)


def plan(ctx):
    st = ctx.scenario.state
    c = 2 if ctx.quick else CONNS
    ctx.scenario.state["conns"] = c
    steps = [Step("versions prober alone", ctx.opts.duration, lambda cx: _probe_idle(cx, 0))]
    for rep in range(scen.reps(ctx)):
        steps.append(Step("wrk -c%d + versions prober (rep %d)" % (c, rep + 1), ctx.opts.duration + 0.5,
                          lambda cx, rep=rep: _login_with_probe(cx, rep, c, st["script"])))
    return steps


def summarize(ctx, sc):
    c = sc.state["conns"]
    rows = [scen.row(sc.results, ctx, "wrk -c%d: logins/s" % c, "wrk", c, note=scen.NO_RATIO_HASH),
            scen.row(sc.results, ctx, "GET /versions every 10 ms, during the logins", "probe during login", 1,
                     note="latency only: an open-loop probe"),
            scen.row(sc.results, ctx, "GET /versions every 10 ms, idle server", "probe idle", 1,
                     note="latency only: the reference")]
    ta = rows[0]["target"] or {}
    pa, pi = rows[1]["target"] or {}, rows[2]["target"] or {}
    return {"headline": rows,
            "headline_text": "login: %.0f logins/s, p99 %s; versions p99 %s during logins vs %s idle" % (
                ta.get("rps") or 0, scen.fmt_ms(ta.get("p99_ms")), scen.fmt_ms(pa.get("p99_ms")),
                scen.fmt_ms(pi.get("p99_ms")))}
