#!/bin/bash
# QEMU netboot suite: builds the test root, the initramfs images (dracut --add rustlive) and nginx
# instances under build/, then boots TCG guests and asserts on their serial consoles.
# Usage: qemu/suite.sh [SCENARIO...]   (default: all). The last line is "N passed, N failed".
set -eu
# shellcheck source=qemu/lib.sh
. "$(dirname "$0")/lib.sh"
# shellcheck source=qemu/rig.sh
. "$(dirname "$0")/rig.sh"
# shellcheck source=qemu/links.sh
. "$(dirname "$0")/links.sh"
# shellcheck source=qemu/swarm.sh
. "$(dirname "$0")/swarm.sh"

prerequisites

prepare() {
	build_images
	build_secrets_initrd
	build_tls
	mkdir -p "$WWW/nodes"
	write_secrets_bundle "$WWW/nodes/$GUEST_MAC.json"
	prepare_standalone
	# Standalone scenarios need no dracut image: skip building them when only those run.
	# The swarm scenarios on the dracut module need only nm.img.
	local t only_sa=1 only_nm=1
	for t in "$@"; do
		case $t in
		standalone*) only_nm='' ;;
		dracut[-_]swarm*) only_sa='' ;;
		*) only_sa='' && only_nm='' ;;
		esac
	done
	[ -n "$only_sa" ] && return 0
	install_module
	build_initramfs nm --add "rustlive network-manager" "${COMMON_DRACUT[@]}" \
		--include "$B/tls/ca.pem" /etc/rustlive/test-ca.pem
	[ -n "$only_nm" ] && return 0
	build_initramfs networkd --add "rustlive systemd-networkd" "${COMMON_DRACUT[@]}"
	build_initramfs nm-keys --add "rustlive network-manager" "${COMMON_DRACUT[@]}" \
		--include "$B/keys/test.pub" /etc/rustlive/keys/test.pub
	# What a boot loader does with two initrds: the kernel looks for a cpio header only at a
	# 4-byte boundary, so the first archive is padded.
	cp "$IMG/nm.img" "$IMG/nm+secrets.img"
	truncate -s %4 "$IMG/nm+secrets.img"
	cat "$WWW/node-secrets.cpio" >>"$IMG/nm+secrets.img"
	# A plain cat and no padding, after an initramfs whose length is not a multiple of 4: the
	# bundle cpio (gzip'ed) is read; the uncompressed cpio it replaces is lost, and rustlive
	# says why.
	build_bundle_cpio
	cp "$IMG/nm.img" "$IMG/nm-odd.img"
	misalign "$IMG/nm-odd.img"
	cat "$IMG/nm-odd.img" "$WWW/node-bundle.cpio" >"$IMG/nm+bundle-cat.img"
	cat "$IMG/nm-odd.img" "$WWW/node-secrets.cpio" >"$IMG/nm+plain-cat.img"
	# dracut without systemd: the netroot handler and mount hook instead of the unit.
	build_initramfs legacy --add "rustlive network-legacy" "${COMMON_DRACUT[@]}" \
		--omit "systemd systemd-initrd dracut-systemd systemd-networkd network-manager"
	# An image inside the initramfs (file://), appended like the secrets initrd.
	local d="$B/file-initrd"
	rm -rf "$d" && mkdir -p "$d/images"
	cp "$WWW/root.squashfs" "$d/images/"
	(cd "$d" && find images | cpio -o -H newc --quiet -R 0:0) >"$B/file-image.cpio"
	rm -rf "$d"
	local base
	for base in nm legacy; do
		cp "$IMG/$base.img" "$IMG/$base+file.img"
		truncate -s %4 "$IMG/$base+file.img"
		cat "$B/file-image.cpio" >>"$IMG/$base+file.img"
	done
}

PORT=$(free_port)
SSLPORT=$(free_port)
URL="http://10.0.2.2:$PORT"
SURL="https://10.0.2.2:$SSLPORT"
# Never fails: under set -e a failing command in the EXIT trap (a kill of a process that has
# already exited) would replace the suite's own exit status.
cleanup() {
	local p
	for p in "${BG_PID:-}" "${QEMU_PID:-}" "${REGISTRY_PID:-}"; do
		[ -z "$p" ] || kill "$p" 2>/dev/null || true
	done
	rig_down || true
	nginx_stop_all || true
	rsyslog_stop_all || true
}
trap cleanup EXIT

# Console lines that mean the node did not boot the image.
NOBOOT='Entering emergency mode|Kernel panic|boot failed \(exit code'

# boot NAME INITRD CMDLINE TIMEOUT OK-REGEX [FAIL-REGEX] [none]: direct kernel boot into
# build/logs/NAME.log.
boot() {
	local name=$1 initrd=$2 cmdline=$3 timeout=$4 ok=$5 fail=${6:-} nic=${7:-}
	local args
	mapfile -t args < <(direct_boot_args "$initrd" "$cmdline" "$nic")
	LOG="$LOGS/$name.log"
	qemu_start "$LOG" "${args[@]}"
	wait_serial "$LOG" "$timeout" "$ok" "$fail"
}

# check LOG-REGEX DESCRIPTION: the console of the current scenario shows it.
check() {
	grep -Eq -- "$1" "$LOG" || {
		say "  missing on the console: $2"
		return 1
	}
}
check_not() {
	! grep -Eq -- "$1" "$LOG" || {
		say "  unexpected on the console: $2"
		return 1
	}
}
booted() {
	check 'TESTROOT: init running' "the test root's init" &&
		check 'TESTROOT: os-release rustlive test root' "the image's os-release" &&
		check 'TESTROOT: root fs overlay' "an overlay root" &&
		check 'TESTROOT: done' "the end of the test root's report"
}
secrets_ok() {
	local line
	while read -r line; do
		grep -qxF -- "$line" <(tr -d '\r' <"$LOG") || {
			say "  missing on the console: $line"
			return 1
		}
	done < <(expected_secret_lines)
	check_not "$CANARY" "a secret value" && check_not 'LEFTOVER' "the bundle left in the new root"
}

# --- scenarios -----------------------------------------------------------------------------------

t_happy_nm() {
	boot happy-nm "$IMG/nm.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		240 'TESTROOT: done' "$NOBOOT" && booted
}

t_happy_networkd() {
	boot happy-networkd "$IMG/networkd.img" \
		"rd.rustlive.url=$URL/root.squashfs rd.rustlive.sha256sums=$URL/SHA256SUMS" \
		240 'TESTROOT: done' "$NOBOOT" && booted && check 'systemd-networkd' "networkd started"
}

t_livenet_cmdline() {
	boot livenet-cmdline "$IMG/nm.img" \
		"root=live:$URL/root.squashfs rd.live.image rd.live.overlay.overlayfs=1" \
		240 'TESTROOT: done' "$NOBOOT" && booted
}

t_root_http_alias() {
	# systemd-fstab-generator writes a sysroot.mount for root=http://…; the rustlive generator's
	# unit must win over it.
	boot root-http-alias "$IMG/nm.img" "root=$URL/root.squashfs" \
		240 'TESTROOT: done' "$NOBOOT" && booted
}

t_nested() {
	boot nested "$IMG/nm.img" \
		"root=live:$URL/nested.squashfs rd.live.image rd.rustlive.sha256=$(sha_of nested.squashfs)" \
		240 'TESTROOT: done' "$NOBOOT" && booted
}

t_erofs() {
	boot erofs "$IMG/nm.img" "root=live:$URL/root.erofs rd.rustlive.sha256=$(sha_of root.erofs)" \
		240 'TESTROOT: done' "$NOBOOT" && booted && check 'rustlive.*erofs' "an erofs lower layer"
}

