//! The conventions of `docs/schema.md`, written once: id columns, timestamps, enumerations as
//! `varchar(32)` with a named CHECK, foreign keys that always get an index, and constraint names
//! that say what they guard (`uq_`, `fk_`, `ck_`, `idx_` + table + columns).
//!
//! Also the helpers of migrations on live tables (indexes built concurrently, batched backfills,
//! short lock-bounded steps) and the rule Citus adds: after the distribution step
//! (`m20261201_000005_citus_distribution`) every statement a migration sends is one DDL
//! statement per `execute` (Citus forwards the query string to the workers, and a string of
//! several commands fails there with `cannot insert multiple commands into a prepared
//! statement`). Every helper here sends one statement per call.

use std::time::Duration;

use sea_orm_migration::sea_orm::RuntimeErr;

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
    primary_key: Option<Vec<&'static str>>,
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
            primary_key: None,
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
    ///
    /// Only for the first release's tables: `m20261201_000004_tenant_keys_contract` dropped the
    /// trigger function (Citus refuses tables with triggers), so a new table calling this fails
    /// at `CREATE TRIGGER`. New tables use [`NewTable::written_timestamps`].
    pub fn timestamps(mut self) -> Self {
        self.touch_updated_at = true;
        self.created_at().col(timestamp_now("updated_at"))
    }

    /// `created_at` and `updated_at` without a trigger: every statement that updates a row sets
    /// `updated_at` itself (`= now()`, or `= EXCLUDED.updated_at` in an upsert).
    pub fn written_timestamps(self) -> Self {
        self.created_at().col(timestamp_now("updated_at"))
    }

    /// A primary key over several columns (named `<table>_pkey`, PostgreSQL's own name); the
    /// columns' definitions must not say `primary_key` themselves.
    pub fn primary_key(mut self, columns: &[&'static str]) -> Self {
        self.leading.push(columns[0]);
        self.primary_key = Some(columns.to_vec());
        self
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
        if let Some(columns) = &self.primary_key {
            let mut key = Index::create().take();
            for column in columns {
                key.col(*column);
            }
            self.create.primary_key(&mut key);
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

/// Creates `table` (named `name`) with its indexes in one transaction, unless it exists: the
/// way a non-transactional migration (tried again from its start after a failure) creates a
/// table. `BEGIN` and `COMMIT` go out as statements on the migration's own session, so `migration
/// lint` sees the index built in the transaction that created its table.
pub async fn create_table_once(
    manager: &SchemaManager<'_>,
    table: NewTable,
    name: &str,
) -> Result<(), DbErr> {
    if manager.has_table(name).await? {
        return Ok(());
    }
    let conn = manager.get_connection();
    if conn.is_transaction() {
        return table.create(manager).await;
    }
    conn.execute_unprepared("BEGIN").await?;
    match table.create(manager).await {
        Ok(()) => conn.execute_unprepared("COMMIT").await.map(drop),
        Err(err) => {
            let _ = conn.execute_unprepared("ROLLBACK").await;
            Err(err)
        }
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
    build(
        manager,
        &index_name(table, columns),
        table,
        columns,
        None,
        false,
    )
    .await
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
    build(manager, &index, table, columns, Some(predicate), false).await
}

async fn build(
    manager: &SchemaManager<'_>,
    name: &str,
    table: &str,
    columns: &[&str],
    predicate: Option<&str>,
    unique: bool,
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
        "CREATE {}INDEX CONCURRENTLY IF NOT EXISTS {} ON {} ({}){filter}",
        if unique { "UNIQUE " } else { "" },
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

/// Sets `set` (e.g. `priority = 0`; `t` names the row) on every row of `table` matching `filter`
/// (e.g. `priority IS NULL`), `batch` rows per statement, walking the primary key in order
/// (whatever its columns: `id`, or `(organization_id, id)` on a tenant table): each batch is its
/// own short transaction in a migration whose `use_transaction()` is `Some(false)`, so row locks
/// are held briefly and no statement scans the whole table.
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
    let key = primary_key(manager, table).await?;
    let quoted_table = quoted(table);
    let key_list = key.iter().map(|c| quoted(c)).collect::<Vec<_>>().join(", ");
    let of = |alias: &str| {
        key.iter()
            .map(|c| format!("{alias}.{}", quoted(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let as_text = key
        .iter()
        .map(|c| format!("{}::text", quoted(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let descending = key
        .iter()
        .map(|c| format!("{} DESC", quoted(c)))
        .collect::<Vec<_>>()
        .join(", ");
    let mut after: Option<Vec<String>> = None;
    let mut total = 0u64;
    loop {
        // The cursor is the key this table returned, written as literals so that PostgreSQL
        // types them as the columns' own types.
        let from = after.as_ref().map_or(String::new(), |values| {
            let literals = values
                .iter()
                .map(|v| format!("'{}'", v.replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            format!("AND ({key_list}) > ({literals})")
        });
        let sql = format!(
            "WITH batch AS (SELECT {key_list} FROM {quoted_table} WHERE ({filter}) {from}
                            ORDER BY {key_list} LIMIT {batch}),
                  done AS (UPDATE {quoted_table} t SET {set} FROM batch
                           WHERE ({}) = ({}) RETURNING {})
             SELECT (SELECT ARRAY[{as_text}] FROM done ORDER BY {descending} LIMIT 1),
                    (SELECT count(*) FROM done)",
            of("t"),
            of("batch"),
            of("t"),
        );
        let row = conn
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await?
            .ok_or_else(|| DbErr::Custom("the backfill batch returned no row".to_owned()))?;
        let last: Option<Vec<String>> = row.try_get_by_index(0)?;
        let updated: i64 = row.try_get_by_index(1)?;
        total += updated as u64;
        match last {
            Some(values) => after = Some(values),
            None => return Ok(total),
        }
    }
}

/// The columns of `table`'s primary key, in key order.
async fn primary_key(manager: &SchemaManager<'_>, table: &str) -> Result<Vec<String>, DbErr> {
    let rows = manager
        .get_connection()
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT a.attname::text FROM pg_index i
             CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
             WHERE i.indrelid = to_regclass(quote_ident($1)) AND i.indisprimary
             ORDER BY k.position",
            [table.into()],
        ))
        .await?;
    let columns = rows
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<Vec<_>, _>>()?;
    match columns.is_empty() {
        true => Err(DbErr::Custom(format!(
            "{table} has no primary key to walk in batches"
        ))),
        false => Ok(columns),
    }
}

/// The `lock_timeout` of each step run by [`in_short_transaction`]: short, so writers queued
/// behind a step's lock request wait at most this long before the step gives way and retries.
pub const STEP_LOCK_TIMEOUT: Duration = Duration::from_millis(100);
/// How often [`in_short_transaction`] tries a step before giving the lock timeout to the
/// runner (which retries the whole migration, so every step must be safe to run again).
pub const STEP_TRIES: u32 = 50;

fn sqlstate(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|db| db.code())
            .map(|code| code.into_owned()),
        _ => None,
    }
}

/// Runs `statements` in one short transaction (or savepoint, inside a transactional migration)
/// with `lock_timeout` = [`STEP_LOCK_TIMEOUT`], each statement its own `execute`. A step that
/// times out waiting for a lock rolls back and is tried again after a short pause, up to
/// [`STEP_TRIES`] times: under a live load, a strong lock is requested many times briefly rather
/// than once for long, so no writer queues behind it for more than the step's timeout.
pub async fn in_short_transaction<S: AsRef<str>>(
    manager: &SchemaManager<'_>,
    statements: &[S],
) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    // Inside a transactional migration a savepoint, whose end leaves the runner's own timeout
    // in force; in a non-transactional one the runner's session (a connection of its own),
    // where BEGIN and COMMIT are sent as statements, so `migration lint` sees them.
    let nested = conn.is_transaction();
    let (begin, commit, rollback) = match nested {
        true => (
            "SAVEPOINT short_step",
            "RELEASE SAVEPOINT short_step",
            "ROLLBACK TO SAVEPOINT short_step",
        ),
        false => ("BEGIN", "COMMIT", "ROLLBACK"),
    };
    for attempt in 1..=STEP_TRIES {
        let ran = async {
            let before: Option<String> = match nested {
                true => Some(
                    conn.query_one_raw(Statement::from_string(
                        DbBackend::Postgres,
                        "SELECT current_setting('lock_timeout')",
                    ))
                    .await?
                    .ok_or_else(|| DbErr::Custom("current_setting returned no row".to_owned()))?
                    .try_get_by_index(0)?,
                ),
                false => None,
            };
            conn.execute_unprepared(begin).await?;
            conn.execute_unprepared(&format!(
                "SET LOCAL lock_timeout = '{}ms'",
                STEP_LOCK_TIMEOUT.as_millis()
            ))
            .await?;
            for statement in statements {
                conn.execute_unprepared(statement.as_ref()).await?;
            }
            if let Some(before) = before {
                conn.execute_unprepared(&format!(
                    "SET LOCAL lock_timeout = '{}'",
                    before.replace('\'', "''")
                ))
                .await?;
            }
            conn.execute_unprepared(commit).await.map(drop)
        }
        .await;
        match ran {
            Ok(()) => return Ok(()),
            Err(err) => {
                let undone = conn.execute_unprepared(rollback).await;
                if nested {
                    let _ = conn.execute_unprepared(commit).await;
                }
                if sqlstate(&err).as_deref() != Some("55P03") || attempt == STEP_TRIES {
                    return Err(err);
                }
                undone?;
                let pause = Duration::from_millis(20 * u64::from(Ord::min(attempt, 25)));
                tracing::debug!(attempt, ?pause, "a step met its lock timeout; trying again");
                tokio::time::sleep(pause).await;
            }
        }
    }
    unreachable!("the last try returns")
}

/// Runs each statement with its own `execute` (the rule after the Citus distribution step).
pub async fn execute_each<S: AsRef<str>>(
    manager: &SchemaManager<'_>,
    statements: &[S],
) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    for statement in statements {
        conn.execute_unprepared(statement.as_ref()).await?;
    }
    Ok(())
}

/// Whether a constraint of this name exists on `table`, so a step of a non-transactional
/// migration (tried again from the start after a failure) adds it only once.
pub async fn constraint_exists(
    manager: &SchemaManager<'_>,
    table: &str,
    name: &str,
) -> Result<bool, DbErr> {
    exists(
        manager,
        "SELECT EXISTS (SELECT 1 FROM pg_constraint
                        WHERE conrelid = to_regclass(quote_ident($1)) AND conname = $2)",
        [table.into(), name.into()],
    )
    .await
}

/// Whether the column exists and is `NOT NULL`.
pub async fn column_is_not_null(
    manager: &SchemaManager<'_>,
    table: &str,
    column: &str,
) -> Result<bool, DbErr> {
    exists(
        manager,
        "SELECT EXISTS (SELECT 1 FROM pg_attribute
                        WHERE attrelid = to_regclass(quote_ident($1)) AND attname = $2
                          AND attnotnull AND NOT attisdropped)",
        [table.into(), column.into()],
    )
    .await
}

async fn exists<const N: usize>(
    manager: &SchemaManager<'_>,
    sql: &str,
    values: [sea_orm_migration::sea_orm::Value; N],
) -> Result<bool, DbErr> {
    manager
        .get_connection()
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await?
        .map(|row| row.try_get_by_index::<bool>(0))
        .transpose()
        .map(|found| found.unwrap_or(false))
}

/// A unique index `name` on `columns` of a live table, built `CONCURRENTLY` (a migration whose
/// `use_transaction()` is `Some(false)`), rebuilt when an interrupted build left it `INVALID`.
/// Make it a constraint afterwards with `ADD CONSTRAINT ... UNIQUE USING INDEX` (or `PRIMARY
/// KEY USING INDEX`), a brief lock instead of a scan under one.
pub async fn add_unique_index_concurrently(
    manager: &SchemaManager<'_>,
    table: &str,
    name: &str,
    columns: &[&str],
) -> Result<(), DbErr> {
    build(manager, name, table, columns, None, true).await
}

/// `DROP INDEX CONCURRENTLY IF EXISTS name`, for an index named otherwise than
/// [`index_name`] would (partial indexes, `<table>_pkey_new`, ...).
pub async fn drop_named_index_concurrently(
    manager: &SchemaManager<'_>,
    name: &str,
) -> Result<(), DbErr> {
    manager
        .get_connection()
        .execute_unprepared(&format!(
            "DROP INDEX CONCURRENTLY IF EXISTS {}",
            quoted(name)
        ))
        .await
        .map(drop)
}
