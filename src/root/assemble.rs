//! `rustlive assemble`: the root image mounted read-only under a writable tmpfs overlay.
//!
//! Mounts, all helper mounts under one directory of `/run` so that they travel with `/run`
//! through switch-root and an admin finds them with `findmnt -R /run/rustlive/mnt`:
//!
//! | path | what |
//! |---|---|
//! | `/run/rustlive/mnt/image` | the image's filesystem (squashfs, erofs, ext2/3/4 or ISO), read-only on a loop device |
//! | `/run/rustlive/mnt/nested` | the nested image inside it (`LiveOS/rootfs.img`, `LiveOS/ext3fs.img`, or an ISO's `LiveOS/squashfs.img`), read-only on a loop device |
//! | `/run/rustlive/mnt/nested2` | `LiveOS/rootfs.img` inside an ISO's `squashfs.img` |
//! | `/run/rustlive/mnt/overlay` | the tmpfs holding the writable layer, sized by `rd.rustlive.overlay.size` |
//! | `/run/rustlive/mnt/overlay/upper`, `…/work` | overlayfs upper and work directories |
//! | NEWROOT (`/sysroot`) | the overlayfs: the deepest read-only filesystem above as lower layer, writable |
//!
//! Loop devices are read-only and autoclear: the kernel detaches them when their filesystem is
//! unmounted, so nothing is left behind after switch-root either. The image file is used in
//! place (no copy). Until [`Assembled::persist`] is called, every mount and loop device is
//! undone on drop, so a failure leaves a clean system for the emergency shell or a retry.

use crate::root::image::{Format, ImageError, ImageFile, LiveLayout, MAX_DEPTH};
use crate::root::ram::MemInfo;
use crate::root::rootfs::{self, NotBootable};
use crate::support::values::Size;
use crate::sys::loopdev::{LoopDevice, LoopError};
use crate::sys::mount::MountFlags;
use crate::sys::mount::MountGuard;
use crate::sys::Errno;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Default parent of every helper mount.
pub const RUN_DIR: &str = "/run/rustlive/mnt";

/// Names of the helper mounts under the run directory, by nesting depth.
const LAYER_DIRS: [&str; MAX_DEPTH] = ["image", "nested", "nested2"];
const OVERLAY_DIR: &str = "overlay";

#[derive(Debug, Clone, PartialEq)]
pub struct AssembleOptions {
    /// Size of the tmpfs for the writable layer.
    pub overlay_size: Size,
    pub layout: LiveLayout,
    /// The init that must exist in the new root.
    pub init: PathBuf,
    /// Parent of the helper mounts ([`RUN_DIR`]; tests use a temporary directory).
    pub run_dir: PathBuf,
}

impl AssembleOptions {
    /// Mount point of the filesystem at nesting `depth` (0 is the image itself).
    pub fn layer_dir(&self, depth: usize) -> PathBuf {
        match LAYER_DIRS.get(depth) {
            Some(name) => self.run_dir.join(name),
            None => self.run_dir.join(format!("nested{depth}")),
        }
    }

