//! Sealing against a real (software) TPM: swtpm started by each test on 127.0.0.1 with a
//! temporary state directory; tpm2-tools for the cross-checks. Needs `swtpm`, `swtpm-tools`
//! and `tpm2-tools` (scripts/install-deps.sh installs them).

mod support;

use rustlive::config::Config;
use rustlive::secrets::{self, Applied, NodeFacts, SecretsError};
use rustlive::server::sign::SigningKey;
use rustlive::support::paths::Paths;
use rustlive::support::testing::skip;
use rustlive::tpm::client::{ActivationObject, Tpm};
use rustlive::tpm::credential::{make_credential, Credential};
use rustlive::tpm::ek::EkPublic;
use rustlive::tpm::envelope::{self, EnvelopeError};
use rustlive::tpm::pcr::PcrPolicy;
use rustlive::tpm::transport::Swtpm;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PLAIN: &[u8] =
    br#"{"version": 1, "files": [{"path": "/etc/munge/munge.key", "content_base64": "c2VjcmV0"}]}"#;

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A swtpm on 127.0.0.1:port (commands) and port+1 (control), killed on drop.
struct SoftTpm {
    child: Child,
    port: u16,
    _state: tempfile::TempDir,
}

impl SoftTpm {
    /// `manufactured`: run swtpm_setup first (persistent EKs and EK certificates, as a real
    /// TPM ships); otherwise a bare TPM where rustlive creates the EK as a primary.
    fn start(manufactured: bool) -> Option<SoftTpm> {
        for tool in ["swtpm", "swtpm_setup", "tpm2_makecredential"] {
            if !have(tool) {
                skip(&format!(
                    "{tool} is not installed (scripts/install-deps.sh installs it)"
                ));
                return None;
            }
        }
        let state = tempfile::tempdir().unwrap();
        if manufactured {
            support::run_ok(
                Command::new("swtpm_setup")
                    .args([
                        "--tpm2",
                        "--create-ek-cert",
                        "--lock-nvram",
                        "--overwrite",
                        "--tpmstate",
                    ])
                    .arg(state.path())
                    .args(["--config", "/etc/swtpm_setup.conf"]),
            );
        }
        // Tests run in parallel threads: without the lock two of them can be handed the same
        // free port, and the one whose swtpm then fails to bind talks to the other's TPM.
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one_at_a_time = STARTING.lock().unwrap_or_else(|e| e.into_inner());
        // A port found free can still be taken, before swtpm binds it, by another test's
        // outgoing connection (same ephemeral range): swtpm then exits, and a new pair is tried.
        let mut attempts = 0;
        let (mut child, port) = loop {
            attempts += 1;
            let port = free_port_pair();
            let mut child = Command::new("swtpm")
                .args(["socket", "--tpm2", "--flags", "not-need-init", "--tpmstate"])
                .arg(format!("dir={}", state.path().display()))
                .args([
                    "--server",
                    &format!("type=tcp,port={port},bindaddr=127.0.0.1"),
                ])
                .args([
                    "--ctrl",
                    &format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            // Watched in /proc/net/tcp rather than probed with a connection: under load swtpm
            // could still be closing the probe when the next connection arrived, and reset it.
            while !(listening(port) && listening(port + 1)) && child.try_wait().unwrap().is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    panic!("swtpm did not listen on {port}");
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if child.try_wait().unwrap().is_none() {
                break (child, port);
            }
            assert!(
                attempts < 5,
                "swtpm exited {attempts} times before listening"
            );
        };
        assert!(child.try_wait().unwrap().is_none());
        let t = SoftTpm {
            child,
            port,
            _state: state,
        };
        let mut tpm = t.connect();
        tpm.startup().unwrap();
        Some(t)
    }

    fn connect(&self) -> Tpm {
        Tpm::new(Box::new(
            Swtpm::connect(&format!("127.0.0.1:{}", self.port)).unwrap(),
        ))
    }

    fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    fn tool(&self, args: &[&str], dir: &Path) -> String {
        let out = support::run_ok(
            Command::new(args[0])
                .args(&args[1..])
                .env("TPM2TOOLS_TCTI", self.tcti())
                .current_dir(dir),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for SoftTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether something listens on 127.0.0.1:`port` (a LISTEN row, state 0A, in /proc/net/tcp).
fn listening(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp").is_ok_and(|t| {
        t.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&want.as_str()) && f.get(3) == Some(&"0A")
        })
    })
}

fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no free pair of ports");
}

/// A fresh minisign key pair (unencrypted): the signing key and its `.pub` file.
fn key_pair() -> (SigningKey, String) {
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let sk = SigningKey::from_text(
        &kp.sk.to_box(None).unwrap().into_string(),
        Path::new("test.key"),
        || unreachable!(),
    )
    .unwrap();
    let public = sk.public_file().unwrap();
    (sk, public)
}

/// The boot server's key of these tests.
fn site_key() -> &'static (SigningKey, String) {
    static KEY: std::sync::OnceLock<(SigningKey, String)> = std::sync::OnceLock::new();
    KEY.get_or_init(key_pair)
}

/// Sealed and signed as `rustlive bundle seal` does it.
fn seal(plain: &[u8], ek: &EkPublic, pcr: Option<&PcrPolicy>) -> Vec<u8> {
    rustlive::server::seal::seal_signed(plain, ek, pcr, &site_key().0).unwrap()
}

/// Parsed and opened with the TPM (the signature is the secrets stage's business).
fn open(sealed: &[u8], tpm: &mut Tpm) -> Result<zeroize::Zeroizing<Vec<u8>>, EnvelopeError> {
    envelope::open(&envelope::parse(sealed)?, tpm)
}

/// Enrollment as `rustlive tpm ek` does it, then the PEM round trip the boot server sees.
fn enroll(t: &SoftTpm, rsa: bool) -> EkPublic {
    let mut tpm = t.connect();
    let ek = tpm.ek(rsa).unwrap();
    tpm.release(&ek);
    EkPublic::from_pem(&ek.public.to_pem()).unwrap()
}

#[test]
fn enroll_seal_open_rsa_and_ecc_on_a_bare_tpm() {
    let Some(t) = SoftTpm::start(false) else {
        return;
    };
    for rsa in [true, false] {
        let ek = enroll(&t, rsa);
        let sealed = seal(PLAIN, &ek, None);
        let plain = open(&sealed, &mut t.connect()).unwrap();
        assert_eq!(&plain[..], PLAIN, "rsa={rsa}");
    }
}

#[test]
fn persistent_ek_and_its_certificate_are_used() {
    let Some(t) = SoftTpm::start(true) else {
        return;
    };
    let mut tpm = t.connect();
    let ek = tpm.ek(true).unwrap();
    assert!(
        !ek.transient,
        "swtpm_setup's EK at 0x81010001 is the default template"
    );
    let cert = tpm
        .nv_read_all(0x01c0_0002)
        .unwrap()
        .expect("an EK certificate");
    let from_cert = rustlive::tpm::ek_from_certificate(&cert).unwrap();
    assert_eq!(from_cert, ek.public);
    drop(tpm);
    let sealed = seal(PLAIN, &from_cert, None);
    assert_eq!(&open(&sealed, &mut t.connect()).unwrap()[..], PLAIN);
}

