#!/usr/bin/python3
"""rackbootd's DHCP server against malformed packets, on loopback.

Starts rackbootd in proxy mode on high loopback ports (dhcp port and
proxy_port from the config), then sends raw UDP datagrams: truncated
headers, option lengths past the end, no END option, a wrong magic cookie,
empty and oversized datagrams, bad option 52 overloads, BOOTREPLYs. After
each one, a good PXE DISCOVER must still get its OFFER (replies go back to
the source address and port when the request's source port is not 68: see
pxe/dhcp.c). Valid-but-unusual packets (a 255-byte option 55, a proper
option 52 overload, a 1600-byte request) must be answered. Non-PXE clients
must get nothing in proxy mode. At the end the server must be alive and
must have logged the drops with the peer's address.

Environment: RB_BUILD (meson build dir) or RACKBOOTD (the binary).
Exit 77 when the binary is missing.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("RACKBOOTD") or os.path.join(os.environ.get("RB_BUILD", "build"),
                                                  "pxe", "rackbootd")
MAC = bytes([0x52, 0x54, 0x00, 0xAB, 0xCD, 0xEF])
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILS.append(what)


def free_port(kind=socket.SOCK_DGRAM):
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def packet(xid, msg_type=1, options=b"", vendor=b"PXEClient:Arch:00000:UNDI:002001",
           op=1, hlen=6, cookie=b"\x63\x82\x53\x63", end=True, file=b"", arch=0):
    hdr = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", op, 1, hlen, 0, xid, 0, 0x8000,
                      bytes(4), bytes(4), bytes(4), bytes(4), MAC + bytes(10), b"",
                      file)
    opts = bytes([53, 1, msg_type])
    if vendor:
        opts += bytes([60, len(vendor)]) + vendor
        opts += bytes([93, 2]) + struct.pack("!H", arch)
    opts += options
    if end:
        opts += b"\xff"
    return hdr + cookie + opts


def options_of(p):
    out, i = {}, 240
    while i < len(p):
        c = p[i]
        if c == 0:
            i += 1
            continue
        if c == 255 or i + 1 >= len(p):
            break
        n = p[i + 1]
        out.setdefault(c, p[i + 2:i + 2 + n])
        i += 2 + n
    return out


class Client:
    def __init__(self, port):
        self.port = port
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))

    def send(self, data, port=None):
        self.s.sendto(data, ("127.0.0.1", port or self.port))

    def recv(self, xid, timeout=1.0):
        """The reply with this xid, or None."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                data, _ = self.s.recvfrom(4096)
            except socket.timeout:
                return None
            if len(data) >= 240 and struct.unpack("!I", data[4:8])[0] == xid:
                return data

    def exchange(self, data, xid, timeout=1.0, port=None):
        self.send(data, port)
        return self.recv(xid, timeout)


def good_offer(reply, xid, msg=2):
    if not reply or reply[0] != 2 or struct.unpack("!I", reply[4:8])[0] != xid:
        return False
    o = options_of(reply)
    return (o.get(53) == bytes([msg]) and reply[16:20] == bytes(4) and
            o.get(60) == b"PXEClient" and o.get(54) == socket.inet_aton("127.0.0.1") and
            reply[108:108 + 14] == b"undionly.kpxe\0" and reply[28:34] == MAC and
            reply[20:24] == socket.inet_aton("127.0.0.1"))


