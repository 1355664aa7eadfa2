#!/usr/bin/env python3
"""A lossy, reordering link between two network namespaces, in user space,
for kernels built without sch_netem (tc qdisc add ... netem fails there with
"Specified qdisc kind is unknown"). test_lossy.sh uses tc netem when the
kernel has it and this otherwise; both give the same link model.

    netem_relay.py NS_A DEV_A NS_B DEV_B READYFILE STATSFILE
                   [--loss PCT] [--delay-ms MS] [--reorder PCT] [--reorder-corr PCT]
                   [--seed N] [--trace FILE]

Creates a TUN device DEV_A in namespace NS_A and DEV_B in NS_B (both must
exist under /run/netns), writes READYFILE, then forwards every IP packet
read from one device to the other with netem's model for
"loss L% delay D reorder R% C%":
  - each packet is dropped with probability L (independently);
  - a packet that is kept is sent at once with probability R (correlated
    with the previous draw by C, as netem's get_crandom() does), and is
    otherwise delayed by D; packets sent at once overtake the delayed ones
    still queued in the same direction, which is the reordering.
The devices are not persistent: they go away when this process exits
(SIGTERM or SIGINT). STATSFILE gets a JSON object
{"packets", "dropped", "delayed", "immediate", "overtook"} at least once
a second and at exit; "overtook" counts packets sent while an earlier one
in the same direction was still held, i.e. reordering that really
happened. --trace FILE logs every UDP packet (direction, ports, TFTP
opcode and block) and what became of it: dropped, delayed, sent at once
(test_lossy.sh: LOSSY_TRACE=1 KEEP=1). The addresses and links are set up
by the caller with ip(8).
"""
import argparse
import ctypes
import fcntl
import heapq
import json
import os
import random
import select
import signal
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def setns(name):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/run/netns/" + name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise OSError(e, "setns %s: %s" % (name, os.strerror(e)))
    finally:
        os.close(fd)


def open_tun(ns, dev):
    setns(ns)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    ifr = struct.pack("16sH22x", dev.encode(), IFF_TUN | IFF_NO_PI)
    fcntl.ioctl(fd, TUNSETIFF, ifr)
    os.set_blocking(fd, False)
    return fd


class CRandom:
    """netem's correlated random numbers: next = (1-rho)*rand + rho*last."""

    def __init__(self, rng, rho):
        self.rng, self.rho, self.last = rng, rho, rng.random()

    def next(self):
        v = (1 - self.rho) * self.rng.random() + self.rho * self.last
        self.last = v
        return v


def main():
    ap = argparse.ArgumentParser()
    for a in ("ns_a", "dev_a", "ns_b", "dev_b", "ready", "stats"):
        ap.add_argument(a)
    ap.add_argument("--loss", type=float, default=5.0)
    ap.add_argument("--delay-ms", type=float, default=2.0)
    ap.add_argument("--reorder", type=float, default=25.0)
    ap.add_argument("--reorder-corr", type=float, default=50.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--trace", default=None,
                    help="log every UDP packet's TFTP opcode and block, and what became of it")
    args = ap.parse_args()

    rng = random.Random(args.seed)
    reorder = CRandom(rng, args.reorder_corr / 100.0)
    fa = open_tun(args.ns_a, args.dev_a)
    fb = open_tun(args.ns_b, args.dev_b)
    peer = {fa: fb, fb: fa}
    held = {fa: 0, fb: 0}  # packets queued per output device
    queue = []  # (due, seq, out_fd, packet)
    seq = 0
    st = {"packets": 0, "dropped": 0, "delayed": 0, "immediate": 0, "overtook": 0}
    stop = []

    def dump():
        tmp = args.stats + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f)
        os.rename(tmp, args.stats)

    def on_signal(signum, frame):
        stop.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    dump()
    with open(args.ready, "w") as f:
        f.write("ready\n")
    trace = open(args.trace, "w", buffering=1) if args.trace else None
    t_start = time.monotonic()

    def log(fd, pkt, what):
        # IPv4 + UDP: ports and, for TFTP, opcode and block number
        if not trace or len(pkt) < 28 or pkt[0] >> 4 != 4 or pkt[9] != 17:
            return
        ihl = (pkt[0] & 15) * 4
        sport, dport = struct.unpack_from("!HH", pkt, ihl)
        op = blk = -1
        if len(pkt) >= ihl + 12:
            op, blk = struct.unpack_from("!HH", pkt, ihl + 8)
        trace.write("%.4f %s %d>%d op=%d blk=%d %s\n" % (time.monotonic() - t_start,
                    "a>b" if fd == fa else "b>a", sport, dport, op, blk, what))

    last_dump = time.monotonic()
    delay = args.delay_ms / 1000.0
    while not stop:
        now = time.monotonic()
        while queue and queue[0][0] <= now:
            _, _, out, pkt = heapq.heappop(queue)
            held[out] -= 1
            try:
                os.write(out, pkt)
            except OSError:
                pass  # device down or full: the packet is lost, like a full qdisc
        timeout = max(0.0, queue[0][0] - now) if queue else 0.5
        try:
            ready, _, _ = select.select([fa, fb], [], [], min(timeout, 0.5))
        except InterruptedError:
            continue
        for fd in ready:
            for _ in range(64):  # drain, bounded so the queue keeps moving
                try:
                    pkt = os.read(fd, 65536)
                except (BlockingIOError, InterruptedError):
                    break
                out = peer[fd]
                st["packets"] += 1
                if rng.random() * 100.0 < args.loss:
                    st["dropped"] += 1
                    log(fd, pkt, "dropped")
                    continue
                if reorder.next() * 100.0 < args.reorder:
                    st["immediate"] += 1
                    if held[out]:
                        st["overtook"] += 1
                    log(fd, pkt, "now" + (" overtakes" if held[out] else ""))
                    try:
                        os.write(out, pkt)
                    except OSError:
                        pass
                else:
                    st["delayed"] += 1
                    log(fd, pkt, "delayed")
                    held[out] += 1
                    seq += 1
                    heapq.heappush(queue, (time.monotonic() + delay, seq, out, pkt))
        if time.monotonic() - last_dump >= 1.0:
            dump()
            last_dump = time.monotonic()
    dump()
    return 0


if __name__ == "__main__":
    sys.exit(main())