#[test]
fn another_tpm_and_flipped_bytes_are_refused() {
    let Some(a) = SoftTpm::start(false) else {
        return;
    };
    let Some(b) = SoftTpm::start(false) else {
        return;
    };
    let sealed = seal(PLAIN, &enroll(&a, true), None);

    let err = open(&sealed, &mut b.connect()).unwrap_err();
    assert!(matches!(err, EnvelopeError::OtherTpm { .. }), "{err}");
    assert!(err.to_string().contains("sealed to another TPM"));

    // A flipped byte in the ciphertext: the TPM releases the key, GCM refuses the payload.
    let mut env: envelope::Envelope = serde_json::from_slice(&sealed).unwrap();
    let mut ct = base64_decode(&env.ciphertext);
    ct[3] ^= 0x10;
    env.ciphertext = base64_encode(&ct);
    let err = open(&serde_json::to_vec(&env).unwrap(), &mut a.connect()).unwrap_err();
    assert!(matches!(err, EnvelopeError::Tampered), "{err}");

    // A flipped byte in the credential's encrypted identity: the TPM's integrity check refuses.
    let mut env: envelope::Envelope = serde_json::from_slice(&sealed).unwrap();
    let mut cred = base64_decode(&env.credential);
    let n = cred.len();
    cred[n - 300] ^= 0x01; // inside the TPM2B_ID_OBJECT (the 256-byte secret follows it)
    env.credential = base64_encode(&cred);
    let err = open(&serde_json::to_vec(&env).unwrap(), &mut a.connect()).unwrap_err();
    assert!(matches!(err, EnvelopeError::Tampered), "{err}");

    // A truncated bundle.
    let err = open(&sealed[..sealed.len() - 40], &mut a.connect()).unwrap_err();
    assert!(matches!(err, EnvelopeError::Malformed(_)), "{err}");

    // The untouched bundle still opens: the refusals left the TPM usable.
    assert_eq!(&open(&sealed, &mut a.connect()).unwrap()[..], PLAIN);
}

/// tpm2_makecredential (tpm2-tools) binds a key to rustlive's activation object; rustlive's
/// ActivateCredential on the TPM opens it.
#[test]
fn tpm2_makecredential_output_opens_with_rustlive() {
    let Some(t) = SoftTpm::start(false) else {
        return;
    };
    let ek = enroll(&t, true);
    let dir = tempfile::tempdir().unwrap();
    let mut tss = (ek.public_area().len() as u16).to_be_bytes().to_vec();
    tss.extend_from_slice(&ek.public_area());
    std::fs::write(dir.path().join("ek.tss"), tss).unwrap();
    let key = [0x5au8; 32];
    std::fs::write(dir.path().join("key"), key).unwrap();
    let name: String = ActivationObject::name()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    t.tool(
        &[
            "tpm2_makecredential",
            "-T",
            "none",
            "-e",
            "ek.tss",
            "-s",
            "key",
            "-n",
            &name,
            "-o",
            "cred",
        ],
        dir.path(),
    );
    let cred = Credential::from_file(&std::fs::read(dir.path().join("cred")).unwrap()).unwrap();
    let mut tpm = t.connect();
    let loaded = tpm.ek(true).unwrap();
    let got = tpm.activate(&loaded, &cred).unwrap();
    tpm.release(&loaded);
    assert_eq!(&got[..], &key);
}

/// rustlive's software MakeCredential, bound to an object tpm2-tools loads, opened by
/// tpm2_activatecredential on the TPM.
#[test]
fn rustlive_credential_opens_with_tpm2_activatecredential() {
    let Some(t) = SoftTpm::start(true) else {
        return;
    };
    let ek = enroll(&t, true);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("aes.key"), [7u8; 16]).unwrap();
    let out = t.tool(
        &[
            "tpm2_loadexternal",
            "-C",
            "n",
            "-G",
            "aes",
            "-r",
            "aes.key",
            "-c",
            "obj.ctx",
        ],
        dir.path(),
    );
    let name_hex = out
        .lines()
        .find_map(|l| l.strip_prefix("name: "))
        .expect("tpm2_loadexternal prints the name")
        .trim()
        .to_string();
    let name: Vec<u8> = (0..name_hex.len() / 2)
        .map(|i| u8::from_str_radix(&name_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let secret = b"credential made by rustlive 1234";
    let cred = make_credential(&ek, &name, secret).unwrap();
    std::fs::write(dir.path().join("cred"), cred.to_file()).unwrap();
    t.tool(
        &["tpm2_startauthsession", "--policy-session", "-S", "s.ctx"],
        dir.path(),
    );
    t.tool(&["tpm2_policysecret", "-S", "s.ctx", "-c", "e"], dir.path());
    t.tool(
        &[
            "tpm2_activatecredential",
            "-c",
            "obj.ctx",
            "-C",
            "0x81010001",
            "-i",
            "cred",
            "-o",
            "out",
            "-P",
            "session:s.ctx",
        ],
        dir.path(),
    );
    assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), secret);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

