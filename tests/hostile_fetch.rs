//! `rustlive fetch` against hostile or broken servers and sources. Every case runs the real
//! binary and asserts the same four things: no panic (exit code 134 is an abort), done within
//! the deadline plus slack, no leftover image or `.part` file, and neither the URL's userinfo
//! nor its query string in the output; then the exit code and the bytes, when it succeeds.

mod support;

use rustlive::fetch::retry::Backoff;
use rustlive::fetch::{fetch_bytes, fetch_to_file, FetchError, FetchOptions};
use rustlive::support::deadline::Deadline;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::http::{Fault, Reply, Request, Server};
use support::{random_bytes, sha256_hex};

const MIB: usize = 1 << 20;
/// Slack over the deadline for a loaded 2-core machine.
const SLACK: Duration = Duration::from_secs(2);
/// Words that must never be printed: the userinfo password and the query token of every URL.
const SECRETS: [&str; 2] = ["hunter2", "sekrit"];

struct Run {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
}

/// Runs `rustlive fetch ARGS -o DEST URL`, killing it (and failing) long after `limit`.
fn fetch(args: &[&str], dest: &Path, url: &str, limit: Duration) -> Run {
    let t = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rustlive"))
        .arg("fetch")
        .args(args)
        .arg("-o")
        .arg(dest)
        .arg(url)
        .env("RUSTLIVE_LOG", "stderr")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let hard = limit + Duration::from_secs(20);
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
    let stderr = reader.join().unwrap();
    let Some(status) = status else {
        panic!("still running after {hard:?}, killed; stderr:\n{stderr}");
    };
    Run {
        code: status.code(),
        stderr,
        elapsed,
    }
}

/// The checks every case makes.
fn common(r: &Run, dest: &Path, limit: Duration) {
    assert_ne!(r.code, Some(134), "panicked:\n{}", r.stderr);
    assert!(r.code.is_some(), "killed by a signal:\n{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(
        r.elapsed <= limit + SLACK,
        "took {:?}, limit {limit:?}:\n{}",
        r.elapsed,
        r.stderr
    );
    for s in SECRETS {
        assert!(!r.stderr.contains(s), "leaked {s}:\n{}", r.stderr);
    }
    assert!(!part(dest).exists(), "{} left behind", part(dest).display());
}

fn failed(r: &Run, dest: &Path, limit: Duration, code: i32) {
    common(r, dest, limit);
    assert_eq!(r.code, Some(code), "{}", r.stderr);
    assert!(!dest.exists(), "{} must not exist", dest.display());
}

fn part(dest: &Path) -> PathBuf {
    PathBuf::from(format!("{}.part", dest.display()))
}

/// A destination in a tmpfs, as the image tmpfs is at boot: a disk's writeback throttling can
/// stall a write() for seconds, which would measure the test machine, not the deadline.
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

