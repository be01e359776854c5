//! File syscalls the stages need beyond `std::fs`: opens that never block on a FIFO, operations
//! relative to a directory fd (`*at`), ownership and mode on an open file, filesystem types.
//! Walking a path without following symlinks is [`super::walk::Walk`].

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub use rustix::fs::{FileType, Stat};

/// What a file of type `t` is called in a message: "a regular file", "a FIFO", …
pub fn describe(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "of an unknown type",
    }
}

/// `O_NOFOLLOW`, for `std::os::unix::fs::OpenOptionsExt::custom_flags`.
// The flag values fit an i32 (the type `custom_flags` takes) on every architecture.
pub const O_NOFOLLOW: i32 = OFlags::NOFOLLOW.bits() as i32;
/// `O_NONBLOCK`, for `std::os::unix::fs::OpenOptionsExt::custom_flags`.
pub const O_NONBLOCK: i32 = OFlags::NONBLOCK.bits() as i32;

/// Opens `path` read-only without blocking: `O_NONBLOCK` keeps a FIFO from hanging the open,
/// `O_NOCTTY` keeps a terminal from becoming ours. A symlink at `path` is followed.
pub fn open_nonblocking(path: &Path) -> Result<OwnedFd, Errno> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Clears the file status flags of `fd` (the `O_NONBLOCK` of [`open_nonblocking`]) once it is
/// known to be a regular file.
pub fn set_blocking(fd: BorrowedFd<'_>) -> Result<(), Errno> {
    rustix::fs::fcntl_setfl(fd, OFlags::empty())
}

/// `fstat(2)`.
pub fn stat(fd: BorrowedFd<'_>) -> Result<Stat, Errno> {
    rustix::fs::fstat(fd)
}

/// `stat(2)` of `path`, following a symlink (a path the operator named), so that what it is can
/// be told before it is opened.
pub fn stat_path(path: &Path) -> Result<Stat, Errno> {
    rustix::fs::stat(path)
}

/// `fstatat(2)` of `name` in `dir`, not following a symlink.
pub fn stat_at(dir: BorrowedFd<'_>, name: impl AsRef<Path>) -> Result<Stat, Errno> {
    rustix::fs::statat(dir, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW)
}

/// Opens the directory `name` in `dir` for reading, not following a symlink: `ENOTDIR` (or
/// `ELOOP`) for a symlink, `ENOTDIR` for anything else that is not a directory (which is never
/// opened).
pub fn open_dir_at(dir: BorrowedFd<'_>, name: impl AsRef<Path>) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name.as_ref(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// The names in the directory `dir` (a fresh open of it, so `dir`'s offset is untouched),
/// without `.` and `..`; entries that cannot be read are left out.
pub fn list_dir(dir: BorrowedFd<'_>) -> Result<Vec<OsString>, Errno> {
    let fd = rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let names = rustix::fs::Dir::new(fd)?
        .filter_map(Result::ok)
        .map(|e| std::ffi::OsStr::from_bytes(e.file_name().to_bytes()).to_os_string())
        .filter(|n| n != "." && n != "..")
        .collect();
    Ok(names)
}

/// `mkdirat(2)`: the directory `name` in `dir` with `mode` (less the umask).
pub fn make_dir_at(dir: BorrowedFd<'_>, name: impl AsRef<Path>, mode: u32) -> Result<(), Errno> {
    rustix::fs::mkdirat(dir, name.as_ref(), Mode::from_raw_mode(mode))
}

/// Creates the file `name` in `dir` for writing, `O_EXCL` (`EEXIST` if anything, even a
/// dangling symlink, has that name) and with no permission bits at all.
pub fn create_new_at(dir: BorrowedFd<'_>, name: impl AsRef<Path>) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name.as_ref(),
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `fchown(2)`.
pub fn set_owner(fd: impl AsFd, uid: u32, gid: u32) -> Result<(), Errno> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
}

/// `fchmod(2)`: the permission bits (and set-id, sticky) of `mode`.
pub fn set_mode(fd: impl AsFd, mode: u32) -> Result<(), Errno> {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))
}

/// `unlinkat(2)` of a non-directory.
pub fn remove_file_at(dir: impl AsFd, name: impl AsRef<Path>) -> Result<(), Errno> {
    rustix::fs::unlinkat(dir, name.as_ref(), AtFlags::empty())
}

/// `unlinkat(2)` of an empty directory.
pub fn remove_dir_at(dir: impl AsFd, name: impl AsRef<Path>) -> Result<(), Errno> {
    rustix::fs::unlinkat(dir, name.as_ref(), AtFlags::REMOVEDIR)
}

