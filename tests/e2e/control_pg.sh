#!/usr/bin/env bash
# mesh-control on PostgreSQL (issue 18), against a throwaway cluster
# (tests/pg.sh; skipped when PostgreSQL is not installed), every
# mesh-control and mesh-proxy as nobody:
#  - init --store URL: DIR/store.url (0600, the URL), server.key, no
#    control.db; status names the store; the admin commands work on it
#    (keys create/list, users, token, nodes list, policy set/get byte for
#    byte, apikeys);
#  - a second host's init against the same database is refused with what to
#    do (copy the first host's directory) and leaves nothing; with a copy of
#    that directory init only (re)writes store.url;
#  - --store-file with a password-bearing URL: refused while the file is
#    not 0600; then no process's command line (ps), no output and no log
#    shows the password, also when the store cannot be reached;
#  - migrate: a SQLite mesh with 1,000 simulated nodes (tests/tools/
#    ctl-scale) and one real node, users, a policy, an API key, a relay key,
#    a removed node; refused while its serve runs; then copied with
#    progress and a summary; every row of every table equal on both sides
#    (compared column by column), `nodes list --json` the same (ids, names,
#    addresses), control.db kept as control.db.migrated; refused again
#    (DIR is PostgreSQL now) and into a database that holds a mesh; the
#    real node reconnects to a serve on the PostgreSQL store with the same
#    node id, name and addresses;
#  - the simulated nodes (their keys from ctl-scale --seed: the same
#    machines) reconnect to two serve processes on the migrated DIR and
#    converge: no node is registered anew, every node's id, name and
#    addresses are those from before the migration, and every one is online;
#  - a transaction holding the store's write lock (a stalled server): the
#    serve's beats fail within seconds ("the store is busy") while its
#    node stays connected, and go through once the lock is free.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss ps psql
e2e_tmp_init
e2e_require_mesh_proxy
MC=$MESH_BUILD/mesh-control
SCALE=$MESH_BUILD/tests/ctl-scale
[ -x "$MC" ] || die "no executable $MC (run make first)"
[ -x "$SCALE" ] || die "no $SCALE (run make first)"
if ! "${AS_NOBODY[@]}" test -x "$MC" 2>/dev/null; then
    e2e_nobody_copy "$MC"
    MC=$E2E_COPY
fi

PGDIR=$E2E_TMP/pg
PGURL=$("$E2E_ROOT/tests/pg.sh" start "$PGDIR" 2>"$E2E_LOGDIR/pg.err")
case $? in
0) ;;
77) e2e_skip "$(cat "$E2E_LOGDIR/pg.err")" ;;
*) die "tests/pg.sh start failed: $(tail -n 5 "$E2E_LOGDIR/pg.err")" ;;
esac
# The cluster goes before lib.sh removes its directory.
trap 'rc=$?; "$E2E_ROOT/tests/pg.sh" stop "$PGDIR" >/dev/null 2>&1; (exit $rc); e2e_cleanup' EXIT
pg_createdb() { "$E2E_ROOT/tests/pg.sh" createdb "$PGDIR" "$1"; }

RUN=$E2E_TMP/run
OUT=$E2E_TMP/out
ERR=$E2E_TMP/err
ns_create h

# mc ARGS... : mesh-control as nobody, cwd $E2E_TMP; stdout in $OUT,
# stderr in $ERR (both also in the log); sets RC.
mc() {
    (cd "$E2E_TMP" && "${AS_NOBODY[@]}" "$MC" "$@") >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    {
        echo "\$ mesh-control $* -> $RC"
        cat "$OUT" "$ERR"
    } >>"$E2E_LOGDIR/mesh-control.log"
    cat "$OUT" "$ERR" >>"$E2E_TMP/all-output"
    return 0
}
rc_is() { [ "$RC" -eq "$1" ] || { echo "exit $RC, wanted $1"; cat "$OUT" "$ERR"; return 1; }; }
err_has() { grep -Eq -- "$1" "$ERR" || { echo "stderr lacks /$1/:"; cat "$ERR"; return 1; }; }
out_has() { grep -Eq -- "$1" "$OUT" || { echo "stdout lacks /$1/:"; cat "$OUT"; return 1; }; }
mode_of() { stat -c '%a %U' "$1"; }
pyjson() { python3 -c "import json,sys; j=json.load(open('$OUT')); sys.exit(0 if ($1) else 1)"; }
# private FILE : owned by nobody, 0600
private() { chown nobody:nogroup "$1" && chmod 0600 "$1"; }

