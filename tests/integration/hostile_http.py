#!/usr/bin/env python3
"""A misbehaving HTTP front for a rackboot repository, for the agent's fault
tests: the hostile party between the agent and the real rackbootd (it is no
mock of rackboot code: every byte of the repository comes from rackbootd).

    hostile_http.py PORTFILE UPSTREAM [options]

Listens on 127.0.0.1 (or --listen ADDR; port chosen by the kernel, written to PORTFILE once
listening) and forwards GET requests, Range header included, to UPSTREAM
(http://127.0.0.1:PORT). Requests whose path contains /packs/ (or the
--match text) can be made to misbehave:

  --rate BPS        send pack bodies at BPS bytes/s (throttle)
  --step BYTES      fetch a pack range from upstream BYTES at a time, each
                    piece when the client has taken the one before: when
                    upstream dies, the transfers in progress break at once
                    (a whole range asked in one go would sit in the kernel's
                    socket buffers and outlive the server)
  --cut PACK:OFF    for a range of pack PACK that holds pack offset OFF,
                    send the headers upstream gave (full Content-Length),
                    then only the body bytes before OFF, then close the
                    connection (a resumed request from OFF gets no byte)
  --stall           send the response headers upstream gave, then nothing
                    (the connection stays open until the client leaves)
  --redirect URL    answer 302 with Location: URL (no upstream request)
  --redirect-all    apply --redirect to every path, not only packs
  --redirect-base B answer 302 with Location: B + the request's path (B like
                    http://127.0.0.2:PORT: the same file on another host)
  --pad N           append N bytes to the body (Content-Length grows, the
                    Content-Range does not): a response longer than asked
  --match TEXT      what a path must contain to misbehave (default /packs/)

When UPSTREAM does not answer, the client gets 502; when it dies in the
middle of a body, the client's connection is closed in the middle too.
"""
import argparse
import http.client
import http.server
import os
import socket
import sys
import time
import urllib.parse

UPSTREAM_ERRORS = (OSError, http.client.HTTPException, ValueError)


def make_handler(args):
    up = urllib.parse.urlsplit(args.upstream)
    cut_pack, cut_off = None, None
    if args.cut:
        cut_pack, off = args.cut.split(":")
        cut_off = int(off)

    class H(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt, *a):
            sys.stderr.write("hostile: %s\n" % (fmt % a))

        def do_GET(self):
            is_pack = args.match in self.path
            if (args.redirect or args.redirect_base) and (is_pack or args.redirect_all):
                self.send_response(302)
                self.send_header("Location", args.redirect or args.redirect_base + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            rng = self.headers.get("Range")
            step = 0
            if is_pack and args.step and rng and rng.startswith("bytes=") and "," not in rng:
                a, b = rng[6:].split("-")
                if a and b:
                    first, last, step = int(a), int(b), args.step
                    rng = "bytes=%d-%d" % (first, min(last, first + step - 1))
            c = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
            try:
                c.request("GET", self.path, headers={"Range": rng} if rng else {})
                r = c.getresponse()
            except UPSTREAM_ERRORS as e:
                body = ("upstream: %s\n" % e).encode()
                self.send_response(502)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            hdrs = {k: r.getheader(k) for k in
                    ("Content-Length", "Content-Range", "Content-Type", "Accept-Ranges")}
            if step and r.status == 206:
                # The client asked for first-last: answer for all of it.
                size = int(hdrs["Content-Range"].split("/")[1])
                last = min(last, size - 1)
                hdrs["Content-Length"] = str(last - first + 1)
                hdrs["Content-Range"] = "bytes %d-%d/%d" % (first, last, size)
            else:
                step = 0
            pad = args.pad if is_pack and r.status in (200, 206) else 0
            if pad and hdrs["Content-Length"] is not None:
                hdrs["Content-Length"] = str(int(hdrs["Content-Length"]) + pad)
            self.send_response(r.status)
            for k, v in hdrs.items():
                if v is not None:
                    self.send_header(k, v)
            self.end_headers()
            self.wfile.flush()
            if is_pack and args.stall:
                # Headers sent, then silence until the client gives up.
                self.connection.settimeout(None)
                try:
                    while self.connection.recv(4096):
                        pass
                except OSError:
                    pass
                self.close_connection = True
                return

            def body():
                """The body, piece by piece from upstream in --step mode;
                ends early where upstream fails."""
                cur, pos = r, (first if step else 0)
                while True:
                    try:
                        b = cur.read(16384)
                    except UPSTREAM_ERRORS:
                        return
                    if b:
                        pos += len(b)
                        yield b
                        continue
                    if not step or pos > last:
                        if pad:
                            yield b"\xa5" * pad
                        return
                    try:
                        c.request("GET", self.path, headers={
                            "Range": "bytes=%d-%d" % (pos, min(last, pos + step - 1))})
                        cur = c.getresponse()
                    except UPSTREAM_ERRORS:
                        return
                    if cur.status != 206:
                        return

            limit = None
            if is_pack and cut_pack and cut_pack in self.path:
                start, end = 0, int(hdrs["Content-Length"] or 0) - 1
                cr = hdrs["Content-Range"] or ""
                if cr.startswith("bytes ") and "-" in cr:
                    a, b = cr[6:].split("/")[0].split("-")
                    start, end = int(a), int(b)
                if start <= cut_off <= end:  # only the range holding OFF
                    limit = cut_off - start
            sent = 0
            t0 = time.monotonic()
            for b in body():
                if limit is not None:
                    b = b[:max(0, limit - sent)]
                    if not b:
                        break
                try:
                    self.wfile.write(b)
                except OSError:
                    break
                sent += len(b)
                if is_pack and args.rate:
                    ahead = sent / args.rate - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
            c.close()
            clen = hdrs["Content-Length"]
            if clen is not None and sent != int(clen):
                # Cut short (by --cut or by upstream dying): the client
                # must see a closed connection, not a finished response.
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    return H


def main():
    p = argparse.ArgumentParser()
    p.add_argument("portfile")
    p.add_argument("upstream")
    p.add_argument("--rate", type=int, default=0)
    p.add_argument("--step", type=int, default=0)
    p.add_argument("--cut")
    p.add_argument("--stall", action="store_true")
    p.add_argument("--redirect")
    p.add_argument("--redirect-all", action="store_true")
    p.add_argument("--redirect-base")
    p.add_argument("--pad", type=int, default=0)
    p.add_argument("--match", default="/packs/")
    p.add_argument("--listen", default="127.0.0.1")
    args = p.parse_args()
    srv = http.server.ThreadingHTTPServer((args.listen, 0), make_handler(args))
    srv.daemon_threads = True
    tmp = args.portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(tmp, args.portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
