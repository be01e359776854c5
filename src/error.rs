//! The top-level error of a rustlive command and the exit codes of the contract.
//!
//! Each stage has its own typed error (callers that retry match on it); this enum only groups
//! them so `main` can print one sentence plus the cause chain and pick the exit code.

use crate::config::ConfigError;
use std::error::Error as StdError;

/// Exit codes of the rustlive binary (`cmdline.md`, "Exit codes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    Success = 0,
    Usage = 2,
    Transfer = 3,
    Verify = 4,
    Assemble = 5,
    Secrets = 6,
    SwitchRoot = 7,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}

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
    #[error("cannot build the initramfs")]
    Initramfs(#[from] crate::initramfs::BuildError),
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
}

impl Error {
    pub fn exit_code(&self) -> Exit {
        match self {
            Error::Config(_) | Error::ReadCmdline(_) => Exit::Usage,
            Error::Secrets(e) => e.exit_code(),
            Error::Assemble(_) => Exit::Assemble,
            Error::SwitchRoot(_) => Exit::SwitchRoot,
            Error::Fetch(e) => e.exit_code(),
            Error::Initramfs(_) => Exit::Usage,
            // No network means no image: the contract's "transfer failed".
            Error::Net(_) => Exit::Transfer,
        }
    }
}

/// `error: cause: cause…` on one line, the way an operator reads it on a serial console.
pub fn report(err: &dyn StdError) -> String {
    let mut s = err.to_string();
    let mut cur = err.source();
    while let Some(c) = cur {
        let msg = c.to_string();
        // Wrappers that are `#[error(transparent)]` or repeat their source add nothing.
        if !s.ends_with(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("mounting /run/rustlive/lower failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn report_joins_the_cause_chain() {
        let e = Outer(std::io::Error::other("no such device"));
        assert_eq!(
            report(&e),
            "mounting /run/rustlive/lower failed: no such device"
        );
    }

    #[test]
    fn config_errors_exit_2() {
        let e = Error::from(ConfigError {
            option: "x".into(),
            value: "y".into(),
            reason: "z".into(),
        });
        assert_eq!(e.exit_code(), Exit::Usage);
    }
}
