//! Whether a response continues the download: the status, a 206's `Content-Range` against
//! the bytes already received, and the validators (ETag, Last-Modified) that tie a resumed or
//! spread body to the first response. Pure: decided on a status, a header map and the
//! [`State`] carried from one attempt to the next, and tested with header maps.

use super::attempt::AttemptError;
use super::retry::parse_retry_after;
use reqwest::header::{self, HeaderMap};
use reqwest::StatusCode;
use std::time::SystemTime;

/// What makes a resumed body the continuation of the bytes already received: the entity tag
/// and the modification date as the first response gave them (verbatim).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    pub fn from_headers(h: &HeaderMap) -> Validators {
        let get = |n| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
        Validators {
            etag: get(header::ETAG),
            last_modified: get(header::LAST_MODIFIED),
        }
    }

    /// The `If-Range` value: a strong ETag, else Last-Modified. Weak ETags cannot be used for
    /// ranges (RFC 9110 §13.1.5). `None`: there is no way to resume safely.
    pub fn if_range(&self) -> Option<&str> {
        match &self.etag {
            Some(e) if !e.starts_with("W/") => Some(e),
            _ => self.last_modified.as_deref(),
        }
    }

    /// Whether a 206 carrying `new` continues the file these validators describe. A changed
    /// ETag or Last-Modified is a new file whatever the server claims (a cache that ignores
    /// `If-Range`); a missing ETag where there was one is treated as changed (RFC 9110
    /// §15.3.7 requires it on a 206); a missing Last-Modified is accepted only when a strong
    /// ETag matched. `Err` describes the change.
    pub fn check_continues(&self, new: &Validators) -> Result<(), String> {
        let shown = |v: &Option<String>| {
            v.as_deref()
                .map_or_else(|| "none".into(), crate::support::log::escaped)
        };
        if self.etag.is_some() && self.etag != new.etag {
            return Err(format!(
                "the ETag changed from {} to {}",
                shown(&self.etag),
                shown(&new.etag)
            ));
        }
        let strong_match = self.etag.as_ref().is_some_and(|e| !e.starts_with("W/"));
        let lm_changed = match (&self.last_modified, &new.last_modified) {
            (a, Some(b)) => a.as_ref() != Some(b),
            (_, None) => !strong_match,
        };
        if lm_changed {
            return Err(format!(
                "the Last-Modified changed from {} to {}",
                shown(&self.last_modified),
                shown(&new.last_modified)
            ));
        }
        Ok(())
    }
}

/// Resume state carried from one attempt to the next.
#[derive(Debug, Default)]
pub struct State {
    /// Bytes received, written and hashed, each exactly once.
    pub have: u64,
    /// Length of the whole file, once a response told it.
    pub total: Option<u64>,
    pub validators: Validators,
    /// Attempts that continued with a 206.
    pub resumes: u32,
    /// Times the bytes received so far were thrown away (200 to a Range, changed validator).
    pub restarts: u32,
}

impl State {
    /// Throws away what was received: the next attempt asks for the whole file.
    pub fn restart(&mut self) {
        if self.have > 0 {
            self.restarts = self.restarts.saturating_add(1);
        }
        self.have = 0;
        self.total = None;
        self.validators = Validators::default();
    }
}

/// One piece of a download spread over several mirrors: `Range: bytes=HAVE-(END-1)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The piece ends before this byte.
    pub end: u64,
    /// Whether the mirror must carry the validators of the first response (sent as
    /// `If-Range`). Without a hash or signature over the image, identical validators are the
    /// only sign two mirrors hold the same file; with one, the hash decides and only the
    /// length has to agree (mirrors copied without keeping mtimes differ in ETag).
    pub same_validators: bool,
    /// The previous request failed: a 206 here is a resume (counted and logged as one).
    pub resume: bool,
}

/// What a request asked for, which decides how its answer may continue the download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// The whole file (no `Range`).
    Whole,
    /// The rest of the file from `State::have`, with the first response's validators in
    /// `If-Range` (a resume from one source).
    Rest,
    /// One piece (a download spread over mirrors).
    Piece(Piece),
}

