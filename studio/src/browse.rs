//! The studio's SQL: every statement is built from catalog names (quoted) and binds every value
//! as text cast to the column's own type, so PostgreSQL parses input exactly as it would in SQL
//! and names the problem when it cannot. Secret columns are never selected: the query asks only
//! whether they are set (and, for a column whose prefix may be shown, for that prefix). Lists
//! cut long values in SQL, so a page of webhook payloads never fetches megabytes; JSON is
//! redacted by [`db_connect::secrets::redact_json`] before anything renders it.

use catalog::{Column, ForeignKey, Table};
use db_connect::secrets::{SecretColumn, holds_secret, redact_json, secret_column};
use sea_orm::{ConnectionTrait, DbBackend, QueryResult, Statement, Value};
use serde_json::Value as Json;

use crate::StudioError;

pub const DEFAULT_PAGE: u64 = 50;
pub const MAX_PAGE: u64 = 500;

/// Characters of text a list shows; longer text is cut by `left()` in SQL.
pub const LIST_TEXT_CHARS: usize = 80;
/// Bytes of JSON a list fetches; a larger value is left for the row's own page.
pub const LIST_JSON_BYTES: usize = 2_000;
/// Characters of a secret's shown prefix (`reset-password:`) fetched at most.
const PREFIX_CHARS: usize = 64;

/// One value as a page shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    /// SQL NULL.
    Null,
    /// The value (JSON already redacted; text in lists already cut).
    Value(Json),
    /// A secret that is set, and the part of it that may be shown (often empty).
    Secret { prefix: String },
    /// JSON too large for a list, by its size in bytes; the row's page shows it.
    Cut { bytes: i64 },
}

