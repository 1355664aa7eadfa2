#!/bin/bash
# rackboot-agent run against the real rackbootd on 127.0.0.1, as a booting
# node runs it: the kernel line is taken from the iPXE script rackbootd
# renders for the node (server, MAC and the per-boot token), the node's
# state and profile are set in the registry as an operator would (sqlite),
# and the repository is built with rackboot-image. Checked:
#  - provision: the target file ends byte-identical to the source disk, the
#    node goes provisioning -> wiping -> imaging -> imaged (events), live
#    progress (0 < bytes_done < bytes_total, rate > 0) is seen in
#    GET /api/v1/nodes/<mac> while the agent runs, the inventory is stored;
#  - a run killed once a third of the data is written (a reboot) and run
#    again: the target ends byte-identical and the second run fetched under 80 % of the image
#    run (it hashed what the first wrote: delta mode with a metadata wipe);
#  - a plain raw image of the signed catalogue (type "plain", plain.c):
#    byte-identical too;
#  - a wrong trusted key: exit 1, state "failed" with the reason, and the
#    target untouched (the manifest is verified before anything is wiped);
#  - a stale token: exit 1 with the server's 403 reason; a plan disk that
#    does not exist is not created as a file under /dev; a disk smaller
#    than the image is refused before it is wiped;
#  - a stub server: 503 is retried a bounded number of times, a redirect
#    (to file://) is not followed, a stalled answer ends after the timeout;
#  - discovery: inventory only, state "discovered";
#  - with loop devices (root only; skipped otherwise): a full wipe plus a
#    grow of the last partition onto a device larger than the image
#    (sfdisk --verify, bytes beyond the image read zero), `rackboot-agent
#    wipe --mode metadata` on a partitioned disk (edges of disk and
#    partitions zero, everything else kept, blkid finds the ext4 no more),
#    `wipe --mode full` (every byte zero), and `grow` on a 4Kn GPT.
# Starts its own rackbootd and loop devices; kills and detaches only those.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
export PATH=$PATH:/usr/sbin:/sbin
rb_need_cmd sfdisk python3 cmp curl truncate

rb_setup agentrun
T=$RB_TMP
AGPID=
STUB=
LOOPS=
cleanup() {
	[ -n "$AGPID" ] && kill -9 "$AGPID" 2>/dev/null
	[ -n "$STUB" ] && kill "$STUB" 2>/dev/null
	for l in $LOOPS; do losetup -d "$l" 2>/dev/null; done
}
RB_ON_EXIT=cleanup


PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
DB=$T/state/registry.db
mkdir -p "$T/repo" "$T/boot" "$T/state" "$T/trusted" "$T/wrong"

# ---- the image: a 48 MiB GPT disk whose root partition ends 1 MiB early,
# with 6 MiB of random (incompressible) data and a marker ----
DISK=$T/disk.img
truncate -s 48M "$DISK"
printf 'label: gpt\nstart=2048, size=16384, type=U, name="esp"\nstart=18432, size=77824, type=L, name="root"\n' |
	sfdisk -q "$DISK" >/dev/null || { echo "FAIL: sfdisk"; exit 1; }
head -c $((6 * 1024 * 1024)) /dev/urandom | dd of="$DISK" bs=1M seek=12 conv=notrunc status=none
echo "rackboot agent run marker" | dd of="$DISK" bs=1M seek=40 conv=notrunc status=none
DSIZE=$((48 * 1024 * 1024))
"$IMG" keygen "$T/site" >/dev/null && "$IMG" keygen "$T/other" >/dev/null ||
	{ echo "FAIL: keygen"; exit 1; }
cp "$T/site.pub" "$T/trusted/site.pub"
cp "$T/other.pub" "$T/wrong/other.pub"
"$IMG" build --repo "$T/repo" --key "$T/site.key" --name node --version 1 "$DISK" >/dev/null ||
	{ echo "FAIL: rackboot-image build"; exit 1; }
