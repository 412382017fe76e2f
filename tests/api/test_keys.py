#!/usr/bin/python3
"""The server's signing key and GET /_matrix/key/v2/server, verified with an
independent implementation (Debian's python3-signedjson)."""

import os
import stat
import time
import unittest

from axontest import AxonTestCase, Server, main

try:
    import signedjson.key
    import signedjson.sign
    HAVE_SIGNEDJSON = True
except ImportError:
    HAVE_SIGNEDJSON = False


def verify_key_doc(testcase, doc, server_name):
    testcase.assertEqual(doc["server_name"], server_name)
    testcase.assertGreater(doc["valid_until_ts"], int(time.time() * 1000) + 3600 * 1000)
    testcase.assertEqual(len(doc["verify_keys"]), 1)
    key_id, entry = next(iter(doc["verify_keys"].items()))
    testcase.assertRegex(key_id, r"^ed25519:[A-Za-z0-9_]+$")
    testcase.assertNotIn("=", entry["key"])  # unpadded base64
    if HAVE_SIGNEDJSON:
        vk = signedjson.key.decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], entry["key"])
        signedjson.sign.verify_signed_json(doc, server_name, vk)  # raises on a bad signature
    return key_id


class KeyServer(AxonTestCase):
    def test_key_document_verifies(self):
        r = self.req("GET", "/_matrix/key/v2/server")
        self.assertEqual(r.status, 200)
        verify_key_doc(self, r.json, self.server.server_name)
        self.assertEqual(r.json["old_verify_keys"], {})
        self.assertSpec("GET", "/_matrix/key/v2/server", r)

    @unittest.skipUnless(HAVE_SIGNEDJSON, "python3-signedjson is not installed")
    def test_tampered_document_fails_verification(self):
        doc = self.req("GET", "/_matrix/key/v2/server").json
        doc["valid_until_ts"] += 1
        key_id, entry = next(iter(doc["verify_keys"].items()))
        vk = signedjson.key.decode_verify_key_base64("ed25519", key_id.split(":", 1)[1], entry["key"])
        with self.assertRaises(Exception):
            signedjson.sign.verify_signed_json(doc, self.server.server_name, vk)

    def test_key_file_is_private(self):
        path = os.path.join(self.server.data_dir, "signing.key")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)


class KeyPersistence(unittest.TestCase):
    def test_same_key_after_restart(self):
        s = Server().start()
        try:
            first = s.request("GET", "/_matrix/key/v2/server").json
            s.stop()
            s.start()
            second = s.request("GET", "/_matrix/key/v2/server").json
            self.assertEqual(first["verify_keys"], second["verify_keys"])
            verify_key_doc(self, second, s.server_name)
        finally:
            s.stop()
            s.cleanup()


if __name__ == "__main__":
    main()
