#!/usr/bin/env bash
# The host's resolver configuration is read again when it changes and on
# SIGHUP (review proxy M7: it was read once, so after a network change
# Direct names kept going to the old server until a restart).
#
#   A  198.18.0.1  mesh-proxy (a configuration file, [Socks5] Direct = all)
#                  in a mount namespace whose /etc/resolv.conf is a file of
#                  the test (bind-mounted); DNS servers on 127.0.0.1 and
#                  127.0.0.2 answer web.test with 198.18.0.2 and 198.18.0.3
#   B  198.18.0.2, 198.18.0.3: a web server on each, with different pages
#
# Checks: curl --socks5-hostname web.test reaches the first server's
# address; after resolv.conf is rewritten to name the second server, the
# same request reaches the other address (no restart, no signal); after a
# rewrite back plus SIGHUP the log says it was read again, and the first
# address answers again.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip curl python3 setpriv unshare mount
e2e_require_private_mounts
e2e_tmp_init
e2e_require_mesh_proxy
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)

step "namespaces A (198.18.0.1) and B (198.18.0.2, 198.18.0.3)"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
nsx B ip addr add 198.18.0.3/24 dev vA
nsx A ip addr add 127.0.0.2/8 dev lo 2>/dev/null

mkdir -p "$E2E_TMP/old" "$E2E_TMP/new"
echo "old-$RANDOM" | write_file "$E2E_TMP/old/index.html"
echo "new-$RANDOM" | write_file "$E2E_TMP/new/index.html"
bg_nobody httpOld B $PY "$E2E_DIR/httpd.py" 198.18.0.2 8080 "$E2E_TMP/old"
bg_nobody httpNew B $PY "$E2E_DIR/httpd.py" 198.18.0.3 8080 "$E2E_TMP/new"
bg dnsOld A $PY "$E2E_DIR/dns_server.py" 127.0.0.1 53 web.test 198.18.0.2
bg dnsNew A $PY "$E2E_DIR/dns_server.py" 127.0.0.2 53 web.test 198.18.0.3
wait_listen B 8080 || die "web servers in B did not start"
wait_listen A 53 10 udp || die "DNS servers in A did not start"

AKEY=$(genkey) BKEY=$(genkey)
BPUB=$(echo "$BKEY" | pubkey)
write_file "$E2E_TMP/a.conf" <<EOF
[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/32

[Peer]
PublicKey = $BPUB
AllowedIPs = 100.77.0.2/32

[Socks5]
BindAddress = 127.0.0.1:1080
Direct = all
EOF
RESOLV="$E2E_TMP/resolv.conf"
echo "nameserver 127.0.0.1" | write_file "$RESOLV"

step "A: mesh-proxy with /etc/resolv.conf naming 127.0.0.1"
bg meshA A unshare -m --propagation private sh -c \
    'mount --bind "$1" /etc/resolv.conf && shift && exec "$@"' sh "$RESOLV" \
    "${AS_NOBODY[@]}" "$MESH_PROXY" --config "$E2E_TMP/a.conf" \
    --api "$E2E_TMP/run/meshA.sock" --log-level debug
wait_listen A 1080 || die "A's SOCKS5 is not listening"

page_is() {
    local got
    got=$(nsx A curl -sS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://web.test:8080/index.html) ||
        return 1
    [ "$got" = "$(cat "$E2E_TMP/$1/index.html")" ] || { echo "got: $got"; return 1; }
}
check "web.test resolves with 127.0.0.1: the page of 198.18.0.2" page_is old

step "resolv.conf rewritten in place to name 127.0.0.2"
mark=$(log_mark "$E2E_LOGDIR/meshA.log")
echo "nameserver 127.0.0.2" >"$RESOLV"
check "A's log: the resolver configuration was read again" \
    wait_log_after "$E2E_LOGDIR/meshA.log" "$mark" "resolver configuration changed: /etc/resolv.conf read again: 1 nameserver" 5
check "web.test now resolves with 127.0.0.2: the page of 198.18.0.3" page_is new
check "the new server got the query" wait_log "$E2E_LOGDIR/dnsNew.log" "web.test type 1" 5

step "SIGHUP reads it again too"
mark=$(log_mark "$E2E_LOGDIR/meshA.log")
echo "nameserver 127.0.0.1" >"$RESOLV"
kill -HUP "$(bg_pid meshA)"
check "A's log: SIGHUP received: /etc/resolv.conf read again" \
    wait_log_after "$E2E_LOGDIR/meshA.log" "$mark" "SIGHUP received: /etc/resolv.conf read again" 5
check "web.test resolves with 127.0.0.1 again" page_is old
check "the node is still running" bg_alive meshA

e2e_finish
