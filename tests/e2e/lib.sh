# tests/e2e/lib.sh: helpers for end-to-end tests in network namespaces.
#
# Source it from a test script:   . "$(dirname "$0")/lib.sh"
#
# What it gives:
#   e2e_require_root, e2e_require_cmd CMD..., e2e_require_private_mounts
#                                                 exit 77 (skip) when unmet
#   ns_create TAG                                a namespace with lo up; its
#                                                real name is $(ns TAG)
#   ns_link TAG1 ADDR1/LEN TAG2 ADDR2/LEN        a veth pair between two
#   ns_lan TAG ADDR/LEN                          TAG on a shared bridge (lan0)
#   nsx TAG CMD...                               run CMD inside namespace TAG
#   nsx_nobody TAG CMD...                        same, as user nobody
#   bg NAME TAG|- CMD...                         start CMD in the background
#                                                (in namespace TAG, or "-" for
#                                                the root namespace); output to
#                                                $E2E_LOGDIR/NAME.log; pid in
#                                                BG_PID and bg_pid NAME
#   bg_nobody NAME TAG CMD...                    same, as nobody
#   bg_stop NAME                                 SIGTERM, wait, SIGKILL
#   wggo_start NAME TAG IFACE ADDR/LEN PORT KEYFILE
#                                                wireguard-go with a TUN
#   wait_until SECONDS CMD...                    poll CMD every 0.2 s
#   wait_listen TAG PORT [SECONDS] [tcp|udp]     a socket listens on PORT
#   wait_log FILE REGEX [SECONDS]                a line matching appears
#   log_mark FILE; wait_log_after FILE MARK REGEX [SECONDS]
#                                                the same, after a mark
#   check "what" CMD...                          PASS/FAIL line, counted
#   fgw CMD...                                   a long foreground command
#                                                that a timeout can interrupt
#   pass MSG / fail MSG / info MSG / step MSG
#   e2e_finish                                   summary; exit 1 on failure
#
# Everything started through bg/wggo_start is killed, every namespace made
# with ns_create deleted, and the temporary directory removed by an EXIT trap,
# on success and on failure alike. Logs of the processes are kept in
# $E2E_LOGDIR (tests/artifacts/<test>/) and their tails printed on failure.

set -u
set -o pipefail

E2E_NAME=${E2E_NAME:-$(basename "$0" .sh)}
E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_DIR="$E2E_ROOT/tests/e2e"
E2E_ARTIFACTS=${MESH_ARTIFACTS:-$E2E_ROOT/tests/artifacts}
E2E_LOGDIR="$E2E_ARTIFACTS/$E2E_NAME"
# The build directory: MESH_BUILD from tests/run.sh, else ./build.
MESH_BUILD=${MESH_BUILD:-$E2E_ROOT/build}
MESH_PROXY="$MESH_BUILD/mesh-proxy"

E2E_PASSES=0
E2E_FAILS=0
E2E_FAILED_CHECKS=()
E2E_NS=()               # real namespace names, for cleanup
declare -A E2E_NSMAP=() # tag -> real name
declare -A E2E_BG=()    # name -> pid
E2E_BG_ORDER=()
E2E_TMP=""
E2E_START=$(date +%s)
# Unique per run, short (interface names are limited to 15 characters).
# tests/run.sh passes MESH_E2E_ID so it can find what a killed test left.
E2E_ID=${MESH_E2E_ID:-$(printf '%05d' $(($$ % 100000)))}

if [ -t 1 ]; then
    C_OK=$'\e[32m' C_BAD=$'\e[31m' C_DIM=$'\e[2m' C_BOLD=$'\e[1m' C_END=$'\e[0m'
else
    C_OK="" C_BAD="" C_DIM="" C_BOLD="" C_END=""
fi

# --- output ----------------------------------------------------------------

