#!/bin/bash
# Image deploy with rackboot-agent, as ratios against anchors run in this
# script, everything served by one rackbootd on 127.0.0.1 (http.repo_root):
#  1. full deploy of an ext4 image of DATA_MIB MiB (real files, /usr/lib and
#     /usr/share, 70 % full, mkfs.ext4 -d) to a fresh file:
#     `rackboot-agent image` against `curl -s URL | zstd -d | dd of=FILE
#     bs=4M` of one .zst (zstd -3) of the same image. The agent ends with
#     fsync (the image is on the disk when it exits); dd does not, so the
#     anchor is also timed with `conv=fsync` ("anchor+fsync"). Goal: the
#     agent >= 1.3x faster than the anchor.
#  2. reimage to v2 = v1 with a few real Debian packages unpacked over it
#     in place (loop mount, `dpkg-deb -x` of openssl, libssl3, libcurl4,
#     curl and systemd from /var/cache/apt/archives, as dpkg on a golden
#     node does before a capture): fetched bytes (the agent's summary) <=
#     15 % of the full deploy's, time >= 5x faster than the full deploy.
#     Skipped without root/loop mount or without those .deb files.
#  3. mostly-empty disk: 8 GiB sparse image holding 500 MiB of data (a tar
#     stream of /usr files at 1 GiB): time per GiB written against the full
#     deploy's.
#  4. peak memory (/usr/bin/time -v "Maximum resident set size") of the
#     agent in cases 1 and 3. Goal: < 64 MiB.
# Case 1 also prints the CPU time (user+sys) of each side, and times the
# disk alone, for reference: as many bytes as the
# agent writes, by dd oflag=direct bs=2M + fsync ("durable dd"). That is what
# putting the data on the disk costs here; the anchor without fsync does
# not pay it (its bytes are still in the page cache when it exits).
# Each timed run writes a fresh file on the same file system (/var/tmp),
# after a `sync`; each is run ROUNDS times (default 2), interleaved, and the
# best is kept; the peak RSS is the largest of the runs. The load average is
# printed before and after: on a shared machine, compare runs taken at a
# similar load.
#   bench/agent-deploy.sh [DATA_MIB]     (default 2048; 512 for a fast check)
#   ROUNDS=5 bench/agent-deploy.sh       (more rounds where the machine is noisy)
set -u

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../build}
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
MIB=${1:-2048}
ROUNDS=${ROUNDS:-2}
SPARSE_MIB=500
DEBS="openssl libssl3 libcurl4 curl systemd"
for b in "$AGENT" "$IMG" "$SRV"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
for t in zstd mkfs.ext4 tar curl python3 /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
T=$(mktemp -d /var/tmp/rbt-agentbench.XXXXXX)
PID=
cleanup() {
	mountpoint -q "$T/mnt" 2>/dev/null && umount "$T/mnt"
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM
now() { date +%s.%N; }
field() { # field NAME FILE: a key=value from the agent's summary line
	tr ' ' '\n' <"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'
}
maxrss() { # maxrss FILE...: the largest "Maximum resident set size" (KiB)
	awk -F': ' '/Maximum resident set size/ { if ($2 > m) m = $2 } END { print m + 0 }' "$@"
}
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- data ----
R=$T/repo
mkdir -p "$T/root" "$R/plain" "$T/boot" "$T/state"
tar -C / -cf - usr/lib usr/share 2>/dev/null | head -c $((MIB * 1024 * 1024 * 7 / 10)) |
	tar -C "$T/root" -xf - 2>/dev/null
E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -U 3c1e9a52-5b7d-4e0f-9a6b-0c2d4e6f8a10 \
	-E hash_seed=3c1e9a52-5b7d-4e0f-9a6b-0c2d4e6f8a10 -d "$T/root" "$T/v1.img" ${MIB}M || exit 1
rm -rf "$T/root"
V2=none
if [ "$(id -u)" -eq 0 ] && mkdir -p "$T/mnt" && cp --sparse=always "$T/v1.img" "$T/v2.img" &&
	mount -o loop "$T/v2.img" "$T/mnt" 2>/dev/null; then
	V2=
	for p in $DEBS; do
		d=$(ls /var/cache/apt/archives/"${p}"_*.deb 2>/dev/null | head -1)
		[ -n "$d" ] && dpkg-deb -x "$d" "$T/mnt" && V2="$V2 $(basename "$d")"
	done
	umount "$T/mnt"
	[ -n "$V2" ] || V2=none
fi
truncate -s 8G "$T/sparse.img"
tar -C / -cf - usr/lib usr/share 2>/dev/null | head -c $((SPARSE_MIB * 1024 * 1024)) |
	dd of="$T/sparse.img" bs=1M seek=1024 conv=notrunc iflag=fullblock status=none

"$IMG" keygen "$T/k" >/dev/null || exit 1
"$IMG" build -q --repo "$R" --key "$T/k.key" --name fs --version 1 "$T/v1.img" >/dev/null || exit 1
if [ "$V2" != none ]; then
	"$IMG" build -q --repo "$R" --key "$T/k.key" --name fs --version 2 "$T/v2.img" >/dev/null || exit 1
fi
"$IMG" build -q --repo "$R" --key "$T/k.key" --name sparse --version 1 "$T/sparse.img" \
	>/dev/null || exit 1
zstd -q -T0 -3 -c "$T/v1.img" >"$R/plain/v1.img.zst" || exit 1
SIZE=$(stat -c %s "$T/v1.img")
ZS=$(stat -c %s "$R/plain/v1.img.zst")
STORED=$(du -sb "$R/packs" | cut -f1)

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/repo
cat >"$T/rackbootd.conf" <<EOF
user = ""
state_dir = "$T/state"
server_address = "127.0.0.1"
log_level = "warning"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$T/boot"
	repo_root = "$R"
	threads = $(nproc)
}
EOF
"$SRV" -c "$T/rackbootd.conf" >"$T/rackbootd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
	curl -s -o /dev/null "$URL/plain/v1.img.zst" && break
	sleep 0.1
