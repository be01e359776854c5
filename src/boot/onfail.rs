//! The failure policy (`rd.rustlive.onfail`): what a node does after a fatal error.
//!
//! An unattended node must not sit in an emergency shell nobody watches, so `reboot` (after a
//! delay that lets an operator read the console and spreads a thousand nodes' retries) is
//! implemented here, by rustlive itself, the same way under systemd, dracut's shell hooks, or
//! when rustlive is PID 1. `shell` is left to the caller: dracut and systemd have their own
//! emergency shells, and PID 1 mode execs `/bin/sh`.

use crate::config::{Failure, OnFail};
use std::time::Duration;

/// What to do, decided from the policy alone (pure, so it is unit-tested).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Return the exit code; the caller (dracut hook, systemd unit, PID 1) opens a shell.
    Shell,
    /// Wait, then reboot.
    Reboot(Duration),
    Poweroff,
    Halt,
}

pub fn decide(f: &Failure) -> Action {
    match f.onfail {
        OnFail::Shell => Action::Shell,
        OnFail::Reboot => Action::Reboot(f.delay),
        OnFail::Poweroff => Action::Poweroff,
        OnFail::Halt => Action::Halt,
    }
}

/// Carries out `action`. Returns only for [`Action::Shell`] or when the reboot syscall fails
/// (not root, in a test), so the caller can still exit with the stage's code.
pub fn execute(action: Action) {
    use crate::sys::power::{reboot, Reboot};
    let mode = match action {
        Action::Shell => {
            log::error!(
                "rustlive failed: dropping to the emergency shell (rd.rustlive.onfail=shell)"
            );
            return;
        }
        Action::Reboot(delay) => {
            log::error!(
                "rustlive failed: rebooting in {} s (rd.rustlive.onfail=reboot)",
                delay.as_secs()
            );
            std::thread::sleep(delay);
            Reboot::Restart
        }
        Action::Poweroff => {
            log::error!("rustlive failed: powering off (rd.rustlive.onfail=poweroff)");
            Reboot::PowerOff
        }
        Action::Halt => {
            log::error!("rustlive failed: halting (rd.rustlive.onfail=halt)");
            Reboot::Halt
        }
    };
    crate::sys::fs::sync();
    if let Err(e) = reboot(mode) {
        log::error!("cannot {}: {e}", mode.verb());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_maps_to_actions() {
        let f = |onfail, secs| Failure {
            onfail,
            delay: Duration::from_secs(secs),
        };
        assert_eq!(decide(&f(OnFail::Shell, 30)), Action::Shell);
        assert_eq!(
            decide(&f(OnFail::Reboot, 90)),
            Action::Reboot(Duration::from_secs(90))
        );
        assert_eq!(decide(&f(OnFail::Poweroff, 30)), Action::Poweroff);
        assert_eq!(decide(&f(OnFail::Halt, 30)), Action::Halt);
    }
}
