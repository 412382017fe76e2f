"""bench/run: the command line, the orchestration, and the Context given to scenarios.

A run: build axon (release) or take --target; start it; let every selected
scenario prepare (setup) and say which constant answers the nginx baseline must
give; start nginx with exactly those bytes; run every scenario's steps with a
progress line on stderr, sampling both servers' RSS every 100 ms; stop
everything by PID; write the Markdown report (+ JSON, + gnuplot plots).
"""

import argparse
import datetime
import importlib.util
import os
import resource
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

from . import machine, report, tools
from .servers import AxonServer, ExternalServer, NginxServer, Sampler
from .util import BenchError, Progress, Unsupported, is_loopback_url, request

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
BENCH = os.path.join(ROOT, "bench")
SCENARIO_DIR = os.path.join(BENCH, "scenarios")


# ---- scenarios ------------------------------------------------------------------

class Step:
    """One unit of a scenario's plan: 'fn(ctx)' runs it; 'estimate_s' feeds the progress line."""

    def __init__(self, label, estimate_s, fn):
        self.label = label
        self.estimate_s = estimate_s
        self.fn = fn


def load_scenarios():
    """{name: module} for every bench/scenarios/<name>.py (files starting with '_' are not scenarios)."""
    found = {}
    for fn in sorted(os.listdir(SCENARIO_DIR)):
        if not fn.endswith(".py") or fn.startswith("_"):
            continue
        spec = importlib.util.spec_from_file_location("axbench_scenario_" + fn[:-3],
                                                      os.path.join(SCENARIO_DIR, fn))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        found[mod.NAME] = mod
    # in ORDER (cheap HTTP scenarios first, while the server is fresh and small), then by name
    return dict(sorted(found.items(), key=lambda kv: (getattr(kv[1], "ORDER", 100), kv[0])))


