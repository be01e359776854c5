//! What the threads of one swarm download share: the torrent, the `.part` file (pieces are
//! written at their offset once verified and read back to serve peers), the picker, the peers
//! known and banned, the counters of the summary. One mutex; nothing holds it across I/O.

use super::choke::Chokes;
use super::metainfo::Metainfo;
use super::picker::{Growth, Picker, Share, Source};
use super::rate::Bucket;
use super::wire::Fetching;
use crate::support::deadline::Deadline;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Peer addresses remembered (from the tracker and peer exchange).
pub const MAX_KNOWN: usize = 1000;

/// Buffers of finished pieces kept for the next ones: a connection that finishes a piece
/// starts the next at once, so a few cover the turnover without holding the whole budget.
const SPARE_PIECES: usize = 4;

/// The knobs of a swarm download.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Connections, both directions together.
    pub max_peers: usize,
    /// Peers unchoked (served) at once.
    pub upload_slots: usize,
    /// Bytes of pieces held in memory while they are being received.
    pub max_buffered: u64,
    /// A peer with requests outstanding that delivers nothing for this long is dropped; also
    /// the window of `min_rate`.
    pub stall: Duration,
    /// Bytes per second a peer with requests outstanding must deliver over each `stall`.
    pub min_rate: u64,
    /// A peer that sends nothing at all (not even a keep-alive) for this long is dropped.
    pub idle: Duration,
    /// How long pieces peers have wait for them before web seeds may take them too.
    pub peer_wait: Duration,
    /// Requests pipelined to one peer.
    pub pipeline: usize,
    /// Requests a peer may queue with us before it counts as a flood.
    pub max_queued: usize,
    /// Bytes per second sent to all peers together (one token bucket per session); `None`:
    /// unlimited.
    pub upload_rate: Option<NonZeroU64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_peers: 40,
            upload_slots: 8,
            max_buffered: 16 << 20,
            stall: Duration::from_secs(30),
            min_rate: 4 << 10,
            idle: Duration::from_secs(150),
            peer_wait: Duration::from_secs(5),
            pipeline: 16,
            max_queued: 256,
            upload_rate: None,
        }
    }
}

#[derive(Debug, Default)]
pub struct State {
    pub picker: Option<Picker>,
    pub next_source: Source,
    /// Live connections: the address we know them by (for incoming ones, the listening port
    /// their extension handshake gave, once it did).
    pub conns: HashMap<Source, SocketAddr>,
    /// Addresses to try, with when they were last tried.
    pub known: HashMap<SocketAddr, Option<Instant>>,
    pub banned: HashSet<SocketAddr>,
    pub banned_ids: HashSet<[u8; 20]>,
    /// The peer id of each live connection (one connection per peer).
    pub peer_ids: HashMap<Source, [u8; 20]>,
    /// Completed pieces in order, so each connection can announce them (`have`).
    pub completed: Vec<u32>,
    /// What the web seeds started and stopped fetching, and what peers said of theirs (to
    /// pass on once, to every connection but the one it came from), in order, so each
    /// connection can tell peers that understand `rl_fetching`.
    pub fetching: Vec<(Fetching, Option<Source>)>,
    pub buffered: u64,
    /// Who holds the upload slots.
    pub chokes: Chokes,
    pub from_peers: u64,
    /// Bytes from each web seed, by its position.
    pub from_web: Vec<u64>,
    /// When a peer last sent us piece bytes (a block, noted at most every `FLOW_NOTE` per
    /// connection, or a whole piece): whether peers are making progress for us, however slowly.
    pub last_from_peers: Option<Instant>,
    /// Connections that sent something after their handshake (their pieces, if any, are
    /// known).
    pub peers_heard: u32,
    /// The largest swarm a tracker counted (seeds and leechers, this node included).
    pub tracker_swarm: u32,
    /// The seeds the last tracker answer counted; `None` until one said.
    pub tracker_seeds: Option<u32>,
    /// This node's share of the pieces nobody has yet: what it may take from web seeds.
    pub share: Share,
    /// When the swarm this node sees last grew fast.
    pub growth: Growth,
    /// Our listening address as peers see it (a connection's local address, our port).
    pub me: Option<SocketAddr>,
    /// Since when the web seeds found nothing in the share to fetch; `None` while they do.
    pub web_idle_since: Option<Instant>,
    /// How long the last run of pieces took from a web seed: about how long a piece another
    /// node fetches from the mirrors stays invisible to the herd.
    pub web_run_time: Duration,
    pub dropped: u32,
    /// Connections that were sent at least one block.
    pub peers_served: u32,
    /// The upload cap's bucket (`Limits::upload_rate`).
    pub upload: Option<Bucket>,
    /// A failure that ends the download (the file cannot be written).
    pub fatal: Option<std::io::Error>,
}

