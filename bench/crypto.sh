#!/usr/bin/env bash
# bench/crypto.sh BUILD_DIR [--quick] [--runs N] [--secs S]
#
# The crypto ceiling: Gbit/s of ChaCha20-Poly1305 on 1,420-byte packets on
# one core (build/tests/crypto-ceiling), so every throughput figure can be
# read as a fraction of what one core can encrypt. Records path "crypto":
# crypto_gbps (libsodium's AEAD alone), crypto_wg_seal and crypto_wg_open
# (core/wg's data-message seal and open around the same AEAD).
E2E_NAME=bench-crypto
. "$(dirname "$0")/lib.sh"
bench_args "$@"
TOOL="$MESH_BUILD/tests/crypto-ceiling"
[ -x "$TOOL" ] || die "no $TOOL: build first (make)"

step "crypto ceiling: ChaCha20-Poly1305, 1420-byte packets, one core"
secs=$(awk -v s="$SECS" 'BEGIN { v = s / 2; if (v < 1) v = 1; print v }')
declare -A vals=()
for ((i = 0; i < RUNS; i++)); do
    out=$("$TOOL" --secs "$secs" --size 1420 --cpu 0) || die "crypto-ceiling failed: $out"
    while read -r name rate; do
        vals[$name]="${vals[$name]:-} $rate"
    done <<<"$out"
done
record crypto crypto_gbps Gbit/s ${vals[aead_seal]}
record crypto crypto_wg_seal Gbit/s ${vals[wg_seal]}
record crypto crypto_wg_open Gbit/s ${vals[wg_open]}
