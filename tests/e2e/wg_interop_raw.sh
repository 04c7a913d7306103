#!/usr/bin/env bash
# core/wg against wireguard-go, without lwIP: tests/tools/wg-ping (our
# WireGuard device alone, run as nobody) in namespace A, wireguard-go with a
# TUN in namespace B. Proves the handshake and transport interoperate byte for
# byte, in both directions:
#   1. we initiate: wg-ping sends ICMP echo requests, wireguard-go's kernel
#      stack answers;
#   2. wireguard-go (restarted, same key) initiates: `ping` in B, wg-ping
#      --serve answers.
# wg-ping is taken from $MESH_BUILD/tests/wg-ping, or built here with gcc.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip wg wireguard-go ping setpriv gcc pkg-config
e2e_tmp_init

WG_PING=${WG_PING:-$MESH_BUILD/tests/wg-ping}
if ! [ -x "$WG_PING" ]; then
    step "building wg-ping"
    WG_PING="$E2E_TMP/wg-ping"
    (cd "$E2E_ROOT" && gcc -std=gnu11 -O2 -g -Wall -Wextra -Werror -Wshadow \
        -Wno-unused-parameter -D_GNU_SOURCE -I. -o "$WG_PING" tests/tools/wg-ping.c \
        core/wg/*.c core/crypto/blake2s.c core/util/log.c \
        $(pkg-config --cflags --libs libsodium libevent)) || die "cannot build wg-ping"
    chmod 0755 "$WG_PING"
fi
if ! "${AS_NOBODY[@]}" test -x "$WG_PING" 2>/dev/null; then
    e2e_nobody_copy "$WG_PING"
    WG_PING=$E2E_COPY
fi
"${AS_NOBODY[@]}" test -x "$WG_PING" || die "$WG_PING is not executable by nobody"

step "namespaces A (ours, 198.18.0.1) and B (wireguard-go, 198.18.0.2)"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
check "veth: A pings B" nsx A ping -c 1 -W 2 198.18.0.2

wg_genkey "$E2E_TMP/a.key"
wg_genkey "$E2E_TMP/b.key"
APUB=$(wg pubkey <"$E2E_TMP/a.key")
BPUB=$(wg pubkey <"$E2E_TMP/b.key")
WGB=$(wg_ifname b)
OUR_PORT=51821

start_wggo() {
    wggo_start wggo B "$WGB" 100.99.0.1/24 51820 "$E2E_TMP/b.key"
    nsx B wg set "$WGB" peer "$APUB" allowed-ips 100.99.0.2/32 endpoint "198.18.0.1:$OUR_PORT" ||
        die "wg set peer failed"
}

step "1. our side initiates: wg-ping -> wireguard-go"
start_wggo
check "wg-ping gets 3 echo replies from 100.99.0.1 through wireguard-go" \
    nsx_nobody A "$WG_PING" --key "$E2E_TMP/a.key" --peer "$BPUB" \
    --endpoint 198.18.0.2:51820 --local 100.99.0.2 --remote 100.99.0.1 \
    --port "$OUR_PORT" --count 3 --timeout 20
HS=$(wg_latest_handshake B "$WGB" "$APUB")
check "wireguard-go reports a handshake with us" test "${HS:-0}" -gt 0
nsx B wg show "$WGB"

step "2. wireguard-go restarted with the same key; it initiates"
bg_stop wggo
start_wggo
bg_nobody wgping A "$WG_PING" --key "$E2E_TMP/a.key" --peer "$BPUB" \
    --local 100.99.0.2 --remote 100.99.0.1 --port "$OUR_PORT" --serve 60
wait_listen A "$OUR_PORT" 10 udp || die "wg-ping --serve did not bind UDP $OUR_PORT"
check "ping from wireguard-go's side to 100.99.0.2 (wg-ping answers)" \
    nsx B ping -c 3 -i 0.5 -W 5 100.99.0.2
check "large echo (1372-byte payload, padding to the MTU) both ways" \
    nsx B ping -c 2 -i 0.5 -W 5 -s 1372 100.99.0.2
check "small echo (no payload: 28-byte packet padded to 32)" \
    nsx B ping -c 2 -i 0.5 -W 5 -s 0 100.99.0.2
HS=$(wg_latest_handshake B "$WGB" "$APUB")
check "wireguard-go reports a handshake with us after its restart" test "${HS:-0}" -gt 0

PID=$(bg_pid wgping)
kill -TERM "$PID" 2>/dev/null
wait "$PID"
RC=$?
unset "E2E_BG[wgping]"
check "wg-ping --serve answered echo requests and exited cleanly" test "$RC" -eq 0
check "wg-ping --serve never initiated (wireguard-go did)" \
    grep -q "handshakes sent 0 completed 1" "$E2E_LOGDIR/wgping.log"
info "wg-ping: $(tail -n 1 "$E2E_LOGDIR/wgping.log")"

step "2b. we are under load: wireguard-go must take our cookie reply and retry with mac2"
bg_stop wggo
start_wggo
bg_nobody wgload A "$WG_PING" --key "$E2E_TMP/a.key" --peer "$BPUB" \
    --local 100.99.0.2 --remote 100.99.0.1 --port "$OUR_PORT" --serve 60 --under-load
wait_listen A "$OUR_PORT" 10 udp || die "wg-ping --serve --under-load did not bind UDP $OUR_PORT"
# The first initiation gets a cookie reply; wireguard-go retries after
# REKEY_TIMEOUT (5 s) with mac2, which we accept.
check "ping through a cookie exchange (answer within 15 s)" \
    nsx B ping -c 1 -w 15 100.99.0.2
PID=$(bg_pid wgload)
kill -TERM "$PID" 2>/dev/null
wait "$PID"
unset "E2E_BG[wgload]"
check "we sent a cookie reply and then completed the handshake" \
    grep -Eq "handshakes sent 0 completed 1;.*cookies [1-9][0-9]*/0" "$E2E_LOGDIR/wgload.log"
info "wg-ping: $(tail -n 1 "$E2E_LOGDIR/wgload.log")"

step "2c. with a preshared key on both sides"
bg_stop wggo
start_wggo
(umask 077 && wg genpsk >"$E2E_TMP/psk") && chmod 0644 "$E2E_TMP/psk"
nsx B wg set "$WGB" peer "$APUB" preshared-key "$E2E_TMP/psk" || die "wg set preshared-key failed"
check "wg-ping with the PSK gets echo replies (we initiate)" \
    nsx_nobody A "$WG_PING" --key "$E2E_TMP/a.key" --peer "$BPUB" --psk "$E2E_TMP/psk" \
    --endpoint 198.18.0.2:51820 --local 100.99.0.2 --remote 100.99.0.1 \
    --port "$OUR_PORT" --count 2 --timeout 15
wg genpsk >"$E2E_TMP/wrong.psk" && chmod 0644 "$E2E_TMP/wrong.psk"
check "a wrong PSK gets nothing through" \
    bash -c "! $(printf '%q ' nsenter "--net=/run/netns/$(ns A)" -- "${AS_NOBODY[@]}" "$WG_PING" \
        --key "$E2E_TMP/a.key" --peer "$BPUB" --psk "$E2E_TMP/wrong.psk" \
        --endpoint 198.18.0.2:51820 --local 100.99.0.2 --remote 100.99.0.1 \
        --port "$OUR_PORT" --count 1 --timeout 4)"

if [ "${WG_INTEROP_LONG:-0}" = 1 ]; then
    # REKEY_AFTER_TIME is 120 s: 140 pings at 1/s cross it, so a second
    # handshake (ours, as the initiator) must happen with traffic flowing.
    step "3. rekey after 120 s with traffic flowing (WG_INTEROP_LONG=1)"
    bg_nobody wglong A "$WG_PING" --key "$E2E_TMP/a.key" --peer "$BPUB" \
        --endpoint 198.18.0.2:51820 --local 100.99.0.2 --remote 100.99.0.1 \
        --port "$OUR_PORT" --count 140 --timeout 220
    bg_wait wglong 230
    check "140 echo replies across the rekey" test $? -eq 0
    check "at least two handshakes completed in one run" \
        grep -Eq "handshakes sent [0-9]+ completed ([2-9]|[1-9][0-9])" "$E2E_LOGDIR/wglong.log"
    info "wg-ping: $(tail -n 1 "$E2E_LOGDIR/wglong.log")"
fi

step "wireguard-go's view"
nsx B wg show "$WGB"
e2e_finish
