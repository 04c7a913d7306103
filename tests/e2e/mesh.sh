#!/usr/bin/env bash
# A mesh made by mesh-control (issue 4's proof), every program as nobody.
#
#   lan 198.18.60.0/24 (a bridge), one namespace per host:
#   ctl      198.18.60.1   mesh-control serve on :7443
#   alpha    198.18.60.11  mesh-proxy up; SOCKS5 127.0.0.1:1080; --expose 8080;
#                           UDP forward 127.0.0.1:5353 -> 100.100.100.100:53
#   bravo    198.18.60.12  mesh-proxy up; SOCKS5 127.0.0.1:1080; --expose 8080
#   charlie  198.18.60.13  mesh-proxy up; SOCKS5 127.0.0.1:1080, HTTP proxy
#                           127.0.0.1:3128; --expose all
#   delta    198.18.60.14  joins later with a single-use token;
#                           --expose 8080,9000:pp2 (a PROXY v2 reader on 9000)
#   echo     198.18.60.15  later nodes (eph: no --expose at all)
# Every host runs a web server on 127.0.0.1:8080 saying its name, and bravo
# and charlie a "secret" one on 127.0.0.1:9999; http://NAME:8080/ through
# any node's SOCKS5 reaches NAME's server because NAME exposes 8080.
#
# No node is an open exit (the review's C1): what a node does not expose is
# unreachable, a node's own SOCKS5 is never exposed (not even with --expose
# all), exposed connections are logged by peer name and counted, and Direct
# never reaches the host's loopback or the metadata address.
#
# Checks: three nodes join by token and reach each other by name and by
# full name; MagicDNS answers A, AAAA and NXDOMAIN at 100.100.100.100; a
# fourth node joins and the others see it within a second (measured);
# removing it drops it from the maps and makes it unreachable; traffic
# keeps flowing while mesh-control is down, also to a node restarted from
# its state meanwhile; after restarting mesh-control and every node the
# addresses and names are the same; netmap.json is written at the first
# map, at most once a minute after, and at exit; bad input (garbage, a huge frame
# length, a wrong server key, revoked / expired / spent auth keys) is
# refused clearly, nothing crashes and no node is half-added.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss dig curl
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
CTL=198.18.60.1:7443
NODES=(alpha bravo charlie)
declare -A LANIP=([ctl]=198.18.60.1 [alpha]=198.18.60.11 [bravo]=198.18.60.12
    [charlie]=198.18.60.13 [delta]=198.18.60.14 [echo]=198.18.60.15)

mc() { nsx_nobody ctl "$MC" --data "$D" "$@"; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }
not() { ! "$@"; }
# hms_to_s "12:34:56.789" -> seconds since midnight (UTC, as the logs)
hms_to_s() { echo "$1" | awk -F: '{ printf "%.3f", $1 * 3600 + $2 * 60 + $3 }'; }
now_hms_s() { date -u +%H:%M:%S.%N | cut -c1-12 | awk -F: '{ printf "%.3f", $1 * 3600 + $2 * 60 + $3 }'; }

step "hosts on one LAN: ctl and three nodes"
for h in ctl alpha bravo charlie delta echo; do
    ns_create "$h"
    ns_lan "$h" "${LANIP[$h]}/24"
done
check "LAN: alpha reaches ctl" nsx alpha ping -c 1 -W 2 198.18.60.1 || exit 1

step "web servers (127.0.0.1:8080 on every host, saying the host's name)"
for h in alpha bravo charlie delta echo; do
    mkdir -p "$E2E_TMP/www-$h"
    echo "i am $h" | write_file "$E2E_TMP/www-$h/index.html"
    chmod 0755 "$E2E_TMP/www-$h"
    bg_nobody "web-$h" "$h" "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www-$h"
done
for h in alpha bravo charlie delta echo; do
    wait_listen "$h" 8080 10 || die "web server on $h did not start"
done
for h in bravo charlie; do
    mkdir -p "$E2E_TMP/secret-$h"
    echo "secret of $h" | write_file "$E2E_TMP/secret-$h/index.html"
    chmod 0755 "$E2E_TMP/secret-$h"
    bg_nobody "secret-$h" "$h" "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 9999 "$E2E_TMP/secret-$h"
    wait_listen "$h" 9999 10 || die "secret server on $h did not start"
done
bg_nobody pp2-delta delta "$PY" "$E2E_DIR/pp2_server.py" 127.0.0.1 9000

