//! The one way rustlive walks a path it does not trust (a mounted image, the new root, a tree
//! handed to the boot server's tools): one component at a time from a directory fd, never
//! following a symlink, optionally never leaving one filesystem.
//!
//! Each directory is opened relative to its parent with
//! `O_RDONLY|O_DIRECTORY|O_NOFOLLOW|O_CLOEXEC`: a symlink fails the open (`ENOTDIR` or
//! `ELOOP`) instead of being followed, and anything else that is not a directory (a device
//! node, a FIFO) fails it (`ENOTDIR`) before the kernel opens it for real; a failed open is
//! then told apart by a `fstatat` that does not follow either. That is what `openat2`'s
//! `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS` gives, but it works on kernels without `openat2` (the
//! long-lived clusters' 4.18), lets a caller create missing directories on the way, and tells
//! the caller *what* stopped the walk ([`Step`]), so that each one keeps its own errors and its
//! own idea of what is refused. A name is one component: `/`, `.`, `..` and the empty name are
//! refused with `EINVAL`, so a walk goes down only, or back up with [`Walk::up`], never above
//! where it started.
//!
//! A caller that resolves symlinks itself, inside a root (`root::rootfs`), reads them with
//! [`Walk::read_link`] and decides where to go; the walker still never follows one.

use super::fs::{FileType, Stat};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// What one [`Walk::step`] found under a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A directory: the walk is now in it.
    Entered,
    /// Nothing has that name.
    Missing,
    /// A symbolic link, not followed (a dangling one too).
    Symlink,
    /// Something that is not a directory, of this type; not opened.
    NotDir(FileType),
    /// On another filesystem than the start, and the walk keeps to one
    /// ([`Walk::one_filesystem`]).
    OtherFilesystem,
}

/// A position in a directory tree: the start and every directory stepped into since, each an
/// open fd, so that [`Walk::up`] goes back without looking a name up again.
#[derive(Debug)]
pub struct Walk {
    start: OwnedFd,
    /// Directories entered from `start`, deepest last.
    below: Vec<OwnedFd>,
    /// The start's device, when the walk must stay on its filesystem.
    dev: Option<u64>,
}

impl Walk {
    /// Starts at the directory `path`; a symlink at `path` itself is followed (the caller
    /// named it).
    pub fn open(path: &Path) -> Result<Walk, Errno> {
        Self::start(path, OFlags::empty())
    }

    /// Starts at the directory `path`, which must not be a symlink itself.
    pub fn open_no_follow(path: &Path) -> Result<Walk, Errno> {
        Self::start(path, OFlags::NOFOLLOW)
    }

