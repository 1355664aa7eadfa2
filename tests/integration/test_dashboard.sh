#!/bin/sh
# The web dashboard in a real browser: Debian's headless Chromium, driven
# over the DevTools protocol by dashboard_driver.py (Python standard library
# only), against the real rackbootd on 127.0.0.1 with an operator token made
# by "rackbootd token create". Two nodes boot and send the agent's real
# inventories (DGX: 8 GPUs, commodity: none); an operator provisions one
# through the API; curl then plays its agent (status and progress with the
# node's per-boot token) while the page must show the rows, the state and
# the progress changing without a reload; the test clicks Reimage, cancels,
# clicks it again and confirms, and checks through the API that the node
# went back to provisioning; Hold and Release the same way. Screenshots go
# to $RB_BUILD/meson-logs/dashboard/ (printed). Also checks the served
# files' headers (types, CSP, caching, 304, 301, 404, 405) with curl.
# Skipped (77) only when chromium is not installed. Starts its own rackbootd
# and Chromium and kills only those PIDs.
set -u

RB_BUILD=$(cd "${RB_BUILD:-$(dirname "$0")/../../build}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
BIN=$RB_SRV
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "SKIP: chromium not installed (apt-get install chromium)"; exit 77; }
[ -x "$BIN" ] || { echo "FAIL: $BIN not built"; exit 1; }
for t in curl python3; do
	command -v "$t" >/dev/null || { echo "FAIL: $t not installed"; exit 1; }
done

rb_setup dash
TMP=$RB_TMP
OUT=$RB_BUILD/meson-logs/dashboard

PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
mkdir -p "$TMP/boot" "$TMP/repo" "$TMP/state" "$OUT"
cat >"$TMP/rackbootd.conf" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
default_profile = "deb"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$TMP/boot"
	repo_root = "$TMP/repo"
}
api { tokens_file = "$TMP/state/tokens" }
discovery {
	kernel = "vmlinuz"
	initrd = "initrd.img"
	cmdline = "console=ttyS0"
}
profile "deb" {
	image = "debian12"
	version = "latest"
	wipe = "metadata"
}
EOF

OPTOKEN=$("$BIN" -c "$TMP/rackbootd.conf" token create dashboard-test 2>"$TMP/token.err" |
	grep -Eo 'rbo_[0-9a-f]{48}' | head -n 1)
[ -n "$OPTOKEN" ] || { echo "FAIL: rackbootd token create:"; cat "$TMP/token.err"; exit 1; }

rb_start_server "$B/ui/" "$BIN" -c "$TMP/rackbootd.conf" -v

# --- the served files ----------------------------------------------------------
hdr() { # hdr NAME: the header's value in $TMP/hdr
	sed -n "s/^$1: *//Ip" "$TMP/hdr" | tr -d '\r' | head -n 1
}
st=$(curl -s -D "$TMP/hdr" -o "$TMP/page" -w '%{http_code}' "$B/ui/")
check "GET /ui/ is 200 text/html; charset=utf-8" \
	[ "$st" = 200 -a "$(hdr Content-Type)" = "text/html; charset=utf-8" ]
check "/ui/ is the dashboard page (loads app.js and app.css, no inline script)" \
	sh -c "grep -q '<script src=\"app.js\"' '$TMP/page' && grep -q 'href=\"app.css\"' '$TMP/page' && ! grep -q '<script>' '$TMP/page' && ! grep -qi 'http[s]*://' '$TMP/page'"
CSP=$(hdr Content-Security-Policy)
check "strict CSP: default-src 'none', script/style/connect only 'self', no frames" \
	sh -c "echo \"\$1\" | grep -q \"default-src 'none'\" && echo \"\$1\" | grep -q \"script-src 'self';\" && echo \"\$1\" | grep -q \"style-src 'self';\" && echo \"\$1\" | grep -q \"connect-src 'self'\" && echo \"\$1\" | grep -q \"frame-ancestors 'none'\" && ! echo \"\$1\" | grep -q unsafe" \
	sh "$CSP"
check "nosniff, no referrer" [ "$(hdr X-Content-Type-Options)" = nosniff -a "$(hdr Referrer-Policy)" = no-referrer ]
ETAG=$(hdr ETag)
check "Cache-Control: no-cache with a strong ETag" \
	sh -c "[ '$(hdr Cache-Control)' = no-cache ] && echo '$ETAG' | grep -Eq '^\"[0-9a-f]{16}\"$'"
st=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $ETAG" "$B/ui/")
check "If-None-Match with its ETag is 304" [ "$st" = 304 ]
st=$(curl -s -o /dev/null -w '%{http_code}' -H 'If-None-Match: "0000000000000000"' "$B/ui/")
check "another ETag is 200" [ "$st" = 200 ]
st=$(curl -s -D "$TMP/hdr" -o "$TMP/js" -w '%{http_code}' "$B/ui/app.js")
check "app.js is text/javascript and the file from templates/web" \
	sh -c "[ '$st' = 200 ] && [ '$(hdr Content-Type)' = 'text/javascript; charset=utf-8' ] && cmp -s '$TMP/js' '$HERE/../../templates/web/app.js'"
