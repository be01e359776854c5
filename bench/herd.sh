#!/bin/bash
# Benchmark 2, the herd: N concurrent `rustlive fetch --sha256` of one image from one nginx
# with limit_rate; nginx is stopped for OUTAGE seconds mid-way and started again.
# All N must finish verified. Prints total time, attempts and resumes, and the spread of the
# retry delays the clients drew (full jitter: they must not come back in step).
# Env: RUSTLIVE, N (64), SIZE_MIB (256), RATE (nginx limit_rate, 2m), STOP_AT (s, 30),
#      OUTAGE (s, 10), PORT (18081), OUTDIR (/var/tmp: N x SIZE_MIB of output goes there).
set -eu
cd "$(dirname "$0")/.."
# MODE=mirrors: the herd over 4 mirrors spread by node id (bench/herd-mirrors.sh);
# MODE=oci: the herd through 2 pull-through cache registries (bench/herd-oci.sh).
case ${MODE:-outage} in
mirrors) exec bench/herd-mirrors.sh ;;
oci) exec bench/herd-oci.sh ;;
esac
BIN=${RUSTLIVE:-target/x86_64-unknown-linux-musl/release/rustlive}
N=${N:-64}
SIZE_MIB=${SIZE_MIB:-256}
RATE=${RATE:-2m}
STOP_AT=${STOP_AT:-30}
OUTAGE=${OUTAGE:-10}
PORT=${PORT:-18081}
[ -x "$BIN" ] || { echo "no $BIN: run make build" >&2; exit 1; }

WORK=$(mktemp -d /dev/shm/rustlive-herd.XXXXXX)
OUT=$(mktemp -d "${OUTDIR:-/var/tmp}/rustlive-herd-out.XXXXXX")
# shellcheck source=bench/lib-nginx.sh
. bench/lib-nginx.sh
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	nginx_stop
	rm -rf "$WORK" "$OUT"
}
trap cleanup EXIT
nginx_start "$WORK/nginx" "$PORT" "limit_rate $RATE;"
head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/nginx/www/img"
HEX=$(sha256sum "$WORK/nginx/www/img" | cut -d' ' -f1)

start=$(date +%s.%N)
for i in $(seq "$N"); do
	"$BIN" fetch --sha256 "$HEX" --stall 10 --timeout 900 -o "$OUT/$i.img" \
		"http://127.0.0.1:$PORT/img" 2>"$OUT/$i.log" &
	pids="$pids $!"
done

sleep "$STOP_AT"
echo "t=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.0f", n - s }')s: stopping nginx for ${OUTAGE}s"
nginx_stop
sleep "$OUTAGE"
nginx_start "$WORK/nginx" "$PORT" "limit_rate $RATE;"
echo "t=$(awk -v s="$start" -v n="$(date +%s.%N)" 'BEGIN { printf "%.0f", n - s }')s: nginx is back"

fail=0
for p in $pids; do wait "$p" || fail=$((fail + 1)); done
pids=""
end=$(date +%s.%N)

ok=0
for i in $(seq "$N"); do
	if [ "$(stat -c %s "$OUT/$i.img" 2>/dev/null || echo 0)" -eq $((SIZE_MIB << 20)) ]; then
		ok=$((ok + 1))
	fi
done
cat "$OUT"/*.log >"$WORK/all.log"
echo "herd: $N x $SIZE_MIB MiB, limit_rate $RATE, nginx down ${OUTAGE}s at t=${STOP_AT}s, cores: $(nproc)"
awk -v s="$start" -v e="$end" 'BEGIN { printf "total time %.1f s\n", e - s }'
echo "finished verified (exit 0, full size, sha256 checked): $ok/$N; failed: $fail"
# Summary lines: "fetched … , 3 attempts, 1 resume, sha256 …"
grep -h 'fetched' "$WORK/all.log" | sed -E 's/.*, ([0-9]+) attempts?, ([0-9]+) resumes?,.*/\1 \2/' |
	awk '{ a += $1; r += $2; if ($2 > mr) mr = $2 } END {
		printf "attempts %d, resumes %d (max %d per client)\n", a, r, mr }'
# Retry lines: "…; retry K in X.X s": all delays, then per retry number (the window doubles:
# 1, 2, 4, 8… s; full jitter spreads the clients uniformly inside it).
grep -ho 'retry [0-9]* in [0-9.]* s' "$WORK/all.log" >"$WORK/retries" || true
awk '{ print $4 }' "$WORK/retries" | sort -n >"$WORK/delays"
awk '{ d[NR] = $1; s += $1; ss += $1 * $1 } END {
	if (NR == 0) { print "no retries logged"; exit }
	m = s / NR; sd = sqrt(ss / NR - m * m); p = int(NR * 0.9); if (p < 1) p = 1;
	printf "retry delays: %d retries, min %.1f s, median %.1f s, p90 %.1f s, max %.1f s, mean %.1f s, stddev %.1f s\n",
		NR, d[1], d[int((NR + 1) / 2)], d[p], d[NR], m, sd }' "$WORK/delays"
awk '{ k = $2; v = $4; n[k]++; s[k] += v; if (!(k in lo) || v < lo[k]) lo[k] = v; if (v > hi[k]) hi[k] = v;
	u[k, v] = 1 } END {
	for (k = 1; k <= 8; k++) if (n[k]) {
		d = 0; for (key in u) { split(key, a, SUBSEP); if (a[1] == k) d++ }
		printf "  retry %d: %2d clients, delay %.1f..%.1f s, mean %.1f s, %d distinct values\n", k, n[k], lo[k], hi[k], s[k] / n[k], d }
}' "$WORK/retries"
[ "$ok" -eq "$N" ] && [ "$fail" -eq 0 ]
