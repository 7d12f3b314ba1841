//! A column added to a table while services run (what an online migration does) breaks none of
//! the statements their connections have already prepared. sqlx keeps each statement prepared
//! on its connection, and PostgreSQL refuses to run a cached plan whose result type changed
//! (`0A000 cached plan must not change result type`): a helper that selected or returned `*`
//! would fail on every pooled connection of every running service until they were recycled.
//!
//! Every helper of `service` is called here, twice: the list of helpers is read from the
//! service's source (every `pub async fn` taking `db: &impl ConnectionTrait`), so a new helper
//! that this test does not call fails it, naming the helper.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Mutex,
    time::Duration,
};

use harness::{TestDb, fixtures};
use sea_orm::ConnectionTrait;
use serde_json::json;
use service::{
    EncryptedToken,
    agents::{self, NewRunInput, NewToolCallInput, TokenCounts, ToolCallOutcome},
    auth,
    events::{
        self, ClaimOptions, EventFilter, EventSource, LinearDelivery, LinearEvents, Release,
        Settle, SlackDelivery, SlackEvents,
    },
    integrations::{self, GithubInstallationInput, LinearConnectionInput, SlackConnectionInput},
    organizations::{self, NewOrganizationInput},
    tools::{self, ToolSpec, UserToolSettings},
    worker,
};

const ADD_A_COLUMN_TO_EVERY_TABLE: &str = "DO $$
    DECLARE t text;
    BEGIN
        FOR t IN SELECT tablename FROM pg_tables
                 WHERE schemaname = 'public' AND tablename <> 'seaql_migrations' LOOP
            EXECUTE format('ALTER TABLE %I ADD COLUMN added_later text', t);
        END LOOP;
    END $$";

/// The helpers called so far, by name.
static CALLED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Calls a helper and records its name (the last path segment before its generics and
/// arguments: `events::claim::<SlackEvents>(db, 3)` is `claim`).
macro_rules! helper {
    // A tuple, not a block, so temporaries in the arguments live to the end of the statement.
    ($call:expr) => {
        (record(stringify!($call)), $call).1
    };
}

fn record(call: &str) {
    CALLED.lock().unwrap().insert(helper_name(call).to_owned());
}

fn helper_name(call: &str) -> &str {
    let path = call.split('(').next().unwrap_or(call);
    let path = path.split("::<").next().unwrap_or(path);
    path.rsplit("::").next().unwrap_or(path).trim()
}

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

    let called = CALLED.lock().unwrap().clone();
    let missing: Vec<String> = service_helpers()
        .into_iter()
        .filter(|(name, _)| !called.contains(name))
        .map(|(name, file)| format!("`{name}` (service/{file})"))
        .collect();
    assert!(
        missing.is_empty(),
        "harness/tests/service_schema_changes.rs calls every helper of the service, and these \
         it does not call: {}. Add a call to each, wrapped in `helper!(...)`, in the \
         `*_helpers` function of its domain.",
        missing.join(", ")
    );
}

/// Calls each helper once, on rows of round `n` of its own.
async fn use_every_helper(db: &impl ConnectionTrait, n: u32) {
    auth_helpers(db, n).await;
    organization_helpers(db, n).await;
    tool_helpers(db, n).await;
    integration_helpers(db, n).await;
    event_helpers(db, n).await;
    worker_helpers(db, n).await;
    agent_helpers(db).await;
}

