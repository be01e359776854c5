//! `rustlive boot`: the whole boot, in order. One [`Deadline`] (`rd.rustlive.timeout`) bounds
//! every stage; each stage is one call below; the first error is reported, the node's secrets
//! copies are wiped and the failure policy runs.
//!
//! Under dracut (systemd unit or shell hooks) the initramfs's own switch-root takes the node
//! into `/sysroot`; when rustlive is PID 1 (an initramfs without dracut) it switches root itself.

use crate::config::{Config, ConfigError};
use crate::deadline::Deadline;
use crate::error::{report, Exit};
use crate::paths::Paths;
use crate::secrets::{self, Applied, NodeFacts};
use crate::{fetch, mount, onfail, switchroot};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

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
    Assemble(#[from] crate::mount::AssembleError),
    #[error("cannot switch root")]
    SwitchRoot(#[from] crate::switchroot::SwitchRootError),
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error(transparent)]
    Tpm(#[from] crate::tpm::command::CommandError),
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
            Error::Tpm(e) => e.exit_code(),
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
    let cmdline = match read_cmdline(req.cmdline.as_deref(), &req.paths) {
        Ok(text) => text,
        Err(e) => {
            log::error!("{}", report(&e));
            return fail(e.exit_code(), req.pid1);
        }
    };
    let cfg = match Config::from_cmdline_bytes(&cmdline) {
        Ok(cfg) => cfg,
        Err(e) => {
            log::error!("{e}");
            onfail::execute(onfail::decide(&crate::config::failure_policy(&cmdline)));
            return fail(Exit::Usage, req.pid1);
        }
    };
    cfg.announce();
    if cfg.image.is_none() {
        log::info!(
            "no image source on the kernel command line (root=live:URL or rd.rustlive.url); nothing to do"
        );
        return Exit::Success.into();
    }
    let deadline = Deadline::after(cfg.transfer.timeout);
    // First, so that whatever fails later, the wipe below knows which files are this node's.
    let mut facts = NodeFacts::gather(&req.paths, None);
    match run(&cfg, req, deadline, &mut facts) {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            log::error!("{}", report(&e));
            // Before a shell or a reboot: no copy of the node's secrets stays in the initramfs.
            secrets::wipe_sources(&cfg, &facts, &req.paths);
            onfail::execute(onfail::decide(&cfg.failure));
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
    let staged = fetch::stage_image(cfg, &req.paths.run_dir())?;
    facts.mac = node_mac(cfg);
    let root = mount::assemble(
        &staged.path,
        &req.sysroot,
        &mount::AssembleOptions::from_config(cfg),
    )?;
    install_secrets(cfg, req, facts)?;

    // Success: the image tmpfs and every mount stay for the booted system.
    if let Some(tmpfs) = staged.tmpfs {
        tmpfs.keep();
    }
    root.persist();
    log::info!(
        "root ready on {} in {:.1} s: {}",
        req.sysroot.display(),
        started.elapsed().as_secs_f64(),
        staged.report.summary()
    );
    if deadline.passed() {
        log::warn!("the root is ready, but after rd.rustlive.timeout passed");
    }
    hand_over(cfg, req)
}

/// The node's secrets into the new root; a failure stops the boot unless
/// `rd.rustlive.secrets.required=0`.
fn install_secrets(cfg: &Config, req: &Request, facts: &NodeFacts) -> Result<(), Error> {
    if let Applied::Skipped = secrets::apply(cfg, &req.sysroot, facts, &req.paths)? {
        log::warn!("booting without the node's secrets (rd.rustlive.secrets.required=0)");
    }
    Ok(())
}

/// Under dracut the initramfs switches root; as PID 1 (or with `--switch-root`) rustlive does.
fn hand_over(cfg: &Config, req: &Request) -> Result<(), Error> {
    if req.switch_root || req.pid1 {
        let never = switchroot::switch_root(&req.sysroot, &cfg.root.init, &[])?;
        match never {}
    }
    Ok(())
}

/// The exit code, or, as PID 1 (which must never exit), a shell or a power-off.
fn fail(code: Exit, pid1: bool) -> ExitCode {
    if pid1 {
        crate::pid1::emergency_shell();
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
        .chain(
            cfg.image_urls()
                .iter()
                .filter_map(|u| u.host_str().map(String::from)),
        )
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
