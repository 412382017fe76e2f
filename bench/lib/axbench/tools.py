"""The load generators: wrk, ab (ApacheBench) and h2load.

For each: a function building the exact command line, and a parser turning its
output into one result dict with the same keys for every tool:

  requests, duration_s, rps, p50_ms, p90_ms, p99_ms, max_ms, mean_ms,
  errors (socket errors, timeouts, failed requests), non2xx, bytes_per_req

Latency resolution: wrk 1 us (histogram); h2load 1 us (per-request log);
ab 1 ms (its percentile table is whole milliseconds).
"""

import os
import re
import shlex
import shutil
import signal
import subprocess
import time

from .util import percentile

HERE = os.path.dirname(os.path.abspath(__file__))
WRK_SUMMARY_LUA = os.path.abspath(os.path.join(HERE, "..", "..", "wrk", "summary.lua"))


def which(name):
    return shutil.which(name)


def cmdline(cmd):
    return shlex.join(cmd)


def run(cmd, log_path, timeout, env=None):
    """Runs 'cmd' (its own process group, killed by PID on timeout); writes the
    command and its output to 'log_path'.  Returns (exit status, stdout+stderr, seconds)."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=full_env, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        out += b"\n[bench: killed after %ds]\n" % timeout
    except BaseException:
        # interrupted (Ctrl-C): do not leave the load generator running
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()
        raise
    elapsed = time.monotonic() - t0
    text = out.decode("utf-8", "replace")
    with open(log_path, "w") as f:
        f.write("$ %s\n%s" % (cmdline(cmd), text))
    return proc.returncode, text, elapsed


def empty_result():
    return {"requests": None, "duration_s": None, "rps": None, "p50_ms": None, "p90_ms": None,
            "p99_ms": None, "max_ms": None, "mean_ms": None, "errors": None, "non2xx": None,
            "bytes_per_req": None, "error": None}


# ---- wrk ------------------------------------------------------------------------

def wrk_command(url, connections, duration_s, threads=2, headers=(), script=None, timeout=None):
    t = max(1, min(threads, connections))
    cmd = ["wrk", "-t%d" % t, "-c%d" % connections, "-d%ds" % duration_s]
    if timeout:
        cmd.append("--timeout=%ds" % timeout)
    for h in headers:
        cmd += ["-H", h]
    cmd += ["-s", script or WRK_SUMMARY_LUA, url]
    return cmd


def parse_wrk(rc, out):
    r = empty_result()
    kv = {}
    for line in out.splitlines():
        if line.startswith("AXB "):
            for item in line[4:].split():
                k, _, v = item.partition("=")
                kv[k] = float(v)
    if rc != 0 or "requests" not in kv or "lat_p99_us" not in kv:
        r["error"] = "wrk exited %d: %s" % (rc, out.strip().splitlines()[-1][:200] if out.strip() else "no output")
        return r
    n = int(kv["requests"])
    dur = kv["duration_us"] / 1e6
    r.update(requests=n, duration_s=dur, rps=n / dur if dur > 0 else None,
             p50_ms=kv["lat_p50_us"] / 1000, p90_ms=kv["lat_p90_us"] / 1000,
             p99_ms=kv["lat_p99_us"] / 1000, max_ms=kv["lat_max_us"] / 1000,
             mean_ms=kv["lat_mean_us"] / 1000,
             errors=int(kv["err_connect"] + kv["err_read"] + kv["err_write"] + kv["err_timeout"]),
             non2xx=int(kv["err_status"]),
             bytes_per_req=kv["bytes"] / n if n else None)
    if n == 0:
        r["error"] = "wrk completed no request"
    return r


# ---- ab -------------------------------------------------------------------------

def ab_command(url, n, concurrency, keepalive, headers=()):
    cmd = ["ab", "-q", "-n", str(n), "-c", str(concurrency)]
    if keepalive:
        cmd.append("-k")
    for h in headers:
        cmd += ["-H", h]
    cmd.append(url)
    return cmd


def _num(pattern, text, cast=float):
    m = re.search(pattern, text, re.M)
    return cast(m.group(1)) if m else None


def parse_ab(rc, out):
    r = empty_result()
    complete = _num(r"^Complete requests:\s+(\d+)", out, int)
    rps = _num(r"^Requests per second:\s+([\d.]+)", out)
    if rc != 0 or complete is None or rps is None:
        last = [l for l in out.strip().splitlines() if l.strip()]
        r["error"] = "ab exited %d: %s" % (rc, last[-1][:200] if last else "no output")
        # ab prints how far it got before a fatal socket error
        done = _num(r"Total of (\d+) requests completed", out, int)
        if done is not None:
            r["requests"] = done
        return r
    pct = {int(p): float(v) for p, v in re.findall(r"^\s+(\d+)%\s+(\d+)", out, re.M)}
    failed = _num(r"^Failed requests:\s+(\d+)", out, int) or 0
    non2xx = _num(r"^Non-2xx responses:\s+(\d+)", out, int) or 0
    total_bytes = _num(r"^Total transferred:\s+(\d+)", out, int)
    r.update(requests=complete, duration_s=_num(r"^Time taken for tests:\s+([\d.]+)", out), rps=rps,
             p50_ms=pct.get(50), p90_ms=pct.get(90), p99_ms=pct.get(99), max_ms=pct.get(100),
             mean_ms=_num(r"^Time per request:\s+([\d.]+) \[ms\] \(mean\)$", out),
             errors=failed, non2xx=non2xx,
             bytes_per_req=total_bytes / complete if total_bytes and complete else None)
    return r


# ---- h2load ---------------------------------------------------------------------

def h2load_command(url, n, connections, streams, threads, log_file, headers=(), h1=False, data=None):
    """h2load's command line; 'h1' speaks HTTP/1.1 instead of h2c, 'data' is a
    file POSTed as every request's body (h2load -d)."""
    t = max(1, min(threads, connections))
    cmd = ["h2load", "-n", str(n), "-c", str(connections), "-m", str(streams), "-t", str(t)]
    if h1:
        cmd.append("--h1")
    if data:
        cmd += ["-d", data]
    for h in headers:
        cmd += ["-H", h]
    cmd += ["--log-file=" + log_file, url]
    return cmd


