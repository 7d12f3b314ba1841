//! The worker when things go wrong around its handlers: a handler that panics, a database that
//! is down when an outcome is written or when unstarted events are given back (each retried
//! until the server is back, not left to the lease), and the signals that stop a worker run by
//! `run_until_signal`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use db_connect::PoolSettings;
use dev_servers::ThrowawayCluster;
use entity::SlackEvent;
use harness::{TestDb, scalar, text_rows};
use sea_orm::ConnectionTrait;
use serde_json::json;
use service::{
    Db,
    events::{self, SlackDelivery, SlackEvents},
    worker::{Backoff, CancellationToken, Outcome, Wakeup, Worker, WorkerConfig},
};
use tokio::sync::{Semaphore, mpsc};

fn delivery(n: usize) -> SlackDelivery {
    SlackDelivery {
        event_id: format!("Ev{n:06}"),
        event_type: "app_mention".into(),
        team_id: "T1".into(),
        channel_id: None,
        slack_user_id: None,
        payload: json!({ "n": n }),
    }
}

/// Ingests deliveries `range` of team T1, routed to the organization `org_faults` (created on
/// first use).
async fn ingest(db: &impl ConnectionTrait, range: std::ops::Range<usize>) {
    let routed =
        "SELECT count(*) FROM webhook_routes WHERE provider = 'slack' AND external_id = 'T1'";
    if scalar(db, routed).await == 0 {
        harness::fixtures::organization_with_teams(db, "org_faults", "T1")
            .await
            .unwrap();
    }
    let batch: Vec<_> = range.map(delivery).collect();
    events::ingest_batch::<SlackEvents>(db, &batch)
        .await
        .unwrap();
}

/// Polls `sql` (a count) on `db` until it is `expected`, for at most `limit`.
async fn until_count(db: &impl ConnectionTrait, sql: &str, expected: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let now = scalar(db, sql).await;
        if now == expected {
            return;
        }
        assert!(Instant::now() < deadline, "{sql}: {now}, not {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn quick_reconnects(wakeup: Wakeup) -> WorkerConfig {
    WorkerConfig {
        reconnect: Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_millis(800),
            ..Backoff::RECONNECTS
        },
        ..WorkerConfig::new(wakeup)
    }
}

#[tokio::test]
async fn a_panicking_handler_fails_its_attempt_naming_the_panic() {
    let db = TestDb::migrated().await;
    let handler = |event: SlackEvent| async move {
        match event.payload["n"].as_u64().unwrap() {
            0 => panic!("the agent backend vanished"),
            n => panic!("event {n} broke the parser"),
        }
        #[allow(unreachable_code)]
        Ok::<_, String>(Outcome::Processed)
    };
    let config = WorkerConfig {
        max_attempts: 1,
        ..quick_reconnects(Wakeup::PollOnly)
    };
    let stop = CancellationToken::new();
    let worker = Worker::<SlackEvents, _>::new(db.conn().clone(), handler, config).unwrap();
    let run = tokio::spawn(worker.run(stop.clone()));
    ingest(db.conn(), 0..2).await;
    until_count(
        db.conn(),
        "SELECT count(*) FROM slack_events WHERE status = 'failed'",
        2,
        Duration::from_secs(30),
    )
    .await;
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.failed, 2);
    let errors = text_rows(
        db.conn(),
        "SELECT last_error FROM slack_events ORDER BY event_id",
    )
    .await;
    assert_eq!(
        errors[0][0].as_deref(),
        Some("the handler panicked: the agent backend vanished")
    );
    assert_eq!(
        errors[1][0].as_deref(),
        Some("the handler panicked: event 1 broke the parser")
    );
}

