#!/bin/sh
# The agent API of the real rackbootd on 127.0.0.1, driven with curl as an
# agent drives it: a repository built with rackboot-image (images and plain
# entries in a signed catalog.json), per-boot tokens taken from the kernel
# line of the rendered iPXE script, the plan ("latest" by version order,
# image types, 403 without or with a wrong or stale token, 409 without a
# profile), inventory and status reports (progress shown in the node
# document, state changes written with events, 400 for a bad state, 413 for
# a body over 1 MiB), the profile from a rule on the stored inventory (the
# agent's real inventory of the DGX fixture). The registry starts as a registry.db of the previous
# schema with a node in it, which must keep working.
# Starts its own rackbootd (DHCP and TFTP off) and kills only that PID.
set -u

. "$(dirname "$0")/lib.sh"
BIN=$RB_BUILD/pxe/rackbootd
IMG=$RB_BUILD/imager/rackboot-image
rb_need_bin "$BIN" "$IMG"
rb_need_cmd curl python3 tar truncate

rb_setup api
TMP=$RB_TMP

PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
DB=$TMP/state/registry.db

start_server() { rb_start_server "$B/boot/" "$BIN" -c "$1" -v; }

write_conf() { # write_conf FILE DEFAULT_PROFILE
	cat >"$1" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
log_level = "debug"
default_profile = "$2"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$TMP/boot"
	repo_root = "$TMP/repo"
}
discovery {
	kernel = "vmlinuz"
	initrd = "initrd.img"
	cmdline = "console=ttyS0"
}
profile "deb" {
	image = "debian12"
	version = "latest"
	wipe = "metadata"
	grow_last_partition = true
	after = "reboot"
}
profile "pinned" {
	image = "debian12"
	version = "9"
	wipe = "full"
	after = "poweroff"
	disk = "/dev/vdb"
}
profile "raw" {
	image = "site-raw"
}
profile "rootfs" {
	image = "site-rootfs"
	version = "1.0"
}
profile "gpunode" {
	image = "debian12"
	version = "2"
}
rule "gpu" {
	profile = "gpunode"
	gpu_vendor = "0x10de"
	min_gpus = 1
}
EOF
}

# sql STATEMENT: changes the registry as an operator would (sqlite).
sql() { rb_sql "$DB" "$1"; }

# code METHOD URL [curl args...]: prints the status; the body goes to $TMP/body
code() { rb_code "$@"; }

# jq_py EXPR: evaluates a Python expression over the JSON in $TMP/body (d)
jq_py() { rb_json "$1"; }

# script MAC: fetches the node's iPXE script; prints its token
script() {
	curl -sf -o "$TMP/script" "$B/boot/$1.ipxe" || return 1
	sed -n 's/^kernel .* rackboot\.token=\([^ ]*\) .*/\1/p' "$TMP/script"
}

auth() { echo "Authorization: Bearer $1"; }
# The node document is an operator endpoint: an operator token, made the
# way an operator makes one (in the state dir's tokens file, read by the
# running server).
OPAUTH=
optoken() { # optoken CONF
	t=$("$BIN" -c "$1" token create "api-plan-$$" 2>/dev/null) || { echo "token create failed"; exit 1; }
	OPAUTH="Authorization: Bearer $t"
}

# --- a repository made by the real tools ----------------------------------
mkdir -p "$TMP/repo" "$TMP/boot" "$TMP/state" "$TMP/rootfs"
"$IMG" keygen "$TMP/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
truncate -s 4M "$TMP/disk.img"
printf 'rackboot test disk' | dd of="$TMP/disk.img" bs=1 seek=1048576 conv=notrunc 2>/dev/null
# Versions 2, 10 and 9: "latest" is 10 by version order (a string sort says 9).
for v in 2 10 9; do
	"$IMG" build --repo "$TMP/repo" --key "$TMP/site.key" --name debian12 --version $v \
		"$TMP/disk.img" >/dev/null 2>&1 || { echo "FAIL: rackboot-image build $v"; exit 1; }
