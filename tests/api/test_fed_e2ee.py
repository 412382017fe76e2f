#!/usr/bin/python3
"""End-to-end encryption keys over federation, black box (federation/
api_query.c, server/cs/keys.c, core/keys.c): two axon instances on
loopback over TLS, and a fake remote server signing with the spec's key.

Server side: /user/keys/query, /user/keys/claim and /user/devices serve a
local user's device keys, cross-signing keys (never the user-signing key
nor anyone's private signatures) and one-time keys (each once, then the
fallback key), with the device list's real stream_id.  Client side: a
local /keys/query or /keys/claim naming users of other servers asks those
servers, all at once within the request's timeout; servers that are down,
slow or answer nonsense end up under "failures", and a server may not
answer for another server's users."""

import json
import socket
import time
import unittest
import urllib.parse

from axontest import Response, free_port, main, spec_errors, unique

try:
    import signedjson.key
    import signedjson.sign
    import fedutil
    from fedutil import FedTestCase
    from test_e2ee import Device, xsign_key
    HAVE_DEPS = fedutil.OPENSSL is not None
except ImportError:  # python3-signedjson / python3-nacl missing
    HAVE_DEPS = False
    FedTestCase = unittest.TestCase

V3 = "/_matrix/client/v3"
FED = "/_matrix/federation/v1"


def q(s):
    return urllib.parse.quote(s, safe="")


