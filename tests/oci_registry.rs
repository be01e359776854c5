//! OCI registry sources against a REAL registry: Debian's `docker-registry` (the CNCF
//! distribution registry) started per test on 127.0.0.1 with its own config and storage.
//! Images are pushed with `rustlive publish` and, independently, with the registry HTTP API
//! driven from the test and read back with skopeo; pulled with `rustlive fetch`.

mod support;

use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::http::{Reply, Server};
use support::registry::{Proxy, ProxyFault, Registry};
use support::{random_bytes, run_ok, sha256_hex};

const RUSTLIVE: &str = env!("CARGO_BIN_EXE_rustlive");

/// The registry, or `None` after a skip (a failure under `make test`) when it is missing.
fn registry(extra: &str) -> Option<Registry> {
    let r = Registry::start(extra);
    if r.is_none() {
        rustlive::support::testing::skip(
            "docker-registry is not installed (scripts/install-deps.sh)",
        );
    }
    r
}

/// A fake squashfs: the magic number, then deterministic bytes.
fn image(len: usize, seed: u64) -> Vec<u8> {
    let mut b = random_bytes(len, seed);
    b[..4].copy_from_slice(b"hsqs");
    b
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(RUSTLIVE).args(args).output().unwrap();
    eprintln!(
        "rustlive {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Writes `image(len, seed)` to `dir/name`: returns the bytes and the path.
fn image_file(dir: &Path, name: &str, len: usize, seed: u64) -> (Vec<u8>, PathBuf) {
    let img = image(len, seed);
    let file = dir.join(name);
    std::fs::write(&file, &img).unwrap();
    (img, file)
}

/// A manifest with an empty config and `img` as its one rustlive squashfs layer, and its
/// digest.
fn squashfs_manifest(img: &[u8]) -> (Vec<u8>, String) {
    let layer_d = format!("sha256:{}", sha256_hex(img));
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json",
                   "digest": format!("sha256:{}", sha256_hex(b"{}")), "size": 2},
        "layers": [{"mediaType": "application/vnd.rustlive.image.v1.squashfs",
                    "digest": layer_d, "size": img.len()}],
    }))
    .unwrap();
    let manifest_d = format!("sha256:{}", sha256_hex(&manifest));
    (manifest, manifest_d)
}

/// `rustlive publish`: returns (manifest digest, kernel command line).
fn publish(file: &Path, reference: &str, extra: &[&str]) -> (String, String) {
    let mut args = vec!["publish", file.to_str().unwrap(), reference];
    args.extend_from_slice(extra);
    let out = run(&args);
    assert!(out.status.success(), "publish failed: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let digest = lines.next().unwrap().to_string();
    let cmdline = lines.next().unwrap().to_string();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    (digest, cmdline)
}

fn fetch(dest: &Path, url: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "fetch",
        "-o",
        dest.to_str().unwrap(),
        "--retries",
        "5",
        "--timeout",
        "120",
        "--debug",
    ];
    args.extend_from_slice(extra);
    args.push(url);
    run(&args)
}

/// [`fetch`], which must succeed and write exactly `want`.
#[track_caller]
fn pulled(dest: &Path, url: &str, extra: &[&str], want: &[u8]) -> Output {
    let o = fetch(dest, url, extra);
    assert!(o.status.success());
    assert_eq!(std::fs::read(dest).unwrap(), want);
    o
}

/// Pushes a blob through the registry HTTP API (monolithic POST + PUT), as a second client.
fn api_push_blob(base: &str, repo: &str, data: &[u8]) -> String {
    let c = reqwest::blocking::Client::new();
    let digest = format!("sha256:{}", sha256_hex(data));
    let r = c
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let loc = if loc.starts_with("http") {
        loc
    } else {
        format!("{base}{loc}")
    };
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{loc}{sep}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(data.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    digest
}

fn api_put_manifest(base: &str, repo: &str, reference: &str, media: &str, body: &[u8]) -> String {
    let r = reqwest::blocking::Client::new()
        .put(format!("{base}/v2/{repo}/manifests/{reference}"))
        .header("content-type", media)
        .body(body.to_vec())
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap_or_default());
    format!("sha256:{}", sha256_hex(body))
}

