#!/bin/bash
# The whole life of a node, end to end (issue 8; stage 3 of issue 5), with
# the operator's CLI and nothing of the test in the node's boot path:
#  1. rackbootd starts on a fresh state directory with a repository of two
#     signed tenant images (tenant A's and tenant B's: each a bootable Linux
#     with its own marker on the same base) and package sets, and profile
#     rules, the GPU rule first (the QEMU node has no NVIDIA GPU).
#  2. An unknown BIOS node powers on, network-boots into discovery, reports
#     its inventory and powers off; the operator provisions it; it gets
#     tenant A's profile by rule, is imaged, gets its package set, reboots
#     from its disk into the installed system, whose agent reports `ready`
#     with the installed image and package versions.
#  3. The operator publishes a new version of a package, adds a package set
#     to the node, and rolls the set back: the running node applies each
#     (polling every 5 s, the profile's update_interval_s) and reports the
#     versions.
#  4. Power cut; tenant A's data (a marker pattern in a file of the root
#     file system and in the disk's slack outside every partition) is
#     written onto the node's disk; the node powers on into tenant A again.
#  5. The operator reimages it to tenant B with a full wipe: the installed
#     agent reports `reimage` and reboots into the network, stage 1 wipes
#     and writes tenant B, the node boots tenant B's system and reports
#     `ready`; no byte of tenant A's marker pattern is left on the disk.
# Prints a timeline.
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
for t in python3 extlinux; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

work=$(mktemp -d /tmp/rb-e2e-life.XXXXXX)
chmod 755 "$work"
ns=rblife$$
if [ "$demo" = 1 ]; then
	ns=rbdemo
	ip netns del "$ns" 2>/dev/null || true
