//! Batch ingest throughput against its ceiling: the bare `INSERT ... SELECT FROM unnest(...)
//! ON CONFLICT DO NOTHING` with the same arrays, on the same emptied table.

use std::time::Instant;

use anyhow::Result;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use service::events::{self, SlackDelivery, SlackEvents};
use sqlx::PgPool;

use crate::overhead::{delivery, raw_batch};

const CEILING: &str = "INSERT INTO slack_events (event_id, event_type, team_id, channel_id, slack_user_id, slack_connection_id, payload)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::uuid[], $7::jsonb[])
     ON CONFLICT (event_id) DO NOTHING";

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

pub struct Throughput {
    pub rows: usize,
    pub helper_rows_per_s: f64,
    pub ceiling_rows_per_s: f64,
}

async fn empty(db: &DatabaseConnection) -> Result<()> {
    db.execute_unprepared("TRUNCATE slack_events CASCADE")
        .await?;
    Ok(())
}

/// Best of two runs per side, alternating, so neither side is favoured by a warm cache.
pub async fn run(db: &DatabaseConnection, pool: &PgPool, rows: usize) -> Result<Throughput> {
    let batches = batches(rows, 1000.min(rows));
    let delivered: usize = batches.iter().map(Vec::len).sum();
    let (mut helper, mut ceiling) = (0f64, 0f64);
    for _ in 0..2 {
        empty(db).await?;
        let started = Instant::now();
        for batch in &batches {
            raw_batch(batch, CEILING).execute(pool).await?;
        }
        ceiling = ceiling.max(delivered as f64 / started.elapsed().as_secs_f64());

        empty(db).await?;
        let started = Instant::now();
        let mut duplicates = 0;
        for batch in &batches {
            duplicates += events::ingest_batch::<SlackEvents>(db, batch)
                .await?
                .duplicates;
        }
        helper = helper.max(delivered as f64 / started.elapsed().as_secs_f64());
        anyhow::ensure!(
            duplicates == delivered / 10,
            "expected 10% duplicates, got {duplicates}"
        );
    }
    Ok(Throughput {
        rows: delivered,
        helper_rows_per_s: helper,
        ceiling_rows_per_s: ceiling,
    })
}
