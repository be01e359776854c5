//! Ending the system: `reboot(2)` (flush the disks first: [`super::fs::sync`]).

use rustix::io::Errno;
use rustix::system::RebootCommand;

/// What [`reboot`] does to the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reboot {
    /// Restart (`RB_AUTOBOOT`).
    Restart,
    /// Power off (`RB_POWER_OFF`).
    PowerOff,
    /// Halt, leaving the power on (`RB_HALT_SYSTEM`).
    Halt,
}

impl Reboot {
    /// In words, for a log line: "cannot {}".
    pub fn verb(self) -> &'static str {
        match self {
            Reboot::Restart => "reboot",
            Reboot::PowerOff => "power off",
            Reboot::Halt => "halt",
        }
    }
}

/// `reboot(2)`; returns only on failure (not permitted: not root, or not the initial PID
/// namespace).
pub fn reboot(how: Reboot) -> Result<(), Errno> {
    rustix::system::reboot(match how {
        Reboot::Restart => RebootCommand::Restart,
        Reboot::PowerOff => RebootCommand::PowerOff,
        Reboot::Halt => RebootCommand::Halt,
    })
}
