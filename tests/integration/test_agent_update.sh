#!/bin/bash
# Stage 3: `rackboot-agent update --once` on a directory root (busybox as
# /bin/sh, agent.conf and the trusted key as stage 2 writes them) against
# the real rackbootd on 127.0.0.1, packages built with `rackboot-image pkg
# build` and indexed with `pkg index`, the desired package sets changed in
# the registry as an operator's PATCH does:
#  - the first poll installs the profile's sets (lib, app) and reports
#    "ready" with the installed versions; a second poll is a 304 (the
#    server logs it) and changes nothing;
#  - update one (lib 1.0 -> 1.1: a changed file, a new one, one the new
#    version lacks removed), add one (tool), remove one (app: its prerm and
#    postrm run, its files go): the tree, installed.json and the server's
#    record; no staging or backup file left anywhere in the root;
#  - an upgrade whose postinst fails (lib 1.2) rolls back to the exact
#    previous tree (every path with type, mode, owner, link target and
#    content hash, before and after), the node is "failed" naming the
#    package and script, and the same generation is not tried again;
#  - a driver package with files under /lib/modules: reboot_required
#    reported and flagged in /run/rackboot;
#  - the catalogue's reboot flag (pkg build --reboot-required) with no file
#    under /boot or /lib/modules: a plain upgrade and a plain add report
#    reboot_required false, an upgrade to a flagged version and then the
#    removal of that package report it true (the flag file cleared in
#    between, as a reboot does);
#  - held: nothing changes; a desired image other than the running one:
#    status "reimage", BootNext set with (a stand-in for) efibootmgr to the
#    firmware's PXE entry, no reboot with --no-after, not repeated by the
#    next poll;
#  - a wrong token: exit 1 naming the 403.
# Root needed (chroot for the scripts). Kills only the rackbootd it started.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
rb_need_cmd python3 curl sha256sum truncate
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked"; then
	echo "SKIP: busybox-static not installed"
	exit 77
fi
[ "$(id -u)" = 0 ] || { echo "SKIP: chroot needs root"; exit 77; }

rb_setup update
T=$RB_TMP

PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
DB=$T/state/registry.db
R=$T/repo
ROOT=$T/root
mkdir -p "$R" "$T/boot" "$T/state" "$T/pk"

sql() { rb_sql "$DB" "$1"; }
# snapshot DIR OUT: every path with type, mode, owner, link target and
# hash, but the agent's own record of the generation it acted on
snapshot() {
	(cd "$1" && find . ! -path ./var/lib/rackboot/desired.state -printf '%p %y %m %U:%G %l\n' |
		sort) >"$2.list"
	(cd "$1" && find . -type f ! -path ./var/lib/rackboot/desired.state -print0 | sort -z |
		xargs -0 -r sha256sum) >>"$2.list"
}
upd() { "$AGENT" update --once --root "$ROOT" --arch testarch --no-after --timeout-s 10 \
	--script-timeout-s 20 "$@"; }
inst_json() { sql "SELECT installed FROM nodes WHERE mac = '$MAC'"; }
state() { sql "SELECT state FROM nodes WHERE mac = '$MAC'"; }
leftovers() { find "$ROOT" -name '.rackboot-*' | head -5; }

# ---- repository: image node 1 and 2, packages ----
"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
truncate -s 2M "$T/disk.img"
for v in 1 2; do
	"$IMG" build --repo "$R" --key "$T/site.key" --name node --version $v "$T/disk.img" \
		>/dev/null 2>&1 || { echo "FAIL: rackboot-image build"; exit 1; }
done
pkg() { # pkg DIR NAME VERSION DEPENDS SCRIPTS [BUILD-OPTION...]: builds $T/pk/DIR/tree and indexes it
	cat >"$T/pk/$1/meta.json" <<EOF
{"name": "$2", "version": "$3", "arch": "all", "depends": $4, "conflicts": [], "scripts": $5}
EOF
	"$IMG" pkg build "$T/pk/$1/tree" --meta "$T/pk/$1/meta.json" --out "$T/$1.tar.zst" "${@:6}" >/dev/null &&
		"$IMG" pkg index --repo "$R" --key "$T/site.key" "$T/$1.tar.zst" >/dev/null ||
		fail "pkg $1"
}
mkdir -p "$T/pk/lib10/tree/usr/lib" "$T/pk/lib10/tree/etc" "$T/pk/lib11/tree/usr/lib" \
	"$T/pk/lib12/tree/usr/lib" "$T/pk/app/tree/usr/bin" "$T/pk/tool/tree/usr/bin" \
	"$T/pk/kmod/tree/lib/modules/6.1.0/extra"
