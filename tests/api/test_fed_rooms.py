#!/usr/bin/python3
"""Room federation, the resident side (federation/membership.c): a fake remote
server (fedutil.FakeRemote, signing with the spec's key) joins, leaves and
knocks on rooms of axon through make_*/send_*, and invites axon's users to
its own rooms.  Every answer's events are checked against axon's published
key; every refusal against the spec's errcode."""

import copy
import threading
import time

import signedjson.key

from axontest import main, spec_errors, unique
from fedutil import (FedTestCase, RemoteRoom, event_id, fetch_keys_plain, serve_room,
                     sign_event, verify_doc, verify_event)
from roomutil import V3, q

FED1 = "/_matrix/federation/v1"
FED2 = "/_matrix/federation/v2"


class ResidentSide(FedTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.a_keys = verify_doc(fetch_keys_plain(cls.a.port), cls.a.server_name)

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


class TwoServers(FedTestCase):
    """Users of axon B joining, knocking on, being invited to and leaving rooms of axon A."""

    fed_servers = (("a", "localhost", None), ("b", "ip", None))
    with_fake = False

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


class Transactions(FedTestCase):
    """PUT /send from a fake remote whose user joined a room of axon (federation/send.c)."""

    def fed(self, method, path, body=None):
        return self.fake.send(self.a, method, path, body, ca=self.ca)

    def setUp(self):
        """alice's public room on axon, which bob of the fake server has joined."""
        u = self.a.register(unique())
        self.alice, self.at = u["user_id"], u["access_token"]
        self.room = self.a.request("POST", V3 + "/createRoom", token=self.at,
                                   body={"preset": "public_chat", "room_version": "10"}).json["room_id"]
        self.bob = "@%s:%s" % (unique("bob"), self.fake.server_name)
        status, tmpl = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(self.room), q(self.bob)))
        self.assertEqual(status, 200, tmpl)
        join = sign_event(tmpl["event"], "10", self.fake.server_name, self.fake.signing_key)
        self.join_id = event_id(join, "10")
        status, body = self.fed("PUT", "%s/send_join/%s/%s" % (FED2, q(self.room), q(self.join_id)), join)
        self.assertEqual(status, 200, body)
        state = {(e["type"], e["state_key"]): event_id(e, "10") for e in body["state"]}
        self.state_events = body["state"] + [join]
        self.auth_chain = body["auth_chain"]
        self.auth = {"create": state[("m.room.create", "")], "pl": state[("m.room.power_levels", "")],
                     "bob": self.join_id}
        self.last = [self.join_id]
        self.depth = tmpl["event"]["depth"]
        self.since = self.sync()["next_batch"]

    def sync(self, since=None):
        path = V3 + "/sync?timeout=0&set_presence=offline" + ("&since=" + since if since else "")
        return self.a.request("GET", path, token=self.at).json

    def pdu(self, type_, content, state_key=None, prev=None, auth=None, sender=None):
        self.depth += 1
        ev = {"type": type_, "sender": sender or self.bob, "content": content, "room_id": self.room,
              "origin": self.fake.server_name, "origin_server_ts": int(time.time() * 1000), "depth": self.depth,
              "prev_events": prev if prev is not None else list(self.last),
              "auth_events": auth if auth is not None else [self.auth["create"], self.auth["pl"], self.auth["bob"]]}
        if state_key is not None:
            ev["state_key"] = state_key
        sign_event(ev, "10", self.fake.server_name, self.fake.signing_key)
        return event_id(ev, "10"), ev

    def send(self, pdus, edus=(), txn=None, origin=None):
        txn = txn or unique("txn")
        path = "%s/send/%s" % (FED1, txn)
        body = {"origin": origin or self.fake.server_name, "origin_server_ts": int(time.time() * 1000),
                "pdus": list(pdus), "edus": list(edus)}
        return self.fed("PUT", path, body)

    def messages(self):
        r = self.a.request("GET", V3 + "/rooms/%s/messages?dir=b&limit=30" % q(self.room), token=self.at)
        return [e["event_id"] for e in r.json["chunk"]]

    def test_messages_arrive_once_and_wake_sync(self):
        eid, ev = self.pdu("m.room.message", {"msgtype": "m.text", "body": "hello from afar"})
        woke = {}

        def poll():
            path = V3 + "/sync?timeout=10000&set_presence=offline&since=" + self.since
            woke["r"] = self.a.request("GET", path, token=self.at)

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.3)
        txn = unique("txn")
        status, body = self.send([ev], txn=txn)
        th.join()
        self.assertEqual((status, body), (200, {"pdus": {eid: {}}}))
        self.assertEqual(spec_errors("PUT", FED1 + "/send/" + txn, status, body), [])
        timeline = woke["r"].json["rooms"]["join"][self.room]["timeline"]["events"]
        self.assertEqual([(e["event_id"], e["content"]["body"]) for e in timeline], [(eid, "hello from afar")])
        # the same transaction again: the same answer, the event still once
        status, again = self.send([ev], txn=txn)
        self.assertEqual((status, again), (200, body))
        self.assertEqual(self.messages().count(eid), 1)
        # the same event in another transaction: fine, still once
        status, body = self.send([ev])
        self.assertEqual((status, body), (200, {"pdus": {eid: {}}}))
        self.assertEqual(self.messages().count(eid), 1)

    def test_bad_pdus_are_reported_and_change_nothing(self):
        before = self.messages()
        pl_id, pl = self.pdu("m.room.power_levels", {"users": {self.bob: 100}}, state_key="")
        forged_id, forged = self.pdu("m.room.message", {"body": "forged"})
        forged["signatures"][self.fake.server_name] = {self.fake.key_id: "C" * 86}
        stranger_id, stranger = self.pdu("m.room.message", {"body": "who am I"},
                                         sender="@stranger:" + self.fake.server_name,
                                         auth=[self.auth["create"], self.auth["pl"]])
        other_room = dict(forged, room_id="!elsewhere:" + self.fake.server_name)
        status, body = self.send([pl, forged, stranger, other_room])
        self.assertEqual(status, 200, body)
        for eid in (pl_id, forged_id, stranger_id):
            self.assertIn("error", body["pdus"][eid], eid)
        self.assertEqual(len(body["pdus"]), 4)
        self.assertEqual(self.messages(), before)
        r = self.a.request("GET", V3 + "/rooms/%s/state/m.room.power_levels" % q(self.room), token=self.at)
        self.assertNotIn(self.bob, r.json["users"])

    def test_server_acl_shuts_the_origin_out(self):
        acl = {"allow": ["*"], "deny": [self.fake.server_name.split(":")[0]], "allow_ip_literals": True}
        r = self.a.request("PUT", V3 + "/rooms/%s/state/m.room.server_acl" % q(self.room), body=acl, token=self.at)
        self.assertEqual(r.status, 200, r.json)
        before = self.messages()
        eid, ev = self.pdu("m.room.message", {"body": "denied"})
        typing = {"edu_type": "m.typing", "content": {"room_id": self.room, "user_id": self.bob, "typing": True}}
        status, body = self.send([ev], [typing])
        self.assertEqual(status, 200, body)
        self.assertIn("error", body["pdus"][eid])
        self.assertEqual(self.messages(), before)
        s = self.sync(self.since)
        eph = s.get("rooms", {}).get("join", {}).get(self.room, {}).get("ephemeral", {}).get("events", [])
        self.assertEqual([e for e in eph if e["type"] == "m.typing" and e["content"]["user_ids"]], [])
        other = "@%s:%s" % (unique("eve"), self.fake.server_name)
        status, body = self.fed("GET", "%s/make_join/%s/%s?ver=10" % (FED1, q(self.room), q(other)))
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))

    def test_transaction_refusals(self):
        _, ev = self.pdu("m.room.message", {"body": "x"})
        status, body = self.send([ev], origin="someone.else.example")
        self.assertEqual((status, body["errcode"]), (403, "M_FORBIDDEN"))
        status, body = self.send([ev] * 51)
        self.assertEqual((status, body["errcode"]), (400, "M_BAD_JSON"))
        status, body = self.fed("PUT", FED1 + "/send/" + unique("txn"), {"origin": self.fake.server_name})
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))
        status, body = self.fake.send(self.a, "PUT", FED1 + "/send/x", {"origin": self.fake.server_name, "pdus": []},
                                      auth="", ca=self.ca)
        self.assertEqual((status, body["errcode"]), (401, "M_UNAUTHORIZED"))

    def test_missing_events_are_fetched(self):
        # bob sent A and B, but only C reaches axon: axon asks for what lies between
        a_id, a = self.pdu("m.room.message", {"body": "A"})
        self.last = [a_id]
        b_id, b = self.pdu("m.room.message", {"body": "B"})
        self.last = [b_id]
        c_id, c = self.pdu("m.room.message", {"body": "C"})
        asked = []

        def missing(method, url, body, room):
            asked.append(body)
            return 200, {"events": [a, b]}

        self.fake.routes[r"/_matrix/federation/v1/get_missing_events/(.+)"] = missing
        try:
            status, body = self.send([c])
        finally:
            del self.fake.routes[r"/_matrix/federation/v1/get_missing_events/(.+)"]
        self.assertEqual((status, body), (200, {"pdus": {c_id: {}}}))
        self.assertEqual(asked[0]["latest_events"], [c_id])
        self.assertIn(self.join_id, asked[0]["earliest_events"])
        self.assertEqual(self.messages()[:3], [c_id, b_id, a_id])

    def test_gap_filled_with_state(self):
        # D's history cannot be had: axon takes the state before D instead
        x_id, x = self.pdu("m.room.message", {"body": "lost"})
        self.last = [x_id]
        d_id, d = self.pdu("m.room.message", {"body": "D"})
        state_asked = []

        def missing(method, url, body, room):
            return 200, {"events": []}

        def state(method, url, body, room):
            state_asked.append(url.query)
            return 200, {"pdus": [], "auth_chain": []}

        self.fake.routes[r"/_matrix/federation/v1/get_missing_events/(.+)"] = missing
        self.fake.routes[r"/_matrix/federation/v1/state/(.+)"] = state
        try:
            status, body = self.send([d])
        finally:
            self.fake.routes.clear()
        self.assertEqual(status, 200, body)
        self.assertIn("event_id=" + q(d_id), state_asked[0])
        # an empty state cannot let D in: it is reported, not taken
        self.assertIn("error", body["pdus"][d_id])
        self.assertNotIn(d_id, self.messages())

    def test_gap_filled_with_the_state_before(self):
        x_id, x = self.pdu("m.room.message", {"body": "lost for good"})
        self.last = [x_id]
        d_id, d = self.pdu("m.room.message", {"body": "after the gap"})
        self.fake.routes[r"/_matrix/federation/v1/get_missing_events/(.+)"] = lambda *a: (200, {"events": []})
        self.fake.routes[r"/_matrix/federation/v1/state/(.+)"] = \
            lambda *a: (200, {"pdus": self.state_events, "auth_chain": self.auth_chain})
        try:
            status, body = self.send([d])
        finally:
            self.fake.routes.clear()
        self.assertEqual((status, body), (200, {"pdus": {d_id: {}}}))
        self.assertEqual(self.messages()[0], d_id)
        self.assertNotIn(x_id, self.messages())
        # the room goes on: alice's reply builds on bob's event
        r = self.a.request("PUT", V3 + "/rooms/%s/send/m.room.message/after-gap" % q(self.room), token=self.at,
                           body={"msgtype": "m.text", "body": "welcome back"})
        self.assertEqual(r.status, 200, r.json)

    def test_edus(self):
        s0 = self.since
        typing = {"edu_type": "m.typing", "content": {"room_id": self.room, "user_id": self.bob, "typing": True}}
        receipt = {"edu_type": "m.receipt", "content": {self.room: {"m.read": {
            self.bob: {"event_ids": [self.join_id], "data": {"ts": 1234}}}}}}
        presence = {"edu_type": "m.presence", "content": {"push": [
            {"user_id": self.bob, "presence": "online", "last_active_ago": 5000, "currently_active": True}]}}
        devices = self.a.request("GET", V3 + "/devices", token=self.at).json["devices"]
        to_device = {"edu_type": "m.direct_to_device", "content": {
            "sender": self.bob, "type": "m.room_key_request", "message_id": unique("msg"),
            "messages": {self.alice: {devices[0]["device_id"]: {"hello": "there"}}}}}
        spoofed = {"edu_type": "m.typing", "content": {"room_id": self.room, "user_id": self.alice, "typing": True}}
        status, body = self.send([], [typing, receipt, presence, to_device, spoofed])
        self.assertEqual((status, body), (200, {"pdus": {}}))
        s = self.sync(s0)
        eph = s["rooms"]["join"][self.room]["ephemeral"]["events"]
        typing_now = [e["content"]["user_ids"] for e in eph if e["type"] == "m.typing"]
        self.assertEqual(typing_now, [[self.bob]])  # alice cannot be made to type by another server
        receipts = [e["content"] for e in eph if e["type"] == "m.receipt"]
        self.assertEqual(receipts[0][self.join_id]["m.read"][self.bob]["ts"], 1234)
        self.assertIn(self.bob, [e["sender"] for e in s["presence"]["events"]])
        self.assertEqual([(e["sender"], e["content"]) for e in s["to_device"]["events"]],
                         [(self.bob, {"hello": "there"})])
        # the same to-device message again is not delivered twice
        status, body = self.send([], [to_device])
        s2 = self.sync(s["next_batch"])
        self.assertNotIn("to_device", s2)


