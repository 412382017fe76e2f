"""One wake-up measurement with bench/loadgen/longpoll.py: N idle /sync
long-polls parked on the target, one PUT, and the time until each answered.
Shared by sync_wakeup (a room message) and to_device_fanout (a to-device
message to many devices).

longpoll.py runs as a child process (its own event loop and sockets) and
talks over stdin/stdout: "parked ..." once every long-poll waits, then, on
our "go", one JSON line with the result.  Between the two the server's RSS is
read, so the memory an idle long-poll costs comes out too.
"""

import json
import os
import select
import subprocess
import sys
import time

from .runner import ROOT
from .util import BenchError, percentile

LOADGEN = os.path.join(ROOT, "bench", "loadgen", "longpoll.py")


def _readline(proc, timeout, out):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if r:
            line = proc.stdout.readline()
            if not line:
                break
            out.append(line)
            if line.startswith("parked") or line.startswith("{"):
                return line
    raise BenchError("longpoll.py did not answer within %ds: %s" % (timeout, "".join(out)[-1500:]))


def _drive(cx, tool, cmd, log_path, go_timeout):
    """Runs a load generator that prints "parked" once its long-polls are parked, waits for "go" on stdin and
    prints one JSON line of results.  Returns (results, server RSS / RssAnon before and with all parked (kB), wall
    seconds); the output goes to log_path."""
    server = cx.target
    rss_idle, anon_idle = server.rss_kb(), server.rss_anon_kb()
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out = []
    try:
        parked = _readline(proc, 180, out)
        if not parked.startswith("parked"):
            raise BenchError("%s: %s" % (tool, "".join(out)[-1500:]))
        time.sleep(0.3)
        rss_parked, anon_parked = server.rss_kb(), server.rss_anon_kb()
        proc.stdin.write("go\n")
        proc.stdin.flush()
        line = _readline(proc, go_timeout, out)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    wall = time.monotonic() - t0
    with open(log_path, "w") as f:
        f.write("$ %s\n%s" % (" ".join(cmd), "".join(out)))
    try:
        res = json.loads(line)
    except ValueError:
        raise BenchError("%s: %s" % (tool, "".join(out)[-1500:]))
    return res, (rss_idle, anon_idle, rss_parked, anon_parked), wall


def _rss_fields(n, rss):
    """The RSS figures of a result: before, parked, and per parked long-poll."""
    rss_idle, anon_idle, rss_parked, anon_parked = rss
    return dict(rss_idle_kb=rss_idle, rss_parked_kb=rss_parked, anon_idle_kb=anon_idle, anon_parked_kb=anon_parked,
                rss_per_poll_kb=(rss_parked - rss_idle) / float(n) if rss_idle and rss_parked else None,
                anon_per_poll_kb=(anon_parked - anon_idle) / float(n) if anon_idle and anon_parked else None)


def measure(cx, kind, name, polls, send, tags, **cfg_extra):
    """Parks 'polls' ([{"token", "since"}]) on cx.target, PUTs 'send' ({"path",
    "token", "body"}) and records one measurement of kind 'kind' (tags added).
    cfg_extra goes into longpoll.py's config (room_id, check, marker, ...).
    Returns the result dict (longpoll = the load generator's own figures)."""
    n = len(polls)
    cfg = {"base": cx.target.base, "polls": polls, "query": "&set_presence=offline", "timeout_ms": 120000,
           "settle_s": 0.3 if cx.quick else 1.0, "wake_deadline_s": 90, "send": send}
    cfg.update(cfg_extra)
    cfg_path = os.path.join(cx.workdir, "longpoll-%s-%d-%d.json" % (name, n, tags.get("rep", 0)))
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    cmd = [sys.executable, LOADGEN, cfg_path]
    server = cx.target
    log_path = cx._raw_path("longpoll", server)

    def go():
        res, rss, wall = _drive(cx, "longpoll.py", cmd, log_path, 150)
        lat = res.pop("wake_ms")
        r = {"requests": res["woken"], "duration_s": (lat[-1] / 1000.0) if lat else None,
             "rps": res["woken"] / (lat[-1] / 1000.0) if lat and lat[-1] > 0 else None,
             "p50_ms": percentile(lat, 50), "p90_ms": percentile(lat, 90), "p99_ms": percentile(lat, 99),
             "max_ms": lat[-1] if lat else None, "mean_ms": sum(lat) / len(lat) if lat else None,
             "errors": res["errors"] + res["not_woken"] + res["missing_event"], "non2xx": 0,
             "bytes_per_req": res["bytes_per_response"], "error": None}
        if res["send_status"] != 200:
            r["error"] = "the send answered %s" % res["send_status"]
        elif res["woken"] == 0:
            r["error"] = "no long-poll answered: %s" % res["error_samples"][:2]
        r.update(longpoll=res, **_rss_fields(n, rss))
        return r, wall

    return cx.measure(server, "longpoll", " ".join(cmd), go, dict(tags, kind=kind, connections=n, raw_log=log_path))


FLOW = os.path.join(ROOT, "bench", "loadgen", "wakeflow.py")


def measure_flow(cx, kind, name, cfg, tags):
    """sync_wakeup's flow case with bench/loadgen/wakeflow.py: cfg["idle"] and
    cfg["members"] long-polls parked, then cfg["count"] messages at cfg["rate"]
    per second into cfg["room_id"]; one measurement of kind 'kind' whose
    latencies are per (message, member) delivery.  The server's RSS is read
    before and with everything parked, as in measure()."""
    n = len(cfg["idle"]) + len(cfg["members"])
    pids = cx.target.pids()
    cfg = dict(cfg, base=cx.target.base, settle_s=0.3 if cx.quick else 1.0, server_pid=pids[0] if pids else None)
    cfg_path = os.path.join(cx.workdir, "wakeflow-%s-%d-%d.json" % (name, n, tags.get("rep", 0)))
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)
    cmd = [sys.executable, FLOW, cfg_path]
    server = cx.target
    log_path = cx._raw_path("wakeflow", server)

    def go():
        go_timeout = 60 + cfg["count"] / cfg["rate"] + cfg.get("drain_s", 10)
        res, rss, wall = _drive(cx, "wakeflow.py", cmd, log_path, go_timeout)
        r = {"requests": res["delivered"], "duration_s": res["flow_s"],
             "rps": res["delivered"] / res["flow_s"] if res["flow_s"] else None,
             "p50_ms": res["p50_ms"], "p90_ms": res["p90_ms"], "p99_ms": res["p99_ms"], "max_ms": res["max_ms"],
             "mean_ms": res["mean_ms"], "errors": res["errors"] + res["missing"] + res["idle_answers"],
             "non2xx": sum(v for k, v in res["send_status"].items() if k != "200"),
             "bytes_per_req": res["bytes_per_answer"], "error": None}
        if res["delivered"] == 0:
            r["error"] = "no message reached a member: %s" % res["error_samples"][:2]
        r.update(flow=res, **_rss_fields(n, rss))
        return r, wall

    return cx.measure(server, "wakeflow", " ".join(cmd), go, dict(tags, kind=kind, connections=n, raw_log=log_path))
