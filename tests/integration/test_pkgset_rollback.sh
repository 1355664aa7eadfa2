#!/bin/sh
# Package-set rollback on the real rackbootd (127.0.0.1), with a repository
# made by rackboot-image (pkg build + pkg index):
#  - the server records per set the versions it handed out (current) and
#    the ones before (previous) when a newer package enters the catalogue;
#  - POST /api/v1/package-sets/<name>/actions/rollback (operator token,
#    401 without) pins the set to previous: /desired and the plan hand out
#    the older version with a new ETag; unpin goes back to the newest;
#  - rollback of a set with no previous resolution is 409 and changes
#    nothing; an unknown set is 404; GET on an action is 405;
#  - the rackboot CLI: pkgset show|rollback|unpin, --json, exit 1 on 409.
# Starts its own rackbootd (DHCP and TFTP off) and kills only that PID.
set -u

. "$(dirname "$0")/lib.sh"
BIN=$RB_BUILD/pxe/rackbootd
IMG=$RB_BUILD/imager/rackboot-image
CLI=$RB_BUILD/cli/rackboot
rb_need_bin "$BIN" "$IMG" "$CLI"
rb_need_cmd curl python3 truncate

rb_setup pkgset
TMP=$RB_TMP
PORT=$(rb_free_ports tcp)
B=http://127.0.0.1:$PORT
DB=$TMP/state/registry.db

sql() { rb_sql "$DB" "$1"; }
code() { # code METHOD URL [curl args...]: prints the status; body in $TMP/body, headers in $TMP/hdr
	m=$1
	u=$2
	shift 2
	rm -f "$TMP/body"
	curl -s -o "$TMP/body" -D "$TMP/hdr" -w '%{http_code}' -X "$m" "$@" "$u"
}
jq_py() { rb_json "$1"; }
script() { # script MAC: fetches the node's iPXE script; prints its boot token
	curl -sf -o "$TMP/script" "$B/boot/$1.ipxe" || return 1
	sed -n 's/^kernel .* rackboot\.token=\([^ ]*\) .*/\1/p' "$TMP/script"
}
auth() { echo "Authorization: Bearer $1"; }
etag() { sed -n 's/^[Ee][Tt][Aa][Gg]: *\(.*\)\r$/\1/p' "$TMP/hdr"; }
# version NAME: the version of package NAME in the JSON body's "packages"
version() { jq_py "[p['version'] for p in d['packages'] if p['name'] == '$1'][0]"; }

mkdir -p "$TMP/repo" "$TMP/boot" "$TMP/state" "$TMP/pk"
"$IMG" keygen "$TMP/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
truncate -s 2M "$TMP/disk.img"
"$IMG" build --repo "$TMP/repo" --key "$TMP/site.key" --name debian12 --version 1 \
	"$TMP/disk.img" >/dev/null 2>&1 || { echo "FAIL: rackboot-image build"; exit 1; }
pkg() { rb_pkg "$IMG" "$TMP/repo" "$TMP/site.key" "$1" "$2"; } # a one-file package, indexed
pkg tool 1.0
pkg solo 1

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
package_set "tools" { packages = {"tool"} }
package_set "solo" { packages = {"solo"} }
package_set "unused" { packages = {"tool"} }
profile "p" {
	image = "debian12"
	version = "1"
	package_sets = {"tools", "solo"}
}
EOF
OPT=$("$BIN" -c "$TMP/rackbootd.conf" token create alice 2>/dev/null)
OP="Authorization: Bearer $OPT"
rb_start_server "$B/boot/" "$BIN" -c "$TMP/rackbootd.conf" -v

MAC=52:54:00:5a:77:01
script $MAC >/dev/null
sql "UPDATE nodes SET state = 'provisioning', profile = 'p' WHERE mac = '$MAC'" >/dev/null
TB=$(script $MAC)
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")")
check "plan 200 with tool 1.0" [ "$st" = 200 -a "$(version tool)" = 1.0 ]
NT=$(jq_py 'd["node_token"]')
D=$B/api/v1/nodes/$MAC/desired
st=$(code GET "$D" -H "$(auth "$NT")")
E1=$(etag)
check "desired 200 with tool 1.0" [ "$st" = 200 -a "$(version tool)" = 1.0 ]

st=$(code POST "$B/api/v1/package-sets/tools/actions/rollback" -H "$OP")
check "rollback with only one resolution handed out: 409 saying so" \
	sh -c "[ '$st' = 409 ] && grep -q 'no previous resolution' '$TMP/body'"

pkg tool 2.0
st=$(code GET "$D" -H "$(auth "$NT")" -H "If-None-Match: $E1")
E2=$(etag)
check "a newer tool in the catalogue: desired has 2.0, a new ETag" \
	[ "$st" = 200 -a "$(version tool)" = 2.0 -a "$E2" != "$E1" ]
st=$(code GET "$B/api/v1/package-sets/tools" -H "$OP")
check "GET package-sets/tools: current 2.0, previous 1.0, not pinned" \
	[ "$st" = 200 -a "$(jq_py 'd["current"], d["previous"], d["pinned"]')" = "{'tool': '2.0'} {'tool': '1.0'} None" ]
