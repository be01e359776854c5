//! The fetch engine against a fault-injecting HTTP server: every fault ends with exactly the
//! right bytes (or a clean refusal), checked byte for byte and by hash.

mod support;

use rustlive::fetch::attempt::AttemptError;
use rustlive::fetch::retry::Backoff;
use rustlive::fetch::{fetch_to_file, FetchError, FetchOptions};
use rustlive::support::values::parse_sha256;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::http::{Fault, Reply, Server};
use support::{random_bytes, sha256_hex};

const MIB: usize = 1 << 20;

fn opts(content: &[u8]) -> FetchOptions {
    FetchOptions {
        sha256: Some(parse_sha256(&sha256_hex(content)).unwrap()),
        stall: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        backoff: Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(200),
        },
        deadline: rustlive::support::deadline::Deadline::after(Some(Duration::from_secs(60))),
        ..FetchOptions::default()
    }
}

fn url(s: &Server, path: &str) -> reqwest::Url {
    reqwest::Url::parse(&s.url(path)).unwrap()
}

fn dest() -> (tempfile::TempDir, PathBuf) {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("img");
    (d, p)
}

fn no_leftovers(p: &Path) {
    assert!(!p.exists(), "{} must not exist", p.display());
    let part = PathBuf::from(format!("{}.part", p.display()));
    assert!(!part.exists(), "{} must not exist", part.display());
}

fn rustlive(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .args(args)
        .output()
        .unwrap()
}

/// Serves `content` (with Range support and ETag `etag`); the first request's body fails with
/// `fault`, every later one is served whole.
fn first_request_faults(content: Arc<Vec<u8>>, etag: &'static str, fault: Fault) -> Server {
    Server::start(move |r| {
        let rep = Reply::file(r, &content, etag);
        if r.n == 0 {
            rep.fault(fault.clone())
        } else {
            rep
        }
    })
}

#[test]
fn reset_mid_body_resumes_with_range() {
    let content = Arc::new(random_bytes(4 * MIB, 1));
    let s = first_request_faults(content.clone(), "\"v1\"", Fault::ResetAfter(MIB));
    let (_d, p) = dest();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &opts(&content)).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), *content);
    assert_eq!(rep.sha256.to_hex(), sha256_hex(&content));
    assert_eq!((rep.attempts, rep.resumes, rep.restarts), (2, 1, 0));
    let reqs = s.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("range"), None);
    let start = reqs[1].range_start().expect("second request is ranged");
    assert!(start > 0 && start <= MIB as u64, "resumed at {start}");
    assert_eq!(reqs[1].header("if-range"), Some("\"v1\""));
}

#[test]
fn connection_errors_never_print_the_query_string() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_d, p) = dest();
    let out = rustlive(&[
        "fetch",
        "--retries",
        "1",
        "-o",
        p.to_str().unwrap(),
        &format!("http://user:pw@{closed}/img?token=hunter2"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("gave up"), "{err}");
    assert!(!err.contains("hunter2") && !err.contains("pw@"), "{err}");
}

#[test]
fn server_without_validators_restarts_instead_of_resuming() {
    let content = Arc::new(random_bytes(2 * MIB, 18));
    let c = content.clone();
    let s = Server::start(move |r| {
        if r.n == 0 {
            Reply::ok(&c).fault(Fault::ResetAfter(MIB / 2))
        } else {
            Reply::ok(&c)
        }
    });
    let (_d, p) = dest();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &opts(&content)).unwrap();
    assert_eq!(s.requests()[1].header("range"), None);
    assert_eq!((rep.resumes, rep.restarts), (0, 1));
    assert_eq!(std::fs::read(&p).unwrap(), *content);
}

#[test]
fn stalled_body_is_abandoned_and_resumed() {
    let content = Arc::new(random_bytes(2 * MIB, 2));
    let s = first_request_faults(
        content.clone(),
        "\"s\"",
        Fault::StallAfter(MIB / 2, Duration::from_secs(8)),
    );
    let (_d, p) = dest();
    let mut o = opts(&content);
    o.stall = Duration::from_secs(1);
    let t = Instant::now();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &o).unwrap();
    assert!(t.elapsed() < Duration::from_secs(6), "{:?}", t.elapsed());
    assert_eq!(std::fs::read(&p).unwrap(), *content);
    assert_eq!(rep.resumes, 1);
    assert!(s.requests()[1].range_start().unwrap() > 0);
}

