#!/usr/bin/env bash
# The container sidecar (issue 17's proof): `make image`'s image run by
# podman as uid 65534 on a read-only root with no capability, beside an app
# container that fetches a page from another mesh node by name through
# the sidecar's SOCKS5.
#
#   ctl  198.18.70.1   mesh-control serve (as nobody); a web server on
#                      127.0.0.1:8080 (httpd.py, as nobody); the "web" node:
#                      our image as a container in this namespace, exposing
#                      8080
#   pod  198.18.70.2   the "pod": the sidecar container (SOCKS5 on
#                      127.0.0.1:1080) and the app container (curl, from a
#                      test-only image FROM scratch) in one network namespace
# The join token names mesh-control as control.mesh.test, a name only the
# containers' /etc/hosts knows (--add-host): the image resolves names
# without a shell, NSS modules or resolver files of its own.
#
# Checks: the image is one layer FROM scratch, runs as 65534 with the
# sidecar entrypoint, holds no shell and stripped programs, nothing but
# what is on an allowlist (the programs, the libraries ldd names for them,
# the loader, the /etc files, a dpkg status record for each library's
# package); a second build with LD_PRELOAD and LD_LIBRARY_PATH set gives
# the same image ID; --keep-context refuses a non-empty directory; a library
# outside the loader's default directories, one ldd cannot find and a
# non-empty /etc/ld.so.preload stop the build; the sidecar has no
# capability (effective, permitted, bounding), NoNewPrivs, and the host's
# uid 65534 cannot read its /proc/PID/environ (the join token); the image is small
# (size and the sidecar's idle RSS are printed and kept in
# $E2E_LOGDIR/numbers); the app fetches http://web:8080/ through the
# sidecar; `mesh-proxy health` in the sidecar exits 0; `podman stop`
# (SIGTERM) ends the sidecar with status 0 and its node leaves
# `mesh-control nodes list` within 5 s (mesh-control's ephemeral timeout
# is the default 5 min, so only the node's logout can do that); started
# again, it gets the same name and the fetch works again; a node with its
# state on a volume (MESH_STATE_DIR=/state) keeps its name and address
# across a restart without registering again; without MESH_JOIN the
# sidecar stops at once with one line.
#
# Podman runs with image/containers.conf (CONTAINERS_CONF) and a store of
# this run's own (--root/--runroot/--tmpdir under $E2E_TMP), so parallel
# runs do not meet; containers are started from the host with --network
# ns:/run/netns/NAME (`ip netns exec` would remount /sys and hide the
# cgroups). Everything is removed on exit.
. "$(dirname "$0")/lib.sh"

e2e_require_root
e2e_require_cmd podman runc ip python3 setpriv ss curl strip readelf ldd tar gzip findmnt git dpkg-query unshare
e2e_tmp_init
e2e_require_mesh_proxy
if e2e_is_asan; then
    e2e_skip "$E2E_NAME: the image holds a normal build (make image refuses a sanitizer build); run it with build/"
fi
MC=$MESH_BUILD/mesh-control
[ -x "$MC" ] || die "no executable $MC (run make first)"
if ! "${AS_NOBODY[@]}" test -x "$MC" 2>/dev/null; then
    e2e_nobody_copy "$MC"
    MC=$E2E_COPY
fi
PY=/usr/bin/python3
[ -x $PY ] || PY=$(command -v python3)

export CONTAINERS_CONF=$E2E_ROOT/image/containers.conf
PSTORE=$E2E_TMP/podman
PODMAN=(podman --root "$PSTORE/root" --runroot "$PSTORE/run" --tmpdir "$PSTORE/tmp")
pm() { "${PODMAN[@]}" "$@"; }
IMG=localhost/meshproxy:test
APPIMG=localhost/meshproxy-test-curl:test
C_WEB=mpe${E2E_ID}web
C_SIDE=mpe${E2E_ID}side
C_KEEP=mpe${E2E_ID}keep
VOL=mpe${E2E_ID}state
CONTAINERS=("$C_WEB" "$C_SIDE" "$C_KEEP")
RUNOPTS=(--user 65534 --read-only --cap-drop=all --security-opt no-new-privileges --pull=never)
CTL_IP=198.18.70.1
CTL_NAME=control.mesh.test
NUMBERS=$E2E_LOGDIR/numbers

