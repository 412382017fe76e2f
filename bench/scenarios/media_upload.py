"""media_upload -- POST /_matrix/media/v3/upload: uploads/s and MiB/s for
100 KiB, 1 MiB and 10 MiB bodies (durable), and the server's peak RSS.

Every body is random bytes (read once from a file of random data) with a
prefix unique to the request, so no two uploads have the same SHA-256 and
the content-addressed store cannot deduplicate them: each upload is hashed,
written to a new file, fsynced, renamed and the directory fsynced on the
worker pool, then its record is committed (fsync again with `sync = true`)
before the client gets its mxc:// URI.  The peak RSS shows what buffering
costs: h2o 2.2.5 reads a whole request body into memory before axon's
handler runs, and the handler copies it to the heap for the worker, so a
10 MiB upload in flight holds about 20 MiB.  wrk POSTs with a Lua script of
the suite's own (bench/wrk/upload.lua), from one user, at 8 connections.
No nginx ratio: the disk and hashing bound it, not HTTP.

A fresh axon gets `max_upload_size` and the per-user media rate limit
(`[ratelimit] media_per_second`, `media_burst`) raised; another homeserver
needs the same (Synapse: `max_upload_size`, `rc_media_create`), else the 429s
are counted as non-2xx.

Measurements: wrk -t2 -c8 -dS per size, --reps times (at most 2).
"""

import os

from axbench import matrix, scen, seed
from axbench.runner import BENCH, Step

NAME = "media_upload"
TITLE = "POST /_matrix/media/v3/upload: 100 KiB / 1 MiB / 10 MiB random bodies (durable)"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/media/v3/upload"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000",
                 "ratelimit.media_per_second": "100000", "ratelimit.media_burst": "100000",
                 "max_upload_size": "64M"}
ORDER = 20
PATH = "/_matrix/media/v3/upload?filename=bench.bin"
# 100 KiB (a photo's thumbnail, a voice message) is the headline; 10 MiB shows the buffering
SIZES = (("100 KiB", 100 * 1024), ("1 MiB", 1 << 20), ("10 MiB", 10 << 20))
SIZES_QUICK = (("100 KiB", 100 * 1024), ("1 MiB", 1 << 20))
CONNS = 8
UPLOAD_LUA = os.path.join(BENCH, "wrk", "upload.lua")
MIB = 1024.0 * 1024.0


def sizes(ctx):
    return SIZES_QUICK if ctx.quick else SIZES


def blob_file(ctx):
    """A file of random bytes as large as the largest body, shared with media_download."""
    path = os.path.join(ctx.workdir, "random.bin")
    need = max(n for _, n in SIZES)
    if not os.path.exists(path) or os.path.getsize(path) < need:
        with open(path, "wb") as f:
            f.write(os.urandom(need))
    return path


def setup(ctx):
    user = seed.users(ctx, 1, "axb_up")[0]
    matrix.upload(ctx.target.base, user.access_token, os.urandom(1024))
    st = ctx.scenario.state
    st.update(token=user.access_token, blob=blob_file(ctx), sizes=sizes(ctx))
    return []


def _run(cx, label, size, rep):
    st = cx.scenario.state
    env = {"AXB_UPLOAD_BLOB": st["blob"], "AXB_UPLOAD_SIZE": str(size), "AXB_UPLOAD_TOKEN": st["token"]}
    scen.drain(cx)
    cx.wrk(cx.target, PATH, CONNS, script=UPLOAD_LUA, timeout=60, env=env, kind="upload " + label, rep=rep,
           body_bytes=size)


def plan(ctx):
    steps = []
    for rep in range(scen.reps(ctx)):
        for label, size in ctx.scenario.state["sizes"]:
            steps.append(Step("%s, wrk -c%d (rep %d)" % (label, CONNS, rep + 1), ctx.opts.duration + 2,
                              lambda cx, label=label, size=size, rep=rep: _run(cx, label, size, rep)))
    return steps


def summarize(ctx, sc):
    rows, parts = [], []
    extra = ["| body | uploads/s | MiB/s | p50 / p99 | RSS growth during a run (largest) | per connection |",
             "|---|---|---|---|---|---|"]
    for label, size in sc.state["sizes"]:
        kind = "upload " + label
        row = scen.row(sc.results, ctx, "%s bodies, wrk -c%d: uploads/s" % (label, CONNS), kind, CONNS,
                       note=scen.NO_RATIO_WRITE)
        rows.append(row)
        ta = row["target"] or {}
        rps = ta.get("rps")
        mibs = rps * size / MIB if rps is not None else None
        # each run's own growth (its sampled peak over its RSS at the start): memory an earlier,
        # larger run left behind must not count against a smaller body
        growth = [r["rss_peak_kb"] - r["rss_before_kb"] for r in sc.results if r.get("kind") == kind
                  and r.get("rss_peak_kb") is not None and r.get("rss_before_kb") is not None]
        grew = max(growth) if growth else None
        extra.append("| %s | %s | %s | %s / %s | %s | %s |" % (
            label, scen.fmt_rps(rps), "n/a" if mibs is None else "%.1f" % mibs, scen.fmt_ms(ta.get("p50_ms")),
            scen.fmt_ms(ta.get("p99_ms")), scen.fmt_mb(grew),
            "n/a" if grew is None else "%.1f MB" % (grew / 1024.0 / CONNS)))
        parts.append("%s %s/s (%s MiB/s, RSS +%s)" % (label, scen.fmt_rps(rps),
                                                      "n/a" if mibs is None else "%.1f" % mibs, scen.fmt_mb(grew)))
    extra += ["", "MiB/s = uploads/s × body size. RSS growth: the largest 100 ms sample during a run minus the "
              "RSS when that run started, the larger of the repetitions; \"per connection\" divides it by the %d "
              "connections, each with one upload in flight. RSS counts the database pages axon has touched too "
              "(LMDB is mapped into the process), so the absolute figures carry every earlier scenario's data."
              % CONNS]
    return {"headline": rows, "extra": extra, "headline_text": "media_upload: " + "; ".join(parts)}
