#!/usr/bin/env bash
# The node's relay path end to end (issue 13's proof): real nodes
# (`mesh-proxy up`) reach each other through mesh-relay when UDP is blocked,
# keep a TCP stream through a relay restart, meet across two relays of one
# region, and move to a direct path when UDP works (and back when it stops).
# Every program runs as nobody.
#
#   lan 198.18.61.0/24 (a bridge), one namespace per host:
#   infra  198.18.61.1  mesh-control :7443, relay1 :8441 (STUN :3478)
#          198.18.61.2  relay2 :8442 (STUN :3479); both region "lab"
#   alpha  198.18.61.11 mesh-proxy up, SOCKS5 127.0.0.1:1080, --expose 8080
#   bravo  198.18.61.12 the same; both serve a 64 MiB random file on
#                       127.0.0.1:8080
# Firewalls are nftables tables in alpha and bravo: "e2e_udp" drops every
# UDP datagram in and out of lan0 (added and deleted as a step needs),
# "e2e_relay" drops TCP to the relays listed in its set (kept).
#
# Steps: (1) UDP blocked on both nodes: a 64 MiB fetch alpha <- bravo by
# name through SOCKS5 crosses the relay (sha256, path "relay", relay byte
# counters), netcheck says udp false and still names a home by TCP latency;
# (2) the home relay stopped mid-transfer with SIGTERM (RESTARTING), and
# once with SIGKILL, and started again from its state 1.5 s later: the
# fetch completes intact and status counts the reconnect; (3) alpha can
# reach only relay1, bravo only relay2 (bravo's connection to relay1
# vanishes without a FIN, and bravo restarts): each has its own home and a
# fetch crosses the relay mesh; (4) UDP unblocked: the path becomes direct (time
# measured); UDP blocked again during a fetch: back to the relay (time
# measured), the fetch intact.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip nft python3 setpriv ss curl sha256sum
e2e_tmp_init
e2e_require_mesh_proxy
e2e_mesh_servers # MC, MR (runnable by nobody) and PY
RUN=$E2E_TMP/run
D=$RUN/control
CTL=198.18.61.1:7443
R1=198.18.61.1:8441
R2=198.18.61.2:8442
NODES=(alpha bravo)
declare -A LANIP=([infra]=198.18.61.1 [alpha]=198.18.61.11 [bravo]=198.18.61.12)
BIG_MIB=64

mc() { nsx_nobody infra "$MC" --data "$D" "$@"; }
not() { ! "$@"; }
# both CMD1... -- CMD2... : both succeed.
both() {
    local a=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do a+=("$1"); shift; done
    shift
    "${a[@]}" && "$@"
}
# relay_stat r1|r2 EXPR : a python expression over j = mesh-relay status --json
relay_stat() {
    nsx_nobody infra "$MR" status --state "$RUN/$1" --json 2>/dev/null |
        "$PY" -c "import json, sys; j = json.load(sys.stdin); print($2)"
}
# mesh_count r1|r2 : packets the relay sent to and took from its sibling.
mesh_count() { relay_stat "$1" "j['packets_forwarded'] + j['packets_from_mesh']"; }
relay_clients_are() { [ "$(relay_stat "$1" "j['clients']")" = "$2" ]; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# --- the firewall -------------------------------------------------------------

# udp_block NODE / udp_unblock NODE : every UDP datagram in and out of lan0
# dropped (and counted), or not.
udp_block() {
    nsx "$1" nft -f - <<'EOF'
table inet e2e_udp {
    chain out {
        type filter hook output priority 0; policy accept;
        oifname "lan0" meta l4proto udp counter drop
    }
    chain in {
        type filter hook input priority 0; policy accept;
        iifname "lan0" meta l4proto udp counter drop
    }
}
EOF
}
udp_unblock() { nsx "$1" nft delete table inet e2e_udp; }
# udp_dropped NODE : datagrams the UDP block dropped so far (out + in).
udp_dropped() {
    nsx "$1" nft list table inet e2e_udp 2>/dev/null |
        awk '/counter packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") s += $(i + 1) } END { print s + 0 }'
}
# relay_block NODE ADDR:PORT... : TCP to exactly these relays dropped (the
# set is replaced; none given: every relay allowed).
relay_block() {
    local n=$1 a elems=""
    shift
    for a in "$@"; do elems="$elems${elems:+, }${a%:*} . ${a##*:}"; done
    nsx "$n" nft delete table ip e2e_relay 2>/dev/null
    {
        echo "table ip e2e_relay {"
        echo "  set blocked {"
        echo "    type ipv4_addr . inet_service"
        [ -n "$elems" ] && echo "    elements = { $elems }"
        echo "  }"
        echo "  chain out {"
        echo "    type filter hook output priority 0; policy accept;"
        echo "    ip daddr . tcp dport @blocked counter drop"
        echo "  }"
        echo "}"
    } | nsx "$n" nft -f -
}

# --- status -------------------------------------------------------------------

# A python helper over `status --json`: j is the node's "mesh" object,
# peer(NAME) the entry of the peer whose name (or full name) starts with
# NAME, home() the node's home relay entry in paths.relays, relay(NAME) the
# entry by name.
write_file "$E2E_TMP/sj.py" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1])).get("mesh") or {}
def peer(name):
    for p in j.get("peers", []):
        for k in ("name", "hostname", "dns_name", "fqdn"):
            v = p.get(k)
            if isinstance(v, str) and (v == name or v.startswith(name + ".")):
                return p
    return {}
