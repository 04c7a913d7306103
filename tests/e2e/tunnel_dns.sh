#!/usr/bin/env bash
# [Interface] DNS in wireproxy mode: names resolve through the tunnel to the
# configured server, never through this host's resolver.
#
#   A  198.18.0.1  mesh-proxy 100.77.0.1/24, DNS = 100.77.0.2, SOCKS5 :1080
#                  (a /24 as many VPN configs write it: the tunnel's DNS may
#                  answer with neighbours in it, split horizon)
#                  in a mount namespace of its own whose /etc/resolv.conf
#                  says "nameserver 127.0.0.1", where a spy DNS server
#                  (dns_server.py) logs every query it gets
#   B  198.18.0.2  mesh-proxy 100.77.0.2/32: TCP and UDP server tunnels
#                  :53 -> dns_tunnel_server.py (zone secret.corp, UDP+TCP),
#                  TCP server tunnel :8080 -> httpd.py
#
# Checks: curl --socks5-hostname, the HTTP proxy and a TCP client tunnel
# whose Target is a name reach secret.corp, a
# CNAME (alias.secret.corp) and a name whose UDP answer is truncated
# (tc.secret.corp, asked again over TCP through the tunnel); an unknown name
# fails with SOCKS5 0x04; the spy received nothing (and does answer when
# asked directly); a DNS server that no peer routes stops the node at start
# with an error naming it, and so does a server tunnel whose Target is a
# host name resolving to loopback at the node's own SOCKS5 port. [STDIOTunnel]: a node whose stdin/stdout are a
# connection to an echo service on B (by a name resolved through the
# tunnel) returns 1 MiB unchanged, also with stdin and stdout regular files
# or /dev/null; a closed port exits 1 with the reason.
# DNS = ::ffff:100.77.0.2 works (taken as IPv4); an IPv6 server on a node
# without an IPv6 Address is named at start.
# CheckAlive: 100.77.0.2 (answers) and 100.77.0.9 (routed to B, silent),
# every second: status and status --json say which answers.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip curl python3 setpriv unshare mount dig
e2e_require_private_mounts
e2e_tmp_init
e2e_require_mesh_proxy
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)

step "namespaces A (198.18.0.1) and B (198.18.0.2)"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24

