#!/bin/bash
# Overload: rackbootd sheds load instead of crashing or stalling. One real
# rackbootd on 127.0.0.1 (free high ports) with small limits:
#   http { max_conns = 16, idle_timeout_s = 3 }  (503 above 16 open
#          connections, closed at once above 16 + 16, idle ones cut at 3 s)
#   tftp { max_transfers = 6 }
#   dhcp { mode = "proxy" } on a high port
# Checked (the python driver below is the hostile side; curl and atftp are
# the well-behaved clients):
#  HTTP - 16 slowloris connections (a partial request line, then nothing)
#         fill max_conns; 8 more that send a whole request each get 503
#         with Retry-After within 2 s; connections past the hard limit are
#         closed within 2 s without an answer (not left in the backlog);
#         every slowloris connection is cut by the idle timeout (3 s, within
#         8 s); then curl downloads a file byte-identical within 10 s of
#         the flood's start; a client that drips a header byte every
#         0.5 s (never silent for the idle timeout) is cut by
#         header_timeout_s = 4 within 7 s, while a well-behaved request
#         on a new connection meanwhile gets 200;
#  TFTP - 6 transfers in flight (a slow but correct client ACKing every
#         30 ms), 10 more RRQs each get an ERROR packet (code 0, "busy"),
#         not silence, within 2 s; the 6 complete byte-identical; then
#         atftp fetches the file byte-identical;
#  DHCP - a flood of PXE DISCOVERs from 4 sockets for 4 s: meanwhile atftp
#         and curl each fetch a file byte-identical within 5 s; DHCP itself
#         answers before and after the flood;
#  and rackbootd is alive at the end, its peak RSS (VmHWM) printed and
#  under 200 MiB.
# Kills only the PIDs it started.
set -u

. "$(dirname "$0")/lib.sh"
DAEMON=$RB_SRV
rb_need_bin "$DAEMON"
rb_need_cmd atftp curl python3 cmp

rb_setup overload
TMP=$RB_TMP

read -r TPORT HPORT DPORT < <(rb_free_ports udp tcp udp)

mkdir -p "$TMP/tftp" "$TMP/boot" "$TMP/repo" "$TMP/state" "$TMP/out"
head -c 65536 /dev/urandom >"$TMP/tftp/f64k"
head -c $((1024 * 1024)) /dev/urandom >"$TMP/boot/f1m"
cat >"$TMP/rackbootd.conf" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
log_level = "info"
dhcp {
	mode = "proxy"
	port = $DPORT
	proxy_port = 0
}
tftp {
	port = $TPORT
	root = "$TMP/tftp"
	timeout_ms = 1000
	retries = 5
	max_transfers = 6
}
http {
	port = $HPORT
	boot_root = "$TMP/boot"
	repo_root = "$TMP/repo"
	threads = 2
	max_conns = 16
	idle_timeout_s = 3
	header_timeout_s = 4
}
EOF
B=http://127.0.0.1:$HPORT
RB_START_TIMEOUT_S=20 rb_start_server "$B/boot/f1m" "$DAEMON" -c "$TMP/rackbootd.conf"

# fetch_ok WHAT SECONDS: curl and atftp each get a file byte-identical in time
fetch_ok() {
	local what=$1 bound=$2 t0 dt
	t0=$(date +%s%N)
	rm -f "$TMP/out/c" "$TMP/out/a"
	curl -s -m "$bound" -o "$TMP/out/c" "$B/boot/f1m"
	dt=$((($(date +%s%N) - t0) / 1000000))
	if cmp -s "$TMP/boot/f1m" "$TMP/out/c" && [ "$dt" -le $((bound * 1000)) ]; then
		pass "$what: curl got 1 MiB byte-identical in ${dt} ms"
	else
		fail "$what: curl did not get the file within ${bound} s (${dt} ms)"
	fi
	t0=$(date +%s%N)
	timeout "$bound" atftp -g -r f64k -l "$TMP/out/a" 127.0.0.1 "$TPORT" >/dev/null 2>&1
	dt=$((($(date +%s%N) - t0) / 1000000))
	if cmp -s "$TMP/tftp/f64k" "$TMP/out/a" && [ "$dt" -le $((bound * 1000)) ]; then
		pass "$what: atftp got 64 KiB byte-identical in ${dt} ms"
	else
		fail "$what: atftp did not get the file within ${bound} s (${dt} ms)"
	fi
}