def parse_h2load(rc, out, log_file):
    r = empty_result()
    m = re.search(r"^finished in ([\d.]+)(us|ms|s), ([\d.]+) req/s", out, re.M)
    req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                    r"(\d+) errored, (\d+) timeout", out, re.M)
    st = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out, re.M)
    traffic = _num(r"^traffic: \S+ \((\d+)\) total", out, int)
    if rc != 0 or not m or not req or not st:
        last = [l for l in out.strip().splitlines() if l.strip()]
        r["error"] = "h2load exited %d: %s" % (rc, last[-1][:200] if last else "no output")
        return r
    scale = {"us": 1e-6, "ms": 1e-3, "s": 1.0}[m.group(2)]
    total, done, succeeded = int(req.group(1)), int(req.group(3)), int(req.group(4))
    lat = []
    try:
        with open(log_file) as f:
            for line in f:
                parts = line.split("\t")
                if len(parts) >= 3 and parts[1] != "-1":
                    lat.append(int(parts[2]) / 1000.0)
    except OSError:
        pass
    lat.sort()
    dur = float(m.group(1)) * scale
    # h2load's own req/s counts finished streams, failed ones too; count the successes
    r.update(requests=succeeded, duration_s=dur, rps=succeeded / dur if dur > 0 else None,
             p50_ms=percentile(lat, 50), p90_ms=percentile(lat, 90), p99_ms=percentile(lat, 99),
             max_ms=lat[-1] if lat else None, mean_ms=sum(lat) / len(lat) if lat else None,
             errors=total - succeeded,
             non2xx=int(st.group(2)) + int(st.group(3)) + int(st.group(4)),
             bytes_per_req=traffic / done if traffic and done else None)
    if succeeded == 0:
        r["error"] = "h2load: no request succeeded (does the server speak h2c?)"
    return r


# ---- versions -------------------------------------------------------------------

def version_of(tool):
    """One line naming the installed version of 'tool', or 'not installed'."""
    path = which(tool)
    if not path:
        return "not installed"
    try:
        if tool == "wrk":
            out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
            return (out.stdout + out.stderr).strip().splitlines()[0].split("Copyright")[0].strip()
        if tool == "ab":
            out = subprocess.run([path, "-V"], capture_output=True, text=True, timeout=10)
            return out.stdout.strip().splitlines()[0]
        if tool == "h2load":
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
            return out.stdout.strip().splitlines()[0]
        if tool == "nginx":
            out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
            return (out.stderr or out.stdout).strip().splitlines()[0]
        if tool == "gnuplot":
            out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10)
            return out.stdout.strip().splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        pass
    return path
