//! `rustlive fetch` and `rustlive publish` against a fake OCI registry with a hostile token
//! server and a hostile storage host: credentials offered to a third party, a password asked
//! for over plain http, a token in the reference, control bytes in every field the registry
//! controls, token servers that never answer, blobs longer than their descriptor.
//!
//! Every case runs the real binary and asserts what `tests/hostile_fetch.rs` does: no panic,
//! done within the deadline plus slack, no leftover file, no credential, userinfo or query
//! string in the output, no control byte on stderr but the line ends; then the exit code.

mod support;

use serde_json::json;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::http::{Fault, Reply, Request, Server};
use support::{random_bytes, sha256_hex};

/// Slack over the deadline for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);
const USER: &str = "alice";
const PASSWORD: &str = "hunter2";
/// The registry's own token: it must reach the registry only.
const TOKEN: &str = "regtok-sekrit";
/// Words that must never be printed: the password, the token, a query's secret.
const SECRETS: [&str; 3] = [PASSWORD, TOKEN, "sekrit"];
/// What a registry puts in the fields it controls: clear the screen, return to the line's
/// start, NUL, bell, CSI, then a forged line.
const EVIL: &str = "x\u{1b}[2J\u{1b}[H\r\u{0}\u{7}\u{9b}31m\u{7f}\nrustlive: error: forged";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn basic() -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"))
    )
}

struct Run {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

/// Runs `rustlive ARGS`, killing it (and failing) long after `limit`.
fn rustlive(args: &[&str], limit: Duration) -> Run {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .args(args)
        .env("RUSTLIVE_LOG", "stderr")
        .env_remove("REGISTRY_AUTH_FILE")
        .env("DOCKER_CONFIG", "/nonexistent")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        s
    });
    let hard = limit + secs(30);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st);
        }
        if t.elapsed() > hard {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = t.elapsed();
    let raw = reader.join().unwrap();
    let stderr = String::from_utf8_lossy(&raw).into_owned();
    eprintln!(
        "rustlive {}: {status:?} in {elapsed:?}\n{stderr}",
        args.join(" ")
    );
    let Some(status) = status else {
        panic!("still running after {hard:?}, killed");
    };
    // Nothing but printable text and line ends reaches the terminal.
    let bad: Vec<u8> = raw
        .iter()
        .copied()
        .filter(|&b| (b < 0x20 && b != b'\n') || b == 0x7f)
        .collect();
    assert!(
        bad.is_empty(),
        "control bytes {bad:?} on stderr:\n{stderr:?}"
    );
    for c in stderr.chars() {
        assert!(
            !c.is_control() || c == '\n',
            "control character {c:?} on stderr:\n{stderr:?}"
        );
    }
    Run {
        code: status.code(),
        stderr,
        elapsed,
    }
}

fn part(dest: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", dest.display()))
}

/// The checks every case makes; `limit` is the deadline the command was given.
#[track_caller]
fn common(r: &Run, dest: Option<&Path>, limit: Duration) {
    assert_ne!(r.code, Some(134), "panicked:\n{}", r.stderr);
    assert!(r.code.is_some(), "killed by a signal:\n{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.elapsed <= limit + SLACK,
        "took {:?}, limit {limit:?}:\n{}",
        r.elapsed,
        r.stderr
    );
    for s in SECRETS.iter().copied().chain([basic().as_str()]) {
        assert!(!r.stderr.contains(s), "leaked {s}:\n{}", r.stderr);
    }
    if let Some(d) = dest {
        assert!(!part(d).exists(), "{} left behind", part(d).display());
    }
}

#[track_caller]
fn failed(r: &Run, dest: Option<&Path>, limit: Duration, code: i32) {
    common(r, dest, limit);
    assert_eq!(r.code, Some(code), "{}", r.stderr);
    if let Some(d) = dest {
        assert!(!d.exists(), "{} must not exist", d.display());
    }
}

