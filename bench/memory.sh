#!/usr/bin/env bash
# shellcheck disable=SC2317 # functions called through repeat look unreachable
# bench/memory.sh: what the processes cost in memory (RSS from
# /proc/PID/status VmRSS, read after the process has been idle ~2 s).
#
#   rss_idle_1 / rss_idle_1000   wggo (wireguard-go, peers set with
#       `wg setconf`), nebula (static_host_map entries) and mesh_fwd
#       (mesh-proxy as nobody with [Peer] sections and a [Socks5]); every
#       peer has an AllowedIPs /32 and an endpoint. One fresh process per run.
#   rss_conns_1000 / rss_conns_closed / kib_per_conn   1,000 idle SOCKS5
#       sessions, opened together (all in their handshake at once, as a
#       browser opens them), each CONNECTed to a server that holds them, through
#       microsocks and mesh_socks_local (mesh-proxy, no peers, Direct = all)
#       on loopback, and mesh_socks (mesh-proxy A's SOCKS5 through the tunnel
#       to a holding server behind B; A's RSS). closed = ~3 s after the
#       client closed them all; kib_per_conn = (rss_conns_1000 - RSS just
#       before opening) / 1000.
#
# usage: bench/memory.sh BUILD_DIR [--quick] [--runs N]
# MEM_ONLY=REGEX measures only the paths whose name matches, MEM_BYTES=B has
# every session send B bytes once open (busy sessions; for A/B work only).
# shellcheck disable=SC2034 # read by lib.sh
E2E_NAME=bench-memory
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_args "$@"
e2e_require_cmd ip python3 setpriv ss wg wireguard-go nebula nebula-cert microsocks
e2e_require_mesh_proxy

NCONN=1000
HOLD_PORT=5203 # the holding server (in B: over the veth, or behind meshB)
SETTLE=2
MEM_ONLY=${MEM_ONLY:-.}
# shellcheck disable=SC2034 # read by bench_mesh_pair
BENCH_EXTRA_PORTS=$HOLD_PORT
# 1,000 sessions = 2,000+ sockets per proxy; children inherit this.
ulimit -Sn 8192 2>/dev/null || ulimit -Sn "$(ulimit -Hn)"

# --- python helpers (stdlib) ---------------------------------------------------

write_file "$E2E_TMP/memhold.py" <<'EOF'
"""memhold.py server PORT | client SOCKS_PORT HOST PORT N READY CLOSE
server: accepts TCP connections and holds them (closes one when its peer
closes). client: opens N SOCKS5 CONNECT sessions (all in their handshake at once)
through 127.0.0.1:SOCKS_PORT to HOST:PORT, writes READY (the count), waits until the file CLOSE exists,
closes them all and exits. With MEM_BYTES=B in the environment every session
first sends B bytes (which the server reads and drops)."""
import os, resource, selectors, socket, struct, sys, time

def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass

