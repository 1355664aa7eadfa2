# Shared helpers for the QEMU end-to-end tests and the demo: an isolated
# network namespace with a bridge and tap devices, a test initramfs, boot
# roots, and QEMU nodes. Source it; every resource is recorded so cleanup
# removes exactly what was made (namespaces by name, processes by PID).

RB_KERNEL_DIR=${RB_KERNEL_DIR:-/var/cache/rackboot/kernel}
E2E_PIDS=""
E2E_NETNS=""

e2e_need() {
	[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root (network namespaces, tap)"; exit 77; }
	for t in qemu-system-x86_64 ip busybox cpio curl; do
		command -v "$t" >/dev/null || [ -x "/bin/$t" ] || { echo "SKIP: $t not installed (scripts/install-deps)"; exit 77; }
	done
	E2E_VMLINUZ=$(ls "$RB_KERNEL_DIR"/boot/vmlinuz-* 2>/dev/null | head -n 1)
	[ -n "$E2E_VMLINUZ" ] || { echo "SKIP: no kernel in $RB_KERNEL_DIR (scripts/install-deps fetches it)"; exit 77; }
}

e2e_cleanup() {
	for p in $E2E_PIDS; do kill "$p" 2>/dev/null || true; done
	for p in $E2E_PIDS; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$p" 2>/dev/null || true
	done
	for n in $E2E_NETNS; do ip netns del "$n" 2>/dev/null || true; done
}

# e2e_netns NAME: namespace with br0 10.77.0.1/24 and lo up.
e2e_netns() {
	ip netns add "$1"
	E2E_NETNS="$E2E_NETNS $1"
	ip -n "$1" link set lo up
	ip -n "$1" link add br0 type bridge
	ip -n "$1" addr add 10.77.0.1/24 dev br0
	ip -n "$1" link set br0 up
}

# e2e_tap NS TAP: a tap device on the bridge for one QEMU node.
e2e_tap() {
	ip -n "$1" tuntap add dev "$2" mode tap
	ip -n "$1" link set "$2" master br0
	ip -n "$1" link set "$2" up
}

# e2e_initramfs OUT: busybox initramfs whose init prints the marker line
# with the kernel command line (so the test sees which script booted it),
# then powers off (QEMU runs with -no-reboot and exits).
e2e_initramfs() {
	d=$(mktemp -d)
	mkdir -p "$d/bin" "$d/proc" "$d/sys" "$d/dev"
	cp /bin/busybox "$d/bin/busybox"
	cat > "$d/init" <<'EOI'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
echo "RACKBOOT-E2E-MARKER cmdline: $(cat /proc/cmdline)"
echo "RACKBOOT-E2E-MARKER firmware: $([ -d /sys/firmware/efi ] && echo uefi || echo bios)"
poweroff -f
EOI
	chmod 755 "$d/init"
	(cd "$d" && find . | cpio -o -H newc --quiet | gzip -9) > "$1"
	rm -rf "$d"
}

# e2e_roots DIR: DIR/tftp with iPXE boot files, DIR/boot with kernel+initrd.
e2e_roots() {
	mkdir -p "$1/tftp" "$1/boot" "$1/repo"
	for f in undionly.kpxe ipxe.efi snponly.efi; do cp "/usr/lib/ipxe/$f" "$1/tftp/"; done
	cp /usr/lib/ipxe/ipxe.efi "$1/boot/"
	cp "$E2E_VMLINUZ" "$1/boot/vmlinuz"
	e2e_initramfs "$1/boot/initrd.img"
	chmod -R a+rX "$1"
}

# e2e_qemu NS TAP MAC FIRMWARE SERIAL_LOG [extra args]: start a node.
# FIRMWARE: bios (SeaBIOS + iPXE NIC ROM), uefi (OVMF + iPXE EFI NIC ROM),
# uefi-edk2 (OVMF's own PXE client, no iPXE ROM: the path real servers take).
# E2E_OVMF_VARS=FILE: the node's NVRAM, kept across power cycles as a real
# node's is (made from OVMF_VARS.fd when absent); else a fresh one beside
# SERIAL_LOG.
e2e_qemu() {
	ns=$1 tap=$2 mac=$3 fw=$4 log=$5
	shift 5
	rom=""
	fwargs=""
	case $fw in
	bios) ;;
	uefi|uefi-edk2)
		vars=${E2E_OVMF_VARS:-$log.vars}
		[ -n "${E2E_OVMF_VARS:-}" ] && [ -s "$vars" ] || cp /usr/share/OVMF/OVMF_VARS.fd "$vars"
		fwargs="-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd -drive if=pflash,format=raw,file=$vars"
		[ "$fw" = uefi-edk2 ] && rom=",romfile="
		;;
	*) echo "unknown firmware $fw" >&2; return 1 ;;
	esac
	# E2E_REBOOT=1: a reboot restarts the node (the agent reboots into the
	# local-boot script); otherwise a reboot ends QEMU.
	noreboot=-no-reboot
	[ "${E2E_REBOOT:-0}" = 1 ] && noreboot=""
	# shellcheck disable=SC2086
	ip netns exec "$ns" qemu-system-x86_64 -accel tcg -m 512 -display none $noreboot \
		-serial "file:$log" -monitor none -boot n $fwargs \
		-netdev "tap,id=n0,ifname=$tap,script=no,downscript=no" \
		-device "virtio-net-pci,netdev=n0,mac=$mac$rom" "$@" >"$log.qemu" 2>&1 &
	E2E_PIDS="$E2E_PIDS $!"
	E2E_LAST_PID=$!
}

