#!/bin/bash
# rackboot-agent plain against the real rackbootd on 127.0.0.1: plain
# images registered with rackboot-image register (a GPT disk as raw,
# raw.gz, raw.xz, raw.zst) are written to files and compared byte for
# byte; raw.zst onto a loop device that held other data; a transfer cut in
# the middle resumes with Range (and, from a front that ignores Range,
# with the whole file again); a flipped byte in the stored .zst (in the
# middle and at the end) ends in exit 1 naming the sha256 mismatch, with
# no MBR or GPT on the target; a catalogue edited after signing, a wrong
# key and a rackboot image asked for as plain are refused before the
# target is touched. Rootfs: a .tar.zst onto a loop device gives a GPT
# with an ESP (vfat) and an ext4 root holding the files with their modes,
# owners, symlinks and hard links; hostile tarballs ("../", an absolute
# path, a file through a symlink) and a damaged one fail with nothing
# written outside and no partition table left. Rootfs parts skip without
# loop devices (the rest still runs).
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
rb_need_cmd sfdisk mkfs.vfat mkfs.ext4 python3 cmp curl gzip xz zstd sha256sum

rb_setup agentplain
T=$RB_TMP
PYPID=
LOOPS=
cleanup() {
	mountpoint -q "$T/mnt" 2>/dev/null && umount "$T/mnt"
	for l in $LOOPS; do losetup -d "$l" 2>/dev/null; done
	[ -n "$PYPID" ] && kill "$PYPID" 2>/dev/null
}
RB_ON_EXIT=cleanup

R=$T/repo
mkdir -p "$R" "$T/boot" "$T/state" "$T/mnt" "$T/outside"

rb_repo_conf "$R"
PORT=$RB_PORT
URL=http://127.0.0.1:$PORT/repo
rb_start_server "http://127.0.0.1:$PORT/boot/" "$SRV" -c "$T/rackbootd.conf" -v

# no_table FILE: true if FILE holds no MBR signature and no GPT header at
# its start, and no backup GPT header in its last sector
no_table() {
	python3 - "$1" <<'EOF2'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.lseek(fd, 0, os.SEEK_END)
head = os.pread(fd, 1024, 0)
tail = os.pread(fd, 512, size - 512) if size >= 512 else b""
bad = head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART" or tail[:8] == b"EFI PART"
sys.exit(1 if bad else 0)
EOF2
}
flip() { # flip FILE OFFSET
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
f.write(bytes([b[0] ^ 0x55])); f.close()' "$1" "$2"
}
plain() { "$AGENT" plain --repo "$URL" --pub "$T/site.pub" -q "$@"; }
register() { "$IMG" register --repo "$R" --key "$T/site.key" "$@" >/dev/null; }

"$IMG" keygen "$T/site" >/dev/null && "$IMG" keygen "$T/other" >/dev/null ||
	{ echo "FAIL: keygen"; exit 1; }

# ---- the disk: a 256 MiB GPT disk (ESP + ext4), with random data in it ----
. "$(cd "$(dirname "$0")" && pwd)/disk.sh"
mkdir -p "$T/root/etc" "$T/root/var/lib"
echo "rackboot plain test" >"$T/root/etc/hostname"
head -c $((3 * 1024 * 1024)) /dev/urandom >"$T/root/var/lib/blob.bin"
gpt_disk "$T/disk.img" "$T/root" "$T" || { echo "FAIL: could not make the test disk"; exit 1; }
DISK=$T/disk.img
DSIZE=$(stat -c %s "$DISK")
mkdir -p "$T/src"
cp --sparse=always "$DISK" "$T/src/disk.img"
gzip -1 -c "$DISK" >"$T/src/disk.img.gz"
xz -0 -T2 -c "$DISK" >"$T/src/disk.img.xz"
zstd -q -c "$DISK" >"$T/src/disk.img.zst"
n=0
for k in img img.gz img.xz img.zst; do
	n=$((n + 1))
	register --name disk --version $n "$T/src/disk.$k" || fail "register disk.$k"
