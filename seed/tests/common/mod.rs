//! Seeding a test database and reading every table back, for comparing two seeds.

#![allow(dead_code)]

use std::collections::BTreeMap;

use harness::{TestDb, text_rows};
use seed::{Scale, SeedError, SeedOptions, Seeded, Silent};

/// Seeds `db` as `options` say.
pub async fn seed_into(db: &TestDb, options: &SeedOptions) -> Result<Seeded, SeedError> {
    seed::seed_database(db.url(), options, &Silent).await
}

/// A migrated database with the small seed `seed` in it.
pub async fn small_seed(seed: u64) -> (TestDb, Seeded) {
    let db = TestDb::migrated().await;
    let seeded = seed_into(&db, &SeedOptions::new(seed, Scale::Small.sizes()))
        .await
        .expect("seeding");
    (db, seeded)
}

/// The tables of the schema (found in `pg_catalog`, not listed here), the migration history
/// included.
pub async fn tables(db: &TestDb) -> Vec<String> {
    text_rows(
        db.conn(),
        "SELECT relname::text FROM pg_class
         WHERE relnamespace = current_schema()::regnamespace AND relkind IN ('r', 'p')
         ORDER BY 1",
    )
    .await
    .into_iter()
    .map(|row| row[0].clone().expect("a name"))
    .collect()
}

pub fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Every row of every table but the migration history, as PostgreSQL prints it, sorted.
pub async fn dump(db: &TestDb) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for table in tables(db).await {
        if table == "seaql_migrations" {
            continue;
        }
        let sql = format!(
            "SELECT coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), '') FROM {} t",
            quote(&table)
        );
        let rows = text_rows(db.conn(), &sql).await;
        out.insert(table, rows[0][0].clone().unwrap_or_default());
    }
    out
}