done
"$IMG" register --repo "$TMP/repo" --key "$TMP/site.key" --name site-raw --version 3 \
	"$TMP/disk.img" >/dev/null || { echo "FAIL: register raw"; exit 1; }
echo hello >"$TMP/rootfs/hello"
tar -C "$TMP/rootfs" -cf "$TMP/rootfs.tar" .
"$IMG" register --repo "$TMP/repo" --key "$TMP/site.key" --name site-rootfs --version 1.0 \
	"$TMP/rootfs.tar" >/dev/null || { echo "FAIL: register tar"; exit 1; }
check "repository has a signed catalogue" test -s "$TMP/repo/catalog.json" -a -s "$TMP/repo/catalog.json.sig"

# --- a registry.db of the previous release, with a node in it -------------
OLD=52:54:00:0d:0d:01
python3 - "$DB" "$OLD" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.executescript("""
PRAGMA journal_mode=WAL;
CREATE TABLE nodes (
  mac TEXT PRIMARY KEY, first_seen INTEGER NOT NULL, last_seen INTEGER NOT NULL,
  arch TEXT NOT NULL DEFAULT '', ip TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT 'new', profile TEXT NOT NULL DEFAULT '',
  hostname TEXT NOT NULL DEFAULT '');
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, mac TEXT NOT NULL, ts_ms INTEGER NOT NULL,
  event TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '');
CREATE INDEX events_mac ON events(mac, id);
""")
db.execute("INSERT INTO nodes(mac, first_seen, last_seen, arch, state, profile) "
           "VALUES(?, 1000, 2000, 'bios', 'provisioning', 'pinned')", (sys.argv[2],))
db.execute("INSERT INTO events(mac, ts_ms, event, detail) VALUES(?, 2000000, 'dhcp.offer', 'x')",
           (sys.argv[2],))
db.commit()
EOF

write_conf "$TMP/rackbootd.conf" deb
start_server "$TMP/rackbootd.conf"
optoken "$TMP/rackbootd.conf"

T0=$(script $OLD)
check "old registry: node boots the provision script" grep -q 'rackboot.mode=provision' "$TMP/script"
st=$(code GET "$B/api/v1/nodes/$OLD/plan" -H "$(auth "$T0")")
check "old registry: plan 200 for its profile (pinned debian12 9)" \
	[ "$st" = 200 -a "$(jq_py 'd["image"]["version"], d["profile"], d["wipe"], d["after"], d["disk"]')" = "9 pinned full poweroff /dev/vdb" ]
code GET "$B/api/v1/nodes/$OLD" -H "$OPAUTH" >/dev/null
check "old registry: node keeps its first_seen and old events" \
	[ "$(jq_py 'd["first_seen"], d["events"][0]["event"]')" = "1000 dhcp.offer" ]

# --- discovery: a new node ---------------------------------------------------
MAC=52:54:00:a1:b2:c3
TD=$(script $MAC)
check "discovery script has a 32-hex token on the kernel line" \
	sh -c "echo '$TD' | grep -Eqx '[0-9a-f]{32}'"
check "discovery script: rackboot.mac, .token and .mode=discovery in order" \
	grep -q "rackboot.server=$B rackboot.mac=$MAC rackboot.token=$TD rackboot.mode=discovery " "$TMP/script"
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TD")")
check "discovery plan: 200, action inventory, no image, poweroff" \
	[ "$st" = 200 -a "$(jq_py 'd["mode"], d["action"], "image" in d, d["after"]')" = "discovery inventory False poweroff" ]
st=$(code POST "$B/api/v1/nodes/$MAC/inventory" -H "$(auth "$TD")" \
	-H 'Content-Type: application/json' --data '{"cpus":4,"memory_bytes":8589934592,"disks":[{"name":"vda","size":10737418240}]}')
check "inventory POST is 200" [ "$st" = 200 ]
code GET "$B/api/v1/nodes/$MAC" -H "$OPAUTH" >/dev/null
check "node document shows the inventory and state discovered" \
	[ "$(jq_py 'd["inventory"]["cpus"], d["inventory"]["disks"][0]["name"], d["state"]')" = "4 vda discovered" ]
