#!/usr/bin/env bash
# The mesh-proxy command without --state (issue 12; review proxy M4, M8,
# M9), every program as nobody:
#
#   lan 198.18.62.0/24, one namespace per host:
#   ctl    198.18.62.1   mesh-control serve on :7443
#   alpha  198.18.62.11  mesh-proxy up, HOME=$E2E_TMP/home-alpha (state in
#                        ~/.local/state/mesh-proxy); --expose 8080 (a web
#                        server on 127.0.0.1:8080 says "i am alpha")
#   bravo  198.18.62.12  mesh-proxy up, XDG_STATE_HOME=$E2E_TMP/xdg-bravo
#   cfg    (no LAN)      mesh-proxy --config FILE (wireproxy mode, no state)
#                        with 70 [TCPClientTunnel] sections
#
# Checks: `up` makes the default state directory (0700, parents too);
# bare `status`, `ip`, `ping NAME` and `nc NAME PORT` find the node of
# `up`, and of `--config` (its socket in a private TMPDIR/mesh-proxy-UID
# directory when XDG_RUNTIME_DIR is unset); with no node the error lists
# the paths tried and what to run; a socket served by another user is
# refused by status and nc (SO_PEERCRED), naming the uid; a planted
# /tmp directory is not used; all 70 tunnels listen.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss
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
OUT=$E2E_TMP/out
ERR=$E2E_TMP/err
not() { ! "$@"; }

# Each host's environment: no XDG_RUNTIME_DIR, STATE_DIRECTORY or
# XDG_STATE_HOME from the caller; HOME and TMPDIR of the test's own.
CLEAN=(env -u XDG_RUNTIME_DIR -u XDG_STATE_HOME -u STATE_DIRECTORY)
for d in home-alpha home-bravo xdg-bravo home-empty tmp-cfg; do
    mkdir -p "$E2E_TMP/$d"
    chown nobody:nogroup "$E2E_TMP/$d"
done
declare -A ENV_OF=(
    [alpha]="HOME=$E2E_TMP/home-alpha TMPDIR=$E2E_TMP/tmp-cfg"
    [bravo]="HOME=$E2E_TMP/home-bravo XDG_STATE_HOME=$E2E_TMP/xdg-bravo TMPDIR=$E2E_TMP/tmp-cfg"
    [cfg]="HOME=$E2E_TMP/home-empty TMPDIR=$E2E_TMP/tmp-cfg"
)
# mp HOST ARGS... : the CLI as nobody in HOST's namespace and environment,
# stdout in $OUT, stderr in $ERR (both also in the log); sets RC.
mp() {
    local h=$1
    shift
    # shellcheck disable=SC2086
    nsx_nobody "$h" "${CLEAN[@]}" ${ENV_OF[$h]} timeout 20 "$MESH_PROXY" "$@" \
        >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    { echo "\$ [$h] mesh-proxy $* -> $RC"; cat "$OUT" "$ERR"; } >>"$E2E_LOGDIR/cli.log"
    return $RC
}
out_has() { grep -Eq -- "$1" "$OUT" || { echo "stdout lacks /$1/:"; cat "$OUT" "$ERR"; return 1; }; }
err_has() { grep -Eq -- "$1" "$ERR" || { echo "stderr lacks /$1/:"; cat "$OUT" "$ERR"; return 1; }; }
fails_saying() { # REGEX HOST ARGS... : exit 1, stderr matches REGEX
    local re=$1
    shift
    mp "$@"
    [ "$RC" -eq 1 ] || { echo "exit $RC, wanted 1"; cat "$OUT" "$ERR"; return 1; }
    err_has "$re"
}

step "hosts: ctl, alpha, bravo on a LAN; cfg alone"
declare -A LANIP=([ctl]=198.18.62.1 [alpha]=198.18.62.11 [bravo]=198.18.62.12)
for h in ctl alpha bravo; do
    ns_create "$h"
    ns_lan "$h" "${LANIP[$h]}/24"
done
ns_create cfg
mkdir -p "$E2E_TMP/www-alpha"
echo "i am alpha" | write_file "$E2E_TMP/www-alpha/index.html"
chmod 0755 "$E2E_TMP/www-alpha"
bg_nobody web-alpha alpha "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www-alpha"
wait_listen alpha 8080 10 || die "web server on alpha did not start"

step "mesh-control (as nobody)"
nsx_nobody ctl "$MC" --data "$RUN/control" init --listen 198.18.62.1:7443 \
    --domain mesh.internal >>"$E2E_LOGDIR/control.log" 2>&1 || die "mesh-control init failed"
bg_nobody control ctl "$MC" --data "$RUN/control" serve
wait_listen ctl 7443 10 || die "mesh-control serve did not listen"
TOKEN=$(nsx_nobody ctl "$MC" --data "$RUN/control" token --reusable --expiry 1h) ||
    die "mesh-control token failed"

