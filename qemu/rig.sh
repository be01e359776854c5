#!/bin/bash
# shellcheck disable=SC2034 # the variables are used by the scripts that source this file
# The suite's network rig (sourced after lib.sh, never run): a private network namespace holding
# a bridge, the guests' tap devices on it, dnsmasq (DHCPv4, DHCPv6, router advertisements) and
# an nginx serving build/www on IPv4 and IPv6. Several guests share the one segment; nothing of
# it is visible to the host's own network. docs/developers/tests.md#the-network-rig says how a
# scenario uses it.
#
#   rig_up [--no-v4] [--v6 MODE] [--no-dns] [--dnsmasq-opt OPT]... [--no-nginx]
#   rig_tap NAME [ID]      a tap on the bridge; prints the QEMU -netdev for it
#   rig_port NAME          a veth pair: NAME on the bridge, NAME-p free in the namespace
#   rig_bg LOG CMD...      CMD in the namespace in the background, stopped by rig_down
#   rig_exec CMD...        CMD in the namespace
#   rig_qemu_start LOG ARGS...   qemu_start inside the namespace
#   rig_down               stops everything the rig started and deletes the namespace

RIG_NS=
RIG_DIR=
# The segment: the addresses slirp uses, so scenarios keep their URLs and assertions.
RIG_V4=10.0.2.2
RIG_V4_NODE=10.0.2.15
RIG_V6_PREFIX=fd00:2::
RIG_V6=fd00:2::2
RIG_DOMAIN=rig.test
RIG_PORT=8080
RIG_URL4="http://$RIG_V4:$RIG_PORT"
RIG_URL6="http://[$RIG_V6]:$RIG_PORT"
RIG_PIDS=()

rig_exec() { ip netns exec "$RIG_NS" "$@"; }

# Namespaces of earlier suites that died without their cleanup (kill -9): deleted when the
# suite that made them no longer runs.
rig_reap_stale() {
	local ns pid
	for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
		case $ns in rl-rig-*) ;; *) continue ;; esac
		pid=${ns#rl-rig-}
		kill -0 "$pid" 2>/dev/null && continue
		local p
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	# The logs of suites that are gone (a running suite's stay for its assertions).
	local d
	for d in "$B"/nginx/rig-* "$B"/rig/*; do
		[ -d "$d" ] || continue
		pid=${d##*/}
		pid=${pid#rig-}
		kill -0 "$pid" 2>/dev/null || rm -rf "$d"
	done
}