t_hash_mismatch() {
	local zero
	zero=$(printf '0%.0s' $(seq 64))
	boot hash-mismatch "$IMG/nm.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$zero" \
		240 'Entering emergency mode' 'TESTROOT' &&
		check 'rustlive.*(sha256|SHA-256|hash|checksum)' "the reason (hash) from rustlive" &&
		check 'boot failed \(exit code 4' "exit code 4 (verification)" &&
		check_not 'TESTROOT' "the image's init"
}

t_bad_cmdline() {
	# A bad value is reported, then the failure policy applies (here: an unattended node reboots).
	boot bad-cmdline "$IMG/nm.img" \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=xyz rd.rustlive.onfail=reboot rd.rustlive.onfail.delay=1" \
		240 'reboot: Restarting system' 'TESTROOT' &&
		check 'rustlive.*invalid value "xyz" for rd.rustlive.sha256' "the offending option named by rustlive" &&
		check_not 'rustlive.*(fetched|fetch [0-9])' "a download"
}

t_bad_cmdline_shell() {
	# With the default policy the node stops in the emergency shell, the reason on the console.
	boot bad-cmdline-shell "$IMG/nm.img" "root=live:$URL/root.squashfs rd.rustlive.overlay.size=12Q" \
		240 'Entering emergency mode' 'TESTROOT|reboot: Restarting' &&
		check 'rustlive.*rd.rustlive.overlay.size' "the offending option named by rustlive" &&
		check 'boot failed \(exit code 2' "exit code 2 (configuration)"
}

# Waits for the root's init while the fault injector in BG_PID runs, and reaps it either way.
wait_root_reaping_bg() {
	local rc=0
	wait_serial "$LOG" 300 'TESTROOT: done' "$NOBOOT" || rc=1
	wait "$BG_PID" || true
	BG_PID=
	return "$rc"
}

t_server_late() {
	local late
	late=$(free_port)
	nginx_start late "$late"
	nginx_stop late
	rm -f "$B/nginx/late/logs/access.log"
	LOG="$LOGS/server-late.log"
	local args
	mapfile -t args < <(direct_boot_args "$IMG/nm.img" \
		"root=live:http://10.0.2.2:$late/root.squashfs rd.rustlive.timeout=180")
	qemu_start "$LOG" "${args[@]}"
	# The server comes up 20 s after rustlive started trying.
	(
		for _ in $(seq 240); do
			grep -q 'Starting.*rustlive.service' "$LOG" && break
			sleep 0.5
		done
		sleep 20
		nginx_start late "$late"
	) &
	BG_PID=$!
	wait_root_reaping_bg || return 1
	booted && grep -q 'GET /root.squashfs' "$B/nginx/late/logs/access.log"
}

t_broken_transfer() {
	local slow
	slow=$(free_port)
	rm -rf "$B/nginx/slow/logs"
	nginx_start slow "$slow" "" "limit_rate 200k;"
	LOG="$LOGS/broken-transfer.log"
	local args
	mapfile -t args < <(direct_boot_args "$IMG/nm.img" \
		"root=live:http://10.0.2.2:$slow/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs) rd.rustlive.timeout=200")
	qemu_start "$LOG" "${args[@]}"
	# Cut the server while the image is on the wire, bring it back 3 s later.
	(
		for _ in $(seq 600); do
			ss -Htn state established "sport = :$slow" | grep -q . && break
			sleep 0.2
		done
		sleep 5
		say "  broken-transfer: stopping nginx mid-transfer"
		nginx_stop slow
		mv "$B/nginx/slow/logs/access.log" "$B/nginx/slow/logs/access-before.log"
		sleep 3
		nginx_start slow "$slow" "" "limit_rate 2m;"
	) &
	BG_PID=$!
	wait_root_reaping_bg || return 1
	booted || return 1
	# The second request continued where the first stopped.
	grep -q '"GET /root.squashfs HTTP/1.1" 206' "$B/nginx/slow/logs/access.log" || {
		say "  no ranged (206) request after the restart:"
		cat "$B/nginx/slow/logs/access.log" >&2
		return 1
	}
}

t_secrets_initrd() {
	boot secrets-initrd "$IMG/nm+secrets.img" \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		240 'TESTROOT: done' "$NOBOOT" && booted && secrets_ok
}

t_secrets_cat() {
	boot secrets-cat "$IMG/nm+bundle-cat.img" \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		240 'TESTROOT: done' "$NOBOOT" && booted && secrets_ok &&
		check_not 'Initramfs unpacking failed|rootfs image is not initramfs' "an unpacking error"
}

t_secrets_cat_plain() {
	boot secrets-cat-plain "$IMG/nm+plain-cat.img" \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		240 'TESTROOT: done' "$NOBOOT" && booted &&
		check 'Initramfs unpacking failed|rootfs image is not initramfs' "the kernel's unpacking error" &&
		check 'rustlive.*no bundle found.*multiple of 4' "rustlive's warning naming the padding cause" &&
		check_not 'TESTROOT: secret ' "a secret installed"
}

t_secrets_https() {
	boot secrets-https "$IMG/nm.img" \
		"root=live:$SURL/root.squashfs rd.rustlive.ca=/etc/rustlive/test-ca.pem rd.rustlive.secrets=$SURL/nodes/{mac}.json" \
		240 'TESTROOT: done' "$NOBOOT" && booted && secrets_ok
}

t_no_network() {
	boot no-network "$IMG/nm.img" "root=live:$URL/root.squashfs rd.rustlive.timeout=20" \
		180 'Entering emergency mode' 'TESTROOT' none &&
		check 'boot failed \(exit code 3' "exit code 3 (transfer)" &&
		check_not 'TESTROOT' "the image's init"
}

t_signature_valid() {
	boot signature-valid "$IMG/nm-keys.img" "root=live:$URL/root.squashfs" \
		240 'TESTROOT: done' "$NOBOOT" && booted
}

t_signature_missing() {
	# Unattended-node policy: the node reboots by itself (QEMU runs with -no-reboot and exits).
	boot signature-missing "$IMG/nm-keys.img" \
		"root=live:$URL/unsigned.squashfs rd.rustlive.onfail=reboot rd.rustlive.onfail.delay=3" \
		240 'reboot: Restarting system' 'TESTROOT' &&
		check 'rustlive.*(signature|minisig)' "the reason (signature) from rustlive" &&
		check_not 'TESTROOT' "the image's init"
}

# ipxe_script NAME INITRAMFS KERNEL-ARGS NODE-INITRD-URL: build/tftp/NAME.ipxe, what a boot
# server hands a node: the kernel, INITRAMFS (served as /boot/NAME.img) and its own initrd.
ipxe_script() {
	mkdir -p "$B/tftp" "$WWW/boot"
	ln -sf "$KERNEL" "$WWW/boot/vmlinuz"
	ln -sf "$2" "$WWW/boot/$1.img"
	printf '#!ipxe\nkernel %s\ninitrd %s\ninitrd %s\nboot\n' "$URL/boot/vmlinuz console=ttyS0 $3" \
		"$URL/boot/$1.img" "$4" >"$B/tftp/$1.ipxe"
}

t_pxe() {
	ipxe_script pxe "$IMG/nm.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		"$URL/node-secrets.cpio"
	LOG="$LOGS/pxe.log"
	qemu_start "$LOG" -boot n -netdev "user,id=n0,tftp=$B/tftp,bootfile=pxe.ipxe" \
		-device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
	wait_serial "$LOG" 300 'TESTROOT: done' "$NOBOOT" && booted && secrets_ok
}

t_no_systemd() {
	boot no-systemd "$IMG/legacy.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		240 'TESTROOT: done' "$NOBOOT|Dropping to debug shell" && booted &&
		check 'dracut: Starting dhcp for interface' "network-legacy's DHCP" &&
		check_not 'systemd\[1\]' "systemd in the initramfs"
}