impl State {
    /// Notes for peers that our web seeds started (or, with `stopped`, gave up) fetching
    /// pieces `first .. end` from the mirrors.
    pub fn tell_fetching(&mut self, first: u32, end: u32, stopped: bool) {
        self.push_words(first, end, stopped, false);
    }

    /// Claims that ended because the peer that made them left (`pieces`, in order): passed on
    /// once, as relayed words, to the peers that heard of them from us.
    pub fn pass_on_ended(&mut self, pieces: &[u32]) {
        let mut rest = pieces;
        while let Some((&first, tail)) = rest.split_first() {
            // The run of consecutive pieces from `first`.
            let mut end = first.saturating_add(1);
            let mut next = tail;
            while let Some((&i, t)) = next.split_first() {
                if i != end {
                    break;
                }
                end = end.saturating_add(1);
                next = t;
            }
            self.push_words(first, end, true, true);
            rest = next;
        }
    }

    /// `rl_fetching` words for pieces `first .. end`, as many as the message's limit needs,
    /// for every connection to send.
    fn push_words(&mut self, first: u32, end: u32, stopped: bool, relayed: bool) {
        let mut at = first;
        while at < end {
            let count = end.saturating_sub(at).min(super::wire::MAX_FETCHING);
            let f = Fetching {
                first: at,
                count,
                stopped,
                relayed,
            };
            self.fetching.push((f, None));
            at = at.saturating_add(count);
        }
    }

    /// Web seed `id` no longer fetches pieces `first .. end`: they go back to the picker, and
    /// peers hear it.
    pub fn web_gave_up(&mut self, id: Source, first: u32, end: u32) {
        if let Some(p) = self.picker() {
            for i in first..end {
                p.release(id, i);
            }
        }
        self.tell_fetching(first, end, true);
    }

    /// The swarm's size as this node can tell: the tracker's count, or the peers it knows of
    /// or is connected to and itself, whichever is larger. A connected peer's address is
    /// usually also in `known` (the one we dialled, or the listening port an incoming peer
    /// gave): counted once, or a herd of 16 looks like 31 and each node's share of the web
    /// seeds' pieces is half what it should be.
    pub fn swarm_size(&self) -> u32 {
        let unlisted = self
            .conns
            .values()
            .filter(|a| !self.known.contains_key(a))
            .count();
        let seen = self.known.len().saturating_add(unlisted).saturating_add(1);
        self.tracker_swarm
            .max(u32::try_from(seen).unwrap_or(u32::MAX))
    }

    pub fn picker(&mut self) -> Option<&mut Picker> {
        self.picker.as_mut()
    }

    pub fn new_source(&mut self) -> Source {
        self.next_source = self.next_source.saturating_add(1);
        self.next_source
    }

    /// Remembers peers to try (not ourselves, not banned, bounded).
    pub fn learn(&mut self, peers: &[SocketAddr], me: Option<SocketAddr>) {
        for p in peers {
            if self.known.len() >= MAX_KNOWN {
                break;
            }
            if Some(*p) != me && !self.banned.contains(p) {
                self.known.entry(*p).or_insert(None);
            }
        }
    }

    /// Whether a piece may be buffered now (`len` bytes) within the memory budget; reserves it.
    pub fn reserve(&mut self, len: u64, max: u64) -> bool {
        let next = self.buffered.saturating_add(len);
        // One piece always fits, whatever the budget.
        if next > max && self.buffered > 0 {
            return false;
        }
        self.buffered = next;
        true
    }

    pub fn unreserve(&mut self, len: u64) {
        self.buffered = self.buffered.saturating_sub(len);
    }
}

