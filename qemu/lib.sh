#!/bin/bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Shared by qemu/suite.sh, qemu/demo.sh and bench/boot-vs-livenet.sh (sourced, never run).
# Everything lives under build/: the kernel, the test root images, the initramfs images, the nginx
# instances (127.0.0.1 only; the guest reaches them through slirp as 10.0.2.2) and the logs.

top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
B="$top/build"
KERNEL="$B/kernel/vmlinuz"
WWW="$B/www"
IMG="$B/initramfs"
LOGS="$B/logs"
BIN="$top/target/x86_64-unknown-linux-musl/release/rustlive"
GUEST_MAC=52:54:00:12:34:56
# Never printed by the guest if secrets stay secret; the suite greps the console for it.
CANARY="CANARY-7f3a9c1e-do-not-print"

say() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	say "error: $*"
	exit 1
}

# A TCP port nothing listens on (the suite runs several nginx instances).
# Packages, the static binary and the kernel: what every script here needs first.
prerequisites() {
	"$top/scripts/install-deps.sh"
	[ -x "$BIN" ] || cargo build --release --target x86_64-unknown-linux-musl --manifest-path "$top/Cargo.toml"
	"$top/qemu/fetch-kernel.sh"
	mkdir -p "$LOGS"
}

free_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 30000))
		ss -Htln "sport = :$p" | grep -q . || {
			echo "$p"
			return
		}
	done
}

# --- the test root -------------------------------------------------------------------------------

# build/testroot: busybox, os-release, users for secrets owners, an init that reports and powers off.
build_testroot() {
	local r="$B/testroot" key
	# Keyed by this function's own text and busybox: a changed test root is rebuilt (and the
	# images made from it, which are newer-than checked against .done).
	key=$({ declare -f build_testroot; sha256sum /usr/bin/busybox; } | sha256sum | cut -d' ' -f1)
	[ "$(cat "$r/.done" 2>/dev/null)" = "$key" ] && return 0
	say "building the test root"
	rm -rf "$r"
	mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,run,tmp,root,usr/share/testroot,etc/munge,etc/ssh}
	cp /usr/bin/busybox "$r/bin/busybox"
	local app
	for app in $("$r/bin/busybox" --list); do
		[ "$app" = busybox ] || ln -sf busybox "$r/bin/$app"
	done
	cat >"$r/etc/os-release" <<-'EOF'
		NAME="rustlive test root"
		ID=rustlive-test
		PRETTY_NAME="rustlive test root 1.0"
		VERSION_ID=1.0
	EOF
	printf 'root:x:0:0:root:/root:/bin/sh\nmunge:x:990:991:munge:/run/munge:/bin/false\n' >"$r/etc/passwd"
	printf 'root:x:0:\nmunge:x:991:\n' >"$r/etc/group"
	# Incompressible payload so transfers last long enough to be interrupted and measured.
	head -c $((3 << 20)) /dev/urandom >"$r/usr/share/testroot/payload"
	cat >"$r/sbin/init" <<-'EOF'
		#!/bin/sh
		# Test root init: report what the node booted into, then power off.
		export PATH=/bin:/sbin
		mount -t proc proc /proc 2>/dev/null
		read -r up _ </proc/uptime
		echo "TESTROOT: init running at uptime ${up}s"
		. /etc/os-release
		echo "TESTROOT: os-release $PRETTY_NAME"
		echo "TESTROOT: root fs $(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)"
		for f in /etc/munge/munge.key /etc/ssh/ssh_host_ed25519_key /etc/rustlive-test/token; do
			[ -e "$f" ] || continue
			echo "TESTROOT: secret $f $(stat -c '%a %U:%G' "$f") $(sha256sum <"$f" | cut -d' ' -f1)"
		done
		[ -e /rustlive/secrets.json ] && echo "TESTROOT: LEFTOVER bundle in the new root"
		# The links the standalone initramfs leaves (bonds, VLANs, renames) and its lease files.
		echo "TESTROOT: links $(ip -o link show 2>/dev/null | awk -F': ' '{ printf "%s ", $2 }')"
		echo "TESTROOT: lease files $(ls /run/rustlive/ 2>/dev/null | grep '^lease-' | tr '\n' ' ')"
		# What the standalone initramfs leaves configured for the booted system.
		echo "TESTROOT: inet $(ip -4 -o addr show 2>/dev/null | awk '$2 != "lo" { printf "%s %s ", $2, $4 }')"
		[ -e /run/rustlive/lease.json ] && echo "TESTROOT: lease $(tr -d ' \n' </run/rustlive/lease.json)"
		echo "TESTROOT: inet6 $(ip -6 -o addr show scope global 2>/dev/null | awk '{ printf "%s %s ", $2, $4 }')"
		echo "TESTROOT: route6 $(ip -6 route show default 2>/dev/null | tr '\n' ' ')"
		for f in /run/rustlive/lease6-*.json; do
			[ -e "$f" ] && echo "TESTROOT: lease6 $(tr -d ' \n' <"$f")"
		done
		echo "TESTROOT: done"
		sync
		poweroff -f
	EOF
	chmod 0755 "$r/sbin/init"
	echo "$key" >"$r/.done"
}

