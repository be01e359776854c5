//! The boot stage: memory check against rd.minmem, the image's own tmpfs, download into it.
//! Needs root for the mount (CI runs it in a private mount namespace); skips otherwise.

mod support;

use rustlive::fetch::retry::Backoff;
use rustlive::fetch::{stage_image, FetchError, FetchOptions};
use rustlive::root::ram::RamError;
use rustlive::support::paths::Paths;
use rustlive::support::values::parse_sha256;
use std::path::Path;
use std::time::Duration;
use support::http::{Reply, Server};
use support::{random_bytes, sha256_hex};

fn is_root() -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    rustlive::support::testing::skip("mounting the image tmpfs needs root");
    false
}

fn mounted(p: &Path) -> bool {
    let p = p.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(p))
}

/// A fake `/proc/meminfo` below the test's root.
fn meminfo(dir: &Path, available_mib: u64) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("proc")).unwrap();
    let p = dir.join("proc/meminfo");
    std::fs::write(
        &p,
        format!(
            "MemTotal:       {} kB\nMemAvailable:   {} kB\n",
            4 << 20,
            available_mib << 10
        ),
    )
    .unwrap();
    p
}

fn opts(content: &[u8]) -> FetchOptions {
    FetchOptions {
        sha256: Some(parse_sha256(&sha256_hex(content)).unwrap()),
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(100),
        },
        ..FetchOptions::default()
    }
}

#[test]
fn image_lands_verified_in_its_own_tmpfs() {
    if !is_root() {
        return;
    }
    let content = random_bytes(3 << 20, 51);
    let c = content.clone();
    let s = Server::start(move |_| Reply::ok(&c));
    let run = tempfile::tempdir().unwrap();
    meminfo(run.path(), 1024);
    let url = reqwest::Url::parse(&s.url("/images/root.squashfs")).unwrap();
    let staged = stage_image(
        &[url],
        &opts(&content),
        512 << 20,
        &Paths::under(run.path()),
    )
    .unwrap();
    let dir = run.path().join("run/rustlive/image");
    assert_eq!(staged.path, dir.join("root.squashfs"));
    assert!(mounted(&dir), "tmpfs on {}", dir.display());
    assert_eq!(std::fs::read(&staged.path).unwrap(), content);
    assert_eq!(staged.report.sha256.to_hex(), sha256_hex(&content));
    // The line the boot logs ("root ready … : SUMMARY") names what verified the image.
    let summary = staged.report.summary();
    assert!(
        summary.ends_with("; verified by the pinned sha256"),
        "{summary}"
    );
    let fs = rustix::fs::statvfs(&dir).unwrap();
    let size = fs.f_blocks * fs.f_frsize;
    // Content-Length plus the 16 MiB minimum slack, not half of RAM.
    assert_eq!(size, (3 << 20) + (16 << 20));
    drop(staged);
    assert!(!mounted(&dir), "unmounted when the StagedImage is dropped");
}

#[test]
fn too_little_memory_is_refused_before_downloading() {
    if !is_root() {
        return;
    }
    let content = random_bytes(3 << 20, 52);
    let c = content.clone();
    let s = Server::start(move |_| Reply::ok(&c));
    let run = tempfile::tempdir().unwrap();
    // 514 MiB available, 512 MiB reserved: 2 MiB of room for a 3 MiB image.
    meminfo(run.path(), 514);
    let url = reqwest::Url::parse(&s.url("/img")).unwrap();
    let e = stage_image(
        &[url],
        &opts(&content),
        512 << 20,
        &Paths::under(run.path()),
    )
    .unwrap_err();
    assert!(
        matches!(e, FetchError::Ram(RamError::NotEnoughMemory { image, .. }) if image == 3 << 20),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "the image is 3.0 MiB but only 514.0 MiB of RAM is available and rd.minmem reserves \
         512.0 MiB; refusing to download it into RAM"
    );
    assert_eq!(e.exit_code() as u8, 3);
    let dir = run.path().join("run/rustlive/image");
    assert!(!mounted(&dir));
    assert!(!dir.join("img.part").exists() && !dir.join("img").exists());
}
