#!/usr/bin/python3
"""unsigned.membership (spec v1.11, MSC4115): every event served to a client
carries the requester's membership in the room at that event, the event's
own change included, and "leave" when they had none (core/rooms.c, through
/sync, /messages, /context, /event, /state, /members, /relations, /threads,
/search and the aggregations inside unsigned)."""

import json

from axontest import main
from roomutil import RoomTestCase, V3, q

V1 = "/_matrix/client/v1"
ALL = {"room": {"timeline": {"limit": 100}}}


def memberships(events):
    """[(event_id, unsigned.membership or None)] in order."""
    return [(e["event_id"], e.get("unsigned", {}).get("membership")) for e in events]


class Timeline(RoomTestCase):
    """Alice talks before and after Bob joins; Bob reads it all back everywhere."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        self = cls("test_is_per_requester")  # an instance, to borrow the helpers
        cls.aid, cls.at = self.user()
        cls.bid, cls.bt = self.user()
        cls.room = self.create_room(cls.at, preset="public_chat")
        cls.before = self.send(cls.at, cls.room, {"msgtype": "m.text", "body": "before bob"})
        self.join(cls.bt, cls.room)
        cls.after = self.send(cls.at, cls.room, {"msgtype": "m.text", "body": "after bob"})

    def expected(self, events):
        """'leave' up to Bob's join, 'join' from it on."""
        out, seen_join = [], False
        for e in events:
            if e["type"] == "m.room.member" and e.get("state_key") == self.bid:
                seen_join = True
            out.append((e["event_id"], "join" if seen_join else "leave"))
        return out

    def test_sync_timeline(self):
        s = self.sync(self.bt, filter_=ALL)
        events = self.timeline(s, self.room)
        ids = [e["event_id"] for e in events]
        self.assertIn(self.before, ids)
        self.assertIn(self.after, ids)
        self.assertEqual(memberships(events), self.expected(events))
        self.assertEqual(dict(memberships(events))[self.before], "leave")
        self.assertEqual(dict(memberships(events))[self.after], "join")

    def test_sync_state_and_incremental(self):
        # a one-event timeline: everything else comes as state, each at its own point
        s = self.sync(self.bt, filter_={"room": {"timeline": {"limit": 1}}})
        room = s["rooms"]["join"][self.room]
        self.assertEqual([e["event_id"] for e in room["timeline"]["events"]], [self.after])
        state = {(e["type"], e["state_key"]): e["unsigned"]["membership"] for e in room["state"]["events"]}
        self.assertEqual(state[("m.room.create", "")], "leave")
        self.assertEqual(state[("m.room.member", self.aid)], "leave")
        self.assertEqual(state[("m.room.member", self.bid)], "join")
        # and the next event arrives in an incremental sync with the membership of now
        later = self.send(self.at, self.room, {"msgtype": "m.text", "body": "later"})
        s2 = self.sync(self.bt, since=s["next_batch"])
        self.assertEqual(memberships(self.timeline(s2, self.room)), [(later, "join")])
        # Alice's own view: joined since she created the room
        mine = self.timeline(self.sync(self.at, filter_=ALL), self.room)
        create = [e for e in mine if e["type"] == "m.room.create"][0]
        self.assertEqual(create["unsigned"]["membership"], "leave")  # before her own join
        self.assertTrue(all(m == "join" for _, m in memberships(mine)[1:]))

    def test_messages_both_directions(self):
        back = self.messages(self.bt, self.room, dir="b", limit=100)["chunk"]
        self.assertEqual(memberships(back), self.expected(back[::-1])[::-1])
        fwd = self.messages(self.bt, self.room, dir="f", limit=100)
        self.assertSpec("GET", V3 + "/rooms/%s/messages" % self.room,
                        self.req("GET", V3 + "/rooms/%s/messages?dir=f" % q(self.room), token=self.bt))
        self.assertEqual(memberships(fwd["chunk"]), self.expected(fwd["chunk"]))

    def test_event_context_state_members(self):
        for eid, want in ((self.before, "leave"), (self.after, "join")):
            path = V3 + "/rooms/%s/event/%s" % (q(self.room), q(eid))
            r = self.req("GET", path, token=self.bt)
            self.assertEqual(r.status, 200, r)
            self.assertSpec("GET", path, r)
            self.assertEqual(r.json["unsigned"]["membership"], want)
        path = V3 + "/rooms/%s/context/%s?limit=20" % (q(self.room), q(self.after))
        r = self.req("GET", path, token=self.bt)
        self.assertSpec("GET", path, r)
        self.assertEqual(r.json["event"]["unsigned"]["membership"], "join")
        before = r.json["events_before"]  # newest first
        self.assertEqual(memberships(before), self.expected(before[::-1])[::-1])
        self.assertTrue(all("membership" in e["unsigned"] for e in r.json["state"]))
        # /state and /members: each state event at its own point
        st = self.req("GET", V3 + "/rooms/%s/state" % q(self.room), token=self.bt)
        self.assertSpec("GET", V3 + "/rooms/%s/state" % self.room, st)
        by_key = {(e["type"], e["state_key"]): e["unsigned"]["membership"] for e in st.json}
        self.assertEqual(by_key[("m.room.join_rules", "")], "leave")
        self.assertEqual(by_key[("m.room.member", self.bid)], "join")
        members = self.req("GET", V3 + "/rooms/%s/members" % q(self.room), token=self.bt).json["chunk"]
        self.assertEqual({e["state_key"]: e["unsigned"]["membership"] for e in members},
                         {self.aid: "leave", self.bid: "join"})
        ev = self.req("GET", V3 + "/rooms/%s/state/m.room.create?format=event" % q(self.room), token=self.bt).json
        self.assertEqual(ev["unsigned"]["membership"], "leave")

    def test_is_per_requester(self):
        """The same event reads differently for each user: the membership is the requester's."""
        path = V3 + "/rooms/%s/event/%s" % (q(self.room), q(self.before))
        self.assertEqual(self.req("GET", path, token=self.at).json["unsigned"]["membership"], "join")
        self.assertEqual(self.req("GET", path, token=self.bt).json["unsigned"]["membership"], "leave")


