//! What every `through_pgbouncer*` binary runs and uses, whichever PgBouncer and statement mode
//! its name picks (see `harness::topology`): helpers that pin and count server sessions, and the
//! tests that hold the same on every PgBouncer and in both modes: session state and session locks
//! stay on the server session, values reach the server as bound ones, transactions behave as
//! directly, and many clients share few server connections without an error.

use std::{collections::HashSet, sync::Arc};

use db_connect::{DatabaseUrl, Pool, PoolSettings, Pooler};
use dev_servers::{PgBouncer, PgBouncerSettings};
use harness::{TestDb, scalar, topology};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use secrecy::ExposeSecret;
use service::events::{self, SlackDelivery, SlackEvents};
use sqlx::{Connection, Executor};
use tokio::sync::Barrier;

pub(crate) fn through_pgbouncer(db: &TestDb) -> &DatabaseUrl {
    assert!(
        topology::through_pgbouncer(),
        "this binary runs through PgBouncer"
    );
    assert_eq!(db.url().port(), topology::pgbouncer().port());
    db.url()
}

/// A PgBouncer of its own with `servers` server connections, all of them open and idle, so
/// which session serves the next statement is certain: the most recently used one.
pub(crate) async fn warm_pgbouncer(db: &TestDb, servers: u32) -> PgBouncer {
    let bouncer = topology::start_pgbouncer(PgBouncerSettings {
        server_pool_size: servers,
        release: topology::pgbouncer_release(),
        ..PgBouncerSettings::default()
    });
    let mut held = Vec::new();
    for _ in 0..servers {
        held.push(pin_a_server_session(&bouncer.url(db.name()).unwrap()).await);
    }
    drop(held);
    bouncer
}

/// A raw client connection holding a server session in an open transaction.
pub(crate) async fn pin_a_server_session(url: &DatabaseUrl) -> sqlx::PgConnection {
    let options: sqlx::postgres::PgConnectOptions = url.expose().expose_secret().parse().unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&options.extra_float_digits(None))
        .await
        .unwrap();
    conn.execute("BEGIN").await.unwrap();
    conn
}

pub(crate) async fn pool_through(bouncer: &PgBouncer, db: &TestDb) -> Pool {
    harness::connect(&bouncer.url(db.name()).unwrap(), 1).await
}

#[tokio::test]
async fn session_state_and_session_locks_do_not_stay_with_the_client() {
    let db = TestDb::migrated().await;
    // A session setting stays on the server session, for whichever client gets it next (one
    // server session, so the next client's is certain: sqlx's ping of a released connection
    // may take the most recently used one of several just then).
    let single = warm_pgbouncer(&db, 1).await;
    let (setter, other) = (
        pool_through(&single, &db).await,
        pool_through(&single, &db).await,
    );
    setter
        .execute_unprepared("SET statement_timeout = '4321ms'")
        .await
        .unwrap();
    assert_eq!(
        harness::text_rows(&other, "SELECT current_setting('statement_timeout')").await,
        [[Some("4321ms".to_owned())]],
        "another client inherited the setting"
    );
    other
        .execute_unprepared("RESET statement_timeout")
        .await
        .unwrap();

    let bouncer = warm_pgbouncer(&db, 3).await;

    let pool = pool_through(&bouncer, &db).await;
    let holder: i32 = pool
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_backend_pid() FROM pg_advisory_lock(42)",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    // Pin server sessions until the holder's is among them, then free the others: the
    // client's next statement can only run on a session that does not hold its lock.
    let url = bouncer.url(db.name()).unwrap();
    let mut pinned = Vec::new();
    loop {
        let mut pin = pin_a_server_session(&url).await;
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .persistent(false)
            .fetch_one(&mut pin)
            .await
            .unwrap();
        if pid == holder {
            break pinned.push(pin);
        }
        pinned.push(pin);
        assert!(pinned.len() < 3, "no pinned session holds the lock");
    }
    for mut other in pinned.drain(..pinned.len() - 1) {
        other.execute("COMMIT").await.unwrap();
    }
    let unlocked: bool = pool
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pg_advisory_unlock(42)",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert!(!unlocked, "the unlock ran on another server session");
    pool.close().await.unwrap();
    let admin = harness::connect(harness::server().admin_url(), 1).await;
    let orphaned = scalar(
        &admin,
        &format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 42
             AND database = (SELECT oid FROM pg_database WHERE datname = '{}')",
            db.name()
        ),
    )
    .await;
    assert_eq!(
        orphaned, 1,
        "the lock outlives its client on a pooled session"
    );

    // A transaction pins one server session for its whole length, so what it scopes to
    // itself (SET LOCAL, transaction locks) works.
    let txn = db.conn().begin().await.unwrap();
    txn.execute_unprepared("SET LOCAL statement_timeout = '1234ms'")
        .await
        .unwrap();
    txn.execute_unprepared("SELECT pg_advisory_xact_lock(7)")
        .await
        .unwrap();
    assert_eq!(
        harness::text_rows(&txn, "SELECT current_setting('statement_timeout')").await,
        [[Some("1234ms".to_owned())]]
    );
    txn.commit().await.unwrap();
}

