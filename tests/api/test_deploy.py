#!/usr/bin/python3
"""Tests of the deployment files, outside Docker (there is no Docker engine
in CI): the container entrypoint run against the test's binary, the
Dockerfile's and compose files' contracts (AXON_* names are real config
keys, the nginx variables are the template's), the install-deps profiles
against what the binary and the build really need, the Prometheus rules and
Grafana dashboard against the metrics axon really exports, and the systemd
unit.  Optional tools (promtool, docker-compose, systemd-analyze) add checks
where installed and are skipped with a reason otherwise."""

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import yaml

from axontest import AXON_BIN, SANITIZER_MARKERS, SOURCE_ROOT, Server, free_port, main
from nginxtest import TEMPLATE_VARIABLES

DOCKER = os.path.join(SOURCE_ROOT, "docker")
ENTRYPOINT = os.path.join(DOCKER, "entrypoint.sh")
MONITORING = os.path.join(DOCKER, "monitoring")
PROMTOOL = shutil.which("promtool")
DOCKER_COMPOSE = shutil.which("docker-compose")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

# metrics the rules and dashboard may use without axon exporting them (yet)
FUTURE_METRICS = set()


def read(path):
    with open(path) as f:
        return f.read()


def load_yaml(path):
    with open(path) as f:
        return yaml.safe_load(f)


def config_env_names():
    """AXON_* names axon accepts: from `axon generate-config`, plus AXON_CONFIG."""
    out = subprocess.run([AXON_BIN, "generate-config"], capture_output=True, text=True, check=True, timeout=30)
    names = set(re.findall(r"^# Environment: (AXON_[A-Z0-9_]+)$", out.stdout, re.M))
    assert "AXON_SERVER_NAME" in names, out.stdout[:500]
    return names | {"AXON_CONFIG"}


_live_metrics = None


def live_metric_names():
    """Metric family names (and their _bucket/_sum/_count series) a running axon exports."""
    global _live_metrics
    if _live_metrics is None:
        s = Server().start()
        try:
            s.request("GET", "/_matrix/client/versions")
            text = s.request("GET", "/metrics").raw.decode()
        finally:
            s.stop()
            s.cleanup()
        names = set()
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
            names.add(name)
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
        _live_metrics = names
    return _live_metrics


