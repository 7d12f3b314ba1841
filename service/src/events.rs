//! Webhook deliveries from Slack and Linear: idempotent ingest (one row per delivery id, even
//! under retries and races), routed to the organization whose connection receives the team's or
//! workspace's webhooks (`webhook_routes`; a delivery no route claims is kept in
//! `unrouted_events`), claiming by workers with `FOR UPDATE SKIP LOCKED`, and the status moves
//! after it. Every helper is written once, for any [`EventSource`]: [`SlackEvents`] or
//! [`LinearEvents`].
//!
//! Every helper after the ingest works inside one organization and names it, so on Citus each
//! is one task on the node holding that organization's shard (`FOR UPDATE SKIP LOCKED` is only
//! allowed there). Writers set `updated_at` themselves and the ingest sends its own
//! notification (`pg_notify('<table>', <organization id>)`), since neither a trigger nor a
//! notification from a worker node reaches a listener on the coordinator.
//!
//! ```text
//! pending (due) --claim--> processing (leased until due_at) --mark_processed / settle--> processed
//!                             |  \--mark_ignored / settle--> ignored
//!                             \--mark_failed / settle--> pending, due after a backoff | failed
//! processing, lease expired --claim--> processing (the next attempt) | failed (none left)
//! processing, claimed but not started --release--> pending, due now
//! processing, untouched too long --requeue_stuck--> pending | failed
//! ```
//!
//! `due_at` says when an event next needs a worker: a pending event when it may run (its
//! arrival, or the end of a retry's backoff), a processing one when its claim's lease runs out
//! (a worker that died gives its events back that way, to exactly one next claimer). The
//! worker runtime ([`crate::worker`]) is the loop around these statements.

use std::time::Duration;

use entity::{LinearEvent, SlackEvent, enums::EventStatus, enums::LinearEventAction};
use sea_orm::{
    ConnectionTrait, DbErr, FromQueryResult, ModelTrait, QueryResult, Statement, Value,
    prelude::{Json, Uuid},
    sqlx::{self, Row as _, postgres::PgRow},
};

use crate::{
    Cursor, Error, Page,
    page::{HasCursor, clamp_limit},
    sql::{self, columns, refused_transition},
};

/// The longest `last_error` kept; longer messages are cut (at a character boundary).
pub use crate::redact::MAX_ERROR_LEN;
/// How long a claim made by [`claim`] keeps its events from other workers: after that, a
/// claimed event not yet settled is due again (its worker is presumed dead).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(5 * 60);
/// The statuses of the queue, which the claim index (`idx_<events>_due`) covers.
const QUEUED: &str = "status IN ('pending', 'processing')";
/// The largest payload stored, as JSON text. Slack and Linear deliveries are far smaller; a
/// larger one is a bug or an attack, refused before it reaches the database.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// The deepest nesting of a payload stored: serde_json's own limit when parsing.
pub const MAX_PAYLOAD_DEPTH: usize = 128;
/// The longest `event_type` stored (`varchar(128)` in both event tables and `unrouted_events`).
pub const EVENT_TYPE_LEN: usize = 128;

