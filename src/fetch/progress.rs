//! Progress lines for the serial console: at most one every [`INTERVAL`], then a summary.

use crate::support::log::mib;
use std::time::{Duration, Instant};

pub const INTERVAL: Duration = Duration::from_secs(2);

/// Tracks bytes over time for one download (all attempts).
#[derive(Debug)]
pub struct Progress {
    start: Instant,
    last_line: Instant,
    /// Bytes and time at the last line, for the current rate.
    last_bytes: u64,
    interval: Duration,
}

impl Progress {
    pub fn new(now: Instant, interval: Duration) -> Self {
        Progress {
            start: now,
            last_line: now,
            last_bytes: 0,
            interval,
        }
    }

    /// A line when `interval` has passed since the last one. `have` is the bytes of the file
    /// so far, `total` its length when known.
    pub fn tick(&mut self, now: Instant, have: u64, total: Option<u64>) -> Option<String> {
        let dt = now.saturating_duration_since(self.last_line);
        if dt < self.interval {
            return None;
        }
        let rate = have.saturating_sub(self.last_bytes) as f64 / dt.as_secs_f64();
        self.last_line = now;
        self.last_bytes = have;
        Some(line(have, total, rate))
    }

    /// Restarts the rate measurement (after a restart from zero or a resume).
    pub fn rebase(&mut self, now: Instant, have: u64) {
        self.last_line = now;
        self.last_bytes = have;
    }

    pub fn elapsed(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.start)
    }
}

/// `fetch 512.0/1024.0 MiB 50% 85.3 MiB/s eta 6s` (the logger adds `rustlive: `).
pub fn line(have: u64, total: Option<u64>, bytes_per_sec: f64) -> String {
    let rate = bytes_per_sec / (1u64 << 20) as f64;
    match total {
        Some(t) if t > 0 => {
            let pct = have.saturating_mul(100).checked_div(t).unwrap_or(0);
            let left = t.saturating_sub(have) as f64;
            let eta = if bytes_per_sec > 0.0 {
                format!("{:.0}s", (left / bytes_per_sec).round())
            } else {
                "?".into()
            };
            format!(
                "fetch {:.1}/{} {pct}% {rate:.1} MiB/s eta {eta}",
                have as f64 / (1u64 << 20) as f64,
                mib(t)
            )
        }
        _ => format!("fetch {} {rate:.1} MiB/s", mib(have)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_format() {
        assert_eq!(
            line(512 << 20, Some(1024 << 20), 85.3 * (1u64 << 20) as f64),
            "fetch 512.0/1024.0 MiB 50% 85.3 MiB/s eta 6s"
        );
        assert_eq!(line(3 << 20, None, 0.0), "fetch 3.0 MiB 0.0 MiB/s");
        assert_eq!(
            line(0, Some(1 << 20), 0.0),
            "fetch 0.0/1.0 MiB 0% 0.0 MiB/s eta ?"
        );
    }

    #[test]
    fn lines_are_rate_limited() {
        let t0 = Instant::now();
        let mut p = Progress::new(t0, INTERVAL);
        assert_eq!(p.tick(t0 + Duration::from_millis(1999), 10, None), None);
        let l = p.tick(t0 + Duration::from_secs(2), 4 << 20, Some(8 << 20));
        assert_eq!(l.as_deref(), Some("fetch 4.0/8.0 MiB 50% 2.0 MiB/s eta 2s"));
        assert_eq!(
            p.tick(t0 + Duration::from_secs(3), 5 << 20, Some(8 << 20)),
            None
        );
    }
}
