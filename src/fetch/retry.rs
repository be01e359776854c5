//! When to try again: exponential backoff with full jitter, `Retry-After`, and the overall
//! deadline. Pure functions of their inputs (the random source is passed in) so every rule is
//! unit-tested without sleeping.

use crate::support::deadline::Deadline;
use crate::support::time::Utc;
use std::time::{Duration, Instant, SystemTime};

/// Backoff parameters. Delay before retry `n` (0-based count of consecutive failures without
/// progress) is uniform in `[0, min(cap, base * 2^n)]` ("full jitter"): a thousand nodes that
/// lose the server at the same moment spread their retries over the whole window instead of
/// coming back in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before the next attempt after `failures` consecutive failures without
    /// progress. A `Retry-After` from the server is honoured up to the cap, with a little
    /// jitter on top (at most a quarter of it, still capped) so the herd it was sent to does
    /// not return in the same millisecond.
    pub fn delay(&self, failures: u32, retry_after: Option<Duration>, rng: &mut Rng) -> Duration {
        if let Some(ra) = retry_after {
            let ra = ra.min(self.cap);
            let spread = ra
                .checked_div(4)
                .unwrap_or_default()
                .min(self.cap.saturating_sub(ra));
            return ra.saturating_add(rng.below(spread));
        }
        let window = self
            .base
            .checked_mul(1u32.checked_shl(failures.min(31)).unwrap_or(u32::MAX))
            .unwrap_or(self.cap)
            .min(self.cap);
        rng.below(window)
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Sleep this long, then try again.
    Retry(Duration),
    /// `rd.rustlive.retries` is used up.
    RetriesExhausted,
    /// Sleeping would cross the overall deadline.
    DeadlinePassed,
}

/// Decides between retrying and giving up. `attempts` counts attempts made so far (≥ 1);
/// `retries` is the number allowed after the first (`None`: unlimited).
pub fn next(
    attempts: u32,
    retries: Option<u32>,
    delay: Duration,
    now: Instant,
    deadline: Deadline,
) -> Next {
    if retries.is_some_and(|r| attempts > r) {
        return Next::RetriesExhausted;
    }
    if deadline.passed_at(now) {
        return Next::DeadlinePassed;
    }
    // Sleep at most what is left, then make one last attempt: it may still finish in time.
    Next::Retry(deadline.clamp_at(now, delay))
}

