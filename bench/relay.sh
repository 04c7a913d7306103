#!/usr/bin/env bash
# bench/relay.sh BUILD_DIR [--quick] [--runs N] [--secs S]
#
# The relay part: what a pair of nodes moves through mesh-relay, next to raw
# loopback TCP and to the same pair on a direct path, in the same run; and
# one relay under 1,000 clients. Records in $BENCH_DATA/relay.tsv (format:
# bench/lib.sh).
#
# Hosts on one LAN (a bridge, 198.18.62.0/24), every program as nobody:
#   R  198.18.62.1  mesh-control :7443, mesh-relay :8441 (region bench)
#   A  198.18.62.11 mesh-proxy up, SOCKS5 127.0.0.1:1082
#   B  198.18.62.12 mesh-proxy up --expose 5202; tcpbench server 127.0.0.1:5202
#
# Figures (tput_256m: one TCP stream, A sends 256 MiB, tcpbench.py up
# --total, the time from the first byte to the server's count of all):
#   loopback     tput_256m  tcpbench client and server on 127.0.0.1 in B:
#                           raw loopback TCP, the same tool (the ceiling)
#   mesh_relay   tput_256m  A's SOCKS5 -> B by name, every UDP datagram of A
#                           and B dropped by nftables: WireGuard over the
#                           relay's TCP; cpu_per_gb: both nodes and the relay;
#                           relay_cpu_per_gb: the relay alone
#   mesh_direct  tput_256m  the same pair with UDP allowed, once the path is
#                           direct (status --json); cpu_per_gb: both nodes
#   relay_load   load_pps, load_cpu, load_rss, load_clients: 1,000 relay
#                           clients (tests/tools/relay-load, one process) on
#                           one mesh-relay, each sending 100 packets/s of
#                           1,200 bytes to the next for S*2 seconds
#                           (default 10): packets/s received, the relay's
#                           CPU (% of one core, /proc/PID/stat) and its RSS
#                           at the end
# --quick: 64 MiB transfers and 200 load clients for 3 s.
set -u
E2E_NAME=bench-relay
. "$(dirname "$0")/lib.sh"

bench_args "$@"
e2e_require_cmd ip nft ping setpriv ss

MC=$MESH_BUILD/mesh-control
MR=$MESH_BUILD/mesh-relay
RL=$MESH_BUILD/tests/relay-load
for b in "$MC" "$MR" "$RL"; do
    [ -x "$b" ] || die "no executable $b (run make first)"
done
if ! "${AS_NOBODY[@]}" test -x "$MR" 2>/dev/null; then
    e2e_nobody_copy "$MC" && MC=$E2E_COPY
    e2e_nobody_copy "$MR" && MR=$E2E_COPY
    e2e_nobody_copy "$RL" && RL=$E2E_COPY
fi
e2e_require_mesh_proxy

TOTAL=$((256 << 20))
LOAD_N=1000
LOAD_PPS=100
LOAD_S=$((SECS * 2))
if [ "$QUICK" = 1 ]; then
    TOTAL=$((64 << 20))
    LOAD_N=200
    LOAD_S=3
fi
RUN=$E2E_TMP/run
D=$RUN/control
RELAY=198.18.62.1:8441
WHY="$E2E_TMP/why"
why() { echo "$*" >"$WHY"; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }

step "hosts: R (mesh-control, mesh-relay), A and B on one LAN"
ns_create R
ns_create A
ns_create B
ns_lan R 198.18.62.1/24
ns_lan A 198.18.62.11/24
ns_lan B 198.18.62.12/24
nsx A ping -c 1 -W 2 198.18.62.1 >/dev/null || die "the LAN does not work"

nsx_nobody R "$MC" --data "$D" init --listen 198.18.62.1:7443 >/dev/null 2>&1 ||
    die "mesh-control init failed"
bg_nobody control R "$MC" --data "$D" serve
wait_listen R 7443 10 || die "mesh-control did not listen"
TOKEN=$(nsx_nobody R "$MC" --data "$D" token --reusable 2>/dev/null | tail -1)
RTOKEN=$(nsx_nobody R "$MC" --data "$D" token --relay 2>/dev/null | tail -1)
# mesh-relay raises its open-file limit to the hard one by itself.
bg_nobody relay R "$MR" up --join "$RTOKEN" --state "$RUN/relay" --listen $RELAY \
    --stun 198.18.62.1:3478 --region bench
