#!/bin/bash
# rackboot-agent pkg-install against the real rackbootd on 127.0.0.1:
# packages built with rackboot-image pkg build and indexed (signed) with pkg
# index are installed into a directory root holding busybox-static as
# /bin/sh: three packages in order give their files with their contents,
# modes, symlinks, a replaced file, scripts run chrooted, and installed.json
# lists each package and file with the right sha256, mode and size. A
# failing postinst, a preinst over its time limit and an extraction that
# fails half way (a hard link to a later member) roll their package back
# (every path of the root with mode, owner and hash before and after:
# identical) and exit 1 naming the package and the script. An archive
# changed after indexing is refused (sha256) before any file is written.
# Hostile archives built with python tarfile and indexed as they are
# ("../", an absolute path, a file through a symlink of the package or of
# the root, a hard link to /etc/passwd, a path twice as a directory and a
# file, a .rackboot/ payload member) change nothing in the root and nothing
# outside it, also as upgrades of installed packages (the staged
# rename-swap path). pkg-remove keeps paths another package lists and a
# failing postrm undoes the removal. A package of another arch, a wrong key and a bad
# NAME=VERSION are refused.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
rb_need_cmd python3 curl zstd sha256sum
BUSYBOX=$(command -v busybox || true)
if [ -z "$BUSYBOX" ] || ! file -L "$BUSYBOX" 2>/dev/null | grep -q "statically linked"; then
	echo "SKIP: busybox-static not installed"
	exit 77
fi
[ "$(id -u)" = 0 ] || { echo "SKIP: chroot needs root"; exit 77; }

rb_setup pkginstall
T=$RB_TMP

R=$T/repo
ROOT=$T/root
mkdir -p "$R" "$T/boot" "$T/state" "$T/outside" "$T/pk"

rb_repo_conf "$R"
PORT=$RB_PORT
URL=http://127.0.0.1:$PORT/repo
rb_start_server "http://127.0.0.1:$PORT/boot/" "$SRV" -c "$T/rackbootd.conf" -v

"$IMG" keygen "$T/site" >/dev/null && "$IMG" keygen "$T/other" >/dev/null ||
	{ echo "FAIL: keygen"; exit 1; }
index() { "$IMG" pkg index --repo "$R" --key "$T/site.key" "$@" >/dev/null; }
inst() { "$AGENT" pkg-install --repo "$URL" --pub "$T/site.pub" --root "$ROOT" \
	--arch testarch -q "$@"; }
# snapshot DIR: every path below DIR with its type, mode, owner, link
# target and content hash, sorted
snapshot() {
	(cd "$1" && find . -printf '%p %y %m %U:%G %l\n' | sort) >"$2.list"
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 -r sha256sum) >"$2.sum"
	cat "$2.sum" >>"$2.list"
}
same() { cmp -s "$1.list" "$2.list"; }

# pkg NAME VERSION ARCH SCRIPTS-JSON: builds $T/pk/NAME/tree into
# $T/NAME.tar.zst with meta NAME VERSION ARCH
pkg() {
	cat >"$T/pk/$1/meta.json" <<EOF2
{"name": "$1", "version": "$2", "arch": "$3", "depends": [], "conflicts": [],
 "scripts": $4}
EOF2
	"$IMG" pkg build "$T/pk/$1/tree" --meta "$T/pk/$1/meta.json" --out "$T/$1.tar.zst" \
		>/dev/null || fail "pkg build $1"
}

# ---- the root: busybox as /bin/sh, an existing /etc/motd ----
mkdir -p "$ROOT/bin" "$ROOT/etc" "$ROOT/var/lib"
cp "$BUSYBOX" "$ROOT/bin/sh"
echo "old motd" >"$ROOT/etc/motd"
chmod 0644 "$ROOT/etc/motd"

