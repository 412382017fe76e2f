#!/usr/bin/python3
"""longpoll.py CONFIG.json -- the load generator of sync_wakeup and
to_device_fanout: N idle /sync long-polls, then one send, and how long until
each long-poll answered.

wrk, ab and h2load cannot hold thousands of idle requests and time their
answers to one event, so the suite has this: Python's asyncio with plain
Protocols (no per-request coroutine), one TCP connection per long-poll.

CONFIG (JSON): {"base": "http://127.0.0.1:PORT",
                "polls": [{"token": ACCESS_TOKEN, "since": NEXT_BATCH}, ...],
                "query": "&set_presence=offline",     extra query string
                "timeout_ms": 120000,                  the long-polls' ?timeout=
                "send": {"path": ..., "token": ..., "body": {...}},
                "room_id": ..., "settle_s": 1.0, "wake_deadline_s": 60,
                "connect_concurrency": 256,
                "check": "room" (default: the answers must carry the sent event in
                         room_id's timeline) or "to_device" (they must carry a
                         to-device message whose content has "marker": MARKER),
                "marker": MARKER}

Conversation on stdin/stdout, so the caller can read the server's RSS while
every long-poll is parked:
  1. opens every connection and sends every GET /sync?since=..&timeout=..;
     a long-poll that answers early (something else happened) is sent again
     with its new next_batch; once all are sent and none answered for
     settle_s, prints "parked N early=E errors=X" and waits for a line;
  2. on any line: PUTs the event and notes when each long-poll answers;
  3. prints one JSON line with the result and exits (closing every socket).

Times are time.monotonic() in this process: from just before the PUT is
written to when the last byte of each answer was read.  They include this
client's own work (it shares the machine's cores with the server).
"""

import asyncio
import json
import os
import resource
import sys
import time
import urllib.parse


