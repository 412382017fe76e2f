#!/usr/bin/python3
"""Rooms: creation, presets, membership, power levels, aliases, the
directory (server/cs/rooms.c, directory.c; core/rooms.c; auth rules)."""

import threading

from axontest import main, unique
from roomutil import RoomTestCase, V3, q


class CreateRoom(RoomTestCase):
    def test_create_room_defaults_to_v12(self):
        uid, t = self.user()
        r = self.req("POST", V3 + "/createRoom", token=t, body={})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", V3 + "/createRoom", r)
        room = r.json["room_id"]
        self.assertRegex(room, r"^![A-Za-z0-9_-]{43}$")  # v12: the create event's hash, no server part
        create = self.req("GET", V3 + "/rooms/%s/state/m.room.create" % q(room), token=t).json
        self.assertEqual(create["room_version"], "12")
        pl = self.req("GET", V3 + "/rooms/%s/state/m.room.power_levels" % q(room), token=t).json
        self.assertNotIn(uid, pl["users"])  # creators have infinite power in v12
        self.assertEqual(pl["events"]["m.room.tombstone"], 150)
        jr = self.req("GET", V3 + "/rooms/%s/state/m.room.join_rules" % q(room), token=t).json
        self.assertEqual(jr["join_rule"], "invite")

    def test_rooms_created_at_once_are_distinct(self):
        """v12 room IDs are the create event's hash: identical creates in the same millisecond
        must still make different rooms, each with only its own events."""
        uid, t = self.user()
        rooms = [None] * 24

        def create(i):
            rooms[i] = self.req("POST", V3 + "/createRoom", token=t, body={}).json["room_id"]

        threads = [threading.Thread(target=create, args=(i,)) for i in range(len(rooms))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        self.assertEqual(len(set(rooms)), len(rooms))
        for room in rooms[:4]:
            chunk = self.req("GET", V3 + "/rooms/%s/messages?dir=b&limit=50" % q(room), token=t).json["chunk"]
            self.assertEqual([e["type"] for e in chunk].count("m.room.create"), 1)

    def test_room_versions_10_and_11(self):
        uid, t = self.user()
        for v in ("10", "11"):
            room = self.create_room(t, room_version=v, preset="public_chat")
            self.assertRegex(room, r"^![A-Za-z0-9]+:" + self.server.server_name.replace(".", r"\.") + "$")
            create = self.req("GET", V3 + "/rooms/%s/state/m.room.create" % q(room), token=t).json
            self.assertEqual(create["room_version"], v)
            pl = self.req("GET", V3 + "/rooms/%s/state/m.room.power_levels" % q(room), token=t).json
            self.assertEqual(pl["users"][uid], 100)
            if v == "10":
                self.assertEqual(create["creator"], uid)
            else:
                self.assertNotIn("creator", create)

    def test_unsupported_versions(self):
        uid, t = self.user()
        for v in ("9", "1", "13", "banana"):
            r = self.req("POST", V3 + "/createRoom", token=t, body={"room_version": v})
            self.assertError(r, 400, "M_UNSUPPORTED_ROOM_VERSION")
        # creation_content's room_version is ignored
        room = self.create_room(t, creation_content={"room_version": "1"})
        create = self.req("GET", V3 + "/rooms/%s/state/m.room.create" % q(room), token=t).json
        self.assertEqual(create["room_version"], "12")

    def test_presets_name_topic_initial_state(self):
        uid, t = self.user()
        room = self.create_room(t, preset="public_chat", name="The Pub", topic="Beer",
                                initial_state=[{"type": "m.room.guest_access", "state_key": "",
                                                "content": {"guest_access": "can_join"}},
                                               {"type": "org.example.custom", "state_key": "k",
                                                "content": {"x": 1}}])
        g = lambda t_, k="": self.req("GET", V3 + "/rooms/%s/state/%s/%s" % (q(room), t_, k), token=t).json
        self.assertEqual(g("m.room.name")["name"], "The Pub")
        self.assertEqual(g("m.room.topic")["topic"], "Beer")
        self.assertEqual(g("m.room.join_rules")["join_rule"], "public")
        self.assertEqual(g("m.room.history_visibility")["history_visibility"], "shared")
        self.assertEqual(g("m.room.guest_access")["guest_access"], "can_join")  # initial_state wins
        self.assertEqual(g("org.example.custom", "k"), {"x": 1})

    def test_invite_list_and_is_direct(self):
        uid, t = self.user()
        bid, bt = self.user()
        room = self.create_room(t, invite=[bid], is_direct=True, preset="trusted_private_chat")
        s = self.sync(bt)
        inv = s["rooms"]["invite"][room]["invite_state"]["events"]
        me = [e for e in inv if e["type"] == "m.room.member" and e["state_key"] == bid][0]
        self.assertEqual(me["content"]["membership"], "invite")
        self.assertTrue(me["content"]["is_direct"])
        create = [e for e in inv if e["type"] == "m.room.create"][0]
        self.assertEqual(create["content"]["additional_creators"], [bid])  # v12 trusted_private_chat

    def test_power_level_override(self):
        uid, t = self.user()
        room = self.create_room(t, power_level_content_override={"events_default": 50, "users_default": 10})
        pl = self.req("GET", V3 + "/rooms/%s/state/m.room.power_levels" % q(room), token=t).json
        self.assertEqual(pl["events_default"], 50)
        self.assertEqual(pl["users_default"], 10)

    def test_bad_input_leaves_nothing(self):
        uid, t = self.user()
        before = self.req("GET", V3 + "/joined_rooms", token=t).json["joined_rooms"]
        for body in ({"visibility": "secret"}, {"preset": "party"}, {"name": 5}, {"invite": "nope"},
                     {"invite": ["not-a-user"]}, {"initial_state": [{"type": "x"}]}, {"creation_content": []},
                     {"power_level_content_override": {"users": {"@x:y": "high"}}},
                     {"initial_state": [{"type": "m.room.power_levels", "state_key": "",
                                         "content": {"users": {"@x:y": "lots"}}}]}):
            r = self.req("POST", V3 + "/createRoom", token=t, body=body)
            self.assertIn(r.status, (400, 403), (body, r))
        self.assertError(self.req("POST", V3 + "/createRoom", token=t, raw=b"{"), 400, "M_NOT_JSON")
        self.assertError(self.req("POST", V3 + "/createRoom", body={}), 401, "M_MISSING_TOKEN")
        after = self.req("GET", V3 + "/joined_rooms", token=t).json["joined_rooms"]
        self.assertEqual(before, after)

    def test_alias_in_use(self):
        uid, t = self.user()
        name = unique("alias")
        self.create_room(t, room_alias_name=name)
        r = self.req("POST", V3 + "/createRoom", token=t, body={"room_alias_name": name})
        self.assertError(r, 400, "M_ROOM_IN_USE")


class NoFederation(RoomTestCase):
    server_config = {"federation_enabled": "false"}

    def test_remote_invitees_refused_and_nothing_created(self):
        uid, t = self.user()
        before = self.req("GET", V3 + "/joined_rooms", token=t).json["joined_rooms"]
        r = self.req("POST", V3 + "/createRoom", token=t, body={"invite": ["@someone:elsewhere.example"]})
        self.assertEqual((r.status, r.json["errcode"]), (403, "M_FORBIDDEN"), r)
        self.assertEqual(self.req("GET", V3 + "/joined_rooms", token=t).json["joined_rooms"], before)
        r = self.req("POST", V3 + "/rooms/%s/invite" % q(self.create_room(t)), token=t,
                     body={"user_id": "@someone:elsewhere.example"})
        self.assertEqual((r.status, r.json["errcode"]), (403, "M_FORBIDDEN"), r)

class Membership(RoomTestCase):
    def test_join_public_room_and_joined_rooms(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        r = self.join(bt, room)
        self.assertEqual(r.json, {"room_id": room})
        self.assertSpec("POST", V3 + "/join/" + room, r)
        self.assertIn(room, self.req("GET", V3 + "/joined_rooms", token=bt).json["joined_rooms"])
        jm = self.req("GET", V3 + "/rooms/%s/joined_members" % q(room), token=at)
        self.assertEqual(set(jm.json["joined"]), {aid, bid})
        self.assertSpec("GET", V3 + "/rooms/%s/joined_members" % room, jm)

    def test_private_room_needs_invite(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at)
        r = self.req("POST", V3 + "/rooms/%s/join" % q(room), token=bt, body={})
        self.assertError(r, 403, "M_FORBIDDEN")
        self.invite(at, room, bid)
        self.join(bt, room)

    def test_invite_reject_and_rescind(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at)
        self.invite(at, room, bid)
        self.leave(bt, room)  # reject
        self.assertError(self.req("POST", V3 + "/rooms/%s/join" % q(room), token=bt, body={}), 403, "M_FORBIDDEN")
        self.invite(at, room, bid)
        r = self.req("POST", V3 + "/rooms/%s/kick" % q(room), token=at, body={"user_id": bid})  # rescind
        self.assertEqual(r.status, 200, r)

    def test_kick_ban_unban(self):
        aid, at = self.user()
        bid, bt = self.user()
        cid, ct = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        # a normal member cannot kick
        self.assertError(self.req("POST", V3 + "/rooms/%s/kick" % q(room), token=bt, body={"user_id": aid}), 403,
                         "M_FORBIDDEN")
        self.assertEqual(self.req("POST", V3 + "/rooms/%s/kick" % q(room), token=at,
                                  body={"user_id": bid, "reason": "spam"}).status, 200)
        self.assertError(self.req("POST", V3 + "/rooms/%s/kick" % q(room), token=at, body={"user_id": bid}), 403,
                         "M_FORBIDDEN")  # not present any more
        self.assertError(self.req("POST", V3 + "/rooms/%s/kick" % q(room), token=at, body={"user_id": cid}), 403,
                         "M_FORBIDDEN")  # never was
        self.assertEqual(self.req("POST", V3 + "/rooms/%s/ban" % q(room), token=at, body={"user_id": bid}).status, 200)
        self.assertError(self.req("POST", V3 + "/join/" + q(room), token=bt, body={}), 403, "M_FORBIDDEN")
        # a non-member cannot ban
        self.assertError(self.req("POST", V3 + "/rooms/%s/ban" % q(room), token=ct, body={"user_id": aid}), 403,
                         "M_FORBIDDEN")
        self.assertEqual(self.req("POST", V3 + "/rooms/%s/unban" % q(room), token=at, body={"user_id": bid}).status,
                         200)
        self.join(bt, room)
        members = self.req("GET", V3 + "/rooms/%s/members?membership=join" % q(room), token=at).json["chunk"]
        self.assertEqual({m["state_key"] for m in members}, {aid, bid})

    def test_membership_errors(self):
        aid, at = self.user()
        room = self.create_room(at)
        for path in ("kick", "ban", "unban", "invite"):
            self.assertError(self.req("POST", V3 + "/rooms/%s/%s" % (q(room), path), token=at, body={}), 400,
                             "M_MISSING_PARAM")
            self.assertError(self.req("POST", V3 + "/rooms/%s/%s" % (q(room), path), token=at,
                                      body={"user_id": 7}), 400, "M_BAD_JSON")
        self.assertError(self.invite(at, room, "@nobody:" + self.server.server_name, expect=404), 404,
                         "M_NOT_FOUND")
        self.assertError(self.req("POST", V3 + "/join/%21unknown%3Anowhere", token=at, body={}), 404, "M_NOT_FOUND")
        self.assertError(self.req("POST", V3 + "/join/%23missing%3A" + q(self.server.server_name), token=at, body={}),
                         404, "M_NOT_FOUND")

    def test_leave_and_forget(self):
        aid, at = self.user()
        room = self.create_room(at)
        self.assertError(self.req("POST", V3 + "/rooms/%s/forget" % q(room), token=at, body={}), 400, "M_UNKNOWN")
        self.leave(at, room)
        self.assertEqual(self.req("POST", V3 + "/rooms/%s/forget" % q(room), token=at, body={}).status, 200)
        self.assertNotIn(room, self.req("GET", V3 + "/joined_rooms", token=at).json["joined_rooms"])

    def test_profile_change_updates_member_events(self):
        aid, at = self.user()
        room = self.create_room(at)
        self.assertEqual(self.req("PUT", V3 + "/profile/%s/displayname" % q(aid), token=at,
                                  body={"displayname": "Renamed"}).status, 200)
        m = self.req("GET", V3 + "/rooms/%s/state/m.room.member/%s" % (q(room), q(aid)), token=at).json
        self.assertEqual(m["displayname"], "Renamed")
        self.assertEqual(m["membership"], "join")


class JoinRules(RoomTestCase):
    def test_restricted_join(self):
        aid, at = self.user()
        bid, bt = self.user()
        space = self.create_room(at, preset="public_chat")
        room = self.create_room(at, initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                    "content": {"join_rule": "restricted", "allow": [
                                                        {"type": "m.room_membership", "room_id": space}]}}])
        self.assertError(self.req("POST", V3 + "/join/" + q(room), token=bt, body={}), 403, "M_FORBIDDEN")
        self.join(bt, space)
        self.join(bt, room)
        member = self.req("GET", V3 + "/rooms/%s/state/m.room.member/%s" % (q(room), q(bid)), token=at).json
        self.assertEqual(member["join_authorised_via_users_server"], aid)

    def test_knock(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                    "content": {"join_rule": "knock"}}])
        r = self.req("POST", V3 + "/knock/" + q(room), token=bt, body={"reason": "let me in"})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"room_id": room})
        self.assertSpec("POST", V3 + "/knock/" + room, r)
        s = self.sync(bt)
        self.assertIn(room, s["rooms"]["knock"])
        # the knock is visible to the room, and an invite lets them in
        m = self.req("GET", V3 + "/rooms/%s/state/m.room.member/%s" % (q(room), q(bid)), token=at).json
        self.assertEqual(m["membership"], "knock")
        self.invite(at, room, bid)
        self.join(bt, room)
        # knocking on an invite-only room is refused
        other = self.create_room(at)
        self.assertError(self.req("POST", V3 + "/knock/" + q(other), token=bt, body={}), 403, "M_FORBIDDEN")


