//! The tool catalog agents can call, and each user's switches and settings for it.

use sea_orm_migration::{
    prelude::*,
    schema::{string_len, text, uuid},
};

use crate::conventions::{NAME_LEN, NewTable, drop_tables, flag, json_object, text_list, uuid_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub const TOOL_PROVIDERS: &[&str] = &["builtin", "github", "slack", "linear", "mcp"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        NewTable::new("tools")
            .col(uuid_id())
            .col(string_len("name", NAME_LEN))
            .col(text("display_name"))
            .col(text("description").default("").take())
            .enumeration("provider", TOOL_PROVIDERS, None)
            .col(json_object("input_schema"))
            .col(text_list("tags"))
            .col(flag("is_enabled", true))
            .timestamps()
            .unique(&["name"])
            .index(&["provider"])
            .create(manager)
            .await?;

        NewTable::new("user_tools")
            .col(uuid_id())
            .col(text("user_id"))
            .col(uuid("tool_id"))
            .col(flag("is_enabled", true))
            .col(json_object("config"))
            .timestamps()
            .references("user_id", "users", ForeignKeyAction::Cascade)
            .references("tool_id", "tools", ForeignKeyAction::Cascade)
            .unique(&["user_id", "tool_id"])
            .index(&["tool_id"])
            .create(manager)
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["user_tools", "tools"]).await
    }
}
