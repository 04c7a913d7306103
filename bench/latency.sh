#!/usr/bin/env bash
# bench/latency.sh BUILD_DIR [--quick] [--runs N]: round trips, short HTTP
# requests and time to first byte (part "latency" of the suite; see
# bench/lib.sh for the topology, the paths and the record format).
#
#   rtt_median, rtt_p99 (ms)  1,000 ICMP echoes 10 ms apart (100 with
#       --quick); one median and one p99 per run.
#       raw, wggo, nebula: the kernel's `ping -i 0.01` in A; it times from
#       its sendmsg on the raw socket to the reply's receive timestamp, so
#       the TUN devices and both VPN processes are inside the span.
#       mesh_fwd: `mesh-proxy ping -i 0.01` through meshA. Its time= is
#       taken inside meshA (netstack/ping.c) from just before the echo
#       request enters lwIP (raw_sendto: lwIP, WireGuard encryption and the
#       UDP sendmsg are inside the span) to the reply's raw-pcb callback
#       (after recv, decryption and lwIP input); the CLI -> API socket hop
#       is not in it. Both are one process's view of a full round trip, but
#       not measured at the same place: kernel ping's span also holds the
#       TUN read/write of each VPN, meshA's has no TUN at all.
#   http_rps (requests/s)  1,000 sequential HTTP/1.0 GETs, a new TCP
#       connection each, ~100-byte body (tests/tools/httpload.c); the server
#       runs in B (raw, wggo, nebula, mesh_socks, mesh_http) or on loopback
#       in A (microsocks, mesh_socks_local). mesh_fwd is not measured here:
#       the pair's forwards only reach 5201/5202 (mesh_socks carries the
#       same tunnel).
#   ttfb (ms)  from just before the first node process starts to the first
#       byte of an HTTP answer from the server in B through the new tunnel;
#       the client starts a new attempt every 10 ms. wggo: both
#       wireguard-go started and configured (key, peer, address, link) by
#       this script, which is inside the span; nebula: both nebula
#       processes; mesh_socks: both mesh-proxy processes, client through
#       meshA's SOCKS5. Fresh processes and interface names every run.
# shellcheck disable=SC2034 # read by bench/lib.sh
E2E_NAME=bench-latency
HTTP_PORT=8090  # httpload server in B, reached through every tunnel
# httpload server on B's address, over the veth (microsocks,
# mesh_socks_local; Direct never dials this host's loopback or addresses)
LOCAL_PORT=8091
MICROSOCKS_PORT=1090
LOCAL_SOCKS_PORT=1091
# shellcheck disable=SC2034 # read by bench_mesh_pair
BENCH_EXTRA_PORTS=$HTTP_PORT
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

bench_args "$@"
HL="$MESH_BUILD/tests/httpload"
[ -x "$HL" ] || die "no $HL: build first (make)"
e2e_require_cmd ping wg wireguard-go nebula nebula-cert microsocks
PINGS=1000
[ "$QUICK" = 1 ] && PINGS=100
HTTP_N=1000

bench_topology
bg httpB B "$HL" serve "$HTTP_PORT"
bg httpL B "$HL" serve "$LOCAL_PORT" 198.18.0.2
wait_listen B "$HTTP_PORT" || die "httpload server in B did not start"
wait_listen B "$LOCAL_PORT" || die "httpload server in B did not start"

# --- helpers -------------------------------------------------------------------

# rtt_record PATH CMD... : RUNS times CMD (one ping series printing
# "time=X ms" per reply); records the median and the p99 of each run. A run
# with under 90% of the replies counts as failed.
rtt_record() {
    local path=$1 i out times n meds="" p99s="" why=""
    shift
    for ((i = 0; i < RUNS; i++)); do
        out=$("$@" 2>&1)
        times=$(grep -o 'time=[0-9.]*' <<<"$out" | cut -d= -f2)
        n=$(grep -c . <<<"$times")
        if [ "$n" -lt $((PINGS * 9 / 10)) ]; then
            why="run $((i + 1)): $n of $PINGS replies"
            info "$path ping: $(tail -n 2 <<<"$out" | tr '\n' ' ')"
            continue
        fi
        meds="$meds $(median <<<"$times")"
        p99s="$p99s $(p99 <<<"$times")"
        sleep 0.3
    done
    if [ -z "$meds" ]; then
        record_fail "$path" rtt_median ms "$why"
        record_fail "$path" rtt_p99 ms "$why"
        return
    fi
    record "$path" rtt_median ms "${meds# }"
    record "$path" rtt_p99 ms "${p99s# }"
}

