//! rustlive as the initramfs's `/init` (PID 1) with no systemd, udev or shell around it: the
//! kernel starts it with an empty rootfs, no `/proc`, no `/dev`, no loaded drivers, and perhaps
//! no console on fds 0-2. [`prepare`] provides what the stages need; [`halt`] replaces an exit,
//! which as PID 1 would panic the kernel.

use crate::sys::mount::MountFlags;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Whether this process is the first process of the system, started from an initramfs (its
/// root is a rootfs/tmpfs). A container's PID 1 has some other root and is left alone.
pub fn is_pid1() -> bool {
    if !crate::sys::process::is_pid1() {
        return false;
    }
    crate::sys::fs::filesystem_type(Path::new("/")).is_ok_and(crate::root::switchroot::is_initramfs)
}

/// The API filesystems: (source, mount point, type, flags, data), with systemd's flags.
const API_FS: [(&str, &str, &str, MountFlags, Option<&str>); 4] = [
    ("proc", "/proc", "proc", NOSUID_NODEV_NOEXEC, None),
    ("sysfs", "/sys", "sysfs", NOSUID_NODEV_NOEXEC, None),
    (
        "devtmpfs",
        "/dev",
        "devtmpfs",
        MountFlags::NOSUID,
        Some("mode=0755"),
    ),
    (
        "tmpfs",
        "/run",
        "tmpfs",
        MountFlags::NOSUID.union(MountFlags::NODEV),
        Some("mode=0755"),
    ),
];
const NOSUID_NODEV_NOEXEC: MountFlags = MountFlags::NOSUID
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// Mounts `/proc`, `/sys`, `/dev`, `/run` where they are not mounted yet and attaches the
/// console to fds 0-2 when the kernel could not. Runs before the logger exists (it needs
/// `/dev/kmsg`), so it returns its warnings for the caller to log; a later stage reports what it
/// then lacks.
pub fn prepare() -> Vec<String> {
    let mut warnings = Vec::new();
    let root_dev = std::fs::metadata("/").map(|m| m.dev()).ok();
    for (src, target, fstype, flags, data) in API_FS {
        if std::fs::metadata(target).is_ok_and(|m| Some(m.dev()) != root_dev) {
            continue;
        }
        let _ = std::fs::create_dir_all(target);
        let mounted =
            crate::sys::mount::mount(Path::new(src), Path::new(target), fstype, flags, data);
        if let Err(e) = mounted {
            warnings.push(format!("cannot mount {fstype} on {target}: {e}"));
        }
    }
    attach_console();
    warnings
}

/// Loads the kernel modules assembling a root needs from `/lib/modules/$(uname -r)`, here and
/// now: for a stage run by hand as PID 1 (`rustlive boot` loads them beside the network
/// instead, see [`crate::boot`]).
pub fn load_modules() {
    match crate::drivers::kmod::modules_dir() {
        Ok(dir) if dir.is_dir() => {
            if let Err(e) = crate::drivers::kmod::load(&dir, crate::drivers::kmod::ASSEMBLY_MODULES)
            {
                log::warn!("{}", crate::support::exit::report(&e));
            }
        }
        Ok(dir) => log::debug!("no {}; not loading modules", dir.display()),
        Err(e) => log::warn!("{}", crate::support::exit::report(&e)),
    }
}

/// Opens `/dev/console` on fds 0-2 when they are closed (no `/dev/console` in the initramfs).
fn attach_console() {
    if crate::sys::process::stderr_open() {
        return;
    }
    let _ = crate::sys::process::attach_stdio(Path::new("/dev/console"));
}

/// `rd.rustlive.onfail=shell` as PID 1: there is no dracut emergency shell, so run the
/// initramfs's `/bin/sh` on the console when there is one, and power off when it exits (or
/// when there is none), since PID 1 must not exit.
pub fn emergency_shell() -> ! {
    let sh = Path::new("/bin/sh");
    if sh.exists() {
        log::error!("starting /bin/sh on the console; the node powers off when it exits");
        match std::process::Command::new(sh).status() {
            Ok(status) => log::info!("/bin/sh exited ({status})"),
            Err(e) => log::error!("cannot run /bin/sh: {e}"),
        }
        halt(std::time::Duration::from_secs(1));
    }
    log::error!(
        "rd.rustlive.onfail=shell, but this initramfs has no /bin/sh (build it with `rustlive initramfs --shell PATH`)"
    );
    halt(std::time::Duration::from_secs(30))
}

/// Instead of exiting (which panics the kernel when PID 1 exits): flush the disks, wait so the
/// console can be read, and power off.
pub fn halt(delay: std::time::Duration) -> ! {
    log::error!(
        "rustlive is PID 1 and cannot continue; powering off in {} s",
        delay.as_secs()
    );
    crate::sys::fs::sync();
    std::thread::sleep(delay);
    // Only an initramfs's PID 1 gets here (see is_pid1), where reboot(2) is permitted; if the
    // kernel still refuses, exiting would panic it, so wait for someone at the console.
    if let Err(e) = crate::sys::power::reboot(crate::sys::power::Reboot::PowerOff) {
        log::error!("cannot power off: {e}");
    }
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
