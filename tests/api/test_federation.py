#!/usr/bin/python3
"""Federation transport, black box: three axon instances on loopback that
federate over TLS with a CA this test makes, and a fake remote homeserver
signing with the spec's test key.  Covers key fetching and verification
both ways, the notary (direct and as a fallback through a third server),
X-Matrix checks on every inbound request (forged, replayed, misdirected),
profile and directory queries across servers, TLS verification, the
refusal of private addresses, backoff and its admin commands, and key
rotation."""

import json
import subprocess
import time
import unittest
import urllib.parse

from axontest import AXON_BIN, Server, free_port, main, unique

try:
    import fedutil
    from fedutil import FakeRemote, FedTestCase, TestCA, fed_server, verify_doc, xmatrix
    HAVE_DEPS = fedutil.OPENSSL is not None
except ImportError:  # python3-signedjson / python3-nacl missing
    HAVE_DEPS = False
    FedTestCase = unittest.TestCase

V3 = "/_matrix/client/v3"
FED = "/_matrix/federation/v1"


def q(s):
    return urllib.parse.quote(s, safe="")


def metric(server, name, labels=""):
    text = server.request("GET", "/metrics").raw.decode()
    for line in text.splitlines():
        if line.startswith(name + labels + " ") or (not labels and line.startswith(name + " ")):
            return float(line.rsplit(" ", 1)[1])
    return None


def admin(server, *args):
    return subprocess.run([AXON_BIN, "admin", "-c", server.write_config()] + list(args),
                          capture_output=True, text=True, timeout=60)


