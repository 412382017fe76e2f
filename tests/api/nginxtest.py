"""nginxtest -- runs the repository's nginx layout (docker/nginx/axon.conf.template)
in front of a test axon, outside Docker.

The template is rendered with test values (ports picked free on 127.0.0.1, a
certificate made here by a test CA with the openssl CLI) and included in a
minimal nginx.conf with its own prefix, pid file, logs and temp dirs, exactly
as the official nginx image or Debian's sites-enabled/ would include it.
Nothing listens on or talks to anything but the loopback interface.
"""

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from axontest import SOURCE_ROOT, free_port

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
CURL = shutil.which("curl")
_curl_seq = itertools.count()
OPENSSL = shutil.which("openssl")

TEMPLATE = os.path.join(SOURCE_ROOT, "docker", "nginx", "axon.conf.template")
MAINTENANCE_HTML = os.path.join(SOURCE_ROOT, "docker", "nginx", "maintenance.html")

# the variables the template may use: the documented contract (docs/nginx.md)
TEMPLATE_VARIABLES = {
    "NGINX_SERVER_NAME", "NGINX_HTTP_LISTEN", "NGINX_HTTPS_LISTEN", "NGINX_FEDERATION_LISTEN",
    "NGINX_TLS_CERT", "NGINX_TLS_KEY", "NGINX_AXON_UPSTREAM", "NGINX_MAX_BODY_SIZE",
    "NGINX_ACME_WEBROOT", "NGINX_MAINTENANCE_ROOT",
}

HOST = "matrix.test"  # the test certificate's name; curl --resolve maps it to 127.0.0.1


def missing_tools():
    """Why these tests cannot run here, or None."""
    missing = [name for name, path in (("nginx", NGINX), ("curl", CURL), ("openssl", OPENSSL)) if not path]
    if missing:
        return "%s not installed (scripts/install-deps.sh test installs them)" % ", ".join(missing)
    return None


def template_variables(text):
    return set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text))


def render_template(values):
    """The template with exactly the documented variables substituted (like envsubst with a list)."""
    with open(TEMPLATE) as f:
        text = f.read()
    used = template_variables(text)
    if used != TEMPLATE_VARIABLES:
        raise AssertionError("template variables differ from the documented set: extra %s, unused %s"
                             % (sorted(used - TEMPLATE_VARIABLES), sorted(TEMPLATE_VARIABLES - used)))
    for name in TEMPLATE_VARIABLES:
        text = text.replace("${%s}" % name, values[name])
    return text


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=60, **kw)


