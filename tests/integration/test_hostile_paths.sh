#!/bin/bash
# Hostile file names against rackbootd's TFTP and HTTP servers, with every
# file-name system call the server makes recorded by strace:
#   strace -f -y -e trace=open,openat,openat2,stat,lstat,newfstatat,statx,
#                         readlink,readlinkat,access,faccessat,faccessat2
# A secret file lies outside the roots (next to them, in OUTSIDE-*), and
# symlinks inside the roots point at it (absolute, relative, a directory
# symlink). Sent with clients no one here wrote (atftp, tftp-hpa, curl
# --path-as-is) and raw packets from python (what no client sends: NUL
# bytes inside names, option floods, oversized requests, write requests
# with traversal names):
#   ../, ..\, absolute, percent-encoded (%2e%2e, %2f, %5c), NUL inside
#   (%00 and a raw NUL byte), symlinks out of the roots, overlong names,
#   option and header floods, write requests and other methods.
# Checked for each: the documented refusal (TFTP: ERROR 2 access
# violation for traversal, absolute paths, backslashes and escaping
# symlinks, ERROR 1 for names that are not there or too long, ERROR 8 for
# an option flood, ERROR 0 for an oversized request, ERROR 2 for writes;
# HTTP: 400 for a bad path or a NUL, 403 for a symlink out of the root,
# 404 for a name that is not there, 405 for methods other than GET/HEAD,
# 414/431 for an overlong request line or header block), no byte of the
# secret in any answer, no file created; then from the strace log: the
# secret, its directory and the symlink targets never appear in any call,
# every path the server touched after start-up is relative to a root's
# directory fd (or is below the roots, the state dir or /proc), and
# openat2() with RESOLVE_BENEATH is what opens files below the roots.
# Finally normal requests still work. Loopback only, free high ports;
# kills only the PIDs it started.
set -u

. "$(dirname "$0")/lib.sh"
DAEMON=$RB_SRV
rb_need_bin "$DAEMON"
rb_need_cmd strace atftp tftp curl python3 cmp
tftp -V 2>&1 | grep -q tftp-hpa || { echo "SKIP: tftp is not tftp-hpa"; exit 77; }

rb_setup hostile
TMP=$RB_TMP
STRACE_PID=
cleanup() {
	rb_kill_server # rackbootd (RB_PID) runs under strace: gone first
	[ -n "$STRACE_PID" ] && wait "$STRACE_PID" 2>/dev/null
}
RB_ON_EXIT=cleanup

read -r PORT HPORT < <(rb_free_ports udp tcp)

# ---- the layout: roots, and a secret next to them ----
OUT_DIR=$TMP/OUTSIDE-dir
SECRET=$OUT_DIR/SECRET-file
MARK="rackboot-secret-$$-$RANDOM"
mkdir -p "$OUT_DIR" "$TMP/tftp/sub" "$TMP/boot/sub" "$TMP/repo/sub" "$TMP/state" "$TMP/out"
echo "$MARK" >"$SECRET"
head -c 3000 /dev/urandom >"$TMP/tftp/good.bin"
head -c 2000 /dev/urandom >"$TMP/boot/good.bin"
head -c 1000 /dev/urandom >"$TMP/repo/sub/good.bin"
for r in tftp boot repo; do
	ln -s "$SECRET" "$TMP/$r/evil-abs"
	ln -s ../OUTSIDE-dir/SECRET-file "$TMP/$r/evil-rel"
	ln -s ../../OUTSIDE-dir/SECRET-file "$TMP/$r/sub/evil-rel2"
	ln -s "$OUT_DIR" "$TMP/$r/evil-dir"
done

cat >"$TMP/rackbootd.conf" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
log_level = "info"
dhcp { mode = "off" }
tftp {
	port = $PORT
	root = "$TMP/tftp"
	timeout_ms = 300
	retries = 2
}
http {
	port = $HPORT
	boot_root = "$TMP/boot"
	repo_root = "$TMP/repo"
	threads = 2
}
EOF

