#!/usr/bin/python3
"""Serving room data to other servers, black box (federation/api_events.c,
api_rooms.c): an axon with federation on, read by a fake remote server
that signs its requests with the spec's test key.

Covers /event, /state, /state_ids, /event_auth, /backfill,
/get_missing_events, /timestamp_to_event, /publicRooms (GET and POST) and
/hierarchy: success paths validated against the spec's schemas, PDUs as
stored (hashes and signatures still verify, no server-local "unsigned"),
history visibility judged for the asking server (a "joined" room refuses a
server without members, a world_readable one does not; invisible events
come redacted from /backfill and /get_missing_events; an invited server
sees from its invite on), server ACLs (403 M_FORBIDDEN everywhere), and
every error: unknown room or event (404), bad parameters (400), unsigned
requests (401).

The fake server also joins rooms through make_join/send_join, to be
judged as a server in the room."""

import base64
import hashlib
import json
import time
import unittest
import urllib.parse

from axontest import Response, main, spec_errors, unique

try:
    import canonicaljson
    import signedjson.key
    import signedjson.sign
    import fedutil
    from fedutil import FedTestCase
    HAVE_DEPS = fedutil.OPENSSL is not None
except ImportError:  # python3-signedjson / python3-nacl missing
    HAVE_DEPS = False
    FedTestCase = unittest.TestCase

V3 = "/_matrix/client/v3"
FED = "/_matrix/federation/v1"
_txn = [0]


def q(s):
    return urllib.parse.quote(s, safe="")


