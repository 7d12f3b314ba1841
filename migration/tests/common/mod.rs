//! How the migration tests run the real binary.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::process::Command;

use harness::TestDb;
use secrecy::ExposeSecret;

const BINARY: &str = env!("CARGO_BIN_EXE_migration");

/// Every variable that chooses the database or tunes the runner.
const SETTINGS: &[&str] = &[
    "DATABASE_URL",
    "DB_POOLER",
    "DATABASE_DIRECT_URL",
    "MIGRATION_DATABASE_URL",
    "DATABASE_REPLICA_URL",
    "MIGRATION_LOCK_TIMEOUT_MS",
    "MIGRATION_STATEMENT_TIMEOUT_MS",
    "MIGRATION_LOCK_RETRIES",
];

/// The binary with `args`, without the caller's database settings or backtraces, started in a
/// temporary folder so no `.env` up the tree applies: only what a test sets does.
pub fn migration(args: &[&str]) -> Command {
    let mut cmd = Command::new(BINARY);
    cmd.args(args)
        .env("RUST_BACKTRACE", "0")
        .current_dir(std::env::temp_dir());
    for var in SETTINGS {
        cmd.env_remove(var);
    }
    cmd
}

/// [`migration`] pointed at `db` through DATABASE_URL.
pub fn with_url(db: &TestDb, args: &[&str]) -> Command {
    let mut cmd = migration(args);
    cmd.env("DATABASE_URL", db.url().expose().expose_secret());
    cmd
}
