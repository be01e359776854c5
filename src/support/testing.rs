//! Test support shared by unit and integration tests (not used by the binary).
//!
//! A test that cannot run here (not root, a tool missing) calls [`skip`]. Outside CI that prints
//! the reason and the test returns; `make test` sets `RUSTLIVE_NO_SKIP=1`, which turns every skip
//! into a failure, so CI can never pass on a suite that did not run.

/// Reports why a test does not run here; panics instead when `RUSTLIVE_NO_SKIP` is set.
#[allow(clippy::panic)] // failing the test is the point
pub fn skip(why: &str) {
    if std::env::var_os("RUSTLIVE_NO_SKIP").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("test cannot run here and RUSTLIVE_NO_SKIP is set: {why}");
    }
    eprintln!("skipped: {why}");
}

/// Whether the test runs as root (mounts, loop devices, chown).
pub fn is_root() -> bool {
    crate::sys::process::is_root()
}
