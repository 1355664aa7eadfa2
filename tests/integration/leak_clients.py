#!/usr/bin/python3
"""Raw protocol clients for test_server_leaks.sh: the parts of a node's life
that no stock tool does on loopback, each one asserting what it got back.

  leak_clients.py dhcp PORT SERVER_HTTP_PORT
      full DHCP on 127.0.0.1:PORT (replies come back to our source port):
      PXE DISCOVER -> OFFER with a pool address and undionly.kpxe, REQUEST
      -> ACK, iPXE DISCOVER -> the per-node script URL, INFORM -> ACK,
      DECLINE of another address, RELEASE, malformed packets dropped.
  leak_clients.py tftp PORT
      transfers a client abandons (no ACK: the server retries and gives up),
      cuts with an ERROR packet, a write request, a missing file, a request
      without its NUL, an option flood, an unknown opcode, more transfers
      than max_transfers (16); afterwards a good read still works.
  leak_clients.py http PORT
      malformed and cut HTTP requests: garbage, a request line cut off, a
      header block over the limit, a body shorter than Content-Length, bad
      chunked encoding, pipelined requests, a connection idle mid-headers;
      afterwards a good request still works.
  leak_clients.py sse PORT TOKEN
      66 event streams at once: 64 accepted, the rest 503; then half of
      them reset, half closed.
Exit 0 when every check passed, 1 otherwise (each check printed).
"""
import os
import socket
import struct
import sys
import time

FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


# ---- DHCP ---------------------------------------------------------------------------

MAC = bytes([0x52, 0x54, 0x00, 0x1e, 0xa0, 0x01])


def dhcp_packet(xid, msg_type, options=b"", vendor=b"PXEClient:Arch:00000:UNDI:002001",
                ciaddr=bytes(4), mac=MAC):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, ciaddr,
                      bytes(4), bytes(4), bytes(4), mac + bytes(10), b"", b"")
    opts = bytes([53, 1, msg_type])
    if vendor:
        opts += bytes([60, len(vendor)]) + vendor + bytes([93, 2, 0, 0])
    return hdr + b"\x63\x82\x53\x63" + opts + options + b"\xff"


def dhcp_options(p):
    out, i = {}, 240
    while i < len(p):
        c = p[i]
        if c == 0:
            i += 1
            continue
        if c == 255 or i + 1 >= len(p):
            break
        out.setdefault(c, p[i + 2:i + 2 + p[i + 1]])
        i += 2 + p[i + 1]
    return out


def dhcp_exchange(s, port, data, xid, timeout=5.0):
    s.sendto(data, ("127.0.0.1", port))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            r, _ = s.recvfrom(4096)
        except socket.timeout:
            return None
        if len(r) >= 240 and struct.unpack("!I", r[4:8])[0] == xid:
            return r
    return None