# The containers' logs are kept, then containers, volumes and images of
# the private store are removed before lib.sh's cleanup deletes the
# namespaces and $E2E_TMP.
container_cleanup() {
    local rc=$? c m
    if [ -d "$PSTORE/root" ]; then
        for c in "${CONTAINERS[@]}"; do
            pm container exists "$c" 2>/dev/null && pm logs "$c" >>"$E2E_LOGDIR/$c.log" 2>&1
        done
        pm rm -af -t 0 >/dev/null 2>&1
        pm volume rm -af >/dev/null 2>&1
        pm secret rm -a >/dev/null 2>&1
        pm rmi -af >/dev/null 2>&1
        # Anything the store still has mounted (an interrupted podman).
        while read -r m; do umount -l "$m" 2>/dev/null; done < <(
            findmnt -rn -o TARGET | grep -F "$PSTORE/" | sort -r)
    fi
    (exit "$rc")
    e2e_cleanup
}
trap container_cleanup EXIT
mkdir -p "$PSTORE"

# Can podman store an image here at all? A one-file FROM scratch image
# through the same settings and store, with nothing of ours in it: where
# even that fails (a chroot whose / is no mount point: "remount /, ...:
# invalid argument" when a layer is unpacked), this host cannot run the
# test. Our own image's build is checked below and fails the test.
probe_image() {
    local d=$E2E_TMP/probe
    mkdir -p "$d" && echo probe >"$d/probe" &&
        printf 'FROM scratch\nCOPY probe /probe\n' >"$d/Containerfile" &&
        pm build -q -t localhost/meshproxy-probe:test -f "$d/Containerfile" "$d"
}
if ! PROBE_OUT=$(probe_image 2>&1); then
    e2e_skip "$E2E_NAME: podman cannot build even a one-file image on this host: $(printf '%s\n' "$PROBE_OUT" | grep -m1 -iE 'error|invalid|denied' || printf '%s\n' "$PROBE_OUT" | tail -n 1)"
fi
pm rmi -f localhost/meshproxy-probe:test >/dev/null 2>&1

# --- images --------------------------------------------------------------------

step "make image's build script, into this run's private store"
T0=$(date +%s%N)
check "image/build.sh builds $IMG" \
    "$E2E_ROOT/image/build.sh" --build "$MESH_BUILD" --tag "$IMG" \
    --root "$PSTORE/root" --runroot "$PSTORE/run" --tmpdir "$PSTORE/tmp" ||
    die "no image"
info "image built in $((($(date +%s%N) - T0) / 1000000)) ms"
inspect() { pm image inspect -f "$1" "$IMG"; }
SIZE=$(inspect '{{.Size}}')
check "one layer (FROM scratch, one ADD)" test "$(inspect '{{len .RootFS.Layers}}')" = 1
check "runs as 65534:65534 by default" test "$(inspect '{{.Config.User}}')" = 65534:65534
check "entrypoint is mesh-proxy sidecar" test "$(inspect '{{json .Config.Entrypoint}}')" = '["/usr/bin/mesh-proxy","sidecar"]'
# 13.2 MB before mesh-control linked libpq (PostgreSQL store), whose
# Kerberos, LDAP and SASL libraries add about 9 MB.
check "the image is under 25 MB uncompressed ($SIZE bytes)" test "$SIZE" -lt 25000000
pm create --name "${E2E_ID}list" "$IMG" >/dev/null && pm export "${E2E_ID}list" >"$E2E_TMP/rootfs.tar"
pm rm -f "${E2E_ID}list" >/dev/null
tar --numeric-owner -tvf "$E2E_TMP/rootfs.tar" >"$E2E_LOGDIR/image-files.txt"
has_file() { grep -Eq " (\./)?$1\$" "$E2E_LOGDIR/image-files.txt"; }
# The loader the programs name (PT_INTERP), e.g. /lib64/ld-linux-x86-64.so.2.
INTERP=$(readelf -l "$MESH_BUILD/mesh-proxy" | sed -n 's/.*interpreter: \/\(.*\)]$/\1/p')
check "the image holds the three programs and their loader ($INTERP)" \
    eval 'has_file usr/bin/mesh-proxy && has_file usr/bin/mesh-control && has_file usr/bin/mesh-relay && [ -n "$INTERP" ] && has_file "$INTERP"'
