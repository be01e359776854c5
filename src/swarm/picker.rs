//! Which piece to download next, from whom: rarest first among the pieces a peer has (ties
//! broken by a per-node order, so a herd does not all start on the same piece), one source per
//! piece until every missing piece has one, then end game (a second source for the pieces
//! still in flight, so one slow peer does not hold up the end). Web seeds take the pieces no
//! connected peer has that are in this node's share ([`Share`]), and any piece of the share
//! nobody is fetching once peers had their chance.
//!
//! Pure bookkeeping: sources are numbered by the session, pieces by index; nothing here does
//! I/O or looks at a clock.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A peer connection or a web seed, as the session numbers them.
pub type Source = u64;

/// At most this many sources fetch the same piece (end game).
pub const MAX_DUP: u8 = 2;

/// How long a node has nothing to do (nothing left in its share, no piece from peers) before
/// it widens its share.
pub const WIDEN_AFTER: Duration = Duration::from_millis(300);

/// A node's share of the pieces nobody has yet: the ones it may take from the web seeds. In a
/// herd that starts together a node hears of what only some others fetch from the mirrors
/// (`rl_fetching`, from its peers and theirs), so each takes only the pieces its own order
/// (the tie order, independent per node) ranks in the first `widened / swarm` of all: every
/// piece is in about `widened` nodes' shares, and the first wave asks the mirrors for each
/// piece about once instead of every node asking for its own runs. A piece in nobody's share
/// (e⁻¹ of them) comes when the nodes run out of work: each widens its share by one more
/// `1 / swarm` after [`WIDEN_AFTER`] idle, twice as long each round ([`Share::backed_off`]),
/// so each round asks for the pieces still missing about once more. Expected mirror bytes:
/// about 1 + e⁻¹ + e⁻² + … ≈ 1.6 × the image whatever the herd's size, less as pieces spread
/// between the rounds (a piece a peer has is no longer taken from the mirrors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub widened: u32,
    /// When it last widened.
    pub since: Option<Instant>,
}

impl Default for Share {
    fn default() -> Self {
        Share {
            widened: 1,
            since: None,
        }
    }
}

impl Share {
    /// The largest tie value in the share of a swarm of `swarm` nodes; `None`: every piece.
    pub fn threshold(&self, swarm: u32) -> Option<u64> {
        let part = u64::MAX.checked_div(u64::from(swarm)).unwrap_or(u64::MAX);
        (self.widened < swarm).then(|| part.saturating_mul(u64::from(self.widened)))
    }

    /// How long a node that sees part of the swarm waits, idle, before its next round:
    /// [`WIDEN_AFTER`], twice as long each round after the first, at most `cap`. (A node that
    /// sees the whole swarm knows which pieces nobody has, and keeps to [`WIDEN_AFTER`].)
    pub fn backed_off(&self, cap: Duration) -> Duration {
        let doubled = 1u32
            .checked_shl(self.widened.saturating_sub(1))
            .unwrap_or(u32::MAX);
        WIDEN_AFTER.saturating_mul(doubled).min(cap)
    }

    /// Widens the share when the node has been idle since `idle_since` (its last piece from
    /// a peer, or its start) and since it last widened, for `after`; whether it did.
    pub fn widen_after(&mut self, now: Instant, idle_since: Instant, after: Duration) -> bool {
        let from = self.since.map_or(idle_since, |s| s.max(idle_since));
        if now.saturating_duration_since(from) < after {
            return false;
        }
        self.widened = self.widened.saturating_add(1);
        self.since = Some(now);
        true
    }
}

/// How long the swarm a node sees must stop growing fast before its web seeds start.
pub const SETTLE: Duration = Duration::from_millis(300);

/// When the swarm a node sees last grew fast (by more than a quarter at once). A herd that
/// starts together reaches the tracker over a second or more when the boot server's link is
/// busy, so the first nodes hear a count of 41 where 256 are coming; each takes 1/41 of the
/// pieces nobody has, and the herd's first wave asks the mirrors for the sum of those shares
/// (2.7 times the image at 256 nodes). A node waits while its count still grows fast.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Growth {
    /// The size when it last grew fast.
    pub size: u32,
    pub at: Option<Instant>,
}

impl Growth {
    /// Notes the swarm's size as seen `now`.
    pub fn note(&mut self, size: u32, now: Instant) {
        if size > self.size.saturating_add(self.size / 4).max(1) {
            self.size = size;
            self.at = Some(now);
        }
    }

    /// Whether it grew fast within [`SETTLE`] of `now`.
    pub fn growing(&self, now: Instant) -> bool {
        self.grew_within(now, SETTLE)
    }

    /// Whether it grew fast within `d` of `now`.
    pub fn grew_within(&self, now: Instant, d: Duration) -> bool {
        self.at
            .is_some_and(|t| now.saturating_duration_since(t) < d)
    }
}

/// A node's key in [`rank`]: its listening address, as every peer knows it.
pub fn node_key(a: std::net::SocketAddr) -> u64 {
    let ip = match a.ip() {
        std::net::IpAddr::V4(v) => v.to_ipv6_mapped().to_bits(),
        std::net::IpAddr::V6(v) => v.to_bits(),
    };
    // Both halves and the port through the mix, so every bit counts.
    let hi = mix((ip >> 64) as u64);
    mix(hi ^ (ip as u64) ^ u64::from(a.port()).rotate_left(48))
}

