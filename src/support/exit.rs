//! The exit codes of the contract and the one-line error report.
//!
//! Each stage has its own typed error that knows its exit code (callers that retry match on
//! it); [`crate::boot::Error`] groups the boot's, `cli::Error` every command's. This module sits below
//! every stage and imports none.

use std::error::Error as StdError;

/// Exit codes of the rustlive binary (`docs/reference/cmdline.md`, "Exit codes").
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
}
