#!/bin/sh
# The agent API for stages 2 and 3 on the real rackbootd (127.0.0.1), with
# a repository made by rackboot-image (an image in three versions and
# packages built with `pkg build` and indexed with `pkg index`):
#  - a provisioning plan carries the profile's package sets, each package
#    resolved to an exact version (a pinned one as written, the others the
#    newest by dpkg order: cuda 12.10 over 12.9), post_install (host name
#    pattern expanded with the MAC, SSH keys, kernel args, root partition)
#    and a fresh 32-hex node token whose SHA-256 alone is in the registry;
#  - a pinned version or a set the catalogue/config lacks is a 409 naming
#    it; a held node's plan is 409 "node is held";
#  - GET /desired takes only the node token (not the boot token, not an
#    older node token), answers the image, packages, hold and reimage with
#    an ETag; If-None-Match with it is a 304 without a body, and the
#    generation changes when the catalogue gets a newer package, when the
#    operator holds the node or asks for another image version;
#  - status takes the new states (installing, ready, updating, reimage)
#    and "installed"/"reboot_required" (stored; malformed ones 400), with
#    the boot token or the node token.
# Starts its own rackbootd (DHCP and TFTP off) and kills only that PID.
set -u

. "$(dirname "$0")/lib.sh"
BIN=$RB_BUILD/pxe/rackbootd
IMG=$RB_BUILD/imager/rackboot-image
rb_need_bin "$BIN" "$IMG"
rb_need_cmd curl python3 truncate sha256sum

rb_setup api23
TMP=$RB_TMP

PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
DB=$TMP/state/registry.db
KEY1="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJx0 ops@site"
KEY2="ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 backup"

sql() { rb_sql "$DB" "$1"; }
code() { rb_code "$@"; } # code METHOD URL [curl args...]: the status; $TMP/body, $TMP/hdr
jq_py() { rb_json "$1"; }
script() { # script MAC: fetches the node's iPXE script; prints its boot token
	curl -sf -o "$TMP/script" "$B/boot/$1.ipxe" || return 1
	sed -n 's/^kernel .* rackboot\.token=\([^ ]*\) .*/\1/p' "$TMP/script"
}
auth() { echo "Authorization: Bearer $1"; }
etag() { sed -n 's/^[Ee][Tt][Aa][Gg]: *\(.*\)\r$/\1/p' "$TMP/hdr"; }

# --- repository: image debian12 1, 2, 3; packages -------------------------------
mkdir -p "$TMP/repo" "$TMP/boot" "$TMP/state" "$TMP/pk"
"$IMG" keygen "$TMP/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
truncate -s 2M "$TMP/disk.img"
for v in 1 2 3; do
	"$IMG" build --repo "$TMP/repo" --key "$TMP/site.key" --name debian12 --version $v \
		"$TMP/disk.img" >/dev/null 2>&1 || { echo "FAIL: rackboot-image build $v"; exit 1; }
done
pkg() { rb_pkg "$IMG" "$TMP/repo" "$TMP/site.key" "$1" "$2"; } # a one-file package, indexed
pkg nvidia-driver 535.1
pkg nvidia-driver 550.54.15
pkg nvidia-driver 560.1
pkg cuda-runtime 12.9
pkg cuda-runtime 12.10
pkg cuda-runtime 12.1
pkg site-tools 1.0-1

cat >"$TMP/rackbootd.conf" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
log_level = "debug"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$TMP/boot"
	repo_root = "$TMP/repo"
}
package_set "gpu" {
	packages = {"nvidia-driver=550.54.15", "cuda-runtime"}
}
package_set "site" {
	packages = {"site-tools", "cuda-runtime"}
}
package_set "missing" {
	packages = {"nvidia-driver=999"}
}
profile "gpu-node" {
	image = "debian12"
	version = "2"
	package_sets = {"gpu", "site"}
	kernel_args = "modprobe.blacklist=nouveau intel_iommu=on iommu=pt"
	hostname = "gpu-{mac}"
	ssh_keys = {"$KEY1", "$KEY2"}
	root_partition = 0
}
profile "broken" {
	image = "debian12"
	package_sets = {"missing"}
}
profile "byip" {
	image = "debian12"
	hostname = "n-{ip}"
	root_partition = 2
}
EOF
rb_start_server "$B/boot/" "$BIN" -c "$TMP/rackbootd.conf" -v

