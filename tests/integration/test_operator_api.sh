#!/bin/sh
# The operator API of the real rackbootd on 127.0.0.1, driven with curl:
# operator tokens (made and revoked with `rackbootd token` while the server
# runs; no token, a wrong one, a node's boot token: 401; an operator token
# or another node's boot token on a node's agent endpoints: 403), each
# endpoint (nodes list with filters, register, show, PATCH, the lifecycle
# actions, images, profiles, package sets), every refused transition of the
# state machine (409 with the reason), malformed and oversized bodies (4xx
# and the registry unchanged: GET before and after compared), the event
# stream followed with curl -N while an agent reports (live progress, node
# events, Last-Event-ID resumption, the token in the query, heartbeats, the
# subscriber limit), and /metrics.
# Starts its own rackbootd (DHCP and TFTP off) and kills only the PIDs it
# started.
set -u

. "$(dirname "$0")/lib.sh"
BIN=$RB_BUILD/pxe/rackbootd
IMG=$RB_BUILD/imager/rackboot-image
rb_need_bin "$BIN" "$IMG"
rb_need_cmd curl python3 truncate

rb_setup ops
TMP=$RB_TMP
BGPIDS=
cleanup() {
	for p in $BGPIDS; do kill "$p" 2>/dev/null; done
	for p in $BGPIDS; do wait "$p" 2>/dev/null; done
}
RB_ON_EXIT=cleanup

is() { [ "$1" = "$2" ] || { echo "     got \"$1\", want \"$2\""; return 1; }; }

PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
CONF=$TMP/rackbootd.conf

# --- a repository and a config ----------------------------------------------
mkdir -p "$TMP/repo" "$TMP/boot" "$TMP/state"
"$IMG" keygen "$TMP/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
truncate -s 2M "$TMP/disk.img"
for v in 1 2; do
	"$IMG" build --repo "$TMP/repo" --key "$TMP/site.key" --name debian12 --version $v \
		"$TMP/disk.img" >/dev/null 2>&1 || { echo "FAIL: rackboot-image build $v"; exit 1; }
done
"$IMG" register --repo "$TMP/repo" --key "$TMP/site.key" --name site-raw --version 3 \
	"$TMP/disk.img" >/dev/null || { echo "FAIL: register raw"; exit 1; }

cat >"$CONF" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
log_level = "debug"
dhcp { mode = "off" }
tftp { enable = false }
http { port = $PORT boot_root = "$TMP/boot" repo_root = "$TMP/repo" }
discovery { kernel = "vmlinuz" initrd = "initrd.img" cmdline = "console=ttyS0" }
api { heartbeat_s = 2 }
package_set "gpu" { packages = {"nvidia-driver=550.54.15", "cuda-runtime"} }
package_set "site" { packages = {"slurm-client"} }
profile "deb" { image = "debian12" wipe = "metadata" }
profile "gpu" { image = "debian12" version = "1" wipe = "full" package_sets = {"gpu"} }
default_profile = "deb"
EOF

rb_start_server "$B/boot/" "$BIN" -c "$CONF" -v

code() { rb_code "$@"; } # code METHOD URL [curl args...]: the status; $TMP/body, $TMP/hdr
# py EXPR: a Python expression over the JSON in $TMP/body (d)
py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$TMP/body" 2>/dev/null; }
err_has() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); sys.exit(not (sys.argv[2] in d['error'] and d['status'] == int(sys.argv[3])))" "$TMP/body" "$2" "$1"; }
# The exact JSON of the node list, for "nothing changed" checks.
snapshot() { curl -s -H "$OP" "$B/api/v1/nodes" >"$1"; }

# --- operator tokens --------------------------------------------------------
TOKEN=$("$BIN" -c "$CONF" token create alice 2>"$TMP/create.err")
check "token create prints rbo_ and 48 hex digits, once" sh -c "echo '$TOKEN' | grep -Eqx 'rbo_[0-9a-f]{48}'"
check "token create tells where the hash went" grep -q "$TMP/state/tokens" "$TMP/create.err"
check "the tokens file holds the hash, not the token" \
	sh -c "! grep -q '$TOKEN' '$TMP/state/tokens' && grep -Eq '^[0-9a-f]{64} alice$' '$TMP/state/tokens'"
