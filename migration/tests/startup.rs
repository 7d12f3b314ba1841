//! The call a service makes at start-up: a fleet of replicas starting at once, each calling
//! `migration::apply_pending` on the same empty database, applies every migration exactly once
//! and none of them fails.

use std::{collections::HashMap, sync::Arc};

use harness::{TestDb, scalar};
use migration::{Migrator, MigratorTrait};
use tokio::sync::Barrier;

const REPLICAS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_replicas_starting_at_once_apply_each_migration_exactly_once() {
    let db = TestDb::empty().await;
    let barrier = Arc::new(Barrier::new(REPLICAS));
    let runs: Vec<_> = (0..REPLICAS)
        .map(|_| {
            let url = db.url().clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                migration::apply_pending(&url).await
            })
        })
        .collect();
    let mut applied_by: HashMap<String, usize> = HashMap::new();
    for run in runs {
        let names = run
            .await
            .expect("the task did not panic")
            .unwrap_or_else(|err| panic!("a replica's start-up migration failed: {err}"));
        for name in names {
            *applied_by.entry(name).or_default() += 1;
        }
    }

    let expected: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    for name in &expected {
        assert_eq!(
            applied_by.get(name),
            Some(&1),
            "{name} should be applied by exactly one of the {REPLICAS} replicas: {applied_by:?}"
        );
    }
    assert_eq!(applied_by.len(), expected.len(), "{applied_by:?}");
    let tables = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tablename IN ('users', 'agent_runs', 'slack_events')",
    )
    .await;
    assert_eq!(tables, 3, "the schema is there");
    let recorded = scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await;
    assert_eq!(recorded, expected.len() as i64);
    let left = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'",
    )
    .await;
    assert_eq!(left, 0, "no advisory lock outlives the runs");
}

#[tokio::test]
async fn a_current_schema_applies_nothing() {
    let db = TestDb::migrated().await;
    let applied = migration::apply_pending(db.url()).await.unwrap();
    assert!(applied.is_empty(), "{applied:?}");
}