check "inventory wrote agent.inventory and agent.discovered events" \
	sh -c "python3 -c 'import json,sys; e=[x[\"event\"] for x in json.load(open(sys.argv[1]))[\"events\"]]; sys.exit(not (\"agent.inventory\" in e and \"agent.discovered\" in e))' '$TMP/body'"

# --- provisioning --------------------------------------------------------------
sql "UPDATE nodes SET state = 'provisioning' WHERE mac = '$MAC'"
TP=$(script $MAC)
check "provision script for a provisioning node, with a new token" \
	sh -c "grep -q 'rackboot.mode=provision ' '$TMP/script' && [ '$TP' != '$TD' ] && echo '$TP' | grep -Eqx '[0-9a-f]{32}'"
check "provision script: kernel line carries the token" \
	grep -q "^kernel $B/boot/vmlinuz initrd=initrd.img console=ttyS0 rackboot.server=$B rackboot.mac=$MAC rackboot.token=$TP rackboot.mode=provision " "$TMP/script"
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TD")")
check "the discovery boot's token no longer works (403)" [ "$st" = 403 ]
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TP")")
check "plan 200: default profile, latest = 10 by version order, type rackboot" \
	[ "$st" = 200 -a "$(jq_py 'd["mode"], d["action"], d["profile"], d["image"]["name"], d["image"]["version"], d["image"]["type"]')" = "provision image deb debian12 10 rackboot" ]
check "plan: profile_source default (its inventory matches no rule)" \
	[ "$(jq_py 'd["profile_source"]')" = "default" ]
check "plan: repo URL, disk, wipe, grow, after as configured" \
	[ "$(jq_py 'd["image"]["repo"], repr(d["disk"]), d["wipe"], d["grow_last_partition"], d["after"], d["state"]')" = "$B/repo '' metadata True reboot provisioning" ]
check "plan's repo URL serves the catalogue" curl -sf -o /dev/null "$B/repo/catalog.json"
st=$(code GET "$B/api/v1/nodes/$MAC/plan")
check "plan without a token is 403 JSON" [ "$st" = 403 -a -n "$(jq_py 'd["error"]')" ]
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth 0123456789abcdef0123456789abcdef)")
check "plan with a wrong token is 403" [ "$st" = 403 ]
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "Authorization: Basic $TP")
check "plan with the token under another scheme is 403" [ "$st" = 403 ]
st=$(code GET "$B/api/v1/nodes/52:54:00:ff:ff:ff/plan" -H "$(auth "$TP")")
check "plan for an unknown node is 404" [ "$st" = 404 ]
curl -s -I -o /dev/null "$B/boot/$MAC.ipxe"
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TP")")
check "HEAD of the script does not replace the token" [ "$st" = 200 ]

sql "UPDATE nodes SET profile = 'raw' WHERE mac = '$MAC'"
code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TP")" >/dev/null
check "profile raw: plain entry of kind raw is type plain, latest = 3" \
	[ "$(jq_py 'd["image"]["name"], d["image"]["version"], d["image"]["type"]')" = "site-raw 3 plain" ]
sql "UPDATE nodes SET profile = 'rootfs' WHERE mac = '$MAC'"
code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TP")" >/dev/null
check "profile rootfs: plain entry of kind tar is type rootfs" \
	[ "$(jq_py 'd["image"]["name"], d["image"]["version"], d["image"]["type"]')" = "site-rootfs 1.0 rootfs" ]
sql "UPDATE nodes SET profile = 'pinned' WHERE mac = '$MAC'"
code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TP")" >/dev/null
check "profile pinned: exact version 9" [ "$(jq_py 'd["image"]["version"], d["image"]["type"]')" = "9 rackboot" ]
sql "UPDATE nodes SET profile = 'gpu' WHERE mac = '$MAC'"
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TP")")
check "profile not in the config: 409 node has no profile" \
	sh -c "[ '$st' = 409 ] && grep -q 'node has no profile' '$TMP/body'"