# ---- three packages ----
mkdir -p "$T/pk/base/tree/usr/bin" "$T/pk/base/tree/etc" "$T/pk/base/tree/usr/share/doc/base"
printf '#!/bin/sh\necho hello\n' >"$T/pk/base/tree/usr/bin/hello"
chmod 0755 "$T/pk/base/tree/usr/bin/hello"
echo "base=1" >"$T/pk/base/tree/etc/base.conf"
chmod 0644 "$T/pk/base/tree/etc/base.conf"
echo "read me" >"$T/pk/base/tree/usr/share/doc/base/README"
printf 'echo "$RACKBOOT_PKG_NAME $RACKBOOT_PKG_VERSION $1" >/var/lib/base.stamp\n' \
	>"$T/pk/base/postinst"
pkg base 1.0 all '{"postinst": "postinst"}'

mkdir -p "$T/pk/lib/tree/usr/lib"
head -c 100000 /dev/urandom >"$T/pk/lib/tree/usr/lib/libx.so.1"
chmod 0644 "$T/pk/lib/tree/usr/lib/libx.so.1"
ln -s libx.so.1 "$T/pk/lib/tree/usr/lib/libx.so"
printf 'test -f /usr/bin/hello || exit 9\necho pre >/var/lib/lib.pre\n' >"$T/pk/lib/preinst"
pkg lib 2.1 testarch '{"preinst": "preinst"}'

mkdir -p "$T/pk/app/tree/etc" "$T/pk/app/tree/opt/app/bin"
echo "secret=1" >"$T/pk/app/tree/etc/app.conf"
chmod 0600 "$T/pk/app/tree/etc/app.conf"
echo "welcome to app" >"$T/pk/app/tree/etc/motd"
chmod 0644 "$T/pk/app/tree/etc/motd"
printf '#!/bin/sh\n' >"$T/pk/app/tree/opt/app/bin/app"
chmod 0750 "$T/pk/app/tree/opt/app/bin/app"
pkg app 3.0 testarch '{}'

# ---- failing ones ----
mkdir -p "$T/pk/bad/tree/usr/bin" "$T/pk/bad/tree/etc" "$T/pk/bad/tree/srv/bad/deep"
echo "bad" >"$T/pk/bad/tree/usr/bin/bad"
echo "bad motd" >"$T/pk/bad/tree/etc/motd"
echo "bad hello" >"$T/pk/bad/tree/usr/bin/hello"
echo "deep" >"$T/pk/bad/tree/srv/bad/deep/file"
printf 'echo "bad postinst ran"\nexit 3\n' >"$T/pk/bad/postinst"
pkg bad 1.0 all '{"postinst": "postinst"}'

mkdir -p "$T/pk/slow/tree/usr/bin"
echo "slow" >"$T/pk/slow/tree/usr/bin/slow"
printf 'echo "slow preinst started"\nwhile :; do :; done\n' >"$T/pk/slow/preinst"
pkg slow 1.0 all '{"preinst": "preinst"}'

mkdir -p "$T/pk/tamp/tree/usr/bin"
head -c 300000 /dev/urandom >"$T/pk/tamp/tree/usr/bin/tamp"
pkg tamp 1.0 all '{}'

mkdir -p "$T/pk/other/tree/usr/bin"
echo other >"$T/pk/other/tree/usr/bin/other"
pkg other 1.0 otherarch '{}'

# ---- hostile archives: meta.json first, then the payload as given ----
python3 - "$T" <<'EOF2' || fail "building hostile archives"
import io, json, subprocess, sys, tarfile
T = sys.argv[1]
def build(name, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        meta = json.dumps({"name": name, "version": "1.0", "arch": "all", "depends": [],
                           "conflicts": [], "scripts": []}).encode()
        ti = tarfile.TarInfo(".rackboot/meta.json"); ti.size = len(meta); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(meta))
        for m in members:
            ti = tarfile.TarInfo(m["name"]); ti.mode = 0o644
            data = m.get("data", b"")
            if m.get("type") == "sym":
                ti.type = tarfile.SYMTYPE; ti.linkname = m["link"]; data = b""
            elif m.get("type") == "hard":
                ti.type = tarfile.LNKTYPE; ti.linkname = m["link"]; data = b""
            elif m.get("type") == "dir":
                ti.type = tarfile.DIRTYPE; ti.mode = 0o755; data = b""
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    out = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), capture_output=True,
                         check=True).stdout
    open(f"{T}/{name}.tar.zst", "wb").write(out)
