#!/bin/bash
# rackboot-image end to end on a generated GPT disk (ESP + ext4 root), as an
# operator uses it: build, verify, extract and compare byte for byte; a v2
# with a few files changed shares most chunks (diff, ls); tampered pack,
# tampered manifest and a wrong key are caught; qcow2 input is refused with
# the conversion hint and nothing is written; a build killed mid-way
# leaves a valid repository and gc removes its orphans; capture from a loop
# device gives the same chunks as build from the file (skipped without
# root/losetup). No loop device is needed for the rest: partition images
# are made as files and dd'ed into the disk at their offsets.
set -u

. "$(dirname "$0")/lib.sh"
BIN=$RB_BUILD/imager/rackboot-image
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
rb_need_cmd sfdisk mkfs.vfat mkfs.ext4 python3 cmp

rb_setup imager
T=$RB_TMP
LOOP=
BGPID=
cleanup() {
	[ -n "$BGPID" ] && kill -9 "$BGPID" 2>/dev/null
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
}
RB_ON_EXIT=cleanup

R=$T/repo
img() { "$BIN" "$@"; }

# ---- a GPT disk: ESP (FAT) at 1 MiB, ext4 root after it ----
. "$(cd "$(dirname "$0")" && pwd)/disk.sh"

mkroot() { # mkroot DIR VARIANT
	mkdir -p "$1/etc" "$1/usr/share" "$1/var/lib"
	cp -a /usr/include "$1/usr/share/include" 2>/dev/null ||
		cp -a /usr/share/doc "$1/usr/share/include"
	echo "rackboot test $2" >"$1/etc/hostname"
	python3 - "$1" "$2" <<'EOF'
import random, sys, os
root, variant = sys.argv[1], sys.argv[2]
rnd = random.Random(42)
for i in range(40):  # 40 files of 64..512 KiB, the "packages"
    data = bytes(rnd.getrandbits(8) for _ in range(1024)) * rnd.randint(64, 512)
    if variant == "2" and i in (3, 17, 29):  # v2: three files changed
        data = data[:-5000] + b"updated" * 700
    with open(os.path.join(root, "var/lib", "pkg%02d.bin" % i), "wb") as f:
        f.write(data)
EOF
}

mkdisk() { # mkdisk OUT VARIANT
	mkroot "$T/root$2" "$2"
	gpt_disk "$1" "$T/root$2" "$T"
}

mkdisk "$T/disk1.img" 1 || { echo "FAIL: could not make the test disk"; exit 1; }
mkdisk "$T/disk2.img" 2 || { echo "FAIL: could not make the v2 disk"; exit 1; }
img keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
img keygen "$T/other" >/dev/null || { echo "FAIL: keygen 2"; exit 1; }

# ---- build, verify, extract, compare ----
if img build --repo "$R" --key "$T/site.key" --name node --version 1 "$T/disk1.img" >"$T/b1.out"; then
	pass "build v1: $(cat "$T/b1.out")"
else
	fail "build v1"
fi
grep -q '"table":"gpt"' "$R/images/node/1.manifest.json" &&
	grep -q '"name":"root"' "$R/images/node/1.manifest.json" &&
	pass "manifest lists the GPT partitions" || fail "manifest partition summary"
img verify --repo "$R" --pub "$T/site.pub" >"$T/v.out" 2>&1 && pass "verify v1" ||
	{ fail "verify v1"; cat "$T/v.out"; }
img extract --repo "$R" --pub "$T/site.pub" node 1 "$T/out1.img" -q >/dev/null &&
	cmp "$T/disk1.img" "$T/out1.img" && pass "extract v1 is byte-identical to the source" ||
	fail "extract v1 differs"
# The repository stores data, not the disk: zero ranges are not stored.
stored=$(du -sb "$R/packs" | cut -f1)
[ "$stored" -lt $((DISK_SECTORS * 512 / 2)) ] && pass "packs hold $stored bytes for a 256 MiB disk" ||
	fail "packs hold $stored bytes"

# ---- v2 shares most chunks ----
img build --repo "$R" --key "$T/site.key" --name node --version 2 "$T/disk2.img" >"$T/b2.out" &&
	pass "build v2: $(cat "$T/b2.out")" || fail "build v2"
img diff --repo "$R" node 1 2 >"$T/diff.out" || fail "diff exit status"
pct=$(awk '$1=="fetch_percent"{print $2}' "$T/diff.out")
changed=$(awk '$1=="chunks_changed"{print $2}' "$T/diff.out")
if [ -n "$pct" ] && [ "$changed" -gt 0 ] && awk -v p="$pct" 'BEGIN{exit !(p < 20)}'; then
	pass "diff 1->2: $changed chunks changed, fetch $pct% of a full deploy"
