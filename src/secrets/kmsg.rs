//! Why a bundle appended to the initramfs may be missing: the kernel says so in its log.
//!
//! A per-node cpio appended with `cat` after a compressed initramfs whose length is not a
//! multiple of 4 is not read: `unpack_to_rootfs()` (init/initramfs.c) only recognises an
//! uncompressed cpio header at a 4-byte boundary, tries to decompress it instead, and logs
//! `Initramfs unpacking failed: invalid magic at start of compressed archive`. The node then
//! boots without `/rustlive/secrets.json` and, without this warning, nothing says why.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The kernel's line, as `populate_rootfs` prints it.
const UNPACK_FAILED: &str = "Initramfs unpacking failed:";
const NOT_INITRAMFS: &str = "rootfs image is not initramfs (";
/// Bounds on reading `/dev/kmsg`: it holds the whole boot's log at this point.
const MAX_RECORDS: usize = 100_000;
const MAX_BYTES: usize = 16 << 20;

/// The kernel's reason when the log text (`/dev/kmsg` records or `dmesg` lines) reports that the
/// initramfs could not be unpacked whole.
pub fn unpack_failure(log: &str) -> Option<&str> {
    log.lines().find_map(|line| {
        if let Some((_, reason)) = line.split_once(UNPACK_FAILED) {
            return Some(reason.trim());
        }
        // A kernel with CONFIG_BLK_DEV_RAM=y says it this way and keeps the rest as an initrd.
        let (_, rest) = line.split_once(NOT_INITRAMFS)?;
        rest.split_once(')').map(|(reason, _)| reason.trim())
    })
}

/// The warning for [`unpack_failure`]'s reason, naming the padding cause and the two fixes.
pub fn padding_warning(reason: &str) -> String {
    format!(
        "secrets: no bundle found, and the kernel reported \"{UNPACK_FAILED} {reason}\": \
         a cpio appended with cat after an initramfs whose length is not a multiple of 4 bytes \
         is not read by the kernel; build the per-node initrd with `rustlive bundle build -o \
         FILE.cpio` (gzip'ed, read at any offset) or pad the first archive (truncate -s %4)"
    )
}

/// The kernel log so far, from `/dev/kmsg` (`kmsg`; read without blocking and without
/// consuming it); empty when it cannot be read.
pub fn read_kernel_log(kmsg: &Path) -> String {
    let Ok(mut f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(crate::sys::fs::O_NONBLOCK)
        .open(kmsg)
    else {
        return String::new();
    };
    let mut out = String::new();
    // Each read returns one record; EAGAIN once caught up with the log.
    let mut buf = vec![0u8; 8192];
    for _ in 0..MAX_RECORDS {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let rec = buf.get(..n).unwrap_or_default();
                out.push_str(&String::from_utf8_lossy(rec));
                if !out.ends_with('\n') {
                    out.push('\n');
                }
                if out.len() > MAX_BYTES {
                    break;
                }
            }
            // EPIPE: records overwritten while reading; the next read goes on from the oldest.
            Err(e) if e.raw_os_error() == Some(crate::sys::Errno::PIPE.raw_os_error()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    out
}

/// The warning to log when no bundle was found, if the kernel's log explains why.
pub fn missing_bundle_warning(log: &str) -> Option<String> {
    unpack_failure(log).map(padding_warning)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_reason_in_kmsg_records_and_dmesg_lines() {
        let kmsg = "6,1,0,-;Linux version 6.1.0\n\
                    3,312,520134,-;Initramfs unpacking failed: invalid magic at start of compressed archive\n\
                    6,313,520200,-;Freeing initrd memory: 51200K\n";
        assert_eq!(
            unpack_failure(kmsg),
            Some("invalid magic at start of compressed archive")
        );
        let dmesg =
            "[    0.912345] Initramfs unpacking failed: junk at the end of compressed archive\n";
        assert_eq!(
            unpack_failure(dmesg),
            Some("junk at the end of compressed archive")
        );
        assert_eq!(
            unpack_failure("6,1,0,-;Trying to unpack rootfs image as initramfs...\n"),
            None
        );
        assert_eq!(unpack_failure(""), None);
    }

    #[test]
    fn the_warning_names_the_padding_cause_and_the_fixes() {
        let w = missing_bundle_warning(
            "Initramfs unpacking failed: invalid magic at start of compressed archive",
        )
        .unwrap();
        assert!(
            w.contains("invalid magic at start of compressed archive"),
            "{w}"
        );
        assert!(w.contains("multiple of 4"), "{w}");
        assert!(w.contains("rustlive bundle build"), "{w}");
        assert!(w.contains("truncate -s %4"), "{w}");
        assert_eq!(missing_bundle_warning("all fine"), None);
    }

    #[test]
    fn reads_a_log_under_an_injected_root() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("kmsg");
        assert_eq!(read_kernel_log(&f), "", "missing: empty");
        std::fs::write(
            &f,
            "3,1,2,-;Initramfs unpacking failed: invalid magic at start of compressed archive\n",
        )
        .unwrap();
        let w = missing_bundle_warning(&read_kernel_log(&f)).unwrap();
        assert!(w.contains("invalid magic"), "{w}");
    }

    #[test]
    fn reads_the_kernel_log_without_blocking() {
        if std::fs::File::open("/dev/kmsg").is_err() {
            return crate::support::testing::skip("/dev/kmsg is not readable here (needs root)");
        }
        let started = std::time::Instant::now();
        let log = read_kernel_log(Path::new("/dev/kmsg"));
        // It returned once caught up (EAGAIN), with the records as text, one per line.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
        assert!(!log.is_empty());
        assert!(
            log.lines().all(|l| l.contains(';') || l.starts_with(' ')),
            "{log:.300}"
        );
    }
}
