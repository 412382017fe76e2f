"""versions -- GET /_matrix/client/versions, the cheapest endpoint a homeserver has.

It measures the HTTP core alone (accept, parse, route, reply) with no database
and no auth, so it is the ceiling for every other endpoint.  The baseline is
nginx answering `return 200` with exactly the bytes the target answered.

Measurements, each against the target and the baseline, repeated --reps times
in alternating order (medians are reported):
  wrk -t2 -cN -dS       for N in the sweep (10, 50, 100, 200): the plot; the
                        points other than --connections get a third of the
                        repetitions, rounded up (the suite must stay under
                        10 minutes)
  ab -n N -c C -k       keep-alive, the numbers deployment guides quote
  ab -n N -c C          a new TCP connection per request
  h2load -n N -c C -m M HTTP/2 over cleartext (h2c prior knowledge), if installed

Targets (issues "Foundation: benchmark start" and "Benchmark suite"):
  requests/s >= 0.75 x nginx with wrk at 100 connections, p99 < 10 ms, idle RSS < 10 MB
  (a fresh axon after start-up; the RSS before and after this scenario's own load
  is shown too, but follows from whatever ran before it in the suite).

Scenario interface (see bench/scenarios/README.md): NAME, TITLE, NEEDS,
setup(ctx) -> baseline routes, plan(ctx) -> [Step], summarize(ctx, sc) -> dict.
"""

from axbench.report import aggregate, fmt_ms, fmt_rps, fmt_ratio, ratio, ratio_range
from axbench.runner import Step
from axbench.util import BenchError, Unsupported, request

NAME = "versions"
TITLE = "GET /_matrix/client/versions"
NEEDS = ["GET /_matrix/client/versions"]
PATH = "/_matrix/client/versions"
ORDER = 0          # first: the idle-RSS target is about a fresh server

RATIO_GOAL = 0.75
P99_GOAL_MS = 10.0
IDLE_RSS_GOAL_KB = 10 * 1024


def setup(ctx):
    r = request(ctx.target.base, "GET", PATH)
    if r.status == 404 or r.errcode == "M_UNRECOGNIZED":
        raise Unsupported("GET %s answered %s" % (PATH, r.describe()))
    if r.status != 200:
        raise BenchError("GET %s answered %s" % (PATH, r.describe()))
    # Every Matrix response carries the CORS headers (spec: "Web Browser
    # Clients"); the baseline sends the same ones so both put the same bytes
    # on the wire.  The report shows bytes/response for both.
    headers = {k: v for k, v in r.headers.items() if k.startswith("access-control-")}
    ctx.scenario.state["body_bytes"] = len(r.raw)
    return [{"path": PATH, "status": 200, "body": r.raw.decode("utf-8"),
             "content_type": r.headers.get("content-type", "application/json"), "headers": headers}]


def sweep_reps_of(reps):
    """Repetitions of the sweep points other than --connections: a third, rounded up (6 -> 2)."""
    return (reps + 2) // 3


def plan(ctx):
    o = ctx.opts
    steps = []
    notes = ctx.scenario.state.setdefault("notes", [])
    h2 = ctx.has_h2load
    if not h2:
        notes.append("h2load is not installed: no HTTP/2 numbers (scripts/install-deps.sh bench)")
    else:
        for s in ctx.servers:
            if not ctx.speaks_h2c(s, PATH):
                notes.append("h2load skipped: %s does not speak HTTP/2 over cleartext (h2c prior knowledge)"
                             % s.name)
                h2 = False
    ctx.scenario.state["h2"] = h2
    # warm-up (not recorded): page in code, fill pools, open the accept queues
    for s in ctx.servers:
        steps.append(Step("warm-up %s" % s.name, 2 if not ctx.quick else 1,
                          lambda c, s=s: c.wrk(s, PATH, o.connections, duration=1 if c.quick else 2,
                                               record=False)))
    i = 0
    sweep_reps = sweep_reps_of(o.reps)
    for rep in range(o.reps):
        for conns in o.sweep:
            if conns != o.connections and rep >= sweep_reps:
                continue
            for s in ctx.servers_in_order(i):
                steps.append(Step("wrk -c%d %s (rep %d/%d)" % (conns, s.name, rep + 1,
                                                               o.reps if conns == o.connections else sweep_reps),
                                  o.duration + 0.5,
                                  lambda c, s=s, n=conns, rep=rep: c.wrk(s, PATH, n, rep=rep)))
            i += 1
    for rep in range(o.reps):
        for s in ctx.servers_in_order(rep):
            steps.append(Step("ab -k -n%d %s (rep %d/%d)" % (o.requests, s.name, rep + 1, o.reps),
                              o.requests / 50000.0 + 0.3,
                              lambda c, s=s, rep=rep: c.ab(s, PATH, o.requests, o.connections, True, rep=rep)))
        for s in ctx.servers_in_order(rep + 1):
            steps.append(Step("ab -n%d %s (rep %d/%d)" % (o.requests, s.name, rep + 1, o.reps),
                              o.requests / 15000.0 + 0.3,
                              lambda c, s=s, rep=rep: c.ab(s, PATH, o.requests, o.connections, False, rep=rep)))
        if h2:
            for s in ctx.servers_in_order(rep):
                steps.append(Step("h2load -n%d %s (rep %d/%d)" % (o.h2_requests, s.name, rep + 1, o.reps),
                                  o.h2_requests / 60000.0 + 0.3,
                                  lambda c, s=s, rep=rep: c.h2load(s, PATH, o.h2_requests, o.connections,
                                                                   o.h2_streams, rep=rep)))
    return steps


