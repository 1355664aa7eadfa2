#!/bin/sh
# Integration test of rackbootd's HTTP side with curl, on 127.0.0.1 only:
# static files (full download, ranges, HEAD, traversal and symlink escapes,
# methods), per-node iPXE scripts, the JSON API, and templates_dir.
# Starts its own rackbootd (DHCP and TFTP off) and kills only that PID.
set -u

. "$(dirname "$0")/lib.sh"
BIN=$RB_SRV
rb_need_bin "$BIN"
rb_need_cmd curl sha256sum python3 cmp head tail
rb_setup http
TMP=$RB_TMP

# start_server CONF: starts rackbootd, waits until it answers.
start_server() { rb_start_server "$B/boot/" "$BIN" -c "$1" -v; }

write_conf() { # write_conf FILE TEMPLATES_DIR
	cat >"$1" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
log_level = "debug"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$TMP/root/boot"
	repo_root = "$TMP/root/repo"
	templates_dir = "$2"
	threads = 4
}
discovery {
	kernel = "vmlinuz"
	initrd = "agent/initrd.img"
	cmdline = "console=ttyS0,115200 quiet"
}
EOF
}

# code URL [curl args...]: prints the HTTP status
code() {
	u=$1
	shift
	curl -s -o "$TMP/body" -w '%{http_code}' "$@" "$u"
}

mkdir -p "$TMP/root/boot/agent" "$TMP/root/boot/sub" "$TMP/root/repo/img" "$TMP/state"
head -c $((50 * 1024 * 1024)) /dev/urandom >"$TMP/root/boot/big.bin"
BIG=$TMP/root/boot/big.bin
SIZE=$((50 * 1024 * 1024))
printf 'hello\n' >"$TMP/root/boot/small.txt"
printf 'repo data\n' >"$TMP/root/repo/img/a.txt"
: >"$TMP/root/boot/empty"
ln -s /etc/passwd "$TMP/root/boot/passwd-link"
ln -s ../../../../../../../etc/passwd "$TMP/root/boot/rel-link"
ln -s small.txt "$TMP/root/boot/inside-link"

PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
write_conf "$TMP/rackbootd.conf" ""
start_server "$TMP/rackbootd.conf"

# --- full downloads -------------------------------------------------------
want=$(sha256sum <"$BIG" | cut -d' ' -f1)
got=$(curl -sf "$B/boot/big.bin" | sha256sum | cut -d' ' -f1)
check "50 MiB download sha256 matches" [ "$got" = "$want" ]
pids=
for i in 1 2 3 4 5 6; do
	curl -sf -o "$TMP/par$i" "$B/boot/big.bin" &
	pids="$pids $!"
done
par_ok=1
for p in $pids; do wait "$p" || par_ok=0; done
for i in 1 2 3 4 5 6; do
	cmp -s "$TMP/par$i" "$BIG" || par_ok=0
	rm -f "$TMP/par$i"
done
check "6 parallel 50 MiB downloads are identical to the file" [ $par_ok = 1 ]
check "repo file served" [ "$(curl -sf "$B/repo/img/a.txt")" = "repo data" ]
check "symlink inside the root is followed" [ "$(curl -sf "$B/boot/inside-link")" = "hello" ]
st=$(code "$B/boot/empty")
check "empty file is 200 with no body" sh -c "[ '$st' = 200 ] && [ ! -s '$TMP/body' ]"
check "keep-alive: two requests share one connection" \
	sh -c "curl -sv -o /dev/null -o /dev/null '$B/boot/small.txt' '$B/boot/small.txt' 2>&1 | grep -q 'Re-using existing connection'"

