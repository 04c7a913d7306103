#!/usr/bin/env bash
# tests/run.sh BUILD_DIR [-j N] [--unit-only | --no-e2e] [--only REGEX]
#
# Runs every unit test binary BUILD_DIR/tests/test_*, the demo
# (tests/demo.sh --once: mesh-control and three nodes on loopback, no root),
# and every tests/e2e/*.sh (only as root: they need network namespaces;
# otherwise each is reported SKIP). Each test runs with a timeout; its output
# goes to tests/artifacts/<name>.log and the tail is shown when it fails.
# Exit code 77 from a test means "skipped". Ends with the line
#   N passed, N failed, N skipped
# and exits non-zero when anything failed.
#   -j N, --jobs N  run N tests at a time (default 1, or $MESH_TEST_JOBS),
#                longest first; each test's line is printed when it ends
#   --unit-only  only the unit tests
#   --no-e2e     unit tests and the demo, no namespace tests
#   --only RE    only tests whose name matches the regular expression
# Logs: tests/artifacts/<name>.log for ./build, tests/artifacts/<build dir
# name>/<name>.log for another build directory (e.g. build-asan).
#
# Concurrent runs are safe: each test gets a namespace prefix of its own
# (MESH_E2E_ID, reserved under /tmp/meshproxy-test-ids/ so two runs of this
# script never hand out the same one), the demo a block of ports of its own,
# and every test's files are under its own name. "Longest first" uses the
# durations of the last run (ARTIFACTS/durations.tsv) and, for a test not in
# it, the table below. A test listed in ALONE runs with no other test of any
# run of this script on the machine (an exclusive lock on
# /tmp/meshproxy-tests.lock that every other test holds shared). A test
# listed in HEAVY (most of its time on the CPU, with limits in wall time)
# runs beside no other HEAVY test of any run (/tmp/meshproxy-tests.heavy),
# only beside tests that wait; while one runs, the others start first.
#
# Environment: MESH_ARTIFACTS (log directory), MESH_UNIT_TIMEOUT (s, default
# 300), MESH_E2E_TIMEOUT (s, default 900), MESH_TEST_JOBS (default for -j).
# MESH_BUILD (absolute BUILD_DIR) is exported for the scripts.
set -u

