#!/usr/bin/python3
"""Registration (server/cs/register.c): UIA flows, usernames, availability,
registration tokens, disabled registration, shared-secret registration."""

import hashlib
import hmac
import json
import subprocess

from axontest import AxonTestCase, AXON_BIN, main, unique

REG = "/_matrix/client/v3/register"


class Register(AxonTestCase):
    def test_first_call_returns_flows(self):
        r = self.req("POST", REG, body={"username": unique(), "password": "pw"})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.dummy"]}])
        self.assertIsInstance(r.json["session"], str)
        self.assertEqual(r.json["params"], {})
        self.assertSpec("POST", REG, r)

    def test_dummy_flow_creates_user_and_logs_in(self):
        name = unique()
        r = self.req("POST", REG, body={"username": name, "password": "pw", "initial_device_display_name": "Phone"})
        session = r.json["session"]
        r = self.req("POST", REG, body={"username": name, "password": "pw", "initial_device_display_name": "Phone",
                                        "auth": {"type": "m.login.dummy", "session": session}})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["user_id"], "@%s:%s" % (name, self.server.server_name))
        self.assertTrue(r.json["access_token"].startswith("axo_"))
        self.assertSpec("POST", REG, r)
        who = self.req("GET", "/_matrix/client/v3/account/whoami", token=r.json["access_token"])
        self.assertEqual(who.json["user_id"], r.json["user_id"])
        dev = self.req("GET", "/_matrix/client/v3/devices/" + r.json["device_id"], token=r.json["access_token"])
        self.assertEqual(dev.json["display_name"], "Phone")

    def test_session_is_consumed(self):
        name = unique()
        session = self.req("POST", REG, body={"username": name, "password": "pw"}).json["session"]
        auth = {"type": "m.login.dummy", "session": session}
        self.assertEqual(self.req("POST", REG, body={"username": name, "password": "pw", "auth": auth}).status, 200)
        r = self.req("POST", REG, body={"username": unique(), "password": "pw", "auth": auth})
        self.assertError(r, 400, "M_UNKNOWN")

    def test_auth_without_session_works(self):
        # Complement and some bots skip the first call
        r = self.req("POST", REG, body={"username": unique(), "password": "pw", "auth": {"type": "m.login.dummy"}})
        self.assertEqual(r.status, 200, r)

    def test_downcases_username(self):
        name = unique("MixedCase")
        r = self.server.register(name)
        self.assertEqual(r["user_id"], "@%s:%s" % (name.lower(), self.server.server_name))

    def test_invalid_usernames(self):
        for bad in ("has space", "caf\u00e9", "a:b", "@x", "", "x" * 300, "semi;colon"):
            r = self.req("POST", REG, body={"username": bad, "password": "pw"})
            self.assertError(r, 400, "M_INVALID_USERNAME")

    def test_user_in_use(self):
        name = unique()
        self.server.register(name)
        r = self.req("POST", REG, body={"username": name.upper(), "password": "pw"})
        self.assertError(r, 400, "M_USER_IN_USE")

    def test_same_device_id_returned(self):
        r = self.server.register(unique(), device_id="MYDEVICE")
        self.assertEqual(r["device_id"], "MYDEVICE")

    def test_inhibit_login(self):
        r = self.server.register(unique(), extra={"inhibit_login": True})
        self.assertNotIn("access_token", r)
        self.assertNotIn("device_id", r)
        self.assertIn("user_id", r)

    def test_no_username_generates_one(self):
        r = self.server.register(None)
        self.assertRegex(r["user_id"], r"^@[a-z0-9]{12}:")

    def test_unicode_password(self):
        name = unique()
        self.server.register(name, password="p\u00e4ssw\u00f6rd \U0001f511")
        self.assertEqual(self.server.login(name, password="p\u00e4ssw\u00f6rd \U0001f511").status, 200)

    def test_refresh_token_on_register(self):
        r = self.server.register(unique(), extra={"refresh_token": True})
        self.assertIn("refresh_token", r)
        self.assertGreater(r["expires_in_ms"], 0)

    def test_bad_input(self):
        self.assertError(self.req("POST", REG, raw=b"{not json", headers={"Content-Type": "application/json"}),
                         400, "M_NOT_JSON")
        self.assertError(self.req("POST", REG, raw=b"[1,2]"), 400, "M_NOT_JSON")
        self.assertError(self.req("POST", REG, raw=b'{"username":"\xff\xfe"}'), 400, "M_NOT_JSON")
        self.assertError(self.req("POST", REG, body={"username": 5, "password": "pw"}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", REG, body={"username": unique(), "password": ["x"]}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", REG, body={"username": unique(), "inhibit_login": "yes"}), 400,
                         "M_BAD_JSON")
        self.assertError(self.req("POST", REG, body={"username": unique(), "auth": "dummy"}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", REG, body={"username": unique(), "password": "x" * 600}), 400,
                         "M_INVALID_PARAM")
        r = self.req("POST", REG, body={"username": unique(), "auth": {"type": "m.login.password"}})
        self.assertEqual(r.status, 401)
        self.assertEqual(r.errcode, "M_UNRECOGNIZED")

    def test_guest_registration_forbidden(self):
        r = self.req("POST", REG + "?kind=guest", body={})
        self.assertError(r, 403, "M_GUEST_ACCESS_FORBIDDEN")

    def test_available(self):
        name = unique()
        r = self.req("GET", REG + "/available?username=" + name)
        self.assertEqual(r.json, {"available": True})
        self.assertSpec("GET", REG + "/available", r)
        self.server.register(name)
        self.assertError(self.req("GET", REG + "/available?username=" + name), 400, "M_USER_IN_USE")
        self.assertError(self.req("GET", REG + "/available?username=not%20valid"), 400, "M_INVALID_USERNAME")
        self.assertError(self.req("GET", REG + "/available"), 400, "M_MISSING_PARAM")

    def test_session_cannot_be_replayed_elsewhere(self):
        session = self.req("POST", REG, body={"username": unique(), "password": "pw"}).json["session"]
        user = self.server.register(unique(), password="pw")
        r = self.req("POST", "/_matrix/client/v3/account/password", token=user["access_token"],
                     body={"new_password": "new", "auth": {"type": "m.login.dummy", "session": session}})
        self.assertError(r, 403, "M_FORBIDDEN")


class RegistrationDisabled(AxonTestCase):
    server_config = {"allow_registration": "false"}

    def test_disabled(self):
        r = self.req("POST", REG, body={"username": unique(), "password": "pw"})
        self.assertError(r, 403, "M_FORBIDDEN")
        self.assertEqual(r.json["error"], "Registration is disabled")
        r = self.req("GET", "/_matrix/client/v1/register/m.login.registration_token/validity?token=x")
        self.assertError(r, 403, "M_FORBIDDEN")


class RegistrationToken(AxonTestCase):
    server_config = {"registration_token": "letmein"}

    def test_token_flow(self):
        name = unique()
        r = self.req("POST", REG, body={"username": name, "password": "pw"})
        self.assertEqual(r.json["flows"], [{"stages": ["m.login.registration_token"]}])
        session = r.json["session"]
        bad = self.req("POST", REG, body={"username": name, "password": "pw",
                                          "auth": {"type": "m.login.registration_token", "token": "nope",
                                                   "session": session}})
        self.assertEqual(bad.status, 401)
        self.assertEqual(bad.errcode, "M_FORBIDDEN")
        dummy = self.req("POST", REG, body={"username": name, "password": "pw",
                                            "auth": {"type": "m.login.dummy", "session": session}})
        self.assertEqual(dummy.status, 401)  # not an allowed stage here
        ok = self.req("POST", REG, body={"username": name, "password": "pw",
                                         "auth": {"type": "m.login.registration_token", "token": "letmein",
                                                  "session": session}})
        self.assertEqual(ok.status, 200, ok)

    def test_validity(self):
        v = "/_matrix/client/v1/register/m.login.registration_token/validity"
        r = self.req("GET", v + "?token=letmein")
        self.assertEqual(r.json, {"valid": True})
        self.assertSpec("GET", v, r)
        self.assertEqual(self.req("GET", v + "?token=other").json, {"valid": False})
        self.assertError(self.req("GET", v), 400, "M_MISSING_PARAM")

    def test_admin_tokens_with_use_limit(self):
        out = subprocess.run([AXON_BIN, "admin", "-c", self.server.write_config(), "registration-token", "create",
                              "--uses", "1", "--token", "oneshot"], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stderr)
        first = unique()
        r = self.req("POST", REG, body={"username": first, "password": "pw",
                                        "auth": {"type": "m.login.registration_token", "token": "oneshot"}})
        self.assertEqual(r.status, 200, r)
        r = self.req("POST", REG, body={"username": unique(), "password": "pw",
                                        "auth": {"type": "m.login.registration_token", "token": "oneshot"}})
        self.assertEqual((r.status, r.errcode), (401, "M_FORBIDDEN"))
        lst = subprocess.run([AXON_BIN, "admin", "-c", self.server.write_config(), "registration-token", "list",
                              "--json"], capture_output=True, text=True)
        tokens = {t["token"]: t for t in json.loads(lst.stdout)}
        self.assertEqual(tokens["oneshot"]["completed"], 1)


class SharedSecret(AxonTestCase):
    server_config = {"registration_shared_secret": "s3cret", "allow_registration": "false"}

    def mac(self, nonce, user, password, admin):
        msg = b"\x00".join([nonce.encode(), user.encode(), password.encode(), b"admin" if admin else b"notadmin"])
        return hmac.new(b"s3cret", msg, hashlib.sha1).hexdigest()

    def test_shared_secret_registration(self):
        path = "/_synapse/admin/v1/register"
        nonce = self.req("GET", path).json["nonce"]
        name = unique()
        r = self.req("POST", path, body={"nonce": nonce, "username": name, "password": "pw", "admin": True,
                                         "mac": self.mac(nonce, name, "pw", True)})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["user_id"], "@%s:%s" % (name, self.server.server_name))
        self.assertEqual(self.server.login(name, password="pw").status, 200)
        # the nonce is single use
        r = self.req("POST", path, body={"nonce": nonce, "username": unique(), "password": "pw",
                                         "mac": self.mac(nonce, name, "pw", False)})
        self.assertEqual(r.status, 400)
        # a wrong mac is refused
        nonce = self.req("GET", path).json["nonce"]
        r = self.req("POST", path, body={"nonce": nonce, "username": unique(), "password": "pw", "mac": "00" * 20})
        self.assertError(r, 403, "M_FORBIDDEN")


if __name__ == "__main__":
    main()
