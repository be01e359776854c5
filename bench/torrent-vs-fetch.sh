#!/bin/bash
# The no-peer path: `rustlive fetch torrent://…` with web seeds only (no tracker, no peer)
# against a plain `rustlive fetch http://…` of the same file from the same nginx on 127.0.0.1,
# into a tmpfs. Runs alternate (plain, torrent, plain, …) so both see the same machine.
# Prints the median wall times, their ratio torrent/plain (goal <= 1.15: "never slower than
# today by more than a small, measured margin") and the peak RSS of each (goal <= 32 MiB).
# Env: RUSTLIVE (binary), SIZE_MIB (256), RUNS (5), PORT (18090).
set -eu
cd "$(dirname "$0")/.."
BIN=${RUSTLIVE:-target/x86_64-unknown-linux-musl/release/rustlive}
SIZE_MIB=${SIZE_MIB:-256}
RUNS=${RUNS:-5}
PORT=${PORT:-18090}
for t in nginx curl sha256sum /usr/bin/time; do
	command -v "$t" >/dev/null || { echo "missing $t (scripts/install-deps.sh installs it)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "no $BIN: run make build" >&2; exit 1; }

WORK=$(mktemp -d /dev/shm/rustlive-bench.XXXXXX)
# shellcheck source=bench/lib-nginx.sh
. bench/lib-nginx.sh
trap 'nginx_stop; rm -rf "$WORK"' EXIT
nginx_start "$WORK/nginx" "$PORT"
WWW=$WORK/nginx/www
URL=http://127.0.0.1:$PORT
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WWW/img"
HEX=$(sha256sum "$WWW/img" | cut -d' ' -f1)
# No tracker: the torrent's only source is its web seed.
"$BIN" torrent create "$WWW/img" \
	--webseed "$URL/img" -o "$WWW/img.torrent" >/dev/null
OUT=$WORK/out

# once NAME CMD...: appends "SECS KIB" of one run to $WORK/NAME.
once() {
	name=$1
	shift
	rm -f "$OUT" "$OUT.part"
	/usr/bin/time -f "%e %M" -o "$WORK/time" "$@" >/dev/null 2>"$WORK/err" || {
		cat "$WORK/err" >&2
		exit 1
	}
	cat "$WORK/time" >>"$WORK/$name"
}

for _ in $(seq "$RUNS"); do
	once plain "$BIN" fetch --sha256 "$HEX" -o "$OUT" "$URL/img"
	once torrent "$BIN" fetch --sha256 "$HEX" --bt-port 0 -o "$OUT" "torrent://127.0.0.1:$PORT/img.torrent"
done

# median FILE COLUMN
median() {
	sort -n -k"$2" "$1" | awk -v c="$2" '{ v[NR] = $c } END { print v[int((NR + 1) / 2)] }'
}
echo "file: $SIZE_MIB MiB random, nginx 127.0.0.1 -> tmpfs, $RUNS runs each alternated; cores: $(nproc)"
awk -v pt="$(median "$WORK/plain" 1)" -v pm="$(median "$WORK/plain" 2)" \
	-v tt="$(median "$WORK/torrent" 1)" -v tm="$(median "$WORK/torrent" 2)" \
	-v pmax="$(sort -n -k2 "$WORK/plain" | tail -1 | cut -d' ' -f2)" \
	-v tmax="$(sort -n -k2 "$WORK/torrent" | tail -1 | cut -d' ' -f2)" -v mib="$SIZE_MIB" 'BEGIN {
	printf "%-40s median %6.2f s %7.1f MiB/s  peak RSS median %.1f MiB, max %.1f MiB\n", "rustlive fetch http:// --sha256", pt, mib / pt, pm / 1024, pmax / 1024;
	printf "%-40s median %6.2f s %7.1f MiB/s  peak RSS median %.1f MiB, max %.1f MiB\n", "rustlive fetch torrent:// (web seed only)", tt, mib / tt, tm / 1024, tmax / 1024;
	printf "ratio torrent / plain = %.2f (goal <= 1.15)\n", tt / pt;
}'
echo "all runs (seconds, KiB):"
paste "$WORK/plain" "$WORK/torrent" | awk '{ printf "  plain %s s %s KiB   torrent %s s %s KiB\n", $1, $2, $3, $4 }'
