#!/bin/bash
# Image build throughput and sparse storage, as ratios against anchors run
# in this script:
#  1. rackboot-image build (hash + dedup + per-chunk zstd -3 + packs + sign)
#     against `zstd -T0 -3` of the same image, both reading it from the page
#     cache. Goal: throughput ratio >= 0.8.
#  2. a mostly-empty 8 GiB sparse image holding 1 GiB of data: stored bytes
#     must be proportional to the data (compared with zstd -3 of the data
#     alone), not to the disk.
#   bench/image-build.sh [DATA_MIB]     (default 1024)
# The data is real files (/usr/lib, /usr/share as a tar stream), so it
# compresses like an OS image. Everything lives in one temporary directory.
set -u

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../build}
BIN=$RB_BUILD/imager/rackboot-image
MIB=${1:-1024}
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
for t in zstd mkfs.ext4 tar; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
T=$(mktemp -d /var/tmp/rbt-imgbench.XXXXXX)
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM
now() { date +%s.%N; }

# Real data: an ext4 image made from system files, about MIB MiB big.
mkdir -p "$T/root"
tar -C / -cf - usr/lib usr/share 2>/dev/null | head -c $((MIB * 1024 * 1024 * 7 / 10)) |
	tar -C "$T/root" -xf - 2>/dev/null
mkfs.ext4 -q -F -d "$T/root" "$T/fs.img" ${MIB}M || exit 1
rm -rf "$T/root"
cat "$T/fs.img" >/dev/null # page cache for both runs
SIZE=$(stat -c %s "$T/fs.img")
"$BIN" keygen "$T/k" >/dev/null

# Three alternating rounds, best wall time of each tool (other load on a
# shared machine only ever slows a run down), plus CPU seconds per GiB
# (user + system), which load does not inflate as much.
# timed OUTFILE CMD...: appends "wall cpu" of the command to OUTFILE.
timed() {
	f=$1
	shift
	/usr/bin/time -f "%e %U %S" -o "$T/time.out" "$@" || return 1
	awk '{ print $1, $2 + $3 }' "$T/time.out" >>"$f"
}
for round in 1 2 3; do
	timed "$T/z.t" zstd -q -f -T0 -3 -o "$T/fs.img.zst" "$T/fs.img" || exit 1
	rm -rf "$T/repo"
	timed "$T/b.t" "$BIN" build -q --repo "$T/repo" --key "$T/k.key" --name bench --version 1 \
		"$T/fs.img" >"$T/b.out" || exit 1
done
ZS=$(stat -c %s "$T/fs.img.zst")
ST=$(du -sb "$T/repo/packs" | cut -f1)
zw=$(sort -n "$T/z.t" | head -n 1); bw=$(sort -n "$T/b.t" | head -n 1)
awk -v s="$SIZE" -v zw="$zw" -v bw="$bw" -v zs="$ZS" -v st="$ST" 'BEGIN {
	split(zw, z, " "); split(bw, b, " ")
	zr = s / z[1] / 1e6; br = s / b[1] / 1e6; g = s / 1073741824
	printf "image %.0f MiB (ext4 of /usr files), %d CPUs, best of 3 rounds\n", s / 1048576, '"$(nproc)"'
	printf "zstd -T0 -3         : %7.1f MB/s  %5.2f CPU-s/GiB  output %.1f MiB\n", zr, z[2] / g, zs / 1048576
	printf "rackboot-image build: %7.1f MB/s  %5.2f CPU-s/GiB  stored %.1f MiB (%.2fx of zstd)\n", br, b[2] / g, st / 1048576, st / zs
	printf "throughput ratio build/zstd: %.2f (goal >= 0.80); CPU ratio zstd/build: %.2f\n", br / zr, z[2] / b[2]
}'
rm -f "$T/fs.img.zst"

# Sparse: 1 GiB of data inside an 8 GiB disk (at 1 GiB; the rest holes).
rm -rf "$T/repo"
truncate -s 8G "$T/sparse.img"
dd if="$T/fs.img" of="$T/sparse.img" bs=1M seek=1024 count=1024 conv=notrunc status=none
DATA=$(stat -c %s "$T/fs.img")
ZD=$(zstd -q -T0 -3 -c "$T/fs.img" | wc -c)
t0=$(now)
"$BIN" build -q --repo "$T/repo" --key "$T/k.key" --name sparse --version 1 "$T/sparse.img" >"$T/b.out" || exit 1
t1=$(now)
ST=$(du -sb "$T/repo/packs" | cut -f1)
MF=$(stat -c %s "$T/repo/images/sparse/1.manifest.json")
awk -v d="$DATA" -v zd="$ZD" -v st="$ST" -v mf="$MF" -v a="$t0" -v b="$t1" 'BEGIN {
	printf "sparse 8 GiB disk, %.0f MiB of data: stored %.1f MiB = %.2fx zstd -3 of the data alone,\n", d / 1048576, st / 1048576, st / zd
	printf "  %.3f%% of the disk; manifest %.0f KiB; build %.1f s (%.0f MB/s of disk)\n", 100 * st / 8589934592, mf / 1024, b - a, 8589934592 / (b - a) / 1e6
}'
