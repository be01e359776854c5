//! Unix time as a calendar date and back: UTC, proleptic Gregorian, from 1970 on. The one place
//! with calendar arithmetic (H. Hinnant's `civil_from_days`/`days_from_civil`), for the boot
//! log's timestamps and the HTTP dates of `Retry-After`.

/// A UTC date and time of day, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: u64,
    /// 1 to 12.
    pub month: u64,
    /// 1 to 31.
    pub day: u64,
    pub hour: u64,
    pub minute: u64,
    pub second: u64,
}

const SECS_PER_DAY: u64 = 86_400;

impl Utc {
    /// The date and time `secs` seconds after 1970-01-01T00:00:00Z.
    pub fn from_unix(secs: u64) -> Utc {
        let days = secs.checked_div(SECS_PER_DAY).unwrap_or(0);
        let rem = secs.checked_rem(SECS_PER_DAY).unwrap_or(0);
        let (year, month, day) = civil_from_days(days);
        Utc {
            year,
            month,
            day,
            hour: rem.checked_div(3600).unwrap_or(0),
            minute: rem
                .checked_rem(3600)
                .unwrap_or(0)
                .checked_div(60)
                .unwrap_or(0),
            second: rem.checked_rem(60).unwrap_or(0),
        }
    }

    /// Seconds since 1970-01-01T00:00:00Z; `None` for a date before 1970, a month outside
    /// 1..=12, a day 0, or a result that does not fit. The other fields are not bounded: a day
    /// past the end of its month, or second 60, runs on into the next (as `timegm`); the caller
    /// bounds what it accepts.
    pub fn to_unix(&self) -> Option<u64> {
        if !(1..=12).contains(&self.month) || self.day == 0 {
            return None;
        }
        days_from_civil(self.year, self.month, self.day)?
            .checked_mul(SECS_PER_DAY)?
            .checked_add(
                self.hour
                    .checked_mul(3600)?
                    .checked_add(self.minute.checked_mul(60)?)?
                    .checked_add(self.second)?,
            )
    }
}

/// Days since 1970-01-01 to (year, month, day), on unsigned numbers since the input is never
/// before the epoch.
// `days` is at most u64::MAX / 86400 (below 2^48), so no step can overflow or underflow: the
// algorithm's own invariants keep every difference non-negative.
#[allow(clippy::arithmetic_side_effects)]
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// Days since 1970-01-01 of a date on or after it, every step checked (the year comes from
/// outside); `None` before 1970.
fn days_from_civil(year: u64, month: u64, day: u64) -> Option<u64> {
    let (y, mo) = if month <= 2 {
        (year.checked_sub(1)?, month.checked_add(9)?)
    } else {
        (year, month.checked_sub(3)?)
    };
    let era = y.checked_div(400)?;
    let yoe = y.checked_rem(400)?;
    // Day of the year from March 1st, then day of the 400-year era.
    let doy = mo
        .checked_mul(153)?
        .checked_add(2)?
        .checked_div(5)?
        .checked_add(day)?
        .checked_sub(1)?;
    let doe = yoe
        .checked_mul(365)?
        .checked_add(yoe.checked_div(4)?)?
        .checked_sub(yoe.checked_div(100)?)?
        .checked_add(doy)?;
    era.checked_mul(146_097)?
        .checked_add(doe)?
        .checked_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(year: u64, month: u64, day: u64, hour: u64, minute: u64, second: u64) -> Utc {
        Utc {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn known_dates() {
        for (secs, date) in [
            (0, utc(1970, 1, 1, 0, 0, 0)),
            (784_111_777, utc(1994, 11, 6, 8, 49, 37)),
            (951_782_400, utc(2000, 2, 29, 0, 0, 0)),
            (951_868_800, utc(2000, 3, 1, 0, 0, 0)),
            (4_107_542_399, utc(2100, 2, 28, 23, 59, 59)),
            (4_107_542_400, utc(2100, 3, 1, 0, 0, 0)),
            (253_402_300_799, utc(9999, 12, 31, 23, 59, 59)),
        ] {
            assert_eq!(Utc::from_unix(secs), date, "{secs}");
            assert_eq!(date.to_unix(), Some(secs), "{date:?}");
        }
    }

    #[test]
    fn out_of_range_dates_have_no_unix_time() {
        assert_eq!(utc(1969, 12, 31, 23, 59, 59).to_unix(), None);
        assert_eq!(utc(1970, 0, 1, 0, 0, 0).to_unix(), None);
        assert_eq!(utc(1970, 13, 1, 0, 0, 0).to_unix(), None);
        assert_eq!(utc(1970, 1, 0, 0, 0, 0).to_unix(), None);
        assert_eq!(utc(u64::MAX, 1, 1, 0, 0, 0).to_unix(), None);
        assert_eq!(utc(2000, 1, 1, u64::MAX, 0, 0).to_unix(), None);
        // Runs on past the end of the month, as timegm does.
        assert_eq!(
            utc(1994, 11, 31, 0, 0, 0).to_unix(),
            utc(1994, 12, 1, 0, 0, 0).to_unix()
        );
        // The far end does not overflow.
        let last = Utc::from_unix(u64::MAX);
        assert_eq!((last.hour, last.minute, last.second), (7, 0, 15));
    }

    proptest! {
        #[test]
        fn round_trips(secs in 0u64..=1 << 40) {
            prop_assert_eq!(Utc::from_unix(secs).to_unix(), Some(secs));
        }
    }
}
