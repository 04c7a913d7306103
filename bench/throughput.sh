#!/usr/bin/env bash
# bench/throughput.sh BUILD_DIR [--quick] [--runs N] [--secs S]
#
# The throughput part: bulk TCP one stream and four streams both ways, the
# CPU the VPN processes of both ends spend per GB, and the request/answer
# round trip (tcp_rr), over every tunnel path. Records in
# $BENCH_DATA/throughput.tsv (format: bench/lib.sh).
#
# One tool per path for the bulk figures (never mixed within a path):
#   raw        iperf3 to 198.18.0.2:5201 (the veth)
#   wggo       iperf3 to 100.77.0.2:5201 (wireguard-go TUNs)
#   nebula     iperf3 to 100.78.0.2:5201 (Nebula TUNs)
#   mesh_fwd   iperf3 to 127.0.0.1:15301 (mesh-proxy A's TCPClientTunnel to
#              100.77.0.4:5201)
#   mesh_socks tcpbench.py through SOCKS5 127.0.0.1:1082 to 100.77.0.4:5202
#   mesh_http  tcpbench.py through the HTTP proxy 127.0.0.1:3129 (CONNECT)
#              to 100.77.0.4:5202
# iperf3 figures are end.sum_received (-J); tcpbench figures are the bytes
# that arrived (the server's count up, the client's down). tcp_rr is
# tcpbench.py rr (1,000 round trips, the run's median) on every path, to
# port 5202 the same way (mesh_fwd: 127.0.0.1:15302).
# cpu_per_gb: user+system CPU seconds of both VPN processes during the
# tput1_up run, divided by the GB (1e9 bytes) received in it; none for raw.
#
# The old path (c), mesh-proxy -> wireguard-go, is not measured here (it is
# not in BENCH_PATHS).
#
# A figure whose runs all fail is recorded as `fail: REASON`; the part goes
# on. A pair that does not start makes all its figures fail.
set -u
E2E_NAME=bench-throughput
. "$(dirname "$0")/lib.sh"

bench_args "$@"
e2e_require_cmd ip wg wireguard-go nebula nebula-cert iperf3 ping setpriv ss

RR_COUNT=1000
# Four-stream runs: SECS long; with many runs (a full run is 6 paths x 4
# figures x RUNS), shorter, so that a part stays near 6 minutes.
SECS4=$SECS
if [ "$RUNS" -ge 3 ] && [ "$SECS" -gt 3 ]; then
    SECS4=$(((SECS + 1) / 2))
fi
WHY="$E2E_TMP/why"
T_START=$(date +%s)

# --- the tools, one run each --------------------------------------------------

# why TEXT : the reason the last run failed (kept for record_fail)
why() { echo "$*" >"$WHY"; }

# iperf_once SECONDS STREAMS HOST PORT [-R] -> "Mbit/s bytes" or nothing
iperf_once() {
    local secs=$1 streams=$2 host=$3 port=$4 out rc
    shift 4
    out=$(nsx A timeout $((secs + 20)) iperf3 -c "$host" -p "$port" -t "$secs" \
        -P "$streams" --connect-timeout 5000 -J "$@" 2>>"$E2E_LOGDIR/iperf3.log")
    rc=$?
    echo "$out" | "$PY" -c '
import json, sys
try:
    d = json.load(sys.stdin)
except ValueError:
    sys.exit(3)
if "error" in d:
    sys.stderr.write(d["error"] + "\n")
    sys.exit(4)
r = d["end"]["sum_received"]
if r["bytes"] <= 0:
    sys.stderr.write("0 bytes received\n")
    sys.exit(4)
print("%.1f %d" % (r["bits_per_second"] / 1e6, r["bytes"]))' 2>"$E2E_TMP/iperf.err" && return 0
    if [ $rc -eq 124 ]; then
        why "iperf3 timed out after $((secs + 20)) s"
    elif [ -s "$E2E_TMP/iperf.err" ]; then
        why "iperf3: $(head -1 "$E2E_TMP/iperf.err")"
    else
        why "iperf3 exited $rc without a result"
    fi
    echo "--- $(date '+%T') $host:$port -P $streams $* failed: $(cat "$WHY")" >>"$E2E_LOGDIR/iperf3.log"
    : >"$E2E_TMP/iperf.restart"
    return 1
}

# A failed test can leave iperf3's server waiting for the old client: after
# one, restart it (here, in the part's shell, which owns the process).
after_run() {
    [ -f "$E2E_TMP/iperf.restart" ] || return 0
    rm -f "$E2E_TMP/iperf.restart"
    bg_stop iperfB
    bg iperfB B iperf3 -s -p 5201
    wait_listen B 5201 5 >/dev/null 2>&1
}

