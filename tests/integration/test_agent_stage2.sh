#!/bin/bash
# Stage 2 of `rackboot-agent run` on a real loop device, against the real
# rackbootd on 127.0.0.1. The image is a GPT disk built here: an ESP
# without a filesystem, an ext4 root (mkfs.ext4 -d: busybox as /bin/sh, an
# extlinux.conf with an APPEND line, a fake update-grub that leaves a
# marker, rc2.d) and a larger third partition of random bytes (the
# automatic choice must skip it), published with rackboot-image build.
# Packages are built with `rackboot-image pkg build` and indexed (signed)
# with `pkg index`: app depends on lib (>= 2), which the plan does not
# name (the agent resolves it); bad has a failing postinst.
# Checked after `run` on the loop device (losetup -P): exit 0, states
# provisioning -> wiping -> imaging -> installing -> imaged with the
# installed packages stored by the server; in the root partition the
# packages' files and installed.json (sha256 of each file), scripts run
# chrooted, /etc/hostname and /etc/hosts, root's authorized_keys (0600 in
# a 0700 .ssh), the kernel arguments in grub.d, the extlinux APPEND line
# and update-grub run, agent.conf (0600) with the plan's node token (the
# server holds its SHA-256), the agent binary, the trusted key, the
# systemd unit enabled and the init script linked in rc2.d; nothing left
# mounted. Then a profile with the failing package: exit 1, node failed
# naming package and script, none of its files in the root and not in
# installed.json; an explicit root_partition without ext4: refused.
# Root and loop devices needed (skipped otherwise). Kills and detaches
# only what it started.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
export PATH=$PATH:/usr/sbin:/sbin
rb_need_cmd sfdisk mkfs.ext4 losetup python3 curl sha256sum findmnt
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked"; then
	echo "SKIP: busybox-static not installed"
	exit 77
fi
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (loop devices, mount, chroot)"; exit 77; }
losetup -f >/dev/null 2>&1 || { echo "SKIP: no free loop device"; exit 77; }

rb_setup stage2
T=$RB_TMP
LOOPS=
MNT=
cleanup() {
	[ -n "$MNT" ] && umount "$MNT" 2>/dev/null
	for l in $LOOPS; do losetup -d "$l" 2>/dev/null; done
}
RB_ON_EXIT=cleanup

PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
DB=$T/state/registry.db
mkdir -p "$T/repo" "$T/boot" "$T/state" "$T/trusted" "$T/pk" "$T/mnt"
KEY1="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx0stage2 ops@site"

# ---- the image: GPT, p1 ESP (no fs), p2 ext4 root (16 MiB), p3 random (24 MiB) ----
R=$T/rootfs
mkdir -p "$R/bin" "$R/etc/rc2.d" "$R/etc/default" "$R/root" "$R/boot/extlinux" "$R/boot/grub" \
	"$R/usr/sbin" "$R/var/lib" "$R/dev" "$R/proc" "$R/sys" "$R/tmp"
cp "$BUSYBOX" "$R/bin/sh"
chmod 0700 "$R/root"
echo "image-host" >"$R/etc/hostname"
printf 'DEFAULT linux\nLABEL linux\n  KERNEL /vmlinuz\n  APPEND root=/dev/sda2 ro quiet\n' \
	>"$R/boot/extlinux/extlinux.conf"
echo "# grub.cfg of the image" >"$R/boot/grub/grub.cfg"
printf '#!/bin/sh\necho "update-grub ran: $(cat /etc/default/grub.d/rackboot.cfg | tail -1)" >/boot/grub/update-grub.ran\n' \
	>"$R/usr/sbin/update-grub"
chmod 0755 "$R/usr/sbin/update-grub"
DISK=$T/disk.img
truncate -s 48M "$DISK"
printf 'label: gpt\nstart=2048, size=4096, type=U, name="esp"\nstart=6144, size=32768, type=L, name="root"\nstart=38912, size=49152, type=L, name="data"\n' |
	sfdisk -q "$DISK" >/dev/null || { echo "FAIL: sfdisk"; exit 1; }
truncate -s 16M "$T/root.ext4"
mkfs.ext4 -q -F -d "$R" -L root "$T/root.ext4" >/dev/null || { echo "FAIL: mkfs.ext4 -d"; exit 1; }
dd if="$T/root.ext4" of="$DISK" bs=512 seek=6144 conv=notrunc status=none
head -c $((24 * 1024 * 1024)) /dev/urandom | dd of="$DISK" bs=512 seek=38912 conv=notrunc status=none
"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
cp "$T/site.pub" "$T/trusted/site.pub"
"$IMG" build --repo "$T/repo" --key "$T/site.key" --name node --version 1 "$DISK" >/dev/null ||
	{ echo "FAIL: rackboot-image build"; exit 1; }

