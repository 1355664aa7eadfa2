# The UEFI counterpart of e2e_installed_disk (lib.sh sources this file):
# a GPT disk whose EFI system partition holds one unified kernel image at
# the removable-media path \EFI\BOOT\BOOTX64.EFI, so that OVMF boots it
# with no NVRAM boot entry, as a fresh node's firmware does.
#
# The unified kernel image is systemd's EFI stub (Debian systemd-boot-efi)
# with the kernel, the initrd, the kernel line and an os-release glued on
# as PE sections by objcopy: one file, no boot loader configuration and no
# boot menu, nothing that can pick another entry. The ESP is made with
# mkfs.vfat and mtools on a file, never mounted.
#
# Layout (1 MiB aligned): partition 1 the ESP (FAT), partition 2 the ext4
# root up to SIZE_MIB - 4 MiB (slack, as e2e_installed_disk leaves), the
# root built by e2e_installed_root for root=/dev/vda2: the same tree, with
# /boot/vmlinuz, /boot/initrd and /boot/extlinux/extlinux.conf naming the
# same kernel line as the image's .cmdline (what kexec reads; nothing
# boots through extlinux here).

E2E_EFI_STUB=${E2E_EFI_STUB:-/usr/lib/systemd/boot/efi/linuxx64.efi.stub}

# e2e_uki OUT KERNEL INITRD CMDLINE: a unified kernel image.
e2e_uki() {
	uo=$1 uk=$2 ui=$3 uc=$4
	ud=$(mktemp -d)
	printf '%s' "$uc" >"$ud/cmdline"
	printf 'NAME="rackboot e2e"\nID=rackboot-e2e\nPRETTY_NAME="rackboot e2e installed system"\n' >"$ud/osrel"
	# The sections' addresses follow the stub's own (systemd 252's recipe):
	# small ones first, the kernel, then the initrd after the kernel's end.
	kend=$(( (0x2000000 + $(stat -c %s "$uk") + 0xfffff) / 0x100000 * 0x100000 ))
	objcopy \
		--add-section .osrel="$ud/osrel" --change-section-vma .osrel=0x20000 \
		--add-section .cmdline="$ud/cmdline" --change-section-vma .cmdline=0x30000 \
		--add-section .linux="$uk" --change-section-vma .linux=0x2000000 \
		--add-section .initrd="$ui" --change-section-vma .initrd="$(printf '0x%x' "$kend")" \
		"$E2E_EFI_STUB" "$uo"
	urc=$?
	rm -rf "$ud"
	return "$urc"
}