impl Shown {
    /// The value, when it is one a link or a filter can use.
    pub fn value(&self) -> Option<&Json> {
        match self {
            Self::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// One row as shown: a value per column (in the table's column order), the row version for
/// optimistic edits, and its primary key and sort key as text for links and cursors.
#[derive(Debug, Clone)]
pub struct Row {
    pub values: Vec<Shown>,
    pub version: String,
    pub key: Vec<String>,
    pub sort_value: Option<String>,
}

/// Whether a page shows every value whole (a row's page) or cut to fit a list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Fit {
    #[default]
    Whole,
    List,
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

pub fn is_json(column: &Column) -> bool {
    matches!(column.type_name.as_str(), "jsonb" | "json")
}

fn is_text(column: &Column) -> bool {
    matches!(column.type_name.as_str(), "text" | "varchar" | "bpchar") && !column.is_array
}

/// The column as the page shows it: timestamps in ISO 8601 UTC, numbers that JSON cannot hold
/// exactly as text, secrets as "is set" (`""`) or their shown prefix, and in lists text cut
/// with `left()` and JSON wrapped as `{"v": value}` or, when large, `{"bytes": size}`.
fn display_expr(table: &Table, column: &Column, fit: Fit) -> String {
    let c = ident(&column.name);
    match secret_column(&table.name, &column.name) {
        Some(SecretColumn::Masked) => {
            return format!("to_json(CASE WHEN {c} IS NOT NULL THEN '' END)");
        }
        Some(SecretColumn::PrefixShown) => {
            return format!(
                "to_json(CASE WHEN {c} IS NULL THEN NULL WHEN strpos({c}::text, ':') > 0 \
                 THEN left(split_part({c}::text, ':', 1), {PREFIX_CHARS}) || ':' ELSE '' END)"
            );
        }
        None => {}
    }
    let list = fit == Fit::List;
    match (column.type_name.as_str(), column.is_array) {
        ("timestamptz", false) => format!("to_json({})", iso_utc(&c)),
        ("timestamp", false) => {
            format!("to_json(to_char({c}, 'YYYY-MM-DD\"T\"HH24:MI:SS.US'))")
        }
        ("numeric" | "money", _) => format!("to_json({c}::text)"),
        _ if list && is_json(column) => format!(
            "CASE WHEN {c} IS NULL THEN NULL \
             WHEN octet_length({c}::text) <= {LIST_JSON_BYTES} THEN json_build_object('v', {c}) \
             ELSE json_build_object('bytes', octet_length({c}::text)) END"
        ),
        // A foreign key's value is (part of) a link to its row, so it is never cut.
        _ if list && is_text(column) && !in_foreign_key(table, &column.name) => {
            format!("to_json(left({c}, {}))", LIST_TEXT_CHARS + 1)
        }
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
    /// How a `SELECT` of rows ([`select_rows`]) fetches its values, so they are read back the
    /// same way.
    pub fit: Fit,
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
pub fn select_rows(table: &Table, sort: Option<&Column>, fit: Fit) -> Sql {
    let mut columns: Vec<String> = table
        .columns
        .iter()
        .map(|c| display_expr(table, c, fit))
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
    let mut sql = Sql {
        fit,
        ..Sql::default()
    };
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
        check_filter_value(table, column, value)?;
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
    if secret_column(&table.name, name).is_some() {
        return Err(StudioError::BadRequest(format!(
            "{}.{name} holds secrets: it cannot be filtered, sorted or shown",
            table.name
        )));
    }
    Ok(column)
}

/// Refuses a JSON filter value that names a secret key: rows holding that key match only a
/// filter that names it too, so such a filter would confirm a guessed secret.
pub fn check_filter_value(table: &Table, column: &Column, value: &str) -> Result<(), StudioError> {
    let Ok(json) = serde_json::from_str::<Json>(value) else {
        return Ok(()); // Not JSON: PostgreSQL names the problem, or it is not a JSON column.
    };
    if is_json(column) && holds_secret(&json) {
        return Err(StudioError::BadRequest(format!(
            "a filter on {}.{} cannot name a secret key or hold a token: it would confirm a guess",
            table.name, column.name
        )));
    }
    Ok(())
}

/// What `display_expr` selected, as the page shows it.
fn shown(table: &Table, column: &Column, value: Option<Json>, fit: Fit) -> Shown {
    let Some(mut value) = value else {
        return Shown::Null;
    };
    if secret_column(&table.name, &column.name).is_some() {
        let prefix = value.as_str().unwrap_or_default().to_owned();
        return Shown::Secret { prefix };
    }
    if !is_json(column) {
        return Shown::Value(value);
    }
    // A list's JSON comes wrapped: `{"v": value}`, or `{"bytes": size}` when left out.
    if let Json::Object(wrapper) = &mut value
        && fit == Fit::List
    {
        if let Some(bytes) = wrapper.get("bytes").and_then(Json::as_i64) {
            return Shown::Cut { bytes };
        }
        if let Some(inner) = wrapper.remove("v") {
            value = inner;
        }
    }
    redact_json(&mut value);
    Shown::Value(value)
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
        .map(|r| decode_row(table, r, sql.fit, with_sort_value))
        .collect()
}

fn decode_row(
    table: &Table,
    result: &QueryResult,
    fit: Fit,
    with_sort_value: bool,
) -> Result<Row, StudioError> {
    let n = table.columns.len();
    let mut values = Vec::with_capacity(n);
    for (i, column) in table.columns.iter().enumerate() {
        let value = result.try_get_by_index::<Option<Json>>(i)?;
        values.push(shown(table, column, value, fit));
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
    let names = key_names(table, key)?;
    if key.is_empty() || !table.is_unique(&names) {
        return Err(not_a_key(table, &names, " or another unique key"));
    }
    Ok(())
}

/// Refuses a `key` that is not exactly `table`'s primary key: a write addresses its row by the
/// whole key, so on Citus it is routed to the one shard holding the row.
pub fn check_primary_key(table: &Table, key: &[(String, String)]) -> Result<(), StudioError> {
    if table.primary_key.is_empty() {
        return Err(StudioError::BadRequest(format!(
            "{} has no primary key, so its rows cannot be edited or deleted here",
            table.name
        )));
    }
    let names = key_names(table, key)?;
    let whole = names.len() == table.primary_key.len()
        && table.primary_key.iter().all(|k| names.contains(k));
    if !whole {
        return Err(not_a_key(table, &names, ""));
    }
    Ok(())
}

/// The columns of `key`, refused when one is given twice (which value would name the row?).
fn key_names(table: &Table, key: &[(String, String)]) -> Result<Vec<String>, StudioError> {
    let mut names: Vec<String> = Vec::with_capacity(key.len());
    for (column, _) in key {
        if names.contains(column) {
            return Err(StudioError::BadRequest(format!(
                "{}.{column} is given twice in the row's key",
                table.name
            )));
        }
        names.push(column.clone());
    }
    Ok(names)
}

/// "a row of t is named by its whole primary key (a, b); the request has (b): missing a", or,
/// when no key column is missing, which of the request's columns are not part of the key.
fn not_a_key(table: &Table, names: &[String], or_else: &str) -> StudioError {
    let missing: Vec<&str> = table
        .primary_key
        .iter()
        .filter(|k| !names.contains(k))
        .map(String::as_str)
        .collect();
    let problem = if missing.is_empty() {
        let extra: Vec<&str> = names
            .iter()
            .filter(|n| !table.primary_key.contains(n))
            .map(String::as_str)
            .collect();
        format!("{} not part of it", extra.join(", "))
    } else {
        format!("missing {}", missing.join(", "))
    };
    StudioError::BadRequest(format!(
        "a row of {} is named by its whole primary key ({}){or_else}; the request has ({}): {problem}",
        table.name,
        table.primary_key.join(", "),
        names.join(", ")
    ))
}

/// The row whose columns `key` (a primary or unique key, as `(column, text)`) name, if any.
pub async fn find_row(
    db: &impl ConnectionTrait,
    table: &Table,
    key: &[(String, String)],
) -> Result<Option<Row>, StudioError> {
    check_row_key(table, key)?;
    let mut sql = select_rows(table, None, Fit::Whole);
    push_filters(&mut sql, table, key)?;
    Ok(fetch_rows(db, table, &sql, false).await?.into_iter().next())
}

fn in_foreign_key(table: &Table, column: &str) -> bool {
    table
        .foreign_keys
        .iter()
        .any(|fk| fk.columns.iter().any(|c| c == column))
}

/// The foreign key a column's value links through: the narrowest one holding the column, so
/// `organization_id` links to its organization and `agent_run_id` (in `(organization_id,
/// agent_run_id)`) to its run.
pub fn linking_foreign_key<'a>(table: &'a Table, column: &str) -> Option<&'a ForeignKey> {
    table
        .foreign_keys
        .iter()
        .filter(|fk| fk.columns.iter().any(|c| c == column))
        .min_by_key(|fk| fk.columns.len())
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
/// A table the planner knows nothing about (never analysed: `reltuples = -1`) may be of any
/// size, so it is counted only when its heap is at most this large; else it is shown unknown.
pub const COUNT_UNANALYSED_UP_TO_BYTES: i64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub enum RowCount {
    Exact(i64),
    Estimate(i64),
    /// Never analysed and too large to count: its heap's size in bytes.
    Unknown {
        bytes: i64,
    },
}

pub async fn row_counts(
    db: &impl ConnectionTrait,
    tables: &[&Table],
) -> Result<Vec<RowCount>, StudioError> {
    // One statement, two columns per table that is not estimated: its heap's size (when never
    // analysed) and its count, which for a never-analysed table the `CASE` runs only when the
    // heap is small (an uncorrelated subquery is an InitPlan: "never executed" otherwise).
    let counted: Vec<&&Table> = tables
        .iter()
        .filter(|t| t.row_estimate < ESTIMATE_FROM)
        .collect();
    let mut terms = Vec::new();
    for table in &counted {
        let name = ident(&table.name);
        let count = format!("(SELECT count(*) FROM {name})");
        if table.row_estimate < 0.0 {
            let size = format!("pg_relation_size('{}'::regclass)", name.replace('\'', "''"));
            terms.push(format!(
                "{size}, CASE WHEN {size} <= {COUNT_UNANALYSED_UP_TO_BYTES} THEN {count} END"
            ));
        } else {
            terms.push(format!("NULL::bigint, {count}"));
        }
    }
    let mut found = Vec::with_capacity(counted.len());
    if !terms.is_empty() {
        let sql = format!("SELECT {}", terms.join(", "));
        let row = db
            .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
            .await?
            .expect("SELECT without FROM returns one row");
        for i in 0..counted.len() {
            let bytes = row.try_get_by_index::<Option<i64>>(2 * i)?;
            let count = row.try_get_by_index::<Option<i64>>(2 * i + 1)?;
            found.push(match count {
                Some(n) => RowCount::Exact(n),
                None => RowCount::Unknown {
                    bytes: bytes.unwrap_or_default(),
                },
            });
        }
    }
    let mut found = found.into_iter();
    Ok(tables
        .iter()
        .map(|t| match t.row_estimate < ESTIMATE_FROM {
            true => found.next().expect("one count per counted table"),
            false => RowCount::Estimate(t.row_estimate as i64),
        })
        .collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use catalog::Table;
    use serde_json::json;

    use super::{Fit, check_primary_key, check_row_key, linking_foreign_key, select_rows};

    fn events_table() -> Table {
        let column = |name: &str, type_name: &str| {
            json!({ "name": name, "sql_type": type_name, "type_name": type_name, "is_array": false,
                    "nullable": true, "has_default": false, "generated": false })
        };
        serde_json::from_value(json!({
            "name": "events",
            "columns": [column("id", "uuid"), column("connection_id", "text"),
                        column("last_error", "text"), column("payload", "jsonb"),
                        column("api_key", "text")],
            "primary_key": ["id"],
            "foreign_keys": [{ "name": "fk", "columns": ["connection_id"], "references": "c",
                               "referenced_columns": ["id"], "on_delete": "c" }],
            "unique_keys": [["id"]],
            "index_leading_columns": ["id"],
            "row_estimate": 0.0,
        }))
        .unwrap()
    }

    /// A list never fetches a long value whole: PostgreSQL cuts text with `left()` and keeps
    /// JSON over the list's size; a row's own page asks for every value whole. Secrets are
    /// never selected, only whether they are set; foreign keys stay whole (they are links).
    #[test]
    fn lists_cut_long_values_in_sql_and_never_select_a_secret() {
        let table = events_table();
        let list = select_rows(&table, None, Fit::List).text;
        assert!(
            list.contains(r#"to_json(left("last_error", 81))"#),
            "{list}"
        );
        assert!(
            list.contains(r#"WHEN octet_length("payload"::text) <= 2000"#),
            "{list}"
        );
        assert!(list.contains(r#"to_json("connection_id")"#), "{list}");
        let whole = select_rows(&table, None, Fit::Whole).text;
        assert!(
            !whole.contains("left(") && !whole.contains("octet_length"),
            "{whole}"
        );
        for sql in [list, whole] {
            assert!(
                sql.contains(r#"to_json(CASE WHEN "api_key" IS NOT NULL THEN '' END)"#)
                    && !sql.contains(r#"to_json("api_key")"#),
                "{sql}"
            );
        }
    }

    /// A tenant table: keyed `(organization_id, id)`, its run a parent through a composite key.
    pub(crate) fn calls_table() -> Table {
        let column = |name: &str| {
            json!({ "name": name, "sql_type": "text", "type_name": "text", "is_array": false,
                    "nullable": true, "has_default": false, "generated": false })
        };
        let fk = |name: &str, columns: &[&str], references: &str, referenced: &[&str]| {
            json!({ "name": name, "columns": columns, "references": references,
                    "referenced_columns": referenced, "on_delete": "c" })
        };
        serde_json::from_value(json!({
            "name": "calls",
            "columns": [column("id"), column("organization_id"), column("run_id"),
                        column("note")],
            "primary_key": ["organization_id", "id"],
            "foreign_keys": [
                fk("fk_calls_run_id", &["organization_id", "run_id"], "runs",
                   &["organization_id", "id"]),
                fk("fk_calls_organization_id", &["organization_id"], "organizations", &["id"]),
            ],
            "unique_keys": [["organization_id", "id"], ["organization_id", "note"]],
            "index_leading_columns": ["organization_id"],
            "row_estimate": 0.0,
        }))
        .unwrap()
    }

    fn key(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(c, v)| (c.to_string(), v.to_string()))
            .collect()
    }

    fn refusal(result: Result<(), crate::StudioError>) -> String {
        match result {
            Err(crate::StudioError::BadRequest(message)) => message,
            other => panic!("not a bad request: {other:?}"),
        }
    }

    /// A column links through the narrowest foreign key holding it: the organization through
    /// its own key, the run through the composite one.
    #[test]
    fn a_column_links_through_the_narrowest_foreign_key_holding_it() {
        let table = calls_table();
        let name = |column: &str| linking_foreign_key(&table, column).map(|fk| fk.name.as_str());
        assert_eq!(name("organization_id"), Some("fk_calls_organization_id"));
        assert_eq!(name("run_id"), Some("fk_calls_run_id"));
        assert_eq!(name("note"), None);
        // A text column in a composite foreign key is a link too, so a list never cuts it.
        let list = select_rows(&table, None, Fit::List).text;
        assert!(list.contains(r#"to_json("run_id")"#), "{list}");
        assert!(list.contains(r#"to_json(left("note", 81))"#), "{list}");
    }

    /// A row is named by its whole primary key or another unique key; a write only by the
    /// primary key. A refusal names the missing key columns, or the extra ones.
    #[test]
    fn a_key_missing_a_column_is_refused_naming_it() {
        let table = calls_table();
        let whole = key(&[("organization_id", "o"), ("id", "1")]);
        check_row_key(&table, &whole).unwrap();
        check_primary_key(&table, &whole).unwrap();
        let reversed = key(&[("id", "1"), ("organization_id", "o")]);
        check_primary_key(&table, &reversed).unwrap();
        let unique = key(&[("organization_id", "o"), ("note", "n")]);
        check_row_key(&table, &unique).unwrap();
        assert_eq!(
            refusal(check_primary_key(&table, &unique)),
            "a row of calls is named by its whole primary key (organization_id, id); the \
             request has (organization_id, note): missing id"
        );
        assert_eq!(
            refusal(check_row_key(&table, &key(&[("id", "1")]))),
            "a row of calls is named by its whole primary key (organization_id, id) or another \
             unique key; the request has (id): missing organization_id"
        );
        let extra = key(&[("organization_id", "o"), ("id", "1"), ("note", "n")]);
        for result in [
            check_row_key(&table, &extra),
            check_primary_key(&table, &extra),
        ] {
            assert!(refusal(result).ends_with(": note not part of it"));
        }
        let twice = key(&[("organization_id", "o"), ("id", "1"), ("id", "2")]);
        for result in [
            check_row_key(&table, &twice),
            check_primary_key(&table, &twice),
        ] {
            assert_eq!(refusal(result), "calls.id is given twice in the row's key");
        }
        assert!(refusal(check_row_key(&table, &[])).ends_with("missing organization_id, id"));
        let mut keyless = calls_table();
        keyless.primary_key.clear();
        assert_eq!(
            refusal(check_primary_key(&keyless, &[])),
            "calls has no primary key, so its rows cannot be edited or deleted here"
        );
    }
}
