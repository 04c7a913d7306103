#!/usr/bin/env bash
# A TCP stream that changes paths under it (issue 14's proof): real nodes
# (`mesh-proxy up`), a mesh-relay, and nftables rules that cut direct UDP
# between the two nodes while leaving the relay (TCP) and STUN alone.
# Every program runs as nobody.
#
#   lan 198.18.63.0/24 (a bridge), one namespace per host:
#   infra  198.18.63.1  mesh-control :7443, relay :8441 (STUN :3478), region lab
#   alpha  198.18.63.11 mesh-proxy up, SOCKS5 127.0.0.1:1080
#   bravo  198.18.63.12 the same, --expose 8080,8081; serves a random file
#                       on 127.0.0.1:8080, and the same file paced at
#                       400 kB/s on 127.0.0.1:8081 (paced_server.py)
# The firewall is an nftables table "e2e_p2p" in alpha and bravo that drops
# every UDP datagram to and from the other node (added and deleted as a
# step needs).
#
# Steps: (1) direct UDP blocked: `mesh-proxy ping --disco` says every pong
# came through relay "lab" (text and --json), and names the mistakes
# (unknown peer, no node running); (2a) a slowed fetch alpha <- bravo
# through SOCKS5 starts relayed; the block is lifted mid-stream: the path
# becomes direct (time measured), `ping --disco --until-direct` gets a
# direct pong, and the fetch ends without a reset, sha256 intact, with bytes
# over both paths; (2b) a paced stream (gap_fetch.py logs every arrival),
# twice: UDP cut mid-stream, back to the relay (time measured), the stream
# moves within 1 s of both nodes reporting it (before the TCP kick it often
# stood still for seconds more: segments lost on the dead path waited for
# lwIP's backed-off retransmission timer); then allowed again: direct again
# (time measured), the stream moving within 1 s of that too; intact at the
# end.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip nft python3 setpriv ss curl sha256sum
e2e_tmp_init
e2e_require_mesh_proxy
e2e_mesh_servers # MC, MR (runnable by nobody) and PY
RUN=$E2E_TMP/run
D=$RUN/control
CTL=198.18.63.1:7443
R1=198.18.63.1:8441
NODES=(alpha bravo)
declare -A LANIP=([infra]=198.18.63.1 [alpha]=198.18.63.11 [bravo]=198.18.63.12)
BIG_MIB=32

mc() { nsx_nobody infra "$MC" --data "$D" "$@"; }
not() { ! "$@"; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# p2p_block NODE OTHER_IP / p2p_unblock NODE : UDP between NODE and
# OTHER_IP dropped (and counted), or not.
p2p_block() {
    nsx "$1" nft -f - <<EOF
table inet e2e_p2p {
    chain out {
        type filter hook output priority 0; policy accept;
        ip daddr $2 meta l4proto udp counter drop
    }
    chain in {
        type filter hook input priority 0; policy accept;
        ip saddr $2 meta l4proto udp counter drop
    }
}
EOF
}
p2p_unblock() { nsx "$1" nft delete table inet e2e_p2p; }
block_both() { p2p_block alpha "${LANIP[bravo]}" && p2p_block bravo "${LANIP[alpha]}"; }
unblock_both() { p2p_unblock alpha && p2p_unblock bravo; }
p2p_dropped() {
    nsx "$1" nft list table inet e2e_p2p 2>/dev/null |
        awk '/counter packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") s += $(i + 1) } END { print s + 0 }'
}

# A python helper over `status --json`: j is the node's "mesh" object,
# peer(NAME) the entry of the peer named NAME.
write_file "$E2E_TMP/sj.py" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1])).get("mesh") or {}
def peer(name):
    for p in j.get("peers", []):
        if p.get("name") == name:
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
path_is() { sj "$1" "peer('$2').get('path') == '$3'"; }
show_paths() {
    info "alpha -> bravo: $(sjv alpha "(peer('bravo').get('path'), peer('bravo').get('relay_region'), peer('bravo').get('endpoint'))")"
    info "bravo -> alpha: $(sjv bravo "(peer('alpha').get('path'), peer('alpha').get('relay_region'), peer('alpha').get('endpoint'))")"
}
# dping ARGS... : `mesh-proxy ping --disco` in alpha; output in $E2E_TMP/dping.out, exit in RC.
dping() {
    nsx_nobody alpha "$MESH_PROXY" ping --state "$RUN/alpha" "$@" >"$E2E_TMP/dping.out" 2>&1
    RC=$?
    sed 's/^/      | /' "$E2E_TMP/dping.out" | head -n 12
    return $RC
}
out_has() { grep -Eq -- "$1" "$E2E_TMP/dping.out"; }

