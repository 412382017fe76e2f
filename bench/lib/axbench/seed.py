"""Seeding for scenarios: users, rooms, joins and messages, created
concurrently over keep-alive connections (aio.batch) so that thousands take
seconds.  Everything goes through the ordinary Client-Server API, so it
works on any homeserver that allows registration (--target).

Fixtures shared by several scenarios (the sync users in 10/100/1000 rooms)
are cached on the Context by name: `fixture(ctx, name, make)`.

Seeding users have no password when the target allows it (no argon2id to
wait for); a target that insists on one gets one.  Rooms are created with
preset public_chat so other seeded users can join them.
"""

import secrets
import time

from . import aio, matrix
from .util import BenchError, Unsupported

CS = "/_matrix/client/v3"


def quote(s):
    import urllib.parse
    return urllib.parse.quote(s, safe="")


def fixture(ctx, name, make):
    """ctx.fixtures[name], made by make() the first time."""
    if name not in ctx.fixtures:
        ctx.fixtures[name] = make()
    return ctx.fixtures[name]


def note(ctx, text):
    if ctx.progress is not None:
        ctx.progress.note(text)


def users(ctx, n, prefix, password=False, concurrency=None):
    """'n' new users.  With password=True each has a password (argon2id on the
    target: slow, so only where a scenario logs in)."""
    base = ctx.target.base
    tag = secrets.token_hex(3)
    first = matrix.register(base, "%s_%s_0" % (prefix, tag), no_password=not password)   # Unsupported?
    out = [first]
    need_pw = password or first.password is not None
    if n > 1:
        t0 = time.monotonic()
        pws = [secrets.token_urlsafe(12) if need_pw else None for _ in range(1, n)]
        calls = [aio.Call("POST", CS + "/register", matrix.register_body("%s_%s_%d" % (prefix, tag, i), pw))
                 for i, pw in zip(range(1, n), pws)]
        resps = aio.batch(base, calls, concurrency or (4 if need_pw else 32))
        slow = []
        for i, (r, pw) in enumerate(zip(resps, pws), 1):
            j = r.json if isinstance(r.json, dict) else {}
            if r.status == 200 and j.get("access_token"):
                out.append(matrix.User(j["user_id"], j["access_token"], j.get("device_id"), pw))
            elif r.status == 401:
                slow.append((i, pw))          # wants a UIA session round trip: do it the slow way
            else:
                raise BenchError("seeding users: POST /register answered %s: %r" % (r.describe(), r.raw[:300]))
        for i, pw in slow:
            out.append(matrix.register(base, "%s_%s_%d" % (prefix, tag, i), password=pw,
                                       no_password=pw is None))
        note(ctx, "seeded %d users in %.1f s" % (n, time.monotonic() - t0))
    return out


def create_rooms(ctx, owners, n, name="bench", concurrency=32):
    """'n' public rooms, created round-robin by 'owners' (a list of Users).
    Returns [(room_id, owner)]."""
    base = ctx.target.base
    t0 = time.monotonic()
    body = {"preset": "public_chat", "name": name}
    calls = [aio.Call("POST", CS + "/createRoom", body, owners[i % len(owners)].access_token) for i in range(n)]
    # the first alone: an Unsupported answer is reported as such
    r0 = matrix.call(base, "POST", CS + "/createRoom", body, token=calls[0].token)
    resps = [r0] + aio.batch(base, calls[1:], concurrency)
    aio.expect_ok(resps, calls, "seeding rooms")
    if n > 1:
        note(ctx, "seeded %d rooms in %.1f s" % (n, time.monotonic() - t0))
    return [(r.json["room_id"], owners[i % len(owners)]) for i, r in enumerate(resps)]


def join(ctx, users_, room_id, concurrency=32):
    """Every user in 'users_' joins 'room_id'."""
    base = ctx.target.base
    t0 = time.monotonic()
    calls = [aio.Call("POST", CS + "/join/" + quote(room_id), {}, u.access_token) for u in users_]
    if not calls:
        return
    r0 = matrix.call(base, "POST", calls[0].path, {}, token=calls[0].token)
    resps = [r0] + aio.batch(base, calls[1:], concurrency)
    aio.expect_ok(resps, calls, "seeding joins")
    if len(calls) > 1:
        note(ctx, "seeded %d joins in %.1f s" % (len(calls), time.monotonic() - t0))