def relays():
    return (j.get("paths") or {}).get("relays") or []
def relay(name):
    for r in relays():
        if r.get("name") == name:
            return r
    return {}
def home():
    h = (j.get("paths") or {}).get("home_relay")
    for r in relays():
        if h is not None and r.get("id") == h:
            return r
    return {}
v = eval(sys.argv[2])
if len(sys.argv) > 3:
    print(v)
    sys.exit(0)
sys.exit(0 if v else 1)
EOF
# status_save NODE : NODE's `status --json` into $E2E_TMP/NODE.json (the
# last one is kept in the artifacts too).
status_save() {
    mp status --state "$RUN/$1" --json >"$E2E_TMP/$1.json.tmp" 2>"$E2E_TMP/$1.json.err" &&
        mv "$E2E_TMP/$1.json.tmp" "$E2E_TMP/$1.json" &&
        cp "$E2E_TMP/$1.json" "$E2E_LOGDIR/$1-status.json"
}
# sj NODE EXPR : EXPR is true over NODE's status now.
sj() { status_save "$1" && "$PY" "$E2E_TMP/sj.py" "$E2E_TMP/$1.json" "$2"; }
# sjv NODE EXPR : prints EXPR's value over NODE's status now.
sjv() { status_save "$1" && "$PY" "$E2E_TMP/sj.py" "$E2E_TMP/$1.json" "$2" print; }
# path_is NODE PEER WANT : NODE's path to PEER is WANT ("relay", "direct").
path_is() { sj "$1" "peer('$2').get('path') == '$3'"; }
# show_paths : one info line per node: paths and home.
show_paths() {
    local n o
    for n in "${NODES[@]}"; do
        o=bravo
        [ $n = bravo ] && o=alpha
        info "$n: path to $o $(sjv $n "(peer('$o').get('path'), peer('$o').get('relay_region'), home().get('name'), home().get('state'))" 2>/dev/null)"
    done
}

# --- fetching -----------------------------------------------------------------