class Changes(RoomTestCase):
    def test_invite_leave_and_rejoin(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="private_chat",
                                initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                                "content": {"history_visibility": "invited"}}])
        self.invite(at, room, bid)
        while_invited = self.send(at, room, {"msgtype": "m.text", "body": "while invited"})
        self.join(bt, room)
        joined = self.send(at, room, {"msgtype": "m.text", "body": "joined"})
        self.leave(bt, room)
        gone = self.send(at, room, {"msgtype": "m.text", "body": "gone"})
        # Bob reads what he may, up to his leave: his leave event carries its own change
        chunk = self.messages(bt, room, dir="b", limit=100)["chunk"]
        got = dict(memberships(chunk))
        self.assertNotIn(gone, got)
        self.assertEqual(got[while_invited], "invite")
        self.assertEqual(got[joined], "join")
        own = [e for e in chunk if e["type"] == "m.room.member" and e["state_key"] == bid]
        self.assertEqual([e["unsigned"]["membership"] for e in own], ["leave", "join", "invite"])
        # back again: what was said while he was away stays hidden ("invited" history), and
        # the new join is his membership from then on
        self.invite(at, room, bid)
        self.join(bt, room)
        self.assertError(self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(gone)), token=bt), 404,
                         "M_NOT_FOUND")
        back = self.messages(bt, room, dir="b", limit=3)["chunk"]
        self.assertEqual([(e["content"].get("membership"), e["unsigned"]["membership"]) for e in back],
                         [("join", "join"), ("invite", "invite"), ("leave", "leave")])

    def test_ban_and_knock(self):
        aid, at = self.user()
        bid, bt = self.user()
        cid, ct = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        r = self.req("POST", V3 + "/rooms/%s/ban" % q(room), token=at, body={"user_id": bid, "reason": "spam"})
        self.assertEqual(r.status, 200, r)
        chunk = self.messages(bt, room, dir="b", limit=1)["chunk"]
        self.assertEqual(chunk[0]["type"], "m.room.member")
        self.assertEqual(chunk[0]["content"]["membership"], "ban")
        self.assertEqual(chunk[0]["unsigned"]["membership"], "ban")
        # a knock, later let in: the knock shows as "knock" in the history Carol now shares
        kroom = self.create_room(at, preset="private_chat", room_version="12",
                                 initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                 "content": {"join_rule": "knock"}}])
        r = self.req("POST", V3 + "/knock/" + q(kroom), token=ct, body={})
        self.assertEqual(r.status, 200, r)
        self.invite(at, kroom, cid)
        self.join(ct, kroom)
        events = self.timeline(self.sync(ct, filter_=ALL), kroom)
        own = [(e["content"]["membership"], e["unsigned"]["membership"]) for e in events
               if e["type"] == "m.room.member" and e["state_key"] == cid]
        self.assertEqual(own, [("knock", "knock"), ("invite", "invite"), ("join", "join")])

    def test_world_readable_never_joined(self):
        aid, at = self.user()
        did, dt = self.user()
        room = self.create_room(at, preset="public_chat",
                                initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                                "content": {"history_visibility": "world_readable"}}])
        self.send(at, room)
        chunk = self.messages(dt, room, dir="b", limit=100)["chunk"]
        self.assertTrue(chunk)
        self.assertEqual({m for _, m in memberships(chunk)}, {"leave"})