/// Refuses payloads nested too deep, measured without recursion, so even a payload built far
/// deeper than any stack allows is refused before anything serializes it.
fn check_depth(event_id: &str, payload: &Json) -> Result<(), Error> {
    let mut stack = vec![(payload, 1usize)];
    while let Some((value, depth)) = stack.pop() {
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(Error::invalid(
                "payload",
                format!("event `{event_id}` nests deeper than {MAX_PAYLOAD_DEPTH} levels"),
            ));
        }
        match value {
            Json::Array(items) => stack.extend(items.iter().map(|v| (v, depth + 1))),
            Json::Object(fields) => stack.extend(fields.values().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    Ok(())
}

/// The payloads of a batch as JSON text, each serialized once: the text both bounds the size
/// and is what is sent (as `text[]`, cast to `jsonb` in the statement), so no payload is cloned.
fn payload_texts<S: EventSource>(batch: &[&S::Delivery]) -> Result<Vec<String>, Error> {
    batch
        .iter()
        .map(|delivery| {
            let (event_id, payload) = (S::event_id(delivery), S::payload(delivery));
            check_depth(event_id, payload)?;
            let text = serde_json::to_string(payload).expect("a JSON value always serializes");
            if text.len() > MAX_PAYLOAD_BYTES {
                return Err(Error::invalid(
                    "payload",
                    format!(
                        "event `{event_id}` is {} bytes; at most {MAX_PAYLOAD_BYTES}",
                        text.len()
                    ),
                ));
            }
            Ok(text)
        })
        .collect()
}

/// The entity of `S`'s rows.
type RowEntity<S> = <<S as EventSource>::Row as ModelTrait>::Entity;

/// A table of webhook deliveries and how to write one of its rows.
pub trait EventSource: Send + Sync + 'static {
    /// `slack_events` or `linear_events`; also the channel of its notifications.
    const TABLE: &'static str;
    /// For error messages: "slack event".
    const ENTITY: &'static str;
    /// `webhook_routes.provider` and `unrouted_events.provider`: `slack` or `linear`.
    const PROVIDER: &'static str;
    /// The column holding the connection the delivery came through (from its route).
    const CONNECTION: &'static str;
    /// The column of `agent_runs` that names an event of this table.
    const RUN_LINK: &'static str;
    /// The columns a delivery fills, in the order of [`EventSource::columns`], payload last.
    const COLUMNS: &'static [&'static str];
    /// SQL array type per column (the payload travels as JSON text); nullable ones carry `''`
    /// for NULL, turned back by [`EventSource::SELECT`].
    const ARRAY_TYPES: &'static [&'static str];
    /// The expressions that turn the `unnest` columns `d.c1, d.c2, ...` into the row's values.
    const SELECT: &'static str;
    /// The `unnest` column holding what routes the delivery (Slack's team, Linear's workspace).
    const ROUTE_KEY: &'static str;
    /// What a caller hands in for one delivery.
    type Delivery: Send + Sync;
    /// A stored row.
    type Row: ModelTrait + FromQueryResult + Send + Sync + HasCursor;

    /// The claim a claimed row carries: its id and attempt.
    fn claimed(row: &Self::Row) -> Claimed;
    /// The organization the row belongs to.
    fn organization_id(row: &Self::Row) -> &str;
    fn event_id(delivery: &Self::Delivery) -> &str;
    fn event_type(delivery: &Self::Delivery) -> &str;
    /// Slack's `team_id`, Linear's organization id: what the route is looked up by.
    fn route_key(delivery: &Self::Delivery) -> &str;
    fn payload(delivery: &Self::Delivery) -> &Json;
    /// One array per column but the last (`payload`, which [`ingest_batch`] adds itself):
    /// `columns(batch)[i]` holds column `i` of every delivery.
    fn columns(batch: &[&Self::Delivery]) -> Vec<Value>;
    /// A stored row read straight from the PostgreSQL row, by column name.
    fn decode(row: &PgRow) -> Result<Self::Row, sqlx::Error>;
}

/// Rows of `S` decoded as hand-written sqlx would. SeaORM's generic decoder formats an error
/// string for every NULL column before it becomes `None`, and a queued event has at least two
/// (`last_error`, `processed_at`): a claim of 500 made 1 000 strings nobody reads.
fn decode_rows<S: EventSource>(results: &[QueryResult]) -> Result<Vec<S::Row>, DbErr> {
    results
        .iter()
        .map(|result| match result.try_as_pg_row() {
            Some(row) => S::decode(row).map_err(|e| DbErr::Type(e.to_string())),
            None => S::Row::from_query_result(result, ""),
        })
        .collect()
}

/// A Slack Events API delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackDelivery {
    /// Slack's `event_id` (`Ev...`), the same on every retry.
    pub event_id: String,
    pub event_type: String,
    pub team_id: String,
    pub channel_id: Option<String>,
    pub slack_user_id: Option<String>,
    pub payload: Json,
}

/// A Linear webhook delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearDelivery {
    /// Linear's delivery id (`Linear-Delivery` header), the same on every retry.
    pub event_id: String,
    /// `Issue`, `Comment`, ...
    pub event_type: String,
    pub action: LinearEventAction,
    pub linear_organization_id: String,
    pub payload: Json,
}

/// `slack_events`.
pub struct SlackEvents;
/// `linear_events`.
pub struct LinearEvents;

fn strings<'a>(values: impl Iterator<Item = &'a str>) -> Value {
    Value::from(values.map(str::to_owned).collect::<Vec<_>>())
}

/// NULL travels as `''` (see [`EventSource::ARRAY_TYPES`]).
fn nullable_strings(values: impl Iterator<Item = Option<String>>) -> Value {
    Value::from(values.map(Option::unwrap_or_default).collect::<Vec<_>>())
}

