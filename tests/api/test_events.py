#!/usr/bin/python3
"""Room events: send (idempotency), state, redaction, /event, /messages,
/context, /members, history visibility, size limits, timestamp_to_event,
report (server/cs/events.c, core/rooms.c, core/visibility.c)."""

import time

from axontest import main, unique
from roomutil import RoomTestCase, V3, q


class Send(RoomTestCase):
    def test_send_and_fetch(self):
        aid, at = self.user()
        room = self.create_room(at)
        path = V3 + "/rooms/%s/send/m.room.message/txn1" % q(room)
        r = self.req("PUT", path, token=at, body={"msgtype": "m.text", "body": "hi"})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("PUT", path, r)
        eid = r.json["event_id"]
        ev = self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(eid)), token=at)
        self.assertEqual(ev.json["content"]["body"], "hi")
        self.assertEqual(ev.json["sender"], aid)
        self.assertEqual(ev.json["room_id"], room)
        self.assertEqual(ev.json["unsigned"]["transaction_id"], "txn1")
        self.assertSpec("GET", V3 + "/rooms/%s/event/%s" % (room, eid), ev)

    def test_txn_idempotency_scoped_to_device(self):
        name = unique()
        u = self.server.register(name)
        room = self.create_room(u["access_token"])
        path = V3 + "/rooms/%s/send/m.room.message/same" % q(room)
        a = self.req("PUT", path, token=u["access_token"], body={"body": "x", "msgtype": "m.text"}).json["event_id"]
        b = self.req("PUT", path, token=u["access_token"], body={"body": "y", "msgtype": "m.text"}).json["event_id"]
        self.assertEqual(a, b)
        other = self.server.login(name).json
        c = self.req("PUT", path, token=other["access_token"], body={"body": "x", "msgtype": "m.text"}).json["event_id"]
        self.assertNotEqual(a, c)
        # transaction_id is only shown to the device that sent it
        ev = self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(a)), token=other["access_token"]).json
        self.assertNotIn("transaction_id", ev["unsigned"])

    def test_not_a_member_and_unknown_room(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at)
        r = self.req("PUT", V3 + "/rooms/%s/send/m.room.message/1" % q(room), token=bt, body={"body": "x"})
        self.assertError(r, 403, "M_FORBIDDEN")
        r = self.req("PUT", V3 + "/rooms/%s/send/m.room.message/1" % q("!nope:" + self.server.server_name),
                     token=at, body={"body": "x"})
        self.assertError(r, 404, "M_NOT_FOUND")
        self.assertError(self.req("GET", V3 + "/rooms/%s/messages" % q("!nope:x"), token=at), 403, "M_FORBIDDEN")

    def test_bad_content(self):
        aid, at = self.user()
        room = self.create_room(at)
        base = V3 + "/rooms/%s/send/m.room.message/" % q(room)
        self.assertError(self.req("PUT", base + "a", token=at, raw=b"[]"), 400, "M_NOT_JSON")
        self.assertError(self.req("PUT", base + "b", token=at, raw=b"{bad"), 400, "M_NOT_JSON")
        # floats and huge integers are not canonical JSON (room v6+)
        self.assertError(self.req("PUT", base + "c", token=at, raw=b'{"n": 1.5}'), 400, "M_BAD_JSON")
        self.assertError(self.req("PUT", base + "d", token=at, raw=b'{"n": 9007199254740992}'), 400, "M_BAD_JSON")
        # over 64 KiB
        r = self.req("PUT", base + "e", token=at, body={"body": "x" * 70000})
        self.assertError(r, 413, "M_TOO_LARGE")
        r = self.state(at, room, "org.example.big", {"x": "y" * 70000}, expect=413)
        msgs = self.messages(at, room, limit=50)["chunk"]
        self.assertFalse(any(e["type"] in ("m.room.message", "org.example.big") for e in msgs))