step "COMMAND --help prints the usage, exit 0"
sub_help() { "$MESH_PROXY" "$@" --help >"$OUT" 2>&1 && grep -q "^usage: mesh-proxy" "$OUT" && grep -q "whois" "$OUT"; }
for sub in status whois ping up nc; do
    check "mesh-proxy $sub --help" sub_help "$sub"
done

step "no node yet: bare status says where it looked and what to run"
check "status: exit 1, lists both paths and \`mesh-proxy up\`" eval '
    fails_saying "no running node found" alpha status &&
    err_has "home-alpha/.local/state/mesh-proxy/api.sock" &&
    err_has "tmp-cfg/mesh-proxy-65534" && err_has "mesh-proxy up"'

step "alpha and bravo: mesh-proxy up without --state"
# shellcheck disable=SC2086
bg_nobody alpha alpha "${CLEAN[@]}" ${ENV_OF[alpha]} "$MESH_PROXY" up --join "$TOKEN" \
    --hostname alpha --expose 8080 --log-level debug
# shellcheck disable=SC2086
bg_nobody bravo bravo "${CLEAN[@]}" ${ENV_OF[bravo]} "$MESH_PROXY" up --join "$TOKEN" \
    --hostname bravo --log-level debug
joined() { mp "$1" ip; }
for h in alpha bravo; do
    check "$h joined; bare \`mesh-proxy ip\` answers" wait_until 20 joined "$h" ||
        { tail -n 20 "$E2E_LOGDIR/$h.log"; die "$h did not join"; }
done
SA=$E2E_TMP/home-alpha/.local/state/mesh-proxy
check "alpha's state: ~/.local/state/mesh-proxy, 0700 nobody, parents 0700" bash -c "
    [ \"\$(stat -c '%a %U' '$SA')\" = '700 nobody' ] &&
    [ \"\$(stat -c '%a %U' '$E2E_TMP/home-alpha/.local/state')\" = '700 nobody' ] &&
    [ -f '$SA/node.key' ] && [ -S '$SA/api.sock' ]"
check "bravo's state: \$XDG_STATE_HOME/mesh-proxy" test -S "$E2E_TMP/xdg-bravo/mesh-proxy/api.sock"
mp alpha ip -4
A4=$(cat "$OUT")
check "alpha's address is in 100.64.0.0/10" bash -c "[[ '$A4' == 100.* ]]"
# alpha reaches bravo's map in the next coalesced delta (~100 ms) after
# alpha's own join answered
lists_alpha() { mp bravo status && out_has alpha; }
check "bare \`mesh-proxy status\` on bravo lists alpha" wait_until 10 lists_alpha
check "bare \`mesh-proxy status --json\` works" eval 'mp bravo status --json && out_has "\"alpha\""'

step "ping NAME and nc NAME PORT"
ping_alpha() { mp bravo ping -c 1 -W 5 "$1" && out_has "^PING $1 \\($A4\\) from our mesh address" && out_has "^reply from $A4: time="; }
check "ping alpha (a map peer's name)" wait_until 20 ping_alpha alpha
check "ping alpha.mesh.internal (MagicDNS full name)" ping_alpha alpha.mesh.internal
check "ping ADDRESS keeps today's output" eval 'mp bravo ping -c 1 -W 5 "$A4" && out_has "^PING $A4 from our mesh address" && out_has "^reply from $A4: time="'
check "ping nosuch: exit 1, no peer named 'nosuch'" eval '
    mp bravo ping -c 1 nosuch; [ "$RC" -eq 1 ] && out_has "no peer is named .nosuch. \\(see mesh-proxy status\\)"'
nc_alpha() {
    local got
    got=$(printf 'GET / HTTP/1.0\r\nHost: alpha\r\n\r\n' |
        nsx_nobody bravo "${CLEAN[@]}" ${ENV_OF[bravo]} timeout 20 "$MESH_PROXY" nc "$1" 8080 | tail -n 1)
    [ "$got" = "i am alpha" ] || { echo "got: $got"; return 1; }
}
check "nc alpha 8080 (bare, by name) reaches alpha's web server" nc_alpha alpha
check "nc alpha.mesh.internal 8080" nc_alpha alpha.mesh.internal
check "nc nosuch 8080: exit 1, says no peer has this name" \
    fails_saying "nosuch:8080: name did not resolve \\(no peer has this name" bravo nc nosuch 8080

step "a socket of another user is refused (SO_PEERCRED)"
# As root, with XDG_RUNTIME_DIR at a directory where nobody serves a fake
# node that answers every request.
mkdir -p "$E2E_TMP/rt" && chown nobody:nogroup "$E2E_TMP/rt"
write_file "$E2E_TMP/fake_api.py" <<'PYEOF'
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1]); s.listen(8)
while True:
    c, _ = s.accept()
    try:
        c.recv(600)
        c.sendall(b"ok\nself: fake node of another user\nHTTP/1.0 200 OK\r\n\r\nfake\n")
    except OSError:
        pass  # the client hung up: a refusal
    c.close()
