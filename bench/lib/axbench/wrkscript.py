"""wrk Lua scripts for requests other than a plain GET: a small wrapper with
the data (methods, paths, bodies, tokens) around bench/wrk/requests.lua, which
keeps bench/wrk/summary.lua's output so the runner parses the numbers."""

import os
import secrets

from .tools import WRK_SUMMARY_LUA

WRK_REQUESTS_LUA = os.path.join(os.path.dirname(WRK_SUMMARY_LUA), "requests.lua")


def lua_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


def write(ctx, name, requests):
    """Writes <workdir>/wrk/<name>.lua for 'requests', a list of dicts with method,
    path, and optionally body (str, JSON) and token.  "{n}" in a path or body
    becomes a string unique to each request of a run.  Returns the path."""
    d = os.path.join(ctx.workdir, "wrk")
    os.makedirs(d, exist_ok=True)
    lines = ["-- written by bench/run for %s" % name,
             "dofile(%s)" % lua_str(WRK_SUMMARY_LUA),
             "AXB_NONCE = %s" % lua_str(secrets.token_hex(4)),
             "AXB_REQUESTS = {"]
    for r in requests:
        items = ["method = %s" % lua_str(r["method"]), "path = %s" % lua_str(r["path"])]
        if r.get("body") is not None:
            items.append("body = %s" % lua_str(r["body"]))
        if r.get("token"):
            items.append("token = %s" % lua_str(r["token"]))
        lines.append("  {%s}," % ", ".join(items))
    lines += ["}", "dofile(%s)" % lua_str(WRK_REQUESTS_LUA), ""]
    path = os.path.join(d, name + ".lua")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path
