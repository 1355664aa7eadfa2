#!/bin/bash
# The agent downloads only from the repository's host and the hosts it is
# told about, on every redirect hop; responses longer than the signed
# manifest or catalogue say are refused; file:// is refused.
#
# The real rackbootd serves the repository on 127.0.0.1:PORT. A front
# (hostile_http.py, forwarding to rackbootd) is the repository URL the
# agent is given; it answers chosen requests with a 302 to the same path on
# another "host": a pass-through on 127.0.0.2 (another address) or
# rackbootd itself (same address, another port). Checked, for the chunked
# image (packs), the catalogue, a plain image and a package:
#  - without an allow entry: exit 1 (or node "failed") with the message
#    naming the host and what to configure, no request reached the other
#    host, no partition table on the target, no package file in the root;
#  - with --allow-host (or rackbootd.conf http.repo_hosts, through the
#    plan of `rackboot-agent run`): the write completes, byte-identical;
#  - a wrong port, a userinfo trick (http://front@127.0.0.2/), file://;
#  - a pack range, a plain image and a package with 100 bytes too many;
#  - a plain image that stalls after its headers: the low-speed abort.
set -u

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../../build}
HERE=$(cd "$(dirname "$0")" && pwd)
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
for b in "$AGENT" "$IMG" "$SRV"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
export PATH=$PATH:/usr/sbin:/sbin
for t in sfdisk python3 cmp curl timeout truncate; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
# 127.0.0.2 must be usable (Linux routes all of 127/8 to lo)
python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.2",0))' 2>/dev/null ||
	{ echo "SKIP: cannot bind 127.0.0.2"; exit 77; }

T=$(mktemp -d /tmp/rbt-agenthosts.XXXXXX)
PID=
FPID=
BPID=
AGPID=
cleanup() {
	[ -n "$AGPID" ] && kill -9 "$AGPID" 2>/dev/null
	for p in $FPID $BPID $PID; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	[ -n "${KEEP:-}" ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

FAILS=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }

R=$T/repo
mkdir -p "$R" "$T/boot" "$T/state" "$T/trusted" "$T/pk/tree/etc"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
B=http://127.0.0.1:$PORT

# ---- the repository: a 12 MiB GPT disk with 3 MiB of random data, as a
# chunked image and as a plain raw image; one package ----
DISK=$T/disk.img
truncate -s 12M "$DISK"
printf 'label: gpt\nstart=2048, size=4096, type=U, name="esp"\nstart=6144, size=16384, type=L, name="root"\n' |
	sfdisk -q "$DISK" >/dev/null || { echo "FAIL: sfdisk"; exit 1; }
head -c $((3 * 1024 * 1024)) /dev/urandom | dd of="$DISK" bs=1M seek=4 conv=notrunc status=none
"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
cp "$T/site.pub" "$T/trusted/"
"$IMG" build --repo "$R" --key "$T/site.key" --name node --version 1 "$DISK" >/dev/null ||
	{ echo "FAIL: rackboot-image build"; exit 1; }
"$IMG" register --repo "$R" --key "$T/site.key" --name raw --version 1 "$DISK" >/dev/null ||
	{ echo "FAIL: rackboot-image register"; exit 1; }
echo "hello=1" >"$T/pk/tree/etc/hello.conf"
echo '{"name": "hello", "version": "1.0", "arch": "all", "depends": [], "conflicts": [], "scripts": {}}' \
	>"$T/pk/meta.json"
"$IMG" pkg build "$T/pk/tree" --meta "$T/pk/meta.json" --out "$T/hello.tar.zst" >/dev/null &&
	"$IMG" pkg index --repo "$R" --key "$T/site.key" "$T/hello.tar.zst" >/dev/null ||
	{ echo "FAIL: package"; exit 1; }

# conf [EXTRA-HTTP-LINES]: rackbootd.conf; the repository URL in the plan
# is the front's ($FRONT), with the extra lines in http { }
conf() {
	cat >"$T/rackbootd.conf" <<EOF
user = ""
state_dir = "$T/state"
server_address = "127.0.0.1"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$T/boot"
	repo_root = "$R"
	repo_url = "${FRONT:-}"
	threads = 4
	$1
}
profile "node" {
	image = "node"
	version = "1"
	wipe = "none"
	grow_last_partition = false
	after = "none"
}
EOF
}
start_server() {
	"$SRV" -c "$T/rackbootd.conf" -v >>"$T/rackbootd.log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null "$B/boot/" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "FAIL: rackbootd did not start"; cat "$T/rackbootd.log"; exit 1
}
stop_server() {
	kill "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	PID=
}
# hostile NAME ARGS...: hostile_http.py in front of rackbootd; port in $T/NAME.port
hostile() {
	local n=$1
	shift
	rm -f "$T/$n.port"
	python3 "$HERE/hostile_http.py" "$T/$n.port" "$B" "$@" >"$T/$n.log" 2>&1 &
	HPID=$!
	for _ in $(seq 100); do
		[ -s "$T/$n.port" ] && return 0
		sleep 0.05
	done
	echo "FAIL: hostile_http.py $n did not start"; cat "$T/$n.log"; exit 1
}
# front ARGS...: the agent's repository URL ($FRONT), misbehaving as told
front() {
	[ -n "$FPID" ] && { kill "$FPID" 2>/dev/null; wait "$FPID" 2>/dev/null; }
	hostile front "$@"
	FPID=$HPID
	FRONT=http://127.0.0.1:$(cat "$T/front.port")/repo
}
# other-host requests seen so far (the pass-through on 127.0.0.2)
other_gets() { grep -c '"GET ' "$T/other.log"; }
# no_table FILE: no MBR signature and no primary GPT header
no_table() {
	[ ! -s "$1" ] && return 0
	python3 - "$1" <<'EOF'
import sys
h = open(sys.argv[1], "rb").read(1024)
sys.exit(1 if h[510:512] == b"\x55\xaa" or h[512:520] == b"EFI PART" else 0)
EOF
}

