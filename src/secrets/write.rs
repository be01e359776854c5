//! The safe writer: files placed inside the new root without ever following a symlink.
//!
//! Every path is walked one component at a time from a directory fd of the new root, each
//! directory opened `O_DIRECTORY|O_NOFOLLOW` relative to its parent ([`Walk`]). That is what
//! `openat2`'s `RESOLVE_IN_ROOT|RESOLVE_NO_SYMLINKS` would give, but it also works on kernels
//! older than 5.6 and lets missing parents be created on the way. Bundle paths are already normalized (no `..`,
//! no empty component, see [`super::bundle::check_path`]), so the walk cannot climb out of the
//! root; a symlink anywhere, a parent directory or the destination itself, stops the entry.
//!
//! A file is created `O_CREAT|O_EXCL` with mode 0000, filled, `fchown`ed, then `fchmod`ed to its
//! final mode: no one but root can open it before it has its final owner and mode, whatever the
//! umask. A file the image already has is replaced by creating a temporary file the same way in
//! the same directory and `renameat`ing it over the old one.
//!
//! A bundle lands whole or not at all ([`Transaction`]): every file is first written complete
//! under a temporary name next to its destination (this is where a full overlay fails, with
//! ENOSPC), and only when all of them are written are they renamed into place. A failure before
//! that removes every temporary file and every directory the transaction created.

use super::bundle::Entry;
use crate::sys::fs::{self as sfs, FileType};
use crate::sys::walk::{Step, Walk};
use crate::sys::Errno;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Why a path cannot be written safely, or the syscall that failed.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot open the new root {}", .0.display())]
    OpenRoot(PathBuf, #[source] io::Error),
    #[error("{0} is a symbolic link in the new root; nothing is written through a symlink")]
    Symlink(String),
    #[error("{0} exists in the new root and is not a directory")]
    NotDir(String),
    #[error("{0} exists in the new root and is not a regular file")]
    NotFile(String),
    #[error("cannot {what} {path} in the new root")]
    Io {
        what: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a str) -> impl FnOnce(Errno) -> WriteError + 'a {
    move |e| WriteError::Io {
        what,
        path: path.to_string(),
        source: e.into(),
    }
}

/// A directory fd on the new root; every path below is resolved from it.
#[derive(Debug)]
pub struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

