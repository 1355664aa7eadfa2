#!/bin/bash
# rackbootd checked for leaks and memory errors over a node's whole life:
# the server runs under valgrind memcheck (or, in an ASan build, under
# LeakSanitizer) while everything a real life cycle touches is driven
# against it on 127.0.0.1:
#  - full DHCP (a Python client on loopback: PXE and iPXE DISCOVER, REQUEST,
#    INFORM, DECLINE, RELEASE, malformed packets);
#  - TFTP with atftp (options), tftp-hpa and curl, a missing file, a write
#    request, transfers abandoned or cut by the client, odd packets;
#  - HTTP boot files (HEAD, Range, ETag), the per-node iPXE script, the
#    repository, /metrics, the /ui/ pages, malformed and cut requests;
#  - `rackboot-agent run`: discovery (inventory, a rule assigns the
#    profile), a signed image onto a plain file (wipe, progress and status
#    reports), and with root and loop devices stage 2 (a package and the
#    post-install settings into the image's ext4 root);
#  - `rackboot-agent update --once` on a directory root against /desired
#    (an install, then a 304), a newer package, a package-set rollback;
#  - the operator API: tokens made and revoked while it runs, 401s, node
#    list/filters, register, show, PATCH, lifecycle actions (and refused
#    ones), images, profiles, package sets, bad bodies;
#  - the event stream: followed and cut, resumed with Last-Event-ID and the
#    token in the query, and one still open at shutdown (with a TFTP
#    transfer in flight and an idle keep-alive connection).
# Then SIGTERM; the server must exit 0 and valgrind must report 0 errors,
# nothing definitely or indirectly lost, and no file descriptor open at
# exit but those it inherited. Under ASan: exit 0 and no "LeakSanitizer"
# or AddressSanitizer report in its log.
# Needs valgrind for the plain build (exit 77 without it). rackbootd runs
# as the invoking user (user = ""): valgrind follows no privilege drop, and
# rackbootd neither forks nor installs a seccomp filter.
# Kills and detaches only what it started.
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
. "$(dirname "$0")/lib.sh"
SRV=$RB_BUILD/pxe/rackbootd
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
rb_need_bin "$SRV" "$AGENT" "$IMG"
export PATH=$PATH:/usr/sbin:/sbin
rb_need_cmd curl python3 atftp tftp truncate sfdisk cmp
ASAN=
# An ASan build (gcc links libasan dynamically, clang statically: both
# carry the symbol's name) cannot run under valgrind; LSan does the work.
if grep -qa __asan_init "$SRV"; then
	ASAN=1
elif ! command -v valgrind >/dev/null; then
	echo "SKIP: valgrind not installed (scripts/install-deps installs it)"
	exit 77
fi

rb_setup leaks
T=$RB_TMP
BGPIDS=
LOOPS=
MNT=
cleanup() {
	for p in $BGPIDS; do kill "$p" 2>/dev/null; done
	for p in $BGPIDS; do wait "$p" 2>/dev/null; done
	[ -n "$MNT" ] && umount "$MNT" 2>/dev/null
	for l in $LOOPS; do losetup -d "$l" 2>/dev/null; done
}
RB_ON_EXIT=cleanup

read -r HPORT TPORT DPORT < <(rb_free_ports tcp udp udp)
B=http://127.0.0.1:$HPORT
CONF=$T/rackbootd.conf
mkdir -p "$T/repo" "$T/boot" "$T/tftp" "$T/state" "$T/trusted" "$T/pk" "$T/out"

# ---- what the server serves --------------------------------------------------------
head -c 70000 /dev/urandom >"$T/tftp/undionly.kpxe"
head -c $((600 * 1024)) /dev/urandom >"$T/tftp/big.bin"
head -c 300000 /dev/urandom >"$T/boot/vmlinuz"
head -c 200000 /dev/urandom >"$T/boot/initrd.img"
"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
cp "$T/site.pub" "$T/trusted/"
# A GPT disk: p1 an ext4 root (a small tree), p2 random bytes.
R=$T/rootfs
mkdir -p "$R/etc" "$R/var/lib" "$R/usr/sbin" "$R/root" "$R/tmp"
echo "image-host" >"$R/etc/hostname"
DISK=$T/disk.img
truncate -s 24M "$DISK"
printf 'label: gpt\nstart=2048, size=20480, type=L, name="root"\nstart=22528, size=24576, type=L, name="data"\n' |
	sfdisk -q "$DISK" >/dev/null || { echo "FAIL: sfdisk"; exit 1; }