e2e_ts() { printf '%4ds' $(($(date +%s) - E2E_START)); }
info() { echo "${C_DIM}$(e2e_ts)${C_END}   $*"; }
step() { echo "${C_BOLD}$(e2e_ts) == $*${C_END}"; }
pass() {
    E2E_PASSES=$((E2E_PASSES + 1))
    echo "${C_OK}$(e2e_ts) PASS${C_END} $*"
}
fail() {
    E2E_FAILS=$((E2E_FAILS + 1))
    E2E_FAILED_CHECKS+=("$*")
    echo "${C_BAD}$(e2e_ts) FAIL${C_END} $*"
}

# check "what it proves" CMD... : runs CMD, PASS on exit 0, FAIL otherwise
# (with the command's output shown on failure).
check() {
    local what=$1
    shift
    local out="${E2E_TMP:-/tmp}/.check.$$" rc
    # In the background and waited for, so that a SIGTERM (the runner's
    # timeout) runs the cleanup trap at once instead of after CMD ends.
    "$@" >"$out" 2>&1 </dev/null &
    wait $!
    rc=$?
    if [ $rc -eq 0 ]; then
        pass "$what"
        rm -f "$out"
        return 0
    fi
    fail "$what (exit $rc)"
    [ -s "$out" ] && tail -n 20 "$out" | sed 's/^/      | /'
    rm -f "$out"
    return 1
}

# fgw CMD... : run CMD and wait for it, staying responsive to signals (see
# check). Its stdin is /dev/null.
fgw() {
    "$@" </dev/null &
    wait $!
}

# Abort the test now (an essential step failed; later checks are moot).
die() {
    fail "$*"
    exit 1
}

e2e_skip() {
    echo "SKIP: $*"
    exit 77
}

e2e_require_root() {
    [ "$(id -u)" -eq 0 ] || e2e_skip "$E2E_NAME needs root (network namespaces, TUN)"
}

e2e_require_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || e2e_skip "$E2E_NAME needs '$c' (apt-get install it)"
    done
}

# e2e_require_private_mounts : skip unless this system can give a process a
# mount namespace of its own with private propagation (so a file bound over
# /etc/resolv.conf is seen by that process alone). A chroot whose root is
# not a mount point cannot; binding there could leak to the host.
e2e_require_private_mounts() {
    unshare -m --propagation private true 2>/dev/null ||
        e2e_skip "$E2E_NAME needs a private mount namespace to give one node its own /etc/resolv.conf, and this system cannot make one (a chroot whose / is not a mount point?)"
}

e2e_require_mesh_proxy() {
    [ -x "$MESH_PROXY" ] || die "no executable $MESH_PROXY (run make first)"
    # nobody must be able to reach and run it. A checkout under /root (mode
    # 0700) is not reachable: run a copy from the test's 0755 directory.
    if ! "${AS_NOBODY[@]}" test -x "$MESH_PROXY" 2>/dev/null; then
        e2e_nobody_copy "$MESH_PROXY"
        MESH_PROXY=$E2E_COPY
    fi
    "${AS_NOBODY[@]}" "$MESH_PROXY" --version >/dev/null ||
        die "$MESH_PROXY cannot be run by user nobody (check that / and /usr are world-readable)"
}

# e2e_nobody_copy FILE : copies FILE into $E2E_TMP/bin (0755) and sets
# E2E_COPY to the copy's path.
# MC and MR: the build's mesh-control and mesh-relay, copied where nobody
# can run them when the build tree is not (e2e_nobody_copy); PY: python3.
e2e_mesh_servers() {
    local b
    MC=$MESH_BUILD/mesh-control
    MR=$MESH_BUILD/mesh-relay
    for b in "$MC" "$MR"; do
        [ -x "$b" ] || die "no executable $b (run make first)"
    done
    if ! "${AS_NOBODY[@]}" test -x "$MR" 2>/dev/null; then
        e2e_nobody_copy "$MC" && MC=$E2E_COPY
        e2e_nobody_copy "$MR" && MR=$E2E_COPY
    fi
    PY=/usr/bin/python3
    [ -x $PY ] || PY=$(command -v python3)
}

