//! The data every case reads: users with sessions, an organization with a history of runs,
//! and a pool of pending events.

use anyhow::Result;
use entity::enums::TriggerSource;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use service::{
    agents::{self, NewRunInput},
    events::{self, SlackEvents},
};
use uuid::Uuid;

use crate::overhead::delivery;

pub async fn base(db: &DatabaseConnection, pending_events: usize) -> Result<()> {
    db.execute_unprepared(
        "INSERT INTO users (id, name, email)
         SELECT 'user_' || g, 'User ' || g, 'user' || g || '@example.com' FROM generate_series(0, 999) g;
         INSERT INTO sessions (id, expires_at, token, user_id)
         SELECT 'sess_' || g, now() + interval '7 days', 'tok_' || g, 'user_' || g FROM generate_series(0, 999) g;
         INSERT INTO organizations (id, name, slug) VALUES ('org_bench', 'Bench', 'bench');
         INSERT INTO agent_runs (organization_id, user_id, trigger_source, model, created_at)
         SELECT 'org_bench', 'user_' || (g % 1000), 'api', 'claude-sonnet', now() - g * interval '1 second'
         FROM generate_series(1, 2000) g;
         ANALYZE;",
    )
    .await?;
    for start in (0..pending_events).step_by(1000) {
        let batch: Vec<_> = (start..(start + 1000).min(pending_events))
            .map(delivery)
            .collect();
        events::ingest_batch::<SlackEvents>(db, &batch).await?;
    }
    db.execute_unprepared("ANALYZE slack_events").await?;
    Ok(())
}

pub async fn running_run(db: &DatabaseConnection) -> Result<Uuid> {
    let run = agents::create_run(
        db,
        NewRunInput {
            organization_id: "org_bench".into(),
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
