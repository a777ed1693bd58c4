#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the store tests: data and unix socket in DIR, no TCP,
# fsync off (the tests kill clients, never the server). Idempotent and quick once created.
#
#   tests/python/pg_cluster.sh start DIR   init (first time) + start; prints the libpq URL
#   tests/python/pg_cluster.sh url DIR     prints the URL of a running cluster
#   tests/python/pg_cluster.sh stop DIR    stops it if running; DIR may then be deleted
#
#   export SZTP_TEST_POSTGRES_URL="$(tests/python/pg_cluster.sh start build/pg)"
#
# Run as root, the cluster runs as the `postgres` user (DIR is chowned to it, and every parent
# of DIR must be searchable by it); run as another user, it runs as that user.
# Environment: SZTP_PG_PORT (default 54329; only names the socket file), PG_BINDIR (default:
# the newest /usr/lib/postgresql/*/bin).
set -euo pipefail

usage() {
    echo "usage: $0 start|url|stop DIR" >&2
    exit 2
}

[ $# -eq 2 ] || usage
action=$1
mkdir -p "$2"
dir=$(cd "$2" && pwd)
data=$dir/data
port=${SZTP_PG_PORT:-54329}
bindir=${PG_BINDIR:-$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)}
if [ -z "$bindir" ] || [ ! -x "$bindir/pg_ctl" ]; then
    echo "$0: PostgreSQL server binaries not found; apt-get install postgresql (or set PG_BINDIR)" >&2
    exit 1
fi

# The database user need not be able to enter the directory this was started from (a checkout
# under a 0700 parent): every path below is absolute.
cd /

if [ "$(id -u)" -eq 0 ]; then
    db_user=postgres
    as_db_user() { runuser -u postgres -- "$@"; }
else
    db_user=$(id -un)
    as_db_user() { "$@"; }
fi

# Unix socket paths are limited to 107 bytes.
socket=$dir/.s.PGSQL.$port
if [ ${#socket} -gt 107 ]; then
    echo "$0: socket path $socket is too long; use a shorter DIR" >&2
    exit 1
fi

url="postgresql:///postgres?host=$dir&port=$port&user=$db_user"

running() {
    [ -f "$data/PG_VERSION" ] && as_db_user "$bindir/pg_ctl" status -D "$data" >/dev/null 2>&1
}

case $action in
start)
    if [ ! -f "$data/PG_VERSION" ]; then
        [ "$(id -u)" -ne 0 ] || chown postgres: "$dir"
        as_db_user "$bindir/initdb" -D "$data" -U "$db_user" -A trust -E UTF8 --no-sync >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; exit 1; }
    fi
    if ! running; then
        as_db_user "$bindir/pg_ctl" start -w -t 30 -D "$data" -l "$dir/server.log" \
            -o "-k '$dir' -p $port -h '' -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
            >/dev/null || { tail -n 20 "$dir/server.log" >&2; exit 1; }
    fi
    echo "$url"
    ;;
url)
    running || { echo "$0: no cluster running in $dir" >&2; exit 1; }
    echo "$url"
    ;;
stop)
    if running; then
        as_db_user "$bindir/pg_ctl" stop -w -m fast -D "$data" >/dev/null
    fi
    ;;
*)
    usage
    ;;
esac
