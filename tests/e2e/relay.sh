#!/usr/bin/env bash
# mesh-relay end to end (issue 13): mesh-control, two relays of one region
# (the second with TLS) and test clients (tests/tools/relay-client, built on
# the node-side codecs) with node keys registered in mesh-control, all as
# user nobody in one network namespace on loopback.
#
# Proves: packets flow A->B through one relay and across the two relays
# (relay mesh, over TLS); every node's network map lists the relays; an
# unknown key is refused with a reason and
# counted; a node removed with `mesh-control nodes remove` is cut off within
# a second; garbage after the upgrade, an oversized length and a short
# CLIENT_INFO close that connection and leave the relay up; a client that
# never reads loses packets (counted) and is disconnected at its write
# deadline while the relay's RSS stays bounded; plain HTTP gets 404/426;
# Debian's stun-client gets its mapped address from the STUN port; `relays
# list` shows both; `relays remove` stops a relay; the exit log carries the
# counters; `mesh-relay up --state DIR` resumes as the same relay, and a
# second one on the same directory refuses to start; a relay key readable
# by others or of the wrong size is refused; 200 clients on one relay
# exchange packets with none lost; a node whose connection to one relay
# died without a FIN (dropped by nftables) and which moved to a sibling
# relay gets its packets through the sibling within seconds, and the dead
# connection is closed (counted).
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd stun curl openssl python3 setpriv sqlite3 nft
e2e_tmp_init

MC=$MESH_BUILD/mesh-control
MR=$MESH_BUILD/mesh-relay
RC=$MESH_BUILD/tests/relay-client
RL=$MESH_BUILD/tests/relay-load
for b in "$MC" "$MR" "$RC" "$RL"; do
    [ -x "$b" ] || die "no executable $b (run make first)"
done
if ! "${AS_NOBODY[@]}" test -x "$MR" 2>/dev/null; then
    e2e_nobody_copy "$MC" && MC=$E2E_COPY
    e2e_nobody_copy "$MR" && MR=$E2E_COPY
    e2e_nobody_copy "$RC" && RC=$E2E_COPY
    e2e_nobody_copy "$RL" && RL=$E2E_COPY
fi

ns_create r
RUN=$E2E_TMP/run
D=$RUN/control
R1=127.0.0.1:18441
R2=127.0.0.1:18442
STUN=127.0.0.1:13478

# As nobody, in the namespace, from a directory nobody may read.
nb() { (cd "$E2E_TMP" && nsx_nobody r "$@"); }
# has REGEX TEXT : TEXT matches (check's stdin is /dev/null, so no <<<).
has() { grep -Eq -- "$1" <<<"$2"; }
# relay_json STATE EXPR : a python expression over j = `status --json`.
relay_json() {
    nb "$MR" status --state "$1" --json >"$E2E_TMP/st.json" 2>/dev/null &&
        python3 -c "import json,sys; j=json.load(open('$E2E_TMP/st.json')); sys.exit(0 if ($2) else 1)"
}

step "mesh-control and two relays of region eu (the second with TLS)"
nb "$MC" --data "$D" init --listen 127.0.0.1:17443 >/dev/null 2>&1 || die "init failed"
bg_nobody control r "$MC" --data "$D" serve
wait_listen r 17443 || die "mesh-control did not listen"
NODE_TOKEN=$(nb "$MC" --data "$D" token --reusable 2>/dev/null | tail -1)
T1=$(nb "$MC" --data "$D" token --relay 2>/dev/null | tail -1)
T2=$(nb "$MC" --data "$D" token --relay 2>/dev/null | tail -1)
check "token --relay prints a join token on its last line" test "${T1:0:5}" = mesh1

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=relay2 -keyout "$E2E_TMP/tls.key" -out "$E2E_TMP/tls.crt" >/dev/null 2>&1
chmod 0644 "$E2E_TMP/tls.key" "$E2E_TMP/tls.crt"

bg_nobody relay1 r "$MR" up --join "$T1" --state "$RUN/r1" --listen $R1 --stun $STUN \
    --region eu --write-timeout 3000