kping() { nsx A ping -n -i 0.01 -W 1 -c "$PINGS" "$1"; }
mping() { mesh_cli meshA A ping -c "$PINGS" -i 0.01 -W 2 100.77.0.4; }

# rps_record PATH [--socks5 H:P | --http-proxy H:P] HOST PORT
rps_record() {
    local path=$1 i v vals="" err=""
    shift
    for ((i = 0; i < RUNS; i++)); do
        if v=$(nsx A "$HL" get "$@" "$HTTP_N" 2>"$E2E_TMP/hl.err"); then
            vals="$vals $v"
        else
            err=$(head -n 1 "$E2E_TMP/hl.err")
        fi
        sleep 0.3
    done
    if [ -n "$err" ] || [ -z "$vals" ]; then
        record_fail "$path" http_rps req/s "${err:-no value}"
    else
        record "$path" http_rps req/s "${vals# }"
    fi
}

# quick_wait SECONDS CMD... : like wait_until, polling every 10 ms.
quick_wait() {
    local end=$(($(date +%s%N) / 1000000 + $1 * 1000))
    shift
    until "$@" >/dev/null 2>&1; do
        [ $(($(date +%s%N) / 1000000)) -ge $end ] && return 1
        sleep 0.01
    done
}

# first_byte ARGS... : the monotonic ms of the first answer byte (client in A)
first_byte() { nsx A "$HL" first --every 10 --timeout 20 "$@" 2>>"$E2E_TMP/first.err"; }

# ms between two monotonic stamps
ms_between() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f\n", b - a }'; }

# --- raw veth ------------------------------------------------------------------

step "raw veth"
rtt_record raw kping 198.18.0.2
rps_record raw 198.18.0.2 "$HTTP_PORT"

# --- wireguard-go ----------------------------------------------------------------

step "wireguard-go <-> wireguard-go"
bench_wggo_pair
rtt_record wggo kping 100.77.0.2
rps_record wggo 100.77.0.2 "$HTTP_PORT"
bg_stop wgA
bg_stop wgB

# --- Nebula ------------------------------------------------------------------------

step "Nebula <-> Nebula"
bench_nebula_pair
rtt_record nebula kping 100.78.0.2
rps_record nebula 100.78.0.2 "$HTTP_PORT"
bg_stop nebA
bg_stop nebB

# --- mesh-proxy ------------------------------------------------------------------

step "mesh-proxy <-> mesh-proxy"
bench_mesh_pair
rtt_record mesh_fwd mping
rps_record mesh_socks --socks5 127.0.0.1:1082 100.77.0.4 "$HTTP_PORT"
rps_record mesh_http --http-proxy 127.0.0.1:3129 100.77.0.4 "$HTTP_PORT"
bg_stop meshA
bg_stop meshB

# --- loopback SOCKS5 front-ends (no mesh) ------------------------------------------

step "microsocks and mesh-proxy's SOCKS5 on loopback"
bg_nobody microsocks A microsocks -i 127.0.0.1 -p "$MICROSOCKS_PORT"
if wait_listen A "$MICROSOCKS_PORT"; then
    rps_record microsocks --socks5 "127.0.0.1:$MICROSOCKS_PORT" 198.18.0.2 "$LOCAL_PORT"
else
    record_fail microsocks http_rps req/s "microsocks did not start"
fi
bg_stop microsocks

write_file "$E2E_TMP/meshL.conf" <<EOF
[Interface]
PrivateKey = $(genkey)
Address = 100.99.0.1/32

[Socks5]
BindAddress = 127.0.0.1:$LOCAL_SOCKS_PORT
Direct = all
EOF
mesh_start meshL A "$E2E_TMP/meshL.conf"
if wait_listen A "$LOCAL_SOCKS_PORT"; then
    rps_record mesh_socks_local --socks5 "127.0.0.1:$LOCAL_SOCKS_PORT" 198.18.0.2 "$LOCAL_PORT"
else
    record_fail mesh_socks_local http_rps req/s "mesh-proxy did not start (see $E2E_LOGDIR/meshL.log)"
fi
bg_stop meshL

# --- time to first byte ----------------------------------------------------------

