//! One image from several mirrors at once: piece by piece, each piece from the mirror its own
//! rendezvous order ranks first.
//!
//! Why pieces and not one mirror per node: with one mirror per node, each mirror's load is the
//! number of nodes that hash to it, a binomial draw. At 10,000 nodes that is within a few
//! percent of an equal share, at 64 nodes over 4 mirrors it is off by ±22 % (one standard
//! deviation), and a failed mirror's nodes land on the others just as unevenly. Spreading
//! pieces makes the draw nodes × pieces (64 nodes × 16 pieces of a 16 MiB image: ±5 %), and a
//! stopped mirror's remaining pieces, of every node, each go to that piece's own second choice.
//! Each piece's order is still rendezvous hashing of (node, piece, mirror): a node asks the same
//! mirror for the same piece at every boot, and losing a mirror moves only its pieces.
//!
//! What ties bytes from different mirrors together is decided by the caller
//! ([`super::response::Piece::same_validators`]): the image's hash or signature when there is
//! one, else identical ETag/Last-Modified. A mirror that does not continue the file is left
//! out ([`Pool::other_file`]) and the others carry its pieces.
//!
//! Pure: piece boundaries and mirror health during one download, driven by [`super::planner`]
//! and tested here without a network or a clock.

use super::mirrors;
use reqwest::Url;
use std::time::{Duration, Instant};

/// The first request asks for this much: the length of the image is not known before it.
pub const FIRST_PIECE: u64 = 1 << 20;
/// Pieces are the image's length over [`PIECES`], within these bounds: small enough to spread
/// a small image, large enough that one request per piece costs nothing next to its bytes.
pub const MIN_PIECE: u64 = 1 << 20;
pub const MAX_PIECE: u64 = 64 << 20;
/// Pieces per image when the bounds allow (a 2 GiB image: 32 MiB pieces).
pub const PIECES: u64 = 64;
/// How long a mirror that failed is passed over while others are up.
pub const DOWN_FOR: Duration = Duration::from_secs(30);

/// How a download is spread: whose pieces, and what ties mirrors together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The node identity the pieces are ranked for.
    pub node: String,
    /// Nothing verifies the bytes: mirrors must carry the first response's validators.
    pub same_validators: bool,
}

impl Plan {
    /// The plan for spreading a download from `urls` as `node`, when it can be spread.
    pub fn new(urls: &[Url], node: &str, same_validators: bool) -> Option<Plan> {
        applies(urls).then(|| Plan {
            node: node.to_string(),
            same_validators,
        })
    }
}

/// Whether a download from `urls` can be spread: several mirrors, all HTTP(S) (a `file://`
/// source has no ranges to spread).
pub fn applies(urls: &[Url]) -> bool {
    urls.len() > 1 && urls.iter().all(|u| matches!(u.scheme(), "http" | "https"))
}

/// The piece length for an image of `total` bytes.
pub fn piece_len(total: u64) -> u64 {
    total
        .checked_div(PIECES)
        .unwrap_or(0)
        .clamp(MIN_PIECE, MAX_PIECE)
}

/// The piece `offset` lies in and the byte it ends before. Before the length is known only
/// the first piece can be asked for.
pub fn piece_at(offset: u64, total: Option<u64>) -> (u64, u64) {
    let Some(t) = total else {
        return (0, FIRST_PIECE.max(offset.saturating_add(1)));
    };
    let len = piece_len(t);
    let k = offset.checked_div(len).unwrap_or(0);
    (k, k.saturating_add(1).saturating_mul(len).min(t))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    Up,
    /// Failed; passed over until then while another mirror is up.
    Down(Instant),
    /// Gave an answer retrying cannot change (404, TLS, a refused redirect).
    Dead,
    /// Does not continue the file the pieces so far came from.
    Other,
}