def make_pki(directory, host=HOST):
    """A test CA and a server certificate for 'host' and 127.0.0.1; returns (ca, cert, key) paths."""
    ca_key, ca = os.path.join(directory, "ca.key"), os.path.join(directory, "ca.pem")
    key, csr, cert = (os.path.join(directory, n) for n in ("server.key", "server.csr", "server.pem"))
    ext = os.path.join(directory, "server.ext")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run([OPENSSL, "req", "-x509"] + ec + ["-keyout", ca_key, "-out", ca, "-days", "2",
                                          "-subj", "/CN=axon test CA",
                                          "-addext", "basicConstraints=critical,CA:TRUE",
                                          "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
    run([OPENSSL, "req", "-new"] + ec + ["-keyout", key, "-out", csr, "-subj", "/CN=" + host])
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:%s,IP:127.0.0.1\n" % host)
    run([OPENSSL, "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext])
    return ca, cert, key


class Nginx:
    """nginx with its own prefix, serving the rendered template; listens on 127.0.0.1 only."""

    def __init__(self, upstream_port, max_body_size="64k"):
        self.prefix = tempfile.mkdtemp(prefix="axon-nginx-")
        self.http_port, self.https_port, self.fed_port = free_port(), free_port(), free_port()
        self.ca, self.cert, self.key = make_pki(self.prefix)
        self.acme_root = os.path.join(self.prefix, "acme")
        self.maintenance_root = os.path.join(self.prefix, "maintenance")
        os.makedirs(os.path.join(self.acme_root, ".well-known", "acme-challenge"))
        os.makedirs(self.maintenance_root)
        shutil.copy(MAINTENANCE_HTML, os.path.join(self.maintenance_root, "maintenance.html"))
        for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(self.prefix, "temp", d))
        self.values = {
            "NGINX_SERVER_NAME": HOST,
            "NGINX_HTTP_LISTEN": "127.0.0.1:%d" % self.http_port,
            "NGINX_HTTPS_LISTEN": "127.0.0.1:%d" % self.https_port,
            "NGINX_FEDERATION_LISTEN": "127.0.0.1:%d" % self.fed_port,
            "NGINX_TLS_CERT": self.cert,
            "NGINX_TLS_KEY": self.key,
            "NGINX_AXON_UPSTREAM": "127.0.0.1:%d" % upstream_port,
            "NGINX_MAX_BODY_SIZE": max_body_size,
            "NGINX_ACME_WEBROOT": self.acme_root,
            "NGINX_MAINTENANCE_ROOT": self.maintenance_root,
        }
        with open(os.path.join(self.prefix, "axon.conf"), "w") as f:
            f.write(render_template(self.values))
        self.error_log = os.path.join(self.prefix, "error.log")
        self.conf = os.path.join(self.prefix, "nginx.conf")
        # as root, nginx's workers would switch to 'nobody', who cannot read this 0700 prefix
        user = "user %s;\n" % _user_name() if os.geteuid() == 0 else ""
        with open(self.conf, "w") as f:
            f.write("""daemon off;
master_process on;
worker_processes 1;
%(user)spid %(p)s/nginx.pid;
error_log %(p)s/error.log notice;
events { worker_connections 256; }
http {
    types { text/html html; text/plain txt; application/json json; }
    default_type application/octet-stream;
    access_log %(p)s/access.log;
    client_body_temp_path %(p)s/temp/body;
    proxy_temp_path %(p)s/temp/proxy;
    fastcgi_temp_path %(p)s/temp/fastcgi;
    uwsgi_temp_path %(p)s/temp/uwsgi;
    scgi_temp_path %(p)s/temp/scgi;
    include %(p)s/axon.conf;
}
""" % {"p": self.prefix, "user": user})
        self.proc = None

    def command(self, *extra):
        return [NGINX, "-p", self.prefix + "/", "-c", self.conf, "-e", self.error_log] + list(extra)

    def check_config(self):
        """nginx -t on the rendered layout: (ok, output)."""
        out = subprocess.run(self.command("-t"), capture_output=True, text=True, timeout=60)
        return out.returncode == 0, out.stdout + out.stderr

    def start(self):
        self.log = open(os.path.join(self.prefix, "stderr.log"), "ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        pending = {self.http_port, self.https_port, self.fed_port}
        while pending and time.time() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError("nginx exited with %d:\n%s" % (self.proc.returncode, self.log_text()))
            for port in list(pending):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    pending.discard(port)
                except OSError:
                    pass
            time.sleep(0.05)
        if pending:
            raise AssertionError("nginx is not listening on %s:\n%s" % (sorted(pending), self.log_text()))
        return self

    def log_text(self):
        text = ""
        for name in ("stderr.log", "error.log"):
            try:
                with open(os.path.join(self.prefix, name), errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: finish requests, then exit
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None:
            self.proc = None
            self.log.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.prefix, ignore_errors=True)

    # -- clients --

    def url(self, port, path, scheme="https"):
        return "%s://%s:%d%s" % (scheme, HOST, port, path)

    def curl(self, url, *args, data_file=None, interface=None, max_time=30):
        """One request with curl; returns (status, http_version, headers dict, body bytes).
        Safe to call from several threads at once."""
        port = int(re.match(r"\w+://[^:/]+:(\d+)", url).group(1))
        n = next(_curl_seq)
        body_path = os.path.join(self.prefix, "curl-body-%d" % n)
        head_path = os.path.join(self.prefix, "curl-head-%d" % n)
        cmd = [CURL, "-sS", "--noproxy", "*", "--max-time", str(max_time), "--cacert", self.ca,
               "--resolve", "%s:%d:127.0.0.1" % (HOST, port), "-o", body_path, "-D", head_path,
               "-w", "%{http_code} %{http_version}"]
        if interface:
            cmd += ["--interface", interface]
        if data_file:
            cmd += ["--data-binary", "@" + data_file, "-H", "Content-Type: application/json", "-H", "Expect:"]
        cmd += list(args) + [url]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=max_time + 30)
        if out.returncode != 0:
            raise AssertionError("curl %s failed (%d): %s" % (url, out.returncode, out.stderr))
        status, version = out.stdout.split()
        headers = {}
        with open(head_path, errors="replace") as f:
            for line in f:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
        body = b""
        if os.path.exists(body_path):  # curl creates it only when a body arrives
            with open(body_path, "rb") as f:
                body = f.read()
            os.unlink(body_path)
        os.unlink(head_path)
        return int(status), version, headers, body


def _user_name():
    import pwd
    return pwd.getpwuid(os.geteuid()).pw_name
