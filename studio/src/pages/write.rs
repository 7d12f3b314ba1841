//! `--write`: edit a row's non-secret columns or delete a row. Each goes through a confirmation
//! page, runs in one transaction, and applies only if the row is still the version that was
//! shown (`xmin`), so a change made meanwhile by anyone else is never overwritten blindly. A
//! write names its row by the whole primary key (on Citus it leads with `organization_id`).

use std::sync::Arc;

use axum::{
    Form,
    extract::{Path, Query, State},
    response::{IntoResponse, Redirect, Response},
};
use catalog::{Column, OnDelete, Table};
use db_connect::secrets::{REDACTED, is_secret_column, redact_json};
use maud::{Markup, html};
use sea_orm::{ConnectionTrait, DatabaseTransaction, TransactionTrait};
use serde_json::Value as Json;

use super::{describe, no_row, require_row, row::referencing, table};
use crate::{
    Studio, StudioError,
    browse::{Sql, check_primary_key, edit_text_expr, ident, is_json, push_filters},
    html::{filter_params, page, row_url, rows, table_url},
};

fn require_write(studio: &Studio) -> Result<(), StudioError> {
    if studio.write {
        Ok(())
    } else {
        Err(StudioError::Forbidden(
            "the studio is read-only; start it with `cargo run -p studio -- --write` to edit or delete rows"
                .into(),
        ))
    }
}

/// Columns a person may change: not secret, not part of the primary key (links and references
/// follow it), not generated.
fn editable(table: &Table) -> impl Iterator<Item = &Column> {
    table.columns.iter().filter(|c| {
        !is_secret_column(&table.name, &c.name)
            && !table.primary_key.contains(&c.name)
            && !c.generated
    })
}

/// The fields a write form sends back.
#[derive(Debug, Default)]
struct Submitted {
    key: Vec<(String, String)>,
    version: String,
    /// Column name and its new text, `None` for NULL.
    values: Vec<(String, Option<String>)>,
    confirmed: bool,
}

impl Submitted {
    fn parse(
        studio: &Studio,
        table: &Table,
        pairs: &[(String, String)],
    ) -> Result<Self, StudioError> {
        let token = pairs
            .iter()
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v.as_str());
        if !studio.is_form_token(token) {
            return Err(StudioError::Forbidden(
                "the form is missing this studio's token (it was opened before a restart, or \
                 sent from another site); reload the page and try again"
                    .into(),
            ));
        }
        let mut submitted = Self::default();
        let nulls: Vec<&str> = pairs
            .iter()
            .filter_map(|(k, _)| k.strip_prefix("null."))
            .collect();
        for (name, value) in pairs {
            if let Some(column) = name.strip_prefix("key.") {
                submitted.key.push((column.to_owned(), value.clone()));
            } else if let Some(column) = name.strip_prefix("set.") {
                if !editable(table).any(|c| c.name == column) {
                    return Err(StudioError::BadRequest(format!(
                        "{}.{column} cannot be edited here (secret, primary key, generated or unknown)",
                        table.name
                    )));
                }
                let value = (!nulls.contains(&column)).then(|| value.clone());
                submitted.values.push((column.to_owned(), value));
            } else if name == "version" {
                submitted.version = value.clone();
            } else if name == "confirm" {
                submitted.confirmed = value == "yes";
            }
        }
        Ok(submitted)
    }

    /// The fields that carry this submission to the next step.
    fn hidden(&self, token: &str) -> Markup {
        html! {
            input type="hidden" name="token" value=(token);
            input type="hidden" name="version" value=(self.version);
            @for (column, value) in &self.key {
                input type="hidden" name={ "key." (column) } value=(value);
            }
            @for (column, value) in &self.values {
                input type="hidden" name={ "set." (column) } value=(value.as_deref().unwrap_or(""));
                @if value.is_none() { input type="hidden" name={ "null." (column) } value="1"; }
            }
        }
    }
}

/// A row's editable columns as an edit form shows them.
struct Current {
    version: String,
    /// Each editable column's edit text, `None` for NULL.
    values: Vec<Option<String>>,
    /// Whether each is JSON holding a secret key or token: shown redacted, never editable here
    /// (saving the redacted text back would overwrite the secret).
    locked: Vec<bool>,
}