class Aggregations(RoomTestCase):
    def test_relations_threads_edits_redactions_search(self):
        aid, at = self.user()
        bid, bt = self.user()
        word = "quokka%d" % id(self)
        room = self.create_room(at, preset="public_chat")
        root = self.send(at, room, {"msgtype": "m.text", "body": "root %s" % word})
        edit = self.send(at, room, {"msgtype": "m.text", "body": "* root",
                                    "m.new_content": {"msgtype": "m.text", "body": "root"},
                                    "m.relates_to": {"rel_type": "m.replace", "event_id": root}})
        self.join(bt, room)
        reply = self.send(bt, room, {"msgtype": "m.text", "body": "reply %s" % word,
                                     "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
        doomed = self.send(at, room, {"msgtype": "m.text", "body": "oops"})
        r = self.req("PUT", V3 + "/rooms/%s/redact/%s/r1" % (q(room), q(doomed)), token=at, body={})
        self.assertEqual(r.status, 200, r)

        ev = self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(root)), token=bt).json
        self.assertEqual(ev["unsigned"]["membership"], "leave")
        rel = ev["unsigned"]["m.relations"]
        self.assertEqual(rel["m.replace"]["event_id"], edit)
        self.assertEqual(rel["m.replace"]["unsigned"]["membership"], "leave")
        self.assertEqual(rel["m.thread"]["latest_event"]["event_id"], reply)
        self.assertEqual(rel["m.thread"]["latest_event"]["unsigned"]["membership"], "join")

        path = V1 + "/rooms/%s/relations/%s/m.thread" % (q(room), q(root))
        r = self.req("GET", path, token=bt)
        self.assertSpec("GET", path, r)
        self.assertEqual(memberships(r.json["chunk"]), [(reply, "join")])
        path = V1 + "/rooms/%s/threads" % q(room)
        r = self.req("GET", path, token=bt)
        self.assertSpec("GET", path, r)
        self.assertEqual(memberships(r.json["chunk"]), [(root, "leave")])

        red = self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(doomed)), token=bt).json
        self.assertEqual(red["unsigned"]["membership"], "join")
        self.assertEqual(red["unsigned"]["redacted_because"]["unsigned"]["membership"], "join")
        # the stored copy is not changed by a reader: Alice sees her own view
        red_a = self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(doomed)), token=at).json
        self.assertEqual(red_a["unsigned"]["redacted_because"]["unsigned"]["membership"], "join")

        body = {"search_categories": {"room_events": {"search_term": word, "order_by": "recent",
                                                      "event_context": {"before_limit": 1, "after_limit": 1}}}}
        r = self.req("POST", V3 + "/search", token=bt, body=body)
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", V3 + "/search", r)
        results = r.json["search_categories"]["room_events"]["results"]
        self.assertEqual([(x["result"]["event_id"], x["result"]["unsigned"]["membership"]) for x in results],
                         [(reply, "join"), (root, "leave")])
        after_root = results[1]["context"]["events_after"][0]
        self.assertEqual((after_root["event_id"], after_root["unsigned"]["membership"]), (edit, "leave"))

    def test_federation_format_has_no_unsigned(self):
        """event_format=federation is the stored PDU: no client-side unsigned data at all."""
        aid, at = self.user()
        room = self.create_room(at)
        s = self.sync(at, filter_=json.dumps({"event_format": "federation"}), spec=False)
        events = s["rooms"]["join"][room]["timeline"]["events"]
        self.assertTrue(events)
        self.assertFalse(any("membership" in e.get("unsigned", {}) for e in events))


if __name__ == "__main__":
    main()
