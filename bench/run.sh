#!/usr/bin/env bash
# bench/run.sh BUILD_DIR [--quick] [--runs N] [--secs S]
#
# Throughput and latency of mesh-proxy next to wireguard-go, measured in the
# same run, in two network namespaces joined by a veth pair (needs root).
# Writes bench/results/latest.md. See bench/README.md for the method.
#
#   A 198.18.0.1 (clients)                     B 198.18.0.2 (servers)
#   wg-go    10.77.0.1  UDP 51820   <------>   wg-go 10.77.0.2 UDP 51820
#   meshC    10.77.0.3  UDP 51821   <------>   wg-go 10.77.0.2            (c)
#   meshDA   10.77.0.5  UDP 51823   <------>   meshDB 10.77.0.4 UDP 51822 (d)
#   servers in B: iperf3 -s on :5201, tcpbench.py server on :5202 (all
#   addresses; meshDB exposes both with [TCPServerTunnel] to 127.0.0.1)
set -u
E2E_NAME=bench
. "$(dirname "$0")/../tests/e2e/lib.sh"

usage() {
    echo "usage: $0 BUILD_DIR [--quick] [--runs N] [--secs S]" >&2
    exit 2
}
BUILD=""
RUNS=3
SECS=3
PINGS=200
MESH_PINGS=20
while [ $# -gt 0 ]; do
    case $1 in
    --quick) RUNS=1 SECS=2 PINGS=50 MESH_PINGS=5 ;;
    --runs) RUNS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    -*) usage ;;
    *) BUILD=$1 ;;
    esac
    shift
done
[ -n "$BUILD" ] || usage
MESH_BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || MESH_BUILD=$BUILD
MESH_PROXY="$MESH_BUILD/mesh-proxy"
export MESH_LOG_LEVEL=info
[ "$(id -u)" -eq 0 ] || { echo "bench needs root (network namespaces)"; exit 77; }
e2e_require_cmd ip wg wireguard-go iperf3 python3 ping setpriv ss
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
TB="$E2E_ROOT/bench/tcpbench.py"
OUT="$E2E_ROOT/bench/results/latest.md"
e2e_tmp_init
cp "$TB" "$E2E_TMP/tcpbench.py" && chmod 0644 "$E2E_TMP/tcpbench.py"
TB="$E2E_TMP/tcpbench.py"

HAVE_MESH=1
if ! [ -x "$MESH_PROXY" ]; then
    HAVE_MESH=0
    info "no $MESH_PROXY: measuring the reference paths only"
fi

step "topology"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
nsx A ping -c 1 -W 2 198.18.0.2 >/dev/null || die "veth does not work"

for k in wa wb; do wg_genkey "$E2E_TMP/$k.key"; done
WA_PUB=$(wg pubkey <"$E2E_TMP/wa.key")
WB_PUB=$(wg pubkey <"$E2E_TMP/wb.key")
WGA=$(wg_ifname a)
WGB=$(wg_ifname b)
wggo_start wgA A "$WGA" 10.77.0.1/24 51820 "$E2E_TMP/wa.key"
wggo_start wgB B "$WGB" 10.77.0.2/24 51820 "$E2E_TMP/wb.key"
nsx A wg set "$WGA" peer "$WB_PUB" allowed-ips 10.77.0.2/32 endpoint 198.18.0.2:51820
nsx B wg set "$WGB" peer "$WA_PUB" allowed-ips 10.77.0.1/32

bg iperfB B iperf3 -s -p 5201
bg tcpbB B $PY "$TB" server 0.0.0.0 5202
wait_listen B 5201 || die "iperf3 server did not start"
wait_listen B 5202 || die "tcpbench server did not start"
nsx A ping -c 2 -W 2 10.77.0.2 >/dev/null || die "wireguard-go <-> wireguard-go does not work"

mesh_ok_c=0
mesh_ok_d=0
if [ $HAVE_MESH -eq 1 ]; then
    C_KEY=$("$MESH_PROXY" genkey) && DA_KEY=$("$MESH_PROXY" genkey) && DB_KEY=$("$MESH_PROXY" genkey) ||
        die "mesh-proxy genkey failed"
    C_PUB=$(echo "$C_KEY" | "$MESH_PROXY" pubkey)
    DA_PUB=$(echo "$DA_KEY" | "$MESH_PROXY" pubkey)
    DB_PUB=$(echo "$DB_KEY" | "$MESH_PROXY" pubkey)
    nsx B wg set "$WGB" peer "$C_PUB" allowed-ips 10.77.0.3/32
    write_file "$E2E_TMP/c.conf" <<EOF
[Interface]
PrivateKey = $C_KEY
Address = 10.77.0.3/32
ListenPort = 51821
MTU = 1420

[Peer]
PublicKey = $WB_PUB
Endpoint = 198.18.0.2:51820
AllowedIPs = 10.77.0.2/32

[Socks5]
BindAddress = 127.0.0.1:1081

[TCPClientTunnel]
BindAddress = 127.0.0.1:15201
Target = 10.77.0.2:5201

[TCPClientTunnel]
BindAddress = 127.0.0.1:15202
Target = 10.77.0.2:5202
EOF
    write_file "$E2E_TMP/da.conf" <<EOF
