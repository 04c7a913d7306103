#!/usr/bin/env bash
# mesh-control's admin commands (issue 4), without `serve`: init, files and
# their modes, keys create/list/revoke, token (decoded and checked against
# server.key), nodes list and the "no such node" errors, --json, usage
# errors (exit 2) and other errors (exit 1) with readable messages; token
# --no-key, and a pending node (written into the store) through nodes list,
# nodes list --pending and nodes approve (by name only with the node's key
# fingerprint: a bare name or a wrong key approves nothing). serve only for
# what it refuses or says at start: a non-loopback --admin-listen without
# --admin-insecure, and the open-file limit (raised to the hard limit, node
# connections clamped to what fits, a refusal when too few fit).
#
# As root, mesh-control runs as nobody from a directory nobody cannot write
# (its data directory is the only place it may write): no root needed.
# Without root it runs as the caller. MESH_CONTROL overrides the binary.
. "$(dirname "$0")/lib.sh"

e2e_require_cmd python3 setpriv stat ss flock
MC=${MESH_CONTROL:-$MESH_BUILD/mesh-control}
[ -x "$MC" ] || die "no executable $MC (run make first)"

if [ "$(id -u)" -eq 0 ]; then
    e2e_tmp_init
    AS=("${AS_NOBODY[@]}")
    if ! "${AS[@]}" test -x "$MC" 2>/dev/null; then
        e2e_nobody_copy "$MC"
        MC=$E2E_COPY
    fi
    OWNER=nobody
else
    E2E_TMP=$(mktemp -d /tmp/mesh-e2e.XXXXXX)
    mkdir -p "$E2E_TMP/run" "$E2E_LOGDIR"
    AS=()
    OWNER=$(id -un)
fi
RUN=$E2E_TMP/run
D=$RUN/data
OUT=$E2E_TMP/out
ERR=$E2E_TMP/err

# mc ARGS... : mesh-control (as nobody when root), cwd $E2E_TMP; stdout in
# $OUT, stderr in $ERR (both also appended to the log); sets RC.
mc() {
    (cd "$E2E_TMP" && "${AS[@]}" "$MC" "$@") >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    {
        echo "\$ mesh-control $* -> $RC"
        cat "$OUT" "$ERR"
    } >>"$E2E_LOGDIR/mesh-control.log"
    return 0
}
# mcd ARGS... : mc with --data $D
mcd() { mc --data "$D" "$@"; }

rc_is() { [ "$RC" -eq "$1" ] || { echo "exit $RC, wanted $1"; cat "$OUT" "$ERR"; return 1; }; }
err_has() { grep -Eq -- "$1" "$ERR" || { echo "stderr lacks /$1/:"; cat "$ERR"; return 1; }; }
out_has() { grep -Eq -- "$1" "$OUT" || { echo "stdout lacks /$1/:"; cat "$OUT"; return 1; }; }
json_ok() { python3 -m json.tool "$OUT" >/dev/null; }
mode_of() { stat -c '%a %U' "$1"; }
# pyjson EXPR : evaluates a python expression over j = the JSON on stdout.
pyjson() { python3 -c "import json,sys,time; j=json.load(open('$OUT')); sys.exit(0 if ($1) else 1)"; }

# usage_err WHAT REGEX ARGS... : exit 2 and a message naming the problem.
usage_err() {
    local what=$1 re=$2
    shift 2
    mc "$@"
    check "usage error: $what (exit 2, says /$re/)" \
        eval 'rc_is 2 && err_has "^mesh-control: .*$re" && err_has "mesh-control --help"'
}

step "help and version"
mc --help
check "--help exits 0 with copy-paste examples" eval 'rc_is 0 && out_has "^examples:" && out_has "mesh-control token"'
mc --version
check "--version" eval 'rc_is 0 && out_has "^mesh-control [0-9]+\.[0-9]+"'

step "init"
mc --data "$D" nodes list
check "an uninitialised directory: exit 1, says to run init" eval 'rc_is 1 && err_has "init"'
mcd init
check "init exits 0 and names the mesh" eval 'rc_is 0 && out_has "initialised mesh [0-9a-f]{32}"'
check "data directory is 0700 $OWNER" [ "$(mode_of "$D")" = "700 $OWNER" ]
for f in control.db server.key control.conf; do
    check "$f is 0600 $OWNER" [ "$(mode_of "$D/$f")" = "600 $OWNER" ]
