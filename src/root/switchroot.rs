//! `rustlive switch-root`: hand over from the initramfs to the new root and exec its init, with
//! the semantics of util-linux `switch_root` (`pivot_root(2)` does not work from rootfs).
//!
//! Used when rustlive itself is PID 1 or the initramfs has no systemd to switch root. Steps:
//! check INIT inside NEWROOT (before anything irreversible); move `/dev`, `/proc`, `/sys` and
//! `/run` into NEWROOT; `chdir` NEWROOT; `MS_MOVE` it onto `/`; `chroot .`; delete the old
//! initramfs contents without crossing mount points, only when the old root is a rootfs or
//! tmpfs, to give its RAM back; exec INIT. Unlike util-linux, the old root is deleted before the
//! exec rather than in a forked child, so the freed memory is known (and logged) when INIT
//! starts.

use crate::root::rootfs::{self, NotBootable};
use crate::sys::fs::FileType;
use crate::sys::Errno;
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The API filesystems that move into the new root, in util-linux's order.
pub const API_MOUNTS: [&str; 4] = ["/dev", "/proc", "/sys", "/run"];

const RAMFS_MAGIC: u64 = 0x8584_58f6;
const TMPFS_MAGIC: u64 = 0x0102_1994;

#[derive(Debug, thiserror::Error)]
pub enum SwitchRootError {
    #[error("refusing to switch into {newroot}")]
    Init {
        newroot: PathBuf,
        #[source]
        source: NotBootable,
    },
    #[error("{newroot} is not a mount point (it is on the same filesystem as /)")]
    NotAMountPoint { newroot: PathBuf },
    #[error("cannot inspect {path}")]
    Stat {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("an argument for init contains a NUL byte")]
    NulInArgument,
    #[error("cannot {step}")]
    Switch {
        step: String,
        #[source]
        source: Errno,
    },
    #[error("cannot execute {init} in the new root")]
    Exec {
        init: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Switches into `newroot` and executes `init` with `args`; returns only on failure.
pub fn switch_root(
    newroot: &Path,
    init: &Path,
    args: &[String],
) -> Result<Infallible, SwitchRootError> {
    rootfs::check_init(newroot, init).map_err(|source| SwitchRootError::Init {
        newroot: newroot.to_owned(),
        source,
    })?;
    let argv = init_argv(init, args)?;
    let stat = |p: &Path| {
        std::fs::metadata(p).map_err(|source| SwitchRootError::Stat {
            path: p.to_owned(),
            source,
        })
    };
    let root_dev = stat(Path::new("/"))?.dev();
    if stat(newroot)?.dev() == root_dev {
        // MS_MOVE would fail, and deleting the old root would delete the new one with it.
        return Err(SwitchRootError::NotAMountPoint {
            newroot: newroot.to_owned(),
        });
    }
    log_peak_memory();
    // Opened before the move: afterwards the old root is reachable only through this.
    let old_root = std::fs::File::open("/").map_err(|source| SwitchRootError::Stat {
        path: "/".into(),
        source,
    })?;

    // The kernel refuses MS_MOVE under a shared mount (systemd marks / shared); the new init
    // sets up propagation again, as after systemd's own switch-root.
    if let Err(e) = crate::sys::mount::make_private(Path::new("/")) {
        log::warn!("cannot make the mount tree private: {e}");
    }
    for m in API_MOUNTS {
        move_api_mount(Path::new(m), newroot, root_dev);
    }

    let step = |step: String| move |source| SwitchRootError::Switch { step, source };
    crate::sys::process::change_dir(newroot)
        .map_err(step(format!("chdir to {}", newroot.display())))?;
    crate::sys::mount::move_mount(Path::new("."), Path::new("/"))
        .map_err(step(format!("move {} onto /", newroot.display())))?;
    crate::sys::process::change_root(Path::new("."))
        .map_err(step("chroot into the new root".into()))?;
    crate::sys::process::change_dir(Path::new("/"))
        .map_err(step("chdir to / in the new root".into()))?;
    log::info!("switched root to {}", newroot.display());

    free_old_root(&old_root);
    drop(old_root);

    log::info!("executing {}", init.display());
    let e = crate::sys::process::exec(&argv);
    Err(SwitchRootError::Exec {
        init: init.to_owned(),
        source: e,
    })
}

/// `argv` for init: its own path, then the arguments.
pub fn init_argv(init: &Path, args: &[String]) -> Result<Vec<CString>, SwitchRootError> {
    std::iter::once(init.as_os_str().as_bytes().to_vec())
        .chain(args.iter().map(|a| a.as_bytes().to_vec()))
        .map(|a| CString::new(a).map_err(|_| SwitchRootError::NulInArgument))
        .collect()
}

/// Whether a filesystem of this `statfs` type is an initramfs whose files hold RAM.
pub fn is_initramfs(f_type: u64) -> bool {
    f_type == RAMFS_MAGIC || f_type == TMPFS_MAGIC
}

/// Moves `/dev` (etc.) to the same place under `newroot`; when that fails, detaches it so it
/// does not pin the old root (util-linux does the same).
fn move_api_mount(m: &Path, newroot: &Path, root_dev: u64) {
    match std::fs::metadata(m) {
        // Not a mount point (or absent): nothing to move.
        Ok(md) if md.dev() != root_dev => {}
        _ => return,
    }
    let target = newroot.join(m.strip_prefix("/").unwrap_or(m));
    let moved = if target.is_dir() {
        crate::sys::mount::move_mount(m, &target)
    } else {
        Err(Errno::NOENT)
    };
    match moved {
        Ok(()) => log::debug!("moved {} to {}", m.display(), target.display()),
        Err(e) => {
            log::warn!(
                "cannot move {} to {}: {e}; detaching it",
                m.display(),
                target.display()
            );
            let _ = crate::sys::mount::detach(m);
        }
    }
}

/// Logs this process's peak resident memory (VmHWM), the figure the standalone initramfs
/// promises to keep bounded whatever the image size.
fn log_peak_memory() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if let Some(hwm) = status.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
        log::info!(
            "peak memory of rustlive before switch-root: VmHWM {}",
            hwm.trim()
        );
    }
}

