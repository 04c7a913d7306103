#!/usr/bin/env bash
# A peer name with several mesh addresses, some of them dead (review M6):
# the proxies try them all, the next one 250 ms after the last
# (RFC 8305), and the first to connect wins.
#
#   A  198.18.0.1  mesh-proxy 100.77.0.1/32 + fd77::1/128, UDP 51820
#                  SOCKS5 127.0.0.1:1080, HTTP proxy 127.0.0.1:3128
#                  [Peer] B: Name = web6,
#                    AllowedIPs = 100.77.0.2/32, fd77::9/128, fd77::2/128
#   B  198.18.0.2  mesh-proxy with only an IPv6 mesh address, fd77::2/128
#                  (its netstack drops IPv4, and fd77::9 is nobody's)
#                  TCPServerTunnel 8080 -> 127.0.0.1:8080 (httpd.py)
#
# So of web6's three addresses only the last one answers. Before, the
# first routed address (100.77.0.2) was the only one tried and the client
# got an error once the netstack gave up on the SYN; now web6 answers
# within a second or so (100.77.0.2 first, fd77::9 250 ms later, fd77::2
# 250 ms after that), through SOCKS5 (a name, as curl --socks5-hostname
# and browsers send it), HTTP CONNECT and HTTP forwarding.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip curl python3 setpriv ss
e2e_tmp_init
e2e_require_mesh_proxy

PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)

step "namespaces A (198.18.0.1) and B (198.18.0.2) joined by a veth pair"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
check "veth: A reaches B" nsx A ping -c 1 -W 2 198.18.0.2 || exit 1

step "keys and configs (B has only an IPv6 mesh address)"
mesh_pair_keys
write_file "$E2E_TMP/a.conf" <<EOF
[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/32, fd77::1/128
ListenPort = 51820

[Peer]
Name = web6
PublicKey = $BPUB
Endpoint = 198.18.0.2:51821
AllowedIPs = 100.77.0.2/32, fd77::9/128, fd77::2/128

[Socks5]
BindAddress = 127.0.0.1:1080

[http]
BindAddress = 127.0.0.1:3128
EOF
write_file "$E2E_TMP/b.conf" <<EOF
[Interface]
PrivateKey = $BKEY
Address = fd77::2/128
ListenPort = 51821

[Peer]
PublicKey = $APUB
Endpoint = 198.18.0.1:51820
AllowedIPs = 100.77.0.1/32, fd77::1/128

[TCPServerTunnel]
ListenPort = 8080
Target = 127.0.0.1:8080
EOF

step "B: web server and mesh-proxy; A: mesh-proxy"
mkdir -p "$E2E_TMP/www"
TOKEN="meshproxy-eyeballs-$RANDOM$RANDOM"
echo "$TOKEN" | write_file "$E2E_TMP/www/index.html"
bg_nobody httpB B $PY "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www"
wait_listen B 8080 || die "web server in B did not start"
mesh_start meshB B "$E2E_TMP/b.conf"
wait_listen B 51821 10 udp || die "mesh-proxy B did not bind UDP 51821"
mesh_start meshA A "$E2E_TMP/a.conf"
wait_listen A 1080 || die "A's SOCKS5 is not listening"
wait_listen A 3128 || die "A's HTTP proxy is not listening"
check "mesh-proxy ping fd77::2 from A" mesh_cli meshA A ping -c 2 -W 5 fd77::2

# timed_page SECONDS ARGS... : the index page through A with curl ARGS,
# within SECONDS (curl may wait longer than the proxy's connect timeout,
# so a proxy that tries only a dead address gives a clear error).
timed_page() {
    local limit=$1 got t0 dt
    shift
    t0=$(date +%s.%N)
    got=$(nsx_nobody A curl -sS --max-time 40 "$@") || return 1
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
    info "took ${dt}s"
    [ "$got" = "$TOKEN" ] || { echo "got: $got"; return 1; }
    awk -v d="$dt" -v l="$limit" 'BEGIN { exit !(d < l) }' || { echo "took ${dt}s, over ${limit}s"; return 1; }
}

step "web6: 100.77.0.2 and fd77::9 are dead, fd77::2 answers"
check "SOCKS5 name web6 -> the page within 3 s (the dead addresses skipped)" \
    timed_page 3 --socks5-hostname 127.0.0.1:1080 http://web6:8080/index.html
check "HTTP CONNECT to web6 -> the page within 3 s" \
    timed_page 3 --proxytunnel -x http://127.0.0.1:3128 http://web6:8080/index.html
check "HTTP forwarding to web6 -> the page within 3 s" \
    timed_page 3 -x http://127.0.0.1:3128 http://web6:8080/index.html

step "stop"
mesh_stop_both meshA meshB
e2e_finish
