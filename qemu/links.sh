#!/bin/bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# Link scenarios of the standalone initramfs (sourced by qemu/suite.sh after lib.sh and rig.sh,
# never run): bonds, BOOTIF=, ifname=, a tagged VLAN, and their failures. Several NICs on one
# guest, some of them switched off through the QEMU monitor (`set_link`), which listens on two
# FIFOs (build/logs/NAME.mon.in/.out) so that plain shell can drive it.

# The second NIC's MAC (the first is GUEST_MAC unless a scenario says otherwise).
LINKS_MAC2=52:54:00:12:34:57

# mon_args NAME: QEMU arguments for a monitor on build/logs/NAME.mon.{in,out}.
mon_args() {
	local p="$LOGS/$1.mon"
	rm -f "$p.in" "$p.out"
	mkfifo "$p.in" "$p.out"
	printf '%s\n' -chardev "pipe,id=mon0,path=$p" -mon "chardev=mon0,mode=readline"
}

# mon NAME COMMAND: one monitor command (QEMU holds both FIFOs open from its start; the
# timeout only guards against a QEMU that died before opening them).
mon() {
	# shellcheck disable=SC2016 # expanded by the inner sh
	timeout 10 sh -c 'printf "%s\n" "$2" >"$1.in"' _ "$LOGS/$1.mon" "$2"
}

