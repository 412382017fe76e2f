#!/usr/bin/python3
"""Unit tests of bench/lib/axbench: the wrk, ab and h2load output parsers (on
outputs captured from the Debian 12 tools), the nginx string quoting, the
statistics behind the ratios, the axon config with sections, the wrk Lua
scripts and the long-poll load generator's response parser.  TAP via unittest; standard library only."""

import os
import sys
import tempfile
import unittest

ROOT = os.environ.get("AX_SOURCE_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
sys.path.insert(0, os.path.join(ROOT, "bench", "lib"))
sys.dont_write_bytecode = True

from axbench import report, tools, util, wrkscript  # noqa: E402
from axbench.servers import AxonServer, nginx_quote  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "bench", "loadgen"))
import longpoll  # noqa: E402

WRK = """Running 2s test @ http://127.0.0.1:18999/_matrix/client/versions
  2 threads and 100 connections
  151157 requests in 2.09s, 75.10MB read
Requests/sec:  72215.29
AXB requests=151157 duration_us=2093144 bytes=78752797
AXB err_connect=0 err_read=1 err_write=0 err_status=3 err_timeout=2
AXB lat_p50_us=831 lat_p90_us=6185 lat_p99_us=48861 lat_max_us=83584 lat_mean_us=2987.3
"""

AB = """Server Software:        axon
Document Length:        196 bytes
Concurrency Level:      100
Time taken for tests:   0.045 seconds
Complete requests:      2000
Failed requests:        4
Non-2xx responses:      7
Keep-Alive requests:    2000
Total transferred:      1042000 bytes
Requests per second:    44390.19 [#/sec] (mean)
Time per request:       2.253 [ms] (mean)
Time per request:       0.023 [ms] (mean, across all concurrent requests)

Percentage of the requests served within a certain time (ms)
  50%      1
  66%      2
  90%      3
  95%      8
  99%     15
 100%     16 (longest request)
"""

AB_FATAL = """Benchmarking 127.0.0.1 (be patient)...apr_socket_recv: Connection reset by peer (104)
Total of 1234 requests completed
"""

H2LOAD_FAILED = """finished in 2.02s, 49530.16 req/s, 4.44MB/s
requests: 200000 total, 100900 started, 100278 done, 100000 succeeded, 100000 failed, 100000 errored, 0 timeout
status codes: 100000 2xx, 0 3xx, 0 4xx, 0 5xx
traffic: 8.88MB (9313212) total, 1.18MB (1233012) headers (space savings 90.3%), 4.58MB (4800000) data
"""

H2LOAD_OK = """finished in 23.59ms, 84778.09 req/s, 19.08MB/s
requests: 4 total, 4 started, 4 done, 4 succeeded, 0 failed, 0 errored, 0 timeout
status codes: 3 2xx, 0 3xx, 1 4xx, 0 5xx
traffic: 461.04KB (2000) total, 40.14KB (41100) headers (space savings 92.22%), 382.81KB (392000) data
"""


class Parsers(unittest.TestCase):
    def test_wrk(self):
        r = tools.parse_wrk(0, WRK)
        self.assertIsNone(r["error"])
        self.assertEqual(r["requests"], 151157)
        self.assertAlmostEqual(r["rps"], 151157 / 2.093144)
        self.assertEqual((r["p50_ms"], r["p99_ms"], r["max_ms"]), (0.831, 48.861, 83.584))
        self.assertEqual(r["errors"], 3)
        self.assertEqual(r["non2xx"], 3)

    def test_wrk_failure(self):
        r = tools.parse_wrk(1, "unable to connect to 127.0.0.1:1 Connection refused\n")
        self.assertIn("Connection refused", r["error"])
        self.assertIsNone(r["rps"])

    def test_ab(self):
        r = tools.parse_ab(0, AB)
        self.assertIsNone(r["error"])
        self.assertEqual((r["requests"], r["rps"], r["errors"], r["non2xx"]), (2000, 44390.19, 4, 7))
        self.assertEqual((r["p50_ms"], r["p90_ms"], r["p99_ms"], r["max_ms"]), (1.0, 3.0, 15.0, 16.0))
        self.assertEqual(r["mean_ms"], 2.253)
        self.assertEqual(r["bytes_per_req"], 521)

    def test_ab_fatal(self):
        r = tools.parse_ab(104, AB_FATAL)
        self.assertIn("Total of 1234", r["error"])
        self.assertEqual(r["requests"], 1234)

    def test_h2load_failed_streams_are_errors(self):
        with tempfile.NamedTemporaryFile("w", suffix=".log") as f:
            f.write("1\t200\t1000\n2\t200\t3000\n3\t-1\t9000\n")
            f.flush()
            r = tools.parse_h2load(0, H2LOAD_FAILED, f.name)
        self.assertEqual(r["requests"], 100000)
        self.assertEqual(r["errors"], 100000)           # total - succeeded, not double-counted
        self.assertAlmostEqual(r["rps"], 100000 / 2.02)  # successes only
        self.assertEqual(r["max_ms"], 3.0)               # failed stream (-1) excluded

    def test_h2load_units_and_status(self):
        with tempfile.NamedTemporaryFile("w", suffix=".log") as f:
            f.write("".join("%d\t200\t%d\n" % (i, i * 1000) for i in range(1, 5)))
            f.flush()
            r = tools.parse_h2load(0, H2LOAD_OK, f.name)
        self.assertAlmostEqual(r["duration_s"], 0.02359)
        self.assertEqual(r["non2xx"], 1)
        self.assertEqual((r["p50_ms"], r["p99_ms"]), (2.0, 4.0))
        self.assertEqual(r["bytes_per_req"], 500)


