#!/bin/bash
# rackbootd's DHCP server against real clients nobody here wrote: busybox
# udhcpc and perfdhcp, with dnsmasq as the site's DHCP server in proxy mode.
#
# Topology (namespaces made here, removed on exit): a bridge br0 in the
# server namespace (10.89.0.1, rackbootd bound to it) with two veth ports:
# one to the client namespace (udhcpc, perfdhcp) and one to a "site"
# namespace (dnsmasq at 10.89.0.3, proxy part only).
#
# (a) full mode: udhcpc gets an address from the pool with router/dns/domain;
#     a PXE udhcpc gets the boot file and next-server; a reserved MAC gets its
#     address and hostname; the lease file is written; after a restart a new
#     client does not get the first client's address and the first client
#     gets its address back; a perfdhcp run loses nothing.
# (b) proxy mode beside dnsmasq: a plain udhcpc gets its address from dnsmasq
#     and nothing from rackbootd; udhcpc -V PXEClient:... gets the boot file
#     and next-server from rackbootd.
# Needs root, busybox, dnsmasq, perfdhcp; exit 77 without them.
set -u

. "$(dirname "$0")/lib.sh"
BIN=${RACKBOOTD:-$RB_SRV}
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (network namespaces)"; exit 77; }
rb_need_cmd ip busybox dnsmasq perfdhcp
rb_need_bin "$BIN"

S=rbt-dhcp-s$$ C=rbt-dhcp-c$$ D=rbt-dhcp-d$$
rb_setup dhcp
TMP=$RB_TMP
DNSMASQ_PID=

cleanup() {
	rb_kill_server # before its namespace goes
	[ -n "$DNSMASQ_PID" ] && kill "$DNSMASQ_PID" 2>/dev/null && wait "$DNSMASQ_PID" 2>/dev/null
	ip netns del "$S" 2>/dev/null
	ip netns del "$C" 2>/dev/null
	ip netns del "$D" 2>/dev/null
}
RB_ON_EXIT=cleanup

ip netns add "$S" && ip netns add "$C" && ip netns add "$D" || exit 1
for n in "$S" "$C" "$D"; do ip -n "$n" link set lo up; done
ip -n "$S" link add br0 type bridge
ip -n "$S" addr add 10.89.0.1/24 dev br0
ip -n "$S" link set br0 up
ip link add vc netns "$S" type veth peer name v1 netns "$C"
ip link add vd netns "$S" type veth peer name v1 netns "$D"
for p in vc vd; do
	ip -n "$S" link set "$p" master br0
	ip -n "$S" link set "$p" up
done
ip -n "$C" link set v1 up
ip -n "$D" addr add 10.89.0.3/24 dev v1
ip -n "$D" link set v1 up

# udhcpc's script: one line per event with what udhcpc exports
cat >"$TMP/script.sh" <<EOF
#!/bin/sh
echo "\$1 ip=\$ip siaddr=\$siaddr boot_file=\$boot_file serverid=\$serverid hostname=\$hostname router=\$router dns=\$dns domain=\$domain" >>"$TMP/udhcpc.out"
EOF
chmod +x "$TMP/script.sh"

# udhcpc MAC [udhcpc args...]: runs a client with that MAC, prints the
# "bound" line (empty if it got no lease)
udhcpc() {
	local mac=$1
	shift
	ip -n "$C" link set v1 down
	ip -n "$C" link set v1 address "$mac"
	ip -n "$C" link set v1 up
	: >"$TMP/udhcpc.out"
	ip netns exec "$C" timeout 30 busybox udhcpc -i v1 -n -q -f -t 4 -T 2 \
		-s "$TMP/script.sh" "$@" >>"$TMP/udhcpc.log" 2>&1
	grep '^bound ' "$TMP/udhcpc.out" | tail -1
}
field() { # field LINE NAME
	printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"
}

udp67() { ip netns exec "$S" ss -Hlun 'sport = :67' | grep -q .; }
start_server() { # start_server CONF: ready when it listens on UDP 67 in the namespace
	ip netns exec "$S" "$BIN" -c "$1" -v >>"$RB_LOG" 2>&1 &
	RB_PID=$! # ip netns exec execs rackbootd: the same PID
	RB_START_TIMEOUT_S=5 rb_wait_server udp67
}
stop_server() { # SIGTERM: exit 0 and no sanitizer report
	local rc=0
	rb_stop_server "$RB_PID" "$RB_LOG" || rc=1
	RB_PID=
	return $rc
}

