#!/bin/bash
# The whole life of two nodes, end to end (issue 8; stage 3 of issue 5), with
# the operator's CLI and nothing of the test in the nodes' boot path:
#  1. rackbootd starts on a fresh state directory with a repository of two
#     signed tenant images (tenant A's and tenant B's: each a small Linux
#     with its own marker on the same base, one disk that boots under BIOS
#     and UEFI), package sets, and profile rules, the GPU rule first (the
#     QEMU nodes have no NVIDIA GPU).
#  2. Two unknown nodes power on together, one BIOS (SeaBIOS + iPXE), one
#     UEFI (OVMF + iPXE, its NVRAM kept across power cycles), network-boot
#     into discovery, report their inventory and power off; the operator
#     provisions them; they get tenant A's profile by rule, are imaged, get
#     the package set, reboot from disk into the installed system, whose
#     agent reports `ready` with the installed image and package versions.
#  3. The operator publishes a new version of a package, adds a package set
#     to one node, and rolls the set back: the running nodes apply each
#     (polling every 5 s, the profile's update_interval_s) and report it.
#  4. Power cut; tenant A's data (a marker pattern in a file of the root
#     file system and in the disks' slack outside every partition) is
#     written onto both disks; the nodes power on into tenant A again.
#  5. The operator reimages the BIOS node to tenant B with a `full` wipe,
#     then the UEFI node with a `metadata` wipe and after = kexec:
#     each installed agent reports `reimage` and arranges a network boot
#     (BootNext on UEFI), stage 1 writes tenant B, the nodes run tenant B's
#     system and report `ready`. On the fully wiped disk no byte of tenant
#     A's pattern is left; the metadata-wipe reimage is a delta (the agent
#     hashes what the disk holds and fetches only the chunks that differ):
#     rackbootd served it less than half the bytes of the full one
#     (/metrics around each, boot files and packages included).
#  6. The kexec node reaches tenant B's system without a second firmware
#     boot; the timeline shows `imaged` to the installed system's network
#     for both nodes.
#  7. Fault: rackbootd is stopped while the BIOS node is being imaged
#     (back to tenant A, full wipe) and started again: the node ends `ready` with
#     tenant A, or `failed` with a reason and no valid partition table.
# Prints a timeline and the bytes moved.
#   test_lifecycle.sh [--keep]   --keep: leave the work directory and logs
#   test_lifecycle.sh --demo     scripts/demo --lifecycle: the same story with
#     the web dashboard forwarded to http://127.0.0.1:8080/ui/ (socat), a
#     pause before each operator step, and everything left running at the
#     end until Ctrl-C.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
keep=""
demo=0
for a in "$@"; do
	case $a in
	--keep) keep=--keep ;;
	--demo) demo=1 keep=--keep ;;
	*) echo "unknown argument $a"; exit 2 ;;
	esac
done
build=${RB_BUILD:-$here/../../build}
IMG=$build/imager/rackboot-image
AGENT=$build/agent/rackboot-agent
CLI=$build/cli/rackboot
e2e_need
for b in "$build/pxe/rackbootd" "$IMG" "$AGENT" "$CLI"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
for t in python3 extlinux objcopy mcopy; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

work=$(mktemp -d /tmp/rb-e2e-life.XXXXXX)
chmod 755 "$work"
ns=rblife$$
if [ "$demo" = 1 ]; then
	ns=rbdemo
	ip netns del "$ns" 2>/dev/null || true
