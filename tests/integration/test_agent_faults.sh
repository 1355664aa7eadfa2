#!/bin/bash
# rackboot-agent image under faults, with the real rackbootd serving the
# repository on 127.0.0.1 and, where rackbootd cannot misbehave on demand,
# hostile_http.py in front of it (a throttling, cutting, stalling or
# redirecting front: every repository byte still comes from rackbootd).
# What test_agent_image.sh already covers (a flipped pack byte, a wrong
# key, rackbootd stopped or killed for good, a pack redirect to file://) is
# not repeated. Here:
#  a. a pack cut short on disk, and a front that closes the connection in
#     the middle of a range: exit 1 naming the chunk whose bytes are
#     missing, no partition table left on the target;
#  b. rackbootd killed while a throttled transfer runs and restarted within
#     the retry window: the same run resumes, the result is byte-identical;
#     not restarted: exit 1 by itself, never a hang;
#  c. a server that sends headers then nothing: low-speed abort, a bounded
#     number of requests, exit 1;
#  d. redirects of the manifest to file:///etc/passwd and of a pack to
#     ftp://: refused at once, exit 1, the message says why;
#  e. a manifest edited after signing: refused before the target exists;
#  f. a loop device that held another, larger disk's GPT: a failed write
#     leaves no MBR/GPT (neither the image's nor the device's backup), a
#     full write is byte-identical, a reimage to v2 moves exactly the
#     stored bytes of the changed chunks (counted in rackbootd's access
#     log). Skipped (77) without loop devices.
set -u

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../../build}
HERE=$(cd "$(dirname "$0")" && pwd)
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
for b in "$AGENT" "$IMG" "$SRV"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
for t in sfdisk mkfs.vfat mkfs.ext4 python3 cmp curl timeout; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

T=$(mktemp -d /tmp/rbt-agentfault.XXXXXX)
PID=
HPID=
LOOP=
cleanup() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	if [ -n "$HPID" ]; then
		kill "$HPID" 2>/dev/null
		wait "$HPID" 2>/dev/null
	fi
	[ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

FAILS=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; FAILS=$((FAILS + 1)); }
R=$T/repo
mkdir -p "$R" "$T/boot" "$T/state"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
URL=http://127.0.0.1:$PORT/repo
cat >"$T/rackbootd.conf" <<EOF2
user = ""
state_dir = "$T/state"
server_address = "127.0.0.1"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$T/boot"
	repo_root = "$R"
	threads = 4
}
EOF2
start_server() {
	"$SRV" -c "$T/rackbootd.conf" -v >>"$T/rackbootd.log" 2>&1 &
	PID=$!
	for _ in $(seq 100); do
		curl -s -o /dev/null "http://127.0.0.1:$PORT/boot/" && return 0
		kill -0 "$PID" 2>/dev/null || break
		sleep 0.1
	done
	echo "FAIL: rackbootd did not start"; cat "$T/rackbootd.log"; exit 1
}
kill_server() {
	kill -9 "$PID" 2>/dev/null
	wait "$PID" 2>/dev/null
	PID=
}
# start_front ARGS...: hostile_http.py in front of rackbootd; sets FRONT
start_front() {
	rm -f "$T/front.port"
	python3 "$HERE/hostile_http.py" "$T/front.port" "http://127.0.0.1:$PORT" "$@" \
		>"$T/front.log" 2>&1 &
	HPID=$!
	for _ in $(seq 100); do
		[ -s "$T/front.port" ] && break
		sleep 0.05
	done
	[ -s "$T/front.port" ] || { echo "FAIL: hostile_http.py did not start"; cat "$T/front.log"; exit 1; }
	FRONT=http://127.0.0.1:$(cat "$T/front.port")/repo
}
stop_front() {
	kill "$HPID" 2>/dev/null
	wait "$HPID" 2>/dev/null
	HPID=
}

# no_table FILE SIZE...: FILE holds no MBR signature (510), no primary GPT
# header (512) and no backup GPT header in the last sector below each SIZE.
no_table() {
	python3 - "$@" <<'EOF2'
import sys
f = open(sys.argv[1], "rb")
head = f.read(1024)
bad = head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART"
for s in sys.argv[2:]:
    f.seek(int(s) - 512)
    bad = bad or f.read(8) == b"EFI PART"
sys.exit(1 if bad else 0)
EOF2
}
# pack_bytes: pack body bytes in rackbootd's access log so far
pack_bytes() {
	awk '/http: .* GET \/repo\/packs\// { s += $(NF) } END { print s + 0 }' "$T/rackbootd.log"
}
field() { # field NAME FILE: a key=value from the agent's summary line
	tr ' ' '\n' <"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'
}
# agent REPO_URL ARGS...: the agent, time-limited; 124 means it hung
agent() {
	local u=$1
	shift
	timeout 120 "$AGENT" image --repo "$u" --pub "$T/site.pub" -q "$@"
}

