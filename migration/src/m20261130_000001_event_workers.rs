//! What the event workers need: `due_at`, when an event next needs a worker (its arrival, a
//! retry's backoff, or the end of a claim's lease), a claim index ordered by it, and a
//! notification per ingest statement so idle workers wake at once.
//!
//! Written for live tables of millions of rows: the column has a non-volatile default (no
//! rewrite), the index is built `CONCURRENTLY` (so the migration runs outside a transaction and
//! every step is idempotent), and backfills touch only the queue (pending and processing rows),
//! in batches through the old claim index.

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DbBackend, Statement},
};

use crate::conventions::add_partial_index_concurrently;

#[derive(DeriveMigrationName)]
pub struct Migration;

const TABLES: [&str; 2] = ["slack_events", "linear_events"];
/// Pending rows re-dated per statement, so no statement holds many row locks.
const BACKFILL_BATCH: i64 = 5_000;
/// The lease given to rows a pre-worker claim left `processing` (`service::events::DEFAULT_LEASE`).
const LEGACY_LEASE: &str = "5 minutes";

async fn execute(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(sql)
        .await
        .map(drop)
}

/// Pending rows keep their arrival order: `due_at = created_at`, walked in batches along the
/// old claim index `(created_at, id) WHERE status = 'pending'`.
async fn backfill_pending(manager: &SchemaManager<'_>, table: &str) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let sql = format!(
        "WITH batch AS (
             SELECT id FROM {table}
             WHERE status = 'pending' AND (created_at, id) > ($1::timestamptz, $2::uuid)
             ORDER BY created_at, id LIMIT $3),
         moved AS (
             UPDATE {table} e SET due_at = e.created_at FROM batch WHERE e.id = batch.id
             RETURNING e.created_at, e.id)
         SELECT created_at::text, id::text FROM moved ORDER BY created_at DESC, id DESC LIMIT 1"
    );
    // The last row moved, as text: the statement casts it back.
    let mut after: (String, String) = (
        "-infinity".to_owned(),
        "00000000-0000-0000-0000-000000000000".to_owned(),
    );
    loop {
        let last = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                &sql,
                [
                    after.0.clone().into(),
                    after.1.clone().into(),
                    BACKFILL_BATCH.into(),
                ],
            ))
            .await?;
        let Some(row) = last else { return Ok(()) };
        after = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        // CREATE/DROP INDEX CONCURRENTLY cannot run inside a transaction.
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One notification per ingest statement (not per row), sent at commit, through a pooler
        // too; the channel is the table's name.
        execute(
            manager,
            "CREATE OR REPLACE FUNCTION notify_events_inserted() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_notify(TG_TABLE_NAME, '');
                 RETURN NULL;
             END
             $$",
        )
        .await?;
        for table in TABLES {
            // now() is stable: PostgreSQL stores it once as the default of existing rows, with
            // no rewrite; every new row gets its insert time, equal to its created_at.
            execute(
                manager,
                &format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS due_at timestamptz NOT NULL DEFAULT now()"
                ),
            )
            .await?;
            backfill_pending(manager, table).await?;
            // Claimed before workers had leases: leave their worker the default lease.
            execute(
                manager,
                &format!(
                    "UPDATE {table} SET due_at = now() + interval '{LEGACY_LEASE}' WHERE status = 'processing'"
                ),
            )
            .await?;
            add_partial_index_concurrently(
                manager,
                table,
                "due",
                &["due_at", "id"],
                "status IN ('pending', 'processing')",
            )
            .await?;
            // The claim now reads the due index; the arrival-order one would only cost writes.
            execute(
                manager,
                &format!("DROP INDEX CONCURRENTLY IF EXISTS idx_{table}_pending"),
            )
            .await?;
            execute(
                manager,
                &format!(
                    "CREATE OR REPLACE TRIGGER trg_{table}_notify AFTER INSERT ON {table}
                     FOR EACH STATEMENT EXECUTE FUNCTION notify_events_inserted()"
                ),
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TABLES {
            execute(
                manager,
                &format!("DROP TRIGGER IF EXISTS trg_{table}_notify ON {table}"),
            )
            .await?;
            add_partial_index_concurrently(
                manager,
                table,
                "pending",
                &["created_at", "id"],
                "status = 'pending'",
            )
            .await?;
            execute(
                manager,
                &format!("DROP INDEX CONCURRENTLY IF EXISTS idx_{table}_due"),
            )
            .await?;
            execute(
                manager,
                &format!("ALTER TABLE {table} DROP COLUMN IF EXISTS due_at"),
            )
            .await?;
        }
        execute(manager, "DROP FUNCTION IF EXISTS notify_events_inserted()").await
    }
}
