"""media_download -- GET /_matrix/client/v1/media/download/{serverName}/{mediaId}:
downloads/s and MiB/s for a 10 KiB and a 1 MiB file, warm cache, against
nginx serving the same file from disk.

Setup uploads two files of random bytes, downloads each once and writes
exactly those bytes to files in the work dir; nginx serves them (`alias`,
`sendfile on`, as a deployment serves static files) with the same headers
axon sends (content type, content disposition, the sandboxing
Content-Security-Policy, nosniff, CORP and the CORS headers), so both
servers put the same bytes on the wire.  Both are warmed up first (the file
in the page cache).  axon checks the access token, looks the media record
up in LMDB and streams the file with pread() in 64 KiB pieces; nginx
hands the file to the kernel.  So the ratio is a real one: what axon's media
path costs against the fastest way to serve a file.

Measurements: wrk -t2 -cN -dS (N = --connections) per size against both
servers, alternating which goes first, --reps times (at most 2).
"""

import os

from axbench import matrix, scen, seed
from axbench.runner import Step
from axbench.report import fmt_ratio
from axbench.util import BenchError, Unsupported, median, request

NAME = "media_download"
TITLE = "GET /_matrix/client/v1/media/download/{serverName}/{mediaId}: 10 KiB and 1 MiB, warm cache"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/media/v3/upload",
         "GET /_matrix/client/v1/media/download/{serverName}/{mediaId}"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
ORDER = 21
SIZES = (("10 KiB", 10 * 1024), ("1 MiB", 1 << 20))
MIB = 1024.0 * 1024.0
# response headers of the target that the baseline sends too
COPY_HEADERS = ("content-disposition", "content-security-policy", "x-content-type-options",
                "cross-origin-resource-policy")


def setup(ctx):
    user = seed.users(ctx, 1, "axb_down")[0]
    st = ctx.scenario.state
    st.update(token=user.access_token, files={})
    d = os.path.join(ctx.workdir, "media-baseline")
    os.makedirs(d, exist_ok=True)
    routes = []
    for label, size in SIZES:
        data = os.urandom(size)
        uri = matrix.upload(ctx.target.base, user.access_token, data, filename="bench-%d.bin" % size)
        server, media_id = uri[len("mxc://"):].split("/", 1)
        path = "/_matrix/client/v1/media/download/%s/%s" % (seed.quote(server), seed.quote(media_id))
        r = request(ctx.target.base, "GET", path, token=user.access_token)
        reason = matrix.unsupported_reason("GET", path, r)
        if reason:
            raise Unsupported(reason)
        if r.status != 200 or r.raw != data:
            raise BenchError("GET %s answered %s with %d bytes, expected the %d uploaded" % (
                path, r.describe(), len(r.raw), size))
        fn = os.path.join(d, "%d.bin" % size)
        with open(fn, "wb") as f:
            f.write(r.raw)
        base_path = "/_axb/media/%d" % size
        headers = {k: v for k, v in r.headers.items() if k.startswith("access-control-") or k in COPY_HEADERS}
        routes.append({"path": base_path, "file": fn, "content_type": r.headers.get("content-type",
                                                                                     "application/octet-stream"),
                       "headers": headers})
        st["files"][label] = {"path": path, "baseline_path": base_path, "size": size}
    return routes


def _path(cx, server, label):
    f = cx.scenario.state["files"][label]
    return f["path"] if server is cx.target else f["baseline_path"]


def plan(ctx):
    c = ctx.opts.connections
    auth = lambda cx: ("Authorization: Bearer " + cx.scenario.state["token"],)  # noqa: E731
    steps = []
    for label, _ in SIZES:
        for s in ctx.servers:
            # warm-up, not recorded: the file into the page cache, the connections open
            steps.append(Step("warm-up %s %s" % (label, s.name), 1,
                              lambda cx, s=s, label=label: cx.wrk(s, _path(cx, s, label), c, duration=1,
                                                                  headers=auth(cx), record=False)))
    i = 0
    for rep in range(scen.reps(ctx)):
        for label, size in SIZES:
            for s in ctx.servers_in_order(i):
                steps.append(Step("%s, wrk -c%d %s (rep %d)" % (label, c, s.name, rep + 1), ctx.opts.duration + 0.5,
                                  lambda cx, s=s, label=label, size=size, rep=rep: cx.wrk(
                                      s, _path(cx, s, label), c, headers=auth(cx), kind="download " + label,
                                      rep=rep, body_bytes=size)))
            i += 1
    return steps


def summarize(ctx, sc):
    c = ctx.opts.connections
    rows, parts = [], []
    t, b = ctx.target.name, ctx.baseline.name if ctx.baseline else "nginx"
    extra = ["| file | %s downloads/s | %s MiB/s | %s downloads/s | %s MiB/s | %s/%s | server CPU per download, "
             "%s / %s |" % (t, t, b, b, t, b, t, b),
             "|---|---|---|---|---|---|---|"]

    def cpu_us(server, kind):
        """Median over the runs of the server's CPU time per completed download (µs)."""
        vals = [1e6 * r["server_cpu_s"] / r["requests"] for r in sc.results
                if r.get("server") == server and r.get("kind") == kind and r.get("server_cpu_s") is not None
                and r.get("requests")]
        return median(vals)
    for label, size in SIZES:
        row = scen.row(sc.results, ctx, "%s file, wrk -c%d: downloads/s" % (label, c), "download " + label, c,
                       baseline_kind="download " + label)
        rows.append(row)
        ta, ba = row["target"] or {}, row["baseline"] or {}
        mib = lambda st: "n/a" if st.get("rps") is None else "%.0f" % (st["rps"] * size / MIB)  # noqa: E731
        cu = [cpu_us(s, "download " + label) for s in (t, b)]
        extra.append("| %s | %s | %s | %s | %s | %s | %s / %s |" % (
            label, scen.fmt_rps(ta.get("rps")), mib(ta), scen.fmt_rps(ba.get("rps")), mib(ba),
            fmt_ratio(row["ratio"], row.get("ratio_range")),
            *["n/a" if x is None else "%.0f µs" % x for x in cu]))
        parts.append("%s %s/s (%s MiB/s, ratio %s)" % (label, scen.fmt_rps(ta.get("rps")), mib(ta),
                                                      fmt_ratio(row["ratio"])))
    extra += ["", "MiB/s = downloads/s × file size (headers not counted). nginx serves the same bytes from a "
              "file with sendfile; both caches were warm. With the 1 MiB file neither server is bound by its own "
              "CPU (see server CPU above): the figure is how fast the kernel moves the bytes over loopback into "
              "wrk, and a ratio above 1 there says that axon keeps up, not that its media path is cheaper. The "
              "CPU each server spends per download is what separates them (sendfile copies nothing in user "
              "space; axon reads the file and writes it to the socket)."]
    return {"headline": rows, "extra": extra, "headline_text": "media_download: " + "; ".join(parts)}
