#!/bin/sh
# The rackboot CLI against a live rackbootd on 127.0.0.1: a token made with
# `rackboot token create` and found in --token, RACKBOOT_TOKEN or
# ~/.config/rackboot/token; node add/set/ls/show and the actions, with
# --json output parsed by python3 and the human tables checked for what an
# operator reads; images, profiles, package sets; `events` (the history)
# and `events -f` / `node ls --watch` following an agent's reports, and
# following on across a restart of the server; and the exit codes scripts
# rely on: 0 done, 1 refused (409, 404, 400), 2 usage, 3 no connection,
# 4 no or a refused token.
# Starts its own rackbootd (DHCP and TFTP off) and kills only the PIDs it
# started.
set -u

. "$(dirname "$0")/lib.sh"
BIN=$RB_BUILD/pxe/rackbootd
CLI=$RB_BUILD/cli/rackboot
IMG=$RB_BUILD/imager/rackboot-image
rb_need_bin "$BIN" "$CLI" "$IMG"
rb_need_cmd curl python3 truncate

rb_setup cli
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
mkdir -p "$TMP/repo" "$TMP/boot" "$TMP/state" "$TMP/home"
# No operator's own ~/.config or environment leaks into the test.
export HOME=$TMP/home
unset RACKBOOT_TOKEN RACKBOOT_SERVER XDG_CONFIG_HOME

"$IMG" keygen "$TMP/site" >/dev/null || { echo "FAIL: keygen"; exit 1; }
truncate -s 1M "$TMP/disk.img"
"$IMG" register --repo "$TMP/repo" --key "$TMP/site.key" --name site-raw --version 3 \
	"$TMP/disk.img" >/dev/null || { echo "FAIL: register raw"; exit 1; }
cat >"$CONF" <<EOF
user = ""
state_dir = "$TMP/state"
server_address = "127.0.0.1"
dhcp { mode = "off" }
tftp { enable = false }
http { port = $PORT boot_root = "$TMP/boot" repo_root = "$TMP/repo" }
package_set "site" { packages = {"slurm-client=23.02"} }
profile "raw" { image = "site-raw" wipe = "full" package_sets = {"site"} }
default_profile = "raw"
EOF

start_server() { rb_start_server "$B/boot/" "$BIN" -c "$CONF" -v; }
start_server

