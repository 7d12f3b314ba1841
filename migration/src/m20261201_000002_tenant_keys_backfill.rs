//! Every tenant row carries its organization, step 2 of 4 (backfill), run **after** the release
//! that writes `organization_id` (and the routes, and `updated_at`) is deployed: the rows the
//! previous release wrote get their organization in batches (events from their connection,
//! tool calls from their run), deliveries without a connection move to `unrouted_events`, and
//! `organization_id` becomes `NOT NULL` (through a validated CHECK, so without a scan under a
//! write lock) with its foreign key to `organizations` (`NOT VALID`, then validated while writes
//! go on). Each step is short and safe to run again.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DbBackend, Statement},
};

use crate::{
    conventions::{
        backfill_in_batches, column_is_not_null, constraint_exists, in_short_transaction,
    },
    m20261201_000001_tenant_keys_expand::{GAIN_ORGANIZATION, ROUTES_FROM_CONNECTIONS},
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Rows per backfill statement.
const BATCH: u32 = 1_000;

/// `(events table, connection column, connections table, external id column, provider)`.
const EVENTS: [(&str, &str, &str, &str, &str); 2] = [
    (
        "slack_events",
        "slack_connection_id",
        "slack_connections",
        "team_id",
        "slack",
    ),
    (
        "linear_events",
        "linear_connection_id",
        "linear_connections",
        "linear_organization_id",
        "linear",
    ),
];

/// Moves the deliveries that have no connection (hence no organization) to `unrouted_events`,
/// `BATCH` per statement along the primary key. Runs that named one lose the link through the
/// previous release's `ON DELETE SET NULL`, still in force at this step.
async fn move_unrouted(
    manager: &SchemaManager<'_>,
    table: &str,
    external_id: &str,
    provider: &str,
) -> Result<u64, DbErr> {
    let sql = format!(
        "WITH batch AS (
             SELECT id FROM {table} WHERE organization_id IS NULL AND id > $1::uuid
             ORDER BY id LIMIT {BATCH}),
         moved AS (
             DELETE FROM {table} e USING batch WHERE e.id = batch.id
             RETURNING e.id, e.event_id, e.{external_id} AS external_id, e.event_type, e.payload,
                       e.created_at),
         kept AS (
             INSERT INTO unrouted_events (provider, event_id, external_id, event_type, payload, created_at)
             SELECT '{provider}', event_id, external_id, event_type, payload, created_at FROM moved
             ON CONFLICT (provider, event_id) DO NOTHING RETURNING 1)
         SELECT (SELECT id::text FROM moved ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM moved),
                (SELECT count(*) FROM kept)"
    );
    let mut after = "00000000-0000-0000-0000-000000000000".to_owned();
    let mut total = 0;
    loop {
        let row = manager
            .get_connection()
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                &sql,
                [after.clone().into()],
            ))
            .await?
            .ok_or_else(|| DbErr::Custom("the move returned no row".to_owned()))?;
        let last: Option<String> = row.try_get_by_index(0)?;
        let moved: i64 = row.try_get_by_index(1)?;
        total += moved as u64;
        match last {
            Some(id) => after = id,
            None => return Ok(total),
        }
    }
}

/// `organization_id NOT NULL` without scanning under `ACCESS EXCLUSIVE`: a `CHECK ... NOT VALID`,
/// validated under `SHARE UPDATE EXCLUSIVE` (writes go on), lets `SET NOT NULL` skip its scan.
async fn require_organization(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    if !column_is_not_null(manager, table, "organization_id").await? {
        let check = format!("ck_{table}_organization_id_not_null");
        if !constraint_exists(manager, table, &check).await? {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {check} CHECK (organization_id IS NOT NULL) NOT VALID"
                )],
            )
            .await?;
        }
        in_short_transaction(
            manager,
            &[format!("ALTER TABLE {table} VALIDATE CONSTRAINT {check}")],
        )
        .await?;
        in_short_transaction(
            manager,
            &[
                format!("ALTER TABLE {table} ALTER COLUMN organization_id SET NOT NULL"),
                format!("ALTER TABLE {table} DROP CONSTRAINT {check}"),
            ],
        )
        .await?;
    }
    let fk = format!("fk_{table}_organization_id");
    if !constraint_exists(manager, table, &fk).await? {
        in_short_transaction(
            manager,
            &[format!(
                "ALTER TABLE {table} ADD CONSTRAINT {fk} FOREIGN KEY (organization_id)
                 REFERENCES organizations (id) ON DELETE CASCADE ON UPDATE NO ACTION NOT VALID"
            )],
        )
        .await?;
    }
    in_short_transaction(
        manager,
        &[format!("ALTER TABLE {table} VALIDATE CONSTRAINT {fk}")],
    )
    .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        // Batches and steps, each its own short transaction.
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Connections the previous release added after step 1 get their route too.
        for routes in ROUTES_FROM_CONNECTIONS {
            manager.get_connection().execute_unprepared(routes).await?;
        }
        for (table, connection, connections, external_id, provider) in EVENTS {
            backfill_in_batches(
                manager,
                table,
                &format!(
                    "organization_id = (SELECT c.organization_id FROM {connections} c
                                        WHERE c.id = t.{connection})"
                ),
                &format!("organization_id IS NULL AND {connection} IS NOT NULL"),
                BATCH,
            )
            .await?;
            move_unrouted(manager, table, external_id, provider).await?;
        }
        backfill_in_batches(
            manager,
            "tool_calls",
            "organization_id = (SELECT r.organization_id FROM agent_runs r WHERE r.id = t.agent_run_id)",
            "organization_id IS NULL",
            BATCH,
        )
        .await?;
        for table in GAIN_ORGANIZATION {
            require_organization(manager, table).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in GAIN_ORGANIZATION {
            in_short_transaction(
                manager,
                &[
                    format!(
                        "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS fk_{table}_organization_id"
                    ),
                    format!("ALTER TABLE {table} ALTER COLUMN organization_id DROP NOT NULL"),
                ],
            )
            .await?;
        }
        Ok(())
    }
}