check "and no shell" eval '! grep -Eq "bin/(ba|da)?sh$" "$E2E_LOGDIR/image-files.txt"'
# ldd_libs FILE... : the libraries the loader finds for FILE on this host,
# in an empty environment (no path relative: no leading /).
ldd_libs() {
    local f
    for f in "$@"; do
        env -i PATH=/usr/bin:/bin ldd "$f" | awk '$2 == "=>" && $3 ~ /^\// { print substr($3, 2) }'
    done | sort -u
}
# image_allowlist LIST : every entry of the image's file list LIST (tar
# -tv) is one build.sh puts there: the programs, the libraries they need
# and their directories, the loader, the /etc files, the dpkg records, and
# the empty directories tmp, run, var/tmp and state. Regular files and
# directories only (no link, no device).
image_allowlist() {
    local want=$E2E_TMP/allowed got=$E2E_TMP/entries bad
    {
        printf 'f %s\n' usr/bin/mesh-proxy usr/bin/mesh-control usr/bin/mesh-relay \
            etc/passwd etc/group etc/nsswitch.conf etc/os-release "$INTERP"
        ldd_libs "$MESH_BUILD"/mesh-proxy "$MESH_BUILD"/mesh-control "$MESH_BUILD"/mesh-relay |
            sed 's/^/f /'
        printf 'd %s\n' tmp run var/tmp state var/lib/dpkg/status.d
    } >"$want.files"
    awk '{ n = split($2, a, "/"); p = "";
           for (i = 1; i < n; i++) { p = p (p == "" ? "" : "/") a[i]; print "d", p } }' "$want.files" |
        cat - "$want.files" | sort -u >"$want"
    awk '{ t = substr($1, 1, 1); n = $6; sub(/^\.\//, "", n); sub(/\/$/, "", n);
           if (n != "" && n != ".") print (t == "-" ? "f" : t), n, $7 }' "$1" | sort -u >"$got"
    bad=$(grep -vE '^f var/lib/dpkg/status\.d/[a-z0-9][a-z0-9.+-]+ ?$' "$got" | sed 's/ $//' | comm -23 - "$want")
    [ -z "$bad" ] || { echo "not on the allowlist:"; echo "$bad"; return 1; }
}
check "every file in the image is on the allowlist (programs, their libraries, the loader, /etc, dpkg records)" \
    image_allowlist "$E2E_LOGDIR/image-files.txt"
