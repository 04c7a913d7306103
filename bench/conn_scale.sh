#!/usr/bin/env bash
# bench/conn_scale.sh BUILD_DIR [--base BUILD_DIR] [--conns N] [--runs R]
#                     [--secs S] [--out FILE]
#
# What idle connections cost (review wireguard-and-netstack H2: the
# netstack's work per segment and per timer tick grows with connections):
# a mesh-proxy pair (A 100.77.0.5 -> B 100.77.0.4, the bench topology), and
# for each build (BUILD_DIR, and --base BUILD_DIR measured in the same run
# for a before/after ratio):
#   tput0    one iperf3 stream A -> B through A's [TCPClientTunnel]
#            (127.0.0.1:15301 -> B:5201), Mbit/s, median of R runs of S s
#   cpu0     CPU of each node over 10 s with nothing open (% of a core)
#   cpuN     the same with N (5,000) idle spliced connections open
#            (127.0.0.1:15303 -> B:5203, a server that holds them)
#   tputN    tput0 again with the N connections open
# B allows N connections from A (MaxConnectionsPerPeer = 0 when the build
# knows the key). CONN_SCALE_PERF=1 adds perf's top symbols of B idle with
# the connections open. Writes a Markdown table to FILE (default
# bench/results/conn-scale.md). Needs root (namespaces), about 2 minutes per
# build.
set -u
E2E_NAME=bench-conn-scale
BUILD=""
BASE=""
CONNS=5000
RUNS=3
SECS=5
OUT=""
while [ $# -gt 0 ]; do
    case $1 in
    --base) BASE=$2; shift ;;
    --conns) CONNS=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --out) OUT=$2; shift ;;
    -*) echo "usage: $0 BUILD_DIR [--base BUILD_DIR] [--conns N] [--runs R] [--secs S] [--out FILE]" >&2; exit 2 ;;
    *) BUILD=$1 ;;
    esac
    shift
done
[ -n "$BUILD" ] || { echo "usage: $0 BUILD_DIR [--base BUILD_DIR] ..." >&2; exit 2; }
. "$(dirname "$0")/../tests/e2e/lib.sh"
[ -n "$OUT" ] || OUT=$E2E_ROOT/bench/results/conn-scale.md
e2e_require_root
e2e_require_cmd ip iperf3 prlimit setpriv ss
e2e_tmp_init
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
IC="$E2E_TMP/idle_conns.py"
NOFILE=$(ulimit -Hn)
[ "$NOFILE" = unlimited ] && NOFILE=1048576
[ "$NOFILE" -ge $((CONNS + 100)) ] || die "the open-file limit ($NOFILE) is below $CONNS connections"
cp "$E2E_ROOT/bench/idle_conns.py" "$IC" && chmod 0644 "$IC"
export MESH_LOG_LEVEL=warn

median() { tr -s ' \t' '\n\n' | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "fail"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }

# cpu_pct PID... : each process's CPU over 10 s, % of one core.
cpu_pct() {
    local hz p out=""
    hz=$(getconf CLK_TCK)
    declare -A t0
    for p in "$@"; do t0[$p]=$(cpu_ticks "$p"); done
    sleep 10
    for p in "$@"; do
        out="$out $(awk -v a="${t0[$p]}" -v b="$(cpu_ticks "$p")" -v hz="$hz" 'BEGIN { printf "%.1f", (b - a) / hz * 10 }')"
    done
    echo $out
}

# tput : median Mbit/s of RUNS single-stream iperf3 runs A -> B.
tput() {
    local i v out=""
    for ((i = 0; i < RUNS; i++)); do
        v=$(nsx A timeout $((SECS + 20)) iperf3 -c 127.0.0.1 -p 15301 -t "$SECS" -J 2>/dev/null |
            $PY -c 'import json, sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6))' 2>/dev/null)
        out="$out ${v:-fail}"
        sleep 0.3
    done
    echo "$out" | median
}

step "topology: namespaces A and B, veth 198.18.0.1 <-> 198.18.0.2"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
nsx A ping -c 1 -W 2 198.18.0.2 >/dev/null || die "veth does not work"
bg iperfB B iperf3 -s -p 5201
bg holdB B prlimit --nofile=$NOFILE:$NOFILE -- "${AS_NOBODY[@]}" $PY "$IC" server 5203
wait_listen B 5201 || die "iperf3 server did not start"
wait_listen B 5203 || die "idle-connection server did not start"

# spliced_at_least N : B holds N connections to the idle server.
spliced_at_least() {
    [ "$(nsx B ss -Htn state established '( dport = :5203 )' | wc -l)" -ge "$1" ]
}