step "init --store: the mesh in PostgreSQL"
D=$RUN/pg1
mc --data "$D" init --store "$PGURL" --listen 127.0.0.1:7443
check "init exits 0 and names the store" eval \
    'rc_is 0 && out_has "store +postgresql store at host=$PGDIR/sock db=mesh user=mesh"'
check "store.url is 0600, nobody's, and holds the URL" eval \
    '[ "$(mode_of "$D/store.url")" = "600 nobody" ] && [ "$(cat "$D/store.url")" = "$PGURL" ]'
check "server.key 0600, the directory 0700, no control.db" eval \
    '[ "$(mode_of "$D/server.key")" = "600 nobody" ] && [ "$(mode_of "$D")" = "700 nobody" ] && [ ! -e "$D/control.db" ]'
mc --data "$D" status
check "status says which store" eval 'rc_is 0 && out_has "^store +postgresql store at host=$PGDIR/sock db=mesh"'
mc --data "$D" status --json
check "status --json: kind postgresql" pyjson 'j["store"]["kind"] == "postgresql" and j["nodes"]["total"] == 0'

step "the admin commands on PostgreSQL"
mc --data "$D" keys create --reusable --tags web
check "keys create" eval 'rc_is 0 && out_has "^mkey-1-[0-9a-f]{48}$"'
mc --data "$D" keys list --json
check "keys list --json" pyjson 'len(j) == 1 and j[0]["reusable"] and j[0]["tags"] == "tag:web"'
mc --data "$D" users create alice
check "users create" rc_is 0
mc --data "$D" users list --json
check "users list" pyjson '[u["name"] for u in j] == ["alice"]'
mc --data "$D" token --user alice
check "token --user alice" eval 'rc_is 0 && out_has "^mesh"'
mc --data "$D" nodes list --json
check "nodes list --json: none yet" pyjson 'j == []'
printf '// alice reaches web\n{\n  "tagOwners": {"tag:web": ["alice@"]},\n  "acls": [{"action": "accept", "src": ["alice@"], "dst": ["tag:web:443"]}],\n}' |
    write_file "$E2E_TMP/policy.hujson"
mc --data "$D" policy set policy.hujson
check "policy set" rc_is 0
mc --data "$D" policy get
check "policy get: byte for byte" eval 'rc_is 0 && cmp "$OUT" "$E2E_TMP/policy.hujson"'
mc --data "$D" apikeys create ci
check "apikeys create and list" eval 'rc_is 0 && out_has "^mapi-1-" && mc --data "$D" apikeys list && out_has "ci"'

step "a second host: copy the first one's directory, not a second init"
D2=$RUN/pg2
mc --data "$D2" init --store "$PGURL"
check "init on an initialised database: exit 1, says to copy DIR" eval \
    'rc_is 1 && err_has "already initialised" && err_has "copy its server.key, store.url and control.conf"'
check "... and leaves no directory behind" test ! -e "$D2"
cp -a "$D" "$D2"
mc --data "$D2" init --store "$PGURL"
check "with a copy of the directory: exit 0, nothing to change" eval 'rc_is 0 && out_has "names it already"'
rm "$D2/store.url"
mc --data "$D2" init --store "$PGURL"
check "without its store.url: written again, 0600" eval \
    'rc_is 0 && out_has "store.url written" && [ "$(mode_of "$D2/store.url")" = "600 nobody" ]'
D3=$RUN/pg3
cp -a "$D" "$D3"
"${AS_NOBODY[@]}" "$MESH_PROXY" genkey >"$D3/server.key"
mc --data "$D3" init --store "$PGURL"
check "another server.key: refused" eval 'rc_is 1 && err_has "server.key does not belong to the mesh"'

