//! The boot server's bundle tools against hostile trees and output directories: symlinks where
//! none is expected (a symlinked `WWW_DIR/by-mac`, `etc/ssh` of a node tree, a planted
//! temporary), hard links to stale outputs, FIFOs and devices as inputs (a manifest, a `.sealed/`
//! state file, an existing output, the `bundle seal` input, `--ek`), and the modes outputs get
//! whatever the umask. Every command runs the built binary under a bound, so a regression that
//! hangs on a FIFO or reads `/dev/zero` without end fails instead of hanging the suite.
//!
//! The initramfs builder's side (module and firmware trees) is in `tests/initramfs.rs`.

mod support;

use std::ffi::OsStr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::{run_bounded, Bounded};

/// Far above what any of these commands needs (well under a second each).
const BOUND: Duration = Duration::from_secs(10);
const MAC: &str = "52:54:00:12:34:56";
const EK_PEM: &str = include_str!("../src/tpm/testdata/ek-rsa.pem");

fn rustlive<S: AsRef<OsStr>>(args: &[S]) -> Bounded {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rustlive"));
    cmd.args(args).env("RUSTLIVE_LOG", "stderr");
    run_bounded(&mut cmd, BOUND)
}

/// `rustlive ARGS` under `umask MASK`.
fn rustlive_umask<S: AsRef<OsStr>>(mask: &str, args: &[S]) -> Bounded {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("umask {mask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_rustlive"))
        .args(args)
        .env("RUSTLIVE_LOG", "stderr");
    run_bounded(&mut cmd, BOUND)
}

/// Ended by itself, within the bound, with `code`.
#[track_caller]
fn assert_ends(r: &Bounded, code: i32, what: &str) {
    assert!(
        r.code.is_some(),
        "{what}: still running after {:?}, killed:\n{}",
        r.elapsed,
        r.output
    );
    assert_eq!(r.code, Some(code), "{what}:\n{}", r.output);
}

/// Ended within the bound with `code`, refusing a special file for what it is (not, say, by
/// running out of memory on it).
#[track_caller]
fn assert_refused(r: &Bounded, code: i32, what: &str) {
    assert_ends(r, code, what);
    assert!(
        r.output.contains("not a regular file") || r.output.contains("is a symbolic link"),
        "{what}: not refused for what it is:\n{}",
        r.output
    );
}

