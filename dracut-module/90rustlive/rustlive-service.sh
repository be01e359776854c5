#!/bin/sh
# shellcheck disable=SC1091 # dracut-lib.sh and rustlive-lib.sh exist only inside the initramfs
# ExecStart of rustlive.service: assemble /sysroot, or apply rd.rustlive.onfail. For "shell" the
# unit fails and its OnFailure= takes the node to dracut's emergency shell.
. /lib/dracut-lib.sh
. /lib/rustlive-lib.sh

/usr/bin/rustlive boot --sysroot /sysroot
rc=$?
[ "$rc" -eq 0 ] && exit 0
rustlive_onfail "$rc"
exit "$rc"