done
KEY=$(cat "$D/server.key")
check "server.key is a base64 32-byte key (as wg genkey)" \
    python3 -c "import base64,sys; sys.exit(0 if len(base64.b64decode(sys.argv[1], validate=True)) == 32 else 1)" "$KEY"
check "control.conf records the default listen address" grep -qx 'listen = 127.0.0.1:7443' "$D/control.conf"
SUM=$(sha "$D/server.key")
mcd init
check "init twice is refused (exit 1, says so)" eval 'rc_is 1 && err_has "already initialised"'
check "init twice leaves server.key unchanged" [ "$(sha "$D/server.key")" = "$SUM" ]
mc --data "$RUN/v6" init --listen '[fd00::7]:8443' --domain corp.mesh
check "init --listen [v6]:port --domain" eval 'rc_is 0 && out_has "corp.mesh" && grep -qx "listen = \[fd00::7\]:8443" "$RUN/v6/control.conf"'

step "auth keys"
mcd keys create
check "keys create prints the secret once" eval 'rc_is 0 && [ "$(wc -l <"$OUT")" -eq 1 ] && out_has "^mkey-1-[0-9a-f]{48}$" && err_has "shown only once"'
S1=$(cat "$OUT")
mcd keys create --reusable --ephemeral --expiry 2h --tags web,ci
check "keys create --reusable --ephemeral --expiry 2h --tags web,ci" eval 'rc_is 0 && out_has "^mkey-2-"'
mcd keys list
check "keys list: a header and two keys" eval 'rc_is 0 && [ "$(wc -l <"$OUT")" -eq 3 ] && out_has "^2 +reusable +yes .*tag:web,tag:ci"'
check "keys list does not show secrets" eval '! grep -q "${S1#mkey-1-}" "$OUT"'
mcd keys list --json
check "keys list --json parses" json_ok
check "keys list --json: fields of both keys" pyjson \
    "len(j) == 2 and j[0]['id'] == 1 and not j[0]['reusable'] and j[0]['expiry'] == 0 and j[1]['reusable'] and j[1]['ephemeral'] and j[1]['tags'] == 'tag:web,tag:ci' and abs(j[1]['expiry'] - time.time() - 7200) < 60 and j[1]['state'] == 'valid'"
mcd keys revoke 1
check "keys revoke 1" eval 'rc_is 0 && out_has "revoked auth key 1"'
mcd keys list --json
check "the revoked key shows as revoked" pyjson "j[0]['revoked'] and j[0]['state'] == 'revoked'"
mcd keys revoke 99
check "keys revoke 99: exit 1, no such key" eval 'rc_is 1 && err_has "no auth key 99"'

step "join token"
mcd token --reusable --expiry 10m
check "token prints one mesh1 string" eval 'rc_is 0 && [ "$(wc -l <"$OUT")" -eq 1 ] && out_has "^mesh1[A-Za-z0-9_-]{60,}$"'
TOKEN=$(cat "$OUT")
mc token-decode "$TOKEN"
check "the token decodes" rc_is 0
check "the token names 127.0.0.1:7443" eval 'out_has "^host 127\.0\.0\.1$" && out_has "^port 7443$"'
check "the token carries auth key 3" out_has '^auth_key mkey-3-[0-9a-f]{48}$'
TOKKEY=$(sed -n 's/^server_key //p' "$OUT")
if [ -x "$MESH_BUILD/mesh-proxy" ]; then
    check "the token's server key is server.key's public key" \
        [ "$(printf '%s\n' "$KEY" | "$MESH_BUILD/mesh-proxy" pubkey)" = "$TOKKEY" ]
