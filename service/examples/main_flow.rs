//! The main flow of the product through the service helpers: sign-up rows, an organization,
//! a Slack connection, a webhook delivery ingested (twice: the retry is a duplicate), claimed
//! by a worker, an agent run with two tool calls, finished, and the organization's runs listed.
//!
//! ```sh
//! cargo run -p migration -- up                 # once: the schema (local cluster unless DATABASE_URL is set)
//! cargo run -p service --example main_flow
//! ```

use std::{path::Path, process::ExitCode};

use entity::enums::TriggerSource;
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;
use service::{
    EncryptedToken, Settings, agents,
    agents::{NewRunInput, NewToolCallInput, TokenCounts, ToolCallOutcome},
    events::{self, Ingested, SlackDelivery, SlackEvents},
    integrations::{self, SlackConnectionInput},
    organizations::{self, NewOrganizationInput},
};

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
    // The environment as every service reads it (DB_POOLER, DATABASE_REPLICA_URL, DB_*), else
    // the local cluster.
    let settings = Settings::from_env()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let topology = dev_servers::topology_or_local(&workspace, &settings)?;
    let db = service::connect_with(&topology, &settings.pool).await?;
    let run_id = uuid::Uuid::new_v4().simple().to_string();

    // Everything below happens in one transaction, rolled back at the end, so the example
    // leaves no rows behind: every helper takes a transaction as well as a pool.
    let txn = db.begin().await?;

    // 1. The rows Better Auth writes at sign-up.
    let user_id = format!("user_{run_id}");
    txn.execute_unprepared(&format!(
        "INSERT INTO users (id, name, email) VALUES ('{user_id}', 'Ada', 'ada+{run_id}@example.com')"
    ))
    .await?;

    // 2. An organization with Ada as its owner.
    let (org, _) = organizations::create_organization(
        &txn,
        NewOrganizationInput {
            name: "Acme".into(),
            slug: format!("acme-{run_id}"),
            logo: None,
            metadata: None,
        },
        &user_id,
    )
    .await?;

    // 3. Its Slack workspace; the caller encrypted the bot token.
    let slack = integrations::upsert_slack_connection(
        &txn,
        SlackConnectionInput {
            organization_id: org.id.clone(),
            installed_by_user_id: Some(user_id.clone()),
            team_id: format!("T{run_id}"),
            team_name: "Acme".into(),
            bot_user_id: Some("U_BOT".into()),
            access_token: EncryptedToken::from_ciphertext("v1:ciphertext-from-your-kms".into())?,
            scopes: vec!["app_mentions:read".into(), "chat:write".into()],
        },
    )
    .await?;

    // 4. A mention arrives; Slack retries it; the retry is a duplicate.
    let delivery = SlackDelivery {
        event_id: format!("Ev{run_id}"),
        event_type: "app_mention".into(),
        team_id: slack.team_id.clone(),
        channel_id: Some("C1".into()),
        slack_user_id: Some("U1".into()),
        payload: json!({ "text": "<@U_BOT> triage the open bugs" }),
    };
    let first = events::ingest::<SlackEvents>(&txn, delivery.clone()).await?;
    let retry = events::ingest::<SlackEvents>(&txn, delivery).await?;
    println!("ingest: {first:?}, retry: {retry:?}");
    // The connection's route sent it to the organization.
    let Ingested::Inserted {
        id: event_id,
        organization_id,
    } = first
    else {
        anyhow::bail!("the first delivery should have been new")
    };
    anyhow::ensure!(organization_id == org.id, "routed to {organization_id}");

    // 5. A worker claims it (for the organization its notification named) and starts a run.
    let claimed = events::claim::<SlackEvents>(&txn, &org.id, 10).await?;
    println!("claimed {} event(s)", claimed.len());
    let run = agents::create_run(
        &txn,
        NewRunInput {
            organization_id: org.id.clone(),
            user_id: Some(user_id.clone()),
            trigger_source: TriggerSource::Slack,
            slack_event_id: Some(event_id),
            linear_event_id: None,
            model: "claude-sonnet".into(),
            input: json!({ "prompt": "triage the open bugs" }),
        },
    )
    .await?;
    agents::start_run(&txn, &org.id, run.id).await?;

    // 6. Two tool calls, then the run finishes and the event is processed.
    for (tool, outcome) in [
        (
            "linear_search",
            ToolCallOutcome::Succeeded(json!({ "issues": 7 })),
        ),
        (
            "slack_post",
            ToolCallOutcome::Succeeded(json!({ "ts": "1700000000.0001" })),
        ),
    ] {
        let call = agents::append_tool_call(
            &txn,
            &org.id,
            run.id,
            NewToolCallInput {
                tool_name: tool.into(),
                tool_id: None,
                input: json!({}),
            },
        )
        .await?;
        agents::start_tool_call(&txn, &org.id, call.id).await?;
        agents::finish_tool_call(&txn, &org.id, call.id, outcome, 180).await?;
    }
    let tokens = TokenCounts {
        prompt_tokens: 1830,
        completion_tokens: 412,
    };
    let output = json!({ "summary": "7 bugs triaged" });
    agents::succeed_run(&txn, &org.id, run.id, output, tokens).await?;
    events::mark_processed::<SlackEvents>(&txn, &org.id, event_id).await?;

    // 7. What a dashboard shows.
    let (run, calls) = agents::run_with_tool_calls(&txn, &org.id, run.id).await?;
    println!("run {} {} with tool calls:", run.id, run.status);
    for call in &calls {
        println!(
            "  #{} {} {} ({} ms)",
            call.sequence,
            call.tool_name,
            call.status,
            call.duration_ms.unwrap_or(0)
        );
    }
    let page = agents::list_runs(&txn, &org.id, None, 20).await?;
    println!("{} run(s) in {}", page.items.len(), org.slug);

    txn.rollback().await?;
    Ok(())
}
