//! What every later migration relies on: the trigger function that keeps `updated_at` current.

use sea_orm_migration::{prelude::*, sea_orm::ConnectionTrait};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Only when the statement left updated_at alone: callers (Better Auth included) that set
        // it themselves keep their value.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN
                     IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
                         NEW.updated_at := now();
                     END IF;
                     RETURN NEW;
                 END
                 $$",
            )
            .await
            .map(drop)
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP FUNCTION set_updated_at()")
            .await
            .map(drop)
    }
}
