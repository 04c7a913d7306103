#!/usr/bin/env bash
# The NAT lab (issue 14): nodes behind every common kind of NAT, each pair
# made to talk, and the path they end on asserted exactly.
#
# The internet: a bridge in 198.18.0.0/16 (tests/e2e/natlab/lib.sh).
#   infra  198.18.0.1  mesh-control :7443; relay "east" :8441, STUN :3478
#          198.18.0.2  relay "west" :8442, STUN :3478 (a second region at a
#                      second address: a symmetric NAT shows a different
#                      port to each, so netcheck can see the mapping vary)
#          198.18.0.3, 198.18.0.4  STUN with CHANGE-REQUEST (3478, 3479),
#                      for miniupnpd (natlab/stun_change.py)
# The nodes, one per NAT kind (node name = kind):
#   pub    1. no NAT: 198.18.20.1 on the internet itself
#   eim    2. endpoint-independent mapping, address-and-port-dependent
#             filtering (Linux's masquerade), router r2 198.18.10.2,
#             LAN 198.19.2.0/24
#   cone   3. full cone: eim, and whatever arrives at the node's mapped port
#             goes in (r3, 198.19.3.0/24)
#   sym    4. symmetric: masquerade fully-random (r4, 198.19.4.0/24)
#   dbl    5. double NAT: a CGNAT router c5 (198.18.10.5, inside
#             100.64.5.0/24) above a home router r5 (eim both; 198.19.5.0/24)
#   noudp  6. UDP blocked entirely by the router r6 (TCP is NATed, eim)
#   lana, lanb  7. two nodes behind the same eim router r7 (198.19.7.0/24)
#   upnp   8. symmetric, with miniupnpd serving UPnP IGD and NAT-PMP on the
#             LAN side of r8 (198.19.8.0/24)
# Every router drops unsolicited inbound on its WAN side (counted).
#
# First the lab proves itself: the NAT kinds behave as named (netcheck's
# "mapping varies" on each node, unsolicited datagrams dropped by an eim
# router and let in by the full cone, UDP dropped by noudp, miniupnpd
# granting a NAT-PMP mapping that lets a datagram in, then deleting it).
# The nodes join, and the lab waits until every node is ready: its home
# relay connected, no relay connection in backoff, every peer's home known
# (the time this takes is logged). Then, for every pair in PAIRS, tests/e2e/natlab/
# pair.py fetches a file both ways through SOCKS5 by name and watches both
# nodes' path for 10 s; the pair passes when its final path is exactly the
# expected one on both sides and the traffic went that way (see
# natlab/report.py). Pairs run NATLAB_PARALLEL at a time (default 8).
#
# Expected paths are what the node can do today: direct wherever one side
# can be reached at an address it learned from STUN, from the other side's
# pings or from its router's port mapping (both sides eim, or one side
# public, full cone or behind the miniupnpd router, or the same LAN), and
# where birthday probing finds the symmetric side's port (symmetric against
# a port-restricted eim: marked in the table). The miniupnpd router's node
# is symmetric too: against an eim peer it goes direct by its mapping or by
# birthday probing, whichever comes first; against the other symmetric NAT
# only the mapping helps. Two symmetric NATs without port mapping, or UDP
# blocked, stay relayed. After the pairs, sym is started again with
# --no-birthday and eim-sym must stay relayed (no attempt, no probe).
# NATLAB_PAIRS="eim-sym sym-dbl" runs only the pairs named.
#
# Port mapping: the upnp node maps its WireGuard port at r8's miniupnpd
# (core/portmap); the lab checks that the mapping is in miniupnpd's rules
# and lease file while the node runs, that the node advertises it, that
# the pair direct only by it (sym-upnp) uses it (the peer's endpoint is the
# mapped address), that it is made again when r8's miniupnpd restarts
# without its leases, and that it is gone once the node has exited cleanly.
#
# The table goes to tests/artifacts/natlab/natlab.md and natlab.json;
# NATLAB_RESULTS=DIR writes them there instead (bench/results for the copy
# kept in the repository).
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/natlab/lib.sh"

e2e_require_root
e2e_require_cmd ip nft python3 setpriv ss curl sha256sum nsenter
e2e_tmp_init
e2e_require_mesh_proxy
MC=$MESH_BUILD/mesh-control
MR=$MESH_BUILD/mesh-relay
PROBE=$MESH_BUILD/tests/portmap-probe
for b in "$MC" "$MR" "$PROBE"; do
    [ -x "$b" ] || die "no executable $b (run make first)"
done
if ! "${AS_NOBODY[@]}" test -x "$MR" 2>/dev/null; then
    e2e_nobody_copy "$MC" && MC=$E2E_COPY
    e2e_nobody_copy "$MR" && MR=$E2E_COPY
    e2e_nobody_copy "$PROBE" && PROBE=$E2E_COPY