echo "libx 1.0" >"$T/pk/lib10/tree/usr/lib/libx.so.1"
echo "lib=1.0" >"$T/pk/lib10/tree/etc/lib.conf"
printf 'echo "$RACKBOOT_PKG_VERSION from ${RACKBOOT_PKG_OLD_VERSION:-none}" >>/var/lib/lib.log\n' >"$T/pk/lib10/postinst"
pkg lib10 lib 1.0 '[]' '{"postinst": "postinst"}'
echo "libx 1.1" >"$T/pk/lib11/tree/usr/lib/libx.so.1"
echo "extra" >"$T/pk/lib11/tree/usr/lib/libx-extra.so"
cp "$T/pk/lib10/postinst" "$T/pk/lib11/postinst"
echo "libx 1.2" >"$T/pk/lib12/tree/usr/lib/libx.so.1"
echo "new in 1.2" >"$T/pk/lib12/tree/usr/lib/libx-12.so"
printf 'echo "lib 1.2 postinst fails"\nexit 5\n' >"$T/pk/lib12/postinst"
printf '#!/bin/sh\necho app\n' >"$T/pk/app/tree/usr/bin/app"
chmod 0755 "$T/pk/app/tree/usr/bin/app"
printf 'echo "prerm $RACKBOOT_PKG_VERSION" >>/var/lib/app.log\n' >"$T/pk/app/prerm"
printf 'test -e /usr/bin/app && exit 3\necho "postrm gone" >>/var/lib/app.log\n' >"$T/pk/app/postrm"
pkg app app 1.0 '["lib (>= 1.0)"]' '{"prerm": "prerm", "postrm": "postrm"}'
echo "tool" >"$T/pk/tool/tree/usr/bin/tool"
pkg tool tool 1.0 '[]' '{}'
head -c 4096 /dev/urandom >"$T/pk/kmod/tree/lib/modules/6.1.0/extra/gpu.ko"
pkg kmod kmod 1.0 '[]' '{}'

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
	repo_root = "$R"
}
package_set "lib" { packages = {"lib"} }
package_set "lib11" { packages = {"lib=1.1"} }
package_set "app" { packages = {"app"} }
package_set "tool" { packages = {"tool"} }
package_set "drv" { packages = {"kmod"} }
package_set "fw" { packages = {"fw"} }
profile "node" {
	image = "node"
	version = "1"
	package_sets = {"lib", "app"}
}
EOF
rb_start_server "$B/boot/" "$SRV" -c "$T/rackbootd.conf" -v

# ---- the node as stage 2 leaves it: a node token from the plan, agent.conf ----
MAC=52:54:00:3c:00:01
curl -sf -o /dev/null "$B/boot/$MAC.ipxe"
sql "UPDATE nodes SET state = 'provisioning', profile = 'node' WHERE mac = '$MAC'" >/dev/null
TB=$(curl -sf "$B/boot/$MAC.ipxe" | sed -n 's/^kernel .* rackboot\.token=\([^ ]*\) .*/\1/p')
NT=$(curl -sf -H "Authorization: Bearer $TB" "$B/api/v1/nodes/$MAC/plan" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["node_token"])')
[ -n "$NT" ] || { echo "FAIL: no node token in the plan"; exit 1; }
sql "UPDATE nodes SET state = 'imaged' WHERE mac = '$MAC'" >/dev/null
mkdir -p "$ROOT/bin" "$ROOT/etc/rackboot/trusted" "$ROOT/var/lib" "$ROOT/usr/lib"
cp "$BUSYBOX" "$ROOT/bin/sh"
cp "$T/site.pub" "$ROOT/etc/rackboot/trusted/"
echo "image file" >"$ROOT/usr/lib/from-image"
write_conf() {
	cat >"$ROOT/etc/rackboot/agent.conf" <<EOF
# as stage 2 writes it
server = $B
mac = $MAC
token = $1
repo = $B/repo
image = node
image_version = 1
interval_s = 300
jitter_s = 60
EOF
	chmod 0600 "$ROOT/etc/rackboot/agent.conf"
}
write_conf "$NT"

# ---- first poll: install the profile's sets ----
upd >"$T/o1" 2>"$T/e1"
rc=$?
if [ $rc = 0 ] && [ "$(cat "$ROOT/usr/lib/libx.so.1")" = "libx 1.0" ] && [ -x "$ROOT/usr/bin/app" ] &&
	[ "$(cat "$ROOT/var/lib/lib.log")" = "1.0 from none" ] && [ "$(state)" = ready ] &&
	[ "$(inst_json)" = '{"image":{"name":"node","version":"1"},"packages":[{"name":"lib","version":"1.0"},{"name":"app","version":"1.0"}]}' ]; then
	pass "first poll: lib 1.0 and app 1.0 installed, ready reported with both"
