#!/usr/bin/env bash
# The control plane with many nodes (behaviour, not speed): 300 simulated
# nodes (tests/tools/ctl-scale.c in one process: 100 full control clients,
# 200 light nodes) join one mesh-control at once with a reusable token;
# every node must register and end with a map of the other 299, then an
# endpoint change and an admin rename must reach all of them; on SQLite and
# on PostgreSQL (when installed), with one server and with two on one data
# directory (the nodes split between them). The timings are printed for the
# log; bench/control_scale.sh runs the same up to 10,000 (20,000) nodes and
# records them.
. "$(dirname "$0")/lib.sh"

e2e_require_cmd setpriv ss
e2e_tmp_init
[ -x "$MESH_BUILD/tests/ctl-scale" ] || die "no $MESH_BUILD/tests/ctl-scale (run make)"
step "300 nodes join and converge (each store, one and two servers)"
check "300 nodes registered and every map complete" \
    bash "$E2E_ROOT/bench/control_scale.sh" "$MESH_BUILD" --sizes 300 --out "$E2E_LOGDIR/scale.md"
info "$(tail -n 1 "$E2E_LOGDIR/scale.md" 2>/dev/null)"
e2e_finish
