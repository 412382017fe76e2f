#!/usr/bin/python3
"""summary.py TESTLOG -- counts the TAP results in meson's testlog.json and
prints every failure and the final line "N passed, N failed".  A test program
that failed without reporting a failing case (a crash, a timeout, a
sanitizer abort) counts as one failure.  Exit status 1 when anything failed."""
import json
import re
import sys

passed = failed = skipped = 0
failures = []
with open(sys.argv[1]) as f:
    for line in f:
        t = json.loads(line)
        out = t.get("stdout") or ""
        oks = re.findall(r"^ok \d+ .*$", out, re.M)
        bad = re.findall(r"^not ok \d+ .*$", out, re.M)
        skips = [l for l in oks if "# SKIP" in l or "# skip" in l]
        passed += len(oks) - len(skips)
        skipped += len(skips)
        failed += len(bad)
        failures += ["%s: %s" % (t["name"], b) for b in bad]
        if t.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL") and not bad:
            failed += 1
            failures.append("%s: %s (exit %s) without a failing case" % (t["name"], t.get("result"),
                                                                         t.get("returncode")))
for f_ in failures:
    print("FAILED " + f_)
if skipped:
    print("%d skipped" % skipped)
print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