/// Node `me`'s place for piece `i` among `members` (rendezvous hashing): how many of them
/// rank the piece higher, counted up to `limit` (a node asks whether it is among the first
/// few: the count stops there, so most pieces cost a few hashes, not one per member). Nodes
/// that know the same members agree on who is first (place 0) for every piece, without a
/// word between them.
pub fn rank(i: u32, me: u64, members: &[u64], limit: usize) -> usize {
    let piece = mix(u64::from(i));
    let score = |k: u64| (mix(k ^ piece), k);
    let mine = score(me);
    members
        .iter()
        .filter(|&&m| m != me && score(m) > mine)
        .take(limit)
        .count()
}

/// A splitmix64 step: a cheap, well-spread permutation of 64-bit values.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The pieces a node's web seeds may take of those nobody has ([`Share`]).
#[derive(Debug, Clone, Copy)]
pub enum WebShare<'a> {
    /// By the node's own order: tie values up to this one; `None`: every piece.
    Order(Option<u64>),
    /// By rank among every node ([`rank`]): the pieces `me` ranks among the first `within`
    /// of `members` (every other node's key).
    Rank {
        me: u64,
        members: &'a [u64],
        within: u32,
    },
}

#[derive(Debug)]
pub struct Picker {
    have: Vec<bool>,
    missing: u32,
    /// How many connected peers have each piece.
    avail: Vec<u32>,
    /// How many sources are fetching each piece.
    active: Vec<u8>,
    /// How many of those are web seeds.
    web_active: Vec<u8>,
    /// The sources that are web seeds (they asked for `pick_web`).
    webs: HashSet<Source>,
    /// Which pieces each peer has (web seeds have everything and are not listed).
    peers: HashMap<Source, Vec<bool>>,
    /// The pieces each source is fetching.
    busy: HashMap<Source, Vec<u32>>,
    /// What peers said of each piece with `rl_fetching` ([`Picker::claim`]).
    claimed: Vec<Claim>,
    seed: u64,
}

/// What peers said of a piece with `rl_fetching`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Claim {
    Unsaid,
    /// Some peer fetches it from the mirrors, or did: ours leave it alone. `from`: the
    /// connection the word came through; `relayed`: passed on by it, not its own.
    Held {
        from: Source,
        relayed: bool,
    },
    /// The claim ended: the piece is free, and no later word holds it back again.
    Ended,
}

impl Picker {
    /// `n` pieces, none held yet; `seed` orders ties (the node's own, so herds spread).
    pub fn new(n: u32, seed: u64) -> Picker {
        let len = usize::try_from(n).unwrap_or(0);
        Picker {
            have: vec![false; len],
            missing: n,
            avail: vec![0; len],
            active: vec![0; len],
            web_active: vec![0; len],
            webs: HashSet::new(),
            peers: HashMap::new(),
            busy: HashMap::new(),
            claimed: vec![Claim::Unsaid; len],
            seed,
        }
    }

    /// `n` pieces, all held: a seeder's picker (it only answers `has`).
    pub fn full(n: u32, seed: u64) -> Picker {
        let mut p = Picker::new(n, seed);
        p.have.fill(true);
        p.missing = 0;
        p
    }

    fn idx(&self, i: u32) -> Option<usize> {
        usize::try_from(i).ok().filter(|&i| i < self.have.len())
    }

    pub fn have(&self) -> &[bool] {
        &self.have
    }

    pub fn has(&self, i: u32) -> bool {
        self.idx(i)
            .and_then(|i| self.have.get(i))
            .copied()
            .unwrap_or(false)
    }

    pub fn missing(&self) -> u32 {
        self.missing
    }

    pub fn is_complete(&self) -> bool {
        self.missing == 0
    }

    /// A peer's bitfield (or all `true` for HaveAll); replaces what was known of it.
    pub fn peer_bitfield(&mut self, p: Source, has: Vec<bool>) {
        if has.len() != self.have.len() {
            return;
        }
        self.forget_peer_pieces(p);
        for (a, h) in self.avail.iter_mut().zip(&has) {
            if *h {
                *a = a.saturating_add(1);
            }
        }
        self.peers.insert(p, has);
    }

    /// A peer's `have`; `false` when the index is out of range (the session drops the peer).
    pub fn peer_have(&mut self, p: Source, i: u32) -> bool {
        let Some(i) = self.idx(i) else { return false };
        let n = self.have.len();
        let has = self.peers.entry(p).or_insert_with(|| vec![false; n]);
        if let Some(h) = has.get_mut(i) {
            if !*h {
                *h = true;
                if let Some(a) = self.avail.get_mut(i) {
                    *a = a.saturating_add(1);
                }
            }
        }
        true
    }

    fn forget_peer_pieces(&mut self, p: Source) {
        if let Some(old) = self.peers.remove(&p) {
            for (a, h) in self.avail.iter_mut().zip(&old) {
                if *h {
                    *a = a.saturating_sub(1);
                }
            }
        }
    }

    /// A source gone: its pieces are no longer available from it nor in flight.
    pub fn remove(&mut self, p: Source) {
        self.forget_peer_pieces(p);
        for i in self.busy.remove(&p).unwrap_or_default() {
            self.dec_active(p, i);
        }
    }

