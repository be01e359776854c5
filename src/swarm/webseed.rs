//! Web seeds (BEP 19) and the site's mirrors: pieces no peer has, within this node's share of
//! them (`picker::Share`: in a herd each piece is asked of the mirrors about once), or, once
//! peers had their chance, any piece of the share nobody is fetching, are fetched in runs of up
//! to 4 MiB of consecutive pieces, one ranged GET per run and two in flight per mirror, through
//! the fetch engine's HTTP client (its CA, client identity, proxy, connect and stall timeouts);
//! the body is read up to the run's length and no further, and each piece is checked against
//! its SHA-1 like a peer's and written as soon as it is in. A mirror that serves other bytes is
//! dropped for the rest of the download; one that fails keeps being retried with a backoff,
//! while the deadline allows.

use super::picker::{self, Source, WIDEN_AFTER};
use super::shared::Shared;
use crate::support::log::redact_url;
use reqwest::blocking::Client;
use reqwest::header::{CONTENT_RANGE, RANGE};
use reqwest::{StatusCode, Url};
use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

const IDLE: Duration = Duration::from_millis(100);
/// How long a node with peers to hear from, none of them a seed, waits before asking web
/// seeds: a herd that starts together is still arriving at the tracker and at each node for
/// the first moment, and a node that took the few it saw for the whole swarm would take too
/// large a share.
const CONNECTING_MIN: Duration = Duration::from_millis(300);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Bytes asked for in one request (consecutive pieces).
const RUN: u64 = 4 << 20;
/// Bytes asked for in one request by a node alone (pieces in file order): fewer requests, the
/// same memory (the body is read piece by piece).
const RUN_ALONE: u64 = 32 << 20;
/// Requests in flight to one web seed at once.
pub const WORKERS: usize = 2;