class JoiningElsewhere(FedTestCase):
    """An axon user joining a room whose resident server is the fake remote, then paging back
    through the history from before the join (federation/join.c, backfill.c)."""

    def tearDown(self):
        self.fake.routes.clear()

    def remote_room(self, version, history, messages):
        creator = "@carol:%s" % self.fake.server_name
        rr = RemoteRoom(self.fake, version, creator)
        rr.make(creator, "m.room.member", {"membership": "join"}, state_key=creator)
        rr.make(creator, "m.room.power_levels", {"users": {creator: 100}} if int(version) < 12 else {"users": {}},
                state_key="")
        rr.make(creator, "m.room.join_rules", {"join_rule": "public"}, state_key="")
        rr.make(creator, "m.room.history_visibility", {"history_visibility": history}, state_key="")
        rr.make(creator, "m.room.name", {"name": "Far away"}, state_key="")
        ids = [rr.make(creator, "m.room.message", {"msgtype": "m.text", "body": "old %d" % i})[0]
               for i in range(messages)]
        return rr, ids

    def page_all(self, token, room, limit=7):
        seen, frm, pages = [], None, 0
        while pages < 20:
            path = V3 + "/rooms/%s/messages?dir=b&limit=%d" % (q(room), limit) + ("&from=" + frm if frm else "")
            r = self.a.request("GET", path, token=token)
            self.assertEqual(r.status, 200, r.json)
            seen += r.json["chunk"]
            pages += 1
            frm = r.json.get("end")
            if frm is None:
                break
        return seen

    def test_join_then_backfill_history(self):
        for version in ("10", "12"):
            rr, ids = self.remote_room(version, "shared", 30)
            serve_room(self.fake, rr)
            u = self.a.register(unique())
            r = self.a.request("POST", V3 + "/join/%s?server_name=%s" % (q(rr.room_id), q(self.fake.server_name)),
                               body={}, token=u["access_token"])
            self.assertEqual((r.status, r.json), (200, {"room_id": rr.room_id}), version)
            chunk = self.page_all(u["access_token"], rr.room_id)
            bodies = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
            self.assertEqual(bodies, ["old %d" % i for i in reversed(range(30))], version)
            types = [e["type"] for e in chunk]
            self.assertEqual(types[0], "m.room.member")  # our join, newest
            self.assertEqual(types[-1], "m.room.create")  # the very beginning, fetched from the fake
            self.assertEqual(len(chunk), len({e["event_id"] for e in chunk}))  # each once
            # asked once the history is complete, nobody is asked again
            before = len([x for x in self.fake.requests if "/backfill/" in x["path"]])
            self.page_all(u["access_token"], rr.room_id)
            after = len([x for x in self.fake.requests if "/backfill/" in x["path"]])
            self.assertEqual(before, after)
            self.fake.routes.clear()

    def test_joined_history_is_not_shown(self):
        rr, ids = self.remote_room("10", "joined", 5)
        serve_room(self.fake, rr)
        u = self.a.register(unique())
        r = self.a.request("POST", V3 + "/join/%s?server_name=%s" % (q(rr.room_id), q(self.fake.server_name)),
                           body={}, token=u["access_token"])
        self.assertEqual(r.status, 200, r.json)
        chunk = self.page_all(u["access_token"], rr.room_id)
        self.assertEqual([e["type"] for e in chunk], ["m.room.member"])


if __name__ == "__main__":
    main()
