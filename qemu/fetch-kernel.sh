#!/bin/sh
# Fetches Debian's current amd64 kernel into build/kernel/ (idempotent):
#   build/kernel/vmlinuz           the kernel image
#   build/kernel/kver              its version string
#   build/kernel/root/lib/modules/KVER   modules with depmod data (for dracut --kmoddir)
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
out="$top/build/kernel"
[ -s "$out/vmlinuz" ] && [ -s "$out/kver" ] && exit 0

mkdir -p "$out/dl"
# linux-image-amd64 is a metapackage: the real kernel package is its dependency.
pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
	apt-get update -qq
	pkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*-amd64\)$/\1/p' | head -n1)
fi
[ -n "$pkg" ] || { echo "fetch-kernel: cannot resolve linux-image-amd64's kernel package" >&2; exit 1; }
echo "fetch-kernel: downloading $pkg"
(cd "$out/dl" && apt-get download "$pkg" >/dev/null)
rm -rf "$out/root"
dpkg -x "$out"/dl/"$pkg"_*.deb "$out/root"
kver=${pkg#linux-image-}
depmod -b "$out/root" "$kver"
cp "$out/root/boot/vmlinuz-$kver" "$out/vmlinuz"
echo "$kver" >"$out/kver"
rm -rf "$out/dl"
echo "fetch-kernel: $kver ready in $out"