TRACE=$TMP/strace.log
# LeakSanitizer cannot work under ptrace (it aborts at exit): in an ASan
# build the traced server runs without it (AddressSanitizer and UBSan stay
# on); test_server_leaks.sh checks the server for leaks.
if grep -qa __asan_init "$DAEMON"; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
strace -f -y -qq -e trace=open,openat,openat2,stat,lstat,newfstatat,statx,readlink,readlinkat,access,faccessat,faccessat2 \
	-o "$TRACE" "$DAEMON" -c "$TMP/rackbootd.conf" >>"$RB_LOG" 2>&1 &
STRACE_PID=$!
for _ in $(seq 100); do
	RB_PID=$(pgrep -P "$STRACE_PID" -x rackbootd | head -1)
	[ -n "$RB_PID" ] && break
	sleep 0.05
done
[ -n "$RB_PID" ] || { echo "FAIL: rackbootd did not start under strace"; cat "$RB_LOG"; exit 1; }
B=http://127.0.0.1:$HPORT
RB_START_TIMEOUT_S=20 rb_wait_server curl -s -o /dev/null "$B/boot/good.bin"

# Everything after this marker request is the hostile phase.
curl -s -o /dev/null "$B/boot/MARK-hostile-phase-begins"

# ---- TFTP with real clients ----
tftp_refused() { # tftp_refused NAME WANT-TEXT: atftp and tftp-hpa both get it
	local f=$1 want=$2 msg
	rm -f "$TMP/out/t"
	msg=$(timeout 20 atftp -g -r "$f" -l "$TMP/out/t" 127.0.0.1 "$PORT" 2>&1)
	if [ -s "$TMP/out/t" ]; then
		fail "TFTP atftp '$f' was served ($(wc -c <"$TMP/out/t") bytes)"
	elif ! echo "$msg" | grep -qi "$want"; then
		fail "TFTP atftp '$f': expected '$want', got: $msg"
	else
		pass "TFTP atftp '$f' refused: $want"
	fi
	rm -f "$TMP/out/t"
	msg=$(cd "$TMP/out" && timeout 20 tftp 127.0.0.1 "$PORT" -m binary -c get "$f" t 2>&1)
	if [ -s "$TMP/out/t" ]; then
		fail "TFTP tftp-hpa '$f' was served"
	elif ! echo "$msg" | grep -qi "$want"; then
		fail "TFTP tftp-hpa '$f': expected '$want', got: $msg"
	else
		pass "TFTP tftp-hpa '$f' refused: $want"
	fi
}
tftp_refused ../OUTSIDE-dir/SECRET-file "access violation"
tftp_refused ../../../../../../etc/passwd "access violation"
tftp_refused sub/../../OUTSIDE-dir/SECRET-file "access violation"
tftp_refused "$SECRET" "access violation"
tftp_refused '..\OUTSIDE-dir\SECRET-file' "access violation"
tftp_refused 'sub\..\..\OUTSIDE-dir\SECRET-file' "access violation"
tftp_refused evil-abs "access violation"
tftp_refused evil-rel "access violation"
tftp_refused sub/evil-rel2 "access violation"
tftp_refused evil-dir/SECRET-file "access violation"
tftp_refused ./good.bin "access violation"
# TFTP names are not percent-decoded: "%2e%2e" is a name, not there.
tftp_refused %2e%2e/OUTSIDE-dir/SECRET-file "not found"
tftp_refused ..%2fOUTSIDE-dir%2fSECRET-file "not found"
# A name of 1000 bytes (fits the packet) made of "../".
tftp_refused "$(printf '../%.0s' $(seq 333))etc/passwd" "access violation"