/// A destination in a tmpfs, as the image tmpfs is at boot.
fn dest() -> (tempfile::TempDir, PathBuf) {
    let shm = Path::new("/dev/shm");
    let d = if shm.is_dir() {
        tempfile::tempdir_in(shm).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    let p = d.path().join("img");
    (d, p)
}

/// A credentials file with the password for `host`.
fn credentials(dir: &Path, host: &str) -> PathBuf {
    use base64::Engine as _;
    let p = dir.join("auth.json");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    std::fs::write(&p, json!({"auths": {host: {"auth": auth}}}).to_string()).unwrap();
    p
}

/// `rustlive fetch` of `reference` into `dest` with the credentials and `extra` arguments.
fn fetch(reference: &str, dest: &Path, creds: &Path, extra: &[&str], limit: Duration) -> Run {
    let mut args = vec![
        "fetch",
        "-o",
        dest.to_str().unwrap(),
        "--registry-auth",
        creds.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    args.push(reference);
    rustlive(&args, limit)
}

/// A fake squashfs and a manifest with it as the one rustlive layer (`size` as given).
fn manifest_for(img: &[u8], size: usize) -> (Vec<u8>, String) {
    let m = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(b"{}")), "size": 2},
        "layers": [{"mediaType": "application/vnd.rustlive.image.v1.squashfs",
                    "digest": format!("sha256:{}", sha256_hex(img)), "size": size}],
    }))
    .unwrap();
    let d = format!("sha256:{}", sha256_hex(&m));
    (m, d)
}

fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut b = random_bytes(len, seed);
    b[..4].copy_from_slice(b"hsqs");
    b
}

/// The port of the server a request reached (from its Host header).
fn own_port(req: &Request) -> String {
    req.header("host")
        .and_then(|h| h.rsplit(':').next())
        .unwrap_or("0")
        .to_string()
}

