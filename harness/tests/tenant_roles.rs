//! The roles that work across organizations (issue 22), each connected as a login member of it
//! as production connects: the webhook receiver (`app_ingest`) stores deliveries and reads back
//! only their keys; the event worker (`app_worker`) scans, claims, requeues and prunes every
//! organization's events, and can change nothing but their status, lease and outcome;
//! the directory helpers run as Better Auth's role (`app_auth`), and find nothing as the
//! application without an organization.

use std::time::Duration;

use entity::{SlackEvent, enums::LinearEventAction};
use harness::{TestDb, connect, fixtures, scalar};
use migration::tenancy::{APP_ROLE, AUTH_ROLE, INGEST_ROLE, WORKER_ROLE};
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};
use serde_json::json;
use service::{
    Error, Pool,
    events::{self, LinearDelivery, LinearEvents, SlackDelivery, SlackEvents},
    organizations::{self, NewOrganizationInput},
    sqlstate, tenant,
    worker::{self, CancellationToken, Outcome, Wakeup, Worker, WorkerConfig},
};
use tokio::time::Instant;

const A: &str = "org_roles_a";
const B: &str = "org_roles_b";

fn slack(event_id: &str, team_id: &str) -> SlackDelivery {
    SlackDelivery {
        event_id: event_id.to_owned(),
        event_type: "app_mention".to_owned(),
        team_id: team_id.to_owned(),
        channel_id: None,
        slack_user_id: None,
        payload: json!({ "event": event_id }),
    }
}

/// Organizations A (team `TA`) and B (team `TB`), routed.
async fn two_organizations() -> TestDb {
    let db = TestDb::migrated().await;
    for (organization, team) in [(A, "TA"), (B, "TB")] {
        fixtures::organization_with_teams(db.conn(), organization, team)
            .await
            .unwrap();
    }
    db
}

fn denied(err: &DbErr) -> bool {
    sqlstate(err).as_deref() == Some("42501")
}

fn refused(err: &Error) -> bool {
    matches!(err, Error::Database(e) if denied(e))
}

/// What `sql` did on `pool`, or why it failed, in a transaction rolled back.
async fn attempt(pool: &Pool, sql: &str) -> Result<u64, DbErr> {
    let txn = pool.begin().await?;
    let done = txn.execute_unprepared(sql).await.map(|r| r.rows_affected());
    txn.rollback().await?;
    done
}

async fn assert_denied(pool: &Pool, role: &str, statements: &[&str]) {
    for sql in statements {
        match attempt(pool, sql).await {
            Err(err) if denied(&err) => {}
            other => panic!("as {role}, `{sql}` was not refused with 42501: {other:?}"),
        }
    }
}

#[tokio::test]
async fn the_ingest_role_stores_deliveries_and_reads_back_only_their_keys() {
    let db = two_organizations().await;
    let ingest = connect(&db.login_as(INGEST_ROLE).await, 1).await;

    let batch = [
        slack("EvA", "TA"),
        slack("EvB", "TB"),
        slack("EvX", "T_NOBODY"),
    ];
    let stored = events::ingest_batch::<SlackEvents>(&ingest, &batch)
        .await
        .unwrap();
    let mut owners: Vec<_> = stored
        .inserted
        .iter()
        .map(|e| (e.event_id.as_str(), e.organization_id.as_str()))
        .collect();
    owners.sort_unstable();
    assert_eq!(owners, [("EvA", A), ("EvB", B)]);
    assert_eq!(
        stored.unrouted.len(),
        1,
        "the unknown team's delivery is kept"
    );
    let again = events::ingest_batch::<SlackEvents>(&ingest, &batch)
        .await
        .unwrap();
    assert_eq!(again.duplicates, 3, "a redelivery is recognised as one");
    let linear = LinearDelivery {
        event_id: "d1".to_owned(),
        event_type: "Issue".to_owned(),
        action: LinearEventAction::Create,
        linear_organization_id: "lin_TB".to_owned(),
        payload: json!({}),
    };
    assert!(matches!(
        events::ingest::<LinearEvents>(&ingest, linear).await.unwrap(),
        events::Ingested::Inserted { organization_id, .. } if organization_id == B
    ));
    assert_eq!(
        scalar(
            db.conn(),
            &format!("SELECT count(*) FROM slack_events WHERE organization_id IN ('{A}', '{B}')")
        )
        .await,
        2
    );

    assert_denied(
        &ingest,
        INGEST_ROLE,
        &[
            "SELECT * FROM agent_runs",
            "SELECT * FROM organizations",
            "SELECT * FROM slack_connections",
            "SELECT payload FROM slack_events",
            "SELECT payload FROM linear_events",
            // Filed under B without naming one of B's connections.
            "INSERT INTO slack_events (organization_id, event_id, event_type, team_id, payload)
             VALUES ('org_roles_b', 'EvForged', 'message', 'TB', '{}')",
            "UPDATE slack_events SET status = 'processed'",
            "DELETE FROM slack_events",
            "DELETE FROM unrouted_events",
            "INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id)
             SELECT 'slack', 'T_MINE', organization_id, connection_id FROM webhook_routes LIMIT 1",
        ],
    )
    .await;
}

