//! How database failures reach callers: typed, without secrets or row values.

use std::time::Duration;

use harness::{TestDb, fixtures};
use sea_orm::ConnectionTrait;
use secrecy::SecretString;
use service::{
    DatabaseUrl, Error, PoolSettings, auth, events, events::SlackDelivery, events::SlackEvents,
};

#[tokio::test]
async fn an_unreachable_server_is_a_connect_error_without_the_password() {
    let port = dev_servers::free_port().unwrap();
    let url = DatabaseUrl::new(
        "app",
        SecretString::from("pw-do-not-print"),
        "127.0.0.1",
        port,
        "app",
    )
    .unwrap();
    let settings = PoolSettings {
        connect_timeout: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(1),
        ..PoolSettings::default()
    };
    let err = service::connect_to(&url, &settings).await.unwrap_err();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("pw-do-not-print"), "{shown}");
    assert!(shown.contains(&format!("127.0.0.1:{port}")), "{shown}");
}

#[tokio::test]
async fn a_duplicate_names_the_constraint_not_the_value() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let err: Error = db
        .conn()
        .execute_unprepared(&format!(
            "INSERT INTO sessions (id, expires_at, token, user_id) VALUES ('s2', now(), 'tok_owner', '{}')",
            fixtures::OWNER_ID
        ))
        .await
        .unwrap_err()
        .into();
    assert!(
        matches!(&err, Error::Conflict { table, constraint } if table == "sessions" && constraint == "uq_sessions_token"),
        "{err:?}"
    );
    assert!(!format!("{err} {err:?}").contains("tok_owner"));
}

#[tokio::test]
async fn bad_data_is_a_validation_error_and_nothing_is_written() {
    let db = TestDb::migrated().await;
    let nul = SlackDelivery {
        event_id: "Ev\0nul".into(),
        event_type: "message".into(),
        team_id: "T1".into(),
        channel_id: None,
        slack_user_id: None,
        payload: serde_json::json!({}),
    };
    let err = events::ingest::<SlackEvents>(db.conn(), nul.clone())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err:?}");
    let long_type = SlackDelivery {
        event_type: "x".repeat(200),
        event_id: "Ev2".into(),
        ..nul.clone()
    };
    let err = events::ingest::<SlackEvents>(db.conn(), long_type)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Validation { .. }), "{err:?}");
    // A route naming a connection that does not exist (routes have no foreign key to the
    // connections, which are distributed on Citus): the event's composite key refuses it.
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO organizations (id, name, slug) VALUES ('org_errors', 'E', 'e');
             INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id)
             VALUES ('slack', 'T_DANGLING', 'org_errors', '{}')",
            uuid::Uuid::new_v4()
        ))
        .await
        .unwrap();
    let dangling = SlackDelivery {
        team_id: "T_DANGLING".into(),
        event_id: "Ev3".into(),
        ..nul
    };
    let err = events::ingest::<SlackEvents>(db.conn(), dangling)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::MissingReference { constraint, .. } if constraint == "fk_slack_events_slack_connection_id"),
        "{err:?}"
    );
    assert_eq!(
        harness::scalar(
            db.conn(),
            "SELECT (SELECT count(*) FROM slack_events) + (SELECT count(*) FROM unrouted_events)"
        )
        .await,
        0
    );
    let check: Error = db
        .conn()
        .execute_unprepared(
            "INSERT INTO tools (name, display_name, provider) VALUES ('t', 'T', 'openai')",
        )
        .await
        .unwrap_err()
        .into();
    assert!(
        matches!(&check, Error::Validation { field, .. } if field == "ck_tools_provider"),
        "{check:?}"
    );
    assert!(!check.is_retryable());
}

#[tokio::test]
async fn a_missing_row_is_not_found_and_lookups_of_nothing_are_none() {
    let db = TestDb::migrated().await;
    assert!(
        auth::find_user(db.conn(), "nobody")
            .await
            .unwrap()
            .is_none()
    );
    let err = auth::revoke_session(db.conn(), "nobody", "nothing")
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "session `nothing` was not found");
}

/// The error of a statement that fails.
async fn raw(db: &TestDb, sql: &str) -> sea_orm::DbErr {
    db.conn().execute_unprepared(sql).await.unwrap_err()
}

#[tokio::test]
async fn sqlstates_are_read_and_classified() {
    let db = TestDb::migrated().await;
    let duplicate = raw(&db, "INSERT INTO tools (name, display_name, provider) VALUES ('t', 'T', 'builtin'), ('t', 'T', 'builtin')").await;
    assert_eq!(service::sqlstate(&duplicate).as_deref(), Some("23505"));
    assert_eq!(service::sqlstate(&sea_orm::DbErr::Custom("x".into())), None);
    let missing: Error = raw(
        &db,
        "INSERT INTO users (id, email) VALUES ('u', 'u@example.com')",
    )
    .await
    .into();
    assert!(
        matches!(&missing, Error::Validation { field, reason } if field == "users.name" && reason == "a value is required"),
        "{missing:?}"
    );
    let unknown = raw(&db, "SELECT * FROM no_such_table").await;
    assert_eq!(service::sqlstate(&unknown).as_deref(), Some("42P01"));
    let unknown: Error = unknown.into();
    assert!(
        matches!(unknown, Error::Database(_)) && !unknown.is_retryable(),
        "any other SQLSTATE is a plain database error: {unknown:?}"
    );
}

#[tokio::test]
async fn a_lost_serialization_race_is_retryable() {
    use sea_orm::{IsolationLevel, TransactionTrait};
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let slack_event: uuid::Uuid = fixtures::SLACK_EVENT_ID.parse().unwrap();
    let org = fixtures::ORG_ID;
    let txn = db
        .conn()
        .begin_with_config(Some(IsolationLevel::RepeatableRead), None)
        .await
        .unwrap();
    events::find::<SlackEvents>(&txn, org, slack_event)
        .await
        .unwrap();
    // Another session moves the event after this transaction's snapshot was taken.
    let other = harness::connect(db.url(), 1).await;
    events::mark_ignored::<SlackEvents>(&other, org, slack_event)
        .await
        .unwrap();
    let lost = events::mark_ignored::<SlackEvents>(&txn, org, slack_event)
        .await
        .unwrap_err();
    assert_eq!(
        match &lost {
            Error::Database(err) => service::sqlstate(err),
            _ => None,
        }
        .as_deref(),
        Some("40001"),
        "{lost:?}"
    );
    assert!(lost.is_retryable(), "{lost:?}");
}

#[tokio::test]
async fn a_session_the_server_terminates_is_unavailable() {
    use sea_orm::TransactionTrait;
    let db = TestDb::migrated().await;
    let victim = harness::connect(db.url(), 1).await;
    let txn = victim.begin().await.unwrap();
    let pid = harness::scalar(&txn, "SELECT pg_backend_pid()::bigint").await;
    harness::scalar(
        db.conn(),
        &format!("SELECT pg_terminate_backend({pid})::int::bigint"),
    )
    .await;
    // The server says why before it closes the session: 57P01, admin shutdown.
    let err = auth::find_user(&txn, "anyone").await.unwrap_err();
    assert!(
        matches!(&err, Error::Unavailable(_)) && err.is_retryable(),
        "{err:?}"
    );
}
