# shellcheck shell=sh
# Stopping a test's rackbootd so that its leak checks count (sourced).
#
# A rackbootd killed with SIGKILL, or left running until the test's EXIT
# trap deletes its log, reports nothing: LeakSanitizer (the ASan build) and
# valgrind only speak when the process exits normally, and only to its
# stderr. rb_stop_server sends SIGTERM, waits for the exit (the server
# shuts down on SIGTERM and returns from main), and fails when the exit
# status is not 0 or the log holds a sanitizer report; the report is
# printed. With ASAN_OPTIONS abort_on_error=1 (scripts/test) a leak ends in
# SIGABRT, without it in LSan's exitcode (23): both are non-zero.
#
# rb_stop_server PID LOG: 0 when the server exited 0 with a clean log.
# Waits at most RB_STOP_TIMEOUT_S (default 60) seconds, then SIGKILL and 1.
rb_stop_server() {
	_rb_pid=$1
	_rb_log=$2
	_rb_n=0
	_rb_rc=0
	kill -TERM "$_rb_pid" 2>/dev/null || {
		echo "rackbootd (pid $_rb_pid) was not running at the end of the test"
		return 1
	}
	# A child that has exited stays a zombie until waited for: kill -0
	# still succeeds on it, so look at its state.
	while kill -0 "$_rb_pid" 2>/dev/null &&
		[ "$(ps -o stat= -p "$_rb_pid" 2>/dev/null | cut -c1)" != Z ]; do
		_rb_n=$((_rb_n + 1))
		if [ $_rb_n -gt $((${RB_STOP_TIMEOUT_S:-60} * 10)) ]; then
			echo "rackbootd (pid $_rb_pid) did not exit within ${RB_STOP_TIMEOUT_S:-60} s of SIGTERM"
			kill -KILL "$_rb_pid" 2>/dev/null
			wait "$_rb_pid" 2>/dev/null
			return 1
		fi
		sleep 0.1
	done
	wait "$_rb_pid"
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
