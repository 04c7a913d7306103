#!/usr/bin/env bash
# image/build.sh: meshproxy's OCI image, FROM scratch, with podman (buildah
# underneath) and no registry pull.
#
# usage: image/build.sh [--build DIR] [--tag TAG] [--root DIR --runroot DIR
#                       [--tmpdir DIR]] [--keep-context NEWDIR]
#                       [--revision REV]
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
#   /etc/os-release          the build host's (Debian's base-files)
#   /var/lib/dpkg/status.d/NAME
#                            the dpkg status record of each package a file
#                            in the image comes from (as Debian's
#                            distroless images keep them), so image
#                            scanners see which versions it holds
#   /tmp (1777), /run, /var/tmp
#                            --read-only mounts tmpfs there; the ephemeral
#                            node's state and the API socket live in /tmp
#   /state (0700, 65534)     the state directory when MESH_STATE_DIR=/state
#                            and a volume is mounted there (a new named
#                            volume takes this owner; another UID mounts
#                            a directory of its own there)
# USER 65534:65534, ENTRYPOINT mesh-proxy sidecar (settings from MESH_*).
#
# The libraries: ldd runs with an empty environment (no LD_PRELOAD or
# LD_LIBRARY_PATH of the caller's); the build stops on a library ldd cannot
# find, on one outside the loader's default directories (/lib, /usr/lib and
# their multiarch directories), on one no Debian package owns, and on a
# non-empty /etc/ld.so.preload.
#
# Reproducible: the files go in as one tar made here (ADD extracts it
# keeping owners and modes) with fixed owners, and the image's times are
# SOURCE_DATE_EPOCH, else the last commit's time (podman build
# --timestamp), so the same tree and the same host packages give the same
# image ID. The revision label is the commit, with -dirty when the tree has
# changes; outside a git checkout set SOURCE_DATE_EPOCH and --revision.
#
# --keep-context NEWDIR keeps the build context (rootfs.tar, Containerfile)
# there; NEWDIR must not exist or be an empty directory.
# --root/--runroot/--tmpdir are podman's global options (a private image
# store, e.g. for tests); without them the image is tagged in the caller's
# default store. CONTAINERS_CONF defaults to image/containers.conf (for
# this build only: the Containerfile runs nothing, so the host's seccomp,
# AppArmor and user namespace settings have nothing to apply to).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BUILD=$ROOT/build
TAG=meshproxy:latest
KEEP=""
REV=""
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
	--revision) REV=${2:?--revision needs a name}; shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) die "unknown argument '$1' (see --help)" ;;
	esac
	shift
done

export CONTAINERS_CONF=${CONTAINERS_CONF:-$HERE/containers.conf}
command -v podman >/dev/null || die "podman is not installed (make deps installs it: apt-get install podman buildah runc)"
command -v strip >/dev/null && command -v readelf >/dev/null ||
	die "strip or readelf is not installed (apt-get install binutils)"
# The context is moved there at the end: never over something that exists.
if [ -n "$KEEP" ]; then
	if [ -e "$KEEP" ] || [ -L "$KEEP" ]; then
		[ -d "$KEEP" ] && [ ! -L "$KEEP" ] && [ -z "$(ls -A "$KEEP")" ] ||
			die "--keep-context $KEEP exists and is not an empty directory: name a new one"
	fi
	[ -d "$(dirname "$KEEP")" ] || die "--keep-context $KEEP: no directory $(dirname "$KEEP")"
fi

PROGS=(mesh-proxy mesh-control mesh-relay)
for p in "${PROGS[@]}"; do
	[ -x "$BUILD/$p" ] || die "no $BUILD/$p: run make first"
done