"$BIN" -c "$CONF" token create alice >/dev/null 2>"$TMP/dup.err"
check "token create refuses a name in use (exit 1, says so)" sh -c "[ $? = 1 ] && grep -q 'exists already' '$TMP/dup.err'"
OP="Authorization: Bearer $TOKEN"

st=$(code GET "$B/api/v1/nodes")
check "no token: 401 with WWW-Authenticate: Bearer and a JSON error naming what to do" \
	sh -c "[ $st = 401 ] && grep -qi '^WWW-Authenticate: Bearer' '$TMP/hdr' && grep -q 'token create' '$TMP/body'"
st=$(code GET "$B/api/v1/nodes" -H "Authorization: Bearer rbo_000000000000000000000000000000000000000000000000")
check "wrong token: 401" [ "$st" = 401 ]
st=$(code GET "$B/api/v1/nodes" -H "Authorization: Basic YWxpY2U6cHc=")
check "Basic credentials: 401" [ "$st" = 401 ]
st=$(code GET "$B/api/v1/nodes" -H "$OP")
check "operator token: 200, an empty list" sh -c "[ $st = 200 ] && [ \"\$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))[\"nodes\"]))' '$TMP/body')\" = 0 ]"
for p in /api/v1/nodes/52:54:00:00:00:01 /api/v1/images /api/v1/profiles /api/v1/package-sets /api/v1/events; do
	check "no token on $p: 401" [ "$(code GET "$B$p")" = 401 ]
