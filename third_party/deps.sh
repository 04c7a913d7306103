#!/bin/bash
# Installs the Debian packages meshproxy needs and fetches lwIP from Debian's
# source package (pinned version, sha256-checked). Idempotent and quick when
# nothing is missing. Needs root (or sudo) only when something must be
# installed.
set -euo pipefail
cd "$(dirname "$0")"

LWIP_VERSION=2.1.3+dfsg1
LWIP_DSC=lwip_2.1.3+dfsg1-2.dsc
LWIP_ORIG=lwip_2.1.3+dfsg1.orig.tar.xz
LWIP_ORIG_SHA256=0a8276d09fc4e97bbba2f953d74af2388fc2195ea156be9d7589e297a68fde24
LWIP_DIR=src/lwip-2.1.3

PACKAGES=(
	# build
	gcc make pkg-config dpkg-dev xz-utils patch ca-certificates
	libsodium-dev libevent-dev libinih-dev libcmocka-dev
	# mesh-relay: TLS through libevent's OpenSSL bufferevents (libevent-dev ships them)
	libssl-dev
	# mesh-control: its store (SQLite) and JSON for control messages and the admin API
	libsqlite3-dev libjansson-dev
	# mesh-control: the PostgreSQL store (libpq); the server itself for the
	# tests, which start throwaway clusters with initdb/pg_ctl on a Unix
	# socket (tests/pg.sh; the package's own cluster is not used)
	libpq-dev postgresql
	# mesh-control and the node: map bodies compressed with zstd (a join
	# storm of 10,000 nodes is tens of GiB of JSON maps otherwise)
	libzstd-dev
	# the node's port mapping: UPnP IGD (miniupnpc) and NAT-PMP (libnatpmp)
	libminiupnpc-dev libnatpmp-dev
	# fuzzing and sanitizers
	clang libclang-rt-14-dev
	# tests: real peers and real clients
	wireguard-go wireguard-tools iproute2 nftables iputils-ping procps
	curl socat iperf3 python3 util-linux openssl
	# tests: a real STUN client for mesh-relay's STUN server, and sqlite3 to
	# set a node's expiry in the control store (tests/e2e/relay.sh)
	stun-client sqlite3
	# tests: the NAT lab's port-mapping router (tests/e2e/natlab.sh runs
	# miniupnpd inside a router namespace only; the package's own service
	# is not configured and does not start)
	miniupnpd-nftables
	# tests: upnpc lists the router's mappings (natlab.sh)
	miniupnpc
	# tests: clients of the proxy front-ends (tests/e2e/clients.sh, udp.sh)
	proxychains4 openssh-client openssh-server chromium fonts-dejavu-core dnsutils
	# tests: Python requests through the HTTP proxy (clients.sh)
	python3-requests
	# tests: promtool checks the /metrics pages of the health listeners
	# (tests/e2e/health.sh). The package also brings the Prometheus server,
	# whose service a host with systemd starts (port 9090)
	prometheus
	# make image: the container image, built by podman (buildah inside) and
	# run by runc in tests/e2e/container.sh (image/containers.conf)
	podman buildah runc
)

say() { printf 'deps: %s\n' "$*"; }

as_root() {
	if [ "$(id -u)" = 0 ]; then "$@"
	elif command -v sudo >/dev/null; then sudo "$@"
	else say "need root to run: $*"; say "run 'make deps' as root once"; exit 1
	fi
}

missing=()
for p in "${PACKAGES[@]}"; do
	case "$p" in \#*) continue ;; esac
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done

apt_updated=0
apt_update() {
	[ "$apt_updated" = 1 ] && return
	say "apt-get update"
	as_root apt-get update -qq
	apt_updated=1
}

if [ ${#missing[@]} -gt 0 ]; then
	say "installing: ${missing[*]}"
	apt_update
	as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# lwIP: Debian's liblwip-dev is built for the Hurd (NO_SYS=0, threads); we
# build the source package's src/ ourselves with netstack/lwipopts.h.
if [ ! -f "$LWIP_DIR/.ok" ]; then
	mkdir -p src
	if [ ! -f "src/$LWIP_ORIG" ] || ! echo "$LWIP_ORIG_SHA256  src/$LWIP_ORIG" | sha256sum -c --quiet 2>/dev/null; then
		if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
			say "adding a deb-src entry for bookworm"
			as_root tee /etc/apt/sources.list.d/meshproxy-deb-src.sources >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
			apt_updated=0
		fi
		apt_update
		say "fetching lwip $LWIP_VERSION source package"
		(cd src && apt-get source --download-only "lwip=${LWIP_VERSION}-2" >/dev/null 2>&1 ||
			as_root sh -c "cd '$PWD' && apt-get source --download-only 'lwip=${LWIP_VERSION}-2' >/dev/null")
	fi
	echo "$LWIP_ORIG_SHA256  src/$LWIP_ORIG" | sha256sum -c --quiet ||
		{ say "src/$LWIP_ORIG: sha256 mismatch, refusing to build it"; exit 1; }
	rm -rf "$LWIP_DIR"
	tar -C src -xf "src/$LWIP_ORIG"
	# Our patches (patches/lwip-*.patch) are applied at build time to
	# copies of the files they change (lwip_patches.mk): this tree stays
	# as Debian ships it.
	touch "$LWIP_DIR/.ok"
fi
