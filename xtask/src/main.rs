//! `cargo xtask <task>`: the workspace's tooling, in Rust rather than shell scripts.

mod contract;
mod mutants;
mod sql_mutants;

use std::{
    path::PathBuf,
    process::ExitCode,
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use xtask::{
    diff_dirs, diff_erd, erd, erd_path, generate, generated_dir, migrated_database, workspace_root,
};

#[derive(Parser)]
#[command(about = "Workspace tooling")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Regenerate entity/src/generated (with the pinned sea-orm-cli) and docs/erd.md (from the
    /// catalog) from the migrated schema.
    Entities {
        /// Regenerate into a temporary folder and fail, showing the diff, if the committed
        /// entities or ERD differ.
        #[arg(long)]
        check: bool,
    },
    /// Run cargo-mutants over each service file (and the migration runner) with the test files
    /// that cover it, in place, then print caught / missed / unviable / timeout per file.
    Mutants {
        /// Only these files (e.g. `service/src/auth.rs`; repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Rerun only the mutants the previous run did not catch.
        #[arg(long)]
        iterate: bool,
    },
    /// Apply each hand-made mutation of the helpers' SQL in turn, run the tests that cover it,
    /// and report it caught or missed (docs/reliability.md); restores every file.
    SqlMutants {
        /// Only these mutants (by name; repeatable).
        #[arg(long)]
        only: Vec<String>,
        /// Print the mutants as a Markdown table and run nothing.
        #[arg(long)]
        list: bool,
        /// Seconds a mutant's tests may take before it counts as a timeout.
        #[arg(long, default_value_t = 600)]
        timeout: u64,
        /// Skip checking first that the covering tests pass without any mutation.
        #[arg(long)]
        no_baseline: bool,
    },
    /// Check that docs/schema.md begins with the shared schema contract, unchanged (a step of
    /// `.ci/run`: a user's clone has no ../shared).
    Contract {
        /// The contract (default: ../shared/SCHEMA.md beside the checkout).
        #[arg(long, value_name = "FILE")]
        shared: Option<PathBuf>,
    },
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
    let check = match Cli::parse().task {
        Task::Entities { check } => check,
        Task::Mutants { only, iterate } => {
            return mutants::run(&mutants::Options { only, iterate });
        }
        Task::Contract { shared } => {
            let root = workspace_root();
            let shared = shared.unwrap_or_else(|| contract::default_shared_path(&root));
            contract::check_files(&root.join("docs/schema.md"), &shared)?;
            println!("docs/schema.md begins with {}", shared.display());
            return Ok(());
        }
        Task::SqlMutants { list: true, .. } => {
            print!("{}", sql_mutants::table());
            return Ok(());
        }
        Task::SqlMutants {
            only,
            timeout,
            no_baseline,
            ..
        } => {
            return sql_mutants::run(&sql_mutants::Options {
                only,
                timeout: Duration::from_secs(timeout),
                baseline: !no_baseline,
            });
        }
    };
    let started = Instant::now();
    let (_cluster, url) = migrated_database().await?;
    let committed = generated_dir();
    let erd = erd(&url).await?;
    if !check {
        generate(&url, &committed).await?;
        std::fs::write(erd_path(), erd)?;
        println!(
            "Regenerated {} and {} in {:.1} s",
            committed.display(),
            erd_path().display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let scratch = tempfile::tempdir()?;
    generate(&url, scratch.path()).await?;
    let entities = diff_dirs(&committed, scratch.path())?;
    let erd = diff_erd(&erd);
    if entities.is_none() && erd.is_none() {
        println!(
            "Entities and ERD are up to date with the migrations ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    for diff in [entities, erd].into_iter().flatten() {
        println!("{diff}");
    }
    bail!(
        "the committed entities or docs/erd.md differ from the migrated schema; run `cargo xtask entities` and commit the result"
    )
}
