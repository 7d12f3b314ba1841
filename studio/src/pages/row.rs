//! `/tables/{table}/row?<key>=<value>`: one row whole, and the rows that reference it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use catalog::{Catalog, ForeignKey, Table};
use maud::{Markup, html};
use sea_orm::ConnectionTrait;

use super::{describe, notice, require_row, table};
use crate::{
    Studio, StudioError,
    browse::{Fit, Row, Sql, fetch_rows, ident, key_of, push_filters, select_rows},
    html::{self, cell, filter_params, page, row_url, rows_grid, table_url, value_text},
    keyset::{Dir, push_order},
    pages::table::relations,
};

/// How many referencing rows a row's page shows per foreign key.
const REFERENCING_SHOWN: u64 = 10;

/// The rows of one table that reference one row through one foreign key.
pub struct Referencing<'a> {
    pub child: &'a Table,
    pub fk: &'a ForeignKey,
    /// The foreign key's columns with the referenced row's values, as table-page filters.
    pub filters: Vec<(String, String)>,
    pub count: i64,
}

/// Every foreign key pointing at `row`, with how many rows use it.
pub async fn referencing<'a>(
    db: &impl ConnectionTrait,
    catalog: &'a Catalog,
    table: &'a Table,
    row: &Row,
) -> Result<Vec<Referencing<'a>>, StudioError> {
    let mut found = Vec::new();
    for (child, fk) in catalog.referencing(&table.name) {
        let values: Option<Vec<String>> = fk
            .referenced_columns
            .iter()
            .map(|name| {
                let at = table.columns.iter().position(|c| &c.name == name)?;
                row.values[at].value().map(value_text)
            })
            .collect();
        let Some(values) = values else { continue };
        let filters: Vec<(String, String)> = fk.columns.iter().cloned().zip(values).collect();
        let mut sql = Sql::default();
        sql.push(&format!("SELECT count(*) FROM {}", ident(&child.name)));
        push_filters(&mut sql, child, &filters)?;
        let count: i64 = db
            .query_one_raw(sql.statement())
            .await?
            .expect("count(*) returns a row")
            .try_get_by_index(0)?;
        found.push(Referencing {
            child,
            fk,
            filters,
            count,
        });
    }
    Ok(found)
}

fn key_from_query(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .filter(|(k, _)| k != "notice")
        .cloned()
        .collect()
}

pub async fn show(
    State(studio): State<Arc<Studio>>,
    Path(name): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Markup, StudioError> {
    let catalog = studio.catalog();
    let table = table(&catalog, &name)?;
    let key = key_from_query(&pairs);
    let row = require_row(&studio.db, table, &key).await?;
    let mut sections = Vec::new();
    for reference in referencing(&studio.db, &catalog, table, &row).await? {
        let mut sql = select_rows(reference.child, None, Fit::List);
        push_filters(&mut sql, reference.child, &reference.filters)?;
        if !reference.child.primary_key.is_empty() {
            push_order(&mut sql, reference.child, None, Dir::Asc);
        }
        sql.push(&format!(" LIMIT {REFERENCING_SHOWN}"));
        let rows = fetch_rows(&studio.db, reference.child, &sql, false).await?;
        sections.push((reference, rows));
    }
    let own_key = key_of(table, &row);
    let body = html! {
        h1 { a href=(table_url(&table.name, &[])) { (table.name) } " › " (describe(&own_key)) }
        @if let Some(text) = notice(&pairs) { p.notice role="status" { (text) } }
        (relations(&catalog, table))
        @if studio.write {
            div.bar {
                a.button href=(row_url(&table.name, "/edit", &own_key)) { "Edit" }
                a.button.danger href=(row_url(&table.name, "/delete", &own_key)) { "Delete" }
            }
        }
        table.grid.record {
            @for (column, value) in table.columns.iter().zip(&row.values) {
                tr data-column=(column.name) {
                    th { (column.name) br; span.muted { (column.sql_type) } }
                    td { (cell(table, column, value, &row.values, Fit::Whole)) }
                }
            }
        }
        @for (reference, rows) in &sections {
            section.referencing data-fk=(reference.fk.name) {
                h2 {
                    (reference.child.name) " · " (reference.fk.columns.join(", "))
                    span.muted { " (" (html::rows(reference.count)) ", on delete " (reference.fk.on_delete.as_sql()) ")" }
                }
                @if rows.is_empty() {
                    p.muted { "None." }
                } @else {
                    (rows_grid(reference.child, rows, |c| html! { (c.name) }))
                    @if reference.count > rows.len() as i64 {
                        p { a href=(table_url(&reference.child.name, &filter_params(&reference.filters))) {
                            "All " (reference.count) " rows of " (reference.child.name) " →"
                        } }
                    }
                }
            }
        }
    };
    Ok(page(&table.name, Some(studio.write), body))
}