    fn dec_active(&mut self, p: Source, i: u32) {
        if let Some(a) = self.idx(i).and_then(|i| self.active.get_mut(i)) {
            *a = a.saturating_sub(1);
        }
        if self.webs.contains(&p) {
            if let Some(a) = self.idx(i).and_then(|i| self.web_active.get_mut(i)) {
                *a = a.saturating_sub(1);
            }
        }
    }

    /// A peer said it fetches pieces `first .. first + count` from the mirrors (`from`: the
    /// connection the word came through; `relayed`: passed on by it): our web seeds leave
    /// them alone until the claim ends ([`Picker::unclaim`], [`Picker::unclaim_from`]) or
    /// peers had their chance (`any`: no byte from peers for `peer_wait`). A word is passed
    /// on once, so a node hears what nodes two hops away fetch: a claim it heard is a piece
    /// the herd holds, or soon will, though none of its 40 peers may have it yet; fetched
    /// again, it is the herd's second copy. Only the first word on a piece counts, so a peer
    /// cannot hold one back again once its claim ended. Whether this was the first word on
    /// some piece.
    pub fn claim(&mut self, first: u32, count: u32, from: Source, relayed: bool) -> bool {
        let mut new = false;
        for i in first..first.saturating_add(count).min(self.n()) {
            if let Some(c) = self.idx(i).and_then(|i| self.claimed.get_mut(i)) {
                if *c == Claim::Unsaid {
                    *c = Claim::Held { from, relayed };
                    new = true;
                }
            }
        }
        new
    }

    /// The connection `from` closed: the claims its words made end (a node that left
    /// fetches nothing; one that relayed a word cannot pass on its end). Of those, the
    /// pieces the departed peer claimed itself, in order: its claims were news here and
    /// passed on, and their end is passed on too.
    pub fn unclaim_from(&mut self, from: Source) -> Vec<u32> {
        let mut own = Vec::new();
        for (i, c) in self.claimed.iter_mut().enumerate() {
            if let Claim::Held { from: f, relayed } = *c {
                if f == from {
                    *c = Claim::Ended;
                    if !relayed {
                        own.extend(u32::try_from(i).ok());
                    }
                }
            }
        }
        own
    }

    /// The peer no longer fetches pieces `first .. first + count` (it gave them up): they are
    /// free for our web seeds. Whether some claim was still holding.
    pub fn unclaim(&mut self, first: u32, count: u32) -> bool {
        let mut ended = false;
        for i in first..first.saturating_add(count).min(self.n()) {
            if let Some(c) = self.idx(i).and_then(|i| self.claimed.get_mut(i)) {
                if matches!(c, Claim::Held { .. }) {
                    *c = Claim::Ended;
                    ended = true;
                }
            }
        }
        ended
    }

    fn n(&self) -> u32 {
        u32::try_from(self.have.len()).unwrap_or(u32::MAX)
    }

    fn claimed(&self, i: usize) -> bool {
        matches!(self.claimed.get(i), Some(Claim::Held { .. }))
    }

    /// Whether some connected peer has a piece we lack: then the node is slow, not idle, and
    /// must not widen its share of the mirrors' pieces ([`Share`]).
    pub fn peers_have_missing(&self) -> bool {
        self.have
            .iter()
            .zip(&self.avail)
            .any(|(mine, &avail)| !mine && avail > 0)
    }

    /// Whether some piece we lack is with no connected peer and fetched by no source: when
    /// this node is connected to the whole swarm, a piece nobody has yet (or one another node
    /// is fetching from the mirrors).
    pub fn orphans(&self) -> bool {
        self.have
            .iter()
            .zip(self.avail.iter().zip(&self.active))
            .any(|(mine, (&avail, &active))| !mine && avail == 0 && active == 0)
    }

    /// The pieces web seeds are fetching, as runs of at most `max` consecutive pieces
    /// `(first, count)`: what a newly connected peer is told ([`Picker::claim`]).
    pub fn web_runs(&self, max: u32) -> Vec<(u32, u32)> {
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for (i, &w) in self.web_active.iter().enumerate() {
            let Ok(i) = u32::try_from(i) else { break };
            if w == 0 {
                continue;
            }
            match runs.last_mut() {
                Some((first, count))
                    if first.saturating_add(*count) == i && *count < max.max(1) =>
                {
                    *count = count.saturating_add(1);
                }
                _ => runs.push((i, 1)),
            }
        }
        runs
    }

    /// Whether a web seed is fetching some piece.
    pub fn web_fetching(&self) -> bool {
        self.web_active.iter().any(|&w| w > 0)
    }

    /// Whether the peer has every piece (as far as its bitfield and haves say).
    pub fn peer_complete(&self, p: Source) -> bool {
        self.peers
            .get(&p)
            .is_some_and(|has| !has.is_empty() && has.iter().all(|h| *h))
    }

    /// Whether the peer has any piece we lack (we are interested in it).
    pub fn wants_from(&self, p: Source) -> bool {
        self.peers
            .get(&p)
            .is_some_and(|has| has.iter().zip(&self.have).any(|(h, mine)| *h && !mine))
    }

