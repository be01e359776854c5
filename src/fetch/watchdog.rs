//! The limits every wait on the network obeys — the overall [`Deadline`], the stall timer and
//! a minimum rate over each stall window — as a pure state machine over a byte counter and a
//! clock ([`Watchdog`]), unit-tested without a server or a sleep. The reader
//! ([`super::reader`]) asks it how long it may wait and why it must stop.

use crate::support::deadline::Deadline;
use std::time::{Duration, Instant};

/// Longest single wait on the reader (the deadline, stall and window are checked at least
/// this often).
pub const MAX_TICK: Duration = Duration::from_secs(3600);

/// Default minimum transfer rate, bytes per second, averaged over each stall window. Low
/// enough that ten thousand nodes sharing one 1 Gb/s server all stay above it; high enough
/// that a server dribbling bytes to keep the stall timer quiet is dropped and retried.
pub const MIN_RATE: u64 = 4 << 10;

/// What bounds an attempt's waits, the same for every attempt of a download.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub deadline: Deadline,
    /// Abort when nothing arrives for this long; also the minimum-progress window.
    pub stall: Duration,
    /// Bytes per second the transfer must average over each stall window (0: no minimum).
    pub min_rate: u64,
}

/// When a wait on the reader must end, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// Keep waiting, at most this long before checking again.
    Wait(Duration),
    Deadline,
    Stall,
    /// Fewer than the minimum bytes arrived in the last window.
    TooSlow {
        bytes: u64,
    },
}

/// The deadline, the stall timer and the minimum-progress rule, as a pure state machine over
/// a byte counter and a clock (unit-tested without a server or a sleep).
#[derive(Debug, Clone)]
pub struct Watchdog {
    deadline: Deadline,
    stall: Duration,
    min_bytes: u64,
    last_count: u64,
    last_progress: Instant,
    window_start: Instant,
    window_count: u64,
}

impl Watchdog {
    pub fn new(now: Instant, deadline: Deadline, stall: Duration, min_rate: u64) -> Watchdog {
        // The window is the stall period (at least a second, so a tiny stall setting does not
        // demand a burst); the bytes it needs are min_rate per second of it.
        let stall = stall.clamp(Duration::from_millis(1), MAX_TICK.saturating_mul(24));
        let window_ms = u64::try_from(Self::window(stall).as_millis()).unwrap_or(u64::MAX);
        Watchdog {
            deadline,
            stall,
            min_bytes: min_rate.saturating_mul(window_ms) / 1000,
            last_count: 0,
            last_progress: now,
            window_start: now,
            window_count: 0,
        }
    }

    fn window(stall: Duration) -> Duration {
        stall.max(Duration::from_secs(1))
    }

    /// Checks the rules at `now` with `count` bytes received so far.
    pub fn check(&mut self, now: Instant, count: u64) -> Watch {
        if self.deadline.passed_at(now) {
            return Watch::Deadline;
        }
        if count != self.last_count {
            self.last_count = count;
            self.last_progress = now;
        }
        let silent = now.saturating_duration_since(self.last_progress);
        if silent >= self.stall {
            return Watch::Stall;
        }
        let window = Self::window(self.stall);
        if now.saturating_duration_since(self.window_start) >= window {
            let bytes = count.saturating_sub(self.window_count);
            if bytes < self.min_bytes {
                return Watch::TooSlow { bytes };
            }
            self.window_start = now;
            self.window_count = count;
        }
        let until_window = window.saturating_sub(now.saturating_duration_since(self.window_start));
        let wait = self
            .stall
            .saturating_sub(silent)
            .min(until_window)
            .min(MAX_TICK);
        Watch::Wait(
            self.deadline
                .clamp_at(now, wait)
                .max(Duration::from_millis(1)),
        )
    }

    /// The window in whole seconds, for the message that names a too-slow transfer.
    pub fn secs(&self) -> u64 {
        Self::window(self.stall).as_secs()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_enforces_deadline_stall_and_minimum_rate() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let dl = Deadline::after_from(t0, Some(s(10)));
        let mut d = Watchdog::new(t0, dl, s(3), 1024);
        assert_eq!(d.check(t0, 0), Watch::Wait(s(3)));
        // A byte every 2 s keeps the stall timer quiet, not the minimum rate.
        assert!(matches!(d.check(t0 + s(2), 1), Watch::Wait(_)));
        assert_eq!(d.check(t0 + s(3), 1), Watch::TooSlow { bytes: 1 });
        let mut d = Watchdog::new(t0, dl, s(3), 1024);
        assert!(matches!(d.check(t0 + s(2), 5000), Watch::Wait(_)));
        assert!(matches!(d.check(t0 + s(3), 5000), Watch::Wait(_)));
        assert_eq!(d.check(t0 + s(6), 5000), Watch::Stall);
        let mut d = Watchdog::new(t0, dl, s(30), 0);
        assert_eq!(d.check(t0 + s(9), 0), Watch::Wait(s(1)));
        assert_eq!(d.check(t0 + s(10), 0), Watch::Deadline);
        // Absurd settings: no overflow, a bounded wait.
        let mut d = Watchdog::new(t0, Deadline::NONE, Duration::MAX, u64::MAX);
        assert!(matches!(d.check(t0, 0), Watch::Wait(w) if w <= MAX_TICK));
    }
}
