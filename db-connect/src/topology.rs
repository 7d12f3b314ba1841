//! Which URL each kind of work uses once the database sits behind a pooler and grows replicas:
//! the application's queries (`DATABASE_URL`, possibly a transaction-mode pooler), work that
//! needs a session of its own (`DATABASE_DIRECT_URL`: `LISTEN`, session locks), migrations
//! (`MIGRATION_DATABASE_URL`, Prisma's `directUrl`) and read-only helpers
//! (`DATABASE_REPLICA_URL`, trusted while it lags less than `DB_REPLICA_MAX_LAG_MS`).

use std::{fmt, time::Duration};

use crate::config::{ConfigError, DATABASE_URL_VAR, DatabaseUrl};

pub const DB_POOLER_VAR: &str = "DB_POOLER";
pub const POOLER_PREPARED_STATEMENTS_VAR: &str = "DB_POOLER_PREPARED_STATEMENTS";
pub const DIRECT_URL_VAR: &str = "DATABASE_DIRECT_URL";
pub const MIGRATION_URL_VAR: &str = "MIGRATION_DATABASE_URL";
pub const REPLICA_URL_VAR: &str = "DATABASE_REPLICA_URL";
pub const REPLICA_MAX_LAG_VAR: &str = "DB_REPLICA_MAX_LAG_MS";

/// How long a replica may trail the primary before reads leave it, unless configured.
pub const DEFAULT_REPLICA_MAX_LAG: Duration = Duration::from_millis(1000);

/// What sits between the application and PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// Nothing, or a pooler in session mode: every connection is a session of its own.
    #[default]
    None,
    /// A pooler in transaction mode (PgBouncer `pool_mode = transaction`, the managed poolers of
    /// hosted PostgreSQL): consecutive transactions of one client connection may run on
    /// different server sessions, so nothing may outlive a transaction (prepared statements,
    /// `SET`, `LISTEN`, session advisory locks).
    Transaction,
}

impl Pooler {
    /// What the URL's own `pgbouncer=` flag says (Prisma's spelling); `None` when it says nothing.
    pub fn of_url(url: &DatabaseUrl) -> Self {
        match url.pooler_flag() {
            Some(true) => Self::Transaction,
            _ => Self::None,
        }
    }

    /// `DB_POOLER` and the URL's `pgbouncer=` flag together; either may say `transaction`, and
    /// both saying different things is an error.
    fn resolve(setting: Option<&str>, url: &DatabaseUrl) -> Result<Self, ConfigError> {
        let invalid = |value: &str, reason: &str| ConfigError::InvalidSetting {
            var: DB_POOLER_VAR,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let from_setting = match setting.map(str::trim).filter(|v| !v.is_empty()) {
            None => None,
            Some("none" | "session") => Some(Self::None),
            Some("transaction") => Some(Self::Transaction),
            Some(other) => return Err(invalid(other, "expected none, session or transaction")),
        };
        let from_url = url.pooler_flag().map(|on| match on {
            true => Self::Transaction,
            false => Self::None,
        });
        match (from_setting, from_url) {
            (Some(a), Some(b)) if a != b => Err(invalid(
                setting.unwrap_or_default(),
                "it contradicts the pgbouncer= parameter of DATABASE_URL",
            )),
            (a, b) => Ok(a.or(b).unwrap_or_default()),
        }
    }
}

impl fmt::Display for Pooler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Transaction => "transaction",
        })
    }
}

/// How statements cross a transaction-mode pooler (`DB_POOLER_PREPARED_STATEMENTS`). Either way
/// the pooler is a transaction pooler: session state, session locks and `LISTEN` still do not
/// stay with the client, so [`Topology::session_url`] and [`Topology::migration_url`] answer the
/// same.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PooledStatements {
    /// Every statement one simple-protocol query with its values written in: safe through any
    /// transaction pooler, since nothing is prepared on the server.
    #[default]
    Inlined,
    /// The driver's own named prepared statements, cached per connection, and bound
    /// parameters: for a pooler that tracks protocol-level prepared statements (PgBouncer 1.21+
    /// with `max_prepared_statements` > 0, and the managed poolers that do the same), which
    /// prepares each on whatever server session runs it. Checked when the pool opens.
    Prepared,
}

