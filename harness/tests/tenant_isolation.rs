//! Trying to break tenant isolation (issue 22) as production connects: a login role that is a
//! member of the application role (`app_service`, `NOBYPASSRLS`, owns nothing), created for each
//! test database. As organization B it calls the service helpers with organization A's ids and
//! runs bare `SELECT` / `UPDATE` / `DELETE` / `INSERT` on every tenant table; with no
//! organization set it must see nothing and write nothing; through PgBouncer with one server
//! connection, thousands of interleaved transactions of A, B and none must never see another's
//! rows.

use std::collections::HashSet;

use chrono::{Duration, Utc};
use db_connect::{DatabaseUrl, Pool};
use dev_servers::PgBouncerSettings;
use entity::enums::TriggerSource;
use harness::{TestDb, better_auth, connect, fixtures, scalar, text_rows, topology};
use migration::tenancy::{self, APP_ROLE, Class};
use rand::{Rng, SeedableRng, rngs::StdRng};
use sea_orm::{ConnectionTrait, DbErr, TransactionTrait};
use serde_json::json;
use service::{
    Error,
    agents::{self, NewRunInput, NewToolCallInput, TokenCounts, ToolCallOutcome},
    events::{self, EventFilter, LinearEvents, SlackEvents},
    integrations::{self, GithubInstallationInput},
    organizations, sqlstate, tenant,
};
use uuid::Uuid;

const A: &str = fixtures::ORG_ID;
const B: &str = fixtures::OTHER_ORG_ID;
const B_SLACK: &str = "00000000-0000-4000-8000-0000000000b1";
const B_LINEAR: &str = "00000000-0000-4000-8000-0000000000b2";

/// Rows of B in every tenant table, beside the fixture's (A has a row in every one).
async fn seed_b(db: &impl ConnectionTrait) {
    let run = fixtures::OTHER_ORG_RUN_ID;
    for sql in [
        format!(
            "INSERT INTO slack_connections (id, organization_id, team_id, team_name, access_token_encrypted)
             VALUES ('{B_SLACK}', '{B}', 'T2', 'Other', 'v1:ciphertext')"
        ),
        format!(
            "INSERT INTO linear_connections (id, organization_id, linear_organization_id,
                 linear_organization_name, access_token_encrypted)
             VALUES ('{B_LINEAR}', '{B}', 'lin_2', 'Other', 'v1:ciphertext')"
        ),
        format!(
            "INSERT INTO github_installations (organization_id, installation_id, account_login,
                 account_type, repository_selection) VALUES ('{B}', 4343, 'other', 'organization', 'all')"
        ),
        format!(
            "INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id)
             VALUES ('slack', 'T2', '{B}', '{B_SLACK}')"
        ),
        format!(
            "INSERT INTO invitations (id, organization_id, email, role, expires_at, inviter_id)
             VALUES ('inv_b', '{B}', 'b@example.com', 'member', now() + interval '7 days', '{}')",
            fixtures::OTHER_USER_ID
        ),
        format!(
            "INSERT INTO slack_events (organization_id, slack_connection_id, event_id, event_type, team_id, payload)
             VALUES ('{B}', '{B_SLACK}', 'EvB', 'message', 'T2', '{{}}')"
        ),
        format!(
            "INSERT INTO linear_events (organization_id, linear_connection_id, event_id, event_type,
                 action, linear_organization_id, payload)
             VALUES ('{B}', '{B_LINEAR}', 'delivery-b', 'Issue', 'create', 'lin_2', '{{}}')"
        ),
        format!(
            "INSERT INTO tool_calls (organization_id, agent_run_id, tool_name, sequence)
             VALUES ('{B}', '{run}', 'github_search', 0)"
        ),
        format!("UPDATE agent_runs SET next_tool_call_sequence = 1 WHERE id = '{run}'"),
    ] {
        db.execute_unprepared(&sql)
            .await
            .unwrap_or_else(|err| panic!("`{sql}` failed: {err}"));
    }
}

struct World {
    db: TestDb,
    app: Pool,
}

async fn world() -> World {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    seed_b(db.conn()).await;
    let app = connect(&db.login_as(APP_ROLE).await, 2).await;
    World { db, app }
}

fn denied(err: &DbErr) -> bool {
    sqlstate(err).as_deref() == Some("42501")
}

