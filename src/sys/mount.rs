//! One mount, undone on drop: the guard every helper mount of rustlive goes through; and the
//! few mounts that outlive rustlive (the API filesystems of PID 1, switch-root's moves).

use rustix::io::Errno;
use rustix::mount::{MountPropagationFlags, UnmountFlags};
use std::ffi::CString;
use std::path::{Path, PathBuf};

pub use rustix::mount::MountFlags;

/// mount(2) `source` of type `fstype` on `target`, for good. Data with a NUL byte cannot reach
/// the kernel and is refused with `EINVAL`, as the kernel refuses malformed options.
pub fn mount(
    source: &Path,
    target: &Path,
    fstype: &str,
    flags: MountFlags,
    data: Option<&str>,
) -> Result<(), Errno> {
    let data = data
        .map(|d| CString::new(d).map_err(|_| Errno::INVAL))
        .transpose()?;
    rustix::mount::mount(source, target, fstype, flags, data.as_deref())
}

/// `mount --make-rprivate target`: no mount or unmount below `target` propagates to or from
/// its peers any more.
pub fn make_private(target: &Path) -> Result<(), Errno> {
    rustix::mount::mount_change(
        target,
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
}

/// `mount --move from to` (`MS_MOVE`).
pub fn move_mount(from: &Path, to: &Path) -> Result<(), Errno> {
    rustix::mount::mount_move(from, to)
}

/// A mount that is unmounted on drop unless kept.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
    active: bool,
}

impl MountGuard {
    /// mount(2) `source` of type `fstype` on `target`. Data with a NUL byte cannot reach the
    /// kernel and is refused with `EINVAL`, as the kernel refuses malformed options.
    pub fn mount(
        source: &Path,
        target: &Path,
        fstype: &str,
        flags: MountFlags,
        data: Option<&str>,
    ) -> Result<Self, Errno> {
        mount(source, target, fstype, flags, data)?;
        Ok(MountGuard {
            target: target.to_owned(),
            active: true,
        })
    }

    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Leaves the mount in place.
    pub fn keep(mut self) {
        self.active = false;
    }
}

/// Detaches `target` from the tree now; the kernel frees it once its last user goes.
pub fn detach(target: &Path) -> Result<(), Errno> {
    rustix::mount::unmount(target, UnmountFlags::DETACH)
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if !self.active {
            return;
        }
        match rustix::mount::unmount(&self.target, UnmountFlags::empty()) {
            Ok(()) => log::debug!("unmounted {}", self.target.display()),
            Err(Errno::BUSY) => {
                // Something still uses it (a shell cd'ed into it): detach it now, the kernel
                // frees it when the last user goes.
                log::warn!("{} is busy; detaching it lazily", self.target.display());
                if let Err(e) = detach(&self.target) {
                    log::warn!("cannot detach {}: {e}", self.target.display());
                }
            }
            Err(e) => log::warn!("cannot unmount {}: {e}", self.target.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_with_nul_is_refused_before_the_kernel() {
        let d = tempfile::tempdir().unwrap();
        let e = MountGuard::mount(
            Path::new("tmpfs"),
            d.path(),
            "tmpfs",
            MountFlags::empty(),
            Some("size=1M\0,mode=0777"),
        )
        .unwrap_err();
        assert_eq!(e, Errno::INVAL);
    }

    #[test]
    fn unmounts_on_drop_unless_kept() {
        if !crate::support::testing::is_root() {
            crate::support::testing::skip("mounting a tmpfs needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let flags = MountFlags::NOSUID | MountFlags::NODEV;
        {
            let g = MountGuard::mount(Path::new("tmpfs"), d.path(), "tmpfs", flags, None).unwrap();
            std::fs::write(g.target().join("f"), "x").unwrap();
        }
        assert!(!d.path().join("f").exists(), "unmounted on drop");
        let g = MountGuard::mount(Path::new("tmpfs"), d.path(), "tmpfs", flags, None).unwrap();
        std::fs::write(d.path().join("kept"), "x").unwrap();
        g.keep();
        assert!(d.path().join("kept").exists(), "kept");
        detach(d.path()).unwrap();
        assert!(!d.path().join("kept").exists());
    }
}
