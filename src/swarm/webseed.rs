//! Web seeds (BEP 19) and the site's mirrors: pieces no peer has, within this node's share of
//! them (`picker::Share`: in a herd each piece is asked of the mirrors about once), or, once
//! peers had their chance, any piece of the share nobody is fetching, are fetched in runs of up
//! to 4 MiB of consecutive pieces, one ranged GET per run and two in flight per mirror (one in
//! a swarm of more than four), through the fetch engine's HTTP client (its CA, client
//! identity, proxy, connect and stall timeouts); the body is read up to the run's length and
//! no further, and each piece is checked against its SHA-1 like a peer's and written as soon
//! as it is in. A mirror that serves other bytes is dropped for the rest of the download; one
//! that fails keeps being retried with a backoff, while the deadline allows.

use super::picker::{self, Source, WebShare, WIDEN_AFTER};
use super::shared::{Shared, State};
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
/// The largest swarm in which a node keeps [`WORKERS`] requests in flight to each mirror;
/// in a larger one, one.
const TWO_WORKERS_UP_TO: u32 = 4;
/// How much of a piece a web seed reads before it looks whether peers delivered the piece.
const CHUNK: usize = 64 << 10;
/// For this long after the swarm a node sees last grew fast, its web seeds ask for one piece
/// at a time, from the share of a swarm twice the size seen: a tracker's next count comes a
/// second later (its quick announces), and the share it brings may be a fraction of the one
/// taken now.
const YOUNG: Duration = Duration::from_secs(1);

/// What a web seed worker may fetch now, from the session's state: the decisions behind one
/// pick, apart from the pick.
struct Plan {
    /// Still hearing from the trackers and peers: nothing yet.
    early: bool,
    /// The swarm it sees grew fast within the last [`YOUNG`]: its share may shrink yet (and
    /// is that of a swarm twice the size seen).
    young: bool,
    /// No peer and none to come: a plain mirrored fetch.
    alone: bool,
    /// Peers had their chance: pieces they have may come from the mirrors too.
    any: bool,
    /// The last piece from a peer, or the start.
    since: Instant,
    /// Pieces per request.
    max: u32,
    swarm: u32,
    /// The share by the node's own order (the largest tie value in it); `None`: everything.
    share: Option<u64>,
    /// The share by rank: this node's key, and the others' in `members`.
    me: Option<u64>,
    members: Vec<u64>,
    /// Connected to every node it knows of: it sees every piece the swarm holds.
    whole: bool,
}

impl Plan {
    /// How many of a web seed's [`WORKERS`] may have a request in flight.
    fn workers(&self) -> usize {
        if self.alone || self.swarm <= TWO_WORKERS_UP_TO {
            WORKERS
        } else {
            1
        }
    }