# build/www: the images nginx serves, with their hashes and signatures.
build_images() {
	build_testroot
	mkdir -p "$WWW"
	if ! [ -s "$WWW/root.squashfs" ] || [ "$B/testroot/.done" -nt "$WWW/root.squashfs" ]; then
		say "building root.squashfs and the nested LiveOS image"
		mksquashfs "$B/testroot" "$WWW/root.squashfs" -comp zstd -noappend -quiet -e .done >/dev/null
		# dmsquash-live's nested layout: a squashfs holding LiveOS/rootfs.img (ext4).
		local n="$B/nested"
		rm -rf "$n" && mkdir -p "$n/LiveOS"
		mkfs.ext4 -q -F -L rootfs -d "$B/testroot" "$n/LiveOS/rootfs.img" 32M
		mksquashfs "$n" "$WWW/nested.squashfs" -comp zstd -noappend -quiet >/dev/null
		rm -rf "$n"
		# A copy with no signature next to it, for "signature required and missing".
		cp "$WWW/root.squashfs" "$WWW/unsigned.squashfs"
		(cd "$WWW" && sha256sum root.squashfs nested.squashfs unsigned.squashfs >SHA256SUMS)
	fi
	if ! [ -s "$WWW/root.erofs" ] || [ "$B/testroot/.done" -nt "$WWW/root.erofs" ]; then
		mkfs.erofs -zlz4hc --exclude-path=.done "$WWW/root.erofs" "$B/testroot" >/dev/null
		(cd "$WWW" && sha256sum root.erofs >>SHA256SUMS)
	fi
	if ! [ -s "$WWW/root.squashfs.minisig" ] || [ "$WWW/root.squashfs" -nt "$WWW/root.squashfs.minisig" ]; then
		mkdir -p "$B/keys"
		rm -f "$B/keys/test.key" "$B/keys/test.pub"
		minisign -G -W -p "$B/keys/test.pub" -s "$B/keys/test.key" >/dev/null
		minisign -S -s "$B/keys/test.key" -m "$WWW/root.squashfs" >/dev/null </dev/null
	fi
}

sha_of() { sha256sum "$WWW/$1" | cut -d' ' -f1; }

# A bundle in secrets.md format 1 carrying the canary; $1 = output file.
write_secrets_bundle() {
	local key token
	key=$(printf '%s munge\n' "$CANARY" | base64 -w0)
	token=$(printf '%s token\n' "$CANARY" | base64 -w0)
	cat >"$1" <<-EOF
		{"version": 1, "files": [
		 {"path": "/etc/munge/munge.key", "mode": "0400", "owner": "munge", "group": "munge", "content_base64": "$key"},
		 {"path": "/etc/rustlive-test/token", "mode": "0640", "owner": "root", "group": "munge", "content_base64": "$token"}
		]}
	EOF
}

# The expected console lines for the bundle above (mode owner:group sha256).
expected_secret_lines() {
	printf 'TESTROOT: secret /etc/munge/munge.key 400 munge:munge %s\n' \
		"$(printf '%s munge\n' "$CANARY" | sha256sum | cut -d' ' -f1)"
	printf 'TESTROOT: secret /etc/rustlive-test/token 640 root:munge %s\n' \
		"$(printf '%s token\n' "$CANARY" | sha256sum | cut -d' ' -f1)"
}