# One after the other, so relay1 is eu-1 and relay2 eu-2.
wait_log "$E2E_LOGDIR/relay1.log" "registered with mesh-control" 10 ||
    die "relay1 did not register"
# The second relay reads its token from a file (kept out of the process list).
echo "$T2" >"$E2E_TMP/t2.txt"
chmod 0644 "$E2E_TMP/t2.txt"
bg_nobody relay2 r "$MR" up --join-file "$E2E_TMP/t2.txt" --state "$RUN/r2" --listen $R2 \
    --region eu --tls-cert "$E2E_TMP/tls.crt" --tls-key "$E2E_TMP/tls.key"
R1PID=$(bg_pid relay1)
wait_listen r 18441 && wait_listen r 18442 || die "the relays did not listen"
wait_log "$E2E_LOGDIR/relay1.log" "mesh link up" 10 || die "no mesh link from relay1"
wait_log "$E2E_LOGDIR/relay2.log" "mesh link up" 10 || die "no mesh link from relay2"
pass "each relay keeps a mesh link to its sibling"
cmdline=$(tr '\0' ' ' <"/proc/$(bg_pid relay2)/cmdline")
check "--join-file keeps the token out of the process list" \
    test -n "$(grep -e '--join-file' <<<"$cmdline")" -a -z "$(grep mesh1 <<<"$cmdline")"

nb "$MC" --data "$D" relays list >"$E2E_TMP/relays.txt" 2>&1
check "relays list names both relays of region eu" \
    grep -Eq "eu-1 +eu +$R1 +13478 +no" "$E2E_TMP/relays.txt"
check "relays list shows the second relay with TLS" \
    grep -Eq "eu-2 +eu +$R2 +- +yes" "$E2E_TMP/relays.txt"
out=$(nb "$RC" register "$T1" 2>&1)
check "a relay token is refused as a node's join token" has "refused" "$out"

step "three nodes registered in mesh-control"
read -r A ANAME AMAP < <(nb "$RC" register "$NODE_TOKEN")
read -r B BNAME BMAP < <(nb "$RC" register "$NODE_TOKEN")
read -r C CNAME CMAP < <(nb "$RC" register "$NODE_TOKEN")
[ -n "$A" ] && [ -n "$B" ] && [ -n "$C" ] || die "node registration failed"
BPUB=$(nb "$RC" pub "$B")
info "a node's relay map: $AMAP"
check "every node's network map lists both relays (ports, STUN, TLS, keys)" \
    test "$AMAP" = "eu-1=127.0.0.1:18441/stun=13478/key,eu-2=127.0.0.1:18442/stun=0/tls/key"
wait_until 5 relay_json "$RUN/r1" "j['admitted_keys'] == 3" || fail "relay1 did not learn 3 node keys"
wait_until 5 relay_json "$RUN/r2" "j['admitted_keys'] == 3" || fail "relay2 did not learn 3 node keys"

step "A -> B through one relay"
bg_nobody recv1 r "$RC" recv $R1 "$B" 200 8000
wait_log "$E2E_LOGDIR/recv1.log" "^ready" 5
nb "$RC" send $R1 "$A" "$BPUB" 200 1400 || fail "send through relay1 failed"
bg_wait recv1 10
check "B received all 200 packets through relay1" grep -q "received 200" "$E2E_LOGDIR/recv1.log"
check "relay1 counted 200 relayed packets" relay_json "$RUN/r1" "j['packets_relayed'] >= 200"

step "A on relay1 -> B on relay2 (TLS): across the relay mesh"
bg_nobody recv2 r "$RC" recv $R2 "$B" 200 8000 --tls
wait_log "$E2E_LOGDIR/recv2.log" "^ready" 5
sleep 0.3 # B's PEER_PRESENT reaches relay1
nb "$RC" send $R1 "$A" "$BPUB" 200 1400 || fail "send through relay1 failed"
bg_wait recv2 10
check "B on relay2 received all 200 packets sent to relay1" \
    grep -q "received 200" "$E2E_LOGDIR/recv2.log"
