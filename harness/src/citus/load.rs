//! A tenant workload to run while shards move: webhook ingest, claims and settles, agent runs
//! with tool calls, over many organizations, each task on a connection of its own; then what
//! it did, checked against what the database holds: every acknowledged event stored once and
//! processed once, tool call sequences gapless, every error by SQLSTATE, and each statement's
//! latency with when it ran (the stall of a move is the longest statement overlapping it).
//!
//! The statements are the helpers' shapes on the distributed schema (`organization_id` in every
//! tenant statement, the claim per organization, the coordinator's own `pg_notify`), written
//! out in SQL so the workload measures Citus rather than any one helper's version.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use db_connect::{DatabaseUrl, Pool};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, QueryResult, RuntimeErr, Statement, Value, prelude::Uuid,
};

use crate::connect;

const INGEST: &str = "WITH ins AS (
    INSERT INTO slack_events (organization_id, event_id, event_type, team_id, payload)
    SELECT $1, e, 'message', 'T-load', '{\"load\": true}'::jsonb FROM unnest($2::text[]) AS e
    ON CONFLICT (organization_id, event_id) DO NOTHING RETURNING event_id)
  SELECT event_id, (SELECT count(*) FROM (SELECT pg_notify('slack_events', $1)::text) n) AS woken
    FROM ins";
const CLAIM: &str = "WITH next AS (
    SELECT id FROM slack_events
     WHERE organization_id = $1 AND status IN ('pending', 'processing') AND due_at <= now()
     ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),
  moved AS (
    UPDATE slack_events e SET status = 'processing', attempts = e.attempts + 1,
           due_at = now() + make_interval(secs => 600), updated_at = now()
      FROM next WHERE e.organization_id = $1 AND e.id = next.id
    RETURNING e.id, e.attempts)
  SELECT id, attempts FROM moved";
const SETTLE: &str = "UPDATE slack_events e
     SET status = 'processed', processed_at = (SELECT now()), due_at = now(), updated_at = now()
    FROM unnest($2::uuid[], $3::int4[]) AS d(id, attempt)
   WHERE e.organization_id = $1 AND e.id = d.id AND e.attempts = d.attempt
     AND e.status = 'processing'
  RETURNING e.id";
const CREATE_RUN: &str = "INSERT INTO agent_runs
    (organization_id, user_id, trigger_source, model, status, started_at)
  VALUES ($1, $2, 'api', 'load-model', 'running', now()) RETURNING id";
const APPEND_TOOL_CALL: &str = "WITH seq AS (
    UPDATE agent_runs SET next_tool_call_sequence = next_tool_call_sequence + 1, updated_at = now()
     WHERE organization_id = $1 AND id = $2 AND status = 'running'
    RETURNING next_tool_call_sequence - 1 AS sequence)
  INSERT INTO tool_calls (organization_id, agent_run_id, tool_name, sequence, input)
  SELECT $1, $2, 'search', seq.sequence, '{}'::jsonb FROM seq RETURNING sequence";
const SUCCEED_RUN: &str = "UPDATE agent_runs
     SET status = 'succeeded', completed_at = now(), updated_at = now()
   WHERE organization_id = $1 AND id = $2 AND status = 'running' RETURNING id";
/// The user the workload's runs belong to.
const LOAD_USER: &str = "load-user";

/// SQLSTATEs a caller retries: serialization failures and deadlocks (Citus reports a
/// distributed deadlock it broke as 40P01 too).
pub const RETRYABLE: &[&str] = &["40001", "40P01"];

/// How many tasks of each kind, and how big their steps.
#[derive(Debug, Clone, Copy)]
pub struct LoadSettings {
    pub ingesters: usize,
    pub claimers: usize,
    pub runners: usize,
    /// Events per ingest statement.
    pub batch: usize,
    /// Events per claim.
    pub claim: usize,
    /// Tool calls per run.
    pub tool_calls: usize,
}

impl Default for LoadSettings {
    fn default() -> Self {
        Self {
            ingesters: 2,
            claimers: 2,
            runners: 1,
            batch: 5,
            claim: 20,
            tool_calls: 3,
        }
    }
}

/// One statement the workload ran: its kind, when it started (since the load began), how long
/// it took.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    pub kind: &'static str,
    pub at: Duration,
    pub took: Duration,
}