st=$(curl -s -D "$TMP/hdr" -o /dev/null -w '%{http_code}' "$B/ui/app.css")
check "app.css is text/css" [ "$st" = 200 -a "$(hdr Content-Type)" = "text/css; charset=utf-8" ]
st=$(curl -s -D "$TMP/hdr" -o /dev/null -w '%{http_code}' "$B/ui")
check "/ui redirects to /ui/ (301)" [ "$st" = 301 -a "$(hdr Location)" = /ui/ ]
st=$(curl -s -D "$TMP/hdr" -o /dev/null -w '%{http_code}' "$B/ui/nope.js")
check "an unknown file is 404, with the CSP too" [ "$st" = 404 -a -n "$(hdr Content-Security-Policy)" ]
st=$(curl -s -o /dev/null -w '%{http_code}' --path-as-is "$B/ui/%2e%2e/app.js")
check "encoded ../ below /ui/ is 404" [ "$st" = 404 ]
st=$(curl -s -o /dev/null -w '%{http_code}' -X POST --data x "$B/ui/")
check "POST /ui/ is refused (405 or 413)" sh -c "[ '$st' = 405 ] || [ '$st' = 413 ]"
st=$(curl -s -o /dev/null -w '%{http_code}' -I "$B/ui/app.js")
check "HEAD /ui/app.js is 200" [ "$st" = 200 ]

# --- two nodes boot and send their inventories (curl as the agent) -------------
MAC=52:54:00:da:5b:01
MAC2=52:54:00:da:5b:02
script_token() { # script_token MAC: the token on the kernel line of its script
	curl -sf "$B/boot/$1.ipxe" | sed -n 's/^kernel .* rackboot\.token=\([^ ]*\) .*/\1/p'
}
post() { # post TOKEN URL JSON-or-@file: prints the status
	curl -s -o "$TMP/body" -w '%{http_code}' -X POST -H "Authorization: Bearer $1" \
		-H 'Content-Type: application/json' --data-binary "$3" "$2"
}
api() { # api METHOD PATH [curl args]: operator API; status printed, body in $TMP/body
	m=$1
	p=$2
	shift 2
	curl -s -o "$TMP/body" -w '%{http_code}' -X "$m" -H "Authorization: Bearer $OPTOKEN" "$@" "$B/api/v1$p"
}
jq_py() { rb_json "$1"; }

T1=$(script_token $MAC)
T2=$(script_token $MAC2)
st1=$(post "$T1" "$B/api/v1/nodes/$MAC/inventory" @"$HERE/../data/inventory/dgx/inventory.json")
st2=$(post "$T2" "$B/api/v1/nodes/$MAC2/inventory" @"$HERE/../data/inventory/commodity/inventory.json")
check "both agents' inventories are accepted" [ "$st1" = 200 -a "$st2" = 200 ]

st=$(api POST "/nodes/$MAC/actions/provision" -H 'Content-Type: application/json' --data '{}')
check "operator API: provision the DGX node (200)" [ "$st" = 200 ]
# The node reboots into the provision script: its agent's token.
TP=$(script_token $MAC)
check "its provision script carries a new boot token" sh -c "echo '$TP' | grep -Eqx '[0-9a-f]{32}' && [ '$TP' != '$T1' ]"
api GET "/nodes/$MAC" >/dev/null
STATE0=$(jq_py 'd["state"]')
check "the API shows it provisioning" [ "$STATE0" = provisioning ]

RB_BASE=$B RB_OPTOKEN=$OPTOKEN RB_STATE0=$STATE0 RB_MAC=$MAC RB_MAC2=$MAC2 RB_AGENT=$TP RB_OUT=$OUT RB_TMP=$TMP \
	CHROMIUM=$CHROMIUM python3 "$HERE/dashboard_driver.py"
rc=$?
[ $rc -eq 0 ] || fail "$rc browser check(s) failed"

st=$(api GET "/nodes/$MAC")
check "after the browser: the API shows the reimaged node provisioning, not held" \
	[ "$st" = 200 -a "$(jq_py 'd["state"] in ("provisioning", "reimage"), d.get("held")')" = "True False" ]
for f in dashboard-nodes.png dashboard-node.png; do
	check "screenshot $OUT/$f is a PNG" sh -c "head -c 8 '$OUT/$f' | od -An -tx1 | tr -d ' \n' | grep -qx 89504e470d0a1a0a"
done
echo "screenshots: $OUT/dashboard-nodes.png $OUT/dashboard-node.png"

rb_finish