build("hdotdot", [{"name": "usr/ok", "data": b"ok"},
                  {"name": "../../outside/dotdot", "data": b"escaped"}])
build("habs", [{"name": "usr/ok", "data": b"ok"},
               {"name": f"{T}/outside/abs", "data": b"escaped"}])
build("hsym", [{"name": "evil", "type": "sym", "link": f"{T}/outside"},
               {"name": "evil/pwned", "data": b"escaped"}])
build("hsymroot", [{"name": "lnk/pwned", "data": b"escaped"}])
build("hhard", [{"name": "usr/ok", "data": b"ok"},
                {"name": "passwd-link", "type": "hard", "link": "/etc/passwd"}])
build("hhard2", [{"name": "usr/ok", "data": b"ok"},
                 {"name": "passwd-link", "type": "hard", "link": "../../../../../etc/passwd"}])
build("hlate", [{"name": "etc/motd", "data": b"late motd"},
                {"name": "usr/late/a", "data": b"a"},
                {"name": "usr/late/link", "type": "hard", "link": "usr/late/z"},
                {"name": "usr/late/z", "data": b"z"}])
build("htwice", [{"name": "usr/x", "type": "dir"}, {"name": "usr/x", "data": b"f"}])
build("hmeta", [{"name": "usr/ok", "data": b"ok"},
                {"name": ".rackboot/meta.json", "data": b"{}"}])
EOF2

for p in base lib app bad slow tamp other hlate hdotdot habs hsym hsymroot hhard hhard2 htwice hmeta; do
	index "$T/$p.tar.zst" || fail "pkg index $p"
done

# ---- usage ----
"$AGENT" pkg-install --repo "$URL" --pub "$T/site.pub" --root "$ROOT" "base" >/dev/null 2>&1
[ $? -eq 2 ] && pass "NAME without =VERSION: exit 2" || fail "bad spec accepted"

# ---- install three ----
inst base=1.0 lib=2.1 app=3.0 >"$T/o" 2>"$T/e"
rc=$?
if [ $rc -eq 0 ] &&
	[ "$(cat "$ROOT/usr/bin/hello")" = "$(cat "$T/pk/base/tree/usr/bin/hello")" ] &&
	[ "$(stat -c %a "$ROOT/usr/bin/hello")" = 755 ] &&
	[ "$(stat -c %a "$ROOT/etc/app.conf")" = 600 ] &&
	[ "$(stat -c %a "$ROOT/opt/app/bin/app")" = 750 ] &&
	cmp -s "$ROOT/usr/lib/libx.so.1" "$T/pk/lib/tree/usr/lib/libx.so.1" &&
	[ "$(readlink "$ROOT/usr/lib/libx.so")" = libx.so.1 ] &&
	[ "$(cat "$ROOT/etc/motd")" = "welcome to app" ] &&
	[ "$(cat "$ROOT/var/lib/base.stamp")" = "base 1.0 postinst" ] &&
	[ "$(cat "$ROOT/var/lib/lib.pre")" = pre ] &&
	[ -z "$(ls -A "$ROOT/var/lib/rackboot/tmp")" ]; then
	pass "three packages installed: contents, modes, symlink, replaced file, scripts ran"
else
	fail "install of three (rc $rc): $(cat "$T/e")"
