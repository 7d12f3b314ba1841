//! Better Auth's organization plugin: organizations, members, invitations, and the session's
//! active organization.

use sea_orm_migration::{
    prelude::*,
    schema::{text, text_null, timestamp_with_time_zone},
};

use crate::conventions::{NewTable, drop_tables, text_id};

#[derive(DeriveMigrationName)]
pub struct Migration;

pub const INVITATION_STATUSES: &[&str] = &["pending", "accepted", "rejected", "canceled"];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        NewTable::new("organizations")
            .col(text_id())
            .col(text("name"))
            .col(text("slug"))
            .col(text_null("logo"))
            .col(text_null("metadata"))
            .created_at()
            .unique(&["slug"])
            .create(manager)
            .await?;

        NewTable::new("members")
            .col(text_id())
            .col(text("organization_id"))
            .col(text("user_id"))
            .col(text("role").default("member").take())
            .created_at()
            .references(
                "organization_id",
                "organizations",
                ForeignKeyAction::Cascade,
            )
            .references("user_id", "users", ForeignKeyAction::Cascade)
            .unique(&["organization_id", "user_id"])
            .index(&["user_id"])
            .create(manager)
            .await?;

        NewTable::new("invitations")
            .col(text_id())
            .col(text("organization_id"))
            .col(text("email"))
            .col(text_null("role"))
            .enumeration("status", INVITATION_STATUSES, Some("pending"))
            .col(timestamp_with_time_zone("expires_at"))
            .col(text("inviter_id"))
            .created_at()
            .references(
                "organization_id",
                "organizations",
                ForeignKeyAction::Cascade,
            )
            .references("inviter_id", "users", ForeignKeyAction::Cascade)
            .index(&["organization_id"])
            .index(&["email"])
            .index(&["status"])
            .create(manager)
            .await?;

        manager
            .alter_table(
                Table::alter()
                    .table("sessions")
                    .add_column(text_null("active_organization_id"))
                    .add_foreign_key(
                        TableForeignKey::new()
                            .name("fk_sessions_active_organization_id")
                            .from_tbl("sessions")
                            .from_col("active_organization_id")
                            .to_tbl("organizations")
                            .to_col("id")
                            .on_delete(ForeignKeyAction::SetNull)
                            .on_update(ForeignKeyAction::NoAction),
                    )
                    .take(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_active_organization_id")
                    .table("sessions")
                    .col("active_organization_id")
                    .take(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping the column drops its foreign key and index with it.
        manager
            .alter_table(
                Table::alter()
                    .table("sessions")
                    .drop_column("active_organization_id")
                    .take(),
            )
            .await?;
        drop_tables(manager, &["invitations", "members", "organizations"]).await
    }
}
