//! `assemble` and `switch-root` on real images built here with mksquashfs, mkfs.erofs and
//! mkfs.ext4. They mount, so they need root; run them in a private mount namespace:
//! `unshare -m --propagation private cargo test --test assemble`. Without root or the tools they
//! skip with a printed reason. Loop devices are global, so every test checks it left none.

mod support;

use rustlive::root::assemble::{self, AssembleError, AssembleOptions};
use rustlive::root::image::ImageError;
use rustlive::root::rootfs::NotBootable;
use rustlive::support::values::Size;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::image::{self, Fs};

const HELLO: &str = "hello from the image\n";

/// Builds an image of format `fs` from the directory `src`.
fn build(fs: Fs, src: &Path, out: &Path) {
    image::build(fs, src, out, "16M");
}

/// Writes a minimal bootable root (or one missing `init` / `os-release`) into `dir`.
fn make_root(dir: &Path, init: bool, os_release: bool) {
    std::fs::create_dir_all(dir.join("usr/share")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("sbin")).unwrap();
    std::fs::write(dir.join("usr/share/hello.txt"), HELLO).unwrap();
    if os_release {
        std::fs::create_dir_all(dir.join("usr/lib")).unwrap();
        std::fs::write(dir.join("usr/lib/os-release"), "ID=rustlive-test\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", dir.join("etc/os-release")).unwrap();
    }
    if init {
        let p = dir.join("sbin/init");
        std::fs::write(&p, "#!/bin/sh\necho init\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    opts: AssembleOptions,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = rustlive::boot::options::assemble(&rustlive::config::Config::default());
        opts.run_dir = dir.path().join("run/rustlive/mnt");
        opts.overlay_size = Size::Bytes(32 << 20);
        Fixture { dir, opts }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn newroot(&self) -> PathBuf {
        self.path("sysroot")
    }

    /// A bootable root image of format `fs`.
    fn image(&self, fs: Fs, init: bool, os_release: bool) -> PathBuf {
        let src = self.path("src");
        make_root(&src, init, os_release);
        let img = self.path("root.img");
        build(fs, &src, &img);
        img
    }

    fn assemble(&self, img: &Path) -> Result<assemble::Assembled, AssembleError> {
        assemble::assemble(img, &self.newroot(), &self.opts)
    }

    /// Asserts that nothing is mounted under the fixture and no loop device uses `img`.
    fn assert_clean(&self, img: &Path) {
        let left = mounts_under(self.dir.path());
        assert!(left.is_empty(), "still mounted: {left:?}");
        assert_no_loop(img);
    }
}

fn sha256(p: &Path) -> Vec<u8> {
    Sha256::digest(std::fs::read(p).unwrap()).to_vec()
}

/// Mount points under `dir` (from /proc/self/mountinfo) with their filesystem types.
fn mounts_under(dir: &Path) -> Vec<(String, String)> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = dir.to_string_lossy().to_string();
    info.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            Some((f[4].to_string(), f[sep + 1].to_string(), f[5].to_string()))
        })
        .filter(|(mp, _, _)| mp.starts_with(&dir))
        .map(|(mp, fstype, opts)| (mp, format!("{fstype} {opts}")))
        .collect()
}

/// The loop devices whose backing file is `img`.
fn loops_for(img: &Path) -> Vec<PathBuf> {
    let img = std::fs::canonicalize(img).unwrap_or_else(|_| img.to_owned());
    let mut out = Vec::new();
    for e in std::fs::read_dir("/sys/block").unwrap().flatten() {
        let dev = e.path();
        if let Ok(b) = std::fs::read_to_string(dev.join("loop/backing_file")) {
            if Path::new(b.trim()) == img {
                out.push(dev);
            }
        }
    }
    out
}

