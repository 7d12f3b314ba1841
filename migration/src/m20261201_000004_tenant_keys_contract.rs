//! Every tenant row carries its organization, step 4 of 4 (contract), once the deployed
//! release upserts on the per-organization keys, sets `updated_at` itself and sends its own
//! notifications: the old global unique keys, the indexes the composite keys made redundant, the
//! `updated_at` triggers and the `NOTIFY` triggers go, with their functions. Citus refuses to
//! distribute a table with triggers, and a trigger's `NOTIFY` would run on the worker holding the
//! shard, out of reach of a listener on the coordinator.

use sea_orm_migration::{prelude::*, sea_orm::ConnectionTrait};

use crate::conventions::{drop_named_index_concurrently, in_short_transaction};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The global unique keys replaced by per-organization ones: `(table, constraint, columns)`.
const GLOBAL_UNIQUES: [(&str, &str, &str); 4] = [
    ("slack_events", "uq_slack_events_event_id", "event_id"),
    ("linear_events", "uq_linear_events_event_id", "event_id"),
    (
        "tool_calls",
        "uq_tool_calls_agent_run_id_sequence",
        "agent_run_id, sequence",
    ),
    (
        "github_installations",
        "uq_github_installations_installation_id",
        "installation_id",
    ),
];

/// Indexes now led by a composite key or primary key: `(table, column)`.
const REDUNDANT_INDEXES: [(&str, &str); 5] = [
    ("agent_runs", "slack_event_id"),
    ("agent_runs", "linear_event_id"),
    ("slack_events", "slack_connection_id"),
    ("linear_events", "linear_connection_id"),
    ("github_installations", "organization_id"),
];

/// The tables whose `updated_at` a trigger kept current.
const TOUCHED: [&str; 13] = [
    "users",
    "sessions",
    "accounts",
    "verifications",
    "github_installations",
    "slack_connections",
    "linear_connections",
    "slack_events",
    "linear_events",
    "tools",
    "user_tools",
    "agent_runs",
    "tool_calls",
];

const EVENT_TABLES: [&str; 2] = ["slack_events", "linear_events"];

/// The trigger functions as `m20261129_000001_foundation` and `m20261130_000001_event_workers`
/// created them, for `down`.
const SET_UPDATED_AT: &str =
    "CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
                         NEW.updated_at := now();
                     END IF;
                     RETURN NEW;
                 END
                 $$";
const NOTIFY_EVENTS_INSERTED: &str =
    "CREATE OR REPLACE FUNCTION notify_events_inserted() RETURNS trigger
             LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM pg_notify(TG_TABLE_NAME, '');
                 RETURN NULL;
             END
             $$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        // DROP INDEX CONCURRENTLY, and short steps of their own.
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, constraint, _) in GLOBAL_UNIQUES {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {constraint}"
                )],
            )
            .await?;
        }
        for (table, column) in REDUNDANT_INDEXES {
            drop_named_index_concurrently(manager, &format!("idx_{table}_{column}")).await?;
        }
        for table in EVENT_TABLES {
            in_short_transaction(
                manager,
                &[format!(
                    "DROP TRIGGER IF EXISTS trg_{table}_notify ON {table}"
                )],
            )
            .await?;
        }
        for table in TOUCHED {
            in_short_transaction(
                manager,
                &[format!(
                    "DROP TRIGGER IF EXISTS trg_{table}_updated_at ON {table}"
                )],
            )
            .await?;
        }
        in_short_transaction(
            manager,
            &[
                "DROP FUNCTION IF EXISTS notify_events_inserted()",
                "DROP FUNCTION IF EXISTS set_updated_at()",
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(SET_UPDATED_AT).await?;
        db.execute_unprepared(NOTIFY_EVENTS_INSERTED).await?;
        for table in TOUCHED {
            in_short_transaction(
                manager,
                &[format!(
                    "CREATE TRIGGER trg_{table}_updated_at BEFORE UPDATE ON {table} \
                     FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
                )],
            )
            .await?;
        }
        for table in EVENT_TABLES {
            in_short_transaction(
                manager,
                &[format!(
                    "CREATE OR REPLACE TRIGGER trg_{table}_notify AFTER INSERT ON {table}
                     FOR EACH STATEMENT EXECUTE FUNCTION notify_events_inserted()"
                )],
            )
            .await?;
        }
        for (table, column) in REDUNDANT_INDEXES {
            db.execute_unprepared(&format!(
                "CREATE INDEX IF NOT EXISTS idx_{table}_{column} ON {table} ({column})"
            ))
            .await?;
        }
        for (table, constraint, columns) in GLOBAL_UNIQUES {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {constraint} UNIQUE ({columns})"
                )],
            )
            .await?;
        }
        Ok(())
    }
}