# tb_once up|down SECONDS STREAMS HOST PORT [PROXY-OPTION HOST:PORT]
#   -> "Mbit/s bytes" or nothing
tb_once() {
    local cmd=$1 secs=$2 streams=$3 host=$4 port=$5 out rc
    shift 5
    out=$(nsx A timeout $((secs + 20)) "$PY" "$TB" "$cmd" "$@" --streams "$streams" --bytes \
        "$host" "$port" "$secs" 2>"$E2E_TMP/tb.err")
    rc=$?
    cat "$E2E_TMP/tb.err" >>"$E2E_LOGDIR/tcpbench.log"
    if [ $rc -eq 0 ] && [ -n "$out" ] && awk -v b="${out#* }" 'BEGIN { exit !(b + 0 > 0) }'; then
        echo "$out"
        return 0
    fi
    if [ $rc -eq 124 ]; then
        why "tcpbench timed out after $((secs + 20)) s"
    elif [ -s "$E2E_TMP/tb.err" ]; then
        why "tcpbench: $(tail -1 "$E2E_TMP/tb.err")"
    else
        why "tcpbench: no bytes arrived"
    fi
    return 1
}

# rr_once HOST PORT [PROXY-OPTION HOST:PORT] -> median µs or nothing
rr_once() {
    local host=$1 port=$2 out rc
    shift 2
    out=$(nsx A timeout 60 "$PY" "$TB" rr "$@" "$host" "$port" "$RR_COUNT" 2>"$E2E_TMP/tb.err")
    rc=$?
    cat "$E2E_TMP/tb.err" >>"$E2E_LOGDIR/tcpbench.log"
    if [ $rc -eq 0 ] && [ -n "$out" ]; then
        echo "${out%% *}"
        return 0
    fi
    if [ $rc -eq 124 ]; then
        why "tcpbench rr timed out after 60 s"
    else
        why "tcpbench rr: $(tail -1 "$E2E_TMP/tb.err")"
    fi
    return 1
}

# UDP datagrams dropped for a full receive buffer, both namespaces.
udp_drops() {
    local n total=0 v
    for n in A B; do
        # shellcheck disable=SC2016 # awk program
        v=$(nsx "$n" awk '$1 == "Udp:" { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp)
        total=$((total + ${v:-0}))
    done
    echo $total
}

# --- figures --------------------------------------------------------------------

# figure PATH METRIC UNIT CMD... : RUNS runs of CMD (its first word is the
# value); records the values, or fail with the last run's reason.
figure() {
    local path=$1 metric=$2 unit=$3 i out vals="" nfail=0
    shift 3
    : >"$WHY"
    for ((i = 0; i < RUNS; i++)); do
        if out=$("$@") && [ -n "$out" ]; then
            vals="$vals ${out%% *}"
        else
            nfail=$((nfail + 1))
            after_run
        fi
        sleep 0.3
    done
    if [ -z "$vals" ]; then
        record_fail "$path" "$metric" "$unit" "$(cat "$WHY" 2>/dev/null || echo 'no result')"
    else
        [ $nfail -gt 0 ] && info "$path $metric: $nfail of $RUNS runs failed: $(cat "$WHY")"
        # shellcheck disable=SC2086 # one value per run
        record "$path" "$metric" "$unit" $vals
    fi
}

# tput1_up with the CPU of the VPN processes: records tput1_up and
# cpu_per_gb (none when no pids are given).
# up_cpu PATH "PID..." CMD...   (CMD prints "Mbit/s bytes")
up_cpu() {
    local path=$1 pids=$2 i p c0 c1 out tput="" cpu="" nfail=0 c
    shift 2
    : >"$WHY"
    for ((i = 0; i < RUNS; i++)); do
        c0=0
        for p in $pids; do c0=$(awk -v a="$c0" -v b="$(proc_cpu_s "$p")" 'BEGIN { print a + b }'); done
        if out=$("$@") && [ -n "$out" ]; then
            c1=0
            for p in $pids; do c1=$(awk -v a="$c1" -v b="$(proc_cpu_s "$p")" 'BEGIN { print a + b }'); done
            tput="$tput ${out%% *}"
            if [ -n "$pids" ]; then
                c=$(awk -v a="$c0" -v b="$c1" -v n="${out#* }" 'BEGIN { if (n > 0) printf "%.2f", (b - a) / (n / 1e9) }')
                cpu="$cpu $c"
            fi
        else
            nfail=$((nfail + 1))
            after_run
        fi
        sleep 0.3
    done
    if [ -z "$tput" ]; then
        record_fail "$path" tput1_up Mbit/s "$(cat "$WHY" 2>/dev/null || echo 'no result')"
        [ -n "$pids" ] && record_fail "$path" cpu_per_gb s/GB "no tput1_up run: $(cat "$WHY" 2>/dev/null)"
        return 0
    fi
    [ $nfail -gt 0 ] && info "$path tput1_up: $nfail of $RUNS runs failed: $(cat "$WHY")"
    # shellcheck disable=SC2086 # one value per run
    record "$path" tput1_up Mbit/s $tput
    # shellcheck disable=SC2086
    [ -n "$pids" ] && record "$path" cpu_per_gb s/GB $cpu
    return 0
}

ALL_METRICS="tput1_up tput1_down tput4_up tput4_down cpu_per_gb tcp_rr"

# fail_path PATH REASON : every figure of a path that could not start
fail_path() {
    local m
    for m in $ALL_METRICS; do
        [ "$1" = raw ] && [ "$m" = cpu_per_gb ] && continue
        case $m in
        tput*) record_fail "$1" "$m" Mbit/s "$2" ;;
        cpu_per_gb) record_fail "$1" "$m" s/GB "$2" ;;
        tcp_rr) record_fail "$1" "$m" µs "$2" ;;
        esac
    done
}

