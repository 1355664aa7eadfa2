#!/bin/bash
# The UEFI installed disk boots on its own: e2e_installed_disk_uefi builds
# a GPT disk (ESP with a unified kernel image at \EFI\BOOT\BOOTX64.EFI,
# ext4 root) from the product initramfs; QEMU with OVMF and a fresh NVRAM
# (no boot entries, no network) must start it and reach its marker, with
# the root mounted from /dev/vda2 and the kernel line of the image.
#   test_uefi_disk.sh [--keep]
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
keep=""
for a in "$@"; do
	case $a in
	--keep) keep=--keep ;;
	*) echo "unknown argument $a"; exit 2 ;;
	esac
done
build=${RB_BUILD:-$here/../../build}
IMG=$build/imager/rackboot-image
AGENT=$build/agent/rackboot-agent
e2e_need
for b in "$IMG" "$AGENT"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
for t in objcopy mkfs.vfat mcopy sfdisk; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed (scripts/install-deps)"; exit 77; }
done
[ -r "$E2E_EFI_STUB" ] || { echo "SKIP: $E2E_EFI_STUB missing (systemd-boot-efi)"; exit 77; }
[ -r /usr/share/OVMF/OVMF_CODE.fd ] || { echo "SKIP: no OVMF"; exit 77; }

work=$(mktemp -d /tmp/rb-e2e-uefidisk.XXXXXX)
cleanup() {
	e2e_cleanup
	if [ "$keep" = --keep ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

"$IMG" keygen "$work/site" >/dev/null
"$IMG" initramfs -o "$work/initrd.img" --trust "$work/site.pub" \
	--kernel-dir "$RB_KERNEL_DIR" --agent "$AGENT" \
	--modules virtio_pci,virtio_net,virtio_blk,ext4,crc32c_generic \
	--level 1 >"$work/initramfs.out" || { cat "$work/initramfs.out"; exit 1; }
t0=$(date +%s)
e2e_installed_disk_uefi "$work/disk.raw" 192 RACKBOOT-UEFI-MARKER "$work/initrd.img" ||
	{ echo "FAIL: cannot build the UEFI disk"; exit 1; }
echo "ok: UEFI disk built in $(($(date +%s) - t0))s: $(sfdisk -d "$work/disk.raw" | grep -c '^/') partitions," \
	"$(sfdisk -d "$work/disk.raw" | sed -n 's/^label: //p')"
MTOOLS_SKIP_CHECK=1 mdir -i "$work/disk.raw@@1M" -b ::/EFI/BOOT | grep -qi '/EFI/BOOT/BOOTX64.EFI' ||
	{ echo "FAIL: no \\EFI\\BOOT\\BOOTX64.EFI on the ESP"; exit 1; }

t0=$(date +%s)
e2e_boot_disk_uefi "$work/disk.raw" "$work/serial.log"
qpid=$E2E_LAST_PID
if ! e2e_wait_for "$work/serial.log" "RACKBOOT-UEFI-MARKER up" 600 "$qpid"; then
	echo "FAIL: the UEFI disk did not boot to its marker"
	tail -c 4000 "$work/serial.log" | tr -d '\033\r'
	cat "$work/serial.log.qemu"
	exit 1
fi
t_boot=$(($(date +%s) - t0))
kill "$qpid" 2>/dev/null || true
wait "$qpid" 2>/dev/null || true
# OVMF found no boot entry of its own for the disk: it took the
# removable-media path of the virtio disk ("UEFI Misc Device").
grep -qa 'BdsDxe: starting Boot[0-9A-F]* "UEFI Misc Device"' "$work/serial.log" ||
	{ echo "FAIL: OVMF did not start the disk's default boot file"; tr -d '\033\r' <"$work/serial.log"; exit 1; }
echo "ok: OVMF (fresh NVRAM, no network) started \\EFI\\BOOT\\BOOTX64.EFI and the installed system" \
	"reached its marker in ${t_boot}s under TCG"