fi
SIZE=192 # MiB: the disks, and the images (ESP with the unified kernel image, root, slack)
# Nodes: 1 = BIOS, 2 = UEFI
mac1=52:54:00:e2:00:21 fw1=bios
mac2=52:54:00:e2:00:22 fw2=uefi
pid1="" pid2=""
cleanup() {
	umount "$work/mnt" 2>/dev/null || true
	e2e_cleanup
	if [ "$keep" = --keep ]; then
		echo "kept $work (rackbootd.log, serial*.log, node*.raw)"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
if [ "$demo" = 1 ]; then trap 'exit 0' INT TERM; else trap 'exit 1' INT TERM; fi

t0=$(date +%s)
timeline=""
mark() { timeline="$timeline$(printf '  %-58s %5ss' "$1" $(($(date +%s) - t0)))
"; }
# say WHAT: a step's headline (and, in the demo, a pause to look at it).
say() {
	echo "== $*"
	[ "$demo" = 1 ] && sleep 5
	return 0
}
fail() {
	echo "FAIL: $*"
	for k in 1 2; do
		echo "--- node $k console (last lines)"
		tail -c 2500 "$(ls -t "$work"/serial$k-*.log 2>/dev/null | head -1)" 2>/dev/null | tr -d '\033\r' || true
		echo "--- node $k"
		m=$(eval echo "\$mac$k")
		ip netns exec "$ns" "$CLI" node show "$m" 2>&1 | head -30 || true
	done
	echo "--- rackbootd"
	tail -n 40 "$work/rackbootd.log"
	exit 1
}
# The operator's CLI, run inside the namespace against the server there.
rb() { ip netns exec "$ns" "$CLI" "$@"; }
# field N EXPR: a Python expression over node N's API document `n`.
field() {
	rb --json node show "$(eval echo "\$mac$1")" 2>/dev/null |
		python3 -c 'import json, sys; n = json.load(sys.stdin); print(eval(sys.argv[1]))' "$2"
}
# wait_node N EXPR SECONDS: until EXPR (over `n`) is True; fails early when
# node N's QEMU has exited and EXPR is still not True.
wait_node() {
	for _ in $(seq 1 "$3"); do
		[ "$(field "$1" "$2" 2>/dev/null)" = True ] && return 0
		kill -0 "$(eval echo "\$pid$1")" 2>/dev/null ||
			{ [ "$(field "$1" "$2" 2>/dev/null)" = True ]; return; }
		sleep 1
	done
	return 1
}
PKGS='" ".join(sorted("%s=%s" % (p["name"], p["version"]) for p in (n.get("installed") or {}).get("packages", [])))'
IMAGE='"%s %s" % (n["installed"]["image"]["name"], n["installed"]["image"]["version"])'
# power_on N STEP [reboot]: starts node N (serial log serialN-STEP.log);
# "reboot": a reboot restarts the node instead of ending QEMU.
power_on() {
	eval "fw=\$fw$1 m=\$mac$1"
	E2E_REBOOT=0
	[ "${3:-}" = reboot ] && E2E_REBOOT=1
	E2E_REBOOT=$E2E_REBOOT E2E_OVMF_VARS="$work/node$1.vars" \
		e2e_qemu "$ns" "tap$1" "$m" "$fw" "$work/serial$1-$2.log" \
		-drive "file=$work/node$1.raw,format=raw,if=virtio"
	eval "pid$1=\$E2E_LAST_PID serial$1=\$work/serial$1-\$2.log"
}
power_off() {
	p=$(eval echo "\$pid$1")
	kill "$p" 2>/dev/null || true
	wait "$p" 2>/dev/null || true
}
# wait_up N MARKER SECONDS: the installed system's line on node N's console.
wait_up() {
	e2e_wait_for "$(eval echo "\$serial$1")" "$2 up" "$3" "$(eval echo "\$pid$1")"
}
http_bytes() {
	ip netns exec "$ns" curl -sf http://10.77.0.1:8080/metrics |
		awk '$1 == "rackboot_http_bytes_sent_total" { printf "%d\n", $2 }'
}
# last_ts N EVENT: the time (ms) of node N's newest EVENT.
last_ts() { field "$1" "max([e[\"ts_ms\"] for e in n[\"events\"] if e[\"event\"] == \"$2\"] or [0])"; }

e2e_netns "$ns"
e2e_tap "$ns" tap1
e2e_tap "$ns" tap2
e2e_roots "$work/root"
mkdir -p "$work/state" "$work/pk" "$work/mnt"

# ---- 1. the repository: two tenants on one base, packages ----
"$IMG" keygen "$work/site" >/dev/null
# efivarfs: the installed UEFI system's agent sets BootNext for a reimage
"$IMG" initramfs -o "$work/root/boot/initrd.img" --trust "$work/site.pub" \
	--kernel-dir "$RB_KERNEL_DIR" --agent "$AGENT" \
	--modules virtio_pci,virtio_net,virtio_blk,ext4,crc32c_generic,efivarfs \
	--level 1 >"$work/initramfs.out" || { cat "$work/initramfs.out"; exit 1; }
# The installed systems mount their root read-write: their agent changes it.
E2E_ROOT_MODE=rw e2e_installed_disk_hybrid "$work/tenant-a.img" "$SIZE" TENANT-A-SYSTEM \
	"$work/root/boot/initrd.img" || fail "cannot build tenant A's disk"
# where the root partition starts (MiB), for writing into it
root_mib=$(sfdisk -d "$work/tenant-a.img" | awk -F'[=,]' '/name="root"/ { print $2 / 2048 }')
# Tenant B's: tenant A's disk with its own marker and a file of its own,
# as a new release of a shared base is (the blocks of the rest stay put)
cp "$work/tenant-a.img" "$work/tenant-b.img"
mount -o loop,offset=$((root_mib * 1048576)) "$work/tenant-b.img" "$work/mnt" ||
	fail "cannot mount tenant B's root"
sed -i 's/TENANT-A-SYSTEM/TENANT-B-SYSTEM/' "$work/mnt/etc/init.d/rcS"
head -c 2097152 /dev/urandom >"$work/mnt/etc/tenant-b.release"
umount "$work/mnt"
for tn in a b; do
	"$IMG" build -q --repo "$work/root/repo" --key "$work/site.key" --name "tenant-$tn" \
		--version 1 "$work/tenant-$tn.img" >/dev/null || fail "rackboot-image build tenant-$tn"
done
pkg() { # pkg NAME VERSION: build a one-file package and index it (publish)
	d=$work/pk/$1-$2
	mkdir -p "$d/tree/usr/share/$1"
	echo "$1 $2" >"$d/tree/usr/share/$1/VERSION"
	printf '{"name": "%s", "version": "%s", "arch": "all", "depends": [], "conflicts": [], "scripts": {}}\n' \
		"$1" "$2" >"$d/meta.json"
	"$IMG" pkg build "$d/tree" --meta "$d/meta.json" --out "$d.tar.zst" >/dev/null &&
		"$IMG" pkg index --repo "$work/root/repo" --key "$work/site.key" "$d.tar.zst" >/dev/null ||
		fail "pkg $1 $2"
	chmod -R a+rX "$work/root"
}
pkg site-hello 1.0
pkg extra-tool 2.5

cat >"$work/rackbootd.conf" <<EOC
user = "nobody"
state_dir = "$work/state"
interface = "br0"
dhcp { mode = "full" pool_start = "10.77.0.100" pool_end = "10.77.0.150" }
tftp { root = "$work/root/tftp" }
http { port = 8080 boot_root = "$work/root/boot" repo_root = "$work/root/repo" }
discovery { kernel = "vmlinuz" initrd = "initrd.img" cmdline = "console=ttyS0 panic=-1 quiet rackboot.shell_timeout=0" }
package_set "site" { packages = {"site-hello"} }
package_set "extra" { packages = {"extra-tool"} }
profile "gpu" {
	image = "tenant-a"
	package_sets = {"site"}
	kernel_args = "modprobe.blacklist=nouveau iommu=pt"
}
profile "tenant-a" {
	image = "tenant-a"
	wipe = "metadata"
	package_sets = {"site"}
	update_interval_s = 5
	update_jitter_s = 0
}
profile "tenant-b" {
	image = "tenant-b"
	wipe = "metadata"
	package_sets = {"site"}
	update_interval_s = 5
	update_jitter_s = 0
}
profile "tenant-b-fast" {
	image = "tenant-b"
	wipe = "metadata"
	after = "kexec"
	package_sets = {"site"}
	update_interval_s = 5
	update_jitter_s = 0
}
rule "gpu-nodes" { gpu_vendor = "0x10de" min_gpus = 1 profile = "gpu" }
rule "lab-rack" { mac = "52:54:00:e2:*" profile = "tenant-a" }
EOC
e2e_rackbootd "$ns" "$build/pxe/rackbootd" "$work/rackbootd.conf" "$work/rackbootd.log"
export RACKBOOT_SERVER=http://10.77.0.1:8080 RACKBOOT_TOKEN=${E2E_OPAUTH#Authorization: Bearer }
mark "rackbootd up, repository built"
if [ "$demo" = 1 ]; then
	# The dashboard on the host's loopback: socat inside the namespace on a
	# Unix socket, socat on 127.0.0.1:8080 outside.
	ip netns exec "$ns" socat "UNIX-LISTEN:$work/ui.sock,fork" TCP:10.77.0.1:8080 &
	E2E_PIDS="$E2E_PIDS $!"
	sleep 0.5
	socat TCP-LISTEN:8080,bind=127.0.0.1,reuseaddr,fork "UNIX-CONNECT:$work/ui.sock" &
	E2E_PIDS="$E2E_PIDS $!"
	cat <<EOT

rackbootd serves the isolated network 10.77.0.0/24 in namespace "$ns".
  dashboard:  http://127.0.0.1:8080/ui/   (sign in with the operator token below)
  token:      $RACKBOOT_TOKEN
  the CLI:    ip netns exec $ns env RACKBOOT_TOKEN=$RACKBOOT_TOKEN $CLI \\
                  --server $RACKBOOT_SERVER node ls --watch
  events:     ip netns exec $ns env RACKBOOT_TOKEN=$RACKBOOT_TOKEN $CLI \\
                  --server $RACKBOOT_SERVER events -f
  logs:       $work/rackbootd.log, node consoles: $work/serial*.log
The nodes are emulated (QEMU without KVM): each boot takes a minute or two.

EOT
fi

truncate -s "${SIZE}M" "$work/node1.raw" "$work/node2.raw"

# ---- 2. discovery, provisioning by rule, install, ready ----
say "two unknown nodes power on: discovery ($mac1 BIOS, $mac2 UEFI)"
power_on 1 discovery
power_on 2 discovery
for k in 1 2; do
	wait_node $k 'n["state"] == "discovered"' 600 || fail "unknown node $k was not discovered"
	power_off $k
	[ "$(field $k 'n["inventory"]["disks"][0]["size_bytes"]')" = $((SIZE * 1048576)) ] ||
		fail "node $k's inventory does not show its $SIZE MiB disk"
done
mark "both discovered (inventory, powered off)"
say "rackboot node provision $mac1 $mac2; the nodes power on again"
rb node provision "$mac1" "$mac2" >/dev/null || fail "rackboot node provision"
power_on 1 deploy reboot
power_on 2 deploy reboot
for k in 1 2; do
	wait_up $k TENANT-A-SYSTEM 900 || fail "node $k did not boot tenant A's system"
	mark "node $k: tenant A imaged, installed, booted from disk"
done
for k in 1 2; do
	wait_node $k 'n["state"] == "ready"' 120 || fail "node $k's installed agent did not report ready"
	got=$(field $k "$PKGS")
	[ "$got" = "site-hello=1.0" ] || fail "node $k installed packages: '$got', want site-hello=1.0"
	img=$(field $k "$IMAGE")
	[ "$img" = "tenant-a 1" ] || fail "node $k installed image: '$img', want tenant-a 1"
	m=$(eval echo "\$mac$k")
	grep -q "plan $m: image tenant-a 1, profile tenant-a (rule:lab-rack)" "$work/rackbootd.log" ||
		fail "node $k's plan did not come from rule lab-rack: $(grep "plan $m" "$work/rackbootd.log" | tail -1)"
done
mark "both installed agents report ready"
grep -qa "EFI stub" "$serial2" || grep -qa "BdsDxe" "$serial2" || fail "node 2 did not boot through UEFI"
echo "ok: two nodes (BIOS, UEFI) discovered, provisioned by rule, imaged, installed: ready with tenant-a 1 and site-hello=1.0"

# ---- 3. updates in place: a new version, an added set, a rollback ----
say "publishing site-hello 1.1 (rackboot-image pkg index)"
pkg site-hello 1.1
for k in 1 2; do
	wait_node $k "$PKGS == 'site-hello=1.1'" 180 ||
		fail "node $k did not apply site-hello 1.1 (has: $(field $k "$PKGS"))"
done
mark "site-hello 1.1 published -> applied on both"
echo "ok: a new package version published: both nodes applied it (site-hello=1.1)"
say "rackboot node set $mac1 --package-sets site,extra"
rb node set "$mac1" --package-sets site,extra >/dev/null || fail "rackboot node set --package-sets"
wait_node 1 "$PKGS == 'extra-tool=2.5 site-hello=1.1'" 180 ||
	fail "node 1 did not install the added set (has: $(field 1 "$PKGS"))"
mark "package set added to node 1 -> applied"
echo "ok: a package set added to node 1: installed (extra-tool=2.5)"
say "rackboot pkgset rollback site"
rb pkgset rollback site >/dev/null || fail "rackboot pkgset rollback site"
wait_node 1 "$PKGS == 'extra-tool=2.5 site-hello=1.0'" 180 ||
	fail "node 1 did not roll site back (has: $(field 1 "$PKGS"))"
wait_node 2 "$PKGS == 'site-hello=1.0'" 180 ||
	fail "node 2 did not roll site back (has: $(field 2 "$PKGS"))"
mark "set rolled back -> applied on both"
echo "ok: the operator rolled the set back: both nodes went back to site-hello=1.0"
for k in 1 2; do
	[ "$(field $k 'n["state"]')" = ready ] || fail "node $k is not ready after its updates"
done

# ---- 4. power cut; tenant A's data onto the disks; power on ----
say "power cut; tenant A's data onto both disks; power on"
power_off 1
power_off 2
secret="TENANT-A-SECRET-$$-$(date +%s%N)"
for k in 1 2; do
	python3 - "$work/node$k.raw" "$secret" "$SIZE" <<'EOP'
import sys
path, secret, size = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
blk = (secret + b"\n") * (1048576 // (len(secret) + 1))
with open(path, "r+b") as f:
    f.seek((size - 4) * 1048576)      # the slack after the last partition
    for _ in range(3):
        f.write(blk)
EOP
	mount -o loop,offset=$((root_mib * 1048576)) "$work/node$k.raw" "$work/mnt" ||
		fail "cannot mount node $k's root"
	python3 -c 'import sys; b = (sys.argv[1] + "\n").encode() * 100000; open(sys.argv[2], "wb").write(b)' \
		"$secret" "$work/mnt/root/tenant-data.bin"
	umount "$work/mnt"
	before=$(grep -ac -- "$secret" "$work/node$k.raw" || true)
	[ "$before" -gt 100000 ] || fail "the tenant pattern did not reach node $k's disk ($before lines)"
done
echo "ok: tenant A's data written on both disks ($before lines of its pattern on each)"
power_on 1 tenant-a reboot
power_on 2 tenant-a reboot
for k in 1 2; do
	wait_up $k TENANT-A-SYSTEM 600 || fail "node $k did not boot tenant A again"
	wait_node $k 'n["state"] == "ready"' 120 || fail "node $k's agent did not report ready after the power cut"
done
mark "power cut, tenant data, both back up: ready"

# ---- 5. reimage to tenant B: full wipe (BIOS), metadata + kexec (UEFI) ----
reimage() { # reimage N PROFILE WIPE: through the running installed agent
	m=$(eval echo "\$mac$1")
	say "rackboot node set $m --profile $2; rackboot node reimage $m --wipe $3"
	b0=$(http_bytes)
	rb node set "$m" --profile "$2" >/dev/null || fail "rackboot node set --profile $2"
	rb node reimage "$m" --wipe "$3" --yes >/dev/null || fail "rackboot node reimage $m"
	wait_up "$1" TENANT-B-SYSTEM 900 || fail "node $1 did not boot tenant B's system"
	t_up=$(date +%s%3N)
	wait_node "$1" 'n["state"] == "ready"' 120 || fail "node $1: tenant B's agent did not report ready"
	moved=$(($(http_bytes) - b0))
	t_imaged=$(last_ts "$1" agent.imaged)
	swap=$(((t_up - t_imaged) / 1000))
	events=$(field "$1" '" ".join(e["event"] for e in n["events"])')
	case " $events " in
	*" agent.reimage "*) ;;
	*) fail "no agent.reimage event from node $1's installed agent (events: $events)" ;;
	esac
	# events are oldest first
	wiped=$(field "$1" '[e["detail"] for e in n["events"] if e["event"] == "agent.wiping"][-1]')
	case $wiped in
	*"$3"*) ;;
	*) fail "node $1's wipe was not $3: $wiped" ;;
	esac
	img=$(field "$1" "$IMAGE")
	[ "$img" = "tenant-b 1" ] || fail "node $1's installed image after the reimage: '$img', want tenant-b 1"
	[ "$(field "$1" 'n["reimage_wipe"] == "" and n["events"][-1]["event"] != "op.reimage"')" = True ] ||
		fail "node $1's reimage still shows as pending after it was done"
}
reimage 1 tenant-b full
full_bytes=$moved swap1=$swap
mark "node 1 reimaged (full wipe, firmware reboot): tenant B ready"
power_off 1
after=$(grep -ac -- "$secret" "$work/node1.raw" || true)
[ "$after" = 0 ] || fail "$after lines of tenant A's pattern survived node 1's full wipe"
echo "ok: node 1 reimaged through its running agent to tenant B with a full wipe ($wiped): no byte of tenant A's pattern on its disk"