done
cat "$R"/packs/* "$R/plain/v1.img.zst" >/dev/null # page cache: the server side reads no disk

# agent_run NAME ARGS...: times one agent run (wall), keeps its summary and
# its peak RSS; prints the seconds
agent_run() {
	local n=$1 t0 t1
	shift
	sync
	t0=$(now)
	/usr/bin/time -v -o "$T/$n.time" "$AGENT" image --repo "$URL" --pub "$T/k.pub" -q "$@" \
		>"$T/$n.out" 2>"$T/$n.err" || { echo "agent failed: $(cat "$T/$n.err")" >&2; exit 1; }
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
anchor_run() { # anchor_run FSYNC(0/1): prints the seconds
	local t0 t1 conv=
	[ "$1" = 1 ] && conv=conv=fsync
	rm -f "$T/anchor.img"
	sync
	t0=$(now)
	/usr/bin/time -f '%U %S' -o "$T/anchor$1.cpu" bash -c \
		"curl -s '$URL/plain/v1.img.zst' | zstd -q -d | dd of='$T/anchor.img' bs=4M $conv status=none"
	t1=$(now)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
# floor_run BYTES: the disk's part of a deploy alone: BYTES of incompressible
# data (the packs, cycled) written with dd oflag=direct bs=2M, then fsync
floor_run() {
	local t0 t1
	rm -f "$T/floor.img"
	sync
	t0=$(now)
	while cat "$R"/packs/*; do :; done 2>/dev/null | head -c "$1" |
		dd of="$T/floor.img" bs=2M iflag=fullblock oflag=direct status=none && sync "$T/floor.img"
	t1=$(now)
	rm -f "$T/floor.img"
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}
min() { echo "$@" | tr ' ' '\n' | sort -g | head -1; }

# ---- 1. full deploy, ROUNDS times each, interleaved ----
A=() B=() C=() D=()
for i in $(seq "$ROUNDS"); do
	rm -f "$T/full.img"
	A+=("$(agent_run full$i --name fs --version 1 --target "$T/full.img")")
	cmp -s "$T/v1.img" "$T/full.img" || { echo "full deploy differs from the image"; exit 1; }
	B+=("$(anchor_run 0)")
	C+=("$(anchor_run 1)")
	D+=("$(floor_run $(($(field chunks_written "$T/full1.out") * 65536)))")
done
cmp -s "$T/v1.img" "$T/anchor.img" || { echo "anchor output differs from the image"; exit 1; }
rm -f "$T/anchor.img"
TA=$(min "${A[@]}")
TB=$(min "${B[@]}")
TC=$(min "${C[@]}")
TD=$(min "${D[@]}")
FULLF=$(field fetched_bytes "$T/full1.out")
FULLW=$(field chunks_written "$T/full1.out")
CS=65536
awk -v s="$SIZE" -v zs="$ZS" -v st="$STORED" -v a="$TA" -v b="$TB" -v c="$TC" -v d="$TD" -v ds="${D[*]}" \
	-v f="$FULLF" -v req="$(field requests "$T/full1.out")" -v rss="$(maxrss "$T"/full*.time)" \
	-v as="${A[*]}" -v bs="${B[*]}" -v cs="${C[*]}" \
	-v acpu="$(awk -F': ' '/User time|System time/ { t += $2 } END { print t }' "$T/full$ROUNDS.time")" \
	-v bcpu="$(awk '{ print $1 + $2 }' "$T/anchor0.cpu")" 'BEGIN {
	printf "image %.0f MiB (ext4 of /usr files), %d CPUs; zstd -3 file %.1f MiB, packs (all images) %.1f MiB\n", s / 1048576, '"$(nproc)"', zs / 1048576, st / 1048576
	printf "full deploy, best of '"$ROUNDS"' (runs: agent %s | anchor %s | anchor+fsync %s)\n", as, bs, cs
	printf "  rackboot-agent image             : %6.2f s  %7.1f MB/s of disk  fetched %.1f MiB in %d requests\n", a, s / a / 1e6, f / 1048576, req
	printf "  curl | zstd -d | dd bs=4M         : %6.2f s  %7.1f MB/s\n", b, s / b / 1e6
	printf "  curl | zstd -d | dd conv=fsync    : %6.2f s  %7.1f MB/s\n", c, s / c / 1e6
	printf "  durable dd of the agent'"'"'s %.0f MiB (oflag=direct bs=2M + fsync), no decoding: %.2f s (runs: %s)\n", '"$(field chunks_written "$T/full1.out")"' / 16, d, ds
	printf "  speed-up agent vs anchor: %.2fx (goal >= 1.30); vs anchor+fsync: %.2fx\n", b / a, c / a
	printf "  CPU (user+sys, last run): agent %.2f s, anchor %.2f s (curl+zstd+dd; no verification)\n", acpu, bcpu
	printf "  agent peak RSS: %.1f MiB (goal < 64)\n", rss / 1024
}'

# ---- 2. reimage v1 -> v2 ----
if [ "$V2" != none ]; then
	R1=()
	for i in $(seq "$ROUNDS"); do
		cp --sparse=always "$T/v1.img" "$T/re.img"
		cat "$T/re.img" >/dev/null
		R1+=("$(agent_run re$i --name fs --version 2 --target "$T/re.img" --reimage)")
		cmp -s "$T/v2.img" "$T/re.img" || { echo "reimage result differs from v2"; exit 1; }
	done
	rm -f "$T/re.img"
	TR=$(min "${R1[@]}")
	awk -v a="$TA" -v r="$TR" -v f="$FULLF" -v rf="$(field fetched_bytes "$T/re1.out")" \
		-v req="$(field requests "$T/re1.out")" -v keep="$(field skipped_present "$T/re1.out")" \
		-v w="$(field chunks_written "$T/re1.out")" -v debs="$V2" -v rs="${R1[*]}" \
		-v rss="$(maxrss "$T"/re*.time)" 'BEGIN {
	printf "reimage v1 -> v2 (in place:%s), best of '"$ROUNDS"' (runs: %s)\n", debs, rs
	printf "  %6.2f s, fetched %.1f MiB in %d requests = %.2f%% of the full deploy (goal <= 15%%)\n", r, rf / 1048576, req, 100 * rf / f
	printf "  %d chunks kept, %d written; %.1fx faster than the full deploy (goal >= 5x); peak RSS %.1f MiB\n", keep, w, a / r, rss / 1024
}'
else
	echo "reimage: SKIPPED (needs root, a loop mount and $DEBS in /var/cache/apt/archives)"
fi

# ---- 3. mostly empty ----
S=()
for i in $(seq "$ROUNDS"); do
	rm -f "$T/sp.img"
	S+=("$(agent_run sp$i --name sparse --version 1 --target "$T/sp.img")")
done
cmp -s "$T/sparse.img" "$T/sp.img" || { echo "sparse deploy differs"; exit 1; }
TS=$(min "${S[@]}")
awk -v a="$TA" -v s="$TS" -v fw="$FULLW" -v sw="$(field chunks_written "$T/sp1.out")" -v cs=$CS \
	-v rss="$(maxrss "$T"/sp*.time)" -v used="$(du -k "$T/sp.img" | cut -f1)" -v ss="${S[*]}" 'BEGIN {
	fg = fw * cs / 1073741824; sg = sw * cs / 1073741824
	printf "sparse 8 GiB disk, %d MiB of data, best of '"$ROUNDS"' (runs: %s)\n", '"$SPARSE_MIB"', ss
	printf "  %6.2f s for %.2f GiB written (%.0f MiB on disk): %.2f s/GiB; full deploy %.2f s/GiB (ratio %.2f)\n", s, sg, used / 1024, s / sg, a / fg, (s / sg) / (a / fg)
	printf "  agent peak RSS: %.1f MiB (goal < 64)\n", rss / 1024
}'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