e2e_nobody_copy() {
    mkdir -p "$E2E_TMP/bin"
    chmod 0755 "$E2E_TMP/bin"
    E2E_COPY="$E2E_TMP/bin/$(basename "$1")"
    cp "$1" "$E2E_COPY" && chmod 0755 "$E2E_COPY"
}

# --- temporary files ---------------------------------------------------------

# A directory readable by nobody (0755). Files nobody must read get 0644.
# Private keys in test configs are throwaway, so 0644 is fine here.
e2e_tmp_init() {
    E2E_TMP=$(mktemp -d /tmp/mesh-e2e.XXXXXX)
    chmod 0755 "$E2E_TMP"
    # A subdirectory nobody can write to (API sockets, files it creates).
    mkdir -p "$E2E_TMP/run"
    chown nobody:nogroup "$E2E_TMP/run"
    chmod 0755 "$E2E_TMP/run"
    rm -rf "$E2E_LOGDIR"
    mkdir -p "$E2E_LOGDIR"
    # Helper scripts that run as nobody: from a copy nobody can read, in case
    # the checkout is not (e.g. under /root).
    if ! "${AS_NOBODY[@]}" test -r "$E2E_DIR/httpd.py" 2>/dev/null; then
        mkdir -p "$E2E_TMP/e2e"
        cp "$E2E_DIR"/*.py "$E2E_TMP/e2e/"
        chmod 0755 "$E2E_TMP/e2e"
        chmod 0644 "$E2E_TMP/e2e"/*.py
        E2E_DIR="$E2E_TMP/e2e"
    fi
}

# write_file PATH < content : a file readable by everybody.
write_file() {
    cat >"$1"
    chmod 0644 "$1"
}

# random_file PATH MiB
random_file() {
    head -c "$(($2 * 1024 * 1024))" /dev/urandom >"$1"
    chmod 0644 "$1"
}

sha() { sha256sum "$1" | cut -d' ' -f1; }

# wg_genkey FILE : a WireGuard private key made by wg (throwaway, 0644).
wg_genkey() {
    (umask 077 && wg genkey >"$1") && chmod 0644 "$1"
}

# --- namespaces --------------------------------------------------------------

ns() {
    local n=${E2E_NSMAP[$1]:-}
    [ -n "$n" ] || { echo "lib.sh: unknown namespace tag '$1'" >&2; return 1; }
    echo "$n"
}

ns_create() {
    local tag=$1 name="mpe${E2E_ID}$1"
    ip netns add "$name" || die "ip netns add $name failed"
    E2E_NS+=("$name")
    E2E_NSMAP[$tag]=$name
    netns_exec "$name" ip link set lo up
}

# ns_link TAG1 ADDR1/LEN TAG2 ADDR2/LEN : veth pair, interfaces named
# v<TAG2> in TAG1 and v<TAG1> in TAG2 (so "vB" in A faces B).
ns_link() {
    local t1=$1 a1=$2 t2=$3 a2=$4 n1 n2
    n1=$(ns "$t1") && n2=$(ns "$t2") || return 1
    ip link add "v$t2" netns "$n1" type veth peer name "v$t1" netns "$n2" ||
        die "veth $t1<->$t2 failed"
    netns_exec "$n1" ip addr add "$a1" dev "v$t2"
    netns_exec "$n2" ip addr add "$a2" dev "v$t1"
    netns_exec "$n1" ip link set "v$t2" up
    netns_exec "$n2" ip link set "v$t1" up
}

# ns_lan TAG ADDR/LEN : puts namespace TAG on a shared LAN (a bridge in a
# namespace of its own, made on first use) with ADDR; its interface is
# "lan0". For meshes of more than two hosts.
ns_lan() {
    local tag=$1 addr=$2 n sw
    n=$(ns "$tag") || return 1
    if [ -z "${E2E_NSMAP[lan]:-}" ]; then
        ns_create lan
        netns_exec "$(ns lan)" ip link add br0 type bridge || die "bridge failed"
        netns_exec "$(ns lan)" ip link set br0 up
    fi
    sw=$(ns lan)
    ip link add lan0 netns "$n" type veth peer name "p$tag" netns "$sw" ||
        die "veth $tag<->lan failed"
    netns_exec "$sw" ip link set "p$tag" master br0
    netns_exec "$sw" ip link set "p$tag" up
    netns_exec "$n" ip addr add "$addr" dev lan0
    netns_exec "$n" ip link set lan0 up
}

nsx() {
    local n
    n=$(ns "$1") || return 1
    shift
    netns_exec "$n" "$@"
}

AS_NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)

# netns_exec NAME CMD... : CMD in the network namespace NAME. nsenter only
# switches the network namespace (and execs, keeping the pid); `ip netns
# exec` also remounts /sys, which fails where / is not a mount point (a
# chroot) and which nothing here needs.
netns_exec() {
    local n=$1
    shift
    nsenter "--net=/run/netns/$n" -- "$@"
}

nsx_nobody() {
    local n
    n=$(ns "$1") || return 1
    shift
    netns_exec "$n" "${AS_NOBODY[@]}" "$@"
}

# --- background processes ----------------------------------------------------

# bg NAME TAG|- CMD... ; nsenter and setpriv both exec, so the pid we
# record is the pid of CMD itself.
bg() {
    local name=$1 tag=$2
    shift 2
    local log="$E2E_LOGDIR/$name.log"
    if [ "$tag" = "-" ]; then
        "$@" >>"$log" 2>&1 </dev/null &
    else
        local n
        n=$(ns "$tag") || return 1
        # Not through netns_exec: a function in the background is a subshell
        # and $! would be its pid, not the command's.
        nsenter "--net=/run/netns/$n" -- "$@" >>"$log" 2>&1 </dev/null &
    fi
    BG_PID=$!
    E2E_BG[$name]=$BG_PID
    E2E_BG_ORDER+=("$name")
    echo "--- started $(date '+%T') pid $BG_PID: $*" >>"$log"
}

bg_nobody() {
    local name=$1 tag=$2
    shift 2
    bg "$name" "$tag" "${AS_NOBODY[@]}" "$@"
}

bg_pid() { echo "${E2E_BG[$1]:-}"; }

bg_alive() {
    local pid=${E2E_BG[$1]:-}
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# bg_wait NAME SECONDS : wait for a background process to end by itself;
# returns its exit status (124 on timeout, and then it is killed).
bg_wait() {
    local pid=${E2E_BG[$1]:-} t=$2 i=0
    [ -n "$pid" ] || return 127
    while kill -0 "$pid" 2>/dev/null; do
        if [ $i -ge $((t * 10)) ]; then
            bg_stop "$1"
            return 124
        fi
        sleep 0.1
        i=$((i + 1))
    done
    wait "$pid" 2>/dev/null
}

bg_stop() {
    local pid=${E2E_BG[$1]:-} i
    [ -n "$pid" ] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    unset "E2E_BG[$1]"
    return 0
}

# bg_term_status NAME SECONDS : send SIGTERM; sets BG_STATUS to the exit
# status, or "timeout" (then SIGKILL) when it did not end in time. Not in
# $(...): wait only works in the shell that started the process.
bg_term_status() {
    local pid=${E2E_BG[$1]:-} i
    BG_STATUS=none
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < $2 * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
        unset "E2E_BG[$1]"
        BG_STATUS=timeout
        return 0
    fi
    wait "$pid" 2>/dev/null
    BG_STATUS=$?
    unset "E2E_BG[$1]"
}

# --- waiting -----------------------------------------------------------------

wait_until() {
    local t=$1 end
    shift
    end=$(($(date +%s%N) / 1000000 + t * 1000))
    while ! "$@" >/dev/null 2>&1; do
        [ $(($(date +%s%N) / 1000000)) -ge $end ] && return 1
        sleep 0.2
    done
    return 0
}

# wait_listen TAG PORT [SECONDS] [tcp|udp]
wait_listen() {
    local tag=$1 port=$2 t=${3:-10} proto=${4:-tcp} flag=-ltnH
    [ "$proto" = udp ] && flag=-lunH
    wait_until "$t" _listening "$tag" "$port" "$flag"
}
_listening() {
    [ -n "$(nsx "$1" ss "$3" "sport = :$2" 2>/dev/null)" ]
}

wait_log() {
    local file=$1 re=$2 t=${3:-10}
    wait_until "$t" grep -Eq -- "$re" "$file"
}

# log_mark FILE : the current line count, to look only at later lines.
log_mark() { if [ -f "$1" ]; then wc -l <"$1"; else echo 0; fi; }

# log_after FILE MARK : the lines after MARK.
log_after() { tail -n "+$(($2 + 1))" "$1" 2>/dev/null; }

# wait_log_after FILE MARK REGEX [SECONDS]
wait_log_after() {
    local file=$1 mark=$2 re=$3 t=${4:-10}
    wait_until "$t" _log_after_has "$file" "$mark" "$re"
}
_log_after_has() { log_after "$1" "$2" | grep -Eq -- "$3"; }

# --- wireguard-go ------------------------------------------------------------

# A name unique to this run: wireguard-go's UAPI socket lives in
# /var/run/wireguard/IFACE.sock, which is shared by every namespace.
wg_ifname() { echo "wg${1}${E2E_ID}"; }

# wggo_start NAME TAG IFACE ADDR/LEN LISTENPORT KEYFILE
# Starts wireguard-go in the foreground (in the background of this shell),
# waits for its UAPI socket, sets key and port, address and MTU, link up.
wggo_start() {
    local name=$1 tag=$2 ifc=$3 addr=$4 port=$5 key=$6
    bg "$name" "$tag" env WG_PROCESS_FOREGROUND=1 LOG_LEVEL="${WG_LOG_LEVEL:-debug}" wireguard-go -f "$ifc"
    wait_until 10 test -S "/var/run/wireguard/$ifc.sock" ||
        die "wireguard-go $ifc did not create its UAPI socket (see $E2E_LOGDIR/$name.log)"
    nsx "$tag" wg set "$ifc" private-key "$key" listen-port "$port" ||
        die "wg set $ifc failed"
    nsx "$tag" ip addr add "$addr" dev "$ifc"
    nsx "$tag" ip link set "$ifc" mtu 1420 up
}

# latest handshake of one peer (unix time, 0 when none)
wg_latest_handshake() {
    local tag=$1 ifc=$2 pub=$3
    nsx "$tag" wg show "$ifc" latest-handshakes | awk -v k="$pub" '$1 == k { print $2 }'
}

# --- mesh-proxy --------------------------------------------------------------

# mesh_start NAME TAG CONFIG : run mesh-proxy as nobody; API socket at
# $E2E_TMP/run/NAME.sock; log in $E2E_LOGDIR/NAME.log.
mesh_start() {
    local name=$1 tag=$2 conf=$3
    bg_nobody "$name" "$tag" "$MESH_PROXY" --config "$conf" \
        --api "$E2E_TMP/run/$name.sock" --log-level "${MESH_LOG_LEVEL:-debug}"
}

# mesh_cli NAME TAG SUBCOMMAND ARGS... : the CLI against node NAME's API.
mesh_cli() {
    local name=$1 tag=$2 sub=$3
    shift 3
    nsx_nobody "$tag" "$MESH_PROXY" "$sub" --api "$E2E_TMP/run/$name.sock" "$@"
}

genkey() { "$MESH_PROXY" genkey; }
pubkey() { "$MESH_PROXY" pubkey; }

# --- cleanup -----------------------------------------------------------------

# The test's own stdout/stderr: a trap may fire inside a function whose
# output is redirected to a log, and the cleanup must still report to the test.
exec {E2E_STDOUT}>&1 {E2E_STDERR}>&2

e2e_cleanup() {
    local rc=$? i name pid n
    trap - EXIT INT TERM
    exec 1>&"$E2E_STDOUT" 2>&"$E2E_STDERR"
    # Stop in reverse order of start.
    for ((i = ${#E2E_BG_ORDER[@]} - 1; i >= 0; i--)); do
        name=${E2E_BG_ORDER[$i]}
        pid=${E2E_BG[$name]:-}
        [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null
    done
    sleep 0.3
    for name in "${E2E_BG_ORDER[@]}"; do
        pid=${E2E_BG[$name]:-}
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    done
    # Other children of this shell (commands run through fgw or check).
    for pid in $(jobs -p); do kill -KILL "$pid" 2>/dev/null; done
    # Anything else still running inside our namespaces was started by us.
    for n in "${E2E_NS[@]}"; do
        for pid in $(ip netns pids "$n" 2>/dev/null); do
            kill -KILL "$pid" 2>/dev/null
        done
    done
    wait 2>/dev/null
    for n in "${E2E_NS[@]}"; do
        ip netns del "$n" 2>/dev/null
    done
    if [ -n "$E2E_TMP" ] && [ -d "$E2E_TMP" ]; then
        rm -rf "$E2E_TMP"
    fi
    if [ $rc -ne 0 ] && [ $rc -ne 77 ] && [ -d "$E2E_LOGDIR" ]; then
        local f
        for f in "$E2E_LOGDIR"/*.log; do
            [ -f "$f" ] || continue
            echo "----- tail of $f"
            tail -n 25 "$f"
        done
    fi
    exit $rc
}
trap e2e_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

e2e_finish() {
    local dt=$(($(date +%s) - E2E_START))
    echo
    if [ $E2E_FAILS -eq 0 ]; then
        echo "${C_OK}$E2E_NAME: $E2E_PASSES checks passed, 0 failed${C_END} (${dt}s)"
        exit 0
    fi
    echo "${C_BAD}$E2E_NAME: $E2E_PASSES checks passed, $E2E_FAILS failed${C_END} (${dt}s)"
    local c
    for c in "${E2E_FAILED_CHECKS[@]}"; do echo "  failed: $c"; done
    exit 1
}

# --- helpers for the proxy front-end tests (clients.sh, udp.sh, load.sh) -----

# proc_rss_kib PID / proc_hwm_kib PID : VmRSS / VmHWM (peak) in KiB.
proc_rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
proc_hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }

# e2e_is_asan : the mesh-proxy under test is built with AddressSanitizer.
# Not `ldd | grep -q`: under pipefail, grep leaving at the first match can
# make ldd die of SIGPIPE and the pipeline report "no".
e2e_is_asan() {
    local l
    l=$(ldd "$MESH_PROXY" 2>/dev/null)
    [[ $l == *libasan* ]]
}

# nsx_nobody_nofile TAG N CMD... : like nsx_nobody, with the soft open-file
# limit raised to N (at most the hard limit) for CMD only.
nsx_nobody_nofile() {
    local n
    n=$(ns "$1") || return 1
    local lim=$2
    shift 2
    nsenter "--net=/run/netns/$n" -- bash -c 'ulimit -Sn "$1" 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"; shift; exec "$@"' \
        nofile "$lim" "${AS_NOBODY[@]}" "$@"
}

# mesh_status_json NAME TAG : the node's `status --json` on stdout.
mesh_status_json() { mesh_cli "$1" "$2" status --json; }

# frontend_counter NAME TAG MATCH FIELD : FIELD (e.g. bytes_down, accepted,
# err_limit or limit) summed over the front-ends of node NAME whose kind or
# listen/description contains MATCH; "none" when no front-end matches or the
# field is missing. err_X is also looked up as X in an "errors" object.
frontend_counter() {
    mesh_status_json "$1" "$2" | python3 -c '
import json, sys
match, field = sys.argv[1], sys.argv[2]
try:
    doc = json.load(sys.stdin)
except ValueError:
    print("none"); sys.exit(0)
total, seen = 0, False
for fe in doc.get("frontends", []):
    if not any(match in str(v) for v in fe.values() if isinstance(v, str)):
        continue
    errs = fe.get("errors", {}) if isinstance(fe.get("errors"), dict) else {}
    short = field[4:] if field.startswith("err_") else field
    for v in (fe.get(field), errs.get(short), errs.get(field)):
        if isinstance(v, int):
            total += v; seen = True; break
print(total if seen else "none")' "$3" "$4"
}

# counter_at_least NAME TAG MATCH FIELD MIN : the counter is >= MIN.
counter_at_least() {
    local v
    v=$(frontend_counter "$1" "$2" "$3" "$4")
    echo "$3 $4 = $v (want >= $5)"
    [ "$v" != none ] && [ "$v" -ge "$5" ]
}

# counter_equals NAME TAG MATCH FIELD VALUE : the counter is exactly VALUE.
counter_equals() {
    local v
    v=$(frontend_counter "$1" "$2" "$3" "$4")
    echo "$3 $4 = $v (want $5)"
    [ "$v" = "$5" ]
}

# mesh_log_clean NAME : no sanitizer report in node NAME's log.
mesh_log_clean() {
    ! grep -E -m 5 'ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:' "$E2E_LOGDIR/$1.log"
}

# mesh_pair_keys : AKEY BKEY APUB BPUB for two nodes.
mesh_pair_keys() {
    AKEY=$("$MESH_PROXY" genkey) || die "mesh-proxy genkey failed"
    BKEY=$("$MESH_PROXY" genkey) || die "mesh-proxy genkey failed"
    APUB=$(echo "$AKEY" | "$MESH_PROXY" pubkey) || die "mesh-proxy pubkey failed"
    BPUB=$(echo "$BKEY" | "$MESH_PROXY" pubkey) || die "mesh-proxy pubkey failed"
}

# mesh_stop_both : both nodes still running, then SIGTERM each (exit 0
# expected) and no sanitizer report in their logs.
mesh_stop_both() {
    local n
    for n in "$@"; do
        check "$n still running" bg_alive "$n"
    done
    for n in "$@"; do
        bg_term_status "$n" 5
        case $BG_STATUS in
        0) pass "$n exited with status 0 after SIGTERM" ;;
        *) fail "$n after SIGTERM: $BG_STATUS" ;;
        esac
        check "$n: no sanitizer report in its log" mesh_log_clean "$n"
    done
}

# pp2_says NS HOST PORT SRC DST : through NS's SOCKS5 on 127.0.0.1:1080, a
# line to HOST:PORT (a pp2_server.py behind a PROXY v2 hop) is answered
# with the header it read, naming SRC as the source and DST:PORT as the
# destination, then the line itself.
pp2_says() {
    local got
    got=$(nsx_nobody "$1" timeout 20 "${PY:-python3}" "$E2E_DIR/socks_cat.py" 1080 "$2" "$3" hello-pp2) || {
        echo "$got"
        return 1
    }
    echo "$got"
    echo "$got" | head -n 1 | grep -qE "^PP2 PROXY src=${4//./\\.}:[0-9]+ dst=${5//./\\.}:$3\$" &&
        [ "$(echo "$got" | sed -n 2p)" = hello-pp2 ]
}