else
	fail "diff 1->2: fetch ${pct:-?}% (changed ${changed:-?})"; cat "$T/diff.out"
fi
img ls --repo "$R" >"$T/ls.out" || fail "ls exit status"
shared=$(awk '$1=="node" && $2=="2"{print $7}' "$T/ls.out")
[ "${shared:-0}" -gt 0 ] && pass "ls: v2 shares $shared chunks with v1" ||
	{ fail "ls shows no shared chunks"; cat "$T/ls.out"; }
img extract --repo "$R" --pub "$T/site.pub" node 2 "$T/out2.img" -q >/dev/null &&
	cmp "$T/disk2.img" "$T/out2.img" && pass "extract v2 is byte-identical" || fail "extract v2"

# ---- tampering ----
read -r PACK POFF CIDX < <(python3 - "$R/images/node/1.manifest.json" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))
c = m["chunks"][len(m["chunks"]) // 2]
print(m["packs"][c[3]]["id"], c[4] + c[5] // 2, len(m["chunks"]) // 2)
EOF
)
flip() { # flip FILE OFFSET
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
f.write(bytes([b[0] ^ 0x55])); f.close()' "$1" "$2"
}
flip "$R/packs/$PACK.pack" "$POFF"
if img verify --repo "$R" --pub "$T/site.pub" node 1 >"$T/t.out" 2>&1; then
	fail "verify passed with a flipped pack byte"
elif grep -q "chunk $CIDX " "$T/t.out"; then
	pass "tampered pack: $(grep -m1 "chunk $CIDX " "$T/t.out")"
else
	fail "tampered pack not reported as chunk $CIDX"; cat "$T/t.out"
fi
img extract --repo "$R" --pub "$T/site.pub" node 1 "$T/bad.img" -q >/dev/null 2>&1 &&
	fail "extract wrote a tampered chunk" || pass "extract refuses the tampered chunk"
flip "$R/packs/$PACK.pack" "$POFF"
M=$R/images/node/1.manifest.json
cp "$M" "$T/m.save"
sed -i 's/"created":1/"created":2/' "$M"
if cmp -s "$M" "$T/m.save"; then
	fail "could not tamper the manifest"
elif img verify --repo "$R" --pub "$T/site.pub" node 1 >"$T/t.out" 2>&1; then
	fail "verify passed a modified manifest"
elif grep -q "signature does not verify" "$T/t.out"; then
	pass "tampered manifest: signature fails"
else
	fail "tampered manifest: wrong message"; cat "$T/t.out"
fi
cp "$T/m.save" "$M"
img verify --repo "$R" --pub "$T/other.pub" node 1 >"$T/t.out" 2>&1 &&
	fail "verify passed with the wrong public key" ||
	{ grep -q "signature does not verify" "$T/t.out" && pass "wrong public key refused"; } ||
	fail "wrong key: wrong message"
img verify --repo "$R" --pub "$T/other.pub" --pub "$T/site.pub" >/dev/null 2>&1 &&
	pass "verify passes when one of several trusted keys matches" || fail "verify with 2 keys"

# ---- foreign formats are refused, nothing written ----
snapshot() { (cd "$R" && find . -type f -print0 | sort -z | xargs -0 sha256sum) 2>/dev/null; }
before=$(snapshot)
if command -v qemu-img >/dev/null; then
	qemu-img create -q -f qcow2 "$T/vm.qcow2" 64M
	head -c 512 "$T/vm.qcow2" >"$T/fake.img"
	truncate -s 1M "$T/fake.img"
	for f in "$T/vm.qcow2" "$T/fake.img"; do
		img build --repo "$R" --key "$T/site.key" --name q --version 1 "$f" >"$T/q.out" 2>&1
		rc=$?
		[ $rc -eq 1 ] && grep -q "qemu-img convert" "$T/q.out" &&
			pass "build refuses $(basename "$f"): $(cat "$T/q.out")" ||
			{ fail "build of $(basename "$f") rc=$rc"; cat "$T/q.out"; }
		img register --repo "$R" --key "$T/site.key" --name q --version 1 "$f" >"$T/q.out" 2>&1
		rc=$?
		[ $rc -eq 1 ] && grep -q "qemu-img convert" "$T/q.out" &&
			pass "register refuses $(basename "$f")" ||
			{ fail "register of $(basename "$f") rc=$rc"; cat "$T/q.out"; }
	done
	img build --repo "$T/fresh" --key "$T/site.key" --name q --version 1 "$T/vm.qcow2" \
		>/dev/null 2>&1
	[ ! -e "$T/fresh" ] && pass "refused build creates no repository" || fail "refused build wrote"
	[ "$before" = "$(snapshot)" ] && pass "repository unchanged by refused inputs" ||
		fail "repository changed by refused inputs"
else
	echo "SKIP: qemu-img not installed (qcow2 refusal)"
fi

# ---- register a plain image ----
zstd -q -3 -c "$T/disk1.img" >"$T/plain1.img.zst" &&
	img register --repo "$R" --key "$T/site.key" --name plainnode --version 1 \
		"$T/plain1.img.zst" >/dev/null &&
	python3 - "$R" "$T/plain1.img.zst" <<'EOF' && pass "register: catalogue lists raw.zst with its sha256" || fail "register"
import json, sys, hashlib
r, f = sys.argv[1], sys.argv[2]
c = json.load(open(r + "/catalog.json"))
p = [e for e in c["plain"] if e["name"] == "plainnode"][0]
assert p["kind"] == "raw.zst", p
assert p["sha256"] == hashlib.sha256(open(f, "rb").read()).hexdigest()
assert open(r + "/" + p["path"], "rb").read() == open(f, "rb").read()
EOF
# A disk image whose first MiB is zeros (libarchive's tar reader took it
# for an empty tar archive and register said it does not decompress)
truncate -s 4M "$T/zerohead.img"
head -c 1048576 /dev/urandom | dd of="$T/zerohead.img" bs=1M seek=1 conv=notrunc status=none
zstd -q -c "$T/zerohead.img" >"$T/zerohead.img.zst"
img register --repo "$R" --key "$T/site.key" --name zerohead --version 1 \
	"$T/zerohead.img.zst" >"$T/zh.out" 2>&1 &&
	python3 -c 'import json, sys; c = json.load(open(sys.argv[1])); assert [e["kind"] for e in c["plain"] if e["name"] == "zerohead"] == ["raw.zst"]' \
		"$R/catalog.json" && pass "register: an image starting with zeros is raw.zst" ||
	{ fail "register of an image starting with zeros"; cat "$T/zh.out"; }
img verify --repo "$R" --pub "$T/site.pub" >/dev/null 2>&1 && pass "catalogue signature valid" ||
	fail "catalogue does not verify after register"

# ---- a build killed mid-way leaves the repository valid; gc cleans it ----
head -c 48M /dev/urandom >"$T/big.img"
packs_before=$(ls "$R/packs" | wc -l)
"$BIN" build --repo "$R" --key "$T/site.key" --name big --version 1 --level 19 --threads 1 \
	--pack-size 1M -q "$T/big.img" >/dev/null 2>&1 & # not via img(): $! must be the tool
BGPID=$!
i=0
while [ $i -lt 600 ] && [ "$(ls "$R/packs" | wc -l)" -lt $((packs_before + 3)) ]; do
	sleep 0.05
	i=$((i + 1))
done
kill -9 "$BGPID" 2>/dev/null
wait "$BGPID" 2>/dev/null
BGPID=
orphans=$(($(ls "$R/packs" | wc -l) - packs_before))
sleep 1 # a survivor would go on writing packs and publish
[ ! -e "$R/images/big/1.manifest.json" ] && [ "$orphans" -gt 0 ] &&
	[ "$(ls "$R/packs" | wc -l)" -eq $((packs_before + orphans)) ] &&
	pass "killed build: no manifest, $orphans orphan packs" ||
	fail "killed build: manifest present or no packs written ($orphans)"
img verify --repo "$R" --pub "$T/site.pub" >/dev/null 2>&1 && pass "repository valid after the kill" ||
	fail "repository invalid after the kill"
img gc --repo "$R" >"$T/gc.out" && grep -q "removed 0 packs" "$T/gc.out" &&
	pass "gc with the default age keeps the young orphans" || { fail "gc default age"; cat "$T/gc.out"; }
img gc --repo "$R" --min-age 0 >"$T/gc.out" &&
	[ "$(ls "$R/packs" | wc -l)" -eq "$packs_before" ] && [ -z "$(ls "$R/.tmp")" ] &&
	pass "gc --min-age 0: $(cat "$T/gc.out")" || { fail "gc left orphans"; cat "$T/gc.out"; }
img verify --repo "$R" --pub "$T/site.pub" >/dev/null 2>&1 && pass "verify after gc" ||
	fail "gc removed a live pack"

# ---- rm + gc frees what only v1 used; v2 still intact ----
img rm --repo "$R" --key "$T/site.key" node 1 >/dev/null && img gc --repo "$R" --min-age 0 >/dev/null &&
	img verify --repo "$R" --pub "$T/site.pub" >/dev/null 2>&1 &&
	img extract --repo "$R" --pub "$T/site.pub" node 2 "$T/out2b.img" -q >/dev/null &&
	cmp "$T/disk2.img" "$T/out2b.img" && pass "rm v1 + gc: v2 still complete" || fail "rm + gc"
img build --repo "$R" --key "$T/site.key" --name node --version 1 "$T/disk1.img" -q >/dev/null &&
	pass "rebuild v1 after rm" || fail "rebuild v1"

# ---- capture from a loop device ----
if [ "$(id -u)" -ne 0 ] || ! command -v losetup >/dev/null ||
	! LOOP=$(losetup -f --show -r "$T/disk1.img" 2>/dev/null); then
	LOOP=
	echo "SKIP: capture from a loop device (needs root and losetup)"
else
	img capture --repo "$R" --key "$T/site.key" --name node --version cap -q "$LOOP" >/dev/null &&
		python3 - "$R/images/node/1.manifest.json" "$R/images/node/cap.manifest.json" <<'EOF' && pass "capture from $LOOP: same chunks as build" || fail "capture differs from build"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:3])
