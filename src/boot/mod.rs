//! `rustlive boot`: the whole boot, in order. One [`Deadline`] (`rd.rustlive.timeout`) bounds
//! every stage; each stage is one call below, with its own options built from the
//! configuration in [`options`]; the first error is reported, the node's secrets copies are
//! wiped and the failure policy runs.
//!
//! Under dracut (systemd unit or shell hooks) the initramfs's own switch-root takes the node
//! into `/sysroot`; when rustlive is PID 1 (an initramfs without dracut) it switches root itself.

pub mod onfail;
pub mod options;
pub mod panic_hook;
pub mod pid1;
pub mod seed;
pub mod torrent;

use crate::config::{Config, ConfigError};
use crate::drivers::coldplug::Background;
use crate::drivers::kmod::ASSEMBLY_MODULES;
use crate::fetch;
use crate::root::{assemble, switchroot};
use crate::secrets::{self, Applied, NodeFacts};
use crate::support::deadline::Deadline;
use crate::support::exit::{report, Exit};
use crate::support::log::{set_stage, Stage};
use crate::support::paths::Paths;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What `rustlive boot` was asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// The command line to parse instead of `/proc/cmdline`.
    pub cmdline: Option<String>,
    /// Where the new root is assembled.
    pub sysroot: PathBuf,
    /// Switch into the new root and exec its init (always as PID 1).
    pub switch_root: bool,
    /// rustlive is the initramfs's `/init`: it must never exit.
    pub pid1: bool,
    pub paths: Paths,
}