def parse_response(buf):
    """(status, headers dict, body bytes, consumed) when 'buf' holds a complete
    HTTP/1.1 response, else None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    status = int(head[0].split(" ", 2)[1])
    h = {}
    for line in head[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            h[k.strip().lower()] = v.strip()
    pos = end + 4
    if "chunked" in h.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                return None
            size = int(buf[pos:nl].split(b";")[0].strip() or b"0", 16)
            pos = nl + 2
            if size == 0:
                fin = buf.find(b"\r\n\r\n", pos - 2)
                if fin < 0:
                    return None
                return status, h, b"".join(chunks), fin + 4
            if len(buf) < pos + size + 2:
                return None
            chunks.append(buf[pos:pos + size])
            pos += size + 2
    n = int(h.get("content-length", "0"))
    if len(buf) < pos + n:
        return None
    return status, h, buf[pos:pos + n], pos + n


class Gen:
    def __init__(self, cfg):
        self.cfg = cfg
        u = urllib.parse.urlsplit(cfg["base"])
        self.host, self.port = u.hostname, u.port or 80
        self.hosthdr = u.netloc
        self.prefix = u.path.rstrip("/")
        self.phase = "parking"
        self.t_send = None
        self.last_activity = time.monotonic()
        self.early = 0
        self.errors = 0
        self.error_samples = []
        self.sent = 0
        self.woken = []          # (seconds after the send started, bytes, index)
        self.bodies = {}
        self.all_woken = None
        self.expected = 0        # long-polls parked when the send went out
        self.errors_after = 0    # of which failed instead of answering

    def request_bytes(self, poll, since):
        path = "%s/_matrix/client/v3/sync?since=%s&timeout=%d%s" % (
            self.prefix, urllib.parse.quote(since, safe=""), self.cfg["timeout_ms"], self.cfg.get("query", ""))
        return ("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n" % (
            path, self.hosthdr, poll["token"])).encode()

    def error(self, what):
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)
        self.check_done()

    def check_done(self):
        if self.phase == "woken" and self.all_woken is not None and \
                len(self.woken) + self.errors_after >= self.expected:
            if not self.all_woken.done():
                self.all_woken.set_result(True)


class Poll(asyncio.Protocol):
    def __init__(self, gen, idx):
        self.gen = gen
        self.idx = idx
        self.poll = gen.cfg["polls"][idx]
        self.buf = b""
        self.tr = None
        self.done = False
        self.connected = None

    def connection_made(self, transport):
        self.tr = transport
        transport.write(self.gen.request_bytes(self.poll, self.poll["since"]))
        self.gen.sent += 1
        if self.connected and not self.connected.done():
            self.connected.set_result(True)

    def data_received(self, data):
        t = time.monotonic()
        self.buf += data
        parsed = parse_response(self.buf)
        if parsed is None:
            return
        status, h, body, used = parsed
        self.buf = self.buf[used:]
        g = self.gen
        if g.phase == "parking" or g.t_send is None:
            # answered before the send: something else happened; ask again from there
            g.early += 1
            g.last_activity = t
            try:
                since = json.loads(body)["next_batch"]
            except (ValueError, KeyError, TypeError):
                self.done = True
                g.error("early answer %d without next_batch: %r" % (status, body[:120]))
                return
            self.tr.write(g.request_bytes(self.poll, since))
            return
        if self.done:
            return
        self.done = True
        if status != 200:
            g.errors_after += 1
            g.error("status %d: %r" % (status, body[:120]))
            return
        g.woken.append((t - g.t_send, len(body), self.idx))
        if len(g.bodies) < 50 or self.idx == 0:
            g.bodies[self.idx] = body
        g.check_done()

    def connection_lost(self, exc):
        if not self.done:
            self.done = True
            if self.gen.phase != "parking":
                self.gen.errors_after += 1
            self.gen.error("connection lost: %s" % (exc or "closed by the server"))


async def put(gen, send):
    reader, writer = await asyncio.open_connection(gen.host, gen.port)
    body = json.dumps(send["body"]).encode()
    writer.write(("PUT %s%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
                  "Content-Length: %d\r\n\r\n" % (gen.prefix, send["path"], gen.hosthdr, send["token"], len(body))
                  ).encode() + body)
    buf = b""
    while True:
        data = await reader.read(65536)
        if not data:
            break
        buf += data
        p = parse_response(buf)
        if p:
            writer.close()
            return p[0], p[2]
    writer.close()
    return 0, buf


async def main(cfg):
    loop = asyncio.get_running_loop()
    g = Gen(cfg)
    n = len(cfg["polls"])
    sem = asyncio.Semaphore(cfg.get("connect_concurrency", 256))
    protos = []

    async def connect(i):
        async with sem:
            p = Poll(g, i)
            p.connected = loop.create_future()
            try:
                await loop.create_connection(lambda: p, g.host, g.port)
            except OSError as e:
                p.done = True
                g.error("connect: %s" % e)
                return
            protos.append(p)

    t0 = time.monotonic()
    await asyncio.gather(*[connect(i) for i in range(n)])
    t_connected = time.monotonic() - t0
    # settle: every request written, no early answers for settle_s
    settle = cfg.get("settle_s", 1.0)
    deadline = time.monotonic() + max(30.0, 10 * settle)
    while time.monotonic() < deadline:
        quiet = time.monotonic() - g.last_activity
        if g.sent >= n - g.errors and quiet >= settle:
            break
        await asyncio.sleep(min(0.1, settle / 4))
    parked = sum(1 for p in protos if not p.done)
    print("parked %d early=%d errors=%d connect_s=%.3f" % (parked, g.early, g.errors, t_connected), flush=True)

    await loop.run_in_executor(None, sys.stdin.readline)

    errors_before = g.errors
    g.expected = sum(1 for p in protos if not p.done)
    g.all_woken = loop.create_future()
    g.phase = "woken"
    g.t_send = time.monotonic()
    status, body = await put(g, cfg["send"])
    send_s = time.monotonic() - g.t_send
    g.check_done()
    try:
        await asyncio.wait_for(g.all_woken, cfg.get("wake_deadline_s", 60))
        timed_out = False
    except asyncio.TimeoutError:
        timed_out = True
    elapsed = time.monotonic() - g.t_send
    for p in protos:
        if p.tr is not None:
            p.tr.close()

    event_id = None
    try:
        event_id = json.loads(body).get("event_id")
    except (ValueError, AttributeError):
        pass
    # the answers must carry the event (checked on a sample, after the timing)
    missing = 0
    for b in g.bodies.values():
        try:
            j = json.loads(b)
            if cfg.get("check") == "to_device":
                evs = j["to_device"]["events"]
                found = any(e.get("content", {}).get("marker") == cfg["marker"] for e in evs)
            else:
                evs = j["rooms"]["join"][cfg["room_id"]]["timeline"]["events"]
                found = any(e.get("event_id") == event_id for e in evs)
            if not found:
                missing += 1
        except (ValueError, KeyError, TypeError, AttributeError):
            missing += 1
    lat = sorted(w[0] for w in g.woken)
    result = {"polls": n, "parked": parked, "early": g.early, "woken": len(g.woken),
              "errors": g.errors, "errors_before_send": errors_before, "error_samples": g.error_samples,
              "not_woken": g.expected - len(g.woken) - g.errors_after,
              "send_status": status, "send_ms": send_s * 1000.0, "event_id": event_id,
              "elapsed_ms": elapsed * 1000.0, "connect_s": t_connected,
              "wake_ms": [round(x * 1000.0, 3) for x in lat],
              "bytes_per_response": (sum(w[1] for w in g.woken) / len(g.woken)) if g.woken else None,
              "checked": len(g.bodies), "missing_event": missing, "timed_out": timed_out}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    want = len(cfg["polls"]) + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want,
                                                    hard))
    asyncio.run(main(cfg))
    sys.stdout.flush()
    os._exit(0)
