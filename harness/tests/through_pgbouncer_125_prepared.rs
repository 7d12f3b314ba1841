//! Every service helper test and the reliability races again, through PgBouncer 1.25 in
//! transaction mode (5 server connections per database) with the driver's prepared statements
//! (`DB_POOLER_PREPARED_STATEMENTS=true`): the binary's name picks both (see `harness::topology`).
//!
//! Beside them, what this mode rests on, proven against the same PgBouncer: a cached prepared
//! statement runs on the next server session (PgBouncer prepares it there under its own name),
//! its values stay out of the statement text, a transaction keeps its server session, and a
//! pooler that cannot keep prepared statements is refused when the pool opens. What still does
//! not stay with the client (session settings, session locks) is shown by `pgbouncer/shared.rs`.
//! Transactions are sqlx's `BEGIN` and `COMMIT` (simple queries) with SeaORM's `SET TRANSACTION`
//! and the statements prepared inside them, on the one server session PgBouncer keeps for the
//! transaction; a dropped one is rolled back by sqlx before its connection is reused.

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

// `pooler/values.rs` and `pooler/transactions.rs` test the inlining pool (the inliner's literals,
// `pool/session.rs`'s transactions); here values are bound and transactions are SeaORM's, as
// directly. `through_pgbouncer_125_inlined` runs them through 1.25.
#[path = "pooler/traces.rs"]
mod pooler_traces;
#[path = "pgbouncer/shared.rs"]
mod shared;

mod pooler {
    use std::sync::Arc;

    use db_connect::{DatabaseUrl, Pool, PoolSettings, PooledStatements, Pooler};
    use dev_servers::{PgBouncer, PgBouncerRelease, PgBouncerSettings};
    use harness::{TestDb, scalar, text_rows, topology};
    use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
    use secrecy::ExposeSecret;
    use sqlx::Executor;
    use tokio::sync::Barrier;

    use crate::shared::{pin_a_server_session, pool_through, warm_pgbouncer};

