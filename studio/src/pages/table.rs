//! `/tables/{table}`: a page of rows, sorted by an indexed column, filtered by equality, paged
//! by keyset.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use catalog::{Column, Table};
use db_connect::secrets::is_secret_column;
use maud::{Markup, html};

use super::{notice, table};
use crate::{
    Studio, StudioError,
    browse::{DEFAULT_PAGE, MAX_PAGE, filterable},
    html::{filter_params, page, rows_grid, table_url},
    keyset::{Cursor, Dir, PageRequest, fetch_page},
};

/// Columns a page can be ordered by: the primary key and any column leading a full btree
/// index, so every ordering reads an index.
pub fn sortable(table: &Table) -> Vec<&Column> {
    table
        .columns
        .iter()
        .filter(|c| !is_secret_column(&table.name, &c.name))
        .filter(|c| {
            table.index_leading_columns.contains(&c.name)
                || table.primary_key == std::slice::from_ref(&c.name)
        })
        .collect()
}

/// What the URL asks for, validated against the table.
struct View<'a> {
    /// `None`: by primary key.
    sort: Option<&'a Column>,
    sort_name: String,
    dir: Dir,
    limit: u64,
    filters: Vec<(String, String)>,
    after: Option<String>,
    before: Option<String>,
}

impl<'a> View<'a> {
    fn parse(table: &'a Table, pairs: &[(String, String)]) -> Result<Self, StudioError> {
        let default_sort = if sortable(table).iter().any(|c| c.name == "created_at") {
            ("created_at", Dir::Desc)
        } else {
            (
                table.primary_key.first().map_or("", String::as_str),
                Dir::Asc,
            )
        };
        let mut view = View {
            sort: None,
            sort_name: default_sort.0.to_owned(),
            dir: default_sort.1,
            limit: DEFAULT_PAGE,
            filters: Vec::new(),
            after: None,
            before: None,
        };
        for (name, value) in pairs {
            match name.as_str() {
                "sort" => view.sort_name = value.clone(),
                "dir" => view.dir = Dir::parse(value)?,
                "limit" => {
                    view.limit = value
                        .parse::<u64>()
                        .ok()
                        .filter(|n| (1..=MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            StudioError::BadRequest(format!(
                                "limit must be a number from 1 to {MAX_PAGE}, not `{value}`"
                            ))
                        })?
                }
                "after" => view.after = Some(value.clone()),
                "before" => view.before = Some(value.clone()),
                "notice" => {}
                other => match other.strip_prefix("eq.") {
                    // An empty box in the filter form means "no filter on this column".
                    Some(_) if value.is_empty() => {}
                    Some(column) => {
                        filterable(table, column)?;
                        view.filters.push((column.to_owned(), value.clone()));
                    }
                    None => {
                        return Err(StudioError::BadRequest(format!(
                            "unknown parameter `{other}`: use sort, dir, limit, after, before or eq.<column>"
                        )));
                    }
                },
            }
        }
        if !view.sort_name.is_empty() && table.primary_key != [view.sort_name.clone()] {
            let columns = sortable(table);
            let column = columns
                .iter()
                .find(|c| c.name == view.sort_name)
                .ok_or_else(|| {
                    StudioError::BadRequest(format!(
                        "{}.{} cannot be sorted by: it leads no index. Sortable: {}",
                        table.name,
                        view.sort_name,
                        columns
                            .iter()
                            .map(|c| c.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?;
            view.sort = Some(column);
        }
        Ok(view)
    }

    /// The URL parameters of this view with `extra` (a cursor) added.
    fn params(&self, extra: Option<(&str, String)>) -> Vec<(String, String)> {
        self.params_sorted(&self.sort_name, self.dir, extra)
    }

    /// The same filters and page size, sorted by `sort` in `dir`.
    fn params_sorted(
        &self,
        sort: &str,
        dir: Dir,
        extra: Option<(&str, String)>,
    ) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("sort".to_owned(), sort.to_owned()),
            ("dir".to_owned(), dir.as_str().to_owned()),
        ];
        if self.limit != DEFAULT_PAGE {
            pairs.push(("limit".to_owned(), self.limit.to_string()));
        }
        pairs.extend(filter_params(&self.filters));
        if let Some((k, v)) = extra {
            pairs.push((k.to_owned(), v));
        }
        pairs
    }
}

pub async fn show(
    State(studio): State<Arc<Studio>>,
    Path(name): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Markup, StudioError> {
    let catalog = studio.catalog();
    let table = table(&catalog, &name)?;
    let view = View::parse(table, &pairs)?;
    let by_column = view.sort.is_some();
    let key_len = table.primary_key.len();
    let decode = |raw: &Option<String>| {
        raw.as_deref()
            .map(|r| Cursor::decode(r, by_column, key_len))
            .transpose()
    };
    let request = PageRequest {
        sort: view.sort,
        dir: view.dir,
        after: decode(&view.after)?,
        before: decode(&view.before)?,
        limit: view.limit,
    };
    let rows = fetch_page(&studio.db, table, &view.filters, &request).await?;
    let sortable = sortable(table);
    let header = |column: &Column| {
        let sorted_here = view.sort_name == column.name;
        let next_dir = if sorted_here && view.dir == Dir::Asc {
            Dir::Desc
        } else {
            Dir::Asc
        };
        let href = table_url(
            &table.name,
            &view.params_sorted(&column.name, next_dir, None),
        );
        html! {
            @if sortable.iter().any(|c| c.name == column.name) {
                a.sort href=(href) title="sort (indexed)" {
                    (column.name)
                    @if sorted_here { (if view.dir == Dir::Asc { " ▲" } else { " ▼" }) }
                }
            } @else {
                span title="not indexed: not sortable" { (column.name) }
            }
            br;
            span.muted { (column.sql_type) }
        }
    };
    let filtered = !view.filters.is_empty();
    let body = html! {
        h1 { (table.name) }
        @if let Some(text) = notice(&pairs) { p.notice role="status" { (text) } }
        (relations(&catalog, table))
        form.filters method="get" action=(table_url(&table.name, &[])) {
            input type="hidden" name="sort" value=(view.sort_name);
            input type="hidden" name="dir" value=(view.dir.as_str());
            @if view.limit != DEFAULT_PAGE { input type="hidden" name="limit" value=(view.limit); }
            @for column in &table.columns {
                @if !is_secret_column(&table.name, &column.name) {
                    label {
                        (column.name)
                        input type="text" size="12" name={ "eq." (column.name) }
                            value=(view.filters.iter().find(|(c, _)| *c == column.name).map_or("", |(_, v)| v.as_str()));
                    }
                }
            }
            button type="submit" { "Filter" }
            @if filtered { a href=(table_url(&table.name, &[])) { "clear" } }
        }
        div.bar {
            span.muted {
                (rows.rows.len()) " rows on this page, sorted by " (view.sort_name) " " (view.dir.as_str())
                @if filtered { ", filtered" }
            }
            @if view.after.is_some() || view.before.is_some() {
                a.first href=(table_url(&table.name, &view.params(None))) { "⇤ first page" }
            }
            @if let Some(prev) = &rows.prev {
                a.prev rel="prev" href=(table_url(&table.name, &view.params(Some(("before", prev.encode(by_column)))))) { "← previous" }
            }
            @if let Some(next) = &rows.next {
                a.next rel="next" href=(table_url(&table.name, &view.params(Some(("after", next.encode(by_column)))))) { "next →" }
            }
        }
        @if rows.rows.is_empty() {
            p.muted { "No rows" @if filtered { " match these filters" } "." }
        } @else {
            (rows_grid(table, &rows.rows, header))
        }
    };
    Ok(page(&table.name, Some(studio.write), body))
}

/// Links to the tables this one references and to those referencing it.
pub fn relations(catalog: &catalog::Catalog, table: &Table) -> Markup {
    let referencing: Vec<_> = catalog.referencing(&table.name).collect();
    html! {
        @if !table.foreign_keys.is_empty() || !referencing.is_empty() {
            p.relations {
                @if !table.foreign_keys.is_empty() {
                    "References: "
                    @for fk in &table.foreign_keys {
                        a href=(table_url(&fk.references, &[])) title=(fk.name) {
                            (fk.references) " (" (fk.columns.join(", ")) ")"
                        }
                    }
                }
                @if !referencing.is_empty() {
                    "Referenced by: "
                    @for (child, fk) in &referencing {
                        a href=(table_url(&child.name, &[])) title=(fk.name) {
                            (child.name) "." (fk.columns.join(", "))
                        }
                    }
                }
            }
        }
    }
}
