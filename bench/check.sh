#!/usr/bin/env bash
# Benchmark: `kiln check` on a large generated profile repository, against the
# I/O floor (reading every file of the repository once).
#
#   bench/check.sh [--rounds N] [--images N] [--features N] [--lists N] [--seed N]
#
# The same settings can come from the environment: ROUNDS, IMAGES, FEATURES,
# LISTS, SEED (flags win). Defaults: 10 rounds over 500 images, 200 features,
# 300 lists, seed 1. Target: `kiln check` under 200 ms (median). The script
# prints PASS or FAIL and exits 0 either way; it exits non-zero only when
# something breaks (build, generation, or `kiln check` reporting errors).
set -euo pipefail

ROUNDS=${ROUNDS:-10}
IMAGES=${IMAGES:-500}
FEATURES=${FEATURES:-200}
LISTS=${LISTS:-300}
SEED=${SEED:-1}
TARGET_MS=200

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS=$2; shift 2 ;;
        --images) IMAGES=$2; shift 2 ;;
        --features) FEATURES=$2; shift 2 ;;
        --lists) LISTS=$2; shift 2 ;;
        --seed) SEED=$2; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "check.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done
for v in ROUNDS IMAGES FEATURES LISTS SEED; do
    case "${!v}" in
        ''|*[!0-9]*) echo "check.sh: $v must be a number, got '${!v}'" >&2; exit 2 ;;
    esac
done
[ "$ROUNDS" -ge 1 ] || { echo "check.sh: ROUNDS must be at least 1" >&2; exit 2; }

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

cargo build --release --quiet -p kiln-cli
TARGET_DIR=$(cargo metadata --format-version 1 --no-deps 2>/dev/null |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
KILN="$TARGET_DIR/release/kiln"
[ -x "$KILN" ] || { echo "check.sh: no binary at $KILN" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/kiln-bench.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
REPO="$WORK/repo"

python3 "$ROOT/bench/gen_repo.py" "$REPO" --images "$IMAGES" --features "$FEATURES" \
    --lists "$LISTS" --seed "$SEED" 2>"$WORK/gen.log"
NFILES=$(find "$REPO" -type f | wc -l)
NBYTES=$(find "$REPO" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }')

# The repository must be valid: one untimed run, which also warms the page cache.
if ! "$KILN" check -C "$REPO" --message-format short --color never 2>"$WORK/check.log"; then
    echo "check.sh: kiln check failed on the generated repository:" >&2
    tail -n 20 "$WORK/check.log" >&2
    exit 1
fi
SUMMARY=$(tail -n 1 "$WORK/check.log")

baseline() { find "$REPO" -type f -exec cat {} + >/dev/null; }
kiln_check() {
    "$KILN" check -C "$REPO" --message-format short --color never 2>"$WORK/check.log" || {
        echo "check.sh: kiln check exited non-zero during the benchmark:" >&2
        tail -n 20 "$WORK/check.log" >&2
        exit 1
    }
}

# Warm-up of the baseline (the check above warmed kiln).
baseline

BASE_US=()
KILN_US=()
for ((i = 0; i < ROUNDS; i++)); do
    # EPOCHREALTIME is seconds.microseconds: drop the separator for µs.
    t0=${EPOCHREALTIME/[.,]/}; baseline; t1=${EPOCHREALTIME/[.,]/}
    BASE_US+=($((10#$t1 - 10#$t0)))
    t0=${EPOCHREALTIME/[.,]/}; kiln_check; t1=${EPOCHREALTIME/[.,]/}
    KILN_US+=($((10#$t1 - 10#$t0)))
done

CPU=$(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | sed 's/^[^:]*: *//' || true)
echo "== kiln check benchmark"
echo "machine:  $(nproc) CPUs, ${CPU:-unknown CPU}, $(uname -sr)"
echo "kiln:     $("$KILN" --version) ($KILN)"
echo "repo:     $IMAGES images, $FEATURES features, $LISTS lists, seed $SEED: $NFILES files, $NBYTES bytes"
echo "kiln:     $SUMMARY"
echo "rounds:   $ROUNDS (alternating baseline / kiln check)"

python3 - "$IMAGES" "$TARGET_MS" "${BASE_US[*]}" "${KILN_US[*]}" <<'EOF'
import statistics
import sys

images, target_ms = int(sys.argv[1]), float(sys.argv[2])
base = [int(x) / 1000 for x in sys.argv[3].split()]
kiln = [int(x) / 1000 for x in sys.argv[4].split()]


def row(name, xs):
    return f"{name:<34} {min(xs):9.1f} {statistics.median(xs):9.1f} {max(xs):9.1f}"


print(f"{'(ms)':<34} {'min':>9} {'median':>9} {'max':>9}")
print(row("baseline: cat every file", base))
print(row("kiln check", kiln))
km, bm = statistics.median(kiln), statistics.median(base)
print(f"kiln check throughput:  {images / (km / 1000):.0f} images/s")
print(f"kiln / baseline:        {km / bm:.1f}x (median)")
verdict = "PASS" if km < target_ms else "FAIL"
print(f"target: kiln check under {target_ms:.0f} ms: {verdict} (median {km:.1f} ms)")
EOF
