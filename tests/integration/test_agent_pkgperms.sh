#!/bin/bash
# What a package archive may create beyond files, directories and links:
# setuid/setgid bits, character and block device nodes and FIFOs, each
# only where the package's signed catalogue entry allows it ("allow",
# declared at rackboot-image pkg build --allow and copied by pkg index).
# Against the real rackbootd on 127.0.0.1 and rackboot-agent pkg-install
# into a directory root:
#  - archives built with python tarfile holding a setuid binary, a setgid
#    directory, a character device, a block device, a FIFO (one each, no
#    allow, or an allow that covers something else) are refused with a
#    message naming the package, the member and what it is; the root is
#    unchanged (every path with type, mode, owner, link target and hash,
#    before and after) and nothing staged is left; a sticky directory
#    needs no allow;
#  - pkg build refuses a tree holding a setuid file, a device node or a
#    FIFO without --allow, and an unknown allow word; with --allow
#    setuid,devices,fifos --reboot-required the catalogue entry carries
#    allow and reboot, and the install creates the setuid bit, the setgid
#    directory, the device nodes (same numbers) and the FIFO, recorded in
#    installed.json with their types;
#  - an upgrade (the staged rename path) to a version that adds a setuid
#    file without allow is refused and leaves the installed version as it
#    was; one that allows it installs it, and pkg-remove takes it away;
#  - device nodes are refused when the agent does not run as root.
# Root needed (device nodes, ownership). Kills only the rackbootd it started.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
rb_need_cmd python3 curl zstd sha256sum mkfifo mknod
[ "$(id -u)" = 0 ] || { echo "SKIP: device nodes need root"; exit 77; }

rb_setup pkgperms
T=$RB_TMP

R=$T/repo
ROOT=$T/root
mkdir -p "$R" "$T/boot" "$T/state" "$T/pk" "$ROOT/usr/bin" "$ROOT/etc" "$ROOT/var/lib"
echo "image file" >"$ROOT/etc/motd"
mkdir -p "$ROOT/var/lib/rackboot/tmp" # the agent's own work directory, made by any run

rb_repo_conf "$R"
PORT=$RB_PORT
URL=http://127.0.0.1:$PORT/repo
rb_start_server "http://127.0.0.1:$PORT/boot/" "$SRV" -c "$T/rackbootd.conf" -v

"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
index() { "$IMG" pkg index --repo "$R" --key "$T/site.key" "$@" >/dev/null; }
inst() { "$AGENT" pkg-install --repo "$URL" --pub "$T/site.pub" --root "$ROOT" \
	--arch testarch -q "$@"; }
snapshot() {
	(cd "$1" && find . -printf '%p %y %m %U:%G %l\n' | sort) >"$2.list"
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) >>"$2.list"
}
leftovers() { find "$ROOT" -name '.rackboot-*' | head -5; }

# ---- archives as python tarfile writes them: meta.json first ----
python3 - "$T" <<'EOF' || fail "building archives"
import io, json, subprocess, sys, tarfile
T = sys.argv[1]
def build(name, version, members, allow=None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        meta = {"name": name, "version": version, "arch": "all", "depends": [],
                "conflicts": [], "scripts": []}
        if allow is not None:
            meta["allow"] = allow
        meta = json.dumps(meta).encode()
        ti = tarfile.TarInfo(".rackboot/meta.json"); ti.size = len(meta); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(meta))
        for m in members:
            ti = tarfile.TarInfo(m["name"]); ti.mode = m.get("mode", 0o644)
            data = m.get("data", b"")
            kind = m.get("type", "file")
            if kind == "dir":
                ti.type = tarfile.DIRTYPE; data = b""
            elif kind in ("chr", "blk"):
                ti.type = tarfile.CHRTYPE if kind == "chr" else tarfile.BLKTYPE
                ti.devmajor, ti.devminor = m["dev"]; data = b""
            elif kind == "fifo":
                ti.type = tarfile.FIFOTYPE; data = b""
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    out = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), capture_output=True,
                         check=True).stdout
    open(f"{T}/{name}_{version}.tar.zst", "wb").write(out)
