//! Migrations against live tables: a lock timeout per migration with retries that name what
//! blocked, a statement timeout, and non-transactional migrations whose interrupted concurrent
//! index build the next run repairs.

use std::time::Duration;

use harness::{TestDb, scalar, text_rows};
use migration::{
    MigrationTrait, MigratorTrait,
    runner::{self, Action, Progress, RunError, RunOptions},
};
use sea_orm::{ConnectionTrait, DatabaseConnection};

mod support;

use support::{ConcurrentIndex, Sql, sql};

const ITEMS: &str = "m20000101_000001_items";

fn items() -> Box<dyn MigrationTrait> {
    sql(
        ITEMS,
        "CREATE TABLE items (id int PRIMARY KEY, team_id text NOT NULL);
         INSERT INTO items SELECT g, 'team-' || (g % 7) FROM generate_series(1, 2000) g",
    )
}

/// `items`, then a column added to it (which needs an ACCESS EXCLUSIVE lock).
struct AddColumn;

impl MigratorTrait for AddColumn {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            items(),
            sql(
                "m20000101_000002_add_note",
                "ALTER TABLE items ADD COLUMN note text",
            ),
        ]
    }
}

/// `items`, then `idx_items_team_id` built concurrently.
struct IndexConcurrently;

impl MigratorTrait for IndexConcurrently {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            items(),
            Box::new(ConcurrentIndex {
                name: "m20000101_000002_index_team_id",
                table: "items",
                columns: &["team_id"],
            }),
        ]
    }
}

fn fast(lock_timeout_ms: u64, lock_retries: u32) -> RunOptions {
    RunOptions {
        lock_timeout: Duration::from_millis(lock_timeout_ms),
        lock_retries,
        retry_backoff: Duration::from_millis(20),
        ..RunOptions::default()
    }
}

async fn run<M: MigratorTrait>(
    db: &TestDb,
    action: Action,
    options: &RunOptions,
) -> (Result<(), RunError>, Vec<Progress>) {
    let mut steps = Vec::new();
    // A guard against a run that never ends, which is the failure these tests look for.
    let result = tokio::time::timeout(
        Duration::from_secs(120),
        runner::run_with::<M>(db.url(), action, options, |s| steps.push(s)),
    )
    .await
    .expect("the run ends on its own");
    (result, steps)
}

async fn versions(db: &TestDb) -> Vec<String> {
    text_rows(db.conn(), "SELECT version FROM seaql_migrations ORDER BY 1")
        .await
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

/// A session that wrote to `items` and stays idle in its transaction, holding its lock.
async fn idle_writer(db: &TestDb) -> (DatabaseConnection, i32) {
    let blocker = db.new_pool(1).await;
    let pid = scalar(&blocker, "SELECT pg_backend_pid()::bigint").await as i32;
    blocker
        .execute_unprepared(
            "BEGIN; SET LOCAL application_name = 'stuck-worker';
             UPDATE items SET team_id = team_id WHERE id = 1",
        )
        .await
        .unwrap();
    (blocker, pid)
}

#[tokio::test]
async fn a_migration_blocked_past_its_lock_timeout_retries_then_names_the_blocker_and_leaves_nothing()
 {
    let db = TestDb::empty().await;
    run::<AddColumn>(&db, Action::Up(Some(1)), &fast(100, 0))
        .await
        .0
        .unwrap();
    let (writer, blocker_pid) = idle_writer(&db).await;

    let (result, steps) = run::<AddColumn>(&db, Action::Up(None), &fast(100, 2)).await;
    let err = result.expect_err("the migration cannot get its lock");
    let retries: Vec<_> = steps
        .iter()
        .filter_map(|s| match s {
            Progress::LockRetry {
                attempt, attempts, ..
            } => Some((*attempt, *attempts)),
            _ => None,
        })
        .collect();
    assert_eq!(retries, [(1, 3), (2, 3)], "two retries, then it gives up");
    let RunError::LockTimeout {
        name,
        attempts,
        blockers,
        ..
    } = &err
    else {
        panic!("expected a lock timeout, got {err:?}");
    };
    assert_eq!(name, "m20000101_000002_add_note");
    assert_eq!(*attempts, 3);
    let blocker = blockers
        .iter()
        .find(|b| b.pid == blocker_pid)
        .unwrap_or_else(|| panic!("the idle writer is named: {blockers:?}"));
    assert_eq!(blocker.application_name, "stuck-worker");
    assert_eq!(blocker.state, "idle in transaction");
    assert!(blocker.query.starts_with("BEGIN; SET LOCAL"), "{blocker:?}");
    let message = err.to_string();
    for part in [
        "m20000101_000002_add_note",
        "3 attempts",
        "100 ms",
        &format!("pid {blocker_pid}"),
        "stuck-worker",
        "idle in transaction",
        "nothing of it was applied",
    ] {
        assert!(message.contains(part), "{part:?} missing from: {message}");
    }
    assert_eq!(
        versions(&db).await,
        [ITEMS],
        "the migration is not recorded"
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'note'"
        )
        .await,
        0,
        "nothing of it remains"
    );

    writer.execute_unprepared("ROLLBACK").await.unwrap();
    run::<AddColumn>(&db, Action::Up(None), &fast(100, 0))
        .await
        .0
        .expect("once the blocker is gone the migration applies");
    assert_eq!(versions(&db).await.len(), 2);
}

