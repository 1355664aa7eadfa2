#!/bin/bash
# End to end, first version of the deploy path: a QEMU BIOS node in a
# network namespace made here network-boots from rackbootd into an
# initramfs holding rackboot-agent, which writes a signed image from
# rackbootd's repository onto the node's virtio disk and powers off. The
# node, now "ready" in the registry, boots again, gets the local-boot
# script and must start the installed disk, whose MBR prints
# RACKBOOT-LOCALDISK-MARKER. Then a deploy of a version with a corrupted
# pack over the installed disk must fail (agent exit 1) and leave no MBR
# signature behind.
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
command -v cmp >/dev/null || { echo "SKIP: cmp not installed"; exit 77; }

work=$(mktemp -d /tmp/rb-e2e-deploy.XXXXXX)
chmod 755 "$work"
ns=rbdeploy$$
mac=52:54:00:e2:00:11
cleanup() {
	e2e_cleanup
	if [ "$keep" = --keep ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# set_state STATE: what the operator API will do, straight in the registry.
set_state() {
	python3 - "$work/state/registry.db" "$mac" "$1" <<'EOP'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
now = int(time.time())
db.execute("INSERT INTO nodes(mac, first_seen, last_seen, state) VALUES(?, ?, ?, ?) "
           "ON CONFLICT(mac) DO UPDATE SET state = excluded.state",
           (sys.argv[2], now, now, sys.argv[3]))
db.commit()
EOP
}
# agent_boot VERSION SERIAL_LOG: boot the node into the agent initramfs
# with a job for VERSION; sets agent_rc to the agent's exit status.
agent_boot() {
	printf 'REPO=http://10.77.0.1:8080/repo\nNAME=tenant-a\nVERSION=%s\n' "$1" >"$work/job"
	e2e_agent_initramfs "$work/root/boot/initrd.img" "$AGENT" "$work/site.pub" "$work/job"
	chmod a+r "$work/root/boot/initrd.img"
	e2e_qemu "$ns" tap0 "$mac" bios "$2" -drive "file=$disk,format=raw,if=virtio"
	qpid=$E2E_LAST_PID
	if ! e2e_wait_for "$2" "RACKBOOT-AGENT-DONE rc=" 300 "$qpid"; then
		echo "FAIL: the agent did not finish (version $1)"
		tail -c 3000 "$2" | tr -d '\033' || true
		tail -n 40 "$work/rackbootd.log"
		exit 1
	fi
	# poweroff -f ends QEMU (-no-reboot); the disk is complete after that.
	for _ in $(seq 1 60); do kill -0 "$qpid" 2>/dev/null || break; sleep 0.5; done
	! kill -0 "$qpid" 2>/dev/null || { echo "FAIL: QEMU still running after poweroff"; exit 1; }
	grep -a "^image \|rackboot-agent\|RACKBOOT-AGENT-DONE" "$2" | tr -d '\r'
	agent_rc=$(grep -ao 'RACKBOOT-AGENT-DONE rc=[0-9]*' "$2" | head -n 1 | cut -d= -f2)
}

e2e_netns "$ns"
e2e_tap "$ns" tap0
e2e_roots "$work/root"
mkdir -p "$work/state"

# The golden disk: an MBR that prints the marker, random data beyond the
# first MiB so that the image has real chunks, 64 MiB in all.
src=$work/source.img
e2e_marker_disk "$src"
truncate -s 64M "$src"
for mib in 3 17 40 63; do
	head -c 262144 /dev/urandom | dd of="$src" bs=1M seek=$mib conv=notrunc status=none
done
"$IMG" keygen "$work/site" >/dev/null
"$IMG" build --repo "$work/root/repo" --key "$work/site.key" --name tenant-a --version 1 "$src" \
	>/dev/null
chmod -R a+rX "$work/root"

cat >"$work/rackbootd.conf" <<EOC
user = "nobody"
state_dir = "$work/state"
interface = "br0"
dhcp { mode = "full" pool_start = "10.77.0.100" pool_end = "10.77.0.150" }
tftp { root = "$work/root/tftp" }
http { port = 8080 boot_root = "$work/root/boot" repo_root = "$work/root/repo" }
discovery { kernel = "vmlinuz" initrd = "initrd.img" cmdline = "console=ttyS0 panic=-1 quiet" }
EOC
e2e_rackbootd "$ns" "$build/pxe/rackbootd" "$work/rackbootd.conf" "$work/rackbootd.log"

disk=$work/node-disk.raw
truncate -s 64M "$disk"

# ---- boot 1: network boot, the agent writes version 1 ----
start=$(date +%s)
agent_boot 1 "$work/serial1.log"
t_agent=$(($(date +%s) - start))
[ "$agent_rc" = 0 ] || { echo "FAIL: agent exit $agent_rc"; tail -c 3000 "$work/serial1.log"; exit 1; }
cmp "$src" "$disk" || { echo "FAIL: the node's disk differs from the source image"; exit 1; }
echo "ok: the node's disk is byte-identical to tenant-a version 1"
api=$(ip netns exec "$ns" curl -sf "http://10.77.0.1:8080/api/v1/nodes/$mac") ||
	{ echo "FAIL: API has no node $mac"; exit 1; }
for f in vmlinuz initrd.img; do
	echo "$api" | grep -q "\"event\": *\"http.file\", *\"detail\": *\"$f" ||
		{ echo "FAIL: no http.file event for $f: $api"; exit 1; }
done
echo "ok: registry has the kernel and initramfs downloads of $mac"

# ---- boot 2: the node is ready; the local-boot script starts its disk ----
set_state ready
start=$(date +%s)
e2e_qemu "$ns" tap0 "$mac" bios "$work/serial2.log" -drive "file=$disk,format=raw,if=virtio"
if ! e2e_wait_for "$work/serial2.log" "RACKBOOT-LOCALDISK-MARKER" 300 "$E2E_LAST_PID"; then
	echo "FAIL: the installed disk did not boot"
	tail -c 3000 "$work/serial2.log" | tr -d '\033'
	exit 1
fi
t_local=$(($(date +%s) - start))
! grep -qa "RACKBOOT-AGENT-DONE" "$work/serial2.log" ||
	{ echo "FAIL: the ready node booted the agent again"; exit 1; }
echo "ok: the installed system booted from the local disk"
kill "$E2E_LAST_PID"
wait "$E2E_LAST_PID" 2>/dev/null || true

# ---- boot 3: version 2 with a corrupted pack over the installed disk ----
cp "$src" "$work/source2.img"
head -c 262144 /dev/urandom | dd of="$work/source2.img" bs=1M seek=30 conv=notrunc status=none
"$IMG" build --repo "$work/root/repo" --key "$work/site.key" --name tenant-a --version 2 \
	"$work/source2.img" >/dev/null
python3 - "$work/root/repo" <<'EOP'
import json, sys
m = json.load(open(sys.argv[1] + "/images/tenant-a/2.manifest.json"))
c = m["chunks"][len(m["chunks"]) // 2]
with open("%s/packs/%s.pack" % (sys.argv[1], m["packs"][c[3]]["id"]), "r+b") as f:
    f.seek(c[4] + c[5] // 2)
    b = f.read(1)
    f.seek(-1, 1)
    f.write(bytes([b[0] ^ 0x55]))
EOP
chmod -R a+rX "$work/root"
set_state discovered
start=$(date +%s)
agent_boot 2 "$work/serial3.log"
t_bad=$(($(date +%s) - start))
[ "$agent_rc" = 1 ] || { echo "FAIL: corrupted version 2: agent exit $agent_rc, want 1"; exit 1; }
grep -qa "sha256 mismatch" "$work/serial3.log" ||
	{ echo "FAIL: the agent failed for another reason than the corrupted chunk"; exit 1; }
sig=$(dd if="$disk" bs=1 skip=510 count=2 status=none | od -An -tx1 | tr -d ' ')
[ "$sig" != 55aa ] || { echo "FAIL: a failed deploy left a bootable MBR"; exit 1; }
echo "ok: corrupted version 2: agent exit 1, no MBR signature left (bytes 510-511: $sig)"

echo "timeline: agent done ${t_agent}s after power-on; installed system marker" \
	"${t_local}s after the second power-on; failed deploy reported in ${t_bad}s"
