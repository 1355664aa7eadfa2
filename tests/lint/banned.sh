#!/bin/sh
# Fails if C sources call a banned function (curl checksrc's list, see
# CONVENTIONS.md): strcpy strcat sprintf vsprintf sscanf atoi strtok gets alloca.
cd "$1" || exit 1
hits=$(git ls-files -co --exclude-standard '*.c' '*.h' 2>/dev/null |
	xargs -r grep -nE '(^|[^_a-zA-Z0-9.>])(strcpy|strcat|sprintf|vsprintf|sscanf|atoi|strtok|gets|alloca)[[:space:]]*\(' |
	grep -vE '^[^:]+:[0-9]+:[[:space:]]*(//|/?\*)')
if [ -n "$hits" ]; then
	echo "banned functions used (use snprintf, rb_strtonum, memcpy with bounds):"
	echo "$hits"
	exit 1
fi
echo "no banned functions"
