//! The data every case reads, from the workspace's one generator (the `seed` crate): 1 000
//! users with a valid session each, one organization with 2 000 runs, a queue of pending Slack
//! events, and the organization's connection to the Slack team of the bench's deliveries, so
//! every delivery the cases ingest is routed to it.

use anyhow::{Context, Result};
use entity::enums::TriggerSource;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use seed::{SeedOptions, Silent, Sizes};
use service::{
    EncryptedToken,
    agents::{self, NewRunInput},
    integrations::{self, SlackConnectionInput},
};
use sqlx::PgPool;
use uuid::Uuid;

/// The Slack team of the bench's deliveries ([`crate::overhead::delivery`]).
pub const TEAM: &str = "T1";

/// What the cases look up in the seeded rows.
pub struct BenchData {
    /// The organization holding every run, and the Slack connection of [`TEAM`].
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

/// Seeds the bench's rows (every seeded event pending, so the claim cases always find work)
/// and connects the busiest organization to [`TEAM`], through the service as an app's install
/// would, which routes the team's deliveries to it.
pub async fn base(
    db: &impl ConnectionTrait,
    pool: &PgPool,
    pending_events: usize,
) -> Result<BenchData> {
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
    drop(conn);
    let organization_id = seeded.busiest_organization_id;
    connect_slack(db, &organization_id, TEAM).await?;
    Ok(BenchData {
        organization_id,
        session_tokens,
    })
}

/// Connects the organization to a Slack team with the service's helper, which also routes the
/// team's deliveries to it; returns the connection's id.
pub async fn connect_slack(
    db: &impl ConnectionTrait,
    organization_id: &str,
    team_id: &str,
) -> Result<Uuid> {
    let connection = integrations::upsert_slack_connection(
        db,
        SlackConnectionInput {
            organization_id: organization_id.into(),
            installed_by_user_id: None,
            team_id: team_id.into(),
            team_name: format!("Bench team {team_id}"),
            bot_user_id: Some("U_BOT".into()),
            access_token: EncryptedToken::from_ciphertext("v1:bench-ciphertext".into())?,
            scopes: vec!["app_mentions:read".into(), "chat:write".into()],
        },
    )
    .await
    .with_context(|| format!("connecting {organization_id} to Slack team {team_id}"))?;
    Ok(connection.id)
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
    agents::start_run(db, organization_id, run.id).await?;
    Ok(run.id)
}