# Per-node extra initrd: a newc cpio holding rustlive/secrets.json (what a boot server appends).
build_secrets_initrd() {
	local d="$B/secrets-initrd"
	[ -s "$WWW/node-secrets.cpio" ] && return 0
	rm -rf "$d" && mkdir -p "$d/rustlive"
	write_secrets_bundle "$d/rustlive/secrets.json"
	chmod 0600 "$d/rustlive/secrets.json"
	(cd "$d" && find rustlive | cpio -o -H newc --quiet -R 0:0) >"$WWW/node-secrets.cpio"
	rm -rf "$d"
}

# The same secrets as a tree that `rustlive bundle build` turns into a per-node initrd: a gzip'ed
# cpio, which the kernel reads wherever it starts (no padding of what precedes it).
build_bundle_cpio() {
	local t="$B/bundle-tree"
	[ -s "$WWW/node-bundle.cpio" ] && [ "$WWW/node-bundle.cpio" -nt "$BIN" ] && return 0
	rm -rf "$t" && mkdir -p "$t/etc/munge" "$t/etc/rustlive-test"
	printf '%s munge\n' "$CANARY" >"$t/etc/munge/munge.key"
	printf '%s token\n' "$CANARY" >"$t/etc/rustlive-test/token"
	chmod 0400 "$t/etc/munge/munge.key"
	chmod 0640 "$t/etc/rustlive-test/token"
	cat >"$t/rustlive-bundle.json" <<-'EOF'
		{"owners": {"/etc/munge/munge.key": "munge:munge", "/etc/rustlive-test/token": "root:munge"}}
	EOF
	"$BIN" bundle build "$t" --image-root "$B/testroot" -o "$WWW/node-bundle.cpio"
	rm -rf "$t"
}

# misalign FILE: appends harmless gzip'ed cpio members (an empty directory each) until FILE's
# length is not a multiple of 4, so that what is appended next starts off a 4-byte boundary.
misalign() {
	local d="$B/misalign" n=0
	while [ $(($(stat -c %s "$1") % 4)) -eq 0 ]; do
		n=$((n + 1))
		rm -rf "$d" && mkdir -p "$d/pad$n"
		(cd "$d" && find "pad$n" | cpio -o -H newc --quiet -R 0:0 | gzip -n -9) >>"$1"
	done
	rm -rf "$d"
}

# --- TLS -----------------------------------------------------------------------------------------

# A throwaway CA and a server certificate for 10.0.2.2 (what the guest dials).
build_tls() {
	local t="$B/tls"
	[ -s "$t/server.pem" ] && return 0
	mkdir -p "$t"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj /CN=rustlive-test-ca -keyout "$t/ca.key" -out "$t/ca.pem" 2>/dev/null
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=10.0.2.2 \
		-keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:10.0.2.2,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$t/ext.cnf"
	openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
		-days 30 -extfile "$t/ext.cnf" -out "$t/server.pem" 2>/dev/null
}

# --- nginx ---------------------------------------------------------------------------------------

# nginx_start NAME PORT [SSLPORT] [EXTRA-HTTP-DIRECTIVES]: an instance with its own prefix under
# build/nginx/NAME, serving build/www. Idempotent per NAME.
nginx_start() {
	local name=$1 port=$2 sslport=${3:-} extra=${4:-}
	local p="$B/nginx/$name"
	mkdir -p "$p/logs" "$p/tmp"
	{
		# Workers run as the invoking user: the checkout may sit in a directory (/root) that
		# nginx's default "nobody" cannot enter.
		echo "user $(id -un) $(id -gn); worker_processes 1; pid $p/nginx.pid; error_log $p/logs/error.log;"
		echo "events { worker_connections 64; }"
		echo "http { access_log $p/logs/access.log; client_body_temp_path $p/tmp;"
		echo "  proxy_temp_path $p/tmp; fastcgi_temp_path $p/tmp; uwsgi_temp_path $p/tmp; scgi_temp_path $p/tmp;"
		echo "  types { application/octet-stream squashfs img cpio; text/plain ipxe; application/json json; }"
		echo "  sendfile on; $extra"
		echo "  server { listen 127.0.0.1:$port; root $WWW; }"
		if [ -n "$sslport" ]; then
			echo "  server { listen 127.0.0.1:$sslport ssl; root $WWW;"
			echo "    ssl_certificate $B/tls/server.pem; ssl_certificate_key $B/tls/server.key; }"
		fi
		echo "}"
	} >"$p/nginx.conf"
	nginx -p "$p" -c "$p/nginx.conf" -g 'daemon on;' 2>>"$p/logs/start.log" ||
		die "nginx $name failed to start (see $p/logs/start.log)"
	:
	for i in $(seq 50); do
		curl -fsS -o /dev/null "http://127.0.0.1:$port/SHA256SUMS" 2>/dev/null && return 0
		sleep 0.1
	done
	die "nginx $name does not answer on 127.0.0.1:$port"
}

