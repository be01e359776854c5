//! This process: who it is (PID 1? root?), where its root and working directory are, its
//! standard fds, and replacing it with another program.

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, IntoRawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Whether this is process 1 of its PID namespace.
pub fn is_pid1() -> bool {
    rustix::process::getpid().is_init()
}

/// Whether this process runs as root (effective user id 0).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives the calling thread the lowest CPU priority (nice 19). On Linux the nice value is a
/// thread's own (`setpriority(PRIO_PROCESS, 0)` names the calling thread), so the rest of the
/// process keeps its priority.
pub fn lower_thread_priority() -> Result<(), Errno> {
    rustix::process::setpriority_process(None, 19)
}

/// The real user id.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The real group id.
pub fn gid() -> u32 {
    rustix::process::getgid().as_raw()
}

/// `chdir(2)`.
pub fn change_dir(path: &Path) -> Result<(), Errno> {
    rustix::process::chdir(path)
}

/// `chroot(2)`.
pub fn change_root(path: &Path) -> Result<(), Errno> {
    rustix::process::chroot(path)
}

/// Whether fd 2 is open (a kernel without a console starts PID 1 with fds 0-2 closed).
pub fn stderr_open() -> bool {
    rustix::io::fcntl_getfd(std::io::stderr()).is_ok()
}

/// Opens `console` (read-write, not as controlling terminal) on fds 0, 1 and 2; every dup is
/// tried, the first error is returned.
pub fn attach_stdio(console: &Path) -> Result<(), Errno> {
    let fd = rustix::fs::open(console, OFlags::RDWR | OFlags::NOCTTY, Mode::empty())?;
    let raw = fd.as_raw_fd();
    let mut result = Ok(());
    if raw != 0 {
        result = result.and(rustix::stdio::dup2_stdin(&fd));
    }
    if raw != 1 {
        result = result.and(rustix::stdio::dup2_stdout(&fd));
    }
    if raw != 2 {
        result = result.and(rustix::stdio::dup2_stderr(&fd));
    }
    if raw <= 2 {
        // The open itself landed on a closed standard fd: it stays open as that one.
        let _ = fd.into_raw_fd();
    }
    result
}

/// Replaces this process with `argv[0]` (an absolute path), passing `argv` and the current
/// environment; returns only on failure. Through `std`'s `exec`, which also hands the new
/// program the default `SIGPIPE` disposition and an empty signal mask (as a fresh init
/// expects; Rust programs ignore `SIGPIPE`).
pub fn exec(argv: &[CString]) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let mut args = argv.iter().map(|a| OsStr::from_bytes(a.as_bytes()));
    let Some(program) = args.next() else {
        return Errno::INVAL.into();
    };
    std::process::Command::new(program).args(args).exec()
}
