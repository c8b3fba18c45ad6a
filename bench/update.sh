#!/usr/bin/env bash
# kiln update vs. the hand-made method, alternating, in one invocation.
#
#   bash bench/update.sh [ROUNDS]      (as root; default 3 rounds)
#
# The source is examples' ve/minimal as a squashfs (built first, through the
# stage cache). The script changes a few files the way an update does. The
# baseline is what a person would run: unsquashfs, chroot running the
# script, mksquashfs with the source's compressor and block size. It prints
# min/median/max of both and the ratio kiln/baseline (median). It asserts
# nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench/update.sh must run as root" >&2; exit 2; }

cargo build --release -q -p kiln-cli
kiln=$PWD/target/release/kiln
tmp=$(mktemp -d /var/tmp/kiln-bench-update.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export SOURCE_DATE_EPOCH=1700000000 KILN_CACHE_DIR=$tmp/cache
cp -a examples "$tmp/repo"
cat > "$tmp/repo/images/ve/src.toml" <<'TOML'
extends = ["ve/minimal"]
outputs = ["squashfs"]
TOML
"$kiln" build -q -C "$tmp/repo" ve/src -o "$tmp/src" >/dev/null
src=$(ls "$tmp"/src/*.squashfs)
"$kiln" image import bench-os 1.0 "$src" >/dev/null
cat > "$tmp/update.sh" <<'SH'
#!/bin/sh
set -eu
echo "bench-os 1.0.1" > /etc/bench-release
sed -i 's/^#*PermitRootLogin.*/PermitRootLogin no/' /etc/ssh/sshd_config 2>/dev/null || true
mkdir -p /opt/bench && dd if=/dev/urandom of=/opt/bench/blob bs=1M count=8 status=none
SH
chmod +x "$tmp/update.sh"

comp=$(unsquashfs -s "$src" | awk '/^Compression /{print $2}')
block=$(unsquashfs -s "$src" | awk '/^Block size /{print $3}')

baseline() {
    local d=$tmp/hand
    rm -rf "$d" "$tmp/hand.squashfs"
    unsquashfs -q -n -d "$d" "$src" >/dev/null
    cp "$tmp/update.sh" "$d/tmp/update.sh"
    chroot "$d" /tmp/update.sh
    rm -f "$d/tmp/update.sh"
    mksquashfs "$d" "$tmp/hand.squashfs" -noappend -quiet -comp "$comp" -b "$block" -xattrs >/dev/null
    rm -rf "$d"
}

kiln_update() {
    "$kiln" update -q --from bench-os@1.0 --script "$tmp/update.sh" --name bench-os-1.0.1 \
        -o "$tmp/out" --workdir "$tmp/work" --force >/dev/null
}

now() { date +%s.%N; }
declare -a tb tk
for ((i = 1; i <= rounds; i++)); do
    t0=$(now); baseline; t1=$(now)
    kiln_update; t2=$(now)
    tb+=("$(python3 -c "print($t1 - $t0)")"); tk+=("$(python3 -c "print($t2 - $t1)")")
    printf 'round %d: baseline %.1fs, kiln %.1fs\n' "$i" "${tb[-1]}" "${tk[-1]}"
done

# Both methods give the same file list.
if diff <(unsquashfs -l "$tmp/hand.squashfs" | sed 1,3d) <(unsquashfs -l "$tmp/out/bench-os-1.0.1.squashfs" | sed 1,3d) >/dev/null; then
    echo "same paths in both targets: yes"
else
    echo "same paths in both targets: NO" >&2
fi

python3 - "${tb[*]}" "${tk[*]}" "$rounds" "$("$kiln" --version)" "$comp" "$block" <<'PY'
import statistics, sys
b = [float(x) for x in sys.argv[1].split()]
k = [float(x) for x in sys.argv[2].split()]
print(f"== kiln update benchmark ({sys.argv[4]}, {sys.argv[3]} alternating rounds, ve/minimal squashfs, {sys.argv[5]}, {sys.argv[6]}-byte blocks)")
print(f"{'(s)':40} {'min':>7} {'median':>7} {'max':>7}")
print(f"{'baseline: unsquashfs+chroot+mksquashfs':40} {min(b):7.1f} {statistics.median(b):7.1f} {max(b):7.1f}")
print(f"{'kiln update':40} {min(k):7.1f} {statistics.median(k):7.1f} {max(k):7.1f}")
r = statistics.median(k) / statistics.median(b)
print(f"kiln / baseline: {r:.3f} (target <= 0.85: {'PASS' if r <= 0.85 else 'FAIL'})")
PY