/// What a statement did, in a transaction of its own (rolled back) as `organization`
/// (`None`: nothing set; `Some("")`: set to the empty string).
async fn run_as(app: &Pool, organization: Option<&str>, sql: &str) -> Result<u64, DbErr> {
    let txn = app.begin().await?;
    if let Some(org) = organization {
        txn.execute_unprepared(&format!("SET LOCAL app.organization_id = '{org}'"))
            .await?;
    }
    let done = txn.execute_unprepared(sql).await.map(|r| r.rows_affected());
    txn.rollback().await?;
    done
}

async fn rows_as(app: &Pool, organization: Option<&str>, sql: &str) -> Vec<Vec<Option<String>>> {
    let txn = app.begin().await.unwrap();
    if let Some(org) = organization {
        txn.execute_unprepared(&format!("SET LOCAL app.organization_id = '{org}'"))
            .await
            .unwrap();
    }
    let rows = text_rows(&txn, sql).await;
    txn.rollback().await.unwrap();
    rows
}

/// One of A's rows of `table` as JSON (read by the owner), for inserting a copy of it.
async fn a_row(db: &TestDb, table: &str, column: &str) -> String {
    let rows = text_rows(
        db.conn(),
        &format!("SELECT row_to_json(t)::text FROM {table} t WHERE {column} = '{A}' LIMIT 1"),
    )
    .await;
    rows[0][0]
        .clone()
        .expect("A has a row in every tenant table")
}

fn copy_of(table: &str, json: &str) -> String {
    format!(
        "INSERT INTO {table} SELECT * FROM json_populate_record(NULL::{table}, '{}')",
        json.replace('\'', "''")
    )
}

#[tokio::test]
async fn as_b_bare_statements_on_every_tenant_table_touch_only_b() {
    let World { db, app } = world().await;
    for t in tenancy::guarded() {
        let (table, column) = (t.table, t.class.organization_column().unwrap());
        let count_of = |org: &str| format!("SELECT count(*) FROM {table} WHERE {column} = '{org}'");
        let (of_a, of_b) = (
            scalar(db.conn(), &count_of(A)).await,
            scalar(db.conn(), &count_of(B)).await,
        );
        assert!(of_a > 0 && of_b > 0, "{table}: A has {of_a} rows, B {of_b}");

        let seen = rows_as(
            &app,
            Some(B),
            &format!(
                "SELECT count(*)::text, count(*) FILTER (WHERE {column} <> '{B}')::text FROM {table}"
            ),
        )
        .await;
        let (visible, foreign) = (seen[0][0].clone().unwrap(), seen[0][1].clone().unwrap());
        match t.class {
            // Routes are read before the organization is known (which one a webhook is for).
            Class::Routing { .. } => assert_eq!(visible, (of_a + of_b).to_string(), "{table}"),
            _ => assert_eq!(
                (visible.as_str(), foreign.as_str()),
                (of_b.to_string().as_str(), "0"),
                "{table}: as B, SELECT * sees other organizations' rows"
            ),
        }

        let same = format!("UPDATE {table} SET {column} = {column}");
        assert_eq!(
            run_as(&app, Some(B), &same).await.unwrap(),
            of_b as u64,
            "{table}: bare UPDATE"
        );
        let at_a = format!("{same} WHERE {column} = '{A}'");
        assert_eq!(
            run_as(&app, Some(B), &at_a).await.unwrap(),
            0,
            "{table}: UPDATE of A's rows"
        );
        let delete_a = format!("DELETE FROM {table} WHERE {column} = '{A}'");
        assert_eq!(
            run_as(&app, Some(B), &delete_a).await.unwrap(),
            0,
            "{table}: DELETE of A's rows"
        );
        let delete_all = format!("DELETE FROM {table}");
        assert_eq!(
            run_as(&app, Some(B), &delete_all).await.unwrap(),
            of_b as u64,
            "{table}: bare DELETE"
        );

        let insert = copy_of(table, &a_row(&db, table, column).await);
        let err = run_as(&app, Some(B), &insert).await.unwrap_err();
        assert!(denied(&err), "{table}: inserting A's row as B: {err}");
        let to_a = format!("UPDATE {table} SET {column} = '{A}' WHERE {column} = '{B}'");
        let err = run_as(&app, Some(B), &to_a).await.unwrap_err();
        assert!(denied(&err), "{table}: moving B's rows to A: {err}");
    }
    // Nothing above was committed, and A's rows are all still there.
    assert_eq!(
        scalar(
            db.conn(),
            &format!("SELECT count(*) FROM agent_runs WHERE organization_id = '{A}'")
        )
        .await,
        1
    );
}