/// Deletes the old root's files when it is an initramfs; leaves any other filesystem alone.
fn free_old_root(old_root: &std::fs::File) {
    let f_type = match crate::sys::fs::filesystem_type_of(old_root) {
        Ok(t) => t,
        Err(e) => {
            log::warn!("cannot statfs the old root: {e}; leaving it");
            return;
        }
    };
    if !is_initramfs(f_type) {
        log::warn!("the old root is not an initramfs (filesystem type {f_type:#x}); leaving it");
        return;
    }
    let before = mem_available();
    match old_root.metadata() {
        Ok(md) => {
            let stats = remove_contents(old_root, md.dev());
            let after = mem_available();
            log::info!(
                "removed the old initramfs: {} files, {} (MemAvailable {} kB -> {} kB)",
                stats.files,
                crate::support::log::mib(stats.bytes),
                before.map_or(0, |b| b >> 10),
                after.map_or(0, |b| b >> 10)
            );
        }
        Err(e) => log::warn!("cannot stat the old root: {e}; leaving it"),
    }
}

fn mem_available() -> Option<u64> {
    crate::root::ram::MemInfo::read(std::path::Path::new(crate::root::ram::PROC_MEMINFO))
        .ok()
        .map(|m| m.available)
}

/// What [`remove_contents`] deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Removed {
    /// Directory entries removed.
    pub files: u64,
    /// Bytes of file data whose last link was removed.
    pub bytes: u64,
}

/// Deletes everything under the directory `dir` that lives on device `dev`, without following
/// symlinks or entering other filesystems (mount points and what is under them stay). Errors
/// are logged and skipped: an undeletable file costs some RAM, not the boot.
pub fn remove_contents(dir: &impl AsFd, dev: u64) -> Removed {
    let mut stats = Removed::default();
    remove_in(dir.as_fd(), dev, &mut stats, 0);
    stats
}

/// Deeper than this is a loop or an attack, not an initramfs.
const MAX_DEPTH: usize = 256;

