#!/bin/bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Peer-assisted boot scenarios (sourced by qemu/suite.sh after lib.sh and rig.sh, never run): two
# nodes on the rig boot the same image through BitTorrent, the second after the first has
# switched root, with opentracker in the rig's namespace and the rig's nginx as web seed. The
# first node's booted system shows its seeder (@rustlive-seed) and waits until it is gone.

# The second node's MAC (dnsmasq gives it an address from 10.0.2.16 on).
SWARM_MAC2=52:54:00:12:34:58
SWARM_TRACKER_PORT=6969

# build/www/swarm.squashfs and swarm.squashfs.torrent: the test root with an init that reports
# the seeder and, with swarm.hold on the command line, waits until it has exited.
build_swarm_image() {
	build_testroot
	local r="$B/swarmroot" key
	key=$({ declare -f build_swarm_image; cat "$B/testroot/.done"; sha256sum "$BIN"; } | sha256sum | cut -d' ' -f1)
	[ "$(cat "$r.done" 2>/dev/null)" = "$key" ] && [ -s "$WWW/swarm.squashfs.torrent" ] && return 0
	say "building swarm.squashfs and its torrent"
	rm -rf "$r" && cp -a "$B/testroot" "$r"
	rm -f "$r/.done"
	cat >"$r/sbin/init" <<-'EOF'
		#!/bin/sh
		# Swarm test root: what the booted system sees of the seeder, then power off (with
		# swarm.hold: once the seeder has exited on its own).
		export PATH=/bin:/sbin
		mount -t proc proc /proc 2>/dev/null
		echo "TESTROOT: init running"
		. /etc/os-release
		echo "TESTROOT: os-release $PRETTY_NAME"
		echo "TESTROOT: root fs $(awk '$2 == "/" { t = $3 } END { print t }' /proc/mounts)"
		pid=$(cat /run/rustlive/seed.pid 2>/dev/null)
		echo "SWARM: seed.pid ${pid:-none}"
		if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
			echo "SWARM: seeder argv $(tr '\0' ' ' <"/proc/$pid/cmdline")"
			echo "SWARM: seeder uid $(awk '/^Uid:/ { print $2, $3, $4 }' "/proc/$pid/status") groups [$(awk '/^Groups:/ { $1 = ""; print }' "/proc/$pid/status")]"
			echo "SWARM: seeder nonewprivs $(awk '/^NoNewPrivs:/ { print $2 }' "/proc/$pid/status") root $(readlink "/proc/$pid/root") cgroup $(tr '\n' ' ' <"/proc/$pid/cgroup")"
			echo "SWARM: seeder memory $(awk '/^(VmPeak|VmSize|VmHWM|VmRSS|Threads):/ { printf "%s %s %s ", $1, $2, $3 }' "/proc/$pid/status")"
			echo "SWARM: seeder files $(for f in /proc/"$pid"/fd/*; do readlink "$f"; done | sed 's/:\[[0-9]*\]//' | sort | uniq -c | tr -s ' \n' ' ')"
			echo "SWARM: ps $(ps -o pid,user,args 2>/dev/null | grep '[@]rustlive-seed' | tr -s ' ')"
		fi
		case " $(cat /proc/cmdline) " in
		*" swarm.stop "*)
			# Stopped early, as booted-node.md says.
			kill "$(cat /run/rustlive/seed.pid)"
			n=0
			while [ -d "/proc/$pid" ] && [ "$n" -lt 50 ]; do
				sleep 0.2
				n=$((n + 1))
			done
			[ -d "/proc/$pid" ] && echo "SWARM: seeder still running after kill" || echo "SWARM: seeder stopped by kill"
			;;
		*" swarm.hold "*)
			n=0
			while [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$n" -lt 900 ]; do
				sleep 1
				n=$((n + 1))
				# By then node 2 has downloaded from it.
				[ "$n" -ne 90 ] || echo "SWARM: seeder memory after 90s $(awk '/^(VmPeak|VmHWM|Threads):/ { printf "%s %s %s ", $1, $2, $3 }' "/proc/$pid/status")"
			done
			if [ -n "$pid" ] && [ -d "/proc/$pid" ]; then
				echo "SWARM: seeder still running after ${n}s"
			else
				echo "SWARM: seeder gone after ${n}s"
			fi
			;;
		esac
		echo "TESTROOT: done"
		sync
		poweroff -f
	EOF
	chmod 0755 "$r/sbin/init"
	mksquashfs "$r" "$WWW/swarm.squashfs" -comp zstd -noappend -quiet >/dev/null
	rm -f "$WWW/swarm.squashfs.torrent"
	"$BIN" torrent create "$WWW/swarm.squashfs" --tracker "http://$RIG_V4:$SWARM_TRACKER_PORT/announce" \
		-o "$WWW/swarm.squashfs.torrent" >/dev/null
	echo "$key" >"$r.done"
}

