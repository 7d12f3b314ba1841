//! The schema of `docs/schema.md` as ordered SeaORM migrations, and a runner that applies them
//! under a PostgreSQL advisory lock with per-migration progress.

pub use sea_orm_migration::prelude::*;

pub mod conventions;
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
        ]
    }
}
