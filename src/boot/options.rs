//! The one place the whole [`Config`] becomes each stage's own options: `rustlive boot` builds
//! them here, and the command line reuses these functions for the stages run by hand. A stage
//! sees only its options; none of them reads the configuration itself.

use crate::config::Config;
use crate::fetch::{verify, ClientIdentity, FetchError, FetchOptions};
use crate::net::up::NetOptions;
use crate::root::assemble::{AssembleOptions, RUN_DIR};
use crate::root::image::LiveLayout;
use crate::secrets::SecretsOptions;
use crate::support::deadline::Deadline;
use std::path::Path;
use std::time::Duration;

/// The download settings every fetch shares (the image's, the secrets bundle's): retries,
/// stall, CA bundle, proxy, and a deadline of `rd.rustlive.timeout` that starts now. Nothing
/// about verification or TLS exceptions.
pub fn transfer(cfg: &Config) -> FetchOptions {
    let t = &cfg.transfer;
    FetchOptions {
        retries: t.retries,
        deadline: Deadline::after(t.timeout),
        stall: t.stall,
        connect_timeout: t.stall.min(Duration::from_secs(15)),
        ca: t.ca.clone(),
        proxy: t.proxy.clone(),
        ..FetchOptions::default()
    }
}

/// The image's download: [`transfer`] plus its verification (hash, checksum list, signature,
/// trusted keys from `keys_dir`, normally [`verify::KEYS_DIR`]) and `rd.noverifyssl`.
pub fn fetch(cfg: &Config, keys_dir: &Path) -> Result<FetchOptions, FetchError> {
    Ok(FetchOptions {
        insecure_tls: cfg.transfer.insecure_tls,
        sha256: cfg.verify.sha256,
        sha256sums: cfg.verify.sha256sums.clone(),
        sig: cfg.verify.sig.clone(),
        keys: verify::load_trusted_dir(keys_dir)?,
        verify_required: cfg.verify.required,
        ..transfer(cfg)
    })
}

/// The secrets stage: source, pin and policy, the client certificate, and `transfer` (the
/// image's download options or [`transfer`]) for a network source's download settings.
pub fn secrets(cfg: &Config, transfer: &FetchOptions) -> SecretsOptions {
    let s = &cfg.secrets;
    SecretsOptions {
        source: s.source.clone(),
        sha256: s.sha256,
        // The stage asks only once it has a source: with none, nothing is required.
        required: s.required(true),
        sealed_required: s.sealed_required,
        identity: match (&s.cert, &s.key) {
            (Some(cert), Some(key)) => Some(ClientIdentity {
                cert: cert.clone(),
                key: key.clone(),
            }),
            _ => None,
        },
        transfer: transfer.clone(),
    }
}

/// The root's assembly: overlay size, LiveOS layout, the init that must exist.
pub fn assemble(cfg: &Config) -> AssembleOptions {
    AssembleOptions {
        overlay_size: cfg.root.overlay_size,
        layout: LiveLayout {
            dir: cfg.root.live_dir.clone(),
            squash_img: cfg.root.squash_img.clone(),
        },
        init: cfg.root.init.clone(),
        run_dir: RUN_DIR.into(),
    }
}

/// The seeder after switch-root: port, duration, upload cap, and the CA bundle for https
/// trackers.
pub fn seed(cfg: &Config) -> crate::boot::seed::Settings {
    crate::boot::seed::Settings {
        port: cfg.swarm.port,
        duration: cfg.swarm.seed,
        rate: cfg.swarm.seed_rate,
        ca: cfg.transfer.ca.clone(),
    }
}

