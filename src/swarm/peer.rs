//! One peer connection: the handshake, then a loop that reads messages (under a hard size
//! limit), downloads one piece at a time from the peer (blocks pipelined, the piece held in
//! memory until it verifies), serves the blocks of verified pieces the peer asks for while it
//! holds one of our upload slots, and exchanges peers (BEP 11). A peer is dropped on anything
//! hostile: another torrent in its handshake, a malformed or oversized message, a bad index or
//! length, unrequested data, a request flood, silence, a trickle below the minimum rate; one that
//! sends a piece that does not verify is also banned for the rest of the download.

use super::picker::Source;
use super::shared::{Shared, State};
use super::wire::{
    self, Fetching, Handshake, Message, Pex, HANDSHAKE_LEN, MAX_FETCHING, MAX_REQUEST,
    RL_FETCHING_ID, UT_PEX_ID,
};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a connection waits for the peer before it looks at the shared state anyway
/// (announces pieces we completed, takes a freed upload slot, notices the end). A connection
/// that downloads or serves wakes on the peer's messages; this paces the idle ones, up to 40
/// threads per node. At 100 ms those wake-ups cost a 256-node herd on two cores 30 % more CPU
/// per node and 40 % more time; at 300 ms 16 and 64 nodes were as fast (bench/herd-p2p.sh).
const TICK: Duration = Duration::from_millis(300);
/// The read wait while queued requests wait for the upload cap.
const CAPPED_TICK: Duration = Duration::from_millis(10);
/// Bytes of blocks served per turn of the loop, between looks for the peer's messages (a
/// cancel, a choke); the connection's send buffer stays about this size.
const SERVE_TURN: usize = 64 << 10;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
const KEEPALIVE: Duration = Duration::from_secs(90);
const PEX_EVERY: Duration = Duration::from_secs(60);
const PEX_FIRST: Duration = Duration::from_secs(3);
/// Bytes of blocks nobody asked for (late end-game copies) tolerated before the peer is dropped.
const MAX_UNREQUESTED: u64 = 4 << 20;
/// How often a connection receiving blocks tells the session that peers are sending
/// (`State::last_from_peers`), so a block costs no lock.
const FLOW_NOTE: Duration = Duration::from_millis(100);
/// Messages per second above which a peer counts as flooding.
const MAX_MESSAGES_PER_SEC: u32 = 20_000;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Ordinary: closed, stopping, not useful.
    Closed(&'static str),
    /// Hostile or broken: dropped, not banned.
    Dropped(String),
    /// Dropped and never contacted again (a piece that does not verify, another torrent).
    Banned(String),
}

/// Connects to `addr` and runs the connection until it ends.
pub fn connect(shared: Arc<Shared>, id: Source, addr: SocketAddr) {
    let end = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        // Trackers list us among the peers: our own port on our own address is ourselves.
        Ok(s)
            if addr.port() == shared.port && s.local_addr().is_ok_and(|l| l.ip() == addr.ip()) =>
        {
            let mut st = shared.lock();
            st.known.remove(&addr);
            st.banned.insert(addr);
            End::Closed("ourselves")
        }
        Ok(s) => run(&shared, id, s, addr, true),
        Err(_) => End::Closed("connection refused or timed out"),
    };
    finish(&shared, id, addr, &end);
}

/// Runs a connection a peer opened to us.
pub fn accepted(shared: Arc<Shared>, id: Source, stream: TcpStream, addr: SocketAddr) {
    let end = run(&shared, id, stream, addr, false);
    finish(&shared, id, addr, &end);
}