# e2e_installed_disk_uefi OUT SIZE_MIB MARKER INITRAMFS: as
# e2e_installed_disk (same root, same MARKER line, E2E_ROOT_MODE), booted by
# UEFI firmware. Needs objcopy, systemd-boot-efi, mtools, dosfstools.
e2e_installed_disk_uefi() {
	out=$1 size=$2 marker=$3 initrd=$4
	for t in objcopy mkfs.vfat mmd mcopy sfdisk mkfs.ext4; do
		command -v "$t" >/dev/null || { echo "e2e_installed_disk_uefi: $t not installed (scripts/install-deps)" >&2; return 1; }
	done
	[ -r "$E2E_EFI_STUB" ] || { echo "e2e_installed_disk_uefi: no $E2E_EFI_STUB (apt-get install systemd-boot-efi)" >&2; return 1; }
	d=$(mktemp -d)
	mkdir -p "$d/root"
	e2e_installed_root "$d/root" "$marker" "$initrd" /dev/vda2 || { rm -rf "$d"; return 1; }
	cmdline=$(sed -n 's/^[[:space:]]*APPEND[[:space:]]*//p' "$d/root/boot/extlinux/extlinux.conf")
	e2e_uki "$d/bootx64.efi" "$d/root/boot/vmlinuz" "$d/root/boot/initrd" "$cmdline" ||
		{ echo "e2e_installed_disk_uefi: objcopy could not build the unified kernel image" >&2; rm -rf "$d"; return 1; }
	# The ESP: the image and 4 MiB of room, at least 32 MiB (FAT16 or more).
	esp=$(( ($(stat -c %s "$d/bootx64.efi") >> 20) + 5 ))
	[ "$esp" -ge 32 ] || esp=32
	psize=$((size - 5 - esp))
	[ "$psize" -ge 16 ] || { echo "e2e_installed_disk_uefi: $size MiB leaves no room for a root after a $esp MiB ESP" >&2; rm -rf "$d"; return 1; }
	mkfs.vfat -C -n RACKESP -i 52ac0b07 "$d/esp.img" $((esp * 1024)) >/dev/null || { rm -rf "$d"; return 1; }
	if ! MTOOLS_SKIP_CHECK=1 mmd -i "$d/esp.img" ::/EFI ::/EFI/BOOT ||
		! MTOOLS_SKIP_CHECK=1 mcopy -i "$d/esp.img" "$d/bootx64.efi" ::/EFI/BOOT/BOOTX64.EFI; then
		echo "e2e_installed_disk_uefi: mtools could not fill the ESP" >&2
		rm -rf "$d"
		return 1
	fi
	truncate -s "${psize}M" "$d/part.img"
	features=""
	attrs=""
	if [ "${E2E_HYBRID:-0}" = 1 ]; then
		# BIOS too: extlinux in the root (syslinux 6 reads ext4 without
		# these features), the partition marked legacy-BIOS-bootable for
		# syslinux's GPT MBR code
		features="-O ^64bit,^metadata_csum,^orphan_file,^extent,^flex_bg,^huge_file"
		attrs=", attrs=\"LegacyBIOSBootable\""
	fi
	# shellcheck disable=SC2086
	E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F $features -L rackroot \
		-U 5ac0b007-0000-4000-8000-000000000002 -d "$d/root" "$d/part.img" || { rm -rf "$d"; return 1; }
	if [ "${E2E_HYBRID:-0}" = 1 ]; then
		mkdir -p "$d/mnt"
		mount -o loop "$d/part.img" "$d/mnt" || { rm -rf "$d"; return 1; }
		extlinux --install "$d/mnt/boot/extlinux" >/dev/null 2>&1
		xrc=$?
		umount "$d/mnt"
		[ "$xrc" -eq 0 ] || { echo "e2e_installed_disk_uefi: extlinux --install failed" >&2; rm -rf "$d"; return 1; }
	fi
	rm -f "$out"
	truncate -s "${size}M" "$out"
	# Fixed GUIDs: the same inputs give the same disk.
	sfdisk -q "$out" <<EOS || { rm -rf "$d"; return 1; }
label: gpt
label-id: 5AC0B007-0000-4000-8000-000000000000
start=2048, size=$((esp * 2048)), type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=5AC0B007-0000-4000-8000-0000000000E5, name=esp
start=$(((1 + esp) * 2048)), size=$((psize * 2048)), type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=5AC0B007-0000-4000-8000-000000000002, name=root$attrs
EOS
	if ! dd if="$d/esp.img" of="$out" bs=1M seek=1 conv=notrunc status=none ||
		! dd if="$d/part.img" of="$out" bs=1M seek=$((1 + esp)) conv=notrunc status=none; then
		rm -rf "$d"
		return 1
	fi
	[ "${E2E_HYBRID:-0}" = 1 ] &&
		dd if=/usr/lib/syslinux/mbr/gptmbr.bin of="$out" bs=440 count=1 conv=notrunc status=none
	rm -rf "$d"
}

# e2e_installed_disk_hybrid OUT SIZE_MIB MARKER INITRAMFS: one disk that
# boots under BIOS (syslinux's GPT MBR code -> extlinux in the root, which
# is marked legacy-BIOS-bootable) and UEFI (the unified kernel image on the
# ESP), the same system either way: what a tenant image for a mixed fleet
# is in the lifecycle test. Needs extlinux and a loop mount besides the
# UEFI disk's tools.
e2e_installed_disk_hybrid() {
	E2E_HYBRID=1 e2e_installed_disk_uefi "$@"
}

# e2e_boot_disk_uefi DISK SERIAL_LOG [extra args]: boots DISK under OVMF
# (a fresh NVRAM in SERIAL_LOG.vars, no network), like e2e_qemu; sets
# E2E_LAST_PID.
e2e_boot_disk_uefi() {
	bdisk=$1 blog=$2
	shift 2
	bvars=$blog.vars
	cp /usr/share/OVMF/OVMF_VARS.fd "$bvars"
	qemu-system-x86_64 -accel tcg -m 512 -display none -no-reboot -serial "file:$blog" \
		-monitor none -nic none \
		-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd \
		-drive "if=pflash,format=raw,file=$bvars" \
		-drive "file=$bdisk,format=raw,if=virtio" "$@" >"$blog.qemu" 2>&1 &
	E2E_PIDS="$E2E_PIDS $!"
	E2E_LAST_PID=$!
}
