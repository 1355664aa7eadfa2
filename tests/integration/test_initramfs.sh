#!/bin/bash
# rackboot-image initramfs, checked with tools no one here wrote: cpio
# lists and extracts the archive, ldd (the dynamic loader itself) is the
# oracle for the libraries of the agent and of the rootfs tools (sfdisk,
# mkfs.vfat, mkfs.ext4), modinfo (kmod) for module dependencies, depmod
# writes the modules.dep of a second kernel tree whose modules are
# xz/zstd/gzip compressed. The archive is unpacked and, as root, chrooted
# into: after /init's `busybox --install -s`, with /init's PATH, the tools
# are the real ones and make a GPT, FAT32 and ext4 on a plain file that the
# host's sfdisk, fsck.vfat and e2fsck accept. Then: two builds are
# byte-identical; bad inputs (missing or bad key, an agent or a --tool that
# is not ELF or missing, a module asked for that the kernel lacks, a library
# no directory has) fail naming what is wrong and leave no output; and a
# QEMU (TCG) boot of the Debian kernel
# with the image reaches `rackboot-agent run`, shows the failure banner when
# the server cannot be reached, and reboots by itself (QEMU -no-reboot exits).
# The QEMU guest uses user-mode networking with restrict=on: DHCP from
# QEMU, no way out of the VM. Exit 77 when the kernel or QEMU is missing.
set -u

. "$(dirname "$0")/lib.sh"
BIN=$RB_BUILD/imager/rackboot-image
AGENT=$RB_BUILD/agent/rackboot-agent
RB_KERNEL_DIR=${RB_KERNEL_DIR:-/var/cache/rackboot/kernel}
[ -x "$BIN" ] && [ -x "$AGENT" ] || { echo "SKIP: rackboot-image/rackboot-agent not built"; exit 77; }
for t in cpio gzip zstd xz ldd modinfo depmod cmp; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed (scripts/install-deps)"; exit 77; }
done
[ -x /bin/busybox ] || { echo "SKIP: /bin/busybox missing (busybox-static)"; exit 77; }
VMLINUZ=$(ls "$RB_KERNEL_DIR"/boot/vmlinuz-* 2>/dev/null | head -n 1)
[ -n "$VMLINUZ" ] || { echo "SKIP: no kernel in $RB_KERNEL_DIR (scripts/install-deps fetches it)"; exit 77; }
KVER=${VMLINUZ##*/vmlinuz-}
KMOD=$RB_KERNEL_DIR/lib/modules/$KVER

rb_setup initramfs
T=$RB_TMP
QPID=
cleanup() {
	[ -n "$QPID" ] && kill -9 "$QPID" 2>/dev/null
}
RB_ON_EXIT=cleanup

# list ARCHIVE: the entry names, one a line (cpio from GNU cpio).
list() { case $1 in *.zst) zstd -dc "$1" ;; *) gzip -dc "$1" ;; esac | cpio -t --quiet; }
# member ARCHIVE NAME: one member's bytes on stdout.
member() { gzip -dc "$1" | cpio -i --quiet --to-stdout "$2"; }
has() { grep -qxF "$2" "$1"; }

"$BIN" keygen "$T/k1" >/dev/null && "$BIN" keygen "$T/k2" >/dev/null || { echo "FAIL: keygen"; exit 1; }

# ---- the real thing: default module set of the Debian kernel ----------
A=$T/a.gz
if "$BIN" initramfs -o "$A" --agent "$AGENT" --trust "$T/k1.pub" --trust "$T/k2.pub" \
	--kernel-dir "$RB_KERNEL_DIR" >"$T/a.out" 2>&1; then
	pass "built: $(grep '^wrote ' "$T/a.out")"
else
	fail "default build failed: $(cat "$T/a.out")"
	exit 1
fi
list "$A" >"$T/a.list" || fail "cpio cannot list the archive"
for f in init bin/busybox usr/bin/rackboot-agent etc/rackboot/udhcpc.script etc/modules \
	etc/rackboot/trusted/1.pub etc/rackboot/trusted/2.pub "lib/modules/$KVER/modules.dep"; do
	has "$T/a.list" "$f" || fail "/$f missing"
