#!/usr/bin/env bash
# tests/bench_smoke.sh BUILD_DIR: the benchmark suite works. A test of the
# tooling, not of speed: no figure is compared with a threshold.
#  1. bench/report.py on fixed records: medians, ratios, targets met and not
#     met, failed figures listed, every run kept.
#  2. `bench/run.sh BUILD_DIR --quick` (root: network namespaces) into a
#     temporary directory: every part exits 0, every path and metric the
#     suite promises has a value (no "fail:" record), the report has every
#     target measured, and the chart is a PNG.
set -u
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-build}
TMP=$(mktemp -d /tmp/bench-smoke.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
fails=0
ok() { echo "PASS  $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
has() { grep -qF -- "$2" "$1" && ok "$3" || bad "$3 (no '$2' in $1)"; }

# --- 1. the report on fixed records ---------------------------------------------
mkdir -p "$TMP/fix"
printf '%s\n' \
    $'wggo\ttput1_up\tMbit/s\t500 600 400' \
    $'nebula\ttput1_up\tMbit/s\t700 800 900' \
    $'mesh_fwd\ttput1_up\tMbit/s\t1000 1200 1100' \
    $'wggo\ttput1_down\tMbit/s\t500 500 500' \
    $'nebula\ttput1_down\tMbit/s\t1200 1200 1200' \
    $'mesh_fwd\ttput1_down\tMbit/s\t1100 1100 1100' \
    $'mesh_fwd\ttput4_up\tMbit/s\tfail: iperf3 timed out' \
    $'wggo\trss_idle_1\tKiB\t4900' \
    $'mesh_fwd\trss_idle_1\tKiB\t3000 3100 3200' \
    $'loopback\ttput_256m\tMbit/s\t8000 10000 12000' \
    $'mesh_relay\ttput_256m\tMbit/s\t400 500 600' \
    $'mesh_direct\ttput_256m\tMbit/s\t2000 2000 2000' \
    $'relay_load\tload_pps\tpackets/s\t50000' \
    >"$TMP/fix/x.tsv"
if python3 "$ROOT/bench/report.py" "$TMP/fix" "$TMP/fix/out.md"; then
    ok "report.py writes a report from fixed records"
    has "$TMP/fix/out.md" "| 1-stream TCP up through a forward ≥ 2× wireguard-go and > Nebula | 1,100 Mbit/s = 2.20× wireguard-go, 1.38× Nebula | yes |" \
        "target met: median 1,100 = 2.20× the median 500 and above Nebula's 800"
    has "$TMP/fix/out.md" "| 1-stream TCP down through a forward ≥ 2× wireguard-go and > Nebula | 1,100 Mbit/s = 2.20× wireguard-go, 0.92× Nebula | no |" \
        "target not met when Nebula is faster"
    has "$TMP/fix/out.md" "| idle RSS < 4 MiB (wireguard-go: 4,900 KiB) | 3,100 KiB | yes |" "RSS target from the median"
    has "$TMP/fix/out.md" "| ping median over the mesh ≤ wireguard-go's | - ms = - wireguard-go | not measured |" \
        "a target without figures says 'not measured'"
    has "$TMP/fix/out.md" "4 streams up: iperf3 timed out" "a failed figure is listed with its reason"
    has "$TMP/fix/out.md" "mesh_fwd          tput1_up          Mbit/s  1,000 1,200 1,100" "every run is kept"
    has "$TMP/fix/out.md" "| one pair through the relay ≥ 0.5× raw loopback TCP | 500 Mbit/s = 0.05× loopback (10,000 Mbit/s) | no |" \
        "relay target: the median through the relay against loopback's"
    has "$TMP/fix/out.md" "Ratios: relay ÷ raw loopback 0.05×, relay ÷ direct 0.25×." "relay section: ratios to loopback and direct"
    has "$TMP/fix/out.md" "| 50,000 |" "relay section: the load's packets/s"
else
    bad "report.py failed on fixed records"
fi
if python3 "$ROOT/bench/report.py" "$TMP/empty-does-not-exist" "$TMP/x.md" 2>/dev/null; then
    bad "report.py accepted a missing data directory"
else
    ok "report.py refuses a missing data directory"
fi

# --- 2. the suite, quick ----------------------------------------------------------
if [ "$(id -u)" -ne 0 ]; then
    echo "SKIP  bench/run.sh --quick needs root (network namespaces)"
else
    export BENCH_RESULTS="$TMP/results"
    if "$ROOT/bench/run.sh" "$BUILD" --quick >"$TMP/run.log" 2>&1; then
        ok "bench/run.sh --quick: every part exited 0"
    else
        bad "bench/run.sh --quick failed; its output:"
        tail -n 80 "$TMP/run.log"
    fi
    d="$BENCH_RESULTS/data"
    for part in crypto throughput latency memory relay; do
        [ -s "$d/$part.tsv" ] && ok "part $part wrote records" || bad "part $part wrote no records"
    done
    if grep -h $'\tfail:' "$d"/*.tsv 2>/dev/null; then
        bad "some figures were not measured (above)"
    else
        ok "no figure failed"
    fi
    # Every figure the suite promises (bench/README.md) is there.
    want="wggo:tput1_up wggo:tput1_down wggo:tput4_up wggo:tput4_down
        nebula:tput1_up nebula:tput1_down nebula:tput4_up nebula:tput4_down
        mesh_fwd:tput1_up mesh_fwd:tput1_down mesh_fwd:tput4_up mesh_fwd:tput4_down
        mesh_socks:tput1_up mesh_socks:tput1_down raw:tput1_up
        wggo:cpu_per_gb nebula:cpu_per_gb mesh_fwd:cpu_per_gb
        wggo:tcp_rr nebula:tcp_rr mesh_fwd:tcp_rr mesh_socks:tcp_rr
        wggo:rtt_median wggo:rtt_p99 nebula:rtt_median mesh_fwd:rtt_median mesh_fwd:rtt_p99
        wggo:http_rps nebula:http_rps mesh_socks:http_rps mesh_http:http_rps
        microsocks:http_rps mesh_socks_local:http_rps
        wggo:ttfb nebula:ttfb mesh_socks:ttfb
        wggo:rss_idle_1 wggo:rss_idle_1000 nebula:rss_idle_1 mesh_fwd:rss_idle_1 mesh_fwd:rss_idle_1000
        microsocks:kib_per_conn mesh_socks_local:kib_per_conn mesh_socks_local:rss_conns_closed
        crypto:crypto_gbps
        loopback:tput_256m mesh_relay:tput_256m mesh_direct:tput_256m mesh_relay:cpu_per_gb
        relay_load:load_pps relay_load:load_cpu relay_load:load_rss"
    missing=""
    for w in $want; do
        awk -F'\t' -v p="${w%%:*}" -v m="${w#*:}" \
            '$1 == p && $2 == m && $4 ~ /^[0-9]/ { f = 1 } END { exit !f }' "$d"/*.tsv 2>/dev/null ||
            missing="$missing $w"
    done
    [ -z "$missing" ] && ok "every promised figure has a value" || bad "figures without a value:$missing"
    if [ -f "$BENCH_RESULTS/latest.md" ] && ! grep -q "| not measured |" "$BENCH_RESULTS/latest.md" &&
        grep -q "^## Targets" "$BENCH_RESULTS/latest.md"; then
        ok "the report has every target measured"
    else
        bad "the report is missing or has targets not measured"
    fi
    if head -c 8 "$BENCH_RESULTS/latest.png" 2>/dev/null | od -An -tx1 | grep -q "89 50 4e 47"; then
        ok "the chart is a PNG"
    else
        bad "no PNG chart"
    fi
fi

echo
if [ $fails -eq 0 ]; then
    echo "bench_smoke: all checks passed"
else
    echo "bench_smoke: $fails check(s) failed"
    exit 1
fi
