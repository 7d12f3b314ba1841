//! `cargo run -p migration -- <command>`: applies the schema to `DATABASE_URL`, or to the
//! workspace's local PostgreSQL cluster when `DATABASE_URL` is not set.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use db_support::{DatabaseUrl, LocalCluster};
use migration::{
    Migrator,
    runner::{self, Action, Progress},
};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(version, about = "Apply, roll back and inspect the database schema")]
struct Cli {
    /// Connect here instead of DATABASE_URL (or the local cluster when neither is given).
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

/// `--database-url`, else `DATABASE_URL` (environment or `.env`), else the local cluster.
fn resolve_url(flag: Option<&str>) -> Result<DatabaseUrl> {
    if let Some(raw) = flag {
        return DatabaseUrl::parse(raw).context("--database-url is invalid");
    }
    if let Some(url) = DatabaseUrl::from_env().context("DATABASE_URL is invalid")? {
        println!("Using DATABASE_URL {url}");
        return Ok(url);
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
        "DATABASE_URL is not set: using the local PostgreSQL cluster in {} ({what})",
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
        Progress::NothingToDo => println!("Nothing to do: the schema is up to date"),
        Progress::Uninstalled => println!("Removed the migration table"),
    }
}

async fn local(action: LocalAction) -> Result<()> {
    let cluster = local_cluster()?;
    match action {
        LocalAction::Start => {
            resolve_url(None)?;
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

#[tokio::main]
async fn main() -> Result<()> {
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
        Command::Local { action } => return local(action).await,
        Command::Seed(args) => {
            let url = resolve_url(cli.database_url.as_deref())?;
            seed::cli::run(&url, &args).await?;
            return Ok(());
        }
        Command::Status => {
            let url = resolve_url(cli.database_url.as_deref())?;
            let states = runner::status::<Migrator>(&url).await?;
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
    let url = resolve_url(cli.database_url.as_deref())?;
    runner::run::<Migrator>(&url, action, print_progress).await?;
    Ok(())
}