# --- ranges ----------------------------------------------------------------
range_ok() { # range_ok RANGE EXPECTED_FILE EXPECTED_CONTENT_RANGE
	st=$(curl -s -D "$TMP/hdr" -o "$TMP/part" -w '%{http_code}' -r "$1" "$B/boot/big.bin")
	[ "$st" = 206 ] && cmp -s "$TMP/part" "$2" &&
		grep -qi "^Content-Range: $3" "$TMP/hdr"
}
head -c 100 "$BIG" >"$TMP/exp"
check "range 0-99 (first 100 bytes)" range_ok 0-99 "$TMP/exp" "bytes 0-99/$SIZE"
tail -c +1000001 "$BIG" | head -c 1000000 >"$TMP/exp"
check "range 1000000-1999999 (middle)" range_ok 1000000-1999999 "$TMP/exp" "bytes 1000000-1999999/$SIZE"
tail -c 500 "$BIG" >"$TMP/exp"
check "range -500 (suffix)" range_ok -500 "$TMP/exp" "bytes $((SIZE - 500))-$((SIZE - 1))/$SIZE"
tail -c +1001 "$BIG" >"$TMP/exp"
check "range 1000- (open)" range_ok 1000- "$TMP/exp" "bytes 1000-$((SIZE - 1))/$SIZE"
tail -c 10 "$BIG" >"$TMP/exp"
check "range end past EOF is clamped" range_ok "$((SIZE - 10))-$((SIZE + 99))" "$TMP/exp" \
	"bytes $((SIZE - 10))-$((SIZE - 1))/$SIZE"
st=$(curl -s -D "$TMP/hdr" -o /dev/null -w '%{http_code}' -r "$((SIZE + 5))-" "$B/boot/big.bin")
check "unsatisfiable range is 416 with Content-Range bytes */size" \
	sh -c "[ '$st' = 416 ] && grep -qi '^Content-Range: bytes \*/$SIZE' '$TMP/hdr'"
st=$(curl -s -o "$TMP/part" -w '%{http_code}' -r 0-9,20-29 "$B/boot/big.bin")
check "multiple ranges answered 200 with the whole file" \
	sh -c "[ '$st' = 200 ] && cmp -s '$TMP/part' '$BIG'"

# --- HEAD ------------------------------------------------------------------
st=$(curl -s -I -o "$TMP/hdr" -w '%{http_code}' "$B/boot/big.bin")
check "HEAD is 200 with the file's Content-Length" \
	sh -c "[ '$st' = 200 ] && grep -qi '^Content-Length: $SIZE' '$TMP/hdr'"
# curl -I never reads a body, so look at the raw bytes on the wire.
# raw REQUEST: sends REQUEST (with its \r\n escapes) on one connection and
# keeps every byte of the answer, until the server closes, in $TMP/raw.
raw() {
	rm -f "$TMP/raw"
	printf '%b' "$1" | python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(sys.stdin.buffer.read())
data = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    data += b
open(sys.argv[2], "wb").write(data)' "$PORT" "$TMP/raw"
}
raw 'HEAD /boot/small.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n'
check "HEAD sends headers only, no body" python3 - "$TMP/raw" <<'EOF'
import sys
head, _, body = open(sys.argv[1], "rb").read().partition(b"\r\n\r\n")
ok = head.startswith(b"HTTP/1.1 200") and b"Content-Length: 6" in head and body == b""
sys.exit(0 if ok else 1)
EOF

# --- conditional GET and HEAD (If-None-Match, If-Modified-Since) -----------
hdr() { # hdr NAME: the value of header NAME in $TMP/hdr
	sed -n "s/^$1: *\(.*\)$(printf '\r')\$/\1/Ip" "$TMP/hdr" | head -n 1
}
cond() { # cond URL [curl args...]: the status; body in $TMP/body, headers in $TMP/hdr
	u=$1
	shift
	rm -f "$TMP/body"
	curl -s -D "$TMP/hdr" -o "$TMP/body" -w '%{http_code}' "$@" "$u"
}
no_body() { [ ! -s "$TMP/body" ]; }
C=$TMP/root/boot/cond.txt
printf 'conditional v1\n' >"$C"
touch -d '2001-02-03 04:05:06 UTC' "$C"
st=$(cond "$B/boot/cond.txt")
ET=$(hdr ETag)
LM=$(hdr Last-Modified)
check "a static file has an ETag and Last-Modified ($ET, $LM)" \
	sh -c "[ '$st' = 200 ] && [ -n '$ET' ] && [ '$LM' = 'Sat, 03 Feb 2001 04:05:06 GMT' ]"
st=$(cond "$B/boot/cond.txt" -H "If-None-Match: $ET")
check "If-None-Match with its ETag: 304, no body, the same ETag" \
	sh -c "[ '$st' = 304 ] && [ ! -s '$TMP/body' ] && [ '$(hdr ETag)' = '$ET' ]"