check "the registry's pkgset_state row" \
	[ "$(sql "SELECT current, previous, pinned FROM pkgset_state WHERE name = 'tools'")" = '{"tool":"2.0"} {"tool":"1.0"} ' ]

st=$(code POST "$B/api/v1/package-sets/tools/actions/rollback")
check "rollback without a token: 401" [ "$st" = 401 ]
st=$(code POST "$B/api/v1/package-sets/tools/actions/rollback" -H "Authorization: Bearer rbo_000000000000000000000000000000000000000000000000")
check "rollback with an unknown token: 401, nothing pinned" \
	[ "$st" = 401 -a "$(sql "SELECT pinned FROM pkgset_state WHERE name = 'tools'")" = "" ]
st=$(code GET "$B/api/v1/package-sets/tools/actions/rollback" -H "$OP")
check "GET on an action: 405" [ "$st" = 405 ]
st=$(code POST "$B/api/v1/package-sets/nope/actions/rollback" -H "$OP")
check "rollback of an undefined set: 404" [ "$st" = 404 ]
st=$(code POST "$B/api/v1/package-sets/tools/actions/frob" -H "$OP")
check "an unknown action: 404" [ "$st" = 404 ]

st=$(code POST "$B/api/v1/package-sets/tools/actions/rollback" -H "$OP")
check "rollback: 200, pinned to tool 1.0" \
	[ "$st" = 200 -a "$(jq_py 'd["name"], d["pinned"], d["current"]')" = "tools {'tool': '1.0'} {'tool': '2.0'}" ]
check "rollback is logged with the token's name" grep -q 'op.pkgset_rollback: package set "tools" by token "alice"' "$TMP/rackbootd.log"
st=$(code GET "$D" -H "$(auth "$NT")" -H "If-None-Match: $E2")
E3=$(etag)
check "rolled back: desired has tool 1.0 again, an ETag other than 2.0's" \
	[ "$st" = 200 -a "$(version tool)" = 1.0 -a "$E3" != "$E2" ]
TB=$(script $MAC)
st=$(code GET "$B/api/v1/nodes/$MAC/plan" -H "$(auth "$TB")")
NT=$(jq_py 'd["node_token"]')
check "rolled back: the plan has tool 1.0, solo as before" \
	[ "$st" = 200 -a "$(version tool) $(version solo)" = "1.0 1" ]
check "a pin does not move current/previous" \
	[ "$(sql "SELECT current, previous FROM pkgset_state WHERE name = 'tools'")" = '{"tool":"2.0"} {"tool":"1.0"}' ]

st=$(code POST "$B/api/v1/package-sets/solo/actions/rollback" -H "$OP")
check "rollback of solo (one resolution only): 409, nothing pinned" \
	[ "$st" = 409 -a "$(sql "SELECT current, previous, pinned FROM pkgset_state WHERE name = 'solo'")" = '{"solo":"1"}  ' ]
st=$(code POST "$B/api/v1/package-sets/unused/actions/rollback" -H "$OP")
check "rollback of a set never handed out: 409" [ "$st" = 409 ]

st=$(code POST "$B/api/v1/package-sets/tools/actions/unpin" -H "$OP")
check "unpin: 200, pinned null" [ "$st" = 200 -a "$(jq_py 'd["pinned"]')" = None ]
st=$(code GET "$D" -H "$(auth "$NT")" -H "If-None-Match: $E3")
check "unpinned: desired has tool 2.0 and 2.0's ETag" \
	[ "$st" = 200 -a "$(version tool)" = 2.0 -a "$(etag)" = "$E2" ]

# --- the CLI -----------------------------------------------------------------------
R() { "$CLI" --server "$B" --token "$OPT" "$@"; }
R pkgset show tools >"$TMP/out" 2>&1
check "rackboot pkgset show: current and previous versions" \
	sh -c "[ $? = 0 ] && grep -q '^current  *tool=2.0' '$TMP/out' && grep -q '^previous  *tool=1.0' '$TMP/out' && grep -q '^pinned  *-' '$TMP/out'"
R pkgset rollback tools >"$TMP/out" 2>&1
check "rackboot pkgset rollback: exit 0, pinned" \
	sh -c "[ $? = 0 ] && grep -q 'pinned to its previous' '$TMP/out' && grep -q '^pinned  *tool=1.0' '$TMP/out'"
R --json pkgset unpin tools >"$TMP/body" 2>&1
check "rackboot --json pkgset unpin: the server's JSON, not pinned" \
	[ $? = 0 -a "$(jq_py 'd["pinned"]')" = None ]
R pkgset rollback solo >"$TMP/out" 2>&1
check "rackboot pkgset rollback without a previous: exit 1 with the reason" \
	sh -c "[ $? = 1 ] && grep -q 'no previous resolution' '$TMP/out'"
R pkgset ls >"$TMP/out" 2>&1
check "rackboot pkgset ls lists the sets" sh -c "[ $? = 0 ] && grep -q '^tools' '$TMP/out' && grep -q '^solo' '$TMP/out'"
R pkgset rollback >/dev/null 2>&1
check "rackboot pkgset rollback without a name: exit 2" [ $? = 2 ]

rb_finish
