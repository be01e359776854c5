//! The one way the boot server's tools read and write files (`rustlive bundle`, `bundle seal`,
//! `rustlive initramfs`): they run as root next to the web root, on trees and directories other
//! people write into, so the node's writer's discipline (`secrets::write`) applies here too.
//!
//! - **Inputs named on the command line** ([`read_named`]: `bundle seal`'s input and `--ek`,
//!   `--ca`, `--init`, `--shell`) are the operator's choice: a symlink there is followed. What
//!   it leads to must be a regular file: its type is looked at before it is opened (a device is
//!   never opened), the open is `O_NONBLOCK` (a FIFO swapped in cannot hang it) and the open
//!   file is checked again with `fstat`.
//! - **Files inside a tree** ([`Dir`]: `NODES_DIR` and its node trees, `--kmoddir`,
//!   `--firmware-dir`, `--keys`, `.sealed/`, `EK_DIR`, existing outputs) are reached one
//!   component at a time from a directory fd with the no-follow walker ([`Walk`]). [`Dir::read`]
//!   refuses a symlink anywhere below the tree's top; [`Dir::read_resolving`] (kernel and
//!   firmware trees, which have links of their own) resolves a link itself, component by
//!   component inside the tree, and refuses one that would leave it (`..` above the top, an
//!   absolute target outside the tree's own path). Either way the file read is a regular file,
//!   never a FIFO, device or socket.
//! - **Every read is bounded** by a [`Limit`] that fits the file's purpose; a bigger file is an
//!   error naming the file and the limit, checked on the size before reading and on the bytes
//!   while reading.
//! - **Outputs** go into a [`Dir`] held open: [`Dir::write`] creates a temporary beside the
//!   target, `.NAME.<16 hex digits>.part`, with `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0, writes,
//!   sets the final mode with `fchmod` (whatever the umask), syncs and `renameat`s it over the
//!   target, so nothing is ever written through a link and a reader sees the old file or the new
//!   one. Subdirectories are opened (or created) with [`Dir::sub`] without following a link: a
//!   symlinked `WWW_DIR/by-mac` is refused, not written through. [`Dir::remove`] unlinks a name
//!   in the directory; nothing here truncates or zeroes a file, which would reach every other
//!   name of it.

use crate::secrets::bundle::MAX_BUNDLE_SIZE;
use crate::sys::fs::{self as sfs, FileType, Stat};
use crate::sys::walk::{Step, Walk};
use crate::sys::Errno;
use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};
use zeroize::Zeroizing;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

/// At most this many symlinks are resolved for one path (the kernel's own limit, `ELOOP`).
const MAX_LINKS: u32 = 40;

/// How many bytes of a file are read at most, and what such a file is (for the error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub bytes: u64,
    pub what: &'static str,
}

impl Limit {
    /// One file of a bundle tree: the bundle's own limit.
    pub const BUNDLE_FILE: Limit = Limit {
        bytes: MAX_BUNDLE_SIZE as u64,
        what: "a file of a secrets bundle",
    };
    /// A plain secrets bundle (`bundle seal`'s input).
    pub const BUNDLE: Limit = Limit {
        bytes: MAX_BUNDLE_SIZE as u64,
        what: "a secrets bundle",
    };
    /// A sealed output of `build-all` (the envelope of a bundle, base64 inside JSON, or that
    /// in a cpio): read only to compare it with what was sealed.
    pub const SEALED_OUTPUT: Limit = Limit {
        bytes: 4 * MIB,
        what: "a sealed secrets bundle",
    };
    /// `rustlive-bundle.json`: owners and MACs, a few lines.
    pub const MANIFEST: Limit = Limit {
        bytes: 64 * KIB,
        what: "a bundle manifest",
    };
    /// `NODES_DIR/.sealed/HOST`: one digest.
    pub const SEALED_STATE: Limit = Limit {
        bytes: 4 * KIB,
        what: "a sealing state file",
    };
    /// An EK public key or certificate (a few KiB with its chain).
    pub const EK: Limit = Limit {
        bytes: 64 * KIB,
        what: "an EK public key or certificate",
    };
    /// An image's `/etc/passwd` or `/etc/group`.
    pub const ACCOUNTS: Limit = Limit {
        bytes: 64 * MIB,
        what: "an account database",
    };
    /// `modules.dep`, `modules.alias`, … (a few MiB for a distribution kernel).
    pub const MODULE_INDEX: Limit = Limit {
        bytes: 64 * MIB,
        what: "a kernel module index",
    };
    /// One kernel module (the largest, uncompressed with debug info, are tens of MiB).
    pub const MODULE: Limit = Limit {
        bytes: 256 * MIB,
        what: "a kernel module",
    };
    /// One firmware file.
    pub const FIRMWARE: Limit = Limit {
        bytes: 256 * MIB,
        what: "a firmware file",
    };
    /// `/init` or the shell of an initramfs.
    pub const PROGRAM: Limit = Limit {
        bytes: 256 * MIB,
        what: "an executable",
    };
    /// A PEM CA bundle (a distribution's is about 200 KiB).
    pub const CA: Limit = Limit {
        bytes: 16 * MIB,
        what: "a CA bundle",
    };
    /// A minisign public key (two short lines).
    pub const SIGNING_KEY: Limit = Limit {
        bytes: 64 * KIB,
        what: "a signing key",
    };
    pub const KEY: Limit = Limit {
        bytes: 64 * KIB,
        what: "a public key",
    };
}