PYEOF
bg_nobody fake-api cfg "$PY" "$E2E_TMP/fake_api.py" "$E2E_TMP/rt/mesh-proxy.sock"
wait_until 10 test -S "$E2E_TMP/rt/mesh-proxy.sock" || die "the fake API did not start"
as_root() { # ARGS... : the CLI as root with XDG_RUNTIME_DIR=$E2E_TMP/rt
    nsx cfg "${CLEAN[@]}" HOME="$E2E_TMP/home-empty" XDG_RUNTIME_DIR="$E2E_TMP/rt" \
        timeout 20 "$MESH_PROXY" "$@" >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    { echo "\$ [root] mesh-proxy $* -> $RC"; cat "$OUT" "$ERR"; } >>"$E2E_LOGDIR/cli.log"
}
refused() {
    as_root "$@"
    [ "$RC" -eq 1 ] && err_has "served by uid 65534, not by this user \\(uid 0\\)" &&
        not grep -q fake "$OUT"
}
check "root's bare status refuses nobody's socket" refused status
check "root's nc refuses it too (nothing of the stream reaches stdout)" refused nc alpha 8080
check "root's status --state refuses alpha's node (another user's)" refused status --state "$SA"

step "wireproxy mode (--config, no state): 70 tunnels, API in a private TMPDIR directory"
APRIV=$("$MESH_PROXY" genkey)
PEERPUB=$("$MESH_PROXY" genkey | "$MESH_PROXY" pubkey)
{
    printf '[Interface]\nPrivateKey = %s\nAddress = 100.99.0.1/32\n\n' "$APRIV"
    printf '[Peer]\nName = gw\nPublicKey = %s\nAllowedIPs = 100.99.0.2/32\n' "$PEERPUB"
    for i in $(seq 0 69); do
        printf '\n[TCPClientTunnel]\nBindAddress = 127.0.0.1:%d\nTarget = 100.99.0.2:%d\n' \
            $((20000 + i)) $((20000 + i))
    done
} | write_file "$E2E_TMP/cfg.ini"
# First a directory planted by someone else at the path: the node must not
# use it (no API) and the CLI must not trust it.
mkdir -p "$E2E_TMP/tmp-bad/mesh-proxy-65534" && chmod 1777 "$E2E_TMP/tmp-bad"
chmod 0777 "$E2E_TMP/tmp-bad/mesh-proxy-65534"
bg_nobody cfg-bad cfg "${CLEAN[@]}" HOME="$E2E_TMP/home-empty" TMPDIR="$E2E_TMP/tmp-bad" \
    "$MESH_PROXY" --config "$E2E_TMP/cfg.ini"
check "a planted TMPDIR/mesh-proxy-65534 (root's, 0777): the node disables its API, saying why" \
    wait_log "$E2E_LOGDIR/cfg-bad.log" "local API disabled: .*mesh-proxy-65534 is not a private directory" 10
check "... and creates no socket there" not test -e "$E2E_TMP/tmp-bad/mesh-proxy-65534/api.sock"
bg_stop cfg-bad
chmod 1777 "$E2E_TMP/tmp-cfg"
bg_nobody cfg cfg "${CLEAN[@]}" ${ENV_OF[cfg]} "$MESH_PROXY" --config "$E2E_TMP/cfg.ini"
n_listen() { [ "$(nsx cfg ss -ltnH 'sport >= :20000 and sport <= :20069' | wc -l)" -eq 70 ]; }
check "all 70 [TCPClientTunnel] sections listen (review M8: 64 before)" wait_until 10 n_listen
check "the API: TMPDIR/mesh-proxy-65534/api.sock, the directory 0700 nobody" bash -c "
    [ \"\$(stat -c '%a %U' '$E2E_TMP/tmp-cfg/mesh-proxy-65534')\" = '700 nobody' ] &&
    [ -S '$E2E_TMP/tmp-cfg/mesh-proxy-65534/api.sock' ]"
check "bare status finds the --config node (no state directory)" eval '
    wait_until 10 mp cfg status && out_has "127.0.0.1:20069"'
check "ping gw resolves a [Peer] Name (the peer is not there: no reply)" eval '
    mp cfg ping -c 1 -W 1 gw; [ "$RC" -eq 1 ] && out_has "^PING gw \(100.99.0.2\) from our mesh address" &&
    out_has "^no reply from 100.99.0.2: timed out"'

e2e_finish
