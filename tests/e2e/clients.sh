#!/usr/bin/env bash
# Real clients from Debian through the proxy front-ends of mesh-proxy
# nodes (issue 3's proof): curl in every proxy dialect, proxychains4, ssh with
# `mesh-proxy nc` as ProxyCommand, headless Chromium, and a PROXY protocol v2
# service. The HTTP proxy's keep-alive forwarding (one client connection,
# requests to two mesh hosts, each answered by the right one) with Python
# requests, curl, apt and Chromium, and with Python's http.client after an
# origin's 103 Early Hints.
#
#   A  198.18.0.1  mesh-proxy 100.77.0.1/32 + fd77::1/128, UDP 51820
#                  SOCKS5 127.0.0.1:1080, HTTP proxy 127.0.0.1:3128
#                  [Peer] B has Name = web, [Peer] C has Name = docs
#   B  198.18.0.2  mesh-proxy 100.77.0.2/32 + fd77::2/128, UDP 51821
#                  TCPServerTunnel 8080 -> 127.0.0.1:8080  httpd.py (files)
#                  TCPServerTunnel 22   -> 127.0.0.1:2222  sshd (root, own
#                                          host key, one authorized key)
#                  TCPServerTunnel 9000 -> 127.0.0.1:9000  pp2_server.py,
#                                          ProxyProtocol = v2
#                  httpd.py on 198.18.0.2:8090 (outside the mesh: Direct)
#   C  198.18.2.3  mesh-proxy 100.77.0.3/32, UDP 51822 (linked to A only,
#                  A is 198.18.2.1 there)
#                  TCPServerTunnel 8080 -> 127.0.0.1:8080  httpd.py (files)
#
# The nodes start with a soft open-file limit of 1024, as on a stock system.
# The screenshot is kept as tests/artifacts/<build>/clients/chromium-page.png.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd ip curl python3 setpriv ss sha256sum proxychains4 ssh ssh-keygen chromium \
    apt-get dpkg-deb dpkg-scanpackages
[ -x /usr/sbin/sshd ] || e2e_skip "clients needs /usr/sbin/sshd (apt-get install openssh-server)"
e2e_tmp_init
e2e_require_mesh_proxy

MIB=${E2E_TRANSFER_MIB:-64}
XFER_TIMEOUT=${E2E_TRANSFER_TIMEOUT:-180}
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)
ulimit -Sn 1024

step "namespaces A (198.18.0.1), B (198.18.0.2) and C (198.18.2.3)"
ns_create A
ns_create B
ns_create C
ns_link A 198.18.0.1/24 B 198.18.0.2/24
ns_link A 198.18.2.1/24 C 198.18.2.3/24
check "veth: A reaches B" nsx A ping -c 1 -W 2 198.18.0.2 || exit 1
check "veth: A reaches C" nsx A ping -c 1 -W 2 198.18.2.3 || exit 1

step "keys and configs"
mesh_pair_keys
CKEY=$("$MESH_PROXY" genkey) || die "mesh-proxy genkey failed"
CPUB=$(echo "$CKEY" | "$MESH_PROXY" pubkey) || die "mesh-proxy pubkey failed"
write_file "$E2E_TMP/a.conf" <<EOF
[Interface]
PrivateKey = $AKEY
Address = 100.77.0.1/32, fd77::1/128
ListenPort = 51820

[Peer]
Name = web
PublicKey = $BPUB
Endpoint = 198.18.0.2:51821
AllowedIPs = 100.77.0.2/32, fd77::2/128

[Peer]
Name = docs
PublicKey = $CPUB
Endpoint = 198.18.2.3:51822
AllowedIPs = 100.77.0.3/32

[Socks5]
BindAddress = 127.0.0.1:1080
Direct = all

[http]
BindAddress = 127.0.0.1:3128
Direct = all
EOF
write_file "$E2E_TMP/b.conf" <<EOF
[Interface]
PrivateKey = $BKEY
Address = 100.77.0.2/32, fd77::2/128
ListenPort = 51821

[Peer]
Name = alpha
PublicKey = $APUB
Endpoint = 198.18.0.1:51820
AllowedIPs = 100.77.0.1/32, fd77::1/128

[TCPServerTunnel]
ListenPort = 8080
Target = 127.0.0.1:8080

[TCPServerTunnel]
ListenPort = 22
Target = 127.0.0.1:2222

