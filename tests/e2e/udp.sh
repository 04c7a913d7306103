#!/usr/bin/env bash
# UDP through the mesh (issue 3's proof): DNS queries to a tiny resolver
# behind B, through SOCKS5 UDP ASSOCIATE and through a UDP forward.
#
#   A  198.18.0.1  mesh-proxy 100.77.0.1/32 + fd77::1/128, UDP 51820
#                  SOCKS5 127.0.0.1:1080 (UDP ASSOCIATE)
#                  UDPClientTunnel 127.0.0.1:5353 -> 100.77.0.2:53
#                  UDPClientTunnel 127.0.0.1:5354 -> web:53 (a mesh name)
#                  [Peer] B has Name = web
#   B  198.18.0.2  mesh-proxy 100.77.0.2/32 + fd77::2/128, UDP 51821
#                  UDPServerTunnel 53 -> 127.0.0.1:5300
#                  dns_server.py on 127.0.0.1:5300: web.mesh.test A
#                  192.0.2.55, big.web.mesh.test TXT (1,200 bytes), else
#                  NXDOMAIN
#
# Checks: answers through UDP ASSOCIATE to 100.77.0.2:53, to web:53 (name in
# the UDP request header) and to [fd77::2]:53; a FRAG != 0 datagram is
# dropped; the relay stops when its control connection closes; dig and a
# python client through the UDP forward (several senders, each gets its own
# answers); a 1,200-byte answer; counters of every UDP front-end moved.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss dig
e2e_tmp_init
e2e_require_mesh_proxy

PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
ulimit -Sn 1024
NAME=web.mesh.test
ADDR=192.0.2.55

step "namespaces A (198.18.0.1) and B (198.18.0.2)"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
check "veth: A reaches B" nsx A ping -c 1 -W 2 198.18.0.2 || exit 1