impl RootDir {
    pub fn open(path: &Path) -> Result<RootDir, WriteError> {
        let walk =
            Walk::open(path).map_err(|e| WriteError::OpenRoot(path.to_path_buf(), e.into()))?;
        Ok(RootDir {
            fd: walk.into_dir(),
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Checks, without changing anything, that `path` could be written: no existing component
    /// is a symlink or a non-directory, and the destination is absent or a regular file.
    pub fn check(&self, path: &str) -> Result<(), WriteError> {
        let (parents, leaf) = split(path);
        let Some(dir) = self.walk(&parents, false)? else {
            return Ok(());
        };
        match leaf_type(&dir, leaf, path)? {
            None | Some(FileType::RegularFile) => Ok(()),
            Some(FileType::Symlink) => Err(WriteError::Symlink(path.into())),
            Some(_) => Err(WriteError::NotFile(path.into())),
        }
    }

    /// Writes one entry in place at once (a bundle of one file); see [`Transaction`] for more.
    pub fn install(&self, e: &Entry) -> Result<(), WriteError> {
        let mut tx = Transaction::new(self);
        tx.stage(e)?;
        tx.commit().map(|_| ()).map_err(|(_, err)| err)
    }

    /// Reads a small file of the new root (`/etc/passwd`), refusing symlinks on the way.
    /// `Ok(None)` when it does not exist.
    pub fn read_file(&self, path: &str, max: u64) -> Result<Option<Vec<u8>>, WriteError> {
        let (parents, leaf) = split(path);
        let Some(dir) = self.walk(&parents, false)? else {
            return Ok(None);
        };
        let fd = match dir.open_file(leaf) {
            Ok(Some(fd)) => fd,
            Ok(None) => return Ok(None),
            Err(Errno::LOOP) => return Err(WriteError::Symlink(path.into())),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        let st = sfs::stat(fd.as_fd()).map_err(io_err("stat", path))?;
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            return Err(WriteError::NotFile(path.into()));
        }
        let mut buf = Vec::new();
        std::fs::File::from(fd)
            .take(max)
            .read_to_end(&mut buf)
            .map_err(|e| WriteError::Io {
                what: "read",
                path: path.into(),
                source: e,
            })?;
        Ok(Some(buf))
    }

    /// Opens each parent in turn without following symlinks; with `create`, makes the missing
    /// ones `0755 root:root`, else returns `None` at the first missing one.
    fn walk(&self, parents: &[&str], create: bool) -> Result<Option<Walk>, WriteError> {
        self.walk_tracking(parents, create, &mut Vec::new())
    }

    /// [`RootDir::walk`] that records each directory it had to create (parent fd, name).
    fn walk_tracking(
        &self,
        parents: &[&str],
        create: bool,
        created: &mut Vec<(OwnedFd, String)>,
    ) -> Result<Option<Walk>, WriteError> {
        let root = self.fd.try_clone().map_err(|e| WriteError::Io {
            what: "open",
            path: "/".into(),
            source: e,
        })?;
        let mut walk = Walk::from_fd(root);
        let mut shown = String::new();
        for name in parents {
            shown.push('/');
            shown.push_str(name);
            if !enter(&mut walk, name, &shown)? {
                if !create {
                    return Ok(None);
                }
                make_dir(&mut walk, name, &shown, created)?;
            }
        }
        Ok(Some(walk))
    }
}

/// `/a/b/c` into (`[a, b]`, `c`). The path is validated: absolute, normalized, not `/`.
fn split(path: &str) -> (Vec<&str>, &str) {
    let mut comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    let leaf = comps.pop().unwrap_or_default();
    (comps, leaf)
}

/// Steps into the directory `name`; `false` when it does not exist. A symlink or anything else
/// that is not a directory stops the entry.
fn enter(walk: &mut Walk, name: &str, shown: &str) -> Result<bool, WriteError> {
    match walk.step(name) {
        Ok(Step::Entered) => Ok(true),
        Ok(Step::Missing) => Ok(false),
        Ok(Step::Symlink) => Err(WriteError::Symlink(shown.into())),
        Ok(Step::NotDir(_) | Step::OtherFilesystem) => Err(WriteError::NotDir(shown.into())),
        Err(e) => Err(io_err("open", shown)(e)),
    }
}

/// Creates the directory `name` `0755 root:root` and steps into it, recording it (parent fd,
/// name) in `created`.
fn make_dir(
    walk: &mut Walk,
    name: &str,
    shown: &str,
    created: &mut Vec<(OwnedFd, String)>,
) -> Result<(), WriteError> {
    match sfs::make_dir_at(walk.dir(), name, 0o755) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(io_err("create directory", shown)(e)),
    }
    let parent = walk.dir().try_clone_to_owned();
    if !enter(walk, name, shown)? {
        return Err(WriteError::Io {
            what: "open",
            path: shown.into(),
            source: io::ErrorKind::NotFound.into(),
        });
    }
    // The umask may have narrowed the mode, and the owner must not depend on who runs this.
    sfs::set_owner(walk.dir(), 0, 0).map_err(io_err("chown directory", shown))?;
    sfs::set_mode(walk.dir(), 0o755).map_err(io_err("chmod directory", shown))?;
    if let Ok(parent) = parent {
        created.push((parent, name.to_string()));
    }
    Ok(())
}

/// The type of `name` in the walk's directory, not following a symlink; `None` when absent.
fn leaf_type(dir: &Walk, name: &str, shown: &str) -> Result<Option<FileType>, WriteError> {
    match dir.stat(name) {
        Ok(st) => Ok(st.map(|st| FileType::from_raw_mode(st.st_mode))),
        Err(e) => Err(io_err("stat", shown)(e)),
    }
}

/// Creates `name` with no permission bits at all; `None` when it already exists.
fn create_excl(dir: BorrowedFd, name: &str, shown: &str) -> Result<Option<OwnedFd>, WriteError> {
    match sfs::create_new_at(dir, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::EXIST) => Ok(None),
        Err(err) => Err(io_err("create", shown)(err)),
    }
}

/// Fills a file made by [`create_excl`], then sets its owner and final mode. On failure the
/// partial file is removed.
fn fill(dir: BorrowedFd, name: &str, fd: OwnedFd, e: &Entry) -> Result<(), WriteError> {
    let shown = e.path.as_str();
    let mut f = std::fs::File::from(fd);
    let res = f
        .write_all(&e.content)
        .map_err(|err| WriteError::Io {
            what: "write",
            path: shown.into(),
            source: err,
        })
        .and_then(|()| sfs::set_owner(&f, e.uid, e.gid).map_err(io_err("chown", shown)))
        .and_then(|()| sfs::set_mode(&f, e.mode).map_err(io_err("chmod", shown)));
    if res.is_err() {
        let _ = sfs::remove_file_at(dir, name);
    }
    res
}

/// One file written complete under a temporary name in its destination's directory.
struct StagedFile {
    dir: OwnedFd,
    tmp: String,
    leaf: String,
    path: String,
    /// The destination did not exist when staged: it must not appear meanwhile.
    new: bool,
}

/// Files written under temporary names, renamed into place together by [`Transaction::commit`].
/// Dropped without a commit (an error, a panic unwinding), it removes every temporary file and
/// then every directory it created, newest first.
pub struct Transaction<'r> {
    root: &'r RootDir,
    staged: Vec<StagedFile>,
    dirs: Vec<(OwnedFd, String)>,
}