reimage 2 tenant-b-fast metadata
delta_bytes=$moved swap2=$swap
mark "node 2 reimaged (metadata wipe, kexec): tenant B ready"
# Delta: tenant B shares A's base, so the metadata-wipe reimage fetches
# the chunks that differ; both windows include the same boot files.
[ $((delta_bytes * 2)) -lt "$full_bytes" ] ||
	fail "node 2's metadata-wipe (delta) reimage moved $delta_bytes bytes, not under half of node 1's full one ($full_bytes)"
echo "ok: node 2's delta reimage moved $delta_bytes bytes, node 1's full one $full_bytes (rackbootd /metrics, boot files and packages included)"
echo "node 2's agent: $(field 2 '[e["detail"] for e in n["events"] if e["event"] == "agent.imaged"][-1]')"
# kexec: the agent said so, and no firmware banner after the agent started
grep -qa "kexec loaded from" "$serial2" || fail "node 2's agent did not load the installed kernel by kexec"
tail -c +"$(grep -abo "kexec loaded from" "$serial2" | tail -1 | cut -d: -f1)" "$serial2" | grep -qa "BdsDxe" &&
	fail "node 2 went through its firmware after kexec"
echo "ok: node 2 started tenant B's kernel by kexec, no firmware boot: imaged -> system up ${swap2}s, node 1 through the firmware ${swap1}s"
left=$(grep -ac -- "$secret" "$work/node2.raw" || true)
echo "note: node 2 (metadata wipe) holds $left lines of tenant A's pattern (a metadata wipe does not erase data blocks; what the image has as zeros the agent zeroes)"