    /// The pieces this node's web seeds may take, `within` its widened share.
    fn web_share(&self, within: u32) -> WebShare<'_> {
        match self.me {
            Some(me) => WebShare::Rank {
                me,
                members: &self.members,
                within,
            },
            None => WebShare::Order(self.share),
        }
    }

    fn of(shared: &Shared, st: &State, now: Instant, start: Instant) -> Plan {
        let wait = shared.limits.peer_wait;
        // Peers had their chance when none sent a byte of a piece for `peer_wait` (counted
        // from the start while none has). Bytes, not whole pieces: on a loaded host (256
        // nodes on two cores) pieces from peers took over 5 s while blocks kept coming, and
        // nodes that counted pieces asked the mirrors for 38 MiB of pieces peers were sending
        // them.
        let since = st.last_from_peers.unwrap_or(start);
        let any = now.saturating_duration_since(since) >= wait;
        // Read once: the plan's parts agree on whether the trackers have answered.
        let announced = shared.announced.load(Ordering::Relaxed);
        let answered = announced || shared.meta.trackers.is_empty();
        // Alone (no peer connected or known, none to come from a tracker, and no other
        // node counted by one): a plain mirrored fetch, in file order and in long runs.
        let alone = st.conns.is_empty() && st.known.is_empty() && st.tracker_swarm <= 1 && answered;
        let bytes = if alone { RUN_ALONE } else { RUN };
        // Trackers that have not answered by `peer_wait` (a busy one took 5 s at 256 nodes)
        // may name a whole herd any moment: one piece per request meanwhile, so what the
        // answer makes unwanted is one piece, not a 4 MiB run already on its way.
        let max = if answered {
            u32::try_from(bytes.div_ceil(u64::from(shared.meta.piece_length))).unwrap_or(1)
        } else {
            1
        };
        let swarm = st.swarm_size();
        let since_start = now.saturating_duration_since(start);
        let young = !alone && st.growth.grew_within(now, YOUNG) && since_start < wait;
        // While the swarm it sees grows fast (for [`YOUNG`] after), the share of a swarm
        // twice the size seen: a herd still arriving is larger than its count, the first
        // shares add up to far more than the image (1/41 each where 256 were coming), and
        // what a smaller one leaves out comes when the share widens. Measured, three runs
        // each: 256 nodes 2.24-2.46 times the image against 2.25-2.94, 64 nodes 1.41-1.48
        // against 1.49-1.62, herd times no longer (×4: no better, more spread).
        let share = if alone {
            None
        } else if young {
            st.share.threshold(swarm.saturating_mul(2))
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
        // The members' keys are hashed only then: a large herd never ranks, and this runs on
        // every worker's loop.
        let ranks = !alone
            && st.tracker_swarm >= 2
            && st.known.len().saturating_add(1) >= usize::try_from(swarm).unwrap_or(0)
            && (st.tracker_swarm >= swarm || st.conns.len() < shared.limits.max_peers);
        let me = st.me.map(picker::node_key).filter(|_| ranks);
        let members: Vec<u64> = if me.is_some() {
            st.known.keys().map(|a| picker::node_key(*a)).collect()
        } else {
            Vec::new()
        };
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
        let unanswered = !announced && since_start < wait;
        let hear_for = if st.tracker_seeds == Some(0) {
            CONNECTING_MIN
        } else {
            wait.min(Duration::from_secs(1))
        };
        // Until a peer told what it has, when there are peers to hear from: a node that
        // comes late to a herd finds the first peers it dials full, and one that took the
        // silence for a swarm without pieces asked the mirrors for its share of a herd that
        // held the whole image (at 256 nodes, 50 nodes 10 s late).
        let connecting = !st.known.is_empty()
            && (since_start < hear_for || st.peers_heard == 0 && since_start < wait);
        // And while the swarm it sees still grows fast ([`picker::Growth`]), up to
        // `peer_wait` from the start.
        let growing = st.growth.growing(now) && since_start < wait;
        let early = !shared.meta.trackers.is_empty() && (unanswered || connecting || growing);
        Plan {
            early,
            young,
            alone,
            any,
            since,
            max,
            swarm,
            share,
            me,
            members,
            whole,
        }
    }
}