class State(RoomTestCase):
    def test_state_put_get(self):
        aid, at = self.user()
        room = self.create_room(at)
        r = self.state(at, room, "m.room.name", {"name": "Named"})
        self.assertSpec("PUT", V3 + "/rooms/%s/state/m.room.name/" % room, r)
        # the trailing slash is optional for an empty state key
        r = self.req("GET", V3 + "/rooms/%s/state/m.room.name/" % q(room), token=at)
        self.assertEqual(r.json, {"name": "Named"})
        r = self.req("GET", V3 + "/rooms/%s/state/m.room.name?format=event" % q(room), token=at)
        self.assertEqual(r.json["content"], {"name": "Named"})
        self.assertEqual(r.json["type"], "m.room.name")
        allstate = self.req("GET", V3 + "/rooms/%s/state" % q(room), token=at)
        self.assertSpec("GET", V3 + "/rooms/%s/state" % room, allstate)
        types = {e["type"] for e in allstate.json}
        self.assertTrue({"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"} <= types)
        self.assertError(self.req("GET", V3 + "/rooms/%s/state/m.room.topic" % q(room), token=at), 404, "M_NOT_FOUND")
        # prev_content on replacement
        self.state(at, room, "m.room.name", {"name": "Renamed"})
        ev = self.req("GET", V3 + "/rooms/%s/state/m.room.name?format=event" % q(room), token=at).json
        self.assertEqual(ev["unsigned"]["prev_content"], {"name": "Named"})

    def test_left_user_reads_state_up_to_leave(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat", name="Before")
        self.join(bt, room)
        self.leave(bt, room)
        self.state(at, room, "m.room.name", {"name": "After"})
        self.assertEqual(self.req("GET", V3 + "/rooms/%s/state/m.room.name" % q(room), token=bt).json["name"],
                         "Before")
        cid, ct = self.user()
        self.assertError(self.req("GET", V3 + "/rooms/%s/state" % q(room), token=ct), 403, "M_FORBIDDEN")


class Redaction(RoomTestCase):
    def test_redact_own_and_others(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        e1 = self.send(bt, room, {"msgtype": "m.text", "body": "secret"})
        path = V3 + "/rooms/%s/redact/%s/r1" % (q(room), q(e1))
        r = self.req("PUT", path, token=bt, body={"reason": "oops"})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("PUT", path, r)
        ev = self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(e1)), token=at).json
        self.assertEqual(ev["content"], {})
        self.assertEqual(ev["unsigned"]["redacted_because"]["content"]["reason"], "oops")
        # the moderator (PL 100) may redact anyone's; a normal member may not redact others'
        e2 = self.send(at, room)
        self.assertError(self.req("PUT", V3 + "/rooms/%s/redact/%s/r2" % (q(room), q(e2)), token=bt, body={}), 403,
                         "M_FORBIDDEN")
        e3 = self.send(bt, room)
        self.assertEqual(self.req("PUT", V3 + "/rooms/%s/redact/%s/r3" % (q(room), q(e3)), token=at,
                                  body={}).status, 200)
        self.assertError(self.req("PUT", V3 + "/rooms/%s/redact/%s/r4" % (q(room), q("$unknown")), token=at,
                                  body={}), 404, "M_NOT_FOUND")

    def test_redacting_unknown_event_does_not_break_sync(self):
        aid, at = self.user()
        room = self.create_room(at)
        s = self.sync(at)
        self.send(at, room)
        s2 = self.sync(at, since=s["next_batch"])
        self.assertEqual(len(self.timeline(s2, room)), 1)