[TCPServerTunnel]
ListenPort = 9000
Target = 127.0.0.1:9000
ProxyProtocol = v2
EOF
write_file "$E2E_TMP/c.conf" <<EOF
[Interface]
PrivateKey = $CKEY
Address = 100.77.0.3/32
ListenPort = 51822

[Peer]
Name = alpha
PublicKey = $APUB
Endpoint = 198.18.2.1:51820
AllowedIPs = 100.77.0.1/32

[TCPServerTunnel]
ListenPort = 8080
Target = 127.0.0.1:8080
EOF

step "B: web server, sshd, PROXY v2 server; the page and its images"
mkdir -p "$E2E_TMP/www"
chmod 0755 "$E2E_TMP/www"
TOKEN="meshproxy-clients-$RANDOM$RANDOM"
echo "$TOKEN" | write_file "$E2E_TMP/www/index.html"
random_file "$E2E_TMP/www/big" "$MIB"
random_file "$E2E_TMP/www/small" 8
BIG_SHA=$(sha "$E2E_TMP/www/big")
SMALL_SHA=$(sha "$E2E_TMP/www/small")
# Four solid images, 160x120 each: two by name (relative URLs), one by the
# mesh IPv4 address, one by the mesh IPv6 address.
RED=dc141e GREEN=14b428 BLUE=1e3cdc YELLOW=f0d214
for c in red:$RED green:$GREEN blue:$BLUE yellow:$YELLOW; do
    $PY "$E2E_DIR/png_tool.py" make "$E2E_TMP/www/${c%%:*}.png" 160 120 "${c#*:}" ||
        die "png_tool.py make failed"
    chmod 0644 "$E2E_TMP/www/${c%%:*}.png"