# a larger one (24 MiB of random data) for the run cut in the middle: 6
# ranges of 4 MiB at 1 MB/s each, so the first four are on the disk some
# seconds before the rest (a loaded CI machine polls slowly)
BIG=$T/big.img
truncate -s 40M "$BIG"
head -c $((24 * 1024 * 1024)) /dev/urandom | dd of="$BIG" bs=1M seek=4 conv=notrunc status=none
"$IMG" build --repo "$T/repo" --key "$T/site.key" --name big --version 1 "$BIG" >/dev/null ||
	{ echo "FAIL: rackboot-image build (big)"; exit 1; }
# the same disk as a plain raw image of the catalogue (type "plain")
"$IMG" register --repo "$T/repo" --key "$T/site.key" --name site-raw --version 1 "$DISK" >/dev/null ||
	{ echo "FAIL: rackboot-image register"; exit 1; }

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
	threads = 4
}
discovery {
	kernel = "vmlinuz"
	initrd = "initrd.img"
	cmdline = "console=ttyS0"
}
profile "node" {
	image = "node"
	version = "latest"
	wipe = "metadata"
	grow_last_partition = false
	after = "reboot"
}
profile "resume" {
	image = "big"
	version = "1"
	wipe = "metadata"
	grow_last_partition = false
	after = "none"
}
profile "raw" {
	image = "site-raw"
	version = "latest"
	wipe = "none"
	grow_last_partition = false
	after = "none"
}
profile "grow" {
	image = "node"
	version = "1"
	wipe = "full"
	grow_last_partition = true
	after = "poweroff"
}
EOF
rb_start_server "$B/boot/" "$SRV" -c "$T/rackbootd.conf" -v
# The node document is an operator endpoint: a token as an operator makes one.
OPAUTH="Authorization: Bearer $("$SRV" -c "$T/rackbootd.conf" token create agent-run 2>/dev/null)"

# sql STATEMENT: the registry changed as an operator would.
sql() { rb_sql "$DB" "$1"; }
# boot MAC: fetches the node's iPXE script as iPXE would and keeps its
# kernel line as the node's /proc/cmdline ($T/cmdline).
boot() {
	curl -sf -o "$T/script" "$B/boot/$1.ipxe" || return 1
	grep '^kernel ' "$T/script" >"$T/cmdline"
	grep -q 'rackboot.token=' "$T/cmdline"
}
# node MAC EXPR: a Python expression over GET /api/v1/nodes/<mac> (d)
node() {
	curl -sf -H "$OPAUTH" "$B/api/v1/nodes/$1" >"$T/node.json" || { echo "(no node)"; return; }
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($2)" "$T/node.json"
}
events() { node "$1" '" ".join(e["event"] for e in d["events"] if e["event"].startswith("agent."))'; }

# run_agent OUT ERR ARGS...: runs the agent in the background, polling the
# node document every 0.2 s into OUT.polls, and returns its exit code.
run_agent() {
	out=$1 err=$2
	shift 2
	polls=$out.polls
	: >"$polls"
	"$AGENT" run --cmdline "$T/cmdline" --no-after --timeout-s 10 --retries 2 "$@" >"$out" 2>"$err" &
	AGPID=$!
	while kill -0 "$AGPID" 2>/dev/null; do
		curl -s -H "$OPAUTH" "$B/api/v1/nodes/$MAC" >>"$polls" && echo >>"$polls"
		sleep 0.2
	done
	wait "$AGPID"
	rc=$?
	AGPID=
	return $rc
}

# ---- provision onto a file ----
MAC=52:54:00:5e:00:01
boot $MAC || { echo "FAIL: no iPXE script for $MAC"; exit 1; }
sql "UPDATE nodes SET state = 'provisioning', profile = 'node' WHERE mac = '$MAC'"
boot $MAC && grep -q 'rackboot.mode=provision' "$T/cmdline" &&
	pass "provision kernel line: $(sed 's/rackboot.token=[0-9a-f]*/rackboot.token=<token>/' "$T/cmdline")" ||
	fail "no provision script for $MAC: $(cat "$T/script")"