#[test]
fn silent_server_before_headers_counts_as_a_stall() {
    let content = random_bytes(10_000, 19);
    let c = content.clone();
    let s = Server::start(move |r| {
        if r.n == 0 {
            // Accepted, request read, then nothing: no status line for far longer than the stall.
            std::thread::sleep(Duration::from_secs(6));
        }
        Reply::ok(&c)
    });
    let (_d, p) = dest();
    let mut o = opts(&content);
    o.stall = Duration::from_secs(1);
    let t = Instant::now();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &o).unwrap();
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    assert_eq!(rep.attempts, 2);
    assert_eq!(std::fs::read(&p).unwrap(), content);
}

#[test]
fn slow_but_moving_transfer_is_never_timed_out() {
    // 24 pieces 150 ms apart: 3.6 s in all, far over the 1 s stall timeout, never silent for it.
    let content = Arc::new(random_bytes(24 * 1024, 3));
    let c = content.clone();
    let s = Server::start(move |_| {
        Reply::ok(&c).fault(Fault::Trickle {
            piece: 1024,
            pause: Duration::from_millis(150),
        })
    });
    let (_d, p) = dest();
    let mut o = opts(&content);
    o.stall = Duration::from_secs(1);
    // About 6.8 KiB/s: above the default minimum rate, but a loaded machine can stretch the
    // pauses; this test is about the stall timer, so the floor is set well below.
    o.min_rate = 1024;
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &o).unwrap();
    assert_eq!(rep.attempts, 1);
    assert!(rep.elapsed > Duration::from_secs(3));
    assert_eq!(std::fs::read(&p).unwrap(), *content);
}

#[test]
fn service_unavailable_twice_then_ok() {
    let content = random_bytes(100_000, 4);
    let c = content.clone();
    let s = Server::start(move |r| {
        if r.n < 2 {
            Reply::status(503)
        } else {
            Reply::ok(&c)
        }
    });
    let (_d, p) = dest();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &opts(&content)).unwrap();
    assert_eq!(rep.attempts, 3);
    assert_eq!(std::fs::read(&p).unwrap(), content);
}

#[test]
fn too_many_requests_honours_retry_after() {
    let content = random_bytes(1000, 5);
    let c = content.clone();
    let s = Server::start(move |r| {
        if r.n == 0 {
            Reply::status(429).header("Retry-After", "1")
        } else {
            Reply::ok(&c)
        }
    });
    let (_d, p) = dest();
    let mut o = opts(&content);
    o.backoff.cap = Duration::from_secs(5);
    let t = Instant::now();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &o).unwrap();
    let waited = t.elapsed();
    assert!(waited >= Duration::from_secs(1), "waited only {waited:?}");
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    assert_eq!(rep.attempts, 2);
}

#[test]
fn full_200_answer_to_a_range_request_restarts_from_zero() {
    let content = Arc::new(random_bytes(3 * MIB, 6));
    let c = content.clone();
    let s = Server::start(move |r| {
        // A server that ignores Range entirely.
        let rep = Reply::ok(&c).header("ETag", "\"x\"");
        if r.n == 0 {
            rep.fault(Fault::ResetAfter(MIB))
        } else {
            rep
        }
    });
    let (_d, p) = dest();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &opts(&content)).unwrap();
    assert!(
        s.requests()[1].range_start().unwrap() > 0,
        "resume was attempted"
    );
    assert_eq!((rep.resumes, rep.restarts), (0, 1));
    // The hash covers every byte once: the pinned SHA-256 matched and the file is exact.
    assert_eq!(std::fs::read(&p).unwrap(), *content);
    assert_eq!(rep.bytes, content.len() as u64);
}

#[test]
fn partial_response_with_wrong_start_or_total_is_refused() {
    for lie in ["start", "total"] {
        let content = Arc::new(random_bytes(2 * MIB, 7));
        let c = content.clone();
        let s = Server::start(move |r| match (r.n, r.range_start()) {
            (0, _) => Reply::file(r, &c, "\"e\"").fault(Fault::ResetAfter(MIB / 2)),
            (_, Some(start)) => {
                let start = start as usize;
                if lie == "start" {
                    Reply::partial(&c, start - 100, c.len(), "\"e\"")
                } else {
                    Reply::partial(&c, start, c.len() + 5, "\"e\"")
                }
            }
            (_, None) => Reply::file(r, &c, "\"e\""),
        });
        let (_d, p) = dest();
        let rep = fetch_to_file(&[url(&s, "/img")], &p, &opts(&content)).unwrap();
        let reqs = s.requests();
        assert_eq!(reqs.len(), 3, "{lie}");
        assert!(reqs[1].range_start().is_some());
        assert_eq!(
            reqs[2].header("range"),
            None,
            "{lie}: starts over without Range"
        );
        assert_eq!(rep.resumes, 0);
        assert_eq!(std::fs::read(&p).unwrap(), *content, "{lie}");
    }
}