# fetch_start NAME [CURL-OPTION...] : alpha fetches http://bravo:8080/big
# through its SOCKS5 by name, as nobody, in the background, into
# $RUN/dl/NAME.
fetch_start() {
    local name=$1
    shift
    rm -f "$RUN/dl/$name"
    bg_nobody "$name" alpha curl -sS --max-time 150 --socks5-hostname 127.0.0.1:1080 \
        -o "$RUN/dl/$name" "$@" http://bravo:8080/big
}
# fetch_check NAME SECONDS WHAT : waits for fetch NAME; PASS when it ended
# well with the file's sha256.
fetch_check() {
    local name=$1 t=$2 what=$3 rc got
    bg_wait "$name" "$t"
    rc=$?
    got=$(sha "$RUN/dl/$name" 2>/dev/null)
    if [ $rc -eq 0 ] && [ "$got" = "$BIG_SHA" ]; then
        pass "$what (sha256 intact)"
        return 0
    fi
    fail "$what (curl exit $rc, $(stat -c %s "$RUN/dl/$name" 2>/dev/null || echo no) bytes, sha256 ${got:-none})"
    tail -n 3 "$E2E_LOGDIR/$name.log" | sed 's/^/      | /'
    return 1
}

# --- the hosts ----------------------------------------------------------------

step "hosts on one LAN: infra (mesh-control, two relays), alpha, bravo"
for h in infra alpha bravo; do
    ns_create "$h"
    ns_lan "$h" "${LANIP[$h]}/24"
done
nsx infra ip addr add 198.18.61.2/24 dev lan0
check "LAN: alpha reaches infra" nsx alpha ping -c 1 -W 2 198.18.61.1 || exit 1

step "web servers: a ${BIG_MIB} MiB random file on 127.0.0.1:8080 of each node"
mkdir -p "$E2E_TMP/www" "$RUN/dl"
chmod 0755 "$E2E_TMP/www"
chown nobody:nogroup "$RUN/dl"
random_file "$E2E_TMP/www/big" $BIG_MIB
BIG_SHA=$(sha "$E2E_TMP/www/big")
for h in "${NODES[@]}"; do
    bg_nobody "web-$h" "$h" "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www"
done
for h in "${NODES[@]}"; do
    wait_listen "$h" 8080 10 || die "web server on $h did not start"
done

step "mesh-control and two relays of region lab (as nobody)"
mc init --listen "$CTL" --domain mesh.internal >/dev/null 2>&1 || die "mesh-control init failed"
bg_nobody control infra "$MC" --data "$D" serve --log-level debug
wait_listen infra 7443 10 || die "mesh-control did not listen"
TOKEN=$(mc token --reusable 2>/dev/null | tail -1)
T1=$(mc token --relay 2>/dev/null | tail -1)
T2=$(mc token --relay 2>/dev/null | tail -1)
[ "${T1:0:5}" = mesh1 ] && [ "${T2:0:5}" = mesh1 ] || die "no relay tokens"
start_relay() { # NAME [ARGS...]
    local n=$1
    shift
    bg_nobody "$n" infra "$MR" up "$@"
}
start_relay relay1 --join "$T1" --state "$RUN/r1" --listen $R1 --stun 198.18.61.1:3478 --region lab
# One after the other, so relay1 is lab-1 and relay2 lab-2.
wait_log "$E2E_LOGDIR/relay1.log" "registered with mesh-control" 10 || die "relay1 did not register"
start_relay relay2 --join "$T2" --state "$RUN/r2" --listen $R2 --stun 198.18.61.2:3479 --region lab
wait_log "$E2E_LOGDIR/relay2.log" "registered with mesh-control" 10 || die "relay2 did not register"
wait_log "$E2E_LOGDIR/relay1.log" "mesh link up" 10 || die "no mesh link from relay1"
wait_log "$E2E_LOGDIR/relay2.log" "mesh link up" 10 || die "no mesh link from relay2"
mc relays list >"$E2E_TMP/relays.txt" 2>&1
check "relays list: lab-1 and lab-2, region lab" \
    both grep -Eq "lab-1 +lab +$R1" "$E2E_TMP/relays.txt" -- grep -Eq "lab-2 +lab +$R2" "$E2E_TMP/relays.txt"

step "alpha and bravo join with UDP blocked entirely; relay2 unreachable for now"
# relay2 blocked on both for steps 1 and 2, so both nodes have one home
# (relay1) and the restart below cannot be survived by moving to relay2.
for n in "${NODES[@]}"; do
    udp_block $n || die "nft on $n failed"
    relay_block $n $R2 || die "nft on $n failed"
