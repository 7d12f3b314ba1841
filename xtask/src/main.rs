//! `cargo xtask <task>`: the workspace's tooling, in Rust rather than shell scripts.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use xtask::{diff_dirs, diff_erd, erd, erd_path, generate, generated_dir, migrated_database};

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
}

#[tokio::main]
async fn main() -> Result<()> {
    let Task::Entities { check } = Cli::parse().task;
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
