# bench/lib.sh: what the benchmark parts share. A part is a script
# bench/PART.sh that sets E2E_NAME=bench-PART, sources this file, calls
# bench_args "$@", builds what it needs with the functions below, measures,
# and writes its figures with `record`. bench/run.sh runs every part and
# bench/report.py turns the records into bench/results/latest.md and a chart.
#
# Parts run one after another, never side by side (each owns the machine
# while it measures); each makes its own namespaces, which the EXIT trap of
# tests/e2e/lib.sh removes.
#
# Usage of a part:  bench/PART.sh BUILD_DIR [--quick] [--runs N] [--secs S]
#   --quick    one run, short durations (a check that the part works)
#   --runs N   repetitions of every figure (default 3; the report takes the
#              median)
#   --secs S   seconds per throughput measurement (default 5)
#
# Records: $BENCH_DATA/PART.tsv, one line per figure:
#   PATH <TAB> METRIC <TAB> UNIT <TAB> v1 v2 ... (one value per run)
# or, when a figure could not be measured:
#   PATH <TAB> METRIC <TAB> UNIT <TAB> fail: REASON
# PATH is one of the names in BENCH_PATHS below; METRIC one of
# BENCH_METRICS. A part truncates its own file when it starts.
#
# Topology (bench_topology): namespaces A (clients, 198.18.0.1) and B
# (servers, 198.18.0.2) joined by a veth pair. Tunnel addresses:
#   wireguard-go   A 100.77.0.1   B 100.77.0.2   UDP 51820 (both)
#   Nebula         A 100.78.0.1   B 100.78.0.2   UDP 4242 (both)
#   mesh-proxy     A 100.77.0.5   B 100.77.0.4   UDP 51823 / 51822
#   mesh-proxy A forwards 127.0.0.1:15301 -> 100.77.0.4:5201 and
#   127.0.0.1:15302 -> 100.77.0.4:5202, SOCKS5 127.0.0.1:1082, HTTP proxy
#   127.0.0.1:3129; mesh-proxy B has [TCPServerTunnel]s for 5201, 5202
#   and BENCH_EXTRA_PORTS to the same port on 127.0.0.1 in B.
# Every mesh-proxy runs as nobody.

# shellcheck disable=SC2034 # read by the parts
BENCH_PATHS="raw wggo nebula mesh_fwd mesh_socks mesh_http microsocks mesh_socks_local crypto loopback mesh_relay mesh_direct relay_load"
# raw            the veth itself (ceiling)
# wggo           wireguard-go <-> wireguard-go (kernel TCP both ends)
# nebula         Nebula <-> Nebula
# mesh_fwd       mesh-proxy <-> mesh-proxy through A's [TCPClientTunnel]
# mesh_socks     mesh-proxy <-> mesh-proxy through A's SOCKS5
# mesh_http      mesh-proxy <-> mesh-proxy through A's HTTP proxy
# microsocks     Debian's microsocks on loopback, no mesh
# mesh_socks_local mesh-proxy's SOCKS5 on loopback to a server in B over
#                the veth (Direct; never this host's own addresses), no
#                mesh: the front-end alone, next to microsocks (which
#                reaches the same server)
# crypto         the crypto ceiling (no network)
# loopback       raw loopback TCP in one namespace (bench/relay.sh)
# mesh_relay     mesh-proxy <-> mesh-proxy through mesh-relay, UDP blocked
# mesh_direct    the same pair of joined nodes on their direct path
# relay_load     one mesh-relay under many relay clients (relay-load)
BENCH_METRICS="tput1_up tput1_down tput4_up tput4_down cpu_per_gb rtt_median rtt_p99 tcp_rr http_rps ttfb rss_idle_1 rss_idle_1000 rss_conns_1000 rss_conns_closed kib_per_conn crypto_gbps crypto_wg_seal crypto_wg_open tput_256m relay_cpu_per_gb load_pps load_cpu load_rss load_clients"
# tput1_up/down  Mbit/s, iperf3 (tcpbench for SOCKS5/HTTP rows), 1 stream;
#                up = A sends to B
# tput4_up/down  the same with 4 parallel streams
# cpu_per_gb     CPU seconds (user+system) of the VPN processes of both
#                ends per GB moved in tput1_up
# rtt_median/p99 ms, 1,000 ICMP echoes (kernel ping through TUNs;
#                `mesh-proxy ping` through mesh-proxy)
# tcp_rr         µs, median round trip of 1-byte request/answer on one TCP
#                connection (comparable across every path incl. proxies)
# http_rps       requests/s, 1,000 short HTTP requests, a new connection each
# ttfb           ms from starting the node processes to the first byte from
#                a server behind the new peer
# rss_idle_1 / rss_idle_1000   KiB, one process, idle, 1 or 1,000 peers
# rss_conns_1000 KiB with 1,000 open idle connections/SOCKS5 sessions
# rss_conns_closed KiB a few seconds after they closed
# kib_per_conn   (rss_conns_1000 - rss_idle_1) / 1000
# crypto_gbps    Gbit/s of ChaCha20-Poly1305 on 1420-byte packets, one core
#                (libsodium alone)
# crypto_wg_seal / crypto_wg_open  the same through core/wg's seal / open
# tput_256m      Mbit/s, one TCP stream moving 256 MiB (tcpbench up --total)
# relay_cpu_per_gb  CPU seconds of mesh-relay alone per GB in tput_256m
# load_pps       packets/s received by all relay-load clients together
# load_cpu       % of one core the relay used during the load
# load_rss       KiB, the relay's RSS at the end of the load
# load_clients   relay clients connected

