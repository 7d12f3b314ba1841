//! One module a page. Handlers read the catalog, run the studio's SQL and render HTML.

pub mod erd;
pub mod index;
pub mod row;
pub mod table;
pub mod write;

use catalog::{Catalog, Table};

use crate::StudioError;

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
