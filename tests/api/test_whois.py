#!/usr/bin/python3
"""GET /admin/whois/{userId} (server/cs/admin.c): a user's devices and where
they were last seen, for server admins and for the user themself."""

import subprocess
import time

from axontest import AXON_BIN, AxonTestCase, main, unique
from roomutil import q

PATH = "/_matrix/client/v3/admin/whois/"


class Whois(AxonTestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        name = unique("admin")
        out = subprocess.run([AXON_BIN, "admin", "-c", cls.server.write_config(), "create-user", name, "--admin",
                              "--password-stdin"], input="adm1n-pass\n", capture_output=True, text=True,
                             timeout=60)
        assert out.returncode == 0, out.stderr
        cls.admin_id = "@%s:%s" % (name, cls.server.server_name)
        cls.admin_token = cls.server.login(name, password="adm1n-pass").json["access_token"]

    def whois(self, user_id, token):
        return self.req("GET", PATH + q(user_id), token=token)

    def test_admin_sees_every_device(self):
        name = unique()
        before = int(time.time() * 1000)
        u = self.server.register(name, device_id="PHONE")
        self.assertEqual(self.server.login(name, device_id="LAPTOP").status, 200)
        gone = self.server.login(name, device_id="OLD").json
        r = self.req("POST", "/_matrix/client/v3/logout", body={}, token=gone["access_token"])
        self.assertEqual(r.status, 200, r)
        r = self.whois(u["user_id"], self.admin_token)
        self.assertEqual(r.status, 200, r)
        self.assertSpec("GET", PATH + u["user_id"], r)
        self.assertEqual(r.json["user_id"], u["user_id"])
        devices = r.json["devices"]
        self.assertEqual(set(devices), {"PHONE", "LAPTOP"})  # logging out deleted OLD
        for dev in ("PHONE", "LAPTOP"):
            sessions = devices[dev]["sessions"]
            self.assertEqual(len(sessions), 1)
            conn = sessions[0]["connections"]
            self.assertEqual(len(conn), 1)
            self.assertEqual(conn[0]["ip"], "127.0.0.1")
            self.assertGreaterEqual(conn[0]["last_seen"], before)
            self.assertLessEqual(conn[0]["last_seen"], int(time.time() * 1000) + 1000)

    def test_forwarded_address_from_a_trusted_proxy(self):
        name = unique()
        body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name},
                "password": "correct horse battery", "device_id": "PROXIED"}
        u = self.server.register(name)
        r = self.req("POST", "/_matrix/client/v3/login", body=body, headers={"X-Forwarded-For": "198.51.100.7"})
        self.assertEqual(r.status, 200, r)
        devices = self.whois(u["user_id"], u["access_token"]).json["devices"]
        self.assertEqual(devices["PROXIED"]["sessions"][0]["connections"][0]["ip"], "198.51.100.7")

    def test_last_seen_follows_use(self):
        """The device's last use (time, address, user agent) is recorded, not only its login."""
        u = self.server.register(unique(), device_id="ROAMING")
        time.sleep(0.05)
        used = int(time.time() * 1000)
        r = self.req("GET", "/_matrix/client/v3/account/whoami", token=u["access_token"],
                     headers={"X-Forwarded-For": "203.0.113.50", "User-Agent": "Element/1.11 (axon test)"})
        self.assertEqual(r.status, 200, r)
        deadline = time.time() + 5
        while True:
            conn = self.whois(u["user_id"], self.admin_token).json["devices"]["ROAMING"]["sessions"][0][
                "connections"][0]
            if conn.get("ip") == "203.0.113.50" or time.time() > deadline:
                break
            time.sleep(0.05)
        self.assertEqual((conn["ip"], conn.get("user_agent")), ("203.0.113.50", "Element/1.11 (axon test)"))
        self.assertGreaterEqual(conn["last_seen"], used)
        r = self.req("GET", "/_matrix/client/v3/devices/ROAMING", token=u["access_token"])
        self.assertEqual(r.json["last_seen_ip"], "203.0.113.50")

    def test_self(self):
        u = self.server.register(unique(), device_id="ONLY")
        r = self.whois(u["user_id"], u["access_token"])
        self.assertEqual(r.status, 200, r)
        self.assertSpec("GET", PATH + u["user_id"], r)
        self.assertEqual(list(r.json["devices"]), ["ONLY"])
        # admins too may look themselves up
        self.assertEqual(self.whois(self.admin_id, self.admin_token).json["user_id"], self.admin_id)

    def test_others_are_forbidden_whether_they_exist_or_not(self):
        a = self.server.register(unique())
        b = self.server.register(unique())
        self.assertError(self.whois(b["user_id"], a["access_token"]), 403, "M_FORBIDDEN")
        nobody = "@%s:%s" % (unique("nobody"), self.server.server_name)
        self.assertError(self.whois(nobody, a["access_token"]), 403, "M_FORBIDDEN")
        self.assertError(self.whois(self.admin_id, a["access_token"]), 403, "M_FORBIDDEN")

    def test_unknown_and_remote_users(self):
        nobody = "@%s:%s" % (unique("nobody"), self.server.server_name)
        self.assertError(self.whois(nobody, self.admin_token), 404, "M_NOT_FOUND")
        self.assertError(self.whois("@alice:elsewhere.example", self.admin_token), 404, "M_NOT_FOUND")

    def test_bad_input(self):
        u = self.server.register(unique())
        for bad in ("alice", "@", "@alice", "!room:" + self.server.server_name):
            self.assertError(self.whois(bad, self.admin_token), 400, "M_INVALID_PARAM")
        self.assertError(self.req("GET", PATH + q(u["user_id"])), 401, "M_MISSING_TOKEN")
        self.assertError(self.whois(u["user_id"], "axo_nonsense"), 401, "M_UNKNOWN_TOKEN")
        r = self.req("POST", PATH + q(u["user_id"]), body={}, token=self.admin_token)
        self.assertError(r, 405, "M_UNRECOGNIZED")

    def test_deactivated_user_has_no_devices(self):
        name = unique()
        u = self.server.register(name)
        out = subprocess.run([AXON_BIN, "admin", "-c", self.server.write_config(), "deactivate", name],
                             capture_output=True, text=True, timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        r = self.whois(u["user_id"], self.admin_token)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["devices"], {})


if __name__ == "__main__":
    main()