truncate -s 10M "$T/root.ext4"
mkfs.ext4 -q -F -d "$R" -L root "$T/root.ext4" >/dev/null 2>&1 || { echo "FAIL: mkfs.ext4 -d"; exit 1; }
dd if="$T/root.ext4" of="$DISK" bs=512 seek=2048 conv=notrunc status=none
head -c $((4 * 1024 * 1024)) /dev/urandom | dd of="$DISK" bs=512 seek=22528 conv=notrunc status=none
for v in 1 2; do
	"$IMG" build --repo "$T/repo" --key "$T/site.key" --name node --version $v "$DISK" >/dev/null ||
		{ echo "FAIL: rackboot-image build"; exit 1; }
done
"$IMG" register --repo "$T/repo" --key "$T/site.key" --name raw --version 1 "$DISK" >/dev/null ||
	{ echo "FAIL: rackboot-image register"; exit 1; }
pkg() { rb_pkg "$IMG" "$T/repo" "$T/site.key" "$1" "$2"; } # a one-file package, indexed
pkg tool 1.0
pkg lib 2.0

cat >"$CONF" <<EOF
user = ""
state_dir = "$T/state"
server_address = "127.0.0.1"
log_level = "debug"
dhcp {
	mode = "full"
	port = $DPORT
	pool_start = "127.0.0.100"
	pool_end = "127.0.0.120"
	netmask = "255.255.255.0"
	router = "127.0.0.1"
	dns = { "127.0.0.53" }
	domain = "rack.test"
	lease_time = 600
}
tftp {
	port = $TPORT
	root = "$T/tftp"
	timeout_ms = 300
	retries = 2
	max_transfers = 16
}
boot { bios = "undionly.kpxe" }
http {
	port = $HPORT
	boot_root = "$T/boot"
	repo_root = "$T/repo"
	threads = 4
}
api { heartbeat_s = 1 }
discovery {
	kernel = "vmlinuz"
	initrd = "initrd.img"
	cmdline = "console=ttyS0"
}
package_set "tools" { packages = {"tool", "lib=2.0"} }
package_set "libs" { packages = {"lib"} }
profile "disk" {
	image = "node"
	version = "1"
	wipe = "metadata"
	after = "reboot"
}
profile "full" {
	image = "node"
	wipe = "none"
	package_sets = {"tools"}
	hostname = "n-{mac}"
	ssh_keys = {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIleak ops@site"}
	kernel_args = "console=ttyS0"
	root_partition = 1
}
profile "raw" { image = "raw" wipe = "none" }
rule "lab" {
	profile = "disk"
	mac = "52:54:00:1e:b0:*"
}
default_profile = "disk"
EOF
OP="Authorization: Bearer $("$SRV" -c "$CONF" token create alice 2>/dev/null)"

# ---- the server ------------------------------------------------------------------
# The valgrind flags are the issue's; "possible" leaks are reported (threads
# of libraries may hold such blocks) but only definite and indirect ones
# count as errors.
if [ -n "$ASAN" ]; then
	echo "ASan build: rackbootd under LeakSanitizer"
	ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=1 \
		LSAN_OPTIONS=${LSAN_OPTIONS:+$LSAN_OPTIONS:}exitcode=23 \
		"$SRV" -c "$CONF" -v >>"$RB_LOG" 2>&1 &
else
	valgrind --leak-check=full --show-leak-kinds=definite,indirect,possible \
		--errors-for-leak-kinds=definite,indirect --error-exitcode=99 --track-fds=yes \
		--num-callers=30 --log-file="$T/valgrind.log" \
		"$SRV" -c "$CONF" -v >>"$RB_LOG" 2>&1 &
fi
RB_PID=$!
RB_START_TIMEOUT_S=60 RB_EXTRA_LOGS=$T/valgrind.log rb_wait_server curl -s -o /dev/null "$B/boot/"
T0=$(date +%s)
section() { echo "== $1 (at $(($(date +%s) - T0)) s)"; }

code() { rb_code "$@"; } # code METHOD URL [curl args...]: the status; $T/body, $T/hdr
py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$T/body" 2>/dev/null; }
node() { # node MAC EXPR
	curl -sf -H "$OP" "$B/api/v1/nodes/$1" >"$T/node.json" || { echo "(no node)"; return; }
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$T/node.json"
}
boot() { # boot MAC: the node's iPXE script; its kernel line kept as the node's cmdline
	curl -sf -o "$T/script" "$B/boot/$1.ipxe" || return 1
	grep '^kernel ' "$T/script" >"$T/cmdline"
}
sse() { # sse OUT [curl args...]: follows the event stream in the background ($SSE)
	o=$1
	shift
	curl -sN "$@" >"$o" 2>/dev/null &
	SSE=$!
	BGPIDS="$BGPIDS $SSE"
}
hangup() { # hangup PID: a client goes away
	kill "$1" 2>/dev/null
	wait "$1" 2>/dev/null
	BGPIDS=$(echo "$BGPIDS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}

# ---- the event stream, followed from the start -------------------------------------
section "start"
sse "$T/sse1" -H "$OP" "$B/api/v1/events"
SSE1=$SSE
sse "$T/sse-end" -H "$OP" "$B/api/v1/events"
SSE_END=$SSE

# ---- DHCP, TFTP, HTTP ---------------------------------------------------------------
section "DHCP, TFTP, HTTP"
python3 "$HERE/leak_clients.py" dhcp "$DPORT" "$HPORT" >"$T/dhcp.out" 2>&1 &&
	pass "DHCP: $(grep -c '^ok' "$T/dhcp.out") exchanges" || fail "DHCP: $(grep FAIL "$T/dhcp.out")"
timeout 60 atftp --option "blksize 1428" --option "tsize 0" --option "windowsize 8" \
	-g -r big.bin -l "$T/out/big.bin" 127.0.0.1 "$TPORT" >/dev/null 2>&1
check "TFTP: atftp with blksize, tsize, windowsize" cmp -s "$T/tftp/big.bin" "$T/out/big.bin"
timeout 60 tftp 127.0.0.1 "$TPORT" -m binary -c get undionly.kpxe "$T/out/u1" >/dev/null 2>&1
check "TFTP: tftp-hpa" cmp -s "$T/tftp/undionly.kpxe" "$T/out/u1"
timeout 60 curl -sS --tftp-blksize 1024 "tftp://127.0.0.1:$TPORT/undionly.kpxe" -o "$T/out/u2" 2>/dev/null
check "TFTP: curl" cmp -s "$T/tftp/undionly.kpxe" "$T/out/u2"
timeout 30 atftp -g -r no-such-file -l "$T/out/none" 127.0.0.1 "$TPORT" >"$T/out/none.log" 2>&1
check "TFTP: a missing file is an error to atftp" [ $? != 0 ]
timeout 30 tftp 127.0.0.1 "$TPORT" -m binary -c put "$T/tftp/undionly.kpxe" up.bin >"$T/out/put.log" 2>&1
check "TFTP: a write request is refused" [ ! -e "$T/tftp/up.bin" ]
python3 "$HERE/leak_clients.py" tftp "$TPORT" >"$T/tftp.out" 2>&1 &&
	pass "TFTP: $(grep -c '^ok' "$T/tftp.out") odd clients" || fail "TFTP: $(grep FAIL "$T/tftp.out")"

check "HTTP: a boot file" sh -c "curl -sf '$B/boot/vmlinuz' | cmp -s - '$T/boot/vmlinuz'"
check "HTTP: HEAD" [ "$(code HEAD "$B/boot/initrd.img" -I)" = 200 ]
check "HTTP: a Range" [ "$(code GET "$B/boot/vmlinuz" -H 'Range: bytes=100-199')" = 206 ]
check "HTTP: the Range answer carries an ETag" grep -qi '^ETag: "' "$T/hdr"
check "HTTP: a missing file: 404" [ "$(code GET "$B/boot/nope")" = 404 ]
check "HTTP: traversal refused" [ "$(curl -s -o /dev/null -w '%{http_code}' --path-as-is "$B/boot/../rackbootd.conf")" != 200 ]
check "HTTP: encoded traversal refused" [ "$(code GET "$B/repo/%2e%2e/rackbootd.conf")" != 200 ]
check "HTTP: POST on a boot file: 405" [ "$(code POST "$B/boot/vmlinuz" --data x)" = 405 ]
python3 "$HERE/leak_clients.py" http "$HPORT" >"$T/http.out" 2>&1 &&
	pass "HTTP: $(grep -c '^ok' "$T/http.out") malformed or cut requests" || fail "HTTP: $(grep FAIL "$T/http.out")"
check "the iPXE script of an unknown node: discovery" \
	sh -c "curl -sf '$B/boot/52:54:00:1e:a0:09.ipxe' | grep -q rackboot.mode=discovery"
check "the iPXE script of a bad MAC: 4xx" [ "$(code GET "$B/boot/zz:zz.ipxe")" -ge 400 ]
check "UI: index" sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' '$B/ui/')\" = 200 ]"
check "UI: app.js and app.css" sh -c "curl -sf -o /dev/null '$B/ui/app.js' && curl -sf -o /dev/null '$B/ui/app.css'"
st=$(code GET "$B/ui")
check "UI: /ui redirects" [ "${st#3}" != "$st" ]
code GET "$B/ui/app.js" >/dev/null
et=$(sed -n 's/^[Ee][Tt][Aa][Gg]: *\(.*\)\r$/\1/p' "$T/hdr")
check "UI: revalidated (304)" [ "$(code GET "$B/ui/app.js" -H "If-None-Match: $et")" = 304 ]
check "UI: a missing page: 404" [ "$(code GET "$B/ui/nope.html")" = 404 ]

# ---- operator API -------------------------------------------------------------------
section "operator API"
BOB=$("$SRV" -c "$CONF" token create bob 2>/dev/null)
check "a token made while it runs works" [ "$(code GET "$B/api/v1/nodes" -H "Authorization: Bearer $BOB")" = 200 ]
"$SRV" -c "$CONF" token revoke bob 2>/dev/null
sleep 1.2
check "a revoked token: 401" [ "$(code GET "$B/api/v1/nodes" -H "Authorization: Bearer $BOB")" = 401 ]
# a tokens file that cannot be read back: the server warns and goes on
cp "$T/state/tokens" "$T/tokens.good"
echo "not a token line" >>"$T/state/tokens"
sleep 1.2
st=$(code GET "$B/api/v1/nodes" -H "$OP")
check "a broken tokens file: warned ($st)" grep -q "tokens" "$T/rackbootd.log"
cat "$T/tokens.good" >"$T/state/tokens"
sleep 1.2
check "the tokens file mended: 200" [ "$(code GET "$B/api/v1/nodes" -H "$OP")" = 200 ]
check "no token: 401" [ "$(code GET "$B/api/v1/nodes")" = 401 ]
check "Basic credentials: 401" [ "$(code GET "$B/api/v1/images" -H 'Authorization: Basic YTpi')" = 401 ]
MN=52:54:00:1e:c0:01
st=$(code POST "$B/api/v1/nodes" -H "$OP" -H 'Content-Type: application/json' \
	--data "{\"mac\":\"$MN\",\"hostname\":\"c1\",\"profile\":\"disk\",\"labels\":{\"tenant\":\"a\"},\"rack\":\"r1\"}")
check "register: 201" [ "$st" = 201 ]
check "register again: 409" [ "$(code POST "$B/api/v1/nodes" -H "$OP" --data "{\"mac\":\"$MN\"}")" = 409 ]
check "show: 200" [ "$(code GET "$B/api/v1/nodes/$MN" -H "$OP")" = 200 ]
check "PATCH: 200" [ "$(code PATCH "$B/api/v1/nodes/$MN" -H "$OP" \
	--data '{"labels":{"tenant":"b","gpu":"h100"},"rack":"r2","desired_image":"node","desired_version":"2","package_sets":["libs"]}')" = 200 ]
check "PATCH package_sets null: 200" [ "$(code PATCH "$B/api/v1/nodes/$MN" -H "$OP" --data '{"package_sets":null}')" = 200 ]
for a in hold release provision; do
	check "action $a: 200" [ "$(code POST "$B/api/v1/nodes/$MN/actions/$a" -H "$OP")" = 200 ]
done
check "reimage with a wipe: 200" [ "$(code POST "$B/api/v1/nodes/$MN/actions/reimage" -H "$OP" --data '{"wipe":"full"}')" = 200 ]
check "provision again: 409" [ "$(code POST "$B/api/v1/nodes/$MN/actions/provision" -H "$OP")" = 409 ]
check "retire: 200" [ "$(code POST "$B/api/v1/nodes/$MN/actions/retire" -H "$OP")" = 200 ]
check "unknown action: 404" [ "$(code POST "$B/api/v1/nodes/$MN/actions/reboot" -H "$OP")" = 404 ]
for q in "" "?state=new,retired" "?label=tenant=b&rack=r2" "?held=false&profile=disk"; do
	check "list$q: 200" [ "$(code GET "$B/api/v1/nodes$q" -H "$OP")" = 200 ]
done
check "list with an unknown filter: 400" [ "$(code GET "$B/api/v1/nodes?colour=red" -H "$OP")" = 400 ]
check "list with %00: 400" [ "$(code GET "$B/api/v1/nodes?state=%00" -H "$OP")" = 400 ]
for p in images images/node images/raw profiles profiles/full package-sets package-sets/tools; do
	check "GET /api/v1/$p: 200" [ "$(code GET "$B/api/v1/$p" -H "$OP")" = 200 ]
done
for p in images/nope profiles/nope package-sets/nope nodes/52:54:00:1e:c0:99; do
	check "GET /api/v1/$p: 404" [ "$(code GET "$B/api/v1/$p" -H "$OP")" = 404 ]
done
python3 -c 'print("{\"rack\":\"" + "x" * (1536 * 1024) + "\"}")' >"$T/big.json"
i=0
for body in 'not json' '[]' '{"mac":' '{"mac":"52:54:00:1e:c0:02","mac":"52:54:00:1e:c0:03"}' \
	'{"mac":"52:54:00:1e:c0:02","colour":"red"}' '{"mac":"52:54:00:1e:c0:02","labels":{"a b":"c"}}' \
	'{"mac":"52:54:00:1e:c0:02","profile":"nope"}' '' "@$T/big.json"; do
	i=$((i + 1))
	st=$(code POST "$B/api/v1/nodes" -H "$OP" -H 'Content-Type: application/json' --data-binary "$body")
	check "bad register body $i: 4xx" [ "$st" -ge 400 -a "$st" -lt 500 ]
done
for body in '{}' '{"rack":12}' '{"hostname":"-bad-"}' '{"package_sets":["nope"]}' '{"rack":"r9","desired_image":"../x"}'; do
	st=$(code PATCH "$B/api/v1/nodes/$MN" -H "$OP" --data "$body")
	check "bad PATCH $body: 400" [ "$st" = 400 ]
done
check "bad action body: 400" [ "$(code POST "$B/api/v1/nodes/$MN/actions/hold" -H "$OP" --data '{"force":true}')" = 400 ]

# ---- agent: discovery, then a signed image onto a plain file -------------------------
section "agent run"
MD=52:54:00:1e:b0:01
boot $MD && grep -q rackboot.mode=discovery "$T/cmdline" || fail "no discovery script for $MD"
"$AGENT" run --cmdline "$T/cmdline" --no-after --timeout-s 20 --retries 2 >"$T/run-disc.out" 2>"$T/run-disc.err"
check "agent discovery run: exit 0" [ $? = 0 ]
check "discovery: state discovered, the inventory stored" \
	[ "$(node $MD 'd["state"], d["inventory"]["version"]')" = "discovered 1" ]
check "provision the discovered node: 200" [ "$(code POST "$B/api/v1/nodes/$MD/actions/provision" -H "$OP")" = 200 ]
boot $MD && grep -q rackboot.mode=provision "$T/cmdline" || fail "no provision script for $MD"
head -c $((2 * 1024 * 1024)) /dev/urandom >"$T/out/target.img"
# a stream followed while the agent reports, then cut
sse "$T/sse2" "$B/api/v1/events?access_token=${OP#Authorization: Bearer }" -H "Last-Event-ID: 1"
SSE2=$SSE
"$AGENT" run --cmdline "$T/cmdline" --no-after --timeout-s 20 --retries 2 --pubdir "$T/trusted" \
	--target "$T/out/target.img" >"$T/run1.out" 2>"$T/run1.err"
rc=$?
check "agent run onto a plain file: exit 0 ($(tail -1 "$T/run1.err"))" [ $rc = 0 ]
check "the file is byte-identical to the image" cmp -s "$DISK" "$T/out/target.img"
check "node imaged" [ "$(node $MD 'd["state"]')" = imaged ]
hangup "$SSE2"
check "the resumed stream saw the agent's events" grep -q 'agent.imaged' "$T/sse2"
# a wrong token: refused, reported
"$AGENT" run --server "$B" --mac $MD --token 0123456789abcdef0123456789abcdef --no-after \
	--timeout-s 10 --retries 0 --pubdir "$T/trusted" --target "$T/out/target.img" >/dev/null 2>"$T/run2.err"
check "agent with a wrong token: exit 1 (HTTP 403)" grep -q "HTTP 403" "$T/run2.err"
# a plain raw image of the catalogue
check "PATCH profile raw: 200" [ "$(code PATCH "$B/api/v1/nodes/$MD" -H "$OP" --data '{"profile":"raw"}')" = 200 ]
check "reimage: 200" [ "$(code POST "$B/api/v1/nodes/$MD/actions/reimage" -H "$OP")" = 200 ]
boot $MD
"$AGENT" run --cmdline "$T/cmdline" --no-after --timeout-s 20 --retries 2 --pubdir "$T/trusted" \
	--target "$T/out/raw.img" >"$T/run3.out" 2>"$T/run3.err"
check "agent run of a plain image: exit 0, byte-identical" sh -c "[ $? = 0 ] && cmp -s '$DISK' '$T/out/raw.img'"
python3 "$HERE/leak_clients.py" sse "$HPORT" "${OP#Authorization: Bearer }" >"$T/sse.out" 2>&1 &&
	pass "event streams: $(grep '^ok' "$T/sse.out" | cut -c6-)" || fail "event streams: $(cat "$T/sse.out")"
hangup "$SSE1"
check "the first stream saw node events and progress" sh -c "grep -q 'event: node' '$T/sse1' && grep -q 'event: progress' '$T/sse1'"

# ---- stage 2 on a loop device (root only) --------------------------------------------
section "stage 2"
MS=52:54:00:1e:d0:01
if [ "$(id -u)" = 0 ] && command -v losetup >/dev/null && losetup -f >/dev/null 2>&1; then
	curl -sf -o /dev/null "$B/boot/$MS.ipxe"
	code PATCH "$B/api/v1/nodes/$MS" -H "$OP" --data '{"profile":"full"}' >/dev/null
	code POST "$B/api/v1/nodes/$MS/actions/provision" -H "$OP" >/dev/null
	boot $MS
	truncate -s 32M "$T/dev.img"
	L=$(losetup -f --show -P "$T/dev.img") && LOOPS="$LOOPS $L"
	"$AGENT" run --cmdline "$T/cmdline" --no-after --timeout-s 20 --retries 2 --pubdir "$T/trusted" \
		--target "$L" --script-timeout-s 20 >"$T/run4.out" 2>"$T/run4.err"
	check "stage 2 onto a loop device: exit 0 ($(tail -1 "$T/run4.err"))" [ $? = 0 ]
	check "stage 2: the server stored the installed packages" \
		[ "$(node $MS '" ".join(sorted(p["name"] + "=" + p["version"] for p in d["installed"]["packages"]))')" = "lib=2.0 tool=1.0" ]
	MNT=$T/mnt
	mkdir -p "$MNT"
	if mount -o ro "${L}p1" "$MNT"; then
		check "stage 2: the package's file and the host name in the root" \
			sh -c "[ \"\$(cat '$MNT/usr/share/tool/VERSION')\" = 'tool 1.0' ] && grep -q n-5254001ed001 '$MNT/etc/hostname'"
		umount "$MNT" && MNT=
	else
		fail "mount ${L}p1"
	fi
	losetup -d "$L" && LOOPS=
else
	echo "SKIP (part): stage 2 needs root and loop devices"
fi

# ---- stage 3: update --once against /desired on a directory root ---------------------
section "stage 3"
MU=52:54:00:1e:e0:01
curl -sf -o /dev/null "$B/boot/$MU.ipxe"
code PATCH "$B/api/v1/nodes/$MU" -H "$OP" --data '{"profile":"full"}' >/dev/null
code POST "$B/api/v1/nodes/$MU/actions/provision" -H "$OP" >/dev/null
TB=$(curl -sf "$B/boot/$MU.ipxe" | sed -n 's/^kernel .* rackboot\.token=\([^ ]*\) .*/\1/p')
NT=$(curl -sf -H "Authorization: Bearer $TB" "$B/api/v1/nodes/$MU/plan" | python3 -c 'import json,sys; print(json.load(sys.stdin)["node_token"])')
check "the plan hands out a node token" [ -n "$NT" ]
code POST "$B/api/v1/nodes/$MU/status" -H "Authorization: Bearer $TB" --data '{"state":"imaged","step":"done"}' >/dev/null
ROOT=$T/root
mkdir -p "$ROOT/etc/rackboot/trusted" "$ROOT/var/lib" "$ROOT/usr"
cp "$T/site.pub" "$ROOT/etc/rackboot/trusted/"
cat >"$ROOT/etc/rackboot/agent.conf" <<EOF
server = $B
mac = $MU
token = $NT
repo = $B/repo
image = node
image_version = 2
interval_s = 300
jitter_s = 60
EOF
chmod 0600 "$ROOT/etc/rackboot/agent.conf"
upd() { "$AGENT" update --once --root "$ROOT" --arch testarch --no-after --timeout-s 20 --script-timeout-s 20; }
upd >"$T/u1.out" 2>"$T/u1.err"
check "update --once: exit 0, tool 1.0 installed ($(tail -1 "$T/u1.err"))" \
	sh -c "[ $? = 0 ] && [ \"\$(cat '$ROOT/usr/share/tool/VERSION')\" = 'tool 1.0' ]"
n304=$(grep -c "GET /api/v1/nodes/$MU/desired 304" "$T/rackbootd.log")
upd >"$T/u2.out" 2>"$T/u2.err"
check "a second poll: exit 0, a 304" \
	sh -c "[ $? = 0 ] && [ \$(grep -c 'GET /api/v1/nodes/$MU/desired 304' '$T/rackbootd.log') -gt $n304 ]"
pkg tool 1.1
upd >"$T/u3.out" 2>"$T/u3.err"
check "a newer package: update --once installs tool 1.1" \
	sh -c "[ $? = 0 ] && [ \"\$(cat '$ROOT/usr/share/tool/VERSION')\" = 'tool 1.1' ]"
check "the node is ready with tool 1.1" \
	[ "$(node $MU 'd["state"], [p["version"] for p in d["installed"]["packages"] if p["name"] == "tool"][0]')" = "ready 1.1" ]
st=$(code POST "$B/api/v1/package-sets/tools/actions/rollback" -H "$OP")
check "package set rollback: 200 or 409 ($st)" [ "$st" = 200 -o "$st" = 409 ]
check "package set unpin: 200" [ "$(code POST "$B/api/v1/package-sets/tools/actions/unpin" -H "$OP")" = 200 ]
check "status with a bad body: 400" \
	[ "$(code POST "$B/api/v1/nodes/$MU/status" -H "Authorization: Bearer $NT" --data '{"state":"ready","installed":[]}')" = 400 ]
check "inventory with a bad body: 400" \
	[ "$(code POST "$B/api/v1/nodes/$MU/inventory" -H "Authorization: Bearer $TB" --data '{"cpu":')" -ge 400 ]

# ---- /metrics ------------------------------------------------------------------------
section "metrics"
sleep 1.2 # the loop copies the DHCP and TFTP counters once a second
curl -sf "$B/metrics" >"$T/metrics"
check "/metrics counts the DHCP and TFTP work" \
	sh -c "grep -Eq '^rackboot_tftp_requests_total [1-9]' '$T/metrics' && grep -Eq '^rackboot_dhcp[a-z_]*(\\{[^}]*\\})? [1-9]' '$T/metrics'"

# ---- shutdown with work in flight: a TFTP transfer, an idle keep-alive
# connection, the stream opened at the start ---------------------------------------
section "shutdown"
python3 - "$TPORT" "$HPORT" "$T/inflight" <<'EOF' &
import socket, sys, time
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"\x00\x01big.bin\x00octet\x00", ("127.0.0.1", int(sys.argv[1])))
u.settimeout(20)
d = u.recv(70000)
h = socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=20)
h.sendall(b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n")
r = h.recv(4096)
open(sys.argv[3], "w").write("%s %s\n" % (d[:4].hex(), r.split(b" ")[1].decode()))
time.sleep(60)
EOF
BGPIDS="$BGPIDS $!"
for _ in $(seq 200); do [ -s "$T/inflight" ] && break; sleep 0.1; done
check "in flight at shutdown: a TFTP transfer and a keep-alive connection ($(cat "$T/inflight" 2>/dev/null))" \
	[ "$(cat "$T/inflight" 2>/dev/null)" = "00030001 206" ]
echo "driven for $(($(date +%s) - T0)) s; stopping rackbootd with SIGTERM"
RB_STOP_TIMEOUT_S=90 rb_stop_server "$RB_PID" "$RB_LOG" >"$T/stop.out"
rc=$?
RB_PID=
check "rackbootd exited 0 on SIGTERM, no sanitizer report in its log" [ $rc = 0 ]
[ $rc = 0 ] || cat "$T/stop.out"
(sleep 10 && kill "$SSE_END") >/dev/null 2>&1 &
TIMER=$!
wait "$SSE_END"
rc=$?
kill "$TIMER" 2>/dev/null
check "the stream open at shutdown was ended by the server (curl exit $rc)" [ $rc != 143 ]
check "the long stream got heartbeats" grep -q '^: ping' "$T/sse-end"

if [ -z "$ASAN" ]; then
	VG=$T/valgrind.log
	check "valgrind: ERROR SUMMARY: 0 errors" grep -q "ERROR SUMMARY: 0 errors" "$VG"
	check "valgrind: nothing definitely or indirectly lost" \
		sh -c "grep -q 'All heap blocks were freed' '$VG' || { grep -q 'definitely lost: 0 bytes' '$VG' && grep -q 'indirectly lost: 0 bytes' '$VG'; }"
	# --track-fds: every descriptor open at exit must be one it inherited
	# (stdio, the log, whatever the test runner passed down).
	leaked=$(sed 's/^==[0-9]*== *//' "$VG" | awk '/^Open .*[0-9]+:/ {d=$0; next}
		d != "" && NF > 0 { if ($0 !~ /inherited from parent/) print d; d="" }')
	check "valgrind: no descriptor leaked ($(grep -o 'FILE DESCRIPTORS: .*' "$VG"))" [ -z "$leaked" ]
	echo "valgrind: $(grep -o 'possibly lost: .*' "$VG" | head -1); $(grep -o 'total heap usage: .*' "$VG")"
	[ $RB_FAILS = 0 ] || { echo "--- valgrind.log:"; grep -v '^--' "$VG" | tail -150; echo "descriptors not inherited: ${leaked:-none}"; }
fi
rb_finish
