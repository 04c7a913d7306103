#!/usr/bin/env bash
# A node whose nameserver never answers stops cleanly (e2e_clients under
# ASan: meshA exited 1 after SIGTERM, LeakSanitizer reporting 600 + 48
# bytes from libevent). Names that cannot resolve time out until evdns
# marks the nameserver down and sends probes of its own; one in flight at
# shutdown was failed by evdns_base_free(dns, 1) into a callback that never
# ran. See node_resolver_free (node/node_dns.c).
#
#   A  mesh-proxy ([Socks5] Direct = all) in a mount namespace whose
#      /etc/resolv.conf (bind-mounted) names 127.0.0.1:5353, a server that
#      reads and never answers, with short evdns timeouts (options line)
#
# Checks: a SOCKS5 CONNECT to a name makes the server see queries, then
# evdns's probe (a query for another name); SIGTERM then: exit 0 and, in
# the ASan build, no sanitizer report in the node's log.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv unshare mount
e2e_require_private_mounts
e2e_tmp_init
e2e_require_mesh_proxy
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)

step "namespace A: a nameserver on 127.0.0.1:5353 that never answers"
ns_create A
bg dns A $PY "$E2E_DIR/silent_dns_stop.py" 127.0.0.1 5353
wait_log "$E2E_LOGDIR/dns.log" "^listening" 10 || die "the nameserver did not start"

AKEY=$(genkey) BKEY=$(genkey)
BPUB=$(echo "$BKEY" | pubkey)
write_file "$E2E_TMP/a.conf" <<EOF
[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/32

[Peer]
PublicKey = $BPUB
AllowedIPs = 100.77.0.2/32

[Socks5]
BindAddress = 127.0.0.1:1080
Direct = all
EOF
# Quick timeouts so evdns marks the server down within a second and probes
# it a second later; many attempts keep that probe in flight.
RESOLV="$E2E_TMP/resolv.conf"
write_file "$RESOLV" <<EOF
nameserver 127.0.0.1:5353
options timeout:0.2 max-timeouts:1 initial-probe-timeout:1 attempts:200
EOF

step "A: mesh-proxy; a SOCKS5 CONNECT to a name nobody answers for"
bg meshA A unshare -m --propagation private sh -c \
    'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$RESOLV" \
    "${AS_NOBODY[@]}" "$MESH_PROXY" --config "$E2E_TMP/a.conf" \
    --api "$E2E_TMP/run/meshA.sock"
wait_listen A 1080 || die "A's SOCKS5 is not listening"
bg client A $PY -c '
import socket, struct, time
s = socket.create_connection(("127.0.0.1", 1080))
s.sendall(b"\x05\x01\x00")
s.recv(2)
name = b"clients2.nowhere.test"
s.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack(">H", 443))
time.sleep(60)
'
check "the nameserver sees the lookup" wait_log "$E2E_LOGDIR/dns.log" "^query clients2.nowhere.test$" 10
check "then evdns's own probe of it (another name)" \
    wait_until 15 eval 'grep "^query " "$E2E_LOGDIR/dns.log" | grep -qv "clients2.nowhere.test"'

step "SIGTERM with the probe in flight"
check "A still running" bg_alive meshA
bg_term_status meshA 10
case $BG_STATUS in
0) pass "A exited with status 0 after SIGTERM" ;;
*) fail "A after SIGTERM: $BG_STATUS" ;;
esac
check "A: no sanitizer report in its log" mesh_log_clean meshA

e2e_finish
