//! Closing inherited file descriptors: a process that must hold only what it opened itself
//! (the seeder) closes everything else it was started with. rustix closes only through
//! `OwnedFd` or the `unsafe` raw `close`, and descriptors inherited across `exec` have no
//! owner in this process: the one `unsafe` call is here.

use std::os::fd::RawFd;

/// Descriptors above 2 this process has open (from `/proc/self/fd`), the directory's own
/// descriptor excluded.
pub fn open_fds() -> std::io::Result<Vec<RawFd>> {
    let mut out = Vec::new();
    let dir = std::fs::read_dir("/proc/self/fd")?;
    for e in dir {
        let e = e?;
        if let Some(n) = e.file_name().to_str().and_then(|s| s.parse::<RawFd>().ok()) {
            out.push(n);
        }
    }
    // The listing's own descriptor is closed by now: whatever is not open any more is gone.
    out.retain(|fd| *fd > 2 && rustix::io::fcntl_getfd(borrowed(*fd)).is_ok());
    Ok(out)
}

/// Closes every descriptor above 2 but `keep`; call it while the process has one thread (no
/// other code may open or own a descriptor meanwhile). Returns how many were closed.
pub fn close_all_except(keep: &[RawFd]) -> std::io::Result<usize> {
    let mut n = 0usize;
    for fd in open_fds()? {
        if !keep.contains(&fd) {
            // SAFETY: the process is single-threaded (the caller's contract) and `fd` is open
            // (listed above) and not one the caller keeps: nothing else in this process uses
            // it, so closing it cannot invalidate a live owner's descriptor.
            unsafe { rustix::io::close(fd) };
            n = n.saturating_add(1);
        }
    }
    Ok(n)
}

/// A borrowed view of `fd` for `fcntl`, valid for the call only.
fn borrowed(fd: RawFd) -> rustix::fd::BorrowedFd<'static> {
    // SAFETY: used only for an `fcntl(F_GETFD)` probe, which fails cleanly (EBADF) on a closed
    // descriptor; the borrow never outlives the call that uses it.
    unsafe { rustix::fd::BorrowedFd::borrow_raw(fd) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn lists_the_descriptors_this_process_holds() {
        let f = std::fs::File::open("/proc/self/status").unwrap();
        let fds = open_fds().unwrap();
        assert!(fds.contains(&f.as_raw_fd()), "{fds:?}");
        assert!(fds.iter().all(|fd| *fd > 2));
        drop(f);
    }
}
