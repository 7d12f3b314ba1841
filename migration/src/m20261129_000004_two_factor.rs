//! Better Auth's two-factor plugin: the user's flag and the `two_factors` secrets.

use sea_orm_migration::{
    prelude::*,
    schema::{text, timestamp_with_time_zone_null},
};

use crate::conventions::{NewTable, counter, drop_tables, flag, text_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .add_column(flag("two_factor_enabled", false))
                    .take(),
            )
            .await?;

        // `verified` defaults to true and the lockout columns have defaults, so Better Auth
        // releases before 1.7, which do not write them, keep working.
        NewTable::new("two_factors")
            .col(text_id())
            .col(text("secret"))
            .col(text("backup_codes"))
            .col(text("user_id"))
            .col(flag("verified", true))
            .col(counter("failed_verification_count"))
            .col(timestamp_with_time_zone_null("locked_until"))
            .references("user_id", "users", ForeignKeyAction::Cascade)
            .nonnegative("failed_verification_count")
            .index(&["user_id"])
            .index(&["secret"])
            .create(manager)
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        drop_tables(manager, &["two_factors"]).await?;
        manager
            .alter_table(
                Table::alter()
                    .table("users")
                    .drop_column("two_factor_enabled")
                    .take(),
            )
            .await
    }
}