def server(port):
    sel = selectors.DefaultSelector()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("0.0.0.0", port))
    ls.listen(4096)
    sel.register(ls, selectors.EVENT_READ)
    while True:
        for key, _ in sel.select():
            s = key.fileobj
            if s is ls:
                try:
                    c, _ = ls.accept()
                except OSError:
                    time.sleep(0.01)
                    continue
                sel.register(c, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(4096)
            except OSError:
                data = b""
            if not data:
                sel.unregister(s)
                s.close()

def recv_exact(s, n):
    b = b""
    while len(b) < n:
        d = s.recv(n - len(b))
        if not d:
            raise OSError("closed by the proxy")
        b += d
    return b

def sessions(sport, host, port, n):
    """n SOCKS5 CONNECTs in flight at once (as a browser opens them): all
    connect, then all greet, then all request, so that every session is in
    its handshake at the same time."""
    socks = [socket.create_connection(("127.0.0.1", sport), timeout=30) for _ in range(n)]
    for s in socks:
        s.sendall(b"\x05\x01\x00")
    for s in socks:
        if recv_exact(s, 2) != b"\x05\x00":
            raise OSError("greeting refused")
    req = b"\x05\x01\x00\x01" + socket.inet_aton(host) + struct.pack("!H", port)
    for s in socks:
        s.sendall(req)
    for s in socks:
        head = recv_exact(s, 4)
        if head[1] != 0:
            raise OSError("CONNECT reply %d" % head[1])
        recv_exact(s, 6 if head[3] == 1 else 18)
    return socks

def client(sport, host, port, n, ready, close):
    socks = []
    try:
        socks = sessions(sport, host, port, n)
        blob = os.urandom(int(os.environ.get("MEM_BYTES", "0")))
        for s in socks:
            if blob:
                s.sendall(blob)
    except OSError as e:
        print("sessions failed: %s" % e, file=sys.stderr)
        socks = []
    with open(ready, "w") as f:
        f.write("%d\n" % len(socks))
    while not os.path.exists(close):
        time.sleep(0.05)
    for s in socks:
        s.close()
    return 0 if len(socks) == n else 1

raise_nofile()
if sys.argv[1] == "server":
    server(int(sys.argv[2]))
else:
    a = sys.argv[2:]
    sys.exit(client(int(a[0]), a[1], int(a[2]), int(a[3]), a[4], a[5]))
EOF

# rss_settled PID : VmRSS after SETTLE seconds (nothing when PID is gone).
rss_settled() {
    sleep "$SETTLE"
    kill -0 "$1" 2>/dev/null || return 0
    proc_rss_kib "$1"
}

# random_pubkeys N : N WireGuard public keys (32 random bytes each, base64;
# any 32 bytes are a valid X25519 public key).
random_pubkeys() {
    "$PY" -c 'import base64, os, sys
for _ in range(int(sys.argv[1])):
    print(base64.b64encode(os.urandom(32)).decode())' "$1"
}

# peer_addr I : the tunnel address and the endpoint of generated peer I.
peer_ip() { echo "100.90.$(($1 / 250)).$(($1 % 250 + 1))"; }
peer_ep() { echo "198.18.0.$(($1 % 200 + 10)):$((40000 + $1))"; }

# --- idle RSS with 1 / 1,000 peers ---------------------------------------------

# wggo_idle N : one run; prints the RSS of a wireguard-go with N peers.
wggo_idle() {
    local n=$1 ifc i pub
    ifc=$(wg_ifname m)
    {
        printf '[Interface]\nPrivateKey = %s\nListenPort = 51830\n' "$(cat "$E2E_TMP/wm.key")"
        i=0
        while read -r pub; do
            printf '\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\nEndpoint = %s\n' \
                "$pub" "$(peer_ip "$i")" "$(peer_ep "$i")"
            i=$((i + 1))
        done < <(random_pubkeys "$n")
    } | write_file "$E2E_TMP/wm.conf"
    WG_LOG_LEVEL=error wggo_start wgM A "$ifc" 100.90.255.1/16 51830 "$E2E_TMP/wm.key" >/dev/null 2>&1 || return 0
    nsx A wg setconf "$ifc" "$E2E_TMP/wm.conf" >/dev/null 2>&1 || { bg_stop wgM; return 0; }
    [ "$(nsx A wg show "$ifc" peers | wc -l)" -eq "$n" ] || { bg_stop wgM; return 0; }
    rss_settled "$BG_PID"
    bg_stop wgM
}

# nebula_idle N : one run; Nebula with N static_host_map entries (Nebula has
# no per-peer configuration beyond that: peers are known by certificate).
nebula_idle() {
    local n=$1 d="$E2E_TMP/nebm" i
    {
        cat <<EOF
pki:
  ca: $d/ca.crt
  cert: $d/m.crt
  key: $d/m.key
static_host_map:
EOF
        for ((i = 0; i < n; i++)); do
            printf '  "%s": ["%s"]\n' "$(peer_ip "$i")" "$(peer_ep "$i")"
        done
        nebula_conf_rest 4243 "nebm${E2E_ID}"
    } | write_file "$d/m.yml"
    bg nebM A nebula -config "$d/m.yml"
    wait_until 10 nsx A ip link show "nebm${E2E_ID}" || { bg_stop nebM; return 0; }
    rss_settled "$BG_PID"
    bg_stop nebM
}

# mesh_idle N : one run; mesh-proxy (as nobody) with N [Peer]s and a [Socks5].
mesh_idle() {
    local n=$1 i pub
    {
        printf '[Interface]\nPrivateKey = %s\nAddress = 100.90.255.1/32\nListenPort = 51831\n' "$MKEY"
        i=0
        while read -r pub; do
            printf '\n[Peer]\nPublicKey = %s\nAllowedIPs = %s/32\nEndpoint = %s\n' \
                "$pub" "$(peer_ip "$i")" "$(peer_ep "$i")"
            i=$((i + 1))
        done < <(random_pubkeys "$n")
        printf '\n[Socks5]\nBindAddress = 127.0.0.1:1091\n'
    } | write_file "$E2E_TMP/mm.conf"
    mesh_start meshM A "$E2E_TMP/mm.conf"
    wait_listen A 1091 10 || { bg_stop meshM; return 0; }
    rss_settled "$BG_PID"
    bg_stop meshM
}

# idle_figures PATH FUNC : rss_idle_1 and rss_idle_1000 of one path.
idle_figures() {
    local path=$1 fn=$2 n v
    for n in 1 1000; do
        step "$path: idle RSS with $n peer(s)"
        v=$(repeat "$fn" "$n")
        if [ -n "$v" ]; then
            # shellcheck disable=SC2086 # one value per run
            record "$path" "rss_idle_$n" KiB $v
        else
            record_fail "$path" "rss_idle_$n" KiB "did not start with $n peers (see $E2E_LOGDIR)"
        fi
    done
}

# --- RSS with 1,000 SOCKS5 sessions --------------------------------------------

# conns_run PID SOCKS_PORT HOST PORT : one run; opens NCONN sessions through
# the proxy PID, prints "before open closed" (KiB), nothing on failure.
conns_run() {
    local pid=$1 sport=$2 host=$3 port=$4 ready close before open closed got
    # Fresh files every run: this runs in a command substitution, so a
    # counter kept here would not survive to the next run, and a READY or
    # CLOSE left by the last run would end this one before it began.
    ready="$E2E_TMP/ready" close="$E2E_TMP/close"
    rm -f "$ready" "$close"
    before=$(rss_settled "$pid")
    bg memclient A "$PY" "$E2E_TMP/memhold.py" client "$sport" "$host" "$port" "$NCONN" "$ready" "$close"
    wait_until 120 test -s "$ready" || { bg_stop memclient; return 0; }
    got=$(cat "$ready")
    open=$(rss_settled "$pid")
    touch "$close"
    bg_wait memclient 30 >/dev/null
    if [ "$got" != "$NCONN" ]; then
        echo "only $got of $NCONN sessions opened (see $E2E_LOGDIR/memclient.log)" >&2
        return 0
    fi
    SETTLE=3 rss_settled "$pid" >/dev/null # the proxy sees the closes
    closed=$(rss_settled "$pid")
    [ -n "$before" ] && [ -n "$open" ] && [ -n "$closed" ] && echo "$before $open $closed"
}

# conns_figures PATH START STOP SOCKS_PORT HOST PORT : every run starts a
# fresh proxy with START (which sets CONN_PID and fails when the proxy does
# not come up) and stops it with STOP, so that kib_per_conn is the cost of a
# first burst of sessions (a second burst reuses the heap the first left).
conns_figures() {
    local path=$1 start=$2 stop=$3 i r b o c opens="" closes="" pers=""
    shift 3
    step "$path: RSS with $NCONN idle SOCKS5 sessions"
    for ((i = 0; i < RUNS; i++)); do
        CONN_PID=""
        if ! "$start" || [ -z "$CONN_PID" ]; then
            "$stop"
            continue
        fi
        r=$(conns_run "$CONN_PID" "$@")
        "$stop"
        [ -n "$r" ] || continue
        read -r b o c <<<"$r"
        opens="$opens $o"
        closes="$closes $c"
        pers="$pers $(awk -v b="$b" -v o="$o" -v n="$NCONN" 'BEGIN { printf "%.2f", (o - b) / n }')"
    done
    if [ -z "$opens" ]; then
        record_fail "$path" rss_conns_1000 KiB "proxy did not start or sessions could not be opened (see $E2E_LOGDIR)"
        record_fail "$path" rss_conns_closed KiB "sessions could not be opened"
        record_fail "$path" kib_per_conn KiB "sessions could not be opened"
        return 0
    fi
    # shellcheck disable=SC2086 # one value per run
    record "$path" rss_conns_1000 KiB $opens
    # shellcheck disable=SC2086
    record "$path" rss_conns_closed KiB $closes
    # shellcheck disable=SC2086
    record "$path" kib_per_conn KiB $pers
}

# want PATH : PATH is to be measured (MEM_ONLY).
want() { [[ $1 =~ $MEM_ONLY ]]; }

# --- the measurements ----------------------------------------------------------

bench_topology
wg_genkey "$E2E_TMP/wm.key"
MKEY=$(genkey) || die "mesh-proxy genkey failed"
mkdir -p "$E2E_TMP/nebm"
(cd "$E2E_TMP/nebm" && nebula-cert ca -name benchmem >/dev/null &&
    nebula-cert sign -name m -ip 100.90.255.1/16 >/dev/null) || die "nebula-cert failed"
chmod 0644 "$E2E_TMP/nebm"/*

want wggo && idle_figures wggo wggo_idle
want nebula && idle_figures nebula nebula_idle
want mesh_fwd && idle_figures mesh_fwd mesh_idle

# The local paths' holding server is in B, over the veth: Direct never
# dials this host's own addresses or loopback.
bg holdL B "$PY" "$E2E_TMP/memhold.py" server "$HOLD_PORT"
wait_listen B "$HOLD_PORT" || die "holding server in B did not start"

# microsocks: a thread per client.
start_microsocks() {
    bg microsocks A microsocks -i 127.0.0.1 -p 1090
    CONN_PID=$BG_PID
    wait_listen A 1090 10
}
stop_microsocks() { bg_stop microsocks; }
want microsocks &&
    conns_figures microsocks start_microsocks stop_microsocks 1090 198.18.0.2 "$HOLD_PORT"

# mesh-proxy's SOCKS5 alone: its own key and address, no peers, Direct.
write_file "$E2E_TMP/local.conf" <<EOF
[Interface]
PrivateKey = $MKEY
Address = 100.90.255.2/32
ListenPort = 51832

[Socks5]
BindAddress = 127.0.0.1:1093
Direct = all
EOF
start_local() {
    mesh_start meshL A "$E2E_TMP/local.conf"
    CONN_PID=$BG_PID
    wait_listen A 1093 10
}
stop_local() { bg_stop meshL; }
want mesh_socks_local &&
    conns_figures mesh_socks_local start_local stop_local 1093 198.18.0.2 "$HOLD_PORT"
bg_stop holdL

# Through the tunnel: A's SOCKS5 to a holding server in B behind meshB. B
# stays up; A (measured) is restarted for every run.
start_meshA() {
    mesh_start meshA A "$E2E_TMP/meshA.conf"
    CONN_PID=$BG_PID
    wait_listen A 1082 10 && mesh_cli meshA A ping -c 1 -W 5 100.77.0.4 >/dev/null 2>&1
}
stop_meshA() { bg_stop meshA; }
if want mesh_socks; then
    bg holdB B "$PY" "$E2E_TMP/memhold.py" server "$HOLD_PORT"
    wait_listen B "$HOLD_PORT" || die "holding server in B did not start"
    bench_mesh_pair
    bg_stop meshA
    conns_figures mesh_socks start_meshA stop_meshA 1082 100.77.0.4 "$HOLD_PORT"
fi

info "records in $BENCH_DATA/$BENCH_PART.tsv"
exit 0