done
member "$A" usr/bin/rackboot-agent | cmp -s - "$AGENT" && pass "agent byte-identical" ||
	fail "agent in the archive differs from $AGENT"
member "$A" bin/busybox | cmp -s - /bin/busybox && pass "busybox byte-identical" || fail "busybox differs"
member "$A" etc/rackboot/trusted/1.pub | cmp -s - "$T/k1.pub" &&
	member "$A" etc/rackboot/trusted/2.pub | cmp -s - "$T/k2.pub" &&
	pass "both trusted keys at /etc/rackboot/trusted/N.pub" || fail "trusted keys differ"
member "$A" init | grep -q 'rackboot-agent run' && pass "/init runs rackboot-agent run" || fail "/init"
gzip -dc "$A" | cpio -tv --quiet 2>/dev/null | grep -qE '^c.* dev/console$' &&
	pass "/dev/console is a character device" || fail "no /dev/console node"

# The rootfs tools (what agent/rootfs.c runs), where the host has them:
# under /usr/sbin, byte-identical; one the host lacks is a warning that
# names its Debian package.
TOOLS=
for t in sfdisk:fdisk mkfs.vfat:dosfstools mkfs.ext4:e2fsprogs mkfs.xfs:xfsprogs; do
	name=${t%%:*}
	host=
	for d in /sbin /usr/sbin /usr/bin; do
		[ -f "$d/$name" ] && [ -x "$d/$name" ] && host=$d/$name && break
	done
	if [ -n "$host" ]; then
		TOOLS="$TOOLS $host"
		member "$A" "usr/sbin/$name" | cmp -s - "$host" && pass "tool /usr/sbin/$name = $host" ||
			fail "/usr/sbin/$name missing or differs from $host"
	elif grep -q "warning: $name not found in .*install the Debian package ${t#*:}" "$T/a.out" &&
		! has "$T/a.list" "usr/sbin/$name"; then
		pass "$name not on this host: a warning naming ${t#*:}"
	else
		fail "$name missing on the host but no warning: $(cat "$T/a.out")"
	fi
done
if [ -f /etc/mke2fs.conf ] && [ -x /sbin/mkfs.ext4 ]; then
	member "$A" etc/mke2fs.conf | cmp -s - /etc/mke2fs.conf && pass "/etc/mke2fs.conf with mkfs.ext4" ||
		fail "/etc/mke2fs.conf missing or differs"
fi

# Libraries: exactly what the dynamic loader resolves (ldd) for the agent
# and the tools together, at the same paths.
for p in "$AGENT" $TOOLS; do ldd "$p"; done | grep -o '/[^ ]*' | sed 's|^/||' | sort -u >"$T/ldd.want"
n_want=$(wc -l <"$T/ldd.want")
miss=$(comm -23 "$T/ldd.want" <(sort "$T/a.list"))
extra=$(grep -E '^(lib|lib64|usr/lib)/.*\.so' "$T/a.list" | grep -v '^lib/modules' | sort |
	comm -13 "$T/ldd.want" -)
if [ "$n_want" -gt 3 ] && [ -z "$miss" ] && [ -z "$extra" ]; then
	pass "the $n_want objects ldd lists for the agent and$TOOLS, no more, no fewer"
else
	fail "libraries differ from ldd: missing [$miss] extra [$extra]"
fi
member "$A" lib/x86_64-linux-gnu/libc.so.6 | cmp -s - /lib/x86_64-linux-gnu/libc.so.6 ||
	fail "libc in the archive differs from the host's"

# Modules: the virtio net/disk stack, in an order where every module comes
# after what modinfo says it depends on.
member "$A" etc/modules >"$T/a.mods"
for m in virtio_pci virtio_net virtio_blk net_failover failover virtio virtio_ring nvme ahci; do
	grep -q "/$m.ko$" "$T/a.mods" || fail "module $m not in /etc/modules"