/// The kernel clears a loop device when its last user closes it; allow it a moment.
fn assert_no_loop(img: &Path) {
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let left = loops_for(img);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "loop devices still attached to {}: {left:?}",
            img.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn read_sys(dev: &Path, rel: &str) -> String {
    std::fs::read_to_string(dev.join(rel))
        .unwrap()
        .trim()
        .to_string()
}

fn check_format(fs: Fs) {
    let fx = Fixture::new();
    let img = fx.image(fs, true, true);
    let before = sha256(&img);
    let root = fx.newroot();
    let a = fx.assemble(&img).expect("assemble");

    // Content visible through the overlay.
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/hello.txt")).unwrap(),
        HELLO
    );
    let mode = std::fs::metadata(&root).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o755, "root directory mode");

    // The mounts: read-only lower on a read-only autoclear loop device, tmpfs, overlay.
    let mounts = mounts_under(fx.dir.path());
    let find = |mp: &Path| {
        mounts
            .iter()
            .find(|(m, _)| Path::new(m) == mp)
            .map(|(_, t)| t.clone())
            .unwrap_or_else(|| panic!("{} not mounted: {mounts:?}", mp.display()))
    };
    let lower = find(&fx.opts.layer_dir(0));
    assert!(lower.starts_with(fs.tool_fstype()), "{lower}");
    assert!(
        lower
            .split(' ')
            .nth(1)
            .unwrap()
            .split(',')
            .any(|o| o == "ro"),
        "{lower}"
    );
    assert!(find(&fx.opts.overlay_dir()).starts_with("tmpfs "));
    assert!(find(&root).starts_with("overlay "));
    let loops = loops_for(&img);
    assert_eq!(loops.len(), 1, "{loops:?}");
    assert_eq!(read_sys(&loops[0], "ro"), "1", "loop device not read-only");
    assert_eq!(
        read_sys(&loops[0], "loop/autoclear"),
        "1",
        "loop device not autoclear"
    );
    assert_eq!(a.lower(), fx.opts.layer_dir(0));

    // Writes land in the tmpfs; the lower layer and the image stay as they were.
    std::fs::write(root.join("etc/new-file"), "written").unwrap();
    std::fs::write(root.join("usr/share/hello.txt"), "changed").unwrap();
    assert_eq!(
        std::fs::read_to_string(a.upper().join("etc/new-file")).unwrap(),
        "written"
    );
    assert_eq!(
        std::fs::read_to_string(a.upper().join("usr/share/hello.txt")).unwrap(),
        "changed"
    );
    assert_eq!(
        std::fs::read_to_string(a.lower().join("usr/share/hello.txt")).unwrap(),
        HELLO
    );
    let e = std::fs::write(a.lower().join("etc/x"), "x").unwrap_err();
    assert_eq!(
        e.raw_os_error(),
        Some(rustix::io::Errno::ROFS.raw_os_error()),
        "{e}"
    );

    drop(a);
    fx.assert_clean(&img);
    assert_eq!(sha256(&img), before, "the image file changed");
}

impl Fs {
    fn tool_fstype(self) -> &'static str {
        match self {
            Fs::Squashfs => "squashfs",
            Fs::Erofs => "erofs",
            Fs::Ext4 => "ext4",
            Fs::Iso => "iso9660",
        }
    }
}

#[test]
fn squashfs_root() {
    require!("mksquashfs");
    check_format(Fs::Squashfs);
}

#[test]
fn erofs_root() {
    require!("mkfs.erofs");
    check_format(Fs::Erofs);
}

#[test]
fn ext4_root() {
    require!("mkfs.ext4");
    check_format(Fs::Ext4);
}

#[test]
fn overlay_size_limit_is_enforced() {
    require!("mksquashfs");
    let mut fx = Fixture::new();
    fx.opts.overlay_size = Size::Bytes(2 << 20);
    let img = fx.image(Fs::Squashfs, true, true);
    let a = fx.assemble(&img).unwrap();
    let mut f = std::fs::File::create(fx.newroot().join("big")).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    let mut written = 0u64;
    let err = loop {
        match f.write_all(&chunk).and_then(|()| f.sync_all()) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(
            written <= 4 << 20,
            "wrote {written} bytes into a 2 MiB overlay"
        );
    };
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::NOSPC.raw_os_error()),
        "{err}"
    );
    assert!(written >= 1 << 20, "only {written} bytes fit");
    drop(f);
    drop(a);
    fx.assert_clean(&img);
}

/// dmsquash-live's layout: a squashfs holding `DIR/rootfs.img` (here ext4).
fn nested(cmdline: &str, dir: &str, name: &str) {
    let mut fx = Fixture::new();
    let cfg = rustlive::config::Config::from_cmdline(cmdline).unwrap();
    let run_dir = fx.opts.run_dir.clone();
    fx.opts = rustlive::boot::options::assemble(&cfg);
    fx.opts.run_dir = run_dir;
    fx.opts.overlay_size = Size::Bytes(8 << 20);

    let inner_src = fx.path("inner");
    make_root(&inner_src, true, true);
    let outer_src = fx.path("outer");
    std::fs::create_dir_all(outer_src.join(dir)).unwrap();
    build(Fs::Ext4, &inner_src, &outer_src.join(dir).join(name));
    let img = fx.path("outer.squashfs");
    build(Fs::Squashfs, &outer_src, &img);
    let before = sha256(&img);

    let a = fx.assemble(&img).expect("assemble nested");
    assert_eq!(a.lower(), fx.opts.layer_dir(1));
    assert_eq!(
        std::fs::read_to_string(fx.newroot().join("usr/share/hello.txt")).unwrap(),
        HELLO
    );
    let mounts = mounts_under(fx.dir.path());
    let nested = mounts
        .iter()
        .find(|(m, _)| Path::new(m) == fx.opts.layer_dir(1))
        .unwrap_or_else(|| panic!("nested image not mounted: {mounts:?}"));
    assert!(nested.1.starts_with("ext4 "), "{nested:?}");
    let inner_file = fx.opts.layer_dir(0).join(dir).join(name);
    let inner_loops = loops_for(&inner_file);
    assert_eq!(inner_loops.len(), 1);
    assert_eq!(read_sys(&inner_loops[0], "ro"), "1");
    std::fs::write(fx.newroot().join("etc/w"), "w").unwrap();

    drop(a);
    fx.assert_clean(&img);
    assert_eq!(sha256(&img), before);
}

