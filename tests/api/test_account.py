#!/usr/bin/python3
"""Devices, password change, deactivation, profiles and capabilities
(server/cs/devices.c, account.c, profile.c, uia.c)."""

from axontest import AxonTestCase, main, unique

V3 = "/_matrix/client/v3"


def password_auth(user_id, password, session=None):
    a = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user_id}, "password": password}
    if session:
        a["session"] = session
    return a


class Devices(AxonTestCase):
    def setUp(self):
        self.name = unique()
        self.u = self.server.register(self.name, password="pw", extra={"initial_device_display_name": "Laptop"})
        self.t = self.u["access_token"]

    def test_list_get_rename(self):
        r = self.req("GET", V3 + "/devices", token=self.t)
        self.assertEqual([d["device_id"] for d in r.json["devices"]], [self.u["device_id"]])
        self.assertSpec("GET", V3 + "/devices", r)
        path = V3 + "/devices/" + self.u["device_id"]
        r = self.req("GET", path, token=self.t)
        self.assertEqual(r.json["device_id"], self.u["device_id"])
        self.assertEqual(r.json["display_name"], "Laptop")
        self.assertEqual(r.json["last_seen_ip"], "127.0.0.1")
        self.assertGreater(r.json["last_seen_ts"], 0)
        self.assertSpec("GET", path, r)
        self.assertEqual(self.req("PUT", path, token=self.t, body={"display_name": "Desk"}).json, {})
        self.assertEqual(self.req("GET", path, token=self.t).json["display_name"], "Desk")
        self.assertError(self.req("GET", V3 + "/devices/NOPE", token=self.t), 404, "M_NOT_FOUND")
        self.assertError(self.req("PUT", V3 + "/devices/NOPE", token=self.t, body={"display_name": "x"}), 404,
                         "M_NOT_FOUND")
        self.assertError(self.req("PUT", path, token=self.t, body={"display_name": 7}), 400, "M_BAD_JSON")
        self.assertError(self.req("GET", V3 + "/devices"), 401, "M_MISSING_TOKEN")

    def test_other_users_devices_are_invisible(self):
        other = self.server.register(unique())
        r = self.req("GET", V3 + "/devices/" + self.u["device_id"], token=other["access_token"])
        self.assertError(r, 404, "M_NOT_FOUND")

    def test_delete_needs_password_uia(self):
        second = self.server.login(self.name, password="pw").json
        path = V3 + "/devices/" + second["device_id"]
        r = self.req("DELETE", path, token=self.t, body={})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.password"]}])
        self.assertSpec("DELETE", path, r)
        bad = self.req("DELETE", path, token=self.t,
                       body={"auth": password_auth(self.u["user_id"], "wrong", r.json["session"])})
        self.assertEqual((bad.status, bad.errcode), (401, "M_FORBIDDEN"))
        ok = self.req("DELETE", path, token=self.t,
                      body={"auth": password_auth(self.u["user_id"], "pw", r.json["session"])})
        self.assertEqual(ok.status, 200, ok)
        # deleting a device revokes its token
        self.assertError(self.req("GET", V3 + "/account/whoami", token=second["access_token"]), 401,
                         "M_UNKNOWN_TOKEN")

    def test_cannot_authenticate_as_someone_else(self):
        other_name = unique()
        self.server.register(other_name, password="pw")
        second = self.server.login(self.name, password="pw").json
        r = self.req("DELETE", V3 + "/devices/" + second["device_id"], token=self.t,
                     body={"auth": password_auth("@%s:%s" % (other_name, self.server.server_name), "pw")})
        self.assertEqual((r.status, r.errcode), (401, "M_FORBIDDEN"))

    def test_uia_session_bound_to_request(self):
        second = self.server.login(self.name, password="pw").json
        r = self.req("DELETE", V3 + "/devices/" + second["device_id"], token=self.t, body={})
        # the same session used on another device path is refused
        third = self.server.login(self.name, password="pw").json
        r2 = self.req("DELETE", V3 + "/devices/" + third["device_id"], token=self.t,
                      body={"auth": password_auth(self.u["user_id"], "pw", r.json["session"])})
        self.assertError(r2, 403, "M_FORBIDDEN")

    def test_delete_devices(self):
        a = self.server.login(self.name, password="pw").json
        b = self.server.login(self.name, password="pw").json
        body = {"devices": [a["device_id"], b["device_id"], "UNKNOWN"]}
        r = self.req("POST", V3 + "/delete_devices", token=self.t, body=body)
        self.assertEqual(r.status, 401)
        body["auth"] = password_auth(self.u["user_id"], "pw", r.json["session"])
        self.assertEqual(self.req("POST", V3 + "/delete_devices", token=self.t, body=body).status, 200)
        left = [d["device_id"] for d in self.req("GET", V3 + "/devices", token=self.t).json["devices"]]
        self.assertEqual(left, [self.u["device_id"]])
        self.assertError(self.req("POST", V3 + "/delete_devices", token=self.t, body={"devices": "x"}), 400,
                         "M_BAD_JSON")
        self.assertError(self.req("POST", V3 + "/delete_devices", token=self.t, body={"devices": [1]}), 400,
                         "M_BAD_JSON")