impl EventSource for SlackEvents {
    const TABLE: &'static str = "slack_events";
    const ENTITY: &'static str = "slack event";
    const PROVIDER: &'static str = "slack";
    const CONNECTION: &'static str = "slack_connection_id";
    const RUN_LINK: &'static str = "slack_event_id";
    const COLUMNS: &'static [&'static str] = &[
        "event_id",
        "event_type",
        "team_id",
        "channel_id",
        "slack_user_id",
        "payload",
    ];
    const ARRAY_TYPES: &'static [&'static str] =
        &["text[]", "text[]", "text[]", "text[]", "text[]", "jsonb[]"];
    const SELECT: &'static str = "d.c1, d.c2, d.c3, NULLIF(d.c4, ''), NULLIF(d.c5, ''), d.c6";
    const ROUTE_KEY: &'static str = "c3";
    type Delivery = SlackDelivery;
    type Row = SlackEvent;

    fn claimed(row: &SlackEvent) -> Claimed {
        Claimed {
            id: row.id,
            attempt: row.attempts,
        }
    }

    fn organization_id(row: &SlackEvent) -> &str {
        &row.organization_id
    }

    fn event_id(delivery: &SlackDelivery) -> &str {
        &delivery.event_id
    }
    fn event_type(delivery: &SlackDelivery) -> &str {
        &delivery.event_type
    }

    fn route_key(delivery: &SlackDelivery) -> &str {
        &delivery.team_id
    }

    fn payload(delivery: &SlackDelivery) -> &Json {
        &delivery.payload
    }

    fn columns(batch: &[&SlackDelivery]) -> Vec<Value> {
        vec![
            strings(batch.iter().map(|d| d.event_id.as_str())),
            strings(batch.iter().map(|d| d.event_type.as_str())),
            strings(batch.iter().map(|d| d.team_id.as_str())),
            nullable_strings(batch.iter().map(|d| d.channel_id.clone())),
            nullable_strings(batch.iter().map(|d| d.slack_user_id.clone())),
        ]
    }

    fn decode(row: &PgRow) -> Result<SlackEvent, sqlx::Error> {
        Ok(SlackEvent {
            id: row.try_get("id")?,
            slack_connection_id: row.try_get("slack_connection_id")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            team_id: row.try_get("team_id")?,
            channel_id: row.try_get("channel_id")?,
            slack_user_id: row.try_get("slack_user_id")?,
            payload: row.try_get("payload")?,
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            processed_at: row.try_get("processed_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            due_at: row.try_get("due_at")?,
            organization_id: row.try_get("organization_id")?,
        })
    }
}

impl EventSource for LinearEvents {
    const TABLE: &'static str = "linear_events";
    const ENTITY: &'static str = "linear event";
    const PROVIDER: &'static str = "linear";
    const CONNECTION: &'static str = "linear_connection_id";
    const RUN_LINK: &'static str = "linear_event_id";
    const COLUMNS: &'static [&'static str] = &[
        "event_id",
        "event_type",
        "action",
        "linear_organization_id",
        "payload",
    ];
    const ARRAY_TYPES: &'static [&'static str] =
        &["text[]", "text[]", "text[]", "text[]", "text[]"];
    const SELECT: &'static str = "d.c1, d.c2, d.c3, d.c4, d.c5::jsonb";
    const ROUTE_KEY: &'static str = "c4";
    type Delivery = LinearDelivery;
    type Row = LinearEvent;

    fn claimed(row: &LinearEvent) -> Claimed {
        Claimed {
            id: row.id,
            attempt: row.attempts,
        }
    }

    fn organization_id(row: &LinearEvent) -> &str {
        &row.organization_id
    }

    fn event_id(delivery: &LinearDelivery) -> &str {
        &delivery.event_id
    }
    fn event_type(delivery: &LinearDelivery) -> &str {
        &delivery.event_type
    }

    fn route_key(delivery: &LinearDelivery) -> &str {
        &delivery.linear_organization_id
    }

    fn payload(delivery: &LinearDelivery) -> &Json {
        &delivery.payload
    }

    fn columns(batch: &[&LinearDelivery]) -> Vec<Value> {
        vec![
            strings(batch.iter().map(|d| d.event_id.as_str())),
            strings(batch.iter().map(|d| d.event_type.as_str())),
            strings(batch.iter().map(|d| d.action.as_str())),
            strings(batch.iter().map(|d| d.linear_organization_id.as_str())),
        ]
    }

    fn decode(row: &PgRow) -> Result<LinearEvent, sqlx::Error> {
        Ok(LinearEvent {
            id: row.try_get("id")?,
            linear_connection_id: row.try_get("linear_connection_id")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            action: row.try_get("action")?,
            linear_organization_id: row.try_get("linear_organization_id")?,
            payload: row.try_get("payload")?,
            status: row.try_get("status")?,
            attempts: row.try_get("attempts")?,
            last_error: row.try_get("last_error")?,
            processed_at: row.try_get("processed_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
            due_at: row.try_get("due_at")?,
            organization_id: row.try_get("organization_id")?,
        })
    }
}

/// What ingesting one delivery did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ingested {
    /// First time this delivery id was seen: the new row, stored for the organization its
    /// route names.
    Inserted { id: Uuid, organization_id: String },
    /// A retry of a delivery already stored; the stored row (and its first payload) is kept.
    Duplicate,
    /// No route names its team or workspace (no organization has an active connection to
    /// it): kept in `unrouted_events` under this id, for an operator to inspect or replay.
    Unrouted(Uuid),
}

/// One delivery a batch stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    pub event_id: String,
    pub id: Uuid,
    pub organization_id: String,
}

/// What ingesting a batch did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchIngest {
    /// Each new row, in event id order.
    pub inserted: Vec<StoredEvent>,
    /// `(event_id, unrouted_events.id)` of each new delivery no route claimed.
    pub unrouted: Vec<(String, Uuid)>,
    /// Deliveries already stored (routed or not), or repeated within the batch (the first one
    /// wins).
    pub duplicates: usize,
}