    /// How many pieces the source is fetching.
    pub fn in_flight(&self, p: Source) -> usize {
        self.busy.get(&p).map_or(0, Vec::len)
    }

    fn tie(&self, i: u32) -> u64 {
        // A cheap per-node permutation of the indices (splitmix64 step).
        let mut z = u64::from(i) ^ self.seed;
        z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z ^ (z >> 27)
    }

    /// The next piece for peer `p`, marked as in flight from it. A piece only web seeds are
    /// fetching counts as fetched by nobody, after the pieces nobody fetches at all: a peer
    /// that has it is usually faster than a mirror every node is asking, and the web seed
    /// stops reading once the piece is held (on a loaded herd of 256, a piece took 6 s from
    /// the mirror while peers already held it).
    pub fn pick(&mut self, p: Source) -> Option<u32> {
        let has = self.peers.get(&p)?;
        let mine = self.busy.get(&p);
        // ((web seeds fetch it, avail, tie), index)
        let mut best: Option<((bool, u32, u64), u32)> = None;
        let mut endgame: Option<(u8, u64, u32)> = None;
        let mut all_active = true;
        for (i, ((h, &mine_have), (&avail, (&active, &web)))) in has
            .iter()
            .zip(&self.have)
            .zip(
                self.avail
                    .iter()
                    .zip(self.active.iter().zip(&self.web_active)),
            )
            .enumerate()
        {
            if mine_have {
                continue;
            }
            // End game once every missing piece is in flight from some source, web seeds
            // included; a piece only web seeds fetch is free for peers.
            all_active &= active > 0;
            let active = active.saturating_sub(web);
            let Ok(i) = u32::try_from(i) else { break };
            if !h || mine.is_some_and(|m| m.contains(&i)) {
                continue;
            }
            let key_tie = self.tie(i);
            if active == 0 {
                let key = (web > 0, avail, key_tie);
                if best.is_none_or(|(k, _)| key < k) {
                    best = Some((key, i));
                }
            } else if active < MAX_DUP && endgame.is_none_or(|(a, t, _)| (active, key_tie) < (a, t))
            {
                endgame = Some((active, key_tie, i));
            }
        }
        let i = match (best, endgame) {
            (Some((_, i)), _) => i,
            (None, Some((_, _, i))) if all_active => i,
            _ => return None,
        };
        self.start(p, i);
        Some(i)
    }

    /// The next pieces for a web seed: a run of up to `max` consecutive pieces that no peer
    /// has and nobody fetches (with `any`, also pieces peers have: they had their chance), and
    /// that are in this node's share (`share`: the largest tie value of it, see [`Share`]),
    /// starting in this node's own order (the tie order), so a herd starting together pulls
    /// different pieces from the mirrors and then trades them, instead of every node asking the
    /// mirrors for piece 0; one ranged request then carries the whole run. With `in_order`
    /// (a node alone: no peer to trade with), the first free piece in file order instead, so
    /// the file arrives front to back and is hashed whole as it comes. `(first, count)`.
    pub fn pick_web(
        &mut self,
        w: Source,
        any: bool,
        max: u32,
        in_order: bool,
        share: Option<u64>,
    ) -> Option<(u32, u32)> {
        self.pick_web_in(w, any, max, in_order, WebShare::Order(share))
    }

    /// [`Picker::pick_web`] for a node connected to the whole swarm: the pieces it ranks
    /// among the first `within` of `members` ([`rank`]; `me` its own key, `members` every
    /// other node's). Every node computes the same ranking, so each piece nobody has is
    /// asked of the mirrors by exactly one node (no piece in nobody's share, as with
    /// independent orders), and by the next one once the share widens.
    pub fn pick_web_ranked(
        &mut self,
        w: Source,
        any: bool,
        max: u32,
        (me, members, within): (u64, &[u64], u32),
    ) -> Option<(u32, u32)> {
        let share = WebShare::Rank {
            me,
            members,
            within,
        };
        self.pick_web_in(w, any, max, false, share)
    }

    /// Whether a web seed fetching piece `i` should go on, by the rule that picks pieces for
    /// web seeds (apart from who else fetches it): it is missing, no connected peer has it
    /// (unless `any`: peers had their chance), and it is in the share. A herd's first runs
    /// are asked before the nodes know how large the herd is, and a loaded mirror takes
    /// seconds a piece: a piece that left the share as the count grew, or that a peer got
    /// meanwhile, is not read on.
    pub fn web_keeps(&self, i: u32, any: bool, share: WebShare) -> bool {
        let Some(ix) = self.idx(i) else { return false };
        let h = self.have.get(ix).copied().unwrap_or(true);
        let avail = self.avail.get(ix).copied().unwrap_or(0);
        !h && (avail == 0 || any) && self.in_share(i, share)
    }

    fn in_share(&self, x: u32, share: WebShare) -> bool {
        match share {
            WebShare::Order(t) => t.is_none_or(|t| self.tie(x) <= t),
            WebShare::Rank {
                me,
                members,
                within,
            } => {
                let within = usize::try_from(within).unwrap_or(usize::MAX);
                rank(x, me, members, within) < within
            }
        }
    }

