#!/bin/sh
# entrypoint.sh -- the container's entrypoint, installed as
# /usr/local/bin/axon-entrypoint.  It generates nothing and writes nothing
# (axon creates its signing key in the data dir on first start); it checks
# the two mistakes that are easy to make with a container, then execs axon
# so axon is PID 1 and gets SIGTERM from `docker stop` directly.
#
#   (no arguments) | serve [ARGS]   axon serve [ARGS], adding -c /etc/axon/axon.conf
#                                   when that file exists and no config was given
#   -c FILE ...                     the same (options for serve)
#   anything else                   an axon command: generate-config, admin ..., --version
set -eu

default_config=/etc/axon/axon.conf

die() {
    echo "axon-entrypoint: $*" >&2
    exit 2
}

case "${1:-serve}" in
serve) [ $# -gt 0 ] && shift ;;
--help | -h | --version | -V) exec axon "$@" ;;
-*) ;;
*) exec axon "$@" ;;
esac

# Which config file will axon read?  -c/--config, then AXON_CONFIG, then the default.
config=""
prev=""
for arg in "$@"; do
    case "$arg" in
    --config=*) config=${arg#--config=} ;;
    esac
    if [ "$prev" = "-c" ] || [ "$prev" = "--config" ]; then
        config=$arg
    fi
    prev=$arg
done
if [ -z "$config" ] && [ -n "${AXON_CONFIG:-}" ]; then
    config=$AXON_CONFIG
fi
if [ -z "$config" ] && [ -f "$default_config" ]; then
    config=$default_config
    set -- -c "$config" "$@"
fi

if [ -z "${AXON_SERVER_NAME:-}" ]; then
    if [ -z "$config" ]; then
        die "AXON_SERVER_NAME is not set. Set it to this homeserver's public name, the part after
the colon in @alice:example.org (docker run -e AXON_SERVER_NAME=example.org ...), or mount a
config file with server_name at $default_config. It can never change once users exist."
    fi
    if [ ! -r "$config" ]; then
        die "cannot read the config file '$config'"
    fi
    if ! grep -Eq '^[[:space:]]*server_name[[:space:]]*=[[:space:]]*[^[:space:]]' "$config"; then
        die "neither AXON_SERVER_NAME nor server_name in $config is set. Set one to this
homeserver's public name, the part after the colon in @alice:example.org. It can never change
once users exist."
    fi
fi

# Without a config file axon starts from its embedded default, which opens
# registration while every listener is on loopback (meant for trying axon on
# one machine).  Behind a proxy on the same host that would be open to the
# world, so a container decides explicitly: closed unless asked for.
if [ -z "$config" ]; then
    export AXON_ALLOW_REGISTRATION="${AXON_ALLOW_REGISTRATION:-false}"
fi

# The usual volume mistake: a host directory owned by root mounted on the data dir.
data_dir=${AXON_DATA_DIR:-/var/lib/axon}
if [ -d "$data_dir" ] && [ ! -w "$data_dir" ]; then
    die "the data directory $data_dir is not writable by uid $(id -u). If it is a host
directory, give it to that user: chown -R $(id -u):$(id -g) /path/on/host"
fi

exec axon serve "$@"