sql "UPDATE nodes SET profile = '' WHERE mac = '$MAC'"

# --- a GPU node: no profile in the registry, the rule picks one ----------------
GPU=52:54:00:d9:00:01
INV=$(dirname "$0")/../data/inventory/dgx/inventory.json
TG=$(script $GPU)
st=$(code POST "$B/api/v1/nodes/$GPU/inventory" -H "$(auth "$TG")" \
	-H 'Content-Type: application/json' --data-binary @"$INV")
check "dgx inventory POST is 200" [ "$st" = 200 ]
sql "UPDATE nodes SET state = 'provisioning' WHERE mac = '$GPU'"
TG=$(script $GPU)
st=$(code GET "$B/api/v1/nodes/$GPU/plan" -H "$(auth "$TG")")
check "dgx node without a profile: plan picks gpunode by rule gpu (debian12 2)" \
	[ "$st" = 200 -a "$(jq_py 'd["profile"], d["profile_source"], d["image"]["name"], d["image"]["version"]')" = "gpunode rule:gpu debian12 2" ]
sql "UPDATE nodes SET profile = 'pinned' WHERE mac = '$GPU'"
st=$(code GET "$B/api/v1/nodes/$GPU/plan" -H "$(auth "$TG")")
check "dgx node with a registry profile: it wins over the rule (profile_source node)" \
	[ "$st" = 200 -a "$(jq_py 'd["profile"], d["profile_source"], d["image"]["version"]')" = "pinned node 9" ]

# --- status reports --------------------------------------------------------------
status() { # status TOKEN JSON: prints the HTTP status
	code POST "$B/api/v1/nodes/$MAC/status" -H "$(auth "$1")" -H 'Content-Type: application/json' --data "$2"
}
events() { # number of events of the node
	code GET "$B/api/v1/nodes/$MAC" -H "$OPAUTH" >/dev/null
	jq_py 'len(d["events"])'
}
st=$(status "$TP" '{"state":"wiping","step":"wipe metadata"}')
code GET "$B/api/v1/nodes/$MAC" -H "$OPAUTH" >/dev/null
check "status wiping: 200, state written, event agent.wiping" \
	[ "$st" = 200 -a "$(jq_py 'd["state"], d["events"][-1]["event"], d["events"][-1]["detail"]')" = "wiping agent.wiping wipe metadata" ]
check "a node being wiped keeps booting the agent" \
	sh -c "curl -sf -I '$B/boot/$MAC.ipxe' >/dev/null && curl -s '$B/boot/$MAC.ipxe' | grep -q 'rackboot.mode=provision'"
TP=$(script $MAC)
st=$(status "$TP" '{"state":"imaging","step":"write","bytes_done":0,"bytes_total":4194304,"rate":0}')
check "status imaging is 200" [ "$st" = 200 ]
n0=$(events)
for i in 1 2 3; do
	status "$TP" "{\"state\":\"imaging\",\"step\":\"write\",\"bytes_done\":$((i * 1048576)),\"bytes_total\":4194304,\"rate\":$((i * 1000))}" >/dev/null
done
code GET "$B/api/v1/nodes/$MAC" -H "$OPAUTH" >/dev/null
check "progress is shown in GET /api/v1/nodes/<mac>" \
	[ "$(jq_py 'd["progress"]["state"], d["progress"]["step"], d["progress"]["bytes_done"], d["progress"]["bytes_total"], d["progress"]["rate"], d["progress"]["updated_ms"] > 0')" = "imaging write 3145728 4194304 3000 True" ]
check "progress-only reports write no events" [ "$(events)" = "$n0" ]
st=$(status "$TP" '{"state":"provisioning"}')
check "status with a state the agent may not set is 400" \
	sh -c "[ '$st' = 400 ] && grep -q 'must be one of' '$TMP/body'"
