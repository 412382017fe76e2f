#!/usr/bin/python3
"""Push (server/cs/push.c, core/push*.c, server/pusher.c): the push rule
endpoints and every condition kind, unread counts in /sync and their reset
by receipts (threads included), GET /notifications, pushers, and delivery
to a fake push gateway on loopback: the right notifications (none for the
sender's own messages or muted rooms), a gateway that is down for a while,
rejected pushkeys, a restart with notifications still queued, and TLS."""

import json
import os
import shutil
import ssl
import subprocess
import tempfile
import time
import urllib.parse

from axontest import Server, main, unique
from pushgateway import Gateway
from roomutil import RoomTestCase, V3, q

DEFAULT_OVERRIDE = [".m.rule.master", ".m.rule.suppress_notices", ".m.rule.invite_for_me", ".m.rule.member_event",
                    ".m.rule.is_user_mention", ".m.rule.is_room_mention", ".m.rule.tombstone", ".m.rule.reaction",
                    ".m.rule.room.server_acl", ".m.rule.suppress_edits"]
DEFAULT_UNDERRIDE = [".m.rule.call", ".m.rule.encrypted_room_one_to_one", ".m.rule.room_one_to_one",
                     ".m.rule.message", ".m.rule.encrypted"]
PR = V3 + "/pushrules/global"


def ids(rules):
    return [r["rule_id"] for r in rules]


class PushCase(RoomTestCase):
    server_config = {"outbound_allow_private": "true"}

    def rules(self, token):
        r = self.req("GET", V3 + "/pushrules/", token=token)
        self.assertEqual(r.status, 200, r)
        return r.json["global"]

    def put_rule(self, token, kind, rule_id, body, expect=200, **params):
        qs = ("?" + urllib.parse.urlencode(params)) if params else ""
        r = self.req("PUT", "%s/%s/%s%s" % (PR, kind, q(rule_id), qs), token=token, body=body)
        self.assertEqual(r.status, expect, r)
        return r

    def counts(self, token, room, filter_=None):
        """The room's unread_notifications from an initial sync (and the thread counts when asked)."""
        s = self.sync(token, filter_=filter_)
        joined = s["rooms"]["join"][room]
        return joined["unread_notifications"], joined.get("unread_thread_notifications")

    def receipt(self, token, room, event_id, type_="m.read", thread=None, expect=200):
        body = {"thread_id": thread} if thread else {}
        r = self.req("POST", V3 + "/rooms/%s/receipt/%s/%s" % (q(room), type_, q(event_id)), token=token, body=body)
        self.assertEqual(r.status, expect, r)

    def pair(self, preset="public_chat"):
        """alice creates a room, bob joins: (alice, bob, room)."""
        a = self.user()
        b = self.user()
        room = self.create_room(a[1], preset=preset)
        self.join(b[1], room)
        return a, b, room

    def third(self, room):
        c = self.user()
        self.join(c[1], room)
        return c


# ---- the rule endpoints -----------------------------------------------------------------------------------------