done

# ---- each kind onto a file ----
# maxrss FILE CMD...: runs CMD, writes its peak RSS (KiB) into FILE
maxrss() {
	python3 -c 'import resource, subprocess, sys
r = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write("%d\n" % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(r)' "$@"
}
# the bound is the design's (< 64 MiB); a sanitizer build adds its own
RSS_MAX=$((64 * 1024))
grep -q __asan_init "$AGENT" && RSS_MAX=$((160 * 1024))
n=0
for k in raw raw.gz raw.xz raw.zst; do
	n=$((n + 1))
	if maxrss "$T/rss$n" "$AGENT" plain --repo "$URL" --pub "$T/site.pub" -q --name disk \
		--version $n --target "$T/out$n.img" >"$T/s$n" 2>"$T/e$n" &&
		cmp -s "$DISK" "$T/out$n.img"; then
		pass "$k: byte-identical, peak RSS $(cat "$T/rss$n") KiB: $(cat "$T/s$n")"
	else
		fail "$k: $(cat "$T/s$n" "$T/e$n")"
	fi
	# a 256 MiB image through a bounded pipeline: far below the image size
	[ "$(cat "$T/rss$n" 2>/dev/null || echo 999999)" -lt $RSS_MAX ] ||
		fail "$k: peak RSS $(cat "$T/rss$n") KiB, over $RSS_MAX KiB"
done
used=$(du -k "$T/out4.img" | cut -f1)
src_used=$(du -k "$DISK" | cut -f1)
[ "$used" -le $((src_used + 1024)) ] && [ "$used" -lt $((DSIZE / 1024 / 2)) ] &&
	pass "zero blocks left as holes: $used KiB used for $((DSIZE / 1024)) KiB" ||
	fail "target not sparse: $used KiB used (source $src_used KiB)"
grep -q "GET /repo/plain/disk.img.zst" "$T/rackbootd.log" &&
	pass "rackbootd served the .zst" || fail "no GET of the .zst in rackbootd's log"

# ---- a rackboot image name, an unknown name, a wrong key ----
plain --name nosuch --version 1 --target "$T/nx.img" >/dev/null 2>"$T/e"
rc=$?
[ $rc -eq 1 ] && grep -q "no plain image nosuch 1" "$T/e" && [ ! -e "$T/nx.img" ] &&
	pass "unknown entry: exit 1, nothing created: $(cat "$T/e")" ||
	fail "unknown entry: exit $rc: $(cat "$T/e")"
"$IMG" build --repo "$R" --key "$T/site.key" --name chunked --version 1 "$DISK" >/dev/null ||
	fail "imager build"
plain --name chunked --version 1 --target "$T/nx.img" >/dev/null 2>"$T/e"
rc=$?
[ $rc -eq 1 ] && grep -q "rackboot-agent image" "$T/e" && [ ! -e "$T/nx.img" ] &&
	pass "a rackboot image asked as plain: refused: $(cat "$T/e")" ||
	fail "rackboot image as plain: exit $rc: $(cat "$T/e")"
cp "$DISK" "$T/keep.img"
"$AGENT" plain --repo "$URL" --pub "$T/other.pub" -q --name disk --version 4 \
	--target "$T/keep.img" >/dev/null 2>"$T/e"
rc=$?
[ $rc -eq 1 ] && grep -q "signature does not verify" "$T/e" && cmp -s "$DISK" "$T/keep.img" &&
	pass "wrong key: exit 1, target untouched" || fail "wrong key: exit $rc: $(cat "$T/e")"

# ---- catalogue edited after signing: refused before any write ----
cp "$R/catalog.json" "$T/catalog.good"
python3 - "$R/catalog.json" <<'EOF2'
import sys
p = sys.argv[1]; s = open(p).read()
# one byte more: any change at all must break the signature
s = s.replace('"generated":', '"generated": ', 1)
open(p, "w").write(s)
EOF2
before=$(sha256sum "$T/keep.img" | cut -d' ' -f1)
plain --name disk --version 4 --target "$T/keep.img" >/dev/null 2>"$T/e"
rc=$?
plain --name disk --version 4 --target "$T/new.img" >/dev/null 2>>"$T/e"
rc2=$?
[ $rc -eq 1 ] && [ $rc2 -eq 1 ] && grep -q "catalog.json.sig: signature does not verify" "$T/e" &&
	[ "$(sha256sum "$T/keep.img" | cut -d' ' -f1)" = "$before" ] && [ ! -e "$T/new.img" ] &&
	pass "tampered catalogue: refused, target unchanged, nothing created: $(head -1 "$T/e")" ||
	fail "tampered catalogue: exit $rc/$rc2: $(cat "$T/e")"
cp "$T/catalog.good" "$R/catalog.json"

# ---- a damaged .zst in the repository ----
ZST=$R/plain/disk.img.zst
ZSIZE=$(stat -c %s "$ZST")
for where in middle end; do
	off=$((ZSIZE / 2))
	[ $where = end ] && off=$((ZSIZE - 2))
	flip "$ZST" $off
	cp "$DISK" "$T/bad.img" # it held a valid disk: that table must go too
	plain --name disk --version 4 --target "$T/bad.img" >/dev/null 2>"$T/e"
	rc=$?
	[ $rc -eq 1 ] && grep -q "sha256 mismatch" "$T/e" && no_table "$T/bad.img" &&
		pass "flipped .zst byte ($where): exit 1, no MBR/GPT left: $(cat "$T/e")" ||
		fail "flipped .zst byte ($where): exit $rc: $(cat "$T/e")"
	flip "$ZST" $off
done

# a damaged uncompressed image: no decoder notices, only the hash (at the
# very end, after the last MiB was decoded: it must not be on the target)
RAWF=$R/plain/disk.img
flip "$RAWF" $((DSIZE - 700))
cp "$DISK" "$T/bad.img"
plain --name disk --version 1 --target "$T/bad.img" >/dev/null 2>"$T/e"
rc=$?
[ $rc -eq 1 ] && grep -q "sha256 mismatch" "$T/e" && ! grep -q "stopped first" "$T/e" &&
	no_table "$T/bad.img" && pass "flipped raw byte near the end: exit 1, no MBR/GPT left" ||
	fail "flipped raw byte: exit $rc: $(cat "$T/e")"
flip "$RAWF" $((DSIZE - 700))

# ---- a transfer cut in the middle resumes ----
FPORT=$(rb_free_ports tcp)
cat >"$T/front.py" <<'EOF2'
# A front for rackbootd: the first GET of a /plain/ file is cut after half
# its body; with --no-range, Range headers are not passed on (the server
# then answers 200 with the whole file). Logs each request's Range.
import http.client, http.server, sys
port, up, norange = int(sys.argv[1]), int(sys.argv[2]), len(sys.argv) > 3
cut = {"done": False}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, fmt, *a):
        pass
    def do_GET(self):
        rng = self.headers.get("Range")
        sys.stderr.write("GET %s range=%s\n" % (self.path, rng)); sys.stderr.flush()
        c = http.client.HTTPConnection("127.0.0.1", up, timeout=30)
        c.request("GET", self.path, headers={"Range": rng} if rng and not norange else {})
        r = c.getresponse(); body = r.read()
        self.send_response(r.status)
        for k in ("Content-Range", "Content-Type"):
            if r.getheader(k):
                self.send_header(k, r.getheader(k))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if "/plain/" in self.path and not cut["done"]:
            cut["done"] = True
            self.wfile.write(body[: len(body) // 2]); self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
EOF2
for mode in range no-range; do
	extra=
	[ $mode = no-range ] && extra=--no-range
	python3 "$T/front.py" "$FPORT" "$PORT" $extra 2>"$T/front.log" &
	PYPID=$!
	for _ in $(seq 50); do
		curl -s -o /dev/null "http://127.0.0.1:$FPORT/repo/catalog.json" && break
		sleep 0.1
	done
	"$AGENT" plain --repo "http://127.0.0.1:$FPORT/repo" --pub "$T/site.pub" -q --name disk \
		--version 4 --target "$T/cut.img" >"$T/s" 2>"$T/e"
	rc=$?
	if [ $mode = range ]; then
		grep -q "plain/disk.img.zst range=bytes=[1-9][0-9]*-" "$T/front.log"
	else
		[ "$(grep -c "plain/disk.img.zst" "$T/front.log")" -eq 2 ]
	fi
	resumed=$?
	[ $rc -eq 0 ] && [ $resumed -eq 0 ] && cmp -s "$DISK" "$T/cut.img" &&
		pass "cut transfer, $mode: resumed, byte-identical: $(grep plain/ "$T/front.log" | tr '\n' ' ')" ||
		fail "cut transfer, $mode: exit $rc: $(cat "$T/e" "$T/front.log")"
	kill "$PYPID" 2>/dev/null
	wait "$PYPID" 2>/dev/null
	PYPID=
done

# ---- block devices: loop devices (root only) ----
if [ "$(id -u)" -ne 0 ] || ! command -v losetup >/dev/null || ! losetup -f >/dev/null 2>&1; then
	echo "SKIP: loop device parts (not root or no losetup)"
	rb_finish 77
fi
newloop() { # newloop FILE SIZE_MIB: sets LOOP (not in a subshell: LOOPS must grow)
	truncate -s "${2}M" "$1"
	LOOP=$(losetup --find --show --partscan "$1") || { LOOP=; return 1; }
	LOOPS="$LOOPS $LOOP"
}

# raw.zst onto a loop device full of old data: every byte must match
truncate -s 300M "$T/blk.img"
python3 - "$T/blk.img" <<'EOF2'
import sys
with open(sys.argv[1], "r+b") as f:
    for off in range(0, 300 << 20, 7 << 20):  # old data every 7 MiB
        f.seek(off); f.write(b"OLD TENANT DATA " * 4096)
EOF2
newloop "$T/blk.img" 300 || fail "losetup"
L=$LOOP
if [ -n "$L" ]; then
	plain --name disk --version 4 --target "$L" >"$T/s" 2>"$T/e"
	rc=$?
	[ $rc -eq 0 ] && cmp -s -n "$DSIZE" "$DISK" "$L" &&
		pass "raw.zst onto $L (old data beneath): identical: $(cat "$T/s")" ||
		fail "raw.zst onto $L: exit $rc: $(cat "$T/e")"
	flip "$ZST" $((ZSIZE - 2))
	plain --name disk --version 4 --target "$L" >/dev/null 2>"$T/e"
	rc=$?
	[ $rc -eq 1 ] && grep -q "sha256 mismatch" "$T/e" && no_table "$L" &&
		pass "damaged .zst onto $L: exit 1, no MBR/GPT at either end" ||
		fail "damaged .zst onto $L: exit $rc: $(cat "$T/e")"
	flip "$ZST" $((ZSIZE - 2))
fi

# ---- rootfs tarballs ----
RF=$T/rootfs
mkdir -p "$RF/etc" "$RF/usr/bin" "$RF/var/secret" "$RF/boot/efi"
echo "rootfs-node" >"$RF/etc/hostname"
printf '#!/bin/sh\necho hi\n' >"$RF/usr/bin/hi"
chmod 4755 "$RF/usr/bin/hi"
echo secret >"$RF/var/secret/key"
chmod 0600 "$RF/var/secret/key"
chmod 0750 "$RF/var/secret"
chown 1234:2345 "$RF/var/secret/key"
ln -s usr/bin "$RF/bin"
ln "$RF/etc/hostname" "$RF/etc/hostname.hard"
head -c 2000000 /dev/urandom >"$RF/usr/bin/blob"
tar -C "$RF" --numeric-owner -cf - . | zstd -q -o "$T/src/root.tar.zst"
register --name rootfs --version 1 "$T/src/root.tar.zst" || fail "register root.tar.zst"

# hostile tarballs
HPID=$(python3 - "$T/src" "$T/outside" <<'EOF2'
import io, os, sys, tarfile
src, outside = sys.argv[1], sys.argv[2]
def add(t, name, data=b"x\n", **kw):
    i = tarfile.TarInfo(name); i.size = len(data); i.mode = 0o644
    for k, v in kw.items(): setattr(i, k, v)
    t.addfile(i, io.BytesIO(data) if i.type == tarfile.REGTYPE else None)
def mk(fname, entries):
    with tarfile.open(os.path.join(src, fname), "w", format=tarfile.PAX_FORMAT) as t:
        add(t, "etc/ok", b"fine\n")
        for e in entries: add(t, *e[:2], **(e[2] if len(e) > 2 else {}))
pid = str(os.getpid())
mk("dotdot.tar", [("../../../../../../../../../tmp/rbt-escape-" + pid, b"pwned\n")])
mk("abs.tar", [("/tmp/rbt-abs-" + pid, b"pwned\n")])
mk("symlink.tar", [("evil", b"", {"type": tarfile.SYMTYPE, "linkname": outside, "size": 0}),
                   ("evil/pwned", b"pwned\n")])
print(pid)
EOF2
)
for h in dotdot abs symlink; do
	zstd -q "$T/src/$h.tar" -o "$T/src/$h.tar.zst" && register --name $h --version 1 "$T/src/$h.tar.zst" ||
		fail "register $h"
done
# the same tarball with a byte flipped at the end, after registration
cp "$T/src/root.tar.zst" "$T/src/broken.tar.zst"
register --name broken --version 1 "$T/src/broken.tar.zst" || fail "register broken"
BS=$(stat -c %s "$R/plain/broken.tar.zst")
flip "$R/plain/broken.tar.zst" $((BS - 2))

newloop "$T/rootfs.img" 600 || fail "losetup"
L2=$LOOP
if [ -n "$L2" ]; then
	plain --name rootfs --version 1 --target "$L2" >"$T/s" 2>"$T/e"
	rc=$?
	[ $rc -eq 0 ] && pass "rootfs onto $L2: $(cat "$T/s")" || fail "rootfs: exit $rc: $(cat "$T/e")"
	layout=$(sfdisk -d "$L2" 2>/dev/null)
	echo "$layout" | grep -q 'label: gpt' &&
		echo "$layout" | grep -q 'start=        2048, size=      524288, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B.*name="esp"' &&
		echo "$layout" | grep -q 'start=      526336,.*type=0FC63DAF-8483-4772-8E79-3D69D8477DE4.*name="root"' &&
		pass "GPT: ESP 256 MiB at 1 MiB, root after it" || fail "layout: $layout"
	partx -u "$L2" 2>/dev/null || partx -a "$L2" 2>/dev/null
	P1=${L2}p1
	P2=${L2}p2
	[ "$(blkid -o value -s TYPE "$P1" 2>/dev/null)" = vfat ] && pass "ESP is vfat" ||
		fail "ESP type: $(blkid "$P1" 2>&1)"
	if mount -o ro "$P2" "$T/mnt" 2>"$T/e"; then
		M=$T/mnt
		[ "$(cat "$M/etc/hostname")" = rootfs-node ] && cmp -s "$RF/usr/bin/blob" "$M/usr/bin/blob" &&
			pass "root: files and contents" || fail "root: contents differ"
		[ "$(stat -c %a "$M/usr/bin/hi")" = 4755 ] && [ "$(stat -c %a "$M/var/secret")" = 750 ] &&
			[ "$(stat -c %a "$M/var/secret/key")" = 600 ] &&
			[ "$(stat -c %u:%g "$M/var/secret/key")" = 1234:2345 ] &&
			pass "root: modes (setuid, 0750, 0600) and numeric owner kept" ||
			fail "root: modes/owner: $(stat -c '%n %a %u:%g' "$M/usr/bin/hi" "$M/var/secret" "$M/var/secret/key")"
		[ "$(readlink "$M/bin")" = usr/bin ] &&
			[ "$(stat -c %i "$M/etc/hostname")" = "$(stat -c %i "$M/etc/hostname.hard")" ] &&
			pass "root: symlink and hard link" || fail "root: symlink/hard link"
		[ "$(blkid -o value -s TYPE "$P2")" = ext4 ] && pass "root is ext4" || fail "root type"
		umount "$T/mnt"
	else
		fail "mount $P2: $(cat "$T/e")"
	fi

	# the same tarball with an xfs root (xfsprogs, in scripts/install-deps)
	if command -v mkfs.xfs >/dev/null; then
		plain --name rootfs --version 1 --fstype xfs --target "$L2" >"$T/s" 2>"$T/e"
		rc=$?
		partx -u "$L2" 2>/dev/null || partx -a "$L2" 2>/dev/null
		if [ $rc -eq 0 ] && [ "$(blkid -o value -s TYPE "$P2")" = xfs ] &&
			mount -o ro "$P2" "$T/mnt" 2>"$T/e"; then
			[ "$(cat "$T/mnt/etc/hostname")" = rootfs-node ] &&
				cmp -s "$RF/usr/bin/blob" "$T/mnt/usr/bin/blob" &&
				pass "rootfs with --fstype xfs: xfs root with the files" ||
				fail "xfs root: contents differ"
			umount "$T/mnt"
		else
			fail "rootfs --fstype xfs: exit $rc: $(cat "$T/e") type $(blkid -o value -s TYPE "$P2")"
		fi
	else
		echo "skip: mkfs.xfs not installed (xfsprogs): --fstype xfs not tested"
	fi

	# a missing tool is found before the disk is touched: its table stays
	before=$(sha256sum <"$L2")
	PATH=/nonexistent "$AGENT" plain --repo "$URL" --pub "$T/site.pub" -q --name rootfs \
		--version 1 --target "$L2" >/dev/null 2>"$T/e"
	rc=$?
	[ $rc -eq 1 ] && grep -q "sfdisk not found in PATH" "$T/e" && [ "$(sha256sum <"$L2")" = "$before" ] &&
		pass "no sfdisk in PATH: refused, disk unchanged" || fail "no sfdisk: exit $rc: $(cat "$T/e")"

	for h in dotdot abs symlink broken; do
		plain --name $h --version 1 --target "$L2" >/dev/null 2>"$T/e"
		rc=$?
		escaped=$(ls "/tmp/rbt-escape-$HPID" "/tmp/rbt-abs-$HPID" "$T/outside/pwned" 2>/dev/null)
		want="refused"
		[ $h = broken ] && want="sha256 mismatch"
		[ $rc -eq 1 ] && grep -q "$want" "$T/e" && [ -z "$escaped" ] && no_table "$L2" &&
			! grep -q rackboot-rootfs /proc/mounts &&
			pass "$h tarball: exit 1, nothing outside, no table, no mount left: $(cat "$T/e")" ||
			fail "$h tarball: exit $rc, escaped: $escaped: $(cat "$T/e")"
	done
	rm -f "/tmp/rbt-escape-$HPID" "/tmp/rbt-abs-$HPID"
fi
truncate -s 1G "$T/file.img"
plain --name rootfs --version 1 --target "$T/file.img" >/dev/null 2>"$T/e"
rc=$?
[ $rc -eq 1 ] && grep -q "needs a block device" "$T/e" && [ "$(du -k "$T/file.img" | cut -f1)" -eq 0 ] &&
	pass "rootfs onto a plain file: refused: $(cat "$T/e")" || fail "rootfs on file: exit $rc: $(cat "$T/e")"

rb_finish