/// Values of every type the helpers bind, with what could end a literal early.
fn awkward_values() -> Vec<sea_orm::Value> {
    use chrono::{DateTime, FixedOffset, NaiveDate, Utc};
    use sea_orm::{Value, sea_query::ArrayType};
    let instant: DateTime<Utc> = "2026-03-04T05:06:07.123456789Z".parse().unwrap();
    let offset: DateTime<FixedOffset> = "1999-12-31T23:59:59.5-07:30".parse().unwrap();
    let day = NaiveDate::from_ymd_opt(1, 1, 1).unwrap();
    let text = |s: &str| Value::String(Some(s.to_owned()));
    vec![
        text(""),
        text("it's"),
        text("back\\slash \\' and '' and $1 and $$ and -- and /*"),
        text("line\nbreak\ttab \u{e9}\u{1F600}"),
        Value::Char(Some('\'')),
        Value::Bool(Some(true)),
        Value::Bool(None),
        Value::SmallInt(Some(i16::MIN)),
        Value::Int(Some(i32::MIN)),
        Value::BigInt(Some(i64::MIN)),
        Value::BigInt(Some(i64::MAX)),
        Value::Unsigned(Some(u32::MAX)),
        Value::Float(Some(0.1)),
        Value::Double(Some(-0.0)),
        Value::Double(Some(1e-300)),
        Value::Double(Some(f64::NAN)),
        Value::Double(Some(f64::NEG_INFINITY)),
        Value::Bytes(Some((0..=255).collect())),
        Value::Json(Some(Box::new(serde_json::json!({
            "quote": "'", "backslash": "\\", "nested": [1, 2.5, null, {"é": true}]
        })))),
        Value::Uuid(Some(uuid::Uuid::new_v4())),
        Value::Uuid(None),
        Value::ChronoDate(Some(day)),
        Value::ChronoTime(Some(instant.time())),
        Value::ChronoDateTime(Some(instant.naive_utc())),
        Value::ChronoDateTimeUtc(Some(instant)),
        Value::ChronoDateTimeWithTimeZone(Some(offset)),
        Value::ChronoDateTimeUtc(None),
        Value::Array(
            ArrayType::String,
            Some(Box::new(vec![text("a'b"), text("c\\d"), text("")])),
        ),
        Value::Array(ArrayType::Uuid, Some(Box::new(vec![]))),
        Value::Array(ArrayType::BigInt, None),
        Value::Array(
            ArrayType::Json,
            Some(Box::new(vec![Value::Json(Some(Box::new(
                serde_json::json!([]),
            )))])),
        ),
    ]
}

/// `$1` as the server sees it: its type and its text. The statement names the value's
/// position: sqlx caches a statement with the parameter types of its first use.
pub(crate) async fn as_the_server_sees_it(
    db: &impl ConnectionTrait,
    position: usize,
    value: sea_orm::Value,
) -> Result<Vec<Option<String>>, Option<String>> {
    db.query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        format!("SELECT pg_typeof($1)::text, $1::text -- value {position}"),
        [value],
    ))
    .await
    .map(|row| {
        let row = row.unwrap();
        (0..2)
            .map(|i| row.try_get_by_index::<Option<String>>(i).unwrap())
            .collect()
    })
    .map_err(|err| service::sqlstate(&err))
}

