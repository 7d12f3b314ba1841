//! One module a page. Handlers read the catalog, run the studio's SQL and render HTML.

pub mod erd;
pub mod index;
pub mod row;
pub mod table;
pub mod write;

use catalog::{Catalog, Table};
use sea_orm::ConnectionTrait;

use crate::{
    StudioError,
    browse::{Row, find_row},
};

/// The table named in a URL, from the catalog only: nothing else reaches SQL as a name.
fn table<'a>(catalog: &'a Catalog, name: &str) -> Result<&'a Table, StudioError> {
    catalog
        .table(name)
        .ok_or_else(|| StudioError::NotFound(format!("there is no table `{name}` in the database")))
}

/// Messages a redirect may ask a page to show, by code, so a URL cannot put words on a page.
fn notice(pairs: &[(String, String)]) -> Option<&'static str> {
    let code = pairs.iter().find(|(k, _)| k == "notice")?.1.as_str();
    match code {
        "saved" => Some("Saved. The change was committed in one transaction."),
        "deleted" => Some("Deleted. The row (and whatever its foreign keys cascade to) is gone."),
        _ => None,
    }
}

/// The row `key` (a primary or unique key) names.
async fn require_row(
    db: &impl ConnectionTrait,
    table: &Table,
    key: &[(String, String)],
) -> Result<Row, StudioError> {
    find_row(db, table, key)
        .await?
        .ok_or_else(|| no_row(table, key))
}

fn no_row(table: &Table, key: &[(String, String)]) -> StudioError {
    StudioError::NotFound(format!("{} has no row where {}", table.name, describe(key)))
}

/// `id = org_acme, ...`
fn describe(key: &[(String, String)]) -> String {
    key.iter()
        .map(|(c, v)| format!("{c} = {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
