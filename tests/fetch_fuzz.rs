//! Fuzzing on stable Rust: property tests over the parsers and decisions that read what a
//! server sends (Content-Range, Retry-After, ETag/Last-Modified and the 206 decision, the
//! stall/min-rate watchdog, `sha256sums`, the image name from a URL). Each target runs twice:
//! on arbitrary bytes (must never panic, must keep its invariants) and on structure-aware
//! inputs (well-formed values must parse to exactly what was generated).
//!
//! Case counts are bounded so the whole file runs in a few seconds under `make test`.
//! Inputs that once failed are kept in `tests/regressions/*.txt` (one input per line, replayed
//! by `regression_inputs_still_hold`) and proptest's own seeds in
//! `tests/regressions/fetch_fuzz.proptest`.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use rustlive::fetch::response::{accept, parse_content_range, Asked, Piece, State, Validators};
use rustlive::fetch::retry::{parse_retry_after, Backoff, Rng};
use rustlive::fetch::verify::parse_sha256sums;
use rustlive::fetch::watchdog::{Watch, Watchdog, MIN_RATE};
use rustlive::support::deadline::Deadline;
use std::time::{Duration, Instant, SystemTime};

const CASES: u32 = 2000;

fn config() -> ProptestConfig {
    config_cases(CASES)
}

fn config_cases(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "tests/regressions/fetch_fuzz.proptest",
        ))),
        ..ProptestConfig::default()
    }
}

/// Strings a hostile server could put in a header: arbitrary bytes, decoded lossily.
fn junk() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| String::from_utf8_lossy(&b).into())
}

/// Header-ish text: digits, separators and words the parsers look for.
fn headerish() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("bytes ".to_string()),
            Just("-".to_string()),
            Just("/".to_string()),
            Just("*".to_string()),
            Just(", ".to_string()),
            Just(" GMT".to_string()),
            Just(":".to_string()),
            Just("+".to_string()),
            Just("W/".to_string()),
            Just("\"".to_string()),
            any::<u64>().prop_map(|n| n.to_string()),
            (0u8..100).prop_map(|n| n.to_string()),
            prop::sample::select(&["GMT", "Nov", "Sun", "bytes", "x", "\t", " "][..])
                .prop_map(str::to_string),
        ],
        0..12,
    )
    .prop_map(|v| v.concat())
}

fn check_content_range(s: &str) {
    if let Some((start, end, total)) = parse_content_range(s) {
        assert!(start <= end, "{s:?}");
        if let Some(t) = total {
            assert!(end < t, "{s:?}");
        }
    }
}

const WEEKDAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn check_retry_after(s: &str) {
    let now = SystemTime::now();
    if let Some(d) = parse_retry_after(s, now) {
        // Whatever the server asked for, the wait is capped and computing it cannot overflow.
        let mut rng = Rng::from_seed(1);
        let b = Backoff::default();
        assert!(b.delay(0, Some(d), &mut rng) <= b.cap, "{s:?}");
    }
}

fn header_map(pairs: &[(&'static str, String)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        if let Ok(v) = HeaderValue::from_str(v) {
            h.insert(HeaderName::from_static(k), v);
        }
    }
    h
}

fn validators() -> impl Strategy<Value = Validators> {
    let etag = prop_oneof![
        Just(None),
        word("abc0123", 1, 4).prop_map(|s| Some(format!("\"{s}\""))),
        word("abc0123", 1, 4).prop_map(|s| Some(format!("W/\"{s}\""))),
    ];
    let lm = prop_oneof![
        Just(None),
        (0usize..7, 1u32..29, 0usize..12, 1990u32..2100).prop_map(|(w, d, m, y)| Some(format!(
            "{}, {d:02} {} {y} 00:00:00 GMT",
            WEEKDAYS[w], MONTHS[m]
        ))),
    ];
    (etag, lm).prop_map(|(etag, last_modified)| Validators {
        etag,
        last_modified,
    })
}

/// Lowercase hex of 32 random bytes (regex strategies are slow in debug builds).
fn hex64() -> impl Strategy<Value = String> {
    any::<[u8; 32]>().prop_map(|b| b.iter().map(|x| format!("{x:02x}")).collect())
}

/// A string of `min..max` characters drawn from `alphabet`.
fn word(alphabet: &'static str, min: usize, max: usize) -> impl Strategy<Value = String> {
    let chars: Vec<char> = alphabet.chars().collect();
    prop::collection::vec(prop::sample::select(chars), min..max)
        .prop_map(|v| v.into_iter().collect())
}