/// Runs web seed `slot` (its URL `url`) until the file is complete, the download stops, or
/// the seed served bytes that do not verify.
pub fn run(
    shared: Arc<Shared>,
    id: Source,
    (slot, worker): (usize, usize),
    url: Url,
    client: Client,
    start: Instant,
) {
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
            let seen = st.swarm_size();
            st.growth.note(seen, now);
            let plan = Plan::of(&shared, &st, now, start);
            let within = st.share.widened;
            let ranked = plan.me.is_some();
            if !plan.early && mode != Some((ranked, plan.whole)) {
                mode = Some((ranked, plan.whole));
                log::debug!(
                    "web seed {slot}: share of a swarm of {} by {}, connected to {} of {} known peers",
                    plan.swarm,
                    if ranked { "rank" } else { "own order" },
                    st.conns.len(),
                    st.known.len()
                );
            }
            let (any, max, alone) = (plan.any, plan.max, plan.alone);
            let share = plan.web_share(within);
            // While its share may still shrink, one request to the mirrors at a time.
            // And in a herd, one request per mirror: a node's share is a few pieces, and
            // every request more waits behind the herd's others on the mirror's link, where
            // peers may deliver the piece meanwhile (at 256 nodes, 512 requests in flight
            // took 1 to 8 s each and half of them were given up, part sent).
            let hold = plan.early
                || (plan.young && st.picker.as_ref().is_some_and(|p| p.web_fetching()))
                || worker >= plan.workers();
            let picked = if hold {
                None
            } else {
                st.picker()
                    .and_then(|x| x.pick_web_in(id, any, max, alone, share))
            };
            if let Some((first, count)) = picked {
                st.web_idle_since = None;
                if !alone {
                    st.tell_fetching(first, first.saturating_add(count), false);
                }
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
                && !hold
                && plan.share.is_some()
                && st.picker.as_ref().is_some_and(|x| {
                    if plan.whole {
                        x.orphans()
                    } else {
                        // Nor while its own web seeds are still fetching: the other nodes
                        // widen too, each round asks the mirrors for the missing pieces
                        // about once more, and rounds faster than a loaded mirror answers
                        // piled up (at 256 nodes, 11 requests for one piece within a
                        // second). A node's own fetches time the rounds to the mirror's
                        // pace now, where its last run's time (a first-wave piece took
                        // 2.4 s at 64 nodes) held up the herd's last pieces for seconds.
                        !x.peers_have_missing() && !x.web_fetching()
                    }
                })
                && if plan.whole {
                    // Not before another node's run from the mirrors could have arrived.
                    let after = WIDEN_AFTER.max(st.web_run_time);
                    st.share.widen_after(now, web_idle, after)
                } else {
                    // Each round waits twice as long as the one before (up to `peer_wait`,
                    // when peers had their chance anyway): after two or three rounds the
                    // pieces nobody has are in somebody's share, and what a node still
                    // misses is mostly with peers it does not see. At 256 nodes, with 30
                    // of 255 peers in view, rounds every 300 ms asked the mirrors for more
                    // than an image in the herd's second half, each node for pieces the
                    // herd held.
                    let after = st.share.backed_off(shared.limits.peer_wait);
                    st.share.widen_after(now, plan.since, after)
                }
            {
                log::debug!(
                    "web seeds: share of a swarm of {} widened to {}/{}",
                    plan.swarm,
                    st.share.widened,
                    plan.swarm
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
            (id, slot, start),
            &client,
            &url,
            (first, end, alone),
            &mut buf,
        ) {
            Ok(read) => {
                backoff = Duration::from_millis(500);
                // A run given up says nothing about how long the mirrors take.
                if read {
                    shared.lock().web_run_time = asked.elapsed();
                }
            }
            Err(Failed::Bytes(index)) => {
                log::warn!(
                    "web seed {shown} served piece {index} with other bytes than the torrent's: not used again"
                );
                let mut st = shared.lock();
                if let Some(p) = st.picker() {
                    p.remove(id);
                }
                st.tell_fetching(first, end, true);
                return;
            }
            Err(Failed::Transfer(index, why)) => {
                shared.lock().web_gave_up(id, index, end);
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
/// (`buf`: the worker's piece buffer; `id`, `slot`: the web seed's source and position;
/// `started`: when the download started). Whether the whole run was read (not given up).
fn get_run(
    shared: &Shared,
    (id, slot, started): (Source, usize, Instant),
    client: &Client,
    url: &Url,
    (first, end, alone): (u32, u32, bool),
    buf: &mut Vec<u8>,
) -> Result<bool, Failed> {
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
    let run = Run {
        id,
        start: started,
        end,
    };
    for i in first..end {
        // Also when a node that was alone has peers now: the rest of the run is the herd's
        // to share out.
        if run.given_up(shared, i, At::Piece { alone }) {
            return Ok(false);
        }
        let (_, len) = shared
            .meta
            .piece_span(i)
            .ok_or_else(|| fail(i)("no such piece".into()))?;
        let len = usize::try_from(len).unwrap_or(0);
        buf.resize(len, 0);
        // In chunks: a piece peers deliver while the mirror is still sending it (a loaded
        // mirror took 6 s a piece in a herd of 256) is not read on; the connection closes.
        let mut read = 0usize;
        for chunk in buf.chunks_mut(CHUNK) {
            body.read_exact(chunk)
                .map_err(|e| fail(i)(format!("reading the body: {e}")))?;
            read = read.saturating_add(chunk.len());
            if run.given_up(shared, i, At::Chunk { read, len }) {
                return Ok(false);
            }
        }
        if !shared.deliver(id, i, buf, Some(slot)) {
            return Err(Failed::Bytes(i));
        }
    }
    Ok(true)
}

/// A run of pieces a web seed is reading: its source, when the download started, and the
/// end of the run.
struct Run {
    id: Source,
    start: Instant,
    end: u32,
}

/// Where a run is when it looks whether to go on.
#[derive(Clone, Copy)]
enum At {
    /// Before piece `i`; `alone`: the run was asked by a node alone.
    Piece { alone: bool },
    /// Within piece `i`: `read` of its `len` bytes are in.
    Chunk { read: usize, len: usize },
}

impl Run {
    /// Whether the rest of the run, pieces `i..end`, is no longer wanted from the mirror:
    /// - piece `i` is held (peers delivered it meanwhile, or the file is complete);
    /// - the node would not pick it for the mirrors now ([`Picker::web_keeps`]: a peer has
    ///   it, or the share shrank as the node learned how large the swarm is), unless half
    ///   of it is in already (the rest costs less than the piece from someone else);
    /// - with `alone`, the node that was alone has peers now.
    ///
    /// Then the pieces go back to the picker, the body is not read on, and dropping it closes
    /// the connection, so the origin stops sending bytes nobody needs.
    ///
    /// [`Picker::web_keeps`]: picker::Picker::web_keeps
    fn given_up(&self, shared: &Shared, i: u32, at: At) -> bool {
        let mut st = shared.lock();
        let joined = matches!(at, At::Piece { alone: true }) && !st.conns.is_empty();
        let judged = match at {
            At::Piece { .. } => true,
            At::Chunk { read, len } => read.saturating_mul(2) < len,
        };
        let plan = judged.then(|| Plan::of(shared, &st, Instant::now(), self.start));
        let within = st.share.widened;
        let keep = match st.picker.as_ref() {
            None => false,
            Some(p) if p.has(i) || joined => false,
            Some(p) => plan
                .is_none_or(|plan| plan.alone || p.web_keeps(i, plan.any, plan.web_share(within))),
        };
        if !keep {
            st.web_gave_up(self.id, i, self.end);
        }
        !keep
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::picker::Share;
    use crate::swarm::shared::tests::shared;
    use std::net::SocketAddr;
    use std::sync::atomic::Ordering;

    fn addr(i: usize) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, u8::try_from(i).unwrap()], 6881))
    }

    /// A node (10.0.0.1) that knows `known` peers, is connected to the first `conns` of them,
    /// and heard a tracker count `counted` nodes with `seeds` seeds.
    fn state(known: usize, conns: usize, counted: u32, seeds: u32) -> State {
        let mut st = State {
            me: Some(addr(1)),
            tracker_swarm: counted,
            tracker_seeds: Some(seeds),
            peers_heard: u32::try_from(conns).unwrap(),
            ..State::default()
        };
        for i in 0..known {
            st.known.insert(addr(i + 2), None);
            if i < conns {
                st.conns.insert(u64::try_from(i).unwrap(), addr(i + 2));
            }
        }
        st
    }

    #[test]
    fn a_node_that_knows_the_whole_swarm_shares_by_rank() {
        let (_d, s) = shared(&[7u8; 4096], 1024);
        s.announced.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(2);
        // 15 peers, all known and connected, a tracker counting 16: by rank, seeing all.
        let p = Plan::of(&s, &state(15, 15, 16, 0), later, t0);
        assert!(p.me.is_some() && p.whole && !p.early);
        assert_eq!((p.swarm, p.members.len()), (16, 15));
        // Connected to 10 of them: by rank, but it does not see every piece.
        let p = Plan::of(&s, &state(15, 10, 16, 0), later, t0);
        assert!(p.me.is_some() && !p.whole);
        // A tracker counting 64 while it knows 15: its own order.
        let p = Plan::of(&s, &state(15, 15, 64, 0), later, t0);
        assert!(p.me.is_none() && !p.whole);
        assert_eq!(p.swarm, 64);
        // At its 40 connections, knowing only those 40, with a tracker that counted 12 (a herd
        // still arriving): its own order, not a swarm of 41 by rank.
        let p = Plan::of(&s, &state(40, 40, 12, 0), later, t0);
        assert!(p.me.is_none());
        // The same once a tracker counted 41: by rank.
        let p = Plan::of(&s, &state(40, 40, 41, 0), later, t0);
        assert!(p.me.is_some());
        // No tracker count at all: nothing says how large the swarm is.
        let p = Plan::of(&s, &state(3, 3, 0, 0), later, t0);
        assert!(p.me.is_none());
    }

    #[test]
    fn a_node_alone_or_in_a_small_swarm_keeps_two_requests_in_flight_a_herd_one() {
        let (_d, s) = shared(&[7u8; 4096], 1024);
        s.announced.store(true, Ordering::Relaxed);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(2);
        assert!(Plan::of(&s, &State::default(), later, t0).alone);
        assert_eq!(Plan::of(&s, &State::default(), later, t0).workers(), 2);
        assert_eq!(Plan::of(&s, &state(3, 3, 4, 0), later, t0).workers(), 2);
        assert_eq!(Plan::of(&s, &state(4, 4, 5, 0), later, t0).workers(), 1);
        assert_eq!(Plan::of(&s, &state(40, 40, 256, 0), later, t0).workers(), 1);
    }

    #[test]
    fn a_run_stops_at_a_piece_that_left_the_share_unless_half_of_it_is_in() {
        let (_d, s) = shared(&[7u8; 64 * 1024], 1024);
        s.announced.store(true, Ordering::Relaxed);
        let t0 = Instant::now() - Duration::from_secs(1);
        // A node that knew of one peer and heard a tracker count 3 took a third of the
        // pieces (by its own order); it is fetching them all.
        {
            let mut st = s.lock();
            *st = State {
                picker: st.picker.take(),
                ..state(1, 0, 3, 0)
            };
            let p = st.picker().unwrap();
            while p.pick_web(9, false, 64, false, None).is_some() {}
        }
        let run = Run {
            id: 9,
            start: t0,
            end: 64,
        };
        let third = Share::default().threshold(3);
        let sixteenth = Share::default().threshold(16);
        let ours = |share| {
            let st = s.lock();
            let p = st.picker.as_ref().unwrap();
            (0..64)
                .filter(|&i| p.web_keeps(i, true, WebShare::Order(share)))
                .collect::<Vec<u32>>()
        };
        let (before, after) = (ours(third), ours(sixteenth));
        let gone = *before.iter().find(|i| !after.contains(i)).unwrap();
        let kept = *after.first().unwrap();
        let chunk = |read| At::Chunk { read, len: 1024 };
        assert!(!run.given_up(&s, gone, chunk(100)));
        // The tracker now counts 16: a piece outside the new share is let go, unless half
        // of it is in; one still in it is read on.
        s.lock().tracker_swarm = 16;
        assert!(!run.given_up(&s, gone, chunk(512)));
        assert!(!run.given_up(&s, kept, chunk(100)));
        assert!(run.given_up(&s, gone, chunk(100)));
        // Given up: the rest of the run went back to the picker.
        assert_eq!(
            s.lock().picker.as_ref().unwrap().in_flight(9),
            usize::try_from(gone).unwrap()
        );
        // Between pieces, a run a lone node asked stops once it has peers.
        assert!(!run.given_up(&s, kept, At::Piece { alone: true }));
        s.lock().conns.insert(1, addr(2));
        assert!(run.given_up(&s, kept, At::Piece { alone: true }));
    }

    #[test]
    fn web_seeds_wait_for_the_first_bitfields_a_peer_and_a_growing_swarm() {
        let (_d, s) = shared(&[7u8; 4096], 1024);
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        // Before the trackers answered: nothing, up to `peer_wait`; then one piece per
        // request until they do.
        assert!(Plan::of(&s, &state(3, 3, 4, 0), at(2000), t0).early);
        let unanswered = Plan::of(&s, &state(0, 0, 1, 0), at(5000), t0);
        assert!(!unanswered.early && !unanswered.alone && unanswered.max == 1);
        s.announced.store(true, Ordering::Relaxed);
        assert!(Plan::of(&s, &state(0, 0, 1, 0), at(5000), t0).max > 1);
        assert!(Plan::of(&s, &state(3, 3, 4, 0), at(200), t0).early);
        assert!(!Plan::of(&s, &state(3, 3, 4, 0), at(300), t0).early);
        // A seed counted: its bitfield is worth a second.
        assert!(Plan::of(&s, &state(3, 3, 4, 1), at(900), t0).early);
        assert!(!Plan::of(&s, &state(3, 3, 4, 1), at(1000), t0).early);
        // While the swarm it sees grows fast: 300 ms more, up to `peer_wait` from the start.
        let mut growing = state(3, 3, 4, 0);
        growing.growth.note(4, at(250));
        assert!(Plan::of(&s, &growing, at(500), t0).early);
        assert!(!Plan::of(&s, &growing, at(550), t0).early);
        // Then one request at a time, for a second after it grew, from the share of a swarm
        // twice the size.
        let young = Plan::of(&s, &growing, at(1249), t0);
        assert!(young.young);
        assert_eq!(young.share, Share::default().threshold(8));
        let grown = Plan::of(&s, &growing, at(1250), t0);
        assert!(!grown.young);
        assert_eq!(grown.share, Share::default().threshold(4));
        growing.growth.note(40, at(4900));
        assert!(Plan::of(&s, &growing, at(4999), t0).early);
        assert!(!Plan::of(&s, &growing, at(5000), t0).early);
        // No peer told what it has yet (the ones dialled are full): up to `peer_wait`.
        let unheard = State {
            peers_heard: 0,
            ..state(3, 3, 4, 0)
        };
        assert!(Plan::of(&s, &unheard, at(4999), t0).early);
        assert!(!Plan::of(&s, &unheard, at(5000), t0).early);
        // Nobody to hear from: at once.
        assert!(!Plan::of(&s, &state(0, 0, 1, 0), at(0), t0).early);
        assert!(Plan::of(&s, &state(0, 0, 1, 0), at(0), t0).alone);
    }
}
