#!/bin/bash
# Format confusion: files that are not raw disks, listed in the signed
# catalogue as plain raw images (a catalogue signed by the site key, as an
# operator's mistake or a tool other than rackboot-image would make it;
# `rackboot-image register` itself refuses them, checked too), served by
# the real rackbootd. `rackboot-agent plain` must refuse each before
# writing anything: exit 1, a message naming the format, the target's
# SHA-256 the same before and after (a file that held a GPT disk, and,
# with root, a loop device), and a target path that did not exist is not
# created. The corpus, each checked with qemu-img's own format probe
# (qemu-img info) so that the test knows what a hypervisor would make of
# it:
#  - qcow2 with a backing file (/etc/passwd), as raw and inside raw.zst;
#  - a VMDK text descriptor with an extent pointing at /etc/passwd, as
#    qemu-img writes it ("# Disk DescriptorFile") and hand-written with
#    another first comment (which QEMU still opens as a VMDK);
#  - a sparse VMDK (KDMV);
#  - a raw GPT disk whose first bytes are a qcow2 magic;
#  - a raw.gz whose data is still zstd-compressed (the agent decompresses
#    once: it would write compressed bytes onto the disk).
# A good raw disk in the same catalogue is written, byte-identical (the
# harness can succeed). Kills only the rackbootd it started.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
export PATH=$PATH:/usr/sbin:/sbin
rb_need_cmd qemu-img sfdisk python3 cmp curl zstd gzip sha256sum

rb_setup formats
T=$RB_TMP
LOOP=
cleanup() {
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
}
RB_ON_EXIT=cleanup

R=$T/repo
C=$T/corpus
mkdir -p "$R" "$C" "$T/boot" "$T/state"
"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }

# ---- the good disk: 16 MiB GPT with random data ----
truncate -s 16M "$T/good.img"
printf 'label: gpt\nstart=2048, type=L, name="root"\n' | sfdisk -q "$T/good.img" >/dev/null ||
	{ echo "FAIL: sfdisk"; exit 1; }
head -c $((4 * 1024 * 1024)) /dev/urandom | dd of="$T/good.img" bs=1M seek=4 conv=notrunc status=none
for r in "$R" "$T/scratch"; do
	"$IMG" register --repo "$r" --key "$T/site.key" --name good --version 1 "$T/good.img" \
		>/dev/null || { echo "FAIL: register good.img in $r"; exit 1; }
done

# ---- the corpus: name kind file expected-words ----
qemu-img create -q -f qcow2 -u -b /etc/passwd -F raw "$C/backing.qcow2" 64M ||
	{ echo "FAIL: qemu-img create qcow2"; exit 1; }
zstd -q -c "$C/backing.qcow2" >"$C/backing.qcow2.zst"
qemu-img create -q -f vmdk -o subformat=monolithicFlat "$C/flat.vmdk" 16M ||
	{ echo "FAIL: qemu-img create vmdk"; exit 1; }
sed -i 's|"flat-flat.vmdk"|"/etc/passwd"|' "$C/flat.vmdk"
rm -f "$C/flat-flat.vmdk"
printf '# rackboot test: nothing to see\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\n\n# Extent description\nRW 32768 FLAT "/etc/passwd" 0\n' \
	>"$C/hidden.vmdk"
qemu-img create -q -f vmdk "$C/sparse.vmdk" 16M || { echo "FAIL: qemu-img create sparse vmdk"; exit 1; }
cp "$T/good.img" "$C/magic.img"
printf 'QFI\373\0\0\0\3' | dd of="$C/magic.img" conv=notrunc status=none # qcow2 v3
zstd -q -c "$T/good.img" | gzip -1 -c >"$C/double.img.gz"
CORPUS="qcow2-backing:raw:backing.qcow2:qcow2
qcow2-backing-zst:raw.zst:backing.qcow2.zst:qcow2
vmdk-descriptor:raw:flat.vmdk:VMDK
vmdk-hidden-descriptor:raw:hidden.vmdk:VMDK
vmdk-sparse:raw:sparse.vmdk:VMDK
raw-with-qcow2-magic:raw:magic.img:qcow2
zstd-inside-gzip:raw.gz:double.img.gz:zstd"

# what QEMU's format probe makes of each (the reason it matters)
while IFS=: read -r name kind file words; do
	case $file in
	*.zst) zstd -q -d -c "$C/$file" >"$T/probe" ;;
	*.gz) gzip -d -c "$C/$file" >"$T/probe" ;;
	*) cp "$C/$file" "$T/probe" ;;
	esac
	probe=$(qemu-img info --output=json "$T/probe" 2>&1)
	fmt=$(echo "$probe" | python3 -c 'import json, sys
try: print(json.load(sys.stdin)["format"])
except Exception: print("?")')
	case $name in
	zstd-inside-gzip) want=raw ;; # QEMU sees raw bytes: compressed data on a disk
	# probed as qcow2, whose driver then fails on the header; as raw it opens
	raw-with-qcow2-magic) want='?' && qemu-img info -f raw "$T/probe" >/dev/null 2>&1 || want='!' ;;
	*) want=${words,,} ;;
	esac
	if [ "$fmt" = "$want" ]; then
		if [ "$fmt" = "?" ]; then
			pass "corpus $name: qemu-img does not take it for raw (\"$(echo "$probe" | head -1)\"), opens it with -f raw"
		else
			pass "corpus $name: qemu-img probes it as $fmt"
		fi
	else
		fail "corpus $name: qemu-img says format $fmt, expected $want: $(echo "$probe" | head -3 | tr '\n' ' ')"
	fi
	if "$IMG" register --repo "$T/scratch" --key "$T/site.key" --name x --version 1 "$C/$file" \
		>/dev/null 2>"$T/reg.err"; then
		fail "corpus $name: rackboot-image register took it"
	else
		pass "corpus $name: rackboot-image register refuses it: $(cat "$T/reg.err")"
	fi