# ---- 7. fault: rackbootd stopped and started while node 1 images ----
say "reimage node 1 to tenant A; rackbootd stopped and started in the middle"
power_on 1 fault reboot
wait_up 1 TENANT-B-SYSTEM 600 || fail "node 1 did not boot tenant B before the fault run"
wait_node 1 'n["state"] == "ready"' 120 || fail "node 1 not ready before the fault run"
rb node set "$mac1" --profile tenant-a >/dev/null || fail "rackboot node set --profile tenant-a"
# a full wipe: the imaging lasts long enough to be cut
rb node reimage "$mac1" --wipe full --yes >/dev/null || fail "rackboot node reimage (fault run)"
imaging=0
for _ in $(seq 1 3000); do # 0.2 s steps: the node must be caught while it writes
	ip netns exec "$ns" curl -sf -H "$E2E_OPAUTH" "$RACKBOOT_SERVER/api/v1/nodes/$mac1" |
		grep -q '"state": *"imaging"' && { imaging=1; break; }
	sleep 0.2
done
[ "$imaging" = 1 ] || fail "node 1 did not start imaging"
kill "$E2E_RACKBOOTD_PID"
wait "$E2E_RACKBOOTD_PID" 2>/dev/null || true
mark "fault: rackbootd stopped during node 1's imaging"
sleep 10
mv "$work/rackbootd.log" "$work/rackbootd-1.log"
e2e_rackbootd "$ns" "$build/pxe/rackbootd" "$work/rackbootd.conf" "$work/rackbootd.log"
wait_node 1 'n["state"] in ("ready", "failed")' 900 || fail "node 1 ended neither ready nor failed after the fault"
st=$(field 1 'n["state"]')
if [ "$st" = ready ]; then
	img=$(field 1 "$IMAGE")
	[ "$img" = "tenant-a 1" ] || fail "node 1 ready after the fault with '$img', want tenant-a 1"
	grep -qa "TENANT-A-SYSTEM up" "$serial1" || fail "node 1 ready but tenant A's system never came up"
	echo "ok: fault run: rackbootd restarted mid-imaging, node 1 resumed and runs tenant A (ready)"
else
	why=$(field 1 '[e["detail"] for e in n["events"] if e["event"] == "agent.failed"][-1]')
	power_off 1
	sig=$(dd if="$work/node1.raw" bs=1 skip=510 count=2 status=none | od -An -tx1 | tr -d ' ')
	[ "$sig" != 55aa ] || fail "node 1 failed after the fault but left a bootable MBR"
	grep -qa "TENANT-A-SYSTEM up" "$serial1" && fail "node 1 booted a half-written disk"
	echo "ok: fault run: node 1 failed with a reason ($why), no partition table left"
fi
mark "fault run ended: node 1 $st"

echo "timeline (TCG, seconds since the test started):"
printf '%s' "$timeline"
echo "imaged -> installed system up: node 1 (firmware reboot) ${swap1}s, node 2 (kexec) ${swap2}s"
echo "bytes served by rackbootd: node 1 full reimage $full_bytes, node 2 metadata-wipe reimage $delta_bytes"
if [ "$demo" = 1 ]; then
	echo "The nodes keep running; rackbootd, the dashboard and the CLI stay up."
	echo "Ctrl-C stops the demo."
	wait
fi