/// The connection's traces removed from the shared state; a banned peer's address and id kept.
fn finish(shared: &Shared, id: Source, addr: SocketAddr, end: &End) {
    let mut st = shared.lock();
    let ended = st
        .picker()
        .map(|p| {
            p.remove(id);
            p.unclaim_from(id)
        })
        .unwrap_or_default();
    st.pass_on_ended(&ended);
    st.conns.remove(&id);
    let peer_id = st.peer_ids.remove(&id);
    match end {
        End::Closed(why) => log::debug!("peer {addr}: {why}"),
        End::Dropped(why) => {
            st.dropped = st.dropped.saturating_add(1);
            log::info!("peer {addr} dropped: {why}");
        }
        End::Banned(why) => {
            st.dropped = st.dropped.saturating_add(1);
            st.banned.insert(addr);
            st.known.remove(&addr);
            st.banned_ids.extend(peer_id);
            log::warn!("peer {addr} banned for the rest of the download: {why}");
        }
    }
}

/// The piece being downloaded from this peer.
struct Current {
    index: u32,
    len: u32,
    data: Vec<u8>,
    /// The next offset to request.
    next: u32,
    /// Requests sent and not yet answered: (begin, length).
    outstanding: VecDeque<(u32, u32)>,
}

struct Conn<'a> {
    shared: &'a Shared,
    id: Source,
    addr: SocketAddr,
    stream: TcpStream,
    out: Vec<u8>,
    am_choking: bool,
    am_interested: bool,
    peer_choking: bool,
    peer_interested: bool,
    peer_pex: u8,
    /// The id the peer wants `rl_fetching` sent with (0: it does not know it).
    peer_fetching: u8,
    announced: usize,
    /// How much of `State::fetching` the peer was told.
    told: usize,
    current: Option<Current>,
    queue: VecDeque<(u32, u32, u32)>,
    last_recv: Instant,
    last_sent: Instant,
    last_pex: Instant,
    window_start: Instant,
    window_bytes: u64,
    second_start: Instant,
    second_messages: u32,
    unrequested: u64,
    max_frame: u32,
    /// At least one block was sent to this peer.
    served: bool,
    /// When a block from this peer was last noted in `State::last_from_peers`.
    flow_noted: Instant,
    /// The last queued request waited for the upload cap.
    capped: bool,
    /// The peer sent something after its handshake (counted in `State::peers_heard`).
    heard: bool,
}

