//! `/erd`: the Mermaid diagram of the live catalog, drawn in the browser by the vendored Mermaid.

use std::sync::Arc;

use axum::extract::State;
use maud::{Markup, html};

use crate::{Studio, StudioError, html::page};

pub async fn show(State(studio): State<Arc<Studio>>) -> Result<Markup, StudioError> {
    let catalog = studio.reload_catalog().await?;
    let source = catalog::mermaid(&catalog);
    let body = html! {
        h1 { "Entity-relationship diagram" }
        p.muted {
            "Drawn from this database's catalog, like " code { "docs/erd.md" }
            " (which " code { "cargo xtask entities" } " writes from the migrations). "
            "Parent to child: " code { "||" } " exactly one, " code { "|o" } " zero or one, "
            code { "o{" } " many, " code { "o|" } " at most one."
        }
        p #erd-error role="alert" {}
        pre.mermaid { (source) }
        details {
            summary { "Mermaid source" }
            pre #erd-source { (source) }
        }
        script src="/assets/mermaid.min.js" {}
        script src="/assets/erd.js" {}
    };
    Ok(page("ERD", Some(studio.write), body))
}
