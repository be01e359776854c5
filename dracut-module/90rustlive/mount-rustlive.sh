#!/bin/sh
# mount hook for dracut without systemd: assemble a file:// image here (it needs no network, so
# no netroot handler ran), and open the emergency shell when rustlive failed
# (rd.rustlive.onfail=shell).
if [ -e /tmp/rustlive.local ] && ! [ -e /tmp/rustlive.done ] && ! [ -e /tmp/rustlive.failed ]; then
    /sbin/rustliveroot none rustlive "$NEWROOT"
fi
if [ -e /tmp/rustlive.failed ]; then
    emergency_shell -n rustlive "rustlive could not assemble the root (exit code $(cat /tmp/rustlive.failed)); the reason is above"
fi
