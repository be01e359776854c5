#!/bin/bash
# QEMU test of rustlive as the initramfs's /init: assemble a root image from inside the
# initramfs, switch-root into it, free the initramfs. No dracut: the initramfs holds only the
# static rustlive binary as /init, the root image, the few kernel modules it needs (loop,
# squashfs, overlay, ...: modules in Debian's kernel, loaded by rustlive itself with
# finit_module from /lib/modules/KVER) and a ballast file of incompressible data.
#
# The kernel passes the words after `--` on its command line to /init as arguments, so the
# guest runs `rustlive assemble --image /root.img --newroot /sysroot --switch-root`
# (printk.devkmsg=on: the kernel otherwise drops /dev/kmsg lines past 10 per 5 s, and the
# checks read rustlive's log lines). The new root's init prints markers on the serial
# console and powers off. Two boots:
#   squashfs  a plain squashfs root
#   iso       a live ISO: root.iso -> LiveOS/squashfs.img -> LiveOS/rootfs.img (ext4), the
#             dmsquash-live layout, three loop-mounted filesystems deep
#
# Each passes when, on its serial log: the new root's init runs as PID 1 on the overlay, its
# root is writable, and MemAvailable seen by it is at least 3/4 of the ballast above
# MemAvailable just before rustlive deleted the old initramfs (the ballast's RAM came back).
# Prints one PASS/FAIL line per boot; exits non-zero on failure. Runtime: about 30 s.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/build/switchroot-test"
bin="$top/target/x86_64-unknown-linux-musl/release/rustlive"
ballast_mib=64
timeout_s=${SWITCHROOT_TIMEOUT:-120}
case=
log=

fail() {
	echo "FAIL switchroot-test${case:+ ($case)}: $*"
	if [ -n "$log" ] && [ -s "$log" ]; then
		echo "--- last lines of $log:"
		tail -n 40 "$log"
	fi
	exit 1
}

"$top/qemu/fetch-kernel.sh"
(cd "$top" && cargo build --quiet --release --target x86_64-unknown-linux-musl)
kver=$(cat "$top/build/kernel/kver")
kmods="$top/build/kernel/root/lib/modules/$kver"
busybox=$(command -v busybox) || fail "busybox-static is not installed"
command -v xorriso >/dev/null || fail "xorriso is not installed (scripts/install-deps.sh)"

rm -rf "$out"
mkdir -p "$out/root"

# The root: busybox, os-release, an init that reports and powers off.
r="$out/root"
mkdir -p "$r"/bin "$r"/sbin "$r"/etc "$r"/proc "$r"/sys "$r"/dev "$r"/run "$r"/tmp
cp "$busybox" "$r/bin/busybox"
for app in sh cat grep awk echo poweroff sleep; do ln -s busybox "$r/bin/$app"; done
echo 'ID=rustlive-switchroot-test' >"$r/etc/os-release"
echo 'image-root-marker' >"$r/etc/marker"
cat >"$r/sbin/init" <<'INIT'
#!/bin/sh
echo "SRT: init pid=$$ marker=$(cat /etc/marker)"
echo "SRT: rootfs=$(awk '$2 == "/" { print $3 }' /proc/mounts)"
echo written >/etc/written && echo "SRT: writable=$(cat /etc/written)"
echo "SRT: $(grep MemAvailable /proc/meminfo)"
poweroff -f
sleep 60
INIT
chmod 0755 "$r/sbin/init"

# initramfs CASE IMAGE MODULE...: $out/CASE/initramfs.img with rustlive as /init, IMAGE as
# /root.img, the named modules with their dependencies, and the ballast.
initramfs() {
	local c=$1 image=$2 m f
	shift 2
	local i="$out/$c/initramfs"
	mkdir -p "$i"/dev "$i"/proc "$i"/sys "$i"/run "$i"/sysroot "$i/lib/modules/$kver"
	cp "$bin" "$i/init"
	cp "$image" "$i/root.img"
	cp "$kmods"/modules.dep "$kmods"/modules.builtin "$kmods"/modules.softdep \
		"$kmods"/modules.alias "$i/lib/modules/$kver/"
	# Each module's line in modules.dep: its file, then the files it depends on.
	for m in "$@"; do
		grep "/$m\.ko[^:]*:" "$kmods/modules.dep" | tr -d ':' | tr ' ' '\n' | while read -r f; do
			[ -n "$f" ] || continue
			mkdir -p "$i/lib/modules/$kver/$(dirname "$f")"
			cp "$kmods/$f" "$i/lib/modules/$kver/$f"
		done
	done
	head -c "$((ballast_mib << 20))" /dev/urandom >"$i/ballast"
	(cd "$i" && find . | cpio -o -H newc --quiet) >"$out/$c/initramfs.img"
}

