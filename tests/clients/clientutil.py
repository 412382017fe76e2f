"""Helpers shared by the real-client tests."""

import time


def metrics(server):
    """axon's /metrics gauges as {name: float} (labelled series are skipped)."""
    out = {}
    for line in server.request("GET", "/metrics").raw.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and not line.startswith("#") and "{" not in parts[0]:
            out[parts[0]] = float(parts[1])
    return out


def wait_idle(server, timeout=30):
    """Waits until axon has no client connection and no request but the /metrics one asking.

    KNOWN SERVER BUG (shutdown spin, see tests/clients/README.md): a /sync long-poll that
    axon (re)runs after SIGTERM and that finds nothing new parks again, and ax_req_park()
    hands it straight back to on_waiter_now(), which re-runs it with timed_out=false, for
    ever: the HTTP thread spins, and axon never exits.  A client stopped just before the
    server can leave such a request behind, so the client tests stop axon only once every
    client connection has gone (a parked long-poll keeps its connection until its timeout).
    Once the bug is fixed, calling this before Server.stop() is merely tidy, not needed."""
    deadline = time.monotonic() + timeout
    m = {}
    while time.monotonic() < deadline:
        m = metrics(server)
        if m.get("axon_http_connections") == 1 and m.get("axon_http_requests_in_flight") == 1:
            return
        time.sleep(0.1)
    raise AssertionError("axon still busy %ds after the clients stopped: %r" % (timeout, m))
