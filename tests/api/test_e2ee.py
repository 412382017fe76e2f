#!/usr/bin/python3
"""End-to-end encryption, the server side (server/cs/keys.c, to_device.c,
key_backup.c): key upload, query, claim and changes, cross-signing keys and
signatures, send-to-device, key backup, and the E2EE sections of /sync.
Keys are made and signed here with python3-signedjson, as a client would."""

import base64
import json
import os
import threading
import time
import unittest
import urllib.parse

from axontest import main
from roomutil import RoomTestCase, V3, q

try:
    import signedjson.key
    import signedjson.sign
    HAVE_SIGNEDJSON = True
except ImportError:
    HAVE_SIGNEDJSON = False

ALGORITHMS = ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"]
_txn = [0]


def b64(raw):
    return base64.b64encode(raw).decode().rstrip("=")


def pub_of(sk):
    return signedjson.key.encode_verify_key_base64(sk.verify_key)


def new_key(version=None):
    """An ed25519 signing key; with version None its key ID is "ed25519:<public key>" (cross-signing)."""
    sk = signedjson.key.generate_signing_key("tmp")
    seed = signedjson.key.encode_signing_key_base64(sk)
    return signedjson.key.decode_signing_key_base64("ed25519", version or pub_of(sk), seed)


def txn_id():
    _txn[0] += 1
    return "t%d_%d" % (os.getpid(), _txn[0])


class Device:
    """One client device: its identity keys and the keys it publishes."""

    def __init__(self, user_id, device_id, token):
        self.user_id, self.device_id, self.token = user_id, device_id, token
        self.sk = new_key(device_id)
        self.ed25519 = pub_of(self.sk)
        self.curve25519 = b64(os.urandom(32))
        self.otk_serial = 0

    def device_keys(self):
        dk = {"user_id": self.user_id, "device_id": self.device_id, "algorithms": ALGORITHMS,
              "keys": {"ed25519:" + self.device_id: self.ed25519, "curve25519:" + self.device_id: self.curve25519}}
        return signedjson.sign.sign_json(dk, self.user_id, self.sk)

    def otks(self, n, algorithm="signed_curve25519"):
        out = {}
        for _ in range(n):
            self.otk_serial += 1
            key = signedjson.sign.sign_json({"key": b64(os.urandom(32))}, self.user_id, self.sk)
            out["%s:AAAA%04d" % (algorithm, self.otk_serial)] = key
        return out

    def fallback(self, key_id="FB1"):
        key = signedjson.sign.sign_json({"key": b64(os.urandom(32)), "fallback": True}, self.user_id, self.sk)
        return {"signed_curve25519:" + key_id: key}


def xsign_key(user_id, usage, signer=None):
    """A cross-signing key pair and its public key object, signed by 'signer' when given."""
    sk = new_key()
    pub = pub_of(sk)
    key = {"user_id": user_id, "usage": [usage], "keys": {"ed25519:" + pub: pub}}
    if signer is not None:
        key = signedjson.sign.sign_json(key, user_id, signer)
    return sk, key


@unittest.skipUnless(HAVE_SIGNEDJSON, "python3-signedjson is not installed")
class E2eeTestCase(RoomTestCase):
    def device(self, name=None):
        r = self.server.register(name or None)
        return Device(r["user_id"], r["device_id"], r["access_token"])

    def upload(self, dev, expect=200, **body):
        r = self.req("POST", V3 + "/keys/upload", token=dev.token, body=body)
        self.assertEqual(r.status, expect, r)
        if expect == 200:
            self.assertSpec("POST", V3 + "/keys/upload", r)
        return r

    def query(self, token, users, expect=200):
        r = self.req("POST", V3 + "/keys/query", token=token, body={"device_keys": users})
        self.assertEqual(r.status, expect, r)
        if expect == 200:
            self.assertSpec("POST", V3 + "/keys/query", r)
        return r.json

    def claim(self, token, wanted):
        r = self.req("POST", V3 + "/keys/claim", token=token, body={"one_time_keys": wanted})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", V3 + "/keys/claim", r)
        return r.json

    def changes(self, token, frm, to, expect=200):
        r = self.req("GET", V3 + "/keys/changes?" + urllib.parse.urlencode({"from": frm, "to": to}), token=token)
        self.assertEqual(r.status, expect, r)
        if expect == 200:
            self.assertSpec("GET", V3 + "/keys/changes", r)
        return r.json

    def send_to_device(self, token, type_, messages, txn=None, expect=200):
        path = V3 + "/sendToDevice/%s/%s" % (q(type_), q(txn or txn_id()))
        r = self.req("PUT", path, token=token, body={"messages": messages})
        self.assertEqual(r.status, expect, r)
        if expect == 200:
            self.assertSpec("PUT", V3 + "/sendToDevice/{eventType}/{txnId}", r)
        return r

    def shared_room(self, a, b):
        room = self.create_room(a.token, preset="public_chat")
        self.join(b.token, room)
        return room


