//! Test-only migrations: raw SQL, and the concurrent-index helper, for migrators a test defines.

// Each test file uses the part it needs.
#![allow(dead_code)]

use migration::{MigrationName, MigrationTrait, SchemaManager, conventions};
use sea_orm::{ConnectionTrait, DbErr};

/// A migration that runs `up` as written (several statements allowed).
pub struct Sql {
    pub name: &'static str,
    pub up: &'static str,
    /// `false` for `use_transaction() -> Some(false)`.
    pub transactional: bool,
}

pub fn sql(name: &'static str, up: &'static str) -> Box<dyn MigrationTrait> {
    Box::new(Sql {
        name,
        up,
        transactional: true,
    })
}

impl MigrationName for Sql {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Sql {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(self.up)
            .await
            .map(drop)
    }

    fn use_transaction(&self) -> Option<bool> {
        (!self.transactional).then_some(false)
    }
}

/// `add_index_concurrently(manager, table, columns)`, outside a transaction.
pub struct ConcurrentIndex {
    pub name: &'static str,
    pub table: &'static str,
    pub columns: &'static [&'static str],
}

impl MigrationName for ConcurrentIndex {
    fn name(&self) -> &str {
        self.name
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ConcurrentIndex {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        conventions::add_index_concurrently(manager, self.table, self.columns).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        conventions::drop_index_concurrently(manager, self.table, self.columns).await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}