class Helpers(unittest.TestCase):
    def test_nginx_quote(self):
        self.assertEqual(nginx_quote('{"a":"b"}'), "'{\"a\":\"b\"}'")
        self.assertEqual(nginx_quote("it's \\n $x"), "'it\\'s \\\\n ${axb_dollar}x'")

    def test_percentile_and_median(self):
        v = list(range(1, 101))
        self.assertEqual(util.percentile(v, 50), 50)
        self.assertEqual(util.percentile(v, 99), 99)
        self.assertEqual(util.percentile(v, 100), 100)
        self.assertIsNone(util.percentile([], 50))
        self.assertEqual(util.median([3, 1, 2]), 2)
        self.assertEqual(util.median([4, 1, 2, 3]), 2.5)

    def test_paired_ratio(self):
        results = []
        for rep, (a, b) in enumerate([(100, 50), (60, 120), (90, 100)]):
            results.append({"kind": "wrk", "connections": 100, "server": "axon", "rep": rep, "rps": a})
            results.append({"kind": "wrk", "connections": 100, "server": "nginx", "rep": rep, "rps": b})
        results.append({"kind": "wrk", "connections": 100, "server": "nginx", "rep": 3, "rps": 1,
                        "error": "failed"})
        g = report.aggregate(results)[("wrk", 100)]
        self.assertEqual(g["nginx"]["failed"], 1)
        self.assertEqual(g["nginx"]["rps"], 100)          # the failed run is left out
        self.assertAlmostEqual(report.ratio(g["axon"], g["nginx"]), 0.9)
        self.assertEqual(report.ratio_range(g["axon"], g["nginx"]), (0.5, 2.0))
        self.assertEqual(report.fmt_ratio(0.9, (0.5, 2.0)), "0.90 (0.50–2.00)")

    def test_fmt_rps_small_values(self):
        self.assertEqual(report.fmt_rps(7.25), "7.2")
        self.assertEqual(report.fmt_rps(350.4), "350")
        self.assertEqual(report.fmt_rps(72215.3), "72.2k")


class Scenarios(unittest.TestCase):
    """The pieces the Matrix scenarios are built from."""

    def test_axon_config_sections(self):
        with tempfile.TemporaryDirectory() as d:
            s = AxonServer("/bin/true", d, {"sync": "false", "ratelimit.login_burst": "1000",
                                            "ratelimit.login_per_second": "500"})
            s._write_config(18555)
        top, _, sec = s.config_text.partition("[ratelimit]")
        self.assertIn("sync = false\n", top)
        self.assertNotIn("login_burst", top)
        self.assertIn("login_burst = 1000\n", sec)
        self.assertIn("login_per_second = 500\n", sec)

    def test_lua_string(self):
        self.assertEqual(wrkscript.lua_str('{"a":"b\\c"}\n'), '"{\\"a\\":\\"b\\\\c\\"}\\n"')

    def test_wrk_script(self):
        class Ctx:
            workdir = None
        with tempfile.TemporaryDirectory() as d:
            Ctx.workdir = d
            path = wrkscript.write(Ctx, "t", [{"method": "PUT", "path": "/send/{n}", "body": '{"x":"{n}"}',
                                               "token": "tok"}])
            text = open(path).read()
        self.assertIn('dofile("%s")' % tools.WRK_SUMMARY_LUA, text)
        self.assertIn('path = "/send/{n}"', text)
        self.assertIn('token = "tok"', text)
        self.assertTrue(text.rstrip().endswith('requests.lua")'))

    def test_longpoll_response_parser(self):
        cl = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
        self.assertIsNone(longpoll.parse_response(cl[:-1]))
        self.assertEqual(longpoll.parse_response(cl + b"HTTP/1.1")[0:3], (200, {"content-length": "5"}, b"hello"))
        self.assertEqual(longpoll.parse_response(cl)[3], len(cl))
        ch = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"
        self.assertIsNone(longpoll.parse_response(ch[:-2]))
        status, _, body, used = longpoll.parse_response(ch)
        self.assertEqual((status, body, used), (200, b"hello", len(ch)))


def main():
    suite = unittest.defaultTestLoader.loadTestsFromModule(sys.modules[__name__])
    tests = []

    def flatten(s):
        for t in s:
            if isinstance(t, unittest.TestSuite):
                flatten(t)
            else:
                tests.append(t)
    flatten(suite)
    print("1..%d" % len(tests))
    failed = 0
    for i, t in enumerate(tests, 1):
        r = unittest.TestResult()
        t.run(r)
        name = t.id().split(".", 1)[1]
        if r.wasSuccessful():
            print("ok %d - %s" % (i, name))
        else:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for _, tb in r.failures + r.errors:
                print("\n".join("# " + line for line in tb.splitlines()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
