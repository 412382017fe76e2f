"""A small asyncio HTTP/1.1 client for seeding: many requests over a few
keep-alive connections at once, so scenarios can create thousands of users,
rooms and events in seconds (urllib/http.client open one connection per call
and run one call at a time).

    responses = aio.batch(base, [aio.Call("POST", "/_matrix/client/v3/createRoom", {}, token), ...],
                          concurrency=32)

Every Call gets one Response (util.Response) in the same order.  429
M_LIMIT_EXCEEDED is waited out (retry_after_ms) and the call retried; any
other status is returned as it is, for the caller to judge.  Plain HTTP only
(a --target behind TLS is seeded too: https works through asyncio's ssl).

Python 3 standard library only.
"""

import asyncio
import json
import ssl
import urllib.parse

from .util import BenchError, Response


class Call:
    __slots__ = ("method", "path", "body", "token")

    def __init__(self, method, path, body=None, token=None):
        self.method = method
        self.path = path
        self.body = body
        self.token = token


class Conn:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closed it."""

    def __init__(self, base, timeout=60.0):
        u = urllib.parse.urlsplit(base)
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.tls = u.scheme == "https"
        self.prefix = u.path.rstrip("/")
        self.hosthdr = u.netloc
        self.timeout = timeout
        self.reader = self.writer = None

    async def _open(self):
        ctx = None
        if self.tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port, ssl=ctx, limit=1 << 24)

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def request(self, method, path, body=None, token=None):
        data = b""
        if body is not None:
            data = body if isinstance(body, (bytes, bytearray)) else json.dumps(body).encode()
        head = ["%s %s HTTP/1.1" % (method, self.prefix + path), "Host: %s" % self.hosthdr,
                "Content-Length: %d" % len(data)]
        if body is not None:
            head.append("Content-Type: application/json")
        if token:
            head.append("Authorization: Bearer " + token)
        msg = ("\r\n".join(head) + "\r\n\r\n").encode() + data
        for attempt in (0, 1):
            fresh = self.writer is None
            if fresh:
                await self._open()
            try:
                self.writer.write(msg)
                return await asyncio.wait_for(self._read(), self.timeout)
            except (ConnectionError, asyncio.IncompleteReadError) as e:
                # a keep-alive connection the server closed meanwhile: once more on a new one
                self.close()
                if fresh or attempt == 1:
                    raise OSError("%s %s: %s" % (method, path, e)) from e
            except BaseException:
                self.close()
                raise
        raise OSError("unreachable")

    async def _read(self):
        r = self.reader
        head = await r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers.append((k.strip(), v.strip()))
        h = {k.lower(): v for k, v in headers}
        if "chunked" in h.get("transfer-encoding", "").lower():
            chunks = []
            while True:
                size = int((await r.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await r.readuntil(b"\r\n")) != b"\r\n":   # trailers
                        pass
                    break
                chunks.append(await r.readexactly(size))
                await r.readexactly(2)
            raw = b"".join(chunks)
        elif "content-length" in h:
            raw = await r.readexactly(int(h["content-length"]))
        else:
            raw = await r.read()          # until close
            self.close()
        if h.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, raw)


async def _run(base, calls, concurrency, retries_429, progress):
    out = [None] * len(calls)
    nxt = iter(range(len(calls)))
    done = [0]

    async def worker():
        conn = Conn(base)
        try:
            for i in nxt:
                c = calls[i]
                for _ in range(retries_429):
                    resp = await conn.request(c.method, c.path, c.body, c.token)
                    if resp.status != 429:
                        break
                    ms = (resp.json or {}).get("retry_after_ms", 1000) if isinstance(resp.json, dict) else 1000
                    await asyncio.sleep(min(10.0, max(0.05, ms / 1000.0)))
                out[i] = resp
                done[0] += 1
                if progress and done[0] % 500 == 0:
                    progress(done[0], len(calls))
        finally:
            conn.close()

    await asyncio.gather(*[worker() for _ in range(max(1, min(concurrency, len(calls))))])
    return out


def batch(base, calls, concurrency=32, retries_429=60, progress=None):
    """Runs 'calls' over 'concurrency' keep-alive connections; returns their Responses in order."""
    if not calls:
        return []
    return asyncio.run(_run(base, calls, concurrency, retries_429, progress))


def expect_ok(responses, calls, what):
    """Raises BenchError naming the first call that did not answer 200."""
    for resp, c in zip(responses, calls):
        if resp is None or resp.status != 200:
            raise BenchError("%s: %s %s answered %s: %r" % (
                what, c.method, c.path, resp.describe() if resp else "nothing", resp.raw[:300] if resp else b""))
    return responses