@unittest.skipUnless(HAVE_DEPS, "openssl, python3-signedjson and python3-nacl are needed")
class Federation(FedTestCase):
    # A uses a DNS name (step 2 of discovery), B an IP literal (step 1), C asks B as its notary
    fed_servers = (("a", "localhost", None), ("b", "ip", None),
                   ("c", "localhost", lambda cls: {"trusted_key_servers": cls.b.server_name}))

    def user(self, server, name=None, displayname=None):
        u = server.register(name or unique())
        if displayname is not None:
            r = server.request("PUT", V3 + "/profile/%s/displayname" % q(u["user_id"]), token=u["access_token"],
                               body={"displayname": displayname})
            self.assertEqual(r.status, 200, r)
        return u["user_id"], u["access_token"]

    # -- keys ---------------------------------------------------------------------------------

    def test_profile_both_ways_fetches_and_verifies_keys(self):
        alice, _ = self.user(self.a, displayname="Alice Ä")
        bob, _ = self.user(self.b, displayname="Bob")
        r = self.a.request("GET", V3 + "/profile/" + q(bob))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["displayname"], "Bob")
        r = self.b.request("GET", V3 + "/profile/%s/displayname" % q(alice))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {"displayname": "Alice Ä"})
        # each side now holds the other's key, verified; their notary endpoints serve it countersigned
        for holder, subject in ((self.b, self.a), (self.a, self.b)):
            r = holder.request("GET", "/_matrix/key/v2/query/" + q(subject.server_name))
            self.assertEqual(r.status, 200, r)
            docs = [d for d in r.json["server_keys"] if d["server_name"] == subject.server_name]
            self.assertTrue(docs, r)
            own = fedutil.fetch_keys_plain(subject.port)
            for doc in docs:
                self.assertEqual(doc["verify_keys"], own["verify_keys"])
                verify_doc(doc, subject.server_name)  # the owner's signature
                verify_doc_by(self, doc, holder)       # the notary's
        self.assertGreaterEqual(metric(self.a, "axon_federation_requests_total", '{result="ok"}'), 1)

    def test_unknown_remote_profile_is_404_and_missing_field(self):
        bob, _ = self.user(self.b)
        r = self.a.request("GET", V3 + "/profile/" + q("@nobody_%d:%s" % (time.time(), self.b.server_name)))
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json["errcode"], "M_NOT_FOUND")
        r = self.a.request("GET", V3 + "/profile/%s/avatar_url" % q(bob))
        self.assertEqual(r.status, 404, r)

    def test_own_keys_served_by_notary_and_post_query(self):
        body = {"server_keys": {self.a.server_name: {}, self.b.server_name: {}}}
        r = self.c.request("POST", "/_matrix/key/v2/query", body=body)
        self.assertEqual(r.status, 200, r)
        names = sorted(d["server_name"] for d in r.json["server_keys"])
        self.assertEqual(names, sorted([self.a.server_name, self.b.server_name]))
        for d in r.json["server_keys"]:
            verify_doc(d, d["server_name"])
            verify_doc_by(self, d, self.c)
        r = self.c.request("GET", "/_matrix/key/v2/query/" + q(self.c.server_name))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["server_keys"][0]["server_name"], self.c.server_name)
        r = self.c.request("POST", "/_matrix/key/v2/query", body={"server_keys": {}})
        self.assertEqual(r.json, {"server_keys": []})
        r = self.c.request("POST", "/_matrix/key/v2/query", body={"nope": 1})
        self.assertEqual(r.status, 400, r)

    # -- the fake remote server calls us ---------------------------------------------------------

    def test_signed_request_accepted(self):
        alice, _ = self.user(self.a, displayname="Alice")
        path = FED + "/query/profile?user_id=" + q(alice)
        status, body = self.fake.send(self.a, "GET", path, ca=self.ca)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["displayname"], "Alice")
        status, body = self.fake.send(self.a, "GET", path + "&field=displayname", ca=self.ca)
        self.assertEqual((status, body), (200, {"displayname": "Alice"}))
        status, body = self.fake.send(self.a, "GET", FED + "/user/devices/" + q(alice), ca=self.ca)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["user_id"], alice)
        self.assertIsInstance(body["stream_id"], int)
        self.assertEqual(body["devices"], [])  # only devices with published keys (test_fed_e2ee.py has those)

    def test_forged_and_misdirected_headers_rejected(self):
        alice, _ = self.user(self.a)
        path = FED + "/query/profile?user_id=" + q(alice)
        good = xmatrix(self.fake.server_name, self.a.server_name, self.fake.key_id, self.fake.signing_key,
                       "GET", path)
        cases = {
            "missing": "",
            "bearer": "Bearer abc",
            "malformed": 'X-Matrix origin="%s",key=' % self.fake.server_name,
            "bad signature": good.replace('sig="', 'sig="AAAA'),
            "replayed on another uri": xmatrix(self.fake.server_name, self.a.server_name, self.fake.key_id,
                                               self.fake.signing_key, "GET", path + "&field=displayname"),
            "replayed to another server": xmatrix(self.fake.server_name, self.b.server_name, self.fake.key_id,
                                                  self.fake.signing_key, "GET", path),
            "replayed with another method": xmatrix(self.fake.server_name, self.a.server_name,
                                                    self.fake.key_id, self.fake.signing_key, "POST", path),
            "unknown key": good.replace('key="ed25519:1"', 'key="ed25519:other"'),
            "wrong origin": good.replace('origin="%s"' % self.fake.server_name,
                                         'origin="%s"' % self.b.server_name),
        }
        for name, auth in cases.items():
            status, body = self.fake.send(self.a, "GET", path, auth=auth, ca=self.ca)
            self.assertEqual(status, 401, "%s: %r" % (name, body))
            self.assertEqual(body["errcode"], "M_UNAUTHORIZED", name)
        # the same good header still works: what was rejected was the forgery, not the sender
        status, _ = self.fake.send(self.a, "GET", path, auth=good, ca=self.ca)
        self.assertEqual(status, 200)

    def test_header_syntax_variants_accepted(self):
        """RFC 9110 credentials: spaces around commas, any case of names, unquoted tokens with colons."""
        alice, _ = self.user(self.a)
        path = FED + "/user/devices/" + q(alice)
        p = fedutil.parse_xmatrix(xmatrix(self.fake.server_name, self.a.server_name, self.fake.key_id,
                                          self.fake.signing_key, "GET", path))
        auth = 'X-Matrix  Origin=%s , KEY="%s",sig="%s",  destination="%s", extra=ignored' % (
            p["origin"], p["key"], p["sig"], p["destination"])
        status, body = self.fake.send(self.a, "GET", path, auth=auth, ca=self.ca)
        self.assertEqual(status, 200, body)

    def test_body_is_signed(self):
        path = "/_matrix/key/v2/query"
        # a signed POST to a route that needs no signature still works (the header is ignored there)
        status, _ = self.fake.send(self.a, "POST", path, body={"server_keys": {}}, ca=self.ca)
        self.assertEqual(status, 200)

    def test_unicode_alias_directory_query(self):
        alice, token = self.user(self.b)
        r = self.b.request("POST", V3 + "/createRoom", token=token, body={})
        room = r.json["room_id"]
        alias = "#café-ü%d:%s" % (int(time.time() * 1000) % 100000, self.b.server_name)
        r = self.b.request("PUT", V3 + "/directory/room/" + q(alias), token=token, body={"room_id": room})
        self.assertEqual(r.status, 200, r)
        # fake server -> B
        status, body = self.fake.send(self.b, "GET", FED + "/query/directory?room_alias=" + q(alias), ca=self.ca)
        self.assertEqual(status, 200, body)
        self.assertEqual(body["room_id"], room)
        self.assertIn(self.b.server_name, body["servers"])
        # a client of A -> A -> B
        r = self.a.request("GET", V3 + "/directory/room/" + q(alias))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["room_id"], room)
        self.assertIn(self.b.server_name, r.json["servers"])
        missing = "#nope%d:%s" % (time.time(), self.b.server_name)
        r = self.a.request("GET", V3 + "/directory/room/" + q(missing))
        self.assertEqual(r.status, 404, r)
        status, body = self.fake.send(self.b, "GET", FED + "/query/directory?room_alias=" + q(missing), ca=self.ca)
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))

    def test_query_errors(self):
        status, body = self.fake.send(self.a, "GET", FED + "/query/profile", ca=self.ca)
        self.assertEqual((status, body["errcode"]), (400, "M_MISSING_PARAM"))
        status, body = self.fake.send(self.a, "GET", FED + "/query/profile?user_id=" + q("@x:elsewhere.test"),
                                      ca=self.ca)
        self.assertEqual(status, 400, body)
        status, body = self.fake.send(self.a, "GET",
                                      FED + "/query/profile?user_id=" + q("@ghost:" + self.a.server_name),
                                      ca=self.ca)
        self.assertEqual((status, body["errcode"]), (404, "M_NOT_FOUND"))
        status, body = self.fake.send(self.a, "GET", FED + "/no/such/endpoint", ca=self.ca)
        self.assertEqual((status, body["errcode"]), (404, "M_UNRECOGNIZED"))
        status, body = self.fake.send(self.a, "GET", FED + "/user/keys/query", ca=self.ca)
        self.assertEqual((status, body["errcode"]), (405, "M_UNRECOGNIZED"))

    # -- we call the fake remote server ---------------------------------------------------------

    def test_outbound_request_is_signed_for_the_destination(self):
        bob = "@bob:" + self.fake.server_name
        self.fake.profiles[bob] = {"displayname": "Fake Bob", "avatar_url": "mxc://fake/abc"}
        r = self.a.request("GET", V3 + "/profile/" + q(bob))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json["displayname"], "Fake Bob")
        seen = [x for x in self.fake.requests if x["path"].startswith(FED + "/query/profile")
                and x.get("origin") == self.a.server_name]
        self.assertTrue(seen)
        self.assertIsNone(seen[-1]["auth_error"], seen[-1])
        self.assertEqual(seen[-1]["host"], self.fake.server_name)  # step 1: Host is the server name
        self.assertEqual(seen[-1]["path"], FED + "/query/profile?user_id=" + q(bob))
        r = self.a.request("GET", V3 + "/profile/%s/avatar_url" % q(bob))
        self.assertEqual(r.json, {"avatar_url": "mxc://fake/abc"})
        # keep-alive: further requests reuse the pooled connection
        before = self.fake.connections
        for _ in range(3):
            self.assertEqual(self.a.request("GET", V3 + "/profile/" + q(bob)).status, 200)
        self.assertLessEqual(self.fake.connections - before, 1)

    def test_notary_fallback_through_a_third_server(self):
        # B learns the fake's key (B's notary endpoint fetches it directly) ...
        r = self.b.request("GET", "/_matrix/key/v2/query/" + q(self.fake.server_name))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(len(r.json["server_keys"]), 1)
        doc = r.json["server_keys"][0]
        verify_doc(doc, self.fake.server_name)
        verify_doc_by(self, doc, self.b)
        # ... then the fake stops serving its keys: C must go through its notary B
        self.fake.serve_keys = False
        try:
            alice, _ = self.user(self.c, displayname="Carol")
            status, body = self.fake.send(self.c, "GET", FED + "/query/profile?user_id=" + q(alice), ca=self.ca)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["displayname"], "Carol")
            # C now serves the fake's keys as a notary too: signed by the fake and by C
            r = self.c.request("GET", "/_matrix/key/v2/query/" + q(self.fake.server_name))
            self.assertEqual(len(r.json["server_keys"]), 1, r)
            doc = r.json["server_keys"][0]
            verify_doc(doc, self.fake.server_name)
            verify_doc_by(self, doc, self.c)
            # A has no notary: it cannot learn a key it never saw
            other_key = fedutil.signedjson.key.generate_signing_key("2")
            auth = xmatrix(self.fake.server_name, self.a.server_name, "ed25519:2", other_key, "GET",
                           FED + "/user/devices/" + q(alice))
            status, body = self.fake.send(self.a, "GET", FED + "/user/devices/" + q(alice), auth=auth, ca=self.ca)
            self.assertEqual(status, 401, body)
        finally:
            self.fake.serve_keys = True

    # -- TLS, private addresses, backoff ---------------------------------------------------------

    def test_untrusted_or_misnamed_certificates_refused(self):
        for label, signed, san in (("self-signed", False, "DNS:localhost,IP:127.0.0.1"),
                                   ("wrong name", True, "DNS:other.test")):
            cert, key = self.ca.leaf("bad-" + label.replace(" ", ""), san, signed=signed)
            bad = FakeRemote(cert, key)
            try:
                bad.profiles["@bob:" + bad.server_name] = {"displayname": "x"}
                r = self.a.request("GET", V3 + "/profile/" + q("@bob:" + bad.server_name))
                self.assertEqual(r.status, 502, "%s: %r" % (label, r))
                self.assertGreaterEqual(bad.connections, 1, label)
                self.assertEqual([x for x in bad.requests if "query/profile" in x["path"]], [], label)
            finally:
                bad.stop()

    def test_private_addresses_refused_without_allow_private(self):
        s = fed_server(self.ca, self.cert, self.key, "localhost", config={"outbound_allow_private": "false"})
        s.start()
        try:
            before = self.fake.connections
            r = s.request("GET", V3 + "/profile/" + q("@bob:" + self.fake.server_name))
            self.assertEqual(r.status, 502, r)
            self.assertIn("non-public", r.json["error"])
            r = s.request("GET", V3 + "/profile/" + q("@bob:" + self.a.server_name))  # localhost:port
            self.assertEqual(r.status, 502, r)
            self.assertEqual(self.fake.connections, before)  # nothing was even connected
            self.assertEqual(metric(s, "axon_federation_requests_total", '{result="refused"}'), 2)
        finally:
            s.stop()
            s.cleanup()

    def test_backoff_metrics_and_admin_reset(self):
        dead = "127.0.0.1:%d" % free_port()
        label = '{destination="%s"}' % dead
        r = self.a.request("GET", V3 + "/profile/" + q("@x:" + dead))
        self.assertEqual(r.status, 502, r)
        deadline = time.time() + 10  # the failure is recorded by the writer, just after the reply
        while metric(self.a, "axon_federation_destination_failures", label) is None and time.time() < deadline:
            time.sleep(0.05)
        t0 = time.time()
        r = self.a.request("GET", V3 + "/profile/" + q("@x:" + dead))
        self.assertEqual(r.status, 502, r)
        self.assertIn("next attempt", r.json["error"])
        self.assertLess(time.time() - t0, 2)
        self.assertEqual(metric(self.a, "axon_federation_destination_failures", label), 1)
        self.assertGreaterEqual(metric(self.a, "axon_federation_requests_total", '{result="backoff"}'), 1)
        out = admin(self.a, "federation", "destinations", "--json")
        self.assertEqual(out.returncode, 0, out.stderr)
        rows = {d["destination"]: d for d in json.loads(out.stdout)}
        self.assertEqual(rows[dead]["failures"], 1)
        self.assertIn("connect", rows[dead]["last_error"])
        out = admin(self.a, "federation", "destinations")
        self.assertIn(dead, out.stdout)
        self.assertIn("backing off", out.stdout)
        out = admin(self.a, "federation", "reset", dead)
        self.assertEqual(out.returncode, 0, out.stderr)
        rows = {d["destination"]: d for d in json.loads(admin(self.a, "federation", "destinations",
                                                               "--json").stdout)}
        self.assertEqual(rows[dead]["failures"], 0)
        self.assertIsNone(metric(self.a, "axon_federation_destination_failures", label))
        # retried at once after the reset (and fails again: nobody listens)
        r = self.a.request("GET", V3 + "/profile/" + q("@x:" + dead))
        self.assertNotIn("next attempt", r.json["error"])
        out = admin(self.a, "federation", "reset", "never.contacted.test")
        self.assertEqual(out.returncode, 1)

    def test_federation_routes_need_a_signature(self):
        r = self.a.request("GET", FED + "/user/devices/" + q("@x:" + self.a.server_name))
        self.assertEqual(r.status, 401, r)
        self.assertEqual(r.json["errcode"], "M_UNAUTHORIZED")
        r = self.a.request("GET", FED + "/version")
        self.assertEqual(r.status, 200, r)


