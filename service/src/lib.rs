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

pub use db_connect::{
    Cause, ConfigError, ConnectError, DatabaseUrl, Pool, PoolSettings, PoolTransaction, Settings,
    Topology,
};
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

/// The database of the environment (or `.env`, read by [`Settings::from_env`]): `DATABASE_URL`,
/// through a transaction-mode pooler when `DB_POOLER=transaction` (or `pgbouncer=true`), with the
/// streaming replica of `DATABASE_REPLICA_URL` for [`Db::reads`]; pools sized and timed by the
/// `DB_*` variables of [`PoolSettings`]. The primary's first connection opens now: a wrong URL
/// or a server that is down is an [`Error::Connect`] naming the cause, within the connect
/// timeout, not a hang at the first request.
pub async fn connect() -> Result<Db, Error> {
    let settings = Settings::from_env()?;
    connect_with(settings.topology()?, &settings.pool).await
}

/// Like [`connect`], but no connection opens until the first statement: for a service that
/// must start while the database is down, and accepts that a wrong URL then shows only as the
/// first statement's acquire timeout.
pub async fn connect_lazy() -> Result<Db, Error> {
    let settings = Settings::from_env()?;
    Ok(Db::connect_lazy(settings.topology()?, &settings.pool).await?)
}

/// The database of `topology` with `settings`; the primary's first connection opens now.
pub async fn connect_with(topology: &Topology, settings: &PoolSettings) -> Result<Db, Error> {
    Ok(Db::connect(topology, settings).await?)
}

/// The database of `url` alone (through a transaction-mode pooler when it says
/// `pgbouncer=true`), with `settings`.
pub async fn connect_to(url: &DatabaseUrl, settings: &PoolSettings) -> Result<Db, Error> {
    connect_with(&Topology::for_url(url.clone()), settings).await
}
