#!/usr/bin/env bash
# A changed network is recovered without a restart (issue 17: a sidecar
# whose control server, relay or own pod address moves); where it cannot
# be, the node exits non-zero. Every program runs as nobody.
#
#   lan 198.18.62.0/24 (a bridge), one namespace per host:
#   infra  198.18.62.53 a DNS server (control.test, relay.test)
#          198.18.62.1  mesh-control :7443 (the join token says control.test)
#                       -> moved to 198.18.62.2
#          198.18.62.3  mesh-relay :8441, STUN :3478, --advertise relay.test
#                       -> moved to 198.18.62.4
#   alpha  198.18.62.11 mesh-proxy up, SOCKS5 127.0.0.1:1080, --expose 8080
#                       -> moved to 198.18.62.21
#   bravo  198.18.62.12 the same
# The nodes and the relay see a /etc/resolv.conf of the test naming the
# DNS server (a private mount namespace each).
#
# Steps: (1) mesh-control stops, its address moves, the DNS answer follows,
# it starts again 3 s later: both nodes and the relay are back online
# within their backoff (measured from the restart);
# (2) with UDP blocked on both nodes (the relay is the only path), the relay
# moves the same way: a fetch alpha <- bravo crosses it again (measured);
# (3) alpha's own address changes while the path is direct: alpha notices
# within seconds, redials mesh-control and its relay (whose TCP connections
# would otherwise hang on the old address for their 75 s timeout), and
# bravo reaches alpha again (measured); (4) bravo's state directory
# vanishes: bravo exits with status 1 and one line saying why.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip nft python3 setpriv unshare mount curl
e2e_require_private_mounts
e2e_tmp_init
e2e_require_mesh_proxy
e2e_mesh_servers # MC, MR (runnable by nobody) and PY
RUN=$E2E_TMP/run
D=$RUN/control
DNS_IP=198.18.62.53
CTL_A=198.18.62.1 CTL_B=198.18.62.2
RLY_A=198.18.62.3 RLY_B=198.18.62.4
ALPHA_A=198.18.62.11 ALPHA_B=198.18.62.21
BRAVO=198.18.62.12

mc() { nsx_nobody infra "$MC" --data "$D" "$@"; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

RESOLV=$E2E_TMP/resolv.conf
printf 'nameserver %s\noptions timeout:1 attempts:2\n' $DNS_IP | write_file "$RESOLV"
# bg_dns NAME TAG CMD... : CMD as nobody in TAG, seeing $RESOLV as its
# /etc/resolv.conf.
bg_dns() {
    local name=$1 tag=$2
    shift 2
    bg "$name" "$tag" unshare -m --propagation private sh -c \
        'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$RESOLV" \
        "${AS_NOBODY[@]}" "$@"
}
# dns_answer CTL_IP RELAY_IP : the DNS server (re)started with these answers.
DNS_N=0
dns_answer() {
    [ $DNS_N -gt 0 ] && bg_stop "dns$DNS_N"
    DNS_N=$((DNS_N + 1))
    bg "dns$DNS_N" infra "$PY" "$E2E_DIR/dns_server.py" $DNS_IP 53 control.test "$1" relay.test "$2"
    wait_listen infra 53 10 udp || die "the DNS server did not start"
}
# move TAG OLD NEW : the host's address OLD replaced by NEW.
move() {
    nsx "$1" ip addr del "$2/24" dev lan0 && nsx "$1" ip addr add "$3/24" dev lan0
}
# udp_block NODE : every UDP datagram in and out of lan0 dropped, but DNS.
udp_block() {
    nsx "$1" nft -f - <<'EOF'
table inet e2e_udp {
    chain out {
        type filter hook output priority 0; policy accept;
        oifname "lan0" udp dport != 53 counter drop
    }
    chain in {
        type filter hook input priority 0; policy accept;
        iifname "lan0" udp sport != 53 counter drop
    }
}
EOF
}
udp_unblock() { nsx "$1" nft delete table inet e2e_udp; }

# jq-like checks over `status --json`: j is the "mesh" object; home() the
# home relay's entry; peer(NAME) a peer by name.
write_file "$E2E_TMP/sj.py" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1])).get("mesh") or {}
ctl = j.get("control") or {}
def home():
    p = j.get("paths") or {}
    for r in p.get("relays") or []:
        if r.get("id") == p.get("home_relay"):
            return r
    return {}
def peer(name):
    for p in j.get("peers", []):
        if p.get("name") == name or str(p.get("fqdn", "")).startswith(name + "."):
            return p
    return {}
v = eval(sys.argv[2])
if len(sys.argv) > 3:
    print(v)
    sys.exit(0)
