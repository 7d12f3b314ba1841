//! The studio's SQL: every statement is built from catalog names (quoted) and binds every value
//! as text cast to the column's own type, so PostgreSQL parses input exactly as it would in SQL
//! and names the problem when it cannot. Secret columns are never selected: the query asks only
//! whether they are NULL.

use catalog::{Column, Table};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};
use serde_json::Value as Json;

use crate::{StudioError, secrets::is_secret};

pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 500;

/// One row as shown: a value per column (in the table's column order; `None` is SQL NULL, a
/// secret is `Some(Bool(true))`), the row version for optimistic edits, and its primary key
/// and sort key as text for links and cursors.
#[derive(Debug, Clone)]
pub struct Row {
    pub values: Vec<Option<Json>>,
    pub version: String,
    pub key: Vec<String>,
    pub sort_value: Option<String>,
}

pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `"table"."column"`: always the table's column, never a select-list alias of the same name.
pub fn qualified(table: &Table, column: &str) -> String {
    format!("{}.{}", ident(&table.name), ident(column))
}

/// `column` as ISO 8601 text in UTC, e.g. `2026-11-30T00:47:46.299096Z`.
fn iso_utc(column: &str) -> String {
    format!("to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
}

/// The column as the page shows it: timestamps in ISO 8601 UTC, numbers that JSON cannot hold
/// exactly as text, secrets as "is set".
fn display_expr(table: &Table, column: &Column) -> String {
    let c = ident(&column.name);
    if is_secret(&table.name, &column.name) {
        return format!("to_json({c} IS NOT NULL)");
    }
    match (column.type_name.as_str(), column.is_array) {
        ("timestamptz", false) => format!("to_json({})", iso_utc(&c)),
        ("timestamp", false) => {
            format!("to_json(to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'))")
        }
        ("numeric" | "money", _) => format!("to_json({c}::text)"),
        _ => format!("to_json({c})"),
    }
}

/// The column as an edit form shows it: the text PostgreSQL casts back to the same value.
pub fn edit_text_expr(column: &Column) -> String {
    let c = ident(&column.name);
    match (column.type_name.as_str(), column.is_array) {
        ("timestamptz", false) => iso_utc(&c),
        ("jsonb" | "json", false) => format!("jsonb_pretty({c}::jsonb)"),
        _ => format!("{c}::text"),
    }
}

/// Builds a statement's SQL and its bound values together, so placeholders always match.
#[derive(Default)]
pub struct Sql {
    pub text: String,
    pub values: Vec<Value>,
}

impl Sql {
    pub fn push(&mut self, sql: &str) -> &mut Self {
        self.text.push_str(sql);
        self
    }

    /// Binds `value` and returns its placeholder number.
    fn bind(&mut self, value: &str) -> usize {
        self.values.push(Value::from(value.to_owned()));
        self.values.len()
    }

    /// Appends `$n::type`: a value typed by a person, cast to `column`'s type.
    pub fn push_value(&mut self, column: &Column, value: &str) -> &mut Self {
        let n = self.bind(value);
        self.text.push_str(&format!("${n}::{}", column.sql_type));
        self
    }

    /// Appends `column = $n::type`.
    pub fn push_eq(&mut self, column: &Column, value: &str) -> &mut Self {
        self.text.push_str(&format!("{} = ", ident(&column.name)));
        self.push_value(column, value)
    }

    /// Appends `$n` bound to `value` as text.
    pub fn push_text(&mut self, value: &str) -> &mut Self {
        let n = self.bind(value);
        self.text.push_str(&format!("${n}"));
        self
    }

    pub fn statement(&self) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, &self.text, self.values.clone())
    }
}

/// `SELECT` of every column for display, the row version, the primary key and the sort column
/// as text, from `table`.
pub fn select_rows(table: &Table, sort: Option<&Column>) -> Sql {
    let mut columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| display_expr(table, c))
        .collect();
    columns.push("xmin::text".into());
    columns.extend(
        table
            .primary_key
            .iter()
            .map(|k| format!("{}::text", ident(k))),
    );
    if let Some(sort) = sort {
        columns.push(format!("{}::text", ident(&sort.name)));
    }
    let mut sql = Sql::default();
    sql.push(&format!(
        "SELECT {} FROM {}",
        columns.join(", "),
        ident(&table.name)
    ));
    sql
}

/// Appends `WHERE`/`AND` conditions `column = value` for each of `filters`.
pub fn push_filters(
    sql: &mut Sql,
    table: &Table,
    filters: &[(String, String)],
) -> Result<(), StudioError> {
    for (i, (name, value)) in filters.iter().enumerate() {
        let column = filterable(table, name)?;
        sql.push(if i == 0 { " WHERE " } else { " AND " });
        sql.push_eq(column, value);
    }
    Ok(())
}

