#!/bin/bash
# rackboot-agent image (stage-1 writer) against the real rackbootd on
# 127.0.0.1, as a node uses it: a GPT disk built into a repository with
# rackboot-image is written to a plain file and compared byte for byte; a
# mostly-empty 2 GiB disk writes quickly and stays sparse; a reimage from
# v1 to v2 fetches only the changed chunks (counted in the agent's summary
# and in rackbootd's access log); faults (a flipped pack byte, a wrong key,
# a stalled server, a killed server and a resume after its restart, a
# redirect to file://) each end in exit 1 with a target that holds no valid
# partition table (no 0x55AA at 510, no "EFI PART" at 512 nor in the last
# sector), never in a disk that looks complete.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
rb_need_cmd sfdisk mkfs.vfat mkfs.ext4 python3 cmp curl du

rb_setup agentimg
T=$RB_TMP
PYPID=
AGPID=
cleanup() {
	[ -n "$AGPID" ] && kill -9 "$AGPID" 2>/dev/null
	[ -n "$PYPID" ] && kill "$PYPID" 2>/dev/null
}
RB_ON_EXIT=cleanup

R=$T/repo
mkdir -p "$R" "$T/boot" "$T/state"

rb_repo_conf "$R"
PORT=$RB_PORT
URL=http://127.0.0.1:$PORT/repo
start_server() { rb_start_server "http://127.0.0.1:$PORT/boot/" "$SRV" -c "$T/rackbootd.conf" -v; }

# no_table FILE SIZE: true if FILE holds no MBR signature, no primary and no
# backup GPT header.
no_table() {
	python3 - "$1" "$2" <<'EOF2'
import sys
f = open(sys.argv[1], "rb"); size = int(sys.argv[2])
head = f.read(1024); f.seek(size - 512); tail = f.read(512)
bad = head[510:512] == b"\x55\xaa" or head[512:520] == b"EFI PART" or tail[:8] == b"EFI PART"
sys.exit(1 if bad else 0)
EOF2
}
# pack_bytes: bytes of /repo/packs/ bodies in rackbootd's access log so far
pack_bytes() {
	awk '/http: .* GET \/repo\/packs\// { s += $(NF) } END { print s + 0 }' "$T/rackbootd.log"
}
field() { # field NAME FILE: a key=value from the agent's summary line
	tr ' ' '\n' <"$2" | awk -F= -v k="$1" '$1 == k { print $2 }'
}
agent() { "$AGENT" image --repo "$URL" --pub "$T/site.pub" -q "$@"; }

# ---- disks: a GPT disk (ESP + ext4 root); v2 = v1 with three files
# rewritten in place (as a package update on a golden node would) ----
. "$(cd "$(dirname "$0")" && pwd)/disk.sh"
mkroot() { # mkroot DIR
	mkdir -p "$1/etc" "$1/var/lib"
	echo "rackboot agent test" >"$1/etc/hostname"
	python3 - "$1" <<'EOF2'
import random, sys, os
rnd = random.Random(7)
for i in range(40):  # 40 "packages" of 64..512 KiB, partly incompressible
    data = rnd.randbytes(1024 * rnd.randint(32, 256)) + bytes(1024) * rnd.randint(32, 256)
    with open(os.path.join(sys.argv[1], "var/lib", "pkg%02d.bin" % i), "wb") as f:
        f.write(data)
EOF2
}
mkdisk() { # mkdisk OUT
	mkroot "$T/root"
	gpt_disk "$1" "$T/root" "$T"
}
mkdisk "$T/disk1.img" || { echo "FAIL: could not make the test disk"; exit 1; }
cp "$T/disk1.img" "$T/disk2.img"
# v2: the first 20 KiB of pkg03, pkg17 and pkg29 rewritten where they lie on the disk
python3 - "$T/root/var/lib" "$T/disk2.img" <<'EOF2' || { echo "FAIL: could not make v2"; exit 1; }
import sys
d = open(sys.argv[2], "r+b"); disk = d.read()
for i in (3, 17, 29):
    head = open("%s/pkg%02d.bin" % (sys.argv[1], i), "rb").read(4096)
    off = disk.find(head)
    assert off > 0, i
    d.seek(off); d.write(b"updated" * 3000)
d.close()
EOF2
DSIZE=$((DISK_SECTORS * 512))
# sparse: 2 GiB, GPT, 24 MiB of random data at 100 MiB, a little text at 1.5 GiB
SP=$T/sparse.img
SSIZE=$((2048 * 1024 * 1024))
truncate -s $SSIZE "$SP"
printf 'label: gpt\nstart=2048, size=4190208, type=L, name="data"\n' | sfdisk -q "$SP" >/dev/null ||
	{ echo "FAIL: sfdisk sparse"; exit 1; }
head -c $((24 * 1024 * 1024)) /dev/urandom | dd of="$SP" bs=1M seek=100 conv=notrunc status=none
echo "rackboot sparse marker" | dd of="$SP" bs=1M seek=1536 conv=notrunc status=none

