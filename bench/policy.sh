#!/usr/bin/env bash
# bench/policy.sh BUILD_DIR [--quick] [--runs N] [--secs S]
#
# What an access policy costs on the data path: two nodes joined through
# mesh-control, A forwards 127.0.0.1:15301 -> B:5201 (iperf3) and
# 127.0.0.1:15302 -> B:5202 (tcpbench.py's echo server); B exposes both.
# The same processes are measured with no policy and with a 1,000-rule
# policy (999 rules for other groups and tags, the rule that lets A in
# last), switching with `mesh-control policy set` / `policy clear` between
# runs, so both sides see the same machine state in turns:
#   tput_up, tput_down   iperf3 one stream, Mbit/s (B's filter sees every
#                        segment; a new connection's SYN is looked up)
#   conn_rate            new connections a second through the forward (each
#                        a SYN through B's filter, one byte echoed, closed)
# Writes bench/results/policy.md (or $BENCH_RESULTS/policy.md): every run,
# the medians and the ratio policy / none. No record for latest.md.
set -u
E2E_NAME=bench-policy
. "$(dirname "$0")/lib.sh"

bench_args "$@"
e2e_require_cmd ip iperf3 setpriv ss
MC=$MESH_BUILD/mesh-control
[ -x "$MC" ] || die "no $MC: build first (make)"
if ! "${AS_NOBODY[@]}" test -x "$MC" 2>/dev/null; then
    e2e_nobody_copy "$MC"
    MC=$E2E_COPY
fi
OUT=${BENCH_RESULTS:-$E2E_ROOT/bench/results}/policy.md
mkdir -p "$(dirname "$OUT")"
CONNS=400
[ "$QUICK" = 1 ] && CONNS=50
D=$E2E_TMP/run/control
mc() { nsx_nobody ctl "$MC" --data "$D" "$@"; }

ns_create ctl
ns_create A
ns_create B
ns_lan ctl 198.18.63.1/24
ns_lan A 198.18.63.11/24
ns_lan B 198.18.63.12/24

mc init --listen 198.18.63.1:7443 >/dev/null || die "mesh-control init failed"
bg_nobody control ctl "$MC" --data "$D" serve
wait_listen ctl 7443 10 || die "mesh-control did not listen"
mc users create bench >/dev/null && mc users create ops >/dev/null || die "users create failed"

# The 1,000-rule policy: 100 groups of 10 users, 999 rules from those groups
# to other tags' ports, and last the rule for user bench -> tag:srv.
python3 - "$E2E_TMP/p1000.hujson" <<'PY'
import sys
g = {f"group:g{i}": [f"u{i}x{j}@" for j in range(10)] for i in range(100)}
owners = {f"tag:t{i}": ["ops@"] for i in range(100)}
owners["tag:srv"] = ["ops@"]
acls = [{"action": "accept", "src": [f"group:g{i % 100}"],
         "dst": [f"tag:t{i % 100}:{1000 + i}"]} for i in range(999)]
acls.append({"action": "accept", "src": ["bench@"], "dst": ["tag:srv:5201,5202"]})
import json
with open(sys.argv[1], "w") as f:
    json.dump({"groups": g, "tagOwners": owners, "acls": acls}, f, indent=1)
PY
chmod 0644 "$E2E_TMP/p1000.hujson"
# the tag must be owned when the token is made: set the policy first
mc policy set "$E2E_TMP/p1000.hujson" >/dev/null || die "policy set failed"
TA=$(mc token --user bench) && TB_=$(mc token --user ops --tags tag:srv) || die "token failed"

write_file "$E2E_TMP/fwd.conf" <<'EOF'
[TCPClientTunnel]
BindAddress = 127.0.0.1:15301
Target = b:5201

