#!/usr/bin/env bash
# The stored access policy and users (issue 16, part 2) with the real
# binaries, mesh-control as nobody in a namespace of its own: users create,
# list and remove with every refusal; token --user (a node that joins with
# it through `serve` is the user's: nodes list, users list, and the user
# cannot be removed while it owns it); policy set with a failing test
# (refused with line and column, nothing changed) and with a host alias
# that only the store's nodes make wrong; set/get round trip byte for byte
# (comments, CRLF, UTF-8, no final newline); revisions; policy check with
# the store's nodes; token --tags under the policy (tagOwners); clear; and
# the same through the admin API with curl (PUT, GET, DELETE
# /api/v1/policy, POST /api/v1/policy/check, /api/v1/users, keys with a
# user).
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd python3 setpriv curl nm
e2e_require_mesh_proxy
MC=${MESH_CONTROL:-$MESH_BUILD/mesh-control}
[ -x "$MC" ] || die "no executable $MC (run make first)"
e2e_tmp_init
if ! "${AS_NOBODY[@]}" test -x "$MC" 2>/dev/null; then
    e2e_nobody_copy "$MC"
    MC=$E2E_COPY
fi
ns_create c
RUN=$E2E_TMP/run
D=$RUN/data
OUT=$E2E_TMP/out
ERR=$E2E_TMP/err
API=http://127.0.0.1:7444