/// The server's URL with a password and a token that must never be printed.
fn secret_url(s: &Server, path: &str) -> String {
    format!("http://user:hunter2@{}{path}?token=sekrit", s.addr)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Fetches `path` from `s` by its secret URL with `args` into a fresh destination, `limit`
/// seconds allowed; asserts the common checks, exit `code` and that nothing was written.
#[track_caller]
fn fetch_fails(s: &Server, path: &str, args: &[&str], limit: u64, code: i32) -> Run {
    let (_d, p) = dest();
    let r = fetch(args, &p, &secret_url(s, path), secs(limit));
    failed(&r, &p, secs(limit), code);
    r
}

/// Fetches `path` from `s` like [`fetch_fails`], but asserts the common checks and success;
/// returns the bytes written.
#[track_caller]
fn fetch_ok(s: &Server, path: &str, args: &[&str], limit: u64) -> (Vec<u8>, Run) {
    let (_d, p) = dest();
    let r = fetch(args, &p, &secret_url(s, path), secs(limit));
    common(&r, &p, secs(limit));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    (std::fs::read(&p).unwrap(), r)
}

/// A server that sends `content` `piece` bytes at a time, `pause` apart.
fn trickler(content: Vec<u8>, piece: usize, pause: Duration) -> Server {
    Server::start(move |_| Reply::ok(&content).fault(Fault::Trickle { piece, pause }))
}

#[test]
fn trickle_of_one_byte_every_two_seconds_is_bounded_by_the_deadline() {
    let s = trickler(random_bytes(MIB, 1), 1, secs(2));
    let r = fetch_fails(&s, "/img", &["--timeout", "10", "--stall", "3"], 10, 3);
    // The minimum-progress rule catches it before the deadline does.
    assert!(r.stderr.contains("too slow"), "{}", r.stderr);
}

#[test]
fn trickle_of_one_kib_per_second_is_bounded_by_the_deadline() {
    let s = trickler(random_bytes(MIB, 2), 1024, secs(1));
    let r = fetch_fails(&s, "/img", &["--timeout", "10", "--stall", "3"], 10, 3);
    assert!(r.stderr.contains("deadline"), "{}", r.stderr);
}

#[test]
fn status_line_trickled_byte_by_byte_is_bounded() {
    let s = Server::start(|_| Reply::ok(b"never").fault(Fault::HeadTrickle(secs(1))));
    fetch_fails(&s, "/img", &["--timeout", "6", "--stall", "2"], 6, 3);
}

#[test]
fn server_that_accepts_and_never_answers_does_not_overrun_the_deadline() {
    let s = Server::start(|_| Reply::ok(b"never").fault(Fault::Silent(secs(60))));
    let r = fetch_fails(&s, "/img", &["--timeout", "5", "--stall", "4"], 5, 3);
    assert!(r.stderr.contains("deadline"), "{}", r.stderr);
}

#[test]
fn retry_after_far_in_the_future_neither_panics_nor_waits() {
    for ra in [
        "Fri, 31 Dec 9999 23:59:59 GMT",
        "Sat, 01 Jan 2201 00:00:00 GMT",
        "18446744073709551615",
        "Mon, 01 Jan 99999999999999999 00:00:00 GMT",
    ] {
        let s = Server::start(move |_| Reply::status(503).header("Retry-After", ra));
        fetch_fails(&s, "/img", &["--timeout", "3", "--stall", "2"], 3, 3);
    }
}

#[test]
fn absurd_timeout_and_stall_values_do_not_overflow() {
    let content = random_bytes(300_000, 3);
    let c = content.clone();
    let s = Server::start(move |r| Reply::file(r, &c, "\"a\""));
    let (_d, p) = dest();
    let max = u64::MAX.to_string();
    let r = fetch(
        &["--timeout", &max, "--stall", &max],
        &p,
        &secret_url(&s, "/img"),
        secs(10),
    );
    common(&r, &p, secs(10));
    // The command line may refuse such values (exit 2); if it takes them, the fetch works.
    if r.code == Some(0) {
        assert_eq!(std::fs::read(&p).unwrap(), content);
    } else {
        assert_eq!(r.code, Some(2), "{}", r.stderr);
    }
}

/// A server that only knows `Last-Modified`, ignores `If-Range`, and after the first drop
/// serves a newer version of the file as a 206 from the requested offset.
fn splicing_server(old: Arc<Vec<u8>>, new: Arc<Vec<u8>>) -> Server {
    Server::start(move |r: &Request| {
        let lm_old = "Mon, 01 Jan 2024 00:00:00 GMT";
        let lm_new = "Tue, 02 Jan 2024 00:00:00 GMT";
        if r.n == 0 {
            return Reply::ok(&old)
                .header("Last-Modified", lm_old)
                .fault(Fault::ResetAfter(old.len() / 2));
        }
        match r.range_start() {
            Some(st) if (st as usize) < new.len() => Reply {
                body: new[st as usize..].to_vec(),
                ..Reply::status(206)
            }
            .header("Last-Modified", lm_new)
            .header(
                "Content-Range",
                &format!("bytes {st}-{}/{}", new.len() - 1, new.len()),
            ),
            _ => Reply::ok(&new).header("Last-Modified", lm_new),
        }
    })
}

#[test]
fn resume_never_splices_two_versions_told_apart_by_last_modified() {
    let old = Arc::new(random_bytes(2 * MIB, 4));
    let new = Arc::new(random_bytes(2 * MIB, 5));
    let s = splicing_server(old.clone(), new.clone());
    // Unverified, as livenet boots by default: nothing but the validators protects the bytes.
    let (got, r) = fetch_ok(&s, "/img", &["--timeout", "20", "--stall", "3"], 20);
    assert!(
        got == *new,
        "spliced: {} bytes, sha256 {}, new is {}:\n{}",
        got.len(),
        sha256_hex(&got),
        sha256_hex(&new),
        r.stderr
    );
    assert!(r.stderr.contains("Last-Modified changed"), "{}", r.stderr);
    // The restart after the bad 206 is not blamed on a missing validator.
    assert!(!r.stderr.contains("sent no ETag"), "{}", r.stderr);
}

#[test]
fn partial_response_with_another_length_is_reported_in_bytes() {
    let old = Arc::new(random_bytes(MIB, 6));
    let new = Arc::new(random_bytes(2 * MIB, 7));
    let (o, n) = (old.clone(), new.clone());
    let s = Server::start(move |r| {
        if r.n == 0 {
            return Reply::file(r, &o, "\"e\"").fault(Fault::ResetAfter(o.len() / 2));
        }
        match r.range_start() {
            // The same ETag, another length: a broken cache.
            Some(st) => Reply::partial(&n, st as usize, n.len(), "\"e\""),
            None => Reply::ok(&n).header("ETag", "\"e2\""),
        }
    });
    let (got, r) = fetch_ok(&s, "/img", &["--timeout", "20", "--stall", "3"], 20);
    assert_eq!(got, *new);
    assert!(
        r.stderr
            .contains("the file length changed from 1048576 to 2097152 bytes"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("Some("), "{}", r.stderr);
    assert!(!r.stderr.contains("sent no ETag"), "{}", r.stderr);
}

#[test]
fn a_non_http_answer_is_a_protocol_error_not_a_connection_failure() {
    let s = Server::start(|_| {
        Reply::status(200).fault(Fault::Raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec(), secs(0)))
    });
    let r = fetch_fails(
        &s,
        "/img",
        &["--timeout", "4", "--stall", "2", "--retries", "0"],
        4,
        3,
    );
    assert!(!r.stderr.contains("cannot connect"), "{}", r.stderr);
    assert!(r.stderr.contains("HTTP"), "{}", r.stderr);
    // One attempt, said so in the singular.
    assert!(r.stderr.contains("after 1 attempt:"), "{}", r.stderr);
}

#[test]
fn absurd_headers_are_refused_cleanly() {
    let huge = format!(
        "HTTP/1.1 200 OK\r\nX-Big: {}\r\nContent-Length: 5\r\n\r\nhello",
        "a".repeat(2 * MIB)
    );
    let many = format!(
        "HTTP/1.1 200 OK\r\n{}Content-Length: 5\r\n\r\nhello",
        (0..5000)
            .map(|i| format!("X-{i}: v\r\n"))
            .collect::<String>()
    );
    let bad_len = "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\nhello";
    let neg_range = "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes -5-3/2\r\n\
                     Content-Length: 5\r\n\r\nhello";
    for raw in [huge, many, bad_len.to_string(), neg_range.to_string()] {
        let bytes = raw.into_bytes();
        let s =
            Server::start(move |_| Reply::status(200).fault(Fault::Raw(bytes.clone(), secs(0))));
        fetch_fails(
            &s,
            "/img",
            &["--timeout", "4", "--stall", "2", "--retries", "1"],
            4,
            3,
        );
    }
}

#[test]
fn an_endless_body_is_cut_by_the_deadline_and_leaves_nothing() {
    let s = Server::start(|_| Reply::status(200).chunked().fault(Fault::Endless(secs(30))));
    fetch_fails(&s, "/img", &["--timeout", "3", "--stall", "2"], 3, 3);
    // The in-memory fetch stops at its cap, long before any deadline.
    let t = Instant::now();
    let e = fetch_bytes(&lib_url(&s, "/s.json"), &lib_opts(20, 3), 1 << 20).unwrap_err();
    assert!(matches!(e, FetchError::TooLarge { .. }), "{e:?}");
    assert!(t.elapsed() < secs(5), "{:?}", t.elapsed());
}

#[test]
fn redirect_loops_are_refused_without_leaking() {
    let s = Server::start(|r| {
        let next = if r.path.starts_with("/a") { "/b" } else { "/a" };
        Reply::status(302).header("Location", &format!("{next}?token=sekrit"))
    });
    let r = fetch_fails(&s, "/a", &["--timeout", "5", "--stall", "2"], 5, 3);
    assert!(r.stderr.contains("redirect"), "{}", r.stderr);
}

#[test]
fn a_fifo_behind_file_url_is_refused_not_waited_on() {
    let (d, p) = dest();
    let fifo = d.path().join("fifo");
    rustlive::sys::fs::make_fifo(&fifo, 0o600).unwrap();
    let url = format!("file://{}", fifo.display());
    let r = fetch(&["--timeout", "3"], &p, &url, secs(3));
    failed(&r, &p, secs(3), 3);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
}

#[test]
fn a_device_behind_file_url_is_refused_not_copied_until_the_disk_is_full() {
    let (_d, p) = dest();
    let r = fetch(&["--timeout", "3"], &p, "file:///dev/zero", secs(3));
    failed(&r, &p, secs(3), 3);
    assert!(r.stderr.contains("not a regular file"), "{}", r.stderr);
}

#[test]
fn file_url_paths_are_percent_decoded() {
    let content = random_bytes(100_000, 8);
    let (d, p) = dest();
    let dir = d.path().join("sp ace");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("x.img"), &content).unwrap();
    let url = format!("file://{}/sp%20ace/x.img", d.path().display());
    let sha = sha256_hex(&content);
    let r = fetch(&["--timeout", "5", "--sha256", &sha], &p, &url, secs(5));
    common(&r, &p, secs(5));
    assert_eq!(r.code, Some(0), "{}", r.stderr);
    assert_eq!(std::fs::read(&p).unwrap(), content);
}

