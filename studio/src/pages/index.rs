//! `/`: every table with its row count, grouped by domain.

use std::sync::Arc;

use axum::extract::State;
use catalog::Table;
use maud::{Markup, html};

use crate::{
    Studio, StudioError,
    browse::{RowCount, row_counts},
    domains::{DOMAINS, OTHER, domain_of},
    html::{page, table_url},
};

pub async fn show(State(studio): State<Arc<Studio>>) -> Result<Markup, StudioError> {
    let catalog = studio.reload_catalog().await?;
    let tables: Vec<&Table> = catalog.tables.iter().collect();
    let counts = row_counts(&studio.db, &tables).await?;
    let mut groups: Vec<(&str, Vec<(&Table, RowCount)>)> = DOMAINS
        .iter()
        .map(|(d, _)| *d)
        .chain([OTHER])
        .map(|d| (d, Vec::new()))
        .collect();
    for (table, count) in tables.into_iter().zip(counts) {
        let domain = domain_of(&table.name);
        let group = groups
            .iter_mut()
            .find(|(d, _)| *d == domain)
            .expect("every domain has a group");
        group.1.push((table, count));
    }
    groups.retain(|(_, tables)| !tables.is_empty());
    let body = html! {
        h1 { "Tables" }
        @if groups.is_empty() {
            p.error { "This database has no tables yet. Create them with "
                code { "cargo run -p migration -- up" } "." }
        }
        div.domains {
            @for (domain, tables) in &groups {
                section.domain data-domain=(domain) {
                    h2 { (domain) }
                    table {
                        @for (table, count) in tables {
                            tr data-table=(table.name) {
                                td { a href=(table_url(&table.name, &[])) { (table.name) } }
                                td.count {
                                    @match count {
                                        RowCount::Exact(n) => span.rows { (n) },
                                        RowCount::Estimate(n) => span.rows title="planner estimate: the table is large" { "≈" (n) },
                                        RowCount::Unknown { bytes } => span.rows.unknown title={ "never analysed and " (bytes / (1024 * 1024)) " MiB on disk: not counted (run ANALYZE)" } { "?" },
                                    }
                                    " rows"
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Tables", Some(studio.write), body))
}
