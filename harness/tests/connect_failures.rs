//! Every library entry point opens its first connection before it reports ready, and a
//! connection that cannot open fails within seconds naming its cause and the masked URL: a
//! closed port, an unknown host, a wrong password, a missing database, a listener that never
//! answers, no connection slot left, TLS refused or required. A lazy pool, asked for by name,
//! fails only at its first statement, after the acquire timeout, saying what it waited for; so
//! does a pool whose server stops while it runs.

use std::time::{Duration, Instant};

use db_connect::{Cause, ConnectError, Pool, PoolSettings, Pooler, Topology};
use dev_servers::ThrowawayCluster;
use harness::{
    TestDb,
    connect_faults::{self, CONNECT_TIMEOUT, Fault, assert_failed_fast},
};
use migration::runner::{self, RunError, RunOptions};
use sea_orm::{ConnectionTrait, TransactionTrait};
use service::worker::{Outcome, Wakeup, Worker, WorkerConfig, WorkerError};

fn quick(max_connections: u32) -> PoolSettings {
    PoolSettings {
        max_connections,
        connect_timeout: CONNECT_TIMEOUT,
        acquire_timeout: Duration::from_secs(1),
        ..PoolSettings::default()
    }
}

fn run_options() -> RunOptions {
    RunOptions {
        connect_timeout: CONNECT_TIMEOUT,
        ..RunOptions::default()
    }
}

/// Checks one entry point's failure: fast, named, and of the fault's cause.
fn check(entry: &str, fault: &Fault, started: Instant, err: &ConnectError) {
    assert_failed_fast(entry, fault, started.elapsed(), &err.to_string());
    assert_eq!(
        err.cause(),
        fault.cause,
        "{entry} against {}: {err}",
        fault.name
    );
    assert_eq!(err.url(), fault.url.to_string());
}

async fn every_entry_point_fails_fast_naming(fault: &Fault) {
    let url = &fault.url;
    let started = Instant::now();
    let err = db_connect::connect(url, &quick(2)).await.unwrap_err();
    check("db_connect::connect", fault, started, &err);

    for pooler in [Pooler::None, Pooler::Transaction] {
        let started = Instant::now();
        let err = Pool::connect(url, pooler, &quick(2)).await.unwrap_err();
        check(&format!("Pool::connect ({pooler})"), fault, started, &err);
    }

    let started = Instant::now();
    let err = service::connect_with(&Topology::for_url(url.clone()), &quick(2))
        .await
        .unwrap_err();
    match &err {
        service::Error::Connect(err) => check("service::connect_with", fault, started, err),
        other => panic!("service::connect_with against {}: {other:?}", fault.name),
    }

    let started = Instant::now();
    match migration::apply_pending_with(url, &run_options()).await {
        Err(RunError::Connect(err)) => check("migration::apply_pending", fault, started, &err),
        other => panic!("apply_pending against {}: {other:?}", fault.name),
    }
    let started = Instant::now();
    match runner::status_with::<migration::Migrator>(url, &run_options()).await {
        Err(RunError::Connect(err)) => check("runner::status", fault, started, &err),
        other => panic!("status against {}: {other:?}", fault.name),
    }
}

#[tokio::test]
async fn every_library_entry_point_fails_fast_naming_the_cause() {
    for fault in connect_faults::all().await {
        every_entry_point_fails_fast_naming(&fault).await;
    }
}

