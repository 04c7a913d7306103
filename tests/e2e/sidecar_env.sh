#!/usr/bin/env bash
# mesh-proxy configured by MESH_* variables (issue 17), every program as
# nobody:
#
#   lan 198.18.63.0/24, one namespace per host:
#   ctl   198.18.63.1   mesh-control serve on :7443; also the "other host"
#                       that uses side's proxies from the LAN
#   web   198.18.63.12  mesh-proxy up --expose 8080 (a web server on
#                       127.0.0.1:8080 says "i am web")
#   side  198.18.63.11  mesh-proxy sidecar, settings from MESH_* only
#
# Checks: conflicting or bad settings exit 2 with one line and touch
# nothing (MESH_JOIN + MESH_JOIN_FILE, --hostname a + MESH_HOSTNAME=b, a
# proxy on 0.0.0.0 without credentials); a sidecar joins from
# MESH_JOIN_FILE and serves SOCKS5 on 127.0.0.1 for a port-only
# MESH_SOCKS5; MESH_FORWARDS reaches web's service by name (one on 0.0.0.0
# only with MESH_PROXY_OPEN=yes); restarted with no token (it resumes) and
# proxies on 0.0.0.0 with MESH_PROXY_USER and MESH_PROXY_PASSWORD_FILE,
# other hosts get in with the password through SOCKS5 and HTTP and not
# without it or with a wrong one; the sidecar keeps nothing of a start's
# settings (the forward is gone, no prefs.json); an open proxy of one start
# is gone at the next start without MESH_SOCKS5; MESH_PROXY_PASSWORD is not
# in /proc/PID/environ; `mesh-proxy health` finds the node by
# MESH_STATE_DIR, says one line when there is none and gives up on a
# stuck (SIGSTOPped) node after 5 s; a newline in
# MESH_SOCKS5 (an INI injection), MESH_EPHEMERAL=no without a state
# directory and a forward on 0.0.0.0 without the waiver are refused;
# --config FILE with --forward is `up` (an up-only flag is never ignored).
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip python3 setpriv ss curl
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

# mp_env HOST VAR=VALUE... -- ARGS... : mesh-proxy as nobody in HOST with
# only these MESH_* variables (and the harness's); RC, $OUT, $ERR.
mp_env() {
    local h=$1 vars=()
    shift
    while [ "$1" != "--" ]; do vars+=("$1"); shift; done
    shift
    nsx_nobody "$h" env "${vars[@]}" timeout 20 "$MESH_PROXY" "$@" \
        >"$OUT" 2>"$ERR" </dev/null
    RC=$?
    { echo "\$ [$h] ${vars[*]} mesh-proxy $* -> $RC"; cat "$OUT" "$ERR"; } >>"$E2E_LOGDIR/cli.log"
    return 0
}
# usage_line REGEX : exit 2 and stderr exactly one line matching REGEX
usage_line() {
    [ "$RC" -eq 2 ] || { echo "exit $RC, wanted 2"; cat "$OUT" "$ERR"; return 1; }
    [ "$(wc -l <"$ERR")" -eq 1 ] || { echo "stderr is not one line:"; cat "$ERR"; return 1; }
    grep -Eq -- "$1" "$ERR" || { echo "stderr lacks /$1/:"; cat "$ERR"; return 1; }
}

step "hosts: ctl, web, side on a LAN"
declare -A LANIP=([ctl]=198.18.63.1 [side]=198.18.63.11 [web]=198.18.63.12)
for h in ctl side web; do
    ns_create "$h"
    ns_lan "$h" "${LANIP[$h]}/24"
done
mkdir -p "$E2E_TMP/www-web"
echo "i am web" | write_file "$E2E_TMP/www-web/index.html"
chmod 0755 "$E2E_TMP/www-web"
bg_nobody web-httpd web "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www-web"
wait_listen web 8080 10 || die "web server on web did not start"

step "mesh-control (as nobody); the token in a secret file"
nsx_nobody ctl "$MC" --data "$RUN/control" init --listen 198.18.63.1:7443 \
    --domain mesh.internal >>"$E2E_LOGDIR/control.log" 2>&1 || die "mesh-control init failed"
bg_nobody control ctl "$MC" --data "$RUN/control" serve
wait_listen ctl 7443 10 || die "mesh-control serve did not listen"
TOKEN=$(nsx_nobody ctl "$MC" --data "$RUN/control" token --reusable --expiry 1h) ||
    die "mesh-control token failed"
