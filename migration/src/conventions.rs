//! The conventions of `docs/schema.md`, written once: id columns, timestamps, enumerations as
//! `varchar(32)` with a named CHECK, foreign keys that always get an index, and constraint names
//! that say what they guard (`uq_`, `fk_`, `ck_`, `idx_` + table + columns).

use sea_orm_migration::{
    prelude::*,
    schema::{boolean, json_binary, text, timestamp_with_time_zone, uuid},
    sea_orm::{ConnectionTrait, DbBackend, Statement},
};

/// Length of every `varchar` enumeration column.
pub const ENUM_LEN: u32 = 32;
/// Length of free-form names from outside (event types, model names, tool slugs).
pub const NAME_LEN: u32 = 128;

/// `id text primary key`: Better Auth generates its own ids.
pub fn text_id() -> ColumnDef {
    text("id").primary_key().take()
}

/// `id uuid primary key default gen_random_uuid()`.
pub fn uuid_id() -> ColumnDef {
    uuid("id")
        .primary_key()
        .default(Expr::cust("gen_random_uuid()"))
        .take()
}

/// `timestamptz not null default now()`.
pub fn timestamp_now(name: &'static str) -> ColumnDef {
    timestamp_with_time_zone(name)
        .default(Expr::cust("now()"))
        .take()
}

/// `boolean not null default <value>`.
pub fn flag(name: &'static str, default: bool) -> ColumnDef {
    boolean(name).default(default).take()
}

/// `jsonb not null default '{}'::jsonb`.
pub fn json_object(name: &'static str) -> ColumnDef {
    json_binary(name).default(Expr::cust("'{}'::jsonb")).take()
}

/// `text[] not null default '{}'`.
pub fn text_list(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .array(ColumnType::Text)
        .not_null()
        .default(Expr::cust("'{}'::text[]"))
        .take()
}

/// `integer not null default 0` with a CHECK that it never goes negative (added by the table).
pub fn counter(name: &'static str) -> ColumnDef {
    ColumnDef::new(name).integer().not_null().default(0).take()
}

/// A table being defined, with the indexes and triggers that go with it.
pub struct NewTable {
    name: &'static str,
    create: TableCreateStatement,
    /// Columns that lead a unique constraint or an index, so FK columns get one only if needed.
    leading: Vec<&'static str>,
    foreign_keys: Vec<&'static str>,
    indexes: Vec<IndexCreateStatement>,
    touch_updated_at: bool,
}