RELAY_PID=$BG_PID
wait_listen R 8441 10 || die "mesh-relay did not listen (see $E2E_LOGDIR/relay.log)"

# --- raw loopback ---------------------------------------------------------------

bg_nobody tcpbB B "$PY" "$TB" server 127.0.0.1 5202
wait_listen B 5202 10 || die "tcpbench server did not start"

# up_once NS HOST PORT [OPTIONS] -> "Mbit/s bytes" or nothing
up_once() {
    local ns=$1 host=$2 port=$3 out rc
    shift 3
    out=$(nsx_nobody "$ns" timeout 300 "$PY" "$TB" up --bytes --total "$TOTAL" "$@" \
        "$host" "$port" 280 2>"$E2E_TMP/tb.err")
    rc=$?
    cat "$E2E_TMP/tb.err" >>"$E2E_LOGDIR/tcpbench.log"
    if [ $rc -eq 0 ] && [ -n "$out" ]; then
        echo "$out"
        return 0
    fi
    why "tcpbench: exit $rc $(tail -1 "$E2E_TMP/tb.err")"
    return 1
}

# tput PATH "PIDS" CMD... : RUNS runs; records tput_256m and (with PIDS)
# cpu_per_gb, the CPU of those processes per GB moved; on mesh_relay also
# relay_cpu_per_gb, the relay's share alone.
tput() {
    local path=$1 pids=$2 i p c0 c1 r0 r1 out v="" cpu="" rcpu="" c
    shift 2
    : >"$WHY"
    for ((i = 0; i < RUNS; i++)); do
        c0=0
        for p in $pids; do c0=$(awk -v a="$c0" -v b="$(proc_cpu_s "$p")" 'BEGIN { print a + b }'); done
        r0=$(proc_cpu_s "$RELAY_PID")
        if out=$("$@"); then
            c1=0
            for p in $pids; do c1=$(awk -v a="$c1" -v b="$(proc_cpu_s "$p")" 'BEGIN { print a + b }'); done
            r1=$(proc_cpu_s "$RELAY_PID")
            v="$v ${out%% *}"
            if [ -n "$pids" ]; then
                c=$(awk -v a="$c0" -v b="$c1" -v n="${out#* }" 'BEGIN { printf "%.2f", (b - a) / (n / 1e9) }')
                cpu="$cpu $c"
                c=$(awk -v a="$r0" -v b="$r1" -v n="${out#* }" 'BEGIN { printf "%.2f", (b - a) / (n / 1e9) }')
                rcpu="$rcpu $c"
            fi
        fi
        sleep 0.3
    done
    if [ -z "$v" ]; then
        record_fail "$path" tput_256m Mbit/s "$(cat "$WHY")"
        [ -n "$pids" ] && record_fail "$path" cpu_per_gb s/GB "no run: $(cat "$WHY")"
        return 1
    fi
    # shellcheck disable=SC2086 # one value per run
    record "$path" tput_256m Mbit/s $v
    # shellcheck disable=SC2086
    [ -n "$pids" ] && record "$path" cpu_per_gb s/GB $cpu
    # shellcheck disable=SC2086
    [ "$path" = mesh_relay ] && record "$path" relay_cpu_per_gb s/GB $rcpu
    return 0
}

step "raw loopback TCP in B: $((TOTAL >> 20)) MiB, tcpbench"
tput loopback "" up_once B 127.0.0.1 5202

# --- the pair -------------------------------------------------------------------

udp_block() {
    nsx "$1" nft -f - <<'EOF'
table inet bench_udp {
    chain out {
        type filter hook output priority 0; policy accept;
        oifname "lan0" meta l4proto udp drop
    }
    chain in {
        type filter hook input priority 0; policy accept;
        iifname "lan0" meta l4proto udp drop
    }
}
EOF
}
udp_unblock() { nsx "$1" nft delete table inet bench_udp; }