set -u
. "$(dirname "${BASH_SOURCE[0]}")/../tests/e2e/lib.sh"

BENCH_DATA=${BENCH_DATA:-$E2E_ROOT/bench/results/data}
BENCH_PART=${E2E_NAME#bench-}
RUNS=3
SECS=5
QUICK=0
BENCH_EXTRA_PORTS=${BENCH_EXTRA_PORTS:-}

bench_usage() {
    echo "usage: $0 BUILD_DIR [--quick] [--runs N] [--secs S]" >&2
    exit 2
}

# bench_args "$@": sets MESH_BUILD, MESH_PROXY, RUNS, SECS, QUICK; needs
# root; makes the record file and the temporary directory.
bench_args() {
    local build=""
    while [ $# -gt 0 ]; do
        case $1 in
        --quick) QUICK=1 RUNS=1 SECS=2 ;;
        --runs) RUNS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        -*) bench_usage ;;
        *) build=$1 ;;
        esac
        shift
    done
    [ -n "$build" ] || bench_usage
    MESH_BUILD=$(cd "$build" 2>/dev/null && pwd) || MESH_BUILD=$build
    MESH_PROXY="$MESH_BUILD/mesh-proxy"
    export MESH_LOG_LEVEL=${MESH_LOG_LEVEL:-warn}
    [ "$(id -u)" -eq 0 ] || { echo "bench needs root (network namespaces)"; exit 77; }
    [ -x "$MESH_PROXY" ] || die "no $MESH_PROXY: build first (make)"
    mkdir -p "$BENCH_DATA"
    : >"$BENCH_DATA/$BENCH_PART.tsv"
    e2e_tmp_init
    PY=/usr/bin/python3
    [ -x $PY ] || PY=$(command -v python3)
    cp "$E2E_ROOT/bench/tcpbench.py" "$E2E_TMP/tcpbench.py" && chmod 0644 "$E2E_TMP/tcpbench.py"
    TB="$E2E_TMP/tcpbench.py"
}

# record PATH METRIC UNIT VALUE... : one figure, every run's value.
record() {
    local path=$1 metric=$2 unit=$3
    shift 3
    case " $BENCH_PATHS " in *" $path "*) ;; *) die "record: unknown path $path" ;; esac
    case " $BENCH_METRICS " in *" $metric "*) ;; *) die "record: unknown metric $metric" ;; esac
    printf '%s\t%s\t%s\t%s\n' "$path" "$metric" "$unit" "$*" >>"$BENCH_DATA/$BENCH_PART.tsv"
    info "$path $metric: $* $unit"
}

