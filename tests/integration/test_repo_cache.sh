#!/bin/bash
# The repository through a per-rack cache: a real nginx with proxy_cache in
# front of the real rackbootd, both on 127.0.0.1, and rackboot-agent image
# run through nginx as two nodes of one rack would.
#
# Ranges: the agent fetches packs with single "Range: bytes=a-b" requests.
# nginx's proxy_cache on its own drops the client's Range and pulls the
# whole pack from the origin, and a cache key with $http_range only hits
# when a later client asks for byte-identical ranges (a reimage, another
# --parallel, another image sharing the pack never does). So the pack
# location uses the slice module: nginx asks the origin for aligned 1 MiB
# slices (Range: $slice_range, 206 cached under $uri + $slice_range) and
# builds any client range from cached slices. proxy_cache_lock makes
# concurrent misses of one slice wait for the first fetch. The config
# here is the one docs/scale.md recommends.
#
# Checked:
#  - node 1 (cold cache): byte-identical to the source disk; rackbootd
#    (the origin) sent every pack byte, nginx logged MISS;
#  - node 2 (warm cache): byte-identical; rackbootd saw no request at all
#    (its access log: not one GET for a pack, manifest or signature), and
#    nginx's $upstream_cache_status says HIT for every pack request;
#  - a range that no agent asked for (crossing a slice boundary) comes
#    from the cache byte-identical to the pack, no origin request;
#  - a reimage of node 1 to v2 through the warm cache: the origin sends
#    only slices of v2's new packs, never one of v1's.
# Skips (77) without nginx or its slice module. Kills only its own PIDs.
set -u

. "$(dirname "$0")/lib.sh"
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
rb_need_bin "$AGENT" "$IMG" "$SRV"
export PATH=$PATH:/usr/sbin:/sbin
rb_need_cmd nginx sfdisk python3 cmp curl
nginx -V 2>&1 | grep -q -- --with-http_slice_module ||
	{ echo "SKIP: this nginx has no slice module"; exit 77; }

rb_setup repocache
T=$RB_TMP
chmod 755 "$T" # nginx workers run as nobody when started by root
NGPID=
cleanup() {
	[ -n "$NGPID" ] && kill "$NGPID" 2>/dev/null && wait "$NGPID" 2>/dev/null
}
RB_ON_EXIT=cleanup

R=$T/repo
mkdir -p "$R" "$T/boot" "$T/state" "$T/nginx/logs" "$T/nginx/cache" "$T/nginx/tmp"

# ---- the image: a 64 MiB GPT disk with 12 MiB of random data; packs of
# 4 MiB so that a pack spans several slices; v2 rewrites 1 MiB of it ----
DISK=$T/disk1.img
truncate -s 64M "$DISK"
printf 'label: gpt\nstart=2048, size=16384, type=U, name="esp"\nstart=18432, size=110592, type=L, name="root"\n' |
	sfdisk -q "$DISK" >/dev/null || { echo "FAIL: sfdisk"; exit 1; }
head -c $((12 * 1024 * 1024)) /dev/urandom | dd of="$DISK" bs=1M seek=16 conv=notrunc status=none
echo "rackboot repo cache marker" | dd of="$DISK" bs=1M seek=50 conv=notrunc status=none
cp "$DISK" "$T/disk2.img"
head -c $((1024 * 1024)) /dev/urandom | dd of="$T/disk2.img" bs=1M seek=20 conv=notrunc status=none
"$IMG" keygen "$T/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
for v in 1 2; do
	"$IMG" build -q --repo "$R" --key "$T/site.key" --name node --version $v \
		--pack-size 4M "$T/disk$v.img" >/dev/null || { echo "FAIL: build v$v"; exit 1; }