#[test]
fn a_percent_encoded_image_name_is_looked_up_decoded_in_sha256sums() {
    let content = Arc::new(random_bytes(200_000, 9));
    let sums = format!(
        "{}  other.img\n{}  my img\n",
        "0".repeat(64),
        sha256_hex(&content)
    );
    let c = content.clone();
    let s = Server::start(move |r| {
        if r.path.starts_with("/SHA256SUMS") {
            Reply::ok(sums.as_bytes())
        } else {
            Reply::file(r, &c, "\"n\"")
        }
    });
    let (got, _) = fetch_ok(
        &s,
        "/my%20img",
        &[
            "--timeout",
            "10",
            "--sha256sums",
            &secret_url(&s, "/SHA256SUMS"),
        ],
        10,
    );
    assert_eq!(got, *content);
}

#[test]
fn a_wrong_hash_exits_4_and_leaves_nothing() {
    let content = random_bytes(100_000, 10);
    let c = content.clone();
    let s = Server::start(move |r| Reply::file(r, &c, "\"w\""));
    let wrong = "1".repeat(64);
    fetch_fails(&s, "/img", &["--timeout", "5", "--sha256", &wrong], 5, 4);
}

// The in-memory fetch (secrets bundle, sha256sums, signatures) and the engine's own options,
// through the library.

