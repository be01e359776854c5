//! Hostile root images through the real binary (`rustlive assemble`): truncated, short, zero
//! and garbage images of every format, tiny `hsqs` files, nested images that are symlinks
//! (absolute and relative, to a real bootable image outside), nested truncated images.
//!
//! Every case asserts a clear error on stderr and exit code 5 (root assembly failed; a panic
//! would be 101 here, 134 with the release profile's `panic = "abort"`), and that nothing is
//! left behind: no mount under the test directory (`/proc/self/mountinfo`), no loop device
//! backed by a file under it (`/sys/block/loop*/loop/backing_file`), no file in the helper or
//! new-root directories, and every input file unchanged.
//!
//! Needs root, loop devices and the image tools; run it in a private mount namespace:
//! `unshare -m --propagation private cargo test --test hostile_image`.

mod support;

use sha2::{Digest, Sha256};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::image::{self, Fs};
use support::run_ok;

const ALL: [Fs; 4] = [Fs::Squashfs, Fs::Erofs, Fs::Ext4, Fs::Iso];

/// One test's directory: inputs, helper mounts (`run/`) and the new root (`newroot/`).
struct Fx {
    dir: tempfile::TempDir,
}

impl Fx {
    fn new() -> Self {
        Fx {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// A bootable root tree (init, os-release, a marker file) at `rel`.
    fn root_tree(&self, rel: &str) -> PathBuf {
        let d = self.path(rel);
        for sub in ["sbin", "etc", "usr/lib"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        std::fs::write(d.join("usr/lib/os-release"), "ID=hostile-test\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", d.join("etc/os-release")).unwrap();
        let init = d.join("sbin/init");
        std::fs::write(&init, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Incompressible content, so that a cut-off image misses real data.
        std::fs::write(d.join("noise"), image::incompressible(128 << 10)).unwrap();
        d
    }

    /// An image of format `fs` built from the directory `src`, written to `out`. An ISO holds
    /// the squashfs of `src` as `LiveOS/squashfs.img`, the way live media do.
    fn build(&self, fs: Fs, src: &Path, out: &Path) {
        image::build(fs, src, out, "8M");
    }

    /// A bootable image of format `fs` at `name`.
    fn image(&self, fs: Fs, name: &str) -> PathBuf {
        let src = self.root_tree(&format!("{name}.src"));
        let out = self.path(name);
        self.build(fs, &src, &out);
        std::fs::remove_dir_all(&src).unwrap();
        out
    }

    /// A squashfs whose `LiveOS/` is filled by `fill` (given the `LiveOS` directory).
    fn outer_squashfs(&self, name: &str, fill: impl FnOnce(&Path)) -> PathBuf {
        let src = self.path(&format!("{name}.src"));
        std::fs::create_dir_all(src.join("LiveOS")).unwrap();
        fill(&src.join("LiveOS"));
        let out = self.path(name);
        self.build(Fs::Squashfs, &src, &out);
        std::fs::remove_dir_all(&src).unwrap();
        out
    }

    fn assemble(&self, img: &Path) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rustlive"))
            .args(["assemble", "--cmdline", "", "--overlay-size", "8M"])
            .arg("--image")
            .arg(img)
            .arg("--newroot")
            .arg(self.path("newroot"))
            .arg("--run-dir")
            .arg(self.path("run"))
            .env("RUSTLIVE_LOG", "stderr")
            .output()
            .unwrap()
    }

    /// Runs `assemble` on `img`, which must be refused with exit 5 and a message containing
    /// every one of `want`; then checks that nothing is left and no input changed.
    fn refused(&self, img: &Path, want: &[&str]) -> String {
        let inputs = self.inputs();
        let t = Instant::now();
        let out = self.assemble(img);
        eprintln!("{}: refused in {:?}", img.display(), t.elapsed());
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(
            out.status.code(),
            Some(5),
            "{}: expected exit 5, got {:?}: {stderr}",
            img.display(),
            out.status
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        for w in want {
            assert!(
                stderr.contains(w),
                "{}: stderr lacks {w:?}: {stderr}",
                img.display()
            );
        }
        self.assert_clean();
        assert_eq!(self.inputs(), inputs, "an input file changed");
        stderr
    }

    /// Nothing mounted under the test directory, no loop device backed by a file under it,
    /// no file in the helper or new-root directories.
    fn assert_clean(&self) {
        let left = mounts_under(self.dir.path());
        assert!(left.is_empty(), "still mounted: {left:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let loops = loops_under(self.dir.path());
            if loops.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "loop devices still attached: {loops:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for d in ["run", "newroot"] {
            let files = files_under(&self.path(d));
            assert!(files.is_empty(), "left in {d}/: {files:?}");
        }
    }

    /// Every regular file directly in the test directory with its hash.
    fn inputs(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .map(|p| {
                let h = Sha256::digest(std::fs::read(&p).unwrap()).to_vec();
                (p, h)
            })
            .collect();
        v.sort();
        v
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|mp| mp.starts_with(&dir))
        .map(str::to_string)
        .collect()
}

fn loops_under(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        if let Ok(b) = std::fs::read_to_string(e.path().join("loop/backing_file")) {
            if Path::new(b.trim()).starts_with(dir) {
                out.push((e.path(), b.trim().to_string()));
            }
        }
    }
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            out.extend(files_under(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

fn write(p: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(p, bytes).unwrap();
    p.to_owned()
}

/// The first `n` bytes of `src`, as a new file `dst`.
fn prefix(src: &Path, dst: &Path, n: usize) -> PathBuf {
    let b = std::fs::read(src).unwrap();
    write(dst, &b[..n.min(b.len())])
}

fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn empty_zero_and_garbage_files() {
    require!();
    let fx = Fx::new();
    fx.refused(&write(&fx.path("empty.img"), b""), &["empty file"]);
    fx.refused(&write(&fx.path("zero.img"), &[0u8; 65536]), &["zero bytes"]);
    let e = fx.refused(
        &write(&fx.path("garbage.img"), &noise(65536, 7)),
        &["garbage.img", "unknown data"],
    );
    // The content is never quoted (it might be a secret rather than an image).
    let first: Vec<String> = noise(4, 7).iter().map(|b| format!("{b:02x}")).collect();
    assert!(!e.contains(&first.join(" ")), "{e}");
    fx.refused(
        &write(
            &fx.path("page.img"),
            b"<html><body>502 Bad Gateway</body></html>",
        ),
        &["HTML"],
    );
    // Not a regular file at all.
    fx.refused(&fx.path("newroot-missing"), &["cannot read the image"]);
    std::fs::create_dir_all(fx.path("adir")).unwrap();
    fx.refused(&fx.path("adir"), &["not a regular file"]);
}

/// Regression (issue 9 item 1): `hsqs` and 0–43 more bytes panicked.
#[test]
fn tiny_hsqs_files() {
    require!();
    let fx = Fx::new();
    for n in [4usize, 5, 12, 29, 40, 47, 48, 95] {
        let mut b = b"hsqs".to_vec();
        b.extend(noise(n - 4, n as u64));
        let img = write(&fx.path(&format!("tiny{n}.img")), &b);
        fx.refused(&img, &["too short for a squashfs", "needs 96 bytes"]);
    }
}

/// Every real format cut short: the superblock itself (too short), the data behind it
/// (truncated), or everything but the superblock destroyed (a mount or boot failure, rolled
/// back).
#[test]
fn truncated_and_corrupt_images_of_every_format() {
    require!("mksquashfs", "mkfs.erofs", "mkfs.ext4", "xorriso");
    let fx = Fx::new();
    for fs in ALL {
        let name = format!("{fs:?}").to_lowercase();
        let good = fx.image(fs, &format!("{name}.good"));
        let len = std::fs::metadata(&good).unwrap().len() as usize;
        let sb_end = match fs {
            Fs::Squashfs => 96,
            Fs::Erofs => 1152,
            Fs::Ext4 => 2048,
            Fs::Iso => 0x8800,
        };
        // Cut inside the superblock, after its magic.
        let magic_end = match fs {
            Fs::Squashfs => 4,
            Fs::Erofs => 1028,
            Fs::Ext4 => 1082,
            Fs::Iso => 0x8006,
        };
        for n in [magic_end, (magic_end + sb_end) / 2, sb_end - 1] {
            let img = prefix(&good, &fx.path(&format!("{name}.sb{n}")), n);
            fx.refused(&img, &["too short"]);
            std::fs::remove_file(&img).unwrap();
        }
        // Cut in the data (mksquashfs pads to 4 KiB: a cut inside the padding is harmless).
        for n in [sb_end, len / 2, len - 8192] {
            let img = prefix(&good, &fx.path(&format!("{name}.cut{n}")), n);
            fx.refused(&img, &["truncated", "the file has"]);
            // Each refusal re-hashes every input: keep them few.
            std::fs::remove_file(&img).unwrap();
        }
        // The superblock kept, the rest garbage: refused by the kernel or the boot check.
        let mut b = std::fs::read(&good).unwrap();
        let tail = noise(b.len() - sb_end, len as u64);
        b[sb_end..].copy_from_slice(&tail);
        let img = write(&fx.path(&format!("{name}.corrupt")), &b);
        fx.refused(&img, &[]);
        std::fs::remove_file(&img).unwrap();
        std::fs::remove_file(&good).unwrap();
    }
}

/// Regression (issue 9 item 9): an erofs cut anywhere after its superblock was mounted, and
/// reads failed later with EIO in the booted system.
#[test]
fn truncated_erofs_is_refused_before_mounting() {
    require!("mkfs.erofs");
    let fx = Fx::new();
    let good = fx.image(Fs::Erofs, "root.erofs");
    let len = std::fs::metadata(&good).unwrap().len() as usize;
    let img = prefix(&good, &fx.path("cut.erofs"), len - 4096);
    fx.refused(&img, &["truncated erofs", "cut.erofs"]);
}

/// Regression (issue 9 item 1, second half): a tiny `hsqs` as `LiveOS/rootfs.img` inside a
/// good squashfs panicked after the outer image was mounted, leaving its loop device and mount.
#[test]
fn nested_tiny_hsqs_unwinds_the_outer_image() {
    require!("mksquashfs");
    let fx = Fx::new();
    for n in [4usize, 20, 47] {
        let img = fx.outer_squashfs(&format!("outer{n}.squashfs"), |live| {
            let mut b = b"hsqs".to_vec();
            b.extend(noise(n - 4, 3));
            std::fs::write(live.join("rootfs.img"), b).unwrap();
        });
        fx.refused(&img, &["LiveOS/rootfs.img", "too short for a squashfs"]);
    }
}

/// Regression (issue 9 item 8): `LiveOS/rootfs.img` as a symlink was followed out of the
/// image, and a bootable image outside it (an initramfs file) was mounted as the root.
#[test]
fn nested_symlinks_are_never_followed() {
    require!("mksquashfs", "mkfs.ext4");
    let fx = Fx::new();
    // A real, bootable image outside: following the link would boot it.
    let outside = fx.image(Fs::Ext4, "outside.ext4");
    let abs = outside.clone();
    let rel = PathBuf::from("../".repeat(32)).join(outside.strip_prefix("/").unwrap());
    for (name, target) in [("abs", abs), ("rel", rel)] {
        let img = fx.outer_squashfs(&format!("link-{name}.squashfs"), |live| {
            std::os::unix::fs::symlink(&target, live.join("rootfs.img")).unwrap();
        });
        fx.refused(&img, &["LiveOS/rootfs.img", "symbolic link"]);
    }
    // The directory on the way is the link.
    let real = fx.path("realdir");
    std::fs::create_dir_all(&real).unwrap();
    std::fs::copy(&outside, real.join("rootfs.img")).unwrap();
    let src = fx.path("dirlink.src");
    std::fs::create_dir_all(&src).unwrap();
    std::os::unix::fs::symlink(&real, src.join("LiveOS")).unwrap();
    let img = fx.path("dirlink.squashfs");
    fx.build(Fs::Squashfs, &src, &img);
    fx.refused(&img, &["symbolic link"]);
    // The outside image itself is fine: the refusal is about the link.
    let out = fx.assemble(&outside);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for mp in mounts_under(fx.dir.path()).iter().rev() {
        let _ = rustix::mount::unmount(mp.as_str(), rustix::mount::UnmountFlags::DETACH);
    }
}

/// Nested images that are cut short, or not files at all.
#[test]
fn nested_truncated_and_special_images() {
    require!("mksquashfs", "mkfs.erofs", "mkfs.ext4");
    let fx = Fx::new();
    for fs in [Fs::Ext4, Fs::Erofs, Fs::Squashfs] {
        let inner = fx.image(fs, "inner.img");
        let len = std::fs::metadata(&inner).unwrap().len() as usize;
        let cut = std::fs::read(&inner).unwrap()[..len / 2].to_vec();
        std::fs::remove_file(&inner).unwrap();
        let img = fx.outer_squashfs(&format!("nested-cut-{fs:?}.squashfs"), |live| {
            std::fs::write(live.join("rootfs.img"), &cut).unwrap();
        });
        fx.refused(&img, &["LiveOS/rootfs.img", "truncated"]);
    }
    let img = fx.outer_squashfs("nested-zero.squashfs", |live| {
        std::fs::write(live.join("rootfs.img"), vec![0u8; 8192]).unwrap();
    });
    fx.refused(&img, &["LiveOS/rootfs.img", "zero bytes"]);
    let img = fx.outer_squashfs("nested-empty.squashfs", |live| {
        std::fs::write(live.join("ext3fs.img"), b"").unwrap();
    });
    fx.refused(&img, &["LiveOS/ext3fs.img", "empty file"]);
    let img = fx.outer_squashfs("nested-dir.squashfs", |live| {
        std::fs::create_dir(live.join("rootfs.img")).unwrap();
    });
    fx.refused(&img, &["not a regular file but a directory"]);
    // A FIFO would hang an open for reading; it is refused without being opened.
    let img = fx.outer_squashfs("nested-fifo.squashfs", |live| {
        run_ok(Command::new("mkfifo").arg(live.join("rootfs.img")));
    });
    let t = Instant::now();
    fx.refused(&img, &["not a regular file but a FIFO"]);
    assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
}

/// Whether the running kernel mounts ISO 9660 (built in or already loaded).
fn kernel_has_isofs() -> bool {
    std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("iso9660"))
}

/// A live ISO must hold `LiveOS/squashfs.img`, and that must be whole. On a kernel without
/// isofs (some CI hosts), the ISO's own mount is what fails: the same rollback is checked, with
/// the error that names the missing filesystem support; the QEMU suite boots a real live ISO.
#[test]
fn hostile_iso_contents() {
    require!("mksquashfs", "xorriso");
    let no_isofs = "the kernel does not support this filesystem";
    let fx = Fx::new();
    let iso_src = fx.path("iso.src");
    std::fs::create_dir_all(iso_src.join("LiveOS")).unwrap();
    std::fs::write(iso_src.join("README"), "no image here\n").unwrap();
    let img = fx.path("empty.iso");
    run_ok(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
            .args([&img, &iso_src]),
    );
    if kernel_has_isofs() {
        fx.refused(&img, &["holds no LiveOS/squashfs.img"]);
    } else {
        fx.refused(&img, &["empty.iso", no_isofs]);
    }
    // A truncated squashfs inside.
    let sq = fx.image(Fs::Squashfs, "sq.img");
    let len = std::fs::metadata(&sq).unwrap().len() as usize;
    prefix(&sq, &iso_src.join("LiveOS/squashfs.img"), len / 2);
    std::fs::remove_file(&sq).unwrap();
    let img = fx.path("cut-inside.iso");
    run_ok(
        Command::new("xorriso")
            .args(["-as", "mkisofs", "-quiet", "-R", "-o"])
            .args([&img, &iso_src]),
    );
    if kernel_has_isofs() {
        fx.refused(&img, &["LiveOS/squashfs.img", "truncated squashfs"]);
    } else {
        fx.refused(&img, &["cut-inside.iso", no_isofs]);
    }
}

/// Squashfs in squashfs in squashfs in squashfs: deeper than any live layout, refused after
/// the three levels rustlive mounts, and all three unwound.
#[test]
fn nesting_too_deep() {
    require!("mksquashfs");
    let fx = Fx::new();
    let mut inner = fx.image(Fs::Squashfs, "level3.img");
    for level in [2, 1, 0] {
        let prev = inner.clone();
        inner = fx.outer_squashfs(&format!("level{level}.img"), |live| {
            std::fs::copy(&prev, live.join("rootfs.img")).unwrap();
        });
        std::fs::remove_file(&prev).unwrap();
    }
    fx.refused(&inner, &["level0.img", "more than 3 levels deep"]);
}