t_no_systemd_fail() {
	local zero
	zero=$(printf '0%.0s' $(seq 64))
	boot no-systemd-fail "$IMG/legacy.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$zero" \
		240 'Dropping to debug shell' 'TESTROOT' &&
		check 'rustlive.*(sha256|SHA-256|hash|checksum)' "the reason (hash) from rustlive" &&
		check 'boot failed \(exit code 4' "exit code 4 (verification)" &&
		check_not 'TESTROOT' "the image's init"
}

t_file_image() {
	boot file-image "$IMG/nm+file.img" \
		"root=live:file:///images/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		240 'TESTROOT: done' "$NOBOOT" && booted &&
		check_not 'Started .*nm-initrd.service' "NetworkManager (a file:// image needs no network)"
}

t_no_systemd_file() {
	boot no-systemd-file "$IMG/legacy+file.img" "root=live:file:///images/root.squashfs" \
		240 'TESTROOT: done' "$NOBOOT|Dropping to debug shell" && booted &&
		check_not 'Starting dhcp' "the network (a file:// image needs none)"
}

# registry_start: the CNCF distribution registry on 127.0.0.1:$REGPORT (the guest's
# 10.0.2.2), storage under build/, with the test root published by the host's rustlive.
registry_start() {
	[ -n "${REGISTRY_PID:-}" ] && return 0
	local d="$B/registry"
	rm -rf "$d" && mkdir -p "$d/storage"
	REGPORT=$(free_port)
	cat >"$d/config.yml" <<-EOF
		version: 0.1
		log:
		  level: warn
		storage:
		  filesystem:
		    rootdirectory: $d/storage
		http:
		  addr: 127.0.0.1:$REGPORT
		  secret: rustlive-qemu
	EOF
	/usr/bin/docker-registry serve "$d/config.yml" >"$d/registry.log" 2>&1 &
	REGISTRY_PID=$!
	for _ in $(seq 1 50); do
		curl -fsS "http://127.0.0.1:$REGPORT/v2/" >/dev/null 2>&1 && break
		sleep 0.2
	done
	# One line: the manifest digest, then the command line (for 127.0.0.1, the host's view).
	"$BIN" publish "$WWW/root.squashfs" "oci+http://127.0.0.1:$REGPORT/rustlive/root:test" \
		>"$d/published" 2>"$d/publish.log" || {
		say "  rustlive publish failed: $(tail -n 3 "$d/publish.log")"
		return 1
	}
	OCI_DIGEST=$(head -n 1 "$d/published")
}

t_oci() {
	# The image from an OCI registry, pinned by manifest digest (so plain http is allowed).
	registry_start || return 1
	boot oci "$IMG/nm.img" "root=live:oci+http://10.0.2.2:$REGPORT/rustlive/root@$OCI_DIGEST" \
		240 'TESTROOT: done' "$NOBOOT" && booted &&
		check 'manifest digest verified' "the pinned manifest checked" &&
		check "root layer sha256:$(sha_of root.squashfs)" "the layer chosen by media type"
}

t_pid1_switch_root() {
	# No dracut at all: rustlive is the initramfs's /init and does its own switch-root.
	LOG="$LOGS/pid1-switch-root.log"
	"$top/qemu/switchroot-test.sh" >"$LOG" 2>&1 || return 1
	grep -q '^PASS switchroot-test (squashfs)' "$LOG" && grep -q '^PASS switchroot-test (iso)' "$LOG"
}

# tpm_prepare NAME: a manufactured swtpm state under build/tpm/NAME (EK at 0x81010001 with its
# certificate), and its RSA EK as rustlive tpm ek prints it (through swtpm's TCP channel).
tpm_prepare() {
	local d="$B/tpm/$1" port pid
	[ -s "$d/ek.pem" ] && return 0
	rm -rf "$d" && mkdir -p "$d/state"
	swtpm_setup --tpm2 --tpmstate "$d/state" --create-ek-cert --lock-nvram --overwrite \
		>"$d/setup.log" 2>&1 || return 1
	port=$(free_port)
	swtpm socket --tpm2 --tpmstate "dir=$d/state" --flags not-need-init,startup-clear \
		--server "type=tcp,port=$port,bindaddr=127.0.0.1" >"$d/swtpm-enroll.log" 2>&1 &
	pid=$!
	for _ in $(seq 40); do
		ss -Htln "sport = :$port" | grep -q . && break
		sleep 0.25
	done
	RUSTLIVE_TPM="swtpm:127.0.0.1:$port" "$BIN" tpm ek >"$d/ek.txt" || {
		kill "$pid"
		return 1
	}
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	awk '/^ek: rsa2048/{f=1; next} f && /BEGIN PUBLIC KEY/{p=1} p{print} p && /END PUBLIC KEY/{exit}' \
		"$d/ek.txt" >"$d/ek.pem"
	[ -s "$d/ek.pem" ]
}

# boot_tpm NAME TPM CMDLINE TIMEOUT OK-REGEX FAIL-REGEX: boot() with swtpm TPM attached (TIS).
# boot_tpm NAME NODE CMDLINE TIMEOUT OK FAIL [standalone]: a boot with NODE's swtpm attached,
# by the dracut module (nm.img) or the standalone initramfs, each trusting the sealing key.
boot_tpm() {
	local name=$1 d="$B/tpm/$2" cmdline=$3 timeout=$4 ok=$5 fail=$6 args tpm_pid rc=0
	rm -f "$d/sock"
	swtpm socket --tpm2 --tpmstate "dir=$d/state" --ctrl "type=unixio,path=$d/sock" \
		>"$d/swtpm-$name.log" 2>&1 &
	tpm_pid=$!
	for _ in $(seq 40); do
		[ -S "$d/sock" ] && break
		sleep 0.25
	done
	if [ "${7:-}" = standalone ]; then
		mapfile -t args < <(direct_boot_args "$IMG/sa+seal.img" "$SA_ARGS $cmdline")
	else
		mapfile -t args < <(direct_boot_args "$IMG/nm+seal.img" "$cmdline")
	fi
	LOG="$LOGS/$name.log"
	qemu_start "$LOG" "${args[@]}" -chardev "socket,id=chrtpm,path=$d/sock" \
		-tpmdev "emulator,id=tpm0,chardev=chrtpm" -device "tpm-tis,tpmdev=tpm0"
	wait_serial "$LOG" "$timeout" "$ok" "$fail" || rc=1
	kill "$tpm_pid" 2>/dev/null || true
	wait "$tpm_pid" 2>/dev/null || true
	return "$rc"
}

# The boot server's key that signs sealed bundles, and the two initrds of the TPM boots
# followed by a cpio that puts its public half in /etc/rustlive/keys/sealed/ (as the dracut
# module and `rustlive initramfs --keys` copy it from the build host).
tpm_seal_key() {
	local d="$B/seal-key"
	if ! [ -s "$B/keys/seal.key" ]; then
		mkdir -p "$B/keys"
		rm -f "$B/keys/seal.pub"
		minisign -G -W -p "$B/keys/seal.pub" -s "$B/keys/seal.key" >/dev/null || return 1
	fi
	rm -rf "$d" && mkdir -p "$d/etc/rustlive/keys/sealed"
	cp "$B/keys/seal.pub" "$d/etc/rustlive/keys/sealed/seal.pub"
	(cd "$d" && find etc | cpio -o -H newc --quiet -R 0:0 | gzip -n -9) >"$B/seal-key.cpio"
	rm -rf "$d"
	# Only standalone scenarios running: there is no nm.img.
	if [ -s "$IMG/nm.img" ]; then
		cat_initrds "$IMG/nm+seal.img" "$IMG/nm.img" "$B/seal-key.cpio"
	fi
	cat_initrds "$IMG/sa+seal.img" "$IMG/sa.img" "$B/seal-key.cpio"
}