# rig_up [OPTIONS]: the namespace, the bridge, dnsmasq and nginx. Options:
#   --no-v4            no IPv4 on the segment at all (no address, no DHCPv4)
#   --v6 MODE          off (default): no IPv6 service (the bridge still has RIG_V6)
#                      slaac: RAs with the A flag, RDNSS and DNSSL, no DHCPv6
#                      stateless: RAs with A and O, DHCPv6 information-request answered
#                      stateful: RAs with M (no A), DHCPv6 addresses (IA_NA) and DNS
#                      slaac+stateful: RAs with A and M, both
#                      dhcp6-only: DHCPv6 addresses, no RA at all
#   --no-dns           no name service (dnsmasq's port 0); RDNSS/DHCP still name RIG_V6/RIG_V4
#   --dnsmasq-opt OPT  one more dnsmasq option (repeatable)
#   --no-nginx         no web server
# RIG_V4_NODE (10.0.2.15) is reserved for GUEST_MAC; other guests get 10.0.2.16-99.
rig_up() {
	local v4=1 v6=off dns=1 web=1 extra=()
	while [ $# -gt 0 ]; do
		case $1 in
		--no-v4) v4= ;;
		--v6)
			v6=$2
			shift
			;;
		--no-dns) dns= ;;
		--dnsmasq-opt)
			extra+=("$2")
			shift
			;;
		--no-nginx) web= ;;
		*) die "rig_up: unknown option $1" ;;
		esac
		shift
	done
	[ -z "$RIG_NS" ] || rig_down
	rig_reap_stale
	RIG_NS="rl-rig-$$"
	RIG_DIR="$B/rig/$$"
	RIG_PIDS=()
	rm -rf "$RIG_DIR" && mkdir -p "$RIG_DIR"
	ip netns add "$RIG_NS" || die "cannot create the network namespace $RIG_NS"
	rig_exec ip link set lo up
	# The namespace's own interfaces take no RA (dnsmasq's own, looped back, would give the
	# bridge a second address).
	rig_exec sysctl -qw net.ipv6.conf.default.accept_ra=0 net.ipv6.conf.default.autoconf=0
	# No STP, no forwarding delay, no multicast snooping: frames (RS, DHCPv6 to ff02::1:2)
	# pass as soon as a port is up.
	rig_exec ip link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
	# A port that is always up, so the bridge has carrier (and its link-local address, which
	# dnsmasq sends its RAs from) before any guest starts.
	rig_exec ip link add rigup0 type veth peer name rigup1
	rig_exec ip link set rigup0 master br0 up
	rig_exec ip link set rigup1 up
	rig_exec sysctl -qw net.ipv6.conf.rigup1.disable_ipv6=1
	[ -z "$v4" ] || rig_exec ip addr add "$RIG_V4/24" dev br0
	rig_exec ip -6 addr add "$RIG_V6/64" dev br0 nodad
	rig_exec ip link set br0 up
	# dnsmasq RAs only from a link-local address that passed DAD.
	local i
	for i in $(seq 50); do
		rig_exec ip -6 addr show dev br0 scope link | grep -q 'inet6 fe80' &&
			! rig_exec ip -6 addr show dev br0 | grep -q tentative && break
		sleep 0.1
	done
	local args=(--conf-file=/dev/null --keep-in-foreground --no-resolv --no-hosts --bind-interfaces
		--interface=br0 --except-interface=lo --log-facility="$RIG_DIR/dnsmasq.log" --log-dhcp
		--dhcp-leasefile="$RIG_DIR/leases" --dhcp-authoritative --domain="$RIG_DOMAIN"
		--pid-file="$RIG_DIR/dnsmasq.pid")
	if [ -n "$dns" ]; then
		# --local: the rig's domain is answered here only (NODATA for an A query on boot6, not
		# the SERVFAIL of a forward to no upstream, which musl's resolver takes as failure).
		args+=(--host-record="boot.$RIG_DOMAIN,$RIG_V4,$RIG_V6" --host-record="boot6.$RIG_DOMAIN,$RIG_V6"
			"--local=/$RIG_DOMAIN/")
	else
		args+=(--port=0 "--dhcp-option=option:dns-server,$RIG_V4" "--dhcp-option=option6:dns-server,[$RIG_V6]")
	fi
	[ -z "$v4" ] || args+=("--dhcp-range=10.0.2.16,10.0.2.99,255.255.255.0,1h"
		"--dhcp-host=$GUEST_MAC,$RIG_V4_NODE" "--dhcp-option=option:router,$RIG_V4")
	local p=$RIG_V6_PREFIX
	case $v6 in
	off) ;;
	slaac) args+=(--enable-ra --dhcp-range="$p,ra-only,64,1h") ;;
	stateless) args+=(--enable-ra --dhcp-range="$p,ra-stateless,64,1h") ;;
	stateful) args+=(--enable-ra --dhcp-range="${p}100,${p}1ff,64,1h" --dhcp-host="$GUEST_MAC,[${p}15]") ;;
	slaac+stateful) args+=(--enable-ra --dhcp-range="${p}100,${p}1ff,slaac,64,1h" --dhcp-host="$GUEST_MAC,[${p}15]") ;;
	dhcp6-only) args+=(--dhcp-range="${p}100,${p}1ff,64,1h" --dhcp-host="$GUEST_MAC,[${p}15]") ;;
	*) die "rig_up: unknown --v6 mode $v6" ;;
	esac
	# RAs every few seconds, a default route via the router for 30 minutes; DNSSL from
	# --domain (RDNSS names dnsmasq itself).
	case $v6 in off | dhcp6-only) ;; *) args+=("--ra-param=br0,10,1800" "--dhcp-option=option6:domain-search,$RIG_DOMAIN") ;; esac
	args+=("${extra[@]}")
	rig_exec dnsmasq "${args[@]}" >"$RIG_DIR/dnsmasq.out" 2>&1 &
	RIG_PIDS+=($!)
	for i in $(seq 50); do
		[ -s "$RIG_DIR/dnsmasq.pid" ] && break
		kill -0 "${RIG_PIDS[-1]}" 2>/dev/null || die "dnsmasq failed to start: $(cat "$RIG_DIR/dnsmasq.out" "$RIG_DIR/dnsmasq.log" 2>/dev/null)"
		sleep 0.1
	done
	[ -z "$web" ] || rig_nginx
	local shown=off
	[ -z "$v4" ] || shown="$RIG_V4/24"
	say "  rig $RIG_NS up: v4 $shown, v6 $v6 ($RIG_V6/64), http ${v4:+$RIG_URL4 }$RIG_URL6"
}

