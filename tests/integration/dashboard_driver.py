#!/usr/bin/env python3
"""Drives the rackboot web dashboard in a real headless Chromium through the
DevTools protocol (CDP), with the Python standard library only: http.client
for the DevTools HTTP endpoints and a minimal RFC 6455 websocket client
(handshake, masked client frames, fragmented and control frames).

    dashboard_driver.py

Everything comes from the environment (test_dashboard.sh sets it):
  RB_BASE      http://127.0.0.1:PORT of a running rackbootd
  RB_OPTOKEN   an operator token it accepts
  RB_MAC       a node with the DGX inventory (8 GPUs), provisioning
  RB_STATE0    its state now, as the API shows it
  RB_MAC2      a second node (commodity inventory, no GPU), discovered
  RB_AGENT     the per-boot token of RB_MAC's current provision boot
  RB_OUT       folder for the screenshots
  RB_TMP       scratch folder (Chromium's profile)
  CHROMIUM     the browser binary

The simulated agent is curl, POSTing status and progress with RB_AGENT as
an agent does. Each check prints "ok   - ..." or "FAIL - ..."; the exit
status is the number of failures (capped at 100), 2 when the browser
cannot be started or driven at all.
"""
import base64
import hashlib
import http.client
import json
import os
import secrets
import select
import socket
import struct
import subprocess
import sys
import time
import urllib.parse

WAIT_S = 15


class CdpError(Exception):
    pass


class WebSocket:
    """Client side of RFC 6455, enough for CDP: text frames out (masked),
    text/continuation/ping/close in."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, url, timeout=30):
        u = urllib.parse.urlsplit(url)
        if u.scheme != "ws":
            raise CdpError("not a ws:// URL: %r" % url)
        self.sock = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(secrets.token_bytes(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (path, u.hostname, u.port or 80, key))
        self.sock.sendall(req.encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise CdpError("websocket handshake: connection closed")
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        if " 101 " not in lines[0] + " ":
            raise CdpError("websocket handshake refused: %s" % lines[0])
        want = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        accept = [l.split(":", 1)[1].strip() for l in lines[1:]
                  if l.lower().startswith("sec-websocket-accept:")]
        if accept != [want]:
            raise CdpError("websocket handshake: bad Sec-WebSocket-Accept")

    def _frame(self, opcode, payload):
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 1 << 16:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = secrets.token_bytes(4)
        body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + mask + body)

    def send(self, text):
        self._frame(0x1, text.encode())

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                raise TimeoutError
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise CdpError("websocket closed by the browser")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self, timeout):
        """One whole text message, or TimeoutError."""
        deadline = time.monotonic() + timeout
        parts = []
        while True:
            b0, b1 = self._read(2, deadline)
            fin, opcode, n = b0 & 0x80, b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2, deadline))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8, deadline))[0]
            mask = self._read(4, deadline) if b1 & 0x80 else None
            payload = self._read(n, deadline)
            if mask:
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode == 0xA:
                continue
            if opcode == 0x8:
                raise CdpError("websocket closed by the browser")
            parts.append(payload)
            if fin:
                return b"".join(parts).decode()

    def close(self):
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class Browser:
    def __init__(self, binary, profile_dir):
        os.makedirs(profile_dir, exist_ok=True)
        self.log = open(os.path.join(profile_dir, "chromium.log"), "w")
        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu",
                "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-sync",
                "--disable-component-update", "--password-store=basic",
                "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1",
                "--user-data-dir=" + profile_dir, "--window-size=1400,1000", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        portfile = os.path.join(profile_dir, "DevToolsActivePort")
        deadline = time.monotonic() + 30
        port = None
        while time.monotonic() < deadline and port is None:
            if self.proc.poll() is not None:
                raise CdpError("chromium exited with %d (see %s)" % (self.proc.returncode, self.log.name))
            try:
                with open(portfile) as f:
                    first = f.readline().strip()
                if first:
                    port = int(first)
            except (OSError, ValueError):
                time.sleep(0.1)
        if port is None:
            raise CdpError("chromium wrote no DevToolsActivePort within 30 s")
        self.port = port
        page = None
        while time.monotonic() < deadline and page is None:
            targets = self._http("GET", "/json/list")
            page = next((t for t in targets if t.get("type") == "page"), None)
            if page is None:
                time.sleep(0.1)
        if page is None:
            raise CdpError("chromium shows no page target")
        self.ws = WebSocket(page["webSocketDebuggerUrl"])
        self.next_id = 0
        self.events = []

    def _http(self, method, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request(method, path)
        r = c.getresponse()
        body = r.read()
        c.close()
        return json.loads(body)

    def call(self, method, timeout=WAIT_S, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError("%s: no answer within %d s" % (method, timeout))
            try:
                msg = json.loads(self.ws.recv(left))
            except TimeoutError:
                continue
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CdpError("%s: %s" % (method, msg["error"].get("message")))
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def pump(self):
        """Collects the events that arrived meanwhile."""
        try:
            while True:
                msg = json.loads(self.ws.recv(0.01))
                if "method" in msg:
                    self.events.append(msg)
        except TimeoutError:
            pass

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError("evaluate %r: %s" % (expr[:80], d.get("exception", {}).get("description", d.get("text"))))
        return r.get("result", {}).get("value")

    def wait(self, expr, timeout=WAIT_S):
        """Polls a JS expression until it is truthy; returns its value or None."""
        deadline = time.monotonic() + timeout
        while True:
            v = self.eval(expr)
            if v:
                return v
            if time.monotonic() > deadline:
                return None
            time.sleep(0.1)

    def click(self, selector):
        """A real mouse click (press and release) at the element's centre."""
        rect = self.eval("""(() => { const e = document.querySelector(%s);
            if (!e) return null; e.scrollIntoView({block: 'center'});
            const r = e.getBoundingClientRect();
            return r.width && r.height ? [r.x + r.width / 2, r.y + r.height / 2] : null; })()"""
                         % json.dumps(selector))
        if not rect:
            raise CdpError("nothing visible to click at %s" % selector)
        x, y = rect
        self.call("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        self.call("Input.dispatchMouseEvent", type="mousePressed", x=x, y=y, button="left", clickCount=1)
        self.call("Input.dispatchMouseEvent", type="mouseReleased", x=x, y=y, button="left", clickCount=1)

    def type_into(self, selector, text):
        self.eval("(() => { const e = document.querySelector(%s); e.focus(); e.select && e.select(); })()"
                  % json.dumps(selector))
        self.call("Input.insertText", text=text)

    def screenshot(self, path):
        r = self.call("Page.captureScreenshot", timeout=30, format="png")
        data = base64.b64decode(r["data"])
        with open(path, "wb") as f:
            f.write(data)
        return data

    def close(self):
        try:
            self.call("Browser.close", timeout=5)
        except (CdpError, OSError):
            pass
        try:
            self.ws.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Test:
    def __init__(self):
        self.fails = 0

    def check(self, name, ok, why=""):
        if ok:
            print("ok   - " + name, flush=True)
        else:
            self.fails += 1
            print("FAIL - " + name + (": " + str(why) if why else ""), flush=True)
        return ok


def curl_json(method, url, token, body=None):
    """curl, as the agent and an operator's script would; returns (status, doc)."""
    args = ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method,
            "-H", "Authorization: Bearer " + token]
    if body is not None:
        args += ["-H", "Content-Type: application/json", "--data", json.dumps(body)]
    out = subprocess.run(args + [url], capture_output=True, text=True, timeout=30).stdout
    text, _, code = out.rpartition("\n")
    try:
        doc = json.loads(text) if text else None
    except ValueError:
        doc = None
    return int(code or 0), doc