impl NewTable {
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            create: Table::create().table(name).take(),
            leading: Vec::new(),
            foreign_keys: Vec::new(),
            indexes: Vec::new(),
            touch_updated_at: false,
        }
    }

    pub fn col(mut self, column: ColumnDef) -> Self {
        self.create.col(column);
        self
    }

    /// `created_at` only, for rows that never change.
    pub fn created_at(self) -> Self {
        self.col(timestamp_now("created_at"))
    }

    /// `created_at` and `updated_at`, the latter kept current by the `set_updated_at` trigger.
    pub fn timestamps(mut self) -> Self {
        self.touch_updated_at = true;
        self.created_at().col(timestamp_now("updated_at"))
    }

    /// A `varchar(32)` enumeration restricted by `ck_<table>_<column>` to `values`.
    pub fn enumeration(self, column: &'static str, values: &[&str], default: Option<&str>) -> Self {
        let mut def = ColumnDef::new(column)
            .string_len(ENUM_LEN)
            .not_null()
            .take();
        if let Some(default) = default {
            def.default(default);
        }
        self.col(def)
            .check(column, Expr::col(column).is_in(values.iter().copied()))
    }

    /// A named CHECK `ck_<table>_<suffix>`.
    pub fn check(mut self, suffix: &str, condition: SimpleExpr) -> Self {
        self.create
            .check((format!("ck_{}_{suffix}", self.name), condition));
        self
    }

    /// `ck_<table>_<column>_nonnegative`.
    pub fn nonnegative(self, column: &'static str) -> Self {
        self.check(&format!("{column}_nonnegative"), Expr::col(column).gte(0))
    }

    /// `fk_<table>_<column>` to `<target>.id`.
    pub fn references(
        mut self,
        column: &'static str,
        target: &'static str,
        on_delete: ForeignKeyAction,
    ) -> Self {
        self.create.foreign_key(
            ForeignKey::create()
                .name(format!("fk_{}_{column}", self.name))
                .from(self.name, column)
                .to(target, "id")
                .on_delete(on_delete)
                .on_update(ForeignKeyAction::NoAction),
        );
        self.foreign_keys.push(column);
        self
    }

    /// A unique constraint `uq_<table>_<columns>`.
    pub fn unique(mut self, columns: &[&'static str]) -> Self {
        let mut index = Index::create()
            .name(format!("uq_{}_{}", self.name, columns.join("_")))
            .unique()
            .take();
        for column in columns {
            index.col(*column);
        }
        self.create.index(&mut index);
        self.leading.push(columns[0]);
        self
    }

    /// An index `idx_<table>_<columns>`.
    pub fn index(mut self, columns: &[&'static str]) -> Self {
        let index = self.index_on(&columns.join("_"), columns);
        self.indexes.push(index);
        self.leading.push(columns[0]);
        self
    }

    /// A partial index `idx_<table>_<name>` on `columns` for rows matching `condition`.
    pub fn partial_index(
        mut self,
        name: &str,
        columns: &[&'static str],
        condition: SimpleExpr,
    ) -> Self {
        let mut index = self.index_on(name, columns);
        index.and_where(condition);
        self.indexes.push(index);
        self
    }

    fn index_on(&self, name: &str, columns: &[&'static str]) -> IndexCreateStatement {
        let mut index = Index::create()
            .name(index_name(self.name, &[name]))
            .table(self.name)
            .take();
        for column in columns {
            index.col(*column);
        }
        index
    }

    /// Creates the table, an index on every FK column that none leads yet, the other indexes,
    /// and the `updated_at` trigger.
    pub async fn create(mut self, manager: &SchemaManager<'_>) -> Result<(), DbErr> {
        for column in self.foreign_keys.clone() {
            if !self.leading.contains(&column) {
                self = self.index(&[column]);
            }
        }
        manager.create_table(self.create).await?;
        for index in self.indexes {
            manager.create_index(index).await?;
        }
        if self.touch_updated_at {
            manager
                .get_connection()
                .execute_unprepared(&format!(
                    "CREATE TRIGGER trg_{0}_updated_at BEFORE UPDATE ON {0} \
                     FOR EACH ROW EXECUTE FUNCTION set_updated_at()",
                    self.name
                ))
                .await?;
        }
        Ok(())
    }
}

/// Drops tables in the order given (dependents first); their indexes and triggers go with them.
pub async fn drop_tables(
    manager: &SchemaManager<'_>,
    tables: &[&'static str],
) -> Result<(), DbErr> {
    for table in tables {
        manager
            .drop_table(Table::drop().table(*table).take())
            .await?;
    }
    Ok(())
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// `idx_<table>_<columns>`, the name [`NewTable::index`] gives the same index.
pub fn index_name(table: &str, columns: &[&str]) -> String {
    format!("idx_{table}_{}", columns.join("_"))
}

/// Adds `idx_<table>_<columns>` to a live table without blocking its writes:
/// `CREATE INDEX CONCURRENTLY`, in a migration whose `use_transaction()` is `Some(false)`.
///
/// Safe to run again after any interruption: an index of that name left `INVALID` by a build
/// that was cancelled, timed out or lost its connection is dropped (concurrently) and built
/// anew; a valid one is kept.
pub async fn add_index_concurrently(
    manager: &SchemaManager<'_>,
    table: &str,
    columns: &[&str],
) -> Result<(), DbErr> {
    build_concurrently(manager, &index_name(table, columns), table, columns, None).await
}

/// As [`add_index_concurrently`], for a partial index `idx_<table>_<name>` on `columns` of the
/// rows matching `predicate` (SQL, e.g. `status IN ('pending', 'processing')`).
pub async fn add_partial_index_concurrently(
    manager: &SchemaManager<'_>,
    table: &str,
    name: &str,
    columns: &[&str],
    predicate: &str,
) -> Result<(), DbErr> {
    let index = format!("idx_{table}_{name}");
    build_concurrently(manager, &index, table, columns, Some(predicate)).await
}

async fn build_concurrently(
    manager: &SchemaManager<'_>,
    name: &str,
    table: &str,
    columns: &[&str],
    predicate: Option<&str>,
) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    let invalid = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                            WHERE c.relname = $1 AND c.relnamespace = current_schema()::regnamespace
                              AND NOT i.indisvalid)",
            [name.into()],
        ))
        .await?
        .map(|row| row.try_get_by_index::<bool>(0))
        .transpose()?
        .unwrap_or(false);
    if invalid {
        tracing::warn!(index = %name, "dropping the invalid index an interrupted build left, to build it again");
        conn.execute_unprepared(&format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            quoted(name)
        ))
        .await?;
    }
    let columns: Vec<String> = columns.iter().map(|c| quoted(c)).collect();
    let filter = predicate.map_or_else(String::new, |p| format!(" WHERE {p}"));
    conn.execute_unprepared(&format!(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({}){filter}",
        quoted(name),
        quoted(table),
        columns.join(", ")
    ))
    .await
    .map(drop)
}