[Interface]
PrivateKey = $DA_KEY
Address = 10.77.0.5/32
ListenPort = 51823
MTU = 1420

[Peer]
PublicKey = $DB_PUB
Endpoint = 198.18.0.2:51822
AllowedIPs = 10.77.0.4/32

[Socks5]
BindAddress = 127.0.0.1:1082

[TCPClientTunnel]
BindAddress = 127.0.0.1:15301
Target = 10.77.0.4:5201

[TCPClientTunnel]
BindAddress = 127.0.0.1:15302
Target = 10.77.0.4:5202
EOF
    write_file "$E2E_TMP/db.conf" <<EOF
[Interface]
PrivateKey = $DB_KEY
Address = 10.77.0.4/32
ListenPort = 51822
MTU = 1420

[Peer]
PublicKey = $DA_PUB
AllowedIPs = 10.77.0.5/32

[TCPServerTunnel]
ListenPort = 5201
Target = 127.0.0.1:5201

[TCPServerTunnel]
ListenPort = 5202
Target = 127.0.0.1:5202
EOF
    mesh_start meshC A "$E2E_TMP/c.conf"
    mesh_start meshDB B "$E2E_TMP/db.conf"
    mesh_start meshDA A "$E2E_TMP/da.conf"
    if wait_listen A 15202 10 && mesh_cli meshC A ping -c 2 -W 5 10.77.0.2 >/dev/null 2>&1; then
        mesh_ok_c=1
    else
        info "path (c) mesh-proxy -> wireguard-go does not work; see $E2E_LOGDIR/meshC.log"
    fi
    if wait_listen A 15302 10 && mesh_cli meshDA A ping -c 2 -W 5 10.77.0.4 >/dev/null 2>&1; then
        mesh_ok_d=1
    else
        info "path (d) mesh-proxy <-> mesh-proxy does not work; see $E2E_LOGDIR/meshDA.log"
    fi
fi

# --- measurement helpers ------------------------------------------------------
median() { tr ' ' '\n' | grep -E '^[0-9.]+$' | sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) print "fail"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

iperf_once() { # HOST PORT [-R]
    nsx A timeout $((SECS + 20)) iperf3 -c "$1" -p "$2" -t "$SECS" -J ${3:-} 2>/dev/null |
        $PY -c 'import json,sys; d=json.load(sys.stdin); print("%.1f" % (d["end"]["sum_received"]["bits_per_second"] / 1e6))' 2>/dev/null
}
tb_once() { # up|down HOST PORT [SOCKS]
    local s=()
    [ -n "${4:-}" ] && s=(--socks "$4")
    nsx A timeout $((SECS + 20)) $PY "$TB" "$1" "${s[@]}" "$2" "$3" "$SECS" 2>>"$E2E_LOGDIR/tcpbench.log"
}
rr_once() { # HOST PORT [SOCKS] -> median us
    local s=()
    [ -n "${3:-}" ] && s=(--socks "$3")
    nsx A timeout 60 $PY "$TB" rr "${s[@]}" "$1" "$2" "$PINGS" 2>>"$E2E_LOGDIR/tcpbench.log" | cut -d' ' -f1
}
repeat() { # CMD... -> "v1 v2 v3"
    local i out=""
    for ((i = 0; i < RUNS; i++)); do
        out="$out $("$@")"
        sleep 0.5
    done
    echo $out
}
icmp_kernel() { # HOST -> median ms
    nsx A ping -c "$PINGS" -i 0.01 -W 1 "$1" 2>/dev/null | sed -n 's/.*time=\([0-9.]*\).*/\1/p' | tr '\n' ' ' | median
}
icmp_mesh() { # NODE HOST -> median ms (best effort: parses "time=X ms")
    mesh_cli "$1" A ping -c "$MESH_PINGS" -W 2 "$2" 2>/dev/null | sed -n 's/.*time[=<]\([0-9.]*\).*/\1/p' | tr '\n' ' ' | median
}

