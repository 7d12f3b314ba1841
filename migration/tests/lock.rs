//! The migration lock cannot be lost silently: it survives its connection idling past every
//! idle timeout, a run that loses it stops before committing anything more, and no advisory
//! lock outlives a run.

use std::time::Duration;

use harness::{TestDb, scalar};
use migration::{
    MigrationTrait, MigratorTrait,
    runner::{self, Action, Progress, RunError},
};
use sea_orm::ConnectionTrait;
use tokio::sync::mpsc;

mod support;

use support::sql;

/// The key the slow migration waits on, held by the test.
const GATE: i64 = 4242;

/// Its first migration waits until the test opens the gate; the second is quick.
struct SlowMigrator;

impl MigratorTrait for SlowMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            sql(
                "m20000101_000001_slow",
                "SELECT pg_advisory_xact_lock(4242); CREATE TABLE slow (id int)",
            ),
            sql("m20000101_000002_quick", "CREATE TABLE quick (id int)"),
        ]
    }
}

async fn advisory_locks(db: &TestDb, granted: bool) -> i64 {
    scalar(
        db.conn(),
        &format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database
             WHERE l.locktype = 'advisory' AND d.datname = current_database() AND l.granted = {granted}"
        ),
    )
    .await
}

async fn wait_until(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    for _ in 0..600 {
        if condition().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

fn spawn_run<M: MigratorTrait + 'static>(
    db: &TestDb,
) -> (
    tokio::task::JoinHandle<Result<(), RunError>>,
    mpsc::UnboundedReceiver<Progress>,
) {
    let url = db.url().clone();
    let (tx, rx) = mpsc::unbounded_channel();
    let handle = tokio::spawn(async move {
        runner::run::<M>(&url, Action::Up(None), |step| {
            let _ = tx.send(step);
        })
        .await
    });
    (handle, rx)
}

#[tokio::test]
async fn the_lock_outlives_idle_timeouts_during_a_long_migration_and_a_second_run_waits() {
    let db = TestDb::empty().await;
    // The server closes a session idle longer than this (in a transaction: longer than 1 s, which
    // the runner's own migration transactions never are between two statements): what a pool's
    // idle timeout does to a connection it holds.
    db.conn()
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{}\" SET idle_session_timeout = '200ms';
             ALTER DATABASE \"{0}\" SET idle_in_transaction_session_timeout = '1s'",
            db.name()
        ))
        .await
        .unwrap();
    let gate = db.new_pool(1).await;
    gate.execute_unprepared(&format!(
        "BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0; SELECT pg_advisory_xact_lock({GATE})"
    ))
    .await
    .unwrap();

    let (first, _) = spawn_run::<SlowMigrator>(&db);
    // The first run holds the migration lock and its slow migration waits at the gate.
    wait_until("the slow migration waits at the gate", async || {
        advisory_locks(&db, false).await == 1
    })
    .await;
    // Longer than both idle timeouts: a lock on an idle session would be gone by now.
    tokio::time::sleep(Duration::from_secs(2)).await;

    let (second, mut steps) = spawn_run::<SlowMigrator>(&db);
    let first_step = tokio::time::timeout(Duration::from_secs(30), steps.recv())
        .await
        .expect("the second run reports")
        .expect("a step");
    assert_eq!(
        first_step,
        Progress::WaitingForLock,
        "the second run must wait for the first"
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM pg_tables WHERE tablename = 'quick'"
        )
        .await,
        0
    );

    gate.execute_unprepared("ROLLBACK").await.unwrap();
    first.await.unwrap().expect("the first run applies both");
    second
        .await
        .unwrap()
        .expect("the second run finds nothing to do");
    let mut rest = Vec::new();
    while let Ok(step) = steps.try_recv() {
        rest.push(step);
    }
    assert!(rest.contains(&Progress::NothingToDo), "{rest:?}");
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await,
        2
    );
    assert_eq!(
        advisory_locks(&db, true).await,
        0,
        "no lock outlives the runs"
    );
}

/// Its first migration ends the session holding the migration lock.
struct LockKillingMigrator;

impl MigratorTrait for LockKillingMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            sql(
                "m20000101_000001_kills_the_lock",
                "CREATE TABLE first (id int);
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'migration lock'",
            ),
            sql("m20000101_000002_after", "CREATE TABLE after_loss (id int)"),
        ]
    }
}

#[tokio::test]
async fn a_run_that_loses_its_lock_stops_with_a_clear_error_and_commits_nothing_more() {
    let db = TestDb::empty().await;
    let err = runner::run::<LockKillingMigrator>(db.url(), Action::Up(None), |_| {})
        .await
        .expect_err("the run must stop once its lock is gone");
    assert!(matches!(err, RunError::LockLost { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("lost the migration lock"), "{message}");
    assert!(
        message.contains("m20000101_000001_kills_the_lock"),
        "{message}"
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await,
        0,
        "the migration during which the lock went is rolled back"
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM pg_tables WHERE tablename IN ('first', 'after_loss')"
        )
        .await,
        0
    );
}

/// Its only migration fails.
struct FailingMigrator;

impl MigratorTrait for FailingMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![sql("m20000101_000001_fails", "SELECT 1/0")]
    }
}

#[tokio::test]
async fn no_advisory_lock_is_left_after_a_run_that_succeeded_or_failed() {
    let db = TestDb::empty().await;
    runner::run::<SlowMigrator>(db.url(), Action::Up(Some(0)), |_| {})
        .await
        .unwrap();
    assert_eq!(advisory_locks(&db, true).await, 0);
    runner::run::<FailingMigrator>(db.url(), Action::Up(None), |_| {})
        .await
        .expect_err("division by zero");
    assert_eq!(advisory_locks(&db, true).await, 0);
}