"$IMG" keygen "$T/site" >/dev/null && "$IMG" keygen "$T/other" >/dev/null ||
	{ echo "FAIL: keygen"; exit 1; }
for v in 1 2; do
	"$IMG" build --repo "$R" --key "$T/site.key" --name node --version $v "$T/disk$v.img" \
		>/dev/null || { echo "FAIL: build v$v"; exit 1; }
done
"$IMG" build --repo "$R" --key "$T/site.key" --name sparse --version 1 "$SP" >/dev/null ||
	{ echo "FAIL: build sparse"; exit 1; }
start_server

# ---- full write to a plain file ----
OUT=$T/out.img
before=$(pack_bytes)
if agent --name node --version 1 --target "$OUT" >"$T/s1" 2>"$T/e1"; then
	pass "write v1: $(cat "$T/s1")"
else
	fail "write v1 exit $?: $(cat "$T/e1")"
fi
cmp -s "$T/disk1.img" "$OUT" && pass "v1 on the target is byte-identical to the source" ||
	fail "v1 on the target differs from the source"
full=$(field fetched_bytes "$T/s1")
full_srv=$(($(pack_bytes) - before))
[ "$full_srv" -gt 0 ] && [ "${full:-0}" -ge "$full_srv" ] &&
	pass "server sent $full_srv pack bytes, agent counted $full bytes in all" ||
	fail "full write: server pack bytes $full_srv, agent fetched ${full:-?}"

# ---- mostly empty: 2 GiB disk, 24 MiB of data ----
start=$(date +%s%N)
if agent --name sparse --version 1 --target "$T/sp.out" >"$T/s2" 2>"$T/e2"; then
	ms=$((($(date +%s%N) - start) / 1000000))
	pass "sparse write in ${ms} ms: $(cat "$T/s2")"
else
	fail "sparse write: $(cat "$T/e2")"
fi
cmp -s "$SP" "$T/sp.out" && pass "sparse target is byte-identical" || fail "sparse target differs"
used=$(du -k "$T/sp.out" | cut -f1)
[ "$used" -lt $((64 * 1024)) ] && pass "sparse target uses $used KiB on disk for 2 GiB" ||
	fail "sparse target uses $used KiB"
zs=$(field skipped_zero "$T/s2")
[ "${zs:-0}" -gt 30000 ] && pass "sparse: $zs zero chunks skipped" || fail "sparse skipped_zero=${zs:-?}"

# ---- reimage v1 -> v2 fetches only the changed chunks ----
before=$(pack_bytes)
if agent --name node --version 2 --target "$OUT" --reimage >"$T/s3" 2>"$T/e3"; then
	pass "reimage v1->v2: $(cat "$T/s3")"
else
	fail "reimage v1->v2: $(cat "$T/e3")"
fi
cmp -s "$T/disk2.img" "$OUT" && pass "v2 on the target is byte-identical" || fail "v2 differs"
re_srv=$(($(pack_bytes) - before))
re=$(field fetched_bytes "$T/s3")
present=$(field skipped_present "$T/s3")
written=$(field chunks_written "$T/s3")
if [ "$re_srv" -gt 0 ] && [ $((re_srv * 5)) -lt "$full_srv" ] && [ "${present:-0}" -gt "${written:-0}" ]; then
	pass "reimage: server sent $re_srv pack bytes (full: $full_srv), $present chunks kept, $written written"
else
	fail "reimage: server sent $re_srv of $full_srv pack bytes, present=${present:-?} written=${written:-?}"
fi
# reimage of the same version: nothing but the boot-area chunks is fetched
agent --name node --version 2 --target "$OUT" --reimage >"$T/s4" 2>"$T/e4" &&
	cmp -s "$T/disk2.img" "$OUT" && pass "reimage v2->v2: $(cat "$T/s4")" || fail "reimage v2->v2"

# ---- faults ----
read -r PACK POFF CIDX COFF < <(python3 - "$R/images/node/1.manifest.json" <<'EOF2'
import json, sys
m = json.load(open(sys.argv[1]))
i = len(m["chunks"]) // 2
c = m["chunks"][i]
print(m["packs"][c[3]]["id"], c[4] + c[5] // 2, i, c[0])
EOF2
)
flip() {
	python3 -c 'import sys
f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2])); b = f.read(1); f.seek(int(sys.argv[2]))
f.write(bytes([b[0] ^ 0x55])); f.close()' "$1" "$2"
}
flip "$R/packs/$PACK.pack" "$POFF"
agent --name node --version 1 --target "$T/f1.img" >"$T/s5" 2>"$T/e5"
rc=$?
if [ $rc -eq 1 ] && grep -q "chunk $CIDX " "$T/e5" && no_table "$T/f1.img" $DSIZE; then
	pass "flipped pack byte: exit 1, no partition table: $(cat "$T/e5")"
else
	fail "flipped pack byte: exit $rc: $(cat "$T/e5")"