SECRETS=$E2E_TMP/secrets
mkdir -p "$SECRETS"
printf '%s\n' "$TOKEN" | write_file "$SECRETS/join"
printf 'c0rrect horse;#1\n' | write_file "$SECRETS/pw"
chown -R nobody:nogroup "$SECRETS"
chmod 0700 "$SECRETS"
chmod 0400 "$SECRETS/join" "$SECRETS/pw"

step "web: mesh-proxy up --expose 8080"
bg_nobody web web "$MESH_PROXY" up --join "$TOKEN" --state "$RUN/web" --hostname web \
    --expose 8080 --log-level debug
web_joined() { nsx_nobody web timeout 5 "$MESH_PROXY" ip --state "$RUN/web" >/dev/null 2>&1; }
check "web joined" wait_until 20 web_joined || die "web did not join"

step "bad or conflicting settings: exit 2, one line, nothing touched"
SS=$RUN/side
check "MESH_JOIN and MESH_JOIN_FILE both set" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_JOIN="$TOKEN" MESH_JOIN_FILE="$SECRETS/join" -- sidecar &&
    usage_line "^mesh-proxy: MESH_JOIN and MESH_JOIN_FILE are both set: keep one of them$"'
check "--hostname a with MESH_HOSTNAME=b" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_JOIN_FILE="$SECRETS/join" MESH_HOSTNAME=b -- up --hostname a &&
    usage_line "MESH_HOSTNAME=b conflicts with --hostname a"'
check "MESH_SOCKS5=0.0.0.0:1080 without credentials" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_JOIN_FILE="$SECRETS/join" MESH_SOCKS5=0.0.0.0:1080 -- sidecar &&
    usage_line "--socks5 0.0.0.0:1080 can be reached from other hosts and has no credentials: give --proxy-user NAME and --proxy-password-file FILE.*--proxy-open"'
check "MESH_FORWARDS malformed" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_JOIN_FILE="$SECRETS/join" MESH_FORWARDS=9080=web -- sidecar &&
    usage_line "MESH_FORWARDS: \"9080=web\" is not \\[udp/\\]\\[ADDR:\\]PORT=HOST:PORT"'
check "MESH_JOIN_FILE empty" eval '
    : | write_file "$E2E_TMP/empty" && chmod 0644 "$E2E_TMP/empty" &&
    mp_env side MESH_STATE_DIR="$SS" MESH_JOIN_FILE="$E2E_TMP/empty" -- sidecar &&
    usage_line "MESH_JOIN_FILE .*empty: the first line is empty"'
check "MESH_EPHEMERAL=yes with MESH_STATE_DIR" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_EPHEMERAL=yes -- sidecar &&
    usage_line "MESH_EPHEMERAL.* and a state directory .* exclude each other"'
check "a bad flag in MESH_EXTRA_ARGS is named there" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_EXTRA_ARGS="--hostname side --frobnicate" -- sidecar &&
    usage_line "^mesh-proxy: MESH_EXTRA_ARGS: unknown option --frobnicate$"'
check "MESH_SOCKS5 with a newline (INI injection) is refused" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_JOIN_FILE="$SECRETS/join" MESH_PROXY_USER=app \
        MESH_PROXY_PASSWORD_FILE="$SECRETS/pw" \
        MESH_SOCKS5="$(printf "0.0.0.0:1080\nAllowOpen=yes\n[Socks5]\nBindAddress=127.0.0.1:1081")" -- sidecar &&
    usage_line "^mesh-proxy: MESH_SOCKS5 holds a control character"'
check "MESH_SOCKS5 not an address:port is refused" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_JOIN_FILE="$SECRETS/join" MESH_SOCKS5="1080 x" -- sidecar &&
    usage_line "MESH_SOCKS5=1080 x: want PORT, IPV4:PORT, \[IPV6\]:PORT or off"'
check "MESH_EPHEMERAL=no for a sidecar without a state directory" eval '
    mp_env side MESH_JOIN_FILE="$SECRETS/join" MESH_EPHEMERAL=no -- sidecar &&
    usage_line "MESH_EPHEMERAL=no, but a sidecar without a state directory is ephemeral"'