conf ""
start_server
hostile other --listen 127.0.0.2
BPID=$HPID
OTHER=http://127.0.0.2:$(cat "$T/other.port")
OPORT=$(cat "$T/other.port")

image() { # image TARGET ARGS...
	local t=$1
	shift
	rm -f "$t"
	timeout 120 "$AGENT" image --repo "$FRONT" --pub "$T/site.pub" --name node --version 1 \
		--target "$t" -q --timeout-s 5 --retries 1 "$@"
}
plain() { # plain TARGET ARGS...
	local t=$1
	shift
	rm -f "$t"
	timeout 120 "$AGENT" plain --repo "$FRONT" --pub "$T/site.pub" --name raw --version 1 \
		--target "$t" -q --timeout-s 5 --retries 1 "$@"
}
pkg() { # pkg ROOT ARGS...
	local root=$1
	shift
	rm -rf "$root"
	mkdir -p "$root/var/lib"
	timeout 120 "$AGENT" pkg-install --repo "$FRONT" --pub "$T/site.pub" --root "$root" \
		-q --timeout-s 5 --retries 1 "$@" hello=1.0
}
# refused WHAT RC ERRFILE HOST: exit 1, the message names the host and the fix
refused() {
	if [ "$2" = 1 ] && grep -q "refused: host $4 is not the repository's nor in the hosts given with --allow-host" "$3"; then
		ok "$1: refused: $(grep -o 'redirect to .*' "$3" | head -1)"
	else
		bad "$1: exit $2: $(cat "$3")"
	fi
}