OUT=$T/out.img
head -c $((4 * 1024 * 1024)) /dev/urandom >"$OUT" # an old tenant's bytes
# About 6 MiB in two ranges at 700 KB/s each: a few seconds, so that live
# progress can be seen moving.
if run_agent "$T/run1.out" "$T/run1.err" --pubdir "$T/trusted" --target "$OUT" --max-rate 700000; then
	pass "run: $(cat "$T/run1.out")"
else
	fail "run exit $?: $(tail -5 "$T/run1.err")"
fi
cmp -s "$DISK" "$OUT" && pass "the target is byte-identical to the source disk" ||
	fail "the target differs from the source disk"
st=$(node $MAC 'd["state"]')
[ "$st" = imaged ] && pass "node state is imaged" || fail "node state is $st, not imaged"
ev=$(events $MAC)
[ "$ev" = "agent.inventory agent.wiping agent.imaging agent.imaged" ] && pass "events: $ev" || fail "events: $ev"
node $MAC 'd["events"][-1]["detail"]' | grep -q "wipe metadata: zeroed" &&
	pass "imaged event tells what was wiped: $(node $MAC 'd["events"][-1]["detail"]')" ||
	fail "imaged event detail: $(node $MAC 'd["events"][-1]["detail"]')"
python3 - "$T/run1.out.polls" "$T/progress" <<'EOF' && pass "live progress seen while imaging: $(cat "$T/progress")" || fail "no live progress seen in $(grep -c . "$T/run1.out.polls") polls: $(cat "$T/progress")"
import json, sys
seen, all_ = [], []
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    p = json.loads(line).get("progress") or {}
    a = "%s %s/%s" % (p.get("state"), p.get("bytes_done"), p.get("bytes_total"))
    if a not in all_:
        all_.append(a)
    if p.get("state") == "imaging" and 0 < p.get("bytes_done", 0) < p.get("bytes_total", 0) and p.get("rate", 0) > 0:
        s = "%d/%d at %d B/s" % (p["bytes_done"], p["bytes_total"], p["rate"])
        if s not in seen:
            seen.append(s)
open(sys.argv[2], "w").write(", ".join(seen[:4]) + " (%d distinct; all: %s)" % (len(seen), ", ".join(all_[:8])))
# Progress moves as ranges arrive (in proportion) and are verified: at
# least one report between the start and the end must have been seen live.
sys.exit(0 if seen else 1)
EOF
n=$(sed -n 's/.* \([0-9]*\) progress reports.*/\1/p' "$T/run1.out")
secs=$(sed -n 's/.* bytes in \([0-9]*\)\.[0-9] s,.*/\1/p' "$T/run1.out")
# about one a second: neither silent nor flooding
[ "${n:-0}" -ge $((${secs:-9} - 1)) ] && [ "${n:-0}" -le $((${secs:-0} + 2)) ] &&
	pass "the agent sent $n progress reports in $secs+ s of imaging" ||
	fail "progress reports: ${n:-none} in ${secs:-?} s"
n=$(grep -c "POST /api/v1/nodes/$MAC/status 200" "$T/rackbootd.log")
[ "$n" -ge 5 ] && pass "$n status reports accepted by rackbootd" || fail "only $n status reports in the server log"
inv=$(node $MAC 'd["inventory"]["version"], d["inventory"]["counts"]["nics"] >= 0')
[ "$inv" = "1 True" ] && pass "inventory stored for the node" || fail "inventory: $inv"