[TCPClientTunnel]
BindAddress = 127.0.0.1:15302
Target = b:5202
EOF
chmod 0644 "$E2E_TMP/fwd.conf"
bg_nobody iperf3 B iperf3 -s -B 127.0.0.1 -p 5201
bg_nobody echo B "$PY" "$TB" server 127.0.0.1 5202
bg_nobody b B "$MESH_PROXY" up --state "$E2E_TMP/run/b" --hostname b --join "$TB_" --expose 5201,5202
bg_nobody a A "$MESH_PROXY" up --state "$E2E_TMP/run/a" --hostname a --join "$TA" --config "$E2E_TMP/fwd.conf"
wait_listen A 15301 20 || die "a's forward did not listen"
up_ok() { nsx A "$PY" "$TB" rr 127.0.0.1 15302 5 >/dev/null 2>&1; }
wait_until 30 up_ok || die "no echo through the forward"

filter_on() { # yes|no : B's status says a policy is active
    "${AS_NOBODY[@]}" "$MESH_PROXY" status --json --state "$E2E_TMP/run/b" | python3 -c '
import json, sys
d = json.load(sys.stdin)
def find(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "policy": return v
            r = find(v)
            if r is not None: return r
    return None
p = find(d)
active = bool(p) and (not isinstance(p, dict) or p.get("active", True))
sys.exit(0 if active == (sys.argv[1] == "yes") else 1)' "$1"
}
use() { # none|p1000
    if [ "$1" = none ]; then mc policy clear >/dev/null 2>&1 || true; wait_until 10 filter_on no
    else mc policy set "$E2E_TMP/p1000.hujson" >/dev/null && wait_until 10 filter_on yes; fi ||
        die "B did not switch to policy '$1'"
    sleep 0.5
    up_ok || wait_until 10 up_ok || die "no echo through the forward with policy '$1'"
}
tput() { # up|down -> Mbit/s
    local r=()
    [ "$1" = down ] && r=(-R)
    nsx A iperf3 -c 127.0.0.1 -p 15301 -t "$SECS" -J "${r[@]}" 2>/dev/null |
        python3 -c 'import json,sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e6))'
}
conn_rate() { # -> new connections a second
    nsx A "$PY" - "$CONNS" <<'PY'
import socket, sys, time
n = int(sys.argv[1])
t0 = time.monotonic()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", 15302), timeout=10)
    s.sendall(b"Rx")
    if s.recv(1) != b"x":
        sys.exit(1)
    s.close()
print("%.0f" % (n / (time.monotonic() - t0)))
PY
}

declare -A V
for ((i = 0; i < RUNS; i++)); do
    # alternate which goes first, so drift over the run hits both alike
    if [ $((i % 2)) = 0 ]; then order="none p1000"; else order="p1000 none"; fi
    for p in $order; do
        use "$p"
        V[$p.up]+=" $(tput up)"
        V[$p.down]+=" $(tput down)"
        V[$p.conn]+=" $(conn_rate)"
        info "run $i $p: up${V[$p.up]##* } down${V[$p.down]##* } conn/s${V[$p.conn]##* }"
    done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0 && a != "fail") printf "%.3f", a / b; else print "-" }'; }
{
    echo "# Access policy: data-path cost"
    echo
    echo "bench/policy.sh: two nodes on one LAN through mesh-control; A's forward to B's"
    echo "iperf3 (one stream, ${SECS} s) and to an echo server ($CONNS new connections"
    echo "a run). The same processes measured with no policy and with a 1,000-rule policy"
    echo "(100 groups of 10 users, 999 rules for other tags, the rule for A last), in turns."
    echo "Ran $(date -u +%Y-%m-%d) with $RUNS runs; load $(cut -d' ' -f1-3 /proc/loadavg)."
    echo
    echo "| figure | no policy (median) | 1,000 rules (median) | ratio | runs (none / 1,000 rules) |"
    echo "|---|---|---|---|---|"
    for f in up down conn; do
        a=$(echo "${V[none.$f]}" | median)
        b=$(echo "${V[p1000.$f]}" | median)
        case $f in up) name="TCP up, Mbit/s" ;; down) name="TCP down, Mbit/s" ;; conn) name="new connections/s" ;; esac
        echo "| $name | $a | $b | $(ratio "$b" "$a") | ${V[none.$f]# } / ${V[p1000.$f]# } |"
    done
} >"$OUT.new" || die "cannot write $OUT"
mv "$OUT.new" "$OUT"
cat "$OUT"
e2e_finish
