//! The worker runtime against graphile-worker 0.18 and pg-boss 12 (`bench/workers/`), on the same
//! database server, measured the same way, in interleaved rounds (median of rounds):
//!
//! - latency: idle workers (8 concurrent), one event at a time, from just before the ingest (or
//!   `addJob` / `send`) call to the start of its handler;
//! - throughput: events inserted first, then a worker started with 8 concurrent no-op handlers;
//!   events per second from its start to the start of the last handler.
//!
//! And the claim index across ingest / process / prune cycles: it stays as small as the queue.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use db_connect::DatabaseUrl;
use entity::SlackEvent;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};
use secrecy::ExposeSecret;
use serde_json::json;
use service::{
    events::{self, SlackDelivery, SlackEvents},
    worker::{self, CancellationToken, Outcome, Wakeup, Worker, WorkerConfig},
};
use tokio::sync::mpsc;

use crate::stats::Samples;

/// Handlers running at once, for every system.
const CONCURRENCY: usize = 8;
/// Ours, claimed ahead of free handlers: the size of graphile-worker's local queue, for throughput.
const PREFETCH: usize = 500;

pub struct Plan {
    pub rounds: usize,
    pub samples: usize,
    /// Throughput is measured over each of these queue sizes, interleaved.
    pub events: Vec<usize>,
    pub cycles: usize,
    pub cycle_events: usize,
}

