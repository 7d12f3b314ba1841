//! Better Auth's core tables: users, sessions, accounts, verifications.

use sea_orm_migration::{
    prelude::*,
    schema::{boolean, text, text_null, timestamp_with_time_zone, timestamp_with_time_zone_null},
};

use crate::conventions::{NewTable, drop_tables, text_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        NewTable::new("users")
            .col(text_id())
            .col(text("name"))
            .col(text("email"))
            .col(boolean("email_verified").default(false).take())
            .col(text_null("image"))
            .timestamps()
            .unique(&["email"])
            .create(manager)
            .await?;

        NewTable::new("sessions")
            .col(text_id())
            .col(timestamp_with_time_zone("expires_at"))
            .col(text("token"))
            .col(text_null("ip_address"))
            .col(text_null("user_agent"))
            .col(text("user_id"))
            .timestamps()
            .unique(&["token"])
            .references("user_id", "users", ForeignKeyAction::Cascade)
            .index(&["user_id"])
            .index(&["expires_at"])
            .create(manager)
            .await?;

        NewTable::new("accounts")
            .col(text_id())
            .col(text("account_id"))
            .col(text("provider_id"))
            .col(text("user_id"))
            .col(text_null("access_token"))
            .col(text_null("refresh_token"))
            .col(text_null("id_token"))
            .col(timestamp_with_time_zone_null("access_token_expires_at"))
            .col(timestamp_with_time_zone_null("refresh_token_expires_at"))
            .col(text_null("scope"))
            .col(text_null("password"))
            .timestamps()
            .references("user_id", "users", ForeignKeyAction::Cascade)
            .unique(&["provider_id", "account_id"])
            .index(&["user_id"])
            .create(manager)
            .await?;

        NewTable::new("verifications")
            .col(text_id())
            .col(text("identifier"))
            .col(text("value"))
            .col(timestamp_with_time_zone("expires_at"))
            .timestamps()
            .index(&["identifier"])
            // Expired rows are deleted in bulk by expiry.
            .index(&["expires_at"])
            .create(manager)
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["verifications", "accounts", "sessions", "users"]).await
    }
}
