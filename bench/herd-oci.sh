#!/bin/bash
# Benchmark: the herd through pull-through caches. One origin registry (the CNCF distribution
# registry, Debian's docker-registry) holds an image published with `rustlive publish`; CACHES
# registries run as pull-through caches (proxy.remoteurl) in front of it, through an nginx that
# counts what the origin serves. N clients fetch the pinned image over the caches, spread by
# node id. All must verify; the origin's blob bytes are reported against the image size.
# WARM=1 first pulls once through each cache (what a site does after publishing).
# CACHE_KIND=nginx: nginx proxy_cache instances (proxy_cache_lock: one origin read per cache)
# instead of distribution pull-through registries.
# CHAIN=1 (registry caches): each cache pulls through the previous one (cache N -> ... -> cache 1
# -> origin) instead of all from the origin: the origin then sees cache 1's reads only.
# Env: RUSTLIVE, N (64), CACHES (2), SIZE_MIB (64), WARM (0), CACHE_KIND (registry), CHAIN (0),
# PORT0 (18190).
set -eu
cd "$(dirname "$0")/.."
BIN=${RUSTLIVE:-target/x86_64-unknown-linux-musl/release/rustlive}
N=${N:-64}
CACHES=${CACHES:-2}
SIZE_MIB=${SIZE_MIB:-64}
WARM=${WARM:-0}
CACHE_KIND=${CACHE_KIND:-registry}
CHAIN=${CHAIN:-0}
PORT0=${PORT0:-18190}
REGISTRY=/usr/bin/docker-registry
[ -x "$BIN" ] || { echo "no $BIN: run make build" >&2; exit 1; }
[ -x "$REGISTRY" ] || { echo "no $REGISTRY: run scripts/install-deps.sh" >&2; exit 1; }

WORK=$(mktemp -d /dev/shm/rustlive-oci-herd.XXXXXX)
# shellcheck source=bench/lib-nginx.sh
. bench/lib-nginx.sh
regs=""
pids=""
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
	for p in $pids $regs; do kill "$p" 2>/dev/null || true; done
	nginx_stop
	rm -rf "$WORK"
}
trap cleanup EXIT

# registry NAME PORT [EXTRA-YAML]
registry() {
	mkdir -p "$WORK/$1/storage"
	cat >"$WORK/$1/config.yml" <<-EOF
		version: 0.1
		log:
		  level: warn
		storage:
		  filesystem:
		    rootdirectory: $WORK/$1/storage
		http:
		  addr: 127.0.0.1:$2
		  secret: rustlive-bench
		${3:-}
	EOF
	"$REGISTRY" serve "$WORK/$1/config.yml" >"$WORK/$1/log" 2>&1 &
	regs="$regs $!"
	for _ in $(seq 100); do
		curl -fsS "http://127.0.0.1:$2/v2/" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	echo "registry $1 did not start:" >&2
	cat "$WORK/$1/log" >&2
	exit 1
}

ORIGIN=$((PORT0 + 1))
COUNT=$((PORT0 + 2))
registry origin "$ORIGIN"
# nginx in front of the origin: its access log is the origin's bill. With CACHE_KIND=nginx the
# same nginx also runs the caches, each with its own cache zone and a lock that makes
# concurrent misses wait for the one fetch.
servers="server { listen 127.0.0.1:$COUNT; access_log $WORK/origin.log; location / {
	proxy_pass http://127.0.0.1:$ORIGIN; proxy_buffering off; proxy_http_version 1.1;
	proxy_set_header Host \$http_host; client_max_body_size 0; } }"
if [ "$CACHE_KIND" = nginx ]; then
	for c in $(seq "$CACHES"); do
		mkdir -p "$WORK/cache$c"
		servers="$servers
	proxy_cache_path $WORK/cache$c keys_zone=c$c:1m max_size=4g inactive=1h use_temp_path=off;
	server { listen 127.0.0.1:$((PORT0 + 10 + c)); location / {
		proxy_pass http://127.0.0.1:$COUNT; proxy_http_version 1.1;
		proxy_cache c$c; proxy_cache_key \$request_uri; proxy_cache_valid 200 1h;
		proxy_cache_lock on; proxy_cache_lock_timeout 600s; proxy_cache_lock_age 600s;
		proxy_read_timeout 600s; } }"
	done