/// The first error of a command, from whichever stage; it knows its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read the kernel command line")]
    ReadCmdline(#[source] std::io::Error),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error("cannot assemble the root")]
    Assemble(#[from] crate::root::assemble::AssembleError),
    #[error("cannot switch root")]
    SwitchRoot(#[from] crate::root::switchroot::SwitchRootError),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error("the network did not come up")]
    Network(#[from] crate::net::NoRoute),
    #[error(transparent)]
    Oci(#[from] crate::oci::OciError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error(transparent)]
    Swarm(#[from] crate::swarm::session::SwarmError),
}

impl Error {
    /// The contract's exit code: the one place errors map to codes.
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Config(_) | Error::ReadCmdline(_) => Exit::Usage,
            Error::Secrets(e) => e.exit_code(),
            Error::Assemble(_) => Exit::Assemble,
            Error::SwitchRoot(_) => Exit::SwitchRoot,
            Error::Fetch(e) => e.exit_code(),
            // No network means no image: the contract's "transfer failed".
            Error::Network(_) | Error::Net(_) => Exit::Transfer,
            Error::Oci(e) => e.exit_code(),
            Error::Swarm(e) => e.exit_code(),
        }
    }
}

/// The kernel command line: `--cmdline`, else the bytes of `/proc/cmdline` (not necessarily
/// UTF-8; [`Config::from_cmdline_bytes`] decides which words matter).
pub fn read_cmdline(given: Option<&str>, paths: &Paths) -> Result<Vec<u8>, Error> {
    match given {
        Some(s) => Ok(s.as_bytes().to_vec()),
        None => std::fs::read(paths.join("proc/cmdline")).map_err(Error::ReadCmdline),
    }
}

/// Runs `rustlive boot` and returns its exit code. Errors are reported here, before the
/// failure policy runs, so the reason is on the console when the node reboots.
pub fn main(req: &Request) -> ExitCode {
    // Lines logged before the collector is known are kept for it (bounded).
    crate::support::syslog::buffer_early();
    set_stage(Stage::Config);
    let cmdline = match read_cmdline(req.cmdline.as_deref(), &req.paths) {
        Ok(text) => text,
        Err(e) => {
            crate::support::syslog::disable();
            log::error!("{}", report(&e));
            return fail(e.exit_code(), req.pid1);
        }
    };
    let cfg = match Config::from_cmdline_bytes(&cmdline) {
        Ok(cfg) => cfg,
        Err(e) => {
            // The rest is invalid, but the collector (if its own value is valid) hears why.
            start_syslog(crate::config::syslog_target(&cmdline).as_ref());
            log::error!("{e}");
            let flush = Deadline::after(Some(crate::support::syslog::FLUSH_WAIT));
            crate::support::syslog::flush(flush);
            onfail::execute(onfail::decide(&crate::config::failure_policy(&cmdline)));
            crate::support::syslog::flush(flush);
            return fail(Exit::Usage, req.pid1);
        }
    };
    start_syslog(cfg.syslog.as_ref());
    cfg.announce();
    if cfg.image.is_none() {
        log::info!(
            "no image source on the kernel command line (root=live:URL or rd.rustlive.url); nothing to do"
        );
        crate::support::syslog::flush(Deadline::after(Some(crate::support::syslog::FLUSH_WAIT)));
        return Exit::Success.into();
    }
    let deadline = Deadline::after(cfg.transfer.timeout);
    // First, so that whatever fails later, the wipe below knows which files are this node's.
    let mut facts = NodeFacts::gather(&req.paths, None);
    match run(&cfg, req, deadline, &mut facts) {
        Ok(()) => {
            crate::support::syslog::flush(Deadline::after(Some(
                crate::support::syslog::FLUSH_WAIT,
            )));
            Exit::Success.into()
        }
        Err(e) => {
            log::error!("{}", report(&e));
            // Before a shell or a reboot: no copy of the node's secrets stays in the initramfs.
            secrets::wipe_sources(cfg.secrets.source.as_ref(), &facts, &req.paths);
            // The reason reaches the collector before the node reboots or stops; one short wait
            // in all, so a dead collector costs at most FLUSH_WAIT.
            let flush = Deadline::after(Some(crate::support::syslog::FLUSH_WAIT));
            crate::support::syslog::flush(flush);
            onfail::execute(onfail::decide(&cfg.failure));
            crate::support::syslog::flush(flush);
            fail(e.exit_code(), req.pid1)
        }
    }
}

/// The stages, in order.
fn run(
    cfg: &Config,
    req: &Request,
    deadline: Deadline,
    facts: &mut NodeFacts,
) -> Result<(), Error> {
    let started = Instant::now();
    set_stage(Stage::Fetch);
    // As PID 1 nothing else loads modules. The NIC's driver goes first (in the network stage);
    // the block and filesystem modules assembling may need load after it, in a thread at the
    // lowest priority, in the time spent waiting for carrier, a lease and the image.
    let assembly_modules = req
        .pid1
        .then(|| Background::after_drivers(ASSEMBLY_MODULES));
    if req.pid1 {
        // The standalone initramfs: drivers by modalias, then ip= or DHCP; nothing else
        // brings the NIC up or gets an address.
        crate::net::bring_up(&options::net(cfg), &deadline)?;
    }
    wait_for_network(cfg, deadline)?;
    facts.mac = node_mac(cfg);
    // Built once: the image's download options, whose transfer settings the secrets share.
    let keys = req.paths.join(crate::fetch::verify::KEYS_DIR);
    let fetch = options::fetch(cfg, &keys)?.with_deadline(deadline);
    let staged = fetch_image(cfg, req, &fetch)?;
    set_stage(Stage::Assemble);
    if let Some(m) = assembly_modules {
        m.wait();
    }
    let root = assemble::assemble(&staged.path, &req.sysroot, &options::assemble(cfg))?;
    set_stage(Stage::Secrets);
    install_secrets(&options::secrets(cfg, &fetch), req, facts, deadline)?;

    // Success: the image tmpfs and every mount stay for the booted system.
    if let Some(tmpfs) = staged.tmpfs {
        tmpfs.keep();
    }
    root.persist();
    log::info!(
        "root ready on {} in {:.1} s: {}",
        req.sysroot.display(),
        started.elapsed().as_secs_f64(),
        staged.summary
    );
    if deadline.passed() {
        log::warn!("the root is ready, but after rd.rustlive.timeout passed");
    }
    // The swarm's image keeps being shared from its RAM copy after switch-root.
    if let Some(torrent) = &staged.torrent {
        seed::start(&options::seed(cfg), torrent, &staged.path, &req.paths);
    }
    hand_over(cfg, req)
}

/// A route to the image server or the secrets server, whichever the network gives first
/// (DHCP in dracut, or rustlive's own network stage as PID 1); nothing to wait for when both
/// are `file://`.
fn wait_for_network(cfg: &Config, deadline: Deadline) -> Result<(), Error> {
    let mut hosts: Vec<String> = cfg.image_hosts();
    hosts.extend(cfg.secrets.source.as_ref().and_then(|t| t.host()));
    if hosts.is_empty() {
        return Ok(());
    }
    let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
    crate::net::wait_for_route(&hosts, deadline, Duration::from_secs(5))?;
    Ok(())
}

/// The node's identity for mirror ordering: the MAC of the interface that routes to the first
/// mirror, else the DMI product_uuid, else the host name (`rustlive fetch --mirrors spread`
/// uses it too).
pub fn node_identity(
    first_host: Option<&str>,
    paths: &crate::support::paths::Paths,
) -> Option<fetch::mirrors::NodeId> {
    let mac = first_host
        .and_then(crate::net::route_to)
        .and_then(|r| r.mac_string());
    let f = NodeFacts::gather(paths, mac);
    fetch::mirrors::NodeId::choose(f.mac(), f.uuid(), f.hostname())
}

/// The verified image in its own tmpfs, and what the boot says about it.
struct Staged {
    path: PathBuf,
    tmpfs: Option<crate::root::ram::Tmpfs>,
    /// Bytes, time, sources, and what verified the image.
    summary: String,
    /// The `.torrent`'s bytes when the image came from a swarm (the seeder serves it on).
    torrent: Option<Vec<u8>>,
}

/// The verified image in its own tmpfs, within the boot's deadline: from the swarm when a
/// torrent is given (its mirrors are web seeds), else from the mirrors or the registry.
fn fetch_image(cfg: &Config, req: &Request, opts: &fetch::FetchOptions) -> Result<Staged, Error> {
    // Each node starts at its own mirror (rendezvous order) unless rd.rustlive.mirrors=listed.
    let (urls, policy) = (cfg.image_urls(), cfg.transfer.mirrors);
    let node = fetch::mirrors::needs_identity(urls, policy)
        .then(|| node_identity(urls.first().and_then(|u| u.host_str()), &req.paths))
        .flatten();
    let urls = fetch::mirrors::order_for_node(urls, policy, node.as_ref());
    if let Some(t) = cfg.torrent() {
        let sopts = torrent::options(cfg, urls);
        let s = torrent::stage(t, &sopts, opts, cfg.transfer.minmem, &req.paths)?;
        return Ok(Staged {
            path: s.path,
            tmpfs: Some(s.tmpfs),
            summary: s.summary,
            torrent: Some(s.torrent),
        });
    }
    // ...and spreads the image's pieces over all of them (`fetch::pieces`).
    let opts = fetch::FetchOptions {
        spread: node.map(|n| n.id),
        ..opts.clone()
    };
    // An oci:// source: the manifest now, then the root layer's blob on each registry.
    let creds = req.paths.join(crate::oci::auth::CREDENTIALS_FILE);
    let (urls, opts) = crate::oci::pull::prepare(&urls, &opts, &creds)?;
    let s = fetch::stage_image(&urls, &opts, cfg.transfer.minmem, &req.paths)?;
    Ok(Staged {
        path: s.path,
        tmpfs: s.tmpfs,
        summary: s.report.summary(),
        torrent: None,
    })
}

/// The node's secrets into the new root; a failure stops the boot unless
/// `rd.rustlive.secrets.required=0`.
fn install_secrets(
    opts: &secrets::SecretsOptions,
    req: &Request,
    facts: &NodeFacts,
    deadline: Deadline,
) -> Result<(), Error> {
    if let Applied::Skipped = secrets::apply(opts, &req.sysroot, facts, &req.paths, deadline)? {
        log::warn!("booting without the node's secrets (rd.rustlive.secrets.required=0)");
    }
    Ok(())
}

/// Under dracut the initramfs switches root; as PID 1 (or with `--switch-root`) rustlive does.
fn hand_over(cfg: &Config, req: &Request) -> Result<(), Error> {
    if req.switch_root || req.pid1 {
        set_stage(Stage::SwitchRoot);
        // exec ends this process and its sender thread: the lines go out first.
        crate::support::syslog::flush(Deadline::after(Some(crate::support::syslog::FLUSH_WAIT)));
        let never = switchroot::switch_root(&req.sysroot, &cfg.root.init, &[])?;
        match never {}
    }
    Ok(())
}

/// Ships the boot's log lines (those kept so far included) to the collector, if one is set.
fn start_syslog(target: Option<&crate::support::syslog::Target>) {
    let Some(t) = target else {
        crate::support::syslog::disable();
        return;
    };
    match crate::support::syslog::start(t.clone(), syslog_reach) {
        Ok(()) => log::info!("boot logs also go to {t}"),
        Err(e) => {
            crate::support::syslog::disable();
            log::warn!("cannot start sending boot logs to {t}: {e}");
        }
    }
}

/// How the collector is reached, for the syslog sender (the network stage owns routes).
fn syslog_reach(host: &str) -> Option<crate::support::syslog::Reach> {
    crate::net::route_to(host).map(|r| crate::support::syslog::Reach {
        mac: r.mac_string(),
        ipv4: r.addr.is_ipv4(),
    })
}

/// The exit code, or, as PID 1 (which must never exit), a shell or a power-off.
fn fail(code: Exit, pid1: bool) -> ExitCode {
    if pid1 {
        crate::boot::pid1::emergency_shell();
    }
    code.into()
}

/// The MAC for `{mac}`: of the interface that reaches the secrets server (the one the boot
/// server knows the node by), or the image server when the bundle is not fetched over the network.
fn node_mac(cfg: &Config) -> Option<String> {
    // A templated host ({hostname}.boot) has no route yet: the image server's interface then.
    let secrets_host = cfg.secrets.source.as_ref().and_then(|t| t.host());
    secrets_host
        .into_iter()
        .chain(cfg.image_hosts())
        .find_map(|h| crate::net::route_to(&h))
        .and_then(|r| r.mac_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_errors_exit_2() {
        let e = Error::from(ConfigError {
            option: "x".into(),
            value: "y".into(),
            reason: "z".into(),
        });
        assert_eq!(e.exit_code(), Exit::Usage);
    }

    #[test]
    fn reads_proc_cmdline_as_bytes_under_the_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("proc")).unwrap();
        std::fs::write(t.path().join("proc/cmdline"), b"quiet LABEL=caf\xe9\n").unwrap();
        let paths = Paths::under(t.path());
        assert_eq!(
            read_cmdline(None, &paths).unwrap(),
            b"quiet LABEL=caf\xe9\n"
        );
        assert_eq!(read_cmdline(Some("a=b"), &paths).unwrap(), b"a=b");
        // Another program's non-UTF-8 word is not rustlive's business.
        let cfg = Config::from_cmdline_bytes(&read_cmdline(None, &paths).unwrap()).unwrap();
        assert!(cfg.image.is_none());
    }
}