async fn auth_helpers(db: &impl ConnectionTrait, n: u32) {
    db.execute_unprepared(&format!(
        "INSERT INTO sessions (id, expires_at, token, user_id) VALUES
             ('sess_round_{n}', now() + interval '1 day', 'tok_round_{n}', '{owner}'),
             ('sess_gone_{n}', now() - interval '1 day', 'tok_gone_{n}', '{owner}');
         INSERT INTO verifications (id, identifier, value, expires_at) VALUES
             ('ver_round_{n}', 'round-{n}', 'code', now() + interval '1 hour'),
             ('ver_gone_{n}', 'gone-{n}', 'code', now() - interval '1 hour')",
        owner = fixtures::OWNER_ID
    ))
    .await
    .unwrap();
    let owner = helper!(auth::find_user(db, fixtures::OWNER_ID))
        .await
        .unwrap();
    assert!(owner.is_some());
    let by_email = helper!(auth::find_user_by_email(db, "owner@example.com"))
        .await
        .unwrap();
    assert!(by_email.is_some());
    let (_, accounts) = helper!(auth::user_with_accounts(db, fixtures::OWNER_ID))
        .await
        .unwrap();
    assert!(!accounts.is_empty());
    let session = helper!(auth::valid_session(db, &format!("tok_round_{n}")))
        .await
        .unwrap();
    assert!(session.is_some());
    let sessions = helper!(auth::list_sessions(db, fixtures::OWNER_ID))
        .await
        .unwrap();
    assert!(!sessions.is_empty());
    helper!(auth::revoke_session(
        db,
        fixtures::OWNER_ID,
        &format!("sess_round_{n}")
    ))
    .await
    .unwrap();
    helper!(auth::revoke_sessions(db, fixtures::OTHER_USER_ID, None))
        .await
        .unwrap();
    assert!(
        helper!(auth::delete_expired_sessions(db)).await.unwrap() >= 1,
        "this round's expired session"
    );
    assert!(
        helper!(auth::delete_expired_verifications(db))
            .await
            .unwrap()
            >= 1
    );
    helper!(auth::consume_verification(
        db,
        &format!("round-{n}"),
        "code"
    ))
    .await
    .unwrap();
}

async fn organization_helpers(db: &impl ConnectionTrait, n: u32) {
    let input = NewOrganizationInput {
        name: format!("Round {n}"),
        slug: format!("round-{n}"),
        logo: None,
        metadata: None,
    };
    let (org, _) = helper!(organizations::create_organization(
        db,
        input,
        fixtures::OWNER_ID
    ))
    .await
    .unwrap();
    let found = helper!(organizations::find_organization_by_slug(db, &org.slug))
        .await
        .unwrap();
    assert_eq!(found.map(|o| o.id), Some(org.id.clone()));
    let memberships = helper!(organizations::organizations_of_user(db, fixtures::OWNER_ID))
        .await
        .unwrap();
    assert!(!memberships.is_empty());
    let expires = chrono::Utc::now().fixed_offset() + chrono::Duration::days(1);
    let invite = |email: &'static str| {
        helper!(organizations::create_invitation(
            db,
            &org.id,
            email,
            None,
            fixtures::OWNER_ID,
            expires
        ))
    };
    let invitation = invite("other@example.com").await.unwrap();
    let pending = helper!(organizations::pending_invitations_for_email(
        db,
        "other@example.com"
    ))
    .await
    .unwrap();
    assert!(!pending.is_empty());
    helper!(organizations::accept_invitation(
        db,
        &org.id,
        &invitation.id,
        fixtures::OTHER_USER_ID
    ))
    .await
    .unwrap();
    helper!(organizations::change_role(
        db,
        &org.id,
        fixtures::OTHER_USER_ID,
        "admin"
    ))
    .await
    .unwrap();
    helper!(organizations::remove_member(
        db,
        &org.id,
        fixtures::OTHER_USER_ID
    ))
    .await
    .unwrap();
    helper!(organizations::add_member(
        db,
        &org.id,
        fixtures::OTHER_USER_ID,
        "member"
    ))
    .await
    .unwrap();
    let rejected = invite("rejects@example.com").await.unwrap();
    helper!(organizations::reject_invitation(db, &org.id, &rejected.id))
        .await
        .unwrap();
    let canceled = invite("cancels@example.com").await.unwrap();
    helper!(organizations::cancel_invitation(db, &org.id, &canceled.id))
        .await
        .unwrap();
    helper!(organizations::expire_overdue_invitations(db))
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
    let tool = helper!(tools::upsert_tools(db, &[spec]))
        .await
        .unwrap()
        .remove(0);
    helper!(tools::set_tool_enabled(db, &tool.name, false))
        .await
        .unwrap();
    let settings = UserToolSettings {
        enabled: Some(true),
        config: Some(json!({})),
    };
    helper!(tools::set_user_tool(
        db,
        fixtures::OWNER_ID,
        tool.id,
        settings
    ))
    .await
    .unwrap();
    let effective = helper!(tools::effective_tools(db, fixtures::OWNER_ID))
        .await
        .unwrap();
    assert!(!effective.is_empty());
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
    helper!(integrations::upsert_github_installation(db, installation))
        .await
        .unwrap();
    let found = helper!(integrations::find_github_installation(db, installation_id))
        .await
        .unwrap();
    assert!(found.is_some());
    helper!(integrations::suspend_github_installation(
        db,
        installation_id
    ))
    .await
    .unwrap();
    helper!(integrations::unsuspend_github_installation(
        db,
        installation_id
    ))
    .await
    .unwrap();
    helper!(integrations::remove_github_installation(
        db,
        installation_id
    ))
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
    let slack = helper!(integrations::upsert_slack_connection(db, slack))
        .await
        .unwrap();
    let active = helper!(integrations::active_slack_connection(db, &slack.team_id))
        .await
        .unwrap();
    assert_eq!(active.map(|c| c.id), Some(slack.id));
    helper!(integrations::deactivate_slack_connection(
        db,
        fixtures::ORG_ID,
        slack.id
    ))
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
    let linear = helper!(integrations::upsert_linear_connection(db, linear))
        .await
        .unwrap();
    let active = helper!(integrations::active_linear_connection(
        db,
        &linear.linear_organization_id
    ))
    .await
    .unwrap();
    assert_eq!(active.map(|c| c.id), Some(linear.id));
    helper!(integrations::deactivate_linear_connection(
        db,
        fixtures::ORG_ID,
        linear.id
    ))
    .await
    .unwrap();
}

