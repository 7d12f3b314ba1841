//! Webhook deliveries from Slack and Linear: idempotent ingest (one row per delivery id, even
//! under retries and races), claiming by workers with `FOR UPDATE SKIP LOCKED`, and the status
//! moves after it. Every helper is written once, for any [`EventSource`]: [`SlackEvents`] or
//! [`LinearEvents`].
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
    ConnectionTrait, FromQueryResult, ModelTrait, Statement, Value,
    prelude::{Json, Uuid},
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
fn payload_texts<S: EventSource>(batch: &[S::Delivery]) -> Result<Vec<String>, Error> {
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
    /// `slack_events` or `linear_events`.
    const TABLE: &'static str;
    /// For error messages: "slack event".
    const ENTITY: &'static str;
    /// The columns a delivery fills, in the order of [`EventSource::columns`].
    const COLUMNS: &'static [&'static str];
    /// SQL array type per column (all `text[]`: the payload travels as JSON text); nullable ones
    /// carry `''` for NULL, turned back by [`EventSource::SELECT`].
    const ARRAY_TYPES: &'static [&'static str];
    /// The expressions that turn the `unnest` columns `c1, c2, ...` into the row's values.
    const SELECT: &'static str;
    /// What a caller hands in for one delivery.
    type Delivery: Send + Sync;
    /// A stored row.
    type Row: ModelTrait + FromQueryResult + Send + Sync + HasCursor;

    /// The claim a claimed row carries: its id and attempt.
    fn claimed(row: &Self::Row) -> Claimed;
    fn event_id(delivery: &Self::Delivery) -> &str;
    fn payload(delivery: &Self::Delivery) -> &Json;
    /// One array per column but the last (`payload`, which [`ingest_batch`] adds itself):
    /// `columns(batch)[i]` holds column `i` of every delivery.
    fn columns(batch: &[Self::Delivery]) -> Vec<Value>;
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
    pub slack_connection_id: Option<Uuid>,
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
    pub linear_connection_id: Option<Uuid>,
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
    const COLUMNS: &'static [&'static str] = &[
        "event_id",
        "event_type",
        "team_id",
        "channel_id",
        "slack_user_id",
        "slack_connection_id",
        "payload",
    ];
    const ARRAY_TYPES: &'static [&'static str] = &[
        "text[]", "text[]", "text[]", "text[]", "text[]", "text[]", "jsonb[]",
    ];
    const SELECT: &'static str =
        "c1, c2, c3, NULLIF(c4, ''), NULLIF(c5, ''), NULLIF(c6, '')::uuid, c7";
    type Delivery = SlackDelivery;
    type Row = SlackEvent;

    fn claimed(row: &SlackEvent) -> Claimed {
        Claimed {
            id: row.id,
            attempt: row.attempts,
        }
    }

    fn event_id(delivery: &SlackDelivery) -> &str {
        &delivery.event_id
    }

    fn payload(delivery: &SlackDelivery) -> &Json {
        &delivery.payload
    }

    fn columns(batch: &[SlackDelivery]) -> Vec<Value> {
        vec![
            strings(batch.iter().map(|d| d.event_id.as_str())),
            strings(batch.iter().map(|d| d.event_type.as_str())),
            strings(batch.iter().map(|d| d.team_id.as_str())),
            nullable_strings(batch.iter().map(|d| d.channel_id.clone())),
            nullable_strings(batch.iter().map(|d| d.slack_user_id.clone())),
            nullable_strings(
                batch
                    .iter()
                    .map(|d| d.slack_connection_id.map(|id| id.to_string())),
            ),
        ]
    }
}

impl EventSource for LinearEvents {
    const TABLE: &'static str = "linear_events";
    const ENTITY: &'static str = "linear event";
    const COLUMNS: &'static [&'static str] = &[
        "event_id",
        "event_type",
        "action",
        "linear_organization_id",
        "linear_connection_id",
        "payload",
    ];
    const ARRAY_TYPES: &'static [&'static str] =
        &["text[]", "text[]", "text[]", "text[]", "text[]", "text[]"];
    const SELECT: &'static str = "c1, c2, c3, c4, NULLIF(c5, '')::uuid, c6::jsonb";
    type Delivery = LinearDelivery;
    type Row = LinearEvent;

    fn claimed(row: &LinearEvent) -> Claimed {
        Claimed {
            id: row.id,
            attempt: row.attempts,
        }
    }

    fn event_id(delivery: &LinearDelivery) -> &str {
        &delivery.event_id
    }

    fn payload(delivery: &LinearDelivery) -> &Json {
        &delivery.payload
    }

    fn columns(batch: &[LinearDelivery]) -> Vec<Value> {
        vec![
            strings(batch.iter().map(|d| d.event_id.as_str())),
            strings(batch.iter().map(|d| d.event_type.as_str())),
            strings(batch.iter().map(|d| d.action.as_str())),
            strings(batch.iter().map(|d| d.linear_organization_id.as_str())),
            nullable_strings(
                batch
                    .iter()
                    .map(|d| d.linear_connection_id.map(|id| id.to_string())),
            ),
        ]
    }
}