fi
nginx_start "$WORK/nginx" $((PORT0 + 3)) "$servers"
URLS=()
if [ "$CACHE_KIND" = registry ]; then
	upstream=$COUNT
	for c in $(seq "$CACHES"); do
		registry "cache$c" $((PORT0 + 10 + c)) "$(printf 'proxy:\n  remoteurl: http://127.0.0.1:%s' "$upstream")"
		[ "$CHAIN" = 1 ] && upstream=$((PORT0 + 10 + c))
	done
fi

head -c $((SIZE_MIB << 20)) /dev/urandom >"$WORK/root.squashfs"
printf 'hsqs' | dd of="$WORK/root.squashfs" conv=notrunc status=none
DIGEST=$("$BIN" publish "$WORK/root.squashfs" "oci+http://127.0.0.1:$ORIGIN/bench/root:v1" 2>/dev/null | head -n 1)
for c in $(seq "$CACHES"); do
	URLS+=("oci+http://127.0.0.1:$((PORT0 + 10 + c))/bench/root@$DIGEST")
done
echo "oci herd: $N clients x $SIZE_MIB MiB via $CACHES $CACHE_KIND caches, manifest $DIGEST, warm=$WARM, chain=$CHAIN, cores: $(nproc)"

mkdir -p "$WORK/out"
if [ "$WARM" = 1 ]; then
	# One pull through each cache, in order, each time waiting until that cache has stored the
	# layer (the registry stores a proxied blob in the background after serving it): in a chain,
	# cache 2 then finds it stored in cache 1. What a site's warm-up after publishing does.
	layer=$(sha256sum "$WORK/root.squashfs" | cut -c1-64)
	for c in $(seq "$CACHES"); do
		"$BIN" fetch -o "$WORK/out/warm.img" "${URLS[c - 1]}" 2>/dev/null
		rm -f "$WORK/out/warm.img"
		[ "$CACHE_KIND" = registry ] || continue
		f="$WORK/cache$c/storage/docker/registry/v2/blobs/sha256/${layer:0:2}/$layer/data"
		for _ in $(seq 240); do
			[ "$(stat -c %s "$f" 2>/dev/null || echo 0)" -eq $((SIZE_MIB << 20)) ] && break
			sleep 0.5
		done
	done
fi
t0=$SECONDS
for i in $(seq "$N"); do
	"$BIN" fetch --mirrors spread --node-id "$(printf '52:54:00:00:01:%02x' "$i")" --stall 20 \
		--timeout 600 -o "$WORK/out/$i.img" "${URLS[@]}" 2>"$WORK/out/$i.log" &
	pids="$pids $!"
done
fail=0
for p in $pids; do wait "$p" || fail=$((fail + 1)); done
pids=""
ok=0
for i in $(seq "$N"); do
	[ "$(stat -c %s "$WORK/out/$i.img" 2>/dev/null || echo 0)" -eq $((SIZE_MIB << 20)) ] && ok=$((ok + 1))
	rm -f "$WORK/out/$i.img"
done
echo "finished verified (layer digest checked while streaming): $ok/$N; failed: $fail; $((SECONDS - t0)) s"
for c in $(seq "$CACHES"); do
	n=$(grep -l "127.0.0.1:$((PORT0 + 10 + c))/bench/root@.*manifest digest verified" "$WORK"/out/*.log 2>/dev/null | wc -l)
	echo "  cache $c: first choice of $n clients"
done
awk '$7 ~ /\/blobs\// && $6 == "\"GET" { b += $10; n++ } END {
	printf "origin blob bytes: %.1f MiB in %d GETs\n", b / 1048576, n }' "$WORK/origin.log"
awk -v s=$((SIZE_MIB << 20)) '$7 ~ /\/blobs\// && $6 == "\"GET" { b += $10 } END {
	printf "origin blob bytes / image size: %.2f\n", b / s }' "$WORK/origin.log"
[ "$ok" -eq "$N" ] && [ "$fail" -eq 0 ]