AKEY=$(genkey) BKEY=$(genkey)
APUB=$(echo "$AKEY" | pubkey) BPUB=$(echo "$BKEY" | pubkey)
write_file "$E2E_TMP/a.conf" <<EOF
[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/24
ListenPort = 51820
DNS = 100.77.0.2
CheckAlive = 100.77.0.2, 100.77.0.9
CheckAliveInterval = 1

[Peer]
PublicKey = $BPUB
Endpoint = 198.18.0.2:51821
AllowedIPs = 100.77.0.0/24

[Socks5]
BindAddress = 127.0.0.1:1080

[http]
BindAddress = 127.0.0.1:3128

[TCPClientTunnel]
BindAddress = 127.0.0.1:18080
Target = secret.corp:8080
EOF
write_file "$E2E_TMP/b.conf" <<EOF
[Interface]
PrivateKey = $BKEY
Address = 100.77.0.2/32
ListenPort = 51821

[Peer]
PublicKey = $APUB
Endpoint = 198.18.0.1:51820
AllowedIPs = 100.77.0.1/32

[TCPServerTunnel]
ListenPort = 8080
Target = 127.0.0.1:8080

[TCPServerTunnel]
ListenPort = 53
Target = 127.0.0.1:5353

[TCPServerTunnel]
ListenPort = 7777
Target = 127.0.0.1:7777

[UDPServerTunnel]
ListenPort = 53
Target = 127.0.0.1:5353
EOF
echo "nameserver 127.0.0.1" | write_file "$E2E_TMP/resolv.conf"

step "B: web server, the tunnel's DNS server, mesh-proxy"
mkdir -p "$E2E_TMP/www"
TOKEN="tunnel-dns-$RANDOM$RANDOM"
echo "$TOKEN" | write_file "$E2E_TMP/www/index.html"
bg_nobody httpB B $PY "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www"
bg_nobody dnsB B $PY "$E2E_DIR/dns_tunnel_server.py" 127.0.0.1 5353 secret.corp 100.77.0.2 fd77::2
wait_listen B 8080 || die "web server in B did not start"
wait_listen B 5353 || die "DNS server in B did not start"
bg_nobody echoB B $PY "$E2E_DIR/echo_server.py" 127.0.0.1 7777
wait_listen B 7777 || die "echo server in B did not start"
mesh_start meshB B "$E2E_TMP/b.conf"
wait_listen B 51821 10 udp || die "mesh-proxy B did not start"

step "A: the host's resolver (a spy on 127.0.0.1:53) and mesh-proxy with DNS = 100.77.0.2"
bg spyA A $PY "$E2E_DIR/dns_server.py" 127.0.0.1 53 secret.corp 198.18.0.66
wait_listen A 53 10 udp || die "spy resolver in A did not start"
bg meshA A unshare -m --propagation private sh -c \
    'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$E2E_TMP/resolv.conf" \
    "${AS_NOBODY[@]}" "$MESH_PROXY" --config "$E2E_TMP/a.conf" \
    --api "$E2E_TMP/run/meshA.sock" --log-level debug
wait_listen A 1080 || die "A's SOCKS5 is not listening"
check "A's log says names resolve through the tunnel" \
    wait_log "$E2E_LOGDIR/meshA.log" "names resolve through the tunnel" 5

get_page() {
    local got
    got=$(nsx A curl -sS --max-time 20 "$@") || return 1
    [ "$got" = "$TOKEN" ] || { echo "got: $got"; return 1; }
}
step "names through the tunnel"
check "curl --socks5-hostname http://secret.corp:8080/" \
    get_page --socks5-hostname 127.0.0.1:1080 http://secret.corp:8080/index.html
check "the HTTP proxy: http://secret.corp:8080/" \
    get_page -x http://127.0.0.1:3128 http://secret.corp:8080/index.html
check "a [TCPClientTunnel] whose Target is secret.corp:8080" \
    get_page http://127.0.0.1:18080/index.html
check "a CNAME: alias.secret.corp" \
    get_page --socks5-hostname 127.0.0.1:1080 http://alias.secret.corp:8080/index.html
check "a truncated UDP answer is asked again over TCP: tc.secret.corp" \
    get_page --socks5-hostname 127.0.0.1:1080 http://tc.secret.corp:8080/index.html
check "the tunnel's server got tc.secret.corp over TCP" \
    grep -q "dns: tcp .* tc.secret.corp 1" "$E2E_LOGDIR/dnsB.log"
check "the tunnel's server got A and AAAA queries over UDP" \
    bash -c "grep -q 'dns: udp .* secret.corp 1\$' '$E2E_LOGDIR/dnsB.log' && grep -q 'dns: udp .* secret.corp 28\$' '$E2E_LOGDIR/dnsB.log'"
unknown_fails() {
    local rc
    nsx A curl -sS --max-time 20 --socks5-hostname 127.0.0.1:1080 http://nothing.corp:8080/ >/dev/null 2>"$E2E_TMP/curl.err"
    rc=$?
    [ $rc -ne 0 ] && grep -qi "unreachable\|(4)" "$E2E_TMP/curl.err" ||
        { echo "rc $rc: $(cat "$E2E_TMP/curl.err")"; return 1; }
}
check "an unknown name: SOCKS5 0x04 (host unreachable)" unknown_fails

step "the host's resolver was never asked"
no_spy_queries() {
    if grep -E "dns: .*(type|bad query|ignored)" "$E2E_LOGDIR/spyA.log"; then return 1; fi
}
check "the spy on A's resolv.conf nameserver received no query" no_spy_queries
spy_answers() { [ "$(nsx A dig +short +time=2 +tries=1 @127.0.0.1 secret.corp)" = 198.18.0.66 ]; }
check "the spy does answer when asked directly (so its silence means something)" spy_answers

step "CheckAlive: pinged through the mesh every second, shown in status"
alive_json() {
    mesh_cli meshA A status --json | $PY -c '
import json, sys
ca = json.load(sys.stdin)["check_alive"]
a = {e["address"]: e for e in ca["addresses"]}
ok = (ca["interval_s"] == 1 and not ca["ok"] and a["100.77.0.2"]["ok"]
      and a["100.77.0.2"]["received"] >= 2 and not a["100.77.0.9"]["ok"]
      and a["100.77.0.9"]["received"] == 0 and a["100.77.0.9"]["sent"] >= 2)
sys.exit(0 if ok else 1)'
}
check "status --json: 100.77.0.2 ok (answers), 100.77.0.9 not (routed, silent)" wait_until 10 alive_json
alive_text() {
    local t
    t=$(mesh_cli meshA A status) || return 1
    echo "$t" | grep -q '^alive  100.77.0.2  ok' &&
        echo "$t" | grep -q '^alive  100.77.0.9  NOT ANSWERING' || { echo "$t"; return 1; }
}
check "status text: one alive line per address" alive_text

step "a DNS server outside every AllowedIPs stops the node"
sed -e 's/^DNS = .*/DNS = 198.18.0.9/' -e 's/^ListenPort = 51820/ListenPort = 51830/' \
    -e 's/127.0.0.1:1080/127.0.0.1:1081/' -e 's/127.0.0.1:3128/127.0.0.1:3129/' \
    -e 's/127.0.0.1:18080/127.0.0.1:18081/' \
    "$E2E_TMP/a.conf" | write_file "$E2E_TMP/bad.conf"
refuses() {
    local out rc
    out=$(nsx_nobody A timeout 10 "$MESH_PROXY" --config "$E2E_TMP/bad.conf" \
        --api "$E2E_TMP/run/bad.sock" 2>&1)
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q "DNS 198.18.0.9: no \[Peer\] AllowedIPs covers it" ||
        { echo "rc $rc: $out"; return 1; }
}
check "DNS = 198.18.0.9 (not routed): refused at start, the address named" refuses

step "a server tunnel to this node's own SOCKS5 by a name of this host stops the node"
# A name /etc/hosts gives a loopback address that is not "localhost" (the
# host's own name at 127.0.1.1 on Debian, or ip6-localhost). No [Peer]:
# with the old code this node starts, and must not disturb A's peer.
LONAME=$(awk '($1 ~ /^127\./ || $1 == "::1") && $2 != "localhost" { print $2; exit }' /etc/hosts)
if [ -n "$LONAME" ]; then
    sed -e 's/^ListenPort = 51820/ListenPort = 51832/' \
        -e 's/127.0.0.1:1080/127.0.0.1:1082/' -e 's/127.0.0.1:3128/127.0.0.1:3130/' \
        -e 's/127.0.0.1:18080/127.0.0.1:18082/' -e '/^CheckAlive/d' \
        -e '/^DNS/d' -e '/^\[Peer\]/,/^AllowedIPs/d' \
        "$E2E_TMP/a.conf" | write_file "$E2E_TMP/hop.conf"
    printf '\n[TCPServerTunnel]\nListenPort = 2080\nTarget = %s:1082\n' "$LONAME" >>"$E2E_TMP/hop.conf"
    hop_refused() {
        local out rc
        out=$(nsx_nobody A timeout 10 "$MESH_PROXY" --config "$E2E_TMP/hop.conf" \
            --api "$E2E_TMP/run/hop.sock" 2>&1)
        rc=$?
        [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q "Target $LONAME:1082 is this node's own proxy or tunnel" ||
            { echo "rc $rc: $(echo "$out" | tail -3)"; return 1; }
    }
    check "Target = $LONAME:1082 (a loopback name, the node's SOCKS5 port): refused at start" hop_refused
else
    echo "  (no loopback name besides localhost in /etc/hosts: skipped)"
fi

step "[STDIOTunnel]: stdin/stdout through the mesh (ssh ProxyCommand style)"
# The same node key, another port, no proxies: stdin and stdout are the
# connection to secret.corp:7777 (a name resolved through the tunnel). The
# first DNS server, 100.77.0.5, is routed to B but nothing answers there:
# the lookup moves on to 100.77.0.2 after its 2 s timeout.
sed -e 's/^ListenPort = 51820/ListenPort = 51831/' -e '/^\[Socks5\]/,$d' \
    -e 's/^DNS = .*/DNS = 100.77.0.5, 100.77.0.2/' -e '/^CheckAlive/d' \
    "$E2E_TMP/a.conf" | write_file "$E2E_TMP/stdio.conf"
printf '\n[STDIOTunnel]\nTarget = secret.corp:7777\n' >>"$E2E_TMP/stdio.conf"
random_file "$E2E_TMP/stdio.in" 1
stdio_echoes() {
    local out="$E2E_TMP/run/stdio.out"
    # A pipe in and out, as ssh gives its ProxyCommand; stdin stays open a
    # moment after the data so the echo can come back before the half-close.
    (cat "$E2E_TMP/stdio.in"; sleep 3) | nsx_nobody A timeout 20 "$MESH_PROXY" \
        --config "$E2E_TMP/stdio.conf" --api "$E2E_TMP/run/stdio.sock" \
        2>"$E2E_LOGDIR/stdio.log" | cat >"$out"
    [ "$(sha "$out")" = "$(sha "$E2E_TMP/stdio.in")" ] ||
        { echo "got $(stat -c %s "$out") bytes"; return 1; }
}
check "1 MiB through stdin comes back on stdout (echo service via the mesh; the silent first DNS server skipped)" stdio_echoes
check "the log went to stderr and says connected" grep -q "STDIOTunnel\] connected to secret.corp:7777" "$E2E_LOGDIR/stdio.log"
sed -e 's/secret.corp:7777/secret.corp:7778/' "$E2E_TMP/stdio.conf" | write_file "$E2E_TMP/stdio-bad.conf"
stdio_refused() {
    local rc
    echo hi | nsx_nobody A timeout 20 "$MESH_PROXY" --config "$E2E_TMP/stdio-bad.conf" \
        --api "$E2E_TMP/run/stdio2.sock" 2>"$E2E_TMP/stdio2.err" >/dev/null
    rc=$?
    [ $rc -eq 1 ] && grep -q "STDIOTunnel\] Target secret.corp:7778" "$E2E_TMP/stdio2.err" ||
        { echo "rc $rc: $(tail -3 "$E2E_TMP/stdio2.err")"; return 1; }
}
check "a closed Target: exit 1 with the reason on stderr" stdio_refused
stdio_files() {
    local out="$E2E_TMP/run/stdio-file.out"
    nsx_nobody A timeout 20 "$MESH_PROXY" --config "$E2E_TMP/stdio.conf" \
        --api "$E2E_TMP/run/stdio5.sock" <"$E2E_TMP/stdio.in" >"$out" \
        2>"$E2E_LOGDIR/stdio-file.log" || { echo "rc $?"; tail -3 "$E2E_LOGDIR/stdio-file.log"; return 1; }
    [ "$(sha "$out")" = "$(sha "$E2E_TMP/stdio.in")" ] ||
        { echo "got $(stat -c %s "$out") bytes"; return 1; }
}
check "stdin and stdout regular files (epoll cannot poll them): 1 MiB echoed, exit 0" stdio_files
stdio_devnull() {
    local rc
    nsx_nobody A timeout 20 "$MESH_PROXY" --config "$E2E_TMP/stdio.conf" \
        --api "$E2E_TMP/run/stdio6.sock" </dev/null >/dev/null 2>"$E2E_LOGDIR/stdio-null.log"
    rc=$?
    [ $rc -eq 0 ] || { echo "rc $rc"; tail -3 "$E2E_LOGDIR/stdio-null.log"; return 1; }
}
check "stdin and stdout /dev/null: end of input seen, exit 0 (not a hang)" stdio_devnull

step "[Interface] DNS server forms"
sed -e 's/^DNS = .*/DNS = ::ffff:100.77.0.2/' "$E2E_TMP/stdio.conf" | write_file "$E2E_TMP/stdio-mapped.conf"
stdio_mapped() {
    local got
    got=$( (echo mapped-dns; sleep 2) | nsx_nobody A timeout 20 "$MESH_PROXY" \
        --config "$E2E_TMP/stdio-mapped.conf" --api "$E2E_TMP/run/stdio3.sock" \
        2>"$E2E_LOGDIR/stdio-mapped.log")
    [ "$got" = mapped-dns ] || { echo "got: $got"; tail -3 "$E2E_LOGDIR/stdio-mapped.log"; return 1; }
}
check "DNS = ::ffff:100.77.0.2 is asked as 100.77.0.2 (its answers are taken)" stdio_mapped
sed -e 's/^DNS = .*/DNS = fd77::53/' "$E2E_TMP/stdio.conf" | write_file "$E2E_TMP/stdio-v6.conf"
dns_family_refused() {
    local out rc
    out=$(echo hi | nsx_nobody A timeout 10 "$MESH_PROXY" --config "$E2E_TMP/stdio-v6.conf" \
        --api "$E2E_TMP/run/stdio4.sock" 2>&1 >/dev/null)
    rc=$?
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && echo "$out" | grep -q "DNS fd77::53: ignored, no \[Interface\] Address is IPv6" ||
        { echo "rc $rc: $out"; return 1; }
}
check "DNS = fd77::53 with no IPv6 Address: named at start, the node refuses to run without a server" dns_family_refused

e2e_finish