# fetch_start NAME RATE : alpha fetches http://bravo:8080/big through its
# SOCKS5, at most RATE bytes/s, in the background, into $RUN/dl/NAME.
fetch_start() {
    rm -f "$RUN/dl/$1"
    bg_nobody "$1" alpha curl -sS --max-time 240 --limit-rate "$2" \
        --socks5-hostname 127.0.0.1:1080 -o "$RUN/dl/$1" http://bravo:8080/big
}
fetch_check() {
    local name=$1 t=$2 what=$3 rc got
    bg_wait "$name" "$t"
    rc=$?
    got=$(sha "$RUN/dl/$name" 2>/dev/null)
    if [ $rc -eq 0 ] && [ "$got" = "$BIG_SHA" ]; then
        pass "$what (exit 0, no reset; sha256 intact)"
        return 0
    fi
    fail "$what (exit $rc, $(stat -c %s "$RUN/dl/$name" 2>/dev/null || echo no) bytes, sha256 ${got:-none})"
    tail -n 3 "$E2E_LOGDIR/$name.log" | sed 's/^/      | /'
    return 1
}
dl_bytes() { stat -c %s "$RUN/dl/$1" 2>/dev/null || echo 0; }
# dl_over NAME BYTES : fetch NAME has written more than BYTES.
dl_over() { [ "$(dl_bytes "$1")" -gt "$2" ]; }
# gap_start NAME : alpha reads bravo:8081 (the paced source) through its
# SOCKS5 into $RUN/dl/NAME, each arrival logged in $RUN/dl/NAME.t ("T_MS BYTES").
gap_start() {
    rm -f "$RUN/dl/$1" "$RUN/dl/$1.t"
    bg_nobody "$1" alpha "$PY" "$E2E_DIR/gap_fetch.py" 1080 bravo 8081 "$RUN/dl/$1" "$RUN/dl/$1.t"
}
# resume_after NAME T_MS : ms from T_MS to the first arrival after it (-1: none).
resume_after() {
    awk -v t="$2" '$1 > t { print $1 - t; f = 1; exit } END { if (!f) print -1 }' "$RUN/dl/$1.t"
}
# longest_gap NAME FROM_MS TO_MS : the longest time without a byte in [FROM, TO] (ms).
longest_gap() {
    awk -v a="$2" -v b="$3" 'BEGIN { p = a } $1 < a { next } $1 > b { exit }
        { if ($1 - p > m) m = $1 - p; p = $1 } END { if (b - p > m) m = b - p; print m + 0 }' "$RUN/dl/$1.t"
}
both_path() { path_is alpha bravo "$1" && path_is bravo alpha "$1"; }

step "hosts on one LAN: infra (mesh-control, relay), alpha, bravo"
for h in infra alpha bravo; do
    ns_create "$h"
    ns_lan "$h" "${LANIP[$h]}/24"
done
check "LAN: alpha reaches infra" nsx alpha ping -c 1 -W 2 198.18.63.1 || exit 1

step "a ${BIG_MIB} MiB random file on bravo's 127.0.0.1:8080, and paced at 400 kB/s on :8081"
mkdir -p "$E2E_TMP/www" "$RUN/dl"
chmod 0755 "$E2E_TMP/www"
chown nobody:nogroup "$RUN/dl"
random_file "$E2E_TMP/www/big" $BIG_MIB
BIG_SHA=$(sha "$E2E_TMP/www/big")
bg_nobody web-bravo bravo "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www"
wait_listen bravo 8080 10 || die "web server on bravo did not start"
bg_nobody paced-bravo bravo "$PY" "$E2E_DIR/paced_server.py" 127.0.0.1 8081 "$E2E_TMP/www/big" 400000
wait_listen bravo 8081 10 || die "the paced source on bravo did not start"

step "mesh-control and a relay of region lab (as nobody)"
mc init --listen "$CTL" --domain mesh.internal >/dev/null 2>&1 || die "mesh-control init failed"
bg_nobody control infra "$MC" --data "$D" serve
wait_listen infra 7443 10 || die "mesh-control did not listen"
TOKEN=$(mc token --reusable 2>/dev/null | tail -1)
T1=$(mc token --relay 2>/dev/null | tail -1)
[ "${T1:0:5}" = mesh1 ] || die "no relay token"
bg_nobody relay infra "$MR" up --join "$T1" --state "$RUN/r1" --listen $R1 --stun 198.18.63.1:3478 --region lab
wait_log "$E2E_LOGDIR/relay.log" "registered with mesh-control" 10 || die "the relay did not register"

step "alpha and bravo join; UDP between them blocked (the relay and STUN are not)"
block_both || die "nft failed"
bg_nobody alpha alpha "$MESH_PROXY" up --state "$RUN/alpha" --log-level debug \
    --join "$TOKEN" --hostname alpha --socks5 127.0.0.1:1080