/// `1048576` as `1 MiB`, `65536` as `64 KiB`.
fn human(bytes: u64) -> String {
    let exact = |unit: u64| bytes >= unit && bytes.checked_rem(unit) == Some(0);
    match (exact(MIB), exact(KIB)) {
        (true, _) => format!("{} MiB", bytes >> 20),
        (false, true) => format!("{} KiB", bytes >> 10),
        _ => format!("{bytes} bytes"),
    }
}

/// The error for a path that should have been a directory: `t` is what it is, `None` when it is
/// a directory on another filesystem (a walk that stays on one).
fn not_a_directory(path: PathBuf, t: Option<FileType>) -> FileError {
    FileError::NotDirectory {
        path,
        kind: t.map_or("on another filesystem", sfs::describe),
    }
}

fn type_of(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Why a file was not read or written. Paths are shown quoted and escaped (`{:?}`): they come
/// from trees other people write into.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0:?} is a symbolic link; the boot server's tools do not follow one there")]
    Symlink(PathBuf),
    #[error("{path:?} is {kind}, not a regular file")]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error("{path:?} is {kind}, not a directory")]
    NotDirectory { path: PathBuf, kind: &'static str },
    #[error("{path:?} is over the {} limit for {what}", human(*limit))]
    TooLarge {
        path: PathBuf,
        limit: u64,
        what: &'static str,
    },
    #[error("{path:?} leads outside {tree:?}; nothing outside it is read")]
    Outside { path: PathBuf, tree: PathBuf },
    #[error("{0:?}: too many levels of symbolic links")]
    Loop(PathBuf),
    #[error("cannot {op} {path:?}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FileError {
    /// Whether this is "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Errno) -> FileError + 'a {
    move |e| FileError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// A file's bytes, in a buffer zeroed on drop (they may be secrets), and its permission bits.
pub struct Content {
    pub bytes: Zeroizing<Vec<u8>>,
    pub mode: u32,
}

/// The length and mode, never the bytes.
impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Content")
            .field("len", &self.bytes.len())
            .field("mode", &format_args!("{:04o}", self.mode))
            .finish()
    }
}

/// Refuses what `st` describes unless it is a regular file.
fn check_regular(st: &Stat, path: &Path) -> Result<(), FileError> {
    match type_of(st) {
        FileType::RegularFile => Ok(()),
        FileType::Symlink => Err(FileError::Symlink(path.to_path_buf())),
        t => Err(FileError::NotRegular {
            path: path.to_path_buf(),
            kind: sfs::describe(t),
        }),
    }
}

/// Reads an open file: a regular file (checked on the descriptor), at most `limit` bytes.
fn read_open(fd: OwnedFd, path: &Path, limit: Limit) -> Result<Content, FileError> {
    let st = sfs::stat(fd.as_fd()).map_err(io_err("stat", path))?;
    check_regular(&st, path)?;
    let too_large = || FileError::TooLarge {
        path: path.to_path_buf(),
        limit: limit.bytes,
        what: limit.what,
    };
    let size = u64::try_from(st.st_size).unwrap_or(0);
    if size > limit.bytes {
        return Err(too_large());
    }
    sfs::set_blocking(fd.as_fd()).map_err(io_err("read", path))?;
    // Sized once (plus a byte to see growth): a secret is not left behind in a grown buffer.
    let capacity = usize::try_from(size).unwrap_or(0).saturating_add(1);
    let mut bytes = Zeroizing::new(Vec::with_capacity(capacity));
    std::fs::File::from(fd)
        .take(limit.bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| FileError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        })?;
    if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > limit.bytes {
        return Err(too_large());
    }
    Ok(Content {
        bytes,
        mode: st.st_mode & 0o7777,
    })
}