# ---- packages ----
pkg() { # pkg NAME VERSION DEPENDS-JSON SCRIPTS-JSON: $T/pk/NAME/tree -> indexed
	cat >"$T/pk/$1/meta.json" <<EOF
{"name": "$1", "version": "$2", "arch": "all", "depends": $3, "conflicts": [], "scripts": $4}
EOF
	"$IMG" pkg build "$T/pk/$1/tree" --meta "$T/pk/$1/meta.json" --out "$T/$1.tar.zst" >/dev/null &&
		"$IMG" pkg index --repo "$T/repo" --key "$T/site.key" "$T/$1.tar.zst" >/dev/null ||
		fail "pkg $1"
}
mkdir -p "$T/pk/lib/tree/usr/lib" "$T/pk/app/tree/usr/bin" "$T/pk/app/tree/etc/app" "$T/pk/bad/tree/opt/bad"
head -c 50000 /dev/urandom >"$T/pk/lib/tree/usr/lib/libgpu.so.2"
printf 'echo "$RACKBOOT_PKG_NAME $RACKBOOT_PKG_VERSION $1" >/var/lib/lib.stamp\n' >"$T/pk/lib/postinst"
pkg lib 2.1 '[]' '{"postinst": "postinst"}'
printf '#!/bin/sh\necho app\n' >"$T/pk/app/tree/usr/bin/app"
chmod 0755 "$T/pk/app/tree/usr/bin/app"
echo "gpu=1" >"$T/pk/app/tree/etc/app/app.conf"
printf 'test -f /usr/lib/libgpu.so.2 || exit 7\ntest -d /proc/self && echo proc >/var/lib/app.proc\necho ok >/var/lib/app.stamp\n' >"$T/pk/app/postinst"
pkg app 1.0 '["lib (>= 2)"]' '{"postinst": "postinst"}'
echo "bad" >"$T/pk/bad/tree/opt/bad/file"
printf 'echo "bad postinst ran"\nexit 4\n' >"$T/pk/bad/postinst"
pkg bad 1.0 '[]' '{"postinst": "postinst"}'

cat >"$T/rackbootd.conf" <<EOF
user = ""
state_dir = "$T/state"
server_address = "127.0.0.1"
log_level = "debug"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$T/boot"
	repo_root = "$T/repo"
}
discovery {
	kernel = "vmlinuz"
	initrd = "initrd.img"
	cmdline = "console=ttyS0"
}
package_set "gpu" {
	packages = {"app"}
}
package_set "broken" {
	packages = {"bad=1.0"}
}
profile "gpu-node" {
	image = "node"
	wipe = "metadata"
	after = "reboot"
	package_sets = {"gpu"}
	kernel_args = "modprobe.blacklist=nouveau iommu=pt"
	hostname = "gpu-{mac}"
	ssh_keys = {"$KEY1"}
}
profile "broken" {
	image = "node"
	wipe = "none"
	package_sets = {"broken"}
}
profile "esp-root" {
	image = "node"
	wipe = "none"
	root_partition = 1
}
EOF
OPAUTH="Authorization: Bearer $("$SRV" -c "$T/rackbootd.conf" token create stage2-test 2>/dev/null)"
rb_start_server "$B/boot/" "$SRV" -c "$T/rackbootd.conf" -v

sql() { rb_sql "$DB" "$1"; }
boot() {
	curl -sf -o "$T/script" "$B/boot/$1.ipxe" || return 1
	grep '^kernel ' "$T/script" >"$T/cmdline"
}
node() {
	curl -sf -H "$OPAUTH" "$B/api/v1/nodes/$1" >"$T/node.json" || { echo "(no node)"; return; }
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$T/node.json"
}
provision() { # provision PROFILE OUT ERR: a fresh 64 MiB loop device, run, exit code
	sql "UPDATE nodes SET state = 'provisioning', profile = '$1' WHERE mac = '$MAC'" >/dev/null
	boot $MAC
	python3 -c 'import sys; sys.stdout.buffer.write(b"\xa5" * (64 << 20))' >"$T/dev.img"
	L=$(losetup -f --show -P "$T/dev.img") || return 99
	LOOPS="$LOOPS $L"
	"$AGENT" run --cmdline "$T/cmdline" --no-after --timeout-s 10 --retries 2 \
		--pubdir "$T/trusted" --target "$L" --script-timeout-s 20 >"$2" 2>"$3"
}
mount_root() { # mounts partition 2 of $L read-only on $T/mnt
	MNT=$T/mnt
	mount -o ro "${L}p2" "$MNT"
}
umount_root() { umount "$MNT" && MNT=; }