/// The network stage of the standalone initramfs.
pub fn net(cfg: &Config) -> NetOptions {
    let n = &cfg.network;
    NetOptions {
        needed: cfg.needs_network,
        ip: n.ip.clone(),
        nameservers: n.nameservers.clone(),
        vlans: n.vlans.clone(),
        bonds: n.bonds.clone(),
        ifnames: n.ifnames.clone(),
        bootif: n.bootif.clone(),
        peerdns: n.peerdns,
        drivers: n.drivers.clone(),
        blacklist: n.blacklist.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::support::values::Size;

    #[test]
    fn fetch_options_follow_the_command_line() {
        let h = "ab".repeat(32);
        let cfg = Config::from_cmdline(&format!(
            "root=live:https://h/img rd.rustlive.sha256={h} rd.rustlive.retries=4 \
             rd.rustlive.stall=7 rd.noverifyssl rd.rustlive.timeout=60 \
             rd.rustlive.secrets=https://h/s.json rd.rustlive.secrets.cert=/c.pem rd.rustlive.secrets.key=/k.pem"
        ))
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let o = fetch(&cfg, dir.path()).unwrap();
        assert_eq!(o.retries, Some(4));
        assert_eq!(o.stall, Duration::from_secs(7));
        assert_eq!(o.connect_timeout, Duration::from_secs(7));
        assert!(o.insecure_tls && o.keys.is_empty());
        assert_eq!(o.sha256.as_ref().unwrap().to_hex(), h);
        let left = o.deadline.remaining().unwrap();
        assert!(left <= Duration::from_secs(60) && left > Duration::from_secs(50));
        // The secrets bundle's download, from the image's options (as the boot does) or from
        // the transfer settings alone (as inject-secrets does).
        for base in [&o, &transfer(&cfg)] {
            let s = secrets(&cfg, base).download();
            assert!(!s.insecure_tls && s.sha256.is_none() && s.keys.is_empty());
            assert_eq!(s.retries, Some(4));
            assert_eq!(s.stall, Duration::from_secs(7));
            assert_eq!(s.identity.unwrap().cert, Path::new("/c.pem"));
        }
        let s = secrets(&Config::default(), &transfer(&Config::default())).download();
        assert_eq!(s.retries, Some(crate::secrets::DEFAULT_RETRIES));
        assert!(s.identity.is_none());
        let boot = Deadline::after(Some(Duration::from_secs(5)));
        assert_eq!(s.with_deadline(boot).deadline, boot);
    }

    #[test]
    fn secrets_options_follow_the_command_line() {
        let o = secrets(&Config::default(), &FetchOptions::default());
        assert!(o.source.is_none() && o.sha256.is_none() && o.identity.is_none());
        assert!(o.required && !o.sealed_required);
        let h = "ab".repeat(32);
        let cfg = Config::from_cmdline(&format!(
            "rd.rustlive.secrets=http://h/{{mac}}.json rd.rustlive.secrets.sha256={h} \
             rd.rustlive.secrets.required=0 rd.rustlive.secrets.sealed=required \
             rd.rustlive.secrets.cert=/c.pem rd.rustlive.secrets.key=/k.pem"
        ))
        .unwrap();
        let o = secrets(&cfg, &FetchOptions::default());
        assert_eq!(o.source, cfg.secrets.source);
        assert_eq!(o.sha256.unwrap().to_hex(), h);
        assert!(!o.required && o.sealed_required);
        let id = o.identity.unwrap();
        assert_eq!(
            (id.cert.as_path(), id.key.as_path()),
            (Path::new("/c.pem"), Path::new("/k.pem"))
        );
    }

    #[test]
    fn assemble_options_follow_the_command_line() {
        let o = assemble(&Config::default());
        assert_eq!(o.overlay_size, Size::Percent(50));
        assert_eq!(o.init, Path::new("/sbin/init"));
        assert_eq!(o.layout, LiveLayout::default());
        assert_eq!(o.run_dir, Path::new(RUN_DIR));
        let cfg = Config::from_cmdline(
            "rd.rustlive.overlay.size=2G rd.live.dir=images rd.live.squashimg=root.sqfs init=/bin/sh",
        )
        .unwrap();
        let o = assemble(&cfg);
        assert_eq!(o.overlay_size, Size::Bytes(2 << 30));
        assert_eq!(o.layout.dir, "images");
        assert_eq!(o.layout.squash_img, "root.sqfs");
        assert_eq!(o.init, Path::new("/bin/sh"));
    }

    #[test]
    fn network_is_needed_only_for_remote_sources() {
        let c = Config::from_cmdline("root=live:file:///images/root.squashfs").unwrap();
        assert!(!net(&c).needed);
        let c = Config::from_cmdline("root=live:http://10.0.2.2/root.squashfs").unwrap();
        assert!(net(&c).needed);
        let c = Config::from_cmdline(
            "root=live:file:///r.img rd.rustlive.secrets=https://s/{mac}.json",
        )
        .unwrap();
        assert!(net(&c).needed);
    }

    #[test]
    fn network_options_follow_the_command_line() {
        assert_eq!(net(&Config::default()), NetOptions::default());
        let c = Config::from_cmdline(
            "root=live:http://h/i ip=10.0.0.5::10.0.0.1:255.255.255.0:n5:eth0:none \
             nameserver=10.0.0.53 rd.rustlive.drivers=igb,bonding rd.driver.blacklist=nouveau",
        )
        .unwrap();
        let o = net(&c);
        assert_eq!(o.ip, c.network.ip);
        assert_eq!(o.ip.len(), 1);
        assert_eq!(
            o.nameservers,
            ["10.0.0.53".parse::<std::net::Ipv4Addr>().unwrap()]
        );
        assert_eq!(o.drivers, ["igb", "bonding"]);
        assert_eq!(o.blacklist, ["nouveau"]);
    }
}