class Messages(RoomTestCase):
    def test_pagination_both_ways(self):
        aid, at = self.user()
        room = self.create_room(at)
        sent = [self.send(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(12)]
        r = self.req("GET", V3 + "/rooms/%s/messages?dir=b&limit=5" % q(room), token=at)
        self.assertSpec("GET", V3 + "/rooms/%s/messages" % room, r)
        page1 = r.json
        self.assertEqual([e["event_id"] for e in page1["chunk"]], sent[::-1][:5])
        page2 = self.messages(at, room, dir="b", limit=5, **{"from": page1["end"]})
        self.assertEqual([e["event_id"] for e in page2["chunk"]], sent[::-1][5:10])
        # tokens sit between events: forwards from the second page's end starts at its last event
        fwd = self.messages(at, room, dir="f", limit=3, **{"from": page2["end"]})
        self.assertEqual([e["event_id"] for e in fwd["chunk"]], sent[2:5])
        self.assertIn("end", fwd)
        # a 'to' token bounds the page
        bounded = self.messages(at, room, dir="b", limit=50, **{"from": page1["end"], "to": page2["end"]})
        self.assertEqual([e["event_id"] for e in bounded["chunk"]], sent[::-1][5:10])
        # filter by type
        only = self.messages(at, room, dir="b", limit=50, filter='{"types":["m.room.member"]}')
        self.assertTrue(all(e["type"] == "m.room.member" for e in only["chunk"]))
        self.assertEqual(len(only["chunk"]), 1)

    def test_messages_end_of_history(self):
        aid, at = self.user()
        room = self.create_room(at)
        r = self.messages(at, room, dir="b", limit=100)
        self.assertEqual(r["chunk"][-1]["type"], "m.room.create")
        self.assertNotIn("end", r)

    def test_bad_params(self):
        aid, at = self.user()
        room = self.create_room(at)
        for qs in ("dir=x", "limit=abc", "from=bogus", "filter=%7Bnot", "filter=%7B%22limit%22%3A%22x%22%7D"):
            r = self.req("GET", V3 + "/rooms/%s/messages?%s" % (q(room), qs), token=at)
            self.assertEqual(r.status, 400, (qs, r))

    def test_lazy_loading_members(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        self.send(bt, room)
        r = self.messages(at, room, dir="b", limit=1, filter='{"lazy_load_members":true}')
        self.assertEqual([e["state_key"] for e in r["state"]], [bid])


class Visibility(RoomTestCase):
    def test_joined_visibility_hides_history(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat",
                                initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                                "content": {"history_visibility": "joined"}}])
        before = self.send(at, room, {"msgtype": "m.text", "body": "before"})
        self.join(bt, room)
        after = self.send(at, room, {"msgtype": "m.text", "body": "after"})
        bodies = [e["content"].get("body") for e in self.messages(bt, room, dir="b", limit=50)["chunk"]]
        self.assertIn("after", bodies)
        self.assertNotIn("before", bodies)
        self.assertError(self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(before)), token=bt), 404,
                         "M_NOT_FOUND")
        self.assertEqual(self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(after)), token=bt).status, 200)

    def test_shared_visibility_shows_history(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        before = self.send(at, room)
        self.join(bt, room)
        self.assertEqual(self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(before)), token=bt).status, 200)

    def test_world_readable_for_non_members(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat",
                                initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                                "content": {"history_visibility": "world_readable"}}])
        e = self.send(at, room)
        self.assertEqual(self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(e)), token=bt).status, 200)
        # events before the room became world_readable (create, members, ...) stay hidden, as in Synapse
        types = [ev["type"] for ev in self.messages(bt, room, dir="b", limit=50)["chunk"]]
        self.assertEqual(types, ["m.room.message", "m.room.guest_access", "m.room.history_visibility"])

    def test_left_member_sees_until_leave(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        self.send(at, room, {"msgtype": "m.text", "body": "seen"})
        self.leave(bt, room)
        self.send(at, room, {"msgtype": "m.text", "body": "unseen"})
        bodies = [e["content"].get("body") for e in self.messages(bt, room, dir="b", limit=50)["chunk"]]
        self.assertIn("seen", bodies)
        self.assertNotIn("unseen", bodies)


class Context(RoomTestCase):
    def test_context(self):
        aid, at = self.user()
        room = self.create_room(at)
        ids = [self.send(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(7)]
        r = self.req("GET", V3 + "/rooms/%s/context/%s?limit=4" % (q(room), q(ids[3])), token=at)
        self.assertEqual(r.status, 200, r)
        self.assertSpec("GET", V3 + "/rooms/%s/context/%s" % (room, ids[3]), r)
        self.assertEqual(r.json["event"]["event_id"], ids[3])
        self.assertEqual([e["event_id"] for e in r.json["events_before"]], [ids[2], ids[1]])
        self.assertEqual([e["event_id"] for e in r.json["events_after"]], [ids[4], ids[5]])
        self.assertTrue(any(e["type"] == "m.room.create" for e in r.json["state"]))
        self.assertError(self.req("GET", V3 + "/rooms/%s/context/%s" % (q(room), q("$nope")), token=at), 404,
                         "M_NOT_FOUND")


class Members(RoomTestCase):
    def test_members_filters_and_at(self):
        aid, at = self.user()
        bid, bt = self.user()
        cid, ct = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        token = self.sync(at)["next_batch"]
        self.invite(at, room, cid)
        self.leave(bt, room)
        r = self.req("GET", V3 + "/rooms/%s/members" % q(room), token=at)
        self.assertSpec("GET", V3 + "/rooms/%s/members" % room, r)
        by = {e["state_key"]: e["content"]["membership"] for e in r.json["chunk"]}
        self.assertEqual(by, {aid: "join", bid: "leave", cid: "invite"})
        r = self.req("GET", V3 + "/rooms/%s/members?not_membership=leave" % q(room), token=at).json
        self.assertEqual({e["state_key"] for e in r["chunk"]}, {aid, cid})
        r = self.req("GET", V3 + "/rooms/%s/members?at=%s" % (q(room), token), token=at).json
        self.assertEqual({e["state_key"]: e["content"]["membership"] for e in r["chunk"]}, {aid: "join", bid: "join"})
        self.assertError(self.req("GET", V3 + "/rooms/%s/members?membership=partying" % q(room), token=at), 400,
                         "M_INVALID_PARAM")


class TimestampAndReport(RoomTestCase):
    def test_timestamp_to_event(self):
        aid, at = self.user()
        room = self.create_room(at)
        e1 = self.send(at, room)
        time.sleep(0.01)
        mid = int(time.time() * 1000)
        time.sleep(0.01)
        e2 = self.send(at, room)
        path = "/_matrix/client/v1/rooms/%s/timestamp_to_event" % q(room)
        r = self.req("GET", path + "?ts=%d&dir=f" % mid, token=at)
        self.assertEqual(r.json["event_id"], e2)
        self.assertSpec("GET", path, r)
        r = self.req("GET", path + "?ts=%d&dir=b" % mid, token=at)
        self.assertEqual(r.json["event_id"], e1)
        self.assertError(self.req("GET", path + "?ts=1&dir=b", token=at), 404, "M_NOT_FOUND")
        self.assertError(self.req("GET", path + "?ts=x&dir=b", token=at), 400, "M_INVALID_PARAM")

    def test_report(self):
        aid, at = self.user()
        room = self.create_room(at)
        e = self.send(at, room)
        path = V3 + "/rooms/%s/report/%s" % (q(room), q(e))
        r = self.req("POST", path, token=at, body={"reason": "test", "score": -50})
        self.assertEqual(r.status, 200)
        self.assertError(self.req("POST", path, token=at, body={"score": 5}), 400, "M_INVALID_PARAM")
        self.assertError(self.req("POST", V3 + "/rooms/%s/report/%s" % (q(room), q("$x")), token=at, body={}), 404,
                         "M_NOT_FOUND")


if __name__ == "__main__":
    main()