key = lambda m: [(c[0], c[1], c[2]) for c in m["chunks"]]
assert key(a) == key(b) and a["source_sha256"] == b["source_sha256"] and a["disk_size"] == b["disk_size"]
EOF
fi

# ---- package archives: build and index ----
mkdir -p "$T/pkg/tree/usr/bin"
echo 'echo hello' >"$T/pkg/tree/usr/bin/hello"
printf '#!/bin/sh\necho configured\n' >"$T/pkg/postinst.sh"
echo '{"name":"hello","version":"1.0-1","arch":"amd64","depends":["libc6","hello-data (>= 1.0~rc1)"],"conflicts":["hello-old"],"scripts":{"postinst":"postinst.sh"}}' >"$T/pkg/meta.json"
if img pkg build "$T/pkg/tree" --meta "$T/pkg/meta.json" --out "$T/hello.tar.zst" >/dev/null &&
	[ "$(tar --zstd -tf "$T/hello.tar.zst" | head -1)" = ".rackboot/meta.json" ] &&
	tar --zstd -tf "$T/hello.tar.zst" | grep -qx "usr/bin/hello" &&
	tar --zstd -xOf "$T/hello.tar.zst" .rackboot/scripts/postinst | grep -q configured; then
	pass "pkg build: meta.json first, scripts and payload inside"