# The loader's default directories ("system search path" in ld.so --help,
# glibc 2.33+; else /lib, /usr/lib and their multiarch directories). The
# image has no ld.so.cache, so a library elsewhere would not be found in it.
sysdirs() {
	local interp=$1 d ma
	d=$(env -i "$interp" --help 2>/dev/null | awk '/\(system search path\)/ { print $1 }')
	if [ -z "$d" ]; then
		ma=$(gcc -print-multiarch 2>/dev/null || true)
		d=$(printf '%s\n' /lib /usr/lib ${ma:+/lib/$ma /usr/lib/$ma})
	fi
	printf '%s\n' "$d"
}

# libs FILE... : the shared objects the programs load, one path a line
# (ldd's "name => /path (addr)" and the loader's "/path (addr)" lines).
# ldd runs with an empty environment: an LD_PRELOAD or LD_LIBRARY_PATH of
# the caller's would add its libraries or swap ours. Anything ldd cannot
# find, and anything outside the loader's default directories, stops the
# build; the loader itself must be the programs' PT_INTERP.
libs() {
	local f out lib bad
	for f in "$@"; do
		out=$(env -i PATH=/usr/bin:/bin ldd "$f") || die "ldd $f failed"
		case $out in
		*libasan* | *libubsan*) die "$f is a sanitizer build: build the image from a normal build (make, not SANITIZE=1)" ;;
		esac
		bad=$(grep 'not found' <<<"$out" | awk '{ print $1 }' | tr '\n' ' ')
		[ -z "$bad" ] || die "$f needs ${bad% } that ldd cannot find: install it (make deps) and rebuild"
		awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' <<<"$out"
	done | sort -u | while read -r lib; do
		if [ "$lib" = "$INTERP" ]; then
			echo "$lib"
		elif [[ $lib == *..* ]] || ! grep -qxF "$(dirname "$lib")" <<<"$SYSDIRS"; then
			die "$lib is outside the loader's default directories ($(tr '\n' ' ' <<<"$SYSDIRS" | sed 's/ $//')): the image has no ld.so.cache to find it; install the library from a Debian package or link it statically"
		else
			echo "$lib"
		fi
	done
}

# owner FILE : the Debian package (NAME:ARCH) that installed FILE. dpkg's
# database may name a file by its /usr-merged or unmerged path, or by the
# file a symlink points to.
owner() {
	local f=$1 real c o
	real=$(readlink -f "$f")
	for c in "$f" "${f#/usr}" "/usr$f" "$real" "${real#/usr}" "/usr$real"; do
		o=$(dpkg-query -S "$c" 2>/dev/null | awk -F': ' 'NR == 1 { print $1 }') || true
		[ -z "$o" ] || { echo "$o"; return; }
	done
	return 1
}

[ ! -s /etc/ld.so.preload ] || ! grep -q '[^[:space:]]' /etc/ld.so.preload ||
	die "/etc/ld.so.preload is not empty: every program here loads $(grep -v '^[[:space:]]*$' /etc/ld.so.preload | head -n 1 | awk '{ print $1 }'), so ldd cannot tell what the programs need; build the image on a host (or in a container) without it"
command -v dpkg-query >/dev/null || die "dpkg-query is not installed: the image records the Debian package of every library it holds, so build it on Debian"
INTERP=$(readelf -l "$BUILD/mesh-proxy" | sed -n 's/.*interpreter: \(.*\)]$/\1/p')
[ -n "$INTERP" ] || die "$BUILD/mesh-proxy names no dynamic loader (PT_INTERP)"
SYSDIRS=$(sysdirs "$INTERP")

# The tree's time and revision: the image's creation time, its files' times
# and its revision label, so the same tree gives the same image.
if [ -n "${SOURCE_DATE_EPOCH:-}" ] && [ -n "$REV" ]; then
	EPOCH=$SOURCE_DATE_EPOCH
