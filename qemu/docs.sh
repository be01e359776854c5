#!/bin/bash
# shellcheck disable=SC2034,SC2154 # LOG is read by qemu/suite.sh; top, B, … come from qemu/lib.sh
# The tested documentation (sourced by qemu/suite.sh): the command blocks of the admins' pages,
# marked `<!-- test: LABEL -->` and printed by examples/doc_blocks.rs, run as written, as root,
# in a private mount namespace whose /srv (a scratch directory), /etc and /root (overlays on the
# host's, writes kept in the scratch directory) stand for a Debian 12 boot server, with umask
# 077; nginx serves the docs' web root from the docs' own server block; QEMU boots a node
# through the docs' iPXE script, and the node is checked over ssh. Everything under
# build/docs/; the docs' mmdebstrap is cached by qemu/docs-bin/mmdebstrap.

DOCS="$B/docs"
DOCS_PORT=$(free_port)
# What the node calls the boot server (slirp's view of the host's 127.0.0.1).
DOCS_BASE="http://10.0.2.2:$DOCS_PORT"

# doc_blocks FILE LABEL [FROM=TO]...: the marked blocks of a page, site names substituted.
doc_blocks() {
	cargo run --quiet --manifest-path "$top/Cargo.toml" --example doc_blocks -- "$top/$1" "${@:2}"
}

# docs_in CMD...: CMD inside the docs' mount namespace, with the boot server's PATH (the
# suite's rustlive and the caching mmdebstrap first).
docs_in() {
	nsenter -t "$DOCS_NS" -m -- env PATH="$DOCS/bin:$top/qemu/docs-bin:/usr/sbin:/usr/bin:/sbin:/bin" \
		DOCS_CACHE="$B/docs-cache/mmdebstrap" DOCS_SCRATCH="$DOCS" "$@"
}

docs_stop() {
	[ -n "${DOCS_NS:-}" ] || return 0
	nginx_stop docs
	kill "$DOCS_NS" 2>/dev/null || true
	wait "$DOCS_NS" 2>/dev/null || true
	DOCS_NS=
}

# docs_run FILE LABEL: runs the page's blocks in the namespace, traced into
# build/logs/docs-LABEL.run.log; fails with the failing command's trace.
docs_run() {
	local file=$1 label=$2 script="$DOCS/${2// /-}.sh" log="$LOGS/docs-${2// /-}.run.log"
	# The trace shows the time of each command (where a slow step spends it).
	{
		# shellcheck disable=SC2016 # expanded by the traced shell
		echo 'PS4='"'"'+ $(date +%T) '"'"
		doc_blocks "$file" "$label" || return 1
	} >"$script" || return 1
	say "  running the blocks of $file ($label)"
	if ! docs_in sh -c "cd '$DOCS/cwd' && umask 077 && exec bash -eux -o pipefail '$script'" >"$log" 2>&1; then
		say "  a command of $file failed (see $log):"
		tail -n 15 "$log" | sed 's/^/    | /' >&2
		return 1
	fi
}

