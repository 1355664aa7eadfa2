#!/bin/bash
# rackbootd's TFTP server against clients no one here wrote: atftp,
# tftp-hpa and curl, on 127.0.0.1 with a free high port.
# Checks: files of edge sizes (0, 511, 512, 513, 1468*16) byte-identical
# through every client and option set; a 40 MiB file at blksize 512
# (block number rollover); refusals of traversal, absolute paths, a
# symlink out of the root and write requests, with nothing leaked; 200
# concurrent transfers all complete and match; the server survives it all.
set -u

. "$(dirname "$0")/lib.sh"
DAEMON=$RB_SRV
rb_need_cmd atftp tftp curl python3 sha256sum
rb_need_bin "$DAEMON"

rb_setup tftp
TMP=$RB_TMP

# A free UDP port for TFTP and a free TCP port for HTTP (the kernel picks).
read -r PORT HTTP_PORT < <(rb_free_ports udp tcp)

ROOT=$TMP/root
OUT=$TMP/out
mkdir -p "$ROOT/sub" "$OUT" "$TMP/state" "$TMP/boot" "$TMP/repo"
: >"$ROOT/empty"
head -c 511 /dev/urandom >"$ROOT/f511"
head -c 512 /dev/urandom >"$ROOT/f512"
head -c 513 /dev/urandom >"$ROOT/f513"
head -c $((1468 * 16)) /dev/urandom >"$ROOT/fwin"
head -c 102400 /dev/urandom >"$ROOT/f100k"
head -c $((40 * 1024 * 1024)) /dev/urandom >"$ROOT/big40"
head -c 4000 /dev/urandom >"$ROOT/sub/nested.bin"
ln -s /etc/passwd "$ROOT/evil"
ln -s ../../../../../../etc/passwd "$ROOT/sub/evil-rel"
ln -s f513 "$ROOT/good-link"
mkfifo "$ROOT/fifo"

cat >"$TMP/rackbootd.conf" <<EOF
user = ""
state_dir = "$TMP/state"
log_level = "info"
dhcp {
	mode = "off"
}
tftp {
	port = $PORT
	root = "$ROOT"
	timeout_ms = 500
	retries = 4
}
http {
	port = $HTTP_PORT
	boot_root = "$TMP/boot"
	repo_root = "$TMP/repo"
}
EOF

"$DAEMON" -c "$TMP/rackbootd.conf" >>"$RB_LOG" 2>&1 &
RB_PID=$!
# Ready when a small file comes back.
ready() {
	atftp -g -r f511 -l "$OUT/ready" 127.0.0.1 "$PORT" >/dev/null 2>&1 &&
		cmp -s "$ROOT/f511" "$OUT/ready"
}
RB_START_TIMEOUT_S=5 rb_wait_server ready

same() { # same NAME FETCHED: sha256 of the served and fetched files match
	local a b
	a=$(sha256sum <"$ROOT/$1" | cut -d' ' -f1)
	b=$(sha256sum <"$2" 2>/dev/null | cut -d' ' -f1)
	[ -n "$b" ] && [ "$a" = "$b" ]
}

fetch() { # fetch CLIENT-LABEL FILE: get FILE with one client/option set
	local how=$1 f=$2 dst
	dst=$OUT/$(echo "$how-$f" | tr '/ ' '__')
	rm -f "$dst"
	case $how in
	atftp) timeout 60 atftp -g -r "$f" -l "$dst" 127.0.0.1 "$PORT" ;;
	atftp-blksize) timeout 60 atftp --option "blksize 1468" -g -r "$f" -l "$dst" 127.0.0.1 "$PORT" ;;
	atftp-tsize) timeout 60 atftp --option "tsize 0" --option "blksize 1468" -g -r "$f" -l "$dst" 127.0.0.1 "$PORT" ;;
	atftp-window) timeout 60 atftp --option "blksize 1468" --option "windowsize 16" -g -r "$f" -l "$dst" 127.0.0.1 "$PORT" ;;
	atftp-window-512) timeout 60 atftp --option "windowsize 16" -g -r "$f" -l "$dst" 127.0.0.1 "$PORT" ;;
	tftp-hpa) timeout 60 tftp 127.0.0.1 "$PORT" -m binary -c get "$f" "$dst" ;;
	curl) timeout 60 curl -sS "tftp://127.0.0.1:$PORT/$f" -o "$dst" ;;
	curl-1024) timeout 60 curl -sS --tftp-blksize 1024 "tftp://127.0.0.1:$PORT/$f" -o "$dst" ;;
	esac >"$dst.log" 2>&1
	if same "$f" "$dst"; then
		pass "$how $f"
	else
		fail "$how $f differs or is missing: $(tr '\n' ' ' <"$dst.log")"
		return 1
	fi
}

