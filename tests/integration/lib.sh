# shellcheck shell=sh
# What the integration scripts share (sourced; POSIX sh, so the /bin/sh
# scripts can use it as well as the bash ones).
#
# It owns: the test's scratch directory ($RB_TMP) and the EXIT/INT/TERM
# traps that remove it; the one rackbootd a script runs at a time ($RB_PID,
# its output appended to $RB_LOG); the pass/fail counters and the summary.
# It must never kill anything but $RB_PID and what the script's own
# RB_ON_EXIT hook names, and never stop the final server in a way that
# hides its exit status: a rackbootd killed with SIGKILL, or left running
# until the EXIT trap deletes its log, reports nothing, because
# LeakSanitizer (the ASan build) and valgrind speak only when the process
# exits normally, and only to its stderr.
#
# A script:
#   . "$(dirname "$0")/lib.sh"
#   rb_need_bin "$RB_BUILD/pxe/rackbootd"; rb_need_cmd curl python3
#   rb_setup http                  # RB_TMP, RB_LOG, traps
#   PORT=$(rb_free_ports tcp)
#   rb_start_server "http://127.0.0.1:$PORT/boot/" "$RB_SRV" -c CONF -v
#   check "NAME" COMMAND...; pass "NAME"; fail "NAME"
#   rb_finish                      # rb_stop (checked), summary, exit
#
# Exit status 77 is meson's "skipped".

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../../build}
# shellcheck disable=SC2034 # for the scripts that source this
RB_SRV=$RB_BUILD/pxe/rackbootd
RB_TMP=
RB_LOG=
RB_PID=
RB_ON_EXIT=
RB_PASSES=0
RB_FAILS=0

# ---- prerequisites -------------------------------------------------------------
# rb_need_bin FILE...: skip (77) unless every FILE is an executable built.
rb_need_bin() {
	for _rb_b in "$@"; do
		[ -x "$_rb_b" ] || {
			echo "SKIP: $_rb_b not built"
			exit 77
		}
	done
}
# rb_need_cmd COMMAND...: skip (77) unless every COMMAND is in PATH.
rb_need_cmd() {
	for _rb_t in "$@"; do
		command -v "$_rb_t" >/dev/null || {
			echo "SKIP: $_rb_t not installed"
			exit 77
		}
	done
}

# ---- scratch directory and traps -----------------------------------------------
# rb_setup NAME: makes RB_TMP (/tmp/rbt-NAME.XXXXXX), sets RB_LOG in it and
# the traps. On exit the script's RB_ON_EXIT command runs first (its own
# agents, loop devices, mounts), then a rackbootd still running is killed
# (an early exit: the final stop is rb_stop's), then RB_TMP goes (KEEP=1
# keeps it).
rb_setup() {
	RB_TMP=$(mktemp -d "/tmp/rbt-$1.XXXXXX") || exit 1
	RB_LOG=$RB_TMP/rackbootd.log
	trap rb_cleanup EXIT
	trap 'exit 1' INT TERM
}
rb_cleanup() {
	[ -n "$RB_ON_EXIT" ] && $RB_ON_EXIT
	rb_kill_server
	if [ -n "${KEEP:-}" ]; then
		echo "kept $RB_TMP"
	elif [ -n "$RB_TMP" ]; then
		rm -rf "$RB_TMP"
	fi
}

# ---- ports ---------------------------------------------------------------------
# rb_free_ports tcp|udp...: one free port on 127.0.0.1 for each word, on one
# line (all held at once while choosing, so they differ).
rb_free_ports() {
	python3 - "$@" <<'EOF'
import socket, sys
held = []
for kind in sys.argv[1:]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    held.append(s)
print(*[s.getsockname()[1] for s in held])
EOF
}

