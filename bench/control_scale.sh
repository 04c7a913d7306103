#!/usr/bin/env bash
# bench/control_scale.sh BUILD_DIR [--sizes "2000 5000 10000"] [--repeat K]
#                       [--rate R] [--quick] [--out FILE]
#                       [--stores "sqlite postgresql"] [--servers "1 2"]
#
# The control plane at scale: for each store (SQLite, PostgreSQL), number
# of servers (one, two) and N, a fresh mesh (its own store and admin API,
# on loopback) served by that many mesh-control processes, and N simulated
# nodes in one
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
# bench/results/control-scale.md, or $BENCH_RESULTS/control-scale.md): a
# table comparing the stores and servers, then per store and number of
# servers the table and growth this script always wrote.
#
# Two servers: both `serve` on the same --data DIR (init --listen A,B),
# the simulated nodes split between them (node i on server i mod 2; node 0,
# whose endpoint moves, and the admin API the rename goes through are the
# first server's): a change reaches the second server's nodes through the
# store (PostgreSQL: LISTEN/NOTIFY; SQLite: the servers' poll). The srv_
# figures are sums over both servers. PostgreSQL: one throwaway cluster
# (tests/pg.sh, a Unix socket, fsync off as in the tests) for the whole
# run, a fresh database per mesh; its CPU (the postmaster and its backends)
# and memory (their Pss) are reported beside the servers'. Without
# PostgreSQL installed its rows are skipped with a note.
#
# Default sizes: 2000 5000 10000; CTL_SCALE_20K=1 adds 20000 (about ten
# minutes more), --quick runs 1000 only (on every store and number of
# servers: about a minute). Every node takes a file descriptor
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
STORES="sqlite postgresql"
SERVERS="1 2"
usage() {
    echo "usage: $0 BUILD_DIR [--sizes \"N ...\"] [--repeat K] [--rate R] [--quick] [--out FILE]" \
        "[--stores \"sqlite postgresql\"] [--servers \"1 2\"]" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
    --sizes) [ $# -ge 2 ] || usage; SIZES=$2; shift ;;
    --out) [ $# -ge 2 ] || usage; OUT=$2; shift ;;
    --repeat) [ $# -ge 2 ] || usage; REPEAT=$2; shift ;;
    --rate) [ $# -ge 2 ] || usage; RATE=$2; shift ;;
    --stores) [ $# -ge 2 ] || usage; STORES=$2; shift ;;
    --servers) [ $# -ge 2 ] || usage; SERVERS=$2; shift ;;
    --quick) QUICK=1 ;;
    --runs | --secs) shift ;; # the suite's options; one run per N here
    -*) usage ;;
    *) BUILD=$1 ;;
    esac
    shift
done
[ -n "$BUILD" ] || usage
[ $QUICK = 1 ] && SIZES="1000"
for st in $STORES; do
    case $st in sqlite | postgresql) ;; *) echo "control_scale: --stores: sqlite or postgresql, not '$st'" >&2; exit 2 ;; esac
done
for k in $SERVERS; do
    case $k in 1 | 2) ;; *) echo "control_scale: --servers: 1 or 2, not '$k'" >&2; exit 2 ;; esac
