#!/bin/bash
# QEMU test of rustlive as the initramfs's /init: assemble a squashfs root from inside the
# initramfs, switch-root into it, free the initramfs. No dracut: the initramfs holds only the
# static rustlive binary as /init, the root image, the few kernel modules it needs (loop,
# squashfs, overlay: modules in Debian's kernel, loaded by rustlive itself with finit_module
# from /lib/modules/KVER) and a ballast file of incompressible data.
#
# The kernel passes the words after `--` on its command line to /init as arguments, so the
# guest runs `rustlive assemble --image /root.squashfs --newroot /sysroot --switch-root`.
# The new root's init prints markers on the serial console and powers off.
#
# Passes when, on the serial log: the new root's init runs as PID 1 on the overlay, its
# root is writable, and MemAvailable seen by it is at least 3/4 of the ballast above
# MemAvailable just before rustlive deleted the old initramfs (the ballast's RAM came back).
# Prints one PASS/FAIL line; exits non-zero on failure. Runtime: about 30-60 s under TCG.
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/build/switchroot-test"
bin="$top/target/x86_64-unknown-linux-musl/release/rustlive"
ballast_mib=64
timeout_s=${SWITCHROOT_TIMEOUT:-150}
log="$out/serial.log"

fail() {
	echo "FAIL switchroot-test: $*"
	[ -s "$log" ] && { echo "--- last lines of $log:"; tail -n 40 "$log"; }
	exit 1
}

"$top/qemu/fetch-kernel.sh"
(cd "$top" && cargo build --quiet --release --target x86_64-unknown-linux-musl)
kver=$(cat "$top/build/kernel/kver")
kmods="$top/build/kernel/root/lib/modules/$kver"
busybox=$(command -v busybox) || fail "busybox-static is not installed"

rm -rf "$out"
mkdir -p "$out/root" "$out/initramfs"

# The root image: busybox, os-release, an init that reports and powers off.
r="$out/root"
mkdir -p "$r"/bin "$r"/sbin "$r"/etc "$r"/proc "$r"/sys "$r"/dev "$r"/run "$r"/tmp
cp "$busybox" "$r/bin/busybox"
for app in sh cat grep awk echo poweroff sleep; do ln -s busybox "$r/bin/$app"; done
echo 'ID=rustlive-switchroot-test' >"$r/etc/os-release"
echo 'image-root-marker' >"$r/etc/marker"
cat >"$r/sbin/init" <<'EOF'
#!/bin/sh
echo "SRT: init pid=$$ marker=$(cat /etc/marker)"
echo "SRT: rootfs=$(awk '$2 == "/" { print $3 }' /proc/mounts)"
echo written >/etc/written && echo "SRT: writable=$(cat /etc/written)"
echo "SRT: $(grep MemAvailable /proc/meminfo)"
poweroff -f
sleep 60
EOF
chmod 0755 "$r/sbin/init"

i="$out/initramfs"
mkdir -p "$i"/dev "$i"/proc "$i"/sys "$i"/run "$i"/sysroot
mksquashfs "$r" "$i/root.squashfs" -noappend -quiet -no-progress -all-root
cp "$bin" "$i/init"
mkdir -p "$i/lib/modules/$kver"
cp "$kmods/modules.dep" "$kmods/modules.builtin" "$i/lib/modules/$kver/"
# Each module's line in modules.dep: its file, then the files it depends on.
for m in loop squashfs overlay; do
	grep "/$m\.ko[^:]*:" "$kmods/modules.dep" | tr -d ':' | tr ' ' '\n' | while read -r f; do
		[ -n "$f" ] || continue
		mkdir -p "$i/lib/modules/$kver/$(dirname "$f")"
		cp "$kmods/$f" "$i/lib/modules/$kver/$f"
	done
done
head -c "$((ballast_mib << 20))" /dev/urandom >"$i/ballast"
(cd "$i" && find . | cpio -o -H newc --quiet) >"$out/initramfs.img"

echo "switchroot-test: booting (log in $log, timeout ${timeout_s}s)"
start=$(date +%s)
rc=0
timeout "$timeout_s" qemu-system-x86_64 -accel tcg -m 1024 -nographic -no-reboot \
	-kernel "$top/build/kernel/vmlinuz" -initrd "$out/initramfs.img" \
	-append "console=ttyS0 panic=-1 rd.rustlive.overlay.size=32M -- assemble --image /root.squashfs --newroot /sysroot --switch-root" \
	</dev/null >"$log" 2>&1 || rc=$?
echo "switchroot-test: guest finished in $(($(date +%s) - start))s (qemu exit $rc)"
tr -d '\r' <"$log" >"$log.txt" && mv "$log.txt" "$log"

[ "$rc" -ne 124 ] || fail "timed out after ${timeout_s}s"
grep -q 'SRT: init pid=1 marker=image-root-marker' "$log" || fail "the new root's init did not run as PID 1"
grep -q 'SRT: rootfs=overlay' "$log" || fail "/ is not the overlay"
grep -q 'SRT: writable=written' "$log" || fail "the new root is not writable"
before=$(sed -n 's/.*removed the old initramfs: .*(MemAvailable \([0-9]*\) kB -> [0-9]* kB).*/\1/p' "$log" | head -n1)
after=$(sed -n 's/.*SRT: MemAvailable: *\([0-9]*\) kB.*/\1/p' "$log" | head -n1)
[ -n "$before" ] || fail "rustlive did not report removing the old initramfs"
[ -n "$after" ] || fail "the new init did not report MemAvailable"
freed_kib=$((after - before))
need_kib=$((ballast_mib * 1024 * 3 / 4))
[ "$freed_kib" -ge "$need_kib" ] || fail "only $freed_kib KiB came back after switch-root (ballast $ballast_mib MiB)"
echo "PASS switchroot-test: new root's init ran as PID 1 on the overlay; $((freed_kib / 1024)) MiB freed from the initramfs (ballast $ballast_mib MiB)"