else
	fail "first poll rc $rc: $(tail -3 "$T/e1") state $(state) installed $(inst_json)"
fi
[ -f "$ROOT/var/lib/rackboot/info/app.prerm" ] && [ -f "$ROOT/var/lib/rackboot/info/app.postrm" ] &&
	pass "app's prerm and postrm kept for its removal" || fail "info scripts: $(ls "$ROOT/var/lib/rackboot/info" 2>&1)"
n304=$(grep -c "desired 304" "$T/rackbootd.log")
snapshot "$ROOT" "$T/s1"
upd >"$T/o2" 2>"$T/e2"
rc=$?
snapshot "$ROOT" "$T/s2"
[ $rc = 0 ] && [ "$(grep -c "desired 304" "$T/rackbootd.log")" = $((n304 + 1)) ] &&
	cmp -s "$T/s1.list" "$T/s2.list" && pass "second poll: a 304, nothing changed" ||
	fail "second poll rc $rc: $(tail -2 "$T/e2")"

# ---- update one, add one, remove one ----
pkg lib11 lib 1.1 '[]' '{"postinst": "postinst"}'
sql "UPDATE nodes SET desired_package_sets = '[\"lib\", \"tool\"]' WHERE mac = '$MAC'" >/dev/null
upd >"$T/o3" 2>"$T/e3"
rc=$?
if [ $rc = 0 ] && [ "$(cat "$ROOT/usr/lib/libx.so.1")" = "libx 1.1" ] &&
	[ "$(cat "$ROOT/usr/lib/libx-extra.so")" = extra ] && [ ! -e "$ROOT/etc/lib.conf" ] &&
	[ "$(tail -1 "$ROOT/var/lib/lib.log")" = "1.1 from 1.0" ] &&
	[ ! -e "$ROOT/usr/bin/app" ] && [ "$(cat "$ROOT/usr/bin/tool")" = tool ] &&
	[ "$(cat "$ROOT/var/lib/app.log")" = "$(printf 'prerm 1.0\npostrm gone')" ] &&
	[ ! -e "$ROOT/var/lib/rackboot/info/app.prerm" ] && [ "$(cat "$ROOT/usr/lib/from-image")" = "image file" ]; then
	pass "lib 1.0 -> 1.1 (changed, new and dropped file), +tool, -app (prerm, postrm ran)"
else
	fail "update rc $rc: $(tail -3 "$T/e3"); $(ls -R "$ROOT/usr" "$ROOT/etc" | tr '\n' ' ')"
fi
python3 - "$ROOT" <<'EOF' && pass "installed.json: lib 1.1 and tool with their files; app gone" || fail "installed.json after the update"
import hashlib, json, sys
root = sys.argv[1]
s = json.load(open(f"{root}/var/lib/rackboot/installed.json"))
pk = {p["name"]: p for p in s["packages"]}
assert sorted(pk) == ["lib", "tool"], sorted(pk)
assert pk["lib"]["version"] == "1.1"
files = {f["path"]: f for f in pk["lib"]["files"]}
assert "/etc/lib.conf" not in files and "/usr/lib/libx-extra.so" in files
assert files["/usr/lib/libx.so.1"]["sha256"] == hashlib.sha256(b"libx 1.1\n").hexdigest()
EOF
[ "$(inst_json)" = '{"image":{"name":"node","version":"1"},"packages":[{"name":"lib","version":"1.1"},{"name":"tool","version":"1.0"}]}' ] &&
	[ "$(state)" = ready ] && [ "$(sql "SELECT reboot_required FROM nodes WHERE mac = '$MAC'")" = 0 ] &&
	pass "server: ready with lib 1.1 and tool 1.0, no reboot required" || fail "server: $(state) $(inst_json)"
grep -q "agent.updating" <(sql "SELECT event FROM events WHERE mac = '$MAC'") &&
	pass "an agent.updating event before ready" || fail "no updating event"
[ -z "$(leftovers)" ] && pass "no staged or kept-old files left in the root" || fail "left: $(leftovers)"