step "--store-file: the password stays out of ps, output and logs"
PW=pw-$RANDOM$RANDOM-secret
pg_createdb pw >/dev/null || die "createdb pw failed"
PWURL="postgresql://mesh:$PW@/pw?host=$PGDIR/sock"
echo "$PWURL" >"$E2E_TMP/pw.url"
chown nobody:nogroup "$E2E_TMP/pw.url"
chmod 0644 "$E2E_TMP/pw.url"
DP=$RUN/pw
mc --data "$DP" init --store-file "$E2E_TMP/pw.url" --listen 127.0.0.1:7445
check "a --store-file others may read: refused, says chmod 600" eval \
    'rc_is 1 && err_has "chmod 600" && [ ! -e "$DP" ]'
chmod 0600 "$E2E_TMP/pw.url"
mc --data "$DP" init --store-file "$E2E_TMP/pw.url" --listen 127.0.0.1:7445
check "init --store-file" eval 'rc_is 0 && out_has "db=pw user=mesh"'
check "store.url 0600 with the URL" eval '[ "$(mode_of "$DP/store.url")" = "600 nobody" ] && [ "$(cat "$DP/store.url")" = "$PWURL" ]'
bg_nobody serve-pw h "$MC" --data "$DP" serve --log-level debug
wait_listen h 7445 10 || die "serve on the password store did not listen"
mc --data "$DP" status
ps -eo args >"$E2E_TMP/ps.txt"
check "ps lists serve, and no password" eval \
    'grep -q "mesh-control --data $DP serve" "$E2E_TMP/ps.txt" && ! grep -qF -- "$PW" "$E2E_TMP/ps.txt"'
check "serve's log names the store, not the password" eval \
    'grep -q "from the postgresql store at host=$PGDIR/sock db=pw" "$E2E_LOGDIR/serve-pw.log" && ! grep -qF -- "$PW" "$E2E_LOGDIR/serve-pw.log"'
bg_stop serve-pw
mc --data "$RUN/nowhere" init --store "postgresql://mesh:$PW@/pw?host=$E2E_TMP/nosock"
check "an unreachable store: exit 1, named by host and db, a warning about ps" eval \
    'rc_is 1 && err_has "postgresql store at host=$E2E_TMP/nosock db=pw" && err_has "warning: --store carries a password"'
check "... and the password in no message" eval '! grep -F -- "$PW" "$OUT" "$ERR"'
check "no command printed the password" eval '! grep -F -- "$PW" "$E2E_TMP/all-output"'

step "a SQLite mesh: 1,000 simulated nodes and one real node"
S=$RUN/sq
mc --data "$S" init --listen 127.0.0.1:7444
check "init (SQLite)" eval 'rc_is 0 && [ -f "$S/control.db" ] && [ ! -e "$S/store.url" ]'
mc --data "$S" status
check "status: the SQLite store" eval 'rc_is 0 && out_has "^store +sqlite store $S/control.db$"'
mc --data "$S" users create bob
check "a user" rc_is 0
mc --data "$S" apikeys create ops
mc --data "$S" token --relay
check "an API key and a relay key" rc_is 0
bg_nobody serve-sq h "$MC" --data "$S" serve --max-conns 1500 --log-level info
wait_listen h 7444 10 || die "serve (SQLite) did not listen"
# First: ctl-scale ends once each simulated node's map holds the 999 others.
mc --data "$S" token --reusable --user bob
STOK=$(cat "$OUT")
# The simulated machines' keys derive from SEED: after the migration the
# same 1,000 machines come back (the last step).
SEED=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
LINE=$(nsx h bash -c 'ulimit -n 4096; exec "$@"' scale "$SCALE" --token "$STOK" -n 1000 --rate 0 \
    --full 10 --timeout 120 --seed "$SEED" 2>"$E2E_LOGDIR/ctl-scale.err")
info "ctl-scale: $LINE"
check "1,000 simulated nodes registered" eval '[[ "$LINE" == *" ok=1"* ]]'
mc --data "$S" token
TOKEN=$(cat "$OUT")
XDG=$RUN/xdg
mkdir -p "$XDG" && chown nobody:nogroup "$XDG" && chmod 0700 "$XDG"
bg_nobody node h env XDG_RUNTIME_DIR="$XDG" "$MESH_PROXY" up --state "$RUN/node" \
    --join "$TOKEN" --hostname realnode --log-level debug
