#!/usr/bin/env bash
# The suite's control part (`make bench BENCH_ARGS="--only control"`):
# bench/control_scale.sh with the suite's options (--quick: 2,000 nodes
# only). It writes $BENCH_RESULTS/control-scale.md, not a record for
# latest.md: its figures are per N, not per path.
exec bash "$(dirname "$0")/control_scale.sh" "$@"