done
order_ok=1
i=0
while read -r path; do
	i=$((i + 1))
	has "$T/a.list" "${path#/}" || { fail "$path listed in /etc/modules but not in the archive"; order_ok=0; }
	host=$KMOD/${path#/lib/modules/$KVER/}
	for d in $(modinfo -F depends "$host" | tr ',' ' '); do
		pos=$(grep -n -E "/(${d//-/[-_]}|${d//_/[-_]})\.ko$" "$T/a.mods" | head -n 1 | cut -d: -f1)
		if [ -z "$pos" ] || [ "$pos" -ge "$i" ]; then
			fail "$path needs $d, which is not loaded before it"
			order_ok=0
		fi
	done
	member "$A" "${path#/}" | cmp -s - "$host" || { fail "$path differs from $host"; order_ok=0; }
done <"$T/a.mods"
[ "$order_ok" = 1 ] && pass "$i modules, each after its modinfo dependencies, identical to the kernel's"
member "$A" etc/rackboot/kernel-version | grep -qx "$KVER" && pass "kernel version $KVER recorded" ||
	fail "etc/rackboot/kernel-version"

# ---- the tools run in the unpacked image (chroot) ----------------------
# As /init does: `busybox --install -s`, then /init's own PATH. The tools
# must be the real ones (not busybox applets) and their libraries complete:
# they make a GPT with an ESP and a root partition, FAT32 and ext4 in them,
# on a plain file; the host's sfdisk, fsck.vfat and e2fsck check the result.
if [ "$(id -u)" != 0 ] || ! command -v chroot >/dev/null; then
	echo "SKIP: the chroot run of the tools (needs root)"
elif [ ! -x /sbin/sfdisk ] || [ ! -x /sbin/mkfs.vfat ] || [ ! -x /sbin/mkfs.ext4 ] ||
	! command -v fsck.vfat >/dev/null || ! command -v e2fsck >/dev/null; then
	echo "SKIP: the chroot run of the tools (util-linux fdisk, dosfstools, e2fsprogs)"
else
	R=$T/root
	mkdir "$R"
	(cd "$R" && gzip -dc "$A" | cpio -idm --quiet --no-absolute-filenames) || fail "cpio -i"
	ipath=$(sed -n 's/^export PATH=//p' "$R/init")
	cat >"$R/tmp/mk.sh" <<EOF
export PATH=$ipath LC_ALL=C
for t in sfdisk mkfs.vfat mkfs.ext4; do
	p=\$(command -v \$t)
	[ -f "\$p" ] && [ ! -L "\$p" ] && echo "\$t=\$p" || echo "\$t is \$p, not a program"
done
sfdisk --version && mkfs.ext4 -V 2>&1 && mkfs.vfat --help 2>&1 | head -n 1 || echo "a tool failed"
truncate -s 128M /tmp/disk.img || exit 1
printf 'label: gpt\nstart=2048, size=81920, type=U, name="esp"\nstart=83968, size=163840, type=L, name="root"\n' |
	sfdisk --quiet /tmp/disk.img || exit 1
mkfs.vfat -F 32 -n ESP --offset 2048 /tmp/disk.img 40960 || exit 1
mkfs.ext4 -F -q -L root -E offset=$((83968 * 512)) /tmp/disk.img 81920k || exit 1
echo "made: gpt vfat ext4"
EOF
	if [ "$ipath" = /usr/sbin:/usr/bin:/sbin:/bin ] && grep -q '^/bin/busybox --install -s$' "$R/init" &&
		chroot "$R" /bin/busybox --install -s && chroot "$R" /bin/busybox sh /tmp/mk.sh >"$T/mk.out" 2>&1; then
		if grep -qx 'sfdisk=/usr/sbin/sfdisk' "$T/mk.out" && grep -qx 'mkfs.vfat=/usr/sbin/mkfs.vfat' "$T/mk.out" &&
			grep -qx 'mkfs.ext4=/usr/sbin/mkfs.ext4' "$T/mk.out" && grep -q '^sfdisk from util-linux' "$T/mk.out" &&
			grep -q '^mke2fs 1\.' "$T/mk.out" && grep -q '^Usage: mkfs.vfat' "$T/mk.out" &&
			! grep -q -i busybox "$T/mk.out"; then
			pass "after busybox --install -s, PATH=$ipath runs the real tools (not applets)"
		else
			fail "tools in the chroot: $(cat "$T/mk.out")"
		fi
		D=$R/tmp/disk.img
		dd if="$D" of="$T/p1" bs=512 skip=2048 count=81920 status=none
		dd if="$D" of="$T/p2" bs=512 skip=83968 count=163840 status=none
		sfdisk -d "$D" >"$T/sfd" 2>&1
		if grep -q '^label: gpt' "$T/sfd" &&
			grep -q 'start= *2048, size= *81920, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B.*name="esp"' "$T/sfd" &&
			grep -q 'start= *83968, size= *163840, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4.*name="root"' "$T/sfd" &&
			fsck.vfat -n "$T/p1" >"$T/fsck.out" 2>&1 && e2fsck -fn "$T/p2" >>"$T/fsck.out" 2>&1 &&
			[ "$(blkid -o value -s TYPE "$T/p1")" = vfat ] && [ "$(blkid -o value -s LABEL "$T/p1")" = ESP ] &&
			[ "$(blkid -o value -s TYPE "$T/p2")" = ext4 ] && [ "$(blkid -o value -s LABEL "$T/p2")" = root ]; then
			pass "in the chroot: GPT (esp, root), FAT32 ESP and ext4 root, accepted by the host's sfdisk, fsck.vfat, e2fsck"
		else
			fail "filesystems made in the chroot: $(cat "$T/mk.out" "$T/sfd" "$T/fsck.out")"
		fi
	else
		fail "running the tools in the chroot (init PATH \"$ipath\"): $(cat "$T/mk.out" 2>/dev/null)"
	fi
	rm -rf "$R" "$T/p1" "$T/p2"
fi

# ---- reproducible -------------------------------------------------------
sleep 1
"$BIN" initramfs -q -o "$T/b.gz" --agent "$AGENT" --trust "$T/k1.pub" --trust "$T/k2.pub" \
	--kernel-dir "$RB_KERNEL_DIR" >"$T/b.out" 2>&1 || fail "second build: $(cat "$T/b.out")"
cmp -s "$A" "$T/b.gz" && pass "two builds are byte-identical" || fail "two builds differ"
ls "$T" | grep -q '\.tmp\.' && fail "temporary files left behind"

# ---- zstd, --file, --no-tools, default agent next to rackboot-image -----
echo "extra file" >"$T/extra.txt"
if "$BIN" initramfs -o "$T/c.zst" --compress zstd --level 3 --trust "$T/k1.pub" \
	--kernel-dir "$RB_KERNEL_DIR" --modules virtio_net --file "$T/extra.txt:/etc/extra.txt" \
	--no-tools >"$T/c.out" 2>&1 && zstd -tq "$T/c.zst"; then
	list "$T/c.zst" >"$T/c.list"
	grep -q '/virtio_net.ko$' "$T/c.list" && has "$T/c.list" etc/extra.txt &&
		has "$T/c.list" usr/bin/rackboot-agent && ! grep -q '/ahci.ko$' "$T/c.list" &&
		pass "zstd archive with --modules virtio_net only, --file and the default agent" ||
		fail "zstd archive contents"
	if ! grep -qE '^usr/sbin/(sfdisk|mkfs)|libfdisk|libext2fs|mke2fs.conf' "$T/c.list" &&
		grep -q 'no tools' "$T/c.out" && ! grep -q 'not found in' "$T/c.out"; then
		pass "--no-tools: no sfdisk, mkfs.*, their libraries or warnings"
	else
		fail "--no-tools: $(cat "$T/c.out"; grep -E 'sbin|fdisk|ext2fs' "$T/c.list")"
	fi
else
	fail "zstd build: $(cat "$T/c.out")"
fi

# ---- firmware the modules name (modinfo firmware=), from --firmware-dir --
mkdir -p "$T/fw/tigon"
echo "tg3 firmware" >"$T/fw/tigon/tg3_tso5.bin"
echo "zstd-compressed firmware" | zstd -q >"$T/fw/tigon/tg3.bin.zst"
echo "no module names me" >"$T/fw/unrelated.bin"
if "$BIN" initramfs -o "$T/f.gz" --level 1 --trust "$T/k1.pub" --kernel-dir "$RB_KERNEL_DIR" \
	--modules tg3 --firmware-dir "$T/fw" >"$T/f.out" 2>&1; then
	list "$T/f.gz" >"$T/f.list"
	if has "$T/f.list" lib/firmware/tigon/tg3_tso5.bin && has "$T/f.list" lib/firmware/tigon/tg3.bin.zst &&
		! grep -q unrelated "$T/f.list" && member "$T/f.gz" lib/firmware/tigon/tg3_tso5.bin |
		cmp -s - "$T/fw/tigon/tg3_tso5.bin" && grep -q '2 firmware files (2 named by the modules not in' "$T/f.out"; then
		pass "firmware named by tg3 taken from --firmware-dir (plain and .zst), nothing else"
	else
		fail "firmware: $(cat "$T/f.out"; grep firmware "$T/f.list")"
	fi
else
	fail "firmware build: $(cat "$T/f.out")"
fi

# ---- a tree with modules.dep (depmod) and compressed modules -----------
K2=$T/kern/lib/modules/$KVER
mkdir -p "$K2/kernel/drivers/net" "$K2/kernel/net/core" "$K2/kernel/drivers/virtio"
cp "$KMOD/kernel/drivers/net/virtio_net.ko" "$KMOD/kernel/drivers/net/net_failover.ko" "$K2/kernel/drivers/net/"
cp "$KMOD/kernel/net/core/failover.ko" "$K2/kernel/net/core/"
cp "$KMOD/kernel/drivers/virtio/virtio.ko" "$KMOD/kernel/drivers/virtio/virtio_ring.ko" "$K2/kernel/drivers/virtio/"
depmod -b "$T/kern" "$KVER" 2>/dev/null
xz "$K2/kernel/drivers/net/virtio_net.ko"
zstd -q --rm "$K2/kernel/drivers/net/net_failover.ko"
gzip "$K2/kernel/net/core/failover.ko"
sed -i -e 's|virtio_net\.ko|virtio_net.ko.xz|g' -e 's|net_failover\.ko|net_failover.ko.zst|g' \
	-e 's|/failover\.ko|/failover.ko.gz|g' "$K2/modules.dep"
if grep -q 'virtio_net.ko.xz:.*net_failover.ko.zst' "$K2/modules.dep" &&
	"$BIN" initramfs -q -o "$T/d.gz" --trust "$T/k1.pub" --kernel-dir "$T/kern" \
		--modules virtio_net >"$T/d.out" 2>&1; then
	member "$T/d.gz" etc/modules | sed 's|.*/||' | tr '\n' ' ' >"$T/d.mods"
	case $(cat "$T/d.mods") in
	"virtio_ring.ko virtio.ko failover.ko net_failover.ko virtio_net.ko " | \
		"failover.ko net_failover.ko virtio_ring.ko virtio.ko virtio_net.ko ")
		pass "modules.dep order: $(cat "$T/d.mods")" ;;
	*) fail "modules.dep order: $(cat "$T/d.mods")" ;;
	esac
	same=1
	for m in drivers/net/virtio_net drivers/net/net_failover net/core/failover; do
		member "$T/d.gz" "lib/modules/$KVER/kernel/$m.ko" | cmp -s - "$KMOD/kernel/$m.ko" ||
			{ fail "$m.ko not decompressed to the original"; same=0; }
	done
	[ "$same" = 1 ] && pass "xz, zstd and gzip modules decompressed byte-identical"