sys.exit(0 if v else 1)
EOF
status_save() {
    mp status --state "$RUN/$1" --json >"$E2E_TMP/$1.json.tmp" 2>/dev/null &&
        mv "$E2E_TMP/$1.json.tmp" "$E2E_TMP/$1.json"
}
sj() { status_save "$1" && "$PY" "$E2E_TMP/sj.py" "$E2E_TMP/$1.json" "$2"; }
sjv() { status_save "$1" && "$PY" "$E2E_TMP/sj.py" "$E2E_TMP/$1.json" "$2" print; }
# fetch FROM TO : FROM gets TO's page through its SOCKS5 by mesh name.
fetch() {
    local got
    got=$(nsx_nobody "$1" curl -sS --max-time 3 --socks5-hostname 127.0.0.1:1080 \
        "http://$2:8080/index.html" 2>/dev/null) || return 1
    [ "$got" = "$(cat "$E2E_TMP/www-$2/index.html")" ]
}
# timed WHAT SECONDS CMD... : CMD comes true within SECONDS of the change
# (at $T0); PASS with the time it took.
timed() {
    local what=$1 t=$2 left
    shift 2
    left=$((t - ($(now_ms) - T0) / 1000))
    [ $left -lt 1 ] && left=1
    if wait_until "$left" "$@"; then
        if [ $(($(now_ms) - T0)) -gt $((t * 1000)) ]; then
            fail "$what: $(secs_since $T0) s after the change (more than $t s)"
            return 1
        fi
        pass "$what ($(secs_since $T0) s after the change)"
    else
        fail "$what: not within $t s"
        return 1
    fi
}

step "hosts: infra (DNS, mesh-control, a relay), alpha, bravo"
for h in infra alpha bravo; do ns_create $h; done
ns_lan infra $DNS_IP/24
nsx infra ip addr add $CTL_A/24 dev lan0
nsx infra ip addr add $RLY_A/24 dev lan0
ns_lan alpha $ALPHA_A/24
ns_lan bravo $BRAVO/24
dns_answer $CTL_A $RLY_A
for h in alpha bravo; do
    mkdir -p "$E2E_TMP/www-$h"
    chmod 0755 "$E2E_TMP/www-$h"
    echo "$h-$RANDOM$RANDOM" | write_file "$E2E_TMP/www-$h/index.html"
    bg_nobody "web-$h" $h "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www-$h"
done

step "mesh-control (join tokens name control.test) and a relay advertised as relay.test"
mc init --listen control.test:7443 >"$E2E_TMP/init.txt" 2>&1 || {
    cat "$E2E_TMP/init.txt"
    die "mesh-control init --listen control.test:7443 failed"
}
bg_nobody control infra "$MC" --data "$D" serve --listen $CTL_A:7443 --log-level debug
wait_listen infra 7443 10 || die "mesh-control did not listen"
TOKEN=$(mc token --reusable 2>/dev/null | tail -1)
T1=$(mc token --relay 2>/dev/null | tail -1)
bg_dns relay infra "$MR" up --join "$T1" --state "$RUN/r1" --listen $RLY_A:8441 \
    --stun $RLY_A:3478 --advertise relay.test:8441 --region lab
wait_log "$E2E_LOGDIR/relay.log" "registered with mesh-control" 10 ||
    die "the relay did not register through control.test"
pass "the relay registered with mesh-control by name (control.test)"
for h in alpha bravo; do
    bg_dns $h $h "$MESH_PROXY" up --state "$RUN/$h" --log-level debug --join "$TOKEN" \
        --hostname $h --socks5 127.0.0.1:1080 --expose 8080
done
for h in alpha bravo; do
    wait_until 20 mp ip --state "$RUN/$h" || die "$h did not join (see $E2E_LOGDIR/$h.log)"
done
pass "both nodes joined through control.test"
check "alpha fetches bravo's page through SOCKS5" wait_until 15 fetch alpha bravo
check "alpha's home relay is relay.test, connected" \
    wait_until 15 sj alpha "home().get('host') == 'relay.test' and home().get('state') == 'connected'"

step "1. mesh-control moves: $CTL_A -> $CTL_B behind control.test"
s0=$(sjv alpha "ctl.get('sessions', 0)")
rmark=$(log_mark "$E2E_LOGDIR/relay.log")
bg_stop control
move infra $CTL_A $CTL_B || die "cannot move mesh-control's address"
dns_answer $CTL_B $RLY_A
# Away for a while, as a rescheduled pod is: the clients' backoff grows
# meanwhile (connections refused at the new address).
sleep 3
bg_nobody control2 infra "$MC" --data "$D" serve --listen $CTL_B:7443 --log-level debug
T0=$(now_ms)
wait_listen infra 7443 10 || die "mesh-control did not listen on $CTL_B"
back_online() { sj "$1" "ctl.get('state') == 'online' and ctl.get('sessions', 0) > $2"; }
timed "alpha is online with mesh-control at its new address" 30 back_online alpha "$s0"
timed "bravo is online with mesh-control at its new address" 30 back_online bravo 1
timed "the relay registered again" 30 _log_after_has "$E2E_LOGDIR/relay.log" "$rmark" "registered with mesh-control"

