//! The `migration` binary itself, as a deployment or a developer runs it.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use harness::{TestDb, scalar};
use migration::{Migrator, MigratorTrait};
use secrecy::ExposeSecret;

mod common;

use common::{migration, with_url};

struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ran(output: Output) -> Ran {
    Ran {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn run(mut cmd: Command) -> Ran {
    ran(cmd.output().expect("the migration binary runs"))
}

fn migrations() -> usize {
    Migrator::migrations().len()
}

fn applied_lines(out: &str) -> usize {
    out.lines().filter(|l| l.starts_with("Applied")).count()
}

#[tokio::test]
async fn up_applies_everything_then_nothing_and_status_lists_it_all() {
    let db = TestDb::empty().await;
    let password = db.url().password().expose_secret().to_owned();
    let first = run(with_url(&db, &["up"]));
    assert!(first.ok, "{}{}", first.stdout, first.stderr);
    assert_eq!(
        applied_lines(&first.stdout),
        migrations(),
        "{}",
        first.stdout
    );
    assert!(first.stdout.contains("m20261129_000009_service_support"));
    assert!(
        first.stdout.contains(" ms)"),
        "each migration says how long it took"
    );
    assert!(
        first.stdout.contains(":****@"),
        "the URL is shown masked: {}",
        first.stdout
    );
    let second = run(with_url(&db, &["up"]));
    assert!(second.ok);
    assert_eq!(applied_lines(&second.stdout), 0);
    assert!(second.stdout.contains("Nothing to do"), "{}", second.stdout);
    let status = run(with_url(&db, &["status"]));
    assert!(status.ok);
    assert_eq!(
        status
            .stdout
            .lines()
            .filter(|l| l.starts_with("applied"))
            .count(),
        migrations()
    );
    assert!(
        status
            .stdout
            .contains(&format!("{} migrations, 0 pending", migrations())),
        "{}",
        status.stdout
    );
    for out in [&first, &second, &status] {
        assert!(!out.stdout.contains(&password) && !out.stderr.contains(&password));
    }
}

#[tokio::test]
async fn processes_migrating_at_once_all_succeed_and_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let children: Vec<_> = (0..3)
        .map(|_| {
            with_url(&db, &["up"])
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Ran> = children
        .into_iter()
        .map(|child| ran(child.wait_with_output().unwrap()))
        .collect();
    assert!(outputs.iter().all(|o| o.ok), "every process exits 0");
    let applied: usize = outputs.iter().map(|o| applied_lines(&o.stdout)).sum();
    assert_eq!(applied, migrations());
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await,
        migrations() as i64
    );
}

#[test]
fn a_malformed_database_url_is_refused_before_connecting() {
    let mut cmd = migration(&["up"]);
    cmd.env(
        "DATABASE_URL",
        "postgresql://deploy:hunter2-secret@db.internal/app",
    );
    let out = run(cmd);
    assert!(!out.ok);
    assert!(
        out.stderr.contains("DATABASE_URL is invalid"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("no port"), "{}", out.stderr);
    assert!(!out.stderr.contains("hunter2") && !out.stdout.contains("hunter2"));
}

/// Stops the local cluster of a test even when an assertion fails first.
struct LocalClusterGuard(PathBuf);

impl Drop for LocalClusterGuard {
    fn drop(&mut self) {
        let _ = migration(&["local", "stop"])
            .env("LOCAL_PG_DIR", &self.0)
            .output();
    }
}

#[test]
fn without_database_url_a_local_cluster_is_created_then_reused() {
    let home = tempfile::tempdir().unwrap();
    // The server may run as the `postgres` user, which must reach the folder.
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let dir = home.path().join(".pgdata");
    let _guard = LocalClusterGuard(dir.clone());
    let local = |args: &[&str]| {
        let mut cmd = migration(args);
        cmd.env("LOCAL_PG_DIR", &dir);
        run(cmd)
    };

    let first = local(&["up"]);
    assert!(first.ok, "{}{}", first.stdout, first.stderr);
    assert!(
        first.stdout.contains("(created and started)"),
        "{}",
        first.stdout
    );
    assert!(
        first
            .stdout
            .contains("postgresql://postgres:****@127.0.0.1:"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("local stop"),
        "it says how to stop it: {}",
        first.stdout
    );
    assert_eq!(applied_lines(&first.stdout), migrations());
    let password = std::fs::read_to_string(dir.join("password")).unwrap();
    assert!(!first.stdout.contains(password.trim()));

    let second = local(&["up"]);
    assert!(second.ok, "{}", second.stderr);
    assert!(
        second.stdout.contains("(already running, reused)"),
        "{}",
        second.stdout
    );
    assert!(second.stdout.contains("Nothing to do"));

    let status = local(&["local", "status"]);
    assert!(status.stdout.contains(": running"), "{}", status.stdout);
    let stop = local(&["local", "stop"]);
    assert!(stop.stdout.contains("Stopped"), "{}", stop.stdout);
    assert!(local(&["local", "status"]).stdout.contains(": stopped"));

    let restarted = local(&["up"]);
    assert!(restarted.ok, "{}", restarted.stderr);
    assert!(
        restarted.stdout.contains("(started)"),
        "{}",
        restarted.stdout
    );
    assert!(
        restarted.stdout.contains("Nothing to do"),
        "the data survived the stop"
    );
}

#[test]
fn generate_adds_a_migration_file_and_registers_it() {
    let crate_dir = tempfile::tempdir().unwrap();
    let src = crate_dir.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    std::fs::copy(&lib, src.join("lib.rs")).unwrap();
    let dir = crate_dir.path().to_str().unwrap();
    let out = run(migration(&[
        "generate",
        "add_run_costs",
        "--migration-dir",
        dir,
    ]));
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    let created: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with("_add_run_costs.rs"))
        .collect();
    assert_eq!(created.len(), 1, "{created:?}");
    let module = created[0].trim_end_matches(".rs");
    let registered = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    assert!(registered.contains(&format!("mod {module};")));
    assert!(registered.contains(&format!("Box::new({module}::Migration)")));
    assert!(
        registered.contains("Box::new(m20261129_000008_agents::Migration)"),
        "existing ones kept"
    );
}

async fn has_migration_table(db: &TestDb) -> bool {
    scalar(
        db.conn(),
        "SELECT count(*) FROM pg_tables WHERE tablename = 'seaql_migrations'",
    )
    .await
        > 0
}

#[tokio::test]
async fn behind_a_flagged_transaction_pooler_up_refuses_at_once_and_names_the_variable_to_set() {
    let db = TestDb::empty().await;
    let url = db.url().expose().expose_secret().to_owned();
    let flagged_by_variable = {
        let mut cmd = migration(&["up"]);
        cmd.env("DATABASE_URL", &url)
            .env("DB_POOLER", "transaction");
        run(cmd)
    };
    let flagged_in_url = {
        let mut cmd = migration(&["up"]);
        cmd.env("DATABASE_URL", format!("{url}?pgbouncer=true"));
        run(cmd)
    };
    for out in [&flagged_by_variable, &flagged_in_url] {
        assert!(!out.ok, "{}", out.stdout);
        assert!(
            out.stderr.contains("set MIGRATION_DATABASE_URL"),
            "{}",
            out.stderr
        );
        assert!(!out.stdout.contains("Applied"), "{}", out.stdout);
    }
    assert!(!has_migration_table(&db).await, "nothing was applied");
}

#[tokio::test]
async fn migration_database_url_is_used_before_database_url_and_named() {
    let db = TestDb::empty().await;
    let mut cmd = migration(&["up"]);
    // The application's URL is a pooler nobody can migrate through; migrations go direct.
    cmd.env(
        "DATABASE_URL",
        "postgresql://app:pooled-secret@127.0.0.1:1/app?pgbouncer=true",
    )
    .env("MIGRATION_DATABASE_URL", db.url().expose().expose_secret());
    let out = run(cmd);
    assert!(out.ok, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("Using MIGRATION_DATABASE_URL postgresql://"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains(":****@"), "masked: {}", out.stdout);
    assert_eq!(applied_lines(&out.stdout), migrations());
    let password = db.url().password().expose_secret().to_owned();
    assert!(!out.stdout.contains(&password) && !out.stderr.contains("pooled-secret"));
}

#[tokio::test]
async fn a_bad_lock_timeout_setting_is_refused_by_name_before_anything_runs() {
    let db = TestDb::empty().await;
    let mut cmd = with_url(&db, &["up"]);
    cmd.env("MIGRATION_LOCK_TIMEOUT_MS", "5s");
    let out = run(cmd);
    assert!(!out.ok);
    assert!(
        out.stderr
            .contains("MIGRATION_LOCK_TIMEOUT_MS=\"5s\" is invalid"),
        "{}",
        out.stderr
    );
    assert!(!has_migration_table(&db).await);
}