else
	fail "modules.dep tree build: $(cat "$T/d.out" 2>/dev/null) $(cat "$K2/modules.dep")"
fi
# The default set on that small tree: what it lacks is a warning only.
if "$BIN" initramfs -o "$T/e.gz" --trust "$T/k1.pub" --kernel-dir "$T/kern" >"$T/e.out" 2>&1 &&
	grep -q 'warning: kernel .* has no module ahci' "$T/e.out"; then
	pass "default set: a module the kernel lacks is a warning"
else
	fail "default set on a small tree: $(cat "$T/e.out")"
fi

# ---- errors: rc 1, the message names the culprit, no output left ------
expect_fail() { # NAME PATTERN ARGS...
	name=$1 pat=$2
	shift 2
	rm -f "$T/x.gz"
	"$BIN" initramfs -o "$T/x.gz" "$@" >"$T/x.out" 2>&1
	rc=$?
	if [ "$rc" -ne 0 ] && grep -q -- "$pat" "$T/x.out" && [ ! -e "$T/x.gz" ] &&
		! ls "$T" | grep -q 'x\.gz\.tmp'; then
		pass "$name: $(grep -m 1 -- "$pat" "$T/x.out")"
	else
		fail "$name: rc=$rc: $(cat "$T/x.out")"
	fi
}
expect_fail "no --trust" "at least one --trust" --kernel-dir "$RB_KERNEL_DIR"
expect_fail "missing key file" "$T/nope.pub" --trust "$T/nope.pub" --kernel-dir "$RB_KERNEL_DIR"
echo "not a key" >"$T/bad.pub"
expect_fail "bad key" "bad.pub: not an Ed25519 public key" --trust "$T/bad.pub" --kernel-dir "$RB_KERNEL_DIR"
expect_fail "private key as --trust" "k1.key: not an Ed25519 public key" --trust "$T/k1.key" \
	--kernel-dir "$RB_KERNEL_DIR"