node_json() { nsx_nobody h "$MESH_PROXY" status --state "$RUN/node" --json; }
node_is() { node_json | python3 -c "import json,sys; m=json.load(sys.stdin)['mesh']; sys.exit(0 if ($1) else 1)"; }
listed_online() {
    "${AS_NOBODY[@]}" "$MC" --data "$S" nodes list --json 2>/dev/null |
        python3 -c 'import json,sys; sys.exit(0 if any(n["name"] == sys.argv[1] and n["online"] for n in json.load(sys.stdin)) else 1)' "$1"
}
check "the real node is online" wait_until 20 listed_online realnode
check "... and knows its name" wait_until 10 node_is 'm["name"] == "realnode" and m["control"]["state"] == "online"'
NODE_BEFORE=$(node_json | python3 -c 'import json,sys; m=json.load(sys.stdin)["mesh"]; print(m["node_id"], m["name"], *m["addresses"])')
info "real node: $NODE_BEFORE"
mc --data "$S" nodes remove sim-00500
check "one removed (a tombstone and a removed machine)" rc_is 0
# After the simulated nodes converged: under this policy they see nobody.
mc --data "$S" policy set policy.hujson
check "a policy" rc_is 0

step "migrate refuses while serve runs"
DBM=$(pg_createdb migrated) || die "createdb migrated failed"
mc migrate --from "$S" --to "$DBM"
check "refused: control.db is in use; nothing changed" eval \
    'rc_is 1 && err_has "in use by another process" && err_has "stop .mesh-control serve." && [ -f "$S/control.db" ] && [ ! -e "$S/store.url" ]'
bg_term_status serve-sq 10
check "serve (SQLite) stops (exit $BG_STATUS)" test "$BG_STATUS" = 0
mc --data "$S" nodes list --json
cp "$OUT" "$E2E_TMP/before.json"
check "1,000 nodes before (the simulated ones and the real one, less the removed one)" pyjson 'len(j) == 1000'
cp "$S/control.db" "$E2E_TMP/copy.db"

step "migrate refuses a target it cannot copy every column into, or of another version"
# schema_of NAME : a fresh database with this program's schema and no mesh
# (status opens the store, which creates the schema, then finds no mesh).
schema_of() {
    local url probe=$RUN/probe-$1
    url=$(pg_createdb "$1") || return 1
    mkdir -p "$probe" && echo "$url" >"$probe/store.url" && private "$probe/store.url" &&
        chown nobody:nogroup "$probe" && chmod 0700 "$probe" || return 1
    mc --data "$probe" status
    [ "$RC" -eq 1 ] && grep -q "never initialised" "$ERR" || return 1
    echo "$url"
}
unchanged() { [ -f "$S/control.db" ] && [ ! -e "$S/store.url" ] && [ ! -e "$S/control.db.migrated" ]; }
DBL=$(schema_of lacking) || die "cannot make the database 'lacking'"
psql -X -q "$DBL" -c 'ALTER TABLE nodes DROP COLUMN hostinfo' || die "psql failed"
mc migrate --from "$S" --to "$DBL"
check "a PostgreSQL table without a SQLite column: refused by name, nothing changed" eval \
    'rc_is 1 && err_has "has no column nodes.hostinfo" && err_has "nothing changed" && unchanged'
check "... and nothing copied" test "$(psql -X -At "$DBL" -c 'SELECT count(*) FROM meta')" = 0
DBV=$(schema_of newer) || die "cannot make the database 'newer'"
psql -X -q "$DBV" -c 'INSERT INTO schema_version (version, applied) VALUES (1000, 0)' || die "psql failed"
mc migrate --from "$S" --to "$DBV"
check "a PostgreSQL schema of another version: refused, nothing changed" eval \
    'rc_is 1 && err_has "schema version 1000" && unchanged'

step "migrate"
echo "$DBM" >"$E2E_TMP/to.url"
private "$E2E_TMP/to.url"
mc migrate --from "$S" --to-file "$E2E_TMP/to.url"
check "exit 0, with a summary" eval 'rc_is 0 && out_has "^migrated mesh [0-9a-f]{32} from $S/control.db to the postgresql store at host=$PGDIR/sock db=migrated" && out_has "^  nodes +1000$"'
check "progress on stderr every 1,000 rows" err_has "migrate: nodes: 1000 of 1000 rows"
info "$(head -n 1 "$OUT")"
check "DIR names the PostgreSQL store; control.db kept as control.db.migrated" eval \
    '[ "$(mode_of "$S/store.url")" = "600 nobody" ] && [ ! -e "$S/control.db" ] && [ -f "$S/control.db.migrated" ] && out_has "control.db.migrated"'