done
check "no token on POST /api/v1/nodes: 401, nothing registered" \
	sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' -X POST --data '{\"mac\":\"52:54:00:00:00:09\"}' '$B/api/v1/nodes')\" = 401 ] &&
	       [ \"\$(curl -s -o /dev/null -w '%{http_code}' -H '$OP' '$B/api/v1/nodes/52:54:00:00:00:09')\" = 404 ]"

# A token made while the server runs works at once; a revoked one stops.
BOB=$("$BIN" -c "$CONF" token create bob 2>/dev/null)
check "a token made while the server runs works on first use" [ "$(code GET "$B/api/v1/nodes" -H "Authorization: Bearer $BOB")" = 200 ]
"$BIN" -c "$CONF" token revoke bob 2>/dev/null
sleep 1.2
check "a revoked token is 401 (within a second)" [ "$(code GET "$B/api/v1/nodes" -H "Authorization: Bearer $BOB")" = 401 ]
check "the other token still works" [ "$(code GET "$B/api/v1/nodes" -H "$OP")" = 200 ]

# Boot tokens of two nodes, as their iPXE scripts hand them out.
boot_token() { curl -s "$B/boot/$1.ipxe" | grep -o 'rackboot\.token=[0-9a-f]*' | cut -d= -f2; }
MA=52:54:00:0a:00:01
MB=52:54:00:0a:00:02
TA=$(boot_token $MA)
TB=$(boot_token $MB)
check "two nodes got boot tokens" sh -c "[ ${#TA} = 32 ] && [ ${#TB} = 32 ]"
check "a node's boot token on an operator endpoint: 401" [ "$(code GET "$B/api/v1/nodes" -H "Authorization: Bearer $TA")" = 401 ]
check "a node's boot token on its own node document: 401" [ "$(code GET "$B/api/v1/nodes/$MA" -H "Authorization: Bearer $TA")" = 401 ]
check "an operator token on a node's plan: 403" [ "$(code GET "$B/api/v1/nodes/$MA/plan" -H "$OP")" = 403 ]
check "an operator token on a node's status: 403" \
	[ "$(code POST "$B/api/v1/nodes/$MA/status" -H "$OP" --data '{"state":"imaging"}')" = 403 ]
check "another node's boot token on the plan: 403" [ "$(code GET "$B/api/v1/nodes/$MA/plan" -H "Authorization: Bearer $TB")" = 403 ]
check "another node's boot token on status: 403" \
	[ "$(code POST "$B/api/v1/nodes/$MA/status" -H "Authorization: Bearer $TB" --data '{"state":"imaging"}')" = 403 ]
check "another node's boot token on inventory: 403" \
	[ "$(code POST "$B/api/v1/nodes/$MA/inventory" -H "Authorization: Bearer $TB" --data '{"cpu":{}}')" = 403 ]
TA_OLD=$TA
TA=$(boot_token $MA)
check "a replayed boot token (of the previous boot): 403" [ "$(code GET "$B/api/v1/nodes/$MA/plan" -H "Authorization: Bearer $TA_OLD")" = 403 ]
check "the node's own boot token: 200" [ "$(code GET "$B/api/v1/nodes/$MA/plan" -H "Authorization: Bearer $TA")" = 200 ]

# --- the event stream, followed from here on ---------------------------------
curl -sN -H "$OP" "$B/api/v1/events" >"$TMP/sse.all" 2>/dev/null &
SSE_PID=$!
BGPIDS="$BGPIDS $SSE_PID"
sleep 0.3

# --- register, show, update --------------------------------------------------
MN=52:54:00:0b:00:01
st=$(code POST "$B/api/v1/nodes" -H "$OP" -H 'Content-Type: application/json' \
	--data "{\"mac\":\"52-54-00-0B-00-01\",\"hostname\":\"gpu-01\",\"profile\":\"gpu\",\"labels\":{\"tenant\":\"a\",\"role\":\"compute\"},\"rack\":\"r12\"}")
check "register: 201 with the node (MAC normalised, state new, labels, rack, profile)" \
	sh -c "[ $st = 201 ] && [ \"\$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[\"mac\"], d[\"state\"], d[\"labels\"][\"tenant\"], d[\"rack\"], d[\"profile\"], d[\"hostname\"], d[\"held\"])' '$TMP/body')\" = '$MN new a r12 gpu gpu-01 False' ]"
check "register wrote an op.register event naming the token" \
	[ "$(py 'd["events"][-1]["event"], d["events"][-1]["detail"]')" = "op.register by alice" ]
st=$(code POST "$B/api/v1/nodes" -H "$OP" --data "{\"mac\":\"$MN\"}")
check "register a known MAC: 409 saying so" sh -c "[ $st = 409 ] && grep -q 'registered already' '$TMP/body'"
st=$(code GET "$B/api/v1/nodes/$MN" -H "$OP")
check "show: 200 with desired, held, events, inventory, progress, installed" \
	sh -c "[ $st = 200 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[\"desired\"]==dict(image=\"\",version=\"\",package_sets=None) and d[\"held\"] is False and d[\"inventory\"] is None and d[\"progress\"] is None and d[\"installed\"] is None and d[\"reboot_required\"] is False and len(d[\"events\"])==1' '$TMP/body'"
check "show an unknown node: 404" [ "$(code GET "$B/api/v1/nodes/52:54:00:0b:00:99" -H "$OP")" = 404 ]
check "show a bad MAC: 400" [ "$(code GET "$B/api/v1/nodes/zz:zz" -H "$OP")" = 400 ]

st=$(code PATCH "$B/api/v1/nodes/$MN" -H "$OP" \
	--data '{"labels":{"tenant":"b","role":null,"gpu":"h100"},"rack":"r13","desired_image":"debian12","desired_version":"2","package_sets":["gpu","site"]}')
check "PATCH: labels merged (null removes), rack, desired image/version/package sets" \
	sh -c "[ $st = 200 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[\"labels\"]=={\"tenant\":\"b\",\"gpu\":\"h100\"}, d[\"labels\"]; assert d[\"rack\"]==\"r13\"; assert d[\"desired\"]==dict(image=\"debian12\",version=\"2\",package_sets=[\"gpu\",\"site\"]), d[\"desired\"]' '$TMP/body'"
check "PATCH wrote op.set listing what changed" \
	[ "$(py 'd["events"][-1]["event"], d["events"][-1]["detail"]')" = "op.set by alice: labels, rack, desired_image, desired_version, package_sets" ]
st=$(code PATCH "$B/api/v1/nodes/$MN" -H "$OP" --data '{"package_sets":null,"profile":"deb","hostname":"gpu-01.example.org"}')
check "PATCH: package_sets null = the profile's again, profile and hostname set" \
	sh -c "[ $st = 200 ] && [ \"\$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d[\"desired\"][\"package_sets\"], d[\"profile\"], d[\"hostname\"])' '$TMP/body')\" = 'None deb gpu-01.example.org' ]"
check "PATCH an unknown node: 404" [ "$(code PATCH "$B/api/v1/nodes/52:54:00:0b:00:99" -H "$OP" --data '{"rack":"x"}')" = 404 ]
check "PUT on a node: 405 with Allow" sh -c "[ \"\$(curl -s -D- -o /dev/null -X PUT -H '$OP' '$B/api/v1/nodes/$MN' | tr -d '\r' | grep -i '^Allow:')\" = 'Allow: GET, HEAD, PATCH' ]"

# --- refused bodies change nothing -----------------------------------------------
snapshot "$TMP/before.json"
python3 -c 'print("{\"rack\":\"" + "x" * (1536 * 1024) + "\"}")' >"$TMP/big.json"
bad_body() { # bad_body NAME WANT METHOD PATH BODY
	st=$(code "$3" "$B$4" -H "$OP" -H 'Content-Type: application/json' --data-binary "$5")
	check "$1: $2" [ "$st" = "$2" ]
}
bad_body "register, not JSON" 400 POST /api/v1/nodes 'not json'
bad_body "register, an array" 400 POST /api/v1/nodes '[]'
bad_body "register, cut short" 400 POST /api/v1/nodes '{"mac":'
bad_body "register, duplicate keys" 400 POST /api/v1/nodes '{"mac":"52:54:00:0c:00:01","mac":"52:54:00:0c:00:02"}'
bad_body "register, no mac" 400 POST /api/v1/nodes '{"hostname":"x"}'
bad_body "register, bad mac" 400 POST /api/v1/nodes '{"mac":"52:54:00:0c:00"}'
bad_body "register, unknown field" 400 POST /api/v1/nodes '{"mac":"52:54:00:0c:00:01","colour":"red"}'
bad_body "register, undefined profile" 400 POST /api/v1/nodes '{"mac":"52:54:00:0c:00:01","profile":"nope"}'
bad_body "register, labels not an object" 400 POST /api/v1/nodes '{"mac":"52:54:00:0c:00:01","labels":["a"]}'
bad_body "register, empty body" 400 POST /api/v1/nodes ''
bad_body "PATCH, not JSON" 400 PATCH /api/v1/nodes/$MN '{rack:1}'
bad_body "PATCH, nothing to change" 400 PATCH /api/v1/nodes/$MN '{}'
bad_body "PATCH, unknown field" 400 PATCH /api/v1/nodes/$MN '{"state":"ready"}'
bad_body "PATCH, rack not a string" 400 PATCH /api/v1/nodes/$MN '{"rack":12}'
bad_body "PATCH, bad label key" 400 PATCH /api/v1/nodes/$MN '{"labels":{"a b":"c"}}'
bad_body "PATCH, label value not a string" 400 PATCH /api/v1/nodes/$MN '{"labels":{"a":1}}'
bad_body "PATCH, bad hostname" 400 PATCH /api/v1/nodes/$MN '{"hostname":"-bad-"}'
bad_body "PATCH, undefined package set" 400 PATCH /api/v1/nodes/$MN '{"package_sets":["nope"]}'
bad_body "PATCH, a valid field beside an invalid one" 400 PATCH /api/v1/nodes/$MN '{"rack":"r99","desired_image":"../x"}'
bad_body "action, not JSON" 400 POST /api/v1/nodes/$MN/actions/reimage 'wipe=full'
bad_body "action, bad wipe level" 400 POST /api/v1/nodes/$MN/actions/reimage '{"wipe":"most"}'
bad_body "action, unknown field" 400 POST /api/v1/nodes/$MN/actions/hold '{"force":true}'
bad_body "register, body over 1 MiB" 413 POST /api/v1/nodes "@$TMP/big.json"
bad_body "PATCH, body over 1 MiB" 413 PATCH /api/v1/nodes/$MN "@$TMP/big.json"
bad_body "action, body over 1 MiB" 413 POST /api/v1/nodes/$MN/actions/reimage "@$TMP/big.json"
snapshot "$TMP/after.json"
check "after all refused bodies the node list is byte for byte the same" cmp -s "$TMP/before.json" "$TMP/after.json"
check "... and the node's events end with the last accepted change" \
	sh -c "curl -s -H '$OP' '$B/api/v1/nodes/$MN' | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d[\"events\"][-1][\"event\"]==\"op.set\" and \"profile\" in d[\"events\"][-1][\"detail\"]'"

# --- lifecycle: every refused transition is 409 with the reason ----------------
act() { # act ACTION [BODY]: status of the action on $MN
	if [ $# -gt 1 ]; then
		code POST "$B/api/v1/nodes/$MN/actions/$1" -H "$OP" --data "$2"
	else
		code POST "$B/api/v1/nodes/$MN/actions/$1" -H "$OP"
	fi
}
state() { curl -s -H "$OP" "$B/api/v1/nodes/$MN" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["state"], d["held"], d["reimage_wipe"])'; }
refused() { # refused ACTION REASON [BODY]
	a=$1
	why=$2
	shift 2
	before=$(state)
	st=$(act "$a" "$@")
	check "$a refused ($why): 409" sh -c "[ $st = 409 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d[\"status\"]==409 and d[\"error\"].startswith(\"cannot $a: \") and sys.argv[2] in d[\"error\"], d' '$TMP/body' '$why'"
	check "... and the node is unchanged ($before)" [ "$(state)" = "$before" ]
}
refused release "not held"
check "hold: 200, held" is "$(act hold)|$(state)" "200|new True "
refused hold "already held"
refused provision "held"
refused reimage "held" '{"wipe":"full"}'
check "release: 200, not held" is "$(act release)|$(state)" "200|new False "
check "provision from new: 200, provisioning" is "$(act provision)|$(state)" "200|provisioning False "
refused provision "already being provisioned"
check "reimage while provisioning, wipe full: 200, reimage_wipe full" \
	is "$(act reimage '{"wipe":"full"}')|$(state)" "200|provisioning False full"
check "the reimage event names the token, the states and the wipe" \
	[ "$(curl -s -H "$OP" "$B/api/v1/nodes/$MN" | python3 -c 'import json,sys; e=json.load(sys.stdin)["events"][-1]; print(e["event"], e["detail"])')" = "op.reimage by alice: provisioning -> provisioning, wipe full" ]
# The node boots, images and reports "imaged": installed.
TN=$(boot_token $MN)
check "the plan carries the operator's wipe level of the reimage (full, not the profile's)" \
	is "$(curl -s -H "Authorization: Bearer $TN" "$B/api/v1/nodes/$MN/plan" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("wipe"), d.get("error", ""))')" "full "
check "the agent reports imaging with progress: 200" \
	[ "$(code POST "$B/api/v1/nodes/$MN/status" -H "Authorization: Bearer $TN" --data '{"state":"imaging","step":"write","bytes_done":1048576,"bytes_total":4194304,"rate":1000000}')" = 200 ]
check "the agent reports imaged: 200" \
	[ "$(code POST "$B/api/v1/nodes/$MN/status" -H "Authorization: Bearer $TN" --data '{"state":"imaged","step":"done","bytes_done":4194304,"bytes_total":4194304}')" = 200 ]
refused provision "installed; use reimage"
check "reimage without a wipe level: the profile's (deb: metadata)" \
	is "$(act reimage)|$(state)" "200|provisioning False metadata"
check "retire: 200, retired, the pending reimage cleared" is "$(act retire)|$(state)" "200|retired False "
refused retire "already retired"
refused reimage "retired" '{"wipe":"metadata"}'
refused hold "retired"
check "a retired node boots its local disk (no agent)" sh -c "curl -s '$B/boot/$MN.ipxe' | grep -q 'exit\|sanboot' && ! curl -s '$B/boot/$MN.ipxe' | grep -q rackboot.token"
check "a retired node's agent is refused (403)" \
	sh -c "[ \"\$(curl -s -o '$TMP/b3' -w '%{http_code}' -H 'Authorization: Bearer $TN' '$B/api/v1/nodes/$MN/plan')\" = 403 ] || [ \"\$(curl -s -o '$TMP/b3' -w '%{http_code}' -H 'Authorization: Bearer $TN' --data '{\"state\":\"imaging\"}' '$B/api/v1/nodes/$MN/status')\" = 403 ]"
check "provision brings a retired node back: 200, provisioning" is "$(act provision)|$(state)" "200|provisioning False "
check "unknown action: 404" [ "$(act reboot)" = 404 ]
st=$(code GET "$B/api/v1/nodes/$MN/actions/hold" -H "$OP")
check "GET on an action: 405 (Allow: POST)" sh -c "[ $st = 405 ] && grep -qi '^Allow: POST' '$TMP/hdr'"
check "an action on an unknown node: 404" [ "$(code POST "$B/api/v1/nodes/52:54:00:0b:00:99/actions/hold" -H "$OP")" = 404 ]

# --- list filters ----------------------------------------------------------------
code POST "$B/api/v1/nodes" -H "$OP" --data '{"mac":"52:54:00:0b:00:02","labels":{"tenant":"a"},"rack":"r12"}' >/dev/null
code POST "$B/api/v1/nodes/52:54:00:0b:00:02/actions/hold" -H "$OP" >/dev/null
macs() { # macs QUERY: the MACs the filtered list returns, sorted
	curl -s -H "$OP" "$B/api/v1/nodes?$1" | python3 -c 'import json,sys; print(" ".join(sorted(n["mac"] for n in json.load(sys.stdin)["nodes"])))'
}
check "filter state=provisioning" [ "$(macs 'state=provisioning')" = "$MN" ]
check "filter state=new,provisioning (a list)" [ "$(macs 'state=new,provisioning' | wc -w)" = 4 ]
check "filter profile=deb" [ "$(macs 'profile=deb')" = "$MN" ]
check "filter rack=r12" [ "$(macs 'rack=r12')" = "52:54:00:0b:00:02" ]
check "filter label=tenant=a" [ "$(macs 'label=tenant=a')" = "52:54:00:0b:00:02" ]
check "filter label=gpu (the key is set)" [ "$(macs 'label=gpu')" = "$MN" ]
check "filter label=tenant%3Db (escaped =)" [ "$(macs 'label=tenant%3Db')" = "$MN" ]
check "filter held=true" [ "$(macs 'held=true')" = "52:54:00:0b:00:02" ]
check "filters combine (AND)" [ "$(macs 'state=new&label=tenant=a&held=false')" = "" ]
check "list entries carry progress and a hardware summary" \
	sh -c "curl -s -H '$OP' '$B/api/v1/nodes' | python3 -c 'import json,sys; n=json.load(sys.stdin)[\"nodes\"][0]; assert \"progress\" in n and \"hardware\" in n and \"labels\" in n'"
st=$(code GET "$B/api/v1/nodes?colour=red" -H "$OP")
check "an unknown filter: 400 naming it" sh -c "[ $st = 400 ] && grep -q colour '$TMP/body'"
check "a bad escape in the query: 400" [ "$(code GET "$B/api/v1/nodes?state=%zz" -H "$OP")" = 400 ]
check "%00 in the query: 400" [ "$(code GET "$B/api/v1/nodes?state=%00" -H "$OP")" = 400 ]

# --- images, profiles, package sets ---------------------------------------------
st=$(code GET "$B/api/v1/images" -H "$OP")
check "images: debian12 (latest 2, two versions) and site-raw (plain)" \
	sh -c "[ $st = 200 ] && python3 -c 'import json,sys; d={i[\"name\"]: i for i in json.load(open(sys.argv[1]))[\"images\"]}; assert d[\"debian12\"][\"latest\"]==\"2\" and len(d[\"debian12\"][\"versions\"])==2 and d[\"site-raw\"][\"versions\"][0][\"type\"]==\"plain\", d' '$TMP/body'"
st=$(code GET "$B/api/v1/images/debian12" -H "$OP")
check "image show: 200" sh -c "[ $st = 200 ] && grep -q '\"rackboot\"' '$TMP/body'"
check "image show, unknown: 404" [ "$(code GET "$B/api/v1/images/nope" -H "$OP")" = 404 ]
st=$(code GET "$B/api/v1/profiles" -H "$OP")
check "profiles: both, the default named, gpu with its package set" \
	sh -c "[ $st = 200 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); p={x[\"name\"]: x for x in d[\"profiles\"]}; assert d[\"default_profile\"]==\"deb\" and p[\"gpu\"][\"package_sets\"]==[\"gpu\"] and p[\"gpu\"][\"wipe\"]==\"full\"' '$TMP/body'"
check "profile show: 200" [ "$(code GET "$B/api/v1/profiles/gpu" -H "$OP")" = 200 ]
check "profile show, unknown: 404" [ "$(code GET "$B/api/v1/profiles/nope" -H "$OP")" = 404 ]
st=$(code GET "$B/api/v1/package-sets" -H "$OP")
check "package sets: gpu with an exact version and a newest" \
	sh -c "[ $st = 200 ] && python3 -c 'import json,sys; d={s[\"name\"]: s for s in json.load(open(sys.argv[1]))[\"package_sets\"]}; assert d[\"gpu\"][\"packages\"]==[{\"name\":\"nvidia-driver\",\"version\":\"550.54.15\"},{\"name\":\"cuda-runtime\",\"version\":\"\"}], d' '$TMP/body'"
check "package set show: 200" [ "$(code GET "$B/api/v1/package-sets/site" -H "$OP")" = 200 ]
check "package set show, unknown: 404" [ "$(code GET "$B/api/v1/package-sets/nope" -H "$OP")" = 404 ]
check "POST on images: 405" [ "$(code POST "$B/api/v1/images" -H "$OP" --data '{}')" = 405 ]

# --- the event stream -------------------------------------------------------------
# An agent reports progress while the stream is followed.
TN=$(boot_token $MN)
for done in 1048576 2097152; do
	code POST "$B/api/v1/nodes/$MN/status" -H "Authorization: Bearer $TN" \
		--data "{\"state\":\"imaging\",\"step\":\"write\",\"bytes_done\":$done,\"bytes_total\":4194304}" >/dev/null
done
code POST "$B/api/v1/nodes/$MN/status" -H "Authorization: Bearer $TN" \
	--data '{"state":"wiping","step":"discard"}' >/dev/null
sleep 1
kill "$SSE_PID" 2>/dev/null
wait "$SSE_PID" 2>/dev/null
cat >"$TMP/sse.py" <<'EOF'
import json, sys
# Parses an SSE capture into (id, type, data) records.
def records(path):
    out, cur = [], {}
    for line in open(path, encoding="utf-8").read().split("\n"):
        if line == "":
            if "data" in cur:
                out.append((cur.get("id"), cur.get("event", "message"), json.loads(cur["data"])))
            cur = {}
        elif line.startswith(":"):
            cur.setdefault("comments", []).append(line)
        else:
            k, _, v = line.partition(": ")
            cur[k] = v
    return out
EOF
sse() { python3 -c "import sys; sys.path.insert(0, '$TMP'); from sse import records; r = records(sys.argv[1]); $2" "$1"; }
check "stream: the live progress reports, with bytes, as 'progress' events without id" \
	sse "$TMP/sse.all" 'p = [d for i, t, d in r if t == "progress" and d["mac"] == "'$MN'"]; b = [x["progress"]["bytes_done"] for x in p]; assert b[-3:] == [1048576, 2097152, 0] and p[-1]["state"] == "wiping" and all(i is None for i, t, d in r if t == "progress"), b'
check "stream: node events with increasing ids: register, set, hold, provision, reimage, agent states" \
	sse "$TMP/sse.all" 'e = [(int(i), d["event"]) for i, t, d in r if t == "node" and d["mac"] == "'$MN'"]; ids = [x[0] for x in e]; names = [x[1] for x in e]; assert ids == sorted(ids) and len(set(ids)) == len(ids); [names.index(n) for n in ("op.register", "op.set", "op.hold", "op.release", "op.provision", "op.reimage", "agent.imaging", "agent.imaged", "op.retire", "agent.wiping")]'
check "stream: each node event carries mac, state, event, detail, ts_ms" \
	sse "$TMP/sse.all" 'assert all(set(("mac","state","event","detail","ts_ms")) <= set(d) for i, t, d in r if t == "node")'
FIRST=$(sse "$TMP/sse.all" 'print([i for i, t, d in r if t == "node" and d["event"] == "op.provision"][0])')
curl -sN --max-time 2 -H "$OP" -H "Last-Event-ID: $FIRST" "$B/api/v1/events" >"$TMP/sse.resume" 2>/dev/null
check "Last-Event-ID: the stream resumes right after that event" \
	sse "$TMP/sse.resume" 'ids = [int(i) for i, t, d in r if i]; assert ids and ids[0] == '"$FIRST"' + 1, ids'
curl -sN --max-time 2 "$B/api/v1/events?access_token=$TOKEN&last_event_id=0" >"$TMP/sse.query" 2>/dev/null
check "the token and Last-Event-ID in the query (for EventSource): the whole history" \
	sse "$TMP/sse.query" 'assert int(r[0][0]) == 1 and any(d["event"] == "op.register" for i, t, d in r)'
check "the access log does not show a token given in the query" sh -c "! grep -q '$TOKEN' '$TMP/rackbootd.log'"
check "stream with a bad Last-Event-ID: 400" [ "$(code GET "$B/api/v1/events" -H "$OP" -H 'Last-Event-ID: abc')" = 400 ]
check "stream with a POST: 405" [ "$(code POST "$B/api/v1/events" -H "$OP")" = 405 ]
# Heartbeat comments keep an idle stream (and proxies) alive
# (api.heartbeat_s = 2 here, 15 by default).
curl -sN --max-time 4 -H "$OP" "$B/api/v1/events" >"$TMP/sse.idle" 2>/dev/null
check "an idle stream gets a heartbeat comment (api.heartbeat_s)" grep -q '^: ping' "$TMP/sse.idle"

# The subscriber limit: 64 streams, the 65th is refused.
for _ in $(seq 64); do
	curl -sN -H "$OP" "$B/api/v1/events" >/dev/null 2>&1 &
	BGPIDS="$BGPIDS $!"
done
# (64 curl processes take a while to connect on a loaded 2-core machine)
n=0
subs=
while [ $n -lt 600 ]; do
	subs=$(curl -s -H "$OP" "$B/metrics" | sed -n 's/^rackboot_event_stream_subscribers //p')
	[ "$subs" = 64 ] && break
	sleep 0.1
	n=$((n + 1))
done
check "64 streams connected (metrics: $subs)" [ "$subs" = 64 ]
st=$(code GET "$B/api/v1/events" -H "$OP" --max-time 3)
check "the 65th stream: 503" [ "$st" = 503 ]
for p in $BGPIDS; do kill "$p" 2>/dev/null; done
for p in $BGPIDS; do wait "$p" 2>/dev/null; done
BGPIDS=

# --- metrics --------------------------------------------------------------------------
st=$(code GET "$B/metrics")
check "/metrics: 200 Prometheus text, no token needed by default" \
	sh -c "[ $st = 200 ] && grep -qi '^Content-Type: text/plain; version=0.0.4' '$TMP/hdr'"
check "/metrics: HTTP requests, errors and bytes" \
	sh -c "grep -Eq '^rackboot_http_requests_total [1-9]' '$TMP/body' && grep -Eq '^rackboot_http_errors_total [1-9]' '$TMP/body' && grep -Eq '^rackboot_http_bytes_sent_total [1-9]' '$TMP/body'"
check "/metrics: nodes per state and held" \
	sh -c "grep -q '^rackboot_nodes{state=\"wiping\"} 1' '$TMP/body' && grep -q '^rackboot_nodes_held 1' '$TMP/body'"
check "/metrics: one imaging run measured (imaging -> imaged)" \
	sh -c "grep -q '^rackboot_imaging_duration_seconds_count 1' '$TMP/body' && grep -q '^rackboot_imaging_duration_seconds_bucket{le=\"+Inf\"} 1' '$TMP/body'"
check "/metrics: every sample has HELP and TYPE" python3 - "$TMP/body" <<'EOF'
import sys
typed = set()
for line in open(sys.argv[1]):
    if line.startswith("# TYPE "):
        typed.add(line.split()[2])
    elif line.strip() and not line.startswith("#"):
        name = line.split("{")[0].split()[0]
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in typed:
                base = name[: -len(suffix)]
        assert base in typed, name
EOF

# Stopped here, not by the EXIT trap: SIGTERM and a wait, so that a leak
# (LeakSanitizer in the ASan build) or a bad exit status fails the test.
rb_finish
