#!/usr/bin/env bash
# tests/demo.sh BUILD_DIR [--once]
#
# The main job (`make demo`): a real mesh on loopback, no root.
#   mesh-control  a fresh SQLite store, serving the node protocol
#   node "web"    joined with a token; a small web server on 127.0.0.1
#                 is reachable on its mesh address (--expose PORT)
#   node "laptop" joined with the same token; SOCKS5 and HTTP proxy on
#                 127.0.0.1 for a browser or curl
#   node "nas"    joined too, exposing nothing (the default): the same
#                 web server is not reachable through it
# It prints each step, the peers of each node, fetches the page by name
# (http://web:PORT/) through laptop's SOCKS5 and shows the bytes moved.
# Then it stays up until Ctrl-C (or exits at once with --once, for tests).
#
# Ports: DEMO_CONTROL_PORT (7443), DEMO_SOCKS_PORT (1080), DEMO_HTTP_PORT
# (8118), DEMO_WEB_PORT (18080).
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
MC="$BUILD/mesh-control"
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for b in "$MP" "$MC"; do
    [ -x "$b" ] || { echo "demo: $b not found; run make first" >&2; exit 2; }
done

CONTROL_PORT=${DEMO_CONTROL_PORT:-7443}
SOCKS_PORT=${DEMO_SOCKS_PORT:-1080}
HTTP_PORT=${DEMO_HTTP_PORT:-8118}
WEB_PORT=${DEMO_WEB_PORT:-18080}
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
show_mc() { # print a mesh-control command, then run it, its output indented
    echo "\$ mesh-control $*"
    mc "$@" 2>&1 | indent
    return "${PIPESTATUS[0]}"
}

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
check_port() { # PORT VARIABLE WHAT
    if port_taken tcp "$1"; then
        die "tcp port $1 ($3) is already in use: stop what uses it, or run with $2=<another port>"
    fi
}
check_port "$CONTROL_PORT" DEMO_CONTROL_PORT "mesh-control"
check_port "$SOCKS_PORT" DEMO_SOCKS_PORT "SOCKS5 of node laptop"
check_port "$HTTP_PORT" DEMO_HTTP_PORT "HTTP proxy of node laptop"
check_port "$WEB_PORT" DEMO_WEB_PORT "the demo web server"

# --- cleanup -----------------------------------------------------------------
DIR=$(mktemp -d /tmp/mesh-demo.XXXXXX)
PIDS=()
NAMES=()
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "stopping the demo..."
    local p
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
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

# Run as root (e.g. for the package install), the demo still runs every
# program as the unprivileged user nobody, from a copy nobody can reach.
RUN=()
BIN=$BUILD
if [ "$(id -u)" = 0 ] && id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
    mkdir -p "$DIR/bin" && cp "$MP" "$MC" "$DIR/bin/"
    chmod 0711 "$DIR" && chmod 0755 "$DIR/bin" "$DIR/bin/"*
    mkdir -p "$DIR/run" && chown nobody "$DIR/run"
    RUN=(setpriv --reuid=nobody --regid=nogroup --clear-groups --)
    BIN=$DIR/bin
    # Where nobody cannot run it (e.g. a chroot whose / is 0700), stay root.
    if ! "${RUN[@]}" "$BIN/mesh-proxy" --version >/dev/null 2>&1; then
        echo "${D}(user nobody cannot run the binaries here; running as root)${E}"
        RUN=()
        BIN=$BUILD
    fi