    /// [`Picker::pick_web`] or [`Picker::pick_web_ranked`], by `share`: pieces a peer said
    /// it fetches from the mirrors ([`Picker::claim`]) are left to it until peers had their
    /// chance (`any`).
    pub fn pick_web_in(
        &mut self,
        w: Source,
        any: bool,
        max: u32,
        in_order: bool,
        share: WebShare,
    ) -> Option<(u32, u32)> {
        self.webs.insert(w);
        let free = |p: &Picker, i: usize| {
            let active = p.active.get(i).copied().unwrap_or(1);
            active == 0
                && (any || !p.claimed(i))
                && u32::try_from(i).is_ok_and(|x| p.web_keeps(x, any, share))
        };
        let mut best: Option<(u64, usize)> = None;
        for i in 0..self.have.len() {
            if !free(self, i) {
                continue;
            }
            let Ok(x) = u32::try_from(i) else { break };
            if in_order {
                best = Some((0, i));
                break;
            }
            let t = self.tie(x);
            if best.is_none_or(|(bt, _)| t < bt) {
                best = Some((t, i));
            }
        }
        let (_, first) = best?;
        let mut end = first;
        while end < self.have.len()
            && free(self, end)
            && end.saturating_sub(first) < usize::try_from(max.max(1)).unwrap_or(1)
        {
            let x = u32::try_from(end).ok()?;
            self.start(w, x);
            end = end.saturating_add(1);
        }
        let first = u32::try_from(first).ok()?;
        let count = u32::try_from(end).ok()?.saturating_sub(first);
        Some((first, count))
    }

    fn start(&mut self, p: Source, i: u32) {
        if let Some(a) = self.idx(i).and_then(|i| self.active.get_mut(i)) {
            *a = a.saturating_add(1);
        }
        if self.webs.contains(&p) {
            if let Some(a) = self.idx(i).and_then(|i| self.web_active.get_mut(i)) {
                *a = a.saturating_add(1);
            }
        }
        self.busy.entry(p).or_default().push(i);
    }

    /// Source `p` stopped fetching piece `i` (failed, choked, bad data): another may take it.
    pub fn release(&mut self, p: Source, i: u32) {
        if let Some(list) = self.busy.get_mut(&p) {
            if let Some(pos) = list.iter().position(|&x| x == i) {
                list.swap_remove(pos);
                self.dec_active(p, i);
            }
        }
    }

