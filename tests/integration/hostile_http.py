#!/usr/bin/env python3
"""A misbehaving HTTP front for a rackboot repository, for the agent's fault
tests: the hostile party between the agent and the real rackbootd (it is no
mock of rackboot code: every byte of the repository comes from rackbootd).

    hostile_http.py PORTFILE UPSTREAM [options]

Listens on 127.0.0.1 (port chosen by the kernel, written to PORTFILE once
listening) and forwards GET requests, Range header included, to UPSTREAM
(http://127.0.0.1:PORT). Requests whose path contains /packs/ can be made
to misbehave:

  --rate BPS        send pack bodies at BPS bytes/s (throttle)
  --count FILE      write the total pack body bytes sent so far to FILE
  --cut PACK:OFF    for a range of pack PACK that holds pack offset OFF,
                    send the headers upstream gave (full Content-Length),
                    then only the body bytes before OFF, then close the
                    connection (a resumed request from OFF gets no byte)
  --stall           send the response headers upstream gave, then nothing
                    (the connection stays open until the client leaves)
  --redirect URL    answer 302 with Location: URL (no upstream request)
  --redirect-all    apply --redirect to every path, not only packs

When UPSTREAM does not answer, the client gets 502; when it dies in the
middle of a body, the client's connection is closed in the middle too.
"""
import argparse
import http.client
import http.server
import os
import socket
import sys
import threading
import time
import urllib.parse

lock = threading.Lock()
sent_total = 0


def count(args, n):
    global sent_total
    with lock:
        sent_total += n
        if args.count:
            tmp = args.count + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d\n" % sent_total)
            os.replace(tmp, args.count)


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
            is_pack = "/packs/" in self.path
            if args.redirect and (is_pack or args.redirect_all):
                self.send_response(302)
                self.send_header("Location", args.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            try:
                c = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
                hdrs = {}
                if self.headers.get("Range"):
                    hdrs["Range"] = self.headers["Range"]
                c.request("GET", self.path, headers=hdrs)
                r = c.getresponse()
            except OSError as e:
                body = ("upstream: %s\n" % e).encode()
                self.send_response(502)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            self.send_response(r.status)
            for k in ("Content-Length", "Content-Range", "Content-Type", "Accept-Ranges"):
                if r.getheader(k) is not None:
                    self.send_header(k, r.getheader(k))
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
            limit = None
            if is_pack and cut_pack and cut_pack in self.path:
                start, end = 0, int(r.getheader("Content-Length") or 0) - 1
                cr = r.getheader("Content-Range") or ""
                if cr.startswith("bytes ") and "-" in cr:
                    a, b = cr[6:].split("/")[0].split("-")
                    start, end = int(a), int(b)
                if start <= cut_off <= end:  # only the range holding OFF
                    limit = cut_off - start
            sent = 0
            t0 = time.monotonic()
            while True:
                want = 16384
                if limit is not None:
                    want = min(want, limit - sent)
                    if want <= 0:
                        break
                try:
                    b = r.read(want)
                except (OSError, http.client.HTTPException):
                    b = b""  # upstream died in the middle
                if not b:
                    break
                try:
                    self.wfile.write(b)
                except OSError:
                    break
                sent += len(b)
                if is_pack:
                    count(args, len(b))
                    if args.rate:
                        ahead = sent / args.rate - (time.monotonic() - t0)
                        if ahead > 0:
                            time.sleep(ahead)
            c.close()
            clen = r.getheader("Content-Length")
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
    p.add_argument("--count")
    p.add_argument("--cut")
    p.add_argument("--stall", action="store_true")
    p.add_argument("--redirect")
    p.add_argument("--redirect-all", action="store_true")
    args = p.parse_args()
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make_handler(args))
    srv.daemon_threads = True
    tmp = args.portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % srv.server_address[1])
    os.replace(tmp, args.portfile)
    srv.serve_forever()


if __name__ == "__main__":
    main()