def verify_doc_by(testcase, doc, notary):
    """Checks the notary's countersignature on 'doc' with the notary's own published key."""
    keys = verify_doc(fedutil.fetch_keys_plain(notary.port), notary.server_name)
    import signedjson.sign
    signed_by = doc["signatures"].get(notary.server_name, {})
    testcase.assertTrue(set(signed_by) & set(keys), doc)
    for kid in set(signed_by) & set(keys):
        signedjson.sign.verify_signed_json(doc, notary.server_name, keys[kid])


@unittest.skipUnless(HAVE_DEPS, "openssl, python3-signedjson and python3-nacl are needed")
class KeyRotation(unittest.TestCase):
    def test_rotate_key_keeps_the_old_one_as_old_verify_key(self):
        s = Server().start()
        try:
            before = s.request("GET", "/_matrix/key/v2/server").json
            (old_id, old_entry), = before["verify_keys"].items()
            out = admin(s, "rotate-key")
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("restart", out.stdout)
            s.stop()
            s.start()
            after = s.request("GET", "/_matrix/key/v2/server").json
            self.assertNotIn(old_id, after["verify_keys"])
            self.assertEqual(after["old_verify_keys"][old_id]["key"], old_entry["key"])
            self.assertLessEqual(after["old_verify_keys"][old_id]["expired_ts"], int(time.time() * 1000))
            verify_doc(after, s.server_name)
        finally:
            s.stop()
            s.cleanup()