    /// Piece `i` verified and written (by `p`): the other sources still fetching it are
    /// returned, so the session can cancel them.
    pub fn complete(&mut self, p: Source, i: u32) -> Vec<Source> {
        self.release(p, i);
        let Some(ix) = self.idx(i) else {
            return Vec::new();
        };
        if let Some(h) = self.have.get_mut(ix) {
            if !*h {
                *h = true;
                self.missing = self.missing.saturating_sub(1);
            }
        }
        let others: Vec<Source> = self
            .busy
            .iter()
            .filter(|(_, l)| l.contains(&i))
            .map(|(s, _)| *s)
            .collect();
        for s in &others {
            self.release(*s, i);
        }
        others
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_herd_shares_the_pieces_nobody_has() {
        // 64 nodes, 128 pieces nobody has: each takes only its share from the web seeds; every
        // piece is in about one share, so the mirrors serve about the image, not 64 of it.
        let (nodes, pieces) = (64u32, 128u32);
        let mut asked = vec![0u32; 128];
        for n in 0..nodes {
            let mut p = Picker::new(pieces, 0x5eed_u64.wrapping_mul(u64::from(n) + 1));
            let share = Share::default().threshold(nodes);
            while let Some((x, c)) = p.pick_web(1, false, 1, false, share) {
                for i in x..x + c {
                    asked[i as usize] += 1;
                    p.complete(1, i);
                }
            }
        }
        let total: u32 = asked.iter().sum();
        // Poisson(1) shares: about 128 requests, about 63 % of the pieces covered.
        assert!((64..=192).contains(&total), "{total}");
        let covered = asked.iter().filter(|&&a| a > 0).count();
        assert!((48..=112).contains(&covered), "{covered}");
        // Widened to the whole swarm: every piece.
        let all = Share {
            widened: nodes,
            since: None,
        };
        assert_eq!(all.threshold(nodes), None);
        assert_eq!(Share::default().threshold(1), None);
        assert_eq!(Share::default().threshold(0), None);
    }

    #[test]
    fn peers_have_missing_pieces_until_we_hold_what_they_hold() {
        let mut p = Picker::new(2, 1);
        assert!(!p.peers_have_missing());
        p.peer_bitfield(5, vec![false, true]);
        assert!(p.peers_have_missing());
        p.complete(1, 1);
        assert!(!p.peers_have_missing());
    }

    #[test]
    fn ranked_shares_give_each_piece_one_node_then_the_next() {
        let nodes: Vec<u64> = (1..=16)
            .map(|i| node_key(format!("10.77.1.{i}:6881").parse().unwrap()))
            .collect();
        let mut firsts = vec![0u32; nodes.len()];
        for piece in 0..512 {
            let ranks: Vec<usize> = nodes
                .iter()
                .map(|&n| rank(piece, n, &nodes, usize::MAX))
                .collect();
            for (&n, &r) in nodes.iter().zip(&ranks) {
                assert_eq!(rank(piece, n, &nodes, 3), r.min(3));
            }
            let mut sorted = ranks.clone();
            sorted.sort_unstable();
            assert_eq!(
                sorted,
                (0..nodes.len()).collect::<Vec<_>>(),
                "piece {piece}"
            );
            if let Some(f) = ranks.iter().position(|r| *r == 0) {
                firsts[f] += 1;
            }
        }
        // Spread: each of 16 nodes is first for about 32 of 512 pieces.
        assert!(firsts.iter().all(|&f| (12..=56).contains(&f)), "{firsts:?}");
        // A picker takes only its first places, then the second ones once widened.
        let (me, others) = (nodes[0], &nodes[1..]);
        let mut p = Picker::new(64, 1);
        let mut got = Vec::new();
        while let Some((i, n)) = p.pick_web_ranked(1, false, 1, (me, others, 1)) {
            got.extend(i..i + n);
        }
        assert!(!got.is_empty());
        assert!(got.iter().all(|&i| rank(i, me, others, 16) == 0));
        let (i, _) = p.pick_web_ranked(1, false, 1, (me, others, 2)).unwrap();
        assert_eq!(rank(i, me, others, 16), 1);
    }

    #[test]
    fn orphans_are_pieces_no_peer_has_and_nobody_fetches() {
        let mut p = Picker::new(3, 1);
        p.complete(1, 0);
        assert!(p.orphans());
        p.peer_bitfield(5, vec![false, true, false]);
        assert!(p.orphans());
        assert_eq!(p.pick_web(9, false, 1, true, None), Some((2, 1)));
        assert!(
            !p.orphans(),
            "piece 1 is with a peer, piece 2 is being fetched"
        );
        p.release(9, 2);
        assert!(p.orphans());
    }

    #[test]
    fn the_share_widens_only_after_being_idle() {
        let t0 = Instant::now();
        let mut s = Share::default();
        assert!(!s.widen_after(t0 + WIDEN_AFTER / 2, t0, WIDEN_AFTER));
        assert!(s.widen_after(t0 + WIDEN_AFTER, t0, WIDEN_AFTER));
        assert_eq!(s.widened, 2);
        // Not again until idle for as long since it widened, nor soon after a peer's piece.
        assert!(!s.widen_after(
            t0 + WIDEN_AFTER + Duration::from_millis(10),
            t0,
            WIDEN_AFTER
        ));
        let t1 = t0 + WIDEN_AFTER * 2;
        assert!(!s.widen_after(t1, t1 - WIDEN_AFTER / 3, WIDEN_AFTER));
        assert!(s.widen_after(t1 + WIDEN_AFTER, t1, WIDEN_AFTER));
        assert_eq!(s.widened, 3);
        let mut big = Share {
            widened: u32::MAX,
            since: None,
        };
        assert!(big.widen_after(t1 + WIDEN_AFTER * 5, t0, WIDEN_AFTER));
        assert_eq!(big.widened, u32::MAX);
        let mut slow = Share::default();
        let long = WIDEN_AFTER * 4;
        assert!(!slow.widen_after(t0 + WIDEN_AFTER, t0, long));
        assert!(slow.widen_after(t0 + long, t0, long));
    }

    #[test]
    fn a_piece_only_a_web_seed_fetches_goes_to_a_peer_that_has_it() {
        let mut p = Picker::new(3, 1);
        assert_eq!(p.pick_web(9, false, 1, true, None), Some((0, 1)));
        p.peer_bitfield(1, vec![true, true, false]);
        // The piece nobody fetches first, then the one the web seed is fetching.
        assert_eq!(p.pick(1), Some(1));
        assert_eq!(p.pick(1), Some(0));
        assert_eq!((p.active[0], p.web_active[0]), (2, 1));
        // The peer delivers first: the web seed is among those told.
        assert_eq!(p.complete(1, 0), vec![9]);
        assert_eq!((p.active[0], p.web_active[0]), (0, 0));
        assert_eq!(p.in_flight(9), 0);
    }

    #[test]
    fn rarest_first() {
        let mut p = Picker::new(4, 1);
        p.peer_bitfield(1, vec![true, true, true, false]);
        p.peer_bitfield(2, vec![true, true, false, false]);
        p.peer_bitfield(3, vec![false, true, false, false]);
        // Piece 2 is held by one peer only.
        assert_eq!(p.pick(1), Some(2));
        // Then piece 0 (two peers) before piece 1 (three).
        assert_eq!(p.pick(1), Some(0));
        assert_eq!(p.pick(2), Some(1));
        assert!(p.wants_from(3));
        // Everything peer 3 has is in flight: end game gives it a second copy of piece 1.
        assert_eq!(p.pick(3), None, "piece 3 is not active: no end game yet");
        assert_eq!(p.pick_web(9, false, 8, false, None), Some((3, 1)));
        assert_eq!(p.pick(3), Some(1));
        assert_eq!(p.complete(2, 1), vec![3]);
        assert_eq!(p.pick(3), None);
        assert_eq!(p.missing(), 3);
    }

    #[test]
    fn each_round_waits_twice_as_long_up_to_the_cap() {
        let cap = Duration::from_secs(5);
        let waits: Vec<u128> = (1..=7)
            .map(|widened| {
                Share {
                    widened,
                    since: None,
                }
                .backed_off(cap)
                .as_millis()
            })
            .collect();
        assert_eq!(waits, [300, 600, 1200, 2400, 4800, 5000, 5000]);
        let far = Share {
            widened: u32::MAX,
            since: None,
        };
        assert_eq!(far.backed_off(cap), cap);
    }

    #[test]
    fn a_swarm_grows_fast_by_more_than_a_quarter() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut g = Growth::default();
        assert!(!g.growing(t0));
        g.note(1, t0);
        assert!(!g.growing(t0), "a node alone has not grown");
        g.note(41, ms(0));
        assert!(g.growing(ms(299)) && !g.growing(ms(300)));
        // 41 to 51 is a quarter, not more: settled.
        g.note(51, ms(200));
        assert!(!g.growing(ms(300)));
        g.note(52, ms(400));
        assert!(g.growing(ms(600)) && !g.growing(ms(700)));
        assert_eq!(g.size, 52);
    }

