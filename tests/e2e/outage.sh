#!/usr/bin/env bash
# A proxied TCP connection survives a 120 s WireGuard outage, as it would
# between two Linux hosts: every WireGuard datagram between the nodes is
# dropped (nftables in A) while the client keeps writing; when the path
# comes back the bytes written meanwhile arrive and the echo comes back on
# the same connection, which was never reset.
#
#   A  198.18.0.1  mesh-proxy 100.77.0.1/32, UDP 51820;
#                  [TCPClientTunnel] 127.0.0.1:17000 -> 100.77.0.2:7000
#   B  198.18.0.2  mesh-proxy 100.77.0.2/32, UDP 51821;
#                  [TCPServerTunnel] 7000 -> 127.0.0.1:7000 (an echo server)
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip nft python3 setpriv ss
e2e_tmp_init
e2e_require_mesh_proxy
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
OUTAGE_S=${MESH_OUTAGE_S:-120}

step "namespaces A and B, two mesh-proxy nodes, an echo server behind B"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
mesh_pair_keys
write_file "$E2E_TMP/a.conf" <<EOF
[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/32
ListenPort = 51820

[Peer]
PublicKey = $BPUB
Endpoint = 198.18.0.2:51821
AllowedIPs = 100.77.0.2/32

[TCPClientTunnel]
BindAddress = 127.0.0.1:17000
Target = 100.77.0.2:7000
EOF
write_file "$E2E_TMP/b.conf" <<EOF
[Interface]
PrivateKey = $BKEY
Address = 100.77.0.2/32
ListenPort = 51821

[Peer]
PublicKey = $APUB
AllowedIPs = 100.77.0.1/32

[TCPServerTunnel]
ListenPort = 7000
Target = 127.0.0.1:7000
EOF
bg_nobody echoB B "$PY" "$E2E_DIR/echo_server.py" 127.0.0.1 7000
mesh_start meshB B "$E2E_TMP/b.conf"
mesh_start meshA A "$E2E_TMP/a.conf"
wait_listen B 7000 10 || die "echo server in B did not start"
wait_listen A 17000 10 || die "A's client tunnel did not start"

# The client: one connection; 300 echoes before, a write during the outage,
# then it waits (up to 60 s after the path returns) for that echo.
write_file "$E2E_TMP/client.py" <<'EOF'
import socket, sys, time, os
ready, down, resume = sys.argv[1], sys.argv[2], sys.argv[3]
s = socket.create_connection(("127.0.0.1", 17000), timeout=20)
# 300 round trips first: the node's TCP learns the path's short RTT (its
# retransmission timeout shrinks to what a LAN gives), as on a busy link.
for i in range(300):
    s.sendall(b"before\n")
    got = b""
    while len(got) < 7:
        b = s.recv(64)
        if not b:
            print("closed before the outage"); sys.exit(1)
        got += b
    if got != b"before\n":
        print("no echo before the outage: %r" % got); sys.exit(1)
open(ready, "w").close()
while not os.path.exists(down):    # the outage has begun
    time.sleep(0.1)
s.sendall(b"during-the-outage\n")  # retransmitted by A's netstack meanwhile
while not os.path.exists(resume):
    time.sleep(0.2)
s.settimeout(60)
got = b""
try:
    while not got.endswith(b"\n"):
        b = s.recv(64)
        if not b:
            print("closed by the node"); sys.exit(1)
        got += b
except OSError as e:
    print("connection lost: %s" % e); sys.exit(1)
print("echo after the outage: %r" % got)
sys.exit(0 if got == b"during-the-outage\n" else 1)
EOF
READY=$E2E_TMP/run/ready DOWN=$E2E_TMP/run/down RESUME=$E2E_TMP/run/resume
bg_nobody client A "$PY" "$E2E_TMP/client.py" "$READY" "$DOWN" "$RESUME"
wait_until 20 test -e "$READY" || die "the client got no first echo (see $E2E_LOGDIR/client.log)"
pass "one connection through the tunnel, echoed"

step "a ${OUTAGE_S} s WireGuard outage: every datagram between the nodes dropped"
# WireGuard transport data (message type 4, the first byte after the UDP
# header) is counted apart: each is one of A's TCP retransmissions.
nsx A nft -f - <<EOF || die "nft failed"
table inet outage {
    counter data { }
    chain out {
        type filter hook output priority 0;
        udp dport 51821 @th,64,8 4 counter name "data" drop
        udp dport 51821 drop
    }
    chain in { type filter hook input priority 0; udp sport 51821 drop; }
}
EOF
touch "$DOWN"
sleep "$OUTAGE_S"
DATA=$(nsx A nft list counter inet outage data | awk '{ for (i = 1; i < NF; i++) if ($i == "packets") print $(i + 1) }')
# lwIP's old limit was 12 retransmissions: more than that, and the
# connection must still be there.
check "A kept retransmitting into the outage (${DATA:-0} data messages dropped, want > 12)" \
    test "${DATA:-0}" -gt 12
nsx A nft delete table inet outage || die "nft delete failed"
touch "$RESUME"
info "the path is back"

step "the connection lives on"
bg_wait client 90
RC=$?
check "the bytes written during the outage were echoed on the same connection (exit $RC)" \
    test "$RC" = 0
e2e_finish
