#!/bin/sh
# HTTP file serving: rackbootd against nginx (the anchor), same file, same
# load, same machine, one after the other in this script.
#   bench/http.sh [SIZE_MIB] [SECONDS]      (defaults 512 and 10)
#   STORM=200 bench/http.sh                 (boot storm clients; 0 = skip)
# Load: wrk -t2 -c16 -d<SECONDS> on one big file (what nodes do when they
# fetch an initrd or an image). Both servers get the same number of workers
# (rackbootd threads = nginx worker_processes = nproc) and use sendfile.
# Prints requests/s and MB/s for each, and the ratio rackbootd/nginx.
# Then a boot storm: STORM clients (default 200) at once each fetch a kernel
# and an initrd (the Debian kernel of /var/cache/rackboot/kernel if there,
# else 8 MiB, and a 32 MiB initrd) from each server, one curl --parallel
# with STORM connections: every transfer must end 200 with the full size;
# prints the time until the last one ends and the server's peak RSS (VmHWM;
# nginx: the largest worker).
# Needs the page cache to hold the file (it is read once before the runs).
# Everything stays on 127.0.0.1; only PIDs started here are killed.
set -u

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../build}
BIN=$RB_BUILD/pxe/rackbootd
SIZE_MIB=${1:-512}
SECS=${2:-10}
STORM=${STORM:-200}
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
for t in wrk nginx python3; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
NGINX=$(command -v nginx)

TMP=$(mktemp -d /tmp/rbt-httpbench.XXXXXX)
chmod 755 "$TMP" # nginx workers run as nobody when started by root
PIDS=
cleanup() {
	for p in $PIDS; do kill "$p" 2>/dev/null; done
	for p in $PIDS; do wait "$p" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # wait_port URL PID
	i=0
	while [ $i -lt 100 ]; do
		curl -s -o /dev/null "$1" && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.1
		i=$((i + 1))
	done
	return 1
}

WORKERS=$(nproc)
mkdir -p "$TMP/root/boot" "$TMP/root/repo" "$TMP/state" "$TMP/nginx/logs"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$TMP/root/boot/big.bin"
cat "$TMP/root/boot/big.bin" >/dev/null # into the page cache

RB_PORT=$(free_port)
cat >"$TMP/rackbootd.conf" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
log_level = "warning"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $RB_PORT
	boot_root = "$TMP/root/boot"
	repo_root = "$TMP/root/repo"
	threads = $WORKERS
	max_conns = 1000
}
EOF

NG_PORT=$(free_port)
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes $WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 100000;
	client_body_temp_path $TMP/nginx/body;
	proxy_temp_path $TMP/nginx/proxy;
	fastcgi_temp_path $TMP/nginx/fastcgi;
	uwsgi_temp_path $TMP/nginx/uwsgi;
	scgi_temp_path $TMP/nginx/scgi;
	server {
		listen 127.0.0.1:$NG_PORT;
		location /boot/ { root $TMP/root; }
	}
}
EOF

# run NAME URL: prints "NAME req/s MB/s" from one wrk run
run() {
	wrk -t2 -c16 -d"${SECS}s" --timeout 60s "$2" >"$TMP/wrk.$1" 2>&1
	python3 - "$1" "$TMP/wrk.$1" <<'EOF'
import re, sys
name, path = sys.argv[1], sys.argv[2]
text = open(path).read()
m = re.search(r"(\d+) requests in ([\d.]+)(m?s), ([\d.]+)([KMGT]?B) read", text)
if not m:
    print(name, "wrk output not understood:\n" + text)
    sys.exit(1)
reqs, t, unit = int(m.group(1)), float(m.group(2)), m.group(3)
t = t / 1000 if unit == "ms" else t
mult = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m.group(5)]
nbytes = float(m.group(4)) * mult
errs = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", text)
print("%s %.2f %.1f%s" % (name, reqs / t, nbytes / t / 1e6,
                         ("  (" + errs.group(0) + ")") if errs else ""))
EOF
}

"$BIN" -c "$TMP/rackbootd.conf" >"$TMP/rackbootd.log" 2>&1 &
RB_PID=$!
PIDS="$PIDS $RB_PID"
wait_port "http://127.0.0.1:$RB_PORT/boot/" $RB_PID || {
	echo "rackbootd did not start"
	cat "$TMP/rackbootd.log"
	exit 1
}
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -g 'daemon off;' >"$TMP/nginx.log" 2>&1 &
NG_PID=$!
PIDS="$PIDS $NG_PID"
wait_port "http://127.0.0.1:$NG_PORT/boot/" $NG_PID || {
	echo "nginx did not start"
	cat "$TMP/nginx.log" "$TMP/nginx/logs/error.log"
	exit 1
}

