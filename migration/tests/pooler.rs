//! `migration up` pointed at a real transaction-mode PgBouncer: told so (`DB_POOLER=transaction`)
//! and given no direct URL, it refuses at once naming MIGRATION_DATABASE_URL; not told (an
//! operator who forgot the flag), it still applies the schema exactly once and leaves no lock.

use std::{
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use harness::{TestDb, scalar, text_rows, topology::pgbouncer};
use migration::{Migrator, MigratorTrait};
use secrecy::ExposeSecret;

mod common;

const PROCESSES: usize = 8;
/// Far beyond what 8 runs need (a few seconds); a run past it is stuck, not slow.
const PATIENCE: Duration = Duration::from_secs(180);

/// `migration up` with DATABASE_URL through PgBouncer and none of the topology variables but
/// `extra` (a developer's own environment must not decide the outcome).
fn up_through_pgbouncer(db: &TestDb, extra: &[(&str, &str)]) -> Command {
    let url = pgbouncer().url(db.name()).unwrap();
    let mut cmd = common::migration(&["up"]);
    cmd.env("DATABASE_URL", url.expose().expose_secret());
    for var in [
        "DB_POOLER",
        "DATABASE_DIRECT_URL",
        "MIGRATION_DATABASE_URL",
        "DATABASE_REPLICA_URL",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(extra.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The outputs of `children`, or a failure naming what is stuck once [`PATIENCE`] is spent
/// (every child is killed first, so no test process hangs).
fn outputs_within_patience(mut children: Vec<Child>, what: &str) -> Vec<Output> {
    let deadline = Instant::now() + PATIENCE;
    while children
        .iter_mut()
        .any(|c| c.try_wait().expect("waiting for a child").is_none())
    {
        if Instant::now() > deadline {
            let mut stuck = 0;
            for child in &mut children {
                stuck += usize::from(child.try_wait().ok().flatten().is_none());
            }
            for child in &mut children {
                let _ = child.kill();
            }
            let outputs: Vec<_> = children
                .into_iter()
                .map(|c| c.wait_with_output().expect("output of a killed child"))
                .collect();
            let printed: Vec<_> = outputs
                .iter()
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .collect();
            panic!(
                "{what}: {stuck} of {PROCESSES} `migration up` runs were still running after {PATIENCE:?} \
                 (a session advisory lock taken through a transaction pooler lands on whatever server \
                 session was free and can be orphaned there); their output:\n{}",
                printed.join("\n---\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("output of a child"))
        .collect()
}

async fn tables(db: &TestDb) -> i64 {
    let direct = harness::connect(db.direct_url(), 1).await;
    scalar(
        &direct,
        "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'",
    )
    .await
}

#[tokio::test]
async fn told_it_is_behind_a_transaction_pooler_without_a_direct_url_up_refuses_at_once() {
    let db = TestDb::empty().await;
    let children = (0..PROCESSES)
        .map(|_| {
            up_through_pgbouncer(&db, &[("DB_POOLER", "transaction")])
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs = outputs_within_patience(children, "refusing");
    for output in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "it ran: {stderr}");
        assert!(
            stderr.contains("MIGRATION_DATABASE_URL"),
            "the refusal names the variable to set: {stderr}"
        );
    }
    assert_eq!(tables(&db).await, 0, "nothing was applied");
}

#[tokio::test]
async fn eight_runs_through_a_transaction_pooler_nobody_declared_apply_the_schema_once() {
    let db = TestDb::empty().await;
    let children = (0..PROCESSES)
        .map(|_| up_through_pgbouncer(&db, &[]).spawn().unwrap())
        .collect();
    let outputs = outputs_within_patience(children, "applying");
    let direct = harness::connect(db.direct_url(), 1).await;
    let failures: Vec<_> = outputs
        .iter()
        .filter(|o| !o.status.success())
        .map(|o| {
            let stderr = String::from_utf8_lossy(&o.stderr);
            stderr.lines().next().unwrap_or_default().to_owned()
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {PROCESSES} runs failed ({} tables now exist):\n{}",
        failures.len(),
        tables(&db).await,
        failures.join("\n")
    );
    let versions = text_rows(
        &direct,
        "SELECT version, count(*)::text FROM seaql_migrations GROUP BY version",
    )
    .await;
    assert_eq!(versions.len(), Migrator::migrations().len());
    assert!(
        versions.iter().all(|v| v[1].as_deref() == Some("1")),
        "each migration recorded once: {versions:?}"
    );
    // PgBouncer keeps its server sessions open: a session lock left on one would still show.
    let held = scalar(
        &direct,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(held, 0, "no advisory lock is left held");
    let reference = TestDb::empty().await;
    let single = common::with_url(&reference, &["up"]).output().unwrap();
    assert!(single.status.success());
    assert_eq!(
        db.schema_dump(),
        reference.schema_dump(),
        "same schema as one direct run"
    );
}