def dhcp(port, http_port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    srv = socket.inet_aton("127.0.0.1")

    r = dhcp_exchange(s, port, dhcp_packet(0x100, 1), 0x100)
    o = dhcp_options(r) if r else {}
    offered = r[16:20] if r else bytes(4)
    check(r is not None and o.get(53) == b"\x02" and
          socket.inet_ntoa(offered).startswith("127.0.0.") and
          r[108:122] == b"undionly.kpxe\0",
          "PXE DISCOVER: OFFER of %s with undionly.kpxe" % socket.inet_ntoa(offered))
    req = dhcp_packet(0x101, 3, bytes([50, 4]) + offered + bytes([54, 4]) + srv)
    r = dhcp_exchange(s, port, req, 0x101)
    check(r is not None and dhcp_options(r).get(53) == b"\x05" and r[16:20] == offered,
          "REQUEST: ACK of the offered address")

    ipxe = dhcp_packet(0x102, 1, bytes([77, 4]) + b"iPXE")
    r = dhcp_exchange(s, port, ipxe, 0x102)
    want = b"http://127.0.0.1:%d/boot/52:54:00:1e:a0:01.ipxe" % http_port
    check(r is not None and r[108:108 + len(want)] == want,
          "iPXE DISCOVER: the per-node script URL")
    r = dhcp_exchange(s, port, dhcp_packet(0x103, 8, ciaddr=offered), 0x103)
    check(r is not None and dhcp_options(r).get(53) == b"\x05" and r[16:20] == bytes(4),
          "INFORM: ACK without an address")

    # a second client declines what it is offered, then goes away
    mac2 = MAC[:5] + b"\x02"
    r = dhcp_exchange(s, port, dhcp_packet(0x104, 1, vendor=b"", mac=mac2), 0x104)
    check(r is not None and dhcp_options(r).get(53) == b"\x02", "plain DISCOVER: OFFER")
    if r:
        s.sendto(dhcp_packet(0x105, 4, bytes([50, 4]) + r[16:20] + bytes([54, 4]) + srv,
                             vendor=b"", mac=mac2), ("127.0.0.1", port))
    s.sendto(dhcp_packet(0x106, 7, bytes([54, 4]) + srv, ciaddr=offered),
             ("127.0.0.1", port))

    for junk in (b"", b"\x01" * 100, dhcp_packet(0x107, 1)[:239],
                 dhcp_packet(0x108, 1)[:-1] + b"\x3c\xff", os.urandom(600)):
        s.sendto(junk, ("127.0.0.1", port))
    r = dhcp_exchange(s, port, dhcp_packet(0x109, 1), 0x109)
    check(r is not None and dhcp_options(r).get(53) == b"\x02",
          "after malformed packets a DISCOVER is still answered")


# ---- TFTP ---------------------------------------------------------------------------

def rrq(name, *opts):
    p = b"\x00\x01" + name + b"\0octet\0"
    for o in opts:
        p += o + b"\0"
    return p


def tftp_first(s, port, data, timeout=5.0):
    s.sendto(data, ("127.0.0.1", port))
    s.settimeout(timeout)
    try:
        return s.recvfrom(70000)
    except socket.timeout:
        return None, None


def tftp(port):
    # abandoned after the first block: the server must retry, give up, free
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    r, peer = tftp_first(s, port, rrq(b"undionly.kpxe"))
    check(r is not None and r[:4] == b"\x00\x03\x00\x01", "RRQ: DATA block 1 (then no ACK)")
    s.close()

    # abandoned after an OACK
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    r, peer = tftp_first(s, port, rrq(b"big.bin", b"blksize", b"1400", b"tsize", b"0",
                                      b"windowsize", b"4"))
    check(r is not None and r[:2] == b"\x00\x06", "RRQ with options: OACK (then nothing)")
    s.close()

    # cut by the client with an ERROR packet mid-transfer
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    r, peer = tftp_first(s, port, rrq(b"big.bin"))
    ok = r is not None and r[:4] == b"\x00\x03\x00\x01"
    if ok:
        s.sendto(b"\x00\x04\x00\x01", peer)
        s.settimeout(5)
        r2, _ = s.recvfrom(70000)
        ok = r2[:4] == b"\x00\x03\x00\x02"
        s.sendto(b"\x00\x05\x00\x00client gave up\0", peer)
    check(ok, "a transfer cut by the client's ERROR after block 2")
    s.close()

    cases = {
        "write request": (b"\x00\x02evil\0octet\0", 2),
        "missing file": (rrq(b"no-such-file"), 1),
        "traversal": (rrq(b"../../../../etc/passwd"), None),
        "RRQ without NUL": (b"\x00\x01undionly.kpxe", None),
        "unknown opcode": (b"\x00\x09abc\0", None),
        "option flood": (rrq(b"undionly.kpxe", *([b"x" * 20, b"1"] * 20)), None),
        "ACK to the listening port": (b"\x00\x04\x00\x01", "none"),
    }
    for name, (data, code) in cases.items():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        r, peer = tftp_first(s, port, data, 2.0)
        if code == "none":
            check(r is None or r[:2] == b"\x00\x05", "%s: nothing or an ERROR" % name)
        elif code is None:
            check(r is None or r[:2] in (b"\x00\x05", b"\x00\x03", b"\x00\x06"),
                  "%s: an ERROR (or a harmless answer)" % name)
            if r and r[:2] == b"\x00\x03":
                s.sendto(b"\x00\x05\x00\x00bye\0", peer)
        else:
            check(r is not None and r[:4] == struct.pack("!HH", 5, code),
                  "%s: ERROR %d" % (name, code))
        s.close()

    # more transfers than max_transfers (16 in the test's config), all
    # abandoned: the surplus is refused "busy", the rest time out
    socks, busy, started = [], 0, 0
    for _ in range(20):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        u.sendto(rrq(b"big.bin"), ("127.0.0.1", port))
        socks.append(u)
    for u in socks:
        u.settimeout(5)
        try:
            r, _ = u.recvfrom(70000)
        except socket.timeout:
            continue
        busy += r[:2] == b"\x00\x05" and b"busy" in r
        started += r[:4] == b"\x00\x03\x00\x01"
    # (a transfer of an earlier case may still be timing out: it holds a slot)
    check(started <= 16 and busy >= 4 and started + busy == 20,
          "20 transfers at once: %d started, %d refused busy" % (started, busy))
    for u in socks:
        u.close()
    time.sleep(1.5)  # timeout_ms 300 x (retries 2 + 1): all of them gone

    # still serves: a whole small transfer
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    got, block, r, peer = b"", 1, *tftp_first(s, port, rrq(b"undionly.kpxe"))
    while r is not None and r[:2] == b"\x00\x03" and struct.unpack("!H", r[2:4])[0] == block:
        got += r[4:]
        s.sendto(struct.pack("!HH", 4, block), peer)
        if len(r) - 4 < 512:
            break
        block += 1
        s.settimeout(5)
        r, _ = s.recvfrom(70000)
    check(len(got) > 0, "a good read after all of it: %d bytes" % len(got))
    s.close()


# ---- HTTP ---------------------------------------------------------------------------

def http_raw(port, data, read=True, timeout=10.0, close_after=0.0):
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        if data:
            c.sendall(data)
        if close_after:
            time.sleep(close_after)
            return b""
        if not read:
            return b""
        out = b""
        while True:
            try:
                b = c.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            out += b
        return out
    finally:
        c.close()


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


def http(port):
    r = http_raw(port, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + os.urandom(64))
    check(r == b"" or status_of(r) == 400, "TLS hello on the HTTP port: 400 or closed")
    r = http_raw(port, b"GARBAGE\r\n\r\n")
    check(r == b"" or status_of(r) >= 400, "a garbage request line: 4xx or closed")
    http_raw(port, b"GET /boot/vmlinuz HT", close_after=0.3)
    check(True, "a request line cut off (connection closed by the client)")
    r = http_raw(port, b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 200000 +
                 b"\r\n\r\n")
    check(r == b"" or status_of(r) in (400, 413, 431), "a 200 KB header: refused or closed")
    http_raw(port, b"POST /api/v1/nodes HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
             b"Content-Type: application/json\r\n\r\n{\"mac\":", close_after=0.3)
    check(True, "a body shorter than its Content-Length (connection closed)")
    http_raw(port, b"POST /api/v1/nodes/52:54:00:1e:a0:01/status HTTP/1.1\r\nHost: x\r\n"
             b"Authorization: Bearer 0123456789abcdef0123456789abcdef\r\n"
             b"Transfer-Encoding: chunked\r\n\r\n10\r\n{\"state\":\"imag", close_after=0.3)
    check(True, "a chunked body cut mid-chunk (connection closed)")
    r = http_raw(port, b"POST /api/v1/nodes HTTP/1.1\r\nHost: x\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")
    check(r == b"" or status_of(r) >= 400, "bad chunk size: 4xx or closed")
    r = http_raw(port, b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(r.count(b"HTTP/1.1 200") == 2 and r.count(b"HTTP/1.1 404") == 1,
          "three pipelined requests: 200, 200, 404")
    r = http_raw(port, b"GET /boot/%00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(status_of(r) == 400, "%00 in the path: 400")
    r = http_raw(port, b"GET /boot/vmlinuz?" + b"q" * 9000 +
                 b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(status_of(r) in (400, 414, 431), "an overlong query: refused (%d)" % status_of(r))
    r = http_raw(port, b"BREW /boot/vmlinuz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(status_of(r) in (400, 405, 501), "an unknown method: refused (%d)" % status_of(r))
    r = http_raw(port, b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Connection: close\r\n\r\nhello")
    check(status_of(r) == 413, "a GET with a body: 413")
    r = http_raw(port, b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\nRange: bytes=99999999-\r\n"
                 b"Connection: close\r\n\r\n")
    check(status_of(r) == 416, "a Range past the end: 416")
    # idle mid-headers, then gone
    http_raw(port, b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\n", close_after=1.0)
    check(True, "a connection idle mid-headers (closed by the client)")
    r = http_raw(port, b"GET /boot/vmlinuz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check(status_of(r) == 200, "a good request after all of it: 200")


# ---- the event stream ------------------------------------------------------------

def sse(port, token):
    """64 subscribers at once (EVENTS_MAX_SUBSCRIBERS), a 65th refused with
    503; then half of them reset (RST), the other half closed."""
    req = ("GET /api/v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n"
           % token).encode()
    conns, codes = [], []
    for _ in range(66):
        c = socket.create_connection(("127.0.0.1", port), timeout=20)
        c.sendall(req)
        conns.append(c)
    for c in conns:
        try:
            codes.append(status_of(c.recv(4096)))
        except socket.timeout:
            codes.append(0)
    # another test's or an earlier client's stream may hold a slot or two
    check(codes.count(200) >= 60 and codes.count(503) >= 2 and
          codes.count(200) + codes.count(503) == 66,
          "66 streams at once: %d accepted, %d refused 503" % (codes.count(200),
                                                               codes.count(503)))
    for i, c in enumerate(conns):
        if i % 2:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        return 2
    what, port = sys.argv[1], int(sys.argv[2])
    if what == "dhcp":
        dhcp(port, int(sys.argv[3]))
    elif what == "tftp":
        tftp(port)
    elif what == "http":
        http(port)
    elif what == "sse":
        sse(port, sys.argv[3])
    else:
        print(__doc__)
        return 2
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
