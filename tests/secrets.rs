//! Node secrets end to end, in a temporary root: a valid bundle lands with exact bytes, modes
//! and owners; every hostile bundle writes nothing at all; nothing rustlive logs contains a
//! secret; the https source works against a local TLS server with and without a client
//! certificate.
//!
//! Writing files owned by other users needs root; those tests print why they skip otherwise.

use base64::Engine;
use rustlive::config::Config;
use rustlive::secrets::{self, Applied, NodeFacts, SecretsError};
use rustlive::support::deadline::Deadline;
use rustlive::support::exit::Exit;
use rustlive::support::paths::Paths;
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A secret value that must never appear in any output.
const CANARY: &str = "CANARY-9f1c2e77-do-not-print";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

const UUID: &str = "4c4c4544-0042-3510-8050-b4c04f4a4b33";

fn facts() -> NodeFacts {
    NodeFacts {
        mac: Some("52:54:00:12:34:56".into()),
        uuid: Some(UUID.into()),
        hostname: Some("node001".into()),
    }
}

/// A temporary directory holding the new root (`root/`), a directory outside it that hostile
/// bundles aim at (`outside/`), and the bundle itself (`src/`, not part of the snapshot since a
/// file source is removed once used).
struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc/ssh")).unwrap();
        std::fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nmunge:x:998:997:MUNGE:/run/munge:/sbin/nologin\n",
        )
        .unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nmunge:x:997:\n").unwrap();
        // A file of the image that a secret replaces.
        std::fs::write(root.join("etc/ssh/ssh_host_ed25519_key"), "image's key\n").unwrap();
        std::fs::set_permissions(
            root.join("etc/ssh/ssh_host_ed25519_key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::create_dir(tmp.path().join("outside")).unwrap();
        std::fs::write(tmp.path().join("outside/victim"), "untouched\n").unwrap();
        std::fs::create_dir(tmp.path().join("src")).unwrap();
        Fixture { tmp }
    }

    fn root(&self) -> PathBuf {
        self.tmp.path().join("root")
    }

    fn outside(&self) -> PathBuf {
        self.tmp.path().join("outside")
    }

    fn bundle_path(&self) -> PathBuf {
        self.tmp.path().join("src/secrets.json")
    }

    fn write_bundle(&self, text: &[u8]) -> String {
        std::fs::write(self.bundle_path(), text).unwrap();
        format!("file://{}", self.bundle_path().display())
    }

    /// Every path under `root/` and `outside/` with its type, mode, owner and content.
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        for top in [self.root(), self.outside()] {
            walk(&top, &mut out);
        }
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let md = p.symlink_metadata().unwrap();
        let what = if md.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&p).unwrap().display())
        } else if md.is_dir() {
            walk(&p, out);
            "dir".into()
        } else {
            let bytes = std::fs::read(&p).unwrap();
            format!(
                "file {} bytes sha256 {:x}",
                bytes.len(),
                sha2::Sha256::digest(&bytes)
            )
        };
        out.insert(
            p,
            format!("{what} mode {:o} {}:{}", md.mode(), md.uid(), md.gid()),
        );
    }
}

fn entry(path: &str, mode: &str, owner: &str, group: &str, content: &[u8]) -> String {
    format!(
        r#"{{"path": "{path}", "mode": "{mode}", "owner": {owner}, "group": {group}, "content_base64": "{}"}}"#,
        b64(content)
    )
}

