#!/usr/bin/env bash
# bench/run.sh BUILD_DIR [--quick] [--runs N] [--secs S] [--only PART,...]
#
# The benchmark suite (`make bench`): meshproxy next to wireguard-go, Nebula
# and microsocks on this machine in this run. Runs the parts one after
# another (each owns the machine while it measures), then writes
# bench/results/latest.md and bench/results/latest.png from their records
# (bench/results/data/PART.tsv). Needs root for the network namespaces;
# installs the Debian packages it needs. Method: bench/README.md.
#
# Parts: crypto (the crypto ceiling), throughput (iperf3/tcpbench, 1 and 4
# streams, CPU per GB, TCP RR), latency (ping, HTTP requests, start to
# first byte), memory (RSS idle, with 1,000 peers, with 1,000 connections),
# relay (a pair through mesh-relay next to loopback and direct; 1,000
# clients on one relay), control (mesh-control with 2,000 to 10,000
# simulated nodes: join storm, change latency; its own report,
# bench/results/control-scale.md).
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PARTS="crypto throughput latency memory relay control policy"
ONLY=""
ARGS=()
BUILD=""
while [ $# -gt 0 ]; do
    case $1 in
    --quick) ARGS+=(--quick) ;;
    --runs | --secs)
        [ $# -ge 2 ] || { echo "$0: $1 needs a value" >&2; exit 2; }
        ARGS+=("$1" "$2"); shift ;;
    --only)
        [ $# -ge 2 ] || { echo "$0: --only needs a list of parts ($PARTS)" >&2; exit 2; }
        ONLY=${2//,/ }; shift ;;
    -h | --help)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        exit 0 ;;
    -*) echo "$0: unknown option $1 (see --help)" >&2; exit 2 ;;
    *) BUILD=$1 ;;
    esac
    shift
done
[ -n "$BUILD" ] || { echo "usage: $0 BUILD_DIR [--quick] [--runs N] [--secs S] [--only PART,...]" >&2; exit 2; }
if [ "$(id -u)" -ne 0 ]; then
    echo "bench: needs root to build network namespaces (the programs measured run as nobody)" >&2
    exit 77
fi
for p in $ONLY; do
    case " $PARTS " in *" $p "*) ;; *) echo "$0: unknown part '$p' (parts: $PARTS)" >&2; exit 2 ;; esac
done
[ -n "$ONLY" ] && PARTS=$ONLY

# What the parts run, from Debian.
need=()
for c in iperf3:iperf3 wireguard-go:wireguard-go wg:wireguard-tools nebula:nebula \
    microsocks:microsocks gnuplot:gnuplot-nox python3:python3 ping:iputils-ping \
    setpriv:util-linux ss:iproute2 nsenter:util-linux nft:nftables; do
    command -v "${c%%:*}" >/dev/null 2>&1 || need+=("${c#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "bench: installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y --no-install-recommends "${need[@]}" ||
        { apt-get update && apt-get install -y --no-install-recommends "${need[@]}"; }; } >/dev/null ||
        { echo "bench: could not install ${need[*]}" >&2; exit 1; }
fi

# BENCH_RESULTS: where the report goes (default bench/results; the test of
# the suite points it at a temporary directory).
RESULTS=${BENCH_RESULTS:-$ROOT/bench/results}
DATA="$RESULTS/data"
mkdir -p "$DATA"
# A full run starts clean; --only keeps the other parts' last records.
[ -n "$ONLY" ] || rm -f "$DATA"/*.tsv
export BENCH_DATA="$DATA"
start=$(date +%s)
failed=()
for p in $PARTS; do
    echo "== bench part: $p ($(date -u +%H:%M:%S))"
    t0=$(date +%s)
    bash "$ROOT/bench/$p.sh" "$BUILD" "${ARGS[@]}"
    rc=$?
    echo "== bench part $p: exit $rc after $(($(date +%s) - t0)) s"
    [ $rc -eq 0 ] || failed+=("$p")
done
# The control part writes its own report (control-scale.md), no records.
if ls "$DATA"/*.tsv >/dev/null 2>&1; then
    python3 "$ROOT/bench/report.py" "$DATA" "$RESULTS/latest.md" "$RESULTS/latest.png" ||
        failed+=(report)
    echo
    cat "$RESULTS/latest.md"
    echo
    echo "bench: $(($(date +%s) - start)) s; written to $RESULTS/latest.md and latest.png"
else
    echo "bench: $(($(date +%s) - start)) s; no records for latest.md (the control part writes $RESULTS/control-scale.md)"
fi
if [ ${#failed[@]} -gt 0 ]; then
    echo "bench: these parts failed: ${failed[*]} (their logs: tests/artifacts/bench-PART/)" >&2
    exit 1
fi