class PushRules(PushCase):
    def test_defaults(self):
        uid, tok = self.user()
        r = self.req("GET", V3 + "/pushrules/", token=tok)
        self.assertSpec("GET", V3 + "/pushrules/", r)
        g = r.json["global"]
        self.assertEqual(ids(g["override"]), DEFAULT_OVERRIDE)
        self.assertEqual(ids(g["underride"]), DEFAULT_UNDERRIDE)
        self.assertEqual((g["content"], g["room"], g["sender"]), ([], [], []))
        self.assertFalse(g["override"][0]["enabled"])
        self.assertTrue(all(rule["default"] for rule in g["override"] + g["underride"]))
        invite = g["override"][2]["conditions"]
        self.assertIn({"key": "state_key", "kind": "event_match", "pattern": uid}, invite)
        mention = g["override"][4]["conditions"][0]
        self.assertEqual((mention["key"], mention["value"]), ("content.m\\.mentions.user_ids", uid))
        r2 = self.req("GET", V3 + "/pushrules/global/", token=tok)
        self.assertSpec("GET", V3 + "/pushrules/global/", r2)
        self.assertEqual(r2.json, g)
        r3 = self.req("GET", PR + "/underride/.m.rule.message", token=tok)
        self.assertSpec("GET", PR + "/underride/.m.rule.message", r3)
        self.assertEqual(r3.json["actions"], ["notify"])

    def test_put_get_delete(self):
        uid, tok = self.user()
        body = {"conditions": [{"kind": "event_match", "key": "content.body", "pattern": "beer"},
                               {"kind": "room_member_count", "is": "<=10"}],
                "actions": ["notify", {"set_tweak": "sound", "value": "beeroclock.wav"}]}
        r = self.put_rule(tok, "override", "beer", body)
        self.assertSpec("PUT", PR + "/override/beer", r)
        r = self.req("GET", PR + "/override/beer", token=tok)
        self.assertSpec("GET", PR + "/override/beer", r)
        self.assertEqual(r.json, dict(body, rule_id="beer", default=False, enabled=True))
        g = self.rules(tok)
        self.assertEqual(ids(g["override"])[:3], [".m.rule.master", "beer", ".m.rule.suppress_notices"])
        # replacing keeps the enabled state
        self.req("PUT", PR + "/override/beer/enabled", token=tok, body={"enabled": False})
        self.put_rule(tok, "override", "beer", dict(body, actions=[]))
        r = self.req("GET", PR + "/override/beer", token=tok)
        self.assertEqual((r.json["actions"], r.json["enabled"]), ([], False))
        r = self.req("DELETE", PR + "/override/beer", token=tok)
        self.assertSpec("DELETE", PR + "/override/beer", r)
        self.assertEqual(r.status, 200)
        self.assertError(self.req("GET", PR + "/override/beer", token=tok), 404, "M_NOT_FOUND")
        self.assertError(self.req("DELETE", PR + "/override/beer", token=tok), 404, "M_NOT_FOUND")

    def test_room_sender_content_kinds(self):
        uid, tok = self.user()
        room = self.create_room(tok)
        self.put_rule(tok, "room", room, {"actions": []})
        self.put_rule(tok, "sender", "@spam:example.org", {"actions": []})
        self.put_rule(tok, "content", "cake", {"pattern": "cake", "actions": ["notify"]})
        g = self.rules(tok)
        self.assertEqual(g["room"], [{"rule_id": room, "default": False, "enabled": True, "actions": []}])
        self.assertEqual(ids(g["sender"]), ["@spam:example.org"])
        self.assertEqual(g["content"][0]["pattern"], "cake")
        r = self.req("GET", PR + "/room/" + q(room), token=tok)
        self.assertSpec("GET", PR + "/room/x", r)

    def test_before_after(self):
        uid, tok = self.user()
        rule = {"pattern": "x", "actions": []}
        self.put_rule(tok, "content", "a", rule)
        self.put_rule(tok, "content", "b", rule)               # new rules come first: b a
        self.put_rule(tok, "content", "c", rule, after="b")    # b c a
        self.put_rule(tok, "content", "d", rule, before="a")   # b c d a
        self.put_rule(tok, "content", "e", rule, before="b", after="a")  # before wins: e b c d a
        self.assertEqual(ids(self.rules(tok)["content"]), ["e", "b", "c", "d", "a"])
        self.put_rule(tok, "content", "e", rule, after="a")    # moves: b c d a e
        self.assertEqual(ids(self.rules(tok)["content"]), ["b", "c", "d", "a", "e"])

    def test_enabled_and_actions(self):
        uid, tok = self.user()
        r = self.req("GET", PR + "/override/.m.rule.master/enabled", token=tok)
        self.assertSpec("GET", PR + "/override/.m.rule.master/enabled", r)
        self.assertEqual(r.json, {"enabled": False})
        r = self.req("PUT", PR + "/override/.m.rule.master/enabled", token=tok, body={"enabled": True})
        self.assertSpec("PUT", PR + "/override/.m.rule.master/enabled", r)
        self.assertEqual(self.req("GET", PR + "/override/.m.rule.master/enabled", token=tok).json, {"enabled": True})
        actions = ["notify", {"set_tweak": "highlight"}]
        r = self.req("PUT", PR + "/underride/.m.rule.message/actions", token=tok, body={"actions": actions})
        self.assertSpec("PUT", PR + "/underride/.m.rule.message/actions", r)
        r = self.req("GET", PR + "/underride/.m.rule.message/actions", token=tok)
        self.assertSpec("GET", PR + "/underride/.m.rule.message/actions", r)
        self.assertEqual(r.json, {"actions": actions})
        # historical actions are dropped
        self.req("PUT", PR + "/underride/.m.rule.message/actions", token=tok,
                 body={"actions": ["notify", "coalesce", "dont_notify"]})
        self.assertEqual(self.req("GET", PR + "/underride/.m.rule.message/actions", token=tok).json,
                         {"actions": ["notify"]})
        # the default rule stays a default rule
        rule = self.req("GET", PR + "/underride/.m.rule.message", token=tok).json
        self.assertTrue(rule["default"])

    def test_errors_change_nothing(self):
        uid, tok = self.user()
        self.put_rule(tok, "content", "mine", {"pattern": "x", "actions": ["notify"]})
        before = self.rules(tok)
        cases = [
            # (method, path, body or raw, status, errcode)
            ("GET", PR + "/bogus/x", None, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/bogus/x", {"actions": []}, 400, "M_INVALID_PARAM"),
            ("DELETE", PR + "/bogus/x", None, 400, "M_INVALID_PARAM"),
            ("GET", PR + "/bogus/x/enabled", None, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/bogus/x/actions", {"actions": []}, 400, "M_INVALID_PARAM"),
            ("GET", PR + "/override/nope", None, 404, "M_NOT_FOUND"),
            ("GET", PR + "/override/nope/enabled", None, 404, "M_NOT_FOUND"),
            ("GET", PR + "/override/nope/actions", None, 404, "M_NOT_FOUND"),
            ("PUT", PR + "/override/nope/enabled", {"enabled": True}, 404, "M_NOT_FOUND"),
            ("PUT", PR + "/override/nope/actions", {"actions": []}, 404, "M_NOT_FOUND"),
            ("PUT", PR + "/content/.m.rule.message/enabled", {"enabled": True}, 404, "M_NOT_FOUND"),
            ("DELETE", PR + "/override/nope", None, 404, "M_NOT_FOUND"),
            ("DELETE", PR + "/override/.m.rule.master", None, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/override/.mine", {"actions": []}, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/override/.m.rule.master", {"actions": []}, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/override/" + q("a/b"), {"actions": []}, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/override/" + q("a\\b"), {"actions": []}, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/room/not-a-room", {"actions": []}, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/sender/nobody", {"actions": []}, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/override/x?before=nope", {"actions": []}, 400, "M_UNKNOWN"),
            ("PUT", PR + "/override/x?after=nope", {"actions": []}, 400, "M_UNKNOWN"),
            ("PUT", PR + "/override/x?before=.m.rule.master", {"actions": []}, 400, "M_UNKNOWN"),
            ("PUT", PR + "/override/x", b"{not json", 400, "M_NOT_JSON"),
            ("PUT", PR + "/override/x", {}, 400, "M_MISSING_PARAM"),
            ("PUT", PR + "/override/x", {"actions": "notify"}, 400, "M_BAD_JSON"),
            ("PUT", PR + "/override/x", {"actions": ["explode"]}, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/override/x", {"actions": [{"set_tweak": "highlight", "value": "yes"}]}, 400,
             "M_INVALID_PARAM"),
            ("PUT", PR + "/override/x", {"actions": [], "conditions": {}}, 400, "M_BAD_JSON"),
            ("PUT", PR + "/override/x", {"actions": [], "conditions": [{"kind": "event_match", "key": "type"}]}, 400,
             "M_INVALID_PARAM"),
            ("PUT", PR + "/override/x",
             {"actions": [], "conditions": [{"kind": "event_property_is", "key": "a", "value": 1.5}]}, 400,
             "M_INVALID_PARAM"),
            ("PUT", PR + "/override/x", {"actions": [], "conditions": [{"kind": "room_member_count", "is": "~2"}]},
             400, "M_INVALID_PARAM"),
            ("PUT", PR + "/content/x", {"actions": []}, 400, "M_MISSING_PARAM"),
            ("PUT", PR + "/content/x", {"actions": [], "pattern": 5}, 400, "M_BAD_JSON"),
            ("PUT", PR + "/override/mine/enabled", {}, 400, "M_MISSING_PARAM"),
            ("PUT", PR + "/content/mine/enabled", {"enabled": "yes"}, 400, "M_BAD_JSON"),
            ("PUT", PR + "/content/mine/enabled", b"[1", 400, "M_NOT_JSON"),
            ("PUT", PR + "/content/mine/actions", {}, 400, "M_MISSING_PARAM"),
            ("PUT", PR + "/content/mine/actions", {"actions": ["bogus"]}, 400, "M_INVALID_PARAM"),
            ("PUT", PR + "/content/mine/actions", {"actions": {}}, 400, "M_BAD_JSON"),
        ]
        for method, path, body, status, errcode in cases:
            if isinstance(body, bytes):
                r = self.req(method, path, token=tok, raw=body, headers={"Content-Type": "application/json"})
            else:
                r = self.req(method, path, token=tok, body=body)
            with self.subTest(method=method, path=path, body=body):
                self.assertError(r, status, errcode)
        self.assertEqual(self.rules(tok), before)
        for method, path in (("GET", V3 + "/pushrules/"), ("GET", PR + "/override/.m.rule.master"),
                             ("PUT", PR + "/override/x"), ("DELETE", PR + "/content/mine"),
                             ("PUT", PR + "/content/mine/enabled"), ("GET", PR + "/content/mine/actions")):
            self.assertError(self.req(method, path, body={"actions": []} if method == "PUT" else None), 401,
                             "M_MISSING_TOKEN")
            self.assertError(self.req(method, path, token="axo_bogus", body={} if method == "PUT" else None), 401,
                             "M_UNKNOWN_TOKEN")
        self.assertEqual(self.rules(tok), before)

    def test_rules_in_sync_and_account_data(self):
        uid, tok = self.user()
        s = self.sync(tok)
        evs = {e["type"]: e["content"] for e in s["account_data"]["events"]}
        self.assertEqual(evs["m.push_rules"]["global"], self.rules(tok))
        self.put_rule(tok, "sender", "@boss:example.org", {"actions": ["notify", {"set_tweak": "highlight"}]})
        s2 = self.sync(tok, since=s["next_batch"])
        evs = {e["type"]: e["content"] for e in s2["account_data"]["events"]}
        self.assertEqual(ids(evs["m.push_rules"]["global"]["sender"]), ["@boss:example.org"])
        self.assertEqual(evs["m.push_rules"]["global"], self.rules(tok))
        r = self.req("GET", V3 + "/user/%s/account_data/m.push_rules" % q(uid), token=tok)
        self.assertEqual(r.json["global"], self.rules(tok))
        # nothing new: no account data in the next sync
        s3 = self.sync(tok, since=s2["next_batch"])
        self.assertNotIn("account_data", s3)
        # clients cannot overwrite the rules as plain account data
        r = self.req("PUT", V3 + "/user/%s/account_data/m.push_rules" % q(uid), token=tok, body={"global": {}})
        self.assertEqual(r.status, 405, r)
        self.assertEqual(evs["m.push_rules"]["global"], self.rules(tok))
        # a filter on account data types applies to it too
        s4 = self.sync(tok, filter_={"account_data": {"not_types": ["m.push_rules"]}})
        self.assertNotIn("m.push_rules", [e["type"] for e in s4.get("account_data", {}).get("events", [])])


# ---- every condition kind, end to end --------------------------------------------------------------------------

class Conditions(PushCase):
    def notified(self, token):
        """Event ID -> (highlight, actions) of the user's notifications."""
        r = self.req("GET", V3 + "/notifications?limit=100", token=token)
        self.assertEqual(r.status, 200, r)
        return {n["event"]["event_id"]: n for n in r.json["notifications"]}

    def test_event_match_glob_and_words(self):
        (aid, at), (bid, bt), room = self.pair()
        self.third(room)
        self.put_rule(bt, "override", "lunch", {"conditions": [
            {"kind": "event_match", "key": "content.body", "pattern": "lunc?*"}],
            "actions": ["notify", {"set_tweak": "highlight"}]})
        yes = self.send(at, room, {"msgtype": "m.text", "body": "Who wants LUNCH today?"})
        no = self.send(at, room, {"msgtype": "m.text", "body": "brunch is better"})
        n = self.notified(bt)
        self.assertEqual(n[yes]["actions"], ["notify", {"set_tweak": "highlight"}])
        self.assertNotIn({"set_tweak": "highlight"}, n[no]["actions"])
        self.assertEqual(self.counts(bt, room)[0], {"notification_count": 2, "highlight_count": 1})

    def test_event_property_is_and_contains(self):
        (aid, at), (bid, bt), room = self.pair()
        self.third(room)
        # .m.rule.is_user_mention: event_property_contains on content.m\.mentions.user_ids
        mention = self.send(at, room, {"msgtype": "m.text", "body": "hey", "m.mentions": {"user_ids": [bid]}})
        other = self.send(at, room, {"msgtype": "m.text", "body": "hey", "m.mentions": {"user_ids": [aid]}})
        # a user rule with event_property_is on a boolean
        self.put_rule(bt, "override", "urgent", {"conditions": [
            {"kind": "event_property_is", "key": "content.org\\.example\\.urgent", "value": True}],
            "actions": ["notify", {"set_tweak": "highlight"}, {"set_tweak": "sound", "value": "siren"}]})
        urgent = self.send(at, room, {"msgtype": "m.text", "body": "x", "org.example.urgent": True})
        not_urgent = self.send(at, room, {"msgtype": "m.text", "body": "x", "org.example.urgent": "true"})
        n = self.notified(bt)
        self.assertIn({"set_tweak": "highlight"}, n[mention]["actions"])
        self.assertNotIn({"set_tweak": "highlight"}, n[other]["actions"])
        self.assertIn({"set_tweak": "sound", "value": "siren"}, n[urgent]["actions"])
        self.assertEqual(n[not_urgent]["actions"], ["notify"])

    def test_contains_display_name(self):
        (aid, at), (bid, bt), room = self.pair()
        self.third(room)
        r = self.req("PUT", V3 + "/profile/%s/displayname" % q(bid), token=bt, body={"displayname": "Bobby Tables"})
        self.assertEqual(r.status, 200, r)
        self.put_rule(bt, "override", "myname", {"conditions": [{"kind": "contains_display_name"}],
                                                  "actions": ["notify", {"set_tweak": "highlight"}]})
        yes = self.send(at, room, {"msgtype": "m.text", "body": "ask bobby tables!"})
        no = self.send(at, room, {"msgtype": "m.text", "body": "ask bobby tablespoon"})
        n = self.notified(bt)
        self.assertIn({"set_tweak": "highlight"}, n[yes]["actions"])
        self.assertNotIn({"set_tweak": "highlight"}, n[no]["actions"])

    def test_room_member_count(self):
        (aid, at), (bid, bt), room = self.pair()
        one_to_one = self.send(at, room)            # 2 members: .m.rule.room_one_to_one, with sound
        self.third(room)
        group = self.send(at, room)                 # 3 members: .m.rule.message, no sound
        self.put_rule(bt, "underride", "big", {"conditions": [{"kind": "room_member_count", "is": ">=3"},
                                                              {"kind": "event_match", "key": "type",
                                                               "pattern": "m.room.message"}],
                                               "actions": ["notify", {"set_tweak": "sound", "value": "big"}]})
        big = self.send(at, room)
        n = self.notified(bt)
        self.assertIn({"set_tweak": "sound", "value": "default"}, n[one_to_one]["actions"])
        self.assertEqual(n[group]["actions"], ["notify"])
        self.assertIn({"set_tweak": "sound", "value": "big"}, n[big]["actions"])

    def test_sender_notification_permission(self):
        (aid, at), (bid, bt), room = self.pair()
        cid, ct = self.third(room)
        body = {"msgtype": "m.text", "body": "everyone!", "m.mentions": {"room": True}}
        from_admin = self.send(at, room, body)      # the creator: enough power for @room
        from_member = self.send(ct, room, body)     # power 0 < notifications.room (50)
        n = self.notified(bt)
        self.assertIn({"set_tweak": "highlight"}, n[from_admin]["actions"])
        self.assertNotIn({"set_tweak": "highlight"}, n[from_member]["actions"])
        # lowering notifications.room lets everyone ping the room
        pl = self.req("GET", V3 + "/rooms/%s/state/m.room.power_levels" % q(room), token=at).json
        pl["notifications"] = {"room": 0}
        self.state(at, room, "m.room.power_levels", pl)
        again = self.send(ct, room, body)
        self.assertIn({"set_tweak": "highlight"}, self.notified(bt)[again]["actions"])

    def test_unknown_condition_never_matches_and_master(self):
        (aid, at), (bid, bt), room = self.pair()
        self.put_rule(bt, "override", "future", {"conditions": [{"kind": "org.example.future"}],
                                                 "actions": ["notify", {"set_tweak": "highlight"}]})
        e = self.send(at, room)
        self.assertNotIn({"set_tweak": "highlight"}, self.notified(bt)[e]["actions"])
        self.req("PUT", PR + "/override/.m.rule.master/enabled", token=bt, body={"enabled": True})
        silent = self.send(at, room)
        self.assertNotIn(silent, self.notified(bt))

    def test_defaults_for_state_reactions_edits_notices(self):
        (aid, at), (bid, bt), room = self.pair()
        first = self.send(at, room)
        notice = self.send(at, room, {"msgtype": "m.notice", "body": "bot says"})
        reaction = self.send(at, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": first, "key": "x"}},
                             type_="m.reaction")
        edit = self.send(at, room, {"msgtype": "m.text", "body": "* fixed", "m.new_content": {"body": "fixed"},
                                    "m.relates_to": {"rel_type": "m.replace", "event_id": first}})
        topic = self.state(at, room, "m.room.topic", {"topic": "t"}).json["event_id"]
        n = self.notified(bt)
        self.assertIn(first, n)
        for e in (notice, reaction, edit, topic):
            self.assertNotIn(e, n)

    def test_invite_notifies_the_invitee(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="private_chat")
        r = self.req("POST", V3 + "/rooms/%s/invite" % q(room), token=at, body={"user_id": bid})
        self.assertEqual(r.status, 200, r)
        n = self.req("GET", V3 + "/notifications", token=bt).json["notifications"]
        self.assertEqual(len(n), 1)
        self.assertEqual(n[0]["event"]["type"], "m.room.member")
        self.assertEqual(n[0]["event"]["state_key"], bid)
        self.assertEqual(n[0]["room_id"], room)


# ---- counts, receipts, threads, /notifications ---------------------------------------------------------------------

class Counts(PushCase):
    def test_counts_and_receipts(self):
        (aid, at), (bid, bt), room = self.pair()
        self.third(room)
        s = self.sync(bt)
        self.assertEqual(s["rooms"]["join"][room]["unread_notifications"],
                         {"notification_count": 0, "highlight_count": 0})
        e1 = self.send(at, room)
        e2 = self.send(at, room, {"msgtype": "m.text", "body": "@bob", "m.mentions": {"user_ids": [bid]}})
        e3 = self.send(at, room)
        self.send(bt, room)  # bob's own message does not count for him, and reads up to it
        s2 = self.sync(bt, since=s["next_batch"])
        # the counts arrive in the same sync as the events
        self.assertEqual(s2["rooms"]["join"][room]["unread_notifications"],
                         {"notification_count": 0, "highlight_count": 0})
        e4 = self.send(at, room)
        e5 = self.send(at, room, {"msgtype": "m.text", "body": "x", "m.mentions": {"user_ids": [bid]}})
        s3 = self.sync(bt, since=s2["next_batch"])
        self.assertEqual(s3["rooms"]["join"][room]["unread_notifications"],
                         {"notification_count": 2, "highlight_count": 1})
        # a receipt on an older event: what came after it stays unread
        self.receipt(bt, room, e4)
        s4 = self.sync(bt, since=s3["next_batch"])
        self.assertEqual(s4["rooms"]["join"][room]["unread_notifications"],
                         {"notification_count": 1, "highlight_count": 1})
        # a private receipt clears too, and receipts never move backwards
        self.receipt(bt, room, e5, type_="m.read.private")
        self.receipt(bt, room, e1)
        self.assertEqual(self.counts(bt, room)[0], {"notification_count": 0, "highlight_count": 0})
        # alice was notified of bob's message, but sending e4 and e5 read up to them
        self.assertEqual(self.counts(at, room)[0]["notification_count"], 0)
        self.assertTrue(e2 and e3)

    def test_receipt_recount_after_older_event(self):
        (aid, at), (bid, bt), room = self.pair()
        events = [self.send(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(5)]
        self.assertEqual(self.counts(bt, room)[0]["notification_count"], 5)
        self.receipt(bt, room, events[1])
        self.assertEqual(self.counts(bt, room)[0]["notification_count"], 3)
        self.receipt(bt, room, events[3])
        self.assertEqual(self.counts(bt, room)[0]["notification_count"], 1)

    def test_threads(self):
        (aid, at), (bid, bt), room = self.pair()
        root = self.send(at, room, {"msgtype": "m.text", "body": "root"})
        in_thread = {"msgtype": "m.text", "body": "reply",
                     "m.relates_to": {"rel_type": "m.thread", "event_id": root}}
        t1 = self.send(at, room, in_thread)
        t2 = self.send(at, room, dict(in_thread, **{"m.mentions": {"user_ids": [bid]}}))
        main2 = self.send(at, room)
        per_thread = {"room": {"timeline": {"unread_thread_notifications": True}}}
        # without the filter option the room's counts include its threads
        self.assertEqual(self.counts(bt, room)[0], {"notification_count": 4, "highlight_count": 1})
        main, threads = self.counts(bt, room, per_thread)
        self.assertEqual(main, {"notification_count": 2, "highlight_count": 0})
        self.assertEqual(threads, {root: {"notification_count": 2, "highlight_count": 1}})
        # a threaded receipt in the thread clears the thread only
        self.receipt(bt, room, t2, thread=root)
        main, threads = self.counts(bt, room, per_thread)
        self.assertEqual(main["notification_count"], 2)
        self.assertEqual(threads, {})
        # a threaded receipt for the main timeline clears the main timeline only
        t3 = self.send(at, room, in_thread)
        self.receipt(bt, room, main2, thread="main")
        main, threads = self.counts(bt, room, per_thread)
        self.assertEqual(main["notification_count"], 0)
        self.assertEqual(threads, {root: {"notification_count": 1, "highlight_count": 0}})
        # an unthreaded receipt clears everything up to its event
        self.send(at, room, in_thread)
        self.receipt(bt, room, t3)
        main, threads = self.counts(bt, room, per_thread)
        self.assertEqual(threads, {root: {"notification_count": 1, "highlight_count": 0}})
        # replying in the thread reads it
        self.send(bt, room, in_thread)
        main, threads = self.counts(bt, room, per_thread)
        self.assertEqual((main["notification_count"], threads), (0, {}))
        self.assertTrue(t1)

    def test_muted_room(self):
        (aid, at), (bid, bt), room = self.pair()
        # what Element does for "mute": an override rule on the room ID with no actions
        self.put_rule(bt, "override", room, {"conditions": [{"kind": "event_match", "key": "room_id",
                                                             "pattern": room}], "actions": []})
        self.send(at, room)
        self.send(at, room, {"msgtype": "m.text", "body": "x", "m.mentions": {"user_ids": [bid]}})
        self.assertEqual(self.counts(bt, room)[0], {"notification_count": 0, "highlight_count": 0})
        self.assertEqual(self.req("GET", V3 + "/notifications", token=bt).json["notifications"], [])
        # "mentions only": a room rule with no actions still lets mentions through
        room2 = self.create_room(at, preset="public_chat")
        self.join(bt, room2)
        self.put_rule(bt, "room", room2, {"actions": []})
        self.send(at, room2)
        self.send(at, room2, {"msgtype": "m.text", "body": "x", "m.mentions": {"user_ids": [bid]}})
        self.assertEqual(self.counts(bt, room2)[0], {"notification_count": 1, "highlight_count": 1})


class Notifications(PushCase):
    def test_list_paginate_filter(self):
        (aid, at), (bid, bt), room = self.pair()
        sent = []
        for i in range(5):
            body = {"msgtype": "m.text", "body": str(i)}
            if i % 2 == 0:
                body["m.mentions"] = {"user_ids": [bid]}
            sent.append(self.send(at, room, body))

        def check(sent, highlights):
            r = self.req("GET", V3 + "/notifications", token=bt)
            self.assertSpec("GET", V3 + "/notifications", r)
            n = r.json["notifications"]
            self.assertEqual([x["event"]["event_id"] for x in n], sent[::-1])  # newest first
            self.assertTrue(all(x["room_id"] == room and not x["read"] and x["ts"] > 0 for x in n))
            self.assertNotIn("next_token", r.json)
            # pages of two
            seen, frm = [], None
            for _ in range(len(sent)):
                qs = "limit=2" + ("&from=" + frm if frm else "")
                page = self.req("GET", V3 + "/notifications?" + qs, token=bt)
                self.assertSpec("GET", V3 + "/notifications", page)
                seen += [x["event"]["event_id"] for x in page.json["notifications"]]
                frm = page.json.get("next_token")
                if frm is None:
                    break
            self.assertEqual(seen, sent[::-1])
            hl = self.req("GET", V3 + "/notifications?only=highlight", token=bt).json["notifications"]
            self.assertEqual([x["event"]["event_id"] for x in hl], highlights)

        # at once, while they are staged (unless this machine stalled for 200 ms), then from the user's list
        check(sent, [sent[4], sent[2], sent[0]])
        self.wait_metric(lambda: self.metric("axon_notifications_staged") == 0, "notifications never moved")
        check(sent, [sent[4], sent[2], sent[0]])
        # both: pages run from the staged ones into the list
        sent.append(self.send(at, room, {"msgtype": "m.text", "body": "5", "m.mentions": {"user_ids": [bid]}}))
        sent.append(self.send(at, room, {"msgtype": "m.text", "body": "6"}))
        check(sent, [sent[5], sent[4], sent[2], sent[0]])
        # read flags follow the receipt; the count is made again from both
        self.receipt(bt, room, sent[2])
        n = self.req("GET", V3 + "/notifications", token=bt).json["notifications"]
        self.assertEqual([x["read"] for x in n], [False, False, False, False, True, True, True])
        self.assertEqual(self.counts(bt, room)[0], {"notification_count": 4, "highlight_count": 2})

    def test_bad_parameters(self):
        uid, tok = self.user()
        for qs in ("from=garbage", "from=-1", "limit=-1", "limit=ten", "only=everything"):
            self.assertError(self.req("GET", V3 + "/notifications?" + qs, token=tok), 400, "M_INVALID_PARAM")
        self.assertError(self.req("GET", V3 + "/notifications"), 401, "M_MISSING_TOKEN")


# ---- pushers --------------------------------------------------------------------------------------------------------

def pusher(url, pushkey="pk", app_id="org.example.app", **extra):
    p = {"kind": "http", "app_id": app_id, "pushkey": pushkey, "app_display_name": "Example",
         "device_display_name": "Phone", "lang": "en", "data": {"url": url}}
    p.update(extra)
    return p


class Pushers(PushCase):
    URL = "http://127.0.0.1:9/_matrix/push/v1/notify"

    def pushers(self, token):
        r = self.req("GET", V3 + "/pushers", token=token)
        self.assertSpec("GET", V3 + "/pushers", r)
        return r.json["pushers"]

    def set(self, token, body, expect=200):
        r = self.req("POST", V3 + "/pushers/set", token=token, body=body)
        self.assertEqual(r.status, expect, r)
        if expect == 200:
            self.assertSpec("POST", V3 + "/pushers/set", r)
        return r

    def test_set_list_update_delete(self):
        uid, tok = self.user()
        self.assertEqual(self.pushers(tok), [])
        p = pusher(self.URL, profile_tag="tag", data={"url": self.URL, "format": "event_id_only", "x": 1})
        self.set(tok, p)
        got = self.pushers(tok)
        want = {k: v for k, v in p.items()}
        self.assertEqual(got, [want])
        self.set(tok, dict(p, device_display_name="New phone"))
        self.assertEqual(self.pushers(tok)[0]["device_display_name"], "New phone")
        self.set(tok, pusher(self.URL, pushkey="other"))
        self.assertEqual(sorted(x["pushkey"] for x in self.pushers(tok)), ["other", "pk"])
        self.set(tok, {"kind": None, "app_id": p["app_id"], "pushkey": "pk"})
        self.assertEqual([x["pushkey"] for x in self.pushers(tok)], ["other"])
        self.set(tok, {"kind": None, "app_id": p["app_id"], "pushkey": "never-there"})  # deleting nothing is fine

    def test_append(self):
        aid, at = self.user()
        bid, bt = self.user()
        self.set(at, pusher(self.URL, pushkey="shared"))
        self.set(bt, pusher(self.URL, pushkey="shared", append=True))
        self.assertEqual(len(self.pushers(at)), 1)
        # without append, the pushkey moves: other users' pushers of it go
        self.set(bt, pusher(self.URL, pushkey="shared"))
        self.assertEqual(self.pushers(at), [])
        self.assertEqual(len(self.pushers(bt)), 1)

    def test_errors_change_nothing(self):
        uid, tok = self.user()
        self.set(tok, pusher(self.URL))
        before = self.pushers(tok)
        good = pusher(self.URL, pushkey="new")
        cases = [
            (b"{nope", "M_NOT_JSON"),
            ({k: v for k, v in good.items() if k != "kind"}, "M_MISSING_PARAM"),
            ({k: v for k, v in good.items() if k != "app_id"}, "M_MISSING_PARAM"),
            ({k: v for k, v in good.items() if k != "pushkey"}, "M_MISSING_PARAM"),
            ({k: v for k, v in good.items() if k != "lang"}, "M_MISSING_PARAM"),
            ({k: v for k, v in good.items() if k != "app_display_name"}, "M_MISSING_PARAM"),
            ({k: v for k, v in good.items() if k != "device_display_name"}, "M_MISSING_PARAM"),
            ({k: v for k, v in good.items() if k != "data"}, "M_MISSING_PARAM"),
            (dict(good, data={}), "M_MISSING_PARAM"),
            (dict(good, kind=5), "M_BAD_JSON"),
            (dict(good, pushkey=5), "M_BAD_JSON"),
            (dict(good, data="x"), "M_BAD_JSON"),
            (dict(good, append="yes"), "M_BAD_JSON"),
            (dict(good, kind="email", app_id="m.email", pushkey="a@example.org"), "M_INVALID_PARAM"),
            (dict(good, kind="carrier-pigeon"), "M_INVALID_PARAM"),
            (dict(good, app_id="x" * 65), "M_INVALID_PARAM"),
            (dict(good, pushkey="x" * 513), "M_INVALID_PARAM"),
            (dict(good, data={"url": "not a url"}), "M_INVALID_PARAM"),
            (dict(good, data={"url": "ftp://127.0.0.1/_matrix/push/v1/notify"}), "M_INVALID_PARAM"),
            (dict(good, data={"url": "http://127.0.0.1:9/wrong/path"}), "M_INVALID_PARAM"),
            (dict(good, data={"url": "http://u:p@127.0.0.1/_matrix/push/v1/notify"}), "M_INVALID_PARAM"),
            (dict(good, data={"url": self.URL, "format": "full"}), "M_INVALID_PARAM"),
        ]
        for body, errcode in cases:
            if isinstance(body, bytes):
                r = self.req("POST", V3 + "/pushers/set", token=tok, raw=body,
                             headers={"Content-Type": "application/json"})
            else:
                r = self.req("POST", V3 + "/pushers/set", token=tok, body=body)
            with self.subTest(body=body):
                self.assertError(r, 400, errcode)
        self.assertError(self.req("POST", V3 + "/pushers/set", body=good), 401, "M_MISSING_TOKEN")
        self.assertError(self.req("GET", V3 + "/pushers"), 401, "M_MISSING_TOKEN")
        self.assertEqual(self.pushers(tok), before)

    def test_logout_removes_the_devices_pushers(self):
        name = unique()
        self.server.register(name, device_id="PHONE")
        r = self.server.login(name, device_id="LAPTOP")
        laptop = r.json["access_token"]
        phone = self.server.login(name, device_id="PHONE").json["access_token"]
        self.set(phone, pusher(self.URL, pushkey="phone"))
        self.set(laptop, pusher(self.URL, pushkey="laptop"))
        self.assertEqual(len(self.pushers(laptop)), 2)
        self.assertEqual(self.req("POST", V3 + "/logout", token=phone, body={}).status, 200)
        self.assertEqual([x["pushkey"] for x in self.pushers(laptop)], ["laptop"])


class PusherUrlPolicy(PushCase):
    """outbound_allow_private off (the default): loopback, private and plain-http gateways are refused."""
    server_config = {}

    def test_refused_and_accepted(self):
        uid, tok = self.user()
        for url in ("http://127.0.0.1:9/_matrix/push/v1/notify", "https://127.0.0.1/_matrix/push/v1/notify",
                    "https://10.1.2.3/_matrix/push/v1/notify", "https://[::1]/_matrix/push/v1/notify",
                    "https://[fd00::1]:8443/_matrix/push/v1/notify", "https://192.168.1.1/_matrix/push/v1/notify",
                    "https://169.254.169.254/_matrix/push/v1/notify", "https://localhost/_matrix/push/v1/notify",
                    "https://push.localhost/_matrix/push/v1/notify", "https://[::ffff:127.0.0.1]/_matrix/push/v1/notify",
                    "http://push.example.org/_matrix/push/v1/notify"):
            r = self.req("POST", V3 + "/pushers/set", token=tok, body=pusher(url))
            with self.subTest(url=url):
                self.assertError(r, 400, "M_INVALID_PARAM")
        self.assertEqual(self.req("GET", V3 + "/pushers", token=tok).json["pushers"], [])
        # a public https gateway is fine (nothing is sent: nobody messages this user)
        r = self.req("POST", V3 + "/pushers/set", token=tok,
                     body=pusher("https://push.example.org/_matrix/push/v1/notify?up=1"))
        self.assertEqual(r.status, 200, r)


# ---- delivery to a gateway ------------------------------------------------------------------------------------------

class Delivery(PushCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.gw = Gateway().start()

    @classmethod
    def tearDownClass(cls):
        cls.gw.stop()
        super().tearDownClass()

    def setUp(self):
        self.gw.status = 200
        self.gw.rejected = set()

    def tearDown(self):
        self.assertEqual(self.gw.errors, [], "the gateway saw requests that do not match the spec")

    def with_pusher(self, fmt=None):
        """(alice, bob, room) with a pusher for bob; returns its pushkey too."""
        (aid, at), (bid, bt), room = self.pair()
        self.third(room)
        key = unique("key")
        data = {"url": self.gw.url, "custom": "kept"}
        if fmt:
            data["format"] = fmt
        r = self.req("POST", V3 + "/pushers/set", token=bt, body=pusher(self.gw.url, pushkey=key, data=data))
        self.assertEqual(r.status, 200, r)
        return (aid, at), (bid, bt), room, key

    def test_full_notification(self):
        (aid, at), (bid, bt), room, key = self.with_pusher()
        self.state(at, room, "m.room.name", {"name": "Lunch room"})
        e = self.send(at, room, {"msgtype": "m.text", "body": "hello bob"})
        n = self.gw.wait_for(lambda ns: any(x.get("event_id") == e for x in ns))
        n = self.gw.for_event(e)[0]
        self.assertEqual(n["room_id"], room)
        self.assertEqual((n["type"], n["sender"]), ("m.room.message", aid))
        self.assertEqual(n["content"], {"msgtype": "m.text", "body": "hello bob"})
        self.assertEqual(n["room_name"], "Lunch room")
        self.assertEqual(n["sender_display_name"], aid[1:].split(":")[0])
        self.assertEqual(n["counts"], {"unread": 1})
        self.assertEqual(n["prio"], "low")  # a group message without sound: not urgent
        [d] = n["devices"]
        self.assertEqual((d["app_id"], d["pushkey"]), ("org.example.app", key))
        self.assertEqual(d["data"], {"custom": "kept"})  # the data minus the url
        self.assertEqual(d["tweaks"], {})
        self.assertIsInstance(d["pushkey_ts"], int)
        # a mention: high priority and the highlight tweak
        m = self.send(at, room, {"msgtype": "m.text", "body": "bob!", "m.mentions": {"user_ids": [bid]}})
        self.gw.wait_for(lambda ns: any(x.get("event_id") == m for x in ns))
        n = self.gw.for_event(m)[0]
        self.assertEqual(n["prio"], "high")
        self.assertEqual(n["devices"][0]["tweaks"], {"sound": "default", "highlight": True})
        self.assertEqual(n["counts"], {"unread": 2})
        # operators see it in /metrics
        # (the gateway records a notification before axon has read its answer)
        deadline = time.time() + 10
        while True:
            metrics = self.req("GET", "/metrics").raw.decode()
            sent = [line for line in metrics.splitlines() if line.startswith("axon_push_sent_total ")]
            if (sent and int(sent[0].split()[1]) >= 2) or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertTrue(sent and int(sent[0].split()[1]) >= 2, sent)
        self.assertIn("axon_push_queued ", metrics)

    def test_event_id_only(self):
        (aid, at), (bid, bt), room, key = self.with_pusher(fmt="event_id_only")
        e = self.send(at, room)
        self.gw.wait_for(lambda ns: any(x.get("event_id") == e for x in ns))
        n = self.gw.for_event(e)[0]
        self.assertEqual(set(n), {"event_id", "room_id", "counts", "prio", "devices"})
        self.assertEqual(n["devices"][0]["data"], {"format": "event_id_only", "custom": "kept"})

    def test_none_for_own_messages_or_muted_rooms(self):
        (aid, at), (bid, bt), room, key = self.with_pusher()
        own = self.send(bt, room)
        self.put_rule(bt, "override", room, {"conditions": [{"kind": "event_match", "key": "room_id",
                                                             "pattern": room}], "actions": []})
        muted = self.send(at, room)
        # a marker that does notify, sent after both, so waiting for it proves the others were not sent
        other = self.create_room(at, preset="public_chat")
        self.join(bt, other)
        marker = self.send(at, other)
        self.gw.wait_for(lambda ns: any(x.get("event_id") == marker for x in ns))
        self.assertEqual(self.gw.for_event(own), [])
        self.assertEqual(self.gw.for_event(muted), [])

    def test_receipt_sends_a_badge_update(self):
        (aid, at), (bid, bt), room, key = self.with_pusher()
        e = self.send(at, room)
        self.gw.wait_for(lambda ns: any(x.get("event_id") == e for x in ns))
        self.receipt(bt, room, e)
        ns = self.gw.wait_for(lambda ns: any("event_id" not in x and x["devices"][0]["pushkey"] == key for x in ns))
        badge = [x for x in ns if "event_id" not in x and x["devices"][0]["pushkey"] == key][-1]
        self.assertEqual(badge["counts"], {})  # everything read: zero counts are omitted

    def test_gateway_down_then_back(self):
        (aid, at), (bid, bt), room, key = self.with_pusher()
        port = self.gw.port
        self.gw.stop()
        try:
            sent = [self.send(at, room, {"msgtype": "m.text", "body": "while down %d" % i}) for i in range(3)]
            time.sleep(2.5)  # a few failed attempts, with backoff
        finally:
            self.__class__.gw = Gateway(port=port).start()
        ns = self.gw.wait_for(lambda ns: all(any(x.get("event_id") == e for x in ns) for e in sent), timeout=40)
        got = [x["event_id"] for x in ns if x.get("event_id") in sent]
        self.assertEqual(got, sent)  # in order, each once
        self.assertIn("unreachable", self.server.log_text())

    def test_gateway_errors_are_retried(self):
        (aid, at), (bid, bt), room, key = self.with_pusher()
        self.gw.status = 503
        e = self.send(at, room)
        deadline = time.time() + 10
        while self.gw.requests == 0 and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        self.assertEqual(self.gw.for_event(e), [])
        self.gw.status = 200
        self.gw.wait_for(lambda ns: any(x.get("event_id") == e for x in ns), timeout=30)

    def test_rejected_pushkey_removes_the_pusher(self):
        (aid, at), (bid, bt), room, key = self.with_pusher()
        self.gw.rejected = {key}
        e = self.send(at, room)
        self.gw.wait_for(lambda ns: any(x.get("event_id") == e for x in ns))
        deadline = time.time() + 10
        while time.time() < deadline:
            if self.req("GET", V3 + "/pushers", token=bt).json["pushers"] == []:
                break
            time.sleep(0.05)
        self.assertEqual(self.req("GET", V3 + "/pushers", token=bt).json["pushers"], [])
        self.gw.rejected = set()
        later = self.send(at, room)
        marker_room = self.create_room(at, preset="public_chat")
        self.join(bt, marker_room)
        # no pusher, no push: bob's other notifications are listed, not pushed
        time.sleep(1)
        self.assertEqual(self.gw.for_event(later), [])


class DeliveryAcrossRestart(PushCase):
    """Notifications queued while the gateway is down survive a restart of axon."""
    server_config = {"outbound_allow_private": "true"}

    def test_queue_survives_restart(self):
        gw = Gateway()  # not started: down
        (aid, at), (bid, bt), room = self.pair()
        self.third(room)
        r = self.req("POST", V3 + "/pushers/set", token=bt, body=pusher(gw.url, pushkey="restart"))
        self.assertEqual(r.status, 200, r)
        sent = [self.send(at, room, {"msgtype": "m.text", "body": str(i)}) for i in range(2)]
        time.sleep(1)
        srv = self.server
        srv.stop()
        srv.start()
        gw.start()
        try:
            ns = gw.wait_for(lambda ns: all(any(x.get("event_id") == e for x in ns) for e in sent), timeout=40)
            self.assertEqual([x["event_id"] for x in ns if x.get("event_id") in sent], sent)
            self.assertEqual(gw.errors, [])
        finally:
            gw.stop()


def make_tls(tmp):
    """A CA and a certificate for localhost signed by it (openssl command line)."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=tmp)
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=axon test CA")
    with open(os.path.join(tmp, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:localhost\n")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "gw.key", "-out", "gw.csr", "-subj", "/CN=localhost")
    run("x509", "-req", "-in", "gw.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-out", "gw.pem",
        "-days", "2", "-extfile", "ext.cnf")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.path.join(tmp, "gw.pem"), os.path.join(tmp, "gw.key"))
    return os.path.join(tmp, "ca.pem"), ctx


class DeliveryTls(PushCase):
    """An https gateway: delivered when its certificate verifies, never when it does not."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="axon-push-tls-")
        ca, cls.ctx = make_tls(cls.tmp)
        cls.server_config = {"outbound_allow_private": "true", "federation_ca_file": ca}
        super().setUpClass()
        cls.untrusting = Server(config={"outbound_allow_private": "true"}).start()

    @classmethod
    def tearDownClass(cls):
        try:
            cls.untrusting.stop()
        finally:
            cls.untrusting.cleanup()
            super().tearDownClass()
            shutil.rmtree(cls.tmp, ignore_errors=True)

    def test_verified_and_unverified(self):
        gw = Gateway(ssl_context=self.ctx).start()
        try:
            (aid, at), (bid, bt), room = self.pair()
            self.third(room)
            r = self.req("POST", V3 + "/pushers/set", token=bt, body=pusher(gw.url, pushkey="tls"))
            self.assertEqual(r.status, 200, r)
            e = self.send(at, room)
            gw.wait_for(lambda ns: any(x.get("event_id") == e for x in ns), timeout=20)
            # a server that does not trust the gateway's CA never hands it anything
            other = self.untrusting
            a = other.register(unique())
            b = other.register(unique())
            room2 = other.request("POST", V3 + "/createRoom", token=a["access_token"],
                                  body={"preset": "public_chat"}).json["room_id"]
            other.request("POST", V3 + "/join/" + q(room2), token=b["access_token"], body={})
            r = other.request("POST", V3 + "/pushers/set", token=b["access_token"], body=pusher(gw.url, pushkey="no"))
            self.assertEqual(r.status, 200, r)
            e2 = other.request("PUT", V3 + "/rooms/%s/send/m.room.message/x1" % q(room2), token=a["access_token"],
                               body={"msgtype": "m.text", "body": "x"}).json["event_id"]
            deadline = time.time() + 10
            while "certificate" not in other.log_text() and time.time() < deadline:
                time.sleep(0.1)
            self.assertIn("certificate", other.log_text())
            self.assertEqual(gw.for_event(e2), [])
            self.assertEqual(gw.errors, [])
        finally:
            gw.stop()


if __name__ == "__main__":
    main()
