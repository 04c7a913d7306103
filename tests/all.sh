#!/usr/bin/env bash
# make test: every stage, even when an earlier one failed, then one verdict.
#  0. the layering: includes and symbols (make check-layout)
#  1. the normal build: unit tests, the demo, end-to-end tests (as root)
#  2. ASan+UBSan build: the same tests again (mesh-proxy under ASan in e2e)
#  3. every libFuzzer harness for FUZZ_SECONDS (default 10) each
#  4. the normal build's control unit tests again on PostgreSQL: a throwaway
#     cluster (tests/pg.sh) and MESH_TEST_PG_URL, so every store those tests
#     make is a database of its own there (tests/unit/store_fixture.h)
#  5. the benchmark suite once with --quick (it works; no timings judged)
#
# Most test time is waiting (timers, timeouts), so stages run side by side
# in three tracks, and each test stage runs MESH_TEST_JOBS tests at a time:
#   track 1: layout, then the normal build's tests
#   track 2: the ASan+UBSan build, then its tests
#   track 3: once the ASan build is done (both cores compile), the fuzz
#            build and the fuzzers
# and the control tests on PostgreSQL (mostly waiting, on timers and on the
# database) in whichever of tracks 1 and 3 ends first: the ASan track is
# the longest, so they fill time a track would otherwise sit idle;
# then the benchmark smoke alone (it owns the machine while it measures).
# Builds and fuzzers run under nice, so the tests that wait on timers get
# the CPU first. Each stage's output goes to ARTIFACTS/make-test/STAGE.log;
# a line is printed when a stage ends, with its failures (or its log's tail)
# when it fails, and a summary of every stage at the end.
#
# Environment: MESH_TEST_JOBS (tests at a time in each test stage; default
# the number of CPUs + 1, i.e. 3 on a 2-core machine), MESH_BUILD_JOBS
# (make -j for the ASan and fuzz builds; default the number of CPUs),
# FUZZ_SECONDS, MESH_ARTIFACTS.
set -u
cd "$(dirname "$0")/.."
ROOT=$(pwd)
NCPU=$(nproc 2>/dev/null || echo 2)
export MESH_TEST_JOBS=${MESH_TEST_JOBS:-$((NCPU + 1))}
BJOBS=${MESH_BUILD_JOBS:-$NCPU}
ART=${MESH_ARTIFACTS:-$ROOT/tests/artifacts}
LOGS="$ART/make-test"
mkdir -p "$LOGS" 2>/dev/null && [ -w "$LOGS" ] || LOGS=$(mktemp -d /tmp/mesh-make-test.XXXXXX)
STATE=$(mktemp -d /tmp/mesh-all.XXXXXX)
T0=$(date +%s)
# Make's own variables would reach the sub-makes (a jobserver of the parent
# that they cannot use): each make below gets its own -j.
unset MAKEFLAGS MFLAGS MAKELEVEL

join() { local IFS=$'\x1f'; local s="$*"; echo "${s//$'\x1f'/; }"; }
since() { local s=$(($(date +%s) - $1)); printf '%d:%02d' $((s / 60)) $((s % 60)); }

# say TEXT... : one block of output, not interleaved with another track's.
say() {
    {
        flock -x 3
        printf '%s\n' "$@"
    } 3>"$STATE/print.lock"
}

# stage NAME SLUG CMD... : runs CMD with its output in LOGS/SLUG.log; records
# its status and time in STATE/SLUG.{rc,t}; prints one line when it ends
# and, on failure, what failed.
stage() {
    local name=$1 slug=$2 t0 rc log
    shift 2
    log="$LOGS/$slug.log"
    t0=$(date +%s)
    touch "$STATE/$slug.started"
    say "[$(since "$T0")] start  $name"
    "$@" >"$log" 2>&1 </dev/null
    rc=$?
    echo "$rc" >"$STATE/$slug.rc"
    since "$t0" >"$STATE/$slug.t"
    if [ $rc -eq 0 ]; then
        say "[$(since "$T0")] PASS   $name ($(since "$t0"); $(last_line "$log"))"
    else
        say "[$(since "$T0")] FAIL   $name (exit $rc after $(since "$t0"); log: $log)" \
            "$(failures "$log" | sed 's/^/    /')"
    fi
    return $rc
}

# last_line LOG : the stage's own summary (e.g. "95 passed, 0 failed, 0
# skipped"), else "log: LOG".
last_line() {
    local l
    l=$(grep -E '^[0-9]+ passed, [0-9]+ failed|^fuzz: |^bench_smoke: |^check-layout: |^control-pg: ' "$1" | tail -n 1)
    echo "${l:-log: $1}"
}

# failures LOG : for a test stage, each failed test's line and log tail
# (as tests/run.sh printed them) and its summary; else the log's last lines.
failures() {
    if grep -qE '^[0-9]+ passed, [0-9]+ failed' "$1"; then
        awk '/^(unit|integ|e2e) / && /FAIL/ { p = 1; print; next }
             /^    \| / { if (p) print; next } { p = 0 }
             /^failed: |^[0-9]+ passed, [0-9]+ failed/ { print }' "$1"
    else
        tail -n 60 "$1"
    fi
}

