#!/usr/bin/env bash
# wireguard-go <-> wireguard-go in two namespaces: proves that the test
# environment (namespaces, veth, TUN, wireguard-go, wg, the helpers in lib.sh)
# works before any test of ours depends on it. No mesh-proxy involved, so a
# failure here is an environment problem, not a product bug.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip wg wireguard-go ping socat setpriv
e2e_tmp_init

step "namespaces A (198.18.0.1) and B (198.18.0.2) joined by a veth pair"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
check "veth: A pings B" nsx A ping -c 1 -W 2 198.18.0.2

step "wireguard-go in both"
wg_genkey "$E2E_TMP/a.key"
wg_genkey "$E2E_TMP/b.key"
APUB=$(wg pubkey <"$E2E_TMP/a.key")
BPUB=$(wg pubkey <"$E2E_TMP/b.key")
WGA=$(wg_ifname a)
WGB=$(wg_ifname b)
wggo_start wgA A "$WGA" 100.77.0.1/24 51820 "$E2E_TMP/a.key"
wggo_start wgB B "$WGB" 100.77.0.2/24 51820 "$E2E_TMP/b.key"
nsx A wg set "$WGA" peer "$BPUB" allowed-ips 100.77.0.2/32
nsx B wg set "$WGB" peer "$APUB" allowed-ips 100.77.0.1/32 endpoint 198.18.0.1:51820

check "tunnel: B pings A (B initiates)" nsx B ping -c 3 -i 0.2 -W 2 100.77.0.1
check "tunnel: A pings B" nsx A ping -c 3 -i 0.2 -W 2 100.77.0.2
HS=$(wg_latest_handshake A "$WGA" "$BPUB")
check "wg show on A reports a handshake with B" test "${HS:-0}" -gt 0

step "16 MiB over TCP through the tunnel, sha256 compared"
random_file "$E2E_TMP/data" 16
bg sink A socat -u TCP-LISTEN:5001,bind=100.77.0.1,reuseaddr "CREATE:$E2E_TMP/recv"
wait_listen A 5001 || die "socat sink did not listen"
check "send 16 MiB as nobody from B" nsx_nobody B timeout 60 socat -u "FILE:$E2E_TMP/data" TCP:100.77.0.1:5001
bg_wait sink 30
check "sha256 of received file matches" test "$(sha "$E2E_TMP/data")" = "$(sha "$E2E_TMP/recv")"

e2e_finish
