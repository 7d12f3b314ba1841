//! Every tenant row carries its organization, step 1 of 4 (expand): the nullable
//! `organization_id` of events and tool calls, `webhook_routes` (which organization receives a
//! Slack team's, Linear workspace's or GitHub installation's webhooks) filled from today's
//! connections, `unrouted_events` (deliveries no connection claims), and the per-organization
//! unique key of GitHub installations.
//!
//! Runs **before** the release that writes `organization_id` is deployed: nothing here changes
//! what the previous release reads or writes (new columns are nullable without a default, so no
//! rewrite; new tables; one index built concurrently). Steps 2 to 4 (backfill, key swap,
//! contract) run after that deploy. Every step is its own short transaction under a short
//! `lock_timeout` and safe to run again, since a non-transactional migration is retried from
//! its start. Why the keys change at all: Citus (docs/schema.md, "Deviations").

use sea_orm_migration::{
    prelude::*,
    schema::{json_binary, string_len, text, uuid},
    sea_orm::ConnectionTrait,
};

use crate::conventions::{
    NAME_LEN, NewTable, add_unique_index_concurrently, constraint_exists, create_table_once,
    in_short_transaction, uuid_id,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The providers a route names.
pub const ROUTE_PROVIDERS: &[&str] = &["slack", "linear", "github"];
/// The providers of webhook events.
pub const EVENT_PROVIDERS: &[&str] = &["slack", "linear"];
/// The tables that gain `organization_id`.
pub(crate) const GAIN_ORGANIZATION: [&str; 3] = ["slack_events", "linear_events", "tool_calls"];
pub(crate) const GITHUB_UNIQUE: &str = "uq_github_installations_organization_id_installation_id";

/// The routes today's lookups would pick: for a Slack team or Linear workspace, its most
/// recently updated active connection (what `active_slack_connection` chose); for a GitHub
/// installation, its row. Rows already routed are kept.
pub(crate) const ROUTES_FROM_CONNECTIONS: [&str; 3] = [
    "INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id)
     SELECT DISTINCT ON (team_id) 'slack', team_id, organization_id, id
     FROM slack_connections WHERE is_active
     ORDER BY team_id, updated_at DESC, id DESC
     ON CONFLICT (provider, external_id) DO NOTHING",
    "INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id)
     SELECT DISTINCT ON (linear_organization_id) 'linear', linear_organization_id, organization_id, id
     FROM linear_connections WHERE is_active
     ORDER BY linear_organization_id, updated_at DESC, id DESC
     ON CONFLICT (provider, external_id) DO NOTHING",
    "INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id)
     SELECT 'github', installation_id::text, organization_id, id FROM github_installations
     ON CONFLICT (provider, external_id) DO NOTHING",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        // CREATE INDEX CONCURRENTLY, and short steps of their own.
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in GAIN_ORGANIZATION {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {table} ADD COLUMN IF NOT EXISTS organization_id text"
                )],
            )
            .await?;
        }
        // A reference table on Citus: every node has the routes, so an ingest finds its
        // organization without leaving the node it runs on.
        let routes = NewTable::new("webhook_routes")
            .enumeration("provider", ROUTE_PROVIDERS, None)
            .col(text("external_id"))
            .col(text("organization_id"))
            .col(uuid("connection_id"))
            .written_timestamps()
            .primary_key(&["provider", "external_id"])
            .references(
                "organization_id",
                "organizations",
                ForeignKeyAction::Cascade,
            );
        create_table_once(manager, routes, "webhook_routes").await?;
        // No organization, so no shard: kept on the coordinator for an operator to inspect
        // or replay, deduplicated like routed deliveries.
        let unrouted = NewTable::new("unrouted_events")
            .col(uuid_id())
            .enumeration("provider", EVENT_PROVIDERS, None)
            .col(text("event_id"))
            .col(text("external_id"))
            .col(string_len("event_type", NAME_LEN))
            .col(json_binary("payload"))
            .created_at()
            .unique(&["provider", "event_id"])
            .index(&["created_at"]);
        create_table_once(manager, unrouted, "unrouted_events").await?;
        for routes in ROUTES_FROM_CONNECTIONS {
            manager.get_connection().execute_unprepared(routes).await?;
        }
        // The release deployed after this step upserts installations on this key.
        add_unique_index_concurrently(
            manager,
            "github_installations",
            GITHUB_UNIQUE,
            &["organization_id", "installation_id"],
        )
        .await?;
        if !constraint_exists(manager, "github_installations", GITHUB_UNIQUE).await? {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE github_installations ADD CONSTRAINT {GITHUB_UNIQUE} UNIQUE USING INDEX {GITHUB_UNIQUE}"
                )],
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        in_short_transaction(
            manager,
            &[format!(
                "ALTER TABLE github_installations DROP CONSTRAINT IF EXISTS {GITHUB_UNIQUE}"
            )],
        )
        .await?;
        in_short_transaction(
            manager,
            &[
                "DROP TABLE IF EXISTS unrouted_events",
                "DROP TABLE IF EXISTS webhook_routes",
            ],
        )
        .await?;
        for table in GAIN_ORGANIZATION.iter().rev() {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {table} DROP COLUMN IF EXISTS organization_id"
                )],
            )
            .await?;
        }
        Ok(())
    }
}
