"""The servers a benchmark talks to, and what /proc says about them.

  AxonServer      a fresh axon on a temporary data dir and a free loopback port
  NginxServer     the baseline: nginx answering constants with the target's exact bytes
  ExternalServer  a homeserver someone else started (--target URL [--target-pid PID])
  Sampler         samples every server's RSS every 100 ms in a background thread

Every process is started by us, remembered by PID and stopped by PID (SIGTERM,
then SIGKILL after a grace period); nothing is ever killed by name.
"""

import os
import signal
import subprocess
import threading
import time

from .util import BenchError, free_port, request

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                     "WARNING: ThreadSanitizer")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---- /proc ----------------------------------------------------------------------

def proc_status_kb(pid, key):
    """A 'kB' field of /proc/PID/status (VmRSS, VmHWM); None if the process is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def proc_cpu_s(pid):
    """utime + stime of PID in seconds; None if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, ValueError, IndexError):
        return None


def proc_children(pid):
    """Direct children of PID (all its threads' children)."""
    kids = []
    try:
        for tid in os.listdir("/proc/%d/task" % pid):
            try:
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids += [int(x) for x in f.read().split()]
            except OSError:
                pass
    except OSError:
        pass
    return kids


def _stop_popen(proc, grace):
    """SIGTERM by PID, then SIGKILL after 'grace' seconds.  Returns the exit status."""
    if proc.poll() is None:
        try:
            os.kill(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
    return proc.returncode


# ---- servers ----------------------------------------------------------------------

class Server:
    """What scenarios and the runner need from any server."""
    name = "server"
    role = "target"          # "target" or "baseline"
    base = None              # http://127.0.0.1:PORT
    h2_base = None           # where h2c (HTTP/2 prior knowledge) is served, None if unknown

    def url(self, path, h2=False):
        base = self.h2_base if h2 else self.base
        return None if base is None else base + path

    def pids(self):
        return []

    def rss_kb(self):
        """Sum of VmRSS over the server's processes, None when unknown."""
        vals = [proc_status_kb(p, "VmRSS") for p in self.pids()]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None

    def rss_anon_kb(self):
        """Sum of RssAnon (heap and stacks, not the mapped database file), None when unknown."""
        vals = [proc_status_kb(p, "RssAnon") for p in self.pids()]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None

    def hwm_kb(self):
        vals = [proc_status_kb(p, "VmHWM") for p in self.pids()]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None

    def cpu_s(self):
        vals = [proc_cpu_s(p) for p in self.pids()]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None

    def alive(self):
        return True

    def stop(self):
        return None


class ExternalServer(Server):
    """A homeserver started by someone else; RSS only when its PID is given."""

    def __init__(self, base, pid=None, name="target"):
        self.base = base.rstrip("/")
        self.h2_base = self.base
        self.pid = pid
        self.name = name
        self.exit_status = None

    def pids(self):
        if self.pid is None:
            return []
        return [self.pid] + proc_children(self.pid)

    def alive(self):
        return self.pid is None or os.path.exists("/proc/%d" % self.pid)


class AxonServer(Server):
    """A fresh axon: its own config, data dir and free port under 'workdir'.

    With 'tls' ({"cert", "key", "ca"}: axbench.fed.TestCA's files) it also
    federates: a TLS listener on a second free port, its server name
    localhost:TLS_PORT (so other servers find it there), the bench's CA
    trusted for outbound TLS and loopback destinations allowed."""
    name = "axon"

    def __init__(self, binary, workdir, settings=None, tls=None, name=None):
        self.binary = binary
        self.workdir = workdir
        self.settings = dict(settings or {})
        self.tls = tls
        if name:
            self.name = name
        self.server_name = None
        self.tls_port = None
        self.fed_base = None            # https://127.0.0.1:TLS_PORT with tls, else None
        self.proc = None
        self.log_path = os.path.join(workdir, "axon.log")
        self.conf_path = os.path.join(workdir, "axon.conf")
        self.data_dir = os.path.join(workdir, "axon-data")
        self.exit_status = None
        self.command = None
        self.config_text = None

    def _write_config(self, port, tls_port=None):
        cfg = {
            "server_name": "localhost:%d" % (tls_port or port),
            "listen": "127.0.0.1:%d" % port,
            "data_dir": self.data_dir,
            "log_level": "warn",
            "sync": "true",                 # durable numbers are the honest ones
            "allow_registration": "true",   # later scenarios register users; loopback only
            "trusted_key_servers": "",      # never reach out to matrix.org
        }
        if tls_port is not None:
            cfg.update({
                "tls_listen": "127.0.0.1:%d" % tls_port,
                "tls_certificate": self.tls["cert"],
                "tls_private_key": self.tls["key"],
                "federation_ca_file": self.tls["ca"],
                "outbound_allow_private": "true",   # the other servers of the run are on 127.0.0.1
            })
        cfg.update(self.settings)
        self.server_name = cfg["server_name"]
        # "section.key" goes under [section] (e.g. ratelimit.login_per_second)
        top = {k: v for k, v in cfg.items() if "." not in k}
        sections = {}
        for k, v in cfg.items():
            if "." in k:
                sec, key = k.split(".", 1)
                sections.setdefault(sec, {})[key] = v
        self.config_text = "".join("%s = %s\n" % (k, v) for k, v in top.items())
        for sec, kv in sections.items():
            self.config_text += "\n[%s]\n" % sec + "".join("%s = %s\n" % (k, v) for k, v in kv.items())
        with open(self.conf_path, "w") as f:
            f.write(self.config_text)

    def start(self, timeout=30):
        for attempt in range(3):
            port = free_port()
            tls_port = None
            if self.tls:
                tls_port = free_port()
                if tls_port == port:
                    continue
            self._write_config(port, tls_port)
            self.base = self.h2_base = "http://127.0.0.1:%d" % port
            self.tls_port = tls_port
            self.fed_base = "https://127.0.0.1:%d" % tls_port if tls_port else None
            self.command = [self.binary, "serve", "-c", self.conf_path]
            env = {k: v for k, v in os.environ.items() if not k.startswith("AXON_")}
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=self.workdir, env=env,
                                             start_new_session=True)
            finally:
                log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    if request(self.base, "GET", "/health", timeout=2).status == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.05)
            if self.proc.poll() is None:
                _stop_popen(self.proc, 5)
                raise BenchError("axon did not become ready within %ds:\n%s" % (timeout, self.log_tail()))
            # lost a race for the port to someone else: try another one
            if "cannot listen" in self.log_tail() and attempt < 2:
                continue
            raise BenchError("axon exited with %s during start-up:\n%s" % (self.proc.returncode, self.log_tail()))
        raise BenchError("axon could not start")

    def pids(self):
        return [self.proc.pid] if self.proc is not None and self.proc.poll() is None else []

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return ""

    def sanitizer_report(self):
        text = self.log_tail(200000)
        return any(m in text for m in SANITIZER_MARKERS)

    def stop(self):
        if self.proc is None:
            return self.exit_status
        self.exit_status = _stop_popen(self.proc, 15)
        self.proc = None
        return self.exit_status


