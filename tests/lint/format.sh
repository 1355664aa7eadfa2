#!/bin/sh
# Fails if any C file differs from .clang-format (run scripts/format to fix).
cd "$1" || exit 1
command -v clang-format >/dev/null || { echo "clang-format not installed"; exit 77; }
bad=
for f in $(git ls-files -co --exclude-standard '*.c' '*.h'); do
	clang-format --style=file "$f" | cmp -s - "$f" || bad="$bad $f"
done
if [ -n "$bad" ]; then
	echo "not clang-formatted (run scripts/format):$bad"
	exit 1
fi
echo "all C files formatted"
