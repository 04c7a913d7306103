#!/usr/bin/env bash
# tests/demo.sh BUILD_DIR [--once]
#
# The main job (`make demo`): two mesh-proxy nodes on loopback, no root.
#   node A: mesh address 10.77.0.1, SOCKS5 on 127.0.0.1:1080
#   node B: mesh address 10.77.0.2, exposes a small web server
#           (127.0.0.1:18080) on its mesh port 8080 ([TCPServerTunnel])
# It generates keys, writes both configs, starts both nodes, pings B from A
# (the first packet triggers the WireGuard handshake), shows the status of
# each node and fetches the page from B's web server through A's SOCKS5.
# Then it stays up until Ctrl-C (or exits at once with --once, for tests).
#
# Ports can be changed with DEMO_SOCKS_PORT, DEMO_WEB_PORT, DEMO_WG_PORT_A,
# DEMO_WG_PORT_B.
set -u

usage() {
    echo "usage: $0 BUILD_DIR [--once]" >&2
    exit 2
}
BUILD=""
ONCE=0
for a in "$@"; do
    case $a in
    --once) ONCE=1 ;;
    -*) usage ;;
    *) [ -z "$BUILD" ] || usage; BUILD=$a ;;
    esac
done
[ -n "$BUILD" ] || usage
BUILD=$(cd "$BUILD" 2>/dev/null && pwd) || { echo "demo: no build directory '$BUILD'" >&2; exit 2; }
MP="$BUILD/mesh-proxy"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ -x "$MP" ] || { echo "demo: $MP not found; run make first" >&2; exit 2; }

SOCKS_PORT=${DEMO_SOCKS_PORT:-1080}
WEB_PORT=${DEMO_WEB_PORT:-18080}
WG_PORT_A=${DEMO_WG_PORT_A:-47701}
WG_PORT_B=${DEMO_WG_PORT_B:-47702}
MESH_A=10.77.0.1
MESH_B=10.77.0.2
MESH_WEB_PORT=8080
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)

if [ -t 1 ]; then
    B=$'\e[1m' G=$'\e[32m' R=$'\e[31m' D=$'\e[2m' E=$'\e[0m'
else
    B="" G="" R="" D="" E=""
fi
STEP=0
step() {
    STEP=$((STEP + 1))
    echo
    echo "${B}[$STEP] $*${E}"
}
ok() { echo "${G}ok${E} $*"; }
die() {
    echo "${R}demo failed:${E} $*" >&2
    exit 1
}
indent() { sed 's/^/    /'; }

for c in curl ss; do
    command -v $c >/dev/null || die "'$c' is needed (apt-get install ${c/ss/iproute2})"
done
[ -n "$PY" ] || die "python3 is needed for the small web server"

# --- ports -------------------------------------------------------------------
port_taken() { # PROTO PORT
    local flag=-ltnH
    [ "$1" = udp ] && flag=-lunH
    [ -n "$(ss $flag "sport = :$2" 2>/dev/null)" ]
}
check_port() { # PROTO PORT VARIABLE WHAT
    if port_taken "$1" "$2"; then
        die "$1 port $2 ($4) is already in use: stop what uses it, or run with $3=<another port>"
    fi
}
check_port tcp "$SOCKS_PORT" DEMO_SOCKS_PORT "SOCKS5 of node A"
check_port tcp "$WEB_PORT" DEMO_WEB_PORT "the demo web server"
check_port udp "$WG_PORT_A" DEMO_WG_PORT_A "WireGuard of node A"
check_port udp "$WG_PORT_B" DEMO_WG_PORT_B "WireGuard of node B"

# --- cleanup -----------------------------------------------------------------
DIR=$(mktemp -d /tmp/mesh-demo.XXXXXX)
API_DIR=$DIR
PIDS=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "stopping the demo..."
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null
        wait "$p" 2>/dev/null
    done
    rm -rf "$DIR"
    echo "done."
}
trap cleanup EXIT
trap 'exit 0' INT TERM