# ttfb_wggo RUN: both wireguard-go started and configured inside the span.
ttfb_wggo() {
    local r=$1 t0 t1 ia ib pa pb
    ia=$(wg_ifname "a$r")
    ib=$(wg_ifname "b$r")
    wg_genkey "$E2E_TMP/ta.key"
    wg_genkey "$E2E_TMP/tb.key"
    pa=$(wg pubkey <"$E2E_TMP/ta.key")
    pb=$(wg pubkey <"$E2E_TMP/tb.key")
    t0=$("$HL" now)
    bg "wgA_t$r" A env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go -f "$ia"
    bg "wgB_t$r" B env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=error wireguard-go -f "$ib"
    quick_wait 10 test -S "/var/run/wireguard/$ia.sock" &&
        quick_wait 10 test -S "/var/run/wireguard/$ib.sock" || return 1
    nsx A wg set "$ia" private-key "$E2E_TMP/ta.key" listen-port 51820 \
        peer "$pb" allowed-ips 100.77.0.2/32 endpoint 198.18.0.2:51820 &&
        nsx B wg set "$ib" private-key "$E2E_TMP/tb.key" listen-port 51820 \
            peer "$pa" allowed-ips 100.77.0.1/32 &&
        nsx A ip addr add 100.77.0.1/24 dev "$ia" &&
        nsx B ip addr add 100.77.0.2/24 dev "$ib" &&
        nsx A ip link set "$ia" mtu 1420 up &&
        nsx B ip link set "$ib" mtu 1420 up || return 1
    t1=$(first_byte 100.77.0.2 "$HTTP_PORT") || return 1
    TTFB=$(ms_between "$t0" "$t1")
}
ttfb_wggo_stop() { bg_stop "wgA_t$1"; bg_stop "wgB_t$1"; }

# ttfb_nebula RUN: the pair's certificates, fresh tun names.
ttfb_nebula() {
    local r=$1 d="$E2E_TMP/nebula" t t0 t1
    for t in a b; do
        sed "s/^  dev: neb$t/  dev: neb${t}t$r/" "$d/$t.yml" >"$d/$t$r.yml"
    done
    t0=$("$HL" now)
    # B (the answering side) first, as for mesh-proxy: a handshake A sends
    # before B listens waits for Nebula's retry (100 ms and up).
    bg "nebB_t$r" B nebula -config "$d/b$r.yml"
    bg "nebA_t$r" A nebula -config "$d/a$r.yml"
    t1=$(first_byte 100.78.0.2 "$HTTP_PORT") || return 1
    TTFB=$(ms_between "$t0" "$t1")
}
ttfb_nebula_stop() { bg_stop "nebA_t$1"; bg_stop "nebB_t$1"; }

# ttfb_mesh_socks RUN: the pair's configs, through meshA's SOCKS5.
ttfb_mesh_socks() {
    local r=$1 t0 t1
    t0=$("$HL" now)
    mesh_start "meshB_t$r" B "$E2E_TMP/meshB.conf"
    mesh_start "meshA_t$r" A "$E2E_TMP/meshA.conf"
    t1=$(first_byte --socks5 127.0.0.1:1082 100.77.0.4 "$HTTP_PORT") || return 1
    TTFB=$(ms_between "$t0" "$t1")
}
ttfb_mesh_socks_stop() { bg_stop "meshA_t$1"; bg_stop "meshB_t$1"; }

# ttfb_record PATH KIND : RUNS times ttfb_KIND (which sets TTFB; not in a
# subshell, so that the processes it starts stay known to bg_stop and the
# EXIT trap), then ttfb_KIND_stop.
ttfb_record() {
    local path=$1 kind=$2 r vals="" err=""
    : >"$E2E_TMP/first.err"
    for ((r = 1; r <= RUNS; r++)); do
        TTFB=""
        if "ttfb_$kind" "$r" && [ -n "$TTFB" ]; then
            vals="$vals $TTFB"
        else
            err="run $r: $(tail -n 1 "$E2E_TMP/first.err")"
            [ -s "$E2E_TMP/first.err" ] || err="run $r: did not start"
        fi
        "ttfb_${kind}_stop" "$r"
        sleep 0.3
    done
    if [ -n "$err" ] || [ -z "$vals" ]; then
        record_fail "$path" ttfb ms "$err"
    else
        record "$path" ttfb ms "${vals# }"
    fi
}

step "time to first byte"
ttfb_record wggo wggo
ttfb_record nebula nebula
ttfb_record mesh_socks mesh_socks

step "done: $BENCH_DATA/$BENCH_PART.tsv"
cat "$BENCH_DATA/$BENCH_PART.tsv"