    #[test]
    fn a_web_seed_keeps_a_piece_only_while_it_would_pick_it() {
        let mut p = Picker::new(64, 5);
        assert!(!p.web_fetching());
        let (i, _) = p.pick_web(9, false, 1, false, None).unwrap();
        assert!(p.web_fetching());
        assert!(p.web_keeps(i, false, WebShare::Order(None)));
        // A peer got it meanwhile: it comes from the peer, unless peers had their chance.
        let mut has = vec![false; 64];
        has[usize::try_from(i).unwrap()] = true;
        p.peer_bitfield(1, has);
        assert!(!p.web_keeps(i, false, WebShare::Order(None)));
        assert!(p.web_keeps(i, true, WebShare::Order(None)));
        // The swarm turned out larger: the pieces outside the smaller share are let go,
        // the ones inside kept (as many as the share's part of 64).
        let small = Share::default().threshold(16);
        let kept = (0..64)
            .filter(|&x| p.web_keeps(x, true, WebShare::Order(small)))
            .count();
        assert!((1..=12).contains(&kept), "{kept} of 64 in a 1/16 share");
        // Held: never.
        p.complete(9, i);
        assert!(!p.web_fetching());
        assert!(!p.web_keeps(i, true, WebShare::Order(None)));
        assert!(
            !p.web_keeps(64, true, WebShare::Order(None)),
            "no such piece"
        );
    }

    #[test]
    fn a_peer_is_complete_once_it_has_every_piece() {
        let mut p = Picker::full(3, 0);
        assert!(!p.peer_complete(1), "nothing known of it");
        p.peer_bitfield(1, vec![true, false, true]);
        assert!(!p.peer_complete(1));
        p.peer_have(1, 1);
        assert!(p.peer_complete(1) && p.is_complete());
        p.peer_bitfield(2, vec![true; 3]);
        assert!(p.peer_complete(2));
    }

    #[test]
    fn a_piece_a_peer_fetches_from_the_mirrors_is_left_to_the_herd_until_peers_had_their_chance() {
        let mut p = Picker::new(4, 0);
        assert!(p.claim(0, 3, 1, false));
        assert!(
            !p.claim(1, 2, 2, false),
            "a second word on a piece is not news"
        );
        let pick = |p: &mut Picker, any| p.pick_web_in(9, any, 8, true, WebShare::Order(None));
        assert_eq!(pick(&mut p, false), Some((3, 1)));
        assert_eq!(pick(&mut p, false), None);
        // Peers had their chance: anything.
        assert_eq!(pick(&mut p, true), Some((0, 3)));
        p.remove(9);
        // However long ago it was said: the piece is the herd's, not ours to fetch again.
        assert_eq!(pick(&mut p, false), Some((3, 1)));
        assert_eq!(pick(&mut p, false), None);
        // A peer that stopped fetching gives the piece back at once; a later word on it
        // does not hold it back again.
        assert!(p.unclaim(1, 1));
        assert!(!p.unclaim(1, 1));
        assert!(!p.claim(1, 1, 1, false));
        assert_eq!(pick(&mut p, false), Some((1, 1)));
        assert_eq!(pick(&mut p, false), None);
        // What our own web seeds fetch, for a peer that just connected.
        let mut q = Picker::new(10, 0);
        assert_eq!(
            q.pick_web_in(9, false, 8, true, WebShare::Order(None)),
            Some((0, 8))
        );
        q.release(9, 3);
        assert_eq!(q.web_runs(3), [(0, 3), (4, 3), (7, 1)]);
        // Claims past the last piece are ignored.
        let mut r = Picker::new(4, 0);
        assert!(r.claim(3, u32::MAX, 1, false));
        assert_eq!(
            r.pick_web_in(9, false, 8, true, WebShare::Order(None)),
            Some((0, 3))
        );
        assert!(r.unclaim(2, u32::MAX));
        assert_eq!(
            r.pick_web_in(9, false, 8, true, WebShare::Order(None)),
            Some((3, 1))
        );
    }

