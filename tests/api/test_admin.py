#!/usr/bin/python3
"""`axon admin` against the data dir of a running server (server/admin.c)."""

import json
import subprocess

from axontest import AXON_BIN, AxonTestCase, main, unique


class Admin(AxonTestCase):
    def admin(self, *args, stdin=None):
        return subprocess.run([AXON_BIN, "admin", "-c", self.server.write_config()] + list(args),
                              input=stdin, capture_output=True, text=True, timeout=60)

    def test_create_user_with_generated_password(self):
        name = unique()
        out = self.admin("create-user", name)
        self.assertEqual(out.returncode, 0, out.stderr)
        uid, pwline = out.stdout.splitlines()
        self.assertEqual(uid, "@%s:%s" % (name, self.server.server_name))
        password = pwline.split(": ", 1)[1]
        self.assertEqual(self.server.login(name, password=password).status, 200)
        again = self.admin("create-user", name)
        self.assertEqual(again.returncode, 1)
        self.assertIn("already exists", again.stderr)

    def test_create_admin_from_stdin_and_list(self):
        name = unique()
        out = self.admin("create-user", name, "--admin", "--password-stdin", stdin="s3cret\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(self.server.login(name, password="s3cret").status, 200)
        users = {u["user_id"]: u for u in json.loads(self.admin("list-users", "--json").stdout)}
        self.assertTrue(users["@%s:%s" % (name, self.server.server_name)]["admin"])
        self.assertIn(name, self.admin("list-users").stdout)

    def test_reset_password_logs_out(self):
        name = unique()
        u = self.server.register(name, password="old")
        out = self.admin("reset-password", name, "--password-stdin", stdin="new\n")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(self.server.login(name, password="new").status, 200)
        self.assertEqual(self.server.login(name, password="old").status, 403)
        self.assertEqual(self.req("GET", "/_matrix/client/v3/account/whoami", token=u["access_token"]).status, 401)

    def test_deactivate(self):
        name = unique()
        u = self.server.register(name)
        out = self.admin("deactivate", name)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(self.req("GET", "/_matrix/client/v3/account/whoami", token=u["access_token"]).status, 401)
        self.assertEqual(self.server.login(name).status, 403)

    def test_deactivate_leaves_rooms_without_clashing_with_the_server(self):
        """The admin process hands out stream positions too: the server continues after them."""
        a = self.server.register(unique())
        b = self.server.register(unique())
        room = self.req("POST", "/_matrix/client/v3/createRoom", {"preset": "public_chat"},
                        token=a["access_token"]).json["room_id"]
        self.assertEqual(self.req("POST", "/_matrix/client/v3/join/" + room, {}, token=b["access_token"]).status, 200)
        self.assertEqual(self.admin("deactivate", b["user_id"]).returncode, 0)
        r = self.req("PUT", "/_matrix/client/v3/rooms/%s/send/m.room.message/after" % room,
                     {"msgtype": "m.text", "body": "after"}, token=a["access_token"])
        self.assertEqual(r.status, 200, r.json)
        r = self.req("GET", "/_matrix/client/v3/rooms/%s/messages?dir=b&limit=3" % room, token=a["access_token"])
        got = [(e["type"], e.get("state_key"), e["content"].get("membership") or e["content"].get("body"))
               for e in r.json["chunk"]]
        self.assertEqual(got[:2], [("m.room.message", None, "after"), ("m.room.member", b["user_id"], "leave")])

    def test_registration_tokens(self):
        out = self.admin("registration-token", "create", "--uses", "2", "--expires-in", "3600")
        self.assertEqual(out.returncode, 0, out.stderr)
        token = out.stdout.strip()
        self.assertRegex(token, r"^[A-Za-z0-9]{16}$")
        listed = json.loads(self.admin("registration-token", "list", "--json").stdout)
        self.assertEqual([t["uses_allowed"] for t in listed if t["token"] == token], [2])
        self.assertEqual(self.admin("registration-token", "delete", token).returncode, 0)
        self.assertEqual(self.admin("registration-token", "delete", token).returncode, 1)

    def test_usage_errors(self):
        for args in (["frob"], ["create-user"], ["registration-token", "create", "--uses", "zero"], []):
            self.assertEqual(self.admin(*args).returncode, 2, args)
        self.assertEqual(self.admin("reset-password", "@x:elsewhere", "--password-stdin", stdin="x\n").returncode, 1)


if __name__ == "__main__":
    main()