# ---- a run cut in the middle (a reboot) resumes: what it wrote is kept ----
# The node boots again while it was imaging; the new run (metadata wipe,
# so delta mode) hashes what the cut run wrote and fetches the rest only.
RES=$T/resume.img
head -c $((4 * 1024 * 1024)) /dev/urandom >"$RES"
sql "UPDATE nodes SET state = 'provisioning', profile = 'resume' WHERE mac = '$MAC'"
boot $MAC
"$AGENT" run --cmdline "$T/cmdline" --no-after --timeout-s 10 --pubdir "$T/trusted" \
	--target "$RES" --max-rate 1000000 >"$T/cut.out" 2>"$T/cut.err" &
AGPID=$!
cut_at=
for _ in $(seq 1 200); do # 0.1 s steps: cut once some of the image's data is on the target
	cut_at=$(python3 - "$BIG" "$RES" <<'PY'
import sys
a, b = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
bs = 65536
blocks = [k for k in range(0, len(a), bs) if a[k:k + bs].strip(b"\0")]
same = sum(1 for k in blocks if a[k:k + bs] == b[k:k + bs])
print("%d of %d data blocks" % (same, len(blocks)) if same * 3 >= len(blocks) and same < len(blocks) else "")
PY
)
	[ -n "$cut_at" ] && break
	kill -0 "$AGPID" 2>/dev/null || break
	sleep 0.1
done
kill -KILL "$AGPID" 2>/dev/null
wait "$AGPID" 2>/dev/null
AGPID=
if [ -z "$cut_at" ]; then
	fail "the run to cut never had a third of the image's data written: $(tail -3 "$T/cut.err")"
else
	cmp -s "$BIG" "$RES" && fail "the cut run had already finished" ||
		pass "run cut (SIGKILL) with $cut_at written; the target is not the image yet"
	boot $MAC
	if run_agent "$T/resume.out" "$T/resume.err" --pubdir "$T/trusted" --target "$RES"; then
		pass "resumed run: $(cat "$T/resume.out")"
	else
		fail "resumed run exit $?: $(tail -5 "$T/resume.err")"
	fi
	cmp -s "$BIG" "$RES" && pass "after the resumed run the target is byte-identical to the source disk" ||
		fail "after the resumed run the target differs from the source disk"
	got=$(sed -n 's/.*fetched \([0-9]*\) bytes.*/\1/p' "$T/resume.out")
	# the cut run had written at least a third of the data blocks
	[ -n "$got" ] && [ $((got * 100)) -lt $((24 * 1024 * 1024 * 80)) ] &&
		pass "the resumed run fetched $got bytes, under 80 % of the image's $((24 * 1024 * 1024)) bytes of data" ||
		fail "the resumed run fetched ${got:-?} bytes of the image's $((24 * 1024 * 1024)): nothing was reused"
fi
sql "UPDATE nodes SET profile = 'node' WHERE mac = '$MAC'"

# ---- a wrong trusted key: failed with the reason, target untouched ----
sql "UPDATE nodes SET state = 'provisioning' WHERE mac = '$MAC'"
boot $MAC
run_agent "$T/run2.out" "$T/run2.err" --pubdir "$T/wrong" --target "$OUT"
rc=$?
[ $rc = 1 ] && pass "wrong key: exit 1: $(grep failed: "$T/run2.err")" ||
	fail "wrong key: exit $rc: $(tail -3 "$T/run2.err")"
st=$(node $MAC 'd["state"]')
msg=$(node $MAC 'd["events"][-1]["detail"]')
[ "$st" = failed ] && echo "$msg" | grep -q "signature does not verify with any trusted key" &&
	pass "node state failed: $msg" || fail "after a wrong key: state $st, detail $msg"
cmp -s "$DISK" "$OUT" && pass "wrong key: the target was not touched" || fail "wrong key: the target changed"