@unittest.skipUnless(HAVE_DEPS, "openssl, python3-signedjson and python3-nacl are needed")
class FedE2ee(FedTestCase):
    fed_servers = (("a", "localhost", None), ("b", "ip", None))

    # -- helpers -------------------------------------------------------------------------------------

    def device(self, server, display_name=None):
        extra = {"initial_device_display_name": display_name} if display_name else None
        r = server.register(unique(), extra=extra)
        return Device(r["user_id"], r["device_id"], r["access_token"])

    def upload(self, server, dev, **body):
        r = server.request("POST", V3 + "/keys/upload", token=dev.token, body=body)
        self.assertEqual(r.status, 200, r)

    def cross_sign(self, server, dev):
        msk, master = xsign_key(dev.user_id, "master")
        _, self_signing = xsign_key(dev.user_id, "self_signing", msk)
        _, user_signing = xsign_key(dev.user_id, "user_signing", msk)
        r = server.request("POST", V3 + "/keys/device_signing/upload", token=dev.token,
                           body={"master_key": master, "self_signing_key": self_signing,
                                 "user_signing_key": user_signing})
        self.assertEqual(r.status, 200, r)
        return master, self_signing

    def full_device(self, server, name="Phone"):
        """A user with published device keys, 3 one-time keys, a fallback key and cross-signing keys."""
        d = self.device(server, name)
        d.otk = d.otks(3)
        d.fb = d.fallback()
        self.upload(server, d, device_keys=d.device_keys(), one_time_keys=d.otk, fallback_keys=d.fb)
        d.master, d.self_signing = self.cross_sign(server, d)
        return d

    def client(self, server, token, path, body, spec=True):
        r = server.request("POST", V3 + path, token=token, body=body)
        if spec and r.status == 200:
            self.assertEqual(spec_errors("POST", V3 + path, r.status, r.json), [], r)
        return r

    def fed(self, server, method, path, body=None, spec=True):
        status, data = self.fake.send(server, method, path, body=body, ca=self.ca)
        r = Response(status, [], json.dumps(data).encode() if data is not None else b"")
        if spec and status == 200:
            self.assertEqual(spec_errors(method, path, status, r.json), [], r)
        return r

    def assertDeviceKeys(self, got, dev):
        """Device keys as uploaded (their signature still verifies), plus unsigned data."""
        want = dev.device_keys()
        self.assertEqual({k: v for k, v in got.items() if k != "unsigned"}, want)
        vk = signedjson.key.decode_verify_key_base64("ed25519", dev.device_id, dev.ed25519)
        signedjson.sign.verify_signed_json(got, dev.user_id, vk)

    # -- server side: the fake asks A ----------------------------------------------------------------

    def test_user_keys_query_served(self):
        d = self.full_device(self.a, "Laptop")
        other = self.device(self.a)  # no keys at all
        r = self.fed(self.a, "POST", FED + "/user/keys/query",
                     body={"device_keys": {d.user_id: [], other.user_id: [], "@x:elsewhere.test": [],
                                           "@nobody:" + self.a.server_name: []}})
        self.assertEqual(r.status, 200, r)
        keys = r.json["device_keys"]
        self.assertEqual(sorted(keys), sorted([d.user_id, other.user_id, "@nobody:" + self.a.server_name]))
        self.assertDeviceKeys(keys[d.user_id][d.device_id], d)
        self.assertEqual(keys[d.user_id][d.device_id]["unsigned"], {"device_display_name": "Laptop"})
        self.assertEqual(keys[other.user_id], {})
        self.assertEqual(r.json["master_keys"][d.user_id], d.master)
        self.assertEqual(r.json["self_signing_keys"][d.user_id], d.self_signing)
        self.assertNotIn("user_signing_keys", r.json)
        # one device by ID; unknown ones are simply missing
        r = self.fed(self.a, "POST", FED + "/user/keys/query",
                     body={"device_keys": {d.user_id: [d.device_id, "NOSUCH"]}})
        self.assertEqual(list(r.json["device_keys"][d.user_id]), [d.device_id])
        # bad bodies
        for body in ({}, {"device_keys": []}, {"device_keys": {d.user_id: "all"}}, {"device_keys": {d.user_id: [1]}}):
            r = self.fed(self.a, "POST", FED + "/user/keys/query", body=body, spec=False)
            self.assertEqual(r.status, 400, (body, r))
            self.assertIn(r.json["errcode"], ("M_MISSING_PARAM", "M_BAD_JSON"))

    def test_user_keys_claim_served(self):
        d = self.full_device(self.a)
        seen = []
        for _ in range(3):
            r = self.fed(self.a, "POST", FED + "/user/keys/claim",
                         body={"one_time_keys": {d.user_id: {d.device_id: "signed_curve25519"}}})
            self.assertEqual(r.status, 200, r)
            (kid, key), = r.json["one_time_keys"][d.user_id][d.device_id].items()
            self.assertIn(kid, d.otk)
            self.assertEqual(key, d.otk[kid])
            seen.append(kid)
        self.assertEqual(len(set(seen)), 3)  # each one-time key once
        # then the fallback key, as many times as asked
        for _ in range(2):
            r = self.fed(self.a, "POST", FED + "/user/keys/claim",
                         body={"one_time_keys": {d.user_id: {d.device_id: "signed_curve25519"}}})
            self.assertEqual(r.json["one_time_keys"][d.user_id][d.device_id], d.fb)
        # unknown devices, other servers' users and unknown algorithms give nothing
        r = self.fed(self.a, "POST", FED + "/user/keys/claim",
                     body={"one_time_keys": {d.user_id: {"NOSUCH": "signed_curve25519", d.device_id: "other_alg"},
                                             "@x:elsewhere.test": {"D": "signed_curve25519"}}})
        self.assertEqual((r.status, r.json["one_time_keys"]), (200, {}))
        for body in ({}, {"one_time_keys": {d.user_id: {d.device_id: 5}}}, {"one_time_keys": {d.user_id: []}}):
            r = self.fed(self.a, "POST", FED + "/user/keys/claim", body=body, spec=False)
            self.assertEqual(r.status, 400, (body, r))

    def test_user_devices_with_keys_and_stream_id(self):
        d = self.full_device(self.a, "Tablet")
        r = self.fed(self.a, "GET", FED + "/user/devices/" + q(d.user_id))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["user_id"], d.user_id)
        (dev,) = r.json["devices"]
        self.assertEqual(dev["device_id"], d.device_id)
        self.assertEqual(dev["device_display_name"], "Tablet")
        self.assertDeviceKeys(dev["keys"], d)
        self.assertEqual(r.json["master_key"], d.master)
        self.assertEqual(r.json["self_signing_key"], d.self_signing)
        first = r.json["stream_id"]
        self.assertGreater(first, 0)
        # nothing changed: the same version
        self.assertEqual(self.fed(self.a, "GET", FED + "/user/devices/" + q(d.user_id)).json["stream_id"], first)
        # a second device publishes keys: a newer version listing both
        login = self.a.login(d.user_id, device_id="SECOND")
        self.assertEqual(login.status, 200, login)
        d2 = Device(d.user_id, "SECOND", login.json["access_token"])
        self.upload(self.a, d2, device_keys=d2.device_keys())
        r = self.fed(self.a, "GET", FED + "/user/devices/" + q(d.user_id))
        self.assertGreater(r.json["stream_id"], first)
        self.assertEqual(sorted(x["device_id"] for x in r.json["devices"]), sorted([d.device_id, "SECOND"]))
        # a user without cross-signing keys has none listed
        plain = self.device(self.a)
        r = self.fed(self.a, "GET", FED + "/user/devices/" + q(plain.user_id))
        self.assertEqual(r.status, 200, r)
        self.assertNotIn("master_key", r.json)
        self.assertEqual(r.json["devices"], [])  # no published keys yet
        self.assertEqual(self.fed(self.a, "GET", FED + "/user/devices/" + q("@ghost:" + self.a.server_name),
                                  spec=False).status, 404)

    # -- client side: A asks B --------------------------------------------------------------------------

    def test_query_and_claim_remote_users(self):
        bob = self.full_device(self.b, "Bob's phone")
        alice = self.device(self.a)
        r = self.client(self.a, alice.token, "/keys/query", {"device_keys": {bob.user_id: []}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["failures"], {})
        self.assertDeviceKeys(r.json["device_keys"][bob.user_id][bob.device_id], bob)
        self.assertEqual(r.json["master_keys"][bob.user_id], bob.master)
        self.assertEqual(r.json["self_signing_keys"][bob.user_id], bob.self_signing)
        self.assertNotIn(bob.user_id, r.json.get("user_signing_keys", {}))
        # local and remote users together
        r = self.client(self.a, alice.token, "/keys/query", {"device_keys": {bob.user_id: [bob.device_id],
                                                                             alice.user_id: []}})
        self.assertEqual(sorted(r.json["device_keys"]), sorted([bob.user_id, alice.user_id]))
        # claims go to B: each one-time key once, then the fallback key
        got = []
        for _ in range(4):
            r = self.client(self.a, alice.token, "/keys/claim",
                            {"one_time_keys": {bob.user_id: {bob.device_id: "signed_curve25519"}}})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["failures"], {})
            got.append(r.json["one_time_keys"][bob.user_id][bob.device_id])
        self.assertEqual(sorted(list(k)[0] for k in got[:3]), sorted(bob.otk))
        self.assertEqual(got[3], bob.fb)
        # B's own view agrees: every one-time key is gone
        counts = self.b.request("POST", V3 + "/keys/upload", token=bob.token, body={}).json
        self.assertEqual(counts["one_time_key_counts"].get("signed_curve25519", 0), 0)

    def test_unreachable_and_slow_servers_are_failures(self):
        bob = self.full_device(self.b)
        alice = self.device(self.a)
        dead = "127.0.0.1:%d" % free_port()
        # a server that accepts connections and never answers
        silent = socket.socket()
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        slow = "127.0.0.1:%d" % silent.getsockname()[1]
        try:
            t0 = time.time()
            r = self.client(self.a, alice.token, "/keys/query",
                            {"timeout": 2000, "device_keys": {bob.user_id: [], "@x:" + dead: [], "@y:" + slow: []}})
            took = time.time() - t0
            self.assertEqual(r.status, 200, r)
            self.assertLess(took, 10, "the timeout was not applied")
            self.assertEqual(sorted(r.json["failures"]), sorted([dead, slow]))
            for f in r.json["failures"].values():
                self.assertIsInstance(f["status"], int)
                self.assertIsInstance(f["message"], str)
            # the server that answered is there all the same: the servers were asked at once
            self.assertIn(bob.device_id, r.json["device_keys"][bob.user_id])
            r = self.client(self.a, alice.token, "/keys/claim",
                            {"timeout": 1000, "one_time_keys": {"@y:" + slow: {"D": "signed_curve25519"},
                                                                bob.user_id: {bob.device_id: "signed_curve25519"}}})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(list(r.json["failures"]), [slow])
            self.assertIn(bob.device_id, r.json["one_time_keys"][bob.user_id])
        finally:
            silent.close()

    def test_a_server_answers_only_for_its_own_users(self):
        alice = self.device(self.a)
        victim = "@victim:" + self.b.server_name
        fake_user = "@mallory:" + self.fake.server_name

        def keys(user, dev):
            return {"user_id": user, "device_id": dev, "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                    "keys": {"ed25519:" + dev: "A" * 43, "curve25519:" + dev: "B" * 43}, "signatures": {}}

        def on_query(method, url, body):
            return 200, {"device_keys": {
                fake_user: {"GOOD": keys(fake_user, "GOOD"), "LIAR": keys(fake_user, "OTHER"),
                            "WRONGUSER": keys(victim, "WRONGUSER")},
                victim: {"EVIL": keys(victim, "EVIL")}},
                "master_keys": {victim: {"user_id": victim, "usage": ["master"], "keys": {}},
                                fake_user: {"user_id": victim, "usage": ["master"], "keys": {}}}}

        def on_claim(method, url, body):
            return 500, {"errcode": "M_UNKNOWN", "error": "broken"}

        self.fake.routes[FED + "/user/keys/query"] = on_query
        self.fake.routes[FED + "/user/keys/claim"] = on_claim
        try:
            r = self.client(self.a, alice.token, "/keys/query", {"device_keys": {fake_user: []}})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(list(r.json["device_keys"]), [fake_user])
            self.assertEqual(list(r.json["device_keys"][fake_user]), ["GOOD"])
            self.assertEqual(r.json["master_keys"], {})
            # the fake's requests were signed by A
            seen = [x for x in self.fake.requests if x["path"] == FED + "/user/keys/query"]
            self.assertTrue(seen)
            self.assertIsNone(seen[-1]["auth_error"], seen[-1])
            r = self.client(self.a, alice.token, "/keys/claim",
                            {"one_time_keys": {fake_user: {"GOOD": "signed_curve25519"}}})
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["failures"][self.fake.server_name]["status"], 500)
            self.assertEqual(r.json["one_time_keys"], {})
        finally:
            self.fake.routes.pop(FED + "/user/keys/query", None)
            self.fake.routes.pop(FED + "/user/keys/claim", None)

    def test_remote_errors_in_client_requests(self):
        alice = self.device(self.a)
        r = self.a.request("POST", V3 + "/keys/query", token=alice.token,
                           body={"device_keys": {}, "timeout": "soon"})
        self.assertEqual((r.status, r.json["errcode"]), (400, "M_BAD_JSON"))
        r = self.a.request("POST", V3 + "/keys/claim", token=alice.token,
                           body={"one_time_keys": {}, "timeout": []})
        self.assertEqual((r.status, r.json["errcode"]), (400, "M_BAD_JSON"))
        # nothing remote: answered at once, nothing failed
        r = self.client(self.a, alice.token, "/keys/query", {"device_keys": {}})
        self.assertEqual(r.json["failures"], {})


if __name__ == "__main__":
    main()