    fn start(path: &Path, extra: OFlags) -> Result<Walk, Errno> {
        let start = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | extra,
            Mode::empty(),
        )?;
        Ok(Walk::from_fd(start))
    }

    /// Starts at an open directory.
    pub fn from_fd(dir: OwnedFd) -> Walk {
        Walk {
            start: dir,
            below: Vec::new(),
            dev: None,
        }
    }

    /// Makes every later step refuse a name on another filesystem than the start (a mount
    /// point, or under one) with [`Step::OtherFilesystem`].
    pub fn one_filesystem(mut self) -> Result<Walk, Errno> {
        self.dev = Some(rustix::fs::fstat(&self.start)?.st_dev);
        Ok(self)
    }

    /// Whether what `st` describes is on the start's filesystem, when the walk keeps to one
    /// (for a last name looked at with [`Walk::stat`]); always true otherwise.
    pub fn on_its_filesystem(&self, st: &Stat) -> bool {
        self.dev.is_none_or(|d| d == st.st_dev)
    }

    /// The directory the walk is in.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.below.last().unwrap_or(&self.start).as_fd()
    }

    /// The directory the walk is in, as an fd of its own.
    pub fn into_dir(mut self) -> OwnedFd {
        self.below.pop().unwrap_or(self.start)
    }

    /// How many directories below the start the walk is.
    pub fn depth(&self) -> usize {
        self.below.len()
    }

    /// Looks at `name` in the current directory and, when it is a directory (on the start's
    /// filesystem, if required), goes into it. `ELOOP`/`ENOTDIR` from the open are answered
    /// by a look at what the name is; any other error is returned.
    pub fn step(&mut self, name: impl AsRef<Path>) -> Result<Step, Errno> {
        let name = one_component(name.as_ref())?;
        let fd = match super::fs::open_dir_at(self.dir(), name) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => return Ok(Step::Missing),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                return Ok(match self.stat(name)? {
                    None => Step::Missing,
                    Some(st) => match FileType::from_raw_mode(st.st_mode) {
                        FileType::Symlink => Step::Symlink,
                        _ if self.dev.is_some_and(|d| d != st.st_dev) => Step::OtherFilesystem,
                        t => Step::NotDir(t),
                    },
                });
            }
            Err(e) => return Err(e),
        };
        if let Some(dev) = self.dev {
            if rustix::fs::fstat(&fd)?.st_dev != dev {
                return Ok(Step::OtherFilesystem);
            }
        }
        self.below.push(fd);
        Ok(Step::Entered)
    }

    /// Back to the parent directory; at the start, stays there.
    pub fn up(&mut self) {
        self.below.pop();
    }

    /// Back to the start.
    pub fn to_start(&mut self) {
        self.below.clear();
    }

    /// What `name` in the current directory is, not following a symlink; `None` when absent.
    pub fn stat(&self, name: impl AsRef<Path>) -> Result<Option<Stat>, Errno> {
        let name = one_component(name.as_ref())?;
        match super::fs::stat_at(self.dir(), name) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Opens the file `name` in the current directory read-only, never following a symlink
    /// (`ELOOP`), never blocking on a FIFO and never taking a terminal as controlling tty;
    /// `None` when absent. The caller checks the type of what it got (`fstat`).
    pub fn open_file(&self, name: impl AsRef<Path>) -> Result<Option<OwnedFd>, Errno> {
        let name = one_component(name.as_ref())?;
        match rustix::fs::openat(
            self.dir(),
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The target of the symlink `name` in the current directory (`EINVAL` if it is not one).
    pub fn read_link(&self, name: impl AsRef<Path>) -> Result<PathBuf, Errno> {
        let name = one_component(name.as_ref())?;
        let target = rustix::fs::readlinkat(self.dir(), name, Vec::new())?;
        Ok(PathBuf::from(std::ffi::OsString::from_vec(
            target.into_bytes(),
        )))
    }
}

/// `name` when it is a single path component that goes down: not empty, no `/`, not `.` or
/// `..`.
fn one_component(name: &Path) -> Result<&Path, Errno> {
    match name.as_os_str().as_bytes() {
        b"" | b"." | b".." => Err(Errno::INVAL),
        b if b.contains(&b'/') => Err(Errno::INVAL),
        _ => Ok(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/file"), "x").unwrap();
        symlink("b", d.path().join("a/link")).unwrap();
        symlink("/nonexistent", d.path().join("a/dangling")).unwrap();
        d
    }

    #[test]
    fn steps_down_without_following_symlinks() {
        let d = tree();
        let mut w = Walk::open(d.path()).unwrap();
        assert_eq!(w.step("a").unwrap(), Step::Entered);
        assert_eq!(w.step("link").unwrap(), Step::Symlink);
        assert_eq!(w.step("dangling").unwrap(), Step::Symlink);
        assert_eq!(w.step("file").unwrap(), Step::NotDir(FileType::RegularFile));
        assert_eq!(w.step("nope").unwrap(), Step::Missing);
        assert_eq!(w.depth(), 1);
        assert_eq!(w.read_link("link").unwrap(), Path::new("b"));
        assert_eq!(w.read_link("file").unwrap_err(), Errno::INVAL);
        assert_eq!(w.open_file("link").unwrap_err(), Errno::LOOP);
        assert!(w.open_file("file").unwrap().is_some());
        assert!(w.open_file("nope").unwrap().is_none());
        let st = w.stat("link").unwrap().unwrap();
        assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
        assert!(w.stat("nope").unwrap().is_none());
        assert_eq!(w.step("b").unwrap(), Step::Entered);
        w.up();
        w.up();
        w.up();
        assert_eq!(w.depth(), 0);
        assert_eq!(w.step("a").unwrap(), Step::Entered);
        w.to_start();
        assert_eq!(w.depth(), 0);
    }

    #[test]
    fn names_are_single_components() {
        let d = tree();
        let mut w = Walk::open(d.path()).unwrap();
        for bad in ["", ".", "..", "a/b", "/a", "a/"] {
            assert_eq!(w.step(bad).unwrap_err(), Errno::INVAL, "{bad:?}");
            assert_eq!(w.stat(bad).unwrap_err(), Errno::INVAL, "{bad:?}");
            assert_eq!(w.open_file(bad).unwrap_err(), Errno::INVAL, "{bad:?}");
        }
    }

    #[test]
    fn the_start_may_be_refused_as_a_symlink() {
        let d = tree();
        let link = d.path().join("to-a");
        symlink("a", &link).unwrap();
        assert!(Walk::open(&link).is_ok());
        // ENOTDIR or ELOOP: O_DIRECTORY is checked first on current kernels.
        let e = Walk::open_no_follow(&link).unwrap_err();
        assert!(matches!(e, Errno::NOTDIR | Errno::LOOP), "{e}");
        let w = Walk::open(&d.path().join("a/file")).unwrap_err();
        assert_eq!(w, Errno::NOTDIR);
    }

    #[test]
    fn one_filesystem_stops_at_mount_points() {
        if !crate::support::testing::is_root() {
            crate::support::testing::skip("mounting a tmpfs needs root");
            return;
        }
        let d = tree();
        let mnt = d.path().join("a/b");
        let m = crate::sys::mount::MountGuard::mount(
            Path::new("tmpfs"),
            &mnt,
            "tmpfs",
            crate::sys::mount::MountFlags::empty(),
            Some("size=1M"),
        )
        .unwrap();
        let mut w = Walk::open(d.path()).unwrap().one_filesystem().unwrap();
        assert_eq!(w.step("a").unwrap(), Step::Entered);
        assert_eq!(w.step("b").unwrap(), Step::OtherFilesystem);
        assert!(w.on_its_filesystem(&w.stat("file").unwrap().unwrap()));
        assert!(!w.on_its_filesystem(&w.stat("b").unwrap().unwrap()));
        let mut free = Walk::open(d.path()).unwrap();
        free.step("a").unwrap();
        assert!(free.on_its_filesystem(&free.stat("b").unwrap().unwrap()));
        assert_eq!(free.step("b").unwrap(), Step::Entered);
        drop(m);
    }
}
