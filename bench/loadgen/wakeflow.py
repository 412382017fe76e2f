#!/usr/bin/python3
"""wakeflow.py CONFIG.json -- the load generator of sync_wakeup's "flow" case
(the sync engine issue's wake-up target): many idle /sync long-polls that must
stay parked, the members of one room long-polling as real clients do, and
messages sent into that room at a paced rate; the time from each send to
each member's /sync answer that carries it.

Like longpoll.py (whose response parser it uses): Python asyncio with plain
Protocols, one TCP connection per long-poll, no per-request coroutine.  The
answers are not parsed as JSON: each sent message carries "axb_seq": N in its
content, and a regular expression finds those numbers and next_batch in the
raw bytes, so the client's cost per answer stays small.

CONFIG (JSON): {"base": "http://127.0.0.1:PORT",
                "idle": [{"token", "since"}, ...],     long-polls that must not answer
                "members": [{"token", "since"}, ...],  the room's members, one long-poll each
                "query": "&set_presence=offline&filter=...",
                "timeout_ms": 120000,                  the members' ?timeout=
                "idle_timeout_ms": 60000,              the idle long-polls' (default: timeout_ms)
                "room_id": ..., "rate": 500, "count": 2000,
                "senders": [ACCESS_TOKEN, ...],        round-robin, one PUT each
                "send_conns": 16,                      keep-alive connections for the PUTs
                "txn_prefix": ..., "settle_s": 1.0, "drain_s": 10,
                "server_pid": PID (optional: the server's CPU during the flow, from /proc),
                "connect_concurrency": 256}

Conversation on stdin/stdout, as longpoll.py: "parked N early=E errors=X"
once every long-poll waits; on any line, the sends start (message i is due
at i/rate seconds; when every send connection is busy it waits, and how late
it went out is reported); every member re-polls from its answer's next_batch
at once; the run ends when every member saw every message or drain_s after
the last send.  Then one JSON line with the result.

Latency of a (message, member) pair: from just before the PUT was written to
when the member's answer carrying the message was read completely; a message
that arrives while the member is between two polls is picked up by its next
poll, and that latency counts too.
"""

import asyncio
import json
import os
import re
import resource
import sys
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from longpoll import parse_response  # noqa: E402

SEQ_RE = re.compile(rb'"axb_seq":\s*(\d+)')
NEXT_RE = re.compile(rb'"next_batch":\s*"([^"]+)"')
DEBUG = os.environ.get("AXB_WAKEFLOW_DEBUG")
LIMITED_RE = re.compile(rb'"limited":\s*true')


def pct(sorted_vals, p):
    if not sorted_vals:
        return None
    k = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def server_cpu_s(pid):
    """The server's user + system CPU seconds (from /proc), or None."""
    if not pid:
        return None
    try:
        with open("/proc/%d/stat" % pid) as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class Flow:
    def __init__(self, cfg):
        self.cfg = cfg
        u = urllib.parse.urlsplit(cfg["base"])
        self.host, self.port = u.hostname, u.port or 80
        self.hosthdr = u.netloc
        self.prefix = u.path.rstrip("/")
        self.phase = "parking"
        self.last_activity = time.monotonic()
        self.early = 0           # answers before the sends started (re-polled)
        self.idle_answers = 0    # idle long-polls that answered after the sends started
        self.errors = 0
        self.error_samples = []
        self.sent = 0
        self.count = cfg["count"]
        self.t_write = [None] * self.count
        self.send_ms = []
        self.send_late_ms = []
        self.send_status = {}
        self.lat = []            # ms, one per (message, member) delivery
        self.answers = 0         # member answers after the sends started
        self.limited = 0
        self.dups = 0
        self.bytes = 0
        self.members = []
        self.done = None

    def sync_bytes(self, token, since, member=True):
        timeout = self.cfg["timeout_ms"] if member else self.cfg.get("idle_timeout_ms", self.cfg["timeout_ms"])
        path = "%s/_matrix/client/v3/sync?since=%s&timeout=%d%s" % (
            self.prefix, urllib.parse.quote(since, safe=""), timeout, self.cfg.get("query", ""))
        return ("GET %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n" % (
            path, self.hosthdr, token)).encode()

    def error(self, what):
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(what)

    def check_done(self):
        if self.phase == "flow" and self.sent >= self.count and self.done is not None and not self.done.done():
            if all(m.seen_n >= self.count for m in self.members):
                self.done.set_result(True)