/// A registry that wants its own token (`Bearer TOKEN`, from `/token` on itself, for the
/// password), serves `manifest` and answers blob requests with `blob`.
fn registry(
    manifest: Vec<u8>,
    realm: impl Fn(&Request) -> String + Send + Sync + 'static,
    blob: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> Server {
    let want = basic();
    Server::start(move |req| {
        if req.path.starts_with("/token") {
            return if req.header("authorization") == Some(want.as_str()) {
                Reply::ok(json!({"token": TOKEN}).to_string().as_bytes())
            } else {
                Reply::status(401)
            };
        }
        if req.header("authorization") != Some(format!("Bearer {TOKEN}").as_str()) {
            return Reply::status(401).header(
                "WWW-Authenticate",
                &format!(r#"Bearer realm="{}",service="reg""#, realm(req)),
            );
        }
        if req.path.contains("/manifests/") {
            return Reply::ok(&manifest)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json");
        }
        blob(req)
    })
}

/// Item 2 of the hardening round: a registry redirects the blob to a storage host, which
/// answers 401 naming a token server of its choice. Neither the registry's password nor its
/// token may go there (nor to the storage host); the attempt fails, exit 3.
#[test]
fn a_storage_hosts_401_gets_neither_the_password_nor_the_token() {
    let img = image(64 << 10, 1);
    let (manifest, digest) = manifest_for(&img, img.len());
    // The token server the storage host names: it must never be asked.
    let evil = Server::start(|_| Reply::ok(br#"{"token":"harvested"}"#));
    let evil_addr = evil.addr;
    let storage = Server::start(move |_| {
        Reply::status(401).header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="http://{evil_addr}/token",service="storage""#),
        )
    });
    let storage_addr = storage.addr;
    let reg = registry(
        manifest,
        |req| format!("http://127.0.0.1:{}/token", own_port(req)),
        move |_| {
            Reply::status(307).header(
                "Location",
                &format!("http://{storage_addr}/bucket/blob?X-Amz-Signature=sekrit"),
            )
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials(dir.path(), &reg.addr.to_string());
    let (_d, out) = dest();
    let r = fetch(
        &format!("oci+http://{}/site/root@{digest}", reg.addr),
        &out,
        &creds,
        &["--timeout", "20"],
        secs(20),
    );
    failed(&r, Some(&out), secs(20), 3);
    assert!(
        evil.requests().is_empty(),
        "the storage host's token server was asked: {:?}",
        evil.requests()
    );
    let seen = storage.requests();
    assert!(!seen.is_empty(), "the blob was never asked for");
    for q in &seen {
        assert_eq!(q.header("authorization"), None, "{q:?}");
    }
    assert!(
        r.stderr.contains("are not sent to another host"),
        "{}",
        r.stderr
    );
}

/// Item 3: an https registry whose challenge names a plain-http token server on the same
/// host name (another port) must not send the password there: the token server is asked
/// anonymously. A token server on another port over https gets it.
#[test]
fn an_https_registry_never_sends_its_password_to_a_plain_http_realm() {
    let ca = support::tls::Ca::new("rustlive hostile registry CA");
    let cfg = support::tls::server_config(&ca.issue(&["127.0.0.1"]), None);
    let dir = tempfile::tempdir().unwrap();
    let ca_pem = dir.path().join("ca.pem");
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let img = image(64 << 10, 2);
    let (manifest, digest) = manifest_for(&img, img.len());
    // A token server that gives the token for the password only.
    let token_server = |tls: bool| {
        let want = basic();
        let handler = move |req: &Request| {
            if req.header("authorization") == Some(want.as_str()) {
                Reply::ok(json!({"token": TOKEN}).to_string().as_bytes())
            } else {
                Reply::status(401)
            }
        };
        if tls {
            Server::start_with(handler, support::tls::wrap(cfg.clone()))
        } else {
            Server::start(handler)
        }
    };
    for (tls, works) in [(false, false), (true, true)] {
        let ts = token_server(tls);
        let scheme = if tls { "https" } else { "http" };
        let realm = format!("{scheme}://127.0.0.1:{}/token", ts.addr.port());
        let blob = img.clone();
        let m = manifest.clone();
        let want = format!("Bearer {TOKEN}");
        let reg = Server::start_with(
            move |req: &Request| {
                if req.header("authorization") != Some(want.as_str()) {
                    return Reply::status(401).header(
                        "WWW-Authenticate",
                        &format!(r#"Bearer realm="{realm}",service="reg""#),
                    );
                }
                if req.path.contains("/manifests/") {
                    return Reply::ok(&m)
                        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json");
                }
                Reply::file(req, &blob, "\"b\"")
            },
            support::tls::wrap(cfg.clone()),
        );
        let creds = credentials(dir.path(), &reg.addr.to_string());
        let (_d, out) = dest();
        let r = fetch(
            &format!("oci://{}/site/root@{digest}", reg.addr),
            &out,
            &creds,
            &["--timeout", "20", "--ca", ca_pem.to_str().unwrap()],
            secs(20),
        );
        let asked = ts.requests();
        assert!(!asked.is_empty(), "the token server was never asked");
        if works {
            common(&r, Some(&out), secs(20));
            assert_eq!(r.code, Some(0), "{}", r.stderr);
            assert_eq!(std::fs::read(&out).unwrap(), img);
        } else {
            failed(&r, Some(&out), secs(20), 3);
            for q in &asked {
                assert_eq!(
                    q.header("authorization"),
                    None,
                    "the password went over plain http"
                );
            }
            assert!(r.stderr.contains("without"), "{}", r.stderr);
        }
    }
}

/// Item 4: a token in the reference's query string, or a password in its userinfo, is never
/// printed: the reference is refused (exit 2) without quoting it, on every way in.
#[test]
fn a_query_or_userinfo_in_a_reference_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("root.squashfs");
    std::fs::write(&file, image(4096, 3)).unwrap();
    let (_d, out) = dest();
    let o = out.to_str().unwrap();
    let f = file.to_str().unwrap();
    for reference in [
        "oci://reg.invalid/x/y:t?token=sekrit",
        "oci://reg.invalid/x/y?token=sekrit",
        "oci+http://reg.invalid:5000/x/y:t#sekrit",
        "oci://alice:hunter2@reg.invalid/x/y:t",
    ] {
        let r = rustlive(&["fetch", "-o", o, reference], secs(5));
        failed(&r, Some(&out), secs(5), 2);
        let r = rustlive(&["publish", f, reference], secs(5));
        failed(&r, None, secs(5), 2);
        let cmdline = format!("root=live:{reference}");
        let r = rustlive(&["config", "--cmdline", &cmdline], secs(5));
        failed(&r, None, secs(5), 2);
        let cmdline = format!("root=live:http://x/y rd.rustlive.url={reference}");
        let r = rustlive(&["config", "--cmdline", &cmdline], secs(5));
        failed(&r, None, secs(5), 2);
    }
}

/// Item 5: control bytes in every field a registry controls — a layer's media type and title,
/// the manifest's media type, an index's platform fields and media types — and in a reference
/// from the command line: every line on stderr stays free of them (checked by [`rustlive`]),
/// the values shown escaped.
#[test]
fn control_bytes_in_every_logged_field_are_escaped() {
    let img = image(64 << 10, 4);
    let layer = |media: &str, title: &str| {
        json!({"mediaType": media, "digest": format!("sha256:{}", sha256_hex(&img)),
               "size": img.len(), "annotations": {"org.opencontainers.image.title": title}})
    };
    let config = json!({"mediaType": "application/vnd.oci.empty.v1+json",
                        "digest": format!("sha256:{}", sha256_hex(b"{}")), "size": 2});
    let doc = |v: serde_json::Value| serde_json::to_vec(&v).unwrap();
    let other = format!("sha256:{}", sha256_hex(b"other"));
    let cases: Vec<(&str, Vec<u8>, i32)> = vec![
        // The root chosen by its title, its media type shown on the info line; a second
        // layer with a hostile title. Works.
        (
            "titled",
            doc(
                json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config, "layers": [layer(EVIL, "root.squashfs"),
                json!({"mediaType": EVIL, "digest": other, "size": 3,
                       "annotations": {"org.opencontainers.image.title": EVIL}})]}),
            ),
            0,
        ),
        // No root layer: the media types and titles listed in the error.
        (
            "none",
            doc(json!({"schemaVersion": 2, "config": config, "layers": [layer(EVIL, EVIL)]})),
            3,
        ),
        // Two candidates.
        (
            "ambiguous",
            doc(json!({"schemaVersion": 2, "config": config,
                "layers": [layer(EVIL, "a.squashfs"), json!({"mediaType": EVIL, "digest": other,
                "size": 3, "annotations": {"org.opencontainers.image.title": "b.img"}})]})),
            3,
        ),
        // The manifest's own media type.
        (
            "media",
            doc(json!({"schemaVersion": 2, "mediaType": EVIL, "config": config, "layers": []})),
            3,
        ),
        // An index without this platform: the ones it has.
        (
            "index",
            doc(
                json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{"mediaType": EVIL, "digest": other, "size": 3,
                    "platform": {"os": EVIL, "architecture": EVIL, "variant": EVIL}}]}),
            ),
            3,
        ),
        // An index whose entry for this platform is not a manifest.
        (
            "entry",
            doc(
                json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": [{"mediaType": EVIL, "digest": other, "size": 3,
                    "platform": {"os": "linux", "architecture": "amd64"}}]}),
            ),
            3,
        ),
        // serde quoting a value of the document.
        ("serde", doc(json!({"schemaVersion": EVIL})), 3),
    ];
    for (name, body, code) in cases {
        let blob = img.clone();
        let reg = Server::start(move |req| {
            if req.path.contains("/manifests/") {
                Reply::ok(&body)
                    .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            } else {
                Reply::file(req, &blob, "\"b\"")
            }
        });
        let (_d, out) = dest();
        let r = rustlive(
            &[
                "fetch",
                "-o",
                out.to_str().unwrap(),
                "--timeout",
                "20",
                &format!("oci+http://{}/site/root:{name}", reg.addr),
                "--sha256",
                &sha256_hex(&img),
            ],
            secs(20),
        );
        common(&r, Some(&out), secs(20));
        assert_eq!(r.code, Some(code), "{name}: {}", r.stderr);
        // The values are there, escaped (or debug-quoted by serde).
        assert!(
            r.stderr.contains("\\x1b[2J") || r.stderr.contains("u{1b}[2J"),
            "{name}: {}",
            r.stderr
        );
        assert!(
            !r.stderr.contains("\nrustlive: error: forged"),
            "{}",
            r.stderr
        );
    }
    // From the command line (which cannot carry a NUL).
    let evil = EVIL.replace('\0', "");
    let (_d, out) = dest();
    let reference = format!("oci://reg.invalid/x/y:{evil}");
    let r = rustlive(&["fetch", "-o", out.to_str().unwrap(), &reference], secs(5));
    failed(&r, Some(&out), secs(5), 2);
    let cmdline = format!("root=live:oci://reg.invalid/x/y:t{evil}");
    let r = rustlive(&["config", "--cmdline", &cmdline], secs(5));
    failed(&r, None, secs(5), 2);
    assert!(r.stderr.contains("\\x1b[2J"), "{}", r.stderr);
}