# A bundle sealed to node A's TPM and signed by the boot server's key, served over plain http
# by MAC.
tpm_sealed_bundle() {
	tpm_prepare node-a && tpm_prepare node-b && tpm_seal_key || return 1
	[ -s "$WWW/nodes/$GUEST_MAC.sealed" ] && [ "$WWW/nodes/$GUEST_MAC.sealed" -nt "$B/keys/seal.key" ] &&
		return 0
	write_secrets_bundle "$B/tpm/plain.json"
	"$BIN" bundle seal --ek "$B/tpm/node-a/ek.pem" --sign-key "$B/keys/seal.key" \
		"$B/tpm/plain.json" -o "$WWW/nodes/$GUEST_MAC.sealed"
	rm -f "$B/tpm/plain.json"
}

TPM_CMDLINE='rd.rustlive.secrets.sealed=required'

t_secrets_tpm() {
	tpm_sealed_bundle || return 1
	boot_tpm secrets-tpm node-a \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs) rd.rustlive.secrets=$URL/nodes/{mac}.sealed $TPM_CMDLINE" \
		300 'TESTROOT: done' "$NOBOOT" && booted && secrets_ok &&
		check 'signed by the trusted key' "the boot server's signature checked first" &&
		check 'sealed bundle opened with this node' "the bundle opened by the node's TPM"
}

t_secrets_tpm_other() {
	tpm_sealed_bundle || return 1
	boot_tpm secrets-tpm-other node-b \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs) rd.rustlive.secrets=$URL/nodes/{mac}.sealed $TPM_CMDLINE" \
		300 'Entering emergency mode|boot failed \(exit code' 'TESTROOT: init' &&
		check 'sealed to another TPM' "the reason on the console" &&
		check 'boot failed \(exit code 6' "exit code 6 (secrets)" &&
		check_not 'TESTROOT' "the image's init" && check_not "$CANARY" "a secret value"
}

t_standalone_tpm() {
	# The standalone initramfs opens the sealed bundle too (the TPM drivers are built into
	# Debian's kernel; the builder adds tpm_tis/tpm_crb where they are modules).
	tpm_sealed_bundle || return 1
	boot_tpm standalone-tpm node-a \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs) rd.rustlive.secrets=$URL/nodes/{mac}.sealed $TPM_CMDLINE" \
		300 'TESTROOT: done' "$SA_NOBOOT" standalone && sa_booted && secrets_ok &&
		check 'sealed bundle opened with this node' "the bundle opened by the node's TPM" &&
		check_not "$CANARY" "a secret value"
}

t_standalone_oci() {
	# The standalone initramfs pulls the image from the registry too, pinned by digest.
	registry_start || return 1
	sa_boot standalone-oci "$IMG/sa.img" "root=live:oci+http://10.0.2.2:$REGPORT/rustlive/root@$OCI_DIGEST" \
		300 'TESTROOT: done' "$SA_NOBOOT" && sa_booted &&
		check 'manifest digest verified' "the pinned manifest checked" &&
		check "root layer sha256:$(sha_of root.squashfs)" "the layer chosen by media type"
}

t_initramfs_cache_key() {
	# The cache key covers every input: demo's nm.img (no test CA) never passes for the suite's.
	LOG="$LOGS/initramfs-cache-key.log"
	local ca="$B/tls/ca.pem" copy="$B/cache-key-ca.pem" k1 k2 k3 k4
	cp "$ca" "$copy"
	k1=$(initramfs_key nm --add "rustlive network-manager" "${COMMON_DRACUT[@]}")
	k2=$(initramfs_key nm --add "rustlive network-manager" "${COMMON_DRACUT[@]}" \
		--include "$copy" /etc/rustlive/test-ca.pem)
	k3=$(initramfs_key nm --add "rustlive network-manager" "${COMMON_DRACUT[@]}" \
		--include "$copy" /etc/rustlive/test-ca.pem)
	echo "changed" >>"$copy"
	k4=$(initramfs_key nm --add "rustlive network-manager" "${COMMON_DRACUT[@]}" \
		--include "$copy" /etc/rustlive/test-ca.pem)
	rm -f "$copy"
	printf '%s\n' "$k1" "$k2" "$k3" "$k4" >"$LOG"
	[ "$k1" != "$k2" ] && [ "$k2" = "$k3" ] && [ "$k3" != "$k4" ]
}

# A collector on the host for the syslog scenarios (started by the first that needs it).
SYSLOG_UDP=$(free_port)
SYSLOG_TCP=$(free_port)
SYSLOG_LOG="$B/rsyslog/main/received.log"
# Started once per run, on this run's ports (rsyslog_start stops one a previous run left).
syslog_up() {
	[ -n "${SYSLOG_UP:-}" ] && return 0
	rsyslog_start main "$SYSLOG_UDP" "$SYSLOG_TCP"
	SYSLOG_UP=1
}
# collector_has REGEX DESCRIPTION [WAIT-SECONDS]: rsyslog filed a line matching it.
collector_has() {
	local _
	for _ in $(seq $((${3:-10} * 2))); do
		grep -Eq -- "$1" "$SYSLOG_LOG" 2>/dev/null && return 0
		sleep 0.5
	done
	say "  missing at the collector: $2"
	return 1
}

t_syslog_failure() {
	# A failing boot's reason reaches the site's collector (TCP, octet-counted), with the stage
	# and the node's MAC as its host name, before the failure policy runs.
	syslog_up
	local zero
	zero=$(printf '0%.0s' $(seq 64))
	: >"$SYSLOG_LOG"
	boot syslog-failure "$IMG/nm.img" \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=$zero rd.rustlive.syslog=tcp://10.0.2.2:$SYSLOG_TCP" \
		240 'Entering emergency mode' 'TESTROOT' &&
		check 'boot failed \(exit code 4' "exit code 4 (verification)" &&
		collector_has "^<27>1 [^ ]+ $GUEST_MAC rustlive [0-9]+ - \[rustlive@32473 stage=\"fetch\"\] .*(sha256|SHA-256)" \
			"the reason (hash), stage fetch, from $GUEST_MAC" &&
		collector_has 'stage="config"\] boot logs also go to tcp://10.0.2.2' "the first lines, queued before the network" &&
		collector_has 'dropping to the emergency shell' "the failure policy's line"
}

# ssh_node ARGS...: a command on the Debian node as root, checking its host key against the
# injected one.
ssh_node() {
	ssh -q -p "$SSHPORT" -i "$DEBNODE/client" -o IdentitiesOnly=yes -o BatchMode=yes \
		-o ConnectTimeout=60 -o StrictHostKeyChecking=yes -o UserKnownHostsFile="$DEBNODE/known_hosts" \
		root@127.0.0.1 "$@"
}

# The Debian root's command line: image pinned by hash, boot logs to the suite's collector.
debian_cmdline() {
	echo "root=live:$URL/debian.squashfs rd.rustlive.sha256=$(sha_of debian.squashfs) rd.rustlive.syslog=udp://10.0.2.2:$SYSLOG_UDP"
}

debian_prepare() {
	local sq
	sq=$(build_debian_root) || return 1
	ln -f "$sq" "$WWW/debian.squashfs" 2>/dev/null || cp "$sq" "$WWW/debian.squashfs"
	build_debian_secrets "$sq" || return 1
	syslog_up
	: >"$SYSLOG_LOG"
	SSHPORT=$(free_port)
	sed "s/^/[127.0.0.1]:$SSHPORT /" "$DEBNODE/host-keys" >"$DEBNODE/known_hosts"
}

