#!/usr/bin/python3
"""Room federation, the resident side (federation/membership.c): a fake remote
server (fedutil.FakeRemote, signing with the spec's key) joins, leaves and
knocks on rooms of axon through make_*/send_*, and invites axon's users to
its own rooms.  Every answer's events are checked against axon's published
key; every refusal against the spec's errcode."""

import copy
import unittest

import signedjson.key

from axontest import main, spec_errors, unique
from fedutil import (FakeRemote, RemoteRoom, TestCA, event_id, fed_server, fetch_keys_plain, sign_event,
                     verify_doc, verify_event)
from roomutil import V3, q

FED1 = "/_matrix/federation/v1"
FED2 = "/_matrix/federation/v2"


class ResidentSide(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()
        cls.cert, cls.key = cls.ca.leaf("node", "DNS:localhost,IP:127.0.0.1")
        cls.a = fed_server(cls.ca, cls.cert, cls.key, "localhost").start()
        cls.fake = FakeRemote(cls.cert, cls.key)
        cls.fake.key_sources[cls.a.server_name] = cls.a.port
        cls.a_keys = verify_doc(fetch_keys_plain(cls.a.port), cls.a.server_name)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.a.stop()
        finally:
            cls.a.cleanup()
            cls.fake.stop()
            cls.ca.cleanup()

    # -- helpers --

    def user(self):
        u = self.a.register(unique())
        return u["user_id"], u["access_token"]

    def room(self, token, **body):
        r = self.a.request("POST", V3 + "/createRoom", body=body, token=token)
        self.assertEqual(r.status, 200, r.json)
        return r.json["room_id"]

    def remote_user(self):
        return "@%s:%s" % (unique("bob"), self.fake.server_name)

    def fed(self, method, path, body=None):
        return self.fake.send(self.a, method, path, body, ca=self.ca)

    def assertSpec(self, method, path, status, body):
        self.assertEqual(spec_errors(method, path, status, body), [], body)

    def make_and_send(self, room, user, membership, version, send_path=None):
        """make_<membership>, fill and sign the template, send_<membership>; returns (event_id, event, status, body)."""
        path = "%s/make_%s/%s/%s?ver=%s" % (FED1, membership, q(room), q(user), version)
        status, tmpl = self.fed("GET", path)
        self.assertEqual(status, 200, tmpl)
        self.assertSpec("GET", path, status, tmpl)
        self.assertEqual(tmpl["room_version"], version)
        ev = tmpl["event"]
        self.assertEqual((ev["type"], ev["state_key"], ev["sender"], ev["content"]["membership"]),
                         ("m.room.member", user, user, membership))
        ev["origin_server_ts"] = ev.get("origin_server_ts") or 0
        sign_event(ev, version, self.fake.server_name, self.fake.signing_key)
        eid = event_id(ev, version)
        path = send_path or "%s/send_%s/%s/%s" % (FED2 if membership != "knock" else FED1, membership, q(room),
                                                   q(eid))
        status, body = self.fed("PUT", path, ev)
        if status == 200:
            self.assertSpec("PUT", path, status, body)
        return eid, ev, status, body

    def timeline_types(self, token, room):
        r = self.a.request("GET", V3 + "/rooms/%s/messages?dir=b&limit=20" % q(room), token=token)
        return [(e["type"], e.get("state_key"), e["content"].get("membership")) for e in r.json["chunk"]]

    # -- joins --

    def test_remote_join_v10_and_v12(self):
        for version in ("10", "12"):
            alice, at = self.user()
            room = self.room(at, preset="public_chat", room_version=version, name="Public " + version)
            bob = self.remote_user()
            eid, ev, status, body = self.make_and_send(room, bob, "join", version)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["origin"], self.a.server_name)
            self.assertFalse(body["members_omitted"])
            self.assertIn(self.a.server_name, body["servers_in_room"])
            state = {(e["type"], e["state_key"]): e for e in body["state"]}
            for key in (("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", ""),
                        ("m.room.member", alice), ("m.room.name", "")):
                self.assertIn(key, state, version)
            self.assertNotIn(("m.room.member", bob), state)  # the state *before* the join
            chain_ids = {event_id(e, version) for e in body["auth_chain"]}
            self.assertIn(event_id(state[("m.room.create", "")], version), chain_ids)
            for e in body["state"] + body["auth_chain"]:
                self.assertNotIn("unsigned", e)
                verify_event(e, version, self.a.server_name, next(iter(self.a_keys.values())))
            # the room now has bob: alice sees it, and the membership lists say so
            self.assertIn(("m.room.member", bob, "join"), self.timeline_types(at, room))
            r = self.a.request("GET", V3 + "/rooms/%s/joined_members" % q(room), token=at)
            self.assertEqual(set(r.json["joined"]), {alice, bob})
            r = self.a.request("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(eid)), token=at)
            self.assertEqual(r.status, 200, r.json)
            # sending the same join again changes nothing
            status, body = self.fed("PUT", "%s/send_join/%s/%s" % (FED2, q(room), q(eid)), ev)
            self.assertEqual(status, 200, body)
            types = self.timeline_types(at, room)
            self.assertEqual(types.count(("m.room.member", bob, "join")), 1)

    def test_v1_send_join_answer_shape(self):
        alice, at = self.user()
        room = self.room(at, preset="public_chat", room_version="10")
        bob2 = self.remote_user()
        status, tmpl = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(room), q(bob2)))
        ev = sign_event(tmpl["event"], "10", self.fake.server_name, self.fake.signing_key)
        status, body = self.fed("PUT", "%s/send_join/%s/%s" % (FED1, q(room), q(event_id(ev, "10"))), ev)
        self.assertEqual(status, 200, body)
        self.assertEqual(body[0], 200)
        self.assertIn("state", body[1])

    def test_make_join_refusals(self):
        alice, at = self.user()
        public = self.room(at, preset="public_chat", room_version="10")
        private = self.room(at, preset="private_chat", room_version="10")
        bob = self.remote_user()
        # a room version the joining server does not speak
        status, body = self.fed("GET", "%s/make_join/%s/%s?ver=1&ver=2" % (FED1, q(public), q(bob)))
        self.assertEqual((status, body["errcode"], body["room_version"]), (400, "M_INCOMPATIBLE_ROOM_VERSION", "10"))
        # a user of another server
        status, body = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(public), q("@x:elsewhere.example")))
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        # an invite-only room
        status, body = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(private), q(bob)))
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        # an unknown room
        status, body = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q("!nope:" + self.a.server_name),
                                                                       q(bob)))
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        # without a signature
        status, body = self.fake.send(self.a, "GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(public), q(bob)),
                                      auth="", ca=self.ca)
        self.assertEqual((status, body["errcode"]), (401, "M_UNAUTHORIZED"))

    def test_send_join_refusals_change_nothing(self):
        alice, at = self.user()
        room = self.room(at, preset="public_chat", room_version="10")
        before = self.timeline_types(at, room)
        bob = self.remote_user()
        status, tmpl = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(room), q(bob)))
        self.assertEqual(status, 200, tmpl)

        def send(ev, eid=None, path=FED2 + "/send_join"):
            eid = eid or event_id(ev, "10")
            return self.fed("PUT", "%s/%s/%s" % (path, q(room), q(eid)), ev)

        # a leave through send_join (Complement: TestCannotSendNonJoinViaSendJoinV2)
        leave = copy.deepcopy(tmpl["event"])
        leave["content"]["membership"] = "leave"
        sign_event(leave, "10", self.fake.server_name, self.fake.signing_key)
        status, body = send(leave)
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        # a join through send_leave
        join = sign_event(copy.deepcopy(tmpl["event"]), "10", self.fake.server_name, self.fake.signing_key)
        status, body = send(join, path=FED2 + "/send_leave")
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        # an event ID that is not the event's
        status, body = send(join, eid="$notthiseventnotthiseventnotthiseventnotthis")
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        # a bad signature
        forged = copy.deepcopy(join)
        forged["signatures"][self.fake.server_name] = {self.fake.key_id: "A" * 86}
        status, body = send(forged)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        # unsigned
        unsigned = copy.deepcopy(join)
        del unsigned["signatures"]
        status, body = send(unsigned)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        # content changed after signing: hashes no longer match
        tampered = copy.deepcopy(join)
        tampered["content"]["displayname"] = "sneaky"
        status, body = send(tampered)
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        # a user of a server other than the sender's
        other = copy.deepcopy(tmpl["event"])
        other["sender"] = other["state_key"] = "@mallory:elsewhere.example"
        sign_event(other, "10", self.fake.server_name, self.fake.signing_key)
        status, body = send(other)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        # malformed body
        status, body = self.fed("PUT", "%s/send_join/%s/%s" % (FED2, q(room), q(event_id(join, "10"))), None)
        self.assertEqual(status, 400)
        self.assertEqual(self.timeline_types(at, room), before)
        r = self.a.request("GET", V3 + "/rooms/%s/joined_members" % q(room), token=at)
        self.assertEqual(list(r.json["joined"]), [alice])

    def test_banned_user_cannot_send_join(self):
        alice, at = self.user()
        room = self.room(at, preset="public_chat", room_version="10")
        bob = self.remote_user()
        status, tmpl = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(room), q(bob)))
        self.assertEqual(status, 200)
        r = self.a.request("POST", V3 + "/rooms/%s/ban" % q(room), body={"user_id": bob}, token=at)
        self.assertEqual(r.status, 200, r.json)
        # the template was fine when made, the ban came after: the join is refused now
        ev = sign_event(tmpl["event"], "10", self.fake.server_name, self.fake.signing_key)
        status, body = self.fed("PUT", "%s/send_join/%s/%s" % (FED2, q(room), q(event_id(ev, "10"))), ev)
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(room), q(bob)))
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_leave_after_join(self):
        alice, at = self.user()
        room = self.room(at, preset="public_chat", room_version="11")
        bob = self.remote_user()
        _, _, status, body = self.make_and_send(room, bob, "join", "11")
        self.assertEqual(status, 200, body)
        _, _, status, body = self.make_and_send(room, bob, "leave", "11")
        self.assertEqual((status, body), (200, {}))
        self.assertEqual(self.timeline_types(at, room)[0], ("m.room.member", bob, "leave"))
        r = self.a.request("GET", V3 + "/rooms/%s/joined_members" % q(room), token=at)
        self.assertEqual(list(r.json["joined"]), [alice])

    def test_knock(self):
        alice, at = self.user()
        room = self.room(at, room_version="10", name="Knock here",
                         initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                         "content": {"join_rule": "knock"}}])
        bob = self.remote_user()
        _, _, status, body = self.make_and_send(room, bob, "knock", "10")
        self.assertEqual(status, 200, body)
        names = [e["content"].get("name") for e in body["knock_room_state"] if e["type"] == "m.room.name"]
        self.assertEqual(names, ["Knock here"])
        self.assertEqual(self.timeline_types(at, room)[0], ("m.room.member", bob, "knock"))
        # knocking on a public room is not allowed
        public = self.room(at, preset="public_chat", room_version="10")
        status, body = self.fed("GET", "%s/make_knock/%s/%s?ver=10" % (FED1, q(public), q(self.remote_user())))
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))

    # -- invites of axon's users --

    def invite_body(self, rr, invitee, version):
        eid, ev = rr.make(rr.creator, "m.room.member", {"membership": "invite"}, state_key=invitee)
        return eid, ev, {"event": ev, "room_version": version, "invite_room_state": rr.stripped()}

    def remote_room(self, version):
        creator = self.remote_user()
        rr = RemoteRoom(self.fake, version, creator)
        rr.creator = creator
        rr.make(creator, "m.room.member", {"membership": "join"}, state_key=creator)
        rr.make(creator, "m.room.power_levels", {"users": {creator: 100}} if int(version) < 12 else {"users": {}},
                state_key="")
        rr.make(creator, "m.room.join_rules", {"join_rule": "invite"}, state_key="")
        rr.make(creator, "m.room.name", {"name": "Over there"}, state_key="")
        return rr

    def test_invite_of_our_user(self):
        for version in ("10", "12"):
            alice, at = self.user()
            since = self.a.request("GET", V3 + "/sync?timeout=0&set_presence=offline", token=at).json["next_batch"]
            rr = self.remote_room(version)
            eid, ev, body = self.invite_body(rr, alice, version)
            path = "%s/invite/%s/%s" % (FED2, q(rr.room_id), q(eid))
            status, answer = self.fed("PUT", path, body)
            self.assertEqual(status, 200, answer)
            self.assertSpec("PUT", path, status, answer)
            signed = answer["event"]
            verify_event(signed, version, self.a.server_name, next(iter(self.a_keys.values())))
            verify_event(signed, version, self.fake.server_name, signedjson.key.get_verify_key(self.fake.signing_key))
            self.assertEqual(event_id(signed, version), eid)
            s = self.a.request("GET", V3 + "/sync?timeout=0&set_presence=offline&since=" + since, token=at).json
            invite = s["rooms"]["invite"][rr.room_id]["invite_state"]["events"]
            self.assertIn(("m.room.name", "Over there"),
                          [(e["type"], e["content"].get("name")) for e in invite])
            self.assertIn(("m.room.member", alice, "invite"),
                          [(e["type"], e.get("state_key"), e["content"].get("membership")) for e in invite])

    def test_invite_refusals(self):
        alice, at = self.user()
        rr = self.remote_room("10")
        # an unknown user of ours
        eid, ev, body = self.invite_body(rr, "@nobody:" + self.a.server_name, "10")
        status, answer = self.fed("PUT", "%s/invite/%s/%s" % (FED2, q(rr.room_id), q(eid)), body)
        self.assertEqual((status, answer["errcode"]), (403, "M_FORBIDDEN"))
        # a user of another server
        eid, ev, body = self.invite_body(rr, "@carol:elsewhere.example", "10")
        status, answer = self.fed("PUT", "%s/invite/%s/%s" % (FED2, q(rr.room_id), q(eid)), body)
        self.assertEqual((status, answer["errcode"]), (400, "M_BAD_JSON"))
        # an unsupported room version
        eid, ev, body = self.invite_body(rr, alice, "10")
        body["room_version"] = "999"
        status, answer = self.fed("PUT", "%s/invite/%s/%s" % (FED2, q(rr.room_id), q(eid)), body)
        self.assertEqual((status, answer["errcode"]), (400, "M_INCOMPATIBLE_ROOM_VERSION"))
        # a forged signature
        eid, ev, body = self.invite_body(rr, alice, "10")
        ev["signatures"][self.fake.server_name] = {self.fake.key_id: "B" * 86}
        status, answer = self.fed("PUT", "%s/invite/%s/%s" % (FED2, q(rr.room_id), q(eid)), body)
        self.assertEqual((status, answer["errcode"]), (403, "M_FORBIDDEN"))
        # missing fields
        status, answer = self.fed("PUT", "%s/invite/%s/%s" % (FED2, q(rr.room_id), q(eid)), {"event": ev})
        self.assertEqual((status, answer["errcode"]), (400, "M_MISSING_PARAM"))
        s = self.a.request("GET", V3 + "/sync?timeout=0&set_presence=offline", token=at).json
        self.assertNotIn("invite", s.get("rooms", {}))