/// What the workload's tasks did.
#[derive(Debug, Default)]
pub struct Tally {
    /// (organization, event id) of every event an ingest acknowledged as new.
    pub acknowledged: HashSet<(String, String)>,
    /// How often each event was handed out by a claim.
    pub claimed: HashMap<Uuid, u32>,
    /// Runs created, and how many tool calls were appended to each.
    pub runs: HashMap<Uuid, usize>,
    pub statements: Vec<Timed>,
    /// `kind SQLSTATE` -> (count, first message).
    pub errors: BTreeMap<String, (usize, String)>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.acknowledged.extend(other.acknowledged);
        for (id, n) in other.claimed {
            *self.claimed.entry(id).or_default() += n;
        }
        self.runs.extend(other.runs);
        self.statements.extend(other.statements);
        for (key, (n, message)) in other.errors {
            self.errors.entry(key).or_insert((0, message)).0 += n;
        }
    }

    /// Errors whose SQLSTATE a caller would not retry.
    pub fn unexpected_errors(&self) -> Vec<(&String, &(usize, String))> {
        self.errors
            .iter()
            .filter(|(key, _)| !RETRYABLE.iter().any(|state| key.ends_with(state)))
            .collect()
    }

    /// The longest statement that overlapped `[from, to]`, and the p99 of the statements that
    /// did not (the baseline it stands out from).
    pub fn stall(&self, from: Duration, to: Duration) -> (Option<Timed>, Duration) {
        let overlaps = |t: &&Timed| t.at <= to && t.at + t.took >= from;
        let longest = self
            .statements
            .iter()
            .filter(overlaps)
            .max_by_key(|t| t.took)
            .copied();
        let mut outside: Vec<Duration> = self
            .statements
            .iter()
            .filter(|t| !overlaps(t))
            .map(|t| t.took)
            .collect();
        outside.sort();
        let p99 = outside
            .get((outside.len().saturating_sub(1) as f64 * 0.99).round() as usize)
            .copied()
            .unwrap_or_default();
        (longest, p99)
    }
}

/// `count` organizations (`load-org-000`, ...) and the workload's user, for [`Load::start`].
pub async fn organizations(db: &impl ConnectionTrait, count: usize) -> Vec<String> {
    let ids: Vec<String> = (0..count).map(|i| format!("load-org-{i:03}")).collect();
    db.execute_raw(statement(
        "INSERT INTO organizations (id, name, slug) SELECT o, o, o FROM unnest($1::text[]) AS o",
        [ids.clone().into()],
    ))
    .await
    .expect("inserting the workload's organizations");
    db.execute_raw(statement(
        "INSERT INTO users (id, name, email) VALUES ($1, 'Load', 'load@example.com')",
        [LOAD_USER.into()],
    ))
    .await
    .expect("inserting the workload's user");
    ids
}

/// The workload running: its tasks, and the flag that stops them.
pub struct Load {
    url: DatabaseUrl,
    organizations: Arc<Vec<String>>,
    settings: LoadSettings,
    started: Instant,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Tally>>,
}

impl Load {
    /// Starts every task on a connection of its own to `url`.
    pub async fn start(
        url: &DatabaseUrl,
        organizations: Vec<String>,
        settings: LoadSettings,
    ) -> Self {
        let mut load = Self {
            url: url.clone(),
            organizations: Arc::new(organizations),
            settings,
            started: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
        };
        let kinds = [
            (Kind::Ingest, settings.ingesters),
            (Kind::Claim, settings.claimers),
            (Kind::Run, settings.runners),
        ];
        for (kind, count) in kinds {
            for _ in 0..count {
                let conn = connect(url, 1).await;
                let task = Task {
                    kind,
                    index: load.tasks.len(),
                    conn,
                    organizations: load.organizations.clone(),
                    settings,
                    started: load.started,
                    stop: load.stop.clone(),
                    tally: Tally::default(),
                };
                load.tasks.push(tokio::spawn(task.run()));
            }
        }
        load
    }

    /// Time since the workload started, the clock of [`Timed::at`].
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Stops the tasks, then claims and settles whatever they left pending.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        let mut tally = Tally::default();
        for task in self.tasks {
            tally.merge(task.await.expect("a workload task panicked"));
        }
        let mut drain = Task {
            kind: Kind::Claim,
            index: usize::MAX,
            conn: connect(&self.url, 1).await,
            organizations: self.organizations.clone(),
            settings: LoadSettings {
                claim: 1000,
                ..self.settings
            },
            started: self.started,
            stop: Arc::new(AtomicBool::new(true)),
            tally: Tally::default(),
        };
        for organization in self.organizations.iter() {
            while drain.claim_and_settle(organization).await > 0 {}
        }
        drain.conn.close().await.ok();
        tally.merge(drain.tally);
        tally
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Ingest,
    Claim,
    Run,
}

struct Task {
    kind: Kind,
    index: usize,
    conn: Pool,
    organizations: Arc<Vec<String>>,
    settings: LoadSettings,
    started: Instant,
    stop: Arc<AtomicBool>,
    tally: Tally,
}

