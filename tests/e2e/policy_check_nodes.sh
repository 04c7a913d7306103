#!/usr/bin/env bash
# mesh-control policy check --nodes, the real binary on real files: a
# node list is checked (a tag that is not tag:NAME, more than 16 tags, two
# nodes with one id or address are errors naming the node); a tag the
# node's user does not own is dropped with a warning and the node counts
# as its user; a filter with 256 port ranges prints every one, in text and
# --json. Needs no data directory, no server, no root.
. "$(dirname "$0")/lib.sh"

e2e_require_cmd python3
MC=${MESH_CONTROL:-$MESH_BUILD/mesh-control}
[ -x "$MC" ] || die "no executable $MC (run make first)"
e2e_tmp_init
T=$E2E_TMP
OUT=$T/out
ERR=$T/err

mc() {
    (cd "$T" && env -u MESH_CONTROL_DATA "$MC" "$@") >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    { echo "\$ mesh-control $* -> $RC"; cat "$OUT" "$ERR"; } >>"$E2E_LOGDIR/mesh-control.log"
}
rc_is() { [ "$RC" -eq "$1" ] || { echo "exit $RC, wanted $1"; cat "$OUT" "$ERR"; return 1; }; }
err_has() { grep -Eq -- "$1" "$ERR" || { echo "stderr lacks /$1/:"; cat "$ERR"; return 1; }; }
out_has() { grep -Eq -- "$1" "$OUT" || { echo "stdout lacks /$1/:"; cat "$OUT"; return 1; }; }
pyjson() { python3 -c "import json,sys; j=json.load(open('$OUT')); sys.exit(0 if ($1) else 1)"; }

python3 - "$T" <<'PY'
import json, sys
t = sys.argv[1]
odd = ",".join(str(p) for p in range(1, 512, 2))
open(t + "/policy.hujson", "w").write(json.dumps({
    "groups": {"group:ops": ["alice@"]},
    "tagOwners": {"tag:server": ["group:ops"]},
    "acls": [
        {"action": "accept", "src": ["*"], "dst": ["tag:server:" + odd]},
        {"action": "accept", "src": ["*"], "dst": ["bob@:22"]},
    ]}))
good = [{"id": 1, "name": "laptop", "ipv4": "100.64.0.2", "user": "carol"},
        {"id": 2, "name": "web", "ipv4": "100.64.0.3", "user": "alice", "tags": "tag:server"},
        {"id": 3, "name": "rogue", "ipv4": "100.64.0.4", "user": "bob", "tags": ["tag:server"]}]
open(t + "/nodes.json", "w").write(json.dumps(good))
def bad(name, nodes):
    open(t + "/" + name, "w").write(json.dumps(nodes))
bad("emptytag.json", [dict(good[0], tags=["tag:server", ""])])
bad("nottag.json", [dict(good[0], tags="server")])
bad("manytags.json", [dict(good[0], tags=["tag:t%d" % k for k in range(17)])])
bad("dupid.json", [good[0], dict(good[1], id=1)])
bad("dupv4.json", [good[0], dict(good[1], ipv4="100.64.0.2")])
bad("dupv6.json", [dict(good[0], ipv6="fd7a:115c:a1e0::2"), dict(good[1], ipv6="fd7a:115c:a1e0::2")])
PY

step "the node list is checked"
t_emptytag() { mc policy check policy.hujson --nodes emptytag.json && rc_is 1 && err_has "emptytag.json: node 0 \(counting from 0\): tag '' is not tag:NAME"; }
check "an empty tag is an error, not a tagged node without identity" t_emptytag
t_nottag() { mc policy check policy.hujson --nodes nottag.json && rc_is 1 && err_has "node 0 .*tag 'server' is not tag:NAME"; }
check "a tag without tag: is an error" t_nottag
t_manytags() { mc policy check policy.hujson --nodes manytags.json && rc_is 1 && err_has 'node 0 .*more than 16 tags'; }
check "a 17th tag is an error, not dropped silently" t_manytags
t_dup() {
    mc policy check policy.hujson --nodes dupid.json && rc_is 1 && err_has 'node 1 \(counting from 0\) has the same "id" as node 0' &&
        mc policy check policy.hujson --nodes dupv4.json && rc_is 1 && err_has 'node 1 .*the same "ipv4" as node 0' &&
        mc policy check policy.hujson --nodes dupv6.json && rc_is 1 && err_has 'node 1 .*the same "ipv6" as node 0'
}
check "two nodes with one id, IPv4 or IPv6 address are an error" t_dup

step "tags that count, and long port lists"
t_owned() {
    mc policy check policy.hujson --nodes nodes.json && rc_is 0 &&
        err_has "nodes.json: warning: node rogue: tag 'tag:server' is ignored: its user 'bob' does not own it" &&
        out_has '^  rogue \(100\.64\.0\.4\): accepts tcp from \* to 22; udp from \* to 22; icmp from \*$'
}
check "a tag its user does not own is dropped with a warning; the node is its user's" t_owned
t_ports() {
    all=$(python3 -c 'print(",".join(str(p) for p in range(1, 512, 2)))')
    mc policy check policy.hujson --nodes nodes.json && rc_is 0 &&
        grep -Fq "web (100.64.0.3): accepts tcp from * to $all; udp from * to $all;" "$OUT" ||
        { echo "the port list is cut:"; grep web "$OUT"; return 1; }
    mc policy check policy.hujson --nodes nodes.json --json && rc_is 0 &&
        pyjson "[n for n in j['nodes'] if n['name'] == 'web'][0]['accepts']['tcp'][0]['ports'] == '$all' and any('rogue' in w['message'] for w in j['warnings'])"
}
check "256 port ranges are printed whole, in text and --json" t_ports

e2e_finish
