#!/bin/sh
# Installs what building and testing rustlive needs on a fresh Debian 12 machine.
# Idempotent and quiet when everything is present: `make` and `make test` call it every time.
set -eu

PKGS="musl-tools squashfs-tools erofs-utils e2fsprogs cpio curl nginx-light
openssl minisign shellcheck util-linux qemu-system-x86 ipxe-qemu dracut dracut-live
dracut-network network-manager busybox-static zstd kmod file xorriso time
isc-dhcp-client iproute2 rsyslog mmdebstrap openssh-client rpm docker-registry skopeo
swtpm swtpm-tools tpm2-tools libtss2-tcti-swtpm0 dnsmasq-base
opentracker transmission-cli mktorrent aria2 gnuplot-nox"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing Debian packages:$missing (run as root, or: sudo apt-get install$missing)" >&2
		exit 1
	fi
	echo "install-deps: installing$missing"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# shellcheck disable=SC2086 # word splitting of the package list is intended
	apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
	echo "install-deps: adding the x86_64-unknown-linux-musl Rust target"
	rustup target add x86_64-unknown-linux-musl
fi
