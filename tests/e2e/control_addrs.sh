#!/usr/bin/env bash
# Several control addresses (mesh-control servers on one store), real
# processes as nobody on the loopback of one namespace:
#  - init --listen A,B keeps the list in control.conf; `token`, `token
#    --relay` and the admin API's token carry both, in that order
#    (token-decode prints every address); a one-address token is still
#    version 1, which nodes from before several addresses read;
#  - token --control B,A chooses this token's addresses and order; a bad
#    list (not HOST:PORT, an address twice, more than 8) is a usage error
#    naming it; 8 long addresses fit (control.conf then has one line each);
#  - serve without --listen listens on the first address only; a second
#    serve on the same data directory listens on B;
#  - a node joins with the token: it is on A (status, status --json), its
#    state keeps both addresses; serve A killed: the node is online on B
#    within a few seconds as the same node (one node in the store, same
#    id), and status says B;
#  - a mesh-relay joined with `token --relay` does the same: it keeps both
#    addresses in relay.json and is registered through B after A dies
#    (its status names the address);
#  - serve A back and B killed: the node and the relay return to A.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv curl
e2e_tmp_init
e2e_require_mesh_proxy
MC=$MESH_BUILD/mesh-control
MR=$MESH_BUILD/mesh-relay
for b in "$MC" "$MR"; do [ -x "$b" ] || die "no executable $b (run make first)"; done
if ! "${AS_NOBODY[@]}" test -x "$MC" 2>/dev/null; then
    e2e_nobody_copy "$MC"
    MC=$E2E_COPY
fi
if ! "${AS_NOBODY[@]}" test -x "$MR" 2>/dev/null; then
    e2e_nobody_copy "$MR"
    MR=$E2E_COPY
fi

RUN=$E2E_TMP/run
D=$RUN/control
A=127.0.0.1:7443
B=127.0.0.1:7444
OUT=$E2E_TMP/out
ERR=$E2E_TMP/err

mc() { nsx_nobody h "$MC" --data "$D" "$@"; }
# mco ARGS... : mc with stdout in $OUT, stderr in $ERR; RC its exit code
mco() {
    mc "$@" >"$OUT" 2>"$ERR"
    RC=$?
    { echo "\$ mesh-control $* -> $RC"; cat "$OUT" "$ERR"; } >>"$E2E_LOGDIR/mesh-control.log"
}
# decoded TOKEN : the `control` lines of token-decode, space-separated
decoded() { nsx_nobody h "$MC" token-decode "$1" | sed -n 's/^control //p' | tr '\n' ' ' | sed 's/ $//'; }
# version TOKEN : the token's version byte
version() {
    python3 -c 'import base64,sys; s=sys.argv[1][5:]; print(base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))[0])' "$1"
}
mp() { nsx_nobody h "$MESH_PROXY" "$@"; }
# sj EXPR : EXPR over j = the node's `status --json` "mesh" object
sj() {
    mp status --json --state "$RUN/n1" >"$E2E_TMP/status.json" 2>/dev/null || return 1
    python3 -c '
import json, sys
j = json.load(open(sys.argv[1])).get("mesh") or {}
c = j.get("control") or {}
sys.exit(0 if eval(sys.argv[2]) else 1)' "$E2E_TMP/status.json" "$1"
}
# rj EXPR : EXPR over j = the relay's `status --json`
rj() {
    nsx_nobody h "$MR" status --state "$RUN/r1" --json >"$E2E_TMP/rst.json" 2>/dev/null &&
        python3 -c "import json,sys; j=json.load(open('$E2E_TMP/rst.json')); sys.exit(0 if ($1) else 1)"
}
node_count() { mc nodes list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
node_id() { mc nodes list --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])'; }

step "init --listen A,B (as nobody, in namespace h)"
ns_create h
mkdir -p "$RUN" && chown nobody:nogroup "$RUN"
check "init --listen $A,$B" mc init --listen "$A,$B" --domain mesh.internal
check "control.conf keeps the list, in order" grep -qx "listen = $A,$B" "$D/control.conf"

step "tokens carry every address, in order"
TOKEN=$(mc token --reusable) || die "mesh-control token failed"
check "token: both addresses, A first" test "$(decoded "$TOKEN")" = "$A $B"
check "token: host/port lines name the first" eval \
    'nsx_nobody h "$MC" token-decode "$TOKEN" | grep -qx "host 127.0.0.1" &&
     nsx_nobody h "$MC" token-decode "$TOKEN" | grep -qx "port 7443"'
check "token with two addresses is version 2" test "$(version "$TOKEN")" = 2
RTOKEN=$(mc token --relay 2>/dev/null) || die "mesh-control token --relay failed"
check "token --relay: both addresses" test "$(decoded "$RTOKEN")" = "$A $B"
T=$(mc token --control "$B,$A" 2>/dev/null)
check "token --control B,A: that order" test "$(decoded "$T")" = "$B $A"
T=$(mc token --control "198.18.0.9:443" 2>/dev/null)
check "token --control with one address: version 1 (older nodes read it)" eval \
    '[ "$(version "$T")" = 1 ] && [ "$(decoded "$T")" = "198.18.0.9:443" ]'
mco token --control "$A,nonsense"
check "token --control with a bad item: exit 2, names it" eval \
    '[ $RC = 2 ] && grep -q -- "--control nonsense: expected HOST:PORT" "$ERR"'
mco token --control "$A,$A"
check "token --control with an address twice: exit 2" eval '[ $RC = 2 ] && grep -q "listed twice" "$ERR"'
NINE=$(for i in 1 2 3 4 5 6 7 8 9; do printf '198.18.0.%d:443,' "$i"; done)
mco token --control "${NINE%,}"
check "token --control with 9 addresses: exit 2, says at most 8" eval \
    '[ $RC = 2 ] && grep -q "at most 8" "$ERR"'