class Upload(E2eeTestCase):
    def test_device_keys_and_one_time_keys(self):
        d = self.device()
        r = self.upload(d, device_keys=d.device_keys(), one_time_keys=d.otks(5))
        self.assertEqual(r.json["one_time_key_counts"]["signed_curve25519"], 5)
        r = self.upload(d, one_time_keys=d.otks(2, "curve25519"))
        self.assertEqual(r.json["one_time_key_counts"], {"signed_curve25519": 5, "curve25519": 2})
        # nothing new: the counts, and signed_curve25519 is reported even at zero (as Synapse does)
        e = self.device()
        self.assertEqual(self.upload(e).json["one_time_key_counts"], {"signed_curve25519": 0})
        got = self.query(e.token, {d.user_id: []})["device_keys"][d.user_id][d.device_id]
        self.assertEqual(got["keys"], d.device_keys()["keys"])
        self.assertEqual(got["signatures"], d.device_keys()["signatures"])

    def test_reupload_is_idempotent(self):
        d = self.device()
        keys, otks = d.device_keys(), d.otks(4)
        for _ in range(3):
            r = self.upload(d, device_keys=keys, one_time_keys=otks)
            self.assertEqual(r.json["one_time_key_counts"]["signed_curve25519"], 4)
        # overlapping batches: A, B, C then B, C, D makes four
        more = d.otks(1)
        some = dict(list(otks.items())[1:])
        some.update(more)
        self.assertEqual(self.upload(d, one_time_keys=some).json["one_time_key_counts"]["signed_curve25519"], 5)

    def test_changed_device_keys_are_refused(self):
        d = self.device()
        self.upload(d, device_keys=d.device_keys())
        other = Device(d.user_id, d.device_id, d.token)  # new identity keys for the same device
        r = self.upload(other, expect=400, device_keys=other.device_keys())
        self.assertError(r, 400, "M_INVALID_PARAM")
        got = self.query(d.token, {d.user_id: [d.device_id]})["device_keys"][d.user_id][d.device_id]
        self.assertEqual(got["keys"]["ed25519:" + d.device_id], d.ed25519)

    def test_signature_checks(self):
        d = self.device()
        keys = d.device_keys()
        keys["algorithms"] = ["m.megolm.v1.aes-sha2"]  # changed after signing
        self.assertError(self.upload(d, expect=400, device_keys=keys), 400, "M_INVALID_SIGNATURE")
        keys = d.device_keys()
        keys["signatures"] = {d.user_id: {}}
        self.assertError(self.upload(d, expect=400, device_keys=keys), 400, "M_INVALID_SIGNATURE")
        # signed by a key that is not the one published
        stranger = Device(d.user_id, d.device_id, d.token)
        keys = d.device_keys()
        keys["signatures"] = stranger.device_keys()["signatures"]
        self.assertError(self.upload(d, expect=400, device_keys=keys), 400, "M_INVALID_SIGNATURE")
        # nothing was stored
        self.assertEqual(self.query(d.token, {d.user_id: []})["device_keys"][d.user_id], {})

    def test_malformed_uploads(self):
        d = self.device()
        e = self.device()
        # required fields missing (Complement "Rejects invalid device keys")
        self.assertError(self.upload(d, expect=400, device_keys={"user_id": d.user_id, "device_id": d.device_id}),
                         400, "M_BAD_JSON")
        # someone else's user or device
        self.assertError(self.upload(d, expect=400, device_keys=e.device_keys()), 400, "M_BAD_JSON")
        wrong_dev = Device(d.user_id, "OTHERDEVICE", d.token)
        self.assertError(self.upload(d, expect=400, device_keys=wrong_dev.device_keys()), 400, "M_BAD_JSON")
        # one-time key IDs and values
        for bad in ({"nocolon": "x"}, {"a:b:c": "x"}, {"signed_curve25519:A": 5},
                    {"signed_curve25519:A": {"key": "x"}}, {"x" * 80 + ":A": "x"}):
            self.assertError(self.upload(d, expect=400, one_time_keys=bad), 400, "M_BAD_JSON")
        self.assertError(self.upload(d, expect=400, one_time_keys=[]), 400, "M_BAD_JSON")
        two = d.fallback("F1")
        two.update(d.fallback("F2"))
        self.assertError(self.upload(d, expect=400, fallback_keys=two), 400, "M_INVALID_PARAM")
        r = self.req("POST", V3 + "/keys/upload", token=d.token, raw=b"{not json",
                     headers={"Content-Type": "application/json"})
        self.assertError(r, 400, "M_NOT_JSON")
        self.assertError(self.req("POST", V3 + "/keys/upload", body={}), 401, "M_MISSING_TOKEN")
        self.assertError(self.req("POST", V3 + "/keys/upload", token="nope", body={}), 401, "M_UNKNOWN_TOKEN")
        self.assertEqual(self.upload(d).json["one_time_key_counts"], {"signed_curve25519": 0})

    def test_one_time_key_id_reused_for_another_key(self):
        d = self.device()
        otks = d.otks(2)
        self.upload(d, one_time_keys=otks)
        key_id = next(iter(otks))
        clash = {key_id: signedjson.sign.sign_json({"key": b64(os.urandom(32))}, d.user_id, d.sk)}
        clash.update(d.otks(1))
        self.assertError(self.upload(d, expect=400, one_time_keys=clash), 400, "M_UNKNOWN")
        # the refused upload stored none of its keys
        self.assertEqual(self.upload(d).json["one_time_key_counts"]["signed_curve25519"], 2)


class Query(E2eeTestCase):
    def test_all_devices_some_devices_and_display_names(self):
        d = self.device()
        self.upload(d, device_keys=d.device_keys())
        r = self.server.login(d.user_id, device_id="SECOND")
        second = Device(d.user_id, "SECOND", r.json["access_token"])
        self.upload(second, device_keys=second.device_keys())
        self.req("PUT", V3 + "/devices/SECOND", token=second.token, body={"display_name": "Phone"})
        viewer = self.device()
        all_ = self.query(viewer.token, {d.user_id: []})["device_keys"][d.user_id]
        self.assertEqual(set(all_), {d.device_id, "SECOND"})
        self.assertEqual(all_["SECOND"]["unsigned"], {"device_display_name": "Phone"})
        one = self.query(viewer.token, {d.user_id: ["SECOND", "NOSUCHDEVICE"]})["device_keys"][d.user_id]
        self.assertEqual(list(one), ["SECOND"])

    def test_unknown_and_remote_users(self):
        d = self.device()
        res = self.query(d.token, {"@nobody:" + self.server.server_name: [], "@far:127.0.0.1:1": []})
        self.assertEqual(res["device_keys"], {"@nobody:" + self.server.server_name: {}})
        self.assertIn("127.0.0.1:1", res["failures"])  # a private address: refused without any traffic

    def test_errors(self):
        d = self.device()
        self.assertError(self.req("POST", V3 + "/keys/query", token=d.token, body={}), 400, "M_MISSING_PARAM")
        self.assertError(self.req("POST", V3 + "/keys/query", token=d.token, body={"device_keys": []}),
                         400, "M_BAD_JSON")
        self.assertError(self.req("POST", V3 + "/keys/query", token=d.token,
                                  body={"device_keys": {d.user_id: "all"}}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", V3 + "/keys/query", token=d.token,
                                  body={"device_keys": {"not a user": []}}), 400, "M_INVALID_PARAM")
        self.assertError(self.req("POST", V3 + "/keys/query", body={"device_keys": {}}), 401, "M_MISSING_TOKEN")

    def test_deleted_device_takes_its_keys(self):
        d = self.device()
        r = self.server.login(d.user_id, device_id="GONE")
        gone = Device(d.user_id, "GONE", r.json["access_token"])
        self.upload(gone, device_keys=gone.device_keys(), one_time_keys=gone.otks(3))
        auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": d.user_id},
                "password": "correct horse battery"}
        r = self.req("POST", V3 + "/delete_devices", token=d.token, body={"devices": ["GONE"]})
        r = self.req("POST", V3 + "/delete_devices", token=d.token,
                     body={"devices": ["GONE"], "auth": dict(auth, session=r.json["session"])})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.query(d.token, {d.user_id: []})["device_keys"][d.user_id], {})
        self.assertEqual(self.claim(d.token, {d.user_id: {"GONE": "signed_curve25519"}})["one_time_keys"], {})


