#!/bin/sh
# Shared by the rustlive hooks, generator and service (sourced, after dracut-lib.sh).

# Prints what rustlive will boot from: "none", "net" (an http/https image or secrets source: the
# network must come up) or "local" (file:// only). The binary parses the command line itself, so
# the hooks never disagree with it. A command line it rejects counts as "net": rustlive boot then
# reports the error and the failure policy applies.
rustlive_source() {
    _rl_cfg=$(/usr/bin/rustlive config 2>/dev/null) || {
        echo net
        return 0
    }
    case "$_rl_cfg" in
        *'"image": null'*) echo none ;;
        *'"http://'* | *'"https://'*) echo net ;;
        *) echo local ;;
    esac
}

# Applies rd.rustlive.onfail after `rustlive boot` exited with $1; returns only for "shell".
rustlive_onfail() {
    _rl_rc=$1
    _rl_policy=$(getarg rd.rustlive.onfail=)
    _rl_delay=$(getarg rd.rustlive.onfail.delay=)
    case "$_rl_delay" in
        '' | *[!0-9]*) _rl_delay=30 ;;
    esac
    case "$_rl_policy" in
        reboot | poweroff | halt) ;;
        *) _rl_policy=shell ;;
    esac
    rustlive_console "rustlive: boot failed (exit code $_rl_rc, reason above); rd.rustlive.onfail=$_rl_policy"
    [ "$_rl_policy" = shell ] && return 0
    rustlive_console "rustlive: ${_rl_policy} in ${_rl_delay} s"
    sleep "$_rl_delay"
    sync
    case "$_rl_policy" in
        reboot) reboot -f || echo b > /proc/sysrq-trigger ;;
        poweroff) poweroff -f || echo o > /proc/sysrq-trigger ;;
        halt) halt -f ;;
    esac
    # Still here: never fall through into booting without a root.
    while :; do sleep 3600; done
}

rustlive_console() {
    echo "$*" > /dev/console 2> /dev/null || echo "$*" >&2
}