done
V1PACKS=$(python3 -c 'import json, sys
print(" ".join(p["id"] for p in json.load(open(sys.argv[1]))["packs"]))' "$R/images/node/1.manifest.json")
PACKBYTES=$(python3 -c 'import json, sys
print(sum(p["size"] for p in json.load(open(sys.argv[1]))["packs"]))' "$R/images/node/1.manifest.json")

# ---- the origin: rackbootd, with its access log (debug level) ----
rb_repo_conf "$R"
PORT=$RB_PORT
rb_start_server "http://127.0.0.1:$PORT/boot/" "$SRV" -c "$T/rackbootd.conf" -v

# ---- the rack cache: nginx ----
NGPORT=$(rb_free_ports tcp)
if [ "$(id -u)" -eq 0 ]; then
	chown nobody "$T/nginx/cache" "$T/nginx/tmp" 2>/dev/null ||
		{ echo "SKIP: no user nobody for nginx's workers"; exit 77; }
fi
cat >"$T/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 256; }
http {
	log_format cache '\$request_uri \$status \$body_bytes_sent '
	                 'range="\$http_range" cache=\$upstream_cache_status';
	access_log $T/nginx/logs/access.log cache;
	client_body_temp_path $T/nginx/tmp/body;
	proxy_temp_path $T/nginx/tmp/proxy;
	fastcgi_temp_path $T/nginx/tmp/fastcgi;
	uwsgi_temp_path $T/nginx/tmp/uwsgi;
	scgi_temp_path $T/nginx/tmp/scgi;

	# ----- the part docs/scale.md shows -----
	proxy_cache_path $T/nginx/cache levels=1:2 keys_zone=repo:16m
	                 max_size=8g inactive=30d use_temp_path=off;
	upstream rackbootd {
		server 127.0.0.1:$PORT;
		keepalive 16;
	}
	server {
		listen 127.0.0.1:$NGPORT;
		proxy_http_version 1.1;
		proxy_set_header Connection "";
		proxy_cache repo;
		proxy_cache_lock on;
		proxy_cache_lock_timeout 60s;
		proxy_cache_use_stale error timeout updating;
		add_header X-Cache \$upstream_cache_status always;

		# packs: immutable, named by their SHA-256; cached as 1 MiB slices
		location /repo/packs/ {
			slice 1m;
			proxy_cache_key \$uri\$slice_range;
			proxy_set_header Range \$slice_range;
			proxy_cache_valid 200 206 30d;
			proxy_pass http://rackbootd;
		}
		# manifests and their signatures: immutable once published
		location /repo/images/ {
			proxy_cache_key \$uri;
			proxy_cache_valid 200 30d;
			proxy_pass http://rackbootd;
		}
		# catalog.json and its signature are replaced on publish, as a
		# pair: not cached, so that a node never gets one new and the
		# other old for longer than the publish's two renames
		location /repo/ {
			proxy_cache off;
			proxy_pass http://rackbootd;
		}
	}
}
EOF
nginx -p "$T/nginx" -e "$T/nginx/logs/error.log" -c "$T/nginx/nginx.conf" -g 'daemon off;' \
	>"$T/nginx.out" 2>&1 &
NGPID=$!
for _ in $(seq 100); do
	curl -s -o /dev/null "http://127.0.0.1:$NGPORT/repo/catalog.json" && break
	kill -0 "$NGPID" 2>/dev/null || break
	sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$NGPORT/repo/catalog.json" ||
	{ echo "FAIL: nginx did not start"; cat "$T/nginx.out" "$T/nginx/logs/error.log"; exit 1; }
CACHE=http://127.0.0.1:$NGPORT/repo

# origin_log_since LINE: rackbootd's access log lines after line LINE
origin_lines() { grep -c "http: .* GET /repo/" "$T/rackbootd.log"; }
origin_since() { grep "http: .* GET /repo/" "$T/rackbootd.log" | tail -n +$(($1 + 1)); }
# pack body bytes rackbootd sent in lines after LINE
origin_pack_bytes() { origin_since "$1" | awk '/GET \/repo\/packs\// { s += $(NF) } END { print s + 0 }'; }
ng_lines() { wc -l <"$T/nginx/logs/access.log"; }
ng_since() { tail -n +$(($1 + 1)) "$T/nginx/logs/access.log"; }
deploy() { # deploy TARGET VERSION [ARGS]: rackboot-agent image through the cache
	local t=$1 v=$2
	shift 2
	timeout 120 "$AGENT" image --repo "$CACHE" --pub "$T/site.pub" -q --name node \
		--version "$v" --target "$t" "$@"
}

# ---- node 1: cold cache ----
o0=$(origin_lines)
n0=$(ng_lines)
if deploy "$T/node1.img" 1 >"$T/s1" 2>"$T/e1" && cmp -s "$DISK" "$T/node1.img"; then
	pass "node 1 through the cold cache: byte-identical: $(cat "$T/s1")"
else
	fail "node 1 through the cold cache: $(cat "$T/s1" "$T/e1")"
fi
sleep 0.5 # the access logs are written when a response ends
o1_bytes=$(origin_pack_bytes "$o0")
o1_req=$(origin_since "$o0" | grep -c "GET /repo/packs/")
miss1=$(ng_since "$n0" | grep "^/repo/packs/" | grep -c "cache=MISS")
if [ "$o1_bytes" -eq "$PACKBYTES" ] && [ "$miss1" -gt 0 ]; then
	pass "node 1: origin sent each pack byte once: $o1_bytes bytes (packs: $PACKBYTES) in $o1_req slice requests; nginx: $miss1 MISS"
else
	fail "node 1: origin sent $o1_bytes pack bytes (packs hold $PACKBYTES), $miss1 MISS in nginx's log"
fi
# every origin pack request was a slice: aligned 1 MiB ranges, never the
# agent's own ranges
slices=$(grep -c "GET /repo/packs/.* 206 " "$T/rackbootd.log")
[ "$slices" -eq "$o1_req" ] && pass "node 1: all $o1_req origin pack requests answered 206 (slices)" ||
	fail "node 1: $o1_req origin pack requests, $slices of them 206"

# ---- node 2: warm cache ----
o0=$(origin_lines)
n0=$(ng_lines)
if deploy "$T/node2.img" 1 --parallel 2 >"$T/s2" 2>"$T/e2" && cmp -s "$DISK" "$T/node2.img"; then
	pass "node 2 through the warm cache: byte-identical: $(cat "$T/s2")"
else
	fail "node 2 through the warm cache: $(cat "$T/s2" "$T/e2")"
fi
sleep 0.5
o2=$(($(origin_lines) - o0))
packreq2=$(ng_since "$n0" | grep -c "^/repo/packs/")
hit2=$(ng_since "$n0" | grep "^/repo/packs/" | grep -c "cache=HIT")
if [ "$o2" -eq 0 ] && [ "$packreq2" -gt 0 ] && [ "$hit2" -eq "$packreq2" ]; then
	pass "node 2: no request reached rackbootd; $hit2 of $packreq2 pack requests HIT in nginx"
else
	fail "node 2: $o2 requests reached rackbootd ($(origin_since "$o0" | head -3 | tr '\n' ' ')), $hit2 of $packreq2 pack requests HIT"
fi

# ---- a range no agent asked for, across a slice boundary ----
read -r P1 < <(echo "$V1PACKS" | tr ' ' '\n' | head -1)
o0=$(origin_lines)
curl -sf -r 1000000-2200000 -o "$T/range.bin" "$CACHE/packs/$P1.pack" -D "$T/range.h"
python3 -c 'import sys
f = open(sys.argv[1], "rb"); f.seek(1000000); want = f.read(1200001)
sys.exit(0 if open(sys.argv[2], "rb").read() == want else 1)' "$R/packs/$P1.pack" "$T/range.bin"
same=$?
sleep 0.2
if [ $same -eq 0 ] && grep -q "^HTTP/1.1 206" "$T/range.h" && [ "$(origin_lines)" -eq "$o0" ]; then
	pass "an arbitrary range across slices: 206 from the cache, byte-identical, no origin request"
else
	fail "an arbitrary range: same=$same, $(head -1 "$T/range.h"), origin requests $(($(origin_lines) - o0))"
fi

# ---- node 1 reimaged to v2 through the warm cache ----
o0=$(origin_lines)
if deploy "$T/node1.img" 2 --reimage >"$T/s3" 2>"$T/e3" && cmp -s "$T/disk2.img" "$T/node1.img"; then
	pass "node 1 reimaged to v2 through the cache: byte-identical: $(cat "$T/s3")"
else
	fail "node 1 reimaged to v2: $(cat "$T/s3" "$T/e3")"
fi
sleep 0.5
old=0
for p in $V1PACKS; do
	old=$((old + $(origin_since "$o0" | grep -c "GET /repo/packs/$p.pack")))
done
o3_bytes=$(origin_pack_bytes "$o0")
fetched3=$(tr ' ' '\n' <"$T/s3" | awk -F= '$1 == "fetched_bytes" { print $2 }')
if [ "$old" -eq 0 ] && [ "$o3_bytes" -gt 0 ] && [ "$o3_bytes" -lt "$PACKBYTES" ]; then
	pass "reimage: origin sent $o3_bytes pack bytes, none from v1's packs (agent fetched ${fetched3:-?} bytes)"
else
	fail "reimage: origin sent $o3_bytes pack bytes, $old requests for v1's packs"
fi

kill -0 "$RB_PID" 2>/dev/null && kill -0 "$NGPID" 2>/dev/null || fail "rackbootd or nginx died"
rb_finish