# debian_run NAME NETDEV-OPTIONS QEMU-ARGS...: boots the Debian root with sshd forwarded to
# 127.0.0.1:SSHPORT and checks it from the host: exactly the injected host keys, munged running
# with the injected key at 0400 munge:munge, the system state, the overlay root; then that no
# secret reached the console or the collector.
debian_run() {
	local name=$1 netopts=$2 rc=0 keys state
	shift 2
	LOG="$LOGS/$name.log"
	qemu_start "$LOG" "$@" -netdev "user,id=n0$netopts,hostfwd=tcp:127.0.0.1:$SSHPORT-:22" \
		-device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
	wait_console "$LOG" 600 'login:' "$NOBOOT|$SA_NOBOOT" || rc=1
	if [ "$rc" -eq 0 ]; then
		# sshd may come up after the login prompt (TCG, a loaded machine): up to 5 minutes.
		# One key type per scan, each retried until it answers: a scan of all types at once
		# runs their key exchanges side by side, and under TCG one of them can outlast -T.
		keys=$(end=$((SECONDS + 300)); for type in ed25519 ecdsa rsa; do
			while [ "$SECONDS" -lt "$end" ]; do
				out=$(ssh-keyscan -T 30 -t "$type" -p "$SSHPORT" 127.0.0.1 2>/dev/null) &&
					[ -n "$out" ] && echo "$out" && break
				sleep 3
			done
		done | cut -d' ' -f2- | sort)
		[ "$keys" = "$(cat "$DEBNODE/host-keys")" ] || {
			say "  ssh-keyscan returned: ${keys:-nothing}; injected: $(cat "$DEBNODE/host-keys")"
			tr -d '\r' <"$LOG" | grep -a 'DEBIANROOT:' >&2
			rc=1
		}
	fi
	if [ "$rc" -eq 0 ]; then
		# First line: the system state (once boot is over); then the failed units, if any.
		ssh_node sh -s >"$LOGS/$name.ssh" 2>&1 <<-'EOF' || true
			timeout 240 systemctl is-system-running --wait
			systemctl --failed --no-legend --plain
			echo "munge $(systemctl is-active munge)"
			stat -c 'key %a %U:%G' /etc/munge/munge.key
			echo "keysum $(sha256sum </etc/munge/munge.key | cut -d' ' -f1)"
			munge -n | unmunge | grep '^STATUS'
			echo "root $(findmnt -no FSTYPE /)"
		EOF
		sed 's/^/    node: /' "$LOGS/$name.ssh" >&2
		state=$(head -n1 "$LOGS/$name.ssh")
		case "$state" in
		running | degraded) ;;
		*) say "  systemctl is-system-running: ${state:-no answer}" && rc=1 ;;
		esac
		grep -qx 'munge active' "$LOGS/$name.ssh" || { say "  munged is not active" && rc=1; }
		grep -qx 'key 400 munge:munge' "$LOGS/$name.ssh" || { say "  munge key not 0400 munge:munge" && rc=1; }
		grep -qx "keysum $(sha256sum <"$DEBNODE/tree/etc/munge/munge.key" | cut -d' ' -f1)" "$LOGS/$name.ssh" ||
			{ say "  the munge key is not the injected one" && rc=1; }
		grep -q '^STATUS: *Success' "$LOGS/$name.ssh" || { say "  munge -n | unmunge failed" && rc=1; }
		grep -qx 'root overlay' "$LOGS/$name.ssh" || { say "  / is not the overlay" && rc=1; }
	fi
	kill "$QEMU_PID" 2>/dev/null || true
	wait "$QEMU_PID" 2>/dev/null || true
	QEMU_PID=
	[ "$rc" -eq 0 ] || return 1
	collector_has 'stage="secrets"\] .*installed' "the secrets stage's lines over UDP" || return 1
	collector_has "rustlive [0-9]+ - .* root ready on /sysroot" "the final line" || return 1
	check_not "$CANARY" "a secret value on the console" || return 1
	if grep -q -- "$CANARY" "$SYSLOG_LOG"; then
		say "  a secret value at the collector"
		return 1
	fi
}

t_debian_root() {
	# A real Debian 12 (systemd, sshd, munge) booted by the dracut module (NetworkManager); its
	# bundle (`rustlive bundle build`) appended to the initramfs with a plain cat.
	debian_prepare || return 1
	local img="$IMG/nm+debian.img"
	cp "$IMG/nm.img" "$img"
	cat "$DEBNODE/debian-secrets.cpio" >>"$img"
	debian_run debian-root "" -kernel "$KERNEL" -initrd "$img" -append "console=ttyS0 $(debian_cmdline)"
}

t_debian_root_pxe() {
	# The same root through real PXE: iPXE loads the standalone initramfs and the node's own
	# bundle by ${mac}, as a site's boot server serves them.
	debian_prepare || return 1
	mkdir -p "$WWW/debian-nodes/by-mac"
	cp "$DEBNODE/debian-secrets.cpio" "$WWW/debian-nodes/by-mac/$GUEST_MAC.cpio"
	# shellcheck disable=SC2016 # ${mac} is iPXE's, expanded by iPXE
	ipxe_script debian "$IMG/sa.img" "$SA_ARGS $(debian_cmdline)" "$URL/debian-nodes/by-mac/"'${mac}.cpio'
	# iPXE percent-encodes the colons of ${mac} in the request line.
	debian_run debian-root-pxe ",tftp=$B/tftp,bootfile=debian.ipxe" -boot n &&
		grep -Eq "GET /debian-nodes/by-mac/($GUEST_MAC|${GUEST_MAC//:/%3A})\.cpio HTTP/1\.1\" 200" \
			"$B/nginx/main/logs/access.log"
}

# --- standalone initramfs (rustlive as /init, no dracut) --------------------------------------

# The node's client certificate for mTLS, signed by the suite's CA, in a per-node initrd with
# the secrets bundle source's key pair (what a boot server would append for each node).
build_client_tls() {
	local t="$B/tls" d="$B/client-initrd"
	[ -s "$WWW/node-mtls.cpio" ] && return 0
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=node-$GUEST_MAC" \
		-keyout "$t/client.key" -out "$t/client.csr" 2>/dev/null
	printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >"$t/client-ext.cnf"
	openssl x509 -req -in "$t/client.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial \
		-days 30 -extfile "$t/client-ext.cnf" -out "$t/client.pem" 2>/dev/null
	rm -rf "$d" && mkdir -p "$d/etc/rustlive"
	cp "$t/client.pem" "$d/etc/rustlive/node.crt"
	cp "$t/client.key" "$d/etc/rustlive/node.key"
	chmod 0600 "$d/etc/rustlive/node.key"
	(cd "$d" && find etc | cpio -o -H newc --quiet -R 0:0) >"$WWW/node-mtls.cpio"
	rm -rf "$d"
}

# cat_initrds OUT A B: what a boot loader does with two initrds (4-byte aligned concatenation).
cat_initrds() {
	cp "$2" "$1"
	truncate -s %4 "$1"
	cat "$3" >>"$1"
}

prepare_standalone() {
	build_client_tls
	# The default NIC set, and one with virtio-net only (the "NIC without its driver" case and
	# the smallest useful image).
	build_standalone sa
	build_standalone sa-virtio --net-drivers virtio_net
	cat_initrds "$IMG/sa+mtls.img" "$IMG/sa.img" "$WWW/node-mtls.cpio"
}

# The standalone initramfs logs through /dev/kmsg as PID 1; devkmsg=on keeps every line.
SA_ARGS="printk.devkmsg=on rd.rustlive.onfail=poweroff"
SA_NOBOOT='Kernel panic|rustlive failed'

