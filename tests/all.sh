#!/usr/bin/env bash
# make test: every stage, even when an earlier one failed, then one verdict.
#  0. the layering: includes and symbols (make check-layout)
#  1. the normal build: unit tests, the demo, end-to-end tests (as root),
#     and the benchmark suite once with --quick (it works; no timings judged)
#  2. ASan+UBSan build: the same tests again (mesh-proxy under ASan in e2e)
#  3. every libFuzzer harness for FUZZ_SECONDS (default 10) each
set -u
cd "$(dirname "$0")/.."
failed=()

stage() {
	local name=$1
	shift
	echo
	echo "=== $name"
	if ! "$@"; then failed+=("$name"); fi
}

stage "layout (make check-layout)" make --no-print-directory check-layout
stage "tests (build/)" tests/run.sh build
stage "benchmark suite smoke (build/)" tests/bench_smoke.sh build
stage "ASan+UBSan build" make --no-print-directory SANITIZE=1 all
stage "tests under ASan+UBSan (build-asan/)" tests/run.sh build-asan
stage "fuzz smoke" make --no-print-directory -f tests/fuzz/fuzz.mk run \
	FUZZ_SECONDS="${FUZZ_SECONDS:-10}"

echo
if [ ${#failed[@]} -eq 0 ]; then
	echo "make test: all stages passed"
else
	echo "make test: FAILED stages: ${failed[*]}"
	exit 1
fi