run_driver() { # run_driver PART: the python driver's lines become checks
	python3 - "$1" "$HPORT" "$TPORT" "$DPORT" "$TMP" >"$TMP/driver.$1" 2>&1 <<'PY'
import os, socket, struct, sys, threading, time, urllib.request
part, hport, tport, dport, tmp = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
SOFT, HARD, IDLE = 16, 32, 3

def ok(cond, what):
    print(("ok " if cond else "FAIL ") + what, flush=True)

def status_of(s, bound):
    """First bytes of an answer: ('status', code) / ('closed', None) / ('silent', None)."""
    s.settimeout(bound)
    try:
        d = s.recv(4096)
    except socket.timeout:
        return "silent", b""
    except ConnectionResetError:
        return "closed", b""
    if not d:
        return "closed", b""
    return d.split(b" ", 2)[1].decode(), d

if part == "http":
    t_start = time.monotonic()
    slow = []
    for i in range(SOFT):
        s = socket.create_connection(("127.0.0.1", hport))
        s.sendall(b"GET /boot/f1m HTTP/1.1\r\nHo")
        slow.append(s)
    time.sleep(0.5)
    codes, worst, retry = [], 0.0, True
    extra = []
    for i in range(8):
        t = time.monotonic()
        s = socket.create_connection(("127.0.0.1", hport))
        s.sendall(b"GET /boot/f1m HTTP/1.1\r\nHost: x\r\n\r\n")
        st, d = status_of(s, 5)
        worst = max(worst, time.monotonic() - t)
        codes.append(st)
        retry = retry and b"Retry-After:" in d
        extra.append(s)
    ok(codes == ["503"] * 8 and worst < 2 and retry,
       "HTTP: 8 requests beyond max_conns=%d: %s, Retry-After, slowest %.2f s" % (SOFT, codes, worst))
    # Fill up to the hard limit with idle connections, then one more.
    for s in extra:
        s.close()
    time.sleep(0.3)
    for i in range(HARD - SOFT):
        s = socket.create_connection(("127.0.0.1", hport))
        slow.append(s)
    time.sleep(0.3)
    t = time.monotonic()
    s = socket.create_connection(("127.0.0.1", hport))
    try:
        s.sendall(b"GET /boot/f1m HTTP/1.1\r\nHost: x\r\n\r\n")
    except OSError:
        pass
    st, d = status_of(s, 5)
    dt = time.monotonic() - t
    ok(st in ("closed", "503") and dt < 2,
       "HTTP: a connection beyond the hard limit (%d) is closed (or 503) at once: %s in %.2f s" %
       (HARD, st, dt))
    s.close()
    # Every slow connection is cut by the idle timeout.
    deadline = time.monotonic() + IDLE + 5
    cut = 0
    for c in slow:
        st, d = status_of(c, max(0.1, deadline - time.monotonic()))
        if st != "silent":
            cut += 1
        c.close()
    dt = time.monotonic() - t_start
    ok(cut == len(slow), "HTTP: %d of %d slow/idle connections cut by the idle timeout (%d s), "
       "all by %.1f s" % (cut, len(slow), IDLE, dt))
    print("info flood_start_age %.1f" % (time.monotonic() - t_start))
    # Slowloris that drips: one header byte every 0.5 s is never silent
    # for the idle timeout (3 s); the header deadline (4 s) cuts it.
    time.sleep(1)
    s = socket.create_connection(("127.0.0.1", hport))
    s.sendall(b"GET /boot/f1m HTTP/1.1\r\nHost: x\r\n")
    t, cut_at, good = time.monotonic(), None, None
    for b in (b"X-Drip: " + b"a" * 40):
        try:
            s.sendall(bytes([b]))
            d = s.recv(4096, socket.MSG_DONTWAIT)
            if d == b"":
                cut_at = time.monotonic() - t
                break
        except BlockingIOError:
            pass
        except OSError:
            cut_at = time.monotonic() - t
            break
        if good is None and time.monotonic() - t > 1:
            g = socket.create_connection(("127.0.0.1", hport))
            g.sendall(b"HEAD /boot/f1m HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            good, _ = status_of(g, 3)
            g.close()
        time.sleep(0.5)
    s.close()
    ok(cut_at is not None and 3.5 <= cut_at < 7 and good == "200",
       "HTTP: a client dripping a header byte every 0.5 s is cut by header_timeout_s=4 "
       "after %s s (a request meanwhile: %s)" % ("%.1f" % cut_at if cut_at else "never", good))
    body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % hport, timeout=5).read()
    line = [l for l in body.decode(errors="replace").splitlines()
            if l.startswith("rackboot_http_header_timeouts_total ")]
    ok(line and int(line[0].split()[1]) >= 1,
       "HTTP: /metrics counts the cut: %s" % (line[0] if line else "no such metric"))

elif part == "tftp":
    data = open(os.path.join(tmp, "tftp", "f64k"), "rb").read()
    results = {}

    def slow_client(i, started):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(5)
        s.sendto(b"\0\1f64k\0octet\0", ("127.0.0.1", tport))
        got, want, peer = [], 1, None
        try:
            while True:
                d, a = s.recvfrom(2048)
                op, blk = struct.unpack("!HH", d[:4])
                if op != 3:
                    results[i] = "op %d" % op
                    return
                if blk == 1:
                    started.set()
                if blk == want:
                    got.append(d[4:])
                    want += 1
                    time.sleep(0.03)
                s.sendto(struct.pack("!HH", 4, (want - 1) & 0xFFFF), a)
                if blk == want - 1 and len(d) < 516:
                    break
        except socket.timeout:
            results[i] = "timeout at block %d" % want
            return
        results[i] = "ok" if b"".join(got) == data else "differs"

    threads, starts = [], []
    for i in range(6):
        ev = threading.Event()
        th = threading.Thread(target=slow_client, args=(i, ev))
        th.start()
        threads.append(th)
        starts.append(ev)
    ok(all(e.wait(5) for e in starts), "TFTP: 6 transfers in flight (max_transfers)")
    answers, worst = [], 0.0
    for i in range(10):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(3)
        t = time.monotonic()
        s.sendto(b"\0\1f64k\0octet\0", ("127.0.0.1", tport))
        try:
            d, a = s.recvfrom(2048)
            op, code = struct.unpack("!HH", d[:4])
            answers.append("ERROR %d %s" % (code, d[4:-1].decode()) if op == 5 else "op %d" % op)
            if op == 3:
                s.sendto(b"\0\5\0\0bye\0", a)
        except socket.timeout:
            answers.append("silence")
        worst = max(worst, time.monotonic() - t)
        s.close()
    ok(all(a.startswith("ERROR 0") and "busy" in a for a in answers) and worst < 2,
       "TFTP: 10 RRQs beyond the cap each get an ERROR packet: %s (slowest %.2f s)" %
       (sorted(set(answers)), worst))
    for th in threads:
        th.join(60)
    ok(all(results.get(i) == "ok" for i in range(6)),
       "TFTP: the 6 transfers in flight complete byte-identical: %s" % [results.get(i) for i in range(6)])

elif part == "dhcp":
    MAC = bytes.fromhex("525400aabbcc")
    def discover(xid):
        hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, bytes(4),
                          bytes(4), bytes(4), bytes(4), MAC + bytes(10), b"", b"")
        vendor = b"PXEClient:Arch:00000:UNDI:002001"
        opts = bytes([53, 1, 1, 60, len(vendor)]) + vendor + bytes([93, 2, 0, 0, 255])
        return hdr + b"\x63\x82\x53\x63" + opts
    # The server answers DHCP at all before the flood.
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(2)
    c.sendto(discover(1), ("127.0.0.1", dport))
    try:
        d, a = c.recvfrom(2048)
        ok(d[0] == 2, "DHCP: a PXE DISCOVER gets a proxy OFFER before the flood")
    except socket.timeout:
        ok(False, "DHCP: no OFFER before the flood")
    sent = [0] * 4
    stop = time.monotonic() + float(os.environ.get("FLOOD_S", "4"))
    def flood(k):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pkts = [discover(0x10000 * (k + 1) + i) for i in range(256)]
        n = 0
        while time.monotonic() < stop:
            for p in pkts[:64]:
                try:
                    s.sendto(p, ("127.0.0.1", dport))
                    n += 1
                except OSError:
                    pass
        sent[k] = n
    ths = [threading.Thread(target=flood, args=(k,)) for k in range(4)]
    for t in ths:
        t.start()
    open(os.path.join(tmp, "flood.started"), "w").close()
    for t in ths:
        t.join()
    print("info DHCP: %d DISCOVERs sent in %s s" % (sum(sent), os.environ.get("FLOOD_S", "4")))
    # ... and it still answers DHCP once the flood is over.
    time.sleep(0.5)
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(1)
    got = False
    for i in range(5):
        c.sendto(discover(7 + i), ("127.0.0.1", dport))
        try:
            d, a = c.recvfrom(2048)
            got = d[0] == 2
            break
        except socket.timeout:
            pass
    ok(got, "DHCP: a DISCOVER gets an OFFER after the flood")