impl Asked {
    /// Whether the answer, from byte `have` on, must carry the first response's validators
    /// (sent as `If-Range`, checked on the 206). The first piece is where they come from.
    pub fn ties_validators(self, have: u64) -> bool {
        match self {
            Asked::Whole => false,
            Asked::Rest => true,
            Asked::Piece(p) => p.same_validators && have > 0,
        }
    }
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let digits = |s: &str| -> Option<u64> {
        // `u64::from_str` takes a leading `+`; a header does not.
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    let (start, end) = (digits(start)?, digits(end)?);
    let total = match total {
        "*" => None,
        t => Some(digits(t)?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some((start, end, total))
}

/// A length for a message: the number, or `unknown`.
pub fn len_shown(l: Option<u64>) -> String {
    l.map_or_else(|| "unknown".into(), |n| n.to_string())
}

/// Decides how a response continues the download. Returns the offset the body starts at, the
/// file's total length, and the byte count after which the body must end.
pub fn accept(
    status: StatusCode,
    headers: &HeaderMap,
    content_length: Option<u64>,
    state: &State,
    asked: Asked,
) -> Result<(u64, Option<u64>, Option<u64>), AttemptError> {
    // A piece's mirror that does not continue the file is left out, the bytes kept; a single
    // source that lied once restarts from zero (BadRange).
    let piece = matches!(asked, Asked::Piece(_));
    let refuse = |why: String| {
        if piece {
            AttemptError::OtherFile(why)
        } else {
            AttemptError::BadRange(why)
        }
    };
    if status == StatusCode::OK {
        if piece && state.have > 0 {
            return Err(refuse(
                "it answered a range request with the whole file".into(),
            ));
        }
        return Ok((0, content_length, content_length));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if asked == Asked::Whole {
            return Err(AttemptError::BadRange(
                "206 to a request without Range".into(),
            ));
        }
        // The first piece (nothing received yet) is where the length is learnt.
        let first_piece = piece && state.have == 0 && state.total.is_none();
        let (start, total, stop) = partial(
            headers,
            content_length,
            state,
            asked.ties_validators(state.have),
            first_piece,
        )
        .map_err(refuse)?;
        // Without the length, the end of a piece cannot tell the end of the file.
        if piece && total.is_none() {
            return Err(refuse("its Content-Range gives no file length".into()));
        }
        return Ok((start, total, Some(stop)));
    }
    if status == StatusCode::RANGE_NOT_SATISFIABLE && asked != Asked::Whole {
        return Err(refuse(
            "the server cannot satisfy the range (the file shrank?)".into(),
        ));
    }
    let retry_after = headers
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    Err(AttemptError::Status {
        status,
        retry_after,
    })
}

/// The checks on a 206: where it starts, the file length (any, when `learn_length`), the
/// validators (`check_validators`), Content-Length against Content-Range. Returns start, total
/// and the byte the body ends before.
fn partial(
    headers: &HeaderMap,
    content_length: Option<u64>,
    state: &State,
    check_validators: bool,
    learn_length: bool,
) -> Result<(u64, Option<u64>, u64), String> {
    let cr = headers
        .get(header::CONTENT_RANGE)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| "206 without Content-Range".to_string())?;
    let (start, end, total) = parse_content_range(cr).ok_or_else(|| {
        format!(
            "unparsable Content-Range {:?}",
            cr.chars().take(80).collect::<String>()
        )
    })?;
    if start != state.have {
        return Err(format!(
            "asked for byte {} on, got a range starting at {start}",
            state.have
        ));
    }
    if !learn_length && total != state.total {
        return Err(format!(
            "the file length changed from {} to {} bytes",
            len_shown(state.total),
            len_shown(total)
        ));
    }
    if check_validators {
        state
            .validators
            .check_continues(&Validators::from_headers(headers))?;
    }
    // end >= start, so the length is at least 1; only END = u64::MAX (with total `*`)
    // cannot be represented, and no file is that long.
    let stop = end
        .checked_add(1)
        .ok_or_else(|| "the range ends past 2^64 bytes".to_string())?;
    if content_length.is_some_and(|l| Some(l) != stop.checked_sub(start)) {
        return Err("Content-Length disagrees with Content-Range".to_string());
    }
    Ok((start, total, stop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::Duration;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-999/1000"),
            Some((100, 999, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        for bad in [
            "bytes 5-4/10",
            "bytes 0-10/10",
            "items 0-1/2",
            "bytes */10",
            "bytes 1-2",
            "bytes a-2/3",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn validators() {
        let lm = "Sun, 06 Nov 1994 08:49:37 GMT";
        let v = Validators::from_headers(&headers(&[
            (header::ETAG, "\"abc\""),
            (header::LAST_MODIFIED, lm),
        ]));
        assert_eq!(v.if_range(), Some("\"abc\""));
        let weak = Validators::from_headers(&headers(&[
            (header::ETAG, "W/\"abc\""),
            (header::LAST_MODIFIED, lm),
        ]));
        assert_eq!(weak.if_range(), Some(lm));
        let only_weak = Validators::from_headers(&headers(&[(header::ETAG, "W/\"abc\"")]));
        assert_eq!(only_weak.if_range(), None);
    }

    fn resuming(have: u64, total: u64) -> State {
        State {
            have,
            total: Some(total),
            validators: val(Some("\"v1\""), None),
            ..State::default()
        }
    }

    fn val(etag: Option<&str>, lm: Option<&str>) -> Validators {
        Validators {
            etag: etag.map(Into::into),
            last_modified: lm.map(Into::into),
        }
    }

    #[test]
    fn any_validator_change_on_a_206_is_a_new_file() {
        let (l1, l2) = (Some("Mon, 01 Jan 2024 00:00:00 GMT"), Some("Tue"));
        let (e1, e2) = (Some("\"1\""), Some("\"2\""));
        // Issue 9 item 7: Last-Modified alone, changed on the 206, once spliced two versions.
        assert!(val(None, l1).check_continues(&val(None, l2)).is_err());
        assert!(val(None, l1).check_continues(&val(None, None)).is_err());
        assert!(val(None, l1).check_continues(&val(None, l1)).is_ok());
        assert!(val(e1, l1).check_continues(&val(e2, l1)).is_err());
        assert!(val(e1, l1).check_continues(&val(e1, l2)).is_err());
        assert!(val(e1, l1).check_continues(&val(None, l1)).is_err());
        // A strong ETag that matches is enough; Last-Modified is optional on a 206.
        assert!(val(e1, l1).check_continues(&val(e1, None)).is_ok());
        assert!(val(e1, None).check_continues(&val(e1, None)).is_ok());
        // A weak ETag proves nothing about bytes: Last-Modified must match.
        let w = Some("W/\"1\"");
        assert!(val(w, l1).check_continues(&val(w, None)).is_err());
        assert!(val(w, l1).check_continues(&val(w, l1)).is_ok());
    }

    #[test]
    fn a_changed_length_is_reported_in_bytes_not_debug_options() {
        let st = resuming(100, 1_048_576);
        let h = headers(&[
            (header::CONTENT_RANGE, "bytes 100-2097151/2097152"),
            (header::ETAG, "\"v1\""),
        ]);
        let e = accept(StatusCode::PARTIAL_CONTENT, &h, None, &st, Asked::Rest).unwrap_err();
        assert_eq!(
            e.to_string(),
            "bad partial response: the file length changed from 1048576 to 2097152 bytes"
        );
    }

    #[test]
    fn content_range_signs_and_extremes() {
        for bad in [
            "bytes +1-2/3",
            "bytes 1-+2/3",
            "bytes 0-1/+3",
            "bytes -1-2/3",
            "bytes 0-1/",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
        let max = u64::MAX;
        assert_eq!(
            parse_content_range(&format!("bytes 0-{max}/*")),
            Some((0, max, None))
        );
        let st = resuming(0, 0);
        let st = State { total: None, ..st };
        let h = headers(&[
            (header::CONTENT_RANGE, &format!("bytes 0-{max}/*")),
            (header::ETAG, "\"v1\""),
        ]);
        let e = accept(StatusCode::PARTIAL_CONTENT, &h, None, &st, Asked::Rest).unwrap_err();
        assert!(matches!(e, AttemptError::BadRange(_)), "{e:?}");
    }

    #[test]
    fn accepts_a_matching_206() {
        let st = resuming(100, 1000);
        let h = headers(&[
            (header::CONTENT_RANGE, "bytes 100-999/1000"),
            (header::ETAG, "\"v1\""),
        ]);
        let r = accept(StatusCode::PARTIAL_CONTENT, &h, Some(900), &st, Asked::Rest).unwrap();
        assert_eq!(r, (100, Some(1000), Some(1000)));
    }

    #[test]
    fn refuses_mismatched_206() {
        let st = resuming(100, 1000);
        for (cr, etag) in [
            ("bytes 0-999/1000", "\"v1\""),
            ("bytes 100-1999/2000", "\"v1\""),
            ("bytes 100-999/1000", "\"v2\""),
        ] {
            let h = headers(&[(header::CONTENT_RANGE, cr), (header::ETAG, etag)]);
            let r = accept(StatusCode::PARTIAL_CONTENT, &h, None, &st, Asked::Rest);
            assert!(matches!(r, Err(AttemptError::BadRange(_))), "{cr} {etag}");
        }
        let r = accept(
            StatusCode::PARTIAL_CONTENT,
            &HeaderMap::new(),
            None,
            &st,
            Asked::Rest,
        );
        assert!(matches!(r, Err(AttemptError::BadRange(_))));
        let r = accept(
            StatusCode::PARTIAL_CONTENT,
            &HeaderMap::new(),
            None,
            &st,
            Asked::Whole,
        );
        assert!(matches!(r, Err(AttemptError::BadRange(_))));
    }

    #[test]
    fn a_200_restarts_from_zero() {
        let st = resuming(100, 1000);
        assert_eq!(
            accept(
                StatusCode::OK,
                &HeaderMap::new(),
                Some(1200),
                &st,
                Asked::Rest
            )
            .unwrap(),
            (0, Some(1200), Some(1200))
        );
    }

    fn piece(end: u64, same_validators: bool) -> Asked {
        Asked::Piece(Piece {
            end,
            same_validators,
            resume: false,
        })
    }

    #[test]
    fn the_first_piece_learns_the_length_and_validators() {
        let h = headers(&[
            (header::CONTENT_RANGE, "bytes 0-1048575/16777216"),
            (header::ETAG, "\"v1\""),
        ]);
        let r = accept(
            StatusCode::PARTIAL_CONTENT,
            &h,
            Some(1 << 20),
            &State::default(),
            piece(1 << 20, true),
        );
        assert_eq!(r.unwrap(), (0, Some(16 << 20), Some(1 << 20)));
        // A server without ranges: the whole file, from the start, is fine.
        let r = accept(
            StatusCode::OK,
            &HeaderMap::new(),
            Some(99),
            &State::default(),
            piece(1 << 20, true),
        );
        assert_eq!(r.unwrap(), (0, Some(99), Some(99)));
    }

    #[test]
    fn a_piece_that_does_not_continue_leaves_the_mirror_out_and_keeps_the_bytes() {
        let st = resuming(100, 1000);
        let cases = [
            (StatusCode::OK, "bytes 100-199/1000", "\"v1\"", true),
            (
                StatusCode::PARTIAL_CONTENT,
                "bytes 100-199/2000",
                "\"v1\"",
                false,
            ),
            (
                StatusCode::PARTIAL_CONTENT,
                "bytes 0-199/1000",
                "\"v1\"",
                false,
            ),
            (
                StatusCode::PARTIAL_CONTENT,
                "bytes 100-199/1000",
                "\"v2\"",
                true,
            ),
            (StatusCode::PARTIAL_CONTENT, "nonsense", "\"v1\"", false),
            (
                StatusCode::PARTIAL_CONTENT,
                "bytes 100-199/*",
                "\"v1\"",
                false,
            ),
            (StatusCode::RANGE_NOT_SATISFIABLE, "", "\"v1\"", false),
        ];
        for (status, cr, etag, same) in cases {
            let h = headers(&[(header::CONTENT_RANGE, cr), (header::ETAG, etag)]);
            let r = accept(status, &h, None, &st, piece(200, same));
            assert!(
                matches!(r, Err(AttemptError::OtherFile(_))),
                "{status} {cr} {etag}: {r:?}"
            );
            assert!(!r.unwrap_err().is_retryable());
        }
        // Another mirror's ETag is fine when a hash checks the bytes: only the length counts.
        let h = headers(&[
            (header::CONTENT_RANGE, "bytes 100-199/1000"),
            (header::ETAG, "\"other mirror\""),
        ]);
        let r = accept(
            StatusCode::PARTIAL_CONTENT,
            &h,
            Some(100),
            &st,
            piece(200, false),
        );
        assert_eq!(r.unwrap(), (100, Some(1000), Some(200)));
        let r = accept(
            StatusCode::PARTIAL_CONTENT,
            &h,
            Some(100),
            &st,
            piece(200, true),
        );
        assert!(matches!(r, Err(AttemptError::OtherFile(_))));
        // Errors that are not about the file stay what they were.
        let r = accept(
            StatusCode::SERVICE_UNAVAILABLE,
            &HeaderMap::new(),
            None,
            &st,
            piece(200, true),
        );
        assert!(r.unwrap_err().is_retryable());
    }

    #[test]
    fn status_classes() {
        let st = State::default();
        let h = headers(&[(header::RETRY_AFTER, "7")]);
        let e = accept(StatusCode::TOO_MANY_REQUESTS, &h, None, &st, Asked::Whole).unwrap_err();
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        for (code, retry) in [
            (503, true),
            (500, true),
            (408, true),
            (404, false),
            (403, false),
            (304, false),
        ] {
            let e = accept(
                StatusCode::from_u16(code).unwrap(),
                &HeaderMap::new(),
                None,
                &st,
                Asked::Whole,
            )
            .unwrap_err();
            assert_eq!(e.is_retryable(), retry, "{code}");
        }
    }
}
