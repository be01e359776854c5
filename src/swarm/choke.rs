//! Upload slots: which interested peers we serve. The first come fill the slots; the others
//! wait in line. Every rotation period, when peers wait and every slot is taken, the peer
//! served longest is choked and goes to the back of the line, and the first in line is
//! unchoked (an optimistic unchoke): a node with all its slots busy still lets new peers in,
//! and a seeder serves everyone in turn (round robin) instead of the first few forever.
//!
//! Pure bookkeeping: the session calls `rotate` with the time; peer threads read
//! `is_unchoked` and send choke/unchoke when it changes.

use super::picker::Source;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How often a slot changes hands when peers wait.
pub const ROTATE_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
pub struct Chokes {
    /// Served, the longest-served first.
    unchoked: VecDeque<Source>,
    /// Interested and waiting, first come first.
    waiting: VecDeque<Source>,
    last: Option<Instant>,
}

impl Chokes {
    pub fn is_unchoked(&self, s: Source) -> bool {
        self.unchoked.contains(&s)
    }

    pub fn unchoked(&self) -> usize {
        self.unchoked.len()
    }

    /// Peer `s` is interested: served at once if a slot is free, else in line.
    pub fn want(&mut self, s: Source, slots: usize) {
        if self.unchoked.contains(&s) || self.waiting.contains(&s) {
            return;
        }
        if self.unchoked.len() < slots {
            self.unchoked.push_back(s);
        } else {
            self.waiting.push_back(s);
        }
    }

    /// Peer `s` is no longer interested, or gone: its slot goes to the first in line.
    pub fn remove(&mut self, s: Source, slots: usize) {
        self.unchoked.retain(|x| *x != s);
        self.waiting.retain(|x| *x != s);
        self.fill(slots);
    }

    fn fill(&mut self, slots: usize) {
        while self.unchoked.len() < slots {
            let Some(w) = self.waiting.pop_front() else {
                break;
            };
            self.unchoked.push_back(w);
        }
    }

    /// Once per `every`: when peers wait with every slot taken, the longest-served peer makes
    /// room for the first in line.
    pub fn rotate(&mut self, now: Instant, slots: usize, every: Duration) {
        let last = *self.last.get_or_insert(now);
        if now.saturating_duration_since(last) < every {
            return;
        }
        self.last = Some(now);
        self.fill(slots);
        if self.waiting.is_empty() || slots == 0 {
            return;
        }
        if let Some(old) = self.unchoked.pop_front() {
            self.waiting.push_back(old);
        }
        self.fill(slots);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_fill_first_come_then_rotate_round_robin() {
        let t0 = Instant::now();
        let every = ROTATE_EVERY;
        let mut c = Chokes::default();
        for s in 1..=4 {
            c.want(s, 2);
        }
        c.want(1, 2);
        assert!(c.is_unchoked(1) && c.is_unchoked(2) && !c.is_unchoked(3));
        assert_eq!(c.unchoked(), 2);
        c.rotate(t0, 2, every);
        c.rotate(t0 + every / 2, 2, every);
        assert!(c.is_unchoked(1), "not before the period");
        // Each period the longest served makes room for the first in line: 1 out, 3 in; then
        // 2 out, 4 in; then 1 again.
        c.rotate(t0 + every, 2, every);
        assert!(!c.is_unchoked(1) && c.is_unchoked(2) && c.is_unchoked(3));
        c.rotate(t0 + every * 2, 2, every);
        assert!(c.is_unchoked(3) && c.is_unchoked(4) && !c.is_unchoked(2));
        c.rotate(t0 + every * 3, 2, every);
        assert!(c.is_unchoked(1) && c.is_unchoked(4) && !c.is_unchoked(3));
        // A peer leaving hands its slot to the first in line at once.
        c.remove(4, 2);
        assert!(c.is_unchoked(1) && c.is_unchoked(2));
        assert_eq!(c.unchoked(), 2);
    }

    #[test]
    fn nobody_waiting_nobody_choked() {
        let t0 = Instant::now();
        let mut c = Chokes::default();
        c.want(1, 3);
        c.want(2, 3);
        c.rotate(t0, 3, ROTATE_EVERY);
        c.rotate(t0 + ROTATE_EVERY * 5, 3, ROTATE_EVERY);
        assert!(c.is_unchoked(1) && c.is_unchoked(2));
        // No slots at all: nobody is served, and rotation does not invent one.
        let mut z = Chokes::default();
        z.want(1, 0);
        z.rotate(t0 + ROTATE_EVERY, 0, ROTATE_EVERY);
        assert!(!z.is_unchoked(1));
    }
}
