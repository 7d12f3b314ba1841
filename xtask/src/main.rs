//! `cargo xtask <task>`: the workspace's tooling, in Rust rather than shell scripts.

use std::time::Instant;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use xtask::{diff_dirs, generate, generated_dir, migrated_database, sea_orm_cli};

#[derive(Parser)]
#[command(about = "Workspace tooling")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Regenerate entity/src/generated from the migrated schema with the pinned sea-orm-cli.
    Entities {
        /// Regenerate into a temporary folder and fail, showing the diff, if the committed
        /// entities differ.
        #[arg(long)]
        check: bool,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    let Task::Entities { check } = Cli::parse().task;
    let started = Instant::now();
    let cli = sea_orm_cli()?;
    let (_cluster, url) = migrated_database().await?;
    let committed = generated_dir();
    if !check {
        generate(&cli, &url, &committed)?;
        println!(
            "Regenerated {} in {:.1} s",
            committed.display(),
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let scratch = tempfile::tempdir()?;
    generate(&cli, &url, scratch.path())?;
    match diff_dirs(&committed, scratch.path())? {
        None => {
            println!(
                "Entities are up to date with the migrations ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Some(diff) => {
            println!("{diff}");
            bail!(
                "the committed entities differ from the migrated schema; run `cargo xtask entities` and commit the result"
            )
        }
    }
}
