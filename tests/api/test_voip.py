#!/usr/bin/python3
"""GET /voip/turnServer (server/cs/voip.c): nothing without a TURN server,
coturn-style time-limited credentials from turn_shared_secret, or fixed
ones."""

import base64
import hashlib
import hmac
import os
import time
import unittest

from axontest import AxonTestCase, Server, main

PATH = "/_matrix/client/v3/voip/turnServer"
URIS = ["turn:turn.example.org:3478?transport=udp", "turns:turn.example.org:443?transport=tcp"]


class NoTurn(AxonTestCase):
    def test_empty_object(self):
        u = self.server.register()
        r = self.req("GET", PATH, token=u["access_token"])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {})
        self.assertEqual(self.req("GET", PATH.replace("/v3/", "/r0/"), token=u["access_token"]).json, {})

    def test_needs_a_token(self):
        self.assertError(self.req("GET", PATH), 401, "M_MISSING_TOKEN")
        self.assertError(self.req("GET", PATH, token="axo_nonsense"), 401, "M_UNKNOWN_TOKEN")
        u = self.server.register()
        self.assertError(self.req("POST", PATH, body={}, token=u["access_token"]), 405, "M_UNRECOGNIZED")


class SharedSecret(AxonTestCase):
    server_config = {"turn_uris": ", ".join(URIS), "turn_shared_secret": "n0t-so-s3cret",
                     "turn_user_lifetime": "30m"}

    def test_time_limited_credentials(self):
        u = self.server.register()
        before = int(time.time())
        r = self.req("GET", PATH, token=u["access_token"])
        after = int(time.time())
        self.assertEqual(r.status, 200, r)
        self.assertSpec("GET", PATH, r)
        self.assertEqual(r.json["uris"], URIS)
        self.assertEqual(r.json["ttl"], 1800)
        expiry, _, user = r.json["username"].partition(":")
        self.assertEqual(user, u["user_id"])
        self.assertTrue(before + 1800 <= int(expiry) <= after + 1800, r.json)
        # what coturn's use-auth-secret checks: base64(HMAC-SHA1(secret, username)), padded
        mac = hmac.new(b"n0t-so-s3cret", r.json["username"].encode(), hashlib.sha1).digest()
        self.assertEqual(r.json["password"], base64.b64encode(mac).decode())

    def test_each_user_their_own(self):
        a = self.server.register()
        b = self.server.register()
        ra = self.req("GET", PATH, token=a["access_token"]).json
        rb = self.req("GET", PATH, token=b["access_token"]).json
        self.assertTrue(ra["username"].endswith(":" + a["user_id"]))
        self.assertTrue(rb["username"].endswith(":" + b["user_id"]))
        self.assertNotEqual(ra["password"], rb["password"])


class FixedCredentials(AxonTestCase):
    server_config = {"turn_uris": URIS[0], "turn_username": "calls", "turn_password": "pa55word"}

    def test_fixed(self):
        u = self.server.register()
        r = self.req("GET", PATH, token=u["access_token"])
        self.assertEqual(r.status, 200, r)
        self.assertSpec("GET", PATH, r)
        self.assertEqual(r.json, {"username": "calls", "password": "pa55word", "uris": URIS[:1], "ttl": 3600})


class BadConfig(unittest.TestCase):
    def test_refused_at_start(self):
        for config, key in (({"turn_uris": "stun:stun.example.org", "turn_shared_secret": "x"}, "turn_uris"),
                            ({"turn_uris": URIS[0]}, "turn_uris"),
                            ({"turn_shared_secret": "x"}, "turn_shared_secret"),
                            ({"turn_uris": URIS[0], "turn_shared_secret": "x", "turn_user_lifetime": "soon"},
                             "turn_user_lifetime")):
            s = Server(config=config)
            try:
                s.start(wait=False)
                rc = s.proc.wait(timeout=30)
                self.assertEqual(rc, 2, config)
                self.assertIn(key, s.log_text())
                self.assertFalse(os.path.exists(s.data_dir), "the data dir was touched")
                s.proc = None
                s.log.close()
            finally:
                s.cleanup()


if __name__ == "__main__":
    main()
