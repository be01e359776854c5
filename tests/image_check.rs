//! `rustlive image check` and the same check in `rustlive publish` (issue 21, "a check for the
//! image itself"): a root tree or a squashfs, erofs or ext4 image holding an SSH host private
//! key or the munge key is refused, naming the files; a clean one passes; a link in the tree is
//! never followed. Needs mksquashfs/unsquashfs, mkfs.erofs/dump.erofs and mkfs.ext4/debugfs
//! (scripts/install-deps.sh), no root.

mod support;

use std::path::Path;
use std::process::{Command, Output};
use support::image::{build, Fs};

fn have_tools() -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for t in [
        "mksquashfs",
        "unsquashfs",
        "mkfs.erofs",
        "dump.erofs",
        "mkfs.ext4",
        "debugfs",
    ] {
        let found = std::env::split_paths(&path)
            .chain(["/sbin".into(), "/usr/sbin".into()])
            .any(|d| d.join(t).is_file());
        if !found {
            rustlive::support::testing::skip(&format!("{t} is not installed"));
            return false;
        }
    }
    true
}

fn rustlive<S: AsRef<std::ffi::OsStr>>(args: impl IntoIterator<Item = S>) -> Output {
    // debugfs lives in /sbin on Debian, which a user's PATH may lack.
    let path = format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    );
    Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .args(args)
        .env("PATH", path)
        .output()
        .unwrap()
}

fn check(path: &Path) -> (Option<i32>, String) {
    let o = rustlive([
        std::ffi::OsStr::new("image"),
        "check".as_ref(),
        path.as_os_str(),
    ]);
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A root tree: sshd's public keys and config, and (`secrets`) its private host keys and the
/// munge key.
fn tree(dir: &Path, secrets: bool) {
    std::fs::create_dir_all(dir.join("etc/ssh")).unwrap();
    std::fs::create_dir_all(dir.join("etc/munge")).unwrap();
    std::fs::write(dir.join("etc/ssh/sshd_config"), "PermitRootLogin no\n").unwrap();
    for t in ["rsa", "ecdsa", "ed25519"] {
        std::fs::write(
            dir.join(format!("etc/ssh/ssh_host_{t}_key.pub")),
            "ssh-x AAAA\n",
        )
        .unwrap();
        if secrets {
            std::fs::write(dir.join(format!("etc/ssh/ssh_host_{t}_key")), "PRIVATE\n").unwrap();
        }
    }
    if secrets {
        std::fs::write(dir.join("etc/munge/munge.key"), [7u8; 128]).unwrap();
    }
}

#[test]
fn trees_and_images_with_host_keys_are_refused_clean_ones_pass() {
    if !have_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (dirty, clean) = (t.path().join("dirty"), t.path().join("clean"));
    tree(&dirty, true);
    tree(&clean, false);
    for (name, fs) in [
        ("squashfs", Fs::Squashfs),
        ("erofs", Fs::Erofs),
        ("ext4", Fs::Ext4),
    ] {
        build(fs, &dirty, &t.path().join(format!("dirty.{name}")), "16M");
        build(fs, &clean, &t.path().join(format!("clean.{name}")), "16M");
    }
    for what in ["dirty", "dirty.squashfs", "dirty.erofs", "dirty.ext4"] {
        let (code, err) = check(&t.path().join(what));
        assert_eq!(code, Some(6), "{what}: {err}");
        assert_eq!(err.lines().count(), 1, "{what}: one sentence: {err}");
        for f in [
            "etc/munge/munge.key (the munge key)",
            "etc/ssh/ssh_host_ecdsa_key (an SSH host private key)",
            "etc/ssh/ssh_host_ed25519_key",
            "etc/ssh/ssh_host_rsa_key",
        ] {
            assert!(err.contains(f), "{what}: {f} not named: {err}");
        }
        assert!(!err.contains(".pub"), "{what}: {err}");
    }
    for what in ["clean", "clean.squashfs", "clean.erofs", "clean.ext4"] {
        let (code, err) = check(&t.path().join(what));
        assert_eq!(code, Some(0), "{what}: {err}");
        assert!(
            err.contains("no SSH host private key and no munge key"),
            "{err}"
        );
    }
    // dmsquash-live's layout: the root is LiveOS/rootfs.img inside the squashfs.
    for (what, ext4) in [("dirty", "dirty.ext4"), ("clean", "clean.ext4")] {
        let live = t.path().join(format!("{what}-live"));
        std::fs::create_dir_all(live.join("LiveOS")).unwrap();
        std::fs::copy(t.path().join(ext4), live.join("LiveOS/rootfs.img")).unwrap();
        let img = t.path().join(format!("{what}-live.squashfs"));
        build(Fs::Squashfs, &live, &img, "");
        let (code, err) = check(&img);
        if what == "dirty" {
            assert_eq!(code, Some(6), "{err}");
            assert!(
                err.contains(
                    "LiveOS/rootfs.img:etc/ssh/ssh_host_rsa_key (an SSH host private key)"
                ),
                "{err}"
            );
        } else {
            assert_eq!(code, Some(0), "{err}");
        }
    }
    // Not an image at all: cannot be checked, which is not a pass.
    let junk = t.path().join("junk.img");
    std::fs::write(&junk, [0u8; 8192]).unwrap();
    assert_eq!(check(&junk).0, Some(2));
    // A truncated squashfs: the tool fails, and that is not a pass either.
    let whole = std::fs::read(t.path().join("dirty.squashfs")).unwrap();
    let cut = t.path().join("cut.squashfs");
    std::fs::write(&cut, &whole[..300]).unwrap();
    let (code, err) = check(&cut);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("cannot check"), "{err}");
}