# ---- a. packs redirected to another address ----
front --match /packs/ --redirect-base "$OTHER"
n0=$(other_gets)
image "$T/a.img" >"$T/a.out" 2>"$T/a.err"
refused "image, packs to 127.0.0.2" $? "$T/a.err" "127.0.0.2:$OPORT"
[ "$(other_gets)" = "$n0" ] && ok "no request reached 127.0.0.2" ||
	bad "$(( $(other_gets) - n0 )) request(s) reached the refused host"
no_table "$T/a.img" && ok "refused: no partition table on the target" || bad "refused: the target has a partition table"
if image "$T/a2.img" --allow-host 127.0.0.2 >"$T/a2.out" 2>"$T/a2.err" && cmp -s "$DISK" "$T/a2.img"; then
	ok "--allow-host 127.0.0.2: written and byte-identical ($(( $(other_gets) - n0 )) requests to 127.0.0.2)"
else
	bad "--allow-host 127.0.0.2: $(cat "$T/a2.err")"
fi
[ "$(other_gets)" -gt "$n0" ] || bad "--allow-host: the packs did not come from 127.0.0.2"
image "$T/a3.img" --allow-host "127.0.0.2:$((OPORT == 65535 ? 1 : OPORT + 1))" >/dev/null 2>"$T/a3.err"
refused "image, allowed on another port only" $? "$T/a3.err" "127.0.0.2:$OPORT"
image "$T/a4.img" --allow-host "127.0.0.2:$OPORT" >/dev/null 2>"$T/a4.err" && cmp -s "$DISK" "$T/a4.img" &&
	ok "--allow-host 127.0.0.2:$OPORT: written" || bad "--allow-host host:port: $(cat "$T/a4.err")"
image "$T/a5.img" --allow-host "http://127.0.0.2/" >/dev/null 2>"$T/a5.err"
rc=$?
[ $rc = 2 ] && grep -q 'expected "host" or "host:port"' "$T/a5.err" &&
	ok "--allow-host with a scheme: usage error: $(cat "$T/a5.err")" || bad "--allow-host URL: exit $rc: $(cat "$T/a5.err")"

# ---- b. same address, another port (rackbootd itself) ----
front --match /packs/ --redirect-base "$B"
image "$T/b.img" >/dev/null 2>"$T/b.err"
refused "image, packs to port $PORT of the same address" $? "$T/b.err" "127.0.0.1:$PORT"
no_table "$T/b.img" || bad "another port: the target has a partition table"
image "$T/b2.img" --allow-host "127.0.0.1:$PORT" >/dev/null 2>"$T/b2.err" && cmp -s "$DISK" "$T/b2.img" &&
	ok "--allow-host 127.0.0.1:$PORT: written" || bad "another port allowed: $(cat "$T/b2.err")"

# ---- c. userinfo: http://127.0.0.1:FRONT@127.0.0.2:OPORT is 127.0.0.2 ----
FP=$(cat "$T/front.port")
front --match /packs/ --redirect-base "http://127.0.0.1:$FP@127.0.0.2:$OPORT"
n0=$(other_gets)
image "$T/c.img" >/dev/null 2>"$T/c.err"
refused "image, userinfo trick" $? "$T/c.err" "127.0.0.2:$OPORT"
[ "$(other_gets)" = "$n0" ] || bad "userinfo trick: a request reached 127.0.0.2"

# ---- d. the catalogue, a plain image, a package ----
front --match /catalog.json --redirect-base "$OTHER"
plain "$T/d.img" >/dev/null 2>"$T/d.err"
refused "plain, catalogue to 127.0.0.2" $? "$T/d.err" "127.0.0.2:$OPORT"
[ ! -e "$T/d.img" ] && ok "plain refused: no target file" || no_table "$T/d.img" || bad "plain refused: target has a table"
plain "$T/d2.img" --allow-host 127.0.0.2 >/dev/null 2>"$T/d2.err" && cmp -s "$DISK" "$T/d2.img" &&
	ok "plain, catalogue from an allowed host: written" || bad "plain allowed: $(cat "$T/d2.err")"