#[test]
fn nested_liveos_rootfs_img() {
    require!("mksquashfs", "mkfs.ext4");
    nested("", "LiveOS", "rootfs.img");
}

#[test]
fn nested_ext3fs_img_in_rd_live_dir() {
    require!("mksquashfs", "mkfs.ext4");
    nested("rd.live.dir=images/live", "images/live", "ext3fs.img");
}

#[test]
fn unrecognized_image_is_a_clear_error() {
    require!();
    let fx = Fixture::new();
    let img = fx.path("root.img");
    std::fs::write(&img, b"<!DOCTYPE html><title>404 Not Found</title>").unwrap();
    let e = fx.assemble(&img).unwrap_err();
    let msg = rustlive::support::exit::report(&e);
    assert!(
        matches!(e, AssembleError::Image(ImageError::Unrecognized { .. })),
        "{msg}"
    );
    assert!(msg.contains("root.img") && msg.contains("HTML"), "{msg}");
    fx.assert_clean(&img);
}

#[test]
fn corrupt_squashfs_rolls_back() {
    require!("mksquashfs");
    let fx = Fixture::new();
    let img = fx.image(Fs::Squashfs, true, true);
    // Keep the superblock (so detection passes) and destroy everything after it.
    let mut bytes = std::fs::read(&img).unwrap();
    for (i, b) in bytes.iter_mut().enumerate().skip(96) {
        *b = (i as u8).wrapping_mul(151) ^ 0xa5;
    }
    std::fs::write(&img, &bytes).unwrap();
    let e = fx.assemble(&img).unwrap_err();
    let msg = rustlive::support::exit::report(&e);
    eprintln!("corrupt squashfs: {msg}");
    assert!(msg.contains("root.img"), "{msg}");
    assert!(
        matches!(
            e,
            AssembleError::Mount { .. } | AssembleError::NotBootable { .. }
        ),
        "{msg}"
    );
    fx.assert_clean(&img);
}

#[test]
fn truncated_squashfs_is_refused_before_mounting() {
    require!("mksquashfs");
    let fx = Fixture::new();
    let src = fx.path("src");
    make_root(&src, true, true);
    // Incompressible data, so that half of the image misses part of the filesystem.
    std::fs::write(src.join("noise"), image::incompressible(256 << 10)).unwrap();
    let img = fx.path("root.img");
    build(Fs::Squashfs, &src, &img);
    let len = std::fs::metadata(&img).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let e = fx.assemble(&img).unwrap_err();
    assert!(
        matches!(e, AssembleError::Image(ImageError::Truncated { .. })),
        "{e}"
    );
    fx.assert_clean(&img);
}