# records_ok : a dpkg status record (status.d/NAME) for the package of
# every library, each with this host's version of NAME.
records_ok() {
    local d=$E2E_TMP/img r n lib o v
    mkdir -p "$d"
    tar -xf "$E2E_TMP/rootfs.tar" -C "$d" var/lib/dpkg/status.d 2>/dev/null ||
        tar -xf "$E2E_TMP/rootfs.tar" -C "$d" ./var/lib/dpkg/status.d || return 1
    for r in "$d"/var/lib/dpkg/status.d/*; do
        n=$(basename "$r")
        v=$(dpkg-query -W -f '${Version}' "$n") || return 1
        grep -qx "Package: $n" "$r" && grep -qxF "Version: $v" "$r" || { echo "$n: bad record"; cat "$r"; return 1; }
    done
    for lib in $INTERP $(ldd_libs "$MESH_BUILD"/mesh-proxy "$MESH_BUILD"/mesh-control "$MESH_BUILD"/mesh-relay); do
        # dpkg names the file by its unmerged or its /usr path.
        o=$( (dpkg-query -S "/$lib" || dpkg-query -S "/usr/$lib" || dpkg-query -S "/${lib#usr/}") 2>/dev/null |
            awk -F: 'NR == 1 { print $1 }')
        [ -n "$o" ] && [ -f "$d/var/lib/dpkg/status.d/$o" ] || { echo "no record of $lib's package ($o)"; return 1; }
    done
}
check "a dpkg status record with the installed version for every library's package" records_ok
check "/state is 65534's (0700), /tmp is 1777" \
    eval 'grep -Eq "^drwx------ 65534/65534 .* (\./)?state/?$" "$E2E_LOGDIR/image-files.txt" &&
          grep -Eq "^drwxrwxrwt 0/0 .* (\./)?tmp/?$" "$E2E_LOGDIR/image-files.txt"'
tar -xf "$E2E_TMP/rootfs.tar" -C "$E2E_TMP" usr/bin/mesh-proxy 2>/dev/null ||
    tar -xf "$E2E_TMP/rootfs.tar" -C "$E2E_TMP" ./usr/bin/mesh-proxy
check "the image's mesh-proxy is stripped, the build tree's is not" \
    eval '! readelf -S "$E2E_TMP/usr/bin/mesh-proxy" | grep -q "\.symtab" && readelf -S "$MESH_BUILD/mesh-proxy" | grep -q "\.symtab"'
REVISION=$(git -C "$E2E_ROOT" rev-parse --short HEAD)
[ -z "$(git -C "$E2E_ROOT" status --porcelain)" ] || REVISION=$REVISION-dirty
check "the revision label is the tree's ($REVISION), the creation time the commit's" \
    eval '[ "$(inspect "{{index .Labels \"org.opencontainers.image.revision\"}}")" = "$REVISION" ] &&
          [ "$(date -d "$(inspect "{{.Created}}" | cut -d" " -f1-3)" +%s)" = "$(git -C "$E2E_ROOT" log -1 --format=%ct)" ]'

step "the image again: the same image, whatever the caller's loader variables"
# A second build with a library preloaded and a copy of libsodium first on
# the library path: neither may reach the image (ldd runs with an empty
# environment), and the rest being equal the image ID is the same.
PRELOAD=$(ldd "$(command -v curl)" | awk '$1 ~ /^libz\.so/ && $3 ~ /^\// { print $3 }')
mkdir -p "$E2E_TMP/evil"
cp -L "/$(ldd_libs "$MESH_BUILD/mesh-proxy" | grep -m1 libsodium)" "$E2E_TMP/evil/"
check "build with LD_PRELOAD=$PRELOAD LD_LIBRARY_PATH=$E2E_TMP/evil" \
    env LD_PRELOAD="$PRELOAD" LD_LIBRARY_PATH="$E2E_TMP/evil" "$E2E_ROOT/image/build.sh" \
    --build "$MESH_BUILD" --tag "$IMG-again" \
    --root "$PSTORE/root" --runroot "$PSTORE/run" --tmpdir "$PSTORE/tmp" --keep-context "$E2E_TMP/ctx2"
check "neither the preloaded library nor the other libsodium is in its context" \
    eval '[ -n "$PRELOAD" ] && ! tar -tf "$E2E_TMP/ctx2/rootfs.tar" | grep -F -e "${PRELOAD##*/}" -e evil'
check "two builds of the same tree give the same image ID (reproducible)" \
    eval '[ "$(pm image inspect -f "{{.Id}}" "$IMG-again")" = "$(inspect "{{.Id}}")" ]'
pm rmi "$IMG-again" >/dev/null 2>&1
mkdir -p "$E2E_TMP/full" && echo keep >"$E2E_TMP/full/mine"
check "--keep-context on a non-empty directory: refused, the directory kept" \
    eval '! "$E2E_ROOT/image/build.sh" --build "$MESH_BUILD" --keep-context "$E2E_TMP/full" &&
          [ "$(cat "$E2E_TMP/full/mine")" = keep ]'
# fake_build : $E2E_TMP/fake holds three programs that need libfoo.so from
# $E2E_TMP/fake/lib (found through their RUNPATH, as a library from
# LD_LIBRARY_PATH or /usr/local/lib would be).
fake_build() {
    local d=$E2E_TMP/fake p
    mkdir -p "$d/lib"
    echo 'int foo(void) { return 0; }' >"$d/foo.c"
    echo 'int foo(void); int main(void) { return foo(); }' >"$d/main.c"
    cc -shared -fPIC -o "$d/lib/libfoo.so" "$d/foo.c" &&
        cc -o "$d/mesh-proxy" "$d/main.c" -L"$d/lib" -lfoo -Wl,-rpath,"$d/lib" || return 1
    for p in mesh-control mesh-relay; do cp "$d/mesh-proxy" "$d/$p"; done
}
# build_refused WHAT : build.sh on the fake build stops with one line that
# says WHAT.
build_refused() {
    local out rc
    out=$("$E2E_ROOT/image/build.sh" --build "$E2E_TMP/fake" --tag "$IMG-fake" \
        --root "$PSTORE/root" --runroot "$PSTORE/run" --tmpdir "$PSTORE/tmp" 2>&1)
    rc=$?
    echo "exit $rc: $out"
    [ $rc -ne 0 ] && [ "$(printf '%s\n' "$out" | grep -c .)" = 1 ] && [[ $out == *"$1"* ]]
}
if command -v cc >/dev/null && fake_build; then
    check "a library outside the loader's default directories stops the build" \
        build_refused "outside the loader's default directories"
    rm -rf "$E2E_TMP/fake/lib"
    check "a library ldd cannot find stops the build" build_refused "libfoo.so that ldd cannot find"
