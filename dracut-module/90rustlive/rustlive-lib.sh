#!/bin/sh
# Shared by the rustlive hooks, generator and service (sourced, after dracut-lib.sh).

# Prints what rustlive will boot from: "none", "net" (an image or secrets source over the network:
# the network must come up) or "local" (file:// only). The binary parses the command line itself, so
# the hooks never disagree with it. A command line it rejects counts as "net": rustlive boot then
# reports the error and the node stops in the emergency shell.
rustlive_source() {
    _rl_cfg=$(/usr/bin/rustlive config 2>/dev/null) || {
        echo net
        return 0
    }
    case "$_rl_cfg" in
        *'"image": null'*) echo none ;;
        *'"needs_network": true'*) echo net ;;
        *) echo local ;;
    esac
}

# After `rustlive boot` exited with $1. rustlive has already printed the reason and carried out
# rd.rustlive.onfail=reboot|poweroff|halt itself; what is left is the emergency shell, which the
# caller opens (systemd: OnFailure=emergency.target; without systemd: the mount hook).
rustlive_failed() {
    echo "rustlive: boot failed (exit code $1, reason above); opening the emergency shell" \
        > /dev/console 2> /dev/null || echo "rustlive: boot failed (exit code $1)" >&2
}
