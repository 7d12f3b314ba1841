//! Webhook deliveries from Slack and Linear: stored once per delivery id, then claimed by
//! workers in arrival order.

use sea_orm_migration::{
    prelude::*,
    schema::{json_binary, string_len, text, text_null, timestamp_with_time_zone_null, uuid_null},
};

use crate::conventions::{NAME_LEN, NewTable, counter, drop_tables, uuid_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub const EVENT_STATUSES: &[&str] = &["pending", "processing", "processed", "failed", "ignored"];
pub const LINEAR_EVENT_ACTIONS: &[&str] = &["create", "update", "remove"];

/// The columns and indexes both event tables share after their provider-specific columns.
fn with_processing_state(table: NewTable) -> NewTable {
    table
        .col(json_binary("payload"))
        .enumeration("status", EVENT_STATUSES, Some("pending"))
        .col(counter("attempts"))
        .col(text_null("last_error"))
        .col(timestamp_with_time_zone_null("processed_at"))
        .timestamps()
        .nonnegative("attempts")
        .unique(&["event_id"])
        .index(&["event_type"])
        .index(&["status"])
        .index(&["created_at"])
        // The claim query reads only this: pending rows, oldest first, ties broken by id.
        .partial_index(
            "pending",
            &["created_at", "id"],
            Expr::col("status").eq("pending"),
        )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        with_processing_state(
            NewTable::new("slack_events")
                .col(uuid_id())
                .col(uuid_null("slack_connection_id"))
                .col(text("event_id"))
                .col(string_len("event_type", NAME_LEN))
                .col(text("team_id"))
                .col(text_null("channel_id"))
                .col(text_null("slack_user_id"))
                .references(
                    "slack_connection_id",
                    "slack_connections",
                    ForeignKeyAction::SetNull,
                ),
        )
        .create(manager)
        .await?;

        with_processing_state(
            NewTable::new("linear_events")
                .col(uuid_id())
                .col(uuid_null("linear_connection_id"))
                .col(text("event_id"))
                .col(string_len("event_type", NAME_LEN))
                .enumeration("action", LINEAR_EVENT_ACTIONS, None)
                .col(text("linear_organization_id"))
                .references(
                    "linear_connection_id",
                    "linear_connections",
                    ForeignKeyAction::SetNull,
                ),
        )
        .create(manager)
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["linear_events", "slack_events"]).await
    }
}