fn bundle(entries: &[String]) -> Vec<u8> {
    format!(r#"{{"version": 1, "files": [{}]}}"#, entries.join(",\n")).into_bytes()
}

/// A harmless first entry: a hostile bundle must not get even this one written.
fn first() -> String {
    entry(
        "/etc/first-secret",
        "0600",
        "\"root\"",
        "\"root\"",
        CANARY.as_bytes(),
    )
}

/// Hostile cases: (name, fixture setup, bundle bytes, words the error must contain).
type Setup = fn(&Fixture);

fn hostile_cases() -> Vec<(&'static str, Setup, Vec<u8>, &'static str)> {
    let canary = CANARY.as_bytes();
    let e = |path: &str| entry(path, "0600", "\"root\"", "\"root\"", canary);
    let none: Setup = |_| {};
    vec![
        (
            "dot-dot escape",
            none,
            bundle(&[first(), e("/etc/../../outside/pwned")]),
            "files[1]: path must be normalized",
        ),
        (
            "symlinked parent directory",
            |f| std::os::unix::fs::symlink(f.outside(), f.root().join("etc/munge")).unwrap(),
            bundle(&[first(), e("/etc/munge/munge.key")]),
            "files[1] (/etc/munge/munge.key): /etc/munge is a symbolic link",
        ),
        (
            "relative symlinked parent directory",
            |f| std::os::unix::fs::symlink("../../outside", f.root().join("etc/pki")).unwrap(),
            bundle(&[first(), e("/etc/pki/tls/key.pem")]),
            "/etc/pki is a symbolic link",
        ),
        (
            "destination is a symlink to a file outside",
            |f| {
                std::os::unix::fs::symlink(
                    f.outside().join("victim"),
                    f.root().join("etc/ssh/ssh_host_rsa_key"),
                )
                .unwrap()
            },
            bundle(&[first(), e("/etc/ssh/ssh_host_rsa_key")]),
            "/etc/ssh/ssh_host_rsa_key is a symbolic link",
        ),
        (
            "duplicate paths",
            none,
            bundle(&[first(), e("/etc/a"), e("/etc/first-secret")]),
            "files[2] (/etc/first-secret): path duplicates files[0]",
        ),
        (
            "setuid mode",
            none,
            bundle(&[
                first(),
                entry("/etc/b", "4755", "\"root\"", "\"root\"", canary),
            ]),
            "files[1] (/etc/b): setuid, setgid and sticky bits are refused",
        ),
        (
            "unknown owner",
            none,
            bundle(&[
                first(),
                entry("/etc/c", "0600", "\"slurm\"", "\"root\"", canary),
            ]),
            "owner is not a user in the new root's /etc/passwd",
        ),
        (
            "invalid base64",
            none,
            bundle(&[
                first(),
                format!(r#"{{"path": "/etc/d", "content_base64": "{CANARY}!"}}"#),
            ]),
            "files[1] (/etc/d): content_base64 is not valid standard base64",
        ),
        (
            "2 MiB bundle",
            none,
            bundle(&[
                first(),
                e("/etc/big").replace(&b64(canary), &b64(&[b'x'; 2 << 20])),
            ]),
            "over the 1 MiB limit",
        ),
        (
            "version 2",
            none,
            String::from_utf8(bundle(&[first()]))
                .unwrap()
                .replace("\"version\": 1", "\"version\": 2")
                .into_bytes(),
            "unsupported version 2",
        ),
        (
            "unknown field",
            none,
            bundle(&[
                first(),
                format!(
                    r#"{{"path": "/etc/e", "content_base64": "{}", "comment": "{CANARY}"}}"#,
                    b64(canary)
                ),
            ]),
            "files[1]: unknown field \"comment\"",
        ),
        (
            "path under /run",
            none,
            bundle(&[first(), e("/run/secret")]),
            "not part of the root image",
        ),
        (
            "value of the wrong type",
            none,
            bundle(&[
                first(),
                format!(r#"{{"path": "/etc/f", "mode": "{CANARY}", "content_base64": ""}}"#),
            ]),
            "mode must be 3 or 4 octal digits",
        ),
    ]
}

fn cfg_for(source: &str) -> Config {
    Config::from_cmdline(&format!("rd.rustlive.secrets={source}")).unwrap()
}

/// The secrets stage's options, as `rustlive inject-secrets` builds them.
fn opts(cfg: &Config) -> secrets::SecretsOptions {
    rustlive::boot::options::secrets(cfg, &rustlive::boot::options::transfer(cfg))
}

#[test]
fn valid_bundle_gives_exact_bytes_modes_and_owners() {
    if !is_root() {
        rustlive::support::testing::skip("writing files owned by other users needs root");
        return;
    }
    let f = Fixture::new();
    let binary: Vec<u8> = (0..=255).collect();
    let src = f.write_bundle(&bundle(&[
        entry(
            "/etc/munge/munge.key",
            "0400",
            "\"munge\"",
            "\"munge\"",
            &binary,
        ),
        entry(
            "/etc/ssh/ssh_host_ed25519_key",
            "0600",
            "\"root\"",
            "\"root\"",
            CANARY.as_bytes(),
        ),
        entry("/var/lib/app/token", "640", "1234", "\"munge\"", b"t0ken\n"),
        r#"{"path": "/etc/empty", "content_base64": ""}"#.to_string(),
    ]));
    let got = secrets::apply(
        &opts(&cfg_for(&src)),
        &f.root(),
        &facts(),
        &Paths::under(f.tmp.path().join("no-default")),
        Deadline::NONE,
    )
    .unwrap();
    assert_eq!(got, Applied::Installed { files: 4 });

    let check = |p: &str, content: &[u8], mode: u32, uid: u32, gid: u32| {
        let path = f.root().join(p);
        assert_eq!(std::fs::read(&path).unwrap(), content, "{p}");
        let md = path.symlink_metadata().unwrap();
        assert!(md.is_file(), "{p}");
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (mode, uid, gid),
            "{p}"
        );
    };
    check("etc/munge/munge.key", &binary, 0o400, 998, 997);
    check(
        "etc/ssh/ssh_host_ed25519_key",
        CANARY.as_bytes(),
        0o600,
        0,
        0,
    );
    check("var/lib/app/token", b"t0ken\n", 0o640, 1234, 997);
    check("etc/empty", b"", 0o600, 0, 0);
    for d in ["etc/munge", "var", "var/lib", "var/lib/app"] {
        let md = f.root().join(d).metadata().unwrap();
        assert_eq!(
            (md.mode() & 0o7777, md.uid(), md.gid()),
            (0o755, 0, 0),
            "{d}"
        );
    }
    // The replaced file went through a temporary that is gone, and the source was wiped.
    let names: Vec<_> = std::fs::read_dir(f.root().join("etc/ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, ["ssh_host_ed25519_key"]);
    assert!(!f.bundle_path().exists());
}

#[test]
fn hostile_bundles_write_nothing_at_all() {
    for (name, setup, text, want) in hostile_cases() {
        let f = Fixture::new();
        setup(&f);
        let src = f.write_bundle(&text);
        let before = f.snapshot();
        let err = secrets::apply(
            &opts(&cfg_for(&src)),
            &f.root(),
            &facts(),
            &Paths::under(f.tmp.path().join("no-default")),
            Deadline::NONE,
        )
        .expect_err(name);
        assert_eq!(err.exit_code(), Exit::Secrets, "{name}");
        let msg = rustlive::support::exit::report(&err);
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(!msg.contains(CANARY), "{name}: {msg}");
        assert_eq!(f.snapshot(), before, "{name}: the tree changed");
    }
}

/// Runs the built binary with logs on stderr, returning (exit code, everything it printed).
fn run_rustlive(args: &[&str]) -> (i32, String) {
    run_rustlive_umask(args, "022")
}

/// [`run_rustlive`] under the given umask (which must not change any mode rustlive sets).
fn run_rustlive_umask(args: &[&str], umask: &str) -> (i32, String) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_rustlive"))
        .args(args)
        .env("RUSTLIVE_LOG", "stderr")
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

fn assert_no_canary(case: &str, output: &str) {
    for needle in [
        CANARY.to_string(),
        b64(CANARY.as_bytes()),
        CANARY.bytes().map(|b| format!("{b:02x}")).collect(),
        format!("{:?}", CANARY.as_bytes()),
    ] {
        assert!(
            !output.contains(&needle),
            "{case}: a secret appeared in the output:\n{output}"
        );
    }
}

#[test]
fn the_binary_never_logs_a_secret() {
    let mut cases = hostile_cases();
    if is_root() {
        cases.push((
            "valid bundle",
            |_| {},
            bundle(&[
                first(),
                entry(
                    "/etc/munge/munge.key",
                    "0400",
                    "\"munge\"",
                    "\"munge\"",
                    CANARY.as_bytes(),
                ),
            ]),
            "",
        ));
    } else {
        rustlive::support::testing::skip(
            "the valid-bundle run: writing root-owned files needs root",
        );
    }
    for (name, setup, text, want) in cases {
        let f = Fixture::new();
        setup(&f);
        let src = f.write_bundle(&text);
        let before = f.snapshot();
        let root = f.root();
        // A umask that would strip every bit: the modes of the bundle must come out anyway.
        let (code, output) = run_rustlive_umask(
            &[
                "inject-secrets",
                "--root",
                root.to_str().unwrap(),
                "--source",
                &src,
                "--cmdline",
                "rd.rustlive.debug",
            ],
            "0777",
        );
        assert_no_canary(name, &output);
        if want.is_empty() {
            assert_eq!(code, 0, "{name}: {output}");
            assert!(output.contains("installed 2 files"), "{output}");
            let key = root.join("etc/munge/munge.key");
            assert_eq!(std::fs::read(&key).unwrap(), CANARY.as_bytes());
            let md = key.metadata().unwrap();
            assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o400, 998, 997));
            let md = root.join("etc/munge").metadata().unwrap();
            assert_eq!((md.mode() & 0o7777, md.uid(), md.gid()), (0o755, 0, 0));
        } else {
            assert_eq!(code, 6, "{name}: {output}");
            assert!(output.contains(want), "{name}: {output}");
            assert_eq!(f.snapshot(), before, "{name}: the tree changed");
        }
        // The initramfs copy is gone whatever the outcome.
        assert!(!f.bundle_path().exists(), "{name}");
    }
}

#[test]
fn the_binary_with_nothing_configured_says_so_and_exits_0() {
    let t = tempfile::tempdir().unwrap();
    if Path::new(rustlive::config::DEFAULT_SECRETS_FILE).exists() {
        rustlive::support::testing::skip("this machine has a /rustlive/secrets.json");
        return;
    }
    let (code, output) = run_rustlive(&[
        "inject-secrets",
        "--root",
        t.path().to_str().unwrap(),
        "--cmdline",
        "quiet",
    ]);
    assert_eq!(code, 0, "{output}");
    assert_eq!(output.lines().count(), 1, "{output}");
    assert!(output.contains("no secrets installed"), "{output}");
}

#[test]
fn inject_secrets_help_describes_the_options() {
    let (code, output) = run_rustlive(&["inject-secrets", "--help"]);
    assert_eq!(code, 0);
    for w in [
        "--root",
        "--source",
        "--cmdline",
        "--mac",
        "rd.rustlive.secrets",
    ] {
        assert!(output.contains(w), "{w} missing from:\n{output}");
    }
}

// ---------------------------------------------------------------------------------------------
// https source against a local server

struct Pki {
    dir: tempfile::TempDir,
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    server: rcgen::Certificate,
    server_key: rcgen::KeyPair,
}

impl Pki {
    fn new() -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "rustlive test CA");
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = p.self_signed(&ca_key).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        p.subject_alt_names
            .push(SanType::IpAddress([127, 0, 0, 1].into()));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = p.signed_by(&server_key, &ca, &ca_key).unwrap();

        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca,
            ca_key,
            server,
            server_key,
        }
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A client certificate signed by `issuer`, written as cert.pem/key.pem.
    fn client_cert(&self, name: &str, issuer: &Pki) -> (PathBuf, PathBuf) {
        use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair};
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer.ca, &issuer.ca_key).unwrap();
        let c = self.dir.path().join(format!("{name}.crt"));
        let k = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::PrivateKeyDer;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca.der().clone()).unwrap();
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .unwrap()
        } else {
            rustls::server::WebPkiClientVerifier::no_client_auth()
        };
        let key = PrivateKeyDer::Pkcs8(self.server_key.serialize_der().into());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![self.server.der().clone()], key)
                .unwrap(),
        )
    }
}