class PowerLevels(RoomTestCase):
    def test_insufficient_power(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        r = self.state(bt, room, "m.room.name", {"name": "mine now"}, expect=403)
        self.assertEqual(r.errcode, "M_FORBIDDEN")
        self.state(at, room, "m.room.power_levels",
                   {"users": {bid: 50}, "users_default": 0, "events_default": 0, "state_default": 50, "ban": 50,
                    "kick": 50, "redact": 50, "invite": 0, "events": {"m.room.power_levels": 100}})
        self.state(bt, room, "m.room.name", {"name": "allowed"})
        # levels must be integers (v10+)
        r = self.state(at, room, "m.room.power_levels", {"users": {bid: "50"}}, expect=403)
        # a user cannot give more than they have
        r = self.state(bt, room, "m.room.power_levels", {"users": {bid: 100}}, expect=403)


class Aliases(RoomTestCase):
    def test_alias_lifecycle(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at)
        alias = "#%s:%s" % (unique("a"), self.server.server_name)
        path = V3 + "/directory/room/" + q(alias)
        self.assertError(self.req("GET", path), 404, "M_NOT_FOUND")
        r = self.req("PUT", path, token=at, body={"room_id": room})
        self.assertEqual(r.status, 200, r)
        r = self.req("GET", path)
        self.assertEqual(r.json["room_id"], room)
        self.assertEqual(r.json["servers"], [self.server.server_name])
        self.assertSpec("GET", V3 + "/directory/room/" + alias, r)
        self.assertError(self.req("PUT", path, token=at, body={"room_id": room}), 409, "M_ROOM_IN_USE")
        self.assertIn(alias, self.req("GET", V3 + "/rooms/%s/aliases" % q(room), token=at).json["aliases"])
        # someone else cannot remove it
        self.assertError(self.req("DELETE", path, token=bt), 403, "M_FORBIDDEN")
        self.assertEqual(self.req("DELETE", path, token=at).status, 200)
        self.assertError(self.req("DELETE", path, token=at), 404, "M_NOT_FOUND")

    def test_unicode_alias_and_errors(self):
        aid, at = self.user()
        room = self.create_room(at)
        alias = "#\u00e9t\u00e9-%s:%s" % (unique("u"), self.server.server_name)
        self.assertEqual(self.req("PUT", V3 + "/directory/room/" + q(alias), token=at,
                                  body={"room_id": room}).status, 200)
        self.assertEqual(self.req("GET", V3 + "/directory/room/" + q(alias)).json["room_id"], room)
        self.assertError(self.req("PUT", V3 + "/directory/room/" + q("#x:elsewhere.org"), token=at,
                                  body={"room_id": room}), 400, "M_INVALID_PARAM")
        self.assertError(self.req("PUT", V3 + "/directory/room/" + q("#y:" + self.server.server_name), token=at,
                                  body={"room_id": "!nope:nowhere"}), 404, "M_NOT_FOUND")
        self.assertError(self.req("PUT", V3 + "/directory/room/" + q("#y:" + self.server.server_name), token=at,
                                  body={}), 400, "M_MISSING_PARAM")

    def test_canonical_alias_must_exist(self):
        aid, at = self.user()
        room = self.create_room(at)
        r = self.state(at, room, "m.room.canonical_alias", {"alias": "#missing:" + self.server.server_name},
                       expect=400)
        self.assertEqual(r.errcode, "M_BAD_ALIAS")
        alias = "#%s:%s" % (unique("c"), self.server.server_name)
        self.req("PUT", V3 + "/directory/room/" + q(alias), token=at, body={"room_id": room})
        self.state(at, room, "m.room.canonical_alias", {"alias": alias})


class Directory(RoomTestCase):
    def test_visibility_and_public_rooms(self):
        aid, at = self.user()
        term = unique("findme")
        room = self.create_room(at, preset="public_chat", visibility="public", name="Room " + term, topic="t")
        r = self.req("GET", V3 + "/directory/list/room/" + q(room))
        self.assertEqual(r.json, {"visibility": "public"})
        pub = self.req("GET", V3 + "/publicRooms")
        self.assertSpec("GET", V3 + "/publicRooms", pub)
        ids = [c["room_id"] for c in pub.json["chunk"]]
        self.assertIn(room, ids)
        found = self.req("POST", V3 + "/publicRooms", token=at, body={"filter": {"generic_search_term": term}})
        self.assertEqual([c["room_id"] for c in found.json["chunk"]], [room])
        chunk = found.json["chunk"][0]
        self.assertEqual(chunk["num_joined_members"], 1)
        self.assertEqual(chunk["name"], "Room " + term)
        self.assertFalse(chunk["guest_can_join"])
        self.assertEqual(self.req("PUT", V3 + "/directory/list/room/" + q(room), token=at,
                                  body={"visibility": "private"}).status, 200)
        self.assertEqual(self.req("POST", V3 + "/publicRooms", token=at,
                                  body={"filter": {"generic_search_term": term}}).json["chunk"], [])
        bid, bt = self.user()
        self.assertError(self.req("PUT", V3 + "/directory/list/room/" + q(room), token=bt,
                                  body={"visibility": "public"}), 403, "M_FORBIDDEN")
        self.assertError(self.req("GET", V3 + "/directory/list/room/%21none%3Ax"), 404, "M_NOT_FOUND")

    def test_pagination(self):
        aid, at = self.user()
        term = unique("page")
        rooms = {self.create_room(at, preset="public_chat", visibility="public", name=term + str(i))
                 for i in range(5)}
        seen, since = set(), None
        for _ in range(5):
            body = {"limit": 2, "filter": {"generic_search_term": term}}
            if since:
                body["since"] = since
            r = self.req("POST", V3 + "/publicRooms", token=at, body=body).json
            seen |= {c["room_id"] for c in r["chunk"]}
            since = r.get("next_batch")
            if not since:
                break
        self.assertEqual(seen, rooms)


if __name__ == "__main__":
    main()
