//! One attempt: a GET (ranged when resuming), the status and `Content-Range` checks, and the
//! body streamed to a [`Sink`] while a reader thread keeps the next buffers coming.
//!
//! Why a reader thread: reqwest's blocking `read` hands over one chunk at a time from the
//! client's runtime thread, so a thread that also hashes and writes stops pulling data for as
//! long as SHA-256 and the write take. A reader thread keeps pulling into a small bounded queue
//! of recycled buffers (at most `DEPTH + 2` of `BUF` bytes), so receiving overlaps hashing and
//! writing, and memory stays flat whatever the image size.

use super::client::redirect_refusal;
use super::progress::Progress;
use super::retry::parse_retry_after;
use crate::log::{mib, redact_url};
use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::{StatusCode, Url};
use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// Size of one buffer handed from the reader thread to the sink.
const BUF: usize = 256 << 10;
/// Hand a buffer over once it holds this much (or the body ended).
const FILL: usize = 128 << 10;
/// Buffers queued between the reader and the sink.
const DEPTH: usize = 8;

/// Where the body goes.
pub trait Sink {
    /// Called once per accepted response, before its first byte: the body starts at `offset`
    /// (0: from scratch, drop anything received so far) of a file `total` bytes long.
    fn begin(&mut self, offset: u64, total: Option<u64>) -> Result<(), super::FetchError>;
    fn write(&mut self, buf: &[u8]) -> Result<(), super::FetchError>;
}

/// What makes a resumed body the continuation of the bytes already received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validator {
    /// A strong entity tag, quotes included.
    ETag(String),
    LastModified(String),
}

impl Validator {
    fn header_value(&self) -> &str {
        match self {
            Validator::ETag(s) | Validator::LastModified(s) => s,
        }
    }
}

/// Resume state carried from one attempt to the next.
#[derive(Debug, Default)]
pub struct State {
    /// Bytes received, written and hashed, each exactly once.
    pub have: u64,
    /// Length of the whole file, once a response told it.
    pub total: Option<u64>,
    pub validator: Option<Validator>,
    /// Attempts that continued with a 206.
    pub resumes: u32,
    /// Times the bytes received so far were thrown away (200 to a Range, changed validator).
    pub restarts: u32,
}

