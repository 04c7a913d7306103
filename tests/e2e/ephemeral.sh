#!/usr/bin/env bash
# Ephemeral nodes (`mesh-proxy up --ephemeral`, containers without a state
# directory) against a real mesh-control, every process as nobody, on the
# loopback of one namespace:
#  - the node keeps its keys in a fresh 0700 directory under
#    $XDG_RUNTIME_DIR, removed at exit; its API is the default socket
#    (`mesh-proxy status` with no flags finds it); it is listed ephemeral
#    although its auth key is not;
#  - SIGTERM: it logs out; it leaves `mesh-control nodes list` within 5 s
#    (the server's ephemeral timeout is 120 s here: only the logout can do
#    that) and the process exits 0 within 4 s;
#  - started again under the same hostname it gets the same name, also
#    after a SIGKILL (the offline ephemeral holder of the name is renamed
#    box-2, not removed: a live node only reconnecting would come back
#    under it; a dead one goes with the ephemeral timeout), but a node
#    joining with another auth key gets a suffix and the holders stay;
#  - replicas sharing a hostname (app, app-2): app-2 killed, its successor
#    gets app-2 back, not a new suffix (the killed one is app-3 until its
#    timeout);
#  - a spent single-use key: the second node exits non-zero within a few
#    seconds, says what to do, and registers once (no retry loop);
#  - a mesh-control that does not answer (SIGSTOP) holds the exit 3 s at
#    most;
#  - a persistent node (--state) stays listed, offline, after SIGTERM;
#  - --ephemeral with --state is a usage error (exit 2, one line);
#  - the directory a SIGKILLed node left goes at the next start in that
#    runtime directory; one a running node holds (eph.lock) stays.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv
e2e_tmp_init
e2e_require_mesh_proxy
MC=$MESH_BUILD/mesh-control
[ -x "$MC" ] || die "no executable $MC (run make first)"
if ! "${AS_NOBODY[@]}" test -x "$MC" 2>/dev/null; then
    e2e_nobody_copy "$MC"
    MC=$E2E_COPY
fi

RUN=$E2E_TMP/run
D=$RUN/control
CTL=127.0.0.1:7443

mc() { nsx_nobody h "$MC" --data "$D" "$@"; }
# xdg N : the private runtime directory of node run N (its API socket and
# its ephemeral state directory go there)
xdg() {
    local x=$RUN/xdg-$1
    if [ ! -d "$x" ]; then
        mkdir -p "$x" && chown nobody:nogroup "$x" && chmod 0700 "$x"
    fi
    echo "$x"
}
# up_eph NAME HOSTNAME TOKEN : an ephemeral node in the background
up_eph() {
    bg_nobody "$1" h env XDG_RUNTIME_DIR="$(xdg "$1")" "$MESH_PROXY" up --ephemeral \
        --join "$3" --hostname "$2" --log-level debug
}
# listed NAME [online|offline|any] : NAME in `nodes list --json`
listed() {
    mc nodes list --json | python3 -c '
import json, sys
want, state = sys.argv[1], sys.argv[2]
for n in json.load(sys.stdin):
    if n["name"] == want and (state == "any" or n["online"] == (state == "online")):
        sys.exit(0)
sys.exit(1)' "$1" "${2:-any}"
}
not_listed() { ! listed "$1"; }
names() { mc nodes list --json | python3 -c 'import json,sys; print(" ".join(sorted(n["name"] for n in json.load(sys.stdin))))'; }
ephemeral_of() {
    mc nodes list --json | python3 -c '
import json, sys
print([n["ephemeral"] for n in json.load(sys.stdin) if n["name"] == sys.argv[1]])' "$1"
}
eph_dirs() { ls -d "$(xdg "$1")"/mesh-proxy-eph-* 2>/dev/null; }
now_ms() { date +%s%3N; }

step "mesh-control on 127.0.0.1 of one namespace (as nobody)"
ns_create h
check "init" mc init --listen "$CTL" --domain mesh.internal
# 120 s: a node that leaves the list within 5 s left by its logout
bg_nobody control h "$MC" --data "$D" serve --log-level debug --ephemeral-timeout 120s
wait_listen h 7443 10 || die "mesh-control serve did not listen"
TOKEN=$(mc token --reusable) || die "mesh-control token failed"
TOKEN2=$(mc token --reusable) || die "mesh-control token failed"