MAC=52:54:00:5b:02:01
boot $MAC
# ---- provision with stage 2 ----
provision gpu-node "$T/run1.out" "$T/run1.err"
rc=$?
[ $rc = 0 ] && pass "run with stage 2: $(cat "$T/run1.out")" || fail "run exit $rc: $(tail -5 "$T/run1.err")"
grep -q "stage 2 on partition 2 (.*p2, ext4): 2 package(s) installed" "$T/run1.out" &&
	pass "the automatic root is the ext4 partition 2, not the larger raw partition 3" ||
	fail "stage 2 summary: $(cat "$T/run1.out")"
ev=$(node $MAC '" ".join(e["event"] for e in d["events"] if e["event"].startswith("agent.") and e["event"] != "agent.inventory")')
[ "$ev" = "agent.wiping agent.imaging agent.installing agent.imaged" ] &&
	pass "events: $ev" || fail "events: $ev"
[ "$(node $MAC 'd["state"]')" = imaged ] && pass "node imaged" || fail "state $(node $MAC 'd["state"]')"
[ "$(sql "SELECT installed FROM nodes WHERE mac = '$MAC'")" = '{"image":{"name":"node","version":"1"},"packages":[{"name":"lib","version":"2.1"},{"name":"app","version":"1.0"}]}' ] &&
	pass "the server stored the installed image and packages (lib first: a dependency)" ||
	fail "installed: $(sql "SELECT installed FROM nodes WHERE mac = '$MAC'")"
[ -z "$(findmnt -rn -o TARGET | grep rackboot-stage2)" ] && [ -z "$(ls /tmp | grep rackboot-stage2)" ] &&
	pass "nothing left mounted, no temporary directory left" || fail "left: $(findmnt -rn | grep rackboot-stage2)"
mount_root || fail "mount ${L}p2"
M=$T/mnt
cmp -s "$M/usr/lib/libgpu.so.2" "$T/pk/lib/tree/usr/lib/libgpu.so.2" && [ -x "$M/usr/bin/app" ] &&
	[ "$(cat "$M/etc/app/app.conf")" = "gpu=1" ] && pass "package files in the root" || fail "package files"
[ "$(cat "$M/var/lib/lib.stamp")" = "lib 2.1 postinst" ] && [ "$(cat "$M/var/lib/app.stamp")" = ok ] &&
	[ "$(cat "$M/var/lib/app.proc" 2>/dev/null)" = proc ] &&
	pass "scripts ran chrooted (in dependency order, with /proc mounted)" || fail "scripts: $(ls "$M/var/lib")"
python3 - "$M" <<'EOF' && pass "installed.json: both packages, every file with its sha256" || fail "installed.json"
import hashlib, json, sys
m = sys.argv[1]
s = json.load(open(f"{m}/var/lib/rackboot/installed.json"))
assert [p["name"] for p in s["packages"]] == ["lib", "app"]
files = {f["path"]: f for p in s["packages"] for f in p["files"]}
for n in ["/usr/lib/libgpu.so.2", "/usr/bin/app", "/etc/app/app.conf"]:
    assert files[n]["sha256"] == hashlib.sha256(open(m + n, "rb").read()).hexdigest(), n
EOF
[ "$(cat "$M/etc/hostname")" = gpu-5254005b0201 ] && grep -q "^127.0.1.1	gpu-5254005b0201 gpu-5254005b0201$" "$M/etc/hosts" &&
	pass "hostname and /etc/hosts" || fail "hostname: $(cat "$M/etc/hostname")"
[ "$(stat -c %a "$M/root/.ssh")" = 700 ] && [ "$(stat -c '%a %u' "$M/root/.ssh/authorized_keys")" = "600 0" ] &&
	grep -qx "$KEY1" "$M/root/.ssh/authorized_keys" && pass "authorized_keys 0600 in a 0700 .ssh" ||
	fail "ssh keys: $(ls -la "$M/root/.ssh")"