check "relay1 forwarded them to its sibling" relay_json "$RUN/r1" "j['packets_forwarded'] >= 200"
check "relay2 received them from the mesh" relay_json "$RUN/r2" "j['packets_from_mesh'] >= 200"

step "an unknown key is refused"
UNKNOWN=$(openssl rand -hex 32)
out=$(nb "$RC" connect $R1 "$UNKNOWN")
check "an unknown key gets REFUSED with a reason" \
    has "refused: this key is not a node of the mesh" "$out"
check "the refusal is counted" relay_json "$RUN/r1" "j['refused']['not_admitted'] >= 1"

step "a removed node is cut off within a second"
bg_nobody hold r "$RC" hold $R1 "$C" 20
wait_log "$E2E_LOGDIR/hold.log" "^ready" 5
t0=$(date +%s%3N)
nb "$MC" --data "$D" nodes remove "$CNAME" >/dev/null 2>&1 || fail "nodes remove $CNAME failed"
wait_log "$E2E_LOGDIR/hold.log" "^cut at" 5
t1=$(sed -n 's/^cut at \([0-9]*\):.*/\1/p' "$E2E_LOGDIR/hold.log")
if [ -n "$t1" ] && [ $((t1 - t0)) -lt 1000 ]; then
    pass "removed node cut off after $((t1 - t0)) ms: $(grep '^cut at' "$E2E_LOGDIR/hold.log" | cut -d: -f2-)"
else
    fail "removed node not cut off within a second (t0=$t0 cut=${t1:-never})"
fi
out=$(nb "$RC" connect $R1 "$C")
check "the removed node cannot reconnect" has "^refused:" "$out"

step "garbage, oversized lengths, plain HTTP"
for mode in oversize junk short; do
    out=$(nb "$RC" garbage $R1 $mode)
    check "after the upgrade, $mode input closes the connection" test "$out" = closed
done
check "the bad frames were counted" \
    relay_json "$RUN/r1" "j['drops']['oversize'] >= 1 and j['drops']['bad_frame'] >= 2"
code=$(nb curl -s -o /dev/null -w '%{http_code}' "http://$R1/")
check "GET / is answered 404" test "$code" = 404
code=$(nb curl -s -o /dev/null -w '%{http_code}' "http://$R1/relay")
check "GET /relay without the upgrade is answered 426" test "$code" = 426
check "relay1 is still up" kill -0 "$R1PID"

step "a client that never reads"
rss0=$(proc_rss_kib "$R1PID")
bg_nobody noread r "$RC" noread $R1 "$B" 15
wait_log "$E2E_LOGDIR/noread.log" "^ready" 5
nb "$RC" send $R1 "$A" "$BPUB" 20000 1400 || info "sender stopped early"
wait_until 8 relay_json "$RUN/r1" "j['drops']['write_timeout'] >= 1" ||
    fail "the non-reader was not disconnected at its write deadline"
rss1=$(proc_rss_kib "$R1PID")
check "packets to the non-reader were dropped and counted" \
    relay_json "$RUN/r1" "j['drops']['queue_full'] > 0 or j['drops']['unknown_dest'] > 0"
info "relay1 RSS ${rss0} KiB before, ${rss1} KiB after 28 MB sent to a non-reader"
# Under ASan freed blocks sit in its quarantine (256 MiB by default) first.
limit=65536
[[ $(ldd "$MR" 2>/dev/null) == *libasan* ]] && limit=$((65536 + 262144))
check "relay1's RSS stayed bounded (< $((limit / 1024)) MiB)" test "$rss1" -lt "$limit"
check "relay1 is still up" kill -0 "$R1PID"

step "STUN with Debian's stun-client"
out=$(nb stun $STUN 1 -v -p 40123 2>&1)
echo "$out" >"$E2E_LOGDIR/stun-client.log"
check "stun-client gets its mapped address 127.0.0.1:40123" \
    has "mappedAddr=127.0.0.1:40123" "$out"
check "relay1 counted the STUN request" relay_json "$RUN/r1" "j['stun_responses'] >= 1"