/// Reads a file the operator named (a symlink at `path` is followed): a regular file of at most
/// `limit` bytes. Its type is checked before it is opened, so a device is never opened, and the
/// open never blocks on a FIFO.
pub fn read_named(path: &Path, limit: Limit) -> Result<Content, FileError> {
    let st = sfs::stat_path(path).map_err(io_err("read", path))?;
    check_regular(&st, path)?;
    let fd = sfs::open_nonblocking(path).map_err(io_err("open", path))?;
    read_open(fd, path, limit)
}

/// The temporary name an output `name` is written under: `.NAME.<16 hex digits>.part`.
pub fn temp_name(name: &OsStr) -> Result<OsString, Errno> {
    let mut r = [0u8; 8];
    crate::sys::random::fill(&mut r)?;
    let mut t = OsString::from(".");
    t.push(name);
    t.push(".");
    t.push(r.iter().map(|b| format!("{b:02x}")).collect::<String>());
    t.push(".part");
    Ok(t)
}

/// A directory held open: every name below it is looked up from this fd, never through a
/// symlink (see the module doc).
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    path: PathBuf,
    /// The absolute paths this directory is known by (as named, and with every link resolved),
    /// against which [`Dir::read_resolving`] takes an absolute link target.
    roots: Vec<PathBuf>,
}

impl Dir {
    /// The directory `path` the operator named; a symlink at `path` itself is followed.
    pub fn open(path: &Path) -> Result<Dir, FileError> {
        let walk = Walk::open(path).map_err(io_err("open the directory", path))?;
        Ok(Self::at(walk.into_dir(), path))
    }