raw "GET /boot/cond.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: $ET\r\n\r\nGET /boot/cond.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
# the bytes after the 304's headers must be the second response
check "the 304 carries no body on the wire (raw socket, keep-alive then a 200)" python3 - "$TMP/raw" <<'EOF'
import sys
first, _, rest = open(sys.argv[1], "rb").read().partition(b"\r\n\r\n")
sys.exit(0 if first.startswith(b"HTTP/1.1 304") and rest.startswith(b"HTTP/1.1 200") and
         rest.endswith(b"\r\n\r\nconditional v1\n") else 1)
EOF
st=$(cond "$B/boot/cond.txt" -H "If-None-Match: \"nope\", W/$ET")
check "If-None-Match with a list holding its weak form: 304" sh -c "[ '$st' = 304 ] && [ ! -s '$TMP/body' ]"
check "If-None-Match: * is 304" [ "$(cond "$B/boot/cond.txt" -H 'If-None-Match: *')" = 304 ]
st=$(cond "$B/boot/cond.txt" -I -H "If-None-Match: $ET")
check "HEAD with If-None-Match: 304" [ "$st" = 304 ]
st=$(cond "$B/boot/cond.txt" -H 'If-None-Match: "0-0-0"')
check "If-None-Match with another tag: 200 with the body" \
	sh -c "[ '$st' = 200 ] && [ \"\$(cat '$TMP/body')\" = 'conditional v1' ]"
st=$(cond "$B/boot/cond.txt" -r 0-3 -H "If-None-Match: $ET")
check "If-None-Match matching with a Range: 304, not 206" sh -c "[ '$st' = 304 ] && [ ! -s '$TMP/body' ]"
st=$(cond "$B/boot/cond.txt" -H "If-Modified-Since: $LM")
check "If-Modified-Since its Last-Modified: 304, no body" sh -c "[ '$st' = 304 ] && [ ! -s '$TMP/body' ]"
check "If-Modified-Since in the RFC 850 form: 304" \
	[ "$(cond "$B/boot/cond.txt" -H 'If-Modified-Since: Saturday, 03-Feb-01 04:05:06 GMT')" = 304 ]
check "If-Modified-Since a second earlier: 200" \
	[ "$(cond "$B/boot/cond.txt" -H 'If-Modified-Since: Sat, 03 Feb 2001 04:05:05 GMT')" = 200 ]
check "If-Modified-Since not a date: 200 (ignored)" \
	[ "$(cond "$B/boot/cond.txt" -H 'If-Modified-Since: yesterday')" = 200 ]
check "If-Modified-Since in the future: 200 (ignored)" \
	[ "$(cond "$B/boot/cond.txt" -H 'If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT')" = 200 ]
check "If-None-Match not matching wins over a matching If-Modified-Since: 200" \
	[ "$(cond "$B/boot/cond.txt" -H 'If-None-Match: "0-0-0"' -H "If-Modified-Since: $LM")" = 200 ]
st=$(cond "$B/repo/img/a.txt")
RET=$(hdr ETag)
check "repo file: If-None-Match with its ETag is 304" \
	sh -c "[ '$st' = 200 ] && [ \"\$(curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: $RET' '$B/repo/img/a.txt')\" = 304 ]"
# the file changes (same size: the ETag has the mtime's nanoseconds)
printf 'conditional v2\n' >"$C"
st=$(cond "$B/boot/cond.txt" -H "If-None-Match: $ET")
check "changed file, old ETag: 200 with the new body and a new ETag ($(hdr ETag))" \
	sh -c "[ '$st' = 200 ] && [ \"\$(cat '$TMP/body')\" = 'conditional v2' ] && [ -n '$(hdr ETag)' ] && [ '$(hdr ETag)' != '$ET' ]"
st=$(cond "$B/boot/cond.txt" -H "If-Modified-Since: $LM")
check "changed file, old Last-Modified in If-Modified-Since: 200 with the new body" \
	sh -c "[ '$st' = 200 ] && [ \"\$(cat '$TMP/body')\" = 'conditional v2' ]"
