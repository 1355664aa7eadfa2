#!/bin/bash
# rackboot-agent image against a failing disk and a repository that loses
# packs, with the real rackbootd on 127.0.0.1 (test_agent_faults.sh covers
# the network side: cut, stalled, killed and redirecting servers).
#  a. a disk that fails in the middle of the write: a loop device whose
#     backing file lies on a tmpfs too small for it (the kernel's loop
#     driver fails the writes past what the tmpfs holds with ENOSPC, as a
#     thin-provisioned or failing disk would). The device held an old
#     GPT. Exit 1, the message names the write error, the target and an
#     offset inside the image's data; the device holds no MBR signature
#     (bytes 510-511), no GPT header (primary or backup): sfdisk -d finds
#     no partition table, blkid -p nothing;
#  b. a plain file on a full file system: the same, ENOSPC;
#  c. a pack deleted from the repository before the run: exit 1 naming a
#     chunk stored in that pack and the 404, no partition table;
#  d. a pack deleted while the agent runs (rate-limited so that it is
#     still fetching): exit 1 naming a chunk of that pack, no table; with
#     the pack back, --reimage on the same target completes
#     byte-identical and fetches less than a full write (a correct resume).
# A device-mapper "error" target would be the other way to fail a disk;
# kernels without device-mapper (this test's VM) have no such target, so
# the full tmpfs is used. Parts a and b need root (mount, losetup) and
# skip without it; c and d always run. Cleans up its mount, loop device
# and rackbootd in a trap.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
export PATH=$PATH:/usr/sbin:/sbin
rb_need_cmd sfdisk blkid python3 cmp curl truncate

rb_setup diskfault
T=$RB_TMP
AGPID=
LOOP=
MNT=
cleanup() {
	[ -n "$AGPID" ] && kill "$AGPID" 2>/dev/null
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
	[ -n "$MNT" ] && umount "$MNT" 2>/dev/null
}
RB_ON_EXIT=cleanup

SKIPPED=
R=$T/repo
mkdir -p "$R" "$T/boot" "$T/state"

# ---- the image: a 64 MiB GPT disk, 24 MiB of random data at 8-32 MiB ----
MIB=1048576
DSIZE=$((64 * MIB))
DATA_START=$((8 * MIB))
DATA_END=$((32 * MIB))
DISK=$T/disk.img
truncate -s $DSIZE "$DISK"
printf 'label: gpt\nstart=2048, size=16384, type=U, name="esp"\nstart=18432, size=110592, type=L, name="root"\n' |
	sfdisk -q "$DISK" >/dev/null || { echo "FAIL: sfdisk"; exit 1; }
head -c $((DATA_END - DATA_START)) /dev/urandom |
	dd of="$DISK" bs=1M seek=8 conv=notrunc status=none
"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
"$IMG" build -q --repo "$R" --key "$T/site.key" --name node --version 1 --pack-size 4M \
	"$DISK" >/dev/null || { echo "FAIL: rackboot-image build"; exit 1; }
MF=$R/images/node/1.manifest.json

rb_repo_conf "$R"
PORT=$RB_PORT
URL=http://127.0.0.1:$PORT/repo
rb_start_server "http://127.0.0.1:$PORT/boot/" "$SRV" -c "$T/rackbootd.conf" -v

agent() { timeout 120 "$AGENT" image --repo "$URL" --pub "$T/site.pub" -q --name node --version 1 "$@"; }
# no_table FILE: no MBR signature at 510, no GPT header at 512 or in the
# last sector
no_table() {
	python3 - "$1" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.lseek(fd, 0, os.SEEK_END)
head = os.pread(fd, 1024, 0)
tail = os.pread(fd, 512, size - 512)
sys.exit(1 if head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART" or
         tail[:8] == b"EFI PART" else 0)
EOF
}
# tools_see_nothing DEV: neither sfdisk nor blkid finds a partition table
tools_see_nothing() {
	! sfdisk -d "$1" >/dev/null 2>&1 && ! blkid -p -o export "$1" 2>/dev/null | grep -q PTTYPE
}
# write_offset FILE: the offset in "(offset N): writing" of the message
write_offset() { grep -o '(offset [0-9]*): writing' "$1" | grep -o '[0-9]*' | head -1; }
# chunks_of PACK_INDEX: the chunk indices stored in that pack
chunks_of() {
	python3 - "$MF" "$1" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
print(" ".join(str(i) for i, c in enumerate(m["chunks"]) if c[3] == int(sys.argv[2])))
EOF
}
pack_id() {
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["packs"][int(sys.argv[2])]["id"])' "$MF" "$1"
}
# named_chunk_in FILE PACK_INDEX: the message names "chunk K" with K in the pack
named_chunk_in() {
	local k
	k=$(grep -o 'failed: chunk [0-9]*' "$1" | grep -o '[0-9]*$')
	[ -n "$k" ] && [[ " $(chunks_of "$2") " == *" $k "* ]]
}

# ---- a. a loop device that fails with ENOSPC in the middle ----
# The agent zeroes what the image does not store (40 MiB of the 64) before
# it writes the data, so a 52 MiB tmpfs runs out about half-way through
# the 24 MiB of data.
if [ "$(id -u)" -ne 0 ]; then
	SKIPPED="$SKIPPED a,b(not root)"
else
	MNT=$T/small
	mkdir -p "$MNT"
	if ! mount -t tmpfs -o size=52m rbt-diskfault "$MNT"; then
		MNT=
		SKIPPED="$SKIPPED a,b(no tmpfs mount)"
	fi