const CANARY: &str = "CANARY-sealed-munge-key-7f3a";

/// A bundle any user can apply: one file owned by the current user.
fn own_bundle() -> Vec<u8> {
    use base64::Engine as _;
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    format!(
        r#"{{"version": 1, "files": [{{"path": "/etc/munge/munge.key", "mode": "0400", "owner": {uid}, "group": {gid}, "content_base64": "{}"}}]}}"#,
        base64::engine::general_purpose::STANDARD.encode(CANARY)
    )
    .into_bytes()
}

fn scratch_root() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir(t.path().join("etc")).unwrap();
    t
}

/// The secrets stage on a node whose initramfs trusts the site's key.
fn apply_in(cfg: &str, root: &Path) -> Result<Applied, SecretsError> {
    apply_trusting(cfg, root, &[&site_key().1])
}

/// The secrets stage on a node whose initramfs holds these `.pub` files in
/// /etc/rustlive/keys/sealed (none: the directory is absent).
fn apply_trusting(cfg: &str, root: &Path, keys: &[&str]) -> Result<Applied, SecretsError> {
    let facts = NodeFacts {
        mac: Some("52:54:00:12:34:56".into()),
        ..NodeFacts::default()
    };
    let cfg = Config::from_cmdline(cfg).unwrap();
    let initramfs = Paths::under(root.join("no-default"));
    let dir = initramfs.join(rustlive::secrets::trust::SEALED_KEYS_DIR);
    for (i, k) in keys.iter().enumerate() {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("k{i}.pub")), k).unwrap();
    }
    secrets::apply(
        &rustlive::boot::options::secrets(&cfg, &rustlive::boot::options::transfer(&cfg)),
        root,
        &facts,
        &initramfs,
        rustlive::support::deadline::Deadline::NONE,
    )
}

/// RUSTLIVE_TPM is process-wide: the tests that set it take turns.
fn tpm_env() -> std::sync::MutexGuard<'static, ()> {
    static TPM_ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TPM_ENV.lock().unwrap_or_else(|e| e.into_inner())
}

