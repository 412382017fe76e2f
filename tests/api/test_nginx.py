#!/usr/bin/python3
"""Black-box tests of the documented reverse-proxy layout: the repository's
docker/nginx/axon.conf.template, rendered with test ports on 127.0.0.1 and a
certificate from a test CA (openssl CLI), run by nginx with its own prefix in
front of the real axon binary (see nginxtest.py).  Skipped with a TAP SKIP
when nginx, curl or openssl is not installed.

Checked here: the rendered config passes `nginx -t`; clients reach axon over
HTTPS with HTTP/2 and HTTP/1.1 (TLS 1.2 and 1.3); federation requests reach
it through the 8448-style server; port 80 serves ACME challenges and redirects
the rest; X-Forwarded-For is passed and a client cannot spoof it; a body just
under client_max_body_size reaches axon (its own 405 / 413 M_TOO_LARGE JSON)
while one just over gets nginx's HTML 413; /metrics and /health are not
reachable through the public servers; nginx keeps upstream connections alive;
with axon stopped nginx serves the maintenance page (502, Retry-After), and
traffic flows again once axon is back.

Also: a /sync long-poll held for 30 s completes with 200 (no 504) through
nginx over HTTP/2 and HTTP/1.1 while a message sent meanwhile wakes a third
one early; login rate limits key on the X-Forwarded-For client, not nginx.

Media: an upload of exactly max_upload_size (= client_max_body_size) is
stored and one byte more gets nginx's 413; a 5 MiB download streams through
the proxy intact with its Content-Type and Content-Disposition.
"""

import hashlib
import json
import os
import re
import threading
import time
import unittest

from axontest import Server, main
from nginxtest import HOST, Nginx, missing_tools, template_variables, TEMPLATE, TEMPLATE_VARIABLES, SOURCE_ROOT

SKIP = missing_tools()
MAX_BODY = 64 * 1024  # nginx client_max_body_size 64k = axon max_upload_size 64K


def access_lines(server):
    """axon's JSON access-log lines (log_format = json)."""
    time.sleep(0.4)  # the access log is flushed every 200 ms
    lines = []
    for line in server.log_text().splitlines():
        try:
            j = json.loads(line)
        except ValueError:
            continue
        if j.get("msg") == "access":
            lines.append(j)
    return lines


class Template(unittest.TestCase):
    def test_variables_are_the_documented_ones(self):
        with open(TEMPLATE) as f:
            text = f.read()
        self.assertEqual(template_variables(text), TEMPLATE_VARIABLES)
        with open(os.path.join(SOURCE_ROOT, "docs", "nginx.md")) as f:
            doc = f.read()
        for name in sorted(TEMPLATE_VARIABLES):
            self.assertIn(name, text.split("upstream", 1)[0], "%s is not described in the template's header" % name)
            self.assertIn(name, doc, "%s is not described in docs/nginx.md" % name)

    def test_metrics_has_no_public_location(self):
        with open(TEMPLATE) as f:
            text = f.read()
        locations = re.findall(r"^\s*location\s+(.*?)\s*\{", text, re.M)
        self.assertNotIn("/metrics", " ".join(locations))
        self.assertEqual(len(re.findall(r"^\s*proxy_pass ", text, re.M)), 3, "only /_matrix/ and /.well-known/matrix/")


