#!/usr/bin/env bash
# A hostile peer against the memory budget (issue 12; reviews proxy M5 and
# wireguard-and-netstack M6): refusals, not gigabytes.
#
#   A  198.18.0.1  mesh-proxy 100.77.0.1/32, MemoryLimit 64M: the hostile
#                  peer. TCPClientTunnels 127.0.0.1:9001 -> B:7001,
#                  :9002 -> B:7002, :9003 -> B:7003; TCPServerTunnel
#                  7103 -> an echo service (for B's own users).
#   B  198.18.0.2  mesh-proxy 100.77.0.2/32, MemoryLimit 64M, the default
#                  MaxConnectionsPerPeer (1024): the node under test. Its
#                  namespace's TCP buffers are at most 64 KiB per socket.
#                  TCPServerTunnels 7001 -> a service that writes without
#                  end, 7002 -> a service that never reads, 7003 -> echo;
#                  TCPClientTunnel 127.0.0.1:9103 -> A:7103 (a local user).
#   C  198.19.0.3  mesh-proxy 100.77.0.3/32 (on a second link to B at
#                  198.19.0.2): another peer, TCPClientTunnel
#                  127.0.0.1:9203 -> B:7003.
#
# 1. Pull: MEM_FLOOD (3000) connections from A to B's writer, never read
#    (zero window). B refuses those over the per-peer cap (RST, counted);
#    B's peak RSS (VmHWM) over MEM_HOLD (15) s stays under
#      idle + MemoryLimit + accepted connections x 48 KiB
#    (48 KiB: the 16 KiB each connection may still queue per direction
#    over the budget, its pcb, splice, session and socket events).
# 2. Push: as many connections push 1 MiB each into B's service that does
#    not read: the same bound.
# 3. During each flood, B's own local user and the other peer C still get
#    through: the budget is shared per source, and the flooding peer fills
#    only its share.
# 4. After each flood, a fresh connection is echoed (after the push flood,
#    once the service that never read is gone); B's status shows the
#    budget and the refusals; SIGTERM exits 0, no sanitizer report.
# Without the budget B grew to ~1 MiB per connection (GiBs); under ASan the
# bound is not checked (its quarantine and shadow memory).
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss
e2e_tmp_init
e2e_require_mesh_proxy

PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
FLOOD=${MEM_FLOOD:-3000}
HOLD=${MEM_HOLD:-15}
LIMIT_MIB=64
PER_PEER=1024
PER_CONN_KIB=48

step "namespaces A (198.18.0.1), B (198.18.0.2, 198.19.0.2) and C (198.19.0.3)"
ns_create A
ns_create B
ns_create C
ns_link A 198.18.0.1/24 B 198.18.0.2/24
ns_link B 198.19.0.2/24 C 198.19.0.3/24
check "veth: A reaches B" nsx A ping -c 1 -W 2 198.18.0.2 || exit 1
check "veth: C reaches B" nsx C ping -c 1 -W 2 198.19.0.2 || exit 1
# B's kernel keeps small TCP buffers (64 KiB at most per socket, per
# namespace): what the peer pushes at a service that does not read must
# then wait in B's process, not in socket buffers the kernel grows to
# 4 MiB each, which would hide the node's own behaviour. (The kernel's
# socket memory is not part of B's RSS nor of its budget either way.)
nsx B sysctl -qw net.ipv4.tcp_wmem="4096 16384 65536" net.ipv4.tcp_rmem="4096 16384 65536" ||
    die "cannot set B's TCP buffer sizes"

step "keys and configs"
mesh_pair_keys
CKEY=$("$MESH_PROXY" genkey) || die "mesh-proxy genkey failed"
CPUB=$(echo "$CKEY" | "$MESH_PROXY" pubkey) || die "mesh-proxy pubkey failed"
write_file "$E2E_TMP/a.conf" <<EOF
MemoryLimit = ${LIMIT_MIB}M

