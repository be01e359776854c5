//! One node's image spread over several mirrors piece by piece (`rustlive fetch --mirrors
//! spread --node-id`, as a booting node does): every byte fetched once, from all mirrors;
//! a mirror that fails hands its pieces to the others; mirrors are mixed only when a hash
//! covers the image or their validators agree (real servers on 127.0.0.1, byte-exact results).

mod support;

use std::process::{Command, Output};
use support::http::{Fault, Reply, Request, Server};
use support::{random_bytes, run_ok, sha256_hex};

const RUSTLIVE: &str = env!("CARGO_BIN_EXE_rustlive");
const MIB: usize = 1 << 20;

/// Mirrors serving `img` with these ETags (a correct server each: ranges, If-Range).
fn mirrors(img: &[u8], etags: &[&'static str]) -> Vec<Server> {
    etags
        .iter()
        .map(|&etag| {
            let body = img.to_vec();
            Server::start(move |req| Reply::file(req, &body, etag))
        })
        .collect()
}

/// Two correct mirrors with these ETags and a third answering as `third` does.
fn two_and_a_third(
    img: &[u8],
    etags: [&'static str; 2],
    third: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> Vec<Server> {
    let mut servers = mirrors(img, &etags);
    servers.push(Server::start(third));
    servers
}

fn urls(servers: &[Server]) -> Vec<String> {
    servers.iter().map(|s| s.url("/img")).collect()
}

/// `rustlive fetch --mirrors spread --node-id ID [--sha256 HEX] -o DEST URLS…`.
fn fetch(id: &str, sha256: Option<&str>, dest: &std::path::Path, urls: &[String]) -> Output {
    let mut c = Command::new(RUSTLIVE);
    c.args([
        "fetch",
        "--mirrors",
        "spread",
        "--node-id",
        id,
        "--stall",
        "5",
    ]);
    c.args(["--timeout", "120", "-o"]).arg(dest);
    if let Some(h) = sha256 {
        c.args(["--sha256", h]);
    }
    c.args(urls).output().unwrap()
}

/// The bytes a request's reply carried, from its `Range` (the whole file without one).
fn asked(req: &Request, len: usize) -> usize {
    match req.range() {
        Some((start, Some(end))) => (end as usize + 1).min(len) - start as usize,
        Some((start, None)) => len - start as usize,
        None => len,
    }
}

/// The mirror a node's first piece goes to (as `rustlive config` shows it).
fn first_mirror(urls: &[String], id: &str) -> usize {
    let cmdline = format!("rd.rustlive.url={}", urls.join(","));
    let out =
        run_ok(Command::new(RUSTLIVE).args(["config", "--cmdline", &cmdline, "--node-id", id]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["mirror_order"]["by_piece"], true);
    urls.iter()
        .position(|u| v["mirror_order"]["urls"][0] == u.as_str())
        .unwrap()
}

/// The node id whose first piece goes to mirror `want`.
fn node_starting_on(urls: &[String], want: usize) -> String {
    (0..200)
        .map(|i| format!("52:54:00:00:01:{i:02x}"))
        .find(|id| first_mirror(urls, id) == want)
        .expect("some node starts on each mirror")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// [`fetch`] as node `id` into a scratch directory, which must succeed with exactly `img`;
/// returns what it logged.
fn fetch_ok(id: &str, sha256: Option<&str>, urls: &[String], img: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    let out = fetch(id, sha256, &dest, urls);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(std::fs::read(&dest).unwrap(), img);
    log
}

#[test]
fn one_node_fetches_every_byte_once_from_all_mirrors() {
    // 41 pieces: a mirror gets none of them with probability 4 × 0.75^41 ≈ 0.00003.
    let img = random_bytes(40 * MIB + 12345, 41);
    let servers = mirrors(&img, &["\"a\"", "\"b\"", "\"c\"", "\"d\""]);
    let log = fetch_ok("node-7", Some(&sha256_hex(&img)), &urls(&servers), &img);
    let mut total = 0;
    for (i, s) in servers.iter().enumerate() {
        let reqs = s.requests();
        assert!(!reqs.is_empty(), "mirror {i} served no piece");
        for r in &reqs {
            let (_, end) = r.range().expect("every request asks for a piece");
            assert!(end.is_some(), "a closed range: {:?}", r.header("range"));
            // Verified by a hash: no If-Range, mirrors with other ETags may serve pieces.
            assert_eq!(r.header("if-range"), None);
            total += asked(r, img.len());
        }
    }
    assert_eq!(total, img.len(), "each byte asked for exactly once");
    assert!(log.contains("pieces served by"), "{log}");
    assert!(
        log.contains("1 attempt, 0 resumes") && !log.contains("resuming"),
        "pieces are neither attempts nor resumes: {log}"
    );
}

#[test]
fn a_mirror_that_breaks_hands_its_pieces_to_the_others() {
    let img = random_bytes(16 * MIB, 42);
    // The third mirror sends 100 KiB of every piece it is asked for, then resets.
    let body = img.clone();
    let servers = two_and_a_third(&img, ["\"e\"", "\"e\""], move |req| {
        Reply::file(req, &body, "\"e\"").fault(Fault::ResetAfter(100 << 10))
    });
    let u = urls(&servers);
    let log = fetch_ok(&node_starting_on(&u, 2), Some(&sha256_hex(&img)), &u, &img);
    // It is passed over once it failed: one request, not one per piece it ranks first; a
    // mirror that has not failed takes its piece over at once.
    assert_eq!(servers[2].requests().len(), 1, "{log}");
    assert!(log.contains("retry 1 in 0.0 s from"), "{log}");
    // The piece it broke resumes on another mirror where it stopped.
    let resumed = servers[..2]
        .iter()
        .flat_map(|s| s.requests())
        .any(|r| r.range_start() == Some(100 << 10));
    assert!(resumed, "{log}");
    assert!(servers[0].requests().len() > 1 && servers[1].requests().len() > 1);
}

#[test]
fn unverified_pieces_come_only_from_mirrors_with_the_same_validators() {
    let img = random_bytes(24 * MIB, 43);
    let servers = mirrors(&img, &["\"v1\"", "\"v2\"", "\"v1\""]);
    let u = urls(&servers);
    let log = fetch_ok(&node_starting_on(&u, 0), None, &u, &img);
    // Mirror 1 was asked once, with If-Range "v1", answered the whole file and was left out.
    let other = servers[1].requests();
    assert_eq!(other.len(), 1, "{log}");
    assert_eq!(other[0].header("if-range"), Some("\"v1\""));
    assert!(log.contains("does not serve the same file"));
    let total: usize = [&servers[0], &servers[2]]
        .iter()
        .flat_map(|s| s.requests())
        .map(|r| asked(&r, img.len()))
        .sum();
    assert_eq!(total, img.len());
    assert!(
        servers[2].requests().len() > 1,
        "the agreeing mirror shares"
    );
}

#[test]
fn a_mirror_with_another_length_is_left_out() {
    let img = random_bytes(8 * MIB, 44);
    let stale = random_bytes(6 * MIB, 45);
    let servers = two_and_a_third(&img, ["\"a\"", "\"b\""], move |req| {
        Reply::file(req, &stale, "\"s\"")
    });
    let u = urls(&servers);
    let log = fetch_ok(&node_starting_on(&u, 0), Some(&sha256_hex(&img)), &u, &img);
    assert!(servers[2].requests().len() <= 1, "{log}");
}

/// Three mirrors, the third serving the image with the bytes at `flips` flipped.
fn with_a_stale_mirror(img: &[u8], flips: &[usize]) -> Vec<Server> {
    let mut other = img.to_vec();
    for &at in flips {
        other[at] ^= 1;
    }
    two_and_a_third(img, ["\"a\"", "\"a\""], move |req| {
        Reply::file(req, &other, "\"a\"")
    })
}

/// Whether mirror `s` was asked for a piece holding byte `at`.
fn served_byte(s: &Server, at: usize) -> bool {
    s.requests().iter().any(|r| match r.range() {
        Some((a, e)) => a as usize <= at && e.is_none_or(|e| e as usize >= at),
        None => true,
    })
}

#[test]
fn pieces_that_do_not_verify_are_fetched_again_whole_from_the_nodes_first_mirror() {
    let img = random_bytes(8 * MIB, 46);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    // A node whose first mirror is good and whose piece 5 comes from the stale one.
    for i in 0..64 {
        let servers = with_a_stale_mirror(&img, &[5 * MIB]);
        let u = urls(&servers);
        let id = format!("n{i}");
        if first_mirror(&u, &id) == 2 {
            continue;
        }
        let out = fetch(&id, Some(&sha256_hex(&img)), &dest, &u);
        if !served_byte(&servers[2], 5 * MIB) {
            assert!(out.status.success(), "{}", stderr(&out));
            std::fs::remove_file(&dest).unwrap();
            continue;
        }
        // The split did not verify; the retry from the node's first mirror did, byte-exact.
        let log = stderr(&out);
        assert!(out.status.success(), "{log}");
        assert!(log.contains("SHA-256 mismatch") && log.contains("fetching it whole from"));
        assert_eq!(std::fs::read(&dest).unwrap(), img);
        return;
    }
    panic!("no node of 64 fetched piece 5 from the stale mirror");
}

#[test]
fn a_stale_first_mirror_is_passed_over_for_the_whole_file() {
    let img = random_bytes(8 * MIB, 50);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    // The node's first mirror is the stale one, wrong in every piece: whatever the split took
    // from it does not verify, and neither does the whole file from it; the next mirror's does.
    let flips: Vec<usize> = (0..8).map(|k| k * MIB + 7).collect();
    let servers = with_a_stale_mirror(&img, &flips);
    let u = urls(&servers);
    let id = node_starting_on(&u, 2);
    let out = fetch(&id, Some(&sha256_hex(&img)), &dest, &u);
    let log = stderr(&out);
    assert!(out.status.success(), "{log}");
    assert_eq!(std::fs::read(&dest).unwrap(), img);
    assert!(!dir.path().join("img.part").exists());
    // The split, then the stale mirror's whole file (named in the log), then a good one's.
    assert!(log.contains("fetching it whole from"), "{log}");
    assert!(
        log.contains(&format!("the copy from {} does not verify", u[2])),
        "{log}"
    );
    let whole = |s: &Server| {
        s.requests()
            .iter()
            .filter(|r| r.header("range").is_none())
            .count()
    };
    assert_eq!(
        whole(&servers[2]),
        1,
        "the stale mirror's whole file, once: {log}"
    );
    assert_eq!(
        servers[2].requests().last().unwrap().header("range"),
        None,
        "not asked again after its whole file failed: {log}"
    );
    assert_eq!(whole(&servers[0]) + whole(&servers[1]), 1, "{log}");
}

#[test]
fn when_no_mirrors_copy_verifies_the_fetch_fails_and_leaves_nothing() {
    let img = random_bytes(8 * MIB, 51);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    // Three mirrors of the same length, each wrong in a byte of its own in every piece.
    let servers: Vec<Server> = (0..3)
        .map(|m| {
            let mut other = img.clone();
            for k in 0..8 {
                other[k * MIB + 11 + m] ^= 1;
            }
            Server::start(move |req| Reply::file(req, &other, "\"a\""))
        })
        .collect();
    let u = urls(&servers);
    let out = fetch(&node_starting_on(&u, 1), Some(&sha256_hex(&img)), &dest, &u);
    let log = stderr(&out);
    assert_eq!(out.status.code(), Some(4), "{log}");
    assert!(
        !dest.exists() && !dir.path().join("img.part").exists(),
        "{log}"
    );
    // Every mirror's whole file was tried once, and named when it did not verify.
    for (s, url) in servers.iter().zip(&u) {
        let whole = s
            .requests()
            .iter()
            .filter(|r| r.header("range").is_none())
            .count();
        assert_eq!(whole, 1, "{url}: {log}");
        assert!(
            log.contains(&format!("the copy from {url} does not verify")),
            "{log}"
        );
    }
}

#[test]
fn unverified_mirrors_without_validators_are_not_mixed() {
    let img = random_bytes(4 * MIB, 47);
    let servers: Vec<Server> = (0..3)
        .map(|_| {
            let body = img.clone();
            Server::start(move |req| {
                let mut r = Reply::file(req, &body, "\"x\"");
                r.headers.retain(|(k, _)| k != "ETag");
                r
            })
        })
        .collect();
    let u = urls(&servers);
    let log = fetch_ok(&node_starting_on(&u, 1), None, &u, &img);
    // The first piece, then the whole file again from the same mirror: nothing ties a second
    // mirror's bytes to the first's.
    assert!(servers[0].requests().is_empty() && servers[2].requests().is_empty());
    let reqs = servers[1].requests();
    assert_eq!(reqs.len(), 2, "{log}");
    assert_eq!(reqs[1].header("range"), None);
    assert!(log.contains("fetching it all from this mirror"));
}

#[test]
fn pieces_without_a_file_length_fall_back_to_one_whole_file() {
    let img = random_bytes(3 * MIB, 48);
    let servers: Vec<Server> = (0..2)
        .map(|_| {
            let body = img.clone();
            Server::start(move |req| match req.range() {
                Some((s, Some(e))) => {
                    let (s, e) = (s as usize, (e as usize).min(body.len() - 1));
                    Reply {
                        body: body[s..=e].to_vec(),
                        ..Reply::status(206)
                    }
                    .header("ETag", "\"x\"")
                    .header("Content-Range", &format!("bytes {s}-{e}/*"))
                }
                _ => Reply::ok(&body).header("ETag", "\"x\""),
            })
        })
        .collect();
    let log = fetch_ok("n", Some(&sha256_hex(&img)), &urls(&servers), &img);
    assert!(log.contains("no mirror is left to serve pieces"), "{log}");
}

#[test]
fn a_piece_that_breaks_after_the_next_was_sent_ahead_is_retried_in_order() {
    // 32 pieces: the third mirror ranks first for none after the first with probability
    // (2/3)^31 ≈ 0.000004 (with 8 it was 6 %, and then nothing broke).
    let img = random_bytes(32 * MIB, 49);
    // The third mirror serves the first piece, then ends every later one 10 KiB short: by
    // then the next piece's request has gone out (to whichever mirror ranks first for it).
    let body = img.clone();
    let servers = two_and_a_third(&img, ["\"e\"", "\"e\""], move |req| {
        let r = Reply::file(req, &body, "\"e\"");
        match req.range() {
            Some((s, Some(e))) if s > 0 => {
                let short = (e - s + 1) as usize - (10 << 10);
                r.fault(Fault::CloseAfter(short))
            }
            _ => r,
        }
    });
    let u = urls(&servers);
    let log = fetch_ok(&node_starting_on(&u, 2), Some(&sha256_hex(&img)), &u, &img);
    assert!(log.contains("retry 1 in 0.0 s from"), "{log}");
}