    /// `$1` back, and the server session that answered.
    fn answer_and_server(n: i32) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT $1::int4 AS n, pg_backend_pid() AS pid",
            [n.into()],
        )
    }

    async fn run(db: &impl ConnectionTrait, n: i32) -> (i32, i32) {
        let row = db
            .query_one_raw(answer_and_server(n))
            .await
            .unwrap()
            .unwrap();
        (
            row.try_get("", "n").unwrap(),
            row.try_get("", "pid").unwrap(),
        )
    }

    /// The names the statements with `sql`'s text have on the server session of `txn`.
    async fn names_on_this_session(txn: &impl ConnectionTrait, sql: &str) -> Vec<String> {
        txn.query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT name FROM pg_prepared_statements WHERE statement = $1",
            [sql.into()],
        ))
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index(0).unwrap())
        .collect()
    }

    #[test]
    fn this_binary_runs_through_pgbouncer_1_25_with_prepared_statements() {
        assert!(topology::through_pgbouncer());
        assert_eq!(topology::pgbouncer_release(), PgBouncerRelease::V1_25);
        assert_eq!(topology::pooled_statements(), PooledStatements::Prepared);
    }

    #[tokio::test]
    async fn a_cached_prepared_statement_runs_on_the_next_server_session() {
        let db = TestDb::migrated().await;
        let bouncer = warm_pgbouncer(&db, 2).await;
        assert!(
            bouncer.version().starts_with("PgBouncer 1.25"),
            "{}",
            bouncer.version()
        );
        let pool = pool_through(&bouncer, &db).await;
        assert_eq!(
            (pool.pooler(), pool.pooled_statements()),
            (Pooler::Transaction, PooledStatements::Prepared)
        );
        let (_, first) = run(&pool, 1).await;
        // The session that ran it is the most recently used: pinning it makes the next
        // statement, sqlx's cached one (a Bind alone), land on the other.
        let mut pinned = pin_a_server_session(&bouncer.url(db.name()).unwrap()).await;
        let pinned_pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .persistent(false)
            .fetch_one(&mut pinned)
            .await
            .unwrap();
        assert_eq!(pinned_pid, first, "the pin took the session that ran it");
        let (n, second) = run(&pool, 2).await;
        assert_eq!(n, 2);
        assert_ne!(second, first, "it ran on another server session");
        // There PgBouncer prepared it under a name of its own, never the driver's.
        let txn = pool.begin().await.unwrap();
        run(&txn, 3).await;
        let names = names_on_this_session(&txn, answer_and_server(0).sql.as_str()).await;
        txn.rollback().await.unwrap();
        assert!(
            !names.is_empty() && names.iter().all(|n| n.starts_with("PGBOUNCER_")),
            "{names:?}"
        );
        pinned.execute("ROLLBACK").await.unwrap();
    }

    #[tokio::test]
    async fn bound_values_stay_out_of_the_statement_text() {
        let db = TestDb::migrated().await;
        let seen = |pool: Pool| async move {
            let row = pool
                .query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT query FROM pg_stat_activity WHERE pid = pg_backend_pid() AND $1::text IS NOT NULL",
                    ["a-secret-value".into()],
                ))
                .await
                .unwrap()
                .unwrap();
            row.try_get_by_index::<String>(0).unwrap()
        };
        let prepared = seen(db.conn().clone()).await;
        assert!(
            prepared.contains("$1") && !prepared.contains("a-secret-value"),
            "{prepared}"
        );
        let inlining = Pool::connect(db.url(), Pooler::Transaction, &PoolSettings::default())
            .await
            .unwrap();
        assert!(seen(inlining).await.contains("a-secret-value"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_transaction_keeps_its_server_session_while_other_clients_run() {
        const OTHERS: usize = 8;
        let db = TestDb::migrated().await;
        let bouncer = warm_pgbouncer(&db, 2).await;
        let pool = pool_through(&bouncer, &db).await;
        let txn = pool.begin().await.unwrap();
        txn.execute_unprepared("SET LOCAL statement_timeout = '2345ms'")
            .await
            .unwrap();
        let (_, pid) = run(&txn, 0).await;
        let started = Arc::new(Barrier::new(OTHERS + 1));
        let mut others = Vec::new();
        for task in 0..OTHERS {
            let (pool, started) = (pool_through(&bouncer, &db).await, started.clone());
            others.push(tokio::spawn(async move {
                started.wait().await;
                for n in 0..20 {
                    assert_eq!(run(&pool, n).await.0, n, "client {task}");
                }
            }));
        }
        started.wait().await;
        for n in 1..=20 {
            assert_eq!(
                run(&txn, n).await,
                (n, pid),
                "statement {n} of the transaction"
            );
            tokio::task::yield_now().await;
        }
        assert_eq!(
            text_rows(&txn, "SELECT current_setting('statement_timeout')").await,
            [[Some("2345ms".to_owned())]]
        );
        txn.commit().await.unwrap();
        for other in others {
            other.await.unwrap();
        }
    }

    fn insert(id: i32) -> Statement {
        Statement::from_sql_and_values(
            DbBackend::Postgres,
            "INSERT INTO probe (id) VALUES ($1)",
            [id.into()],
        )
    }

    #[tokio::test]
    async fn a_transaction_dropped_while_its_statement_waits_is_rolled_back_before_reuse() {
        let db = TestDb::migrated().await;
        db.conn()
            .execute_unprepared("CREATE TABLE probe (id int PRIMARY KEY)")
            .await
            .unwrap();
        let pool = db.new_pool(1).await;
        assert_eq!(pool.pooled_statements(), PooledStatements::Prepared);
        let (direct, holding) = (
            harness::connect(db.direct_url(), 1).await,
            harness::connect(db.direct_url(), 1).await,
        );
        let holder = holding.begin().await.unwrap();
        holder
            .execute_unprepared("SELECT pg_advisory_xact_lock(77)")
            .await
            .unwrap();
        let txn = pool.begin().await.unwrap();
        txn.execute_raw(insert(1)).await.unwrap();
        let waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objid = 77";
        tokio::select! {
            biased;
            _ = txn.execute_unprepared("SELECT pg_advisory_xact_lock(77)") => panic!("the lock was free"),
            () = async {
                while scalar(&direct, waiting).await == 0 {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            } => {}
        }
        // Cancelled mid-statement, then dropped: its connection goes back to the pool only once
        // the statement has ended and the queued ROLLBACK has run.
        drop(txn);
        holder.rollback().await.unwrap();
        pool.execute_raw(insert(2)).await.unwrap();
        assert_eq!(
            text_rows(&direct, "SELECT id::text FROM probe ORDER BY id").await,
            [[Some("2".to_owned())]],
            "the dropped transaction's insert was rolled back, the next user's committed"
        );
        assert_eq!(
            scalar(
                &direct,
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND state LIKE 'idle in transaction%'"
            )
            .await,
            0
        );
    }

    /// A pool in this mode through `url`: refused, with the refusal's text.
    async fn refusal(url: &DatabaseUrl) -> String {
        let settings = PoolSettings {
            max_connections: 1,
            ..PoolSettings::default()
        };
        match Pool::connect_prepared(url, &settings).await {
            Ok(_) => panic!("a pool through {url} opened"),
            Err(err) => err.to_string(),
        }
    }

    fn bouncer(release: PgBouncerRelease, max_prepared_statements: Option<u32>) -> PgBouncer {
        topology::start_pgbouncer(PgBouncerSettings {
            server_pool_size: 1,
            release,
            max_prepared_statements,
            ..PgBouncerSettings::default()
        })
    }

    #[tokio::test]
    async fn a_pooler_that_cannot_keep_prepared_statements_is_refused_when_the_pool_opens() {
        let db = TestDb::migrated().await;
        let (old, off, on) = (
            bouncer(PgBouncerRelease::V1_18, None),
            bouncer(PgBouncerRelease::V1_25, Some(0)),
            bouncer(PgBouncerRelease::V1_25, Some(200)),
        );
        for (what, url) in [
            ("PgBouncer 1.18", old.url(db.name()).unwrap()),
            (
                "1.25 with max_prepared_statements = 0",
                off.url(db.name()).unwrap(),
            ),
            ("PostgreSQL itself", db.direct_url().clone()),
        ] {
            let err = refusal(&url).await;
            for part in [
                "DB_POOLER_PREPARED_STATEMENTS=true",
                "max_prepared_statements",
                "own name sqlx_s_",
            ] {
                assert!(err.contains(part), "{what}: {part}: {err}");
            }
            assert!(!err.contains(url.password().expose_secret()), "{what}");
        }
        // The check closed what it prepared: nothing is left on the passed-through session.
        let mut pinned = pin_a_server_session(&old.url(db.name()).unwrap()).await;
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_prepared_statements")
            .persistent(false)
            .fetch_one(&mut pinned)
            .await
            .unwrap();
        assert_eq!(left, 0, "statements left on the server session");
        pinned.execute("ROLLBACK").await.unwrap();

        let kept = Pool::connect_prepared(&on.url(db.name()).unwrap(), &PoolSettings::default())
            .await
            .unwrap();
        assert_eq!(scalar(&kept, "SELECT 1::bigint").await, 1);
    }
}
