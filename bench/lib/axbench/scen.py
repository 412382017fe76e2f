"""Helpers the Matrix scenarios share: repetitions and durations for the
heavier scenarios, headline rows without a baseline, a latency prober.

Why most of these scenarios have no nginx ratio: nginx answering a constant is
the ceiling of the HTTP layer.  A registration (argon2id), a login, a room
creation or a durable send (fsync) is bound by hashing or the disk, two or
three orders of magnitude below that ceiling, so the ratio would only restate
the absolute number.  The report says so in the ratio column instead.
"""

import threading
import time

from .report import aggregate, fmt_mb, fmt_ms, fmt_rps, ratio, ratio_range  # noqa: F401 (re-exported)
from .util import percentile, request

NO_RATIO_WRITE = "n/a: bound by fsync (durable writes), not HTTP"
NO_RATIO_HASH = "n/a: bound by argon2id on the worker pool, not HTTP"
NO_RATIO_WORK = "n/a: bound by the server's work per request, not HTTP"


def reps(ctx, cap=2):
    """Repetitions for a heavier scenario: --reps, at most 'cap' (1 with --quick)."""
    return 1 if ctx.quick else max(1, min(ctx.opts.reps, cap))


def duration(ctx):
    return ctx.opts.duration


def row(sc_results, ctx, label, kind, connections, baseline_kind=None, note=None):
    """One headline row from the scenario's results: the target's medians for
    (kind, connections); the baseline's for (baseline_kind or kind, connections)
    when given, with the paired ratio; else the ratio column carries 'note'."""
    agg = aggregate(sc_results)
    t = ctx.target.name
    g = agg.get((kind, connections), {})
    out = {"label": label, "kind": kind, "connections": connections, "target": g.get(t),
           "baseline": None, "ratio": None, "ratio_range": None, "ratio_note": note}
    if baseline_kind is not None and ctx.baseline is not None:
        bg = agg.get((baseline_kind, connections), {})
        b = bg.get(ctx.baseline.name)
        out.update(baseline=b, ratio=ratio(g.get(t), b), ratio_range=ratio_range(g.get(t), b), ratio_note=None)
    return out


class Prober(threading.Thread):
    """GET 'path' on 'server' every 'interval' seconds over one keep-alive
    connection (a new one after an error) and keeps each latency: an open-loop
    probe that shows whether the HTTP threads answer promptly while something
    else loads the server.  stop() returns the result dict."""

    def __init__(self, server, path, interval=0.01):
        super().__init__(daemon=True)
        self.server = server
        self.path = path
        self.interval = interval
        self.lat_ms = []
        self.errors = 0
        self.stopping = threading.Event()

    def run(self):
        import http.client
        import urllib.parse
        u = urllib.parse.urlsplit(self.server.base)
        conn = None
        nxt = time.monotonic()
        while not self.stopping.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
                t0 = time.monotonic()
                conn.request("GET", self.path)
                r = conn.getresponse()
                r.read()
                dt = time.monotonic() - t0
                if r.status != 200:
                    self.errors += 1
                else:
                    self.lat_ms.append(dt * 1000.0)
            except (OSError, http.client.HTTPException):
                self.errors += 1
                if conn is not None:
                    conn.close()
                conn = None
            nxt += self.interval
            self.stopping.wait(max(0.0, nxt - time.monotonic()))
        if conn is not None:
            conn.close()

    def stop(self):
        self.stopping.set()
        self.join(15)
        lat = sorted(self.lat_ms)
        return {"requests": len(lat), "errors": self.errors, "non2xx": 0,
                "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
                "max_ms": lat[-1] if lat else None, "mean_ms": sum(lat) / len(lat) if lat else None}


def probe_alone(server, path, seconds, interval=0.01):
    """The prober's figures with nothing else running (the reference)."""
    p = Prober(server, path, interval)
    p.start()
    time.sleep(seconds)
    return p.stop()


def sanity_request(base, path, token=None):
    return request(base, "GET", path, token=token)


def drain(ctx):
    """Pause before a run of a write scenario, so the requests the previous run
    left in flight (wrk closes its connections mid-request when its time is
    up) are finished before new connections arrive: runs must not overlap.
    (axon at commit f275c3e crashes under concurrent writes, sooner when runs
    overlap; see docs/benchmarks.md "Problems found by the suite".  The pause
    makes that rarer, not impossible: bench/run restarts a crashed axon and
    reports the crash.)"""
    time.sleep(1.0)


def wrk_drained(cx, *args, **kw):
    drain(cx)
    return cx.wrk(*args, **kw)