step "mesh-control init and serve (as nobody)"
check "init" mc init --listen "$CTL" --domain mesh.internal
start_control() {
    # the admin API is reached from other namespaces: not loopback
    bg_nobody control ctl "$MC" --data "$D" serve --log-level debug --allow-pending \
        --admin-listen 198.18.60.1:7444 --admin-insecure --ephemeral-timeout 2s
    wait_listen ctl 7443 10 || { tail "$E2E_LOGDIR/control.log"; die "mesh-control serve did not listen"; }
}
start_control
check "mesh-control runs as nobody" test "$(ps -o user= -p "$(bg_pid control)")" = nobody
TOKEN=$(mc token --reusable --expiry 1h) || die "mesh-control token failed"
check "the token is one mesh1 string" bash -c "[[ '$TOKEN' == mesh1* ]]"

# start_node NAME [EXTRA...] : mesh-proxy up in namespace NAME, state in
# $RUN/NAME, SOCKS5 on 127.0.0.1:1080 there; hostname NAME (or $HN, then
# also the state directory's name); --expose as EXPOSE_OF says (8080 if
# unlisted; - for no --expose at all).
declare -A EXPOSE_OF=([charlie]=all [delta]="8080,9000:pp2" [eph]=-)
start_node() {
    local n=$1 x
    shift
    x=${EXPOSE_OF[${HN:-$n}]:-8080}
    local xa=()
    [ "$x" = - ] || xa=(--expose "$x")
    bg_nobody "$n" "$n" "$MESH_PROXY" up --state "$RUN/${HN:-$n}" --hostname "${HN:-$n}" \
        --socks5 127.0.0.1:1080 --log-level debug "${xa[@]}" "$@"
}
joined() { mp ip --state "$RUN/$1" >/dev/null 2>&1; }
wait_joined() {
    wait_until "${2:-20}" joined "$1" || { tail -n 20 "$E2E_LOGDIR/$1.log"; return 1; }
}
# fetch FROM TO-HOST : curl http://TO-HOST:8080/ through FROM's SOCKS5
fetch() {
    nsx "$1" curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1080 "http://$2:8080/"
}
fetch_is() { # FROM TO-HOST WANT
    local got
    got=$(fetch "$1" "$2" 2>&1)
    [ "$got" = "$3" ] || { echo "from $1 to $2: got '$got', wanted '$3'"; return 1; }
}
fetch_eventually() { wait_until "${4:-10}" fetch_is "$1" "$2" "$3"; }

write_file "$E2E_TMP/alpha-extra.conf" <<EOF
[UDPClientTunnel]
BindAddress = 127.0.0.1:5353
Target = 100.100.100.100:53
EOF

step "alpha, bravo and charlie join with the token"
start_node alpha --join "$TOKEN" --config "$E2E_TMP/alpha-extra.conf"
start_node bravo --join "$TOKEN"
start_node charlie --join "$TOKEN" --http-proxy 127.0.0.1:3128
for n in "${NODES[@]}"; do
    check "$n joined" wait_joined "$n" || die "$n did not join"
done
declare -A IP4 IP6
for n in "${NODES[@]}"; do
    IP4[$n]=$(mp ip -4 --state "$RUN/$n")
    IP6[$n]=$(mp ip -6 --state "$RUN/$n")
    info "$n: ${IP4[$n]} ${IP6[$n]}"
done
check "addresses in 100.64.0.0/10 and distinct" bash -c "
    for a in ${IP4[alpha]} ${IP4[bravo]} ${IP4[charlie]}; do [[ \$a == 100.* ]] || exit 1; done
    [ \$(printf '%s\n' ${IP4[alpha]} ${IP4[bravo]} ${IP4[charlie]} | sort -u | wc -l) = 3 ]"