done
write_file "$E2E_TMP/www/page.html" <<EOF
<!doctype html>
<html><head><title>meshproxy</title>
<style>body { background: #ffffff; margin: 12px; font-family: sans-serif; } img { margin: 4px; }</style>
</head><body>
<h1>$TOKEN</h1>
<p>
<img src="red.png" width="160" height="120" alt="red">
<img src="/green.png" width="160" height="120" alt="green">
<img src="http://100.77.0.2:8080/blue.png" width="160" height="120" alt="blue">
<img src="http://[fd77::2]:8080/yellow.png" width="160" height="120" alt="yellow">
</p>
</body></html>
EOF
# Files that say which host served them, for the keep-alive checks: B is
# "web", C is "docs"; two.html (on B) pulls a script and an image from
# each host and writes what it got into the page.
echo web | write_file "$E2E_TMP/www/whoami.txt"
echo "window.fromWeb = 'web';" | write_file "$E2E_TMP/www/a.js"
mkdir -p "$E2E_TMP/wwwC"
chmod 0755 "$E2E_TMP/wwwC"
echo docs | write_file "$E2E_TMP/wwwC/whoami.txt"
echo "window.fromDocs = 'docs';" | write_file "$E2E_TMP/wwwC/b.js"
cp "$E2E_TMP/www/green.png" "$E2E_TMP/wwwC/green.png"
chmod 0644 "$E2E_TMP/wwwC/green.png"
write_file "$E2E_TMP/www/two.html" <<'EOF'
<!doctype html>
<html><head><title>two hosts</title>
<script src="/a.js"></script>
<script src="http://docs:8080/b.js"></script>
</head><body>
<img id="i1" src="/red.png"><img id="i2" src="http://docs:8080/green.png">
<img id="i3" src="http://web:8080/blue.png">
<div id="result">pending</div>
<script>
window.addEventListener('load', function () {
  var w = function (id) { return document.getElementById(id).naturalWidth; };
  document.getElementById('result').textContent = 'result:' + window.fromWeb + ',' +
    window.fromDocs + ',' + w('i1') + ',' + w('i2') + ',' + w('i3');
});
</script>
</body></html>
EOF
# A tiny apt repository (flat, trusted=yes) on B, with one package.
mkdir -p "$E2E_TMP/pkg/DEBIAN" "$E2E_TMP/pkg/usr/share/meshproxy-e2e" "$E2E_TMP/www/apt"
cat >"$E2E_TMP/pkg/DEBIAN/control" <<EOF
Package: meshproxy-e2e-hello
Version: 1.0
Architecture: all
Maintainer: meshproxy e2e <e2e@example.invalid>
Description: test package for the HTTP proxy end-to-end test
EOF
echo "$TOKEN" >"$E2E_TMP/pkg/usr/share/meshproxy-e2e/token"
dpkg-deb --root-owner-group --build "$E2E_TMP/pkg" "$E2E_TMP/www/apt/meshproxy-e2e-hello_1.0_all.deb" \
    >/dev/null || die "dpkg-deb failed"
(cd "$E2E_TMP/www/apt" && dpkg-scanpackages -m . 2>/dev/null >Packages) || die "dpkg-scanpackages failed"
{
    echo "Origin: meshproxy-e2e"
    echo "Date: $(date -u -R)"
    echo "SHA256:"
    echo " $(sha "$E2E_TMP/www/apt/Packages") $(stat -c %s "$E2E_TMP/www/apt/Packages") Packages"
} >"$E2E_TMP/www/apt/Release"
chmod -R a+rX "$E2E_TMP/www/apt"
DEB_SHA=$(sha "$E2E_TMP/www/apt/meshproxy-e2e-hello_1.0_all.deb")
bg_nobody httpB B $PY "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www"
bg_nobody httpC C $PY "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/wwwC"
bg_nobody httpDirect B $PY "$E2E_DIR/httpd.py" 198.18.0.2 8090 "$E2E_TMP/www"
bg_nobody pp2B B $PY "$E2E_DIR/pp2_server.py" 127.0.0.1 9000

# sshd runs as root (a non-root sshd only logs in its own user, and nobody
# has no shell); it listens on B's loopback only, with a throwaway host key,
# one authorized key, no passwords and no PAM.
mkdir -p "$E2E_TMP/ssh" "$E2E_TMP/run/ssh"
chmod 0700 "$E2E_TMP/ssh"
ssh-keygen -q -t ed25519 -N '' -C mesh-e2e-host -f "$E2E_TMP/ssh/host_key" || die "ssh-keygen failed"
ssh-keygen -q -t ed25519 -N '' -C mesh-e2e-client -f "$E2E_TMP/run/ssh/id" || die "ssh-keygen failed"
chown -R nobody:nogroup "$E2E_TMP/run/ssh"
chmod 0700 "$E2E_TMP/run/ssh"
cp "$E2E_TMP/run/ssh/id.pub" "$E2E_TMP/ssh/authorized_keys"
echo "web $(cut -d' ' -f1,2 "$E2E_TMP/ssh/host_key.pub")" >"$E2E_TMP/run/ssh/known_hosts"
chown nobody:nogroup "$E2E_TMP/run/ssh/known_hosts"
cat >"$E2E_TMP/ssh/sshd_config" <<EOF
ListenAddress 127.0.0.1:2222
HostKey $E2E_TMP/ssh/host_key
AuthorizedKeysFile $E2E_TMP/ssh/authorized_keys
PidFile none
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers root
PrintMotd no
LogLevel VERBOSE
EOF
mkdir -p /run/sshd # privilege separation directory (the Debian unit makes it)
bg sshdB B /usr/sbin/sshd -D -e -f "$E2E_TMP/ssh/sshd_config"
wait_listen B 8080 || die "web server in B did not start"
wait_listen C 8080 || die "web server in C did not start"
wait_listen B 8090 || die "direct web server in B did not start"
wait_listen B 9000 || die "PROXY v2 server in B did not start"
wait_listen B 2222 || die "sshd in B did not start (see $E2E_LOGDIR/sshdB.log)"

step "mesh-proxy B and A"
mesh_start meshB B "$E2E_TMP/b.conf"
wait_listen B 51821 10 udp || die "mesh-proxy B did not bind UDP 51821"
mesh_start meshC C "$E2E_TMP/c.conf"
wait_listen C 51822 10 udp || die "mesh-proxy C did not bind UDP 51822"
mesh_start meshA A "$E2E_TMP/a.conf"
wait_listen A 51820 10 udp || die "mesh-proxy A did not bind UDP 51820"
wait_listen A 1080 || die "A's SOCKS5 is not listening"
wait_listen A 3128 || die "A's HTTP proxy is not listening"
check "mesh-proxy ping 100.77.0.2 from A" mesh_cli meshA A ping -c 2 -W 5 100.77.0.2
check "mesh-proxy ping 100.77.0.3 from A" mesh_cli meshA A ping -c 2 -W 5 100.77.0.3

step "curl: $MIB MiB byte-exact in every proxy dialect, B's peer named 'web'"
# fetch_big WHAT CURL-ARGS... : download the big file as nobody, compare.
fetch_big() {
    local what=$1 out="$E2E_TMP/run/big.out" t0 dt rc got
    shift
    rm -f "$out"
    t0=$(date +%s.%N)
    fgw nsx_nobody A timeout "$XFER_TIMEOUT" curl -sS --max-time "$XFER_TIMEOUT" -o "$out" "$@" \
        >>"$E2E_LOGDIR/curl.log" 2>&1
    rc=$?
    dt=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
    got=$(sha "$out" 2>/dev/null)
    if [ $rc -eq 0 ] && [ "$got" = "$BIG_SHA" ]; then
        pass "$what: $MIB MiB, sha256 equal ($(awk -v m="$MIB" -v t="$dt" 'BEGIN { printf "%.0f", m * 8 * 1.048576 / t }') Mbit/s)"
    else
        fail "$what: curl exit $rc, $(stat -c %s "$out" 2>/dev/null || echo 0) bytes, sha256 ${got:-none}"
        tail -n 3 "$E2E_LOGDIR/curl.log" | sed 's/^/      | /'
    fi
    rm -f "$out"
}
fetch_big "curl --socks5-hostname http://web:8080/big" --socks5-hostname 127.0.0.1:1080 http://web:8080/big
fetch_big "curl --socks5 http://100.77.0.2:8080/big" --socks5 127.0.0.1:1080 http://100.77.0.2:8080/big
fetch_big "curl --socks4a http://web:8080/big" --socks4a 127.0.0.1:1080 http://web:8080/big
fetch_big "curl --proxy http://127.0.0.1:3128 http://web:8080/big (plain GET forwarding)" \
    --proxy http://127.0.0.1:3128 http://web:8080/big
fetch_big "curl --proxytunnel --proxy http://127.0.0.1:3128 http://web:8080/big (CONNECT)" \
    --proxytunnel --proxy http://127.0.0.1:3128 http://web:8080/big

get_page() {
    local got
    got=$(nsx_nobody A curl -sS --max-time 20 "$@") || return 1
    [ "$got" = "$TOKEN" ] || { echo "got: $got"; return 1; }
}
check "mesh names ignore case and a trailing dot (http://WEB.:8080/)" \
    get_page --socks5-hostname 127.0.0.1:1080 http://WEB.:8080/index.html
check "Direct: SOCKS5 to 198.18.0.2:8090, outside the mesh, dialled from the host" \
    get_page --socks5-hostname 127.0.0.1:1080 http://198.18.0.2:8090/index.html
check "Direct: HTTP proxy plain GET to 198.18.0.2:8090" \
    get_page --proxy http://127.0.0.1:3128 http://198.18.0.2:8090/index.html
check "status: A's SOCKS5 front-end counted a direct connection" \
    counter_at_least meshA A 127.0.0.1:1080 direct 1

# Direct never dials this host's loopback or the cloud metadata address,
# whatever the setting: A's own HTTP proxy on 127.0.0.1:3128 is not a hop.
policy() { nsx_nobody A timeout 60 $PY "$E2E_DIR/hostile.py" "$@"; }
check "Direct: SOCKS5 to 127.0.0.1:3128 (this host's loopback) -> 02 (not allowed)" \
    policy socks-code 1080 127.0.0.1 3128 2 20
check "Direct: SOCKS5 to ::ffff:127.0.0.1 (IPv4-mapped loopback) -> 02" \
    policy socks-code 1080 ::ffff:127.0.0.1 3128 2 20
check "Direct: SOCKS5 to 169.254.169.254 (cloud metadata) -> 02" \
    policy socks-code 1080 169.254.169.254 80 2 20
check "Direct: HTTP CONNECT to 127.0.0.1:1080 -> 403" \
    policy http-code 3128 127.0.0.1 1080 403 20
check "Direct: plain GET http://127.0.0.1:1080/ through the HTTP proxy -> 403" \
    test "$(nsx_nobody A curl -s -o /dev/null -w '%{http_code}' --max-time 20 \
        --proxy http://127.0.0.1:3128 http://127.0.0.1:1080/)" = 403
check "status: the refusals are counted as denied" \
    counter_at_least meshA A 127.0.0.1:1080 err_denied 3

step "proxychains4 running an unmodified curl"
write_file "$E2E_TMP/proxychains-socks.conf" <<EOF
strict_chain
proxy_dns
remote_dns_subnet 224
tcp_read_time_out 15000
tcp_connect_time_out 8000
[ProxyList]
socks5 127.0.0.1 1080
EOF
sed 's/^socks5 127.0.0.1 1080$/http 127.0.0.1 3128/' "$E2E_TMP/proxychains-socks.conf" |
    write_file "$E2E_TMP/proxychains-http.conf"
pc_get() {
    local conf=$1 url=$2 got
    got=$(nsx_nobody A env -u http_proxy -u all_proxy proxychains4 -q -f "$conf" \
        curl -sS --max-time 20 --noproxy '*' "$url") || { echo "$got"; return 1; }
    [ "$got" = "$TOKEN" ] || { echo "got: $got"; return 1; }
}
check "proxychains4 (socks5, proxy_dns) curl http://web:8080/" \
    pc_get "$E2E_TMP/proxychains-socks.conf" http://web:8080/index.html
check "proxychains4 (socks5) curl http://100.77.0.2:8080/" \
    pc_get "$E2E_TMP/proxychains-socks.conf" http://100.77.0.2:8080/index.html
check "proxychains4 (http CONNECT) curl http://web:8080/" \
    pc_get "$E2E_TMP/proxychains-http.conf" http://web:8080/index.html
pc_sha() {
    local got
    got=$(nsx_nobody A proxychains4 -q -f "$E2E_TMP/proxychains-socks.conf" \
        curl -sS --max-time 60 --noproxy '*' http://web:8080/small | sha256sum | cut -d' ' -f1)
    [ "$got" = "$SMALL_SHA" ] || { echo "sha256 $got, want $SMALL_SHA"; return 1; }
}
check "proxychains4 curl of 8 MiB: sha256 equal" pc_sha

step "ssh with ProxyCommand 'mesh-proxy nc --api SOCK %h %p' to sshd behind B"
SSH_OPTS=(-F /dev/null -i "$E2E_TMP/run/ssh/id" -o IdentitiesOnly=yes -o BatchMode=yes
    -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$E2E_TMP/run/ssh/known_hosts"
    -o ConnectTimeout=20 -o LogLevel=ERROR
    -o "ProxyCommand=$MESH_PROXY nc --api $E2E_TMP/run/meshA.sock %h %p")
ssh_says() {
    local got
    got=$(nsx_nobody A timeout 60 ssh "${SSH_OPTS[@]}" "$@" 2>&1)
    echo "$got"
    echo "$got" | grep -qxF "ssh-ok $TOKEN root"
}
check "ssh -p 22 root@web runs a command (host key of our sshd verified)" \
    ssh_says -p 22 root@web "echo ssh-ok $TOKEN \$(id -un)"
check "ssh to 100.77.0.2 (HostKeyAlias web) runs a command" \
    ssh_says -o HostKeyAlias=web -p 22 root@100.77.0.2 "echo ssh-ok $TOKEN \$(id -un)"
ssh_sha() {
    local got
    got=$(nsx_nobody A timeout 120 ssh "${SSH_OPTS[@]}" -p 22 root@web sha256sum <"$E2E_TMP/www/small" |
        cut -d' ' -f1)
    [ "$got" = "$SMALL_SHA" ] || { echo "remote sha256 '$got', want $SMALL_SHA"; return 1; }
}
check "8 MiB through ssh's stdin (nc splices stdio both ways): sha256 equal" ssh_sha
nc_direct() {
    local got
    got=$(printf 'GET /index.html HTTP/1.0\r\nHost: web\r\n\r\n' |
        nsx_nobody A timeout 20 "$MESH_PROXY" nc --api "$E2E_TMP/run/meshA.sock" web 8080 | tail -n 1)
    [ "$got" = "$TOKEN" ] || { echo "got: $got"; return 1; }
}
check "mesh-proxy nc web 8080 speaks HTTP to B's web server" nc_direct
nc_refuses() {
    ! nsx_nobody A timeout 20 "$MESH_PROXY" nc --api "$E2E_TMP/run/meshA.sock" web 8081 </dev/null
}
check "mesh-proxy nc to a closed mesh port exits non-zero" nc_refuses

step "headless Chromium through SOCKS5 loads http://web:8080/page.html"
CHROME_HOME="$E2E_TMP/run/chrome"
SHOT="$CHROME_HOME/page.png"
nsx_nobody A mkdir -p "$CHROME_HOME"
fgw nsx_nobody A env HOME="$CHROME_HOME" XDG_CONFIG_HOME="$CHROME_HOME/.config" \
    XDG_CACHE_HOME="$CHROME_HOME/.cache" timeout 120 chromium --headless --no-sandbox --disable-gpu \
    --disable-dev-shm-usage --no-first-run --no-default-browser-check --disable-extensions \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$CHROME_HOME/profile" --proxy-server=socks5://127.0.0.1:1080 \
    --window-size=800,600 --hide-scrollbars --screenshot="$SHOT" \
    http://web:8080/page.html >"$E2E_LOGDIR/chromium.log" 2>&1
rc=$?
if [ -s "$SHOT" ]; then
    cp "$SHOT" "$E2E_LOGDIR/chromium-page.png"
    info "screenshot kept: $E2E_LOGDIR/chromium-page.png"
    # 160x120 = 19,200 pixels per image; 80% of each must be there.
    check "screenshot: not blank, and all four images' colours present" \
        $PY "$E2E_DIR/png_tool.py" check "$E2E_LOGDIR/chromium-page.png" --min-colors 5 \
        --color $RED:15360 --color $GREEN:15360 --color $BLUE:15360 --color $YELLOW:15360
    $PY "$E2E_DIR/png_tool.py" check "$E2E_LOGDIR/chromium-page.png" --color $RED:0 --color $GREEN:0 \
        --color $BLUE:0 --color $YELLOW:0 2>&1 | sed 's/^/      /'
else
    fail "chromium made no screenshot (exit $rc; see $E2E_LOGDIR/chromium.log)"
    tail -n 5 "$E2E_LOGDIR/chromium.log" | sed 's/^/      | /'
fi
check "B's web server served page.html and the images" \
    bash -c "grep -q 'GET /page.html' '$E2E_LOGDIR/httpB.log' && [ \$(grep -cE 'GET /(red|green|blue|yellow).png' '$E2E_LOGDIR/httpB.log') -ge 4 ]"

step "HTTP proxy keep-alive: one client connection, two mesh hosts (web on B, docs on C)"
ACC0=$(frontend_counter meshA A 127.0.0.1:3128 accepted)
check "Python requests.Session(): 20 GETs and 6 POSTs alternating web/docs, each answered by its host" \
    nsx_nobody A timeout 120 $PY "$E2E_DIR/http_session.py" http://127.0.0.1:3128 10 \
    http://web:8080/whoami.txt=web http://docs:8080/whoami.txt=docs
ACC1=$(frontend_counter meshA A 127.0.0.1:3128 accepted)
check "requests kept one proxy connection for both hosts (accepted $ACC0 -> $ACC1)" \
    test "$((ACC1 - ACC0))" -le 1
check "each host's web server saw its own requests (B and C: >= 10 whoami.txt each)" \
    bash -c "[ \$(grep -c 'GET /whoami.txt' '$E2E_LOGDIR/httpB.log') -ge 10 ] &&
             [ \$(grep -c 'GET /whoami.txt' '$E2E_LOGDIR/httpC.log') -ge 10 ]"
check "http.client after a 103 from web: one connection, web then docs, each answered by its host (review http H1)" \
    nsx_nobody A timeout 60 $PY "$E2E_DIR/http_interim.py" 127.0.0.1:3128 \
    http://web:8080/early-hints/whoami.txt=web http://docs:8080/whoami.txt=docs \
    http://web:8080/whoami.txt=web
curl_two() {
    local got a0 a1
    a0=$(frontend_counter meshA A 127.0.0.1:3128 accepted)
    got=$(nsx_nobody A curl -sS --max-time 20 --proxy http://127.0.0.1:3128 \
        http://web:8080/whoami.txt http://docs:8080/whoami.txt http://web:8080/whoami.txt | tr '\n' ' ')
    a1=$(frontend_counter meshA A 127.0.0.1:3128 accepted)
    [ "$got" = "web docs web " ] || { echo "got: $got"; return 1; }
    [ "$((a1 - a0))" -eq 1 ] || { echo "the proxy accepted $((a1 - a0)) connections"; return 1; }
}
check "curl: three URLs on two hosts over one proxy connection" curl_two

APT_DIR="$E2E_TMP/apt"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial" "$APT_DIR/parts" "$APT_DIR/dl"
echo "deb [trusted=yes] http://web:8080/apt ./" >"$APT_DIR/sources.list"
APT_OPTS=(-q -o "Dir::Etc::sourcelist=$APT_DIR/sources.list" -o "Dir::Etc::sourceparts=$APT_DIR/parts"
    -o "Dir::State::Lists=$APT_DIR/lists" -o "Dir::Cache=$APT_DIR/cache"
    -o "Dir::Cache::Archives=$APT_DIR/cache/archives" -o "Acquire::http::Proxy=http://127.0.0.1:3128"
    -o APT::Sandbox::User=root -o Debug::NoLocking=1 -o Acquire::Languages=none
    -o Acquire::Retries=0 -o Acquire::http::Timeout=20)
apt_update() {
    local out
    out=$(nsx A timeout 120 apt-get "${APT_OPTS[@]}" update 2>&1)
    local rc=$?
    echo "$out" | tee -a "$E2E_LOGDIR/apt.log"
    [ $rc -eq 0 ] && ! echo "$out" | grep -q '^[WE]:'
}
check "apt-get update through the HTTP proxy (Acquire::http::Proxy) from a repository on web" apt_update
apt_download() {
    (cd "$APT_DIR/dl" && nsx A timeout 120 apt-get "${APT_OPTS[@]}" download meshproxy-e2e-hello) \
        >>"$E2E_LOGDIR/apt.log" 2>&1 || return 1
    local got
    got=$(sha "$APT_DIR/dl/meshproxy-e2e-hello_1.0_all.deb")
    [ "$got" = "$DEB_SHA" ] || { echo "sha256 $got, want $DEB_SHA"; return 1; }
}
check "apt-get download of the package: sha256 equal" apt_download

chrome_two() {
    local home="$E2E_TMP/run/chrome2" dom
    nsx_nobody A mkdir -p "$home"
    dom=$(nsx_nobody A env HOME="$home" XDG_CONFIG_HOME="$home/.config" XDG_CACHE_HOME="$home/.cache" \
        timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --no-first-run --no-default-browser-check --disable-extensions \
        --disable-background-networking --disable-component-update --disable-sync \
        --user-data-dir="$home/profile" --proxy-server=http://127.0.0.1:3128 \
        --virtual-time-budget=15000 --dump-dom http://web:8080/two.html 2>>"$E2E_LOGDIR/chromium-two.log")
    echo "$dom" | grep -o 'result:[^<]*'
    echo "$dom" | grep -q 'result:web,docs,160,160,160'
}
check "Chromium through the HTTP proxy: two.html on web loads scripts and images from web and docs" chrome_two
check "each Chromium request reached the right host (B: two.html, a.js, red.png, blue.png; C: b.js, green.png)" \
    bash -c "grep -q 'GET /two.html' '$E2E_LOGDIR/httpB.log' && grep -q 'GET /a.js' '$E2E_LOGDIR/httpB.log' &&
             grep -q 'GET /b.js' '$E2E_LOGDIR/httpC.log' && grep -q 'GET /green.png' '$E2E_LOGDIR/httpC.log' &&
             ! grep -q 'GET /b.js' '$E2E_LOGDIR/httpB.log' &&
             ! grep -qE 'GET /(two.html|a.js|red.png|blue.png)' '$E2E_LOGDIR/httpC.log'"

step "PROXY protocol v2 to an exposed service"
check "the service behind ProxyProtocol = v2 sees A's mesh address 100.77.0.1" \
    pp2_says A web 9000 100.77.0.1 100.77.0.2
check "over IPv6 it sees fd77::1" pp2_says A fd77::2 9000 '\[fd77::1\]' '\[fd77::2\]'

step "counters in status --json"
check "A's SOCKS5 front-end: >= 3 x $MIB MiB down" \
    counter_at_least meshA A 127.0.0.1:1080 bytes_down $((3 * MIB * 1048576))
check "A's HTTP front-end: >= 2 x $MIB MiB down" \
    counter_at_least meshA A 127.0.0.1:3128 bytes_down $((2 * MIB * 1048576))
check "A's SOCKS5 front-end: bytes up counted" counter_at_least meshA A 127.0.0.1:1080 bytes_up 1000
check "A's nc front-end: connections accepted" counter_at_least meshA A nc accepted 4
info "A's front-ends: $(mesh_cli meshA A status | grep -E '^(socks5|http|nc) ' | tr '\n' ';')"

step "both nodes still up, then SIGTERM"
mesh_stop_both meshA meshB meshC

e2e_finish
