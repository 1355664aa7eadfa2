#!/bin/sh
# rackbootd's configuration as an operator meets it: --check-config prints
# the effective config (itself valid), a bad value names file, line and
# expected form and the server does not start (no port bound, no state
# written), and command-line flags override the file.
set -u
. "$(dirname "$0")/lib.sh"
rbd=$RB_SRV
rb_need_bin "$rbd"
rb_setup config
work=$RB_TMP

# Embedded defaults.
"$rbd" --check-config >"$work/defaults.conf" 2>&1
check "defaults: --check-config exits 0" test $? -eq 0
check "defaults: proxy DHCP" grep -q 'mode = "proxy"' "$work/defaults.conf"
check "defaults: tftp root" grep -q 'root = "/srv/rackboot/tftp"' "$work/defaults.conf"
check "defaults: says where they came from" grep -q 'embedded defaults' "$work/defaults.conf"

# What --check-config prints loads again, unchanged.
"$rbd" -c "$work/defaults.conf" --check-config >"$work/again.conf" 2>&1
check "printed config is valid" test $? -eq 0
sed 1d "$work/defaults.conf" >"$work/a"; sed 1d "$work/again.conf" >"$work/b"
check "printed config round-trips" cmp -s "$work/a" "$work/b"

# The example config in templates/ is valid.
"$rbd" -c "$RB_SRC/templates/rackbootd.conf" --check-config >"$work/out" 2>&1
check "templates/rackbootd.conf is valid" test $? -eq 0
# ... and so are its commented example profiles and rule, once uncommented
# and made the default; --check-config then prints them back.
sed 's/^# profile/profile/; s/^# rule/rule/; s/^# package_set/package_set/; s/^#\t/\t/; s/^# }/}/; s/^default_profile = ""/default_profile = "debian12"/' \
	"$RB_SRC/templates/rackbootd.conf" >"$work/profile.conf"
"$rbd" -c "$work/profile.conf" --check-config >"$work/out" 2>&1
check "example profile is valid" test $? -eq 0
check "example profile printed back" grep -q '^profile "debian12" {' "$work/out"
check "example default_profile printed back" grep -q '^default_profile = "debian12"' "$work/out"
check "example package set printed back" \
	sh -c "grep -q '^package_set \"gpu\" {' '$work/out' && grep -q 'packages = {\"nvidia-driver=550.54.15\", \"cuda-runtime\"}' '$work/out'"
check "example rule printed back" \
	sh -c "grep -q '^rule \"gpu\" {' '$work/out' && grep -q 'gpu_vendor = \"0x10de\"' '$work/out'"
"$rbd" -c "$work/out" --check-config >"$work/out2" 2>&1
sed 1d "$work/out" >"$work/a"; sed 1d "$work/out2" >"$work/b"
check "printed config with a profile round-trips" cmp -s "$work/a" "$work/b"

# A bad value: file:line: what, expected form; exit 1; nothing started.
cat >"$work/bad.conf" <<EOC
state_dir = "$work/state"
http { port = 18123 }
tftp {
	max_windowsize = 500
}
EOC
"$rbd" -c "$work/bad.conf" --dhcp off >"$work/out" 2>&1
rc=$?
check "bad value: exit 1" test $rc -eq 1
check "bad value: names file and line" grep -q "$work/bad.conf:4: max_windowsize = 500: expected a number from 1 to 64" "$work/out"
check "bad value: says it does not start" grep -q "not starting" "$work/out"
check "bad value: no state written" test ! -e "$work/state"

# A truncated file is refused, not half-applied.
printf 'dhcp {\n\tmode = "full"\n' >"$work/trunc.conf"
"$rbd" -c "$work/trunc.conf" --check-config >"$work/out" 2>&1
check "truncated file refused" test $? -eq 1
check "truncated file: names the open section" grep -q "trunc.conf:1: section opened here is never closed" "$work/out"

# Missing file.
"$rbd" -c "$work/nope.conf" --check-config >"$work/out" 2>&1
check "missing file: exit 1" test $? -eq 1
check "missing file: says so" grep -q "nope.conf: cannot read" "$work/out"

# Unknown flag and stray argument: usage, exit 2.
"$rbd" --bogus >"$work/out" 2>&1
check "unknown flag: exit 2" test $? -eq 2
"$rbd" stray >"$work/out" 2>&1
check "stray argument: exit 2" test $? -eq 2

# Overrides win over the file.
printf 'http { port = 9000 }\ndhcp { mode = "proxy" }\n' >"$work/ovr.conf"
"$rbd" -c "$work/ovr.conf" --http-port 9100 --dhcp off --root /srv/x --check-config >"$work/out" 2>&1
check "override: http port" grep -q 'port = 9100' "$work/out"
check "override: dhcp mode" grep -q 'mode = "off"' "$work/out"
check "override: root" grep -q 'root = "/srv/x/tftp"' "$work/out"
"$rbd" --http-port 0 --check-config >"$work/out" 2>&1
check "override: bad port refused" test $? -eq 1

# A config that is valid but cannot start (missing boot root) fails
# cleanly, names the path, and leaves no process behind.
cat >"$work/noroot.conf" <<EOC
user = ""
state_dir = "$work/state2"
dhcp { mode = "off" }
tftp { enable = false }
http { port = 18124 boot_root = "$work/does-not-exist" }
EOC
timeout 10 "$rbd" -c "$work/noroot.conf" >"$work/out" 2>&1
rc=$?
check "missing boot root: exits 1 (not a hang, not a crash)" test $rc -eq 1
check "missing boot root: names the path" grep -q "$work/does-not-exist" "$work/out"

rb_finish