st=$(status "$TP" '{"state":"bogus","step":"x"}')
check "unknown state is 400" [ "$st" = 400 ]
st=$(status "$TP" '{"state":"imaging","bytes_done":-5}')
check "negative bytes_done is 400" [ "$st" = 400 ]
st=$(status "$TP" '{"state":"failed"}')
check "failed without a message is 400" [ "$st" = 400 ]
st=$(status "$TP" '{"state":"imaging",')
check "bad JSON is 400" [ "$st" = 400 ]
code GET "$B/api/v1/nodes/$MAC" -H "$OPAUTH" >/dev/null
check "rejected reports changed nothing" [ "$(jq_py 'd["state"], d["progress"]["bytes_done"]')" = "imaging 3145728" ]
python3 -c 'import sys; sys.stdout.write("{\"state\":\"imaging\",\"step\":\"" + "x" * (1024 * 1024) + "\"}")' >"$TMP/big.json"
st=$(code POST "$B/api/v1/nodes/$MAC/status" -H "$(auth "$TP")" --data-binary @"$TMP/big.json")
check "body over 1 MiB (Content-Length) is 413" [ "$st" = 413 ]
st=$(code POST "$B/api/v1/nodes/$MAC/status" -H "$(auth "$TP")" -H 'Transfer-Encoding: chunked' --data-binary @"$TMP/big.json")
check "body over 1 MiB (chunked) is 413" [ "$st" = 413 ]
st=$(code POST "$B/api/v1/nodes/$MAC/inventory" -H "$(auth "$TP")" --data-binary @"$TMP/big.json")
check "inventory over 1 MiB is 413" [ "$st" = 413 ]
st=$(code GET "$B/api/v1/nodes/$MAC/status" -H "$(auth "$TP")" -D "$TMP/hdr")
check "GET on status is 405 with Allow: POST" \
	sh -c "[ '$st' = 405 ] && grep -qi '^Allow: POST' '$TMP/hdr'"
st=$(status "$TP" '{"state":"imaged","step":"done","bytes_done":4194304,"bytes_total":4194304,"rate":0}')
code GET "$B/api/v1/nodes/$MAC" -H "$OPAUTH" >/dev/null
check "status imaged: state written with agent.imaged" \
	[ "$st" = 200 -a "$(jq_py 'd["state"], d["events"][-1]["event"]')" = "imaged agent.imaged" ]
curl -s -o "$TMP/script" "$B/boot/$MAC.ipxe"
check "an imaged node boots its local disk" grep -q 'sanboot --no-describe --drive 0x80' "$TMP/script"
check "the localboot script carries no token" sh -c "! grep -q 'rackboot.token' '$TMP/script'"

# --- a stale token after a new boot, and tokens across a restart -------------------
sql "UPDATE nodes SET state = 'reimage' WHERE mac = '$MAC'"
T1=$(script $MAC)
T2=$(script $MAC)
check "each script fetch makes a new token" [ -n "$T1" -a "$T1" != "$T2" ]
st=$(status "$T1" '{"state":"wiping"}')
check "the previous boot's token stops working (status 403)" [ "$st" = 403 ]
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$T1")")
check "the previous boot's token stops working (plan 403)" [ "$st" = 403 ]
st=$(code POST "$B/api/v1/nodes/$MAC/inventory" -H "$(auth "$T1")" --data '{}')
check "the previous boot's token stops working (inventory 403)" [ "$st" = 403 ]
rb_stop

# Without a default_profile, a node with no profile cannot be provisioned.
write_conf "$TMP/rackbootd2.conf" ""
start_server "$TMP/rackbootd2.conf"
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$T2")")
check "no profile and no default_profile: 409 node has no profile (token kept across a restart)" \
	sh -c "[ '$st' = 409 ] && grep -q 'node has no profile' '$TMP/body'"
st=$(status "$T2" '{"state":"failed","message":"no plan: node has no profile"}')
code GET "$B/api/v1/nodes/$MAC" -H "$OPAUTH" >/dev/null
check "status failed with a message: written with the message as detail" \
	[ "$st" = 200 -a "$(jq_py 'd["state"], d["events"][-1]["event"], d["events"][-1]["detail"]')" = "failed agent.failed no plan: node has no profile" ]
rb_finish