# path_iperf PATH "PIDS" HOST IPERF_PORT RR_HOST RR_PORT
path_iperf() {
    local path=$1 pids=$2 host=$3 port=$4 rrhost=$5 rrport=$6 d0 t0
    step "measuring: $path (iperf3 to $host:$port, tcp_rr to $rrhost:$rrport)"
    d0=$(udp_drops)
    t0=$(date +%s)
    up_cpu "$path" "$pids" iperf_once "$SECS" 1 "$host" "$port"
    figure "$path" tput1_down Mbit/s iperf_once "$SECS" 1 "$host" "$port" -R
    figure "$path" tput4_up Mbit/s iperf_once "$SECS4" 4 "$host" "$port"
    figure "$path" tput4_down Mbit/s iperf_once "$SECS4" 4 "$host" "$port" -R
    figure "$path" tcp_rr µs rr_once "$rrhost" "$rrport"
    info "$path: UDP receive-buffer drops $(($(udp_drops) - d0)); $(($(date +%s) - t0)) s"
}

# path_tb PATH "PIDS" HOST PORT PROXY-OPTION PROXY
path_tb() {
    local path=$1 pids=$2 host=$3 port=$4 popt=$5 proxy=$6 d0 t0
    step "measuring: $path (tcpbench $popt $proxy to $host:$port)"
    d0=$(udp_drops)
    t0=$(date +%s)
    up_cpu "$path" "$pids" tb_once up "$SECS" 1 "$host" "$port" "$popt" "$proxy"
    figure "$path" tput1_down Mbit/s tb_once down "$SECS" 1 "$host" "$port" "$popt" "$proxy"
    figure "$path" tput4_up Mbit/s tb_once up "$SECS4" 4 "$host" "$port" "$popt" "$proxy"
    figure "$path" tput4_down Mbit/s tb_once down "$SECS4" 4 "$host" "$port" "$popt" "$proxy"
    figure "$path" tcp_rr µs rr_once "$host" "$port" "$popt" "$proxy"
    info "$path: UDP receive-buffer drops $(($(udp_drops) - d0)); $(($(date +%s) - t0)) s"
}

# try_pair FUNCTION : run a pair starter of lib.sh; its `die` becomes a
# failure return (PAIR_ERR holds the first reason) so one pair that does
# not start does not end the part.
try_pair() {
    local saved
    saved=$(declare -f die)
    PAIR_ERR=""
    die() {
        [ -n "$PAIR_ERR" ] || PAIR_ERR="$*"
        return 1
    }
    "$1"
    eval "$saved"
    [ -z "$PAIR_ERR" ]
}

# --- the run ----------------------------------------------------------------------

bench_topology
bench_servers
info "runs $RUNS, $SECS s per one-stream run, $SECS4 s per four-stream run, tcp_rr $RR_COUNT round trips"

path_iperf raw "" 198.18.0.2 5201 198.18.0.2 5202

step "wireguard-go pair"
if try_pair bench_wggo_pair; then
    path_iperf wggo "$WGGO_PID_A $WGGO_PID_B" 100.77.0.2 5201 100.77.0.2 5202
else
    fail_path wggo "pair did not start: $PAIR_ERR"
fi

step "Nebula pair"
if try_pair bench_nebula_pair; then
    path_iperf nebula "$NEBULA_PID_A $NEBULA_PID_B" 100.78.0.2 5201 100.78.0.2 5202
else
    fail_path nebula "pair did not start: $PAIR_ERR"
fi

step "mesh-proxy pair"
if try_pair bench_mesh_pair; then
    MESH_PIDS="$MESH_PID_A $MESH_PID_B"
    path_iperf mesh_fwd "$MESH_PIDS" 127.0.0.1 15301 127.0.0.1 15302
    path_tb mesh_socks "$MESH_PIDS" 100.77.0.4 5202 --socks 127.0.0.1:1082
    if wait_listen A 3129 5; then
        path_tb mesh_http "$MESH_PIDS" 100.77.0.4 5202 --http-proxy 127.0.0.1:3129
    else
        fail_path mesh_http "mesh-proxy A does not listen on 127.0.0.1:3129"
    fi
else
    for p in mesh_fwd mesh_socks mesh_http; do fail_path $p "pair did not start: $PAIR_ERR"; done
fi

step "done in $(($(date +%s) - T_START)) s: $BENCH_DATA/throughput.tsv"
# (awk, not column: column is not in a minimal Debian)
awk -F'\t' '{ printf "%-11s %-11s %-7s %s\n", $1, $2, $3, $4 }' "$BENCH_DATA/throughput.tsv"