def send_messages(ctx, targets, concurrency=32, body_text="seed message %d"):
    """One m.room.message per (room_id, token) in 'targets', concurrently.
    Returns the event IDs in order."""
    base = ctx.target.base
    t0 = time.monotonic()
    tag = secrets.token_hex(4)
    calls = [aio.Call("PUT", "%s/rooms/%s/send/m.room.message/seed-%s-%d" % (CS, quote(room), tag, i),
                      {"msgtype": "m.text", "body": body_text % i}, token)
             for i, (room, token) in enumerate(targets)]
    if not calls:
        return []
    r0 = matrix.call(base, "PUT", calls[0].path, calls[0].body, token=calls[0].token)
    resps = [r0] + aio.batch(base, calls[1:], concurrency)
    aio.expect_ok(resps, calls, "seeding messages")
    if len(calls) > 1:
        note(ctx, "seeded %d messages in %.1f s" % (len(calls), time.monotonic() - t0))
    return [r.json.get("event_id") for r in resps]


def sync_token(ctx, user, timeout_ms=0, query=""):
    """next_batch of an incremental-ready sync for 'user': a filtered initial
    sync (no timeline, no state) so it is cheap however many rooms the user has."""
    flt = '{"room":{"timeline":{"limit":0},"state":{"types":[]},"ephemeral":{"types":[]},' \
          '"account_data":{"types":[]}},"presence":{"types":[]},"account_data":{"types":[]}}'
    r = matrix.call(ctx.target.base, "GET", "%s/sync?timeout=%d&filter=%s%s" % (CS, timeout_ms, quote(flt), query),
                    token=user.access_token)
    tok = (r.json or {}).get("next_batch") if isinstance(r.json, dict) else None
    if not tok:
        raise BenchError("GET /sync gave no next_batch: %r" % r.raw[:200])
    return tok


__all__ = ["fixture", "users", "create_rooms", "join", "send_messages", "sync_token", "quote", "Unsupported"]


# ---- fixtures shared by scenarios ----------------------------------------------------

SYNC_ROOM_COUNTS = (10, 100, 1000)
SYNC_ROOM_COUNTS_QUICK = (2, 10)


def sync_room_counts(ctx):
    return SYNC_ROOM_COUNTS_QUICK if ctx.quick else SYNC_ROOM_COUNTS


def sync_users(ctx):
    """{rooms: (user, [room_id])} for users in 10, 100 and 1,000 rooms (2 and 10
    with --quick), shared by sync_incremental and sync_initial.  Each user
    created its rooms; two other users joined every room; every room has 5
    messages (2 with --quick) from its three members."""
    def make():
        counts = SYNC_ROOM_COUNTS_QUICK if ctx.quick else SYNC_ROOM_COUNTS
        per_room = 2 if ctx.quick else 5
        owners = users(ctx, len(counts), "axb_sync")
        others = users(ctx, 2, "axb_syncpeer")
        out = {}
        for n, owner in zip(counts, owners):
            rooms = [r for r, _ in create_rooms(ctx, [owner], n, name="sync bench")]
            for o in others:
                joins = [aio.Call("POST", CS + "/join/" + quote(r), {}, o.access_token) for r in rooms]
                aio.expect_ok(aio.batch(ctx.target.base, joins, 32), joins, "seeding joins")
            senders = [owner] + others
            send_messages(ctx, [(r, senders[k % 3].access_token) for r in rooms for k in range(per_room)])
            out[n] = (owner, rooms)
        return out
    return fixture(ctx, "sync_users", make)


SYNC_DEEP = (500, 100)         # the sync engine issue's case: 500 rooms of 100 messages each
SYNC_DEEP_QUICK = (3, 4)


def sync_deep_user(ctx):
    """(user, [room_id], rooms, messages per room): a user in 500 rooms with
    100 messages each (3 rooms of 4 with --quick), two other members in every
    room, the messages from all three.  50,000 sends: issued 64 at a time, so
    group commit makes them a few thousand per second."""
    def make():
        n, per_room = SYNC_DEEP_QUICK if ctx.quick else SYNC_DEEP
        owner = users(ctx, 1, "axb_deep")[0]
        others = users(ctx, 2, "axb_deeppeer")
        rooms = [r for r, _ in create_rooms(ctx, [owner], n, name="deep sync bench")]
        for o in others:
            joins = [aio.Call("POST", CS + "/join/" + quote(r), {}, o.access_token) for r in rooms]
            aio.expect_ok(aio.batch(ctx.target.base, joins, 32), joins, "seeding joins")
        senders = [owner] + others
        send_messages(ctx, [(r, senders[k % 3].access_token) for k in range(per_room) for r in rooms],
                      concurrency=64)
        return (owner, rooms, n, per_room)
    return fixture(ctx, "sync_deep_user", make)
