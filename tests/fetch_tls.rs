//! https: a CA generated in the test is trusted through --ca; an unknown CA, a wrong host name
//! and an https→http downgrade are refused, quickly and without a retry loop.

mod support;

use rustlive::fetch::{fetch_bytes, ClientIdentity, FetchOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::http::{Reply, Server};
use support::tls::{self, Ca};
use support::{random_bytes, sha256_hex};

fn https(ca: &Ca, names: &[&str], body: Vec<u8>) -> Server {
    let leaf = ca.issue(names);
    Server::start_with(
        move |_| Reply::ok(&body),
        tls::wrap(tls::server_config(&leaf, None)),
    )
}

fn https_url(s: &Server, path: &str) -> String {
    format!("https://{}{path}", s.addr)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn fetch(args: &[&str]) -> (Output, Duration) {
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .arg("fetch")
        .args(args)
        .output()
        .unwrap();
    (out, t.elapsed())
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `rustlive fetch ARGS -o OUT` of `/img` on the https server `s`.
fn fetch_img(s: &Server, out: &Path, args: &[&str]) -> (Output, Duration) {
    let url = https_url(s, "/img");
    let mut all = args.to_vec();
    all.extend(["-o", out.to_str().unwrap(), &url]);
    fetch(&all)
}

/// Asserts that the fetch succeeded and wrote exactly `want` to `out`.
#[track_caller]
fn assert_fetched(o: &Output, out: &Path, want: &[u8]) {
    assert_eq!(o.status.code(), Some(0), "{}", stderr(o));
    assert_eq!(std::fs::read(out).unwrap(), want);
}

/// Fetches `/img` from `s` trusting `ca_pem` and pinned to the hash of `body`: it must
/// succeed and write exactly `body` to `out`.
#[track_caller]
fn assert_fetches_pinned(s: &Server, out: &Path, ca_pem: &Path, body: &[u8]) {
    let (o, _) = fetch_img(
        s,
        out,
        &[
            "--ca",
            ca_pem.to_str().unwrap(),
            "--sha256",
            &sha256_hex(body),
        ],
    );
    assert_fetched(&o, out, body);
}

/// Asserts that the fetch was refused as a connection failure (exit 3) saying `want`, in
/// well under the time a retry loop would take.
#[track_caller]
fn assert_refused(o: &Output, took: Duration, want: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(err.contains(want), "{err}");
}

#[test]
fn test_ca_is_accepted() {
    let d = tempfile::tempdir().unwrap();
    let ca = Ca::new("site CA");
    let body = random_bytes(700_000, 21);
    let s = https(&ca, &["127.0.0.1", "localhost"], body.clone());
    let ca_pem = write(d.path(), "ca.pem", &ca.pem());
    let out = d.path().join("img");
    assert_fetches_pinned(&s, &out, &ca_pem, &body);
}

#[test]
fn unknown_ca_is_refused_without_retrying() {
    let d = tempfile::tempdir().unwrap();
    let (site, other) = (Ca::new("site CA"), Ca::new("someone else"));
    let s = https(&site, &["127.0.0.1"], b"secret image".to_vec());
    let other_pem = write(d.path(), "other.pem", &other.pem());
    let out = d.path().join("img");
    let (o, took) = fetch_img(&s, &out, &["--ca", other_pem.to_str().unwrap()]);
    assert_refused(&o, took, "certificate");
    assert!(s.requests().is_empty(), "no request got through");
    assert!(!out.exists());
}

#[test]
fn wrong_host_name_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let ca = Ca::new("site CA");
    let s = https(&ca, &["images.example.org"], b"img".to_vec());
    let ca_pem = write(d.path(), "ca.pem", &ca.pem());
    let out = d.path().join("img");
    let (o, took) = fetch_img(&s, &out, &["--ca", ca_pem.to_str().unwrap()]);
    assert_refused(&o, took, "certificate");
    assert!(s.requests().is_empty());
}

#[test]
fn insecure_tls_skips_the_check_loudly_but_the_hash_still_applies() {
    let d = tempfile::tempdir().unwrap();
    let ca = Ca::new("unknown");
    let body = random_bytes(10_000, 22);
    let s = https(&ca, &["127.0.0.1"], body.clone());
    let out = d.path().join("img");
    let (o, _) = fetch_img(
        &s,
        &out,
        &["--insecure-tls", "--sha256", &sha256_hex(&body)],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("verification is OFF"));
    let out2 = d.path().join("img2");
    let (o, _) = fetch_img(&s, &out2, &["--insecure-tls", "--sha256", &"0".repeat(64)]);
    assert_eq!(o.status.code(), Some(4));
}

#[test]
fn https_to_http_redirect_needs_a_pin() {
    let d = tempfile::tempdir().unwrap();
    let ca = Ca::new("site CA");
    let body = random_bytes(5000, 23);
    let b = body.clone();
    let plain = Server::start(move |_| Reply::ok(&b));
    let target = plain.url("/img");
    let leaf = ca.issue(&["127.0.0.1"]);
    let s = Server::start_with(
        move |_| Reply::status(302).header("Location", &target),
        tls::wrap(tls::server_config(&leaf, None)),
    );
    let ca_pem = write(d.path(), "ca.pem", &ca.pem());
    let out = d.path().join("img");
    let (o, took) = fetch_img(&s, &out, &["--ca", ca_pem.to_str().unwrap()]);
    assert_refused(&o, took, "https to plain http");
    assert!(
        plain.requests().is_empty(),
        "the http URL was never fetched"
    );
    assert!(!out.exists());

    assert_fetches_pinned(&s, &out, &ca_pem, &body);
}

#[test]
fn fetch_bytes_presents_a_client_certificate() {
    let d = tempfile::tempdir().unwrap();
    let ca = Ca::new("site CA");
    let server_leaf = ca.issue(&["127.0.0.1"]);
    let s = Server::start_with(
        |_| Reply::ok(b"{\"version\":1,\"files\":[]}"),
        tls::wrap(tls::server_config(&server_leaf, Some(&ca))),
    );
    let client = ca.issue(&["node042"]);
    let opts = FetchOptions {
        ca: Some(write(d.path(), "ca.pem", &ca.pem())),
        identity: Some(ClientIdentity {
            cert: write(d.path(), "node.crt", &client.cert.pem()),
            key: write(d.path(), "node.key", &client.key.serialize_pem()),
        }),
        retries: Some(0),
        ..FetchOptions::default()
    };
    let url = reqwest::Url::parse(&https_url(&s, "/secrets.json")).unwrap();
    let got = fetch_bytes(&url, &opts, 1 << 20).unwrap();
    assert_eq!(got.as_slice(), b"{\"version\":1,\"files\":[]}");

    let anonymous = FetchOptions {
        identity: None,
        ..opts
    };
    let t = Instant::now();
    assert!(fetch_bytes(&url, &anonymous, 1 << 20).is_err());
    assert!(t.elapsed() < Duration::from_secs(3));
}
