//! The hot helpers against the same statements written by hand with sqlx, interleaved call by
//! call on the same database so both sides see the same cache and load; which side goes first
//! alternates from one call to the next.

use anyhow::Result;
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, TransactionTrait};
use serde_json::{Value, json};
use service::{
    Cursor,
    agents::{self, NewToolCallInput},
    auth,
    events::{self, Ingested, SlackDelivery, SlackEvents},
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    seed::{BenchData, running_run},
    stats::{Samples, in_turn, timed},
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
    organization_id: String,
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
    due_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
#[allow(dead_code)]
struct RawToolCall {
    id: Uuid,
    organization_id: String,
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
        team_id: crate::seed::TEAM.into(),
        channel_id: Some("C1".into()),
        slack_user_id: Some("U1".into()),
        payload: json!({ "type": "event_callback", "event": { "type": "message", "text": "hello there", "ts": n.to_string() } }),
    }
}

/// The ingest as a sqlx user writes it by hand, one array per column: the deliveries a route
/// claims go to its organization and connection, the others to `unrouted_events`, and each
/// organization that got new rows is notified. It must stay the statement `events::ingest` and
/// `events::ingest_batch` send (checked in [`run`]), so it names its columns as the helper's
/// builder does.
pub const RAW_INGEST: &str = "WITH d AS (
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::jsonb[])
             WITH ORDINALITY AS d(c1, c2, c3, c4, c5, c6, n)),
     ins AS (
         INSERT INTO slack_events (organization_id, slack_connection_id, event_id, event_type,
             team_id, channel_id, slack_user_id, payload)
         SELECT r.organization_id, r.connection_id, d.c1, d.c2, d.c3, NULLIF(d.c4, ''),
             NULLIF(d.c5, ''), d.c6
         FROM d JOIN webhook_routes r ON r.provider = 'slack' AND r.external_id = d.c3
         ORDER BY d.n
         ON CONFLICT DO NOTHING
         RETURNING organization_id, event_id, id),
     unrouted AS (
         INSERT INTO unrouted_events (provider, event_id, external_id, event_type, payload)
         SELECT 'slack', d.c1, d.c3, d.c2, d.c6::jsonb FROM d
         WHERE NOT EXISTS (SELECT 1 FROM webhook_routes r
                           WHERE r.provider = 'slack' AND r.external_id = d.c3)
         ORDER BY d.n
         ON CONFLICT DO NOTHING
         RETURNING event_id, id),
     woken AS (
         SELECT pg_notify('slack_events', o)::text AS sent
         FROM (SELECT DISTINCT organization_id AS o FROM ins) AS organizations)
     SELECT organization_id, event_id, id, (SELECT count(*) FROM woken) AS notified FROM ins
     UNION ALL
     SELECT NULL, event_id, id, NULL FROM unrouted";

/// The claim as a sqlx user writes it by hand; it must stay the statement `events::claim`
/// sends (checked in [`run`]).
const CLAIM_SQL: &str = "WITH next AS (
         SELECT id FROM slack_events WHERE organization_id = $1
             AND status IN ('pending', 'processing') AND due_at <= now()
         ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),
     moved AS (
         UPDATE slack_events e SET
             status = CASE WHEN e.attempts >= $4 THEN 'failed' ELSE 'processing' END,
             attempts = CASE WHEN e.attempts >= $4 THEN e.attempts ELSE e.attempts + 1 END,
             due_at = now() + make_interval(secs => $3),
             updated_at = now(),
             last_error = CASE
                 WHEN e.attempts < $4 THEN e.last_error
                 WHEN e.status = 'processing' THEN 'its worker stopped during the last attempt (lease expired)'
                 ELSE COALESCE(e.last_error, 'no attempts left') END
         FROM next WHERE e.organization_id = $1 AND e.id = next.id
         RETURNING e.id, e.slack_connection_id, e.event_id, e.event_type, e.team_id,
             e.channel_id, e.slack_user_id, e.payload, e.status, e.attempts, e.last_error,
             e.processed_at, e.created_at, e.updated_at, e.due_at, e.organization_id)
     SELECT id, slack_connection_id, event_id, event_type, team_id, channel_id, slack_user_id,
         payload, status, attempts, last_error, processed_at, created_at, updated_at, due_at,
         organization_id
     FROM moved WHERE status = 'processing'";

/// What [`RAW_INGEST`] returns per new delivery: its organization (`None`: unrouted).
#[derive(sqlx::FromRow)]
#[allow(dead_code)]
pub struct RawIngested {
    pub organization_id: Option<String>,
    event_id: String,
    id: Uuid,
    notified: Option<i64>,
}

/// Binds a batch to [`RAW_INGEST`] the way a hand-written sqlx caller would: one array per
/// column, NULLs as NULLs, payloads as `jsonb`.
pub fn raw_batch(
    batch: &[SlackDelivery],
) -> sqlx::query::QueryAs<'static, sqlx::Postgres, RawIngested, sqlx::postgres::PgArguments> {
    sqlx::query_as(RAW_INGEST)
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
        .bind(batch.iter().map(|d| d.payload.clone()).collect::<Vec<_>>())
}