#[tokio::test]
async fn the_application_ingests_only_its_own_organizations_deliveries() {
    let db = two_organizations().await;
    let app = connect(&db.login_as(APP_ROLE).await, 1).await;

    let txn = tenant::begin(&app, B).await.unwrap();
    let err = events::ingest::<SlackEvents>(&txn, slack("EvA", "TA"))
        .await
        .unwrap_err();
    assert!(refused(&err), "as B, A's delivery is refused: {err:?}");
    txn.rollback().await.unwrap();

    let err = events::ingest::<SlackEvents>(&app, slack("EvA", "TA"))
        .await
        .unwrap_err();
    assert!(refused(&err), "with no organization, refused: {err:?}");

    let txn = tenant::begin(&app, A).await.unwrap();
    let mine = events::ingest::<SlackEvents>(&txn, slack("EvA", "TA"))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    assert!(
        matches!(mine, events::Ingested::Inserted { organization_id, .. } if organization_id == A)
    );
}

/// Polls (as the owner) until `sql` counts `expected`, or panics after 30 s.
async fn until(db: &TestDb, sql: &str, expected: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = scalar(db.conn(), sql).await;
        if n == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{n}, not {expected}: {sql}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_worker_role_moves_every_organizations_events_and_reads_nothing_else() {
    let db = two_organizations().await;
    let mut batch: Vec<_> = (0..3)
        .flat_map(|n| {
            [
                slack(&format!("EvA{n}"), "TA"),
                slack(&format!("EvB{n}"), "TB"),
            ]
        })
        .collect();
    batch.push(slack("EvNobody", "T_NOBODY"));
    events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO users (id, name, email) VALUES ('u_roles', 'U', 'u@example.com');
             INSERT INTO agent_runs (organization_id, user_id, trigger_source, slack_event_id, model)
             SELECT '{A}', 'u_roles', 'slack', id, 'm' FROM slack_events WHERE event_id = 'EvA0'"
        ))
        .await
        .unwrap();
    let worker_pool = connect(&db.login_as(WORKER_ROLE).await, 4).await;

    // The real worker, connected as the worker role, handles both organizations' events.
    let handler = |_: SlackEvent| async { Ok::<_, std::convert::Infallible>(Outcome::Processed) };
    let config = WorkerConfig {
        poll_interval: Duration::from_millis(50),
        ..WorkerConfig::new(Wakeup::PollOnly)
    };
    let stop = CancellationToken::new();
    let run = tokio::spawn(
        Worker::<SlackEvents, _>::new(worker_pool.clone(), handler, config)
            .unwrap()
            .run(stop.clone()),
    );
    until(
        &db,
        "SELECT count(*) FROM slack_events WHERE status = 'processed'",
        6,
    )
    .await;
    stop.cancel();
    assert_eq!(run.await.unwrap().processed, 6);

    // A lease its worker never gave back, in B: requeued across organizations.
    db.conn()
        .execute_unprepared(&format!(
            "UPDATE slack_events SET status = 'processing', updated_at = now() - interval '1 hour'
             WHERE organization_id = '{B}' AND event_id = 'EvB0'"
        ))
        .await
        .unwrap();
    let requeued = events::requeue_stuck::<SlackEvents>(&worker_pool, Duration::from_secs(60), 5)
        .await
        .unwrap();
    assert_eq!(requeued, 1);

    // The worker's own retention, keeping next to nothing: every organization's finished events and
    // the unrouted delivery go, and the run that named one of A's events is unlinked.
    let config = WorkerConfig {
        poll_interval: Duration::from_millis(50),
        retention: Some(worker::Retention {
            keep_for: Duration::from_millis(1),
            every: Duration::from_millis(100),
        }),
        ..WorkerConfig::new(Wakeup::PollOnly)
    };
    let stop = CancellationToken::new();
    let run = tokio::spawn(
        Worker::<SlackEvents, _>::new(worker_pool.clone(), handler, config)
            .unwrap()
            .run(stop.clone()),
    );
    until(
        &db,
        "SELECT (SELECT count(*) FROM slack_events) + (SELECT count(*) FROM unrouted_events)",
        0,
    )
    .await;
    stop.cancel();
    assert_eq!(run.await.unwrap().processed, 1, "the requeued event");
    assert_eq!(
        scalar(
            db.conn(),
            &format!(
                "SELECT count(*) FROM agent_runs WHERE organization_id = '{A}' AND slack_event_id IS NULL"
            )
        )
        .await,
        1
    );

    // The run's event links and keys are all it may read of agent_runs, and nothing else of
    // anything else.
    attempt(
        &worker_pool,
        "SELECT id, organization_id, slack_event_id, linear_event_id FROM agent_runs",
    )
    .await
    .unwrap();
    assert_denied(
        &worker_pool,
        WORKER_ROLE,
        &[
            "SELECT * FROM agent_runs",
            "UPDATE agent_runs SET model = 'other'",
            "SELECT name FROM organizations",
            "UPDATE slack_events SET payload = '{}'",
            "UPDATE slack_events SET organization_id = organization_id",
            "UPDATE linear_events SET linear_connection_id = NULL",
            "DELETE FROM agent_runs",
            "SELECT * FROM tool_calls",
            "SELECT * FROM members",
            "SELECT * FROM slack_connections",
            "SELECT * FROM webhook_routes",
            "INSERT INTO slack_events (organization_id, slack_connection_id, event_id, event_type, team_id, payload)
             SELECT organization_id, slack_connection_id, 'EvForged', event_type, team_id, payload
             FROM slack_events LIMIT 1",
        ],
    )
    .await;
}