impl PooledStatements {
    /// `DB_POOLER_PREPARED_STATEMENTS` (`true` or `false`), which needs a transaction pooler.
    fn resolve(setting: Option<&str>, pooler: Pooler) -> Result<Self, ConfigError> {
        let invalid = |value: &str, reason: &str| ConfigError::InvalidSetting {
            var: POOLER_PREPARED_STATEMENTS_VAR,
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let statements = match setting.map(str::trim).filter(|v| !v.is_empty()) {
            None | Some("false") => Self::Inlined,
            Some("true") => Self::Prepared,
            Some(other) => return Err(invalid(other, "expected true or false")),
        };
        match (statements, pooler) {
            (Self::Prepared, Pooler::None) => Err(invalid(
                "true",
                "it applies to a transaction-mode pooler; set DB_POOLER=transaction (or pgbouncer=true) as well",
            )),
            _ => Ok(statements),
        }
    }
}

impl fmt::Display for PooledStatements {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Inlined => "inlined",
            Self::Prepared => "prepared",
        })
    }
}

/// Every URL of a deployment, validated together.
#[derive(Debug, Clone)]
pub struct Topology {
    /// `DATABASE_URL`: the application's queries.
    pub application: DatabaseUrl,
    /// What `application` goes through.
    pub pooler: Pooler,
    /// `DB_POOLER_PREPARED_STATEMENTS`: how statements cross a transaction-mode `pooler` (the
    /// replica's pool always inlines).
    pub pooled_statements: PooledStatements,
    /// `DATABASE_DIRECT_URL`: the same database without the pooler.
    pub direct: Option<DatabaseUrl>,
    /// `MIGRATION_DATABASE_URL`.
    pub migration: Option<DatabaseUrl>,
    /// `DATABASE_REPLICA_URL`.
    pub replica: Option<DatabaseUrl>,
    /// `DB_REPLICA_MAX_LAG_MS`.
    pub replica_max_lag: Duration,
}

/// Why a kind of work has no URL it can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "DATABASE_URL goes through a transaction-mode pooler (DB_POOLER=transaction or pgbouncer=true), where {purpose} cannot work; set {var} to a URL that reaches PostgreSQL directly"
)]
pub struct NeedsDirectUrl {
    pub purpose: &'static str,
    pub var: &'static str,
}