# record_fail PATH METRIC UNIT REASON...
record_fail() {
    local path=$1 metric=$2 unit=$3
    shift 3
    printf '%s\t%s\t%s\tfail: %s\n' "$path" "$metric" "$unit" "$*" >>"$BENCH_DATA/$BENCH_PART.tsv"
    info "$path $metric: not measured: $*"
}

# numbers on stdin (any whitespace) -> median / 99th percentile (nearest rank)
median() { tr -s ' \t' '\n\n' | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "fail"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
p99() { tr -s ' \t' '\n\n' | grep -E '^[0-9.]+$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "fail"; else { i = int(NR * 0.99 + 0.999999); if (i < 1) i = 1; print v[i] } }'; }

# repeat CMD... -> "v1 v2 v3" (RUNS values; a failed run prints nothing)
repeat() {
    local i out=""
    for ((i = 0; i < RUNS; i++)); do
        out="$out $("$@")"
        sleep 0.3
    done
    echo $out
}

# CPU seconds (user + system) a process has used so far.
proc_cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{ sub(/^.*\) /, ""); printf "%.3f\n", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null
}

# --- topology -----------------------------------------------------------------

bench_topology() {
    step "topology: namespaces A and B, veth 198.18.0.1 <-> 198.18.0.2"
    ns_create A
    ns_create B
    ns_link A 198.18.0.1/24 B 198.18.0.2/24
    nsx A ping -c 1 -W 2 198.18.0.2 >/dev/null || die "veth does not work"
}

# The servers every path reaches in B: iperf3 on 5201, tcpbench on 5202.
bench_servers() {
    bg iperfB B iperf3 -s -p 5201
    bg tcpbB B "$PY" "$TB" server 0.0.0.0 5202
    wait_listen B 5201 || die "iperf3 server did not start"
    wait_listen B 5202 || die "tcpbench server did not start"
}

# wireguard-go A 100.77.0.1 <-> B 100.77.0.2; pids in WGGO_PID_A/B.
bench_wggo_pair() {
    local wa wb
    wg_genkey "$E2E_TMP/wa.key"
    wg_genkey "$E2E_TMP/wb.key"
    wa=$(wg pubkey <"$E2E_TMP/wa.key")
    wb=$(wg pubkey <"$E2E_TMP/wb.key")
    WGA=$(wg_ifname a)
    WGB=$(wg_ifname b)
    WG_LOG_LEVEL=error wggo_start wgA A "$WGA" 100.77.0.1/24 51820 "$E2E_TMP/wa.key"
    WGGO_PID_A=$BG_PID
    WG_LOG_LEVEL=error wggo_start wgB B "$WGB" 100.77.0.2/24 51820 "$E2E_TMP/wb.key"
    WGGO_PID_B=$BG_PID
    WB_PUB=$wb
    nsx A wg set "$WGA" peer "$wb" allowed-ips 100.77.0.2/32 endpoint 198.18.0.2:51820
    nsx B wg set "$WGB" peer "$wa" allowed-ips 100.77.0.1/32
    wait_until 10 nsx A ping -c 1 -W 1 100.77.0.2 >/dev/null ||
        die "wireguard-go <-> wireguard-go does not work"
}

# nebula_conf_rest PORT TUN : the part of a Nebula config after pki and
# static_host_map: no lighthouse, no punching, MTU 1420, errors only, the
# firewall open both ways.
nebula_conf_rest() {
    cat <<EOF
lighthouse:
  am_lighthouse: false
  hosts: []
listen:
  host: 0.0.0.0
  port: $1
punchy:
  punch: false
tun:
  dev: $2
  mtu: 1420
logging:
  level: error
firewall:
  outbound:
    - port: any
      proto: any
      host: any
  inbound:
    - port: any
      proto: any
      host: any
EOF
}