#[tokio::test]
async fn the_blocker_query_is_cut_to_its_first_characters() {
    let db = TestDb::empty().await;
    run::<AddColumn>(&db, Action::Up(Some(1)), &fast(100, 0))
        .await
        .0
        .unwrap();
    let blocker = db.new_pool(1).await;
    let secret_tail = "x".repeat(200) + "tail-that-must-not-show";
    blocker
        .execute_unprepared(&format!(
            "BEGIN; UPDATE items SET team_id = '{secret_tail}' WHERE id = 1"
        ))
        .await
        .unwrap();
    let (result, _) = run::<AddColumn>(&db, Action::Up(None), &fast(100, 0)).await;
    let message = result.unwrap_err().to_string();
    assert!(
        message.contains("BEGIN; UPDATE items SET team_id = 'xxx"),
        "{message}"
    );
    assert!(!message.contains("tail-that-must-not-show"), "{message}");
    blocker.execute_unprepared("ROLLBACK").await.unwrap();
}

/// `items`, then a migration that runs longer than any reasonable statement timeout.
struct Slow;

impl MigratorTrait for Slow {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            items(),
            sql(
                "m20000101_000002_slow",
                "ALTER TABLE items ADD COLUMN note text; SELECT pg_sleep(30)",
            ),
        ]
    }
}

#[tokio::test]
async fn the_statement_timeout_stops_a_long_migration_and_rolls_it_back() {
    let db = TestDb::empty().await;
    let options = RunOptions {
        statement_timeout: Some(Duration::from_millis(200)),
        ..fast(1000, 3)
    };
    let (result, steps) = run::<Slow>(&db, Action::Up(None), &options).await;
    let err = result.expect_err("cut by the statement timeout");
    assert!(matches!(err, RunError::Migration { .. }), "{err:?}");
    assert!(err.to_string().contains("statement timeout"), "{err}");
    assert!(
        !steps
            .iter()
            .any(|s| matches!(s, Progress::LockRetry { .. })),
        "a statement timeout is not retried"
    );
    assert_eq!(versions(&db).await, [ITEMS]);
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'note'"
        )
        .await,
        0
    );
}

/// `items`, then a migration recording the timeouts it ran with, then one outside a transaction.
struct Settings;

impl MigratorTrait for Settings {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            items(),
            sql(
                "m20000101_000002_in_transaction",
                "CREATE TABLE seen AS SELECT 'in' AS kind,
                        current_setting('lock_timeout') AS lock_timeout,
                        current_setting('statement_timeout') AS statement_timeout",
            ),
            Box::new(Sql {
                name: "m20000101_000003_outside",
                up: "INSERT INTO seen SELECT 'out', current_setting('lock_timeout'),
                            current_setting('statement_timeout')",
                transactional: false,
            }),
        ]
    }
}

#[tokio::test]
async fn each_migration_runs_with_the_timeouts_whether_in_a_transaction_or_not() {
    let db = TestDb::empty().await;
    let options = RunOptions {
        statement_timeout: Some(Duration::from_secs(90)),
        ..fast(1500, 0)
    };
    run::<Settings>(&db, Action::Up(None), &options)
        .await
        .0
        .unwrap();
    let seen = text_rows(
        db.conn(),
        "SELECT kind, lock_timeout, statement_timeout FROM seen ORDER BY 1 DESC",
    )
    .await;
    let expected = |kind: &str| {
        vec![
            Some(kind.to_owned()),
            Some("1500ms".to_owned()),
            Some("90s".to_owned()),
        ]
    };
    assert_eq!(seen, [expected("out"), expected("in")]);
}

