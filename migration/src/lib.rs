//! The schema of `docs/schema.md` as ordered SeaORM migrations, and a runner that applies them
//! under a PostgreSQL advisory lock with per-migration progress.
//!
//! A service migrates at start-up with [`apply_pending`]; the `migration` CLI (the default `cli`
//! feature) adds the lint, the seed and the local cluster, which a service built with
//! `default-features = false` does not link.

pub use sea_orm_migration::prelude::*;

use db_connect::DatabaseUrl;

pub mod conventions;
#[cfg(feature = "cli")]
pub mod lint;
pub mod runner;

mod m20261129_000001_foundation;
mod m20261129_000002_auth_core;
pub mod m20261129_000003_organizations;
mod m20261129_000004_two_factor;
pub mod m20261129_000005_integrations;
pub mod m20261129_000006_events;
pub mod m20261129_000007_tools;
pub mod m20261129_000008_agents;
mod m20261129_000009_service_support;
mod m20261130_000001_event_workers;
pub mod m20261201_000001_tenant_keys_expand;
mod m20261201_000002_tenant_keys_backfill;
pub mod m20261201_000003_tenant_keys_swap;
mod m20261201_000004_tenant_keys_contract;
pub mod m20261201_000005_citus_distribution;
mod m20261207_000001_tenant_isolation;
pub mod tenancy;

/// The migrations in the order they apply: each domain after the ones it references.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_foundation::Migration),
            Box::new(m20261129_000002_auth_core::Migration),
            Box::new(m20261129_000003_organizations::Migration),
            Box::new(m20261129_000004_two_factor::Migration),
            Box::new(m20261129_000005_integrations::Migration),
            Box::new(m20261129_000006_events::Migration),
            Box::new(m20261129_000007_tools::Migration),
            Box::new(m20261129_000008_agents::Migration),
            Box::new(m20261129_000009_service_support::Migration),
            Box::new(m20261130_000001_event_workers::Migration),
            Box::new(m20261201_000001_tenant_keys_expand::Migration),
            Box::new(m20261201_000002_tenant_keys_backfill::Migration),
            Box::new(m20261201_000003_tenant_keys_swap::Migration),
            Box::new(m20261201_000004_tenant_keys_contract::Migration),
            Box::new(m20261201_000005_citus_distribution::Migration),
            Box::new(m20261207_000001_tenant_isolation::Migration),
        ]
    }
}

/// Applies every pending migration to `url`, the call a service makes at start-up, and returns
/// the names of those it applied (none when the schema is current).
///
/// It holds the runner's migration lock (a transaction-scoped advisory lock on a connection of
/// its own) for the whole run, so a fleet of replicas starting at once applies each migration
/// exactly once: the others wait, then find nothing left to do. Each migration runs with
/// `lock_timeout` (and retries) from [`runner::RunOptions::default`], so a busy table delays the
/// start-up instead of stalling its traffic behind an `ALTER TABLE`. sea-orm-migration's own
/// `Migrator::up` takes no lock and sets no timeout: two replicas running it at once race on the
/// same migration. Give it the direct (or migration) URL, never a transaction-mode pooler's:
/// `Topology::migration_url` picks it.
///
/// ```no_run
/// # async fn start() -> Result<(), Box<dyn std::error::Error>> {
/// let topology = db_connect::Topology::from_env()?.ok_or("DATABASE_URL is not set")?;
/// for name in migration::apply_pending(topology.migration_url()?).await? {
///     tracing::info!(%name, "applied");
/// }
/// # Ok(())
/// # }
/// ```
pub async fn apply_pending(url: &DatabaseUrl) -> Result<Vec<String>, runner::RunError> {
    apply_pending_with(url, &runner::RunOptions::default()).await
}

/// [`apply_pending`] with the caller's timeouts and retries (e.g.
/// [`runner::RunOptions::from_env`], which reads the `MIGRATION_*` variables).
pub async fn apply_pending_with(
    url: &DatabaseUrl,
    options: &runner::RunOptions,
) -> Result<Vec<String>, runner::RunError> {
    let mut applied = Vec::new();
    runner::run_with::<Migrator>(url, runner::Action::Up(None), options, |step| {
        if let runner::Progress::Applied { name, .. } = step {
            applied.push(name);
        }
    })
    .await?;
    Ok(applied)
}
