#!/usr/bin/env bash
# tests/check_layout.sh [--self-test] [ROOT]
#
# Fails when a lower layer includes a higher one. The layers, lowest first:
#   core/       the mesh engine (crypto, WireGuard, control wire format, utilities)
#   config/     INI parsing into typed structs
#   netstack/   lwIP glue (the only place that includes lwIP)
#   proxy/      front-ends: local sockets <-> netstack
#     proxy/proto/  the pure codecs: no event loop, no proxy runtime
#   node/       the mesh-proxy daemon (node/dns/: MagicDNS)
#   cli/        the mesh-proxy command
#   servers/    mesh-control (uses core/ and config/ only)
# and private headers stay with their folder: proxy/internal.h in proxy/,
# node/*_int.h and node/dns/*_int.h in node/, netstack/ns_priv.h and
# ns_hooks.h in netstack/. Tests, fuzzers, benchmarks and tools may include
# anything.
#
# Prints every offending FILE:LINE with the rule it breaks; exits 1 if any.
# --self-test first checks that the checker catches a planted violation of
# each rule in a scratch tree (and passes a clean one).
set -u

# forbidden LAYER_DIR : include prefixes that files under LAYER_DIR must
# not use (quoted includes, or angle-bracket ones for event2/ and lwip/).
forbidden() {
    case $1 in
    core/*) echo "config/ netstack/ proxy/ node/ cli/ servers/ lwip/" ;;
    config/*) echo "netstack/ proxy/ node/ cli/ servers/ lwip/" ;;
    netstack/*) echo "config/ proxy/ node/ cli/ servers/" ;;
    proxy/proto/*) echo "proxy/internal.h proxy/proxy.h node/ cli/ servers/ lwip/ event2/ config/" ;;
    proxy/*) echo "node/ cli/ servers/ lwip/" ;;
    node/*) echo "cli/ servers/ lwip/" ;;
    cli/*) echo "servers/ lwip/" ;;
    servers/*) echo "netstack/ proxy/ node/ cli/ lwip/" ;;
    esac
}

# private HEADER FILE : true if FILE may not include HEADER (a folder's
# private header used from outside that folder).
private_violation() {
    local inc=$1 file=$2
    case $file in tests/* | bench/*) return 1 ;; esac
    case $inc in
    proxy/internal.h) [[ $file != proxy/* ]] ;;
    node/*_int.h | node/dns/*_int.h) [[ $file != node/* ]] ;;
    ns_priv.h | ns_hooks.h | netstack/ns_priv.h | netstack/ns_hooks.h) [[ $file != netstack/* ]] ;;
    *) return 1 ;;
    esac
}

check_tree() {
    local root=$1 bad=0 file line inc n rules r
    cd "$root" || return 2
    while IFS= read -r file; do
        rules=$(forbidden "$file")
        n=0
        while IFS= read -r line; do
            n=$((n + 1))
            [[ $line =~ ^[[:space:]]*#[[:space:]]*include[[:space:]]*[\"\<]([^\"\>]+)[\"\>] ]] || continue
            inc=${BASH_REMATCH[1]}
            for r in $rules; do
                if [[ $inc == "$r"* ]]; then
                    echo "$file:$n: includes $inc, but ${file%%/*}/ must not depend on $r"
                    bad=1
                fi
            done
            if private_violation "$inc" "$file"; then
                echo "$file:$n: includes $inc, which is private to its folder"
                bad=1
            fi
        done <"$file"
    done < <(find core config netstack proxy node cli servers tests bench \
        -name '*.[ch]' 2>/dev/null | sort)
    return $bad
}

self_test() {
    local tmp ok=1 case
    tmp=$(mktemp -d /tmp/check-layout.XXXXXX)
    trap 'rm -rf "$tmp"' RETURN
    plant() { # plant FILE INCLUDE-LINE : a scratch tree with one violation
        rm -rf "$tmp/t"
        mkdir -p "$tmp/t/$(dirname "$1")" "$tmp/t/core/util"
        echo '#include "core/util/log.h"' >"$tmp/t/core/util/ok.c"
        printf '%s\n' "$2" >"$tmp/t/$1"
    }
    for case in \
        'core/wg/x.c|#include "proxy/proxy.h"' \
        'core/wg/x.c|#include "node/node.h"' \
        'core/wg/x.c|#include "netstack/ns.h"' \
        'core/wg/x.c|#include "servers/control/store.h"' \
        'netstack/x.c|#include "proxy/proxy.h"' \
        'netstack/x.c|#include "node/control.h"' \
        'proxy/x.c|#include "node/status.h"' \
        'proxy/x.c|#include "cli/api_client.h"' \
        'proxy/proto/x.c|#include "proxy/internal.h"' \
        'proxy/proto/x.c|#include <event2/event.h>' \
        'node/x.c|#include "cli/nc_client.h"' \
        'node/x.c|#include "proxy/internal.h"' \
        'servers/control/x.c|#include "node/node.h"' \
        'cli/x.c|#include "node/control_int.h"' \
        'cli/x.c|#include "lwip/tcp.h"'; do
        plant "${case%%|*}" "${case#*|}"
        if (check_tree "$tmp/t" >/dev/null); then
            echo "self-test: missed ${case%%|*}: ${case#*|}"
            ok=0
        fi
    done
    plant 'node/x.c' '#include "proxy/proxy.h"'
    if ! (check_tree "$tmp/t" >/dev/null); then
        echo "self-test: a clean tree (node/ includes proxy/proxy.h) was refused"
        ok=0
    fi
    [ $ok = 1 ]
}

ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ "${1:-}" = --self-test ]; then
    shift
    self_test || { echo "check-layout: the checker's self-test failed"; exit 1; }
fi
[ $# -gt 0 ] && ROOT=$1
if (check_tree "$ROOT"); then
    echo "check-layout: ok (core < config, netstack < proxy < node < cli; servers on core)"
else
    echo "check-layout: FAILED: a lower layer includes a higher one (see above; DESIGN.md, Layout)"
    exit 1
fi