fn lib_opts(deadline: u64, stall: u64) -> FetchOptions {
    FetchOptions {
        deadline: Deadline::after(Some(secs(deadline))),
        stall: secs(stall),
        connect_timeout: secs(stall),
        backoff: Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
        },
        ..FetchOptions::default()
    }
}

fn lib_url(s: &Server, path: &str) -> reqwest::Url {
    reqwest::Url::parse(&secret_url(s, path)).unwrap()
}

fn assert_no_secret(e: &FetchError) {
    let shown = format!("{} {:?}", rustlive::support::exit::report(e), e);
    for s in SECRETS {
        assert!(!shown.contains(s), "leaked {s}: {shown}");
    }
}

#[test]
fn fetch_bytes_trickle_is_bounded_by_the_deadline() {
    let s = trickler(vec![b'x'; 5000], 1, secs(2));
    let t = Instant::now();
    let e = fetch_bytes(&lib_url(&s, "/s.json"), &lib_opts(7, 3), 1 << 20).unwrap_err();
    assert!(t.elapsed() <= secs(7) + SLACK, "{:?}", t.elapsed());
    assert!(matches!(e, FetchError::Deadline { .. }), "{e:?}");
    assert_no_secret(&e);
    // The minimum rate dropped the trickling attempts before the deadline ended the last one.
    assert!(s.requests().len() >= 2, "{}", s.requests().len());
    // Every abandoned attempt closed its connection: no reader thread keeps one alive. The
    // reader stops at its next byte (2 s); the server sees the close at its second write after
    // it (the first only draws the RST): about 6 s, 10 with slack.
    let t = Instant::now();
    while s.open_connections() > 0 && t.elapsed() < secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(s.open_connections(), 0, "after {:?}", t.elapsed());
}