fi
python3 - "$ROOT" <<'EOF2' && pass "installed.json: packages, files with sha256, mode, size" ||
import hashlib, json, os, stat, sys
root = sys.argv[1]
s = json.load(open(f"{root}/var/lib/rackboot/installed.json"))
pk = {p["name"]: p for p in s["packages"]}
assert [p["name"] for p in s["packages"]] == ["base", "lib", "app"], list(pk)
assert pk["lib"]["version"] == "2.1" and pk["lib"]["arch"] == "testarch"
assert pk["base"]["arch"] == "all" and len(pk["base"]["sha256"]) == 64
files = {f["path"]: f for p in s["packages"] for f in p["files"]}
need = ["/usr/bin/hello", "/etc/base.conf", "/usr/share/doc/base/README", "/usr/lib/libx.so.1",
        "/usr/lib/libx.so", "/etc/app.conf", "/etc/motd", "/opt/app/bin/app"]
for n in need:
    f = files[n]
    st = os.lstat(root + n)
    assert f["mode"] == stat.S_IMODE(st.st_mode), n
    if stat.S_ISREG(st.st_mode):
        assert f["type"] == "file" and f["size"] == st.st_size, n
        assert f["sha256"] == hashlib.sha256(open(root + n, "rb").read()).hexdigest(), n
    else:
        assert f["type"] == "symlink", n
# created directories are the package's, existing ones (etc, bin) are not
assert "/opt/app" in files and "/etc" not in files and "/bin" not in files
assert all(p["installed"] > 1600000000 for p in s["packages"])
EOF2
	fail "installed.json: $(head -c 2000 "$ROOT/var/lib/rackboot/installed.json")"
# the repository as served matches what was indexed
[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["packages"][2]["sha256"])' \
	"$ROOT/var/lib/rackboot/installed.json")" = "$(sha256sum <"$R/pkgs/app_3.0_testarch.tar.zst" | cut -d' ' -f1)" ] &&
	pass "installed.json sha256 is the archive's" || fail "installed.json sha256 of app"

# ---- a failing postinst rolls the package back ----
snapshot "$ROOT" "$T/before"
inst bad=1.0 >"$T/o" 2>"$T/e"
rc=$?
snapshot "$ROOT" "$T/after"
if [ $rc -eq 1 ] && grep -q "bad 1.0: postinst script failed (exit status 3)" "$T/e" &&
	grep -q "bad postinst ran" "$T/e" && same "$T/before" "$T/after"; then
	pass "failing postinst: exit 1 naming package and script, root exactly as before"
else
	fail "failing postinst (rc $rc): $(cat "$T/e"); $(diff "$T/before.list" "$T/after.list" | head)"
fi

# ---- an extraction that fails half way (a hard link to a later member) ----
inst hlate=1.0 >"$T/o" 2>"$T/e"
rc=$?
snapshot "$ROOT" "$T/after"
if [ $rc -eq 1 ] && grep -q "hlate: extracting usr/late/link" "$T/e" &&
	same "$T/before" "$T/after"; then
	pass "extraction failing half way: rolled back, root exactly as before"
else
	fail "hlate (rc $rc): $(cat "$T/e"); $(diff "$T/before.list" "$T/after.list" | head)"
fi

# ---- a preinst over its time limit ----
inst --script-timeout-s 2 slow=1.0 >"$T/o" 2>"$T/e"
rc=$?
snapshot "$ROOT" "$T/after"
if [ $rc -eq 1 ] && grep -q "slow 1.0: preinst script ran over its limit of 2 s" "$T/e" &&
	grep -q "slow preinst started" "$T/e" && same "$T/before" "$T/after"; then
	pass "preinst over its time limit: killed, exit 1, root as before"
else
	fail "slow preinst (rc $rc): $(cat "$T/e")"
fi

# ---- an archive changed after indexing ----
python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(5000); b = f.read(1); f.seek(5000)
f.write(bytes([b[0] ^ 0x55])); f.close()' "$R/pkgs/tamp_1.0_all.tar.zst"
inst tamp=1.0 >"$T/o" 2>"$T/e"
rc=$?
snapshot "$ROOT" "$T/after"
if [ $rc -eq 1 ] && grep -q "sha256 mismatch" "$T/e" && same "$T/before" "$T/after" &&
	[ ! -e "$ROOT/usr/bin/tamp" ]; then
	pass "tampered archive refused before any file was written"