st=$(cond "$B/boot/cond.txt" -H "If-None-Match: $(hdr ETag)")
check "changed file, its new ETag: 304" [ "$st" = 304 ]

# --- traversal and refusals ------------------------------------------------
refused() { # refused CURL_ARGS...: status 400/403/404 and no passwd content
	st=$(curl -s -o "$TMP/body" -w '%{http_code}' "$@")
	case $st in 400 | 403 | 404) ;; *) echo "  status $st"; return 1 ;; esac
	! grep -q 'root:' "$TMP/body"
}
check "/boot/../etc/passwd (path as is) refused" refused --path-as-is "$B/boot/../etc/passwd"
check "/boot/../../../../etc/passwd refused" refused --path-as-is "$B/boot/../../../../etc/passwd"
check "%2e%2e/ traversal refused" refused "$B/boot/%2e%2e/%2e%2e/etc/passwd"
check "%2e%2e%2f traversal refused" refused "$B/boot/%2e%2e%2f%2e%2e%2fetc%2fpasswd"
check "absolute path (//etc/passwd) refused" refused --path-as-is "$B/boot//etc/passwd"
check "%2fetc%2fpasswd refused" refused "$B/boot/%2fetc%2fpasswd"
check "symlink to /etc/passwd refused" refused "$B/boot/passwd-link"
check "relative symlink escaping the root refused" refused "$B/boot/rel-link"
check "NUL (%00) inside the path refused" refused "$B/boot/small.txt%00.ipxe"
check "repo: traversal to boot root refused" refused --path-as-is "$B/repo/../boot/small.txt"
st=$(code "$B/boot/sub")
check "directory is 403/404, no listing" sh -c "[ '$st' = 403 ] || [ '$st' = 404 ]"
check "directory with slash is 403/404" sh -c "s=\$(curl -s -o /dev/null -w '%{http_code}' '$B/boot/sub/'); [ \$s = 403 ] || [ \$s = 404 ]"
check "missing file is 404" [ "$(code "$B/boot/nope")" = 404 ]
check "unknown top-level path is 404" [ "$(code "$B/etc/passwd")" = 404 ]
for m in POST PUT DELETE; do
	st=$(curl -s -D "$TMP/hdr" -o /dev/null -w '%{http_code}' -X $m --data x "$B/boot/small.txt")
	check "$m on a static file is 405 with Allow" \
		sh -c "[ '$st' = 405 ] && grep -qi '^Allow: GET, HEAD' '$TMP/hdr'"
done
check "small.txt unchanged after the methods" [ "$(cat "$TMP/root/boot/small.txt")" = hello ]
check "GET with a body is refused (413)" \
	[ "$(curl -s -o /dev/null -w '%{http_code}' -X GET --data x "$B/boot/small.txt")" = 413 ]

# --- per-node iPXE scripts -------------------------------------------------
MAC=52:54:00:aa:bb:cc
st=$(code "$B/boot/$MAC.ipxe")
cp "$TMP/body" "$TMP/script"
check "script for an unknown MAC is 200" [ "$st" = 200 ]
check "script starts with #!ipxe" [ "$(head -n 1 "$TMP/script")" = "#!ipxe" ]
check "script is the discovery script" grep -q 'rackboot.mode=discovery' "$TMP/script"
check "script has the MAC substituted" grep -q "rackboot.mac=$MAC " "$TMP/script"
check "script boots kernel + initrd from this server with initrd=NAME" \
	grep -q "^kernel $B/boot/vmlinuz initrd=initrd.img console=ttyS0,115200 quiet rackboot.server=$B " "$TMP/script"
check "script fetches the initrd" grep -q "^initrd $B/boot/agent/initrd.img" "$TMP/script"
check "script has no unrendered placeholder" sh -c "! grep -q '{{' '$TMP/script'"
check "script ends in reboot (never stuck)" grep -qx 'reboot' "$TMP/script"
st=$(code "$B/boot/52-54-00-AA-BB-CD.ipxe")
check "hyphenated upper-case MAC accepted and normalised" \
	sh -c "[ '$st' = 200 ] && grep -q 'rackboot.mac=52:54:00:aa:bb:cd ' '$TMP/body'"