impl<'r> Transaction<'r> {
    pub fn new(root: &'r RootDir) -> Transaction<'r> {
        Transaction {
            root,
            staged: Vec::new(),
            dirs: Vec::new(),
        }
    }

    /// Writes `e` under a temporary name next to its destination, creating missing parents
    /// `0755 root:root`; nothing is visible at the destination yet.
    pub fn stage(&mut self, e: &Entry) -> Result<(), WriteError> {
        let (parents, leaf) = split(&e.path);
        let dir = self
            .root
            .walk_tracking(&parents, true, &mut self.dirs)?
            .ok_or_else(|| WriteError::Io {
                what: "create the parents of",
                path: e.path.clone(),
                source: io::ErrorKind::NotFound.into(),
            })?;
        let new = match leaf_type(&dir, leaf, &e.path)? {
            None => true,
            Some(FileType::RegularFile) => false,
            Some(FileType::Symlink) => return Err(WriteError::Symlink(e.path.clone())),
            Some(_) => return Err(WriteError::NotFile(e.path.clone())),
        };
        let dir = dir.into_dir();
        let pid = std::process::id();
        let serial = self.staged.len();
        for n in 0..100 {
            let tmp = format!(".rustlive-secret.{pid}.{serial}.{n}");
            // A leftover of the same name: try the next one.
            let Some(fd) = create_excl(dir.as_fd(), &tmp, &e.path)? else {
                continue;
            };
            fill(dir.as_fd(), &tmp, fd, e)?;
            self.staged.push(StagedFile {
                dir,
                tmp,
                leaf: leaf.to_string(),
                path: e.path.clone(),
                new,
            });
            return Ok(());
        }
        Err(WriteError::Io {
            what: "find a free temporary name for",
            path: e.path.clone(),
            source: io::ErrorKind::AlreadyExists.into(),
        })
    }

    /// Renames every staged file into place. Renames within one directory need no new space,
    /// so once every file is staged they do not fail in practice; if one does, the error says
    /// how many had landed (returned with it) and the rest are removed.
    pub fn commit(mut self) -> Result<usize, (usize, WriteError)> {
        let staged = std::mem::take(&mut self.staged);
        let total = staged.len();
        let mut rest = staged.into_iter().enumerate();
        for (i, f) in rest.by_ref() {
            if let Err(err) = rename_into_place(&f) {
                let _ = sfs::remove_file_at(&f.dir, &f.tmp);
                for (_, left) in rest {
                    let _ = sfs::remove_file_at(&left.dir, &left.tmp);
                }
                // Directories holding files that landed stay.
                self.dirs.clear();
                return Err((i, err));
            }
        }
        self.dirs.clear();
        Ok(total)
    }
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        for f in self.staged.drain(..).rev() {
            let _ = sfs::remove_file_at(&f.dir, &f.tmp);
        }
        for (parent, name) in self.dirs.drain(..).rev() {
            let _ = sfs::remove_dir_at(&parent, &name);
        }
    }
}