check "a forward on 0.0.0.0 without MESH_PROXY_OPEN" eval '
    mp_env side MESH_STATE_DIR="$SS" MESH_JOIN_FILE="$SECRETS/join" MESH_FORWARDS=0.0.0.0:9081=web:8080 -- sidecar &&
    usage_line "--forward: 0.0.0.0:9081 can be reached from other hosts .*--proxy-open"'
check "a token-like argument is not echoed" eval '
    mp_env side -- up mesh1SECRETLOOKINGARG && [ "$RC" -eq 2 ] &&
    grep -q "unknown command (21 characters, not shown)" "$ERR" && not grep -q SECRETLOOKING "$ERR"'
check "mesh-proxy health without a node: one line, exit 1" eval '
    mp_env side -- health; [ "$RC" -eq 1 ] && [ "$(wc -l <"$ERR")" -eq 1 ] ||
        { cat "$ERR"; false; }'
XS=$E2E_TMP/xdg-state
mkdir -p "$XS" && chown nobody:nogroup "$XS"
printf '[Peer]\nPublicKey = AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=\nAllowedIPs = 100.64.0.9/32\n' |
    write_file "$E2E_TMP/peer.ini"
chmod 0644 "$E2E_TMP/peer.ini"
check "--config FILE --forward: an up-only flag makes it up (not silently ignored)" eval '
    mp_env side XDG_STATE_HOME="$XS" -- --config "$E2E_TMP/peer.ini" --forward 0.0.0.0:9999=web:80 &&
    usage_line "^mesh-proxy: --forward: 0.0.0.0:9999 can be reached from other hosts"'
check "the state directory was never made" not test -e "$SS"

step "side: mesh-proxy sidecar from MESH_* (port-only SOCKS5, a forward by name)"
bg_nobody side side env MESH_STATE_DIR="$SS" MESH_JOIN_FILE="$SECRETS/join" \
    MESH_HOSTNAME=side MESH_SOCKS5=1080 MESH_FORWARDS=9080=web:8080,0.0.0.0:9081=web:8080 \
    MESH_PROXY_OPEN=yes MESH_LOG_LEVEL=debug \
    "$MESH_PROXY" sidecar
side_sees_web() { nsx_nobody side timeout 5 "$MESH_PROXY" status --state "$SS" 2>/dev/null | grep -q '\bweb\b'; }
check "side joined as side and sees web" wait_until 20 side_sees_web ||
    { tail -n 30 "$E2E_LOGDIR/side.log"; die "side did not join"; }
check "no warning about the harness's MESH_* variables" not grep -q "is not a setting" "$E2E_LOGDIR/side.log"
listens_on() { nsx "$1" ss -ltnH "sport = :$2" | awk '{print $4}' | grep -qx -- "$3"; }
check "SOCKS5 listens on 127.0.0.1:1080 only" wait_until 10 listens_on side 1080 127.0.0.1:1080
check "the forward listens on 127.0.0.1:9080" listens_on side 9080 127.0.0.1:9080
fetch() { # HOST ARGS... : curl's body must be "i am web"
    local h=$1 got
    shift
    got=$(nsx "$h" curl -sS --max-time 10 "$@" 2>>"$E2E_LOGDIR/curl.log")
    [ "$got" = "i am web" ] || { echo "got: $got"; return 1; }
}
check "curl through SOCKS5 127.0.0.1:1080 reaches http://web:8080/" \
    wait_until 20 fetch side --socks5-hostname 127.0.0.1:1080 http://web:8080/
check "MESH_FORWARDS=9080=web:8080: http://127.0.0.1:9080/ is web" fetch side http://127.0.0.1:9080/
check "a forward on 0.0.0.0 works from another host and was warned about" eval '
    fetch ctl http://198.18.63.11:9081/ &&
    grep -q "forward: 0.0.0.0:9081 is reachable from other hosts" "$E2E_LOGDIR/side.log"'

step "restart: no token (resumes), proxies on 0.0.0.0 with credentials"
bg_stop side
bg_nobody side side env MESH_STATE_DIR="$SS" MESH_SOCKS5=0.0.0.0:1080 \
    MESH_HTTP_PROXY=0.0.0.0:8118 MESH_PROXY_USER=app \
    MESH_PROXY_PASSWORD_FILE="$SECRETS/pw" "$MESH_PROXY" sidecar