# docs_setup: a fresh boot server (once per suite run): the namespace, the admin's ssh key,
# nginx with the docs' server block, then the site workflow's blocks.
docs_setup() {
	[ -n "${DOCS_READY:-}" ] && return 0
	docs_stop
	local debs deb
	debs=("$B"/packages/rustlive_*_amd64.deb)
	deb=${debs[0]}
	if ! [ -e "$deb" ] || [ "$BIN" -nt "$deb" ]; then
		say "  building the packages (scripts/build-packages.sh)"
		"$top/scripts/build-packages.sh" >"$LOGS/docs-packages.log" 2>&1 || {
			tail -n 15 "$LOGS/docs-packages.log" >&2
			return 1
		}
		debs=("$B"/packages/rustlive_*_amd64.deb)
		deb=${debs[0]}
	fi
	rm -rf "$DOCS"
	mkdir -p "$DOCS"/{srv,etc/upper,etc/work,root/upper,root/work,cwd,bin}
	ln -s "$deb" "$DOCS/cwd/"
	ln -s "$BIN" "$DOCS/bin/rustlive"
	unshare -m --propagation private sleep infinity &
	DOCS_NS=$!
	trap 'docs_stop; cleanup' EXIT
	sleep 0.2
	docs_in sh -ec "
		mount --bind '$DOCS/srv' /srv
		mount -t overlay overlay -o lowerdir=/etc,upperdir='$DOCS/etc/upper',workdir='$DOCS/etc/work' /etc
		mount -t overlay overlay -o lowerdir=/root,upperdir='$DOCS/root/upper',workdir='$DOCS/root/work' /root
		# The admin's key (never the host's own): what the docs put in authorized_keys.
		rm -f /root/.ssh/id_ed25519 /root/.ssh/id_ed25519.pub
		install -d -m 0700 /root/.ssh
		ssh-keygen -q -t ed25519 -N '' -C docs-admin -f /root/.ssh/id_ed25519
	" || return 1
	# nginx as a site runs it (workers as www-data), with the docs' server block.
	local p="$B/nginx/docs"
	rm -rf "$p" && mkdir -p "$p/logs" "$p/tmp"
	{
		echo "user www-data; worker_processes 1; pid $p/nginx.pid; error_log $p/logs/error.log;"
		echo "events { worker_connections 64; }"
		echo "http { access_log $p/logs/access.log; client_body_temp_path $p/tmp;"
		echo "  proxy_temp_path $p/tmp; fastcgi_temp_path $p/tmp; uwsgi_temp_path $p/tmp; scgi_temp_path $p/tmp;"
		echo "  include /etc/nginx/mime.types; sendfile on;"
		doc_blocks docs/admins/site-workflow.md "site-workflow nginx" \
			"listen 80;=listen 127.0.0.1:$DOCS_PORT;" "10.0.0.0/16=127.0.0.1" || return 1
		echo "}"
	} >"$p/nginx.conf"
	docs_in nginx -p "$p" -c "$p/nginx.conf" -g 'daemon on;' 2>"$p/logs/start.log" || {
		cat "$p/logs/start.log" >&2
		return 1
	}
	docs_run docs/admins/site-workflow.md site-workflow || return 1
	doc_blocks docs/admins/site-workflow.md "site-workflow ipxe" "http://boot.site=$DOCS_BASE" \
		>"$DOCS/srv/www/boot.ipxe" || return 1
	chmod 0644 "$DOCS/srv/www/boot.ipxe"
	DOCS_READY=1
}