done
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
SERVER_PIDS=()
PERF_PID=""
PGDIR=""
cleanup() {
    local pid
    [ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null && wait "$PERF_PID" 2>/dev/null
    for pid in "${SERVER_PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    done
    [ -n "$PGDIR" ] && "$ROOT/tests/pg.sh" stop "$PGDIR" >/dev/null 2>&1
    rm -rf "$TMP"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)

port_free() { [ -z "$(ss -ltnH "sport = :$1" 2>/dev/null)" ]; }

# pg_start : the throwaway cluster, once (PGDIR; PG_NOTE says why not)
PG_NOTE=""
pg_start() {
    [ -n "$PGDIR" ] && return 0
    [ -n "$PG_NOTE" ] && return 1
    local out rc
    out=$("$ROOT/tests/pg.sh" start "$TMP/pg" 2>&1)
    rc=$?
    if [ $rc -ne 0 ]; then
        "$ROOT/tests/pg.sh" stop "$TMP/pg" >/dev/null 2>&1
        if [ $rc = 77 ]; then
            PG_NOTE="PostgreSQL is not installed (make deps installs it): its rows were not run"
        else
            PG_NOTE="tests/pg.sh start failed: $(echo "$out" | tail -n 2 | tr '\n' ' ')"
            FAILED=1
        fi
        echo "control_scale: $PG_NOTE" >&2
        return 1
    fi
    PGDIR=$TMP/pg
}
# The postmaster's pid (the first line of postmaster.pid).
pg_pid() { head -n 1 "$PGDIR/data/postmaster.pid" 2>/dev/null; }

store_name() { [ "$1" = sqlite ] && echo SQLite || echo PostgreSQL; }
servers_name() { [ "$1" = 1 ] && echo "one server" || echo "two servers"; }

declare -A ROWS=() # config -> the table's rows (config: "store/servers")
declare -A RECS=() # config -> "N key=value ..." per run, for the growth table
CONFIGS=()
CMP=() # the comparison table's rows
PERFS=()
FAILED=0
PORT=21800
for STORE in $STORES; do
  if [ "$STORE" = postgresql ] && ! pg_start; then
      continue
  fi
  for K in $SERVERS; do
    CFG="$STORE/$K"
    CONFIGS+=("$CFG")
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
        # server j (0-based) listens on PORT + 2j, its admin API on PORT + 2j + 1
        while :; do
            ok=1
            for ((j = 0; j < 2 * K; j++)); do port_free $((PORT + j)) || ok=0; done
            [ $ok = 1 ] && break
            PORT=$((PORT + 2 * K))
        done
        LISTEN="127.0.0.1:$PORT"
        [ "$K" = 2 ] && LISTEN="$LISTEN,127.0.0.1:$((PORT + 2))"
        D=$TMP/data-$STORE-$K-$N-$run
        mkdir -p "$D" && [ ${#RUN[@]} -gt 0 ] && chown nobody "$D"
        STORE_ARGS=()
        DB_ARGS=()
        if [ "$STORE" = postgresql ]; then
            URL=$("$ROOT/tests/pg.sh" createdb "$PGDIR" "m_${K}_${N}_$run" 2>"$D/createdb.err") ||
                { echo "control_scale: createdb failed: $(cat "$D/createdb.err")" >&2; exit 1; }
            STORE_ARGS=(--store "$URL")
            DB_ARGS=(--db-pid "$(pg_pid)")
        fi
        "${RUN[@]}" "$MC" --data "$D/c" init "${STORE_ARGS[@]}" --listen "$LISTEN" >"$D/init.log" 2>&1 ||
            { echo "control_scale: init failed: $(tail -n 3 "$D/init.log")" >&2; exit 1; }
        KEY=$("${RUN[@]}" "$MC" --data "$D/c" apikeys create bench 2>/dev/null)
        SERVER_PIDS=()
        CONNECT=""
        for ((j = 0; j < K; j++)); do
            P=$((PORT + 2 * j))
            LARGS=()
            [ "$K" = 2 ] && LARGS=(--listen "127.0.0.1:$P")
            "${RUN[@]}" "$MC" --data "$D/c" serve "${LARGS[@]}" --admin-listen "127.0.0.1:$((P + 1))" \
                --max-conns $((N + 100)) 2>"$D/serve$j.log" &
            SERVER_PIDS+=($!)
            CONNECT="$CONNECT${CONNECT:+,}127.0.0.1:$P"
        done
        for ((j = 0; j < K; j++)); do
            for _ in $(seq 100); do port_free $((PORT + 2 * j)) || break; sleep 0.05; done
        done
        TOKEN=$("${RUN[@]}" "$MC" --data "$D/c" token --reusable 2>/dev/null)
        PIDS=$(IFS=,; echo "${SERVER_PIDS[*]}")
        if [ -n "${CTL_SCALE_PERF:-}" ] && command -v perf >/dev/null; then
            perf record -q -g -o "$D/perf.data" -p "$PIDS" >/dev/null 2>&1 &
            PERF_PID=$!
        fi
        echo "control_scale: $(store_name "$STORE"), $(servers_name "$K"), N=$N$NOTE run $run ($(date -u +%H:%M:%S)) ..." >&2
        # shellcheck disable=SC2086 # CTL_SCALE_ARGS: extra words for ctl-scale
        LINE=$("$SCALE" --token "$TOKEN" -n "$N" --rate "$RATE" --timeout 1500 ${CTL_SCALE_ARGS:-} \
            --connect "$CONNECT" --server-pid "$PIDS" "${DB_ARGS[@]}" \
            --admin "127.0.0.1:$((PORT + 1))" --api-key "$KEY" 2>"$D/scale.err")
        RC=$?
        if [ -n "$PERF_PID" ]; then
            kill -INT $PERF_PID 2>/dev/null
            wait $PERF_PID 2>/dev/null
            PERF_PID=""
            PERFS+=("$(store_name "$STORE"), $(servers_name "$K"), N=$N run $run" "$(perf report -q -i "$D/perf.data" --no-children --stdio \
                --sort dso,symbol 2>/dev/null | grep -E '^ +[0-9]' | head -n 15)")
        fi
        for pid in "${SERVER_PIDS[@]}"; do kill -TERM "$pid"; done
        for pid in "${SERVER_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
        SERVER_PIDS=()
        # mesh-control's exit summary: its own counters (key=value words),
        # summed over the servers
        SUMMARY=$(for ((j = 0; j < K; j++)); do grep -E "slow_closed" "$D/serve$j.log" | tail -n 1; done |
            tr ' ' '\n' | awk -F= '$2 ~ /^[0-9]+$/ { v[$1] += $2; if (!($1 in o)) { o[$1] = ++n; k[n] = $1 } }
                END { for (i = 1; i <= n; i++) printf "%s=%s ", k[i], v[k[i]] }')
        get() { echo "$LINE $SUMMARY" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k { v = $2 } END { print v }'; }
        # div KEY DIVISOR: an integer figure divided, "-" when missing
        div() { local v; v=$(get "$1"); [[ $v =~ ^[0-9]+$ ]] && echo $((v / $2)) || echo -; }
        mib() { div "$1" 1024; }
        echo "  $LINE" >&2
        echo "  server(s): $SUMMARY" >&2
        if [ $RC -ne 0 ]; then
            FAILED=1
            tail -n 5 "$D/scale.err" "$D"/serve*.log >&2
        fi
        RECS[$CFG]+="$N $LINE $SUMMARY"$'\n'
        ROWS[$CFG]+="| $N$NOTE | $(get registered_s) | $(get converged_s) | $(get srv_cpu_storm_s) | $(mib srv_rss_conv_kib) | $(mib srv_hwm_kib) | $(div bytes_in 1048576) | $(get maps_full) | $(get maps_delta) | $(get reconnects) | $(get slow_closed) | $(get change_ms) | $(get change_bytes) | $(get srv_cpu_change_ms) | $(get rename_ms) | $(get rename_bytes) | $(get srv_cpu_rename_ms) | $(get map_bytes) | $([ $RC -eq 0 ] && echo yes || echo NO) |"$'\n'
        if [ "$STORE" = postgresql ]; then
            DBF="$(get db_cpu_storm_s) | $(get db_cpu_change_ms) | $(get db_cpu_rename_ms) | $(mib db_mem_conv_kib)"
        else
            DBF="- | - | - | -"
        fi
        CMP+=("| $(store_name "$STORE") | $K | $N$NOTE | $(get registered_s) | $(get converged_s) | $(get change_ms) | $(get rename_ms) | $(get srv_cpu_storm_s) | $(get srv_cpu_change_ms) | $(get srv_cpu_rename_ms) | $(mib srv_hwm_kib) | $DBF | $([ $RC -eq 0 ] && echo yes || echo NO) |")
        PORT=$((PORT + 2 * K))
    done
    done
  done
done

# Growth per doubling between successive sizes: (v2/v1)^(1/log2(N2/N1)),
# from the first run of each N. 2.0 is linear, 4.0 quadratic, 1.0 flat.
growth() {
    printf '%s' "$1" | awk '
    function val(line, k,    i, n, a, kv) {
        n = split(line, a, " ")
        for (i = 2; i <= n; i++) { split(a[i], kv, "="); if (kv[1] == k) return kv[2] + 0 }
        return 0
    }
    NF > 0 {
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
    }'
}

{
    echo "# Control plane at scale"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores shared by the server(s), the simulated nodes$([ -n "$PGDIR" ] && echo " and PostgreSQL"); \`bench/control_scale.sh\`$([ $REPEAT -gt 1 ] && echo ", $REPEAT runs per N")."
    echo "N simulated nodes (one ctl-scale process: 100 full control clients, the rest light"
    echo "nodes that speak the same protocol and track their map as a set of ids; each its"
    echo "own keys and TCP connection) join one fresh mesh on loopback"
    echo "$([ "$RATE" = 0 ] && echo "all at once (a join storm)" || echo "at $RATE per second") with a reusable key. Then node 0 moves its endpoint,"
    echo "and the admin API renames node 0; each change is timed until every other node's map shows it."
    echo "With two servers both serve one --data DIR, node i connects to server i mod 2, node 0 and"
    echo "the admin API are on the first: the second's nodes get each change through the store"
    echo "(PostgreSQL: LISTEN/NOTIFY; SQLite: each server's poll). Server figures are summed over the servers."
    [ -n "$PGDIR" ] && echo "PostgreSQL: one throwaway cluster (tests/pg.sh: Unix socket, fsync off), a fresh database per mesh; its CPU is the postmaster's and its backends', its memory their Pss."
    [ -n "$PG_NOTE" ] && { echo; echo "Note: $PG_NOTE."; }
    if [ ${#CONFIGS[@]} -gt 1 ]; then
        echo
        echo "## Stores and servers compared"
        echo
        echo "| store | servers | N | register all (s) | all maps complete (s) | endpoint change reaches all (ms) | rename reaches all (ms) | server CPU, storm (s) | server CPU, endpoint change (ms) | server CPU, rename (ms) | server peak RSS (MiB) | PostgreSQL CPU, storm (s) | PostgreSQL CPU, endpoint change (ms) | PostgreSQL CPU, rename (ms) | PostgreSQL memory converged (MiB) | converged |"
        echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"
        printf '%s\n' "${CMP[@]}"
    fi
    for CFG in "${CONFIGS[@]}"; do
        [ -n "${ROWS[$CFG]:-}" ] || continue
        if [ ${#CONFIGS[@]} -gt 1 ]; then
            echo
            echo "## $(store_name "${CFG%/*}"), $(servers_name "${CFG#*/}")"
        fi
        echo
        echo "| N | register all (s) | all maps complete (s) | server CPU, storm (s) | server RSS converged (MiB) | server peak RSS (MiB) | MiB received by nodes | full maps sent | deltas sent | node reconnects | closed as stalled | endpoint change reaches all (ms) | bytes received for it | server CPU for it (ms) | rename reaches all (ms) | bytes received for it | server CPU for it (ms) | one full map (bytes) | converged |"
        echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | :---: |"
        printf '%s' "${ROWS[$CFG]}"
        GROWTH=$(growth "${RECS[$CFG]}")
        if [ -n "$GROWTH" ]; then
            echo
            echo "Growth per doubling of N (2.00 = linear, 4.00 = quadratic):"
            echo
            echo "| sizes | register all | all maps complete | server CPU, storm | server peak RSS | bytes to nodes, storm | endpoint change latency | bytes per endpoint change | rename latency | bytes per rename | server CPU per endpoint change |"
            echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
            echo "$GROWTH"
        fi
    done
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