def metric_names_in(expr):
    """Metric names in a PromQL expression (identifiers followed by { or [ or standing alone)."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    words = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b", expr))
    return {w for w in words if w.startswith(("axon_", "process_", "node_")) or w == "up"}


def profile_packages(profile):
    """The packages scripts/install-deps.sh installs for one profile."""
    text = read(os.path.join(SOURCE_ROOT, "scripts", "install-deps.sh"))
    m = re.search(r"^\s*%s\)\s*\n\s*pkgs=\"\$pkgs([^\"]*)\"" % profile, text, re.M)
    assert m, "profile %s not found in install-deps.sh" % profile
    return set(m.group(1).split())


def dpkg_closure(packages):
    """'packages' and everything they depend on (Depends, Pre-Depends), over installed packages."""
    seen, todo = set(), list(packages)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        out = subprocess.run(["dpkg-query", "-W", "-f=${Depends}, ${Pre-Depends}\n", p],
                             capture_output=True, text=True)
        if out.returncode != 0:
            continue
        for alt in out.stdout.replace("|", ",").split(","):
            name = alt.strip().split(" ")[0].split(":")[0]
            if name:
                todo.append(name)
    return seen


def package_of(path):
    out = subprocess.run(["dpkg-query", "-S", os.path.realpath(path)], capture_output=True, text=True)
    if out.returncode != 0:
        out = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return out.stdout.split(":")[0].strip()


# ---- the entrypoint, outside Docker ---------------------------------------------------------

class Entrypoint(unittest.TestCase):
    """docker/entrypoint.sh with `axon` on PATH pointing at the test's binary."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="axon-entrypoint-")
        bindir = os.path.join(self.tmp, "bin")
        os.makedirs(bindir)
        os.symlink(AXON_BIN, os.path.join(bindir, "axon"))
        self.port = free_port()
        self.data = os.path.join(self.tmp, "data")
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AXON_")}
        self.env.update({
            "PATH": bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
            "AXON_SERVER_NAME": "example.test",
            "AXON_LISTEN": "127.0.0.1:%d" % self.port,
            "AXON_DATA_DIR": self.data,
            "AXON_SYNC": "false",
            "AXON_THREADS": "2",
            "AXON_TRUSTED_KEY_SERVERS": "",
        })
        self.env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        self.proc = None
        self.log_path = os.path.join(self.tmp, "out.log")

    def tearDown(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def entrypoint_copy(self, default_config):
        """The real script with only its default config path moved (it is /etc/axon/axon.conf)."""
        text = read(ENTRYPOINT)
        self.assertIn("default_config=/etc/axon/axon.conf\n", text)
        path = os.path.join(self.tmp, "entrypoint.sh")
        with open(path, "w") as f:
            f.write(text.replace("default_config=/etc/axon/axon.conf\n", "default_config=%s\n" % default_config))
        os.chmod(path, 0o755)
        return path

    def start(self, script=ENTRYPOINT, args=()):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["/bin/sh", script] + list(args), stdout=self.log, stderr=subprocess.STDOUT,
                                     env=self.env, cwd=self.tmp)

    def log_text(self):
        return read(self.log_path) if os.path.exists(self.log_path) else ""

    def wait_health(self):
        import http.client
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                self.fail("axon exited with %d:\n%s" % (self.proc.returncode, self.log_text()))
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                c.request("GET", "/health")
                r = c.getresponse()
                body = r.read()
                c.close()
                if r.status == 200:
                    return body
            except OSError:
                pass
            time.sleep(0.05)
        self.fail("no answer on /health:\n" + self.log_text())

    def stop_clean(self):
        self.proc.send_signal(signal.SIGTERM)  # reaches axon itself: the entrypoint execs it
        rc = self.proc.wait(timeout=60)
        self.log.close()
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            self.assertNotIn(marker, text)
        self.assertEqual(rc, 0, text)
        self.assertIn("shutting down gracefully", text)
        return text

    def test_serves_from_environment_alone(self):
        self.start(self.entrypoint_copy(os.path.join(self.tmp, "absent.conf")))
        self.assertEqual(self.wait_health().strip(), b"ok")
        self.assertTrue(os.path.exists(os.path.join(self.data, "signing.key")))
        # no config file: the entrypoint closes registration explicitly (the embedded
        # default would open it while listening on loopback only)
        with open("/proc/%d/environ" % self.proc.pid, "rb") as f:
            environ = f.read().split(b"\0")
        self.assertIn(b"AXON_ALLOW_REGISTRATION=false", environ)
        with open("/proc/%d/cmdline" % self.proc.pid, "rb") as f:
            self.assertEqual(f.read().split(b"\0")[1:3], [b"serve", b""])
        text = self.stop_clean()
        self.assertNotIn("registration is open", text)
        self.assertIn("serving example.test", text)

    def test_refuses_to_start_without_server_name(self):
        del self.env["AXON_SERVER_NAME"]
        out = subprocess.run(["/bin/sh", self.entrypoint_copy(os.path.join(self.tmp, "absent.conf"))],
                             capture_output=True, text=True, env=self.env, timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertIn("AXON_SERVER_NAME is not set", out.stderr)
        self.assertIn("@alice:example.org", out.stderr)
        self.assertFalse(os.path.exists(self.data), "nothing may be written")

    def test_uses_the_default_config_file_when_present(self):
        conf = os.path.join(self.tmp, "axon.conf")
        with open(conf, "w") as f:
            f.write("server_name = example.test\nlisten = 127.0.0.1:%d\nsync = false\nthreads = 2\n"
                    "trusted_key_servers =\n" % self.port)
        del self.env["AXON_SERVER_NAME"]  # the file names the server
        self.start(self.entrypoint_copy(conf))
        self.wait_health()
        with open("/proc/%d/cmdline" % self.proc.pid, "rb") as f:
            argv = f.read().split(b"\0")
        self.assertEqual(argv[1:4], [b"serve", b"-c", conf.encode()])
        with open("/proc/%d/environ" % self.proc.pid, "rb") as f:
            self.assertNotIn(b"AXON_ALLOW_REGISTRATION=false", f.read().split(b"\0"))
        self.stop_clean()

    def test_config_file_without_server_name_is_refused(self):
        conf = os.path.join(self.tmp, "axon.conf")
        with open(conf, "w") as f:
            f.write("# server_name = example.org\nlisten = 127.0.0.1:%d\n" % self.port)
        del self.env["AXON_SERVER_NAME"]
        out = subprocess.run(["/bin/sh", self.entrypoint_copy(conf)], capture_output=True, text=True,
                             env=self.env, timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertIn("neither AXON_SERVER_NAME nor server_name in %s" % conf, out.stderr)

    def test_other_commands_pass_through(self):
        script = self.entrypoint_copy(os.path.join(self.tmp, "absent.conf"))
        del self.env["AXON_SERVER_NAME"]
        out = subprocess.run(["/bin/sh", script, "generate-config"], capture_output=True, text=True,
                             env=self.env, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("# Environment: AXON_SERVER_NAME", out.stdout)
        out = subprocess.run(["/bin/sh", script, "--version"], capture_output=True, text=True, env=self.env,
                             timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertRegex(out.stdout, r"^axon \d+\.\d+")

    @unittest.skipIf(os.geteuid() == 0, "root can write anywhere: run as a normal user to check this")
    def test_unwritable_data_dir_is_explained(self):
        os.makedirs(self.data)
        os.chmod(self.data, 0o500)
        out = subprocess.run(["/bin/sh", self.entrypoint_copy(os.path.join(self.tmp, "absent.conf"))],
                             capture_output=True, text=True, env=self.env, timeout=30)
        os.chmod(self.data, 0o700)
        self.assertEqual(out.returncode, 2)
        self.assertIn("is not writable", out.stderr)
        self.assertIn("chown", out.stderr)

    @unittest.skipUnless(shutil.which("shellcheck"), "shellcheck is not installed")
    def test_shellcheck(self):
        out = subprocess.run(["shellcheck", ENTRYPOINT], capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout)


# ---- Dockerfile, compose files and install-deps profiles ---------------------------------------

class Container(unittest.TestCase):
    def test_dockerfile(self):
        text = read(os.path.join(DOCKER, "Dockerfile"))
        lines = re.sub(r"\\\n", " ", text).splitlines()
        instr = [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]
        self.assertIn("ARG DEBIAN_IMAGE=debian:12-slim", instr)
        froms = [l for l in instr if l.startswith("FROM ")]
        self.assertEqual(froms, ["FROM ${DEBIAN_IMAGE} AS build", "FROM ${DEBIAN_IMAGE} AS runtime"])
        build, runtime = text.split("FROM ${DEBIAN_IMAGE} AS runtime")
        self.assertRegex(build, r"install-deps\.sh build\b")
        self.assertRegex(build, r"--buildtype=release -Dtests=false")
        self.assertRegex(runtime, r"install-deps\.sh runtime\b")
        self.assertNotIn("install-deps.sh build", runtime)
        self.assertIn("USER axon", instr)
        self.assertIn('VOLUME ["/var/lib/axon"]', instr)
        self.assertIn("EXPOSE 8008 8448", instr)
        self.assertTrue(any(l.startswith("HEALTHCHECK ") and "curl" in l and "/health" in l for l in instr))
        self.assertIn('ENTRYPOINT ["/usr/local/bin/axon-entrypoint"]', instr)
        env_names = set(re.findall(r"\b(AXON_[A-Z0-9_]+)=", " ".join(l for l in instr if l.startswith("ENV "))))
        self.assertEqual(env_names, {"AXON_DATA_DIR", "AXON_LISTEN"})
        self.assertLessEqual(env_names, config_env_names())
        self.assertIn("AXON_DATA_DIR=/var/lib/axon", text)
        for src in re.findall(r"^COPY (?!--from)(\S+)", text, re.M):
            self.assertTrue(os.path.exists(os.path.join(SOURCE_ROOT, src)), src)
        # the build context excludes build trees and the data dir
        ignore = read(os.path.join(SOURCE_ROOT, ".dockerignore")).split()
        for entry in ("build", "axon-data", ".git"):
            self.assertIn(entry, ignore)

    def test_runtime_profile_covers_the_binary(self):
        """Every shared library axon loads comes with `install-deps.sh runtime` (sanitizer runtimes aside)."""
        out = subprocess.run(["ldd", AXON_BIN], capture_output=True, text=True, check=True)
        runtime = profile_packages("runtime")
        self.assertFalse([p for p in runtime if p.endswith("-dev")], runtime)
        closure = dpkg_closure(runtime)
        if len(closure) == len(runtime):
            self.skipTest("the runtime packages are not installed here")
        libs = re.findall(r"^\s*(\S+) => (\S+)", out.stdout, re.M)
        # the test build is sanitized, the release build is not: what only the
        # sanitizer runtimes need (libstdc++) is not axon's to bring
        sanitizers = {package_of(path) for lib, path in libs if re.match(r"lib(asan|ubsan|lsan|tsan)\.", lib)}
        closure |= dpkg_closure(sanitizers - {None})
        missing = []
        for lib, path in libs:
            pkg = package_of(path)
            self.assertIsNotNone(pkg, "no package owns %s" % path)
            if pkg not in closure:
                missing.append("%s (%s)" % (lib, pkg))
        self.assertEqual(missing, [], "libraries not brought by the runtime profile")

    def test_build_profile_covers_the_build(self):
        """Every pkg-config dependency of the build comes from `install-deps.sh build` (cmocka: test)."""
        build_dir = os.path.dirname(AXON_BIN)
        out = subprocess.run(["meson", "introspect", "--dependencies", build_dir], capture_output=True, text=True)
        if out.returncode != 0:
            self.skipTest("meson introspect unavailable: %s" % out.stderr.strip())
        closure = dpkg_closure(profile_packages("build"))
        test_closure = dpkg_closure(profile_packages("test"))
        missing = []
        for dep in json.loads(out.stdout):
            name = dep["name"]
            if name in ("threads",) or dep.get("type") not in ("pkgconfig", None):
                continue
            pc = subprocess.run(["pkg-config", "--path", name], capture_output=True, text=True)
            if pc.returncode != 0:
                continue
            pkg = package_of(pc.stdout.strip())
            if pkg is None:
                continue
            wanted = test_closure if name == "cmocka" else closure
            if pkg not in wanted:
                missing.append("%s (%s)" % (name, pkg))
        self.assertEqual(missing, [])

    def test_compose(self):
        compose = load_yaml(os.path.join(DOCKER, "docker-compose.yml"))
        services = compose["services"]
        self.assertEqual(set(services), {"axon", "nginx", "certbot"})
        axon, nginx = services["axon"], services["nginx"]
        self.assertEqual(axon["build"], {"context": "..", "dockerfile": "docker/Dockerfile"})
        self.assertNotIn("ports", axon, "axon is reached through nginx only (and /metrics stays internal)")
        self.assertIn("axon-data:/var/lib/axon", axon["volumes"])
        # axon trusts exactly nginx's fixed address
        self.assertEqual(axon["environment"]["AXON_TRUSTED_PROXIES"], nginx["networks"]["axon"]["ipv4_address"])
        names = config_env_names()
        for name in axon["environment"]:
            self.assertIn(name, names)
        for name in re.findall(r"^#?(AXON_[A-Z0-9_]+)=", read(os.path.join(DOCKER, "axon.env.example")), re.M):
            self.assertIn(name, names)
        # nginx gets every template variable, and the same size limit as axon
        env = nginx["environment"]
        self.assertLessEqual(TEMPLATE_VARIABLES, set(env))
        self.assertEqual(env["NGINX_MAX_BODY_SIZE"], axon["environment"]["AXON_MAX_UPLOAD_SIZE"])
        self.assertEqual(env["NGINX_AXON_UPSTREAM"], "axon:8008")
        self.assertEqual(sorted(nginx["ports"]), ["443:443", "80:80", "8448:8448"])
        for vol in nginx["volumes"]:
            src = vol.split(":")[0]
            if src.startswith("./"):
                self.assertTrue(os.path.exists(os.path.join(DOCKER, src)), src)
        certbot = services["certbot"]
        self.assertIn("certbot renew --webroot -w /var/www/certbot", " ".join(certbot["command"]))
        self.assertIn("certbot-www:/var/www/certbot:ro", nginx["volumes"])
        self.assertEqual(env["NGINX_ACME_WEBROOT"], "/var/www/certbot")

    def test_monitoring_compose(self):
        mon = load_yaml(os.path.join(DOCKER, "docker-compose.monitoring.yml"))
        self.assertEqual(set(mon["services"]), {"prometheus", "node-exporter", "grafana"})
        for svc in mon["services"].values():
            for vol in svc.get("volumes", []):
                src = vol.split(":")[0]
                if src.startswith("./"):
                    self.assertTrue(os.path.exists(os.path.join(DOCKER, src)), src)
            for port in svc.get("ports", []):
                self.assertTrue(port.startswith("127.0.0.1:"), "published on loopback only: %s" % port)
        prom = load_yaml(os.path.join(MONITORING, "prometheus.yml"))
        jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
        self.assertEqual(jobs["axon"]["static_configs"][0]["targets"], ["axon:8008"])
        self.assertEqual(jobs["axon"].get("metrics_path", "/metrics"), "/metrics")
        self.assertIn("node", jobs)
        self.assertEqual(prom["rule_files"], ["/etc/prometheus/alerts.yml"])
        ds = load_yaml(os.path.join(MONITORING, "grafana", "provisioning", "datasources", "prometheus.yml"))
        self.assertEqual(ds["datasources"][0]["url"], "http://prometheus:9090")
        dp = load_yaml(os.path.join(MONITORING, "grafana", "provisioning", "dashboards", "axon.yml"))
        self.assertEqual(dp["providers"][0]["options"]["path"], "/var/lib/grafana/dashboards")

    @unittest.skipUnless(DOCKER_COMPOSE, "docker-compose is not installed")
    def test_docker_compose_config(self):
        tmp = tempfile.mkdtemp(prefix="axon-compose-")
        try:
            d = os.path.join(tmp, "docker")
            shutil.copytree(DOCKER, d)
            shutil.copy(os.path.join(d, "env.example"), os.path.join(d, ".env"))
            shutil.copy(os.path.join(d, "axon.env.example"), os.path.join(d, "axon.env"))
            out = subprocess.run([DOCKER_COMPOSE, "-f", "docker-compose.yml", "-f", "docker-compose.monitoring.yml",
                                  "config", "-q"], capture_output=True, text=True, cwd=d, timeout=120)
            self.assertEqual(out.returncode, 0, out.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---- alert rules and dashboard ---------------------------------------------------------------

class Monitoring(unittest.TestCase):
    REQUIRED_ALERTS = {"AxonDown", "AxonHigh5xxRate", "AxonHighMemory", "HostDiskLow", "AxonDatabaseMapNearlyFull",
                       "AxonFederationDestinationsFailing"}
    DASHBOARD_METRICS = {"axon_http_requests_total", "axon_http_request_duration_seconds_bucket",
                         "axon_http_requests_in_flight", "axon_http_connections", "axon_writer_batch_size_bucket",
                         "axon_writer_commit_seconds_bucket", "axon_writer_queue_depth", "axon_db_used_bytes",
                         "axon_db_map_size_bytes", "process_resident_memory_bytes"}

    def rules(self):
        doc = load_yaml(os.path.join(MONITORING, "alerts.yml"))
        return [r for g in doc["groups"] for r in g["rules"]]

    def test_alert_rules(self):
        rules = self.rules()
        names = {r["alert"] for r in rules}
        self.assertLessEqual(self.REQUIRED_ALERTS, names)
        live = live_metric_names()
        for r in rules:
            self.assertIn(r["labels"]["severity"], ("warning", "critical"), r["alert"])
            self.assertTrue(r["annotations"]["summary"] and r["annotations"]["description"], r["alert"])
            for m in metric_names_in(r["expr"]):
                if m.startswith("node_") or m == "up" or m in FUTURE_METRICS:
                    continue
                self.assertIn(m, live, "%s uses %s, which axon does not export" % (r["alert"], m))
        exprs = {r["alert"]: r["expr"] for r in rules}
        self.assertIn('axon_http_requests_total{job="axon", status=~"5.."}', exprs["AxonHigh5xxRate"])
        self.assertIn("process_resident_memory_bytes", exprs["AxonHighMemory"])
        self.assertIn("axon_db_used_bytes", exprs["AxonDatabaseMapNearlyFull"])
        self.assertIn("axon_db_map_size_bytes", exprs["AxonDatabaseMapNearlyFull"])
        self.assertIn("node_filesystem_avail_bytes", exprs["HostDiskLow"])
        self.assertIn('axon_federation_destinations{job="axon", state="backoff"}',
                      exprs["AxonFederationDestinationsFailing"])

    def test_dashboard(self):
        with open(os.path.join(MONITORING, "grafana", "dashboards", "axon.json")) as f:
            dash = json.load(f)
        self.assertEqual(dash["uid"], "axon-overview")
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        used = set()
        live = live_metric_names()
        for p in dash["panels"]:
            if p["type"] == "row":
                continue
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                for m in metric_names_in(t["expr"]):
                    if m == "up":
                        continue
                    self.assertIn(m, live, "panel %r uses %s, which axon does not export" % (p["title"], m))
                    used.add(m)
        self.assertLessEqual(self.DASHBOARD_METRICS, used)

    @unittest.skipUnless(PROMTOOL, "promtool is not installed (Debian package prometheus)")
    def test_promtool(self):
        out = subprocess.run([PROMTOOL, "check", "rules", os.path.join(MONITORING, "alerts.yml")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        out = subprocess.run([PROMTOOL, "test", "rules", os.path.join(MONITORING, "alerts.test.yml")],
                             capture_output=True, text=True)
        self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        tmp = tempfile.mkdtemp(prefix="axon-promtool-")
        try:
            shutil.copy(os.path.join(MONITORING, "alerts.yml"), tmp)
            with open(os.path.join(tmp, "prometheus.yml"), "w") as f:
                f.write(read(os.path.join(MONITORING, "prometheus.yml")).replace("/etc/prometheus/alerts.yml",
                                                                                  "alerts.yml"))
            out = subprocess.run([PROMTOOL, "check", "config", os.path.join(tmp, "prometheus.yml")],
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            # every dashboard query is valid PromQL
            with open(os.path.join(MONITORING, "grafana", "dashboards", "axon.json")) as f:
                dash = json.load(f)
            rules = []
            for p in dash["panels"]:
                for t in p.get("targets", []):
                    e = t["expr"].replace("$__rate_interval", "5m").replace("$job", "axon").replace("$instance", ".*")
                    rules.append({"record": "dashboard:query_%d" % len(rules), "expr": e})
            with open(os.path.join(tmp, "dashboard.yml"), "w") as f:
                yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
            out = subprocess.run([PROMTOOL, "check", "rules", os.path.join(tmp, "dashboard.yml")],
                                 capture_output=True, text=True)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# ---- backup (docs/backup.md) -------------------------------------------------------------------

@unittest.skipUnless(shutil.which("mdb_copy"), "mdb_copy is not installed (Debian package lmdb-utils)")
class Backup(unittest.TestCase):
    def test_online_copy_restores(self):
        """The documented backup: mdb_copy -c of data_dir/db while axon runs, plus signing.key."""
        s = Server().start()
        restored = None
        try:
            key = s.request("GET", "/_matrix/key/v2/server").json
            dest = os.path.join(s.tmp, "backup")
            os.makedirs(os.path.join(dest, "db"))
            out = subprocess.run(["mdb_copy", "-c", os.path.join(s.data_dir, "db"), os.path.join(dest, "db")],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            shutil.copy2(os.path.join(s.data_dir, "signing.key"), dest)
            self.assertEqual(sorted(os.listdir(os.path.join(dest, "db"))), ["data.mdb"])
            # the running server was not disturbed
            self.assertEqual(s.request("GET", "/health").status, 200)
            # restore: a server on the copy has the same identity
            restored = Server(server_name=s.server_name, data_dir=dest).start()
            key2 = restored.request("GET", "/_matrix/key/v2/server").json
            self.assertEqual(key2["server_name"], key["server_name"])
            self.assertEqual(set(key2["verify_keys"]), set(key["verify_keys"]))
            self.assertEqual(key2["verify_keys"], key["verify_keys"])
        finally:
            if restored is not None:
                restored.stop()
                restored.cleanup()
            s.stop()
            s.cleanup()


class AdminBackup(unittest.TestCase):
    """`axon admin backup DIR` (server/admin.c) under write load, and the restore of docs/backup.md."""

    def admin(self, s, *args):
        return subprocess.run([AXON_BIN, "admin", "-c", s.write_config()] + list(args),
                              capture_output=True, text=True, timeout=120)

    def test_backup_under_write_load_restores_every_acknowledged_event(self):
        s = Server().start()
        restored = None
        try:
            u = s.register("writer", password="pw-backup")
            tok = u["access_token"]
            blob = os.urandom(3000)
            r = s.request("POST", "/_matrix/media/v3/upload?filename=b.bin", raw=blob, token=tok,
                          headers={"Content-Type": "application/octet-stream"})
            self.assertEqual(r.status, 200, r.json)
            mxc = r.json["content_uri"]
            rooms = [s.request("POST", "/_matrix/client/v3/createRoom", {}, token=tok).json["room_id"]
                     for _ in range(2)]
            acked = []  # (event_id, room_id) in acknowledgement order
            lock = threading.Lock()
            stop = threading.Event()

            def write(room, n=[0]):
                while not stop.is_set():
                    with lock:
                        n[0] += 1
                        txn = "t%d" % n[0]
                    r = s.request("PUT", "/_matrix/client/v3/rooms/%s/send/m.room.message/%s" % (room, txn),
                                  {"msgtype": "m.text", "body": txn}, token=tok)
                    if r.status == 200:
                        with lock:
                            acked.append((r.json["event_id"], room))

            threads = [threading.Thread(target=write, args=(room,)) for room in rooms for _ in range(2)]
            for t in threads:
                t.start()
            try:
                time.sleep(1.0)
                with lock:
                    before = list(acked)
                dest = os.path.join(s.tmp, "backup")
                out = self.admin(s, "backup", dest)
                time.sleep(0.3)
            finally:
                stop.set()
                for t in threads:
                    t.join()
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn("backed up", out.stdout)
            self.assertGreater(len(before), 10)
            self.assertGreater(len(acked), len(before))  # the writes went on during the copy
            self.assertEqual(sorted(os.listdir(dest)), ["axon-backup.json", "db", "media", "signing.key"])
            manifest = json.load(open(os.path.join(dest, "axon-backup.json")))
            self.assertEqual(manifest["server_name"], s.server_name)
            self.assertEqual(os.stat(os.path.join(dest, "signing.key")).st_mode & 0o777, 0o600)
            # a second backup into the same, now non-empty, directory is refused and changes nothing
            again = self.admin(s, "backup", dest)
            self.assertEqual(again.returncode, 1)
            self.assertIn("not empty", again.stderr)
            self.assertEqual(self.admin(s, "backup").returncode, 2)
            key = s.request("GET", "/_matrix/key/v2/server").json
            s.stop()

            # restore (docs/backup.md): the backup directory is a data dir
            restored = Server(server_name=s.server_name, data_dir=dest).start()
            self.assertEqual(restored.request("GET", "/_matrix/key/v2/server").json["verify_keys"],
                             key["verify_keys"])
            tok2 = restored.login("writer", password="pw-backup").json["access_token"]
            r = restored.request("GET", "/_matrix/client/v1/media/download/" + mxc[len("mxc://"):], token=tok2)
            self.assertEqual((r.status, r.raw), (200, blob))
            for event_id, room in before:
                r = restored.request("GET", "/_matrix/client/v3/rooms/%s/event/%s" % (room, event_id), token=tok2)
                self.assertEqual(r.status, 200, (event_id, r.json))
            r = restored.request("PUT", "/_matrix/client/v3/rooms/%s/send/m.room.message/after" % rooms[0],
                                 {"msgtype": "m.text", "body": "after restore"}, token=tok2)
            self.assertEqual(r.status, 200, r.json)
        finally:
            if restored is not None:
                restored.stop()
                restored.cleanup()
            s.stop()
            s.cleanup()


# ---- systemd ---------------------------------------------------------------------------------

@unittest.skipUnless(SYSTEMD_ANALYZE, "systemd-analyze is not installed")
class Systemd(unittest.TestCase):
    def unit_copy(self, tmp):
        text = read(os.path.join(DOCKER, "axon.service"))
        self.assertIn("ExecStart=/usr/local/bin/axon serve -c /etc/axon/axon.conf", text)
        path = os.path.join(tmp, "axon.service")
        with open(path, "w") as f:
            f.write(text.replace("/usr/local/bin/axon", AXON_BIN))  # verify checks the binary exists
        return path

    def test_verify_and_exposure(self):
        tmp = tempfile.mkdtemp(prefix="axon-unit-")
        try:
            unit = self.unit_copy(tmp)
            out = subprocess.run([SYSTEMD_ANALYZE, "verify", unit], capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stdout + out.stderr)
            self.assertNotIn("Unknown", out.stderr)
            out = subprocess.run([SYSTEMD_ANALYZE, "security", "--offline=true", "--threshold=20", unit],
                                 capture_output=True, text=True, timeout=60)
            if "--offline" in out.stderr and "unrecognized" in out.stderr:
                self.skipTest("this systemd-analyze has no --offline")
            self.assertEqual(out.returncode, 0, "exposure above 2.0:\n" + out.stdout[-3000:])
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def test_hardening_directives(self):
        text = read(os.path.join(DOCKER, "axon.service"))
        for line in ("DynamicUser=yes", "StateDirectory=axon", "ProtectSystem=strict", "NoNewPrivileges=yes",
                     "Environment=AXON_DATA_DIR=/var/lib/axon", "RestartPreventExitStatus=2"):
            self.assertIn(line + "\n", text)


if __name__ == "__main__":
    main()