    /// [`Dir::open`], `None` when nothing has that name.
    pub fn try_open(path: &Path) -> Result<Option<Dir>, FileError> {
        match Self::open(path) {
            Ok(d) => Ok(Some(d)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The directory `path`, which must not be a symlink itself (a directory found inside a
    /// tree, like a node's directory in `NODES_DIR`).
    pub fn open_no_follow(path: &Path) -> Result<Dir, FileError> {
        match Walk::open_no_follow(path) {
            Ok(w) => Ok(Self::at(w.into_dir(), path)),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let st = sfs::stat_at(
                    open_parent(path)?.as_fd(),
                    path.file_name().unwrap_or(path.as_os_str()),
                )
                .map_err(io_err("open the directory", path))?;
                match type_of(&st) {
                    FileType::Symlink => Err(FileError::Symlink(path.to_path_buf())),
                    t => Err(FileError::NotDirectory {
                        path: path.to_path_buf(),
                        kind: sfs::describe(t),
                    }),
                }
            }
            Err(e) => Err(io_err("open the directory", path)(e)),
        }
    }

    /// The directory `path` the operator named, created (with its parents, mode 0755 less the
    /// umask) when missing.
    pub fn create(path: &Path) -> Result<Dir, FileError> {
        std::fs::create_dir_all(path).map_err(|source| FileError::Io {
            op: "create the directory",
            path: path.to_path_buf(),
            source,
        })?;
        Self::open(path)
    }

    /// The directory of an output file the operator named (`-o FILE`; its parents may be
    /// symlinks, the operator's choice) and the file's name in it.
    pub fn open_parent_of(file: &Path) -> Result<(Dir, OsString), FileError> {
        let name = file
            .file_name()
            .filter(|n| *n != "." && *n != "..")
            .ok_or_else(|| FileError::Io {
                op: "write",
                path: file.to_path_buf(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "not a file name"),
            })?;
        let parent = file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Ok((Self::open(parent)?, name.to_os_string()))
    }

    fn at(fd: OwnedFd, path: &Path) -> Dir {
        let mut roots = Vec::new();
        if path.is_absolute() {
            roots.push(path.to_path_buf());
        }
        if let Ok(real) = std::fs::canonicalize(path) {
            if !roots.contains(&real) {
                roots.push(real);
            }
        }
        Dir {
            fd,
            path: path.to_path_buf(),
            roots,
        }
    }

    /// The path it was opened by (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn walk(&self) -> Result<Walk, FileError> {
        let fd = self.fd.try_clone().map_err(|source| FileError::Io {
            op: "open the directory",
            path: self.path.clone(),
            source,
        })?;
        Ok(Walk::from_fd(fd))
    }

    /// What `name` is in this directory, not following a symlink; `None` when absent.
    pub fn kind(&self, name: impl AsRef<Path>) -> Result<Option<FileType>, FileError> {
        let name = name.as_ref();
        match sfs::stat_at(self.fd.as_fd(), name) {
            Ok(st) => Ok(Some(type_of(&st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err("stat", &self.path.join(name))(e)),
        }
    }

    /// The permission bits of `name` when it is a regular file (not a link to one); `None`
    /// otherwise.
    pub fn mode_of_file(&self, name: impl AsRef<Path>) -> Result<Option<u32>, FileError> {
        let name = name.as_ref();
        match sfs::stat_at(self.fd.as_fd(), name) {
            Ok(st) if type_of(&st) == FileType::RegularFile => Ok(Some(st.st_mode & 0o7777)),
            Ok(_) | Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(io_err("stat", &self.path.join(name))(e)),
        }
    }

    /// The names in this directory (unsorted, without `.` and `..`).
    pub fn names(&self) -> Result<Vec<OsString>, FileError> {
        sfs::list_dir(self.fd.as_fd()).map_err(io_err("list", &self.path))
    }

    /// The subdirectory `name`, never through a symlink (refused, like anything else that is
    /// not a directory). When it is missing: `None`, or with `create`, made with that mode
    /// (exactly, whatever the umask).
    pub fn sub(
        &self,
        name: impl AsRef<Path>,
        create: Option<u32>,
    ) -> Result<Option<Dir>, FileError> {
        let name = name.as_ref();
        let shown = self.path.join(name);
        let mut walk = self.walk()?;
        let mut created = false;
        loop {
            match walk
                .step(name)
                .map_err(io_err("open the directory", &shown))?
            {
                Step::Entered => break,
                Step::Missing => {
                    let Some(mode) = create.filter(|_| !created) else {
                        return Ok(None);
                    };
                    match sfs::make_dir_at(self.fd.as_fd(), name, mode) {
                        Ok(()) => created = true,
                        Err(Errno::EXIST) => {}
                        Err(e) => return Err(io_err("create the directory", &shown)(e)),
                    }
                }
                Step::Symlink => return Err(FileError::Symlink(shown)),
                Step::NotDir(t) => return Err(not_a_directory(shown, Some(t))),
                Step::OtherFilesystem => return Err(not_a_directory(shown, None)),
            }
        }
        if let Some(mode) = create.filter(|_| created) {
            sfs::set_mode(walk.dir(), mode).map_err(io_err("chmod", &shown))?;
        }
        let mut roots = Vec::new();
        for r in &self.roots {
            roots.push(r.join(name));
        }
        Ok(Some(Dir {
            fd: walk.into_dir(),
            path: shown,
            roots,
        }))
    }

    /// Walks down `parents` without following a symlink; `None` at the first missing one.
    fn walk_down(&self, parents: &[&OsStr]) -> Result<Option<Walk>, FileError> {
        let mut walk = self.walk()?;
        let mut at = self.path.clone();
        for name in parents {
            at.push(name);
            match walk.step(name).map_err(io_err("open the directory", &at))? {
                Step::Entered => {}
                Step::Missing => return Ok(None),
                Step::Symlink => return Err(FileError::Symlink(at)),
                Step::NotDir(t) => return Err(not_a_directory(at, Some(t))),
                Step::OtherFilesystem => return Err(not_a_directory(at, None)),
            }
        }
        Ok(Some(walk))
    }

    /// `rel`'s components, which must go down only (no `..`, not absolute).
    fn down<'a>(&self, rel: &'a Path) -> Result<Vec<&'a OsStr>, FileError> {
        rel.components()
            .filter(|c| *c != Component::CurDir)
            .map(|c| match c {
                Component::Normal(n) => Ok(n),
                _ => Err(FileError::Outside {
                    path: self.path.join(rel),
                    tree: self.path.clone(),
                }),
            })
            .collect()
    }

    /// The directory `rel` below this one, no component a symlink; `None` when missing.
    pub fn dir_at(&self, rel: &Path) -> Result<Option<Dir>, FileError> {
        let parts = self.down(rel)?;
        Ok(self.walk_down(&parts)?.map(|w| Dir {
            fd: w.into_dir(),
            path: self.path.join(rel),
            roots: self.roots.iter().map(|r| r.join(rel)).collect(),
        }))
    }

    /// Reads the file `rel` below this directory, no component of it a symlink: a regular file
    /// of at most `limit` bytes; `None` when it (or a directory on the way) does not exist.
    pub fn read(&self, rel: &Path, limit: Limit) -> Result<Option<Content>, FileError> {
        let shown = self.path.join(rel);
        let mut parts = self.down(rel)?;
        let Some(leaf) = parts.pop() else {
            return Err(FileError::NotRegular {
                path: shown,
                kind: sfs::describe(FileType::Directory),
            });
        };
        match self.walk_down(&parts)? {
            Some(walk) => read_leaf(&walk, leaf, &shown, limit),
            None => Ok(None),
        }
    }

    /// Reads the file `rel` inside this tree, resolving symlinks on the way as the kernel would
    /// but only inside the tree: a relative target from where the link is, an absolute one
    /// when it names a path below the tree's own (as named or resolved); anything that would
    /// leave the tree is refused. A regular file of at most `limit` bytes; `None` when missing.
    pub fn read_resolving(&self, rel: &Path, limit: Limit) -> Result<Option<Content>, FileError> {
        let shown = self.path.join(rel);
        let outside = || FileError::Outside {
            path: shown.clone(),
            tree: self.path.clone(),
        };
        let mut walk = self.walk()?;
        let mut todo = VecDeque::new();
        self.splice(rel, &mut todo, &mut walk).ok_or_else(outside)?;
        let mut links = 0u32;
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                if walk.depth() == 0 {
                    return Err(outside());
                }
                walk.up();
                continue;
            }
            let is_link = if todo.is_empty() {
                // The last component: a file to read, or a link to one.
                match walk.stat(&name).map_err(io_err("stat", &shown))? {
                    None => return Ok(None),
                    Some(st) if type_of(&st) == FileType::Symlink => true,
                    Some(_) => return read_leaf(&walk, &name, &shown, limit),
                }
            } else {
                match walk.step(&name).map_err(io_err("open", &shown))? {
                    Step::Entered => false,
                    Step::Missing => return Ok(None),
                    Step::Symlink => true,
                    Step::NotDir(t) => return Err(not_a_directory(shown, Some(t))),
                    Step::OtherFilesystem => return Err(not_a_directory(shown, None)),
                }
            };
            if is_link {
                links = links.saturating_add(1);
                if links > MAX_LINKS {
                    return Err(FileError::Loop(shown));
                }
                let target = walk
                    .read_link(&name)
                    .map_err(io_err("read the link", &shown))?;
                self.splice(&target, &mut todo, &mut walk)
                    .ok_or_else(outside)?;
            }
        }
        // The path ends at a directory (`a/..`, or empty).
        Err(FileError::NotRegular {
            path: shown,
            kind: sfs::describe(FileType::Directory),
        })
    }