fi
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
NL=$E2E_ROOT/tests/e2e/natlab
if ! "${AS_NOBODY[@]}" test -r "$NL/natpmp.py" 2>/dev/null; then
    mkdir -p "$E2E_TMP/natlab"
    cp "$NL"/*.py "$E2E_TMP/natlab/"
    chmod 0755 "$E2E_TMP/natlab"
    chmod 0644 "$E2E_TMP/natlab"/*.py
    NL=$E2E_TMP/natlab
fi
RUN=$E2E_TMP/run
D=$RUN/control
CTL=198.18.0.1:7443
R1=198.18.0.1:8441
R2=198.18.0.2:8442
RESULTS=$(realpath -m "${NATLAB_RESULTS:-$E2E_LOGDIR}")
PARALLEL=${NATLAB_PARALLEL:-8}
WINDOW_S=10
SIZE_KIB=256
MINIUPNPD=$(command -v miniupnpd || echo /usr/sbin/miniupnpd)

NODES=(pub eim cone sym dbl noudp lana lanb upnp)
# The LAN address of each node (pub: its public one) and its router.
declare -A ADDR=([pub]=198.18.20.1 [eim]=198.19.2.2 [cone]=198.19.3.2
    [sym]=198.19.4.2 [dbl]=198.19.5.2 [noudp]=198.19.6.2 [lana]=198.19.7.2
    [lanb]=198.19.7.3 [upnp]=198.19.8.2)
declare -A KIND=([pub]="1 no NAT" [eim]="2 eim+apdf" [cone]="3 full cone"
    [sym]="4 symmetric" [dbl]="5 double NAT" [noudp]="6 UDP blocked"
    [lana]="7 same NAT" [lanb]="7 same NAT" [upnp]="8 symmetric+miniupnpd")

# The pairs: A B EXPECTED [NOTE]. Every kind against every other (kind 7
# by lana, and lana against lanb).
BIRTHDAY="direct by birthday probing (symmetric against port-restricted)"
PORTMAP="direct by port mapping (r8's miniupnpd)"
EITHER="direct by port mapping (r8's miniupnpd) or birthday probing"
PAIRS_TXT=$(
    cat <<EOF
pub eim direct
pub cone direct
pub sym direct
pub dbl direct
pub noudp relay
pub lana direct
pub upnp direct
eim cone direct
eim sym direct $BIRTHDAY
eim dbl direct
eim noudp relay
eim lana direct
eim upnp direct $EITHER
cone sym direct
cone dbl direct
cone noudp relay
cone lana direct
cone upnp direct
sym dbl direct $BIRTHDAY
sym noudp relay
sym lana direct $BIRTHDAY
sym upnp direct $PORTMAP (both symmetric otherwise)
dbl noudp relay
dbl lana direct
dbl upnp direct $EITHER
noudp lana relay
noudp upnp relay
lana lanb direct
lana upnp direct $EITHER
EOF
)
# NATLAB_PAIRS="eim-sym sym-dbl": only these pairs (the lab itself is
# built and checked in full).
if [ -n "${NATLAB_PAIRS:-}" ]; then
    PAIRS_TXT=$(echo "$PAIRS_TXT" | while read -r a b rest; do
        case " $NATLAB_PAIRS " in *" $a-$b "*) echo "$a $b $rest" ;; esac
    done)
    [ -n "$PAIRS_TXT" ] || die "NATLAB_PAIRS=$NATLAB_PAIRS names no pair of the lab"
fi

mc() { nsx_nobody infra "$MC" --data "$D" "$@"; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }
not() { ! "$@"; }
# sjv NODE EXPR : a python expression over NODE's status --json (j is the
# whole document, m its "mesh" object).
sjv() {
    mp status --state "$RUN/$1" --json 2>/dev/null |
        "$PY" -c "import json, sys; j = json.load(sys.stdin); m = j.get('mesh') or {}; print($2)"
}
sj() { [ "$(sjv "$1" "bool($2)" 2>/dev/null)" = True ]; }

# --- the internet and the infrastructure -------------------------------------

step "the internet 198.18.0.0/16: mesh-control and two relays (regions east, west)"
ns_create infra
nl_inet_attach infra wan 198.18.0.1/16
nsx infra ip addr add 198.18.0.2/16 dev wan
nsx infra ip addr add 198.18.0.3/16 dev wan
nsx infra ip addr add 198.18.0.4/16 dev wan
mc init --listen "$CTL" --domain mesh.internal >/dev/null 2>&1 || die "mesh-control init failed"
bg_nobody control infra "$MC" --data "$D" serve --log-level debug
wait_listen infra 7443 10 || die "mesh-control did not listen"
TOKEN=$(mc token --reusable 2>/dev/null | tail -1)
T1=$(mc token --relay 2>/dev/null | tail -1)
T2=$(mc token --relay 2>/dev/null | tail -1)
[ "${T1:0:5}" = mesh1 ] && [ "${T2:0:5}" = mesh1 ] || die "no relay tokens"
bg_nobody relay-east infra "$MR" up --join "$T1" --state "$RUN/r1" --listen $R1 \
    --stun 198.18.0.1:3478 --region east
bg_nobody relay-west infra "$MR" up --join "$T2" --state "$RUN/r2" --listen $R2 \
    --stun 198.18.0.2:3478 --region west
wait_log "$E2E_LOGDIR/relay-east.log" "registered with mesh-control" 10 || die "relay east did not register"
wait_log "$E2E_LOGDIR/relay-west.log" "registered with mesh-control" 10 || die "relay west did not register"

# --- the routers ----------------------------------------------------------------

step "the routers and LANs (198.19.K.0/24 behind router rK at 198.18.10.K)"
ns_create pub
nl_inet_attach pub eth0 198.18.20.1/16
# simple_router K KIND NODE... : router rK of KIND with the nodes on its LAN.
simple_router() {
    local k=$1 kind=$2 n
    shift 2
    ns_create "r$k"
    nl_inet_attach "r$k" wan "198.18.10.$k/16"
    if [ $# -eq 1 ]; then
        ns_create "$1"
        nl_veth "r$k" lan "198.19.$k.1/24" "$1" eth0 "${ADDR[$1]}/24"
    else
        nsx "r$k" ip link add lan type bridge || die "bridge in r$k failed"
        nsx "r$k" ip addr add "198.19.$k.1/24" dev lan
        nsx "r$k" ip link set lan up
        for n in "$@"; do
            ns_create "$n"
            nl_veth "r$k" "p$n" - "$n" eth0 "${ADDR[$n]}/24"
            nsx "r$k" ip link set "p$n" master lan
        done
    fi
    for n in "$@"; do
        nsx "$n" ip route add default via "198.19.$k.1" || die "route in $n failed"
    done
    nat_router "r$k" "$kind" wan lan "198.19.$k.0/24"
}
simple_router 2 eim eim
simple_router 3 fullcone cone
simple_router 4 symmetric sym
simple_router 6 noudp noudp
simple_router 7 eim lana lanb
simple_router 8 symmetric upnp
# Double NAT: the carrier's router c5 (inside 100.64.5.0/24), then r5.
ns_create c5
nl_inet_attach c5 wan 198.18.10.5/16
ns_create r5
nl_veth c5 lan 100.64.5.1/24 r5 wan 100.64.5.2/24
nsx r5 ip route add default via 100.64.5.1
ns_create dbl
nl_veth r5 lan 198.19.5.1/24 dbl eth0 198.19.5.2/24
nsx dbl ip route add default via 198.19.5.1
nat_router c5 eim wan lan 100.64.0.0/10
nat_router r5 eim wan lan 198.19.5.0/24
for n in "${NODES[@]}"; do
    nsx "$n" ping -c 1 -W 2 198.18.0.1 >/dev/null 2>&1 || die "$n cannot reach the internet (198.18.0.1)"
done
pass "every node reaches 198.18.0.1 through its router(s)"
check "the internet has no way into a LAN (198.19.2.2 unreachable from infra)" \
    not nsx infra ping -c 1 -W 1 198.19.2.2

step "miniupnpd on r8's LAN side (UPnP IGD and NAT-PMP), as the router would run it"
# miniupnpd refuses to map when its WAN address is reserved (198.18.0.0/15
# is) unless STUN with CHANGE-REQUEST shows it is reachable from anywhere:
# a STUN server of that kind at 198.18.0.3 / 198.18.0.4, ports 3478 / 3479.
bg_nobody stun-change infra "$PY" "$NL/stun_change.py" 198.18.0.3 198.18.0.4 3478 3479
wait_listen infra 3479 10 udp || fail "stun_change.py did not start"
UPNP_OK=0
if [ -x "$MINIUPNPD" ]; then
    write_file "$E2E_TMP/miniupnpd.conf" <<EOF
ext_ifname=wan
listening_ip=lan
http_port=0
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=no
lease_file=$E2E_TMP/miniupnpd.leases
uuid=$(cat /proc/sys/kernel/random/uuid)
upnp_table_name=natlab
upnp_nat_table_name=natlab
upnp_forward_chain=forward_upnp
upnp_nat_chain=prerouting_upnp
upnp_nat_postrouting_chain=postrouting_upnp
ext_perform_stun=yes
ext_stun_host=198.18.0.3
ext_stun_port=3478
allow 1024-65535 198.19.8.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
EOF
    bg miniupnpd r8 "$MINIUPNPD" -f "$E2E_TMP/miniupnpd.conf" -d -P "$E2E_TMP/miniupnpd.pid"
    if wait_listen r8 5351 10 udp; then
        UPNP_OK=1
    else
        fail "miniupnpd did not listen on 5351/udp in r8 (see $E2E_LOGDIR/miniupnpd.log)"
    fi
else
    fail "no miniupnpd (make deps installs Debian's miniupnpd-nftables)"
fi
if [ $UPNP_OK = 1 ]; then
    ext=$(nsx_nobody upnp "$PY" "$NL/natpmp.py" 198.19.8.1 external 2>&1)
    check "NAT-PMP: r8's miniupnpd says its external address is 198.18.10.8 (got $ext)" \
        test "$ext" = 198.18.10.8
    m=$(nsx_nobody upnp "$PY" "$NL/natpmp.py" 198.19.8.1 map 45678 60 2>&1)
    check "NAT-PMP: a UDP mapping for 198.19.8.2:45678 is granted ($m)" test "${m%% *}" -gt 0
    check "and miniupnpd put it in r8's nftables (prerouting_upnp)" \
        bash -c "nsenter --net=/run/netns/$(ns r8) nft list chain inet natlab prerouting_upnp | grep -q 45678"
    # The mapping works: a datagram from the internet to it reaches a
    # listener on 198.19.8.2:45678 (r8 drops it otherwise).
    nsx_nobody upnp timeout 5 "$PY" -c "import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 45678))
d, a = s.recvfrom(100); sys.exit(0 if d == b'natlab-mapped' else 1)" &
    lpid=$!
    sleep 0.5
    nsx infra "$PY" -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
[s.sendto(b'natlab-mapped', ('198.18.10.8', ${m%% *})) for _ in range(3)]"
    wait "$lpid"
    check "a datagram from the internet to 198.18.10.8:${m%% *} reached 198.19.8.2:45678" test $? = 0
    nsx_nobody upnp "$PY" "$NL/natpmp.py" 198.19.8.1 map 45678 0 >/dev/null 2>&1
    check "NAT-PMP: the mapping deleted (lifetime 0) is gone from r8's nftables" \
        bash -c "! nsenter --net=/run/netns/$(ns r8) nft list chain inet natlab prerouting_upnp | grep -q 45678"
    # The node's port mapper, one protocol at a time (tests/tools/
    # portmap-probe), as nobody: each maps a port, and deletes it when
    # freed.
    r8_upnp_chain() { nsenter --net="/run/netns/$(ns r8)" nft list chain inet natlab prerouting_upnp 2>/dev/null; }
    for proto in pcp nat-pmp upnp; do
        out=$E2E_TMP/probe-$proto.txt
        nsx_nobody upnp "$PROBE" --proto $proto --port 45679 --hold 2 >"$out" 2>&1 &
        ppid=$!
        wait_until 10 grep -q '^mapped' "$out"
        ext=$(awk '/^mapped/ {print $3}' "$out")
        check "$proto: the port mapper got a mapping on 198.18.10.8 ($(grep "^mapped" "$out"))" \
            test "${ext%:*}" = 198.18.10.8
        r8_upnp_chain >"$out.rules"
        check "$proto: miniupnpd maps ${ext##*:} -> 198.19.8.2:45679" \
            grep -q "dport ${ext##*:} dnat .*198.19.8.2:45679\$" "$out.rules"
        wait "$ppid"
        r8_upnp_chain >"$out.rules"
        check "$proto: freed, the port mapper deleted it ($(tail -1 "$out"))" \
            not grep -q "198.19.8.2:45679\$" "$out.rules"
    done
    UPNP_DONE=1
fi
[ "${UPNP_DONE:-0}" = 1 ] || fail "the miniupnpd checks did not run to their end"

# --- the nodes ------------------------------------------------------------------

step "web servers: a ${SIZE_KIB} KiB random file on 127.0.0.1:8080 of each node"
mkdir -p "$E2E_TMP/www" "$RUN/dl"
chmod 0755 "$E2E_TMP/www"
chown nobody:nogroup "$RUN/dl"
head -c $((SIZE_KIB * 1024)) /dev/urandom >"$E2E_TMP/www/f"
chmod 0644 "$E2E_TMP/www/f"
FILE_SHA=$(sha "$E2E_TMP/www/f")
for n in "${NODES[@]}"; do
    bg_nobody "web-$n" "$n" "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www"
done
for n in "${NODES[@]}"; do
    wait_listen "$n" 8080 10 || die "web server on $n did not start"
done

step "the nodes join (as nobody)"
for n in "${NODES[@]}"; do
    bg_nobody "$n" "$n" "$MESH_PROXY" up --join "$TOKEN" --state "$RUN/$n" --hostname "$n" \
        --socks5 127.0.0.1:1080 --expose 8080 --log-level debug
done
for n in "${NODES[@]}"; do
    wait_until 20 mp ip --state "$RUN/$n" || die "$n did not join (see $E2E_LOGDIR/$n.log)"
done
pass "all ${#NODES[@]} nodes joined"
# Ready: every node connected to its home relay, no relay connection
# waiting out a backoff, and every other node's home relay known (the
# map), so the pairs measure paths, not start-up. (A node that dials a
# relay before mesh-control has told the relay its key is refused and
# backs off for up to 30 s; the time this wait takes is logged.)
t0=$(date +%s%N)
relays="((m.get('paths') or {}).get('relays') or [])"
home_up="[r for r in $relays if r.get('home') and r.get('state') == 'connected']"
no_backoff="not [r for r in $relays if r.get('state') == 'backoff']"
peers_homed="len([p for p in m.get('peers', []) if p.get('home_relay')]) == ${#NODES[@]} - 1"
for n in "${NODES[@]}"; do
    wait_until 40 sj "$n" "$home_up and $no_backoff and $peers_homed" ||
        fail "$n: not ready after 40 s (home relay connected, no relay in backoff, every peer's home known): $(sjv "$n" "$relays")"
done
info "every node ready (home relay connected, none in backoff, the others' homes known) $((($(date +%s%N) - t0) / 1000000)) ms after the last one joined"
for n in "${NODES[@]}"; do
    [ "$n" = noudp ] && continue
    wait_until 20 sj "$n" "(m.get('paths') or {}).get('public_v4')" ||
        fail "$n has no public address from STUN after 20 s"
done
declare -A PORT
for n in "${NODES[@]}"; do
    PORT[$n]=$(sjv "$n" "j['self']['listen_port']")
    info "$n (${KIND[$n]}): ${ADDR[$n]}:${PORT[$n]}, sees itself as $(sjv "$n" "(m.get('paths') or {}).get('public_v4')"), home $(sjv "$n" "(m.get('paths') or {}).get('home_region')")"
done
nat_fullcone_open r3 wan 198.19.3.2 "${PORT[cone]}" || die "full cone rules on r3 failed"

step "port mapping: the upnp node maps its WireGuard port at r8's miniupnpd"
pm="(m.get('paths') or {}).get('portmap') or {}"
wait_until 20 sj upnp "($pm).get('external')" ||
    fail "upnp: no port mapping after 20 s: $(sjv upnp "$pm")"
PM_EXT=$(sjv upnp "($pm).get('external')")
PM_PROTO=$(sjv upnp "($pm).get('protocol')")
PM_PORT=${PM_EXT##*:}
info "upnp: mapped by $PM_PROTO: $PM_EXT -> ${ADDR[upnp]}:${PORT[upnp]}"
check "upnp: the mapping is on r8's public address 198.18.10.8 ($PM_EXT)" \
    test "${PM_EXT%:*}" = 198.18.10.8
check "miniupnpd put it in r8's nftables: $PM_PORT -> ${ADDR[upnp]}:${PORT[upnp]}" \
    bash -c "nsenter --net=/run/netns/$(ns r8) nft list chain inet natlab prerouting_upnp | grep -q 'dport $PM_PORT dnat .*${ADDR[upnp]}:${PORT[upnp]}\$'"
check "and in miniupnpd's lease file (UDP:$PM_PORT:${ADDR[upnp]}:${PORT[upnp]})" \
    grep -q "^UDP:$PM_PORT:${ADDR[upnp]}:${PORT[upnp]}:" "$E2E_TMP/miniupnpd.leases"
if command -v upnpc >/dev/null; then
    # -i: r8's IGD says it is not connected (its WAN address is reserved)
    nsx_nobody upnp upnpc -i -l >"$E2E_TMP/upnpc.txt" 2>&1
    check "upnpc -l on r8's LAN lists it (UDP $PM_PORT->${ADDR[upnp]}:${PORT[upnp]})" \
        grep -Eq "UDP +$PM_PORT->${ADDR[upnp]}:${PORT[upnp]} " "$E2E_TMP/upnpc.txt"
fi
mp status --state "$RUN/upnp" >"$E2E_TMP/upnp-status.txt" 2>&1
check "upnp: status shows it (\"portmap  $PM_PROTO $PM_EXT, lease ...\")" \
    grep -q "portmap  $PM_PROTO $PM_EXT, lease" "$E2E_TMP/upnp-status.txt"
check "upnp: and reports it to mesh-control: a peer's map lists $PM_EXT" \
    wait_until 10 sj eim "[p for p in m.get('peers', []) if p.get('name') == 'upnp' and '$PM_EXT' in (p.get('endpoints') or [])]"
check "eim: no port mapping (r2 runs no PCP, NAT-PMP or UPnP)" \
    not sj eim "($pm).get('external')"

step "the NAT kinds behave as named"
# netcheck from each node's namespace, on a socket of its own: the two
# STUN servers see the same public address:port (mapping independent of
# the destination) or not.
pids=()
for n in pub eim cone sym dbl lana upnp noudp; do
    nsx_nobody "$n" "$MESH_PROXY" netcheck --state "$RUN/$n" --json >"$E2E_TMP/nc-$n.json" 2>/dev/null &
    pids+=($!)
done
wait "${pids[@]}"
mv_of() { "$PY" -c "import json; j = json.load(open('$E2E_TMP/nc-$1.json')); print(j.get('udp'), j.get('mapping_varies'), j.get('global_v4'))" 2>/dev/null; }
for n in pub eim cone dbl lana; do
    check "$n: netcheck says UDP works and the mapping does not vary ($(mv_of $n))" \
        test "$(mv_of $n | cut -d' ' -f1-2)" = "True False"
done
for n in sym upnp; do
    check "$n: netcheck says the mapping varies by destination: symmetric ($(mv_of $n))" \
        test "$(mv_of $n | cut -d' ' -f1-2)" = "True True"
done
check "noudp: netcheck says no UDP ($(mv_of noudp))" test "$(mv_of noudp | cut -d' ' -f1)" = False
pm_of() { "$PY" -c "import json; p = json.load(open('$E2E_TMP/nc-$1.json')).get('portmap') or {}; print(p.get('pcp'), p.get('nat_pmp'), p.get('upnp'), p.get('gateway'), p.get('external_v4'))" 2>/dev/null; }
check "upnp: netcheck finds PCP, NAT-PMP and UPnP at r8, external 198.18.10.8 ($(pm_of upnp))" \
    test "$(pm_of upnp)" = "True True True 198.19.8.1 198.18.10.8"
for n in eim sym; do
    check "$n: netcheck finds no port mapping at its router ($(pm_of $n))" \
        test "$(pm_of $n | cut -d' ' -f1-3)" = "False False False"
done
check "noudp: r6 dropped the node's UDP (counted)" test "$(router_drops r6 | cut -d' ' -f2)" -gt 0
check "pub: netcheck sees its own address 198.18.20.1" bash -c "[[ '$(mv_of pub)' == *198.18.20.1:* ]]"
check "dbl: netcheck sees the carrier's address 198.18.10.5" bash -c "[[ '$(mv_of dbl)' == *198.18.10.5:* ]]"
# An unsolicited datagram from the internet to each node's public address
# and port: the eim router drops it (counted), the full cone lets it in
# (the node counts a datagram it could not place).
udp_to() { nsx infra "$PY" -c "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('198.18.0.2', 0)); [s.sendto(b'natlab-unsolicited', ('$1', $2)) for _ in range(3)]"; }
d0=$(router_drops r2 | cut -d' ' -f1)
udp_to 198.18.10.2 "${PORT[eim]}"
sleep 0.3
check "eim: r2 dropped 3 unsolicited datagrams to the node's mapped port" \
    test "$(router_drops r2 | cut -d' ' -f1)" -ge $((d0 + 3))
o0=$(sjv cone "(m.get('paths') or {}).get('counters', {}).get('other_drop', 0)")
udp_to 198.18.10.3 "${PORT[cone]}"
check "cone: the full cone let them in to the node (its other_drop counter grew)" \
    wait_until 3 sj cone "(m.get('paths') or {}).get('counters', {}).get('other_drop', 0) >= $o0 + 3"

# --- the pairs ------------------------------------------------------------------

step "the pairs: fetch both ways, watch the path for ${WINDOW_S} s (${PARALLEL} at a time)"
mkdir -p "$E2E_TMP/pairs" "$RESULTS"
PAIRS_JSON=$E2E_TMP/pairs.json
echo "$PAIRS_TXT" | "$PY" -c '
import json, sys
kind = dict(a.split("=", 1) for a in sys.argv[1:])
out = []
for line in sys.stdin:
    w = line.split(None, 3)
    if len(w) < 3:
        continue
    out.append({"pair": w[0] + "-" + w[1], "a": w[0], "b": w[1],
                "kind_a": kind[w[0]], "kind_b": kind[w[1]], "expected": w[2],
                "note": w[3].strip() if len(w) > 3 else ""})
json.dump(out, sys.stdout, indent=1)' $(for n in "${NODES[@]}"; do printf '%s=%s\n' "$n" "${KIND[$n]// /_}"; done) >"$PAIRS_JSON"
# jobs_alive PID... : how many of them still run.
jobs_alive() {
    local p c=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && c=$((c + 1)); done
    echo $c
}
# spec A B EXPECTED : pair.py's input for one pair.
spec() {
    cat <<EOF
{"pair": "$1-$2", "expected": "$3", "window_s": $WINDOW_S,
 "mesh_proxy": "$MESH_PROXY", "file": "f", "sha256": "$FILE_SHA",
 "size": $((SIZE_KIB * 1024)), "outdir": "$RUN/dl",
 "a": {"name": "$1", "netns": "$(ns "$1")", "state": "$RUN/$1"},
 "b": {"name": "$2", "netns": "$(ns "$2")", "state": "$RUN/$2"}}
EOF
}
# run_pair A B EXPECTED : pair.py in the background; its pid in LAST_PID.
run_pair() {
    spec "$1" "$2" "$3" >"$E2E_TMP/pairs/$1-$2.spec"
    "$PY" "$NL/pair.py" "$E2E_TMP/pairs/$1-$2.spec" "$E2E_TMP/pairs/$1-$2.json" \
        >"$E2E_LOGDIR/pair-$1-$2.log" 2>&1 &
    LAST_PID=$!
}
t0=$(date +%s)
pids=()
# First every pair that needs no birthday probing, PARALLEL at once.
while read -r a b want note; do
    [ -n "$a" ] || continue
    [[ "$note" == "$BIRTHDAY"* ]] && continue
    run_pair "$a" "$b" "$want"
    pids+=($LAST_PID)
    # At most PARALLEL at once (not `wait -n`: it would also return for
    # the daemons this shell started).
    while [ "$(jobs_alive "${pids[@]}")" -ge "$PARALLEL" ]; do sleep 0.2; done
done <<<"$PAIRS_TXT"
# (never a bare `wait`: it would wait for the daemons too)
[ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
# Then the birthday pairs, each node in one at a time: a node runs one
# attempt at a time (docs/disco.md), so a node in three such pairs at once
# would take three attempts' time, and the window measures one.
declare -A BUSY=()
queue=()
while read -r a b want note; do
    [[ -n "$a" && "$note" == "$BIRTHDAY"* ]] && queue+=("$a $b $want")
done <<<"$PAIRS_TXT"
pids=()
while [ ${#queue[@]} -gt 0 ]; do
    rest=()
    for q in "${queue[@]}"; do
        read -r a b want <<<"$q"
        if [ "$(jobs_alive ${BUSY[$a]:-} ${BUSY[$b]:-})" -eq 0 ]; then
            run_pair "$a" "$b" "$want"
            pids+=($LAST_PID)
            BUSY[$a]=$LAST_PID
            BUSY[$b]=$LAST_PID
        else
            rest+=("$q")
        fi
    done
    queue=("${rest[@]}")
    [ ${#queue[@]} -gt 0 ] && sleep 0.2
done
[ ${#pids[@]} -gt 0 ] && wait "${pids[@]}"
info "$(echo "$PAIRS_TXT" | grep -c .) pairs in $(($(date +%s) - t0)) s"
cp "$E2E_TMP"/pairs/*.json "$E2E_LOGDIR/" 2>/dev/null

NATLAB_SIZE=$((SIZE_KIB * 1024)) "$PY" "$NL/report.py" "$PAIRS_JSON" "$E2E_TMP/pairs" \
    "$RESULTS/natlab.md" "$RESULTS/natlab.json" >"$E2E_TMP/verdicts.txt" ||
    fail "report.py failed"
while read -r v rest; do
    case $v in
    PASS) pass "$rest" ;;
    FAIL) fail "$rest" ;;
    esac
done <"$E2E_TMP/verdicts.txt"
info "table: $RESULTS/natlab.md"
# The pair that is direct only by the port mapping must be direct *via*
# it: the other side's final endpoint for upnp is the mapped address. The
# pairs that may go either way say which way they went.
if [ -n "${PM_EXT:-}" ]; then
    while read -r a b want note; do
        [[ "$b" = upnp && ( "$note" == "$PORTMAP"* || "$note" == "$EITHER"* ) ]] || continue
        ep=$("$PY" -c "import json; print(json.load(open('$E2E_TMP/pairs/$a-$b.json')).get('a_endpoint'))" 2>/dev/null)
        # ($EITHER starts with $PORTMAP's words: it is tested first.)
        if [[ "$note" == "$EITHER"* ]]; then
            if [ "$ep" = "$PM_EXT" ]; then
                info "$a-upnp: direct at the mapped $PM_EXT"
            else
                info "$a-upnp: direct at $ep, not the mapped $PM_EXT (birthday probing won)"
            fi
        else
            check "$a-upnp: $a reaches upnp directly at the mapped $PM_EXT (endpoint $ep)" \
                test "$ep" = "$PM_EXT"
        fi
    done <<<"$PAIRS_TXT"
fi
sed 's/^/      /' "$RESULTS/natlab.md" | tail -n +5

step "nothing crashed, nothing ran as root but the routers' miniupnpd"
for n in "${NODES[@]}" control relay-east relay-west; do
    pid=$(bg_pid "$n")
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
        fail "$n is not running any more (see $E2E_LOGDIR/$n.log)"
        continue
    fi
    [ "$(ps -o user= -p "$pid")" = nobody ] || fail "$n runs as $(ps -o user= -p "$pid")"
done
for n in "${NODES[@]}" control relay-east relay-west; do
    if grep -Eq "ERROR: (Address|Undefined|Leak)Sanitizer|runtime error:" "$E2E_LOGDIR/$n.log"; then
        fail "a sanitizer report in $n's log"
    fi
done

step "birthday probing off: sym again with --no-birthday, eim-sym stays relayed"
# The switch (up --no-birthday) takes a node out of it: sym sends no NAT
# kind, so eim never probes, and sym never opens its sockets; the pair
# that birthday probing made direct above stays on the relay. (Without the
# flag sym starts attempts at once; eim may still refuse them, since it
# honours one request per peer per 20 s, so sym's count is the check.)
if echo "$PAIRS_TXT" | grep -q '^eim sym '; then
    ctr="(m.get('paths') or {}).get('counters') or {}"
    eim_probes0=$(sjv eim "($ctr).get('birthday_probes_sent', 0)")
    bg_stop sym
    bg_nobody sym sym "$MESH_PROXY" up --state "$RUN/sym" --no-birthday --log-level debug
    wait_until 40 sj sym "[r for r in ((m.get('paths') or {}).get('relays') or []) if r.get('home') and r.get('state') == 'connected']" ||
        fail "sym did not come back with its home relay after 40 s (see $E2E_LOGDIR/sym.log)"
    check "sym: its log says birthday probing is off" \
        grep -q "birthday probing: off (--no-birthday" "$E2E_LOGDIR/sym.log"
    mp status --state "$RUN/sym" >"$E2E_TMP/sym-status.txt" 2>&1
    check "sym: status says so (\"birthday  off (--no-birthday ...)\")" \
        grep -q "birthday  off (--no-birthday" "$E2E_TMP/sym-status.txt"
    check "sym: and status --json (paths.birthday_probing false)" \
        sj sym "(m.get('paths') or {}).get('birthday_probing') is False"
    # eim's direct path to the old process's probing socket runs out of
    # trust first (6.5 s without a pong).
    wait_until 15 sj eim "[p for p in m.get('peers', []) if p.get('name') == 'sym' and p.get('path') != 'direct']" ||
        fail "eim still says direct to sym 15 s after sym restarted"
    spec eim sym relay >"$E2E_TMP/nobd.spec"
    "$PY" "$NL/pair.py" "$E2E_TMP/nobd.spec" "$E2E_TMP/nobd.json" >"$E2E_LOGDIR/pair-eim-sym-nobd.log" 2>&1
    nobd() { "$PY" -c "import json; r = json.load(open('$E2E_TMP/nobd.json')); print($1)" 2>/dev/null; }
    check "eim-sym: both fetches arrived, both sides relayed ($(nobd "r.get('final_ok'), r.get('a_path'), r.get('b_path')"))" \
        test "$(nobd "r.get('final_ok'), r.get('a_path'), r.get('b_path')")" = "True relay relay"
    check "sym: no birthday attempt ($(sjv sym "($ctr).get('birthday_attempts')"))" \
        test "$(sjv sym "($ctr).get('birthday_attempts')")" = 0
    check "eim: no probe sent to sym ($eim_probes0 before, $(sjv eim "($ctr).get('birthday_probes_sent')") after)" \
        test "$(sjv eim "($ctr).get('birthday_probes_sent')")" = "$eim_probes0"
fi

step "port mapping: r8 restarts and forgets its mappings; the upnp node maps again"
# A router that reboots loses its mappings. miniupnpd announces its start
# (a PCP ANNOUNCE to 224.0.0.1:5350 on the LAN), and the node maps again at
# once instead of at its next renewal (an hour into a 2 h lease).
if [ -n "${PM_PORT:-}" ]; then
    r8_rule() { nsenter --net="/run/netns/$(ns r8)" nft list chain inet natlab prerouting_upnp 2>/dev/null | grep -E "dnat .*${ADDR[upnp]}:${PORT[upnp]}\$"; }
    bg_stop miniupnpd
    rm -f "$E2E_TMP/miniupnpd.leases" # lost with the power
    nsenter --net="/run/netns/$(ns r8)" nft flush chain inet natlab prerouting_upnp 2>/dev/null
    check "r8 stopped: its rules no longer map the node's port" not r8_rule
    bg miniupnpd r8 "$MINIUPNPD" -f "$E2E_TMP/miniupnpd.conf" -d -P "$E2E_TMP/miniupnpd.pid"
    wait_listen r8 5351 10 udp || fail "miniupnpd did not start again in r8"
    check "upnp: the mapping is back at r8 within 10 s of its restart" wait_until 10 r8_rule
    check "upnp: its log says the router announced a restart" \
        grep -q "portmap: the router 198.19.8.1 announced a restart" "$E2E_LOGDIR/upnp.log"
    wait_until 5 sj upnp "($pm).get('external')" || true
    PM_EXT=$(sjv upnp "($pm).get('external')")
    PM_PORT=${PM_EXT##*:}
fi

step "port mapping: the upnp node deletes its mapping when it exits"
if [ -n "${PM_PORT:-}" ]; then
    kill -TERM "$(bg_pid upnp)" 2>/dev/null
    wait_until 10 not kill -0 "$(bg_pid upnp)" 2>/dev/null || fail "upnp did not exit on SIGTERM"
    check "upnp: its log says the mapping was deleted" \
        grep -q "portmap: $PM_PROTO $PM_EXT deleted" "$E2E_LOGDIR/upnp.log"
    check "r8's nftables no longer map $PM_PORT" \
        bash -c "! nsenter --net=/run/netns/$(ns r8) nft list chain inet natlab prerouting_upnp | grep -q 'dport $PM_PORT dnat'"
    check "nor does miniupnpd's lease file" \
        not grep -q "^UDP:$PM_PORT:" "$E2E_TMP/miniupnpd.leases"
fi

e2e_finish
