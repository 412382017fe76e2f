"""whoami -- GET /_matrix/client/v3/account/whoami with an access token.

The cheapest authenticated endpoint: versions plus the access-token lookup
(hash the token, one LMDB read).  The scenario registers its own user with
POST /_matrix/client/v3/register (m.login.dummy); a target without that
endpoint, or with registration closed, is reported as "not supported by
target" and nothing is measured.  The baseline is nginx answering the same
JSON (it ignores the token, so the ratio prices the authentication).

Measurements, each against the target and the baseline, --reps times (at
most 4, to keep the whole suite under 10 minutes):
  wrk -t2 -cN -dS -H 'Authorization: Bearer ...'   (N = --connections)
  ab -k -n N -c N -H 'Authorization: Bearer ...'
"""

from axbench import matrix
from axbench.report import aggregate, fmt_ms, fmt_ratio, fmt_rps, ratio, ratio_range
from axbench.runner import Step
from axbench.util import BenchError

NAME = "whoami"
TITLE = "GET /_matrix/client/v3/account/whoami (authenticated)"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "GET /_matrix/client/v3/account/whoami"]
PATH = "/_matrix/client/v3/account/whoami"
ORDER = 1


def setup(ctx):
    user = matrix.register(ctx.target.base)           # raises Unsupported when missing
    r = matrix.call(ctx.target.base, "GET", PATH, token=user.access_token)
    if not isinstance(r.json, dict) or r.json.get("user_id") != user.user_id:
        raise BenchError("GET %s answered %r, expected user_id %s" % (PATH, r.raw[:200], user.user_id))
    ctx.scenario.state["auth"] = "Authorization: Bearer " + user.access_token
    headers = {k: v for k, v in r.headers.items() if k.startswith("access-control-")}
    return [{"path": PATH, "status": 200, "body": r.raw.decode("utf-8"),
             "content_type": r.headers.get("content-type", "application/json"), "headers": headers}]


def plan(ctx):
    o = ctx.opts
    auth = (ctx.scenario.state["auth"],)
    steps = []
    for s in ctx.servers:
        steps.append(Step("warm-up %s" % s.name, 1 if ctx.quick else 2,
                          lambda c, s=s: c.wrk(s, PATH, o.connections, duration=1 if c.quick else 2,
                                               headers=auth, record=False)))
    reps = min(o.reps, 4)
    for rep in range(reps):
        for s in ctx.servers_in_order(rep):
            steps.append(Step("wrk -c%d %s (rep %d/%d)" % (o.connections, s.name, rep + 1, reps),
                              o.duration + 0.5,
                              lambda c, s=s, rep=rep: c.wrk(s, PATH, o.connections, headers=auth, rep=rep)))
        for s in ctx.servers_in_order(rep + 1):
            steps.append(Step("ab -k -n%d %s (rep %d/%d)" % (o.requests, s.name, rep + 1, reps),
                              o.requests / 40000.0 + 0.3,
                              lambda c, s=s, rep=rep: c.ab(s, PATH, o.requests, o.connections, True,
                                                           headers=auth, rep=rep)))
    return steps


def summarize(ctx, sc):
    o = ctx.opts
    t, b = ctx.target.name, ctx.baseline.name
    agg = aggregate(sc.results)
    rows = []
    for kind, label in (("wrk", "wrk -t%d -c%d -d%ds, with token" % (min(o.threads, o.connections),
                                                                      o.connections, o.duration)),
                        ("ab -k", "ab -k -n %d -c %d, with token" % (o.requests, o.connections))):
        g = agg.get((kind, o.connections), {})
        rows.append({"label": label, "kind": kind, "connections": o.connections, "target": g.get(t),
                     "baseline": g.get(b), "ratio": ratio(g.get(t), g.get(b)),
                     "ratio_range": ratio_range(g.get(t), g.get(b))})
    ta = rows[0]["target"] or {}
    text = "whoami: %s %s req/s = %s of nginx; p99 %s" % (
        t, fmt_rps(ta.get("rps")), fmt_ratio(rows[0]["ratio"]), fmt_ms(ta.get("p99_ms")))
    return {"headline": rows, "headline_text": text}
