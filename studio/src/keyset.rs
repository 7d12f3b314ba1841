//! Keyset pagination over any table, sorted by its primary key or by an indexed column with the
//! primary key breaking ties. A page starts after (or ends before) a cursor, the sort value and
//! key of the row at its edge, so paging is as fast on the millionth row as on the first and
//! never skips or repeats a row when rows are added meanwhile. NULL sort values come last in
//! ascending order and first in descending, the order a backward scan of a default index gives.

use catalog::{Column, Table};
use sea_orm::ConnectionTrait;

use crate::{
    StudioError,
    browse::{Fit, Row, Sql, fetch_rows, ident, push_filters, qualified, select_rows},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    Asc,
    Desc,
}

impl Dir {
    pub fn parse(raw: &str) -> Result<Self, StudioError> {
        match raw {
            "asc" => Ok(Self::Asc),
            "desc" => Ok(Self::Desc),
            other => Err(StudioError::BadRequest(format!(
                "dir must be `asc` or `desc`, not `{other}`"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }

    pub fn reversed(self) -> Self {
        match self {
            Self::Asc => Self::Desc,
            Self::Desc => Self::Asc,
        }
    }
}

/// The edge of a page: the sort column's value (when sorting by a column other than the key)
/// and the primary key, as text. Travels in URLs as a JSON array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub sort_value: Option<String>,
    pub key: Vec<String>,
}

impl Cursor {
    fn of(row: &Row) -> Self {
        Self {
            sort_value: row.sort_value.clone(),
            key: row.key.clone(),
        }
    }

    pub fn encode(&self, by_column: bool) -> String {
        let mut parts: Vec<Option<&str>> = Vec::new();
        if by_column {
            parts.push(self.sort_value.as_deref());
        }
        parts.extend(self.key.iter().map(|k| Some(k.as_str())));
        serde_json::to_string(&parts).expect("strings serialize")
    }

    pub fn decode(raw: &str, by_column: bool, key_len: usize) -> Result<Self, StudioError> {
        let bad = || {
            StudioError::BadRequest(format!(
                "the page cursor `{raw}` does not fit this sort; start again from the first page"
            ))
        };
        let mut parts: Vec<Option<String>> = serde_json::from_str(raw).map_err(|_| bad())?;
        if parts.len() != key_len + usize::from(by_column) {
            return Err(bad());
        }
        let sort_value = if by_column { parts.remove(0) } else { None };
        let key = parts
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or_else(bad)?;
        Ok(Self { sort_value, key })
    }
}

/// Which page of which ordering.
#[derive(Debug, Clone)]
pub struct PageRequest<'a> {
    /// `None` sorts by the primary key.
    pub sort: Option<&'a Column>,
    pub dir: Dir,
    pub after: Option<Cursor>,
    pub before: Option<Cursor>,
    pub limit: u64,
}

#[derive(Debug)]
pub struct Page {
    pub rows: Vec<Row>,
    pub prev: Option<Cursor>,
    pub next: Option<Cursor>,
}

pub async fn fetch_page(
    db: &impl ConnectionTrait,
    table: &Table,
    filters: &[(String, String)],
    request: &PageRequest<'_>,
) -> Result<Page, StudioError> {
    if table.primary_key.is_empty() {
        return Err(StudioError::BadRequest(format!(
            "{} has no primary key, so it cannot be paged",
            table.name
        )));
    }
    let backwards = request.before.is_some();
    let dir = if backwards {
        request.dir.reversed()
    } else {
        request.dir
    };
    let mut sql = select_rows(table, request.sort, Fit::List);
    push_filters(&mut sql, table, filters)?;
    if let Some(cursor) = request.before.as_ref().or(request.after.as_ref()) {
        sql.push(if filters.is_empty() {
            " WHERE "
        } else {
            " AND "
        });
        push_after(&mut sql, table, request.sort, dir, cursor);
    }
    push_order(&mut sql, table, request.sort, dir);
    sql.push(&format!(" LIMIT {}", request.limit + 1));
    let mut rows = fetch_rows(db, table, &sql, request.sort.is_some()).await?;
    let more = rows.len() as u64 > request.limit;
    rows.truncate(request.limit as usize);
    if backwards {
        rows.reverse();
    }
    let first = rows.first().map(Cursor::of);
    let last = rows.last().map(Cursor::of);
    let (prev, next) = match (backwards, request.after.is_some()) {
        (true, _) => (first.filter(|_| more), last),
        (false, true) => (first, last.filter(|_| more)),
        (false, false) => (None, last.filter(|_| more)),
    };
    Ok(Page { rows, prev, next })
}

/// `"id"` or `"a", "b"`: the primary key's columns, for row comparisons.
fn key_columns(table: &Table) -> String {
    let names: Vec<String> = table.primary_key.iter().map(|k| ident(k)).collect();
    names.join(", ")
}

/// `($1, $2)`: the cursor's key, led by its sort value when given.
fn push_key_tuple_value(
    sql: &mut Sql,
    table: &Table,
    cursor: &Cursor,
    sort: Option<(&Column, &String)>,
) {
    sql.push("(");
    if let Some((column, value)) = sort {
        sql.push_value(column, value).push(", ");
    }
    for (i, (name, value)) in table.primary_key.iter().zip(&cursor.key).enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        let column = table.column(name).expect("primary key columns exist");
        sql.push_value(column, value);
    }
    sql.push(")");
}

/// The condition "comes after `cursor` in `dir`". Row comparisons (`(s, id) > ($1, $2)`) let
/// PostgreSQL start the index scan at the cursor instead of filtering its way there; only NULL
/// sort values need spelling out, since a comparison with NULL is never true.
fn push_after(sql: &mut Sql, table: &Table, sort: Option<&Column>, dir: Dir, cursor: &Cursor) {
    let op = if dir == Dir::Asc { ">" } else { "<" };
    let key = key_columns(table);
    let Some(sort) = sort else {
        sql.push(&format!("({key}) {op} "));
        push_key_tuple_value(sql, table, cursor, None);
        return;
    };
    let s = ident(&sort.name);
    match (dir, &cursor.sort_value) {
        // Ascending, NULLs last: after a value come the greater ones, then every NULL.
        (Dir::Asc, Some(v)) if sort.nullable => {
            sql.push(&format!("(({s}, {key}) > "));
            push_key_tuple_value(sql, table, cursor, Some((sort, v)));
            sql.push(&format!(" OR {s} IS NULL)"));
        }
        // Descending, NULLs first: they are all behind a value already.
        (_, Some(v)) => {
            sql.push(&format!("({s}, {key}) {op} "));
            push_key_tuple_value(sql, table, cursor, Some((sort, v)));
        }
        (Dir::Asc, None) => {
            sql.push(&format!("({s} IS NULL AND ({key}) > "));
            push_key_tuple_value(sql, table, cursor, None);
            sql.push(")");
        }
        (Dir::Desc, None) => {
            sql.push(&format!("({s} IS NOT NULL OR ({key}) < "));
            push_key_tuple_value(sql, table, cursor, None);
            sql.push(")");
        }
    }
}

/// `ORDER BY` the sort column (if any), then the primary key. Columns are qualified with the
/// table: a bare name in ORDER BY would mean the select list's `id::text`, sorting as text.
pub fn push_order(sql: &mut Sql, table: &Table, sort: Option<&Column>, dir: Dir) {
    let plain = if dir == Dir::Asc { "ASC" } else { "DESC" };
    let mut terms = Vec::new();
    if let Some(sort) = sort {
        let nulls = if dir == Dir::Asc {
            "NULLS LAST"
        } else {
            "NULLS FIRST"
        };
        terms.push(format!("{} {plain} {nulls}", qualified(table, &sort.name)));
    }
    terms.extend(
        table
            .primary_key
            .iter()
            .map(|k| format!("{} {plain}", qualified(table, k))),
    );
    sql.push(&format!(" ORDER BY {}", terms.join(", ")));
}
