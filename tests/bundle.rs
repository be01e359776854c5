//! `rustlive bundle` end to end with the built binary: a tree becomes a bundle that
//! `rustlive inject-secrets` installs byte-exact with its modes and owners (JSON and the cpio's
//! own secrets.json); the cpio is a gzip'ed newc archive GNU cpio lists, identical across
//! builds; hostile trees are refused with the node's own messages and write nothing.
//!
//! The round trip writes files owned by other users: it needs root (CI runs it as root).

mod support;

use rustlive::secrets::bundle::{BundleError, Rule};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A secret value that must never appear in any output.
const CANARY: &str = "CANARY-31d0b6a4-do-not-print";

fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .args(args)
        .env("RUSTLIVE_LOG", "stderr")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    assert!(
        !text.contains(CANARY),
        "a secret appeared in the output:\n{text}"
    );
    (out.status.code().unwrap_or(-1), text)
}

fn write(path: &Path, content: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    p.symlink_metadata().unwrap().mode() & 0o7777
}

/// A node tree (`node/`), a common tree (`common/`), and the node image's root (`root/`, with
/// its accounts) in one temporary directory.
struct Site {
    tmp: tempfile::TempDir,
}

impl Site {
    fn new() -> Site {
        let tmp = tempfile::tempdir().unwrap();
        let t = tmp.path();
        write(
            &t.join("node/etc/rustlive-test/token"),
            &format!("{CANARY} token\n"),
            0o640,
        );
        write(
            &t.join("node/rustlive-bundle.json"),
            r#"{"owners": {"/etc/rustlive-test/token": "root:munge"}, "macs": ["52:54:00:12:34:56"]}"#,
            0o644,
        );
        write(
            &t.join("common/etc/munge/munge.key"),
            &format!("{CANARY} munge\n"),
            0o400,
        );
        write(
            &t.join("common/rustlive-bundle.json"),
            r#"{"owners": {"/etc/munge/munge.key": "munge:munge"}}"#,
            0o644,
        );
        write(
            &t.join("root/etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nmunge:x:998:997::/run/munge:/sbin/nologin\n",
            0o644,
        );
        write(
            &t.join("root/etc/group"),
            "root:x:0:\nmunge:x:997:\n",
            0o644,
        );
        Site { tmp }
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// Replaces the node tree's manifest with `json`.
    fn manifest(&self, json: &str) {
        write(&self.p("node/rustlive-bundle.json"), json, 0o644);
    }

    fn s(&self, rel: &str) -> String {
        self.p(rel).to_str().unwrap().to_string()
    }

    /// `rustlive bundle build node --common common --image-root root -o OUT [EXTRA…]`.
    fn build(&self, out: &str, extra: &[&str]) -> (i32, String) {
        let (node, common, root, out) = (
            self.s("node"),
            self.s("common"),
            self.s("root"),
            self.s(out),
        );
        let mut args = vec![
            "bundle",
            "build",
            &node,
            "--common",
            &common,
            "--image-root",
            &root,
            "-o",
            &out,
        ];
        args.extend_from_slice(extra);
        run(&args)
    }
}

fn gunzip(path: &Path) -> Vec<u8> {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `cpio -t -v` of an uncompressed archive.
fn cpio_list(archive: &[u8], dir: &Path) -> String {
    let f = dir.join("plain.cpio");
    std::fs::write(&f, archive).unwrap();
    let out = Command::new("cpio")
        .args(["-t", "-v", "--quiet", "-F"])
        .arg(&f)
        .output()
        .expect("cpio (Debian package cpio) is installed by scripts/install-deps.sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn cpio_is_gzipped_newc_listed_by_cpio_and_identical_across_builds() {
    let s = Site::new();
    let (code, out) = s.build("a.cpio", &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = s.build("b.cpio", &[]);
    assert_eq!(code, 0, "{out}");
    let (a, b) = (
        std::fs::read(s.p("a.cpio")).unwrap(),
        std::fs::read(s.p("b.cpio")).unwrap(),
    );
    assert_eq!(a, b, "two builds of the same tree differ");
    assert_eq!(a.get(..2), Some(&[0x1f, 0x8b][..]), "gzip magic");
    assert_eq!(mode(&s.p("a.cpio")), 0o600);

    let plain = gunzip(&s.p("a.cpio"));
    assert!(plain.starts_with(b"070701"), "newc magic");
    let list = cpio_list(&plain, s.tmp.path());
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(
        lines[0].starts_with("drwxr-xr-x") && lines[0].ends_with(" rustlive"),
        "{list}"
    );
    assert!(
        lines[1].starts_with("-rw-------") && lines[1].ends_with(" rustlive/secrets.json"),
        "{list}"
    );
    assert!(
        lines.iter().all(|l| l.contains(" root ")),
        "root-owned entries: {list}"
    );

    // The cpio carries exactly the JSON output.
    let (code, out) = s.build("n.json", &[]);
    assert_eq!(code, 0, "{out}");
    let json = std::fs::read(s.p("n.json")).unwrap();
    assert!(plain.windows(json.len()).any(|w| w == json.as_slice()));
    assert_eq!(mode(&s.p("n.json")), 0o600);
}

#[test]
fn tree_to_bundle_to_inject_secrets_round_trip() {
    if !rustlive::support::testing::is_root() {
        return rustlive::support::testing::skip("installing files owned by munge needs root");
    }
    let s = Site::new();
    let (code, out) = s.build("n.json", &["--ssh-host-keys"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = s.build("n.cpio", &[]);
    assert_eq!(code, 0, "{out}");
    let key = std::fs::read(s.p("node/etc/ssh/ssh_host_ed25519_key")).unwrap();
    assert!(key.starts_with(b"-----BEGIN OPENSSH PRIVATE KEY-----"));

    // Twice: from the JSON, and from the secrets.json that the cpio unpacks to.
    let unpacked = s.p("initramfs");
    std::fs::create_dir(&unpacked).unwrap();
    let plain = gunzip(&s.p("n.cpio"));
    let mut cpio = Command::new("cpio")
        .args(["-i", "-d", "--quiet"])
        .current_dir(&unpacked)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(cpio.stdin.as_mut().unwrap(), &plain).unwrap();
    drop(cpio.stdin.take());
    assert!(cpio.wait().unwrap().success());
    let from_cpio = unpacked.join("rustlive/secrets.json");
    assert_eq!(mode(&from_cpio), 0o600);
    assert_eq!(
        std::fs::read(&from_cpio).unwrap(),
        std::fs::read(s.p("n.json")).unwrap()
    );

    for source in [s.p("n.json"), from_cpio] {
        let root = s.p("newroot");
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        for f in ["etc/passwd", "etc/group"] {
            std::fs::copy(s.p("root").join(f), root.join(f)).unwrap();
        }
        let url = format!("file://{}", source.display());
        let (code, out) = run(&[
            "inject-secrets",
            "--root",
            root.to_str().unwrap(),
            "--source",
            &url,
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("installed 8 files"), "{out}");
        let check = |rel: &str, src: &Path, want: (u32, u32, u32)| {
            let p = root.join(rel);
            assert_eq!(
                std::fs::read(&p).unwrap(),
                std::fs::read(src).unwrap(),
                "{rel}"
            );
            let md = p.metadata().unwrap();
            assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), want, "{rel}");
        };
        check(
            "etc/munge/munge.key",
            &s.p("common/etc/munge/munge.key"),
            (0o400, 998, 997),
        );
        check(
            "etc/rustlive-test/token",
            &s.p("node/etc/rustlive-test/token"),
            (0o640, 0, 997),
        );
        for ty in ["ed25519", "ecdsa", "rsa"] {
            let k = format!("etc/ssh/ssh_host_{ty}_key");
            check(&k, &s.p(&format!("node/{k}")), (0o600, 0, 0));
            let k = format!("{k}.pub");
            check(&k, &s.p(&format!("node/{k}")), (0o644, 0, 0));
        }
        assert!(
            !root.join("rustlive-bundle.json").exists(),
            "the manifest is not a node file"
        );
        // A file:// source is wiped once applied.
        assert!(!source.exists());
    }
}

#[test]
fn node_file_overrides_common_file() {
    let s = Site::new();
    write(&s.p("node/etc/munge/munge.key"), "node's own\n", 0o400);
    let (code, out) = run(&[
        "bundle",
        "build",
        &s.s("node"),
        "--common",
        &s.s("common"),
        "-o",
        &s.s("n.json"),
    ]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(s.p("n.json")).unwrap()).unwrap();
    let files = json["files"].as_array().unwrap();
    let munge = files
        .iter()
        .find(|f| f["path"] == "/etc/munge/munge.key")
        .unwrap();
    // The node's own file, with the node manifest's owner (none: root), not the common one's.
    assert_eq!(munge["content_base64"], "bm9kZSdzIG93bgo=");
    assert_eq!(
        (&munge["owner"], &munge["group"]),
        (&"root".into(), &"root".into())
    );
}

/// Every hostile tree: exit code 6, the node's own message (from its validator's types), and
/// no output file.
#[test]
fn hostile_trees_are_refused_with_the_nodes_messages() {
    let entry = |path: Option<&str>, rule: Rule| {
        BundleError::Entry {
            index: 0,
            path: path.map(String::from),
            rule,
        }
        .to_string()
    };
    #[allow(clippy::type_complexity)]
    let cases: Vec<(&str, Box<dyn Fn(&Site)>, String)> = vec![
        (
            "a symlink in the tree",
            Box::new(|s: &Site| {
                std::os::unix::fs::symlink("/etc/shadow", s.p("node/etc/shadow")).unwrap()
            }),
            "is a symbolic link".into(),
        ),
        (
            "a symlinked directory in the tree",
            Box::new(|s: &Site| std::os::unix::fs::symlink("/etc", s.p("node/etc/x")).unwrap()),
            "is a symbolic link".into(),
        ),
        (
            "a file outside the root image (/run)",
            Box::new(|s: &Site| write(&s.p("node/run/x"), "x", 0o600)),
            Rule::PathForbidden("run").to_string(),
        ),
        (
            "a file outside the root image (/proc)",
            Box::new(|s: &Site| write(&s.p("node/proc/sys/x"), "x", 0o600)),
            Rule::PathForbidden("proc").to_string(),
        ),
        (
            "a manifest path outside the tree",
            Box::new(|s: &Site| s.manifest(r#"{"owners": {"/etc/../../x": "root"}}"#)),
            Rule::PathNotNormalized.to_string(),
        ),
        (
            "a setuid file",
            Box::new(|s: &Site| write(&s.p("node/etc/rustlive-test/token"), "x", 0o4755)),
            entry(Some("/etc/rustlive-test/token"), Rule::ModeSpecialBits)
                .replace("files[0]", "files[1]"),
        ),
        (
            "a sticky file",
            Box::new(|s: &Site| write(&s.p("node/etc/a"), "x", 0o1600)),
            Rule::ModeSpecialBits.to_string(),
        ),
        (
            "a manifest naming a file absent from the tree",
            Box::new(|s: &Site| {
                s.manifest(r#"{"owners": {"/etc/rustlive-test/tokn": "root:munge"}}"#)
            }),
            "names /etc/rustlive-test/tokn, which is not a file of".into(),
        ),
        (
            "an owner name absent from the image",
            Box::new(|s: &Site| {
                s.manifest(r#"{"owners": {"/etc/rustlive-test/token": "slurm:munge"}}"#)
            }),
            Rule::UnknownOwner.to_string(),
        ),
        (
            "a group name absent from the image",
            Box::new(|s: &Site| {
                s.manifest(r#"{"owners": {"/etc/rustlive-test/token": "root:slurm"}}"#)
            }),
            Rule::UnknownGroup.to_string(),
        ),
        (
            "a malformed owner name",
            Box::new(|s: &Site| {
                s.manifest(r#"{"owners": {"/etc/rustlive-test/token": "bad name"}}"#)
            }),
            Rule::IdSyntax("owner").to_string(),
        ),
        (
            "a FIFO in the tree",
            Box::new(|s: &Site| {
                rustlive::sys::fs::make_fifo(&s.p("node/etc/fifo"), 0o700).unwrap()
            }),
            "is not a regular file or a directory".into(),
        ),
    ];
    for (name, setup, want) in cases {
        let s = Site::new();
        setup(&s);
        for out in ["n.json", "n.cpio"] {
            let (code, output) = s.build(out, &[]);
            assert_eq!(code, 6, "{name}: {output}");
            assert!(
                output.contains(&want),
                "{name}: want {want:?} in:\n{output}"
            );
            assert!(!s.p(out).exists(), "{name}: {out} was written");
        }
    }
}

#[test]
fn build_all_names_outputs_by_mac_and_host() {
    let s = Site::new();
    let nodes = s.p("nodes");
    std::fs::create_dir(&nodes).unwrap();
    std::fs::rename(s.p("node"), nodes.join("n001")).unwrap();
    // `bundle build-all` of the one node into www/, which must succeed and say `counts`.
    let build_all = |counts: &str| {
        let (code, out) = run(&[
            "bundle",
            "build-all",
            nodes.to_str().unwrap(),
            "--common",
            &s.s("common"),
            "-o",
            &s.s("www"),
        ]);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("1 nodes: {counts}")), "{out}");
    };
    build_all("1 written, 0 unchanged");
    let by_mac = s.p("www/by-mac/52:54:00:12:34:56.cpio");
    assert_eq!(
        std::fs::read(&by_mac).unwrap(),
        std::fs::read(s.p("www/by-host/n001.cpio")).unwrap()
    );
    assert_eq!(mode(&by_mac), 0o600);
    // The same bytes as `bundle build` of that node.
    let (code, out) = run(&[
        "bundle",
        "build",
        nodes.join("n001").to_str().unwrap(),
        "--common",
        &s.s("common"),
        "-o",
        &s.s("one.cpio"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        std::fs::read(&by_mac).unwrap(),
        std::fs::read(s.p("one.cpio")).unwrap()
    );
    build_all("0 written, 1 unchanged");
}

#[test]
fn unknown_output_kind_is_a_usage_error() {
    let s = Site::new();
    let (code, out) = run(&["bundle", "build", &s.s("node"), "-o", &s.s("n.tar")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("must end in .json or .cpio"), "{out}");
}

/// Issue 18, item 1: `bundle seal --sign-key` signs with a key `minisign -G -W` made; the
/// signature is a standard minisign signature of the envelope's signed bytes, which
/// `minisign -V` accepts, and the node's check trusts it with the `.pub` file. Without a
/// signing key nothing is sealed.
#[test]
fn seal_signs_with_a_minisign_key_and_minisign_verifies_it() {
    use rustlive::tpm::envelope;
    let s = Site::new();
    let Some((sk, pk)) = support::minisign_keys(s.tmp.path()) else {
        return;
    };
    std::fs::write(
        s.p("ek.pem"),
        include_str!("../src/tpm/testdata/ek-rsa.pem"),
    )
    .unwrap();
    let (code, out) = s.build("n.json", &[]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = run(&[
        "bundle",
        "seal",
        "--ek",
        &s.s("ek.pem"),
        "n.json",
        "-o",
        &s.s("n.sealed"),
    ]);
    assert_eq!(code, 2, "--sign-key is required: {out}");
    assert!(out.contains("--sign-key"), "{out}");
    assert!(!s.p("n.sealed").exists());

    let (code, out) = run(&[
        "bundle",
        "seal",
        "--ek",
        &s.s("ek.pem"),
        "--sign-key",
        sk.to_str().unwrap(),
        &s.s("n.json"),
        "-o",
        &s.s("n.sealed"),
    ]);
    assert_eq!(code, 0, "{out}");
    let pub_text = std::fs::read_to_string(&pk).unwrap();
    let key_id = pub_text
        .lines()
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .to_string();
    // The comment writes the id without leading zeros; rustlive always prints 16 digits.
    let key_id = format!("{:016X}", u64::from_str_radix(&key_id, 16).unwrap());
    assert!(out.contains(&format!("signed by key {key_id}")), "{out}");
    let sealed = std::fs::read(s.p("n.sealed")).unwrap();
    let env: envelope::Envelope = serde_json::from_slice(&sealed).unwrap();
    assert_eq!(env.version, 2);

    // minisign itself verifies the signature over the signed bytes.
    std::fs::write(s.p("signed"), env.signed_message()).unwrap();
    std::fs::write(s.p("signed.minisig"), env.signature.as_ref().unwrap()).unwrap();
    let v = Command::new("minisign")
        .args(["-V", "-H", "-p"])
        .arg(&pk)
        .arg("-m")
        .arg(s.p("signed"))
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(String::from_utf8_lossy(&v.stdout).contains("rustlive-sealed 2 to the rsa2048 EK"));
    // One byte more and it does not.
    let mut other = env.signed_message();
    other.push(b' ');
    std::fs::write(s.p("signed"), other).unwrap();
    let v = Command::new("minisign")
        .args(["-V", "-q", "-p"])
        .arg(&pk)
        .arg("-m")
        .arg(s.p("signed"))
        .status()
        .unwrap();
    assert!(!v.success());

    // The node's check, with the .pub file as it goes into the initramfs.
    let keys = rustlive::fetch::verify::load_keys_dir(s.tmp.path()).unwrap();
    assert_eq!(keys.len(), 1);
    let p = envelope::parse(&sealed).unwrap();
    assert!(matches!(
        envelope::check_signature(&p, &keys).unwrap(),
        envelope::Signer::Trusted(id) if id.to_string() == key_id
    ));
}

/// Issue 18, item 9: `build-all --seal-to` after a plain run kept the plain bundles (the
/// `.sealed/` record of an earlier sealed run said "unchanged" and the outputs existed): every
/// output must be sealed, signed and 0644 again.
#[test]
fn build_all_seal_to_after_a_plain_run_seals_every_output() {
    use rustlive::tpm::envelope;
    let s = Site::new();
    let Some((sk, pk)) = support::minisign_keys(s.tmp.path()) else {
        return;
    };
    let nodes = s.p("nodes");
    std::fs::create_dir(&nodes).unwrap();
    std::fs::rename(s.p("node"), nodes.join("n001")).unwrap();
    std::fs::create_dir(s.p("eks")).unwrap();
    std::fs::write(
        s.p("eks/n001.pem"),
        include_str!("../src/tpm/testdata/ek-rsa.pem"),
    )
    .unwrap();
    let build_all = |sealed: bool, counts: &str| {
        let (nodes, common, www, eks) = (
            nodes.to_str().unwrap().to_string(),
            s.s("common"),
            s.s("www"),
            s.s("eks"),
        );
        let mut args = vec![
            "bundle",
            "build-all",
            &nodes,
            "--common",
            &common,
            "-o",
            &www,
        ];
        if sealed {
            args.extend_from_slice(&["--seal-to", &eks, "--sign-key", sk.to_str().unwrap()]);
        }
        let (code, out) = run(&args);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains(&format!("1 nodes: {counts}")), "{out}");
    };
    let outputs = [
        "www/by-host/n001.json",
        "www/by-host/n001.cpio",
        "www/by-mac/52:54:00:12:34:56.json",
        "www/by-mac/52:54:00:12:34:56.cpio",
    ];
    let keys = [rustlive::fetch::verify::load_key(&pk).unwrap()];
    let all_sealed = || {
        for o in outputs {
            let bytes = std::fs::read(s.p(o)).unwrap();
            let json = if o.ends_with(".cpio") {
                let mut raw = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut raw)
                    .unwrap();
                let json = std::fs::read(s.p(&o.replace(".cpio", ".json"))).unwrap();
                assert!(
                    raw.windows(json.len()).any(|w| w == json.as_slice()),
                    "{o} does not carry the sealed envelope"
                );
                json
            } else {
                bytes
            };
            let p = envelope::parse(&json).unwrap_or_else(|e| panic!("{o}: {e}"));
            assert!(matches!(
                envelope::check_signature(&p, &keys).unwrap(),
                envelope::Signer::Trusted(_)
            ));
            assert_eq!(mode(&s.p(o)), 0o644, "{o}");
        }
    };
    build_all(true, "1 written");
    all_sealed();
    build_all(false, "1 written");
    assert!(!envelope::is_sealed(
        &std::fs::read(s.p(outputs[0])).unwrap()
    ));
    build_all(true, "1 written");
    all_sealed();
    build_all(true, "0 written, 1 unchanged");
    // --seal-to without --sign-key: a usage error, nothing touched.
    let before = std::fs::read(s.p(outputs[0])).unwrap();
    let (code, out) = run(&[
        "bundle",
        "build-all",
        nodes.to_str().unwrap(),
        "--seal-to",
        &s.s("eks"),
        "-o",
        &s.s("www"),
    ]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(std::fs::read(s.p(outputs[0])).unwrap(), before);
}