printf '#!/bin/sh\necho hi\n' >"$T/fake-agent"
chmod +x "$T/fake-agent"
expect_fail "agent not ELF" "fake-agent: not an ELF file" --agent "$T/fake-agent" --trust "$T/k1.pub" \
	--kernel-dir "$RB_KERNEL_DIR"
expect_fail "module asked for but absent" "has no module rb_no_such_module" --trust "$T/k1.pub" \
	--kernel-dir "$RB_KERNEL_DIR" --modules virtio_net,rb_no_such_module
expect_fail "no such kernel dir" "$T/nokernel/lib/modules" --trust "$T/k1.pub" --kernel-dir "$T/nokernel"
expect_fail "--tool not ELF" "--tool /etc/passwd: not an ELF file" --trust "$T/k1.pub" --no-modules \
	--tool /etc/passwd
expect_fail "--tool missing" "--tool $T/rb-no-such-tool: No such file" --trust "$T/k1.pub" --no-modules \
	--tool "$T/rb-no-such-tool"
expect_fail "--tool name not found" "--tool rb-no-such-tool: not found in /sbin" --trust "$T/k1.pub" \
	--no-modules --tool rb-no-such-tool
if command -v cc >/dev/null; then
	mkdir -p "$T/p/lib" "$T/p/bin"
	echo 'int rbtest(void) { return 42; }' >"$T/p/l.c"
	echo 'int rbtest(void); int main(void) { return rbtest(); }' >"$T/p/m.c"
	cc -shared -fPIC -Wl,-soname,librbtest.so.1 -o "$T/p/lib/librbtest.so.1" "$T/p/l.c" &&
		cc -o "$T/p/bin/norpath" "$T/p/m.c" "$T/p/lib/librbtest.so.1" &&
		cc -o "$T/p/bin/withrpath" "$T/p/m.c" "$T/p/lib/librbtest.so.1" \
			-Wl,--enable-new-dtags,-rpath,'$ORIGIN/../lib'
	expect_fail "library not found" "library librbtest.so.1 (needed by $T/p/bin/norpath) not found" \
		--agent "$T/p/bin/norpath" --trust "$T/k1.pub" --no-modules
	if "$BIN" initramfs -q -o "$T/r.gz" --agent "$T/p/bin/withrpath" --trust "$T/k1.pub" \
		--no-modules >"$T/r.out" 2>&1 &&
		list "$T/r.gz" | grep -qx 'usr/lib/x86_64-linux-gnu/librbtest.so.1'; then
		pass "a library found through RUNPATH \$ORIGIN/../lib goes to a standard directory"
	else
		fail "RUNPATH \$ORIGIN: $(cat "$T/r.out")"
	fi
	# --tool: a path (in a bin directory: to /usr/bin) with its RUNPATH
	# library, and a name looked up in /sbin, /usr/sbin, /usr/bin; a --tool
	# called sfdisk replaces the default one, the other defaults stay.
	cp "$T/p/bin/withrpath" "$T/p/bin/sfdisk"
	if [ -x /sbin/mkfs.fat ] && "$BIN" initramfs -o "$T/t.gz" --level 1 --trust "$T/k1.pub" \
		--no-modules --tool "$T/p/bin/withrpath" --tool mkfs.fat --tool "$T/p/bin/sfdisk" \
		>"$T/t.out" 2>&1; then
		list "$T/t.gz" >"$T/t.list"
		if has "$T/t.list" usr/bin/withrpath && has "$T/t.list" usr/lib/x86_64-linux-gnu/librbtest.so.1 &&
			member "$T/t.gz" usr/sbin/mkfs.fat | cmp -s - /sbin/mkfs.fat &&
			member "$T/t.gz" usr/bin/sfdisk | cmp -s - "$T/p/bin/sfdisk" && ! has "$T/t.list" usr/sbin/sfdisk &&
			has "$T/t.list" usr/sbin/mkfs.ext4 && grep -q 'tools (withrpath, mkfs.fat, sfdisk, mkfs.vfat' "$T/t.out"; then
			pass "--tool PATH and --tool NAME, with their libraries; --tool sfdisk replaces the default"
		else
			fail "--tool: $(cat "$T/t.out"; grep -E 'bin/' "$T/t.list")"
		fi
	elif [ -x /sbin/mkfs.fat ]; then
		fail "--tool build: $(cat "$T/t.out" 2>/dev/null)"
	fi