ok = {"name": "usr/share/ok", "data": b"ok"}
build("nsuid", "1.0", [ok, {"name": "./usr/bin/su", "data": b"#!/bin/sh\n", "mode": 0o4755}])
build("nsgid", "1.0", [ok, {"name": "var/mail", "type": "dir", "mode": 0o2775}])
build("nchr", "1.0", [ok, {"name": "dev/null2", "type": "chr", "dev": (1, 3)}],
      allow=["setuid", "fifos"])
build("nblk", "1.0", [ok, {"name": "dev/loopx", "type": "blk", "dev": (7, 0), "mode": 0o660}])
build("nfifo", "1.0", [ok, {"name": "run/ctl", "type": "fifo"}], allow=["devices"])
build("sticky", "1.0", [{"name": "tmp2", "type": "dir", "mode": 0o1777},
                        {"name": "tmp2/x", "data": b"x"}])
build("up", "1.0", [{"name": "usr/bin/tool", "data": b"tool 1.0\n", "mode": 0o755}])
build("up", "1.1", [{"name": "usr/bin/tool", "data": b"tool 1.1\n", "mode": 0o4755}])
build("up", "1.2", [{"name": "usr/bin/tool", "data": b"tool 1.2\n", "mode": 0o4755},
                    {"name": "dev/up0", "type": "chr", "dev": (1, 5), "mode": 0o666}],
      allow=["setuid", "devices"])
EOF
for a in nsuid_1.0 nsgid_1.0 nchr_1.0 nblk_1.0 nfifo_1.0 sticky_1.0 up_1.0 up_1.1 up_1.2; do
	index "$T/$a.tar.zst" || fail "pkg index $a"
done

# ---- refused without allow: the root unchanged ----
refused() { # refused NAME=VERSION EXPECTED-MESSAGE
	snapshot "$ROOT" "$T/before"
	inst "$1" >"$T/o" 2>"$T/e"
	rc=$?
	snapshot "$ROOT" "$T/after"
	if [ $rc = 1 ] && grep -qF -- "$2" "$T/e" && cmp -s "$T/before.list" "$T/after.list" &&
		[ -z "$(leftovers)" ]; then
		pass "$1 refused ($(sed 's/^rackboot-agent pkg-install: failed: //' "$T/e")), root unchanged"
	else
		fail "$1: rc $rc: $(cat "$T/e"); $(diff "$T/before.list" "$T/after.list" | head -5) $(leftovers)"
	fi
}
refused nsuid=1.0 "nsuid 1.0: payload member ./usr/bin/su is setuid (mode 4755); the catalogue does not allow setuid or setgid files for this package: refused (if it needs them, build it with rackboot-image pkg build --allow setuid"
refused nsgid=1.0 "nsgid 1.0: payload member var/mail/ is setgid (mode 2775); the catalogue does not allow setuid or setgid files"
refused nchr=1.0 "nchr 1.0: payload member dev/null2 is a character device; the catalogue does not allow device nodes for this package"
refused nblk=1.0 "nblk 1.0: payload member dev/loopx is a block device; the catalogue does not allow device nodes"
refused nfifo=1.0 "nfifo 1.0: payload member run/ctl is a FIFO; the catalogue does not allow FIFOs for this package"
[ ! -e "$ROOT/var/lib/rackboot/installed.json" ] ||
	! grep -q '"n\(suid\|sgid\|chr\|blk\|fifo\)"' "$ROOT/var/lib/rackboot/installed.json" &&
	pass "none of the refused packages recorded" || fail "a refused package in installed.json"

inst sticky=1.0 >/dev/null 2>"$T/e" && [ "$(stat -c %a "$ROOT/tmp2")" = 1777 ] &&
	pass "a sticky directory needs no allow (mode 1777)" || fail "sticky: $(cat "$T/e")"

# ---- pkg build: refuses what the package does not declare ----
P=$T/pk/perm
mkdir -p "$P/tree/usr/bin" "$P/tree/var/spool" "$P/tree/dev" "$P/tree/run"
printf '#!/bin/sh\necho root\n' >"$P/tree/usr/bin/suidtool"
chmod 4755 "$P/tree/usr/bin/suidtool"
echo '{"name": "perm", "version": "1.0", "arch": "all"}' >"$P/meta.json"
"$IMG" pkg build "$P/tree" --meta "$P/meta.json" --out "$T/perm.tar.zst" >/dev/null 2>"$T/e"
[ $? = 1 ] && grep -qF "$P/tree/usr/bin/suidtool is setuid (mode 4755): agents refuse it unless the package allows it; if it needs it, build with --allow setuid" "$T/e" &&
	[ ! -e "$T/perm.tar.zst" ] && pass "pkg build without --allow: a setuid file refused ($(cat "$T/e"))" ||
	fail "pkg build setuid: $(cat "$T/e")"