/// The boot's secrets stage: a bundle sealed to TPM A, served over plain http by MAC, installs
/// on the node with TPM A; the node with TPM B writes nothing and says why; an unsealed bundle
/// is refused under rd.rustlive.secrets.sealed=required; a sealed bundle with no TPM is a
/// clear failure.
#[test]
fn boot_installs_a_sealed_bundle_over_plain_http_only_on_its_node() {
    let _env = tpm_env();
    let Some(a) = SoftTpm::start(false) else {
        return;
    };
    let Some(b) = SoftTpm::start(false) else {
        return;
    };
    let sealed = seal(&own_bundle(), &enroll(&a, false), None);
    assert!(!String::from_utf8_lossy(&sealed).contains(CANARY));
    let body = sealed.clone();
    let server = support::http::Server::start(move |req| {
        if req.path == "/nodes/52:54:00:12:34:56.sealed" {
            support::http::Reply::ok(&body)
        } else {
            support::http::Reply::status(404)
        }
    });
    // Unpinned plain http is for sealed bundles only: config refuses it unless they are required.
    let plain_http = format!(
        "rd.rustlive.secrets={} rd.rustlive.retries=0",
        server.url("/nodes/{mac}.sealed")
    );
    let e = Config::from_cmdline(&plain_http).unwrap_err();
    assert_eq!(e.option, "rd.rustlive.secrets");
    let cmdline = format!("{plain_http} rd.rustlive.secrets.sealed=required");

    std::env::set_var("RUSTLIVE_TPM", format!("swtpm:127.0.0.1:{}", a.port));
    let root = scratch_root();
    assert_eq!(
        apply_in(&cmdline, root.path()).unwrap(),
        Applied::Installed { files: 1 }
    );
    let key = root.path().join("etc/munge/munge.key");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), CANARY);

    // The same bundle on the node with the other TPM.
    std::env::set_var("RUSTLIVE_TPM", format!("swtpm:127.0.0.1:{}", b.port));
    let root = scratch_root();
    let err = apply_in(&cmdline, root.path()).unwrap_err();
    let msg = rustlive::support::exit::report(&err);
    assert!(matches!(err, SecretsError::Sealed { .. }), "{msg}");
    assert!(
        msg.contains("sealed to another TPM") && msg.contains("nothing was written"),
        "{msg}"
    );
    assert!(!msg.contains(CANARY));
    assert_eq!(
        std::fs::read_dir(root.path().join("etc")).unwrap().count(),
        0
    );

    // An unsealed bundle when sealing is required: refused before any TPM work.
    let plain = root.path().join("plain.json");
    std::fs::write(&plain, own_bundle()).unwrap();
    let err = apply_in(
        &format!(
            "rd.rustlive.secrets=file://{} rd.rustlive.secrets.sealed=required",
            plain.display()
        ),
        root.path(),
    )
    .unwrap_err();
    assert!(matches!(err, SecretsError::Unsealed { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(root.path().join("etc")).unwrap().count(),
        0
    );
    assert!(
        !plain.exists(),
        "the initramfs copy is wiped after a refusal too"
    );

    // A sealed bundle and no TPM at all.
    let dead = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::env::set_var("RUSTLIVE_TPM", format!("swtpm:127.0.0.1:{dead}"));
    let err = apply_in(&cmdline, root.path()).unwrap_err();
    assert!(matches!(err, SecretsError::NoTpm { .. }), "{err}");
    assert_eq!(err.exit_code(), rustlive::support::exit::Exit::Secrets);

    // With sealing required, the sealed bundle still installs on its node.
    std::env::set_var("RUSTLIVE_TPM", format!("swtpm:127.0.0.1:{}", a.port));
    let root = scratch_root();
    let got = apply_in(
        &format!("{cmdline} rd.rustlive.secrets.sealed=required"),
        root.path(),
    );
    assert_eq!(got.unwrap(), Applied::Installed { files: 1 });
    std::env::remove_var("RUSTLIVE_TPM");
}

/// Issue 18, item 1: the node checks the boot server's signature before it asks its TPM
/// anything. On the node the bundle is sealed to: signed by the trusted key, installed; signed by
/// a key the node does not trust, unsigned (version 1) or with a signature changed, refused with
/// nothing written, with or without rd.rustlive.secrets.sealed=required; and the transition: a
/// node whose initramfs holds no sealed-bundle key still opens an unsigned or unknown-key
/// bundle (with a warning) unless sealing is required.
#[test]
fn only_bundles_signed_by_a_trusted_key_open() {
    let _env = tpm_env();
    let Some(a) = SoftTpm::start(false) else {
        return;
    };
    std::env::set_var("RUSTLIVE_TPM", format!("swtpm:127.0.0.1:{}", a.port));
    let ek = enroll(&a, true);
    let (stranger, stranger_pub) = key_pair();
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        format!("rd.rustlive.secrets=file://{}", p.display())
    };
    let signed = seal(&own_bundle(), &ek, None);
    let by_stranger =
        rustlive::server::seal::seal_signed(&own_bundle(), &ek, None, &stranger).unwrap();
    let unsigned = envelope::seal_unsigned_v1(&own_bundle(), &ek, None).unwrap();
    let mut env: envelope::Envelope = serde_json::from_slice(&signed).unwrap();
    env.signature = Some(env.signature.unwrap().replace("timestamp:", "timestamp:9"));
    let tampered = serde_json::to_vec(&env).unwrap();

    let site = site_key().1.as_str();
    let required = " rd.rustlive.secrets.sealed=required";
    for (case, bundle, keys, extra, ok) in [
        ("trusted, required", &signed, vec![site], required, true),
        ("trusted", &signed, vec![site], "", true),
        (
            "trusted among others",
            &signed,
            vec![stranger_pub.as_str(), site],
            required,
            true,
        ),
        (
            "untrusted key, required",
            &by_stranger,
            vec![site],
            required,
            false,
        ),
        ("untrusted key", &by_stranger, vec![site], "", false),
        (
            "untrusted key, no keys, required",
            &by_stranger,
            vec![],
            required,
            false,
        ),
        ("unsigned, required", &unsigned, vec![site], required, false),
        (
            "unsigned, no keys, required",
            &unsigned,
            vec![],
            required,
            false,
        ),
        ("unsigned, keys installed", &unsigned, vec![site], "", false),
        ("tampered signature", &tampered, vec![site], "", false),
        (
            "tampered signature, required",
            &tampered,
            vec![site],
            required,
            false,
        ),
        // The transition: no key in the initramfs, sealing not required.
        ("unsigned, no keys", &unsigned, vec![], "", true),
        ("unknown key, no keys", &by_stranger, vec![], "", true),
    ] {
        let root = scratch_root();
        let cmdline = format!("{}{extra}", file("b.sealed", bundle));
        let got = apply_trusting(&cmdline, root.path(), &keys);
        let key = root.path().join("etc/munge/munge.key");
        if ok {
            assert_eq!(got.unwrap(), Applied::Installed { files: 1 }, "{case}");
            assert_eq!(std::fs::read_to_string(&key).unwrap(), CANARY, "{case}");
        } else {
            let err = got.unwrap_err();
            let msg = rustlive::support::exit::report(&err);
            assert!(
                matches!(err, SecretsError::Unauthenticated { .. }),
                "{case}: {msg}"
            );
            assert_eq!(err.exit_code(), rustlive::support::exit::Exit::Secrets);
            assert!(msg.contains("nothing was written"), "{case}: {msg}");
            assert!(!msg.contains(CANARY));
            assert_eq!(
                std::fs::read_dir(root.path().join("etc")).unwrap().count(),
                0,
                "{case}: something was written"
            );
        }
    }
    std::env::remove_var("RUSTLIVE_TPM");
}

