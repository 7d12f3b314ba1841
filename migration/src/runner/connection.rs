//! The runner's connections. Each is opened here, outside any application pool, with settings
//! that stay correct when the URL turns out to be a transaction-mode pooler nobody flagged:
//! no prepared statement is ever reused across transactions (statement cache off), and the
//! apply connection removes the ones a transaction created before it ends (`DEALLOCATE ALL`),
//! so no other client of a shared server session ever meets them.

use std::{str::FromStr, time::Duration};

use db_connect::DatabaseUrl;
use sea_orm::{
    DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector,
    sqlx::{
        self, ConnectOptions, Connection, PgConnection,
        postgres::{PgConnectOptions, PgPoolOptions},
    },
};
use secrecy::ExposeSecret;

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

pub(crate) fn connect_error(url: &DatabaseUrl, source: DbErr) -> super::RunError {
    super::RunError::Connect {
        url: url.to_string(),
        source,
    }
}

fn sqlx_error(err: sqlx::Error) -> DbErr {
    DbErr::Conn(RuntimeErr::SqlxError(err.into()))
}

/// Driver options for `url` as `role`: the URL's own `application_name` wins; statement logging
/// only at TRACE (what `migration lint` listens to), never as a slow-statement warning.
pub(crate) fn options(url: &DatabaseUrl, role: Role) -> Result<PgConnectOptions, DbErr> {
    let parsed = PgConnectOptions::from_str(url.expose().expose_secret())
        .map_err(|_| DbErr::Custom(format!("the driver cannot parse {url}")))?;
    let mut options = db_connect::connect::driver_options(parsed).statement_cache_capacity(0);
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

/// A connection of its own, outside any pool: nothing closes it behind the runner's back.
pub(crate) async fn dedicated(url: &DatabaseUrl, role: Role) -> Result<PgConnection, DbErr> {
    PgConnection::connect_with(&options(url, role)?)
        .await
        .map_err(sqlx_error)
}

/// A SeaORM connection over a pool of one, which migrations need (`SchemaManager`). The pool
/// neither idles nor ages its connection out; should it reconnect, nothing is lost, since every
/// setting lives in a transaction or in `startup` (given as connection options).
pub(crate) async fn single(
    url: &DatabaseUrl,
    role: Role,
    startup: &[(&str, String)],
) -> Result<DatabaseConnection, DbErr> {
    let mut options = options(url, role)?;
    if !startup.is_empty() {
        options = options.options(startup.iter().map(|(k, v)| (*k, v)));
    }
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .idle_timeout(None)
        .max_lifetime(None)
        .acquire_timeout(Duration::from_secs(30))
        .connect_with(options)
        .await
        .map_err(sqlx_error)?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
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