fn slack_delivery(n: u32, i: u32) -> SlackDelivery {
    SlackDelivery {
        event_id: format!("EvRound{n}_{i}"),
        event_type: "message".into(),
        team_id: "T1".into(),
        channel_id: None,
        slack_user_id: None,
        payload: json!({ "i": i }),
    }
}

async fn event_helpers(db: &impl ConnectionTrait, n: u32) {
    let deliveries: Vec<_> = (0..3).map(|i| slack_delivery(n, i)).collect();
    helper!(events::ingest_batch::<SlackEvents>(db, &deliveries))
        .await
        .unwrap();
    let due = helper!(events::due_organizations::<SlackEvents>(db, 10))
        .await
        .unwrap();
    assert_eq!(
        due,
        [fixtures::ORG_ID],
        "team T1 is routed to the fixture's organization"
    );
    let org = fixtures::ORG_ID;
    // The fixture's own event is pending too: four due, this round's three among them.
    let claimed = helper!(events::claim::<SlackEvents>(db, org, 4))
        .await
        .unwrap();
    let claimed: Vec<_> = claimed
        .into_iter()
        .filter(|e| e.event_id.starts_with(&format!("EvRound{n}_")))
        .collect();
    assert_eq!(claimed.len(), 3, "this round's events, all due");
    helper!(events::mark_processed::<SlackEvents>(
        db,
        org,
        claimed[0].id
    ))
    .await
    .unwrap();
    helper!(events::mark_ignored::<SlackEvents>(db, org, claimed[1].id))
        .await
        .unwrap();
    helper!(events::mark_failed::<SlackEvents>(
        db,
        org,
        claimed[2].id,
        "no handler",
        1
    ))
    .await
    .unwrap();
    let found = helper!(events::find::<SlackEvents>(db, org, claimed[0].id))
        .await
        .unwrap();
    assert!(found.is_some());
    let listed = helper!(events::list::<SlackEvents>(
        db,
        org,
        &EventFilter::default(),
        None,
        10
    ))
    .await
    .unwrap();
    assert!(!listed.items.is_empty());

    // The worker's statements, on Linear's table: claim with a lease, extend it, settle,
    // release, requeue, and when the next one is due.
    let delivery = |i: u32| LinearDelivery {
        event_id: format!("delivery-round-{n}-{i}"),
        event_type: "Issue".into(),
        action: entity::enums::LinearEventAction::Create,
        linear_organization_id: "lin_1".into(),
        payload: json!({ "i": i }),
    };
    for i in 0..3 {
        helper!(events::ingest::<LinearEvents>(db, delivery(i)))
            .await
            .unwrap();
    }
    let options = ClaimOptions {
        lease: Duration::from_secs(60),
        ..ClaimOptions::new(10)
    };
    let rows = helper!(events::claim_with::<LinearEvents>(db, org, options))
        .await
        .unwrap();
    let claims: Vec<_> = rows
        .iter()
        .filter(|e| e.event_id.starts_with(&format!("delivery-round-{n}-")))
        .map(LinearEvents::claimed)
        .collect();
    assert_eq!(claims.len(), 3, "this round's Linear events");
    let extended = helper!(events::extend_leases::<LinearEvents>(
        db,
        org,
        &claims,
        Duration::from_secs(120)
    ))
    .await
    .unwrap();
    assert_eq!(extended.len(), 3);
    let settled = helper!(events::settle::<LinearEvents>(
        db,
        org,
        &[(claims[0], Settle::Processed)]
    ))
    .await
    .unwrap();
    assert_eq!(settled, vec![claims[0].id]);
    let released = helper!(events::release::<LinearEvents>(
        db,
        org,
        &claims[1..2],
        Release::NotStarted
    ))
    .await
    .unwrap();
    assert_eq!(released, 1);
    helper!(events::requeue_stuck::<LinearEvents>(
        db,
        Duration::ZERO,
        10
    ))
    .await
    .unwrap();
    helper!(events::next_due::<LinearEvents>(db)).await.unwrap();
}

