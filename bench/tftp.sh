#!/bin/bash
# TFTP throughput of rackbootd against the anchors dnsmasq and atftpd, all
# measured side by side in this one script (shared machines vary 3x from
# hour to hour; only the ratios mean anything).
#
# Each server runs on port 69 in its own network namespace (lo only); the
# client is atftp 0.8 in the same namespace. A 32 MiB file is fetched at
# blksize 1468 without and with windowsize 16, 3 runs each; the median MB/s
# and the ratios rackbootd/dnsmasq and rackbootd/atftpd are printed. Then
# 500 simultaneous transfers of undionly.kpxe from rackbootd must all
# complete byte-identical, and rackbootd's peak RSS (VmHWM) is reported.
#
# Needs root (network namespaces). atftpd is not installed (it conflicts
# with tftpd-hpa): its .deb and libwrap0's are fetched with apt-get download
# and unpacked into $ATFTPD_DIR (default /tmp/rbt-tftp-atftpd).
# Usage: RB_BUILD=build bench/tftp.sh   (RUNS=3 SIZE_MIB=32 CONC=500)
set -u

RB_BUILD=${RB_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
DAEMON=$RB_BUILD/pxe/rackbootd
RUNS=${RUNS:-3}
SIZE_MIB=${SIZE_MIB:-32}
CONC=${CONC:-500}
ATFTPD_DIR=${ATFTPD_DIR:-/tmp/rbt-tftp-atftpd}
UNDI=/usr/lib/ipxe/undionly.kpxe

[ "$(id -u)" -eq 0 ] || { echo "SKIP: needs root for network namespaces"; exit 77; }
for t in atftp dnsmasq ip python3; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
[ -x "$DAEMON" ] || { echo "SKIP: $DAEMON not built"; exit 77; }
[ -r "$UNDI" ] || { echo "SKIP: $UNDI missing (package ipxe)"; exit 77; }

if [ ! -x "$ATFTPD_DIR/x/usr/sbin/atftpd" ]; then
	mkdir -p "$ATFTPD_DIR"
	(cd "$ATFTPD_DIR" && apt-get download atftpd libwrap0 >/dev/null 2>&1 &&
		for d in atftpd_*.deb libwrap0_*.deb; do dpkg -x "$d" x; done)
fi
ATFTPD=$ATFTPD_DIR/x/usr/sbin/atftpd
ATFTPD_LIBS=$ATFTPD_DIR/x/lib/x86_64-linux-gnu:$ATFTPD_DIR/x/usr/lib/x86_64-linux-gnu
if ! LD_LIBRARY_PATH=$ATFTPD_LIBS "$ATFTPD" --version >/dev/null 2>&1; then
	echo "SKIP: atftpd could not be fetched into $ATFTPD_DIR"
	exit 77
fi

TMP=$(mktemp -d /tmp/rbt-tftp-bench.XXXXXX)
chmod 755 "$TMP"
NS_RB=rbt-tftp-$$-rb
NS_DM=rbt-tftp-$$-dm
NS_AT=rbt-tftp-$$-at
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do
		kill "$p" 2>/dev/null
		wait "$p" 2>/dev/null
	done
	for ns in "$NS_RB" "$NS_DM" "$NS_AT"; do
		ip netns del "$ns" 2>/dev/null
	done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ROOT=$TMP/root
mkdir -p "$ROOT" "$TMP/state" "$TMP/out" "$TMP/boot" "$TMP/repo"
chmod 755 "$ROOT"
head -c $((SIZE_MIB * 1024 * 1024)) /dev/urandom >"$ROOT/big"
cp "$UNDI" "$ROOT/undionly.kpxe"
chmod 644 "$ROOT"/*
BYTES=$(stat -c %s "$ROOT/big")

for ns in "$NS_RB" "$NS_DM" "$NS_AT"; do
	ip netns add "$ns" || exit 1
	ip -n "$ns" link set lo up
done

cat >"$TMP/rackbootd.conf" <<EOF
user = ""
state_dir = "$TMP/state"
log_level = "warning"
dhcp {
	mode = "off"
}
tftp {
	port = 69
	root = "$ROOT"
	max_windowsize = 16
	max_transfers = 1000
}
http {
	port = 18080
	boot_root = "$TMP/boot"
	repo_root = "$TMP/repo"
}
EOF
# ip netns exec runs the server in place (exec), so $! is the server's PID.
ip netns exec "$NS_RB" "$DAEMON" -c "$TMP/rackbootd.conf" >"$TMP/rackbootd.log" 2>&1 &
RB_PID=$!
PIDS+=("$RB_PID")
ip netns exec "$NS_DM" dnsmasq --no-daemon --conf-file=/dev/null --port=0 --user=root \
	--pid-file= --enable-tftp --tftp-root="$ROOT" --tftp-max=1000 --quiet-tftp \
	--log-facility="$TMP/dnsmasq.log" >/dev/null 2>&1 &
PIDS+=($!)
ip netns exec "$NS_AT" env LD_LIBRARY_PATH="$ATFTPD_LIBS" "$ATFTPD" --daemon --no-fork \
	--port 69 --user root --group root --logfile /dev/null --maxthread 1000 "$ROOT" \
	>/dev/null 2>&1 &
PIDS+=($!)

# Wait until each answers.
for ns in "$NS_RB" "$NS_DM" "$NS_AT"; do
	ok=
	for _ in $(seq 1 50); do
		if ip netns exec "$ns" atftp -g -r undionly.kpxe -l "$TMP/out/probe" 127.0.0.1 69 \
			>/dev/null 2>&1 && cmp -s "$TMP/out/probe" "$ROOT/undionly.kpxe"; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[ -n "$ok" ] || { echo "FAIL: server in $ns does not answer"; cat "$TMP/rackbootd.log"; exit 1; }
done

# One timed fetch; prints MB/s (10^6 bytes/s). The first run of each case
# is compared with the file; later ones go to /dev/null.
fetch() { # fetch NS CHECK OPTIONS...
	local ns=$1 check=$2 dst=/dev/null t0 t1
	shift 2
	[ "$check" = 1 ] && dst=$TMP/out/check && rm -f "$dst"
	t0=$(date +%s.%N)
	ip netns exec "$ns" atftp "$@" -g -r big -l "$dst" 127.0.0.1 69 >/dev/null 2>&1 || {
		echo "FAIL"
		return
	}
	t1=$(date +%s.%N)
	if [ "$check" = 1 ] && ! cmp -s "$dst" "$ROOT/big"; then
		echo "CORRUPT"
		return
	fi
	python3 -c "print('%.1f' % ($BYTES / 1e6 / ($t1 - $t0)))"
}

median() { printf '%s\n' "$@" | sort -g | sed -n "$((($# + 1) / 2))p"; }

declare -A RESULT RAW
STATUS=0
echo "TFTP, ${SIZE_MIB} MiB file, atftp client, loopback in a netns, median of $RUNS runs (MB/s)"
printf '%-22s %12s %12s %12s %8s %8s\n' case rackbootd dnsmasq atftpd rb/dm rb/at
for c in "blksize 1468" "blksize 1468 + win 16"; do
	if [ "$c" = "blksize 1468" ]; then
		opts=(--option "blksize 1468")
	else
		opts=(--option "blksize 1468" --option "windowsize 16")
	fi
	for srv in rb dm at; do
		case $srv in rb) ns=$NS_RB ;; dm) ns=$NS_DM ;; at) ns=$NS_AT ;; esac
		vals=()
		# Interleaving servers per run would be fairer to drift; runs of
		# one server back to back keep its page cache and sockets warm.
		for i in $(seq 1 "$RUNS"); do
			vals+=("$(fetch "$ns" "$([ "$i" = 1 ] && echo 1 || echo 0)" "${opts[@]}")")
		done
		for v in "${vals[@]}"; do
			case $v in FAIL | CORRUPT)
				echo "$srv $c: $v"
				STATUS=1
				;;
			esac
		done
		RESULT[$srv]=$(median "${vals[@]}")
		RAW[$srv]="${vals[*]}"
	done
	ratio() { python3 -c "
try: print('%.2f' % (float('$1') / float('$2')))
except Exception: print('-')"; }
	printf '%-22s %12s %12s %12s %8s %8s\n' "$c" "${RESULT[rb]}" "${RESULT[dm]}" \
		"${RESULT[at]}" "$(ratio "${RESULT[rb]}" "${RESULT[dm]}")" \
		"$(ratio "${RESULT[rb]}" "${RESULT[at]}")"
	echo "    runs: rackbootd ${RAW[rb]} | dnsmasq ${RAW[dm]} | atftpd ${RAW[at]}"
done

# Many at once: CONC simultaneous fetches of undionly.kpxe from rackbootd.
mkdir -p "$TMP/out/conc"
t0=$(date +%s.%N)
cpids=()
for i in $(seq 1 "$CONC"); do
	ip netns exec "$NS_RB" atftp --option "blksize 1468" -g -r undionly.kpxe \
		-l "$TMP/out/conc/$i" 127.0.0.1 69 >/dev/null 2>&1 &
	cpids+=($!)
done
for p in "${cpids[@]}"; do wait "$p"; done
t1=$(date +%s.%N)
good=0
for i in $(seq 1 "$CONC"); do
	cmp -s "$TMP/out/conc/$i" "$ROOT/undionly.kpxe" && good=$((good + 1))
done
hwm=$(awk '/VmHWM/ {print $2, $3}' "/proc/$RB_PID/status" 2>/dev/null)
printf '%d simultaneous transfers of undionly.kpxe (%d bytes): %d complete and match, %.1f s; rackbootd peak RSS (VmHWM) %s\n' \
	"$CONC" "$(stat -c %s "$ROOT/undionly.kpxe")" "$good" \
	"$(python3 -c "print($t1 - $t0)")" "${hwm:-unknown}"
[ "$good" -eq "$CONC" ] || STATUS=1
kill -0 "$RB_PID" 2>/dev/null || { echo "rackbootd died"; STATUS=1; }
exit $STATUS
