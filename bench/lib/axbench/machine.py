"""Facts about the machine, the build and the tools, for the report."""

import os
import platform
import socket
import subprocess

from . import tools

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def cpu_model():
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def mem_total_mb():
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return None


def os_name():
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return platform.system()


def loadavg():
    parts = _read("/proc/loadavg").split()
    return " ".join(parts[:3]) if parts else "?"


def cpu_times():
    """The 'cpu' line of /proc/stat as a list of ticks (user nice system idle iowait irq softirq steal ...)."""
    for line in _read("/proc/stat").splitlines():
        if line.startswith("cpu "):
            return [int(x) for x in line.split()[1:]]
    return None


def steal_pct(before, after):
    """Percentage of all CPU time between two cpu_times() that the hypervisor stole."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    d = [a - b for a, b in zip(after, before)]
    total = sum(d[:8])
    return 100.0 * d[7] / total if total > 0 else None


def busy_s(before, after):
    """CPU seconds (all cores) spent not idle between two cpu_times()."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    d = [a - b for a, b in zip(after, before)]
    return (sum(d[:8]) - d[3] - d[4]) / CLK_TCK       # minus idle and iowait


def info():
    return {
        "hostname": socket.gethostname(),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "mem_total_mb": mem_total_mb(),
        "kernel": platform.release(),
        "os": os_name(),
        "python": platform.python_version(),
        "tools": {t: tools.version_of(t) for t in ("wrk", "ab", "h2load", "nginx", "gnuplot")},
    }


def git_commit(root):
    """(commit, dirty): HEAD of the source tree and whether files other than
    bench/results/ differ from it; (None, False) outside git."""
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--",
                                 ".", ":(exclude)bench/results"], capture_output=True, text=True,
                                timeout=10).stdout.strip()
        return commit, bool(status)
    except (OSError, subprocess.SubprocessError):
        return None, False


def axon_version(binary):
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
        return (out.stdout or out.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