# sa_boot NAME INITRD CMDLINE TIMEOUT OK-REGEX FAIL-REGEX [QEMU NET ARGS...]: direct kernel boot
# with the given NIC (default: virtio-net on slirp).
sa_boot() {
	local name=$1 initrd=$2 cmdline=$3 timeout=$4 ok=$5 fail=$6
	shift 6
	local net=("$@")
	[ ${#net[@]} -gt 0 ] || net=(-netdev "user,id=n0" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC")
	[ "${net[0]}" = none ] && net=()
	LOG="$LOGS/$name.log"
	qemu_start "$LOG" -kernel "$KERNEL" -initrd "$initrd" -append "console=ttyS0 $SA_ARGS $cmdline" "${net[@]}"
	wait_serial "$LOG" "$timeout" "$ok" "$fail"
}

sa_booted() {
	booted && check 'rustlive.*network up in' "the network stage's summary" &&
		check 'TESTROOT: inet eth0 10\.0\.2\.15/24' "the address kept for the booted system" &&
		check 'TESTROOT: lease \{' "/run/rustlive/lease.json in the booted system" &&
		check 'rustlive.*VmHWM' "rustlive's peak memory before switch-root"
}

t_standalone_virtio() {
	say "  initramfs: $(stat -c %s "$IMG/sa.img") bytes (default NIC set), $(stat -c %s "$IMG/sa-virtio.img") bytes (virtio-net only)"
	sa_boot standalone-virtio "$IMG/sa.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT" && sa_booted &&
		check 'rustlive.*loaded kernel modules: .*virtio_net' "virtio_net loaded by modalias" &&
		check 'rustlive.*DHCP from 10\.0\.2\.2' "a DHCP lease from slirp" &&
		check 'TESTROOT: lease .*"method":"dhcp"' "the lease's method"
}

t_standalone_mirrors() {
	# Three mirrors, the third never up: the node spreads the image's pieces over the two that
	# answer (each byte once, 206s only) and boots the verified image.
	local m1 m2 dead n total=0 b rc=0
	m1=$(free_port)
	m2=$(free_port)
	dead=$(free_port)
	for n in pieces1 pieces2; do rm -rf "$B/nginx/$n/logs"; done
	nginx_start pieces1 "$m1"
	nginx_start pieces2 "$m2"
	sa_boot standalone-mirrors "$IMG/sa.img" \
		"rd.rustlive.url=http://10.0.2.2:$m1/root.squashfs,http://10.0.2.2:$m2/root.squashfs,http://10.0.2.2:$dead/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT" || rc=1
	nginx_stop pieces1
	nginx_stop pieces2
	[ "$rc" -eq 0 ] && sa_booted && check 'rustlive.*pieces served by http://10\.0\.2\.2' "the pieces' summary" || return 1
	for n in pieces1 pieces2; do
		b=$(awk '$7 == "/root.squashfs" && $9 == 206 { s += $10 } END { printf "%d", s }' "$B/nginx/$n/logs/access.log")
		total=$((total + b))
		! awk '$7 == "/root.squashfs" && $9 != 206' "$B/nginx/$n/logs/access.log" | grep -q . || {
			say "  $n answered the image with something other than a piece"
			return 1
		}
	done
	[ "$total" -eq "$(stat -c %s "$WWW/root.squashfs")" ] || {
		say "  the mirrors served $total bytes of the image, not $(stat -c %s "$WWW/root.squashfs") once"
		return 1
	}
}

t_standalone_e1000() {
	# The 82540EM most hypervisors emulate: carrier comes from the driver's watchdog, ~2 s
	# after the module loads.
	sa_boot standalone-e1000 "$IMG/sa.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT" -netdev "user,id=n0" -device "e1000,netdev=n0,mac=$GUEST_MAC" &&
		sa_booted && check 'rustlive.*loaded kernel modules: e1000([^e]|$)' "e1000 loaded by modalias"
}

t_standalone_e1000e() {
	sa_boot standalone-e1000e "$IMG/sa.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT" -netdev "user,id=n0" -device "e1000e,netdev=n0,mac=$GUEST_MAC" &&
		sa_booted && check 'rustlive.*loaded kernel modules: .*e1000e' "e1000e loaded by modalias"
}

t_standalone_static() {
	sa_boot standalone-static "$IMG/sa.img" \
		"ip=10.0.2.15::10.0.2.2:255.255.255.0:node1:eth0:none nameserver=10.0.2.3 root=live:$URL/root.squashfs" \
		300 'TESTROOT: done' "$SA_NOBOOT" && sa_booted &&
		check 'rustlive.*network up in .*\(static\), gateway 10\.0\.2\.2, DNS 10\.0\.2\.3' "the static configuration" &&
		check_not 'DHCP from' "a DHCP exchange"
}

t_standalone_hash_mismatch() {
	local zero
	zero=$(printf '0%.0s' $(seq 64))
	sa_boot standalone-hash-mismatch "$IMG/sa.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$zero" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic' &&
		check 'rustlive.*(sha256|SHA-256|hash)' "the reason (hash)" && check_not 'TESTROOT' "the image's init"
}

t_standalone_no_nic() {
	sa_boot standalone-no-nic "$IMG/sa.img" "root=live:$URL/root.squashfs" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic' none &&
		check 'rustlive.*no Ethernet or IPoIB interface found' "the reason (no NIC)"
}

t_standalone_no_driver() {
	# Built with virtio-net only, booted on an e1000: the message names the device and the fix.
	sa_boot standalone-no-driver "$IMG/sa-virtio.img" "root=live:$URL/root.squashfs" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic' \
		-netdev "user,id=n0" -device "e1000,netdev=n0,mac=$GUEST_MAC" &&
		check 'rustlive.*network device .*PCI 8086:100e, modalias pci:v00008086d0000100E.*has no driver in this initramfs' "vendor:device and modalias" &&
		check 'rustlive.*--add-drivers e1000' "the --add-drivers fix"
}

t_standalone_no_dhcp() {
	# A hub with nothing else on it: carrier, but no DHCP server.
	sa_boot standalone-no-dhcp "$IMG/sa.img" "root=live:$URL/root.squashfs rd.rustlive.timeout=20" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic' \
		-netdev "hubport,id=n0,hubid=0" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC" &&
		check 'rustlive.*no DHCP answer within [0-9]+ s: [0-9]+ DISCOVER/REQUEST on eth0' "interfaces and DISCOVER counts"
}

t_standalone_pxe() {
	ipxe_script standalone "$IMG/sa.img" \
		"$SA_ARGS root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" "$URL/node-secrets.cpio"
	LOG="$LOGS/standalone-pxe.log"
	qemu_start "$LOG" -boot n -netdev "user,id=n0,tftp=$B/tftp,bootfile=standalone.ipxe" \
		-device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
	wait_serial "$LOG" 300 'TESTROOT: done' "$SA_NOBOOT" && sa_booted && secrets_ok
}

t_standalone_secrets_mtls() {
	# Image and secrets over https; the secrets server requires the node's client certificate,
	# which arrives in a per-node initrd.
	local mport mtls
	mport=$(free_port)
	mtls=$(free_port)
	nginx_start mtls "$mport" "" "server { listen 127.0.0.1:$mtls ssl; root $WWW;
		ssl_certificate $B/tls/server.pem; ssl_certificate_key $B/tls/server.key;
		ssl_client_certificate $B/tls/ca.pem; ssl_verify_client on; }"
	sa_boot standalone-secrets-mtls "$IMG/sa+mtls.img" \
		"root=live:$SURL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs) rd.rustlive.secrets=https://10.0.2.2:$mtls/nodes/{mac}.json rd.rustlive.secrets.cert=/etc/rustlive/node.crt rd.rustlive.secrets.key=/etc/rustlive/node.key" \
		300 'TESTROOT: done' "$SA_NOBOOT"
	local rc=$?
	nginx_stop mtls
	[ "$rc" -eq 0 ] && sa_booted && secrets_ok &&
		grep -q "GET /nodes/$GUEST_MAC.json HTTP/1.1\" 200" "$B/nginx/mtls/logs/access.log"
}

# --- on the network rig (qemu/rig.sh: a bridge in a private namespace, dnsmasq, nginx) -----------

# rig_sa_boot NAME INITRD CMDLINE TIMEOUT OK-REGEX FAIL-REGEX: sa_boot with one virtio NIC
# (GUEST_MAC) on a tap on the rig's bridge.
rig_sa_boot() {
	QEMU_NETNS=$RIG_NS sa_boot "$@" -netdev "$(rig_tap tap0 n0)" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
}

t_standalone_rig_v4() {
	# The rig itself: DHCPv4 from dnsmasq, the image from the namespace's nginx, as on slirp.
	rig_up --v6 off
	rig_sa_boot standalone-rig-v4 "$IMG/sa.img" "root=live:$RIG_URL4/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT"
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] && sa_booted && check "rustlive.*DHCP from $RIG_V4" "a DHCP lease from the rig's dnsmasq"
}

