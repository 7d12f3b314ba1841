//! What every crate of the workspace needs before it can talk to PostgreSQL: a validated,
//! redacted `DATABASE_URL` with pool settings ([`config`]) and, when no server is configured,
//! a PostgreSQL cluster started from the installed binaries ([`cluster`]), and the one rule of
//! which columns and JSON keys are secret ([`secrets`]).

pub mod cluster;
pub mod config;
pub mod connect;
pub mod inline;
pub mod pool;
pub mod secrets;
pub mod topology;

pub use cluster::{
    ClusterError, LocalCluster, PgBinaries, PgBouncer, PgBouncerSettings, Replica,
    ThrowawayCluster, database_url_or_local,
};
pub use config::{ConfigError, DatabaseUrl, PoolSettings};
pub use connect::connect;
pub use pool::{Pool, PoolTransaction};
pub use topology::{NeedsDirectUrl, Pooler, Topology};