else
	GITERR=$(git -C "$ROOT" rev-parse --verify -q HEAD 2>&1 >/dev/null) ||
		die "cannot read the commit of $ROOT (git: ${GITERR:-no commit}): build from a git checkout, or set SOURCE_DATE_EPOCH and pass --revision"
	EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$ROOT" log -1 --format=%ct)}
	if [ -z "$REV" ]; then
		REV=$(git -C "$ROOT" rev-parse --short HEAD)
		DIRTY=$(git -C "$ROOT" status --porcelain 2>&1) || die "git status failed in $ROOT: $DIRTY"
		[ -z "$DIRTY" ] || REV=$REV-dirty
	fi
fi
[[ $EPOCH =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be seconds since 1970, not '$EPOCH'"

CTX=$(mktemp -d "${TMPDIR:-/tmp}/meshproxy-image.XXXXXX")
cleanup() { [ -n "$KEEP" ] || rm -rf "$CTX"; }
trap cleanup EXIT
R=$CTX/rootfs
mkdir -p "$R/usr/bin" "$R/etc" "$R/tmp" "$R/run" "$R/var/tmp" "$R/state" "$R/var/lib/dpkg/status.d"

for p in "${PROGS[@]}"; do
	strip --strip-all -o "$R/usr/bin/$p" "$BUILD/$p"
	chmod 0755 "$R/usr/bin/$p"
done
LIBS=$(libs "${PROGS[@]/#/$BUILD/}") || exit 1
# /etc/os-release tells scanners which distribution the packages are from.
OSREL=$(readlink -f /etc/os-release)
PKGS=""
while read -r lib; do
	[ -n "$lib" ] || continue
	mkdir -p "$R$(dirname "$lib")"
	cp -L "$lib" "$R$lib"
	chmod 0755 "$R$lib"
	o=$(owner "$lib") || die "no Debian package owns $lib (dpkg-query -S): the image takes libraries from packages only"
	PKGS+="$o"$'\n'
done <<<"$LIBS"
o=$(owner "$OSREL") || die "no Debian package owns $OSREL"
PKGS+="$o"$'\n'
cp -L "$OSREL" "$R/etc/os-release"
chmod 0644 "$R/etc/os-release"
# One dpkg status record per package, as Debian's distroless images keep
# them (/var/lib/dpkg/status.d/NAME), so image scanners see the versions.
while read -r o; do
	[ -n "$o" ] || continue
	dpkg-query -s "$o" | grep -v '^Conffiles:\|^ /' >"$R/var/lib/dpkg/status.d/${o%%:*}" ||
		die "dpkg-query -s $o failed"
	chmod 0644 "$R/var/lib/dpkg/status.d/${o%%:*}"
done < <(sort -u <<<"$PKGS")
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
TAROPT=(--sort=name --mtime="@$EPOCH" --numeric-owner --format=gnu -C "$R")
tar -cf "$CTX/rootfs.tar" "${TAROPT[@]}" --owner=0 --group=0 --exclude=./state .
tar -rf "$CTX/rootfs.tar" "${TAROPT[@]}" --owner=65534 --group=65534 ./state
rm -rf "$R"
cp "$HERE/Containerfile" "$CTX/Containerfile"

VERSION=$("$BUILD/mesh-proxy" --version | awk '{ print $2 }')
"${PODMAN[@]}" build --pull=never --network=none --layers=false --timestamp "$EPOCH" \
	--label "org.opencontainers.image.title=meshproxy" \
	--label "org.opencontainers.image.version=$VERSION" \
	--label "org.opencontainers.image.revision=$REV" \
	-t "$TAG" -f "$CTX/Containerfile" "$CTX" >&2 ||
	die "podman build failed (see above)"
[ -z "$KEEP" ] || { rmdir "$KEEP" 2>/dev/null || true; mv "$CTX" "$KEEP"; }

SIZE=$("${PODMAN[@]}" image inspect -f '{{.Size}}' "$TAG")
echo "image $TAG: $SIZE bytes ($((SIZE / 1024)) KiB) uncompressed; mesh-proxy $VERSION ($REV)"
