#!/usr/bin/env bash
# Runs a hub benchmark (bench/hub.sh or bench/farm.sh) against two kiln
# binaries in alternating rounds and prints each figure's median for both
# and the ratio new/old, to tell whether a change moved the hub.
#
#   bench/compare.sh hub|farm OLD_KILN [NEW_KILN] [ROUNDS]
#
# NEW_KILN defaults to this tree's release build; ROUNDS to 1 (each round
# runs both: old first in odd rounds, new first in even ones). The
# benchmark's own settings (DBS, DURATION, TASKS, …) pass through the
# environment. Throughputs are "higher is better",
# latencies (ms) "lower is better"; the script prints figures and exits 0.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
[ $# -ge 2 ] || { usage >&2; exit 2; }
BENCH=$1
OLD=$2
NEW=${3:-}
ROUNDS=${4:-1}
case "$BENCH" in hub | farm) ;; *) echo "compare.sh: hub or farm, not '$BENCH'" >&2; exit 2 ;; esac
case "$ROUNDS" in '' | *[!0-9]* | 0) echo "compare.sh: ROUNDS must be a positive number" >&2; exit 2 ;; esac

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [ -z "$NEW" ]; then
    cargo build --release --quiet -p kiln-cli
    NEW="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')/release/kiln"
fi
for k in "$OLD" "$NEW"; do
    [ -x "$k" ] || { echo "compare.sh: no kiln binary at $k" >&2; exit 1; }
done

OUT=$(mktemp -d "${TMPDIR:-/tmp}/kiln-compare.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
for r in $(seq 1 "$ROUNDS"); do
    # Odd rounds run old first, even rounds new first: a machine that warms
    # up or slows down over the run favours neither side.
    order="old new"
    [ $((r % 2)) = 1 ] || order="new old"
    for side in $order; do
        if [ "$side" = old ]; then k=$OLD; else k=$NEW; fi
        echo "== round $r: $side ($k)" >&2
        KILN=$k bash "bench/$BENCH.sh" >"$OUT/$side-$r.txt"
    done
done

python3 - "$BENCH" "$OUT" "$ROUNDS" <<'EOF'
import re, statistics, sys

bench, out, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])


def figures(text):
    """{(database, figure): value} from one run's output."""
    got = {}
    if bench == "hub":
        lines = text.split("== summary", 1)[1].splitlines()[1:]
        dbs = lines[0].split()
        for line in lines[1:]:
            m = re.match(r"^(.*?\S)\s+((?:-?[\d.]+\s*)+)$", line)
            if not m:
                continue
            for db, v in zip(dbs, m.group(2).split()):
                got[(db, m.group(1))] = float(v)
    else:
        db = None
        for line in text.splitlines():
            if m := re.match(r"^== (\w+):", line):
                db = m.group(1)
            elif m := re.match(r"^completed in .*: (\d+) tasks/s", line):
                got[(db, "tasks completed per second (tasks/s)")] = float(m.group(1))
            elif m := re.match(r"^claim latency .*: p50 ([\d.]+) ms, p99 ([\d.]+) ms", line):
                got[(db, "claim p50 (ms)")] = float(m.group(1))
                got[(db, "claim p99 (ms)")] = float(m.group(2))
    return got


runs = {side: [figures(open(f"{out}/{side}-{r}.txt").read()) for r in range(1, rounds + 1)] for side in ("old", "new")}
keys = [k for k in runs["old"][0] if all(k in f for s in runs.values() for f in s)]
print(f"== {bench}: medians of {rounds} round(s), new/old (for ms lower is better, else higher)")
print(f"{'database':10} {'figure':58} {'old':>10} {'new':>10} {'new/old':>8}")
for db, fig in keys:
    old = statistics.median(f[(db, fig)] for f in runs["old"])
    new = statistics.median(f[(db, fig)] for f in runs["new"])
    ratio = new / old if old else float("nan")
    print(f"{db:10} {fig:58} {old:10.1f} {new:10.1f} {ratio:8.2f}")
EOF