/// `renameat(2)` within one directory, replacing `to` if it exists.
pub fn rename_at(
    dir: impl AsFd,
    from: impl AsRef<Path>,
    to: impl AsRef<Path>,
) -> Result<(), Errno> {
    let dir = dir.as_fd();
    rustix::fs::renameat(dir, from.as_ref(), dir, to.as_ref())
}

/// `renameat2(2)` within one directory with `RENAME_NOREPLACE`: `EEXIST` if `to` exists;
/// `EINVAL` or `ENOSYS` where the filesystem or kernel cannot promise that.
pub fn rename_new_at(
    dir: impl AsFd,
    from: impl AsRef<Path>,
    to: impl AsRef<Path>,
) -> Result<(), Errno> {
    let dir = dir.as_fd();
    rustix::fs::renameat_with(
        dir,
        from.as_ref(),
        dir,
        to.as_ref(),
        rustix::fs::RenameFlags::NOREPLACE,
    )
}

/// Whether this process may write `path` (`access(2)` with `W_OK`).
pub fn is_writable(path: &Path) -> bool {
    rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_ok()
}

/// The `statfs(2)` filesystem type (magic number) of the filesystem holding `path`.
pub fn filesystem_type(path: &Path) -> Result<u64, Errno> {
    // f_type is signed with glibc and unsigned with musl.
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::statfs(path).map(|s| s.f_type as u64)
}

/// [`filesystem_type`] of an open file.
pub fn filesystem_type_of(fd: impl AsFd) -> Result<u64, Errno> {
    #[allow(clippy::unnecessary_cast)]
    rustix::fs::fstatfs(fd).map(|s| s.f_type as u64)
}

/// `sync(2)`: flushes every filesystem.
pub fn sync() {
    rustix::fs::sync();
}

/// `mkfifo(3)`: a FIFO at `path` with `mode` (less the umask).
pub fn make_fifo(path: &Path, mode: u32) -> Result<(), Errno> {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        FileType::Fifo,
        Mode::from_raw_mode(mode),
        0,
    )
}

/// Opens a regular file read-only, never through a symbolic link in its last component, and
/// returns it with its length.
pub fn open_regular_read(path: &Path) -> std::io::Result<(std::fs::File, u64)> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    let st = rustix::fs::fstat(&fd)?;
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return Err(std::io::Error::other(format!(
            "a {}, not a regular file",
            describe(FileType::from_raw_mode(st.st_mode))
        )));
    }
    let len = u64::try_from(st.st_size).unwrap_or(0);
    Ok((std::fs::File::from(fd), len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_flags_match_the_kernel() {
        assert_eq!(O_NOFOLLOW as u32, OFlags::NOFOLLOW.bits());
        assert_eq!(O_NONBLOCK as u32, OFlags::NONBLOCK.bits());
    }

    #[test]
    fn lists_without_dots_and_removes_at() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        std::fs::write(d.path().join("f"), "x").unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let mut names = list_dir(dir.as_fd()).unwrap();
        names.sort();
        assert_eq!(names, ["f", "sub"]);
        assert_eq!(remove_file_at(&dir, "sub"), Err(Errno::ISDIR));
        remove_dir_at(&dir, "sub").unwrap();
        remove_file_at(&dir, "f").unwrap();
        assert!(list_dir(dir.as_fd()).unwrap().is_empty());
    }

    #[test]
    fn new_files_have_no_mode_and_renames_can_refuse_to_replace() {
        let d = tempfile::tempdir().unwrap();
        let dir = std::fs::File::open(d.path()).unwrap();
        let fd = create_new_at(dir.as_fd(), "a").unwrap();
        assert_eq!(stat(fd.as_fd()).unwrap().st_mode & 0o7777, 0);
        assert_eq!(create_new_at(dir.as_fd(), "a").unwrap_err(), Errno::EXIST);
        set_mode(&fd, 0o640).unwrap();
        assert_eq!(stat_at(dir.as_fd(), "a").unwrap().st_mode & 0o7777, 0o640);
        std::fs::write(d.path().join("b"), "b").unwrap();
        match rename_new_at(&dir, "a", "b") {
            Err(Errno::EXIST) => {}
            // A filesystem without RENAME_NOREPLACE.
            Err(Errno::INVAL | Errno::NOSYS) => {}
            other => panic!("{other:?}"),
        }
        rename_at(&dir, "a", "b").unwrap();
        assert_eq!(std::fs::read(d.path().join("b")).unwrap(), b"");
    }
}