#[tokio::test]
async fn every_value_reaches_the_server_as_it_does_bound_as_a_parameter() {
    let db = TestDb::migrated().await;
    let direct = harness::connect(db.direct_url(), 1).await;
    assert_eq!(direct.pooler(), Pooler::None);
    assert_eq!(db.conn().pooler(), Pooler::Transaction);
    let mut values = awkward_values();
    values.push(sea_orm::Value::String(Some("nul \0 byte".to_owned())));
    for (position, value) in values.into_iter().enumerate() {
        let bound = as_the_server_sees_it(&direct, position, value.clone()).await;
        let inlined = as_the_server_sees_it(db.conn(), position, value.clone()).await;
        assert_eq!(inlined, bound, "{value:?}");
    }
    // Rows come back as text through the pooler and in binary directly: decoded the same.
    let row = |db: &Pool| {
        let db = db.clone();
        async move {
            db.query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT now()::timestamptz AS t, '{\"a\": [1]}'::jsonb AS j,
                        ARRAY['x', 'y''z']::text[] AS a, 2.5::float8 AS f, true AS b,
                        gen_random_uuid() AS u, 9007199254740993::int8 AS i",
            ))
            .await
            .unwrap()
            .unwrap()
        }
    };
    let (text, binary) = (row(db.conn()).await, row(&direct).await);
    type Row = (
        chrono::DateTime<chrono::FixedOffset>,
        serde_json::Value,
        Vec<String>,
        f64,
        bool,
        uuid::Uuid,
        i64,
    );
    let decode = |r: &sea_orm::QueryResult| -> Row {
        (
            r.try_get("", "t").unwrap(),
            r.try_get("", "j").unwrap(),
            r.try_get("", "a").unwrap(),
            r.try_get("", "f").unwrap(),
            r.try_get("", "b").unwrap(),
            r.try_get("", "u").unwrap(),
            r.try_get("", "i").unwrap(),
        )
    };
    let (from_text, from_binary) = (decode(&text), decode(&binary));
    assert_eq!(
        (
            &from_text.1,
            &from_text.2,
            from_text.3,
            from_text.4,
            from_text.6
        ),
        (
            &from_binary.1,
            &from_binary.2,
            from_binary.3,
            from_binary.4,
            from_binary.6
        )
    );
}

async fn users(db: &impl ConnectionTrait) -> Vec<Vec<Option<String>>> {
    harness::text_rows(db, "SELECT id FROM users ORDER BY id").await
}

fn insert_user(id: &str) -> String {
    format!("INSERT INTO users (id, name, email) VALUES ('{id}', '{id}', '{id}@example.com')")
}