#[tokio::test]
async fn with_no_organization_set_nothing_is_seen_and_nothing_written() {
    let World { db, app } = world().await;
    for organization in [None, Some("")] {
        for t in tenancy::guarded() {
            let (table, column) = (t.table, t.class.organization_column().unwrap());
            if !matches!(t.class, Class::Routing { .. }) {
                let seen = rows_as(
                    &app,
                    organization,
                    &format!("SELECT count(*)::text FROM {table}"),
                )
                .await;
                assert_eq!(
                    seen[0][0].as_deref(),
                    Some("0"),
                    "{table} with {organization:?}"
                );
            }
            let update = format!("UPDATE {table} SET {column} = {column}");
            assert_eq!(
                run_as(&app, organization, &update).await.unwrap(),
                0,
                "{table} with {organization:?}"
            );
            let delete = format!("DELETE FROM {table}");
            assert_eq!(
                run_as(&app, organization, &delete).await.unwrap(),
                0,
                "{table} with {organization:?}"
            );
            let err = run_as(
                &app,
                organization,
                &copy_of(table, &a_row(&db, table, column).await),
            )
            .await
            .unwrap_err();
            assert!(denied(&err), "{table} with {organization:?}: {err}");
        }
    }
    // A statement outside any transaction sees nothing either.
    assert_eq!(scalar(&app, "SELECT count(*) FROM agent_runs").await, 0);
}

#[tokio::test]
async fn the_application_role_owns_nothing_and_bypasses_nothing() {
    let World { db, app } = world().await;
    let rows = text_rows(
        db.conn(),
        &format!(
            "SELECT r.rolname::text, r.rolsuper::text, r.rolbypassrls::text, r.rolcanlogin::text,
                    (SELECT count(*) FROM pg_class c WHERE c.relowner = r.oid)::text
             FROM pg_roles r WHERE r.rolname = ANY (ARRAY['{}']) ORDER BY 1",
            tenancy::ROLES.join("','")
        ),
    )
    .await;
    assert_eq!(rows.len(), tenancy::ROLES.len());
    for row in rows {
        let row: Vec<_> = row.into_iter().map(Option::unwrap).collect();
        assert_eq!(row[1..], ["false", "false", "false", "0"], "{}", row[0]);
    }
    // It cannot turn the policies off, nor read the migration ledger.
    for sql in [
        "ALTER TABLE agent_runs DISABLE ROW LEVEL SECURITY",
        "SELECT count(*) FROM seaql_migrations",
        "SET LOCAL row_security = off; SELECT count(*) FROM agent_runs",
    ] {
        let err = run_as(&app, Some(B), sql).await.unwrap_err();
        assert!(denied(&err), "`{sql}`: {err}");
    }
}

/// Asserts that `result` is what a helper of B asked about A's row must give: not found, or
/// refused by the policy (42501); never A's row.
fn refused<T: std::fmt::Debug>(what: &str, result: Result<T, Error>) {
    match result {
        Err(Error::NotFound { .. }) => {}
        Err(Error::Database(err)) if denied(&err) => {}
        other => panic!("{what}: as B with A's ids gave {other:?}"),
    }
}