# boot CASE: boots $out/CASE/initramfs.img and checks the serial log.
boot() {
	case=$1
	log="$out/$case/serial.log"
	echo "switchroot-test ($case): booting (log in $log, timeout ${timeout_s}s)"
	local start rc=0
	start=$(date +%s)
	timeout "$timeout_s" qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
		-kernel "$top/build/kernel/vmlinuz" -initrd "$out/$case/initramfs.img" \
		-append "console=ttyS0 panic=-1 printk.devkmsg=on rd.rustlive.overlay.size=32M -- assemble --image /root.img --newroot /sysroot --switch-root" \
		</dev/null >"$log" 2>&1 || rc=$?
	echo "switchroot-test ($case): guest finished in $(($(date +%s) - start))s (qemu exit $rc)"
	tr -d '\r' <"$log" >"$log.txt" && mv "$log.txt" "$log"

	[ "$rc" -ne 124 ] || fail "timed out after ${timeout_s}s"
	grep -q 'SRT: init pid=1 marker=image-root-marker' "$log" || fail "the new root's init did not run as PID 1"
	grep -q 'SRT: rootfs=overlay' "$log" || fail "/ is not the overlay"
	grep -q 'SRT: writable=written' "$log" || fail "the new root is not writable"
	local before after freed_kib need_kib
	before=$(sed -n 's/.*removed the old initramfs: .*(MemAvailable \([0-9]*\) kB -> [0-9]* kB).*/\1/p' "$log" | head -n1)
	after=$(sed -n 's/.*SRT: MemAvailable: *\([0-9]*\) kB.*/\1/p' "$log" | head -n1)
	[ -n "$before" ] || fail "rustlive did not report removing the old initramfs"
	[ -n "$after" ] || fail "the new init did not report MemAvailable"
	freed_kib=$((after - before))
	need_kib=$((ballast_mib * 1024 * 3 / 4))
	[ "$freed_kib" -ge "$need_kib" ] || fail "only $freed_kib KiB came back after switch-root (ballast $ballast_mib MiB)"
	echo "PASS switchroot-test ($case): new root's init ran as PID 1 on the overlay; MemAvailable rose $((freed_kib / 1024)) MiB when the initramfs was freed (ballast $ballast_mib MiB)"
}

mkdir -p "$out/squashfs"
mksquashfs "$r" "$out/squashfs/root.squashfs" -noappend -quiet -no-progress -all-root
initramfs squashfs "$out/squashfs/root.squashfs" loop squashfs overlay
boot squashfs

# dmsquash-live's ISO layout. ext4 and jbd2 have a soft dependency on crypto-crc32c, which
# rustlive resolves through modules.softdep and modules.alias.
s="$out/iso/stage"
mkdir -p "$s/squash/LiveOS" "$s/iso/LiveOS"
mkfs.ext4 -q -F -d "$r" "$s/squash/LiveOS/rootfs.img" 16M >/dev/null
mksquashfs "$s/squash" "$s/iso/LiveOS/squashfs.img" -noappend -quiet -no-progress -all-root
xorriso -as mkisofs -quiet -R -V RUSTLIVE -o "$out/iso/root.iso" "$s/iso" 2>/dev/null
initramfs iso "$out/iso/root.iso" loop isofs squashfs ext4 crc32c_generic overlay
boot iso
grep -q 'mounted /root.img (ISO 9660) read-only on /run/rustlive/mnt/image' "$log" || fail "the ISO was not mounted"
grep -q 'mounted /run/rustlive/mnt/nested/LiveOS/rootfs.img (ext2/3/4) read-only on /run/rustlive/mnt/nested2' "$log" ||
	fail "LiveOS/rootfs.img inside LiveOS/squashfs.img was not the lower layer"
echo "PASS switchroot-test (iso): the root came from LiveOS/rootfs.img in LiveOS/squashfs.img in the ISO"
