#!/bin/sh
# Regenerates the version-order vectors of test_pkgresolve.c from the real
# dpkg (run by hand on a Debian host, never by the test):
#   sh tests/unit/agent/pkgversions.sh
# and paste the output into versions[] there.
while read -r a b; do
	if dpkg --compare-versions "$a" lt "$b" 2>/dev/null; then r=-1
	elif dpkg --compare-versions "$a" eq "$b" 2>/dev/null; then r=0
	else r=1; fi
	printf '\t\t{ "%s", "%s", %d },\n' "$a" "$b" "$r"
done <<'PAIRS'
1.0 1.0
1.0 1.1
1.10 1.9
1.0~rc1 1.0
1.0~rc1 1.0~rc2
1.0~~ 1.0~
1.0~ 1.0
1.0 1.0+
1.0 1.0.0
1.0a 1.0
1.0a 1.0.
1:1.0 2.0
0:1.0 1.0
1.0-1 1.0-2
1.0-1 1.0
1.0-0 1.0
1.0-10 1.0-9
2.0-1 10.0-1
1.0-1ubuntu1 1.0-1
1.0-1~bpo1 1.0-1
1.2.3 1.2.3a
a b
1.0a 1.0b
1.0A 1.0a
1.0+dfsg 1.0-1
001 1
1.001 1.1
1.0-1.1 1.0-1+b1
2:0.1 1:9.9
10:1 9:1
1.0~beta 1.0~alpha
1.0.1 1.0-1
0 0
0.0 0
1.0-a 1.0-A
7.4.052-1 7.4.52-1
1.0+ 1.0.
20240101 2024.01.01
PAIRS
