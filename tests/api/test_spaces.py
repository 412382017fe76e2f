#!/usr/bin/python3
"""GET /_matrix/client/v1/rooms/{roomId}/hierarchy (server/cs/spaces.c,
core/spaces.c): the depth-first walk and its order, max_depth,
suggested_only, pagination, what each user may see, loops, and every bad
request."""

import time
import urllib.parse

from axontest import main
from roomutil import RoomTestCase, V3, q

V1 = "/_matrix/client/v1"
SPACE = {"type": "m.space"}


class Spaces(RoomTestCase):
    def space(self, token, name, **body):
        return self.create_room(token, name=name, creation_content=SPACE, **body)

    def link(self, token, parent, child, **content):
        """Links 'child' under 'parent'.  Children without an order sort by the link's timestamp, then
        room ID: the pause keeps two links out of one millisecond, so the tests' order is the sending order."""
        content.setdefault("via", [self.server.server_name])
        time.sleep(0.003)
        self.state(token, parent, "m.space.child", content, state_key=child)

    def hierarchy(self, token, room, expect=200, **params):
        path = V1 + "/rooms/%s/hierarchy" % q(room)
        if params:
            path += "?" + urllib.parse.urlencode(params)
        r = self.req("GET", path, token=token)
        self.assertEqual(r.status, expect, r)
        if expect == 200:
            self.assertSpec("GET", path, r)
        return r

    def ids(self, r):
        return [room["room_id"] for room in r.json["rooms"]]

    def links(self, r):
        return {(room["room_id"], ev["state_key"]) for room in r.json["rooms"] for ev in room["children_state"]}


