#!/usr/bin/env bash
# Access control end to end (issue 16): a policy set in mesh-control,
# compiled per node, carried in the maps and enforced in every node, every
# program as nobody.
#
#   lan 198.18.61.0/24 (a bridge), one namespace per host:
#   ctl    198.18.61.1   mesh-control serve :7443, admin API :7444
#   alice  198.18.61.11  user alice's laptop
#   bob    198.18.61.12  user bob's laptop
#   web    198.18.61.13  tag:web (a token of user ops, who owns the tag)
#   db     198.18.61.14  tag:db  (likewise)
# Every node runs a web server on 127.0.0.1:8080 saying its name and one on
# 127.0.0.1:9999 saying "secret of NAME", and exposes all (so only the
# policy stands between a peer and those ports).
#
# Policy 1: group:eng (alice, bob) -> tag:web:8080; alice -> tag:db:8080;
# tag:web -> tag:db:8080; its tests pass. Checks:
#   - a policy whose test fails is refused with line and column, and
#     changes nothing;
#   - allowed connections work: alice -> web, bob -> web, alice -> db;
#   - denied ones fail at once with SOCKS5 0x02 / HTTP 403 at the sender
#     (bob -> web:9999, alice -> web:9999), the fast-fail counter moves;
#   - a packet that reaches a node against its filter is dropped silently
#     and counted (web pings alice: ICMP is not allowed to alice);
#   - bob does not see db at all (no rule either way): not in status, its
#     name does not resolve;
#   - whois on alice names web's node, user and tags; whois on web of its
#     own address names user ops and tag:web, and web's status says
#     "owner ops, tags tag:web" (text and --json);
# Policy 2 (set through the admin API on the running mesh): bob -> tag:db
# too: bob sees db within a second, and reaches it, without a restart.
# A spoofed source: db's mesh-proxy stops and wireguard-go takes db's key
# and port, its TUN holding alice's address too. Packets to web from db's
# own address reach web's filter (counted there; web -> db:8080 answers);
# packets from alice's address are dropped by web's allowed-IPs check
# (wireguard.rx_drop_allowedips moves), and web's policy counters do not.
# Policy 3 takes web:8080 away from bob (bob keeps web:9999, so the two
# still see each other): bob's open connection to web:8080 is reset at
# once and counted (revoked) on web.
# Clearing the policy: everything is allowed again and status says so.
# After each of these policy changes the nodes' netmap.json holds the new
# map within 10 s (not up to a minute later; 10 s leaves room for a
# reconnect for a full map).
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss curl ping wg wireguard-go
e2e_tmp_init
e2e_require_mesh_proxy
MC=$MESH_BUILD/mesh-control
[ -x "$MC" ] || die "no executable $MC (run make first)"
if ! "${AS_NOBODY[@]}" test -x "$MC" 2>/dev/null; then
    e2e_nobody_copy "$MC"
    MC=$E2E_COPY
fi

PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
RUN=$E2E_TMP/run
D=$RUN/control
CTL=198.18.61.1:7443
ADMIN=198.18.61.1:7444
NODES=(alice bob web db)
declare -A LANIP=([ctl]=198.18.61.1 [alice]=198.18.61.11 [bob]=198.18.61.12
    [web]=198.18.61.13 [db]=198.18.61.14)

mc() { nsx_nobody ctl "$MC" --data "$D" "$@"; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }
not() { ! "$@"; }
stj() { mp status --json --state "$RUN/$1"; }

step "hosts on one LAN: ctl and four nodes"
for h in ctl "${NODES[@]}"; do
    ns_create "$h"
    ns_lan "$h" "${LANIP[$h]}/24"
done

step "web servers on every node (8080: the name, 9999: a secret)"
for h in "${NODES[@]}"; do
    for port in 8080 9999; do
        mkdir -p "$E2E_TMP/www-$h-$port"
        if [ $port = 8080 ]; then echo "i am $h"; else echo "secret of $h"; fi |
            write_file "$E2E_TMP/www-$h-$port/index.html"
        chmod 0755 "$E2E_TMP/www-$h-$port"
        bg_nobody "web-$h-$port" "$h" "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 $port "$E2E_TMP/www-$h-$port"
    done
