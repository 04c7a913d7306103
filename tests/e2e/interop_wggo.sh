#!/usr/bin/env bash
# Interop proof for issue 2: wireguard-go (with a kernel TUN, configured with
# wg) in namespace A, our mesh-proxy running as user nobody in namespace B.
#
#   A  198.18.0.1  wireguard-go 100.77.0.1/24, UDP 51820
#                  servers: HTTP 100.77.0.1:8000, raw TCP 100.77.0.1:5001
#   B  198.18.0.2  mesh-proxy   100.77.0.2/32, UDP 51821   (as nobody)
#                  SOCKS5 127.0.0.1:1080
#                  TCPClientTunnel 127.0.0.1:15001 -> 100.77.0.1:5001
#                  TCPServerTunnel 100.77.0.2:6001  -> 127.0.0.1:7001
#
# Checks: ping both ways; 64 MiB each way through the TCPClientTunnel and
# through the TCPServerTunnel (sha256 compared); curl through SOCKS5; a
# handshake initiated by each side (the other side has no endpoint, so it
# cannot initiate); recovery after wireguard-go restarts with the same key;
# sticky source: with a second address 198.18.0.3 in B that wireguard-go
# writes to, mesh-proxy answers from 198.18.0.3 (wg show's endpoint).
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip wg wireguard-go ping socat curl python3 setpriv ss sha256sum
e2e_tmp_init
e2e_require_mesh_proxy

MIB=${E2E_TRANSFER_MIB:-64}
XFER_TIMEOUT=${E2E_TRANSFER_TIMEOUT:-180}
RECOVERY_BOUND=${E2E_RECOVERY_BOUND:-45}
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)

step "namespaces A (198.18.0.1) and B (198.18.0.2) joined by a veth pair"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
check "veth: A reaches B" nsx A ping -c 1 -W 2 198.18.0.2 || exit 1

step "keys: wg's and mesh-proxy's formats agree"
wg_genkey "$E2E_TMP/a.key"
APUB=$(wg pubkey <"$E2E_TMP/a.key")
BKEY=$("$MESH_PROXY" genkey) || die "mesh-proxy genkey failed"
BPUB=$(echo "$BKEY" | "$MESH_PROXY" pubkey) || die "mesh-proxy pubkey failed"
info "A (wireguard-go) public key $APUB"
info "B (mesh-proxy)   public key $BPUB"
check "mesh-proxy pubkey of its own key equals wg pubkey" \
    test "$BPUB" = "$(echo "$BKEY" | wg pubkey)"
check "mesh-proxy pubkey of a wg key equals wg pubkey" \
    test "$APUB" = "$("$MESH_PROXY" pubkey <"$E2E_TMP/a.key")"

# b_config WITH_ENDPOINT : B's configuration.
b_config() {
    local ep=""
    [ "$1" = yes ] && ep="Endpoint = 198.18.0.1:51820"
    write_file "$E2E_TMP/b.conf" <<EOF
[Interface]
PrivateKey = $BKEY
Address = 100.77.0.2/32
ListenPort = 51821
MTU = 1420

[Peer]
PublicKey = $APUB
$ep
AllowedIPs = 100.77.0.0/24

[Socks5]
BindAddress = 127.0.0.1:1080

[TCPClientTunnel]
BindAddress = 127.0.0.1:15001
Target = 100.77.0.1:5001

[TCPServerTunnel]
ListenPort = 6001
Target = 127.0.0.1:7001
EOF
}

WGA=$(wg_ifname a)
BLOG="$E2E_LOGDIR/meshB.log"

# start_wga WITH_ENDPOINT [B_ADDR] : wireguard-go in A, peer B with or
# without endpoint (B_ADDR:51821, 198.18.0.2 unless given).
start_wga() {
    wggo_start wgA A "$WGA" 100.77.0.1/24 51820 "$E2E_TMP/a.key"
    if [ "$1" = yes ]; then
        nsx A wg set "$WGA" peer "$BPUB" allowed-ips 100.77.0.2/32 endpoint "${2:-198.18.0.2}:51821"
    else
        nsx A wg set "$WGA" peer "$BPUB" allowed-ips 100.77.0.2/32
    fi
}

start_b() {
    mesh_start meshB B "$E2E_TMP/b.conf"
    wait_listen B 51821 10 udp || die "mesh-proxy did not bind UDP 51821 (log: $BLOG)"
    wait_listen B 1080 10 || die "mesh-proxy SOCKS5 did not listen on 1080"
    wait_listen B 15001 10 || die "mesh-proxy TCPClientTunnel did not listen on 15001"
}

status_has_peer() { mesh_cli meshB B status | grep -qF "$APUB"; }