impl State {
    fn forget(&mut self) {
        self.validator = None;
        self.total = None;
    }
}

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("cannot connect")]
    Connect(#[source] reqwest::Error),
    #[error("TLS handshake failed")]
    Tls(#[source] reqwest::Error),
    #[error("redirect refused")]
    Redirect(#[source] reqwest::Error),
    #[error("no data for {0} s (stalled)")]
    Stall(u64),
    #[error("the server answered {status}")]
    Status {
        status: StatusCode,
        retry_after: Option<Duration>,
    },
    #[error("the transfer broke")]
    Body(#[source] io::Error),
    #[error("the body ended after {got} of {expected} bytes")]
    Incomplete { got: u64, expected: u64 },
    #[error("bad partial response: {0}")]
    BadRange(String),
    #[error("the body is longer than announced ({expected} bytes); refusing the extra data")]
    Oversize { expected: u64 },
    #[error("cannot read {path}")]
    File {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the overall deadline passed")]
    Deadline,
    /// A 401 after which [`super::RequestAuth`] obtained new credentials (an expired
    /// registry token): worth repeating at once.
    #[error("the server refused the credentials (401); new ones were obtained")]
    Reauthorized,
    #[error(transparent)]
    Sink(Box<super::FetchError>),
}

impl AttemptError {
    /// Whether trying again (possibly on another mirror) can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Connect(_)
            | AttemptError::Stall(_)
            | AttemptError::Body(_)
            | AttemptError::Incomplete { .. }
            | AttemptError::BadRange(_)
            | AttemptError::Reauthorized => true,
            AttemptError::Status { status, .. } => {
                *status == StatusCode::REQUEST_TIMEOUT
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || status.is_server_error()
            }
            AttemptError::Tls(_)
            | AttemptError::Redirect(_)
            | AttemptError::Oversize { .. }
            | AttemptError::File { .. }
            | AttemptError::Deadline
            | AttemptError::Sink(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            AttemptError::Status { retry_after, .. } => *retry_after,
            AttemptError::Reauthorized => Some(Duration::from_millis(100)),
            _ => None,
        }
    }
}

impl From<super::FetchError> for AttemptError {
    fn from(e: super::FetchError) -> Self {
        AttemptError::Sink(Box::new(e))
    }
}

/// Per-attempt context.
pub struct Ctx<'a> {
    pub stall: Duration,
    pub deadline: Option<Instant>,
    pub progress: Option<&'a mut Progress>,
    /// Extra headers and 401 handling (OCI registries); `None` for plain HTTP sources.
    pub auth: Option<&'a dyn super::RequestAuth>,
}

/// `Content-Range: bytes START-END/TOTAL` (TOTAL may be `*`).
pub fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.split_once('-')?;
    let (start, end): (u64, u64) = (start.parse().ok()?, end.parse().ok()?);
    let total = match total {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    if end < start || total.is_some_and(|t| end >= t) {
        return None;
    }
    Some((start, end, total))
}

/// The validator `If-Range` may carry: a strong ETag, else Last-Modified. Weak ETags cannot
/// be used for ranges (RFC 9110 §13.1.5).
pub fn validator(h: &HeaderMap) -> Option<Validator> {
    let get = |n| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    match get(header::ETAG) {
        Some(e) if !e.starts_with("W/") => Some(Validator::ETag(e)),
        _ => get(header::LAST_MODIFIED).map(Validator::LastModified),
    }
}

/// Decides how a response continues the download. Returns the offset the body starts at, the
/// file's total length, and the byte count after which the body must end.
pub fn accept(
    status: StatusCode,
    headers: &HeaderMap,
    content_length: Option<u64>,
    state: &State,
    ranged: bool,
) -> Result<(u64, Option<u64>, Option<u64>), AttemptError> {
    if status == StatusCode::OK {
        return Ok((0, content_length, content_length));
    }
    if status == StatusCode::PARTIAL_CONTENT {
        if !ranged {
            return Err(AttemptError::BadRange(
                "206 to a request without Range".into(),
            ));
        }
        let cr = headers
            .get(header::CONTENT_RANGE)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| AttemptError::BadRange("206 without Content-Range".into()))?;
        let (start, end, total) = parse_content_range(cr)
            .ok_or_else(|| AttemptError::BadRange(format!("unparsable Content-Range {cr:?}")))?;
        if start != state.have {
            return Err(AttemptError::BadRange(format!(
                "asked for byte {} on, got a range starting at {start}",
                state.have
            )));
        }
        if total != state.total {
            return Err(AttemptError::BadRange(format!(
                "the file length changed from {:?} to {total:?}",
                state.total
            )));
        }
        if let (Some(Validator::ETag(old)), Some(Validator::ETag(new))) =
            (&state.validator, validator(headers))
        {
            if *old != new {
                return Err(AttemptError::BadRange(format!(
                    "the ETag changed from {old} to {new}"
                )));
            }
        }
        if content_length.is_some_and(|l| l != end - start + 1) {
            return Err(AttemptError::BadRange(
                "Content-Length disagrees with Content-Range".into(),
            ));
        }
        return Ok((start, total, Some(end + 1)));
    }
    if status == StatusCode::RANGE_NOT_SATISFIABLE && ranged {
        return Err(AttemptError::BadRange(
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

/// One GET of `url`, continuing from `state` when it can.
pub fn run(
    client: &Client,
    url: &Url,
    state: &mut State,
    sink: &mut dyn Sink,
    ctx: &mut Ctx,
) -> Result<(), AttemptError> {
    if url.scheme() == "file" {
        return run_file(url, state, sink);
    }
    // Without a validator there is no way to know the bytes on the server are the ones
    // already received: start over.
    if state.validator.is_none() && state.have > 0 {
        log::warn!(
            "{}: cannot resume, the server sent no ETag or Last-Modified; starting over",
            redact_url(url)
        );
        state.have = 0;
        state.restarts += 1;
    }
    let ranged = state.have > 0;
    let mut req = client.get(url.clone());
    if let Some(a) = ctx.auth {
        req = req.headers(a.headers(url));
    }
    if let (true, Some(v)) = (ranged, &state.validator) {
        req = req
            .header(header::RANGE, format!("bytes={}-", state.have))
            .header(header::IF_RANGE, v.header_value());
    }
    let resp = req.send().map_err(|e| classify_send(e, ctx.stall))?;
    if resp.status() == StatusCode::UNAUTHORIZED
        && ctx
            .auth
            .is_some_and(|a| a.unauthorized(client, url, resp.headers()))
    {
        return Err(AttemptError::Reauthorized);
    }
    let (offset, total, end) = match accept(
        resp.status(),
        resp.headers(),
        resp.content_length(),
        state,
        ranged,
    ) {
        Ok(x) => x,
        Err(e) => {
            if matches!(e, AttemptError::BadRange(_)) {
                state.forget();
            }
            return Err(e);
        }
    };
    if offset == 0 {
        if state.have > 0 {
            log::warn!(
                "{}: the server sent the whole file again (it changed, or ignores ranges); restarting from zero",
                redact_url(url)
            );
            state.restarts += 1;
        }
        state.have = 0;
        state.total = total;
        state.validator = validator(resp.headers());
    } else {
        state.resumes += 1;
        log::info!(
            "{}: resuming at {} of {}",
            redact_url(url),
            mib(offset),
            total.map_or("?".into(), mib)
        );
    }
    sink.begin(offset, total)?;
    if let Some(p) = ctx.progress.as_deref_mut() {
        p.rebase(Instant::now(), state.have);
    }
    stream(resp, end, state, sink, ctx)
}

fn classify_send(e: reqwest::Error, stall: Duration) -> AttemptError {
    // reqwest prints the full URL, query string included; callers name the redacted one.
    let e = e.without_url();
    if redirect_refusal(&e).is_some() || e.is_redirect() {
        return AttemptError::Redirect(e);
    }
    if e.is_timeout() {
        return AttemptError::Stall(stall.as_secs());
    }
    if is_tls_failure(&e) {
        return AttemptError::Tls(e);
    }
    AttemptError::Connect(e)
}

/// A certificate or handshake error from rustls: retrying cannot fix it.
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    if e.downcast_ref::<rustls::Error>().is_some() {
        return true;
    }
    // io::Error's `source()` skips the error it wraps (hyper-rustls nests two of them).
    if let Some(inner) = e.downcast_ref::<io::Error>().and_then(|i| i.get_ref()) {
        return is_tls_failure(inner);
    }
    e.source().is_some_and(is_tls_failure)
}

fn classify_read(e: io::Error, stall: Duration) -> AttemptError {
    let timed_out = e.kind() == io::ErrorKind::TimedOut
        || e.get_ref()
            .and_then(|i| i.downcast_ref::<reqwest::Error>())
            .is_some_and(reqwest::Error::is_timeout);
    if timed_out {
        AttemptError::Stall(stall.as_secs())
    } else {
        AttemptError::Body(e)
    }
}

type Chunk = io::Result<(Vec<u8>, usize)>;

/// Moves the body into the sink. `end` is the byte count the body must stop at when known.
fn stream(
    resp: Response,
    end: Option<u64>,
    state: &mut State,
    sink: &mut dyn Sink,
    ctx: &mut Ctx,
) -> Result<(), AttemptError> {
    let (tx, rx) = mpsc::sync_channel::<Chunk>(DEPTH);
    let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
    // Detached on purpose: when the sink fails, dropping `rx` makes the reader's next send
    // fail and it exits on its own (within one stall timeout at worst).
    std::thread::Builder::new()
        .name("rustlive-read".into())
        .spawn(move || read_loop(resp, tx, free_rx))
        .map_err(AttemptError::Body)?;
    loop {
        let (buf, n) = match rx.recv() {
            Ok(Ok(chunk)) => chunk,
            Ok(Err(e)) => return Err(classify_read(e, ctx.stall)),
            Err(mpsc::RecvError) => break,
        };
        if end.is_some_and(|e| state.have + n as u64 > e) {
            return Err(AttemptError::Oversize {
                expected: end.unwrap(),
            });
        }
        sink.write(&buf[..n])?;
        state.have += n as u64;
        let _ = free_tx.send(buf);
        let now = Instant::now();
        if let Some(line) = ctx
            .progress
            .as_deref_mut()
            .and_then(|p| p.tick(now, state.have, state.total))
        {
            log::info!("{line}");
        }
        if ctx.deadline.is_some_and(|d| now >= d) {
            return Err(AttemptError::Deadline);
        }
    }
    match end {
        Some(e) if state.have < e => Err(AttemptError::Incomplete {
            got: state.have,
            expected: e,
        }),
        _ => Ok(()),
    }
}

fn read_loop(mut resp: Response, tx: mpsc::SyncSender<Chunk>, free: mpsc::Receiver<Vec<u8>>) {
    loop {
        let mut buf = free.try_recv().unwrap_or_else(|_| vec![0; BUF]);
        let mut n = 0;
        let mut err = None;
        while n < FILL {
            match resp.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let eof = n < FILL;
        if n > 0 && tx.send(Ok((buf, n))).is_err() {
            return;
        }
        if let Some(e) = err {
            let _ = tx.send(Err(e));
            return;
        }
        if eof {
            return;
        }
    }
}

/// `file://` sources: a path inside the initramfs, copied through the same sink.
fn run_file(url: &Url, state: &mut State, sink: &mut dyn Sink) -> Result<(), AttemptError> {
    let path = url.path();
    let ferr = |source| AttemptError::File {
        path: path.into(),
        source,
    };
    let mut f = std::fs::File::open(path).map_err(ferr)?;
    let len = f.metadata().map_err(ferr)?.len();
    state.have = 0;
    state.total = Some(len);
    sink.begin(0, Some(len))?;
    let mut buf = vec![0; BUF];
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ferr(e)),
        };
        sink.write(&buf[..n])?;
        state.have += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn certificate_errors_are_found_inside_nested_io_errors() {
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, cert));
        assert!(is_tls_failure(&nested));
        let reset = io::Error::other(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(!is_tls_failure(&reset));
    }

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
        assert_eq!(
            validator(&headers(&[
                (header::ETAG, "\"abc\""),
                (header::LAST_MODIFIED, lm)
            ])),
            Some(Validator::ETag("\"abc\"".into()))
        );
        assert_eq!(
            validator(&headers(&[
                (header::ETAG, "W/\"abc\""),
                (header::LAST_MODIFIED, lm)
            ])),
            Some(Validator::LastModified(lm.into()))
        );
        assert_eq!(validator(&headers(&[(header::ETAG, "W/\"abc\"")])), None);
    }

    fn resuming(have: u64, total: u64) -> State {
        State {
            have,
            total: Some(total),
            validator: Some(Validator::ETag("\"v1\"".into())),
            ..State::default()
        }
    }

    #[test]
    fn accepts_a_matching_206() {
        let st = resuming(100, 1000);
        let h = headers(&[
            (header::CONTENT_RANGE, "bytes 100-999/1000"),
            (header::ETAG, "\"v1\""),
        ]);
        let r = accept(StatusCode::PARTIAL_CONTENT, &h, Some(900), &st, true).unwrap();
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
            let r = accept(StatusCode::PARTIAL_CONTENT, &h, None, &st, true);
            assert!(matches!(r, Err(AttemptError::BadRange(_))), "{cr} {etag}");
        }
        let r = accept(
            StatusCode::PARTIAL_CONTENT,
            &HeaderMap::new(),
            None,
            &st,
            true,
        );
        assert!(matches!(r, Err(AttemptError::BadRange(_))));
        let r = accept(
            StatusCode::PARTIAL_CONTENT,
            &HeaderMap::new(),
            None,
            &st,
            false,
        );
        assert!(matches!(r, Err(AttemptError::BadRange(_))));
    }

    #[test]
    fn a_200_restarts_from_zero() {
        let st = resuming(100, 1000);
        assert_eq!(
            accept(StatusCode::OK, &HeaderMap::new(), Some(1200), &st, true).unwrap(),
            (0, Some(1200), Some(1200))
        );
    }

    #[test]
    fn status_classes() {
        let st = State::default();
        let h = headers(&[(header::RETRY_AFTER, "7")]);
        let e = accept(StatusCode::TOO_MANY_REQUESTS, &h, None, &st, false).unwrap_err();
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
                false,
            )
            .unwrap_err();
            assert_eq!(e.is_retryable(), retry, "{code}");
        }
    }
}
