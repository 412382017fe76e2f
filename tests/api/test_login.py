#!/usr/bin/python3
"""Login, tokens, refresh, logout, whoami (server/cs/login.c, server/auth.c),
and the foundation's authentication and rate-limit errors."""

import concurrent.futures
import time

from axontest import AxonTestCase, Server, main, unique

LOGIN = "/_matrix/client/v3/login"
WHOAMI = "/_matrix/client/v3/account/whoami"


class Login(AxonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.name = unique("alice")
        cls.user = cls.server.register(cls.name)

    def test_flows(self):
        r = self.req("GET", LOGIN)
        self.assertEqual(r.status, 200)
        types = [f["type"] for f in r.json["flows"]]
        self.assertIn("m.login.password", types)
        self.assertIn("m.login.token", types)
        self.assertSpec("GET", LOGIN, r)

    def test_password_login_by_localpart_full_id_and_legacy_user(self):
        for ident in (self.name, self.user["user_id"], self.name.upper()):
            r = self.server.login(ident)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["user_id"], self.user["user_id"])
            self.assertSpec("POST", LOGIN, r)
        r = self.req("POST", LOGIN, body={"type": "m.login.password", "user": self.name,
                                          "password": "correct horse battery"})
        self.assertEqual(r.status, 200)

    def test_requested_device_id(self):
        r = self.server.login(self.name, device_id="KITCHEN")
        self.assertEqual(r.json["device_id"], "KITCHEN")
        # logging in again on the same device replaces its token
        r2 = self.server.login(self.name, device_id="KITCHEN")
        self.assertError(self.req("GET", WHOAMI, token=r.json["access_token"]), 401, "M_UNKNOWN_TOKEN")
        self.assertEqual(self.req("GET", WHOAMI, token=r2.json["access_token"]).json["device_id"], "KITCHEN")

    def test_wrong_password_and_unknown_user(self):
        self.assertError(self.server.login(self.name, password="nope"), 403, "M_FORBIDDEN")
        self.assertError(self.server.login(unique("nobody")), 403, "M_FORBIDDEN")
        self.assertError(self.server.login("@someone:other.server"), 403, "M_FORBIDDEN")

    def test_bad_input(self):
        self.assertError(self.req("POST", LOGIN, raw=b"nope"), 400, "M_NOT_JSON")
        self.assertError(self.req("POST", LOGIN, body={}), 400, "M_MISSING_PARAM")
        self.assertError(self.req("POST", LOGIN, body={"type": 1}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", LOGIN, body={"type": "m.login.sso"}), 400, "M_UNKNOWN")
        self.assertError(self.req("POST", LOGIN, body={"type": "m.login.password", "identifier": {"type": "m.id.user"},
                                                       "password": "x"}), 400, "M_MISSING_PARAM")
        self.assertError(self.req("POST", LOGIN, body={"type": "m.login.password", "identifier": "alice",
                                                       "password": "x"}), 400, "M_BAD_JSON")
        self.assertError(self.req("POST", LOGIN, body={"type": "m.login.password",
                                                       "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                                                      "address": "a@b.c"}, "password": "x"}),
                         400, "M_UNKNOWN")

    def test_whoami(self):
        r = self.req("GET", WHOAMI, token=self.user["access_token"])
        self.assertEqual(r.json, {"user_id": self.user["user_id"], "device_id": self.user["device_id"],
                                  "is_guest": False})
        self.assertSpec("GET", WHOAMI, r)

    def test_missing_and_bad_tokens(self):
        self.assertError(self.req("GET", WHOAMI), 401, "M_MISSING_TOKEN")
        self.assertError(self.req("GET", WHOAMI, token="axo_nonsense"), 401, "M_UNKNOWN_TOKEN")
        self.assertError(self.req("GET", WHOAMI, headers={"Authorization": "Basic Zm9vOmJhcg=="}), 401,
                         "M_UNKNOWN_TOKEN")
        self.assertError(self.req("GET", WHOAMI, headers={"Authorization": "Bearer "}), 401, "M_UNKNOWN_TOKEN")
        # the deprecated query parameter still works
        r = self.req("GET", WHOAMI + "?access_token=" + self.user["access_token"])
        self.assertEqual(r.status, 200)
        r = self.req("GET", "/_matrix/client/r0/account/whoami", token=self.user["access_token"])
        self.assertEqual(r.status, 200)

    def test_logout(self):
        t = self.server.login(self.name).json
        self.assertEqual(self.req("POST", "/_matrix/client/v3/logout", token=t["access_token"]).json, {})
        self.assertError(self.req("GET", WHOAMI, token=t["access_token"]), 401, "M_UNKNOWN_TOKEN")
        devices = self.req("GET", "/_matrix/client/v3/devices", token=self.user["access_token"]).json["devices"]
        self.assertNotIn(t["device_id"], [d["device_id"] for d in devices])

    def test_logout_all(self):
        name = unique()
        first = self.server.register(name)
        second = self.server.login(name).json
        r = self.req("POST", "/_matrix/client/v3/logout/all", token=second["access_token"])
        self.assertEqual(r.status, 200)
        for t in (first, second):
            self.assertError(self.req("GET", WHOAMI, token=t["access_token"]), 401, "M_UNKNOWN_TOKEN")

    def test_refresh_rotation(self):
        r = self.server.login(self.name, refresh_token=True).json
        self.assertIn("refresh_token", r)
        self.assertGreater(r["expires_in_ms"], 0)
        ref = self.req("POST", "/_matrix/client/v3/refresh", body={"refresh_token": r["refresh_token"]})
        self.assertEqual(ref.status, 200, ref)
        self.assertSpec("POST", "/_matrix/client/v3/refresh", ref)
        self.assertNotEqual(ref.json["refresh_token"], r["refresh_token"])
        # the old access token is gone, the new one works on the same device
        self.assertError(self.req("GET", WHOAMI, token=r["access_token"]), 401, "M_UNKNOWN_TOKEN")
        who = self.req("GET", WHOAMI, token=ref.json["access_token"])
        self.assertEqual(who.json["device_id"], r["device_id"])
        # using the new refresh token retires the one before it
        ref2 = self.req("POST", "/_matrix/client/v3/refresh", body={"refresh_token": ref.json["refresh_token"]})
        self.assertEqual(ref2.status, 200)
        old = self.req("POST", "/_matrix/client/v3/refresh", body={"refresh_token": r["refresh_token"]})
        self.assertError(old, 401, "M_UNKNOWN_TOKEN")
        self.assertError(self.req("POST", "/_matrix/client/v3/refresh", body={"refresh_token": "axr_bogus"}), 401,
                         "M_UNKNOWN_TOKEN")
        self.assertError(self.req("POST", "/_matrix/client/v3/refresh", body={}), 400, "M_MISSING_PARAM")

    def test_login_token(self):
        name = unique()
        u = self.server.register(name, password="pw")
        path = "/_matrix/client/v1/login/get_token"
        first = self.req("POST", path, token=u["access_token"], body={})
        self.assertEqual(first.status, 401)
        r = self.req("POST", path, token=u["access_token"], body={
            "auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
                     "password": "pw", "session": first.json["session"]}})
        self.assertEqual(r.status, 200, r)
        self.assertSpec("POST", path, r)
        tok = r.json["login_token"]
        login = self.req("POST", LOGIN, body={"type": "m.login.token", "token": tok})
        self.assertEqual(login.status, 200, login)
        self.assertEqual(login.json["user_id"], u["user_id"])
        # single use
        self.assertError(self.req("POST", LOGIN, body={"type": "m.login.token", "token": tok}), 403, "M_FORBIDDEN")


class RateLimits(AxonTestCase):
    server_config = {"ratelimit.login_per_second": "0.1", "ratelimit.login_burst": "3"}

    def test_login_rate_limited(self):
        codes = [self.server.login(unique("x"), password="wrong") for _ in range(5)]
        self.assertEqual([r.status for r in codes[:3]], [403, 403, 403])
        limited = codes[3]
        self.assertError(limited, 429, "M_LIMIT_EXCEEDED")
        self.assertGreater(limited.json["retry_after_ms"], 0)
        self.assertIn("retry-after", limited.headers)
        self.assertSpec("POST", LOGIN, limited)

    def test_forwarded_for_from_trusted_proxy(self):
        # 127.0.0.1 is a trusted proxy by default: each forwarded client has its own bucket
        for i in range(3):
            r = self.server.request("POST", LOGIN, body={"type": "m.login.password", "user": "x", "password": "y"},
                                    headers={"X-Forwarded-For": "203.0.113.%d" % (10 + i)})
            self.assertEqual(r.status, 403)


class UntrustedProxy(AxonTestCase):
    server_config = {"ratelimit.login_per_second": "0.1", "ratelimit.login_burst": "2", "trusted_proxies": ""}

    def test_forwarded_for_ignored_when_untrusted(self):
        statuses = [self.server.request("POST", LOGIN, body={"type": "m.login.password", "user": "x", "password": "y"},
                                        headers={"X-Forwarded-For": "198.51.100.%d" % i}).status for i in range(3)]
        self.assertEqual(statuses, [403, 403, 429])


class Overload(AxonTestCase):
    server_config = {"max_concurrent_requests": "1", "worker_threads": "1"}

    def test_503_beyond_max_concurrent_requests(self):
        # logins spend tens of milliseconds on argon2 in the worker pool: fire several at once
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: self.server.login("nobody", password="x"), range(8)))
        codes = sorted(r.status for r in results)
        self.assertIn(503, codes, codes)
        over = [r for r in results if r.status == 503][0]
        self.assertEqual(over.headers.get("retry-after"), "1")
        self.assertIsInstance(over.json.get("error"), str)


if __name__ == "__main__":
    main()