impl Task {
    async fn run(mut self) -> Tally {
        let mut step = 0usize;
        while !self.stop.load(Ordering::Relaxed) {
            // Each task walks the organizations in its own order.
            let organization =
                self.organizations[(step * 7 + self.index * 13) % self.organizations.len()].clone();
            match self.kind {
                Kind::Ingest => self.ingest(&organization, step).await,
                Kind::Claim => {
                    self.claim_and_settle(&organization).await;
                }
                Kind::Run => self.agent_run(&organization).await,
            }
            step += 1;
        }
        self.conn.close().await.ok();
        self.tally
    }

    /// Runs one statement, timing it; its rows, or `None` after recording its error.
    async fn timed(
        &mut self,
        kind: &'static str,
        sql: &str,
        values: Vec<Value>,
    ) -> Option<Vec<QueryResult>> {
        let at = self.started.elapsed();
        let begun = Instant::now();
        let result = self.conn.query_all_raw(statement(sql, values)).await;
        let took = begun.elapsed();
        match result {
            Ok(rows) => {
                self.tally.statements.push(Timed { kind, at, took });
                Some(rows)
            }
            Err(err) => {
                let state = sqlstate(&err);
                let entry = self
                    .tally
                    .errors
                    .entry(format!("{kind} {state}"))
                    .or_insert((0, err.to_string()));
                entry.0 += 1;
                None
            }
        }
    }

    async fn ingest(&mut self, organization: &str, step: usize) {
        let ids: Vec<String> = (0..self.settings.batch)
            .map(|i| format!("ev-{}-{step}-{i}", self.index))
            .collect();
        let values = vec![organization.into(), ids.into()];
        if let Some(rows) = self.timed("ingest", INGEST, values).await {
            for row in rows {
                let event: String = row.try_get_by_index(0).expect("event_id");
                self.tally
                    .acknowledged
                    .insert((organization.to_owned(), event));
            }
        }
    }

    /// Claims up to `settings.claim` events of `organization` and settles them; how many.
    async fn claim_and_settle(&mut self, organization: &str) -> usize {
        let values = vec![organization.into(), (self.settings.claim as i64).into()];
        let Some(rows) = self.timed("claim", CLAIM, values).await else {
            return 0;
        };
        let (mut ids, mut attempts) = (Vec::new(), Vec::new());
        for row in &rows {
            let id: Uuid = row.try_get_by_index(0).expect("id");
            *self.tally.claimed.entry(id).or_default() += 1;
            ids.push(id);
            attempts.push(row.try_get_by_index::<i32>(1).expect("attempts"));
        }
        if !ids.is_empty() {
            let values = vec![organization.into(), ids.into(), attempts.into()];
            self.timed("settle", SETTLE, values).await;
        }
        rows.len()
    }

    async fn agent_run(&mut self, organization: &str) {
        let values = vec![organization.into(), LOAD_USER.into()];
        let Some(rows) = self.timed("create_run", CREATE_RUN, values).await else {
            return;
        };
        let run: Uuid = rows[0].try_get_by_index(0).expect("run id");
        let mut appended = 0;
        for _ in 0..self.settings.tool_calls {
            let values = vec![organization.into(), run.into()];
            if let Some(rows) = self
                .timed("append_tool_call", APPEND_TOOL_CALL, values)
                .await
            {
                appended += rows.len();
            }
        }
        self.tally.runs.insert(run, appended);
        let values = vec![organization.into(), run.into()];
        self.timed("succeed_run", SUCCEED_RUN, values).await;
    }
}

/// What the database holds after the workload, against what it was told.
#[derive(Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Acknowledged events not stored.
    pub lost: usize,
    /// Stored events not acknowledged (an ingest that failed after all, or was never answered).
    pub unacknowledged: usize,
    /// (organization, event id) pairs stored more than once.
    pub duplicated: usize,
    /// Stored events not processed after the drain.
    pub unprocessed: usize,
    /// Events a claim handed out more than once.
    pub claimed_twice: usize,
    /// Runs whose tool call sequences are not 0, 1, ... with one row each, or whose count is
    /// not what the appends reported.
    pub broken_runs: usize,
}

impl Outcome {
    pub const CLEAN: Outcome = Outcome {
        lost: 0,
        unacknowledged: 0,
        duplicated: 0,
        unprocessed: 0,
        claimed_twice: 0,
        broken_runs: 0,
    };
}

