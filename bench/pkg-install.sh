#!/bin/bash
# Package install speed: 200 small packages (25 files each, 5,000 files,
# 200 B to 8 KiB, about 20 MiB) built with `rackboot-image pkg build` and
# indexed with `pkg index`, installed into a fresh directory root by
#   rackboot-agent pkg-install (one command, all 200 served by rackbootd on
#   127.0.0.1: catalogue signature, each archive's SHA-256 before it is
#   read, per-package transactions, installed.json with every file's hash)
# against the anchor
#   tar --zstd -xf PKG.tar.zst -C ROOT, one archive after another, from
#   local files (no download, no verification, no record).
# Each side runs ROUNDS times (default 3) into a fresh root on the same
# file system after a `sync`, interleaved; the best time is kept. Prints
# both times and anchor/agent (>= 1.00: the agent is at least as fast,
# verification included). The load average is printed before and after.
#   bench/pkg-install.sh [N_PKGS] [FILES_PER_PKG]   (default 200 25)
set -u

RB_BUILD=${RB_BUILD:-$(dirname "$0")/../build}
AGENT=$RB_BUILD/agent/rackboot-agent
IMG=$RB_BUILD/imager/rackboot-image
SRV=$RB_BUILD/pxe/rackbootd
NP=${1:-200}
NF=${2:-25}
ROUNDS=${ROUNDS:-3}
for b in "$AGENT" "$IMG" "$SRV"; do
	[ -x "$b" ] || { echo "SKIP: $b not built"; exit 77; }
done
for t in zstd tar curl python3; do
	command -v "$t" >/dev/null || { echo "SKIP: $t not installed"; exit 77; }
done
[ "$(id -u)" = 0 ] || { echo "SKIP: pkg-install restores owners: run as root"; exit 77; }
T=$(mktemp -d /var/tmp/rbt-pkgbench.XXXXXX)
PID=
cleanup() {
	if [ -n "$PID" ]; then
		kill "$PID" 2>/dev/null
		wait "$PID" 2>/dev/null
	fi
	rm -rf "$T"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$T/repo" "$T/boot" "$T/state" "$T/src" "$T/arch"
"$IMG" keygen "$T/site" >/dev/null || exit 1
python3 - "$T/src" "$NP" "$NF" <<'EOF'
import json, os, random, sys
src, np, nf = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(42)
words = [bytes(rnd.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
         for _ in range(2000)]
for p in range(np):
    name = f"bench{p:03d}"
    root = f"{src}/{name}/tree"
    for f in range(nf):
        d = f"{root}/usr/{'share' if f % 2 else 'lib'}/{name}/d{f % 5}"
        os.makedirs(d, exist_ok=True)
        size = rnd.randint(200, 8192)
        data = b" ".join(rnd.choice(words) for _ in range(size // 5))[:size]
        with open(f"{d}/f{f:02d}", "wb") as fh:
            fh.write(data)
    json.dump({"name": name, "version": "1.0", "arch": "all", "depends": [],
               "conflicts": [], "scripts": {}}, open(f"{src}/{name}/meta.json", "w"))
EOF
for d in "$T"/src/*/; do
	n=$(basename "$d")
	"$IMG" pkg build "$d/tree" --meta "$d/meta.json" --out "$T/arch/$n.tar.zst" >/dev/null ||
		{ echo "pkg build $n failed"; exit 1; }
done
"$IMG" pkg index --repo "$T/repo" --key "$T/site.key" "$T"/arch/*.tar.zst >/dev/null ||
	{ echo "pkg index failed"; exit 1; }
files=$(find "$T/src" -type f ! -name meta.json | wc -l)
bytes=$(du -sb --apparent-size "$T/src" | cut -f1)
echo "$NP packages, $files files, $bytes bytes (archives: $(du -sb "$T/arch" | cut -f1) bytes)"

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$T/rackbootd.conf" <<EOF
user = ""
state_dir = "$T/state"
server_address = "127.0.0.1"
dhcp { mode = "off" }
tftp { enable = false }
http {
	port = $PORT
	boot_root = "$T/boot"
	repo_root = "$T/repo"
}
EOF
"$SRV" -c "$T/rackbootd.conf" >"$T/rackbootd.log" 2>&1 &
PID=$!
for _ in $(seq 100); do
	curl -s -o /dev/null "http://127.0.0.1:$PORT/boot/" && break
	sleep 0.1
done
specs=$(cd "$T/src" && for n in *; do printf '%s=1.0 ' "$n"; done)

now() { date +%s.%N; }
best_agent=999999
best_tar=999999
for r in $(seq "$ROUNDS"); do
	rm -rf "$T/ra" "$T/rt"
	mkdir -p "$T/ra" "$T/rt"
	sync
	t0=$(now)
	# shellcheck disable=SC2086
	"$AGENT" pkg-install --repo "http://127.0.0.1:$PORT/repo" --pub "$T/site.pub" \
		--root "$T/ra" -q $specs >"$T/agent.out" 2>&1 || { cat "$T/agent.out"; exit 1; }
	t1=$(now)
	sync
	t2=$(now)
	for a in "$T"/arch/*.tar.zst; do
		tar --zstd -xf "$a" -C "$T/rt" || exit 1
	done
	t3=$(now)
	ta=$(echo "$t1 - $t0" | bc)
	tt=$(echo "$t3 - $t2" | bc)
	echo "round $r: agent $ta s, tar -x $tt s"
	best_agent=$(echo "if ($ta < $best_agent) $ta else $best_agent" | bc)
	best_tar=$(echo "if ($tt < $best_tar) $tt else $best_tar" | bc)
done
# the same files either way
(cd "$T/ra" && find usr -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/a.sum"
(cd "$T/rt" && find usr -type f -print0 | sort -z | xargs -0 sha256sum) >"$T/t.sum"
cmp -s "$T/a.sum" "$T/t.sum" || { echo "the two roots differ"; exit 1; }
echo "best: agent pkg-install $best_agent s, tar -x one after another $best_tar s"
printf 'ratio tar/agent: %.2f (>= 1.00: the agent is at least as fast, verification included)\n' \
	"$(echo "$best_tar / $best_agent" | bc -l)"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
