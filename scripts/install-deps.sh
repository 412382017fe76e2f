#!/bin/sh
# install-deps.sh PROFILE... -- installs the Debian 12 packages axon needs,
# only those missing.  Shared by scripts/run.sh, scripts/test.sh, CI and
# docker/Dockerfile, so one list is proved everywhere.
#
#   build    compiler, meson and the -dev libraries
#   runtime  the shared libraries the axon binary needs (the container's runtime stage)
#   test     what the test suite drives: cmocka, Python libs, matrix-nio with olm (E2EE), npm (which
#            installs matrix-js-sdk and Node 22 for tests/clients/test_jssdk.py), curl, openssl, nginx,
#            and the load generators of the benchmark smoke test (bench/run --quick)
#   bench    load generators, the nginx baseline and gnuplot for the full benchmark, and what its
#            synthetic federation peer signs and serves with (python3-nacl, -signedjson, openssl)
set -eu

pkgs=""
for profile in "$@"; do
    case "$profile" in
    build)
        pkgs="$pkgs gcc libc6-dev pkg-config meson ninja-build libh2o-evloop-dev liblmdb-dev libsodium-dev
              libssl-dev libjansson-dev libinih-dev libvips-dev libc-ares-dev"
        ;;
    runtime)
        pkgs="$pkgs libh2o-evloop0.13 liblmdb0 libsodium23 libssl3 libjansson4 libinih1 libvips42 libc-ares2 ca-certificates curl"
        ;;
    test)
        pkgs="$pkgs libcmocka-dev python3 python3-yaml python3-jsonschema python3-signedjson python3-nacl
              python3-matrix-nio python3-olm python3-pil npm curl openssl nginx lmdb-utils wrk apache2-utils
              nghttp2-client"
        ;;
    bench)
        pkgs="$pkgs python3 apache2-utils wrk nginx nghttp2-client gnuplot-nox procps python3-nacl
              python3-signedjson openssl"
        ;;
    *)
        echo "install-deps.sh: unknown profile '$profile' (build, runtime, test, bench)" >&2
        exit 2
        ;;
    esac
done

missing=""
for p in $pkgs; do
    # any nginx flavour will do (nginx-light, nginx-core, ...)
    if [ "$p" = nginx ] && [ -x /usr/sbin/nginx ]; then
        continue
    fi
    # any npm will do: a nodejs from elsewhere (NodeSource's) bundles npm and conflicts with
    # Debian's npm package, which apt would otherwise install by removing that nodejs
    if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then
        continue
    fi
    case " $missing " in *" $p "*) continue ;; esac
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "installing:$missing" >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=sudo
    else
        echo "install-deps.sh: need root (or sudo) to install:$missing" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
