//! One attempt: a GET (ranged when resuming or asking for one piece), its answer judged by
//! [`super::response`], its body moved into a [`Sink`] by the [`super::reader`] thread under
//! the [`super::watchdog`]'s limits; a `file://` source is copied by [`super::file`] instead.
//! Also the request for the next piece, sent while this one drains ([`send_ahead`]).
//!
//! Nothing here decides what to do after an attempt (that is [`super::planner`]), and nothing
//! uses `fetch/mod.rs`: a sink reports its own error type, handed back untouched in
//! [`Failure::Sink`].

use super::attempt::{AttemptError, Failure, Sink};
use super::file;
use super::progress::Progress;
use super::reader::Reader;
use super::response::{accept, len_shown, Asked, Piece, State, Validators};
use super::watchdog::Limits;
use crate::support::log::{mib, redact_url};
use reqwest::blocking::{Client, Request};
use reqwest::header;
use reqwest::{StatusCode, Url};
use std::time::Instant;

/// Per-attempt context.
pub struct Ctx<'a> {
    /// The deadline, the stall timer and the minimum rate.
    pub limits: Limits,
    pub progress: Option<&'a mut Progress>,
    /// Extra headers and 401 handling (OCI registries); `None` for plain HTTP sources.
    pub auth: Option<&'a dyn super::auth::RequestAuth>,
    /// Ask for one piece of the file (a download spread over mirrors) instead of all of it.
    pub piece: Option<Piece>,
    /// The file's length as the source itself states it (an OCI layer descriptor's size): no
    /// body may pass it, whatever its headers say (chunked, no length, a larger one).
    pub limit: Option<u64>,
    /// This piece's request, sent ahead while the previous piece drained ([`send_ahead`]);
    /// used when it asks for exactly what this attempt would, dropped otherwise.
    pub ahead: Option<Ahead>,
    /// Called once when the body is about to end (its last few buffers are on the way),
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

/// One GET of `url`, continuing from `state` when it can.
pub fn run<S: Sink + ?Sized>(
    client: &Client,
    url: &Url,
    state: &mut State,
    sink: &mut S,
    ctx: &mut Ctx,
) -> Result<(), Failure<S::Error>> {
    if url.scheme() == "file" {
        return file::copy(url, state, sink, ctx.limits.deadline);
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
    let head = reader.head(&ctx.limits)?;
    if let Some(a) = ctx.auth.filter(|_| head.status == StatusCode::UNAUTHORIZED) {
        let u = super::auth::Unauthorized {
            url,
            answered: &head.url,
            headers: &head.headers,
            limits: &ctx.limits,
        };
        if a.unauthorized(client, &u) {
            return Err(AttemptError::Reauthorized.into());
        }
        // The token request ran into the deadline: that, not the 401, ends the download.
        if ctx.limits.deadline.passed() {
            return Err(AttemptError::Deadline.into());
        }
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
    // Without a length from the server, the body ends where the source says the file does.
    let end = end.or(ctx.limit);
    reader.stream(
        end,
        ctx.limit,
        state,
        sink,
        &ctx.limits,
        ctx.progress.as_deref_mut(),
        ctx.received_all.take(),
    )
}

/// The answer to a [`small`] request.
#[derive(Debug)]
pub struct Small {
    pub status: StatusCode,
    pub headers: header::HeaderMap,
    /// The body of a 2xx answer (zeroed on drop: a registry token is one); empty otherwise.
    pub body: zeroize::Zeroizing<Vec<u8>>,
}

/// One request outside a download (a registry's token): sent, answered and read under
/// `limits` like every attempt (the deadline, the stall timer, the minimum rate), the body of
/// a 2xx answer at most `max` bytes. No retry: the caller's attempt is what gets retried.
pub fn small(
    client: &Client,
    req: Request,
    limits: &Limits,
    max: u64,
) -> Result<Small, AttemptError> {
    let reader = Reader::start(client, req)?;
    let head = reader.head(limits)?;
    let mut sink = Bounded {
        buf: zeroize::Zeroizing::new(Vec::new()),
        max,
    };
    if head.status.is_success() {
        if head.content_length.is_some_and(|l| l > max) {
            return Err(AttemptError::Oversize { expected: max });
        }
        let mut state = State::default();
        let end = head.content_length;
        reader
            .stream(end, None, &mut state, &mut sink, limits, None, None)
            .map_err(|f| match f {
                Failure::Attempt(e) | Failure::Sink(e) => e,
            })?;
    }
    Ok(Small {
        status: head.status,
        headers: head.headers,
        body: sink.buf,
    })
}

/// A body in memory, at most `max` bytes.
struct Bounded {
    buf: zeroize::Zeroizing<Vec<u8>>,
    max: u64,
}

impl Sink for Bounded {
    type Error = AttemptError;

    fn begin(&mut self, offset: u64, _total: Option<u64>) -> Result<(), AttemptError> {
        self.buf
            .truncate(usize::try_from(offset).unwrap_or(usize::MAX));
        Ok(())
    }

    fn write(&mut self, data: &[u8]) -> Result<(), AttemptError> {
        let len = (self.buf.len() as u64).saturating_add(data.len() as u64);
        if len > self.max {
            return Err(AttemptError::Oversize { expected: self.max });
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }
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
