#!/bin/bash
# `make demo`: build everything, then PXE-boot a demo node the way an HPC boot service does it:
# the NIC's iPXE ROM gets boot.ipxe over (slirp) TFTP, which fetches the kernel, the rustlive
# initramfs and the node's own secrets initrd from nginx. Shows the node's console until the new
# root's init has run with its secrets in place, then a summary.
# STANDALONE=1 (`make demo-standalone`): the same boot with the standalone initramfs
# (`rustlive initramfs`, rustlive as /init, no dracut) instead of the dracut one.
set -eu
# shellcheck source=qemu/lib.sh
. "$(dirname "$0")/lib.sh"

prerequisites
build_images
build_secrets_initrd
initrd="$IMG/nm.img"
extra=
if [ "${STANDALONE:-0}" = 1 ]; then
	build_tls
	build_standalone demo-standalone
	initrd="$IMG/demo-standalone.img"
	# As PID 1 rustlive logs through /dev/kmsg; keep every line on the console.
	extra="printk.devkmsg=on"
else
	install_module
	build_initramfs nm --add "rustlive network-manager" "${COMMON_DRACUT[@]}"
fi

port=$(free_port)
url="http://10.0.2.2:$port"
sha=$(sha_of root.squashfs)
rm -rf "$B/nginx/demo/logs"
trap 'nginx_stop demo' EXIT
nginx_start demo "$port"

mkdir -p "$B/tftp" "$WWW/boot"
ln -sf "$KERNEL" "$WWW/boot/vmlinuz"
ln -sf "$initrd" "$WWW/boot/initramfs.img"
cat >"$B/tftp/demo.ipxe" <<EOF
#!ipxe
echo rustlive demo: kernel, initramfs and this node's secrets from $url
kernel $url/boot/vmlinuz console=ttyS0 $extra root=live:$url/root.squashfs rd.rustlive.sha256=$sha
initrd $url/boot/initramfs.img
initrd $url/node-secrets.cpio
boot
EOF

log="$LOGS/demo.log"
say "PXE-booting the demo node (TCG; about a minute). Console:"
qemu_start "$log" -boot n -netdev "user,id=n0,tftp=$B/tftp,bootfile=demo.ipxe" \
	-device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
tail -n +1 -f --pid="$QEMU_PID" "$log" &
tail_pid=$!
ok=0
wait_serial "$log" 300 'TESTROOT: done' 'Entering emergency mode|Kernel panic|rustlive failed' || ok=$?
kill "$tail_pid" 2>/dev/null || true
wait "$tail_pid" 2>/dev/null || true

echo
echo "=== rustlive demo summary ==="
if [ "$ok" -ne 0 ]; then
	echo "the node did NOT boot its image; full console: $log"
	exit 1
fi
up=$(sed -n 's/.*TESTROOT: init running at uptime \([0-9.]*\)s.*/\1/p' "$log" | head -n1)
echo "time to root:   the image's init started ${up} s after the kernel booted"
echo "initramfs:      $(stat -L -c %s "$WWW/boot/initramfs.img") bytes ($initrd)"
echo "fetched by the node from nginx (path, HTTP status, bytes):"
awk '/curl\// { next } { gsub(/"/, "", $7); printf "    %-28s %s %12d\n", $7, $9, $10; total += $10 }
	END { printf "    %-28s     %12d\n", "total", total }' "$B/nginx/demo/logs/access.log"
echo "verified hash:  sha256 $sha (pinned with rd.rustlive.sha256)"
echo "rustlive said:"
grep -a "rustlive\[[0-9]*\]: root ready" "$log" | tr -d '\r' | sed 's/.*rustlive\[[0-9]*\]: /    /'
echo "secrets in the new root (mode owner:group sha256 of the content):"
grep -a 'TESTROOT: secret' "$log" | tr -d '\r' | sed 's/.*TESTROOT: secret /    /'
if grep -aq "$CANARY" "$log"; then
	echo "a secret value appeared on the console!"
	exit 1
fi
echo "no secret value appeared on the console; full console: $log"
