#!/bin/bash
# QEMU netboot suite: builds the test root, the initramfs images (dracut --add rustlive) and nginx
# instances under build/, then boots TCG guests and asserts on their serial consoles.
# Usage: qemu/suite.sh [SCENARIO...]   (default: all). The last line is "N passed, N failed".
set -eu
# shellcheck source=qemu/lib.sh
. "$(dirname "$0")/lib.sh"

prerequisites

prepare() {
	build_images
	build_secrets_initrd
	build_tls
	mkdir -p "$WWW/nodes"
	write_secrets_bundle "$WWW/nodes/$GUEST_MAC.json"
	install_module
	build_initramfs nm --add "rustlive network-manager" "${COMMON_DRACUT[@]}" \
		--include "$B/tls/ca.pem" /etc/rustlive/test-ca.pem
	build_initramfs networkd --add "rustlive systemd-networkd" "${COMMON_DRACUT[@]}"
	build_initramfs nm-keys --add "rustlive network-manager" "${COMMON_DRACUT[@]}" \
		--include "$B/keys/test.pub" /etc/rustlive/keys/test.pub
	# What a boot loader does with two initrds: the kernel looks for a cpio header only at a
	# 4-byte boundary, so the first archive is padded.
	cp "$IMG/nm.img" "$IMG/nm+secrets.img"
	truncate -s %4 "$IMG/nm+secrets.img"
	cat "$WWW/node-secrets.cpio" >>"$IMG/nm+secrets.img"
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
cleanup() {
	[ -n "${BG_PID:-}" ] && kill "$BG_PID" 2>/dev/null
	nginx_stop_all
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

t_pxe() {
	mkdir -p "$B/tftp" "$WWW/boot"
	ln -sf "$KERNEL" "$WWW/boot/vmlinuz"
	ln -sf "$IMG/nm.img" "$WWW/boot/initramfs.img"
	cat >"$B/tftp/boot.ipxe" <<-EOF
		#!ipxe
		kernel $URL/boot/vmlinuz console=ttyS0 root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)
		initrd $URL/boot/initramfs.img
		initrd $URL/node-secrets.cpio
		boot
	EOF
	LOG="$LOGS/pxe.log"
	qemu_start "$LOG" -boot n -netdev "user,id=n0,tftp=$B/tftp,bootfile=boot.ipxe" \
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
	mapfile -t args < <(direct_boot_args "$IMG/nm.img" "$cmdline")
	LOG="$LOGS/$name.log"
	qemu_start "$LOG" "${args[@]}" -chardev "socket,id=chrtpm,path=$d/sock" \
		-tpmdev "emulator,id=tpm0,chardev=chrtpm" -device "tpm-tis,tpmdev=tpm0"
	wait_serial "$LOG" "$timeout" "$ok" "$fail" || rc=1
	kill "$tpm_pid" 2>/dev/null || true
	wait "$tpm_pid" 2>/dev/null || true
	return "$rc"
}

# A bundle sealed to node A's TPM, served over plain http by MAC.
tpm_sealed_bundle() {
	tpm_prepare node-a && tpm_prepare node-b || return 1
	[ -s "$WWW/nodes/$GUEST_MAC.sealed" ] && return 0
	write_secrets_bundle "$B/tpm/plain.json"
	"$BIN" bundle seal --ek "$B/tpm/node-a/ek.pem" "$B/tpm/plain.json" -o "$WWW/nodes/$GUEST_MAC.sealed"
	rm -f "$B/tpm/plain.json"
}

TPM_CMDLINE='rd.rustlive.secrets.sealed=required'

t_secrets_tpm() {
	tpm_sealed_bundle || return 1
	boot_tpm secrets-tpm node-a \
		"root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs) rd.rustlive.secrets=$URL/nodes/{mac}.sealed $TPM_CMDLINE" \
		300 'TESTROOT: done' "$NOBOOT" && booted && secrets_ok &&
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

ALL="initramfs_cache_key happy_nm happy_networkd livenet_cmdline root_http_alias nested erofs hash_mismatch bad_cmdline bad_cmdline_shell server_late broken_transfer
secrets_initrd secrets_https no_network signature_valid signature_missing pxe no_systemd
no_systemd_fail file_image no_systemd_file pid1_switch_root secrets_tpm secrets_tpm_other"

prepare
nginx_start main "$PORT" "$SSLPORT"
passed=0
failed=0
# shellcheck disable=SC2086 # the default list is split on whitespace
[ $# -gt 0 ] || set -- $ALL
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