/// [`build_insert_sql`], built once per source.
fn insert_sql<S: EventSource>() -> &'static str {
    use std::{
        collections::HashMap,
        sync::{Mutex, OnceLock},
    };
    static BUILT: OnceLock<Mutex<HashMap<&'static str, &'static str>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    built
        .entry(S::TABLE)
        .or_insert_with(|| Box::leak(build_insert_sql::<S>().into_boxed_str()))
}

/// The statement [`ingest`] and [`ingest_batch`] send, for checks of its plan (`EXPLAIN`) by
/// tests and for the bench, whose hand-written ingest must stay this statement.
#[doc(hidden)]
pub fn ingest_statement_sql<S: EventSource>() -> &'static str {
    insert_sql::<S>()
}

/// The ingest of a source in one statement, reading the deliveries from `unnest` of one array
/// per column (in the order given, which is event id order): those a route claims go to the
/// route's organization and connection, the others to `unrouted_events`, repeats of stored
/// deliveries to neither; then one notification per organization that got new rows.
///
/// `ON CONFLICT DO NOTHING` names no key on purpose: the per-organization key
/// `(organization_id, event_id)` replaced the global `(event_id)` in an online migration, and a
/// statement without a target deduplicates on whichever of them exists. The notification is a
/// `pg_notify(...)::text` in the statement itself, so that on Citus it is sent by the
/// coordinator (a notification sent by a worker node never reaches its listener).
fn build_insert_sql<S: EventSource>() -> String {
    let params = S::ARRAY_TYPES
        .iter()
        .enumerate()
        .map(|(i, ty)| format!("${}::{ty}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    let names = (1..=S::COLUMNS.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let payload = format!("c{}", S::COLUMNS.len());
    let (table, provider, key) = (S::TABLE, S::PROVIDER, S::ROUTE_KEY);
    let route = format!("r.provider = '{provider}' AND r.external_id = d.{key}");
    format!(
        "WITH d AS (
             SELECT * FROM unnest({params}) WITH ORDINALITY AS d({names}, n)),
         ins AS (
             INSERT INTO {table} (organization_id, {connection}, {columns})
             SELECT r.organization_id, r.connection_id, {select}
             FROM d JOIN webhook_routes r ON {route}
             ORDER BY d.n
             ON CONFLICT DO NOTHING
             RETURNING organization_id, event_id, id),
         unrouted AS (
             INSERT INTO unrouted_events (provider, event_id, external_id, event_type, payload)
             SELECT '{provider}', d.c1, d.{key}, d.c2, d.{payload}::jsonb FROM d
             WHERE NOT EXISTS (SELECT 1 FROM webhook_routes r WHERE {route})
             ORDER BY d.n
             ON CONFLICT DO NOTHING
             RETURNING event_id, id),
         woken AS (
             SELECT pg_notify('{table}', o)::text AS sent
             FROM (SELECT DISTINCT organization_id AS o FROM ins) AS organizations)
         SELECT organization_id, event_id, id, (SELECT count(*) FROM woken) AS notified FROM ins
         UNION ALL
         SELECT NULL, event_id, id, NULL FROM unrouted",
        connection = S::CONNECTION,
        columns = S::COLUMNS.join(", "),
        select = S::SELECT,
    )
}

/// Checks a batch and lays it out as one array per column, payloads last, in event id order
/// (then route key), the one order every concurrent ingest takes its keys' locks in: two
/// batches of overlapping deliveries in different orders would otherwise deadlock. The sort is
/// stable, so of repeats within the batch the first stays first.
fn column_arrays<S: EventSource>(batch: &[S::Delivery]) -> Result<Vec<Value>, Error> {
    if batch.iter().any(|d| S::event_id(d).trim().is_empty()) {
        return Err(Error::invalid("event_id", "it is empty"));
    }
    // Checked here, not left to the column: on Citus an INSERT ... SELECT planned through the
    // coordinator casts to the column's type, which cuts an oversized value silently.
    if let Some(d) = batch
        .iter()
        .find(|d| S::event_type(d).chars().count() > EVENT_TYPE_LEN)
    {
        return Err(Error::invalid(
            "event_type",
            format!(
                "event {} has an event_type longer than {EVENT_TYPE_LEN} characters",
                S::event_id(d)
            ),
        ));
    }
    let mut sorted: Vec<&S::Delivery> = batch.iter().collect();
    sorted
        .sort_by(|a, b| (S::event_id(a), S::route_key(a)).cmp(&(S::event_id(b), S::route_key(b))));
    let mut columns = S::columns(&sorted);
    columns.push(payload_texts::<S>(&sorted)?.into());
    Ok(columns)
}

#[derive(FromQueryResult)]
struct IngestedRow {
    organization_id: Option<String>,
    event_id: String,
    id: Uuid,
}

async fn ingest_rows<S: EventSource>(
    db: &impl ConnectionTrait,
    batch: &[S::Delivery],
) -> Result<Vec<IngestedRow>, Error> {
    sql::all(db, insert_sql::<S>(), column_arrays::<S>(batch)?).await
}

/// Stores one delivery unless its `event_id` is already stored, for the organization its
/// route names (or in `unrouted_events` when none does), and wakes that organization's
/// workers, in one statement.
pub async fn ingest<S: EventSource>(
    db: &impl ConnectionTrait,
    delivery: S::Delivery,
) -> Result<Ingested, Error> {
    let row = ingest_rows::<S>(db, std::slice::from_ref(&delivery))
        .await?
        .pop();
    Ok(match row {
        Some(IngestedRow {
            organization_id: Some(organization_id),
            id,
            ..
        }) => Ingested::Inserted {
            id,
            organization_id,
        },
        Some(IngestedRow { id, .. }) => Ingested::Unrouted(id),
        None => Ingested::Duplicate,
    })
}

/// Stores a batch of deliveries in one statement, each for the organization its route names
/// (those no route claims in `unrouted_events`), skipping those already stored and repeats
/// within the batch (the first occurrence is kept), and wakes each organization that got new
/// events once. A payload deeper than [`MAX_PAYLOAD_DEPTH`] or larger than
/// [`MAX_PAYLOAD_BYTES`] fails the whole batch with [`Error::Validation`] naming its event,
/// before anything is written.
pub async fn ingest_batch<S: EventSource>(
    db: &impl ConnectionTrait,
    batch: &[S::Delivery],
) -> Result<BatchIngest, Error> {
    if batch.is_empty() {
        return Ok(BatchIngest::default());
    }
    let rows = ingest_rows::<S>(db, batch).await?;
    let mut result = BatchIngest {
        duplicates: batch.len() - rows.len(),
        ..BatchIngest::default()
    };
    for row in rows {
        match row.organization_id {
            Some(organization_id) => result.inserted.push(StoredEvent {
                event_id: row.event_id,
                id: row.id,
                organization_id,
            }),
            None => result.unrouted.push((row.event_id, row.id)),
        }
    }
    result.inserted.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    result.unrouted.sort();
    Ok(result)
}

/// Hands up to `limit` of the organization's due events, oldest first, to this worker and no
/// other: they become `processing` with `attempts + 1`, leased for [`DEFAULT_LEASE`]. Rows
/// another worker is claiming are skipped, not waited for.
pub async fn claim<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    limit: u64,
) -> Result<Vec<S::Row>, Error> {
    claim_with::<S>(db, organization_id, ClaimOptions::new(limit)).await
}