/// What ingesting one delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingested {
    /// First time this delivery id was seen: the new row's id.
    Inserted(Uuid),
    /// A retry of a delivery already stored; the stored row (and its first payload) is kept.
    Duplicate,
}

/// What ingesting a batch did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchIngest {
    /// `(event_id, id)` of each new row.
    pub inserted: Vec<(String, Uuid)>,
    /// Deliveries already stored, or repeated within the batch (the first one wins).
    pub duplicates: usize,
}

/// [`build_insert_sql`], built once per source and shape.
fn insert_sql<S: EventSource>(single: bool) -> &'static str {
    use std::{
        collections::HashMap,
        sync::{Mutex, OnceLock},
    };
    static BUILT: OnceLock<Mutex<HashMap<(&'static str, bool), &'static str>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .expect("not poisoned");
    built
        .entry((S::TABLE, single))
        .or_insert_with(|| Box::leak(build_insert_sql::<S>(single).into_boxed_str()))
}

/// The `INSERT ... SELECT ... ON CONFLICT (event_id) DO NOTHING` of a source, reading its rows
/// from `unnest` of one array per column, or, for a single delivery, from one `VALUES` row.
fn build_insert_sql<S: EventSource>(single: bool) -> String {
    let params = S::ARRAY_TYPES
        .iter()
        .enumerate()
        .map(|(i, ty)| match single {
            true => format!("${}::{}", i + 1, ty.trim_end_matches("[]")),
            false => format!("${}::{ty}", i + 1),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let source = match single {
        true => format!("(VALUES ({params}))"),
        false => format!("unnest({params})"),
    };
    let names = (1..=S::COLUMNS.len())
        .map(|i| format!("c{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "INSERT INTO {} ({}) SELECT {} FROM {source} AS d({names})
         ON CONFLICT (event_id) DO NOTHING RETURNING event_id, id",
        S::TABLE,
        S::COLUMNS.join(", "),
        S::SELECT,
    )
}

/// Checks a batch and lays it out as one array per column, payloads last.
fn column_arrays<S: EventSource>(batch: &[S::Delivery]) -> Result<Vec<Value>, Error> {
    if batch.iter().any(|d| S::event_id(d).trim().is_empty()) {
        return Err(Error::invalid("event_id", "it is empty"));
    }
    let mut columns = S::columns(batch);
    columns.push(payload_texts::<S>(batch)?.into());
    Ok(columns)
}

#[derive(FromQueryResult)]
struct InsertedRow {
    event_id: String,
    id: Uuid,
}

/// Stores one delivery unless its `event_id` is already stored, in one statement.
pub async fn ingest<S: EventSource>(
    db: &impl ConnectionTrait,
    delivery: S::Delivery,
) -> Result<Ingested, Error> {
    // The arrays of a batch of one, each unwrapped to its single value.
    let values = column_arrays::<S>(std::slice::from_ref(&delivery))?
        .into_iter()
        .map(|column| match column {
            Value::Array(_, Some(mut one)) => one.pop().expect("a batch of one has one value"),
            other => other,
        });
    let inserted: Option<InsertedRow> = sql::one(db, insert_sql::<S>(true), values).await?;
    Ok(match inserted {
        Some(row) => Ingested::Inserted(row.id),
        None => Ingested::Duplicate,
    })
}

/// Stores a batch of deliveries in one statement, skipping those already stored and repeats
/// within the batch (the first occurrence is kept). A payload deeper than
/// [`MAX_PAYLOAD_DEPTH`] or larger than [`MAX_PAYLOAD_BYTES`] fails the whole batch with
/// [`Error::Validation`] naming its event, before anything is written.
pub async fn ingest_batch<S: EventSource>(
    db: &impl ConnectionTrait,
    batch: &[S::Delivery],
) -> Result<BatchIngest, Error> {
    if batch.is_empty() {
        return Ok(BatchIngest::default());
    }
    let rows: Vec<InsertedRow> =
        sql::all(db, insert_sql::<S>(false), column_arrays::<S>(batch)?).await?;
    Ok(BatchIngest {
        duplicates: batch.len() - rows.len(),
        inserted: rows.into_iter().map(|r| (r.event_id, r.id)).collect(),
    })
}

/// Hands up to `limit` due events, oldest first, to this worker and no other: they become
/// `processing` with `attempts + 1`, leased for [`DEFAULT_LEASE`]. Rows another worker is
/// claiming are skipped, not waited for.
pub async fn claim<S: EventSource>(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<S::Row>, Error> {
    claim_with::<S>(db, ClaimOptions::new(limit)).await
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

/// Hands up to `options.limit` due events (pending ones whose `due_at` has come, and processing
/// ones whose lease ran out) to this worker and no other, in due order, in one statement that
/// reads only the claim index: they become `processing`, `attempts + 1`, leased for
/// `options.lease`. Those out of attempts become `failed` instead and are not returned.
pub async fn claim_with<S: EventSource>(
    db: &impl ConnectionTrait,
    options: ClaimOptions,
) -> Result<Vec<S::Row>, Error> {
    let mut rows: Vec<S::Row> = S::Row::find_by_statement(claim_statement::<S>(options))
        .all(db)
        .await?;
    // RETURNING has no order; workers expect arrival order.
    rows.sort_by_key(|row| {
        let c = row.cursor();
        (c.created_at, c.id)
    });
    Ok(rows)
}

/// The statement [`claim_with`] sends, for checks of its plan (`EXPLAIN`) by tests and the bench.
#[doc(hidden)]
pub fn claim_statement<S: EventSource>(options: ClaimOptions) -> Statement {
    let sql = format!(
        "WITH next AS (
             SELECT id FROM {0} WHERE {QUEUED} AND due_at <= now()
             ORDER BY due_at, id LIMIT $1 FOR UPDATE SKIP LOCKED),
         moved AS (
             UPDATE {0} e SET
                 status = CASE WHEN e.attempts >= $3 THEN 'failed' ELSE 'processing' END,
                 attempts = CASE WHEN e.attempts >= $3 THEN e.attempts ELSE e.attempts + 1 END,
                 due_at = now() + make_interval(secs => $2),
                 last_error = CASE
                     WHEN e.attempts < $3 THEN e.last_error
                     WHEN e.status = 'processing' THEN 'its worker stopped during the last attempt (lease expired)'
                     ELSE COALESCE(e.last_error, 'no attempts left') END
             FROM next WHERE e.id = next.id
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
            (clamp_limit(options.limit) as i64).into(),
            options.lease.as_secs_f64().into(),
            max_attempts.into(),
        ],
    )
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

/// Ends the attempts of many claimed events in one statement. Returns the claims that still
/// held their lease, so were moved; the others are left to whoever holds them now.
pub async fn settle<S: EventSource>(
    db: &impl ConnectionTrait,
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
    let sql = format!(
        "UPDATE {} e SET
             status = d.status,
             due_at = CASE WHEN d.status = 'pending' THEN now() + make_interval(secs => d.delay)
                           ELSE e.due_at END,
             last_error = CASE WHEN d.status = 'processed' THEN NULL
                               ELSE COALESCE(NULLIF(d.error, ''), e.last_error) END,
             processed_at = CASE WHEN d.status IN ('processed', 'ignored') THEN now()
                                 ELSE e.processed_at END
         FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::text[], $5::float8[])
              AS d(id, attempt, status, error, delay)
         WHERE e.id = d.id AND e.attempts = d.attempt AND e.status = 'processing'
         RETURNING e.id",
        S::TABLE
    );
    let rows: Vec<IdRow> = sql::all(
        db,
        &sql,
        [
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

/// Extends the leases of claims still held to `lease` from now (a worker's heartbeat), in one
/// statement. Returns the claims that were still held.
pub async fn extend_leases<S: EventSource>(
    db: &impl ConnectionTrait,
    claims: &[Claimed],
    lease: Duration,
) -> Result<Vec<Uuid>, Error> {
    if claims.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "UPDATE {} e SET due_at = now() + make_interval(secs => $3)
         FROM unnest($1::uuid[], $2::int4[]) AS d(id, attempt)
         WHERE e.id = d.id AND e.attempts = d.attempt AND e.status = 'processing'
         RETURNING e.id",
        S::TABLE
    );
    let [ids, attempts] = claim_arrays(claims);
    let rows: Vec<IdRow> = sql::all(db, &sql, [ids, attempts, lease.as_secs_f64().into()]).await?;
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

/// Gives claims still held back to the queue, due now, and wakes the listening workers, in one
/// statement. Returns how many went back.
pub async fn release<S: EventSource>(
    db: &impl ConnectionTrait,
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
        "WITH released AS (
             UPDATE {0} e SET status = 'pending', due_at = now(), attempts = e.attempts - $3,
                              last_error = COALESCE($4, e.last_error)
             FROM unnest($1::uuid[], $2::int4[]) AS d(id, attempt)
             WHERE e.id = d.id AND e.attempts = d.attempt AND e.status = 'processing'
             RETURNING e.id)
         SELECT count(*) AS released FROM released
         CROSS JOIN LATERAL (SELECT pg_notify('{0}', '')) AS woken",
        S::TABLE
    );
    #[derive(FromQueryResult)]
    struct Count {
        released: i64,
    }
    let [ids, attempts] = claim_arrays(claims);
    let count: Option<Count> = sql::one(
        db,
        &sql,
        [
            ids,
            attempts,
            given_back.into(),
            error.map(str::to_owned).into(),
        ],
    )
    .await?;
    Ok(count.map_or(0, |c| c.released as u64))
}

/// How long until the next queued event is due (zero when one is due now), or `None` when
/// nothing is queued: one probe of the claim index.
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
    id: Uuid,
    set: &str,
    from: &str,
    to: &'static str,
    mut values: Vec<Value>,
) -> Result<S::Row, Error> {
    let sql = format!(
        "UPDATE {} SET {set} WHERE id = $1 AND status IN ({from}) RETURNING {}",
        S::TABLE,
        columns::<RowEntity<S>>(None),
    );
    values.insert(0, id.into());
    match sql::one(db, &sql, values).await? {
        Some(row) => Ok(row),
        None => Err(refused_transition(db, S::TABLE, S::ENTITY, id, to).await),
    }
}

/// A claimed event was handled: `processing` -> `processed`.
pub async fn mark_processed<S: EventSource>(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<S::Row, Error> {
    finish::<S>(
        db,
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
    id: Uuid,
) -> Result<S::Row, Error> {
    finish::<S>(
        db,
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
    id: Uuid,
    error: &str,
    max_attempts: u32,
) -> Result<S::Row, Error> {
    finish::<S>(
        db,
        id,
        "status = CASE WHEN attempts >= $3 THEN 'failed' ELSE 'pending' END, last_error = $2,
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

/// Events left `processing` for longer than `stuck_for` (their worker died) go back to
/// `pending`, or to `failed` once they have had `max_attempts`. Returns how many moved.
pub async fn requeue_stuck<S: EventSource>(
    db: &impl ConnectionTrait,
    stuck_for: Duration,
    max_attempts: u32,
) -> Result<u64, Error> {
    let sql = format!(
        "UPDATE {} SET status = CASE WHEN attempts >= $2 THEN 'failed' ELSE 'pending' END,
                       last_error = COALESCE(last_error, 'requeued: processing took too long'),
                       due_at = now()
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

/// Events matching `filter`, newest first, `limit` (at most 1000) per page; pass the previous
/// page's `next` as `after`.
pub async fn list<S: EventSource>(
    db: &impl ConnectionTrait,
    filter: &EventFilter,
    after: Option<Cursor>,
    limit: u64,
) -> Result<Page<S::Row>, Error> {
    let statement = list_statement::<S>(filter, after, limit);
    let rows = S::Row::find_by_statement(statement).all(db).await?;
    Ok(Page::from_overfetch(rows, clamp_limit(limit)))
}

/// The statement [`list`] sends (one row more than a page, to know whether another follows),
/// for checks of its plan (`EXPLAIN`) by tests and the bench.
#[doc(hidden)]
pub fn list_statement<S: EventSource>(
    filter: &EventFilter,
    after: Option<Cursor>,
    limit: u64,
) -> Statement {
    // Only the predicates in use, so each shape gets a plan that fits it.
    let mut conditions = Vec::new();
    let mut values: Vec<Value> = Vec::new();
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
        "SELECT {} FROM {} {} ORDER BY created_at DESC, id DESC LIMIT ${}",
        columns::<RowEntity<S>>(None),
        S::TABLE,
        if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        },
        values.len()
    );
    sql::statement(&sql, values)
}

/// One stored event by id.
pub async fn find<S: EventSource>(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<S::Row>, Error> {
    sql::one(
        db,
        &format!(
            "SELECT {} FROM {} WHERE id = $1",
            columns::<RowEntity<S>>(None),
            S::TABLE
        ),
        [id.into()],
    )
    .await
}