class Poll(asyncio.Protocol):
    """One long-poll connection; 'member' ones re-poll and count deliveries."""

    def __init__(self, flow, poll, member):
        self.f = flow
        self.token = poll["token"]
        self.since = poll["since"]
        self.member = member
        self.buf = b""
        self.tr = None
        self.closed = False
        self.seen = bytearray(flow.count) if member else None
        self.seen_n = 0
        self.connected = None
        self.since_sent = self.since
        self.log = []

    def connection_made(self, transport):
        self.tr = transport
        transport.write(self.f.sync_bytes(self.token, self.since, self.member))
        if self.connected is not None and not self.connected.done():
            self.connected.set_result(True)

    def data_received(self, data):
        t = time.monotonic()
        self.buf += data
        parsed = parse_response(self.buf)
        if parsed is None:
            return
        status, _, body, used = parsed
        self.buf = self.buf[used:]
        f = self.f
        m = NEXT_RE.search(body) if status == 200 else None
        if m is None:
            self.closed = True
            f.error("answer %d without next_batch: %r" % (status, body[:160]))
            self.tr.close()
            return
        self.since = m.group(1).decode()
        if f.phase == "parking":
            f.early += 1
            f.last_activity = t
        elif not self.member:
            f.idle_answers += 1
        else:
            f.answers += 1
            f.bytes += len(body)
            if LIMITED_RE.search(body):
                f.limited += 1
            tw = f.t_write
            if DEBUG:
                self.log.append((self.since_sent, self.since, [int(x) for x in SEQ_RE.findall(body)]))
            for s in SEQ_RE.findall(body):
                i = int(s)
                if i >= f.count or tw[i] is None:
                    continue
                if self.seen[i]:
                    f.dups += 1
                    continue
                self.seen[i] = 1
                self.seen_n += 1
                f.lat.append((t - tw[i]) * 1000.0)
        self.since_sent = self.since
        self.tr.write(f.sync_bytes(self.token, self.since, self.member))
        if self.member and self.seen_n >= f.count:
            f.check_done()

    def connection_lost(self, exc):
        if not self.closed:
            self.closed = True
            if self.f.phase != "ending":
                self.f.error("connection lost: %s" % (exc or "closed by the server"))


class Sender(asyncio.Protocol):
    """One keep-alive connection for the PUTs, one at a time."""

    def __init__(self, flow, free):
        self.f = flow
        self.free = free
        self.buf = b""
        self.tr = None
        self.t0 = None

    def connection_made(self, transport):
        self.tr = transport
        self.free.put_nowait(self)

    def put(self, i, token):
        f = self.f
        body = json.dumps({"msgtype": "m.text", "body": "wake %d" % i, "axb_seq": i}).encode()
        path = "%s/_matrix/client/v3/rooms/%s/send/m.room.message/%s-%d" % (
            f.prefix, urllib.parse.quote(f.cfg["room_id"], safe=""), f.cfg["txn_prefix"], i)
        req = ("PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\n"
               "Content-Length: %d\r\n\r\n" % (path, f.hosthdr, token, len(body))).encode() + body
        self.t0 = time.monotonic()
        f.t_write[i] = self.t0
        self.tr.write(req)

    def data_received(self, data):
        self.buf += data
        p = parse_response(self.buf)
        if p is None:
            return
        self.buf = self.buf[p[3]:]
        f = self.f
        f.send_ms.append((time.monotonic() - self.t0) * 1000.0)
        f.send_status[p[0]] = f.send_status.get(p[0], 0) + 1
        if p[0] != 200:
            f.error("send %d: %r" % (p[0], p[2][:160]))
        self.free.put_nowait(self)

    def connection_lost(self, exc):
        if self.f.phase != "ending" and self.f.sent < self.f.count:
            self.f.error("send connection lost: %s" % exc)