/// The row's editable columns as edit text, with its version, or `None` if it is gone.
async fn current(
    db: &impl ConnectionTrait,
    table: &Table,
    key: &[(String, String)],
) -> Result<Option<Current>, StudioError> {
    check_primary_key(table, key)?;
    let columns: Vec<&Column> = editable(table).collect();
    let mut sql = Sql::default();
    let mut select = vec!["xmin::text".to_owned()];
    select.extend(columns.iter().map(|c| edit_text_expr(c)));
    sql.push(&format!(
        "SELECT {} FROM {}",
        select.join(", "),
        ident(&table.name)
    ));
    push_filters(&mut sql, table, key)?;
    let Some(row) = db.query_one_raw(sql.statement()).await? else {
        return Ok(None);
    };
    let version = row.try_get_by_index::<String>(0)?;
    let mut values = Vec::with_capacity(columns.len());
    let mut locked = Vec::with_capacity(columns.len());
    for (i, column) in columns.iter().enumerate() {
        let mut text = row.try_get_by_index::<Option<String>>(i + 1)?;
        let redacted = match &text {
            Some(t) if is_json(column) => serde_json::from_str::<Json>(t)
                .ok()
                .map(|mut json| (redact_json(&mut json), json))
                .filter(|(changed, _)| *changed)
                .map(|(_, json)| serde_json::to_string_pretty(&json).expect("JSON serializes")),
            _ => None,
        };
        locked.push(redacted.is_some());
        if redacted.is_some() {
            text = redacted;
        }
        values.push(text);
    }
    Ok(Some(Current {
        version,
        values,
        locked,
    }))
}

fn changed_meanwhile(table: &Table) -> StudioError {
    StudioError::Conflict(format!(
        "This row of {} changed since you opened it; nothing was written. Reload it and make \
         your change again.",
        table.name
    ))
}

pub async fn edit_form(
    State(studio): State<Arc<Studio>>,
    Path(name): Path<String>,
    Query(key): Query<Vec<(String, String)>>,
) -> Result<Markup, StudioError> {
    require_write(&studio)?;
    let catalog = studio.catalog();
    let table = table(&catalog, &name)?;
    let current = current(&studio.db, table, &key)
        .await?
        .ok_or_else(|| no_row(table, &key))?;
    let submitted = Submitted {
        key,
        version: current.version.clone(),
        ..Default::default()
    };
    Ok(edit_page(&studio, table, &submitted, &current))
}

fn edit_page(studio: &Studio, table: &Table, submitted: &Submitted, current: &Current) -> Markup {
    let action = row_url(&table.name, "/edit", &[]);
    let body = html! {
        h1 { "Edit " a href=(row_url(&table.name, "", &submitted.key)) { (table.name) " › " (describe(&submitted.key)) } }
        p.muted { "Values are typed as PostgreSQL reads them (JSON for jsonb, {a,b} for arrays, ISO 8601 for timestamps). Secret and primary-key columns are not editable. The next page shows the change before anything is written." }
        form.edit method="post" action=(action) {
            (submitted.hidden(&studio.form_token))
            table.grid {
                @for ((column, value), locked) in editable(table).zip(&current.values).zip(&current.locked) {
                    tr data-column=(column.name) {
                        th { label for={ "set." (column.name) } { (column.name) } br; span.muted { (column.sql_type) } }
                        @if *locked {
                            td.locked {
                                pre { (value.as_deref().unwrap_or("")) }
                                p.muted { "Holds a secret key or token (shown as " code { (REDACTED) } "): not editable here." }
                            }
                            td {}
                        } @else {
                        td { (input(column, value.as_deref())) }
                        td {
                            @if column.nullable {
                                label { input type="checkbox" name={ "null." (column.name) } value="1" checked[value.is_none()]; " NULL" }
                            }
                        }
                        }
                    }
                }
            }
            p { button type="submit" { "Review changes" } " " a href=(row_url(&table.name, "", &submitted.key)) { "cancel" } }
        }
    };
    page(&format!("Edit {}", table.name), Some(true), body)
}

fn input(column: &Column, value: Option<&str>) -> Markup {
    let name = format!("set.{}", column.name);
    let text = value.unwrap_or("");
    match column.type_name.as_str() {
        "bool" if !column.is_array => html! {
            select id=(name) name=(name) {
                option value="true" selected[text == "true"] { "true" }
                option value="false" selected[text == "false"] { "false" }
            }
        },
        "jsonb" | "json" | "text" if !column.is_array => html! {
            textarea id=(name) name=(name) rows=(text.lines().count().clamp(2, 16)) { (text) }
        },
        _ => html! { input id=(name) type="text" size="48" name=(name) value=(text); },
    }
}