wait_for() { # SECONDS CMD...
    local t=$1 i
    shift
    for ((i = 0; i < t * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
listening() { port_taken "$@"; }

# --- 1. keys -------------------------------------------------------------------
step "Generate WireGuard keys with mesh-proxy genkey / pubkey (same format as wg)"
(umask 077 && "$MP" genkey >"$DIR/a.key" && "$MP" genkey >"$DIR/b.key") || die "mesh-proxy genkey failed"
A_PUB=$("$MP" pubkey <"$DIR/a.key") || die "mesh-proxy pubkey failed"
B_PUB=$("$MP" pubkey <"$DIR/b.key") || die "mesh-proxy pubkey failed"
echo "node A public key: $A_PUB"
echo "node B public key: $B_PUB"
echo "${D}(private keys in $DIR/a.key and b.key, mode 0600)${E}"

# --- 2. configs ----------------------------------------------------------------
step "Write the two configs (wireproxy format)"
(umask 077
cat >"$DIR/a.conf" <<EOF
# node A: a SOCKS5 proxy into the mesh
[Interface]
PrivateKey = $(cat "$DIR/a.key")
Address = $MESH_A/32
ListenPort = $WG_PORT_A

[Peer]
PublicKey = $B_PUB
Endpoint = 127.0.0.1:$WG_PORT_B
AllowedIPs = $MESH_B/32

[Socks5]
BindAddress = 127.0.0.1:$SOCKS_PORT
EOF
cat >"$DIR/b.conf" <<EOF
# node B: exposes a local web server on its mesh address
[Interface]
PrivateKey = $(cat "$DIR/b.key")
Address = $MESH_B/32
ListenPort = $WG_PORT_B

[Peer]
PublicKey = $A_PUB
Endpoint = 127.0.0.1:$WG_PORT_A
AllowedIPs = $MESH_A/32

[TCPServerTunnel]
ListenPort = $MESH_WEB_PORT
Target = 127.0.0.1:$WEB_PORT
EOF
)
for n in a b; do
    echo "--- $DIR/$n.conf (private key hidden)"
    sed 's/^\(PrivateKey = \).*/\1<hidden>/' "$DIR/$n.conf" | indent
done

# --- 3. web server and nodes --------------------------------------------------------
step "Start a small web server on 127.0.0.1:$WEB_PORT (only node B's tunnel exposes it)"
mkdir -p "$DIR/www"
cat >"$DIR/www/index.html" <<EOF
Hello from node B ($MESH_B), served by a local web server on 127.0.0.1:$WEB_PORT,
reached through WireGuard and mesh-proxy's userspace TCP/IP stack.
EOF
$PY "$ROOT/tests/e2e/httpd.py" 127.0.0.1 "$WEB_PORT" "$DIR/www" 2>"$DIR/web.log" &
PIDS+=($!)
if ! wait_for 10 listening tcp "$WEB_PORT"; then
    sed 's/^/    web.log: /' "$DIR/web.log" 2>/dev/null
    die "the web server did not start on 127.0.0.1:$WEB_PORT (see $DIR/web.log)"
fi
ok "web server up"

# Run as root (e.g. for the package install), the demo still runs the nodes
# as the unprivileged user nobody, from a copy of the binary nobody can reach.
NODE_RUN=()
NODE_MP=$MP
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
    mkdir -p "$DIR/bin" && cp "$MP" "$DIR/bin/mesh-proxy"
    chmod 0711 "$DIR" && chmod 0755 "$DIR/bin" "$DIR/bin/mesh-proxy"
    chown nobody "$DIR/a.conf" "$DIR/b.conf"
    mkdir -p "$DIR/run" && chown nobody "$DIR/run"
    NODE_RUN=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
    NODE_MP=$DIR/bin/mesh-proxy
    API_DIR=$DIR/run
    # Where nobody cannot run it (e.g. a chroot whose / is 0700), stay root.
    if ! "${NODE_RUN[@]}" "$NODE_MP" --version >/dev/null 2>&1; then
        echo "${D}(user nobody cannot run $NODE_MP here; running the nodes as root)${E}"
        NODE_RUN=()
        NODE_MP=$MP
        API_DIR=$DIR
    fi
fi
NODE_USER=$(id -un)
[ ${#NODE_RUN[@]} -gt 0 ] && NODE_USER=nobody
step "Start node B and node A (as user $NODE_USER, no root; logs in $DIR/*.log)"
"${NODE_RUN[@]}" "$NODE_MP" --config "$DIR/b.conf" --api "$API_DIR/b.sock" --log-level info 2>"$DIR/b.log" &
PIDS+=($!)
PID_B=$!
"${NODE_RUN[@]}" "$NODE_MP" --config "$DIR/a.conf" --api "$API_DIR/a.sock" --log-level info 2>"$DIR/a.log" &
PIDS+=($!)
PID_A=$!
wait_for 5 listening udp "$WG_PORT_B" || { tail "$DIR/b.log" | indent; die "node B did not start"; }
wait_for 5 listening udp "$WG_PORT_A" || { tail "$DIR/a.log" | indent; die "node A did not start"; }
wait_for 5 listening tcp "$SOCKS_PORT" || { tail "$DIR/a.log" | indent; die "node A's SOCKS5 is not listening"; }
wait_for 5 test -S "$API_DIR/a.sock" || die "node A's API socket did not appear"
wait_for 5 test -S "$API_DIR/b.sock" || die "node B's API socket did not appear"
ok "node A pid $PID_A, node B pid $PID_B"

# --- 4. handshake ------------------------------------------------------------------
step "Ping node B's mesh address from node A (the first packet starts the WireGuard handshake)"
echo "\$ mesh-proxy ping -c 3 $MESH_B"
"$MP" ping --api "$API_DIR/a.sock" -c 3 -W 5 "$MESH_B" 2>&1 | indent
[ "${PIPESTATUS[0]}" -eq 0 ] || die "no ping reply from $MESH_B"
wait_for 5 grep -q "handshake complete" "$DIR/a.log" || die "no 'handshake complete' in node A's log"
wait_for 5 grep -q "handshake complete" "$DIR/b.log" || die "no 'handshake complete' in node B's log"
echo "node A log:"
grep -i "handshake" "$DIR/a.log" | indent
echo "node B log:"
grep -i "handshake" "$DIR/b.log" | indent

# --- 5. status ---------------------------------------------------------------------
step "mesh-proxy status of each node"
echo "--- node A"
"$MP" status --api "$API_DIR/a.sock" 2>&1 | indent
echo "--- node B"
"$MP" status --api "$API_DIR/b.sock" 2>&1 | indent

# --- 6. fetch ----------------------------------------------------------------------
URL="http://$MESH_B:$MESH_WEB_PORT/"
step "Fetch $URL through node A's SOCKS5"
echo "\$ curl --socks5-hostname 127.0.0.1:$SOCKS_PORT $URL"
PAGE=$(curl -sS --max-time 20 --socks5-hostname "127.0.0.1:$SOCKS_PORT" "$URL") ||
    die "curl through the SOCKS5 failed"
echo "$PAGE" | indent
[ "$PAGE" = "$(cat "$DIR/www/index.html")" ] || die "the page differs from what the web server holds"
ok "the page arrived intact: A -> SOCKS5 -> WireGuard -> B -> 127.0.0.1:$WEB_PORT"

if [ $ONCE -eq 1 ]; then
    echo
    echo "${G}demo passed${E}"
    exit 0
fi

# --- 7. stay up ----------------------------------------------------------------------
cat <<EOF

${B}The mesh is up. Try, in another terminal:${E}
    curl --socks5-hostname 127.0.0.1:$SOCKS_PORT $URL
    curl -x socks5h://127.0.0.1:$SOCKS_PORT $URL
    $MP status --api $API_DIR/a.sock
    $MP ping --api $API_DIR/a.sock $MESH_B
    tail -f $DIR/a.log $DIR/b.log
Press Ctrl-C to stop both nodes.
EOF
while kill -0 "$PID_A" 2>/dev/null && kill -0 "$PID_B" 2>/dev/null; do
    sleep 1
done
# Ctrl-C reaches the nodes too (same process group); they exit 0 on SIGINT.
st=0
for p in "$PID_A" "$PID_B"; do
    kill -0 "$p" 2>/dev/null && continue
    wait "$p"
    s=$?
    [ $s -ne 0 ] && st=$s
done
[ $st -eq 0 ] && exit 0
echo "${R}a node exited with status $st:${E}"
tail -n 5 "$DIR/a.log" "$DIR/b.log"
exit 1