async def main(cfg):
    loop = asyncio.get_running_loop()
    f = Flow(cfg)
    sem = asyncio.Semaphore(cfg.get("connect_concurrency", 256))
    polls = []

    async def connect(poll, member):
        async with sem:
            p = Poll(f, poll, member)
            p.connected = loop.create_future()
            try:
                await loop.create_connection(lambda: p, f.host, f.port)
            except OSError as e:
                p.closed = True
                f.error("connect: %s" % e)
                return
            await p.connected
            polls.append(p)

    t0 = time.monotonic()
    await asyncio.gather(*([connect(p, False) for p in cfg["idle"]] + [connect(p, True) for p in cfg["members"]]))
    t_connected = time.monotonic() - t0
    f.members = [p for p in polls if p.member]
    free = asyncio.Queue()
    senders = []
    for _ in range(cfg.get("send_conns", 16)):
        s = Sender(f, free)
        await loop.create_connection(lambda: s, f.host, f.port)
        senders.append(s)
    settle = cfg.get("settle_s", 1.0)
    f.last_activity = time.monotonic()
    deadline = time.monotonic() + max(30.0, 10 * settle)
    while time.monotonic() < deadline and time.monotonic() - f.last_activity < settle:
        await asyncio.sleep(min(0.1, settle / 4))
    parked = sum(1 for p in polls if not p.closed)
    print("parked %d early=%d errors=%d connect_s=%.3f" % (parked, f.early, f.errors, t_connected), flush=True)

    await loop.run_in_executor(None, sys.stdin.readline)

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    srv0 = server_cpu_s(cfg.get("server_pid"))
    f.done = loop.create_future()
    f.phase = "flow"
    rate = float(cfg["rate"])
    tokens = cfg["senders"]
    t_start = time.monotonic()
    for i in range(f.count):
        due = t_start + i / rate
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        s = await free.get()
        f.send_late_ms.append(max(0.0, (time.monotonic() - due) * 1000.0))
        s.put(i, tokens[i % len(tokens)])
        f.sent += 1
    t_sent = time.monotonic()
    f.check_done()
    try:
        await asyncio.wait_for(asyncio.shield(f.done), cfg.get("drain_s", 10))
        timed_out = False
    except asyncio.TimeoutError:
        timed_out = True
    t_end = time.monotonic()
    # the last sends' answers, for their latency
    for _ in range(100):
        if len(f.send_ms) >= f.count:
            break
        await asyncio.sleep(0.01)
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    srv1 = server_cpu_s(cfg.get("server_pid"))
    f.phase = "ending"
    for p in polls:
        if p.tr is not None:
            p.tr.close()
    for s in senders:
        s.tr.close()

    lat = sorted(f.lat)
    send = sorted(f.send_ms)
    late = sorted(f.send_late_ms)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    flow_s = t_end - t_start
    expected = f.count * len(f.members)
    short = [m for m in f.members if m.seen_n < f.count]
    missing_sample = []
    if short:
        seen = short[0].seen
        missing_sample = [i for i in range(f.count) if not seen[i]][:20]
        if DEBUG:
            first = missing_sample[0]
            for k, (a, b, seqs) in enumerate(short[0].log):
                if any(abs(x - first) < 15 for x in seqs):
                    sys.stderr.write("answer %d: since %s next %s seqs %s\n" % (k, a, b, seqs))
    srv_cpu = srv1 - srv0 if srv0 is not None and srv1 is not None else None
    result = {"members_short": len(short), "missing_sample": missing_sample, "server_cpu_s": srv_cpu,
              "server_cpu_us_per_answer": 1e6 * srv_cpu / f.answers if srv_cpu is not None and f.answers else None,
              "server_cpu_us_per_message": 1e6 * srv_cpu / f.count if srv_cpu is not None else None,
              "idle": len(cfg["idle"]), "members": len(f.members), "parked": parked, "early": f.early,
              "idle_answers": f.idle_answers, "errors": f.errors, "error_samples": f.error_samples,
              "messages": f.count, "rate": rate, "send_s": t_sent - t_start, "flow_s": flow_s,
              "send_status": f.send_status, "expected": expected, "delivered": len(lat),
              "missing": expected - len(lat), "dups": f.dups, "answers": f.answers, "limited": f.limited,
              "bytes_per_answer": f.bytes / f.answers if f.answers else None,
              "p50_ms": pct(lat, 50), "p90_ms": pct(lat, 90), "p99_ms": pct(lat, 99), "p999_ms": pct(lat, 99.9),
              "max_ms": lat[-1] if lat else None, "mean_ms": sum(lat) / len(lat) if lat else None,
              "send_p50_ms": pct(send, 50), "send_p99_ms": pct(send, 99), "send_max_ms": send[-1] if send else None,
              "send_late_p99_ms": pct(late, 99), "send_late_max_ms": late[-1] if late else None,
              "client_cpu_pct": 100.0 * cpu / flow_s if flow_s > 0 else None,
              "connect_s": t_connected, "timed_out": timed_out}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    with open(sys.argv[1]) as fh:
        config = json.load(fh)
    want = len(config["idle"]) + len(config["members"]) + 512
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard) if hard != resource.RLIM_INFINITY else want,
                                                    hard))
    asyncio.run(main(config))
    sys.stdout.flush()
    os._exit(0)