# ---- disks: GPT (ESP + ext4 root), 40 files partly incompressible; v2 =
# v1 with three files rewritten in place ----
. "$HERE/disk.sh"
mkdir -p "$T/root/etc" "$T/root/var/lib"
echo "rackboot agent fault test" >"$T/root/etc/hostname"
python3 - "$T/root" <<'EOF2'
import random, sys, os
rnd = random.Random(11)
for i in range(40):
    data = rnd.randbytes(1024 * rnd.randint(32, 256)) + bytes(1024) * rnd.randint(32, 256)
    with open(os.path.join(sys.argv[1], "var/lib", "pkg%02d.bin" % i), "wb") as f:
        f.write(data)
EOF2
gpt_disk "$T/disk1.img" "$T/root" "$T" || { echo "FAIL: could not make the test disk"; exit 1; }
cp "$T/disk1.img" "$T/disk2.img"
python3 - "$T/root/var/lib" "$T/disk2.img" <<'EOF2' || { echo "FAIL: could not make v2"; exit 1; }
import sys
d = open(sys.argv[2], "r+b"); disk = d.read()
for i in (5, 19, 33):
    head = open("%s/pkg%02d.bin" % (sys.argv[1], i), "rb").read(4096)
    off = disk.find(head)
    assert off > 0, i
    d.seek(off); d.write(b"version two" * 2000)
d.close()
EOF2
DSIZE=$((DISK_SECTORS * 512))
"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
for v in 1 2; do
	"$IMG" build -q --repo "$R" --key "$T/site.key" --name node --version $v "$T/disk$v.img" \
		>/dev/null || { echo "FAIL: build v$v"; exit 1; }
done
MF=$R/images/node/1.manifest.json
# the middle chunk: its pack, where it lies in the pack, its index
read -r PACK PSTART PLEN CIDX COFF < <(python3 - "$MF" <<'EOF2'
import json, sys
m = json.load(open(sys.argv[1]))
i = len(m["chunks"]) // 2
c = m["chunks"][i]
print(m["packs"][c[3]]["id"], c[4], c[5], i, c[0])
EOF2
)
PF=$R/packs/$PACK.pack
CUT=$((PSTART + PLEN / 2))
start_server

# baseline through a well-behaved front: requests a clean run makes
start_front
if agent "$FRONT" --name node --version 1 --target "$T/base.img" >"$T/s0" 2>"$T/e0" &&
	cmp -s "$T/disk1.img" "$T/base.img"; then
	ok "clean write through the front: $(cat "$T/s0")"
else
	bad "clean write through the front: $(cat "$T/s0" "$T/e0")"
fi
stop_front
BASEREQ=$(field requests "$T/s0")

# ---- a. truncated chunk ----
# a pack cut short on disk in the middle of chunk CIDX (rackbootd answers a
# short 206, then 416 for the rest); one range at a time so the range that
# holds the cut is the first to fail
cp "$PF" "$T/pack.orig"
truncate -s "$CUT" "$PF"
agent "$URL" --name node --version 1 --target "$T/a1.img" --parallel 1 --retries 1 \
	>"$T/s1" 2>"$T/e1"
rc=$?
if [ $rc -eq 1 ] && grep -q "failed: chunk $CIDX " "$T/e1" && no_table "$T/a1.img" $DSIZE; then
	ok "pack cut short on disk: exit 1, no partition table: $(cat "$T/e1")"
else
	bad "pack cut short on disk: exit $rc, want 'chunk $CIDX': $(cat "$T/e1")"
fi
cp "$T/pack.orig" "$PF"

# a front that sends the full Content-Length, closes at the same byte every
# time; the target held v2 but not chunk CIDX (reimage: its table must go)
start_front --cut "$PACK:$CUT"
cp "$T/disk2.img" "$T/a2.img"
head -c 65536 /dev/urandom | dd of="$T/a2.img" bs=65536 iflag=fullblock seek="$COFF" \
	oflag=seek_bytes conv=notrunc status=none
agent "$FRONT" --name node --version 1 --target "$T/a2.img" --reimage --retries 2 \
	>"$T/s2" 2>"$T/e2"