#[tokio::test]
async fn a_server_that_accepts_only_tls_is_named_to_a_url_without_it() {
    let fault = connect_faults::tls_required().await;
    every_entry_point_fails_fast_naming(&fault).await;
    // The same server, the same credentials, with TLS: it connects.
    let raw = fault
        .raw_url()
        .replace("sslmode=disable", "sslmode=require");
    let with_tls = db_connect::DatabaseUrl::parse(&raw).unwrap();
    let pool = Pool::connect(&with_tls, Pooler::None, &quick(1))
        .await
        .unwrap();
    assert_eq!(harness::scalar(&pool, "SELECT 1::int8").await, 1);
    // A login its pg_hba.conf rejects, with TLS, is refused as such.
    let refused = db_connect::DatabaseUrl::parse(&format!(
        "postgresql://{}:pw@{}:{}/postgres?sslmode=require",
        connect_faults::REFUSED_LOGIN,
        with_tls.host(),
        with_tls.port()
    ))
    .unwrap();
    let err = Pool::connect(&refused, Pooler::None, &quick(1))
        .await
        .unwrap_err();
    assert_eq!(err.cause(), Cause::LoginRejected, "{err}");
    assert!(
        err.to_string().contains("pg_hba.conf rejects connection"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_shutting_down_is_named_not_retried_until_the_timeout() {
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = cluster.url("postgres").unwrap();
    // A session left open keeps a smart shutdown waiting, refusing new connections meanwhile.
    let open = Pool::connect(&url, Pooler::None, &quick(1)).await.unwrap();
    assert_eq!(harness::scalar(&open, "SELECT 1::int8").await, 1);
    let pid_file = std::fs::read_to_string(cluster.dir().join("data/postmaster.pid")).unwrap();
    let postmaster: i32 = pid_file.lines().next().unwrap().trim().parse().unwrap();
    // SAFETY: SIGTERM to the cluster's own postmaster asks it for a smart shutdown.
    assert_eq!(unsafe { libc::kill(postmaster, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    let err = loop {
        match Pool::connect(&url, Pooler::None, &quick(1)).await {
            Err(err) if err.cause() == Cause::NotReady => break err,
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "the server never refused as shutting down"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    assert!(err.to_string().contains("shutting down"), "{err}");
    let started = Instant::now();
    let again = Pool::connect(&url, Pooler::None, &quick(1))
        .await
        .unwrap_err();
    assert_eq!(again.cause(), Cause::NotReady, "{again}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "named at once, not after retries"
    );
    open.close().await.ok();
}

#[tokio::test]
async fn the_worker_listens_before_it_returns_and_a_wrong_listener_url_fails_fast() {
    let db = TestDb::migrated().await;
    let handler = |_event: entity::SlackEvent| async { Ok::<_, String>(Outcome::Processed) };
    for fault in [connect_faults::refused(), connect_faults::never_answers()] {
        let config = WorkerConfig {
            connect_timeout: CONNECT_TIMEOUT,
            ..WorkerConfig::new(Wakeup::Listen(fault.url.clone()))
        };
        let started = Instant::now();
        let worker = service::worker::Worker::<service::events::SlackEvents, _>::connect(
            db.conn().clone(),
            handler,
            config,
        )
        .await;
        match worker {
            Err(WorkerError::Connect(err)) => check("Worker::connect", &fault, started, &err),
            Err(other) => panic!("Worker::connect against {}: {other}", fault.name),
            Ok(_) => panic!("Worker::connect against {} succeeded", fault.name),
        }
    }
    // A reachable URL: the session is open (and listening) when connect returns.
    let config = WorkerConfig::new(Wakeup::Listen(db.direct_url().clone()));
    let worker =
        Worker::<service::events::SlackEvents, _>::connect(db.conn().clone(), handler, config)
            .await
            .unwrap();
    let listening = harness::scalar(
        db.conn(),
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{}' AND datname = '{}'",
            service::worker::LISTENER_APPLICATION_NAME,
            db.name()
        ),
    )
    .await;
    assert_eq!(listening, 1, "the listener's session is open before run");
    drop(worker);
}

#[tokio::test]
async fn a_lazy_pool_opens_nothing_and_its_first_statement_says_what_it_waited_for() {
    let fault = connect_faults::refused();
    let started = Instant::now();
    let pool = Pool::connect_lazy(&fault.url, Pooler::None, &quick(3))
        .await
        .expect("a lazy pool connects to nothing");
    assert!(started.elapsed() < Duration::from_secs(1));
    let err = pool.execute_unprepared("SELECT 1").await.unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains(&format!(
            "timed out after 1 s (DB_ACQUIRE_TIMEOUT_SECS) waiting for a connection to {}",
            fault.url
        )),
        "{message}"
    );
    assert!(
        message.contains("0 of at most 3 (DB_MAX_CONNECTIONS) open")
            && message.contains("no new one could be opened"),
        "{message}"
    );
    let db = service::Db::connect_lazy(&Topology::for_url(fault.url.clone()), &quick(3))
        .await
        .expect("a lazy Db connects to nothing");
    let err = service::Error::from(db.execute_unprepared("SELECT 1").await.unwrap_err());
    assert!(err.is_retryable(), "{err}");
    assert!(err.to_string().contains("DB_ACQUIRE_TIMEOUT_SECS"), "{err}");
}

#[tokio::test]
async fn a_pool_whose_connections_are_all_in_use_says_so_when_it_times_out() {
    let db = TestDb::migrated().await;
    for pooler in [Pooler::None, Pooler::Transaction] {
        let pool = Pool::connect(db.direct_url(), pooler, &quick(1))
            .await
            .unwrap();
        let held = pool.begin().await.unwrap();
        held.execute_unprepared("SELECT 1").await.unwrap();
        let err = pool.execute_unprepared("SELECT 1").await.unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("1 of at most 1 (DB_MAX_CONNECTIONS) open, all in use"),
            "{pooler}: {message}"
        );
        let err = pool.begin().await.unwrap_err().to_string();
        assert!(err.contains("all in use"), "{pooler}: {err}");
        held.rollback().await.unwrap();
        assert_eq!(harness::scalar(&pool, "SELECT 1::int8").await, 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_stopped_mid_run_fails_each_statement_within_the_acquire_timeout_naming_the_wait()
{
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = cluster.url("postgres").unwrap();
    let db = service::connect_to(&url, &quick(2)).await.unwrap();
    assert_eq!(harness::scalar(&db, "SELECT 1::int8").await, 1);
    cluster.kill().unwrap();
    for _ in 0..2 {
        let started = Instant::now();
        let err = service::Error::from(db.execute_unprepared("SELECT 1").await.unwrap_err());
        let took = started.elapsed();
        assert!(took < Duration::from_secs(8), "{took:?}: {err}");
        assert!(err.is_retryable(), "{err}");
        let message = err.to_string();
        assert!(
            message.contains(&format!("waiting for a connection to {url}"))
                && message.contains("no new one could be opened"),
            "{message}"
        );
    }
    // A new pool is refused at once, by name.
    let started = Instant::now();
    let err = Pool::connect(&url, Pooler::None, &quick(2))
        .await
        .unwrap_err();
    assert_eq!(err.cause(), Cause::Refused, "{err}");
    assert!(started.elapsed() < Duration::from_secs(8));
    cluster.restart().unwrap();
    assert_eq!(
        harness::scalar(&db, "SELECT 1::int8").await,
        1,
        "the pool recovers"
    );
}