step "200 clients on one relay exchange packets (tests/tools/relay-load)"
out=$(nb "$RL" --token "$NODE_TOKEN" --relay $R1 -n 200 --seconds 3 --pps 50 --pid "$R1PID")
info "$out"
check "all 200 clients connected and every packet arrived" \
    has "connected=200 refused=0 .* lost=0 " "$out"

step "status, relays remove, exit log"
nb "$MR" status --state "$RUN/r1" >"$E2E_TMP/status.txt" 2>&1
check "status (text) shows the counters" grep -q "^relayed .* packets" "$E2E_TMP/status.txt"
bg_nobody watch r "$RC" watch "$NODE_TOKEN" 10
wait_log "$E2E_LOGDIR/watch.log" "^map eu-1=.*,eu-2=" 5 || fail "the watching node has no relay map"
nb "$MC" --data "$D" relays remove eu-2 >/dev/null 2>&1 || fail "relays remove failed"
if wait_log "$E2E_LOGDIR/watch.log" "^map eu-1=127.0.0.1:18441/stun=13478/key$" 5; then
    pass "an online node's map drops the removed relay (a new MAP_FULL)"
else
    fail "an online node's map still lists the removed relay"
fi
bg_wait relay2 5
if [ $? -ne 124 ]; then
    check "a removed relay stops with a readable reason" \
        grep -q "mesh-control refused this relay" "$E2E_LOGDIR/relay2.log"
else
    fail "relay2 still runs after relays remove"
fi
bg_nobody hold2 r "$RC" hold $R1 "$A" 20
wait_log "$E2E_LOGDIR/hold2.log" "^ready" 5
bg_stop relay1
wait_log "$E2E_LOGDIR/hold2.log" "^cut at" 5
check "a stopping relay tells its clients to come back (RESTARTING)" \
    grep -q "^restarting: reconnect in 1000 ms" "$E2E_LOGDIR/hold2.log"
check "the exit log carries the counters" grep -q "^relayed .*packets" "$E2E_LOGDIR/relay1.log"

step "mesh-relay up --state DIR resumes"
bg_nobody relay1b r "$MR" up --state "$RUN/r1"
wait_log "$E2E_LOGDIR/relay1b.log" "registered with mesh-control" 10 ||
    fail "the resumed relay did not register"
wait_until 5 relay_json "$RUN/r1" "j['admitted_keys'] >= 2" || fail "no admission list after resuming"
out=$(nb "$RC" connect $R1 "$A")
check "the resumed relay (same key, address and STUN port) admits A" has "^admitted" "$out"
nb "$MC" --data "$D" relays list >"$E2E_TMP/relays.txt" 2>&1
check "it is still eu-1, the only relay left" \
    test "$(grep -c '^[0-9]' "$E2E_TMP/relays.txt")" = 1 -a -n "$(grep -E "eu-1 +eu +$R1 +13478" "$E2E_TMP/relays.txt")"

step "a node whose expiry passes is cut off though it is offline to mesh-control"
# B holds a relay connection but has no control connection. Its expiry is
# set 3 s ahead in the store (with a map version, as the store does); no
# other change follows: the passing expiry alone must reach the relay.
bg_nobody holdb r "$RC" hold $R1 "$B" 20
wait_log "$E2E_LOGDIR/holdb.log" "^ready" 5 || fail "B did not connect to relay1"
nb sqlite3 "$D/control.db" "BEGIN; UPDATE meta SET map_version = map_version + 1;
    UPDATE nodes SET expiry = CAST(strftime('%s','now') AS INTEGER) + 3,
    version = (SELECT map_version FROM meta) WHERE name = '$BNAME'; COMMIT;" ||
    fail "could not set B's expiry"
if wait_log "$E2E_LOGDIR/holdb.log" "^cut at" 8; then
    pass "B is cut off within a second or so of its expiry"
else
    fail "B stayed admitted on the relay after its expiry"
fi