fn empty_config(base: &str, repo: &str) -> serde_json::Value {
    let d = api_push_blob(base, repo, b"{}");
    json!({"mediaType": "application/vnd.oci.empty.v1+json", "digest": d, "size": 2})
}

#[test]
fn publish_then_pull_by_digest_and_tag_and_skopeo_agrees() {
    let Some(reg) = registry("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (img, file) = image_file(dir.path(), "compute.squashfs", 3 << 20, 1);
    let tag_ref = format!("oci+http://{}/site/compute:v1", reg.addr);
    let (digest, cmdline) = publish(&file, &tag_ref, &[]);
    let pinned = format!("oci+http://{}/site/compute@{digest}", reg.addr);
    assert_eq!(cmdline, format!("root=live:{pinned}"));

    // An independent client reads the same manifest, with our media type in it.
    let out = run_ok(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/site/compute:v1", reg.addr),
    ]));
    assert_eq!(format!("sha256:{}", sha256_hex(&out.stdout)), digest);
    let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.rustlive.image.v1.squashfs"
    );
    assert_eq!(
        m["layers"][0]["digest"],
        format!("sha256:{}", sha256_hex(&img))
    );

    // Pinned by digest: accepted over plain http, byte-exact.
    let dest = dir.path().join("out");
    let o = pulled(&dest, &pinned, &[], &img);
    assert!(
        stderr(&o).contains("manifest digest verified"),
        "{}",
        stderr(&o)
    );

    // A tag over plain http without a pin is refused before any request…
    let o = fetch(&dest, &tag_ref, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("plain-http registry"), "{}", stderr(&o));
    // …and accepted when a hash covers the image; the resolved digest is logged for pinning.
    std::fs::remove_file(&dest).unwrap();
    let h = sha256_hex(&img);
    let o = pulled(&dest, &tag_ref, &["--sha256", &h], &img);
    assert!(
        stderr(&o).contains(&format!("pin it with root=live:{pinned}")),
        "{}",
        stderr(&o)
    );
    // The wrong hash is a verification failure (4), and nothing is left behind.
    std::fs::remove_file(&dest).unwrap();
    let o = fetch(&dest, &tag_ref, &["--sha256", &"0".repeat(64)]);
    assert_eq!(o.status.code(), Some(4));
    assert!(!dest.exists());

    // Publishing again skips every blob; a chunked upload of new content works.
    let out = run(&["publish", file.to_str().unwrap(), &tag_ref]);
    assert!(out.status.success());
    assert!(
        stderr(&out).contains("2 blob(s) already there"),
        "{}",
        stderr(&out)
    );
    let img2 = image((5 << 20) + 123, 2);
    let file2 = dir.path().join("other.erofs.img");
    std::fs::write(&file2, &img2).unwrap();
    let (d2, _) = publish(
        &file2,
        &format!("oci+http://{}/site/other:v2", reg.addr),
        &["--chunk-size", "1M"],
    );
    pulled(
        &dest,
        &format!("oci+http://{}/site/other@{d2}", reg.addr),
        &[],
        &img2,
    );

    // A wrong pin is refused as a verification failure.
    std::fs::remove_file(&dest).unwrap();
    let wrong = format!(
        "oci+http://{}/site/compute@sha256:{}",
        reg.addr,
        "1".repeat(64)
    );
    let o = fetch(&dest, &wrong, &[]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!dest.exists());

    // Publishing to a digest is a usage error: the digest is what publishing produces.
    let o = run(&["publish", file.to_str().unwrap(), &wrong]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("publish to a tag"), "{}", stderr(&o));
}