check "bad MAC (zz) is 404" [ "$(code "$B/boot/52:54:00:aa:bb:zz.ipxe")" = 404 ]
check "short MAC is 404" [ "$(code "$B/boot/52:54:00:aa:bb.ipxe")" = 404 ]
check "HEAD on a script is 200" [ "$(curl -s -I -o /dev/null -w '%{http_code}' "$B/boot/$MAC.ipxe")" = 200 ]

# --- API -------------------------------------------------------------------
# The node list and document are operator endpoints: a token from the tokens
# file the running server reads.
OPTOK=$("$BIN" -c "$TMP/rackbootd.conf" token create http-test 2>/dev/null)
OPAUTH="Authorization: Bearer $OPTOK"
check "rackbootd token create prints an operator token" \
	sh -c "echo '$OPTOK' | grep -Eqx 'rbo_[0-9a-f]{48}'"
check "/api/v1/nodes without a token is 401" [ "$(code "$B/api/v1/nodes")" = 401 ]
json_has_node() { # json_has_node FILE MAC
	python3 - "$1" "$2" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
nodes = doc["nodes"] if isinstance(doc, dict) else doc
sys.exit(0 if any(n.get("mac") == sys.argv[2] for n in nodes) else 1)
EOF
}
found=0
i=0
while [ $i -lt 50 ]; do
	if [ "$(code "$B/api/v1/nodes" -H "$OPAUTH")" = 200 ] && json_has_node "$TMP/body" $MAC 2>/dev/null; then
		found=1
		break
	fi
	sleep 0.1
	i=$((i + 1))
done
check "/api/v1/nodes lists the node that fetched its script (within 5 s)" [ $found = 1 ]
st=$(curl -s -D "$TMP/hdr" -o "$TMP/body" -w '%{http_code}' -H "$OPAUTH" "$B/api/v1/nodes/$MAC")
check "/api/v1/nodes/<mac> is 200 JSON" \
	sh -c "[ '$st' = 200 ] && grep -qi '^Content-Type: application/json' '$TMP/hdr'"
check "/api/v1/nodes/<mac> has the http.script event for discovery.ipxe" python3 - "$TMP/body" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
ev = doc.get("events", [])
sys.exit(0 if any(e.get("event") == "http.script" and "discovery.ipxe" in e.get("detail", "")
                  for e in ev) else 1)
EOF
st=$(code "$B/api/v1/nodes/52:54:00:00:00:01" -H "$OPAUTH")
check "unknown node is 404 JSON" sh -c "[ '$st' = 404 ] && python3 -c 'import json,sys; assert json.load(open(sys.argv[1]))[\"error\"]' '$TMP/body'"
check "bad MAC in the API is 400" [ "$(code "$B/api/v1/nodes/not-a-mac" -H "$OPAUTH")" = 400 ]
check "PUT on the API is 405" [ "$(code "$B/api/v1/nodes" -H "$OPAUTH" -X PUT --data '{}')" = 405 ]
check "unknown API path is 404 JSON" sh -c "[ \"\$(curl -s -o '$TMP/b2' -w '%{http_code}' '$B/api/v1/nope')\" = 404 ] && grep -q '\"error\"' '$TMP/b2'"

rb_stop

# --- templates_dir overrides the built-in templates ------------------------
mkdir -p "$TMP/tmpl"
printf '#!ipxe\necho custom {{mac}} {{hostname}} {{state}}\nexit\n' >"$TMP/tmpl/discovery.ipxe"
write_conf "$TMP/rackbootd2.conf" "$TMP/tmpl"
start_server "$TMP/rackbootd2.conf"
st=$(code "$B/boot/52:54:00:aa:bb:ce.ipxe")
check "templates_dir: custom discovery template used" \
	sh -c "[ '$st' = 200 ] && grep -qx 'echo custom 52:54:00:aa:bb:ce  new' '$TMP/body'"
printf '#!ipxe\necho {{no_such_variable}}\n' >"$TMP/tmpl/discovery.ipxe"
check "templates_dir: unknown variable is 500, not a broken script" \
	[ "$(code "$B/boot/52:54:00:aa:bb:ce.ipxe")" = 500 ]
check "templates_dir: the failure names the variable in the log" \
	grep -q "no_such_variable" "$TMP/rackbootd.log"
rb_finish