[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/32
ListenPort = 51820

[Peer]
PublicKey = $BPUB
Endpoint = 198.18.0.2:51821
AllowedIPs = 100.77.0.2/32

[TCPClientTunnel]
BindAddress = 127.0.0.1:9001
Target = 100.77.0.2:7001

[TCPClientTunnel]
BindAddress = 127.0.0.1:9002
Target = 100.77.0.2:7002

[TCPClientTunnel]
BindAddress = 127.0.0.1:9003
Target = 100.77.0.2:7003

[TCPServerTunnel]
ListenPort = 7103
Target = 127.0.0.1:7103
EOF
write_file "$E2E_TMP/b.conf" <<EOF
[Interface]
PrivateKey = $BKEY
Address = 100.77.0.2/32
ListenPort = 51821
MemoryLimit = ${LIMIT_MIB}M

[Peer]
PublicKey = $APUB
Endpoint = 198.18.0.1:51820
AllowedIPs = 100.77.0.1/32

[Peer]
PublicKey = $CPUB
Endpoint = 198.19.0.3:51822
AllowedIPs = 100.77.0.3/32

[TCPServerTunnel]
ListenPort = 7001
Target = 127.0.0.1:7001

[TCPServerTunnel]
ListenPort = 7002
Target = 127.0.0.1:7002

[TCPServerTunnel]
ListenPort = 7003
Target = 127.0.0.1:7003

[TCPClientTunnel]
BindAddress = 127.0.0.1:9103
Target = 100.77.0.1:7103
EOF
write_file "$E2E_TMP/c.conf" <<EOF
[Interface]
PrivateKey = $CKEY
Address = 100.77.0.3/32
ListenPort = 51822

[Peer]
PublicKey = $BPUB
Endpoint = 198.19.0.2:51821
AllowedIPs = 100.77.0.2/32

[TCPClientTunnel]
BindAddress = 127.0.0.1:9203
Target = 100.77.0.2:7003
EOF

step "B: services and mesh-proxy; A: mesh-proxy"
bg_nobody writerB B $PY "$E2E_DIR/mem_flood.py" writer 7001
bg_nobody sinkB B $PY "$E2E_DIR/mem_flood.py" sink 7002
bg_nobody echoB B $PY "$E2E_DIR/echo_server.py" 127.0.0.1 7003
bg_nobody echoA A $PY "$E2E_DIR/echo_server.py" 127.0.0.1 7103
for p in 7001 7002 7003; do
    wait_listen B $p || die "service on B:$p did not start"
done
wait_listen A 7103 || die "echo service on A:7103 did not start"
MESH_LOG_LEVEL=info mesh_start meshB B "$E2E_TMP/b.conf"
wait_listen B 51821 10 udp || die "mesh-proxy B did not bind UDP 51821"
MESH_LOG_LEVEL=info mesh_start meshA A "$E2E_TMP/a.conf"
wait_listen A 51820 10 udp || die "mesh-proxy A did not bind UDP 51820"
for p in 9001 9002 9003; do
    wait_listen A $p || die "A is not listening on 127.0.0.1:$p"
done
MESH_LOG_LEVEL=info mesh_start meshC C "$E2E_TMP/c.conf"
wait_listen C 9203 10 || die "C is not listening on 127.0.0.1:9203"
PB=$(bg_pid meshB)
check "B logs its budget" wait_log "$E2E_LOGDIR/meshB.log" "memory budget $LIMIT_MIB MiB" 5

# echo_ok [NS PORT] : a fresh connection through NS's (A) tunnel at PORT
# (9003: to B's echo service) is echoed.
echo_ok() {
    local got ns=${1:-A} port=${2:-9003}
    got=$(nsx_nobody "$ns" timeout 20 $PY -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=15)
s.sendall(b"still-serving\n")
buf = b""
while not buf.endswith(b"\n"):
    b = s.recv(100)
    if not b:
        break
    buf += b
sys.stdout.write(buf.decode())' "$port")
    [ "$got" = still-serving ] || { echo "got: '$got'"; return 1; }
}
check "a fresh connection is echoed through A -> B:7003" echo_ok
check "B's local user is echoed through B -> A:7103" echo_ok B 9103
check "the other peer C is echoed through C -> B:7003" echo_ok C 9203
sleep 1
IDLE_B=$(proc_rss_kib "$PB")
ACCEPTED=$((FLOOD < PER_PEER ? FLOOD : PER_PEER))
BOUND=$((IDLE_B + LIMIT_MIB * 1024 + ACCEPTED * PER_CONN_KIB))
info "B idle RSS $IDLE_B KiB; bound $BOUND KiB (idle + $LIMIT_MIB MiB + $ACCEPTED x $PER_CONN_KIB KiB)"

# ns_json FIELD : B's netstack counter FIELD from status --json.
ns_json() {
    mesh_status_json meshB B | $PY -c 'import json, sys; print(json.load(sys.stdin)["netstack"].get(sys.argv[1], "none"))' "$1"
}

# flood_phase NAME PORT PUSH : FLOOD connections to A's PORT pushing PUSH
# bytes each, held HOLD s; B's peak RSS (VmHWM) must stay under BOUND, and
# halfway through, with B's budget full, B's local user must get through.
flood_phase() {
    local name=$1 port=$2 push=$3 peak hwm t0=$SECONDS during=0
    rm -f "$E2E_TMP/rss-$name"
    nsx_nobody_nofile A 20000 timeout $((HOLD + 60)) $PY "$E2E_DIR/mem_flood.py" flood \
        "$port" "$FLOOD" "$push" "$HOLD" \
        >"$E2E_LOGDIR/flood-$name.log" 2>&1 &
    local fp=$!
    while kill -0 $fp 2>/dev/null; do
        proc_rss_kib "$PB" >>"$E2E_TMP/rss-$name"
        if [ $during = 0 ] && [ $((SECONDS - t0)) -ge $((HOLD / 2 + 5)) ]; then
            during=1
            info "B during the $name flood: $(mesh_cli meshB B status | grep '^memory')"
            check "during the $name flood, B's local user is echoed through B -> A:7103" \
                echo_ok B 9103
            check "during the $name flood, the other peer C is echoed through C -> B:7003" \
                echo_ok C 9203
        fi
        sleep 0.2
    done
    wait $fp
    sed 's/^/      /' "$E2E_LOGDIR/flood-$name.log"
    peak=$(sort -n "$E2E_TMP/rss-$name" | tail -n 1)
    hwm=$(proc_hwm_kib "$PB")
    [ -n "$hwm" ] && [ "$hwm" -gt "$peak" ] && peak=$hwm
    info "B's RSS during the $name flood: peak $peak KiB (VmHWM $hwm), bound $BOUND KiB"
    info "B: $(mesh_cli meshB B status | grep '^memory')"
    if e2e_is_asan; then
        info "RSS bound not checked: this mesh-proxy is built with ASan"
    else
        check "B's RSS stayed under the bound during the $name flood ($peak <= $BOUND KiB)" \
            test "$peak" -le "$BOUND"
    fi
}

step "pull: $FLOOD connections to B's writer that never read"
flood_phase pull 9001 0
refused_total() { echo $(($(ns_json refused_mem) + $(ns_json refused_peer_cap))); }
check "B refused >= $((FLOOD - PER_PEER)) connections (over the budget or the per-peer cap)" \
    test "$(refused_total)" -ge $((FLOOD - PER_PEER))
check "B's budget held writers back (throttled_tx > 0)" test "$(ns_json throttled_tx)" -gt 0
sleep 2
check "after the pull flood, a fresh connection is echoed" echo_ok

step "push: $FLOOD connections pushing 1 MiB each into B's service that never reads"
flood_phase push 9002 1048576
check "B's budget closed windows (throttled_rx > 0)" test "$(ns_json throttled_rx)" -gt 0
# A, itself over its budget, does not read its sockets, so it has not seen
# the client's resets: the peer's connections stay, with bytes queued for
# a service that never reads, and B keeps refusing that peer. The service
# goes away: B's writes to it fail, B resets the connections and frees.
bg_stop sinkB
mem_back() { [ "$(ns_json mem_used)" -lt $((4 << 20)) ]; }
check "B's budget is free again once the service is gone" wait_until 20 mem_back
check "after the push flood, a fresh connection is echoed" echo_ok
info "B at the end: RSS $(proc_rss_kib "$PB") KiB; $(mesh_cli meshB B status | grep '^memory')"

bg_stop meshC
mesh_stop_both meshA meshB
e2e_finish
