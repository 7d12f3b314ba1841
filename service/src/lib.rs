//! What every backend service imports: [`connect`] for a pooled connection from the environment,
//! and the query helpers by domain, each taking any connection or transaction.

pub use db_support::{ConfigError, DatabaseUrl, PoolSettings};
pub use sea_orm::{DatabaseConnection, DbErr};

/// Everything a helper of this crate can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("could not connect to {url}: {source}")]
    Connect {
        /// The URL with its password masked.
        url: String,
        #[source]
        source: DbErr,
    },
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

/// A connection pool for `DATABASE_URL` (from the environment or `.env`), sized and timed by the
/// `DB_*` variables of [`PoolSettings`].
pub async fn connect() -> Result<DatabaseConnection, Error> {
    let url = DatabaseUrl::require_env()?;
    connect_to(&url, &PoolSettings::from_env()?).await
}

/// A connection pool for `url` with `settings`.
pub async fn connect_to(
    url: &DatabaseUrl,
    settings: &PoolSettings,
) -> Result<DatabaseConnection, Error> {
    db_support::connect(url, settings)
        .await
        .map_err(|source| Error::Connect {
            url: url.to_string(),
            source,
        })
}