# links_boot NAME CMDLINE TIMEOUT OK FAIL [MONITOR-COMMAND...] -- QEMU-NET-ARGS...: a standalone
# boot with the given NICs, the monitor commands sent as soon as QEMU runs (before the guest's
# kernel starts).
links_boot() {
	local name=$1 cmdline=$2 timeout=$3 ok=$4 fail=$5 cmds=() m
	shift 5
	while [ $# -gt 0 ] && [ "$1" != -- ]; do
		cmds+=("$1")
		shift
	done
	[ $# -eq 0 ] || shift
	local monargs
	mapfile -t monargs < <(mon_args "$name")
	LOG="$LOGS/$name.log"
	qemu_start "$LOG" -kernel "$KERNEL" -initrd "$IMG/sa.img" -append "console=ttyS0 $SA_ARGS $cmdline" \
		"${monargs[@]}" "$@"
	for m in "${cmds[@]}"; do
		mon "$name" "$m" || say "  monitor command '$m' not delivered"
	done
	wait_serial "$LOG" "$timeout" "$ok" "$fail"
	local rc=$?
	rm -f "$LOGS/$name.mon.in" "$LOGS/$name.mon.out"
	return "$rc"
}

# Two virtio NICs on two slirps: eth0 (GUEST_MAC, netdev n0) and eth1 (LINKS_MAC2, n1).
# $1 and $2: extra -netdev options for n0 and n1 (",restrict=on").
two_nics() {
	printf '%s\n' -netdev "user,id=n0${1:-}" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC" \
		-netdev "user,id=n1${2:-}" -device "virtio-net-pci,netdev=n1,mac=$LINKS_MAC2"
}

# links_booted IFACE: the test root ran, with the address on IFACE kept for it.
links_booted() {
	booted && check 'rustlive.*network up in' "the network stage's summary" &&
		check "TESTROOT: inet $1 10\\.0\\.2\\.15/24" "the address on $1 kept for the booted system" &&
		check "TESTROOT: lease .*\"iface\":\"$1\"" "/run/rustlive/lease.json naming $1" &&
		check "TESTROOT: lease files .*lease-$1\\.json" "/run/rustlive/lease-$1.json" &&
		check 'rustlive.*VmHWM' "rustlive's peak memory before switch-root"
}

LINKS_ROOT() { echo "root=live:$URL/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)"; }

t_standalone_bond() {
	# Active-backup over two NICs whose first has no link from the start: the bond comes up on
	# the second, DHCP runs on the bond, the image comes through it.
	local net
	mapfile -t net < <(two_nics)
	links_boot standalone-bond "bond=bond0:eth0,eth1:mode=active-backup,miimon=100 $(LINKS_ROOT)" \
		300 'TESTROOT: done' "$SA_NOBOOT" "set_link n0 off" -- "${net[@]}" &&
		links_booted bond0 &&
		check 'rustlive.*loaded kernel modules: .*bonding' "bonding loaded" &&
		check 'rustlive.*bond bond0 \(ActiveBackup\) over eth0, eth1' "the bond and its slaves" &&
		check 'rustlive.*links with carrier: bond0' "the bond's carrier from its second slave" &&
		check 'TESTROOT: lease .*"created_links":\["bond0"\]' "the bond recorded for the booted system" &&
		check 'TESTROOT: links .*bond0' "the bond kept for the booted system" &&
		check_not 'TESTROOT: inet eth' "an address on a slave"
}

t_standalone_bond_no_carrier() {
	# Neither slave has a link: one sentence naming the bond and its slaves, then the policy.
	local net
	mapfile -t net < <(two_nics)
	links_boot standalone-bond-no-carrier "bond=bond0:eth0,eth1:mode=802.3ad rd.rustlive.timeout=60 $(LINKS_ROOT)" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic' "set_link n0 off" "set_link n1 off" -- "${net[@]}" &&
		check 'rustlive.*bond bond0 has no carrier after [0-9]+ s: no slave \(eth0, eth1\) has a link' "the bond's failure"
}

t_standalone_bootif() {
	# Two NICs; the first one's slirp is restricted (it answers DHCP, but never leads to the
	# image server). BOOTIF names the second: only it is configured.
	local net
	mapfile -t net < <(two_nics ,restrict=on)
	links_boot standalone-bootif "BOOTIF=01-${LINKS_MAC2//:/-} $(LINKS_ROOT)" \
		300 'TESTROOT: done' "$SA_NOBOOT" -- "${net[@]}" &&
		links_booted eth1 &&
		check "rustlive.*BOOTIF=01-${LINKS_MAC2//:/-}: eth1" "the interface BOOTIF names" &&
		check 'rustlive.*links with carrier: eth1[[:space:]]*$' "eth1 alone brought up" &&
		check_not 'TESTROOT: inet eth0' "an address on eth0"
}

t_standalone_ifname() {
	# ifname= renames before use; ip= then names the new name.
	links_boot standalone-ifname "ifname=lan0:$GUEST_MAC ip=lan0:dhcp $(LINKS_ROOT)" \
		300 'TESTROOT: done' "$SA_NOBOOT" -- \
		-netdev "user,id=n0" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC" &&
		links_booted lan0 && check 'rustlive.*renamed eth0 to lan0 \(ifname=\)' "the rename"
}

t_standalone_vlan_no_parent() {
	# A VLAN on an interface the node does not have: one sentence, then the policy.
	links_boot standalone-vlan-no-parent "vlan=vlan5:eth9 $(LINKS_ROOT)" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic' -- \
		-netdev "user,id=n0" -device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC" &&
		check 'rustlive.*VLAN vlan5: its parent interface eth9 does not exist \(present: eth0\)' "the missing parent"
}

# --- a tagged VLAN, on the network rig ----------------------------------------------------------

# The relay (examples/vlan-relay.rs) is built on first use with the suite's cargo settings.
VLAN_RELAY="${CARGO_TARGET_DIR:-$top/target}/debug/examples/vlan-relay"

# vlan_boot NAME VID CMDLINE TIMEOUT OK FAIL: the rig (DHCPv4 and nginx on its bridge) behind an
# 802.1Q port: the node's only NIC reaches the bridge through the relay, which passes frames
# tagged VID and drops every other one. Its counts end in build/logs/NAME.relay.log.
vlan_boot() {
	local name=$1 vid=$2 cmdline=$3 timeout=$4 ok=$5 fail=$6 i
	cargo build -q --example vlan-relay --manifest-path "$top/Cargo.toml" || die "cannot build the VLAN relay"
	rig_up --v6 off
	rig_tap tapv >/dev/null
	local rs="$LOGS/$name.relay.sock" qs="$LOGS/$name.qemu.sock" rlog="$LOGS/$name.relay.log"
	# The old log goes first: rig_bg's redirection truncates it only once the background job
	# runs, and the wait below must not read the last run's line.
	rm -f "$rs" "$qs" "$rlog"
	rig_bg "$rlog" "$VLAN_RELAY" --tap tapv --vid "$vid" --listen "$rs" --qemu "$qs"
	for i in $(seq 50); do
		grep -q 'between' "$rlog" 2>/dev/null && break
		sleep 0.1
	done
	grep -q 'between' "$rlog" || {
		rig_down
		say "  the VLAN relay did not start: $(cat "$rlog")"
		return 1
	}
	sa_boot "$name" "$IMG/sa.img" "$cmdline" "$timeout" "$ok" "$fail" \
		-netdev "dgram,id=n0,local.type=unix,local.path=$qs,remote.type=unix,remote.path=$rs" \
		-device "virtio-net-pci,netdev=n0,mac=$GUEST_MAC"
	local rc=$?
	rig_down
	rm -f "$rs" "$qs"
	# The relay's last counts, on the scenario's console log for the assertions.
	tail -n 1 "$rlog" | sed 's/^/RELAY: /' >>"$LOG"
	return "$rc"
}

t_standalone_vlan() {
	# vlan=vlan5:eth0: the VLAN gets the lease and carries the image; eth0 itself carries only
	# the VLAN's frames.
	vlan_boot standalone-vlan 5 "vlan=vlan5:eth0 root=live:$RIG_URL4/root.squashfs rd.rustlive.sha256=$(sha_of root.squashfs)" \
		300 'TESTROOT: done' "$SA_NOBOOT" &&
		links_booted vlan5 &&
		check 'rustlive.*loaded kernel modules: .*8021q' "8021q loaded" &&
		check 'rustlive.*VLAN vlan5 \(id 5\) on eth0' "the VLAN on its parent" &&
		check "rustlive.*DHCP from $RIG_V4" "the rig's DHCP server through the relay" &&
		check 'TESTROOT: lease .*"created_links":\["vlan5"\]' "the VLAN recorded for the booted system" &&
		check 'TESTROOT: links .*vlan5@eth0' "the VLAN kept for the booted system" &&
		check 'RELAY: .* [1-9][0-9]* tagged frames from the node forwarded' "tagged frames through the relay"
}

t_standalone_vlan_untagged() {
	# The same segment without vlan=: the untagged DISCOVERs are dropped, nothing answers.
	vlan_boot standalone-vlan-untagged 5 "rd.rustlive.timeout=20 root=live:$RIG_URL4/root.squashfs" \
		300 'rustlive failed: powering off' 'TESTROOT|Kernel panic' &&
		check 'rustlive.*no DHCP answer within [0-9]+ s: [0-9]+ DISCOVER/REQUEST on eth0' "no answer to untagged frames" &&
		check 'RELAY: .* 0 tagged frames from the node forwarded, [1-9][0-9]* dropped' "the untagged frames dropped"
}
