//! The page frame and how a value looks: NULL, masked secrets, links along foreign keys,
//! collapsible pretty JSON, arrays as chips. maud escapes every interpolated string.

use axum::http::StatusCode;
use catalog::{Column, ForeignKey, Table};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::Value as Json;

use crate::browse::{Fit, LIST_TEXT_CHARS, Row, Shown, key_of, linking_foreign_key};

const CSS: &str = r#"
:root { --fg:#1d2230; --muted:#6b7285; --line:#e3e6ee; --bg:#f7f8fb; --accent:#3451b2; --warn:#b4231f; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color:var(--fg); background:var(--bg); }
header.top { display:flex; gap:1.5rem; align-items:center; padding:.6rem 1.2rem; background:#1d2230; color:#fff; }
header.top a { color:#fff; text-decoration:none; }
header.top .brand { font-weight:700; letter-spacing:.02em; }
header.top nav { display:flex; gap:1rem; }
.mode { margin-left:auto; font-size:12px; padding:.15rem .5rem; border-radius:4px; background:#3a4157; }
.mode.write { background:var(--warn); }
main { padding:1.2rem; }
h1 { font-size:20px; margin:.2rem 0 1rem; }
h2 { font-size:16px; margin:1.4rem 0 .5rem; }
a { color:var(--accent); }
table.grid { border-collapse:collapse; background:#fff; border:1px solid var(--line); }
table.grid th, table.grid td { border-bottom:1px solid var(--line); padding:.3rem .55rem; text-align:left; vertical-align:top; }
table.grid th { background:#eef0f6; font-weight:600; white-space:nowrap; }
table.grid td { max-width:28rem; overflow-wrap:break-word; }
table.grid td.nowrap, table.grid td:first-child { white-space:nowrap; }
.scroll { overflow-x:auto; }
.null { color:var(--muted); font-style:italic; }
.masked { color:var(--muted); letter-spacing:.1em; }
.chip { display:inline-block; padding:0 .45rem; margin:0 .2rem .2rem 0; border-radius:9px; background:#e6eaf7; font-size:12px; }
details summary { cursor:pointer; color:var(--muted); font-family:ui-monospace, monospace; font-size:12px; }
pre { margin:.3rem 0; font:12px/1.4 ui-monospace, monospace; white-space:pre-wrap; }
.domains { display:grid; grid-template-columns:repeat(auto-fill, minmax(20rem, 1fr)); gap:1rem; }
.domain { background:#fff; border:1px solid var(--line); border-radius:6px; padding:.6rem .9rem; }
.domain h2 { margin:.2rem 0 .4rem; }
.domain table { width:100%; }
.domain td.count { text-align:right; color:var(--muted); font-variant-numeric:tabular-nums; }
.notice { padding:.5rem .8rem; border-radius:4px; background:#e7f5ea; border:1px solid #b6dfbf; margin-bottom:1rem; }
.error { padding:.5rem .8rem; border-radius:4px; background:#fdecea; border:1px solid #f3b9b4; color:var(--warn); margin-bottom:1rem; }
.bar { display:flex; flex-wrap:wrap; gap:.8rem; align-items:center; margin:.6rem 0; }
form.filters { display:flex; flex-wrap:wrap; gap:.5rem; align-items:flex-end; margin:.6rem 0; }
form.filters label { display:flex; flex-direction:column; font-size:12px; color:var(--muted); }
input, select, textarea { font:inherit; padding:.2rem .35rem; border:1px solid #c9cedb; border-radius:4px; }
textarea { width:100%; min-height:6rem; font-family:ui-monospace, monospace; font-size:12px; }
button, .button { font:inherit; padding:.25rem .8rem; border-radius:4px; border:1px solid var(--accent); background:var(--accent); color:#fff; cursor:pointer; text-decoration:none; }
button.danger, .button.danger { background:var(--warn); border-color:var(--warn); }
.muted { color:var(--muted); }
.relations { font-size:13px; color:var(--muted); }
.relations a { margin-right:.6rem; }
pre.mermaid { background:#fff; border:1px solid var(--line); padding:1rem; overflow:auto; }
"#;

/// The frame of every page: the header with its navigation and the mode.
pub fn page(title: &str, write: Option<bool>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · studio" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header.top {
                    a.brand href="/" { "studio" }
                    nav {
                        a href="/" { "Tables" }
                        a href="/erd" { "ERD" }
                    }
                    @match write {
                        Some(true) => span.mode.write title="started with --write" { "write mode" },
                        Some(false) => span.mode { "read-only" },
                        None => {}
                    }
                }
                main { (body) }
            }
        }
    }
}

pub fn error_page(status: StatusCode, message: &str) -> Markup {
    page(
        status.canonical_reason().unwrap_or("Error"),
        None,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the tables" } }
        },
    )
}

/// What a URL path segment cannot hold as is.
const PATH_SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

pub fn encode(segment: &str) -> String {
    utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

pub fn query(pairs: &[(String, String)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

pub fn table_url(table: &str, pairs: &[(String, String)]) -> String {
    let q = query(pairs);
    if q.is_empty() {
        format!("/tables/{}", encode(table))
    } else {
        format!("/tables/{}?{q}", encode(table))
    }
}

/// `column = value` pairs as the table page's filter parameters (`eq.column=value`).
pub fn filter_params(filters: &[(String, String)]) -> Vec<(String, String)> {
    filters
        .iter()
        .map(|(c, v)| (format!("eq.{c}"), v.clone()))
        .collect()
}

/// `/tables/{table}/row{suffix}?col=value...`
pub fn row_url(table: &str, suffix: &str, key: &[(String, String)]) -> String {
    format!("/tables/{}/row{suffix}?{}", encode(table), query(key))
}

/// A value as the text a person would type for it (strings unquoted).
pub fn value_text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// The foreign key `column` links through and the whole key of the row it references, from
/// every column of the constraint; `None` when one of them is NULL (then nothing is referenced).
fn parent_key<'a>(
    table: &'a Table,
    column: &str,
    row: &[Shown],
) -> Option<(&'a ForeignKey, Vec<(String, String)>)> {
    let fk = linking_foreign_key(table, column)?;
    let key = fk
        .columns
        .iter()
        .zip(&fk.referenced_columns)
        .map(|(own, referenced)| {
            let at = table.columns.iter().position(|c| &c.name == own)?;
            let value = row.get(at)?.value()?;
            Some((referenced.clone(), value_text(value)))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((fk, key))
}

/// One value of a row whose values (in column order) are `row`. `fit` says whether it was cut
/// for a list (in SQL) or is whole (a row's page).
pub fn cell(table: &Table, column: &Column, value: &Shown, row: &[Shown], fit: Fit) -> Markup {
    let value = match value {
        Shown::Null => return html! { span.null { "NULL" } },
        Shown::Secret { prefix } => {
            return html! {
                span.masked title="secret: never shown" { (prefix) "••••••••" }
            };
        }
        Shown::Cut { bytes } => {
            return html! {
                span.muted.cut { "(" (bytes / 1024) " KiB: the row's page shows all of it)" }
            };
        }
        Shown::Value(value) => value,
    };
    let compact = fit == Fit::List;
    if let Some((fk, key)) = parent_key(table, &column.name, row) {
        let href = row_url(&fk.references, "", &key);
        return html! { a.fk href=(href) title={ "open " (fk.references) } { (value_text(value)) } };
    }
    match value {
        Json::Array(items) if column.is_array => html! {
            @if items.is_empty() { span.muted { "[]" } }
            @for item in items { span.chip { (value_text(item)) } }
        },
        Json::Object(_) | Json::Array(_) => {
            let pretty = serde_json::to_string_pretty(value).expect("JSON serializes");
            let preview = shorten(&value.to_string(), if compact { 48 } else { 120 });
            html! {
                details.json open[!compact] {
                    summary { (preview) }
                    pre { (pretty) }
                }
            }
        }
        Json::String(s) if compact => html! { (shorten(s, LIST_TEXT_CHARS)) },
        other => html! { (value_text(other)) },
    }
}

/// "1 row", "2 rows".
pub fn rows(n: i64) -> String {
    if n == 1 {
        "1 row".to_owned()
    } else {
        format!("{n} rows")
    }
}

/// The link to a row's own page.
pub fn open_link(table: &Table, row: &Row) -> Markup {
    html! { a.open href=(row_url(&table.name, "", &key_of(table, row))) { "open" } }
}

/// Rows as a grid, with `header` drawing each column's heading.
pub fn rows_grid(table: &Table, rows: &[Row], header: impl Fn(&Column) -> Markup) -> Markup {
    html! {
        div.scroll {
            table.grid {
                thead { tr {
                    th {}
                    @for column in &table.columns { th { (header(column)) } }
                } }
                tbody {
                    @for row in rows {
                        tr {
                            td { (open_link(table, row)) }
                            @for (column, value) in table.columns.iter().zip(&row.values) {
                                td { (cell(table, column, value, &row.values, Fit::List)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::parent_key;
    use crate::browse::{Shown, tests::calls_table};

    fn text(value: &str) -> Shown {
        Shown::Value(json!(value))
    }

    /// A parent link carries every column of its foreign key, and there is none when one of
    /// them is NULL (then the row references nothing).
    #[test]
    fn a_parent_link_carries_the_whole_foreign_key() {
        let table = calls_table();
        let row = [text("1"), text("org_a"), text("run_9"), text("n")];
        let (fk, key) = parent_key(&table, "run_id", &row).unwrap();
        assert_eq!(fk.references, "runs");
        let pair = |c: &str, v: &str| (c.to_owned(), v.to_owned());
        assert_eq!(key, [pair("organization_id", "org_a"), pair("id", "run_9")]);
        let (fk, key) = parent_key(&table, "organization_id", &row).unwrap();
        assert_eq!(
            (fk.references.as_str(), key),
            ("organizations", vec![pair("id", "org_a")])
        );
        let unlinked = [text("1"), text("org_a"), Shown::Null, text("n")];
        assert!(parent_key(&table, "run_id", &unlinked).is_none());
        assert!(parent_key(&table, "note", &row).is_none());
    }
}
