#!/usr/bin/python3
"""Relations, threads and aggregations, room upgrades, search and the user
directory (server/cs/relations.c, rooms.c, search.c; core/rooms.c)."""

from axontest import main, unique
from roomutil import RoomTestCase, V3, q

V1 = "/_matrix/client/v1"


def rel(rel_type, event_id, **extra):
    content = {"msgtype": "m.text", "body": extra.pop("body", "child"),
               "m.relates_to": {"rel_type": rel_type, "event_id": event_id}}
    content.update(extra)
    return content


class Relations(RoomTestCase):
    def test_edits_aggregate_latest_valid(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        orig = self.send(at, room, {"msgtype": "m.text", "body": "typo"})
        self.send(at, room, rel("m.replace", orig, body="* fixed", **{"m.new_content": {"msgtype": "m.text",
                                                                                        "body": "fixed"}}))
        last = self.send(at, room, rel("m.replace", orig, body="* fixed again",
                                       **{"m.new_content": {"msgtype": "m.text", "body": "fixed again"}}))
        # an edit by someone else is not valid and does not count
        self.send(bt, room, rel("m.replace", orig, body="* hijack",
                                **{"m.new_content": {"msgtype": "m.text", "body": "hijack"}}))
        ev = self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(orig)), token=at).json
        self.assertEqual(ev["content"]["body"], "typo")  # servers no longer apply edits
        self.assertEqual(ev["unsigned"]["m.relations"]["m.replace"]["event_id"], last)

    def test_relations_endpoint_pagination_and_filters(self):
        aid, at = self.user()
        room = self.create_room(at)
        parent = self.send(at, room)
        kids = [self.send(at, room, rel("m.reference", parent, body=str(i))) for i in range(5)]
        react = self.send(at, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": "+1"}},
                          type_="m.reaction")
        path = V1 + "/rooms/%s/relations/%s" % (q(room), q(parent))
        r = self.req("GET", path, token=at)
        self.assertEqual(r.status, 200, r)
        self.assertSpec("GET", path, r)
        self.assertEqual([e["event_id"] for e in r.json["chunk"]], [react] + kids[::-1])
        page = self.req("GET", path + "/m.reference?limit=2", token=at).json
        self.assertEqual([e["event_id"] for e in page["chunk"]], kids[::-1][:2])
        page2 = self.req("GET", path + "/m.reference?limit=2&from=" + page["next_batch"], token=at).json
        self.assertEqual([e["event_id"] for e in page2["chunk"]], kids[::-1][2:4])
        fwd = self.req("GET", path + "/m.reference?dir=f", token=at).json
        self.assertEqual([e["event_id"] for e in fwd["chunk"]], kids)
        only = self.req("GET", path + "/m.annotation/m.reaction", token=at).json
        self.assertEqual([e["event_id"] for e in only["chunk"]], [react])
        self.assertEqual(self.req("GET", path + "/m.annotation/m.room.message", token=at).json["chunk"], [])
        lonely = V1 + "/rooms/%s/relations/%s" % (q(room), q(kids[0]))  # no children at all
        for p in (lonely, lonely + "/m.reference", lonely + "?dir=f&recurse=true"):
            r = self.req("GET", p, token=at)
            self.assertEqual((r.status, r.json["chunk"]), (200, []), r)
        self.assertError(self.req("GET", V1 + "/rooms/%s/relations/%s" % (q(room), q("$none")), token=at), 404,
                         "M_NOT_FOUND")
        self.assertError(self.req("GET", path + "?dir=sideways", token=at), 400, "M_INVALID_PARAM")
        cid, ct = self.user()
        self.assertError(self.req("GET", path, token=ct), 403, "M_FORBIDDEN")

    def test_recurse(self):
        aid, at = self.user()
        room = self.create_room(at)
        root = self.send(at, room)
        child = self.send(at, room, rel("m.thread", root))
        grandchild = self.send(at, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": child,
                                                           "key": "x"}}, type_="m.reaction")
        path = V1 + "/rooms/%s/relations/%s" % (q(room), q(root))
        flat = self.req("GET", path, token=at).json
        self.assertEqual([e["event_id"] for e in flat["chunk"]], [child])
        deep = self.req("GET", path + "?recurse=true", token=at).json
        self.assertEqual({e["event_id"] for e in deep["chunk"]}, {child, grandchild})
        self.assertEqual(deep["recursion_depth"], 2)


