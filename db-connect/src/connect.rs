//! Opening a SeaORM connection pool from a validated URL and pool settings.
//!
//! The pool is sqlx's, built here and handed to SeaORM whole: the password goes from the
//! [`DatabaseUrl`]'s secret straight into sqlx's `PgConnectOptions`, which nothing prints. (SeaORM's
//! own `Database::connect` takes a `ConnectOptions` holding the URL, and records its `Debug`, the
//! password included, in a TRACE span: visible to any subscriber that records span fields.)

use std::str::FromStr;

use sea_orm::{
    DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector,
    sqlx::{
        ConnectOptions as _,
        postgres::{PgConnectOptions, PgPoolOptions},
    },
};
use secrecy::ExposeSecret;

use crate::config::{DatabaseUrl, PoolSettings};

/// The driver's options for `url`. Statement logging stays off: services log through `tracing`
/// at their own level, and a statement can carry data we must not print.
///
/// sqlx's `extra_float_digits` startup parameter is left out: PostgreSQL 12 and later print
/// floats exactly without it, and PgBouncer refuses a connection that sends it (unless its
/// `ignore_startup_parameters` lists it), so a URL pointing at a pooler fails nowhere but where
/// a statement really cannot work there.
pub fn driver_connect_options(url: &DatabaseUrl) -> Result<PgConnectOptions, DbErr> {
    let options = PgConnectOptions::from_str(url.expose().expose_secret()).map_err(|_| {
        DbErr::Conn(RuntimeErr::Internal(format!(
            "the driver cannot read {url}"
        )))
    })?;
    Ok(driver_options(options).disable_statement_logging())
}

/// What every connection of the workspace changes in sqlx's options: `extra_float_digits` is
/// left out (see [`driver_connect_options`]). For connections opened with sqlx directly.
pub fn driver_options(options: PgConnectOptions) -> PgConnectOptions {
    options.extra_float_digits(None)
}

/// sqlx's pool options for `settings`, as SeaORM would set them (SeaORM gives both its connect
/// and acquire timeouts to sqlx's one acquire timeout, which also bounds opening a connection;
/// the acquire timeout wins).
pub fn pool_options(settings: &PoolSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
}

/// A pool for `url`; its first connection opens now, so a wrong URL or a down server fails here.
pub async fn connect(
    url: &DatabaseUrl,
    settings: &PoolSettings,
) -> Result<DatabaseConnection, DbErr> {
    open_pool(url, pool_options(settings), false, |options| options).await
}

/// A pool for `url` with the pool options `pool` (usually [`pool_options`]) and the driver
/// options `adjust` makes of the workspace's ([`driver_connect_options`]); with `lazy`, no
/// connection opens until the first statement.
pub async fn open_pool(
    url: &DatabaseUrl,
    pool: PgPoolOptions,
    lazy: bool,
    adjust: impl FnOnce(PgConnectOptions) -> PgConnectOptions,
) -> Result<DatabaseConnection, DbErr> {
    let options = adjust(driver_connect_options(url)?);
    let pool = match lazy {
        true => pool.connect_lazy_with(options),
        false => pool
            .connect_with(options)
            .await
            .map_err(|err| DbErr::Conn(RuntimeErr::SqlxError(err.into())))?,
    };
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}