rc=$?
if [ $rc -eq 1 ] && grep -q "failed: chunk $CIDX " "$T/e2" && grep -q "after 3 requests" "$T/e2" &&
	no_table "$T/a2.img" $DSIZE; then
	ok "connection closed mid-range: exit 1, no partition table: $(cat "$T/e2")"
else
	bad "connection closed mid-range: exit $rc, want 'chunk $CIDX' after 3 requests: $(cat "$T/e2")"
fi
stop_front

# ---- b. rackbootd killed during a throttled transfer ----
start_front --rate 400000 --step 65536
agent "$FRONT" --name node --version 1 --target "$T/b1.img" >"$T/s3" 2>"$T/e3" &
AGPID=$!
sleep 1.5
kill_server
sleep 0.5
start_server
wait $AGPID
rc=$?
if [ $rc -eq 0 ] && cmp -s "$T/disk1.img" "$T/b1.img" &&
	[ "$(field requests "$T/s3")" -gt "${BASEREQ:-0}" ]; then
	ok "killed and restarted: resumed to a byte-identical disk: $(cat "$T/s3")"
else
	bad "killed and restarted: exit $rc (124 = hung), clean run made $BASEREQ requests: $(cat "$T/s3" "$T/e3")"
fi
# not restarted: the front answers 502 (and cuts what it was sending)
agent "$FRONT" --name node --version 1 --target "$T/b2.img" --retries 2 >"$T/s4" 2>"$T/e4" &
AGPID=$!
sleep 1.5
kill_server
t0=$(date +%s)
wait $AGPID
rc=$?
dt=$(($(date +%s) - t0))
if [ $rc -eq 1 ] && [ $dt -le 30 ] && grep -q "failed: chunk [0-9]" "$T/e4" && no_table "$T/b2.img" $DSIZE; then
	ok "killed for good: exit 1 by itself after ${dt}s: $(cat "$T/e4")"
else
	bad "killed for good: exit $rc (124 = hung) after ${dt}s: $(cat "$T/e4")"
fi
stop_front
start_server

# ---- c. stalled: headers, then silence ----
start_front --stall
t0=$(date +%s)
agent "$FRONT" --name node --version 1 --target "$T/c.img" --timeout-s 2 --retries 2 \
	>"$T/s5" 2>"$T/e5"
rc=$?
dt=$(($(date +%s) - t0))
stalled=$(grep -c "GET /repo/packs/" "$T/front.log")
# 3 attempts of >= 2 s each; the other ranges in flight stop with the first
if [ $rc -eq 1 ] && [ $dt -ge 6 ] && [ $dt -le 40 ] && grep -q "Timeout" "$T/e5" &&
	grep -q "after 3 requests" "$T/e5" && [ "$stalled" -le 12 ] && no_table "$T/c.img" $DSIZE; then
	ok "stalled server: exit 1 after ${dt}s and $stalled pack requests: $(cat "$T/e5")"
else
	bad "stalled server: exit $rc (124 = hung) after ${dt}s, $stalled pack requests: $(cat "$T/e5")"
fi
stop_front

# ---- d. redirects out of http(s) ----
start_front --redirect file:///etc/passwd --redirect-all
agent "$FRONT" --name node --version 1 --target "$T/d1.img" >"$T/s6" 2>"$T/e6"
rc=$?
if [ $rc -eq 1 ] && grep -q "manifest.json: redirect to file:///etc/passwd refused: only http:// and https://" "$T/e6" && [ ! -e "$T/d1.img" ]; then
	ok "manifest redirected to file://: refused: $(cat "$T/e6")"
else
	bad "manifest redirected to file://: exit $rc: $(cat "$T/e6")"
fi
stop_front
start_front --redirect ftp://127.0.0.1/pack
agent "$FRONT" --name node --version 1 --target "$T/d2.img" >"$T/s7" 2>"$T/e7"
rc=$?
if [ $rc -eq 1 ] && grep -q "redirect to ftp://127.0.0.1/pack refused: only http:// and https://" "$T/e7" &&
	grep -q "after 1 request)" "$T/e7" &&
	no_table "$T/d2.img" $DSIZE; then
	ok "pack redirected to ftp://: refused without retrying: $(cat "$T/e7")"
else
	bad "pack redirected to ftp://: exit $rc: $(cat "$T/e7")"
fi
stop_front