fi

# ---- boot it: QEMU (TCG) with the Debian kernel ------------------------
# Not with a sanitizer build's agent (libasan in a 512 MiB TCG guest): the
# sanitizers are for rackboot-image, which ran above.
if ldd "$AGENT" | grep -qE 'libasan|libubsan'; then
	echo "SKIP: the QEMU boot (sanitizer build)"
	rb_finish
fi
if ! command -v qemu-system-x86_64 >/dev/null; then
	echo "SKIP: qemu-system-x86_64 not installed (the boot smoke test)"
	rb_finish 77
fi
MAC=52:54:00:7a:b1:0c
TOKEN=0123456789abcdef0123456789abcdef
# /init's own knobs go after "--": the kernel hands them to init, and the
# agent's command-line parser stops there.
qemu-system-x86_64 -accel tcg -m 512 -display none -no-reboot -monitor none \
	-serial "file:$T/serial.log" -kernel "$VMLINUZ" -initrd "$A" \
	-append "console=ttyS0 panic=-1 rackboot.server=http://127.0.0.1:1 rackboot.mac=$MAC rackboot.token=$TOKEN -- rackboot.shell_timeout=2" \
	-netdev user,id=n0,restrict=on -device "virtio-net-pci,netdev=n0,mac=$MAC" >"$T/qemu.out" 2>&1 &