# rb ARGS...: the CLI against this server; stdout in $TMP/out, stderr in
# $TMP/err, the exit code printed.
rb() {
	"$CLI" --server "$B" "$@" >"$TMP/out" 2>"$TMP/err"
	echo $?
}
py() { python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$TMP/out"; }

# --- tokens and exit codes ---------------------------------------------------------
TOKEN=$("$CLI" token create cli --tokens-file "$TMP/state/tokens" 2>"$TMP/err")
check "rackboot token create prints a token (exit 0)" sh -c "echo '$TOKEN' | grep -Eqx 'rbo_[0-9a-f]{48}'"
check "... and says where it went" grep -q "$TMP/state/tokens" "$TMP/err"
check "token create with a name in use: exit 1" is "$("$CLI" token create cli --tokens-file "$TMP/state/tokens" 2>/dev/null >/dev/null; echo $?)" 1
check "token create with a bad name: exit 2" is "$("$CLI" token create 'a b' --tokens-file "$TMP/state/tokens" 2>/dev/null >/dev/null; echo $?)" 2

check "no token anywhere: exit 4" is "$(rb node ls)" 4
check "... saying how to get one" grep -q "rackbootd token create" "$TMP/err"
check "a wrong token: exit 4" is "$(rb --token rbo_0000 node ls)" 4
check "... with the server's reason" grep -q "not a valid operator token" "$TMP/err"
check "--token: exit 0" is "$(rb --token "$TOKEN" node ls)" 0
export RACKBOOT_TOKEN=$TOKEN
check "RACKBOOT_TOKEN: exit 0" is "$(rb node ls)" 0
unset RACKBOOT_TOKEN
mkdir -p "$HOME/.config/rackboot"
echo "$TOKEN" >"$HOME/.config/rackboot/token"
chmod 600 "$HOME/.config/rackboot/token"
check "~/.config/rackboot/token: exit 0" is "$(rb node ls)" 0
chmod 644 "$HOME/.config/rackboot/token"
rb node ls >/dev/null
check "a token file others can read: a warning" grep -q "chmod 600" "$TMP/err"
chmod 600 "$HOME/.config/rackboot/token"

check "nothing listening: exit 3" is "$("$CLI" --server http://127.0.0.1:1 node ls >/dev/null 2>"$TMP/err"; echo $?)" 3
check "... saying to check --server" grep -q "RACKBOOT_SERVER" "$TMP/err"
check "a server that is not rackbootd (404 without JSON): exit 1 or 3" \
	sh -c "r=\$('$CLI' --server '$B/boot' node ls >/dev/null 2>&1; echo \$?); [ \$r = 1 ] || [ \$r = 3 ]"
check "unknown command: exit 2" is "$(rb frobnicate)" 2
check "node show without a MAC: exit 2" is "$(rb node show)" 2
check "a bad MAC: exit 2" is "$(rb node hold 52:54:00)" 2
check "--wipe on hold: exit 2" is "$(rb node hold 52:54:00:00:00:01 --wipe full)" 2
check "a bad wipe level: exit 2" is "$(rb node reimage 52:54:00:00:00:01 --wipe most)" 2
check "--help: exit 0, lists the exit codes" sh -c "'$CLI' --help | grep -q '4 no token'"

# --- nodes ----------------------------------------------------------------------------
M1=52:54:00:c1:00:01
M2=52:54:00:c1:00:02
check "node add: exit 0" is "$(rb node add $M1 --hostname web-1 --rack r7 --label tenant=a --label role=web)" 0
check "node add prints the node" grep -q "$M1: registered, new" "$TMP/out"
check "node add --json: the node document" \
	is "$(rb --json node add $M2 --profile raw; py 'd["mac"], d["profile"], d["state"]')" "0
$M2 raw new"
check "node add of a known MAC: exit 1 (409)" is "$(rb node add $M1)" 1
check "... the reason" grep -q "registered already" "$TMP/err"
check "node add with an undefined profile: exit 1 (400), says which" \
	sh -c "[ \$('$CLI' --server '$B' node add 52:54:00:c1:00:09 --profile nope 2>&1 >/dev/null | grep -c 'profile \"nope\" is not defined') = 1 ]"

check "node ls --json: both, parsed" is "$(rb node ls --json; py 'sorted(n["mac"] for n in d["nodes"])')" "0
['$M1', '$M2']"
check "node ls --label tenant=a --json: the filter" is "$(rb --json node ls --label tenant=a; py '[n["mac"] for n in d["nodes"]]')" "0
['$M1']"
check "node ls --rack r7 --state new: the filter" is "$(rb --json node ls --rack r7 --state new; py 'len(d["nodes"])')" "0
1"
rb node ls >/dev/null
check "node ls: a table with headings and both nodes" \
	sh -c "head -n 1 '$TMP/out' | grep -q '^MAC  *STATE  *PROFILE  *HOSTNAME  *RACK' && grep -q '^$M1  *new  *-  *web-1  *r7' '$TMP/out' && grep -q '^$M2  *new  *raw' '$TMP/out'"

check "node set: labels, rack, desired image, package sets" \
	is "$(rb --json node set $M1 --label tenant=b --unlabel role --rack r8 --image site-raw --version 3 --package-sets site; py 'd["labels"], d["rack"], d["desired"]')" "0
{'tenant': 'b'} r8 {'image': 'site-raw', 'version': '3', 'package_sets': ['site']}"
check "node set --package-sets-default: back to the profile's" \
	is "$(rb --json node set $M1 --package-sets-default; py 'd["desired"]["package_sets"]')" "0
None"
check "node set with nothing: exit 2" is "$(rb node set $M1)" 2
check "node set of an unknown node: exit 1 (404)" is "$(rb node set 52:54:00:c1:00:99 --rack x)" 1
check "node show of an unknown node: exit 1 (404)" is "$(rb node show 52:54:00:c1:00:99)" 1
check "node show: exit 0, human" is "$(rb node show $M1)" 0
check "node show: state, labels, rack and the events" \
	sh -c "grep -q '^state: *new' '$TMP/out' && grep -q '^labels: *tenant=b' '$TMP/out' && grep -q '^rack: *r8' '$TMP/out' && grep -q 'op.register  *by cli' '$TMP/out'"

# --- actions and the state machine ------------------------------------------------------
check "node hold: exit 0, held" is "$(rb --json node hold $M1; py 'd[0]["held"]')" "0
True"
check "node reimage of a held node: exit 1 (409)" is "$(rb node reimage $M1 --wipe full)" 1
check "... the reason names hold and release" grep -q "cannot reimage: node is held; release it first" "$TMP/err"
check "node hold again: exit 1 (already held)" is "$(rb node hold $M1)" 1
check "node release: exit 0" is "$(rb node release $M1)" 0
check "node provision of two nodes: exit 0, both provisioning" \
	is "$(rb --json node provision $M1 $M2; py '[n["state"] for n in d]')" "0
['provisioning', 'provisioning']"
check "node provision again: exit 1 for each (already provisioning)" is "$(rb node provision $M1 $M2)" 1
check "... one line per node" is "$(grep -c 'already being provisioned' "$TMP/err")" 2
check "node reimage --wipe full: exit 0, the pending wipe shown" \
	sh -c "[ \"\$('$CLI' --server '$B' node reimage $M2 --wipe full)\" = '$M2: provisioning, reimage with wipe full' ]"
check "node retire (no terminal: no question): exit 0, retired" is "$(rb --json node retire $M2; py 'd[0]["state"]')" "0
retired"
check "node reimage of a retired node: exit 1" is "$(rb node reimage $M2)" 1
check "a mix of good and refused nodes: exit 1, the good one done" \
	sh -c "r=\$('$CLI' --server '$B' --json node hold $M1 $M2 2>/dev/null >'$TMP/mix'; echo \$?); [ \$r = 1 ] && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [n[\"mac\"] for n in d] == [\"$M1\"] and d[0][\"held\"]' '$TMP/mix'"
rb node release $M1 >/dev/null

# --- catalogue and config -----------------------------------------------------------------
check "image ls --json: site-raw 3, plain" is "$(rb --json image ls; py '[(i["name"], i["latest"], i["versions"][0]["type"]) for i in d["images"]]')" "0
[('site-raw', '3', 'plain')]"
check "image ls: a table" sh -c "'$CLI' --server '$B' image ls | grep -q '^site-raw  *3  *plain  *3$'"
check "image show of an unknown image: exit 1" is "$(rb image show nope)" 1
check "profile ls --json: raw, the default" is "$(rb --json profile ls; py 'd["default_profile"], [p["name"] for p in d["profiles"]]')" "0
raw ['raw']"
check "profile ls: marks the default" sh -c "'$CLI' --server '$B' profile ls | grep -q '^raw (default)  *site-raw  *latest  *full'"
check "package-set show site --json" is "$(rb --json package-set show site; py 'd["packages"]')" "0
[{'name': 'slurm-client', 'version': '23.02'}]"

# --- events ----------------------------------------------------------------------------------
check "events --json (the history): one JSON object per line, ids in order" \
	sh -c "'$CLI' --server '$B' --json events >'$TMP/hist' && python3 -c '
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
ids = [e[\"id\"] for e in ev]
assert ids == sorted(ids) and len(ids) >= 10, ids
names = [e[\"event\"] for e in ev if e[\"mac\"] == \"$M1\"]
assert names[:2] == [\"op.register\", \"op.set\"], names
assert \"op.hold\" in names and \"op.provision\" in names
' '$TMP/hist'"
LAST=$(tail -n 2 "$TMP/hist" | head -n 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
"$CLI" --server "$B" --json events --since "$LAST" >"$TMP/since"
check "events --since: only the later ones" \
	python3 -c 'import json,sys; ids=[json.loads(l)["id"] for l in open(sys.argv[1])]; assert ids == [int(sys.argv[2]) + 1], ids' "$TMP/since" "$LAST"

# Follow while an agent reports; the server restarts in between.
"$CLI" --server "$B" --json events -f >"$TMP/follow" 2>"$TMP/follow.err" &
FPID=$!
BGPIDS="$BGPIDS $FPID"
"$CLI" --server "$B" --json node ls --watch >"$TMP/watch" 2>"$TMP/watch.err" &
WPID=$!
BGPIDS="$BGPIDS $WPID"
"$CLI" --server "$B" events -f >"$TMP/follow.human" 2>/dev/null &
HPID=$!
BGPIDS="$BGPIDS $HPID"
sleep 0.7
TN=$(curl -s "$B/boot/$M1.ipxe" | grep -o 'rackboot\.token=[0-9a-f]*' | cut -d= -f2)
for done in 1048576 3145728; do
	curl -s -o /dev/null -H "Authorization: Bearer $TN" \
		--data "{\"state\":\"imaging\",\"step\":\"write\",\"bytes_done\":$done,\"bytes_total\":4194304,\"rate\":2097152}" \
		"$B/api/v1/nodes/$M1/status"
	sleep 0.3
done
sleep 0.5
rb_stop
sleep 1
start_server
curl -s -o /dev/null -H "Authorization: Bearer $TN" --data '{"state":"imaged","step":"done"}' "$B/api/v1/nodes/$M1/status"
# The followers reconnect (backoff 1, 2, 4 s) and catch up.
for _ in $(seq 150); do
	grep -q agent.imaged "$TMP/follow" && grep -q agent.imaged "$TMP/follow.human" &&
		tail -n 1 "$TMP/watch" | grep -q '"imaged"' && break
	sleep 0.1
done
for p in $FPID $WPID $HPID; do kill "$p" 2>/dev/null; done
for p in $FPID $WPID $HPID; do wait "$p" 2>/dev/null; done
BGPIDS=
check "events -f --json: the agent's progress, as it came" python3 - "$TMP/follow" "$M1" <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
prog = [e["progress"]["bytes_done"] for e in ev if e["type"] == "progress" and e["mac"] == sys.argv[2]]
assert prog[:2] == [1048576, 3145728], prog
EOF
check "events -f --json: node events with their ids (agent.imaging)" python3 - "$TMP/follow" "$M1" <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert any(e["type"] == "node" and e["event"] == "agent.imaging" and e["id"] > 0 for e in ev), ev
EOF
check "events -f follows on after the server restarted (agent.imaged arrives)" python3 - "$TMP/follow" "$M1" <<'EOF'
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
assert any(e["type"] == "node" and e["event"] == "agent.imaged" for e in ev), [e.get("event") for e in ev]
EOF
check "... and said that it reconnects" grep -q "reconnecting" "$TMP/follow.err"
check "events -f (human, not a terminal): event lines and progress lines" \
	sh -c "grep -q '$M1  *imaging  *agent.imaging  *write' '$TMP/follow.human' && grep -q '^progress  $M1  \[#####' '$TMP/follow.human'"
check "node ls --watch --json: the list again as the node went imaging, then imaged" python3 - "$TMP/watch" "$M1" <<'EOF'
import json, sys
states = []
for line in open(sys.argv[1]):
    nodes = json.loads(line)
    n = [x for x in nodes if x["mac"] == sys.argv[2]][0]
    states.append(n["state"])
assert states[0] == "new" or states[0] == "provisioning", states
assert "imaging" in states and states[-1] == "imaged", states
EOF
check "node ls --watch --json: a list showed the live progress" python3 - "$TMP/watch" "$M1" <<'EOF'
import json, sys
seen = set()
for line in open(sys.argv[1]):
    for n in json.loads(line):
        if n["mac"] == sys.argv[2] and n.get("progress"):
            seen.add(n["progress"]["bytes_done"])
assert 3145728 in seen, seen
EOF

rb_finish
