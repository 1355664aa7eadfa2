# Test disks for the imager and agent tests (sourced): a 256 MiB GPT disk
# with an ESP (FAT) and an ext4 root made from a directory. Built from
# partition files written into place, so no loop device is needed, and
# reproducible (fixed UUIDs, hash seed and time) so two builds of the same
# tree give the same bytes.
DISK_SECTORS=524288 # 256 MiB
ESP_START=2048
ESP_SECTORS=65536
ROOT_START=$((ESP_START + ESP_SECTORS))
ROOT_SECTORS=$((DISK_SECTORS - ROOT_START - 2048))

# gpt_disk OUT ROOTDIR WORKDIR
gpt_disk() {
	truncate -s $((DISK_SECTORS * 512)) "$1"
	printf 'label: gpt\nstart=%d, size=%d, type=U, name="esp"\nstart=%d, size=%d, type=L, name="root"\n' \
		$ESP_START $ESP_SECTORS $ROOT_START $ROOT_SECTORS | sfdisk -q "$1" >/dev/null || return 1
	rm -f "$3/esp.part" "$3/root.part"
	truncate -s $((ESP_SECTORS * 512)) "$3/esp.part"
	mkfs.vfat -i 12345678 "$3/esp.part" >/dev/null || return 1
	E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -q -F -U 6a3f3c2e-1111-4222-8333-444455556666 \
		-E hash_seed=6a3f3c2e-1111-4222-8333-444455556666 -d "$2" "$3/root.part" \
		$((ROOT_SECTORS / 2))k || return 1
	dd if="$3/esp.part" of="$1" bs=512 seek=$ESP_START conv=notrunc,sparse status=none &&
		dd if="$3/root.part" of="$1" bs=512 seek=$ROOT_START conv=notrunc,sparse status=none || return 1
	rm -f "$3/esp.part" "$3/root.part"
}