/// The backend building `idx_items_team_id` once it waits for the idle writer.
async fn waiting_index_build(db: &TestDb) -> i64 {
    for _ in 0..600 {
        let pid = scalar(
            db.conn(),
            "SELECT coalesce(max(pid), 0)::bigint FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'
               AND query LIKE 'CREATE INDEX CONCURRENTLY%'",
        )
        .await;
        if pid > 0 {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the concurrent index build never waited");
}

async fn assert_index_is_valid(db: &TestDb) {
    assert_eq!(
        index_validity(db).await,
        [vec![
            Some("idx_items_team_id".to_owned()),
            Some("true".to_owned())
        ]]
    );
    assert_eq!(versions(db).await.len(), 2);
}

async fn index_validity(db: &TestDb) -> Vec<Vec<Option<String>>> {
    text_rows(
        db.conn(),
        "SELECT c.relname::text, i.indisvalid::text FROM pg_index i
         JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'idx_items_team_id'",
    )
    .await
}

#[tokio::test]
async fn a_concurrent_index_build_cancelled_half_way_is_rebuilt_by_the_next_run() {
    let db = TestDb::empty().await;
    let patient = fast(60_000, 0);
    run::<IndexConcurrently>(&db, Action::Up(Some(1)), &patient)
        .await
        .0
        .unwrap();
    // The build registers the index, then waits for writers that started before it.
    let (blocker, _) = idle_writer(&db).await;
    let url = db.url().clone();
    let options = patient.clone();
    let interrupted = tokio::spawn(async move {
        runner::run_with::<IndexConcurrently>(&url, Action::Up(None), &options, |_| {}).await
    });
    let builder = waiting_index_build(&db).await;
    scalar(
        db.conn(),
        &format!("SELECT pg_cancel_backend({builder})::int::bigint"),
    )
    .await;
    let err = interrupted
        .await
        .unwrap()
        .expect_err("the cancelled build fails the run");
    assert!(matches!(err, RunError::NonTransactional { .. }), "{err:?}");
    assert!(err.to_string().contains("not recorded"), "{err}");
    blocker.execute_unprepared("ROLLBACK").await.unwrap();
    assert_eq!(
        index_validity(&db).await,
        [vec![
            Some("idx_items_team_id".to_owned()),
            Some("false".to_owned())
        ]],
        "the interrupted build left an invalid index"
    );
    assert_eq!(versions(&db).await, [ITEMS], "and is not recorded");

    run::<IndexConcurrently>(&db, Action::Up(None), &patient)
        .await
        .0
        .expect("the next run repairs it");
    assert_index_is_valid(&db).await;

    let (rolled_back, _) = run::<IndexConcurrently>(&db, Action::Down(1), &patient).await;
    rolled_back.unwrap();
    assert!(
        index_validity(&db).await.is_empty(),
        "down drops it concurrently"
    );
}

#[tokio::test]
async fn a_concurrent_index_build_that_times_out_is_retried_from_scratch_and_then_completes() {
    let db = TestDb::empty().await;
    run::<IndexConcurrently>(&db, Action::Up(Some(1)), &fast(100, 0))
        .await
        .0
        .unwrap();
    let (blocker, blocker_pid) = idle_writer(&db).await;
    let url = db.url().clone();
    let options = RunOptions {
        retry_backoff: Duration::from_millis(300),
        ..fast(200, 20)
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let running = tokio::spawn(async move {
        runner::run_with::<IndexConcurrently>(&url, Action::Up(None), &options, |s| {
            let _ = tx.send(s);
        })
        .await
    });
    // The first attempt times out behind the writer and leaves an invalid index behind.
    loop {
        match rx.recv().await.expect("the run reports a retry") {
            Progress::LockRetry { blockers, .. } => {
                assert!(
                    blockers.iter().any(|b| b.pid == blocker_pid),
                    "{blockers:?}"
                );
                break;
            }
            _ => continue,
        }
    }
    blocker.execute_unprepared("ROLLBACK").await.unwrap();
    running.await.unwrap().expect("a later attempt builds it");
    assert_index_is_valid(&db).await;
}