/// What the test server saw: request line and whether a client certificate was presented.
type Seen = Arc<Mutex<Vec<(String, bool)>>>;

/// Serves `body` (with `status`) on 127.0.0.1, over TLS when `tls` is given, for up to
/// `max_conns` connections or 20 seconds, whichever comes first.
fn serve(
    tls: Option<Arc<rustls::ServerConfig>>,
    status: u16,
    body: Vec<u8>,
    max_conns: usize,
) -> (u16, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Seen = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut handled = 0;
        while handled < max_conns && Instant::now() < deadline {
            let tcp = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            handled += 1;
            tcp.set_nonblocking(false).unwrap();
            tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            match &tls {
                Some(cfg) => {
                    let conn = rustls::ServerConnection::new(cfg.clone()).unwrap();
                    let mut s = rustls::StreamOwned::new(conn, tcp);
                    if let Some(req) = read_request(&mut s) {
                        let client_cert = s.conn.peer_certificates().is_some();
                        seen2.lock().unwrap().push((req, client_cert));
                        respond(&mut s, status, &body);
                        s.conn.send_close_notify();
                        let _ = s.flush();
                    }
                }
                None => {
                    let mut s = tcp;
                    if let Some(req) = read_request(&mut s) {
                        seen2.lock().unwrap().push((req, false));
                        respond(&mut s, status, &body);
                    }
                }
            }
        }
    });
    (port, seen)
}