else
	fail "pkg build"
fi
echo '{"name":"../x","version":"1","arch":"amd64"}' >"$T/pkg/bad.json"
img pkg build "$T/pkg/tree" --meta "$T/pkg/bad.json" --out "$T/bad.tar.zst" >/dev/null 2>&1 &&
	fail "pkg build accepted name ../x" || pass "pkg build refuses an unsafe name"
echo '{"name":"x","version":"1","arch":"amd64","depends":["libc6 (>=2)"]}' >"$T/pkg/baddep.json"
out=$(img pkg build "$T/pkg/tree" --meta "$T/pkg/baddep.json" --out "$T/bad.tar.zst" 2>&1) &&
	fail "pkg build accepted depends \"libc6 (>=2)\"" ||
	{ echo "$out" | grep -q 'depends\[0\]' && pass "pkg build refuses a malformed depends"; } ||
	fail "pkg build: no message naming depends[0]: $out"
img pkg index --repo "$R" --key "$T/site.key" "$T/hello.tar.zst" >/dev/null &&
	cmp -s "$T/hello.tar.zst" "$R/pkgs/hello_1.0-1_amd64.tar.zst" &&
	grep -q '"packages":\[{"name":"hello","version":"1.0-1","arch":"amd64"' "$R/catalog.json" &&
	grep -qF '"depends":["libc6","hello-data (>= 1.0~rc1)"],"conflicts":["hello-old"]}' "$R/catalog.json" &&
	img verify --repo "$R" --pub "$T/site.pub" >/dev/null 2>&1 &&
	pass "pkg index: package in pkgs/, listed with its depends and conflicts in the signed catalogue" || fail "pkg index"

# ---- usage errors exit 2 ----
img build --repo "$R" >/dev/null 2>&1
[ $? -eq 2 ] && pass "usage error exits 2" || fail "usage exit code"

rb_finish