# ---- a token of an earlier boot ----
OLDCMD=$(cat "$T/cmdline")
sql "UPDATE nodes SET state = 'provisioning' WHERE mac = '$MAC'"
boot $MAC
echo "$OLDCMD" >"$T/cmdline"
run_agent "$T/run3.out" "$T/run3.err" --pubdir "$T/trusted" --target "$OUT"
rc=$?
[ $rc = 1 ] && grep -q "HTTP 403" "$T/run3.err" && pass "stale token: exit 1: $(grep failed: "$T/run3.err")" ||
	fail "stale token: exit $rc: $(cat "$T/run3.err")"
grep -q "rackboot.token=" "$T/run3.err" "$T/run1.err" && fail "the token was printed" || pass "the token is never printed"

# ---- a plain raw image from the signed catalogue ----
sql "UPDATE nodes SET state = 'provisioning', profile = 'raw' WHERE mac = '$MAC'"
boot $MAC
if run_agent "$T/run8.out" "$T/run8.err" --pubdir "$T/trusted" --target "$T/raw.img"; then
	pass "plain run: $(cat "$T/run8.out")"
else
	fail "plain run: $(tail -3 "$T/run8.err")"
fi
cmp -s "$DISK" "$T/raw.img" && pass "plain: the target is byte-identical to the source disk" ||
	fail "plain: the target differs"
[ "$(node $MAC 'd["state"]')" = imaged ] && pass "plain: node imaged" || fail "plain: state $(node $MAC 'd["state"]')"
grep -q "after: none (not done: --no-after)" "$T/run8.err" && pass "plain: after none" || fail "plain: after"
sql "UPDATE nodes SET profile = 'node' WHERE mac = '$MAC'"

# ---- a plan disk that is not there: no file appears in its place ----
sql "UPDATE nodes SET state = 'provisioning' WHERE mac = '$MAC'"
boot $MAC
NODISK=/dev/rbt-no-such-disk-$$
run_agent "$T/run6.out" "$T/run6.err" --pubdir "$T/trusted" --target "$NODISK"
rc=$?
if [ $rc = 1 ] && [ ! -e "$NODISK" ] && grep -q "target $NODISK: No such file" "$T/run6.err"; then
	pass "missing disk: exit 1, nothing created: $(grep failed: "$T/run6.err")"
else
	fail "missing disk: exit $rc: $(tail -2 "$T/run6.err")"
	rm -f "$NODISK"
fi
[ "$(node $MAC 'd["state"]')" = failed ] && pass "missing disk: node state failed" ||
	fail "missing disk: state $(node $MAC 'd["state"]')"

# ---- a server that fails: 503 is retried (bounded), a redirect is not
# followed, a stalled answer ends after the timeout ----
STUB_PORT=$(rb_free_ports tcp)
cat >"$T/stub.py" <<'STUBEOF'
import http.server, sys, time
n = {"plan": 0}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass
    def do_GET(self):
        open(sys.argv[2], "a").write("%s %s\n" % (self.path, self.headers.get("Authorization", "")[:6]))
        if "stall" in self.path:
            time.sleep(20)
            return
        n["plan"] += self.path.endswith("/plan")
        if n["plan"] <= 2:
            self.send_response(503); self.send_header("Content-Length", "2"); self.end_headers()
            self.wfile.write(b"{}")
            return
        self.send_response(302); self.send_header("Location", "file:///etc/passwd")
        self.send_header("Content-Length", "0"); self.end_headers()
    def do_POST(self):
        self.send_response(500); self.send_header("Content-Length", "0"); self.end_headers()
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
STUBEOF
python3 "$T/stub.py" "$STUB_PORT" "$T/stub.log" &
STUB=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$STUB_PORT/x" && break; sleep 0.1; done
: >"$T/stub.log"
TOKEN=0123456789abcdef0123456789abcdef
"$AGENT" run --cmdline /dev/null --no-after --retries 3 --timeout-s 2 \
	--server "http://127.0.0.1:$STUB_PORT" --mac 52:54:00:5e:00:09 --token $TOKEN \
	>"$T/stub.out" 2>"$T/stub.err"