# swarm_two_nodes NAME INITRD EXTRA-CMDLINE TIMEOUT: node 1 boots and shares; once its root is
# switched (its test root reports the seeder), node 2 boots the same image; then node 1 waits for
# its seeder to exit. Consoles: build/logs/NAME-1.log and NAME-2.log.
swarm_two_nodes() {
	local name=$1 initrd=$2 extra=$3 timeout=$4 hash cmd rc=0 n1 end
	build_swarm_image
	hash=$("$BIN" torrent show "$WWW/swarm.squashfs.torrent" | awk '/info-hash/ { print $NF }')
	rig_up --v6 off
	echo "$hash" >"$RIG_DIR/whitelist"
	rig_bg "$RIG_DIR/opentracker.log" opentracker -i "$RIG_V4" -p "$SWARM_TRACKER_PORT" \
		-P "$SWARM_TRACKER_PORT" -d / -w "$RIG_DIR/whitelist"
	cmd="rd.rustlive.torrent=torrent://$RIG_V4:$RIG_PORT/swarm.squashfs.torrent rd.rustlive.url=$RIG_URL4/swarm.squashfs rd.rustlive.sha256=$(sha_of swarm.squashfs) rd.rustlive.seed=150s $extra"
	LOG="$LOGS/$name-1.log"
	rig_qemu_start "$LOG" -kernel "$KERNEL" -initrd "$initrd" -append "console=ttyS0 $cmd swarm.hold" \
		-netdev "$(rig_tap tap0 n0)" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
	n1=$QEMU_PID
	BG_PID=$n1
	end=$((SECONDS + timeout))
	until grep -q 'SWARM: seed.pid' "$LOG"; do
		if [ "$SECONDS" -ge "$end" ] || ! kill -0 "$n1" 2>/dev/null || grep -Eq "$NOBOOT|$SA_NOBOOT" "$LOG"; then
			say "  node 1 did not reach its booted system"
			rc=1
			break
		fi
		sleep 1
	done
	if [ "$rc" -eq 0 ]; then
		say "  node 1 switched root; booting node 2"
		LOG="$LOGS/$name-2.log"
		rig_qemu_start "$LOG" -kernel "$KERNEL" -initrd "$initrd" -append "console=ttyS0 $cmd swarm.stop" \
			-netdev "$(rig_tap tap1 n1)" -device "virtio-net-pci,netdev=n1,mac=$SWARM_MAC2"
		wait_serial "$LOG" "$timeout" 'TESTROOT: done' "$NOBOOT|$SA_NOBOOT" || rc=1
	fi
	LOG="$LOGS/$name-1.log"
	QEMU_PID=$n1
	wait_serial "$LOG" "$timeout" 'TESTROOT: done' "$NOBOOT|$SA_NOBOOT" || rc=1
	BG_PID=
	rig_down
	[ "$rc" -eq 0 ] && swarm_checks "$name"
}

# swarm_checks NAME: what both consoles and nginx's access log must show.
swarm_checks() {
	local name=$1 size n2_bytes
	size=$(stat -c %s "$WWW/swarm.squashfs")
	LOG="$LOGS/$name-1.log"
	check 'TESTROOT: root fs overlay' "node 1's overlay root" &&
		check 'rustlive.*root ready on .*from the swarm: .* from peers, .*verified by the pinned sha256' "node 1's root-ready line with its sources" &&
		check 'rustlive.*sharing the image after switch-root for 150 s on port 6881 .* as @rustlive-seed \(pid [0-9]+\)' "node 1 starting its seeder" &&
		check 'SWARM: seeder argv @rustlive-seed seed-image ' "the seeder's argv[0] in the booted system" &&
		check 'SWARM: seeder uid 65534 65534 65534 groups \[ *\]' "the seeder as nobody with no groups" &&
		check 'SWARM: seeder nonewprivs 1 root /run/rustlive/seed-root ' "the seeder with no_new_privs, in its empty root" &&
		check 'SWARM: ps +[0-9]+ [a-z0-9]+ (\{rustlive\} )?@rustlive-seed' "ps showing @rustlive-seed" &&
		check 'SWARM: seeder gone after' "the seeder gone after rd.rustlive.seed" || return 1
	say "  node 1 seeder: $(grep -a 'SWARM: seeder files' "$LOG" | tr -d '\r')"
	say "  node 1 seeder: $(grep -a 'SWARM: seeder memory' "$LOG" | tr -d '\r' | tr '\n' ' ')"
	say "  node 1 seeder: $(grep -a 'SWARM: seeder gone' "$LOG" | tr -d '\r')"
	LOG="$LOGS/$name-2.log"
	check 'TESTROOT: root fs overlay' "node 2's overlay root" &&
		check 'rustlive.*root ready on .*from the swarm' "node 2's root-ready line" &&
		check 'SWARM: seeder argv @rustlive-seed ' "node 2's seeder running in its booted system" &&
		check 'SWARM: seeder stopped by kill' "node 2's seeder stopped early with kill \$(cat /run/rustlive/seed.pid)" || return 1
	say "  node 2: $(grep -ao 'fetched .*from the swarm: [^;]*' "$LOG" | head -1)"
	# nginx's bytes of the image for anyone but node 1 (10.0.2.15): node 2's, at most 20 %.
	n2_bytes=$(awk -v n1="$RIG_V4_NODE" '$1 != n1 && $7 ~ /^\/swarm\.squashfs$/ { s += $10 } END { print s + 0 }' "$(rig_access_log)")
	say "  nginx served node 2 $n2_bytes of $size image bytes"
	[ $((n2_bytes * 5)) -le "$size" ] || {
		say "  node 2 took more than 20 % of the image from nginx"
		return 1
	}
}

t_standalone_swarm_two_nodes() {
	swarm_two_nodes standalone-swarm-two-nodes "$IMG/sa.img" "$SA_ARGS" 400
}

t_dracut_swarm_two_nodes() {
	swarm_two_nodes dracut-swarm-two-nodes "$IMG/nm.img" "" 500
}