PY
	while read -r line; do
		case $line in
		ok*) pass "${line#ok }" ;;
		info*) echo "${line#info }" ;;
		*) fail "${line#FAIL }" ;;
		esac
	done <"$TMP/driver.$1"
}

# ---- HTTP: slowloris, 503, hard limit, idle timeout ----
t0=$(date +%s%N)
run_driver http
dt=$((($(date +%s%N) - t0) / 1000000))
fetch_ok "after the HTTP flood (${dt} ms after it began)" 10
[ "$dt" -le 12000 ] || fail "the HTTP flood part took ${dt} ms (slow connections cut late?)"

# ---- TFTP: more requests than max_transfers ----
run_driver tftp
fetch_ok "after the TFTP cap" 10

# ---- DHCP flood while TFTP and HTTP serve ----
rm -f "$TMP/flood.started"
FLOOD_S=4 run_driver dhcp &
DRIVER=$!
for _ in $(seq 100); do
	[ -e "$TMP/flood.started" ] && break
	sleep 0.05
done
[ -e "$TMP/flood.started" ] || fail "the DHCP flood did not start"
fetch_ok "during the DHCP flood" 5
wait "$DRIVER"

# ---- alive, memory bounded ----
if kill -0 "$RB_PID" 2>/dev/null; then
	pass "rackbootd alive after all of it"
else
	fail "rackbootd died: $(tail -5 "$RB_LOG")"
fi
hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$RB_PID/status" 2>/dev/null)
echo "rackbootd peak RSS (VmHWM): ${hwm:-?} kB"
if [ -n "$hwm" ] && [ "$hwm" -lt $((200 * 1024)) ]; then
	pass "peak RSS ${hwm} kB under 200 MiB"
else
	fail "peak RSS ${hwm:-?} kB (bound 200 MiB)"
fi

rb_finish