fn run(
    shared: &Shared,
    id: Source,
    mut stream: TcpStream,
    addr: SocketAddr,
    outgoing: bool,
) -> End {
    let ours = Handshake::ours(shared.meta.info_hash, shared.peer_id).encode();
    let _ = stream.set_nodelay(true);
    if stream.set_write_timeout(Some(WRITE_TIMEOUT)).is_err()
        || stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).is_err()
    {
        return End::Closed("socket options refused");
    }
    if outgoing && stream.write_all(&ours).is_err() {
        return End::Closed("handshake not sent");
    }
    let mut theirs = [0u8; HANDSHAKE_LEN];
    match stream.read_exact(&mut theirs) {
        Ok(()) => {}
        // Closed before a word: a port scan, or our own connection to ourselves; reset: a
        // peer with all its connections taken closes ours unread (the kernel answers that
        // with a reset). Neither is a fault of the peer's.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
            return End::Closed("closed before its handshake")
        }
        Err(e) if e.kind() == ErrorKind::ConnectionReset => {
            return End::Closed("reset before its handshake (the peer is full)")
        }
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            return End::Dropped("no handshake within 10 s".into())
        }
        Err(_) => return End::Closed("the connection failed before its handshake"),
    }
    let h = match Handshake::parse(&theirs) {
        Ok(h) => h,
        Err(e) => return End::Dropped(e.to_string()),
    };
    if h.info_hash != shared.meta.info_hash {
        return End::Banned(format!(
            "its handshake names another torrent ({})",
            h.info_hash
        ));
    }
    if h.peer_id == shared.peer_id {
        return End::Closed("ourselves");
    }
    {
        let mut st = shared.lock();
        if st.banned_ids.contains(&h.peer_id) || st.banned.contains(&addr) {
            return End::Closed("banned");
        }
        if st.peer_ids.values().any(|p| *p == h.peer_id) {
            return End::Closed("already connected");
        }
        st.peer_ids.insert(id, h.peer_id);
        st.conns.insert(id, addr);
        if st.me.is_none() {
            st.me = stream
                .local_addr()
                .ok()
                .map(|l| SocketAddr::new(l.ip(), shared.port));
        }
    }
    if !outgoing && stream.write_all(&ours).is_err() {
        return End::Closed("handshake not sent");
    }
    if stream.set_read_timeout(Some(TICK)).is_err() {
        return End::Closed("socket options refused");
    }
    let pieces = shared.meta.piece_count();
    let max_frame = (MAX_REQUEST.saturating_add(16))
        .max((pieces / 8).saturating_add(16))
        .max(1 << 16);
    let now = Instant::now();
    let mut c = Conn {
        shared,
        id,
        addr,
        stream,
        out: Vec::new(),
        am_choking: true,
        am_interested: false,
        peer_choking: true,
        peer_interested: false,
        peer_pex: 0,
        peer_fetching: 0,
        announced: 0,
        told: 0,
        current: None,
        queue: VecDeque::new(),
        last_recv: now,
        last_sent: now,
        // The first peer list goes out a few seconds in (a booting herd cannot wait a minute).
        last_pex: now
            .checked_sub(PEX_EVERY.saturating_sub(PEX_FIRST))
            .unwrap_or(now),
        window_start: now,
        window_bytes: 0,
        second_start: now,
        second_messages: 0,
        unrequested: 0,
        max_frame,
        served: false,
        flow_noted: now.checked_sub(FLOW_NOTE).unwrap_or(now),
        capped: false,
        heard: false,
    };
    if h.extensions() {
        let payload = wire::ext_handshake(shared.port, shared.pex);
        c.send(&Message::Extended { id: 0, payload });
    }
    {
        let st = shared.lock();
        if let Some(p) = st.picker.as_ref() {
            c.announced = st.completed.len();
            if p.have().iter().any(|h| *h) {
                c.send(&Message::Bitfield(wire::bitfield(p.have())));
            }
        }
    }
    let end = c.run();
    if let Some(cur) = c.current.take() {
        shared.release_piece(&mut shared.lock(), cur.len, cur.data);
    }
    shared.lock().chokes.remove(id, shared.limits.upload_slots);
    end
}