/// A PCR policy: sealed to the node's current PCR 7 (as `tpm ek` reads it) opens; sealed to
/// another value, or opened after PCR 7 was extended, is refused as a PCR mismatch.
#[test]
fn pcr_policy_opens_only_with_the_sealed_values() {
    let Some(t) = SoftTpm::start(false) else {
        return;
    };
    let ek = enroll(&t, true);
    let mut tpm = t.connect();
    let pcrs = tpm.pcr_read(&[0, 7]).unwrap();
    drop(tpm);
    assert_eq!(pcrs.len(), 2);
    let spec: Vec<String> = pcrs
        .iter()
        .map(|(n, v)| {
            format!(
                "{n}={}",
                v.iter().map(|b| format!("{b:02x}")).collect::<String>()
            )
        })
        .collect();
    let good = PcrPolicy::parse(&spec.join(",")).unwrap();
    let sealed = seal(PLAIN, &ek, Some(&good));
    assert_eq!(&open(&sealed, &mut t.connect()).unwrap()[..], PLAIN);

    let wrong = PcrPolicy::parse(&format!("7={}", "11".repeat(32))).unwrap();
    let sealed_wrong = seal(PLAIN, &ek, Some(&wrong));
    let err = open(&sealed_wrong, &mut t.connect()).unwrap_err();
    assert!(matches!(err, EnvelopeError::PcrMismatch), "{err}");

    // The node boots into something else: PCR 7 changes.
    let dir = tempfile::tempdir().unwrap();
    t.tool(
        &["tpm2_pcrextend", &format!("7:sha256={}", "22".repeat(32))],
        dir.path(),
    );
    let err = open(&sealed, &mut t.connect()).unwrap_err();
    assert!(matches!(err, EnvelopeError::PcrMismatch), "{err}");
    assert!(err.to_string().contains("PCRs differ"));
}