#[test]
fn fetch_bytes_from_a_silent_server_is_bounded_by_the_deadline() {
    let s = Server::start(|_| Reply::ok(b"never").fault(Fault::Silent(secs(60))));
    let t = Instant::now();
    let e = fetch_bytes(&lib_url(&s, "/s.json"), &lib_opts(4, 3), 1 << 20).unwrap_err();
    assert!(t.elapsed() <= secs(4) + SLACK, "{:?}", t.elapsed());
    assert!(matches!(e, FetchError::Deadline { .. }), "{e:?}");
    assert_no_secret(&e);
}

#[test]
fn fetch_bytes_refuses_an_announced_oversize_body_before_reading_it() {
    let s = Server::start(|_| Reply::ok(&vec![0u8; 4 * MIB]));
    let e = fetch_bytes(&lib_url(&s, "/s.json"), &lib_opts(10, 3), 1 << 20).unwrap_err();
    assert!(matches!(e, FetchError::TooLarge { .. }), "{e:?}");
    assert_no_secret(&e);
}

#[test]
fn the_engine_takes_any_duration_without_overflowing() {
    let content = Arc::new(random_bytes(MIB, 11));
    let s = {
        let c = content.clone();
        Server::start(move |r| {
            let rep = Reply::file(r, &c, "\"m\"");
            if r.n == 0 {
                rep.fault(Fault::ResetAfter(MIB / 3))
            } else {
                rep
            }
        })
    };
    let (_d, p) = dest();
    let opts = FetchOptions {
        deadline: Deadline::after(Some(Duration::MAX)),
        stall: Duration::MAX,
        connect_timeout: Duration::MAX,
        backoff: Backoff {
            base: Duration::from_millis(1),
            cap: Duration::from_millis(10),
        },
        ..FetchOptions::default()
    };
    let rep = fetch_to_file(&[lib_url(&s, "/img")], &p, &opts).unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), *content);
    assert_eq!(rep.resumes, 1);
    let opts = FetchOptions {
        backoff: Backoff {
            base: Duration::MAX,
            cap: Duration::MAX,
        },
        retries: Some(0),
        ..opts
    };
    let bad = Server::start(|_| Reply::status(503).header("Retry-After", "18446744073709551615"));
    let e = fetch_to_file(&[lib_url(&bad, "/img")], &p, &opts).unwrap_err();
    assert!(matches!(e, FetchError::GaveUp { attempts: 1, .. }), "{e:?}");
}