# docs_boot NAME IPXE-URL [QEMU-ARGS...]: PXE-boots the node through that script (QEMU's
# iPXE ROM, slirp's DHCP naming the script as the boot file) with sshd forwarded to
# 127.0.0.1:DOCS_SSH, and checks it over ssh as the docs' admin: exactly the host keys build-all
# made for n001, munge working with the cluster's key at 0400 munge:munge, the system running
# on the overlay, and booted-node.md's findmnt showing rustlive's mounts. The boot log must
# name what verified the image.
docs_boot() {
	local name=$1 url=$2 rc=0 keys want state key
	shift 2
	DOCS_SSH=$(free_port)
	LOG="$LOGS/$name.log"
	local ssh=(ssh -q -p "$DOCS_SSH" -i "$DOCS/root/upper/.ssh/id_ed25519" -o IdentitiesOnly=yes
		-o BatchMode=yes -o ConnectTimeout=60 -o StrictHostKeyChecking=yes
		-o UserKnownHostsFile="$DOCS/known_hosts" root@127.0.0.1)
	want=$(cat "$DOCS"/srv/nodes/n001/etc/ssh/ssh_host_*_key.pub | cut -d' ' -f1-2 | sort)
	while read -r key; do echo "[127.0.0.1]:$DOCS_SSH $key"; done <<<"$want" >"$DOCS/known_hosts"
	qemu_start "$LOG" -boot n "$@" \
		-netdev "user,id=n0,bootfile=$url,hostfwd=tcp:127.0.0.1:$DOCS_SSH-:22" \
		-device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
	wait_console "$LOG" 600 'login:' "$NOBOOT|$SA_NOBOOT|reboot: Restarting" || {
		say "  no login prompt on the console"
		rc=1
	}
	if [ "$rc" -eq 0 ]; then
		# One key type per scan, each retried until sshd answers (see debian_run).
		keys=$(end=$((SECONDS + 300)); for type in ed25519 ecdsa rsa; do
			while [ "$SECONDS" -lt "$end" ]; do
				out=$(ssh-keyscan -T 30 -t "$type" -p "$DOCS_SSH" 127.0.0.1 2>/dev/null) &&
					[ -n "$out" ] && echo "$out" && break
				sleep 3
			done
		done | cut -d' ' -f2- | sort)
		[ "$keys" = "$want" ] || {
			say "  ssh-keyscan returned: ${keys:-nothing}; build-all made: $want"
			rc=1
		}
	fi
	if [ "$rc" -eq 0 ]; then
		{
			cat <<-'EOF'
				timeout 240 systemctl is-system-running --wait
				echo "munge $(systemctl is-active munge)"
				stat -c 'key %a %U:%G' /etc/munge/munge.key
				echo "keysum $(sha256sum </etc/munge/munge.key | cut -d' ' -f1)"
				munge -n | unmunge | grep '^STATUS'
				echo "root $(findmnt -no FSTYPE /)"
			EOF
			doc_blocks docs/operators/booted-node.md booted-node
		} | "${ssh[@]}" sh -s >"$LOGS/$name.ssh" 2>&1 || true
		sed 's/^/    node: /' "$LOGS/$name.ssh" >&2
		state=$(head -n1 "$LOGS/$name.ssh")
		case "$state" in
		running | degraded) ;;
		*) say "  systemctl is-system-running: ${state:-no answer}" && rc=1 ;;
		esac
		grep -qx 'munge active' "$LOGS/$name.ssh" || { say "  munged is not active" && rc=1; }
		grep -qx 'key 400 munge:munge' "$LOGS/$name.ssh" || { say "  munge key not 0400 munge:munge" && rc=1; }
		grep -qx "keysum $(sha256sum <"$DOCS/srv/nodes/_common/etc/munge/munge.key" | cut -d' ' -f1)" \
			"$LOGS/$name.ssh" || { say "  the munge key is not the cluster's" && rc=1; }
		grep -q '^STATUS: *Success' "$LOGS/$name.ssh" || { say "  munge -n | unmunge failed" && rc=1; }
		grep -qx 'root overlay' "$LOGS/$name.ssh" || { say "  / is not the overlay" && rc=1; }
		grep -Eq '^/run/rustlive/mnt/image +/dev/loop[0-9]+ +squashfs' "$LOGS/$name.ssh" ||
			{ say "  booted-node.md's findmnt does not show the image's mount" && rc=1; }
	fi
	kill "$QEMU_PID" 2>/dev/null || true
	wait "$QEMU_PID" 2>/dev/null || true
	QEMU_PID=
	[ "$rc" -eq 0 ] && check 'rustlive.*; verified by .*minisign signature by key [0-9A-F]{16} \(site\.pub\)' \
		"the boot log naming the image's signature key" &&
		check 'rustlive.*secrets: wrote /etc/munge/munge\.key \(mode 0400' "the munge key written 0400" &&
		check 'rustlive.*secrets: wrote /root/\.ssh/authorized_keys \(mode 0600' "the admin's key written" &&
		check 'rustlive.*secrets: installed 8 files into /sysroot' "the node's 8 files (6 host key files)"
}

