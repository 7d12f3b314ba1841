//! A column added to a table while services run (what an online migration does) breaks none of
//! the statements their connections have already prepared. sqlx keeps each statement prepared
//! on its connection, and PostgreSQL refuses to run a cached plan whose result type changed
//! (`0A000 cached plan must not change result type`): a helper that selected or returned `*`
//! would fail on every pooled connection of every running service until they were recycled.

use harness::{TestDb, fixtures};
use sea_orm::ConnectionTrait;
use serde_json::json;
use service::{
    EncryptedToken,
    agents::{self, NewRunInput, NewToolCallInput, TokenCounts, ToolCallOutcome},
    events::{self, EventFilter, SlackDelivery, SlackEvents},
    integrations::{self, GithubInstallationInput, LinearConnectionInput, SlackConnectionInput},
    organizations::{self, NewOrganizationInput},
    tools::{self, ToolSpec, UserToolSettings},
};

const ADD_A_COLUMN_TO_EVERY_TABLE: &str = "DO $$
    DECLARE t text;
    BEGIN
        FOR t IN SELECT tablename FROM pg_tables
                 WHERE schemaname = 'public' AND tablename <> 'seaql_migrations' LOOP
            EXECUTE format('ALTER TABLE %I ADD COLUMN added_later text', t);
        END LOOP;
    END $$";

#[tokio::test]
async fn every_helper_keeps_working_on_its_connection_after_a_column_is_added() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    // One connection, so the second round reuses every statement the first one prepared.
    let service = harness::connect(db.url(), 1).await;
    use_every_helper(&service, 1).await;

    db.conn()
        .execute_unprepared(ADD_A_COLUMN_TO_EVERY_TABLE)
        .await
        .unwrap();
    use_every_helper(&service, 2).await;
}

/// Calls each helper that reads whole rows once, on rows of round `n` of its own.
async fn use_every_helper(db: &impl ConnectionTrait, n: u32) {
    organization_helpers(db, n).await;
    tool_helpers(db, n).await;
    integration_helpers(db, n).await;
    event_helpers(db, n).await;
    agent_helpers(db).await;
}

async fn organization_helpers(db: &impl ConnectionTrait, n: u32) {
    let input = NewOrganizationInput {
        name: format!("Round {n}"),
        slug: format!("round-{n}"),
        logo: None,
        metadata: None,
    };
    let (org, _) = organizations::create_organization(db, input, fixtures::OWNER_ID)
        .await
        .unwrap();
    let expires = chrono::Utc::now().fixed_offset() + chrono::Duration::days(1);
    let invite = |email: &'static str| {
        organizations::create_invitation(db, &org.id, email, None, fixtures::OWNER_ID, expires)
    };
    let invitation = invite("other@example.com").await.unwrap();
    organizations::accept_invitation(db, &invitation.id, fixtures::OTHER_USER_ID)
        .await
        .unwrap();
    organizations::change_role(db, &org.id, fixtures::OTHER_USER_ID, "admin")
        .await
        .unwrap();
    organizations::remove_member(db, &org.id, fixtures::OTHER_USER_ID)
        .await
        .unwrap();
    organizations::add_member(db, &org.id, fixtures::OTHER_USER_ID, "member")
        .await
        .unwrap();
    let rejected = invite("rejects@example.com").await.unwrap();
    organizations::reject_invitation(db, &rejected.id)
        .await
        .unwrap();
}

async fn tool_helpers(db: &impl ConnectionTrait, n: u32) {
    let spec = ToolSpec {
        name: format!("tool_{n}"),
        display_name: format!("Tool {n}"),
        description: "a tool".into(),
        provider: entity::enums::ToolProvider::Github,
        input_schema: json!({ "type": "object" }),
        tags: vec!["round".into()],
    };
    let tool = tools::upsert_tools(db, &[spec]).await.unwrap().remove(0);
    tools::set_tool_enabled(db, &tool.name, false)
        .await
        .unwrap();
    let settings = UserToolSettings {
        enabled: Some(true),
        config: Some(json!({})),
    };
    tools::set_user_tool(db, fixtures::OWNER_ID, tool.id, settings)
        .await
        .unwrap();
}

