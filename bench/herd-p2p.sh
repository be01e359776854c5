#!/bin/bash
# Benchmark: the herd with BitTorrent against the herd from the mirror only, in the same run.
# For each N, N `rustlive fetch` processes, each in its own network namespace behind a link
# capped by tc (tbf), nginx (the origin) behind the same cap, opentracker on the bridge
# (examples/herd.rs, on the harness of tests/swarm_herd.rs): herd completion time and bytes
# the origin served, with the ratios against the image and against one node alone.
# Writes OUT.csv and OUT.png (completion time against N, both modes) beside the table.
# Env: RUSTLIVE (the release musl binary), NODES (16,64,256), IMAGE_MIB (32), NODE_MBIT (100),
#      SERVER_MBIT (100), OUT (build/bench/herd-p2p), WORK (default: a tmpfs of its own, as a
#      node holds the image in RAM; a disk there measures its writeback: 8 GiB at N=256).
set -eu
cd "$(dirname "$0")/.."
BIN=${RUSTLIVE:-target/x86_64-unknown-linux-musl/release/rustlive}
OUT=${OUT:-build/bench/herd-p2p}
[ -x "$BIN" ] || { echo "no $BIN: run make build" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "the herd needs root (network namespaces, tc)" >&2; exit 1; }
mkdir -p "$(dirname "$OUT")"
if [ -z "${WORK:-}" ]; then
	# Again in a mount namespace of its own, so the tmpfs goes away with the run.
	[ -n "${HERD_TMPFS:-}" ] || HERD_TMPFS=1 exec unshare -m --propagation private "$0" "$@"
	WORK=$(mktemp -d)
	largest=$(echo "${NODES:-16,64,256}" | tr ',' '\n' | sort -n | tail -1)
	mount -t tmpfs -o "size=$(((largest + 4) * ${IMAGE_MIB:-32}))m" herd "$WORK"
fi

cargo build --quiet --example herd
EXAMPLE=${CARGO_TARGET_DIR:-target}/debug/examples/herd
"$EXAMPLE" --bin "$BIN" --nodes "${NODES:-16,64,256}" --image-mib "${IMAGE_MIB:-32}" \
	--node-mbit "${NODE_MBIT:-100}" --server-mbit "${SERVER_MBIT:-100}" \
	--work "$WORK" --csv "$OUT.csv" | tee "$OUT.txt"

gnuplot <<PLOT
set datafile separator ','
set terminal pngcairo size 800,500
set output '$OUT.png'
set title 'Herd completion time: ${IMAGE_MIB:-32} MiB image, ${NODE_MBIT:-100} Mbit/s per node, ${SERVER_MBIT:-100} Mbit/s origin'
set xlabel 'nodes (N)'
set ylabel 'herd completion time (s)'
set logscale xy
set key bottom right
set grid
set offsets graph 0.05, graph 0.05, graph 0.05, graph 0.05
plot '< grep ^bittorrent, $OUT.csv' using 2:4 with linespoints title 'BitTorrent (nginx as web seed)', \
     '< grep ^mirrors-only, $OUT.csv' using 2:4 with linespoints title 'mirrors only (plain fetch)'
PLOT
echo "wrote $OUT.csv $OUT.txt $OUT.png"