/// Compares `tally` with the rows of the workload's organizations.
pub async fn check(db: &impl ConnectionTrait, tally: &Tally) -> Outcome {
    let rows = db
        .query_all_raw(statement(
            "SELECT organization_id, event_id, count(*), count(*) FILTER (WHERE status = 'processed')
               FROM slack_events WHERE organization_id LIKE 'load-org-%' GROUP BY 1, 2",
            [],
        ))
        .await
        .expect("reading the workload's events");
    let mut stored = HashSet::new();
    let (mut duplicated, mut unprocessed) = (0, 0);
    for row in rows {
        let key: (String, String) = (
            row.try_get_by_index(0).expect("organization_id"),
            row.try_get_by_index(1).expect("event_id"),
        );
        let (copies, processed): (i64, i64) = (
            row.try_get_by_index(2).expect("count"),
            row.try_get_by_index(3).expect("processed"),
        );
        duplicated += usize::from(copies > 1);
        unprocessed += (copies - processed) as usize;
        stored.insert(key);
    }
    let runs = db
        .query_all_raw(statement(
            "SELECT r.id, count(t.id), count(DISTINCT t.sequence), COALESCE(max(t.sequence), -1)
               FROM agent_runs r LEFT JOIN tool_calls t
                 ON t.organization_id = r.organization_id AND t.agent_run_id = r.id
              WHERE r.organization_id LIKE 'load-org-%' GROUP BY r.organization_id, r.id",
            [],
        ))
        .await
        .expect("reading the workload's runs");
    let mut broken_runs = 0;
    for row in runs {
        let id: Uuid = row.try_get_by_index(0).expect("id");
        let (calls, distinct, max): (i64, i64, i32) = (
            row.try_get_by_index(1).expect("count"),
            row.try_get_by_index(2).expect("distinct"),
            row.try_get_by_index(3).expect("max"),
        );
        let reported = tally.runs.get(&id).copied();
        let gapless = calls == distinct && i64::from(max) == calls - 1;
        broken_runs += usize::from(!gapless || reported.is_some_and(|n| n as i64 != calls));
    }
    Outcome {
        lost: tally.acknowledged.difference(&stored).count(),
        unacknowledged: stored.difference(&tally.acknowledged).count(),
        duplicated,
        unprocessed,
        claimed_twice: tally.claimed.values().filter(|&&n| n > 1).count(),
        broken_runs,
    }
}

fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The SQLSTATE of `err`, or `-` when the server sent none (a connection error).
fn sqlstate(err: &DbErr) -> String {
    let sqlx = match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => Some(e),
        _ => None,
    };
    sqlx.and_then(|e| e.as_database_error())
        .and_then(|e| e.code())
        .map_or_else(|| "-".to_owned(), |code| code.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn timed(kind: &'static str, at: u64, took: u64) -> Timed {
        Timed {
            kind,
            at: ms(at),
            took: ms(took),
        }
    }

    #[test]
    fn the_stall_is_the_longest_statement_overlapping_the_window_against_the_p99_outside() {
        let mut tally = Tally::default();
        // Outside: 100 statements of 1..=100 ms, well before the window.
        for i in 1..=100 {
            tally.statements.push(timed("claim", 0, i));
        }
        tally.statements.extend([
            timed("ingest", 900, 150),  // ends inside the window
            timed("settle", 1_000, 40), // starts at its beginning
            timed("append", 1_900, 90), // starts at its end
            timed("late", 2_001, 500),  // after it
        ]);
        let (longest, p99) = tally.stall(ms(1_000), ms(1_900));
        let longest = longest.unwrap();
        assert_eq!((longest.kind, longest.took), ("ingest", ms(150)));
        // 101 outside (1..=100 and the late one): the 100th of them.
        assert_eq!(p99, ms(100));
        let (_, p99) = tally.stall(ms(10_000), ms(11_000));
        assert_eq!(p99, ms(150), "everything is outside a window after it");
        assert_eq!(Tally::default().stall(ms(0), ms(1)).0.map(|t| t.kind), None);
    }

    #[test]
    fn only_errors_a_caller_would_not_retry_are_unexpected_and_merges_add_up() {
        let mut tally = Tally::default();
        let id = Uuid::nil();
        tally.claimed.insert(id, 1);
        tally
            .errors
            .insert("claim 40P01".into(), (2, "deadlock".into()));
        let mut other = Tally::default();
        other.claimed.insert(id, 1);
        other.acknowledged.insert(("o".into(), "e".into()));
        other.runs.insert(id, 3);
        other.statements.push(timed("ingest", 0, 1));
        other
            .errors
            .insert("claim 40P01".into(), (1, "again".into()));
        other
            .errors
            .insert("ingest 40001".into(), (1, "serialization".into()));
        other
            .errors
            .insert("settle XX000".into(), (1, "internal".into()));
        other
            .errors
            .insert("ingest -".into(), (4, "connection".into()));
        tally.merge(other);
        assert_eq!(tally.claimed[&id], 2);
        assert_eq!(tally.acknowledged.len(), 1);
        assert_eq!(tally.runs[&id], 3);
        assert_eq!(tally.statements.len(), 1);
        assert_eq!(tally.errors["claim 40P01"], (3, "deadlock".into()));
        let unexpected: Vec<&str> = tally
            .unexpected_errors()
            .into_iter()
            .map(|(key, _)| key.as_str())
            .collect();
        assert_eq!(unexpected, ["ingest -", "settle XX000"]);
    }
}
