#!/bin/sh
# mount hook for dracut without systemd: a file:// image needs no network, so no netroot handler
# runs; assemble it here.
if [ -e /tmp/rustlive.local ] && ! [ -e /tmp/rustlive.done ]; then
    /sbin/rustliveroot none rustlive "$NEWROOT"
fi
