#!/usr/bin/env bash
# ISO assembly and ISO → ISO updates against the same work done by hand, in
# one invocation.
#
#   bash bench/iso.sh [ROUNDS]      (as root; default 3 rounds)
#
# The image is examples' ve/minimal with a kernel, live-boot and systemd as a
# live ISO (its squashfs zstd level 15, as the examples' default), built
# first through the stage cache.
#
# 1. Assembly: each round changes only the ISO's boot menu timeout, so the
#    build writes the ISO alone (every squashfs comes from the cache). The
#    assembly is the time between the build log's "assembling" and
#    "assembled" lines: the kernel and initrd read out of the squashfs, the
#    GRUB images and the EFI partition, the checksum file, xorriso. The
#    ISO step of the manifest adds what every output costs: its sha256 and
#    its copy into the stage cache. The baseline is xorriso by hand on the
#    same staged tree (extracted from the ISO beforehand, untimed).
# 2. ISO → ISO update: `kiln update` of the imported ISO against what a
#    person would run: extract the live squashfs with osirrox, unsquashfs,
#    chroot running the script, mksquashfs with the same compressor and
#    level, then xorriso remastering the medium with its boot setup
#    replayed.
#
# It prints min/median/max of each and the ratios kiln/baseline (medians).
# It asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
[ "$(id -u)" = 0 ] || { echo "bench/iso.sh must run as root" >&2; exit 2; }

