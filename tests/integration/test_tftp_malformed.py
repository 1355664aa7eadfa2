#!/usr/bin/python3
"""rackbootd's TFTP server against raw, hostile UDP packets.

After every malformed packet the server process must still be alive and
answer a normal read request with DATA. Packets with a defined answer
(ERROR code, OACK contents, clamped or ignored options, retransmission and
the window fallback) are checked for that answer.
"""
import os
import random
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

RB_BUILD = os.environ.get("RB_BUILD") or os.path.join(os.path.dirname(__file__), "../../build")
DAEMON = os.path.join(RB_BUILD, "pxe", "rackbootd")
TIMEOUT_MS = 200
RETRIES = 2
MAX_TRANSFERS = 8

failures = []


def check(cond, what):
    print(("ok: " if cond else "FAIL: ") + what)
    if not cond:
        failures.append(what)


def free_ports():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    t = socket.socket()
    t.bind(("127.0.0.1", 0))
    ports = u.getsockname()[1], t.getsockname()[1]
    u.close()
    t.close()
    return ports


def rrq(name, *opts, mode=b"octet", op=1):
    pkt = struct.pack("!H", op) + name + b"\0" + mode + b"\0"
    for o in opts:
        pkt += o + b"\0"
    return pkt


def parse(d):
    op = struct.unpack("!H", d[:2])[0] if len(d) >= 2 else -1
    if op == 6:
        f = d[2:].split(b"\0")
        return op, dict(zip(f[0::2], f[1::2]))
    if op == 5:
        return op, (struct.unpack("!H", d[2:4])[0], d[4:].split(b"\0")[0])
    if op == 3:
        return op, (struct.unpack("!H", d[2:4])[0], d[4:])
    return op, d


class Client:
    def __init__(self, port, timeout=2.0):
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.settimeout(timeout)
        self.server = ("127.0.0.1", port)
        self.peer = None

    def send(self, pkt):
        self.s.sendto(pkt, self.server)

    def recv(self):
        try:
            d, a = self.s.recvfrom(70000)
        except socket.timeout:
            return None, None
        self.peer = a
        return parse(d)

    def to_peer(self, pkt):
        self.s.sendto(pkt, self.peer)

    def ack(self, n):
        self.to_peer(struct.pack("!HH", 4, n & 0xFFFF))

    def abort(self):
        if self.peer:
            self.to_peer(b"\0\5\0\0test done\0")

    def close(self):
        self.s.close()


def busy(op, v):
    return op == 5 and v[0] == 0 and b"busy" in v[1]


def ask(port, pkt, timeout=2.0):
    """Sends a request and returns (client, op, value). The server answers
    "busy" while the previous transfers' last ACK or ERROR is still queued
    behind the request (it happens on a slow, e.g. sanitizer, build):
    that is a correct answer, so the request is repeated a few times."""
    for _ in range(20):
        c = Client(port, timeout=timeout)
        c.send(pkt)
        op, v = c.recv()
        if not busy(op, v):
            return c, op, v
        c.close()
        time.sleep(0.05)
    return c, op, v


def serves(port, root):
    """A normal RRQ for 'probe' (100 bytes) gets DATA 1 with the file."""
    c, op, v = ask(port, rrq(b"probe"))
    ok = op == 3 and v[0] == 1 and v[1] == open(os.path.join(root, "probe"), "rb").read()
    if ok:
        c.ack(1)
    c.close()
    return ok