#[test]
fn changed_etag_between_attempts_restarts_with_the_new_content() {
    let old = Arc::new(random_bytes(2 * MIB, 8));
    let new = Arc::new(random_bytes(2 * MIB + 1000, 9));
    for honours_if_range in [true, false] {
        let (o2, n2) = (old.clone(), new.clone());
        let s = Server::start(move |r| {
            if r.n == 0 {
                return Reply::file(r, &o2, "\"old\"").fault(Fault::ResetAfter(MIB / 2));
            }
            match r.range_start() {
                // A broken cache: serves a range of the new file despite If-Range.
                Some(st) if !honours_if_range => {
                    Reply::partial(&n2, st as usize, n2.len(), "\"new\"")
                }
                _ => Reply::file(r, &n2, "\"new\""),
            }
        });
        let (_d, p) = dest();
        let rep = fetch_to_file(&[url(&s, "/img")], &p, &opts(&new)).unwrap();
        assert_eq!(
            std::fs::read(&p).unwrap(),
            *new,
            "if-range honoured: {honours_if_range}"
        );
        assert_eq!(rep.resumes, 0);
        assert_eq!(s.requests()[1].header("if-range"), Some("\"old\""));
    }
}

#[test]
fn truncated_body_is_completed_by_a_resume() {
    let content = Arc::new(random_bytes(MIB, 10));
    let s = first_request_faults(content.clone(), "\"t\"", Fault::CloseAfter(300_000));
    let (_d, p) = dest();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &opts(&content)).unwrap();
    assert_eq!(rep.resumes, 1);
    assert_eq!(s.requests()[1].range_start(), Some(300_000));
    assert_eq!(std::fs::read(&p).unwrap(), *content);
}

#[test]
fn bytes_beyond_content_length_never_reach_the_file() {
    let content = random_bytes(500_000, 11);
    let c = content.clone();
    let s = Server::start(move |_| {
        let mut r = Reply::ok(&c);
        r.trailing = vec![0xAA; 70_000];
        r
    });
    let (_d, p) = dest();
    let rep = fetch_to_file(&[url(&s, "/img")], &p, &opts(&content)).unwrap();
    assert_eq!(rep.bytes, content.len() as u64);
    assert_eq!(std::fs::read(&p).unwrap(), content);
}

#[test]
fn partial_body_longer_than_its_range_is_aborted() {
    let content = Arc::new(random_bytes(MIB, 12));
    let c = content.clone();
    let s = Server::start(move |r| match r.range_start() {
        None => Reply::file(r, &c, "\"o\"").fault(Fault::CloseAfter(200_000)),
        // Content-Range says the file ends here, the chunked body keeps going.
        Some(st) => {
            let mut rep = Reply::partial(&c, st as usize, c.len(), "\"o\"").chunked();
            rep.trailing = vec![0x55; 100_000];
            rep
        }
    });
    let (_d, p) = dest();
    let e = fetch_to_file(&[url(&s, "/img")], &p, &opts(&content)).unwrap_err();
    assert!(
        matches!(
            e,
            FetchError::Refused {
                source: AttemptError::Oversize { expected },
                ..
            } if expected == content.len() as u64
        ),
        "{e:?}"
    );
    assert_eq!(e.exit_code() as u8, 3);
    no_leftovers(&p);
}

