#!/bin/sh
# shellcheck disable=SC1091,SC2034,SC2154 # sourced by dracut: root, rootok, netroot, hookdir are its variables
# cmdline hook: claim root= for rustlive (root=live:URL, root=http(s)://, rd.rustlive.url) so dracut
# does not die with "Don't know how to handle root=", and ask for the network when needed.

type rustlive_source > /dev/null 2>&1 || . /lib/rustlive-lib.sh

_rl_src=$(rustlive_source)
if [ "$_rl_src" != none ]; then
    info "rustlive: booting a live image ($_rl_src source)"
    root=rustlive
    rootok=1
    if [ "$_rl_src" = net ]; then
        echo rd.neednet=1 > /etc/cmdline.d/90-rustlive-neednet.conf
    fi
    if [ -z "$DRACUT_SYSTEMD" ]; then
        if [ "$_rl_src" = net ]; then
            # Without systemd, dracut calls /sbin/rustliveroot once an interface is up, and
            # the initqueue waits for it.
            netroot=rustlive
            echo '[ -e /tmp/rustlive.done ]' > "$hookdir/initqueue/finished/rustlive.sh"
        else
            : > /tmp/rustlive.local
        fi
    fi
fi
unset _rl_src