def main():
    if not os.access(DAEMON, os.X_OK):
        print("SKIP: %s not built" % DAEMON)
        return 77
    tmp = tempfile.mkdtemp(prefix="rbt-tftp-mal.")
    proc = None
    try:
        root = os.path.join(tmp, "root")
        os.makedirs(root)
        for d in ("state", "boot", "repo"):
            os.makedirs(os.path.join(tmp, d))
        with open(os.path.join(root, "probe"), "wb") as f:
            f.write(os.urandom(100))
        mid = os.urandom(512 * 20)
        with open(os.path.join(root, "mid"), "wb") as f:
            f.write(mid)
        os.symlink("/etc/passwd", os.path.join(root, "evil"))
        port, http_port = free_ports()
        conf = os.path.join(tmp, "rackbootd.conf")
        with open(conf, "w") as f:
            f.write('user = ""\nstate_dir = "%s"\ndhcp {\n mode = "off"\n}\n'
                    'tftp {\n port = %d\n root = "%s"\n timeout_ms = %d\n retries = %d\n'
                    ' max_transfers = %d\n max_blksize = 1468\n max_windowsize = 16\n}\n'
                    'http {\n port = %d\n boot_root = "%s"\n repo_root = "%s"\n}\n'
                    % (os.path.join(tmp, "state"), port, root, TIMEOUT_MS, RETRIES,
                       MAX_TRANSFERS, http_port, os.path.join(tmp, "boot"),
                       os.path.join(tmp, "repo")))
        log = open(os.path.join(tmp, "server.log"), "w")
        proc = subprocess.Popen([DAEMON, "-c", conf], stdout=log, stderr=subprocess.STDOUT)
        for _ in range(50):
            if proc.poll() is not None or serves(port, root):
                break
            time.sleep(0.1)
        if proc.poll() is not None or not serves(port, root):
            print("FAIL: server did not start")
            print(open(os.path.join(tmp, "server.log")).read())
            return 1

        def alive_after(what):
            check(proc.poll() is None and serves(port, root), "still serving after " + what)

        def expect(pkt, what, want_op, want=None):
            c, op, v = ask(port, pkt, timeout=1.0 if want_op else 0.3)
            good = op == want_op and (want is None or want(v))
            check(good, "%s -> %s" % (what, (op, v if op != 3 else (v[0], len(v[1]))))
                  if good else "%s: got %r" % (what, (op, v)))
            if op in (3, 6):
                c.abort()
            c.close()
            alive_after(what)

        silent = lambda pkt, what: expect(pkt, what, None)

        # Malformed: dropped without an answer.
        silent(b"", "empty packet")
        silent(b"\0", "one byte")
        silent(b"\0\1", "opcode only")
        silent(b"\0\1probe", "file name without NUL")
        silent(b"\0\1probe\0", "no mode")
        silent(b"\0\1probe\0oct", "mode without NUL")
        silent(b"\0\1\0octet\0", "empty file name")
        silent(rrq(b"probe") + b"blksize", "option name without NUL")
        silent(rrq(b"probe") + b"blksize\0" + b"1468", "option value without NUL")
        silent(rrq(b"probe") + b"\0junk", "junk after NUL padding")
        silent(b"\0\4" + b"A" * 65000, "huge non-request packet")
        silent(b"\0\5\0\1not a request\0", "ERROR to the request port")

        # Answered.
        expect(b"\0\x09garbage", "opcode 9", 5, lambda v: v[0] == 4)
        expect(b"\xff\xff\xff\xff", "opcode 65535", 5, lambda v: v[0] == 4)
        expect(b"\0\3\0\1data", "DATA to the request port", 5, lambda v: v[0] == 4)
        expect(b"\0\4\0\1", "ACK to the request port", 5, lambda v: v[0] == 4)
        expect(rrq(b"probe") + b"blksize\0", "option without value: served", 3,
               lambda v: v[0] == 1 and len(v[1]) == 100)
        expect(rrq(b"probe") + b"\0\0\0", "NUL padding: served", 3, lambda v: v[0] == 1)
        expect(rrq(b"mid", b"blksize", b"0"), "blksize 0 ignored", 3,
               lambda v: v[0] == 1 and len(v[1]) == 512)
        expect(rrq(b"mid", b"blksize", b"7"), "blksize 7 ignored", 3,
               lambda v: v[0] == 1 and len(v[1]) == 512)
        expect(rrq(b"mid", b"blksize", b"8"), "blksize 8 granted", 6,
               lambda v: v == {b"blksize": b"8"})
        expect(rrq(b"mid", b"blksize", b"65536"), "blksize 65536 clamped", 6,
               lambda v: v == {b"blksize": b"1468"})
        expect(rrq(b"mid", b"blksize", b"99999999999999999999999"), "blksize huge clamped", 6,
               lambda v: v == {b"blksize": b"1468"})
        expect(rrq(b"mid", b"blksize", b"-5"), "blksize negative ignored", 3,
               lambda v: len(v[1]) == 512)
        expect(rrq(b"mid", b"blksize", b"1024", b"blksize", b"8"), "duplicate option: first wins",
               6, lambda v: v == {b"blksize": b"1024"})
        expect(rrq(b"mid", b"BLKSIZE", b"1000", b"TSize", b"0"), "option names any case", 6,
               lambda v: v == {b"blksize": b"1000", b"tsize": str(len(mid)).encode()})
        expect(rrq(b"mid", b"windowsize", b"64"), "windowsize capped", 6,
               lambda v: v == {b"windowsize": b"16"})
        expect(rrq(b"mid", b"windowsize", b"0", b"timeout", b"0"), "windowsize 0, timeout 0 ignored",
               3, lambda v: v[0] == 1)
        expect(rrq(b"mid", b"timeout", b"256"), "timeout 256 ignored", 3, lambda v: v[0] == 1)
        # Option floods and oversized requests are refused (no boot
        # firmware sends either): ERROR 8 and ERROR 0.
        many = [b"opt%d" % i for i in range(120)]
        expect(rrq(b"probe", *[x for o in many[:16] for x in (o, b"1")]), "16 unknown options",
               3, lambda v: v[0] == 1)
        expect(rrq(b"probe", *[x for o in many[:17] for x in (o, b"1")]), "17 options refused",
               5, lambda v: v[0] == 8)
        expect(rrq(b"probe", *[x for o in many for x in (o, b"1")]), "120 options refused", 5,
               lambda v: v[0] == 8)
        expect(b"\0\1" + b"A" * 65000, "huge request refused", 5, lambda v: v[0] == 0)
        expect(rrq(b"probe", b"blksize", b"1468") + b"x" * 3000, "oversized request refused", 5,
               lambda v: v[0] == 0)
        expect(rrq(b"a" * 300), "300-byte file name", 5, lambda v: v[0] == 1)
        expect(rrq(b"a/" * 600), "1200-byte file name", 5, lambda v: v[0] == 1)
        expect(rrq(b"../etc/passwd"), "../ path", 5, lambda v: v[0] == 2)
        expect(rrq(b"/etc/passwd"), "absolute path", 5, lambda v: v[0] == 2)
        expect(rrq(b"..\\etc\\passwd"), "backslashes", 5, lambda v: v[0] == 2)
        expect(rrq(b"evil"), "symlink out of the root", 5, lambda v: v[0] == 2)
        expect(rrq(b"pro\x01be\xff"), "control and high bytes", 5, lambda v: v[0] == 2)
        expect(rrq(b"probe", op=2), "write request", 5, lambda v: v[0] == 2)
        expect(rrq(b"probe", mode=b"netascii"), "netascii", 5, lambda v: v[0] == 0)
        expect(rrq(b"probe", mode=b"bogus"), "unknown mode", 5, lambda v: v[0] == 0)

        # Garbage on a transfer's own socket is ignored; the transfer goes on.
        c = Client(port)
        c.send(rrq(b"mid"))
        op, v = c.recv()
        for junk in (b"", b"\0", b"\0\3\0\1xx", b"\xff" * 3000, b"\0\4\0\x09", b"\0\1mid\0octet\0"):
            c.to_peer(junk)
        c.ack(1)
        op2, v2 = c.recv()
        c.abort()
        c.close()
        check(op == 3 and op2 == 3 and v2[0] == 2 and v2[1] == mid[512:1024],
              "transfer ignores junk from its peer, DATA 2 follows ACK 1")
        alive_after("junk on a transfer socket")

        # Retransmission with exponential backoff, then the transfer is
        # dropped with an ERROR after RETRIES retransmissions.
        c = Client(port, timeout=5.0)
        c.send(rrq(b"probe"))
        times, blocks, err = [], [], None
        while True:
            op, v = c.recv()
            if op == 3:
                times.append(time.monotonic())
                blocks.append(v[0])
            elif op == 5:
                err = v
                break
            else:
                break
        gaps = [b - a for a, b in zip(times, times[1:])]
        check(blocks == [1] * (RETRIES + 1), "DATA 1 sent %d times: %r" % (RETRIES + 1, blocks))
        check(len(gaps) == RETRIES and all(
            g >= TIMEOUT_MS / 1000.0 * (2 ** i) * 0.8 for i, g in enumerate(gaps)) and
            gaps[-1] > gaps[0] * 1.5, "backoff doubles: %r" % [round(g, 3) for g in gaps])
        check(err is not None, "transfer dropped with an ERROR: %r" % (err,))
        c.close()

        # RFC 7440: a loss resends a whole window from the first block not
        # acknowledged (receivers count the negotiated window before they
        # ACK, so the window never shrinks); a duplicate ACK resends once.
        def burst(c):
            got = []
            c.s.settimeout(TIMEOUT_MS / 1000.0 * 0.6)  # before the server's timer
            while len(got) < 20:
                op, v = c.recv()
                if op != 3:
                    break
                got.append(v[0])
            c.s.settimeout(2.0)
            return got

        c = Client(port)
        c.send(rrq(b"mid", b"windowsize", b"8"))
        op, v = c.recv()
        check(op == 6 and v == {b"windowsize": b"8"}, "OACK windowsize 8")
        c.ack(0)
        got = burst(c)
        check(got == list(range(1, 9)), "first window 1..8: %r" % got)
        c.ack(3)  # blocks 4..8 "lost"
        got = burst(c)
        check(got == list(range(4, 12)), "after loss: a whole window from block 4: %r" % got)
        c.ack(11)
        got = burst(c)
        check(got == list(range(12, 20)), "window stays 8: %r" % got)
        c.ack(19)  # blocks 20 and 21 (the empty last one) follow
        c.ack(5)  # an old ACK: ignored, moves nothing back
        c.ack(19)  # a duplicate ACK: the window once more
        c.ack(19)  # ... but only once
        got = burst(c)
        check(got == [20, 21, 20, 21], "old ACK ignored, duplicate ACK resends once: %r" % got)
        c.abort()
        c.close()

        # A repeated request while the OACK waits for ACK 0 gets the OACK
        # again at once; the timer does not repeat it within its first
        # seconds (atftp aborts on a second OACK when only its ACK 0 was
        # lost, and repeats that ACK itself after 5 s).
        c = Client(port)
        c.send(rrq(b"mid", b"blksize", b"1024"))
        op, v = c.recv()
        c.send(rrq(b"mid", b"blksize", b"1024"))
        op2, v2 = c.recv()
        c.s.settimeout(TIMEOUT_MS / 1000.0 * 5)
        op3, v3 = c.recv()
        check(op == 6 and op2 == 6 and v2 == v and op3 is None,
              "repeated RRQ: OACK again at once, none from the timer: %r" % [op, op2, op3])
        c.ack(0)
        c.s.settimeout(2.0)
        op4, v4 = c.recv()
        check(op4 == 3 and v4[0] == 1 and len(v4[1]) == 1024, "DATA 1 after ACK 0")
        c.abort()
        c.close()

        # The (max_transfers + 1)-th concurrent transfer is refused.
        holders = []
        for i in range(MAX_TRANSFERS):
            h = Client(port)
            h.send(rrq(b"mid"))
            h.recv()
            holders.append(h)
        c = Client(port)
        c.send(rrq(b"probe"))
        op, v = c.recv()
        check(op == 5, "transfer %d refused while %d run: %r" % (MAX_TRANSFERS + 1,
                                                                MAX_TRANSFERS, (op, v)))
        c.close()
        for h in holders:
            h.abort()
            h.close()
        time.sleep(0.2)
        alive_after("the transfer limit")

        # Random garbage, a few thousand packets.
        rnd = random.Random(7)
        g = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(3000):
            n = rnd.choice([0, 1, 2, 3, 4, 5, 16, 100, 511, 512, 516, 1500])
            pkt = bytes(rnd.getrandbits(8) for _ in range(n))
            if i % 3 == 0 and n >= 2:
                pkt = b"\0" + bytes([rnd.choice([1, 2])]) + pkt[2:]
            g.sendto(pkt, ("127.0.0.1", port))
        g.close()
        time.sleep(0.5)
        alive_after("3000 random packets")
    finally:
        if proc and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        if failures and os.path.exists(os.path.join(tmp, "server.log")):
            print("--- server log (tail)")
            print("".join(open(os.path.join(tmp, "server.log")).readlines()[-30:]))
        shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("all malformed-packet checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