step "one relay per state directory; the key and the directory stay private"
out=$(nb timeout 5 "$MR" up --state "$RUN/r1" --listen 127.0.0.1:18444 2>&1)
rc=$?
check "a second mesh-relay on the same --state refuses to start" \
    test "$rc" -ne 0 -a "$rc" -ne 124
check "and says the directory is in use" has "in use by another mesh-relay" "$out"
check "the running relay still answers status (its socket is intact)" \
    relay_json "$RUN/r1" "j['admitted_keys'] >= 2"
T3=$(nb "$MC" --data "$D" token --relay 2>/dev/null | tail -1)
nb sh -c "mkdir -m 755 '$RUN/r3' && head -c 32 /dev/urandom >'$RUN/r3/relay.key' &&
    chmod 644 '$RUN/r3/relay.key'"
out=$(nb timeout 5 "$MR" up --join "$T3" --state "$RUN/r3" --listen 127.0.0.1:18443 \
    --region eu 2>&1)
check "a relay key readable by others is refused, with the fix" \
    has "readable by others \(mode 0644\); chmod 600" "$out"
check "an open state directory is tightened to 0700" \
    test "$(stat -c %a "$RUN/r3")" = 700
nb sh -c "chmod 600 '$RUN/r3/relay.key' && head -c 33 /dev/urandom >'$RUN/r3/relay.key'"
out=$(nb timeout 5 "$MR" up --join "$T3" --state "$RUN/r3" --listen 127.0.0.1:18443 \
    --region eu 2>&1)
check "a relay key of the wrong size is refused, not truncated" \
    has "not a relay key \(a file of exactly 32 bytes\)" "$out"

step "mesh-proxy netcheck: a joined node measures its relays (no running node needed)"
e2e_require_mesh_proxy
bg_nobody node r "$MESH_PROXY" up --join "$NODE_TOKEN" --state "$RUN/node" --hostname nc-node
wait_until 20 test -s "$RUN/node/netmap.json" || fail "the node wrote no network map"
nb "$MESH_PROXY" netcheck --state "$RUN/node" --json >"$E2E_TMP/netcheck.json" \
    2>"$E2E_LOGDIR/netcheck.err"
cp "$E2E_TMP/netcheck.json" "$E2E_LOGDIR/netcheck.json"
nc_json() { python3 -c "import json,sys; j=json.load(open('$E2E_TMP/netcheck.json')); sys.exit(0 if ($1) else 1)"; }
check "netcheck --json (as nobody): UDP works, eu is home through eu-1" \
    nc_json "j['udp'] and j['ipv4'] and j['home']['region'] == 'eu' and j['home']['name'] == 'eu-1'"
check "netcheck --json: eu-1's STUN and TCP times, and the address it saw" \
    nc_json "[r for g in j['regions'] for r in g['relays'] if r['name'] == 'eu-1' and r['stun_rtt_ms'] > 0 and r['tcp_rtt_ms'] > 0 and r['mapped'] == j['global_v4']]"
out=$(nb stun $STUN 1 -v 2>&1)
sc_ip=$(sed -n 's/.*mappedAddr=\([0-9.]*\):[0-9]*.*/\1/p' <<<"$out" | head -1)
check "stun-client agrees with netcheck's public address ($sc_ip)" \
    nc_json "j['global_v4'].rsplit(':', 1)[0] == '$sc_ip' and '$sc_ip' != ''"
out=$(nb "$MESH_PROXY" netcheck --state "$RUN/node" 2>&1)
echo "$out" >"$E2E_LOGDIR/netcheck.txt"
check "netcheck's text starts with UDP: and names the home relay" \
    test "${out:0:4}" = "UDP:" -a -n "$(grep -E '^Home relay: +eu \(eu-1, ' <<<"$out")"
out=$(nb "$MESH_PROXY" netcheck --state "$E2E_TMP/no-such-node" 2>&1)
rc=$?
check "netcheck without a map exits 1 and says to join a mesh" \
    test "$rc" -eq 1 -a -n "$(grep 'join a mesh first' <<<"$out")"