/// Whitespace aside, the same text: the hand-written statements are laid out for reading.
fn squash(sql: &str) -> String {
    sql.split_whitespace().collect()
}

/// Fails unless every row is a new event stored for `organization_id` (none unrouted).
fn all_routed<'a>(
    rows: impl IntoIterator<Item = Option<&'a str>>,
    organization_id: &str,
    expected: usize,
    side: &str,
) -> Result<()> {
    let rows: Vec<_> = rows.into_iter().collect();
    anyhow::ensure!(
        rows.len() == expected && rows.iter().all(|o| *o == Some(organization_id)),
        "{side} stored {} of {expected} deliveries, not all routed to {organization_id}: {rows:?}",
        rows.len()
    );
    Ok(())
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
        let (found, row) = in_turn(
            i,
            timed(&mut c.helper, auth::valid_session(db, token)),
            timed(
                &mut c.raw,
                sqlx::query_as::<_, RawSessionWithUser>(session_sql)
                    .bind(token)
                    .fetch_optional(pool),
            ),
        )
        .await;
        let (found, row) = (found?, row?);
        anyhow::ensure!(
            found.is_some() && row.is_some(),
            "seeded session {} not found",
            i % data.session_tokens.len()
        );
    }
    c.skip_warm_up(warm);
    out.push(c);

    // Single ingest: new deliveries, alternating sides, each routed to the bench's organization.
    anyhow::ensure!(
        squash(RAW_INGEST) == squash(events::ingest_statement_sql::<SlackEvents>()),
        "the hand-written ingest differs from the one `events::ingest` sends"
    );
    let organization = data.organization_id.as_str();
    let mut c = Comparison::new("ingest one event");
    for i in 0..iterations + warm {
        let (a, b) = (
            delivery(10_000_000 + 2 * i),
            delivery(10_000_000 + 2 * i + 1),
        );
        let (ingested, rows) = in_turn(
            i,
            timed(&mut c.helper, events::ingest::<SlackEvents>(db, a)),
            timed(
                &mut c.raw,
                raw_batch(std::slice::from_ref(&b)).fetch_all(pool),
            ),
        )
        .await;
        let (ingested, rows) = (ingested?, rows?);
        let helper_org = match &ingested {
            Ingested::Inserted {
                organization_id, ..
            } => Some(organization_id.as_str()),
            _ => None,
        };
        all_routed([helper_org], organization, 1, "the helper")?;
        all_routed(
            rows.iter().map(|r| r.organization_id.as_deref()),
            organization,
            1,
            "the hand-written ingest",
        )?;
    }
    c.skip_warm_up(warm);
    out.push(c);

    // Batch ingest of 100.
    let mut c = Comparison::new("ingest batch of 100");
    for i in 0..(iterations / 5).max(10) + warm {
        let base = 20_000_000 + i * 200;
        let a: Vec<_> = (base..base + 100).map(delivery).collect();
        let b: Vec<_> = (base + 100..base + 200).map(delivery).collect();
        let (ingested, rows) = in_turn(
            i,
            timed(&mut c.helper, events::ingest_batch::<SlackEvents>(db, &a)),
            timed(&mut c.raw, raw_batch(&b).fetch_all(pool)),
        )
        .await;
        let (ingested, rows) = (ingested?, rows?);
        anyhow::ensure!(
            ingested.unrouted.is_empty(),
            "the helper left deliveries unrouted"
        );
        all_routed(
            ingested
                .inserted
                .iter()
                .map(|e| Some(e.organization_id.as_str())),
            organization,
            100,
            "the helper",
        )?;
        all_routed(
            rows.iter().map(|r| r.organization_id.as_deref()),
            organization,
            100,
            "the hand-written ingest",
        )?;
    }
    c.skip_warm_up(warm);
    out.push(c);

    // Claim 10 (in a transaction rolled back, so the pending set stays the same size).
    let mut c = Comparison::new("claim 10 pending");
    let lease = events::ClaimOptions::new(10).lease.as_secs_f64();
    // Written by hand as a sqlx user would, but it must stay the statement the helper sends.
    anyhow::ensure!(
        squash(CLAIM_SQL)
            == squash(
                &events::claim_statement::<SlackEvents>(
                    organization,
                    events::ClaimOptions::new(10)
                )
                .sql
            ),
        "the hand-written claim differs from the one `events::claim` sends"
    );
    for i in 0..iterations + warm {
        let helper = async {
            let txn = db.begin().await?;
            let claimed = timed(
                &mut c.helper,
                events::claim::<SlackEvents>(&txn, organization, 10),
            )
            .await?;
            txn.rollback().await?;
            anyhow::Ok(claimed)
        };
        let raw = async {
            let mut tx = pool.begin().await?;
            let rows: Vec<RawEvent> = timed(
                &mut c.raw,
                sqlx::query_as(CLAIM_SQL)
                    .bind(organization)
                    .bind(10i64)
                    .bind(lease)
                    .bind(i64::MAX)
                    .fetch_all(&mut *tx),
            )
            .await?;
            tx.rollback().await?;
            anyhow::Ok(rows)
        };
        let (claimed, rows) = in_turn(i, helper, raw).await;
        let (claimed, rows) = (claimed?, rows?);
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
        let more = events::claim::<SlackEvents>(db, organization, want).await?;
        anyhow::ensure!(!more.is_empty(), "not enough pending events seeded");
        claimed.extend(more);
    }
    let mark_sql = "UPDATE slack_events
         SET status = 'processed', processed_at = now(), last_error = NULL, updated_at = now()
         WHERE organization_id = $1 AND id = $2 AND status IN ('processing')
         RETURNING id, slack_connection_id, event_id, event_type, team_id, channel_id,
             slack_user_id, payload, status, attempts, last_error, processed_at, created_at,
             updated_at, due_at, organization_id";
    for (i, pair) in claimed.chunks(2).enumerate() {
        let (marked, row) = in_turn(
            i,
            timed(
                &mut c.helper,
                events::mark_processed::<SlackEvents>(db, organization, pair[0].id),
            ),
            timed(
                &mut c.raw,
                sqlx::query_as::<_, RawEvent>(mark_sql)
                    .bind(organization)
                    .bind(pair[1].id)
                    .fetch_optional(pool),
            ),
        )
        .await;
        let (_, row) = (marked?, row?);
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
    let append_sql = "WITH seq AS (
             UPDATE agent_runs SET next_tool_call_sequence = next_tool_call_sequence + 1,
                                   updated_at = now()
             WHERE organization_id = $1 AND id = $2 AND status = 'running'
             RETURNING next_tool_call_sequence - 1 AS sequence)
         INSERT INTO tool_calls (organization_id, agent_run_id, tool_id, tool_name, sequence, input)
         SELECT $1, $2, $3, $4, seq.sequence, $5 FROM seq
         RETURNING id, agent_run_id, tool_id, tool_name, sequence, input, output, status, error,
             duration_ms, started_at, completed_at, created_at, updated_at, organization_id";
    for i in 0..iterations + warm {
        let call = NewToolCallInput {
            tool_name: "web_fetch".into(),
            tool_id: None,
            input: json!({ "url": "https://example.com" }),
        };
        let (appended, row) = in_turn(
            i,
            timed(
                &mut c.helper,
                agents::append_tool_call(db, organization, run_a, call),
            ),
            timed(
                &mut c.raw,
                sqlx::query_as::<_, RawToolCall>(append_sql)
                    .bind(organization)
                    .bind(run_b)
                    .bind(None::<Uuid>)
                    .bind("web_fetch")
                    .bind(json!({ "url": "https://example.com" }))
                    .fetch_optional(pool),
            ),
        )
        .await;
        let (_, row) = (appended?, row?);
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
    let page_sql = "SELECT id, organization_id, user_id, trigger_source, slack_event_id,
             linear_event_id, status, model, input, output, error, prompt_tokens,
             completion_tokens, started_at, completed_at, created_at, updated_at,
             next_tool_call_sequence
         FROM agent_runs WHERE organization_id = $1 AND (created_at, id) < ($2, $3)
         ORDER BY created_at DESC, id DESC LIMIT $4";
    for i in 0..iterations + warm {
        let (page, rows) = in_turn(
            i,
            timed(
                &mut c.helper,
                agents::list_runs(db, &data.organization_id, Some(cursor), 50),
            ),
            timed(
                &mut c.raw,
                sqlx::query_as::<_, RawRun>(page_sql)
                    .bind(&data.organization_id)
                    .bind(middle.0)
                    .bind(middle.1)
                    .bind(51i64)
                    .fetch_all(pool),
            ),
        )
        .await;
        let (page, rows) = (page?, rows?);
        anyhow::ensure!(
            page.items.len() == 50 && rows.len() == 51,
            "not enough runs seeded"
        );
    }
    c.skip_warm_up(warm);
    out.push(c);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use service::events::{self, SlackEvents};

    use super::{CLAIM_SQL, RAW_INGEST, squash};

    #[test]
    fn the_hand_written_ingest_is_the_statement_the_helper_sends() {
        assert_eq!(
            squash(RAW_INGEST),
            squash(events::ingest_statement_sql::<SlackEvents>())
        );
    }

    #[test]
    fn the_hand_written_claim_is_the_statement_the_helper_sends() {
        let options = events::ClaimOptions::new(10);
        assert_eq!(
            squash(CLAIM_SQL),
            squash(&events::claim_statement::<SlackEvents>("org", options).sql)
        );
    }
}
