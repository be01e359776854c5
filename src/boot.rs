//! `rustlive boot`: the stages in order — image into RAM, root assembled, secrets installed —
//! with the failure policy applied to the first error.
//!
//! Under dracut (systemd unit or shell hooks) the initramfs's own switch-root takes the node
//! into `/sysroot`; when rustlive is PID 1 (an initramfs without dracut) it switches root itself.

use crate::cli::BootArgs;
use crate::config::Config;
use crate::error::{report, Error, Exit};
use crate::secrets::{self, Applied, NodeFacts};
use crate::{fetch, mount, onfail, switchroot};
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

/// Everything rustlive keeps at run time lives below this directory (see README, "Paths").
pub const RUN_DIR: &str = "/run/rustlive";

/// Runs `rustlive boot` and returns its exit code. Errors are reported here, before the
/// failure policy runs, so the reason is on the console when the node reboots.
pub fn main(args: &BootArgs, pid1: bool) -> ExitCode {
    let cmdline = match args.cmdline.text() {
        Ok(text) => text,
        Err(e) => {
            log::error!("{}", report(&e));
            return fail(e.exit_code(), pid1);
        }
    };
    let cfg = match Config::from_cmdline(&cmdline) {
        Ok(cfg) => cfg,
        Err(e) => {
            log::error!("{e}");
            onfail::execute(onfail::decide(&crate::config::failure_policy(&cmdline)));
            return fail(Exit::Usage, pid1);
        }
    };
    cfg.announce();
    if cfg.image.is_none() {
        log::info!(
            "no image source on the kernel command line (root=live:URL or rd.rustlive.url); nothing to do"
        );
        return Exit::Success.into();
    }
    let mut facts = None;
    match run(&cfg, args, pid1, &mut facts) {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            log::error!("{}", report(&e));
            // Before a shell or a reboot: no copy of the node's secrets stays in the initramfs.
            secrets::wipe_sources(&cfg, facts.as_ref());
            onfail::execute(onfail::decide(&cfg.failure));
            fail(e.exit_code(), pid1)
        }
    }
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
    // Placeholders are stripped only to find the host; a templated host has no route yet.
    let secrets_url = cfg
        .secrets
        .source
        .as_deref()
        .and_then(|t| reqwest::Url::parse(&t.replace(['{', '}'], "")).ok())
        .filter(|u| u.scheme() != "file");
    let secrets_host = secrets_url
        .as_ref()
        .and_then(|u| u.host_str())
        .filter(|h| !crate::config::SECRETS_PLACEHOLDERS.contains(h));
    secrets_host
        .into_iter()
        .chain(cfg.image_urls().iter().filter_map(|u| u.host_str()))
        .find_map(crate::net::route_to)
        .and_then(|r| r.mac_string())
}

fn run(
    cfg: &Config,
    args: &BootArgs,
    pid1: bool,
    facts_out: &mut Option<NodeFacts>,
) -> Result<(), Error> {
    let started = Instant::now();
    if pid1 {
        // The standalone initramfs: nothing else brings the NIC up or gets an address.
        crate::net::bring_up(cfg, &crate::deadline::Deadline::after(cfg.transfer.timeout))?;
    }
    let staged = fetch::stage_image(cfg, Path::new(RUN_DIR))?;
    let root = mount::assemble(
        &staged.path,
        &args.sysroot,
        &mount::AssembleOptions::from_config(cfg),
    )?;

    let facts = facts_out.insert(NodeFacts::gather(Path::new("/"), node_mac(cfg)));
    if let Applied::Skipped = secrets::apply(cfg, &args.sysroot, facts)? {
        log::warn!("booting without the node's secrets (rd.rustlive.secrets.required=0)");
    }

    // Success: the image tmpfs and every mount stay for the booted system.
    if let Some(tmpfs) = staged.tmpfs {
        tmpfs.keep();
    }
    root.persist();
    log::info!(
        "root ready on {} in {:.1} s: {}",
        args.sysroot.display(),
        started.elapsed().as_secs_f64(),
        staged.report.summary()
    );
    if args.switch_root || pid1 {
        let never = switchroot::switch_root(&args.sysroot, &cfg.root.init, &[])?;
        match never {}
    }
    Ok(())
}
