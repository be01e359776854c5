//! Web seeds (BEP 19) and the site's mirrors: a piece no peer has (or, once peers had their
//! chance, any piece nobody is fetching) is fetched with a ranged GET through the fetch engine's
//! HTTP client (its CA, client identity, proxy, connect and stall timeouts), read up to the
//! piece's length and no further, and checked against the piece's SHA-1 like a peer's. A mirror
//! that serves other bytes is dropped for the rest of the download; one that fails keeps being
//! retried with a backoff, while the deadline allows.

use super::picker::Source;
use super::shared::Shared;
use crate::support::log::redact_url;
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IDLE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Runs web seed `slot` (its URL `url`) until the file is complete, the download stops, or
/// the seed served bytes that do not verify.
pub fn run(shared: Arc<Shared>, id: Source, slot: usize, url: Url, client: Client, start: Instant) {
    let shown = redact_url(&url);
    let mut backoff = Duration::from_millis(500);
    loop {
        if shared.stopping() || shared.deadline.passed() {
            return;
        }
        let now = Instant::now();
        let (index, span) = {
            let mut st = shared.lock();
            if st.picker.as_ref().is_none_or(|p| p.is_complete()) {
                return;
            }
            let wait = shared.limits.peer_wait;
            // Peers had their chance when none delivered a piece for `peer_wait` (counted from
            // the start while none has).
            let since = st.last_peer_piece.unwrap_or(start);
            let any = now.saturating_duration_since(since) >= wait;
            let early = now.saturating_duration_since(start) < wait.min(Duration::from_secs(1));
            let pick = if early {
                None
            } else {
                st.picker().and_then(|p| p.pick_web(id, any))
            };
            match pick.and_then(|i| shared.meta.piece_span(i).map(|s| (i, s))) {
                Some(x) => x,
                None => {
                    drop(st);
                    std::thread::sleep(IDLE);
                    continue;
                }
            }
        };
        match get_piece(&client, &url, span, shared.meta.length) {
            Ok(data) => {
                if shared.deliver(id, index, &data, Some(slot)) {
                    backoff = Duration::from_millis(500);
                } else {
                    log::warn!(
                        "web seed {shown} served piece {index} with other bytes than the torrent's: not used again"
                    );
                    if let Some(p) = shared.lock().picker() {
                        p.remove(id);
                    }
                    return;
                }
            }
            Err(why) => {
                if let Some(p) = shared.lock().picker() {
                    p.release(id, index);
                }
                log::info!(
                    "web seed {shown}, piece {index}: {why}; retrying in {} ms",
                    backoff.as_millis()
                );
                std::thread::sleep(shared.deadline.clamp(backoff));
                backoff = backoff.saturating_mul(2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Bytes `start .. start+len` of the file: a 206 with the matching Content-Range (or a 200 when
/// that is the whole file), read to exactly `len` bytes.
fn get_piece(
    client: &Client,
    url: &Url,
    (start, len): (u64, u32),
    total: u64,
) -> Result<Vec<u8>, String> {
    let last = start
        .checked_add(u64::from(len))
        .and_then(|e| e.checked_sub(1))
        .ok_or("empty piece")?;
    let resp = client
        .get(url.clone())
        .header(RANGE, format!("bytes={start}-{last}"))
        .send()
        // The URL is shown redacted by the caller; reqwest's own would carry its query.
        .map_err(|e| crate::support::exit::report(&e.without_url()))?;
    let status = resp.status();
    let whole = start == 0 && u64::from(len) == total;
    match status {
        StatusCode::PARTIAL_CONTENT => {
            let want = format!("bytes {start}-{last}/");
            let cr = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !cr.starts_with(&want) {
                return Err("the answer's Content-Range is not the piece asked for".into());
            }
        }
        StatusCode::OK if whole => {}
        s => return Err(format!("HTTP {}", s.as_u16())),
    }
    let mut data = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    resp.take(u64::from(len))
        .read_to_end(&mut data)
        .map_err(|e| format!("reading the body: {e}"))?;
    if data.len() != usize::try_from(len).unwrap_or(usize::MAX) {
        return Err(format!("{} bytes where {len} were asked for", data.len()));
    }
    Ok(data)
}