/// What a claim takes and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimOptions {
    /// At most this many events (at most 1000).
    pub limit: u64,
    /// How long the claimed events stay this worker's before they are due again.
    pub lease: Duration,
    /// Events that already had this many attempts (their last worker died, or a shutdown
    /// interrupted their last attempt) become `failed` instead of being handed out.
    pub max_attempts: Option<u32>,
}

impl ClaimOptions {
    /// [`claim`]'s options: `limit` events, the default lease, no attempt limit.
    pub fn new(limit: u64) -> Self {
        Self {
            limit,
            lease: DEFAULT_LEASE,
            max_attempts: None,
        }
    }
}

/// Hands up to `options.limit` of the organization's due events (pending ones whose `due_at`
/// has come, and processing ones whose lease ran out) to this worker and no other, in due
/// order, in one statement that reads only the claim index `(organization_id, due_at, id)`:
/// they become `processing`, `attempts + 1`, leased for `options.lease`. Those out of attempts
/// become `failed` instead and are not returned.
pub async fn claim_with<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    options: ClaimOptions,
) -> Result<Vec<S::Row>, Error> {
    let mut rows = decode_rows::<S>(
        &db.query_all_raw(claim_statement::<S>(organization_id, options))
            .await?,
    )?;
    // RETURNING has no order; workers expect arrival order.
    rows.sort_by_key(|row| {
        let c = row.cursor();
        (c.created_at, c.id)
    });
    Ok(rows)
}

/// The statement [`claim_with`] sends, for checks of its plan (`EXPLAIN`) by tests and the bench.
/// The organization is named in both the locking `SELECT` and the `UPDATE`, so on Citus the
/// whole statement is one task on the organization's shard.
#[doc(hidden)]
pub fn claim_statement<S: EventSource>(organization_id: &str, options: ClaimOptions) -> Statement {
    let sql = format!(
        "WITH next AS (
             SELECT id FROM {0} WHERE organization_id = $1 AND {QUEUED} AND due_at <= now()
             ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED),
         moved AS (
             UPDATE {0} e SET
                 status = CASE WHEN e.attempts >= $4 THEN 'failed' ELSE 'processing' END,
                 attempts = CASE WHEN e.attempts >= $4 THEN e.attempts ELSE e.attempts + 1 END,
                 due_at = now() + make_interval(secs => $3),
                 updated_at = now(),
                 last_error = CASE
                     WHEN e.attempts < $4 THEN e.last_error
                     WHEN e.status = 'processing' THEN 'its worker stopped during the last attempt (lease expired)'
                     ELSE COALESCE(e.last_error, 'no attempts left') END
             FROM next WHERE e.organization_id = $1 AND e.id = next.id
             RETURNING {1})
         SELECT {2} FROM moved WHERE status = 'processing'",
        S::TABLE,
        columns::<RowEntity<S>>(Some("e")),
        columns::<RowEntity<S>>(None),
    );
    let max_attempts = options.max_attempts.map_or(i64::MAX, i64::from);
    sql::statement(
        &sql,
        [
            organization_id.into(),
            (clamp_limit(options.limit) as i64).into(),
            options.lease.as_secs_f64().into(),
            max_attempts.into(),
        ],
    )
}