class Claim(E2eeTestCase):
    def test_upload_order_exactly_once_then_fallback(self):
        d = self.device()
        first, second = d.otks(1), d.otks(1)
        self.upload(d, one_time_keys=second)  # uploaded first, so claimed first
        time.sleep(0.01)
        self.upload(d, one_time_keys=first, fallback_keys=d.fallback())
        want = {d.user_id: {d.device_id: "signed_curve25519"}}
        c = self.device()
        got = [self.claim(c.token, want)["one_time_keys"][d.user_id][d.device_id] for _ in range(2)]
        self.assertEqual(got, [second, first])
        # one-time keys exhausted: the fallback key, again and again, marked used
        fb = self.claim(c.token, want)["one_time_keys"][d.user_id][d.device_id]
        self.assertEqual(list(fb), ["signed_curve25519:FB1"])
        self.assertTrue(fb["signed_curve25519:FB1"]["fallback"])
        self.assertEqual(self.claim(c.token, want)["one_time_keys"][d.user_id][d.device_id], fb)
        s = self.sync(d.token)
        self.assertEqual(s["device_unused_fallback_key_types"], [])
        self.assertEqual(s["device_one_time_keys_count"]["signed_curve25519"], 0)

    def test_unknown_devices_users_and_remote_servers(self):
        d = self.device()
        res = self.claim(d.token, {d.user_id: {"NOSUCH": "signed_curve25519", d.device_id: "signed_curve25519"},
                                   "@nobody:" + self.server.server_name: {"X": "signed_curve25519"},
                                   "@far:127.0.0.1:1": {"X": "signed_curve25519"}})
        self.assertEqual(res["one_time_keys"], {})
        self.assertIn("127.0.0.1:1", res["failures"])  # a private address: refused without any traffic
        self.assertError(self.req("POST", V3 + "/keys/claim", token=d.token, body={}), 400, "M_MISSING_PARAM")
        self.assertError(self.req("POST", V3 + "/keys/claim", token=d.token,
                                  body={"one_time_keys": {d.user_id: {d.device_id: 1}}}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", V3 + "/keys/claim", token=d.token,
                                  body={"one_time_keys": {"nope": {}}}), 400, "M_INVALID_PARAM")

    def test_concurrent_claims_never_share_a_key(self):
        d = self.device()
        self.upload(d, one_time_keys=d.otks(20))
        want = {d.user_id: {d.device_id: "signed_curve25519"}}
        results, lock = [], threading.Lock()

        def claimer():
            for _ in range(5):
                r = self.req("POST", V3 + "/keys/claim", token=d.token, body={"one_time_keys": want})
                with lock:
                    results.append(r)

        threads = [threading.Thread(target=claimer) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual([r.status for r in results], [200] * 40)
        ids = [k for r in results for k in r.json["one_time_keys"].get(d.user_id, {}).get(d.device_id, {})]
        self.assertEqual(len(ids), 20)
        self.assertEqual(len(set(ids)), 20)


class DeviceLists(E2eeTestCase):
    def test_key_changes_in_sync_and_keys_changes(self):
        a, b = self.device(), self.device()
        self.shared_room(a, b)
        start = self.sync(a.token)["next_batch"]
        self.upload(b, device_keys=b.device_keys())
        s = self.sync(a.token, since=start)
        self.assertIn(b.user_id, s["device_lists"]["changed"])
        self.assertEqual(self.changes(a.token, start, s["next_batch"])["changed"], [b.user_id])
        # nothing after that
        s2 = self.sync(a.token, since=s["next_batch"])
        self.assertNotIn("device_lists", s2)
        self.assertEqual(self.changes(a.token, s["next_batch"], s2["next_batch"]), {"changed": [], "left": []})

    def test_strangers_do_not_hear(self):
        a, stranger = self.device(), self.device()
        self.create_room(a.token)
        start = self.sync(a.token)["next_batch"]
        self.upload(stranger, device_keys=stranger.device_keys())
        s = self.sync(a.token, since=start)
        self.assertNotIn(stranger.user_id, s.get("device_lists", {}).get("changed", []))

    def test_own_new_renamed_and_deleted_devices(self):
        a = self.device()
        start = self.sync(a.token)["next_batch"]
        r = self.server.login(a.user_id, device_id="NEWDEV")
        s = self.sync(a.token, since=start)
        self.assertIn(a.user_id, s["device_lists"]["changed"])
        self.req("PUT", V3 + "/devices/NEWDEV", token=a.token, body={"display_name": "renamed"})
        s2 = self.sync(a.token, since=s["next_batch"])
        self.assertIn(a.user_id, s2["device_lists"]["changed"])
        self.req("POST", V3 + "/logout", token=r.json["access_token"], body={})
        s3 = self.sync(a.token, since=s2["next_batch"])
        self.assertIn(a.user_id, s3["device_lists"]["changed"])

    def test_join_and_leave(self):
        a, b = self.device(), self.device()
        room = self.create_room(a.token, preset="public_chat")
        start = self.sync(a.token)["next_batch"]
        self.join(b.token, room)
        s = self.sync(a.token, since=start)
        self.assertIn(b.user_id, s["device_lists"]["changed"])
        # b sees a too: b joined a room a is in
        self.assertIn(a.user_id, self.changes(b.token, start, s["next_batch"])["changed"])
        self.leave(b.token, room)
        s2 = self.sync(a.token, since=s["next_batch"])
        self.assertEqual(s2["device_lists"]["left"], [b.user_id])
        # no longer sharing a room: b's new keys are none of a's business
        self.upload(b, device_keys=b.device_keys())
        s3 = self.sync(a.token, since=s2["next_batch"])
        self.assertNotIn("device_lists", s3)
        # b left, so b's own view lists a as left
        self.assertIn(a.user_id, self.changes(b.token, s["next_batch"], s3["next_batch"])["left"])

    def test_join_then_leave_in_one_window(self):
        a, b = self.device(), self.device()
        room = self.create_room(a.token, preset="public_chat")
        start = self.sync(b.token)["next_batch"]
        self.join(b.token, room)
        self.leave(b.token, room)
        res = self.changes(b.token, start, self.sync(b.token)["next_batch"])
        self.assertEqual(res, {"changed": [], "left": [a.user_id]})

    def test_still_sharing_another_room_is_not_left(self):
        a, b = self.device(), self.device()
        r1 = self.shared_room(a, b)
        self.shared_room(a, b)
        start = self.sync(a.token)["next_batch"]
        self.leave(b.token, r1)
        s = self.sync(a.token, since=start)
        self.assertNotIn(b.user_id, s.get("device_lists", {}).get("left", []))

    def test_long_poll_wakes_on_key_change(self):
        a, b = self.device(), self.device()
        self.shared_room(a, b)
        since = self.sync(a.token)["next_batch"]
        result = {}

        def poll():
            t0 = time.time()
            result["sync"] = self.sync(a.token, since=since, timeout=20000)
            result["elapsed"] = time.time() - t0

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        self.upload(b, device_keys=b.device_keys())
        th.join(25)
        self.assertIn(b.user_id, result["sync"]["device_lists"]["changed"])
        self.assertLess(result["elapsed"], 5)

    def test_changes_errors(self):
        a = self.device()
        s = self.sync(a.token)["next_batch"]
        self.assertError(self.req("GET", V3 + "/keys/changes?from=" + s, token=a.token), 400, "M_MISSING_PARAM")
        self.assertError(self.req("GET", V3 + "/keys/changes?from=bad&to=" + s, token=a.token),
                         400, "M_INVALID_PARAM")
        self.assertError(self.req("GET", V3 + "/keys/changes?from=%s&to=%s" % (s, s)), 401, "M_MISSING_TOKEN")


class CrossSigning(E2eeTestCase):
    def setup_cross_signing(self, d):
        msk, master = xsign_key(d.user_id, "master")
        ssk, self_signing = xsign_key(d.user_id, "self_signing", msk)
        usk, user_signing = xsign_key(d.user_id, "user_signing", msk)
        body = {"master_key": master, "self_signing_key": self_signing, "user_signing_key": user_signing}
        r = self.req("POST", V3 + "/keys/device_signing/upload", token=d.token, body=body)
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", V3 + "/keys/device_signing/upload", r)
        return {"msk": msk, "ssk": ssk, "usk": usk, "master": master, "self_signing": self_signing,
                "user_signing": user_signing, "body": body}

    def test_upload_query_and_idempotent_reupload(self):
        a, b = self.device(), self.device()
        self.shared_room(a, b)
        start = self.sync(b.token)["next_batch"]
        x = self.setup_cross_signing(a)
        own = self.query(a.token, {a.user_id: []})
        self.assertEqual(own["master_keys"][a.user_id], x["master"])
        self.assertEqual(own["self_signing_keys"][a.user_id], x["self_signing"])
        self.assertEqual(own["user_signing_keys"][a.user_id], x["user_signing"])
        theirs = self.query(b.token, {a.user_id: []})
        self.assertEqual(theirs["master_keys"][a.user_id], x["master"])
        self.assertEqual(theirs["user_signing_keys"], {})  # only its owner sees a user-signing key
        self.assertIn(a.user_id, self.sync(b.token, since=start)["device_lists"]["changed"])
        # the same keys again: no authentication needed, nothing changes
        r = self.req("POST", V3 + "/keys/device_signing/upload", token=a.token, body=x["body"])
        self.assertEqual(r.status, 200, r)

    def test_replacing_the_master_key_needs_the_password(self):
        a = self.device()
        self.setup_cross_signing(a)
        msk, master = xsign_key(a.user_id, "master")
        body = {"master_key": master}
        r = self.req("POST", V3 + "/keys/device_signing/upload", token=a.token, body=body)
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
        body["auth"] = {"type": "m.login.password", "session": r.json["session"], "password": "wrong",
                        "identifier": {"type": "m.id.user", "user": a.user_id}}
        r2 = self.req("POST", V3 + "/keys/device_signing/upload", token=a.token, body=body)
        self.assertEqual(r2.status, 401, r2)
        self.assertNotEqual(self.query(a.token, {a.user_id: []})["master_keys"][a.user_id]["keys"], master["keys"])
        body["auth"]["password"] = "correct horse battery"
        r3 = self.req("POST", V3 + "/keys/device_signing/upload", token=a.token, body=body)
        self.assertEqual(r3.status, 200, r3)
        self.assertEqual(self.query(a.token, {a.user_id: []})["master_keys"][a.user_id], master)

    def test_upload_errors(self):
        a = self.device()
        path = V3 + "/keys/device_signing/upload"
        msk, master = xsign_key(a.user_id, "master")
        ssk, self_signing = xsign_key(a.user_id, "self_signing")  # not signed by the master key
        self.assertError(self.req("POST", path, token=a.token, body={"self_signing_key": self_signing}),
                         400, "M_MISSING_PARAM")
        self.assertError(self.req("POST", path, token=a.token,
                                  body={"master_key": master, "self_signing_key": self_signing}),
                         400, "M_INVALID_SIGNATURE")
        other_sk, other = xsign_key("@someone:else", "master")
        self.assertError(self.req("POST", path, token=a.token, body={"master_key": other}), 400, "M_INVALID_PARAM")
        wrong_usage = dict(master, usage=["self_signing"])
        self.assertError(self.req("POST", path, token=a.token, body={"master_key": wrong_usage}),
                         400, "M_INVALID_PARAM")
        self.assertError(self.req("POST", path, token=a.token, body={"master_key": "x"}), 400, "M_BAD_JSON")
        # a public key that is also one of the user's device IDs would make key IDs ambiguous
        clash_sk, clash = xsign_key(a.user_id, "master")
        self.assertEqual(self.server.login(a.user_id, device_id=pub_of(clash_sk)).status, 200)
        self.assertError(self.req("POST", path, token=a.token, body={"master_key": clash}), 403, "M_FORBIDDEN")
        # nothing was stored by the refused requests
        self.assertEqual(self.query(a.token, {a.user_id: []})["master_keys"], {})

    def test_signatures_upload(self):
        a, b, c = self.device(), self.device(), self.device()
        for d in (a, b):
            self.upload(d, device_keys=d.device_keys())
        xa, xb = self.setup_cross_signing(a), self.setup_cross_signing(b)
        path = V3 + "/keys/signatures/upload"
        # a's self-signing key signs a's device; a's device signs a's master key
        signed_dev = signedjson.sign.sign_json(a.device_keys(), a.user_id, xa["ssk"])
        signed_master = signedjson.sign.sign_json(dict(xa["master"]), a.user_id, a.sk)
        # a's user-signing key signs b's master key
        signed_b = signedjson.sign.sign_json(dict(xb["master"]), a.user_id, xa["usk"])
        r = self.req("POST", path, token=a.token, body={
            a.user_id: {a.device_id: signed_dev, pub_of(xa["msk"]): signed_master},
            b.user_id: {pub_of(xb["msk"]): signed_b}})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", path, r)
        self.assertEqual(r.json["failures"], {})
        seen_by_c = self.query(c.token, {a.user_id: [], b.user_id: []})
        dev = seen_by_c["device_keys"][a.user_id][a.device_id]
        self.assertIn("ed25519:" + pub_of(xa["ssk"]), dev["signatures"][a.user_id])
        self.assertIn("ed25519:" + a.device_id, seen_by_c["master_keys"][a.user_id]["signatures"][a.user_id])
        # a's signature of b's master key is a's own business
        self.assertNotIn(a.user_id, seen_by_c["master_keys"][b.user_id].get("signatures", {}))
        seen_by_a = self.query(a.token, {b.user_id: []})
        self.assertEqual(seen_by_a["master_keys"][b.user_id]["signatures"][a.user_id],
                         signed_b["signatures"][a.user_id])
        # and it verifies
        vk = signedjson.key.decode_verify_key_base64("ed25519", pub_of(xa["usk"]), pub_of(xa["usk"]))
        signedjson.sign.verify_signed_json(seen_by_a["master_keys"][b.user_id], a.user_id, vk)

    def test_signature_failures(self):
        a, b = self.device(), self.device()
        self.upload(a, device_keys=a.device_keys())
        path = V3 + "/keys/signatures/upload"
        # no cross-signing keys yet
        r = self.req("POST", path, token=a.token, body={a.user_id: {a.device_id: a.device_keys()}})
        self.assertEqual(r.status, 200, r)
        self.assertIn(a.device_id, r.json["failures"][a.user_id])
        xa = self.setup_cross_signing(a)
        forged = signedjson.sign.sign_json(a.device_keys(), a.user_id, new_key(pub_of(xa["ssk"])))
        unknown = signedjson.sign.sign_json(dict(a.device_keys(), device_id="NOSUCH"), a.user_id, xa["ssk"])
        r = self.req("POST", path, token=a.token, body={
            a.user_id: {a.device_id: forged, "NOSUCH": unknown},
            b.user_id: {"whatever": {"user_id": b.user_id}}})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", path, r)
        f = r.json["failures"]
        self.assertEqual(f[a.user_id][a.device_id]["errcode"], "M_INVALID_SIGNATURE")
        self.assertEqual(f[a.user_id]["NOSUCH"]["errcode"], "M_NOT_FOUND")
        self.assertIn("whatever", f[b.user_id])
        dev = self.query(a.token, {a.user_id: [a.device_id]})["device_keys"][a.user_id][a.device_id]
        self.assertEqual(list(dev["signatures"][a.user_id]), ["ed25519:" + a.device_id])
        self.assertError(self.req("POST", path, token=a.token, body={a.user_id: []}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", path, body={}), 401, "M_MISSING_TOKEN")


class ToDevice(E2eeTestCase):
    def to_device(self, sync):
        return sync.get("to_device", {}).get("events", [])

    def test_delivery_and_acknowledgement(self):
        a, b = self.device(), self.device()
        since = self.sync(b.token)["next_batch"]
        self.send_to_device(a.token, "m.test", {b.user_id: {b.device_id: {"n": 1}}})
        s = self.sync(b.token, since=since)
        self.assertEqual(self.to_device(s), [{"sender": a.user_id, "type": "m.test", "content": {"n": 1}}])
        # the same since again: not acknowledged yet, delivered again
        self.assertEqual(len(self.to_device(self.sync(b.token, since=since))), 1)
        # a later since acknowledges, and the message is gone for good: deleted by a write the
        # sync does not wait for, so an old token may still see it for a moment (architecture.md)
        s2 = self.sync(b.token, since=s["next_batch"])
        self.assertEqual(self.to_device(s2), [])
        deadline = time.time() + 10
        while self.to_device(self.sync(b.token, since=since)) and time.time() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.to_device(self.sync(b.token, since=since)), [])

    def test_all_devices_and_idempotent_transactions(self):
        a, b = self.device(), self.device()
        r = self.server.login(b.user_id, device_id="OTHER")
        other_token = r.json["access_token"]
        txn = txn_id()
        for _ in range(2):
            self.send_to_device(a.token, "m.test", {b.user_id: {"*": {"all": True}}}, txn=txn)
        for token in (b.token, other_token):
            self.assertEqual(len(self.to_device(self.sync(token))), 1)
        # the transaction ID belongs to the sending device: another one is a new message
        self.send_to_device(a.token, "m.test", {b.user_id: {"*": {"all": True}}})
        self.assertEqual(len(self.to_device(self.sync(b.token))), 2)

    def test_long_poll_wakes(self):
        a, b = self.device(), self.device()
        since = self.sync(b.token)["next_batch"]
        result = {}

        def poll():
            result["sync"] = self.sync(b.token, since=since, timeout=20000)

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        t0 = time.time()
        self.send_to_device(a.token, "m.test", {b.user_id: {b.device_id: {"wake": 1}}})
        th.join(25)
        self.assertLess(time.time() - t0, 5)
        self.assertEqual(self.to_device(result["sync"])[0]["content"], {"wake": 1})

    def test_more_than_one_sync_worth(self):
        a, b = self.device(), self.device()
        since = self.sync(b.token)["next_batch"]
        for i in range(0, 130, 10):
            for n in range(i, i + 10):
                self.send_to_device(a.token, "m.test", {b.user_id: {b.device_id: {"n": n}}})
        room = self.create_room(a.token)  # a later change elsewhere must not be lost either
        self.invite(a.token, room, b.user_id)
        s = self.sync(b.token, since=since)
        first = [e["content"]["n"] for e in self.to_device(s)]
        self.assertEqual(first, list(range(100)))
        s2 = self.sync(b.token, since=s["next_batch"])
        self.assertEqual([e["content"]["n"] for e in self.to_device(s2)], list(range(100, 130)))
        invited = room in s.get("rooms", {}).get("invite", {}) or room in s2.get("rooms", {}).get("invite", {})
        self.assertTrue(invited)
        self.assertEqual(self.to_device(self.sync(b.token, since=s2["next_batch"])), [])

    def test_unknown_remote_and_bad_requests(self):
        a, b = self.device(), self.device()
        self.send_to_device(a.token, "m.test", {b.user_id: {"NOSUCH": {}}, "@far:remote.example": {"X": {}},
                                                "@nobody:" + self.server.server_name: {"*": {}}})
        self.assertEqual(self.to_device(self.sync(b.token)), [])
        path = V3 + "/sendToDevice/m.test/" + txn_id()
        self.assertError(self.req("PUT", path, token=a.token, body={}), 400, "M_MISSING_PARAM")
        self.assertError(self.req("PUT", path, token=a.token, body={"messages": {b.user_id: {"D": "x"}}}),
                         400, "M_BAD_JSON")
        self.assertError(self.req("PUT", path, token=a.token, body={"messages": {b.user_id: []}}), 400, "M_BAD_JSON")
        self.assertError(self.req("PUT", path, token=a.token, body={"messages": {"bob": {}}}), 400, "M_INVALID_PARAM")
        self.assertError(self.req("PUT", path, token=a.token, raw=b"[", headers={"Content-Type": "application/json"}),
                         400, "M_NOT_JSON")
        self.assertError(self.req("PUT", path, body={"messages": {}}), 401, "M_MISSING_TOKEN")


class KeyBackup(E2eeTestCase):
    ALG = "m.megolm_backup.v1.curve25519-aes-sha2"

    def key(self, verified=False, first=0, forwarded=0, tag="x"):
        return {"first_message_index": first, "forwarded_count": forwarded, "is_verified": verified,
                "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag}}

    def create(self, token, auth_data=None):
        r = self.req("POST", V3 + "/room_keys/version", token=token,
                     body={"algorithm": self.ALG, "auth_data": auth_data or {"public_key": "abc"}})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", V3 + "/room_keys/version", r)
        return r.json["version"]

    def keys_path(self, version, room=None, session=None):
        path = V3 + "/room_keys/keys"
        if room is not None:
            path += "/" + q(room)
        if session is not None:
            path += "/" + q(session)
        return path + "?version=" + q(version)

    def test_versions(self):
        d = self.device()
        self.assertError(self.req("GET", V3 + "/room_keys/version", token=d.token), 404, "M_NOT_FOUND")
        v1 = self.create(d.token)
        r = self.req("GET", V3 + "/room_keys/version", token=d.token)
        self.assertEqual(r.status, 200, r)
        self.assertSpec("GET", V3 + "/room_keys/version", r)
        self.assertEqual(r.json["version"], v1)
        self.assertEqual(r.json["count"], 0)
        self.assertEqual(r.json["auth_data"], {"public_key": "abc"})
        path = V3 + "/room_keys/version/" + v1
        r = self.req("PUT", path, token=d.token, body={"algorithm": self.ALG, "auth_data": {"public_key": "new"},
                                                       "version": v1})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.req("GET", path, token=d.token).json["auth_data"], {"public_key": "new"})
        self.assertError(self.req("PUT", path, token=d.token, body={"algorithm": "other", "auth_data": {}}),
                         400, "M_INVALID_PARAM")
        self.assertError(self.req("PUT", path, token=d.token,
                                  body={"algorithm": self.ALG, "auth_data": {}, "version": "99"}),
                         400, "M_INVALID_PARAM")
        self.assertError(self.req("PUT", V3 + "/room_keys/version/99", token=d.token,
                                  body={"algorithm": self.ALG, "auth_data": {}}), 404, "M_NOT_FOUND")
        self.assertError(self.req("POST", V3 + "/room_keys/version", token=d.token, body={"algorithm": self.ALG}),
                         400, "M_MISSING_PARAM")
        # delete, twice; the number is not handed out again
        self.assertEqual(self.req("DELETE", path, token=d.token).status, 200)
        self.assertEqual(self.req("DELETE", path, token=d.token).status, 200)
        self.assertError(self.req("GET", path, token=d.token), 404, "M_NOT_FOUND")
        self.assertError(self.req("GET", V3 + "/room_keys/version", token=d.token), 404, "M_NOT_FOUND")
        self.assertError(self.req("DELETE", V3 + "/room_keys/version/77", token=d.token), 404, "M_NOT_FOUND")
        self.assertError(self.req("GET", V3 + "/room_keys/version/abc", token=d.token), 404, "M_NOT_FOUND")
        v2 = self.create(d.token)
        self.assertNotEqual(v1, v2)
        # another user's backups are not ours
        e = self.device()
        self.assertError(self.req("GET", V3 + "/room_keys/version/" + v2, token=e.token), 404, "M_NOT_FOUND")
        self.assertError(self.req("GET", V3 + "/room_keys/version"), 401, "M_MISSING_TOKEN")

    def test_keys_replacement_etag_and_count(self):
        d = self.device()
        v = self.create(d.token)
        room, room2 = "!room:example.org", "!other:example.org"
        r = self.req("PUT", self.keys_path(v, room, "s1"), token=d.token, body=self.key(first=5, tag="a"))
        self.assertEqual(r.status, 200, r)
        self.assertSpec("PUT", V3 + "/room_keys/keys/{roomId}/{sessionId}", r)
        self.assertEqual(r.json["count"], 1)
        etag = r.json["etag"]
        # worse: a higher first_message_index; nothing changes, not even the etag
        r = self.req("PUT", self.keys_path(v, room, "s1"), token=d.token, body=self.key(first=9, tag="b"))
        self.assertEqual((r.json["count"], r.json["etag"]), (1, etag))
        # better: verified beats everything
        r = self.req("PUT", self.keys_path(v, room, "s1"), token=d.token,
                     body=self.key(verified=True, first=20, forwarded=3, tag="c"))
        self.assertNotEqual(r.json["etag"], etag)
        # unverified never replaces verified; among verified a lower forwarded_count wins
        self.req("PUT", self.keys_path(v, room, "s1"), token=d.token, body=self.key(first=0, tag="d"))
        self.req("PUT", self.keys_path(v, room, "s1"), token=d.token,
                 body=self.key(verified=True, first=20, forwarded=1, tag="e"))
        got = self.req("GET", self.keys_path(v, room, "s1"), token=d.token)
        self.assertSpec("GET", V3 + "/room_keys/keys/{roomId}/{sessionId}", got)
        self.assertEqual(got.json["session_data"]["mac"], "e")
        # room and whole-backup forms
        r = self.req("PUT", self.keys_path(v, room2), token=d.token,
                     body={"sessions": {"s2": self.key(), "s3": self.key()}})
        self.assertEqual(r.json["count"], 3)
        r = self.req("PUT", self.keys_path(v), token=d.token,
                     body={"rooms": {room: {"sessions": {"s4": self.key()}}}})
        self.assertEqual(r.json["count"], 4)
        all_ = self.req("GET", self.keys_path(v), token=d.token)
        self.assertSpec("GET", V3 + "/room_keys/keys", all_)
        self.assertEqual({k: set(r["sessions"]) for k, r in all_.json["rooms"].items()},
                         {room: {"s1", "s4"}, room2: {"s2", "s3"}})
        self.assertEqual(set(self.req("GET", self.keys_path(v, room2), token=d.token).json["sessions"]), {"s2", "s3"})
        self.assertEqual(self.req("GET", self.keys_path(v, "!empty:x"), token=d.token).json, {"sessions": {}})
        self.assertError(self.req("GET", self.keys_path(v, room, "nope"), token=d.token), 404, "M_NOT_FOUND")
        info = self.req("GET", V3 + "/room_keys/version/" + v, token=d.token).json
        self.assertEqual(info["count"], 4)
        # deleting
        r = self.req("DELETE", self.keys_path(v, room, "s1"), token=d.token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["count"], 3)
        r = self.req("DELETE", self.keys_path(v, room2), token=d.token)
        self.assertEqual(r.json["count"], 1)
        r = self.req("DELETE", self.keys_path(v), token=d.token)
        self.assertEqual(r.json["count"], 0)
        self.assertEqual(self.req("GET", self.keys_path(v), token=d.token).json, {"rooms": {}})

    def test_wrong_version(self):
        d = self.device()
        room = "!room:example.org"
        self.assertError(self.req("PUT", self.keys_path("1", room, "s"), token=d.token, body=self.key()),
                         404, "M_NOT_FOUND")
        v1 = self.create(d.token)
        v2 = self.create(d.token)
        r = self.req("PUT", self.keys_path(v1, room, "s"), token=d.token, body=self.key())
        self.assertError(r, 403, "M_WRONG_ROOM_KEYS_VERSION")
        self.assertEqual(r.json["current_version"], v2)
        self.assertError(self.req("PUT", self.keys_path("999", room, "s"), token=d.token, body=self.key()),
                         404, "M_NOT_FOUND")
        # the older version can still be read
        self.assertEqual(self.req("GET", self.keys_path(v1), token=d.token).status, 200)
        # errors in the request itself
        self.assertError(self.req("PUT", V3 + "/room_keys/keys/%s/s" % q(room), token=d.token, body=self.key()),
                         400, "M_MISSING_PARAM")
        self.assertError(self.req("GET", V3 + "/room_keys/keys", token=d.token), 400, "M_MISSING_PARAM")
        bad = self.key()
        bad["is_verified"] = "yes"
        self.assertError(self.req("PUT", self.keys_path(v2, room, "s"), token=d.token, body=bad), 400, "M_BAD_JSON")
        self.assertError(self.req("PUT", self.keys_path(v2, room), token=d.token, body={"sessions": []}),
                         400, "M_BAD_JSON")
        self.assertError(self.req("PUT", self.keys_path(v2), token=d.token, body={}), 400, "M_MISSING_PARAM")
        self.assertError(self.req("DELETE", self.keys_path("42"), token=d.token), 404, "M_NOT_FOUND")
        self.assertEqual(self.req("GET", self.keys_path(v2), token=d.token).json, {"rooms": {}})


class Dehydrated(E2eeTestCase):
    """MSC3814 dehydrated devices."""

    PREFIX = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"

    def dehydrate(self, owner, device_id, expect=200, **override):
        dd = Device(owner.user_id, device_id, owner.token)
        body = {"device_id": device_id, "device_data": {"algorithm": "org.matrix.msc3814.v1.olm", "account": "opaque"},
                "initial_device_display_name": "Dehydrated", "device_keys": dd.device_keys(),
                "one_time_keys": dd.otks(2), "fallback_keys": dd.fallback()}
        body.update(override)
        r = self.req("PUT", self.PREFIX, token=owner.token, body=body)
        self.assertEqual(r.status, expect, r)
        return dd, r

    def events(self, token, device_id, **params):
        r = self.req("GET", self.PREFIX + "/%s/events?%s" % (q(device_id), urllib.parse.urlencode(params)),
                     token=token)
        self.assertEqual(r.status, 200, r)
        return r.json

    def test_lifecycle(self):
        a, b = self.device(), self.device()
        self.assertError(self.req("GET", self.PREFIX, token=a.token), 404, "M_NOT_FOUND")
        self.assertIn("org.matrix.msc3814", self.req("GET", "/_matrix/client/versions").json["unstable_features"])
        dd, r = self.dehydrate(a, "DEHYDRATED1")
        self.assertEqual(r.json, {"device_id": "DEHYDRATED1"})
        got = self.req("GET", self.PREFIX, token=a.token).json
        self.assertEqual(got, {"device_id": "DEHYDRATED1",
                               "device_data": {"algorithm": "org.matrix.msc3814.v1.olm", "account": "opaque"}})
        # it is a device like others: its keys are published and its one-time keys claimable
        seen = self.query(b.token, {a.user_id: []})["device_keys"][a.user_id]["DEHYDRATED1"]
        self.assertEqual(seen["keys"], dd.device_keys()["keys"])
        self.assertEqual(seen["unsigned"], {"device_display_name": "Dehydrated"})
        claimed = self.claim(b.token, {a.user_id: {"DEHYDRATED1": "signed_curve25519"}})["one_time_keys"]
        self.assertEqual(len(claimed[a.user_id]["DEHYDRATED1"]), 1)
        # messages to it wait in its inbox, in order, a page at a time
        for n in range(3):
            self.send_to_device(b.token, "m.test", {a.user_id: {"DEHYDRATED1": {"n": n}}})
        page = self.events(a.token, "DEHYDRATED1", limit=2)
        self.assertEqual([e["content"]["n"] for e in page["events"]], [0, 1])
        self.assertEqual(page["events"][0]["sender"], b.user_id)
        rest = self.events(a.token, "DEHYDRATED1", **{"from": page["next_batch"]})
        self.assertEqual([e["content"]["n"] for e in rest["events"]], [2])
        self.assertNotIn("next_batch", rest)
        # the page before was acknowledged by asking for the next one
        self.assertEqual([e["content"]["n"] for e in self.events(a.token, "DEHYDRATED1")["events"]], [2])
        r = self.req("POST", self.PREFIX + "/DEHYDRATED1/events", token=a.token, body={})
        self.assertEqual(r.status, 200, r)
        self.assertIn("next_batch", r.json)  # the older draft always gives one
        # only one's own current dehydrated device
        self.assertError(self.req("GET", self.PREFIX + "/%s/events" % a.device_id, token=a.token),
                         403, "M_FORBIDDEN")
        self.assertError(self.req("GET", self.PREFIX + "/DEHYDRATED1/events", token=b.token), 403, "M_FORBIDDEN")
        self.assertError(self.req("GET", self.PREFIX + "/DEHYDRATED1/events?from=x", token=a.token),
                         400, "M_INVALID_PARAM")

        # a new one replaces it, keys and all
        self.dehydrate(a, "DEHYDRATED2")
        devices = self.query(b.token, {a.user_id: []})["device_keys"][a.user_id]
        self.assertIn("DEHYDRATED2", devices)
        self.assertNotIn("DEHYDRATED1", devices)
        r = self.req("DELETE", self.PREFIX, token=a.token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"device_id": "DEHYDRATED2"})
        self.assertError(self.req("GET", self.PREFIX, token=a.token), 404, "M_NOT_FOUND")
        self.assertError(self.req("DELETE", self.PREFIX, token=a.token), 404, "M_NOT_FOUND")
        self.assertNotIn("DEHYDRATED2", self.query(b.token, {a.user_id: []})["device_keys"][a.user_id])

    def test_errors(self):
        a = self.device()
        self.assertError(self.dehydrate(a, "DD", expect=400, device_keys=None)[1], 400, "M_MISSING_PARAM")
        self.assertError(self.dehydrate(a, "DD", expect=400, device_data={})[1], 400, "M_MISSING_PARAM")
        other = Device(a.user_id, "OTHER", a.token)
        self.assertError(self.dehydrate(a, "DD", expect=400, device_keys=other.device_keys())[1], 400, "M_BAD_JSON")
        forged = Device(a.user_id, "DD", a.token).device_keys()
        forged["algorithms"] = []
        self.assertError(self.dehydrate(a, "DD", expect=400, device_keys=forged)[1], 400, "M_INVALID_SIGNATURE")
        # the ID of one of the user's real devices
        self.assertError(self.dehydrate(a, a.device_id, expect=400)[1], 400, "M_INVALID_PARAM")
        self.assertError(self.req("GET", self.PREFIX, token=a.token), 404, "M_NOT_FOUND")
        self.assertError(self.req("PUT", self.PREFIX, body={}), 401, "M_MISSING_TOKEN")


class Guards(E2eeTestCase):
    """Every E2EE endpoint wants a token, and every body must be JSON."""

    MSC3814 = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device"
    ENDPOINTS = [
        ("POST", V3 + "/keys/upload"), ("POST", V3 + "/keys/query"), ("POST", V3 + "/keys/claim"),
        ("GET", V3 + "/keys/changes?from=s1_0&to=s2_0"), ("POST", V3 + "/keys/device_signing/upload"),
        ("POST", V3 + "/keys/signatures/upload"), ("PUT", V3 + "/sendToDevice/m.test/t1"),
        ("POST", V3 + "/room_keys/version"), ("GET", V3 + "/room_keys/version"),
        ("GET", V3 + "/room_keys/version/1"), ("PUT", V3 + "/room_keys/version/1"),
        ("DELETE", V3 + "/room_keys/version/1"), ("PUT", V3 + "/room_keys/keys?version=1"),
        ("GET", V3 + "/room_keys/keys?version=1"), ("DELETE", V3 + "/room_keys/keys?version=1"),
        ("PUT", V3 + "/room_keys/keys/!r:x?version=1"), ("GET", V3 + "/room_keys/keys/!r:x/s?version=1"),
        ("GET", MSC3814), ("PUT", MSC3814), ("DELETE", MSC3814), ("GET", MSC3814 + "/D/events"),
        ("POST", MSC3814 + "/D/events"),
    ]

    def test_missing_and_bad_tokens(self):
        for method, path in self.ENDPOINTS:
            self.assertError(self.req(method, path, body={}), 401, "M_MISSING_TOKEN")
            self.assertError(self.req(method, path, token="axo_nope", body={}), 401, "M_UNKNOWN_TOKEN")

    def test_bodies_must_be_json(self):
        d = self.device()
        for method, path in self.ENDPOINTS:
            if method in ("POST", "PUT"):
                r = self.req(method, path, token=d.token, raw=b"{\"broken",
                             headers={"Content-Type": "application/json"})
                self.assertError(r, 400, "M_NOT_JSON")


class SyncSections(E2eeTestCase):
    def test_counts_and_fallback_types(self):
        d = self.device()
        self.upload(d, one_time_keys=d.otks(3), fallback_keys=d.fallback())
        s = self.sync(d.token)
        self.assertEqual(s["device_one_time_keys_count"], {"signed_curve25519": 3})
        self.assertEqual(s["device_unused_fallback_key_types"], ["signed_curve25519"])
        self.assertNotIn("device_lists", s)  # initial sync: the client queries instead
        # counts alone are no news: an idle long-poll still waits
        t0 = time.time()
        s2 = self.sync(d.token, since=s["next_batch"], timeout=800)
        self.assertGreaterEqual(time.time() - t0, 0.7)
        self.assertEqual(s2["device_one_time_keys_count"], {"signed_curve25519": 3})


if __name__ == "__main__":
    main()