/// The request line, once the headers are complete; `None` on a failed handshake or read.
fn read_request(s: &mut impl Read) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&buf);
    Some(text.lines().next().unwrap_or_default().to_string())
}

fn respond(s: &mut impl Write, status: u16, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = s.write_all(head.as_bytes());
    let _ = s.write_all(body);
}

/// An empty new root with `/etc`, so that any user can apply [`own_bundle`] (missing parents
/// would be created root-owned).
fn scratch_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("etc")).unwrap();
    t
}

/// A bundle any user can apply: the file is owned by the current user.
fn own_bundle(path: &str) -> Vec<u8> {
    let uid = rustix::process::geteuid().as_raw().to_string();
    let gid = rustix::process::getegid().as_raw().to_string();
    bundle(&[entry(path, "0640", &uid, &gid, CANARY.as_bytes())])
}

fn https_cfg(port: u16, pki: &Pki, extra: &str) -> Config {
    Config::from_cmdline(&format!(
        "rd.rustlive.secrets=https://127.0.0.1:{port}/nodes/{{uuid}}.json?token=t0k3n \
         rd.rustlive.ca={} rd.rustlive.retries=0 {extra}",
        pki.ca_path().display()
    ))
    .unwrap()
}

fn apply_in(cfg: &Config, root: &Path) -> Result<Applied, SecretsError> {
    secrets::apply(
        &opts(cfg),
        root,
        &facts(),
        &Paths::under(root.join("no-default")),
        Deadline::NONE,
    )
}

