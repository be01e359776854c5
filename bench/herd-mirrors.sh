#!/bin/bash
# Benchmark: the herd over several mirrors, spread by rendezvous hashing (rd.rustlive.mirrors=spread).
# N clients with node ids 52:54:00:00:00:01.. (what sequential MACs look like) fetch one image
# from M nginx mirrors as a booting node does (`rustlive fetch --mirrors spread --node-id`):
# each piece of the image from the mirror that piece's rendezvous order ranks first.
# Run 1: all mirrors up; bytes served per mirror from the access logs against an equal share.
# Run 2: the same clients and mirrors (so the same pieces go to the same mirrors), mirror
# STOP_MIRROR stopped STOP_AT s in: what each other mirror served beyond run 1 is what moved to
# it from the stopped one; how those bytes split over the others is reported.
# Env: RUSTLIVE, N (64), M (4), SIZE_MIB (64: 64 pieces of 1 MiB per node), RATE (512k per
#      request), STOP_AT (default: half of run 1's time, so the stop falls mid-way),
#      STOP_MIRROR (1), PORT0 (18090: mirrors on PORT0+1..PORT0+M).
set -eu
cd "$(dirname "$0")/.."
BIN=${RUSTLIVE:-target/x86_64-unknown-linux-musl/release/rustlive}
N=${N:-64}
M=${M:-4}
SIZE_MIB=${SIZE_MIB:-64}
RATE=${RATE:-512k}
STOP_AT=${STOP_AT:-}
STOP_MIRROR=${STOP_MIRROR:-1}
PORT0=${PORT0:-18090}
[ -x "$BIN" ] || { echo "no $BIN: run make build" >&2; exit 1; }

WORK=$(mktemp -d /dev/shm/rustlive-mirrors.XXXXXX)
# shellcheck source=bench/lib-nginx.sh
. bench/lib-nginx.sh
declare -A NPID
pids=""
stop_mirror() {
	NGINX_PID=${NPID[$1]:-}
	nginx_stop
	NPID[$1]=
}
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	for m in $(seq "$M"); do stop_mirror "$m"; done
	rm -rf "$WORK"
}
trap cleanup EXIT

head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/img"
HEX=$(sha256sum "$WORK/img" | cut -d' ' -f1)
URLS=()
start_mirrors() {
	local m
	URLS=()
	for m in $(seq "$M"); do
		rm -rf "$WORK/m$m"
		mkdir -p "$WORK/m$m/www"
		# One inode for all mirrors: the same ETag everywhere, so a resume on another mirror
		# continues instead of starting over.
		ln "$WORK/img" "$WORK/m$m/www/img"
		nginx_start "$WORK/m$m" $((PORT0 + m)) "limit_rate $RATE;"
		NPID[$m]=$NGINX_PID
		URLS+=("http://127.0.0.1:$((PORT0 + m))/img")
	done
}

# bytes_by_status DIR [STATUS]: body bytes in DIR's access log (all requests, or one status).
bytes_of() {
	awk -v st="${2:-}" '$9 ~ /^[0-9]+$/ && (st == "" || $9 == st) { b += $10 } END { printf "%d", b }' "$1/access.log"
}

run_herd() {
	local tag=$1 stop=$2 i id
	pids=""
	mkdir -p "$WORK/out-$tag"
	local t0=$SECONDS
	for i in $(seq "$N"); do
		id=$(printf '52:54:00:00:00:%02x' "$i")
		"$BIN" fetch --mirrors spread --node-id "$id" --sha256 "$HEX" --stall 10 --timeout 600 \
			-o "$WORK/out-$tag/$i.img" "${URLS[@]}" 2>"$WORK/out-$tag/$i.log" &
		pids="$pids $!"
	done
	if [ "$stop" = yes ]; then
		sleep "$STOP_AT"
		echo "t=$((SECONDS - t0))s: stopping mirror $STOP_MIRROR (${URLS[$((STOP_MIRROR - 1))]})"
		stop_mirror "$STOP_MIRROR"
	fi
	local fail=0 p
	for p in $pids; do wait "$p" || fail=$((fail + 1)); done
	pids=""
	local ok=0
	for i in $(seq "$N"); do
		[ "$(stat -c %s "$WORK/out-$tag/$i.img" 2>/dev/null || echo 0)" -eq $((SIZE_MIB << 20)) ] && ok=$((ok + 1))
	done
	ELAPSED=$((SECONDS - t0))
	echo "$tag: $ok/$N verified, $fail failed, $ELAPSED s"
	rm -f "$WORK/out-$tag"/*.img
	[ "$ok" -eq "$N" ] && [ "$fail" -eq 0 ]
}

echo "herd over mirrors: $N clients x $SIZE_MIB MiB, $M nginx mirrors, limit_rate $RATE, cores: $(nproc)"
status=0
start_mirrors
run_herd spread no || status=1
total=$((N * (SIZE_MIB << 20)))
share=$((total / M))
declare -A BASE
for m in $(seq "$M"); do
	b=$(bytes_of "$WORK/m$m")
	BASE[$m]=$b
	awk -v m="$m" -v b="$b" -v s="$share" 'BEGIN {
		printf "  mirror %d served %.1f MiB = %.2f of an equal share (%+.0f %%)\n", m, b / 1048576, b / s, (b / s - 1) * 100 }'
done
for m in $(seq "$M"); do stop_mirror "$m"; done

start_mirrors
STOP_AT=${STOP_AT:-$((ELAPSED / 2))}
run_herd failover yes || status=1
echo "  bytes that moved from the stopped mirror (served beyond run 1):"
moved=()
for m in $(seq "$M"); do
	[ "$m" -eq "$STOP_MIRROR" ] && continue
	b=$(($(bytes_of "$WORK/m$m") - BASE[$m]))
	moved+=("$b")
	awk -v m="$m" -v b="$b" 'BEGIN { printf "  mirror %d: %.1f MiB more\n", m, b / 1048576 }'
done
printf '%s\n' "${moved[@]}" | sort -n | awk '{ v[NR] = $1 } END {
	if (v[1] > 0) printf "  largest / smallest share of the moved bytes: %.2f\n", v[NR] / v[1];
	else print "  a mirror received none of the moved bytes" }'
exit "$status"
