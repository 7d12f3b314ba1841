//! The migration binary under deployment conditions: many processes at once, and a process
//! killed in the middle of a migration.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use harness::{TestDb, scalar, text_rows};
use migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;

mod common;

/// `migration up` on `db`, with its output captured (also when spawned).
fn up(db: &TestDb, extra: &[&str]) -> Command {
    let args: Vec<&str> = std::iter::once("up").chain(extra.iter().copied()).collect();
    let mut cmd = common::with_url(db, &args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

#[tokio::test]
async fn eight_processes_migrating_one_empty_database_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let started = Instant::now();
    let children: Vec<_> = (0..8).map(|_| up(&db, &[]).spawn().unwrap()).collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let took = started.elapsed();
    let applied: usize = outputs
        .iter()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("Applied"))
                .count()
        })
        .sum();
    let waited = outputs
        .iter()
        .filter(|o| String::from_utf8_lossy(&o.stdout).contains("waiting"))
        .count();
    println!(
        "figure: 8 concurrent `migration up` processes: all exit 0 in {took:?}; {waited} waited for the lock; {applied} migrations applied in total"
    );
    for output in &outputs {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(applied, Migrator::migrations().len());
    let versions = text_rows(
        db.conn(),
        "SELECT version, count(*)::text FROM seaql_migrations GROUP BY version",
    )
    .await;
    assert_eq!(versions.len(), Migrator::migrations().len());
    assert!(versions.iter().all(|v| v[1].as_deref() == Some("1")));
    let reference = TestDb::empty().await;
    assert!(up(&reference, &[]).output().unwrap().status.success());
    assert_eq!(
        db.schema_dump(),
        reference.schema_dump(),
        "same schema as a single run"
    );
}

#[tokio::test]
async fn a_process_killed_mid_migration_leaves_a_database_that_up_completes() {
    let db = TestDb::empty().await;
    assert!(up(&db, &["-n", "4"]).output().unwrap().status.success());
    // The integrations migration references organizations; holding this lock stops it inside
    // its transaction, after it began and before it could finish.
    let blocker = db.new_pool(1).await;
    blocker
        .execute_unprepared("BEGIN; LOCK TABLE organizations IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let mut child = up(&db, &[]).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = scalar(
            db.conn(),
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .await;
        if waiting > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the migration never reached the lock"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success());
    blocker.execute_unprepared("ROLLBACK").await.unwrap();
    blocker.close().await.unwrap();

    let recorded = scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await;
    assert_eq!(recorded, 4, "the killed migration was not recorded");
    let half_made = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_tables WHERE tablename IN ('github_installations', 'slack_connections')",
    )
    .await;
    assert_eq!(half_made, 0, "its transaction died with the process");
    let rerun = up(&db, &[]).output().unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await,
        Migrator::migrations().len() as i64
    );
    println!(
        "figure: SIGKILL inside migration 5 of {}: 4 recorded, no half-made table, the next `up` applied the rest",
        Migrator::migrations().len()
    );
}
