//! How a service reaches PostgreSQL, and nothing more: the environment read once
//! ([`settings`]), a validated, redacted `DATABASE_URL` with pool settings ([`config`]), first
//! connections that fail fast naming their cause ([`connect`]), the deployment's topology
//! (pooler, direct, migration and replica URLs: [`topology`]), the pool every service holds,
//! which stays correct behind a transaction-mode pooler ([`pool`], [`inline`]), and the one rule
//! of which columns and JSON keys are secret ([`secrets`]). Starting servers (local clusters,
//! PgBouncer, replicas) is the `dev-servers` crate's, which services never link.

pub mod config;
pub mod connect;
pub mod inline;
pub mod pool;
pub mod secrets;
pub mod settings;
pub mod topology;

pub use config::{ConfigError, DatabaseUrl, PoolSettings};
pub use connect::{Cause, ConnectError, Opening, connect};
pub use pool::{Pool, PoolTransaction};
pub use settings::Settings;
pub use topology::{NeedsDirectUrl, PooledStatements, Pooler, Topology};
