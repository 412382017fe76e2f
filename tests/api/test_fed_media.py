#!/usr/bin/python3
"""Media between servers, black box (federation/media.c and the federation
mode of server/cs/media.c): two axon instances on loopback over TLS, and a
fake remote server signing with the spec's key.

Serving: /_matrix/federation/v1/media/download and /thumbnail answer
multipart/mixed with the metadata part and the content part (parsed here
with the standard library's email parser), only for our own media, signed
requests only.  Fetching: a client of A downloading mxc://B/... gets B's
bytes, fetched over federation once and served from A's cache afterwards
(even with B stopped); identical content is stored once; thumbnails of
remote images are made locally; a server without the federation endpoints
(404 M_UNRECOGNIZED) is asked on the deprecated path with
allow_remote=false; a Location part is followed; content over
max_upload_size, unknown media, unreachable servers and malformed answers
give the errors the client API lists; unsafe types stay unsafe."""

import email.parser
import email.policy
import hashlib
import http.client
import json
import os
import struct
import unittest
import urllib.parse
import zlib

from axontest import main, unique

try:
    import fedutil
    from fedutil import FedTestCase, fed_server, xmatrix
    HAVE_DEPS = fedutil.OPENSSL is not None
except ImportError:  # python3-signedjson / python3-nacl missing
    HAVE_DEPS = False
    FedTestCase = unittest.TestCase

MEDIA = "/_matrix/client/v1/media"
FED = "/_matrix/federation/v1"