/// `rustlive bundle build-all --seal-to EK_DIR`: each node's outputs open only with its own TPM,
/// and hold exactly what the plain build would.
#[test]
fn build_all_seals_each_node_to_its_own_ek() {
    let (Some(a), Some(b)) = (SoftTpm::start(false), SoftTpm::start(false)) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let (nodes, www, eks) = (
        t.path().join("nodes"),
        t.path().join("www"),
        t.path().join("eks"),
    );
    for (host, mac, key) in [
        ("n1", "52:54:00:aa:00:01", "key one"),
        ("n2", "52:54:00:aa:00:02", "key two"),
    ] {
        std::fs::create_dir_all(nodes.join(host).join("etc/munge")).unwrap();
        std::fs::write(nodes.join(host).join("etc/munge/munge.key"), key).unwrap();
        std::fs::write(
            nodes.join(host).join("rustlive-bundle.json"),
            format!(r#"{{"macs": ["{mac}"]}}"#),
        )
        .unwrap();
    }
    std::fs::create_dir_all(&eks).unwrap();
    std::fs::write(eks.join("n1.pem"), enroll(&a, true).to_pem()).unwrap();
    std::fs::write(eks.join("n2.pem"), enroll(&b, false).to_pem()).unwrap();
    let opts = rustlive::server::bundle::build::Options::default();
    let sealing = rustlive::server::bundle::all::Sealing {
        ek_dir: eks,
        pcr: None,
        signer: &site_key().0,
    };
    let r = rustlive::server::bundle::all::build_all(&nodes, &www, &opts, None, Some(&sealing))
        .unwrap();
    assert_eq!(r.written, ["n1", "n2"]);
    for (host, mac, tpm, other) in [
        ("n1", "52:54:00:aa:00:01", &a, &b),
        ("n2", "52:54:00:aa:00:02", &b, &a),
    ] {
        let sealed = std::fs::read(www.join(format!("by-mac/{mac}.json"))).unwrap();
        let plain = open(&sealed, &mut tpm.connect()).unwrap();
        let want = rustlive::server::bundle::build::build(&nodes.join(host), &opts).unwrap();
        assert_eq!(&plain[..], &want.json[..], "{host}");
        let err = open(&sealed, &mut other.connect()).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::OtherTpm { .. }),
            "{host}: {err}"
        );
    }
}

