//! Read-only loop devices on rustix, without bindgen.
//!
//! One attach is `LOOP_CTL_GET_FREE` on `/dev/loop-control`, then `LOOP_CONFIGURE` on the free
//! `/dev/loopN` (Linux 5.8+): backing file, read-only, autoclear and no direct I/O set in one
//! call, so no other process ever sees the device half-configured. Older kernels answer
//! `LOOP_CONFIGURE` with `EINVAL` or `ENOTTY`; then `LOOP_SET_FD` + `LOOP_SET_STATUS64` do the
//! same in two steps. Both the device and the backing file are opened read-only, which is what
//! makes the kernel mark the device read-only (`LO_FLAGS_READ_ONLY` is not settable through
//! `LOOP_SET_STATUS64`).
//!
//! This is the one module of rustlive with `unsafe`: the five ioctls below, each in its own
//! function whose argument type is fixed by the Linux UAPI (`<linux/loop.h>`), with the layout
//! of the two UAPI structs checked at compile time.

use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::ioctl::{Ioctl, IoctlOutput, Opcode};
use std::ffi::c_void;
use std::path::{Path, PathBuf};

pub const LOOP_CONTROL: &str = "/dev/loop-control";

// <linux/loop.h>: old-style ioctl numbers (not _IOx-encoded), the same on every architecture.
const LOOP_SET_FD: Opcode = 0x4C00;
const LOOP_CLR_FD: Opcode = 0x4C01;
const LOOP_SET_STATUS64: Opcode = 0x4C04;
const LOOP_CONFIGURE: Opcode = 0x4C0A;
const LOOP_CTL_GET_FREE: Opcode = 0x4C82;

const LO_FLAGS_READ_ONLY: u32 = 1;
const LO_FLAGS_AUTOCLEAR: u32 = 4;
const LO_NAME_SIZE: usize = 64;

/// Another process may take the free device between `LOOP_CTL_GET_FREE` and the attach
/// (`EBUSY`, or `ENXIO` on the open while it detaches again); a few retries cover a busy boot
/// without looping for ever.
const MAX_ATTEMPTS: u32 = 8;

/// `struct loop_info64`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; LO_NAME_SIZE],
    lo_crypt_name: [u8; LO_NAME_SIZE],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// `struct loop_config`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

// The kernel copies exactly these sizes; a layout mistake must not compile.
const _: () = assert!(std::mem::size_of::<LoopInfo64>() == 232);
const _: () = assert!(std::mem::size_of::<LoopConfig>() == 304);