#[test]
fn https_source_without_client_certificate() {
    let pki = Pki::new();
    let (port, seen) = serve(Some(pki.server_config(false)), 200, own_bundle("/etc/k"), 1);
    let root = scratch_root();
    let got = apply_in(&https_cfg(port, &pki, ""), root.path()).unwrap();
    assert_eq!(got, Applied::Installed { files: 1 });
    assert_eq!(
        std::fs::read(root.path().join("etc/k")).unwrap(),
        CANARY.as_bytes()
    );
    let md = root.path().join("etc/k").metadata().unwrap();
    assert_eq!(md.mode() & 0o7777, 0o640);
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen[0].0,
        format!("GET /nodes/{UUID}.json?token=t0k3n HTTP/1.1")
    );
}

#[test]
fn https_source_with_a_required_client_certificate() {
    let pki = Pki::new();
    let (cert, key) = pki.client_cert("node001", &pki);

    // Without a client certificate the handshake fails: nothing written, exit 6.
    let (port, seen) = serve(Some(pki.server_config(true)), 200, own_bundle("/etc/k"), 1);
    let root = scratch_root();
    let err = apply_in(&https_cfg(port, &pki, ""), root.path()).unwrap_err();
    assert_eq!(err.exit_code(), Exit::Secrets);
    assert!(matches!(err, SecretsError::Fetch { .. }), "{err:?}");
    assert!(seen.lock().unwrap().is_empty());
    assert_eq!(
        std::fs::read_dir(root.path().join("etc")).unwrap().count(),
        0
    );

    // With one signed by a CA the server does not trust: refused as well.
    let other = Pki::new();
    let (bad_cert, bad_key) = pki.client_cert("intruder", &other);
    let (port, _) = serve(Some(pki.server_config(true)), 200, own_bundle("/etc/k"), 1);
    let extra = format!(
        "rd.rustlive.secrets.cert={} rd.rustlive.secrets.key={}",
        bad_cert.display(),
        bad_key.display()
    );
    assert!(apply_in(&https_cfg(port, &pki, &extra), root.path()).is_err());

    // With the node's certificate: installed, and the server saw the certificate.
    let (port, seen) = serve(Some(pki.server_config(true)), 200, own_bundle("/etc/k"), 1);
    let extra = format!(
        "rd.rustlive.secrets.cert={} rd.rustlive.secrets.key={}",
        cert.display(),
        key.display()
    );
    let got = apply_in(&https_cfg(port, &pki, &extra), root.path()).unwrap();
    assert_eq!(got, Applied::Installed { files: 1 });
    assert_eq!(
        std::fs::read(root.path().join("etc/k")).unwrap(),
        CANARY.as_bytes()
    );
    assert!(
        seen.lock().unwrap()[0].1,
        "no client certificate reached the server"
    );
}

#[test]
fn https_server_outside_the_ca_is_refused_even_with_noverifyssl() {
    let pki = Pki::new();
    let stranger = Pki::new();
    let (port, _) = serve(
        Some(stranger.server_config(false)),
        200,
        own_bundle("/etc/k"),
        1,
    );
    let root = scratch_root();
    let err = apply_in(&https_cfg(port, &pki, "rd.noverifyssl"), root.path()).unwrap_err();
    assert!(matches!(err, SecretsError::Fetch { .. }), "{err:?}");
    assert_eq!(
        std::fs::read_dir(root.path().join("etc")).unwrap().count(),
        0
    );
}