def main():
    env = os.environ
    base, optoken, mac, mac2 = env["RB_BASE"], env["RB_OPTOKEN"], env["RB_MAC"], env["RB_MAC2"]
    agent, out = env["RB_AGENT"], env["RB_OUT"]
    t = Test()

    def agent_status(doc):
        code, _ = curl_json("POST", "%s/api/v1/nodes/%s/status" % (base, mac), agent, doc)
        if code != 200:
            raise CdpError("agent status report %r answered %d" % (doc, code))

    def node_api(m):
        return curl_json("GET", "%s/api/v1/nodes/%s" % (base, m), optoken)[1] or {}

    def row(sel):
        return "document.querySelector('#nodes tr[data-mac=\"%s\"] %s')" % (mac, sel)

    try:
        b = Browser(env.get("CHROMIUM", "chromium"), os.path.join(env["RB_TMP"], "chromium"))
    except (CdpError, OSError) as e:
        print("FAIL - start chromium and attach over CDP: %s" % e)
        return 2
    try:
        b.call("Runtime.enable")
        b.call("Log.enable")
        b.call("Page.enable")
        # Every CSP violation the page causes is kept on window.__csp.
        b.call("Page.addScriptToEvaluateOnNewDocument", source="""
            window.__csp = [];
            document.addEventListener('securitypolicyviolation',
                (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));""")
        b.call("Page.navigate", url=base + "/ui/")

        t.check("the page loads and asks for a token",
                b.wait("document.readyState === 'complete' && !document.getElementById('login').hidden"))
        t.check("the page loaded its script and style (CSP allows them)",
                b.eval("getComputedStyle(document.querySelector('header.top')).display === 'flex'"))

        b.type_into("#token", "rbo_" + "0" * 48)
        b.click("#login-submit")
        err = b.wait("document.getElementById('login-error').textContent")
        t.check("a wrong token is refused on the page, with the server's reason",
                err and "refused" in err and b.eval("document.getElementById('nodes-view').hidden"), err)

        b.type_into("#token", optoken)
        b.click("#login-submit")
        t.check("after sign-in the nodes table shows both nodes",
                b.wait("document.querySelectorAll('#nodes tbody tr').length === 2"),
                b.eval("document.querySelector('#nodes tbody').textContent"))
        t.check("the token is kept in sessionStorage only",
                b.eval("sessionStorage.getItem('rackboot.token') === %s && localStorage.length === 0"
                       % json.dumps(optoken)))
        t.check("the row shows the node's state as the API has it (%s)" % env["RB_STATE0"],
                b.wait(row(".state") + "?.textContent === %s" % json.dumps(env["RB_STATE0"])),
                b.eval(row(".state") + "?.textContent"))
        t.check("the other node's row shows discovered",
                b.wait("document.querySelector('#nodes tr[data-mac=\"%s\"] .state')?.textContent"
                       " === 'discovered'" % mac2))
        gpus = b.wait(row(".gpus") + "?.textContent")
        t.check("GPU count from the inventory: 8 on the DGX node", gpus == "8", gpus)
        gpus2 = b.wait("document.querySelector('#nodes tr[data-mac=\"%s\"] .gpus')?.textContent === '0'" % mac2)
        t.check("GPU count 0 on the commodity node", gpus2)
        t.check("the event stream is connected", b.wait("document.getElementById('conn').textContent === 'live'"),
                b.eval("document.getElementById('conn').textContent"))

        # From here the page must update itself: a marker on window survives
        # only if nothing reloads it.
        marker = secrets.token_hex(8)
        b.eval("window.__marker = %s" % json.dumps(marker))

        agent_status({"state": "wiping", "step": "wipe metadata"})
        st = b.wait(row(".state") + "?.textContent === 'wiping'")
        t.check("a state the agent reports appears live (wiping)", st, b.eval(row(".state") + "?.textContent"))
        t.check("the step shows in the row", b.wait(row(".step") + "?.textContent === 'wipe metadata'"))

        total = 4 << 30
        agent_status({"state": "imaging", "step": "write", "bytes_done": 1 << 30,
                      "bytes_total": total, "rate": 200 << 20})
        v = b.wait("(%s?.value === %d) && %s.value" % (row("progress"), 1 << 30, row("progress")))
        t.check("progress bar appears live at 1 GiB of 4 GiB", v == 1 << 30, b.eval(row("td.prog") + "?.textContent"))
        txt = b.eval(row(".prog-text") + "?.textContent") or ""
        t.check("progress text has percent, rate and ETA (25% · 200 MiB/s · ETA 15s)",
                "25%" in txt and "200 MiB/s" in txt and "ETA 15s" in txt, txt)
        t.check("the row's state is imaging", b.eval(row(".state") + "?.textContent") == "imaging")

        agent_status({"state": "imaging", "step": "write", "bytes_done": 3 << 30,
                      "bytes_total": total, "rate": 256 << 20})
        v = b.wait("(%s?.value === %d) && %s.value" % (row("progress"), 3 << 30, row("progress")))
        t.check("progress value changes live (3 GiB of 4 GiB)", v == 3 << 30, b.eval(row("td.prog") + "?.textContent"))
        txt = b.eval(row(".prog-text") + "?.textContent") or ""
        t.check("rate and ETA follow (75% · 256 MiB/s · ETA 4s)",
                "75%" in txt and "256 MiB/s" in txt and "ETA 4s" in txt, txt)

        b.eval("(() => { const s = document.getElementById('f-state'); s.value = 'imaging';"
               " s.dispatchEvent(new Event('change')); })()")
        vis = b.eval("[...document.querySelectorAll('#nodes tbody tr')].filter(r => !r.hidden).map(r => r.dataset.mac)")
        t.check("state filter 'imaging' shows only the imaging node", vis == [mac], vis)
        b.eval("(() => { const s = document.getElementById('f-state'); s.value = '';"
               " s.dispatchEvent(new Event('change')); })()")
        n = b.eval("[...document.querySelectorAll('#nodes tbody tr')].filter(r => !r.hidden).length")
        t.check("clearing the filter shows both again", n == 2, n)

        os.makedirs(out, exist_ok=True)
        png1 = os.path.join(out, "dashboard-nodes.png")
        data = b.screenshot(png1)
        t.check("screenshot of the nodes table while imaging: " + png1,
                data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, len(data))

        agent_status({"state": "imaged", "step": "done", "bytes_done": total, "bytes_total": total, "rate": 0})
        t.check("state imaged appears live, the progress bar goes",
                b.wait(row(".state") + "?.textContent === 'imaged' && !" + row("progress")))
        # Stage 2: the agent installs the packages and reports the node ready
        # with what it installed.
        agent_status({"state": "installing", "step": "packages"})
        t.check("state installing appears live",
                b.wait(row(".state") + "?.textContent === 'installing'"))
        agent_status({"state": "ready", "reboot_required": False,
                      "installed": {"image": {"name": "debian12", "version": "10"},
                                    "packages": [{"name": "nvidia-driver", "version": "550.54.15"}]}})
        t.check("state ready appears live",
                b.wait(row(".state") + "?.textContent === 'ready'"))
        t.check("no reload happened: every change came from the event stream",
                b.eval("window.__marker") == marker)

        b.click("#nodes tr[data-mac=\"%s\"] a" % mac)
        t.check("clicking the MAC opens the node page",
                b.wait("!document.getElementById('node-view').hidden && "
                       "document.getElementById('n-title').textContent.includes(%s)" % json.dumps(mac)))
        inv = b.wait("document.getElementById('n-inventory').textContent.includes('DGXH100') && "
                     "document.getElementById('n-inventory').textContent")
        t.check("node page shows the inventory (DGXH100, GPUs, disks, NICs)",
                inv and "Xeon" in inv and "nvme0n1" in inv and "eno1" in inv, (inv or "")[:200])
        evs = b.wait("[...document.querySelectorAll('#n-events tbody tr')].map(r => r.cells[1].textContent)")
        t.check("node page lists the node's events, newest first (agent.ready on top)",
                evs and evs[0] == "agent.ready" and "agent.imaged" in evs and "agent.wiping" in evs, evs)
        if node_api(mac).get("installed"):
            inst = b.wait("document.getElementById('n-installed').textContent.includes('nvidia-driver') && "
                          "document.getElementById('n-installed').textContent")
            t.check("node page shows the installed image and packages",
                    inst and "debian12 10" in inst and "550.54.15" in inst, inst)
        else:
            print("note - the node document has no \"installed\" yet: the Installed card is not checked",
                  flush=True)

        b.click("#a-reimage")
        t.check("Reimage opens a confirmation dialog", b.wait("document.getElementById('confirm').open"))
        b.click("#c-cancel")
        time.sleep(0.5)
        st = node_api(mac).get("state")
        t.check("Cancel closes it and changes nothing (API: still ready)",
                not b.eval("document.getElementById('confirm').open") and st == "ready", st)

        b.click("#a-reimage")
        b.wait("document.getElementById('confirm').open")
        b.eval("document.getElementById('c-wipe').value = 'full'")
        b.click("#c-ok")
        t.check("Confirm runs the action and closes the dialog",
                b.wait("!document.getElementById('confirm').open"),
                b.eval("document.getElementById('c-error').textContent"))
        doc = node_api(mac)
        t.check("the API shows the node back in provisioning after reimage",
                doc.get("state") in ("provisioning", "reimage"), doc.get("state"))
        t.check("the node page shows the new state",
                b.wait("document.getElementById('n-state').textContent === %s" % json.dumps(doc.get("state"))),
                b.eval("document.getElementById('n-state').textContent"))
        t.check("the reimage event arrives on the node page live",
                b.wait("[...document.querySelectorAll('#n-events tbody tr')].some(r => /reimage/.test(r.textContent))"))

        b.click("#a-hold")
        b.wait("document.getElementById('confirm').open")
        b.click("#c-ok")
        b.wait("!document.getElementById('confirm').open")
        t.check("Hold after confirmation: the API says held",
                node_api(mac).get("held") is True and b.wait("!document.getElementById('n-held').hidden"))
        b.click("#a-release")
        b.wait("document.getElementById('confirm').open")
        b.click("#c-ok")
        b.wait("!document.getElementById('confirm').open")
        t.check("Release after confirmation: the API says not held",
                node_api(mac).get("held") is False and b.wait("document.getElementById('n-held').hidden"))

        png2 = os.path.join(out, "dashboard-node.png")
        data = b.screenshot(png2)
        t.check("screenshot of the node page: " + png2, data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000)

        b.pump()
        exc = [e["params"]["exceptionDetails"].get("exception", {}).get("description", "")
               for e in b.events if e["method"] == "Runtime.exceptionThrown"]
        t.check("no uncaught JavaScript exception", not exc, exc)
        csp = b.eval("window.__csp")
        t.check("no Content-Security-Policy violation", csp == [], csp)
    except CdpError as e:
        t.check("drive the page", False, e)
    finally:
        b.close()
    return min(t.fails, 100)


if __name__ == "__main__":
    sys.exit(main())
