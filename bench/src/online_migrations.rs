//! Section 7: migrations applied while webhooks keep arriving. `slack_events` holds N rows of
//! 50 Slack teams connected to 5 organizations; 8 tasks ingest one event per call (routed to
//! its team's organization) and 4 claim 10 at a time, each going round the organizations as a
//! worker does, without pause. Each window
//! records the longest any call took: a baseline without a migration, then (a) an index built
//! concurrently, (b) a nullable column and its batched backfill, (c) the same index built the
//! plain way, and (d) a migration that meets an idle-in-transaction session holding a lock on
//! the table, which must give up after its retries while no call waits longer than its
//! lock timeout.

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use db_connect::{DatabaseUrl, PoolSettings};
use migration::{
    MigrationName, MigrationTrait, Migrator, MigratorTrait, SchemaManager, conventions,
    runner::{self, Action, RunError, RunOptions},
};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use service::events::{self, SlackEvents};
use tokio::task::JoinHandle;

use crate::overhead::delivery;

const INGESTERS: usize = 8;
const CLAIMERS: usize = 4;
/// Organizations the filled events belong to, each connected to every `ORGANIZATIONS`th of
/// the `TEAMS` Slack teams.
const ORGANIZATIONS: usize = 5;
const TEAMS: usize = 50;
/// The goal for (a) and (b): no call waits longer than this over the baseline's longest.
const GOAL: Duration = Duration::from_millis(200);

/// Sizes of one run.
pub struct Plan {
    pub rows: usize,
    pub baseline: Duration,
    pub backfill_batch: u32,
    /// The runner's settings in the idle-in-transaction window.
    pub stuck: RunOptions,
}

impl Plan {
    pub fn new(smoke: bool, quick: bool) -> Self {
        let stuck = |lock_ms, backoff_ms| RunOptions {
            lock_timeout: Duration::from_millis(lock_ms),
            lock_retries: 2,
            retry_backoff: Duration::from_millis(backoff_ms),
            ..RunOptions::default()
        };
        match (smoke, quick) {
            (true, _) => Self {
                rows: 5_000,
                baseline: Duration::from_millis(500),
                backfill_batch: 500,
                stuck: stuck(200, 100),
            },
            (false, true) => Self {
                rows: 200_000,
                baseline: Duration::from_secs(5),
                backfill_batch: 2_000,
                stuck: stuck(1_000, 500),
            },
            (false, false) => Self {
                rows: 1_000_000,
                baseline: Duration::from_secs(10),
                backfill_batch: 2_000,
                stuck: RunOptions::default(),
            },
        }
    }
}

/// (a) `CREATE INDEX CONCURRENTLY`, through the conventions helper.
struct IndexConcurrently;
/// (b) its backfill, outside a transaction, one short transaction per batch.
struct BackfillPriority(u32);
/// A migration in a transaction that runs one statement.
struct Sql(&'static str, &'static str);

macro_rules! named {
    ($($ty:ty => $name:literal),* $(,)?) => {$(
        impl MigrationName for $ty {
            fn name(&self) -> &str {
                $name
            }
        }
    )*};
}

named! {
    IndexConcurrently => "m29990101_000001_index_team_created_concurrently",
    BackfillPriority => "m29990101_000003_backfill_priority",
}

impl MigrationName for Sql {
    fn name(&self) -> &str {
        self.0
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Sql {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(self.1)
            .await
            .map(drop)
    }
}

#[async_trait::async_trait]
impl MigrationTrait for IndexConcurrently {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        conventions::add_index_concurrently(manager, "slack_events", &["team_id", "created_at"])
            .await
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

#[async_trait::async_trait]
impl MigrationTrait for BackfillPriority {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        conventions::backfill_in_batches(
            manager,
            "slack_events",
            "priority = CASE WHEN t.event_type = 'app_mention' THEN 1 ELSE 0 END",
            "priority IS NULL",
            self.0,
        )
        .await
        .map(drop)
    }

    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }
}

/// The batch size of (b)'s backfill, set once per run before the migrators are read.
static BACKFILL_BATCH: AtomicUsize = AtomicUsize::new(2_000);

