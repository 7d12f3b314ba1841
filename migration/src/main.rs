//! `cargo run -p migration -- <command>`: applies the schema to the database of
//! `MIGRATION_DATABASE_URL` / `DATABASE_DIRECT_URL` / `DATABASE_URL`, or to the workspace's local
//! PostgreSQL cluster when none is set.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use db_connect::{DatabaseUrl, Settings};
use dev_servers::LocalCluster;
use migration::{
    Migrator,
    runner::{self, Action, Progress, RunOptions, blockers},
};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "Apply, roll back and inspect the database schema")]
struct Cli {
    /// Connect here instead of MIGRATION_DATABASE_URL, DATABASE_DIRECT_URL or DATABASE_URL
    /// (or the local cluster when none is given). A URL given here, password included, is
    /// visible to every user of this machine in the process list (`ps`): prefer the variables.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply pending migrations.
    Up {
        /// Apply only the first N pending migrations.
        #[arg(short = 'n', long = "num")]
        num: Option<u32>,
    },
    /// Roll back the newest applied migrations.
    Down {
        /// How many to roll back.
        #[arg(short = 'n', long = "num", default_value_t = 1)]
        num: u32,
    },
    /// List every migration and whether it is applied.
    Status,
    /// Drop every table and function of the schema, then apply all migrations.
    Fresh,
    /// Roll back every applied migration, then apply all migrations.
    Refresh,
    /// Roll back every applied migration and remove the migration table.
    Reset,
    /// Check the SQL of every migration with squawk (on a throwaway database); fails on any
    /// finding that migration/lint/exceptions.toml does not let through.
    Lint,
    /// Create a new, empty migration file and register it in the migrator.
    Generate {
        /// What the migration does, in snake_case (e.g. add_agent_run_cost).
        name: String,
        /// The migration crate to add it to (default: this one).
        #[arg(long, value_name = "DIR")]
        migration_dir: Option<PathBuf>,
    },
    /// Fill the database with deterministic, realistic rows (see docs/seed.md).
    Seed(seed::cli::SeedArgs),
    /// Manage the local PostgreSQL cluster used when DATABASE_URL is not set.
    Local {
        #[command(subcommand)]
        action: LocalAction,
    },
}

#[derive(Subcommand, Clone, Copy)]
enum LocalAction {
    /// Create the cluster if needed and start it.
    Start,
    /// Stop the cluster (its data stays).
    Stop,
    /// Say whether the cluster exists and runs, and its URL.
    Status,
}

/// The workspace's local cluster: `.pgdata` beside the workspace's Cargo.toml (git-ignored),
/// unless `LOCAL_PG_DIR` says otherwise.
fn local_cluster() -> Result<LocalCluster> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    Ok(LocalCluster::for_workspace(
        manifest.parent().unwrap_or(manifest),
    )?)
}

/// `--database-url`, else `MIGRATION_DATABASE_URL`, else `DATABASE_DIRECT_URL`, else
/// `DATABASE_URL` unless it goes through a transaction-mode pooler (refused at once, naming the
/// variable to set), else the local cluster. Prints which one, masked.
fn resolve_url(flag: Option<&str>, settings: &Settings) -> Result<DatabaseUrl> {
    if let Some(raw) = flag {
        let url = DatabaseUrl::parse(raw).context("--database-url is invalid")?;
        println!("Using --database-url {url}");
        return Ok(url);
    }
    if let Some((var, url)) = settings.migration_url()? {
        println!("Using {var} {url}");
        return Ok(url.clone());
    }
    let cluster = local_cluster()?;
    let start = cluster
        .ensure_running()
        .context("DATABASE_URL is not set and the local PostgreSQL cluster could not start")?;
    let what = match (start.created, start.started) {
        (true, _) => "created and started",
        (false, true) => "started",
        (false, false) => "already running, reused",
    };
    println!(
        "No database URL is set: using the local PostgreSQL cluster in {} ({what})",
        cluster.dir().display()
    );
    println!("  URL:      {}", start.url);
    println!(
        "  Password: {} (set DATABASE_URL to connect elsewhere)",
        cluster.dir().join("password").display()
    );
    println!("  Stop it:  {}", cluster.stop_hint());
    Ok(start.url)
}

/// Where a run goes and its settings: `MIGRATION_*`, and `DB_CONNECT_TIMEOUT_SECS` for each of
/// its connections.
fn connection(flag: Option<&str>) -> Result<(DatabaseUrl, RunOptions)> {
    let settings = Settings::from_env()?;
    let options = RunOptions {
        connect_timeout: settings.pool.connect_timeout,
        ..RunOptions::from_env()?
    };
    Ok((resolve_url(flag, &settings)?, options))
}

fn millis(took: Duration) -> String {
    format!("{:.1} ms", took.as_secs_f64() * 1000.0)
}

