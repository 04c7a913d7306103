#!/usr/bin/env bash
# bench/control_scale.sh BUILD_DIR [--sizes "250 500 1000 2000"] [--out FILE]
#
# The control plane at scale: for each N, a fresh mesh-control (its own
# SQLite store, on loopback) and N simulated nodes in one process
# (build/tests/ctl-scale: each a full control client with its own keys and
# TCP connection) that register with one reusable token and stream maps
# until every node's map holds the other N-1. Reports per N: time to
# register all, time until every map is complete, bytes and messages the
# nodes received, the size of one node's full map, mesh-control's peak and
# final RSS, and its own figures for building a full map and a broadcast
# (from its exit summary), and, once converged, how long one endpoint change
# takes to reach every node and how many bytes the nodes receive for it. Writes a Markdown table to FILE (default
# bench/results/control-scale.md). No root needed; as root the server runs
# as nobody.
set -u
BUILD=""
SIZES="250 500 1000 2000"
OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --sizes) SIZES=$2; shift ;;
    --out) OUT=$2; shift ;;
    -*) echo "usage: $0 BUILD_DIR [--sizes \"N ...\"] [--out FILE]" >&2; exit 2 ;;
    *) BUILD=$1 ;;
    esac
    shift
done
[ -n "$BUILD" ] || { echo "usage: $0 BUILD_DIR [--sizes \"N ...\"] [--out FILE]" >&2; exit 2; }
BUILD=$(cd "$BUILD" && pwd) || exit 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$OUT" ] || OUT=$ROOT/bench/results/control-scale.md
MC=$BUILD/mesh-control
SCALE=$BUILD/tests/ctl-scale
for b in "$MC" "$SCALE"; do
    [ -x "$b" ] || { echo "control_scale: $b missing (run make)" >&2; exit 2; }
done

TMP=$(mktemp -d /tmp/mesh-scale.XXXXXX)
chmod 0755 "$TMP"
RUN=()
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1; then
    cp "$MC" "$TMP/mesh-control" && chmod 0755 "$TMP/mesh-control"
    MC=$TMP/mesh-control
    RUN=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
    "${RUN[@]}" "$MC" --version >/dev/null 2>&1 || { RUN=(); MC=$BUILD/mesh-control; }
fi
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null

rss() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null; }
port_free() { [ -z "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]; }

ROWS=()
FAILED=0
PORT=21800
for N in $SIZES; do
    while ! port_free $PORT; do PORT=$((PORT + 1)); done
    D=$TMP/data-$N
    mkdir -p "$D" && [ ${#RUN[@]} -gt 0 ] && chown nobody "$D"
    "${RUN[@]}" "$MC" --data "$D/c" init --listen "127.0.0.1:$PORT" >/dev/null || { echo "init failed"; exit 1; }
    "${RUN[@]}" "$MC" --data "$D/c" serve 2>"$D/serve.log" &
    SERVER_PID=$!
    for _ in $(seq 100); do port_free $PORT || break; sleep 0.05; done
    RSS0=$(rss $SERVER_PID VmRSS)
    TOKEN=$("${RUN[@]}" "$MC" --data "$D/c" token --reusable)
    echo "control_scale: N=$N ..." >&2
    LINE=$("$SCALE" --token "$TOKEN" -n "$N" --rate 500 --timeout 600 2>"$D/scale.err")
    RC=$?
    HWM=$(rss $SERVER_PID VmHWM)
    RSS1=$(rss $SERVER_PID VmRSS)
    kill -TERM $SERVER_PID
    wait $SERVER_PID 2>/dev/null
    SERVER_PID=""
    DBSIZE=$(du -k "$D/c/control.db" 2>/dev/null | cut -f1)
    # mesh-control's exit summary carries its own timings (key=value words).
    SUMMARY=$(grep -E "last_full_ms|full_ms" "$D/serve.log" | tail -n 1)
    get() { echo "$LINE $SUMMARY" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { v = $2 } END { print v }'; }
    echo "  $LINE" >&2
    [ -n "$SUMMARY" ] && echo "  server: $SUMMARY" >&2
    if [ $RC -ne 0 ]; then
        FAILED=1
        tail -n 5 "$D/scale.err" "$D/serve.log" >&2
    fi
    ROWS+=("| $N | $(get registered_s) | $(get converged_s) | $(get map_bytes) | $(get last_full_ms) | $(get last_broadcast_ms) | $(get maps_full) | $(get maps_delta) | $(( $(get bytes_in) / 1048576 )) | $(get change_ms) | $(get change_bytes) | $((RSS0 / 1024)) | $((HWM / 1024)) | $((RSS1 / 1024)) | $((DBSIZE / 1024)) | $([ $RC -eq 0 ] && echo yes || echo NO) |")
    PORT=$((PORT + 1))
done

{
    echo "# Control plane at scale"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; \`bench/control_scale.sh\`."
    echo "N simulated nodes (one process, one TCP connection and full control client"
    echo "each) join one fresh mesh-control on loopback at 500 per second with a"
    echo "reusable key; every node keeps its map stream open until all maps hold N-1 peers."
    echo
    echo "| N | register all (s) | all maps complete (s) | one full map (bytes) | build a full map (ms) | last broadcast (ms) | full maps sent | deltas sent | MiB received by nodes | one change reaches all (ms) | bytes received for one change | server RSS idle (MiB) | server peak RSS (MiB) | server RSS after (MiB) | store (MiB) | converged |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"
    printf '%s\n' "${ROWS[@]}"
} >"$OUT"
cat "$OUT"
exit $FAILED