def main():
    if not os.access(BIN, os.X_OK):
        print(f"skip: {BIN} not built")
        return 77
    tmp = tempfile.mkdtemp(prefix="rbt-dhcp-malformed-")
    dport, pport, hport = free_port(), free_port(), free_port(socket.SOCK_STREAM)
    conf = os.path.join(tmp, "rackbootd.conf")
    with open(conf, "w") as f:
        f.write(f"""server_address = "127.0.0.1"
state_dir = "{tmp}/state"
user = ""
dhcp {{
    mode = "proxy"
    port = {dport}
    proxy_port = {pport}
}}
tftp {{ enable = false }}
http {{ port = {hport} boot_root = "{tmp}" repo_root = "{tmp}" }}
""")
    log = open(os.path.join(tmp, "rackbootd.log"), "w+")
    proc = subprocess.Popen([BIN, "-c", conf, "-v"], stdout=log, stderr=subprocess.STDOUT)
    try:
        c = Client(dport)
        xid = 0x1000
        up = False
        for _ in range(50):
            xid += 1
            if good_offer(c.exchange(packet(xid), xid, 0.2), xid):
                up = True
                break
            if proc.poll() is not None:
                break
        check(up, "server answers a PXE DISCOVER with a proxy OFFER")
        if not up:
            log.seek(0)
            print(log.read())
            return 1

        # option 43: PXE discovery control = 8 (boot the offered file)
        xid += 1
        r = c.exchange(packet(xid), xid)
        check(r is not None and options_of(r).get(43, b"")[:3] == b"\x06\x01\x08",
              "proxy OFFER carries option 43 with discovery control 8")

        good = packet(1)
        bad = {
            "empty datagram": b"",
            "1 byte": b"\x01",
            "truncated header (100 bytes)": good[:100],
            "header without cookie (236 bytes)": good[:236],
            "wrong magic cookie": packet(2, cookie=b"\x63\x82\x53\x64"),
            "option length past the end": packet(3, end=False) + b"\x3c\xff" + b"A" * 10,
            "option code at the last byte": packet(4, end=False) + b"\x0c",
            "no END option": packet(5, end=False),
            "option 53 with length 2": packet(6, options=b"\x35\x02\x01\x01"),
            "option 93 with length 1": packet(7, options=b"\x5d\x01\x00"),
            "option 52 = 9": packet(8, options=b"\x34\x01\x09"),
            "option 52 with an option running past the file field":
                packet(9, options=b"\x34\x01\x01", file=b"\x3c\x7f" + b"B" * 126),
            "9000-byte datagram (truncated on receive)": packet(10, end=False) + b"\0" * 9000,
            "hlen 200": packet(11, hlen=200),
        }
        for name, data in bad.items():
            c.send(data)
            if len(data) >= 8:
                bad_xid = struct.unpack("!I", data[4:8])[0]
                check(c.recv(bad_xid, 0.15) is None, f"no answer to: {name}")
            xid += 1
            check(good_offer(c.exchange(packet(xid), xid), xid),
                  f"still answers after: {name}")

        # ignored without being malformed
        for name, data in {"BOOTREPLY": packet(0x77, op=2),
                           "hlen 16 (not Ethernet-sized)": packet(0x78, hlen=16),
                           "non-PXE DISCOVER": packet(0x79, vendor=b"udhcp 1.35.0"),
                           "DISCOVER with no vendor class": packet(0x7A, vendor=b""),
                           "REQUEST on the DHCP port": packet(0x7B, msg_type=3)}.items():
            xid_ = struct.unpack("!I", data[4:8])[0]
            check(c.exchange(data, xid_, 0.4) is None, f"no answer to {name}")

        # unusual but valid: answered
        xid += 1
        r = c.exchange(packet(xid, options=bytes([55, 255]) + bytes(range(1, 256))), xid)
        check(good_offer(r, xid), "a 255-byte option 55 is answered")
        xid += 1
        big = packet(xid, end=False) + bytes([224, 255]) + b"x" * 255
        big += bytes([225, 255]) + b"y" * 255 + b"\xff" + b"\0" * 900
        check(len(big) > 1500 and good_offer(c.exchange(big, xid), xid),
              "a 1600+ byte request is answered")
        xid += 1
        # 52 = 1: the vendor class and arch live in the file field
        inner = b"\x3c\x20PXEClient:Arch:00000:UNDI:002001\x5d\x02\x00\x00\xff"
        r = c.exchange(packet(xid, vendor=b"", options=b"\x34\x01\x01",
                              file=inner + bytes(128 - len(inner))), xid)
        check(good_offer(r, xid), "options overloaded into the file field are read")

        # proxy port: a unicast REQUEST (EDK2 ProxyBinl, iPXE) gets an ACK back
        xid += 1
        r = c.exchange(packet(xid, msg_type=3, arch=0), xid, port=pport)
        check(good_offer(r, xid, msg=5), "REQUEST on the proxy port gets a proxy ACK")
        c.send(b"\x01" * 50, pport)
        xid += 1
        r = c.exchange(packet(xid, msg_type=3), xid, port=pport)
        check(good_offer(r, xid, msg=5), "proxy port survives a malformed packet")

        # a burst of garbage, then a good one
        for i in range(2000):
            c.send(os.urandom(i % 700))
        xid += 1
        check(good_offer(c.exchange(packet(xid), xid, 3.0), xid),
              "still answers after 2000 random datagrams")
        check(proc.poll() is None, "server still running")
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.seek(0)
        text = log.read()
    check("malformed" in text and "127.0.0.1:" in text,
          "drops are logged at debug level with the peer address")
    check(proc.returncode == 0, f"clean exit on SIGTERM (rc {proc.returncode})")
    if FAILS:
        print(text[-4000:])
        print(f"{len(FAILS)} check(s) failed")
        return 1
    subprocess.run(["rm", "-rf", tmp])
    return 0


if __name__ == "__main__":
    sys.exit(main())
