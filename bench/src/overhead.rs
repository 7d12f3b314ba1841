//! The hot helpers against the same statements written by hand with sqlx, interleaved call by
//! call on the same database so both sides see the same cache and load.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::{Value, json};
use service::{
    Cursor,
    agents::{self, NewToolCallInput},
    auth,
    events::{self, SlackDelivery, SlackEvents},
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    seed::{BenchData, running_run},
    stats::{Samples, timed},
};

/// One row of the comparison table.
pub struct Comparison {
    pub case: &'static str,
    pub helper: Samples,
    pub raw: Samples,
}

impl Comparison {
    fn new(case: &'static str) -> Self {
        Self {
            case,
            helper: Samples::default(),
            raw: Samples::default(),
        }
    }

    /// Forgets both sides' first `calls`, made while caches and pools warmed up.
    fn skip_warm_up(&mut self, calls: usize) {
        self.helper.skip_first(calls);
        self.raw.skip_first(calls);
    }
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)] // read as a caller would; the fields are the point, not their use
struct RawSessionWithUser {
    id: String,
    user_id: String,
    expires_at: DateTime<Utc>,
    ip_address: Option<String>,
    user_agent: Option<String>,
    active_organization_id: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    u_id: String,
    u_name: String,
    u_email: String,
    u_email_verified: bool,
    u_image: Option<String>,
    u_two_factor_enabled: bool,
    u_created_at: DateTime<Utc>,
    u_updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct RawEvent {
    id: Uuid,
    slack_connection_id: Option<Uuid>,
    event_id: String,
    event_type: String,
    team_id: String,
    channel_id: Option<String>,
    slack_user_id: Option<String>,
    payload: Value,
    status: String,
    attempts: i32,
    last_error: Option<String>,
    processed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct RawToolCall {
    id: Uuid,
    agent_run_id: Uuid,
    tool_id: Option<Uuid>,
    tool_name: String,
    sequence: i32,
    input: Value,
    output: Option<Value>,
    status: String,
    error: Option<String>,
    duration_ms: Option<i32>,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct RawRun {
    id: Uuid,
    organization_id: String,
    user_id: Option<String>,
    trigger_source: String,
    slack_event_id: Option<Uuid>,
    linear_event_id: Option<Uuid>,
    status: String,
    model: String,
    input: Value,
    output: Option<Value>,
    error: Option<String>,
    prompt_tokens: i32,
    completion_tokens: i32,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    next_tool_call_sequence: i32,
}

pub fn delivery(n: usize) -> SlackDelivery {
    SlackDelivery {
        event_id: format!("Ev{n:09}"),
        event_type: "message".into(),
        team_id: "T1".into(),
        channel_id: Some("C1".into()),
        slack_user_id: Some("U1".into()),
        slack_connection_id: None,
        payload: json!({ "type": "event_callback", "event": { "type": "message", "text": "hello there", "ts": n.to_string() } }),
    }
}

const RAW_SINGLE_INSERT: &str = "INSERT INTO slack_events (event_id, event_type, team_id, channel_id, slack_user_id, slack_connection_id, payload)
     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING RETURNING id";

pub const RAW_BATCH_INSERT: &str = "INSERT INTO slack_events (event_id, event_type, team_id, channel_id, slack_user_id, slack_connection_id, payload)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::jsonb[])
     ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id";

/// Binds a batch the way a hand-written sqlx caller would: one array per column.
pub fn raw_batch(
    batch: &[SlackDelivery],
    sql: &'static str,
) -> sqlx::query::Query<'static, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(batch.iter().map(|d| d.event_id.clone()).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|d| d.event_type.clone())
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|d| d.team_id.clone()).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|d| d.channel_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|d| d.slack_user_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|d| d.slack_connection_id)
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|d| d.payload.clone()).collect::<Vec<_>>())
}