    pub fn overlay_dir(&self) -> PathBuf {
        self.run_dir.join(OVERLAY_DIR)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{image} is {format} but holds no {expected}")]
    NestedMissing {
        image: PathBuf,
        format: Format,
        expected: String,
    },
    #[error("{image} nests images more than {MAX_DEPTH} levels deep")]
    TooDeep { image: PathBuf },
    #[error("invalid overlay size {size}: {reason}")]
    OverlaySize { size: Size, reason: String },
    #[error(transparent)]
    MemInfo(#[from] crate::root::ram::RamError),
    #[error("cannot create {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot attach a read-only loop device to {image}")]
    Loop {
        image: PathBuf,
        #[source]
        source: LoopError,
    },
    #[error("loop device {device} for {image} is not {what}")]
    LoopFlags {
        device: PathBuf,
        image: PathBuf,
        what: &'static str,
    },
    #[error("cannot mount {what} on {target}{hint}")]
    Mount {
        what: String,
        target: PathBuf,
        hint: &'static str,
        #[source]
        source: Errno,
    },
    #[error("{newroot} cannot be booted")]
    NotBootable {
        newroot: PathBuf,
        #[source]
        source: NotBootable,
    },
}

/// A mounted root: the overlay on NEWROOT and every helper mount and loop device beneath it.
/// Dropping it undoes them all, in reverse order, unless [`Assembled::persist`] was called.
#[derive(Debug)]
pub struct Assembled {
    newroot: PathBuf,
    lower: PathBuf,
    upper: PathBuf,
    guards: Vec<Guard>,
}

#[derive(Debug)]
enum Guard {
    Mount(MountGuard),
    Loop(LoopDevice),
}

impl Assembled {
    pub fn newroot(&self) -> &Path {
        &self.newroot
    }

    /// The read-only filesystem that is the overlay's lower layer.
    pub fn lower(&self) -> &Path {
        &self.lower
    }

    /// The overlay's upper directory on the tmpfs, where every write to NEWROOT lands.
    pub fn upper(&self) -> &Path {
        &self.upper
    }

    /// Leaves everything mounted (the boot succeeded). The loop devices detach themselves
    /// when their filesystems are finally unmounted.
    ///
    /// The writable layer's tmpfs is detached from `/run` first: the overlay keeps it alive,
    /// but the booted system must not reach the node's secrets (written into the upper
    /// directory) through `/run/rustlive`, which survives switch-root.
    pub fn persist(mut self) {
        if let Some(overlay) = self.upper.parent() {
            match crate::sys::mount::detach(overlay) {
                Ok(()) => log::debug!("detached {} (the overlay keeps it)", overlay.display()),
                Err(e) => log::warn!("cannot detach {}: {e}", overlay.display()),
            }
        }
        for g in self.guards.drain(..) {
            match g {
                Guard::Mount(m) => m.keep(),
                Guard::Loop(l) => l.persist(),
            }
        }
    }
}

impl Drop for Assembled {
    fn drop(&mut self) {
        // Newest first: the overlay before the tmpfs, a filesystem before its loop device,
        // the nested image before the one holding it.
        while let Some(g) = self.guards.pop() {
            drop(g);
        }
    }
}

/// Mounts `image` read-only under a tmpfs overlay on `newroot` and checks that the result can
/// boot. On error, nothing stays mounted or attached.
pub fn assemble(
    image: &Path,
    newroot: &Path,
    opts: &AssembleOptions,
) -> Result<Assembled, AssembleError> {
    let total = MemInfo::read(Path::new(crate::root::ram::PROC_MEMINFO))?.total;
    let overlay_bytes = resolve_overlay_size(opts.overlay_size, total)?;

    let mut a = Assembled {
        newroot: newroot.to_owned(),
        lower: PathBuf::new(),
        upper: PathBuf::new(),
        guards: Vec::new(),
    };
    // Each layer is opened once: the open file that was checked is the one attached.
    let mut next = Some(ImageFile::open(image)?);
    let mut lower = None;
    for depth in 0..MAX_DEPTH {
        let Some(file) = next.take() else { break };
        let fmt = file.detect()?;
        let target = opts.layer_dir(depth);
        mount_image(&mut a, &file, fmt, &target)?;
        next = find_nested(&opts.layout, fmt, &target)?;
        match &next {
            Some(inner) => log::info!(
                "{} holds the nested image {}",
                target.display(),
                inner.path().display()
            ),
            None => {
                if let Some(expected) = opts.layout.required_inside(fmt) {
                    return Err(AssembleError::NestedMissing {
                        image: file.path().to_owned(),
                        format: fmt,
                        expected,
                    });
                }
                lower = Some(target);
            }
        }
    }
    a.lower = match (next, lower) {
        (None, Some(lower)) => lower,
        _ => {
            return Err(AssembleError::TooDeep {
                image: image.to_owned(),
            })
        }
    };

    let overlay = opts.overlay_dir();
    mkdir(&overlay, 0o755)?;
    let data = tmpfs_data(overlay_bytes);
    let m = MountGuard::mount(
        Path::new("tmpfs"),
        &overlay,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        Some(&data),
    )
    .map_err(|source| mount_error("a tmpfs for the writable layer", &overlay, "tmpfs", source))?;
    a.guards.push(Guard::Mount(m));
    log::info!(
        "writable layer: tmpfs of {} at {}",
        crate::support::log::mib(overlay_bytes),
        overlay.display()
    );
    a.upper = overlay.join("upper");
    let work = overlay.join("work");
    // The overlay's root directory takes the upper directory's mode.
    mkdir(&a.upper, 0o755)?;
    mkdir(&work, 0o755)?;

    mkdir(newroot, 0o755)?;
    let data = overlay_data(&a.lower, &a.upper, &work);
    let m = MountGuard::mount(
        Path::new("overlay"),
        newroot,
        "overlay",
        MountFlags::empty(),
        Some(&data),
    )
    .map_err(|source| mount_error("the overlay", newroot, "overlay", source))?;
    a.guards.push(Guard::Mount(m));
    log::info!(
        "new root: overlay on {} (lower {}, upper {})",
        newroot.display(),
        a.lower.display(),
        a.upper.display()
    );

    rootfs::check_bootable(newroot, &opts.init).map_err(|source| AssembleError::NotBootable {
        newroot: newroot.to_owned(),
        source,
    })?;
    Ok(a)
}

/// The nested image inside the filesystem mounted on `dir`, if it holds one. Opened without
/// following symlinks: a link in a hostile image must not lead to a file outside it (an
/// initramfs file mounted as the root).
fn find_nested(
    layout: &LiveLayout,
    fmt: Format,
    dir: &Path,
) -> Result<Option<ImageFile>, ImageError> {
    for rel in layout.candidates(fmt) {
        if let Some(f) = ImageFile::open_nested(dir, &rel)? {
            return Ok(Some(f));
        }
    }
    Ok(None)
}

/// Attaches `file` to a read-only loop device and mounts it read-only on `target`. Every step
/// is guarded in `a` as soon as it exists, so an error anywhere unwinds all of them.
fn mount_image(
    a: &mut Assembled,
    file: &ImageFile,
    fmt: Format,
    target: &Path,
) -> Result<(), AssembleError> {
    mkdir(target, 0o755)?;
    let lo = LoopDevice::attach_read_only(file.as_fd(), file.path()).map_err(|source| {
        AssembleError::Loop {
            image: file.path().to_owned(),
            source,
        }
    })?;
    let dev = lo.path().to_owned();
    a.guards.push(Guard::Loop(lo));
    check_loop_flags(&dev, file.path())?;
    log::debug!("attached {} to {}", file.path().display(), dev.display());
    let m = MountGuard::mount(&dev, target, fmt.fstype(), MountFlags::RDONLY, None).map_err(
        |source| {
            let what = format!(
                "the {fmt} image {} (on {})",
                file.path().display(),
                dev.display()
            );
            mount_error(&what, target, fmt.fstype(), source)
        },
    )?;
    a.guards.push(Guard::Mount(m));
    log::info!(
        "mounted {} ({fmt}) read-only on {} via {}",
        file.path().display(),
        target.display(),
        dev.display()
    );
    Ok(())
}

/// Double-checks in sysfs that the kernel really made `device` read-only and autoclear.
fn check_loop_flags(device: &Path, file: &Path) -> Result<(), AssembleError> {
    let Some(name) = device.file_name() else {
        return Ok(());
    };
    let sys = Path::new("/sys/block").join(name);
    if !sys.is_dir() {
        log::debug!("no {}; cannot double-check the loop flags", sys.display());
        return Ok(());
    }
    let read = |rel: &str| std::fs::read_to_string(sys.join(rel)).unwrap_or_default();
    let bad = |what| AssembleError::LoopFlags {
        device: device.to_owned(),
        image: file.to_owned(),
        what,
    };
    if read("ro").trim() != "1" {
        return Err(bad("read-only"));
    }
    if read("loop/autoclear").trim() != "1" {
        return Err(bad("autoclear"));
    }
    Ok(())
}

fn mount_error(what: &str, target: &Path, fstype: &str, source: Errno) -> AssembleError {
    AssembleError::Mount {
        what: what.to_string(),
        target: target.to_owned(),
        hint: mount_hint(source, fstype),
        source,
    }
}

/// A hint for the errors an operator meets in practice.
fn mount_hint(e: Errno, fstype: &str) -> &'static str {
    match (e, fstype) {
        (Errno::NODEV, "overlay") => " (the kernel has no overlayfs: load the overlay module)",
        (Errno::NODEV, "tmpfs") => " (the kernel has no tmpfs)",
        (Errno::NODEV, _) => " (the kernel does not support this filesystem: load its module)",
        (Errno::INVAL | Errno::UCLEAN | Errno::IO, "squashfs" | "erofs" | "ext4" | "iso9660") => {
            " (the image is corrupt or uses a feature this kernel lacks; see dmesg)"
        }
        _ => "",
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<(), AssembleError> {
    let err = |source| AssembleError::CreateDir {
        path: path.to_owned(),
        source,
    };
    std::fs::create_dir_all(path).map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// The tmpfs size in bytes for `size` on a machine with `total_ram` bytes.
pub fn resolve_overlay_size(size: Size, total_ram: u64) -> Result<u64, AssembleError> {
    let bytes = size.to_bytes(total_ram);
    // tmpfs reads size=0 as "unlimited", which would let the overlay eat all RAM.
    if bytes == 0 {
        return Err(AssembleError::OverlaySize {
            size,
            reason: "it resolves to 0 bytes".into(),
        });
    }
    if bytes > total_ram {
        log::warn!(
            "overlay size {size} is more than the {} of RAM",
            crate::support::log::mib(total_ram)
        );
    }
    Ok(bytes)
}

/// mount(2) data for the tmpfs holding the writable layer.
pub fn tmpfs_data(bytes: u64) -> String {
    format!("size={bytes},mode=0755")
}

/// mount(2) data for the overlay. overlayfs splits options on `,` and lower layers on `:`,
/// both escapable with a backslash.
pub fn overlay_data(lower: &Path, upper: &Path, work: &Path) -> String {
    format!(
        "lowerdir={},upperdir={},workdir={}",
        escape_overlay_path(lower),
        escape_overlay_path(upper),
        escape_overlay_path(work)
    )
}

fn escape_overlay_path(p: &Path) -> String {
    let mut out = String::new();
    for c in p.to_string_lossy().chars() {
        if matches!(c, '\\' | ',' | ':') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_size_resolution() {
        let ram = 2_000_000_000;
        assert_eq!(
            resolve_overlay_size(Size::Percent(50), ram).unwrap(),
            1_000_000_000
        );
        assert_eq!(
            resolve_overlay_size(Size::Bytes(64 << 20), ram).unwrap(),
            64 << 20
        );
        // More than RAM is allowed (tmpfs pages only count when used), with a warning.
        assert_eq!(
            resolve_overlay_size(Size::Bytes(ram * 2), ram).unwrap(),
            ram * 2
        );
        // 0 would mean "unlimited" to tmpfs.
        assert!(matches!(
            resolve_overlay_size(Size::Bytes(0), ram),
            Err(AssembleError::OverlaySize { .. })
        ));
        assert!(resolve_overlay_size(Size::Percent(1), 50).is_err());
    }

    #[test]
    fn option_strings() {
        assert_eq!(tmpfs_data(1 << 20), "size=1048576,mode=0755");
        assert_eq!(
            overlay_data(
                Path::new("/run/rustlive/mnt/image"),
                Path::new("/run/rustlive/mnt/overlay/upper"),
                Path::new("/run/rustlive/mnt/overlay/work")
            ),
            "lowerdir=/run/rustlive/mnt/image,upperdir=/run/rustlive/mnt/overlay/upper,workdir=/run/rustlive/mnt/overlay/work"
        );
        assert_eq!(
            overlay_data(Path::new("/a,b"), Path::new("/c:d"), Path::new("/e\\f")),
            "lowerdir=/a\\,b,upperdir=/c\\:d,workdir=/e\\\\f"
        );
    }

    #[test]
    fn helper_paths_are_under_one_run_dir() {
        // (The options the command line gives are tested with their conversion, in boot.)
        let o = AssembleOptions {
            overlay_size: Size::Percent(50),
            layout: LiveLayout::default(),
            init: "/sbin/init".into(),
            run_dir: RUN_DIR.into(),
        };
        assert_eq!(o.layer_dir(0), Path::new("/run/rustlive/mnt/image"));
        assert_eq!(o.layer_dir(1), Path::new("/run/rustlive/mnt/nested"));
        assert_eq!(o.layer_dir(2), Path::new("/run/rustlive/mnt/nested2"));
        assert_eq!(o.overlay_dir(), Path::new("/run/rustlive/mnt/overlay"));
    }

    #[test]
    fn mount_errors_carry_a_hint() {
        let e = mount_error(
            "the squashfs image /x.img (on /dev/loop0)",
            Path::new("/run/rustlive/mnt/image"),
            "squashfs",
            Errno::INVAL,
        );
        let msg = crate::support::exit::report(&e);
        assert!(msg.contains("/x.img") && msg.contains("corrupt"), "{msg}");
        assert!(mount_hint(Errno::NODEV, "overlay").contains("overlay module"));
        assert_eq!(mount_hint(Errno::PERM, "squashfs"), "");
    }
}
