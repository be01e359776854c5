#!/bin/sh
# shellcheck disable=SC1091 # dracut-lib.sh and rustlive-lib.sh exist only inside the initramfs
# netroot handler for dracut without systemd: called as "rustliveroot IFACE NETROOT NEWROOT" once
# an interface is up (and by the mount hook for a file:// image). Assembles $NEWROOT. On failure
# rustlive has carried out rd.rustlive.onfail=reboot|poweroff|halt itself; otherwise the mount
# hook opens the emergency shell from init, where dracut expects it.
type getarg > /dev/null 2>&1 || . /lib/dracut-lib.sh
. /lib/rustlive-lib.sh

[ -e /tmp/rustlive.done ] || [ -e /tmp/rustlive.failed ] && exit 0
newroot=${3:-${NEWROOT:-/sysroot}}
/usr/bin/rustlive boot --sysroot "$newroot"
rc=$?
if [ "$rc" -eq 0 ]; then
    : > /tmp/rustlive.done
    exit 0
fi
rustlive_failed "$rc"
echo "$rc" > /tmp/rustlive.failed
exit 1
