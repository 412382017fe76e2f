#!/bin/sh
# bench_quick.sh AXON_BIN SOURCE_ROOT -- TAP: `bench/run --quick` works end to
# end (build skipped: it uses AXON_BIN; starts axon and nginx, drives wrk, ab
# and h2load, runs every implemented scenario briefly -- registrations, logins,
# rooms, sends, syncs, 100 long-polls, pagination, push, media and thumbnails,
# one-time keys, to-device messages, federation /send from the bench's own
# signing remote and a join from a second axon -- and writes the Markdown and
# JSON report and the plots).  It asserts nothing about performance.
# Skipped when wrk, ab or nginx is missing (scripts/install-deps.sh test
# installs them).
axon=$1
root=$2
echo "1..1"
missing=""
for t in wrk ab; do
    command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
done
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    missing="$missing nginx"
fi
if [ -n "$missing" ]; then
    echo "ok 1 - bench quick # SKIP missing:$missing (scripts/install-deps.sh test)"
    exit 0
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/axon-bench-quick.XXXXXX") || exit 1
trap 'rm -rf "$out"' EXIT INT TERM
status=0
/usr/bin/python3 "$root/bench/run" --quick --json --axon "$axon" --output "$out/results" \
    >"$out/stdout" 2>"$out/stderr" || status=$?
check=$(/usr/bin/python3 - "$out/results" <<'PY' 2>&1
import glob, json, sys
d = sys.argv[1]
md, js = glob.glob(d + "/*.md"), glob.glob(d + "/*.json")
assert len(md) == 1 and len(js) == 1, "expected one report and one JSON file in %s" % d
data = json.load(open(js[0]))
assert not data["meta"].get("fatal"), data["meta"].get("fatal")
sc = {s["name"]: s for s in data["scenarios"]}
v = sc["versions"]
assert v["status"] == "ok", v["reason"]
assert v["results"], "no measurement"
for r in v["results"]:
    assert not r.get("error"), r["error"]
    assert r["requests"] and r["requests"] > 0, r
assert {r["server"] for r in v["results"]} == {"axon", "nginx"}
# every implemented scenario ran against the fresh axon and measured something
# (counts of requests only: nothing here is about performance)
for name in ("whoami", "register", "login", "create_room", "send", "messages", "sync_incremental",
             "sync_initial", "sync_wakeup", "push_fanout", "media_upload", "media_download", "media_thumbnail",
             "keys_claim", "to_device_fanout", "fed_send_ingest", "remote_join"):
    s = sc.get(name)
    assert s is not None, "scenario %s did not run" % name
    assert s["status"] == "ok", "%s: %s" % (name, s["reason"])
    assert s["results"], "%s: no measurement" % name
    for r in s["results"]:
        assert not r.get("error"), "%s: %s" % (name, r["error"])
        assert r["requests"] and r["requests"] > 0, (name, r)
        if r.get("tool") != "prober":
            assert not r.get("errors") and not r.get("non2xx"), (name, r.get("command"), r.get("errors"),
                                                                 r.get("non2xx"))
for name in ("sync_wakeup", "to_device_fanout"):
    w = [r for r in sc[name]["results"] if r.get("longpoll")]
    assert w and all(r["longpoll"]["woken"] == r["connections"] for r in w), [r["longpoll"] for r in w]
assert "## Headline" in open(md[0]).read()
PY
) || status=1
if [ "$status" -eq 0 ]; then
    echo "ok 1 - bench quick"
else
    echo "not ok 1 - bench quick"
    [ -n "$check" ] && echo "$check" | sed 's/^/# /'
    tail -n 40 "$out/stderr" | sed 's/^/# /'
fi
exit 0
