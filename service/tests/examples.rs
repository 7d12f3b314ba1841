//! The two examples as a user runs them, from the binaries `cargo test` builds: they read the
//! environment as every service does (`DB_POOLER`, `DATABASE_DIRECT_URL`, `DB_*`), so through a
//! real transaction-mode PgBouncer `DB_POOLER=transaction` alone makes them pass, and against a
//! URL that cannot connect they fail within seconds naming the cause, without a backtrace.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::SystemTime,
};

use harness::{
    TestDb,
    connect_faults::{self, assert_cli_failed_fast, run_timed},
    topology::pgbouncer,
};
use secrecy::ExposeSecret;

/// `target/<profile>/examples/<name>`, built by `cargo test` (which builds every example of
/// the packages it tests) from the sources as they are now.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(Path::parent).unwrap();
    let binary = profile.join("examples").join(name);
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| {
            panic!(
                "{} is not built: run `cargo test -p service` (it builds the examples) or `cargo build -p service --examples`",
                binary.display()
            )
        });
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let newest_source = [
        "service/src",
        "service/examples",
        "db-connect/src",
        "dev-servers/src",
    ]
    .iter()
    .filter_map(|dir| newest(&workspace.join(dir)))
    .max()
    .unwrap();
    assert!(
        built >= newest_source,
        "{} is older than its sources: run `cargo test -p service` (it builds the examples) or `cargo build -p service --examples`",
        binary.display()
    );
    binary
}

fn newest(dir: &Path) -> Option<SystemTime> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|entry| {
            let meta = entry.metadata().ok()?;
            match meta.is_dir() {
                true => newest(&entry.path()),
                false => meta.modified().ok(),
            }
        })
        .max()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The example `name` with exactly `env` (and `PATH`), in a folder without a `.env`.
fn run(name: &str, env: &[(&str, String)]) -> Output {
    Command::new(example(name))
        .current_dir(std::env::temp_dir())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .output()
        .unwrap()
}

#[tokio::test]
async fn each_example_fails_fast_naming_the_cause() {
    for fault in connect_faults::all().await {
        for name in ["main_flow", "worker"] {
            let (took, output) = run_timed(&mut fault.command(example(name), &[]));
            assert_cli_failed_fast(name, &fault, took, &output);
        }
    }
}

#[tokio::test]
async fn through_pgbouncer_db_pooler_transaction_alone_makes_main_flow_pass() {
    let db = TestDb::migrated().await;
    // Not `pgbouncer=true`: the variable alone must say it.
    let through = pgbouncer().url(db.name()).unwrap().with_pooler_flag(None);
    let env = vec![
        ("DATABASE_URL", through.expose().expose_secret().to_owned()),
        ("DB_POOLER", "transaction".to_owned()),
    ];
    for _ in 0..6 {
        let output = run("main_flow", &env);
        assert!(output.status.success(), "{}", text(&output));
        assert!(
            text(&output).contains("run(s) in acme-"),
            "{}",
            text(&output)
        );
    }
    let at_once: Vec<_> = (0..6)
        .map(|_| {
            let env = env.clone();
            std::thread::spawn(move || run("main_flow", &env))
        })
        .collect();
    for run in at_once {
        let output = run.join().unwrap();
        assert!(output.status.success(), "{}", text(&output));
    }
}

#[tokio::test]
async fn through_pgbouncer_the_worker_listens_on_the_direct_url_and_refuses_without_one() {
    let db = TestDb::migrated().await;
    let through = pgbouncer().url(db.name()).unwrap().with_pooler_flag(None);
    let pooled = vec![
        ("DATABASE_URL", through.expose().expose_secret().to_owned()),
        ("DB_POOLER", "transaction".to_owned()),
    ];
    let output = run("worker", &pooled);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        text(&output).contains("set DATABASE_DIRECT_URL"),
        "{}",
        text(&output)
    );

    let mut with_direct = pooled.clone();
    with_direct.push((
        "DATABASE_DIRECT_URL",
        db.direct_url().expose().expose_secret().to_owned(),
    ));
    let output = run("worker", &with_direct);
    assert!(output.status.success(), "{}", text(&output));
    assert!(
        text(&output).contains("ingested 20 events"),
        "{}",
        text(&output)
    );
}