#[test]
fn one_flipped_bit_exits_4_and_leaves_nothing() {
    let content = random_bytes(300_000, 13);
    let mut bad = content.clone();
    bad[123_456] ^= 0x10;
    let s = Server::start(move |_| Reply::ok(&bad));
    let (_d, p) = dest();
    let out = rustlive(&[
        "fetch",
        "--sha256",
        &sha256_hex(&content),
        "-o",
        p.to_str().unwrap(),
        &s.url("/img"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains(&sha256_hex(&content)),
        "expected hash logged: {err}"
    );
    no_leftovers(&p);
}

#[test]
fn not_found_fails_fast_without_retrying() {
    let s = Server::start(|_| Reply::status(404));
    let (_d, p) = dest();
    let t = Instant::now();
    let out = rustlive(&[
        "fetch",
        "-o",
        p.to_str().unwrap(),
        &s.url("/missing?token=hunter2"),
    ]);
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(s.requests().len(), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("404"), "{err}");
    assert!(!err.contains("hunter2"), "query string leaked: {err}");
    no_leftovers(&p);
}

#[test]
fn redirect_loop_is_refused() {
    let s = Server::start(|r| {
        let next = if r.path == "/a" { "/b" } else { "/a" };
        Reply::status(302).header("Location", next)
    });
    let (_d, p) = dest();
    let t = Instant::now();
    let out = rustlive(&["fetch", "-o", p.to_str().unwrap(), &s.url("/a")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(t.elapsed() < Duration::from_secs(2));
    assert!(err.contains("redirect loop"), "{err}");
    assert!(s.requests().len() <= 3);
}

#[test]
fn long_redirect_chains_are_bounded() {
    let s = Server::start(|r| {
        let n: u32 = r.path.trim_start_matches('/').parse().unwrap_or(0);
        Reply::status(302).header("Location", &format!("/{}", n + 1))
    });
    let (_d, p) = dest();
    let e = fetch_to_file(&[url(&s, "/0")], &p, &opts(b"x")).unwrap_err();
    assert!(
        rustlive::support::exit::report(&e).contains("more than 10 redirects"),
        "{e:?}"
    );
    assert_eq!(s.requests().len(), 11);
}

#[test]
fn mirrors_rotate_past_a_dead_one() {
    let content = random_bytes(200_000, 14);
    let c = content.clone();
    let good = Server::start(move |_| Reply::ok(&c));
    let missing = Server::start(|_| Reply::status(404));
    // A port nothing listens on: connection refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (_d, p) = dest();
    let urls = [
        reqwest::Url::parse(&format!("http://{closed}/img")).unwrap(),
        url(&missing, "/img"),
        url(&good, "/img"),
    ];
    let rep = fetch_to_file(&urls, &p, &opts(&content)).unwrap();
    assert_eq!(rep.attempts, 3);
    assert_eq!(rep.url, good.url("/img"));
    assert_eq!(std::fs::read(&p).unwrap(), content);
}

#[test]
fn deadline_bounds_the_retries() {
    let s = Server::start(|_| Reply::status(503));
    let (_d, p) = dest();
    let t = Instant::now();
    let out = rustlive(&[
        "fetch",
        "--timeout",
        "2",
        "-o",
        p.to_str().unwrap(),
        &s.url("/img"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(err.contains("deadline"), "{err}");
    assert!(s.requests().len() >= 2);
}

#[test]
fn retries_limit_attempts() {
    let s = Server::start(|_| Reply::status(500));
    let (_d, p) = dest();
    let mut o = opts(b"x");
    o.retries = Some(2);
    let e = fetch_to_file(&[url(&s, "/img")], &p, &o).unwrap_err();
    assert!(matches!(e, FetchError::GaveUp { attempts: 3, .. }), "{e:?}");
    assert_eq!(s.requests().len(), 3);
}

#[test]
fn cli_reports_progress_and_summary() {
    let content = Arc::new(random_bytes(MIB, 15));
    let s = first_request_faults(content.clone(), "\"p\"", Fault::ResetAfter(300_000));
    let (_d, p) = dest();
    let hex = sha256_hex(&content);
    let out = rustlive(&[
        "fetch",
        "--sha256",
        &hex,
        "-o",
        p.to_str().unwrap(),
        &s.url("/img"),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(std::fs::read(&p).unwrap(), *content);
    let summary = err.lines().find(|l| l.contains("fetched")).expect(&err);
    assert!(
        summary.contains("1.0 MiB") && summary.contains("2 attempts"),
        "{summary}"
    );
    assert!(
        summary.contains("1 resume,") && summary.contains(&hex),
        "{summary}"
    );
}

#[test]
fn a_transfer_above_the_minimum_rate_is_never_dropped_but_one_below_is() {
    // 2 KiB every 200 ms (10 KiB/s) against a floor of 4 KiB/s over 1 s windows: kept. The same
    // pieces 2 s apart (1 KiB/s, never silent for the 3 s stall): dropped as too slow.
    let content = Arc::new(random_bytes(24 * 1024, 21));
    for (pause, ok) in [(200, true), (2000, false)] {
        let c = content.clone();
        let s = Server::start(move |_| {
            Reply::ok(&c).fault(Fault::Trickle {
                piece: 2048,
                pause: Duration::from_millis(pause),
            })
        });
        let (_d, p) = dest();
        let mut o = opts(&content);
        o.stall = Duration::from_secs(if ok { 1 } else { 3 });
        o.retries = Some(0);
        let r = fetch_to_file(&[url(&s, "/img")], &p, &o);
        if ok {
            assert_eq!(r.unwrap().attempts, 1);
            assert_eq!(std::fs::read(&p).unwrap(), *content);
        } else {
            let e = r.unwrap_err();
            assert!(
                matches!(
                    &e,
                    FetchError::GaveUp {
                        last: AttemptError::TooSlow { .. },
                        ..
                    }
                ),
                "{e:?}"
            );
            no_leftovers(&p);
        }
    }
}

#[test]
fn cli_prints_progress_lines_during_a_slow_transfer() {
    // 2.6 s of trickling: at least one progress line (they come every 2 s).
    let content = Arc::new(random_bytes(64 * 1024, 20));
    let c = content.clone();
    let s = Server::start(move |_| {
        Reply::ok(&c).fault(Fault::Trickle {
            piece: 4096,
            pause: Duration::from_millis(160),
        })
    });
    let (_d, p) = dest();
    let out = rustlive(&["fetch", "-o", p.to_str().unwrap(), &s.url("/img")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let line = err
        .lines()
        .find(|l| l.starts_with("rustlive: fetch ") && l.contains("/0.1 MiB"))
        .unwrap_or_else(|| panic!("no progress line in {err}"));
    assert!(line.contains("MiB/s eta "), "{line}");
}

#[test]
fn sha256sums_list_selects_the_line_for_the_image() {
    let content = random_bytes(50_000, 16);
    let c = content.clone();
    let sums = format!(
        "{}  other.img\n{}  root.squashfs\n",
        "0".repeat(64),
        sha256_hex(&content)
    );
    let bad = AtomicBool::new(false);
    let bad = Arc::new(bad);
    let b2 = bad.clone();
    let s = Server::start(move |r| match r.path.as_str() {
        "/SHA256SUMS" => Reply::ok(sums.as_bytes()),
        _ if b2.load(Ordering::SeqCst) => Reply::ok(b"tampered"),
        _ => Reply::ok(&c),
    });
    let (_d, p) = dest();
    let args = |p: &Path| {
        rustlive(&[
            "fetch",
            "--sha256sums",
            &s.url("/SHA256SUMS"),
            "-o",
            p.to_str().unwrap(),
            &s.url("/images/root.squashfs"),
        ])
    };
    assert_eq!(args(&p).status.code(), Some(0));
    assert_eq!(std::fs::read(&p).unwrap(), content);
    bad.store(true, Ordering::SeqCst);
    let p2 = p.with_file_name("img2");
    assert_eq!(args(&p2).status.code(), Some(4));
    no_leftovers(&p2);
}

#[test]
fn unverified_download_is_refused_when_required() {
    let s = Server::start(|_| Reply::ok(b"anything"));
    let (_d, p) = dest();
    let out = rustlive(&[
        "fetch",
        "--require-verified",
        "-o",
        p.to_str().unwrap(),
        &s.url("/img"),
    ]);
    assert_eq!(out.status.code(), Some(4));
    assert!(s.requests().is_empty(), "nothing downloaded");
    no_leftovers(&p);
}

#[test]
fn file_urls_are_copied_and_verified() {
    let content = random_bytes(300_000, 17);
    let (d, p) = dest();
    let src = d.path().join("src.img");
    std::fs::write(&src, &content).unwrap();
    let u = reqwest::Url::from_file_path(&src).unwrap();
    let rep = fetch_to_file(&[u], &p, &opts(&content)).unwrap();
    assert_eq!(rep.bytes, content.len() as u64);
    assert_eq!(std::fs::read(&p).unwrap(), content);
}

#[test]
fn fetch_bytes_is_bounded() {
    let s = Server::start(|_| Reply::ok(&[7u8; 5000]));
    let o = opts(b"unused");
    let o = FetchOptions { sha256: None, ..o };
    let u = url(&s, "/s.json");
    assert_eq!(
        rustlive::fetch::fetch_bytes(&u, &o, 5000)
            .unwrap()
            .as_slice(),
        &[7u8; 5000][..]
    );
    let e = rustlive::fetch::fetch_bytes(&u, &o, 4999).unwrap_err();
    assert!(matches!(e, FetchError::TooLarge { max: 4999, .. }), "{e:?}");
    let pinned = FetchOptions {
        sha256: Some(parse_sha256(&"0".repeat(64)).unwrap()),
        ..o
    };
    let e = rustlive::fetch::fetch_bytes(&u, &pinned, 5000).unwrap_err();
    assert_eq!(e.exit_code() as u8, 4);
}
