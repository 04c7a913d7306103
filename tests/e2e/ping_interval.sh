#!/usr/bin/env bash
# `mesh-proxy ping -i SECONDS`: probes that many seconds apart, each answered
# with a parseable "time=X ms" line, and a series longer than the API's 5 s
# request timeout (600 probes 10 ms apart) runs to the end.
#
#   A  198.18.0.1  mesh-proxy 100.77.0.1/32, UDP 51820
#   B  198.18.0.2  mesh-proxy 100.77.0.2/32, UDP 51821
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip ping setpriv ss socat
e2e_tmp_init
e2e_require_mesh_proxy

step "namespaces A and B, two mesh-proxy nodes"
ns_create A
ns_create B
ns_link A 198.18.0.1/24 B 198.18.0.2/24
mesh_pair_keys
write_file "$E2E_TMP/a.conf" <<EOF
[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/32
ListenPort = 51820

[Peer]
PublicKey = $BPUB
Endpoint = 198.18.0.2:51821
AllowedIPs = 100.77.0.2/32
EOF
write_file "$E2E_TMP/b.conf" <<EOF
[Interface]
PrivateKey = $BKEY
Address = 100.77.0.2/32
ListenPort = 51821

[Peer]
PublicKey = $APUB
AllowedIPs = 100.77.0.1/32
EOF
mesh_start meshB B "$E2E_TMP/b.conf"
mesh_start meshA A "$E2E_TMP/a.conf"
wait_listen B 51821 10 udp || die "mesh-proxy B did not bind UDP 51821"
wait_listen A 51820 10 udp || die "mesh-proxy A did not bind UDP 51820"
check "first ping (handshake)" mesh_cli meshA A ping -c 1 -W 5 100.77.0.2

step "ping -c 600 -i 0.01"
t0=$(date +%s%N)
mesh_cli meshA A ping -c 600 -i 0.01 -W 2 100.77.0.2 >"$E2E_TMP/ping.out" 2>&1
rc=$?
ms=$((($(date +%s%N) - t0) / 1000000))
info "600 probes in $ms ms; $(tail -n 2 "$E2E_TMP/ping.out" | head -n 1)"
check "exit status 0" test "$rc" -eq 0
check "600 lines with time=X ms" \
    test "$(grep -cE 'time=[0-9]+\.[0-9]+ ms$' "$E2E_TMP/ping.out")" -eq 600
check "summary: 600 sent, 600 received" grep -q '^600 sent, 600 received' "$E2E_TMP/ping.out"
check "10 ms apart: done in 5.5-20 s (1 s apart would be 10 minutes)" \
    test "$ms" -ge 5500 -a "$ms" -lt 20000

step "bad intervals"
check "-i 0 is refused with status 2" \
    bash -c "$(printf '%q ' nsenter "--net=/run/netns/$(ns A)" -- "$MESH_PROXY" ping --api "$E2E_TMP/run/meshA.sock" -i 0 100.77.0.2) 2>/dev/null; test \$? -eq 2"
check "-i abc is refused with status 2" \
    bash -c "$(printf '%q ' nsenter "--net=/run/netns/$(ns A)" -- "$MESH_PROXY" ping --api "$E2E_TMP/run/meshA.sock" -i abc 100.77.0.2) 2>/dev/null; test \$? -eq 2"
api_says() {
    local got
    got=$(printf '%s' "$1" | nsx_nobody A timeout 5 socat -t 2 - "UNIX-CONNECT:$E2E_TMP/run/meshA.sock")
    echo "$got" | grep -qF -- "$2" || { echo "got: $got"; return 1; }
}
check "API: interval 0 ms -> usage error" api_says $'ping 100.77.0.2 1 100 0\n' "usage"
# The request without the interval field: 1 s apart, as before -i existed.
# (stdin stays open: the node takes a half-close as the client leaving.)
old_form() {
    local t0 got ms
    t0=$(date +%s%N)
    got=$({ printf 'ping 100.77.0.2 2 1000\n'; sleep 3; } |
        nsx_nobody A timeout 5 socat -t 1 - "UNIX-CONNECT:$E2E_TMP/run/meshA.sock")
    ms=$((($(date +%s%N) - t0) / 1000000))
    if ! echo "$got" | grep -qF "2 sent, 2 received" || [ "$ms" -lt 900 ]; then
        echo "got ($ms ms): $got"
        return 1
    fi
}
check "API: three fields still mean 1 s apart" old_form

mesh_stop_both meshA meshB
e2e_finish
