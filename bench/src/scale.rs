//! Claim and keyset-page latency as one organization's events grow, and the plans at the
//! largest size.

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

/// `rows` events of the organization, as its connection to [`crate::seed::TEAM`] stored them,
/// one in a hundred pending, spread over time; half of the pending ones wait out a retry's
/// backoff (due in an hour), which the claim must not have to read. Vacuumed and analysed: the
/// same table state every time it is called with the same `rows`.
pub async fn fill(db: &DatabaseConnection, organization_id: &str, rows: usize) -> Result<()> {
    db.execute_unprepared("TRUNCATE slack_events CASCADE")
        .await?;
    let filled = db
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "INSERT INTO slack_events (organization_id, slack_connection_id, event_id, event_type,
                     team_id, payload, status, created_at, due_at)
                 SELECT r.organization_id, r.connection_id, 'S' || g,
                        CASE WHEN g % 3 = 0 THEN 'app_mention' ELSE 'message' END, r.external_id,
                        jsonb_build_object('n', g),
                        CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'processed' END,
                        now() - (({rows} - g) * interval '1 millisecond'),
                        CASE WHEN g % 200 = 0 THEN now() + interval '1 hour'
                             ELSE now() - (({rows} - g) * interval '1 millisecond') END
                 FROM webhook_routes r, generate_series(1, {rows}) g
                 WHERE r.provider = 'slack' AND r.external_id = $1 AND r.organization_id = $2"
            ),
            [crate::seed::TEAM.into(), organization_id.into()],
        ))
        .await?;
    anyhow::ensure!(
        filled.rows_affected() == rows as u64,
        "{organization_id} has no route of Slack team {}",
        crate::seed::TEAM
    );
    // On its own: VACUUM cannot run inside the implicit transaction of a multi-statement string.
    db.execute_unprepared("VACUUM ANALYZE slack_events").await?;
    Ok(())
}

async fn middle_cursor(
    db: &DatabaseConnection,
    organization_id: &str,
    rows: usize,
) -> Result<Cursor> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT created_at, id FROM slack_events WHERE organization_id = $1
                 ORDER BY created_at DESC, id DESC OFFSET {} LIMIT 1",
                rows / 2
            ),
            [organization_id.into()],
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
    organization_id: &str,
    rows: usize,
    iterations: usize,
) -> Result<ScalePoint> {
    fill(db, organization_id, rows).await?;
    let cursor = middle_cursor(db, organization_id, rows).await?;
    let mut point = ScalePoint {
        rows,
        claim: Samples::default(),
        page: Samples::default(),
    };
    for _ in 0..iterations + 10 {
        let txn = db.begin().await?;
        timed(
            &mut point.claim,
            events::claim::<SlackEvents>(&txn, organization_id, 10),
        )
        .await?;
        txn.rollback().await?;
        timed(
            &mut point.page,
            events::list::<SlackEvents>(
                db,
                organization_id,
                &EventFilter::default(),
                Some(cursor),
                50,
            ),
        )
        .await?;
    }
    point.claim.skip_first(10);
    point.page.skip_first(10);
    Ok(point)
}

/// `EXPLAIN (ANALYZE, BUFFERS)` of the claim (rolled back) and page statements the service
/// sends, with their values bound as it binds them.
pub async fn explain(
    db: &DatabaseConnection,
    organization_id: &str,
    rows: usize,
) -> Result<(String, String)> {
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
        events::claim_statement::<SlackEvents>(organization_id, events::ClaimOptions::new(10)),
    )
    .await?;
    txn.rollback().await?;
    let cursor = middle_cursor(db, organization_id, rows).await?;
    let page = plan(
        db,
        events::list_statement::<SlackEvents>(
            organization_id,
            &EventFilter::default(),
            Some(cursor),
            50,
        ),
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