impl Topology {
    /// The topology as [`Settings::from_env`](crate::Settings::from_env) reads it (with
    /// `.env`); `Ok(None)` when `DATABASE_URL` is unset.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Ok(crate::Settings::from_env()?.topology)
    }

    /// Reads the variables through `lookup`, so callers and tests can supply their own source.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, ConfigError> {
        let read = |var: &'static str| lookup(var).filter(|v| !v.trim().is_empty());
        let url = |var: &'static str| -> Result<Option<DatabaseUrl>, ConfigError> {
            read(var)
                .map(|raw| {
                    DatabaseUrl::parse(&raw).map_err(|err| ConfigError::InvalidUrlVariable {
                        var,
                        reason: Box::new(err),
                    })
                })
                .transpose()
        };
        let Some(application) = url(DATABASE_URL_VAR)? else {
            return Ok(None);
        };
        let pooler = Pooler::resolve(read(DB_POOLER_VAR).as_deref(), &application)?;
        let pooled_statements =
            PooledStatements::resolve(read(POOLER_PREPARED_STATEMENTS_VAR).as_deref(), pooler)?;
        let direct = url(DIRECT_URL_VAR)?;
        let migration = url(MIGRATION_URL_VAR)?;
        let replica = url(REPLICA_URL_VAR)?;
        for (var, other) in [(DIRECT_URL_VAR, &direct), (MIGRATION_URL_VAR, &migration)] {
            if other.as_ref().and_then(DatabaseUrl::pooler_flag) == Some(true) {
                return Err(ConfigError::InvalidSetting {
                    var,
                    value: other.as_ref().map(ToString::to_string).unwrap_or_default(),
                    reason: "it must reach PostgreSQL directly, not through the pooler".to_owned(),
                });
            }
        }
        let replica_max_lag = match read(REPLICA_MAX_LAG_VAR) {
            None => DEFAULT_REPLICA_MAX_LAG,
            Some(value) => value
                .trim()
                .parse::<u64>()
                .map(Duration::from_millis)
                .map_err(|_| ConfigError::InvalidSetting {
                    var: REPLICA_MAX_LAG_VAR,
                    value: value.clone(),
                    reason: "expected a whole number of milliseconds".to_owned(),
                })?,
        };
        Ok(Some(Self {
            application,
            pooler,
            pooled_statements,
            direct,
            migration,
            replica,
            replica_max_lag,
        }))
    }

    /// A topology of one directly reached database.
    pub fn direct(url: DatabaseUrl) -> Self {
        Self {
            pooler: Pooler::None,
            ..Self::for_url(url)
        }
    }

    /// A topology of one database, through a transaction-mode pooler when the URL says
    /// `pgbouncer=true`.
    pub fn for_url(url: DatabaseUrl) -> Self {
        Self {
            pooler: Pooler::of_url(&url),
            pooled_statements: PooledStatements::Inlined,
            application: url,
            direct: None,
            migration: None,
            replica: None,
            replica_max_lag: DEFAULT_REPLICA_MAX_LAG,
        }
    }

    /// Where work that needs a session of its own goes: `DATABASE_DIRECT_URL`, else
    /// `DATABASE_URL` unless that is a transaction-mode pooler.
    pub fn session_url(&self, purpose: &'static str) -> Result<&DatabaseUrl, NeedsDirectUrl> {
        self.direct
            .as_ref()
            .or(self.unpooled_application())
            .ok_or(NeedsDirectUrl {
                purpose,
                var: DIRECT_URL_VAR,
            })
    }

    /// Where migrations go: `MIGRATION_DATABASE_URL`, else `DATABASE_DIRECT_URL`, else
    /// `DATABASE_URL` unless that is a transaction-mode pooler.
    pub fn migration_url(&self) -> Result<&DatabaseUrl, NeedsDirectUrl> {
        self.migration
            .as_ref()
            .or(self.direct.as_ref())
            .or(self.unpooled_application())
            .ok_or(NeedsDirectUrl {
                purpose: "migrations (their lock and their non-transactional steps need a session)",
                var: MIGRATION_URL_VAR,
            })
    }

    /// What the replica's URL goes through: a transaction-mode pooler when its own
    /// `pgbouncer=true` says so or the application's does (replicas usually sit behind the
    /// same kind of pooler; the pooler-safe protocol also works directly, at little cost).
    pub fn replica_pooler(&self) -> Pooler {
        match (self.pooler, self.replica.as_ref().map(Pooler::of_url)) {
            (Pooler::Transaction, _) | (_, Some(Pooler::Transaction)) => Pooler::Transaction,
            _ => Pooler::None,
        }
    }

    fn unpooled_application(&self) -> Option<&DatabaseUrl> {
        (self.pooler == Pooler::None).then_some(&self.application)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(raw: &str) -> DatabaseUrl {
        DatabaseUrl::parse(raw).unwrap()
    }

    #[test]
    fn a_url_alone_goes_through_a_pooler_when_it_says_pgbouncer_true() {
        let pooled = Topology::for_url(url("postgresql://u:p@h:6432/db?pgbouncer=true"));
        assert_eq!(pooled.pooler, Pooler::Transaction);
        assert!(pooled.migration_url().is_err());
        let plain = Topology::for_url(url("postgresql://u:p@h:5432/db"));
        assert_eq!(plain.pooler, Pooler::None);
        assert_eq!(
            Topology::direct(url("postgresql://u:p@h:6432/db?pgbouncer=true")).pooler,
            Pooler::None
        );
    }

    #[test]
    fn the_replica_is_pooled_when_it_or_the_application_says_so() {
        let topology = |app: &str, replica: &str| Topology {
            replica: Some(url(replica)),
            ..Topology::for_url(url(app))
        };
        let (direct, pooled) = (
            "postgresql://u:p@h:5432/db",
            "postgresql://u:p@h:6432/db?pgbouncer=true",
        );
        assert_eq!(topology(direct, direct).replica_pooler(), Pooler::None);
        assert_eq!(
            topology(pooled, direct).replica_pooler(),
            Pooler::Transaction
        );
        assert_eq!(
            topology(direct, pooled).replica_pooler(),
            Pooler::Transaction
        );
    }

    fn from_pairs(pairs: &[(&str, &str)]) -> Result<Topology, ConfigError> {
        Topology::from_lookup(|var| {
            pairs
                .iter()
                .find(|(k, _)| *k == var)
                .map(|(_, v)| (*v).to_owned())
        })
        .map(|t| t.expect("DATABASE_URL is set"))
    }

    const POOLED: &str = "postgresql://u:p@pooler:6432/db";

    #[test]
    fn prepared_statements_through_the_pooler_are_asked_for_explicitly() {
        let pooled = |setting: Option<&str>| {
            let mut pairs = vec![("DATABASE_URL", POOLED), ("DB_POOLER", "transaction")];
            pairs.extend(setting.map(|v| (POOLER_PREPARED_STATEMENTS_VAR, v)));
            from_pairs(&pairs).map(|t| t.pooled_statements)
        };
        assert_eq!(pooled(None).unwrap(), PooledStatements::Inlined);
        assert_eq!(pooled(Some("")).unwrap(), PooledStatements::Inlined);
        assert_eq!(pooled(Some("false")).unwrap(), PooledStatements::Inlined);
        assert_eq!(pooled(Some("true")).unwrap(), PooledStatements::Prepared);
        assert_eq!(pooled(Some(" true ")).unwrap(), PooledStatements::Prepared);
        let err = pooled(Some("yes")).unwrap_err().to_string();
        assert!(
            err.contains("DB_POOLER_PREPARED_STATEMENTS") && err.contains("expected true or false"),
            "{err}"
        );
        let flagged = from_pairs(&[
            (
                "DATABASE_URL",
                "postgresql://u:p@pooler:6432/db?pgbouncer=true",
            ),
            (POOLER_PREPARED_STATEMENTS_VAR, "true"),
        ])
        .unwrap();
        assert_eq!(
            (flagged.pooler, flagged.pooled_statements),
            (Pooler::Transaction, PooledStatements::Prepared)
        );
        // Both spellings of the pooler, agreeing, are no contradiction.
        let both = from_pairs(&[
            (
                "DATABASE_URL",
                "postgresql://u:p@pooler:6432/db?pgbouncer=true",
            ),
            ("DB_POOLER", "transaction"),
            (POOLER_PREPARED_STATEMENTS_VAR, "true"),
        ])
        .unwrap();
        assert_eq!(both.pooled_statements, PooledStatements::Prepared);
        assert_eq!(
            Topology::for_url(url(POOLED)).pooled_statements,
            PooledStatements::Inlined
        );
    }

    #[test]
    fn prepared_statements_without_a_transaction_pooler_are_refused_naming_both_settings() {
        for pooler in [None, Some("none"), Some("session")] {
            let mut pairs = vec![
                ("DATABASE_URL", POOLED),
                (POOLER_PREPARED_STATEMENTS_VAR, "true"),
            ];
            pairs.extend(pooler.map(|v| (DB_POOLER_VAR, v)));
            let err = from_pairs(&pairs).unwrap_err().to_string();
            assert!(
                err.contains("DB_POOLER_PREPARED_STATEMENTS")
                    && err.contains("set DB_POOLER=transaction"),
                "{pooler:?}: {err}"
            );
        }
        let off = from_pairs(&[
            ("DATABASE_URL", POOLED),
            (POOLER_PREPARED_STATEMENTS_VAR, "false"),
        ]);
        assert_eq!(off.unwrap().pooled_statements, PooledStatements::Inlined);
    }

    #[test]
    fn with_prepared_statements_sessions_and_migrations_still_need_a_direct_url() {
        let t = from_pairs(&[
            ("DATABASE_URL", POOLED),
            ("DB_POOLER", "transaction"),
            (POOLER_PREPARED_STATEMENTS_VAR, "true"),
        ])
        .unwrap();
        assert_eq!(t.session_url("LISTEN").unwrap_err().var, DIRECT_URL_VAR);
        assert_eq!(t.migration_url().unwrap_err().var, MIGRATION_URL_VAR);
        assert_eq!(t.replica_pooler(), Pooler::Transaction);
    }

    #[test]
    fn the_modes_read_as_their_settings() {
        assert_eq!(PooledStatements::Inlined.to_string(), "inlined");
        assert_eq!(PooledStatements::Prepared.to_string(), "prepared");
        assert_eq!(Pooler::None.to_string(), "none");
        assert_eq!(Pooler::Transaction.to_string(), "transaction");
    }
}