step "an ephemeral node joins"
up_eph a1 box "$TOKEN"
check "listed online as box" wait_until 15 listed box online
check "stored ephemeral (its key is not)" test "$(ephemeral_of box)" = "[True]"
SD=$(eph_dirs a1)
check "its state is one fresh directory under XDG_RUNTIME_DIR" test "$(echo "$SD" | wc -l)" -eq 1 -a -d "$SD"
check "... of mode 0700, with its keys" eval \
    '[ "$(stat -c %a "$SD")" = 700 ] && [ -f "$SD/machine.key" ]'
check "status with no flags finds it (default API socket)" eval \
    'nsx_nobody h env XDG_RUNTIME_DIR="$(xdg a1)" "$MESH_PROXY" status | grep -q box'

step "SIGTERM: logged out, gone from the list, exit 0"
T0=$(now_ms)
bg_term_status a1 4
T_EXIT=$(($(now_ms) - T0))
check "exit status 0 within 4 s (got $BG_STATUS after $T_EXIT ms)" test "$BG_STATUS" = 0
wait_until 5 not_listed box
T_GONE=$(($(now_ms) - T0))
check "gone from nodes list within 5 s of SIGTERM (${T_GONE} ms)" not_listed box
check "its state directory is removed" test ! -e "$SD"
check "it says it logged out" grep -q "logged out" "$E2E_LOGDIR/a1.log"
check "mesh-control removed it by its logout" grep -q "logged out: removed" "$E2E_LOGDIR/control.log"
info "SIGTERM -> exited: $T_EXIT ms, -> not listed: $T_GONE ms"

step "restarted under the same hostname: the same name"
up_eph a2 box "$TOKEN"
check "listed online as box again" wait_until 15 listed box online
check "no box-2" test "$(names)" = box

step "SIGKILL (no logout), then again: the offline holder's name comes back"
kill -KILL "$(bg_pid a2)"
bg_wait a2 5
check "box offline, still listed" wait_until 5 listed box offline
up_eph a3 box "$TOKEN"
check "the new node is online as box" wait_until 15 listed box online
check "and the old entry is renamed box-2, offline (names: $(names))" \
    eval 'test "$(names)" = "box box-2" && listed box-2 offline'
check "mesh-control says so" \
    grep -q "takes the name box of gone ephemeral node .*, now box-2" "$E2E_LOGDIR/control.log"

step "another auth key does not take the name"
kill -KILL "$(bg_pid a3)"
bg_wait a3 5
wait_until 5 listed box offline
up_eph b1 box "$TOKEN2"
check "the other key's node is box-3" wait_until 15 listed box-3 online
check "box and box-2 stay (offline)" eval 'listed box offline && listed box-2 offline'
bg_term_status b1 4
check "box-3 logs out (exit $BG_STATUS)" wait_until 5 not_listed box-3
check "box still listed" listed box offline

step "replicas sharing a hostname: the one back after a SIGKILL gets its own suffix"
up_eph r1 app "$TOKEN"
check "replica 1 is app" wait_until 15 listed app online
up_eph r2 app "$TOKEN"
check "replica 2 is app-2" wait_until 15 listed app-2 online
kill -KILL "$(bg_pid r2)"
bg_wait r2 5
check "app-2 offline" wait_until 5 listed app-2 offline
check "mesh-control saw the node close it" \
    grep -q "(app-2) offline (closed by the node)" "$E2E_LOGDIR/control.log"
up_eph r3 app "$TOKEN"
check "its successor is app-2 again" wait_until 15 listed app-2 online
check "the killed one is app-3, offline, until its timeout" listed app-3 offline
check "no app-4 (names: $(names))" not_listed app-4
check "app stays online" listed app online
bg_term_status r3 4
bg_term_status r1 4
check "both log out" wait_until 5 not_listed app
check "... app-2 too" wait_until 5 not_listed app-2

