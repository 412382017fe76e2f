"""media_thumbnail -- GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}:
thumbnails generated per second, and the same thumbnails served from the
cache.

Setup uploads distinct PNG photos (1024x768, gradients that differ per
image, generated here with zlib, so no two share a hash or a thumbnail).
Each repetition asks for one 320x240 `scale` thumbnail of each of its own
images exactly once, from THREADS client threads: every request makes the
server decode the PNG, scale it and store the result (libvips on the worker
pool), so the rate is the generation rate.  A second pass over the same
images is served from the thumbnail cache: the difference is what
generation costs.  No nginx ratio: the CPU-bound decode and scale bound it,
not HTTP.

Measurements: THREADS concurrent clients, IMAGES requests each pass,
--reps repetitions (at most 2).
"""

import concurrent.futures
import struct
import time
import zlib

from axbench import matrix, scen, seed
from axbench.runner import Step
from axbench.util import BenchError, Unsupported, percentile, request

NAME = "media_thumbnail"
TITLE = "GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}: 320x240 of 1024x768 PNGs, generated and cached"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/media/v3/upload",
         "GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000",
                 "ratelimit.media_per_second": "100000", "ratelimit.media_burst": "100000"}
ORDER = 22
PREPARE_S = 4
WIDTH, HEIGHT = 1024, 768
IMAGES, IMAGES_QUICK = 40, 3
THREADS = 4
QUERY = "?width=320&height=240&method=scale"


def png(seed_value):
    """A WIDTHxHEIGHT RGB PNG: gradients that depend on seed_value."""
    rows = []
    for y in range(HEIGHT):
        g = (y + seed_value * 37) & 255
        line = bytearray(b"\0")
        for i in range(0, WIDTH, 8):  # 8-pixel runs: compresses like a photo, a few hundred KB
            line += bytes(((i + seed_value) & 255, g, ((i * y) >> 9) & 255)) * 8
        rows.append(bytes(line))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", WIDTH, HEIGHT, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"".join(rows), 6)) + chunk(b"IEND", b""))


def _upload(ctx, token, k):
    """Uploads the k-th PNG; returns its thumbnail path (with QUERY)."""
    uri = matrix.upload(ctx.target.base, token, png(k + 1), filename="axb-%d.png" % k, content_type="image/png")
    server, media_id = uri[len("mxc://"):].split("/", 1)
    return "/_matrix/client/v1/media/thumbnail/%s/%s%s" % (seed.quote(server), seed.quote(media_id), QUERY)


def setup(ctx):
    # one image and one small thumbnail: the endpoint exists; the rest is uploaded in prepare()
    user = seed.users(ctx, 1, "axb_thumb")[0]
    probe = _upload(ctx, user.access_token, 0)
    r = request(ctx.target.base, "GET", probe.replace(QUERY, "?width=32&height=32&method=crop"),
                token=user.access_token)
    reason = matrix.unsupported_reason("GET", probe, r)
    if reason:
        raise Unsupported(reason)
    if r.status != 200 or not r.headers.get("content-type", "").startswith("image/"):
        raise BenchError("GET thumbnail answered %s" % r.describe())
    ctx.scenario.state.update(token=user.access_token, paths=[probe], n=IMAGES_QUICK if ctx.quick else IMAGES)
    return []


def prepare(ctx):
    """The images the measurements thumbnail (the probe's 320x240 has not been made yet, so it
    counts as the first), uploaded right before them so earlier scenarios do not carry them."""
    st = ctx.scenario.state
    t0 = time.monotonic()
    want = st["n"] * scen.reps(ctx)
    st["paths"] += [_upload(ctx, st["token"], k) for k in range(len(st["paths"]), want)]
    seed.note(ctx, "uploaded %d PNGs of %dx%d in %.1f s" % (want, WIDTH, HEIGHT, time.monotonic() - t0))


def _pass(cx, rep, kind):
    st = cx.scenario.state
    paths = st["paths"][rep * st["n"]:(rep + 1) * st["n"]]

    def one(path):
        t = time.monotonic()
        r = request(cx.target.base, "GET", path, token=st["token"])
        ok = r.status == 200 and r.headers.get("content-type", "").startswith("image/")
        return (time.monotonic() - t) * 1000.0, ok, len(r.raw or b"")

    def go():
        t0 = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(THREADS) as pool:
            res = list(pool.map(one, paths))
        wall = time.monotonic() - t0
        lat = sorted(x[0] for x in res)
        bad = sum(1 for x in res if not x[1])
        r = {"requests": len(res) - bad, "duration_s": wall, "rps": (len(res) - bad) / wall if wall > 0 else None,
             "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
             "max_ms": lat[-1] if lat else None, "mean_ms": sum(lat) / len(lat) if lat else None,
             "errors": bad, "non2xx": bad, "bytes_per_req": res[0][2] if res else None,
             "error": "%d thumbnails failed" % bad if bad else None}
        return r, wall

    cx.measure(cx.target, "thumbnails", "%d x GET thumbnail%s, %d client threads "
               "(bench/scenarios/media_thumbnail.py)" % (len(paths), QUERY, THREADS), go,
               {"kind": kind, "connections": THREADS, "rep": rep})


def plan(ctx):
    n = ctx.scenario.state["n"]
    steps = []
    for rep in range(scen.reps(ctx)):
        steps.append(Step("%d thumbnails generated (rep %d)" % (n, rep + 1), 1 + n * 0.1,
                          lambda cx, rep=rep: _pass(cx, rep, "generated")))
        steps.append(Step("the same %d from the cache (rep %d)" % (n, rep + 1), 1 + n * 0.01,
                          lambda cx, rep=rep: _pass(cx, rep, "cached")))
    return steps


def summarize(ctx, sc):
    note = "n/a: bound by image decoding and scaling on the worker pool, not HTTP"
    rows = [scen.row(sc.results, ctx, "320x240 thumbnails of distinct 1024x768 PNGs, %d clients: generated/s"
                     % THREADS, "generated", THREADS, note=note),
            scen.row(sc.results, ctx, "the same thumbnails again, %d clients: served from the cache/s" % THREADS,
                     "cached", THREADS, note=note)]
    g, c = rows[0]["target"] or {}, rows[1]["target"] or {}
    extra = ["Each generated thumbnail is one PNG decoded, scaled and stored (first request for that image "
             "and size); the cached pass reads the stored thumbnail. The server's worker pool "
             "(`worker_threads`, default 2) bounds generation."]
    return {"headline": rows, "extra": extra,
            "headline_text": "media_thumbnail: %s generated/s (p99 %s), %s/s from the cache" % (
                scen.fmt_rps(g.get("rps")), scen.fmt_ms(g.get("p99_ms")), scen.fmt_rps(c.get("rps")))}
