#!/usr/bin/python3
"""A real client, matrix-nio (Debian's python3-matrix-nio 0.20), through the
content repository: upload a file, download it back, fetch a thumbnail."""

import asyncio
import io
import os
import struct
import sys
import unittest
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))
from axontest import Server, main, unique  # noqa: E402

try:
    import nio
except ImportError:  # pragma: no cover
    nio = None


def png(width, height):
    """A small RGB PNG written with the standard library."""
    raw = b"".join(b"\x00" + b"".join(bytes((x % 256, y % 256, 77)) for x in range(width)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


@unittest.skipIf(nio is None, "python3-matrix-nio is not installed")
class NioMedia(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.server = Server().start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.server.stop()
        finally:
            cls.server.cleanup()

    def test_upload_download_thumbnail(self):
        asyncio.run(self.cycle())

    async def cycle(self):
        name = unique("niomedia")
        client = nio.AsyncClient(self.server.base, name)
        try:
            reg = await client.register(name, "nio-password")
            self.assertIsInstance(reg, nio.RegisterResponse, reg)

            data = os.urandom(300 * 1024)
            resp, keys = await client.upload(io.BytesIO(data), content_type="application/pdf",
                                             filename="report.pdf", filesize=len(data))
            self.assertIsInstance(resp, nio.UploadResponse, resp)
            self.assertIsNone(keys)
            self.assertTrue(resp.content_uri.startswith("mxc://%s/" % self.server.server_name))

            got = await client.download(mxc=resp.content_uri)
            self.assertIsInstance(got, nio.DownloadResponse, got)
            self.assertEqual(got.body, data)
            self.assertEqual(got.content_type, "application/pdf")
            self.assertEqual(got.filename, "report.pdf")

            image = png(200, 100)
            resp, _ = await client.upload(io.BytesIO(image), content_type="image/png", filename="pic.png",
                                          filesize=len(image))
            self.assertIsInstance(resp, nio.UploadResponse, resp)
            server_name, media_id = resp.content_uri[len("mxc://"):].split("/", 1)
            thumb = await client.thumbnail(server_name, media_id, 32, 32, nio.ResizingMethod.crop)
            self.assertIsInstance(thumb, nio.ThumbnailResponse, thumb)
            self.assertEqual(thumb.content_type, "image/png")
            self.assertTrue(thumb.body.startswith(b"\x89PNG"))

            missing = await client.download(server_name=server_name, media_id="doesNotExist")
            self.assertIsInstance(missing, nio.DownloadError, missing)
        finally:
            await client.close()


if __name__ == "__main__":
    main()