#[test]
fn second_client_ironcore_index_and_container_images() {
    let Some(reg) = registry("") else { return };
    let base = format!("http://{}", reg.addr);
    let repo = "ironcore/node";
    let img = image(1 << 20, 3);
    let layer = api_push_blob(&base, repo, &img);
    let decoy = api_push_blob(&base, repo, &image(4096, 4));
    let config = empty_config(&base, repo);
    let manifest = |d: &str, size: usize| {
        serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [
                {"mediaType": "application/vnd.ironcore.image.squashfs.v1alpha1.squashfs",
                 "digest": d, "size": size},
            ],
        }))
        .unwrap()
    };
    let amd = manifest(&layer, img.len());
    let arm = manifest(&decoy, 4096);
    let media = "application/vnd.oci.image.manifest.v1+json";
    let amd_d = api_put_manifest(&base, repo, "amd64", media, &amd);
    let arm_d = api_put_manifest(&base, repo, "arm64", media, &arm);
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": media, "digest": arm_d, "size": arm.len(),
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": media, "digest": amd_d, "size": amd.len(),
             "platform": {"os": "linux", "architecture": "amd64"}},
        ],
    }))
    .unwrap();
    let index_d = api_put_manifest(
        &base,
        repo,
        "multi",
        "application/vnd.oci.image.index.v1+json",
        &index,
    );
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let o = fetch(
        &dest,
        &format!("oci+http://{}/{repo}@{index_d}", reg.addr),
        &[],
    );
    assert!(o.status.success());
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        img,
        "the amd64 entry's layer"
    );

    // An ordinary container image: refused with a sentence that says what to push instead.
    let tar = api_push_blob(&base, "library/app", &random_bytes(2048, 5));
    let cfg = api_push_blob(
        &base,
        "library/app",
        br#"{"architecture":"amd64","os":"linux"}"#,
    );
    let body = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": 37},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": tar, "size": 2048}],
    }))
    .unwrap();
    let d = api_put_manifest(&base, "library/app", "latest", media, &body);
    let o = fetch(
        &dest,
        &format!("oci+http://{}/library/app@{d}", reg.addr),
        &[],
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("ordinary container image"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("rustlive publish"), "{}", stderr(&o));
}