front --match /plain/ --redirect-base "$OTHER"
plain "$T/d3.img" >/dev/null 2>"$T/d3.err"
refused "plain, the image file to 127.0.0.2" $? "$T/d3.err" "127.0.0.2:$OPORT"
no_table "$T/d3.img" || bad "plain file refused: target has a table"
plain "$T/d4.img" --allow-host 127.0.0.2 >/dev/null 2>"$T/d4.err" && cmp -s "$DISK" "$T/d4.img" &&
	ok "plain, file from an allowed host: written" || bad "plain file allowed: $(cat "$T/d4.err")"
front --match /pkgs/ --redirect-base "$OTHER"
pkg "$T/root1" >/dev/null 2>"$T/p1.err"
refused "pkg-install, the package to 127.0.0.2" $? "$T/p1.err" "127.0.0.2:$OPORT"
[ ! -e "$T/root1/etc/hello.conf" ] && ok "pkg refused: no package file in the root" || bad "pkg refused: hello.conf installed"
pkg "$T/root2" --allow-host 127.0.0.2 >/dev/null 2>"$T/p2.err" && cmp -s "$T/pk/tree/etc/hello.conf" "$T/root2/etc/hello.conf" &&
	ok "pkg-install from an allowed host: installed" || bad "pkg allowed: $(cat "$T/p2.err")"
front --match /catalog.json --redirect-base "$OTHER"
pkg "$T/root3" >/dev/null 2>"$T/p3.err"
refused "pkg-install, catalogue to 127.0.0.2" $? "$T/p3.err" "127.0.0.2:$OPORT"

# ---- e. file:// ----
front --match /catalog.json --redirect file:///etc/passwd
pkg "$T/root4" >/dev/null 2>"$T/e1.err"
rc=$?
[ $rc = 1 ] && grep -q "redirect to file:///etc/passwd refused: only http:// and https://" "$T/e1.err" &&
	ok "catalogue redirected to file://: $(cat "$T/e1.err")" || bad "file:// redirect: exit $rc: $(cat "$T/e1.err")"
"$AGENT" plain --repo "file://$R" --pub "$T/site.pub" --name raw --version 1 --target "$T/e2.img" -q \
	>/dev/null 2>"$T/e2.err"
rc=$?
[ $rc != 0 ] && grep -q "only http:// and https://" "$T/e2.err" && [ ! -e "$T/e2.img" ] &&
	ok "a file:// repository: exit $rc: $(cat "$T/e2.err")" || bad "file:// repo: exit $rc: $(cat "$T/e2.err")"

# ---- f. responses longer than the manifest or catalogue say ----
front --match /packs/ --pad 100
image "$T/f1.img" >/dev/null 2>"$T/f1.err"
rc=$?
[ $rc = 1 ] && grep -q "more than the requested range" "$T/f1.err" && no_table "$T/f1.img" &&
	ok "a pack range 100 bytes too long: $(grep -o 'chunk .*' "$T/f1.err")" || bad "padded range: exit $rc: $(cat "$T/f1.err")"
front --match /plain/ --pad 100
plain "$T/f2.img" >/dev/null 2>"$T/f2.err"
rc=$?
[ $rc = 1 ] && grep -q "different size than the signed catalogue" "$T/f2.err" && no_table "$T/f2.img" &&
	ok "a plain image 100 bytes too long: refused" || bad "padded plain: exit $rc: $(cat "$T/f2.err")"
front --match /pkgs/ --pad 100
pkg "$T/root5" >/dev/null 2>"$T/f3.err"
rc=$?
[ $rc = 1 ] && grep -q "different size than the signed catalogue" "$T/f3.err" && [ ! -e "$T/root5/etc/hello.conf" ] &&
	ok "a package 100 bytes too long: refused, nothing installed" || bad "padded package: exit $rc: $(cat "$T/f3.err")"