# path_of NODE PEER -> the node's path to the peer ("relay", "direct", None)
path_of() {
    mp status --state "$RUN/$1" --json 2>/dev/null | "$PY" -c "
import json, sys
j = json.load(sys.stdin).get('mesh') or {}
for p in j.get('peers', []):
    for k in ('name', 'hostname', 'dns_name', 'fqdn'):
        v = p.get(k)
        if isinstance(v, str) and (v == '$2' or v.startswith('$2.')):
            print(p.get('path')); sys.exit(0)
print(None)"
}
path_is() { [ "$(path_of "$1" "$2")" = "$3" ]; }

step "the pair, UDP blocked: A -> B through the relay"
udp_block A && udp_block B || die "nft failed"
bg_nobody nodeA A "$MESH_PROXY" up --join "$TOKEN" --state "$RUN/A" --hostname a \
    --socks5 127.0.0.1:1082 --log-level warn
MESH_PID_A=$BG_PID
bg_nobody nodeB B "$MESH_PROXY" up --join "$TOKEN" --state "$RUN/B" --hostname b \
    --expose 5202 --log-level warn
MESH_PID_B=$BG_PID
wait_until 20 mp ip --state "$RUN/A" && wait_until 20 mp ip --state "$RUN/B" ||
    die "the nodes did not join (see $E2E_LOGDIR/nodeA.log)"
# The first connection waits for both homes (the peers learn them from
# mesh-control) and the handshake through the relay.
t0=$(date +%s)
if wait_until 90 nsx_nobody A timeout 5 "$PY" "$TB" rr --socks 127.0.0.1:1082 b 5202 3; then
    info "A reached B through the relay $(($(date +%s) - t0)) s after the nodes joined"
else
    info "A does not reach B 90 s after the nodes joined"
fi
if wait_until 10 path_is A b relay; then
    tput mesh_relay "$MESH_PID_A $MESH_PID_B $RELAY_PID" up_once A b 5202 --socks 127.0.0.1:1082
else
    record_fail mesh_relay tput_256m Mbit/s "A's path to B is $(path_of A b), not relay"
fi

step "the same pair, UDP allowed: direct"
udp_unblock A
udp_unblock B
bg_nobody pinger A "$MESH_PROXY" ping --state "$RUN/A" -c 150 -i 0.2 -W 2 b
if wait_until 30 path_is A b direct; then
    bg_stop pinger
    tput mesh_direct "$MESH_PID_A $MESH_PID_B" up_once A b 5202 --socks 127.0.0.1:1082
else
    record_fail mesh_direct tput_256m Mbit/s "A's path to B did not become direct in 30 s (it is $(path_of A b))"
fi
bg_stop pinger
bg_stop nodeA
bg_stop nodeB

# --- 1,000 clients ----------------------------------------------------------------

step "$LOAD_N relay clients on one relay (tests/tools/relay-load), ${LOAD_S} s"
pps="" cpu="" rss="" clients=""
for ((i = 0; i < RUNS; i++)); do
    out=$(nsx_nobody_nofile R 65536 "$RL" --token "$TOKEN" --relay $RELAY -n $LOAD_N --seconds $LOAD_S \
        --pps $LOAD_PPS --pid "$RELAY_PID" 2>>"$E2E_LOGDIR/relay-load.log")
    echo "$out" >>"$E2E_LOGDIR/relay-load.log"
    info "$out"
    kv() { sed -n "s/.*\\b$1=\\([0-9.]*\\).*/\\1/p" <<<"$out"; }
    if [ -n "$(kv recv_pps)" ] && [ "$(kv connected)" = "$LOAD_N" ]; then
        pps="$pps $(kv recv_pps)" cpu="$cpu $(kv cpu_pct)" rss="$rss $(kv rss_kib)"
        clients="$clients $(kv connected)"
    else
        why "relay-load: $(tail -1 "$E2E_LOGDIR/relay-load.log")"
    fi
done
if [ -n "$pps" ]; then
    # shellcheck disable=SC2086 # one value per run
    record relay_load load_pps packets/s $pps
    # shellcheck disable=SC2086
    record relay_load load_cpu % $cpu
    # shellcheck disable=SC2086
    record relay_load load_rss KiB $rss
    # shellcheck disable=SC2086
    record relay_load load_clients clients $clients
else
    record_fail relay_load load_pps packets/s "$(cat "$WHY")"
fi

e2e_finish