# Every table, every row, every column: SQLite (the copy taken before)
# against PostgreSQL; bytes as hex.
compare_tables() {
    python3 - "$E2E_TMP/copy.db" "$DBM" <<'EOF'
import sqlite3, subprocess, sys
db = sqlite3.connect(sys.argv[1])
tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'")]
bad = 0
for t in tables:
    cols = [r[1] for r in db.execute(f'PRAGMA table_info("{t}")')]
    q = ", ".join(f'"{c}"' for c in cols)
    def norm(v):
        if v is None: return ""
        if isinstance(v, bytes): return "\\x" + v.hex()
        return str(v)
    a = sorted("|".join(norm(v) for v in row) for row in db.execute(f'SELECT {q} FROM "{t}"'))
    out = subprocess.run(["psql", "-X", "-q", "-At", "-F", "|", sys.argv[2], "-c", f'SELECT {q} FROM "{t}"'],
                         capture_output=True, text=True, check=True).stdout
    b = sorted(l for l in out.split("\n") if l)
    print(f"{t}: {len(a)} rows in SQLite, {len(b)} in PostgreSQL, {'equal' if a == b else 'DIFFERENT'}")
    bad += a != b
sys.exit(1 if bad else 0)
EOF
}
check "every row of every table is the same in PostgreSQL" compare_tables
mc --data "$S" nodes list --json
cp "$OUT" "$E2E_TMP/after.json"
same_nodes() {
    python3 - "$E2E_TMP/before.json" "$E2E_TMP/after.json" <<'EOF'
import json, sys
k = lambda n: (n["id"], n["name"], n["ipv4"], n["ipv6"], n["key"], n["user"])
a, b = ([k(n) for n in json.load(open(f))] for f in sys.argv[1:])
print(len(a), "before,", len(b), "after")
sys.exit(0 if a == b else 1)
EOF
}
check "nodes list --json: the same ids, names, addresses and keys" same_nodes
mc --data "$S" status
check "status: the PostgreSQL store, 1,000 nodes" eval 'rc_is 0 && out_has "^store +postgresql store at .* db=migrated" && out_has "^nodes +1000 "'
mc --data "$S" keys create
check "a new auth key continues after the copied ids" eval 'rc_is 0 && out_has "^mkey-3-"'
mc migrate --from "$S" --to "$DBM"
check "migrate again: refused, DIR is PostgreSQL now" eval 'rc_is 1 && err_has "already names a PostgreSQL store"'
S2=$RUN/sq2
mc --data "$S2" init --listen 127.0.0.1:7446
mc migrate --from "$S2" --to "$DBM"
check "into a database that holds a mesh: refused, nothing changed" eval \
    'rc_is 1 && err_has "already holds mesh" && [ -f "$S2/control.db" ] && [ ! -e "$S2/store.url" ]'

step "the real node reconnects to serve on PostgreSQL"
bg_nobody serve-pg h "$MC" --data "$S" serve --max-conns 1500 --log-level info
wait_listen h 7444 10 || die "serve (PostgreSQL) did not listen"
check "serve says it runs on the PostgreSQL store" \
    wait_log "$E2E_LOGDIR/serve-pg.log" "from the postgresql store at host=$PGDIR/sock db=migrated"
check "the real node is online again (nodes list from PostgreSQL)" wait_until 30 listed_online realnode
check "... connected, after a reconnect" wait_until 10 node_is 'm["control"]["state"] == "online" and m["control"]["sessions"] >= 2'
NODE_AFTER=$(node_json | python3 -c 'import json,sys; m=json.load(sys.stdin)["mesh"]; print(m["node_id"], m["name"], *m["addresses"])')
info "real node: $NODE_AFTER"
check "the same node id, name and addresses" test "$NODE_AFTER" = "$NODE_BEFORE"
check "serve still running" bg_alive serve-pg