usage() {
    echo "usage: $0 BUILD_DIR [-j N] [--unit-only | --no-e2e] [--only REGEX]" >&2
    exit 2
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=""
UNIT_ONLY=0
NO_E2E=0
ONLY=""
JOBS=${MESH_TEST_JOBS:-1}
while [ $# -gt 0 ]; do
    case $1 in
    --unit-only) UNIT_ONLY=1 NO_E2E=1 ;;
    --no-e2e) NO_E2E=1 ;;
    --only) ONLY=${2:-}; shift ;;
    -j | --jobs) JOBS=${2:-}; shift ;;
    -j[0-9]*) JOBS=${1#-j} ;;
    --jobs=*) JOBS=${1#--jobs=} ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) [ -z "$BUILD" ] || usage; BUILD=$1 ;;
    esac
    shift
done
[ -n "$BUILD" ] || usage
[ -d "$BUILD" ] || { echo "$0: no build directory '$BUILD' (run make first)" >&2; exit 2; }
if ! [[ $JOBS =~ ^[1-9][0-9]?$ ]]; then
    echo "$0: -j / MESH_TEST_JOBS: expected a number of tests at a time from 1 to 99, got '$JOBS'" >&2
    exit 2
fi

MESH_BUILD=$(cd "$BUILD" && pwd)
export MESH_BUILD
ARTIFACTS=${MESH_ARTIFACTS:-$ROOT/tests/artifacts}
[ "$(basename "$MESH_BUILD")" = build ] || ARTIFACTS="$ARTIFACTS/$(basename "$MESH_BUILD")"
mkdir -p "$ARTIFACTS" 2>/dev/null
if ! [ -w "$ARTIFACTS" ]; then
    ARTIFACTS=$(mktemp -d /tmp/mesh-artifacts.XXXXXX)
    echo "note: tests/artifacts is not writable; logs go to $ARTIFACTS"
fi
export MESH_ARTIFACTS="$ARTIFACTS"
UNIT_TIMEOUT=${MESH_UNIT_TIMEOUT:-300}
E2E_TIMEOUT=${MESH_E2E_TIMEOUT:-900}

if [ -t 1 ]; then
    C_OK=$'\e[32m' C_BAD=$'\e[31m' C_SKIP=$'\e[33m' C_END=$'\e[0m'
else
    C_OK="" C_BAD="" C_SKIP="" C_END=""
fi

# Seconds each test took in a normal build on an idle 2-core machine, for
# the order of the first run (later runs use their own durations.tsv).
# Unknown tests count as DEFAULT_SECS of their kind.
declare -A KNOWN=(
    [e2e_path_switch]=157 [e2e_outage]=124 [test_magicsock]=106 [e2e_load]=104
    [e2e_natlab]=68 [test_relay_client]=59 [test_control_map_stream]=56
    [e2e_relay_path]=56 [e2e_memory]=44 [e2e_clients]=42 [test_relay_server]=36
    [e2e_interop_wggo]=35 [e2e_container]=35 [test_control_map_limits]=35 [e2e_relay]=31 [e2e_mesh]=23
    [test_http_keepalive]=22 [test_wg_staging]=21 [test_control_storm_cost]=21
    [e2e_two_nodes]=21 [e2e_cli]=20 [test_device]=18 [e2e_wg_interop_raw]=17
    [e2e_control_cli]=14 [e2e_tunnel_dns]=14 [e2e_control_scale]=27 [e2e_control_ha]=40
    [e2e_ping_interval]=11 [test_control_writes]=11 [test_control_server_scale]=10
    [e2e_udp]=8 [test_eyeballs]=5 [test_netstack_flow]=4 [e2e_eyeballs]=4
    [e2e_health]=40 [test_healthd]=40
)
declare -A DEFAULT_SECS=([unit]=3 [integ]=15 [e2e]=30)
# Tests that must have the machine to themselves. None today: none
# changes a setting outside its own namespaces, and the CPU-bound ones only
# need each other out of the way (HEAVY).
ALONE=" "
# Tests that keep a core busy (test_control_map_stream and _map_limits:
# 30-60 CPU seconds each; _map_limits also times a slow reader's grace), or
# that bound a rate in wall time and failed on a loaded 2-core machine
# (test_control_rates: registrations a second; test_relay_server: PINGs in
# 5 s); test_control_server_scale and _storm_cost (maps of thousands of
# nodes, a few CPU seconds) as a precaution. durations.tsv's third column is
# each test's CPU seconds, to keep this list right.
HEAVY=" test_control_map_limits test_control_map_stream test_control_server_scale
    test_control_storm_cost test_control_rates test_relay_server "
HEAVY=" $(echo $HEAVY) "

# Where run.sh instances coordinate (shared by every checkout on the host).
LOCK=/tmp/meshproxy-tests.lock
GATE=/tmp/meshproxy-tests.gate
HEAVY_LOCK=/tmp/meshproxy-tests.heavy
IDS=/tmp/meshproxy-test-ids

PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()

# --- the list of tests ---------------------------------------------------------
T_KIND=() T_NAME=() T_TMO=() T_CMD=()
add_test() { # KIND NAME TIMEOUT CMD...
    if [ -n "$ONLY" ] && ! [[ $2 =~ $ONLY ]]; then
        return
    fi
    T_KIND+=("$1") T_NAME+=("$2") T_TMO+=("$3")
    T_CMD+=("$(printf '%q ' "${@:4}")")
}

shopt -s nullglob
units=("$MESH_BUILD"/tests/test_*)
if [ ${#units[@]} -eq 0 ]; then
    echo "note: no unit test binaries in $MESH_BUILD/tests/"
fi
for t in "${units[@]}"; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    case $t in *.d | *.o) continue ;; esac
    add_test unit "$(basename "$t")" "$UNIT_TIMEOUT" "$t"
done

# The demo: a mesh on loopback, no root. Ports of its own (run_demo).
if [ $UNIT_ONLY -eq 0 ]; then
    add_test integ demo "$UNIT_TIMEOUT" bash -c run_demo
fi

if [ $NO_E2E -eq 0 ]; then
    for s in "$ROOT"/tests/e2e/*.sh; do
        name="e2e_$(basename "$s" .sh)"
        [ "$(basename "$s")" = lib.sh ] && continue
        if [ "$(id -u)" -ne 0 ]; then
            if [ -z "$ONLY" ] || [[ $name =~ $ONLY ]]; then
                printf '%-5s %-32s %sSKIP%s needs root (network namespaces); run: sudo %s %s\n' \
                    e2e "$name" "$C_SKIP" "$C_END" "$0" "$BUILD"
                SKIPPED=$((SKIPPED + 1))
            fi
            continue
        fi
        add_test e2e "$name" "$E2E_TIMEOUT" bash "$s"
    done
fi

# --- helpers run inside a test's job -------------------------------------------

# run_demo: tests/demo.sh --once on a block of four ports of its own, below
# the kernel's ephemeral range (32768-60999) so no outgoing connection of
# another test can hold one. The block is locked for the demo's run (file
# descriptor 7; closed for the demo itself), so a second run.sh (the ASan
# build's, at the same time) takes the next one; a block some other program
# listens on (a demo left running by a user) is passed over.
run_demo() {
    local base p busy
    for base in 21791 21801 21811 21821 21831 21841 21851 21861; do
        exec 7>"/tmp/meshproxy-demo-ports.$base.lock" || continue
        flock -n 7 || continue
        busy=0
        for p in $base $((base + 1)) $((base + 2)) $((base + 3)); do
            [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ] || busy=1
        done
        if [ $busy -eq 0 ]; then
            echo "(demo ports $base-$((base + 3)))"
            env DEMO_CONTROL_PORT=$base DEMO_SOCKS_PORT=$((base + 1)) \
                DEMO_HTTP_PORT=$((base + 2)) DEMO_WEB_PORT=$((base + 3)) \
                bash "$ROOT/tests/demo.sh" "$MESH_BUILD" --once 7>&-
            local rc=$?
            exec 7>&-
            return $rc
        fi
        exec 7>&-
    done
    echo "run.sh: no free block of demo ports in 21791-21864 (another run holds them?)"
    return 1
}

# reap_namespaces ID LOG : a test killed before its own cleanup ran leaves
# its namespaces (named mpe<ID><tag> by tests/e2e/lib.sh) and the processes
# in them. Only this test's ID: other runs may be going on at the same time.
reap_namespaces() {
    local n pid
    for n in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
        [[ $n =~ ^mpe$1[A-Za-z] ]] || continue
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$n" 2>/dev/null && echo "(removed namespace $n left by the test)" >>"$2"
    done
}

# reserve_id : sets ID to a five-digit namespace prefix no other test holds:
# not in use by a namespace, and reserved here by an atomic mkdir (with the
# pid of this script, so a reservation of a run that died is taken back).
reserve_id() {
    local owner
    if ! mkdir -p "$IDS" 2>/dev/null || ! [ -w "$IDS" ]; then
        # No reservations (a /tmp we cannot write): as before, an ID no
        # namespace uses yet.
        ID=$(printf '%05d' $((RANDOM % 100000)))
        while ip netns list 2>/dev/null | grep -q "^mpe$ID"; do
            ID=$(printf '%05d' $((RANDOM % 100000)))
        done
        return
    fi
    while :; do
        ID=$(printf '%05d' $((RANDOM % 100000)))
        if mkdir "$IDS/$ID" 2>/dev/null; then
            echo $$ >"$IDS/$ID/pid"
            if ip netns list 2>/dev/null | grep -q "^mpe$ID[A-Za-z]"; then
                rm -rf "$IDS/$ID"
                continue
            fi
            return
        fi
        owner=$(cat "$IDS/$ID/pid" 2>/dev/null)
        if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
            rm -rf "$IDS/$ID"
        fi
    done
}

# run_job I RESULT_FILE : runs test I (in a subshell of its own), writes
# "EXIT_STATUS SECONDS CPU_SECONDS" to RESULT_FILE. The lock on $LOCK
# (descriptor 9) is shared for an ordinary test and exclusive for one in
# ALONE; the gate (descriptor 8) keeps new tests from starting while an
# ALONE test waits; a HEAVY test holds $HEAVY_LOCK (descriptor 6). None of
# them is passed on to the test.
run_job() {
    local i=$1 res=$2 name=${T_NAME[$1]} t0 rc cpu
    local log="$ARTIFACTS/$name.log"
    exec 8>"$GATE" 9>"$LOCK"
    flock -x 8
    if [[ $ALONE == *" $name "* ]]; then
        flock -x 9
    else
        flock -s 9
        flock -u 8
    fi
    if [[ $HEAVY == *" $name "* ]]; then
        exec 6>"$HEAVY_LOCK"
        flock -x 6
    fi
    export MESH_E2E_ID=$ID
    t0=$(date +%s)
    # -k: a test that ignores SIGTERM is killed 30 s later.
    eval "timeout -k 30 ${T_TMO[$i]} ${T_CMD[$i]}" >"$log" 2>&1 </dev/null 6>&- 8>&- 9>&-
    rc=$?
    # The CPU time of this subshell's children: the test and what it waited for.
    # (times itself in this shell: in a pipe it would be a new process's.)
    times >"$res.cpu"
    cpu=$(awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/)
        printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] + 0.5 }' "$res.cpu")
    reap_namespaces "$ID" "$log"
    echo "$rc $(($(date +%s) - t0)) ${cpu:-0}" >"$res"
}

# heavy_busy : a HEAVY test of another run holds the lock now.
heavy_busy() {
    (exec 6>"$HEAVY_LOCK" && ! flock -n 6) 2>/dev/null
}

# timeout runs a command, not a shell function: the demo goes through a
# child bash that has run_demo.
export -f run_demo
export ROOT

# --- running -------------------------------------------------------------------

# The durations of the last run in this artifacts directory.
DURATIONS="$ARTIFACTS/durations.tsv"
declare -A LAST=() LAST_CPU=()
if [ -f "$DURATIONS" ]; then
    while IFS=$'\t' read -r n s c; do
        [[ $s =~ ^[0-9]+$ ]] && LAST[$n]=$s LAST_CPU[$n]=${c:-}
    done <"$DURATIONS"
fi
expected() { # I
    local n=${T_NAME[$1]}
    echo "${LAST[$n]:-${KNOWN[$n]:-${DEFAULT_SECS[${T_KIND[$1]}]}}}"
}

# Longest first; ALONE tests last (they wait for the others anyway).
ORDER=()
while read -r _ i; do ORDER+=("$i"); done < <(
    for i in "${!T_NAME[@]}"; do
        a=0
        [[ $ALONE == *" ${T_NAME[$i]} "* ]] && a=1
        printf '%d%07d %d\n' $a $((9999999 - $(expected "$i"))) "$i"
    done | sort -s -k1,1
)

STATE=$(mktemp -d /tmp/meshproxy-run.XXXXXX)
declare -A JOB_I=() JOB_ID=()
cleanup() {
    local pid
    # The job's child is timeout, which passes the signal on to the test.
    for pid in "${!JOB_I[@]}"; do pkill -TERM -P "$pid" 2>/dev/null; done
    wait 2>/dev/null
    for pid in "${!JOB_ID[@]}"; do rm -rf "${IDS:?}/${JOB_ID[$pid]}"; done
    rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[ "$JOBS" -gt 1 ] && [ ${#ORDER[@]} -gt 1 ] &&
    echo "(${#ORDER[@]} tests, $JOBS at a time, longest first; each line is printed when its test ends)"

# report I : the result line of a finished test (and its log's tail on failure).
# With one test at a time its name is printed when it starts (PREFIXED=1).
PREFIXED=0
report() {
    local i=$1 kind=${T_KIND[$1]} name=${T_NAME[$1]} t=${T_TMO[$1]} rc dt cpu
    local log="$ARTIFACTS/$name.log"
    read -r rc dt cpu <"$STATE/$i.res" 2>/dev/null || { rc=1 dt=0 cpu=""; }
    [ $PREFIXED -eq 1 ] || printf '%-5s %-32s ' "$kind" "$name"
    case $rc in
    0)
        PASSED=$((PASSED + 1))
        echo "${C_OK}PASS${C_END} (${dt}s)"
        ;;
    77)
        SKIPPED=$((SKIPPED + 1))
        echo "${C_SKIP}SKIP${C_END} $(grep -m1 -i '^SKIP' "$log" | sed 's/^SKIP:* *//')"
        ;;
    *)
        FAILED=$((FAILED + 1))
        FAILED_NAMES+=("$name")
        if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
            echo "${C_BAD}FAIL${C_END} (timeout after ${t}s; log: $log)"
        else
            echo "${C_BAD}FAIL${C_END} (exit $rc after ${dt}s; log: $log)"
        fi
        tail -n 40 "$log" | sed 's/^/    | /'
        ;;
    esac
    [ "$rc" = 77 ] || { DONE_SECS[$name]=$dt; DONE_CPU[$name]=$cpu; }
}

