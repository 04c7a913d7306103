#!/usr/bin/env bash
# A throwaway PostgreSQL for tests: a cluster in a directory of its own,
# listening on a Unix socket only (no TCP port), owned by an unprivileged
# user (nobody when run as root: PostgreSQL refuses root), fsync off.
#
#   tests/pg.sh start DIR   creates DIR/{data,sock}, starts the server and
#                           prints the URL of its database "mesh" (user mesh,
#                           trust authentication over the socket)
#   tests/pg.sh stop DIR    stops it and removes DIR
#   tests/pg.sh url DIR     prints the URL again
#   tests/pg.sh createdb DIR NAME   a fresh database; prints its URL
#
# Exit 77 (skip) when Debian's postgresql package is not installed.
set -euo pipefail

bindir() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && { echo "$d"; return 0; }
    done
    return 1
}

BIN=$(bindir) || { echo "pg.sh: PostgreSQL is not installed (make deps installs it)" >&2; exit 77; }
cmd=${1:-}
DIR=${2:-}
[ -n "$cmd" ] && [ -n "$DIR" ] || { echo "usage: $0 start|stop|url|createdb DIR [NAME]" >&2; exit 2; }

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u nobody -- "$@"
    else
        "$@"
    fi
}

url() { echo "postgresql://mesh@/${1:-mesh}?host=$DIR/sock"; }

case "$cmd" in
start)
    mkdir -p "$DIR"
    [ "$(id -u)" = 0 ] && chown nobody: "$DIR"
    chmod 0700 "$DIR"
    as_owner mkdir -p "$DIR/sock"
    as_owner "$BIN/initdb" -D "$DIR/data" -U mesh -A trust --no-sync -E UTF8 \
        --locale=C >"$DIR/initdb.log" 2>&1 ||
        { cat "$DIR/initdb.log" >&2; exit 1; }
    # The socket's directory must be reachable by the tests' processes
    # (root, or nobody for the servers).
    chmod 0755 "$DIR"
    as_owner "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/server.log" -w -t 60 \
        -o "-c listen_addresses='' -k $DIR/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >/dev/null ||
        { cat "$DIR/server.log" >&2; exit 1; }
    as_owner "$BIN/createdb" -h "$DIR/sock" -U mesh mesh
    url
    ;;
stop)
    [ -d "$DIR/data" ] && as_owner "$BIN/pg_ctl" -D "$DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
url)
    url
    ;;
createdb)
    as_owner "$BIN/createdb" -h "$DIR/sock" -U mesh "$3"
    url "$3"
    ;;
*)
    echo "usage: $0 start|stop|url|createdb DIR [NAME]" >&2
    exit 2
    ;;
esac