/// The organizations with events due now, those due longest first: the first `scan` due
/// events in due order (one read of the due index `(due_at, id)` without a lock; on Citus a
/// read of every shard, each stopping after `scan`), then each organization once. A worker
/// claims for each in turn.
pub async fn due_organizations<S: EventSource>(
    db: &impl ConnectionTrait,
    scan: u64,
) -> Result<Vec<String>, Error> {
    #[derive(FromQueryResult)]
    struct Due {
        organization_id: String,
    }
    let due = Due::find_by_statement(due_organizations_statement::<S>(scan))
        .all(db)
        .await?;
    Ok(due.into_iter().map(|d| d.organization_id).collect())
}

/// The statement [`due_organizations`] sends, for checks of its plan (`EXPLAIN`).
#[doc(hidden)]
pub fn due_organizations_statement<S: EventSource>(scan: u64) -> Statement {
    let sql = format!(
        "SELECT organization_id FROM (
             SELECT organization_id, due_at FROM {} WHERE {QUEUED} AND due_at <= now()
             ORDER BY due_at LIMIT $1) AS due
         GROUP BY organization_id ORDER BY min(due_at), organization_id",
        S::TABLE
    );
    sql::statement(&sql, [(clamp_limit(scan) as i64).into()])
}

/// One claim of one event: its id and the attempt the claim made. Moves after a claim name
/// both, so a worker whose lease ran out (and whose event another worker claimed again) moves
/// nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claimed {
    pub id: Uuid,
    pub attempt: i32,
}

/// How a claimed event ends its attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum Settle {
    Processed,
    Ignored,
    /// Back to `pending`, due after `after`; `error` (redacted, cut) goes to `last_error`.
    Retry {
        after: Duration,
        error: String,
    },
    /// `failed` for good; `error` (redacted, cut) goes to `last_error`.
    Failed {
        error: String,
    },
}

/// Ends the attempts of many of the organization's claimed events in one statement. Returns
/// the claims that still held their lease, so were moved; the others are left to whoever holds
/// them now.
pub async fn settle<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    settled: &[(Claimed, Settle)],
) -> Result<Vec<Uuid>, Error> {
    if settled.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(settled.len());
    let mut attempts = Vec::with_capacity(settled.len());
    let mut statuses = Vec::with_capacity(settled.len());
    let mut errors = Vec::with_capacity(settled.len());
    let mut delays = Vec::with_capacity(settled.len());
    for (claim, how) in settled {
        let (status, error, delay) = match how {
            Settle::Processed => (EventStatus::Processed, String::new(), 0.0),
            Settle::Ignored => (EventStatus::Ignored, String::new(), 0.0),
            Settle::Retry { after, error } => (
                EventStatus::Pending,
                crate::redact::error_text(error),
                after.as_secs_f64(),
            ),
            Settle::Failed { error } => {
                (EventStatus::Failed, crate::redact::error_text(error), 0.0)
            }
        };
        ids.push(claim.id);
        attempts.push(claim.attempt);
        statuses.push(status.as_str().to_owned());
        errors.push(error);
        delays.push(delay);
    }
    // `due_at` is written for every outcome (a finished event's is read by nothing: the claim
    // index holds only the queue): Citus evaluates `now()` once on the coordinator only outside
    // CASE, and `to_timestamp(... + d.delay)` keeps the column out of the stable function.
    let sql = format!(
        "UPDATE {} e SET
             status = d.status,
             due_at = to_timestamp(extract(epoch FROM now()) + d.delay),
             last_error = CASE WHEN d.status = 'processed' THEN NULL
                               ELSE COALESCE(NULLIF(d.error, ''), e.last_error) END,
             processed_at = CASE WHEN d.status IN ('processed', 'ignored') THEN (SELECT now())
                                 ELSE e.processed_at END,
             updated_at = now()
         FROM unnest($2::uuid[], $3::int4[], $4::text[], $5::text[], $6::float8[])
              AS d(id, attempt, status, error, delay)
         WHERE e.organization_id = $1 AND e.id = d.id AND e.attempts = d.attempt
           AND e.status = 'processing'
         RETURNING e.id",
        S::TABLE
    );
    let rows: Vec<IdRow> = sql::all(
        db,
        &sql,
        [
            organization_id.into(),
            ids.into(),
            attempts.into(),
            statuses.into(),
            errors.into(),
            delays.into(),
        ],
    )
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

#[derive(FromQueryResult)]
struct IdRow {
    id: Uuid,
}

fn claim_arrays(claims: &[Claimed]) -> [Value; 2] {
    [
        claims.iter().map(|c| c.id).collect::<Vec<_>>().into(),
        claims.iter().map(|c| c.attempt).collect::<Vec<_>>().into(),
    ]
}

/// Extends the leases of the organization's claims still held to `lease` from now (a worker's
/// heartbeat), in one statement. Returns the claims that were still held.
pub async fn extend_leases<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    claims: &[Claimed],
    lease: Duration,
) -> Result<Vec<Uuid>, Error> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE {} e SET due_at = now() + make_interval(secs => $4), updated_at = now()
         FROM unnest($2::uuid[], $3::int4[]) AS d(id, attempt)
         WHERE e.organization_id = $1 AND e.id = d.id AND e.attempts = d.attempt
           AND e.status = 'processing'
         RETURNING e.id",
        S::TABLE
    );
    let [ids, attempts] = claim_arrays(claims);
    let rows: Vec<IdRow> = sql::all(
        db,
        &sql,
        [
            organization_id.into(),
            ids,
            attempts,
            lease.as_secs_f64().into(),
        ],
    )
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Why claimed events go back to `pending` without an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// Claimed but never handed to a handler: the attempt is given back.
    NotStarted,
    /// A handler was stopped before it finished (a shutdown's grace period ran out): the
    /// attempt counts.
    Interrupted,
}