# UDP datagrams dropped for a full receive buffer, both namespaces together
# (/proc/net/snmp is per network namespace).
udp_drops() {
    local n total=0 v
    for n in A B; do
        v=$(nsx "$n" awk '$1 == "Udp:" { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp)
        total=$((total + ${v:-0}))
    done
    echo $total
}

declare -A R
# measure KEY HOST IPERF_PORT TB_PORT SOCKS ICMP_CMD...
measure() {
    local key=$1 host=$2 iport=$3 tport=$4 socks=$5
    shift 5
    step "measuring: $key"
    local drops0
    drops0=$(udp_drops)
    if [ -n "$iport" ]; then
        R[$key.iup.all]=$(repeat iperf_once "$host" "$iport")
        R[$key.idown.all]=$(repeat iperf_once "$host" "$iport" -R)
    fi
    R[$key.tup.all]=$(repeat tb_once up "$host" "$tport" "$socks")
    R[$key.tdown.all]=$(repeat tb_once down "$host" "$tport" "$socks")
    R[$key.rr.all]=$(repeat rr_once "$host" "$tport" "$socks")
    R[$key.icmp]=$("$@")
    R[$key.drops]=$(($(udp_drops) - drops0))
    local m
    for m in iup idown tup tdown rr; do
        [ -n "${R[$key.$m.all]+x}" ] || continue
        R[$key.$m]=$(echo "${R[$key.$m.all]}" | median)
        info "$m: ${R[$key.$m.all]:-fail} -> median ${R[$key.$m]}"
    done
    info "icmp median: ${R[$key.icmp]} ms; UDP receive-buffer drops: ${R[$key.drops]}"
}

measure raw 198.18.0.2 5201 5202 "" icmp_kernel 198.18.0.2
measure wggo 10.77.0.2 5201 5202 "" icmp_kernel 10.77.0.2
if [ $mesh_ok_c -eq 1 ]; then
    measure c_tun 127.0.0.1 15201 15202 "" icmp_mesh meshC 10.77.0.2
    measure c_socks 10.77.0.2 "" 5202 127.0.0.1:1081 echo -
fi
if [ $mesh_ok_d -eq 1 ]; then
    measure d_tun 127.0.0.1 15301 15302 "" icmp_mesh meshDA 10.77.0.4
    measure d_socks 10.77.0.4 "" 5202 127.0.0.1:1082 echo -
fi

# --- report ---------------------------------------------------------------------
ratio() { # A B -> A/B with 2 decimals
    awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'
}
v() { echo "${R[$1]:--}"; }
row() { # KEY LABEL
    local k=$1 up
    up=$(v "$k.iup")
    local up_ratio rr_ratio
    if [ "$up" != - ]; then
        up_ratio="$(ratio "$up" "$(v wggo.iup)") (iperf3)"
    else
        up_ratio="$(ratio "$(v "$k.tup")" "$(v wggo.tup)") (tcpbench)"
    fi
    rr_ratio=$(ratio "$(v "$k.rr")" "$(v wggo.rr)")
    echo "| $2 | $(v "$k.iup") | $(v "$k.idown") | $(v "$k.tup") | $(v "$k.tdown") | $(v "$k.rr") | $(v "$k.icmp") | $up_ratio | $rr_ratio | $(v "$k.drops") |"
}
missing_row() { echo "| $1 | not measured: $2 | | | | | | | | |"; }

mkdir -p "$(dirname "$OUT")"
{
    echo "# Benchmark: mesh-proxy next to wireguard-go"
    echo
    echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bench/run.sh\` (method: bench/README.md)."
    echo "Commit $(git -C "$E2E_ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$E2E_ROOT" diff --quiet HEAD 2>/dev/null || echo ' (with local changes)'),"
    echo "$(nproc) CPUs ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)), kernel $(uname -r),"
    echo "$(wireguard-go --version 2>/dev/null | head -1), $(iperf3 --version | head -1 | cut -d' ' -f1-2)."
    echo "Throughput: single TCP stream, ${SECS} s, median of $RUNS runs; up = client in A sends to server in B."
    echo "TCP RR: median round trip (µs) of a 1-byte request/answer over one established connection, $PINGS per run, median of $RUNS runs."
    echo "UDP drops: datagrams dropped for a full socket receive buffer in either namespace during all of the path's measurements."
    echo "ICMP: median of $PINGS kernel pings (veth, wireguard-go) or $MESH_PINGS \`mesh-proxy ping\` probes (ms); not comparable between the two kinds, see README."
    echo
    echo "| path | iperf3 up Mbit/s | iperf3 down Mbit/s | tcpbench up Mbit/s | tcpbench down Mbit/s | TCP RR µs | ICMP ms | up ÷ wg-go | RR ÷ wg-go | UDP drops |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    row raw "(a) raw veth"
    row wggo "(b) wireguard-go ↔ wireguard-go"
    if [ $mesh_ok_c -eq 1 ]; then
        row c_tun "(c) mesh-proxy → wireguard-go, TCPClientTunnel"
        row c_socks "(c) mesh-proxy → wireguard-go, SOCKS5"
    else
        missing_row "(c) mesh-proxy → wireguard-go" "$([ $HAVE_MESH -eq 1 ] && echo 'path did not work' || echo 'no mesh-proxy binary')"
    fi
    if [ $mesh_ok_d -eq 1 ]; then
        row d_tun "(d) mesh-proxy ↔ mesh-proxy, TCPClientTunnel"
        row d_socks "(d) mesh-proxy ↔ mesh-proxy, SOCKS5"
    else
        missing_row "(d) mesh-proxy ↔ mesh-proxy" "$([ $HAVE_MESH -eq 1 ] && echo 'path did not work' || echo 'no mesh-proxy binary')"
    fi
    echo
    echo "<details><summary>every run</summary>"
    echo
    echo '```'
    for k in raw wggo c_tun c_socks d_tun d_socks; do
        for m in iup idown tup tdown rr; do
            [ -n "${R[$k.$m.all]+x}" ] && printf '%-8s %-6s %s\n' "$k" "$m" "${R[$k.$m.all]}"
        done
    done
    echo '```'
    echo "</details>"
} >"$OUT"
echo
cat "$OUT"
echo
info "written to $OUT"