def load_planned():
    spec = importlib.util.spec_from_file_location("axbench_planned", os.path.join(SCENARIO_DIR, "_planned.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.PLANNED


class ScenarioRun:
    """The state of one scenario in this run."""

    def __init__(self, name, module=None, planned=None):
        self.name = name
        self.module = module
        self.planned = planned            # dict from _planned.py when not implemented yet
        self.status = "pending"           # ok | unsupported | planned | error
        self.reason = None
        self.routes = []
        self.state = {}                   # the scenario's own data (users, tokens, bodies)
        self.results = []                 # one dict per measurement
        self.rss = {}                     # server name -> {idle_before_kb, peak_kb, after_kb}
        self.ran_before = []              # the scenarios that ran on the target before this one
        self.summary = None               # what module.summarize() returned
        self.prepare_s = None             # seconds module.prepare() took
        self.t0 = self.t1 = None

    @property
    def title(self):
        if self.module is not None:
            return getattr(self.module, "TITLE", self.name)
        return (self.planned or {}).get("title", self.name)


class Context:
    """What a scenario sees: the options, the servers, and measurement helpers
    that run a load generator against one server and record RSS and CPU around it."""

    def __init__(self, opts, workdir, progress, sampler):
        self.opts = opts
        self.quick = opts.quick
        self.workdir = workdir
        self.progress = progress
        self.sampler = sampler
        self.target = None
        self.baseline = None
        self.scenario = None              # the ScenarioRun being prepared or run
        self.commands = []                # (what, command line) for the report
        self.fixtures = {}                # seeded data shared by scenarios (axbench.seed.fixture)
        self.fed_ca = None                # axbench.fed.TestCA when a scenario federates (AXON_FEDERATION)
        self.fresh_rss_kb = None          # the managed axon's RSS after start-up, before any scenario ran
        self.ran_before = []              # the scenarios that already ran on this target, in order
        self.has_h2load = tools.which("h2load") is not None
        self._h2c = {}
        self._n = 0

    @property
    def servers(self):
        return [s for s in (self.target, self.baseline) if s is not None]

    def servers_in_order(self, i):
        """Both servers, the order alternating with 'i' so neither always runs first."""
        s = self.servers
        return s if i % 2 == 0 else list(reversed(s))

    def _raw_path(self, tool, server):
        self._n += 1
        d = os.path.join(self.workdir, "raw")
        os.makedirs(d, exist_ok=True)
        return os.path.join(d, "%03d-%s-%s-%s.txt" % (self._n, self.scenario.name, tool, server.name))

    def _measure(self, server, tool, cmd, timeout, parse, tags, record, env=None):
        log = self._raw_path(tool, server)

        def go():
            rc, out, wall = tools.run(cmd, log, timeout, env=env)
            return parse(rc, out), wall
        r = self.measure(server, tool, tools.cmdline(cmd), go, tags, record)
        r["raw_log"] = log
        return r

    def measure(self, server, tool, command, fn, tags, record=True):
        """Runs fn() -> (result dict, wall seconds), one measurement against 'server',
        and adds what every measurement has: RSS before / sampled peak / end,
        server CPU, the tool's CPU (child processes) and everyone else's.  Scenarios
        with a load generator of their own (not wrk, ab or h2load) call this."""
        rss0, cpu0 = server.rss_kb(), server.cpu_s()
        ru0, st0 = resource.getrusage(resource.RUSAGE_CHILDREN), machine.cpu_times()
        t0 = time.monotonic()
        r, wall = fn()
        t1 = time.monotonic()
        rss1, cpu1 = server.rss_kb(), server.cpu_s()
        ru1, st1 = resource.getrusage(resource.RUSAGE_CHILDREN), machine.cpu_times()
        r.update(tags)
        r.update(tool=tool, server=server.name, role=server.role, command=command,
                 wall_s=round(wall, 3), rss_before_kb=rss0, rss_end_kb=rss1,
                 rss_peak_kb=self.sampler.peak(server, t0, t1, (rss0, rss1)),
                 server_cpu_s=round(cpu1 - cpu0, 3) if cpu0 is not None and cpu1 is not None else None)
        if r["server_cpu_s"] is not None and wall > 0:
            r["server_cpu_pct"] = round(100.0 * r["server_cpu_s"] / wall, 1)
        # the load generator's CPU, and what everything else on the machine used meanwhile
        # (other users of a shared machine: the noise the ratios are meant to cancel)
        tool_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
        r["tool_cpu_pct"] = round(100.0 * tool_cpu / wall, 1) if wall > 0 else None
        busy = machine.busy_s(st0, st1)
        if busy is not None and r["server_cpu_s"] is not None and wall > 0:
            r["other_cpu_pct"] = round(max(0.0, 100.0 * (busy - tool_cpu - r["server_cpu_s"]) / wall), 1)
        self.commands.append(("%s: %s against %s" % (self.scenario.name, tool, server.name), r["command"]))
        if not server.alive():
            r["error"] = "%s died during the run" % server.name
            raise BenchError("%s died during %s:\n%s" % (server.name, r["command"],
                                                         getattr(server, "log_tail", lambda: "")()))
        if record:
            self.scenario.results.append(r)
        return r

    def wrk(self, server, path, connections, duration=None, headers=(), script=None, record=True, timeout=None,
            env=None, **tags):
        """wrk -t2 -cN -dS against server+path; 'script' replaces the summary script
        (it must dofile() it, see bench/wrk/summary.lua); 'timeout' is wrk's --timeout
        in seconds (wrk's default is 2: slower responses count as timeouts); 'env'
        adds environment variables (a script's parameters, read with os.getenv).
        Returns the result dict."""
        duration = duration or self.opts.duration
        cmd = tools.wrk_command(server.url(path), connections, duration, threads=self.opts.threads,
                                headers=headers, script=script, timeout=timeout)
        tags = dict(tags, connections=connections, kind=tags.get("kind", "wrk"))
        return self._measure(server, "wrk", cmd, duration + 60, tools.parse_wrk, tags, record,
                             env=dict(env or {}, AXB_WRK_SUMMARY=tools.WRK_SUMMARY_LUA,
                                      # unique per run: scripts make txn IDs and usernames from it
                                      AXB_WRK_NONCE=secrets.token_hex(4)))

    @property
    def tool_timeout(self):
        """Seconds after which an ab or h2load run is killed (a stuck target must not hang the run)."""
        return 20 if self.quick else 180

    def ab(self, server, path, n, concurrency, keepalive, headers=(), record=True, **tags):
        """ab -n N -c C [-k] against server+path."""
        cmd = tools.ab_command(server.url(path), n, concurrency, keepalive, headers=headers)
        tags = dict(tags, connections=concurrency, kind=tags.get("kind", "ab -k" if keepalive else "ab"))
        return self._measure(server, "ab", cmd, self.tool_timeout, tools.parse_ab, tags, record)

    def speaks_h2c(self, server, path):
        """Whether h2load can talk HTTP/2 (prior knowledge, h2c) to server+path: one request."""
        key = (server.name, path)
        if key not in self._h2c:
            ok = False
            if self.has_h2load:
                cmd = ["h2load", "-n", "1", "-c", "1", "-N", "5s", server.url(path, h2=True)]
                log = os.path.join(self.workdir, "raw", "h2c-probe-%s.txt" % server.name)
                os.makedirs(os.path.dirname(log), exist_ok=True)
                try:
                    rc, out, _ = tools.run(cmd, log, 15)
                    ok = rc == 0 and "1 succeeded" in out
                except OSError:
                    ok = False
                self.commands.append(("h2c probe of %s" % server.name, tools.cmdline(cmd)))
            self._h2c[key] = ok
        return self._h2c[key]

    def h2load(self, server, path, n, connections, streams, headers=(), record=True, h1=False, data=None, **tags):
        """h2load (HTTP/2 prior knowledge, h2c; HTTP/1.1 with 'h1') against server+path,
        exactly 'n' requests (POSTing the file 'data' when given); latency from its --log-file."""
        log_file = os.path.join(self.workdir, "raw", "h2load-%d.log" % (self._n + 1))
        cmd = tools.h2load_command(server.url(path, h2=not h1), n, connections, streams, self.opts.threads,
                                   log_file, headers=headers, h1=h1, data=data)
        tags = dict(tags, connections=connections, streams=streams, kind=tags.get("kind", "h2load"))
        try:
            return self._measure(server, "h2load", cmd, self.tool_timeout,
                                 lambda rc, out: tools.parse_h2load(rc, out, log_file), tags, record)
        finally:
            try:
                os.unlink(log_file)      # can be large; the percentiles are in the result
            except OSError:
                pass


# ---- command line -----------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="bench/run",
        description="Benchmarks axon (or --target) against an nginx constant baseline on this machine "
                    "and writes a Markdown report to bench/results/. See docs/benchmarks.md.")
    p.add_argument("--target", metavar="URL", help="benchmark the homeserver at URL instead of a fresh axon")
    p.add_argument("--target-pid", type=int, metavar="PID", help="PID of --target, for RSS and CPU numbers")
    p.add_argument("--target-name", default=None, metavar="NAME", help="name of --target in the report")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow a --target that is not on loopback (the baseline stays on loopback)")
    p.add_argument("--axon", metavar="PATH", help="use this axon binary instead of building build/release")
    p.add_argument("--axon-set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra axon config key for the fresh axon (repeatable), e.g. sync=false")
    p.add_argument("--scenarios", metavar="LIST", help="comma-separated scenarios (default: all implemented)")
    p.add_argument("--duration", type=int, metavar="S", help="seconds per wrk run (default 4; --quick 1)")
    p.add_argument("--connections", type=int, metavar="N",
                   help="connections for the headline runs: wrk, ab -c, h2load -c (default 100)")
    p.add_argument("--sweep", metavar="LIST", help="wrk connection counts for the plot (default 10,50,100,200)")
    p.add_argument("--reps", type=int, metavar="R", help="repetitions of every measurement; medians are "
                   "reported (default 6; --quick 1)")
    p.add_argument("--requests", type=int, metavar="N", help="ab -n (default 50000; --quick 200)")
    p.add_argument("--h2-requests", type=int, metavar="N", help="h2load -n (default 100000; --quick 400)")
    p.add_argument("--h2-streams", type=int, default=10, metavar="M", help="h2load -m (default 10)")
    p.add_argument("--threads", type=int, default=2, metavar="T", help="wrk -t and h2load -t (default 2)")
    p.add_argument("--remote-join-members", metavar="LIST", default="1000",
                   help="room sizes for remote_join (default 1000; 1000,10000 adds the 10,000-member room, "
                        "about 40 s more)")
    p.add_argument("--quick", action="store_true",
                   help="smoke mode for CI: tiny runs, a few seconds; proves the scripts work, asserts nothing")
    p.add_argument("--json", action="store_true", help="also write the results as JSON next to the report")
    p.add_argument("--output", metavar="DIR",
                   help="where the report goes (default bench/results; --quick: bench/work/quick)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (configs, logs, raw tool output)")
    p.add_argument("--list", action="store_true", help="list implemented and planned scenarios and exit")
    opts = p.parse_args(argv)

    q = opts.quick
    opts.duration = opts.duration or (1 if q else 4)
    opts.connections = opts.connections or 100
    opts.reps = opts.reps or (1 if q else 6)
    opts.requests = opts.requests or (200 if q else 50000)
    opts.h2_requests = opts.h2_requests or (400 if q else 100000)
    sweep = opts.sweep or ("10,100" if q else "10,50,100,200")
    try:
        opts.sweep = sorted({int(x) for x in sweep.split(",") if x.strip()} | {opts.connections})
    except ValueError:
        p.error("--sweep wants comma-separated integers")
    if min(opts.sweep) < 1 or opts.duration < 1 or opts.reps < 1 or opts.requests < 1:
        p.error("counts and durations must be positive")
    try:
        opts.remote_join_members = sorted({int(x) for x in opts.remote_join_members.split(",") if x.strip()})
    except ValueError:
        p.error("--remote-join-members wants comma-separated integers")
    if not opts.remote_join_members or min(opts.remote_join_members) < 2:
        p.error("--remote-join-members wants room sizes of at least 2")
    if opts.target_pid and not opts.target:
        p.error("--target-pid needs --target")
    for kv in opts.axon_set:
        if "=" not in kv:
            p.error("--axon-set wants KEY=VALUE, got %r" % kv)
    return opts


def list_scenarios(impl, planned):
    print("Implemented scenarios:")
    for name, mod in impl.items():
        print("  %-18s %s" % (name, getattr(mod, "TITLE", "")))
        for n in getattr(mod, "NEEDS", []):
            print("  %-18s   needs %s" % ("", n))
    print("\nPlanned (not implemented yet):%s" % ("" if planned else " none"))
    for p in planned:
        print("  %-18s %s" % (p["name"], p["title"]))
        print("  %-18s   needs %s" % ("", "; ".join(p["needs"])))


# ---- build ------------------------------------------------------------------------

def build_axon(progress, ctx):
    """meson setup build/release --buildtype=release (once); ninja. Returns the binary path."""
    bdir = os.path.join(ROOT, "build", "release")
    if not os.path.exists(os.path.join(bdir, "build.ninja")):
        cmd = ["meson", "setup", bdir, ROOT, "--buildtype=release"]
        progress.note("building axon: " + tools.cmdline(cmd))
        ctx.commands.append(("build", tools.cmdline(cmd)))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError("meson setup failed:\n" + (r.stdout + r.stderr)[-3000:])
    cmd = ["ninja", "-C", bdir, "axon"]
    progress.note("building axon: " + tools.cmdline(cmd))
    ctx.commands.append(("build", tools.cmdline(cmd)))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError("ninja failed:\n" + (r.stdout + r.stderr)[-3000:])
    buildtype = "?"
    try:
        out = subprocess.run(["meson", "introspect", bdir, "--buildoptions"], capture_output=True, text=True).stdout
        import json
        for o in json.loads(out):
            if o.get("name") == "buildtype":
                buildtype = o.get("value")
    except (OSError, ValueError):
        pass
    return os.path.join(bdir, "axon"), buildtype


# ---- main ---------------------------------------------------------------------------

# open files wanted for this process and what it starts (axon, nginx, the load
# generators inherit it): sync_wakeup holds 10,000 idle long-polls, one socket
# each on both sides
NOFILE_WANTED = 65536


def raise_nofile_limit(want):
    """Raises RLIMIT_NOFILE towards 'want' (the hard limit too when allowed, i.e. as
    root); children inherit it.  Returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    inf = resource.RLIM_INFINITY
    if hard != inf and hard < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
        except (ValueError, OSError):
            pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = want if hard == inf else min(want, hard)
    if soft != inf and soft < new:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _Interrupted(Exception):
    pass


def unsupported_reason(e):
    """The report's wording for a scenario that raised Unsupported: the target
    lacks something, or (fed.MissingDependency) this machine does."""
    from .fed import MissingDependency
    if isinstance(e, MissingDependency):
        return "skipped: %s" % e
    return "not supported by target: %s" % e


def teardown(ctx, sc):
    """Runs the scenario's teardown(ctx) once (servers or threads of its own), whatever happened."""
    if sc.module is None or not hasattr(sc.module, "teardown") or sc.state.get("_torn_down"):
        return
    sc.state["_torn_down"] = True
    prev, ctx.scenario = ctx.scenario, sc
    try:
        sc.module.teardown(ctx)
    except Exception as e:   # noqa: BLE001 -- cleanup must go on
        print("bench/run: %s teardown: %s" % (sc.name, e), file=sys.stderr)
    finally:
        ctx.scenario = prev


def restart_axon(ctx, sc, runs, meta, sampler, progress):
    """The fresh axon died during scenario 'sc': keep its exit status and log for
    the report, start another one on a new data dir, and let the scenarios still
    to run set up again on it (their seeded data died with the old one)."""
    dead = ctx.target
    crashes = meta["target"].setdefault("crashes", [])
    rc = dead.stop()
    crashes.append({"during": sc.name, "exit_status": rc, "log_tail": dead.log_tail(3000),
                    "sanitizer_report": dead.sanitizer_report()})
    progress.note("axon died during %s (exit status %s); a fresh axon for the scenarios after it" % (sc.name, rc))
    fresh = AxonServer(dead.binary, "%s-restart%d" % (dead.workdir, len(crashes)), dead.settings, tls=dead.tls)
    os.makedirs(fresh.workdir)
    fresh.start()
    ctx.target = fresh
    sampler.add(fresh)
    ctx.fixtures.clear()
    ctx.commands.append(("axon (restarted after a crash)", tools.cmdline(fresh.command)))
    for later in runs[runs.index(sc) + 1:]:
        if later.status != "ok":
            continue
        ctx.scenario = later
        try:
            later.module.setup(ctx)       # fills the same state dict the planned steps read
        except Unsupported as e:
            later.status, later.reason = "unsupported", unsupported_reason(e)
        except (BenchError, OSError) as e:
            later.status, later.reason = "error", "setup on the restarted axon failed: %s" % e


def _on_signal(signum, frame):
    raise _Interrupted("signal %d" % signum)


def main(argv):
    opts = parse_args(argv)
    impl = load_scenarios()
    planned = load_planned()
    planned_by_name = {p["name"]: p for p in planned}
    if opts.list:
        list_scenarios(impl, planned)
        return 0

    names = [n.strip() for n in opts.scenarios.split(",")] if opts.scenarios else list(impl)
    for n in names:
        if n not in impl and n not in planned_by_name:
            print("bench/run: unknown scenario %r (see bench/run --list)" % n, file=sys.stderr)
            return 2
    # always in the suite's order (impl is sorted by ORDER), whatever order --scenarios gave
    rank = {n: i for i, n in enumerate(impl)}
    names = sorted(dict.fromkeys(names), key=lambda n: rank.get(n, len(rank)))

    def missing_tools():
        want = ["wrk", "ab", "nginx"] + ([] if opts.quick else ["h2load", "gnuplot"])
        if not opts.target and not opts.axon:
            want += ["meson", "ninja"]
        return [t for t in want if tools.which(t) is None and
                not (t == "nginx" and os.access("/usr/sbin/nginx", os.X_OK))]

    missing = missing_tools()
    if missing and not opts.quick:
        # like scripts/run.sh: install what is missing (Debian packages, via sudo when not root)
        profiles = ["bench"] + ([] if opts.target or opts.axon else ["build"])
        cmd = [os.path.join(ROOT, "scripts", "install-deps.sh")] + profiles
        print("bench/run: missing %s; running %s" % (", ".join(missing), tools.cmdline(cmd)), file=sys.stderr)
        subprocess.run(cmd)
        missing = [t for t in missing_tools() if t in ("wrk", "ab", "nginx", "meson", "ninja")]
    if missing:
        print("bench/run: missing %s; install with: scripts/install-deps.sh bench" % ", ".join(missing),
              file=sys.stderr)
        return 2
    nginx_bin = tools.which("nginx") or "/usr/sbin/nginx"

    if opts.target and not is_loopback_url(opts.target) and not opts.allow_remote:
        print("bench/run: %s is not on loopback; the baseline runs on loopback, so the ratio would compare "
              "a network to no network. Pass --allow-remote if you really mean it." % opts.target,
              file=sys.stderr)
        return 2

    started = datetime.datetime.now()
    stamp = started.strftime("%Y%m%d-%H%M%S")
    workdir = os.path.join(BENCH, "work", "%s-%d" % (stamp, os.getpid()))
    os.makedirs(workdir)
    default_out = os.path.join(BENCH, "work", "quick") if opts.quick else os.path.join(BENCH, "results")
    outdir = os.path.abspath(opts.output or default_out)
    os.makedirs(outdir, exist_ok=True)
    basename = "%s-%s" % (started.strftime("%Y-%m-%d"), socket.gethostname())
    if opts.scenarios:
        # a partial run gets its own report, so it never replaces the full run's
        basename += "-" + "-".join(names)[:80]

    meta_nofile = raise_nofile_limit(NOFILE_WANTED)
    sampler = Sampler(0.1)
    progress = Progress(1, 0)
    ctx = Context(opts, workdir, progress, sampler)
    runs = [ScenarioRun(n, impl.get(n), planned_by_name.get(n) if n not in impl else None) for n in names]
    meta = {"started": started.isoformat(timespec="seconds"), "argv": ["bench/run"] + list(argv),
            "machine": machine.info(), "loadavg_start": machine.loadavg(), "options": {
                k: v for k, v in vars(opts).items() if k not in ("list",)}}
    meta["commit"], meta["dirty"] = machine.git_commit(ROOT)
    meta["nofile_limit"] = meta_nofile
    failed = False
    interrupted = None

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        # -- the target
        if opts.target:
            ctx.target = ExternalServer(opts.target, pid=opts.target_pid, name=opts.target_name or "target")
            r = request(ctx.target.base, "GET", "/_matrix/client/versions", timeout=10)
            meta["target"] = {"url": ctx.target.base, "pid": opts.target_pid, "server_header":
                              r.headers.get("server"), "managed": False}
        else:
            if opts.axon:
                binary, buildtype = os.path.abspath(opts.axon), "given (--axon)"
            else:
                binary, buildtype = build_axon(progress, ctx)
            # what the selected scenarios need (raised rate limits), then --axon-set, which wins
            settings = {}
            for sc in runs:
                for k, v in (getattr(sc.module, "AXON_SETTINGS", None) or {}).items():
                    settings[k] = v
                    meta.setdefault("scenario_settings", {})[k] = "%s (by %s)" % (v, sc.name)
            settings.update(dict(kv.split("=", 1) for kv in opts.axon_set))
            tls = None
            if any(getattr(sc.module, "AXON_FEDERATION", False) for sc in runs):
                # federation scenarios: a CA of the run's own, a TLS listener, outbound to loopback
                from . import fed
                try:
                    fed.check_deps()
                    ctx.fed_ca = fed.TestCA(os.path.join(workdir, "ca"))
                    tls = {"cert": ctx.fed_ca.leaf_cert, "key": ctx.fed_ca.leaf_key, "ca": ctx.fed_ca.cert}
                    ctx.commands.append(("certificate authority for federation (openssl)",
                                         "openssl req -x509 -newkey ec ... (axbench/fed.py TestCA)"))
                except fed.MissingDependency:
                    pass            # the federation scenarios say so in their setup
            ctx.target = AxonServer(binary, os.path.join(workdir, "axon"), settings, tls=tls)
            os.makedirs(ctx.target.workdir)
            progress.note("starting axon")
            ctx.target.start()
            ctx.commands.append(("axon", tools.cmdline(ctx.target.command)))
            meta["target"] = {"url": ctx.target.base, "managed": True, "binary": binary,
                              "buildtype": buildtype, "version": machine.axon_version(binary),
                              "config": ctx.target.config_text}
        sampler.add(ctx.target)
        sampler.start()
        time.sleep(0.3 if opts.quick else 1.0)
        meta["target"]["rss_startup_kb"] = ctx.target.rss_kb()
        if meta["target"].get("managed"):
            ctx.fresh_rss_kb = meta["target"]["rss_startup_kb"]

        # -- scenarios prepare; the baseline learns the bytes it must answer
        routes = []
        for sc in runs:
            ctx.scenario = sc
            if sc.module is None:
                sc.status, sc.reason = "planned", "not implemented yet: needs " + "; ".join(sc.planned["needs"])
                continue
            try:
                sc.routes = sc.module.setup(ctx) or []
                routes += [r for r in sc.routes if r["path"] not in {x["path"] for x in routes}]
                sc.status = "ok"
            except Unsupported as e:
                sc.status, sc.reason = "unsupported", unsupported_reason(e)
            except (BenchError, OSError) as e:
                sc.status, sc.reason, failed = "error", "setup failed: %s" % e, True

        if routes:
            progress.note("starting nginx baseline")
            ctx.baseline = NginxServer(nginx_bin, os.path.join(workdir, "nginx"), routes, workers=2)
            os.makedirs(ctx.baseline.workdir)
            ctx.baseline.start()
            ctx.commands.append(("nginx", tools.cmdline(ctx.baseline.command)))
            sampler.add(ctx.baseline)
            time.sleep(0.3 if opts.quick else 1.0)
            meta["baseline"] = {"url": ctx.baseline.base, "h2c_url": ctx.baseline.h2_base,
                                "config": ctx.baseline.config_text, "rss_startup_kb": ctx.baseline.rss_kb()}

        # -- plans
        plans = {}
        for sc in runs:
            if sc.status == "ok":
                ctx.scenario = sc
                plans[sc.name] = sc.module.plan(ctx)
        steps = [st for p in plans.values() for st in p]
        preps = [sc for sc in runs if sc.name in plans and hasattr(sc.module, "prepare")]
        prep_s = sum((1 if opts.quick else getattr(sc.module, "PREPARE_S", 5)) for sc in preps)
        ctx.progress = progress = Progress(len(steps) + len(preps),
                                           sum(st.estimate_s for st in steps) + prep_s + 2 * len(plans))
        meta["loadavg_before_load"] = machine.loadavg()
        cpu_before = machine.cpu_times()

        # -- run
        for sc in runs:
            if sc.status != "ok":
                progress.note("%s: %s" % (sc.name, sc.reason))
                continue
            ctx.scenario = sc
            sc.ran_before = list(ctx.ran_before)
            ctx.ran_before.append(sc.name)
            try:
                # seeding that must not weigh on earlier scenarios' memory figures
                # happens here, right before the scenario, and is not measured
                if hasattr(sc.module, "prepare"):
                    progress.step("%s: preparing (seeding)" % sc.name,
                                  1 if opts.quick else getattr(sc.module, "PREPARE_S", 5))
                    t = time.monotonic()
                    sc.module.prepare(ctx)
                    sc.prepare_s = round(time.monotonic() - t, 1)
                    time.sleep(0.3 if opts.quick else 1.0)
            except Unsupported as e:
                sc.status, sc.reason = "unsupported", unsupported_reason(e)
                continue
            except (BenchError, OSError) as e:
                sc.status, sc.reason, failed = "error", "prepare failed: %s" % e, True
                continue
            sc.t0 = time.monotonic()
            for s in ctx.servers:
                sc.rss[s.name] = {"idle_before_kb": s.rss_kb()}
            try:
                for st in plans[sc.name]:
                    progress.step("%s: %s" % (sc.name, st.label), st.estimate_s)
                    st.fn(ctx)
            except Unsupported as e:
                sc.status, sc.reason = "unsupported", unsupported_reason(e)
            except (BenchError, OSError) as e:
                sc.status, sc.reason, failed = "error", str(e), True
            sc.t1 = time.monotonic()
            teardown(ctx, sc)
            time.sleep(0.3 if opts.quick else 1.0)       # let the servers settle
            for s in ctx.servers:
                sc.rss[s.name]["peak_kb"] = sampler.peak(s, sc.t0, sc.t1)
                sc.rss[s.name]["after_kb"] = s.rss_kb()
            if sc.status == "ok" and hasattr(sc.module, "summarize"):
                sc.summary = sc.module.summarize(ctx, sc)
            if any(r.get("error") for r in sc.results):
                failed = True
            if not all(s.alive() for s in ctx.servers):
                failed = True
                if isinstance(ctx.target, AxonServer) and not ctx.target.alive() and \
                        (ctx.baseline is None or ctx.baseline.alive()):
                    # a crash is a finding, reported as such; the scenarios after it
                    # still get measured, on a fresh axon
                    restart_axon(ctx, sc, runs, meta, sampler, progress)
                    continue
                for later in runs[runs.index(sc) + 1:]:
                    if later.status == "ok":
                        later.status, later.reason = "error", "not run: a server died during %s" % sc.name
                break
        meta["loadavg_end"] = machine.loadavg()
        meta["steal_pct"] = machine.steal_pct(cpu_before, machine.cpu_times())
    except _Interrupted as e:
        interrupted = str(e)
    except KeyboardInterrupt:
        interrupted = "interrupted"
    except (BenchError, OSError) as e:
        print("\nbench/run: %s" % e, file=sys.stderr)
        failed = True
        meta["fatal"] = str(e)
    finally:
        for sc in runs:
            teardown(ctx, sc)
        sampler.stop()
        for s in ctx.servers:
            try:
                hwm = s.hwm_kb()
                if isinstance(s, (AxonServer, NginxServer)):
                    died = not s.alive()
                    rc = s.stop()
                    key = "target" if s is ctx.target else "baseline"
                    meta.setdefault(key, {}).update(hwm_kb=hwm, exit_status=rc, died_before_stop=died)
                    if isinstance(s, AxonServer) and s.sanitizer_report():
                        meta[key]["sanitizer_report"] = s.log_tail(3000)
                        failed = True
                    if isinstance(s, AxonServer) and rc != 0 and not died:
                        print("bench/run: axon exited with status %s after SIGTERM:\n%s" % (rc, s.log_tail(2000)),
                              file=sys.stderr)
                        failed = True
                    if died:
                        failed = True
                        meta[key]["log_tail"] = s.log_tail(3000)
                else:
                    meta.setdefault("target", {})["hwm_kb"] = hwm
            except Exception as e:   # noqa: BLE001 -- cleanup must go on
                print("bench/run: stopping %s: %s" % (s.name, e), file=sys.stderr)
        for sig, h in old.items():
            signal.signal(sig, h)

    if interrupted:
        print("\nbench/run: %s; servers stopped; work dir kept: %s" % (interrupted, workdir), file=sys.stderr)
        return 130

    meta["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    meta["elapsed_s"] = round((datetime.datetime.now() - started).total_seconds(), 1)
    paths = report.write(outdir, basename, meta, runs, ctx, want_json=opts.json)
    progress.finish("done in %s: %s" % (
        "%d:%02d" % divmod(int(meta["elapsed_s"]), 60), ", ".join(os.path.relpath(p) for p in paths)))
    for sc in runs:
        if sc.summary and sc.summary.get("headline_text"):
            print(sc.summary["headline_text"], file=sys.stderr)
    if failed or meta.get("fatal"):
        print("bench/run: something failed (see the report); work dir kept: %s" % workdir, file=sys.stderr)
        return 1
    if opts.keep:
        print("bench/run: work dir kept: %s" % workdir, file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0