rc=$?
n=$(grep -c "/plan Bearer" "$T/stub.log")
[ $rc = 1 ] && [ "$n" = 3 ] && grep -q "HTTP 302: redirects are not followed" "$T/stub.err" &&
	pass "503 twice then a redirect to file://: retried, then refused after $n requests" ||
	fail "stub server: exit $rc, $n plan requests: $(cat "$T/stub.err")"
t0=$(date +%s)
"$AGENT" run --cmdline /dev/null --no-after --retries 1 --timeout-s 1 \
	--server "http://127.0.0.1:$STUB_PORT/stall" --mac 52:54:00:5e:00:09 --token $TOKEN \
	>"$T/stall.out" 2>"$T/stall.err"
rc=$?
el=$(($(date +%s) - t0))
[ $rc = 1 ] && [ $el -lt 15 ] && pass "stalled server: gave up after $el s: $(grep failed: "$T/stall.err")" ||
	fail "stalled server: exit $rc after $el s"
kill "$STUB" 2>/dev/null
wait "$STUB" 2>/dev/null
STUB=

# ---- discovery ----
MAC2=52:54:00:5e:00:02
MAC_SAVE=$MAC
MAC=$MAC2
boot $MAC2 && grep -q 'rackboot.mode=discovery' "$T/cmdline" || fail "no discovery script for $MAC2"
if run_agent "$T/run4.out" "$T/run4.err"; then
	pass "discovery run: $(cat "$T/run4.out")"
else
	fail "discovery run: $(tail -3 "$T/run4.err")"
fi
st=$(node $MAC2 'd["state"], d["inventory"]["version"]')
[ "$st" = "discovered 1" ] && pass "discovery: state discovered with the inventory" || fail "discovery: $st"
grep -q "after: poweroff (not done: --no-after)" "$T/run4.err" && pass "discovery would power off" ||
	fail "discovery after: $(cat "$T/run4.err")"
MAC=$MAC_SAVE

# ---- loop devices ----
if [ "$(id -u)" != 0 ] || ! losetup -f >/dev/null 2>&1; then
	echo "SKIP (part): loop devices need root"
	rb_finish
fi
attach() { # attach FILE [losetup args]: prints the device, remembers it
	l=$(losetup -f --show "$@") || return 1
	LOOPS="$LOOPS $l"
	echo "$l"
}
detach() {
	losetup -d "$1"
	LOOPS=$(echo "$LOOPS" | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' ')
}

# provision onto a 64 MiB device: full wipe, image, grow
DEVF=$T/dev.img
python3 -c 'import sys; sys.stdout.buffer.write(b"\xa5" * (64 << 20))' >"$DEVF"
L=$(attach "$DEVF") || { fail "losetup"; L=; }
if [ -n "$L" ]; then
	sql "UPDATE nodes SET state = 'provisioning', profile = 'grow' WHERE mac = '$MAC'"
	boot $MAC
	if run_agent "$T/run5.out" "$T/run5.err" --pubdir "$T/trusted" --target "$L"; then
		pass "loop run: $(cat "$T/run5.out")"
	else
		fail "loop run: $(tail -3 "$T/run5.err")"
	fi
	grep -q "wipe full: BLKZEROOUT" "$T/run5.out" && pass "full wipe by BLKZEROOUT" ||
		fail "wipe: $(cat "$T/run5.out")"
	grep -q "gpt: partition 2 grown from 77824 to" "$T/run5.out" && pass "last partition grown" ||
		fail "grow: $(cat "$T/run5.out")"
	v=$(sfdisk --verify "$L" 2>&1)
	echo "$v" | grep -q "No errors detected" && pass "sfdisk --verify: the grown GPT is valid" ||
		fail "sfdisk --verify: $v"
	j=$(sfdisk --json "$L" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]; print(p["lastlba"], [(x["start"], x["size"]) for x in p["partitions"]])')
	[ "$j" = "131038 [(2048, 16384), (18432, 112607)]" ] && pass "sfdisk --json: root spans to LBA 131038" ||
		fail "sfdisk --json: $j"
	# partitions' bytes as in the image; beyond the image zero (the old 0xa5 gone)
	cmp -s -i $((2048 * 512)) -n $((94208 * 512)) "$DISK" "$L" && pass "partition data as in the image" ||
		fail "partition data differs"
	python3 - "$L" "$DSIZE" <<'EOF' && pass "bytes beyond the image read zero after the full wipe" || fail "old bytes beyond the image"