# --- the plan ------------------------------------------------------------------------
MAC=52:54:00:5a:23:01
script $MAC >/dev/null
sql "UPDATE nodes SET state = 'provisioning', profile = 'gpu-node' WHERE mac = '$MAC'" >/dev/null
TB=$(script $MAC)
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")")
check "plan 200 with package_sets gpu, site" \
	[ "$st" = 200 -a "$(jq_py '",".join(d["package_sets"])')" = "gpu,site" ]
check "packages: pinned driver as written, cuda newest by dpkg order (12.10), each once" \
	[ "$(jq_py '" ".join(p["name"] + "=" + p["version"] for p in d["packages"])')" = "nvidia-driver=550.54.15 cuda-runtime=12.10 site-tools=1.0-1" ]
check "post_install: host name from the pattern, kernel args, root partition" \
	[ "$(jq_py 'd["post_install"]["hostname"], d["post_install"]["kernel_args"], d["post_install"]["root_partition"]')" = "gpu-5254005a2301 modprobe.blacklist=nouveau intel_iommu=on iommu=pt 0" ]
check "post_install: both SSH keys" \
	[ "$(jq_py '"|".join(d["post_install"]["ssh_keys"])')" = "$KEY1|$KEY2" ]
NT=$(jq_py 'd["node_token"]')
check "node token: 32 lowercase hex, not the boot token" \
	sh -c "echo '$NT' | grep -Eqx '[0-9a-f]{32}' && [ '$NT' != '$TB' ]"
check "the registry holds the node token's SHA-256 only" \
	[ "$(sql "SELECT node_token_sha256 FROM nodes WHERE mac = '$MAC'")" = "$(printf %s "$NT" | sha256sum | cut -d' ' -f1)" ]
check "the node token itself is nowhere in the registry" sh -c "! grep -aq '$NT' '$DB' '$DB-wal' 2>/dev/null"
code HEAD "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")" >/dev/null
check "HEAD of the plan keeps the node token" \
	[ "$(sql "SELECT node_token_sha256 FROM nodes WHERE mac = '$MAC'")" = "$(printf %s "$NT" | sha256sum | cut -d' ' -f1)" ]

# --- /desired -------------------------------------------------------------------------
D=$B/api/v1/nodes/$MAC/desired
st=$(code GET "$D" -H "$(auth "$TB")")
check "desired with the boot token is 403" [ "$st" = 403 ]
st=$(code GET "$D")
check "desired without a token is 403" [ "$st" = 403 ]
st=$(code GET "$D" -H "$(auth "$NT")")
E1=$(etag)
check "desired 200: image debian12 2, the plan's packages, no hold, reimage (provisioning)" \
	[ "$st" = 200 -a "$(jq_py 'd["image"]["name"], d["image"]["version"], len(d["packages"]), d["packages"][1]["version"], d["hold"], d["reimage"]')" = "debian12 2 3 12.10 False True" ]
check "ETag is the quoted generation (32 hex)" \
	sh -c "[ '$E1' = \"\\\"\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"generation\"])' '$TMP/body')\\\"\" ] && echo '$E1' | grep -Eqx '\"[0-9a-f]{32}\"'"
st=$(code GET "$D" -H "$(auth "$NT")" -H "If-None-Match: $E1")
check "If-None-Match with the ETag: 304, empty body, ETag again" \
	[ "$st" = 304 -a ! -s "$TMP/body" -a "$(etag)" = "$E1" ] && ! grep -qi "^content-type" "$TMP/hdr"
