#!/bin/sh
# shellcheck disable=SC1091 # dracut-lib.sh and rustlive-lib.sh exist only inside the initramfs
# netroot handler for dracut without systemd: called as "rustliveroot IFACE NETROOT NEWROOT" once
# an interface is up. Assembles $NEWROOT, or applies rd.rustlive.onfail.
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/rustlive-lib.sh

[ -e /tmp/rustlive.done ] && exit 0
newroot=${3:-${NEWROOT:-/sysroot}}
/usr/bin/rustlive boot --sysroot "$newroot"
rc=$?
if [ "$rc" -eq 0 ]; then
    : > /tmp/rustlive.done
    exit 0
fi
rustlive_onfail "$rc"
die "rustlive: cannot boot the live image (exit code $rc)"
