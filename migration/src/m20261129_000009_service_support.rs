//! What the service helpers need beyond the contract: a per-run counter so concurrent tool-call
//! appends get distinct sequences in one statement, at most one pending invitation per email and
//! organization, and case-insensitive email lookups.

use sea_orm_migration::{prelude::*, sea_orm::ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("agent_runs")
                    .add_column(
                        ColumnDef::new("next_tool_call_sequence")
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .take(),
            )
            .await?;
        // Expression and partial indexes: beyond what the schema builder can say.
        manager
            .get_connection()
            .execute_unprepared(
                "ALTER TABLE agent_runs ADD CONSTRAINT ck_agent_runs_next_tool_call_sequence_nonnegative
                     CHECK (next_tool_call_sequence >= 0);
                 CREATE UNIQUE INDEX uq_invitations_pending_email
                     ON invitations (organization_id, lower(email)) WHERE status = 'pending';
                 CREATE INDEX idx_invitations_lower_email ON invitations (lower(email));
                 CREATE INDEX idx_users_lower_email ON users (lower(email));",
            )
            .await
            .map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "DROP INDEX idx_users_lower_email;
                 DROP INDEX idx_invitations_lower_email;
                 DROP INDEX uq_invitations_pending_email;",
            )
            .await?;
        // Dropping the column drops its CHECK with it.
        manager
            .alter_table(
                Table::alter()
                    .table("agent_runs")
                    .drop_column("next_tool_call_sequence")
                    .take(),
            )
            .await
    }
}