step "a spent single-use key: one clear exit, no retry loop"
ONCE=$(mc token) || die "mesh-control token failed"
up_eph s1 first "$ONCE"
check "the first node joins with it" wait_until 15 listed first online
M=$(log_mark "$E2E_LOGDIR/control.log")
T0=$(now_ms)
up_eph s2 second "$ONCE"
bg_wait s2 10
RC=$?
T_S2=$(($(now_ms) - T0))
check "the second exits non-zero (got $RC after $T_S2 ms)" test "$RC" != 0 -a "$RC" != 124
check "... within 5 s" test "$T_S2" -lt 5000
check "it says the key was used and what to do" eval \
    'grep -q "already used" "$E2E_LOGDIR/s2.log" && grep -q -- "--reusable --ephemeral" "$E2E_LOGDIR/s2.log"'
sleep 1
check "it registered once: one refusal at mesh-control" \
    test "$(log_after "$E2E_LOGDIR/control.log" "$M" | grep -c "registration refused")" = 1
check "its state directory is removed too" test -z "$(eph_dirs s2)"
check "second is not listed" not_listed second
bg_term_status s1 4

step "a mesh-control that does not answer: the logout waits 3 s at most"
up_eph c1 quiet "$TOKEN"
check "quiet online" wait_until 15 listed quiet online
kill -STOP "$(bg_pid control)"
T0=$(now_ms)
bg_term_status c1 5
T_Q=$(($(now_ms) - T0))
kill -CONT "$(bg_pid control)"
check "exit 0 (got $BG_STATUS) after 3 s, within 4 s ($T_Q ms)" eval \
    '[ "$BG_STATUS" = 0 ] && [ "$T_Q" -ge 2900 ] && [ "$T_Q" -lt 4000 ]'
check "its state directory is removed" test -z "$(eph_dirs c1)"

step "a persistent node stays listed after SIGTERM"
bg_nobody keep h env XDG_RUNTIME_DIR="$(xdg keep)" "$MESH_PROXY" up --state "$RUN/keep" \
    --join "$TOKEN" --hostname keep --log-level debug
check "keep online" wait_until 15 listed keep online
bg_term_status keep 4
check "keep exits 0 (got $BG_STATUS)" test "$BG_STATUS" = 0
check "keep is listed offline, not removed" wait_until 5 listed keep offline
sleep 1
check "... and stays" listed keep offline
check "its state directory stays" test -f "$RUN/keep/machine.key"

step "--ephemeral with --state: a usage error"
OUT=$(nsx_nobody h "$MESH_PROXY" up --ephemeral --state "$RUN/x" --join "$TOKEN" 2>&1)
RC=$?
check "exit 2 (got $RC)" test "$RC" = 2
check "one line naming both ($OUT)" eval 'echo "$OUT" | grep -q "keeps no state"'
check "nothing made" test ! -e "$RUN/x"

step "a SIGKILLed node's directory goes at the next start there; a running one's stays"
OLD=$(eph_dirs a3)
check "a3 (SIGKILLed) left its directory ($OLD)" test -n "$OLD" -a -f "$OLD/eph.lock"
touch -d '2 minutes ago' "$OLD/eph.lock" # older than the start-up guard
bg_nobody k1 h env XDG_RUNTIME_DIR="$(xdg a3)" "$MESH_PROXY" up --ephemeral \
    --join "$TOKEN" --hostname kone --log-level debug
check "kone online" wait_until 15 listed kone online
check "the stale directory is removed" test ! -e "$OLD"
NEW=$(eph_dirs a3)
check "kone's own directory is there ($NEW)" test -n "$NEW" -a -f "$NEW/node.key"
touch -d '2 minutes ago' "$NEW/eph.lock"
bg_nobody k2 h env XDG_RUNTIME_DIR="$(xdg a3)" "$MESH_PROXY" up --ephemeral \
    --join "$TOKEN" --hostname ktwo --log-level debug
check "ktwo online" wait_until 15 listed ktwo online
check "kone's directory stays (its lock is held)" test -f "$NEW/node.key"
bg_term_status k2 4
bg_term_status k1 4
check "both removed at exit" test -z "$(eph_dirs a3)"

e2e_finish