def png(width, height):
    """A small PNG made with the standard library."""
    rows = b"".join(b"\x00" + b"".join(bytes((x * 7 % 256, y * 5 % 256, 128)) for x in range(width))
                    for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def q(s):
    return urllib.parse.quote(s, safe="")


def multipart(body, content_type):
    """The parts of a multipart/mixed body: [(headers dict, bytes)]."""
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    assert msg.is_multipart(), content_type
    return [({k.lower(): v for k, v in p.items()}, p.get_payload(decode=True)) for p in msg.get_payload()]


@unittest.skipUnless(HAVE_DEPS, "openssl, python3-signedjson and python3-nacl are needed")
class FedMedia(FedTestCase):
    fed_servers = (("a", "localhost", {"max_upload_size": "1M"}), ("b", "ip", None))

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.carol = cls.a.register(unique("carol"))["access_token"]

    # -- helpers ------------------------------------------------------------------------------------

    def upload(self, server, data, content_type="application/octet-stream", filename=None):
        token = server.register(unique("up"))["access_token"]
        path = "/_matrix/media/v3/upload" + ("?filename=" + q(filename) if filename else "")
        r = server.request("POST", path, token=token, raw=data, headers={"Content-Type": content_type})
        self.assertEqual(r.status, 200, r)
        uri = r.json["content_uri"]
        return uri[len("mxc://"):].split("/", 1)

    def download(self, server_name, media_id, thumb=None):
        if thumb is None:
            return self.a.request("GET", "%s/download/%s/%s" % (MEDIA, q(server_name), media_id), token=self.carol)
        return self.a.request("GET", "%s/thumbnail/%s/%s?%s" % (MEDIA, q(server_name), media_id,
                                                                 urllib.parse.urlencode(thumb)), token=self.carol)

    def fed_raw(self, server, path, sign=True):
        """A GET from the fake server to 'server', the raw answer: (status, headers, body)."""
        ctx = self.ca.client_context()
        c = http.client.HTTPSConnection("127.0.0.1", server.tls_port, timeout=60, context=ctx)
        headers = {"Host": server.server_name}
        if sign:
            headers["Authorization"] = xmatrix(self.fake.server_name, server.server_name, self.fake.key_id,
                                               self.fake.signing_key, "GET", path)
        try:
            c.request("GET", path, headers=headers)
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()

    def media_files(self, server):
        root = os.path.join(server.data_dir, "media")
        return sorted(f for d in os.listdir(root) if len(d) == 2 for f in os.listdir(os.path.join(root, d)))

    def fake_route(self, path, fn):
        self.fake.raw_routes[path] = fn
        self.addCleanup(self.fake.raw_routes.pop, path, None)

    @staticmethod
    def raw_reply(h, status, body, headers):
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    # -- serving ---------------------------------------------------------------------------------------

    def test_download_served_as_multipart(self):
        data = os.urandom(200 * 1024)  # several 64 KiB pieces of the streamed file
        server, media_id = self.upload(self.b, data, "application/pdf", filename="report ü.pdf")
        status, headers, body = self.fed_raw(self.b, FED + "/media/download/" + media_id)
        self.assertEqual(status, 200, body[:200])
        self.assertTrue(headers["content-type"].startswith("multipart/mixed; boundary="), headers)
        self.assertEqual(int(headers["content-length"]), len(body))
        (h1, meta), (h2, content) = multipart(body, headers["content-type"])
        self.assertEqual(h1["content-type"], "application/json")
        self.assertEqual(json.loads(meta), {})
        self.assertEqual(h2["content-type"], "application/pdf")
        self.assertIn("attachment", h2["content-disposition"])
        self.assertIn("filename*=UTF-8''report%20%C3%BC.pdf", h2["content-disposition"])
        self.assertEqual(content, data)
        # an empty file still has both parts
        _, empty_id = self.upload(self.b, b"", "text/plain")
        status, headers, body = self.fed_raw(self.b, FED + "/media/download/" + empty_id)
        self.assertEqual(status, 200)
        self.assertEqual([c for _, c in multipart(body, headers["content-type"])][1], b"")

    def test_thumbnail_served_as_multipart(self):
        _, media_id = self.upload(self.b, png(120, 90), "image/png")
        status, headers, body = self.fed_raw(self.b, FED + "/media/thumbnail/%s?width=32&height=32&method=crop"
                                             % media_id)
        self.assertEqual(status, 200, body[:200])
        (h1, meta), (h2, content) = multipart(body, headers["content-type"])
        self.assertEqual(json.loads(meta), {})
        self.assertEqual(h2["content-type"], "image/png")
        self.assertEqual(content[:8], b"\x89PNG\r\n\x1a\n")
        w, h = struct.unpack(">II", content[16:24])
        self.assertEqual((w, h), (32, 32))
        status, _, body = self.fed_raw(self.b, FED + "/media/thumbnail/%s?width=0&height=32" % media_id)
        self.assertEqual((status, json.loads(body)["errcode"]), (400, "M_INVALID_PARAM"))
        status, _, body = self.fed_raw(self.b, FED + "/media/thumbnail/%s?height=32" % media_id)
        self.assertEqual((status, json.loads(body)["errcode"]), (400, "M_MISSING_PARAM"))

    def test_serving_errors(self):
        status, _, body = self.fed_raw(self.b, FED + "/media/download/nosuchmedia")
        self.assertEqual((status, json.loads(body)["errcode"]), (404, "M_NOT_FOUND"))
        status, _, body = self.fed_raw(self.b, FED + "/media/download/bad%21id")
        self.assertEqual((status, json.loads(body)["errcode"]), (404, "M_NOT_FOUND"))
        _, media_id = self.upload(self.b, b"secret")
        status, _, body = self.fed_raw(self.b, FED + "/media/download/" + media_id, sign=False)
        self.assertEqual((status, json.loads(body)["errcode"]), (401, "M_UNAUTHORIZED"))
        # another server's media that B has cached is not B's to serve
        _, a_id = self.upload(self.a, b"A's own bytes")
        r = self.b.request("GET", "%s/download/%s/%s" % (MEDIA, q(self.a.server_name), a_id),
                           token=self.b.register(unique())["access_token"])
        self.assertEqual(r.status, 200, r)
        status, _, _ = self.fed_raw(self.b, FED + "/media/download/" + a_id)
        self.assertEqual(status, 404)

    # -- fetching --------------------------------------------------------------------------------------

    def test_remote_media_fetched_once_and_cached(self):
        data = os.urandom(300 * 1024)
        server, media_id = self.upload(self.b, data, "image/webp", filename="pic.webp")
        r = self.download(server, media_id)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.raw, data)
        self.assertEqual(r.headers["content-type"], "image/webp")
        self.assertIn("filename*=UTF-8''pic.webp", r.headers["content-disposition"])
        self.assertEqual(r.headers.get("x-content-type-options"), "nosniff")
        # the same content uploaded on A too: one file
        digest = hashlib.sha256(data).hexdigest()
        self.assertIn(digest, self.media_files(self.a))
        before = len(self.media_files(self.a))
        self.upload(self.a, data, "image/webp")
        self.assertEqual(len(self.media_files(self.a)), before)
        # served from A's cache from now on: B's federation endpoint is not asked again
        route = '{route="/_matrix/federation/v1/media/download/{mediaId}",method="GET",status="200"}'
        served = metric(self.b, "axon_http_requests_total" + route)
        for _ in range(3):
            self.assertEqual(self.download(server, media_id).raw, data)
        self.assertEqual(metric(self.b, "axon_http_requests_total" + route), served)

    def test_cached_media_survives_the_remote_going_away(self):
        s = fed_server(self.ca, self.cert, self.key, "ip").start()
        try:
            self.fake.key_sources[s.server_name] = s.port
            server, media_id = self.upload(s, b"still here", "text/plain")
            self.assertEqual(self.download(server, media_id).raw, b"still here")
        finally:
            s.stop()
            s.cleanup()
        r = self.download(server, media_id)
        self.assertEqual((r.status, r.raw), (200, b"still here"))
        # never fetched: the server is gone
        r = self.download(server, "neverfetched")
        self.assertEqual(r.status, 502, r)

    def test_remote_thumbnail_made_locally(self):
        server, media_id = self.upload(self.b, png(200, 100), "image/png")
        r = self.download(server, media_id, thumb={"width": 32, "height": 32, "method": "crop"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], "image/png")
        self.assertEqual(struct.unpack(">II", r.raw[16:24]), (32, 32))

    def test_unknown_remote_media_and_limits(self):
        r = self.download(self.b.server_name, "nosuchmedia")
        self.assertEqual((r.status, r.json["errcode"]), (404, "M_NOT_FOUND"))
        # over A's max_upload_size (1M): refused, and not cached
        server, big = self.upload(self.b, os.urandom(1536 * 1024))
        r = self.download(server, big)
        self.assertEqual((r.status, r.json["errcode"]), (502, "M_TOO_LARGE"))
        self.assertEqual(self.download(server, big).status, 502)
        # a dangerous type is kept as declared, but never served as such
        server, html = self.upload(self.b, b"<script>alert(1)</script>", "text/html")
        r = self.download(server, html)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.headers["content-type"], "application/octet-stream")
        self.assertIn("attachment", r.headers["content-disposition"])

    def test_legacy_fallback_when_the_federation_path_is_unknown(self):
        mid = "legacy" + unique("m").replace("_", "")
        seen = []

        def legacy(h, method, url, body):
            seen.append(url.query)
            self.raw_reply(h, 200, b"old server bytes", {"Content-Type": "text/plain; charset=utf-8",
                                                          "Content-Disposition": 'inline; filename="old.txt"'})

        # the federation path is not routed: the fake answers 404 M_UNRECOGNIZED
        self.fake_route("/_matrix/media/v3/download/%s/%s" % (q(self.fake.server_name), mid), legacy)
        r = self.download(self.fake.server_name, mid)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.raw, b"old server bytes")
        self.assertEqual(r.headers["content-type"], "text/plain; charset=utf-8")
        self.assertIn('filename="old.txt"', r.headers["content-disposition"])
        self.assertEqual(seen, ["allow_remote=false"])
        asked = [x["path"] for x in self.fake.requests if mid in x["path"]]
        self.assertEqual(asked[0], FED + "/media/download/%s?timeout_ms=20000" % mid)
        # a plain 404 on the federation path is an answer: no fallback
        mid2 = mid + "x"
        self.fake_route(FED + "/media/download/" + mid2,
                        lambda h, m, u, b: h.reply(404, {"errcode": "M_NOT_FOUND", "error": "no"}))
        self.fake_route("/_matrix/media/v3/download/%s/%s" % (q(self.fake.server_name), mid2), legacy)
        self.assertEqual(self.download(self.fake.server_name, mid2).status, 404)
        self.assertEqual(len(seen), 1)

    def test_location_part_is_followed(self):
        mid = "loc" + unique("m").replace("_", "")
        cdn = "/cdn/" + mid

        def federation(h, method, url, body):
            b = "b0undary"
            payload = ("--%s\r\nContent-Type: application/json\r\n\r\n{}\r\n--%s\r\nLocation: https://127.0.0.1:%d%s"
                       "\r\n\r\n\r\n--%s--\r\n" % (b, b, self.fake.port, cdn, b)).encode()
            self.raw_reply(h, 200, payload, {"Content-Type": "multipart/mixed; boundary=" + b})

        self.fake_route(FED + "/media/download/" + mid, federation)
        self.fake.open_routes[cdn] = lambda h, m, u, b: self.raw_reply(h, 200, b"from the cdn",
                                                                      {"Content-Type": "image/gif"})
        self.addCleanup(self.fake.open_routes.pop, cdn, None)
        r = self.download(self.fake.server_name, mid)
        self.assertEqual((r.status, r.raw), (200, b"from the cdn"), r)
        self.assertEqual(r.headers["content-type"], "image/gif")

    def test_malformed_answers(self):
        cases = {
            "notmultipart": ({"Content-Type": "application/octet-stream"}, b"just bytes"),
            "noclose": ({"Content-Type": "multipart/mixed; boundary=x"},
                        b"--x\r\nContent-Type: application/json\r\n\r\n{}\r\n--x\r\n\r\nbytes"),
            "onepart": ({"Content-Type": "multipart/mixed; boundary=x"},
                        b"--x\r\nContent-Type: application/json\r\n\r\n{}\r\n--x--\r\n"),
            "nometa": ({"Content-Type": "multipart/mixed; boundary=x"},
                       b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x\r\n\r\nbytes\r\n--x--\r\n"),
        }
        for mid, (headers, payload) in cases.items():
            mid = mid + unique("m").replace("_", "")
            self.fake_route(FED + "/media/download/" + mid,
                            lambda h, m, u, b, headers=headers, payload=payload:
                            self.raw_reply(h, 200, payload, headers))
            r = self.download(self.fake.server_name, mid)
            self.assertEqual(r.status, 502, (mid, r))
        # and a good one from the fake, quoted boundary and preamble included
        mid = "good" + unique("m").replace("_", "")
        payload = (b"preamble\r\n--a b\r\nContent-Type: application/json\r\n\r\n{}\r\n--a b  \r\n"
                   b"Content-Type: text/plain\r\n\r\n--a bc\r\n\r\n--a b--\r\nepilogue")
        self.fake_route(FED + "/media/download/" + mid,
                        lambda h, m, u, b: self.raw_reply(h, 200, payload,
                                                          {"Content-Type": 'multipart/mixed; boundary="a b"'}))
        r = self.download(self.fake.server_name, mid)
        self.assertEqual((r.status, r.raw), (200, b"--a bc\r\n"), r)


def metric(server, name):
    text = server.request("GET", "/metrics").raw.decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


if __name__ == "__main__":
    main()
