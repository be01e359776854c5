//! Against real nginx (what sites serve images with): a broken transfer resumes with Range and
//! If-Range on nginx's ETag and gets a 206; a file replaced meanwhile restarts from zero; the
//! `rustlive fetch` summary line says what verified the image.

mod support;

use rustlive::fetch::retry::Backoff;
use rustlive::fetch::{fetch_to_file, FetchOptions};
use rustlive::support::values::parse_sha256;
use std::time::Duration;
use support::nginx::{resetting_relay, Nginx};
use support::{random_bytes, sha256_hex};

fn opts(content: &[u8]) -> FetchOptions {
    FetchOptions {
        sha256: Some(parse_sha256(&sha256_hex(content)).unwrap()),
        stall: Duration::from_secs(5),
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        deadline: rustlive::support::deadline::Deadline::after(Some(Duration::from_secs(60))),
        ..FetchOptions::default()
    }
}

fn statuses(log: &str) -> Vec<String> {
    // combined format: ... "GET /img HTTP/1.1" 206 1234 ...
    log.lines()
        .filter_map(|l| l.split('"').nth(2))
        .filter_map(|rest| rest.split_whitespace().next().map(str::to_string))
        .collect()
}

#[test]
fn nginx_resume_uses_range_and_etag() {
    let Some(n) = Nginx::start() else { return };
    let content = random_bytes(8 << 20, 41);
    std::fs::write(n.root.join("img"), &content).unwrap();
    let relay = resetting_relay(n.addr, 3 << 20, || {});
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("img");
    let url = reqwest::Url::parse(&format!("http://{relay}/img")).unwrap();
    let rep = fetch_to_file(&[url], &out, &opts(&content)).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), content);
    assert_eq!((rep.attempts, rep.resumes, rep.restarts), (2, 1, 0));
    assert_eq!(
        statuses(&n.access_log()),
        ["200", "206"],
        "{}",
        n.access_log()
    );
}

#[test]
fn nginx_file_replaced_between_attempts_restarts() {
    let Some(n) = Nginx::start() else { return };
    let old = random_bytes(6 << 20, 42);
    let new = random_bytes((6 << 20) + 4096, 43);
    let path = n.root.join("img");
    std::fs::write(&path, &old).unwrap();
    let (p2, new2) = (path.clone(), new.clone());
    // Replaced at the moment the first transfer breaks: a new inode, size and ETag.
    let relay = resetting_relay(n.addr, 2 << 20, move || {
        let tmp = p2.with_extension("tmp");
        std::fs::write(&tmp, &new2).unwrap();
        std::fs::rename(&tmp, &p2).unwrap();
    });
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("img");
    let url = reqwest::Url::parse(&format!("http://{relay}/img")).unwrap();
    let rep = fetch_to_file(&[url], &out, &opts(&new)).unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), new);
    assert_eq!((rep.resumes, rep.restarts), (0, 1));
    // nginx saw the stale If-Range and answered the whole new file.
    assert_eq!(
        statuses(&n.access_log()),
        ["200", "200"],
        "{}",
        n.access_log()
    );
}

/// Issue 21, item 12: the summary line of `rustlive fetch` (the same line the boot logs) says
/// what verified the image: the pinned sha256, the sha256sums list (its URL), the minisign
/// signature (key id and key file), or plainly that nothing did.
#[test]
fn the_summary_says_what_verified_the_image() {
    let Some(n) = Nginx::start() else { return };
    let keys = tempfile::tempdir().unwrap();
    let (public, secret) = (keys.path().join("site.pub"), keys.path().join("site.key"));
    let made = std::process::Command::new("minisign")
        .args(["-G", "-W", "-p"])
        .arg(&public)
        .arg("-s")
        .arg(&secret)
        .output();
    if !made.is_ok_and(|o| o.status.success()) {
        rustlive::support::testing::skip("the minisign tool is not installed");
        return;
    }
    // minisign's own word for the key id: "untrusted comment: minisign public key ID".
    let key_text = std::fs::read_to_string(&public).unwrap();
    let key_id = key_text
        .lines()
        .next()
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|id| u64::from_str_radix(id, 16).ok())
        // rustlive prints 16 digits, whether or not the comment kept the leading zeros.
        .map(|id| format!("{id:016X}"))
        .unwrap();
    let content = random_bytes(1 << 20, 44);
    let img = n.root.join("root.squashfs");
    std::fs::write(&img, &content).unwrap();
    let hex = sha256_hex(&content);
    std::fs::write(n.root.join("SHA256SUMS"), format!("{hex}  root.squashfs\n")).unwrap();
    support::run_ok(
        std::process::Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(&secret)
            .arg("-m")
            .arg(&img),
    );
    let base = format!("http://{}", n.addr);
    let url = format!("{base}/root.squashfs");
    let sums = format!("{base}/SHA256SUMS");
    let out_dir = tempfile::tempdir().unwrap();
    let summary = |args: &[&str]| -> String {
        let out = out_dir.path().join("img");
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_rustlive"))
            .arg("fetch")
            .args(args)
            .arg("-o")
            .arg(&out)
            .arg(&url)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{args:?}: {err}");
        assert_eq!(std::fs::read(&out).unwrap(), content);
        std::fs::remove_file(&out).unwrap();
        err.lines()
            .find(|l| l.contains("fetched "))
            .unwrap_or_else(|| panic!("no summary line: {err}"))
            .to_string()
    };
    let line = summary(&["--sha256", &hex]);
    assert!(line.ends_with("; verified by the pinned sha256"), "{line}");
    let line = summary(&["--sha256sums", &sums]);
    assert!(
        line.ends_with(&format!("; verified by sha256sums {sums}")),
        "{line}"
    );
    let line = summary(&["--pubkey", public.to_str().unwrap()]);
    assert!(
        line.ends_with(&format!(
            "; verified by minisign signature by key {key_id} (site.pub)"
        )),
        "{line}"
    );
    let line = summary(&[
        "--keys-dir",
        keys.path().to_str().unwrap(),
        "--sha256",
        &hex,
    ]);
    assert!(
        line.ends_with(&format!(
            "; verified by the pinned sha256, minisign signature by key {key_id} (site.pub)"
        )),
        "{line}"
    );
    let line = summary(&[]);
    assert!(
        line.ends_with("; not verified: no hash or signature configured"),
        "{line}"
    );
    // nginx served the signature when, and only when, a key asked for it.
    let sig_gets = n
        .access_log()
        .lines()
        .filter(|l| l.contains("GET /root.squashfs.minisig"))
        .count();
    assert_eq!(sig_gets, 2, "{}", n.access_log());
}