/// Runs web seed `slot` (its URL `url`) until the file is complete, the download stops, or
/// the seed served bytes that do not verify.
pub fn run(shared: Arc<Shared>, id: Source, slot: usize, url: Url, client: Client, start: Instant) {
    let shown = redact_url(&url);
    let mut backoff = Duration::from_millis(500);
    // How this worker last chose its share, for the debug log: (by rank, seeing every peer).
    let mut mode = None;
    // One piece's buffer for the worker's life: a fresh one per piece costs page faults (the
    // allocator maps and unmaps blocks this large) that a plain fetch does not pay.
    let mut buf = Vec::new();
    loop {
        if shared.stopping() || shared.deadline.passed() {
            return;
        }
        let now = Instant::now();
        let run = {
            let mut st = shared.lock();
            if st.picker.as_ref().is_none_or(|p| p.is_complete()) {
                return;
            }
            let wait = shared.limits.peer_wait;
            // Peers had their chance when none delivered a piece for `peer_wait` (counted from
            // the start while none has).
            let since = st.last_peer_piece.unwrap_or(start);
            let any = now.saturating_duration_since(since) >= wait;
            // Alone (no peer connected or known, none to come from a tracker, and no other
            // node counted by one): a plain mirrored fetch, in file order and in long runs.
            let alone = st.conns.is_empty()
                && st.known.is_empty()
                && st.tracker_swarm <= 1
                && (shared.meta.trackers.is_empty() || shared.announced.load(Ordering::Relaxed));
            let bytes = if alone { RUN_ALONE } else { RUN };
            let max =
                u32::try_from(bytes.div_ceil(u64::from(shared.meta.piece_length))).unwrap_or(1);
            let swarm = st.swarm_size();
            let share = if alone {
                None
            } else {
                st.share.threshold(swarm)
            };
            // A node that knows the address of every node the trackers count (and its own)
            // takes its share by rank, the same ranking on every node ([`picker::rank`]):
            // each piece nobody has is some one node's, where independent orders leave e⁻¹
            // of the pieces in nobody's share and give others to two. Not when the view may
            // be cut short: by the connection limit, unless a tracker counted as many (at 64
            // nodes, 40 connections and 40 addresses known looked like a swarm of 41), nor
            // without a tracker (nothing says how large the swarm is).
            let members: Vec<u64> = st.known.keys().map(|a| picker::node_key(*a)).collect();
            let me = st.me.map(picker::node_key).filter(|_| {
                !alone
                    && st.tracker_swarm >= 2
                    && members.len().saturating_add(1) >= usize::try_from(swarm).unwrap_or(0)
                    && (st.tracker_swarm >= swarm || st.conns.len() < shared.limits.max_peers)
            });
            // Connected to every node it knows of: it sees every piece the swarm holds.
            let whole = me.is_some()
                && st
                    .conns
                    .values()
                    .filter(|a| st.known.contains_key(a))
                    .count()
                    >= st.known.len();
            // A moment for the first bitfields, when there are peers to hear from: until the
            // trackers answered (at most `peer_wait`: before that nothing says how large the
            // swarm is, and a node that took itself for the only one would ask the mirrors for
            // everything; at 256 nodes on two cores an answer took over a second, and late
            // nodes did), then while connections are being made: 1 s, or [`CONNECTING_MIN`]
            // when the trackers count no seed (a herd starting together: the peers have little
            // to tell yet, and a second is a third of a 3 s fetch).
            let since_start = now.saturating_duration_since(start);
            let unanswered = !shared.announced.load(Ordering::Relaxed) && since_start < wait;
            let hear_for = if st.tracker_seeds == Some(0) {
                CONNECTING_MIN
            } else {
                wait.min(Duration::from_secs(1))
            };
            let connecting = !st.known.is_empty() && since_start < hear_for;
            let early = !shared.meta.trackers.is_empty() && (unanswered || connecting);
            let within = st.share.widened;
            if !early && mode != Some((me.is_some(), whole)) {
                mode = Some((me.is_some(), whole));
                log::debug!(
                    "web seed {slot}: share of a swarm of {swarm} by {}, connected to {} of {} known peers",
                    if me.is_some() { "rank" } else { "own order" },
                    st.conns.len(),
                    st.known.len()
                );
            }
            let picked = match (early, me) {
                (true, _) => None,
                (false, Some(me)) => st
                    .picker()
                    .and_then(|p| p.pick_web_ranked(id, any, max, (me, &members, within))),
                (false, None) => st
                    .picker()
                    .and_then(|p| p.pick_web(id, any, max, alone, share)),
            };
            if picked.is_some() {
                st.web_idle_since = None;
            }
            let web_idle = *st.web_idle_since.get_or_insert(now);
            // Nothing left in its share: the herd left pieces in nobody's share (about e⁻¹
            // of them); take a wider one. A node connected to the whole swarm knows which
            // pieces nobody has: it widens once its web seeds had nothing to do for a while,
            // even while peers keep it busy (else the herd's last pieces wait for the whole
            // herd to run dry: at 16 nodes, 4 of an 8 s herd). A node that sees part of the
            // swarm cannot tell a piece nobody has from one its peers lack, and widens only
            // when no connected peer has a piece it lacks and nothing came from peers for a
            // while (a node whose peers have pieces for it is slow, not idle: on a loaded
            // machine pieces can take longer than the idle time).
            // The scans over every piece last: only when nothing was picked.
            if picked.is_none()
                && !early
                && share.is_some()
                && st.picker.as_ref().is_some_and(|p| {
                    if whole {
                        p.orphans()
                    } else {
                        !p.peers_have_missing()
                    }
                })
                && if whole {
                    // Not before another node's run from the mirrors could have arrived.
                    let after = WIDEN_AFTER.max(st.web_run_time);
                    st.share.widen_after(now, web_idle, after)
                } else {
                    st.share.widen(now, since)
                }
            {
                log::debug!(
                    "web seeds: share of a swarm of {swarm} widened to {}/{swarm}",
                    st.share.widened
                );
            }
            picked.map(|(first, count)| (first, count, alone))
        };
        let Some((first, count, alone)) = run else {
            std::thread::sleep(IDLE);
            continue;
        };
        let end = first.saturating_add(count);
        let asked = Instant::now();
        match get_run(
            &shared,
            id,
            slot,
            &client,
            &url,
            (first, end, alone),
            &mut buf,
        ) {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                shared.lock().web_run_time = asked.elapsed();
            }
            Err(Failed::Bytes(index)) => {
                log::warn!(
                    "web seed {shown} served piece {index} with other bytes than the torrent's: not used again"
                );
                if let Some(p) = shared.lock().picker() {
                    p.remove(id);
                }
                return;
            }
            Err(Failed::Transfer(index, why)) => {
                if let Some(p) = shared.lock().picker() {
                    for i in index..end {
                        p.release(id, i);
                    }
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

enum Failed {
    /// Piece `.0` does not match its hash.
    Bytes(u32),
    /// The transfer failed at piece `.0`.
    Transfer(u32, String),
}

/// Pieces `first..end` in one ranged GET, each checked and delivered as soon as its bytes are in
/// (`buf`: the worker's piece buffer).
#[allow(clippy::too_many_arguments)]
fn get_run(
    shared: &Shared,
    id: Source,
    slot: usize,
    client: &Client,
    url: &Url,
    (first, end, alone): (u32, u32, bool),
    buf: &mut Vec<u8>,
) -> Result<(), Failed> {
    let fail = |i: u32| move |why: String| Failed::Transfer(i, why);
    let last = end.saturating_sub(1);
    let (start, _) = shared
        .meta
        .piece_span(first)
        .ok_or_else(|| fail(first)("no such piece".into()))?;
    let (lstart, llen) = shared
        .meta
        .piece_span(last)
        .ok_or_else(|| fail(first)("no such piece".into()))?;
    let stop = lstart.saturating_add(u64::from(llen));
    let mut body = get_range(client, url, start, stop, shared.meta.length).map_err(fail(first))?;
    for i in first..end {
        // A piece peers delivered meanwhile (or the file complete): the rest of the run is not
        // read, and dropping the body closes the connection, so the origin stops sending bytes
        // nobody needs. Its pieces go back to the picker.
        // Likewise when a node that was alone has peers now: the rest of the run is the
        // herd's to share out.
        let mut st = shared.lock();
        let joined = alone && !st.conns.is_empty();
        match st.picker() {
            Some(p) if !p.has(i) && !joined => {}
            Some(p) => {
                for j in i..end {
                    p.release(id, j);
                }
                return Ok(());
            }
            None => return Ok(()),
        }
        drop(st);
        let (_, len) = shared
            .meta
            .piece_span(i)
            .ok_or_else(|| fail(i)("no such piece".into()))?;
        buf.resize(usize::try_from(len).unwrap_or(0), 0);
        body.read_exact(buf)
            .map_err(|e| fail(i)(format!("reading the body: {e}")))?;
        if !shared.deliver(id, i, buf, Some(slot)) {
            return Err(Failed::Bytes(i));
        }
    }
    Ok(())
}

/// Bytes `start .. stop` of the file: a 206 with the matching Content-Range (or a 200 when that
/// is the whole file), its body limited to those bytes.
fn get_range(
    client: &Client,
    url: &Url,
    start: u64,
    stop: u64,
    total: u64,
) -> Result<std::io::Take<reqwest::blocking::Response>, String> {
    let last = stop
        .checked_sub(1)
        .filter(|&l| l >= start)
        .ok_or("empty range")?;
    let resp = client
        .get(url.clone())
        .header(RANGE, format!("bytes={start}-{last}"))
        .send()
        // The URL is shown redacted by the caller; reqwest's own would carry its query.
        .map_err(|e| crate::support::exit::report(&e.without_url()))?;
    let whole = start == 0 && stop == total;
    match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let want = format!("bytes {start}-{last}/");
            let cr = resp
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if !cr.starts_with(&want) {
                return Err("the answer's Content-Range is not the range asked for".into());
            }
        }
        StatusCode::OK if whole => {}
        s => return Err(format!("HTTP {}", s.as_u16())),
    }
    Ok(resp.take(stop.saturating_sub(start)))
}