pub async fn edit_submit(
    State(studio): State<Arc<Studio>>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, StudioError> {
    require_write(&studio)?;
    let catalog = studio.catalog();
    let table = table(&catalog, &name)?;
    let mut submitted = Submitted::parse(&studio, table, &pairs)?;
    let Current {
        version,
        values,
        locked,
    } = current(&studio.db, table, &submitted.key)
        .await?
        .ok_or_else(|| no_row(table, &submitted.key))?;
    if version != submitted.version {
        return Err(changed_meanwhile(table));
    }
    let columns: Vec<&Column> = editable(table).collect();
    for (name, new) in &mut submitted.values {
        let at = columns.iter().position(|c| &c.name == name);
        if let Some(at) = at
            && locked[at]
        {
            return Err(StudioError::BadRequest(format!(
                "{}.{name} holds a secret key or token: it cannot be edited here",
                table.name
            )));
        }
        if let (Some(at), Some(text)) = (at, new.as_mut()) {
            *text = line_endings_like(values[at].as_deref(), text);
        }
    }
    let changes: Vec<(&Column, Option<&str>, Option<&str>)> = submitted
        .values
        .iter()
        .filter_map(|(name, new)| {
            let at = columns.iter().position(|c| &c.name == name)?;
            let old = values[at].as_deref();
            (old != new.as_deref()).then_some((columns[at], old, new.as_deref()))
        })
        .collect();
    if changes.is_empty() {
        let body = html! {
            p.notice { "Nothing changed: every value is what the row already holds." }
            p { a href=(row_url(&table.name, "", &submitted.key)) { "Back to the row" } }
        };
        return Ok(page("No change", Some(true), body).into_response());
    }
    if !submitted.confirmed {
        let only_changes = Submitted {
            values: changes
                .iter()
                .map(|(c, _, new)| (c.name.clone(), new.map(str::to_owned)))
                .collect(),
            key: submitted.key.clone(),
            version: submitted.version.clone(),
            confirmed: false,
        };
        let body = html! {
            h1 { "Confirm the change to " (table.name) " › " (describe(&submitted.key)) }
            table.grid.changes {
                tr { th { "column" } th { "now" } th { "after saving" } }
                @for (column, old, new) in &changes {
                    tr data-column=(column.name) {
                        th { (column.name) }
                        td { (shown(*old)) }
                        td { (shown(*new)) }
                    }
                }
            }
            form method="post" action=(row_url(&table.name, "/edit", &[])) {
                (only_changes.hidden(&studio.form_token))
                input type="hidden" name="confirm" value="yes";
                p { button type="submit" { "Save in one transaction" } " "
                    a href=(row_url(&table.name, "/edit", &submitted.key)) { "back to the form" } }
            }
        };
        return Ok(page("Confirm", Some(true), body).into_response());
    }
    let txn = studio.db.begin().await?;
    apply_update(&txn, table, &submitted, &changes).await?;
    txn.commit().await?;
    tracing::info!(table = %table.name, key = %describe(&submitted.key), columns = changes.len(), "row updated");
    let mut back = submitted.key.clone();
    back.push(("notice".into(), "saved".into()));
    Ok(Redirect::to(&row_url(&table.name, "", &back)).into_response())
}

/// Browsers send every line break of a form field as CRLF; an untouched multi-line value must
/// not come back rewritten, so the row's own line endings win.
fn line_endings_like(old: Option<&str>, new: &str) -> String {
    if old.is_some_and(|o| o.contains("\r\n")) {
        new.to_owned()
    } else {
        new.replace("\r\n", "\n")
    }
}

fn shown(value: Option<&str>) -> Markup {
    match value {
        None => html! { span.null { "NULL" } },
        Some(text) => html! { pre { (text) } },
    }
}

/// The column every writer keeps current itself (no trigger does: docs/schema.md).
const UPDATED_AT: &str = "updated_at";

/// `, updated_at = now()` when the table has the column and the edit leaves it alone.
fn touch_updated_at(
    table: &Table,
    changes: &[(&Column, Option<&str>, Option<&str>)],
) -> &'static str {
    let has = table.columns.iter().any(|c| c.name == UPDATED_AT);
    let edited = changes.iter().any(|(c, ..)| c.name == UPDATED_AT);
    match has && !edited {
        true => ", updated_at = now()",
        false => "",
    }
}