mknod "$P/tree/dev/null3" c 1 3 && mknod "$P/tree/dev/loopy" b 7 0 && mkfifo -m 0620 "$P/tree/run/pipe" &&
	chmod 0640 "$P/tree/dev/loopy" && mkdir -p "$P/tree/var/spool/grp" && chmod 2770 "$P/tree/var/spool/grp" ||
	fail "making the tree"
"$IMG" pkg build "$P/tree" --meta "$P/meta.json" --out "$T/perm.tar.zst" --allow setuid,fifos \
	>/dev/null 2>"$T/e"
[ $? = 1 ] && grep -qE "$P/tree/dev/(null3 is a character|loopy is a block) device: .*--allow devices" "$T/e" &&
	pass "pkg build --allow setuid,fifos: a device node still refused" || fail "pkg build devices: $(cat "$T/e")"
"$IMG" pkg build "$P/tree" --meta "$P/meta.json" --out "$T/perm.tar.zst" --allow setuid,devices \
	>/dev/null 2>"$T/e"
[ $? = 1 ] && grep -qF "$P/tree/run/pipe is a FIFO: " "$T/e" && grep -qF -- "--allow fifos" "$T/e" &&
	pass "pkg build --allow setuid,devices: a FIFO still refused" || fail "pkg build fifo: $(cat "$T/e")"
"$IMG" pkg build "$P/tree" --meta "$P/meta.json" --out "$T/perm.tar.zst" --allow setuid,sockets \
	>/dev/null 2>"$T/e"
[ $? = 2 ] && grep -qF '"sockets": not one of setuid, devices, fifos' "$T/e" &&
	pass "pkg build --allow sockets: usage error naming the word" || fail "--allow sockets: $(cat "$T/e")"
echo '{"name": "perm", "version": "1.0", "arch": "all", "allow": ["setuid", "everything"]}' >"$T/badmeta.json"
"$IMG" pkg build "$P/tree" --meta "$T/badmeta.json" --out "$T/perm.tar.zst" >/dev/null 2>"$T/e"
[ $? = 1 ] && grep -qF 'meta: allow[1]: not one of "setuid", "devices", "fifos"' "$T/e" &&
	pass "an unknown allow word in META.json fails the build" || fail "meta allow: $(cat "$T/e")"
"$IMG" pkg build "$P/tree" --meta "$P/meta.json" --out "$T/perm.tar.zst" \
	--allow setuid,devices --allow fifos --reboot-required >/dev/null 2>"$T/e" &&
	index "$T/perm.tar.zst" || fail "pkg build/index perm: $(cat "$T/e")"
python3 - "$R/catalog.json" <<'EOF' && pass "catalogue: perm allows setuid, devices, fifos and needs a reboot; others allow nothing" || fail "catalogue fields"
import json, sys
c = json.load(open(sys.argv[1]))
p = {(e["name"], e["version"]): e for e in c["packages"]}
assert p[("perm", "1.0")]["allow"] == ["setuid", "devices", "fifos"], p[("perm", "1.0")]
assert p[("perm", "1.0")]["reboot"] is True
assert p[("up", "1.2")]["allow"] == ["setuid", "devices"] and "reboot" not in p[("up", "1.2")]
assert "allow" not in p[("nsuid", "1.0")] and "allow" not in p[("up", "1.1")]
assert p[("nchr", "1.0")]["allow"] == ["setuid", "fifos"]
EOF

# ---- with allow: installed as in the archive ----
inst perm=1.0 >/dev/null 2>"$T/e"
rc=$?
if [ $rc = 0 ] && [ "$(stat -c '%a %U' "$ROOT/usr/bin/suidtool")" = "4755 root" ] &&
	[ "$(stat -c '%F %t:%T %a' "$ROOT/dev/null3")" = "character special file 1:3 644" ] &&
	[ "$(stat -c '%F %t:%T %a' "$ROOT/dev/loopy")" = "block special file 7:0 640" ] &&
	[ "$(stat -c '%F %a' "$ROOT/run/pipe")" = "fifo 620" ] &&
	[ "$(stat -c '%a' "$ROOT/var/spool/grp")" = 2770 ] && [ -z "$(leftovers)" ]; then
	pass "perm installed: setuid 4755, char 1:3, block 7:0, FIFO, setgid dir 2770"