done
check "the UDP block works: alpha cannot reach relay1's STUN port" \
    not nsx_nobody alpha timeout 3 "$PY" -c "import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(bytes.fromhex('000100002112a442') + bytes(12), ('198.18.61.1', 3478))
s.recv(100)"
start_node() { # NAME [ARGS...]
    local n=$1
    shift
    bg_nobody "$n" "$n" "$MESH_PROXY" up --state "$RUN/$n" --log-level debug "$@"
}
T_JOIN=$(now_ms)
start_node alpha --join "$TOKEN" --hostname alpha --socks5 127.0.0.1:1080 --expose 8080
start_node bravo --join "$TOKEN" --hostname bravo --socks5 127.0.0.1:1080 --expose 8080
for n in "${NODES[@]}"; do
    wait_until 20 mp ip --state "$RUN/$n" || die "$n did not join (see $E2E_LOGDIR/$n.log)"
done
pass "both nodes joined"

step "1. UDP blocked on both nodes: ${BIG_MIB} MiB alpha <- bravo through relay1"
# Measured from the join: relay1 learns a new node's key from mesh-control
# within a second, and UDP's absence shows in netcheck within its 3 s
# timeout, so 10 s is plenty.
home_lab1() { sj "$1" "home().get('name') == 'lab-1' and home().get('state') == 'connected'"; }
if wait_until $((10 - ($(now_ms) - T_JOIN) / 1000)) home_lab1 alpha; then
    pass "alpha's home is relay1 (lab-1), connected $(secs_since $T_JOIN) s after joining"
else
    fail "alpha's home relay is not connected 10 s after joining: $(sjv alpha "(j.get('paths') or {}).get('relays')")"
    wait_until 30 home_lab1 alpha && info "alpha's home relay connected $(secs_since $T_JOIN) s after joining"
fi
wait_until 30 home_lab1 bravo ||
    fail "bravo has no connected home relay: $(sjv bravo "(j.get('paths') or {}).get('relays')")"
rx0=$(sjv alpha "peer('bravo').get('relay_rx_bytes') or 0")
tx0=$(sjv bravo "peer('alpha').get('relay_tx_bytes') or 0")
t0=$(now_ms)
fetch_start f1
fetch_check f1 90 "alpha fetched ${BIG_MIB} MiB from http://bravo:8080/big through SOCKS5 with UDP blocked"
info "${BIG_MIB} MiB through the relay in $(secs_since $t0) s"
show_paths
check "alpha: bravo's path is \"relay\", region lab" \
    sj alpha "peer('bravo').get('path') == 'relay' and peer('bravo').get('relay_region') == 'lab'"
check "bravo: alpha's path is \"relay\", region lab" \
    sj bravo "peer('alpha').get('path') == 'relay' and peer('alpha').get('relay_region') == 'lab'"
rx1=$(sjv alpha "peer('bravo').get('relay_rx_bytes') or 0")
tx1=$(sjv bravo "peer('alpha').get('relay_tx_bytes') or 0")
info "alpha relay_rx_bytes from bravo: $rx0 -> $rx1; bravo relay_tx_bytes to alpha: $tx0 -> $tx1"
check "alpha received >= ${BIG_MIB} MiB from bravo through the relay (relay_rx_bytes)" \
    test $((rx1 - rx0)) -ge $((BIG_MIB << 20))
check "bravo sent >= ${BIG_MIB} MiB to alpha through the relay (relay_tx_bytes)" \
    test $((tx1 - tx0)) -ge $((BIG_MIB << 20))
check "alpha's home relay entry counts the packets" \
    sj alpha "home().get('rx_packets', 0) > 40000 and home().get('tx_packets', 0) > 0"
check "the UDP block did drop the nodes' datagrams (it was in the way)" \
    test "$(udp_dropped alpha)" -gt 0 -a "$(udp_dropped bravo)" -gt 0
