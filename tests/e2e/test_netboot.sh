#!/bin/bash
# End to end: a QEMU node network-boots from rackbootd alone (no dnsmasq,
# no other HTTP server) inside a network namespace made here, into a test
# initramfs whose init prints a marker on the serial console.
#   test_netboot.sh FIRMWARE MODE [SCENARIO] [--keep]
#   FIRMWARE: bios | uefi | uefi-edk2      MODE: full | proxy
#   SCENARIO: discovery (default): an unknown node boots the discovery
#             kernel; localboot: a node the registry has as "ready" gets
#             the local-boot script and must really start its disk;
#             brokenboot: the discovery kernel is missing from the boot
#             root, and the node must give up and reboot, never hang;
#             httpboot: UEFI HTTP Boot (uefi-edk2 only): no TFTP boot file
#             is configured for UEFI PXE, so EDK2 falls through to HTTP
#             Boot ("HTTPClient") and fetches ipxe.efi by URL (slow: the
#             firmware's PXE timeouts come first).
# In proxy mode a separate plain DHCP server (dnsmasq, PXE off) in its own
# namespace hands out the address; rackbootd only adds the boot answer.
# Asserts: the marker with this node's MAC in the kernel command line (so
# the per-node iPXE script booted it), the firmware kind, and the registry
# events for the MAC in rackbootd's API.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
fw=${1:?firmware}
mode=${2:?mode}
scenario=discovery
keep=""
for a in "${@:3}"; do
	case $a in
	--keep) keep=--keep ;;
	discovery|localboot|brokenboot|httpboot) scenario=$a ;;
	*) echo "unknown argument $a"; exit 2 ;;
	esac
done
build=${RB_BUILD:-$here/../../build}
e2e_need

work=$(mktemp -d /tmp/rb-e2e-$fw-$mode.XXXXXX)
chmod 755 "$work"
ns=rbe2e$$
site=rbsite$$
cleanup() {
	e2e_cleanup
	if [ "$keep" = --keep ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

case $fw in
bios) mac=52:54:00:e2:00:01 ;;
uefi) mac=52:54:00:e2:00:02 ;;
uefi-edk2) mac=52:54:00:e2:00:03 ;;
*) echo "unknown firmware $fw"; exit 2 ;;
esac

e2e_netns "$ns"
e2e_tap "$ns" tap0
e2e_roots "$work/root"
mkdir -p "$work/state"

if [ "$mode" = proxy ]; then
	# The site's DHCP server, on its own host: hands out addresses, knows
	# nothing of PXE.
	ip netns add "$site"
	E2E_NETNS="$E2E_NETNS $site"
	ip link add vsite netns "$site" type veth peer name vsite0 netns "$ns"
	ip -n "$ns" link set vsite0 master br0
	ip -n "$ns" link set vsite0 up
	ip -n "$site" link set lo up
	ip -n "$site" addr add 10.77.0.2/24 dev vsite
	ip -n "$site" link set vsite up
	ip netns exec "$site" dnsmasq --no-daemon --port=0 --interface=vsite --bind-interfaces \
		--dhcp-range=10.77.0.100,10.77.0.150,1h --dhcp-leasefile="$work/site.leases" \
		--no-resolv --no-hosts --no-ping --log-dhcp >"$work/site-dhcp.log" 2>&1 &
	E2E_PIDS="$E2E_PIDS $!"
	dhcp="mode = \"proxy\""
else
	dhcp="mode = \"full\" pool_start = \"10.77.0.100\" pool_end = \"10.77.0.150\""
fi

bootcfg=""
[ "$scenario" = httpboot ] && bootcfg='boot { uefi_x64 = "" }'
cat >"$work/rackbootd.conf" <<EOC
user = "nobody"
state_dir = "$work/state"
interface = "br0"
dhcp { $dhcp }
$bootcfg
tftp { root = "$work/root/tftp" }
http { port = 8080 boot_root = "$work/root/boot" repo_root = "$work/root/repo" }
discovery { kernel = "vmlinuz" initrd = "initrd.img" cmdline = "console=ttyS0 panic=-1 quiet" }
EOC
e2e_rackbootd "$ns" "$build/pxe/rackbootd" "$work/rackbootd.conf" "$work/rackbootd.log"
rbpid=$E2E_RACKBOOTD_PID

if [ "$scenario" = localboot ]; then
	# What the operator API will do: mark the node installed.
	python3 - "$work/state/registry.db" "$mac" <<'EOP'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], timeout=10)
now = int(time.time())
db.execute("INSERT INTO nodes(mac, first_seen, last_seen, state) VALUES(?, ?, ?, 'ready') "
           "ON CONFLICT(mac) DO UPDATE SET state = 'ready'", (sys.argv[2], now, now))
db.commit()
EOP
	e2e_marker_disk "$work/disk.raw"
	start=$(date +%s)
	e2e_qemu "$ns" tap0 "$mac" "$fw" "$work/serial.log" \
		-drive "file=$work/disk.raw,format=raw,if=virtio"
	qpid=$E2E_LAST_PID
	if ! e2e_wait_for "$work/serial.log" "RACKBOOT-LOCALDISK-MARKER" 600 "$qpid"; then
		echo "FAIL: $fw/$mode node did not start its local disk"
		echo "--- serial (tail)"; tail -c 3000 "$work/serial.log" | tr -d '\033' || true
		echo "--- rackbootd (tail)"; tail -n 40 "$work/rackbootd.log"
		exit 1
	fi
	echo "$fw/$mode: left the network boot for the local disk in $(($(date +%s) - start))s"
	api=$(ip netns exec "$ns" curl -sf -H "$E2E_OPAUTH" "http://10.77.0.1:8080/api/v1/nodes/$mac")
	echo "API: $api" | head -c 1500; echo
	echo "$api" | grep -q '"detail": *"localboot.ipxe"' || { echo "FAIL: no localboot.ipxe script event"; exit 1; }
	! grep -qa "RACKBOOT-E2E-MARKER" "$work/serial.log" || { echo "FAIL: the installed node booted the network kernel"; exit 1; }
	exit 0