nb mkdir -m 700 "$RUN/norelay"
python3 -c "import json; j=json.load(open('$RUN/node/netmap.json')); j.pop('relays'); print(json.dumps(j))" |
    nb sh -c "umask 077 && cat >'$RUN/norelay/netmap.json'"
out=$(nb "$MESH_PROXY" netcheck --state "$RUN/norelay" 2>&1)
rc=$?
check "netcheck with a map without relays exits 1 and says how to add one" \
    test "$rc" -eq 1 -a -n "$(grep 'lists no relay.*mesh-control token --relay' <<<"$out")"
out=$(nb "$MESH_PROXY" netcheck --state "$RUN/node" --timeout 5 2>&1)
rc=$?
check "netcheck --timeout 5 is refused (usage, exit 2)" \
    test "$rc" -eq 2 -a -n "$(grep 'milliseconds, 100-60000' <<<"$out")"

step "a node's relay connection dies without a FIN; it moves to a sibling relay"
# E holds a connection to relay1; nftables drops everything on it (its FIN
# too: a firewall, lost NAT state) and E is killed, so relay1 still counts
# E as its own client. E comes back on relay3 of the same region. A few
# handshake-sized packets sent to relay1 must reach E through relay3 (they
# never fill the dead socket's buffer, so the write deadline cannot help):
# relay3's PEER_PRESENT makes relay1 PING the old connection, send to both
# meanwhile, and close it when no answer comes.
T4=$(nb "$MC" --data "$D" token --relay 2>/dev/null | tail -1)
R3=127.0.0.1:18445
bg_nobody relay3 r "$MR" up --join "$T4" --state "$RUN/r4" --listen $R3 --region eu
wait_log "$E2E_LOGDIR/relay3.log" "mesh link up" 15 || fail "no mesh link from relay3"
wait_log "$E2E_LOGDIR/relay1b.log" "mesh link up" 15 || fail "no mesh link from relay1 to relay3"
read -r E _ _ < <(nb "$RC" register "$NODE_TOKEN")
EPUB=$(nb "$RC" pub "$E")
wait_until 5 nb "$RC" connect $R1 "$E" || fail "relay1 does not admit E"
wait_until 5 nb "$RC" connect $R3 "$E" || fail "relay3 does not admit E"
bg_nobody holde r "$RC" hold $R1 "$E" 60
wait_log "$E2E_LOGDIR/holde.log" "^ready" 5 || fail "E did not connect to relay1"
EPORT=$(nsx r ss -tnpH state established "( dport = :18441 )" |
    grep "pid=$(bg_pid holde)," | sed -n 's/.*127\.0\.0\.1:\([0-9]*\) \+127\.0\.0\.1:18441 .*/\1/p')
[ -n "$EPORT" ] || fail "cannot find E's connection to relay1"
nsx r nft -f - <<NFT
table ip e2e_stale {
    chain out {
        type filter hook output priority 0; policy accept;
        tcp sport ${EPORT:-1} drop
        tcp dport ${EPORT:-1} drop
    }
}
NFT
EPID=$(bg_pid holde)
{ kill -KILL "$EPID" && wait "$EPID"; } 2>/dev/null
bg_nobody recve r "$RC" recv $R3 "$E" 5 5000
wait_log "$E2E_LOGDIR/recve.log" "^ready" 5 || fail "E did not connect to relay3"
sleep 0.3 # relay3's PEER_PRESENT reaches relay1
nb "$RC" send $R1 "$A" "$EPUB" 5 148 || fail "send through relay1 failed"
bg_wait recve 8
check "E on relay3 got the 5 handshake-sized packets sent to relay1 within 5 s" \
    grep -q "received 5" "$E2E_LOGDIR/recve.log"
check "relay1 closed E's dead connection as stale (counted)" \
    wait_until 6 relay_json "$RUN/r1" "j['clients_stale'] >= 1"
nsx r nft delete table ip e2e_stale
nb "$MR" status --state "$RUN/r1" >"$E2E_TMP/status.txt" 2>&1
check "status (text) counts it" grep -Eq "^closed .* 1 stale" "$E2E_TMP/status.txt"

e2e_finish