# mc ARGS... : mesh-control --data $D as nobody in namespace c; stdout in
# $OUT, stderr in $ERR (both also in the log); sets RC.
mc() {
    (cd "$E2E_TMP" && nsx_nobody c "$MC" --data "$D" "$@") >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    { echo "\$ mesh-control $* -> $RC"; cat "$OUT" "$ERR"; } >>"$E2E_LOGDIR/mesh-control.log"
    return 0
}
rc_is() { [ "$RC" -eq "$1" ] || { echo "exit $RC, wanted $1"; cat "$OUT" "$ERR"; return 1; }; }
err_has() { grep -Eq -- "$1" "$ERR" || { echo "stderr lacks /$1/:"; cat "$ERR"; return 1; }; }
out_has() { grep -Eq -- "$1" "$OUT" || { echo "stdout lacks /$1/:"; cat "$OUT"; return 1; }; }
pyjson() { python3 -c "import json,sys; j=json.load(open('$OUT')); sys.exit(0 if ($1) else 1)"; }
# api METHOD PATH [@FILE | BODY] : curl to the admin API; the body in $OUT,
# the status in CODE.
api() {
    local m=$1 path=$2 body=()
    [ $# -ge 3 ] && body=(--data-binary "$3")
    CODE=$(nsx c curl -sS --max-time 10 -X "$m" -H "Authorization: Bearer $SECRET" \
        -o "$OUT" -w '%{http_code}' "${body[@]}" "$API$path")
    { echo "\$ curl -X $m $path -> $CODE"; cat "$OUT"; } >>"$E2E_LOGDIR/api.log"
}
code_is() { [ "$CODE" = "$1" ] || { echo "HTTP $CODE, wanted $1"; cat "$OUT"; return 1; }; }

step "init and users"
mc init --listen 127.0.0.1:7443
check "init" rc_is 0
mc users list
check "users list: none yet, says how to make one" eval 'rc_is 0 && [ ! -s "$OUT" ] && err_has "users create NAME"'
mc users create alice
check "users create alice" eval 'rc_is 0 && out_has "^created user alice$" && err_has "token --user alice"'
mc users create alice@
check "users create alice@ (the policy's spelling): exists, exit 1" eval 'rc_is 1 && err_has "user alice exists already"'
mc users create Bob
check "users create Bob: exit 2, says what a name is" eval 'rc_is 2 && err_has "user name \"Bob\": expected 1 to 63 of a-z"'
mc users create bob@
check "users create bob@ makes bob" eval 'rc_is 0 && out_has "^created user bob$"'
mc users list --json
check "users list --json: name, nodes, created, by name" pyjson \
    "[list(u) for u in j] == [['name', 'nodes', 'created']] * 2 and [u['name'] for u in j] == ['alice', 'bob'] and all(u['nodes'] == 0 for u in j)"
mc users remove carol
check "users remove carol: no such user, exit 1" eval 'rc_is 1 && err_has "no user carol; see .mesh-control users list."'
mc users remove
check "users remove without a name: usage, exit 2" eval 'rc_is 2 && err_has "needs a user NAME"'

step "token --user: the node that joins is the user's"
mc token --user carol
check "token --user carol: no such user, exit 1, says how to create it" \
    eval 'rc_is 1 && err_has "--user carol: no such user; create it with .mesh-control users create carol." && [ ! -s "$OUT" ]'
mc token --user alice --reusable
check "token --user alice" eval 'rc_is 0 && out_has "^mesh1" && err_has "its nodes owned by alice"'
TOKEN=$(cat "$OUT")
mc keys list --json
check "keys list --json: the key's user" pyjson "j[-1]['user'] == 'alice' and j[-1]['tags'] == ''"
mc token --no-key --user alice
check "token --no-key --user: exit 2" eval 'rc_is 2 && err_has "cannot be combined with --user"'

bg_nobody control c "$MC" --data "$D" serve --listen 127.0.0.1:7443 --admin-listen 127.0.0.1:7444
wait_listen c 7443 10 || { tail "$E2E_LOGDIR/control.log"; die "mesh-control serve did not listen"; }
wait_listen c 7444 10 || die "the admin API did not listen"
bg_nobody laptop c "$MESH_PROXY" up --state "$RUN/laptop" --hostname laptop --join "$TOKEN" \
    --log-level debug
laptop_in() { mc nodes list --json && pyjson "len(j) == 1 and j[0]['approved'] and j[0]['name'] == 'laptop'"; }
check "laptop joins with alice's token" wait_until 20 laptop_in
mc nodes list --json
check "nodes list --json: laptop's user is alice" pyjson "j[0]['user'] == 'alice'"
LAPTOP_V4=$(python3 -c "import json; print(json.load(open('$OUT'))[0]['ipv4'])")
mc nodes list
check "nodes list: a USER column" eval 'rc_is 0 && out_has "^ID +NAME +USER +IPV4" && out_has "^1 +laptop +alice +$LAPTOP_V4 "'
mc users list
check "users list: alice has 1 node" eval 'rc_is 0 && out_has "^alice +1 " && out_has "^bob +0 "'
mc users remove alice
check "users remove alice: refused while she owns a node and a key, says what to do" \
    eval 'rc_is 1 && err_has "user alice still owns 1 node and 1 auth key not revoked \(1\): remove its nodes and revoke its keys first" && err_has "keys revoke ID"'
mc users list --json
check "alice is still there" pyjson "[u['name'] for u in j] == ['alice', 'bob']"

step "policy set: refused policies change nothing"
mc policy get
check "policy get with none set: exit 1, says so" eval 'rc_is 1 && err_has "no policy is set" && err_has "policy set FILE" && [ ! -s "$OUT" ]'
# Comments, CRLF line ends, UTF-8 and no final newline: stored as written.
printf '// web for alice \xe2\x80\x94 caf\xc3\xa9\r\n{\r\n  "tagOwners": {"tag:web": ["alice@"]},\r\n  "hosts": {"db": "100.64.0.9"},\r\n  "acls": [\r\n    {"action": "accept", "src": ["alice@"], "dst": ["tag:web:443", "db:5432"]},\r\n  ],\r\n  "tests": [{"src": "alice@", "accept": ["tag:web:443"], "deny": ["tag:web:22"]}],\r\n}' |
    write_file "$E2E_TMP/good.hujson"
sed 's/"deny": \["tag:web:22"\]/"deny": ["db:5432"]/' "$E2E_TMP/good.hujson" | write_file "$E2E_TMP/failing.hujson"
mc policy set failing.hujson
check "a failing test: exit 1, line and column, nothing changed" \
    eval 'rc_is 1 && err_has "^mesh-control: failing.hujson: line 8, column [0-9]+: tests\[0\] failed: alice@ .*-> db:5432 \(tcp\) is accepted by acls\[0\]" && err_has "nothing changed \(no policy is set" && [ ! -s "$OUT" ]'
mc policy get
check "still no policy" rc_is 1
printf '{"hosts": {"alice": "100.64.0.9"}, "acls": [{"action": "accept", "src": ["*"], "dst": ["alice:22"]}]}\n' |
    write_file "$E2E_TMP/alias.hujson"
(cd "$E2E_TMP" && env -u MESH_CONTROL_DATA "$MC" policy check alias.hujson) >"$OUT" 2>"$ERR"
RC=$?
check "a host alias named alice passes policy check without nodes" rc_is 0
mc policy set alias.hujson
check "... and is refused by policy set: alice owns a node in the store" \
    eval 'rc_is 1 && err_has "host alias .alice. is also the name of a user \(of node laptop\)" && err_has "nothing changed"'
printf '{\n  "acls": [1,,2]\n}\n' | write_file "$E2E_TMP/syntax.hujson"
mc policy set syntax.hujson
check "a syntax error: line 2, column 14" eval 'rc_is 1 && err_has "syntax.hujson: line 2, column 14: not valid JSON"'
mc policy set nope.hujson
check "a missing file: exit 1" eval 'rc_is 1 && err_has "cannot open nope.hujson" && err_has "nothing changed"'

step "policy set, get, check with the store's nodes"
mc policy check good.hujson
check "policy check with --data: compiled for the store's node" \
    eval 'rc_is 0 && out_has "^compiled for 1 node \(the store.s nodes in the network map\):$" && out_has "^  laptop \($LAPTOP_V4\): accepts nothing$"'
mc policy set good.hujson
check "policy set: revision 1, rules, tests, nodes" \
    eval 'rc_is 0 && out_has "^policy set: revision 1; 1 rule, 2 test checks passed, compiled for 1 node$"'
mc policy get
check "policy get: byte for byte what was set" cmp "$OUT" "$E2E_TMP/good.hujson"
(cd "$E2E_TMP" && nsx_nobody c "$MC" --data "$D" policy set - <"$E2E_TMP/good.hujson") >"$OUT" 2>"$ERR"
RC=$?
check "policy set - (stdin): revision 2" eval 'rc_is 0 && out_has "revision 2;"'
mc policy get --json
check "policy get --json: text, revision, set_at" \
    pyjson "j['policy'] == open('$E2E_TMP/good.hujson', encoding='utf-8', newline='').read() and j['revision'] == 2 and j['set_at'] > 1700000000"
mc policy set failing.hujson
check "a failing test now: the stored revision 2 stays" eval 'rc_is 1 && err_has "the stored policy is still revision 2"'
mc policy get
check "still the good policy" cmp "$OUT" "$E2E_TMP/good.hujson"

step "users and tags under the policy"
mc users create db
check "users create db: refused, the policy's host alias db would clash" \
    eval 'rc_is 1 && err_has "user db: .*host alias .db. is also the name of a user" && err_has "no user created"'
mc token --tags web
check "token --tags web without --user: refused, names the tag" \
    eval 'rc_is 1 && err_has "tag:web: under the policy \(revision 2\) a tag counts only on a node whose user owns it" && err_has "no key made" && [ ! -s "$OUT" ]'
mc token --user alice --tags web
check "token --user alice --tags web: alice owns tag:web" rc_is 0
mc token --user bob --tags web
check "token --user bob --tags web: refused, names the tagOwners entry to add" \
    eval 'rc_is 1 && err_has "tag:web: user bob does not own it" && err_has "add \"bob@\"" && [ ! -s "$OUT" ]'
mc keys list --json
check "the refused tokens made no keys" pyjson "len(j) == 2 and j[1]['user'] == 'alice' and j[1]['tags'] == 'tag:web'"

step "the admin API"
mc apikeys create e2e
check "apikeys create" rc_is 0
SECRET=$(cat "$OUT")
api GET /api/v1/policy
check "GET /api/v1/policy: the text, revision 2" eval 'code_is 200 && pyjson "j[\"policy\"] == open(\"$E2E_TMP/good.hujson\", encoding=\"utf-8\", newline=\"\").read() and j[\"revision\"] == 2"'
api PUT /api/v1/policy "@$E2E_TMP/failing.hujson"
check "PUT a failing policy: 400 with line and column" \
    eval 'code_is 400 && pyjson "j[\"line\"] == 8 and j[\"column\"] > 0 and j[\"error\"].startswith(\"line 8, column \") and \"tests[0] failed\" in j[\"error\"]"'
api POST /api/v1/policy/check "@$E2E_TMP/failing.hujson"
check "POST /policy/check a failing policy: 400, ok false" eval 'code_is 400 && pyjson "j[\"ok\"] is False and j[\"line\"] == 8"'
api GET /api/v1/policy
check "still revision 2" eval 'code_is 200 && pyjson "j[\"revision\"] == 2"'
api POST /api/v1/policy/check "@$E2E_TMP/good.hujson"
check "POST /policy/check: 200, tests passed, the store's nodes" eval 'code_is 200 && pyjson "j[\"ok\"] and j[\"tests_passed\"] == 2 and j[\"nodes\"] == 1"'
api PUT /api/v1/policy "@$E2E_TMP/good.hujson"
check "PUT /api/v1/policy: revision 3" eval 'code_is 200 && pyjson "j[\"revision\"] == 3 and j[\"tests_passed\"] == 2 and j[\"warnings\"] == []"'
mc policy get
check "the CLI reads what the API stored, byte for byte" cmp "$OUT" "$E2E_TMP/good.hujson"
api GET /api/v1/users
check "GET /api/v1/users" eval 'code_is 200 && pyjson "[(u[\"name\"], u[\"nodes\"]) for u in j] == [(\"alice\", 1), (\"bob\", 0)]"'
api POST /api/v1/users '{"name": "carol@"}'
check "POST /api/v1/users carol@" eval 'code_is 200 && pyjson "j[\"name\"] == \"carol\""'
api POST /api/v1/users '{"name": "db"}'
check "POST /api/v1/users db: 409, the policy's host alias" eval 'code_is 409 && pyjson "\"host alias\" in j[\"error\"]"'
api DELETE /api/v1/users/alice
check "DELETE /api/v1/users/alice: 409, says what she owns" eval 'code_is 409 && pyjson "\"still owns 1 node and 2 auth keys\" in j[\"error\"]"'
api DELETE /api/v1/users/carol
check "DELETE /api/v1/users/carol" eval 'code_is 200 && pyjson "j[\"deleted\"]"'
api POST /api/v1/keys '{"user": "alice", "tags": ["web"]}'
check "POST /api/v1/keys with alice and her tag" eval 'code_is 200 && pyjson "j[\"key\"][\"user\"] == \"alice\" and j[\"token\"].startswith(\"mesh1\")"'
api POST /api/v1/keys '{"tags": ["web"]}'
check "POST /api/v1/keys with the tag but no user: 409" eval 'code_is 409 && pyjson "\"tagOwners\" in j[\"error\"]"'
api DELETE /api/v1/policy
check "DELETE /api/v1/policy: cleared revision 3" eval 'code_is 200 && pyjson "j[\"cleared\"] and j[\"revision\"] == 3"'
api GET /api/v1/policy
check "GET after the clear: 404" eval 'code_is 404 && pyjson "\"no policy is set\" in j[\"error\"]"'
CODE=$(nsx c curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary "@$E2E_TMP/good.hujson" "$API/api/v1/policy")
check "PUT without an API key: 401" code_is 401

step "clear"
mc policy clear
check "policy clear with none set: exit 1" eval 'rc_is 1 && err_has "no policy is set; nothing changed"'
mc policy set good.hujson
check "set again: the revision keeps counting (4)" eval 'rc_is 0 && out_has "revision 4;"'
mc policy clear
check "policy clear" eval 'rc_is 0 && out_has "^policy cleared \(it was revision 4\)$" && err_has "every node may reach every other node again"'
mc policy get
check "nothing set after clear" rc_is 1
check "serve still runs" bg_alive control
check "laptop still runs" bg_alive laptop

e2e_finish