@unittest.skipUnless(HAVE_DEPS, "openssl, python3-signedjson and python3-nacl are needed")
class FederationConfig(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()
        cls.cert, cls.key = cls.ca.leaf("node", "DNS:localhost,IP:127.0.0.1")

    @classmethod
    def tearDownClass(cls):
        cls.ca.cleanup()

    def test_verify_tls_off_warns_and_skips_verification(self):
        cert, key = self.ca.leaf("selfsigned", "DNS:localhost,IP:127.0.0.1", signed=False)
        bad = FakeRemote(cert, key)
        s = fed_server(self.ca, self.cert, self.key, config={"federation_verify_tls": "false"}).start()
        try:
            self.assertIn("federation_verify_tls = false", s.log_text())
            bad.key_sources[s.server_name] = s.port
            bob = "@bob:" + bad.server_name
            bad.profiles[bob] = {"displayname": "unverified"}
            r = s.request("GET", V3 + "/profile/" + q(bob))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json["displayname"], "unverified")
        finally:
            bad.stop()
            s.stop()
            s.cleanup()

    def test_federation_disabled(self):
        s = fed_server(self.ca, self.cert, self.key, config={"federation_enabled": "false"}).start()
        try:
            r = s.request("GET", FED + "/user/devices/" + q("@a:" + s.server_name))
            self.assertEqual((r.status, r.json["errcode"]), (404, "M_UNRECOGNIZED"))
            r = s.request("GET", V3 + "/profile/" + q("@a:elsewhere.test"))
            self.assertEqual(r.status, 404, r)
            self.assertIsNone(metric(s, "axon_federation_requests_total", '{result="ok"}'))
        finally:
            s.stop()
            s.cleanup()

    def test_unusable_ca_file_fails_start_up(self):
        junk = self.ca.dir + "/junk.pem"
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        s = fed_server(self.ca, self.cert, self.key, config={"federation_ca_file": junk})
        try:
            s.start(wait=False)
            self.assertEqual(s.proc.wait(timeout=30), 2)
            self.assertIn("federation_ca_file", s.log_text())
            self.assertFalse(__import__("os").path.exists(s.data_dir))  # nothing was written
        finally:
            s.proc = None
            s.log.close()
            s.cleanup()


if __name__ == "__main__":
    main()
