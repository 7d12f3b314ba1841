//! On a Citus coordinator, distributes the schema: the tenant tables by `organization_id` in one
//! co-location group, the small shared tables (`users`, `organizations`, `tools`,
//! `webhook_routes`) as reference tables on every node, and the user-scoped Better Auth tables
//! (`sessions`, `accounts`, `two_factors`) with `user_tools` as Citus local tables on the
//! coordinator (their foreign keys to the reference tables stay). `verifications` and
//! `unrouted_events` stay plain tables. On PostgreSQL without Citus, and on a Citus worker, it
//! does nothing.
//!
//! The order is the one that works (docs/schema.md): the foreign keys between tenant tables
//! are dropped first (a local table may not reference a distributed one nor the reverse, so
//! whichever side went first would break them), reference tables next, then the tenant tables
//! parents first, then those keys again, created by Citus shard by shard. Each call is skipped
//! for a table already placed, so the step can run again. After it, every migration sends one
//! DDL statement per `execute` (`docs/migrations.md`).

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DbBackend, Statement},
};

use crate::m20261201_000003_tenant_keys_swap::{TENANT_KEYS, TENANT_TABLES};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Replicated to every node: small, read everywhere, written rarely.
pub const REFERENCE_TABLES: [&str; 4] = ["users", "organizations", "tools", "webhook_routes"];
/// On the coordinator, in Citus's metadata so their keys to reference tables stay.
pub const COORDINATOR_TABLES: [&str; 4] = ["sessions", "accounts", "two_factors", "user_tools"];
/// The distribution column of every tenant table.
pub const DISTRIBUTION_COLUMN: &str = "organization_id";

async fn query_bool(manager: &SchemaManager<'_>, sql: &str) -> Result<bool, DbErr> {
    manager
        .get_connection()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("`{sql}` returned no row")))?
        .try_get_by_index(0)
}

/// Whether this database is a Citus coordinator: the extension is installed and this node is
/// not a worker.
pub async fn on_citus_coordinator(manager: &SchemaManager<'_>) -> Result<bool, DbErr> {
    if !query_bool(
        manager,
        "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus')",
    )
    .await?
    {
        return Ok(false);
    }
    query_bool(manager, "SELECT citus_is_coordinator()").await
}

/// How Citus places `table` (`h` hash-distributed, `n` reference or local, per
/// `pg_dist_partition`), `None` for a plain table.
async fn placement(manager: &SchemaManager<'_>, table: &str) -> Result<Option<String>, DbErr> {
    manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT partmethod::text || CASE WHEN repmodel = 't' THEN 'r' ELSE '' END
             FROM pg_dist_partition WHERE logicalrelid = to_regclass(quote_ident($1))",
            [table.into()],
        ))
        .await?
        .map(|row| row.try_get_by_index::<String>(0))
        .transpose()
}

async fn execute(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(drop)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !on_citus_coordinator(manager).await? {
            return Ok(());
        }
        let mut pending = Vec::new();
        for table in TENANT_TABLES {
            if placement(manager, table).await?.is_none() {
                pending.push(table);
            }
        }
        // One connection per node for the whole transaction: DDL on reference and distributed
        // tables may then mix in it.
        execute(
            manager,
            "SET LOCAL citus.multi_shard_modify_mode TO 'sequential'",
        )
        .await?;
        if !pending.is_empty() {
            for key in &TENANT_KEYS {
                execute(
                    manager,
                    &format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                        key.table,
                        key.name()
                    ),
                )
                .await?;
            }
        }
        for table in REFERENCE_TABLES {
            if placement(manager, table).await?.as_deref() != Some("nr") {
                execute(
                    manager,
                    &format!("SELECT create_reference_table('{table}')"),
                )
                .await?;
            }
        }
        for table in COORDINATOR_TABLES {
            // Creating the reference tables turned these into Citus local tables already
            // (`autoconverted`); adding them explicitly pins them, so that Citus never turns
            // them back into plain tables when a foreign key changes.
            let pinned = placement(manager, table).await?.is_some()
                && !query_bool(
                    manager,
                    &format!(
                        "SELECT autoconverted FROM pg_dist_partition WHERE logicalrelid = '{table}'::regclass"
                    ),
                )
                .await?;
            if !pinned {
                execute(
                    manager,
                    &format!("SELECT citus_add_local_table_to_metadata('{table}')"),
                )
                .await?;
            }
        }
        // Co-located with the first tenant table distributed; the first starts the group
        // (its shard count is `citus.shard_count`).
        let mut anchor = TENANT_TABLES
            .into_iter()
            .find(|table| !pending.contains(table));
        for table in pending.iter().copied() {
            execute(
                manager,
                &format!(
                    "SELECT create_distributed_table('{table}', '{DISTRIBUTION_COLUMN}', colocate_with => '{}')",
                    anchor.unwrap_or("none")
                ),
            )
            .await?;
            anchor = anchor.or(Some(table));
        }
        if !pending.is_empty() {
            for key in &TENANT_KEYS {
                execute(
                    manager,
                    &format!(
                        "ALTER TABLE {} ADD CONSTRAINT {} {}",
                        key.table,
                        key.name(),
                        key.composite()
                    ),
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !on_citus_coordinator(manager).await? {
            return Ok(());
        }
        execute(
            manager,
            "SET LOCAL citus.multi_shard_modify_mode TO 'sequential'",
        )
        .await?;
        for key in &TENANT_KEYS {
            execute(
                manager,
                &format!(
                    "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                    key.table,
                    key.name()
                ),
            )
            .await?;
        }
        for table in TENANT_TABLES.iter().rev() {
            if placement(manager, table).await?.is_some() {
                execute(manager, &format!("SELECT undistribute_table('{table}')")).await?;
            }
        }
        for table in REFERENCE_TABLES.iter().chain(&COORDINATOR_TABLES) {
            if placement(manager, table).await?.is_some() {
                execute(
                    manager,
                    &format!(
                        "SELECT undistribute_table('{table}', cascade_via_foreign_keys => true)"
                    ),
                )
                .await?;
            }
        }
        for key in &TENANT_KEYS {
            execute(
                manager,
                &format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {}",
                    key.table,
                    key.name(),
                    key.composite()
                ),
            )
            .await?;
        }
        Ok(())
    }
}
