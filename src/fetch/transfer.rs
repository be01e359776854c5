//! One attempt: a GET (ranged when resuming), the status and `Content-Range` checks, and the
//! body streamed to a [`Sink`] while a reader thread keeps the next buffers coming.
//!
//! Why a reader thread: reqwest's blocking `read` hands over one chunk at a time from the
//! client's runtime thread, so a thread that also hashes and writes stops pulling data for as
//! long as SHA-256 and the write take. A reader thread keeps pulling into a small bounded queue
//! of recycled buffers (at most `DEPTH + 2` of `BUF` bytes), so receiving overlaps hashing and
//! writing, and memory stays flat whatever the image size.
//!
//! The same thread also sends the request, so the calling thread never blocks in reqwest: it
//! waits on the queue with a timeout computed from the overall [`Deadline`], the stall timer
//! and the minimum-progress window, and gives up the moment any of them runs out, whatever
//! the server does (silence before the status line, a trickle of bytes, a body that never
//! ends). The reader counts every byte it receives in a shared counter, so a trickle is seen
//! even before a whole buffer is filled. An abandoned reader stops at its next read (bounded by
//! the client's own timeout, the stall), dropping the connection.
//!
//! This module uses nothing from `fetch/mod.rs`: a sink reports its own error type, handed
//! back untouched in [`Failure::Sink`].

use super::progress::Progress;
use super::redirect::redirect_refusal;
use super::retry::parse_retry_after;
use crate::support::deadline::Deadline;
use crate::support::log::{mib, redact_url};
use reqwest::blocking::{Client, Request, Response};
use reqwest::header::{self, HeaderMap};
use reqwest::{StatusCode, Url};
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime};

/// Size of one buffer handed from the reader thread to the sink.
const BUF: usize = 256 << 10;
/// Hand a buffer over once it holds this much (or the body ended).
const FILL: usize = 128 << 10;
/// Buffers queued between the reader and the sink.
const DEPTH: usize = 8;
/// How close to the end of its body a piece sends the next piece's request: about one
/// queue of buffers, so the next answer starts arriving while the sink drains this one.
const AHEAD: u64 = (DEPTH * BUF) as u64;
/// Longest single wait on the reader (the deadline, stall and window are checked at least
/// this often).
const MAX_TICK: Duration = Duration::from_secs(3600);

/// Default minimum transfer rate, bytes per second, averaged over each stall window. Low
/// enough that ten thousand nodes sharing one 1 Gb/s server all stay above it; high enough
/// that a server dribbling bytes to keep the stall timer quiet is dropped and retried.
pub const MIN_RATE: u64 = 4 << 10;

/// Where the body goes.
pub trait Sink {
    type Error;
    /// Called once per accepted response, before its first byte: the body starts at `offset`
    /// (0: from scratch, drop anything received so far) of a file `total` bytes long.
    fn begin(&mut self, offset: u64, total: Option<u64>) -> Result<(), Self::Error>;
    fn write(&mut self, buf: &[u8]) -> Result<(), Self::Error>;
}

/// How an attempt ended badly: the transfer, or the sink (its own error, passed through).
#[derive(Debug)]
pub enum Failure<E> {
    Attempt(AttemptError),
    Sink(E),
}

impl<E> From<AttemptError> for Failure<E> {
    fn from(e: AttemptError) -> Self {
        Failure::Attempt(e)
    }
}

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
        let shown = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
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