mkdir -p "$TMP/root"
common="state_dir = \"$TMP/state\"
user = \"\"
interface = \"br0\"
tftp { enable = false }
http { port = 18$(($$ % 900 + 100)) boot_root = \"$TMP/root\" repo_root = \"$TMP/root\" }
boot { bios = \"undionly.kpxe\" }"

echo "== (a) full DHCP"
cat >"$TMP/full.conf" <<EOF
$common
dhcp {
	mode = "full"
	pool_start = "10.89.0.100"
	pool_end = "10.89.0.250"
	netmask = "255.255.255.0"
	router = "10.89.0.1"
	dns = { "10.89.0.53" }
	domain = "rack.test"
	lease_time = 600
	host "52:54:00:aa:bb:02" {
		address = "10.89.0.42"
		hostname = "node42"
	}
}
EOF
start_server "$TMP/full.conf"

l1=$(udhcpc 52:54:00:aa:bb:01)
ip1=$(field "$l1" ip)
check "plain udhcpc gets a pool address ($ip1)" \
	sh -c "echo '$ip1' | grep -Eq '^10\.89\.0\.(1[0-9][0-9]|2[0-4][0-9]|250)$'"
check "with router, dns, domain, server id" \
	[ "$(field "$l1" router)" = 10.89.0.1 -a "$(field "$l1" dns)" = 10.89.0.53 \
	-a "$(field "$l1" domain)" = rack.test -a "$(field "$l1" serverid)" = 10.89.0.1 ]
check "and no boot file for a non-PXE client" [ -z "$(field "$l1" boot_file)" ]

l1p=$(udhcpc 52:54:00:aa:bb:01 -V PXEClient:Arch:00000:UNDI:002001)
check "PXE udhcpc (same MAC) keeps its address" [ "$(field "$l1p" ip)" = "$ip1" ]
check "and gets boot file undionly.kpxe from next-server 10.89.0.1" \
	[ "$(field "$l1p" boot_file)" = undionly.kpxe -a "$(field "$l1p" siaddr)" = 10.89.0.1 ]

l2=$(udhcpc 52:54:00:aa:bb:02)
check "reserved MAC gets its reserved address and hostname" \
	[ "$(field "$l2" ip)" = 10.89.0.42 -a "$(field "$l2" hostname)" = node42 ]

sleep 0.5 # leases are written within 200 ms of an ACK
check "lease file has both leases" \
	sh -c "grep -q '^52:54:00:aa:bb:01 $ip1 ' '$TMP/state/dhcp.leases' &&
	       grep -q '^52:54:00:aa:bb:02 10.89.0.42 ' '$TMP/state/dhcp.leases'"
check "server exits cleanly on SIGTERM" stop_server

start_server "$TMP/full.conf"
l3=$(udhcpc 52:54:00:aa:bb:03)
ip3=$(field "$l3" ip)
check "after restart a new client gets another address ($ip3, not $ip1)" \
	[ -n "$ip3" -a "$ip3" != "$ip1" ]
l1r=$(udhcpc 52:54:00:aa:bb:01)
check "after restart the first client gets $ip1 back" [ "$(field "$l1r" ip)" = "$ip1" ]

# perfdhcp is a relay (giaddr = its address, port 67): 100 clients, 3 s
ip -n "$C" addr add 10.89.0.2/24 dev v1
ip netns exec "$C" perfdhcp -4 -l v1 -r 100 -p 3 -R 100 10.89.0.1 >"$TMP/perfdhcp.out" 2>&1
prc=$?
drops=$(sed -n 's/^drops: *\([0-9]*\).*/\1/p' "$TMP/perfdhcp.out" | tr '\n' ' ')
sent=$(sed -n 's/^sent packets: *\([0-9]*\).*/\1/p' "$TMP/perfdhcp.out" | head -1)
check "perfdhcp: $sent DISCOVERs, drops per exchange: $drops" \
	sh -c "[ $prc -eq 0 ] && [ '${sent:-0}' -gt 200 ] && [ -n '$drops' ] &&
	       [ -z \"\$(echo '$drops' | tr -d ' 0')\" ]"
ip -n "$C" addr flush dev v1
check "server exits cleanly after perfdhcp" stop_server

echo "== (b) proxyDHCP beside dnsmasq"
ip netns exec "$D" dnsmasq --no-daemon --port=0 --conf-file=/dev/null --interface=v1 \
	--bind-interfaces --dhcp-range=10.89.0.160,10.89.0.200,255.255.255.0,10m \
	--dhcp-leasefile="$TMP/dnsmasq.leases" --pid-file="$TMP/dnsmasq.pid" \
	>"$TMP/dnsmasq.log" 2>&1 &
DNSMASQ_PID=$!
cat >"$TMP/proxy.conf" <<EOF
$common
dhcp { mode = "proxy" }
EOF
: >"$TMP/rackbootd.log"
rm -f "$TMP/state/dhcp.leases"
start_server "$TMP/proxy.conf"

l4=$(udhcpc 52:54:00:aa:bb:04)
check "plain udhcpc gets its address from dnsmasq ($(field "$l4" ip))" \
	[ "$(field "$l4" serverid)" = 10.89.0.3 -a -n "$(field "$l4" ip)" ]
check "and no boot file" [ -z "$(field "$l4" boot_file)" ]
check "rackbootd answered nothing to it" \
	sh -c "! grep -q '52:54:00:aa:bb:04' '$TMP/rackbootd.log'"

l5=$(udhcpc 52:54:00:aa:bb:05 -V PXEClient:Arch:00000:UNDI:002001)
check "udhcpc -V PXEClient gets boot file undionly.kpxe from next-server 10.89.0.1" \
	[ "$(field "$l5" boot_file)" = undionly.kpxe -a "$(field "$l5" siaddr)" = 10.89.0.1 ]
check "rackbootd sent a proxy offer (never an address: yiaddr 0)" \
	sh -c "grep -q 'proxy.offer 52:54:00:aa:bb:05 ip -' '$TMP/rackbootd.log'"
check "no lease file in proxy mode" [ ! -e "$TMP/state/dhcp.leases" ]
check "server exits cleanly" stop_server

if [ "$RB_FAILS" -gt 0 ]; then
	tail -10 "$TMP/udhcpc.log"
	cat "$TMP/perfdhcp.out" 2>/dev/null
fi
rb_finish