else
    info "no C compiler: the checks of a stray and a missing library are not run"
fi
# preload_refused : with an /etc/ld.so.preload (a copy of /etc bound over
# it, in a mount namespace of its own) build.sh stops with one line.
preload_refused() {
    local out rc
    cp -a /etc "$E2E_TMP/etc" && echo "$PRELOAD" >"$E2E_TMP/etc/ld.so.preload" || return 1
    out=$(unshare -m --propagation private bash -c 'mount --bind "$1" /etc && exec "${@:2}"' _ \
        "$E2E_TMP/etc" "$E2E_ROOT/image/build.sh" --build "$MESH_BUILD" --tag "$IMG-preload" \
        --root "$PSTORE/root" --runroot "$PSTORE/run" --tmpdir "$PSTORE/tmp" 2>&1)
    rc=$?
    rm -rf "$E2E_TMP/etc"
    echo "exit $rc: $out"
    [ $rc -ne 0 ] && [ "$(printf '%s\n' "$out" | grep -c .)" = 1 ] && [[ $out == *ld.so.preload* ]]
}
if unshare -m --propagation private true 2>/dev/null; then
    check "a non-empty /etc/ld.so.preload stops the build with one line" preload_refused
else
    info "no private mount namespace here: the /etc/ld.so.preload check is not run"
fi

GZ=$(pm save "$IMG" 2>/dev/null | gzip -6 | wc -c)
echo "image_bytes $SIZE" >"$NUMBERS"
echo "image_gzip_bytes $GZ" >>"$NUMBERS"
info "image: $SIZE bytes uncompressed, $GZ bytes as a gzipped archive"

# The app: curl and the libraries ldd names, FROM scratch (test only).
step "the app image (curl FROM scratch, test only)"
build_app_image() {
    local ctx=$E2E_TMP/appctx lib
    mkdir -p "$ctx/rootfs/usr/bin" "$ctx/rootfs/tmp"
    chmod 1777 "$ctx/rootfs/tmp"
    cp -L "$(command -v curl)" "$ctx/rootfs/usr/bin/curl"
    while read -r lib; do
        mkdir -p "$ctx/rootfs$(dirname "$lib")"
        cp -L "$lib" "$ctx/rootfs$lib"
    done < <(ldd "$(command -v curl)" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }')
    tar -cf "$ctx/rootfs.tar" --numeric-owner --owner=0 --group=0 -C "$ctx/rootfs" .
    printf 'FROM scratch\nADD rootfs.tar /\nUSER 65534:65534\nENTRYPOINT ["/usr/bin/curl"]\n' >"$ctx/Containerfile"
    pm build --pull=never --network=none -q -t "$APPIMG" "$ctx"
}
check "curl image built" build_app_image || die "no app image"

# --- the network -------------------------------------------------------------

step "namespaces: ctl and the pod"
ns_create ctl
ns_create pod
ns_link ctl "$CTL_IP/24" pod 198.18.70.2/24
check "pod reaches ctl" nsx pod ping -c 1 -W 2 "$CTL_IP" || exit 1

step "mesh-control (as nobody), the web server"
D=$E2E_TMP/run/control
mc() { nsx_nobody ctl "$MC" --data "$D" "$@"; }
check "init (join tokens name $CTL_NAME)" mc init --listen "$CTL_NAME:7443"
bg_nobody control ctl "$MC" --data "$D" serve --listen "$CTL_IP:7443" --log-level debug
wait_listen ctl 7443 10 || die "mesh-control did not listen"
EPH_TOKEN=$(mc token --reusable --ephemeral) || die "mesh-control token failed"
KEEP_TOKEN=$(mc token --reusable) || die "mesh-control token failed"
mkdir -p "$E2E_TMP/www"
echo "hello from web" | write_file "$E2E_TMP/www/index.html"
chmod 0755 "$E2E_TMP/www"
bg_nobody httpd ctl "$PY" "$E2E_DIR/httpd.py" 127.0.0.1 8080 "$E2E_TMP/www"
wait_listen ctl 8080 10 || die "web server did not start"

