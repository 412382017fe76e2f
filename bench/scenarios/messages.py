"""messages -- GET /_matrix/client/v3/rooms/{roomId}/messages?dir=b&limit=50:
back-pagination pages/s over a 10,000-event room.

One user's room gets 10,000 messages (sent concurrently while seeding); the
room is then paginated back once from the newest event to its creation to
collect every page's `from` token, and wrk asks for those ~200 pages
round-robin (bench/wrk/requests.lua), so the measurement covers the whole
history rather than one cached page.  No nginx ratio: the pages differ and
the server's work per page (50 events read, checked for visibility,
serialised) bounds it, not HTTP.

Measurements: wrk -t2 -cN -dS (N = --connections), --reps times (at most 2).
"""

from axbench import matrix, scen, seed, wrkscript
from axbench.runner import Step
from axbench.util import BenchError

NAME = "messages"
TITLE = "GET /_matrix/client/v3/rooms/{roomId}/messages?dir=b&limit=50 over a 10,000-event room"
NEEDS = ["POST /_matrix/client/v3/register (m.login.dummy)", "POST /_matrix/client/v3/createRoom",
         "PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}",
         "GET /_matrix/client/v3/rooms/{roomId}/messages"]
AXON_SETTINGS = {"ratelimit.register_per_second": "100000", "ratelimit.register_burst": "100000"}
EVENTS = 10000
LIMIT = 50
ORDER = 14
PREPARE_S = 10


def setup(ctx):
    seed.users(ctx, 1, "axb_msgs")             # registration works (else: "not supported")
    return []


def prepare(ctx):
    n = 200 if ctx.quick else EVENTS
    user = seed.users(ctx, 1, "axb_msgs")[0]
    room = seed.create_rooms(ctx, [user], 1, name="messages bench")[0][0]
    seed.send_messages(ctx, [(room, user.access_token)] * n, concurrency=64)
    base = "/_matrix/client/v3/rooms/%s/messages?dir=b&limit=%d" % (seed.quote(room), LIMIT)
    paths, frm, events = [base], None, 0
    while True:
        p = base + ("&from=" + seed.quote(frm) if frm else "")
        r = matrix.call(ctx.target.base, "GET", p, token=user.access_token)
        j = r.json if isinstance(r.json, dict) else {}
        chunk = j.get("chunk") or []
        events += len(chunk)
        if frm:
            paths.append(p)
        if not chunk or not j.get("end") or j.get("end") == frm:
            break
        frm = j["end"]
        if len(paths) > 2 * n // LIMIT + 10:
            raise BenchError("pagination does not end: %d pages for %d events" % (len(paths), n))
    if events < n:
        raise BenchError("paginating back gave %d events, %d were sent" % (events, n))
    st = ctx.scenario.state
    st.update(pages=len(paths), events=events, first=paths[0])
    st["script"] = wrkscript.write(ctx, NAME, [{"method": "GET", "path": p, "token": user.access_token}
                                               for p in paths])


def plan(ctx):
    st = ctx.scenario.state
    c = ctx.opts.connections
    st["conns"] = c
    return [Step("wrk -c%d over every page (rep %d)" % (c, rep + 1), ctx.opts.duration + 0.5,
                 lambda cx, rep=rep: cx.wrk(cx.target, st["first"], c, script=st["script"], timeout=10, rep=rep))
            for rep in range(scen.reps(ctx))]


def summarize(ctx, sc):
    st = sc.state
    row = scen.row(sc.results, ctx, "wrk -c%d: pages/s (%d events each, %d pages)" % (st["conns"], LIMIT, st["pages"]),
                   "wrk", st["conns"], note=scen.NO_RATIO_WORK)
    ta = row["target"] or {}
    return {"headline": [row],
            "extra": ["The room holds %d events in all (the messages and the creation events); one pass back "
                      "through it is %d pages." % (st["events"], st["pages"])],
            "headline_text": "messages: %s pages/s (%d events/page), p99 %s" % (
                scen.fmt_rps(ta.get("rps")), LIMIT, scen.fmt_ms(ta.get("p99_ms")))}