def summarize(ctx, sc):
    o = ctx.opts
    t, b = ctx.target.name, ctx.baseline.name
    agg = aggregate(sc.results)
    rows = []
    kinds = [("wrk", o.connections, "wrk -t%d -c%d -d%ds" % (min(o.threads, o.connections), o.connections,
                                                              o.duration)),
             ("ab -k", o.connections, "ab -k -n %d -c %d" % (o.requests, o.connections)),
             ("ab", o.connections, "ab -n %d -c %d (no keep-alive)" % (o.requests, o.connections))]
    if sc.state.get("h2"):
        kinds.append(("h2load", o.connections, "h2load -n %d -c %d -m %d (h2c)" % (
            o.h2_requests, o.connections, o.h2_streams)))
    for kind, conns, label in kinds:
        g = agg.get((kind, conns), {})
        rows.append({"label": label, "kind": kind, "connections": conns, "target": g.get(t), "baseline": g.get(b),
                     "ratio": ratio(g.get(t), g.get(b)), "ratio_range": ratio_range(g.get(t), g.get(b))})

    sweep = []
    for conns in o.sweep:
        g = agg.get(("wrk", conns), {})
        sweep.append({"connections": conns, "target": g.get(t), "baseline": g.get(b),
                      "ratio": ratio(g.get(t), g.get(b)), "ratio_range": ratio_range(g.get(t), g.get(b))})

    def series(name, key):
        pts = []
        for row in sweep:
            a = row["target" if name == t else "baseline"]
            if a and a.get(key) is not None:
                pts.append((row["connections"], a[key], a.get(key + "_min"), a.get(key + "_max")))
        return pts

    plots = [
        {"name": "versions-throughput", "title": "GET /_matrix/client/versions, wrk -t%d -d%ds (median of %d at -c%d, "
                                                "%d elsewhere)" % (o.threads, o.duration, o.reps, o.connections,
                                                                   sweep_reps_of(o.reps)),
         "xlabel": "connections", "ylabel": "requests/s",
         "series": {t: series(t, "rps"), b: series(b, "rps")}},
        {"name": "versions-p99", "title": "p99 latency, same runs", "xlabel": "connections",
         "ylabel": "p99 latency (ms)", "series": {t: series(t, "p99_ms"), b: series(b, "p99_ms")}},
    ]

    head = rows[0]
    ta = head["target"] or {}
    fresh = ctx.fresh_rss_kb
    idle = sc.rss.get(t, {}).get("idle_before_kb")
    after = sc.rss.get(t, {}).get("after_kb")
    checks = [
        {"what": "requests/s >= %.2f x nginx (%s)" % (RATIO_GOAL, head["label"]),
         "value": fmt_ratio(head["ratio"], head["ratio_range"]), "goal": ">= %.2f" % RATIO_GOAL,
         "met": None if head["ratio"] is None else head["ratio"] >= RATIO_GOAL},
        {"what": "p99 latency (%s, median of %d runs)" % (head["label"], o.reps),
         "value": fmt_ms(ta.get("p99_ms")), "goal": "< %.0f ms" % P99_GOAL_MS,
         "met": None if ta.get("p99_ms") is None else ta["p99_ms"] < P99_GOAL_MS},
        {"what": "idle RSS of the fresh axon (after start-up, before any scenario)",
         "value": "%.1f MB" % (fresh / 1024.0) if fresh else "n/a (not a fresh axon: --target)",
         "goal": "< %d MB" % (IDLE_RSS_GOAL_KB // 1024), "met": None if not fresh else fresh < IDLE_RSS_GOAL_KB},
        # informative: what the scenarios that ran before this one left in the allocator and the page tables
        {"what": "RSS before this scenario's load", "value": "%.1f MB" % (idle / 1024.0) if idle else "n/a",
         "goal": "–", "met": None},
        {"what": "RSS after its load", "value": "%.1f MB" % (after / 1024.0) if after else "n/a", "goal": "–",
         "met": None},
    ]
    text = "versions: %s %s req/s vs %s %s req/s at %d connections = %s of nginx; p99 %s; idle RSS %s" % (
        t, fmt_rps(ta.get("rps")), b, fmt_rps((head["baseline"] or {}).get("rps")), o.connections,
        fmt_ratio(head["ratio"]), fmt_ms(ta.get("p99_ms")),
        "%.1f MB" % ((fresh or idle) / 1024.0) if (fresh or idle) else "n/a")
    return {"headline": rows, "sweep": sweep, "plots": plots, "checks": checks, "headline_text": text,
            "notes": sc.state.get("notes", [])}