# ---- an upgrade whose postinst fails rolls back to the exact previous tree ----
pkg lib12 lib 1.2 '[]' '{"postinst": "postinst"}'
snapshot "$ROOT" "$T/before"
upd >"$T/o4" 2>"$T/e4"
rc=$?
snapshot "$ROOT" "$T/after"
msg=$(sql "SELECT detail FROM events WHERE mac = '$MAC' ORDER BY id DESC LIMIT 1")
if [ $rc = 1 ] && [ "$(state)" = failed ] && cmp -s "$T/before.list" "$T/after.list" &&
	echo "$msg" | grep -q "lib 1.2: postinst script failed (exit status 5); output: lib 1.2 postinst fails"; then
	pass "failing upgrade: exit 1, node failed ($msg), every file as before"
else
	fail "failing upgrade rc $rc state $(state): $msg; $(diff "$T/before.list" "$T/after.list" | head -5)"
fi
upd >"$T/o5" 2>"$T/e5"
rc=$?
snapshot "$ROOT" "$T/after2"
[ $rc = 0 ] && cmp -s "$T/before.list" "$T/after2.list" && [ "$(state)" = failed ] &&
	pass "the failed generation is not tried again (304)" || fail "retry: rc $rc $(tail -2 "$T/e5")"

# ---- a driver package: reboot required ----
sql "UPDATE nodes SET desired_package_sets = '[\"lib11\", \"tool\", \"drv\"]' WHERE mac = '$MAC'" >/dev/null
upd >"$T/o6" 2>"$T/e6"
rc=$?
[ $rc = 0 ] && [ -f "$ROOT/lib/modules/6.1.0/extra/gpu.ko" ] && [ -f "$ROOT/run/rackboot/reboot-required" ] &&
	[ "$(sql "SELECT state, reboot_required FROM nodes WHERE mac = '$MAC'")" = "ready 1" ] &&
	[ "$(cat "$ROOT/usr/lib/libx.so.1")" = "libx 1.1" ] &&
	pass "kmod under /lib/modules: reboot_required reported and flagged; lib pinned at 1.1" ||
	fail "kmod: rc $rc $(tail -2 "$T/e6") $(sql "SELECT state, reboot_required FROM nodes WHERE mac = '$MAC'")"

# ---- the catalogue's reboot flag: no file under /boot or /lib/modules ----
reboot_state() { sql "SELECT state, reboot_required FROM nodes WHERE mac = '$MAC'"; }
mkdir -p "$T/pk/tool11/tree/usr/bin" "$T/pk/fw10/tree/usr/lib/firmware" "$T/pk/fw11/tree/usr/lib/firmware"
echo "tool 1.1" >"$T/pk/tool11/tree/usr/bin/tool"
echo "fw 1.0" >"$T/pk/fw10/tree/usr/lib/firmware/gpu.bin"
echo "fw 1.1" >"$T/pk/fw11/tree/usr/lib/firmware/gpu.bin"
rm -f "$ROOT/run/rackboot/reboot-required" # as the reboot the kmod asked for does
pkg tool11 tool 1.1 '[]' '{}'
upd >"$T/r1" 2>"$T/er1"
rc=$?
[ $rc = 0 ] && [ "$(cat "$ROOT/usr/bin/tool")" = "tool 1.1" ] && [ "$(reboot_state)" = "ready 0" ] &&
	[ ! -e "$ROOT/run/rackboot/reboot-required" ] &&
	pass "plain upgrade (tool 1.0 -> 1.1): reboot_required false" ||
	fail "tool 1.1: rc $rc $(tail -2 "$T/er1") $(reboot_state)"
pkg fw10 fw 1.0 '[]' '{}'
sql "UPDATE nodes SET desired_package_sets = '[\"lib11\", \"tool\", \"drv\", \"fw\"]' WHERE mac = '$MAC'" >/dev/null
upd >"$T/r2" 2>"$T/er2"
rc=$?
[ $rc = 0 ] && [ "$(cat "$ROOT/usr/lib/firmware/gpu.bin" 2>/dev/null)" = "fw 1.0" ] &&
	[ "$(reboot_state)" = "ready 0" ] && pass "plain add (fw 1.0, no reboot flag): reboot_required false" ||
	fail "fw 1.0: rc $rc $(tail -2 "$T/er2") $(reboot_state)"
pkg fw11 fw 1.1 '[]' '{}' --reboot-required
upd >"$T/r3" 2>"$T/er3"
rc=$?
[ $rc = 0 ] && [ "$(cat "$ROOT/usr/lib/firmware/gpu.bin")" = "fw 1.1" ] &&
	[ "$(reboot_state)" = "ready 1" ] && [ -f "$ROOT/run/rackboot/reboot-required" ] &&
	python3 -c 'import json,sys; p={p["name"]: p for p in json.load(open(sys.argv[1]))["packages"]}; assert p["fw"].get("reboot") is True and "reboot" not in p["tool"]' \
		"$ROOT/var/lib/rackboot/installed.json" &&
	pass "upgrade to fw 1.1 (catalogue reboot: true): reboot_required reported and flagged, kept in installed.json" ||
	fail "fw 1.1: rc $rc $(tail -2 "$T/er3") $(reboot_state)"