fi
mac=52:54:00:e2:00:21
cleanup() {
	umount "$work/mnt" 2>/dev/null || true
	e2e_cleanup
	if [ "$keep" = --keep ]; then
		echo "kept $work (rackbootd.log, serial*.log, node-disk.raw)"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
if [ "$demo" = 1 ]; then trap 'exit 0' INT TERM; else trap 'exit 1' INT TERM; fi
# say WHAT: a step's headline (and, in the demo, a pause to look at it).
say() {
	echo "== $*"
	[ "$demo" = 1 ] && sleep 5
	return 0
}

t0=$(date +%s)
timeline=""
mark() { timeline="$timeline$(printf '  %-44s %5ss' "$1" $(($(date +%s) - t0)))
"; }
fail() {
	echo "FAIL: $*"
	echo "--- serial (last lines)"
	tail -c 3000 "$serial" 2>/dev/null | tr -d '\033\r' || true
	echo "--- rackbootd"
	tail -n 40 "$work/rackbootd.log"
	echo "--- node"
	"$CLI" node show "$mac" 2>&1 | head -40 || true
	exit 1
}
# The operator's CLI, run inside the namespace against the server there.
rb() { ip netns exec "$ns" "$CLI" "$@"; }
# node_field EXPR: a Python expression over the node's API document `n`.
node_field() {
	rb --json node show "$mac" 2>/dev/null |
		python3 -c 'import json, sys; n = json.load(sys.stdin); print(eval(sys.argv[1]))' "$1"
}
# wait_for_node EXPR SECONDS WHAT: until EXPR (over `n`) is True.
wait_for_node() {
	for _ in $(seq 1 "$2"); do
		[ "$(node_field "$1" 2>/dev/null)" = True ] && return 0
		kill -0 "$qpid" 2>/dev/null || { [ "$(node_field "$1" 2>/dev/null)" = True ]; return; }
		sleep 1
	done
	return 1
}
pkgs_expr() { # the node's installed packages as "name=version ..." (sorted)
	echo '" ".join(sorted("%s=%s" % (p["name"], p["version"]) for p in (n.get("installed") or {}).get("packages", [])))'
}
stop_node() {
	kill "$qpid" 2>/dev/null || true
	wait "$qpid" 2>/dev/null || true
}

e2e_netns "$ns"
e2e_tap "$ns" tap0
e2e_roots "$work/root"
mkdir -p "$work/state" "$work/pk" "$work/mnt"

# ---- 1. the repository: two tenants on one base, packages ----
"$IMG" keygen "$work/site" >/dev/null
"$IMG" initramfs -o "$work/root/boot/initrd.img" --trust "$work/site.pub" \
	--kernel-dir "$RB_KERNEL_DIR" --agent "$AGENT" \
	--modules virtio_pci,virtio_net,virtio_blk,ext4,crc32c_generic \
	--level 1 >"$work/initramfs.out" || { cat "$work/initramfs.out"; exit 1; }
# The installed systems mount their root read-write: their agent changes it.
E2E_ROOT_MODE=rw e2e_installed_disk "$work/tenant-a.img" 128 TENANT-A-SYSTEM \
	"$work/root/boot/initrd.img" || fail "cannot build tenant A's disk"
E2E_ROOT_MODE=rw e2e_installed_disk "$work/tenant-b.img" 128 TENANT-B-SYSTEM \
	"$work/root/boot/initrd.img" || fail "cannot build tenant B's disk"
for t in a b; do
	"$IMG" build -q --repo "$work/root/repo" --key "$work/site.key" --name "tenant-$t" \
		--version 1 "$work/tenant-$t.img" >/dev/null || fail "rackboot-image build tenant-$t"
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
chmod -R a+rX "$work/root"

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
  logs:       $work/rackbootd.log, node console: $work/serial*.log
The node is emulated (QEMU without KVM): each boot takes a minute or two.

EOT
fi

disk=$work/node-disk.raw
truncate -s 128M "$disk"

# ---- 2. discovery, provisioning by rule, install, ready ----
say "an unknown node ($mac) powers on: discovery"
serial=$work/serial1.log
e2e_qemu "$ns" tap0 "$mac" bios "$serial" -drive "file=$disk,format=raw,if=virtio"
qpid=$E2E_LAST_PID
wait_for_node 'n["state"] == "discovered"' 600 || fail "the unknown node was not discovered"
stop_node
mark "discovered (inventory, powered off)"
[ "$(node_field 'n["inventory"]["disks"][0]["size_bytes"]')" = 134217728 ] ||
	fail "the inventory does not show the 128 MiB disk"
say "rackboot node provision $mac; the node powers on again"
rb node provision "$mac" >/dev/null || fail "rackboot node provision"
serial=$work/serial2.log
E2E_REBOOT=1 e2e_qemu "$ns" tap0 "$mac" bios "$serial" -drive "file=$disk,format=raw,if=virtio"
qpid=$E2E_LAST_PID
e2e_wait_for "$serial" "TENANT-A-SYSTEM up" 900 "$qpid" || fail "the node did not boot tenant A's system"
mark "tenant A imaged, installed, booted from disk"
wait_for_node 'n["state"] == "ready"' 120 || fail "the installed agent did not report ready"
mark "installed agent reports ready"
got=$(node_field "$(pkgs_expr)")
[ "$got" = "site-hello=1.0" ] || fail "installed packages: '$got', want site-hello=1.0"
img=$(node_field '"%s %s" % (n["installed"]["image"]["name"], n["installed"]["image"]["version"])')
[ "$img" = "tenant-a 1" ] || fail "installed image: '$img', want tenant-a 1"
grep -q "plan $mac: image tenant-a 1, profile tenant-a (rule:lab-rack)" "$work/rackbootd.log" ||
	fail "the plan did not come from rule lab-rack (rackbootd.log: $(grep "plan $mac" "$work/rackbootd.log" | tail -1))"
echo "ok: discovered, provisioned by rule, imaged, installed: ready with tenant-a 1 and site-hello=1.0"

# ---- 3. updates in place: a new version, an added set, a rollback ----
say "publishing site-hello 1.1 (rackboot-image pkg index)"
pkg site-hello 1.1
wait_for_node "$(pkgs_expr) == 'site-hello=1.1'" 180 ||
	fail "the node did not apply site-hello 1.1 (has: $(node_field "$(pkgs_expr)"))"
mark "site-hello 1.1 published -> applied"
echo "ok: a new package version published: the node applied it (site-hello=1.1)"
say "rackboot node set $mac --package-sets site,extra"
rb node set "$mac" --package-sets site,extra >/dev/null || fail "rackboot node set --package-sets"
wait_for_node "$(pkgs_expr) == 'extra-tool=2.5 site-hello=1.1'" 180 ||
	fail "the node did not install the added set (has: $(node_field "$(pkgs_expr)"))"
mark "package set added -> applied"
echo "ok: a package set added to the node: installed (extra-tool=2.5)"
say "rackboot pkgset rollback site"
rb pkgset rollback site >/dev/null || fail "rackboot pkgset rollback site"
wait_for_node "$(pkgs_expr) == 'extra-tool=2.5 site-hello=1.0'" 180 ||
	fail "the node did not roll site back (has: $(node_field "$(pkgs_expr)"))"
mark "set rolled back -> applied"
echo "ok: the operator rolled the set back: the node went back to site-hello=1.0"
[ "$(node_field 'n["state"]')" = ready ] || fail "the node is not ready after its updates"

# ---- 4. power cut; tenant A's data onto the disk; power on ----
say "power cut; tenant A's data onto the disk; power on"
stop_node
secret="TENANT-A-SECRET-$$-$(date +%s%N)"
python3 - "$disk" "$secret" <<'EOP'
import sys
path, secret = sys.argv[1], sys.argv[2].encode()
blk = (secret + b"\n") * (1048576 // (len(secret) + 1))
with open(path, "r+b") as f:
    f.seek((128 - 4) * 1048576)      # the slack after the only partition
    for _ in range(3):
        f.write(blk)
EOP
mount -o loop,offset=1048576 "$disk" "$work/mnt" || fail "cannot mount the node's root"
python3 -c 'import sys; b = (sys.argv[1] + "\n").encode() * 50000; open(sys.argv[2], "wb").write(b)' \
	"$secret" "$work/mnt/root/tenant-data.bin"
umount "$work/mnt"
before=$(grep -ac -- "$secret" "$disk" || true)
[ "$before" -gt 1000 ] || fail "the tenant pattern did not reach the disk ($before lines)"
echo "ok: tenant A's data written: $before lines of its pattern on the disk"
serial=$work/serial3.log
E2E_REBOOT=1 e2e_qemu "$ns" tap0 "$mac" bios "$serial" -drive "file=$disk,format=raw,if=virtio"
qpid=$E2E_LAST_PID
e2e_wait_for "$serial" "TENANT-A-SYSTEM up" 600 "$qpid" || fail "the node did not boot tenant A again"
wait_for_node 'n["state"] == "ready"' 120 || fail "the agent did not report ready after the power cut"
mark "power cut, tenant data, back up: ready"

# ---- 5. reimage to tenant B with a full wipe, through the running agent ----
say "rackboot node set $mac --profile tenant-b; rackboot node reimage $mac --wipe full"
rb node set "$mac" --profile tenant-b >/dev/null || fail "rackboot node set --profile tenant-b"
rb node reimage "$mac" --wipe full --yes >/dev/null || fail "rackboot node reimage"
e2e_wait_for "$serial" "TENANT-B-SYSTEM up" 900 "$qpid" || fail "the node did not boot tenant B's system"
mark "reimaged (full wipe) and booted tenant B"
wait_for_node 'n["state"] == "ready"' 120 || fail "tenant B's agent did not report ready"
mark "tenant B ready"
events=$(node_field '" ".join(e["event"] for e in n["events"])')
case " $events " in
*" agent.reimage "*) ;;
*) fail "no agent.reimage event from the installed agent (events: $events)" ;;
esac
wiped=$(node_field '[e["detail"] for e in n["events"] if e["event"] == "agent.wiping"][-1]')
case $wiped in
*full*) ;;
*) fail "the last wipe was not full: $wiped" ;;
esac
img=$(node_field '"%s %s" % (n["installed"]["image"]["name"], n["installed"]["image"]["version"])')
[ "$img" = "tenant-b 1" ] || fail "installed image after the reimage: '$img', want tenant-b 1"
stop_node
after=$(grep -ac -- "$secret" "$disk" || true)
[ "$after" = 0 ] || fail "$after lines of tenant A's pattern survived the full wipe"
echo "ok: reimaged through the running agent to tenant B with a full wipe ($wiped): no byte of tenant A's pattern on the disk"

echo "timeline (TCG, seconds since rackbootd started):"
printf '%s' "$timeline"
if [ "$demo" = 1 ]; then
	E2E_REBOOT=1 e2e_qemu "$ns" tap0 "$mac" bios "$work/serial4.log" \
		-drive "file=$disk,format=raw,if=virtio"
	echo "The node runs tenant B again; rackbootd, the dashboard and the CLI stay up."
	echo "Ctrl-C stops the demo."
	wait
fi
