//! What a seed run reports while it works. The CLI draws bars on a terminal and prints lines
//! otherwise (`cli`); the bench and the tests stay [`Silent`].

use std::time::Duration;

pub trait Progress: Send + Sync {
    /// `table` starts loading; about `expected` rows will follow.
    fn table_started(&self, table: &str, expected: u64);
    /// `rows` more rows of the current table reached the database.
    fn rows_loaded(&self, rows: u64);
    /// The current table is loaded.
    fn table_finished(&self, table: &str, rows: u64, took: Duration);
    /// A step other than loading rows.
    fn message(&self, text: &str);
}

/// Reports nothing.
pub struct Silent;

impl Progress for Silent {
    fn table_started(&self, _: &str, _: u64) {}
    fn rows_loaded(&self, _: u64) {}
    fn table_finished(&self, _: &str, _: u64, _: Duration) {}
    fn message(&self, _: &str) {}
}