    #[test]
    fn a_peer_that_leaves_takes_its_claims_with_it() {
        let mut p = Picker::new(6, 0);
        // Peer 1's own words on 0..2, and a word it passed on, on 2; peer 2's on 3.
        assert!(p.claim(0, 2, 1, false));
        assert!(p.claim(2, 1, 1, true));
        assert!(p.claim(3, 1, 2, false));
        assert!(!p.claim(0, 1, 2, false));
        let pick = |p: &mut Picker| p.pick_web_in(9, false, 8, true, WebShare::Order(None));
        assert_eq!(pick(&mut p), Some((4, 2)));
        // Its own claims are passed on as ended; the relayed one ends here only.
        assert_eq!(p.unclaim_from(1), [0, 1]);
        assert_eq!(p.unclaim_from(1), Vec::<u32>::new());
        assert_eq!(pick(&mut p), Some((0, 3)));
        // Peer 2's claim holds, and an ended claim is not renewed by its words.
        assert_eq!(pick(&mut p), None);
        assert!(!p.claim(0, 3, 2, false));
    }

    #[test]
    fn web_seeds_take_what_no_peer_has_then_anything() {
        let mut p = Picker::new(3, 0);
        p.peer_bitfield(1, vec![true, false, false]);
        let (a, n) = p.pick_web(10, false, 1, false, None).unwrap();
        assert_eq!(n, 1);
        let (b, _) = p.pick_web(10, false, 1, false, None).unwrap();
        assert_eq!([a.min(b), a.max(b)], [1, 2]);
        assert_eq!(p.pick_web(10, false, 8, false, None), None);
        assert_eq!(p.pick_web(10, true, 8, false, None), Some((0, 1)));
        p.remove(10);
        // A run: consecutive free pieces from the first one picked.
        let mut q = Picker::new(10, 3);
        q.peer_bitfield(
            1,
            vec![
                false, false, false, false, false, true, false, false, false, false,
            ],
        );
        let (f, n) = q.pick_web(11, false, 4, false, None).unwrap();
        assert!(
            (1..=4).contains(&n) && (f..f + n).all(|i| i != 5),
            "{f} {n}"
        );
        p.remove(10);
        assert_eq!(p.pick(1), Some(0));
    }

    #[test]
    fn a_node_alone_takes_web_pieces_in_file_order() {
        let mut p = Picker::new(10, 12345);
        assert_eq!(p.pick_web(1, false, 4, true, None), Some((0, 4)));
        assert_eq!(p.pick_web(2, false, 4, true, None), Some((4, 4)));
        p.release(1, 2);
        assert_eq!(p.pick_web(1, false, 4, true, None), Some((2, 1)));
        assert_eq!(p.pick_web(1, false, 4, true, None), Some((8, 2)));
        assert_eq!(p.pick_web(1, false, 4, true, None), None);
    }

    #[test]
    fn a_full_picker_holds_everything_and_wants_nothing() {
        let mut p = Picker::full(5, 1);
        assert!(p.is_complete() && p.has(4) && !p.has(5));
        p.peer_bitfield(1, vec![true; 5]);
        assert!(!p.wants_from(1));
        assert_eq!(p.pick(1), None);
        assert_eq!(p.pick_web(2, true, 8, false, None), None);
    }

    #[test]
    fn removed_peers_release_pieces() {
        let mut p = Picker::new(2, 0);
        p.peer_bitfield(1, vec![true, true]);
        assert!(p.peer_have(2, 0));
        assert!(!p.peer_have(2, 5));
        let a = p.pick(1).unwrap();
        p.remove(1);
        assert_eq!(p.in_flight(1), 0);
        assert_eq!(p.pick_web(7, false, 8, false, None), Some((1, 1)));
        // Piece 1 was the rarest; peer 2 still has piece 0, which nobody fetches.
        assert_eq!(a, 1);
        assert_eq!(p.pick(2), Some(0));
    }

    proptest! {
        /// Whatever the order of events, a piece is never fetched by more than MAX_DUP sources,
        /// never picked once held, and every piece is eventually completed.
        #[test]
        fn invariants(n in 1u32..40, ops in proptest::collection::vec((0u8..6, 0u64..5, 0u32..45), 0..200)) {
            let mut p = Picker::new(n, 7);
            for (op, s, i) in ops {
                match op {
                    0 => { p.peer_have(s, i); }
                    1 => if let Some(x) = p.pick(s) { prop_assert!(!p.has(x)); },
                    2 => { p.release(s, i); }
                    3 => { p.complete(s, i); }
                    4 => { p.remove(s); }
                    _ => if let Some((x, n)) = p.pick_web(100 + s, i % 2 == 0, i % 5 + 1, i % 3 == 0, None) {
                        prop_assert!((1..=i % 5 + 1).contains(&n));
                        prop_assert!((x..x + n).all(|y| !p.has(y)));
                    },
                }
                // Peers at most MAX_DUP, and one web seed beside them at most.
                for (&a, &w) in p.active.iter().zip(&p.web_active) {
                    prop_assert!(w <= 1 && w <= a && a - w <= MAX_DUP);
                }
                let sum: usize = p.busy.values().map(Vec::len).sum();
                prop_assert_eq!(sum, p.active.iter().map(|&a| usize::from(a)).sum::<usize>());
            }
            while let Some((x, n)) = p.pick_web(1000, true, 3, false, None) {
                for y in x..x + n {
                    p.complete(1000, y);
                }
            }
            prop_assert!(p.is_complete() || p.active.iter().any(|&a| a > 0));
        }
    }
}
