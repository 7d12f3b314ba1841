//! Connections to GitHub (app installations), Slack and Linear, per organization. Tokens are
//! stored only as application-encrypted text in `*_encrypted` columns.

use sea_orm_migration::{
    prelude::*,
    schema::{big_integer, text, text_null, timestamp_with_time_zone_null},
};

use crate::conventions::{NewTable, drop_tables, flag, json_object, text_list, uuid_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub const GITHUB_ACCOUNT_TYPES: &[&str] = &["user", "organization"];
pub const REPOSITORY_SELECTIONS: &[&str] = &["all", "selected"];

/// The columns every connection row starts with: who owns it and who installed it.
fn connection(name: &'static str) -> NewTable {
    NewTable::new(name)
        .col(uuid_id())
        .col(text("organization_id"))
        .col(text_null("installed_by_user_id"))
        .references(
            "organization_id",
            "organizations",
            ForeignKeyAction::Cascade,
        )
        .references("installed_by_user_id", "users", ForeignKeyAction::SetNull)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        NewTable::new("github_installations")
            .col(uuid_id())
            .col(text("organization_id"))
            .col(big_integer("installation_id"))
            .col(text("account_login"))
            .enumeration("account_type", GITHUB_ACCOUNT_TYPES, None)
            .enumeration("repository_selection", REPOSITORY_SELECTIONS, None)
            .col(json_object("permissions"))
            .col(text_list("events"))
            .col(text_null("installed_by_user_id"))
            .col(timestamp_with_time_zone_null("suspended_at"))
            .timestamps()
            .unique(&["installation_id"])
            .references(
                "organization_id",
                "organizations",
                ForeignKeyAction::Cascade,
            )
            .references("installed_by_user_id", "users", ForeignKeyAction::SetNull)
            .create(manager)
            .await?;

        connection("slack_connections")
            .col(text("team_id"))
            .col(text("team_name"))
            .col(text_null("bot_user_id"))
            .col(text("access_token_encrypted"))
            .col(text_list("scopes"))
            .col(flag("is_active", true))
            .timestamps()
            .unique(&["organization_id", "team_id"])
            .index(&["team_id"])
            .create(manager)
            .await?;

        connection("linear_connections")
            .col(text("linear_organization_id"))
            .col(text("linear_organization_name"))
            .col(text("access_token_encrypted"))
            .col(text_null("refresh_token_encrypted"))
            .col(timestamp_with_time_zone_null("token_expires_at"))
            .col(text_list("scopes"))
            .col(flag("is_active", true))
            .timestamps()
            .unique(&["organization_id", "linear_organization_id"])
            .index(&["linear_organization_id"])
            .create(manager)
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(
            manager,
            &[
                "linear_connections",
                "slack_connections",
                "github_installations",
            ],
        )
        .await
    }
}