msg=$(timeout 20 atftp -p -r ../OUTSIDE-dir/planted -l "$TMP/tftp/good.bin" 127.0.0.1 "$PORT" 2>&1)
if [ -e "$OUT_DIR/planted" ] || [ -e "$TMP/tftp/planted" ]; then
	fail "TFTP write request created a file"
elif echo "$msg" | grep -qi "access violation"; then
	pass "TFTP atftp write request refused: access violation"
else
	fail "TFTP atftp write request: expected access violation, got: $msg"
fi
msg=$(cd "$TMP/tftp" && timeout 20 tftp 127.0.0.1 "$PORT" -m binary -c put good.bin planted2 2>&1)
if [ -e "$TMP/tftp/planted2" ]; then
	fail "TFTP tftp-hpa put created a file"
elif echo "$msg" | grep -qi "access violation"; then
	pass "TFTP tftp-hpa put refused: access violation"
else
	fail "TFTP tftp-hpa put: expected access violation, got: $msg"
fi

# ---- TFTP raw packets: what clients do not send ----
python3 - "$PORT" "$SECRET" "$MARK" >"$TMP/raw_tftp.out" 2>&1 <<'PY'
import socket, struct, sys
port, secret, mark = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3].encode()

def ask(pkt):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(3)
    s.sendto(pkt, ("127.0.0.1", port))
    try:
        d, a = s.recvfrom(70000)
    except socket.timeout:
        return None, b""
    op = struct.unpack("!H", d[:2])[0]
    if op == 3 or op == 6:  # served or OACK: stop that transfer
        s.sendto(b"\0\5\0\0done\0", a)
    if op == 5:
        return (5, struct.unpack("!H", d[2:4])[0]), d
    return (op, None), d

def case(what, pkt, want):
    got, d = ask(pkt)
    leak = mark in d
    print("%s %s: got %r want %r%s" % ("ok" if got == want and not leak else "FAIL", what,
                                      got, want, " LEAK" if leak else ""))

rrq = lambda name, *opts, op=1, mode=b"octet": (struct.pack("!H", op) + name + b"\0" + mode +
                                                b"\0" + b"".join(o + b"\0" for o in opts))
case("NUL inside the name (rest read as mode)", rrq(b"good.bin\0../OUTSIDE-dir/SECRET-file"),
     (5, 0))
case("NUL inside, traversal first", rrq(b"../OUTSIDE-dir\0SECRET-file"), (5, 0))
case("absolute name to the secret", rrq(secret), (5, 2))
case("1025-byte name", rrq(b"a" * 1025), (5, 1))
case("1025-byte traversal name", rrq(b"../" * 341 + b"ab"), (5, 1))
case("17 options (a flood)", rrq(b"good.bin", *[x for i in range(17) for x in (b"o%d" % i, b"1")]),
     (5, 8))
case("200 blksize options", rrq(b"good.bin", *[x for i in range(200) for x in (b"blksize", b"8")]),
     (5, 8))
case("oversized request (3000 bytes)", rrq(b"good.bin", b"blksize", b"512") + b"x" * 3000, (5, 0))
case("write request with traversal", rrq(b"../OUTSIDE-dir/planted3", op=2), (5, 2))
case("write request with an absolute name", rrq(secret + b"-planted", op=2), (5, 2))
case("write request, option flood", rrq(b"x", *[b"o"] * 60, op=2), (5, 8))
PY
while read -r line; do
	case $line in
	ok*) pass "TFTP raw: ${line#ok }" ;;
	*) fail "TFTP raw: ${line#FAIL }" ;;
	esac
done <"$TMP/raw_tftp.out"
for f in "$OUT_DIR/planted3" "$SECRET-planted"; do
	[ -e "$f" ] && fail "a write request created $f"
done