# IPv6 on the rig. v6_booted: the test root ran, with the IPv6 configuration rustlive left it.
v6_booted() {
	booted && check 'rustlive.*network up in|rustlive.*IPv6 up:' "the network stage's summary" &&
		check 'TESTROOT: lease6 \{' "/run/rustlive/lease6-eth0.json in the booted system" &&
		check 'rustlive.*VmHWM' "rustlive's peak memory before switch-root"
}

# The guest's SLAAC address on the rig: the prefix and GUEST_MAC's modified EUI-64.
RIG_SLAAC="fd00:2::5054:ff:fe12:3456"

t_standalone_v6_slaac() {
	# IPv6 only: no IPv4 on the segment; SLAAC from the RA's prefix, the default route via the
	# router, RDNSS and DNSSL; the image at a [v6] URL.
	rig_up --no-v4 --v6 slaac
	rig_sa_boot standalone-v6-slaac "$IMG/sa.img" \
		"ip=auto6 root=live:$RIG_URL6/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT"
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] && v6_booted &&
		check 'rustlive.*router advertisement on eth0 from fe80::' "the router advertisement" &&
		check "TESTROOT: inet6 eth0 $RIG_SLAAC/64" "the SLAAC address kept for the booted system" &&
		check 'TESTROOT: route6 default via fe80::' "the default route via the router" &&
		check 'rustlive.*network up in .*DNS fe80::[0-9a-f:]+%eth0' "the RDNSS server" &&
		check 'TESTROOT: lease6 .*"domains":\["rig.test"\]' "the DNSSL domain" &&
		check_not 'DHCPv6' "a DHCPv6 exchange" &&
		grep -q "^$RIG_SLAAC .*GET /root.squashfs HTTP/1.1\" 200" "$(rig_access_log)"
}

t_standalone_v6_dns() {
	# The image server by name: resolved through the RA's RDNSS (dnsmasq's link-local address,
	# written fe80::…%eth0 in resolv.conf) with the DNSSL domain searched.
	rig_up --no-v4 --v6 slaac
	rig_sa_boot standalone-v6-dns "$IMG/sa.img" \
		"ip=auto6 root=live:http://boot6:$RIG_PORT/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT"
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] && v6_booted &&
		grep -q "^$RIG_SLAAC .*GET /root.squashfs HTTP/1.1\" 200" "$(rig_access_log)"
}

t_standalone_dhcp6() {
	# DHCPv6 stateful: the RA says M and no A; the address comes from dnsmasq's reservation
	# for GUEST_MAC, its prefix length from the RA's on-link prefix.
	rig_up --no-v4 --v6 stateful
	rig_sa_boot standalone-dhcp6 "$IMG/sa.img" \
		"ip=dhcp6 root=live:$RIG_URL6/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs) rd.rustlive.secrets=$RIG_URL6/nodes/{mac}.json rd.rustlive.secrets.sha256=$(sha_of "nodes/$GUEST_MAC.json")" \
		300 'TESTROOT: done' "$SA_NOBOOT"
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] && v6_booted && secrets_ok &&
		grep -q "^fd00:2::15 .*GET /nodes/$GUEST_MAC.json HTTP/1.1\" 200" "$(rig_access_log)" &&
		check 'TESTROOT: inet6 eth0 fd00:2::15/64' "the DHCPv6 address" &&
		check 'TESTROOT: lease6 .*"mode":"stateful"' "the DHCPv6 lease" &&
		check 'TESTROOT: route6 default via fe80::' "the default route from the RA" &&
		check_not "$RIG_SLAAC" "a SLAAC address (the RA has no A flag)"
}

t_standalone_dual_stack() {
	# ip=dhcp ip=auto6: both families, the image over IPv6, DNS from both.
	rig_up --v6 stateless
	rig_sa_boot standalone-dual-stack "$IMG/sa.img" \
		"ip=dhcp ip=auto6 root=live:$RIG_URL6/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT"
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] && v6_booted &&
		check 'TESTROOT: inet eth0 10\.0\.2\.15/24' "the DHCPv4 address" &&
		check "TESTROOT: inet6 eth0 $RIG_SLAAC/64" "the SLAAC address" &&
		check 'TESTROOT: lease6 .*"mode":"stateless"' "the stateless DHCPv6 exchange (RA with O)" &&
		check 'TESTROOT: lease \{' "the DHCPv4 lease file"
}

t_standalone_dual_stack_no_v6() {
	# ip=dhcp ip=auto6 where no router advertises: IPv4 is up, IPv6 gets 15 s more, then the
	# node boots on IPv4 with a warning.
	rig_up --v6 off
	rig_sa_boot standalone-dual-stack-no-v6 "$IMG/sa.img" \
		"ip=dhcp ip=auto6 root=live:$RIG_URL4/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT"
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] && sa_booted &&
		check 'rustlive.*IPv6 not configured, going on with IPv4 only: no router advertisement on eth0' "the IPv6 warning"
}

t_standalone_v6_static() {
	# ip=[ADDR]::[GW]:PREFIX:HOST:IFACE:none on a segment with neither RA nor DHCPv6.
	rig_up --no-v4 --v6 off
	rig_sa_boot standalone-v6-static "$IMG/sa.img" \
		"ip=[fd00:2::99]::[fd00:2::2]:64:node1:eth0:none root=live:$RIG_URL6/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT"
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] && v6_booted &&
		check 'TESTROOT: inet6 eth0 fd00:2::99/64' "the static address" &&
		check 'TESTROOT: route6 default via fd00:2::2' "the static gateway" &&
		check_not 'router solicitation|DHCPv6 \(' "router discovery or DHCPv6"
}

t_standalone_no_dhcp6() {
	# ip=dhcp6 on a segment with no DHCPv6 server: the reason, then the failure policy.
	rig_up --no-v4 --v6 off
	rig_sa_boot standalone-no-dhcp6 "$IMG/sa.img" "ip=dhcp6 root=live:$RIG_URL6/root.squashfs rd.rustlive.timeout=15" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic'
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] &&
		check 'rustlive.*no DHCPv6 answer on eth0 after [0-9]+ s \(sent [0-9]+ SOLICIT\)' "the reason"
}

t_standalone_no_ra() {
	# IPv6 only on a segment with no router: the reason, then the failure policy.
	rig_up --no-v4 --v6 off
	rig_sa_boot standalone-no-ra "$IMG/sa.img" "ip=auto6 root=live:$RIG_URL6/root.squashfs rd.rustlive.timeout=15" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic'
	local rc=$?
	rig_down
	[ "$rc" -eq 0 ] &&
		check 'rustlive.*no router advertisement on eth0 after [0-9]+ s \(sent [0-9]+ router solicitations\)' "the reason"
}

t_dracut_nm_dhcp6() {
	# The dracut module with ip=dhcp6 on the IPv6-only segment: NetworkManager configures
	# DHCPv6, rustlive waits for a route to the [v6] image server and fetches.
	rig_up --no-v4 --v6 stateful
	LOG="$LOGS/dracut-nm-dhcp6.log"
	QEMU_NETNS=$RIG_NS qemu_start "$LOG" -kernel "$KERNEL" -initrd "$IMG/nm.img" \
		-append "console=ttyS0 ip=dhcp6 root=live:$RIG_URL6/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		-netdev "$(rig_tap tap0 n0)" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
	wait_serial "$LOG" 300 'TESTROOT: done' "$NOBOOT"
	local rc=$?
	rig_down
	# systemd's udev names the NIC (ens2); NetworkManager keeps the DHCPv6 address as a /128
	# and routes by the RA.
	[ "$rc" -eq 0 ] && booted && check 'TESTROOT: inet6 [a-z0-9]+ fd00:2::15/' "NetworkManager's DHCPv6 address" &&
		check 'rustlive.*fetched .* sha256' "rustlive's fetch over IPv6" &&
		grep -q '^fd00:2::15 .*GET /root.squashfs HTTP/1.1" 200' "$(rig_access_log)"
}