t_docs_site_workflow() {
	# docs/admins/site-workflow.md as written: the image by mmdebstrap with the image's own
	# dracut, published world-readable and signed, build-all as www-data, nginx's server block,
	# and the iPXE script with the plain per-node initrd.
	docs_setup || return 1
	docs_boot docs-site-workflow "$DOCS_BASE/boot.ipxe" || return 1
	local log="$B/nginx/docs/logs/access.log"
	grep -Eq "GET /secrets/by-mac/($GUEST_MAC|${GUEST_MAC//:/%3A})\.cpio HTTP/1\.1\" 200" "$log" || {
		say "  nginx did not serve the node's initrd"
		return 1
	}
	grep -q 'GET /images/compute.squashfs.minisig HTTP/1.1" 200' "$log" || {
		say "  the node did not fetch the image's signature"
		return 1
	}
}

# docs_swtpm ARGS...: node n001's TPM, a swtpm with a manufactured EK (and its certificate)
# under build/tpm/docs-n001, made once; sets DOCS_TPM_PID.
docs_swtpm() {
	local d="$B/tpm/docs-n001"
	if ! [ -s "$d/state/tpm2-00.permall" ]; then
		rm -rf "$d" && mkdir -p "$d/state"
		swtpm_setup --tpm2 --tpmstate "$d/state" --create-ek-cert --lock-nvram --overwrite \
			>"$d/setup.log" 2>&1 || return 1
	fi
	swtpm socket --tpm2 --tpmstate "dir=$d/state" "$@" >>"$d/swtpm.log" 2>&1 &
	DOCS_TPM_PID=$!
}

docs_swtpm_stop() {
	kill "${DOCS_TPM_PID:-}" 2>/dev/null || true
	wait "${DOCS_TPM_PID:-}" 2>/dev/null || true
	DOCS_TPM_PID=
}

t_docs_standalone_sealed() {
	# docs/admins/sealing.md's walkthrough after the site workflow: the signing key into the
	# image, the standalone initramfs of standalone-initramfs.md, the EK enrolled by
	# `rustlive tpm ek` and stored unedited, build-all --seal-to as root, and the iPXE script,
	# booted with n001's TPM.
	docs_setup || return 1
	local d="$B/tpm/docs-n001" port rc=0
	port=$(free_port)
	docs_swtpm --flags not-need-init,startup-clear --server "type=tcp,port=$port,bindaddr=127.0.0.1" || return 1
	for _ in $(seq 40); do
		ss -Htln "sport = :$port" | grep -q . && break
		sleep 0.25
	done
	docs_run docs/admins/sealing.md "sealing key" &&
		docs_run docs/admins/standalone-initramfs.md standalone &&
		RUSTLIVE_TPM="swtpm:127.0.0.1:$port" docs_run docs/admins/sealing.md sealing || rc=1
	docs_swtpm_stop
	[ "$rc" -eq 0 ] || return 1
	doc_blocks docs/admins/sealing.md "sealing ipxe" "http://boot.site=$DOCS_BASE" \
		>"$DOCS/srv/www/standalone.ipxe" || return 1
	chmod 0644 "$DOCS/srv/www/standalone.ipxe"
	rm -f "$d/sock"
	docs_swtpm --ctrl "type=unixio,path=$d/sock" || return 1
	for _ in $(seq 40); do
		[ -S "$d/sock" ] && break
		sleep 0.25
	done
	docs_boot docs-standalone-sealed "$DOCS_BASE/standalone.ipxe" \
		-chardev "socket,id=chrtpm,path=$d/sock" -tpmdev "emulator,id=tpm0,chardev=chrtpm" \
		-device "tpm-tis,tpmdev=tpm0" || rc=1
	docs_swtpm_stop
	[ "$rc" -eq 0 ] &&
		check 'signed by the trusted key' "the boot server's signature checked first" &&
		check 'sealed bundle opened with this node' "the bundle opened by the node's TPM"
}