check "state files are 0600 and the directory 0700" bash -c "
    [ \$(stat -c %a '$RUN/alpha') = 700 ] &&
    for f in '$RUN/alpha'/*; do [ -S \"\$f\" ] && continue; [ \$(stat -c %a \"\$f\") = 600 ] || { echo \"\$f\"; exit 1; }; done"
check "no state file holds the auth key" not grep -rqF mkey- "$RUN/alpha" "$RUN/bravo"
check "nodes run as nobody" test "$(ps -o user= -p "$(bg_pid alpha)")" = nobody

step "every node reaches every other by name through its SOCKS5"
for a in "${NODES[@]}"; do
    for b in "${NODES[@]}"; do
        [ "$a" = "$b" ] && continue
        check "$a -> http://$b:8080/" fetch_eventually "$a" "$b" "i am $b" 15
    done
done
check "alpha -> http://charlie.mesh.internal:8080/ (full name)" fetch_is alpha charlie.mesh.internal "i am charlie"
check "alpha -> http://${IP4[bravo]}:8080/ (address)" fetch_is alpha "${IP4[bravo]}" "i am bravo"
check "alpha -> http://[${IP6[bravo]}]:8080/ (IPv6)" fetch_is alpha "[${IP6[bravo]}]" "i am bravo"

step "no node is a hop: expose is explicit, own proxies never exposed, Direct never loopback"
# fetch_port FROM HOST PORT : curl http://HOST:PORT/ through FROM's SOCKS5
fetch_port() { nsx "$1" curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1080 "http://$2:$3/"; }
check "alpha -> bravo:9999 refused (bravo exposes 8080 only)" not fetch_port alpha bravo 9999
check "alpha -> charlie:9999 reached (charlie: --expose all, explicit)" \
    test "$(fetch_port alpha charlie 9999)" = "secret of charlie"
# socks_code FROM HOST PORT WANT : FROM's SOCKS5 answers CONNECT HOST:PORT with WANT
# (0 would mean a connection was made; 5 is "refused" from the far node)
socks_code() { nsx_nobody "$1" timeout 60 $PY "$E2E_DIR/hostile.py" socks-code 1080 "$2" "$3" "$4" 20; }
check "alpha -> charlie:1080 refused (05): a node's own SOCKS5 is never exposed, even with all" \
    socks_code alpha charlie 1080 5
check "alpha -> charlie:3128 refused (05): nor its HTTP proxy" socks_code alpha charlie 3128 5
check "charlie counted the refusals as denied" \
    test "$(mp status --json --state "$RUN/charlie" | python3 -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["expose"]["denied"])')" -ge 2
check "alpha -> bravo:1080 refused (05): bravo's SOCKS5 is no hop" socks_code alpha bravo 1080 5
check "charlie warned at start that it exposes all" \
    grep -q "expose: all: every mesh peer reaches every TCP port" "$E2E_LOGDIR/charlie.log"
check "charlie logged alpha's exposed connection by name" \
    grep -Eq "expose: alpha \(${IP4[alpha]//./\\.}\) -> 127\.0\.0\.1:9999" "$E2E_LOGDIR/charlie.log"
exposed_from() { # NODE PEER : the count NODE's status gives PEER's exposed connections
    mp status --json --state "$RUN/$1" | python3 -c '
import json, sys
for p in json.load(sys.stdin)["mesh"]["peers"]:
    if p["name"] == sys.argv[1]: print(p["exposed_conns"])' "$2"
}
check "charlie counts alpha's exposed connections (>= 2)" test "$(exposed_from charlie alpha)" -ge 2
check "Direct: alpha's SOCKS5 refuses alpha's own 127.0.0.1:8080 (02, not allowed)" \
    socks_code alpha 127.0.0.1 8080 2
check "Direct: and alpha's own LAN address 198.18.60.11:8080 (02)" \
    socks_code alpha 198.18.60.11 8080 2
check "Direct: and the metadata address 169.254.169.254 (02)" socks_code alpha 169.254.169.254 80 2
check "Direct: alpha's SOCKS5 reaches a LAN host (mesh-control's admin API says 401)" \
    test "$(nsx alpha curl -s -o /dev/null -w '%{http_code}' --max-time 10 \
        --socks5-hostname 127.0.0.1:1080 http://198.18.60.1:7444/api/v1/nodes)" = 401

step "settings stick: bravo restarted without any flag keeps its SOCKS5 and expose"
bg_term_status bravo 10
bg_nobody bravo bravo "$MESH_PROXY" up --state "$RUN/bravo" --log-level debug
check "bravo resumed" wait_joined bravo
check "bravo's SOCKS5 is back on 127.0.0.1:1080 without --socks5" wait_listen bravo 1080 10
check "alpha -> bravo:8080: still exposed without --expose" fetch_eventually alpha bravo "i am bravo" 15
check "alpha -> bravo:9999: still not exposed" not fetch_port alpha bravo 9999
check "bravo keeps its settings in prefs.json (mode 0600)" \
    test "$(stat -c %a "$RUN/bravo/prefs.json")" = 600

step "MagicDNS at 100.100.100.100 (through alpha's UDP forward)"
dig_short() { nsx alpha dig +short +time=2 +tries=2 -p 5353 @127.0.0.1 "$@"; }
check "A bravo.mesh.internal" test "$(dig_short bravo.mesh.internal A)" = "${IP4[bravo]}"
check "A charlie (bare name)" test "$(dig_short charlie A)" = "${IP4[charlie]}"
check "AAAA bravo.mesh.internal" test "$(dig_short bravo.mesh.internal AAAA)" = "${IP6[bravo]}"
nxdomain() { nsx alpha dig +time=2 +tries=2 -p 5353 @127.0.0.1 "$1" A | grep -q NXDOMAIN; }
check "NXDOMAIN for nope.mesh.internal" nxdomain nope.mesh.internal

step "status shows the peers"
status_has() { # NODE REGEX...
    local out
    out=$(mp status --state "$RUN/$1") || return 1
    echo "$out"
    shift
    for re in "$@"; do echo "$out" | grep -Eq -- "$re" || return 1; done
}
check "alpha's status names bravo and charlie" status_has alpha bravo charlie
mp status --json --state "$RUN/alpha" >"$E2E_TMP/alpha-status.json" 2>&1
check "status --json parses" python3 -m json.tool "$E2E_TMP/alpha-status.json"

step "delta joins with a single-use token; the others learn it (measured)"
TOKEN1=$(mc token) || die "mesh-control token failed"
sees() { mp status --json --state "$RUN/$1" 2>/dev/null | grep -q "\"$2\""; }
log_mark_a=$(log_mark "$E2E_LOGDIR/alpha.log")
start_node delta --join "$TOKEN1"
T1=""
for _ in $(seq 400); do
    if sees alpha delta; then T1=$(now_hms_s); break; fi
    sleep 0.02
done
check "delta joined" wait_joined delta
IP4_DELTA=$(mp ip -4 --state "$RUN/delta")
JOIN_LINE=$(grep -m1 -E "joined" "$E2E_LOGDIR/delta.log" | awk '{print $1}')
if [ -n "$T1" ] && [ -n "$JOIN_LINE" ]; then
    T0=$(hms_to_s "$JOIN_LINE")
    LAT=$(awk -v a="$T0" -v b="$T1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
    info "delta registered at $JOIN_LINE; alpha's map had it $LAT ms later (status polled every 20 ms)"
    echo "delta_latency_ms=$LAT" >>"$E2E_LOGDIR/measurements.txt"
    check "alpha learned delta within 1 s (${LAT} ms)" test "$LAT" -lt 1000
else
    fail "alpha never listed delta (T1='$T1', join line '$JOIN_LINE')"
fi
check "bravo lists delta" wait_until 5 sees bravo delta
check "alpha -> delta by name" fetch_eventually alpha delta "i am delta" 15
check "delta -> charlie by name" fetch_eventually delta charlie "i am charlie" 15
check "delta's --expose 9000:pp2: the service reads alpha's mesh address in a PROXY v2 header" \
    pp2_says alpha delta 9000 "${IP4[alpha]}" "$IP4_DELTA"

step "the single-use token cannot join a second machine"
bg_nobody echo-spent echo "$MESH_PROXY" up --state "$RUN/echo-spent" --hostname echo --join "$TOKEN1"
bg_wait echo-spent 20
RC=$?
check "exit status 1 (got $RC)" test "$RC" = 1
check "says the key was used" grep -Eiq "used|spent" "$E2E_LOGDIR/echo-spent.log"

step "remove delta: dropped from maps, unreachable"
check "mesh-control nodes remove delta" mc nodes remove delta
check "alpha's map drops delta" wait_until 5 not sees alpha delta
check "charlie's map drops delta" wait_until 5 not sees charlie delta
check "alpha can no longer reach delta's address" not fetch alpha "$IP4_DELTA"
bg_wait delta 30
RC=$?
check "delta's node exits 1 after removal (got $RC)" test "$RC" = 1
check "delta's log says it was removed" grep -Eiq "removed|not known|unknown" "$E2E_LOGDIR/delta.log"

step "the removed node starts again from its old state: refused, it cannot queue itself for approval"
start_node delta
bg_wait delta 30
RC=$?
check "delta exits 1 (got $RC)" test "$RC" = 1
check "delta's log says it was removed and how to join again" \
    grep -Eq "was removed.*--join TOKEN" "$E2E_LOGDIR/delta.log"
nothing_pending() { ! mc nodes list 2>&1 | grep -q pending; }
check "nothing waits for approval" nothing_pending

step "the reusable token it joined with does not undo the removal"
start_node delta --join "$TOKEN"
bg_wait delta 30
RC=$?
check "delta exits 1 with the old reusable token (got $RC)" test "$RC" = 1
check "delta's log asks for a key created after the removal" \
    grep -Eq "created after the removal" "$E2E_LOGDIR/delta.log"

step "with a new token, the removed node joins again as a new node"
TOKEN_NEW=$(mc token) || die "mesh-control token failed"
start_node delta --join "$TOKEN_NEW"
check "delta restarts itself on the new address it was given" wait_log "$E2E_LOGDIR/delta.log" "new addresses" 10
new_ip_delta() { local a; a=$(mp ip -4 --state "$RUN/delta") && [ -n "$a" ] && [ "$a" != "$IP4_DELTA" ]; }
check "delta's new address differs from the old" wait_until 10 new_ip_delta
check "delta is back in alpha's map" wait_until 10 sees alpha delta
check "alpha -> delta by name again" fetch_eventually alpha delta "i am delta" 15
check "remove delta again" mc nodes remove delta
bg_wait delta 30
check "delta stops again" test $? = 1

step "mesh-control down: the data plane keeps working"
bg_stop control
check "alpha -> bravo with mesh-control stopped" fetch_is alpha bravo "i am bravo"
bg_stop bravo
start_node bravo
check "bravo restarted from its state (no token)" wait_joined bravo
check "alpha -> bravo after bravo's restart, control still down" fetch_eventually alpha bravo "i am bravo" 20
check "bravo -> charlie, control still down" fetch_eventually bravo charlie "i am charlie" 20

step "restart mesh-control and every node: same addresses and names"
start_control
for n in "${NODES[@]}"; do bg_stop "$n"; done
ALPHA_MARK=$(log_mark "$E2E_LOGDIR/alpha.log") # alpha's last run starts here
for n in "${NODES[@]}"; do start_node "$n"; done
for n in "${NODES[@]}"; do
    check "$n back" wait_joined "$n"
    check "$n keeps ${IP4[$n]}" test "$(mp ip -4 --state "$RUN/$n")" = "${IP4[$n]}"
    check "$n keeps ${IP6[$n]}" test "$(mp ip -6 --state "$RUN/$n")" = "${IP6[$n]}"
done
names() { mc nodes list --json | python3 -c 'import json,sys; print(" ".join(sorted(n["name"] for n in json.load(sys.stdin))))'; }
check "names unchanged in mesh-control" test "$(names)" = "alpha bravo charlie"
check "alpha -> charlie after the restarts" fetch_eventually alpha charlie "i am charlie" 20
check "charlie -> bravo after the restarts" fetch_eventually charlie bravo "i am bravo" 20
# Nodes restarted together send their first handshake initiations at the
# same moment; when two cross, each answers the other's and drops its own,
# and the pair waits for WireGuard's 5 s retransmit (as wireguard-go does).
check "alpha -> bravo after the restarts" fetch_eventually alpha bravo "i am bravo" 20
control_online() { mp status --json --state "$RUN/alpha" | python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(0 if j["mesh"]["control"]["state"] == "online" else 1)'; }
check "alpha's control connection is online again" wait_until 20 control_online

step "the HTTP admin API (API key; rename a node, the others follow)"
SECRET=$(mc apikeys create e2e 2>/dev/null) || die "apikeys create failed"
api() { # METHOD PATH [BODY] : curl from alpha's host; prints the HTTP code last
    local m=$1 path=$2
    shift 2
    nsx alpha curl -sS --max-time 5 -X "$m" -H "Authorization: Bearer $SECRET" \
        -w '\n%{http_code}' ${1:+--data "$1"} "http://198.18.60.1:7444$path"
}
http_code() { tail -n 1; }
check "no API key: 401" test "$(nsx alpha curl -s -o /dev/null -w '%{http_code}' http://198.18.60.1:7444/api/v1/nodes)" = 401
check "a wrong API key: 401" test "$(nsx alpha curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer mapi-1-0000' http://198.18.60.1:7444/api/v1/nodes)" = 401
api GET /api/v1/nodes >"$E2E_TMP/api-nodes.txt"
check "GET /api/v1/nodes: 200 and three nodes" python3 -c "
import json,sys; t=open('$E2E_TMP/api-nodes.txt').read().rsplit('\n',1)
assert t[1].strip()=='200', t[1]; j=json.loads(t[0]); assert sorted(n['name'] for n in j)==['alpha','bravo','charlie'], j"
check "POST rename bravo -> db: 200" test "$(api POST /api/v1/nodes/bravo/rename '{"name":"db"}' | http_code)" = 200
check "alpha's map has the new name within 2 s" wait_until 2 sees alpha db
check "alpha reaches bravo by its new name db" fetch_is alpha db "i am bravo"
check "rename to a taken name: 409" test "$(api POST /api/v1/nodes/db/rename '{"name":"charlie"}' | http_code)" = 409
check "POST rename db -> bravo: 200" test "$(api POST /api/v1/nodes/db/rename '{"name":"bravo"}' | http_code)" = 200
check "alpha's map has the old name back" wait_until 2 sees alpha bravo
check "alpha reaches bravo by name again" fetch_is alpha bravo "i am bravo"

step "bad input to mesh-control"
N_NODES=$(mc nodes list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
nsx echo python3 - 198.18.60.1 7443 <<'EOF' >"$E2E_LOGDIR/garbage.log" 2>&1
import os, socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
def send(data, wait=True):
    s = socket.create_connection((host, port), timeout=5)
    try:
        s.sendall(data)
        if wait:
            s.settimeout(5)
            try:
                while s.recv(4096):
                    pass
            except (socket.timeout, ConnectionResetError):
                pass
    finally:
        s.close()
for i in range(50):
    send(os.urandom(1 + i * 37))
send(struct.pack(">I", 0xFFFFFFF0) + b"x" * 100)       # huge frame length
send(struct.pack(">I", 0))                             # zero length
send(struct.pack(">I", 97) + b"\x01" + os.urandom(96))  # HS1 full of junk
send(struct.pack(">I", 5) + b"\x02abcd")               # HS2 from a client
print("sent")
EOF
check "garbage sent" grep -q sent "$E2E_LOGDIR/garbage.log"
check "mesh-control still serving" bg_alive control
check "alpha -> bravo still works" fetch_is alpha bravo "i am bravo"

# A token carrying another mesh's server key, pointing at this server.
check "second mesh init (a different server key)" nsx_nobody ctl "$MC" --data "$RUN/other" init --listen "$CTL"
OTHER=$(nsx_nobody ctl "$MC" --data "$RUN/other" token) || die "second token failed"
bg_nobody echo-wrongkey echo "$MESH_PROXY" up --state "$RUN/echo-wk" --hostname echo --join "$OTHER"
check "a wrong server key is reported" wait_log "$E2E_LOGDIR/echo-wrongkey.log" "server key" 15
bg_stop echo-wrongkey

TOK_REV=$(mc token) || die "token failed"
KREV=$(mc keys list --json | python3 -c 'import json,sys; print(max(k["id"] for k in json.load(sys.stdin)))')
check "keys revoke $KREV" mc keys revoke "$KREV"
bg_nobody echo-revoked echo "$MESH_PROXY" up --state "$RUN/echo-rev" --hostname echo --join "$TOK_REV"
bg_wait echo-revoked 20
RC=$?
check "a revoked key: exit 1 (got $RC)" test "$RC" = 1
check "a revoked key: says so" grep -Eiq "revoked" "$E2E_LOGDIR/echo-revoked.log"
TOK_EXP=$(mc token --expiry 1s) || die "token --expiry failed"
sleep 2
bg_nobody echo-expired echo "$MESH_PROXY" up --state "$RUN/echo-exp" --hostname echo --join "$TOK_EXP"
bg_wait echo-expired 20
RC=$?
check "an expired key: exit 1 (got $RC)" test "$RC" = 1
check "an expired key: says so" grep -Eiq "expired" "$E2E_LOGDIR/echo-expired.log"
N_AFTER=$(mc nodes list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
check "no node was added by bad input ($N_NODES -> $N_AFTER)" test "$N_NODES" = "$N_AFTER"

step "an ephemeral node is removed soon after it goes offline"
TOK_EPH=$(mc token --ephemeral) || die "token --ephemeral failed"
HN=eph start_node echo --join "$TOK_EPH"
check "eph joined" wait_joined eph
check "alpha lists eph" wait_until 5 sees alpha eph
check "eph was started without --expose: nothing exposed, alpha -> eph:8080 refused" \
    not fetch_port alpha eph 8080
check "eph's log says it exposes nothing" grep -q "expose: none" "$E2E_LOGDIR/echo.log"
bg_stop echo
check "eph dropped from alpha's map after it went offline" wait_until 15 not sees alpha eph
if mc nodes list | grep -qw eph; then fail "eph still listed by mesh-control"; else pass "eph no longer listed by mesh-control"; fi

step "a node that asks to be called localhost is not: reserved names never come from the mesh"
HN=localhost start_node echo --join "$TOKEN"
check "it joined" wait_joined localhost
named() { mc nodes list | grep -qw "$1"; }
check "mesh-control named it localhost-node" wait_until 5 named localhost-node
check "alpha lists localhost-node" wait_until 5 sees alpha localhost-node
check "alpha -> http://localhost:8080/ is not the peer (refused by Direct: 02)" \
    socks_code alpha localhost 8080 2
check "alpha -> localhost-node by name reaches it" fetch_eventually alpha localhost-node "i am echo" 15
bg_stop echo

step "a token without an auth key: the node waits for an admin's approval"
TOK_NOKEY=$(mc token --no-key) || die "token --no-key failed"
HN=pend start_node echo --join "$TOK_NOKEY"
check "pend says it waits for approval" wait_log "$E2E_LOGDIR/echo.log" "approv" 10
check "pend has no mesh address yet" not joined pend
check "alpha does not list pend" not sees alpha pend
pending_listed() { mc nodes list | grep -Eq 'pend.*pending approval'; }
check "mesh-control lists pend as pending approval" pending_listed
check "nodes approve pend (a bare name) approves nothing" not mc nodes approve pend
PKEY=$(grep -o 'approve pend --key [0-9a-f]\{16\}' "$E2E_LOGDIR/echo.log" | head -n 1 | awk '{print $4}')
check "pend printed its key ($PKEY)" test -n "$PKEY"
check "nodes approve pend --key KEY" mc nodes approve pend --key "$PKEY"
check "pend joined after approval" wait_joined pend 10
check "alpha lists pend" wait_until 5 sees alpha pend
check "alpha -> pend by name" fetch_eventually alpha pend "i am echo" 15
bg_stop echo

step "clean shutdown"
for n in "${NODES[@]}"; do
    bg_term_status "$n" 10
    check "$n exits 0 on SIGTERM" test "$BG_STATUS" = 0
done
bg_term_status control 10
check "mesh-control exits 0 on SIGTERM" test "$BG_STATUS" = 0

step "netmap.json (a cache): written after the first map, then at most once a minute, and at exit"
# alpha's last run saw many map changes (a rename, eph, localhost, pend) in
# less than a minute; before, every change was written within 2 s.
netmap_writes() { tail -n "+$((ALPHA_MARK + 1))" "$E2E_LOGDIR/alpha.log" | grep "netmap.json written" | awk '{print $1}'; }
netmap_writes >"$E2E_TMP/alpha-netmap-writes"
info "alpha's netmap.json writes in its last run: $(tr '\n' ' ' <"$E2E_TMP/alpha-netmap-writes")"
netmap_spaced() { # every write but the one at exit is a minute after the one before
    python3 - "$E2E_TMP/alpha-netmap-writes" <<'PY'
import sys
t = []
for line in open(sys.argv[1]):
    h, m, s = line.strip().split(":")
    t.append(int(h) * 3600 + int(m) * 60 + float(s))
if len(t) < 2:
    sys.exit("fewer than 2 writes (the first map, the exit)")
gaps = [(b - a) % 86400 for a, b in zip(t[:-2], t[1:-1])]  # past midnight too
if any(g < 59 for g in gaps):
    sys.exit("writes %s s apart" % ["%.1f" % g for g in gaps])
PY
}
check "alpha wrote netmap.json at its first map and at exit, and at most once a minute between" netmap_spaced
check "alpha's netmap.json has the last node that joined (pend), written at exit" grep -q '"pend"' "$RUN/alpha/netmap.json"
e2e_finish