fn remove_in(fd: BorrowedFd<'_>, dev: u64, stats: &mut Removed, depth: usize) {
    let names = match crate::sys::fs::list_dir(fd) {
        Ok(names) => names,
        Err(e) => {
            log::warn!("cannot list a directory of the old root: {e}");
            return;
        }
    };
    for name in names {
        let st = match crate::sys::fs::stat_at(fd, &name) {
            Ok(st) => st,
            Err(e) => {
                log::debug!("cannot stat {name:?} in the old root: {e}");
                continue;
            }
        };
        if st.st_dev != dev {
            continue;
        }
        let kind = FileType::from_raw_mode(st.st_mode);
        let is_dir = kind == FileType::Directory;
        if is_dir {
            if depth >= MAX_DEPTH {
                continue;
            }
            match crate::sys::fs::open_dir_at(fd, &name) {
                Ok(sub) => remove_in(sub.as_fd(), dev, stats, depth.saturating_add(1)),
                Err(e) => log::debug!("cannot open {name:?} in the old root: {e}"),
            }
        }
        let removed = if is_dir {
            crate::sys::fs::remove_dir_at(fd, &name)
        } else {
            crate::sys::fs::remove_file_at(fd, &name)
        };
        match removed {
            Ok(()) => {
                stats.files = stats.files.saturating_add(1);
                if kind == FileType::RegularFile && st.st_nlink == 1 {
                    stats.bytes = stats
                        .bytes
                        .saturating_add(u64::try_from(st.st_size).unwrap_or(0));
                }
            }
            // A directory that still holds a mount point cannot go; that is expected.
            Err(e) => log::debug!("cannot remove {name:?} from the old root: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn argv_starts_with_init() {
        let a = init_argv(Path::new("/sbin/init"), &["--system".into(), "3".into()]).unwrap();
        let got: Vec<&[u8]> = a.iter().map(|c| c.to_bytes()).collect();
        assert_eq!(got, [&b"/sbin/init"[..], b"--system", b"3"]);
        assert!(matches!(
            init_argv(Path::new("/sbin/init"), &["a\0b".into()]),
            Err(SwitchRootError::NulInArgument)
        ));
    }

    #[test]
    fn only_ramfs_and_tmpfs_are_initramfs() {
        assert!(is_initramfs(0x858458f6));
        assert!(is_initramfs(0x01021994));
        assert!(!is_initramfs(0xEF53)); // ext4
        assert!(!is_initramfs(0x794c7630)); // overlayfs
    }

    #[test]
    fn missing_init_is_refused_before_anything_moves() {
        let d = tempfile::tempdir().unwrap();
        let e = switch_root(d.path(), Path::new("/sbin/init"), &[]).unwrap_err();
        assert!(matches!(e, SwitchRootError::Init { .. }), "{e}");
        let msg = crate::support::exit::report(&e);
        assert!(msg.contains("/sbin/init"), "{msg}");
    }

    #[test]
    fn a_directory_that_is_not_a_mount_point_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let init = d.path().join("init");
        std::fs::write(&init, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&init, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        // The temporary directory is on /'s filesystem unless /tmp is a mount of its own.
        let same_fs =
            std::fs::metadata(d.path()).unwrap().dev() == std::fs::metadata("/").unwrap().dev();
        if !same_fs {
            crate::support::testing::skip("the temporary directory is not on /'s filesystem");
            return;
        }
        let e = switch_root(d.path(), Path::new("/init"), &[]).unwrap_err();
        assert!(matches!(e, SwitchRootError::NotAMountPoint { .. }), "{e}");
    }

    #[test]
    fn removes_a_tree_without_following_symlinks() {
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join("old");
        let keep = d.path().join("keep");
        std::fs::create_dir_all(old.join("a/b/c")).unwrap();
        std::fs::create_dir_all(&keep).unwrap();
        std::fs::write(keep.join("precious"), "x").unwrap();
        std::fs::write(old.join("a/b/c/file"), vec![0u8; 10_000]).unwrap();
        std::fs::write(old.join("top"), vec![0u8; 5]).unwrap();
        std::fs::hard_link(old.join("top"), old.join("a/top-link")).unwrap();
        symlink(&keep, old.join("a/link-to-keep")).unwrap();
        symlink(&keep, old.join("dir-link")).unwrap();

        let f = std::fs::File::open(&old).unwrap();
        let dev = f.metadata().unwrap().dev();
        let r = remove_contents(&f, dev);
        assert_eq!(std::fs::read_dir(&old).unwrap().count(), 0);
        assert!(
            keep.join("precious").exists(),
            "a symlink target was removed"
        );
        // 3 dirs, 1 file, 2 links to one inode, 2 symlinks.
        assert_eq!(r.files, 8);
        // The hard-linked file's data is freed only with its last link, counted once.
        assert!(r.bytes == 10_000 || r.bytes == 10_005, "{r:?}");
    }

    #[test]
    fn does_not_cross_mount_points() {
        if !crate::sys::process::is_root() {
            crate::support::testing::skip("mounting a tmpfs needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let old = d.path().join("old");
        let mnt = old.join("sub/mnt");
        std::fs::create_dir_all(&mnt).unwrap();
        std::fs::write(old.join("sub/file"), "x").unwrap();
        crate::sys::mount::mount(
            Path::new("tmpfs"),
            &mnt,
            "tmpfs",
            crate::sys::mount::MountFlags::empty(),
            Some("size=1M"),
        )
        .unwrap();
        std::fs::write(mnt.join("on-other-fs"), "y").unwrap();
        let f = std::fs::File::open(&old).unwrap();
        remove_contents(&f, f.metadata().unwrap().dev());
        let survived = mnt.join("on-other-fs").exists();
        let file_gone = !old.join("sub/file").exists();
        crate::sys::mount::detach(&mnt).unwrap();
        assert!(survived, "the walk crossed into a mounted filesystem");
        assert!(file_gone);
    }
}