#[tokio::test]
async fn as_b_every_helper_given_a_ids_finds_nothing_and_changes_nothing() {
    let World { db, app } = world().await;
    let run = Uuid::parse_str(fixtures::AGENT_RUN_ID).unwrap();
    let call = Uuid::parse_str(fixtures::TOOL_CALL_ID).unwrap();
    let slack_event = Uuid::parse_str(fixtures::SLACK_EVENT_ID).unwrap();
    let linear_event = Uuid::parse_str(fixtures::LINEAR_EVENT_ID).unwrap();
    let slack = Uuid::parse_str(fixtures::SLACK_CONNECTION_ID).unwrap();
    let linear = Uuid::parse_str(fixtures::LINEAR_CONNECTION_ID).unwrap();
    let digest = "SELECT md5(string_agg(t::text, ',' ORDER BY t::text)) FROM (
        SELECT row_to_json(r)::text AS t FROM agent_runs r UNION ALL SELECT row_to_json(c)::text FROM tool_calls c
        UNION ALL SELECT row_to_json(e)::text FROM slack_events e UNION ALL SELECT row_to_json(e)::text FROM linear_events e
        UNION ALL SELECT row_to_json(s)::text FROM slack_connections s UNION ALL SELECT row_to_json(l)::text FROM linear_connections l
        UNION ALL SELECT row_to_json(g)::text FROM github_installations g UNION ALL SELECT row_to_json(m)::text FROM members m
        UNION ALL SELECT row_to_json(i)::text FROM invitations i UNION ALL SELECT row_to_json(o)::text FROM organizations o) x";
    let before = text_rows(db.conn(), digest).await;

    macro_rules! as_b {
        ($what:literal, |$txn:ident| $call:expr) => {{
            let $txn = tenant::begin(&app, B).await.unwrap();
            let result = $call.await;
            $txn.rollback().await.unwrap();
            refused($what, result);
        }};
    }
    macro_rules! as_b_empty {
        ($what:literal, |$txn:ident| $call:expr, $empty:expr) => {{
            let $txn = tenant::begin(&app, B).await.unwrap();
            let result = $call.await.unwrap();
            $txn.rollback().await.unwrap();
            assert!(
                $empty(&result),
                "{}: as B with A's ids gave {result:?}",
                $what
            );
        }};
    }
    let tokens = TokenCounts::default();
    as_b!("start_run", |t| agents::start_run(&t, A, run));
    as_b!("succeed_run", |t| agents::succeed_run(
        &t,
        A,
        run,
        json!({}),
        tokens
    ));
    as_b!("fail_run", |t| agents::fail_run(&t, A, run, "x", tokens));
    as_b!("cancel_run", |t| agents::cancel_run(&t, A, run));
    as_b!("append_tool_call", |t| agents::append_tool_call(
        &t,
        A,
        run,
        NewToolCallInput {
            tool_name: "github_search".into(),
            tool_id: None,
            input: json!({})
        }
    ));
    as_b!("start_tool_call", |t| agents::start_tool_call(&t, A, call));
    as_b!("finish_tool_call", |t| agents::finish_tool_call(
        &t,
        A,
        call,
        ToolCallOutcome::Succeeded(json!({})),
        1
    ));
    as_b!("run_with_tool_calls", |t| agents::run_with_tool_calls(
        &t, A, run
    ));
    as_b!("create_run", |t| agents::create_run(
        &t,
        NewRunInput {
            organization_id: A.into(),
            user_id: None,
            trigger_source: TriggerSource::Api,
            slack_event_id: None,
            linear_event_id: None,
            model: "m".into(),
            input: json!({}),
        }
    ));
    as_b_empty!(
        "list_runs",
        |t| agents::list_runs(&t, A, None, 100),
        |p: &service::Page<_>| p.items.is_empty()
    );
    as_b_empty!(
        "token_usage",
        |t| agents::token_usage(
            &t,
            A,
            (Utc::now() - Duration::days(1)).fixed_offset(),
            (Utc::now() + Duration::days(1)).fixed_offset()
        ),
        |u: &agents::TokenUsage| u.runs == 0
    );
    as_b!("deactivate_slack_connection", |t| {
        integrations::deactivate_slack_connection(&t, A, slack)
    });
    as_b!("deactivate_linear_connection", |t| {
        integrations::deactivate_linear_connection(&t, A, linear)
    });
    as_b!("suspend_github_installation", |t| {
        integrations::suspend_github_installation(&t, 4242)
    });
    as_b!("unsuspend_github_installation", |t| {
        integrations::unsuspend_github_installation(&t, 4242)
    });
    as_b!("remove_github_installation", |t| {
        integrations::remove_github_installation(&t, 4242)
    });
    as_b_empty!(
        "find_github_installation",
        |t| integrations::find_github_installation(&t, 4242),
        Option::is_none
    );
    as_b_empty!(
        "active_slack_connection",
        |t| integrations::active_slack_connection(&t, "T1"),
        Option::is_none
    );
    as_b_empty!(
        "active_linear_connection",
        |t| integrations::active_linear_connection(&t, "lin_1"),
        Option::is_none
    );
    as_b!("upsert_github_installation", |t| {
        integrations::upsert_github_installation(
            &t,
            GithubInstallationInput {
                organization_id: A.into(),
                installation_id: 4242,
                account_login: "acme".into(),
                account_type: entity::enums::GithubAccountType::Organization,
                repository_selection: entity::enums::RepositorySelection::All,
                permissions: json!({}),
                events: vec![],
                installed_by_user_id: None,
            },
        )
    });
    as_b!("add_member", |t| organizations::add_member(
        &t,
        A,
        fixtures::OWNER_ID,
        "admin"
    ));
    as_b!("change_role", |t| organizations::change_role(
        &t,
        A,
        fixtures::OTHER_USER_ID,
        "admin"
    ));
    as_b!("remove_member", |t| organizations::remove_member(
        &t,
        A,
        fixtures::OTHER_USER_ID
    ));
    as_b!("create_invitation", |t| organizations::create_invitation(
        &t,
        A,
        "x@example.com",
        Some("member"),
        fixtures::OWNER_ID,
        (Utc::now() + Duration::days(1)).fixed_offset()
    ));
    as_b!("accept_invitation", |t| organizations::accept_invitation(
        &t,
        A,
        "inv_1",
        fixtures::OWNER_ID
    ));
    as_b!("reject_invitation", |t| organizations::reject_invitation(
        &t, A, "inv_1"
    ));
    as_b!("cancel_invitation", |t| organizations::cancel_invitation(
        &t, A, "inv_1"
    ));
    as_b_empty!(
        "find_organization_by_slug",
        |t| organizations::find_organization_by_slug(&t, "acme"),
        Option::is_none
    );
    as_b_empty!(
        "organizations_of_user",
        |t| organizations::organizations_of_user(&t, fixtures::OWNER_ID),
        Vec::is_empty
    );
    as_b_empty!(
        "pending_invitations_for_email",
        |t| organizations::pending_invitations_for_email(&t, "new@example.com"),
        Vec::is_empty
    );
    as_b_empty!(
        "claim slack",
        |t| events::claim::<SlackEvents>(&t, A, 10),
        Vec::is_empty
    );
    as_b_empty!(
        "claim linear",
        |t| events::claim::<LinearEvents>(&t, A, 10),
        Vec::is_empty
    );
    as_b_empty!(
        "list slack",
        |t| events::list::<SlackEvents>(&t, A, &EventFilter::default(), None, 100),
        |p: &service::Page<_>| p.items.is_empty()
    );
    as_b_empty!(
        "find slack",
        |t| events::find::<SlackEvents>(&t, A, slack_event),
        Option::is_none
    );
    as_b_empty!(
        "find linear",
        |t| events::find::<LinearEvents>(&t, A, linear_event),
        Option::is_none
    );
    as_b!("mark_processed", |t| events::mark_processed::<SlackEvents>(
        &t,
        A,
        slack_event
    ));
    as_b!("mark_ignored", |t| events::mark_ignored::<LinearEvents>(
        &t,
        A,
        linear_event
    ));
    as_b!("mark_failed", |t| events::mark_failed::<SlackEvents>(
        &t,
        A,
        slack_event,
        "x",
        3
    ));

    assert_eq!(
        text_rows(db.conn(), digest).await,
        before,
        "a helper of B changed a row"
    );
    // The same calls as A do find A's rows (the refusals above are the policy's, not a typo).
    let txn = tenant::begin(&app, A).await.unwrap();
    let (found, calls) = agents::run_with_tool_calls(&txn, A, run).await.unwrap();
    assert_eq!((found.id, calls.len()), (run, 1));
    assert!(
        events::find::<SlackEvents>(&txn, A, slack_event)
            .await
            .unwrap()
            .is_some()
    );
    txn.rollback().await.unwrap();
}