class Password(AxonTestCase):
    def test_change_password_logs_out_other_devices(self):
        name = unique()
        u = self.server.register(name, password="old")
        other = self.server.login(name, password="old").json
        path = V3 + "/account/password"
        r = self.req("POST", path, token=u["access_token"], body={"new_password": "new"})
        self.assertEqual(r.status, 401)
        r = self.req("POST", path, token=u["access_token"],
                     body={"new_password": "new", "auth": password_auth(u["user_id"], "old", r.json["session"])})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", path, r)
        self.assertError(self.server.login(name, password="old"), 403, "M_FORBIDDEN")
        self.assertEqual(self.server.login(name, password="new").status, 200)
        self.assertEqual(self.req("GET", V3 + "/account/whoami", token=u["access_token"]).status, 200)
        self.assertError(self.req("GET", V3 + "/account/whoami", token=other["access_token"]), 401, "M_UNKNOWN_TOKEN")

    def test_logout_devices_false_keeps_them(self):
        name = unique()
        u = self.server.register(name, password="old")
        other = self.server.login(name, password="old").json
        r = self.req("POST", V3 + "/account/password", token=u["access_token"],
                     body={"new_password": "new", "logout_devices": False, "auth": password_auth(u["user_id"], "old")})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(self.req("GET", V3 + "/account/whoami", token=other["access_token"]).status, 200)

    def test_bad_input(self):
        u = self.server.register(unique(), password="old")
        self.assertError(self.req("POST", V3 + "/account/password", token=u["access_token"],
                                  body={"new_password": 5}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", V3 + "/account/password", body={"new_password": "x"}), 401,
                         "M_MISSING_TOKEN")
        r = self.req("POST", V3 + "/account/password", token=u["access_token"],
                     body={"auth": password_auth(u["user_id"], "old")})
        self.assertError(r, 400, "M_MISSING_PARAM")
        # nothing changed
        self.assertEqual(self.server.login(u["user_id"], password="old").status, 200)


class Deactivate(AxonTestCase):
    def test_deactivate(self):
        name = unique()
        u = self.server.register(name, password="pw")
        path = V3 + "/account/deactivate"
        r = self.req("POST", path, token=u["access_token"], body={})
        self.assertEqual(r.status, 401)
        r = self.req("POST", path, token=u["access_token"],
                     body={"auth": password_auth(u["user_id"], "pw", r.json["session"])})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", path, r)
        self.assertError(self.req("GET", V3 + "/account/whoami", token=u["access_token"]), 401, "M_UNKNOWN_TOKEN")
        self.assertEqual(self.server.login(name, password="pw").status, 403)
        # the ID is never reused
        self.assertError(self.req("GET", V3 + "/register/available?username=" + name), 400, "M_USER_IN_USE")
        r = self.req("POST", V3 + "/register", body={"username": name, "password": "pw",
                                                     "auth": {"type": "m.login.dummy"}})
        self.assertError(r, 400, "M_USER_IN_USE")

    def test_deactivate_leaves_rooms_and_declines_invites(self):
        owner = self.server.register(unique())
        u = self.server.register(unique(), password="pw")
        joined = self.req("POST", V3 + "/createRoom", token=owner["access_token"],
                          body={"preset": "public_chat"}).json["room_id"]
        invited = self.req("POST", V3 + "/createRoom", token=owner["access_token"], body={}).json["room_id"]
        self.assertEqual(self.req("POST", V3 + "/join/" + joined, token=u["access_token"], body={}).status, 200)
        self.assertEqual(self.req("POST", V3 + "/rooms/%s/invite" % invited, token=owner["access_token"],
                                  body={"user_id": u["user_id"]}).status, 200)
        r = self.req("POST", V3 + "/account/deactivate", token=u["access_token"], body={})
        r = self.req("POST", V3 + "/account/deactivate", token=u["access_token"],
                     body={"auth": password_auth(u["user_id"], "pw", r.json["session"])})
        self.assertEqual(r.status, 200, r)
        for room in (joined, invited):
            r = self.req("GET", V3 + "/rooms/%s/state/m.room.member/%s" % (room, u["user_id"]),
                         token=owner["access_token"])
            self.assertEqual((r.status, r.json.get("membership")), (200, "leave"), room)
        r = self.req("GET", V3 + "/rooms/%s/joined_members" % joined, token=owner["access_token"])
        self.assertEqual(list(r.json["joined"]), [owner["user_id"]])

    def test_wrong_password_keeps_account(self):
        name = unique()
        u = self.server.register(name, password="pw")
        r = self.req("POST", V3 + "/account/deactivate", token=u["access_token"],
                     body={"auth": password_auth(u["user_id"], "bad")})
        self.assertEqual(r.status, 401)
        self.assertEqual(self.server.login(name, password="pw").status, 200)


class Profile(AxonTestCase):
    def test_displayname_and_avatar(self):
        u = self.server.register(unique())
        uid, t = u["user_id"], u["access_token"]
        r = self.req("GET", V3 + "/profile/" + uid)
        self.assertEqual(r.status, 200)
        self.assertSpec("GET", V3 + "/profile/" + uid, r)
        self.assertEqual(self.req("PUT", V3 + "/profile/%s/displayname" % uid, token=t,
                                  body={"displayname": "Alice \u2603"}).json, {})
        r = self.req("GET", V3 + "/profile/%s/displayname" % uid)
        self.assertEqual(r.json, {"displayname": "Alice \u2603"})
        self.assertSpec("GET", V3 + "/profile/%s/displayname" % uid, r)
        self.assertEqual(self.req("PUT", V3 + "/profile/%s/avatar_url" % uid, token=t,
                                  body={"avatar_url": "mxc://example.org/abc"}).status, 200)
        self.assertEqual(self.req("GET", V3 + "/profile/" + uid).json,
                         {"displayname": "Alice \u2603", "avatar_url": "mxc://example.org/abc"})
        self.assertEqual(self.req("DELETE", V3 + "/profile/%s/avatar_url" % uid, token=t).status, 200)
        self.assertError(self.req("GET", V3 + "/profile/%s/avatar_url" % uid), 404, "M_NOT_FOUND")

    def test_custom_fields(self):
        u = self.server.register(unique())
        uid, t = u["user_id"], u["access_token"]
        self.assertEqual(self.req("PUT", V3 + "/profile/%s/m.tz" % uid, token=t, body={"m.tz": "Europe/Paris"}).status,
                         200)
        self.assertEqual(self.req("PUT", V3 + "/profile/%s/org.example.job" % uid, token=t,
                                  body={"org.example.job": {"title": "baker"}}).status, 200)
        prof = self.req("GET", V3 + "/profile/" + uid).json
        self.assertEqual(prof["org.example.job"], {"title": "baker"})
        self.assertError(self.req("PUT", V3 + "/profile/%s/Bad.Key" % uid, token=t, body={"Bad.Key": 1}), 400,
                         "M_INVALID_PARAM")
        self.assertError(self.req("PUT", V3 + "/profile/%s/org.example.big" % uid, token=t,
                                  body={"org.example.big": "x" * 70000}), 400, "M_PROFILE_TOO_LARGE")

    def test_errors(self):
        u = self.server.register(unique())
        other = self.server.register(unique())
        uid, t = u["user_id"], u["access_token"]
        self.assertError(self.req("PUT", V3 + "/profile/%s/displayname" % other["user_id"], token=t,
                                  body={"displayname": "x"}), 403, "M_FORBIDDEN")
        self.assertError(self.req("PUT", V3 + "/profile/%s/displayname" % uid, body={"displayname": "x"}), 401,
                         "M_MISSING_TOKEN")
        self.assertError(self.req("PUT", V3 + "/profile/%s/displayname" % uid, token=t, body={"displayname": 3}),
                         400, "M_BAD_JSON")
        self.assertError(self.req("PUT", V3 + "/profile/%s/displayname" % uid, token=t, body={}), 400,
                         "M_MISSING_PARAM")
        self.assertError(self.req("PUT", V3 + "/profile/%s/avatar_url" % uid, token=t,
                                  body={"avatar_url": "https://evil.example/x.png"}), 400, "M_BAD_JSON")
        self.assertError(self.req("GET", V3 + "/profile/@nobody:%s" % self.server.server_name), 404, "M_NOT_FOUND")
        # nothing was stored by the rejected writes
        self.assertEqual(self.req("GET", V3 + "/profile/" + uid).json, {"displayname": uid[1:].split(":")[0]})


class Capabilities(AxonTestCase):
    def test_capabilities(self):
        u = self.server.register(unique())
        r = self.req("GET", V3 + "/capabilities", token=u["access_token"])
        self.assertEqual(r.status, 200)
        caps = r.json["capabilities"]
        self.assertTrue(caps["m.change_password"]["enabled"])
        self.assertEqual(caps["m.room_versions"]["default"], "12")
        self.assertEqual(caps["m.room_versions"]["available"].get("12"), "stable")
        self.assertFalse(caps["m.3pid_changes"]["enabled"])
        self.assertSpec("GET", V3 + "/capabilities", r)


if __name__ == "__main__":
    main()
