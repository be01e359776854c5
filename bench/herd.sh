#!/bin/bash
# Benchmark 2, the herd: N concurrent `rustlive fetch --sha256` of one image from one nginx
# with limit_rate; nginx is stopped for OUTAGE seconds mid-way and started again.
# All N must finish verified. Prints total time, attempts and resumes, and the spread of the
# retry delays the clients drew (full jitter: they must not come back in step).
# Env: RUSTLIVE, N (64), SIZE_MIB (256), RATE (nginx limit_rate, 2m), STOP_AT (s, 30),
#      OUTAGE (s, 10), PORT (18081), OUTDIR (/var/tmp: N x SIZE_MIB of output goes there).
set -eu
cd "$(dirname "$0")/.."
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
# Retry lines: "… ; retry K in X.X s"
grep -ho 'retry [0-9]* in [0-9.]* s' "$WORK/all.log" | awk '{ print $4 }' | sort -n >"$WORK/delays"
awk '{ d[NR] = $1; s += $1; ss += $1 * $1 } END {
	if (NR == 0) { print "no retries logged"; exit }
	m = s / NR; sd = sqrt(ss / NR - m * m);
	printf "retry delays: %d retries, min %.1f s, median %.1f s, p90 %.1f s, max %.1f s, mean %.1f s, stddev %.1f s\n",
		NR, d[1], d[int((NR + 1) / 2)], d[int(NR * 0.9) > 0 ? int(NR * 0.9) : 1], d[NR], m, sd }' "$WORK/delays"
# Distinct delays (0.1 s resolution) among the first retries: jitter means few collisions.
grep -h 'retry 1 in' "$WORK/all.log" | awk '{ for (i = 1; i <= NF; i++) if ($i == "in") print $(i + 1) }' |
	sort -u | wc -l | xargs -I{} echo "distinct first-retry delays: {} of $N clients"
[ "$ok" -eq "$N" ] && [ "$fail" -eq 0 ]