# node_json NAME : the node NAME's entry of `nodes list --json` (empty if none).
node_json() {
    mc nodes list --json | python3 -c '
import json, sys
for n in json.load(sys.stdin):
    if n["name"] == sys.argv[1]: print(json.dumps(n))' "$1"
}
node_field() { node_json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$2" 2>/dev/null; }
node_online() { [ "$(node_field "$1" online)" = True ]; }
node_absent() { [ -z "$(node_json "$1")" ]; }
node_count() { mc nodes list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# --- the containers ------------------------------------------------------------

# run_node CONTAINER NS KEY=VALUE... : our image, detached, in namespace NS,
# configured by MESH_* variables. VOLUME=NAME:PATH mounts a volume,
# HEALTHCHECK=CMD sets podman's health check.
run_node() {
    local name=$1 tag=$2 kv k v
    shift 2
    local env=() opts=()
    for kv in "$@"; do
        k=${kv%%=*} v=${kv#*=}
        case $k in
        VOLUME) opts+=(-v "$v"); continue ;;
        HEALTHCHECK) opts+=(--health-cmd "$v" --health-interval 30s); continue ;;
        esac
        # The token as the README passes it: a podman secret, as a variable.
        if [ "$k" = MESH_JOIN ]; then
            printf '%s' "$v" | pm secret create "$name-join" - >/dev/null || return 1
            env+=(--secret "$name-join,type=env,target=MESH_JOIN")
        else
            env+=(-e "$kv")
        fi
    done
    local net=(--network "ns:/run/netns/$(ns "$tag")" --add-host "$CTL_NAME:$CTL_IP")
    pm run -d --name "$name" "${RUNOPTS[@]}" "${net[@]}" "${opts[@]}" "${env[@]}" "$IMG"
}
cpid() { pm inspect -f '{{.State.Pid}}' "$1"; }
cexit() { pm inspect -f '{{.State.ExitCode}}' "$1"; }
crunning() { [ "$(pm inspect -f '{{.State.Running}}' "$1" 2>/dev/null)" = true ]; }

step "the web node: our image in ctl's namespace, exposing 8080"
check "web container started" run_node "$C_WEB" ctl MESH_JOIN="$EPH_TOKEN" MESH_HOSTNAME=web \
    MESH_EXPOSE=8080 MESH_LOG_LEVEL=debug >/dev/null || die "podman run failed"
check "web joined (through $CTL_NAME from --add-host)" wait_until 20 node_online web ||
    die "the web node did not join (podman logs: $E2E_LOGDIR/$C_WEB.log)"

step "the pod: the sidecar and the app"
T0=$(date +%s%N)
check "sidecar started (--user 65534 --read-only --cap-drop=all)" run_node "$C_SIDE" pod \
    MESH_JOIN="$EPH_TOKEN" MESH_HOSTNAME=app MESH_SOCKS5=1080 MESH_LOG_LEVEL=debug \
    HEALTHCHECK='["/usr/bin/mesh-proxy","health"]' >/dev/null ||
    die "podman run failed"
check "the sidecar's node joined as app" wait_until 20 node_online app ||
    die "the sidecar did not join (podman logs: $E2E_LOGDIR/$C_SIDE.log)"
info "app online $((($(date +%s%N) - T0) / 1000000)) ms after podman run"
check "the sidecar runs as uid 65534 on the host" \
    test "$(awk '/^Uid:/ { print $2 }' "/proc/$(cpid "$C_SIDE")/status")" = 65534
SPID=$(cpid "$C_SIDE")
# status_is FIELD VALUE : /proc/$SPID/status says FIELD: VALUE.
status_is() { [ "$(awk -v f="$1:" '$1 == f { print $2 }' "/proc/$SPID/status")" = "$2" ]; }
check "with no capability, none it could regain (CapEff, CapPrm, CapBnd 0) and NoNewPrivs" \
    eval 'status_is CapEff 0000000000000000 && status_is CapPrm 0000000000000000 &&
          status_is CapBnd 0000000000000000 && status_is NoNewPrivs 1 || { grep -E "^(Cap|NoNew)" /proc/$SPID/status; false; }'
# The host's uid 65534 (the host's nobody: the same uid, no user namespace)
# must not read the sidecar's environment, which holds the join token: the
# node is not dumpable, so /proc/PID/environ is root's. Root can, and
# 65534 can read its status: the check itself works.
AS_65534=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all --)
check "root reads the sidecar's /proc/PID/environ (it holds MESH_JOIN)" \
    eval 'tr "\0" "\n" <"/proc/$SPID/environ" | grep -q "^MESH_JOIN="'