# Same bytes from both before measuring.
a=$(curl -s "http://127.0.0.1:$RB_PORT/boot/big.bin" | cksum)
b=$(curl -s "http://127.0.0.1:$NG_PORT/boot/big.bin" | cksum)
[ "$a" = "$b" ] || { echo "servers return different bytes: $a / $b"; exit 1; }

echo "file ${SIZE_MIB} MiB, wrk -t2 -c16 -d${SECS}s, $WORKERS workers each, $(nproc) CPUs"
echo "server req/s MB/s"
RB=$(run rackbootd "http://127.0.0.1:$RB_PORT/boot/big.bin") || { echo "$RB"; exit 1; }
NG=$(run nginx "http://127.0.0.1:$NG_PORT/boot/big.bin") || { echo "$NG"; exit 1; }
echo "$RB"
echo "$NG"
rb_mbs=$(echo "$RB" | awk '{ print $3 }')
ng_mbs=$(echo "$NG" | awk '{ print $3 }')
awk -v a="$rb_mbs" -v b="$ng_mbs" 'BEGIN { if (b > 0) printf "ratio rackbootd/nginx: %.2fx (MB/s; goal >= 0.9x)\n", a / b }'

[ "$STORM" -gt 0 ] || exit 0
K=$(ls /var/cache/rackboot/kernel/boot/vmlinuz-* 2>/dev/null | head -1)
if [ -n "$K" ]; then cp "$K" "$TMP/root/boot/vmlinuz"; else head -c 8388608 /dev/urandom >"$TMP/root/boot/vmlinuz"; fi
head -c 33554432 /dev/urandom >"$TMP/root/boot/initrd"
cat "$TMP/root/boot/vmlinuz" "$TMP/root/boot/initrd" >/dev/null
KS=$(stat -c %s "$TMP/root/boot/vmlinuz")
IS=$(stat -c %s "$TMP/root/boot/initrd")
hwm() { # hwm PID...: the largest VmHWM (KiB) of these processes
	for p in "$@"; do awk '/^VmHWM/ { print $2 }' "/proc/$p/status" 2>/dev/null; done | sort -n | tail -1
}
# storm NAME PORT PIDS...: prints "NAME seconds ok/total peak-RSS-KiB"
storm() {
	name=$1 port=$2
	shift 2
	: >"$TMP/storm.cfg"
	i=0
	while [ $i -lt "$STORM" ]; do
		printf 'url = "http://127.0.0.1:%s/boot/vmlinuz"\noutput = "/dev/null"\nurl = "http://127.0.0.1:%s/boot/initrd"\noutput = "/dev/null"\n' "$port" "$port" >>"$TMP/storm.cfg"
		i=$((i + 1))
	done
	t0=$(date +%s.%N)
	curl -s -Z --parallel-max "$STORM" --parallel-immediate -K "$TMP/storm.cfg" \
		-w '%{http_code} %{size_download} %{url}\n' >"$TMP/storm.$name" 2>"$TMP/storm.$name.err"
	t1=$(date +%s.%N)
	ok=$(awk -v k="$KS" -v i="$IS" '$1 == 200 && (($3 ~ /vmlinuz$/ && $2 == k) || ($3 ~ /initrd$/ && $2 == i)) { n++ } END { print n + 0 }' "$TMP/storm.$name")
	echo "$name $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }') $ok/$((STORM * 2)) $(hwm "$@")"
}
echo
echo "boot storm: $STORM clients at once, each kernel ($KS bytes) + initrd ($IS bytes)"
NG_WORKERS=$(pgrep -P "$NG_PID" | tr '\n' ' ')
S1=$(storm rackbootd "$RB_PORT" "$RB_PID")
S2=$(storm nginx "$NG_PORT" $NG_WORKERS)
echo "server seconds complete peak-RSS"
echo "$S1" | awk '{ printf "%s %s s %s %.1f MiB\n", $1, $2, $3, $4 / 1024 }'
echo "$S2" | awk '{ printf "%s %s s %s %.1f MiB (largest worker)\n", $1, $2, $3, $4 / 1024 }'
awk -v a="$(echo "$S1" | cut -d' ' -f2)" -v b="$(echo "$S2" | cut -d' ' -f2)" 'BEGIN { if (a > 0) printf "storm time nginx/rackbootd: %.2fx\n", b / a }'
[ "$(echo "$S1" | cut -d' ' -f3)" = "$((STORM * 2))/$((STORM * 2))" ] || { echo "rackbootd: not every transfer completed:"; grep -v '^200' "$TMP/storm.rackbootd" | head -5; exit 1; }