    /// Puts the components of `target` in front of `todo`; an absolute target restarts the walk
    /// from the top when it names a path below one of the tree's own, else `None` (outside).
    fn splice(&self, target: &Path, todo: &mut VecDeque<OsString>, walk: &mut Walk) -> Option<()> {
        let rel = if target.has_root() {
            let rel = self
                .roots
                .iter()
                .find_map(|r| target.strip_prefix(r).ok())?;
            walk.to_start();
            rel
        } else {
            target
        };
        for c in rel.components().rev() {
            match c {
                Component::Normal(n) => todo.push_front(n.to_os_string()),
                Component::ParentDir => todo.push_front(OsString::from("..")),
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        Some(())
    }

    /// Whether `name` is a regular file (not a symlink to one) holding exactly `bytes` with the
    /// permission bits `mode`. Anything else there (a FIFO, a device, a link) is not opened:
    /// the answer is no, and [`Dir::write`] then renames the output over it.
    pub fn holds(&self, name: &OsStr, bytes: &[u8], mode: u32) -> Result<bool, FileError> {
        let shown = self.path.join(name);
        let st = match sfs::stat_at(self.fd.as_fd(), name) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(io_err("stat", &shown)(e)),
        };
        let t = type_of(&st);
        if t != FileType::RegularFile {
            log::warn!(
                "{shown:?} is {}, not a regular file: replaced without being read",
                sfs::describe(t)
            );
            return Ok(false);
        }
        let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if st.st_mode & 0o7777 != mode || u64::try_from(st.st_size).ok() != Some(len) {
            return Ok(false);
        }
        let limit = Limit {
            bytes: len,
            what: "an output",
        };
        match self.read(Path::new(name), limit) {
            Ok(Some(old)) => Ok(old.mode == mode && old.bytes.as_slice() == bytes),
            Ok(None) => Ok(false),
            // Changed since the look above: rewritten.
            Err(
                FileError::Symlink(_) | FileError::NotRegular { .. } | FileError::TooLarge { .. },
            ) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Writes `bytes` as `name` with mode `mode`: a temporary beside it (see [`temp_name`]),
    /// created `O_EXCL|O_NOFOLLOW` with mode 0, written, `fchmod`ed to `mode`, synced, then
    /// renamed over `name` (whatever `name` was: a link or a FIFO there is replaced, never
    /// written through or opened).
    pub fn write(&self, name: &OsStr, bytes: &[u8], mode: u32) -> Result<(), FileError> {
        let shown = self.path.join(name);
        let (tmp, fd) = self.create_temp(name, &shown)?;
        let result = (|| {
            let mut f = std::fs::File::from(fd);
            f.write_all(bytes).map_err(|source| FileError::Io {
                op: "write",
                path: shown.clone(),
                source,
            })?;
            sfs::set_mode(&f, mode).map_err(io_err("chmod", &shown))?;
            f.sync_all().map_err(|source| FileError::Io {
                op: "sync",
                path: shown.clone(),
                source,
            })?;
            sfs::rename_at(&self.fd, &tmp, name).map_err(io_err("rename into place", &shown))
        })();
        if result.is_err() {
            let _ = sfs::remove_file_at(&self.fd, &tmp);
        }
        result?;
        // The rename itself made durable; a filesystem that cannot sync a directory still has
        // the file.
        if let Ok(d) = self.fd.try_clone() {
            let _ = std::fs::File::from(d).sync_all();
        }
        Ok(())
    }

    fn create_temp(&self, name: &OsStr, shown: &Path) -> Result<(OsString, OwnedFd), FileError> {
        let op = "create a temporary file for";
        let mut last = Errno::EXIST;
        // A name taken by chance (or planted): another one.
        for _ in 0..8 {
            let tmp = temp_name(name).map_err(io_err(op, shown))?;
            match sfs::create_new_at(self.fd.as_fd(), &tmp) {
                Ok(fd) => return Ok((tmp, fd)),
                Err(Errno::EXIST) => last = Errno::EXIST,
                Err(e) => {
                    last = e;
                    break;
                }
            }
        }
        Err(io_err(op, shown)(last))
    }

    /// Removes the name `name` from this directory (`unlinkat`: the file itself is never
    /// opened, and other names of it keep their content); `false` when it was absent or is a
    /// directory (left alone).
    pub fn remove(&self, name: &OsStr) -> Result<bool, FileError> {
        match sfs::remove_file_at(&self.fd, name) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT | Errno::ISDIR) => Ok(false),
            Err(e) => Err(io_err("remove", &self.path.join(name))(e)),
        }
    }
}

/// Opens the leaf `name` of `walk`'s directory and reads it: refused unless a regular file
/// (looked at before the open, then checked on the descriptor).
fn read_leaf(
    walk: &Walk,
    name: impl AsRef<Path>,
    shown: &Path,
    limit: Limit,
) -> Result<Option<Content>, FileError> {
    let name = name.as_ref();
    let Some(st) = walk.stat(name).map_err(io_err("stat", shown))? else {
        return Ok(None);
    };
    check_regular(&st, shown)?;
    match walk.open_file(name) {
        Ok(Some(fd)) => read_open(fd, shown, limit).map(Some),
        Ok(None) => Ok(None),
        Err(Errno::LOOP) => Err(FileError::Symlink(shown.to_path_buf())),
        Err(e) => Err(io_err("open", shown)(e)),
    }
}

/// The parent directory of `path`, opened (following links: the operator named it).
fn open_parent(path: &Path) -> Result<OwnedFd, FileError> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    Walk::open(parent)
        .map(Walk::into_dir)
        .map_err(io_err("open the directory", parent))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    const SMALL: Limit = Limit {
        bytes: 8,
        what: "a test file",
    };

