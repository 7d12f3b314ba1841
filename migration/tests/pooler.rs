//! `migration up` pointed at a real transaction-mode PgBouncer: told so (`DB_POOLER=transaction`)
//! and given no direct URL, it refuses at once naming MIGRATION_DATABASE_URL; not told (an
//! operator who forgot the flag), it applies transactional migrations exactly once and leaves
//! no lock, and refuses, before applying anything, a run that includes a migration needing a
//! session of its own (`CREATE INDEX CONCURRENTLY` with its timeouts), naming the variable.
//! `pooler_pgbouncer_125.rs` runs the same through PgBouncer 1.25 (the harness picks the release
//! by the binary's name).

use std::{
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use harness::{TestDb, scalar, text_rows, topology::pgbouncer};
use migration::{
    MigrationTrait, Migrator, MigratorTrait,
    runner::{self, Action},
};
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
        "DB_POOLER_PREPARED_STATEMENTS",
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
    // With the pooler's prepared statements kept or not: sessions stay the pooler's either way.
    let told = [
        ("DB_POOLER", "transaction"),
        ("DB_POOLER_PREPARED_STATEMENTS", "true"),
    ];
    let children = (0..PROCESSES)
        .map(|n| {
            up_through_pgbouncer(&db, &told[..1 + n % 2])
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

/// The migrations that run in a transaction of their own, up to the first that does not.
fn transactional_prefix() -> Vec<Box<dyn MigrationTrait>> {
    Migrator::migrations()
        .into_iter()
        .take_while(|m| m.use_transaction() != Some(false))
        .collect()
}

/// The schema's transactional migrations alone, which need nothing beyond one transaction each.
struct TransactionalPrefix;

impl MigratorTrait for TransactionalPrefix {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        transactional_prefix()
    }
}

#[tokio::test]
async fn eight_runs_through_a_transaction_pooler_nobody_declared_apply_the_schema_once() {
    let db = TestDb::empty().await;
    let count = transactional_prefix().len();
    assert!(count >= 9, "the first migrations are transactional");
    let url = pgbouncer().url(db.name()).unwrap();
    // Eight runs at once, each with connections of its own through PgBouncer, as eight
    // deployments would be (in one process, so the migrator can be this test's own).
    let runs: Vec<_> = (0..PROCESSES)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                tokio::time::timeout(
                    PATIENCE,
                    runner::run::<TransactionalPrefix>(&url, Action::Up(None), |_| {}),
                )
                .await
            })
        })
        .collect();
    let mut failures = Vec::new();
    for run in runs {
        match run.await.expect("a run panicked") {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failures.push(err.to_string()),
            Err(_) => failures.push(format!(
                "still running after {PATIENCE:?} (a session advisory lock taken through a \
                 transaction pooler lands on whatever server session was free and can be \
                 orphaned there)"
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {PROCESSES} runs failed ({} tables now exist):\n{}",
        failures.len(),
        tables(&db).await,
        failures.join("\n")
    );
    let direct = harness::connect(db.direct_url(), 1).await;
    let versions = text_rows(
        &direct,
        "SELECT version, count(*)::text FROM seaql_migrations GROUP BY version",
    )
    .await;
    assert_eq!(versions.len(), count);
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
    runner::run::<TransactionalPrefix>(reference.url(), Action::Up(None), |_| {})
        .await
        .unwrap();
    assert_eq!(
        db.schema_dump(),
        reference.schema_dump(),
        "same schema as one direct run"
    );
}

#[tokio::test]
async fn a_run_that_needs_a_session_refuses_through_an_undeclared_pooler_before_applying_anything()
{
    let db = TestDb::empty().await;
    assert!(
        transactional_prefix().len() < Migrator::migrations().len(),
        "the schema has a migration that runs outside a transaction"
    );
    let children = (0..PROCESSES)
        .map(|_| up_through_pgbouncer(&db, &[]).spawn().unwrap())
        .collect();
    for output in outputs_within_patience(children, "refusing") {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "it ran: {stderr}");
        assert!(
            stderr.contains("runs outside a transaction")
                && stderr.contains("MIGRATION_DATABASE_URL"),
            "the refusal says why and names the variable to set: {stderr}"
        );
    }
    let direct = harness::connect(db.direct_url(), 1).await;
    assert_eq!(
        scalar(&direct, "SELECT count(*) FROM seaql_migrations").await,
        0,
        "no migration was recorded"
    );
    assert_eq!(
        tables(&db).await,
        1,
        "no table but the migration table was made"
    );
}
