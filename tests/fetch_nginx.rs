//! Against real nginx (what sites serve images with): a broken transfer resumes with Range and
//! If-Range on nginx's ETag and gets a 206; a file replaced meanwhile restarts from zero.

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
