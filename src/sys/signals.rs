//! How the seeder (`@rustlive-seed`) takes `SIGTERM`: the first asks it to stop
//! ([`term_requested`]: it tells its trackers `stopped`, so they stop handing its address
//! out, and exits), with an alarm that ends the process [`GRACE`] later whatever it is doing
//! (a tracker that does not answer cannot hold a stop up); a second ends it at once (`_exit`:
//! nothing to clean up, the image is only read). Except, when asked, the first one sent by
//! PID 1. systemd, switching from the initramfs to the real root, sends `SIGTERM` to every
//! process but the kernel's threads and root's processes whose `argv[0]` starts with `@`
//! (systemd's `broadcast_signal` before `switch_root`; releases before 255 have no other way
//! to spare one): a seeder that runs as `nobody` would die there. rustix has no signal
//! handlers; this is the one `sigaction`, with its `unsafe`.

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether the next `SIGTERM` from PID 1 is still to be spared.
static SPARE_FROM_INIT: AtomicBool = AtomicBool::new(false);
/// A `SIGTERM` asked the process to stop.
static TERM: AtomicBool = AtomicBool::new(false);
/// Seconds from the first `SIGTERM` to the end of the process, stopped or not.
pub const GRACE: u32 = 5;

extern "C" fn on_term(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: for an SA_SIGINFO handler the kernel passes a valid siginfo_t (checked for null
    // anyway); `si_pid` reads the sender of a kill(2), which SIGTERM is.
    let from_init = !info.is_null() && unsafe { (*info).si_pid() } == 1;
    // Atomic swaps are async-signal-safe.
    if from_init && SPARE_FROM_INIT.swap(false, Ordering::SeqCst) {
        return;
    }
    if !TERM.swap(true, Ordering::SeqCst) {
        // SAFETY: `alarm` is async-signal-safe; SIGALRM's default action ends the process.
        unsafe { libc::alarm(GRACE) };
        return;
    }
    // SAFETY: `_exit` is async-signal-safe and ends every thread at once.
    unsafe { libc::_exit(0) }
}

/// Whether a `SIGTERM` asked the process to stop (see [`exit_on_term`]).
pub fn term_requested() -> bool {
    TERM.load(Ordering::SeqCst)
}

/// Installs the `SIGTERM` handler: the first `SIGTERM` sets [`term_requested`] and ends the
/// process [`GRACE`] seconds later, a second ends it at once; with `spare_first_from_init`,
/// the first `SIGTERM` from PID 1 is ignored (the switch-root broadcast of systemd in the
/// initramfs).
pub fn exit_on_term(spare_first_from_init: bool) -> std::io::Result<()> {
    SPARE_FROM_INIT.store(spare_first_from_init, Ordering::SeqCst);
    // SAFETY: a zeroed sigaction is a valid starting value (empty mask, no flags); the handler
    // has the SA_SIGINFO signature and only does async-signal-safe things.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_term as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut sa.sa_mask);
        if libc::sigaction(libc::SIGTERM, &sa, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether the switch-root broadcast is still ahead for a process started now: systemd is
/// PID 1 (`comm` of PID 1) inside an initramfs (`/etc/initrd-release` exists).
pub fn switch_root_broadcast_ahead(initrd_release: bool, pid1_comm: &str) -> bool {
    initrd_release && pid1_comm.trim_end() == "systemd"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_systemd_in_an_initramfs_broadcasts_at_switch_root() {
        assert!(switch_root_broadcast_ahead(true, "systemd\n"));
        // rustlive as PID 1 (the standalone initramfs) switches root without a broadcast.
        assert!(!switch_root_broadcast_ahead(true, "init\n"));
        assert!(!switch_root_broadcast_ahead(true, "rustlive\n"));
        // Started in the booted system: the next SIGTERM from systemd is meant.
        assert!(!switch_root_broadcast_ahead(false, "systemd\n"));
    }
}