/// The mirror to ask next and, when spread, the byte its piece ends before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pick {
    pub mirror: usize,
    pub end: Option<u64>,
    /// Spread, and the mirror has not failed recently: after another mirror's failure this
    /// one can be asked at once, with no backoff (its load is the same bytes either way).
    pub healthy: bool,
}

/// The mirrors of one download and how each has behaved. Without a [`Plan`] (or after
/// [`Pool::single_from`]) one mirror serves the whole file and a failure rotates to the next
/// in the node's order, as a single-source download always did.
#[derive(Debug)]
pub struct Pool {
    health: Vec<Health>,
    spread: Option<(String, Vec<String>)>,
    current: usize,
}

impl Pool {
    /// `urls` in the node's order; `plan` (from [`Plan::new`]) spreads pieces over them.
    pub fn new(urls: &[Url], plan: Option<&Plan>) -> Pool {
        Pool {
            health: vec![Health::Up; urls.len()],
            spread: plan.map(|p| (p.node.clone(), mirrors::keys(urls))),
            current: 0,
        }
    }

    /// Whether pieces are being spread.
    pub fn pieces(&self) -> bool {
        self.spread.is_some()
    }

    /// Who serves the bytes from `have` on. `None`: no mirror is left.
    pub fn pick(&self, have: u64, total: Option<u64>, now: Instant) -> Option<Pick> {
        let Some((node, keys)) = &self.spread else {
            return (self.health.get(self.current)? != &Health::Dead).then_some(Pick {
                mirror: self.current,
                end: None,
                healthy: false,
            });
        };
        let (k, end) = piece_at(have, total);
        let refs: Vec<&str> = keys.iter().map(String::as_str).collect();
        let usable: Vec<(usize, Health)> = mirrors::piece_rank(node, k, &refs)
            .into_iter()
            .filter_map(|i| Some((i, *self.health.get(i)?)))
            .filter(|(_, h)| matches!(h, Health::Up | Health::Down(_)))
            .collect();
        let ready = usable.iter().find(|(_, h)| match h {
            Health::Down(until) => *until <= now,
            _ => true,
        });
        // Every usable mirror failed recently: the one that failed longest ago.
        let least_recent = || {
            usable.iter().min_by_key(|(_, h)| match h {
                Health::Down(until) => Some(*until),
                _ => None,
            })
        };
        let (mirror, health) = ready.or_else(least_recent)?;
        Some(Pick {
            mirror: *mirror,
            end: Some(end),
            healthy: *health == Health::Up,
        })
    }

    /// Mirror `m` served its bytes.
    pub fn succeeded(&mut self, m: usize) {
        if let Some(h @ Health::Down(_)) = self.health.get_mut(m) {
            *h = Health::Up;
        }
    }

    /// Mirror `m` failed in a way retrying may fix: spread, its pieces go elsewhere for a
    /// while; from one mirror, the next one in the node's order is tried.
    pub fn failed(&mut self, m: usize, now: Instant) {
        if self.pieces() {
            if let Some(h @ (Health::Up | Health::Down(_))) = self.health.get_mut(m) {
                *h = Health::Down(now.checked_add(DOWN_FOR).unwrap_or(now));
            }
        } else {
            self.current = self.next_alive(m).unwrap_or(m);
        }
    }

    /// Mirror `m` gave an answer retrying cannot change. `false`: no mirror is left.
    pub fn dead(&mut self, m: usize) -> bool {
        if let Some(h) = self.health.get_mut(m) {
            *h = Health::Dead;
        }
        if !self.pieces() {
            if let Some(n) = self.next_alive(m) {
                self.current = n;
            }
        }
        self.health.iter().any(|h| *h != Health::Dead)
    }

    /// Mirror `m` does not continue the file the pieces came from. `false`: no mirror is left
    /// to serve pieces (the caller starts over from one mirror).
    pub fn other_file(&mut self, m: usize) -> bool {
        if let Some(h) = self.health.get_mut(m) {
            *h = Health::Other;
        }
        self.health
            .iter()
            .any(|h| matches!(h, Health::Up | Health::Down(_)))
    }

