#!/usr/bin/env bash
# image/build.sh: meshproxy's OCI image, FROM scratch, with podman (buildah
# underneath) and no registry pull.
#
# usage: image/build.sh [--build DIR] [--tag TAG] [--root DIR --runroot DIR
#                       [--tmpdir DIR]] [--keep-context DIR]
#
# The image holds mesh-proxy, mesh-control and mesh-relay from DIR (default
# build/), stripped (the build tree keeps its unstripped copies), the
# shared libraries `ldd` names for them and the dynamic loader, at the
# paths ldd gives (so the loader's default search path finds them: no
# ld.so.cache), and a few files and directories:
#   /etc/passwd, /etc/group  root and nobody (65534), so `--user nobody`
#                            works by name; the programs never look a user
#                            up, so any other UID runs as well
#   /etc/nsswitch.conf       "hosts: files dns": without it glibc's
#                            getaddrinfo asks DNS first and reads /etc/hosts
#                            only when no DNS server answers, so a name from
#                            --add-host would lose against the resolver.
#                            glibc 2.34+ has files and dns built in: no
#                            libnss_*.so is needed. /etc/hosts and
#                            /etc/resolv.conf are podman's (bind mounts)
#   /tmp (1777), /run, /var/tmp
#                            --read-only mounts tmpfs there; the ephemeral
#                            node's state and the API socket live in /tmp
#   /state (0700, 65534)     the state directory when MESH_STATE_DIR=/state
#                            and a volume is mounted there (a new named
#                            volume takes this owner; another UID mounts
#                            a directory of its own there)
# USER 65534:65534, ENTRYPOINT mesh-proxy sidecar (settings from MESH_*).
# The files go in as one tar made here (ADD extracts it keeping owners and
# modes), with fixed owners and the last commit's time, so the same
# binaries give the same layer.
#
# --root/--runroot/--tmpdir are podman's global options (a private image
# store, e.g. for tests); without them the image is tagged in the caller's
# default store. CONTAINERS_CONF defaults to image/containers.conf.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$ROOT/build
TAG=meshproxy:latest
KEEP=""
PODMAN=(podman)

die() {
	echo "image/build.sh: $*" >&2
	exit 1
}

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=${2:?--build needs a directory}; shift ;;
	--tag) TAG=${2:?--tag needs a name}; shift ;;
	--root | --runroot | --tmpdir) PODMAN+=("$1" "${2:?$1 needs a directory}"); shift ;;
	--keep-context) KEEP=${2:?--keep-context needs a directory}; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}
command -v podman >/dev/null || die "podman is not installed (make deps installs it: apt-get install podman buildah runc)"
command -v strip >/dev/null || die "strip is not installed (apt-get install binutils)"

PROGS=(mesh-proxy mesh-control mesh-relay)
for p in "${PROGS[@]}"; do
	[ -x "$BUILD/$p" ] || die "no $BUILD/$p: run make first"
done

# libs FILE... : the shared objects the programs load, one path a line
# (ldd's "name => /path (addr)" and the loader's "/path (addr)" lines).
libs() {
	local f out
	for f in "$@"; do
		out=$(ldd "$f") || die "ldd $f failed"
		case $out in
		*libasan* | *libubsan*) die "$f is a sanitizer build: build the image from a normal build (make, not SANITIZE=1)" ;;
		esac
		awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
	done | sort -u
}

CTX=$(mktemp -d "${TMPDIR:-/tmp}/meshproxy-image.XXXXXX")
cleanup() { [ -n "$KEEP" ] || rm -rf "$CTX"; }
trap cleanup EXIT
R=$CTX/rootfs
mkdir -p "$R/usr/bin" "$R/etc" "$R/tmp" "$R/run" "$R/var/tmp" "$R/state"

for p in "${PROGS[@]}"; do
	strip --strip-all -o "$R/usr/bin/$p" "$BUILD/$p"
	chmod 0755 "$R/usr/bin/$p"
done
while read -r lib; do
	[ -n "$lib" ] || continue
	mkdir -p "$R$(dirname "$lib")"
	cp -L "$lib" "$R$lib"
	chmod 0755 "$R$lib"
done < <(libs "${PROGS[@]/#/$BUILD/}")
find "$R" -type d -exec chmod 0755 {} +
chmod 1777 "$R/tmp" "$R/var/tmp"
chmod 0700 "$R/state"

cat >"$R/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/usr/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
EOF
cat >"$R/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo 'hosts: files dns' >"$R/etc/nsswitch.conf"
chmod 0644 "$R/etc/passwd" "$R/etc/group" "$R/etc/nsswitch.conf"

# One tar: everything root's but /state; names sorted; times fixed.
EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct 2>/dev/null || echo 0)}
TAROPT=(--sort=name --mtime="@$EPOCH" --numeric-owner --format=gnu -C "$R")
tar -cf "$CTX/rootfs.tar" "${TAROPT[@]}" --owner=0 --group=0 --exclude=./state .
tar -rf "$CTX/rootfs.tar" "${TAROPT[@]}" --owner=65534 --group=65534 ./state
rm -rf "$R"
cp "$HERE/Containerfile" "$CTX/Containerfile"

VERSION=$("$BUILD/mesh-proxy" --version | awk '{ print $2 }')
REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
"${PODMAN[@]}" build --pull=never --network=none --layers=false \
	--label "org.opencontainers.image.title=meshproxy" \
	--label "org.opencontainers.image.version=$VERSION" \
	--label "org.opencontainers.image.revision=$REV" \
	-t "$TAG" -f "$CTX/Containerfile" "$CTX" >&2 ||
	die "podman build failed (see above)"
[ -z "$KEEP" ] || { rm -rf "$KEEP"; mv "$CTX" "$KEEP"; }

SIZE=$("${PODMAN[@]}" image inspect -f '{{.Size}}' "$TAG")
echo "image $TAG: $SIZE bytes ($((SIZE / 1024)) KiB) uncompressed; mesh-proxy $VERSION ($REV)"