/// A registry whose every request needs a token from `realm_addr`.
fn challenging_registry(realm_addr: std::net::SocketAddr) -> Server {
    Server::start(move |_| {
        Reply::status(401).header(
            "WWW-Authenticate",
            &format!(r#"Bearer realm="http://{realm_addr}/token",service="reg""#),
        )
    })
}

/// Item 6: a token server that never answers, trickles its status line or trickles its body
/// holds neither `rustlive fetch --timeout` past its deadline (the stall is longer on purpose)
/// nor `rustlive publish --timeout`.
#[test]
fn a_token_server_that_never_answers_or_trickles_is_cut_by_the_deadline() {
    let body = json!({"token": TOKEN, "padding": "x".repeat(4096)}).to_string();
    let faults = [
        Fault::Silent(secs(60)),
        Fault::HeadTrickle(secs(1)),
        Fault::Trickle {
            piece: 1,
            pause: secs(1),
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("root.squashfs");
    std::fs::write(&file, image(64 << 10, 5)).unwrap();
    let d = format!("sha256:{}", sha256_hex(b"pinned"));
    for fault in faults {
        let (b, f) = (body.clone(), fault.clone());
        let ts = Server::start(move |_| Reply::ok(b.as_bytes()).fault(f.clone()));
        let reg = challenging_registry(ts.addr);
        let creds = credentials(dir.path(), &reg.addr.to_string());
        let (_d, out) = dest();
        let r = fetch(
            &format!("oci+http://{}/site/root@{d}", reg.addr),
            &out,
            &creds,
            &["--timeout", "6", "--stall", "30"],
            secs(6),
        );
        failed(&r, Some(&out), secs(6), 3);
        assert!(r.stderr.contains("deadline"), "{fault:?}: {}", r.stderr);
        assert!(!ts.requests().is_empty());
        // publish: its own deadline, every request under it.
        let r = rustlive(
            &[
                "publish",
                file.to_str().unwrap(),
                &format!("oci+http://{}/site/root:v1", reg.addr),
                "--registry-auth",
                creds.to_str().unwrap(),
                "--timeout",
                "5",
            ],
            secs(5),
        );
        failed(&r, None, secs(5), 3);
        assert!(r.stderr.contains("deadline"), "{fault:?}: {}", r.stderr);
    }
    // publish's stall bounds a request that moves no blob well before its deadline.
    let reg = Server::start(|_| Reply::ok(b"").fault(Fault::Silent(secs(60))));
    let r = rustlive(
        &[
            "publish",
            file.to_str().unwrap(),
            &format!("oci+http://{}/site/root:v1", reg.addr),
            "--timeout",
            "60",
            "--stall",
            "3",
        ],
        secs(3),
    );
    failed(&r, None, secs(3), 3);
}

/// Item 7: the layer descriptor says 10 bytes; the blob comes chunked without end, or chunked
/// and longer, or with a Content-Length the manifest does not state. The descriptor's size
/// bounds what is read: refused at once as corrupt (exit 4), long before the deadline, nothing
/// left behind.
#[test]
fn a_blob_longer_than_its_descriptor_is_refused_at_once() {
    let img = image(1 << 20, 6);
    let (manifest, digest) = manifest_for(&img, 10);
    let endless = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicUsize::new(0));
    let (e2, s2, b2) = (endless.clone(), served.clone(), img.clone());
    let reg = Server::start(move |req| {
        if req.path.contains("/manifests/") {
            return Reply::ok(&manifest);
        }
        s2.fetch_add(1, SeqCst);
        if e2.load(SeqCst) {
            Reply::ok(b"").chunked().fault(Fault::Endless(secs(30)))
        } else {
            Reply::ok(&b2).chunked()
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let creds = credentials(dir.path(), "none.invalid");
    for is_endless in [true, false] {
        endless.store(is_endless, SeqCst);
        let (_d, out) = dest();
        let r = fetch(
            &format!("oci+http://{}/site/root@{digest}", reg.addr),
            &out,
            &creds,
            &["--timeout", "20"],
            secs(20),
        );
        failed(&r, Some(&out), secs(20), 4);
        assert!(
            r.elapsed < secs(10),
            "not refused at once: {:?}\n{}",
            r.elapsed,
            r.stderr
        );
        assert!(
            r.stderr
                .contains("longer than the 10 bytes its descriptor states"),
            "{}",
            r.stderr
        );
    }
    assert_eq!(served.load(SeqCst), 2, "refused, not retried");
}