/// The schema, then the first `steps` scenario migrations.
fn with_steps(steps: usize) -> Vec<Box<dyn MigrationTrait>> {
    let batch = BACKFILL_BATCH.load(Ordering::Relaxed) as u32;
    let extra: Vec<Box<dyn MigrationTrait>> = vec![
        Box::new(IndexConcurrently),
        Box::new(Sql(
            "m29990101_000002_add_priority",
            "ALTER TABLE slack_events ADD COLUMN priority smallint",
        )),
        Box::new(BackfillPriority(batch)),
        // (c) the same index as (a), the plain way.
        Box::new(Sql(
            "m29990101_000004_index_team_created_plainly",
            "CREATE INDEX idx_slack_events_plain_team_id_created_at ON slack_events (team_id, created_at)",
        )),
        // (d) a column added while an idle transaction holds a lock on the table.
        Box::new(Sql(
            "m29990101_000005_add_archived_at",
            "ALTER TABLE slack_events ADD COLUMN archived_at timestamptz",
        )),
    ];
    let mut all = Migrator::migrations();
    all.extend(extra.into_iter().take(steps));
    all
}

struct StepA;
struct StepB;
struct StepC;
struct StepD;

impl MigratorTrait for StepA {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        with_steps(1)
    }
}

impl MigratorTrait for StepB {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        with_steps(3)
    }
}

impl MigratorTrait for StepC {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        with_steps(4)
    }
}

impl MigratorTrait for StepD {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        with_steps(5)
    }
}

/// The longest call of each kind in one window.
struct Window {
    label: &'static str,
    took: Duration,
    calls: usize,
    ingest_max: Duration,
    claim_max: Duration,
    /// Calls that failed with `cached plan must not change result type` (see below).
    replanned: usize,
}

impl Window {
    fn longest(&self) -> Duration {
        self.ingest_max.max(self.claim_max)
    }
}

/// What one task saw: each call's time, and how many calls failed because a column was added
/// under a prepared `RETURNING *` (the task then reconnects, as a recycled pool would).
#[derive(Default)]
struct Calls {
    took: Vec<Duration>,
    replanned: usize,
}

type Task = JoinHandle<Result<Calls>>;

/// A connection of its own for one task, so that a reconnect after a failed call is its alone.
async fn task_connection(url: &DatabaseUrl) -> Result<DatabaseConnection> {
    let one = PoolSettings {
        max_connections: 1,
        ..PoolSettings::default()
    };
    Ok(db_connect::connect(url, &one).await?)
}

fn is_replan(err: &service::Error) -> bool {
    err.to_string()
        .contains("cached plan must not change result type")
}

/// The tasks ingesting and claiming until told to stop.
struct Load {
    stop: Arc<AtomicBool>,
    ingest: Vec<Task>,
    claim: Vec<Task>,
    started: Instant,
}