/// The tree is read without following links: a key-named link to a real key outside the tree
/// (the boot server's own, say) is not read through, and an etc/ssh that is a link is reported
/// as not checkable instead of being listed on the other side.
#[test]
fn links_in_a_tree_are_not_followed() {
    let t = tempfile::tempdir().unwrap();
    let outside = t.path().join("server-etc-ssh");
    tree(&outside, true);
    let root = t.path().join("root");
    tree(&root, false);
    std::os::unix::fs::symlink(
        outside.join("etc/ssh/ssh_host_rsa_key"),
        root.join("etc/ssh/ssh_host_rsa_key"),
    )
    .unwrap();
    let (code, err) = check(&root);
    assert_eq!(code, Some(0), "a link is not a key in the image: {err}");

    let linked = t.path().join("linked");
    std::fs::create_dir_all(linked.join("etc")).unwrap();
    std::os::unix::fs::symlink(outside.join("etc/ssh"), linked.join("etc/ssh")).unwrap();
    let (code, err) = check(&linked);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("is a symbolic link, which the check does not follow"),
        "{err}"
    );
}

/// `rustlive publish` runs the check before it contacts the registry (port 1 here, closed: a
/// push attempt would fail with exit 3); `--allow-secrets-in-image` skips it, loudly; an image
/// the check cannot read is published with a warning.
#[test]
fn publish_refuses_an_image_with_host_keys_unless_told() {
    if !have_tools() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (dirty, clean) = (t.path().join("dirty"), t.path().join("clean"));
    tree(&dirty, true);
    tree(&clean, false);
    let (dirty_img, clean_img) = (t.path().join("dirty.sqfs"), t.path().join("clean.sqfs"));
    build(Fs::Squashfs, &dirty, &dirty_img, "");
    build(Fs::Squashfs, &clean, &clean_img, "");
    let publish = |img: &Path, extra: &[&str]| {
        let mut args: Vec<std::ffi::OsString> = vec!["publish".into(), img.into()];
        for a in ["oci+http://127.0.0.1:1/images/compute:1", "--timeout", "5"]
            .iter()
            .chain(extra)
        {
            args.push(a.into());
        }
        let o = rustlive(&args);
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = publish(&dirty_img, &[]);
    assert_eq!(code, Some(6), "{err}");
    assert!(
        err.contains("etc/ssh/ssh_host_rsa_key (an SSH host private key)")
            && err.contains("etc/munge/munge.key"),
        "{err}"
    );
    assert!(
        !err.contains("127.0.0.1"),
        "refused before any request: {err}"
    );

    let (code, err) = publish(&dirty_img, &["--allow-secrets-in-image"]);
    assert_ne!(code, Some(6), "{err}");
    assert!(err.contains("NOT checking"), "{err}");
    assert!(err.contains("127.0.0.1"), "went on to the registry: {err}");

    // An image the check cannot read (a fake squashfs) goes on, with a loud warning.
    let fake = t.path().join("fake.sqfs");
    let mut bytes = b"hsqs".to_vec();
    bytes.resize(1 << 16, 0x5a);
    std::fs::write(&fake, bytes).unwrap();
    let (code, err) = publish(&fake, &[]);
    assert_ne!(code, Some(6), "{err}");
    assert!(err.contains("publishing it UNCHECKED"), "{err}");
    assert!(err.contains("127.0.0.1"), "went on to the registry: {err}");

    let (code, err) = publish(&clean_img, &[]);
    assert_ne!(code, Some(6), "{err}");
    assert!(err.contains("127.0.0.1"), "went on to the registry: {err}");
}
