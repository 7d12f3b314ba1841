//! Exponential backoff with jitter: when a failed event is tried again, and how long the
//! listener waits before reconnecting.

use std::time::Duration;

use rand::Rng;

/// `base * factor^(n - 1)`, capped at `max`, then shortened by up to `jitter` (a fraction) at
/// random, so workers that failed together do not all come back at the same instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub factor: f64,
    pub max: Duration,
    /// In `0.0..=1.0`: 0.25 gives a delay between 75% and 100% of the schedule.
    pub jitter: f64,
}

impl Backoff {
    /// The retries of a failed event: 2 s, 4 s, 8 s, ... up to 10 minutes, less up to 25%.
    pub const RETRIES: Self = Self {
        base: Duration::from_secs(2),
        factor: 2.0,
        max: Duration::from_secs(10 * 60),
        jitter: 0.25,
    };

    /// The listener's reconnects: 100 ms, 200 ms, ... up to 10 s, less up to 50%.
    pub const RECONNECTS: Self = Self {
        base: Duration::from_millis(100),
        factor: 2.0,
        max: Duration::from_secs(10),
        jitter: 0.5,
    };

    /// The delay of the schedule before try `n + 1` (`n` >= 1 tries done), before jitter.
    pub fn scheduled(&self, n: u32) -> Duration {
        let exponent = n.saturating_sub(1).min(63) as i32;
        let seconds = self.base.as_secs_f64() * self.factor.max(1.0).powi(exponent);
        Duration::from_secs_f64(seconds.min(self.max.as_secs_f64()))
    }

    /// The delay before try `n + 1`, jittered with `random` in `0.0..1.0`.
    pub fn delay_with(&self, n: u32, random: f64) -> Duration {
        let jitter = self.jitter.clamp(0.0, 1.0) * random.clamp(0.0, 1.0);
        self.scheduled(n).mul_f64(1.0 - jitter)
    }

    /// The delay before try `n + 1`.
    pub fn delay(&self, n: u32) -> Duration {
        self.delay_with(n, rand::rng().random())
    }

    /// The shortest delay [`Backoff::delay`] can give before try `n + 1`.
    pub fn shortest(&self, n: u32) -> Duration {
        self.delay_with(n, 1.0)
    }

    pub(crate) fn validate(&self, what: &str) -> Result<(), String> {
        if self.base.is_zero()
            || self.factor.is_nan()
            || self.factor < 1.0
            || !(0.0..=1.0).contains(&self.jitter)
        {
            return Err(format!(
                "{what}: base must be above zero, factor at least 1 and jitter within 0..=1 (got {self:?})"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_doubles_up_to_its_cap() {
        let b = Backoff::RETRIES;
        let secs: Vec<u64> = (1..=11).map(|n| b.scheduled(n).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]);
        assert_eq!(b.scheduled(u32::MAX), b.max);
    }

    #[test]
    fn jitter_only_shortens_and_stays_within_its_fraction() {
        let b = Backoff::RETRIES;
        assert_eq!(b.delay_with(3, 0.0), Duration::from_secs(8));
        assert_eq!(b.delay_with(3, 1.0), Duration::from_secs(6));
        assert_eq!(b.shortest(3), Duration::from_secs(6));
        for _ in 0..1000 {
            let d = b.delay(3);
            assert!(
                d >= Duration::from_secs(6) && d <= Duration::from_secs(8),
                "{d:?}"
            );
        }
    }

    #[test]
    fn nonsense_is_refused() {
        let zero = Backoff {
            base: Duration::ZERO,
            ..Backoff::RETRIES
        };
        assert!(zero.validate("retry").is_err());
        let shrinking = Backoff {
            factor: 0.5,
            ..Backoff::RETRIES
        };
        assert!(shrinking.validate("retry").is_err());
        assert!(Backoff::RECONNECTS.validate("reconnect").is_ok());
    }

    #[test]
    fn a_constant_schedule_and_full_jitter_are_allowed() {
        let constant = Backoff {
            factor: 1.0,
            jitter: 1.0,
            ..Backoff::RETRIES
        };
        assert!(constant.validate("retry").is_ok());
        assert_eq!(constant.scheduled(5), Duration::from_secs(2));
    }
}
