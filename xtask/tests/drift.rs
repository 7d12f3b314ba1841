//! The drift check: regenerating from the migrations reproduces the committed entities, and a
//! schema change that was not regenerated is reported with a diff naming it.

use harness::TestDb;
use sea_orm::ConnectionTrait;
use xtask::{diff_dirs, generate, generated_dir};

#[tokio::test]
async fn regenerating_from_the_migrations_reproduces_the_committed_entities() {
    let db = TestDb::migrated().await;
    let out = tempfile::tempdir().unwrap();
    generate(db.url(), out.path()).await.unwrap();
    let diff = diff_dirs(&generated_dir(), out.path()).unwrap();
    assert!(
        diff.is_none(),
        "committed entities are stale:\n{}",
        diff.unwrap_or_default()
    );
}

#[tokio::test]
async fn a_column_added_without_regenerating_is_reported() {
    let db = TestDb::migrated().await;
    db.conn()
        .execute_unprepared("ALTER TABLE users ADD COLUMN nickname text")
        .await
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    generate(db.url(), out.path()).await.unwrap();
    let diff = diff_dirs(&generated_dir(), out.path())
        .unwrap()
        .expect("the extra column must show as a difference");
    assert!(diff.contains("+++ regenerated/users.rs"), "{diff}");
    assert!(
        diff.contains("+    pub nickname: Option<String>,"),
        "{diff}"
    );
    assert!(
        !diff.contains("agent_runs.rs"),
        "only the changed table differs:\n{diff}"
    );
}

#[tokio::test]
async fn the_committed_erd_is_what_the_migrated_schema_draws() {
    let db = TestDb::migrated().await;
    let fresh = xtask::erd(db.url()).await.unwrap();
    let diff = xtask::diff_erd(&fresh);
    assert!(
        diff.is_none(),
        "docs/erd.md is stale:\n{}",
        diff.unwrap_or_default()
    );
}

#[tokio::test]
async fn a_relationship_added_without_regenerating_shows_in_the_erd_diff() {
    let db = TestDb::migrated().await;
    db.conn()
        .execute_unprepared(
            "CREATE TABLE notes (id uuid PRIMARY KEY, \
             user_id text NOT NULL UNIQUE REFERENCES users (id), body text)",
        )
        .await
        .unwrap();
    let diff = xtask::diff_erd(&xtask::erd(db.url()).await.unwrap())
        .expect("a new table must show as a difference");
    assert!(diff.contains("+    notes {"), "{diff}");
    assert!(diff.contains("+        text user_id FK, UK"), "{diff}");
    assert!(diff.contains("+        text body \"nullable\""), "{diff}");
    // NOT NULL and UNIQUE: each note has exactly one user, each user at most one note.
    assert!(
        diff.contains("+    users ||--o| notes : \"user_id\""),
        "{diff}"
    );
}
