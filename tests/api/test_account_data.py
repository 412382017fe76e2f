#!/usr/bin/python3
"""Account data, room tags and filters (server/cs/account_data.c, filter.c, core/filter.c)."""

from axontest import AxonTestCase, main, unique

V3 = "/_matrix/client/v3"


class AccountData(AxonTestCase):
    def setUp(self):
        self.u = self.server.register(unique())
        self.uid, self.t = self.u["user_id"], self.u["access_token"]

    def test_global_roundtrip(self):
        path = V3 + "/user/%s/account_data/org.example.config" % self.uid
        self.assertError(self.req("GET", path, token=self.t), 404, "M_NOT_FOUND")
        r = self.req("PUT", path, token=self.t, body={"theme": "dark", "n": [1, 2]})
        self.assertEqual(r.json, {})
        self.assertSpec("PUT", path, r)
        r = self.req("GET", path, token=self.t)
        self.assertEqual(r.json, {"theme": "dark", "n": [1, 2]})
        self.assertSpec("GET", path, r)
        self.req("PUT", path, token=self.t, body={"theme": "light"})
        self.assertEqual(self.req("GET", path, token=self.t).json, {"theme": "light"})

    def test_room_roundtrip(self):
        path = V3 + "/user/%s/rooms/!room:example.org/account_data/org.example.pref" % self.uid
        self.assertEqual(self.req("PUT", path, token=self.t, body={"x": 1}).status, 200)
        self.assertEqual(self.req("GET", path, token=self.t).json, {"x": 1})
        glob = V3 + "/user/%s/account_data/org.example.pref" % self.uid
        self.assertEqual(self.req("GET", glob, token=self.t).status, 404)

    def test_errors(self):
        other = self.server.register(unique())
        path = V3 + "/user/%s/account_data/org.example.x" % other["user_id"]
        self.assertError(self.req("PUT", path, token=self.t, body={"a": 1}), 403, "M_FORBIDDEN")
        self.assertError(self.req("GET", path, token=self.t), 403, "M_FORBIDDEN")
        mine = V3 + "/user/%s/account_data/org.example.x" % self.uid
        self.assertError(self.req("PUT", mine, body={"a": 1}), 401, "M_MISSING_TOKEN")
        self.assertError(self.req("PUT", mine, token=self.t, raw=b"[1]"), 400, "M_NOT_JSON")
        self.assertError(self.req("PUT", mine, token=self.t, raw=b"{oops"), 400, "M_NOT_JSON")
        self.assertError(self.req("PUT", V3 + "/user/%s/account_data/m.fully_read" % self.uid, token=self.t,
                                  body={"event_id": "$x"}), 405, "M_BAD_JSON")
        bad_room = V3 + "/user/%s/rooms/not-a-room/account_data/org.example.x" % self.uid
        self.assertError(self.req("PUT", bad_room, token=self.t, body={}), 400, "M_INVALID_PARAM")
        # nothing was stored by the rejected writes
        self.assertEqual(self.req("GET", mine, token=self.t).status, 404)

    def test_tags(self):
        room = "!tagged:example.org"
        base = V3 + "/user/%s/rooms/%s/tags" % (self.uid, room)
        r = self.req("GET", base, token=self.t)
        self.assertEqual(r.json, {"tags": {}})
        self.assertSpec("GET", base, r)
        self.assertEqual(self.req("PUT", base + "/m.favourite", token=self.t, body={"order": 0.25}).status, 200)
        self.assertEqual(self.req("PUT", base + "/u.work", token=self.t, body={}).status, 200)
        tags = self.req("GET", base, token=self.t).json["tags"]
        self.assertEqual(tags, {"m.favourite": {"order": 0.25}, "u.work": {}})
        # tags are the room's m.tag account data
        ad = self.req("GET", V3 + "/user/%s/rooms/%s/account_data/m.tag" % (self.uid, room), token=self.t).json
        self.assertEqual(ad["tags"], tags)
        self.assertEqual(self.req("DELETE", base + "/u.work", token=self.t).status, 200)
        self.assertEqual(self.req("GET", base, token=self.t).json["tags"], {"m.favourite": {"order": 0.25}})
        self.assertError(self.req("PUT", base + "/x", token=self.t, body={"order": "high"}), 400, "M_BAD_JSON")


class Filters(AxonTestCase):
    def test_create_and_get(self):
        u = self.server.register(unique())
        path = V3 + "/user/%s/filter" % u["user_id"]
        f = {"room": {"timeline": {"limit": 10, "types": ["m.room.message", "m.room.*"]},
                      "state": {"lazy_load_members": True}, "include_leave": True},
             "presence": {"not_types": ["*"]}, "event_fields": ["content.body", "type"], "event_format": "client"}
        r = self.req("POST", path, token=u["access_token"], body=f)
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", path, r)
        fid = r.json["filter_id"]
        g = self.req("GET", path + "/" + fid, token=u["access_token"])
        self.assertEqual(g.json, f)
        self.assertSpec("GET", path + "/" + fid, g)
        self.assertError(self.req("GET", path + "/99999", token=u["access_token"]), 404, "M_NOT_FOUND")

    def test_invalid_filters(self):
        u = self.server.register(unique())
        path = V3 + "/user/%s/filter" % u["user_id"]
        for bad in ({"room": {"timeline": {"limit": "ten"}}},
                    {"room": {"timeline": {"limit": -1}}},
                    {"room": {"rooms": "!a:b"}},
                    {"room": {"include_leave": "yes"}},
                    {"room": []},
                    {"presence": {"types": [1]}},
                    {"event_format": "xml"},
                    {"event_fields": "content"},
                    {"room": {"state": {"lazy_load_members": 1}}}):
            self.assertError(self.req("POST", path, token=u["access_token"], body=bad), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", path, token=u["access_token"], raw=b"nope"), 400, "M_NOT_JSON")
        other = self.server.register(unique())
        self.assertError(self.req("POST", V3 + "/user/%s/filter" % other["user_id"], token=u["access_token"],
                                  body={}), 403, "M_FORBIDDEN")


if __name__ == "__main__":
    main()