# pick : sets PICK to the position in ORDER of the next test to start: the
# first not started, passing over a HEAVY test while another HEAVY one runs
# (ours or another run's) as long as something else can start; -1 when
# nothing is left.
pick() {
    local k first=-1 busy=-1
    PICK=-1
    for ((k = 0; k < ${#ORDER[@]}; k++)); do
        [ -n "${STARTED[$k]:-}" ] && continue
        [ $first -ge 0 ] || first=$k
        if [[ $HEAVY == *" ${T_NAME[${ORDER[$k]}]} "* ]]; then
            if [ $busy -lt 0 ]; then
                busy=0
                { [ $HEAVY_RUNNING -gt 0 ] || heavy_busy; } && busy=1
            fi
            [ $busy -eq 1 ] && continue
        fi
        PICK=$k
        return
    done
    # Only HEAVY tests are left and one runs: wait for it, unless nothing
    # of ours runs (then start one; it waits for the lock).
    [ ${#JOB_I[@]} -eq 0 ] && PICK=$first
}

declare -A DONE_SECS=() DONE_CPU=() STARTED=() JOB_HEAVY=()
HEAVY_RUNNING=0
while :; do
    while [ ${#JOB_I[@]} -lt "$JOBS" ]; do
        pick
        [ "$PICK" -ge 0 ] || break
        STARTED[$PICK]=1
        i=${ORDER[$PICK]}
        reserve_id
        if [ "$JOBS" -eq 1 ]; then
            printf '%-5s %-32s ' "${T_KIND[$i]}" "${T_NAME[$i]}"
            PREFIXED=1
        fi
        run_job "$i" "$STATE/$i.res" &
        JOB_I[$!]=$i
        JOB_ID[$!]=$ID
        if [[ $HEAVY == *" ${T_NAME[$i]} "* ]]; then
            JOB_HEAVY[$!]=1
            HEAVY_RUNNING=$((HEAVY_RUNNING + 1))
        fi
    done
    [ ${#JOB_I[@]} -gt 0 ] || break
    # A job writes its result file last; look every half second (this also
    # starts a HEAVY test passed over once another run's HEAVY test ends).
    sleep 0.5
    for pid in "${!JOB_I[@]}"; do
        [ -s "$STATE/${JOB_I[$pid]}.res" ] || { kill -0 "$pid" 2>/dev/null && continue; }
        wait "$pid" 2>/dev/null
        report "${JOB_I[$pid]}"
        rm -rf "${IDS:?}/${JOB_ID[$pid]}"
        if [ -n "${JOB_HEAVY[$pid]:-}" ]; then
            HEAVY_RUNNING=$((HEAVY_RUNNING - 1))
            unset "JOB_HEAVY[$pid]"
        fi
        unset "JOB_I[$pid]" "JOB_ID[$pid]"
    done
done

# This run's durations over the last run's, for the next run's order.
if [ ${#DONE_SECS[@]} -gt 0 ]; then
    for n in "${!DONE_SECS[@]}"; do LAST[$n]=${DONE_SECS[$n]} LAST_CPU[$n]=${DONE_CPU[$n]}; done
    for n in "${!LAST[@]}"; do
        printf '%s\t%s\t%s\n' "$n" "${LAST[$n]}" "${LAST_CPU[$n]:-}"
    done | sort >"$DURATIONS.$$" &&
        mv "$DURATIONS.$$" "$DURATIONS"
fi

echo
if [ $FAILED -gt 0 ]; then
    echo "failed: ${FAILED_NAMES[*]}"
fi
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ $FAILED -eq 0 ]
