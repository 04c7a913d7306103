#!/usr/bin/env bash
# mesh-control policy check (issue 16, part 1), the real binary on real
# files: a good policy (text and --json), a node list from `nodes list
# --json` with users added (each node's filter and peers), a failing test, a
# syntax error and an unknown name with their line and column, stdin, a file
# over 1 MiB, a missing file, a bad node list, and the usage errors (policy
# set needs a data directory: tests/e2e/policy_store.sh). Needs no data
# directory, no server, no root.
. "$(dirname "$0")/lib.sh"

e2e_require_cmd python3
MC=${MESH_CONTROL:-$MESH_BUILD/mesh-control}
[ -x "$MC" ] || die "no executable $MC (run make first)"
e2e_tmp_init
T=$E2E_TMP
OUT=$T/out
ERR=$T/err

# mc ARGS... : mesh-control without a data directory; sets RC.
mc() {
    (cd "$T" && env -u MESH_CONTROL_DATA "$MC" "$@") >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    { echo "\$ mesh-control $* -> $RC"; cat "$OUT" "$ERR"; } >>"$E2E_LOGDIR/mesh-control.log"
}
rc_is() { [ "$RC" -eq "$1" ] || { echo "exit $RC, wanted $1"; cat "$OUT" "$ERR"; return 1; }; }
err_has() { grep -Eq -- "$1" "$ERR" || { echo "stderr lacks /$1/:"; cat "$ERR"; return 1; }; }
out_has() { grep -Eq -- "$1" "$OUT" || { echo "stdout lacks /$1/:"; cat "$OUT"; return 1; }; }
pyjson() { python3 -c "import json,sys; j=json.load(open('$OUT')); sys.exit(0 if ($1) else 1)"; }

cat >"$T/policy.hujson" <<'P'
// developers reach the servers; servers reach the database
{
  "groups": {"group:dev": ["alice@", "bob@"],},
  "tagOwners": {"tag:server": ["group:dev"]},
  "hosts": {"db": "100.64.0.9"},
  "acls": [
    {"action": "accept", "src": ["group:dev"], "dst": ["tag:server:22,80-90"]},
    /* TCP only */
    {"action": "accept", "src": ["tag:server"], "dst": ["db:5432"], "proto": "tcp"},
  ],
  "tests": [{"src": "alice@", "accept": ["tag:server:22"], "deny": ["db:5432"]}],
}
P
cat >"$T/nodes.json" <<'P'
[{"id": 1, "name": "laptop", "ipv4": "100.64.0.2", "ipv6": "fd7a:1:2::6440:2", "user": "alice",
  "tags": "", "online": true},
 {"id": 2, "name": "web", "ipv4": "100.64.0.3", "user": "alice", "tags": "tag:server"},
 {"id": 3, "name": "db", "ipv4": "100.64.0.9", "user": "carol", "tags": []},
 {"id": 4, "name": "other", "ipv4": "100.64.0.10", "user": "eve"}]
P

step "a good policy"
t_ok() {
    mc policy check policy.hujson && rc_is 0 &&
        out_has '^policy.hujson: OK: 1 group, 1 tag, 1 host, 2 rules; 2 test checks passed' &&
        out_has 'no node list given'
}
check "policy check: OK, counts, tests passed, exit 0, no data directory needed" t_ok
t_json() {
    mc policy check policy.hujson --json && rc_is 0 &&
        pyjson 'j["ok"] and j["rules"] == 2 and j["test_cases_passed"] == 2 and j["nodes"] == []'
}
check "policy check --json: one JSON object" t_json
t_stdin() { (cd "$T" && env -u MESH_CONTROL_DATA "$MC" policy check - <policy.hujson) >"$OUT" 2>"$ERR"; RC=$?; rc_is 0 && out_has '^-: OK'; }
check "policy check - reads standard input" t_stdin