else
	fail "tampered archive (rc $rc): $(cat "$T/e")"
fi

# ---- hostile archives ----
ln -s "$T/outside" "$ROOT/lnk"
snapshot "$ROOT" "$T/before"
snapshot "$T/outside" "$T/obefore"
PW=$(stat -c '%h %s %Y' /etc/passwd)
for h in hdotdot habs hsym hsymroot hhard hhard2 htwice hmeta; do
	inst "$h=1.0" >"$T/o" 2>"$T/e"
	rc=$?
	snapshot "$ROOT" "$T/after"
	snapshot "$T/outside" "$T/oafter"
	if [ $rc -eq 1 ] && grep -q "refused" "$T/e" && same "$T/before" "$T/after" &&
		same "$T/obefore" "$T/oafter" && [ "$(stat -c '%h %s %Y' /etc/passwd)" = "$PW" ]; then
		pass "hostile $h refused, nothing changed in or outside the root"
	else
		fail "hostile $h (rc $rc): $(cat "$T/e")"
	fi
done
rm "$ROOT/lnk"

# ---- an archive whose meta names another package than its catalogue entry ----
cp "$R/pkgs/hsym_1.0_all.tar.zst" "$T/swap"
cp "$R/pkgs/hdotdot_1.0_all.tar.zst" "$R/pkgs/hsym_1.0_all.tar.zst"
inst hsym=1.0 >"$T/o" 2>"$T/e"
[ $? -eq 1 ] && grep -E -q "sha256 mismatch|different size" "$T/e" &&
	pass "swapped archive refused (size, sha256)" ||
	fail "swapped archive: $(cat "$T/e")"
cp "$T/swap" "$R/pkgs/hsym_1.0_all.tar.zst"

# ---- another arch, a wrong key ----
inst other=1.0 >"$T/o" 2>"$T/e"
[ $? -eq 1 ] && grep -q "other 1.0: no package for arch testarch" "$T/e" &&
	pass "package of another arch refused" || fail "other arch: $(cat "$T/e")"
"$AGENT" pkg-install --repo "$URL" --pub "$T/other.pub" --root "$ROOT" --arch testarch -q \
	base=1.0 >"$T/o" 2>"$T/e"
[ $? -eq 1 ] && grep -q "signature does not verify" "$T/e" && pass "untrusted key refused" ||
	fail "wrong key: $(cat "$T/e")"

# ---- a reinstall of an installed package replaces its entry ----
inst base=1.0 >"$T/o" 2>"$T/e" &&
	[ "$(python3 -c 'import json,sys; print(",".join(p["name"] for p in json.load(open(sys.argv[1]))["packages"]))' \
		"$ROOT/var/lib/rackboot/installed.json")" = "lib,app,base" ] &&
	pass "reinstall replaces the package's entry" || fail "reinstall: $(cat "$T/e")"

