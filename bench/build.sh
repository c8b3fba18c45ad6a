#!/usr/bin/env bash
# kiln build vs. the hand-made equivalent, alternating, in one invocation.
#
#   bash bench/build.sh [ROUNDS]      (as root; default 3 rounds)
#
# The image is examples' ve/minimal with a squashfs output only. The
# baseline runs what a person would: mmdebstrap with the same arguments and
# package set, chroot running the same image-scripts, and mksquashfs with
# the same options. It prints min/median/max of both and the ratio
# kiln/baseline (median). It asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench/build.sh must run as root" >&2; exit 2; }

cargo build --release -q -p kiln-cli
kiln=$PWD/target/release/kiln
tmp=$(mktemp -d /var/tmp/kiln-bench.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cp -a examples "$tmp/repo"
cat > "$tmp/repo/images/ve/bench.toml" <<'TOML'
extends = ["ve/minimal"]
outputs = ["squashfs"]
TOML
export SOURCE_DATE_EPOCH=1700000000
"$kiln" show -C "$tmp/repo" ve/bench --format json > "$tmp/plan.json"

# The plan's facts, for the baseline.
read -r suite variant components packages squash_opts < <(python3 - "$tmp/plan.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
b = p["base"]
o = next(o for o in p["outputs"] if o["format"] == "squashfs")["options"]
opts = []
if "compression" in o:
    opts += ["-comp", o["compression"]["value"]]
    if "level" in o and o["compression"]["value"] in ("zstd", "gzip", "lzo"):
        opts += ["-Xcompression-level", str(o["level"]["value"])]
if "block_size" in o:
    opts += ["-b", o["block_size"]["value"]]
print(b["suite"]["value"], b["variant"]["value"], ",".join(b["components"]["value"]),
      ",".join(x["name"] for x in p["packages"]), "|".join(opts))
PY
)
mapfile -t scripts < <(python3 -c 'import json,sys; [print(s["path"]) for s in json.load(open(sys.argv[1]))["image_scripts"]]' "$tmp/plan.json")
arch=$(dpkg --print-architecture)

baseline() {
    local d=$tmp/base-root
    rm -rf "$d" "$tmp/base.squashfs"
    mmdebstrap --quiet --mode=root --format=directory --variant="$variant" --architectures="$arch" \
        --components="$components" --include="$packages" "$suite" "$d"
    for s in "${scripts[@]}"; do
        cp "$tmp/repo/$s" "$d/tmp/script"
        chmod +x "$d/tmp/script"
        chroot "$d" /tmp/script
        rm -f "$d/tmp/script"
    done
    IFS='|' read -r -a o <<< "$squash_opts"
    mksquashfs "$d" "$tmp/base.squashfs" -noappend -quiet "${o[@]}" -xattrs >/dev/null
    rm -rf "$d"
}

kiln_build() {
    rm -rf "$tmp/out"
    "$kiln" build -q --no-cache -C "$tmp/repo" ve/bench -o "$tmp/out" --workdir "$tmp/work"
}

now() { date +%s.%N; }
declare -a tb tk
for ((i = 1; i <= rounds; i++)); do
    t0=$(now); baseline; t1=$(now)
    kiln_build; t2=$(now)
    tb+=("$(python3 -c "print($t1 - $t0)")"); tk+=("$(python3 -c "print($t2 - $t1)")")
    printf 'round %d: baseline %.1fs, kiln %.1fs\n' "$i" "${tb[-1]}" "${tk[-1]}"
done

python3 - "${tb[*]}" "${tk[*]}" "$rounds" "$("$kiln" --version)" <<'PY'
import statistics, sys
b = [float(x) for x in sys.argv[1].split()]
k = [float(x) for x in sys.argv[2].split()]
print(f"== kiln build benchmark ({sys.argv[4]}, {sys.argv[3]} alternating rounds, ve/minimal → squashfs)")
print(f"{'(s)':28} {'min':>7} {'median':>7} {'max':>7}")
print(f"{'baseline: mmdebstrap+chroot+mksquashfs':28} {min(b):7.1f} {statistics.median(b):7.1f} {max(b):7.1f}")
print(f"{'kiln build':28} {min(k):7.1f} {statistics.median(k):7.1f} {max(k):7.1f}")
r = statistics.median(k) / statistics.median(b)
print(f"kiln / baseline: {r:.3f} (target <= 1.10: {'PASS' if r <= 1.10 else 'FAIL'})")
PY
