#!/usr/bin/env bash
# tests/run.sh BUILD_DIR [--unit-only | --no-e2e] [--only REGEX]
#
# Runs every unit test binary BUILD_DIR/tests/test_*, then the demo
# (tests/demo.sh --once: mesh-control and three nodes on loopback, no root), then every
# tests/e2e/*.sh (only as root: they need network namespaces; otherwise each
# is reported SKIP). Each test runs with a timeout; its output goes to
# tests/artifacts/<name>.log and the tail is shown when it fails. Exit code 77
# from a test means "skipped". Ends with the line
#   N passed, N failed, N skipped
# and exits non-zero when anything failed.
#   --unit-only  only the unit tests
#   --no-e2e     unit tests and the demo, no namespace tests
#   --only RE    only tests whose name matches the regular expression
# Logs: tests/artifacts/<name>.log for ./build, tests/artifacts/<build dir
# name>/<name>.log for another build directory (e.g. build-asan).
#
# Environment: MESH_ARTIFACTS (log directory), MESH_UNIT_TIMEOUT (s, default 300), MESH_E2E_TIMEOUT (s,
# default 900). MESH_BUILD (absolute BUILD_DIR) is exported for the scripts.
set -u

usage() {
    echo "usage: $0 BUILD_DIR [--unit-only | --no-e2e] [--only REGEX]" >&2
    exit 2
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=""
UNIT_ONLY=0
NO_E2E=0
ONLY=""
while [ $# -gt 0 ]; do
    case $1 in
    --unit-only) UNIT_ONLY=1 NO_E2E=1 ;;
    --no-e2e) NO_E2E=1 ;;
    --only) ONLY=${2:-}; shift ;;
    -h | --help) usage ;;
    -*) usage ;;
    *) [ -z "$BUILD" ] || usage; BUILD=$1 ;;
    esac
    shift
done
[ -n "$BUILD" ] || usage
[ -d "$BUILD" ] || { echo "$0: no build directory '$BUILD' (run make first)" >&2; exit 2; }

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

PASSED=0
FAILED=0
SKIPPED=0
FAILED_NAMES=()

# reap_namespaces ID : a test killed before its own cleanup ran leaves its
# namespaces (named mpe<ID><tag> by tests/e2e/lib.sh) and the processes in
# them. Only this test's ID: other runs may be going on at the same time.
reap_namespaces() {
    local n pid
    for n in $(ip netns list 2>/dev/null | awk '{ print $1 }'); do
        [[ $n =~ ^mpe$1[A-Za-z] ]] || continue
        for pid in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
        ip netns del "$n" 2>/dev/null && echo "(removed namespace $n left by the test)" >>"$log"
    done
}

# run_one KIND NAME TIMEOUT CMD...
run_one() {
    local kind=$1 name=$2 t=$3
    shift 3
    local log="$ARTIFACTS/$name.log" rc t0 dt
    if [ -n "$ONLY" ] && ! [[ $name =~ $ONLY ]]; then
        return
    fi
    printf '%-5s %-32s ' "$kind" "$name"
    # A namespace prefix of our own for this test (see reap_namespaces).
    local id
    id=$(printf '%05d' $((RANDOM % 100000)))
    while ip netns list 2>/dev/null | grep -q "^mpe$id"; do
        id=$(printf '%05d' $((RANDOM % 100000)))
    done
    export MESH_E2E_ID=$id
    t0=$(date +%s)
    # -k: a test that ignores SIGTERM is killed 30 s later.
    timeout -k 30 "$t" "$@" >"$log" 2>&1 </dev/null
    rc=$?
    dt=$(($(date +%s) - t0))
    reap_namespaces "$id"
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
        if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
            echo "${C_BAD}FAIL${C_END} (timeout after ${t}s; log: $log)"
        else
            echo "${C_BAD}FAIL${C_END} (exit $rc after ${dt}s; log: $log)"
        fi
        tail -n 40 "$log" | sed 's/^/    | /'
        ;;
    esac
}

# --- unit tests --------------------------------------------------------------
shopt -s nullglob
units=("$MESH_BUILD"/tests/test_*)
if [ ${#units[@]} -eq 0 ]; then
    echo "note: no unit test binaries in $MESH_BUILD/tests/"
fi
for t in "${units[@]}"; do
    [ -x "$t" ] && [ -f "$t" ] || continue
    case $t in *.d | *.o) continue ;; esac
    run_one unit "$(basename "$t")" "$UNIT_TIMEOUT" "$t"
done

# --- integration: the demo (a mesh on loopback, no root) ---------------------
# Its own ports, so a demo left running by a user does not clash; below the
# kernel's ephemeral range (32768-60999), so no outgoing connection of
# another test can hold one.
if [ $UNIT_ONLY -eq 0 ]; then
    run_one integ demo "$UNIT_TIMEOUT" env DEMO_CONTROL_PORT=21791 DEMO_SOCKS_PORT=21792 \
        DEMO_HTTP_PORT=21793 DEMO_WEB_PORT=21794 bash "$ROOT/tests/demo.sh" "$MESH_BUILD" --once
fi

# --- end-to-end tests ----------------------------------------------------------
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
        run_one e2e "$name" "$E2E_TIMEOUT" bash "$s"
    done
fi

echo
if [ $FAILED -gt 0 ]; then
    echo "failed: ${FAILED_NAMES[*]}"
fi
echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
[ $FAILED -eq 0 ]
