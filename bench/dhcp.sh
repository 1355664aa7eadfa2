#!/bin/bash
# DHCP answer rate: rackbootd (full and proxy) against dnsmasq (the anchor,
# full and proxy), same load, same machine, one after the other here.
#   bench/dhcp.sh [SECONDS] [RATES...]     (defaults 10 and 250 500 1000 3000 6000 9000 12000 16000 20000 25000 30000)
# Load: perfdhcp in its own namespace, joined to the server's by a veth
# pair (perfdhcp binds port 67 as a relay, so it cannot share a namespace
# with a server). Full mode: DORA from CLIENTS distinct MACs (default 1000:
# a boot storm of a row of racks; perfdhcp's -R), pool of 65k addresses.
# Proxy mode: DISCOVER/OFFER only (-i: a proxy never leases), with option 60
# PXEClient:Arch:00000:UNDI:002001 and option 93 = 0 (dnsmasq's proxy wants
# both). dnsmasq runs with --no-ping (its ICMP check before each offer would
# make it the weaker anchor), --quiet-dhcp (no log line per packet; rackbootd
# logs none either) and --dhcp-lease-max=100000. dnsmasq rewrites its lease
# file after lease changes; rackbootd batches lease writes (at most one
# every 200 ms): that difference is part of what is measured.
# For each server and rate it prints the loss (drops / sent, all exchanges)
# and the p99 answer delay,
# then per server the highest rate with < 1% server loss and the ratio to dnsmasq.
# Rates stop rising for a server once its loss passes 10%.
# Needs root, perfdhcp, dnsmasq. Only namespaces and PIDs made here are
# touched.
set -u

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../build}
BIN=${RACKBOOTD:-$RB_BUILD/pxe/rackbootd}
SECS=${1:-10}
shift 2>/dev/null
RATES=${*:-250 500 1000 3000 6000 9000 12000 16000 20000 25000 30000}
CLIENTS=${CLIENTS:-1000}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
[ -x "$BIN" ] || { echo "SKIP: $BIN not built"; exit 77; }
for t in perfdhcp dnsmasq ip; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done

S=rbt-dhcpb-s$$ C=rbt-dhcpb-c$$
TMP=$(mktemp -d /tmp/rbt-dhcpbench.XXXXXX)
PID=
cleanup() {
	[ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
	ip netns del "$S" 2>/dev/null
	ip netns del "$C" 2>/dev/null
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ip netns add "$S" && ip netns add "$C" || exit 1
ip -n "$S" link set lo up
ip -n "$C" link set lo up
ip link add v0 netns "$S" type veth peer name v1 netns "$C"
ip -n "$S" addr add 10.88.0.1/16 dev v0
ip -n "$C" addr add 10.88.0.2/16 dev v1
ip -n "$S" link set v0 up
ip -n "$C" link set v1 up

VENDOR=$(printf 'PXEClient:Arch:00000:UNDI:002001' | od -An -tx1 | tr -d ' \n')
mkdir -p "$TMP/root"
cat >"$TMP/full.conf" <<EOF
interface = "v0"
state_dir = "$TMP/state"
user = ""
tftp { enable = false }
http { port = 18$(($$ % 900 + 100)) boot_root = "$TMP/root" repo_root = "$TMP/root" }
dhcp {
	mode = "full"
	pool_start = "10.88.0.10"
	pool_end = "10.88.255.250"
	netmask = "255.255.0.0"
	lease_time = 3600
}
EOF
sed 's/mode = "full"/mode = "proxy"/' "$TMP/full.conf" >"$TMP/proxy.conf"

wait_udp67() {
	for _ in $(seq 100); do
		ip netns exec "$S" ss -Hlun 'sport = :67' | grep -q . && return 0
		sleep 0.1
	done
	echo "server did not start"
	exit 1
}

start() { # start NAME
	rm -rf "$TMP/state" "$TMP/dnsmasq.leases"
	case $1 in
	rackbootd-full) ip netns exec "$S" "$BIN" -c "$TMP/full.conf" >"$TMP/srv.log" 2>&1 & ;;
	rackbootd-proxy) ip netns exec "$S" "$BIN" -c "$TMP/proxy.conf" >"$TMP/srv.log" 2>&1 & ;;
	dnsmasq-full)
		ip netns exec "$S" dnsmasq --no-daemon --quiet-dhcp --port=0 --conf-file=/dev/null \
			--interface=v0 --bind-interfaces --no-ping --dhcp-lease-max=100000 \
			--dhcp-range=10.88.0.10,10.88.255.250,255.255.0.0,1h \
			--dhcp-leasefile="$TMP/dnsmasq.leases" --pid-file="$TMP/dnsmasq.pid" \
			--dhcp-authoritative >"$TMP/srv.log" 2>&1 &
		;;
	dnsmasq-proxy)
		ip netns exec "$S" dnsmasq --no-daemon --quiet-dhcp --port=0 --conf-file=/dev/null \
			--interface=v0 --bind-interfaces --dhcp-range=10.88.0.0,proxy \
			--pxe-service=x86PC,"rackboot",undionly --pid-file="$TMP/dnsmasq.pid" \
			--dhcp-leasefile="$TMP/dnsmasq.leases" >"$TMP/srv.log" 2>&1 &
		;;
	esac
	PID=$!
	wait_udp67
}
stop() {
	kill "$PID"
	wait "$PID" 2>/dev/null
	PID=
}

# cpu_ms PID: user+system CPU time of a process (all its threads) in ms
cpu_ms() {
	awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"
}

