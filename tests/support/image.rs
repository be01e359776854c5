//! Root images built with the real tools (mksquashfs, mkfs.erofs, mkfs.ext4, xorriso), and the
//! check that a test may build and mount them at all.

use super::run_ok;
use std::path::Path;
use std::process::Command;

#[derive(Clone, Copy, Debug)]
pub enum Fs {
    Squashfs,
    Erofs,
    Ext4,
    /// Live media: the squashfs of the tree as `LiveOS/squashfs.img` on an ISO 9660 image.
    Iso,
}

/// Why the test cannot run: not root, no loop devices, or the first of `tools` not on PATH.
pub fn missing(tools: &[&str]) -> Option<String> {
    if !rustlive::support::testing::is_root() {
        return Some("needs root (mounts and loop devices)".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Some("no /dev/loop-control".into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    tools
        .iter()
        .find(|t| !std::env::split_paths(&path).any(|d| d.join(t).is_file()))
        .map(|t| format!("{t} is not installed"))
}

/// Skips (returns from) the test when [`missing`] gives a reason.
#[macro_export]
macro_rules! require {
    ($($tool:expr),*) => {
        if let Some(why) = $crate::support::image::missing(&[$($tool),*]) {
            rustlive::support::testing::skip(&why);
            return;
        }
    };
}

/// Builds an image of format `fs` from the directory `src` into `out`; an ext4 image is
/// `ext4_size` large (a mkfs.ext4 size such as "16M").
pub fn build(fs: Fs, src: &Path, out: &Path, ext4_size: &str) {
    match fs {
        Fs::Squashfs => {
            run_ok(Command::new("mksquashfs").args([src, out]).args([
                "-noappend",
                "-quiet",
                "-no-progress",
            ]));
        }
        Fs::Erofs => {
            run_ok(Command::new("mkfs.erofs").arg("--quiet").args([out, src]));
        }
        Fs::Ext4 => {
            run_ok(
                Command::new("mkfs.ext4")
                    .args(["-q", "-F", "-d"])
                    .args([src, out])
                    .arg(ext4_size),
            );
        }
        Fs::Iso => {
            let iso_src = out.with_extension("isodir");
            std::fs::create_dir_all(iso_src.join("LiveOS")).unwrap();
            build(
                Fs::Squashfs,
                src,
                &iso_src.join("LiveOS/squashfs.img"),
                ext4_size,
            );
            run_ok(
                Command::new("xorriso")
                    .args(["-as", "mkisofs", "-quiet", "-R", "-V", "HOSTILE", "-o"])
                    .args([out, &iso_src]),
            );
            std::fs::remove_dir_all(&iso_src).unwrap();
        }
    }
}

/// `len` incompressible bytes (xorshift64), so that a cut-off image misses real data.
pub fn incompressible(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
