"""register -- POST /_matrix/client/v3/register (m.login.dummy, with a password).

Every registration hashes its password with argon2id (on axon: on the worker
pool, about 64 MiB and tens of milliseconds each) and makes one durable write
(account, profile, first device and access token).  wrk posts a new username
with every request (bench/wrk/requests.lua makes them unique per run and
thread).  No nginx ratio: the hash bounds it, not HTTP.

Rate limits: axon's registration limit is per client address
(`[ratelimit] register_per_second = 0.2`, `register_burst = 10` by default),
so a fresh axon is started with them raised (AXON_SETTINGS below; the report
shows the config).  Another homeserver given with --target needs its own
limit raised the same way (Synapse: `rc_registration`), or the run measures
429 answers: wrk counts them as non-2xx.

Measurements: wrk -t2 -c8 -dS (axon hashes on 2 worker threads: more
connections only queue), --reps times (at most 2).
"""

import json
import secrets

from axbench import matrix, scen, wrkscript
from axbench.runner import Step
from axbench.util import BenchError, Unsupported, request

NAME = "register"
TITLE = "POST /_matrix/client/v3/register (m.login.dummy, password: argon2id + a durable write)"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy, one request, no UIA session round trip)"]
PATH = "/_matrix/client/v3/register"
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
CONNS = (8,)
ORDER = 10


def setup(ctx):
    # one registration shaped exactly like the ones wrk sends
    u = matrix.register(ctx.target.base)
    if u.password is None:
        raise BenchError("registration without a password")
    body = json.dumps(matrix.register_body("axb_r_{n}", "pw-{n}-bench"), separators=(",", ":"))
    r = request(ctx.target.base, "POST", PATH, body=body.replace("{n}", "probe-" + secrets.token_hex(4)).encode(),
                headers={"Content-Type": "application/json"})
    if r.status == 401:
        raise Unsupported("POST %s wants a UIA session round trip before m.login.dummy (%s); wrk sends one "
                          "request per registration" % (PATH, r.describe()))
    if r.status != 200:
        raise BenchError("POST %s answered %s: %r" % (PATH, r.describe(), r.raw[:200]))
    ctx.scenario.state["script"] = wrkscript.write(ctx, NAME, [{"method": "POST", "path": PATH, "body": body}])
    return []


def plan(ctx):
    script = ctx.scenario.state["script"]
    steps = []
    conns = (2,) if ctx.quick else CONNS
    ctx.scenario.state["conns"] = conns
    for rep in range(scen.reps(ctx)):
        for c in conns:
            steps.append(Step("wrk -c%d (rep %d)" % (c, rep + 1), ctx.opts.duration + 1.5,
                              lambda cx, c=c, rep=rep: scen.wrk_drained(cx, cx.target, PATH, c, script=script,
                                                                        timeout=10, rep=rep)))
    return steps


def summarize(ctx, sc):
    rows = [scen.row(sc.results, ctx, "wrk -c%d: registrations/s" % c, "wrk", c, note=scen.NO_RATIO_HASH)
            for c in sc.state["conns"]]
    best = max(rows, key=lambda r: (r["target"] or {}).get("rps") or 0)
    ta = best["target"] or {}
    return {"headline": rows,
            "headline_text": "register: %.0f registrations/s (%s), p99 %s" % (
                ta.get("rps") or 0, best["label"].split(":")[0], scen.fmt_ms(ta.get("p99_ms")))}