check "SOCKS5 now listens on 0.0.0.0:1080" wait_until 20 listens_on side 1080 0.0.0.0:1080 ||
    tail -n 30 "$E2E_LOGDIR/side.log"
check "HTTP proxy listens on 0.0.0.0:8118" wait_until 10 listens_on side 8118 0.0.0.0:8118
check "the forward of the last start is gone (a sidecar keeps no settings)" \
    not listens_on side 9080 127.0.0.1:9080
check "no prefs.json (a sidecar neither reads nor writes it)" not test -e "$SS/prefs.json"
check "mesh-proxy health finds the node by MESH_STATE_DIR" eval '
    mp_env side MESH_STATE_DIR="$SS" -- health; [ "$RC" -eq 0 ] && grep -qx ready "$OUT" ||
        { cat "$OUT" "$ERR"; false; }'
P='c0rrect horse;#1'
check "from ctl: SOCKS5 with the password reaches web" \
    wait_until 20 fetch ctl --proxy-user "app:$P" --socks5-hostname 198.18.63.11:1080 http://web:8080/
check "from ctl: SOCKS5 with a wrong password is refused" \
    not fetch ctl --proxy-user "app:wrong" --socks5-hostname 198.18.63.11:1080 http://web:8080/
check "from ctl: SOCKS5 without credentials is refused" \
    not fetch ctl --socks5-hostname 198.18.63.11:1080 http://web:8080/
check "from ctl: HTTP proxy with the password reaches web" \
    fetch ctl --proxy-user "app:$P" -x http://198.18.63.11:8118 http://web:8080/
code() { nsx ctl curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@"; }
c=$(code --proxy-user app:wrong -x http://198.18.63.11:8118 http://web:8080/)
check "from ctl: HTTP proxy with a wrong password: 407 (got $c)" test "$c" = 407
c=$(code -x http://198.18.63.11:8118 http://web:8080/)
check "from ctl: HTTP proxy without credentials: 407 (got $c)" test "$c" = 407
check "the password is not in the log" not grep -q "c0rrect" "$E2E_LOGDIR/side.log"

step "an open proxy of one start is gone at the next (state volume kept)"
bg_stop side
bg_nobody side side env MESH_STATE_DIR="$SS" MESH_SOCKS5=0.0.0.0:1085 MESH_PROXY_OPEN=yes \
    "$MESH_PROXY" sidecar
check "open SOCKS5 listens on 0.0.0.0:1085" wait_until 20 listens_on side 1085 0.0.0.0:1085
bg_stop side
PWENV='s3cr3t-from-env-1'
bg_nobody side side env MESH_STATE_DIR="$SS" MESH_HTTP_PROXY=3128 MESH_PROXY_USER=app \
    MESH_PROXY_PASSWORD="$PWENV" "$MESH_PROXY" sidecar
SIDE_PID=$(bg_pid side)
check "restarted without MESH_SOCKS5: HTTP proxy on 127.0.0.1:3128" \
    wait_until 20 listens_on side 3128 127.0.0.1:3128
nothing_on() { [ -z "$(nsx side ss -ltnH "sport = :$1")" ]; }
check "restarted without MESH_SOCKS5: no listener on 1085" nothing_on 1085
check "MESH_PROXY_PASSWORD is not in /proc/PID/environ" eval '
    [ -r /proc/$SIDE_PID/environ ] && ! tr "\0" "\n" </proc/$SIDE_PID/environ | grep -q "$PWENV"'
check "... while the environment block is still readable" \
    grep -q MESH_STATE_DIR /proc/$SIDE_PID/environ

step "mesh-proxy health against a stuck node: exit 1, one line, within the 5 s bound"
kill -STOP "$SIDE_PID"
T0=$(date +%s%3N)
mp_env side MESH_STATE_DIR="$SS" -- health
T_H=$(($(date +%s%3N) - T0))
kill -CONT "$SIDE_PID"
check "exit 1 after 5 s, before the harness's 20 s (rc $RC, $T_H ms)" eval \
    '[ "$RC" -eq 1 ] && [ "$T_H" -ge 4900 ] && [ "$T_H" -lt 8000 ]'
check "one line on stderr" eval '[ "$(wc -l <"$ERR")" -eq 1 ] || { cat "$ERR"; false; }'

step "done"
e2e_finish
