#!/bin/sh
# shellcheck disable=SC1091 # rustlive-lib.sh exists only inside the initramfs
# ExecStart of rustlive.service: assemble /sysroot. On failure the unit fails and its OnFailure=
# takes the node to dracut's emergency shell.
. /lib/rustlive-lib.sh

/usr/bin/rustlive boot --sysroot /sysroot
rc=$?
[ "$rc" -eq 0 ] && exit 0
rustlive_failed "$rc"
exit "$rc"