/// Undoes [`add_index_concurrently`]: `DROP INDEX CONCURRENTLY IF EXISTS`, also outside a
/// transaction.
pub async fn drop_index_concurrently(
    manager: &SchemaManager<'_>,
    table: &str,
    columns: &[&str],
) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            quoted(&index_name(table, columns))
        ))
        .await
        .map(drop)
}

/// Sets `set` (e.g. `priority = 0`) on every row of `table` matching `filter` (e.g.
/// `priority IS NULL`), `batch` rows per statement, walking the primary key `id` in order: each
/// batch is its own short transaction in a migration whose `use_transaction()` is
/// `Some(false)`, so row locks are held briefly and no statement scans the whole table.
/// Rows inserted meanwhile behind the cursor are not visited: deploy the code that writes the
/// column for new rows first (expand), then backfill. Returns how many rows were updated.
pub async fn backfill_in_batches(
    manager: &SchemaManager<'_>,
    table: &str,
    set: &str,
    filter: &str,
    batch: u32,
) -> Result<u64, DbErr> {
    let conn = manager.get_connection();
    let table = quoted(table);
    let mut after: Option<String> = None;
    let mut total = 0u64;
    loop {
        // The cursor is an id this table returned, written as a literal so that PostgreSQL
        // types it as the column's own type.
        let from = after.as_ref().map_or(String::new(), |id| {
            format!("AND id > '{}'", id.replace('\'', "''"))
        });
        let sql = format!(
            "WITH batch AS (SELECT id FROM {table} WHERE ({filter}) {from} ORDER BY id LIMIT {batch}),
                  done AS (UPDATE {table} t SET {set} FROM batch WHERE t.id = batch.id RETURNING t.id)
             SELECT (SELECT id::text FROM done ORDER BY id DESC LIMIT 1), (SELECT count(*) FROM done)"
        );
        let row = conn
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await?
            .ok_or_else(|| DbErr::Custom("the backfill batch returned no row".to_owned()))?;
        let last: Option<String> = row.try_get_by_index(0)?;
        let updated: i64 = row.try_get_by_index(1)?;
        total += updated as u64;
        match last {
            Some(id) => after = Some(id),
            None => return Ok(total),
        }
    }
}