    /// Stops spreading: the rest comes from mirror `m`, rotating on failure as usual.
    pub fn single_from(&mut self, m: usize) {
        self.spread = None;
        self.current = m;
        for h in &mut self.health {
            if *h != Health::Dead {
                *h = Health::Up;
            }
        }
    }

    /// One mirror at a time, never one of `refused` (their copies did not verify: an answer
    /// asking again cannot change), from the first of the others in the node's order.
    pub fn single_without(&mut self, refused: &[usize]) {
        for &m in refused {
            if let Some(h) = self.health.get_mut(m) {
                *h = Health::Dead;
            }
        }
        self.single_from(self.first_alive().unwrap_or(0));
    }

    /// The first mirror in the node's order still worth asking.
    pub fn first_alive(&self) -> Option<usize> {
        self.health.iter().position(|h| *h != Health::Dead)
    }

    /// The next mirror after `m` that is still worth trying (possibly `m` itself).
    fn next_alive(&self, m: usize) -> Option<usize> {
        let n = self.health.len();
        (1..=n)
            .filter_map(|i| m.checked_add(i).and_then(|x| x.checked_rem(n)))
            .find(|&i| self.health.get(i).is_some_and(|h| *h != Health::Dead))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn urls(n: usize) -> Vec<Url> {
        (0..n)
            .map(|i| Url::parse(&format!("http://mirror{i}.site/img")).unwrap())
            .collect()
    }

    fn plan(node: &str) -> Plan {
        Plan::new(&urls(2), node, false).unwrap()
    }

    #[test]
    fn pieces_cover_the_file_without_gaps() {
        assert_eq!(piece_len(16 * MIB), MIB);
        assert_eq!(piece_len(2 << 30), 32 * MIB);
        assert_eq!(piece_len(1 << 40), MAX_PIECE);
        assert_eq!(piece_len(0), MIN_PIECE);
        assert_eq!(piece_at(0, None), (0, FIRST_PIECE));
        for total in [1, MIB - 1, MIB, 16 * MIB + 5, (2 << 30) + 3, u64::MAX] {
            let (mut at, mut pieces, mut last_k) = (0u64, 0u64, None);
            while at < total && pieces < 200 {
                let (k, end) = piece_at(at, Some(total));
                assert!(end > at && end <= total, "{total}: {at} -> {end}");
                assert!(last_k.is_none_or(|l| k == l + 1));
                last_k = Some(k);
                at = end;
                pieces += 1;
            }
            if total < 100 * MAX_PIECE {
                assert_eq!(at, total);
            }
        }
        // A first piece cut short by the server: the rest of piece 0 before piece 1.
        assert_eq!(piece_at(MIB / 2, Some(128 * MIB)), (0, 2 * MIB));
    }

    #[test]
    fn every_mirror_serves_about_a_quarter_of_64_nodes_pieces() {
        let u = urls(4);
        let total = 16 * MIB;
        let mut bytes = [0u64; 4];
        let now = Instant::now();
        for node in 1..=64 {
            let pool = Pool::new(&u, Some(&plan(&format!("52:54:00:00:00:{node:02x}"))));
            let mut at = 0;
            while at < total {
                let p = pool.pick(at, Some(total), now).unwrap();
                let end = p.end.unwrap();
                bytes[p.mirror] += end - at;
                at = end;
            }
        }
        let share = (64 * total / 4) as f64;
        for (m, b) in bytes.iter().enumerate() {
            let r = *b as f64 / share;
            assert!(
                (0.85..=1.15).contains(&r),
                "mirror {m}: {r:.3} of a share ({bytes:?})"
            );
        }
    }

    #[test]
    fn a_failed_mirrors_pieces_spread_over_the_others() {
        let u = urls(4);
        let total = 64 * MIB;
        let now = Instant::now();
        let mut moved = [0u64; 4];
        for node in 1..=64 {
            let mut pool = Pool::new(&u, Some(&plan(&format!("n{node}"))));
            let before: Vec<usize> = (0..64)
                .map(|k| pool.pick(k * MIB, Some(total), now).unwrap().mirror)
                .collect();
            pool.failed(1, now);
            for (k, b) in before.iter().enumerate() {
                let after = pool.pick(k as u64 * MIB, Some(total), now).unwrap().mirror;
                if *b == 1 {
                    assert_ne!(after, 1);
                    moved[after] += MIB;
                } else {
                    assert_eq!(after, *b, "piece {k} moved although its mirror is up");
                }
            }
            // Once its time is over it is asked again; until then, only when all are down.
            let later = now + DOWN_FOR;
            assert_eq!(
                before,
                (0..64)
                    .map(|k| pool.pick(k * MIB, Some(total), later).unwrap().mirror)
                    .collect::<Vec<_>>()
            );
        }
        let got: Vec<u64> = [0, 2, 3].iter().map(|&m| moved[m]).collect();
        let (lo, hi) = (*got.iter().min().unwrap(), *got.iter().max().unwrap());
        assert!(hi as f64 / lo as f64 <= 1.3, "{got:?}");
    }

    #[test]
    fn all_down_picks_the_least_recent_failure_and_dead_mirrors_never() {
        let u = urls(3);
        let t0 = Instant::now();
        let mut pool = Pool::new(&u, Some(&plan("n")));
        pool.failed(0, t0);
        pool.failed(1, t0 + Duration::from_secs(1));
        assert!(pool.dead(2));
        let p = pool.pick(0, None, t0).unwrap();
        assert_eq!((p.mirror, p.healthy), (0, false));
        pool.succeeded(0);
        let p = pool.pick(0, None, t0).unwrap();
        assert_eq!((p.mirror, p.healthy), (0, true));
        assert!(pool.dead(0));
        assert!(!pool.dead(1));
        assert_eq!(pool.pick(0, None, t0), None);
    }

    #[test]
    fn other_files_are_left_out_until_none_is_left() {
        let u = urls(3);
        let now = Instant::now();
        let mut pool = Pool::new(&u, Some(&plan("n")));
        assert!(pool.other_file(0));
        assert!(pool.other_file(1));
        for k in 0..32 {
            assert_eq!(pool.pick(k * MIB, Some(32 * MIB), now).unwrap().mirror, 2);
        }
        assert!(!pool.other_file(2));
        pool.single_from(pool.first_alive().unwrap());
        assert!(!pool.pieces());
        assert_eq!(
            pool.pick(MIB, None, now),
            Some(Pick {
                mirror: 0,
                end: None,
                healthy: false
            })
        );
    }

    #[test]
    fn one_mirror_at_a_time_rotates_as_before() {
        let u = urls(3);
        let now = Instant::now();
        let mut pool = Pool::new(&u, None);
        assert!(!pool.pieces());
        assert_eq!(pool.pick(0, None, now).unwrap().mirror, 0);
        pool.failed(0, now);
        assert_eq!(pool.pick(0, None, now).unwrap().mirror, 1);
        assert!(pool.dead(1));
        assert_eq!(pool.pick(0, None, now).unwrap().mirror, 2);
        pool.failed(2, now);
        assert_eq!(pool.pick(0, None, now).unwrap().mirror, 0);
        // A lone mirror is not spread, and retries itself.
        let lone = Plan::new(&urls(1), "n", false);
        assert_eq!(lone, None);
        let mut one = Pool::new(&urls(1), lone.as_ref());
        assert!(!one.pieces());
        one.failed(0, now);
        assert_eq!(one.pick(0, None, now).unwrap().mirror, 0);
    }

    #[test]
    fn only_http_mirrors_are_spread() {
        assert!(applies(&urls(2)));
        assert!(!applies(&urls(1)));
        let mut u = urls(2);
        u.push(Url::parse("file:///img").unwrap());
        assert!(!applies(&u));
    }
}