done
for h in "${NODES[@]}"; do
    wait_listen "$h" 8080 10 && wait_listen "$h" 9999 10 || die "web servers on $h did not start"
done

step "mesh-control: users, tokens (as nobody)"
check "init" mc init --listen "$CTL" --domain mesh.internal
bg_nobody control ctl "$MC" --data "$D" serve --log-level debug \
    --admin-listen "$ADMIN" --admin-insecure
wait_listen ctl 7443 10 || { tail "$E2E_LOGDIR/control.log"; die "mesh-control serve did not listen"; }
for u in alice bob ops; do check "users create $u" mc users create $u; done
users_listed() { mc users list | grep -q alice && mc users list | grep -q ops; }
check "users list names them" users_listed
APIKEY=$(mc apikeys create e2e 2>/dev/null | grep -o 'mapi-[0-9a-f-]*' | head -1)
declare -A TOK
TOK[alice]=$(mc token --user alice) || die "token --user alice failed"
TOK[bob]=$(mc token --user bob) || die "token --user bob failed"

write_file "$E2E_TMP/p1.hujson" <<'P'
// issue 16's four nodes: two users and two tagged servers
{
  "groups": {"group:eng": ["alice@", "bob@"]},
  "tagOwners": {"tag:web": ["ops@"], "tag:db": ["ops@"]},
  "acls": [
    {"action": "accept", "src": ["group:eng"], "dst": ["tag:web:8080"]},
    {"action": "accept", "src": ["alice@"], "dst": ["tag:db:8080"]},
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:8080"], "proto": "tcp"},
  ],
  "tests": [
    {"src": "bob@", "accept": ["tag:web:8080"], "deny": ["tag:web:9999", "tag:db:8080"]},
  ],
}
P
# the same with a test that fails (line 7 holds it)
write_file "$E2E_TMP/bad.hujson" <<'P'
{
  "tagOwners": {"tag:web": ["ops@"], "tag:db": ["ops@"]},
  "acls": [
    {"action": "accept", "src": ["alice@"], "dst": ["tag:web:8080"]},
  ],
  "tests": [
    {"src": "bob@", "accept": ["tag:web:8080"]},
  ],
}
P
chmod 0644 "$E2E_TMP"/*.hujson

step "a policy whose test fails is refused and changes nothing"
bad_refused() {
    local out
    out=$(mc policy set "$E2E_TMP/bad.hujson" 2>&1) && { echo "accepted: $out"; return 1; }
    echo "$out"
    echo "$out" | grep -Eq 'line 7, column [0-9]+' && echo "$out" | grep -q 'bob'
}
check "policy set bad.hujson: refused, naming line 7 and bob" bad_refused
check "policy get: still none" not mc policy get

step "the policy is set before the nodes join"
check "policy set p1.hujson" mc policy set "$E2E_TMP/p1.hujson"
got_back() { mc policy get | cmp - "$E2E_TMP/p1.hujson"; }
check "policy get gives the file back byte for byte" got_back
check "token --user bob --tags tag:web refused (bob does not own tag:web)" \
    not mc token --user bob --tags tag:web
TOK[web]=$(mc token --user ops --tags tag:web) || die "token for web failed"
TOK[db]=$(mc token --user ops --tags tag:db) || die "token for db failed"

step "four nodes join"
for n in "${NODES[@]}"; do
    bg_nobody "$n" "$n" "$MESH_PROXY" up --state "$RUN/$n" --hostname "$n" \
        --socks5 127.0.0.1:1080 --http-proxy 127.0.0.1:3128 --log-level debug \
        --expose all --join "${TOK[$n]}"
done
joined() { mp ip --state "$RUN/$1" >/dev/null 2>&1; }
for n in "${NODES[@]}"; do
    check "$n joined" wait_until 20 joined "$n" || { tail -n 30 "$E2E_LOGDIR/$n.log"; die "$n did not join"; }
done
declare -A IP4
for n in "${NODES[@]}"; do IP4[$n]=$(mp ip -4 --state "$RUN/$n"); info "$n: ${IP4[$n]}"; done
owners_listed() {
    mc nodes list --json | python3 -c '
import json, sys
n = {x["name"]: x for x in json.load(sys.stdin)}
sys.exit(0 if n["alice"].get("user") == "alice" and "tag:web" in str(n["web"].get("tags")) else 1)'
}
check "nodes list shows alice's node under user alice, web with tag:web" owners_listed

# fetch FROM TO PORT : http://TO:PORT/ through FROM's SOCKS5
fetch() { nsx "$1" curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1080 "http://$2:$3/"; }
fetch_is() { local got; got=$(fetch "$1" "$2" "$3" 2>&1); [ "$got" = "$4" ] || { echo "$1 -> $2:$3: '$got'"; return 1; }; }
# socks_code FROM HOST PORT WANT : FROM's SOCKS5 answers CONNECT with WANT
socks_code() { nsx_nobody "$1" timeout 60 $PY "$E2E_DIR/hostile.py" socks-code 1080 "$2" "$3" "$4" 20; }
peers_of() { stj "$1" | python3 -c 'import json,sys; print(" ".join(sorted(p["name"] for p in json.load(sys.stdin)["mesh"]["peers"])))'; }
sees() { peers_of "$1" | tr ' ' '\n' | grep -qx "$2"; }
acl_field() { # NODE PATH : a number from status --json's policy object (e.g.
    # fast_fail, dropped.icmp); 0 if absent
    stj "$1" | python3 -c '
import json, sys
def find(o):
    if isinstance(o, dict):
        if isinstance(o.get("policy"), dict) and "active" in o["policy"]:
            return o["policy"]
        for v in o.values():
            r = find(v)
            if r is not None:
                return r
    return None
o = find(json.load(sys.stdin)) or {}
for k in sys.argv[1].split("."):
    o = o.get(k) if isinstance(o, dict) else None
print(o if isinstance(o, int) else 0)' "$2"
}

step "allowed connections work"
check "alice -> web:8080" wait_until 20 fetch_is alice web 8080 "i am web"
check "bob -> web:8080" wait_until 20 fetch_is bob web 8080 "i am web"
check "alice -> db:8080" wait_until 20 fetch_is alice db 8080 "i am db"
check "web -> db:8080 (tag to tag)" wait_until 20 fetch_is web db 8080 "i am db"

step "denied connections fail at once, and are counted"
FF0=$(acl_field bob fast_fail)
t0=$(date +%s%N)
check "bob -> web:9999: SOCKS5 reply 02 (not allowed by ruleset)" socks_code bob web 9999 2
t1=$(date +%s%N)
info "bob's refusal took $(((t1 - t0) / 1000000)) ms"
check "and within 2 s (no timeout)" test $(((t1 - t0) / 1000000)) -lt 2000
check "alice -> web:9999: 02 too" socks_code alice web 9999 2
http403() {
    local code
    code=$(nsx bob curl -s -o /dev/null -w '%{http_code}' --max-time 10 -x http://127.0.0.1:3128 "http://web:9999/")
    echo "HTTP $code"
    [ "$code" = 403 ]
}
check "bob's HTTP proxy -> web:9999: 403" http403
ff_moved() { local v; v=$(acl_field bob fast_fail); echo "fast_fail $FF0 -> $v"; [ "$v" -gt "$FF0" ]; }
check "bob's fast-fail counter moved" ff_moved
D0=$(acl_field alice dropped.icmp)
check "web pings alice: no answer (alice allows no ICMP)" not mp ping -c 2 --state "$RUN/web" alice
alice_dropped_more() { [ "$(acl_field alice dropped.icmp)" -gt "$D0" ]; }
check "alice counted the dropped echo requests" wait_until 5 alice_dropped_more
check "web did not reach alice's 8080 either (nothing allows it)" not fetch web alice 8080

step "visibility: bob does not see db, db does not see bob"
bob_view() { local p; p=" $(peers_of bob) "; echo "bob sees:$p"; [[ $p == *" web "* && $p != *" db "* ]]; }
check "bob's status lists web but not db" bob_view
check "db's status does not list bob" not sees db bob
check "bob cannot even resolve db" not fetch bob db 8080

step "whois"
whois_web() {
    local out
    out=$(mp whois --state "$RUN/alice" "${IP4[web]}" --json) || return 1
    echo "$out"
    echo "$out" | python3 -c 'import json,sys; j=json.load(sys.stdin); s=json.dumps(j); sys.exit(0 if "web" in s and "tag:web" in s else 1)'
}
check "alice: whois web's address names web and tag:web" whois_web
check "whois of an address nobody holds: exit 1" not mp whois --state "$RUN/alice" 100.127.255.254
whois_self() {
    local out
    out=$(mp whois --state "$RUN/web" "${IP4[web]}") || return 1
    echo "$out"
    grep -q "(this node)" <<<"$out" && grep -q "^user    ops$" <<<"$out" &&
        grep -q "^tags    tag:web$" <<<"$out"
}
check "web: whois of its own address names user ops and tag:web" whois_self
status_self() {
    local out
    out=$(mp status --state "$RUN/web") || return 1
    grep "owner" <<<"$out"
    grep -q "owner ops, tags tag:web" <<<"$out" || return 1
    mp status --state "$RUN/web" --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["mesh"]["self"]; print(s); sys.exit(0 if s["user"] == "ops" and s["tags"] == ["tag:web"] else 1)'
}
check "web's status: owner ops, tags tag:web (text and --json)" status_self

step "policy 2 through the admin API, on the running mesh: bob may reach db"
sed 's/"src": \["alice@"\], "dst": \["tag:db:8080"\]/"src": ["group:eng"], "dst": ["tag:db:8080"]/; s/, "tag:db:8080"\]}/]}/' \
    "$E2E_TMP/p1.hujson" >"$E2E_TMP/p2.hujson"
api_put() { # [FILE]
    local code
    code=$(nsx ctl curl -s -o "$E2E_TMP/put.out" -w '%{http_code}' -X PUT \
        -H "Authorization: Bearer $APIKEY" --data-binary @"${1:-$E2E_TMP/p2.hujson}" "http://$ADMIN/api/v1/policy")
    cat "$E2E_TMP/put.out"
    [ "$code" = 200 ]
}
[ -n "$APIKEY" ] || fail "no admin API key was made"
t0=$(date +%s%N)
check "PUT /v1/policy: 200" api_put
check "bob sees db within a second" wait_until 1 sees bob db
t1=$(date +%s%N)
info "bob saw db $(((t1 - t0) / 1000000)) ms after the PUT was sent"
check "bob -> db:8080 now works (no restart)" wait_until 10 fetch_is bob db 8080 "i am db"
check "bob -> db:9999 still refused (02)" socks_code bob db 9999 2
# saved_has NODE WORD : NODE's netmap.json holds WORD (the nodes write it as
# nobody; root reads it)
saved_has() { grep -q -- "$2" "$RUN/$1/netmap.json"; }
check "bob's netmap.json knows db within 10 s" wait_until 10 saved_has bob '"db"'

step "policy 3 takes web away from bob: bob's open connection to web is reset"
write_file "$E2E_TMP/p3.hujson" <<'P'
{
  "groups": {"group:eng": ["alice@", "bob@"]},
  "tagOwners": {"tag:web": ["ops@"], "tag:db": ["ops@"]},
  "acls": [
    {"action": "accept", "src": ["alice@"], "dst": ["tag:web:8080"]},
    {"action": "accept", "src": ["bob@"], "dst": ["tag:web:9999"]},
    {"action": "accept", "src": ["group:eng"], "dst": ["tag:db:8080"]},
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:8080"], "proto": "tcp"},
  ],
}
P
chmod 0644 "$E2E_TMP/p3.hujson"
# bob opens web:8080 through its SOCKS5 and sends nothing: the server waits
bg_nobody bob-hold bob "$PY" -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", 1080), timeout=5)
s.sendall(b"\x05\x01\x00"); s.recv(2)
s.sendall(b"\x05\x01\x00\x03\x03web\x1f\x90")
r = s.recv(10)
print("open" if r[:2] == b"\x05\x00" else "refused %r" % r, flush=True)
s.settimeout(120)
try:
    d = s.recv(100)
    print("closed: eof" if not d else "data %r" % d, flush=True)
except OSError as e:
    print("closed: %s" % e, flush=True)
'
hold_is() { grep -q "$1" "$E2E_LOGDIR/bob-hold.log"; }
check "bob holds a connection to web:8080" wait_until 10 hold_is '^open'
RV0=$(acl_field web revoked)
WEB0=$(md5sum <"$RUN/web/netmap.json")
check "PUT /v1/policy (policy 3): 200" api_put "$E2E_TMP/p3.hujson"
check "bob's connection to web is closed" wait_until 10 hold_is '^closed'
revoked_more() { local v; v=$(acl_field web revoked); echo "revoked $RV0 -> $v"; [ "$v" -gt "$RV0" ]; }
check "web counted it (revoked)" wait_until 10 revoked_more
web_saved() { [ "$(md5sum <"$RUN/web/netmap.json")" != "$WEB0" ]; }
check "web's netmap.json holds policy 3 within 10 s" wait_until 10 web_saved
check "bob -> web:8080 now refused (02)" wait_until 30 socks_code bob web 8080 2
check "alice -> web:8080 still works" fetch_is alice web 8080 "i am web"

step "a spoofed mesh source is dropped by allowed-IPs before the filter runs"
# db's identity in a real WireGuard peer: db's mesh-proxy stops, and
# wireguard-go in db's namespace takes db's node key and db's UDP port. Its
# TUN holds alice's mesh address (web's policy lets alice reach web:8080)
# besides db's own; its one peer is web, allowed IPs the whole mesh range.
# Web knows that key as db, whose allowed IPs are db's address alone.
#   - from db's own address the session works: db -> web:8080 is not in the
#     policy, so web's filter drops the SYNs and counts them (the packets
#     passed allowed-IPs); web -> db:8080 (allowed) gets its answer back;
#   - from alice's address nothing arrives: web counts the packets in
#     wireguard.rx_drop_allowedips, and neither its policy counters nor its
#     netstack's move.
json_at() { # NODE PATH : a number from NODE's status --json (0 if absent)
    stj "$1" | python3 -c '
import json, sys
o = json.load(sys.stdin)
for k in sys.argv[1].split("."):
    o = o.get(k) if isinstance(o, dict) else None
print(o if isinstance(o, int) else 0)' "$2"
}
acl_dropped_all() { # NODE : the sum of its policy drop counters
    stj "$1" | python3 -c '
import json, sys
d = (json.load(sys.stdin).get("policy") or {}).get("dropped") or {}
print(sum(v for v in d.values() if isinstance(v, int)))'
}
WEBPUB=$(stj web | python3 -c 'import json,sys; print(json.load(sys.stdin)["self"]["public_key"])')
WEBPORT=$(json_at web self.listen_port)
DBPORT=$(json_at db self.listen_port)
info "web: key $WEBPUB, UDP ${LANIP[web]}:$WEBPORT; db's UDP port $DBPORT"
[ -n "$WEBPUB" ] && [ "$WEBPORT" -gt 0 ] && [ "$DBPORT" -gt 0 ] || die "no key or port for web or db in status --json"
check "db runs as nobody (before it makes way for the spoofer)" \
    test "$(ps -o user= -p "$(bg_pid db)")" = nobody
bg_stop db
check "db's log has no sanitizer report" mesh_log_clean db
# The key file is db's (0600, nobody's); root hands it to wg.
install -m 0600 "$RUN/db/node.key" "$E2E_TMP/db-node.key" || die "cannot read db's node.key"
WGS=$(wg_ifname s)
wggo_start spoofer db "$WGS" "${IP4[alice]}/32" "$DBPORT" "$E2E_TMP/db-node.key"
nsx db ip addr add "${IP4[db]}/32" dev "$WGS"
nsx db ip route add 100.64.0.0/10 dev "$WGS"
nsx db wg set "$WGS" peer "$WEBPUB" allowed-ips 100.64.0.0/10 endpoint "${LANIP[web]}:$WEBPORT"
mkdir -p "$E2E_TMP/www-spoofer"
echo "i am db's key in wireguard-go" | write_file "$E2E_TMP/www-spoofer/index.html"
chmod 0755 "$E2E_TMP/www-spoofer"
bg_nobody web-spoofer db "$PY" "$E2E_DIR/httpd.py" "${IP4[db]}" 8080 "$E2E_TMP/www-spoofer"
wait_listen db 8080 10 || die "the web server on db's mesh address did not start"
# curl_from SRC [PORT] : http://web:PORT/ (8080) from wireguard-go's TUN,
# source address SRC
curl_from() { nsx_nobody db curl -sS --max-time 2 --interface "$1" "http://${IP4[web]}:${2:-8080}/"; }

A0=$(json_at web wireguard.rx_drop_allowedips)
S0=$(acl_field web dropped.tcp_syn)
check "from db's own address: web:8080 does not answer (db -> web is not in the policy)" \
    not curl_from "${IP4[db]}"
syn_counted() { local v; v=$(acl_field web dropped.tcp_syn); echo "tcp_syn $S0 -> $v"; [ "$v" -gt "$S0" ]; }
check "web's filter saw and dropped those SYNs (the session works)" syn_counted
hs_done() { [ "$(wg_latest_handshake db "$WGS" "$WEBPUB")" -gt 0 ] 2>/dev/null; }
check "wg show: a handshake with web under db's key" hs_done
check "web -> db:8080 (allowed) reaches wireguard-go's server and the answer comes back" \
    wait_until 10 fetch_is web db 8080 "i am db's key in wireguard-go"
A1=$(json_at web wireguard.rx_drop_allowedips)
check "no allowed-IPs drop at web for db's own address ($A0 -> $A1)" test "$A1" -eq "$A0"

# What the spoofer sends from alice's address would get past web's filter
# if it came from alice (8080 over TCP and UDP, pings), or be dropped and
# counted there (9999). So with the allowed-IPs check gone, web's policy
# counters or its netstack's counters would move: neither may.
udp_in() { echo $(($(json_at web netstack.udp_rx) + $(json_at web netstack.udp_drop))); }
udp_from() { # SRC PORT : three datagrams to web:PORT from SRC
    nsx_nobody db $PY -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
for _ in range(3):
    s.sendto(b"spoofed", (sys.argv[2], int(sys.argv[3])))' "$1" "${IP4[web]}" "$2"
}
P1=$(acl_dropped_all web)
N1=$(json_at web netstack.tcp_total)
U1=$(udp_in)
check "from alice's address: curl to web:8080 gets nothing" not curl_from "${IP4[alice]}"
check "from alice's address: curl to web:9999 gets nothing" not curl_from "${IP4[alice]}" 9999
check "from alice's address: 3 UDP datagrams to web:8080 sent" udp_from "${IP4[alice]}" 8080
check "from alice's address: 3 pings to web get no answer" \
    not nsx db ping -c 3 -i 0.2 -W 1 -I "${IP4[alice]}" "${IP4[web]}"
A2=$(json_at web wireguard.rx_drop_allowedips)
P2=$(acl_dropped_all web)
N2=$(json_at web netstack.tcp_total)
U2=$(udp_in)
info "web: rx_drop_allowedips $A1 -> $A2, policy drops $P1 -> $P2, netstack tcp_total $N1 -> $N2, udp in $U1 -> $U2"
check "web dropped them at allowed-IPs (at least 2 SYNs, 3 datagrams and 3 echo requests)" \
    test "$A2" -ge $((A1 + 8))
check "web's policy drop counters did not move (the filter never saw them)" test "$P2" -eq "$P1"
check "web's netstack got no TCP connection and no UDP datagram" \
    test "$N2" -eq "$N1" -a "$U2" -eq "$U1"
bg_stop web-spoofer
bg_stop spoofer

step "clearing the policy: everything allowed again"
check "policy clear" mc policy clear
check "web -> alice:8080 works once the policy is gone" wait_until 10 fetch_is web alice 8080 "i am alice"
no_policy() { stj bob | grep -Eiq '"policy": *(null|false|\{[^}]*"active": *false)|everything allowed'; }
check "bob's status says no policy" wait_until 5 no_policy || stj bob | head -c 2000
check "web's netmap.json has no filter within 10 s" wait_until 10 not saved_has web '"filter"'

for n in alice bob web; do # db was checked before the spoofer took its key
    check "$n runs as nobody" test "$(ps -o user= -p "$(bg_pid "$n")")" = nobody
    check "$n's log has no sanitizer report" mesh_log_clean "$n"
done
check "mesh-control's log has no sanitizer report" mesh_log_clean control
e2e_finish