nsx_nobody alpha "$MESH_PROXY" netcheck --state "$RUN/alpha" --json >"$E2E_TMP/nc.json" 2>"$E2E_TMP/nc.err"
info "netcheck: $(head -c 600 "$E2E_TMP/nc.json") $(head -c 300 "$E2E_TMP/nc.err")"
check "netcheck --json in alpha: udp false, and a home all the same (by TCP latency)" \
    "$PY" -c "import json; j=json.load(open('$E2E_TMP/nc.json')); h=j.get('home') or {}
assert j['udp'] is False, j['udp']
assert h.get('region') == 'lab' and h.get('id'), h"
mp status --state "$RUN/alpha" >"$E2E_TMP/alpha.txt" 2>&1
check "status (text): bravo's PATH column says relay lab" grep -Eq "^ +bravo .* relay lab " "$E2E_TMP/alpha.txt"
check "status (text): a relay line for the home relay, connected" \
    grep -Eq "relay +home lab \(lab-1 198.18.61.1:8441\) connected" "$E2E_TMP/alpha.txt"

# restart_relay1 SIGNAL NAME : relay1 stopped with SIGNAL in the middle of a
# slowed fetch, started again from its state 1.5 s later.
restart_relay1() {
    local sig=$1 next=$2 pid rc0 t0 mark
    rc0=$(sjv alpha "home().get('reconnects', 0)")
    mark=$(log_mark "$E2E_LOGDIR/alpha.log")
    fetch_start "f-$sig" --limit-rate 6M
    sleep 3
    wait_until 5 test -s "$RUN/dl/f-$sig" || fail "the slowed fetch has not started"
    pid=$(bg_pid "$R1NAME")
    kill -"$sig" "$pid"
    wait "$pid" 2>/dev/null
    unset "E2E_BG[$R1NAME]"
    info "relay1 stopped with SIG$sig at $(stat -c %s "$RUN/dl/f-$sig") bytes"
    sleep 1.5
    start_relay "$next" --state "$RUN/r1"
    R1NAME=$next
    t0=$(now_ms)
    wait_log "$E2E_LOGDIR/$next.log" "registered with mesh-control" 10 || fail "relay1 did not come back"
    fetch_check "f-$sig" 60 "the fetch survived relay1's SIG$sig and restart"
    if [ "$sig" = TERM ]; then
        check "alpha heard RESTARTING from relay1" \
            _log_after_has "$E2E_LOGDIR/alpha.log" "$mark" "relay is restarting"
    else
        check "no RESTARTING this time (SIGKILL): alpha saw the connection die" \
            not _log_after_has "$E2E_LOGDIR/alpha.log" "$mark" "relay is restarting"
    fi
    if wait_until 15 sj alpha "home().get('name') == 'lab-1' and home().get('state') == 'connected' and home().get('reconnects', 0) > $rc0"; then
        pass "alpha reconnected to relay1 (reconnects $rc0 -> $(sjv alpha "home().get('reconnects')"))"
    else
        fail "alpha did not count a reconnect to relay1: $(sjv alpha "home()")"
    fi
    check "bravo is connected to relay1 again" \
        sj bravo "home().get('name') == 'lab-1' and home().get('state') == 'connected' and home().get('reconnects', 0) >= 1"
}

step "2. relay1 restarted in the middle of a slowed ${BIG_MIB} MiB fetch (SIGTERM: RESTARTING)"
R1NAME=relay1
restart_relay1 TERM relay1b
step "2b. the same with SIGKILL (no RESTARTING)"
restart_relay1 KILL relay1c

step "3. alpha reaches only relay1, bravo only relay2: the relay mesh carries them"
# As a network would: relay1 vanishes for bravo first (its FIN is dropped
# too, so relay1 still holds bravo's old connection), then bravo restarts
# and comes back on relay2. relay1 must give up the dead connection for
# its sibling's route.
relay_block bravo $R1 || die "nft on bravo failed"
relay_block alpha $R2 || die "nft on alpha failed"
bg_stop bravo
info "relay1 counts $(relay_stat r1 "j['clients']") clients after bravo left silently"
fw0=$(mesh_count r1)
start_node bravo
t0=$(now_ms)
if wait_until 30 sj bravo "home().get('name') == 'lab-2' and home().get('state') == 'connected'"; then
    pass "bravo restarted: home relay2 (lab-2) after $(secs_since $t0) s"