/// A cluster of its own (a test that stops the server must not stop the others'), migrated,
/// and a `Db` on it that gives up on a connection after a second.
async fn own_server() -> (ThrowawayCluster, Db) {
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .unwrap()
        .unwrap();
    let url = cluster.url("postgres").unwrap();
    migration::apply_pending(&url).await.unwrap();
    let settings = PoolSettings {
        max_connections: 4,
        connect_timeout: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(1),
        ..PoolSettings::default()
    };
    let db = service::connect_to(&url, &settings).await.unwrap();
    (cluster, db)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outcome_is_written_once_the_database_is_back_not_left_to_the_lease() {
    let (cluster, db) = own_server().await;
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut started) = mpsc::unbounded_channel();
    let handler = {
        let gate = gate.clone();
        move |_event: SlackEvent| {
            let (gate, tx) = (gate.clone(), tx.clone());
            async move {
                tx.send(()).ok();
                gate.acquire().await.unwrap().forget();
                Ok::<_, String>(Outcome::Processed)
            }
        }
    };
    let stop = CancellationToken::new();
    let worker =
        Worker::<SlackEvents, _>::new(db.clone(), handler, quick_reconnects(Wakeup::PollOnly))
            .unwrap();
    let run = tokio::spawn(worker.run(stop.clone()));
    ingest(&db, 0..1).await;
    started.recv().await.unwrap();
    // The handler finishes while the server is down: writing its outcome fails, and is tried
    // again until the server is back.
    cluster.kill().unwrap();
    gate.add_permits(1);
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart().unwrap();
    until_count(
        &db,
        "SELECT count(*) FROM slack_events WHERE status = 'processed' AND attempts = 1",
        1,
        Duration::from_secs(20),
    )
    .await;
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!((summary.processed, summary.lost_leases), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstarted_events_are_given_back_once_the_database_is_back() {
    let (cluster, db) = own_server().await;
    let gate = Arc::new(Semaphore::new(0));
    let (tx, mut started) = mpsc::unbounded_channel();
    let handler = {
        let gate = gate.clone();
        move |_event: SlackEvent| {
            let (gate, tx) = (gate.clone(), tx.clone());
            async move {
                tx.send(()).ok();
                gate.acquire().await.unwrap().forget();
                Ok::<_, String>(Outcome::Processed)
            }
        }
    };
    let config = WorkerConfig {
        concurrency: 1,
        prefetch: 4,
        ..quick_reconnects(Wakeup::PollOnly)
    };
    let stop = CancellationToken::new();
    let worker = Worker::<SlackEvents, _>::new(db.clone(), handler, config).unwrap();
    let run = tokio::spawn(worker.run(stop.clone()));
    ingest(&db, 0..5).await;
    started.recv().await.unwrap();
    until_count(
        &db,
        "SELECT count(*) FROM slack_events WHERE status = 'processing'",
        5,
        Duration::from_secs(30),
    )
    .await;
    // Stopped while the server is down: giving back the four unstarted fails, and is tried
    // again until the server is back.
    cluster.kill().unwrap();
    stop.cancel();
    tokio::time::sleep(Duration::from_secs(2)).await;
    cluster.restart().unwrap();
    until_count(
        &db,
        "SELECT count(*) FROM slack_events WHERE status = 'pending' AND attempts = 0",
        4,
        Duration::from_secs(20),
    )
    .await;
    gate.add_permits(1);
    let summary = run.await.unwrap();
    assert_eq!((summary.released, summary.processed), (4, 1));
}

#[tokio::test]
async fn run_until_signal_runs_until_sigterm_or_ctrl_c() {
    let db = TestDb::migrated().await;
    // Registered first, so the signals sent below reach tokio's handler, never the default one
    // that would end this test process.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .expect("a SIGINT handler");
    for (n, (signal, seen)) in [(libc::SIGTERM, &mut term), (libc::SIGINT, &mut int)]
        .into_iter()
        .enumerate()
    {
        let handler = |_event: SlackEvent| async { Ok::<_, String>(Outcome::Processed) };
        let worker = Worker::<SlackEvents, _>::new(
            db.conn().clone(),
            handler,
            quick_reconnects(Wakeup::PollOnly),
        )
        .unwrap();
        let running = tokio::spawn(worker.run_until_signal());
        // It runs: what is ingested now is handled.
        let first = n * 3;
        ingest(db.conn(), first..first + 3).await;
        until_count(
            db.conn(),
            "SELECT count(*) FROM slack_events WHERE status = 'processed'",
            (first + 3) as i64,
            Duration::from_secs(30),
        )
        .await;
        assert!(!running.is_finished(), "it stopped without a signal");
        // SAFETY: kill with this process's own id and a signal it handles.
        assert_eq!(unsafe { libc::kill(libc::getpid(), signal) }, 0);
        seen.recv().await;
        let summary = tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the signal stopped it")
            .unwrap();
        assert_eq!(summary.processed, 3);
    }
}