fn check_sums(text: &str, name: &str) {
    let _ = parse_sha256sums(text, name, "u");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn content_range_arbitrary(s in junk()) {
        check_content_range(&s);
    }

    #[test]
    fn content_range_well_formed(start: u64, len: u64, extra: u64, star: bool) {
        let end = start.saturating_add(len);
        let total = end.checked_add(1).map(|t| t.saturating_add(extra));
        let v = match (star, total) {
            (false, Some(t)) => format!("bytes {start}-{end}/{t}"),
            _ => format!("bytes {start}-{end}/*"),
        };
        let want = (start, end, if star { None } else { total });
        if want.2.is_some() || star {
            prop_assert_eq!(parse_content_range(&v), Some(want));
        }
        // Reversed, it is refused.
        if start < end {
            prop_assert_eq!(parse_content_range(&format!("bytes {end}-{start}/*")), None);
        }
    }

    #[test]
    fn retry_after_arbitrary(s in junk()) {
        check_retry_after(&s);
    }

    #[test]
    fn retry_after_dates(
        w in 0usize..7, day in 0u64..40, m in 0usize..12,
        year in prop_oneof![0u64..20_000, any::<u64>()],
        h in 0u64..30, mi in 0u64..70, s in 0u64..70,
    ) {
        let v = format!("{}, {day:02} {} {year} {h:02}:{mi:02}:{s:02} GMT", WEEKDAYS[w], MONTHS[m]);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let got = parse_retry_after(&v, now);
        let valid = (1..=31).contains(&day) && (1970..=9999).contains(&year)
            && h <= 23 && mi <= 59 && s <= 60;
        prop_assert_eq!(got.is_some(), valid, "{}", v);
        check_retry_after(&v);
    }

    #[test]
    fn retry_after_seconds(n: u64) {
        prop_assert_eq!(parse_retry_after(&n.to_string(), SystemTime::now()), Some(Duration::from_secs(n)));
    }

    #[test]
    fn a_206_is_accepted_only_with_unchanged_validators(
        have in 0u64..1000, len in 1u64..1000, stored in validators(), sent in validators(),
    ) {
        let total = have + len;
        let mut pairs = vec![("content-range", format!("bytes {have}-{}/{total}", total - 1))];
        if let Some(e) = &sent.etag { pairs.push(("etag", e.clone())); }
        if let Some(l) = &sent.last_modified { pairs.push(("last-modified", l.clone())); }
        let h = header_map(&pairs);
        let st = State { have, total: Some(total), validators: stored.clone(), ..State::default() };
        let r = accept(StatusCode::PARTIAL_CONTENT, &h, Some(len), &st, Asked::Rest);
        let strong = stored.etag.as_ref().is_some_and(|e| !e.starts_with("W/"));
        let etag_ok = stored.etag.is_none() || stored.etag == sent.etag;
        let lm_ok = match &sent.last_modified {
            Some(l) => stored.last_modified.as_ref() == Some(l),
            None => strong,
        };
        prop_assert_eq!(r.is_ok(), etag_ok && lm_ok, "{:?} -> {:?}: {:?}", stored, sent, r);
        // The same validators always continue, as long as there is one to resume with.
        prop_assert_eq!(stored.check_continues(&stored).is_ok(), stored.if_range().is_some());
    }

    #[test]
    fn watchdog_never_overflows_and_never_overshoots(
        stall_ms in prop_oneof![0u64..10_000, any::<u64>()],
        limit in prop_oneof![Just(None), (0u64..20_000).prop_map(Some), any::<u64>().prop_map(Some)],
        rate in prop_oneof![Just(0u64), Just(MIN_RATE), any::<u64>()],
        steps in prop::collection::vec((0u64..5_000, 0u64..100_000), 0..40),
    ) {
        let t0 = Instant::now();
        let dl = Deadline::after_from(t0, limit.map(Duration::from_millis));
        let mut dog = Watchdog::new(t0, dl, Duration::from_millis(stall_ms), rate);
        let (mut now, mut count) = (t0, 0u64);
        for (dt, bytes) in steps {
            now += Duration::from_millis(dt);
            count = count.saturating_add(bytes);
            match dog.check(now, count) {
                Watch::Wait(w) => {
                    prop_assert!(w > Duration::ZERO);
                    if let Some(left) = dl.remaining_at(now) {
                        prop_assert!(w <= left.max(Duration::from_millis(1)));
                    }
                }
                Watch::Deadline => {
                    prop_assert!(dl.passed_at(now));
                    break;
                }
                Watch::Stall | Watch::TooSlow { .. } => break,
            }
        }
    }

    #[test]
    fn sha256sums_arbitrary(text in junk(), name in junk()) {
        check_sums(&text, &name);
    }

    #[test]
    fn sha256sums_finds_its_line(
        others in prop::collection::vec((hex64(), word("ab. %*/()=", 1, 12)), 0..8),
        hash in hex64(), first in word("abi", 1, 2), rest in word("abgim0 .%-", 0, 10),
        style in 0usize..5,
    ) {
        let name = format!("{first}{rest}");
        let mut text = String::new();
        for (h, n) in &others {
            if n.trim_start_matches('*').rsplit('/').next() != Some(name.as_str()) {
                text.push_str(&format!("{h}  {n}\n"));
            }
        }
        let line = match style {
            0 => format!("{hash}  {name}\n"),
            1 => format!("{hash} *{name}\n"),
            2 => format!("{hash}  ./{name}\n"),
            3 => format!("{hash}  images/{name}\n"),
            _ => format!("SHA256 ({name}) = {hash}\n"),
        };
        text.push_str(&line);
        // Leading or trailing spaces in a name are not what sha256sum writes.
        prop_assume!(name.trim() == name);
        let got = parse_sha256sums(&text, &name, "u");
        prop_assert_eq!(got.map(|h| h.to_hex()).ok(), Some(hash.clone()), "{}", text);
        // A second, different hash for the same name is ambiguous, never a silent pick.
        let other = if hash.starts_with('0') { "1" } else { "0" }.repeat(64);
        text.push_str(&format!("{other}  {name}\n"));
        prop_assert!(parse_sha256sums(&text, &name, "u").is_err());
    }

    #[test]
    fn image_names_from_urls(seg in junk()) {
        let Ok(u) = reqwest::Url::parse("http://h/dir/") else { unreachable!() };
        if let Ok(u) = u.join(&seg) {
            if let Some(n) = rustlive::fetch::file_name(&u) {
                prop_assert!(!n.is_empty() && !n.contains('/') && !n.contains('\0'));
                prop_assert!(n != "." && n != "..");
            }
        }
    }
}

