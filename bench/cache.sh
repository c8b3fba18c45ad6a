#!/usr/bin/env bash
# The stage cache on examples' ve/server, in one invocation:
#
#   bash bench/cache.sh [ROUNDS]      (as root; default 3 rounds)
#
# 1. a cold build into an empty cache: T;
# 2. unchanged rebuilds: U (targets: under 1 s and under 3% of T);
# 3. rebuilds after editing one image-script (scripts/harden.sh, a new line
#    each round): E, against S = that script's run time plus the output
#    time, both read from the same build's manifest (target: E <= 1.10 S).
# Prints medians and the ratios; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench/cache.sh must run as root" >&2; exit 2; }

cargo build --release -q -p kiln-cli
kiln=$PWD/target/release/kiln
tmp=$(mktemp -d /var/tmp/kiln-bench-cache.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -a examples "$tmp/repo"
export SOURCE_DATE_EPOCH=1700000000 KILN_CACHE_DIR=$tmp/cache

now() { date +%s.%N; }
build() { "$kiln" build -q -C "$tmp/repo" ve/server -o "$tmp/out" --workdir "$tmp/work" >/dev/null; }
manifest=$tmp/out/ve-server-1.0-1.kiln1.$(dpkg --print-architecture).manifest.json

t0=$(now); build; t1=$(now)
cold=$(python3 -c "print($t1 - $t0)")
printf 'cold build: %.2fs\n' "$cold"

declare -a un ed sc
for ((i = 1; i <= rounds; i++)); do
    t0=$(now); build; t1=$(now)
    un+=("$(python3 -c "print($t1 - $t0)")")
    python3 - "$manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
bad = [s["stage"] for s in m["stages"] if s["status"] != "cached"]
if bad:
    sys.exit(f"unchanged rebuild ran stages: {bad}")
PY
    echo "echo 'bench edit $i' >/dev/null" >> "$tmp/repo/scripts/harden.sh"
    t0=$(now); build; t1=$(now)
    ed+=("$(python3 -c "print($t1 - $t0)")")
    sc+=("$(python3 - "$manifest" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
script = sum(s["seconds"] for s in m["scripts"] if s["name"] == "harden.sh")
outputs = sum(s["seconds"] for s in m["stages"] if s["stage"] == "outputs")
print(script + outputs)
PY
)")
    printf 'round %d: unchanged %.2fs; edited harden.sh %.2fs (script + outputs %.2fs)\n' \
        "$i" "${un[-1]}" "${ed[-1]}" "${sc[-1]}"
done

python3 - "$cold" "${un[*]}" "${ed[*]}" "${sc[*]}" "$rounds" "$("$kiln" --version)" <<'PY'
import statistics, sys
cold = float(sys.argv[1])
un = [float(x) for x in sys.argv[2].split()]
ed = [float(x) for x in sys.argv[3].split()]
sc = [float(x) for x in sys.argv[4].split()]
u, e, s = statistics.median(un), statistics.median(ed), statistics.median(sc)
print(f"== kiln stage cache benchmark ({sys.argv[6]}, ve/server, {sys.argv[5]} rounds, medians)")
print(f"cold build T                      {cold:8.2f} s")
ok = u < 1.0 and u / cold < 0.03
print(f"unchanged rebuild U               {u:8.2f} s   U/T = {u / cold:.4f}  (target < 1 s and < 0.03: {'PASS' if ok else 'FAIL'})")
r = e / s
print(f"rebuild after one script edit E   {e:8.2f} s   E/S = {r:.3f}   S = script + outputs = {s:.2f} s (target <= 1.10: {'PASS' if r <= 1.10 else 'FAIL'})")
PY