impl Load {
    /// Starts the tasks once each has its connection; the claimers claim for each of
    /// `organizations` in turn.
    async fn start(
        url: &DatabaseUrl,
        next_event: &Arc<AtomicUsize>,
        organizations: &Arc<Vec<String>>,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut ingest = Vec::new();
        for _ in 0..INGESTERS {
            let (stop, next, url) = (stop.clone(), next_event.clone(), url.clone());
            let mut db = task_connection(&url).await?;
            ingest.push(tokio::spawn(async move {
                let mut calls = Calls::default();
                while !stop.load(Ordering::Relaxed) {
                    let event = delivery(next.fetch_add(1, Ordering::Relaxed));
                    let started = Instant::now();
                    match events::ingest::<SlackEvents>(&db, event).await {
                        Ok(events::Ingested::Unrouted(_)) => {
                            anyhow::bail!(
                                "a delivery of Slack team {} was not routed",
                                crate::seed::TEAM
                            )
                        }
                        Ok(_) => calls.took.push(started.elapsed()),
                        Err(err) if is_replan(&err) => {
                            calls.replanned += 1;
                            db = task_connection(&url).await?;
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
                Ok(calls)
            }));
        }
        let mut claim = Vec::new();
        for claimer in 0..CLAIMERS {
            let (stop, url, organizations) = (stop.clone(), url.clone(), organizations.clone());
            let mut db = task_connection(&url).await?;
            claim.push(tokio::spawn(async move {
                let mut calls = Calls::default();
                let mut turn = claimer;
                while !stop.load(Ordering::Relaxed) {
                    let organization = &organizations[turn % organizations.len()];
                    turn += 1;
                    let started = Instant::now();
                    match events::claim::<SlackEvents>(&db, organization, 10).await {
                        Ok(_) => calls.took.push(started.elapsed()),
                        Err(err) if is_replan(&err) => {
                            calls.replanned += 1;
                            db = task_connection(&url).await?;
                        }
                        Err(err) => return Err(err.into()),
                    }
                }
                Ok(calls)
            }));
        }
        Ok(Self {
            stop,
            ingest,
            claim,
            started: Instant::now(),
        })
    }

    async fn finish(self, label: &'static str) -> Result<Window> {
        self.stop.store(true, Ordering::Relaxed);
        let took = self.started.elapsed();
        let longest = |handles: Vec<Task>| async move {
            let (mut max, mut count, mut replanned) = (Duration::ZERO, 0, 0);
            for handle in handles {
                let calls = handle.await??;
                count += calls.took.len();
                replanned += calls.replanned;
                max = calls.took.into_iter().fold(max, Duration::max);
            }
            anyhow::Ok((max, count, replanned))
        };
        let (ingest_max, ingests, ingest_replanned) = longest(self.ingest).await?;
        let (claim_max, claims, claim_replanned) = longest(self.claim).await?;
        Ok(Window {
            label,
            took,
            calls: ingests + claims,
            ingest_max,
            claim_max,
            replanned: ingest_replanned + claim_replanned,
        })
    }
}

/// The organizations, each connected (through the service, which routes the team's deliveries
/// to it) to every `ORGANIZATIONS`th Slack team `T0` ... `T49`, so the load's team
/// [`crate::seed::TEAM`] is routed too.
async fn organizations(db: &DatabaseConnection) -> Result<Vec<String>> {
    let organizations: Vec<String> = (0..ORGANIZATIONS)
        .map(|k| format!("online-org-{k}"))
        .collect();
    for organization in &organizations {
        db.execute_unprepared(&format!(
            "INSERT INTO organizations (id, name, slug) VALUES ('{organization}', '{organization}', '{organization}')"
        ))
        .await?;
    }
    for team in 0..TEAMS {
        let organization = &organizations[team % ORGANIZATIONS];
        crate::seed::connect_slack(db, organization, &format!("T{team}")).await?;
    }
    Ok(organizations)
}

/// `rows` events of the teams' organizations, as their routes stored them, 1% pending, the
/// rest processed, spread over the last hours.
async fn fill(db: &DatabaseConnection, rows: usize) -> Result<()> {
    let filled = db
        .execute_unprepared(&format!(
        "INSERT INTO slack_events (organization_id, slack_connection_id, event_id, event_type, team_id, channel_id, payload, status, attempts, processed_at, created_at)
         SELECT r.organization_id, r.connection_id, 'EvSeed' || g,
                CASE WHEN g % 10 = 0 THEN 'app_mention' ELSE 'message' END,
                r.external_id, 'C' || (g % 500),
                jsonb_build_object('type', 'event_callback', 'event', jsonb_build_object('text', 'hello ' || g)),
                CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'processed' END,
                CASE WHEN g % 100 = 0 THEN 0 ELSE 1 END,
                CASE WHEN g % 100 = 0 THEN NULL ELSE now() END,
                now() - ({rows} - g) * interval '10 ms'
         FROM generate_series(1, {rows}) g
         JOIN webhook_routes r ON r.provider = 'slack' AND r.external_id = 'T' || (g % {TEAMS})"
    ))
    .await
    .context("filling slack_events")?;
    anyhow::ensure!(
        filled.rows_affected() == rows as u64,
        "filled {} of {rows} events: a team has no route",
        filled.rows_affected()
    );
    db.execute_unprepared("VACUUM ANALYZE slack_events").await?;
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Runs the scenario on a database of its own on `server`, dropped at the end.
pub async fn section(server: &DatabaseUrl, plan: &Plan) -> Result<String> {
    let name = format!("bench_online_{}", std::process::id());
    let admin =
        db_connect::connect(&server.with_database("postgres")?, &PoolSettings::default()).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let url = server.with_database(&name)?;
    let result = scenario(&url, plan).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    result
}

async fn scenario(url: &DatabaseUrl, plan: &Plan) -> Result<String> {
    BACKFILL_BATCH.store(plan.backfill_batch as usize, Ordering::Relaxed);
    let quiet = |_| {};
    runner::run::<Migrator>(url, Action::Up(None), quiet).await?;
    let db = task_connection(url).await?;
    eprintln!(
        "7/8 online migrations: filling slack_events with {} rows...",
        plan.rows
    );
    let organizations = Arc::new(organizations(&db).await?);
    fill(&db, plan.rows).await?;
    let next_event = Arc::new(AtomicUsize::new(1_000_000_000));
    let options = RunOptions::default();

    let load = Load::start(url, &next_event, &organizations).await?;
    tokio::time::sleep(plan.baseline).await;
    let mut windows = vec![load.finish("baseline, no migration").await?];

    let load = Load::start(url, &next_event, &organizations).await?;
    runner::run_with::<StepA>(url, Action::Up(None), &options, quiet).await?;
    windows.push(load.finish("(a) index built concurrently (helper)").await?);

    let load = Load::start(url, &next_event, &organizations).await?;
    runner::run_with::<StepB>(url, Action::Up(None), &options, quiet).await?;
    windows.push(
        load.finish("(b) nullable column + batched backfill")
            .await?,
    );

    let load = Load::start(url, &next_event, &organizations).await?;
    runner::run_with::<StepC>(url, Action::Up(None), &options, quiet).await?;
    windows.push(load.finish("(c) the same index, built plainly").await?);

    // (d) An idle transaction holds a lock on the table; the migration must give up.
    let idle = db_connect::connect(
        url,
        &PoolSettings {
            max_connections: 1,
            ..PoolSettings::default()
        },
    )
    .await?;
    idle.execute_unprepared(
        "BEGIN; SET LOCAL application_name = 'bench-idle-reporter';
         SELECT count(*) FROM (SELECT 1 FROM slack_events LIMIT 1) one",
    )
    .await?;
    let load = Load::start(url, &next_event, &organizations).await?;
    let outcome = runner::run_with::<StepD>(url, Action::Up(None), &plan.stuck, quiet).await;
    let stuck = load
        .finish("(d) ALTER TABLE behind an idle transaction")
        .await?;
    idle.execute_unprepared("ROLLBACK").await?;
    let message = match outcome {
        Err(err @ RunError::LockTimeout { .. }) => err.to_string(),
        Err(other) => anyhow::bail!("(d) failed otherwise than by its lock timeout: {other}"),
        Ok(()) => anyhow::bail!("(d) applied although an idle transaction held a lock"),
    };

    let baseline = windows[0].longest();
    let mut out = String::new();
    writeln!(
        out,
        "\n## 7. Online migrations on slack_events with {} rows ({INGESTERS} tasks ingesting one event per call, {CLAIMERS} claiming 10; goal: (a) and (b) keep every call within {} of the baseline's longest, (c) shows the stall)\n",
        plan.rows,
        ms(GOAL)
    )?;
    writeln!(
        out,
        "| window | length | calls | longest ingest | longest claim | longest over baseline | goal | calls failed by a replan |\n| --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    for (i, w) in windows.iter().enumerate() {
        let over = w.longest().saturating_sub(baseline);
        let goal = match i {
            0 => "-",
            1 | 2 if over <= GOAL => "met",
            1 | 2 => "MISSED",
            _ => "(contrast)",
        };
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {goal} | {} |",
            w.label,
            ms(w.took),
            w.calls,
            ms(w.ingest_max),
            ms(w.claim_max),
            ms(over),
            w.replanned
        )?;
    }
    writeln!(
        out,
        "\n(d) lock_timeout {}, {} retries: the migration gave up after {}; longest ingest {}, longest claim {} (goal: no call longer than the lock timeout plus {}: {}). The runner's message:\n\n```\n{message}\n```",
        ms(plan.stuck.lock_timeout),
        plan.stuck.lock_retries,
        ms(stuck.took),
        ms(stuck.ingest_max),
        ms(stuck.claim_max),
        ms(GOAL),
        if stuck.longest() <= plan.stuck.lock_timeout + GOAL {
            "met"
        } else {
            "MISSED"
        }
    )?;
    Ok(out)
}