else
    fail "bravo's home is not relay2: $(sjv bravo "home()")"
fi
check "alpha's home is still relay1 (lab-1)" \
    sj alpha "home().get('name') == 'lab-1' and home().get('state') == 'connected'"
B_HOME=$(sjv bravo "home().get('id')")
check "alpha's map: bravo's home relay is bravo's (lab-2, id $B_HOME)" \
    wait_until 15 sj alpha "peer('bravo').get('home_relay') == $B_HOME"
t0=$(now_ms)
fetch_start f3
fetch_check f3 90 "alpha (on relay1) fetched ${BIG_MIB} MiB from bravo (on relay2)"
info "${BIG_MIB} MiB across the relay mesh in $(secs_since $t0) s"
show_paths
fw1=$(mesh_count r1)
check "relay1 forwarded to / received from its sibling (packets_forwarded + packets_from_mesh grew by > 40000)" \
    test "${fw1:-0}" -gt $((${fw0:-0} + 40000))
check "alpha: bravo's path is relay" path_is alpha bravo relay

step "4. UDP allowed again: the path becomes direct"
for n in "${NODES[@]}"; do udp_unblock $n; done
# Traffic to the peer is what makes a node try a direct path (pings).
bg_nobody pinger alpha "$MESH_PROXY" ping --state "$RUN/alpha" -c 200 -i 0.2 -W 2 bravo
t0=$(now_ms)
if wait_until 15 path_is alpha bravo direct; then
    UP_S=$(secs_since $t0)
    pass "alpha: bravo's path became direct ${UP_S} s after UDP was allowed"
else
    fail "alpha: bravo's path is not direct 15 s after UDP was allowed: $(sjv alpha "peer('bravo')")"
fi
check "bravo: alpha's path is direct too" wait_until 10 path_is bravo alpha direct
show_paths
mp status --state "$RUN/alpha" >"$E2E_TMP/alpha.txt" 2>&1
check "status (text): bravo's PATH column says direct and a latency" \
    grep -Eq "^ +bravo .* direct [0-9.]+ ?ms " "$E2E_TMP/alpha.txt"
rx0=$(sjv alpha "peer('bravo').get('relay_rx_bytes') or 0")
fetch_start f4
fetch_check f4 90 "a ${BIG_MIB} MiB fetch on the direct path"
rx1=$(sjv alpha "peer('bravo').get('relay_rx_bytes') or 0")
check "it did not go through the relay (relay_rx_bytes grew by < 1 MiB)" \
    test $((rx1 - rx0)) -lt $((1 << 20))

step "4b. UDP blocked again during a slowed fetch: back to the relay"
fetch_start f5 --limit-rate 4M
sleep 3
wait_until 5 test -s "$RUN/dl/f5" || fail "the slowed fetch has not started"
for n in "${NODES[@]}"; do udp_block $n; done
t0=$(now_ms)
if wait_until 15 path_is alpha bravo relay; then
    DOWN_S=$(secs_since $t0)
    pass "alpha: bravo's path fell back to the relay ${DOWN_S} s after UDP was blocked"
else
    fail "alpha: bravo's path did not fall back to the relay within 15 s: $(sjv alpha "peer('bravo')")"
fi
fetch_check f5 60 "the slowed fetch survived the fall back"
check "bravo: alpha's path is relay again" wait_until 10 path_is bravo alpha relay
show_paths
bg_stop pinger

step "5. nothing ran as root"
for n in control relay2 "$R1NAME" alpha bravo web-alpha web-bravo; do
    pid=$(bg_pid "$n")
    [ -n "$pid" ] || { fail "$n is not running"; continue; }
    check "$n runs as nobody" test "$(ps -o user= -p "$pid")" = nobody
done
for n in alpha bravo; do
    check "no sanitizer report in $n's log" mesh_log_clean $n
done
info "timings: direct ${UP_S:-none} s after UDP was allowed, relay ${DOWN_S:-none} s after it was blocked"

e2e_finish
