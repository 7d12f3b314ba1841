//! Every service helper test and the reliability races again, through a real PgBouncer in
//! transaction mode (5 server connections per database): the harness gives this binary's test
//! databases through PgBouncer because of the binary's name (see `harness::topology`).
//!
//! Beside them: what breaks through the pooler with SeaORM's own pool (each break proven here
//! against the same PgBouncer), and proof that clients really outnumbered server connections.

#[path = "reliability_events.rs"]
mod reliability_events;
#[path = "reliability_input.rs"]
mod reliability_input;
#[path = "reliability_integrity.rs"]
mod reliability_integrity;
#[path = "service_agents.rs"]
mod service_agents;
#[path = "service_auth.rs"]
mod service_auth;
#[path = "service_errors.rs"]
mod service_errors;
#[path = "service_events.rs"]
mod service_events;
#[path = "service_integrations.rs"]
mod service_integrations;
#[path = "service_organizations.rs"]
mod service_organizations;
#[path = "service_tools.rs"]
mod service_tools;

#[path = "pooler/properties.rs"]
mod pooler_properties;
#[path = "pooler/reads.rs"]
mod pooler_reads;
#[path = "pooler/statements.rs"]
mod pooler_statements;
#[path = "pooler/traces.rs"]
mod pooler_traces;
#[path = "pooler/transactions.rs"]
mod pooler_transactions;
#[path = "pooler/values.rs"]
mod pooler_values;
#[path = "pgbouncer/shared.rs"]
mod shared;

mod pooler {
    use db_connect::{DatabaseUrl, Pool, PoolSettings, Pooler};
    use dev_servers::PgBouncer;
    use harness::{TestDb, scalar};
    use sea_orm::{
        ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, Statement,
    };
    use secrecy::ExposeSecret;
    use sqlx::Connection;

    pub(crate) use crate::shared::{as_the_server_sees_it, pool_through, warm_pgbouncer};
    use crate::shared::{pin_a_server_session, through_pgbouncer};

    fn typed_select(n: i32) -> Statement {
        Statement::from_sql_and_values(DbBackend::Postgres, "SELECT $1::int4 AS n", [n.into()])
    }

    fn sqlstate(result: Result<Option<sea_orm::QueryResult>, DbErr>) -> Option<String> {
        service::sqlstate(&result.err()?)
    }