# ---- the server ----------------------------------------------------------------
# rb_repo_conf REPO: the configuration most agent tests serve a repository
# with: RB_TMP/rackbootd.conf on a free port of 127.0.0.1 (RB_PORT), DHCP and
# TFTP off, boot_root RB_TMP/boot,
# repo_root REPO, 4 HTTP threads, no privilege drop.
rb_repo_conf() {
	RB_PORT=$(rb_free_ports tcp) || exit 1
	mkdir -p "$RB_TMP/boot" "$RB_TMP/state"
	cat >"$RB_TMP/rackbootd.conf" <<EOF
user = ""
state_dir = "$RB_TMP/state"
server_address = "127.0.0.1"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $RB_PORT
	boot_root = "$RB_TMP/boot"
	repo_root = "$1"
	threads = 4
}
EOF
}

# rb_pkg IMG REPO KEY NAME VERSION: builds a one-file package (NAME VERSION
# in usr/share/NAME/VERSION, no dependencies) under RB_TMP/pk with the
# rackboot-image IMG and indexes it into REPO signed with KEY; exits the
# test when either step fails.
rb_pkg() {
	_rb_d=$RB_TMP/pk/$4-$5
	mkdir -p "$_rb_d/tree/usr/share/$4"
	echo "$4 $5" >"$_rb_d/tree/usr/share/$4/VERSION"
	printf '{"name": "%s", "version": "%s", "arch": "all", "depends": [], "conflicts": [], "scripts": {}}\n' \
		"$4" "$5" >"$_rb_d/meta.json"
	"$1" pkg build "$_rb_d/tree" --meta "$_rb_d/meta.json" --out "$_rb_d.tar.zst" >/dev/null &&
		"$1" pkg index --repo "$2" --key "$3" "$_rb_d.tar.zst" >/dev/null ||
		{ echo "FAIL: pkg $4 $5"; exit 1; }
}

# rb_start_server URL COMMAND...: runs COMMAND (rackbootd, or a wrapper that
# execs it: ip netns exec, valgrind) in the background with its output
# appended to RB_LOG, sets RB_PID, and waits until URL answers curl.
rb_start_server() {
	_rb_url=$1
	shift
	"$@" >>"$RB_LOG" 2>&1 &
	RB_PID=$!
	rb_wait_server curl -s -m 5 -o /dev/null "$_rb_url"
}
# rb_wait_server PROBE...: waits until the command PROBE succeeds, at most
# RB_START_TIMEOUT_S (default 10) seconds and only while RB_PID lives;
# otherwise prints the log (and the files RB_EXTRA_LOGS names: valgrind's)
# and exits 1.
rb_wait_server() {
	_rb_n=0
	while [ $_rb_n -lt $((${RB_START_TIMEOUT_S:-10} * 10)) ]; do
		"$@" && return 0
		kill -0 "$RB_PID" 2>/dev/null || break
		sleep 0.1
		_rb_n=$((_rb_n + 1))
	done
	"$@" && return 0
	echo "FAIL: rackbootd did not start (waited for: $*); its log:"
	# shellcheck disable=SC2086 # a list of files
	cat "$RB_LOG" ${RB_EXTRA_LOGS:-} 2>/dev/null
	exit 1
}
# rb_kill_server: SIGKILL for RB_PID (a fault a test makes, or the trap on
# an early exit); nothing checked.
rb_kill_server() {
	[ -n "$RB_PID" ] || return 0
	kill -CONT "$RB_PID" 2>/dev/null
	kill -KILL "$RB_PID" 2>/dev/null
	wait "$RB_PID" 2>/dev/null
	RB_PID=
}