fi
mcd keys list --json
check "the token's auth key is listed (reusable)" pyjson "len(j) == 3 and j[2]['id'] == 3 and j[2]['reusable']"
BAD=${TOKEN:0:20}$([ "${TOKEN:20:1}" = A ] && echo B || echo A)${TOKEN:21}
mc token-decode "$BAD"
check "a changed character fails the checksum (exit 1)" eval 'rc_is 1 && err_has "checksum"'
mc --data "$RUN/v6" token
TOKEN6=$(cat "$OUT")
mc token-decode "$TOKEN6"
check "a token from init --listen [fd00::7]:8443" eval 'rc_is 0 && out_has "^host fd00::7$" && out_has "^port 8443$"'
mcd token --no-key
check "token --no-key prints one mesh1 string and says nodes wait for approval" \
    eval 'rc_is 0 && [ "$(wc -l <"$OUT")" -eq 1 ] && out_has "^mesh1[A-Za-z0-9_-]{50,}$" && err_has "without an auth key" && err_has "nodes approve NAME"'
TOKEN0=$(cat "$OUT")
mc token-decode "$TOKEN0"
check "the --no-key token decodes with an empty auth key" \
    eval 'rc_is 0 && out_has "^host 127\.0\.0\.1$" && grep -qxF "server_key $TOKKEY" "$OUT" && out_has "^auth_key \(none\)$"'
mcd keys list --json
check "token --no-key creates no auth key (still three)" pyjson "len(j) == 3"
check "the private key appears in no output" \
    eval '! grep -qF -- "$KEY" "$E2E_LOGDIR/mesh-control.log"'

step "serve: approval mode is opt-in (--allow-pending)"
mcd serve --help
check "serve --help names --allow-pending and says keyless nodes are refused without it" \
    eval 'rc_is 0 && out_has "--allow-pending +hold nodes that join without an auth key" && out_has "they are refused" && out_has "--max-pending-per-source N"'
mcd serve --max-pending 5
check "serve --max-pending without --allow-pending: exit 2, says what it needs" \
    eval 'rc_is 2 && err_has "need --allow-pending" && err_has "serve --help"'
mcd serve --no-pending --allow-pending
check "serve --no-pending --allow-pending: exit 2" \
    eval 'rc_is 2 && err_has "exclude each other"'

step "nodes (none can exist before serve)"
mcd nodes list
check "nodes list: empty, exit 0" eval 'rc_is 0 && [ ! -s "$OUT" ]'
mcd nodes list --json
check "nodes list --json: []" eval 'rc_is 0 && json_ok && pyjson "j == []"'
for a in approve remove expire; do
    mcd nodes $a web
    check "nodes $a web: exit 1, no such node" eval 'rc_is 1 && err_has "no node with ID or name \"web\""'
done
mcd nodes rename 7 db
check "nodes rename 7 db: exit 1, no such node" eval 'rc_is 1 && err_has "no node with ID or name \"7\""'

step "a pending node (joined with a --no-key token) and nodes approve"
# serve would add it; here it is written into the store directly (the
# columns of store_sqlite.c's nodes table); the files keep their owner.
python3 - "$D/control.db" <<'PY' || fail "cannot add a node to control.db"
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO nodes (machine_key, node_key, disco_key, hostname, name,"
           " ipv4, ipv6, approved, ephemeral, created, version)"
           " VALUES (?, ?, ?, 'web-host', 'web', ?, ?, 0, 0, ?, 1)",
           (b"m" * 32, b"n" * 32, b"d" * 32, 0x64400005,
            bytes.fromhex("fd7a115ca1e000000000000000000005"), int(time.time())))
db.commit()
db.close()
PY
chown --reference="$D/server.key" "$D"/control.db*
mcd nodes list
check "nodes list: the node reads pending approval, not approved" \
    eval 'rc_is 0 && out_has "^1 +web +- +100\.64\.0\.5 +fd7a:115c:a1e0::5 +pending approval +no " && err_has "1 node pending approval" && err_has "nodes approve NAME"'
mcd nodes list --json
check "nodes list --json: the same fields as the admin API, in order" pyjson \
    "[list(n) for n in j] == [['id', 'name', 'fqdn', 'hostname', 'ipv4', 'ipv6', 'online', 'last_seen', 'approved', 'ephemeral', 'expiry', 'expired', 'tags', 'user', 'created', 'key']]"