# curl_page [--socks5|--socks5-hostname] : the page through B's SOCKS5.
curl_page() {
    local got
    got=$(nsx B curl -sS --max-time 20 "${1:---socks5}" 127.0.0.1:1080 http://100.77.0.1:8000/index.html) ||
        return 1
    [ "$got" = "$TOKEN" ] || { echo "got: $got"; return 1; }
}

hs_a() { wg_latest_handshake A "$WGA" "$BPUB"; }
# B's endpoint as wireguard-go sees it (it follows the source address of
# B's authenticated datagrams).
ep_a() { nsx A wg show "$WGA" endpoints | awk -v k="$BPUB" '$1 == k { print $2 }'; }
hs_a_after() { [ "$(hs_a)" -ge "$1" ] 2>/dev/null; }

step "A: wireguard-go (no endpoint for B: it cannot initiate) and servers"
start_wga no
mkdir -p "$E2E_TMP/www"
TOKEN="meshproxy-interop-$RANDOM$RANDOM"
echo "$TOKEN" | write_file "$E2E_TMP/www/index.html"
bg httpA A $PY "$E2E_DIR/httpd.py" 100.77.0.1 8000 "$E2E_TMP/www"
wait_listen A 8000 || die "HTTP server in A did not start"
random_file "$E2E_TMP/data" "$MIB"
DATA_SHA=$(sha "$E2E_TMP/data")
info "$MIB MiB test file sha256 $DATA_SHA"

step "B: mesh-proxy as nobody (Endpoint = A: it initiates)"
b_config yes
info "config $E2E_TMP/b.conf:"
sed 's/^PrivateKey.*/PrivateKey = (hidden)/' "$E2E_TMP/b.conf" | sed 's/^/      /'
T0=$(date +%s)
MARK=$(log_mark "$BLOG")
start_b
check "mesh-proxy runs as user nobody" test "$(ps -o user= -p "$(bg_pid meshB)" | tr -d ' ')" = nobody

step "handshake initiated by mesh-proxy"
check "mesh-proxy ping 100.77.0.1 (B -> wireguard-go)" \
    mesh_cli meshB B ping -c 3 -W 5 100.77.0.1
check "our log: handshake complete" wait_log_after "$BLOG" "$MARK" "handshake complete" 10
check "wg show: A has a handshake with B" wait_until 5 hs_a_after "$T0"
check "ping 100.77.0.2 from A (wireguard-go -> mesh-proxy)" nsx A ping -c 3 -i 0.3 -W 3 100.77.0.2
check "mesh-proxy status lists the peer" status_has_peer
if mesh_cli meshB B status --json >"$E2E_LOGDIR/status.json" 2>&1; then
    check "mesh-proxy status --json is valid JSON" $PY -m json.tool "$E2E_LOGDIR/status.json"
else
    fail "mesh-proxy status --json (exit $?)"
fi

step "SOCKS5: curl through mesh-proxy to A's web server"
check "curl --socks5 http://100.77.0.1:8000/ returns the page" curl_page --socks5
check "curl --socks5-hostname (address as a name) returns the page" curl_page --socks5-hostname

# transfer NAME SERVER_TAG SERVER_ADDR RECV_FILE CLIENT_TAG CLIENT_ADDR DIR
#  DIR=up:   the client sends $E2E_TMP/data, the server writes RECV_FILE
#  DIR=down: the server sends, the client writes RECV_FILE
# The server runs as root in A, as nobody in B. Compares sha256.
transfer() {
    local what=$1 stag=$2 saddr=$3 out=$4 ctag=$5 caddr=$6 dir=$7
    local host=${saddr%:*} port=${saddr##*:} runner=bg t0 rc
    [ "$stag" = B ] && runner=bg_nobody
    rm -f "$out"
    if [ "$dir" = up ]; then
        $runner xfer-server "$stag" socat -u "TCP-LISTEN:$port,bind=$host,reuseaddr" "CREATE:$out"
    else
        $runner xfer-server "$stag" socat -u "FILE:$E2E_TMP/data" "TCP-LISTEN:$port,bind=$host,reuseaddr"
    fi
    wait_listen "$stag" "$port" || { fail "$what: server did not listen"; bg_stop xfer-server; return 1; }
    t0=$(date +%s.%N)
    if [ "$dir" = up ]; then
        fgw nsx_nobody "$ctag" timeout "$XFER_TIMEOUT" socat -u "FILE:$E2E_TMP/data" "TCP:$caddr" \
            >>"$E2E_LOGDIR/xfer-client.log" 2>&1
    else
        fgw nsx_nobody "$ctag" timeout "$XFER_TIMEOUT" socat -u "TCP:$caddr" "CREATE:$out" \
            >>"$E2E_LOGDIR/xfer-client.log" 2>&1
    fi
    rc=$?
    bg_wait xfer-server 30
    local dt size got
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    size=$(stat -c %s "$out" 2>/dev/null || echo 0)
    got=$(sha "$out" 2>/dev/null)
    if [ $rc -eq 0 ] && [ "$got" = "$DATA_SHA" ]; then
        pass "$what: $MIB MiB, sha256 equal ($(awk -v s="$size" -v t="$dt" 'BEGIN { printf "%.0f", s * 8 / t / 1e6 }') Mbit/s)"
    else
        fail "$what: client exit $rc, received $size of $((MIB * 1048576)) bytes, sha256 ${got:-none}"
        tail -n 5 "$E2E_LOGDIR/xfer-client.log" | sed 's/^/      | /'
    fi
    rm -f "$out"
}

step "TCPClientTunnel: B 127.0.0.1:15001 -> A 100.77.0.1:5001 (behind wireguard-go)"
transfer "TCPClientTunnel upload (B -> A)" A 100.77.0.1:5001 "$E2E_TMP/run/recv" B 127.0.0.1:15001 up
transfer "TCPClientTunnel download (A -> B)" A 100.77.0.1:5001 "$E2E_TMP/run/recv" B 127.0.0.1:15001 down

step "TCPServerTunnel: A connects to 100.77.0.2:6001 -> B 127.0.0.1:7001"
transfer "TCPServerTunnel upload (A -> B)" B 127.0.0.1:7001 "$E2E_TMP/run/recv" A 100.77.0.2:6001 up
transfer "TCPServerTunnel download (B -> A)" B 127.0.0.1:7001 "$E2E_TMP/run/recv" A 100.77.0.2:6001 down

step "recovery: wireguard-go restarts with the same key (still no endpoint for B)"
bg_stop wgA
bg_stop httpA
T1=$(date +%s)
MARK=$(log_mark "$BLOG")
start_wga no
bg httpA A $PY "$E2E_DIR/httpd.py" 100.77.0.1 8000 "$E2E_TMP/www"
wait_listen A 8000 || die "HTTP server in A did not restart"
# Only mesh-proxy can bring the tunnel back: it holds a session the new
# wireguard-go does not know, and must notice and initiate again.
recovered=""
while [ $(($(date +%s) - T1)) -lt "$RECOVERY_BOUND" ]; do
    if mesh_cli meshB B ping -c 1 -W 1 100.77.0.1 >/dev/null 2>&1; then
        recovered=$(($(date +%s) - T1))
        break
    fi
    sleep 1
done
if [ -n "$recovered" ]; then
    pass "traffic flows again ${recovered}s after wireguard-go restarted (bound ${RECOVERY_BOUND}s)"
else
    fail "no reply through the tunnel within ${RECOVERY_BOUND}s of wireguard-go's restart"
fi
check "our log: a new handshake complete after the restart" \
    wait_log_after "$BLOG" "$MARK" "handshake complete" 5
check "wg show: the new wireguard-go has a handshake with B" wait_until 5 hs_a_after "$T1"
check "curl --socks5 works after recovery" curl_page

step "handshake initiated by wireguard-go to B's second address 198.18.0.3 (mesh-proxy restarted without an Endpoint)"
bg_stop meshB
bg_stop wgA
bg_stop httpA
b_config no
# A secondary address: B's routing picks 198.18.0.2 for replies to A.
nsx B ip addr add 198.18.0.3/24 dev vA
T2=$(date +%s)
MARK=$(log_mark "$BLOG")
start_wga yes 198.18.0.3
bg httpA A $PY "$E2E_DIR/httpd.py" 100.77.0.1 8000 "$E2E_TMP/www"
start_b
wait_listen A 8000 || die "HTTP server in A did not restart"
check "no handshake before A sends anything" test "$(hs_a)" = 0
check "ping 100.77.0.2 from A (wireguard-go initiates)" nsx A ping -c 3 -i 0.3 -W 5 100.77.0.2
check "our log: handshake complete" wait_log_after "$BLOG" "$MARK" "handshake complete" 10
check "wg show: A has a handshake with B" wait_until 5 hs_a_after "$T2"
info "wireguard-go sees B at $(ep_a)"
check "sticky source: mesh-proxy answers from 198.18.0.3, the address wireguard-go wrote to" \
    test "$(ep_a)" = 198.18.0.3:51821
check "mesh-proxy ping 100.77.0.1 answers (responder side)" \
    mesh_cli meshB B ping -c 3 -W 5 100.77.0.1
check "curl --socks5 through the responder-side session" curl_page

step "mesh-proxy stops cleanly on SIGTERM"
bg_term_status meshB 5
case $BG_STATUS in
0) pass "mesh-proxy exited with status 0 after SIGTERM" ;;
timeout) fail "mesh-proxy still running 5 s after SIGTERM (killed)" ;;
*) fail "mesh-proxy exited with status $BG_STATUS after SIGTERM" ;;
esac

e2e_finish
