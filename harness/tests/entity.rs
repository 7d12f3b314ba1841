//! The entity crate against the migrated database: enums agree with the CHECK constraints,
//! rows round-trip through the aliases, JSON is camelCase, unknown values are typed errors.

use std::collections::BTreeSet;

use entity::{UnknownEnumValue, agent_runs, prelude::*, users};
use harness::{TestDb, fixtures, text_rows};
use sea_orm::{
    ActiveEnum, ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, Iterable,
    PaginatorTrait, QueryFilter, Set, Statement,
};

/// The values `ck_<table>_<column>` allows, read from the constraint's definition.
async fn check_values(db: &TestDb, table: &str, column: &str) -> BTreeSet<String> {
    let rows = text_rows(
        db.conn(),
        &format!(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint
             WHERE conrelid = '{table}'::regclass AND conname = 'ck_{table}_{column}'"
        ),
    )
    .await;
    assert_eq!(rows.len(), 1, "{table}.{column} has its CHECK");
    let definition = rows[0][0].clone().unwrap();
    // `... ARRAY['a'::character varying, 'b'::character varying] ...`: every quoted literal.
    definition
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn values<E: ActiveEnum<Value = String> + Iterable>() -> BTreeSet<String> {
    E::iter().map(|v| v.to_value()).collect()
}

#[tokio::test]
async fn every_enum_allows_exactly_what_its_check_constraint_allows() {
    let db = TestDb::migrated().await;
    let cases = [
        (values::<EventStatus>(), "slack_events", "status"),
        (values::<EventStatus>(), "linear_events", "status"),
        (values::<LinearEventAction>(), "linear_events", "action"),
        (values::<AgentRunStatus>(), "agent_runs", "status"),
        (values::<TriggerSource>(), "agent_runs", "trigger_source"),
        (values::<ToolCallStatus>(), "tool_calls", "status"),
        (values::<ToolProvider>(), "tools", "provider"),
        (values::<InvitationStatus>(), "invitations", "status"),
        (
            values::<GithubAccountType>(),
            "github_installations",
            "account_type",
        ),
        (
            values::<RepositorySelection>(),
            "github_installations",
            "repository_selection",
        ),
        (values::<RouteProvider>(), "webhook_routes", "provider"),
        (values::<EventProvider>(), "unrouted_events", "provider"),
    ];
    for (rust, table, column) in &cases {
        assert_eq!(
            rust,
            &check_values(&db, table, column).await,
            "{table}.{column}"
        );
    }
    // And no enumeration column is left without its enum.
    let checked = text_rows(
        db.conn(),
        "SELECT conname::text FROM pg_constraint
         WHERE contype = 'c' AND connamespace = 'public'::regnamespace AND conname NOT LIKE '%_nonnegative'",
    )
    .await;
    assert_eq!(checked.len(), cases.len());
}

#[test]
fn enums_spell_the_same_in_rust_serde_and_the_database() {
    for status in AgentRunStatus::ALL {
        let json = serde_json::to_value(status).unwrap();
        assert_eq!(json, serde_json::Value::String(status.to_value()));
        assert_eq!(status.as_str().parse::<AgentRunStatus>(), Ok(*status));
        assert_eq!(String::from(*status), status.to_string());
    }
    assert_eq!(AgentRunStatus::ALL.len(), AgentRunStatus::iter().count());
}

#[test]
fn an_unknown_value_is_a_typed_error_naming_column_and_choices() {
    let err = "finished".parse::<AgentRunStatus>().unwrap_err();
    assert_eq!(
        err,
        UnknownEnumValue {
            column: "agent_runs.status",
            value: "finished".to_owned(),
            expected: "queued running succeeded failed cancelled",
        }
    );
    assert_eq!(
        err.to_string(),
        "`finished` is not a valid agent_runs.status (expected one of: queued running succeeded failed cancelled)"
    );
    assert!(serde_json::from_str::<AgentRunStatus>("\"finished\"").is_err());
    assert!(
        "Pending".parse::<EventStatus>().is_err(),
        "values are case-sensitive"
    );
}

#[tokio::test]
async fn an_unknown_value_from_the_database_is_an_error_not_a_panic() {
    let db = TestDb::migrated().await;
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT 'finished'::varchar AS status",
        ))
        .await
        .unwrap()
        .unwrap();
    let err = row.try_get::<AgentRunStatus>("", "status").unwrap_err();
    assert!(err.to_string().contains("finished"), "{err}");
}

#[tokio::test]
async fn a_new_user_reads_back_as_a_user_and_serialises_in_camel_case() {
    let db = TestDb::migrated().await;
    let inserted: User = NewUser {
        id: Set("user_1".to_owned()),
        name: Set("Ada".to_owned()),
        email: Set("ada@example.com".to_owned()),
        ..Default::default()
    }
    .insert(db.conn())
    .await
    .unwrap();
    assert!(!inserted.email_verified, "database defaults come back");
    assert!(!inserted.two_factor_enabled);
    let read: User = Users::find_by_id("user_1")
        .one(db.conn())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, inserted);

    let json = serde_json::to_value(&read).unwrap();
    let keys: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from([
            "id",
            "name",
            "email",
            "emailVerified",
            "image",
            "twoFactorEnabled",
            "createdAt",
            "updatedAt",
        ])
    );
    let back: User = serde_json::from_value(json).unwrap();
    assert_eq!(back, read);
    let by_email = Users::find()
        .filter(users::Column::Email.eq("ada@example.com"))
        .count(db.conn())
        .await
        .unwrap();
    assert_eq!(by_email, 1);
}

#[tokio::test]
async fn enums_filter_queries_fill_active_models_and_read_back_typed() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    for status in [
        AgentRunStatus::Running,
        AgentRunStatus::Running,
        AgentRunStatus::Failed,
    ] {
        NewAgentRun {
            organization_id: Set(fixtures::ORG_ID.to_owned()),
            trigger_source: Set(TriggerSource::Schedule.into()),
            status: Set(status.into()),
            model: Set("claude-sonnet".to_owned()),
            ..Default::default()
        }
        .insert(db.conn())
        .await
        .unwrap();
    }
    let running: Vec<AgentRun> = AgentRuns::find()
        .filter(agent_runs::Column::Status.eq(AgentRunStatus::Running))
        .all(db.conn())
        .await
        .unwrap();
    assert_eq!(running.len(), 2);
    for run in &running {
        assert_eq!(run.status(), Ok(AgentRunStatus::Running));
        assert_eq!(run.trigger_source(), Ok(TriggerSource::Schedule));
    }
    let queued = AgentRuns::find()
        .filter(agent_runs::Column::Status.is_in([AgentRunStatus::Queued, AgentRunStatus::Failed]))
        .count(db.conn())
        .await
        .unwrap();
    assert_eq!(
        queued, 3,
        "the two fixture runs are queued, one new run failed"
    );
}