/// Why an attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    #[error("cannot connect")]
    Connect(#[source] reqwest::Error),
    #[error("TLS handshake failed")]
    Tls(#[source] reqwest::Error),
    #[error("redirect refused")]
    Redirect(#[source] reqwest::Error),
    #[error("no valid HTTP response")]
    Protocol(#[source] reqwest::Error),
    #[error("no data for {0} s (stalled)")]
    Stall(u64),
    #[error(
        "too slow: {bytes} bytes in {secs} s, below the minimum of {min_rate} bytes/s (trickling?)"
    )]
    TooSlow {
        bytes: u64,
        secs: u64,
        min_rate: u64,
    },
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
    /// A 401 after which [`super::auth::RequestAuth`] obtained new credentials (an expired
    /// registry token): worth repeating at once.
    #[error("the server refused the credentials (401); new ones were obtained")]
    Reauthorized,
    /// A mirror asked for one piece of an image spread over several mirrors answered with
    /// something that does not continue the bytes received so far (another length, other
    /// validators, the whole file). The bytes received are kept; that mirror is left out.
    #[error("it does not serve the same file as the other mirrors: {0}")]
    OtherFile(String),
}

impl AttemptError {
    /// Whether trying again (possibly on another mirror) can help.
    pub fn is_retryable(&self) -> bool {
        match self {
            AttemptError::Connect(_)
            | AttemptError::Protocol(_)
            | AttemptError::Stall(_)
            | AttemptError::TooSlow { .. }
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
            | AttemptError::OtherFile(_)
            | AttemptError::Deadline => false,
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

/// Per-attempt context.
pub struct Ctx<'a> {
    /// Abort when nothing arrives for this long; also the minimum-progress window.
    pub stall: Duration,
    pub deadline: Deadline,
    /// Bytes per second the transfer must average over each stall window (0: no minimum).
    pub min_rate: u64,
    pub progress: Option<&'a mut Progress>,
    /// Extra headers and 401 handling (OCI registries); `None` for plain HTTP sources.
    pub auth: Option<&'a dyn super::auth::RequestAuth>,
    /// Ask for one piece of the file (a download spread over mirrors) instead of all of it.
    pub piece: Option<Piece>,
    /// This piece's request, sent ahead while the previous piece drained ([`send_ahead`]);
    /// used when it asks for exactly what this attempt would, dropped otherwise.
    pub ahead: Option<Ahead>,
    /// Called once when the body is about to end (its last [`AHEAD`] bytes are on the way),
    /// while the sink still takes earlier buffers: the moment to send the next piece's request
    /// ([`send_ahead`]).
    pub received_all: Option<&'a mut dyn FnMut()>,
}

/// A piece's request sent before its turn: its reader thread fills its queue while the sink
/// still takes the previous piece's bytes, so the connection never idles between pieces.
pub struct Ahead {
    url: Url,
    from: u64,
    piece: Piece,
    reader: Reader,
}

impl std::fmt::Debug for Ahead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ahead({} from {})", redact_url(&self.url), self.from)
    }
}

/// Sends the request for `piece` of `url` from byte `from` on, to be handed to [`run`] in
/// [`Ctx::ahead`]. `None` when it cannot be sent (the attempt then sends its own).
pub fn send_ahead(
    client: &Client,
    url: &Url,
    from: u64,
    piece: Piece,
    validators: &Validators,
    auth: Option<&dyn super::auth::RequestAuth>,
) -> Option<Ahead> {
    if url.scheme() == "file" {
        return None;
    }
    let req = request(client, url, from, Asked::Piece(piece), validators, auth).ok()?;
    Some(Ahead {
        url: url.clone(),
        from,
        piece,
        reader: Reader::start(client, req).ok()?,
    })
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
    fn ties_validators(self, have: u64) -> bool {
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

fn len_shown(l: Option<u64>) -> String {
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

/// One GET of `url`, continuing from `state` when it can.
pub fn run<S: Sink + ?Sized>(
    client: &Client,
    url: &Url,
    state: &mut State,
    sink: &mut S,
    ctx: &mut Ctx,
) -> Result<(), Failure<S::Error>> {
    if url.scheme() == "file" {
        return run_file(url, state, sink, ctx.deadline);
    }
    // Without a validator there is no way to know the bytes on the server are the ones
    // already received: start over. (A piece's caller decided what ties its mirrors together.)
    if ctx.piece.is_none() && state.have > 0 && state.validators.if_range().is_none() {
        log::warn!(
            "{}: cannot resume, the server sent no strong ETag or Last-Modified; starting over",
            redact_url(url)
        );
        state.restart();
    }
    let asked = match ctx.piece {
        Some(p) => Asked::Piece(p),
        None if state.have > 0 => Asked::Rest,
        None => Asked::Whole,
    };
    // A request sent ahead for exactly this piece replaces a new one.
    let ahead = ctx.ahead.take().filter(|a| {
        let same = |p: Piece| (p.end, p.same_validators) == (a.piece.end, a.piece.same_validators);
        &a.url == url && a.from == state.have && ctx.piece.is_some_and(same)
    });
    let reader = match ahead {
        Some(a) => a.reader,
        None => Reader::start(
            client,
            request(client, url, state.have, asked, &state.validators, ctx.auth)?,
        )?,
    };
    let head = reader.head(ctx)?;
    if head.status == StatusCode::UNAUTHORIZED
        && ctx
            .auth
            .is_some_and(|a| a.unauthorized(client, url, &head.headers))
    {
        return Err(AttemptError::Reauthorized.into());
    }
    let (offset, total, end) = match accept(
        head.status,
        &head.headers,
        head.content_length,
        state,
        asked,
    ) {
        Ok(x) => x,
        Err(e) => {
            if let AttemptError::BadRange(why) = &e {
                // Whatever went wrong, the next attempt starts from zero: resuming against a
                // server that lied once can only splice.
                log::warn!(
                    "{}: {why}; the bytes received so far are dropped, restarting from zero",
                    redact_url(url)
                );
                state.restart();
            }
            return Err(e.into());
        }
    };
    // The next piece of a spread download is no resume: only one after a failure is.
    let resumed = offset > 0 && ctx.piece.is_none_or(|p| p.resume);
    if offset == 0 {
        if state.have > 0 {
            log::warn!(
                "{}: the server sent the whole file again (it changed, or ignores ranges); restarting from zero",
                redact_url(url)
            );
            state.restarts = state.restarts.saturating_add(1);
        }
        state.have = 0;
        state.total = total;
        state.validators = Validators::from_headers(&head.headers);
    } else if resumed {
        state.resumes = state.resumes.saturating_add(1);
        log::info!(
            "{}: resuming at {} of {}",
            redact_url(url),
            mib(offset),
            total.map_or("?".into(), mib)
        );
    } else {
        log::debug!(
            "{}: bytes {offset}-{} of {}",
            redact_url(url),
            end.map_or("?".into(), |e| e.saturating_sub(1).to_string()),
            len_shown(total)
        );
    }
    sink.begin(offset, total).map_err(Failure::Sink)?;
    // A piece that continues the last one continues the rate measurement too.
    if let (Some(p), true) = (ctx.progress.as_deref_mut(), offset == 0 || resumed) {
        p.rebase(Instant::now(), state.have);
    }
    reader.stream(end, state, sink, ctx)
}

/// The GET for what `asked` says, from byte `have` on: `Range` for a resume or a piece,
/// `If-Range` with the first response's validators where they must match.
fn request(
    client: &Client,
    url: &Url,
    have: u64,
    asked: Asked,
    validators: &Validators,
    auth: Option<&dyn super::auth::RequestAuth>,
) -> Result<Request, AttemptError> {
    let mut req = client.get(url.clone());
    if let Some(a) = auth {
        req = req.headers(a.headers(url));
    }
    let if_range = asked
        .ties_validators(have)
        .then(|| validators.if_range())
        .flatten();
    match asked {
        Asked::Whole => {}
        Asked::Rest => req = req.header(header::RANGE, format!("bytes={have}-")),
        Asked::Piece(p) => {
            let last = p.end.checked_sub(1).filter(|&l| l >= have).ok_or_else(|| {
                AttemptError::BadRange(format!(
                    "an empty piece: byte {have} on, ending before {}",
                    p.end
                ))
            })?;
            req = req.header(header::RANGE, format!("bytes={have}-{last}"));
        }
    }
    if let Some(v) = if_range {
        req = req.header(header::IF_RANGE, v);
    }
    req.build()
        .map_err(|e| AttemptError::Protocol(e.without_url()))
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
    if e.is_connect() {
        return AttemptError::Connect(e);
    }
    // Connected, but what came back was not a usable HTTP response (garbage, absurd
    // headers, a connection closed before the status line).
    AttemptError::Protocol(e)
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

/// The status line and headers, as the reader thread got them.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    content_length: Option<u64>,
}

enum Msg {
    Head(Result<Head, reqwest::Error>),
    Data(io::Result<(Vec<u8>, usize)>),
}

/// What the reader thread and the attempt share.
#[derive(Default)]
struct Shared {
    /// Body bytes received from the socket so far, handed over or not.
    received: AtomicU64,
    /// Set when the attempt is over: the reader stops at its next read.
    abandoned: AtomicBool,
}

/// The attempt's end of the reader thread. Dropping it abandons the reader.
struct Reader {
    rx: mpsc::Receiver<Msg>,
    free: mpsc::Sender<Vec<u8>>,
    shared: Arc<Shared>,
    started: Instant,
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.shared.abandoned.store(true, Ordering::Relaxed);
    }
}

/// When a wait on the reader must end, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Keep waiting, at most this long before checking again.
    Wait(Duration),
    Deadline,
    Stall,
    /// Fewer than the minimum bytes arrived in the last window.
    TooSlow {
        bytes: u64,
    },
}

/// The deadline, the stall timer and the minimum-progress rule, as a pure state machine over
/// a byte counter and a clock (unit-tested without a server or a sleep).
#[derive(Debug, Clone)]
pub struct Watchdog {
    deadline: Deadline,
    stall: Duration,
    min_bytes: u64,
    last_count: u64,
    last_progress: Instant,
    window_start: Instant,
    window_count: u64,
}

impl Watchdog {
    pub fn new(now: Instant, deadline: Deadline, stall: Duration, min_rate: u64) -> Watchdog {
        // The window is the stall period (at least a second, so a tiny stall setting does not
        // demand a burst); the bytes it needs are min_rate per second of it.
        let stall = stall.clamp(Duration::from_millis(1), MAX_TICK.saturating_mul(24));
        let window_ms = u64::try_from(Self::window(stall).as_millis()).unwrap_or(u64::MAX);
        Watchdog {
            deadline,
            stall,
            min_bytes: min_rate.saturating_mul(window_ms) / 1000,
            last_count: 0,
            last_progress: now,
            window_start: now,
            window_count: 0,
        }
    }

    fn window(stall: Duration) -> Duration {
        stall.max(Duration::from_secs(1))
    }

    /// Checks the rules at `now` with `count` bytes received so far.
    pub fn check(&mut self, now: Instant, count: u64) -> Watch {
        if self.deadline.passed_at(now) {
            return Watch::Deadline;
        }
        if count != self.last_count {
            self.last_count = count;
            self.last_progress = now;
        }
        let silent = now.saturating_duration_since(self.last_progress);
        if silent >= self.stall {
            return Watch::Stall;
        }
        let window = Self::window(self.stall);
        if now.saturating_duration_since(self.window_start) >= window {
            let bytes = count.saturating_sub(self.window_count);
            if bytes < self.min_bytes {
                return Watch::TooSlow { bytes };
            }
            self.window_start = now;
            self.window_count = count;
        }
        let until_window = window.saturating_sub(now.saturating_duration_since(self.window_start));
        let wait = self
            .stall
            .saturating_sub(silent)
            .min(until_window)
            .min(MAX_TICK);
        Watch::Wait(
            self.deadline
                .clamp_at(now, wait)
                .max(Duration::from_millis(1)),
        )
    }

    fn secs(&self) -> u64 {
        Self::window(self.stall).as_secs()
    }
}

impl Reader {
    /// Spawns the thread that sends `req` and reads the response.
    fn start(client: &Client, req: Request) -> Result<Reader, AttemptError> {
        let (tx, rx) = mpsc::sync_channel::<Msg>(DEPTH);
        let (free_tx, free_rx) = mpsc::channel::<Vec<u8>>();
        let shared = Arc::new(Shared::default());
        let (client, sh) = (client.clone(), shared.clone());
        // Detached on purpose: when the attempt ends early, `abandoned` and the dropped
        // receiver make it exit at its next read (within one stall timeout at worst).
        std::thread::Builder::new()
            .name("rustlive-read".into())
            .spawn(move || reader_thread(client, req, tx, free_rx, sh))
            .map_err(AttemptError::Body)?;
        Ok(Reader {
            rx,
            free: free_tx,
            shared,
            started: Instant::now(),
        })
    }

    /// Waits for the status line and headers: within the stall period, within the deadline.
    fn head(&self, ctx: &Ctx) -> Result<Head, AttemptError> {
        // The headers count no bytes, so the stall timer runs from the request.
        let mut dog = Watchdog::new(self.started, ctx.deadline, ctx.stall, 0);
        // A request sent ahead may have had its answer for a while: take it before the clock.
        if let Ok(Msg::Head(h)) = self.rx.try_recv() {
            return h.map_err(|e| classify_send(e, ctx.stall));
        }
        loop {
            let wait = match dog.check(Instant::now(), 0) {
                Watch::Wait(w) => w,
                Watch::Deadline => return Err(AttemptError::Deadline),
                Watch::Stall | Watch::TooSlow { .. } => {
                    return Err(AttemptError::Stall(ctx.stall.as_secs()))
                }
            };
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Head(Ok(h))) => return Ok(h),
                Ok(Msg::Head(Err(e))) => return Err(classify_send(e, ctx.stall)),
                Ok(Msg::Data(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(AttemptError::Body(io::Error::other(
                        "the reader stopped before the response headers",
                    )))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Moves the body into the sink. `end` is the byte count the body must stop at when known.
    fn stream<S: Sink + ?Sized>(
        self,
        end: Option<u64>,
        state: &mut State,
        sink: &mut S,
        ctx: &mut Ctx,
    ) -> Result<(), Failure<S::Error>> {
        let mut dog = Watchdog::new(Instant::now(), ctx.deadline, ctx.stall, ctx.min_rate);
        let from = state.have;
        loop {
            let now = Instant::now();
            let received = self.shared.received.load(Ordering::Relaxed);
            if end.is_some_and(|e| from.saturating_add(received).saturating_add(AHEAD) >= e) {
                if let Some(f) = ctx.received_all.take() {
                    f();
                }
            }
            let wait = match dog.check(now, received) {
                Watch::Wait(w) => w,
                Watch::Deadline => return Err(AttemptError::Deadline.into()),
                Watch::Stall => return Err(AttemptError::Stall(ctx.stall.as_secs()).into()),
                Watch::TooSlow { bytes } => {
                    return Err(AttemptError::TooSlow {
                        bytes,
                        secs: dog.secs(),
                        min_rate: ctx.min_rate,
                    }
                    .into())
                }
            };
            let (buf, n) = match self.rx.recv_timeout(wait) {
                Ok(Msg::Data(Ok(chunk))) => chunk,
                Ok(Msg::Data(Err(e))) => return Err(classify_read(e, ctx.stall).into()),
                Ok(Msg::Head(_)) | Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let data = buf.get(..n).unwrap_or(&buf);
            let after = state.have.saturating_add(data.len() as u64);
            if let Some(e) = end.filter(|&e| after > e) {
                return Err(AttemptError::Oversize { expected: e }.into());
            }
            sink.write(data).map_err(Failure::Sink)?;
            state.have = after;
            let _ = self.free.send(buf);
            if let Some(line) = ctx
                .progress
                .as_deref_mut()
                .and_then(|p| p.tick(Instant::now(), state.have, state.total))
            {
                log::info!("{line}");
            }
        }
        match end {
            Some(e) if state.have < e => Err(AttemptError::Incomplete {
                got: state.have,
                expected: e,
            }
            .into()),
            _ => Ok(()),
        }
    }
}

fn reader_thread(
    client: Client,
    req: Request,
    tx: mpsc::SyncSender<Msg>,
    free: mpsc::Receiver<Vec<u8>>,
    shared: Arc<Shared>,
) {
    let resp = match client.execute(req) {
        Ok(r) => r,
        Err(e) => {
            let _ = tx.send(Msg::Head(Err(e)));
            return;
        }
    };
    let head = Head {
        status: resp.status(),
        headers: resp.headers().clone(),
        content_length: resp.content_length(),
    };
    if tx.send(Msg::Head(Ok(head))).is_err() {
        return;
    }
    read_loop(resp, &tx, &free, &shared);
}

fn read_loop(
    mut resp: Response,
    tx: &mpsc::SyncSender<Msg>,
    free: &mpsc::Receiver<Vec<u8>>,
    shared: &Shared,
) {
    loop {
        let mut buf = free.try_recv().unwrap_or_else(|_| vec![0; BUF]);
        let mut n = 0;
        let mut err = None;
        while n < FILL {
            if shared.abandoned.load(Ordering::Relaxed) {
                return;
            }
            let Some(space) = buf.get_mut(n..) else { break };
            match resp.read(space) {
                Ok(0) => break,
                Ok(k) => {
                    n = n.saturating_add(k);
                    shared.received.fetch_add(k as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    err = Some(e);
                    break;
                }
            }
        }
        let eof = n < FILL;
        if n > 0 && tx.send(Msg::Data(Ok((buf, n)))).is_err() {
            return;
        }
        if let Some(e) = err {
            let _ = tx.send(Msg::Data(Err(e)));
            return;
        }
        if eof {
            return;
        }
    }
}

/// `file://` sources: a path inside the initramfs (percent-decoded), copied through the same
/// sink. Only a regular file is read, and only as many bytes as it had when opened: a FIFO
/// would block forever and a device (`/dev/zero`) never ends. Opened non-blocking so even the
/// `open` of a FIFO without a writer returns at once; the copy checks the deadline per buffer.
fn run_file<S: Sink + ?Sized>(
    url: &Url,
    state: &mut State,
    sink: &mut S,
    deadline: Deadline,
) -> Result<(), Failure<S::Error>> {
    let path = url.to_file_path().unwrap_or_else(|()| url.path().into());
    let shown = path.display().to_string();
    let ferr = |source| AttemptError::File {
        path: shown.clone(),
        source,
    };
    let f = open_regular(&path).map_err(ferr)?;
    let len = f.metadata().map_err(ferr)?.len();
    state.have = 0;
    state.total = Some(len);
    sink.begin(0, Some(len)).map_err(Failure::Sink)?;
    let mut r = io::Read::take(f, len);
    let mut buf = vec![0; BUF];
    loop {
        if deadline.passed() {
            return Err(AttemptError::Deadline.into());
        }
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ferr(e).into()),
        };
        sink.write(buf.get(..n).unwrap_or(&buf))
            .map_err(Failure::Sink)?;
        state.have = state.have.saturating_add(n as u64);
    }
    if state.have < len {
        return Err(AttemptError::Incomplete {
            got: state.have,
            expected: len,
        }
        .into());
    }
    Ok(())
}

fn open_regular(path: &Path) -> io::Result<std::fs::File> {
    let fd = crate::sys::fs::open_nonblocking(path)?;
    let f = std::fs::File::from(fd);
    if !f.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    Ok(f)
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
    fn watchdog_enforces_deadline_stall_and_minimum_rate() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let dl = Deadline::after_from(t0, Some(s(10)));
        let mut d = Watchdog::new(t0, dl, s(3), 1024);
        assert_eq!(d.check(t0, 0), Watch::Wait(s(3)));
        // A byte every 2 s keeps the stall timer quiet, not the minimum rate.
        assert!(matches!(d.check(t0 + s(2), 1), Watch::Wait(_)));
        assert_eq!(d.check(t0 + s(3), 1), Watch::TooSlow { bytes: 1 });
        let mut d = Watchdog::new(t0, dl, s(3), 1024);
        assert!(matches!(d.check(t0 + s(2), 5000), Watch::Wait(_)));
        assert!(matches!(d.check(t0 + s(3), 5000), Watch::Wait(_)));
        assert_eq!(d.check(t0 + s(6), 5000), Watch::Stall);
        let mut d = Watchdog::new(t0, dl, s(30), 0);
        assert_eq!(d.check(t0 + s(9), 0), Watch::Wait(s(1)));
        assert_eq!(d.check(t0 + s(10), 0), Watch::Deadline);
        // Absurd settings: no overflow, a bounded wait.
        let mut d = Watchdog::new(t0, Deadline::NONE, Duration::MAX, u64::MAX);
        assert!(matches!(d.check(t0, 0), Watch::Wait(w) if w <= MAX_TICK));
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