/// Gives the organization's claims still held back to the queue, due now, and, when any went
/// back, wakes the listening workers with a notification naming the organization. Returns how
/// many went back. Two statements: on Citus the `UPDATE` runs whole on the worker node holding
/// the shard, where a notification in it would be lost (it is sent on that node, not on the
/// coordinator the workers listen to), so the notification is a statement of its own.
pub async fn release<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    claims: &[Claimed],
    why: Release,
) -> Result<u64, Error> {
    if claims.is_empty() {
        return Ok(0);
    }
    let (given_back, error): (i32, Option<&str>) = match why {
        Release::NotStarted => (1, None),
        Release::Interrupted => (
            0,
            Some("interrupted: the worker shut down before the handler finished"),
        ),
    };
    let sql = format!(
        "UPDATE {} e SET status = 'pending', due_at = now(), attempts = e.attempts - $4,
                         last_error = COALESCE($5, e.last_error), updated_at = now()
         FROM unnest($2::uuid[], $3::int4[]) AS d(id, attempt)
         WHERE e.organization_id = $1 AND e.id = d.id AND e.attempts = d.attempt
           AND e.status = 'processing'",
        S::TABLE
    );
    let [ids, attempts] = claim_arrays(claims);
    let released = sql::execute(
        db,
        &sql,
        [
            organization_id.into(),
            ids,
            attempts,
            given_back.into(),
            error.map(str::to_owned).into(),
        ],
    )
    .await?;
    if released > 0 {
        notify::<S>(db, organization_id).await?;
    }
    Ok(released)
}

/// Wakes the workers listening for `S`'s events to claim for the organization.
pub(crate) async fn notify<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
) -> Result<(), Error> {
    sql::execute(
        db,
        "SELECT pg_notify($1, $2)::text",
        [S::TABLE.into(), organization_id.into()],
    )
    .await
    .map(drop)
}

/// How long until the next queued event of any organization is due (zero when one is due
/// now), or `None` when nothing is queued: one probe of the due index (on Citus, of each
/// shard's).
pub async fn next_due<S: EventSource>(
    db: &impl ConnectionTrait,
) -> Result<Option<Duration>, Error> {
    #[derive(FromQueryResult)]
    struct Wait {
        seconds: f64,
    }
    let sql = format!(
        "SELECT GREATEST(EXTRACT(EPOCH FROM due_at - now()), 0)::float8 AS seconds
         FROM {} WHERE {QUEUED} ORDER BY due_at, id LIMIT 1",
        S::TABLE
    );
    let wait: Option<Wait> = sql::one(db, &sql, []).await?;
    Ok(wait.map(|w| Duration::from_secs_f64(w.seconds)))
}

async fn finish<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
    set: &str,
    from: &str,
    to: &'static str,
    mut values: Vec<Value>,
) -> Result<S::Row, Error> {
    let sql = format!(
        "UPDATE {} SET {set}, updated_at = now()
         WHERE organization_id = $1 AND id = $2 AND status IN ({from}) RETURNING {}",
        S::TABLE,
        columns::<RowEntity<S>>(None),
    );
    values.splice(0..0, [organization_id.into(), id.into()]);
    match sql::one(db, &sql, values).await? {
        Some(row) => Ok(row),
        None => Err(refused_transition(db, S::TABLE, S::ENTITY, organization_id, id, to).await),
    }
}

