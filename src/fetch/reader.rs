//! The reader thread of one HTTP attempt: it sends the request and keeps pulling the body
//! into a small bounded queue of recycled buffers, while the attempt's thread waits on the
//! queue under the [`Watchdog`] and moves each buffer into the [`Sink`].
//!
//! Why a reader thread: reqwest's blocking `read` hands over one chunk at a time from the
//! client's runtime thread, so a thread that also hashes and writes stops pulling data for as
//! long as SHA-256 and the write take. A reader thread keeps pulling into a small bounded queue
//! of recycled buffers (at most `DEPTH + 2` of `BUF` bytes), so receiving overlaps hashing and
//! writing, and memory stays flat whatever the image size.
//!
//! The same thread also sends the request, so the calling thread never blocks in reqwest: it
//! waits on the queue with a timeout computed from the overall deadline, the stall timer and
//! the minimum-progress window ([`Limits`]), and gives up the moment any of them runs out,
//! whatever the server does (silence before the status line, a trickle of bytes, a body that
//! never ends). The reader counts every byte it receives in a shared counter, so a trickle is
//! seen even before a whole buffer is filled. An abandoned reader stops at its next read
//! (bounded by the client's own timeout, the stall), dropping the connection.

use super::attempt::{AttemptError, Failure, Sink};
use super::progress::Progress;
use super::redirect::redirect_refusal;
use super::response::State;
use super::watchdog::{Limits, Watch, Watchdog};
use reqwest::blocking::{Client, Request, Response};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// Size of one buffer handed from the reader thread to the sink.
const BUF: usize = 256 << 10;
/// Hand a buffer over once it holds this much (or the body ended).
const FILL: usize = 128 << 10;
/// Buffers queued between the reader and the sink.
const DEPTH: usize = 8;
/// How close to the end of its body a piece sends the next piece's request: about one
/// queue of buffers, so the next answer starts arriving while the sink drains this one.
const AHEAD: u64 = (DEPTH * BUF) as u64;

/// The status line and headers, as the reader thread got them.
pub struct Head {
    /// The URL that answered: the one asked for, or where its redirects led.
    pub url: reqwest::Url,
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub content_length: Option<u64>,
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
pub struct Reader {
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

impl Reader {
    /// Spawns the thread that sends `req` and reads the response.
    pub fn start(client: &Client, req: Request) -> Result<Reader, AttemptError> {
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
    pub fn head(&self, limits: &Limits) -> Result<Head, AttemptError> {
        // The headers count no bytes, so the stall timer runs from the request.
        let mut dog = Watchdog::new(self.started, limits.deadline, limits.stall, 0);
        // A request sent ahead may have had its answer for a while: take it before the clock.
        if let Ok(Msg::Head(h)) = self.rx.try_recv() {
            return h.map_err(|e| classify_send(e, limits.stall));
        }
        loop {
            let wait = match dog.check(Instant::now(), 0) {
                Watch::Wait(w) => w,
                Watch::Deadline => return Err(AttemptError::Deadline),
                Watch::Stall | Watch::TooSlow { .. } => {
                    return Err(AttemptError::Stall(limits.stall.as_secs()))
                }
            };
            match self.rx.recv_timeout(wait) {
                Ok(Msg::Head(Ok(h))) => return Ok(h),
                Ok(Msg::Head(Err(e))) => return Err(classify_send(e, limits.stall)),
                Ok(Msg::Data(_)) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(AttemptError::Body(io::Error::other(
                        "the reader stopped before the response headers",
                    )))
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Moves the body into the sink. `end` is the byte count the body must stop at when known;
    /// `limit` the length of the whole file as the source itself states it (an OCI
    /// descriptor), which no byte may pass whatever the headers say; `received_all` is called
    /// once when its last [`AHEAD`] bytes are on the way.
    #[allow(clippy::too_many_arguments)]
    pub fn stream<S: Sink + ?Sized>(
        self,
        end: Option<u64>,
        limit: Option<u64>,
        state: &mut State,
        sink: &mut S,
        limits: &Limits,
        mut progress: Option<&mut Progress>,
        mut received_all: Option<&mut dyn FnMut()>,
    ) -> Result<(), Failure<S::Error>> {
        let mut dog = Watchdog::new(
            Instant::now(),
            limits.deadline,
            limits.stall,
            limits.min_rate,
        );
        let from = state.have;
        loop {
            let now = Instant::now();
            let received = self.shared.received.load(Ordering::Relaxed);
            if end.is_some_and(|e| from.saturating_add(received).saturating_add(AHEAD) >= e) {
                if let Some(f) = received_all.take() {
                    f();
                }
            }
            let wait = match dog.check(now, received) {
                Watch::Wait(w) => w,
                Watch::Deadline => return Err(AttemptError::Deadline.into()),
                Watch::Stall => return Err(AttemptError::Stall(limits.stall.as_secs()).into()),
                Watch::TooSlow { bytes } => {
                    return Err(AttemptError::TooSlow {
                        bytes,
                        secs: dog.secs(),
                        min_rate: limits.min_rate,
                    }
                    .into())
                }
            };
            let (buf, n) = match self.rx.recv_timeout(wait) {
                Ok(Msg::Data(Ok(chunk))) => chunk,
                Ok(Msg::Data(Err(e))) => return Err(classify_read(e, limits.stall).into()),
                Ok(Msg::Head(_)) | Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let data = buf.get(..n).unwrap_or(&buf);
            let after = state.have.saturating_add(data.len() as u64);
            if let Some(max) = limit.filter(|&m| after > m) {
                return Err(AttemptError::TooLong { max }.into());
            }
            if let Some(e) = end.filter(|&e| after > e) {
                return Err(AttemptError::Oversize { expected: e }.into());
            }
            sink.write(data).map_err(Failure::Sink)?;
            state.have = after;
            let _ = self.free.send(buf);
            if let Some(line) = progress
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
        url: resp.url().clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certificate_errors_are_found_inside_nested_io_errors() {
        let cert = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let nested = io::Error::other(io::Error::new(io::ErrorKind::InvalidData, cert));
        assert!(is_tls_failure(&nested));
        let reset = io::Error::other(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(!is_tls_failure(&reset));
    }
}