/// The column a person asked to filter or look up by, refused if unknown or secret (an equality
/// filter on a secret would reveal it one guess at a time).
pub fn filterable<'a>(table: &'a Table, name: &str) -> Result<&'a Column, StudioError> {
    let column = table
        .column(name)
        .ok_or_else(|| StudioError::BadRequest(format!("{} has no column `{name}`", table.name)))?;
    if is_secret(&table.name, name) {
        return Err(StudioError::BadRequest(format!(
            "{}.{name} holds secrets: it cannot be filtered, sorted or shown",
            table.name
        )));
    }
    Ok(column)
}

pub async fn fetch_rows(
    db: &impl ConnectionTrait,
    table: &Table,
    sql: &Sql,
    with_sort_value: bool,
) -> Result<Vec<Row>, StudioError> {
    let results = db.query_all_raw(sql.statement()).await?;
    results
        .iter()
        .map(|r| decode_row(table, r, with_sort_value))
        .collect()
}

fn decode_row(
    table: &Table,
    result: &QueryResult,
    with_sort_value: bool,
) -> Result<Row, StudioError> {
    let n = table.columns.len();
    let mut values = Vec::with_capacity(n);
    for i in 0..n {
        values.push(result.try_get_by_index::<Option<Json>>(i)?);
    }
    let version = result.try_get_by_index::<String>(n)?;
    let mut key = Vec::with_capacity(table.primary_key.len());
    for i in 0..table.primary_key.len() {
        key.push(result.try_get_by_index::<String>(n + 1 + i)?);
    }
    let sort_value = if with_sort_value {
        result.try_get_by_index::<Option<String>>(n + 1 + table.primary_key.len())?
    } else {
        None
    };
    Ok(Row {
        values,
        version,
        key,
        sort_value,
    })
}

/// Refuses a `key` that is not a primary or unique key of `table`, so it names one row at most.
pub fn check_row_key(table: &Table, key: &[(String, String)]) -> Result<(), StudioError> {
    let names: Vec<String> = key.iter().map(|(c, _)| c.clone()).collect();
    if key.is_empty() || !table.is_unique(&names) {
        return Err(StudioError::BadRequest(format!(
            "a row of {} is named by its primary key ({}) or another unique key; got ({})",
            table.name,
            table.primary_key.join(", "),
            names.join(", ")
        )));
    }
    Ok(())
}

/// The row whose columns `key` (a primary or unique key, as `(column, text)`) name, if any.
pub async fn find_row(
    db: &impl ConnectionTrait,
    table: &Table,
    key: &[(String, String)],
) -> Result<Option<Row>, StudioError> {
    check_row_key(table, key)?;
    let mut sql = select_rows(table, None);
    push_filters(&mut sql, table, key)?;
    Ok(fetch_rows(db, table, &sql, false).await?.into_iter().next())
}

/// The primary key of `row` as `(column, text)` pairs.
pub fn key_of(table: &Table, row: &Row) -> Vec<(String, String)> {
    table
        .primary_key
        .iter()
        .cloned()
        .zip(row.key.iter().cloned())
        .collect()
}

/// Counts rows: exact below `ESTIMATE_FROM` planner-estimated rows, else the estimate (a
/// `count(*)` of a large table would hold the index page for seconds).
pub const ESTIMATE_FROM: f64 = 100_000.0;

#[derive(Debug, Clone, Copy)]
pub enum RowCount {
    Exact(i64),
    Estimate(i64),
}

pub async fn row_counts(
    db: &impl ConnectionTrait,
    tables: &[&Table],
) -> Result<Vec<RowCount>, StudioError> {
    let exact: Vec<&&Table> = tables
        .iter()
        .filter(|t| t.row_estimate < ESTIMATE_FROM)
        .collect();
    let mut counts = Vec::new();
    if !exact.is_empty() {
        let sql = exact
            .iter()
            .map(|t| format!("(SELECT count(*) FROM {})", ident(&t.name)))
            .collect::<Vec<_>>()
            .join(", ");
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!("SELECT {sql}"),
            ))
            .await?
            .expect("SELECT without FROM returns one row");
        for i in 0..exact.len() {
            counts.push(row.try_get_by_index::<i64>(i)?);
        }
    }
    let mut exact_counts = counts.into_iter();
    Ok(tables
        .iter()
        .map(|t| {
            if t.row_estimate < ESTIMATE_FROM {
                RowCount::Exact(exact_counts.next().expect("one count per exact table"))
            } else {
                RowCount::Estimate(t.row_estimate as i64)
            }
        })
        .collect())
}