step "keys and configs"
mesh_pair_keys
write_file "$E2E_TMP/a.conf" <<EOF
[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/32, fd77::1/128
ListenPort = 51820

[Peer]
Name = web
PublicKey = $BPUB
Endpoint = 198.18.0.2:51821
AllowedIPs = 100.77.0.2/32, fd77::2/128

[Socks5]
BindAddress = 127.0.0.1:1080

[UDPClientTunnel]
BindAddress = 127.0.0.1:5353
Target = 100.77.0.2:53
IdleTimeout = 30
MaxFlows = 64

[UDPClientTunnel]
BindAddress = 127.0.0.1:5354
Target = web:53
EOF
write_file "$E2E_TMP/b.conf" <<EOF
[Interface]
PrivateKey = $BKEY
Address = 100.77.0.2/32, fd77::2/128
ListenPort = 51821

[Peer]
PublicKey = $APUB
Endpoint = 198.18.0.1:51820
AllowedIPs = 100.77.0.1/32, fd77::1/128

[UDPServerTunnel]
ListenPort = 53
Target = 127.0.0.1:5300
EOF

step "B: the DNS server and mesh-proxy; A: mesh-proxy"
bg_nobody dnsB B $PY "$E2E_DIR/dns_server.py" 127.0.0.1 5300 "$NAME" "$ADDR"
wait_listen B 5300 10 udp || die "DNS server in B did not start"
check "the DNS server answers on B's host side (sanity)" \
    nsx_nobody B $PY "$E2E_DIR/dns_client.py" udp 127.0.0.1 5300 "$NAME" A "$ADDR" --count 1
mesh_start meshB B "$E2E_TMP/b.conf"
wait_listen B 51821 10 udp || die "mesh-proxy B did not bind UDP 51821"
mesh_start meshA A "$E2E_TMP/a.conf"
wait_listen A 51820 10 udp || die "mesh-proxy A did not bind UDP 51820"
wait_listen A 1080 || die "A's SOCKS5 is not listening"
check "A's UDPClientTunnel listens on 127.0.0.1:5353" wait_listen A 5353 5 udp
check "A's UDPClientTunnel listens on 127.0.0.1:5354" wait_listen A 5354 5 udp
check "mesh-proxy ping 100.77.0.2 from A" mesh_cli meshA A ping -c 2 -W 5 100.77.0.2

# dnsq WHAT ARGS... : dns_client.py as nobody in A; its output is shown.
dnsq() { nsx_nobody A timeout 60 $PY "$E2E_DIR/dns_client.py" "$@"; }

step "SOCKS5 UDP ASSOCIATE (RFC 1928 section 7)"
check "10 queries to 100.77.0.2:53 through the relay answered $ADDR" \
    dnsq socks 1080 100.77.0.2 53 "$NAME" A "$ADDR" --count 10
check "queries to web:53 (a mesh name in the UDP request header)" \
    dnsq socks 1080 web 53 "$NAME" A "$ADDR" --count 3
check "queries to [fd77::2]:53 (IPv6 in the mesh)" \
    dnsq socks 1080 fd77::2 53 "$NAME" A "$ADDR" --count 3
check "a 1,200-byte TXT answer comes back whole" \
    dnsq socks 1080 100.77.0.2 53 "big.$NAME" TXT TXT:1200 --count 2
check "NXDOMAIN is relayed as it is" dnsq socks 1080 100.77.0.2 53 nosuch.mesh.test A NXDOMAIN --count 1
check "a datagram with FRAG != 0 is dropped, the next one answered" \
    dnsq socks 1080 100.77.0.2 53 "$NAME" A "$ADDR" --count 1 --frag
check "the relay stops when its TCP control connection closes" \
    dnsq socks 1080 100.77.0.2 53 "$NAME" A "$ADDR" --count 1 --after-close
# Several associations at once, each with its own relay.
par_ok=0
par_pids=()
for i in 1 2 3 4 5; do
    dnsq socks 1080 100.77.0.2 53 "$NAME" A "$ADDR" --count 5 >"$E2E_LOGDIR/assoc.$i.log" 2>&1 &
    par_pids+=($!)
done
for p in "${par_pids[@]}"; do wait "$p" && par_ok=$((par_ok + 1)); done
check "5 associations at once, 5 queries each: all answered ($par_ok/5)" test $par_ok -eq 5

step "the UDP forward ([UDPClientTunnel] 127.0.0.1:5353 -> 100.77.0.2:53)"
dig_says() {
    local got
    got=$(nsx_nobody A dig @127.0.0.1 -p "$1" "$2" A +short +tries=3 +time=2)
    echo "dig: $got"
    [ "$got" = "$ADDR" ]
}
check "dig @127.0.0.1 -p 5353 $NAME -> $ADDR" dig_says 5353 "$NAME"
check "dig through the forward whose Target is the mesh name web:53" dig_says 5354 "$NAME"
check "8 local senders, 5 queries each, every answer to the sender that asked" \
    dnsq udp 127.0.0.1 5353 "$NAME" A "$ADDR" --count 5 --senders 8
check "a 1,200-byte TXT answer through the forward" dnsq udp 127.0.0.1 5353 "big.$NAME" TXT TXT:1200
check "NXDOMAIN through the forward" dnsq udp 127.0.0.1 5353 nosuch.mesh.test A NXDOMAIN --count 1
check "B's DNS server saw the queries from its own host side (through B's UDPServerTunnel)" \
    bash -c "[ \$(grep -c ' -> rcode' '$E2E_LOGDIR/dnsB.log') -ge 60 ]"

step "counters in status --json"
check "A's SOCKS5 front-end: datagrams up" counter_at_least meshA A 127.0.0.1:1080 dgrams_up 40
check "A's SOCKS5 front-end: datagrams down" counter_at_least meshA A 127.0.0.1:1080 dgrams_down 40
check "A's SOCKS5 front-end: the FRAG datagram counted as a drop" \
    counter_at_least meshA A 127.0.0.1:1080 dgram_drops 1
check "A's UDP forward 5353: datagrams up" counter_at_least meshA A 127.0.0.1:5353 dgrams_up 40
check "A's UDP forward 5353: datagrams down" counter_at_least meshA A 127.0.0.1:5353 dgrams_down 40
check "A's UDP forward 5353: bytes down" counter_at_least meshA A 127.0.0.1:5353 bytes_down 2000
check "B's UDP server tunnel: datagrams up" counter_at_least meshB B udp dgrams_up 60
check "B's UDP server tunnel: datagrams down" counter_at_least meshB B udp dgrams_down 60
info "A: $(mesh_cli meshA A status | grep -E '^(socks5|udp) ' | tr '\n' ';')"
info "B: $(mesh_cli meshB B status | grep -E '^udp ' | tr '\n' ';')"

step "both nodes still up, then SIGTERM"
mesh_stop_both meshA meshB

e2e_finish