bg_nobody bravo bravo "$MESH_PROXY" up --state "$RUN/bravo" --log-level debug \
    --join "$TOKEN" --hostname bravo --socks5 127.0.0.1:1080 --expose 8080,8081
for n in "${NODES[@]}"; do
    wait_until 20 mp ip --state "$RUN/$n" || die "$n did not join (see $E2E_LOGDIR/$n.log)"
done
for n in "${NODES[@]}"; do
    wait_until 20 sj $n "(j.get('paths') or {}).get('home_relay')" ||
        fail "$n has no home relay"
done
pass "both nodes joined, each with a home relay"

step "1. mesh-proxy ping --disco while direct UDP is blocked"
wait_until 20 dping --disco -c 1 -W 2 bravo >/dev/null || true
check "ping --disco -c 3 bravo: three pongs via relay \"lab\", exit 0" eval '
    dping --disco -c 3 -W 2 bravo && [ "$(grep -cE "^pong from bravo \([0-9.]+\) via relay \"lab\" in [0-9.]+ms$" "$E2E_TMP/dping.out")" -eq 3 ] &&
    out_has "^3 sent, 3 received, 0 direct"'
BKEY=$(sjv alpha "peer('bravo').get('public_key')")
BIP=$(sjv alpha "peer('bravo').get('addresses')[0]")
check "by mesh address ($BIP) and by the start of bravo's key (${BKEY:0:8})" eval '
    dping --disco -c 1 "$BIP" && out_has "^pong from bravo" && dping --disco -c 1 "${BKEY:0:8}" && out_has "^pong from bravo"'
check "ping --json -c 2: one JSON object a line, path relay, and a summary" eval '
    dping --json -c 2 bravo && "$PY" -c "