LONG=""
for i in 1 2 3 4 5 6 7 8; do # 180 characters each with the port
    LONG+="$(printf 'c%d-%0166d.example' "$i" 0):$((7000 + i)),"
done
LONG=${LONG%,}
nsx_nobody h "$MC" --data "$RUN/long" init --listen "$LONG" >/dev/null 2>&1
check "init with 8 long addresses: one listen line each" test "$(grep -c '^listen = ' "$RUN/long/control.conf")" = 8
T=$(nsx_nobody h "$MC" --data "$RUN/long" token 2>/dev/null)
check "... and its token carries all 8 in order" test "$(decoded "$T" | tr ' ' ',')" = "$LONG"
T=$(nsx_nobody h "$MC" --data "$RUN/long" token --control "$(printf 'c-%0243d.example' 0):1,$A" 2>/dev/null)
check "token --control takes a 253-character host" test "$(decoded "$T")" = "$(printf 'c-%0243d.example' 0):1 $A"
nsx_nobody h "$MC" --data "$RUN/long2" init --listen "$A,$(printf 'c-%0243d.example' 0):1" >"$OUT" 2>"$ERR"
RC=$?
check "init refuses a host too long for a control.conf line, says so" eval \
    '[ $RC = 2 ] && grep -q "more than a control.conf line holds" "$ERR"'

step "serve A (no --listen: the first address) and serve B on the same store"
APIKEY=$(mc apikeys create e2e 2>/dev/null | grep -o 'mapi-[0-9a-f-]*' | head -1)
bg_nobody ctlA h "$MC" --data "$D" serve --log-level debug --admin-listen 127.0.0.1:7450
wait_listen h 7443 10 || die "serve A did not listen on 7443"
check "serve without --listen did not take B's port" eval '! nsx h ss -Htln "sport = :7444" | grep -q .'
bg_nobody ctlB h "$MC" --data "$D" serve --log-level debug --listen "$B"
wait_listen h 7444 10 || die "serve B did not listen on 7444"
nsx h curl -sS --max-time 5 -X POST -H "Authorization: Bearer $APIKEY" \
    --data '{}' http://127.0.0.1:7450/api/v1/keys >"$E2E_TMP/apikey.json" 2>&1
T=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$E2E_TMP/apikey.json" 2>/dev/null)
check "the admin API's token: both addresses, in order" test "$(decoded "$T")" = "$A $B"

step "a node joins; serve A dies; the node moves to B as the same node"
mkdir -p "$RUN/n1-xdg" && chown nobody:nogroup "$RUN/n1-xdg" && chmod 0700 "$RUN/n1-xdg"
bg_nobody n1 h "$MESH_PROXY" up --join "$TOKEN" --state "$RUN/n1" --hostname n1 \
    --no-portmap --log-level debug
check "the node is online on A" wait_until 20 sj "c.get('state') == 'online' and c.get('address') == '$A'"
check "status --json lists both addresses" sj "c.get('addresses') == ['$A', '$B']"
check "status (text) names the address" eval \
    'mp status --state "$RUN/n1" | grep -q "control $A (address 1 of 2)"'
check "its state keeps both addresses" python3 -c "
import json; j = json.load(open('$RUN/n1/control.json'))
assert j['host'] == '127.0.0.1' and j['port'] == 7443, j
assert j['more'] == [{'host': '127.0.0.1', 'port': 7444}], j"
ID=$(node_id)
bg_nobody r1 h "$MR" up --join "$RTOKEN" --state "$RUN/r1" --listen 127.0.0.1:18441 --region eu
check "the relay registers through A" wait_until 15 rj "j['control'] == 'online' and j['control_address'] == '$A'"
check "relay.json keeps both addresses" python3 -c "
import json; j = json.load(open('$RUN/r1/relay.json'))
assert j['control_port'] == 7443 and j['control_more'] == [{'host': '127.0.0.1', 'port': 7444}], j"
bg_stop ctlA
T0=$(date +%s%3N)
check "online on B within 5 s" wait_until 5 sj "c.get('state') == 'online' and c.get('address') == '$B'"
info "moved to B after $(($(date +%s%3N) - T0)) ms"
check "status (text) says B" eval 'mp status --state "$RUN/n1" | grep -q "control $B (address 2 of 2)"'
check "still one node, the same id" eval '[ "$(node_count)" = 1 ] && [ "$(node_id)" = "$ID" ]'
check "the relay is registered through B within 5 s" wait_until 5 rj "j['control'] == 'online' and j['control_address'] == '$B'"
check "mesh-relay status (text) names B" eval \
    'nsx_nobody h "$MR" status --state "$RUN/r1" | grep -q "control online at $B"'
check "still one relay" eval '[ "$(mc relays list --json | python3 -c "import json,sys; print(len(json.load(sys.stdin)))")" = 1 ]'

step "serve A back, serve B dies: the node returns to A"
bg_nobody ctlA2 h "$MC" --data "$D" serve --log-level debug
wait_listen h 7443 10 || die "serve A did not listen again"
bg_stop ctlB
check "online on A again within 5 s" wait_until 5 sj "c.get('state') == 'online' and c.get('address') == '$A'"
check "the relay is back on A too" wait_until 10 rj "j['control'] == 'online' and j['control_address'] == '$A'"
check "still one node, the same id" eval '[ "$(node_count)" = 1 ] && [ "$(node_id)" = "$ID" ]'

e2e_finish
