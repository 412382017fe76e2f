"""Matrix client helpers for scenarios that need users, rooms, tokens.

Every helper raises util.Unsupported when the target does not implement the
endpoint (404/405, M_UNRECOGNIZED) or refuses it by policy (registration
disabled, an auth flow other than m.login.dummy), so the scenario is reported
as "not supported by target: ..." instead of failing the run.
"""

import secrets
import time

from .util import Unsupported, BenchError, request


def unsupported_reason(method, path, resp):
    """A reason string when 'resp' says the endpoint does not exist, else None."""
    if resp.status in (404, 405, 501) or resp.errcode == "M_UNRECOGNIZED":
        return "%s %s answered %s" % (method, path, resp.describe())
    return None


def call(base, method, path, body=None, token=None, expect=(200,), retries=20):
    """One API call that must succeed: returns the Response.  Raises Unsupported
    when the endpoint is missing; waits out 429 M_LIMIT_EXCEEDED (retry_after_ms);
    raises BenchError on any other unexpected status."""
    for _ in range(retries):
        r = request(base, method, path, body=body, token=token)
        if r.status in expect:
            return r
        reason = unsupported_reason(method, path, r)
        if reason:
            raise Unsupported(reason)
        if r.status == 429:
            wait_ms = (r.json or {}).get("retry_after_ms", 1000) if isinstance(r.json, dict) else 1000
            time.sleep(min(10.0, max(0.05, wait_ms / 1000.0)))
            continue
        raise BenchError("%s %s answered %s: %r" % (method, path, r.describe(), r.raw[:300]))
    raise BenchError("%s %s: still rate-limited after %d tries" % (method, path, retries))


class User:
    def __init__(self, user_id, access_token, device_id, password):
        self.user_id = user_id
        self.access_token = access_token
        self.device_id = device_id
        self.password = password


def register_body(localpart, password):
    """The body of a one-request registration (m.login.dummy, no UIA session);
    'password' None registers an account without a password (no argon2id)."""
    body = {"username": localpart, "auth": {"type": "m.login.dummy"},
            "initial_device_display_name": "axon bench"}
    if password is not None:
        body["password"] = password
    return body


def register(base, localpart=None, password=None, no_password=False):
    """Registers a new user with m.login.dummy auth (POST /_matrix/client/v3/register)
    and returns a User with its access token.  Raises Unsupported when the target
    has no registration endpoint, has registration disabled, or needs another flow.
    With no_password the account has no password (seeding: no password hash to
    compute); a target that insists on one gets one."""
    path = "/_matrix/client/v3/register"
    localpart = localpart or "bench_" + secrets.token_hex(6)
    if no_password:
        password = None
    else:
        password = password or secrets.token_urlsafe(18)
    body = register_body(localpart, password)
    for _ in range(30):
        r = request(base, "POST", path, body=body)
        if r.status == 200 and isinstance(r.json, dict) and r.json.get("access_token"):
            j = r.json
            return User(j["user_id"], j["access_token"], j.get("device_id"), password)
        reason = unsupported_reason("POST", path, r)
        if reason:
            raise Unsupported(reason)
        if r.status == 403:
            raise Unsupported("registration is disabled on the target (%s)" % r.describe())
        if r.status == 400 and password is None and r.errcode in ("M_MISSING_PARAM", "M_INVALID_PARAM", "M_BAD_JSON"):
            # this target wants a password on every account
            password = secrets.token_urlsafe(18)
            body["password"] = password
            continue
        if r.status == 401 and isinstance(r.json, dict):
            flows = r.json.get("flows", [])
            if not any(f.get("stages") == ["m.login.dummy"] for f in flows):
                raise Unsupported("registration needs auth flows %s, not m.login.dummy" %
                                  [f.get("stages") for f in flows])
            if "session" in r.json and body["auth"].get("session") != r.json["session"]:
                body["auth"]["session"] = r.json["session"]
                continue
        if r.status == 429:
            wait_ms = (r.json or {}).get("retry_after_ms", 1000) if isinstance(r.json, dict) else 1000
            time.sleep(min(10.0, max(0.05, wait_ms / 1000.0)))
            continue
        raise BenchError("POST %s answered %s: %r" % (path, r.describe(), r.raw[:300]))
    raise BenchError("POST %s: gave up after 30 tries (rate-limited?)" % path)


def upload(base, token, data, filename="bench.bin", content_type="application/octet-stream"):
    """POST /_matrix/media/v3/upload of 'data' (bytes); returns the mxc:// URI.
    Unsupported when the endpoint is missing; waits out 429."""
    path = "/_matrix/media/v3/upload?filename=" + filename
    for _ in range(20):
        r = request(base, "POST", path, body=data, token=token, headers={"Content-Type": content_type})
        reason = unsupported_reason("POST", path, r)
        if reason:
            raise Unsupported(reason)
        if r.status == 429:
            time.sleep(1.0)
            continue
        uri = r.json.get("content_uri", "") if isinstance(r.json, dict) else ""
        if r.status != 200 or not uri.startswith("mxc://"):
            raise BenchError("POST %s answered %s: %r" % (path, r.describe(), r.raw[:200]))
        return uri
    raise BenchError("POST %s: still rate-limited after 20 tries" % path)
