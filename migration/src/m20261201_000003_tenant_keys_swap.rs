//! Every tenant row carries its organization, step 3 of 4 (swap): the keys of the nine tenant
//! tables lead with `organization_id`, which Citus requires of every unique key of a table
//! distributed by it. Built without blocking writes: each new unique index `CONCURRENTLY`, each
//! composite foreign key `NOT VALID` then validated, and only then the swaps, each a brief lock
//! in a short transaction: the old single-column foreign keys go, each primary key moves onto
//! its prebuilt index (`PRIMARY KEY USING INDEX`), the new foreign keys take the old names and
//! the new unique indexes become constraints.
//!
//! The foreign keys from runs to events become `NO ACTION` (Citus refuses `SET NULL` on a key
//! holding the distribution column; retention unlinks runs in the statement that deletes their
//! events) and those from events to connections `CASCADE` (connections are only deactivated,
//! and deleted with their organization).

use sea_orm_migration::{
    prelude::*,
    sea_orm::{ConnectionTrait, DbBackend, Statement},
};

use crate::conventions::{
    add_index_concurrently, add_partial_index_concurrently, add_unique_index_concurrently,
    constraint_exists, drop_index_concurrently, drop_named_index_concurrently,
    in_short_transaction,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The tables distributed by `organization_id` on Citus, parents before children.
pub const TENANT_TABLES: [&str; 9] = [
    "members",
    "invitations",
    "github_installations",
    "slack_connections",
    "linear_connections",
    "slack_events",
    "linear_events",
    "agent_runs",
    "tool_calls",
];

/// A foreign key between two tenant tables: `(table, column, referenced table, before, after)`,
/// the `ON DELETE` action of the single-column key it replaces and of the composite one.
pub(crate) struct TenantKey {
    pub table: &'static str,
    pub column: &'static str,
    pub references: &'static str,
    pub before: &'static str,
    pub after: &'static str,
}

impl TenantKey {
    pub(crate) fn name(&self) -> String {
        format!("fk_{}_{}", self.table, self.column)
    }

    /// The composite key's definition (after `ADD CONSTRAINT name`).
    pub(crate) fn composite(&self) -> String {
        format!(
            "FOREIGN KEY (organization_id, {}) REFERENCES {} (organization_id, id) ON DELETE {} ON UPDATE NO ACTION",
            self.column, self.references, self.after
        )
    }

    fn single(&self) -> String {
        format!(
            "FOREIGN KEY ({}) REFERENCES {} (id) ON DELETE {} ON UPDATE NO ACTION",
            self.column, self.references, self.before
        )
    }
}

pub(crate) const TENANT_KEYS: [TenantKey; 5] = [
    TenantKey {
        table: "tool_calls",
        column: "agent_run_id",
        references: "agent_runs",
        before: "CASCADE",
        after: "CASCADE",
    },
    TenantKey {
        table: "agent_runs",
        column: "slack_event_id",
        references: "slack_events",
        before: "SET NULL",
        after: "NO ACTION",
    },
    TenantKey {
        table: "agent_runs",
        column: "linear_event_id",
        references: "linear_events",
        before: "SET NULL",
        after: "NO ACTION",
    },
    TenantKey {
        table: "slack_events",
        column: "slack_connection_id",
        references: "slack_connections",
        before: "SET NULL",
        after: "CASCADE",
    },
    TenantKey {
        table: "linear_events",
        column: "linear_connection_id",
        references: "linear_connections",
        before: "SET NULL",
        after: "CASCADE",
    },
];

/// The unique keys that become per organization: `(table, new constraint, columns)`.
pub(crate) const ORGANIZATION_UNIQUES: [(&str, &str, &[&str]); 3] = [
    (
        "slack_events",
        "uq_slack_events_organization_id_event_id",
        &["organization_id", "event_id"],
    ),
    (
        "linear_events",
        "uq_linear_events_organization_id_event_id",
        &["organization_id", "event_id"],
    ),
    (
        "tool_calls",
        "uq_tool_calls_organization_id_agent_run_id_sequence",
        &["organization_id", "agent_run_id", "sequence"],
    ),
];

/// Indexes for the composite keys and lookups: `(table, columns)`, named by `index_name`.
const INDEXES: [(&str, &[&str]); 6] = [
    ("agent_runs", &["organization_id", "slack_event_id"]),
    ("agent_runs", &["organization_id", "linear_event_id"]),
    ("slack_events", &["organization_id", "slack_connection_id"]),
    (
        "linear_events",
        &["organization_id", "linear_connection_id"],
    ),
    // Lookups by id alone: Better Auth updates members and reads invitations `WHERE id = $1`.
    ("members", &["id"]),
    ("invitations", &["id"]),
];

pub(crate) const QUEUED: &str = "status IN ('pending', 'processing')";

async fn query_one<T: sea_orm_migration::sea_orm::TryGetable>(
    manager: &SchemaManager<'_>,
    sql: &str,
    values: Vec<sea_orm_migration::sea_orm::Value>,
) -> Result<T, DbErr> {
    manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("`{sql}` returned no row")))?
        .try_get_by_index(0)
}