st=$(code GET "$D" -H "$(auth "$NT")" -H 'If-None-Match: "0123", W/'"$E1")
check "If-None-Match with a list holding the weak form: 304" [ "$st" = 304 ]
st=$(code GET "$D" -H "$(auth "$NT")" -H 'If-None-Match: "00000000000000000000000000000000"')
check "If-None-Match with another tag: 200" [ "$st" = 200 ]
st=$(code POST "$D" -H "$(auth "$NT")" --data '{}')
check "POST on desired is 405" [ "$st" = 405 ]

# a second plan fetch hands out a new node token; the old one stops working
code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")" >/dev/null
NT2=$(jq_py 'd["node_token"]')
st=$(code GET "$D" -H "$(auth "$NT")")
check "an older node token is 403 after a new plan" [ "$st" = 403 -a "$NT2" != "$NT" ]
NT=$NT2

# --- status from stage 2 and the installed agent --------------------------------------------
status() { # status TOKEN JSON
	code POST "$B/api/v1/nodes/$MAC/status" -H "$(auth "$1")" -H 'Content-Type: application/json' --data "$2"
}
st=$(status "$TB" '{"state":"installing","step":"nvidia-driver 550.54.15"}')
check "status installing (boot token) is 200" [ "$st" = 200 ]
INST='{"image":{"name":"debian12","version":"2"},"packages":[{"name":"nvidia-driver","version":"550.54.15","files":3},{"name":"cuda-runtime","version":"12.10"},{"name":"site-tools","version":"1.0-1"}]}'
st=$(status "$TB" "{\"state\":\"imaged\",\"step\":\"done\",\"installed\":$INST,\"reboot_required\":false}")
check "status imaged with installed: 200, stored (name and version only)" \
	[ "$st" = 200 -a "$(sql "SELECT installed, reboot_required FROM nodes WHERE mac = '$MAC'")" = '{"image":{"name":"debian12","version":"2"},"packages":[{"name":"nvidia-driver","version":"550.54.15"},{"name":"cuda-runtime","version":"12.10"},{"name":"site-tools","version":"1.0-1"}]} 0' ]
st=$(code GET "$D" -H "$(auth "$NT")" -H "If-None-Match: $E1")
E2=$(etag)
check "imaged and running the desired image: reimage false, a new generation" \
	[ "$st" = 200 -a "$(jq_py 'd["reimage"]')" = False -a "$E2" != "$E1" ]
st=$(status "$NT" '{"state":"ready","installed":'"$INST"',"reboot_required":true}')
check "status ready with the node token: 200, state ready, reboot_required stored" \
	[ "$st" = 200 -a "$(sql "SELECT state, reboot_required FROM nodes WHERE mac = '$MAC'")" = "ready 1" ]
st=$(status "$NT" '{"state":"updating","step":"cuda-runtime 12.11"}')
check "status updating is 200" [ "$st" = 200 ]
for bad in '{"state":"ready","reboot_required":"yes"}' \
	'{"state":"ready","installed":[]}' \
	'{"state":"ready","installed":{"packages":[{"name":"../x","version":"1"}]}}' \
	'{"state":"ready","installed":{"image":{"name":"debian12"}}}' \
	'{"state":"ready","installed":{"packages":{"name":"x"}}}'; do
	st=$(status "$NT" "$bad")
	check "bad status $bad: 400" [ "$st" = 400 ]
done
check "rejected reports changed nothing" \
	[ "$(sql "SELECT state, reboot_required FROM nodes WHERE mac = '$MAC'")" = "updating 1" ]
status "$NT" '{"state":"ready"}' >/dev/null
check "a report without installed keeps the stored one" \
	[ "$(sql "SELECT json_extract(installed, '\$.packages[1].version') FROM nodes WHERE mac = '$MAC'")" = "12.10" ]

