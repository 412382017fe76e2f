#!/bin/sh
# run.sh [axon args...] -- installs what is missing, builds axon (release)
# and runs it.  With no arguments it serves the embedded default config:
# server name localhost:8008, data in ./axon-data, http://127.0.0.1:8008.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/install-deps.sh" build
if [ ! -f "$root/build/release/build.ninja" ]; then
    meson setup "$root/build/release" "$root" --buildtype=release >/dev/null
fi
ninja -C "$root/build/release" axon >/dev/null
exec "$root/build/release/axon" "$@"