# ---- an upgrade of an installed package from a hostile archive ----
# (the same checks as above, on the staged rename-swap path of an upgrade)
python3 - "$T" <<'EOF2' || fail "building hostile upgrades"
import io, json, subprocess, sys, tarfile
T = sys.argv[1]
def build(out, name, version, members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        meta = json.dumps({"name": name, "version": version, "arch": "all", "depends": [],
                           "conflicts": [], "scripts": []}).encode()
        ti = tarfile.TarInfo(".rackboot/meta.json"); ti.size = len(meta); ti.mode = 0o644
        t.addfile(ti, io.BytesIO(meta))
        for m in members:
            ti = tarfile.TarInfo(m["name"]); ti.mode = 0o644
            data = m.get("data", b"")
            if m.get("type") == "sym":
                ti.type = tarfile.SYMTYPE; ti.linkname = m["link"]; data = b""
            elif m.get("type") == "hard":
                ti.type = tarfile.LNKTYPE; ti.linkname = m["link"]; data = b""
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    z = subprocess.run(["zstd", "-q", "-c"], input=buf.getvalue(), capture_output=True,
                       check=True).stdout
    open(f"{T}/{out}.tar.zst", "wb").write(z)
build("up-dotdot", "base", "1.1", [{"name": "usr/bin/hello", "data": b"new hello"},
                                   {"name": "../../outside/up", "data": b"escaped"}])
build("up-sym", "lib", "2.2", [{"name": "usr/lib/libx.so.1", "data": b"new"},
                               {"name": "usr/lib/esc", "type": "sym", "link": T + "/outside"},
                               {"name": "usr/lib/esc/pwned", "data": b"escaped"}])
build("up-hard", "app", "3.1", [{"name": "etc/app.conf", "data": b"x"},
                                {"name": "etc/shadow-link", "type": "hard", "link": "/etc/shadow"}])
EOF2
for h in up-dotdot up-sym up-hard; do index "$T/$h.tar.zst" || fail "index $h"; done
ln -s "$T/outside" "$ROOT/lnk"
snapshot "$ROOT" "$T/before"
snapshot "$T/outside" "$T/obefore"
for spec in base=1.1 lib=2.2 app=3.1; do
	inst "$spec" >"$T/o" 2>"$T/e"
	rc=$?
	snapshot "$ROOT" "$T/after"
	snapshot "$T/outside" "$T/oafter"
	if [ $rc -eq 1 ] && grep -q "refused" "$T/e" && same "$T/before" "$T/after" &&
		same "$T/obefore" "$T/oafter"; then
		pass "hostile upgrade $spec refused, the installed version and the outside untouched"
	else
		fail "hostile upgrade $spec (rc $rc): $(cat "$T/e")"
	fi
done
rm "$ROOT/lnk"

# ---- pkg-remove: a path another package lists stays; a failing postrm undoes it ----
mkdir -p "$T/pk/share/tree/usr/bin" "$T/pk/sticky/tree/srv/sticky"
echo "shared hello" >"$T/pk/share/tree/usr/bin/hello"
echo "share" >"$T/pk/share/tree/usr/bin/share"
pkg share 1.0 all '{}'
echo "sticky" >"$T/pk/sticky/tree/srv/sticky/data"
printf 'echo "sticky postrm fails"\nexit 2\n' >"$T/pk/sticky/postrm"
pkg sticky 1.0 all '{"postrm": "postrm"}'
index "$T/share.tar.zst" && index "$T/sticky.tar.zst" || fail "index share, sticky"
inst share=1.0 sticky=1.0 >"$T/o" 2>"$T/e" || fail "install share, sticky: $(cat "$T/e")"
"$AGENT" pkg-remove --root "$ROOT" -q share >"$T/o" 2>"$T/e"
rc=$?
if [ $rc -eq 0 ] && [ ! -e "$ROOT/usr/bin/share" ] && [ -e "$ROOT/usr/bin/hello" ] &&
	! grep -q '"share"' "$ROOT/var/lib/rackboot/installed.json"; then
	pass "pkg-remove share: its own file gone, /usr/bin/hello (base lists it too) kept"
else
	fail "pkg-remove share (rc $rc): $(cat "$T/e")"
fi
snapshot "$ROOT" "$T/before"
"$AGENT" pkg-remove --root "$ROOT" -q sticky >"$T/o" 2>"$T/e"
rc=$?
snapshot "$ROOT" "$T/after"
[ $rc -eq 1 ] && grep -q "sticky 1.0: postrm script failed (exit status 2)" "$T/e" &&
	same "$T/before" "$T/after" && pass "a failing postrm: exit 1, every file and the record as before" ||
	fail "sticky (rc $rc): $(cat "$T/e"); $(diff "$T/before.list" "$T/after.list" | head -5)"
"$AGENT" pkg-remove --root "$ROOT" -q nothere >"$T/o" 2>"$T/e"
[ $? -eq 1 ] && grep -q "nothere is not installed" "$T/e" && pass "removing a package that is not installed: exit 1" ||
	fail "nothere: $(cat "$T/e")"

rb_finish