#[tokio::test]
async fn tenant_begin_refuses_an_id_that_could_leave_its_literal() {
    let World { app, .. } = world().await;
    for bad in ["", "org'; RESET ALL; --", "x\\"] {
        let Err(err) = tenant::begin(&app, bad).await else {
            panic!("{bad:?} was accepted");
        };
        assert!(
            matches!(err, Error::Validation { ref field, .. } if field == "organization_id"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn the_organization_ends_with_its_transaction_on_the_same_session() {
    let World { db, .. } = world().await;
    // One connection, so every transaction below runs on the same server session.
    let app = connect(&db.login_as(APP_ROLE).await, 1).await;
    let txn = tenant::begin(&app, A).await.unwrap();
    assert_eq!(scalar(&txn, "SELECT count(*) FROM agent_runs").await, 1);
    txn.commit().await.unwrap();
    assert_eq!(scalar(&app, "SELECT count(*) FROM agent_runs").await, 0);
    let txn = tenant::begin(&app, B).await.unwrap();
    txn.execute_unprepared("SELECT 1/0").await.unwrap_err();
    txn.rollback().await.unwrap();
    assert_eq!(scalar(&app, "SELECT count(*) FROM agent_runs").await, 0);
    // A savepoint rolled back undoes the organization it set.
    let txn = tenant::begin(&app, A).await.unwrap();
    let inner = txn.begin().await.unwrap();
    tenant::enter(&inner, B).await.unwrap();
    assert_eq!(
        scalar(
            &inner,
            "SELECT count(*) FROM tool_calls WHERE organization_id = 'org_other'"
        )
        .await,
        1
    );
    inner.rollback().await.unwrap();
    assert_eq!(
        scalar(
            &txn,
            "SELECT count(*) FROM tool_calls WHERE organization_id = 'org_acme'"
        )
        .await,
        1
    );
    txn.rollback().await.unwrap();
}

/// Adds the login role of `url` to PgBouncer's auth file (its SCRAM secret, read by the
/// superuser) and reloads it.
async fn admit(pgbouncer: &dev_servers::PgBouncer, db: &TestDb, url: &DatabaseUrl) {
    let secret = text_rows(
        db.conn(),
        &format!(
            "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
            url.user()
        ),
    )
    .await[0][0]
        .clone()
        .unwrap();
    let auth_file = pgbouncer.dir().join("userlist.txt");
    let mut text = std::fs::read_to_string(&auth_file).unwrap();
    text.push_str(&format!("\"{}\" \"{secret}\"\n", url.user()));
    std::fs::write(&auth_file, text).unwrap();
    let admin = connect(&pgbouncer.admin_url().unwrap(), 1).await;
    admin.execute_unprepared("RELOAD").await.unwrap();
}

#[tokio::test]
async fn through_pgbouncer_with_one_server_connection_interleaved_transactions_never_leak() {
    let World { db, .. } = world().await;
    let pgbouncer = topology::start_pgbouncer(PgBouncerSettings {
        server_pool_size: 1,
        ..PgBouncerSettings::default()
    });
    let login = db.login_as(APP_ROLE).await;
    admit(&pgbouncer, &db, &login).await;
    let through = pgbouncer.url(db.name()).unwrap();
    let through = DatabaseUrl::new(
        login.user(),
        login.password().clone(),
        through.host(),
        through.port(),
        db.name(),
    )
    .unwrap()
    .with_pooler_flag(Some(true));

    const CLIENTS: usize = 8;
    const TRANSACTIONS: usize = 10_000;
    // One client connection per task, many tasks, one server connection behind them all.
    let mut tasks = Vec::new();
    for client in 0..CLIENTS {
        let pool = connect(&through, 1).await;
        tasks.push(tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(client as u64);
            let mut backends = HashSet::new();
            let mut wrong = Vec::new();
            for _ in 0..TRANSACTIONS / CLIENTS {
                let kind = rng.random_range(0..5);
                let org = match rng.random_bool(0.5) {
                    true => A,
                    false => B,
                };
                let probe = "SELECT pg_backend_pid()::text, coalesce(current_setting('app.organization_id', true), '<null>'),
                                    (SELECT string_agg(DISTINCT organization_id, ',') FROM agent_runs),
                                    (SELECT string_agg(DISTINCT organization_id, ',') FROM tool_calls),
                                    (SELECT string_agg(DISTINCT organization_id, ',') FROM slack_events)";
                let (expected, rows) = match kind {
                    // As one organization, committed.
                    0 => {
                        let txn = tenant::begin(&pool, org).await.unwrap();
                        let rows = text_rows(&txn, probe).await;
                        txn.commit().await.unwrap();
                        (Some(org), rows)
                    }
                    // As one organization, rolled back.
                    1 => {
                        let txn = tenant::begin(&pool, org).await.unwrap();
                        let rows = text_rows(&txn, probe).await;
                        txn.rollback().await.unwrap();
                        (Some(org), rows)
                    }
                    // As one organization, failed, then rolled back.
                    2 => {
                        let txn = tenant::begin(&pool, org).await.unwrap();
                        let rows = text_rows(&txn, probe).await;
                        txn.execute_unprepared("SELECT 1/0").await.unwrap_err();
                        txn.rollback().await.unwrap();
                        (Some(org), rows)
                    }
                    // A transaction that sets nothing.
                    3 => {
                        let txn = pool.begin().await.unwrap();
                        let rows = text_rows(&txn, probe).await;
                        txn.commit().await.unwrap();
                        (None, rows)
                    }
                    // A statement on its own.
                    _ => (None, text_rows(&pool, probe).await),
                };
                let row = &rows[0];
                backends.insert(row[0].clone().unwrap());
                let seen = [row[2].clone(), row[3].clone(), row[4].clone()];
                let ok = match expected {
                    Some(org) => {
                        row[1].as_deref() == Some(org)
                            && seen.iter().all(|s| s.as_deref() == Some(org))
                    }
                    None => {
                        matches!(row[1].as_deref(), Some("" | "<null>"))
                            && seen.iter().all(Option::is_none)
                    }
                };
                if !ok {
                    wrong.push(format!("kind {kind}, expected {expected:?}: {row:?}"));
                }
            }
            (backends, wrong)
        }));
    }
    let mut backends = HashSet::new();
    let mut wrong = Vec::new();
    for task in tasks {
        let (b, w) = task.await.unwrap();
        backends.extend(b);
        wrong.extend(w);
    }
    assert!(
        wrong.is_empty(),
        "{} leaks, first: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
    assert_eq!(
        backends.len(),
        1,
        "every transaction ran on the one server connection"
    );
}

/// The real Better Auth flow (sign up, sign in, organizations, invitations, password reset,
/// two-factor, sign out) connected as a login member of `app_auth`, whose grants and policies
/// are exactly what it needs.
async fn better_auth_as_its_role(package: &str, expect_version: &str) {
    let db = TestDb::migrated().await;
    let url = db.login_as(tenancy::AUTH_ROLE).await;
    better_auth::run_script("check.mjs", &url, package, expect_version, &[]);
}

#[tokio::test]
async fn better_auth_1_7_runs_as_the_auth_role() {
    better_auth_as_its_role("better-auth", "1.7.").await;
}

#[tokio::test]
async fn better_auth_1_4_runs_as_the_auth_role() {
    better_auth_as_its_role("better-auth-1-4", "1.4.").await;
}

#[tokio::test]
async fn better_auth_1_3_runs_as_the_auth_role() {
    better_auth_as_its_role("better-auth-1-3", "1.3.").await;
}

/// On a streaming replica (hot standby) `SET LOCAL` works in a read-only transaction: a tenant
/// transaction on a pool to the replica reads only its organization, and nothing without one.
/// (`Db::reads()` routes single statements and opens no transaction, so it cannot carry an
/// organization: a tenant read on the replica begins its transaction on a replica pool.)
#[tokio::test]
async fn on_the_replica_a_tenant_transaction_reads_only_its_organization() {
    let World { db, .. } = world().await;
    let login = db.login_as(APP_ROLE).await;
    let replica = topology::start_replica();
    topology::wait_until_replayed(&replica).await;
    let at = replica.url(db.name()).unwrap();
    let url = DatabaseUrl::new(
        login.user(),
        login.password().clone(),
        at.host(),
        at.port(),
        db.name(),
    )
    .unwrap();
    let reads = connect(&url, 1).await;
    let probe = "SELECT pg_is_in_recovery()::text,
                        (SELECT string_agg(DISTINCT organization_id, ',') FROM agent_runs),
                        (SELECT string_agg(DISTINCT organization_id, ',') FROM tool_calls),
                        (SELECT string_agg(id, ',') FROM organizations)";
    for org in [A, B] {
        let txn = tenant::begin(&reads, org).await.unwrap();
        let row = text_rows(&txn, probe).await.remove(0);
        txn.commit().await.unwrap();
        let org = Some(org.to_owned());
        assert_eq!(
            row,
            [Some("true".to_owned()), org.clone(), org.clone(), org]
        );
    }
    let row = text_rows(&reads, probe).await.remove(0);
    assert_eq!(row, [Some("true".to_owned()), None, None, None]);
}