check "nodes list --json: the pending node's values" pyjson \
    "j[0]['id'] == 1 and j[0]['name'] == 'web' and j[0]['fqdn'].startswith('web.') and j[0]['hostname'] == 'web-host' and j[0]['ipv4'] == '100.64.0.5' and j[0]['ipv6'] == 'fd7a:115c:a1e0::5' and j[0]['approved'] is False and j[0]['online'] is False and j[0]['expired'] is False and j[0]['tags'] == '' and j[0]['user'] == ''"
# the fingerprint of machine key b"m" * 32: its first 8 bytes in hex
FPR=6d6d6d6d6d6d6d6d
mcd nodes list --pending
check "nodes list --pending: id, name, key, hostname" \
    eval 'rc_is 0 && out_has "^ID +NAME +KEY " && out_has "^1 +web +$FPR .* web-host$" && err_has "nodes approve NAME --key KEY"'
mcd nodes approve web
check "nodes approve web (pending, bare name): exit 2, asks for the key" \
    eval 'rc_is 2 && err_has "node 1 \(web\) is waiting for approval" && err_has "nodes approve web --key KEY" && [ ! -s "$OUT" ]'
mcd nodes approve 1
check "nodes approve 1 (pending, bare ID): exit 2, asks for the key" \
    eval 'rc_is 2 && err_has "node 1 \(web\) is waiting for approval" && err_has "nodes approve 1 --key KEY" && [ ! -s "$OUT" ]'
mcd nodes approve web --key 0011223344556677
check "nodes approve web --key (another device's): exit 1, nothing approved" \
    eval 'rc_is 1 && err_has "has key $FPR, not 0011223344556677" && err_has "nothing approved"'
mcd nodes list --json
check "still pending after the refused approvals" pyjson "j[0]['approved'] is False and j[0]['key'] == '$FPR'"
mcd nodes approve web --key "$FPR"
check "nodes approve web --key FPR" eval 'rc_is 0 && out_has "^approved node 1 \(web\)$"'
mcd nodes list --pending
check "nodes list --pending: nobody waits" eval 'rc_is 0 && [ ! -s "$OUT" ] && err_has "no node is waiting for approval"'
mcd nodes list
check "after approval: yes, no pending hint" eval 'rc_is 0 && out_has "^1 +web .* never seen +yes " && ! grep -q pending "$OUT" "$ERR"'
mcd keys list --json
check "keys list --json: the same fields as the admin API, in order" pyjson \
    "all(list(k) == ['id', 'reusable', 'ephemeral', 'revoked', 'uses', 'state', 'expiry', 'created', 'tags', 'user'] for k in j)"

step "MESH_CONTROL_DATA"
(cd "$E2E_TMP" && MESH_CONTROL_DATA=$D "${AS[@]}" env MESH_CONTROL_DATA="$D" "$MC" keys list --json) >"$OUT" 2>"$ERR"
RC=$?
check "the data directory from \$MESH_CONTROL_DATA" eval 'rc_is 0 && pyjson "len(j) == 3"'

step "serve: the admin API's address, the open-file limit"
# free_port : a loopback TCP port nobody listens on, below the kernel's
# ephemeral range (32768-60999: outgoing connections of the tests running
# beside this one take their ports there), locked for the rest of this
# script (an flock on /tmp/meshproxy-e2e-port.PORT.lock, kept open) so that
# a run beside this one (the other build's) takes another. serve refuses
# port 0. Sets PORT.
free_port() {
    local p fd
    for p in $(seq 23100 23199); do
        exec {fd}>"/tmp/meshproxy-e2e-port.$p.lock" 2>/dev/null || continue
        if flock -n "$fd" && [ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]; then
            PORT=$p
            return 0
        fi
        exec {fd}>&-
    done
    die "no free port in 23100-23199 (other runs hold them?)"
}
free_port
LP=127.0.0.1:$PORT
free_port
AP=127.0.0.1:$PORT
mcd serve --listen "$LP" --admin-listen 0.0.0.0:8080
check "serve refuses a non-loopback --admin-listen without --admin-insecure" \
    eval 'rc_is 1 && err_has "is not a loopback address" && err_has "--admin-insecure"'
