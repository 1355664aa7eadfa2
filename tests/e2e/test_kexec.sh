#!/bin/bash
# Fast swap (issue 8 step 6): a profile with after = "kexec". A QEMU node
# network-boots from rackbootd into the product initramfs, the agent
# images the disk (stage 1 and stage 2), then loads the installed system's
# kernel and initrd from the new root (its extlinux.conf: kernel line
# included) with kexec_file_load and reboots into it: the installed
# system must reach its marker with no second firmware boot (one SeaBIOS
# banner, or one OVMF boot-option start, in the serial log), and the API
# must show step "kexec" with what was loaded.
#   test_kexec.sh [bios|uefi] [--compare] [--keep]
# bios: SeaBIOS + iPXE, the MBR + extlinux disk; uefi: OVMF + iPXE EFI,
# the GPT disk with its unified kernel image (tests/e2e/uefi_disk.sh).
# --compare: then the same node again with after = "reboot", and both
# times from the agent's "imaged" to the installed system's first DHCP
# (the registry's event times).
# Firmware boots are counted from SeaBIOS's debug port (isa-debugcon 0x402:
# one "Start SeaVGABIOS" per power-on self-test) or, with OVMF, its boot
# manager's "BdsDxe:" lines on the serial console after the agent started
# (OVMF boots the disk first once it holds a system: no network boot to
# count), and from the registry: no boot script served and no DHCP answer
# with a boot file after "imaged".
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
keep=""
fw=bios
compare=0
for a in "$@"; do
	case $a in
	--keep) keep=--keep ;;
	--compare) compare=1 ;;
	bios | uefi) fw=$a ;;
	*) echo "unknown argument $a"; exit 2 ;;
	esac
done
build=${RB_BUILD:-$here/../../build}
IMG=$build/imager/rackboot-image
AGENT=$build/agent/rackboot-agent
e2e_need
for b in "$build/pxe/rackbootd" "$IMG" "$AGENT"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
for t in python3 extlinux; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
if [ "$fw" = uefi ]; then
	if [ ! -r "$E2E_EFI_STUB" ] || ! command -v mcopy >/dev/null; then
		echo "SKIP: systemd-boot-efi or mtools missing (scripts/install-deps)"
		exit 77
	fi
fi