step "2. the relay moves: $RLY_A -> $RLY_B behind relay.test (UDP blocked: the relay is the only path)"
udp_block alpha && udp_block bravo || die "nft failed"
# Both sides must have given up the direct path before the move.
relay_path() { sj alpha "peer('bravo').get('path') == 'relay'" && fetch alpha bravo; }
check "with UDP blocked, alpha reaches bravo through the relay" wait_until 30 relay_path
rc0=$(sjv alpha "home().get('reconnects', 0)")
bg_stop relay
move infra $RLY_A $RLY_B || die "cannot move the relay's address"
dns_answer $CTL_B $RLY_B
bg_dns relay2 infra "$MR" up --state "$RUN/r1" --listen $RLY_B:8441 --stun $RLY_B:3478 \
    --advertise relay.test:8441 --region lab
T0=$(now_ms)
wait_listen infra 8441 10 || die "the relay did not listen on $RLY_B"
home_back() { sj "$1" "home().get('state') == 'connected' and home().get('reconnects', 0) > $2"; }
timed "alpha redialled relay.test at its new address" 40 home_back alpha "$rc0"
timed "alpha reaches bravo through the moved relay" 30 fetch alpha bravo
udp_unblock alpha && udp_unblock bravo

step "3. alpha's own address changes: $ALPHA_A -> $ALPHA_B"
direct() { sj alpha "peer('bravo').get('path') == 'direct'" && fetch bravo alpha; }
check "the path alpha <-> bravo is direct again (UDP open)" wait_until 40 direct
s0=$(sjv alpha "ctl.get('sessions', 0)")
rc0=$(sjv alpha "home().get('reconnects', 0)")
amark=$(log_mark "$E2E_LOGDIR/alpha.log")
move alpha $ALPHA_A $ALPHA_B || die "cannot move alpha's address"
T0=$(now_ms)
timed "alpha noticed its new address" 5 \
    _log_after_has "$E2E_LOGDIR/alpha.log" "$amark" "addresses changed"
# Within 5 s: the check every 2 s, then about a second; bravo must not
# hold on to the old address until disco's 6.5 s trust in it runs out.
timed "bravo's path to alpha is direct, to alpha's new address" 5 \
    sj bravo "peer('alpha').get('path') == 'direct' and str(peer('alpha').get('endpoint')).startswith('$ALPHA_B:')" ||
    info "bravo's view of alpha: $(sjv bravo "(peer('alpha').get('path'), peer('alpha').get('endpoint'))")"
timed "bravo reaches alpha again" 10 fetch bravo alpha
# The redials keep their backoff: the sessions of steps 1 and 2 are
# younger than 60 s and their backoff grew while the servers were away, so
# the wait may be that backoff (up to its 15 s maximum), not 0-2 s.
timed "alpha is online with mesh-control again (a new session)" 20 back_online alpha "$s0"
timed "alpha's home relay connection was redialled" 20 home_back alpha "$rc0"
# alpha reports its new endpoints when its session is back: the same wait.
timed "bravo's map has alpha's new address among its endpoints (through mesh-control)" 20 \
    sj bravo "any(e.startswith('$ALPHA_B:') for e in peer('alpha').get('endpoints', []))"

step "3b. an address nothing uses goes (a container bridge removed): nothing is redialled"
# An interface in alpha's namespace (a veth pair: the dummy module may be
# missing): alpha announces its address (an endpoint, so disco validates
# again when it goes), but neither mesh-control's nor the relay's
# connection comes from it.
nsx alpha ip link add mbr0 type veth peer name mbr1 && nsx alpha ip link set mbr0 up &&
    nsx alpha ip link set mbr1 up && nsx alpha ip addr add 198.18.63.1/24 dev mbr0 ||
    die "cannot add an interface in alpha's namespace"
sleep 4 # two checks: the address is in alpha's list
s0=$(sjv alpha "ctl.get('sessions', 0)")
rc0=$(sjv alpha "home().get('reconnects', 0)")
amark=$(log_mark "$E2E_LOGDIR/alpha.log")
nsx alpha ip link del mbr0 || die "cannot remove the dummy interface"
check "alpha saw the address go and redialled nothing" \
    wait_until 6 _log_after_has "$E2E_LOGDIR/alpha.log" "$amark" "address.*gone: none of ours used them|direct paths validated again"
sleep 3 # a redial would be at most 2 s after the check
check "alpha kept its mesh-control session" sj alpha "ctl.get('sessions', 0) == $s0 and ctl.get('state') == 'online'"
check "alpha kept its relay connection" sj alpha "home().get('reconnects', 0) == $rc0 and home().get('state') == 'connected'"
check "bravo still reaches alpha" fetch bravo alpha

step "4. bravo's state directory vanishes: bravo exits 1"
bmark=$(log_mark "$E2E_LOGDIR/bravo.log")
rm -rf "$RUN/bravo"
T0=$(now_ms)
bg_wait bravo 15
rc=$?
if [ $rc -eq 1 ]; then
    pass "bravo exited with status 1 ($(secs_since $T0) s after its state directory vanished)"
else
    fail "bravo's exit status is $rc, not 1"
fi
check "bravo's log says why, in one line" \
    _log_after_has "$E2E_LOGDIR/bravo.log" "$bmark" "state directory .*machine.key is gone.*exiting"

e2e_finish