# Nebula A 100.78.0.1 <-> B 100.78.0.2 (static host map, no lighthouse,
# firewall open, inner MTU 1420 like the WireGuard paths); pids in
# NEBULA_PID_A/B.
bench_nebula_pair() {
    local d="$E2E_TMP/nebula" t peer_ip peer_ul
    mkdir -p "$d"
    (cd "$d" && nebula-cert ca -name bench >/dev/null &&
        nebula-cert sign -name a -ip 100.78.0.1/24 >/dev/null &&
        nebula-cert sign -name b -ip 100.78.0.2/24 >/dev/null) || die "nebula-cert failed"
    for t in a b; do
        if [ $t = a ]; then peer_ip=100.78.0.2 peer_ul=198.18.0.2; else peer_ip=100.78.0.1 peer_ul=198.18.0.1; fi
        write_file "$d/$t.yml" <<EOF
pki:
  ca: $d/ca.crt
  cert: $d/$t.crt
  key: $d/$t.key
static_host_map:
  "$peer_ip": ["$peer_ul:4242"]
EOF
        nebula_conf_rest 4242 "neb${t}${E2E_ID}" >>"$d/$t.yml"
    done
    bg nebA A nebula -config "$d/a.yml"
    NEBULA_PID_A=$BG_PID
    bg nebB B nebula -config "$d/b.yml"
    NEBULA_PID_B=$BG_PID
    wait_until 15 nsx A ping -c 1 -W 1 100.78.0.2 >/dev/null ||
        die "Nebula <-> Nebula does not work (see $E2E_LOGDIR/nebA.log)"
}

# mesh-proxy A 100.77.0.5 <-> B 100.77.0.4, both as nobody; pids in
# MESH_PID_A/B; API sockets: mesh_cli meshA A ... / mesh_cli meshB B ...
bench_mesh_pair() {
    local ka kb pa pb p
    ka=$(genkey) && kb=$(genkey) || die "mesh-proxy genkey failed"
    pa=$(echo "$ka" | pubkey)
    pb=$(echo "$kb" | pubkey)
    write_file "$E2E_TMP/meshA.conf" <<EOF
[Interface]
PrivateKey = $ka
Address = 100.77.0.5/32
ListenPort = 51823
MTU = 1420

[Peer]
PublicKey = $pb
Endpoint = 198.18.0.2:51822
AllowedIPs = 100.77.0.4/32

[Socks5]
BindAddress = 127.0.0.1:1082

[http]
BindAddress = 127.0.0.1:3129

[TCPClientTunnel]
BindAddress = 127.0.0.1:15301
Target = 100.77.0.4:5201

[TCPClientTunnel]
BindAddress = 127.0.0.1:15302
Target = 100.77.0.4:5202
EOF
    {
        cat <<EOF
[Interface]
PrivateKey = $kb
Address = 100.77.0.4/32
ListenPort = 51822
MTU = 1420

[Peer]
PublicKey = $pa
AllowedIPs = 100.77.0.5/32
EOF
        for p in 5201 5202 $BENCH_EXTRA_PORTS; do
            printf '\n[TCPServerTunnel]\nListenPort = %s\nTarget = 127.0.0.1:%s\n' "$p" "$p"
        done
    } | write_file "$E2E_TMP/meshB.conf"
    mesh_start meshB B "$E2E_TMP/meshB.conf"
    MESH_PID_B=$BG_PID
    mesh_start meshA A "$E2E_TMP/meshA.conf"
    MESH_PID_A=$BG_PID
    wait_listen A 15302 10 || die "mesh-proxy A did not start (see $E2E_LOGDIR/meshA.log)"
    mesh_cli meshA A ping -c 2 -W 5 100.77.0.4 >/dev/null 2>&1 ||
        die "mesh-proxy <-> mesh-proxy does not work (see $E2E_LOGDIR/meshA.log)"
}