class Tree(Spaces):
    """Root -> R1 (suggested), SS1, R2 (suggested); SS1 -> SS2 -> R3, R4 (Bob's, world-readable);
    R2 is no space, so its link to R5 is not followed."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        t = cls("test_whole_tree")  # an instance, to borrow the helpers
        cls.aid, cls.at = t.user()
        cls.bid, cls.bt = t.user()
        at, bt = cls.at, cls.bt
        cls.root = t.space(at, "Root", preset="public_chat", topic="The top",
                           room_alias_name="root%d" % id(cls))
        cls.r1 = t.create_room(at, preset="public_chat", name="R1")
        cls.ss1 = t.space(at, "Sub-space 1", preset="public_chat", topic="Nested")
        cls.r2 = t.create_room(at, preset="public_chat", name="R2")
        cls.ss2 = t.space(at, "SS2", preset="public_chat")
        cls.r3 = t.create_room(at, preset="public_chat", name="R3",
                               initial_state=[{"type": "m.room.encryption", "state_key": "",
                                               "content": {"algorithm": "m.megolm.v1.aes-sha2"}}])
        cls.r4 = t.create_room(bt, preset="public_chat", name="R4",
                               initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                               "content": {"history_visibility": "world_readable"}}])
        cls.r5 = t.create_room(bt, preset="public_chat", name="R5")
        t.link(at, cls.root, cls.r1, suggested=True)
        t.link(at, cls.root, cls.ss1)
        t.link(at, cls.root, cls.r2, suggested=True)
        t.link(at, cls.r2, cls.r5)
        t.link(at, cls.ss1, cls.ss2)
        t.link(at, cls.ss2, cls.r3)
        t.link(at, cls.ss2, cls.r4)
        t.state(at, cls.root, "m.room.avatar", {"url": "mxc://example.org/root"})

    def test_whole_tree(self):
        r = self.hierarchy(self.at, self.root)
        self.assertEqual(self.ids(r), [self.root, self.r1, self.ss1, self.ss2, self.r3, self.r4, self.r2])
        self.assertNotIn("next_batch", r.json)
        self.assertEqual(self.links(r), {(self.root, self.r1), (self.root, self.ss1), (self.root, self.r2),
                                         (self.ss1, self.ss2), (self.ss2, self.r3), (self.ss2, self.r4)})
        rooms = {room["room_id"]: room for room in r.json["rooms"]}
        root = rooms[self.root]
        self.assertEqual(root["name"], "Root")
        self.assertEqual(root["topic"], "The top")
        self.assertEqual(root["room_type"], "m.space")
        self.assertEqual(root["join_rule"], "public")
        self.assertEqual(root["avatar_url"], "mxc://example.org/root")
        self.assertEqual(root["canonical_alias"], "#root%d:%s" % (id(type(self)), self.server.server_name))
        self.assertEqual(root["num_joined_members"], 1)
        self.assertFalse(root["world_readable"])
        self.assertFalse(root["guest_can_join"])
        self.assertEqual(root["room_version"], "12")
        child = [ev for ev in root["children_state"] if ev["state_key"] == self.r1][0]
        self.assertEqual(child["type"], "m.space.child")
        self.assertEqual(child["sender"], self.aid)
        self.assertEqual(child["content"], {"via": [self.server.server_name], "suggested": True})
        self.assertIsInstance(child["origin_server_ts"], int)
        # children in the spec's order: no 'order' keys here, so by the links' timestamps
        self.assertEqual([ev["state_key"] for ev in root["children_state"]], [self.r1, self.ss1, self.r2])
        self.assertNotIn("room_type", rooms[self.r1])
        self.assertEqual(rooms[self.r2]["children_state"], [])  # not a space: its links do not count
        self.assertNotIn(self.r5, rooms)
        self.assertTrue(rooms[self.r4]["world_readable"])
        self.assertEqual(rooms[self.r3]["encryption"], "m.megolm.v1.aes-sha2")
        self.assertNotIn("encryption", root)

    def test_max_depth(self):
        r = self.hierarchy(self.at, self.root, max_depth=1)
        self.assertEqual(self.ids(r), [self.root, self.r1, self.ss1, self.r2])
        # the rooms at the limit still show their links
        self.assertIn((self.ss1, self.ss2), self.links(r))
        self.assertEqual(self.ids(self.hierarchy(self.at, self.root, max_depth=0)), [self.root])
        # a depth beyond the server's limit is the server's limit
        self.assertEqual(len(self.ids(self.hierarchy(self.at, self.root, max_depth=10 ** 6))), 7)

    def test_suggested_only(self):
        r = self.hierarchy(self.at, self.root, suggested_only="true")
        self.assertEqual(self.ids(r), [self.root, self.r1, self.r2])
        self.assertEqual(self.links(r), {(self.root, self.r1), (self.root, self.r2)})
        self.assertEqual(len(self.ids(self.hierarchy(self.at, self.root, suggested_only="false"))), 7)

    def test_from_a_subspace(self):
        self.assertEqual(self.ids(self.hierarchy(self.at, self.ss1)), [self.ss1, self.ss2, self.r3, self.r4])
        # any room is a hierarchy of one
        r = self.hierarchy(self.bt, self.r5)
        self.assertEqual(self.ids(r), [self.r5])
        self.assertEqual(r.json["rooms"][0]["children_state"], [])

    def test_pagination(self):
        first = self.hierarchy(self.at, self.root, limit=4)
        self.assertEqual(self.ids(first), [self.root, self.r1, self.ss1, self.ss2])
        token = first.json["next_batch"]
        second = self.hierarchy(self.at, self.root, **{"from": token})
        self.assertEqual(self.ids(second), [self.r3, self.r4, self.r2])
        self.assertNotIn("next_batch", second.json)
        # the same parameters may be repeated; a page of one at a time walks the same tree
        again = self.hierarchy(self.at, self.root, limit=4, max_depth=50, suggested_only="false", **{"from": token})
        self.assertEqual(self.ids(again), self.ids(second))
        seen, params = [], {"limit": 1}
        while True:
            page = self.hierarchy(self.at, self.root, **params)
            self.assertEqual(len(page.json["rooms"]), 1)
            seen += self.ids(page)
            if "next_batch" not in page.json:
                break
            params = {"limit": 1, "from": page.json["next_batch"]}
        self.assertEqual(seen, self.ids(self.hierarchy(self.at, self.root)))
        # the parameters travel with the token
        p1 = self.hierarchy(self.at, self.root, limit=2, max_depth=1)
        p2 = self.hierarchy(self.at, self.root, **{"from": p1.json["next_batch"]})
        self.assertEqual(self.ids(p1) + self.ids(p2), [self.root, self.r1, self.ss1, self.r2])
        s1 = self.hierarchy(self.at, self.root, limit=1, suggested_only="true")
        s2 = self.hierarchy(self.at, self.root, **{"from": s1.json["next_batch"]})
        self.assertEqual(self.ids(s1) + self.ids(s2), [self.root, self.r1, self.r2])

    def test_bad_pagination(self):
        token = self.hierarchy(self.at, self.root, limit=2).json["next_batch"]
        for params in ({"from": token, "max_depth": 3}, {"from": token, "suggested_only": "true"}):
            self.assertError(self.hierarchy(self.at, self.root, expect=400, **params), 400, "M_INVALID_PARAM")
        # a token belongs to its root
        self.assertError(self.hierarchy(self.at, self.ss1, expect=400, **{"from": token}), 400, "M_INVALID_PARAM")
        for bad in ("", "nonsense", "h", "h2_50_0", token + "x", token + "_1", token.replace("h2_", "h0_"),
                    token.replace("h2_", "h-2_"), token.replace("_0_", "_2_"), "h99999999_50_0_" + token[-16:]):
            self.assertError(self.hierarchy(self.at, self.root, expect=400, **{"from": bad}), 400,
                             "M_INVALID_PARAM")

    def test_bad_parameters(self):
        for params in ({"limit": 0}, {"limit": -1}, {"limit": "ten"}, {"limit": 1.5}, {"max_depth": -1},
                       {"max_depth": "deep"}, {"suggested_only": "yes"}, {"suggested_only": 1}):
            self.assertError(self.hierarchy(self.at, self.root, expect=400, **params), 400, "M_INVALID_PARAM")
        path = V1 + "/rooms/%s/hierarchy" % q(self.root)
        self.assertError(self.req("GET", path), 401, "M_MISSING_TOKEN")
        self.assertError(self.req("GET", path, token="axo_nonsense"), 401, "M_UNKNOWN_TOKEN")
        self.assertError(self.req("POST", path, body={}, token=self.at), 405, "M_UNRECOGNIZED")

    def test_unknown_root(self):
        for room in ("!nowhere:" + self.server.server_name, "!elsewhere:remote.example", "not-a-room"):
            self.assertError(self.hierarchy(self.at, room, expect=403), 403, "M_FORBIDDEN")

    def test_removed_link(self):
        space = self.space(self.at, "Changing", preset="public_chat")
        keep = self.create_room(self.at, preset="public_chat")
        drop = self.create_room(self.at, preset="public_chat")
        self.link(self.at, space, keep)
        self.link(self.at, space, drop)
        self.assertEqual(self.ids(self.hierarchy(self.at, space)), [space, keep, drop])
        self.state(self.at, space, "m.space.child", {}, state_key=drop)  # spec: no via, no link
        r = self.hierarchy(self.at, space)
        self.assertEqual(self.ids(r), [space, keep])
        self.assertEqual(self.links(r), {(space, keep)})
        # malformed links do not count either
        for bad in ({"via": []}, {"via": "example.org"}, {"via": [1]}):
            self.state(self.at, space, "m.space.child", bad, state_key=drop)
            self.assertEqual(self.ids(self.hierarchy(self.at, space)), [space, keep])

    def test_remote_children_are_links_only(self):
        space = self.space(self.at, "Mixed", preset="public_chat")
        local = self.create_room(self.at, preset="public_chat")
        self.link(self.at, space, "!far:remote.example", via=["remote.example"])
        self.link(self.at, space, local)
        r = self.hierarchy(self.at, space)
        self.assertEqual(self.ids(r), [space, local])
        self.assertEqual(self.links(r), {(space, "!far:remote.example"), (space, local)})


class Order(Spaces):
    def test_spec_order(self):
        """Spaces, "Ordering of children within a space": valid 'order' first, then by timestamp."""
        aid, at = self.user()
        space = self.space(at, "Ordered", preset="public_chat")
        rooms = {k: self.create_room(at, preset="public_chat", name=k) for k in "abcdefgh"}
        self.link(at, space, rooms["e"])                                # no order, earlier
        self.link(at, space, rooms["a"], order="aaaa")
        self.link(at, space, rooms["c"], order="first")
        self.link(at, space, rooms["d"])                                # no order, later
        self.link(at, space, rooms["b"], order=" ")
        self.link(at, space, rooms["f"], order="x" * 51)                # too long: as if absent
        self.link(at, space, rooms["g"], order="caf\u00e9")             # not ASCII: as if absent
        self.link(at, space, rooms["h"], order=5)                       # not a string: as if absent
        r = self.hierarchy(at, space)
        want = [rooms[k] for k in "bacedfgh"]
        self.assertEqual([ev["state_key"] for ev in r.json["rooms"][0]["children_state"]], want)
        self.assertEqual(self.ids(r), [space] + want)

    def test_equal_order_falls_back_to_timestamp(self):
        aid, at = self.user()
        space = self.space(at, "Ties", preset="public_chat")
        late = self.create_room(at, preset="public_chat")
        early = self.create_room(at, preset="public_chat")
        self.link(at, space, early, order="same")
        self.link(at, space, late, order="same")
        self.assertEqual(self.ids(self.hierarchy(at, space)), [space, early, late])


class Graphs(Spaces):
    def test_loops_and_diamonds(self):
        aid, at = self.user()
        a = self.space(at, "A", preset="public_chat")
        b = self.space(at, "B", preset="public_chat")
        c = self.space(at, "C", preset="public_chat")
        d = self.create_room(at, preset="public_chat", name="D")
        self.link(at, a, b)
        self.link(at, a, c)
        self.link(at, b, d)
        self.link(at, c, d)      # a diamond: D under B and C
        self.link(at, c, a)      # a loop back to the root
        self.link(at, b, b)      # and onto itself
        r = self.hierarchy(at, a)
        self.assertEqual(self.ids(r), [a, b, d, c])
        self.assertIn((c, a), self.links(r))
        self.assertEqual(self.ids(self.hierarchy(at, c)), [c, d, a, b])
        # pages over a graph list each room once too
        ids, params = [], {"limit": 1}
        while True:
            page = self.hierarchy(at, a, **params)
            ids += self.ids(page)
            if "next_batch" not in page.json:
                break
            params["from"] = page.json["next_batch"]
        self.assertEqual(ids, [a, b, d, c])


class Access(Spaces):
    def test_what_each_user_sees(self):
        aid, at = self.user()
        bid, bt = self.user()
        space = self.space(at, "Space", preset="public_chat")
        private = self.create_room(at, preset="private_chat", name="private")
        hidden_space = self.space(at, "Hidden", preset="private_chat")
        under_hidden = self.create_room(at, preset="public_chat", name="under hidden")
        readable = self.create_room(at, preset="private_chat", name="readable",
                                    initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                                    "content": {"history_visibility": "world_readable"}}])
        knock = self.create_room(at, preset="private_chat", name="knock",
                                 initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                 "content": {"join_rule": "knock"}}])
        allow = [{"type": "m.room_membership", "room_id": space}]
        restricted = self.create_room(at, preset="private_chat", name="restricted",
                                      initial_state=[{"type": "m.room.join_rules", "state_key": "",
                                                      "content": {"join_rule": "restricted", "allow": allow}}])
        invited = self.create_room(at, preset="private_chat", name="invited")
        banned = self.create_room(at, preset="public_chat", name="banned")
        for child in (private, hidden_space, readable, knock, restricted, invited, banned):
            self.link(at, space, child)
        self.link(at, hidden_space, under_hidden)
        self.invite(at, invited, bid)
        self.join(bt, banned)
        r = self.req("POST", V3 + "/rooms/%s/ban" % q(banned), token=at, body={"user_id": bid})
        self.assertEqual(r.status, 200, r)

        # Alice, in every room, sees everything
        self.assertEqual(set(self.ids(self.hierarchy(at, space))),
                         {space, private, hidden_space, under_hidden, readable, knock, restricted, invited, banned})
        # Bob, in none yet: the public space is open to him, and so are some of its rooms
        r = self.hierarchy(bt, space)
        self.assertEqual(self.ids(r), [space, readable, knock, invited])
        self.assertEqual(len(r.json["rooms"][0]["children_state"]), 7)  # every link still shows
        # joining the space opens the room restricted to its members
        self.join(bt, space)
        r = self.hierarchy(bt, space)
        self.assertEqual(self.ids(r), [space, readable, knock, restricted, invited])
        entry = [x for x in r.json["rooms"] if x["room_id"] == restricted][0]
        self.assertEqual(entry["join_rule"], "restricted")
        self.assertEqual(entry["allowed_room_ids"], [space])
        # roots Bob may not see
        for root in (private, hidden_space, banned):
            self.assertError(self.hierarchy(bt, root, expect=403), 403, "M_FORBIDDEN")
        self.assertEqual(self.ids(self.hierarchy(bt, invited)), [invited])
        # an invite to the hidden space shows it, and what lies under it
        self.invite(at, hidden_space, bid)
        self.assertIn(under_hidden, self.ids(self.hierarchy(bt, space)))
        # and the summary counts joined members only
        entry = [x for x in self.hierarchy(bt, space).json["rooms"] if x["room_id"] == space][0]
        self.assertEqual(entry["num_joined_members"], 2)


if __name__ == "__main__":
    main()