fi
[ ${#RUN[@]} -gt 0 ] || mkdir -p "$DIR/run"
USER_NAME=$(id -un)
[ ${#RUN[@]} -gt 0 ] && USER_NAME=nobody
S=$DIR/run # state of every program, owned by the user that runs them
mc() { "${RUN[@]}" "$BIN/mesh-control" --data "$S/control" "$@"; }
mp() { "${RUN[@]}" "$BIN/mesh-proxy" "$@"; }

# --- 1. control server -----------------------------------------------------------
step "Create a mesh: mesh-control init (a SQLite store and the server's key)"
show_mc init --listen "127.0.0.1:$CONTROL_PORT" || die "mesh-control init failed"

step "Start mesh-control serve (as user $USER_NAME; log in $S/control.log)"
"${RUN[@]}" "$BIN/mesh-control" --data "$S/control" serve 2>"$S/control.log" &
PIDS+=($!)
PID_CONTROL=$!
if ! wait_for 10 port_taken tcp "$CONTROL_PORT"; then
    indent <"$S/control.log"
    die "mesh-control did not start listening on 127.0.0.1:$CONTROL_PORT"
fi
ok "mesh-control pid $PID_CONTROL on 127.0.0.1:$CONTROL_PORT"

step "Make a join token (reusable, so all three nodes can use it)"
TOKEN=$(mc token --reusable --expiry 1d 2>"$S/token.err") || {
    indent <"$S/token.err"
    die "mesh-control token failed"
}
echo "\$ mesh-control token --reusable --expiry 1d"
echo "    ${TOKEN:0:24}... (${#TOKEN} characters; it carries a secret)"

# --- 2. web server and nodes --------------------------------------------------------
step "Start a small web server on 127.0.0.1:$WEB_PORT (node web exposes it to the mesh)"
mkdir -p "$DIR/www"
cat >"$DIR/www/index.html" <<EOF
Hello from node web, served by a local web server on 127.0.0.1:$WEB_PORT,
reached by name through mesh-control's map, WireGuard and mesh-proxy's
userspace TCP/IP stack.
EOF
chmod 0755 "$DIR/www" && chmod 0644 "$DIR/www/index.html"
$PY "$ROOT/tests/e2e/httpd.py" 127.0.0.1 "$WEB_PORT" "$DIR/www" 2>"$DIR/web.log" &
PIDS+=($!)
if ! wait_for 10 port_taken tcp "$WEB_PORT"; then
    indent <"$DIR/web.log"
    die "the web server did not start on 127.0.0.1:$WEB_PORT"
fi
ok "web server up"

start_node() { # NAME EXTRA-ARGS...
    local name=$1
    shift
    echo "\$ mesh-proxy up --join \$TOKEN --state $name --hostname $name $*"
    # --no-portmap: everything is on loopback; the host's router has no
    # part in the demo (and a test should not add mappings to it).
    "${RUN[@]}" "$BIN/mesh-proxy" up --join "$TOKEN" --state "$S/$name" --hostname "$name" \
        --no-portmap "$@" 2>"$S/$name.log" &
    PIDS+=($!)
    NAMES+=("$name")
}
step "Join three nodes with the token (as user $USER_NAME; logs in $S/*.log)"
start_node web --expose "$WEB_PORT"
start_node laptop --socks5 "127.0.0.1:$SOCKS_PORT" --http-proxy "127.0.0.1:$HTTP_PORT"
start_node nas
for n in web laptop nas; do
    if ! wait_for 20 mp ip --state "$S/$n"; then
        indent <"$S/$n.log"
        die "node $n did not join the mesh (log above)"
    fi
    echo "    $n: $(mp ip --state "$S/$n" | tr '\n' ' ')"
done
wait_for 10 port_taken tcp "$SOCKS_PORT" || die "laptop's SOCKS5 is not listening"
ok "three nodes joined"

step "The nodes, as mesh-control sees them"
show_mc nodes list

# --- 3. fetch by name ------------------------------------------------------------------
URL="http://web:$WEB_PORT/"
step "Fetch $URL by name through laptop's SOCKS5"
echo "\$ curl --socks5-hostname 127.0.0.1:$SOCKS_PORT $URL"
PAGE=""
for _ in $(seq 20); do
    PAGE=$(curl -sS --max-time 5 --socks5-hostname "127.0.0.1:$SOCKS_PORT" "$URL" 2>"$DIR/curl.err") && break
    sleep 0.5
done
[ -n "$PAGE" ] || { indent <"$DIR/curl.err"; die "curl through laptop's SOCKS5 failed"; }
echo "$PAGE" | indent
[ "$PAGE" = "$(cat "$DIR/www/index.html")" ] || die "the page differs from what the web server holds"
ok "the page arrived intact: curl -> laptop (SOCKS5) -> WireGuard -> web -> 127.0.0.1:$WEB_PORT"

FQDN_URL="http://web.mesh.internal:$WEB_PORT/"
echo "\$ curl --proxy http://127.0.0.1:$HTTP_PORT $FQDN_URL"
PAGE2=$(curl -sS --max-time 10 --proxy "http://127.0.0.1:$HTTP_PORT" "$FQDN_URL") ||
    die "curl through laptop's HTTP proxy failed"
[ "$PAGE2" = "$PAGE" ] || die "the page via the HTTP proxy differs"
ok "the same page by its full name through the HTTP proxy"

echo "\$ curl --socks5-hostname 127.0.0.1:$SOCKS_PORT http://nas:$WEB_PORT/"
if curl -sS --max-time 10 --socks5-hostname "127.0.0.1:$SOCKS_PORT" "http://nas:$WEB_PORT/" \
    >"$DIR/nas.out" 2>&1; then
    die "nas exposes nothing, yet its host's 127.0.0.1:$WEB_PORT answered through the mesh"
fi
indent <"$DIR/nas.out"
ok "nas exposes nothing (the default): the same local server is not reachable through it"

step "Peers, paths and bytes moved, as each node sees them"
for n in laptop web; do
    echo "--- $n"
    mp status --state "$S/$n" 2>&1 | tee "$DIR/status-$n.txt" | indent
done
grep -q "portmap  off (--no-portmap" "$DIR/status-laptop.txt" ||
    die "laptop was started with --no-portmap, yet status does not say port mapping is off"
grep -q "portmap: off" "$S/laptop.log" ||
    die "laptop's log does not say port mapping is off"

if [ $ONCE -eq 1 ]; then
    echo
    echo "${G}demo passed${E}"
    exit 0
fi

# --- 4. stay up ----------------------------------------------------------------------
cat <<EOF

${B}The mesh is up. Try, in another terminal:${E}
    curl --socks5-hostname 127.0.0.1:$SOCKS_PORT $URL
    curl --proxy http://127.0.0.1:$HTTP_PORT $FQDN_URL
    chromium --proxy-server=socks5://127.0.0.1:$SOCKS_PORT $URL
    $BUILD/mesh-proxy status --state $S/laptop
    $BUILD/mesh-control --data $S/control nodes list
    tail -f $S/*.log
Press Ctrl-C to stop everything.
EOF
while :; do
    for p in "${PIDS[@]}"; do
        kill -0 "$p" 2>/dev/null || break 2
    done
    sleep 1
done
echo "${R}a process of the demo exited:${E}"
tail -n 5 "$S"/*.log
exit 1