fn write(path: &Path, content: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    p.symlink_metadata().unwrap().mode() & 0o7777
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `nodes/n001` (one key, one MAC), `ek/n001.pem`, and room for `www/` in one directory.
struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        write(&t.join("nodes/n001/etc/munge/munge.key"), "key\n", 0o400);
        write(
            &t.join("nodes/n001/rustlive-bundle.json"),
            &format!(r#"{{"macs": ["{MAC}"]}}"#),
            0o644,
        );
        write(&t.join("ek/n001.pem"), EK_PEM, 0o644);
        // The boot server's signing key: sealing always signs.
        support::minisign_keys(t).expect("minisign (Debian: minisign) makes the signing key");
        Site { tmp }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `rustlive bundle build-all nodes -o www EXTRA…`.
    fn build_all(&self, extra: &[&str]) -> Bounded {
        let (nodes, www) = (self.p("nodes"), self.p("www"));
        let mut args = vec!["bundle", "build-all", s(&nodes), "-o", s(&www)];
        args.extend_from_slice(extra);
        rustlive(&args)
    }

    /// `build-all --seal-to ek`.
    fn build_all_sealed(&self) -> Bounded {
        let (ek, key) = (self.p("ek"), self.p("sign.key"));
        self.build_all(&["--seal-to", s(&ek), "--sign-key", s(&key)])
    }

    /// `rustlive bundle build nodes/n001 -o OUT EXTRA…`.
    fn build(&self, out: &str, extra: &[&str]) -> Bounded {
        let (node, out) = (self.p("nodes/n001"), self.p(out));
        let mut args = vec!["bundle", "build", s(&node), "-o", s(&out)];
        args.extend_from_slice(extra);
        rustlive(&args)
    }
}

/// What can stand where a regular file is expected.
#[derive(Debug, Clone, Copy)]
enum Special {
    Fifo,
    /// A character device node with `/dev/zero`'s numbers (needs root).
    ZeroDevice,
    /// A symbolic link to `/dev/zero`.
    LinkToZero,
}

const SPECIALS: [Special; 3] = [Special::Fifo, Special::ZeroDevice, Special::LinkToZero];

impl Special {
    /// Replaces whatever is at `p` with this; false (and a skip) when it cannot be made here.
    fn plant(self, p: &Path) -> bool {
        let _ = std::fs::remove_file(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        match self {
            Special::Fifo => rustlive::sys::fs::make_fifo(p, 0o600).unwrap(),
            Special::ZeroDevice => {
                if !rustlive::support::testing::is_root() {
                    rustlive::support::testing::skip("making a device node needs root");
                    return false;
                }
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    p,
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(1, 5),
                )
                .unwrap();
            }
            Special::LinkToZero => std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
        }
        true
    }
}

/// The names in `dir` with their contents, sorted.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Item 8: a symlinked `WWW_DIR/by-mac` (or `by-host`) is refused before anything is written;
/// the directory it points to keeps every file, byte for byte, and gains none.
#[test]
fn a_symlinked_output_subdirectory_is_refused_and_its_target_untouched() {
    for sub in ["by-mac", "by-host"] {
        let site = Site::new();
        let elsewhere = site.p("elsewhere");
        // Names build-all would take for stale outputs of its own, and an unrelated file.
        write(
            &elsewhere.join("52:54:00:00:00:99.json"),
            "precious 1",
            0o644,
        );
        write(&elsewhere.join("n999.cpio"), "precious 2", 0o600);
        write(&elsewhere.join("notes.txt"), "precious 3", 0o644);
        let before = snapshot(&elsewhere);
        std::fs::create_dir(site.p("www")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, site.p("www").join(sub)).unwrap();

        let r = site.build_all(&[]);
        assert_ends(&r, 6, sub);
        assert!(
            r.output.contains(sub) && r.output.contains("symbolic link"),
            "{sub}: {}",
            r.output
        );
        assert_eq!(snapshot(&elsewhere), before, "{sub}: its target changed");
        for other in ["by-mac", "by-host"].iter().filter(|o| **o != sub) {
            let d = site.p("www").join(other);
            assert!(
                !d.exists() || std::fs::read_dir(&d).unwrap().next().is_none(),
                "{sub}: {other} was written"
            );
        }
    }
}

/// Item 8: a stale output is unlinked, never zeroed: another name of the same file keeps its
/// content.
#[test]
fn a_stale_output_hard_linked_elsewhere_keeps_the_other_names_content() {
    let site = Site::new();
    assert_ends(&site.build_all(&[]), 0, "first run");
    let keep = site.p("keep.json");
    write(&keep, "precious", 0o644);
    let stale = site.p("www/by-mac/52:54:00:00:00:99.json");
    std::fs::hard_link(&keep, &stale).unwrap();

    let r = site.build_all(&[]);
    assert_ends(&r, 0, "second run");
    assert!(r.output.contains("1 stale files removed"), "{}", r.output);
    assert!(!stale.exists(), "the stale output is still served");
    assert_eq!(std::fs::read_to_string(&keep).unwrap(), "precious");
}

/// Item 9: plain outputs are 0600 and sealed outputs 0644 whatever the umask, and an output
/// whose mode was changed gets its mode back on the next run even though its bytes did not
/// change.
#[test]
fn outputs_get_their_modes_whatever_the_umask_and_back_after_a_chmod() {
    for mask in ["000", "077"] {
        let site = Site::new();
        let (nodes, www, ek) = (site.p("nodes"), site.p("www"), site.p("ek"));
        let key = site.p("sign.key");
        let r = rustlive_umask(mask, &["bundle", "build-all", s(&nodes), "-o", s(&www)]);
        assert_ends(&r, 0, mask);
        let outputs = [
            site.p("www/by-host/n001.json"),
            site.p("www/by-host/n001.cpio"),
            site.p(&format!("www/by-mac/{MAC}.json")),
            site.p(&format!("www/by-mac/{MAC}.cpio")),
        ];
        for o in &outputs {
            assert_eq!(mode(o), 0o600, "umask {mask}: {}", o.display());
        }
        for o in &outputs {
            std::fs::set_permissions(o, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let r = rustlive_umask(mask, &["bundle", "build-all", s(&nodes), "-o", s(&www)]);
        assert_ends(&r, 0, mask);
        for o in &outputs {
            assert_eq!(
                mode(o),
                0o600,
                "umask {mask}: {} after a chmod",
                o.display()
            );
        }

        // Sealed: 0644, the same after a chmod 0600.
        let www2 = site.p("www2");
        let sealed = [
            "bundle",
            "build-all",
            s(&nodes),
            "-o",
            s(&www2),
            "--seal-to",
            s(&ek),
            "--sign-key",
            s(&key),
        ];
        assert_ends(&rustlive_umask(mask, &sealed), 0, mask);
        let json = www2.join("by-host/n001.json");
        assert_eq!(mode(&json), 0o644, "umask {mask}: sealed");
        std::fs::set_permissions(&json, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_ends(&rustlive_umask(mask, &sealed), 0, mask);
        assert_eq!(mode(&json), 0o644, "umask {mask}: sealed after a chmod");

        // `bundle seal`.
        let plain = site.p("www/by-host/n001.json");
        let out = site.p("n001.sealed");
        let ek_pem = site.p("ek/n001.pem");
        let r = rustlive_umask(
            mask,
            &[
                "bundle",
                "seal",
                "--ek",
                s(&ek_pem),
                "--sign-key",
                s(&site.p("sign.key")),
                s(&plain),
                "-o",
                s(&out),
            ],
        );
        assert_ends(&r, 0, mask);
        assert_eq!(mode(&out), 0o644, "umask {mask}: bundle seal");
    }
}

/// Item 10: `--ssh-host-keys` never writes through a symlinked `etc/ssh` or `etc`: the tree is
/// refused before a key is generated.
#[test]
fn host_keys_are_never_written_through_a_symlinked_directory() {
    for (link, target_has_ssh) in [("etc/ssh", false), ("etc", true)] {
        let site = Site::new();
        let outside = site.p("outside");
        std::fs::create_dir_all(outside.join("ssh")).unwrap();
        let node = site.p("nodes/n001");
        if link == "etc" {
            std::fs::rename(node.join("etc"), site.p("moved-etc")).unwrap();
        }
        let target = if target_has_ssh {
            outside.clone()
        } else {
            outside.join("ssh")
        };
        std::os::unix::fs::symlink(&target, node.join(link)).unwrap();

        let r = site.build("n.json", &["--ssh-host-keys"]);
        assert_ends(&r, 6, link);
        assert!(r.output.contains("symbolic link"), "{link}: {}", r.output);
        let r = site.build_all(&["--ssh-host-keys"]);
        assert_ends(&r, 6, link);
        assert!(
            std::fs::read_dir(outside.join("ssh"))
                .unwrap()
                .next()
                .is_none(),
            "{link}: host keys written through the link"
        );
        assert!(!site.p("n.json").exists() && !site.p("www").exists());
    }
}

/// Item 11: `bundle seal -o out.sealed` never writes through a planted temporary name (the old
/// `out.sealing`, and the documented pattern's neighbours).
#[test]
fn seal_does_not_write_through_a_planted_temporary() {
    let site = Site::new();
    assert_ends(&site.build("n.json", &[]), 0, "build");
    let victim = site.p("victim");
    write(&victim, "precious", 0o644);
    for planted in [
        "out.sealing",
        "out.sealed.part",
        "out.part",
        ".out.sealed.part",
    ] {
        std::os::unix::fs::symlink(&victim, site.p(planted)).unwrap();
    }
    let (ek, input, out) = (
        site.p("ek/n001.pem"),
        site.p("n.json"),
        site.p("out.sealed"),
    );
    let r = rustlive(&[
        "bundle",
        "seal",
        "--ek",
        s(&ek),
        "--sign-key",
        s(&site.p("sign.key")),
        s(&input),
        "-o",
        s(&out),
    ]);
    assert_ends(&r, 0, "seal");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let md = out.symlink_metadata().unwrap();
    assert!(md.file_type().is_file(), "the output is not a regular file");
    assert!(rustlive::tpm::envelope::is_sealed(
        &std::fs::read(&out).unwrap()
    ));
}

/// Item 13: a FIFO, a device node or a link to `/dev/zero` as a node's manifest: refused at
/// once by `bundle build` and `build-all`, nothing written.
#[test]
fn special_files_as_a_manifest_are_refused_quickly() {
    for sp in SPECIALS {
        let site = Site::new();
        if !sp.plant(&site.p("nodes/n001/rustlive-bundle.json")) {
            continue;
        }
        let r = site.build("n.json", &[]);
        assert_refused(&r, 6, &format!("build, {sp:?}"));
        assert!(r.output.contains("rustlive-bundle.json"), "{}", r.output);
        assert!(!site.p("n.json").exists());
        let r = site.build_all(&[]);
        assert_refused(&r, 6, &format!("build-all, {sp:?}"));
        assert!(!site.p("www").exists(), "{sp:?}: written");
    }
}

/// Item 13: a special file as a node's `.sealed/` state is refused at once; the served outputs
/// stay as they were.
#[test]
fn special_files_as_a_sealed_state_file_are_refused_quickly() {
    for sp in SPECIALS {
        let site = Site::new();
        assert_ends(&site.build_all_sealed(), 0, "first run");
        let json = site.p("www/by-host/n001.json");
        let before = std::fs::read(&json).unwrap();
        if !sp.plant(&site.p("nodes/.sealed/n001")) {
            continue;
        }
        let r = site.build_all_sealed();
        assert_refused(&r, 6, &format!("{sp:?}"));
        assert!(r.output.contains(".sealed/n001"), "{sp:?}: {}", r.output);
        assert_eq!(std::fs::read(&json).unwrap(), before, "{sp:?}");
    }
}

/// Item 13: a special file where an output was is never opened: it is replaced by the output
/// (renamed over it), at once.
#[test]
fn special_files_as_an_existing_output_are_replaced_without_being_read() {
    for sp in SPECIALS {
        let site = Site::new();
        assert_ends(&site.build_all(&[]), 0, "first run");
        let mac = site.p(&format!("www/by-mac/{MAC}.json"));
        let host = site.p("www/by-host/n001.json");
        if !sp.plant(&host) {
            continue;
        }
        let r = site.build_all(&[]);
        assert_ends(&r, 0, &format!("{sp:?}"));
        assert!(host.symlink_metadata().unwrap().file_type().is_file());
        assert_eq!(std::fs::read(&host).unwrap(), std::fs::read(&mac).unwrap());
        assert_eq!(mode(&host), 0o600);
    }
}

/// Item 13: a FIFO or a device as the `bundle seal` input or its `--ek` (named on the command
/// line, so `/dev/zero` itself too) is refused at once with a usage error; nothing written.
#[test]
fn special_files_as_seal_input_or_ek_are_refused_quickly() {
    let site = Site::new();
    assert_ends(&site.build("n.json", &[]), 0, "build");
    let (good_ek, good_in, out) = (site.p("ek/n001.pem"), site.p("n.json"), site.p("o.sealed"));
    let key = site.p("sign.key");
    let mut specials: Vec<(String, PathBuf)> = vec![("/dev/zero".into(), "/dev/zero".into())];
    for sp in SPECIALS {
        let p = site.p(&format!("special-{sp:?}"));
        if sp.plant(&p) {
            specials.push((format!("{sp:?}"), p));
        }
    }
    for (what, p) in &specials {
        let r = rustlive(&[
            "bundle",
            "seal",
            "--ek",
            s(&good_ek),
            "--sign-key",
            s(&key),
            s(p),
            "-o",
            s(&out),
        ]);
        assert_refused(&r, 2, &format!("input {what}"));
        let r = rustlive(&[
            "bundle",
            "seal",
            "--ek",
            s(p),
            "--sign-key",
            s(&key),
            s(&good_in),
            "-o",
            s(&out),
        ]);
        assert_refused(&r, 2, &format!("--ek {what}"));
        assert!(!out.exists(), "{what}: written");
    }
    // The same refusals name the file and why.
    let fifo = site.p("special-Fifo");
    let r = rustlive(&[
        "bundle",
        "seal",
        "--ek",
        s(&fifo),
        "--sign-key",
        s(&key),
        s(&good_in),
        "-o",
        s(&out),
    ]);
    assert!(
        r.output.contains("special-Fifo") && r.output.contains("FIFO"),
        "{}",
        r.output
    );
}

/// Item 13: a special file as a node's enrolled EK (`EK_DIR/HOST.pem`) is refused at once.
#[test]
fn special_files_as_an_enrolled_ek_are_refused_quickly() {
    for sp in SPECIALS {
        let site = Site::new();
        if !sp.plant(&site.p("ek/n001.pem")) {
            continue;
        }
        let r = site.build_all_sealed();
        assert_refused(&r, 6, &format!("{sp:?}"));
        assert!(r.output.contains("n001.pem"), "{sp:?}: {}", r.output);
        assert!(!site.p("www").exists());
    }
}

/// A limit on every read: a manifest of more than 64 KiB is refused before it is parsed, naming
/// the file and the limit.
#[test]
fn an_oversized_manifest_is_refused_with_its_limit() {
    let site = Site::new();
    let manifest = site.p("nodes/n001/rustlive-bundle.json");
    let padding = " ".repeat(64 << 10);
    write(
        &manifest,
        &format!(r#"{{"macs": ["{MAC}"]}}{padding}"#),
        0o644,
    );
    let r = site.build("n.json", &[]);
    assert_ends(&r, 6, "oversized manifest");
    assert!(
        r.output.contains("rustlive-bundle.json") && r.output.contains("64 KiB"),
        "{}",
        r.output
    );
}
