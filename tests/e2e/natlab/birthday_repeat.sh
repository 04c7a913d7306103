#!/usr/bin/env bash
# Birthday probing's odds in the NAT lab: runs tests/e2e/natlab.sh RUNS
# times (default 10), each a fresh lab with only the PAIR pair (default
# eim-sym: symmetric against a port-restricted eim), and writes how often
# it went direct by birthday probing (both sides' status says
# "birthday": true) within the lab's 10 s window, and how fast, to OUT
# (default bench/results/natlab-birthday.md). report.py puts that file
# under the table in natlab.md when it sits beside it.
#
# usage (as root): tests/e2e/natlab/birthday_repeat.sh [RUNS [PAIR [OUT]]]
set -u
cd "$(dirname "$0")/../../.."
RUNS=${1:-10}
PAIR=${2:-eim-sym}
OUT=${3:-bench/results/natlab-birthday.md}
TMP=$(mktemp -d /tmp/natlab-bday.XXXXXX)
for i in $(seq 1 "$RUNS"); do
    mkdir -p "$TMP/$i"
    NATLAB_PAIRS="$PAIR" NATLAB_RESULTS="$TMP/$i" tests/e2e/natlab.sh >"$TMP/$i.log" 2>&1
    echo "run $i: $(grep -E "(PASS|FAIL) $PAIR: (direct|relay) " "$TMP/$i.log" | head -1 | sed 's/^ *//')"
done
python3 - "$TMP" "$RUNS" "$PAIR" "$OUT" <<'PY'
import json, os, statistics, sys, time
tmp, runs, pair, out = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
times, rows = [], []
for i in range(1, runs + 1):
    try:
        r = json.load(open(os.path.join(tmp, str(i), "natlab.json")))["pairs"][0]["result"] or {}
    except (OSError, ValueError, IndexError, KeyError):
        r = {}
    d = r.get("direct_ms")
    ok = (d is not None and d <= 10000 and r.get("a_path") == "direct" == r.get("b_path")
          and r.get("a_birthday") is True and r.get("b_birthday") is True)
    rows.append("%d: %s" % (i, "%d ms" % d if ok else "not direct"))
    if ok:
        times.append(d)
with open(out, "w") as f:
    f.write("## Birthday probing over repeated runs\n\n")
    f.write("Written by `tests/e2e/natlab/birthday_repeat.sh` (%s): %d fresh labs, "
            "pair %s each time (symmetric NAT against a port-restricted, "
            "endpoint-independent one). Probing starts after 1 s of plain punching; "
            "\"direct\" is the time from the first fetch until both sides say direct.\n\n"
            % (time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), runs, pair))
    f.write("Direct within 10 s: **%d of %d**." % (len(times), runs))
    if times:
        f.write(" Time to direct: min %d ms, median %d ms, max %d ms."
                % (min(times), statistics.median(times), max(times)))
    f.write("\n\nEach run: %s.\n" % "; ".join(rows))
print(open(out).read())
PY
rm -rf "$TMP"
