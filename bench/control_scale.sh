#!/usr/bin/env bash
# bench/control_scale.sh BUILD_DIR [--sizes "2000 5000 10000"] [--repeat K]
#                       [--rate R] [--quick] [--out FILE]
#
# The control plane at scale: for each N, a fresh mesh-control (its own
# SQLite store and admin API, on loopback) and N simulated nodes in one
# process (build/tests/ctl-scale: each with its own keys and TCP
# connection; 100 full control clients, the rest light nodes that speak the
# same protocol and track their map as a set of ids). All N start at once (a
# join storm; --rate R: R per second instead) and stream maps until every
# node's map holds the other N-1. Then node 0 moves its endpoint, and an
# admin renames node 0 through the HTTP API; each change is timed until every
# other node's map shows it. Records per N: time to register all, time until
# every map is complete, each change's latency and the bytes the nodes
# received for it, the server's CPU (user + system) for the storm and for each
# change, its RSS when converged and at peak, full maps and deltas sent,
# reconnects and connections the server closed as stalled; then how each
# figure grows per doubling of N. Writes Markdown to FILE (default
# bench/results/control-scale.md, or $BENCH_RESULTS/control-scale.md).
#
# Default sizes: 2000 5000 10000; CTL_SCALE_20K=1 adds 20000 (about ten
# minutes more), --quick runs 2000 only. Every node takes a file descriptor
# in the server and in ctl-scale: an N above what `ulimit -Hn` allows is run
# at the largest N that fits, and the table says so. CTL_SCALE_PERF=1 adds
# the server's top symbols (perf) for each N; CTL_SCALE_ARGS adds words to
# ctl-scale's command line (CTL_SCALE_ARGS=--no-zstd: light nodes ask for
# plain JSON maps, as nodes from before compressed maps). `make bench BENCH_ARGS="--only
# control"` runs it as a part of the suite. No root needed; as root the
# server runs as nobody.
set -u
BUILD=""
SIZES="2000 5000 10000"
OUT=""
REPEAT=1
RATE=0
QUICK=0
usage() {
    echo "usage: $0 BUILD_DIR [--sizes \"N ...\"] [--repeat K] [--rate R] [--quick] [--out FILE]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
    --sizes) [ $# -ge 2 ] || usage; SIZES=$2; shift ;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift ;;
    --repeat) [ $# -ge 2 ] || usage; REPEAT=$2; shift ;;
    --rate) [ $# -ge 2 ] || usage; RATE=$2; shift ;;
    --quick) QUICK=1 ;;
    --runs | --secs) shift ;; # the suite's options; one run per N here
    -*) usage ;;
    *) BUILD=$1 ;;
    esac
    shift