// The header-shaped generators cost more per case (about 2 ms in a debug build): fewer cases.
proptest! {
    #![proptest_config(config_cases(400))]

    #[test]
    fn content_range_headerish(s in headerish()) {
        check_content_range(&s);
    }

    #[test]
    fn retry_after_headerish(s in headerish()) {
        check_retry_after(&s);
    }

    #[test]
    fn accept_arbitrary_headers(
        status in prop_oneof![Just(200u16), Just(206), Just(416), Just(503), 100u16..600],
        cr in prop_oneof![junk(), headerish()],
        etag in prop_oneof![junk(), headerish()],
        lm in prop_oneof![junk(), headerish()],
        ra in prop_oneof![junk(), headerish()],
        content_length: Option<u64>,
        have: u64, total: Option<u64>, stored in validators(), asked in 0u8..4, end: u64,
    ) {
        let asked = match asked {
            0 => Asked::Whole,
            1 => Asked::Rest,
            k => Asked::Piece(Piece { end, same_validators: k == 2, resume: false }),
        };
        let ranged = asked != Asked::Whole;
        let h = header_map(&[
            ("content-range", cr), ("etag", etag), ("last-modified", lm), ("retry-after", ra),
        ]);
        let st = State { have, total, validators: stored, ..State::default() };
        let status = StatusCode::from_u16(status).unwrap();
        if let Ok((off, tot, end)) = accept(status, &h, content_length, &st, asked) {
            if status == StatusCode::PARTIAL_CONTENT {
                prop_assert!(ranged);
                prop_assert_eq!(off, have);
                // Only the first piece (nothing received, no length yet) learns the length.
                if !matches!(asked, Asked::Piece(_)) || have > 0 || total.is_some() {
                    prop_assert_eq!(tot, total);
                }
                prop_assert!(end.is_some_and(|e| e > off));
            } else {
                prop_assert_eq!(off, 0);
                // A piece never starts over: a whole file only answers the first one.
                if matches!(asked, Asked::Piece(_)) {
                    prop_assert_eq!(have, 0);
                }
            }
        }
    }
}

/// Every line of every `tests/regressions/*.txt` file, through the target its file names.
#[test]
fn regression_inputs_still_hold() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/regressions");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "txt") {
            continue;
        }
        let target = p.file_stem().unwrap().to_str().unwrap().to_string();
        for line in std::fs::read_to_string(&p).unwrap().lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            seen += 1;
            match target.as_str() {
                "content_range" => check_content_range(line),
                "retry_after" => check_retry_after(line),
                "sha256sums" => check_sums(&line.replace("\\n", "\n"), "img"),
                other => panic!("{}: no target named {other}", p.display()),
            }
        }
    }
    assert!(
        seen >= 5,
        "only {seen} regression inputs under {}",
        dir.display()
    );
}

#[test]
fn far_future_retry_after_dates_are_refused_or_capped() {
    // Issue 9 item 2: these once overflowed `SystemTime + Duration` (exit 134).
    let now = SystemTime::now();
    assert_eq!(
        parse_retry_after("Mon, 01 Jan 99999999999999999 00:00:00 GMT", now),
        None
    );
    let d = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
    let mut rng = Rng::from_seed(5);
    assert_eq!(
        Backoff::default().delay(0, Some(d), &mut rng),
        Duration::from_secs(30)
    );
}
