#!/bin/bash
# End to end, stage 1 as a node meets it, with nothing of the test in the
# node's boot path: a QEMU BIOS node in a network namespace made here
# network-boots from rackbootd (full DHCP, TFTP iPXE, per-node script with a
# boot token) into the initramfs that `rackboot-image initramfs` builds,
# whose /init runs `rackboot-agent run`: plan from the API (profile
# "tenant-a", version "latest" resolved from the signed catalogue),
# inventory, metadata wipe, the signed image onto the virtio disk, status
# and progress reports, then a reboot. The node, now "imaged", boots again,
# gets the local-boot script and must start the installed disk: a small
# Linux (e2e_installed_disk: MBR + extlinux, ext4 root with busybox init)
# whose init prints RACKBOOT-INSTALLED-MARKER once its network is up.
# Then version 2 with a corrupted pack becomes "latest": the agent must
# report "failed" naming the corrupted chunk, and leave no MBR signature.
#   test_agent_deploy.sh [--keep]
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
for b in "$build/pxe/rackbootd" "$IMG" "$AGENT"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
for t in cmp python3 extlinux; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

work=$(mktemp -d /tmp/rb-e2e-deploy.XXXXXX)
chmod 755 "$work"
ns=rbdeploy$$
mac=52:54:00:e2:00:11
api_url=http://10.77.0.1:8080/api/v1/nodes/$mac
cleanup() {
	umount "$work/a" "$work/b" 2>/dev/null || true
	e2e_cleanup
	if [ "$keep" = --keep ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

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
api() { ip netns exec "$ns" curl -sf -H "$E2E_OPAUTH" "$api_url"; }
# node_field EXPR: a Python expression over the node's API document `n`.
node_field() {
	api | python3 -c 'import json, sys; n = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
# wait_state STATE SECONDS QEMU_PID: poll the API until the node is in STATE.
wait_state() {
	for _ in $(seq 1 "$2"); do
		[ "$(node_field 'n["state"]' 2>/dev/null)" = "$1" ] && return 0
		# the node may power off right after its last report: one more look
		kill -0 "$3" 2>/dev/null || { [ "$(node_field 'n["state"]' 2>/dev/null)" = "$1" ]; return; }
		sleep 1
	done
	return 1
}
show_logs() {
	tail -c 4000 "$1" | tr -d '\033\r' || true
	echo "--- rackbootd"
	tail -n 30 "$work/rackbootd.log"
	echo "--- node"
	api || true
}

e2e_netns "$ns"
e2e_tap "$ns" tap0
e2e_roots "$work/root"
mkdir -p "$work/state"

"$IMG" keygen "$work/site" >/dev/null
# The product initramfs, trusting only the site key, for the test kernel.
"$IMG" initramfs -o "$work/root/boot/initrd.img" --trust "$work/site.pub" \
	--kernel-dir "$RB_KERNEL_DIR" --agent "$AGENT" \
	--modules virtio_pci,virtio_net,virtio_blk,ext4,crc32c_generic \
	--level 1 >"$work/initramfs.out" || { cat "$work/initramfs.out"; exit 1; }
# The golden disk: a bootable Linux of 128 MiB whose root is made of the
# same busybox, agent and libraries.
src=$work/source.img
e2e_installed_disk "$src" 128 RACKBOOT-INSTALLED-MARKER "$work/root/boot/initrd.img" ||
	{ echo "FAIL: cannot build the installed-system disk"; exit 1; }
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
	after = "reboot"
}
EOC
e2e_rackbootd "$ns" "$build/pxe/rackbootd" "$work/rackbootd.conf" "$work/rackbootd.log"

disk=$work/node-disk.raw
truncate -s 128M "$disk"
# Old tenant data the metadata wipe and the image must not leave readable
# where the image has data: a fake MBR signature and a filesystem magic.
printf '\125\252' | dd of="$disk" bs=1 seek=510 conv=notrunc status=none

# ---- deploy: netboot, agent, reboot, local boot ----
provision tenant-a
start=$(date +%s)
E2E_REBOOT=1 e2e_qemu "$ns" tap0 "$mac" bios "$work/serial1.log" \
	-drive "file=$disk,format=raw,if=virtio"
qpid=$E2E_LAST_PID
if ! e2e_wait_for "$work/serial1.log" "RACKBOOT-INSTALLED-MARKER up" 900 "$qpid"; then
	echo "FAIL: the node did not deploy and boot its disk"
	show_logs "$work/serial1.log"
	exit 1
fi
t_deploy=$(($(date +%s) - start))
kill "$qpid" 2>/dev/null || true
wait "$qpid" 2>/dev/null || true
grep -qa "rackboot-agent" "$work/serial1.log" ||
	{ echo "FAIL: no agent output on the console"; show_logs "$work/serial1.log"; exit 1; }
echo "ok: netboot -> agent -> reboot -> installed Linux booted from its disk (${t_deploy}s under TCG)"
# Stage 1 wrote the image; stage 2 then installed the agent into the root
# partition (its files only). Outside the partition: byte-identical; inside:
# a clean file system whose tree differs by the agent's files alone.
psize=$((128 - 5))
cmp <(head -c 1048576 "$src") <(head -c 1048576 "$disk") &&
	cmp <(tail -c +$(((psize + 1) * 1048576 + 1)) "$src") <(tail -c +$(((psize + 1) * 1048576 + 1)) "$disk") ||
	{ echo "FAIL: the node's disk differs from the image outside the root partition"; exit 1; }
mkdir -p "$work/a" "$work/b"
dd if="$disk" of="$work/part.img" bs=1M skip=1 count=$psize status=none
e2fsck -fn "$work/part.img" >"$work/fsck.out" 2>&1 ||
	{ echo "FAIL: the node's root file system does not check clean"; cat "$work/fsck.out"; exit 1; }
mount -o ro,loop,offset=1048576 "$src" "$work/a" && mount -o ro,loop "$work/part.img" "$work/b" ||
	{ echo "FAIL: cannot mount the root partitions"; exit 1; }
extra=$(diff -rq "$work/a" "$work/b" 2>&1 | grep -v -e '^Only in [^ ]*/b/etc/init.d: rackboot-agent$' \
	-e '^Only in [^ ]*/b/etc/rackboot: agent.conf$' -e '^Only in [^ ]*/b/etc: systemd$' \
	-e '^Only in [^ ]*/b/usr/sbin: rackboot-agent$' || true)
umount "$work/a" "$work/b"
[ -z "$extra" ] || { echo "FAIL: the root partition differs from the image beyond the agent's files:"; echo "$extra"; exit 1; }
echo "ok: the node's disk is tenant-a version 1: byte-identical outside the root partition, the same tree inside plus the installed agent (stage 2)"
state=$(node_field 'n["state"]')
[ "$state" = imaged ] || { echo "FAIL: node state $state, want imaged"; show_logs /dev/null; exit 1; }
events=$(node_field '" ".join(e["event"] for e in n["events"] if e["event"].startswith("agent."))')
for e in agent.inventory agent.wiping agent.imaging agent.imaged; do
	case " $events " in
	*" $e "*) ;;
	*) echo "FAIL: no $e event (agent events: $events)"; exit 1 ;;
	esac