# a plain image whose server sends the headers, then nothing: the
# low-speed window (2 s) ends each of the 2 attempts, not a hang
front --match /plain/ --stall
t0=$(date +%s)
plain "$T/f4.img" --timeout-s 2 >/dev/null 2>"$T/f4.err"
rc=$?
dt=$(($(date +%s) - t0))
[ $rc = 1 ] && [ $dt -le 30 ] && no_table "$T/f4.img" &&
	ok "a stalled plain image: exit 1 after $dt s: $(cat "$T/f4.err")" || bad "stalled plain: exit $rc after $dt s: $(cat "$T/f4.err")"

# ---- g. rackboot-agent run: the plan's repo_hosts (rackbootd.conf) ----
front --match /packs/ --redirect-base "$OTHER"
conf ""
stop_server
start_server
MAC=52:54:00:5e:00:77
OPAUTH="Authorization: Bearer $("$SRV" -c "$T/rackbootd.conf" token create hosts 2>/dev/null)"
sql() {
	python3 - "$T/state/registry.db" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
db.execute(sys.argv[2])
db.commit()
EOF
}
boot() {
	curl -sf -o "$T/script" "$B/boot/$MAC.ipxe" && grep '^kernel ' "$T/script" >"$T/cmdline"
}
node() {
	curl -sf -H "$OPAUTH" "$B/api/v1/nodes/$MAC" >"$T/node.json" || { echo "(no node)"; return; }
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$T/node.json"
}
run() {
	boot || { bad "no iPXE script"; return 1; }
	sql "UPDATE nodes SET state = 'provisioning', profile = 'node' WHERE mac = '$MAC'"
	boot
	rm -f "$T/run.img"
	timeout 120 "$AGENT" run --cmdline "$T/cmdline" --no-after --timeout-s 5 --retries 1 \
		--pubdir "$T/trusted" --target "$T/run.img" >"$T/run.out" 2>"$T/run.err"
}
boot
run
rc=$?
st=$(node 'd["state"]')
msg=$(node 'd["events"][-1]["detail"]')
if [ $rc = 1 ] && [ "$st" = failed ] &&
	echo "$msg" | grep -q "refused: host 127.0.0.2:$OPORT is not the repository's nor in the plan's repo_hosts (rackbootd.conf http.repo_hosts)"; then
	ok "run without repo_hosts: node failed: $msg"
else
	bad "run without repo_hosts: exit $rc, state $st: $msg $(tail -3 "$T/run.err")"
fi
no_table "$T/run.img" && ok "run refused: no partition table on the target" || bad "run refused: a table was written"
conf "repo_hosts = {\"127.0.0.2\", \"cache1.rack3.example\", \"[fd00::5]:8080\"}"
stop_server
start_server
run
rc=$?
st=$(node 'd["state"]')
[ $rc = 0 ] && [ "$st" = imaged ] && cmp -s "$DISK" "$T/run.img" &&
	ok "run with http.repo_hosts = 127.0.0.2: imaged, byte-identical" ||
	bad "run with repo_hosts: exit $rc, state $st: $(tail -3 "$T/run.err")"

# ---- h. rackbootd refuses a bad http.repo_hosts entry, naming file and line ----
stop_server
conf 'repo_hosts = {"127.0.0.2", "http://evil.example/"}'
"$SRV" -c "$T/rackbootd.conf" --check-config >"$T/h.out" 2>&1
rc=$?
[ $rc != 0 ] && grep -q "rackbootd.conf:[0-9]*: .*repo_hosts = \"http://evil.example/\": expected" "$T/h.out" &&
	ok "bad repo_hosts entry refused at load: $(grep repo_hosts "$T/h.out" | head -1)" ||
	bad "bad repo_hosts: exit $rc: $(cat "$T/h.out")"

[ $FAILS = 0 ] && { echo "all agent host checks passed"; exit 0; }
echo "$FAILS failure(s)"
exit 1
