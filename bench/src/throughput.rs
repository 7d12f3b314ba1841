//! Batch ingest throughput: the helper against two ceilings written by hand (the helper's own
//! routed `INSERT ... SELECT FROM unnest(...)` sent with sqlx, and binary `COPY` into a staging
//! table then one statement routing the staged rows), and against Drizzle when it runs. Every
//! side does the helper's work: each delivery is routed by its team id (`webhook_routes`) to the
//! organization and connection that receive it, a delivery no route claims goes to
//! `unrouted_events`, repeats are skipped, and each organization that got new rows is notified.
//! Every side ingests the same batches into the emptied table, in rounds: a warm-up round, then
//! the same number of measured rounds per side, interleaved and in a rotating order; each side's
//! figure is the median of its rounds.

use std::time::Instant;

use anyhow::Result;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use service::events::{self, SlackDelivery, SlackEvents};
use sqlx::PgPool;

use crate::{
    drizzle::{Drizzle, Variant},
    overhead::{delivery, raw_batch},
    stats::median,
};

/// A session table the COPY ceiling stages each batch in (temporary: no WAL, no other session
/// sees it).
const STAGING: &str = "CREATE TEMP TABLE IF NOT EXISTS ingest_staging (
     event_id text, event_type text, team_id text, channel_id text, slack_user_id text,
     payload jsonb)";
const COPY: &str = "COPY ingest_staging FROM STDIN (FORMAT binary)";
/// Empties the staging table in the statement that routes its rows as the helper does (to the
/// route's organization and connection, or to `unrouted_events`, and a notification per
/// organization that got rows), so each batch is two round trips (COPY, this), as the helper's
/// is one.
const FROM_STAGING: &str = "WITH staged AS (DELETE FROM ingest_staging RETURNING *),
     ins AS (
         INSERT INTO slack_events (organization_id, slack_connection_id, event_id, event_type,
             team_id, channel_id, slack_user_id, payload)
         SELECT r.organization_id, r.connection_id, s.event_id, s.event_type, s.team_id,
             s.channel_id, s.slack_user_id, s.payload
         FROM staged s JOIN webhook_routes r ON r.provider = 'slack' AND r.external_id = s.team_id
         ON CONFLICT DO NOTHING
         RETURNING organization_id, event_id, id),
     unrouted AS (
         INSERT INTO unrouted_events (provider, event_id, external_id, event_type, payload)
         SELECT 'slack', s.event_id, s.team_id, s.event_type, s.payload FROM staged s
         WHERE NOT EXISTS (SELECT 1 FROM webhook_routes r
                           WHERE r.provider = 'slack' AND r.external_id = s.team_id)
         ON CONFLICT DO NOTHING
         RETURNING event_id, id),
     woken AS (
         SELECT pg_notify('slack_events', o)::text AS sent
         FROM (SELECT DISTINCT organization_id AS o FROM ins) AS organizations)
     SELECT organization_id, event_id, id, (SELECT count(*) FROM woken) AS notified FROM ins
     UNION ALL
     SELECT NULL, event_id, id, NULL FROM unrouted";

/// Batches of `size` deliveries, each with 10% repeats of the batch before it (the first batch
/// repeats its own), `rows` deliveries in all.
pub fn batches(rows: usize, size: usize) -> Vec<Vec<SlackDelivery>> {
    let fresh = size - size / 10;
    (0..rows / size)
        .map(|b| {
            let start = b * fresh;
            let repeats = if b == 0 { 0 } else { start - size / 10 };
            (start..start + fresh)
                .chain(repeats..repeats + size / 10)
                .map(delivery)
                .collect()
        })
        .collect()
}