done
[ -n "$BUILD" ] || usage
[ $QUICK = 1 ] && SIZES="2000"
[ -n "${CTL_SCALE_20K:-}" ] && [ $QUICK = 0 ] && SIZES="$SIZES 20000"
BUILD=$(cd "$BUILD" && pwd) || exit 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -n "$OUT" ] || OUT=${BENCH_RESULTS:-$ROOT/bench/results}/control-scale.md
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
PERF_PID=""
cleanup() {
    [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null && wait "$PERF_PID" 2>/dev/null
    [ -n "$SERVER_PID" ] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)

port_free() { [ -z "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]; }

ROWS=()      # the table
RECS=()      # "N key=value ..." per run, for the growth table
PERFS=()
FAILED=0
PORT=21800
for WANT in $SIZES; do
    N=$WANT
    NOTE=""
    # the server holds N connections and ~20 more descriptors; so does ctl-scale
    # The server keeps 64 descriptors for itself and 64 for admin
    # connections (serve clamps its connection limit to fit), and a few
    # more go to the store and listeners.
    if [ "$NOFILE" != unlimited ] && [ $((N + 192)) -gt "$NOFILE" ]; then
        N=$((NOFILE - 192))
        NOTE=" (fd limit $NOFILE)"
    fi
    for run in $(seq "$REPEAT"); do
        while ! port_free $PORT || ! port_free $((PORT + 1)); do PORT=$((PORT + 2)); done
        D=$TMP/data-$N-$run
        mkdir -p "$D" && [ ${#RUN[@]} -gt 0 ] && chown nobody "$D"
        "${RUN[@]}" "$MC" --data "$D/c" init --listen "127.0.0.1:$PORT" >/dev/null ||
            { echo "control_scale: init failed" >&2; exit 1; }
        KEY=$("${RUN[@]}" "$MC" --data "$D/c" apikeys create bench 2>/dev/null)
        "${RUN[@]}" "$MC" --data "$D/c" serve --admin-listen "127.0.0.1:$((PORT + 1))" \
            --max-conns $((N + 100)) 2>"$D/serve.log" &
        SERVER_PID=$!
        for _ in $(seq 100); do port_free $PORT || break; sleep 0.05; done
        TOKEN=$("${RUN[@]}" "$MC" --data "$D/c" token --reusable 2>/dev/null)
        if [ -n "${CTL_SCALE_PERF:-}" ] && command -v perf >/dev/null; then
            perf record -q -g -o "$D/perf.data" -p $SERVER_PID >/dev/null 2>&1 &
            PERF_PID=$!
        fi
        echo "control_scale: N=$N$NOTE run $run ($(date -u +%H:%M:%S)) ..." >&2
        # shellcheck disable=SC2086 # CTL_SCALE_ARGS: extra words for ctl-scale
        LINE=$("$SCALE" --token "$TOKEN" -n "$N" --rate "$RATE" --timeout 1500 ${CTL_SCALE_ARGS:-} \
            --server-pid $SERVER_PID --admin "127.0.0.1:$((PORT + 1))" --api-key "$KEY" \
            2>"$D/scale.err")
        RC=$?
        if [ -n "$PERF_PID" ]; then
            kill -INT $PERF_PID 2>/dev/null
            wait $PERF_PID 2>/dev/null
            PERF_PID=""
            PERFS+=("N=$N run $run" "$(perf report -q -i "$D/perf.data" --no-children --stdio \
                --sort dso,symbol 2>/dev/null | grep -E '^ +[0-9]' | head -n 15)")
        fi
        kill -TERM $SERVER_PID
        wait $SERVER_PID 2>/dev/null
        SERVER_PID=""
        # mesh-control's exit summary: its own counters (key=value words)
        SUMMARY=$(grep -E "slow_closed" "$D/serve.log" | tail -n 1)
        get() { echo "$LINE $SUMMARY" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { v = $2 } END { print v }'; }
        echo "  $LINE" >&2
        echo "  server: ${SUMMARY#*timings }" >&2
        if [ $RC -ne 0 ]; then
            FAILED=1
            tail -n 5 "$D/scale.err" "$D/serve.log" >&2
        fi
        RECS+=("$N $LINE $SUMMARY")
        ROWS+=("| $N$NOTE | $(get registered_s) | $(get converged_s) | $(get srv_cpu_storm_s) | $(( $(get srv_rss_conv_kib) / 1024 )) | $(( $(get srv_hwm_kib) / 1024 )) | $(( $(get bytes_in) / 1048576 )) | $(get maps_full) | $(get maps_delta) | $(get reconnects) | $(get slow_closed) | $(get change_ms) | $(get change_bytes) | $(get srv_cpu_change_ms) | $(get rename_ms) | $(get rename_bytes) | $(get srv_cpu_rename_ms) | $(get map_bytes) | $([ $RC -eq 0 ] && echo yes || echo NO) |")
        PORT=$((PORT + 2))
    done
done

# Growth per doubling between successive sizes: (v2/v1)^(1/log2(N2/N1)),
# from the first run of each N. 2.0 is linear, 4.0 quadratic, 1.0 flat.
GROWTH=$(printf '%s\n' "${RECS[@]}" | awk '
    function val(line, k,    i, n, a, kv) {
        n = split(line, a, " ")
        for (i = 2; i <= n; i++) { split(a[i], kv, "="); if (kv[1] == k) return kv[2] + 0 }
        return 0
    }
    {
        n = $1
        if (n in seen) next
        seen[n] = 1; ns[++cnt] = n; line[n] = $0
    }
    END {
        split("registered_s converged_s srv_cpu_storm_s srv_hwm_kib bytes_in change_ms change_bytes rename_ms rename_bytes srv_cpu_change_ms", keys, " ")
        split("register all|all maps complete|server CPU, storm|server peak RSS|bytes to nodes, storm|endpoint change latency|bytes per endpoint change|rename latency|bytes per rename|server CPU per endpoint change", names, "|")
        for (i = 2; i <= cnt; i++) {
            a = ns[i - 1]; b = ns[i]
            printf "| %s → %s ", a, b
            for (k = 1; k <= 10; k++) {
                x = val(line[a], keys[k]); y = val(line[b], keys[k])
                if (x > 0 && y > 0) printf "| %.2f ", exp(log(y / x) * log(2) / log(b / a))
                else printf "| - "
            }
            printf "|\n"
        }
    }')

{
    echo "# Control plane at scale"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by the server and the simulated nodes; \`bench/control_scale.sh\`$([ $REPEAT -gt 1 ] && echo ", $REPEAT runs per N")."
    echo "N simulated nodes (one ctl-scale process: 100 full control clients, the rest light"
    echo "nodes that speak the same protocol and track their map as a set of ids; each its"
    echo "own keys and TCP connection) join one fresh mesh-control on loopback"
    echo "$([ "$RATE" = 0 ] && echo "all at once (a join storm)" || echo "at $RATE per second") with a reusable key. Then node 0 moves its endpoint,"
    echo "and the admin API renames node 0; each change is timed until every other node's map shows it."
    echo
    echo "| N | register all (s) | all maps complete (s) | server CPU, storm (s) | server RSS converged (MiB) | server peak RSS (MiB) | MiB received by nodes | full maps sent | deltas sent | node reconnects | closed as stalled | endpoint change reaches all (ms) | bytes received for it | server CPU for it (ms) | rename reaches all (ms) | bytes received for it | server CPU for it (ms) | one full map (bytes) | converged |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"
    printf '%s\n' "${ROWS[@]}"
    if [ -n "$GROWTH" ]; then
        echo
        echo "Growth per doubling of N (2.00 = linear, 4.00 = quadratic):"
        echo
        echo "| sizes | register all | all maps complete | server CPU, storm | server peak RSS | bytes to nodes, storm | endpoint change latency | bytes per endpoint change | rename latency | bytes per rename | server CPU per endpoint change |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
        echo "$GROWTH"
    fi
    for ((i = 0; i < ${#PERFS[@]}; i += 2)); do
        echo
        echo "Where the server's CPU went, ${PERFS[i]} (perf, whole run, top symbols):"
        echo
        echo '```'
        echo "${PERFS[i + 1]}"
        echo '```'
    done
} >"$OUT.new"
# The notes below the generated part (interpretation, comparison) are kept.
if [ -f "$OUT" ] && grep -q '^<!-- notes -->' "$OUT"; then
    sed -n '/^<!-- notes -->/,$p' "$OUT" >>"$OUT.new"
fi
mv "$OUT.new" "$OUT"
cat "$OUT"
exit $FAILED