QPID=$!
i=0
while kill -0 "$QPID" 2>/dev/null && [ "$i" -lt 300 ]; do
	sleep 1
	i=$((i + 1))
done
if kill -0 "$QPID" 2>/dev/null; then
	fail "the node did not reboot within 300 s"
	kill -9 "$QPID"
fi
wait "$QPID" 2>/dev/null
QPID=
S=$T/serial.log
grep -q "rackboot: interface eth0 ($MAC)" "$S" && pass "/init picked the interface with rackboot.mac" ||
	fail "interface by MAC"
grep -q 'rackboot: eth0: 10\.0\.2\.' "$S" && pass "DHCP lease configured by the udhcpc script" || fail "no DHCP lease"
grep -q 'rackboot: running rackboot-agent run' "$S" && grep -q '^rackboot-agent' "$S" &&
	pass "init ran the agent: $(grep '^rackboot-agent' "$S" | tail -n 1)" || fail "the agent did not run"
grep -q 'RACKBOOT FAILED: rackboot-agent exited with status [1-9]' "$S" && grep -q 'last message: rackboot-agent' "$S" &&
	pass "failure banner with the agent's reason" || fail "no failure banner"
# With `run` in the agent, the reason is the unreachable server (before it
# existed, a usage error: the banner and the agent's line are what count).
grep -q 'last message: rackboot-agent.*127\.0\.0\.1:1' "$S" && pass "the agent failed on the unreachable server"
grep -q 'rackboot: rebooting' "$S" && pass "rebooted after the shell timeout (QEMU exited)" || fail "no reboot"
grep -q 'rackboot: insmod' "$S" && fail "a module failed to load: $(grep 'rackboot: insmod' "$S" | head -n 3)"
grep -qE 'Kernel panic|not syncing' "$S" && fail "kernel panic"
if [ "$RB_FAILS" -ne 0 ]; then
	echo "---- serial log (tail) ----"
	grep -v '^\[' "$S" | tail -n 40
fi
rb_finish