def nginx_quote(text):
    """'text' as an nginx single-quoted string whose value is exactly 'text':
    backslashes and quotes escaped, '$' through a variable that holds '$'."""
    out = text.replace("\\", "\\\\").replace("'", "\\'").replace("$", "${axb_dollar}")
    return "'" + out + "'"


class NginxServer(Server):
    """nginx answering each route with a constant (`return STATUS 'body'`).

    'routes' is a list of dicts: path, status, body (str), content_type,
    headers (extra response headers, e.g. the CORS headers the target sends);
    or, instead of status and body, file: a file served from disk (sendfile).
    HTTP/1.1 on one port, h2c (HTTP/2 prior knowledge) on another."""
    name = "nginx"
    role = "baseline"

    def __init__(self, binary, workdir, routes, workers=2):
        self.binary = binary
        self.workdir = workdir
        self.routes = routes
        self.workers = workers
        self.proc = None
        self.conf_path = os.path.join(workdir, "nginx.conf")
        self.log_path = os.path.join(workdir, "nginx.stderr")
        self.exit_status = None
        self.command = None
        self.config_text = None

    def _config(self, port, h2_port):
        d = self.workdir
        locs = []
        for r in self.routes:
            lines = ["        location = %s {" % r["path"],
                     "            default_type %s;" % r.get("content_type", "application/json")]
            for k, v in r.get("headers", {}).items():
                lines.append("            add_header %s %s;" % (k, nginx_quote(v)))
            if r.get("file"):
                # a file from disk (media_download), the way a deployment serves static files
                lines.append("            sendfile on;")
                lines.append("            alias %s;" % r["file"])
            else:
                lines.append("            return %d %s;" % (r.get("status", 200), nginx_quote(r["body"])))
            lines.append("        }")
            locs.append("\n".join(lines))
        return """# written by bench/run: the constant baseline
worker_processes %(workers)d;
pid %(d)s/nginx.pid;
error_log %(d)s/nginx-error.log warn;
events {
    worker_connections 4096;
}
http {
    access_log off;
    # nginx closes a keep-alive (and HTTP/2) connection after 1000 requests by
    # default; axon does not, so without this the baseline would pay for
    # reconnects (wrk, ab -k) or fail requests (h2load does not reconnect).
    keepalive_requests 1000000;
    client_body_temp_path %(d)s/tmp/client_body;
    proxy_temp_path %(d)s/tmp/proxy;
    fastcgi_temp_path %(d)s/tmp/fastcgi;
    uwsgi_temp_path %(d)s/tmp/uwsgi;
    scgi_temp_path %(d)s/tmp/scgi;
    geo $axb_dollar {
        default "$";
    }
    server {
        listen 127.0.0.1:%(port)d;
        listen 127.0.0.1:%(h2_port)d http2;
%(locs)s
        location / {
            default_type application/json;
            return 404 '{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}';
        }
    }
}
""" % {"workers": self.workers, "d": d, "port": port, "h2_port": h2_port, "locs": "\n".join(locs)}

    def start(self, timeout=15):
        os.makedirs(os.path.join(self.workdir, "tmp"), exist_ok=True)
        for attempt in range(3):
            port, h2_port = free_port(), free_port()
            if port == h2_port:
                continue
            self.config_text = self._config(port, h2_port)
            with open(self.conf_path, "w") as f:
                f.write(self.config_text)
            self.base = "http://127.0.0.1:%d" % port
            self.h2_base = "http://127.0.0.1:%d" % h2_port
            self.command = [self.binary, "-c", self.conf_path, "-p", self.workdir, "-g", "daemon off;"]
            log = open(self.log_path, "ab")
            try:
                self.proc = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT,
                                             stdin=subprocess.DEVNULL, cwd=self.workdir,
                                             start_new_session=True)
            finally:
                log.close()
            deadline = time.monotonic() + timeout
            ready = False
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    request(self.base, "GET", "/", timeout=2)
                    ready = True
                    break
                except OSError:
                    time.sleep(0.05)
            if ready:
                # wait for the workers to exist so RSS counts them
                t_end = time.monotonic() + 5
                while len(proc_children(self.proc.pid)) < self.workers and time.monotonic() < t_end:
                    time.sleep(0.05)
                self._check_routes()
                return self
            if self.proc.poll() is None:
                _stop_popen(self.proc, 5)
            if "Address already in use" in self.log_tail() and attempt < 2:
                continue
            raise BenchError("nginx did not start:\n" + self.log_tail())
        raise BenchError("nginx could not start")

    def _check_routes(self):
        """The baseline must answer exactly the bytes the target answered."""
        for r in self.routes:
            got = request(self.base, "GET", r["path"])
            if r.get("file"):
                with open(r["file"], "rb") as f:
                    want = f.read()
            else:
                want = r["body"].encode()
            if got.status != r.get("status", 200) or got.raw != want:
                raise BenchError("nginx baseline answers %s with %d %r, expected %r" % (
                    r["path"], got.status, got.raw[:200], want[:200]))
            ct = got.headers.get("content-type", "")
            if ct != r.get("content_type", "application/json"):
                raise BenchError("nginx baseline content-type for %s is %r" % (r["path"], ct))

    def log_tail(self, n=4000):
        text = ""
        for p in (self.log_path, os.path.join(self.workdir, "nginx-error.log")):
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")[-n:]
            except OSError:
                pass
        return text

    def pids(self):
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid] + proc_children(self.proc.pid)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        if self.proc is None:
            return self.exit_status
        self.exit_status = _stop_popen(self.proc, 10)
        self.proc = None
        return self.exit_status


class Sampler(threading.Thread):
    """Samples every server's RSS (VmRSS summed over its processes) every
    'interval' seconds; peak(server, t0, t1) is the largest sample in a window."""

    def __init__(self, interval=0.1):
        super().__init__(daemon=True)
        self.interval = interval
        self.servers = []
        self.samples = {}          # server name -> [(monotonic time, kB)]
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def add(self, server):
        with self.lock:
            self.servers.append(server)
            self.samples.setdefault(server.name, [])

    def run(self):
        while not self.stopping.is_set():
            t = time.monotonic()
            with self.lock:
                servers = list(self.servers)
            for s in servers:
                kb = s.rss_kb()
                if kb is not None:
                    with self.lock:
                        self.samples[s.name].append((t, kb))
            self.stopping.wait(self.interval)

    def peak(self, server, t0, t1, extra=()):
        """Largest sample of 'server' taken in [t0, t1], and of the values in 'extra'."""
        with self.lock:
            vals = [kb for t, kb in self.samples.get(server.name, []) if t0 <= t <= t1]
        vals += [kb for kb in extra if kb is not None]
        return max(vals) if vals else None

    def stop(self):
        self.stopping.set()