import sys
f = open(sys.argv[1], "rb"); f.seek(int(sys.argv[2]))
tail = f.read((64 << 20) - int(sys.argv[2]) - (1 << 20))  # up to the new backup GPT
sys.exit(0 if tail.count(0) == len(tail) else 1)
EOF
	[ "$(node $MAC 'd["state"]')" = imaged ] && pass "loop: node imaged" || fail "loop: state $(node $MAC 'd["state"]')"
	detach "$L"
fi

# a disk smaller than the image is refused before it is wiped
SF=$T/small.img
python3 -c 'import sys; sys.stdout.buffer.write(b"\x5a" * (32 << 20))' >"$SF"
L=$(attach "$SF") || { fail "losetup"; L=; }
if [ -n "$L" ]; then
	sql "UPDATE nodes SET state = 'provisioning' WHERE mac = '$MAC'"
	boot $MAC
	run_agent "$T/run7.out" "$T/run7.err" --pubdir "$T/trusted" --target "$L"
	rc=$?
	[ $rc = 1 ] && grep -q "has 33554432 bytes, the image needs 50331648" "$T/run7.err" &&
		pass "small disk: exit 1: $(grep failed: "$T/run7.err")" ||
		fail "small disk: exit $rc: $(tail -2 "$T/run7.err")"
	python3 -c 'import sys; sys.exit(0 if open(sys.argv[1], "rb").read() == b"\x5a" * (32 << 20) else 1)' "$L" &&
		pass "small disk: not wiped" || fail "small disk: its bytes changed"
	detach "$L"
fi

# wipe --mode metadata on a partitioned disk with an ext4 in partition 2
WF=$T/wipe.img
python3 -c 'import sys; sys.stdout.buffer.write(bytes((i * 7 + 1) & 0xff or 1 for i in range(1 << 20)) * 64)' >"$WF"
printf 'label: gpt\nstart=2048, size=20480, type=L\nstart=22528, size=40960, type=L\n' | sfdisk -q "$WF" >/dev/null
truncate -s 20M "$T/p2.img" && mkfs.ext4 -q -F "$T/p2.img" >/dev/null 2>&1 &&
	dd if="$T/p2.img" of="$WF" bs=512 seek=22528 conv=notrunc status=none
cp "$WF" "$T/wipe.before"
L=$(attach -P "$WF") || { fail "losetup"; L=; }
if [ -n "$L" ]; then
	# A kernel built without partition table parsers shows none until
	# told (as udev-less systems use partx); BLKRRPART still drops them.
	[ -e /sys/block/"$(basename "$L")"/"$(basename "$L")"p1 ] || partx -a "$L" 2>/dev/null
	blkid -p -O $((22528 * 512)) "$L" 2>/dev/null | grep -q 'TYPE="ext4"' && pass "before: blkid sees ext4 in partition 2" ||
		fail "before: blkid sees no ext4"
	parts=$(ls -d /sys/block/"$(basename "$L")"/"$(basename "$L")"p* 2>/dev/null | wc -l)
	r=$("$AGENT" wipe --mode metadata -q "$L" 2>&1) && pass "wipe metadata: $r" || fail "wipe metadata: $r"
	echo "$r" | grep -q "and $parts partition" || fail "wipe counted other partitions than the kernel's $parts: $r"
	blkid -p -O $((22528 * 512)) "$L" >/dev/null 2>&1 && fail "after: blkid still finds a filesystem" ||
		pass "after: blkid finds no filesystem in partition 2"
	sfdisk -d "$L" >/dev/null 2>&1 && fail "after: sfdisk still finds a partition table" ||
		pass "after: no partition table"
	left=$(ls -d /sys/block/"$(basename "$L")"/"$(basename "$L")"p* 2>/dev/null | wc -l)
	[ "$left" = 0 ] && pass "the kernel dropped the old partitions ($parts before)" || fail "$left partitions left in sysfs"
	detach "$L"
	python3 - "$T/wipe.before" "$WF" "$parts" <<'EOF' && pass "exactly the edges of the disk and the partitions are zero" || fail "metadata wipe zeroed the wrong bytes"