step "compiled for a node list"
t_nodes() {
    mc policy check policy.hujson --nodes nodes.json && rc_is 0 &&
        out_has '^compiled for 4 nodes \(from the node list\):$' &&
        out_has '^  web \(100.64.0.3\): accepts tcp from 100.64.0.2 to 22,80-90; tcp from fd7a:1:2::6440:2 to 22,80-90; udp from 100.64.0.2 to 22,80-90; udp from fd7a:1:2::6440:2 to 22,80-90; icmp from 100.64.0.2; icmp from fd7a:1:2::6440:2$' &&
        out_has '^  db \(100.64.0.9\): accepts tcp from 100.64.0.3 to 5432$' &&
        out_has '^  other \(100.64.0.10\): accepts nothing$' &&
        out_has '^    sees 0 peers$' &&
        out_has '^    sees 2 peers: laptop db$'
}
check "--nodes: each node's filter (users, tags, ports, ranges, IPv4 and IPv6 sources) and peers" t_nodes
t_nodes_json() {
    mc policy check policy.hujson --nodes nodes.json --json && rc_is 0 &&
        pyjson 'j["nodes"][1]["accepts"]["tcp"] == [{"src": "100.64.0.2", "ports": "22,80-90"}, {"src": "fd7a:1:2::6440:2", "ports": "22,80-90"}] and j["nodes"][1]["visible"] == [1, 3] and j["nodes"][3]["visible"] == [] and j["nodes"][0]["accepts"]["tcp"] == []'
}
check "--nodes --json: accepts and visible per node" t_nodes_json

step "errors name the line and the column"
printf '{\n  "acls": [\n    {"action": "accept", "src": ["group:ops"], "dst": ["*:*"]},\n  ]\n}\n' >"$T/unknown.hujson"
t_unknown() {
    mc policy check unknown.hujson && rc_is 1 &&
        err_has "^mesh-control: unknown.hujson: line 3, column 34: unknown group 'group:ops' in acls\[0\]\.src\[0\]: define it under \"groups\"$"
}
check "an unknown group: exit 1, line 3, column 34, the path" t_unknown
t_unknown_json() {
    mc policy check unknown.hujson --json && rc_is 1 &&
        pyjson 'not j["ok"] and j["error"]["line"] == 3 and j["error"]["column"] == 34'
}
check "--json: the error as line, column, message" t_unknown_json
printf '{\n  "acls": [1,,2]\n}\n' >"$T/syntax.hujson"
t_syntax() { mc policy check syntax.hujson && rc_is 1 && err_has 'line 2, column 14: not valid JSON'; }
check "a JSON syntax error after HuJSON cleanup keeps its place" t_syntax
sed 's/"deny": \["db:5432"\]/"deny": ["tag:server:80"]/' "$T/policy.hujson" >"$T/failing.hujson"
t_failing() {
    mc policy check failing.hujson && rc_is 1 &&
        err_has 'tests\[0\] failed: alice@ -> tag:server:80 \(tcp\) is accepted by acls\[0\] \(line 7\), but the test expects it denied'
}
check "a failing test rejects the policy, naming the rule" t_failing
python3 -c "print('{\"hosts\": {' + ','.join('\"h%d\": \"100.64.0.1\"' % i for i in range(60000)) + '}}')" >"$T/big.json"
t_big() { mc policy check big.json && rc_is 1 && err_has 'over 1048576 bytes \(1 MiB\), the limit'; }
check "a file over 1 MiB is refused as such" t_big
t_missing() { mc policy check nope.hujson && rc_is 1 && err_has 'cannot open nope.hujson'; }
check "a missing file" t_missing
echo '[{"name": "x", "ipv4": "198.18.0.300"}]' >"$T/badnodes.json"
t_badnodes() { mc policy check policy.hujson --nodes badnodes.json && rc_is 1 && err_has 'badnodes.json: node 0 .*"ipv4" is not an IPv4 address'; }
check "a bad node list says which node" t_badnodes

step "usage"
t_usage() {
    mc policy && rc_is 2 && err_has 'policy needs a subcommand' &&
        mc policy set policy.hujson && rc_is 2 && err_has 'no data directory: pass --data DIR' &&
        mc policy frob && rc_is 2 && err_has 'policy has set FILE, get, clear and check FILE' &&
        mc policy check && rc_is 2 && err_has 'policy check needs a policy FILE' &&
        mc policy check policy.hujson --pending && rc_is 2 && err_has 'does not take --pending' &&
        mc --help && rc_is 0 && out_has 'policy check FILE'
}
check "usage errors exit 2; set needs a data directory" t_usage

e2e_finish