# e2e_rackbootd NS BINARY CONF LOG: starts rackbootd in NS (verbose, to LOG),
# waits until it is ready; exits the test if it does not start. Sets
# E2E_RACKBOOTD_PID, and E2E_OPAUTH to an "Authorization: Bearer ..."
# header with an operator token made as an operator makes one (the
# running server picks it up from its tokens file).
e2e_rackbootd() {
	ip netns exec "$1" "$2" -c "$3" -v >"$4" 2>&1 &
	E2E_RACKBOOTD_PID=$!
	E2E_PIDS="$E2E_PIDS $E2E_RACKBOOTD_PID"
	e2e_wait_for "$4" "rackbootd ready" 20 "$E2E_RACKBOOTD_PID" || {
		echo "FAIL: rackbootd did not start"; cat "$4"; exit 1; }
	E2E_OPAUTH="Authorization: Bearer $("$2" -c "$3" token create "e2e-$$-$(date +%s%N)" 2>/dev/null)" || {
		echo "FAIL: rackbootd token create"; exit 1; }
}

# e2e_wait_for FILE PATTERN SECONDS [PID]: wait for a line; fails on timeout
# or when PID exits without the line.
e2e_wait_for() {
	f=$1 pat=$2 secs=$3 pid=${4:-}
	i=0
	while [ "$i" -lt "$((secs * 2))" ]; do
		grep -qa -- "$pat" "$f" 2>/dev/null && return 0
		if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
			grep -qa -- "$pat" "$f" 2>/dev/null && return 0
			return 1
		fi
		sleep 0.5
		i=$((i + 1))
	done
	return 1
}

# e2e_marker_disk OUT: an 8 MiB raw disk whose MBR boot code prints
# RACKBOOT-LOCALDISK-MARKER on the first serial port and halts: proof that
# a node really left the network boot for its local disk.
e2e_marker_disk() {
	python3 - "$1" <<'EOP'
import sys
# xor ax,ax; mov ds,ax; cld; mov si,msg; next: lodsb; test al,al; jz halt;
# mov dx,0x3f8; out dx,al; jmp next; halt: hlt; jmp halt; msg: ...
code = bytes([0x31, 0xC0, 0x8E, 0xD8, 0xFC, 0xBE, 0x16, 0x7C, 0xAC, 0x84, 0xC0, 0x74, 0x06,
              0xBA, 0xF8, 0x03, 0xEE, 0xEB, 0xF5, 0xF4, 0xEB, 0xFD])
mbr = code + b"\r\nRACKBOOT-LOCALDISK-MARKER\r\n\0"
mbr += bytes(510 - len(mbr)) + b"\x55\xaa"
with open(sys.argv[1], "wb") as f:
    f.write(mbr)
    f.truncate(8 << 20)
EOP
}

