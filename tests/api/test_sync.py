#!/usr/bin/python3
"""/sync (server/cs/sync.c): initial and incremental sync, long-poll
wake-ups, limited timelines, invites/leaves, filters, typing, receipts,
account data, tokens (garbage, future, across a restart)."""

import http.client
import json
import signal
import threading
import time

from axontest import Server, main, unique
from roomutil import RoomTestCase, V3, q


def ids(events):
    return [e["event_id"] for e in events]


class SyncBasics(RoomTestCase):
    def test_initial_then_incremental_exactly_once(self):
        aid, at = self.user()
        room = self.create_room(at, name="Sync room")
        s = self.sync(at)
        self.assertRegex(s["next_batch"], r"^s\d+_\d+$")
        joined = s["rooms"]["join"][room]
        all_types = {e["type"] for e in joined["state"]["events"] + joined["timeline"]["events"]}
        self.assertTrue({"m.room.create", "m.room.member", "m.room.power_levels", "m.room.name"} <= all_types)
        self.assertNotIn("room_id", joined["timeline"]["events"][0])
        e1 = self.send(at, room)
        s2 = self.sync(at, since=s["next_batch"])
        self.assertEqual(ids(self.timeline(s2, room)), [e1])
        self.assertFalse(s2["rooms"]["join"][room]["timeline"]["limited"])
        s3 = self.sync(at, since=s2["next_batch"])
        self.assertNotIn("rooms", s3)  # nothing new: the event is in exactly one response

    def test_limited_timeline_and_prev_batch(self):
        aid, at = self.user()
        room = self.create_room(at)
        s = self.sync(at)
        sent = [self.send(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(15)]
        s2 = self.sync(at, since=s["next_batch"], filter_={"room": {"timeline": {"limit": 5}}})
        tl = s2["rooms"]["join"][room]["timeline"]
        self.assertTrue(tl["limited"])
        self.assertEqual(ids(tl["events"]), sent[-5:])
        # prev_batch continues backwards exactly where the timeline starts
        older = self.messages(at, room, dir="b", limit=5, **{"from": tl["prev_batch"]})
        self.assertEqual(ids(older["chunk"]), sent[-6:-11:-1])

    def test_initial_timeline_limit_boundary_with_and_without_filter(self):
        # without a filter the timeline is chosen from positions alone; with one, each
        # candidate is loaded once and that copy is sent: both must agree on what is shown
        aid, at = self.user()
        room = self.create_room(at)
        sent = [self.send(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(4)]
        everything = self.timeline(self.sync(at, filter_={"room": {"timeline": {"limit": 100}}}), room)
        n = len(everything)
        self.assertEqual(ids(everything)[-4:], sent)
        for limit, limited in ((n, False), (n - 1, True)):
            tl = self.sync(at, filter_={"room": {"timeline": {"limit": limit}}})["rooms"]["join"][room]["timeline"]
            self.assertEqual(tl["limited"], limited)
            self.assertEqual(ids(tl["events"]), ids(everything)[-limit:])
        msgs = {"room": {"timeline": {"types": ["m.room.message"], "limit": 4}}}
        tl = self.sync(at, filter_=msgs)["rooms"]["join"][room]["timeline"]
        self.assertFalse(tl["limited"])
        self.assertEqual(ids(tl["events"]), sent)
        ev = tl["events"][-1]
        self.assertEqual(ev["content"], {"msgtype": "m.text", "body": "3"})
        self.assertEqual(ev["sender"], aid)
        self.assertNotIn("room_id", ev)
        self.assertIn("age", ev["unsigned"])
        msgs["room"]["timeline"]["limit"] = 3
        tl = self.sync(at, filter_=msgs)["rooms"]["join"][room]["timeline"]
        self.assertTrue(tl["limited"])
        self.assertEqual(ids(tl["events"]), sent[1:])
        # the federation format is loaded again, as such, for the events chosen
        fed = dict(msgs, event_format="federation")
        tl = self.sync(at, filter_=fed, spec=False)["rooms"]["join"][room]["timeline"]
        self.assertEqual(len(tl["events"]), 3)
        self.assertTrue(all("hashes" in e and "signatures" in e for e in tl["events"]))

    def test_initial_state_is_the_state_before_the_timeline(self):
        # no state event in the timeline: the state is the room's current state (read from
        # the current state table); one in it: the state before it (from the state groups)
        aid, at = self.user()
        room = self.create_room(at, name="A")
        self.state(at, room, "m.room.name", {"name": "B"})
        self.state(at, room, "m.room.topic", {"topic": "t"})
        for i in range(3):
            self.send(at, room, {"msgtype": "m.text", "body": str(i)})

        def state_of(s):
            events = s["rooms"]["join"][room]["state"]["events"]
            keys = [(e["type"], e["state_key"]) for e in events]
            self.assertEqual(len(keys), len(set(keys)))  # each state entry once
            return {k: e for k, e in zip(keys, events)}

        s = self.sync(at, filter_={"room": {"timeline": {"limit": 3}}})
        self.assertEqual({e["type"] for e in self.timeline(s, room)}, {"m.room.message"})
        st = state_of(s)
        self.assertEqual(st[("m.room.name", "")]["content"], {"name": "B"})
        self.assertEqual(st[("m.room.topic", "")]["content"], {"topic": "t"})
        self.assertTrue({("m.room.create", ""), ("m.room.power_levels", ""), ("m.room.join_rules", ""),
                         ("m.room.member", aid)} <= set(st))
        self.assertEqual(st[("m.room.member", aid)]["content"]["membership"], "join")

        self.state(at, room, "m.room.name", {"name": "C"})
        self.send(at, room)
        s = self.sync(at, filter_={"room": {"timeline": {"limit": 2}}})
        self.assertEqual([e["type"] for e in self.timeline(s, room)], ["m.room.name", "m.room.message"])
        self.assertEqual(state_of(s)[("m.room.name", "")]["content"], {"name": "B"})
        # an empty timeline: the state at the end
        s = self.sync(at, filter_={"room": {"timeline": {"limit": 0}}})
        self.assertEqual(state_of(s)[("m.room.name", "")]["content"], {"name": "C"})
        # and a new member is in it
        bid, bt = self.user()
        self.invite(at, room, bid)
        self.join(bt, room)
        for i in range(3):
            self.send(at, room)
        st = state_of(self.sync(at, filter_={"room": {"timeline": {"limit": 3}}}))
        self.assertEqual(st[("m.room.member", bid)]["content"]["membership"], "join")

    def test_token_errors(self):
        aid, at = self.user()
        for bad in ("garbage", "s", "sx_1", "s1_x", "t5"):
            r = self.req("GET", V3 + "/sync?since=" + bad, token=at)
            self.assertError(r, 400, "M_INVALID_PARAM")
        r = self.req("GET", V3 + "/sync?since=s999999999_0", token=at)
        self.assertError(r, 400, "M_INVALID_PARAM")
        for bad in ("timeout=soon", "full_state=maybe", "set_presence=busy", "filter=%7Bbad",
                    "filter=%7B%22room%22%3A1%7D", "filter=424242"):
            r = self.req("GET", V3 + "/sync?" + bad, token=at)
            self.assertEqual(r.status, 400, (bad, r))
        self.assertError(self.req("GET", V3 + "/sync"), 401, "M_MISSING_TOKEN")

    def test_full_state(self):
        aid, at = self.user()
        room = self.create_room(at, name="Full")
        s = self.sync(at)
        self.send(at, room)
        e = self.send(at, room)
        s2 = self.sync(at, since=s["next_batch"], full_state="true")
        joined = s2["rooms"]["join"][room]
        state_types = {e["type"] for e in joined["state"]["events"]}
        self.assertTrue({"m.room.create", "m.room.name", "m.room.member"} <= state_types)
        self.assertEqual(len(joined["timeline"]["events"]), 2)  # the timeline still starts at the token

    def test_summary(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        summary = self.sync(at)["rooms"]["join"][room]["summary"]
        self.assertEqual(summary["m.joined_member_count"], 2)
        self.assertEqual(summary["m.heroes"], [bid])


class LongPoll(RoomTestCase):
    def test_wakes_on_message(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        since = self.sync(at)["next_batch"]
        result = {}

        def poll():
            t0 = time.time()
            result["sync"] = self.sync(at, since=since, timeout=20000)
            result["elapsed"] = time.time() - t0

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.5)
        eid = self.send(bt, room)
        th.join(25)
        self.assertIn(eid, ids(self.timeline(result["sync"], room)))
        self.assertLess(result["elapsed"], 5)

    def test_times_out_empty(self):
        aid, at = self.user()
        self.create_room(at)
        since = self.sync(at)["next_batch"]
        t0 = time.time()
        s = self.sync(at, since=since, timeout=1000)
        elapsed = time.time() - t0
        self.assertGreaterEqual(elapsed, 0.9)
        self.assertLess(elapsed, 5)
        self.assertNotIn("rooms", s)

    def test_other_rooms_do_not_wake(self):
        aid, at = self.user()
        bid, bt = self.user()
        self.create_room(at)
        other = self.create_room(bt)
        since = self.sync(at)["next_batch"]
        result = {}

        def poll():
            result["sync"] = self.sync(at, since=since, timeout=1500)

        th = threading.Thread(target=poll)
        th.start()
        time.sleep(0.3)
        self.send(bt, other)
        th.join(10)
        self.assertNotIn("rooms", result["sync"])

    def test_wake_without_news_for_long_polls_of_one_user(self):
        """Long-polls of one user (several devices) woken by a commit that shows them nothing
        (their filter hides the message) park again and time out normally; the wake-up must
        not fire the re-parked request again and again (that spun the HTTP thread forever)."""
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        flt = {"room": {"timeline": {"not_types": ["m.room.message"]}, "ephemeral": {"types": []}}}
        since = self.sync(at)["next_batch"]
        results = []

        def poll():
            t0 = time.time()
            s = self.sync(at, since=since, timeout=1500, filter_=flt)
            results.append((time.time() - t0, s))

        threads = [threading.Thread(target=poll) for _ in range(4)]  # two share an HTTP thread
        for th in threads:
            th.start()
        time.sleep(0.5)
        self.send(bt, room)
        # every HTTP thread still answers (a few connections: SO_REUSEPORT spreads them)
        for _ in range(8):
            c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=5)
            c.request("GET", "/_matrix/client/versions")
            self.assertEqual(c.getresponse().status, 200)
            c.close()
        for th in threads:
            th.join(10)
        self.assertEqual(len(results), 4)
        for elapsed, s in results:
            self.assertGreaterEqual(elapsed, 1.4)
            self.assertLess(elapsed, 5)
            self.assertNotIn(room, s.get("rooms", {}).get("join", {}))


class Shutdown(RoomTestCase):
    def test_long_poll_during_shutdown_is_answered_and_axon_exits(self):
        """A /sync long-poll arriving while axon shuts down (slow logins still on the workers)
        is answered at once; it used to park and re-run forever, and axon never exited."""
        srv = Server(config={"threads": "1"}).start()
        try:
            u = srv.register(unique(), password="pw-shutdown")
            tok = u["access_token"]
            srv.request("POST", V3 + "/createRoom", token=tok, body={})
            since = srv.request("GET", V3 + "/sync?set_presence=offline", token=tok).json["next_batch"]
            poller = srv.connect()
            srv.request("GET", V3 + "/account/whoami", token=tok, conn=poller)
            logins = [srv.connect() for _ in range(8)]
            body = json.dumps({"type": "m.login.password", "password": "pw-shutdown",
                               "identifier": {"type": "m.id.user", "user": u["user_id"]}})
            for c in logins:
                c.request("POST", V3 + "/login", body=body, headers={"Content-Type": "application/json"})
            time.sleep(0.02)
            srv.proc.send_signal(signal.SIGTERM)
            time.sleep(0.05)
            t0 = time.monotonic()
            try:
                poller.request("GET", V3 + "/sync?set_presence=offline&timeout=3000&since=" + since,
                               headers={"Authorization": "Bearer " + tok})
                r = poller.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
                self.assertLess(time.monotonic() - t0, 2.5)
            except (ConnectionError, http.client.HTTPException):
                pass  # closed before it was read: also fine, as long as axon exits
            srv.proc.wait(timeout=20)  # it used to spin forever here
            srv.stop()  # exit status 0, no sanitizer report
        finally:
            if srv.proc is not None and srv.proc.poll() is None:
                srv.proc.kill()
                srv.stop(check=False)
            srv.cleanup()


class Membership(RoomTestCase):
    def test_invite_join_leave_sections(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, name="Invite me")
        since = self.sync(bt)["next_batch"]
        self.invite(at, room, bid)
        s = self.sync(bt, since=since)
        inv = s["rooms"]["invite"][room]["invite_state"]["events"]
        self.assertTrue(any(e["type"] == "m.room.name" for e in inv))
        self.join(bt, room)
        s2 = self.sync(bt, since=s["next_batch"])
        self.assertIn(room, s2["rooms"]["join"])
        # a newly joined room comes with its state
        self.assertTrue(any(e["type"] == "m.room.create" for e in
                            s2["rooms"]["join"][room]["state"]["events"] + self.timeline(s2, room)))
        r = self.req("POST", V3 + "/rooms/%s/kick" % q(room), token=at, body={"user_id": bid, "reason": "bye"})
        self.assertEqual(r.status, 200)
        s3 = self.sync(bt, since=s2["next_batch"])
        left = s3["rooms"]["leave"][room]
        last = left["timeline"]["events"][-1]
        self.assertEqual(last["content"]["membership"], "leave")
        self.assertEqual(last["sender"], aid)
        # after leaving, messages are not delivered any more
        self.send(at, room)
        s4 = self.sync(bt, since=s3["next_batch"])
        self.assertNotIn("rooms", s4)

    def test_include_leave_on_initial_sync(self):
        aid, at = self.user()
        room = self.create_room(at)
        self.leave(at, room)
        self.assertNotIn(room, self.sync(at).get("rooms", {}).get("leave", {}))
        s = self.sync(at, filter_={"room": {"include_leave": True}})
        self.assertIn(room, s["rooms"]["leave"])

    def test_initial_sync_with_every_section(self):
        # an initial sync writes its joined rooms out one by one and the rest of the
        # response around them: joined, invited and left rooms and account data together
        aid, at = self.user()
        bid, bt = self.user()
        joined = [self.create_room(at, name="joined %d" % i) for i in range(3)]
        left = self.create_room(at)
        self.leave(at, left)
        invited = self.create_room(bt, name="come in")
        self.invite(bt, invited, aid)
        self.req("PUT", V3 + "/user/%s/account_data/org.example.x" % q(aid), token=at, body={"k": "v"})
        s = self.sync(at, filter_={"room": {"include_leave": True}})
        self.assertEqual(sorted(s["rooms"]["join"]), sorted(joined))
        self.assertEqual(list(s["rooms"]["invite"]), [invited])
        self.assertEqual(list(s["rooms"]["leave"]), [left])
        for room in joined:
            self.assertEqual(s["rooms"]["join"][room]["summary"]["m.joined_member_count"], 1)
        self.assertIn("org.example.x", [e["type"] for e in s["account_data"]["events"]])
        self.assertRegex(s["next_batch"], r"^s\d+_\d+$")

    def test_join_leave_join_in_one_window(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        since = self.sync(bt)["next_batch"]
        self.join(bt, room)
        self.leave(bt, room)
        self.join(bt, room)
        s = self.sync(bt, since=since)
        self.assertIn(room, s["rooms"]["join"])
        self.assertNotIn(room, s["rooms"].get("leave", {}))


class Filters(RoomTestCase):
    def test_stored_filter_types_and_rooms(self):
        aid, at = self.user()
        r1 = self.create_room(at)
        r2 = self.create_room(at)
        self.send(at, r1)
        fid = self.req("POST", V3 + "/user/%s/filter" % q(aid), token=at,
                       body={"room": {"rooms": [r1], "timeline": {"types": ["m.room.message"]}}}).json["filter_id"]
        s = self.sync(at, filter_=fid)
        self.assertEqual(list(s["rooms"]["join"]), [r1])
        self.assertTrue(all(e["type"] == "m.room.message" for e in self.timeline(s, r1)))
        s = self.sync(at, filter_={"room": {"not_rooms": [r1]}})
        self.assertEqual(list(s["rooms"]["join"]), [r2])

    def test_event_fields_and_lazy_members(self):
        aid, at = self.user()
        bid, bt = self.user()
        cid, ct = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        self.join(ct, room)
        for _ in range(3):
            self.send(at, room)
        self.send(bt, room)
        s = self.sync(at, filter_={"room": {"timeline": {"limit": 1}, "state": {"lazy_load_members": True}}})
        members = {e["state_key"] for e in s["rooms"]["join"][room]["state"]["events"] if e["type"] == "m.room.member"}
        self.assertIn(bid, members)    # the timeline's sender
        self.assertIn(aid, members)    # and yourself
        self.assertNotIn(cid, members)
        # trimmed events cannot match the spec's event schema, so no schema check here
        s = self.sync(at, filter_={"event_fields": ["type", "content.body"], "room": {"timeline": {"limit": 1}}},
                      spec=False)
        ev = self.timeline(s, room)[0]
        self.assertEqual(set(ev), {"type", "content"})
        self.assertEqual(set(ev["content"]), {"body"})


class Ephemeral(RoomTestCase):
    def test_typing(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        since = self.sync(bt)["next_batch"]
        path = V3 + "/rooms/%s/typing/%s" % (q(room), q(aid))
        r = self.req("PUT", path, token=at, body={"typing": True, "timeout": 10000})
        self.assertEqual(r.status, 200)
        self.assertSpec("PUT", path, r)
        s = self.sync(bt, since=since, timeout=5000)
        eph = s["rooms"]["join"][room]["ephemeral"]["events"]
        typing = [e for e in eph if e["type"] == "m.typing"][0]
        self.assertEqual(typing["content"]["user_ids"], [aid])
        self.assertNotIn("room_id", typing)
        self.req("PUT", path, token=at, body={"typing": False})
        s2 = self.sync(bt, since=s["next_batch"], timeout=5000)
        typing = [e for e in s2["rooms"]["join"][room]["ephemeral"]["events"] if e["type"] == "m.typing"][0]
        self.assertEqual(typing["content"]["user_ids"], [])
        # errors
        self.assertError(self.req("PUT", V3 + "/rooms/%s/typing/%s" % (q(room), q(bid)), token=at,
                                  body={"typing": True}), 403, "M_FORBIDDEN")
        self.assertError(self.req("PUT", path, token=at, body={"typing": "yes"}), 400, "M_BAD_JSON")
        cid, ct = self.user()
        self.assertError(self.req("PUT", V3 + "/rooms/%s/typing/%s" % (q(room), q(cid)), token=ct,
                                  body={"typing": True}), 403, "M_FORBIDDEN")

    def test_typing_expires(self):
        aid, at = self.user()
        room = self.create_room(at)
        path = V3 + "/rooms/%s/typing/%s" % (q(room), q(aid))
        self.req("PUT", path, token=at, body={"typing": True, "timeout": 500})
        s = self.sync(at)
        since = s["next_batch"]
        s2 = self.sync(at, since=since, timeout=5000)
        typing = [e for e in s2["rooms"]["join"][room]["ephemeral"]["events"] if e["type"] == "m.typing"][0]
        self.assertEqual(typing["content"]["user_ids"], [])

    def test_receipts(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        eid = self.send(at, room)
        since = self.sync(at)["next_batch"]
        path = V3 + "/rooms/%s/receipt/m.read/%s" % (q(room), q(eid))
        r = self.req("POST", path, token=bt, body={})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", path, r)
        self.req("POST", V3 + "/rooms/%s/receipt/m.read.private/%s" % (q(room), q(eid)), token=bt, body={})
        s = self.sync(at, since=since)
        rec = [e for e in s["rooms"]["join"][room]["ephemeral"]["events"] if e["type"] == "m.receipt"][0]
        self.assertIn(bid, rec["content"][eid]["m.read"])
        self.assertNotIn("m.read.private", rec["content"][eid])  # only its owner sees it
        s_b = self.sync(bt)
        rec_b = [e for e in s_b["rooms"]["join"][room]["ephemeral"]["events"] if e["type"] == "m.receipt"][0]
        self.assertIn(bid, rec_b["content"][eid]["m.read.private"])
        # threaded receipts and errors
        self.assertEqual(self.req("POST", path, token=bt, body={"thread_id": "main"}).status, 200)
        self.assertError(self.req("POST", path, token=bt, body={"thread_id": "x"}), 400, "M_INVALID_PARAM")
        self.assertError(self.req("POST", V3 + "/rooms/%s/receipt/m.nope/%s" % (q(room), q(eid)), token=bt,
                                  body={}), 400, "M_INVALID_PARAM")
        self.assertError(self.req("POST", V3 + "/rooms/%s/receipt/m.read/%s" % (q(room), q("$unknown")), token=bt,
                                  body={}), 404, "M_NOT_FOUND")

    def test_read_markers(self):
        aid, at = self.user()
        room = self.create_room(at)
        eid = self.send(at, room)
        since = self.sync(at)["next_batch"]
        path = V3 + "/rooms/%s/read_markers" % q(room)
        r = self.req("POST", path, token=at, body={"m.fully_read": eid, "m.read": eid})
        self.assertEqual(r.status, 200, r)
        s = self.sync(at, since=since)
        ad = s["rooms"]["join"][room]["account_data"]["events"]
        self.assertEqual([e["content"] for e in ad if e["type"] == "m.fully_read"], [{"event_id": eid}])
        self.assertError(self.req("POST", path, token=at, body={"m.read": 5}), 400, "M_BAD_JSON")


class AccountData(RoomTestCase):
    def test_account_data_in_sync(self):
        aid, at = self.user()
        room = self.create_room(at)
        since = self.sync(at)["next_batch"]
        self.req("PUT", V3 + "/user/%s/account_data/org.example.g" % q(aid), token=at, body={"a": 1})
        self.req("PUT", V3 + "/user/%s/rooms/%s/account_data/org.example.r" % (q(aid), q(room)), token=at,
                 body={"b": 2})
        self.req("PUT", V3 + "/user/%s/rooms/%s/tags/m.favourite" % (q(aid), q(room)), token=at, body={})
        s = self.sync(at, since=since)
        self.assertEqual(s["account_data"]["events"], [{"type": "org.example.g", "content": {"a": 1}}])
        room_ad = {e["type"]: e["content"] for e in s["rooms"]["join"][room]["account_data"]["events"]}
        self.assertEqual(room_ad["org.example.r"], {"b": 2})
        self.assertEqual(room_ad["m.tag"], {"tags": {"m.favourite": {}}})
        # only the latest version of each item
        self.req("PUT", V3 + "/user/%s/account_data/org.example.g" % q(aid), token=at, body={"a": 2})
        self.req("PUT", V3 + "/user/%s/account_data/org.example.g" % q(aid), token=at, body={"a": 3})
        s2 = self.sync(at, since=s["next_batch"])
        self.assertEqual(s2["account_data"]["events"], [{"type": "org.example.g", "content": {"a": 3}}])


class Presence(RoomTestCase):
    def test_presence_between_room_members(self):
        aid, at = self.user()
        bid, bt = self.user()
        cid, ct = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        since = self.sync(bt)["next_batch"]
        path = V3 + "/presence/%s/status" % q(aid)
        r = self.req("PUT", path, token=at, body={"presence": "unavailable", "status_msg": "lunch"})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("PUT", path, r)
        s = self.sync(bt, since=since, timeout=5000)
        ev = [e for e in s["presence"]["events"] if e["sender"] == aid][0]
        self.assertEqual(ev["content"]["presence"], "unavailable")
        self.assertEqual(ev["content"]["status_msg"], "lunch")
        g = self.req("GET", path, token=bt)
        self.assertEqual(g.json["presence"], "unavailable")
        self.assertSpec("GET", path, g)
        # syncing marks a user online
        self.sync(at, set_presence="online")
        s2 = self.sync(bt, since=s["next_batch"], timeout=5000)
        ev = [e for e in s2["presence"]["events"] if e["sender"] == aid][0]
        self.assertEqual(ev["content"]["presence"], "online")
        self.assertTrue(ev["content"]["currently_active"])
        # strangers see nothing
        self.assertError(self.req("GET", path, token=ct), 403, "M_FORBIDDEN")
        self.assertNotIn(aid, [e["sender"] for e in self.sync(ct).get("presence", {}).get("events", [])])
        # errors
        self.assertError(self.req("PUT", V3 + "/presence/%s/status" % q(bid), token=at, body={"presence": "online"}),
                         403, "M_FORBIDDEN")
        self.assertError(self.req("PUT", path, token=at, body={"presence": "busy"}), 400, "M_INVALID_PARAM")
        self.assertError(self.req("PUT", path, token=at, body={}), 400, "M_MISSING_PARAM")
        self.assertError(self.req("GET", V3 + "/presence/%s/status" % q("@ghost:" + self.server.server_name),
                                  token=at), 404, "M_NOT_FOUND")


class Ignored(RoomTestCase):
    def test_ignored_users_hidden(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        self.req("PUT", V3 + "/user/%s/account_data/m.ignored_user_list" % q(aid), token=at,
                 body={"ignored_users": {bid: {}}})
        since = self.sync(at)["next_batch"]
        hidden = self.send(bt, room, {"msgtype": "m.text", "body": "you cannot see me"})
        shown = self.send(at, room)
        s = self.sync(at, since=since)
        got = ids(self.timeline(s, room))
        self.assertIn(shown, got)
        self.assertNotIn(hidden, got)
        # and their invites
        other = self.create_room(bt)
        since = s["next_batch"]
        self.invite(bt, other, aid)
        s2 = self.sync(at, since=since)
        self.assertNotIn(other, s2.get("rooms", {}).get("invite", {}))


class Restart(RoomTestCase):
    def test_token_survives_restart(self):
        srv = Server().start()
        try:
            u = srv.register(unique())
            t = u["access_token"]
            room = srv.request("POST", V3 + "/createRoom", token=t, body={}).json["room_id"]
            since = srv.request("GET", V3 + "/sync", token=t).json["next_batch"]
            srv.stop()
            srv.start()
            r = srv.request("GET", V3 + "/sync?since=" + since, token=t)
            self.assertEqual(r.status, 200, r)
            self.assertNotIn("rooms", r.json)  # nothing is sent twice
            eid = srv.request("PUT", V3 + "/rooms/%s/send/m.room.message/x" % q(room), token=t,
                              body={"msgtype": "m.text", "body": "after restart"}).json["event_id"]
            r = srv.request("GET", V3 + "/sync?since=" + r.json["next_batch"], token=t)
            self.assertEqual(ids(r.json["rooms"]["join"][room]["timeline"]["events"]), [eid])
        finally:
            srv.stop()
            srv.cleanup()

    def test_news_from_before_a_restart(self):
        """A token older than the server's start: the room change index (in memory) cannot
        answer it, so every room is looked at, and nothing is missed or repeated."""
        srv = Server().start()
        try:
            t = srv.register(unique())["access_token"]
            rooms = [srv.request("POST", V3 + "/createRoom", token=t, body={}).json["room_id"] for _ in range(3)]
            since = srv.request("GET", V3 + "/sync?set_presence=offline", token=t).json["next_batch"]
            eid = srv.request("PUT", V3 + "/rooms/%s/send/m.room.message/x" % q(rooms[1]), token=t,
                              body={"msgtype": "m.text", "body": "before restart"}).json["event_id"]
            srv.stop()
            srv.start()
            r = srv.request("GET", V3 + "/sync?set_presence=offline&since=" + since, token=t)
            self.assertEqual(list(r.json["rooms"]["join"]), [rooms[1]])
            self.assertEqual(ids(r.json["rooms"]["join"][rooms[1]]["timeline"]["events"]), [eid])
            r = srv.request("GET", V3 + "/sync?set_presence=offline&since=" + r.json["next_batch"], token=t)
            self.assertNotIn("rooms", r.json)
        finally:
            srv.stop()
            srv.cleanup()

    def test_device_lists_across_a_restart(self):
        """device_lists reads the rooms the change ring names; a token older than the server's
        start reads every room of the user instead, and finds the same."""
        srv = Server().start()
        try:
            a, b, c = (srv.register(unique()) for _ in range(3))
            room = srv.request("POST", V3 + "/createRoom", token=a["access_token"],
                               body={"preset": "public_chat"}).json["room_id"]
            srv.request("POST", V3 + "/join/" + q(room), token=b["access_token"], body={})
            since = srv.request("GET", V3 + "/sync?set_presence=offline", token=a["access_token"]).json["next_batch"]
            srv.request("POST", V3 + "/rooms/%s/leave" % q(room), token=b["access_token"], body={})
            srv.stop()
            srv.start()
            r = srv.request("GET", V3 + "/sync?set_presence=offline&since=" + since, token=a["access_token"])
            self.assertEqual(r.json["device_lists"], {"changed": [], "left": [b["user_id"]]})
            srv.request("POST", V3 + "/join/" + q(room), token=c["access_token"], body={})
            r = srv.request("GET", V3 + "/sync?set_presence=offline&since=" + r.json["next_batch"],
                            token=a["access_token"])
            self.assertEqual(r.json["device_lists"], {"changed": [c["user_id"]], "left": []})
        finally:
            srv.stop()
            srv.cleanup()


class ManyRooms(RoomTestCase):
    def test_only_changed_rooms_of_the_user(self):
        """Incremental sync visits the rooms changed since the token (the change index), and only
        the user's: 60 changed rooms (past the worker threshold) and others' rooms left out."""
        aid, at = self.user()
        bid, bt = self.user()
        mine = [self.create_room(at) for _ in range(70)]
        others = [self.create_room(bt) for _ in range(3)]
        since = self.sync(at)["next_batch"]
        sent = {room: self.send(at, room) for room in mine[:60]}
        for room in others:
            self.send(bt, room)
        self.state(at, mine[65], "m.room.topic", {"topic": "changed"})
        s = self.sync(at, since=since)
        expected = set(sent) | {mine[65]}
        self.assertEqual(set(s["rooms"]["join"]), expected)
        for room, eid in sent.items():
            self.assertEqual(ids(self.timeline(s, room)), [eid])
        # a few rooms: answered on the HTTP thread, same result
        e = self.send(at, mine[69])
        s2 = self.sync(at, since=s["next_batch"])
        self.assertEqual(list(s2["rooms"]["join"]), [mine[69]])
        self.assertEqual(ids(self.timeline(s2, mine[69])), [e])
        # an invite into a room the user was never in is a change in that room
        self.invite(bt, others[0], aid)
        s3 = self.sync(at, since=s2["next_batch"])
        self.assertEqual(list(s3["rooms"]["invite"]), [others[0]])
        self.assertNotIn("join", s3["rooms"])


class SharedTimeline(RoomTestCase):
    """A commit wakes a room's members on the same token: the first writes the new events out and
    the others copy them (sync.c, "the shared timeline"), but only readers whose view is the same."""

    def same_events(self, a, b):
        strip = lambda evs: [dict(e, unsigned={k: v for k, v in e.get("unsigned", {}).items() if k != "age"})
                             for e in evs]
        self.assertEqual(strip(a), strip(b))

    def test_readers_with_the_same_view_share_and_others_do_not(self):
        aid, at = self.user()
        bid, bt = self.user()
        cid, ct = self.user()
        did, dt = self.user()
        eid, et = self.user()
        room = self.create_room(at, preset="public_chat")
        for t in (bt, ct, dt):
            self.join(t, room)
        self.req("PUT", V3 + "/user/%s/account_data/m.ignored_user_list" % q(did), token=dt,
                 body={"ignored_users": {aid: {}}})
        since = self.sync(bt)["next_batch"]
        r = self.req("PUT", V3 + "/rooms/%s/send/m.room.message/shared-1" % q(room), token=at,
                     body={"msgtype": "m.text", "body": "to all of you"})
        self.assertEqual(r.status, 200, r)
        m1 = r.json["event_id"]
        self.join(et, room)
        conn = self.server.connect()  # one connection: one HTTP thread, whose kept timelines these are
        try:
            kept0 = self.metric("axon_sync_timelines_kept_total")
            used0 = self.metric("axon_sync_timelines_shared_total")
            b = self.sync(bt, since=since, conn=conn)
            c = self.sync(ct, since=since, conn=conn)
            self.assertEqual(self.metric("axon_sync_timelines_kept_total"), kept0 + 1)
            self.assertEqual(self.metric("axon_sync_timelines_shared_total"), used0 + 1)
            tb, tc = self.timeline(b, room), self.timeline(c, room)
            self.assertEqual([e["event_id"] for e in tb][:1], [m1])
            self.assertEqual(tb[-1]["type"], "m.room.member")  # E's join
            self.same_events(tb, tc)
            for e in tc:
                self.assertEqual(e["unsigned"]["membership"], "join")
                self.assertNotIn("transaction_id", e["unsigned"])
                self.assertIsInstance(e["unsigned"]["age"], int)
                self.assertNotIn("room_id", e)
            for s in (b, c):
                jr = s["rooms"]["join"][room]
                self.assertFalse(jr["timeline"]["limited"])
                self.assertRegex(jr["timeline"]["prev_batch"], r"^t\d+$")
                self.assertEqual(jr["summary"]["m.joined_member_count"], 5)  # a member event in the timeline
                self.assertIn("unread_notifications", jr)
            # the sender reads its own transaction_id: its own answer, not the kept one
            a = self.sync(at, since=since, conn=conn)
            self.assertEqual(self.timeline(a, room)[0]["unsigned"].get("transaction_id"), "shared-1")
            # who ignores the sender does not see the message
            d = self.sync(dt, since=since, conn=conn)
            self.assertNotIn(m1, [e["event_id"] for e in self.timeline(d, room)])
            # who joined after the token sees the room whole, and the message from before their join
            e = self.sync(et, since=since, conn=conn)
            got = {ev["event_id"]: ev for ev in self.timeline(e, room)}
            self.assertEqual(got[m1]["unsigned"]["membership"], "leave")
            whole = e["rooms"]["join"][room]["state"]["events"] + self.timeline(e, room)
            self.assertIn("m.room.create", [ev["type"] for ev in whole])
            self.assertEqual(self.metric("axon_sync_timelines_shared_total"), used0 + 1)
            # a filter that picks events or fields: its own answer
            f = self.sync(ct, since=since, conn=conn, spec=False,  # event_fields trims what the schema requires
                          filter_={"event_fields": ["type", "content.body"]})
            self.assertEqual(self.timeline(f, room)[0], {"type": "m.room.message", "content": {"body": "to all of you"}})
            self.assertEqual(self.metric("axon_sync_timelines_shared_total"), used0 + 1)
        finally:
            conn.close()

    def test_aggregations_are_never_shared(self):
        """A thread root in the window carries the reader's own current_user_participated."""
        aid, at = self.user()
        bid, bt = self.user()
        cid, ct = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        self.join(ct, room)
        since = self.sync(at)["next_batch"]
        root = self.send(bt, room, {"msgtype": "m.text", "body": "root"})
        self.send(ct, room, {"msgtype": "m.text", "body": "reply",
                             "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
        conn = self.server.connect()
        try:
            kept0 = self.metric("axon_sync_timelines_kept_total")
            for token, participated in ((at, False), (bt, True), (ct, True)):
                s = self.sync(token, since=since, conn=conn)
                thread = self.timeline(s, room)[0]["unsigned"]["m.relations"]["m.thread"]
                self.assertEqual(thread["count"], 1)
                self.assertEqual(thread["current_user_participated"], participated)
            self.assertEqual(self.metric("axon_sync_timelines_kept_total"), kept0)
            # a message after them, read by a member who sent none of it: kept and shared
            since = s["next_batch"]
            self.send(bt, room)
            used0 = self.metric("axon_sync_timelines_shared_total")
            x = self.sync(at, since=since, conn=conn)
            y = self.sync(ct, since=since, conn=conn)
            self.same_events(self.timeline(x, room), self.timeline(y, room))
            self.assertEqual(self.metric("axon_sync_timelines_shared_total"), used0 + 1)
        finally:
            conn.close()


if __name__ == "__main__":
    main()
