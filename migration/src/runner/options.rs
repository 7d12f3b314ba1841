//! How long a migration may wait and run: the lock and statement timeouts set for each migration
//! alone, and how often a migration that timed out waiting for a lock is tried again.

use std::time::Duration;

pub const LOCK_TIMEOUT_VAR: &str = "MIGRATION_LOCK_TIMEOUT_MS";
pub const STATEMENT_TIMEOUT_VAR: &str = "MIGRATION_STATEMENT_TIMEOUT_MS";
pub const LOCK_RETRIES_VAR: &str = "MIGRATION_LOCK_RETRIES";

/// The settings of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOptions {
    /// `lock_timeout` of every migration (`MIGRATION_LOCK_TIMEOUT_MS`, default 5 s): how long
    /// one statement may wait for a lock. While an `ALTER TABLE` waits, every later query on
    /// that table queues behind it, so this bounds how long ingestion can stall.
    pub lock_timeout: Duration,
    /// `statement_timeout` of every migration (`MIGRATION_STATEMENT_TIMEOUT_MS`, default off).
    pub statement_timeout: Option<Duration>,
    /// How many more times a migration that hit its lock timeout is tried
    /// (`MIGRATION_LOCK_RETRIES`, default 3).
    pub lock_retries: u32,
    /// The pause before the first retry; each later one doubles it (up to 30 s).
    pub retry_backoff: Duration,
    /// The longest pause between two tries for the migration lock while another run holds it.
    pub lock_poll: Duration,
    /// How long each connection of the run is given to answer (default the pools' 10 s; the
    /// CLI gives it `DB_CONNECT_TIMEOUT_SECS`).
    pub connect_timeout: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: None,
            lock_retries: 3,
            retry_backoff: Duration::from_secs(1),
            lock_poll: Duration::from_millis(500),
            connect_timeout: db_connect::PoolSettings::default().connect_timeout,
        }
    }
}

/// A setting that is not a number of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is invalid: {reason}")]
pub struct OptionsError {
    pub var: &'static str,
    pub value: String,
    pub reason: &'static str,
}

impl RunOptions {
    /// Reads the `MIGRATION_*` variables (after loading `.env`).
    pub fn from_env() -> Result<Self, OptionsError> {
        // A broken .env is reported by the URL's resolution, which reads it too.
        let _ = db_connect::config::load_dotenv();
        Self::from_lookup(|var| std::env::var(var).ok())
    }

    /// Reads the settings through `lookup`, so callers and tests can supply their own source.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OptionsError> {
        let defaults = Self::default();
        let number = |var: &'static str| -> Result<Option<u64>, OptionsError> {
            let Some(value) = lookup(var).filter(|v| !v.trim().is_empty()) else {
                return Ok(None);
            };
            value
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n <= i32::MAX as u64)
                .map(Some)
                .ok_or(OptionsError {
                    var,
                    value,
                    reason: "expected a whole number from 0 to 2147483647",
                })
        };
        let lock_timeout = match number(LOCK_TIMEOUT_VAR)? {
            None => defaults.lock_timeout,
            Some(0) => {
                return Err(OptionsError {
                    var: LOCK_TIMEOUT_VAR,
                    value: "0".to_owned(),
                    reason: "a migration without a lock timeout can stall every query on its table; give milliseconds above 0",
                });
            }
            Some(ms) => Duration::from_millis(ms),
        };
        Ok(Self {
            lock_timeout,
            statement_timeout: number(STATEMENT_TIMEOUT_VAR)?
                .filter(|ms| *ms > 0)
                .map(Duration::from_millis),
            lock_retries: number(LOCK_RETRIES_VAR)?.map_or(defaults.lock_retries, |n| n as u32),
            ..defaults
        })
    }

    /// The settings as `(name, milliseconds)`, `statement_timeout` 0 when off: set explicitly so a
    /// database default meant for the application does not cut a long index build.
    pub(crate) fn timeouts(&self) -> [(&'static str, u128); 2] {
        [
            ("lock_timeout", self.lock_timeout.as_millis()),
            (
                "statement_timeout",
                self.statement_timeout.map_or(0, |t| t.as_millis()),
            ),
        ]
    }

    /// The statements that scope the timeouts to the migration's own transaction.
    pub fn transaction_settings_sql(&self) -> String {
        self.timeouts()
            .iter()
            .map(|(name, ms)| format!("SET LOCAL {name} = '{ms}ms';"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What a migration outside a transaction runs with: the same settings for its whole session.
    pub fn session_settings_sql(&self) -> String {
        self.timeouts()
            .iter()
            .map(|(name, ms)| format!("SET {name} = '{ms}ms';"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The pause before retry `attempt` (1-based).
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        (self.retry_backoff * factor).min(Duration::from_secs(30))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(pairs: &[(&str, &str)]) -> Result<RunOptions, OptionsError> {
        RunOptions::from_lookup(|var| {
            pairs
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn defaults_are_five_seconds_no_statement_timeout_three_retries() {
        let options = from(&[]).unwrap();
        assert_eq!(options, RunOptions::default());
        assert_eq!(
            options.transaction_settings_sql(),
            "SET LOCAL lock_timeout = '5000ms';\nSET LOCAL statement_timeout = '0ms';"
        );
    }

    #[test]
    fn variables_override_and_bad_values_are_named() {
        let options = from(&[
            (LOCK_TIMEOUT_VAR, "250"),
            (STATEMENT_TIMEOUT_VAR, "60000"),
            (LOCK_RETRIES_VAR, "0"),
        ])
        .unwrap();
        assert_eq!(options.lock_timeout, Duration::from_millis(250));
        assert_eq!(options.statement_timeout, Some(Duration::from_secs(60)));
        assert_eq!(options.lock_retries, 0);
        let err = from(&[(LOCK_TIMEOUT_VAR, "5s")]).unwrap_err();
        assert_eq!(err.var, LOCK_TIMEOUT_VAR);
        assert!(err.to_string().contains("whole number"), "{err}");
        assert!(from(&[(LOCK_TIMEOUT_VAR, "0")]).is_err());
        assert_eq!(
            from(&[(STATEMENT_TIMEOUT_VAR, "0")])
                .unwrap()
                .statement_timeout,
            None
        );
    }

    #[test]
    fn the_backoff_doubles_up_to_thirty_seconds() {
        let options = RunOptions::default();
        let pauses: Vec<u64> = (1..=7).map(|a| options.backoff(a).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30]);
    }
}