# rcvbuf_errors: UDP datagrams the server namespace's kernel dropped because
# the server's socket queue was full (the server fell behind)
rcvbuf_errors() { # rcvbuf_errors NETNS
	ip netns exec "$1" awk '/^Udp:/ { if (h) { print $6; exit } h = 1 }' /proc/net/snmp
}

# run NAME RATE: prints the loss in percent (two decimals), the 99th
# percentile answer delay (ms, perfdhcp -x t) and the server's
# CPU time per 1000 answers (ms): a figure that does not depend on how busy
# the shared machine was, unlike the loss.
run() {
	local args=(-x t -4 -l v1 -r "$2" -p "$SECS")
	# CLIENTS=0: perfdhcp's default client addressing (the notes' recipe)
	[ "$CLIENTS" = 0 ] || args+=(-R "$CLIENTS")
	case $1 in
	*proxy) args+=(-i -o "60,$VENDOR" -o 93,0000) ;;
	esac
	local c0 c1 q0 q1 k0 k1
	c0=$(cpu_ms "$PID")
	q0=$(rcvbuf_errors "$S")
	k0=$(rcvbuf_errors "$C")
	ip netns exec "$C" perfdhcp "${args[@]}" 10.88.0.1 >"$TMP/perf.out" 2>&1
	c1=$(cpu_ms "$PID")
	q1=$(rcvbuf_errors "$S")
	k1=$(rcvbuf_errors "$C")
	awk -v cpu=$((c1 - c0)) -v q=$((q1 - q0)) -v k=$((k1 - k0)) '/^sent packets:/ { s += $3 } /^drops:/ { d += $2 }
	     /^received packets:/ { r += $3 }
	     END { if (s == 0) printf "100.00 100.00 n/a %d %d\n", q, k; else {
	           sl = d - k; if (sl < 0) sl = 0
	           printf "%.2f %.2f %s %d %d %s\n", 100 * d / s, 100 * sl / s,
	           r ? sprintf("%.1f", cpu * 1000 / r) : "n/a", q, k, p99 } }' p99="$(p99_ms "$TMP/perf.out")" "$TMP/perf.out"
}

# p99_ms FILE: the 99th percentile of the answer delay (ms) of perfdhcp -x t
# ("sent / received: S.US / S.US" for every exchange answered), n/a if none
p99_ms() {
	awk '/^sent \/ received:/ { printf "%.3f\n", ($6 - $4) * 1000 }' "$1" | sort -g |
		awk '{ t[NR] = $1 } END { i = int(NR * 0.99); if (i < 1) i = 1; if (NR) printf "%.2f", t[i]; else print "n/a" }'
}

declare -A BEST SAT P99
# loss%: perfdhcp's drops / sent. client-drop: answers perfdhcp's own
# socket dropped (on 2 cores the load generator falls behind first; those
# answers were sent). srv-loss%: (drops - client-drop) / sent, the loss the
# server is responsible for; the best rate is judged on it. queue-drop:
# requests the server's socket dropped because it fell behind.
printf '%-16s %8s %8s %10s %12s %10s %11s %8s\n' server rate/s loss% srv-loss% cpu-ms/1000 queue-drop client-drop p99-ms
for name in ${SERVERS:-dnsmasq-full rackbootd-full dnsmasq-proxy rackbootd-proxy}; do
	BEST[$name]=0
	for rate in $RATES; do
		start "$name"
		read -r rawloss loss cpu qdrop cdrop p99 < <(run "$name" "$rate")
		stop
		printf '%-16s %8s %8s %10s %12s %10s %11s %8s\n' "$name" "$rate" "$rawloss" "$loss" "$cpu" "$qdrop" "$cdrop" "$p99"
		P99["$name $rate"]=$p99
		if awk -v l="$loss" 'BEGIN { exit !(l < 1) }'; then
			BEST[$name]=$rate
		fi
		# The load generator itself dropping >1% of answers: rates from
		# here on measure perfdhcp, not the server.
		if [ -z "${SAT[$name]:-}" ] && [ "$qdrop" = 0 ] &&
			awk -v c="$cdrop" -v r="$rate" -v t="$SECS" 'BEGIN { exit !(c > 0.01 * r * t) }'; then
			SAT[$name]=$rate
		fi
		awk -v l="$loss" 'BEGIN { exit !(l > 10) }' && break
	done
done

echo
clients="$CLIENTS clients"
[ "$CLIENTS" = 0 ] && clients="perfdhcp's default client addressing"
echo "highest rate with < 1% server loss (DISCOVERs/s; full = DORA from $clients, proxy = DO):"
for mode in full proxy; do
	[ -n "${BEST[dnsmasq-$mode]:-}" ] && [ -n "${BEST[rackbootd-$mode]:-}" ] || continue
	d=${BEST[dnsmasq-$mode]} r=${BEST[rackbootd-$mode]}
	ratio=$(awk -v r="$r" -v d="$d" 'BEGIN { if (d > 0) printf "%.2f", r / d; else print "n/a" }')
	printf '  %-6s dnsmasq %6s (p99 %s ms)   rackbootd %6s (p99 %s ms)   ratio %s\n' "$mode" "$d" \
		"${P99["dnsmasq-$mode $d"]:-n/a}" "$r" "${P99["rackbootd-$mode $r"]:-n/a}" "$ratio"
	for n in dnsmasq-$mode rackbootd-$mode; do
		[ -z "${SAT[$n]:-}" ] || printf '         %s: load generator saturated from %s/s: its best rate is a lower bound\n' "$n" "${SAT[$n]}"
	done
done