# ---- HTTP with curl ----
http_code() { # http_code WANT... -- CURL-ARGS: status one of WANT, no secret in the body
	local want=() st
	while [ "$1" != -- ]; do want+=("$1"); shift; done
	shift
	st=$(curl -s -o "$TMP/out/body" -w '%{http_code}' "$@")
	if grep -q "$MARK" "$TMP/out/body" 2>/dev/null; then
		fail "HTTP $*: the secret leaked (status $st)"
		return
	fi
	for w in "${want[@]}"; do
		[ "$st" = "$w" ] && { pass "HTTP ${*: -1} -> $st"; return; }
	done
	fail "HTTP $*: status $st, want ${want[*]}"
}
for r in boot repo; do
	http_code 400 -- --path-as-is "$B/$r/../OUTSIDE-dir/SECRET-file"
	http_code 400 -- --path-as-is "$B/$r/../../../../../../etc/passwd"
	http_code 400 -- --path-as-is "$B/$r/sub/../../OUTSIDE-dir/SECRET-file"
	http_code 400 -- --path-as-is "$B/$r/%2e%2e/OUTSIDE-dir/SECRET-file"
	http_code 400 -- --path-as-is "$B/$r/..%2fOUTSIDE-dir%2fSECRET-file"
	http_code 400 -- --path-as-is "$B/$r/%2E%2E%2FOUTSIDE-dir%2FSECRET-file"
	http_code 400 -- --path-as-is "$B/$r/..%5cOUTSIDE-dir%5cSECRET-file"
	http_code 400 -- --path-as-is "$B/$r/..\\OUTSIDE-dir\\SECRET-file"
	http_code 400 -- --path-as-is "$B/$r/$SECRET"
	http_code 400 -- --path-as-is "$B/$r/%2f${SECRET#/}"
	http_code 400 -- --path-as-is "$B/$r/./good.bin"
	http_code 400 -- --path-as-is "$B/$r/good.bin%00../../OUTSIDE-dir/SECRET-file"
	http_code 400 -- "$B/$r/good.bin%00.txt"
	http_code 403 -- "$B/$r/evil-abs"
	http_code 403 -- "$B/$r/evil-rel"
	http_code 403 -- "$B/$r/sub/evil-rel2"
	http_code 403 -- "$B/$r/evil-dir/SECRET-file"
	http_code 404 -- "$B/$r/%252e%252e/OUTSIDE-dir/SECRET-file"
	http_code 404 -- "$B/$r/$(head -c 300 /dev/zero | tr '\0' a)"
	http_code 400 404 -- "$B/$r/$(printf '..%%2f%.0s' $(seq 1000))etc/passwd"
	http_code 414 431 400 -- "$B/$r/$(head -c 70000 /dev/zero | tr '\0' a)"
	http_code 405 -- -X PUT --data-binary "@$TMP/tftp/good.bin" "$B/$r/planted4"
	http_code 405 -- -X PUT --data-binary @"$TMP/tftp/good.bin" --path-as-is "$B/$r/../OUTSIDE-dir/planted5"
	http_code 405 -- -X DELETE "$B/$r/good.bin"
	http_code 405 -- -X POST --data x "$B/$r/good.bin"