async fn integration_helpers(db: &impl ConnectionTrait, n: u32) {
    let installation_id = 1000 + i64::from(n);
    let installation = GithubInstallationInput {
        organization_id: fixtures::ORG_ID.to_owned(),
        installation_id,
        account_login: format!("acme-{n}"),
        account_type: entity::enums::GithubAccountType::Organization,
        repository_selection: entity::enums::RepositorySelection::All,
        permissions: json!({}),
        events: vec![],
        installed_by_user_id: None,
    };
    integrations::upsert_github_installation(db, installation)
        .await
        .unwrap();
    let found = integrations::find_github_installation(db, installation_id)
        .await
        .unwrap();
    assert!(found.is_some());
    integrations::suspend_github_installation(db, installation_id)
        .await
        .unwrap();
    integrations::unsuspend_github_installation(db, installation_id)
        .await
        .unwrap();
    integrations::remove_github_installation(db, installation_id)
        .await
        .unwrap();

    let token = || EncryptedToken::from_ciphertext("v1:sealed".into()).unwrap();
    let slack = SlackConnectionInput {
        organization_id: fixtures::ORG_ID.to_owned(),
        installed_by_user_id: None,
        team_id: format!("T_ROUND_{n}"),
        team_name: "Round".into(),
        bot_user_id: None,
        access_token: token(),
        scopes: vec![],
    };
    let slack = integrations::upsert_slack_connection(db, slack)
        .await
        .unwrap();
    let active = integrations::active_slack_connection(db, &slack.team_id)
        .await
        .unwrap();
    assert_eq!(active.map(|c| c.id), Some(slack.id));
    integrations::deactivate_slack_connection(db, slack.id)
        .await
        .unwrap();
    let linear = LinearConnectionInput {
        organization_id: fixtures::ORG_ID.to_owned(),
        installed_by_user_id: None,
        linear_organization_id: format!("lin_round_{n}"),
        linear_organization_name: "Round".into(),
        access_token: token(),
        refresh_token: None,
        token_expires_at: None,
        scopes: vec![],
    };
    let linear = integrations::upsert_linear_connection(db, linear)
        .await
        .unwrap();
    let active = integrations::active_linear_connection(db, &linear.linear_organization_id)
        .await
        .unwrap();
    assert_eq!(active.map(|c| c.id), Some(linear.id));
    integrations::deactivate_linear_connection(db, linear.id)
        .await
        .unwrap();
}

async fn event_helpers(db: &impl ConnectionTrait, n: u32) {
    let deliveries: Vec<_> = (0..3)
        .map(|i| SlackDelivery {
            event_id: format!("EvRound{n}_{i}"),
            event_type: "message".into(),
            team_id: "T1".into(),
            channel_id: None,
            slack_user_id: None,
            slack_connection_id: None,
            payload: json!({ "i": i }),
        })
        .collect();
    events::ingest_batch::<SlackEvents>(db, &deliveries)
        .await
        .unwrap();
    let claimed = events::claim::<SlackEvents>(db, 3).await.unwrap();
    assert_eq!(claimed.len(), 3, "this round's events, all due");
    events::mark_processed::<SlackEvents>(db, claimed[0].id)
        .await
        .unwrap();
    events::mark_ignored::<SlackEvents>(db, claimed[1].id)
        .await
        .unwrap();
    events::mark_failed::<SlackEvents>(db, claimed[2].id, "no handler", 1)
        .await
        .unwrap();
    let found = events::find::<SlackEvents>(db, claimed[0].id)
        .await
        .unwrap();
    assert!(found.is_some());
    let listed = events::list::<SlackEvents>(db, &EventFilter::default(), None, 10)
        .await
        .unwrap();
    assert!(!listed.items.is_empty());
}

async fn agent_helpers(db: &impl ConnectionTrait) {
    let input = NewRunInput {
        organization_id: fixtures::ORG_ID.to_owned(),
        user_id: None,
        trigger_source: entity::enums::TriggerSource::Api,
        slack_event_id: None,
        linear_event_id: None,
        model: "claude-sonnet".into(),
        input: json!({}),
    };
    let run = agents::create_run(db, input).await.unwrap();
    agents::start_run(db, run.id).await.unwrap();
    let call = NewToolCallInput {
        tool_name: "search".into(),
        tool_id: None,
        input: json!({}),
    };
    let call = agents::append_tool_call(db, run.id, call).await.unwrap();
    agents::start_tool_call(db, call.id).await.unwrap();
    agents::finish_tool_call(db, call.id, ToolCallOutcome::Succeeded(json!({})), 5)
        .await
        .unwrap();
    let tokens = TokenCounts {
        prompt_tokens: 1,
        completion_tokens: 1,
    };
    agents::succeed_run(db, run.id, json!({}), tokens)
        .await
        .unwrap();
    let runs = agents::list_runs(db, fixtures::ORG_ID, None, 10)
        .await
        .unwrap();
    assert!(runs.items.iter().any(|r| r.id == run.id));
}
