//! What every backend service imports: [`connect`] for a pooled connection from the environment,
//! and the query helpers by domain. Every helper takes any connection or transaction
//! (`&impl ConnectionTrait`), so callers compose several in one transaction, and returns the
//! typed [`Error`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), service::Error> {
//! use service::{events, events::SlackEvents};
//! let db = service::connect().await?;
//! let claimed = events::claim::<SlackEvents>(&db, 10).await?;
//! # Ok(()) }
//! ```

pub use db_support::{ConfigError, DatabaseUrl, PoolSettings};
pub use sea_orm::{DatabaseConnection, DbErr};

pub mod agents;
pub mod auth;
mod error;
pub mod events;
pub mod integrations;
pub mod organizations;
mod page;
mod redact;
mod secret;
mod sql;
pub mod tools;
pub mod worker;

pub use error::{Error, sqlstate};
pub use page::{Cursor, HasCursor, Page};
pub use secret::EncryptedToken;

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