done
echo "ok: the registry shows the agent's steps: $events"
done_total=$(node_field '"%s/%s" % (n["progress"]["bytes_done"], n["progress"]["bytes_total"])')
case $done_total in
*/0 | 0/*) echo "FAIL: no progress was reported ($done_total)"; exit 1 ;;
esac
echo "ok: progress reported: $done_total bytes"
node_field 'n["inventory"]["disks"][0]["size_bytes"] if n["inventory"]["disks"] else 0' |
	grep -qx 134217728 || { echo "FAIL: the inventory does not show the 128 MiB disk"; exit 1; }
echo "ok: the inventory shows the node's 128 MiB virtio disk"

# ---- version 2, corrupted, becomes "latest": the deploy must fail safe ----
cp "$src" "$work/source2.img"
head -c 262144 /dev/urandom | dd of="$work/source2.img" bs=1M seek=30 conv=notrunc status=none
"$IMG" build -q --repo "$work/root/repo" --key "$work/site.key" --name tenant-a --version 2 \
	"$work/source2.img" >/dev/null
bad=$(python3 - "$work/root/repo" <<'EOP'
import json, sys
m = json.load(open(sys.argv[1] + "/images/tenant-a/2.manifest.json"))
i = len(m["chunks"]) // 2
print(i)
c = m["chunks"][i]
with open("%s/packs/%s.pack" % (sys.argv[1], m["packs"][c[3]]["id"]), "r+b") as f:
    f.seek(c[4] + c[5] // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x55]))
EOP
)
chmod -R a+rX "$work/root"
provision tenant-a
start=$(date +%s)
e2e_qemu "$ns" tap0 "$mac" bios "$work/serial2.log" -drive "file=$disk,format=raw,if=virtio"
qpid=$E2E_LAST_PID
if ! wait_state failed 900 "$qpid"; then
	echo "FAIL: the corrupted deploy was not reported as failed"
	show_logs "$work/serial2.log"
	exit 1
fi
t_bad=$(($(date +%s) - start))
kill "$qpid" 2>/dev/null || true
wait "$qpid" 2>/dev/null || true
why=$(node_field '[e["detail"] for e in n["events"] if e["event"] == "agent.failed"][0]')
# zstd's frame check or the chunk's SHA-256, whichever sees it first
case $why in
*"chunk $bad "*) ;;
*) echo "FAIL: the agent failed for another reason than the corrupted chunk $bad: $why"; exit 1 ;;
esac
echo "ok: corrupted version 2 reported failed: $why"
sig=$(dd if="$disk" bs=1 skip=510 count=2 status=none | od -An -tx1 | tr -d ' ')
[ "$sig" != 55aa ] || { echo "FAIL: a failed deploy left a bootable MBR"; exit 1; }
echo "ok: no MBR signature left on the failed node's disk (bytes 510-511: $sig)"

echo "timeline (TCG): power-on to installed system ${t_deploy}s; failed deploy reported" \
	"in ${t_bad}s"
