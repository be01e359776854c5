#!/bin/bash
# Time to root and initramfs size: dracut livenet vs rustlive's dracut module vs the standalone
# initramfs (`rustlive initramfs`, rustlive as /init), in one run with the same kernel, the
# same root content (the nested LiveOS/rootfs.img image livenet needs on Debian's dracut 059), the
# same nginx and the same QEMU settings; boots alternate so host load affects both alike.
# Usage: [NIC=e1000] bench/boot-vs-livenet.sh [ROUNDS]   (default 3 rounds, a virtio-net NIC; NIC
# names another QEMU NIC model, e1000 for the driver that waits ~2 s for carrier)
set -eu
# shellcheck source=qemu/lib.sh
. "$(dirname "$0")/../qemu/lib.sh"

rounds=${1:-3}
"$top/scripts/install-deps.sh"
[ -x "$BIN" ] || cargo build --release --target x86_64-unknown-linux-musl --manifest-path "$top/Cargo.toml"
"$top/qemu/fetch-kernel.sh"
mkdir -p "$LOGS"
build_images
install_module
build_initramfs bench-livenet --add "dmsquash-live livenet network-manager" "${COMMON_DRACUT[@]}"
build_initramfs bench-rustlive --add "rustlive network-manager" "${COMMON_DRACUT[@]}"
build_tls
build_standalone bench-standalone

port=$(free_port)
trap 'nginx_stop bench' EXIT
nginx_start bench "$port"
cmdline="root=live:http://10.0.2.2:$port/nested.squashfs rd.live.image rd.live.overlay.overlayfs=1"

# boot_once NAME ROUND: prints the guest uptime (s) at which the root's init started.
boot_once() {
	local log="$LOGS/bench-$1-$2.log" args up
	local extra=
	# As PID 1 rustlive logs through /dev/kmsg: keep its lines (the VmHWM one) on the console.
	[ "$1" = standalone ] && extra=" printk.devkmsg=on"
	mapfile -t args < <(direct_boot_args "$IMG/bench-$1.img" "$cmdline$extra" none)
	qemu_start "$log" "${args[@]}" -netdev "user,id=n0" -device "${NIC:-virtio-net-pci},netdev=n0,mac=$GUEST_MAC"
	wait_serial "$log" 300 'TESTROOT: done' 'Entering emergency mode|Kernel panic|rustlive failed' ||
		die "$1 did not boot (round $2), console: $log"
	up=$(sed -n 's/.*TESTROOT: init running at uptime \([0-9.]*\)s.*/\1/p' "$log" | head -n1)
	[ -n "$up" ] || die "no init uptime in $log"
	echo "$up"
}

median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

: >"$LOGS/bench-times"
for r in $(seq "$rounds"); do
	for side in livenet rustlive standalone; do
		t=$(boot_once "$side" "$r")
		say "round $r: $side root init at ${t}s"
		echo "$side $t" >>"$LOGS/bench-times"
	done
done

lt=$(awk '$1 == "livenet" { print $2 }' "$LOGS/bench-times" | median)
rt=$(awk '$1 == "rustlive" { print $2 }' "$LOGS/bench-times" | median)
ls=$(stat -c %s "$IMG/bench-livenet.img")
rs=$(stat -c %s "$IMG/bench-rustlive.img")
st=$(awk '$1 == "standalone" { print $2 }' "$LOGS/bench-times" | median)
ss=$(stat -c %s "$IMG/bench-standalone.img")
ratio() { echo "$1 $2" | awk '{ printf "%.3f", $1 / $2 }'; }
printf '\n%-28s %12s %12s %12s %8s %8s\n' "" livenet rustlive standalone ratio sa-ratio
printf '%-28s %12s %12s %12s %8s %8s\n' "time to root init (median s)" "$lt" "$rt" "$st" "$(ratio "$rt" "$lt")" "$(ratio "$st" "$lt")"
printf '%-28s %12s %12s %12s %8s %8s\n' "initramfs size (bytes)" "$ls" "$rs" "$ss" "$(ratio "$rs" "$ls")" "$(ratio "$ss" "$ls")"
hwm=$(grep -ah 'VmHWM' "$LOGS"/bench-standalone-*.log | sed -n 's/.*VmHWM \([0-9]*\) kB.*/\1/p' | sort -n | tail -n1)
printf '%-28s %12s\n' "standalone PID 1 VmHWM (kB)" "${hwm:-?}"
# What each side adds on top of the shared base (kernel modules, systemd, NetworkManager).
for side in livenet rustlive; do
	lsinitrd "$IMG/bench-$side.img" | awk '$1 ~ /^-/ { print $9, $5 }' | sort >"$LOGS/bench-$side.files"
done
lo=$(join -v1 "$LOGS/bench-livenet.files" "$LOGS/bench-rustlive.files" | awk '{ s += $2 } END { print s + 0 }')
ro=$(join -v2 "$LOGS/bench-livenet.files" "$LOGS/bench-rustlive.files" | awk '{ s += $2 } END { print s + 0 }')
printf '%-28s %12s %12s %8.3f\n' "own files (bytes, unpacked)" "$lo" "$ro" "$(echo "$ro $lo" | awk '{ print $1 / $2 }')"
printf 'rounds: %s; NIC: %s; all times: %s\n' "$rounds" "${NIC:-virtio-net-pci}" "$(tr '\n' ' ' <"$LOGS/bench-times")"