    /// SeaORM's own pool through `bouncer`, as a service without this workspace's pool would
    /// open it (less `extra_float_digits`, which PgBouncer refuses at once).
    async fn seaorm_pool(
        bouncer: &PgBouncer,
        db: &TestDb,
        statement_cache: Option<usize>,
    ) -> DatabaseConnection {
        let settings = PoolSettings {
            max_connections: 1,
            ..PoolSettings::default()
        };
        let url = bouncer.url(db.name()).unwrap();
        let pool = db_connect::connect::pool_options(&settings);
        let opening = db_connect::Opening::Now(settings.connect_timeout);
        db_connect::connect::open_pool(&url, pool, opening, move |o| match statement_cache {
            Some(capacity) => o.statement_cache_capacity(capacity),
            None => o,
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn startup_parameters_pgbouncer_does_not_know_are_refused() {
        let db = TestDb::migrated().await;
        let defaults = ConnectOptions::new(through_pgbouncer(&db).expose().expose_secret());
        let err = Database::connect(defaults).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("unsupported startup parameter: extra_float_digits"),
            "{err}"
        );
        // This workspace's connections leave the parameter out.
        let pool = Pool::connect(db.url(), Pooler::Transaction, &PoolSettings::default())
            .await
            .unwrap();
        assert_eq!(scalar(&pool, "SELECT 1::bigint").await, 1);
        let plain = db_connect::connect(db.url(), &PoolSettings::default())
            .await
            .unwrap();
        plain.execute_unprepared("SELECT 1").await.unwrap();
        // Session defaults in the URL travel as the `options` startup parameter: refused too.
        let with_options = DatabaseUrl::parse(&format!(
            "{}?options=-c%20statement_timeout%3D5000",
            db.url().expose().expose_secret()
        ))
        .unwrap();
        let err = Pool::connect(&with_options, Pooler::Transaction, &PoolSettings::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("unsupported startup parameter: options"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_cached_prepared_statement_is_missing_on_the_next_server_session() {
        let db = TestDb::migrated().await;
        let bouncer = warm_pgbouncer(&db, 2).await;
        let seaorm = seaorm_pool(&bouncer, &db, None).await;
        seaorm.query_one_raw(typed_select(1)).await.unwrap();
        // The session holding sqlx_s_1 is the most recently used: pinning it makes the next
        // statement land on the other one.
        let pinned = pin_a_server_session(&bouncer.url(db.name()).unwrap()).await;
        assert_eq!(
            sqlstate(seaorm.query_one_raw(typed_select(2)).await).as_deref(),
            Some("26000"),
            "prepared statement sqlx_s_1 does not exist"
        );
        drop(pinned);

        let ours = pool_through(&bouncer, &db).await;
        ours.query_one_raw(typed_select(1)).await.unwrap();
        let _pinned = pin_a_server_session(&bouncer.url(db.name()).unwrap()).await;
        ours.query_one_raw(typed_select(2)).await.unwrap();
    }

    #[tokio::test]
    async fn without_the_cache_named_statements_leak_and_collide_between_clients() {
        let db = TestDb::migrated().await;
        let bouncer = warm_pgbouncer(&db, 1).await;
        let first = seaorm_pool(&bouncer, &db, Some(0)).await;
        let second = seaorm_pool(&bouncer, &db, Some(0)).await;
        // Each client names its first statement sqlx_s_1 and never closes it, on the one
        // server session they share.
        first.query_one_raw(typed_select(1)).await.unwrap();
        assert_eq!(
            sqlstate(second.query_one_raw(typed_select(2)).await).as_deref(),
            Some("42P05"),
            "prepared statement sqlx_s_1 already exists"
        );

        let (a, b) = (
            pool_through(&bouncer, &db).await,
            pool_through(&bouncer, &db).await,
        );
        for n in 0..4 {
            a.query_one_raw(typed_select(n)).await.unwrap();
            b.query_one_raw(typed_select(n)).await.unwrap();
        }
    }

    /// Runs `SELECT $1 + task` 100 times on each of 16 clients at once and counts the answers
    /// that are not this client's own (another client's statement ran with its parameters).
    async fn wrong_answers(db: &TestDb, ours: bool) -> usize {
        let url = through_pgbouncer(db).clone();
        let tasks = (0..16i32).map(|task| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut wrong = 0;
                let pool = Pool::connect(&url, Pooler::Transaction, &PoolSettings::default())
                    .await
                    .unwrap();
                let options: sqlx::postgres::PgConnectOptions =
                    url.expose().expose_secret().parse().unwrap();
                let mut raw = sqlx::PgConnection::connect_with(&options.extra_float_digits(None))
                    .await
                    .unwrap();
                for i in 0..100i32 {
                    let sql = format!("SELECT $1::int4 + {task}");
                    let answer = match ours {
                        true => pool
                            .query_one_raw(Statement::from_sql_and_values(
                                DbBackend::Postgres,
                                &sql,
                                [i.into()],
                            ))
                            .await
                            .map(|row| row.unwrap().try_get_by_index::<i32>(0).unwrap())
                            .map_err(|err| err.to_string()),
                        // Unnamed statements, as sqlx sends them with `persistent(false)`: Parse
                        // and Bind in two Syncs.
                        false => sqlx::query_scalar::<_, i32>(sqlx::AssertSqlSafe(sql))
                            .bind(i)
                            .persistent(false)
                            .fetch_one(&mut raw)
                            .await
                            .map_err(|err| err.to_string()),
                    };
                    if answer != Ok(i + task) {
                        wrong += 1;
                    }
                }
                wrong
            })
        });
        let mut wrong = 0;
        for task in tasks.collect::<Vec<_>>() {
            wrong += task.await.unwrap();
        }
        wrong
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn unnamed_statements_in_two_syncs_run_other_clients_statements() {
        let db = TestDb::migrated().await;
        let wrong = wrong_answers(&db, false).await;
        println!("figure: unnamed statements through PgBouncer: {wrong} of 1600 answers wrong");
        assert!(wrong > 0, "the Bind never reached another server session");
        assert_eq!(wrong_answers(&db, true).await, 0);
    }
}