for f in empty f511 f512 f513 fwin sub/nested.bin good-link; do
	for how in atftp atftp-blksize atftp-tsize atftp-window atftp-window-512 tftp-hpa curl curl-1024; do
		fetch "$how" "$f"
	done
done

# Block numbers roll over past 65535 (40 MiB = 81921 blocks of 512).
fetch atftp big40
fetch atftp-window-512 big40
fetch atftp-window big40

# tsize reports the real size (raw OACK, then ERROR 8 the way UEFI
# firmware ends its size probe).
got=$(python3 - "$PORT" <<'PY'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(b"\0\1fwin\0octet\0tsize\0" + b"0\0", ("127.0.0.1", int(sys.argv[1])))
d, a = s.recvfrom(2048)
f = d[2:].split(b"\0")
print(d[:2].hex(), dict(zip(f[0::2], f[1::2])).get(b"tsize", b"").decode())
s.sendto(b"\0\5\0\10probe done\0", a)
PY
)
if [ "$got" = "0006 $((1468 * 16))" ]; then pass "tsize reports $((1468 * 16))"; else fail "OACK/tsize: '$got'"; fi

# Refusals: nothing below must leak a byte of /etc/passwd.
refused() { # refused NAME EXPECTED-ERROR-TEXT
	local f=$1 want=$2 dst=$OUT/refused
	rm -f "$dst"
	msg=$(timeout 20 atftp -g -r "$f" -l "$dst" 127.0.0.1 "$PORT" 2>&1)
	if [ -s "$dst" ]; then
		fail "'$f' was served ($(wc -c <"$dst") bytes)"
	elif ! echo "$msg" | grep -qi "$want"; then
		fail "'$f': expected '$want', got: $msg"
	else
		pass "'$f' refused: $want"
	fi
}
refused ../etc/passwd "access violation"
refused ../../../../etc/passwd "access violation"
refused sub/../../etc/passwd "access violation"
refused /etc/passwd "access violation"
refused '..\\..\\etc\\passwd' "access violation"
refused 'sub\\nested.bin' "access violation"
refused evil "access violation"
refused sub/evil-rel "access violation"
refused sub "access violation"
refused fifo "access violation"
refused does-not-exist "file not found"
refused sub/missing "file not found"

# Write requests are refused and create nothing.
head -c 1000 /dev/urandom >"$TMP/upload"
msg=$(timeout 20 atftp -p -r uploaded -l "$TMP/upload" 127.0.0.1 "$PORT" 2>&1)
if [ -e "$ROOT/uploaded" ]; then
	fail "write request created a file"
elif echo "$msg" | grep -qi "access violation"; then
	pass "write request refused: access violation"
else
	fail "write request: expected access violation, got: $msg"
fi
msg=$(cd "$TMP" && timeout 20 tftp 127.0.0.1 "$PORT" -m binary -c put upload uploaded2 2>&1)
if [ -e "$ROOT/uploaded2" ]; then
	fail "tftp-hpa put created a file"
else
	pass "tftp-hpa put refused ($msg)"
fi

# netascii is refused (documented in pxe/tftp.c), not silently served.
msg=$(timeout 20 tftp 127.0.0.1 "$PORT" -m ascii -c get f513 "$OUT/ascii" 2>&1)
if [ -s "$OUT/ascii" ]; then
	fail "netascii request was served"
else
	pass "netascii refused ($msg)"
fi

# 200 concurrent transfers of a 100 KiB file, half of them windowed.
mkdir -p "$OUT/conc"
pids=()
for i in $(seq 1 200); do
	if [ $((i % 2)) -eq 0 ]; then
		timeout 120 atftp --option "blksize 1468" --option "windowsize 8" -g -r f100k \
			-l "$OUT/conc/$i" 127.0.0.1 "$PORT" >"$OUT/conc/$i.log" 2>&1 &
	else
		timeout 120 atftp -g -r f100k -l "$OUT/conc/$i" 127.0.0.1 "$PORT" >"$OUT/conc/$i.log" 2>&1 &
	fi
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
good=0
for i in $(seq 1 200); do
	same f100k "$OUT/conc/$i" && good=$((good + 1))
done
if [ "$good" -eq 200 ]; then
	pass "200 concurrent transfers complete and match"
else
	fail "only $good of 200 concurrent transfers match"
	head -3 "$OUT"/conc/*.log | head -20
fi

# Still alive and serving after everything above.
if kill -0 "$RB_PID" 2>/dev/null && fetch atftp f513; then
	pass "server alive at the end"
else
	fail "server died"
fi
# One start and one end line per transfer, at info level.
grep -q 'tftp: sent "big40" .* blksize 512' "$RB_LOG" || fail "no end-of-transfer log line"

rb_finish