nginx_stop() {
	local pidf="$B/nginx/$1/nginx.pid" pid i
	[ -s "$pidf" ] || return 0
	pid=$(cat "$pidf")
	kill "$pid" 2>/dev/null || true
	for i in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rm -f "$pidf"
}

# stop_each KIND STOP: STOP NAME for every build/KIND/NAME directory.
stop_each() {
	local d
	for d in "$B/$1"/*/; do
		[ -d "$d" ] || continue
		"$2" "$(basename "$d")"
	done
}

nginx_stop_all() { stop_each nginx nginx_stop; }

# --- initramfs -----------------------------------------------------------------------------------

# Storage stacks a diskless node never uses are left out of every image, rustlive's and livenet's.
COMMON_DRACUT=(--omit "lvm mdraid dmraid crypt multipath btrfs iscsi nfs cifs fcoe fcoe-uefi nbd plymouth nvmf lunmask resume")

# A private copy of dracut's module tree with rustlive installed into it by `make install`, so the
# suite never writes to the host's /usr/lib/dracut.
DRACUT_BASE="$B/dracut-root/usr/lib/dracut"
install_module() {
	rm -rf "$B/dracut-root"
	mkdir -p "$B/dracut-root/usr/lib"
	cp -a /usr/lib/dracut "$B/dracut-root/usr/lib/dracut"
	make -s -C "$top" install DESTDIR="$B/dracut-root" PREFIX=/usr >/dev/null
}

# initramfs_key NAME DRACUT-ARGS...: a digest of every input of an initramfs build: the
# arguments, the content of each argument that names a file (--include sources), the binary,
# the dracut module, the kernel and dracut itself. Another build of the same name (make demo's
# nm.img has no test CA) never passes for this one.
initramfs_key() {
	local a
	{
		printf '%s\n' "$@"
		for a in "$@"; do
			[ -f "$a" ] && sha256sum "$a"
		done
		sha256sum "$BIN"
		find "$top/dracut-module" -type f -print0 | sort -z | xargs -0 sha256sum
		cat "$B/kernel/kver"
		dpkg-query -W -f='${Version}\n' dracut 2>/dev/null || true
	} | sha256sum | cut -d' ' -f1
}

# build_initramfs NAME DRACUT-ARGS...: build/initramfs/NAME.img with the host's dracut and the
# fetched Debian kernel's modules, rebuilt whenever any input changed (see initramfs_key).
build_initramfs() {
	local name=$1
	shift
	local out="$IMG/$name.img" kver key
	kver=$(cat "$B/kernel/kver")
	mkdir -p "$IMG"
	key=$(initramfs_key "$name" "$@")
	if [ -s "$out" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
		return 0
	fi
	rm -f "$out.key"
	say "building initramfs $name: dracut $*"
	dracutbasedir="$DRACUT_BASE" dracut --force --quiet --no-hostonly --no-hostonly-cmdline \
		--kver "$kver" --kmoddir "$B/kernel/root/lib/modules/$kver" \
		--compress zstd "$@" "$out" >"$IMG/$name.log" 2>&1 || {
		tail -20 "$IMG/$name.log" >&2
		die "dracut failed for $name"
	}
	# Served to PXE clients by nginx workers; an initramfs holds no secret.
	chmod 0644 "$out"
	echo "$key" >"$out.key"
}

# build_standalone NAME [rustlive initramfs ARGS...]: build/initramfs/NAME.img, the standalone
# initramfs (no dracut) from the fetched Debian kernel's modules (or those of $SA_KMODDIR), with
# the suite's CA and no signing keys. Prints its size.
build_standalone() {
	local name=$1 kver kmoddir
	shift
	kver=$(cat "$B/kernel/kver")
	kmoddir=${SA_KMODDIR:-$B/kernel/root/lib/modules/$kver}
	mkdir -p "$IMG" "$B/tls"
	# Rebuilt only when the binary or the arguments changed (the build is deterministic).
	if [ -s "$IMG/$name.img" ] && [ "$IMG/$name.img" -nt "$BIN" ] && [ "$(cat "$IMG/$name.args" 2>/dev/null)" = "$kmoddir $*" ]; then
		return 0
	fi
	"$BIN" initramfs -o "$IMG/$name.img" --kver "$kver" --kmoddir "$kmoddir" \
		--ca "$B/tls/ca.pem" --keys "$B/no-keys" "$@" >"$IMG/$name.log" 2>&1 || {
		cat "$IMG/$name.log" >&2
		die "rustlive initramfs failed for $name"
	}
	chmod 0644 "$IMG/$name.img"
	printf '%s' "$kmoddir $*" >"$IMG/$name.args"
	say "standalone initramfs $name: $(stat -c %s "$IMG/$name.img") bytes ($*)"
}

# build/kernel-xz/lib/modules/KVER: a copy of the fetched kernel's module tree with every module
# compressed as the kernel's own `make modules_install` does for RHEL 8/9 and Fedora
# (CONFIG_MODULE_COMPRESS_XZ), and depmod run on it. Debian 12's kernel cannot decompress
# modules (no CONFIG_MODULE_DECOMPRESS), like RHEL 8's 4.18 and RHEL 9's 5.14. Built once per
# kernel (a few CPU minutes); prints the modules directory.
build_xz_kmods() {
	local kver src out
	kver=$(cat "$B/kernel/kver")
	src="$B/kernel/root/lib/modules/$kver"
	out="$B/kernel-xz/lib/modules/$kver"
	if [ "$(cat "$B/kernel-xz/.done" 2>/dev/null)" != "$kver" ]; then
		say "compressing a copy of the $kver modules with xz (once)"
		rm -rf "$B/kernel-xz"
		mkdir -p "$(dirname "$out")"
		cp -a "$src" "$out"
		find "$out" -name '*.ko' -print0 | xargs -0 -r -n 64 -P 2 xz --check=crc32 --lzma2=dict=1MiB
		depmod -b "$B/kernel-xz" "$kver"
		echo "$kver" >"$B/kernel-xz/.done"
	fi
	echo "$out"
}

# --- QEMU ----------------------------------------------------------------------------------------

# qemu_start LOG [QEMU-ARGS...]: a TCG guest with one virtio NIC on slirp (unless the args bring
# their own network), serial console to LOG. Sets QEMU_PID. With QEMU_NETNS set, QEMU runs in
# that network namespace (the rig's, qemu/rig.sh; `ip netns exec` execs, so the PID is QEMU's).
qemu_start() {
	local log=$1 pre=()
	shift
	[ -z "${QEMU_NETNS:-}" ] || pre=(ip netns exec "$QEMU_NETNS")
	: >"$log"
	"${pre[@]}" qemu-system-x86_64 -accel tcg -m 1536 -smp 1 -nodefaults -no-user-config -display none \
		-no-reboot -serial "file:$log" "$@" </dev/null >"$log.qemu" 2>&1 &
	QEMU_PID=$!
}

# direct_boot_args INITRD CMDLINE [NET]: kernel boot; NET "none" leaves the guest without a NIC.
direct_boot_args() {
	local net=(-netdev "user,id=n0" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC")
	[ "${3:-}" = none ] && net=()
	printf '%s\n' -kernel "$KERNEL" -initrd "$1" -append "console=ttyS0 $2" "${net[@]}"
}

# wait_serial LOG TIMEOUT OK-REGEX [FAIL-REGEX]: 0 when OK-REGEX shows up on the console, 1 on
# FAIL-REGEX, on timeout or when QEMU exits first. Always stops QEMU_PID.
wait_serial() {
	local log=$1 timeout=$2 ok=$3 fail=${4:-} end rc=1
	end=$((SECONDS + timeout))
	while [ "$SECONDS" -lt "$end" ]; do
		if grep -Eq -- "$ok" "$log"; then
			rc=0
			break
		fi
		if [ -n "$fail" ] && grep -Eq -- "$fail" "$log"; then
			break
		fi
		if ! kill -0 "$QEMU_PID" 2>/dev/null; then
			grep -Eq -- "$ok" "$log" && rc=0
			break
		fi
		sleep 0.5
	done
	# Let the guest finish its current lines (the test root powers off by itself).
	for _ in $(seq 20); do
		kill -0 "$QEMU_PID" 2>/dev/null || break
		sleep 0.25
	done
	kill "$QEMU_PID" 2>/dev/null || true
	wait "$QEMU_PID" 2>/dev/null || true
	return "$rc"
}

# --- a real Debian 12 root -----------------------------------------------------------------------

# What the Debian root is made of; any change here (or in the hook below) is a new cache key.
DEBIAN_SUITE=bookworm
DEBIAN_PKGS="systemd,systemd-sysv,udev,dbus,openssh-server,munge,iproute2,procps"

# The image's own customisation, run by mmdebstrap in the finished tree ($1): no host keys and
# no munge key of its own (the node's come from its secrets bundle), a root ready for a key.
debian_root_hook() {
	cat <<-'EOF'
		set -eu
		r=$1
		rm -f "$r"/etc/ssh/ssh_host_* "$r"/etc/munge/munge.key
		install -d -m 0700 "$r/root/.ssh"
		echo rustlive-debian >"$r/etc/hostname"
		: >"$r/etc/machine-id"
		printf 'NAME="rustlive Debian root"\n' >"$r/etc/rustlive-root"
		rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/*.bin
		# A report on the console once sshd is up (or after 5 minutes): what the suite shows
		# when the node misbehaves. Through journald, which opens the console for each line:
		# serial-getty's vhangup() on ttyS0 cuts off a service's own tty as soon as the login
		# prompt appears (and /dev/kmsg refuses records over 1 KiB).
		cat >"$r/etc/systemd/system/debianroot-report.service" <<-'UNIT'
			[Unit]
			Description=Report the node's services on the console (rustlive suite)
			After=basic.target
			[Service]
			Type=simple
			StandardOutput=journal+console
			ExecStart=/bin/sh -c 'for i in $$(seq 60); do systemctl is-active -q ssh && break; sleep 5; done; systemctl status --no-pager -l -n 15 ssh munge | sed "s/^/DEBIANROOT: /"; ss -tln | sed "s/^/DEBIANROOT: /"; echo "DEBIANROOT: ssh $$(systemctl is-active ssh)"'
			[Install]
			WantedBy=multi-user.target
		UNIT
		ln -s ../debianroot-report.service "$r/etc/systemd/system/multi-user.target.wants/debianroot-report.service"
	EOF
}

# build/debian/KEY/root.squashfs, KEY a hash of the suite, the packages and the hook: built once
# with mmdebstrap (a few minutes, from the Debian mirror), reused while its inputs are unchanged.
# Prints the squashfs path.
build_debian_root() {
	local key dir hook
	key=$(printf '%s\n%s\n%s\n' "$DEBIAN_SUITE" "$DEBIAN_PKGS" "$(debian_root_hook)" | sha256sum | cut -c1-16)
	dir="$B/debian/$key"
	if ! [ -s "$dir/root.squashfs" ]; then
		say "building the Debian $DEBIAN_SUITE root ($key) with mmdebstrap"
		rm -rf "$dir" && mkdir -p "$dir"
		hook="$dir/hook.sh"
		debian_root_hook >"$hook"
		mmdebstrap --quiet --variant=minbase --include="$DEBIAN_PKGS" \
			--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
			--dpkgopt='path-exclude=/usr/share/locale/*' \
			--customize-hook="sh $hook \"\$1\"" \
			"$DEBIAN_SUITE" "$dir/tree" >"$dir/mmdebstrap.log" 2>&1 || {
			tail -20 "$dir/mmdebstrap.log" >&2
			die "mmdebstrap failed (see $dir/mmdebstrap.log)"
		}
		mksquashfs "$dir/tree" "$dir/root.squashfs.part" -comp zstd -noappend -quiet >/dev/null
		rm -rf "$dir/tree"
		mv "$dir/root.squashfs.part" "$dir/root.squashfs"
	fi
	echo "$dir/root.squashfs"
}

# --- a syslog collector --------------------------------------------------------------------------

# rsyslog_start NAME UDPPORT TCPPORT: an rsyslogd of its own (never the host's) under
# build/rsyslog/NAME, listening on 127.0.0.1 (the guest's 10.0.2.2) and writing what it receives,
# in RFC 5424 form, to build/rsyslog/NAME/received.log.
rsyslog_start() {
	local name=$1 udp=$2 tcp=$3 d i
	d="$B/rsyslog/$name"
	rsyslog_stop "$name"
	rm -rf "$d" && mkdir -p "$d"
	cat >"$d/rsyslog.conf" <<-EOF
		global(workDirectory="$d")
		module(load="imudp")
		module(load="imtcp")
		input(type="imudp" address="127.0.0.1" port="$udp" ruleset="node")
		input(type="imtcp" address="127.0.0.1" port="$tcp" ruleset="node")
		ruleset(name="node") {
		  action(type="omfile" file="$d/received.log" template="RSYSLOG_SyslogProtocol23Format")
		}
	EOF
	rsyslogd -f "$d/rsyslog.conf" -i "$d/rsyslogd.pid" 2>"$d/start.log" ||
		die "rsyslogd $name failed to start (see $d/start.log)"
	for i in $(seq 50); do
		ss -Htln "sport = :$tcp" | grep -q . && return 0
		sleep 0.1
	done
	die "rsyslogd $name does not listen on 127.0.0.1:$tcp"
}

rsyslog_stop() {
	local pidf="$B/rsyslog/$1/rsyslogd.pid"
	[ -s "$pidf" ] || return 0
	kill "$(cat "$pidf")" 2>/dev/null || true
	rm -f "$pidf"
}

rsyslog_stop_all() { stop_each rsyslog rsyslog_stop; }

# --- the Debian node's secrets ------------------------------------------------------------------

DEBNODE="$B/debian-node"

# build_debian_secrets SQUASHFS: build/debian-node/tree, the node's bundle tree (kept between
# runs, as a site keeps it), and debian-secrets.cpio built from it by `rustlive bundle build`.
build_debian_secrets() {
	# The node's tree as a site keeps it for `rustlive bundle build`: host keys generated once
	# by --ssh-host-keys (ed25519, ecdsa, rsa) and kept, the cluster's munge key 0400
	# munge:munge by name, root's authorized_keys for the suite's client key; owner names
	# checked against the image's own accounts. The .cpio is gzip'ed: a plain cat after any
	# initramfs, or a second iPXE initrd.
	local d=$DEBNODE t="$DEBNODE/tree" sq=$1 acct="$DEBNODE/accounts"
	mkdir -p "$t/etc/munge" "$t/root/.ssh"
	[ -s "$d/client" ] || ssh-keygen -q -t ed25519 -N '' -C suite -f "$d/client"
	# munged wants at least 32 bytes; the canary must never be printed by anyone.
	[ -s "$t/etc/munge/munge.key" ] || {
		printf '%s ' "$CANARY" && head -c 64 /dev/urandom | od -An -tx1 | tr -d ' \n'
	} >"$t/etc/munge/munge.key"
	chmod 0400 "$t/etc/munge/munge.key"
	install -m 0600 "$d/client.pub" "$t/root/.ssh/authorized_keys"
	printf '{"owners": {"/etc/munge/munge.key": "munge:munge"}, "macs": ["%s"]}\n' "$GUEST_MAC" \
		>"$t/rustlive-bundle.json"
	rm -rf "$acct"
	unsquashfs -q -n -d "$acct" "$sq" etc/passwd etc/group >/dev/null
	"$BIN" bundle build "$t" --ssh-host-keys --image-root "$acct" -o "$d/debian-secrets.cpio"
	# What ssh-keyscan must return: exactly these keys (the image's own were removed).
	cat "$t"/etc/ssh/ssh_host_*_key.pub | cut -d' ' -f1-2 | sort >"$d/host-keys"
}

# wait_console LOG TIMEOUT OK-REGEX [FAIL-REGEX]: like wait_serial, but leaves the guest
# running (the caller talks to it, then stops QEMU_PID).
wait_console() {
	local log=$1 timeout=$2 ok=$3 fail=${4:-} end
	end=$((SECONDS + timeout))
	while [ "$SECONDS" -lt "$end" ]; do
		grep -Eq -- "$ok" "$log" && return 0
		[ -n "$fail" ] && grep -Eq -- "$fail" "$log" && return 1
		kill -0 "$QEMU_PID" 2>/dev/null || return 1
		sleep 0.5
	done
	return 1
}