ROWS=()
PERF=()
# measure LABEL BUILD_DIR : one build's row.
measure() {
    local label=$1 dir=$2 ka kb pa pb cap="" pA pB t0 c0 cn tn
    MESH_PROXY=$(cd "$dir" && pwd)/mesh-proxy
    e2e_require_mesh_proxy
    step "$label: $MESH_PROXY"
    ka=$(genkey) && kb=$(genkey) || die "genkey failed"
    pa=$(echo "$ka" | pubkey)
    pb=$(echo "$kb" | pubkey)
    grep -q MaxConnectionsPerPeer "$MESH_PROXY" && cap="MaxConnectionsPerPeer = 0"
    write_file "$E2E_TMP/$label-A.conf" <<EOF
[Interface]
PrivateKey = $ka
Address = 100.77.0.5/32
ListenPort = 51823

[Peer]
PublicKey = $pb
Endpoint = 198.18.0.2:51822
AllowedIPs = 100.77.0.4/32

[TCPClientTunnel]
BindAddress = 127.0.0.1:15301
Target = 100.77.0.4:5201

[TCPClientTunnel]
BindAddress = 127.0.0.1:15303
Target = 100.77.0.4:5203
EOF
    write_file "$E2E_TMP/$label-B.conf" <<EOF
[Interface]
PrivateKey = $kb
Address = 100.77.0.4/32
ListenPort = 51822
$cap

[Peer]
PublicKey = $pa
AllowedIPs = 100.77.0.5/32

[TCPServerTunnel]
ListenPort = 5201
Target = 127.0.0.1:5201

[TCPServerTunnel]
ListenPort = 5203
Target = 127.0.0.1:5203
EOF
    mesh_start "meshB-$label" B "$E2E_TMP/$label-B.conf"
    pB=$BG_PID
    mesh_start "meshA-$label" A "$E2E_TMP/$label-A.conf"
    pA=$BG_PID
    wait_listen A 15303 10 || die "mesh-proxy A ($label) did not start"
    mesh_cli "meshA-$label" A ping -c 2 -W 5 100.77.0.4 >/dev/null 2>&1 || die "the pair ($label) does not work"
    t0=$(tput)
    c0=$(cpu_pct "$pA" "$pB")
    info "$label: 0 idle: $t0 Mbit/s; CPU A B: $c0 %"
    bg "idle-$label" A prlimit --nofile=$NOFILE:$NOFILE -- "${AS_NOBODY[@]}" $PY "$IC" client 15303 "$CONNS"
    wait_log "$E2E_LOGDIR/idle-$label.log" "^open $CONNS" 120 || die "$CONNS idle connections did not open ($label)"
    wait_until 60 spliced_at_least "$CONNS" || die "B did not splice $CONNS connections ($label)"
    sleep 3
    cn=$(cpu_pct "$pA" "$pB")
    if [ -n "${CONN_SCALE_PERF:-}" ] && command -v perf >/dev/null; then
        # Where B's idle CPU goes with the connections open.
        perf record -q -o "$E2E_TMP/perf-$label.data" -p "$pB" -- sleep 10 >/dev/null 2>&1
        perf report -q -i "$E2E_TMP/perf-$label.data" --stdio --sort symbol 2>/dev/null |
            grep -E '^ +[0-9]' | head -n 8 >"$E2E_TMP/perf-$label.txt"
        PERF+=("$label" "$(cat "$E2E_TMP/perf-$label.txt")")
    fi
    tn=$(tput)
    info "$label: $CONNS idle: $tn Mbit/s; CPU A B: $cn %"
    ROWS+=("| $label | $t0 | $tn | $(awk -v a="$t0" -v b="$tn" 'BEGIN { if (a > 0) printf "%.2f", b / a; else print "-" }') | ${c0// / / } | ${cn// / / } |")
    bg_stop "idle-$label"
    bg_stop "meshA-$label"
    bg_stop "meshB-$label"
    sleep 1
}

[ -n "$BASE" ] && measure before "$BASE"
measure after "$BUILD"

{
    echo "# Idle connections: throughput and CPU"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores; \`bench/conn_scale.sh\` (review H2)."
    echo "A mesh-proxy pair in namespaces (the bench topology); one iperf3 stream"
    echo "A -> B through A's [TCPClientTunnel] ($SECS s, median of $RUNS), with nothing"
    echo "else open and with $CONNS idle spliced connections open (A's tunnel to a"
    echo "server in B that holds them); CPU of each node over 10 s idle."
    echo
    echo "| build | Mbit/s, 0 idle | Mbit/s, $CONNS idle | ratio | idle CPU % A / B, 0 conns | idle CPU % A / B, $CONNS conns |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: |"
    printf '%s\n' "${ROWS[@]}"
    for ((i = 0; i < ${#PERF[@]}; i += 2)); do
        echo
        echo "Where B's CPU went with $CONNS idle connections (${PERF[i]}; perf, 10 s, top symbols):"
        echo
        echo '```'
        echo "${PERF[i + 1]}"
        echo '```'
    done
} >"$OUT"
cat "$OUT"
e2e_finish
