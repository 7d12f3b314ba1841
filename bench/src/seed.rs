//! The data every case reads, from the workspace's one generator (the `seed` crate): 1 000
//! users with a valid session each, one organization with 2 000 runs, and a queue of pending
//! Slack events.

use anyhow::Result;
use entity::enums::TriggerSource;
use sea_orm::DatabaseConnection;
use seed::{SeedOptions, Silent, Sizes};
use service::agents::{self, NewRunInput};
use sqlx::PgPool;
use uuid::Uuid;

/// What the cases look up in the seeded rows.
pub struct BenchData {
    /// The organization holding every run.
    pub organization_id: String,
    /// One valid session token per user.
    pub session_tokens: Vec<String>,
}

/// A small sqlx pool for `url`, for the seed's `COPY` (which needs a connection of its own).
pub async fn pool(url: &db_connect::DatabaseUrl, connections: u32) -> Result<PgPool> {
    use secrecy::ExposeSecret;
    let options: sqlx::postgres::PgConnectOptions = url.expose().expose_secret().parse()?;
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(connections)
        .connect_with(db_connect::connect::driver_options(options))
        .await?)
}

/// Seeds the bench's rows: every seeded event pending, so the claim cases always find work.
pub async fn base(pool: &PgPool, pending_events: usize) -> Result<BenchData> {
    let sizes = Sizes {
        users: 1_000,
        organizations: 1,
        slack_events: pending_events as u64,
        linear_events: 0,
        agent_runs: 2_000,
        tool_calls: 0,
        pending_percent: 100,
    };
    let mut conn = pool.acquire().await?;
    let seeded = seed::seed(&mut conn, &SeedOptions::new(1, sizes), &Silent).await?;
    let session_tokens = sqlx::query_scalar(
        "SELECT token FROM sessions WHERE expires_at > now() ORDER BY id LIMIT 1000",
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(BenchData {
        organization_id: seeded.busiest_organization_id,
        session_tokens,
    })
}

pub async fn running_run(db: &DatabaseConnection, organization_id: &str) -> Result<Uuid> {
    let run = agents::create_run(
        db,
        NewRunInput {
            organization_id: organization_id.into(),
            user_id: None,
            trigger_source: TriggerSource::Api,
            slack_event_id: None,
            linear_event_id: None,
            model: "claude-sonnet".into(),
            input: serde_json::json!({}),
        },
    )
    .await?;
    agents::start_run(db, run.id).await?;
    Ok(run.id)
}
