#!/usr/bin/python3
"""The content repository (server/cs/media.c, core/media.c, core/thumbnail.c):
uploads, async uploads, downloads, thumbnails, safe serving, limits, the
legacy paths, crash safety and `axon admin media`."""

import hashlib
import io
import json
import os
import random
import socket
import struct
import subprocess
import threading
import time
import unittest
import urllib.parse
import zlib

from axontest import AXON_BIN, AxonTestCase, Server, main, unique

try:
    from PIL import Image
except ImportError:  # python3-pil is in the 'test' profile of scripts/install-deps.sh
    Image = None

MEDIA = "/_matrix/client/v1/media"
UPLOAD = "/_matrix/media/v3/upload"
LEGACY = "/_matrix/media/v3"
CSP = ("sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
       "style-src 'unsafe-inline'; media-src 'self'; object-src 'self';")


def png(width, height, alpha=False):
    """A PNG written with the standard library: a colour gradient."""
    rows = []
    for y in range(height):
        row = bytearray(b"\x00")
        for x in range(width):
            px = (x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), 128)
            row += bytes(px) + (b"\xff" if alpha else b"")
        rows.append(bytes(row))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6 if alpha else 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"".join(rows)))
            + chunk(b"IEND", b""))


def png_bomb(width, height):
    """A PNG whose header claims width x height pixels, with almost no data: decoding it would explode."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


def jpeg(width, height):
    img = Image.new("RGB", (width, height))
    img.putdata([(x % 256, y % 256, (x + y) % 256) for y in range(height) for x in range(width)])
    out = io.BytesIO()
    img.save(out, "JPEG", quality=90)
    return out.getvalue()


def mxc_parts(uri):
    assert uri.startswith("mxc://"), uri
    server, media_id = uri[len("mxc://"):].split("/", 1)
    return urllib.parse.quote(server, safe=""), media_id


class MediaCase(AxonTestCase):
    def user(self):
        u = self.server.register(unique("media"))
        return u["user_id"], u["access_token"]

    def upload(self, token, data, content_type="application/octet-stream", filename=None, expect=200):
        path = UPLOAD + ("?filename=" + urllib.parse.quote(filename) if filename is not None else "")
        r = self.req("POST", path, token=token, raw=data, headers={"Content-Type": content_type})
        self.assertEqual(r.status, expect, r)
        if expect == 200:
            self.assertSpec("POST", UPLOAD, r)
            return r.json["content_uri"]
        return r

    def download(self, token, uri, name=None, prefix=MEDIA, **params):
        server, media_id = mxc_parts(uri)
        path = "%s/download/%s/%s" % (prefix, server, media_id)
        if name is not None:
            path += "/" + urllib.parse.quote(name, safe="")
        if params:
            path += "?" + urllib.parse.urlencode(params)
        return self.req("GET", path, token=token)

    def thumbnail(self, token, uri, width, height, method=None, prefix=MEDIA, **params):
        server, media_id = mxc_parts(uri)
        q = {"width": width, "height": height}
        if method is not None:
            q["method"] = method
        q.update(params)
        return self.req("GET", "%s/thumbnail/%s/%s?%s" % (prefix, server, media_id, urllib.parse.urlencode(q)),
                        token=token)

    def assertServedSafely(self, r):
        self.assertEqual(r.headers.get("content-security-policy"), CSP)
        self.assertEqual(r.headers.get("x-content-type-options"), "nosniff")
        self.assertEqual(r.headers.get("cross-origin-resource-policy"), "cross-origin")

    def thumb_size(self, r):
        self.assertEqual(r.status, 200, r)
        self.assertIn(r.headers["content-type"], ("image/png", "image/jpeg"))
        self.assertTrue(r.headers["content-disposition"].startswith("inline"), r.headers)
        self.assertServedSafely(r)
        if Image is None:
            self.skipTest("python3-pil is not installed")
        img = Image.open(io.BytesIO(r.raw))
        img.load()
        return img.size

    def media_files(self):
        """Every original in the store: {sha256 hex: path}."""
        root = os.path.join(self.server.data_dir, "media")
        out = {}
        for d in os.listdir(root):
            if len(d) == 2:
                for f in os.listdir(os.path.join(root, d)):
                    out[f] = os.path.join(root, d, f)
        return out


class Media(MediaCase):
    def test_upload_download_round_trip(self):
        _, tok = self.user()
        data = os.urandom(1000)
        uri = self.upload(tok, data, "application/x-test", filename="blob.bin")
        self.assertTrue(uri.startswith("mxc://%s/" % self.server.server_name), uri)
        r = self.download(tok, uri)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.raw, data)
        self.assertEqual(r.headers["content-type"], "application/x-test")
        self.assertEqual(r.headers["content-length"], str(len(data)))
        self.assertEqual(r.headers["content-disposition"],
                         "attachment; filename=\"blob.bin\"; filename*=UTF-8''blob.bin")
        self.assertServedSafely(r)
        head = self.req("HEAD", "%s/download/%s/%s" % ((MEDIA,) + mxc_parts(uri)), token=tok)
        self.assertEqual(head.status, 200)
        self.assertEqual(head.headers["content-length"], str(len(data)))
        self.assertEqual(head.raw, b"")

    def test_large_round_trip_is_byte_exact(self):
        _, tok = self.user()
        data = os.urandom(5 * 1024 * 1024 + 12345)
        uri = self.upload(tok, data, "video/mp4", filename="clip.mp4")
        r = self.download(tok, uri)
        self.assertEqual(r.status, 200)
        self.assertEqual(len(r.raw), len(data))
        self.assertEqual(hashlib.sha256(r.raw).hexdigest(), hashlib.sha256(data).hexdigest())
        self.assertTrue(r.headers["content-disposition"].startswith("inline;"), r.headers)

    def test_empty_upload_and_default_type(self):
        _, tok = self.user()
        r = self.req("POST", UPLOAD, token=tok, raw=b"")
        self.assertEqual(r.status, 200, r)
        d = self.download(tok, r.json["content_uri"])
        self.assertEqual((d.status, d.raw), (200, b""))
        self.assertEqual(d.headers["content-type"], "application/octet-stream")
        self.assertEqual(d.headers["content-disposition"], "attachment")

    def test_identical_content_is_stored_once(self):
        _, tok = self.user()
        data = os.urandom(4096)
        a = self.upload(tok, data, "text/plain")
        b = self.upload(tok, data, "image/png", filename="other.png")
        self.assertNotEqual(a, b)
        digest = hashlib.sha256(data).hexdigest()
        self.assertIn(digest, self.media_files())
        self.assertEqual(self.download(tok, b).headers["content-type"], "image/png")
        self.assertEqual(self.download(tok, a).headers["content-type"], "text/plain")

    def test_file_names(self):
        _, tok = self.user()
        uri = self.upload(tok, b"bonjour", "text/plain", filename="résumé \"final\".txt")
        r = self.download(tok, uri)
        self.assertEqual(r.headers["content-disposition"],
                         "inline; filename=\"r__sum__ _final_.txt\"; "
                         "filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.txt")
        r = self.download(tok, uri, name="renamed.txt")
        self.assertEqual(r.status, 200)
        self.assertIn("filename*=UTF-8''renamed.txt", r.headers["content-disposition"])
        plain = self.download(tok, self.upload(tok, b"x", "text/plain"))
        self.assertEqual(plain.headers["content-disposition"], "inline")
        bad = self.req("POST", UPLOAD + "?filename=a%01b", token=tok, raw=b"x")
        self.assertError(bad, 400, "M_INVALID_PARAM")

    def test_unsafe_types_are_served_safely(self):
        _, tok = self.user()
        cases = [
            ("text/html", "application/octet-stream", "attachment"),
            ("text/html; charset=utf-8", "application/octet-stream", "attachment"),
            ("image/svg+xml", "application/octet-stream", "attachment"),
            ("application/xhtml+xml", "application/octet-stream", "attachment"),
            ("application/javascript", "application/octet-stream", "attachment"),
            ("TEXT/HTML", "application/octet-stream", "attachment"),
            ("application/pdf", "application/pdf", "attachment"),
            ("image/png", "image/png", "inline"),
            ("text/plain", "text/plain", "inline"),
            ("audio/ogg", "audio/ogg", "inline"),
        ]
        for declared, served, disp in cases:
            uri = self.upload(tok, b"<html><script>alert(1)</script></html>", declared, filename="x")
            r = self.download(tok, uri)
            self.assertEqual(r.status, 200)
            self.assertEqual(r.headers["content-type"], served, declared)
            self.assertEqual(r.headers["content-disposition"].split(";")[0], disp, declared)
            self.assertServedSafely(r)
        bad = self.req("POST", UPLOAD, token=tok, raw=b"x", headers={"Content-Type": "notatype"})
        self.assertError(bad, 400, "M_INVALID_PARAM")

    def test_authentication_required(self):
        _, tok = self.user()
        uri = self.upload(tok, b"secret", "text/plain")
        server, media_id = mxc_parts(uri)
        for method, path in [("GET", "%s/download/%s/%s" % (MEDIA, server, media_id)),
                             ("GET", "%s/download/%s/%s/f.txt" % (MEDIA, server, media_id)),
                             ("GET", "%s/thumbnail/%s/%s?width=32&height=32" % (MEDIA, server, media_id)),
                             ("GET", MEDIA + "/config"),
                             ("GET", MEDIA + "/preview_url?url=https%3A%2F%2Fexample.org"),
                             ("POST", UPLOAD),
                             ("POST", "/_matrix/media/v1/create"),
                             ("PUT", "/_matrix/media/v3/upload/%s/%s" % (server, media_id))]:
            r = self.req(method, path, raw=b"x" if method != "GET" else None)
            self.assertError(r, 401, "M_MISSING_TOKEN")
            r = self.req(method, path, token="axo_nonsense", raw=b"x" if method != "GET" else None)
            self.assertError(r, 401, "M_UNKNOWN_TOKEN")

    def test_config_and_preview_url(self):
        _, tok = self.user()
        r = self.req("GET", MEDIA + "/config", token=tok)
        self.assertEqual(r.status, 200)
        self.assertSpec("GET", MEDIA + "/config", r)
        self.assertEqual(r.json["m.upload.size"], 50 * 1024 * 1024)
        r = self.req("GET", MEDIA + "/preview_url?url=https%3A%2F%2Fexample.org", token=tok)
        self.assertError(r, 404, "M_UNRECOGNIZED")

    def test_unknown_and_malformed_media(self):
        _, tok = self.user()
        me = urllib.parse.quote(self.server.server_name, safe="")
        # another server's media is fetched over federation: one that cannot be reached is a 502
        # (a private address, refused here without any traffic; test_fed_media.py fetches for real)
        r = self.req("GET", "%s/download/127.0.0.1%%3A1/abcdef" % MEDIA, token=tok)
        self.assertError(r, 502, "M_UNKNOWN")
        for path in ["%s/download/%s/doesnotexist" % (MEDIA, me),
                     "%s/download/%s/bad.id" % (MEDIA, me),
                     "%s/download/%s/..%%2F..%%2Fetc%%2Fpasswd" % (MEDIA, me),
                     "%s/download/bad%%2Fserver/abcdef" % MEDIA,
                     "%s/thumbnail/%s/doesnotexist?width=32&height=32" % (MEDIA, me)]:
            self.assertError(self.req("GET", path, token=tok), 404, "M_NOT_FOUND")

    def test_legacy_paths_serve_without_token(self):
        _, tok = self.user()
        data = png(64, 48)
        uri = self.upload(tok, data, "image/png")
        server, media_id = mxc_parts(uri)
        for prefix in (LEGACY, "/_matrix/media/r0"):
            r = self.req("GET", "%s/download/%s/%s" % (prefix, server, media_id))
            self.assertEqual((r.status, r.raw), (200, data))
            self.assertServedSafely(r)
            r = self.req("GET", "%s/download/%s/%s/pic.png" % (prefix, server, media_id))
            self.assertIn("filename*=UTF-8''pic.png", r.headers["content-disposition"])
            r = self.req("GET", "%s/thumbnail/%s/%s?width=32&height=32&method=crop" % (prefix, server, media_id))
            self.assertEqual((r.status, r.headers["content-type"]), (200, "image/png"))
        r = self.req("GET", LEGACY + "/config", token=tok)
        self.assertEqual(r.status, 200)
        self.assertSpec("GET", LEGACY + "/config", r)
        self.assertError(self.req("GET", LEGACY + "/config"), 401, "M_MISSING_TOKEN")

    # ---- thumbnails ----

    def test_thumbnails_of_a_png(self):
        _, tok = self.user()
        uri = self.upload(tok, png(400, 200, alpha=True), "image/png")
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 32, 32, "crop")), (32, 32))
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 96, 96, "crop")), (96, 96))
        # scale keeps the aspect ratio inside the recommended box, never smaller than asked
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 320, 240, "scale")), (320, 160))
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 100, 100)), (320, 160))
        # larger than the original: the original itself, never upscaled
        r = self.thumbnail(tok, uri, 640, 480, "scale")
        self.assertEqual(self.thumb_size(r), (400, 200))
        # the nearest recommended size for an odd request
        w, h = self.thumb_size(self.thumbnail(tok, uri, 50, 40, "crop"))
        self.assertEqual((w, h), (96, 96))
        self.assertEqual(self.thumbnail(tok, uri, 32, 32, "crop").headers["content-type"], "image/png")
        # thumbnails are cached on disk next to the store
        digest = hashlib.sha256(png(400, 200, alpha=True)).hexdigest()
        thumbs = os.listdir(os.path.join(self.server.data_dir, "media", "thumbs", digest[:2]))
        self.assertIn("%s-32x32-crop.png" % digest, thumbs)
        self.assertIn("%s-320x240-scale.png" % digest, thumbs)

    @unittest.skipIf(Image is None, "python3-pil is not installed")
    def test_thumbnails_of_a_jpeg(self):
        _, tok = self.user()
        uri = self.upload(tok, jpeg(1000, 800), "image/jpeg")
        r = self.thumbnail(tok, uri, 32, 32, "crop")
        self.assertEqual(r.headers["content-type"], "image/jpeg")
        self.assertEqual(self.thumb_size(r), (32, 32))
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 640, 480, "scale")), (600, 480))
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 800, 600, "scale")), (750, 600))
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 320, 240, "crop", animated="true")), (320, 240))
        # larger than every recommended size: the original
        r = self.thumbnail(tok, uri, 900, 700)
        self.assertEqual(self.thumb_size(r), (1000, 800))

    def test_thumbnail_parameters(self):
        _, tok = self.user()
        uri = self.upload(tok, png(40, 40), "image/png")
        server, media_id = mxc_parts(uri)
        base = "%s/thumbnail/%s/%s" % (MEDIA, server, media_id)
        self.assertError(self.req("GET", base, token=tok), 400, "M_MISSING_PARAM")
        self.assertError(self.req("GET", base + "?width=32", token=tok), 400, "M_MISSING_PARAM")
        for q in ["width=-1&height=32", "width=0&height=32", "width=a&height=32", "width=32&height=3.5",
                  "width=32&height=32&method=stretch", "width=32&height=32&animated=yes",
                  "width=99999999&height=32"]:
            self.assertError(self.req("GET", base + "?" + q, token=tok), 400, "M_INVALID_PARAM")

    def test_thumbnail_of_what_is_not_an_image(self):
        _, tok = self.user()
        uri = self.upload(tok, b"just some text, not an image", "text/plain")
        self.assertError(self.thumbnail(tok, uri, 32, 32), 400, "M_UNKNOWN")
        # declared an image but cannot be decoded: the original, as the client's own image
        broken = png(50, 50)[:60]
        uri = self.upload(tok, broken, "image/png")
        r = self.thumbnail(tok, uri, 32, 32, "crop")
        self.assertEqual((r.status, r.headers["content-type"], r.raw), (200, "image/png", broken))
        # an SVG is never handed to a decoder, nor served as an SVG
        svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="500" height="500"><script>1</script></svg>'
        uri = self.upload(tok, svg, "image/svg+xml")
        self.assertError(self.thumbnail(tok, uri, 32, 32), 400, "M_UNKNOWN")

    def test_decompression_bomb_is_refused(self):
        _, tok = self.user()
        uri = self.upload(tok, png_bomb(30000, 30000), "image/png")
        self.assertError(self.thumbnail(tok, uri, 32, 32, "crop"), 413, "M_TOO_LARGE")
        # the server is still fine
        ok = self.upload(tok, png(200, 100), "image/png")
        self.assertEqual(self.thumb_size(self.thumbnail(tok, ok, 32, 32, "crop")), (32, 32))

    # ---- async uploads ----

    def create(self, token):
        r = self.req("POST", "/_matrix/media/v1/create", token=token, body={})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", "/_matrix/media/v1/create", r)
        self.assertGreater(r.json["unused_expires_at"], time.time() * 1000)
        return r.json["content_uri"]

    def put(self, token, uri, data, content_type="text/plain", filename=None):
        server, media_id = mxc_parts(uri)
        path = "/_matrix/media/v3/upload/%s/%s" % (server, media_id)
        if filename:
            path += "?filename=" + urllib.parse.quote(filename)
        return self.req("PUT", path, token=token, raw=data, headers={"Content-Type": content_type})

    def test_async_upload(self):
        _, tok = self.user()
        _, other = self.user()
        uri = self.create(tok)
        r = self.download(tok, uri, timeout_ms=0)
        self.assertError(r, 504, "M_NOT_YET_UPLOADED")
        t0 = time.time()
        r = self.download(tok, uri, timeout_ms=300)
        self.assertError(r, 504, "M_NOT_YET_UPLOADED")
        self.assertGreaterEqual(time.time() - t0, 0.25)
        self.assertError(self.thumbnail(tok, uri, 32, 32, timeout_ms=0), 504, "M_NOT_YET_UPLOADED")
        self.assertError(self.put(other, uri, b"intruder"), 403, "M_FORBIDDEN")
        r = self.put(tok, uri, b"later content", filename="later.txt")
        self.assertEqual((r.status, r.json), (200, {}))
        self.assertSpec("PUT", "/_matrix/media/v3/upload/s/m", r)
        self.assertError(self.put(tok, uri, b"again"), 409, "M_CANNOT_OVERWRITE_MEDIA")
        d = self.download(tok, uri)
        self.assertEqual((d.status, d.raw), (200, b"later content"))
        self.assertIn("filename*=UTF-8''later.txt", d.headers["content-disposition"])
        # an upload never created, or on another server
        self.assertError(self.put(tok, "mxc://%s/neverCreated" % self.server.server_name, b"x"), 404, "M_NOT_FOUND")
        self.assertError(self.put(tok, "mxc://other.example/abc", b"x"), 404, "M_NOT_FOUND")

    def test_download_waits_for_a_pending_upload(self):
        _, tok = self.user()
        uri = self.create(tok)
        got = {}

        def wait():
            t0 = time.time()
            got["r"] = self.download(tok, uri, timeout_ms=15000)
            got["t"] = time.time() - t0

        th = threading.Thread(target=wait)
        th.start()
        time.sleep(0.5)
        self.assertEqual(self.put(tok, uri, b"arrived").status, 200)
        th.join(20)
        self.assertEqual((got["r"].status, got["r"].raw), (200, b"arrived"))
        self.assertLess(got["t"], 5)


class MediaLimits(MediaCase):
    server_config = {
        "max_upload_size": "64K",
        "media_max_pending": "2",
        "media_pending_lifetime": "1",
        "ratelimit.media_per_second": "0.001",
        "ratelimit.media_burst": "5",
    }

    def test_limits(self):
        # size: just under and just over max_upload_size (one user: the rate limit is per user)
        _, tok = self.user()
        self.upload(tok, os.urandom(64 * 1024), "application/octet-stream")
        r = self.upload(tok, os.urandom(64 * 1024 + 1), expect=413)
        self.assertError(r, 413, "M_TOO_LARGE")
        self.assertEqual(self.req("GET", MEDIA + "/config", token=tok).json["m.upload.size"], 64 * 1024)
        # pending IDs per user, and their expiry
        a = self.create(tok)
        self.create(tok)
        self.assertError(self.req("POST", "/_matrix/media/v1/create", token=tok, body={}), 429, "M_LIMIT_EXCEEDED")
        time.sleep(1.3)
        self.assertError(self.put(tok, a, b"too late"), 404, "M_NOT_FOUND")
        self.assertError(self.download(tok, a, timeout_ms=0), 404, "M_NOT_FOUND")
        self.create(tok)  # the expired ones no longer count
        # the per-user rate limit (burst 5: 1 upload + 4 creates so far; the 413 never reached the handler)
        r = self.upload(tok, b"one too many", expect=429)
        self.assertError(r, 429, "M_LIMIT_EXCEEDED")
        self.assertGreater(r.json["retry_after_ms"], 0)
        # another user has their own bucket
        _, tok2 = self.user()
        self.upload(tok2, b"fine")

    create = Media.create
    put = Media.put


class MediaLazyLibraries(MediaCase):
    """libvips (a hundred shared libraries) and OpenSSL's trust stores are loaded when first needed, not at start-up:
    an idle server does not carry them."""

    def mapped(self, name):
        with open("/proc/%d/maps" % self.server.proc.pid) as f:
            return any(name in line for line in f)

    def test_libvips_is_loaded_by_the_first_thumbnail(self):
        self.assertFalse(self.mapped("libvips"), "libvips is mapped before any thumbnail was asked for")
        _, tok = self.user()
        uri = self.upload(tok, png(200, 100), "image/png")
        self.assertFalse(self.mapped("libvips"), "an upload loaded libvips")
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 32, 32, "crop")), (32, 32))
        self.assertTrue(self.mapped("libvips"))
        self.assertEqual(self.thumb_size(self.thumbnail(tok, uri, 96, 96, "crop")), (96, 96))


class MediaLegacyOff(MediaCase):
    server_config = {"media_legacy_unauthenticated": "false"}

    def test_legacy_paths_are_off(self):
        _, tok = self.user()
        uri = self.upload(tok, b"data", "text/plain")
        server, media_id = mxc_parts(uri)
        for path in ["%s/download/%s/%s" % (LEGACY, server, media_id),
                     "/_matrix/media/r0/download/%s/%s" % (server, media_id),
                     "%s/thumbnail/%s/%s?width=32&height=32" % (LEGACY, server, media_id)]:
            self.assertError(self.req("GET", path), 404, "M_NOT_FOUND")
        self.assertError(self.req("GET", LEGACY + "/config", token=tok), 404, "M_NOT_FOUND")
        self.assertEqual(self.download(tok, uri).status, 200)


class MediaAdmin(MediaCase):
    def admin(self, *args):
        return subprocess.run([AXON_BIN, "admin", "-c", self.server.write_config()] + list(args),
                              capture_output=True, text=True, timeout=60)

    def test_list_and_delete(self):
        uid, tok = self.user()
        data = png(120, 90)
        a = self.upload(tok, data, "image/png", filename="a.png")
        b = self.upload(tok, data, "image/png", filename="b.png")
        c = self.create(tok)
        self.assertEqual(self.thumbnail(tok, a, 32, 32, "crop").status, 200)
        out = self.admin("media", "list-user", uid, "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        listed = {m["content_uri"]: m for m in json.loads(out.stdout)}
        self.assertEqual(set(listed), {a, b, c})
        self.assertEqual(listed[a]["filename"], "a.png")
        self.assertEqual(listed[a]["size"], len(data))
        self.assertTrue(listed[c]["pending"])
        text = self.admin("media", "list-user", uid.split(":")[0][1:])
        self.assertIn(a, text.stdout)
        self.assertIn("pending", text.stdout)

        digest = hashlib.sha256(data).hexdigest()
        out = self.admin("media", "delete", a)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("share", out.stdout)
        self.assertError(self.download(tok, a), 404, "M_NOT_FOUND")
        self.assertIn(digest, self.media_files())  # b still refers to the content
        self.assertEqual(self.download(tok, b).raw, data)

        out = self.admin("media", "delete", b)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("and its file", out.stdout)
        self.assertNotIn(digest, self.media_files())
        thumbs = os.path.join(self.server.data_dir, "media", "thumbs", digest[:2])
        self.assertEqual([f for f in os.listdir(thumbs) if f.startswith(digest)], [])
        self.assertError(self.download(tok, b), 404, "M_NOT_FOUND")
        # the same content uploaded again is stored again
        again = self.upload(tok, data, "image/png")
        self.assertEqual(self.download(tok, again).raw, data)

        self.assertEqual(self.admin("media", "delete", c).returncode, 0)
        self.assertEqual(self.admin("media", "delete", a).returncode, 1)
        self.assertEqual(self.admin("media", "delete", "https://nope").returncode, 1)
        self.assertEqual(self.admin("media", "delete", "mxc://x/../../etc").returncode, 1)
        left = json.loads(self.admin("media", "list-user", uid, "--json").stdout)
        self.assertEqual([m["content_uri"] for m in left], [again])

    create = Media.create


class MediaShutdown(unittest.TestCase):
    def test_graceful_shutdown_ends_waiting_downloads(self):
        server = Server()
        try:
            server.start()
            tok = server.register(unique("shut"))["access_token"]
            r = server.request("POST", "/_matrix/media/v1/create", body={}, token=tok)
            server_name, media_id = mxc_parts(r.json["content_uri"])
            got = {}

            def wait():
                got["r"] = server.request("GET", "%s/download/%s/%s?timeout_ms=30000" % (MEDIA, server_name,
                                                                                          media_id), token=tok)

            th = threading.Thread(target=wait)
            th.start()
            time.sleep(0.5)
            t0 = time.time()
            server.stop()
            th.join(10)
            self.assertLess(time.time() - t0, 8)
            self.assertEqual(got["r"].status, 504, got["r"])
        finally:
            server.cleanup()


class MediaCrashSafety(unittest.TestCase):
    """kill -9 while uploads are in flight: acknowledged uploads survive, nothing half-written is visible."""

    def check_store(self, server, blobs, acked, partial_user_token):
        root = os.path.join(server.data_dir, "media")
        self.assertEqual(os.listdir(os.path.join(root, "tmp")), [], "unfinished files survived the restart")
        names = set(blobs.values())
        for d in os.listdir(root):
            if len(d) != 2:
                continue
            for f in os.listdir(os.path.join(root, d)):
                with open(os.path.join(root, d, f), "rb") as fh:
                    self.assertEqual(hashlib.sha256(fh.read()).hexdigest(), f, "a file under a content name is not "
                                     "that content")
                self.assertIn(f, names)
        # every acknowledged upload is there, byte for byte
        for uri, digest in acked.items():
            server_name, media_id = mxc_parts(uri)
            r = server.request("GET", "%s/download/%s/%s" % (MEDIA, server_name, media_id), token=self.token)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(hashlib.sha256(r.raw).hexdigest(), digest)
        # whatever is listed is complete; the upload cut short is not listed
        out = subprocess.run([AXON_BIN, "admin", "-c", server.write_config(), "media", "list-user", self.user_id,
                              "--json"], capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        for m in json.loads(out.stdout):
            self.assertNotEqual(m.get("filename"), "partial")
            self.assertIn(m["sha256"], names)
            server_name, media_id = mxc_parts(m["content_uri"])
            r = server.request("GET", "%s/download/%s/%s" % (MEDIA, server_name, media_id), token=self.token)
            self.assertEqual(hashlib.sha256(r.raw).hexdigest(), m["sha256"])

    def test_kill_during_uploads(self):
        server = Server(config={"sync": "true"})
        try:
            server.start()
            u = server.register(unique("crash"))
            self.user_id, self.token = u["user_id"], u["access_token"]
            blobs = {}
            acked = {}
            for rnd, delay in enumerate((0.0, 0.05, 0.2)):
                sizes = [3 * 1024 * 1024 + i for i in range(6)]
                datas = [random.Random(rnd * 10 + i).randbytes(n) for i, n in enumerate(sizes)]
                for d in datas:
                    blobs[d] = hashlib.sha256(d).hexdigest()

                # one upload whose body never arrives in full
                partial = socket.create_connection(("127.0.0.1", server.port))
                head = ("POST %s?filename=partial HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                        "Content-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n"
                        % (UPLOAD, self.token, 4 * 1024 * 1024))
                partial.sendall(head.encode() + b"\0" * (1024 * 1024))

                def send(data):
                    try:
                        r = server.request("POST", UPLOAD, raw=data, token=self.token,
                                           headers={"Content-Type": "application/octet-stream"})
                        if r.status == 200:
                            acked[r.json["content_uri"]] = hashlib.sha256(data).hexdigest()
                    except OSError:
                        pass  # the server died under us: that is the point

                threads = [threading.Thread(target=send, args=(d,)) for d in datas]
                for t in threads:
                    t.start()
                time.sleep(delay)
                server.kill()
                for t in threads:
                    t.join(30)
                partial.close()
                server.start()
                self.check_store(server, {k: v for k, v in blobs.items()}, acked, self.token)
            server.stop()
        finally:
            server.cleanup()


if __name__ == "__main__":
    main()