grep -qx 'GRUB_CMDLINE_LINUX="$GRUB_CMDLINE_LINUX modprobe.blacklist=nouveau iommu=pt"' "$M/etc/default/grub.d/rackboot.cfg" &&
	pass "kernel args in grub.d/rackboot.cfg" || fail "grub.d: $(cat "$M/etc/default/grub.d/rackboot.cfg")"
grep -q 'update-grub ran: GRUB_CMDLINE_LINUX=' "$M/boot/grub/update-grub.ran" 2>/dev/null &&
	pass "the target's update-grub ran chrooted after the file was written" || fail "update-grub did not run"
grep -qx '  APPEND root=/dev/sda2 ro quiet modprobe.blacklist=nouveau iommu=pt' "$M/boot/extlinux/extlinux.conf" &&
	pass "extlinux APPEND line extended" || fail "extlinux: $(cat "$M/boot/extlinux/extlinux.conf")"
TOK=$(sed -n 's/^token = //p' "$M/etc/rackboot/agent.conf")
[ "$(stat -c %a "$M/etc/rackboot/agent.conf")" = 600 ] &&
	[ "$(printf %s "$TOK" | sha256sum | cut -d' ' -f1)" = "$(sql "SELECT node_token_sha256 FROM nodes WHERE mac = '$MAC'")" ] &&
	grep -qx "server = $B" "$M/etc/rackboot/agent.conf" && grep -qx "mac = $MAC" "$M/etc/rackboot/agent.conf" &&
	grep -qx "image_version = 1" "$M/etc/rackboot/agent.conf" &&
	pass "agent.conf 0600: server, MAC, the node token whose SHA-256 the server holds" ||
	fail "agent.conf: $(cat "$M/etc/rackboot/agent.conf")"
cmp -s "$M/usr/sbin/rackboot-agent" "$AGENT" && [ -x "$M/usr/sbin/rackboot-agent" ] &&
	cmp -s "$M/etc/rackboot/trusted/site.pub" "$T/site.pub" && pass "agent binary and trusted key installed" ||
	fail "agent binary or key"
grep -q '^ExecStart=/usr/sbin/rackboot-agent update$' "$M/etc/systemd/system/rackboot-agent.service" &&
	[ "$(readlink "$M/etc/systemd/system/multi-user.target.wants/rackboot-agent.service")" = /etc/systemd/system/rackboot-agent.service ] &&
	[ -x "$M/etc/init.d/rackboot-agent" ] && [ "$(readlink "$M/etc/rc2.d/S99rackboot-agent")" = ../init.d/rackboot-agent ] &&
	pass "systemd unit enabled, init script linked in rc2.d" || fail "service files"
chroot "$M" /bin/sh -n /etc/init.d/rackboot-agent && pass "the init script parses (sh -n)" || fail "init script syntax"
[ -z "$(ls -A "$M/var/lib/rackboot/tmp")" ] && pass "no temporary files left in the root" || fail "tmp: $(ls -A "$M/var/lib/rackboot/tmp")"
umount_root

# ---- a failing package ----
provision broken "$T/run2.out" "$T/run2.err"
rc=$?
msg=$(node $MAC 'd["events"][-1]["detail"]')
if [ $rc = 1 ] && [ "$(node $MAC 'd["state"]')" = failed ] &&
	echo "$msg" | grep -q "stage 2: bad 1.0: postinst script failed (exit status 4); output: bad postinst ran"; then
	pass "failing postinst: exit 1, node failed: $msg"
else
	fail "failing package: rc $rc, $(tail -2 "$T/run2.err"), detail $msg"
fi
mount_root || fail "mount ${L}p2"
[ ! -e "$M/opt/bad" ] && ! grep -q '"bad"' "$M/var/lib/rackboot/installed.json" 2>/dev/null &&
	pass "none of the failing package's files in the root, not in installed.json" ||
	fail "bad's files: $(ls -R "$M/opt" 2>&1 | head)"
umount_root
[ -z "$(findmnt -rn -o TARGET | grep rackboot-stage2)" ] && pass "nothing left mounted after the failure" || fail "mounts left"

# ---- an explicit root partition without ext4/xfs ----
provision esp-root "$T/run3.out" "$T/run3.err"
rc=$?
[ $rc = 1 ] && grep -q "root partition 1 holds no ext4 or xfs filesystem" "$T/run3.err" &&
	pass "root_partition 1 (no filesystem): refused" || fail "esp-root: rc $rc $(tail -2 "$T/run3.err")"

rb_finish
