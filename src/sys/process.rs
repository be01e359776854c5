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

/// `setsid(2)`: a session of its own, so that no terminal's hang-up and no process group
/// signal of the parent reaches this process.
pub fn new_session() -> Result<(), Errno> {
    rustix::process::setsid().map(|_| ())
}

/// The number of threads of this process (`Threads:` of `/proc/self/status`).
pub fn thread_count() -> std::io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    parse_threads(&status).ok_or_else(|| std::io::Error::other("no Threads: line"))
}

/// The `Threads:` count of a `/proc/PID/status` text.
pub fn parse_threads(status: &str) -> Option<u32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Proof, read from `/proc/self/status`, that the process had one thread when it was taken:
/// what [`drop_privileges`] needs (the kernel's credentials are per thread, and rustix changes
/// only the calling thread's). Take it right before, while `/proc` is still reachable, and start
/// no thread in between.
#[derive(Debug)]
pub struct SingleThreaded(());

/// [`SingleThreaded`], or an error saying how many threads there are.
pub fn single_threaded() -> std::io::Result<SingleThreaded> {
    match thread_count()? {
        1 => Ok(SingleThreaded(())),
        n => Err(std::io::Error::other(format!(
            "{n} threads: privileges can be dropped only while the process has one"
        ))),
    }
}

/// Drops every privilege of root for good: no supplementary groups, then real, effective and
/// saved gid and uid, and checks the uid is gone.
pub fn drop_privileges(_alone: &SingleThreaded, uid: u32, gid: u32) -> std::io::Result<()> {
    use rustix::process::{Gid, Uid};
    rustix::thread::set_thread_groups(&[])?;
    let g = Gid::from_raw(gid);
    rustix::thread::set_thread_res_gid(g, g, g)?;
    let u = Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(u, u, u)?;
    // Checked, not assumed: a uid that could be regained is no drop.
    if rustix::process::getuid().as_raw() != uid || rustix::process::geteuid().as_raw() != uid {
        return Err(std::io::Error::other("the uid did not change"));
    }
    Ok(())
}

/// Sets this process's name (`comm`, what `ps -o comm` and `top` show; at most 15 bytes):
/// a process started through `/proc/self/exe` would otherwise be called `exe`.
pub fn set_name(name: &std::ffi::CStr) -> Result<(), Errno> {
    rustix::thread::set_name(name)
}

/// Puts `fd` on standard input and standard output (the start-up pipes of a daemon, once it
/// has said it is ready).
pub fn stdin_stdout_to(fd: impl std::os::fd::AsFd) -> Result<(), Errno> {
    rustix::stdio::dup2_stdin(&fd)?;
    rustix::stdio::dup2_stdout(&fd)
}

/// `PR_SET_NO_NEW_PRIVS`: no exec of this process (or its children) gains privileges.
pub fn no_new_privs() -> Result<(), Errno> {
    rustix::thread::set_no_new_privs(true)
}

/// Caps the address space (`RLIMIT_AS`, soft and hard) at `bytes`: allocations beyond fail.
pub fn limit_address_space(bytes: u64) -> Result<(), Errno> {
    rustix::process::setrlimit(
        rustix::process::Resource::As,
        rustix::process::Rlimit {
            current: Some(bytes),
            maximum: Some(bytes),
        },
    )
}

/// Moves this process into a cgroup of its own, `/sys/fs/cgroup/NAME` (cgroup v2), out of the
/// unit that started it: a service's stop then no longer kills it. `Ok(false)` when there is
/// no cgroup v2 hierarchy (an initramfs without systemd mounts none).
pub fn move_to_own_cgroup(name: &str) -> std::io::Result<bool> {
    let root = Path::new("/sys/fs/cgroup");
    if !root.join("cgroup.procs").exists() || !root.join("cgroup.controllers").exists() {
        return Ok(false);
    }
    let dir = root.join(name);
    match std::fs::create_dir(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // "0" names the writing process itself.
    std::fs::write(dir.join("cgroup.procs"), b"0")?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_thread_count() {
        assert_eq!(
            parse_threads("Name:\tx\nThreads:\t7\nSigQ:\t0/1\n"),
            Some(7)
        );
        assert_eq!(parse_threads("Name:\tx\n"), None);
        assert_eq!(parse_threads("Threads:\tmany\n"), None);
        assert!(thread_count().unwrap() >= 1);
    }
}