/// The number of columns of a constraint, 0 when there is none of that name.
async fn constraint_width(
    manager: &SchemaManager<'_>,
    table: &str,
    name: &str,
) -> Result<i32, DbErr> {
    query_one(
        manager,
        "SELECT COALESCE((SELECT cardinality(conkey) FROM pg_constraint
                          WHERE conrelid = to_regclass(quote_ident($1)) AND conname = $2), 0)",
        vec![table.into(), name.into()],
    )
    .await
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        // CREATE INDEX CONCURRENTLY, and short steps of their own.
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in TENANT_TABLES {
            if constraint_width(manager, table, &format!("{table}_pkey")).await? == 1 {
                add_unique_index_concurrently(
                    manager,
                    table,
                    &format!("{table}_pkey_new"),
                    &["organization_id", "id"],
                )
                .await?;
            }
        }
        for (table, name, columns) in ORGANIZATION_UNIQUES {
            add_unique_index_concurrently(manager, table, name, columns).await?;
        }
        for table in ["slack_events", "linear_events"] {
            // A claim reads one organization's due events.
            add_partial_index_concurrently(
                manager,
                table,
                "claim",
                &["organization_id", "due_at", "id"],
                QUEUED,
            )
            .await?;
        }
        for (table, columns) in INDEXES {
            add_index_concurrently(manager, table, columns).await?;
        }
        for key in &TENANT_KEYS {
            if constraint_width(manager, key.table, &key.name()).await? == 2 {
                continue;
            }
            let new = format!("{}_new", key.name());
            if !constraint_exists(manager, key.table, &new).await? {
                in_short_transaction(
                    manager,
                    &[format!(
                        "ALTER TABLE {} ADD CONSTRAINT {new} {} NOT VALID",
                        key.table,
                        key.composite()
                    )],
                )
                .await?;
            }
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {} VALIDATE CONSTRAINT {new}",
                    key.table
                )],
            )
            .await?;
        }
        // From here on the composite keys hold: the single-column ones can go, and with them
        // what kept the old primary keys in use.
        for key in &TENANT_KEYS {
            if constraint_width(manager, key.table, &key.name()).await? == 1 {
                in_short_transaction(
                    manager,
                    &[format!(
                        "ALTER TABLE {} DROP CONSTRAINT {}",
                        key.table,
                        key.name()
                    )],
                )
                .await?;
            }
        }
        for table in TENANT_TABLES {
            if constraint_width(manager, table, &format!("{table}_pkey")).await? == 1 {
                in_short_transaction(
                    manager,
                    &[format!(
                        "ALTER TABLE {table} DROP CONSTRAINT {table}_pkey,
                         ADD CONSTRAINT {table}_pkey PRIMARY KEY USING INDEX {table}_pkey_new"
                    )],
                )
                .await?;
            }
        }
        for key in &TENANT_KEYS {
            let new = format!("{}_new", key.name());
            if constraint_exists(manager, key.table, &new).await? {
                in_short_transaction(
                    manager,
                    &[format!(
                        "ALTER TABLE {} RENAME CONSTRAINT {new} TO {}",
                        key.table,
                        key.name()
                    )],
                )
                .await?;
            }
        }
        for (table, name, _) in ORGANIZATION_UNIQUES {
            if !constraint_exists(manager, table, name).await? {
                in_short_transaction(
                    manager,
                    &[format!(
                        "ALTER TABLE {table} ADD CONSTRAINT {name} UNIQUE USING INDEX {name}"
                    )],
                )
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, name, _) in ORGANIZATION_UNIQUES {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {name}"
                )],
            )
            .await?;
        }
        for key in &TENANT_KEYS {
            in_short_transaction(
                manager,
                &[
                    format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}",
                        key.table,
                        key.name()
                    ),
                    format!(
                        "ALTER TABLE {} DROP CONSTRAINT IF EXISTS {}_new",
                        key.table,
                        key.name()
                    ),
                ],
            )
            .await?;
        }
        for table in TENANT_TABLES {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {table} DROP CONSTRAINT {table}_pkey,
                     ADD CONSTRAINT {table}_pkey PRIMARY KEY (id)"
                )],
            )
            .await?;
        }
        for key in &TENANT_KEYS {
            in_short_transaction(
                manager,
                &[format!(
                    "ALTER TABLE {} ADD CONSTRAINT {} {}",
                    key.table,
                    key.name(),
                    key.single()
                )],
            )
            .await?;
        }
        for (table, columns) in INDEXES.iter().rev() {
            drop_index_concurrently(manager, table, columns).await?;
        }
        for table in ["linear_events", "slack_events"] {
            drop_named_index_concurrently(manager, &format!("idx_{table}_claim")).await?;
        }
        for table in TENANT_TABLES {
            drop_named_index_concurrently(manager, &format!("{table}_pkey_new")).await?;
        }
        Ok(())
    }
}
