//! The last line of defence: a panic is a bug, but as PID 1 `panic = "abort"` would make it a
//! kernel panic, and under dracut a node that aborts never reaches its failure policy. The hook
//! logs the panic through the kmsg logger, wipes the initramfs copies of the node's secrets and
//! runs `rd.rustlive.onfail`; as PID 1 it then opens the shell or powers off instead of
//! returning into the abort.

use crate::boot::onfail;
use crate::config::{failure_policy, Config};
use crate::secrets;
use crate::support::paths::Paths;

/// Installs the hook for the process (`rustlive boot`, or any command as PID 1).
pub fn install(pid1: bool) {
    std::panic::set_hook(Box::new(move |info| {
        // The message and location only: a panic payload is a format string of ours, and the
        // values in it come from checks that never hold secret bytes.
        log::error!("internal error (a bug in rustlive, please report it): {info}");
        let paths = Paths::system();
        let cmdline = std::fs::read(paths.join("proc/cmdline")).unwrap_or_default();
        if let Ok(cfg) = Config::from_cmdline_bytes(&cmdline) {
            let facts = secrets::NodeFacts::gather(&paths, None);
            secrets::wipe_sources(cfg.secrets.source.as_ref(), &facts, &paths);
        }
        onfail::execute(onfail::decide(&failure_policy(&cmdline)));
        if pid1 {
            crate::boot::pid1::emergency_shell();
        }
    }));
}