#[tokio::test]
async fn the_directory_helpers_run_as_the_auth_role_and_find_nothing_as_the_application() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO invitations (id, organization_id, email, role, expires_at, inviter_id) VALUES
                 ('inv_other', '{other}', 'NEW@example.com', 'member', now() + interval '7 days', '{user}'),
                 ('inv_late_1', '{acme}', 'late@example.com', 'member', now() - interval '1 day', '{owner}'),
                 ('inv_late_2', '{other}', 'late@example.com', 'member', now() - interval '1 day', '{user}')",
            acme = fixtures::ORG_ID,
            other = fixtures::OTHER_ORG_ID,
            owner = fixtures::OWNER_ID,
            user = fixtures::OTHER_USER_ID,
        ))
        .await
        .unwrap();
    let auth = connect(&db.login_as(AUTH_ROLE).await, 1).await;
    let app = connect(&db.login_as(APP_ROLE).await, 1).await;

    let found = organizations::find_organization_by_slug(&auth, "other")
        .await
        .unwrap();
    assert_eq!(found.map(|o| o.id).as_deref(), Some(fixtures::OTHER_ORG_ID));
    let memberships = organizations::organizations_of_user(&auth, fixtures::OTHER_USER_ID)
        .await
        .unwrap();
    assert_eq!(memberships.len(), 2, "a member of both sees both");
    let mut invited: Vec<_> =
        organizations::pending_invitations_for_email(&auth, "new@example.com")
            .await
            .unwrap()
            .into_iter()
            .map(|i| i.organization_id)
            .collect();
    invited.sort_unstable();
    assert_eq!(invited, [fixtures::ORG_ID, fixtures::OTHER_ORG_ID]);
    let (created, owner) = organizations::create_organization(
        &auth,
        NewOrganizationInput {
            name: "New".into(),
            slug: "new".into(),
            logo: None,
            metadata: None,
        },
        fixtures::OWNER_ID,
    )
    .await
    .unwrap();
    assert_eq!(owner.organization_id, created.id);

    // The application without an organization: the same helpers see nothing, change nothing.
    assert!(
        organizations::find_organization_by_slug(&app, "other")
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        organizations::organizations_of_user(&app, fixtures::OTHER_USER_ID)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        organizations::pending_invitations_for_email(&app, "new@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        organizations::expire_overdue_invitations(&app)
            .await
            .unwrap(),
        0
    );
    let err = organizations::create_organization(
        &app,
        NewOrganizationInput {
            name: "Sneaky".into(),
            slug: "sneaky".into(),
            logo: None,
            metadata: None,
        },
        fixtures::OWNER_ID,
    )
    .await
    .unwrap_err();
    assert!(refused(&err), "{err:?}");

    assert_eq!(
        organizations::expire_overdue_invitations(&auth)
            .await
            .unwrap(),
        2,
        "both organizations' overdue invitations"
    );
}