#[test]
fn root_without_init_rolls_back() {
    require!("mksquashfs");
    let fx = Fixture::new();
    let img = fx.image(Fs::Squashfs, false, true);
    let e = fx.assemble(&img).unwrap_err();
    let msg = rustlive::support::exit::report(&e);
    assert!(
        matches!(
            e,
            AssembleError::NotBootable {
                source: NotBootable::NoInit { .. },
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("/sbin/init"), "{msg}");
    fx.assert_clean(&img);
}

#[test]
fn root_without_os_release_rolls_back() {
    require!("mkfs.erofs");
    let fx = Fixture::new();
    let img = fx.image(Fs::Erofs, true, false);
    let e = fx.assemble(&img).unwrap_err();
    assert!(
        matches!(
            e,
            AssembleError::NotBootable {
                source: NotBootable::NoOsRelease,
                ..
            }
        ),
        "{e}"
    );
    fx.assert_clean(&img);
}

#[test]
fn squashfs_without_nested_image_is_the_root_itself() {
    // A squashfs whose LiveOS dir is elsewhere than rd.live.dir says is taken as the root,
    // and then fails the bootability check rather than mounting something unexpected.
    require!("mksquashfs", "mkfs.ext4");
    let fx = Fixture::new();
    let outer = fx.path("outer");
    let inner = fx.path("inner");
    make_root(&inner, true, true);
    std::fs::create_dir_all(outer.join("Other")).unwrap();
    build(Fs::Ext4, &inner, &outer.join("Other/rootfs.img"));
    let img = fx.path("outer.squashfs");
    build(Fs::Squashfs, &outer, &img);
    let e = fx.assemble(&img).unwrap_err();
    assert!(matches!(e, AssembleError::NotBootable { .. }), "{e}");
    fx.assert_clean(&img);
}

#[test]
fn cli_assemble_exit_code_5_on_a_bad_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("image.bin");
    std::fs::write(&img, [0u8; 8192]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .args(["assemble", "--cmdline", "", "--newroot"])
        .arg(dir.path().join("newroot"))
        .arg("--image")
        .arg(&img)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
}

#[test]
fn cli_overlay_size_is_validated() {
    let out = Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .args(["assemble", "--image", "/x", "--overlay-size", "12Q"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("12Q"));
}

/// util-linux semantics end to end in a private mount namespace: the API mounts move, the new
/// root becomes /, init runs with its arguments. The namespace's mounts are made shared first,
/// as systemd leaves them, which MS_MOVE refuses unless switch-root makes them private. The old root here is the host's, which is
/// not an initramfs, so nothing is deleted (that part runs in the QEMU test).
#[test]
fn switch_root_in_a_mount_namespace() {
    require!("unshare", "busybox");
    let st = rustix::fs::statfs("/").unwrap();
    #[allow(clippy::unnecessary_cast)]
    let f_type = st.f_type as u64;
    if rustlive::root::switchroot::is_initramfs(f_type) {
        rustlive::support::testing::skip("/ is a tmpfs/ramfs here, and switch-root would empty it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new");
    std::fs::create_dir_all(&new).unwrap();
    let busybox = which("busybox");
    let script = format!(
        "set -e; mount --make-rshared /; mount -t tmpfs -o size=8M tmpfs {new}; \
         mkdir -p {new}/dev {new}/proc {new}/sys {new}/run {new}/bin; \
         cp {busybox} {new}/bin/busybox; echo new-root-marker > {new}/marker; \
         exec {exe} switch-root {new} /bin/busybox sh -c \
         'cat /marker; echo argv=\"$0 $1\"; test -e /proc/self/mountinfo && echo proc-moved; \
          test -d /dev/char -o -e /dev/null && echo dev-moved; \
          /bin/busybox grep -c \" / / \" /proc/self/mountinfo' arg0 arg1",
        new = new.display(),
        busybox = busybox.display(),
        exe = env!("CARGO_BIN_EXE_rustlive"),
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("new-root-marker"), "{stdout}");
    assert!(stdout.contains("argv=arg0 arg1"), "{stdout}");
    assert!(stdout.contains("proc-moved"), "{stdout}");
    assert!(stdout.contains("dev-moved"), "{stdout}");

    // A missing init is refused before anything moves: exit 7, host untouched.
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private"])
        .arg(env!("CARGO_BIN_EXE_rustlive"))
        .args(["switch-root"])
        .arg(dir.path())
        .arg("/no/such/init")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(7), "{out:?}");
}

fn which(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
        .unwrap()
}

#[test]
fn persisted_root_hides_its_writable_layer_from_run() {
    require!("mksquashfs");
    let fx = Fixture::new();
    let img = fx.image(Fs::Squashfs, true, true);
    let root = fx.assemble(&img).expect("assemble");
    let upper = root.upper().to_owned();
    let overlay_dir = upper.parent().unwrap().to_owned();
    std::fs::write(fx.newroot().join("etc/secret"), "canary").unwrap();
    assert!(upper.join("etc/secret").exists());
    root.persist();

    let mounted: Vec<String> = mounts_under(fx.dir.path())
        .into_iter()
        .map(|(mp, _)| mp)
        .collect();
    let overlay_dir_s = overlay_dir.to_string_lossy().to_string();
    assert!(
        !mounted.contains(&overlay_dir_s),
        "writable layer still reachable at {overlay_dir_s}: {mounted:?}"
    );
    assert!(!upper.join("etc/secret").exists());
    // The overlay still works on the detached tmpfs: old writes visible, new writes accepted.
    assert_eq!(
        std::fs::read_to_string(fx.newroot().join("etc/secret")).unwrap(),
        "canary"
    );
    std::fs::write(fx.newroot().join("etc/after"), "x").unwrap();

    // Persisted mounts are the test's to undo, newest first.
    let mut mps = mounted;
    mps.sort_by_key(|mp| std::cmp::Reverse(mp.len()));
    for mp in [fx.newroot().to_string_lossy().to_string()]
        .into_iter()
        .chain(mps)
    {
        let _ = rustix::mount::unmount(Path::new(&mp), rustix::mount::UnmountFlags::DETACH);
    }
    fx.assert_clean(&img);
}