check "the host's uid 65534 reads its /proc/PID/status" "${AS_65534[@]}" cat "/proc/$SPID/status"
check "but not its /proc/PID/environ" eval '! "${AS_65534[@]}" cat "/proc/$SPID/environ"'

# app_fetch WANT : the app container fetches http://web:8080/ through the
# sidecar's SOCKS5 (the name resolved by the sidecar: --socks5-hostname).
app_fetch() {
    local got
    got=$(pm run --rm "${RUNOPTS[@]}" --network "ns:/run/netns/$(ns pod)" "$APPIMG" \
        -sS --max-time 10 --socks5-hostname 127.0.0.1:1080 http://web:8080/ 2>&1)
    [ "$got" = "$1" ] || { echo "got: $got"; return 1; }
}
check "the app container fetches http://web:8080/ through the sidecar's SOCKS5" \
    wait_until 30 app_fetch "hello from web"
# wait_show SECONDS CMD... : wait_until, and on timeout CMD once more with
# its output shown.
wait_show() { wait_until "$@" || { "${@:2}"; return 1; }; }
HW=10
check "podman exec: mesh-proxy health exits 0 once ready" \
    wait_show $HW pm exec "$C_SIDE" /usr/bin/mesh-proxy health
# The README's health check: exec form, no shell in the image. Podman runs
# it from a systemd timer; without systemd, healthcheck run runs it now.
check "podman healthcheck run (--health-cmd '[\"/usr/bin/mesh-proxy\",\"health\"]') says healthy" \
    wait_show $HW pm healthcheck run "$C_SIDE"

step "numbers"
sleep 5 # idle: joined, one fetch done
RSS=$(proc_rss_kib "$(cpid "$C_SIDE")")
HWM=$(proc_hwm_kib "$(cpid "$C_SIDE")")
echo "sidecar_idle_rss_kib $RSS" >>"$NUMBERS"
echo "sidecar_peak_rss_kib $HWM" >>"$NUMBERS"
# Of which anonymous (heap, stacks) and file-backed (the programs' and
# libraries' pages in use).
awk '/^Rss(Anon|File):/ { print "sidecar_idle_" tolower($1) "_kib", $2 }' \
    "/proc/$(cpid "$C_SIDE")/status" | tr -d : >>"$NUMBERS"
info "sidecar idle VmRSS $RSS KiB (peak $HWM KiB); image $SIZE bytes"
check "the sidecar's idle RSS is under 32 MiB ($RSS KiB)" test "${RSS:-999999}" -lt 32768

step "podman stop (SIGTERM): exit 0, the node leaves mesh-control"
T0=$(date +%s%N)
pm stop -t 10 "$C_SIDE" >/dev/null 2>>"$E2E_LOGDIR/podman.log"
T1=$(date +%s%N)
info "podman stop took $(((T1 - T0) / 1000000)) ms"
echo "sidecar_stop_ms $(((T1 - T0) / 1000000))" >>"$NUMBERS"
check "the sidecar exited with status 0" test "$(cexit "$C_SIDE")" = 0
check "within 5 s of podman stop (no SIGKILL after the 10 s grace)" test $(((T1 - T0) / 1000000)) -lt 5000
# left_within_5s : app is gone from the node list within 5 s of the stop
# command (T0), which includes podman stop's own time.
left_within_5s() {
    local ms
    while ! node_absent app; do
        ms=$((($(date +%s%N) - T0) / 1000000))
        [ "$ms" -lt 5000 ] || { echo "app still listed ${ms} ms after podman stop"; return 1; }
        sleep 0.2
    done
    ms=$((($(date +%s%N) - T0) / 1000000))
    echo "$ms" >"$E2E_TMP/left_ms"
}
check "app left mesh-control's node list within 5 s" left_within_5s
if [ -s "$E2E_TMP/left_ms" ]; then
    info "app left the node list $(cat "$E2E_TMP/left_ms") ms after podman stop began"
    echo "sidecar_leave_ms $(cat "$E2E_TMP/left_ms")" >>"$NUMBERS"
fi

step "started again with the same hostname"
pm logs "$C_SIDE" >"$E2E_LOGDIR/$C_SIDE.first.log" 2>&1
pm start "$C_SIDE" >/dev/null 2>>"$E2E_LOGDIR/podman.log"
check "the sidecar runs again" wait_until 10 crunning "$C_SIDE"
check "the app fetches through it again" wait_until 30 app_fetch "hello from web"
# app_names : the names of the nodes called app or app-N, sorted.
app_names() {
    mc nodes list --json | python3 -c '
import json, re, sys
print(" ".join(sorted(n["name"] for n in json.load(sys.stdin) if re.fullmatch(r"app(-[0-9]+)?", n["name"]))))'
}
check "it is app again, the only one (no app-N)" \
    eval 'node_online app && [ "$(app_names)" = app ] || { echo "nodes: $(app_names)"; false; }'

step "a node with its state on a volume keeps its identity"
check "a sidecar with MESH_STATE_DIR=/state on volume $VOL started" run_node "$C_KEEP" pod \
    MESH_JOIN="$KEEP_TOKEN" MESH_HOSTNAME=keep MESH_STATE_DIR=/state VOLUME="$VOL:/state" \
    MESH_LOG_LEVEL=debug >/dev/null
check "keep joined" wait_until 20 node_online keep
IP_BEFORE=$(node_field keep ipv4)
# vol_state_ok : the volume holds the node's state, 65534's, the directory
# 0700 and no file others may read.
vol_state_ok() {
    local mp
    mp=$(pm volume inspect -f '{{.Mountpoint}}' "$VOL") || return 1
    ls -ln "$mp"
    [ "$(stat -c "%u %a" "$mp")" = "65534 700" ] && [ -n "$(ls -A "$mp")" ] &&
        [ -z "$(find "$mp" -mindepth 1 ! -uid 65534)" ] &&
        [ -z "$(find "$mp" -mindepth 1 -type f -perm /077)" ]
}
check "the volume holds keep's state: uid 65534, 0700, files private" vol_state_ok
N_BEFORE=$(node_count)
pm stop -t 10 "$C_KEEP" >/dev/null 2>>"$E2E_LOGDIR/podman.log"
check "keep exited with status 0 after podman stop" test "$(cexit "$C_KEEP")" = 0
check "a node with state stays registered (offline) after SIGTERM" eval '! node_absent keep'
pm logs "$C_KEEP" >"$E2E_LOGDIR/$C_KEEP.first.log" 2>&1
pm start "$C_KEEP" >/dev/null 2>>"$E2E_LOGDIR/podman.log"
check "keep is online again" wait_until 20 node_online keep
check "with the same address ($IP_BEFORE) and no new registration" \
    eval '[ "$(node_field keep ipv4)" = "$IP_BEFORE" ] && [ "$(node_count)" = "$N_BEFORE" ]'
check "podman exec: mesh-proxy health finds a node with a state directory too" \
    wait_show $HW pm exec "$C_KEEP" /usr/bin/mesh-proxy health

step "bad settings stop the container at once"
no_join_one_line() {
    local out rc
    out=$(timeout 20 "${PODMAN[@]}" run --rm "${RUNOPTS[@]}" --network none "$IMG" 2>&1)
    rc=$?
    echo "exit $rc: $out"
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && [ "$(printf '%s\n' "$out" | grep -c .)" = 1 ]
}
check "no MESH_JOIN and no state: a non-zero exit and one line" no_join_one_line

step "stop everything"
for c in "$C_WEB" "$C_SIDE" "$C_KEEP"; do
    pm stop -t 10 "$c" >/dev/null 2>&1
    check "$c exited with status 0" test "$(cexit "$c")" = 0
done
e2e_finish