#[test]
fn https_errors_do_not_retry_a_404_and_give_up_on_a_500() {
    let pki = Pki::new();
    let (port, seen) = serve(Some(pki.server_config(false)), 404, Vec::new(), 2);
    let root = scratch_root();
    let cfg = https_cfg(port, &pki, "rd.rustlive.retries=1");
    let err = rustlive::support::exit::report(&apply_in(&cfg, root.path()).unwrap_err());
    assert!(err.contains("answered 404"), "{err}");
    assert_eq!(seen.lock().unwrap().len(), 1, "a 404 is not retried");

    let (port, seen) = serve(Some(pki.server_config(false)), 503, Vec::new(), 2);
    let cfg = https_cfg(port, &pki, "rd.rustlive.retries=1");
    let started = Instant::now();
    let err = rustlive::support::exit::report(&apply_in(&cfg, root.path()).unwrap_err());
    assert!(
        err.contains("after 2 attempts") && err.contains("answered 503"),
        "{err}"
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    // One backoff of about a second; the bound only catches a wait of a whole stall period.
    assert!(started.elapsed() < Duration::from_secs(20));
    // The query string (a token) never reaches an error message.
    assert!(!err.contains("t0k3n"), "{err}");
}

#[test]
fn plain_http_only_with_a_matching_pin() {
    let body = own_bundle("/etc/k");
    let pin: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let root = scratch_root();
    let cmdline = |port: u16, pin: &str| {
        format!("rd.rustlive.secrets=http://127.0.0.1:{port}/b.json rd.rustlive.secrets.sha256={pin} rd.rustlive.retries=0")
    };
    // Without a pin, plain http is refused by the configuration unless only TPM-sealed bundles
    // are accepted; then an unsealed bundle that came that way is refused, nothing written.
    let plain = "rd.rustlive.secrets=http://127.0.0.1:1/b.json rd.rustlive.retries=0";
    let e = Config::from_cmdline(plain).unwrap_err();
    assert_eq!(e.option, "rd.rustlive.secrets");
    let (port, _) = serve(None, 200, body.clone(), 1);
    let cfg = Config::from_cmdline(&format!(
        "rd.rustlive.secrets=http://127.0.0.1:{port}/b.json rd.rustlive.retries=0 rd.rustlive.secrets.sealed=required"
    ))
    .unwrap();
    let err = rustlive::support::exit::report(&apply_in(&cfg, root.path()).unwrap_err());
    assert!(err.contains("is not sealed to this node's TPM"), "{err}");
    assert!(!root.path().join("etc/k").exists());

    let (port, _) = serve(None, 200, body.clone(), 1);
    let cfg = Config::from_cmdline(&cmdline(port, &"0".repeat(64))).unwrap();
    let err = rustlive::support::exit::report(&apply_in(&cfg, root.path()).unwrap_err());
    assert!(
        err.contains("does not match rd.rustlive.secrets.sha256"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("etc")).unwrap().count(),
        0
    );

    let (port, _) = serve(None, 200, body, 1);
    let cfg = Config::from_cmdline(&cmdline(port, &pin)).unwrap();
    assert_eq!(
        apply_in(&cfg, root.path()).unwrap(),
        Applied::Installed { files: 1 }
    );
}

#[test]
fn oversized_https_response_is_refused() {
    let pki = Pki::new();
    let (port, _) = serve(Some(pki.server_config(false)), 200, vec![b' '; 2 << 20], 1);
    let root = scratch_root();
    let err = rustlive::support::exit::report(
        &apply_in(&https_cfg(port, &pki, ""), root.path()).unwrap_err(),
    );
    assert!(err.contains("over the 1 MiB limit"), "{err}");
}

#[test]
fn the_binary_over_https_logs_neither_secret_nor_token() {
    let pki = Pki::new();
    let (cert, key) = pki.client_cert("node001", &pki);
    let (port, seen) = serve(Some(pki.server_config(true)), 200, own_bundle("/etc/k"), 1);
    let root = scratch_root();
    let cmdline = format!(
        "rd.rustlive.ca={} rd.rustlive.secrets.cert={} rd.rustlive.secrets.key={} rd.rustlive.debug",
        pki.ca_path().display(),
        cert.display(),
        key.display()
    );
    let (code, output) = run_rustlive(&[
        "inject-secrets",
        "--root",
        root.path().to_str().unwrap(),
        "--source",
        &format!("https://127.0.0.1:{port}/{{mac}}.json?token=t0k3n"),
        "--mac",
        "52:54:00:12:34:56",
        "--cmdline",
        &cmdline,
    ]);
    assert_eq!(code, 0, "{output}");
    assert_no_canary("https", &output);
    assert!(!output.contains("t0k3n"), "{output}");
    assert_eq!(
        seen.lock().unwrap()[0].0,
        "GET /52:54:00:12:34:56.json?token=t0k3n HTTP/1.1"
    );
    assert_eq!(
        std::fs::read(root.path().join("etc/k")).unwrap(),
        CANARY.as_bytes()
    );
}

/// Issue 9, item 15: a valid bundle that does not fit in the writable layer leaves nothing
/// behind — not its first files, not the directories it created — required or not.
#[test]
fn a_bundle_that_does_not_fit_writes_nothing() {
    if !is_root() {
        rustlive::support::testing::skip("mounting a small tmpfs as the new root needs root");
        return;
    }
    for required in [true, false] {
        let f = Fixture::new();
        let root = f.root();
        // A 256 KiB tmpfs stands in for a full overlay; it holds the fixture's files.
        let snapshot_files: Vec<(PathBuf, Vec<u8>)> =
            ["etc/passwd", "etc/group", "etc/ssh/ssh_host_ed25519_key"]
                .iter()
                .map(|p| (PathBuf::from(p), std::fs::read(root.join(p)).unwrap()))
                .collect();
        rustix::mount::mount(
            "tmpfs",
            &root,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            c"size=256k,mode=0755",
        )
        .unwrap();
        for (p, content) in &snapshot_files {
            std::fs::create_dir_all(root.join(p).parent().unwrap()).unwrap();
            std::fs::write(root.join(p), content).unwrap();
        }
        let before = f.snapshot();
        let big = vec![0x5au8; 400 << 10];
        let src = f.write_bundle(&bundle(&[
            entry(
                "/etc/munge/munge.key",
                "0400",
                "\"munge\"",
                "\"munge\"",
                b"small",
            ),
            entry("/var/lib/new/dir/big", "0600", "\"root\"", "\"root\"", &big),
        ]));
        let mut cfg = cfg_for(&src);
        cfg.secrets.required_opt = Some(required);
        let got = secrets::apply(
            &opts(&cfg),
            &root,
            &facts(),
            &Paths::under(f.tmp.path().join("no-default")),
            Deadline::NONE,
        );
        match (required, &got) {
            (true, Err(e)) => {
                let msg = rustlive::support::exit::report(e);
                assert!(msg.contains("nothing was written"), "{msg}");
            }
            (false, Ok(Applied::Skipped)) => {}
            other => panic!("required={required}: {other:?}"),
        }
        assert_eq!(
            f.snapshot(),
            before,
            "required={required}: the tree changed"
        );
        rustix::mount::unmount(&root, rustix::mount::UnmountFlags::empty()).unwrap();
    }
}

/// A fresh minisign key pair (unencrypted): the signing key and its `.pub` file.
fn key_pair() -> (rustlive::server::sign::SigningKey, String) {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let sk = rustlive::server::sign::SigningKey::from_text(
        &kp.sk.to_box(None).unwrap().into_string(),
        Path::new("test.key"),
        || unreachable!(),
    )
    .unwrap();
    let public = sk.public_file().unwrap();
    (sk, public)
}

/// Issue 18, item 1: sealing needs only the node's public EK, so anyone could seal a bundle
/// of their own. The node checks the boot server's signature against the keys of its
/// initramfs's /etc/rustlive/keys/sealed before it asks its TPM anything: a bundle signed by a
/// key it does not trust, an unsigned (version 1) one where keys are installed or sealing is
/// required, a changed signature or field, are refused with nothing written and exit code 6.
/// This node has no TPM at all: a bundle that got past the check ends in "no usable TPM".
#[test]
fn sealed_bundles_not_signed_by_a_trusted_key_are_refused_before_the_tpm() {
    use rustlive::tpm::envelope;
    let ek = rustlive::tpm::ek::EkPublic::from_pem(include_str!("../src/tpm/testdata/ek-rsa.pem"))
        .unwrap();
    let (site, site_pub) = key_pair();
    let (stranger, _) = key_pair();
    let plain = bundle(&[first()]);
    let signed = rustlive::server::seal::seal_signed(&plain, &ek, None, &site).unwrap();
    let by_stranger = rustlive::server::seal::seal_signed(&plain, &ek, None, &stranger).unwrap();
    let unsigned = envelope::seal_unsigned_v1(&plain, &ek, None).unwrap();
    let edit = |f: &dyn Fn(&mut envelope::Envelope)| {
        let mut env: envelope::Envelope = serde_json::from_slice(&signed).unwrap();
        f(&mut env);
        serde_json::to_vec(&env).unwrap()
    };
    let comment = edit(&|e| {
        e.signature = e
            .signature
            .clone()
            .map(|s| s.replace("timestamp:", "timestamp:1"));
    });
    let ciphertext = edit(&|e| {
        let other: envelope::Envelope = serde_json::from_slice(&by_stranger).unwrap();
        e.ciphertext = other.ciphertext;
    });
    let stranger_id = stranger.key_id().to_string();
    let site_id = site.key_id().to_string();
    let required = " rd.rustlive.secrets.sealed=required";
    // (case, bundle, the node trusts the site's key, extra options, words of the error)
    type Case<'a> = (&'a str, &'a [u8], bool, &'a str, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "another key, sealing required",
            &by_stranger,
            true,
            required,
            vec![&stranger_id, "is not a trusted key", "sealed=required"],
        ),
        (
            "another key",
            &by_stranger,
            true,
            "",
            vec![&stranger_id, "is not a trusted key", "holds trusted keys"],
        ),
        (
            "another key, sealing required, no keys",
            &by_stranger,
            false,
            required,
            vec![&stranger_id, "which holds none"],
        ),
        (
            "unsigned, sealing required",
            &unsigned,
            true,
            required,
            vec!["not signed", "sealed=required"],
        ),
        (
            "unsigned, sealing required, no keys",
            &unsigned,
            false,
            required,
            vec!["not signed", "which holds none"],
        ),
        (
            "unsigned, keys installed",
            &unsigned,
            true,
            "",
            vec!["not signed", "holds trusted keys"],
        ),
        (
            "trusted comment changed",
            &comment,
            true,
            required,
            vec![&site_id, "does not verify"],
        ),
        (
            "ciphertext swapped",
            &ciphertext,
            true,
            "",
            vec![&site_id, "does not verify"],
        ),
    ];
    for (case, sealed, trusts, extra, words) in cases {
        let f = Fixture::new();
        let initramfs = Paths::under(f.tmp.path().join("initramfs"));
        if trusts {
            let dir = initramfs.join(rustlive::secrets::trust::SEALED_KEYS_DIR);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("site.pub"), &site_pub).unwrap();
        }
        let before = f.snapshot();
        let cfg = Config::from_cmdline(&format!(
            "rd.rustlive.secrets={}{extra}",
            f.write_bundle(sealed)
        ))
        .unwrap();
        let err = secrets::apply(&opts(&cfg), &f.root(), &facts(), &initramfs, Deadline::NONE)
            .unwrap_err();
        let msg = rustlive::support::exit::report(&err);
        assert!(
            matches!(err, SecretsError::Unauthenticated { .. }),
            "{case}: {msg}"
        );
        assert_eq!(err.exit_code(), Exit::Secrets, "{case}");
        for w in words.iter().chain(&["refused, nothing was written"]) {
            assert!(msg.contains(w), "{case}: {w:?} not in {msg}");
        }
        assert_no_canary(case, &msg);
        assert_eq!(f.snapshot(), before, "{case}: the tree changed");
        assert!(!f.bundle_path().exists(), "{case}: the source is wiped");
    }

    // What passes the check goes on to the TPM, which this node lacks: a trusted signature,
    // and (the transition) an unsigned or unknown-key bundle on a node without keys that does
    // not require sealing.
    for (case, sealed, trusts) in [
        ("trusted", &signed, true),
        ("unsigned, no keys", &unsigned, false),
        ("another key, no keys", &by_stranger, false),
    ] {
        let f = Fixture::new();
        let initramfs = Paths::under(f.tmp.path().join("initramfs"));
        if trusts {
            let dir = initramfs.join(rustlive::secrets::trust::SEALED_KEYS_DIR);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("site.pub"), &site_pub).unwrap();
        }
        let cfg = cfg_for(&f.write_bundle(sealed));
        let err = secrets::apply(&opts(&cfg), &f.root(), &facts(), &initramfs, Deadline::NONE)
            .unwrap_err();
        assert!(matches!(err, SecretsError::NoTpm { .. }), "{case}: {err}");
    }
}