/// Issue 21, item 4: what `rustlive tpm ek` prints on the node goes, saved unedited, straight
/// into `rustlive bundle seal --ek FILE` and into `build-all --seal-to EK_DIR` as
/// EK_DIR/HOSTNAME.ek, text or `--json`, from a manufactured TPM (persistent EK and its
/// certificate) and from a bare one (EKs created as primaries); each bundle opens only on the
/// TPM that printed the file.
#[test]
fn tpm_ek_output_goes_unedited_into_seal_and_build_all() {
    let (Some(a), Some(b)) = (SoftTpm::start(true), SoftTpm::start(false)) else {
        return;
    };
    let bin = env!("CARGO_BIN_EXE_rustlive");
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // What the node prints, as the shell redirect saves it.
    let tpm_ek = |tpm: &SoftTpm, json: bool| -> Vec<u8> {
        let mut cmd = Command::new(bin);
        cmd.args(["tpm", "ek"])
            .env("RUSTLIVE_TPM", format!("swtpm:127.0.0.1:{}", tpm.port));
        if json {
            cmd.arg("--json");
        }
        support::run_ok(&mut cmd).stdout
    };
    let a_text = tpm_ek(&a, false);
    let b_text = tpm_ek(&b, false);
    let b_json = tpm_ek(&b, true);
    let shown = String::from_utf8_lossy(&a_text);
    assert_eq!(
        shown.matches("-----BEGIN PUBLIC KEY-----").count(),
        2,
        "both EKs: {shown}"
    );
    assert!(shown.contains("-----BEGIN CERTIFICATE-----"), "{shown}");

    // The boot server's signing key, a plain bundle.
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let key = dir.join("sealing.key");
    std::fs::write(&key, kp.sk.to_box(None).unwrap().into_string()).unwrap();
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let plain = dir.join("n1.json");
    std::fs::write(&plain, PLAIN).unwrap();

    // bundle seal --ek, one file per output kind of `tpm ek`.
    for (name, bytes, mine, other) in [
        ("a.ek", &a_text, &a, &b),
        ("b.ek", &b_text, &b, &a),
        ("b.json", &b_json, &b, &a),
    ] {
        let ek = dir.join(name);
        std::fs::write(&ek, bytes).unwrap();
        let out = dir.join(format!("{name}.sealed"));
        support::run_ok(
            Command::new(bin)
                .args(["bundle", "seal", "--ek"])
                .arg(&ek)
                .arg("--sign-key")
                .arg(&key)
                .arg(&plain)
                .arg("-o")
                .arg(&out),
        );
        let sealed = std::fs::read(&out).unwrap();
        assert_eq!(
            &open(&sealed, &mut mine.connect()).unwrap()[..],
            PLAIN,
            "{name}"
        );
        let err = open(&sealed, &mut other.connect()).unwrap_err();
        assert!(
            matches!(err, EnvelopeError::OtherTpm { .. }),
            "{name}: {err}"
        );
    }

    // build-all --seal-to: EK_DIR/HOSTNAME.ek as saved from the node.
    let (nodes, www, eks) = (dir.join("nodes"), dir.join("www"), dir.join("eks"));
    for (host, mac, secret) in [
        ("n1", "52:54:00:aa:00:01", "key one"),
        ("n2", "52:54:00:aa:00:02", "key two"),
    ] {
        std::fs::create_dir_all(nodes.join(host).join("etc/munge")).unwrap();
        std::fs::write(nodes.join(host).join("etc/munge/munge.key"), secret).unwrap();
        std::fs::write(
            nodes.join(host).join("rustlive-bundle.json"),
            format!(r#"{{"macs": ["{mac}"]}}"#),
        )
        .unwrap();
    }
    std::fs::create_dir_all(&eks).unwrap();
    std::fs::write(eks.join("n1.ek"), &a_text).unwrap();
    std::fs::write(eks.join("n2.ek"), &b_json).unwrap();
    let build_all = || {
        Command::new(bin)
            .args(["bundle", "build-all"])
            .arg(&nodes)
            .arg("--seal-to")
            .arg(&eks)
            .arg("--sign-key")
            .arg(&key)
            .arg("-o")
            .arg(&www)
            .output()
            .unwrap()
    };
    let out = build_all();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let opts = rustlive::server::bundle::build::Options::default();
    for (host, mac, tpm, other) in [
        ("n1", "52:54:00:aa:00:01", &a, &b),
        ("n2", "52:54:00:aa:00:02", &b, &a),
    ] {
        let sealed = std::fs::read(www.join(format!("by-mac/{mac}.json"))).unwrap();
        let want = rustlive::server::bundle::build::build(&nodes.join(host), &opts).unwrap();
        assert_eq!(
            &open(&sealed, &mut tpm.connect()).unwrap()[..],
            &want.json[..],
            "{host}"
        );
        assert!(open(&sealed, &mut other.connect()).is_err(), "{host}");
    }

    // A node whose EK was never saved: the refusal names the file to save.
    std::fs::remove_file(eks.join("n2.ek")).unwrap();
    let out = build_all();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("n2.ek") && err.contains("rustlive tpm ek"),
        "{err}"
    );
}