cargo build --release -q -p kiln-cli
kiln=$PWD/target/release/kiln
"$kiln" doctor --fix --yes >/dev/null
tmp=$(mktemp -d /var/tmp/kiln-bench-iso.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
export SOURCE_DATE_EPOCH=1700000000 KILN_CACHE_DIR=$tmp/cache
cp -a examples "$tmp/repo"
image() {
    cat > "$tmp/repo/images/distro/benchiso.toml" <<TOML
extends = ["ve/minimal"]
kind = "distro"
outputs = ["squashfs", "iso"]
packages = ["linux-image-amd64", "systemd-sysv", "live-boot"]
[output.iso]
timeout = $1
TOML
}
image 5
echo "building the image (first run: bootstrap and squashfs)..." >&2
"$kiln" build -q -C "$tmp/repo" distro/benchiso -o "$tmp/out" >/dev/null
iso=$(ls "$tmp"/out/*.iso)
manifest=$(ls "$tmp"/out/*.manifest.json)
echo "ISO: $(basename "$iso"), $(stat -c %s "$iso") bytes" >&2

# The staged tree for the hand-run xorriso: the ISO's files, its GRUB
# El Torito image and its EFI partition, as kiln staged them.
staged=$tmp/staged
xorriso -osirrox on -indev "$iso" -extract / "$staged" >/dev/null 2>&1
chmod -R u+w "$staged"
rm -f "$staged/boot.catalog"
read -r start size < <(xorriso -indev "$iso" -report_system_area plain 2>/dev/null |
    awk '/GPT start and size :   2/{print $7, $8}')
dd if="$iso" of="$tmp/efi.img" bs=512 skip="$start" count="$size" status=none
volid=$(xorriso -indev "$iso" -pvd_info 2>/dev/null | awk -F"'" '/^Volume Id/{print $2}')

iso_step() {
    python3 - "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
for st in m["stages"]:
    for s in st.get("steps", []):
        if s.get("step", "").endswith(".iso"):
            print(f'{s["seconds"]:.3f}')
PY
}
assembly() {
    # Log lines start with "[   SECONDS]".
    awk '{ t = $0; sub(/^\[ */, "", t); sub(/\].*/, "", t) }
         / assembling .*\.iso$/ { s = t }
         /\] \$ xorriso / { x = t }
         /\.iso assembled$/ { printf "%.3f %.3f\n", t - s, t - x }' "$1"
}
kiln_assembly=()
kiln_xorriso=()
kiln_step=()
hand_assembly=()
for r in $(seq 1 "$rounds"); do
    image $((10 + r))
    rm -rf "$tmp/out-$r"
    "$kiln" build -q -C "$tmp/repo" distro/benchiso -o "$tmp/out-$r" >/dev/null
    kiln_step+=("$(iso_step "$(ls "$tmp"/out-$r/*.manifest.json)")")
    read -r whole xo < <(assembly "$(ls "$tmp"/out-$r/*.build.log)")
    kiln_assembly+=("$whole")
    kiln_xorriso+=("$xo")
    rm -rf "$tmp/out-$r"
    rm -f "$tmp/hand.iso"
    s=$(date +%s.%N)
    xorriso -as mkisofs -o "$tmp/hand.iso" -V "$volid" -iso-level 3 -r -J -joliet-long \
        -b boot/grub/bios.img -no-emul-boot -boot-load-size 4 -boot-info-table --grub2-boot-info \
        --grub2-mbr /usr/lib/grub/i386-pc/boot_hybrid.img \
        -append_partition 2 0xef "$tmp/efi.img" -appended_part_as_gpt \
        -eltorito-alt-boot -e --interval:appended_partition_2:all:: -no-emul-boot \
        "$staged" >/dev/null 2>&1
    e=$(date +%s.%N)
    hand_assembly+=("$(echo "$e - $s" | bc)")
done

# ISO → ISO.
"$kiln" image import bench-live 1.0 "$iso" >/dev/null
cat > "$tmp/update.sh" <<'SH'
#!/bin/sh
set -eu
echo "bench-live 1.0.1" > /etc/bench-release
mkdir -p /opt/bench && dd if=/dev/urandom of=/opt/bench/blob bs=1M count=8 status=none
SH
chmod +x "$tmp/update.sh"
sq_comp=$(unsquashfs -s "$tmp/out/"*.squashfs | awk '/^Compression /{print $2}')
sq_block=$(unsquashfs -s "$tmp/out/"*.squashfs | awk '/^Block size /{print $3}')
sq_level=$(unsquashfs -s "$tmp/out/"*.squashfs | awk '/compression-level/{print $2}')
kiln_update=()
hand_update=()
for r in $(seq 1 "$rounds"); do
    rm -rf "$tmp/upd"
    s=$(date +%s.%N)
    "$kiln" update -q --from bench-live@1.0 --script "$tmp/update.sh" --name upd -o "$tmp/upd" >/dev/null
    e=$(date +%s.%N)
    kiln_update+=("$(echo "$e - $s" | bc)")

    h=$tmp/hand
    rm -rf "$h" && mkdir -p "$h"
    s=$(date +%s.%N)
    xorriso -osirrox on -indev "$iso" -extract /live/filesystem.squashfs "$h/src.squashfs" >/dev/null 2>&1
    unsquashfs -q -n -d "$h/root" "$h/src.squashfs" >/dev/null
    cp "$tmp/update.sh" "$h/root/update.sh"
    chroot "$h/root" /update.sh
    rm "$h/root/update.sh"
    lvl=()
    [ -n "$sq_level" ] && lvl=(-Xcompression-level "$sq_level")
    mksquashfs "$h/root" "$h/new.squashfs" -noappend -quiet -comp "$sq_comp" "${lvl[@]}" -b "$sq_block" -xattrs >/dev/null
    xorriso -indev "$iso" -outdev "$h/new.iso" -boot_image any replay \
        -map "$h/new.squashfs" /live/filesystem.squashfs -commit >/dev/null 2>&1
    e=$(date +%s.%N)
    hand_update+=("$(echo "$e - $s" | bc)")
    rm -rf "$h"
done

stats() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {printf "min %.2f s  median %.2f s  max %.2f s", a[1], a[int((NR+1)/2)], a[NR]}'; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo
echo "ISO assembly ($rounds rounds)"
echo "  kiln assembly:          $(stats "${kiln_assembly[@]}")"
echo "    of which xorriso:     $(stats "${kiln_xorriso[@]}")"
echo "  kiln ISO step:          $(stats "${kiln_step[@]}")   (assembly + sha256 + stage cache copy)"
echo "  xorriso by hand:        $(stats "${hand_assembly[@]}")"
echo "  ratio assembly/hand:    $(echo "scale=3; $(median "${kiln_assembly[@]}") / $(median "${hand_assembly[@]}")" | bc)"
echo "  ratio ISO step/hand:    $(echo "scale=3; $(median "${kiln_step[@]}") / $(median "${hand_assembly[@]}")" | bc)"
echo "ISO -> ISO update ($rounds rounds)"
echo "  kiln update:            $(stats "${kiln_update[@]}")"
echo "  by hand:                $(stats "${hand_update[@]}")"
echo "  ratio kiln/hand:        $(echo "scale=3; $(median "${kiln_update[@]}") / $(median "${hand_update[@]}")" | bc)"
