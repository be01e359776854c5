#!/bin/bash
# shellcheck disable=SC2154 # moddir, dracutsysrootdir, systemd*dir: set by dracut
# dracut module "rustlive": fetch, verify and assemble a live root image over the network with the
# static rustlive binary. Replaces livenet + dmsquash-live; never added unless asked for
# (`dracut --add rustlive`).

# called by dracut
check() {
    require_binaries "$moddir/rustlive" || return 1
    return 255
}

# called by dracut
depends() {
    # "network" brings whichever backend the image builder added (network-manager,
    # systemd-networkd, network-legacy) or the host's default one.
    echo network
    return 0
}

# called by dracut
installkernel() {
    # isofs: a live ISO (LiveOS/squashfs.img inside) is a supported root image.
    hostonly='' instmods squashfs erofs overlay loop ext4 isofs
    # The TPM drivers, so a bundle sealed to the node's TPM can be opened (/dev/tpmrm0); a
    # kernel with them built in, or without them, still builds an initramfs.
    hostonly='' instmods tpm_tis tpm_crb || :
}

# called by dracut
install() {
    if dracut_module_included "livenet"; then
        dwarn "rustlive: livenet is also included; both claim root=live:URL and rustlive's units win"
    fi
    inst_simple "$moddir/rustlive" /usr/bin/rustlive
    inst_simple "$moddir/rustlive-lib.sh" /lib/rustlive-lib.sh
    inst_hook cmdline 30 "$moddir/parse-rustlive.sh"

    # The CA bundle for https: the site's own when configured, else the distribution's.
    local ca
    for ca in /etc/rustlive/ca.pem /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/certs/ca-certificates.crt; do
        if [[ -f $dracutsysrootdir$ca ]]; then
            inst_simple "$dracutsysrootdir$ca" /etc/rustlive/ca.pem
            break
        fi
    done

    # Trusted minisign keys: their presence inside the initramfs makes signatures mandatory.
    # keys/*.pub sign images; keys/sealed/*.pub sign sealed secrets bundles.
    local key
    for key in "$dracutsysrootdir"/etc/rustlive/keys/*.pub; do
        [[ -f $key ]] && inst_simple "$key" "/etc/rustlive/keys/${key##*/}"
    done
    for key in "$dracutsysrootdir"/etc/rustlive/keys/sealed/*.pub; do
        [[ -f $key ]] && inst_simple "$key" "/etc/rustlive/keys/sealed/${key##*/}"
    done

    if dracut_module_included "systemd"; then
        inst_simple "$moddir/rustlive.service" "$systemdsystemunitdir/rustlive.service"
        inst_script "$moddir/rustlive-service.sh" /usr/lib/rustlive/rustlive-service
        inst_script "$moddir/rustlive-generator.sh" \
            "$systemdutildir/system-generators/dracut-rustlive-generator"
        if dracut_module_included "systemd-networkd"; then
            # networkd has no DHCP default in the initramfs; ip= (systemd-network-generator) and
            # the host's own files sort before this fallback and win.
            inst_simple "$moddir/99-rustlive-dhcp.network" \
                "$systemdnetwork/99-rustlive-dhcp.network"
        fi
    else
        inst_script "$moddir/rustliveroot.sh" /sbin/rustliveroot
        inst_hook mount 90 "$moddir/mount-rustlive.sh"
    fi
    dracut_need_initqueue
}
