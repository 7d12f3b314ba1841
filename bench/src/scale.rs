//! Claim and keyset-page latency as the events table grows, and the plans at the largest size.

use anyhow::{Result, bail};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use service::{
    Cursor,
    events::{self, EventFilter, SlackEvents},
};

use crate::stats::{Samples, timed};

pub struct ScalePoint {
    pub rows: usize,
    pub claim: Samples,
    pub page: Samples,
}

/// `rows` events, one in a hundred pending, spread over time; half of the pending ones wait out
/// a retry's backoff (due in an hour), which the claim must not have to read. Vacuumed and
/// analysed: the same table state every time it is called with the same `rows`.
pub async fn fill(db: &DatabaseConnection, rows: usize) -> Result<()> {
    db.execute_unprepared("TRUNCATE slack_events CASCADE")
        .await?;
    db.execute_unprepared(&format!(
        "INSERT INTO slack_events (event_id, event_type, team_id, payload, status, created_at, due_at)
         SELECT 'S' || g, CASE WHEN g % 3 = 0 THEN 'app_mention' ELSE 'message' END, 'T1',
                jsonb_build_object('n', g), CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'processed' END,
                now() - (({rows} - g) * interval '1 millisecond'),
                CASE WHEN g % 200 = 0 THEN now() + interval '1 hour'
                     ELSE now() - (({rows} - g) * interval '1 millisecond') END
         FROM generate_series(1, {rows}) g"
    ))
    .await?;
    // On its own: VACUUM cannot run inside the implicit transaction of a multi-statement string.
    db.execute_unprepared("VACUUM ANALYZE slack_events").await?;
    Ok(())
}

async fn middle_cursor(db: &DatabaseConnection, rows: usize) -> Result<Cursor> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT created_at, id FROM slack_events ORDER BY created_at DESC, id DESC OFFSET {} LIMIT 1", rows / 2),
        ))
        .await?
        .expect("the table was filled");
    Ok(Cursor {
        created_at: row.try_get_by_index(0)?,
        id: row.try_get_by_index(1)?,
    })
}

pub async fn measure(
    db: &DatabaseConnection,
    rows: usize,
    iterations: usize,
) -> Result<ScalePoint> {
    fill(db, rows).await?;
    let cursor = middle_cursor(db, rows).await?;
    let mut point = ScalePoint {
        rows,
        claim: Samples::default(),
        page: Samples::default(),
    };
    for _ in 0..iterations + 10 {
        let txn = db.begin().await?;
        timed(&mut point.claim, events::claim::<SlackEvents>(&txn, 10)).await?;
        txn.rollback().await?;
        timed(
            &mut point.page,
            events::list::<SlackEvents>(db, &EventFilter::default(), Some(cursor), 50),
        )
        .await?;
    }
    point.claim.skip_first(10);
    point.page.skip_first(10);
    Ok(point)
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the claim (rolled back) and page statements the service
/// sends, with their values bound as it binds them.
pub async fn explain(db: &DatabaseConnection, rows: usize) -> Result<(String, String)> {
    async fn plan(db: &impl ConnectionTrait, statement: Statement) -> Result<String> {
        let explain = Statement {
            sql: format!("EXPLAIN (ANALYZE, BUFFERS) {}", statement.sql),
            ..statement
        };
        Ok(db
            .query_all_raw(explain)
            .await?
            .iter()
            .map(|r| r.try_get_by_index::<String>(0))
            .collect::<Result<Vec<_>, _>>()?
            .join("\n"))
    }
    let txn = db.begin().await?;
    let claim = plan(
        &txn,
        events::claim_statement::<SlackEvents>(events::ClaimOptions::new(10)),
    )
    .await?;
    txn.rollback().await?;
    let cursor = middle_cursor(db, rows).await?;
    let page = plan(
        db,
        events::list_statement::<SlackEvents>(&EventFilter::default(), Some(cursor), 50),
    )
    .await?;
    Ok((claim, page))
}

/// Fails when either plan reads the table sequentially.
pub fn require_index_only(claim: &str, page: &str) -> Result<()> {
    for (name, plan) in [("claim", claim), ("page", page)] {
        if plan.contains("Seq Scan") {
            bail!("the {name} query does a sequential scan:\n{plan}");
        }
    }
    Ok(())
}