async fn worker_helpers(db: &impl ConnectionTrait, n: u32) {
    db.execute_unprepared(&format!(
        "UPDATE slack_events SET created_at = now() - interval '30 days'
         WHERE event_id LIKE 'EvRound{n}\\_%' AND status <> 'pending'"
    ))
    .await
    .unwrap();
    let pruned = helper!(worker::prune::<SlackEvents>(
        db,
        fixtures::ORG_ID,
        Duration::from_secs(7 * 24 * 3600),
        100
    ))
    .await
    .unwrap();
    assert!(
        pruned >= 1,
        "this round's settled Slack events are old enough"
    );
    db.execute_unprepared(
        "UPDATE unrouted_events SET created_at = now() - interval '30 days' WHERE provider = 'slack'",
    )
    .await
    .unwrap();
    let pruned = helper!(worker::prune_unrouted::<SlackEvents>(
        db,
        Duration::from_secs(7 * 24 * 3600),
        100
    ))
    .await
    .unwrap();
    assert_eq!(
        pruned,
        n as u64 % 2,
        "the fixture's unrouted delivery, pruned in round 1"
    );
}

async fn agent_helpers(db: &impl ConnectionTrait) {
    let input = || NewRunInput {
        organization_id: fixtures::ORG_ID.to_owned(),
        user_id: None,
        trigger_source: entity::enums::TriggerSource::Api,
        slack_event_id: None,
        linear_event_id: None,
        model: "claude-sonnet".into(),
        input: json!({}),
    };
    let tokens = TokenCounts {
        prompt_tokens: 1,
        completion_tokens: 1,
    };
    let org = fixtures::ORG_ID;
    let run = helper!(agents::create_run(db, input())).await.unwrap();
    helper!(agents::start_run(db, org, run.id)).await.unwrap();
    let call = NewToolCallInput {
        tool_name: "search".into(),
        tool_id: None,
        input: json!({}),
    };
    let call = helper!(agents::append_tool_call(db, org, run.id, call))
        .await
        .unwrap();
    helper!(agents::start_tool_call(db, org, call.id))
        .await
        .unwrap();
    helper!(agents::finish_tool_call(
        db,
        org,
        call.id,
        ToolCallOutcome::Succeeded(json!({})),
        5
    ))
    .await
    .unwrap();
    helper!(agents::succeed_run(db, org, run.id, json!({}), tokens))
        .await
        .unwrap();
    let (_, calls) = helper!(agents::run_with_tool_calls(db, org, run.id))
        .await
        .unwrap();
    assert_eq!(calls.len(), 1);

    let failing = agents::create_run(db, input()).await.unwrap();
    agents::start_run(db, org, failing.id).await.unwrap();
    helper!(agents::fail_run(
        db,
        org,
        failing.id,
        "model refused",
        tokens
    ))
    .await
    .unwrap();
    let cancelled = agents::create_run(db, input()).await.unwrap();
    helper!(agents::cancel_run(db, org, cancelled.id))
        .await
        .unwrap();

    let runs = helper!(agents::list_runs(db, fixtures::ORG_ID, None, 10))
        .await
        .unwrap();
    assert!(runs.items.iter().any(|r| r.id == run.id));
    let now = chrono::Utc::now().fixed_offset();
    let usage = helper!(agents::token_usage(
        db,
        fixtures::ORG_ID,
        now - chrono::Duration::hours(1),
        now + chrono::Duration::hours(1)
    ))
    .await
    .unwrap();
    assert!(usage.prompt_tokens >= 2, "{usage:?}");
}