/// One `UPDATE ... WHERE <key> AND xmin = <version>`; no row means it changed meanwhile.
async fn apply_update(
    txn: &DatabaseTransaction,
    table: &Table,
    submitted: &Submitted,
    changes: &[(&Column, Option<&str>, Option<&str>)],
) -> Result<(), StudioError> {
    let mut sql = Sql::default();
    sql.push(&format!("UPDATE {} SET ", ident(&table.name)));
    for (i, (column, _, new)) in changes.iter().enumerate() {
        if i > 0 {
            sql.push(", ");
        }
        sql.push(&format!("{} = ", ident(&column.name)));
        match new {
            Some(text) => sql.push_value(column, text),
            None => sql.push("NULL"),
        };
    }
    sql.push(touch_updated_at(table, changes));
    push_filters(&mut sql, table, &submitted.key)?;
    push_version(&mut sql, &submitted.version);
    if txn.execute_raw(sql.statement()).await?.rows_affected() != 1 {
        return Err(changed_meanwhile(table));
    }
    Ok(())
}

fn push_version(sql: &mut Sql, version: &str) {
    sql.push(" AND xmin::text = ").push_text(version);
}

pub async fn delete_confirm(
    State(studio): State<Arc<Studio>>,
    Path(name): Path<String>,
    Query(key): Query<Vec<(String, String)>>,
) -> Result<Markup, StudioError> {
    require_write(&studio)?;
    let catalog = studio.catalog();
    let table = table(&catalog, &name)?;
    check_primary_key(table, &key)?;
    let row = require_row(&studio.db, table, &key).await?;
    let effects = referencing(&studio.db, &catalog, table, &row).await?;
    let submitted = Submitted {
        key: key.clone(),
        version: row.version.clone(),
        ..Default::default()
    };
    let blocked = effects
        .iter()
        .any(|e| e.count > 0 && matches!(e.fk.on_delete, OnDelete::NoAction | OnDelete::Restrict));
    let body = html! {
        h1 { "Delete " a href=(row_url(&table.name, "", &key)) { (table.name) " › " (describe(&key)) } "?" }
        @if effects.iter().all(|e| e.count == 0) {
            p { "No other row references this one." }
        } @else {
            ul.effects {
                @for effect in effects.iter().filter(|e| e.count > 0) {
                    li data-fk=(effect.fk.name) {
                        (rows(effect.count)) " of "
                        a href=(table_url(&effect.child.name, &filter_params(&effect.filters))) { (effect.child.name) }
                        " reference it through " code { (effect.fk.name) } ": "
                        @match effect.fk.on_delete {
                            OnDelete::Cascade => "they will be deleted too (and whatever references them, by the same rules).",
                            OnDelete::SetNull => { "their " (effect.fk.columns.join(", ")) " will be set to NULL." },
                            OnDelete::SetDefault => { "their " (effect.fk.columns.join(", ")) " will be set to the default." },
                            OnDelete::NoAction | OnDelete::Restrict => "PostgreSQL will refuse the delete while they exist.",
                        }
                    }
                }
            }
        }
        @if blocked { p.error { "This delete will be refused by a foreign key; you can still try it, and nothing will change." } }
        form method="post" action=(row_url(&table.name, "/delete", &[])) {
            (submitted.hidden(&studio.form_token))
            p { button.danger type="submit" { "Delete in one transaction" } " "
                a href=(row_url(&table.name, "", &key)) { "cancel" } }
        }
    };
    Ok(page(
        &format!("Delete from {}", table.name),
        Some(true),
        body,
    ))
}

pub async fn delete_submit(
    State(studio): State<Arc<Studio>>,
    Path(name): Path<String>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, StudioError> {
    require_write(&studio)?;
    let catalog = studio.catalog();
    let table = table(&catalog, &name)?;
    let submitted = Submitted::parse(&studio, table, &pairs)?;
    check_primary_key(table, &submitted.key)?;
    let txn = studio.db.begin().await?;
    require_row(&txn, table, &submitted.key).await?;
    let mut sql = Sql::default();
    sql.push(&format!("DELETE FROM {}", ident(&table.name)));
    push_filters(&mut sql, table, &submitted.key)?;
    push_version(&mut sql, &submitted.version);
    if txn.execute_raw(sql.statement()).await?.rows_affected() != 1 {
        return Err(changed_meanwhile(table));
    }
    txn.commit().await?;
    tracing::info!(table = %table.name, key = %describe(&submitted.key), "row deleted");
    Ok(Redirect::to(&table_url(
        &table.name,
        &[("notice".into(), "deleted".into())],
    ))
    .into_response())
}