class Threads(RoomTestCase):
    def test_thread_summary_and_list(self):
        aid, at = self.user()
        bid, bt = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        root1 = self.send(at, room, {"msgtype": "m.text", "body": "thread one"})
        root2 = self.send(bt, room, {"msgtype": "m.text", "body": "thread two"})
        self.send(bt, room, rel("m.thread", root1, body="reply a"))
        last = self.send(bt, room, rel("m.thread", root1, body="reply b"))
        self.send(bt, room, rel("m.thread", root2, body="only bob"))
        ev = self.req("GET", V3 + "/rooms/%s/event/%s" % (q(room), q(root1)), token=at).json
        summary = ev["unsigned"]["m.relations"]["m.thread"]
        self.assertEqual(summary["count"], 2)
        self.assertEqual(summary["latest_event"]["event_id"], last)
        self.assertTrue(summary["current_user_participated"])  # alice wrote the root
        path = V1 + "/rooms/%s/threads" % q(room)
        r = self.req("GET", path, token=at)
        self.assertSpec("GET", path, r)
        self.assertEqual([e["event_id"] for e in r.json["chunk"]], [root2, root1])  # by latest activity
        mine = self.req("GET", path + "?include=participated", token=at).json
        self.assertEqual([e["event_id"] for e in mine["chunk"]], [root1])
        first = self.req("GET", path + "?limit=1", token=at).json
        self.assertEqual(len(first["chunk"]), 1)
        second = self.req("GET", path + "?limit=1&from=" + first["next_batch"], token=at).json
        self.assertEqual([e["event_id"] for e in second["chunk"]], [root1])
        self.assertError(self.req("GET", path + "?include=some", token=at), 400, "M_INVALID_PARAM")


class Upgrade(RoomTestCase):
    def test_upgrade_moves_state_and_aliases(self):
        aid, at = self.user()
        bid, bt = self.user()
        alias_name = unique("up")
        old = self.create_room(at, preset="public_chat", name="Old name", topic="Topic", room_version="11",
                               room_alias_name=alias_name)
        self.join(bt, old)
        self.assertError(self.req("POST", V3 + "/rooms/%s/upgrade" % q(old), token=bt, body={"new_version": "12"}),
                         403, "M_FORBIDDEN")
        r = self.req("POST", V3 + "/rooms/%s/upgrade" % q(old), token=at, body={"new_version": "12"})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", V3 + "/rooms/%s/upgrade" % old, r)
        new = r.json["replacement_room"]
        tomb = self.req("GET", V3 + "/rooms/%s/state/m.room.tombstone" % q(old), token=at).json
        self.assertEqual(tomb["replacement_room"], new)
        create = self.req("GET", V3 + "/rooms/%s/state/m.room.create" % q(new), token=at).json
        self.assertEqual(create["predecessor"]["room_id"], old)
        self.assertEqual(create["room_version"], "12")
        g = lambda room, t: self.req("GET", V3 + "/rooms/%s/state/%s" % (q(room), t), token=at).json
        self.assertEqual(g(new, "m.room.name")["name"], "Old name")
        self.assertEqual(g(new, "m.room.join_rules")["join_rule"], "public")
        self.assertNotIn(aid, g(new, "m.room.power_levels")["users"])  # creators are implicit in v12
        alias = "#%s:%s" % (alias_name, self.server.server_name)
        self.assertEqual(self.req("GET", V3 + "/directory/room/" + q(alias)).json["room_id"], new)
        self.assertEqual(g(new, "m.room.canonical_alias")["alias"], alias)
        # the old room is quiet now
        self.assertGreaterEqual(g(old, "m.room.power_levels")["events_default"], 50)
        self.send(bt, old, expect=403)

    def test_bad_upgrades(self):
        aid, at = self.user()
        room = self.create_room(at)
        self.assertError(self.req("POST", V3 + "/rooms/%s/upgrade" % q(room), token=at, body={"new_version": "99"}),
                         400, "M_UNSUPPORTED_ROOM_VERSION")
        self.assertError(self.req("POST", V3 + "/rooms/%s/upgrade" % q(room), token=at, body={}), 400,
                         "M_MISSING_PARAM")
        self.assertError(self.req("POST", V3 + "/rooms/%s/upgrade" % q("!no:where"), token=at,
                                  body={"new_version": "12"}), 404, "M_NOT_FOUND")


