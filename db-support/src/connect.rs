//! Opening a SeaORM connection pool from a validated URL and pool settings.

use sea_orm::{
    ConnectOptions, Database, DatabaseConnection, DbErr, sqlx::postgres::PgConnectOptions,
};
use secrecy::ExposeSecret;

use crate::config::{DatabaseUrl, PoolSettings};

/// The options SeaORM needs for `url` with `settings`. Statement logging stays off: services
/// log through `tracing` at their own level, and a statement can carry data we must not print.
///
/// sqlx's `extra_float_digits` startup parameter is left out: PostgreSQL 12 and later print
/// floats exactly without it, and PgBouncer refuses a connection that sends it (unless its
/// `ignore_startup_parameters` lists it), so a URL pointing at a pooler fails nowhere but where
/// a statement really cannot work there.
pub fn connect_options(url: &DatabaseUrl, settings: &PoolSettings) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.expose().expose_secret().to_owned());
    options
        .map_sqlx_postgres_opts(driver_options)
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .connect_timeout(settings.connect_timeout)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
        .sqlx_logging(false);
    options
}

/// What every connection of the workspace changes in sqlx's options: `extra_float_digits` is
/// left out (see [`connect_options`]). For connections opened with sqlx directly.
pub fn driver_options(options: PgConnectOptions) -> PgConnectOptions {
    options.extra_float_digits(None)
}

/// A pool for `url`; its first connection opens now, so a wrong URL or a down server fails here.
pub async fn connect(
    url: &DatabaseUrl,
    settings: &PoolSettings,
) -> Result<DatabaseConnection, DbErr> {
    Database::connect(connect_options(url, settings)).await
}