/// `renameat` of a staged file over its destination; a destination that did not exist when it
/// was staged must still not exist (RENAME_NOREPLACE, where the filesystem supports it).
fn rename_into_place(f: &StagedFile) -> Result<(), WriteError> {
    if f.new {
        match sfs::rename_new_at(&f.dir, &f.tmp, &f.leaf) {
            Ok(()) => return Ok(()),
            Err(Errno::INVAL | Errno::NOSYS) => {}
            Err(Errno::EXIST) => {
                return Err(WriteError::Io {
                    what: "create",
                    path: f.path.clone(),
                    source: io::ErrorKind::AlreadyExists.into(),
                })
            }
            Err(e) => return Err(io_err("rename into place", &f.path)(e)),
        }
    }
    sfs::rename_at(&f.dir, &f.tmp, &f.leaf).map_err(io_err("rename into place", &f.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use zeroize::Zeroizing;

    fn entry(path: &str, content: &[u8], mode: u32) -> Entry {
        Entry {
            path: path.into(),
            mode,
            uid: crate::sys::process::uid(),
            gid: crate::sys::process::gid(),
            content: Zeroizing::new(content.to_vec()),
        }
    }

    fn is_root() -> bool {
        crate::sys::process::is_root()
    }

    #[test]
    fn creates_parents_and_file_with_exact_modes() {
        if !is_root() {
            crate::support::testing::skip("creating root-owned parents needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let root = RootDir::open(t.path()).unwrap();
        root.install(&entry("/etc/new/dir/key", b"k1", 0o640))
            .unwrap();
        let f = t.path().join("etc/new/dir/key");
        assert_eq!(std::fs::read(&f).unwrap(), b"k1");
        assert_eq!(f.metadata().unwrap().permissions().mode() & 0o7777, 0o640);
        let d = t.path().join("etc/new");
        let md = d.metadata().unwrap();
        assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o755, 0, 0));
    }

    #[test]
    fn replaces_an_existing_file_and_leaves_no_temporary() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/key"), b"old content from the image").unwrap();
        let root = RootDir::open(t.path()).unwrap();
        root.check("/etc/key").unwrap();
        root.install(&entry("/etc/key", b"new", 0o600)).unwrap();
        assert_eq!(std::fs::read(t.path().join("etc/key")).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(t.path().join("etc"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["key"]);
    }

    #[test]
    fn refuses_symlinks_anywhere() {
        let t = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("victim"), b"v").unwrap();
        std::os::unix::fs::symlink(outside.path(), t.path().join("etc")).unwrap();
        std::fs::create_dir(t.path().join("var")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), t.path().join("var/key"))
            .unwrap();
        let root = RootDir::open(t.path()).unwrap();
        for (p, at) in [
            ("/etc/x", "/etc"),
            ("/etc/a/b", "/etc"),
            ("/var/key", "/var/key"),
        ] {
            match root.check(p) {
                Err(WriteError::Symlink(s)) => assert_eq!(s, at),
                other => panic!("{p}: {other:?}"),
            }
            assert!(matches!(
                root.install(&entry(p, b"s", 0o600)),
                Err(WriteError::Symlink(_))
            ));
        }
        assert_eq!(std::fs::read(outside.path().join("victim")).unwrap(), b"v");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_non_directories_and_non_files() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("file"), b"").unwrap();
        std::fs::create_dir(t.path().join("dir")).unwrap();
        let root = RootDir::open(t.path()).unwrap();
        assert!(matches!(root.check("/file/x"), Err(WriteError::NotDir(p)) if p == "/file"));
        assert!(matches!(root.check("/dir"), Err(WriteError::NotFile(p)) if p == "/dir"));
        assert!(root.check("/missing/deep/x").is_ok());
    }

    #[test]
    fn reads_files_without_following_symlinks() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), b"root:x:0:0::/:\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", t.path().join("etc/group")).unwrap();
        let root = RootDir::open(t.path()).unwrap();
        assert_eq!(
            root.read_file("/etc/passwd", 1 << 20).unwrap().unwrap(),
            b"root:x:0:0::/:\n"
        );
        assert!(root.read_file("/etc/shadow", 1 << 20).unwrap().is_none());
        assert!(root.read_file("/nope/passwd", 1 << 20).unwrap().is_none());
        assert!(matches!(
            root.read_file("/etc/group", 1 << 20),
            Err(WriteError::Symlink(_))
        ));
    }
}