/// Every helper of the service: each `pub async fn` in `service/src` whose first parameter is
/// a connection (`db: &impl ConnectionTrait`), by name, with the file it is in.
fn service_helpers() -> Vec<(String, String)> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../service/src");
    let mut helpers = Vec::new();
    for file in rust_files(&src) {
        let text = std::fs::read_to_string(&file).unwrap();
        let relative = file.strip_prefix(&src).unwrap().display().to_string();
        for name in helpers_in(&text) {
            helpers.push((name, format!("src/{relative}")));
        }
    }
    let names: BTreeSet<&String> = helpers.iter().map(|(name, _)| name).collect();
    assert_eq!(
        names.len(),
        helpers.len(),
        "two helpers share a name; this test tells helpers apart by name: {helpers:?}"
    );
    assert!(
        helpers.len() > 50,
        "the scan found the helpers: {helpers:?}"
    );
    helpers
}

fn rust_files(folder: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// The names of the `pub async fn`s in `text` whose first parameter is `db: &impl
/// ConnectionTrait` (generics and line breaks allowed).
fn helpers_in(text: &str) -> Vec<String> {
    text.match_indices("pub async fn ")
        .filter_map(|(at, found)| {
            let rest = &text[at + found.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let parameters = &rest[rest.find('(')? + 1..];
            let first: String = parameters
                .split([',', ')'])
                .next()?
                .split_whitespace()
                .collect();
            (first == "db:&implConnectionTrait").then_some(name)
        })
        .collect()
}

#[test]
fn the_scan_finds_helpers_with_generics_and_line_breaks_and_nothing_else() {
    let text = "pub async fn one(db: &impl ConnectionTrait) {}\n\
                pub async fn two<S: EventSource>(\n    db: &impl ConnectionTrait,\n    x: u8,\n) {}\n\
                pub async fn connect() -> Db {}\n\
                pub async fn close(self) {}\n\
                pub async fn pool(url: &DatabaseUrl, db: &impl ConnectionTrait) {}\n\
                async fn private(db: &impl ConnectionTrait) {}";
    assert_eq!(helpers_in(text), ["one", "two"]);
    assert_eq!(
        helper_name("events::claim::<SlackEvents>(db, org, 3)"),
        "claim"
    );
    assert_eq!(helper_name("agents::create_run(db, input())"), "create_run");
    assert_eq!(helper_name("worker::prune::<SlackEvents>(db, x)"), "prune");
}