# e2e_agent_initramfs OUT AGENT_BIN PUBKEY JOBFILE: busybox initramfs with
# rackboot-agent, its shared libraries, and the virtio net/block modules of
# the kernel in $RB_KERNEL_DIR. Its init takes an address by DHCP, runs
# `rackboot-agent image` with REPO, NAME and VERSION from JOBFILE (shell
# variables) onto /dev/vda, prints "RACKBOOT-AGENT-DONE rc=N" and powers off.
e2e_agent_initramfs() {
	out=$1 agent=$2 pub=$3 job=$4
	d=$(mktemp -d)
	mkdir -p "$d/bin" "$d/proc" "$d/sys" "$d/dev" "$d/tmp" "$d/etc/rackboot" "$d/lib/modules"
	cp /bin/busybox "$d/bin/busybox"
	cp "$agent" "$d/bin/rackboot-agent"
	for lib in $(ldd "$agent" | grep -o '/[^ ]*'); do
		mkdir -p "$d$(dirname "$lib")"
		cp -L "$lib" "$d$lib"
	done
	cp "$pub" "$d/etc/rackboot/trusted.pub"
	cp "$job" "$d/etc/rackboot/job"
	# Load order from the netboot recipe; a module not shipped is built in.
	kmod=$(ls -d "$RB_KERNEL_DIR"/lib/modules/*/kernel | head -n 1)
	for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci \
		failover net_failover virtio_net virtio_blk; do
		ko=$(find "$kmod" -name "$m.ko" -o -name "$m.ko.xz" | head -n 1)
		[ -n "$ko" ] || continue
		case $ko in
		*.xz) xz -dc "$ko" >"$d/lib/modules/$m.ko" ;;
		*) cp "$ko" "$d/lib/modules/$m.ko" ;;
		esac
		echo "$m" >>"$d/etc/modules"
	done
	cat >"$d/etc/udhcpc.script" <<'EOS'
#!/bin/sh
case $1 in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	for r in $router; do
		ip route add default via "$r" dev "$interface"
		break
	done
	;;
esac
exit 0
EOS
	cat >"$d/init" <<'EOI'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
while read -r m; do
	insmod "/lib/modules/$m.ko" || echo "rackboot: insmod $m failed"
done </etc/modules
ip link set lo up
n=0
until udhcpc -i eth0 -n -q -s /etc/udhcpc.script; do
	n=$((n + 1))
	[ "$n" -lt 5 ] || break
	sleep 2
done
n=0
while [ ! -b /dev/vda ] && [ "$n" -lt 20 ]; do
	sleep 1
	n=$((n + 1))
done
. /etc/rackboot/job
rackboot-agent image --repo "$REPO" --pub /etc/rackboot/trusted.pub --name "$NAME" \
	--version "$VERSION" --target /dev/vda -q
echo "RACKBOOT-AGENT-DONE rc=$?"
sync
poweroff -f
EOI
	chmod 755 "$d/init" "$d/etc/udhcpc.script"
	(cd "$d" && find . | cpio -o -H newc --quiet | gzip) >"$out"
	rm -rf "$d"
}

# e2e_installed_root DIR MARKER INITRAMFS ROOTDEV: the installed system's
# tree of e2e_installed_disk into DIR (empty), for a root file system on
# ROOTDEV (the kernel line's root=, which its initrd mounts).
e2e_installed_root() {
	rr=$1 marker=$2 initrd=$3 rootdev=$4
	case $(head -c 4 "$initrd" | od -An -tx1 | tr -d ' ') in
	28b52ffd) zstd -dc "$initrd" ;;
	*) gzip -dc "$initrd" ;;
	esac | (cd "$rr" && cpio -id --quiet) || return 1
	rm -f "$rr/init"
	mkdir -p "$rr/sbin" "$rr/boot/extlinux" "$rr/proc" "$rr/sys" \
		"$rr/dev" "$rr/run" "$rr/tmp" "$rr/var/lib" "$rr/var/log" \
		"$rr/etc/init.d"
	ln -sf /bin/busybox "$rr/sbin/init"
	# The applets as a distribution has them (the root may be read-only)
	for a in $("$rr/bin/busybox" --list); do
		[ -e "$rr/bin/$a" ] || ln -s busybox "$rr/bin/$a"
	done
	printf '::sysinit:/etc/init.d/rcS\n::ctrlaltdel:/sbin/reboot -f\n' >"$rr/etc/inittab"
	cat >"$rr/etc/init.d/rcS" <<EOR
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
mount -t devtmpfs dev /dev
mount -t tmpfs run /run
mount -t proc proc /proc
mount -t sysfs sys /sys
hostname -F /etc/hostname 2>/dev/null
ip link set lo up
n=0
until udhcpc -i eth0 -n -q -t 5 -s /etc/rackboot/udhcpc.script >/dev/null 2>&1; do
	n=\$((n + 1)); [ "\$n" -lt 5 ] || break; sleep 2
done
echo "$marker up: \$(hostname) \$(ip -4 -o addr show eth0 | awk '{ print \$4 }')"
[ -x /etc/init.d/rackboot-agent ] && /etc/init.d/rackboot-agent start
EOR
	chmod 755 "$rr/etc/init.d/rcS"
	cp "$E2E_VMLINUZ" "$rr/boot/vmlinuz"
	# The installed system's initrd: the same modules, an /init that
	# mounts the root partition (root= of its kernel line) and hands over.
	ro=$(mktemp -d)
	cat >"$ro/init" <<'EOI'
#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /sysroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
while read -r ko; do /bin/busybox insmod "$ko" 2>/dev/null; done </etc/modules
mode=ro
root=/dev/vda1
for w in $(/bin/busybox cat /proc/cmdline); do
	case $w in
	rw) mode=rw ;;
	root=/dev/*) root=${w#root=} ;;
	esac
done
n=0
while [ ! -b "$root" ] && [ "$n" -lt 30 ]; do /bin/busybox sleep 1; n=$((n + 1)); done
/bin/busybox mount -t ext4 -o "$mode" "$root" /sysroot || { echo "cannot mount $root"; /bin/busybox sleep 5; /bin/busybox reboot -f; }
/bin/busybox umount /proc /dev
exec /bin/busybox switch_root /sysroot /sbin/init
EOI
	chmod 755 "$ro/init"
	cp "$initrd" "$rr/boot/initrd"
	(cd "$ro" && echo init | cpio -o -H newc --quiet | gzip -1) >>"$rr/boot/initrd"
	rm -rf "$ro"
	cat >"$rr/boot/extlinux/extlinux.conf" <<EOX
SERIAL 0 115200
DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
	KERNEL /boot/vmlinuz
	INITRD /boot/initrd
	APPEND root=$rootdev ${E2E_ROOT_MODE:-ro} console=ttyS0 panic=-1 quiet
EOX
}

# e2e_installed_disk OUT SIZE_MIB MARKER INITRAMFS: a small bootable Linux
# disk, what a tenant's image is in these tests. MBR with syslinux's boot
# code, one bootable ext4 partition from 1 MiB to SIZE_MIB - 4 MiB (the last
# MiBs belong to no partition, like a real disk's slack); its root is the
# busybox, rackboot-agent, libraries and modules of INITRAMFS (a product
# initramfs built with --modules ...,ext4,crc32c_generic), with busybox init:
# /etc/init.d/rcS brings the NIC up by DHCP, prints "MARKER up", then runs
# /etc/init.d/rackboot-agent start when stage 2 installed one. Booted by
# extlinux: /boot/vmlinuz and /boot/initrd (INITRAMFS with an /init that
# loads its modules, mounts root= (/dev/vda1) and switch_roots), kernel line from
# /boot/extlinux/extlinux.conf. The root is mounted read-only (the disk
# stays byte-identical to the image while it runs) unless E2E_ROOT_MODE=rw
# (a node whose installed agent changes it). Needs extlinux and a loop mount.
# tests/e2e/uefi_disk.sh has the GPT + UEFI counterpart, with the same root.
e2e_installed_disk() {
	out=$1 size=$2 marker=$3 initrd=$4
	d=$(mktemp -d)
	mkdir -p "$d/root" "$d/mnt"
	e2e_installed_root "$d/root" "$marker" "$initrd" /dev/vda1 || return 1
	psize=$((size - 5))
	rm -f "$out"
	truncate -s "${size}M" "$out"
	printf 'label: dos\nlabel-id: 0x52ac0b07\nstart=2048, size=%s, type=83, bootable\n' "$((psize * 2048))" |
		sfdisk -q "$out" || return 1
	# syslinux 6 reads ext4 without the 64bit and metadata_csum features
	truncate -s "${psize}M" "$d/part.img"
	E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -O ^64bit,^metadata_csum,^orphan_file,^extent,^flex_bg,^huge_file \
		-L rackroot -d "$d/root" "$d/part.img" || return 1
	mount -o loop "$d/part.img" "$d/mnt" || return 1
	extlinux --install "$d/mnt/boot/extlinux" >/dev/null 2>&1
	rc=$?
	umount "$d/mnt"
	[ "$rc" -eq 0 ] || { echo "extlinux --install failed" >&2; return 1; }
	dd if="$d/part.img" of="$out" bs=1M seek=1 conv=notrunc status=none
	dd if=/usr/lib/syslinux/mbr/mbr.bin of="$out" bs=440 count=1 conv=notrunc status=none
	rm -rf "$d"
}

# The UEFI installed disk (GPT, ESP with a unified kernel image).
. "$(dirname "${BASH_SOURCE:-$0}")/uefi_disk.sh"
