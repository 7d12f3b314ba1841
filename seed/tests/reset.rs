//! A database holding rows is refused; `reset` empties the application and auth tables and
//! nothing else, so the schema and the migration history stay as they were; an unmigrated
//! database is refused with the command that migrates it.

mod common;

use common::{dump, seed_into, small_seed, tables};
use harness::{TestDb, text_rows};
use seed::{APPLICATION_TABLES, Scale, SeedError, SeedOptions};

async fn migration_history(db: &TestDb) -> Vec<Vec<Option<String>>> {
    text_rows(
        db.conn(),
        "SELECT version, applied_at::text FROM seaql_migrations ORDER BY version",
    )
    .await
}

#[tokio::test]
async fn a_database_holding_rows_is_refused_and_left_as_it_was() {
    let (db, _) = small_seed(1).await;
    let before = dump(&db).await;
    let err = seed_into(&db, &SeedOptions::new(2, Scale::Small.sizes()))
        .await
        .unwrap_err();
    let SeedError::NotEmpty { tables } = &err else {
        panic!("expected NotEmpty, got {err}");
    };
    assert!(tables.contains(&"users".to_owned()), "{tables:?}");
    assert!(!tables.contains(&"seaql_migrations".to_owned()));
    let message = err.to_string();
    assert!(
        message.contains("already holds rows") && message.contains("--reset"),
        "{message}"
    );
    assert_eq!(dump(&db).await, before);
}

#[tokio::test]
async fn reset_empties_the_tables_and_keeps_the_schema_and_the_migration_history() {
    let pristine = TestDb::migrated().await;
    let (schema, history) = (pristine.schema_dump(), migration_history(&pristine).await);
    assert!(!history.is_empty());
    let (db, _) = small_seed(2).await;
    // Seeding sets indexes and keys aside and rebuilds them: they must come back as they were.
    assert_eq!(db.schema_dump(), schema, "seeding changed the schema");

    let seeded = seed_into(
        &db,
        &SeedOptions::new(1, Scale::Small.sizes()).with_reset(true),
    )
    .await
    .unwrap();
    let mut emptied = seeded.emptied.clone();
    emptied.sort();
    let mut expected = tables(&db).await;
    expected.retain(|t| t != "seaql_migrations");
    assert_eq!(
        emptied, expected,
        "reset empties every table but the history"
    );
    assert!(
        APPLICATION_TABLES
            .iter()
            .all(|t| emptied.iter().any(|e| e == t))
    );

    assert_eq!(db.schema_dump(), schema, "reset changed the schema");
    assert_eq!(
        migration_history(&db).await,
        history,
        "reset touched the migration history"
    );
    // Nothing of seed 2 is left: the rows are exactly those of seed 1 on a fresh database.
    let (fresh, _) = small_seed(1).await;
    assert!(
        dump(&db).await == dump(&fresh).await,
        "rows of the earlier seed remain"
    );
}

#[tokio::test]
async fn an_unmigrated_database_is_refused_with_the_command_that_migrates_it() {
    let db = TestDb::empty().await;
    let err = seed_into(&db, &SeedOptions::new(1, Scale::Small.sizes()))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, SeedError::NotMigrated { missing } if missing.len() == 19),
        "{err}"
    );
    assert!(
        err.to_string().contains("cargo run -p migration -- up"),
        "{err}"
    );
}