pub struct Shared {
    pub meta: Metainfo,
    pub file: File,
    pub part: PathBuf,
    pub peer_id: [u8; 20],
    /// The port we listen on (announced to trackers and peers).
    pub port: u16,
    pub limits: Limits,
    /// Peer exchange allowed (not a private torrent).
    pub pex: bool,
    /// The download's deadline; seeding after completion has its own end.
    pub deadline: Deadline,
    pub stop: AtomicBool,
    /// The first round of tracker announces is over (answered or failed): web seeds need not
    /// wait for peers nobody will name.
    pub announced: AtomicBool,
    pub uploaded: AtomicU64,
    pub state: Mutex<State>,
    /// Signalled with `state` when the download completes or fails, so the session's loop
    /// wakes at once instead of at its next tick.
    pub wake: Condvar,
    /// Buffers of pieces that are done, for the next pieces (`piece_buffer`, `release_piece`).
    pub spare: Mutex<Vec<Vec<u8>>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, State> {
        // A thread that panicked while holding the lock cannot exist outside tests (no panics);
        // the state is still consistent enough to finish or fail cleanly.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// A piece received whole from `source`: checked against its SHA-1, then written at its
    /// offset and marked held. `Ok(false)`: it does not verify (the caller drops the source).
    pub fn deliver(&self, source: Source, index: u32, data: &[u8], web: Option<usize>) -> bool {
        let ok = self.meta.verify_piece(index, data);
        let offset = self.meta.piece_span(index).map(|(o, _)| o);
        let written = match (ok, offset) {
            (true, Some(o)) => self.file.write_all_at(data, o).map(|()| true),
            _ => Ok(false),
        };
        let mut st = self.lock();
        let fresh = match written {
            Ok(true) => {
                let fresh = st.picker().is_some_and(|p| !p.has(index));
                if let Some(p) = st.picker() {
                    p.complete(source, index);
                }
                fresh
            }
            Ok(false) => {
                if let Some(p) = st.picker() {
                    p.release(source, index);
                }
                return false;
            }
            Err(e) => {
                st.fatal.get_or_insert(e);
                self.wake.notify_all();
                return false;
            }
        };
        if fresh {
            st.completed.push(index);
            let n = u64::try_from(data.len()).unwrap_or(0);
            match web {
                Some(w) => {
                    if let Some(c) = st.from_web.get_mut(w) {
                        *c = c.saturating_add(n);
                    }
                }
                None => {
                    st.from_peers = st.from_peers.saturating_add(n);
                    st.last_from_peers = Some(Instant::now());
                }
            }
            // The session hashes the file in order as pieces arrive.
            self.wake.notify_all();
        }
        true
    }

    /// Waits up to `max` for a piece beyond the first `seen` completed, the end of the
    /// download, or a failure (at once if one is there).
    pub fn wait_progress(&self, max: Duration, seen: usize) {
        let st = self.lock();
        let _ = self.wake.wait_timeout_while(st, max, |st| {
            st.fatal.is_none()
                && st.completed.len() <= seen
                && st.picker.as_ref().is_some_and(|p| !p.is_complete())
        });
    }

    /// Appends to `out` the piece message answering a peer's request: its header, then the
    /// block read from the file straight into `out` (no block-sized buffer per request).
    /// `false`, `out` unchanged, unless the piece is held and the range lies inside it.
    pub fn append_block(&self, index: u32, begin: u32, length: u32, out: &mut Vec<u8>) -> bool {
        let held = self.lock().picker.as_ref().is_some_and(|p| p.has(index));
        let Some((start, len)) = self.meta.piece_span(index) else {
            return false;
        };
        let (Some(end), Some(at), Ok(n)) = (
            begin.checked_add(length),
            start.checked_add(u64::from(begin)),
            usize::try_from(length),
        ) else {
            return false;
        };
        if !held || end > len || length == 0 {
            return false;
        }
        let mark = out.len();
        out.extend_from_slice(&super::wire::piece_header(index, begin, length));
        let body = out.len();
        out.resize(body.saturating_add(n), 0);
        let read = out
            .get_mut(body..)
            .is_some_and(|b| self.file.read_exact_at(b, at).is_ok());
        if !read {
            out.truncate(mark);
        }
        read
    }

    /// A zeroed buffer of `len` bytes for a piece being received, reused from a piece that is
    /// done when there is one. A fresh 256 KiB allocation is an mmap, a page fault per 4 KiB and
    /// an munmap that stops every thread of the node for a TLB flush: in a herd on two cores,
    /// more CPU than hashing the pieces (measured with perf, 256 nodes).
    pub fn piece_buffer(&self, len: usize) -> Vec<u8> {
        let mut buf = self
            .spare
            .lock()
            .ok()
            .and_then(|mut s| s.pop())
            .unwrap_or_default();
        buf.clear();
        buf.resize(len, 0);
        buf
    }

    /// A piece of `len` bytes no longer held in memory (delivered or abandoned): its bytes
    /// leave the budget of pieces being received (`State::buffered`) and its buffer is kept
    /// for the next piece (at most `SPARE_PIECES` of them), while spares and pieces in flight
    /// together stay within `Limits::max_buffered`. Called with the state locked (the spares'
    /// lock comes second, as in `piece_buffer`).
    pub fn release_piece(&self, st: &mut State, len: u32, buf: Vec<u8>) {
        st.unreserve(u64::from(len));
        let in_flight = usize::try_from(st.buffered).unwrap_or(usize::MAX);
        let Ok(mut spare) = self.spare.lock() else {
            return;
        };
        let held: usize = spare.iter().map(Vec::capacity).sum();
        let max = usize::try_from(self.limits.max_buffered).unwrap_or(usize::MAX);
        if spare.len() < SPARE_PIECES
            && in_flight
                .saturating_add(held)
                .saturating_add(buf.capacity())
                <= max
        {
            spare.push(buf);
        }
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::swarm::metainfo::tests::torrent_of;
    use crate::swarm::wire;

    #[test]
    fn claims_a_departed_peer_made_are_passed_on_as_ended_runs() {
        let mut st = State::default();
        st.pass_on_ended(&[0, 1, 2, 5, 7, 8]);
        let words: Vec<(u32, u32, bool, bool)> = st
            .fetching
            .iter()
            .map(|(f, from)| {
                assert!(from.is_none());
                (f.first, f.count, f.stopped, f.relayed)
            })
            .collect();
        assert_eq!(
            words,
            [(0, 3, true, true), (5, 1, true, true), (7, 2, true, true)]
        );
        let long: Vec<u32> = (0..300).collect();
        st.fetching.clear();
        st.pass_on_ended(&long);
        let runs: Vec<(u32, u32)> = st
            .fetching
            .iter()
            .map(|(f, _)| (f.first, f.count))
            .collect();
        assert_eq!(runs, [(0, 256), (256, 44)]);
    }

    #[test]
    fn a_connected_peer_counts_once_in_the_swarm() {
        let a: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        // An incoming connection before its extension handshake: its ephemeral port.
        let c: SocketAddr = "10.0.0.3:40000".parse().unwrap();
        let mut st = State::default();
        assert_eq!(st.swarm_size(), 1);
        st.known.insert(a, None);
        st.known.insert(b, None);
        assert_eq!(st.swarm_size(), 3);
        st.conns.insert(1, a);
        st.conns.insert(2, b);
        assert_eq!(st.swarm_size(), 3);
        st.conns.insert(3, c);
        assert_eq!(st.swarm_size(), 4);
        st.tracker_swarm = 16;
        assert_eq!(st.swarm_size(), 16);
    }

    /// A session's shared state over `data` in pieces of `piece` bytes (one tracker, one
    /// web seed), its `.part` in the returned directory.
    pub fn shared(data: &[u8], piece: u32) -> (tempfile::TempDir, Shared) {
        let meta = Metainfo::parse(&torrent_of(data, piece, "http://t/a", &[])).unwrap();
        let d = tempfile::tempdir().unwrap();
        let part = d.path().join("img.part");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&part)
            .unwrap();
        file.set_len(meta.length).unwrap();
        let state = State {
            picker: Some(Picker::new(meta.piece_count(), 1)),
            from_web: vec![0],
            ..State::default()
        };
        let s = Shared {
            meta,
            file,
            part,
            peer_id: [0; 20],
            port: 0,
            limits: Limits::default(),
            pex: true,
            deadline: Deadline::NONE,
            stop: AtomicBool::new(false),
            announced: AtomicBool::new(false),
            uploaded: AtomicU64::new(0),
            state: Mutex::new(state),
            wake: Condvar::new(),
            spare: Mutex::default(),
        };
        (d, s)
    }

    /// The block `append_block` serves, checked to follow its piece header and to leave the
    /// buffer as it was when refused.
    fn block(s: &Shared, index: u32, begin: u32, length: u32) -> Option<Vec<u8>> {
        let mut out = b"before".to_vec();
        if !s.append_block(index, begin, length, &mut out) {
            assert_eq!(out, b"before");
            return None;
        }
        assert_eq!(out[6..19], wire::piece_header(index, begin, length));
        Some(out[19..].to_vec())
    }

    #[test]
    fn piece_buffers_are_reused_within_the_budget() {
        let (_d, mut s) = shared(&[1; 100], 64);
        s.limits.max_buffered = 100;
        let release = |s: &Shared, b: Vec<u8>| {
            let mut st = s.lock();
            st.buffered += b.len() as u64;
            s.release_piece(&mut st, b.len() as u32, b);
            assert_eq!(st.buffered, 0);
        };
        let mut a = s.piece_buffer(64);
        a[3] = 9;
        let ptr = a.as_ptr();
        release(&s, a);
        let b = s.piece_buffer(36);
        assert_eq!((b.as_ptr(), b.len()), (ptr, 36));
        assert!(
            b.iter().all(|x| *x == 0),
            "a reused buffer comes back zeroed"
        );
        release(&s, b);
        release(&s, vec![0; 64]);
        assert_eq!(
            s.spare.lock().unwrap().len(),
            1,
            "spares stay within max_buffered"
        );
        // Pieces still in flight count too.
        let c = s.piece_buffer(64);
        let mut st = s.lock();
        st.buffered = 64 + 64;
        s.release_piece(&mut st, 64, c);
        assert!(s.spare.lock().unwrap().is_empty());
    }

    #[test]
    fn only_verified_pieces_are_written_and_served() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let (_d, s) = shared(&data, 4096);
        // Wrong bytes: refused, nothing written, the piece still missing.
        let mut bad = data[..4096].to_vec();
        bad[7] ^= 1;
        assert!(!s.deliver(1, 0, &bad, None));
        assert_eq!(std::fs::read(&s.part).unwrap(), vec![0; 10_000]);
        assert_eq!(
            block(&s, 0, 0, 16),
            None,
            "a piece we do not hold is not served"
        );
        // A short piece, or one at the wrong index, does not verify either.
        assert!(!s.deliver(1, 2, &data[8192..9000], None));
        assert!(!s.deliver(1, 1, &data[..4096], None));
        // The right bytes: written at the piece's offset, counted, served.
        assert!(s.deliver(1, 2, &data[8192..], None));
        assert!(s.deliver(2, 0, &data[..4096], Some(0)));
        let file = std::fs::read(&s.part).unwrap();
        assert_eq!(&file[8192..], &data[8192..]);
        assert_eq!(&file[..4096], &data[..4096]);
        assert_eq!(block(&s, 2, 100, 50).as_deref(), Some(&data[8292..8342]));
        assert_eq!(
            block(&s, 2, 1800, 16),
            None,
            "past the end of the last piece"
        );
        assert_eq!(block(&s, 9, 0, 16), None);
        let st = s.lock();
        assert_eq!(st.from_peers, 10_000 - 8192);
        assert_eq!(st.from_web, vec![4096]);
        assert_eq!(st.completed, vec![2, 0]);
        assert_eq!(st.picker.as_ref().unwrap().missing(), 1);
    }

    #[test]
    fn memory_budget_admits_one_piece_always() {
        let mut st = State::default();
        assert!(
            st.reserve(100, 10),
            "the first piece fits whatever the budget"
        );
        assert!(!st.reserve(1, 10));
        st.unreserve(100);
        assert!(st.reserve(5, 10));
        assert!(st.reserve(5, 10));
        assert!(!st.reserve(1, 10));
    }

    #[test]
    fn learned_peers_are_bounded_and_exclude_us_and_the_banned() {
        let mut st = State::default();
        let me: SocketAddr = "10.0.0.1:6881".parse().unwrap();
        let bad: SocketAddr = "10.0.0.2:6881".parse().unwrap();
        st.banned.insert(bad);
        st.learn(&[me, bad, "10.0.0.3:1".parse().unwrap()], Some(me));
        assert_eq!(st.known.len(), 1);
        let many: Vec<SocketAddr> = (0..2000u16)
            .map(|p| SocketAddr::new([10, 1, 0, 1].into(), p.saturating_add(1)))
            .collect();
        st.learn(&many, None);
        assert_eq!(st.known.len(), MAX_KNOWN);
    }
}