@unittest.skipIf(SKIP, SKIP)
class ThroughNginx(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # axon's API limit (16K) is below its upload limit (64K) = nginx's client_max_body_size
        cls.axon = Server(config={"max_request_size": "16K", "max_upload_size": "64K", "log_format": "json",
                                  "trusted_proxies": "127.0.0.1",
                                  "ratelimit.login_per_second": "0.001", "ratelimit.login_burst": "2",
                                  "well_known_server": HOST + ":443"}).start()
        cls.nginx = Nginx(cls.axon.port, max_body_size="64k")
        try:
            ok, out = cls.nginx.check_config()
            if not ok:
                raise AssertionError("nginx -t rejected the rendered template:\n" + out)
            cls.nginx.start()
        except Exception:
            cls.nginx.cleanup()
            cls.axon.stop(check=False)
            cls.axon.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.nginx.cleanup()
        finally:
            try:
                cls.axon.stop()
            finally:
                cls.axon.cleanup()

    def https(self, path, *args, **kw):
        return self.nginx.curl(self.nginx.url(self.nginx.https_port, path), *args, **kw)

    def federation(self, path, *args, **kw):
        return self.nginx.curl(self.nginx.url(self.nginx.fed_port, path), *args, **kw)

    def body_file(self, size):
        path = os.path.join(self.nginx.prefix, "body-%d.json" % size)
        with open(path, "wb") as f:
            f.write(b"{" + b" " * (size - 2) + b"}")
        return path

    def test_config_passes_nginx_t(self):
        ok, out = self.nginx.check_config()
        self.assertTrue(ok, out)

    def test_client_api_over_http2(self):
        status, version, headers, body = self.https("/_matrix/client/versions", "--http2")
        self.assertEqual((status, version), (200, "2"))
        self.assertIn("application/json", headers.get("content-type", ""))
        self.assertIn("versions", json.loads(body))
        self.assertIn("max-age=", headers.get("strict-transport-security", ""))

    def test_client_api_over_http1(self):
        status, version, _, body = self.https("/_matrix/client/versions", "--http1.1")
        self.assertEqual((status, version), (200, "1.1"))
        self.assertIn("versions", json.loads(body))

    def test_tls_versions(self):
        for args in (("--tlsv1.3",), ("--tlsv1.2", "--tls-max", "1.2")):
            status, _, _, _ = self.https("/_matrix/client/versions", *args)
            self.assertEqual(status, 200, args)

    def test_well_known_matrix_through_https(self):
        status, _, _, body = self.https("/.well-known/matrix/server")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"m.server": HOST + ":443"})

    def test_federation_server(self):
        status, version, _, body = self.federation("/_matrix/key/v2/server", "--http2")
        self.assertEqual((status, version), (200, "2"))
        key = json.loads(body)
        self.assertEqual(key["server_name"], self.axon.server_name)
        self.assertIn(self.axon.server_name, key["signatures"])
        status, _, _, body = self.federation("/_matrix/federation/v1/version")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["server"]["name"], "axon")

    def test_federation_server_serves_only_matrix(self):
        status, _, _, body = self.federation("/.well-known/matrix/server")
        self.assertEqual(status, 404)
        self.assertNotIn(b"m.server", body)

    def test_port_80_redirects_and_serves_acme(self):
        url = self.nginx.url(self.nginx.http_port, "/_matrix/client/versions?x=1", scheme="http")
        status, _, headers, _ = self.nginx.curl(url)
        self.assertEqual(status, 301)
        self.assertTrue(headers.get("location", "").startswith("https://%s" % HOST), headers)
        self.assertTrue(headers["location"].endswith("/_matrix/client/versions?x=1"), headers)
        token = "Wv8aYy-test-token"
        with open(os.path.join(self.nginx.acme_root, ".well-known", "acme-challenge", token), "w") as f:
            f.write(token + ".thumbprint")
        url = self.nginx.url(self.nginx.http_port, "/.well-known/acme-challenge/" + token, scheme="http")
        status, _, _, body = self.nginx.curl(url)
        self.assertEqual((status, body), (200, (token + ".thumbprint").encode()))

    def test_x_forwarded_for_passed_and_not_spoofable(self):
        # the client connects from 127.0.0.3 and lies about its address; nginx
        # appends the real one and axon (trusting only 127.0.0.1) takes it
        status, _, _, _ = self.https("/_matrix/federation/v1/version", "-H", "X-Forwarded-For: 198.51.100.7",
                                     interface="127.0.0.3")
        self.assertEqual(status, 200)
        status, _, _, _ = self.https("/_matrix/key/v2/server", interface="127.0.0.4")
        self.assertEqual(status, 200)
        lines = access_lines(self.axon)
        fed = [l["client"] for l in lines if l["route"] == "/_matrix/federation/v1/version"]
        key = [l["client"] for l in lines if l["route"] == "/_matrix/key/v2/server"]
        self.assertIn("127.0.0.3", fed, lines)
        self.assertNotIn("198.51.100.7", fed)
        self.assertIn("127.0.0.4", key, lines)

    def test_body_limits_nginx_versus_axon(self):
        for proto in ("--http1.1", "--http2"):
            # a small body reaches axon: 405 for POST on a GET endpoint, Matrix JSON
            status, _, headers, body = self.https("/_matrix/client/versions", proto,
                                                  data_file=self.body_file(1024))
            self.assertEqual(status, 405, body)
            self.assertEqual(json.loads(body)["errcode"], "M_UNRECOGNIZED")
            # just under client_max_body_size: still reaches axon, which applies its own
            # (smaller) API limit and answers 413 M_TOO_LARGE as JSON
            status, _, headers, body = self.https("/_matrix/client/versions", proto,
                                                  data_file=self.body_file(MAX_BODY - 1))
            self.assertEqual(status, 413, body[:200])
            self.assertIn("application/json", headers.get("content-type", ""))
            self.assertEqual(json.loads(body)["errcode"], "M_TOO_LARGE")
            # just over: nginx answers 413 itself, as HTML, and axon never sees it
            status, _, headers, body = self.https("/_matrix/client/versions", proto,
                                                  data_file=self.body_file(MAX_BODY + 1))
            self.assertEqual(status, 413, body[:200])
            self.assertIn("text/html", headers.get("content-type", ""))
            self.assertIn(b"413 Request Entity Too Large", body)

    def test_metrics_and_health_are_not_public(self):
        paths = ["/metrics", "/health", "/_matrix/../metrics", "/_matrix/%2e%2e/metrics",
                 "/.well-known/matrix/../../metrics", "/_matrix/..%2Fmetrics", "/_matrix/client/../../metrics",
                 "//metrics", "/metrics?x=/_matrix/"]
        for port in (self.nginx.https_port, self.nginx.fed_port):
            for path in paths:
                status, _, _, body = self.nginx.curl(self.nginx.url(port, path), "--path-as-is")
                self.assertEqual(status, 404, (port, path, body[:200]))
                self.assertNotIn(b"axon_http_requests_total", body, (port, path))
                self.assertNotIn(b"process_resident_memory_bytes", body, (port, path))
        # while axon itself serves it on its internal listener
        r = self.axon.request("GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertIn(b"axon_http_requests_total", r.raw)

    def test_other_paths_are_not_proxied(self):
        for path in ("/", "/index.html", "/_synapse/admin/v1/register", "/maintenance.html"):
            status, _, _, body = self.https(path)
            self.assertEqual(status, 404, (path, body[:200]))
            self.assertNotIn(b"M_UNRECOGNIZED", body, path)  # nginx's 404, axon never asked

    def test_sync_long_poll_through_nginx(self):
        u = self.axon.register(password="pw-long-poll")
        tok = u["access_token"]
        room = self.axon.request("POST", "/_matrix/client/v3/createRoom", {}, token=tok).json["room_id"]
        since = self.axon.request("GET", "/_matrix/client/v3/sync?timeout=0&set_presence=offline", token=tok).json["next_batch"]
        auth = ("-H", "Authorization: Bearer " + tok)
        results = {}

        def poll(name, timeout_ms, *args):
            t0 = time.monotonic()
            path = "/_matrix/client/v3/sync?timeout=%d&since=%s&set_presence=offline" % (timeout_ms, since)
            results[name] = self.https(path, *args, *auth, max_time=60) + (time.monotonic() - t0,)

        threads = [threading.Thread(target=poll, args=("h2", 30000, "--http2")),
                   threading.Thread(target=poll, args=("h1", 30000, "--http1.1")),
                   threading.Thread(target=poll, args=("woken", 60000, "--http2"))]
        for t in threads:
            t.start()
        time.sleep(2)
        r = self.axon.request("PUT", "/_matrix/client/v3/rooms/%s/send/m.room.message/lp1" % room,
                              {"msgtype": "m.text", "body": "wake up"}, token=tok)
        self.assertEqual(r.status, 200)
        for t in threads:
            t.join()
        status, version, _, body, took = results["woken"]
        self.assertEqual((status, version), (200, "2"), body[:300])
        self.assertLess(took, 20)
        events = json.loads(body)["rooms"]["join"][room]["timeline"]["events"]
        self.assertEqual([e["content"].get("body") for e in events], ["wake up"])
        # the two others were started before the send too, so they wake as well: what matters
        # for nginx is that none was cut off; hold two fresh ones the whole 30 s
        since = json.loads(body)["next_batch"]
        threads = [threading.Thread(target=poll, args=("h2", 30000, "--http2")),
                   threading.Thread(target=poll, args=("h1", 30000, "--http1.1"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, version in (("h2", "2"), ("h1", "1.1")):
            status, got_version, _, body, took = results[name]
            self.assertEqual((status, got_version), (200, version), (name, body[:300]))
            self.assertGreaterEqual(took, 29, name)
            self.assertEqual(json.loads(body)["next_batch"], since, name)

    def test_ratelimit_uses_forwarded_client(self):
        self.axon.register("ratelimited", password="pw-right")
        body = os.path.join(self.nginx.prefix, "bad-login.json")
        with open(body, "w") as f:
            json.dump({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "ratelimited"},
                       "password": "wrong"}, f)
        statuses = [self.https("/_matrix/client/v3/login", data_file=body, interface="127.0.0.5")[0]
                    for _ in range(3)]
        self.assertEqual(statuses, [403, 403, 429])
        # another client behind the same nginx is not limited by the first one's attempts
        status, _, _, resp = self.https("/_matrix/client/v3/login", data_file=body, interface="127.0.0.6")
        self.assertEqual(status, 403, resp)
        self.assertEqual(json.loads(resp)["errcode"], "M_FORBIDDEN")

    def test_media_upload_at_limit_through_nginx(self):
        tok = self.axon.register(password="pw-upload")["access_token"]
        auth = ("-H", "Authorization: Bearer " + tok)
        for proto in ("--http2", "--http1.1"):
            path = os.path.join(self.nginx.prefix, "upload-at-limit")
            with open(path, "wb") as f:
                f.write(os.urandom(MAX_BODY))
            status, _, _, body = self.https("/_matrix/media/v3/upload", proto, *auth, data_file=path)
            self.assertEqual(status, 200, body[:300])
            mxc = json.loads(body)["content_uri"]
            status, _, _, got = self.https("/_matrix/client/v1/media/download/" + mxc[6:], proto, *auth)
            self.assertEqual(status, 200)
            with open(path, "rb") as f:
                self.assertEqual(got, f.read())
            with open(path, "ab") as f:
                f.write(b"x")
            status, _, headers, body = self.https("/_matrix/media/v3/upload", proto, *auth, data_file=path)
            self.assertEqual(status, 413, body[:300])
            self.assertIn("text/html", headers.get("content-type", ""))  # nginx's, axon never saw it

    def test_upstream_keepalive(self):
        for _ in range(10):
            self.assertEqual(self.https("/_matrix/client/versions")[0], 200)
        # ten client connections, but nginx keeps its upstream connection(s) open and idle:
        # axon sees them besides this scrape's own connection
        r = self.axon.request("GET", "/metrics")
        conns = int(re.search(rb"^axon_http_connections (\d+)$", r.raw, re.M).group(1))
        self.assertGreaterEqual(conns, 2, r.raw[:3000])
        self.assertLessEqual(conns, 4)


@unittest.skipIf(SKIP, SKIP)
class LargeDownload(unittest.TestCase):
    def test_media_download_through_nginx(self):
        axon = Server(config={"max_upload_size": "8M"}).start()
        nginx = Nginx(axon.port, max_body_size="8m")
        try:
            nginx.start()
            tok = axon.register(password="pw-download")["access_token"]
            blob = os.urandom(5 * 1024 * 1024)
            r = axon.request("POST", "/_matrix/media/v3/upload?filename=" + "r%C3%A9sum%C3%A9.pdf", raw=blob,
                             token=tok, headers={"Content-Type": "application/pdf"})
            self.assertEqual(r.status, 200, r.json)
            url = nginx.url(nginx.https_port, "/_matrix/client/v1/media/download/" + r.json["content_uri"][6:])
            for proto in ("--http2", "--http1.1"):
                status, _, headers, body = nginx.curl(url, proto, "-H", "Authorization: Bearer " + tok)
                self.assertEqual(status, 200, proto)
                self.assertEqual(hashlib.sha256(body).hexdigest(), hashlib.sha256(blob).hexdigest(), proto)
                self.assertEqual(headers.get("content-type"), "application/pdf")
                self.assertIn("filename*=UTF-8''r%C3%A9sum%C3%A9.pdf", headers.get("content-disposition", ""))
        finally:
            nginx.cleanup()
            try:
                axon.stop()
            finally:
                axon.cleanup()


@unittest.skipIf(SKIP, SKIP)
class Maintenance(unittest.TestCase):
    def test_maintenance_page_while_axon_is_down_then_recovery(self):
        axon = Server(config={"max_upload_size": "64K"}).start()
        nginx = Nginx(axon.port)
        try:
            nginx.start()
            https = nginx.url(nginx.https_port, "/_matrix/client/versions")
            self.assertEqual(nginx.curl(https, "--http2")[0], 200)
            axon.stop()  # clean exit, no sanitizer report
            for url in (https, nginx.url(nginx.fed_port, "/_matrix/federation/v1/version")):
                for proto in ("--http2", "--http1.1"):
                    status, _, headers, body = nginx.curl(url, proto)
                    self.assertIn(status, (502, 503), (url, proto, body[:300]))
                    self.assertIn("text/html", headers.get("content-type", ""))
                    self.assertIn(b"axon-maintenance-page", body)
                    self.assertIn(b"https://status.example.org/", body)
                    self.assertEqual(headers.get("retry-after"), "30")
            # the page itself is not addressable
            self.assertEqual(nginx.curl(nginx.url(nginx.https_port, "/maintenance.html"))[0], 404)
            # axon comes back on the same port: nginx reconnects by itself
            axon.start()
            status, _, _, body = nginx.curl(https, "--http2")
            self.assertEqual(status, 200, body[:300])
            self.assertIn("versions", json.loads(body))
        finally:
            nginx.cleanup()
            try:
                axon.stop()
            finally:
                axon.cleanup()


if __name__ == "__main__":
    main()
