//! The runner's connections. Each is opened here, outside any application pool, with settings
//! that stay correct when the URL turns out to be a transaction-mode pooler nobody flagged:
//! no prepared statement is ever reused across transactions (statement cache off), and the
//! apply connection removes the ones a transaction created before it ends (`DEALLOCATE ALL`),
//! so no other client of a shared server session ever meets them.

use std::time::Duration;

use db_connect::{
    ConnectError, DatabaseUrl, Opening,
    connect::{driver_connect_options, open_connection, open_pool},
};
use sea_orm::{
    DatabaseConnection, DbErr, RuntimeErr,
    sqlx::{
        ConnectOptions,
        postgres::{PgConnectOptions, PgConnection, PgPoolOptions},
    },
};

/// Which connection of a run, shown as `application_name` to anyone reading `pg_stat_activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// Holds the migration lock for the whole run.
    Lock,
    /// Applies transactional migrations and records every migration.
    Apply,
    /// Runs one non-transactional migration with its timeouts set for the session.
    Session,
    /// Looks up who blocks a migration waiting for a lock.
    Watch,
}

impl Role {
    pub(crate) fn application_name(self) -> &'static str {
        match self {
            Self::Lock => "migration lock",
            Self::Apply => "migration",
            Self::Session => "migration session",
            Self::Watch => "migration watch",
        }
    }
}

/// Driver options for `url` as `role`: the URL's own `application_name` wins; statement logging
/// only at TRACE (what `migration lint` listens to), never as a slow-statement warning.
pub(crate) fn options(url: &DatabaseUrl, role: Role) -> Result<PgConnectOptions, ConnectError> {
    let mut options = driver_connect_options(url)?.statement_cache_capacity(0);
    if options.get_application_name().is_none() {
        options = options.application_name(role.application_name());
    }
    Ok(match role {
        Role::Apply | Role::Session => options
            .log_statements(log::LevelFilter::Trace)
            .log_slow_statements(log::LevelFilter::Off, Duration::MAX),
        Role::Lock | Role::Watch => options.disable_statement_logging(),
    })
}

/// A connection of its own, outside any pool: nothing closes it behind the runner's back. It is
/// given `within` to answer; a failure names its cause.
pub(crate) async fn dedicated(
    url: &DatabaseUrl,
    role: Role,
    within: Duration,
) -> Result<PgConnection, ConnectError> {
    open_connection(url, &options(url, role)?, within).await
}

/// A SeaORM connection over a pool of one, which migrations need (`SchemaManager`), its first
/// connection open (within `within`). The pool neither idles nor ages its connection out;
/// should it reconnect, nothing is lost, since every setting lives in a transaction or in
/// `startup` (given as connection options).
pub(crate) async fn single(
    url: &DatabaseUrl,
    role: Role,
    startup: &[(&str, String)],
    within: Duration,
) -> Result<DatabaseConnection, ConnectError> {
    let mut options = options(url, role)?;
    if !startup.is_empty() {
        options = options.options(startup.iter().map(|(k, v)| (*k, v)));
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(30));
    open_pool(url, pool, Opening::Now(within), |_| options).await
}

/// The SQLSTATE of a database error, if it came from the server.
pub(crate) fn sqlstate(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|db| db.code())
            .map(|code| code.into_owned()),
        _ => None,
    }
}

/// `55P03 lock_not_available`: `lock_timeout` expired (or a `NOWAIT` lock was taken).
pub(crate) fn is_lock_timeout(err: &DbErr) -> bool {
    sqlstate(err).as_deref() == Some("55P03")
}
