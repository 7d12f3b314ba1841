//! Timestamps as microseconds from the Unix epoch, written as PostgreSQL reads them. Every seeded
//! time is an offset from [`EPOCH`], never from the clock, so two runs write the same bytes.

use std::fmt::Write;

/// A UTC instant in microseconds since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Time(i64);

const MICROS_PER_SECOND: i64 = 1_000_000;

/// The fixed "now" of the seeded world: 2026-11-01T00:00:00Z. History lies before it.
pub const EPOCH: Time = Time(1_793_491_200 * MICROS_PER_SECOND);

/// 2100-01-01T00:00:00Z: the expiry of what must still be valid whenever the seed is used (the
/// current sessions, pending invitations, unexpired verification codes), so a seed made today
/// signs in years from now and stays byte-identical.
pub const STILL_VALID_UNTIL: Time = Time(4_102_444_800 * MICROS_PER_SECOND);

/// How far back the seeded history reaches from [`EPOCH`].
pub const HISTORY_DAYS: i64 = 180;

impl Time {
    pub const fn millis(millis: i64) -> i64 {
        millis * 1000
    }

    pub const fn seconds(seconds: i64) -> i64 {
        seconds * MICROS_PER_SECOND
    }

    pub const fn minutes(minutes: i64) -> i64 {
        Self::seconds(minutes * 60)
    }

    pub const fn hours(hours: i64) -> i64 {
        Self::minutes(hours * 60)
    }

    pub const fn days(days: i64) -> i64 {
        Self::hours(days * 24)
    }

    /// The start of the seeded history.
    pub const fn history_start() -> Time {
        Time(EPOCH.0 - Self::days(HISTORY_DAYS))
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    pub const fn plus(self, micros: i64) -> Time {
        Time(self.0 + micros)
    }

    /// Whole seconds since the Unix epoch (Slack's `event_time`).
    pub const fn unix_seconds(self) -> i64 {
        self.0.div_euclid(MICROS_PER_SECOND)
    }

    /// `2026-10-31 23:59:59.123456+00`, PostgreSQL's own text form of a `timestamptz` in UTC.
    pub fn write_sql(self, out: &mut Vec<u8>) {
        let (date, micros) = (
            self.0.div_euclid(Self::days(1)),
            self.0.rem_euclid(Self::days(1)),
        );
        let (year, month, day) = civil_from_days(date);
        let seconds = micros / MICROS_PER_SECOND;
        let mut text = String::with_capacity(32);
        let _ = write!(
            text,
            "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:06}+00",
            seconds / 3600,
            seconds / 60 % 60,
            seconds % 60,
            micros % MICROS_PER_SECOND
        );
        out.extend_from_slice(text.as_bytes());
    }

    /// `2026-10-31T23:59:59.123Z`, the ISO form webhooks carry.
    pub fn iso(self) -> String {
        let mut sql = Vec::with_capacity(32);
        self.write_sql(&mut sql);
        let text = String::from_utf8(sql).expect("ASCII");
        format!("{}T{}Z", &text[..10], &text[11..23])
    }
}

/// Year, month, day of a day count from 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(time: Time) -> String {
        let mut out = Vec::new();
        time.write_sql(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn writes_the_epochs_and_leap_days_as_postgresql_does() {
        assert_eq!(sql(EPOCH), "2026-11-01 00:00:00.000000+00");
        assert_eq!(sql(STILL_VALID_UNTIL), "2100-01-01 00:00:00.000000+00");
        assert_eq!(sql(Time(0)), "1970-01-01 00:00:00.000000+00");
        // 2024-02-29T12:34:56.000789Z
        assert_eq!(
            sql(Time(1_709_210_096 * MICROS_PER_SECOND + 789)),
            "2024-02-29 12:34:56.000789+00"
        );
        assert_eq!(EPOCH.plus(-1).iso(), "2026-10-31T23:59:59.999Z");
    }
}