done
http_code 404 -- --path-as-is "$B/ui/../../OUTSIDE-dir/SECRET-file"
http_code 404 -- --path-as-is "$B/boot/..:..:..:..:..:...ipxe"
http_code 431 400 413 -- -H "X-Flood: $(head -c 70000 /dev/zero | tr '\0' a)" "$B/boot/good.bin"
for f in planted4 planted5; do
	ls "$TMP"/*/"$f" "$OUT_DIR/$f" >/dev/null 2>&1 && fail "HTTP PUT created $f"
done

# Raw requests curl will not send: NUL bytes, a thousand headers.
python3 - "$HPORT" "$MARK" >"$TMP/raw_http.out" 2>&1 <<'PY'
import socket, sys
port, mark = int(sys.argv[1]), sys.argv[2].encode()

def case(what, raw, want):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(raw)
    d = b""
    try:
        while len(d) < 65536:
            b = s.recv(65536)
            if not b:
                break
            d += b
            if b"\r\n\r\n" in d:
                break
    except socket.timeout:
        pass
    s.close()
    st = d.split(b" ", 2)[1].decode() if d.startswith(b"HTTP/") else "none"
    leak = mark in d
    print("%s %s: status %s, want %s%s" % ("ok" if st in want and not leak else "FAIL", what,
                                          st, "/".join(want), " LEAK" if leak else ""))

for root in (b"boot", b"repo"):
    r = root.decode()
    case(r + ": NUL byte then traversal",
         b"GET /" + root + b"/good.bin\0/../../OUTSIDE-dir/SECRET-file HTTP/1.1\r\nHost: x\r\n\r\n",
         ["400"])
    case(r + ": NUL byte at the end of the path",
         b"GET /" + root + b"/good.bin\0 HTTP/1.1\r\nHost: x\r\n\r\n", ["400"])
    case(r + ": NUL byte in the query",
         b"GET /" + root + b"/good.bin?a=\0../x HTTP/1.1\r\nHost: x\r\n\r\n", ["400"])
    case(r + ": 2000 headers", b"GET /" + root + b"/good.bin HTTP/1.1\r\nHost: x\r\n" +
         b"".join(b"X-H%d: v\r\n" % i for i in range(2000)) + b"\r\n", ["431", "400", "413"])
case("absolute-form target to another host",
     b"GET http://127.0.0.1/../OUTSIDE-dir/SECRET-file HTTP/1.1\r\nHost: x\r\n\r\n",
     ["400", "404"])
PY
while read -r line; do
	case $line in
	ok*) pass "HTTP raw: ${line#ok }" ;;
	*) fail "HTTP raw: ${line#FAIL }" ;;
	esac
done <"$TMP/raw_http.out"

# ---- normal requests still work ----
curl -s -o /dev/null "$B/boot/MARK-hostile-phase-ends"
rm -f "$TMP/out/g"
if timeout 20 atftp -g -r good.bin -l "$TMP/out/g" 127.0.0.1 "$PORT" >/dev/null 2>&1 &&
	cmp -s "$TMP/tftp/good.bin" "$TMP/out/g"; then
	pass "TFTP good.bin still served byte-identical"
else
	fail "TFTP good.bin not served after the hostile requests"
fi
if curl -sf -o "$TMP/out/h" "$B/boot/good.bin" && cmp -s "$TMP/boot/good.bin" "$TMP/out/h" &&
	curl -sf -o "$TMP/out/r" "$B/repo/sub/good.bin" && cmp -s "$TMP/repo/sub/good.bin" "$TMP/out/r"; then
	pass "HTTP /boot/ and /repo/ files still served byte-identical"
else
	fail "HTTP files not served after the hostile requests"
fi
kill -0 "$RB_PID" 2>/dev/null && pass "rackbootd alive" || fail "rackbootd died"

# Stop it so that strace writes its last lines (strace exits with its
# status).
rb_stop "$STRACE_PID"
STRACE_PID=

# ---- the system-call record ----
if [ ! -s "$TRACE" ] || ! grep -q 'openat2(' "$TRACE"; then
	fail "strace recorded no openat2() calls: $(head -c 300 "$TRACE")"
fi
# The secret's directory name never reaches a call as a path the kernel
# resolved (-y prints the resolved path of every fd, returned ones too):
# only as the literal name a client asked for, refused before or by
# openat2(RESOLVE_BENEATH) with an error.
resolved=$(grep -F "<$OUT_DIR" "$TRACE")
if [ -z "$resolved" ]; then
	pass "strace: no fd ever resolved to $OUT_DIR (the secret or its directory)"
else
	fail "strace: the server held an fd of the outside directory: $(echo "$resolved" | head -3)"
fi
# Every call that names the secret or a symlink to it failed.
python3 - "$TRACE" "$TMP" "$OUT_DIR" >"$TMP/trace_check.out" 2>&1 <<'PY'
import re, sys
trace, tmp, outdir = sys.argv[1], sys.argv[2], sys.argv[3]
lines = open(trace, errors="replace").read().splitlines()
# strace -f prefixes the thread id; unfinished/resumed pairs are joined.
pending, calls = {}, []
for l in lines:
    m = re.match(r"^(\d+)\s+(.*)$", l)
    if not m:
        continue
    tid, rest = m.groups()
    if rest.endswith("<unfinished ...>"):
        pending[tid] = rest[: -len("<unfinished ...>")]
        continue
    r = re.match(r"^<\.\.\. \w+ resumed>(.*)$", rest)
    if r:
        rest = pending.pop(tid, "") + r.group(1)
    calls.append(rest)
begin = next((i for i, c in enumerate(calls) if "MARK-hostile-phase-begins" in c), None)
end = next((i for i, c in enumerate(calls) if "MARK-hostile-phase-ends" in c), None)
if begin is None or end is None:
    print("FAIL markers not found in the trace (%d calls)" % len(calls))
    sys.exit(0)
roots = [tmp + "/tftp", tmp + "/boot", tmp + "/repo"]
allowed = roots + [tmp + "/state", "/proc/", "/sys/"]
bad_names = ("OUTSIDE-dir", "SECRET-file", "evil-", "passwd", "planted")
hostile = calls[begin:end]
n_opens = n_beneath = 0
problems = []
for c in hostile:
    m = re.match(r"^(\w+)\((.*)\)\s+=\s+(.*)$", c)
    if not m:
        continue
    name, args, ret = m.groups()
    ok_ret = not ret.startswith("-1")
    # the directory fd a relative name is resolved against
    dfd = re.match(r"^(-?\d+|AT_FDCWD)(<([^>]*)>)?,\s*\"", args)
    path = re.search(r"\"((?:[^\"\\]|\\.)*)\"", args)
    path = path.group(1) if path else ""
    base = dfd.group(3) if dfd and dfd.group(3) else None
    if path == "" and "AT_EMPTY_PATH" in args:
        continue  # fstat() of an fd this check saw opened (or a socket)
    if name == "openat2":
        n_opens += 1
        if "RESOLVE_BENEATH" in args:
            n_beneath += 1
    if path.startswith("/"):
        full = path
    elif base:
        full = base + "/" + path
    else:
        full = "(cwd)/" + path
    under = any(full == a or full.startswith(a.rstrip("/") + "/") for a in allowed)
    if not under:
        problems.append("outside the roots: " + c[:200])
    if any(b in path for b in bad_names) and ok_ret:
        problems.append("a hostile name succeeded: " + c[:200])
    # a returned fd must be below a root too
    rfd = re.match(r"^\d+<([^>]*)>", ret)
    if rfd and not any(rfd.group(1).startswith(a) for a in allowed):
        problems.append("returned an fd outside the roots: " + c[:200])
    if outdir in c:
        problems.append("names the outside directory: " + c[:200])
print("info %d calls in the hostile phase, %d openat2 (%d with RESOLVE_BENEATH)" %
      (len(hostile), n_opens, n_beneath))
if n_opens == 0 or n_beneath != n_opens:
    problems.append("openat2 without RESOLVE_BENEATH, or none at all")
for p in problems[:20]:
    print("FAIL " + p)
if not problems:
    print("ok every path touched in the hostile phase is below a root, every hostile name failed")
PY
while read -r line; do
	case $line in
	ok*) pass "strace: ${line#ok }" ;;
	info*) echo "${line#info }" ;;
	*) fail "strace: ${line#FAIL }" ;;
	esac
done <"$TMP/trace_check.out"
if grep -qF "$MARK" "$RB_LOG"; then
	fail "the secret's content appears in the server log"
fi

rb_finish
