//! The upload cap: one token bucket shared by every peer of a session. Tokens are bytes; they
//! refill at `rate` per second up to a burst, and a block is sent only when the bucket holds
//! all of its bytes. So over any interval of `t` seconds at most `burst + rate × t` bytes leave,
//! whatever the number of peers.
//!
//! Pure: the caller passes the time, so the tests need no sleep.

use std::num::NonZeroU64;
use std::time::Instant;

const NANOS: u128 = 1_000_000_000;

#[derive(Debug, Clone)]
pub struct Bucket {
    rate: u64,
    burst: u64,
    /// Bytes available, scaled by 10⁹ (byte-nanoseconds per second), so refills of a few
    /// nanoseconds are not rounded away.
    tokens: u128,
    last: Instant,
}

impl Bucket {
    /// `rate` bytes per second; the burst is a quarter second of it, but at least `min_burst`
    /// (the largest single send, or it could never go out). Starts full.
    pub fn new(rate: NonZeroU64, min_burst: u64, now: Instant) -> Bucket {
        let rate = rate.get();
        let burst = (rate / 4).max(min_burst).max(1);
        Bucket {
            rate,
            burst,
            tokens: u128::from(burst).saturating_mul(NANOS),
            last: now,
        }
    }

    pub fn burst(&self) -> u64 {
        self.burst
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_nanos();
        if dt == 0 {
            return;
        }
        self.last = now;
        let cap = u128::from(self.burst).saturating_mul(NANOS);
        self.tokens = self
            .tokens
            .saturating_add(dt.saturating_mul(u128::from(self.rate)))
            .min(cap);
    }

    /// Takes `n` bytes' worth of tokens at `now` if the bucket holds them all.
    pub fn take(&mut self, now: Instant, n: u64) -> bool {
        self.refill(now);
        let need = u128::from(n).saturating_mul(NANOS);
        if need > self.tokens {
            return false;
        }
        self.tokens = self.tokens.saturating_sub(need);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    fn rate(n: u64) -> NonZeroU64 {
        NonZeroU64::new(n).unwrap()
    }

    #[test]
    fn refills_at_the_rate_up_to_the_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(1 << 20), 16 << 10, t0);
        assert_eq!(b.burst(), 256 << 10);
        // The burst goes out at once, then nothing until time passes.
        assert!(b.take(t0, 256 << 10));
        assert!(!b.take(t0, 1));
        // 1/64 s at 1 MiB/s: 16 KiB, not a byte more.
        let t1 = t0 + Duration::from_secs(1) / 64;
        assert!(!b.take(t1, (16 << 10) + 1));
        assert!(b.take(t1, 16 << 10));
        assert!(!b.take(t1, 1));
        // A long pause refills to the burst only.
        let t2 = t1 + Duration::from_secs(3600);
        assert!(!b.take(t2, (256 << 10) + 1));
        assert!(b.take(t2, 256 << 10));
    }

    #[test]
    fn the_burst_holds_at_least_one_send() {
        let t0 = Instant::now();
        let mut b = Bucket::new(rate(1000), 128 << 10, t0);
        assert!(b.take(t0, 128 << 10));
        assert!(!b.take(t0 + Duration::from_secs(1), 16 << 10));
        assert!(b.take(t0 + Duration::from_secs(132), 128 << 10));
    }

    proptest! {
        /// Over any schedule of sends, the bytes sent by time t never exceed burst + rate × t.
        #[test]
        fn never_above_the_cap(r in 1u64..10_000_000, steps in proptest::collection::vec((0u64..200_000_000, 1u64..300_000), 1..200)) {
            let t0 = Instant::now();
            let mut b = Bucket::new(rate(r), 16 << 10, t0);
            let (mut at, mut sent) = (0u64, 0u128);
            for (dt, n) in steps {
                at += dt;
                if b.take(t0 + Duration::from_nanos(at), n) {
                    sent += u128::from(n);
                }
                let cap = u128::from(b.burst()) + u128::from(r) * u128::from(at) / NANOS;
                prop_assert!(sent <= cap, "{sent} > {cap}");
            }
        }
    }
}