import json
l = [json.loads(x) for x in open(\"$E2E_TMP/dping.out\")]
assert len(l) == 3, l
for p in l[:2]:
    assert p[\"path\"] == \"relay\" and p[\"relay_region\"] == \"lab\" and p[\"latency_ms\"] > 0, p
assert l[2][\"ok\"] is True and l[2][\"received\"] == 2, l[2]"'
check "ping --until-direct -c 2 while blocked: exit 1, says direct was not established" eval '
    not dping --until-direct -c 2 -i 0.5 bravo && out_has "direct connection not established after 2 pings"'
check "ping --disco nosuch: exit 1, no peer named nosuch" eval '
    not dping --disco nosuch && out_has "no peer in the map is named nosuch"'
check "ping --disco alpha (itself): exit 1, says so" eval '
    not dping --disco alpha && out_has "alpha is this node itself"'
check "ping --disco with no node running: exit 1, says what to run" eval '
    not mp ping --disco --state "$RUN/nothing" bravo >"$E2E_TMP/dping.out" 2>&1 && out_has "cannot reach the node at .*mesh-proxy up"'
show_paths
check "alpha: bravo's path is relay" path_is alpha bravo relay

step "2a. a slowed fetch starts relayed; UDP allowed mid-stream: direct, same stream"
rx0=$(sjv alpha "peer('bravo').get('relay_rx_bytes') or 0")
fetch_start fa 500K
wait_until 10 dl_over fa 2000000 || fail "the slowed fetch has not started"
check "the fetch is going through the relay" path_is alpha bravo relay
check "the block is in the way (it dropped datagrams)" test "$(p2p_dropped alpha)" -gt 0
at=$(dl_bytes fa)
unblock_both
t0=$(now_ms)
if wait_until 60 path_is alpha bravo direct; then
    UP_S=$(secs_since $t0)
    pass "alpha: bravo's path became direct ${UP_S} s after UDP was allowed (at $at bytes)"
else
    fail "alpha: bravo's path is not direct 60 s after UDP was allowed: $(sjv alpha "peer('bravo')")"
fi
check "bravo: alpha's path is direct too" wait_until 10 path_is bravo alpha direct
show_paths
check "ping --until-direct bravo: a direct pong from bravo's LAN address, exit 0" eval '
    dping --until-direct bravo && out_has "^pong from bravo \([0-9.]+\) via 198\.18\.63\.12:[0-9]+ in [0-9.]+ms$" && out_has "^ok$"'
rx1=$(sjv alpha "peer('bravo').get('relay_rx_bytes') or 0")
sleep 3
rx2=$(sjv alpha "peer('bravo').get('relay_rx_bytes') or 0")
info "alpha relay_rx_bytes from bravo: $rx0 before, $rx1 at direct, $rx2 3 s later"
check "the stream's first part came through the relay (relay_rx_bytes grew by > 1 MB)" test $((rx1 - rx0)) -gt 1000000
check "and the relay carries (almost) nothing once direct (< 64 KiB in 3 s)" test $((rx2 - rx1)) -lt 65536
check "the fetch is still going (it changed paths under way)" bg_alive fa
fetch_check fa 120 "the ${BIG_MIB} MiB fetch that started relayed and finished direct"

step "2b. a paced stream: direct UDP cut twice mid-stream, back to the relay and direct again each time"
# A paced stream (bravo's source sends 400 kB/s), so a stall shows at
# alpha's reader as a gap rather than being covered by buffers. Each switch
# counts once both nodes report it: the stream needs both ways. Segments
# lost on the dead direct path used to wait for lwIP's retransmission
# timer, backed off to seconds by the time the path was given up (where
# in its schedule the switch fell decided the stall: hence two rounds); a
# path change now retransmits and ACKs at once.
# switch_round N : cut, both on the relay, the stream moves within 1 s;
# allowed again, both direct, the stream moves within 1 s.
switch_round() {
    local n=$1 t0 t_sw t_up at b1 r g
    block_both || die "nft failed"
    t0=$(now_ms)
    at=$(dl_bytes fb)
    if wait_until 20 both_path relay; then
        t_sw=$(now_ms)
        DOWN_S="${DOWN_S:+$DOWN_S, }$(secs_since $t0)"
        pass "round $n: alpha and bravo both on the relay $(secs_since $t0) s after direct UDP was cut (at $at bytes)"
    else
        t_sw=$(now_ms)
        fail "round $n: alpha and bravo are not both on the relay 20 s after direct UDP was cut: $(sjv alpha "peer('bravo')")"
    fi
    b1=$(dl_bytes fb)
    wait_until 20 dl_over fb $((b1 + 500000)) ||
        fail "round $n: the stream did not move on the relay for 20 s ($b1 -> $(dl_bytes fb) bytes)"
    r=$(resume_after fb "$t_sw")
    g=$(longest_gap fb "$t0" "$(now_ms)")
    DOWN_RESUME="${DOWN_RESUME:+$DOWN_RESUME, }$r"
    DOWN_GAP="${DOWN_GAP:+$DOWN_GAP, }$g"
    check "round $n: the stream moved within 1 s of the switch to the relay (first byte after ${r} ms)" \
        test "$r" -ge 0 -a "$r" -lt 1000
    info "round $n: longest gap from the cut ${g} ms (a dead direct path is trusted up to 6.5 s after its last pong)"
    show_paths
    sleep 3
    check "round $n: still relayed just before UDP is allowed again" path_is alpha bravo relay
    unblock_both
    t0=$(now_ms)
    if wait_until 80 both_path direct; then
        t_up=$(now_ms)
        REUP_S="${REUP_S:+$REUP_S, }$(secs_since $t0)"
        pass "round $n: alpha and bravo both direct again $(secs_since $t0) s after UDP was allowed"
        wait_until 5 dl_over fb $(($(dl_bytes fb) + 100000)) || true
        r=$(resume_after fb "$t_up")
        g=$(longest_gap fb "$((t_up - 5000))" "$(now_ms)")
        UP_RESUME="${UP_RESUME:+$UP_RESUME, }$r"
        UP_GAP="${UP_GAP:+$UP_GAP, }$g"
        check "round $n: the stream moved within 1 s of the switch to direct (first byte after ${r} ms)" \
            test "$r" -ge 0 -a "$r" -lt 1000
        info "round $n: longest gap from 5 s before the switch to direct: ${g} ms"
    else
        fail "round $n: alpha and bravo are not both direct 80 s after UDP was allowed: $(sjv alpha "peer('bravo')")"
    fi
}
gap_start fb
wait_until 10 dl_over fb 1000000 || fail "the paced stream has not started"
check "the stream is going directly" path_is alpha bravo direct
switch_round 1
switch_round 2
check "the stream is still going" bg_alive fb
fetch_check fb 150 "the ${BIG_MIB} MiB paced stream that went direct -> relay -> direct twice"

step "3. nothing ran as root; no sanitizer reports"
for n in control relay alpha bravo web-bravo paced-bravo; do
    pid=$(bg_pid "$n")
    [ -n "$pid" ] || { fail "$n is not running"; continue; }
    check "$n runs as nobody" test "$(ps -o user= -p "$pid")" = nobody
done
for n in alpha bravo; do
    check "no sanitizer report in $n's log" mesh_log_clean $n
done
info "timings: direct ${UP_S:-none} s after UDP was allowed; relay ${DOWN_S:-none} s after direct UDP was cut; direct again ${REUP_S:-none} s after it was allowed"
info "stream: first byte ${DOWN_RESUME:-none} ms after the switch to the relay (longest gap from the cut ${DOWN_GAP:-none} ms), ${UP_RESUME:-none} ms after the switch to direct (longest gap ${UP_GAP:-none} ms)"

e2e_finish