@unittest.skipUnless(HAVE_DEPS, "openssl, python3-signedjson and python3-nacl are needed")
class FedServe(FedTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a_keys = fedutil.verify_doc(fedutil.fetch_keys_plain(cls.a.port), cls.a.server_name)

    # -- helpers ---------------------------------------------------------------------------------

    def fed(self, method, path, body=None, auth=None, spec=True):
        """A request from the fake server to A; a Response, validated against the spec when 'spec'."""
        status, data = self.fake.send(self.a, method, path, body=body, auth=auth, ca=self.ca)
        r = Response(status, [("Content-Type", "application/json")], json.dumps(data).encode() if data else b"")
        if spec:
            try:
                errs = spec_errors(method, path, r.status, r.json)
            except LookupError:
                # an error status the spec's operation does not list (400s, most 403s and 404s):
                # assertErr checks its Matrix error shape
                self.assertNotEqual(r.status, 200)
                errs = []
            self.assertEqual(errs, [], "not as the spec says: %r" % r)
        return r

    def assertErr(self, r, status, errcode):
        self.assertEqual(r.status, status, r)
        self.assertEqual(r.json["errcode"], errcode, r)
        self.assertIsInstance(r.json.get("error"), str, r)

    def user(self):
        u = self.a.register(unique())
        return u["user_id"], u["access_token"]

    def room(self, token, history, **extra):
        body = {"preset": "public_chat", "initial_state": [
            {"type": "m.room.history_visibility", "content": {"history_visibility": history}}]}
        body.update(extra)
        r = self.a.request("POST", V3 + "/createRoom", token=token, body=body)
        self.assertEqual(r.status, 200, r)
        return r.json["room_id"]

    def send(self, token, room, text):
        _txn[0] += 1
        r = self.a.request("PUT", V3 + "/rooms/%s/send/m.room.message/t%d" % (q(room), _txn[0]), token=token,
                           body={"msgtype": "m.text", "body": text})
        self.assertEqual(r.status, 200, r)
        return r.json["event_id"]

    def state(self, token, room, type_, content, state_key=""):
        r = self.a.request("PUT", V3 + "/rooms/%s/state/%s/%s" % (q(room), type_, q(state_key)), token=token,
                           body=content)
        self.assertEqual(r.status, 200, r)
        return r.json["event_id"]

    def join_fake(self, room):
        """A user of the fake server joins 'room' on A (make_join, signed, send_join); returns the join's ID."""
        user = "@%s:%s" % (unique("remote"), self.fake.server_name)
        status, tmpl = self.fake.send(self.a, "GET", "%s/make_join/%s/%s?ver=10&ver=11&ver=12"
                                      % (FED, q(room), q(user)), ca=self.ca)
        self.assertEqual(status, 200, tmpl)
        ev, version = tmpl["event"], tmpl["room_version"]
        ev["origin_server_ts"] = ev.get("origin_server_ts") or int(time.time() * 1000)
        fedutil.sign_event(ev, version, self.fake.server_name, self.fake.signing_key)
        eid = fedutil.event_id(ev, version)
        status, body = self.fake.send(self.a, "PUT", "/_matrix/federation/v2/send_join/%s/%s" % (q(room), q(eid)),
                                      body=ev, ca=self.ca)
        self.assertEqual(status, 200, body)
        return eid

    def event_id_of(self, pdu):
        """The v4+ event ID of a PDU: "$" + URL-safe unpadded base64 of its reference hash (redacted form)."""
        red = redact_v11(pdu)
        red.pop("signatures", None)
        red.pop("unsigned", None)
        h = hashlib.sha256(canonicaljson.encode_canonical_json(red)).digest()
        return "$" + base64.urlsafe_b64encode(h).decode().rstrip("=")

    def assertWirePdu(self, pdu, intact=True):
        """A PDU as it must leave us: no "unsigned", A's signature verifies; intact ones match their content hash."""
        self.assertNotIn("unsigned", pdu)
        signedjson.sign.verify_signed_json(redact_v11(pdu), self.a.server_name,
                                           list(self.a_keys.values())[0])
        if intact:
            body = {k: v for k, v in pdu.items() if k not in ("signatures", "hashes", "unsigned")}
            digest = hashlib.sha256(canonicaljson.encode_canonical_json(body)).digest()
            self.assertEqual(base64.b64encode(digest).decode().rstrip("="), pdu["hashes"]["sha256"])

    # -- /event ------------------------------------------------------------------------------------

    def test_event_world_readable_room(self):
        _, tok = self.user()
        room = self.room(tok, "world_readable")
        eid = self.send(tok, room, "hello fake")
        r = self.fed("GET", FED + "/event/" + q(eid))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["origin"], self.a.server_name)
        self.assertIsInstance(r.json["origin_server_ts"], int)
        (pdu,) = r.json["pdus"]
        self.assertEqual(pdu["content"]["body"], "hello fake")
        self.assertEqual(self.event_id_of(pdu), eid)
        self.assertWirePdu(pdu)

    def test_event_joined_room_refuses_a_server_without_members(self):
        _, tok = self.user()
        room = self.room(tok, "joined")
        eid = self.send(tok, room, "members only")
        self.assertErr(self.fed("GET", FED + "/event/" + q(eid)), 403, "M_FORBIDDEN")
        # shared rooms too: "shared" is for servers in the room
        room2 = self.room(tok, "shared")
        eid2 = self.send(tok, room2, "still members only")
        self.assertErr(self.fed("GET", FED + "/event/" + q(eid2)), 403, "M_FORBIDDEN")

    def test_event_unknown_and_malformed(self):
        self.assertErr(self.fed("GET", FED + "/event/" + q("$" + "A" * 43)), 404, "M_NOT_FOUND")
        self.assertErr(self.fed("GET", FED + "/event/" + q("not-an-event")), 404, "M_NOT_FOUND")

    def test_invited_server_sees_from_its_invite(self):
        _, tok = self.user()
        room = self.room(tok, "invited")
        before = self.send(tok, room, "before the invite")
        guest = "@guest:" + self.fake.server_name
        self.state(tok, room, "m.room.member", {"membership": "invite"}, guest)
        after = self.send(tok, room, "after the invite")
        self.assertErr(self.fed("GET", FED + "/event/" + q(before)), 403, "M_FORBIDDEN")
        r = self.fed("GET", FED + "/event/" + q(after))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["pdus"][0]["content"]["body"], "after the invite")
        # the state at a visible event may be asked for; at an invisible one not
        r = self.fed("GET", FED + "/state_ids/%s?event_id=%s" % (q(room), q(after)))
        self.assertEqual(r.status, 200, r)
        r = self.fed("GET", FED + "/state_ids/%s?event_id=%s" % (q(room), q(before)))
        self.assertErr(r, 403, "M_FORBIDDEN")
        # walking the room is for servers in it (an invited server is not)
        r = self.fed("GET", FED + "/backfill/%s?v=%s&limit=5" % (q(room), q(after)))
        self.assertErr(r, 403, "M_FORBIDDEN")

    def test_joined_server_sees_from_its_join(self):
        _, tok = self.user()
        room = self.room(tok, "joined")
        before = self.send(tok, room, "before the remote join")
        join = self.join_fake(room)
        after = self.send(tok, room, "after the remote join")
        # a server in the room gets an event it may not see redacted, one it may see whole
        r = self.fed("GET", FED + "/event/" + q(before))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["pdus"][0]["content"], {})
        self.assertWirePdu(r.json["pdus"][0], intact=False)
        r = self.fed("GET", FED + "/event/" + q(after))
        self.assertEqual(r.json["pdus"][0]["content"]["body"], "after the remote join")
        # it may walk the room: what came before its join comes redacted
        r = self.fed("GET", FED + "/backfill/%s?v=%s&limit=50" % (q(room), q(after)))
        self.assertEqual(r.status, 200, r)
        by_id = {self.event_id_of(p): p for p in r.json["pdus"]}
        self.assertEqual(by_id[after]["content"]["body"], "after the remote join")
        self.assertEqual(by_id[before]["content"], {})
        self.assertIn(join, by_id)
        self.assertEqual(by_id[join]["content"]["membership"], "join")
        r = self.fed("POST", FED + "/get_missing_events/" + q(room),
                     body={"earliest_events": [], "latest_events": [after], "limit": 50})
        evs = {self.event_id_of(p): p for p in r.json["events"]}
        self.assertEqual(evs[before]["content"], {})
        self.assertIn(join, evs)
        # and ask for the state anywhere in it
        r = self.fed("GET", FED + "/state_ids/%s?event_id=%s" % (q(room), q(before)))
        self.assertEqual(r.status, 200, r)
        self.assertNotIn(join, r.json["pdu_ids"])
        r = self.fed("GET", FED + "/state_ids/%s?event_id=%s" % (q(room), q(after)))
        self.assertIn(join, r.json["pdu_ids"])

    def test_shared_history_is_for_servers_in_the_room(self):
        _, tok = self.user()
        room = self.room(tok, "shared")
        early = self.send(tok, room, "early history")
        self.assertErr(self.fed("GET", FED + "/event/" + q(early)), 403, "M_FORBIDDEN")
        self.join_fake(room)
        r = self.fed("GET", FED + "/event/" + q(early))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["pdus"][0]["content"]["body"], "early history")

    # -- /state, /state_ids, /event_auth ------------------------------------------------------------

    def test_state_and_state_ids(self):
        alice, tok = self.user()
        room = self.room(tok, "world_readable", name="Readable")
        self.send(tok, room, "one")
        topic = self.state(tok, room, "m.room.topic", {"topic": "first"})
        later = self.state(tok, room, "m.room.topic", {"topic": "second"})
        r = self.fed("GET", FED + "/state_ids/%s?event_id=%s" % (q(room), q(later)))
        self.assertEqual(r.status, 200, r)
        ids = r.json["pdu_ids"]
        # the state *before* the event: the first topic, not the second
        self.assertIn(topic, ids)
        self.assertNotIn(later, ids)
        r2 = self.fed("GET", FED + "/state/%s?event_id=%s" % (q(room), q(later)))
        self.assertEqual(r2.status, 200, r2)
        pdus = {self.event_id_of(p): p for p in r2.json["pdus"]}
        self.assertEqual(sorted(pdus), sorted(ids))
        for p in r2.json["pdus"] + r2.json["auth_chain"]:
            self.assertWirePdu(p)
        types = sorted((p["type"], p["state_key"]) for p in pdus.values())
        for want in (("m.room.create", ""), ("m.room.member", alice), ("m.room.power_levels", ""),
                     ("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.name", ""),
                     ("m.room.topic", "")):
            self.assertIn(want, types)
        # the auth chain holds what authorised that state, by ID and in full
        chain_ids = {self.event_id_of(p) for p in r2.json["auth_chain"]}
        self.assertEqual(chain_ids, set(r.json["auth_chain_ids"]))
        create = [p for p in pdus.values() if p["type"] == "m.room.create"][0]
        self.assertIn(self.event_id_of(create), chain_ids)

    def test_state_errors(self):
        _, tok = self.user()
        room = self.room(tok, "world_readable")
        eid = self.send(tok, room, "x")
        for kind in ("state", "state_ids"):
            self.assertErr(self.fed("GET", FED + "/%s/%s" % (kind, q(room))), 400, "M_MISSING_PARAM")
            self.assertErr(self.fed("GET", FED + "/%s/%s?event_id=nope" % (kind, q(room))), 400, "M_INVALID_PARAM")
            self.assertErr(self.fed("GET", FED + "/%s/%s?event_id=%s" % (kind, q("!nope:" + self.a.server_name),
                                                                         q(eid))), 404, "M_NOT_FOUND")
            self.assertErr(self.fed("GET", FED + "/%s/%s?event_id=%s" % (kind, q(room), q("$" + "B" * 43))),
                           404, "M_NOT_FOUND")
        # an event of another room is unknown in this one
        other = self.room(tok, "world_readable")
        self.assertErr(self.fed("GET", FED + "/state_ids/%s?event_id=%s" % (q(other), q(eid))), 404, "M_NOT_FOUND")
        # a joined room: not for a server without members
        closed = self.room(tok, "joined")
        ceid = self.send(tok, closed, "y")
        self.assertErr(self.fed("GET", FED + "/state_ids/%s?event_id=%s" % (q(closed), q(ceid))), 403,
                       "M_FORBIDDEN")
        self.assertErr(self.fed("GET", FED + "/event_auth/%s/%s" % (q(closed), q(ceid))), 403, "M_FORBIDDEN")

    def test_event_auth(self):
        alice, tok = self.user()
        room = self.room(tok, "world_readable")
        eid = self.send(tok, room, "authorised")
        r = self.fed("GET", FED + "/event_auth/%s/%s" % (q(room), q(eid)))
        self.assertEqual(r.status, 200, r)
        chain = r.json["auth_chain"]
        kinds = sorted((p["type"], p["state_key"]) for p in chain)
        self.assertIn(("m.room.create", ""), kinds)
        self.assertIn(("m.room.member", alice), kinds)
        self.assertIn(("m.room.power_levels", ""), kinds)
        self.assertNotIn(eid, {self.event_id_of(p) for p in chain})
        for p in chain:
            self.assertWirePdu(p)
        # every auth event of every event in the chain is in the chain too
        ids = {self.event_id_of(p) for p in chain}
        for p in chain:
            for a in p["auth_events"]:
                self.assertIn(a, ids)
        self.assertErr(self.fed("GET", FED + "/event_auth/%s/%s" % (q(room), q("$" + "C" * 43))), 404,
                       "M_NOT_FOUND")

    # -- /backfill and /get_missing_events ------------------------------------------------------------

    def test_backfill_redacts_what_the_server_may_not_see(self):
        _, tok = self.user()
        room = self.room(tok, "joined")
        secret = self.send(tok, room, "the secret")
        opened = self.state(tok, room, "m.room.history_visibility", {"history_visibility": "world_readable"})
        public = [self.send(tok, room, "public %d" % i) for i in range(3)]
        r = self.fed("GET", FED + "/backfill/%s?v=%s&limit=100" % (q(room), q(public[-1])))
        self.assertEqual(r.status, 200, r)
        pdus = r.json["pdus"]
        by_id = {self.event_id_of(p): p for p in pdus}
        # newest first, starting with the event asked for
        self.assertEqual(self.event_id_of(pdus[0]), public[-1])
        self.assertEqual([self.event_id_of(p) for p in pdus[:3]], list(reversed(public)))
        for eid in public:
            self.assertTrue(by_id[eid]["content"]["body"].startswith("public"))
            self.assertWirePdu(by_id[eid])
        # the history_visibility change itself is visible (world_readable after it)
        self.assertEqual(by_id[opened]["content"], {"history_visibility": "world_readable"})
        # the message sent while the room was "joined" comes redacted: still signed, content gone
        self.assertIn(secret, by_id)
        self.assertEqual(by_id[secret]["content"], {})
        self.assertWirePdu(by_id[secret], intact=False)
        self.assertNotIn("the secret", json.dumps(pdus))
        # the whole room, down to its create event
        self.assertEqual(pdus[-1]["type"], "m.room.create")
        # the limit counts the events asked for
        r = self.fed("GET", FED + "/backfill/%s?v=%s&limit=2" % (q(room), q(public[-1])))
        self.assertEqual([self.event_id_of(p) for p in r.json["pdus"]], [public[2], public[1]])
        # several starting points
        r = self.fed("GET", FED + "/backfill/%s?v=%s&v=%s&limit=1" % (q(room), q(public[0]), q(public[2])))
        self.assertEqual([self.event_id_of(p) for p in r.json["pdus"]], [public[2]])

    def test_backfill_errors(self):
        _, tok = self.user()
        room = self.room(tok, "world_readable")
        eid = self.send(tok, room, "x")
        self.assertErr(self.fed("GET", FED + "/backfill/%s?limit=5" % q(room)), 400, "M_MISSING_PARAM")
        self.assertErr(self.fed("GET", FED + "/backfill/%s?v=%s" % (q(room), q(eid))), 400, "M_MISSING_PARAM")
        self.assertErr(self.fed("GET", FED + "/backfill/%s?v=%s&limit=many" % (q(room), q(eid))), 400,
                       "M_INVALID_PARAM")
        self.assertErr(self.fed("GET", FED + "/backfill/%s?v=junk&limit=5" % q(room)), 400, "M_INVALID_PARAM")
        self.assertErr(self.fed("GET", FED + "/backfill/%s?v=%s&limit=5" % (q("!nope:" + self.a.server_name),
                                                                            q(eid))), 404, "M_NOT_FOUND")
        # an unknown starting point gives nothing, not an error
        r = self.fed("GET", FED + "/backfill/%s?v=%s&limit=5" % (q(room), q("$" + "D" * 43)))
        self.assertEqual((r.status, r.json["pdus"]), (200, []))
        closed = self.room(tok, "joined")
        ceid = self.send(tok, closed, "y")
        self.assertErr(self.fed("GET", FED + "/backfill/%s?v=%s&limit=5" % (q(closed), q(ceid))), 403,
                       "M_FORBIDDEN")

    def test_get_missing_events(self):
        _, tok = self.user()
        room = self.room(tok, "joined")
        hidden = self.send(tok, room, "hidden")
        self.state(tok, room, "m.room.history_visibility", {"history_visibility": "world_readable"})
        m = [self.send(tok, room, "m%d" % i) for i in range(5)]
        body = {"earliest_events": [m[0]], "latest_events": [m[4]], "limit": 10, "min_depth": 0}
        r = self.fed("POST", FED + "/get_missing_events/" + q(room), body=body)
        self.assertEqual(r.status, 200, r)
        got = [self.event_id_of(p) for p in r.json["events"]]
        self.assertEqual(got, m[1:4])  # oldest first; neither end included
        for p in r.json["events"]:
            self.assertWirePdu(p)
        # the default limit (10) and no earliest events: back to the start, invisible ones redacted
        r = self.fed("POST", FED + "/get_missing_events/" + q(room),
                     body={"earliest_events": [], "latest_events": [m[4]]})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["events"]), 10)
        r = self.fed("POST", FED + "/get_missing_events/" + q(room),
                     body={"earliest_events": [], "latest_events": [m[4]], "limit": 100})
        evs = {self.event_id_of(p): p for p in r.json["events"]}
        self.assertEqual(evs[hidden]["content"], {})
        self.assertEqual(r.json["events"][0]["type"], "m.room.create")
        # a limit
        body["limit"] = 1
        r = self.fed("POST", FED + "/get_missing_events/" + q(room), body=body)
        self.assertEqual([self.event_id_of(p) for p in r.json["events"]], [m[3]])

    def test_get_missing_events_errors(self):
        _, tok = self.user()
        room = self.room(tok, "world_readable")
        eid = self.send(tok, room, "x")
        path = FED + "/get_missing_events/" + q(room)
        self.assertErr(self.fed("POST", path, body={"latest_events": [eid]}, spec=False), 400, "M_MISSING_PARAM")
        self.assertErr(self.fed("POST", path, body={"earliest_events": [], "latest_events": "x"}, spec=False), 400,
                       "M_BAD_JSON")
        self.assertErr(self.fed("POST", path, body={"earliest_events": [], "latest_events": [1]}, spec=False), 400,
                       "M_BAD_JSON")
        self.assertErr(self.fed("POST", path, body={"earliest_events": [], "latest_events": [eid], "limit": "3"},
                                spec=False), 400, "M_BAD_JSON")
        self.assertErr(self.fed("POST", FED + "/get_missing_events/" + q("!nope:" + self.a.server_name),
                                body={"earliest_events": [], "latest_events": [eid]}, spec=False), 404, "M_NOT_FOUND")
        closed = self.room(tok, "joined")
        ceid = self.send(tok, closed, "y")
        self.assertErr(self.fed("POST", FED + "/get_missing_events/" + q(closed),
                                body={"earliest_events": [], "latest_events": [ceid]}, spec=False), 403, "M_FORBIDDEN")

    # -- /timestamp_to_event --------------------------------------------------------------------------

    def test_timestamp_to_event(self):
        _, tok = self.user()
        room = self.room(tok, "world_readable")
        first = self.send(tok, room, "first")
        time.sleep(0.05)
        middle_ts = int(time.time() * 1000)
        time.sleep(0.05)
        second = self.send(tok, room, "second")
        r = self.fed("GET", FED + "/timestamp_to_event/%s?ts=%d&dir=f" % (q(room), middle_ts))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["event_id"], second)
        self.assertGreaterEqual(r.json["origin_server_ts"], middle_ts)
        r = self.fed("GET", FED + "/timestamp_to_event/%s?ts=%d&dir=b" % (q(room), middle_ts))
        self.assertEqual(r.json["event_id"], first)
        r = self.fed("GET", FED + "/timestamp_to_event/%s?ts=%d&dir=f" % (q(room), int(time.time() * 1000) + 60000))
        self.assertErr(r, 404, "M_NOT_FOUND")
        self.assertErr(self.fed("GET", FED + "/timestamp_to_event/%s?dir=f" % q(room), spec=False), 400,
                       "M_MISSING_PARAM")
        self.assertErr(self.fed("GET", FED + "/timestamp_to_event/%s?ts=1&dir=x" % q(room), spec=False), 400,
                       "M_INVALID_PARAM")
        self.assertErr(self.fed("GET", FED + "/timestamp_to_event/%s?ts=x&dir=f" % q(room), spec=False), 400,
                       "M_INVALID_PARAM")
        self.assertErr(self.fed("GET", FED + "/timestamp_to_event/%s?ts=1&dir=f" % q("!nope:x.test")), 404,
                       "M_NOT_FOUND")

    # -- ACLs and authentication ---------------------------------------------------------------------

    def test_server_acl_denies_everywhere(self):
        _, tok = self.user()
        room = self.room(tok, "world_readable")
        eid = self.send(tok, room, "before the ACL")
        self.assertEqual(self.fed("GET", FED + "/event/" + q(eid)).status, 200)
        host = self.fake.server_name.rsplit(":", 1)[0]
        self.state(tok, room, "m.room.server_acl", {"allow": ["*"], "deny": [host], "allow_ip_literals": True})
        paths = [("GET", FED + "/event/" + q(eid), None),
                 ("GET", FED + "/state/%s?event_id=%s" % (q(room), q(eid)), None),
                 ("GET", FED + "/state_ids/%s?event_id=%s" % (q(room), q(eid)), None),
                 ("GET", FED + "/event_auth/%s/%s" % (q(room), q(eid)), None),
                 ("GET", FED + "/backfill/%s?v=%s&limit=3" % (q(room), q(eid)), None),
                 ("POST", FED + "/get_missing_events/" + q(room), {"earliest_events": [], "latest_events": [eid]}),
                 ("GET", FED + "/timestamp_to_event/%s?ts=0&dir=f" % q(room), None)]
        for method, path, body in paths:
            self.assertErr(self.fed(method, path, body=body, spec=False), 403, "M_FORBIDDEN")
        # IP literals refused by allow_ip_literals alone (the fake's name is one)
        room2 = self.room(tok, "world_readable")
        eid2 = self.send(tok, room2, "x")
        self.state(tok, room2, "m.room.server_acl", {"allow": ["*"], "allow_ip_literals": False})
        self.assertErr(self.fed("GET", FED + "/event/" + q(eid2)), 403, "M_FORBIDDEN")
        # and let back in
        self.state(tok, room2, "m.room.server_acl", {"allow": ["*"]})
        self.assertEqual(self.fed("GET", FED + "/event/" + q(eid2)).status, 200)

    def test_non_federating_room_is_closed_to_other_servers(self):
        _, tok = self.user()
        marker = unique("local")
        room = self.room(tok, "world_readable", name="Local %s" % marker, visibility="public",
                         creation_content={"m.federate": False})
        eid = self.send(tok, room, "ours alone")
        self.assertErr(self.fed("GET", FED + "/event/" + q(eid)), 403, "M_FORBIDDEN")
        self.assertErr(self.fed("GET", FED + "/backfill/%s?v=%s&limit=3" % (q(room), q(eid))), 403, "M_FORBIDDEN")
        self.assertErr(self.fed("GET", FED + "/state_ids/%s?event_id=%s" % (q(room), q(eid))), 403, "M_FORBIDDEN")
        r = self.fed("POST", FED + "/publicRooms", body={"filter": {"generic_search_term": marker}})
        self.assertEqual(r.json["chunk"], [])
        self.assertErr(self.fed("GET", FED + "/hierarchy/" + q(room)), 404, "M_NOT_FOUND")

    def test_unsigned_requests_are_refused(self):
        _, tok = self.user()
        room = self.room(tok, "world_readable")
        eid = self.send(tok, room, "x")
        for method, path in (("GET", FED + "/event/" + q(eid)),
                             ("GET", FED + "/state_ids/%s?event_id=%s" % (q(room), q(eid))),
                             ("GET", FED + "/backfill/%s?v=%s&limit=1" % (q(room), q(eid))),
                             ("POST", FED + "/get_missing_events/" + q(room)),
                             ("GET", FED + "/publicRooms"),
                             ("GET", FED + "/hierarchy/" + q(room))):
            r = self.a.request(method, path, body={} if method == "POST" else None)
            self.assertEqual((r.status, r.errcode), (401, "M_UNAUTHORIZED"), (method, path, r))
            forged = 'X-Matrix origin="%s",key="ed25519:1",sig="AAAA"' % self.fake.server_name
            r = self.fed(method, path, body={} if method == "POST" else None, auth=forged, spec=False)
            self.assertErr(r, 401, "M_UNAUTHORIZED")

    # -- /publicRooms ----------------------------------------------------------------------------------

    def test_public_rooms(self):
        _, tok = self.user()
        marker = unique("dir")
        room = self.room(tok, "world_readable", name="Directory %s" % marker, topic="about things",
                         visibility="public")
        hidden = self.room(tok, "shared", name="Unlisted %s" % marker)
        r = self.fed("GET", FED + "/publicRooms")
        self.assertEqual(r.status, 200, r)
        ids = [c["room_id"] for c in r.json["chunk"]]
        self.assertIn(room, ids)
        self.assertNotIn(hidden, ids)
        entry = [c for c in r.json["chunk"] if c["room_id"] == room][0]
        self.assertEqual(entry["name"], "Directory %s" % marker)
        self.assertEqual(entry["topic"], "about things")
        self.assertEqual(entry["num_joined_members"], 1)
        self.assertTrue(entry["world_readable"])
        self.assertEqual(entry["join_rule"], "public")
        # filtered (POST) and paginated
        r = self.fed("POST", FED + "/publicRooms", body={"filter": {"generic_search_term": marker.upper()}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual([c["room_id"] for c in r.json["chunk"]], [room])
        r = self.fed("POST", FED + "/publicRooms", body={"filter": {"room_types": ["m.space"]}})
        self.assertNotIn(room, [c["room_id"] for c in r.json["chunk"]])
        r = self.fed("POST", FED + "/publicRooms", body={"filter": {"room_types": [None]}})
        self.assertIn(room, [c["room_id"] for c in r.json["chunk"]])
        other = self.room(tok, "shared", name="Second %s" % marker, visibility="public")
        r = self.fed("GET", FED + "/publicRooms?limit=1")
        self.assertEqual(len(r.json["chunk"]), 1)
        self.assertIn("next_batch", r.json)
        r2 = self.fed("GET", FED + "/publicRooms?limit=1&since=" + q(r.json["next_batch"]))
        self.assertEqual(len(r2.json["chunk"]), 1)
        self.assertNotEqual(r.json["chunk"][0]["room_id"], r2.json["chunk"][0]["room_id"])
        self.assertIn("prev_batch", r2.json)
        # an ACL that denies the asking server hides the room from it
        host = self.fake.server_name.rsplit(":", 1)[0]
        self.state(tok, other, "m.room.server_acl", {"allow": ["*"], "deny": [host]})
        r = self.fed("POST", FED + "/publicRooms", body={"filter": {"generic_search_term": marker}})
        self.assertEqual([c["room_id"] for c in r.json["chunk"]], [room])
        # a third-party network nobody bridges has no rooms
        r = self.fed("GET", FED + "/publicRooms?third_party_instance_id=irc")
        self.assertEqual(r.json["chunk"], [])
        # errors
        self.assertErr(self.fed("GET", FED + "/publicRooms?limit=x", spec=False), 400, "M_INVALID_PARAM")
        self.assertErr(self.fed("GET", FED + "/publicRooms?since=bogus", spec=False), 400, "M_INVALID_PARAM")
        self.assertErr(self.fed("POST", FED + "/publicRooms", body={"limit": "ten"}, spec=False), 400, "M_BAD_JSON")
        self.assertErr(self.fed("POST", FED + "/publicRooms", body={"limit": -1}, spec=False), 400,
                       "M_INVALID_PARAM")
        self.assertErr(self.fed("POST", FED + "/publicRooms", body={"filter": {"room_types": [1]}}, spec=False),
                       400, "M_BAD_JSON")
        self.assertErr(self.fed("GET", FED + "/publicRooms?include_all_networks=maybe", spec=False), 400,
                       "M_INVALID_PARAM")

    # -- /hierarchy --------------------------------------------------------------------------------------

    def test_hierarchy(self):
        _, tok = self.user()
        space = self.room(tok, "shared", name="Space", creation_content={"type": "m.space"})
        public = self.room(tok, "shared", name="Public child", topic="welcome")
        private = self.room(tok, "shared", name="Private child", preset="private_chat")
        readable = self.room(tok, "world_readable", name="Readable child", preset="private_chat")
        unknown = "!unknown%d:elsewhere.test" % int(time.time())
        via = {"via": [self.a.server_name]}
        self.state(tok, space, "m.space.child", dict(via, order="b"), public)
        self.state(tok, space, "m.space.child", dict(via, order="a", suggested=True), private)
        self.state(tok, space, "m.space.child", dict(via), readable)
        self.state(tok, space, "m.space.child", dict(via), unknown)
        self.state(tok, space, "m.space.child", {}, self.room(tok, "shared"))  # no via: not a link
        r = self.fed("GET", FED + "/hierarchy/" + q(space))
        self.assertEqual(r.status, 200, r)
        root = r.json["room"]
        self.assertEqual(root["room_id"], space)
        self.assertEqual(root["room_type"], "m.space")
        self.assertEqual(root["name"], "Space")
        self.assertIn("room_version", root)
        # ordered by "order": private ("a"), public ("b"); then the others by timestamp, then room ID
        links = root["children_state"]
        self.assertEqual([c["state_key"] for c in links[:2]], [private, public])
        self.assertEqual(sorted(c["state_key"] for c in links[2:]), sorted([readable, unknown]))
        self.assertEqual(links[2:], sorted(links[2:], key=lambda c: (c["origin_server_ts"], c["state_key"])))
        for c in root["children_state"]:
            self.assertEqual(c["type"], "m.space.child")
            self.assertIsInstance(c["origin_server_ts"], int)
        children = {c["room_id"]: c for c in r.json["children"]}
        self.assertEqual(sorted(children), sorted([public, readable]))
        self.assertEqual(children[public]["topic"], "welcome")
        self.assertEqual(r.json["inaccessible_children"], [private])
        # suggested only
        r = self.fed("GET", FED + "/hierarchy/%s?suggested_only=true" % q(space))
        self.assertEqual([c["state_key"] for c in r.json["room"]["children_state"]], [private])
        self.assertEqual(r.json["children"], [])
        # a room the server could not peek or join, or that does not exist: 404
        self.assertErr(self.fed("GET", FED + "/hierarchy/" + q(private)), 404, "M_NOT_FOUND")
        self.assertErr(self.fed("GET", FED + "/hierarchy/" + q("!nope:" + self.a.server_name)), 404, "M_NOT_FOUND")
        self.assertErr(self.fed("GET", FED + "/hierarchy/%s?suggested_only=yes" % q(space), spec=False), 400,
                       "M_INVALID_PARAM")
        # an invited server may peek
        self.state(tok, private, "m.room.member", {"membership": "invite"}, "@x:" + self.fake.server_name)
        self.assertEqual(self.fed("GET", FED + "/hierarchy/" + q(private)).status, 200)


@unittest.skipUnless(HAVE_DEPS, "openssl, python3-signedjson and python3-nacl are needed")
class TwoServers(FedTestCase):
    """B's users join a room of A and read its history from before they joined: B backfills it from A."""

    fed_servers = (("a", "localhost", None), ("b", "ip", None))
    with_fake = False

    def page_all(self, server, token, room, limit=8):
        seen, frm = [], None
        for _ in range(20):
            path = "%s/rooms/%s/messages?dir=b&limit=%d%s" % (V3, q(room), limit, "&from=" + frm if frm else "")
            r = server.request("GET", path, token=token)
            self.assertEqual(r.status, 200, r)
            seen += r.json["chunk"]
            frm = r.json.get("end")
            if frm is None:
                break
        return seen

    def backfills_served(self):
        text = self.a.request("GET", "/metrics").raw.decode()
        prefix = 'axon_http_requests_total{route="/_matrix/federation/v1/backfill/{roomId}",method="GET",status="200"} '
        return sum(float(line[len(prefix):]) for line in text.splitlines() if line.startswith(prefix))

    def test_history_from_before_the_join_comes_from_a(self):
        at = self.a.register(unique("alice"))["access_token"]
        r = self.a.request("POST", V3 + "/createRoom", token=at, body={"preset": "public_chat", "name": "Old room"})
        room = r.json["room_id"]
        for i in range(25):
            r = self.a.request("PUT", V3 + "/rooms/%s/send/m.room.message/h%d" % (q(room), i), token=at,
                               body={"msgtype": "m.text", "body": "history %d" % i})
            self.assertEqual(r.status, 200, r)
        bt = self.b.register(unique("bob"))["access_token"]
        before = self.backfills_served()
        r = self.b.request("POST", V3 + "/join/%s?server_name=%s" % (q(room), q(self.a.server_name)), body={},
                           token=bt)
        self.assertEqual(r.status, 200, r)
        chunk = self.page_all(self.b, bt, room)
        bodies = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
        self.assertEqual(bodies, ["history %d" % i for i in reversed(range(25))])
        self.assertEqual(chunk[-1]["type"], "m.room.create")
        self.assertGreater(self.backfills_served(), before)


def redact_v11(pdu):
    """The redaction algorithm of room versions 11 and 12 (what axon creates by default), for signature checks."""
    keep = ("event_id", "type", "room_id", "sender", "state_key", "content", "hashes", "signatures", "depth",
            "prev_events", "auth_events", "origin_server_ts")
    out = {k: v for k, v in pdu.items() if k in keep}
    content = pdu.get("content", {})
    kept = {
        "m.room.member": ("membership", "join_authorised_via_users_server", "third_party_invite"),
        "m.room.join_rules": ("join_rule", "allow"),
        "m.room.power_levels": ("ban", "events", "events_default", "invite", "kick", "redact", "state_default",
                                "users", "users_default"),
        "m.room.history_visibility": ("history_visibility",),
        "m.room.redaction": ("redacts",),
    }
    t = pdu.get("type")
    if t == "m.room.create":
        out["content"] = dict(content)
    else:
        out["content"] = {k: content[k] for k in kept.get(t, ()) if k in content}
    if t == "m.room.member" and "third_party_invite" in out["content"]:
        out["content"]["third_party_invite"] = {"signed": content["third_party_invite"].get("signed")}
    return out


if __name__ == "__main__":
    main()
