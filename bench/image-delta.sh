#!/bin/bash
# What a node fetches to go from v1 to v2 of an OS image that differ by a
# few updated Debian packages, at chunk sizes 16..256 KiB. Picks the chunk
# size against the targets of docs/formats.md ("Chunk size: measured"):
# delta <= 15% of a full deploy, manifest < 1% of the image, few requests.
#
# Data: ~40 real Debian 12 packages (apt-get download into
# /var/cache/rackboot/bench-debs, reused between runs), unpacked with
# dpkg -x into a root, put into a 1 GiB ext4 image with mkfs.ext4 -d (fixed
# UUID, hash seed and time, so only the package change differs).
# v1 has the older Debian version of UPDATED packages (bookworm or
# bookworm-updates), v2 the newer one (bookworm-security): a real minor
# update of openssl/libssl3, libcurl4/curl and tzdata. Two ways to make v2:
#  rebuilt:  mkfs.ext4 -d of the whole new root (image pipelines that
#            regenerate the file system: files after a changed one move)
#  in-place: v1's image loop-mounted and the new packages unpacked over it
#            (what dpkg on a golden node does before a capture; needs root)
#   bench/image-delta.sh [CHUNK_KIB...]    (default 16 32 64 128 256)
set -u

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../build}
BIN=$RB_BUILD/imager/rackboot-image
SIZES=${*:-16 32 64 128 256}
CACHE=/var/cache/rackboot/bench-debs
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
for t in apt-get apt-cache dpkg mkfs.ext4; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
BASE="bash coreutils grep sed tar gzip findutils diffutils util-linux procps iproute2
 iputils-ping libc6 libc-bin openssh-client openssh-server libsystemd0 systemd perl-base
 vim-tiny less nano rsync wget ca-certificates e2fsprogs dpkg apt locales gnupg gpgv
 libgnutls30 libsqlite3-0 zstd xz-utils libxml2 python3.11-minimal libpython3.11-minimal
 libpython3.11-stdlib"
UPDATED="openssl libssl3 libcurl4 curl tzdata"

mkdir -p "$CACHE" || { echo "SKIP: cannot create $CACHE"; exit 77; }
chmod 755 "$CACHE"
T=$(mktemp -d /var/tmp/rbt-imgdelta.XXXXXX)
trap 'rm -rf "$T"' EXIT
trap 'exit 1' INT TERM

fetch() { # fetch PKG VERSION -> path of the .deb
	local f
	f=$(ls "$CACHE/$1_$(echo "$2" | sed 's/:/%3a/')_"*.deb 2>/dev/null | head -1)
	if [ -z "$f" ]; then
		(cd "$CACHE" && apt-get download -q "$1=$2" >/dev/null 2>&1) || return 1
		f=$(ls "$CACHE/$1_$(echo "$2" | sed 's/:/%3a/')_"*.deb 2>/dev/null | head -1)
	fi
	[ -n "$f" ] && echo "$f"
}
: >"$T/v1.list"
: >"$T/v2.list"
for p in $BASE; do
	v=$(apt-cache madison "$p" | awk 'NR==1{print $3}')
	f=$(fetch "$p" "$v") || { echo "SKIP: apt-get download $p failed (no network?)"; exit 77; }
	echo "$f" >>"$T/v1.list"
	echo "$f" >>"$T/v2.list"
done
for p in $UPDATED; do
	new=$(apt-cache madison "$p" | awk 'NR==1{print $3}')
	old=$(apt-cache madison "$p" | awk 'NR==2{print $3}')
	[ -n "$old" ] || old=$new
	f1=$(fetch "$p" "$old") && f2=$(fetch "$p" "$new") ||
		{ echo "SKIP: apt-get download $p failed"; exit 77; }
	echo "$f1" >>"$T/v1.list"
	echo "$f2" >>"$T/v2.list"
	echo "update: $p $old -> $new"
done
for v in 1 2; do
	mkdir -p "$T/root$v"
	while read -r f; do dpkg -x "$f" "$T/root$v"; done <"$T/v$v.list"
	E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -U 0b0e5a3c-1d2e-4f00-8a1b-2c3d4e5f6a7b \
		-E hash_seed=0b0e5a3c-1d2e-4f00-8a1b-2c3d4e5f6a7b -d "$T/root$v" "$T/v$v.img" 1G ||
		exit 1
done
if [ "$(id -u)" -eq 0 ] && mkdir -p "$T/mnt" && cp --sparse=always "$T/v1.img" "$T/v2in.img" &&
	mount -o loop "$T/v2in.img" "$T/mnt" 2>/dev/null; then
	for p in $UPDATED; do
		dpkg -x "$(grep "/${p}_" "$T/v2.list")" "$T/mnt"
	done
	umount "$T/mnt"
else
	rm -f "$T/v2in.img"
	echo "note: not root or no loop mount: in-place variant skipped"
fi
echo "packages: $(wc -l <"$T/v1.list") in v1, $(cat "$T/v1.list" "$T/v2.list" | sort -u | wc -l) distinct .debs;" \
	"root $(du -sm "$T/root1" | cut -f1) MiB unpacked; image 1 GiB ext4"
rm -rf "$T/root1" "$T/root2"
"$BIN" keygen "$T/k" >/dev/null
table() { # table V2IMAGE
printf '%-6s %9s %11s %9s %10s %9s %8s %8s\n' chunk fetch full "fetch%" manifest "mf%img" "req-full" "req-v1v2"
for kib in $SIZES; do
	R=$T/repo$kib
	"$BIN" build -q --repo "$R" --key "$T/k.key" --name os --version 1 --chunk-size ${kib}K "$T/v1.img" >/dev/null &&
		"$BIN" build -q --repo "$R" --key "$T/k.key" --name os --version 2 --chunk-size ${kib}K "$1" >/dev/null ||
		exit 1
	"$BIN" diff --repo "$R" os 1 2 >"$T/d"
	mf=$(stat -c %s "$R/images/os/2.manifest.json")
	awk -v kib="$kib" -v mf="$mf" '{v[$1]=$2} END {
		printf "%4dK %8.1fM %10.1fM %8.2f%% %9.0fK %8.3f%% %8d %8d\n", kib,
			v["fetch_bytes"]/1048576, v["full_deploy_bytes"]/1048576, v["fetch_percent"],
			mf/1024, 100*mf/1073741824, v["full_deploy_requests"], v["fetch_requests"]
	}' "$T/d"
	rm -rf "$R"
done
}
echo "== v2 rebuilt with mkfs.ext4 -d =="
table "$T/v2.img"
if [ -e "$T/v2in.img" ]; then
	echo "== v2 updated in place (v1 image + new packages unpacked over it) =="
	table "$T/v2in.img"
fi
echo "fetch = packs bytes a node with v1 downloads for v2; full = stored bytes of v2;"
echo "mf%img = manifest size / 1 GiB image; req = HTTP Range requests (runs of back-to-back frames in one pack)"