# rig_nginx: nginx in the namespace on RIG_PORT, v4 and v6, serving build/www (its prefix
# build/nginx/rig-PID, so nginx_stop_all stops it too).
rig_nginx() {
	local p="$B/nginx/rig-$$" i
	mkdir -p "$p/logs" "$p/tmp"
	: >"$p/logs/access.log"
	{
		echo "user $(id -un) $(id -gn); worker_processes 1; pid $p/nginx.pid; error_log $p/logs/error.log;"
		echo "events { worker_connections 64; }"
		echo "http { access_log $p/logs/access.log; client_body_temp_path $p/tmp;"
		echo "  proxy_temp_path $p/tmp; fastcgi_temp_path $p/tmp; uwsgi_temp_path $p/tmp; scgi_temp_path $p/tmp;"
		echo "  types { application/octet-stream squashfs img cpio; text/plain ipxe; application/json json; }"
		echo "  sendfile on;"
		echo "  server { listen $RIG_PORT; listen [::]:$RIG_PORT ipv6only=on; root $WWW; }"
		echo "}"
	} >"$p/nginx.conf"
	rig_exec nginx -p "$p" -c "$p/nginx.conf" -g 'daemon on;' 2>>"$p/logs/start.log" ||
		die "nginx in the rig failed to start (see $p/logs/start.log)"
	for i in $(seq 50); do
		rig_exec curl -fsS -o /dev/null "$RIG_URL6/SHA256SUMS" 2>/dev/null && return 0
		sleep 0.1
	done
	die "nginx in the rig does not answer on $RIG_URL6"
}

# The rig's nginx access log (for assertions on what the guests fetched).
rig_access_log() { echo "$B/nginx/rig-$$/logs/access.log"; }

# rig_tap NAME [ID]: a persistent tap device NAME (at most 15 characters) on the bridge; prints
# "tap,id=ID,ifname=NAME,..." (ID defaults to NAME) for QEMU's -netdev (QEMU must run in the
# namespace: rig_qemu_start, or QEMU_NETNS=$RIG_NS).
rig_tap() {
	rig_exec ip tuntap add dev "$1" mode tap
	rig_exec ip link set "$1" master br0 up
	echo "tap,id=${2:-$1},ifname=$1,script=no,downscript=no"
}

# rig_port NAME: a veth pair, NAME on the bridge and NAME-p up and free in the namespace, for a
# user-space frame endpoint (an AF_PACKET relay, a second bridge) to attach to the segment.
rig_port() {
	rig_exec ip link add "$1" type veth peer name "$1-p"
	rig_exec ip link set "$1" master br0 up
	rig_exec sysctl -qw "net.ipv6.conf.$1-p.disable_ipv6=1"
	rig_exec ip link set "$1-p" up
}

# rig_bg LOG CMD...: CMD in the namespace, in the background, output to LOG; stopped by
# rig_down. Sets RIG_BG_PID.
rig_bg() {
	local log=$1
	shift
	rig_exec "$@" >"$log" 2>&1 &
	RIG_BG_PID=$!
	RIG_PIDS+=("$RIG_BG_PID")
}

# rig_qemu_start LOG ARGS...: qemu_start with QEMU inside the namespace (its taps are there).
rig_qemu_start() { QEMU_NETNS=$RIG_NS qemu_start "$@"; }

# rig_down: never fails; safe to call twice and from the EXIT trap.
rig_down() {
	[ -n "$RIG_NS" ] || return 0
	local p
	nginx_stop "rig-$$" || true
	for p in "${RIG_PIDS[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	# Whatever else still runs in the namespace (a guest the scenario left, a relay's child).
	for p in $(ip netns pids "$RIG_NS" 2>/dev/null); do
		kill "$p" 2>/dev/null || true
	done
	for p in "${RIG_PIDS[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	RIG_PIDS=()
	ip netns del "$RIG_NS" 2>/dev/null || true
	RIG_NS=
}
