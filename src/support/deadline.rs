//! The one overall deadline of a boot (or of one `rustlive fetch`): every stage that waits —
//! the network, each HTTP read, each backoff sleep, a `file://` copy — asks it how long it may.
//!
//! Durations come from the command line already bounded ([`crate::support::values`]), but the sum
//! `Instant + Duration` can still overflow on a long-running host; [`Deadline::after`] treats an
//! unrepresentable instant as "no limit" instead of panicking.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    /// No limit.
    pub const NONE: Deadline = Deadline(None);

    /// `limit` from now; `None` (or a limit past what `Instant` can hold) is no limit.
    pub fn after(limit: Option<Duration>) -> Deadline {
        Deadline::after_from(Instant::now(), limit)
    }

    /// `limit` from `now` (tests pass their own clock).
    pub fn after_from(now: Instant, limit: Option<Duration>) -> Deadline {
        Deadline(limit.and_then(|d| now.checked_add(d)))
    }

    /// The instant it passes, if any.
    pub fn instant(&self) -> Option<Instant> {
        self.0
    }

    pub fn is_limited(&self) -> bool {
        self.0.is_some()
    }

    /// Time left at `now`: `None` without a limit, zero once passed.
    pub fn remaining_at(&self, now: Instant) -> Option<Duration> {
        self.0.map(|d| d.saturating_duration_since(now))
    }

    /// Time left now.
    pub fn remaining(&self) -> Option<Duration> {
        self.remaining_at(Instant::now())
    }

    pub fn passed_at(&self, now: Instant) -> bool {
        self.0.is_some_and(|d| now >= d)
    }

    pub fn passed(&self) -> bool {
        self.passed_at(Instant::now())
    }

    /// `wait`, shortened so it ends no later than the deadline.
    pub fn clamp_at(&self, now: Instant, wait: Duration) -> Duration {
        match self.remaining_at(now) {
            Some(left) => wait.min(left),
            None => wait,
        }
    }

    /// `wait` clamped to the deadline from now.
    pub fn clamp(&self, wait: Duration) -> Duration {
        self.clamp_at(Instant::now(), wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_limit_never_passes() {
        let d = Deadline::after(None);
        assert!(!d.passed());
        assert_eq!(d.remaining(), None);
        assert_eq!(d.clamp(Duration::from_secs(7)), Duration::from_secs(7));
    }

    #[test]
    fn unrepresentable_limit_is_no_limit() {
        let d = Deadline::after(Some(Duration::from_secs(u64::MAX)));
        assert!(!d.is_limited());
    }

    #[test]
    fn clamps_and_passes() {
        let now = Instant::now();
        let d = Deadline::after_from(now, Some(Duration::from_secs(10)));
        assert_eq!(
            d.clamp_at(now, Duration::from_secs(30)),
            Duration::from_secs(10)
        );
        assert_eq!(
            d.clamp_at(now, Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        let later = now + Duration::from_secs(11);
        assert!(d.passed_at(later));
        assert_eq!(d.remaining_at(later), Some(Duration::ZERO));
        assert_eq!(d.clamp_at(later, Duration::from_secs(3)), Duration::ZERO);
    }
}
