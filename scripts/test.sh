#!/bin/sh
# test.sh [meson test args...] -- installs what is missing, builds axon with
# AddressSanitizer and UndefinedBehaviorSanitizer, and runs every test: unit
# (cmocka), spec vectors, black-box API tests and real clients.  Ends with
# "N passed, N failed"; exits non-zero when anything failed.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh" build test
build="$root/build/test"
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" "$root" --buildtype=debug -Db_sanitize=address,undefined \
        -Dc_args=-fno-sanitize-recover=undefined >/dev/null
fi
ninja -C "$build" >/dev/null
# the release build (what scripts/run.sh and the container ship) must compile too: -O3 warns differently
if [ ! -f "$root/build/release/build.ninja" ]; then
    meson setup "$root/build/release" "$root" --buildtype=release >/dev/null
fi
ninja -C "$root/build/release" axon >/dev/null
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$root/tests/lsan.supp:print_suppressions=0"
status=0
meson test -C "$build" --print-errorlogs --num-processes "${AX_TEST_JOBS:-2}" "$@" >"$build/meson-test.out" 2>&1 || status=$?
grep -E '^ *[0-9]+/[0-9]+ ' "$build/meson-test.out" || true
/usr/bin/python3 "$root/tests/summary.py" "$build/meson-logs/testlog.json" || status=1
exit $status