mcd serve --max-unregistered-per-source 0
check "serve --max-unregistered-per-source 0: exit 2" \
    eval 'rc_is 2 && err_has "expected a number from 1 to 100000"'
mcd serve --handshakes-total 0
check "serve --handshakes-total 0: exit 2, says the range" \
    eval 'rc_is 2 && err_has "--handshakes-total 0: expected a number from 1 to 1000000"'
mcd serve --help
check "serve --help names --handshakes-total and --no-seen-ip" \
    eval 'rc_is 0 && out_has "--handshakes-total N" && out_has "--no-seen-ip +publish no"'
mcd serve --admin-insecure
check "serve --admin-insecure without --admin-listen: exit 2" \
    eval 'rc_is 2 && err_has "only goes with --admin-listen" && err_has "serve --help"'
(ulimit -n 70; mcd serve --listen "$LP"; exit "$RC")
RC=$?
check "serve under a tiny open-file limit refuses and says what to do" \
    eval 'rc_is 1 && err_has "leaves room for 6 node connections" && err_has "ulimit -n"'
HARD=$(ulimit -Hn)
if [ "$HARD" = unlimited ] || [ "$HARD" -ge 10064 ]; then
    (ulimit -Sn 200; cd "$E2E_TMP" && timeout -s INT 2 "${AS[@]}" "$MC" --data "$D" \
        serve --listen "$LP") >"$OUT" 2>"$ERR" </dev/null
    check "serve raises a low soft open-file limit to the hard one" \
        err_has "at most 10000 node connections"
fi
(ulimit -n 200; cd "$E2E_TMP" && timeout -s INT 2 "${AS[@]}" "$MC" --data "$D" \
    serve --listen "$LP" --admin-listen "$AP") >"$OUT" 2>"$ERR" </dev/null
check "serve clamps its node connections to the open-file limit and says so" \
    eval 'err_has "the open-file limit is 200: at most 72 node connections" &&
          err_has "serving mesh .* \\(at most 72 node connections\\)"'

step "bad arguments"
usage_err "no command" "no command"
usage_err "no data directory" "pass --data DIR or set MESH_CONTROL_DATA" keys list
usage_err "unknown command" "unknown command frobnicate" --data "$D" frobnicate
usage_err "unknown option" "unknown option --bogus" --data "$D" keys list --bogus
usage_err "option of another command" "keys list does not take --reusable" --data "$D" keys list --reusable
usage_err "--expiry without a unit" "--expiry 5: expected a duration" --data "$D" keys create --expiry 5
usage_err "--expiry with a bad unit" "--expiry 5y" --data "$D" token --expiry 5y
usage_err "--expiry without a value" "--expiry needs a value" --data "$D" token --expiry
usage_err "empty tag" "--tags a,,b" --data "$D" keys create --tags a,,b
usage_err "token --no-key with a key option" "token --no-key cannot be combined with --reusable" --data "$D" token --no-key --reusable
usage_err "token --no-key with --tags" "token --no-key cannot be combined with --tags" --data "$D" token --tags web --no-key
usage_err "--no-key on keys create" "keys create does not take --no-key" --data "$D" keys create --no-key
usage_err "keys revoke without an ID" "needs a key ID" --data "$D" keys revoke
usage_err "keys revoke abc" "expected a key ID" --data "$D" keys revoke abc
usage_err "keys without a subcommand" "keys needs a subcommand" --data "$D" keys
usage_err "nodes rename without a new name" "needs a node ID or name and the new name" --data "$D" nodes rename 1
usage_err "extra argument" "unexpected argument extra" --data "$D" nodes list extra
usage_err "--key on nodes remove" "nodes remove does not take --key" --data "$D" nodes remove 1 --key "$FPR"
usage_err "init --listen without a port" "--listen 198.18.0.1: expected HOST:PORT" --data "$RUN/x" init --listen 198.18.0.1
usage_err "init --listen port 0" "expected HOST:PORT" --data "$RUN/x" init --listen 198.18.0.1:0
check "a refused init leaves no data directory" [ ! -e "$RUN/x" ]
mcd keys list --json
check "bad arguments changed nothing (still three keys)" pyjson "len(j) == 3"

e2e_finish
