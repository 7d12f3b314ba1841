//! What the generated models call so that debug-printing a row never prints a secret.
//! `cargo xtask entities` rewrites each generated `Model` by `db_connect::secrets`' rule: a
//! secret column gets `#[serde(skip_serializing)]` and prints as [`Masked`] in a `Debug`
//! written beside the model, and every JSON column prints through [`Scrubbed`], which redacts
//! secret keys and provider tokens inside it. Serialising a JSON column keeps it whole: it is
//! the row's data (a webhook payload, a tool's input schema), and a service that returns it
//! decides what of it to return.

use std::fmt;

use db_connect::secrets::{MASK, masked_with_prefix, redacted_json};
use sea_orm::prelude::Json;

/// Stands in for a secret column's value: prints `****`.
pub struct Masked;

impl fmt::Debug for Masked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(MASK)
    }
}

/// A secret whose part before the first `:` may be shown (what a verification is for):
/// prints `reset-password:****`, or `****` when there is no `:`.
pub struct MaskedAfterPrefix<'a>(pub &'a str);

impl fmt::Debug for MaskedAfterPrefix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&masked_with_prefix(self.0))
    }
}

/// A JSON value that prints with its secret keys and provider tokens redacted.
pub struct Scrubbed<'a>(pub &'a Json);

impl fmt::Debug for Scrubbed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redacted_json(self.0), f)
    }
}