# control_on_pg: the normal build's control unit tests on a throwaway
# PostgreSQL cluster; the cluster is stopped however this ends (a failure,
# or make test interrupted). Logs under ARTIFACTS/pg/, apart from the
# SQLite run's logs of the same tests.
control_on_pg() (
    dir=$(mktemp -d /tmp/mesh-pg.XXXXXX) || exit 1
    runner=
    trap '[ -z "$runner" ] || kill -TERM "$runner" 2>/dev/null; wait; tests/pg.sh stop "$dir"' EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
    url=$(tests/pg.sh start "$dir")
    rc=$?
    if [ $rc -eq 77 ]; then
        echo "control-pg: skipped, PostgreSQL is not installed (make deps installs it)"
        exit 0
    fi
    if [ $rc -ne 0 ] || [ -z "$url" ]; then
        echo "control-pg: tests/pg.sh start $dir failed (exit $rc; its output is above)"
        exit 1
    fi
    echo "PostgreSQL for the control tests: $url"
    # In the background, so that a TERM is handled at once, not after it.
    # The cluster goes with its databases: no test drops its own (a DROP
    # DATABASE waits on every backend; tests/unit/store_fixture.h). Left
    # out: the four map-distribution scale tests. They measure the server's
    # maps over 20,000-38,000 nodes that they store one transaction each
    # (about 9 minutes on PostgreSQL on a busy 2-core machine); the engine
    # does not enter what they check, and the PostgreSQL store at scale is
    # covered by test_control_store_pg_nodes (3,000 registrations, a
    # 10,000-node batch) and by bench/control_scale.sh.
    local only
    only=$(ls build/tests | grep '^test_control' |
        grep -vE '^test_control_(map_stream|map_limits|storm_cost|server_scale)$' | paste -sd'|')
    MESH_TEST_PG_URL=$url MESH_TEST_PG_KEEP_DBS=1 MESH_ARTIFACTS="$ART/pg" \
        MESH_UNIT_TIMEOUT=${MESH_UNIT_TIMEOUT:-600} \
        tests/run.sh build --unit-only --only "^($only)\$" &
    runner=$!
    wait "$runner"
    rc=$?
    runner=
    exit $rc
)

# pg_if_first: runs the PostgreSQL stage unless the other track got to it.
pg_if_first() {
    mkdir "$STATE/pg.claimed" 2>/dev/null || return 0
    stage "control tests on PostgreSQL (build/)" control-pg control_on_pg
}

track1() {
    stage "layout (make check-layout)" layout make --no-print-directory check-layout
    stage "tests (build/)" tests-build tests/run.sh build
    pg_if_first
}
track2() {
    stage "ASan+UBSan build" asan-build nice make --no-print-directory -j"$BJOBS" SANITIZE=1 all
    touch "$STATE/asan-built"
    stage "tests under ASan+UBSan (build-asan/)" tests-asan tests/run.sh build-asan
}
track3() {
    while [ ! -e "$STATE/asan-built" ]; do sleep 2; done
    stage "fuzz smoke" fuzz nice make --no-print-directory -j"$BJOBS" -f tests/fuzz/fuzz.mk run \
        FUZZ_SECONDS="${FUZZ_SECONDS:-10}"
    pg_if_first
}

ORDER=(layout tests-build asan-build tests-asan fuzz control-pg bench)
declare -A NAME=(
    [layout]="layout (make check-layout)" [tests-build]="tests (build/)"
    [asan-build]="ASan+UBSan build" [tests-asan]="tests under ASan+UBSan (build-asan/)"
    [fuzz]="fuzz smoke" [control-pg]="control tests on PostgreSQL (build/)"
    [bench]="benchmark suite smoke (build/)"
)

PIDS=()
cleanup() {
    local p
    # Each track's children (a stage's make or run.sh) get the signal too.
    for p in "${PIDS[@]}"; do pkill -TERM -P "$p" 2>/dev/null; kill -TERM "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$STATE"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "make test: stages side by side, $MESH_TEST_JOBS tests at a time in each test stage;" \
    "logs in $LOGS/"
track1 &
PIDS+=($!)
track2 &
PIDS+=($!)
track3 &
PIDS+=($!)
# A line every five minutes, so a quiet run is seen to be alive.
alive() {
    local p
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && return 0; done
    return 1
}
n=0
while alive; do
    sleep 2
    n=$((n + 2))
    [ $((n % 300)) -eq 0 ] && alive || continue
    running=()
    for s in "${ORDER[@]}"; do
        [ -e "$STATE/$s.started" ] && [ ! -e "$STATE/$s.rc" ] && running+=("${NAME[$s]}")
    done
    say "[$(since "$T0")] running: $(join "${running[@]}") (load average $(cut -d' ' -f1-3 /proc/loadavg))"
done
wait
PIDS=()

stage "benchmark suite smoke (build/)" bench tests/bench_smoke.sh build

echo
echo "make test: $(since "$T0") in all (load average now $(cut -d' ' -f1-3 /proc/loadavg))"
failed=()
for s in "${ORDER[@]}"; do
    rc=$(cat "$STATE/$s.rc" 2>/dev/null || echo "?")
    if [ "$rc" = 0 ]; then r=PASS; else r=FAIL; failed+=("${NAME[$s]}"); fi
    printf '  %-4s %-40s %6s  %s\n' "$r" "${NAME[$s]}" "$(cat "$STATE/$s.t" 2>/dev/null)" \
        "$(last_line "$LOGS/$s.log")"
done
echo
if [ ${#failed[@]} -eq 0 ]; then
    echo "make test: all stages passed"
else
    echo "make test: FAILED stages: $(join "${failed[@]}")"
    exit 1
fi