fi
# the same on a target that held v2 (reimage) but not that chunk: its old
# table is gone
cp "$T/disk2.img" "$T/f2.img"
head -c 65536 /dev/urandom | dd of="$T/f2.img" bs=65536 iflag=fullblock seek="$COFF" oflag=seek_bytes conv=notrunc status=none
agent --name node --version 1 --target "$T/f2.img" --reimage >"$T/s6" 2>"$T/e6"
rc=$?
[ $rc -eq 1 ] && no_table "$T/f2.img" $DSIZE && pass "flipped byte on reimage: old table erased" ||
	fail "flipped byte on reimage: exit $rc, table left: $(cat "$T/e6")"
flip "$R/packs/$PACK.pack" "$POFF"

cp "$T/disk2.img" "$T/k.img"
"$AGENT" image --repo "$URL" --pub "$T/other.pub" -q --name node --version 1 \
	--target "$T/k.img" >"$T/s7" 2>"$T/e7"
rc=$?
[ $rc -eq 1 ] && grep -q "signature" "$T/e7" && cmp -s "$T/disk2.img" "$T/k.img" &&
	pass "wrong key: exit 1, target untouched: $(cat "$T/e7")" ||
	fail "wrong key: exit $rc: $(cat "$T/e7")"
agent --name node --version 9 --target "$T/nx.img" >/dev/null 2>"$T/e8"
rc=$?
[ $rc -eq 1 ] && [ ! -e "$T/nx.img" ] && grep -q "404" "$T/e8" &&
	pass "unknown version: exit 1, nothing created: $(cat "$T/e8")" ||
	fail "unknown version: exit $rc: $(cat "$T/e8")"
"$AGENT" image --repo "$URL" --name node >/dev/null 2>&1
[ $? -eq 2 ] && pass "usage error: exit 2" || fail "usage error exit status"

# stalled server mid-transfer: the low-speed abort ends it (rate-limited so
# that the transfer is still running when the server stops answering)
agent --name sparse --version 1 --target "$T/st.img" --max-rate 500000 --timeout-s 2 \
	--retries 1 >"$T/s9" 2>"$T/e9" &
AGPID=$!
sleep 2
kill -STOP "$RB_PID"
t0=$(date +%s)
wait $AGPID
rc=$?
AGPID=
dt=$(($(date +%s) - t0))
kill -CONT "$RB_PID"
[ $rc -eq 1 ] && [ $dt -le 20 ] && no_table "$T/st.img" $SSIZE &&
	pass "stalled server: exit 1 after ${dt}s, no partition table: $(cat "$T/e9")" ||
	fail "stalled server: exit $rc after ${dt}s: $(cat "$T/e9")"

# server killed mid-transfer, restarted, the write resumes with --reimage
agent --name sparse --version 1 --target "$T/st.img" --max-rate 500000 --timeout-s 2 \
	--retries 1 >"$T/s10" 2>"$T/e10" &
AGPID=$!
sleep 2
rb_kill_server # the fault: SIGKILL mid-transfer
t0=$(date +%s)
wait $AGPID
rc=$?
AGPID=
dt=$(($(date +%s) - t0))
[ $rc -eq 1 ] && [ $dt -le 20 ] && no_table "$T/st.img" $SSIZE &&
	pass "killed server: exit 1 after ${dt}s, no partition table: $(cat "$T/e10")" ||
	fail "killed server: exit $rc after ${dt}s: $(cat "$T/e10")"
start_server
if agent --name sparse --version 1 --target "$T/st.img" --reimage >"$T/s11" 2>"$T/e11" &&
	cmp -s "$SP" "$T/st.img" && [ "$(field skipped_present "$T/s11")" -gt 0 ]; then
	pass "resume after restart: $(cat "$T/s11")"
else
	fail "resume after restart: $(cat "$T/s11" "$T/e11")"
fi

# a redirect to file:// is refused
RPORT=$(rb_free_ports tcp)
python3 - "$RPORT" "$R" >"$T/py.log" 2>&1 <<'EOF2' &
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if "/packs/" in self.path:
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.path = self.path[len("/repo"):] if self.path.startswith("/repo/") else self.path
        return super().do_GET()
h = functools.partial(H, directory=sys.argv[2])
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), h).serve_forever()
EOF2
PYPID=$!
for _ in $(seq 50); do
	curl -s -o /dev/null "http://127.0.0.1:$RPORT/repo/images/node/1.manifest.json" && break
	sleep 0.1
done
"$AGENT" image --repo "http://127.0.0.1:$RPORT/repo" --pub "$T/site.pub" -q --name node \
	--version 1 --target "$T/r.img" --retries 0 >"$T/s12" 2>"$T/e12"
rc=$?
[ $rc -eq 1 ] && grep -q "redirect to file:///etc/passwd refused: only http:// and https://" "$T/e12" && no_table "$T/r.img" $DSIZE &&
	! grep -q "root:" "$T/r.img" && pass "redirect to file:// refused: $(cat "$T/e12")" ||
	fail "redirect to file://: exit $rc: $(cat "$T/e12")"

rb_finish
