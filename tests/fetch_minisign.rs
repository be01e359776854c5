//! Minisign: with a trusted key installed a valid signature is required; keys and signatures
//! are made by the real `minisign` tool.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::http::{Reply, Server};
use support::{random_bytes, run_ok};

struct Keys {
    dir: tempfile::TempDir,
}

impl Keys {
    /// A fresh unencrypted key pair, or `None` (test skipped) without the minisign tool.
    fn new() -> Option<Keys> {
        let dir = tempfile::tempdir().unwrap();
        let st = Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(dir.path().join("site.pub"))
            .arg("-s")
            .arg(dir.path().join("site.key"))
            .output();
        match st {
            Ok(o) if o.status.success() => Some(Keys { dir }),
            _ => {
                rustlive::support::testing::skip("the minisign tool is not installed");
                None
            }
        }
    }

    fn public(&self) -> PathBuf {
        self.dir.path().join("site.pub")
    }

    /// `rustlive fetch --pubkey` (this key) of `/img` from `s` into `out` here: the output
    /// and `out`.
    fn fetch(&self, s: &Server) -> (Output, PathBuf) {
        let out = self.dir.path().join("out");
        let o = fetch(
            &["--pubkey", self.public().to_str().unwrap()],
            &out,
            &s.url("/img"),
        );
        (o, out)
    }

    /// Signs `data` (prehashed, or legacy with `-l`) and returns the .minisig text.
    fn sign(&self, data: &[u8], legacy: bool) -> Vec<u8> {
        let f = self.dir.path().join("data");
        std::fs::write(&f, data).unwrap();
        let sig = self.dir.path().join("data.minisig");
        let mut c = Command::new("minisign");
        c.arg("-S");
        if legacy {
            c.arg("-l");
        }
        run_ok(
            c.arg("-s")
                .arg(self.dir.path().join("site.key"))
                .arg("-m")
                .arg(&f)
                .arg("-x")
                .arg(&sig),
        );
        std::fs::read(sig).unwrap()
    }
}

fn serve(image: Vec<u8>, sig: Option<Vec<u8>>) -> Server {
    Server::start(move |r| match (r.path.as_str(), &sig) {
        ("/img", _) => Reply::ok(&image),
        ("/img.minisig", Some(s)) => Reply::ok(s),
        _ => Reply::status(404),
    })
}

fn fetch(args: &[&str], out: &Path, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .arg("fetch")
        .args(args)
        .arg("-o")
        .arg(out)
        .arg(url)
        .output()
        .unwrap()
}

/// Asserts that the fetch succeeded and wrote exactly `want` to `out`.
#[track_caller]
fn assert_fetched(o: &Output, out: &Path, want: &[u8]) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(std::fs::read(out).unwrap(), want);
}

/// Asserts that the fetch failed verification (exit 4) saying `want`.
#[track_caller]
fn assert_refused(o: &Output, want: &str) {
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains(want), "{err}");
}

fn image_requests(s: &Server) -> usize {
    s.requests().iter().filter(|r| r.path == "/img").count()
}

#[test]
fn valid_signature_is_accepted() {
    let Some(k) = Keys::new() else { return };
    let img = random_bytes(400_000, 31);
    let s = serve(img.clone(), Some(k.sign(&img, false)));
    let (o, out) = k.fetch(&s);
    assert_fetched(&o, &out, &img);
}

#[test]
fn keys_dir_and_explicit_signature_url() {
    let Some(k) = Keys::new() else { return };
    let img = random_bytes(1000, 32);
    let sig = k.sign(&img, false);
    let i2 = img.clone();
    let s = Server::start(move |r| match r.path.as_str() {
        "/img" => Reply::ok(&i2),
        "/sigs/img.sig" => Reply::ok(&sig),
        _ => Reply::status(404),
    });
    let keys = tempfile::tempdir().unwrap();
    std::fs::copy(k.public(), keys.path().join("site.pub")).unwrap();
    let out = k.dir.path().join("out");
    let o = fetch(
        &[
            "--keys-dir",
            keys.path().to_str().unwrap(),
            "--sig",
            &s.url("/sigs/img.sig"),
        ],
        &out,
        &s.url("/img"),
    );
    assert_fetched(&o, &out, &img);
}

#[test]
fn invalid_signature_exits_4_and_leaves_nothing() {
    let Some(k) = Keys::new() else { return };
    let img = random_bytes(300_000, 33);
    let mut tampered = img.clone();
    tampered[1000] ^= 1;
    let s = serve(tampered, Some(k.sign(&img, false)));
    let (o, out) = k.fetch(&s);
    assert_refused(&o, "signature");
    assert!(!out.exists() && !k.dir.path().join("out.part").exists());
}

#[test]
fn signature_from_another_key_is_refused() {
    let (Some(k), Some(other)) = (Keys::new(), Keys::new()) else {
        return;
    };
    let img = random_bytes(1000, 34);
    let s = serve(img.clone(), Some(other.sign(&img, false)));
    let (o, out) = k.fetch(&s);
    assert_eq!(o.status.code(), Some(4));
    assert_eq!(
        image_requests(&s),
        0,
        "refused before downloading the image"
    );
    assert!(!out.exists());
}

#[test]
fn missing_signature_with_a_key_installed_exits_4() {
    let Some(k) = Keys::new() else { return };
    let s = serve(random_bytes(1000, 35), None);
    let (o, out) = k.fetch(&s);
    assert_refused(&o, "img.minisig");
    assert_eq!(image_requests(&s), 0);
    assert!(!out.exists());
}

#[test]
fn legacy_signature_is_refused_with_a_hint() {
    let Some(k) = Keys::new() else { return };
    let img = random_bytes(1000, 36);
    let s = serve(img.clone(), Some(k.sign(&img, true)));
    let (o, _) = k.fetch(&s);
    assert_refused(&o, "legacy");
}