import sys
before = open(sys.argv[1], "rb").read(); after = open(sys.argv[2], "rb").read()
M = 1 << 20; n = len(before)
ranges = [(0, n)]
if int(sys.argv[3]) > 0:
    ranges += [(2048 * 512, 20480 * 512), (22528 * 512, 40960 * 512)]
zero = bytearray(n)
for s, l in ranges:
    for a, b in ((s, s + min(M, l)), (s + l - min(M, l), s + l)):
        zero[a:b] = b"\x01" * (b - a)
for i in range(0, n, 4096):
    z = zero[i:i + 4096]; a = after[i:i + 4096]; o = before[i:i + 4096]
    if z.count(1) == len(z) and a.count(0) == len(a):
        continue
    if z.count(0) == len(z) and a == o:
        continue
    for k in range(len(a)):
        if (a[k] != 0) if z[k] else (a[k] != o[k]):
            print("byte", i + k, "after", a[k], "before", o[k], "should be zero:", bool(z[k])); sys.exit(1)
EOF
fi

# wipe --mode full on a device of random bytes
FF=$T/full.img
head -c $((32 * 1024 * 1024)) /dev/urandom >"$FF"
L=$(attach "$FF") || { fail "losetup"; L=; }
if [ -n "$L" ]; then
	r=$("$AGENT" wipe --mode full "$L" 2>"$T/wipe.err") && pass "wipe full: $r" || fail "wipe full: $r $(cat "$T/wipe.err")"
	cmp -s -n $((32 * 1024 * 1024)) "$L" /dev/zero && pass "every byte of the device reads zero" || fail "old bytes left"
	grep -q "wipe: 32.0 MiB / 32.0 MiB" "$T/wipe.err" && pass "progress reached 32.0 MiB" || fail "progress: $(cat "$T/wipe.err")"
	detach "$L"
fi

# grow on a 4Kn disk (logical sectors of 4096 bytes)
KF=$T/4kn.img
truncate -s 16M "$KF"
L=$(attach -P -b 4096 "$KF") || { fail "losetup -b 4096"; L=; }
if [ -n "$L" ]; then
	printf 'label: gpt\nstart=256, size=2048, type=L\n' | sfdisk -q "$L" >/dev/null || fail "sfdisk on the 4Kn loop"
	detach "$L"
	truncate -s 64M "$KF"
	L=$(attach -P -b 4096 "$KF")
	r=$("$AGENT" grow "$L" 2>&1) && pass "4Kn grow: $r" || fail "4Kn grow: $r"
	j=$(sfdisk --json "$L" | python3 -c 'import json,sys; p=json.load(sys.stdin)["partitiontable"]; print(p["sectorsize"], p["lastlba"], [(x["start"], x["size"]) for x in p["partitions"]])')
	[ "$j" = "4096 16378 [(256, 16123)]" ] && pass "4Kn: sfdisk --json $j" || fail "4Kn: sfdisk --json $j"
	v=$(sfdisk --verify "$L" 2>&1)
	echo "$v" | grep -q "No errors detected" && pass "4Kn: sfdisk --verify" || fail "4Kn: sfdisk --verify: $v"
	detach "$L"
fi

rb_finish
