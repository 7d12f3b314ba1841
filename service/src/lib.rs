//! What every backend service imports: [`connect`] for the database of the environment (directly
//! or through a transaction-mode pooler, with an optional read replica: see [`Db`]), and the
//! query helpers by domain. Every helper takes any connection or transaction
//! (`&impl ConnectionTrait`), so callers compose several in one transaction, and returns the
//! typed [`Error`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), service::Error> {
//! use service::{events, events::SlackEvents};
//! let db = service::connect().await?;
//! let claimed = events::claim::<SlackEvents>(&db, "org_acme", 10).await?;
//! # Ok(()) }
//! ```

pub use db_connect::{ConfigError, DatabaseUrl, Pool, PoolSettings, PoolTransaction, Topology};
pub use sea_orm::{DatabaseConnection, DbErr};

pub mod agents;
pub mod auth;
mod error;
pub mod events;
pub mod integrations;
pub mod organizations;
mod page;
mod redact;
pub mod routing;
mod secret;
mod sql;
pub mod tenant;
pub mod tools;
pub mod worker;

pub use error::{Error, sqlstate};
pub use page::{Cursor, HasCursor, Page};
pub use routing::{Db, Reads, ReplicaState};
pub use secret::EncryptedToken;

/// The database of the environment (or `.env`): `DATABASE_URL`, through a transaction-mode
/// pooler when `DB_POOLER=transaction` (or `pgbouncer=true`), with the streaming replica of
/// `DATABASE_REPLICA_URL` for [`Db::reads`]; pools sized and timed by the `DB_*` variables of
/// [`PoolSettings`].
pub async fn connect() -> Result<Db, Error> {
    let topology = Topology::from_env()?.ok_or_else(|| ConfigError::NotSet {
        var: db_connect::config::DATABASE_URL_VAR.to_owned(),
    })?;
    connect_with(&topology, &PoolSettings::from_env()?).await
}

/// The database of `topology` with `settings`.
pub async fn connect_with(topology: &Topology, settings: &PoolSettings) -> Result<Db, Error> {
    Db::connect(topology, settings)
        .await
        .map_err(|source| Error::Connect {
            url: topology.application.to_string(),
            source,
        })
}

/// The database of `url` alone (through a transaction-mode pooler when it says
/// `pgbouncer=true`), with `settings`.
pub async fn connect_to(url: &DatabaseUrl, settings: &PoolSettings) -> Result<Db, Error> {
    connect_with(&Topology::for_url(url.clone()), settings).await
}