/// Savepoints committed, rolled back and dropped, a dropped transaction, an empty one, a
/// failing statement and transaction settings, on `pool`.
async fn transactions_behave_on(pool: &Pool) {
    use sea_orm::{AccessMode, IsolationLevel};
    let txn = pool.begin().await.unwrap();
    txn.execute_unprepared(&insert_user("a")).await.unwrap();
    let kept = txn.begin().await.unwrap();
    kept.execute_unprepared(&insert_user("b")).await.unwrap();
    kept.commit().await.unwrap();
    let undone = txn.begin().await.unwrap();
    undone.execute_unprepared(&insert_user("c")).await.unwrap();
    undone.rollback().await.unwrap();
    let dropped = txn.begin().await.unwrap();
    dropped.execute_unprepared(&insert_user("d")).await.unwrap();
    drop(dropped);
    let unused = txn.begin().await.unwrap();
    unused.commit().await.unwrap();
    txn.execute_unprepared(&insert_user("e")).await.unwrap();
    assert_eq!(
        users(&txn).await,
        [["a"], ["b"], ["e"]].map(|r| r.map(|id| Some(id.to_owned())))
    );
    txn.commit().await.unwrap();

    pool.begin().await.unwrap().commit().await.unwrap();
    drop(pool.begin().await.unwrap());
    let abandoned = pool.begin().await.unwrap();
    abandoned
        .execute_unprepared(&insert_user("f"))
        .await
        .unwrap();
    drop(abandoned);
    let expected = [["a"], ["b"], ["e"]].map(|r| r.map(|id| Some(id.to_owned())));
    assert_eq!(
        users(pool).await,
        expected,
        "the dropped transaction was rolled back"
    );
    let failing = pool.begin().await.unwrap();
    assert!(failing.execute_unprepared(&insert_user("a")).await.is_err());
    failing.rollback().await.unwrap();

    let read_only = pool
        .begin_with_config(
            Some(IsolationLevel::Serializable),
            Some(AccessMode::ReadOnly),
        )
        .await
        .unwrap();
    assert_eq!(
        harness::text_rows(
            &read_only,
            "SELECT current_setting('transaction_isolation')"
        )
        .await,
        [[Some("serializable".to_owned())]]
    );
    let refused = read_only
        .execute_unprepared(&insert_user("g"))
        .await
        .unwrap_err();
    assert_eq!(service::sqlstate(&refused).as_deref(), Some("25006"));
    read_only.rollback().await.unwrap();

    assert_eq!(
        users(pool).await,
        [["a"], ["b"], ["e"]].map(|r| r.map(|id| Some(id.to_owned())))
    );
    // Nothing is left open on the server: every transaction above ended there.
    assert_eq!(
        scalar(
            pool,
            "SELECT count(*) FROM pg_stat_activity
             WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn transactions_savepoints_and_drops_behave_alike_direct_and_through_pgbouncer() {
    let (through, direct) = (TestDb::migrated().await, TestDb::migrated().await);
    let pooled = through.new_pool(1).await;
    assert_eq!(pooled.pooler(), Pooler::Transaction);
    assert_eq!(pooled.pooled_statements(), topology::pooled_statements());
    transactions_behave_on(&pooled).await;
    let plain = harness::connect(direct.direct_url(), 1).await;
    assert_eq!(plain.pooler(), Pooler::None);
    transactions_behave_on(&plain).await;
}

/// Server connections of `database` as PostgreSQL counts them.
async fn server_sessions(database: &str) -> i64 {
    let admin = harness::connect(harness::server().admin_url(), 1).await;
    let n = scalar(
        &admin,
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}' AND backend_type = 'client backend'"
        ),
    )
    .await;
    admin.close().await.ok();
    n
}

/// Client connections PgBouncer holds for `database` (its admin console's `SHOW CLIENTS`).
async fn pgbouncer_clients(database: &str) -> usize {
    let options: sqlx::postgres::PgConnectOptions = topology::pgbouncer()
        .admin_url()
        .unwrap()
        .expose()
        .expose_secret()
        .parse()
        .unwrap();
    let mut admin = sqlx::PgConnection::connect_with(&options.extra_float_digits(None))
        .await
        .unwrap();
    let rows = sqlx::raw_sql("SHOW CLIENTS")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    rows.iter()
        .filter(|row| {
            use sqlx::Row;
            row.try_get::<String, _>("database")
                .is_ok_and(|d| d == database)
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_clients_share_five_server_connections_without_an_error() {
    const CLIENTS: usize = 16;
    let db = TestDb::migrated().await;
    harness::fixtures::organization_with_teams(db.conn(), "org_pooled", "T1")
        .await
        .unwrap();
    let pool_size = topology::pgbouncer().settings().server_pool_size as usize;
    assert!(CLIENTS >= 3 * pool_size);
    let all_connected = Arc::new(Barrier::new(CLIENTS + 1));
    let measured = Arc::new(Barrier::new(CLIENTS + 1));
    let url = through_pgbouncer(&db).clone();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|task| {
            let (url, all_connected, measured) =
                (url.clone(), all_connected.clone(), measured.clone());
            tokio::spawn(async move {
                let db = service::connect_with(
                    &service::Topology {
                        pooled_statements: topology::pooled_statements(),
                        ..service::Topology::for_url(url)
                    },
                    &PoolSettings {
                        max_connections: 1,
                        min_connections: 1,
                        ..PoolSettings::default()
                    },
                )
                .await
                .unwrap();
                assert_eq!(db.pooler(), Pooler::Transaction);
                assert_eq!(
                    db.primary().pooled_statements(),
                    topology::pooled_statements()
                );
                all_connected.wait().await;
                measured.wait().await;
                let mut ids = Vec::new();
                for n in 0..20 {
                    let delivery = SlackDelivery {
                        event_id: format!("Ev{task}-{n}"),
                        event_type: "message".into(),
                        team_id: "T1".into(),
                        channel_id: None,
                        slack_user_id: None,
                        payload: serde_json::json!({"task": task, "n": n}),
                    };
                    events::ingest::<SlackEvents>(&db, delivery).await.unwrap();
                    let txn = db.begin().await.unwrap();
                    ids.extend(
                        events::claim::<SlackEvents>(&txn, "org_pooled", 1)
                            .await
                            .unwrap()
                            .into_iter()
                            .map(|e| e.id),
                    );
                    txn.commit().await.unwrap();
                }
                ids
            })
        })
        .collect();
    all_connected.wait().await;
    let clients = pgbouncer_clients(db.name()).await;
    measured.wait().await;
    // Server sessions of the database while the clients work, at their peak.
    let mut servers = 0;
    let mut running = workers;
    let mut claimed = HashSet::new();
    while !running.is_empty() {
        servers = servers.max(server_sessions(db.name()).await);
        let (done, still): (Vec<_>, Vec<_>) = running.into_iter().partition(|w| w.is_finished());
        running = still;
        for worker in done {
            for id in worker.await.unwrap() {
                assert!(claimed.insert(id), "event {id} claimed twice");
            }
        }
    }
    println!(
        "figure: {clients} client connections through PgBouncer on {servers} server connections; {} events claimed once each",
        claimed.len()
    );
    assert!(clients >= CLIENTS, "{clients} clients connected");
    assert!(
        (1..=pool_size as i64).contains(&servers),
        "{servers} server sessions"
    );
    assert!(clients >= 3 * servers as usize);
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM slack_events").await,
        (CLIENTS * 20) as i64
    );
}