class TwoServers(unittest.TestCase):
    """Users of axon B joining, knocking on, being invited to and leaving rooms of axon A."""

    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()
        cls.cert, cls.key = cls.ca.leaf("node", "DNS:localhost,IP:127.0.0.1")
        cls.a = fed_server(cls.ca, cls.cert, cls.key, "localhost").start()
        cls.b = fed_server(cls.ca, cls.cert, cls.key, "ip").start()

    @classmethod
    def tearDownClass(cls):
        try:
            for s in (cls.a, cls.b):
                s.stop()
        finally:
            cls.a.cleanup()
            cls.b.cleanup()
            cls.ca.cleanup()

    def user(self, server):
        u = server.register(unique())
        return u["user_id"], u["access_token"]

    def sync(self, server, token, since=None):
        path = V3 + "/sync?timeout=0&set_presence=offline" + ("&since=" + since if since else "")
        r = server.request("GET", path, token=token)
        self.assertEqual(r.status, 200, r.json)
        return r.json

    def joined(self, server, token, room):
        r = server.request("GET", V3 + "/rooms/%s/joined_members" % q(room), token=token)
        self.assertEqual(r.status, 200, r.json)
        return set(r.json["joined"])

    def test_join_by_room_id_and_by_alias(self):
        alice, at = self.user(self.a)
        alias_name = unique("pub")
        r = self.a.request("POST", V3 + "/createRoom", token=at,
                           body={"preset": "public_chat", "name": "Room A", "room_alias_name": alias_name})
        room = r.json["room_id"]
        bob, bt = self.user(self.b)
        r = self.b.request("POST", V3 + "/join/%s?server_name=%s" % (q(room), q(self.a.server_name)), body={},
                           token=bt)
        self.assertEqual((r.status, r.json), (200, {"room_id": room}))
        self.assertEqual(self.joined(self.a, at, room), {alice, bob})
        s = self.sync(self.b, bt)
        joined = s["rooms"]["join"][room]
        events = joined["state"]["events"] + joined["timeline"]["events"]
        self.assertIn("Room A", [e["content"].get("name") for e in events if e["type"] == "m.room.name"])
        self.assertIn(bob, [e["state_key"] for e in events if e["type"] == "m.room.member"])
        self.assertEqual(self.joined(self.b, bt, room), {alice, bob})
        # by alias, with no hint at all
        carol, ct = self.user(self.b)
        alias = "#%s:%s" % (alias_name, self.a.server_name)
        r = self.b.request("POST", V3 + "/join/" + q(alias), body={}, token=ct)
        self.assertEqual((r.status, r.json), (200, {"room_id": room}))
        self.assertEqual(self.joined(self.a, at, room), {alice, bob, carol})
        # the profile went along
        r = self.a.request("GET", V3 + "/rooms/%s/state/m.room.member/%s" % (q(room), q(carol)), token=at)
        self.assertEqual(r.json["membership"], "join")

    def test_refusals_are_passed_on(self):
        alice, at = self.user(self.a)
        private = self.a.request("POST", V3 + "/createRoom", token=at, body={"preset": "private_chat"}).json["room_id"]
        dave, dt = self.user(self.b)
        r = self.b.request("POST", V3 + "/join/%s?via=%s" % (q(private), q(self.a.server_name)), body={}, token=dt)
        self.assertEqual((r.status, r.json["errcode"]), (403, "M_FORBIDDEN"))
        self.assertNotIn("rooms", self.sync(self.b, dt))
        # a room nobody can tell us about
        r = self.b.request("POST", V3 + "/join/" + q("!unknownunknownunknownunknownunknownunknown1"), body={},
                           token=dt)
        self.assertEqual((r.status, r.json["errcode"]), (404, "M_NOT_FOUND"))
        r = self.b.request("POST", V3 + "/join/" + q("#nope:" + self.a.server_name), body={}, token=dt)
        self.assertEqual((r.status, r.json["errcode"]), (404, "M_NOT_FOUND"))

    def test_invite_then_reject_or_accept(self):
        alice, at = self.user(self.a)
        room = self.a.request("POST", V3 + "/createRoom", token=at,
                              body={"preset": "private_chat", "name": "Private A"}).json["room_id"]
        erin, et = self.user(self.b)
        frank, ft = self.user(self.b)
        since_e = self.sync(self.b, et)["next_batch"]
        for who in (erin, frank):
            r = self.a.request("POST", V3 + "/rooms/%s/invite" % q(room), body={"user_id": who}, token=at)
            self.assertEqual((r.status, r.json), (200, {}))
        s = self.sync(self.b, et, since_e)
        invite = s["rooms"]["invite"][room]["invite_state"]["events"]
        self.assertIn("Private A", [e["content"].get("name") for e in invite])
        # erin declines: her leave goes to A through the inviter's server
        r = self.b.request("POST", V3 + "/rooms/%s/leave" % q(room), body={"reason": "no thanks"}, token=et)
        self.assertEqual((r.status, r.json), (200, {}))
        r = self.a.request("GET", V3 + "/rooms/%s/state/m.room.member/%s" % (q(room), q(erin)), token=at)
        self.assertEqual((r.json["membership"], r.json.get("reason")), ("leave", "no thanks"))
        s = self.sync(self.b, et, s["next_batch"])
        self.assertIn(room, s["rooms"].get("leave", {}))
        # frank accepts: no hint needed, the invite says where to go
        r = self.b.request("POST", V3 + "/rooms/%s/join" % q(room), body={}, token=ft)
        self.assertEqual((r.status, r.json), (200, {"room_id": room}))
        self.assertEqual(self.joined(self.a, at, room), {alice, frank})
        # a user B does not have: B refuses, A says so
        r = self.a.request("POST", V3 + "/rooms/%s/invite" % q(room),
                           body={"user_id": "@nobody:" + self.b.server_name}, token=at)
        self.assertEqual((r.status, r.json["errcode"]), (403, "M_FORBIDDEN"))

    def test_knock(self):
        alice, at = self.user(self.a)
        room = self.a.request("POST", V3 + "/createRoom", token=at, body={
            "name": "Knock A", "initial_state": [{"type": "m.room.join_rules", "state_key": "",
                                                  "content": {"join_rule": "knock"}}]}).json["room_id"]
        gina, gt = self.user(self.b)
        r = self.b.request("POST", V3 + "/knock/%s?via=%s" % (q(room), q(self.a.server_name)),
                           body={"reason": "let me in"}, token=gt)
        self.assertEqual((r.status, r.json), (200, {"room_id": room}))
        r = self.a.request("GET", V3 + "/rooms/%s/state/m.room.member/%s" % (q(room), q(gina)), token=at)
        self.assertEqual((r.json["membership"], r.json.get("reason")), ("knock", "let me in"))
        s = self.sync(self.b, gt)
        state = s["rooms"]["knock"][room]["knock_state"]["events"]
        self.assertIn("Knock A", [e["content"].get("name") for e in state])


if __name__ == "__main__":
    main()
