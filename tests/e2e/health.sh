#!/usr/bin/env bash
# Health listeners (issue 17): mesh-control, mesh-relay and two nodes
# (`mesh-proxy up`), every one as nobody and with --health-listen. /livez
# and /readyz answer 200, `mesh-proxy health` exits 0, all three /metrics
# pass `promtool check metrics` (process_* and build info included), and
# the node's counters move with traffic. alpha's /metrics names no peer,
# key or listen address (the default); bravo runs with --metrics-peers and
# has per-peer series labelled peer= and key=. An ephemeral node (charlie)
# stopped while mesh-control does not answer its logout answers /readyz 503
# "not ready: stopping" (and `mesh-proxy health` exits 1) during the logout
# wait, and exits within 3 s + 1 s. Then mesh-control is killed and the
# peer stopped while traffic goes to it: the node's /readyz turns 503 (with
# the reason) and `mesh-proxy health` exits 1 within 60 s; when both come
# back, 200 again.
#
#   lan 198.18.77.0/24 (a bridge), one namespace per host:
#   infra  198.18.77.1  mesh-control :7443 (health :9100),
#                       mesh-relay :8441 (health :9101)
#   alpha  198.18.77.11 mesh-proxy up, SOCKS5 127.0.0.1:1080, health :9090
#   bravo  198.18.77.12 mesh-proxy up, --expose 8080 (a web server on
#                       127.0.0.1:8080), --metrics-peers, health :9090
#   charlie 198.18.77.13 mesh-proxy up --ephemeral, health :9090
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss curl promtool
e2e_tmp_init
e2e_require_mesh_proxy
e2e_mesh_servers # MC, MR (runnable by nobody) and PY
RUN=$E2E_TMP/run
D=$RUN/control
CTL=198.18.77.1:7443
R1=198.18.77.1:8441
declare -A LANIP=([infra]=198.18.77.1 [alpha]=198.18.77.11 [bravo]=198.18.77.12
    [charlie]=198.18.77.13)
declare -A HEALTH=([control]=infra/198.18.77.1:9100 [relay]=infra/198.18.77.1:9101
    [alpha]=alpha/198.18.77.11:9090 [bravo]=bravo/198.18.77.12:9090
    [charlie]=charlie/198.18.77.13:9090)

