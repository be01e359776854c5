//! `rustlive config --node-id` shows a node's mirror order, and `rustlive fetch --mirrors
//! spread --node-id` fetches in exactly that order (real servers on 127.0.0.1).

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::http::{Fault, Reply, Server};
use support::{random_bytes, run_ok, sha256_hex};

const RUSTLIVE: &str = env!("CARGO_BIN_EXE_rustlive");

fn order(cmdline: &str, id: &str) -> Vec<String> {
    let out =
        run_ok(Command::new(RUSTLIVE).args(["config", "--cmdline", cmdline, "--node-id", id]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["mirror_order"]["urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fetch_follows_the_order_config_shows() {
    let img = random_bytes(64 << 10, 11);
    let servers: Vec<Server> = (0..4)
        .map(|_| {
            let body = img.clone();
            Server::start(move |req| Reply::file(req, &body, "\"e\""))
        })
        .collect();
    let urls: Vec<String> = servers.iter().map(|s| s.url("/img")).collect();
    let cmdline = format!("rd.rustlive.url={}", urls.join(","));
    let mut firsts = std::collections::BTreeSet::new();
    let dir = tempfile::tempdir().unwrap();
    for i in 0..24 {
        let id = format!("52:54:00:00:00:{i:02x}");
        let o = order(&cmdline, &id);
        let mut sorted = o.clone();
        sorted.sort();
        let mut want = urls.clone();
        want.sort();
        assert_eq!(sorted, want, "a permutation of the mirrors");
        firsts.insert(o[0].clone());
        // The same node fetching: its first mirror, and only that one, gets the request.
        let before: Vec<usize> = servers.iter().map(|s| s.requests().len()).collect();
        let dest = dir.path().join(format!("{i}.img"));
        let mut args = vec![
            "fetch".to_string(),
            "-o".into(),
            dest.to_str().unwrap().into(),
            "--sha256".into(),
            sha256_hex(&img),
            "--mirrors".into(),
            "spread".into(),
            "--node-id".into(),
            id.clone(),
        ];
        args.extend(urls.iter().cloned());
        run_ok(Command::new(RUSTLIVE).args(&args));
        assert_eq!(std::fs::read(&dest).unwrap(), img);
        for (s, b) in servers.iter().zip(before) {
            let got = s.requests().len() - b;
            let first = s.url("/img") == o[0];
            assert_eq!(
                got,
                usize::from(first),
                "{id}: {} served {got}",
                s.url("/img")
            );
        }
    }
    assert!(firsts.len() >= 3, "24 nodes all start on {firsts:?}");
    // listed: everyone starts on the first mirror.
    let out = Command::new(RUSTLIVE)
        .args([
            "config",
            "--cmdline",
            &format!("{cmdline} rd.rustlive.mirrors=listed"),
            "--node-id",
            "x",
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mirror_order"]["policy"], "listed");
    assert_eq!(v["mirror_order"]["urls"][0], urls[0].as_str());
}

/// `rustlive fetch` (listed order, the default) with `--sha256` of `img` into a scratch
/// directory; the output and the directory.
fn fetch_listed(img: &[u8], urls: &[String], timeout: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Command::new(RUSTLIVE);
    c.args(["fetch", "--stall", "2", "--timeout", timeout, "-o"])
        .arg(dir.path().join("img"))
        .args(["--sha256", &sha256_hex(img)])
        .args(urls);
    (c.output().unwrap(), dir)
}

/// A mirror serving `img` with one byte flipped: same length, same ETag, other bytes.
fn stale(img: &[u8]) -> Server {
    let mut other = img.to_vec();
    other[img.len() / 2] ^= 1;
    Server::start(move |req| Reply::file(req, &other, "\"e\""))
}

#[test]
fn listed_mirrors_pass_over_a_copy_that_does_not_verify() {
    let img = random_bytes(256 << 10, 12);
    let body = img.clone();
    let good = Server::start(move |req| Reply::file(req, &body, "\"e\""));
    let (bad, bad2) = (stale(&img), stale(&img));
    let urls = vec![bad.url("/img"), bad2.url("/img"), good.url("/img")];
    let (out, dir) = fetch_listed(&img, &urls, "60");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert_eq!(std::fs::read(dir.path().join("img")).unwrap(), img);
    // Each stale copy fetched once, whole, and named; then the next mirror's, whole.
    for (s, u) in [(&bad, &urls[0]), (&bad2, &urls[1])] {
        assert_eq!(s.requests().len(), 1, "{log}");
        assert!(
            log.contains(&format!("the copy from {u} does not verify")),
            "{log}"
        );
    }
    let reqs = good.requests();
    assert_eq!(reqs.len(), 1, "{log}");
    assert_eq!(reqs[0].header("range"), None);
    assert!(!dir.path().join("img.part").exists());
}

#[test]
fn whole_file_retries_after_a_bad_copy_end_at_the_deadline() {
    let img = random_bytes(256 << 10, 13);
    let bad = stale(&img);
    // The next mirror accepts and never answers.
    let silent =
        Server::start(|_| Reply::status(200).fault(Fault::Silent(Duration::from_secs(30))));
    let urls = vec![bad.url("/img"), silent.url("/img")];
    let t = Instant::now();
    let (out, dir) = fetch_listed(&img, &urls, "6");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(3),
        "the deadline, after the bad copy: {log}"
    );
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "{:?}: {log}",
        t.elapsed()
    );
    assert!(log.contains("deadline"), "{log}");
    assert_eq!(bad.requests().len(), 1, "not asked again: {log}");
    assert!(!silent.requests().is_empty(), "{log}");
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "nothing left: {log}"
    );
}