work=$(mktemp -d /tmp/rb-e2e-kexec.XXXXXX)
chmod 755 "$work"
ns=rbkexec$$
mac=52:54:00:e2:00:4b
api_url=http://10.77.0.1:8080/api/v1/nodes/$mac
cleanup() {
	e2e_cleanup
	if [ "$keep" = --keep ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

api() { ip netns exec "$ns" curl -sf -H "$E2E_OPAUTH" "$api_url"; }
node_field() {
	api | python3 -c 'import json, sys; n = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}

e2e_netns "$ns"
e2e_tap "$ns" tap0
e2e_roots "$work/root"
mkdir -p "$work/state"
"$IMG" keygen "$work/site" >/dev/null
"$IMG" initramfs -o "$work/root/boot/initrd.img" --trust "$work/site.pub" \
	--kernel-dir "$RB_KERNEL_DIR" --agent "$AGENT" \
	--modules virtio_pci,virtio_net,virtio_blk,ext4,crc32c_generic \
	--level 1 >"$work/initramfs.out" || { cat "$work/initramfs.out"; exit 1; }
src=$work/source.img
if [ "$fw" = uefi ]; then
	size=192
	e2e_installed_disk_uefi "$src" $size RACKBOOT-INSTALLED-MARKER "$work/root/boot/initrd.img"
else
	size=128
	e2e_installed_disk "$src" $size RACKBOOT-INSTALLED-MARKER "$work/root/boot/initrd.img"
fi || { echo "FAIL: cannot build the installed-system disk"; exit 1; }
"$IMG" build -q --repo "$work/root/repo" --key "$work/site.key" --name tenant-a --version 1 \
	"$src" >/dev/null
chmod -R a+rX "$work/root"

cat >"$work/rackbootd.conf" <<EOC
user = "nobody"
state_dir = "$work/state"
interface = "br0"
dhcp { mode = "full" pool_start = "10.77.0.100" pool_end = "10.77.0.150" }
tftp { root = "$work/root/tftp" }
http { port = 8080 boot_root = "$work/root/boot" repo_root = "$work/root/repo" }
discovery { kernel = "vmlinuz" initrd = "initrd.img" cmdline = "console=ttyS0 panic=-1 quiet rackboot.shell_timeout=0" }
profile "tenant-a" {
	image = "tenant-a"
	version = "latest"
	wipe = "metadata"
	after = "kexec"
	kernel_args = "e2e.kexec=1"
}
profile "tenant-a-reboot" {
	image = "tenant-a"
	version = "latest"
	wipe = "metadata"
	after = "reboot"
	kernel_args = "e2e.kexec=1"
}
EOC
e2e_rackbootd "$ns" "$build/pxe/rackbootd" "$work/rackbootd.conf" "$work/rackbootd.log"

# provision PROFILE: what the operator API will do, straight in the registry.
provision() {
	python3 - "$work/state/registry.db" "$mac" "$1" <<'EOP'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
now = int(time.time())
db.execute("INSERT INTO nodes(mac, first_seen, last_seen, state, profile) VALUES(?, ?, ?, "
           "'provisioning', ?) ON CONFLICT(mac) DO UPDATE SET state = 'provisioning', "
           "profile = excluded.profile", (sys.argv[2], now, now, sys.argv[3]))
db.commit()
EOP
}

# after_imaged: from the registry, after the node's last agent.imaged
# event: "<ms from imaged to the first DHCP ack without a boot file (the
# installed system's)> <boot scripts served>
# <DHCP answers with a boot file>".
after_imaged() {
	api | python3 -c '
import json, sys
ev = json.load(sys.stdin)["events"]
i = max(k for k, e in enumerate(ev) if e["event"] == "agent.imaged")
t0, rest = ev[i]["ts_ms"], ev[i + 1:]
acks = [e["ts_ms"] for e in rest if e["event"] == "dhcp.ack" and not e["detail"]]
print(acks[0] - t0 if acks else -1,
      sum(1 for e in rest if e["event"] == "http.script"),
      sum(1 for e in rest if e["event"].startswith("dhcp.") and e["detail"]))'
}

show_logs() {
	tail -c 6000 "$1" | tr -d '\033\r' || true
	echo "--- rackbootd"
	tail -n 30 "$work/rackbootd.log"
	echo "--- node"
	api || true
}

# run_node PROFILE NAME: provisions, powers on, waits for the installed
# system's marker; sets t_total, fw_boots, swap_ms, scripts, bootfiles.
run_node() {
	provision "$1"
	rm -f "$disk"
	truncate -s "${size}M" "$disk"
	fwlog=$work/$2.firmware.log
	: >"$fwlog"
	fwargs=""
	[ "$fw" = uefi ] ||
		fwargs="-chardev file,id=fwdbg,path=$fwlog -device isa-debugcon,iobase=0x402,chardev=fwdbg"
	start=$(date +%s)
	# E2E_REBOOT=1: were the agent to fall back to a firmware reboot, the
	# node would still come up (from its disk, after the local-boot
	# script), and the counts below tell the two apart.
	# shellcheck disable=SC2086
	E2E_REBOOT=1 e2e_qemu "$ns" tap0 "$mac" "$fw" "$work/$2.serial.log" \
		-drive "file=$disk,format=raw,if=virtio" $fwargs
	qpid=$E2E_LAST_PID
	# The marker line comes from rcS (after its DHCP).
	if ! e2e_wait_for "$work/$2.serial.log" "RACKBOOT-INSTALLED-MARKER up" 900 "$qpid"; then
		echo "FAIL: $2: the node did not reach the installed system"
		show_logs "$work/$2.serial.log"
		exit 1
	fi
	t_total=$(($(date +%s) - start))
	kill "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
	if [ "$fw" = uefi ]; then
		# OVMF's boot manager lines after the agent started: a second boot
		fw_boots=$(tr -d '\r' <"$work/$2.serial.log" |
			awk '/running rackboot-agent run/ { a = 1 } a && /BdsDxe: / { n = 1 } END { print 1 + n }')
	else
		fw_boots=$(grep -ac 'Start SeaVGABIOS' "$fwlog" || true)
	fi
	read -r swap_ms scripts bootfiles <<EOR
$(after_imaged)
EOR
}

disk=$work/node-disk.raw
run_node tenant-a kexec
grep -a 'kexec' "$work/kexec.serial.log" | tr -d '\r' | head -n 3
grep -qa 'kexec loaded from' "$work/kexec.serial.log" ||
	{ echo "FAIL: the agent did not say what it loaded"; show_logs "$work/kexec.serial.log"; exit 1; }
if [ "$fw_boots" -ne 1 ] || [ "$scripts" -ne 0 ] || [ "$bootfiles" -ne 0 ]; then
	echo "FAIL: a firmware boot after imaging: $fw_boots firmware boots (want 1), $scripts boot" \
		"scripts and $bootfiles DHCP boot-file answers after imaged (want 0)"
	show_logs "$work/kexec.serial.log"
	exit 1
fi
echo "ok: one firmware boot ($fw): netboot -> agent -> kexec -> installed system in ${t_total}s" \
	"under TCG; no boot script or boot file served after imaged"
step=$(node_field 'n["progress"]["step"] + " | " + n["progress"]["message"]' 2>/dev/null || true)
case $step in
"kexec | "*"e2e.kexec=1"*) echo "ok: the API shows the kexec step: $step" ;;
*) echo "FAIL: the API's last step is not kexec with the profile's kernel_args: $step"; exit 1 ;;
esac
state=$(node_field 'n["state"]')
[ "$state" = imaged ] || { echo "FAIL: node state $state, want imaged"; exit 1; }
k_swap=$swap_ms
echo "timeline ($fw, TCG): power-on to installed system ${t_total}s; imaged to the installed" \
	"system's first DHCP ${k_swap} ms (kexec)"
[ "$compare" = 1 ] || exit 0

run_node tenant-a-reboot reboot
if [ "$fw_boots" -lt 2 ]; then
	echo "FAIL: after = reboot showed $fw_boots firmware boots"
	exit 1
fi
echo "timeline ($fw, TCG): after = reboot: power-on to installed system ${t_total}s; imaged to" \
	"the installed system's first DHCP ${swap_ms} ms ($fw_boots firmware boots)"
echo "kexec saved $((swap_ms - k_swap)) ms after imaging ($fw, TCG; a real server's firmware" \
	"self-test comes on top)"