# ---- e. a manifest edited after signing (wrong key and flipped pack byte:
# test_agent_image.sh) ----
cp "$MF" "$T/mf.orig"
python3 - "$MF" <<'EOF2'
import sys
p = sys.argv[1]; s = open(p).read()
i = s.index('"chunks":[[') + 11
j = s.index('"', i) + 1  # first chunk's sha256: one hex digit changed
s = s[:j] + ("0" if s[j] != "0" else "1") + s[j + 1:]
open(p, "w").write(s)
EOF2
agent "$URL" --name node --version 1 --target "$T/e.img" >"$T/s8" 2>"$T/e8"
rc=$?
[ $rc -eq 1 ] && grep -q "signature does not verify" "$T/e8" && [ ! -e "$T/e.img" ] &&
	ok "manifest edited after signing: refused, no target: $(cat "$T/e8")" ||
	bad "manifest edited after signing: exit $rc: $(cat "$T/e8")"
cp "$T/mf.orig" "$MF"

# ---- f. a loop device ----
# the device is 16 MiB larger than the image and held another disk: a GPT
# over the whole device (primary at 512, backup in its last sector)
LSIZE=$((DSIZE + 16 * 1024 * 1024))
head -c $LSIZE /dev/urandom >"$T/loop.bin"
printf 'label: gpt\nstart=2048, type=L, name="old tenant"\n' | sfdisk -q "$T/loop.bin" >/dev/null ||
	{ echo "FAIL: sfdisk on the loop file"; exit 1; }
if ! LOOP=$(losetup -f --show "$T/loop.bin" 2>/dev/null) || [ ! -b "$LOOP" ]; then
	LOOP=
	echo "$FAILS failure(s) before the loop device part"
	echo "SKIP: losetup -f failed (no loop devices here)"
	[ "$FAILS" -eq 0 ] && exit 77
	exit 1
fi
no_table "$LOOP" $LSIZE && { echo "FAIL: the old tenant's GPT is not on $LOOP"; exit 1; }
# a failed write (connection closed mid-range) leaves neither table
start_front --cut "$PACK:$CUT"
agent "$FRONT" --name node --version 1 --target "$LOOP" --retries 0 >"$T/s9" 2>"$T/e9"
rc=$?
if [ $rc -eq 1 ] && no_table "$LOOP" $DSIZE $LSIZE; then
	ok "loop device, failed write: no MBR, no GPT (image's or device's backup): $(cat "$T/e9")"
else
	bad "loop device, failed write: exit $rc, a partition table is left: $(cat "$T/e9")"
fi
stop_front
before=$(pack_bytes)
if agent "$URL" --name node --version 1 --target "$LOOP" >"$T/s10" 2>"$T/e10" &&
	cmp -s -n $DSIZE "$T/disk1.img" "$LOOP"; then
	ok "loop device, full write byte-identical: $(cat "$T/s10")"
else
	bad "loop device, full write: $(cat "$T/s10" "$T/e10")"
fi
full_srv=$(($(pack_bytes) - before))
# what v1 -> v2 must move: the stored bytes of v2's chunks that differ from
# v1 at the same offset, and of the boot-area chunks (always fetched)
want=$(python3 - "$MF" "$R/images/node/2.manifest.json" <<'EOF2'
import json, sys
m1, m2 = (json.load(open(p)) for p in sys.argv[1:3])
old = {c[0]: c[2] for c in m1["chunks"]}
mib, end = 1 << 20, m2["disk_size"] - (1 << 20)
print(sum(c[5] for c in m2["chunks"]
          if c[0] < mib or c[0] + c[1] > end or old.get(c[0]) != c[2]))
EOF2
)
before=$(pack_bytes)
if agent "$URL" --name node --version 2 --target "$LOOP" --reimage >"$T/s11" 2>"$T/e11" &&
	cmp -s -n $DSIZE "$T/disk2.img" "$LOOP"; then
	ok "loop device, reimage to v2 byte-identical: $(cat "$T/s11")"
else
	bad "loop device, reimage to v2: $(cat "$T/s11" "$T/e11")"
fi
re_srv=$(($(pack_bytes) - before))
if [ "$re_srv" -eq "$want" ] && [ $((re_srv * 5)) -lt "$full_srv" ]; then
	ok "loop device, reimage: rackbootd sent $re_srv pack bytes = the changed and boot chunks' (full write: $full_srv)"
else
	bad "loop device, reimage: rackbootd sent $re_srv pack bytes, changed and boot chunks hold $want (full: $full_srv)"
fi
python3 -c 'import sys; f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2]) - 512)
sys.exit(f.read(8) == b"EFI PART")' "$LOOP" $LSIZE &&
	ok "loop device: the old backup GPT at the device's end is gone" ||
	bad "loop device: the old tenant's backup GPT is still at the device's end"

echo "$FAILS failure(s)"
[ "$FAILS" -eq 0 ]
