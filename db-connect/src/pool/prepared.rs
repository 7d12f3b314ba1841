//! The pool through a transaction-mode pooler that tracks protocol-level prepared statements
//! (PgBouncer 1.21+ with `max_prepared_statements` > 0): SeaORM's own path, as directly, with
//! bound parameters and sqlx's statement cache. The pooler prepares each named statement on
//! whatever server session runs it, under a name of its own (`PGBOUNCER_1`), so a `Bind` never
//! meets another client's statement. A transaction is sqlx's `BEGIN` ... `COMMIT` on one client
//! connection, which the pooler keeps on one server session until it ends; a transaction dropped
//! unfinished queues its `ROLLBACK`, which sqlx sends before the connection serves anyone else.
//!
//! Whether the pooler really keeps them is checked once, when the pool opens: a statement
//! prepared inside a transaction is looked up in `pg_prepared_statements` of that very server
//! session. A pooler that tracks them has renamed it; one that passes names through (PgBouncer
//! before 1.21, or with `max_prepared_statements = 0`), like PostgreSQL itself, shows the
//! driver's own name, and the pool refuses to open.

use sea_orm::sqlx;
use sqlx::{Connection, postgres::PgPool};

use super::Pool;
use crate::{
    config::{DatabaseUrl, PoolSettings},
    connect::{Cause, ConnectError, Opening, open_pool, pool_options},
    topology::{POOLER_PREPARED_STATEMENTS_VAR, PooledStatements, Pooler},
};

/// The statement the check prepares; its text finds it in `pg_prepared_statements`.
const PROBE: &str = "SELECT 1 AS db_connect_prepared_statement_probe";
/// How sqlx names the statements it prepares (`sqlx_s_1`, `sqlx_s_2`, ...).
const DRIVER_PREFIX: &str = "sqlx_s_";

/// The pooler in front of a URL does not keep prepared statements across server sessions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{POOLER_PREPARED_STATEMENTS_VAR}=true, but the pooler in front of {url} does not keep prepared statements: {seen}; \
     so it passes statement names through (PgBouncer before 1.21, or max_prepared_statements = 0) or is no pooler at all. \
     Set max_prepared_statements (e.g. 200) in PgBouncer 1.21 or later, or unset {POOLER_PREPARED_STATEMENTS_VAR} to send values inlined"
)]
pub struct PreparedStatementsNotKept {
    /// The URL, password masked.
    pub url: String,
    /// What the check saw on the server session.
    pub seen: String,
}

impl Pool {
    /// A pool for `url` through a transaction-mode pooler that keeps prepared statements (see
    /// the module documentation), checked now: its first connection opens, and a pooler that
    /// passes prepared statements through is refused with [`PreparedStatementsNotKept`].
    pub async fn connect_prepared(
        url: &DatabaseUrl,
        settings: &PoolSettings,
    ) -> Result<Self, ConnectError> {
        // No ping before each statement, for the same reason as the inlined pool (`Pool::open`).
        let pool = pool_options(settings).test_before_acquire(false);
        let conn = open_pool(
            url,
            pool,
            Opening::Now(settings.connect_timeout),
            |options| options,
        )
        .await?;
        let pool = Self {
            conn,
            pooler: Pooler::Transaction,
            statements: PooledStatements::Prepared,
        };
        match check(pool.sqlx(), url).await {
            Ok(()) => Ok(pool),
            Err(err) => {
                pool.close().await.ok();
                Err(err)
            }
        }
    }

    /// A pool for `url` through `pooler`, with statements crossing a transaction pooler as
    /// `statements` says ([`Pool::connect`] or [`Pool::connect_prepared`]).
    pub async fn connect_through(
        url: &DatabaseUrl,
        pooler: Pooler,
        statements: PooledStatements,
        settings: &PoolSettings,
    ) -> Result<Self, ConnectError> {
        match (pooler, statements) {
            (Pooler::Transaction, PooledStatements::Prepared) => {
                Self::connect_prepared(url, settings).await
            }
            _ => Self::connect(url, pooler, settings).await,
        }
    }
}

/// Prepares [`PROBE`] inside a transaction and reads, in the same transaction (so on the same
/// server session), the names it has there; closes it again, so nothing is left behind on a
/// pooler that passes it through.
async fn check(pool: &PgPool, url: &DatabaseUrl) -> Result<(), ConnectError> {
    let names = match prepared_names(pool).await {
        Ok(names) => names,
        Err(err) => return Err(ConnectError::classify(url, err).await),
    };
    verdict(&names).map_err(|seen| {
        let refused = PreparedStatementsNotKept {
            url: url.to_string(),
            seen,
        };
        ConnectError::new(Cause::PreparedStatementsNotKept, url, refused.to_string())
    })
}

/// The names under which the server session of one transaction holds [`PROBE`].
async fn prepared_names(pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    let mut txn = conn.begin().await?;
    sqlx::query(PROBE).execute(&mut *txn).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT name FROM pg_prepared_statements WHERE statement = $1")
            .bind(PROBE)
            .persistent(false)
            .fetch_all(&mut *txn)
            .await?;
    txn.clear_cached_statements().await?;
    txn.rollback().await?;
    Ok(names)
}

/// Kept when the server session holds the statement, and only under names the driver did not
/// give it; otherwise what was seen instead.
fn verdict(names: &[String]) -> Result<(), String> {
    if names.is_empty() {
        return Err(
            "the server session of the transaction that prepared a statement does not hold it"
                .to_owned(),
        );
    }
    match names.iter().find(|name| name.starts_with(DRIVER_PREFIX)) {
        Some(name) => Err(format!(
            "the server session holds the driver's statement under the driver's own name {name}"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    #[test]
    fn only_a_statement_renamed_on_the_server_session_is_kept() {
        assert_eq!(verdict(&names(&["PGBOUNCER_12"])), Ok(()));
        assert_eq!(verdict(&names(&["PGBOUNCER_3", "PGBOUNCER_9"])), Ok(()));
        let passed = verdict(&names(&["sqlx_s_1"])).unwrap_err();
        assert!(passed.contains("own name sqlx_s_1"), "{passed}");
        let mixed = verdict(&names(&["PGBOUNCER_1", "sqlx_s_4"])).unwrap_err();
        assert!(mixed.contains("sqlx_s_4"), "{mixed}");
        let missing = verdict(&[]).unwrap_err();
        assert!(missing.contains("does not hold it"), "{missing}");
    }

    #[test]
    fn the_refusal_names_the_setting_and_the_pooler_setting() {
        let err = PreparedStatementsNotKept {
            url: "postgresql://app:****@pooler:6432/app".to_owned(),
            seen: "the server session holds it under sqlx_s_1".to_owned(),
        }
        .to_string();
        for part in [
            "DB_POOLER_PREPARED_STATEMENTS=true",
            "postgresql://app:****@pooler:6432/app",
            "max_prepared_statements",
            "unset DB_POOLER_PREPARED_STATEMENTS",
            "sqlx_s_1",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
    }
}