# rb_stop_server PID LOG [WAITPID]: SIGTERM to PID, wait for WAITPID (default
# PID: the child that is, or execs, rackbootd; strace's PID when rackbootd
# runs under it, which exits with its status), and 0 only when it exited 0
# and LOG holds no sanitizer report (the report is printed). With
# ASAN_OPTIONS abort_on_error=1 (scripts/test) a leak ends in SIGABRT,
# without it in LSan's exitcode (23): both are non-zero. Waits at most
# RB_STOP_TIMEOUT_S (default 60) seconds, then SIGKILL and 1.
rb_stop_server() {
	_rb_pid=$1
	_rb_log=$2
	_rb_wpid=${3:-$1}
	_rb_n=0
	_rb_rc=0
	kill -CONT "$_rb_pid" 2>/dev/null
	kill -TERM "$_rb_pid" 2>/dev/null || {
		echo "rackbootd (pid $_rb_pid) was not running at the end of the test"
		wait "$_rb_wpid" 2>/dev/null
		return 1
	}
	# A child that has exited stays a zombie until waited for: kill -0
	# still succeeds on it, so look at its state.
	while kill -0 "$_rb_wpid" 2>/dev/null &&
		[ "$(ps -o stat= -p "$_rb_wpid" 2>/dev/null | cut -c1)" != Z ]; do
		_rb_n=$((_rb_n + 1))
		if [ $_rb_n -gt $((${RB_STOP_TIMEOUT_S:-60} * 10)) ]; then
			echo "rackbootd (pid $_rb_pid) did not exit within ${RB_STOP_TIMEOUT_S:-60} s of SIGTERM"
			kill -KILL "$_rb_pid" "$_rb_wpid" 2>/dev/null
			wait "$_rb_wpid" 2>/dev/null
			return 1
		fi
		sleep 0.1
	done
	wait "$_rb_wpid"
	_rb_rc=$?
	if [ $_rb_rc -ne 0 ]; then
		echo "rackbootd exited with status $_rb_rc on SIGTERM (not 0)"
	fi
	if grep -qE 'LeakSanitizer|AddressSanitizer|runtime error:' "$_rb_log" 2>/dev/null; then
		echo "rackbootd's log holds a sanitizer report:"
		grep -A40 -E 'LeakSanitizer|AddressSanitizer|runtime error:' "$_rb_log" | head -80
		_rb_rc=1
	fi
	return $_rb_rc
}
# rb_stop [WAITPID]: stops RB_PID with rb_stop_server, as a check.
# shellcheck disable=SC2120 # WAITPID is optional
rb_stop() {
	check "rackbootd stopped on SIGTERM: exit 0, no sanitizer report in its log" \
		rb_stop_server "$RB_PID" "$RB_LOG" "$@"
	RB_PID=
}

# ---- talking to it -------------------------------------------------------------
# rb_code METHOD URL [curl args...]: prints the HTTP status; the body is in
# RB_TMP/body (removed first: curl writes no file for an empty body), the
# headers in RB_TMP/hdr.
rb_code() {
	_rb_m=$1
	_rb_u=$2
	shift 2
	rm -f "$RB_TMP/body"
	curl -s -D "$RB_TMP/hdr" -o "$RB_TMP/body" -w '%{http_code}' -X "$_rb_m" "$@" "$_rb_u"
}
# rb_json EXPR: prints the Python expression EXPR of d, the JSON in
# RB_TMP/body.
rb_json() {
	python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print($1)" "$RB_TMP/body"
}
# rb_sql DB STATEMENT: runs STATEMENT on the registry DB as an operator
# would by hand (a busy timeout, committed); prints the rows, if any.
rb_sql() {
	python3 - "$1" "$2" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], timeout=10)
rows = db.execute(sys.argv[2]).fetchall()
db.commit()
for r in rows:
    print(*r)
EOF
}

# ---- checks --------------------------------------------------------------------
pass() {
	echo "ok: $*"
	RB_PASSES=$((RB_PASSES + 1))
}
fail() {
	echo "FAIL: $*"
	RB_FAILS=$((RB_FAILS + 1))
}
# check NAME COMMAND...: pass NAME when COMMAND succeeds, else fail NAME.
check() {
	_rb_name=$1
	shift
	if "$@"; then pass "$_rb_name"; else fail "$_rb_name"; fi
}
# rb_finish [STATUS]: the last step. Stops a rackbootd still running
# (rb_stop), prints the counts and exits STATUS (default 0) when nothing
# failed, else prints the end of RB_LOG and exits 1.
rb_finish() {
	[ -n "$RB_PID" ] && rb_stop
	echo "$RB_PASSES passed, $RB_FAILS failed"
	if [ "$RB_FAILS" -ne 0 ]; then
		if [ -s "$RB_LOG" ]; then
			echo "--- the end of rackbootd's log:"
			tail -n 30 "$RB_LOG"
		fi
		exit 1
	fi
	exit "${1:-0}"
}