/// Parses `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = parse_http_date(v)?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// IMF-fixdate only (`Sun, 06 Nov 1994 08:49:37 GMT`), the form servers must send. Years
/// outside 1970..=9999 are refused: a date the calendar arithmetic or `SystemTime` cannot hold
/// is a hostile header, not a reason to wait (or to overflow).
fn parse_http_date(s: &str) -> Option<SystemTime> {
    let rest = s.split_once(", ")?.1;
    let mut it = rest.split(' ');
    let day: u64 = it.next()?.parse().ok()?;
    let mon = it.next()?;
    let year: u64 = it.next()?.parse().ok()?;
    let mut hms = it.next()?.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, sec) = (hms.next()??, hms.next()??, hms.next()??);
    if it.next()? != "GMT" || it.next().is_some() || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    if hms.next().is_some() || !(1970..=9999).contains(&year) || !(1..=31).contains(&day) {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = u64::try_from(MONTHS.iter().position(|&x| x == mon)?)
        .ok()?
        .checked_add(1)?;
    let secs = Utc {
        year,
        month,
        day,
        hour: h,
        minute: m,
        second: sec,
    }
    .to_unix()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// The jitter's random source, passed in so that tests fix it.
pub use crate::sys::random::Rng;

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn full_jitter_stays_in_the_doubling_window() {
        let b = Backoff::default();
        let mut rng = Rng::from_seed(7);
        for failures in 0..40 {
            let window = S(1 << failures.min(5)).min(S(30));
            for _ in 0..200 {
                let d = b.delay(failures, None, &mut rng);
                assert!(d <= window, "failure {failures}: {d:?} > {window:?}");
            }
        }
    }

    #[test]
    fn jitter_spreads_delays() {
        let b = Backoff::default();
        let mut rng = Rng::from_seed(1);
        let ds: Vec<_> = (0..1000).map(|_| b.delay(5, None, &mut rng)).collect();
        let min = ds.iter().min().unwrap();
        let max = ds.iter().max().unwrap();
        // Uniform on [0, 30 s]: a thousand draws cover most of the window.
        assert!(*min < S(1) && *max > S(29), "{min:?}..{max:?}");
        let mean = ds.iter().sum::<Duration>() / 1000;
        assert!(mean > S(13) && mean < S(17), "mean {mean:?}");
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let b = Backoff::default();
        let mut rng = Rng::from_seed(3);
        for _ in 0..100 {
            let d = b.delay(0, Some(S(4)), &mut rng);
            assert!(d >= S(4) && d <= S(5), "{d:?}");
            assert_eq!(b.delay(0, Some(S(3600)), &mut rng), S(30));
        }
    }

    #[test]
    fn retries_and_deadline() {
        let now = Instant::now();
        let none = Deadline::NONE;
        assert_eq!(next(1, Some(0), S(1), now, none), Next::RetriesExhausted);
        assert_eq!(next(3, Some(3), S(1), now, none), Next::Retry(S(1)));
        assert_eq!(next(4, Some(3), S(1), now, none), Next::RetriesExhausted);
        assert_eq!(next(100, None, S(2), now, none), Next::Retry(S(2)));
        let in3 = Deadline::after_from(now, Some(S(3)));
        assert_eq!(next(1, None, S(10), now, in3), Next::Retry(S(3)));
        let passed = Deadline::after_from(now, Some(S(0)));
        assert_eq!(
            next(1, None, S(1), now + S(5), passed),
            Next::DeadlinePassed
        );
        // Any delay, any deadline: never an overflow.
        let far = Deadline::after_from(now, Some(Duration::MAX));
        assert_eq!(
            next(1, None, Duration::MAX, now, far),
            Next::Retry(Duration::MAX)
        );
    }

    #[test]
    fn far_future_retry_after_is_a_long_but_finite_wait_capped_by_the_backoff() {
        let now = SystemTime::UNIX_EPOCH + S(1_700_000_000);
        let d = parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now).unwrap();
        assert!(d > S(200 * 365 * 86_400), "{d:?}");
        let mut rng = Rng::from_seed(9);
        assert_eq!(Backoff::default().delay(0, Some(d), &mut rng), S(30));
        let huge = parse_retry_after("18446744073709551615", now).unwrap();
        assert_eq!(Backoff::default().delay(0, Some(huge), &mut rng), S(30));
        // A cap that is itself absurd still cannot overflow the jitter.
        let b = Backoff {
            base: Duration::MAX,
            cap: Duration::MAX,
        };
        b.delay(0, Some(Duration::MAX), &mut rng);
        b.delay(31, None, &mut rng);
        let _ = rng.below(Duration::MAX);
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + S(784_111_777);
        assert_eq!(parse_retry_after("120", now), Some(S(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(S(0)));
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT.
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(S(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(S(0))
        );
        for bad in [
            "",
            "-1",
            "soon",
            "Sun, 06 Nov 1994 08:49:47 PST",
            "Sun, 32 Nov 1994 08:49:47 GMT",
            "Sun, 06 Nov 1994 08:49:47:01 GMT",
            // Issue 9 item 2: far-future dates once overflowed `SystemTime + Duration`.
            "Mon, 01 Jan 99999999999999999 00:00:00 GMT",
            "Mon, 01 Jan 18446744073709551615 00:00:00 GMT",
            "Fri, 31 Dec 10000 23:59:59 GMT",
            "Thu, 01 Jan 1969 00:00:00 GMT",
        ] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }
}