# --- changes the agent must see --------------------------------------------------------------
code GET "$D" -H "$(auth "$NT")" >/dev/null
E2=$(etag)
pkg cuda-runtime 12.11
st=$(code GET "$D" -H "$(auth "$NT")" -H "If-None-Match: $E2")
E3=$(etag)
check "a newer cuda in the catalogue: 200 with cuda 12.11, a new generation" \
	[ "$st" = 200 -a "$(jq_py 'd["packages"][1]["version"]')" = 12.11 -a "$E3" != "$E2" ]
sql "UPDATE nodes SET held = 1 WHERE mac = '$MAC'" >/dev/null
st=$(code GET "$D" -H "$(auth "$NT")" -H "If-None-Match: $E3")
check "held: hold true, a new generation" [ "$st" = 200 -a "$(jq_py 'd["hold"]')" = True ]
sql "UPDATE nodes SET state = 'provisioning' WHERE mac = '$MAC'" >/dev/null
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")")
check "held: the plan is 409 node is held" \
	sh -c "[ '$st' = 409 ] && grep -q 'node is held' '$TMP/body'"
sql "UPDATE nodes SET held = 0, state = 'ready', desired_version = '3' WHERE mac = '$MAC'" >/dev/null
st=$(code GET "$D" -H "$(auth "$NT")")
check "operator wants debian12 3: reimage true (the node runs 2)" \
	[ "$st" = 200 -a "$(jq_py 'd["image"]["version"], d["reimage"]')" = "3 True" ]
st=$(status "$NT" '{"state":"reimage","message":"desired image debian12 3"}')
curl -s -o "$TMP/script" "$B/boot/$MAC.ipxe"
check "status reimage: the next network boot provisions" \
	[ "$st" = 200 -a "$(sql "SELECT state FROM nodes WHERE mac = '$MAC'")" = reimage ] &&
	grep -q 'rackboot.mode=provision' "$TMP/script"
sql "UPDATE nodes SET desired_version = '', desired_package_sets = '[\"site\"]' WHERE mac = '$MAC'" >/dev/null
TB=$(script $MAC)
code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")" >/dev/null
check "the operator's package sets replace the profile's" \
	[ "$(jq_py '",".join(d["package_sets"]), " ".join(p["name"] for p in d["packages"])')" = "site site-tools cuda-runtime" ]
sql "UPDATE nodes SET desired_package_sets = '[\"nope\"]' WHERE mac = '$MAC'" >/dev/null
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")")
check "an undefined set is 409 naming it" \
	sh -c "[ '$st' = 409 ] && grep -q 'package set .*nope.* is not defined' '$TMP/body'"
sql "UPDATE nodes SET desired_package_sets = '', profile = 'broken' WHERE mac = '$MAC'" >/dev/null
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")")
check "a pinned version the catalogue lacks is 409 naming set, package and version" \
	sh -c "[ '$st' = 409 ] && grep -q 'package set .*missing.*: nvidia-driver 999 is not in the repository catalogue' '$TMP/body'"
sql "UPDATE nodes SET profile = 'byip', ip = '' WHERE mac = '$MAC'" >/dev/null
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")")
check "a {ip} host name without a known address is 409" \
	sh -c "[ '$st' = 409 ] && grep -q 'needs {ip}' '$TMP/body'"
sql "UPDATE nodes SET ip = '10.77.0.42' WHERE mac = '$MAC'" >/dev/null
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")")
check "{ip} expanded; no package sets: empty lists; root_partition 2" \
	[ "$st" = 200 -a "$(jq_py 'd["post_install"]["hostname"], d["packages"], d["package_sets"], d["post_install"]["ssh_keys"], d["post_install"]["root_partition"]')" = "n-10-77-0-42 [] [] [] 2" ]

# Stopped here, not by the EXIT trap: SIGTERM and a wait, so that a leak
# (LeakSanitizer in the ASan build) or a bad exit status fails the test.
rb_finish