impl Conn<'_> {
    fn send(&mut self, m: &Message) {
        m.encode(&mut self.out);
    }

    fn flush(&mut self) -> Result<(), End> {
        if self.out.is_empty() {
            return Ok(());
        }
        // Kept, not taken: a fresh buffer per flush grew by reallocation past the allocator's
        // mmap threshold on every turn that served blocks.
        let sent = self.stream.write_all(&self.out);
        self.out.clear();
        sent.map_err(|_| End::Closed("write failed or timed out"))?;
        self.last_sent = Instant::now();
        Ok(())
    }

    fn run(&mut self) -> End {
        let mut rbuf: Vec<u8> = Vec::new();
        let mut tmp = vec![0u8; 32 << 10];
        let mut wait = TICK;
        loop {
            if self.shared.stopping() {
                return End::Closed("stopping");
            }
            if let Err(e) = self.flush() {
                return e;
            }
            // Requests waiting to be served: read only what is already there and serve on
            // (the write blocks while the peer's side is full: that paces serving; a read
            // timeout, even 100 µs, cost a context switch per look); under the upload cap, look
            // again soon; otherwise wait for the peer.
            let serving = !self.queue.is_empty() && !self.capped;
            let want = if self.capped { CAPPED_TICK } else { TICK };
            if want != wait {
                if self.stream.set_read_timeout(Some(want)).is_err() {
                    return End::Closed("socket options refused");
                }
                wait = want;
            }
            // Never more than one frame's worth buffered.
            let room = usize::try_from(self.max_frame)
                .unwrap_or(0)
                .saturating_add(4)
                .saturating_sub(rbuf.len())
                .min(tmp.len());
            let read = tmp.get_mut(..room).map(|b| {
                if serving {
                    crate::sys::net::recv_now(&self.stream, b)
                } else {
                    self.stream.read(b)
                }
            });
            let got = match read {
                Some(Ok(0)) if room > 0 => return End::Closed("closed by the peer"),
                Some(Ok(n)) => n,
                Some(Err(e))
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) =>
                {
                    0
                }
                Some(Err(_)) => return End::Closed("connection reset"),
                None => 0,
            };
            let now = Instant::now();
            if got > 0 {
                rbuf.extend_from_slice(tmp.get(..got).unwrap_or_default());
                self.last_recv = now;
            }
            // Every whole frame in the buffer, then what is left moved to its start once.
            let mut at = 0usize;
            loop {
                let rest = rbuf.get(at..).unwrap_or_default();
                let n = match wire::frame_len(rest, self.max_frame) {
                    Ok(Some(n)) => n,
                    Ok(None) => break,
                    Err(e) => return End::Dropped(e.to_string()),
                };
                let total = usize::try_from(n).unwrap_or(usize::MAX).saturating_add(4);
                let Some(frame) = rest.get(4..total) else {
                    break;
                };
                at = at.saturating_add(total);
                // A block is copied once, from here into its piece; any other message is
                // parsed whole.
                let handled = self
                    .count(now)
                    .and_then(|()| match wire::parse_piece(frame) {
                        Ok(Some(b)) => self.block(b.index, b.begin, b.data, now),
                        Ok(None) => match Message::parse(frame) {
                            Ok(msg) => self.handle(msg, now),
                            Err(e) => Err(End::Dropped(e.to_string())),
                        },
                        Err(e) => Err(End::Dropped(e.to_string())),
                    });
                if let Err(e) = handled {
                    return e;
                }
            }
            rbuf.drain(..at);
            // After every whole frame of this read: a peer's bitfield comes with its first
            // messages.
            if at > 0 && !self.heard {
                self.heard = true;
                let mut st = self.shared.lock();
                st.peers_heard = st.peers_heard.saturating_add(1);
            }
            if let Err(e) = self.tick(now) {
                return e;
            }
        }
    }

    /// Counts a message against the flood limit.
    fn count(&mut self, now: Instant) -> Result<(), End> {
        if now.saturating_duration_since(self.second_start) >= Duration::from_secs(1) {
            self.second_start = now;
            self.second_messages = 0;
        }
        self.second_messages = self.second_messages.saturating_add(1);
        if self.second_messages > MAX_MESSAGES_PER_SEC {
            return Err(End::Dropped("message flood".into()));
        }
        Ok(())
    }

    fn handle(&mut self, msg: Message, now: Instant) -> Result<(), End> {
        let pieces = self.shared.meta.piece_count();
        match msg {
            Message::KeepAlive
            | Message::Port(_)
            | Message::Suggest(_)
            | Message::AllowedFast(_)
            | Message::Unknown(_) => {}
            Message::Choke => {
                self.peer_choking = true;
                self.abandon();
            }
            Message::Unchoke => self.peer_choking = false,
            Message::Interested => self.peer_interested = true,
            Message::NotInterested => self.peer_interested = false,
            Message::Have(i) => {
                let ok = self
                    .shared
                    .lock()
                    .picker()
                    .is_some_and(|p| p.peer_have(self.id, i));
                if !ok {
                    return Err(End::Dropped(format!("have for piece {i} of {pieces}")));
                }
            }
            // BEP 3 puts the bitfield first, but clients send it after other messages too
            // (aria2 does); a late one only replaces what we knew of the peer's pieces.
            Message::Bitfield(b) => {
                let has = wire::parse_bitfield(&b, pieces)
                    .ok_or_else(|| End::Dropped("malformed bitfield".into()))?;
                if let Some(p) = self.shared.lock().picker() {
                    p.peer_bitfield(self.id, has);
                }
            }
            Message::HaveAll | Message::HaveNone => {
                let all = matches!(msg, Message::HaveAll);
                let n = usize::try_from(pieces).unwrap_or(0);
                if let Some(p) = self.shared.lock().picker() {
                    p.peer_bitfield(self.id, vec![all; n]);
                }
            }
            Message::Request {
                index,
                begin,
                length,
            } => {
                if length == 0 || length > MAX_REQUEST || index >= pieces {
                    return Err(End::Dropped(format!(
                        "request for {length} bytes at {begin} of piece {index}"
                    )));
                }
                if !self.am_choking {
                    if self.queue.len() >= self.shared.limits.max_queued {
                        return Err(End::Dropped("request flood".into()));
                    }
                    self.queue.push_back((index, begin, length));
                }
            }
            Message::Cancel {
                index,
                begin,
                length,
            } => {
                self.queue.retain(|r| *r != (index, begin, length));
            }
            Message::Reject { index, .. } => {
                if self.current.as_ref().is_some_and(|c| c.index == index) {
                    self.abandon();
                }
            }
            Message::Piece { index, begin, data } => self.block(index, begin, &data, now)?,
            Message::Extended { id: 0, payload } => {
                if let Ok(h) = wire::parse_ext_handshake(&payload) {
                    self.peer_pex = h.ut_pex;
                    if self.peer_fetching == 0 && h.rl_fetching != 0 {
                        self.peer_fetching = h.rl_fetching;
                        self.tell_fetching_now();
                    }
                    if let Some(port) = h.port {
                        let listen = SocketAddr::new(self.addr.ip(), port);
                        let mut st = self.shared.lock();
                        st.conns.insert(self.id, listen);
                        st.known.entry(listen).or_insert(Some(now));
                    }
                }
            }
            Message::Extended { id, payload } => {
                if id == UT_PEX_ID && self.shared.pex {
                    if let Ok(p) = wire::parse_pex(&payload) {
                        let me = SocketAddr::new(self.addr.ip(), self.shared.port);
                        self.shared.lock().learn(&p.added, Some(me));
                    }
                } else if id == RL_FETCHING_ID {
                    // Advisory: a malformed one is ignored, like an unknown message. A claim
                    // holds until it ends, or until peers had their chance (`peer_wait`
                    // without a byte from them, the time a piece may wait for peers).
                    // A node's own word that changed something here is passed on once, to
                    // every other peer: a node sees 40 of a herd of 256, and two that fetch
                    // the same piece are rarely connected but usually share a peer.
                    if let Ok(f) = Fetching::parse(&payload, pieces) {
                        let mut st = self.shared.lock();
                        let news = st.picker().is_some_and(|p| {
                            if f.stopped {
                                p.unclaim(f.first, f.count)
                            } else {
                                p.claim(f.first, f.count, self.id, f.relayed)
                            }
                        });
                        if news && !f.relayed {
                            let relayed = Fetching { relayed: true, ..f };
                            st.fetching.push((relayed, Some(self.id)));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// A peer that just said it knows `rl_fetching` hears which pieces our web seeds are
    /// fetching now, then each change as it happens (in `tick`).
    fn tell_fetching_now(&mut self) {
        let runs = {
            let st = self.shared.lock();
            self.told = st.fetching.len();
            st.picker
                .as_ref()
                .map(|p| p.web_runs(MAX_FETCHING))
                .unwrap_or_default()
        };
        for (first, count) in runs {
            let f = Fetching {
                first,
                count,
                stopped: false,
                relayed: false,
            };
            self.send(&Message::Extended {
                id: self.peer_fetching,
                payload: f.encode(),
            });
        }
    }

    /// A block arrived: it must answer a request of ours.
    fn block(&mut self, index: u32, begin: u32, data: &[u8], now: Instant) -> Result<(), End> {
        let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
        let n = u64::from(len);
        let Some(cur) = self.current.as_mut().filter(|c| c.index == index) else {
            self.unrequested = self.unrequested.saturating_add(n);
            if self.unrequested > MAX_UNREQUESTED {
                return Err(End::Dropped("blocks nobody asked for".into()));
            }
            return Ok(());
        };
        let Some(pos) = cur.outstanding.iter().position(|r| *r == (begin, len)) else {
            return Err(End::Dropped(format!(
                "a block of {len} bytes at {begin} of piece {index} that was not requested"
            )));
        };
        cur.outstanding.remove(pos);
        let start = usize::try_from(begin).unwrap_or(usize::MAX);
        let end = start.saturating_add(data.len());
        let Some(dst) = cur.data.get_mut(start..end) else {
            return Err(End::Dropped("a block outside its piece".into()));
        };
        dst.copy_from_slice(data);
        self.window_bytes = self.window_bytes.saturating_add(n);
        if now.saturating_duration_since(self.flow_noted) >= FLOW_NOTE {
            self.flow_noted = now;
            self.shared.lock().last_from_peers = Some(now);
        }
        if cur.next >= cur.len && cur.outstanding.is_empty() {
            let Some(done) = self.current.take() else {
                return Ok(());
            };
            let ok = self.shared.deliver(self.id, done.index, &done.data, None);
            self.shared
                .release_piece(&mut self.shared.lock(), done.len, done.data);
            if !ok {
                return Err(End::Banned(format!(
                    "piece {} does not match its SHA-1",
                    done.index
                )));
            }
        }
        Ok(())
    }

    /// Drops the piece in progress (choked, rejected, or completed by someone else).
    fn abandon(&mut self) {
        if let Some(cur) = self.current.take() {
            let mut st = self.shared.lock();
            if let Some(p) = st.picker() {
                p.release(self.id, cur.index);
            }
            self.shared.release_piece(&mut st, cur.len, cur.data);
        }
    }

    fn tick(&mut self, now: Instant) -> Result<(), End> {
        let limits = &self.shared.limits;
        if now.saturating_duration_since(self.last_recv) > limits.idle {
            return Err(End::Dropped("silent".into()));
        }
        // The minimum-progress rule, while we wait on requests.
        let waiting = self
            .current
            .as_ref()
            .is_some_and(|c| !c.outstanding.is_empty());
        let window = now.saturating_duration_since(self.window_start);
        if window >= limits.stall {
            let need = limits
                .min_rate
                .saturating_mul(limits.stall.as_secs())
                .max(1);
            if waiting && self.window_bytes < need {
                return Err(End::Dropped(format!(
                    "{} bytes in {} s, below the minimum rate",
                    self.window_bytes,
                    window.as_secs()
                )));
            }
            self.window_start = now;
            self.window_bytes = 0;
        }
        if !waiting && self.current.is_none() {
            self.window_start = now;
            self.window_bytes = 0;
        }
        let mut msgs = Vec::new();
        {
            let mut st = self.shared.lock();
            let st: &mut State = &mut st;
            // Two seeds have nothing for each other, and the connection holds one of each's
            // few places (`Limits::max_peers`) that a node still downloading could use.
            if st
                .picker
                .as_ref()
                .is_some_and(|p| p.is_complete() && p.peer_complete(self.id))
            {
                st.known.remove(&self.addr);
                return Err(End::Closed("both have every piece"));
            }
            // Announce what we completed since the last tick.
            for i in st.completed.get(self.announced..).unwrap_or_default() {
                msgs.push(Message::Have(*i));
            }
            self.announced = st.completed.len();
            if self.peer_fetching != 0 {
                for (f, from) in st.fetching.get(self.told..).unwrap_or_default() {
                    if *from == Some(self.id) {
                        continue;
                    }
                    msgs.push(Message::Extended {
                        id: self.peer_fetching,
                        payload: f.encode(),
                    });
                }
                self.told = st.fetching.len();
            }
            // A piece someone else completed first (end game): cancel ours.
            if let Some(cur) = &self.current {
                if st.picker.as_ref().is_some_and(|p| p.has(cur.index)) {
                    for (b, l) in &cur.outstanding {
                        msgs.push(Message::Cancel {
                            index: cur.index,
                            begin: *b,
                            length: *l,
                        });
                    }
                    if let Some(done) = self.current.take() {
                        self.shared.release_piece(st, done.len, done.data);
                    }
                }
            }
            let want = st.picker.as_ref().is_some_and(|p| p.wants_from(self.id));
            if want != self.am_interested {
                self.am_interested = want;
                msgs.push(if want {
                    Message::Interested
                } else {
                    Message::NotInterested
                });
            }
            if want && !self.peer_choking && self.current.is_none() {
                if let Some(i) = st.picker().and_then(|p| p.pick(self.id)) {
                    let len = self.shared.meta.piece_span(i).map_or(0, |(_, l)| l);
                    if len > 0 && st.reserve(u64::from(len), limits.max_buffered) {
                        self.current = Some(Current {
                            index: i,
                            len,
                            data: self.shared.piece_buffer(usize::try_from(len).unwrap_or(0)),
                            next: 0,
                            outstanding: VecDeque::new(),
                        });
                        self.window_start = now;
                        self.window_bytes = 0;
                    } else if let Some(p) = st.picker() {
                        p.release(self.id, i);
                    }
                }
            }
            // Upload slots (`choke`: first come, then rotation).
            if self.peer_interested {
                st.chokes.want(self.id, limits.upload_slots);
            } else {
                st.chokes.remove(self.id, limits.upload_slots);
            }
            let serve = st.chokes.is_unchoked(self.id);
            if serve && self.am_choking {
                self.am_choking = false;
                msgs.push(Message::Unchoke);
            } else if !serve && !self.am_choking {
                self.am_choking = true;
                self.queue.clear();
                msgs.push(Message::Choke);
            }
        }
        for m in &msgs {
            self.send(m);
        }
        // Keep the pipeline full.
        if let Some(cur) = self.current.as_mut() {
            while cur.outstanding.len() < limits.pipeline && cur.next < cur.len {
                let length = wire::BLOCK.min(cur.len.saturating_sub(cur.next));
                let m = Message::Request {
                    index: cur.index,
                    begin: cur.next,
                    length,
                };
                m.encode(&mut self.out);
                cur.outstanding.push_back((cur.next, length));
                cur.next = cur.next.saturating_add(length);
            }
        }
        // Serve queued requests, up to `SERVE_TURN` bytes per turn, so reading never starves.
        // Under the upload cap, a request waits in the queue (the peer's own pipeline keeps
        // asking) until the session's bucket holds its bytes.
        for _ in 0..32 {
            let Some(&(index, begin, length)) = self.queue.front() else {
                break;
            };
            let allowed = {
                let mut st = self.shared.lock();
                let ok = st
                    .upload
                    .as_mut()
                    .is_none_or(|b| b.take(now, u64::from(length)));
                if ok && !self.served {
                    self.served = true;
                    st.peers_served = st.peers_served.saturating_add(1);
                }
                ok
            };
            self.capped = !allowed;
            if !allowed {
                break;
            }
            self.queue.pop_front();
            if !self
                .shared
                .append_block(index, begin, length, &mut self.out)
            {
                return Err(End::Dropped(format!(
                    "request for a piece we do not have or outside it ({index}, {begin}, {length})"
                )));
            }
            self.shared
                .uploaded
                .fetch_add(u64::from(length), std::sync::atomic::Ordering::Relaxed);
            if self.out.len() > SERVE_TURN {
                break;
            }
        }
        if self.peer_pex != 0
            && self.shared.pex
            && now.saturating_duration_since(self.last_pex) >= PEX_EVERY
        {
            self.last_pex = now;
            let added: Vec<SocketAddr> = {
                let st = self.shared.lock();
                st.conns
                    .iter()
                    .filter(|(k, _)| **k != self.id)
                    .map(|(_, a)| *a)
                    .take(50)
                    .collect()
            };
            let payload = wire::encode_pex(&Pex {
                added,
                dropped: Vec::new(),
            });
            self.send(&Message::Extended {
                id: self.peer_pex,
                payload,
            });
        }
        if self.out.is_empty() && now.saturating_duration_since(self.last_sent) >= KEEPALIVE {
            self.send(&Message::KeepAlive);
        }
        Ok(())
    }
}
