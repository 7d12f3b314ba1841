//! A service running the event worker: an organization connects a Slack team, twenty
//! deliveries from that team are ingested (routed to the organization), a worker woken by
//! their notification handles them four at a time (some ignored, some failing once and retried
//! after a backoff), and the worker shuts down once all are done, or after 30 s at most.
//!
//! ```sh
//! cargo run -p migration -- up                 # once: the schema (local cluster unless DATABASE_URL is set)
//! cargo run -p service --example worker
//! ```
//!
//! With `DATABASE_URL` set, the listener goes where the topology says (`DATABASE_DIRECT_URL`
//! behind a transaction-mode pooler). The worker handles every pending Slack event of the
//! database, not only the example's; the example deletes its own rows (its organization and
//! user) at the end.

use std::{
    path::Path,
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use entity::SlackEvent;
use serde_json::json;
use service::{
    EncryptedToken, Settings,
    events::{self, SlackDelivery, SlackEvents},
    integrations::{self, SlackConnectionInput},
    organizations::{self, NewOrganizationInput},
    worker::{Backoff, CancellationToken, Outcome, Worker, WorkerConfig},
};

const EVENTS: usize = 20;

#[derive(Debug, thiserror::Error)]
#[error("the agent backend timed out")]
struct Timeout;

/// A wrong URL or a server that is down is one line naming it, whatever `RUST_BACKTRACE` says.
#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "service=info".into()),
        )
        .init();
    // The environment as every service reads it (DB_POOLER, DATABASE_DIRECT_URL for the
    // listener, DB_*), else the local cluster.
    let settings = Settings::from_env()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let topology = dev_servers::topology_or_local(&workspace, &settings)?;
    let db = service::connect_with(&topology, &settings.pool).await?;
    let mut config = WorkerConfig::for_topology(&topology, &settings.pool)?;
    config.concurrency = 4;
    config.retry = Backoff {
        base: Duration::from_millis(200),
        ..Backoff::RETRIES
    };

    let run = uuid::Uuid::new_v4().simple().to_string();
    let prefix = format!("EvExample-{run}-");
    let team_id = format!("T_EXAMPLE_{run}");
    // The organization whose Slack team the deliveries come from: its connection routes them.
    let user_id = format!("user_example_{run}");
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!(
            "INSERT INTO users (id, name, email) VALUES ('{user_id}', 'Example', '{user_id}@example.com')"
        ),
    )
    .await?;
    let (org, _) = organizations::create_organization(
        &db,
        NewOrganizationInput {
            name: "Example".into(),
            slug: format!("example-{run}"),
            logo: None,
            metadata: None,
        },
        &user_id,
    )
    .await?;
    integrations::upsert_slack_connection(
        &db,
        SlackConnectionInput {
            organization_id: org.id.clone(),
            installed_by_user_id: Some(user_id.clone()),
            team_id: team_id.clone(),
            team_name: "Example".into(),
            bot_user_id: None,
            access_token: EncryptedToken::from_ciphertext("v1:ciphertext-from-your-kms".into())?,
            scopes: vec!["app_mentions:read".into()],
        },
    )
    .await?;
    let done = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let handler = {
        let (prefix, done, stop) = (prefix.clone(), done.clone(), stop.clone());
        move |event: SlackEvent| {
            let (prefix, done, stop) = (prefix.clone(), done.clone(), stop.clone());
            async move {
                let n: usize = event
                    .event_id
                    .strip_prefix(&prefix)
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX);
                if n % 7 == 3 && event.attempts == 1 {
                    println!(
                        "{}: attempt 1 fails, retried after a backoff",
                        event.event_id
                    );
                    return Err(Timeout);
                }
                let outcome = if n.is_multiple_of(5) {
                    Outcome::Ignored
                } else {
                    Outcome::Processed
                };
                println!(
                    "{}: {:?} on attempt {}",
                    event.event_id, outcome, event.attempts
                );
                if n != usize::MAX && done.fetch_add(1, Ordering::SeqCst) + 1 == EVENTS {
                    stop.cancel();
                }
                Ok(outcome)
            }
        }
    };
    // Listening before anything is ingested: a wrong listener URL fails here.
    let worker = Worker::<SlackEvents, _>::connect(db.clone(), handler, config).await?;
    let running = tokio::spawn(worker.run(stop.clone()));

    // The webhook side: one batch, one statement, one notification.
    let deliveries: Vec<SlackDelivery> = (0..EVENTS)
        .map(|n| SlackDelivery {
            event_id: format!("{prefix}{n}"),
            event_type: "app_mention".into(),
            team_id: team_id.clone(),
            channel_id: Some("C_EXAMPLE".into()),
            slack_user_id: Some("U_EXAMPLE".into()),
            payload: json!({ "type": "event_callback", "event": { "text": format!("hello {n}") } }),
        })
        .collect();
    let ingested = events::ingest_batch::<SlackEvents>(&db, &deliveries).await?;
    println!("ingested {} events", ingested.inserted.len());

    // Bounded: stop after 30 s whatever happened.
    let deadline = tokio::time::sleep(Duration::from_secs(30));
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = deadline => {
            println!("not done after 30 s; shutting down");
            stop.cancel();
        }
    }
    let summary = running.await?;
    println!("{summary:?}");

    // Its events, connection, route and membership go with the organization.
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!("DELETE FROM organizations WHERE id = '{}'", org.id),
    )
    .await?;
    sea_orm::ConnectionTrait::execute_unprepared(
        &db,
        &format!("DELETE FROM users WHERE id = '{user_id}'"),
    )
    .await?;
    db.close().await?;
    anyhow::ensure!(
        done.load(Ordering::SeqCst) == EVENTS,
        "only {} of {EVENTS} events were handled",
        done.load(Ordering::SeqCst)
    );
    Ok(())
}