mc() { nsx_nobody infra "$MC" --data "$D" "$@"; }
mp() { "${AS_NOBODY[@]}" "$MESH_PROXY" "$@"; }
not() { ! "$@"; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }
secs_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# hget WHO PATH [CURL-ARGS...] : "CODE BODY" of GET http://WHO's health/PATH
# (from WHO's own namespace, as a probe would).
hget() {
    local who=$1 path=$2 tag addr
    shift 2
    tag=${HEALTH[$who]%%/*} addr=${HEALTH[$who]#*/}
    nsx "$tag" curl -s --max-time 5 -o "$E2E_TMP/body" -w '%{http_code}' "$@" \
        "http://$addr$path" >"$E2E_TMP/code" 2>/dev/null
    echo "$(cat "$E2E_TMP/code") $(head -c 300 "$E2E_TMP/body" 2>/dev/null)"
}
# code_is WHO PATH CODE [CURL-ARGS...]
code_is() { [ "$(hget "$1" "$2" "${@:4}" | cut -d' ' -f1)" = "$3" ]; }
# metrics WHO : WHO's /metrics into $E2E_TMP/WHO.prom (and the artifacts).
metrics() {
    local tag=${HEALTH[$1]%%/*} addr=${HEALTH[$1]#*/}
    nsx "$tag" curl -sf --max-time 5 -D "$E2E_TMP/$1.hdr" -o "$E2E_TMP/$1.prom" \
        "http://$addr/metrics" && cp "$E2E_TMP/$1.prom" "$E2E_LOGDIR/$1-metrics.txt"
}
# A sample's value: pv FILE 'name{label="v",...}' (labels in any order; a
# sample that is missing prints "none").
write_file "$E2E_TMP/pv.py" <<'EOF'
import re, sys
want = sys.argv[2]
m = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?$', want)
name, labels = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
for line in open(sys.argv[1]):
    if line.startswith("#") or not line.strip():
        continue
    s = re.match(r'([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line.strip())
    if not s or s.group(1) != name:
        continue
    got = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', s.group(2) or ""))
    if all(got.get(k) == v for k, v in labels.items()):
        print(s.group(3))
        sys.exit(0)
print("none")
EOF
pv() { "$PY" "$E2E_TMP/pv.py" "$E2E_TMP/$1.prom" "$2"; }
# gt A B : A > B as numbers (A may be "none": false).
gt() { [ "$1" != none ] && awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }

step "hosts on one LAN: infra (mesh-control, mesh-relay), alpha, bravo"
for h in infra alpha bravo charlie; do
    ns_create "$h"
    ns_lan "$h" "${LANIP[$h]}/24"
done
check "LAN: alpha reaches infra" nsx alpha ping -c 1 -W 2 198.18.77.1 || exit 1

step "a web server on bravo's 127.0.0.1:8080"
mkdir -p "$E2E_TMP/www"
chmod 0755 "$E2E_TMP/www"
random_file "$E2E_TMP/www/page" 1
bg_nobody web bravo "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www"
wait_listen bravo 8080 10 || die "web server on bravo did not start"

step "mesh-control and mesh-relay with --health-listen (as nobody)"
mc init --listen "$CTL" --domain mesh.internal >/dev/null 2>&1 || die "mesh-control init failed"
start_control() {
    bg_nobody control infra "$MC" --data "$D" serve --log-level debug \
        --health-listen "${HEALTH[control]#*/}"
    wait_listen infra 7443 10 || die "mesh-control did not listen"
}
start_control
TOKEN=$(mc token --reusable 2>/dev/null | tail -1)
TR=$(mc token --relay 2>/dev/null | tail -1)
[ "${TR:0:5}" = mesh1 ] || die "no relay token"
bg_nobody relay infra "$MR" up --join "$TR" --state "$RUN/r1" --listen $R1 --region lab \
    --health-listen "${HEALTH[relay]#*/}"
wait_log "$E2E_LOGDIR/relay.log" "registered with mesh-control" 10 || die "the relay did not register"

step "alpha and bravo join with --health-listen"
start_node() { # NAME [ARGS...]
    local n=$1
    shift
    bg_nobody "$n" "$n" "$MESH_PROXY" up --state "$RUN/$n" --log-level debug \
        --health-listen "${HEALTH[$n]#*/}" "$@"
}
start_node alpha --join "$TOKEN" --hostname alpha --socks5 127.0.0.1:1080
start_node bravo --join "$TOKEN" --hostname bravo --expose 8080 --metrics-peers
# charlie: ephemeral (no state directory), its local API at a known path;
# a default route to a router that does not exist, so that portmap probes
# go unanswered (its exit must not wait on them)
nsx charlie ip route add default via 198.18.77.254
bg_nobody charlie charlie "$MESH_PROXY" up --ephemeral --join "$TOKEN" --hostname charlie \
    --api "$RUN/charlie.sock" --log-level debug --health-listen "${HEALTH[charlie]#*/}"
for n in alpha bravo; do
    wait_until 20 mp ip --state "$RUN/$n" || die "$n did not join (see $E2E_LOGDIR/$n.log)"
done
wait_until 20 mp ip --api "$RUN/charlie.sock" || die "charlie did not join (see $E2E_LOGDIR/charlie.log)"
pass "the three nodes joined"

step "1. /livez and /readyz answer 200 on all four; mesh-proxy health exits 0"
for w in control relay alpha bravo; do
    check "$w: /livez 200" code_is $w /livez 200
    if wait_until 15 code_is $w /readyz 200; then
        pass "$w: /readyz 200 ($(hget $w /readyz | cut -d' ' -f2-))"
    else
        fail "$w: /readyz is not 200: $(hget $w /readyz)"
    fi
done
for n in alpha bravo; do
    out=$(mp health --state "$RUN/$n" 2>&1)
    rc=$?
    check "$n: mesh-proxy health exits 0 and says ready ($out)" test "$rc:$out" = "0:ready"
    out=$(mp health --live --state "$RUN/$n" 2>&1)
    check "$n: mesh-proxy health --live exits 0 ($out)" test "$?:$out" = "0:live"
done
r=$(hget alpha /readyz -I)
check "HEAD /readyz: 200, headers only (${r%%$'\r'*})" test "${r:0:4}" = "200 " -a "$(grep -c ready "$E2E_TMP/body")" = 0
check "POST /readyz: 405" code_is alpha /readyz 405 -X POST -d x
check "GET /nope: 404" code_is alpha /nope 404
check "a query string is ignored: /livez?x=1 200" code_is alpha '/livez?x=1' 200

step "2. /metrics of all three programs pass promtool check metrics"
for w in control relay alpha bravo; do
    metrics $w || { fail "$w: GET /metrics failed"; continue; }
    check "$w: /metrics content type is Prometheus text 0.0.4" \
        grep -qi '^content-type: text/plain; version=0.0.4' "$E2E_TMP/$w.hdr"
    if promtool check metrics <"$E2E_TMP/$w.prom" >"$E2E_TMP/$w.lint" 2>&1; then
        pass "$w: promtool check metrics: clean ($(grep -c '^# TYPE' "$E2E_TMP/$w.prom") families, $(grep -vc '^#' "$E2E_TMP/$w.prom") samples)"
    else
        fail "$w: promtool check metrics: $(head -5 "$E2E_TMP/$w.lint" | tr '\n' ' ')"
    fi
done
check "alpha: meshproxy_ready 1" test "$(pv alpha meshproxy_ready)" = 1
check "alpha: meshproxy_control_connected 1" test "$(pv alpha meshproxy_control_connected)" = 1
check "relay: meshrelay_ready 1" test "$(pv relay meshrelay_ready)" = 1
check "control: three nodes online" test "$(pv control meshcontrol_nodes_online)" = 3
for w in control relay alpha; do
    check "$w: process_cpu_seconds_total" not test "$(pv $w process_cpu_seconds_total)" = none
    for f in process_resident_memory_bytes process_virtual_memory_bytes process_open_fds \
        process_max_fds process_start_time_seconds; do
        check "$w: $f" gt "$(pv $w $f)" 0
    done
    check "$w: meshproxy_build_info 1" test "$(pv $w meshproxy_build_info)" = 1
    check "$w: meshproxy_metrics_refused_total or its program's is 0" \
        test "$(grep -E '^mesh[a-z]+_metrics_refused_total ' "$E2E_TMP/$w.prom" | cut -d' ' -f2)" = 0
done
# alpha (default): nothing names the mesh
check "alpha: no per-peer series by default" not grep -q '^meshproxy_peer_' "$E2E_TMP/alpha.prom"
check "alpha: no peer= or key= label" not grep -qE '[{,](peer|key)="' "$E2E_TMP/alpha.prom"
check "alpha: no peer name (bravo) anywhere" not grep -q 'bravo' "$E2E_TMP/alpha.prom"
check "alpha: no listen address in front-end labels" not grep -q '127.0.0.1:1080' "$E2E_TMP/alpha.prom"
check "alpha: meshproxy_network_changes_total is exported" \
    not test "$(pv alpha meshproxy_network_changes_total)" = none
check "alpha: front-ends by kind and index" \
    test "$(pv alpha 'meshproxy_frontend_active_connections{frontend="socks5",index="0"}')" != none
# relay series: never labelled by position (magicsock swap-removes them)
check "alpha: relay totals only (meshproxy_relays_connected 1, no per-relay series)" \
    test "$(pv alpha meshproxy_relays_connected)" = 1
check "alpha: no relay series labelled index=" \
    not grep -qE '^meshproxy_relay_[a-z_]+\{[^}]*index=' "$E2E_TMP/alpha.prom"
check "bravo (--metrics-peers): the relay's series named by relay=, no index=" \
    grep -qE '^meshproxy_relay_connected\{relay="[^"]+",region="lab",home="true"\} 1$' "$E2E_TMP/bravo.prom"
# bravo (--metrics-peers): per-peer series, peer= and key= (8 base64 chars)
check "bravo: per-peer series for alpha, with an 8-character key label" \
    grep -qE '^meshproxy_peer_rx_bytes_total\{peer="alpha",key="[A-Za-z0-9+/]{8}"\} ' "$E2E_TMP/bravo.prom"

step "3. traffic alpha -> bravo through SOCKS5 moves the counters"
down0=$(pv alpha 'meshproxy_frontend_bytes_total{frontend="socks5",dir="down"}')
acc0=$(pv alpha 'meshproxy_frontend_connections_total{frontend="socks5",state="established"}')
rx0=$(pv alpha 'meshproxy_wg_bytes_total{dir="rx"}')
[ "$rx0" = none ] && rx0=0
for i in 1 2 3; do
    nsx_nobody alpha curl -sf --max-time 10 --socks5-hostname 127.0.0.1:1080 \
        -o /dev/null http://bravo:8080/page || fail "fetch $i of http://bravo:8080/page failed"
done
metrics alpha
down1=$(pv alpha 'meshproxy_frontend_bytes_total{frontend="socks5",dir="down"}')
acc1=$(pv alpha 'meshproxy_frontend_connections_total{frontend="socks5",state="established"}')
rx1=$(pv alpha 'meshproxy_wg_bytes_total{dir="rx"}')
check "socks5 bytes down grew by 3 MiB or more ($down0 -> $down1)" gt "$down1" $((down0 + 3 * 1048576 - 1))
check "socks5 established connections grew by 3 ($acc0 -> $acc1)" test "$acc1" = $((acc0 + 3))
check "WireGuard bytes received grew ($rx0 -> $rx1)" gt "$rx1" $((rx0 + 3 * 1048576 - 1))
metrics bravo
check "bravo (--metrics-peers): alpha's last handshake is a unix time" \
    gt "$(pv bravo 'meshproxy_peer_last_handshake_timestamp_seconds{peer="alpha"}')" 1600000000
metrics control
check "control: full maps sent" gt "$(pv control 'meshcontrol_maps_sent_total{kind="full"}')" 0

step "4. charlie (ephemeral) stopped while mesh-control does not answer: 503 stopping"
# mesh-control stopped (SIGSTOP): the connection stays up, the logout goes
# out and nothing answers, so charlie waits its whole logout time.
kill -STOP "$(bg_pid control)"
cpid=$(bg_pid charlie)
t0=$(now_ms)
kill -TERM "$cpid"
if wait_until 3 code_is charlie /readyz 503; then
    pass "charlie: /readyz 503 $(secs_since $t0) s after SIGTERM ($(hget charlie /readyz | cut -d' ' -f2-))"
    check "charlie: the reason is stopping" grep -q "^not ready: stopping" "$E2E_TMP/body"
else
    fail "charlie: /readyz $(hget charlie /readyz) after SIGTERM"
fi
out=$(mp health --api "$RUN/charlie.sock" 2>&1)
check "charlie: mesh-proxy health exits 1 ($out)" test "$?:$out" = "1:not ready: stopping"
while kill -0 "$cpid" 2>/dev/null && [ $(($(now_ms) - t0)) -lt 10000 ]; do sleep 0.05; done
STOP_S=$(secs_since $t0)
check "charlie exited within 3 s of logout wait + 1 s ($STOP_S s)" \
    awk -v s="$STOP_S" 'BEGIN { exit !(s <= 4.0) }'
check "charlie's log: logged out wait, then exited" grep -q "logging out of mesh-control" "$E2E_LOGDIR/charlie.log"
eph=$(grep -o '/tmp/mesh-proxy-eph-[A-Za-z0-9]*' "$E2E_LOGDIR/charlie.log" | head -1)
check "charlie removed its ephemeral state directory (${eph:-none logged})" \
    test -n "$eph" -a ! -e "$eph"
info "charlie's portmap: $(grep -m1 -o 'portmap: .*' "$E2E_LOGDIR/charlie.log")"
kill -CONT "$(bg_pid control)"
bg_stop charlie
# Again, stopped right after it joined, while its portmap probe still waits
# on the silent router: the logout is answered and the probe adds at most
# PM_EXIT_WAIT_MS (0.5 s).
bg_nobody charlie charlie "$MESH_PROXY" up --ephemeral --join "$TOKEN" --hostname charlie \
    --api "$RUN/charlie.sock" --log-level debug --health-listen "${HEALTH[charlie]#*/}"
wait_until 20 mp ip --api "$RUN/charlie.sock" || fail "charlie did not join again"
cpid=$(bg_pid charlie)
t0=$(now_ms)
kill -TERM "$cpid"
while kill -0 "$cpid" 2>/dev/null && [ $(($(now_ms) - t0)) -lt 10000 ]; do sleep 0.05; done
STOP2_S=$(secs_since $t0)
check "charlie, stopped mid portmap probe, exited within 1 s ($STOP2_S s)" \
    awk -v s="$STOP2_S" 'BEGIN { exit !(s <= 1.0) }'
info "charlie's portmap at exit: $(grep -o 'portmap: the router.*' "$E2E_LOGDIR/charlie.log" | tail -1)"
bg_stop charlie

step "5. mesh-control killed, bravo stopped, traffic to bravo: alpha turns not ready"
# Traffic to bravo keeps WireGuard asking for a handshake nobody answers.
write_file "$E2E_TMP/poke.sh" <<EOF
while :; do
    curl -s --max-time 2 --socks5-hostname 127.0.0.1:1080 -o /dev/null http://bravo:8080/page
    sleep 1
done
EOF
bg_stop bravo
kill -KILL "$(bg_pid control)" 2>/dev/null
bg_stop control
t0=$(now_ms)
bg_nobody poke alpha bash "$E2E_TMP/poke.sh"
if wait_until 60 code_is alpha /readyz 503; then
    DOWN_S=$(secs_since $t0)
    pass "alpha: /readyz 503 $DOWN_S s after mesh-control and bravo went away"
    info "alpha: $(hget alpha /readyz | cut -d' ' -f2-)"
    check "the reason names mesh-control and the peers" \
        grep -q "not ready: mesh-control unreachable .* and no peer answered" "$E2E_TMP/body"
else
    fail "alpha: /readyz still $(hget alpha /readyz) 60 s after mesh-control and bravo went away"
fi
out=$(mp health --state "$RUN/alpha" 2>&1)
rc=$?
check "alpha: mesh-proxy health exits 1 with one line ($out)" \
    test "$rc:$(echo "$out" | wc -l):${out:0:10}" = "1:1:not ready:"
check "alpha: mesh-proxy health --live still exits 0" mp health --live --state "$RUN/alpha"
check "alpha: /livez still 200" code_is alpha /livez 200
metrics alpha
check "alpha: meshproxy_ready 0" test "$(pv alpha meshproxy_ready)" = 0
check "alpha: meshproxy_control_connected 0" test "$(pv alpha meshproxy_control_connected)" = 0

step "6. mesh-control and bravo back: alpha ready again"
t0=$(now_ms)
start_control
start_node bravo
if wait_until 40 code_is alpha /readyz 200; then
    UP_S=$(secs_since $t0)
    pass "alpha: /readyz 200 again $UP_S s after both came back"
else
    fail "alpha: /readyz still $(hget alpha /readyz) 40 s after both came back"
fi
check "alpha: mesh-proxy health exits 0 again" mp health --state "$RUN/alpha"
bg_stop poke

step "7. nothing ran as root"
for n in control relay alpha bravo; do
    pid=$(bg_pid "$n")
    [ -n "$pid" ] || { fail "$n is not running"; continue; }
    check "$n runs as nobody" test "$(ps -o user= -p "$pid")" = nobody
done
for n in control relay alpha bravo charlie; do
    check "no sanitizer report in $n's log" mesh_log_clean $n
done
info "timings: not ready ${DOWN_S:-never} s after the outage, ready ${UP_S:-never} s after the return; charlie exited ${STOP_S:-?} s after SIGTERM (logout unanswered), ${STOP2_S:-?} s (answered, portmap probing)"

e2e_finish
