//! Agent runs and the tool calls they make, in order.

use sea_orm_migration::{
    prelude::*,
    schema::{
        integer, integer_null, json_binary_null, string_len, text, text_null,
        timestamp_with_time_zone_null, uuid, uuid_null,
    },
};

use crate::conventions::{NAME_LEN, NewTable, counter, drop_tables, json_object, uuid_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub const TRIGGER_SOURCES: &[&str] = &["slack", "linear", "github", "api", "schedule"];
pub const AGENT_RUN_STATUSES: &[&str] = &["queued", "running", "succeeded", "failed", "cancelled"];
pub const TOOL_CALL_STATUSES: &[&str] = &["pending", "running", "succeeded", "failed"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        NewTable::new("agent_runs")
            .col(uuid_id())
            .col(text("organization_id"))
            .col(text_null("user_id"))
            .enumeration("trigger_source", TRIGGER_SOURCES, None)
            .col(uuid_null("slack_event_id"))
            .col(uuid_null("linear_event_id"))
            .enumeration("status", AGENT_RUN_STATUSES, Some("queued"))
            .col(string_len("model", NAME_LEN))
            .col(json_object("input"))
            .col(json_binary_null("output"))
            .col(text_null("error"))
            .col(counter("prompt_tokens"))
            .col(counter("completion_tokens"))
            .col(timestamp_with_time_zone_null("started_at"))
            .col(timestamp_with_time_zone_null("completed_at"))
            .timestamps()
            .nonnegative("prompt_tokens")
            .nonnegative("completion_tokens")
            .references(
                "organization_id",
                "organizations",
                ForeignKeyAction::Cascade,
            )
            .references("user_id", "users", ForeignKeyAction::SetNull)
            .references("slack_event_id", "slack_events", ForeignKeyAction::SetNull)
            .references(
                "linear_event_id",
                "linear_events",
                ForeignKeyAction::SetNull,
            )
            // Serves both "an organization's runs" and its newest-first keyset pages.
            .index(&["organization_id", "created_at", "id"])
            .index(&["user_id"])
            .index(&["status"])
            .index(&["created_at"])
            .create(manager)
            .await?;

        NewTable::new("tool_calls")
            .col(uuid_id())
            .col(uuid("agent_run_id"))
            .col(uuid_null("tool_id"))
            .col(string_len("tool_name", NAME_LEN))
            .col(integer("sequence"))
            .col(json_object("input"))
            .col(json_binary_null("output"))
            .enumeration("status", TOOL_CALL_STATUSES, Some("pending"))
            .col(text_null("error"))
            .col(integer_null("duration_ms"))
            .col(timestamp_with_time_zone_null("started_at"))
            .col(timestamp_with_time_zone_null("completed_at"))
            .timestamps()
            .nonnegative("sequence")
            .nonnegative("duration_ms")
            .references("agent_run_id", "agent_runs", ForeignKeyAction::Cascade)
            .references("tool_id", "tools", ForeignKeyAction::SetNull)
            .unique(&["agent_run_id", "sequence"])
            .index(&["tool_id"])
            .index(&["status"])
            .index(&["created_at"])
            .create(manager)
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["tool_calls", "agent_runs"]).await
    }
}