fi
if [ -n "$MNT" ]; then
	truncate -s $DSIZE "$MNT/loop.bin"
	if LOOP=$(losetup -f --show "$MNT/loop.bin" 2>/dev/null) && [ -b "$LOOP" ]; then
		printf 'label: gpt\nstart=2048, type=L, name="old tenant"\n' | sfdisk -q "$LOOP" >/dev/null 2>&1
		if no_table "$LOOP"; then
			fail "a: could not put the old GPT on $LOOP"
		else
			agent --target "$LOOP" >"$T/sa" 2>"$T/ea"
			rc=$?
			off=$(write_offset "$T/ea")
			if [ $rc -eq 1 ] && grep -q "writing $LOOP: \(No space left on device\|Input/output error\)" "$T/ea" &&
				[ -n "$off" ] && [ "$off" -ge $DATA_START ] && [ "$off" -lt $DATA_END ]; then
				pass "a: loop device failing in the middle: exit 1: $(cat "$T/ea")"
			else
				fail "a: loop device failing in the middle: exit $rc, want a write error at an offset in [$DATA_START, $DATA_END): $(cat "$T/sa" "$T/ea")"
			fi
			if no_table "$LOOP" && tools_see_nothing "$LOOP"; then
				pass "a: no MBR signature, no GPT (sfdisk -d and blkid -p find none), the old GPT is gone"
			else
				fail "a: a partition table is left on $LOOP: $(sfdisk -d "$LOOP" 2>&1 | head -3 | tr '\n' ' ')"
			fi
		fi
		losetup -d "$LOOP"
		LOOP=
	else
		LOOP=
		SKIPPED="$SKIPPED a(no loop device)"
	fi
	rm -f "$MNT/loop.bin"

	# ---- b. a plain file on a full file system ----
	head -c $((40 * MIB)) /dev/zero >"$MNT/filler"
	agent --target "$MNT/node.img" >"$T/sb" 2>"$T/eb"
	rc=$?
	off=$(write_offset "$T/eb")
	if [ $rc -eq 1 ] && grep -q "writing $MNT/node.img: No space left on device" "$T/eb" &&
		[ -n "$off" ] && [ "$off" -ge $DATA_START ] && [ "$off" -lt $DATA_END ] &&
		no_table "$MNT/node.img"; then
		pass "b: file on a full file system: exit 1, no partition table: $(cat "$T/eb")"
	else
		fail "b: file on a full file system: exit $rc: $(cat "$T/sb" "$T/eb")"
	fi
	rm -f "$MNT/filler" "$MNT/node.img"
	umount "$MNT" && MNT=
fi

# ---- c. a pack missing before the run ----
NPACKS=$(python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["packs"]))' "$MF")
MID=$((NPACKS / 2))
P=$(pack_id $MID)
mv "$R/packs/$P.pack" "$T/held.pack"
agent --target "$T/c.img" >"$T/sc" 2>"$T/ec"
rc=$?
if [ $rc -eq 1 ] && named_chunk_in "$T/ec" $MID && grep -q "packs/$P.pack.*404" "$T/ec" &&
	no_table "$T/c.img"; then
	pass "c: pack $MID of $NPACKS missing: exit 1 naming a chunk of it: $(cat "$T/ec")"
else
	fail "c: pack $MID missing: exit $rc, want a chunk of $(chunks_of $MID | wc -w) in pack $MID and 404: $(cat "$T/sc" "$T/ec")"
fi
mv "$T/held.pack" "$R/packs/$P.pack"

# ---- d. a pack disappearing while the agent runs ----
# Pack 0 holds chunk 0, which is fetched last (boot area): whatever the
# agent fetched of pack 0 before, it still needs it when the pack is gone.
P0=$(pack_id 0)
agent --target "$T/d.img" --parallel 2 --max-rate 1500000 >"$T/sd" 2>"$T/ed" &
AGPID=$!
sleep 1.5
if kill -0 "$AGPID" 2>/dev/null; then
	mv "$R/packs/$P0.pack" "$T/held.pack"
	wait "$AGPID"
	rc=$?
	AGPID=
	if [ $rc -eq 1 ] && named_chunk_in "$T/ed" 0 && grep -q "packs/$P0.pack.*404" "$T/ed" &&
		no_table "$T/d.img"; then
		pass "d: pack 0 deleted mid-run: exit 1 naming a chunk of it, no partition table: $(cat "$T/ed")"
	else
		fail "d: pack 0 deleted mid-run: exit $rc: $(cat "$T/sd" "$T/ed")"
	fi
	mv "$T/held.pack" "$R/packs/$P0.pack"
	full=$(python3 -c 'import json, sys; print(sum(p["size"] for p in json.load(open(sys.argv[1]))["packs"]))' "$MF")
	if agent --target "$T/d.img" --reimage >"$T/sd2" 2>"$T/ed2" && cmp -s "$DISK" "$T/d.img"; then
		got=$(tr ' ' '\n' <"$T/sd2" | awk -F= '$1 == "fetched_bytes" { print $2 }')
		if [ "${got:-0}" -lt "$full" ]; then
			pass "d: pack back, --reimage resumed: byte-identical, fetched $got of $full stored bytes: $(cat "$T/sd2")"
		else
			fail "d: resume fetched $got bytes, a full write is $full"
		fi
	else
		fail "d: resume with --reimage: $(cat "$T/sd2" "$T/ed2")"
	fi
else
	wait "$AGPID"
	AGPID=
	fail "d: the agent ended within 1.5 s at --max-rate 1500000: $(cat "$T/sd" "$T/ed")"
fi

kill -0 "$RB_PID" 2>/dev/null || fail "rackbootd died"
[ -n "$SKIPPED" ] && echo "skipped parts:$SKIPPED"
rb_finish