/// A claimed event was handled: `processing` -> `processed`.
pub async fn mark_processed<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
) -> Result<S::Row, Error> {
    finish::<S>(
        db,
        organization_id,
        id,
        "status = 'processed', processed_at = now(), last_error = NULL",
        "'processing'",
        "processed",
        vec![],
    )
    .await
}

/// An event needs no handling: `pending` or `processing` -> `ignored`.
pub async fn mark_ignored<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
) -> Result<S::Row, Error> {
    finish::<S>(
        db,
        organization_id,
        id,
        "status = 'ignored', processed_at = now()",
        "'pending', 'processing'",
        "ignored",
        vec![],
    )
    .await
}

/// Handling a claimed event failed: back to `pending`, due now, for another attempt, or
/// `failed` for good once it has had `max_attempts`. The error is kept in `last_error`, with
/// what looks like a secret redacted and cut to [`MAX_ERROR_LEN`].
pub async fn mark_failed<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
    error: &str,
    max_attempts: u32,
) -> Result<S::Row, Error> {
    finish::<S>(
        db,
        organization_id,
        id,
        "status = CASE WHEN attempts >= $4 THEN 'failed' ELSE 'pending' END, last_error = $3,
         due_at = now()",
        "'processing'",
        "failed",
        vec![
            crate::redact::error_text(error).into(),
            i64::from(max_attempts).into(),
        ],
    )
    .await
}

/// Events of any organization left `processing` for longer than `stuck_for` (their worker
/// died) go back to `pending`, or to `failed` once they have had `max_attempts`. Returns how
/// many moved. It asks for no row lock, so on Citus it may run on every shard at once.
pub async fn requeue_stuck<S: EventSource>(
    db: &impl ConnectionTrait,
    stuck_for: Duration,
    max_attempts: u32,
) -> Result<u64, Error> {
    let sql = format!(
        "UPDATE {} SET status = CASE WHEN attempts >= $2 THEN 'failed' ELSE 'pending' END,
                       last_error = COALESCE(last_error, 'requeued: processing took too long'),
                       due_at = now(), updated_at = now()
         WHERE status = 'processing' AND updated_at < now() - make_interval(secs => $1)",
        S::TABLE
    );
    sql::execute(
        db,
        &sql,
        [
            stuck_for.as_secs_f64().into(),
            i64::from(max_attempts).into(),
        ],
    )
    .await
}

/// Which events [`list`] returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub event_type: Option<String>,
    pub status: Option<EventStatus>,
}

/// The organization's events matching `filter`, newest first, `limit` (at most 1000) per page;
/// pass the previous page's `next` as `after`.
pub async fn list<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    filter: &EventFilter,
    after: Option<Cursor>,
    limit: u64,
) -> Result<Page<S::Row>, Error> {
    let statement = list_statement::<S>(organization_id, filter, after, limit);
    let rows = decode_rows::<S>(&db.query_all_raw(statement).await?)?;
    Ok(Page::from_overfetch(rows, clamp_limit(limit)))
}

/// The statement [`list`] sends (one row more than a page, to know whether another follows),
/// for checks of its plan (`EXPLAIN`) by tests and the bench.
#[doc(hidden)]
pub fn list_statement<S: EventSource>(
    organization_id: &str,
    filter: &EventFilter,
    after: Option<Cursor>,
    limit: u64,
) -> Statement {
    // Only the predicates in use, so each shape gets a plan that fits it.
    let mut conditions = vec!["organization_id = $1".to_owned()];
    let mut values: Vec<Value> = vec![organization_id.into()];
    if let Some(event_type) = &filter.event_type {
        values.push(event_type.clone().into());
        conditions.push(format!("event_type = ${}", values.len()));
    }
    if let Some(status) = filter.status {
        values.push(status.as_str().into());
        conditions.push(format!("status = ${}", values.len()));
    }
    if let Some(cursor) = after {
        values.push(cursor.created_at.into());
        values.push(cursor.id.into());
        let n = values.len();
        conditions.push(format!("(created_at, id) < (${}, ${n})", n - 1));
    }
    values.push(((clamp_limit(limit) + 1) as i64).into());
    let sql = format!(
        "SELECT {} FROM {} WHERE {} ORDER BY created_at DESC, id DESC LIMIT ${}",
        columns::<RowEntity<S>>(None),
        S::TABLE,
        conditions.join(" AND "),
        values.len()
    );
    sql::statement(&sql, values)
}

/// One of the organization's stored events by id.
pub async fn find<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
) -> Result<Option<S::Row>, Error> {
    sql::one(
        db,
        &format!(
            "SELECT {} FROM {} WHERE organization_id = $1 AND id = $2",
            columns::<RowEntity<S>>(None),
            S::TABLE
        ),
        [organization_id.into(), id.into()],
    )
    .await
}