impl Plan {
    pub fn new(smoke: bool, quick: bool) -> Self {
        match (smoke, quick) {
            (true, _) => Self {
                rounds: 1,
                samples: 20,
                events: vec![2_000],
                cycles: 3,
                cycle_events: 1_000,
            },
            (false, true) => Self {
                rounds: 3,
                samples: 100,
                events: vec![5_000, 20_000],
                cycles: 10,
                cycle_events: 5_000,
            },
            (false, false) => Self {
                rounds: 5,
                samples: 300,
                events: vec![20_000, 100_000],
                cycles: 20,
                cycle_events: 10_000,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    events_per_s: f64,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// A delivery of the bench's Slack team, routed to the bench's organization.
fn delivery(n: usize) -> SlackDelivery {
    SlackDelivery {
        event_id: format!("W{n:09}"),
        event_type: "app_mention".into(),
        team_id: crate::seed::TEAM.into(),
        channel_id: Some("C1".into()),
        slack_user_id: Some("U1".into()),
        payload: json!({ "n": n, "text": "hello there" }),
    }
}

fn config(url: &DatabaseUrl, prefetch: usize) -> WorkerConfig {
    WorkerConfig {
        concurrency: CONCURRENCY,
        prefetch,
        ..WorkerConfig::new(Wakeup::Listen(url.clone()))
    }
}

/// A no-op handler reporting the payload's `n` and when it started.
fn reporting() -> (
    impl worker::Handler<SlackEvent>,
    mpsc::UnboundedReceiver<(usize, Instant)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: SlackEvent| {
        let at = Instant::now();
        let n = event.payload["n"].as_u64().unwrap_or(u64::MAX) as usize;
        tx.send((n, at)).ok();
        async { Ok::<_, std::convert::Infallible>(Outcome::Processed) }
    };
    (handler, rx)
}

async fn ours_latency(
    db: &DatabaseConnection,
    url: &DatabaseUrl,
    samples: usize,
) -> Result<Figures> {
    db.execute_unprepared("TRUNCATE slack_events CASCADE")
        .await?;
    let (handler, mut started) = reporting();
    let stop = CancellationToken::new();
    let worker = Worker::<SlackEvents, _>::new(db.clone(), handler, config(url, CONCURRENCY))?;
    let running = tokio::spawn(worker.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Samples::default();
    for n in 0..samples {
        let sent = Instant::now();
        let ingested = events::ingest::<SlackEvents>(db, delivery(n)).await?;
        anyhow::ensure!(
            matches!(ingested, events::Ingested::Inserted { .. }),
            "delivery {n} was not routed to an organization: {ingested:?}"
        );
        loop {
            let (m, at) = tokio::time::timeout(Duration::from_secs(30), started.recv())
                .await
                .context("an event was not handled within 30 s")?
                .context("the worker stopped")?;
            if m == n {
                latencies.record(at - sent);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    running.await?;
    Ok(Figures {
        p50_ms: latencies.p50().as_secs_f64() * 1e3,
        p99_ms: latencies.p99().as_secs_f64() * 1e3,
        ..Figures::default()
    })
}

/// Ingests deliveries `from..to` in batches of 1000, every one stored for an organization.
async fn ingest_all(db: &DatabaseConnection, from: usize, to: usize) -> Result<()> {
    for start in (from..to).step_by(1000) {
        let batch: Vec<_> = (start..(start + 1000).min(to)).map(delivery).collect();
        let ingested = events::ingest_batch::<SlackEvents>(db, &batch).await?;
        anyhow::ensure!(
            ingested.inserted.len() == batch.len(),
            "{} of {} deliveries stored for an organization ({} unrouted)",
            ingested.inserted.len(),
            batch.len(),
            ingested.unrouted.len()
        );
    }
    Ok(())
}

/// Starts a worker over what is queued and returns when `events` handlers have started.
async fn drain(
    db: &DatabaseConnection,
    url: &DatabaseUrl,
    events: usize,
    prefetch: usize,
) -> Result<Duration> {
    let count = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let (done_tx, mut done) = mpsc::unbounded_channel();
    let handler = {
        let (count, stop) = (count.clone(), stop.clone());
        move |_: SlackEvent| {
            if count.fetch_add(1, Ordering::Relaxed) + 1 == events {
                done_tx.send(Instant::now()).ok();
                stop.cancel();
            }
            async { Ok::<_, std::convert::Infallible>(Outcome::Processed) }
        }
    };
    let began = Instant::now();
    let worker = Worker::<SlackEvents, _>::new(db.clone(), handler, config(url, prefetch))?;
    let running = tokio::spawn(worker.run(stop.clone()));
    let finished = tokio::time::timeout(Duration::from_secs(600), done.recv())
        .await
        .context("the events were not handled within 10 minutes")?
        .context("the worker stopped early")?;
    running.await?;
    Ok(finished - began)
}

async fn ours_throughput(
    db: &DatabaseConnection,
    url: &DatabaseUrl,
    events: usize,
) -> Result<Figures> {
    db.execute_unprepared("TRUNCATE slack_events CASCADE")
        .await?;
    ingest_all(db, 0, events).await?;
    db.execute_unprepared("VACUUM ANALYZE slack_events").await?;
    let took = drain(db, url, events, PREFETCH).await?;
    Ok(Figures {
        events_per_s: events as f64 / took.as_secs_f64(),
        ..Figures::default()
    })
}

fn node_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("workers")
}

/// Installs `bench/workers/` from its lock file; `Err` says why the comparison cannot run.
pub fn prepare_node() -> Result<()> {
    let dir = node_dir();
    let version = Command::new("node")
        .arg("--version")
        .output()
        .context("Node.js is not installed")?;
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let major: u32 = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    // They declare Node 22; 20 runs them (checked), older ones do not.
    anyhow::ensure!(
        major >= 20,
        "graphile-worker 0.18 and pg-boss 12 need Node.js 20 or newer, found {version}"
    );
    if !dir.join("node_modules/graphile-worker").is_dir()
        || !dir.join("node_modules/pg-boss").is_dir()
    {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .context("npm is not installed")?;
        anyhow::ensure!(status.success(), "npm ci failed in {}", dir.display());
    }
    Ok(())
}

fn node(
    url: &DatabaseUrl,
    system: &str,
    mode: &str,
    plan: &Plan,
    events: usize,
) -> Result<Figures> {
    let output = Command::new("node")
        .args(["bench.mjs", system, mode])
        .current_dir(node_dir())
        .env("DATABASE_URL", url.expose().expose_secret())
        .env("SAMPLES", plan.samples.to_string())
        .env("EVENTS", events.to_string())
        .env("CONCURRENCY", CONCURRENCY.to_string())
        .output()
        .with_context(|| format!("running node bench.mjs {system} {mode}"))?;
    if !output.status.success() {
        bail!(
            "node bench.mjs {system} {mode} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let figures: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default())
            .with_context(|| format!("reading the figures of {system} {mode}"))?;
    let number = |key: &str| figures[key].as_f64().unwrap_or(0.0);
    Ok(Figures {
        p50_ms: number("p50_ms"),
        p99_ms: number("p99_ms"),
        events_per_s: number("events_per_s"),
    })
}

async fn relation_size(db: &DatabaseConnection, relation: &str) -> Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT pg_relation_size('{relation}')"),
        ))
        .await?
        .context("no size")?;
    Ok(row.try_get_by_index(0)?)
}

/// The claim index's size after each ingest / process / prune cycle of the organization's events.
async fn cycles(
    db: &DatabaseConnection,
    url: &DatabaseUrl,
    organization_id: &str,
    plan: &Plan,
) -> Result<Vec<i64>> {
    db.execute_unprepared("TRUNCATE slack_events CASCADE")
        .await?;
    let mut sizes = vec![relation_size(db, "idx_slack_events_due").await?];
    for cycle in 0..plan.cycles {
        ingest_all(
            db,
            cycle * plan.cycle_events,
            (cycle + 1) * plan.cycle_events,
        )
        .await?;
        drain(db, url, plan.cycle_events, PREFETCH).await?;
        worker::prune::<SlackEvents>(
            db,
            organization_id,
            Duration::ZERO,
            worker::DEFAULT_PRUNE_BATCH,
        )
        .await?;
        // What autovacuum does in production, between cycles far shorter than its nap.
        db.execute_unprepared("VACUUM slack_events").await?;
        sizes.push(relation_size(db, "idx_slack_events_due").await?);
    }
    Ok(sizes)
}

/// Runs the section and appends it to `report`; our events are deliveries of
/// [`crate::seed::TEAM`], which `organization_id` receives.
pub async fn section(
    report: &mut String,
    db: &DatabaseConnection,
    url: &DatabaseUrl,
    organization_id: &str,
    plan: &Plan,
    with_node: bool,
) -> Result<()> {
    let node = match with_node.then(prepare_node) {
        None => None,
        Some(Ok(())) => Some(()),
        Some(Err(why)) => {
            eprintln!("   skipping graphile-worker and pg-boss: {why:#}");
            None
        }
    };
    let systems: Vec<&str> = match node {
        Some(()) => vec!["this workspace", "graphile-worker 0.18", "pg-boss 12"],
        None => vec!["this workspace"],
    };
    let mut latency: Vec<Vec<Figures>> = vec![Vec::new(); systems.len()];
    // By system, then by queue size: the rounds' figures.
    let mut throughput: Vec<Vec<Vec<Figures>>> =
        vec![vec![Vec::new(); plan.events.len()]; systems.len()];
    for _ in 0..plan.rounds {
        latency[0].push(ours_latency(db, url, plan.samples).await?);
        if node.is_some() {
            latency[1].push(self::node(url, "graphile", "latency", plan, 0)?);
            latency[2].push(self::node(url, "pgboss", "latency", plan, 0)?);
        }
    }
    for _ in 0..plan.rounds {
        for (size, &events) in plan.events.iter().enumerate() {
            throughput[0][size].push(ours_throughput(db, url, events).await?);
            if node.is_some() {
                throughput[1][size].push(self::node(url, "graphile", "throughput", plan, events)?);
                throughput[2][size].push(self::node(url, "pgboss", "throughput", plan, events)?);
            }
        }
    }
    let sizes = cycles(db, url, organization_id, plan).await?;

    writeln!(
        report,
        "\n## 8. Event workers against graphile-worker and pg-boss ({CONCURRENCY} concurrent no-op handlers; median of {} interleaved rounds; goals: p50 <= 5 ms, lower latency and higher throughput than both)\n",
        plan.rounds
    )?;
    let sizes_header: String = plan
        .events
        .iter()
        .map(|events| format!(" throughput over {events} events (events/s) |"))
        .collect();
    let rule = " --- |".repeat(plan.events.len());
    writeln!(
        report,
        "| system | ingest -> handler start p50 | p99 |{sizes_header}\n| --- | --- | --- |{rule}"
    )?;
    let rate = |system: usize, size: usize| {
        median(
            throughput[system][size]
                .iter()
                .map(|f| f.events_per_s)
                .collect(),
        )
    };
    let p50 = |system: usize| median(latency[system].iter().map(|f| f.p50_ms).collect());
    for (i, system) in systems.iter().enumerate() {
        let p99 = median(latency[i].iter().map(|f| f.p99_ms).collect());
        let rates: String = (0..plan.events.len())
            .map(|size| format!(" {:.0} |", rate(i, size)))
            .collect();
        writeln!(
            report,
            "| {system} | {:.2} ms | {p99:.2} ms |{rates}",
            p50(i)
        )?;
    }
    for (i, system) in systems.iter().enumerate().skip(1) {
        let leads: Vec<String> = plan
            .events
            .iter()
            .enumerate()
            .map(|(size, events)| {
                format!("{:.2} at {events} events", rate(0, size) / rate(i, size))
            })
            .collect();
        writeln!(
            report,
            "\nagainst {system}: latency p50 theirs / ours {:.2} (above 1: ours is lower), throughput ours / theirs {} (above 1: ours is higher)",
            p50(i) / p50(0),
            leads.join(", "),
        )?;
    }
    writeln!(
        report,
        "\nClaim index `idx_slack_events_due` after each of {} cycles of ingest {} / process / prune + VACUUM: {} (bytes; it holds only the queue, so it does not grow with the events ever handled)",
        plan.cycles,
        plan.cycle_events,
        sizes
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    Ok(())
}