/// Runs every comparison, `iterations` calls per side.
pub async fn run(
    db: &DatabaseConnection,
    pool: &PgPool,
    data: &BenchData,
    iterations: usize,
) -> Result<Vec<Comparison>> {
    let mut out = Vec::new();
    let warm = iterations / 10 + 1;

    // Session by token, with its user.
    let mut c = Comparison::new("session by token + user");
    let session_sql = "SELECT s.id, s.user_id, s.expires_at, s.ip_address, s.user_agent, s.active_organization_id,
            s.created_at, s.updated_at, u.id AS u_id, u.name AS u_name, u.email AS u_email,
            u.email_verified AS u_email_verified, u.image AS u_image,
            u.two_factor_enabled AS u_two_factor_enabled, u.created_at AS u_created_at,
            u.updated_at AS u_updated_at
         FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token = $1 AND s.expires_at > now()";
    for i in 0..iterations + warm {
        let token = &data.session_tokens[i % data.session_tokens.len()];
        let found = timed(&mut c.helper, auth::valid_session(db, token)).await?;
        let row: Option<RawSessionWithUser> = timed(
            &mut c.raw,
            sqlx::query_as(session_sql).bind(token).fetch_optional(pool),
        )
        .await?;
        anyhow::ensure!(
            found.is_some() && row.is_some(),
            "seeded session {} not found",
            i % data.session_tokens.len()
        );
    }
    c.skip_warm_up(warm);
    out.push(c);

    // Single ingest: new deliveries, alternating sides.
    let mut c = Comparison::new("ingest one event");
    for i in 0..iterations + warm {
        let (a, b) = (
            delivery(10_000_000 + 2 * i),
            delivery(10_000_000 + 2 * i + 1),
        );
        timed(&mut c.helper, events::ingest::<SlackEvents>(db, a)).await?;
        timed(
            &mut c.raw,
            sqlx::query_scalar::<_, Uuid>(RAW_SINGLE_INSERT)
                .bind(b.event_id)
                .bind(b.event_type)
                .bind(b.team_id)
                .bind(b.channel_id)
                .bind(b.slack_user_id)
                .bind(b.slack_connection_id)
                .bind(b.payload)
                .fetch_optional(pool),
        )
        .await?;
    }
    c.skip_warm_up(warm);
    out.push(c);

    // Batch ingest of 100.
    let mut c = Comparison::new("ingest batch of 100");
    for i in 0..(iterations / 5).max(10) + warm {
        let base = 20_000_000 + i * 200;
        let a: Vec<_> = (base..base + 100).map(delivery).collect();
        let b: Vec<_> = (base + 100..base + 200).map(delivery).collect();
        timed(&mut c.helper, events::ingest_batch::<SlackEvents>(db, &a)).await?;
        timed(&mut c.raw, raw_batch(&b, RAW_BATCH_INSERT).fetch_all(pool)).await?;
    }
    c.skip_warm_up(warm);
    out.push(c);

    // Claim 10 (in a transaction rolled back, so the pending set stays the same size).
    let mut c = Comparison::new("claim 10 pending");
    let claim_sql = "WITH next AS (
             SELECT id FROM slack_events WHERE status IN ('pending', 'processing') AND due_at <= now()
             ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED),
         moved AS (
             UPDATE slack_events e SET
                 status = CASE WHEN e.attempts >= $3 THEN 'failed' ELSE 'processing' END,
                 attempts = CASE WHEN e.attempts >= $3 THEN e.attempts ELSE e.attempts + 1 END,
                 due_at = now() + make_interval(secs => $2),
                 last_error = CASE
                     WHEN e.attempts < $3 THEN e.last_error
                     WHEN e.status = 'processing' THEN 'its worker stopped during the last attempt (lease expired)'
                     ELSE COALESCE(e.last_error, 'no attempts left') END
             FROM next WHERE e.id = next.id
             RETURNING e.id, e.slack_connection_id, e.event_id, e.event_type, e.team_id,
                 e.channel_id, e.slack_user_id, e.payload, e.status, e.attempts, e.last_error,
                 e.processed_at, e.created_at, e.updated_at, e.due_at)
         SELECT id, slack_connection_id, event_id, event_type, team_id, channel_id, slack_user_id,
             payload, status, attempts, last_error, processed_at, created_at, updated_at, due_at
         FROM moved WHERE status = 'processing'";
    let lease = events::ClaimOptions::new(10).lease.as_secs_f64();
    // Written by hand as a sqlx user would, but it must stay the statement the helper sends.
    let squash = |sql: &str| sql.split_whitespace().collect::<String>();
    anyhow::ensure!(
        squash(claim_sql)
            == squash(&events::claim_statement::<SlackEvents>(events::ClaimOptions::new(10)).sql),
        "the hand-written claim differs from the one `events::claim` sends"
    );
    for _ in 0..iterations + warm {
        let txn = db.begin().await?;
        let claimed = timed(&mut c.helper, events::claim::<SlackEvents>(&txn, 10)).await?;
        txn.rollback().await?;
        let mut tx = pool.begin().await?;
        let rows: Vec<RawEvent> = timed(
            &mut c.raw,
            sqlx::query_as(claim_sql)
                .bind(10i64)
                .bind(lease)
                .bind(i64::MAX)
                .fetch_all(&mut *tx),
        )
        .await?;
        tx.rollback().await?;
        anyhow::ensure!(
            claimed.len() == 10 && rows.len() == 10,
            "not enough pending events seeded"
        );
    }
    c.skip_warm_up(warm);
    out.push(c);

    // Mark processed: claimed rows, half per side.
    let mut c = Comparison::new("mark processed");
    // A claim returns at most 1000 rows.
    let mut claimed = Vec::new();
    while claimed.len() < 2 * (iterations + warm) {
        let want = (2 * (iterations + warm) - claimed.len()).min(1000) as u64;
        let more = events::claim::<SlackEvents>(db, want).await?;
        anyhow::ensure!(!more.is_empty(), "not enough pending events seeded");
        claimed.extend(more);
    }
    let mark_sql =
        "UPDATE slack_events SET status = 'processed', processed_at = now(), last_error = NULL
         WHERE id = $1 AND status IN ('processing') RETURNING *";
    for pair in claimed.chunks(2) {
        timed(
            &mut c.helper,
            events::mark_processed::<SlackEvents>(db, pair[0].id),
        )
        .await?;
        let row: Option<RawEvent> = timed(
            &mut c.raw,
            sqlx::query_as(mark_sql)
                .bind(pair[1].id)
                .fetch_optional(pool),
        )
        .await?;
        anyhow::ensure!(row.is_some(), "raw mark found nothing");
    }
    c.skip_warm_up(warm);
    out.push(c);

    // Append a tool call to a running run (one run per side).
    let mut c = Comparison::new("append tool call");
    let (run_a, run_b) = (
        running_run(db, &data.organization_id).await?,
        running_run(db, &data.organization_id).await?,
    );
    let append_sql = "WITH seq AS (UPDATE agent_runs SET next_tool_call_sequence = next_tool_call_sequence + 1
                     WHERE id = $1 AND status = 'running' RETURNING next_tool_call_sequence - 1 AS sequence)
         INSERT INTO tool_calls (agent_run_id, tool_id, tool_name, sequence, input)
         SELECT $1, $2, $3, seq.sequence, $4 FROM seq RETURNING *";
    for _ in 0..iterations + warm {
        let call = NewToolCallInput {
            tool_name: "web_fetch".into(),
            tool_id: None,
            input: json!({ "url": "https://example.com" }),
        };
        timed(&mut c.helper, agents::append_tool_call(db, run_a, call)).await?;
        let row: Option<RawToolCall> = timed(
            &mut c.raw,
            sqlx::query_as(append_sql)
                .bind(run_b)
                .bind(None::<Uuid>)
                .bind("web_fetch")
                .bind(json!({ "url": "https://example.com" }))
                .fetch_optional(pool),
        )
        .await?;
        anyhow::ensure!(row.is_some(), "raw append found no running run");
    }
    c.skip_warm_up(warm);
    out.push(c);

    // A page of 50 runs, from the middle of the organization's history.
    let mut c = Comparison::new("list runs page (50)");
    let middle: (DateTime<Utc>, Uuid) = sqlx::query_as(
        "SELECT created_at, id FROM agent_runs WHERE organization_id = $1
         ORDER BY created_at DESC, id DESC OFFSET 500 LIMIT 1",
    )
    .bind(&data.organization_id)
    .fetch_one(pool)
    .await?;
    let cursor = Cursor {
        created_at: middle.0.fixed_offset(),
        id: middle.1,
    };
    let page_sql =
        "SELECT * FROM agent_runs WHERE organization_id = $1 AND (created_at, id) < ($2, $3)
         ORDER BY created_at DESC, id DESC LIMIT $4";
    for _ in 0..iterations + warm {
        let page = timed(
            &mut c.helper,
            agents::list_runs(db, &data.organization_id, Some(cursor), 50),
        )
        .await?;
        let rows: Vec<RawRun> = timed(
            &mut c.raw,
            sqlx::query_as(page_sql)
                .bind(&data.organization_id)
                .bind(middle.0)
                .bind(middle.1)
                .bind(51i64)
                .fetch_all(pool),
        )
        .await?;
        anyhow::ensure!(
            page.items.len() == 50 && rows.len() == 51,
            "not enough runs seeded"
        );
    }
    c.skip_warm_up(warm);
    out.push(c);
    Ok(out)
}