# --- compressed kernel modules (RHEL 8/9: .ko.xz and no in-kernel decompression) -------------

# sa-xz.img: the standalone initramfs from the xz-compressed copy of the module tree, and
# sa-xz+ko.img / sa-xz+badko.img: the same with e1000 put back compressed (intact, or cut in
# half) by an appended cpio, which replaces modules.dep with one naming e1000.ko.xz.
prepare_xz_modules() {
	local kver xz d m variant f
	kver=$(cat "$B/kernel/kver")
	xz=$(build_xz_kmods)
	SA_KMODDIR=$xz build_standalone sa-xz
	[ -s "$IMG/sa-xz+ko.img" ] && [ "$IMG/sa-xz+ko.img" -nt "$IMG/sa-xz.img" ] && return 0
	d="$B/xz-initrd"
	m="lib/modules/$kver"
	for variant in ko badko; do
		rm -rf "$d" && mkdir -p "$d/$m/kernel/drivers/net/ethernet/intel/e1000"
		zstd -dc "$IMG/sa-xz.img" | (cd "$d" && cpio -i --quiet "$m/modules.dep")
		sed -i 's#^\(kernel/drivers/net/ethernet/intel/e1000/e1000\.ko\):#\1.xz:#' "$d/$m/modules.dep"
		grep -q '^kernel/drivers/net/ethernet/intel/e1000/e1000\.ko\.xz:' "$d/$m/modules.dep" ||
			die "no e1000 line in the modules.dep of sa-xz.img"
		cp "$xz/kernel/drivers/net/ethernet/intel/e1000/e1000.ko.xz" "$d/$m/kernel/drivers/net/ethernet/intel/e1000/"
		f="$d/$m/kernel/drivers/net/ethernet/intel/e1000/e1000.ko.xz"
		[ "$variant" = ko ] || truncate -s $(($(stat -c %s "$f") / 2)) "$f"
		(cd "$d" && find lib | cpio -o -H newc --quiet -R 0:0) >"$B/xz-$variant.cpio"
		cat_initrds "$IMG/sa-xz+$variant.img" "$IMG/sa-xz.img" "$B/xz-$variant.cpio"
	done
	rm -rf "$d"
}

t_standalone_xz_modules() {
	# A kernel tree whose modules are .ko.xz (xz --check=crc32 --lzma2=dict=1MiB) for a kernel
	# that cannot decompress them: rustlive initramfs stores them decompressed, under the same
	# names and index as the plain tree's, so the archive is the plain tree's, byte for byte.
	prepare_xz_modules
	say "  initramfs from the .ko.xz tree: $(stat -c %s "$IMG/sa-xz.img") bytes; from the plain tree: $(stat -c %s "$IMG/sa.img") bytes"
	grep -q 'stored decompressed' "$IMG/sa-xz.log" || {
		say "  the build did not say it decompressed modules: $(cat "$IMG/sa-xz.log")"
		return 1
	}
	! zstd -dc "$IMG/sa-xz.img" | cpio -it --quiet | grep -E '\.ko\.(xz|zst|gz)$' || {
		say "  compressed modules left in sa-xz.img"
		return 1
	}
	cmp -s "$IMG/sa-xz.img" "$IMG/sa.img" || {
		say "  sa-xz.img differs from sa.img"
		return 1
	}
	sa_boot standalone-xz-modules "$IMG/sa-xz.img" "root=live:$URL/nested.squashfs rd.live.image rd.rustlive.sha256=$(sha_of nested.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT" -netdev "user,id=n0" -device "e1000,netdev=n0,mac=$GUEST_MAC" &&
		sa_booted && check 'rustlive.*loaded kernel modules: e1000([^e]|$)' "e1000 loaded by modalias" &&
		check 'rustlive.*loaded kernel modules: .*ext4' "ext4 (the nested image) loaded beside the network"
}

t_standalone_compressed_module() {
	# A compressed module inside the initramfs anyway (appended by hand): the kernel refuses
	# it (EOPNOTSUPP), rustlive decompresses it and loads it with init_module. Cut in half, it
	# is reported as a driver that did not load, never as a missing one.
	prepare_xz_modules
	sa_boot standalone-compressed-module "$IMG/sa-xz+ko.img" "root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT" -netdev "user,id=n0" -device "e1000,netdev=n0,mac=$GUEST_MAC" &&
		sa_booted &&
		check 'rustlive.*the kernel cannot decompress modules itself \(it refused e1000\.ko\.xz: [^)]*\(os error 95\)\); rustlive decompresses them' "the kernel's refusal and the fallback" &&
		check 'rustlive.*loaded kernel modules: e1000([^e]|$)' "e1000 loaded, decompressed by rustlive" || return 1
	sa_boot standalone-corrupt-module "$IMG/sa-xz+badko.img" "root=live:$URL/root.squashfs" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic' -netdev "user,id=n0" -device "e1000,netdev=n0,mac=$GUEST_MAC" &&
		check 'rustlive.*network device .*PCI 8086:100e.*its driver e1000 is in this initramfs but did not load: cannot decompress module e1000 from .*e1000\.ko\.xz.*not valid xz data' "which module did not load, and why" &&
		check_not 'has no driver in this initramfs' "a missing-driver message for a driver that is there"
}
# The tested documentation: docs-site-workflow, docs-standalone-sealed.
# shellcheck source=qemu/docs.sh
. "$(dirname "$0")/docs.sh"

ALL="initramfs_cache_key happy_nm happy_networkd livenet_cmdline root_http_alias nested erofs hash_mismatch bad_cmdline bad_cmdline_shell server_late broken_transfer
secrets_initrd secrets_cat secrets_cat_plain secrets_https no_network signature_valid signature_missing pxe no_systemd
no_systemd_fail file_image no_systemd_file pid1_switch_root syslog_failure oci secrets_tpm secrets_tpm_other
standalone_virtio standalone_mirrors standalone_e1000 standalone_e1000e standalone_static standalone_hash_mismatch standalone_no_nic
standalone_no_driver standalone_no_dhcp standalone_pxe standalone_secrets_mtls standalone_tpm standalone_oci
debian_root debian_root_pxe
standalone_bond standalone_bond_no_carrier standalone_bootif standalone_ifname standalone_vlan_no_parent standalone_vlan standalone_vlan_untagged
standalone_rig_v4 standalone_v6_slaac standalone_v6_dns standalone_dhcp6 standalone_dual_stack standalone_dual_stack_no_v6 standalone_v6_static standalone_no_ra standalone_no_dhcp6 dracut_nm_dhcp6
standalone_xz_modules standalone_compressed_module
standalone_swarm_two_nodes dracut_swarm_two_nodes
docs_site_workflow docs_standalone_sealed"

# shellcheck disable=SC2086 # the default list is split on whitespace
[ $# -gt 0 ] || set -- $ALL
prepare "$@"
nginx_start main "$PORT" "$SSLPORT"
passed=0
failed=0
for t in "$@"; do
	t=${t//-/_}
	say "scenario ${t//_/-}"
	start=$SECONDS
	if "t_$t"; then
		passed=$((passed + 1))
		say "PASS ${t//_/-} ($((SECONDS - start)) s)"
	else
		failed=$((failed + 1))
		say "FAIL ${t//_/-} ($((SECONDS - start)) s), console: ${LOG:-none}"
		[ -n "${LOG:-}" ] && tail -n 15 "$LOG" | tr -d '\r' | sed 's/^/    | /' >&2
	fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