else
	fail "perm: rc $rc $(cat "$T/e"); $(ls -l "$ROOT/usr/bin" "$ROOT/dev" "$ROOT/run" 2>&1 | tr '\n' ' ')"
fi
python3 - "$ROOT" <<'EOF' && pass "installed.json: perm's device nodes and FIFO with their types, reboot kept" || fail "installed.json perm"
import json, sys
s = json.load(open(f"{sys.argv[1]}/var/lib/rackboot/installed.json"))
pk = {p["name"]: p for p in s["packages"]}
perm = pk["perm"]
files = {f["path"]: f for f in perm["files"]}
assert files["/dev/null3"]["type"] == "chardev", files["/dev/null3"]
assert files["/dev/loopy"]["type"] == "blockdev"
assert files["/run/pipe"]["type"] == "fifo"
assert files["/usr/bin/suidtool"]["mode"] == 0o4755 and files["/usr/bin/suidtool"]["type"] == "file"
assert perm.get("reboot") is True and "reboot" not in pk["sticky"]
EOF

# ---- upgrades: the staged rename path ----
inst up=1.0 >/dev/null 2>"$T/e" && [ "$(stat -c %a "$ROOT/usr/bin/tool")" = 755 ] ||
	fail "up 1.0: $(cat "$T/e")"
refused up=1.1 "up 1.1: payload member usr/bin/tool is setuid (mode 4755); the catalogue does not allow setuid or setgid files"
[ "$(cat "$ROOT/usr/bin/tool")" = "tool 1.0" ] &&
	grep -A3 '"name": "up"' "$ROOT/var/lib/rackboot/installed.json" | grep -q '"version": "1.0"' &&
	pass "up 1.0 still installed and recorded" || fail "up after the refused upgrade"
inst up=1.2 >/dev/null 2>"$T/e"
rc=$?
[ $rc = 0 ] && [ "$(cat "$ROOT/usr/bin/tool")" = "tool 1.2" ] &&
	[ "$(stat -c '%a' "$ROOT/usr/bin/tool")" = 4755 ] &&
	[ "$(stat -c '%F %t:%T' "$ROOT/dev/up0")" = "character special file 1:5" ] && [ -z "$(leftovers)" ] &&
	pass "upgrade to up 1.2 (allows setuid, devices): tool 4755, dev/up0 char 1:5" ||
	fail "up 1.2: rc $rc $(cat "$T/e")"
"$AGENT" pkg-remove --root "$ROOT" -q up >/dev/null 2>"$T/e" && [ ! -e "$ROOT/dev/up0" ] &&
	[ ! -e "$ROOT/usr/bin/tool" ] && [ -c "$ROOT/dev/null3" ] && [ -z "$(leftovers)" ] &&
	pass "pkg-remove up: its device node and setuid file gone, perm's stay" ||
	fail "pkg-remove up: $(cat "$T/e")"

# ---- device nodes only as root ----
if command -v setpriv >/dev/null; then
	U=$T/user
	mkdir -p "$U/root"
	chmod 0755 "$T"
	chown -R 65534:65534 "$U"
	setpriv --reuid=65534 --regid=65534 --clear-groups "$AGENT" pkg-install --repo "$URL" \
		--pub "$T/site.pub" --root "$U/root" --arch testarch -q up=1.2 >/dev/null 2>"$T/e"
	rc=$?
	[ $rc = 1 ] && grep -qF "up 1.2: payload member dev/up0 is a character device: creating device nodes needs root (the agent runs as uid 65534): refused" "$T/e" &&
		[ -z "$(find "$U/root" -name up0)" ] &&
		pass "not root: an allowed device node refused ($(cat "$T/e"))" || fail "as nobody: rc $rc $(cat "$T/e")"
else
	echo "skip: setpriv not installed (device nodes as non-root)"
fi

rb_finish
