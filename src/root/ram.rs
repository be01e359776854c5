//! RAM for the image: the memory check against `rd.minmem` and the dedicated tmpfs.
//!
//! The image gets its own tmpfs sized from its length because `/run` is often capped at
//! 10–20% of RAM and a large image would fill it (a known dmsquash-live/livenet failure).

use crate::support::log::mib;
use crate::sys::mount::MountFlags;
use crate::sys::mount::MountGuard;
use std::path::{Path, PathBuf};

pub const PROC_MEMINFO: &str = "/proc/meminfo";

/// The fields of `/proc/meminfo` rustlive uses, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfo {
    pub total: u64,
    pub available: u64,
}

impl MemInfo {
    pub fn parse(text: &str) -> Option<MemInfo> {
        let field = |name: &str| {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
                kib.checked_mul(1024)
            })
        };
        Some(MemInfo {
            total: field("MemTotal")?,
            available: field("MemAvailable")?,
        })
    }

    pub fn read(path: &Path) -> Result<MemInfo, RamError> {
        let text = std::fs::read_to_string(path).map_err(|source| RamError::MemInfo {
            path: path.into(),
            source: Some(source),
        })?;
        MemInfo::parse(&text).ok_or_else(|| RamError::MemInfo {
            path: path.into(),
            source: None,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RamError {
    #[error(
        "the image is {} but only {} of RAM is available and rd.minmem reserves {}; refusing to download it into RAM",
        mib(*image), mib(*available), mib(*reserve)
    )]
    NotEnoughMemory {
        image: u64,
        available: u64,
        reserve: u64,
    },
    #[error(
        "only {} of RAM is available and rd.minmem reserves {}; no room for an image",
        mib(*available), mib(*reserve)
    )]
    NoRoom { available: u64, reserve: u64 },
    #[error("cannot read the memory figures from {path}")]
    MemInfo {
        path: PathBuf,
        #[source]
        source: Option<std::io::Error>,
    },
    #[error("cannot mount a {} tmpfs for the image on {path}", mib(*size))]
    Mount {
        path: PathBuf,
        size: u64,
        #[source]
        source: std::io::Error,
    },
}

/// Headroom on top of the image: filesystem metadata and rounding.
pub fn tmpfs_size(image_len: u64) -> u64 {
    let slack = (image_len / 64).max(16 << 20);
    page_round(image_len.saturating_add(slack))
}

/// `n` rounded up to whole pages; a length announced by a server can be anything, so the
/// rounding saturates instead of overflowing.
fn page_round(n: u64) -> u64 {
    n.checked_next_multiple_of(4096).unwrap_or(!4095u64)
}

/// The tmpfs size for an image of `len` bytes (`None`: unknown length), or why it does not fit.
pub fn plan(len: Option<u64>, mem: MemInfo, reserve: u64) -> Result<u64, RamError> {
    let room = mem.available.saturating_sub(reserve);
    match len {
        Some(image) if image > room => Err(RamError::NotEnoughMemory {
            image,
            available: mem.available,
            reserve,
        }),
        Some(image) => Ok(tmpfs_size(image)),
        // Unknown length: everything but the reserve; tmpfs allocates only what is written.
        None if room == 0 => Err(RamError::NoRoom {
            available: mem.available,
            reserve,
        }),
        None => Ok(page_round(room)),
    }
}

/// A mounted tmpfs, unmounted when dropped unless [`Tmpfs::keep`] is called.
#[derive(Debug)]
pub struct Tmpfs {
    guard: MountGuard,
}

impl Tmpfs {
    /// Mounts a `size`-byte tmpfs (mode 0700, nosuid, nodev, noexec) on `path`, creating it.
    pub fn mount(path: &Path, size: u64) -> Result<Tmpfs, RamError> {
        let merr = |source| RamError::Mount {
            path: path.into(),
            size,
            source,
        };
        std::fs::create_dir_all(path).map_err(merr)?;
        let data = format!("size={size},mode=0700");
        let guard = MountGuard::mount(
            Path::new("rustlive-image"),
            path,
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
            Some(&data),
        )
        .map_err(|e| merr(e.into()))?;
        Ok(Tmpfs { guard })
    }

    pub fn path(&self) -> &Path {
        self.guard.target()
    }

    /// Leaves the tmpfs mounted: the booted system keeps the image it runs from.
    pub fn keep(self) {
        self.guard.keep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:    2097152 kB\nBuffers: 1 kB\n";

    #[test]
    fn meminfo() {
        assert_eq!(
            MemInfo::parse(MEMINFO),
            Some(MemInfo {
                total: 24_576_000 * 1024,
                available: 2 << 30
            })
        );
        assert_eq!(MemInfo::parse("MemTotal: 1 kB\n"), None);
        assert!(MemInfo::read(Path::new("/proc/meminfo")).is_ok());
    }

    #[test]
    fn memory_check() {
        let mem = MemInfo {
            total: 4 << 30,
            available: 2 << 30,
        };
        assert_eq!(
            plan(Some(1 << 30), mem, 512 << 20).unwrap(),
            (1 << 30) + (16 << 20)
        );
        let e = plan(Some(1800 << 20), mem, 512 << 20).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the image is 1800.0 MiB but only 2048.0 MiB of RAM is available and rd.minmem \
             reserves 512.0 MiB; refusing to download it into RAM"
        );
        assert_eq!(plan(None, mem, 512 << 20).unwrap(), 1536 << 20);
        assert!(matches!(
            plan(None, mem, 4 << 30),
            Err(RamError::NoRoom { .. })
        ));
    }

    #[test]
    fn slack_grows_with_the_image() {
        assert_eq!(tmpfs_size(0), 16 << 20);
        assert_eq!(tmpfs_size(4 << 30), (4 << 30) + (64 << 20));
        assert_eq!(tmpfs_size(1) % 4096, 0);
        // A length near u64::MAX saturates instead of overflowing.
        assert_eq!(tmpfs_size(u64::MAX), !4095u64);
        assert_eq!(tmpfs_size(u64::MAX - 5000) % 4096, 0);
    }

    #[test]
    fn mounts_and_unmounts() {
        if !crate::support::testing::is_root() {
            crate::support::testing::skip("mounting a tmpfs needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("image");
        {
            let t = Tmpfs::mount(&mnt, 1 << 20).unwrap();
            std::fs::write(t.path().join("f"), vec![0u8; 512 << 10]).unwrap();
            // The size limit holds: a second MiB does not fit.
            assert!(std::fs::write(t.path().join("g"), vec![0u8; 1 << 20]).is_err());
        }
        assert!(!mnt.join("f").exists(), "unmounted on drop");
    }
}
