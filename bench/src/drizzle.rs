//! Runs `bench/drizzle/bench.mjs` (Drizzle ORM on node-postgres) against the same database and
//! reads its figures, and measures our side of the same work the same way.

use std::{path::Path, process::Command, time::Instant};

use anyhow::{Context, Result, bail};
use db_support::DatabaseUrl;
use sea_orm::{DatabaseConnection, TransactionTrait};
use secrecy::ExposeSecret;
use service::events::{self, SlackEvents};

use crate::stats::Samples;

#[derive(Debug, Clone, Copy)]
pub struct DrizzleFigures {
    pub ingest_rows_per_s: f64,
    pub lookup_p50_us: f64,
    pub claim_p50_us: f64,
}

fn dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("drizzle")
}

pub fn run(url: &DatabaseUrl, rows: usize, iterations: usize) -> Result<DrizzleFigures> {
    let dir = dir();
    if !dir.join("node_modules/drizzle-orm").is_dir() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .context("npm is needed for the Drizzle comparison (apt-get install nodejs npm), or pass --no-drizzle")?;
        anyhow::ensure!(status.success(), "npm ci failed in {}", dir.display());
    }
    let output = Command::new("node")
        .arg("bench.mjs")
        .current_dir(&dir)
        .env("DATABASE_URL", url.expose().expose_secret())
        .env("ROWS", rows.to_string())
        .env("ITERATIONS", iterations.to_string())
        .output()
        .context("running node bench.mjs")?;
    if !output.status.success() {
        bail!(
            "the Drizzle bench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let figures: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .context("reading the Drizzle figures")?;
    let number = |key: &str| {
        figures[key]
            .as_f64()
            .with_context(|| format!("no {key} in {figures}"))
    };
    Ok(DrizzleFigures {
        ingest_rows_per_s: number("ingest_rows_per_s")?,
        lookup_p50_us: number("lookup_p50_us")?,
        claim_p50_us: number("claim_p50_us")?,
    })
}

/// Our claim timed as Drizzle's is: BEGIN and the claim, then a rollback outside the timing.
pub async fn our_claim(db: &DatabaseConnection, iterations: usize) -> Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..iterations {
        let started = Instant::now();
        let txn = db.begin().await?;
        events::claim::<SlackEvents>(&txn, 10).await?;
        samples.record(started.elapsed());
        txn.rollback().await?;
    }
    Ok(samples)
}