impl LoopInfo64 {
    /// Read-only and autoclear; offset 0, no size limit, no encryption, no direct I/O.
    /// `name` only labels the device for `losetup -l` (truncated to what the kernel keeps).
    fn read_only_autoclear(name: &Path) -> Self {
        let mut lo_file_name = [0u8; LO_NAME_SIZE];
        let bytes = name.as_os_str().as_encoded_bytes();
        // The last byte stays NUL.
        for (dst, src) in lo_file_name
            .iter_mut()
            .take(LO_NAME_SIZE.saturating_sub(1))
            .zip(bytes)
        {
            *dst = *src;
        }
        LoopInfo64 {
            lo_device: 0,
            lo_inode: 0,
            lo_rdevice: 0,
            lo_offset: 0,
            lo_sizelimit: 0,
            lo_number: 0,
            lo_encrypt_type: 0,
            lo_encrypt_key_size: 0,
            lo_flags: LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR,
            lo_file_name,
            lo_crypt_name: [0; LO_NAME_SIZE],
            lo_encrypt_key: [0; 32],
            lo_init: [0; 2],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoopError {
    #[error("cannot open {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("no free loop device (LOOP_CTL_GET_FREE on {LOOP_CONTROL})")]
    GetFree {
        #[source]
        source: Errno,
    },
    #[error("cannot attach {device}")]
    Attach {
        device: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("cannot make {device} autoclear")]
    Status {
        device: PathBuf,
        #[source]
        source: Errno,
    },
    #[error("other processes took every free loop device first ({MAX_ATTEMPTS} attempts)")]
    Raced,
}

/// A loop device attached read-only and autoclear to a file; detached on drop unless
/// [`LoopDevice::persist`] was called.
#[derive(Debug)]
pub struct LoopDevice {
    fd: OwnedFd,
    path: PathBuf,
    attached: bool,
}

impl LoopDevice {
    /// Attaches the open file `backing` (read-only) to a free loop device. `name` labels it.
    pub fn attach_read_only(backing: BorrowedFd<'_>, name: &Path) -> Result<Self, LoopError> {
        let control = open(Path::new(LOOP_CONTROL), OFlags::RDWR)?;
        let info = LoopInfo64::read_only_autoclear(name);
        let backing_fd = u32::try_from(backing.as_raw_fd()).map_err(|_| LoopError::GetFree {
            source: Errno::BADF,
        })?;
        for _ in 0..MAX_ATTEMPTS {
            let n = get_free(control.as_fd()).map_err(|source| LoopError::GetFree { source })?;
            let path = PathBuf::from(format!("/dev/loop{n}"));
            let fd = match open(&path, OFlags::RDONLY) {
                Ok(fd) => fd,
                // Another process attached the same free device and is detaching it again
                // (autoclear): recent kernels refuse opens during that rundown with ENXIO.
                // The device was taken, as with EBUSY below: ask for a free one again.
                Err(LoopError::Open {
                    source: Errno::NXIO,
                    ..
                }) => continue,
                Err(e) => return Err(e),
            };
            let config = LoopConfig {
                fd: backing_fd,
                block_size: 0,
                info,
                reserved: [0; 8],
            };
            match configure(fd.as_fd(), &config) {
                Ok(()) => {
                    log::debug!("{} attached with LOOP_CONFIGURE", path.display());
                    return Ok(LoopDevice {
                        fd,
                        path,
                        attached: true,
                    });
                }
                Err(Errno::BUSY) => continue,
                Err(Errno::INVAL | Errno::NOTTY) => {}
                Err(source) => {
                    return Err(LoopError::Attach {
                        device: path,
                        source,
                    })
                }
            }
            // A kernel older than 5.8: the two-step attach.
            match set_fd(fd.as_fd(), backing) {
                Ok(()) => {}
                Err(Errno::BUSY) => continue,
                Err(source) => {
                    return Err(LoopError::Attach {
                        device: path,
                        source,
                    })
                }
            }
            // Guarded from here: a failing LOOP_SET_STATUS64 detaches on return.
            let dev = LoopDevice {
                fd,
                path,
                attached: true,
            };
            set_status64(dev.fd.as_fd(), &info).map_err(|source| LoopError::Status {
                device: dev.path.clone(),
                source,
            })?;
            log::debug!(
                "{} attached with LOOP_SET_FD + LOOP_SET_STATUS64",
                dev.path.display()
            );
            return Ok(dev);
        }
        Err(LoopError::Raced)
    }

    /// `/dev/loopN`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Leaves the device attached: autoclear detaches it once its filesystem is unmounted.
    pub fn persist(mut self) {
        self.attached = false;
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if !self.attached {
            return;
        }
        match clr_fd(self.fd.as_fd()) {
            Ok(()) => log::debug!("detached {}", self.path.display()),
            // Already unbound (autoclear beat us to it).
            Err(Errno::NXIO) => {}
            // Still mounted somewhere: autoclear detaches it when that goes.
            Err(e) => log::warn!("cannot detach {}: {e}", self.path.display()),
        }
    }
}

fn open(path: &Path, mode: OFlags) -> Result<OwnedFd, LoopError> {
    rustix::fs::open(path, mode | OFlags::CLOEXEC, Mode::empty()).map_err(|source| {
        LoopError::Open {
            path: path.to_owned(),
            source,
        }
    })
}

/// An ioctl whose argument is a plain pointer-sized value and whose result is the return value.
struct Raw {
    opcode: Opcode,
    arg: *mut c_void,
}

// SAFETY: `Raw` passes `arg` through unchanged and reads no memory afterwards; each function
// below pairs an opcode with the argument `<linux/loop.h>` documents for it.
unsafe impl Ioctl for Raw {
    type Output = IoctlOutput;
    const IS_MUTATING: bool = true;

    fn opcode(&self) -> Opcode {
        self.opcode
    }

    fn as_ptr(&mut self) -> *mut c_void {
        self.arg
    }

    unsafe fn output_from_ptr(
        out: IoctlOutput,
        _: *mut c_void,
    ) -> rustix::io::Result<Self::Output> {
        Ok(out)
    }
}

/// `LOOP_CTL_GET_FREE`: no argument; returns the number of a free (possibly new) device.
fn get_free(control: BorrowedFd<'_>) -> Result<u32, Errno> {
    let arg = std::ptr::null_mut();
    // SAFETY: LOOP_CTL_GET_FREE ignores its argument and touches no user memory.
    let n = unsafe {
        rustix::ioctl::ioctl(
            control,
            Raw {
                opcode: LOOP_CTL_GET_FREE,
                arg,
            },
        )
    }?;
    u32::try_from(n).map_err(|_| Errno::RANGE)
}

/// `LOOP_CONFIGURE`: the argument points to a `struct loop_config`, which the kernel only reads.
fn configure(dev: BorrowedFd<'_>, config: &LoopConfig) -> Result<(), Errno> {
    let arg = std::ptr::from_ref(config).cast_mut().cast::<c_void>();
    // SAFETY: `config` is a live, correctly laid out `struct loop_config` (size checked above)
    // for the duration of the call; the kernel copies it in and never writes to it.
    unsafe {
        rustix::ioctl::ioctl(
            dev,
            Raw {
                opcode: LOOP_CONFIGURE,
                arg,
            },
        )
    }
    .map(drop)
}

/// `LOOP_SET_FD`: the argument is the backing file descriptor itself, passed by value.
fn set_fd(dev: BorrowedFd<'_>, backing: BorrowedFd<'_>) -> Result<(), Errno> {
    let raw = usize::try_from(backing.as_raw_fd()).map_err(|_| Errno::BADF)?;
    let arg = std::ptr::without_provenance_mut(raw);
    // SAFETY: LOOP_SET_FD reads its argument as an integer (a descriptor that is open for the
    // whole call, borrowed from the caller) and dereferences no pointer.
    unsafe {
        rustix::ioctl::ioctl(
            dev,
            Raw {
                opcode: LOOP_SET_FD,
                arg,
            },
        )
    }
    .map(drop)
}

/// `LOOP_SET_STATUS64`: the argument points to a `struct loop_info64`, which the kernel reads.
fn set_status64(dev: BorrowedFd<'_>, info: &LoopInfo64) -> Result<(), Errno> {
    let arg = std::ptr::from_ref(info).cast_mut().cast::<c_void>();
    // SAFETY: `info` is a live, correctly laid out `struct loop_info64` (size checked above)
    // for the duration of the call; the kernel copies it in and never writes to it.
    unsafe {
        rustix::ioctl::ioctl(
            dev,
            Raw {
                opcode: LOOP_SET_STATUS64,
                arg,
            },
        )
    }
    .map(drop)
}

/// `LOOP_CLR_FD`: no argument.
fn clr_fd(dev: BorrowedFd<'_>) -> Result<(), Errno> {
    let arg = std::ptr::null_mut();
    // SAFETY: LOOP_CLR_FD ignores its argument and touches no user memory.
    unsafe {
        rustix::ioctl::ioctl(
            dev,
            Raw {
                opcode: LOOP_CLR_FD,
                arg,
            },
        )
    }
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_is_read_only_autoclear_and_names_the_file() {
        let info = LoopInfo64::read_only_autoclear(Path::new("/run/x.img"));
        assert_eq!(info.lo_flags, LO_FLAGS_READ_ONLY | LO_FLAGS_AUTOCLEAR);
        assert_eq!(&info.lo_file_name[..11], b"/run/x.img\0");
        assert_eq!((info.lo_offset, info.lo_sizelimit), (0, 0));
        // A long name is cut, and stays NUL-terminated.
        let long = "a".repeat(200);
        let info = LoopInfo64::read_only_autoclear(Path::new(&long));
        assert_eq!(info.lo_file_name[LO_NAME_SIZE - 1], 0);
        assert_eq!(info.lo_file_name[LO_NAME_SIZE - 2], b'a');
    }

    fn sys(dev: &Path, rel: &str) -> String {
        let name = dev.file_name().unwrap();
        std::fs::read_to_string(Path::new("/sys/block").join(name).join(rel))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    #[test]
    fn attaches_read_only_autoclear_and_detaches_on_drop() {
        if !crate::support::testing::is_root() || !Path::new(LOOP_CONTROL).exists() {
            crate::support::testing::skip("loop devices need root and /dev/loop-control");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("backing.img");
        std::fs::write(&img, vec![0x5au8; 1 << 20]).unwrap();
        let f = std::fs::File::open(&img).unwrap();
        let dev = LoopDevice::attach_read_only(f.as_fd(), &img).unwrap();
        let path = dev.path().to_owned();
        assert_eq!(sys(&path, "ro"), "1");
        assert_eq!(sys(&path, "loop/autoclear"), "1");
        assert_eq!(sys(&path, "loop/dio"), "0");
        assert_eq!(Path::new(&sys(&path, "loop/backing_file")), img);
        // Writes through the device are refused (the open itself may succeed).
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &[0u8; 4096]).and(f.sync_all()));
        assert!(w.is_err(), "wrote through a read-only loop device");
        assert!(std::fs::read(&img).unwrap().iter().all(|&b| b == 0x5a));
        drop(dev);
        assert_eq!(sys(&path, "loop/backing_file"), "", "still attached");

        // The legacy path gives the same device state.
        let dev = legacy_attach(&f, &img);
        assert_eq!(sys(dev.path(), "ro"), "1");
        assert_eq!(sys(dev.path(), "loop/autoclear"), "1");
        let path = dev.path().to_owned();
        drop(dev);
        assert_eq!(sys(&path, "loop/backing_file"), "");
    }

    /// `LOOP_SET_FD` + `LOOP_SET_STATUS64`, as on a kernel without `LOOP_CONFIGURE`.
    fn legacy_attach(f: &std::fs::File, img: &Path) -> LoopDevice {
        let control = open(Path::new(LOOP_CONTROL), OFlags::RDWR).unwrap();
        let n = get_free(control.as_fd()).unwrap();
        let path = PathBuf::from(format!("/dev/loop{n}"));
        let fd = open(&path, OFlags::RDONLY).unwrap();
        set_fd(fd.as_fd(), f.as_fd()).unwrap();
        let dev = LoopDevice {
            fd,
            path,
            attached: true,
        };
        set_status64(dev.fd.as_fd(), &LoopInfo64::read_only_autoclear(img)).unwrap();
        dev
    }

    #[test]
    fn a_persisted_device_stays_until_its_last_user_goes() {
        if !crate::support::testing::is_root() || !Path::new(LOOP_CONTROL).exists() {
            crate::support::testing::skip("loop devices need root and /dev/loop-control");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("backing.img");
        std::fs::write(&img, vec![0u8; 1 << 20]).unwrap();
        let f = std::fs::File::open(&img).unwrap();
        let dev = LoopDevice::attach_read_only(f.as_fd(), &img).unwrap();
        let path = dev.path().to_owned();
        // Another opener (a mount, in real use) keeps it; autoclear frees it after.
        let user = std::fs::File::open(&path).unwrap();
        dev.persist();
        assert_eq!(Path::new(&sys(&path, "loop/backing_file")), img);
        drop(user);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !sys(&path, "loop/backing_file").is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "autoclear did not detach"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}
