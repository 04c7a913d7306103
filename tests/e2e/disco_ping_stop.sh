#!/usr/bin/env bash
# `mesh-proxy ping --disco` while the node stops: real nodes (`mesh-proxy
# up`) in namespaces, mesh-control and a relay, every program as nobody.
#
#   lan 198.18.64.0/24 (a bridge), one namespace per host:
#   infra  198.18.64.1  mesh-control :7443, relay :8441 (STUN :3478)
#   alpha  198.18.64.11 mesh-proxy up
#   bravo  198.18.64.12 mesh-proxy up
#
# Steps: (1) `ping --disco -W 10` is refused with a sentence (a disco pong
# later than 5 s is not accepted); (2) `ping --disco -c 1000 -i 0.1 bravo`
# runs in alpha; alpha gets SIGTERM a second and a half later (the ping job
# waits between two probes almost all the time): the node exits 0 with no
# sanitizer report (in the ASan build: no use after free, no leak of the
# job, its timer or its API connection), and the client gets a line saying
# the node stopped and a summary, then exits; (3) bravo pings alpha (now
# down) when alpha is removed from the mesh: the ping says the peer left
# the map and stops.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss
e2e_tmp_init
e2e_require_mesh_proxy
MC=$MESH_BUILD/mesh-control
MR=$MESH_BUILD/mesh-relay
for b in "$MC" "$MR"; do
    [ -x "$b" ] || die "no executable $b (run make first)"
done
if ! "${AS_NOBODY[@]}" test -x "$MR" 2>/dev/null; then
    e2e_nobody_copy "$MC" && MC=$E2E_COPY
    e2e_nobody_copy "$MR" && MR=$E2E_COPY
fi

RUN=$E2E_TMP/run
D=$RUN/control
CTL=198.18.64.1:7443
declare -A LANIP=([infra]=198.18.64.1 [alpha]=198.18.64.11 [bravo]=198.18.64.12)

mc() { nsx_nobody infra "$MC" --data "$D" "$@"; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }
dping() {
    nsx_nobody alpha "$MESH_PROXY" ping --state "$RUN/alpha" "$@" >"$E2E_TMP/dping.out" 2>&1
    RC=$?
    sed 's/^/      | /' "$E2E_TMP/dping.out" | head -n 6
    return $RC
}
out_has() { grep -Eq -- "$1" "$E2E_TMP/dping.out"; }

step "hosts on one LAN: infra (mesh-control, relay), alpha, bravo"
for h in infra alpha bravo; do
    ns_create "$h"
    ns_lan "$h" "${LANIP[$h]}/24"
done
mkdir -p "$RUN"
check "LAN: alpha reaches infra" nsx alpha ping -c 1 -W 2 198.18.64.1 || exit 1

step "mesh-control and a relay (as nobody); alpha and bravo join"
mc init --listen "$CTL" --domain mesh.internal >/dev/null 2>&1 || die "mesh-control init failed"
bg_nobody control infra "$MC" --data "$D" serve
wait_listen infra 7443 10 || die "mesh-control did not listen"
TOKEN=$(mc token --reusable 2>/dev/null | tail -1)
T1=$(mc token --relay 2>/dev/null | tail -1)
[ "${T1:0:5}" = mesh1 ] || die "no relay token"
bg_nobody relay infra "$MR" up --join "$T1" --state "$RUN/r1" --listen 198.18.64.1:8441 \
    --stun 198.18.64.1:3478 --region lab
wait_log "$E2E_LOGDIR/relay.log" "registered with mesh-control" 10 || die "the relay did not register"
for n in alpha bravo; do
    bg_nobody $n $n "$MESH_PROXY" up --state "$RUN/$n" --log-level debug \
        --join "$TOKEN" --hostname $n
done
for n in alpha bravo; do
    wait_until 20 mp ip --state "$RUN/$n" || die "$n did not join (see $E2E_LOGDIR/$n.log)"
done
wait_until 30 dping --disco -c 1 -W 2 bravo || die "no disco pong from bravo in 30 s"
pass "both joined; bravo answers disco pings"

step "1. -W longer than a disco ping lives is refused"
check "ping --disco -W 10: exit non-zero, says -W is at most 5 s" eval '
    ! dping --disco -c 1 -W 10 bravo && out_has "want 0.001 to 5 seconds"'

step "2. SIGTERM to alpha while ping --disco -c 1000 -i 0.1 runs"
bg_nobody pinger alpha "$MESH_PROXY" ping --state "$RUN/alpha" --disco -c 1000 -i 0.1 bravo
wait_log "$E2E_LOGDIR/pinger.log" "^pong from bravo" 10 || fail "the ping printed no pong"
sleep 1.5
bg_term_status alpha 20
check "alpha exits 0 after SIGTERM (status $BG_STATUS)" test "$BG_STATUS" = 0
check "no sanitizer report in alpha's log" mesh_log_clean alpha
bg_wait pinger 10; PRC=$?
check "the ping client ends within 10 s of the node (exit $PRC)" test "$PRC" != 124
check "the client was told the node stopped, and got a summary" eval '
    grep -q "^stopped: the node is shutting down or restarting" "$E2E_LOGDIR/pinger.log" &&
    grep -Eq "^[0-9]+ sent, [0-9]+ received" "$E2E_LOGDIR/pinger.log"'

step "3. the peer leaves the map while bravo pings it"
bg_nobody pinger2 bravo "$MESH_PROXY" ping --state "$RUN/bravo" --disco -c 100 -i 0.2 -W 0.5 alpha
sleep 1
mc nodes remove alpha >/dev/null 2>&1 || fail "mesh-control nodes remove alpha failed"
bg_wait pinger2 20; PRC=$?
check "the ping ends once alpha is out of bravo's map (exit $PRC)" test "$PRC" != 124
check "it says the peer left the map, not a system error" eval '
    grep -q "the peer left the map (or its key changed); stopped" "$E2E_LOGDIR/pinger2.log" &&
    ! grep -q "No such file or directory" "$E2E_LOGDIR/pinger2.log"'
check "no sanitizer report in bravo's log" mesh_log_clean bravo

e2e_finish