step "a writer stalled with the write lock does not freeze serve"
# psql holds the meta row's lock in an idle transaction for 9 s, as a
# server stopped in the middle of a write would (psql's session has no
# idle limit; a mesh-control session is ended after 5 s).
MARK=$(log_mark "$E2E_LOGDIR/serve-pg.log")
SESSIONS=$(node_json | python3 -c 'import json,sys; print(json.load(sys.stdin)["mesh"]["control"]["sessions"])')
(printf 'BEGIN;\nSELECT 1 FROM meta WHERE id = 1 FOR UPDATE;\n'; sleep 9) |
    psql -q "$DBM" >/dev/null 2>&1 &
HOLDER=$!
check "serve's beat fails in seconds: the store is busy" \
    wait_log_after "$E2E_LOGDIR/serve-pg.log" "$MARK" "server beat: .*the store is busy" 6
check "... while its node stays connected, on the same session" \
    node_is "m['control']['state'] == 'online' and m['control']['sessions'] == $SESSIONS"
wait "$HOLDER"
sleep 3
MARK=$(log_mark "$E2E_LOGDIR/serve-pg.log")
sleep 5
check "beats go through again once the lock is free" \
    eval '! log_after "$E2E_LOGDIR/serve-pg.log" "$MARK" | grep -q "server beat:"'
check "serve still running" bg_alive serve-pg

step "the simulated nodes reconnect, split between two servers on PostgreSQL"
# The policy copied lets the simulated nodes see nobody; under this one a
# node's map holds every other node, which is how ctl-scale knows each one
# is through.
printf '{"acls": [{"action": "accept", "src": ["*"], "dst": ["*:*"]}]}\n' |
    write_file "$E2E_TMP/all.hujson"
mc --data "$S" policy set all.hujson
check "a policy under which every node sees every other" rc_is 0
bg_nobody serve-pg2 h "$MC" --data "$S" serve --listen 127.0.0.1:7447 --max-conns 1500 --log-level info
wait_listen h 7447 10 || die "the second serve (PostgreSQL) did not listen"
# The same seed: the same machine, node and disco keys. sim-00500 was
# removed (the server refuses its machine with this older key): left out.
# Each of the other 999 ends with a map of 999 peers: 998 and the real node.
# The nodes split between the servers (node i on server i mod 2) and stay
# connected (--linger) while their rows are looked at.
bg scale2 h bash -c 'ulimit -n 4096; exec "$@"' scale "$SCALE" --token "$STOK" -n 1000 --rate 0 \
    --full 10 --timeout 90 --seed "$SEED" --skip 500 --peers 999 \
    --connect 127.0.0.1:7444,127.0.0.1:7447 --linger 300
scale_line() { grep -m 1 '^n=1000 ' "$E2E_LOGDIR/scale2.log"; }
check "ctl-scale ends its run (its result line)" wait_until 120 scale_line
LINE2=$(scale_line)
info "ctl-scale again: $LINE2"
check "the 999 simulated nodes registered again and converged" eval '[[ "$LINE2" == *" ok=1"* && "$LINE2" == *" refused=0 "* ]]'
info "the 999 simulated nodes reconnected (registered) in $(sed -E 's/.* registered_s=([0-9.]+).*/\1/' <<<"$LINE2") s, converged in $(sed -E 's/.* converged_s=([0-9.]+).*/\1/' <<<"$LINE2") s"
mc --data "$S" nodes list --json
cp "$OUT" "$E2E_TMP/reconnected.json"
check "no node registered anew: still 1,000 nodes" pyjson 'len(j) == 1000'
same_after_reconnect() {
    python3 - "$E2E_TMP/before.json" "$E2E_TMP/reconnected.json" <<'EOF'
import json, sys
k = lambda n: (n["id"], n["name"], n["ipv4"], n["ipv6"], n["key"], n["user"])
a, b = ([k(n) for n in json.load(open(f))] for f in sys.argv[1:])
d = [x for x in a if x not in b] + [x for x in b if x not in a]
print(len(a), "before the migration,", len(b), "after the reconnects;", len(d), "differ:", d[:4])
sys.exit(0 if a == b else 1)
EOF
}
check "the same ids, names, IPv4/IPv6 addresses and keys as before the migration" same_after_reconnect
check "every one of the 1,000 is online (the reconnects happened)" \
    pyjson 'len(j) == 1000 and all(n["online"] for n in j)'
check "serves still running" eval 'bg_alive serve-pg && bg_alive serve-pg2'
bg_stop scale2
bg_stop serve-pg2
bg_stop node
bg_stop serve-pg

e2e_finish
