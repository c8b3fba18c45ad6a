#!/usr/bin/env bash
# Seed corpora for the image fuzz targets, from small real images made by
# mksquashfs, mkfs.erofs and tar: corpus/squashfs, corpus/tar and
# corpus/image_check (run from fuzz/, as root for the device node).
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

root=$work/root
mkdir -p "$root/etc" "$root/usr/bin" "$root/usr/lib" "$root/dev" "$root/run"
echo "ID=fuzz" > "$root/etc/os-release"
printf '#!/bin/sh\necho hi\n' > "$root/usr/bin/tool"
chmod 4755 "$root/usr/bin/tool"
seq 1 300 > "$root/usr/lib/data"
ln "$root/usr/bin/tool" "$root/usr/lib/tool-link"
ln -s ../bin/tool "$root/usr/lib/sym"
ln -s /etc/os-release "$root/etc/abs"
mkfifo "$root/run/fifo"
mknod "$root/dev/null" c 1 3 2>/dev/null || true
setfattr -n user.fuzz -v x "$root/etc/os-release" 2>/dev/null || true

mkdir -p corpus/squashfs corpus/tar corpus/image_check
for comp in gzip xz lz4 zstd; do
    mksquashfs "$root" "corpus/squashfs/$comp" -comp "$comp" -b 4096 -noappend -quiet -no-progress >/dev/null
done
mksquashfs "$root" corpus/squashfs/uncompressed -noI -noD -noF -noX -noappend -quiet -no-progress >/dev/null
mksquashfs "$root" corpus/squashfs/no-fragments -no-fragments -comp lz4 -noappend -quiet -no-progress >/dev/null

tar -C "$root" --format=gnu -cf corpus/tar/gnu .
tar -C "$root" --format=pax --xattrs -cf corpus/tar/pax .
gzip -9n < corpus/tar/pax > corpus/tar/pax.gz
zstd -q -19 < corpus/tar/gnu > corpus/tar/gnu.zst
xz -9 < corpus/tar/gnu > corpus/tar/gnu.xz

mkfs.erofs --quiet "$work/plain.erofs" "$root" >/dev/null
mkfs.erofs --quiet -zlz4hc "$work/lz4.erofs" "$root" >/dev/null
cp corpus/squashfs/* corpus/tar/* "$work"/*.erofs corpus/image_check/
ls -l corpus/*