class Search(RoomTestCase):
    def wait_indexed(self):
        """Until the full-text index holds everything committed (it follows the timeline in batches)."""
        self.wait_metric(lambda: self.metric("axon_search_index_position") >= self.metric("axon_stream_position"),
                         "the search index never caught up")

    def search(self, token, term, **extra):
        body = {"search_categories": {"room_events": dict(extra, search_term=term)}}
        r = self.req("POST", V3 + "/search", token=token, body=body)
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", V3 + "/search", r)
        return r.json["search_categories"]["room_events"]

    def test_search_room_events(self):
        aid, at = self.user()
        bid, bt = self.user()
        word = unique("zebra")
        mine = self.create_room(at)
        theirs = self.create_room(bt)
        e1 = self.send(at, mine, {"msgtype": "m.text", "body": "A %s crossed the road" % word})
        e2 = self.send(at, mine, {"msgtype": "m.text", "body": "%s %s everywhere" % (word, word)})
        self.send(at, mine, {"msgtype": "m.text", "body": "nothing here"})
        self.send(bt, theirs, {"msgtype": "m.text", "body": "a private %s" % word})
        self.send(at, mine, {"body": "a %s on a sticker is not indexed" % word, "url": "mxc://x/y", "info": {}},
                  type_="m.sticker")

        def check():
            self.assertEqual(self.search(at, unique("nowhere"))["results"], [])
            res = self.search(at, word.upper())
            self.assertEqual([x["result"]["event_id"] for x in res["results"]], [e2, e1])  # by rank
            self.assertEqual(res["count"], 2)
            res = self.search(at, word, order_by="recent",
                              event_context={"before_limit": 1, "after_limit": 1, "include_profile": True})
            self.assertEqual(res["results"][0]["result"]["event_id"], e2)
            ctx = res["results"][0]["context"]
            self.assertEqual(ctx["events_before"][0]["event_id"], e1)
            self.assertIn(aid, ctx["profile_info"])
            # all terms must match
            res = self.search(at, word + " road")
            self.assertEqual([x["result"]["event_id"] for x in res["results"]], [e1])

        # at once: the index reaches them 200 ms after the writer goes idle, so search reads them from
        # the timeline (unless this machine stalled that long: then both checks read the index)
        check()
        # from the index
        self.wait_indexed()
        check()
        # both: an indexed message and a newer one the index has not reached
        e3 = self.send(at, mine, {"msgtype": "m.text", "body": "the last %s" % word})
        res = self.search(at, word, order_by="recent")
        self.assertEqual([x["result"]["event_id"] for x in res["results"]], [e3, e2, e1])
        # a redacted message is found in neither
        self.assertEqual(self.req("PUT", V3 + "/rooms/%s/redact/%s/t1" % (q(mine), q(e3)), token=at,
                                  body={}).status, 200)
        self.req("PUT", V3 + "/rooms/%s/redact/%s/t2" % (q(mine), q(e1)), token=at, body={})
        self.assertEqual([x["result"]["event_id"] for x in self.search(at, word)["results"]], [e2])
        self.wait_indexed()
        self.assertEqual([x["result"]["event_id"] for x in self.search(at, word)["results"]], [e2])
        # the other user sees their own room's message only
        self.assertEqual([x["result"]["room_id"] for x in self.search(bt, word)["results"]], [theirs])

    def test_search_bad_input(self):
        aid, at = self.user()
        self.assertError(self.req("POST", V3 + "/search", token=at, body={}), 400, "M_MISSING_PARAM")
        self.assertError(self.req("POST", V3 + "/search", token=at,
                                  body={"search_categories": {"room_events": {"search_term": "x",
                                                                              "order_by": "best"}}}),
                         400, "M_INVALID_PARAM")

    def test_user_directory(self):
        aid, at = self.user()
        bid, bt = self.user()
        cid, ct = self.user()
        room = self.create_room(at, preset="public_chat")
        self.join(bt, room)
        self.req("PUT", V3 + "/profile/%s/displayname" % q(bid), token=bt, body={"displayname": "Bobby Tables"})
        path = V3 + "/user_directory/search"
        r = self.req("POST", path, token=at, body={"search_term": "bobby"})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", path, r)
        self.assertEqual([u["user_id"] for u in r.json["results"]], [bid])
        self.assertEqual(r.json["results"][0]["display_name"], "Bobby Tables")
        # carol shares no room with anyone
        r = self.req("POST", path, token=at, body={"search_term": cid.split(":")[0][1:]})
        self.assertEqual(r.json["results"], [])
        self.assertError(self.req("POST", path, token=at, body={}), 400, "M_MISSING_PARAM")


if __name__ == "__main__":
    main()