/// A batch in PostgreSQL's binary COPY format, in the staging table's column order.
fn copy_binary(batch: &[SlackDelivery]) -> Vec<u8> {
    fn field(out: &mut Vec<u8>, value: Option<&[u8]>) {
        match value {
            Some(bytes) => {
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(bytes);
            }
            None => out.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    let mut out = Vec::with_capacity(batch.len() * 256);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes()); // flags
    out.extend_from_slice(&0i32.to_be_bytes()); // header extension length
    for d in batch {
        out.extend_from_slice(&6i16.to_be_bytes());
        field(&mut out, Some(d.event_id.as_bytes()));
        field(&mut out, Some(d.event_type.as_bytes()));
        field(&mut out, Some(d.team_id.as_bytes()));
        field(&mut out, d.channel_id.as_deref().map(str::as_bytes));
        field(&mut out, d.slack_user_id.as_deref().map(str::as_bytes));
        // jsonb's binary form: a version byte, then the JSON text.
        let mut payload = vec![1u8];
        serde_json::to_writer(&mut payload, &d.payload).expect("a JSON value always serializes");
        field(&mut out, Some(&payload));
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// Who ingests in a round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Helper,
    Unnest,
    Copy,
    Drizzle(Variant),
}

impl Side {
    pub fn label(self) -> &'static str {
        match self {
            Self::Helper => "`events::ingest_batch`",
            Self::Unnest => "ceiling: the helper's routed `unnest` statement by hand (sqlx)",
            Self::Copy => "ceiling: binary COPY + one routing INSERT ... SELECT (sqlx)",
            Self::Drizzle(variant) => variant.label(),
        }
    }
}

/// Rows per second of each round, per side.
pub struct Throughput {
    pub rows: usize,
    pub rounds: Vec<(Side, Vec<f64>)>,
}

impl Throughput {
    /// The median of `side`'s rounds.
    pub fn rows_per_s(&self, side: Side) -> Option<f64> {
        self.rounds
            .iter()
            .find(|(s, _)| *s == side)
            .map(|(_, rounds)| median(rounds))
    }

    /// The faster of the two hand-written ceilings.
    pub fn best_ceiling(&self) -> (Side, f64) {
        [Side::Unnest, Side::Copy]
            .into_iter()
            .filter_map(|side| Some((side, self.rows_per_s(side)?)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .expect("both ceilings ran")
    }
}

async fn empty(db: &DatabaseConnection) -> Result<()> {
    db.execute_unprepared("TRUNCATE slack_events CASCADE")
        .await?;
    db.execute_unprepared("DELETE FROM unrouted_events WHERE provider = 'slack'")
        .await?;
    Ok(())
}

/// One side ingests every batch into the emptied table: rows per second.
async fn round(
    side: Side,
    db: &DatabaseConnection,
    pool: &PgPool,
    drizzle: Option<&mut Drizzle>,
    batches: &[Vec<SlackDelivery>],
) -> Result<f64> {
    empty(db).await?;
    let delivered: usize = batches.iter().map(Vec::len).sum();
    let started = Instant::now();
    let inserted = match side {
        Side::Helper => {
            let mut inserted = 0;
            for batch in batches {
                inserted += events::ingest_batch::<SlackEvents>(db, batch)
                    .await?
                    .inserted
                    .len();
            }
            inserted
        }
        Side::Unnest => {
            let mut inserted = 0;
            for batch in batches {
                inserted += raw_batch(batch)
                    .fetch_all(pool)
                    .await?
                    .iter()
                    .filter(|row| row.organization_id.is_some())
                    .count();
            }
            inserted
        }
        Side::Copy => {
            let mut conn = pool.acquire().await?;
            sqlx::query(STAGING).execute(&mut *conn).await?;
            let mut inserted = 0;
            for batch in batches {
                let mut copy = conn.copy_in_raw(COPY).await?;
                copy.send(copy_binary(batch)).await?;
                copy.finish().await?;
                let rows: Vec<(Option<String>,)> =
                    sqlx::query_as(FROM_STAGING).fetch_all(&mut *conn).await?;
                inserted += rows
                    .iter()
                    .filter(|(organization,)| organization.is_some())
                    .count();
            }
            inserted
        }
        Side::Drizzle(variant) => {
            let drizzle = drizzle.expect("Drizzle sides run only with Drizzle");
            let rows_per_s = drizzle.ingest(variant, delivered)?;
            let stored: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM slack_events e JOIN webhook_routes r
                  ON r.provider = 'slack' AND r.external_id = e.team_id
                 AND r.organization_id = e.organization_id AND r.connection_id = e.slack_connection_id",
            )
            .fetch_one(pool)
            .await?;
            anyhow::ensure!(
                stored as usize == delivered - delivered / 10,
                "Drizzle stored {stored} rows of {delivered} deliveries"
            );
            return Ok(rows_per_s);
        }
    };
    let rows_per_s = delivered as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        inserted == delivered - delivered / 10,
        "{side:?} routed {inserted} rows of {delivered} deliveries (10% are repeats)"
    );
    Ok(rows_per_s)
}

/// `rounds` measured rounds of every side after a warm-up round, `rows` deliveries each.
pub async fn run(
    db: &DatabaseConnection,
    pool: &PgPool,
    mut drizzle: Option<&mut Drizzle>,
    rows: usize,
    rounds: usize,
) -> Result<Throughput> {
    let batches = batches(rows, 1000.min(rows));
    let mut sides = vec![Side::Helper, Side::Unnest, Side::Copy];
    if drizzle.is_some() {
        sides.extend(Variant::ALL.map(Side::Drizzle));
    }
    let warm_up = &batches[..batches.len().min(10)];
    for &side in &sides {
        round(side, db, pool, drizzle.as_deref_mut(), warm_up).await?;
    }
    let mut figures: Vec<(Side, Vec<f64>)> = sides.iter().map(|&s| (s, Vec::new())).collect();
    for r in 0..rounds {
        // A rotating order, so no side always runs first (or right after the slowest).
        for i in 0..figures.len() {
            let k = (i + r) % figures.len();
            let side = figures[k].0;
            let rows_per_s = round(side, db, pool, drizzle.as_deref_mut(), &batches).await?;
            figures[k].1.push(rows_per_s);
        }
    }
    Ok(Throughput {
        rows: batches.iter().map(Vec::len).sum(),
        rounds: figures,
    })
}