rm -f "$ROOT/run/rackboot/reboot-required"
sql "UPDATE nodes SET desired_package_sets = '[\"lib11\", \"tool\", \"drv\"]' WHERE mac = '$MAC'" >/dev/null
upd >"$T/r4" 2>"$T/er4"
rc=$?
[ $rc = 0 ] && [ ! -e "$ROOT/usr/lib/firmware/gpu.bin" ] && [ "$(reboot_state)" = "ready 1" ] &&
	pass "removal of fw 1.1 (flagged): reboot_required true" ||
	fail "fw removal: rc $rc $(tail -2 "$T/er4") $(reboot_state)"

# ---- held: nothing changes ----
sql "UPDATE nodes SET held = 1, desired_package_sets = '[\"lib11\"]' WHERE mac = '$MAC'" >/dev/null
snapshot "$ROOT" "$T/h1"
upd >"$T/o7" 2>"$T/e7"
rc=$?
snapshot "$ROOT" "$T/h2"
[ $rc = 0 ] && grep -q "held by an operator" "$T/e7" && cmp -s "$T/h1.list" "$T/h2.list" &&
	pass "held: nothing changed" || fail "held: rc $rc $(tail -2 "$T/e7")"

# ---- reimage: another desired image ----
cat >"$T/efibootmgr" <<EOF
#!/bin/sh
if [ \$# = 0 ]; then
	printf 'BootCurrent: 0001\nBootOrder: 0001,0002\nBoot0000* UiApp\tFvFile(x)\nBoot0001* UEFI QEMU HARDDISK QM00001\tPciRoot(0x0)\nBoot0002* UEFI PXEv4 (MAC:5254003C0001)\tPciRoot(0x0)/Pci(0x3,0x0)\n'
else
	echo "\$@" >"$T/efibootmgr.args"
fi
EOF
chmod 0755 "$T/efibootmgr"
sql "UPDATE nodes SET held = 0, desired_version = '2' WHERE mac = '$MAC'" >/dev/null
upd --efibootmgr "$T/efibootmgr" >"$T/o8" 2>"$T/e8"
rc=$?
msg=$(sql "SELECT detail FROM events WHERE mac = '$MAC' ORDER BY id DESC LIMIT 1")
[ $rc = 0 ] && [ "$(state)" = reimage ] && [ "$(cat "$T/efibootmgr.args" 2>/dev/null)" = "-q -n 0002" ] &&
	echo "$msg" | grep -q "reimage to node 2 (running node 1); next boot: BootNext set to Boot0002" &&
	pass "reimage: reported ($msg), BootNext to the PXE entry" ||
	fail "reimage: rc $rc state $(state) args $(cat "$T/efibootmgr.args" 2>&1) msg $msg $(tail -2 "$T/e8")"
rm -f "$T/efibootmgr.args"
upd --efibootmgr "$T/efibootmgr" >"$T/o8b" 2>"$T/e8b"
rc=$?
[ $rc = 0 ] && [ ! -e "$T/efibootmgr.args" ] &&
	[ "$(sql "SELECT count(*) FROM events WHERE mac = '$MAC' AND event = 'agent.reimage'")" = 1 ] &&
	pass "the next poll (a node that booted its disk again) does not reimage again" ||
	fail "reimage repeated: rc $rc $(tail -2 "$T/e8b")"
curl -s "$B/boot/$MAC.ipxe" | grep -q 'rackboot.mode=provision' &&
	pass "the node's next network boot provisions" || fail "no provision script after reimage"

# ---- a wrong token ----
write_conf 0123456789abcdef0123456789abcdef
upd >"$T/o9" 2>"$T/e9"
rc=$?
[ $rc = 1 ] && grep -q "HTTP 403: missing or wrong node token" "$T/e9" && pass "wrong token: exit 1 naming the 403" ||
	fail "wrong token: rc $rc $(tail -2 "$T/e9")"
echo "token = x" >>"$ROOT/etc/rackboot/agent.conf"
upd >"$T/o10" 2>"$T/e10"
[ $? = 1 ] && grep -q "line 10: token given twice" "$T/e10" && pass "a malformed agent.conf names its line" ||
	fail "conf: $(cat "$T/e10")"

rb_finish