fn print_progress(step: Progress) {
    match step {
        Progress::WaitingForLock => {
            println!("Another migration run holds the lock; waiting for it to finish...")
        }
        Progress::LockAcquired { waited } if waited > Duration::from_millis(100) => {
            println!("Migration lock acquired after {}", millis(waited))
        }
        Progress::LockAcquired { .. } => {}
        Progress::DroppedEverything { tables } => println!("Dropped {tables} tables"),
        Progress::Applied { name, took } => println!("Applied      {name}  ({})", millis(took)),
        Progress::RolledBack { name, took } => {
            println!("Rolled back  {name}  ({})", millis(took))
        }
        Progress::LockRetry {
            name,
            attempt,
            attempts,
            blockers,
            retry_in,
        } => println!(
            "Lock timeout in {name} (attempt {attempt} of {attempts}), rolled back; blocked by: {}. Retrying in {:.1} s",
            blockers::describe(&blockers),
            retry_in.as_secs_f64()
        ),
        Progress::NothingToDo => println!("Nothing to do: the schema is up to date"),
        Progress::Uninstalled => println!("Removed the migration table"),
    }
}

async fn local(action: LocalAction) -> Result<()> {
    let cluster = local_cluster()?;
    match action {
        LocalAction::Start => {
            resolve_url(None, &Settings::from_env()?)?;
        }
        LocalAction::Stop => match cluster.stop()? {
            true => println!("Stopped the local cluster in {}", cluster.dir().display()),
            false => println!(
                "The local cluster in {} is not running",
                cluster.dir().display()
            ),
        },
        LocalAction::Status => {
            let (exists, running) = cluster.status()?;
            match (exists, running) {
                (false, _) => println!(
                    "No local cluster in {} yet; `cargo run -p migration -- up` creates it",
                    cluster.dir().display()
                ),
                (true, running) => println!(
                    "Local cluster in {}: {}\n  URL: {}",
                    cluster.dir().display(),
                    if running { "running" } else { "stopped" },
                    cluster.url()?
                ),
            }
        }
    }
    Ok(())
}

async fn lint() -> Result<()> {
    let squawk = migration::lint::squawk::install()?;
    let exceptions = migration::lint::Exceptions::load(&migration::lint::exceptions_path())?;
    let cluster = dev_servers::ThrowawayCluster::start().context(
        "the lint applies the migrations to a throwaway PostgreSQL, which did not start",
    )?;
    let scratch = cluster.url("postgres")?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let workdir = manifest
        .parent()
        .unwrap_or(manifest)
        .join("target/migration-lint");
    std::fs::create_dir_all(&workdir)?;
    let report =
        migration::lint::lint::<Migrator>(&scratch, &squawk, &exceptions, &workdir).await?;
    for (violation, exception) in &report.excepted {
        println!(
            "allowed  {} {} (exception: {})",
            violation.migration, violation.rule, exception.reason
        );
    }
    for violation in &report.violations {
        println!("FAILED   {violation}");
    }
    for exception in &report.unused {
        println!(
            "STALE    exception for {} / {} matches nothing: remove it from {}",
            exception.migration,
            exception.rule,
            migration::lint::exceptions_path().display()
        );
    }
    println!(
        "{} migrations linted (SQL in {}); {} findings allowed by exceptions, {} rules off for all ({}); {} violations",
        report.files.len(),
        workdir.display(),
        report.excepted.len(),
        exceptions.rules.len(),
        exceptions
            .rules
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        report.violations.len() + report.unused.len()
    );
    if !report.passed() {
        bail!("the migration lint failed");
    }
    Ok(())
}

/// A user's mistake (a wrong URL, a server that is down) is one line naming it, whatever
/// `RUST_BACKTRACE` says: anyhow would print a backtrace with it. Panics keep theirs.
#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let action = match cli.command {
        Command::Generate {
            name,
            migration_dir,
        } => {
            let dir = migration_dir.unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
            let dir = dir
                .to_str()
                .context("the migration folder's path is not UTF-8")?;
            if let Err(err) = sea_orm_cli::run_migrate_generate(dir, &name, true) {
                bail!("could not generate the migration: {err}");
            }
            return Ok(());
        }
        Command::Lint => return lint().await,
        Command::Local { action } => return local(action).await,
        Command::Seed(args) => {
            let settings = Settings::from_env()?;
            let url = resolve_url(cli.database_url.as_deref(), &settings)?;
            seed::cli::run(&url, &args, settings.pool.connect_timeout).await?;
            return Ok(());
        }
        Command::Status => {
            let (url, options) = connection(cli.database_url.as_deref())?;
            let states = runner::status_with::<Migrator>(&url, &options).await?;
            for state in &states {
                let mark = if state.applied { "applied" } else { "pending" };
                println!("{mark:<8} {}", state.name);
            }
            let pending = states.iter().filter(|s| !s.applied).count();
            println!("{} migrations, {pending} pending", states.len());
            return Ok(());
        }
        Command::Up { num } => Action::Up(num),
        Command::Down { num } => Action::Down(num),
        Command::Fresh => Action::Fresh,
        Command::Refresh => Action::Refresh,
        Command::Reset => Action::Reset,
    };
    let (url, run_options) = connection(cli.database_url.as_deref())?;
    runner::run_with::<Migrator>(&url, action, &run_options, print_progress).await?;
    Ok(())
}