fi

if [ "$scenario" = brokenboot ]; then
	rm "$work/root/boot/vmlinuz"
	start=$(date +%s)
	e2e_qemu "$ns" tap0 "$mac" "$fw" "$work/serial.log"
	qpid=$E2E_LAST_PID
	# QEMU runs with -no-reboot: the script's final "reboot" ends it.
	for _ in $(seq 1 300); do kill -0 "$qpid" 2>/dev/null || break; sleep 1; done
	if kill -0 "$qpid" 2>/dev/null; then
		echo "FAIL: node still in the firmware/iPXE after 300 s with a broken boot"
		tail -c 2000 "$work/serial.log" | tr -d '\033'
		exit 1
	fi
	echo "$fw/$mode: broken boot ended in a reboot after $(($(date +%s) - start))s"
	n=$(grep -c 'GET /boot/vmlinuz' "$work/rackbootd.log" || true)
	echo "kernel requests seen: $n"
	# The discovery script retries a bounded number of times (5), then reboots.
	[ "$n" -eq 5 ] || { echo "FAIL: expected 5 bounded attempts, saw $n"; exit 1; }
	! grep -qa "RACKBOOT-E2E-MARKER" "$work/serial.log" || { echo "FAIL: booted without a kernel?"; exit 1; }
	exit 0
fi

start=$(date +%s)
e2e_qemu "$ns" tap0 "$mac" "$fw" "$work/serial.log"
qpid=$E2E_LAST_PID
# EDK2's own PXE first tries IPv4, and the whole chain runs under TCG.
if ! e2e_wait_for "$work/serial.log" "RACKBOOT-E2E-MARKER firmware" 600 "$qpid"; then
	echo "FAIL: $fw/$mode node did not boot to the marker"
	echo "--- serial (tail)"; tail -c 3000 "$work/serial.log" | tr -d '\033' || true
	echo "--- rackbootd (tail)"; tail -n 60 "$work/rackbootd.log"
	[ "$mode" = proxy ] && { echo "--- site dhcp"; tail -n 20 "$work/site-dhcp.log"; }
	exit 1
fi
elapsed=$(($(date +%s) - start))
fail=0
grep -a "RACKBOOT-E2E-MARKER" "$work/serial.log"
grep -qa "RACKBOOT-E2E-MARKER cmdline:.*rackboot.mac=$mac" "$work/serial.log" ||
	{ echo "FAIL: kernel command line does not carry rackboot.mac=$mac"; fail=1; }
want_fw=bios
[ "$fw" = bios ] || want_fw=uefi
grep -qa "RACKBOOT-E2E-MARKER firmware: $want_fw" "$work/serial.log" ||
	{ echo "FAIL: booted firmware is not $want_fw"; fail=1; }

# The registry saw every boot step of this MAC.
api=$(ip netns exec "$ns" curl -sf -H "$E2E_OPAUTH" "http://10.77.0.1:8080/api/v1/nodes/$mac") ||
	{ echo "FAIL: API has no node $mac"; fail=1; api=""; }
echo "API: $api" | head -c 2000; echo
for ev in "\(dhcp\|proxy\)\." http.script "http.file.*\"vmlinuz" "http.file.*\"initrd.img"; do
	echo "$api" | grep -q "\"event\": *\"$ev" || { echo "FAIL: no $ev event for $mac"; fail=1; }
done
# QEMU's iPXE NIC ROMs are iPXE already (user class "iPXE" in their first
# DISCOVER) and go straight to the script; EDK2's own PXE client fetches
# snponly.efi by TFTP first, asking for RFC 7440 windowsize.
if [ "$scenario" = httpboot ]; then
	echo "$api" | grep -q '"detail": *"http://10.77.0.1:8080/boot/ipxe.efi"' ||
		{ echo "FAIL: no HTTP boot URL answer for $mac"; fail=1; }
	echo "$api" | grep -q '"event": *"http.file", *"detail": *"ipxe.efi' ||
		{ echo "FAIL: ipxe.efi was not fetched over HTTP"; fail=1; }
	! echo "$api" | grep -q '"event": *"tftp' || { echo "FAIL: HTTP boot used TFTP"; fail=1; }
elif [ "$fw" = uefi-edk2 ]; then
	echo "$api" | grep -q '"event": *"tftp.done"' || { echo "FAIL: no tftp.done event for $mac"; fail=1; }
fi
if [ "$mode" = proxy ]; then
	# rackbootd handed out no address: the node's lease came from the site server.
	grep -qi "$mac" "$work/site.leases" || { echo "FAIL: site DHCP server gave no lease to $mac"; fail=1; }
	[ ! -s "$work/state/dhcp.leases" ] || ! grep -qi "$mac" "$work/state/dhcp.leases" ||
		{ echo "FAIL: rackbootd leased an address in proxy mode"; fail=1; }
fi
# rackbootd is still up and dropped root.
kill -0 "$rbpid" || { echo "FAIL: rackbootd died"; fail=1; }
uid=$(awk '/^Uid:/ {print $3}' "/proc/$rbpid/status" 2>/dev/null || echo "?")
[ "$uid" != 0 ] || { echo "FAIL: rackbootd still runs as root"; fail=1; }
echo "$fw/$mode: booted to the marker in ${elapsed}s"
exit $fail