done <<<"$CORPUS"

# ---- the catalogue lists them as plain images, signed with the site key ----
while IFS=: read -r name kind file words; do
	cp "$C/$file" "$R/plain/$file"
done <<<"$CORPUS"
python3 - "$R" <<EOF || { echo "FAIL: editing the catalogue"; exit 1; }
import hashlib, json, os, sys
r = sys.argv[1]
cat = json.load(open(os.path.join(r, "catalog.json")))
for line in """$CORPUS""".splitlines():
    name, kind, f, _ = line.split(":")
    data = open(os.path.join(r, "plain", f), "rb").read()
    cat["plain"].append({"name": name, "version": "1", "path": "plain/" + f, "kind": kind,
                         "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
open(os.path.join(r, "catalog.json"), "w").write(json.dumps(cat, separators=(",", ":")))
EOF
rm -f "$R/catalog.json.sig"
"$IMG" sign --key "$T/site.key" "$R/catalog.json" >/dev/null && [ -s "$R/catalog.json.sig" ] ||
	{ echo "FAIL: rackboot-image sign catalog.json"; exit 1; }

rb_repo_conf "$R"
PORT=$RB_PORT
rb_start_server "http://127.0.0.1:$PORT/boot/" "$SRV" -c "$T/rackbootd.conf"
plain() {
	timeout 120 "$AGENT" plain --repo "http://127.0.0.1:$PORT/repo" --pub "$T/site.pub" -q "$@"
}

# the good one: the catalogue and the harness work
if plain --name good --version 1 --target "$T/good.out" >"$T/s0" 2>"$T/e0" &&
	cmp -s "$T/good.img" "$T/good.out"; then
	pass "good raw disk from the edited catalogue: byte-identical"
else
	fail "good raw disk: $(cat "$T/s0" "$T/e0")"
fi

# ---- each hostile entry onto a file that holds a GPT disk, and onto a
# path that does not exist ----
while IFS=: read -r name kind file words; do
	cp "$T/good.img" "$T/target.img"
	before=$(sha256sum <"$T/target.img")
	plain --name "$name" --version 1 --target "$T/target.img" >"$T/s1" 2>"$T/e1"
	rc=$?
	after=$(sha256sum <"$T/target.img")
	if [ $rc -eq 1 ] && grep -q "$words" "$T/e1" && grep -q "nothing was written" "$T/e1" &&
		[ "$before" = "$after" ]; then
		pass "$name ($kind): refused, target unchanged: $(cat "$T/e1")"
	else
		fail "$name ($kind): exit $rc, target changed: $([ "$before" = "$after" ] && echo no || echo YES): $(cat "$T/s1" "$T/e1")"
	fi
	plain --name "$name" --version 1 --target "$T/new-$name.img" >/dev/null 2>&1
	[ ! -e "$T/new-$name.img" ] && pass "$name: no target file created" ||
		fail "$name: $T/new-$name.img was created ($(stat -c %s "$T/new-$name.img") bytes)"
done <<<"$CORPUS"

# ---- a block device: the whole device hashed before and after ----
# 16 MiB of GPT disk, then 4 MiB of random data: the device's last MiB is
# not zero (where a failed write would zero the old backup GPT)
if [ "$(id -u)" -eq 0 ] && cp "$T/good.img" "$T/loop.bin" &&
	head -c $((4 * 1024 * 1024)) /dev/urandom >>"$T/loop.bin" && LOOP=$(losetup -f --show "$T/loop.bin" 2>/dev/null) &&
	[ -b "$LOOP" ]; then
	before=$(sha256sum <"$LOOP")
	for name in qcow2-backing vmdk-hidden-descriptor zstd-inside-gzip; do
		plain --name "$name" --version 1 --target "$LOOP" >"$T/s2" 2>"$T/e2"
		rc=$?
		after=$(sha256sum <"$LOOP")
		if [ $rc -eq 1 ] && [ "$before" = "$after" ]; then
			pass "$name onto $LOOP: refused, every byte of the device unchanged"
		else
			fail "$name onto $LOOP: exit $rc, device changed: $([ "$before" = "$after" ] && echo no || echo YES): $(cat "$T/e2")"
		fi
	done
	losetup -d "$LOOP"
	LOOP=
else
	LOOP=
	echo "skipped: the loop device part (needs root and a free loop device)"
fi

rb_finish