#[test]
fn a_blob_broken_mid_way_resumes_and_a_flipped_byte_is_refused() {
    let Some(reg) = registry("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (img, file) = image_file(dir.path(), "root.squashfs", 4 << 20, 6);
    let (digest, _) = publish(&file, &format!("oci+http://{}/x/root:v1", reg.addr), &[]);
    let dest = dir.path().join("out");

    let cut = Proxy::start(
        reg.addr,
        ProxyFault::CutFirstBlob {
            after: 1 << 20,
            pause: Duration::ZERO,
        },
    );
    let o = pulled(
        &dest,
        &format!("oci+http://{}/x/root@{digest}", cut.addr),
        &[],
        &img,
    );
    assert!(stderr(&o).contains("resuming at 1.0 MiB"), "{}", stderr(&o));
    assert_eq!(
        cut.blob_requests.load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    std::fs::remove_file(&dest).unwrap();
    let flip = Proxy::start(reg.addr, ProxyFault::FlipByte(3 << 20));
    let o = fetch(
        &dest,
        &format!("oci+http://{}/x/root@{digest}", flip.addr),
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "a corrupted cache is refused");
    assert!(stderr(&o).contains("SHA-256 mismatch"), "{}", stderr(&o));
    assert!(!dest.exists() && !dir.path().join("out.part").exists());
}

#[test]
fn a_pull_through_cache_serves_the_origin_image() {
    let Some(origin) = registry("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (img, file) = image_file(dir.path(), "root.squashfs", 3 << 20, 7);
    let (digest, _) = publish(
        &file,
        &format!("oci+http://{}/site/root:v1", origin.addr),
        &[],
    );
    // A counting proxy between the cache and the origin measures what the origin serves.
    let counter = Proxy::start(origin.addr, ProxyFault::None);
    let Some(cache) = registry(&format!("proxy:\n  remoteurl: http://{}\n", counter.addr)) else {
        return;
    };
    let dest = dir.path().join("out");
    for _ in 0..3 {
        let _ = std::fs::remove_file(&dest);
        let o = fetch(
            &dest,
            &format!("oci+http://{}/site/root@{digest}", cache.addr),
            &[],
        );
        assert!(o.status.success(), "{}", cache.log());
        assert_eq!(std::fs::read(&dest).unwrap(), img);
    }
    let from_origin = counter.blob_bytes.load(std::sync::atomic::Ordering::SeqCst);
    let requests = counter
        .blob_requests
        .load(std::sync::atomic::Ordering::SeqCst);
    eprintln!("origin: {from_origin} blob bytes in {requests} blob requests for 3 pulls");
    // The distribution proxy may read a blob twice on its first miss (serve and store), never
    // once per pull: the later pulls come from the cache.
    assert!(
        from_origin <= 2 * img.len() as u64 + (64 << 10),
        "the origin served {from_origin} blob bytes for three pulls of {}",
        img.len()
    );
    // Registry mirrors: a dead one listed first, then the cache; the digest makes either
    // acceptable and the engine rotates to the one that answers.
    let _ = std::fs::remove_file(&dest);
    let dead = format!("oci+http://127.0.0.1:9/site/root@{digest}");
    let live = format!("oci+http://{}/site/root@{digest}", cache.addr);
    let d = dest.to_str().unwrap();
    let o = run(&[
        "fetch",
        "-o",
        d,
        "--retries",
        "4",
        "--timeout",
        "60",
        &dead,
        &live,
    ]);
    assert!(o.status.success());
    assert_eq!(std::fs::read(&dest).unwrap(), img);
}

#[test]
fn bearer_tokens_refresh_and_redirects_drop_authorization() {
    // A fake registry (the real one's token auth is below) so the test sees every header:
    // manifests and blobs need a Bearer token; the first token is refused once mid-blob
    // (expired); the blob redirects to a storage server on another port.
    let img = image(2 << 20, 8);
    let (manifest, manifest_d) = squashfs_manifest(&img);
    let storage_img = img.clone();
    let storage = Server::start(move |req| {
        let r = Reply::file(req, &storage_img, "\"blob-etag\"");
        if req.range_start().is_none() {
            // The first (full) response breaks after 512 KiB: the resume needs a new token.
            r.fault(support::http::Fault::CloseAfter(512 << 10))
        } else {
            r
        }
    });
    let storage_addr = storage.addr;
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    let tokens = std::sync::Arc::new(AtomicUsize::new(0));
    // Tokens below this number have expired: each blob redirect expires the token it used,
    // so the resume after the break must come with a fresh one.
    let min_valid = std::sync::Arc::new(AtomicUsize::new(0));
    let (t2, m2) = (tokens.clone(), min_valid.clone());
    let reg = Server::start(move |req| {
        let auth = req.header("authorization").unwrap_or("");
        if req.path.starts_with("/token") {
            let n = t2.fetch_add(1, SeqCst);
            assert!(
                req.path.contains("scope=repository%3Asite%2Froot%3Apull"),
                "{}",
                req.path
            );
            return Reply::ok(format!(r#"{{"token":"tok{n}","expires_in":60}}"#).as_bytes());
        }
        let n: Option<usize> = auth.strip_prefix("Bearer tok").and_then(|n| n.parse().ok());
        let valid = n.is_some_and(|n| n >= m2.load(SeqCst));
        if !valid {
            return Reply::status(401).header(
                "WWW-Authenticate",
                &format!(
                    r#"Bearer realm="http://127.0.0.1:{}/token",service="test",scope="repository:site/root:pull""#,
                    req.header("host").and_then(|h| h.rsplit(':').next()).unwrap_or("0")
                ),
            );
        }
        if req.path.contains("/manifests/") {
            assert!(req
                .header("accept")
                .unwrap_or("")
                .contains("application/vnd.oci.image.manifest.v1+json"));
            return Reply::ok(&manifest)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json");
        }
        m2.store(n.unwrap_or(0) + 1, SeqCst);
        Reply::status(307).header("Location", &format!("http://{storage_addr}/storage/blob"))
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let o = pulled(
        &dest,
        &format!("oci+http://{}/site/root@{manifest_d}", reg.addr),
        &[],
        &img,
    );
    assert_eq!(
        tokens.load(SeqCst),
        2,
        "one token, then a fresh one after the mid-blob 401"
    );
    assert!(stderr(&o).contains("resuming at 0.5 MiB"), "{}", stderr(&o));
    let seen = storage.requests();
    assert!(seen.len() >= 2, "the blob broke once and resumed");
    for r in &seen {
        assert_eq!(
            r.header("authorization"),
            None,
            "the registry token leaked to the storage host"
        );
    }
}

/// A token server for the real registry: ES256 JWTs with the signing certificate in `x5c`,
/// Basic credentials required. When armed, the next pull token is issued nearly expired (the
/// registry allows 60 s of clock skew), so it dies while the blob is in flight.
struct TokenServer {
    server: Server,
    cert_pem: String,
    pull_tokens: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// Set: the next pull token is issued about to expire.
    arm: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

fn b64url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn token_server(user: &str, password: &str) -> TokenServer {
    use base64::Engine as _;
    use std::sync::atomic::Ordering::SeqCst;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["token-signer".to_string()]).unwrap();
    p.distinguished_name
        .push(rcgen::DnType::CommonName, "rustlive test token signer");
    let cert = p.self_signed(&key).unwrap();
    let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der());
    let rng = ring::rand::SystemRandom::new();
    let signer = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &key.serialize_der(),
        &rng,
    )
    .unwrap();
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    );
    let pull_tokens = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let arm = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (pt, arm2) = (pull_tokens.clone(), arm.clone());
    let server = Server::start(move |req| {
        if req.header("authorization") != Some(want.as_str()) {
            return Reply::status(401);
        }
        let url = reqwest::Url::parse(&format!("http://x{}", req.path)).unwrap();
        let q: std::collections::HashMap<String, String> = url.query_pairs().into_owned().collect();
        let scope = q.get("scope").cloned().unwrap_or_default();
        let mut parts = scope.splitn(3, ':');
        let (kind, name, actions) = (
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
            parts.next().unwrap_or(""),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let push = actions.contains("push");
        let n = if push {
            usize::MAX
        } else {
            pt.fetch_add(1, SeqCst)
        };
        // 60 s of leeway at the registry: exp = now - 57 gives this token about 3 s.
        // Armed by the test: the next pull token is nearly expired.
        let short = !push && arm2.swap(false, SeqCst);
        let exp = if short { now - 57 } else { now + 300 };
        let header = json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
        let claims = json!({
            "iss": "rustlive-test-issuer", "sub": "alice", "aud": "rustlive-test-registry",
            "exp": exp, "nbf": now - 10, "iat": now - 10, "jti": format!("t{n}-{now}"),
            "access": [{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}],
        });
        let signing_input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let sig = signer
            .sign(&ring::rand::SystemRandom::new(), signing_input.as_bytes())
            .unwrap();
        let token = format!("{signing_input}.{}", b64url(sig.as_ref()));
        Reply::ok(
            json!({"token": token, "expires_in": 300})
                .to_string()
                .as_bytes(),
        )
        .header("Content-Type", "application/json")
    });
    TokenServer {
        server,
        cert_pem: cert.pem(),
        pull_tokens,
        arm,
    }
}

#[test]
fn token_auth_with_credentials_and_a_token_expiring_mid_blob() {
    use std::sync::atomic::Ordering::SeqCst;
    let ts = token_server("alice", "s3cret");
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("token-signer.pem");
    std::fs::write(&bundle, &ts.cert_pem).unwrap();
    let Some(reg) = registry(&format!(
        "auth:\n  token:\n    realm: http://{}/token\n    service: rustlive-test-registry\n    issuer: rustlive-test-issuer\n    rootcertbundle: {}\n",
        ts.server.addr,
        bundle.display()
    )) else {
        return;
    };
    let (img, file) = image_file(dir.path(), "root.squashfs", 3 << 20, 9);
    // The pull goes through a proxy that holds the blob for 5 s after 1 MiB, then cuts it.
    let proxy = Proxy::start(
        reg.addr,
        ProxyFault::CutFirstBlob {
            after: 1 << 20,
            pause: Duration::from_secs(5),
        },
    );
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("alice:s3cret");
    let creds = dir.path().join("auth.json");
    std::fs::write(
        &creds,
        json!({"auths": {
            reg.addr.to_string(): {"auth": auth},
            proxy.addr.to_string(): {"auth": auth},
        }})
        .to_string(),
    )
    .unwrap();
    let creds_s = creds.to_str().unwrap();

    // Without credentials the registry refuses the push.
    let none = dir.path().join("none.json");
    let o = run(&[
        "publish",
        file.to_str().unwrap(),
        &format!("oci+http://{}/site/root:v1", reg.addr),
        "--registry-auth",
        none.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("401"), "{}", stderr(&o));

    let (digest, _) = publish(
        &file,
        &format!("oci+http://{}/site/root:v1", reg.addr),
        &["--registry-auth", creds_s],
    );
    // Anonymous pulls are refused too (the token server wants the password).
    let dest = dir.path().join("out");
    let o = fetch(
        &dest,
        &format!("oci+http://{}/site/root@{digest}", reg.addr),
        &["--registry-auth", none.to_str().unwrap()],
    );
    assert_ne!(o.status.code(), Some(0));
    assert!(!dest.exists());

    let before = ts.pull_tokens.load(SeqCst);
    ts.arm.store(true, SeqCst);
    let o = pulled(
        &dest,
        &format!("oci+http://{}/site/root@{digest}", proxy.addr),
        &["--registry-auth", creds_s],
        &img,
    );
    let log = stderr(&o);
    assert!(log.contains("resuming at 1.0 MiB"), "{log}");
    // The resumed blob request is the one refused: its token expired during the hold.
    let blob_401 = log
        .lines()
        .any(|l| l.contains("/blobs/") && l.contains("refused the credentials (401)"));
    assert!(blob_401, "{log}");
    assert_eq!(
        ts.pull_tokens.load(SeqCst) - before,
        2,
        "the short token, then a fresh one"
    );
    assert!(
        !log.contains("s3cret") && !log.contains(&auth),
        "a credential in the log"
    );
}

#[test]
fn oci_over_https_with_the_sites_ca() {
    let ca = support::tls::Ca::new("rustlive test registry CA");
    let leaf = ca.issue(&["127.0.0.1"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, ca_pem) = (
        dir.path().join("reg.crt"),
        dir.path().join("reg.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, leaf.cert.pem()).unwrap();
    std::fs::write(&key, leaf.key.serialize_pem()).unwrap();
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    let Some(reg) = Registry::start_with(
        &format!(
            "  tls:\n    certificate: {}\n    key: {}\n",
            cert.display(),
            key.display()
        ),
        "",
    ) else {
        rustlive::support::testing::skip(
            "docker-registry is not installed (scripts/install-deps.sh)",
        );
        return;
    };
    let (img, file) = image_file(dir.path(), "root.squashfs", 2 << 20, 10);
    let ca_s = ca_pem.to_str().unwrap();
    let tag = format!("oci://{}/site/root:v1", reg.addr);
    let (digest, cmdline) = publish(&file, &tag, &["--ca", ca_s]);
    assert_eq!(
        cmdline,
        format!("root=live:oci://{}/site/root@{digest}", reg.addr)
    );
    // A tag over https is accepted without a pin (TLS authenticates the registry); the layer
    // digest is still checked while streaming.
    let dest = dir.path().join("out");
    let o = pulled(&dest, &tag, &["--ca", ca_s], &img);
    assert!(
        stderr(&o).contains("NOT verified"),
        "a tag alone does not pin the image"
    );
    // …but with --require-verified only a pinned manifest will do.
    std::fs::remove_file(&dest).unwrap();
    let o = fetch(&dest, &tag, &["--ca", ca_s, "--require-verified"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    pulled(
        &dest,
        &format!("oci://{}/site/root@{digest}", reg.addr),
        &["--ca", ca_s, "--require-verified"],
        &img,
    );
    // Without the CA, the registry's certificate is refused.
    std::fs::remove_file(&dest).unwrap();
    let o = fetch(&dest, &tag, &["--ca", "/etc/ssl/certs/ca-certificates.crt"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(!dest.exists());
}

#[test]
fn the_signature_layer_is_checked_with_the_installed_key() {
    let Some(reg) = registry("") else { return };
    let dir = tempfile::tempdir().unwrap();
    let (img, file) = image_file(dir.path(), "root.squashfs", 1 << 20, 12);
    let (pk, sk) = (dir.path().join("k.pub"), dir.path().join("k.key"));
    let keygen = |p: &Path, s: &Path| {
        run_ok(Command::new("minisign").args([
            "-G",
            "-W",
            "-f",
            "-p",
            p.to_str().unwrap(),
            "-s",
            s.to_str().unwrap(),
        ]));
    };
    keygen(&pk, &sk);
    let sig = dir.path().join("root.squashfs.minisig");
    run_ok(Command::new("minisign").args([
        "-S",
        "-s",
        sk.to_str().unwrap(),
        "-m",
        file.to_str().unwrap(),
    ]));
    let r = format!("oci+http://{}/site/signed:v1", reg.addr);
    let (digest, _) = publish(&file, &r, &["--signature", sig.to_str().unwrap()]);
    let pinned = format!("oci+http://{}/site/signed@{digest}", reg.addr);
    let dest = dir.path().join("out");
    let o = pulled(&dest, &pinned, &["--pubkey", pk.to_str().unwrap()], &img);
    assert!(
        stderr(&o).contains("with a signature layer"),
        "{}",
        stderr(&o)
    );
    // Another key: the signature layer does not verify, nothing is written.
    std::fs::remove_file(&dest).unwrap();
    let (pk2, sk2) = (dir.path().join("k2.pub"), dir.path().join("k2.key"));
    keygen(&pk2, &sk2);
    let o = fetch(&dest, &pinned, &["--pubkey", pk2.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(!dest.exists());
}

#[test]
fn a_layer_longer_than_its_descriptor_is_refused_before_its_bytes() {
    // A hostile registry: the manifest promises 1 MiB, the blob response announces more.
    let img = image(1 << 20, 13);
    let (manifest, manifest_d) = squashfs_manifest(&img);
    let mut longer = img.clone();
    longer.extend_from_slice(&[0u8; 4096]);
    let reg = Server::start(move |req| {
        if req.path.contains("/manifests/") {
            Reply::ok(&manifest)
        } else {
            Reply::ok(&longer)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out");
    let o = fetch(
        &dest,
        &format!("oci+http://{}/site/root@{manifest_d}", reg.addr),
        &[],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("announced 1052672 bytes where 1048576 were expected"),
        "{}",
        stderr(&o)
    );
    assert!(!dest.exists());
}

#[test]
fn a_silent_token_server_holds_neither_fetch_nor_publish_past_the_deadline() {
    // The real registry with token auth whose token server accepts and never answers.
    let ts = Server::start(|_| {
        Reply::ok(b"{}").fault(support::http::Fault::Silent(Duration::from_secs(60)))
    });
    let dir = tempfile::tempdir().unwrap();
    let signer = token_server("alice", "s3cret");
    let bundle = dir.path().join("token-signer.pem");
    std::fs::write(&bundle, &signer.cert_pem).unwrap();
    let Some(reg) = registry(&format!(
        "auth:\n  token:\n    realm: http://{}/token\n    service: rustlive-test-registry\n    issuer: rustlive-test-issuer\n    rootcertbundle: {}\n",
        ts.addr,
        bundle.display()
    )) else {
        return;
    };
    let (_, file) = image_file(dir.path(), "root.squashfs", 1 << 20, 14);
    let d = format!("sha256:{}", sha256_hex(b"any"));
    let dest = dir.path().join("out");
    let timed = |args: &[&str]| {
        let t = std::time::Instant::now();
        let o = run(args);
        (o, t.elapsed())
    };
    let (o, took) = timed(&[
        "fetch",
        "-o",
        dest.to_str().unwrap(),
        "--timeout",
        "6",
        "--stall",
        "30",
        &format!("oci+http://{}/site/root@{d}", reg.addr),
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(took <= Duration::from_secs(8), "took {took:?}");
    assert!(stderr(&o).contains("deadline"), "{}", stderr(&o));
    assert!(!dest.exists());
    let (o, took) = timed(&[
        "publish",
        file.to_str().unwrap(),
        &format!("oci+http://{}/site/root:v1", reg.addr),
        "--timeout",
        "5",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(took <= Duration::from_secs(7), "took {took:?}");
    assert!(stderr(&o).contains("deadline"), "{}", stderr(&o));
    assert!(
        !ts.requests().is_empty(),
        "the token server was never asked"
    );
}