    fn mode(p: &Path) -> u32 {
        p.symlink_metadata().unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn limits_read_as_people_write_them() {
        assert_eq!(human(MIB), "1 MiB");
        assert_eq!(human(64 * KIB), "64 KiB");
        assert_eq!(human(256 * MIB), "256 MiB");
        assert_eq!(human(1000), "1000 bytes");
        assert_eq!(human(0), "0 bytes");
        assert_eq!(Limit::BUNDLE.bytes, MAX_BUNDLE_SIZE as u64);
    }

    #[test]
    fn named_inputs_follow_a_link_but_must_be_regular_and_small() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, "12345678").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        symlink(&f, t.path().join("link")).unwrap();
        let c = read_named(&t.path().join("link"), SMALL).unwrap();
        assert_eq!((c.bytes.as_slice(), c.mode), (&b"12345678"[..], 0o640));
        std::fs::write(&f, "123456789").unwrap();
        let e = read_named(&f, SMALL).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { limit: 8, .. }), "{e}");
        assert!(
            e.to_string().contains("8 bytes limit for a test file"),
            "{e}"
        );
        crate::sys::fs::make_fifo(&t.path().join("fifo"), 0o600).unwrap();
        let e = read_named(&t.path().join("fifo"), SMALL).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{:?} is a FIFO, not a regular file", t.path().join("fifo"))
        );
        let e = read_named(Path::new("/dev/zero"), SMALL).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        assert!(matches!(
            read_named(t.path(), SMALL),
            Err(FileError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
        assert!(read_named(&t.path().join("nope"), SMALL)
            .unwrap_err()
            .is_not_found());
    }

    #[test]
    fn reads_in_a_tree_never_follow_a_link() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), "x").unwrap();
        symlink("b", d.join("a/lb")).unwrap();
        symlink("f", d.join("a/b/lf")).unwrap();
        crate::sys::fs::make_fifo(&d.join("a/fifo"), 0o600).unwrap();
        let tree = Dir::open(d).unwrap();
        assert_eq!(
            tree.read(Path::new("a/b/f"), SMALL)
                .unwrap()
                .unwrap()
                .bytes
                .as_slice(),
            b"x"
        );
        assert!(tree.read(Path::new("a/nope/f"), SMALL).unwrap().is_none());
        assert!(tree.read(Path::new("a/b/nope"), SMALL).unwrap().is_none());
        assert!(matches!(
            tree.read(Path::new("a/lb/f"), SMALL),
            Err(FileError::Symlink(p)) if p.ends_with("a/lb")
        ));
        assert!(matches!(
            tree.read(Path::new("a/b/lf"), SMALL),
            Err(FileError::Symlink(p)) if p.ends_with("a/b/lf")
        ));
        assert!(matches!(
            tree.read(Path::new("a/fifo"), SMALL),
            Err(FileError::NotRegular { kind: "a FIFO", .. })
        ));
        assert!(matches!(
            tree.read(Path::new("a/fifo/x"), SMALL),
            Err(FileError::NotDirectory { kind: "a FIFO", .. })
        ));
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            assert!(
                matches!(
                    tree.read(Path::new(bad), SMALL),
                    Err(FileError::Outside { .. })
                ),
                "{bad}"
            );
        }
        assert!(tree.dir_at(Path::new("a/b")).unwrap().is_some());
        assert!(matches!(
            tree.dir_at(Path::new("a/lb")),
            Err(FileError::Symlink(_))
        ));
    }

    #[test]
    fn resolving_reads_follow_links_inside_the_tree_only() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("tree");
        std::fs::create_dir_all(d.join("real/sub")).unwrap();
        std::fs::write(d.join("real/sub/f"), "in").unwrap();
        std::fs::write(t.path().join("secret"), "out").unwrap();
        symlink("real", d.join("rel-dir")).unwrap();
        symlink("../real/sub/f", d.join("real/up")).unwrap();
        symlink(d.join("real/sub/f"), d.join("abs")).unwrap();
        symlink("../secret", d.join("out-rel")).unwrap();
        symlink(t.path().join("secret"), d.join("out-abs")).unwrap();
        symlink("real/../../secret", d.join("out-dotdot")).unwrap();
        symlink("loop2", d.join("loop1")).unwrap();
        symlink("loop1", d.join("loop2")).unwrap();
        symlink("real", d.join("to-dir")).unwrap();
        symlink("/dev/zero", d.join("zero")).unwrap();
        let tree = Dir::open(&d).unwrap();
        let read = |p: &str| tree.read_resolving(Path::new(p), SMALL);
        for p in [
            "real/sub/f",
            "rel-dir/sub/f",
            "real/up",
            "abs",
            "./rel-dir/sub/../sub/f",
        ] {
            assert_eq!(read(p).unwrap().unwrap().bytes.as_slice(), b"in", "{p}");
        }
        // The tree's own absolute path, as a starting point too (old modules.dep files).
        let abs = d.join("real/sub/f");
        assert_eq!(
            tree.read_resolving(&abs, SMALL)
                .unwrap()
                .unwrap()
                .bytes
                .as_slice(),
            b"in"
        );
        assert!(read("rel-dir/nope").unwrap().is_none());
        for p in [
            "out-rel",
            "out-abs",
            "out-dotdot",
            "../secret",
            "zero",
            "/etc/passwd",
        ] {
            assert!(matches!(read(p), Err(FileError::Outside { .. })), "{p}");
        }
        assert!(matches!(read("loop1"), Err(FileError::Loop(_))));
        assert!(matches!(
            read("to-dir"),
            Err(FileError::NotRegular {
                kind: "a directory",
                ..
            })
        ));
    }

    #[test]
    fn writes_go_through_a_new_temporary_and_never_through_a_link() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("out");
        std::fs::create_dir(&d).unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        // A link at the target is replaced, not written through.
        symlink(&victim, d.join("f")).unwrap();
        let dir = Dir::open(&d).unwrap();
        dir.write(OsStr::new("f"), b"new", 0o640).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(d.join("f")).unwrap(), b"new");
        assert_eq!(mode(&d.join("f")), 0o640);
        // A mode changed by hand is set again; nothing is left beside it.
        std::fs::set_permissions(d.join("f"), std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(!dir.holds(OsStr::new("f"), b"new", 0o640).unwrap());
        dir.write(OsStr::new("f"), b"new", 0o640).unwrap();
        assert!(dir.holds(OsStr::new("f"), b"new", 0o640).unwrap());
        assert!(!dir.holds(OsStr::new("f"), b"newer", 0o640).unwrap());
        assert!(!dir.holds(OsStr::new("nope"), b"new", 0o640).unwrap());
        assert_eq!(dir.names().unwrap(), ["f"]);
        let tmp = temp_name(OsStr::new("n.img")).unwrap();
        let tmp = tmp.to_str().unwrap();
        assert!(
            tmp.starts_with(".n.img.") && tmp.ends_with(".part"),
            "{tmp}"
        );
        assert_eq!(tmp.len(), ".n.img.".len() + 16 + ".part".len());
        // A FIFO at the target is answered without being opened, then replaced.
        crate::sys::fs::make_fifo(&d.join("p"), 0o600).unwrap();
        assert!(!dir.holds(OsStr::new("p"), b"x", 0o600).unwrap());
        dir.write(OsStr::new("p"), b"x", 0o600).unwrap();
        assert!(dir.holds(OsStr::new("p"), b"x", 0o600).unwrap());
        // The parent of a named output.
        let (parent, name) = Dir::open_parent_of(&d.join("g")).unwrap();
        assert_eq!(
            (parent.path(), name.as_os_str()),
            (d.as_path(), OsStr::new("g"))
        );
        assert!(Dir::open_parent_of(Path::new("/")).is_err());
    }

    #[test]
    fn subdirectories_are_never_links_and_removal_only_unlinks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("www");
        std::fs::create_dir(&d).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        symlink(&elsewhere, d.join("by-mac")).unwrap();
        let www = Dir::open(&d).unwrap();
        assert!(matches!(
            www.sub("by-mac", Some(0o755)),
            Err(FileError::Symlink(p)) if p == d.join("by-mac")
        ));
        assert!(www.sub("by-host", None).unwrap().is_none());
        let host = www.sub("by-host", Some(0o751)).unwrap().unwrap();
        assert_eq!(mode(&d.join("by-host")), 0o751);
        assert_eq!(host.path(), d.join("by-host"));
        assert!(Dir::open_no_follow(&d.join("by-mac"))
            .is_err_and(|e| matches!(e, FileError::Symlink(_))));
        assert!(Dir::open_no_follow(&d.join("by-host")).is_ok());
        // A stale output with another name elsewhere: that name keeps its content.
        let keep = t.path().join("keep");
        std::fs::write(&keep, "precious").unwrap();
        std::fs::hard_link(&keep, d.join("by-host/old.json")).unwrap();
        assert!(host.remove(OsStr::new("old.json")).unwrap());
        assert!(!host.remove(OsStr::new("old.json")).unwrap());
        assert_eq!(std::fs::read(&keep).unwrap(), b"precious");
        std::fs::create_dir(d.join("by-host/d.json")).unwrap();
        assert!(!host.remove(OsStr::new("d.json")).unwrap());
        assert_eq!(host.kind("d.json").unwrap(), Some(FileType::Directory));
        assert_eq!(host.mode_of_file("d.json").unwrap(), None);
        assert!(Dir::try_open(&t.path().join("nope")).unwrap().is_none());
    }
}
