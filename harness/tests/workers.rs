//! service::worker against real PostgreSQL: wake-up by NOTIFY, polling when the listener is
//! cut off, retries on the backoff schedule, leases of dead workers, shutdown, many workers at
//! once, and pruning. Waits are bounded; the few bounds on time are far from what they guard
//! (a poll interval of 60 s against a wait of 10 s), and the bench measures the real speed.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use entity::SlackEvent;
use harness::{TestDb, db_connect::DatabaseUrl, fixtures, scalar, text_rows};
use sea_orm::ConnectionTrait;
use serde_json::json;
use service::Pool;
use service::{
    events::{self, ClaimOptions, Claimed, Settle, SlackDelivery, SlackEvents},
    worker::{self, Backoff, CancellationToken, Outcome, RunSummary, Wakeup, Worker, WorkerConfig},
};
use tokio::{
    net::TcpListener,
    sync::mpsc,
    task::JoinSet,
    time::{Instant, timeout},
};

fn delivery(n: usize) -> SlackDelivery {
    SlackDelivery {
        event_id: format!("Ev{n:06}"),
        event_type: "app_mention".into(),
        team_id: "T1".into(),
        channel_id: Some("C1".into()),
        slack_user_id: None,
        payload: json!({ "n": n }),
    }
}

/// The organization whose Slack team `T1` sends every delivery of these tests.
const ORG: &str = "org_workers";

/// A migrated database with [`ORG`] connected to team `T1`, so ingested events are routed to it.
async fn migrated() -> TestDb {
    let db = TestDb::migrated().await;
    fixtures::organization_with_teams(db.conn(), ORG, "T1")
        .await
        .unwrap();
    db
}

async fn ingest(db: &impl ConnectionTrait, range: std::ops::Range<usize>) {
    let batch: Vec<_> = range.map(delivery).collect();
    events::ingest_batch::<SlackEvents>(db, &batch)
        .await
        .unwrap();
}

fn settings(wakeup: Wakeup) -> WorkerConfig {
    WorkerConfig {
        reconnect: Backoff {
            base: Duration::from_millis(50),
            max: Duration::from_millis(200),
            ..Backoff::RECONNECTS
        },
        ..WorkerConfig::new(wakeup)
    }
}

/// Starts a worker on its own task; cancel the token to stop it.
fn spawn<H>(
    db: &Pool,
    handler: H,
    config: WorkerConfig,
) -> (CancellationToken, tokio::task::JoinHandle<RunSummary>)
where
    H: worker::Handler<SlackEvent>,
{
    let stop = CancellationToken::new();
    let worker = Worker::<SlackEvents, _>::new(db.clone(), handler, config).unwrap();
    (stop.clone(), tokio::spawn(worker.run(stop)))
}

async fn count(db: &TestDb, condition: &str) -> i64 {
    scalar(
        db.conn(),
        &format!("SELECT count(*) FROM slack_events WHERE {condition}"),
    )
    .await
}

/// Polls the database until `condition` holds for `expected` rows, or panics after `limit`.
async fn until_count(db: &TestDb, condition: &str, expected: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let n = count(db, condition).await;
        if n == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{n} rows, not {expected}, where {condition}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn listener_sessions(db: &TestDb) -> i64 {
    scalar(
        db.conn(),
        &format!(
            "SELECT count(*) FROM pg_stat_activity
             WHERE application_name = '{}' AND query LIKE 'LISTEN%' AND datname = current_database()",
            worker::LISTENER_APPLICATION_NAME
        ),
    )
    .await
}

async fn until_listening(db: &TestDb, sessions: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while listener_sessions(db).await != sessions {
        assert!(
            Instant::now() < deadline,
            "the listener never reached {sessions} sessions"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A handler that reports every event it starts on a channel, then returns `outcome`.
fn reporting(
    outcome: Outcome,
) -> (
    impl worker::Handler<SlackEvent>,
    mpsc::UnboundedReceiver<(SlackEvent, Instant)>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let handler = move |event: SlackEvent| {
        let (tx, outcome) = (tx.clone(), outcome.clone());
        async move {
            tx.send((event, Instant::now())).ok();
            Ok::<_, std::convert::Infallible>(outcome)
        }
    };
    (handler, rx)
}

#[tokio::test]
async fn an_idle_worker_is_woken_by_the_ingest_notification_not_by_polling() {
    let db = migrated().await;
    let (handler, mut started) = reporting(Outcome::Processed);
    let config = WorkerConfig {
        poll_interval: Duration::from_secs(60),
        ..settings(Wakeup::Listen(db.url().clone()))
    };
    let (stop, run) = spawn(db.conn(), handler, config);
    until_listening(&db, 1).await;
    // The first may be found by the claim that follows the listener's connect; the second can
    // only be found through its notification, since the next poll is a minute away.
    for n in 0..2 {
        let sent = Instant::now();
        ingest(db.conn(), n..n + 1).await;
        let (event, at) = timeout(Duration::from_secs(10), started.recv())
            .await
            .expect("handled long before the 60 s poll")
            .unwrap();
        assert_eq!(event.event_id, delivery(n).event_id);
        println!(
            "figure: event {n} handled {:?} after its ingest began",
            at - sent
        );
    }
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.processed, 2);
    assert_eq!(count(&db, "status = 'processed'").await, 2);
}

/// A TCP proxy to the database that the test can cut, as a network failure would.
struct Proxy {
    port: u16,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start(target: &DatabaseUrl, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = format!("{}:{}", target.host(), target.port());
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let target = target.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        tokio::io::copy_bidirectional(&mut client, &mut server)
                            .await
                            .ok();
                    }
                });
            }
        });
        Self { port, tasks }
    }

    fn url(&self, db: &DatabaseUrl) -> DatabaseUrl {
        DatabaseUrl::new(
            db.user(),
            db.password().clone(),
            "127.0.0.1",
            self.port,
            db.database(),
        )
        .unwrap()
    }

    /// Closes the port and every connection through it.
    async fn cut(mut self) -> u16 {
        self.tasks.shutdown().await;
        self.port
    }
}

#[tokio::test]
async fn when_the_listener_is_cut_off_polling_takes_over_and_nothing_is_lost() {
    let db = migrated().await;
    let proxy = Proxy::start(db.url(), 0).await;
    let (handler, mut started) = reporting(Outcome::Processed);
    let config = WorkerConfig {
        poll_interval: Duration::from_millis(200),
        ..settings(Wakeup::Listen(proxy.url(db.url())))
    };
    let (stop, run) = spawn(db.conn(), handler, config);
    until_listening(&db, 1).await;
    let port = proxy.cut().await;
    until_listening(&db, 0).await;
    // Nobody listens now, and reconnecting fails: only polling can find these.
    for batch in 0..5 {
        ingest(db.conn(), batch * 10..batch * 10 + 10).await;
    }
    let mut seen = HashMap::new();
    while seen.len() < 50 {
        let (event, _) = timeout(Duration::from_secs(30), started.recv())
            .await
            .expect("polling finds every event")
            .unwrap();
        *seen.entry(event.event_id).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "each handled once");
    assert_eq!(listener_sessions(&db).await, 0, "still cut off");
    // The network comes back: the listener reconnects on its own.
    let _proxy = Proxy::start(db.url(), port).await;
    until_listening(&db, 1).await;
    ingest(db.conn(), 50..51).await;
    timeout(Duration::from_secs(30), started.recv())
        .await
        .unwrap()
        .unwrap();
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.processed, 51);
    until_count(&db, "status = 'processed'", 51, Duration::from_secs(10)).await;
}

#[tokio::test]
async fn failed_attempts_wait_out_the_backoff_then_fail_for_good_with_a_redacted_error() {
    let db = migrated().await;
    let (tx, mut attempts) = mpsc::unbounded_channel();
    let handler = move |event: SlackEvent| {
        let tx = tx.clone();
        async move {
            tx.send((event.attempts, Instant::now())).ok();
            Err::<Outcome, _>(format!(
                "slack said invalid_auth for token xoxb-1111-2222-abcdef (attempt {})",
                event.attempts
            ))
        }
    };
    let retry = Backoff {
        base: Duration::from_millis(400),
        factor: 2.0,
        max: Duration::from_secs(10),
        jitter: 0.5,
    };
    let config = WorkerConfig {
        max_attempts: 3,
        retry,
        poll_interval: Duration::from_secs(60),
        ..settings(Wakeup::Listen(db.url().clone()))
    };
    let (stop, run) = spawn(db.conn(), handler, config);
    ingest(db.conn(), 0..1).await;
    let mut starts = Vec::new();
    for expected in 1..=3 {
        let (attempt, at) = timeout(Duration::from_secs(30), attempts.recv())
            .await
            .expect("the retry comes once its backoff is over")
            .unwrap();
        assert_eq!(attempt, expected);
        starts.push(at);
    }
    until_count(&db, "status = 'failed'", 1, Duration::from_secs(10)).await;
    // No attempt starts before its due time, whatever the jitter.
    for (n, gap) in starts.windows(2).map(|w| w[1] - w[0]).enumerate() {
        let shortest = retry.shortest(n as u32 + 1);
        println!(
            "figure: retry {} after {gap:?} (schedule >= {shortest:?})",
            n + 1
        );
        assert!(
            gap >= shortest,
            "retry {} after {gap:?} < {shortest:?}",
            n + 1
        );
    }
    let row = text_rows(
        db.conn(),
        "SELECT attempts::text, last_error FROM slack_events",
    )
    .await;
    assert_eq!(row[0][0].as_deref(), Some("3"));
    let error = row[0][1].clone().unwrap();
    assert!(!error.contains("xoxb"), "{error}");
    assert!(
        error.contains("[redacted]") && error.contains("attempt 3"),
        "{error}"
    );
    assert!(
        timeout(Duration::from_millis(500), attempts.recv())
            .await
            .is_err(),
        "no fourth attempt"
    );
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!((summary.retried, summary.failed), (2, 1));
}

#[tokio::test]
async fn outcomes_move_events_as_the_handler_says() {
    let db = migrated().await;
    // Event n: 0 processed, 1 ignored, 2 failed for good, 3 retried after 1 hour.
    let handler = |event: SlackEvent| async move {
        Ok::<_, String>(match event.payload["n"].as_u64().unwrap() {
            0 => Outcome::Processed,
            1 => Outcome::Ignored,
            2 => Outcome::Failed("unknown channel; password=hunter2".into()),
            _ => Outcome::RetryAfter(Duration::from_secs(3600)),
        })
    };
    let (stop, run) = spawn(db.conn(), handler, settings(Wakeup::PollOnly));
    ingest(db.conn(), 0..4).await;
    until_count(
        &db,
        "status <> 'processing' AND attempts = 1",
        4,
        Duration::from_secs(30),
    )
    .await;
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!(
        (
            summary.processed,
            summary.ignored,
            summary.failed,
            summary.retried
        ),
        (1, 1, 1, 1)
    );
    let rows = text_rows(
        db.conn(),
        "SELECT status, last_error, (processed_at IS NOT NULL)::text,
                (due_at > now() + interval '50 minutes')::text
         FROM slack_events ORDER BY event_id",
    )
    .await;
    let row = |i: usize| rows[i].iter().map(|c| c.as_deref()).collect::<Vec<_>>();
    assert_eq!(
        row(0),
        [Some("processed"), None, Some("true"), Some("false")]
    );
    assert_eq!(row(1), [Some("ignored"), None, Some("true"), Some("false")]);
    assert_eq!(
        row(2),
        [
            Some("failed"),
            Some("unknown channel; password=[redacted]"),
            Some("false"),
            Some("false")
        ]
    );
    assert_eq!(row(3), [Some("pending"), None, Some("false"), Some("true")]);
}

#[tokio::test]
async fn a_handler_running_past_its_lease_keeps_its_event_while_the_worker_renews_it() {
    let db = migrated().await;
    let handler = |_event: SlackEvent| async move {
        tokio::time::sleep(Duration::from_secs(4)).await;
        Ok::<_, String>(Outcome::Processed)
    };
    let config = WorkerConfig {
        lease: Duration::from_millis(1500),
        ..settings(Wakeup::PollOnly)
    };
    let (stop, run) = spawn(db.conn(), handler, config);
    ingest(db.conn(), 0..1).await;
    until_count(&db, "status = 'processing'", 1, Duration::from_secs(30)).await;
    // Another worker keeps trying while the handler runs more than twice the lease: the
    // renewed lease must keep the event from it.
    let mut taken = Vec::new();
    while taken.is_empty() && count(&db, "status = 'processing'").await == 1 {
        taken.extend(
            events::claim::<SlackEvents>(db.conn(), ORG, 1)
                .await
                .unwrap(),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    run.await.unwrap();
    assert!(taken.is_empty(), "another worker took a running event");
    assert_eq!(
        count(&db, "status = 'processed' AND attempts = 1").await,
        1,
        "handled once, by the worker that claimed it"
    );
}

#[tokio::test]
async fn an_idle_worker_wakes_when_the_next_event_comes_due_not_at_its_next_poll() {
    let db = migrated().await;
    ingest(db.conn(), 0..1).await;
    // Due in a second (a retry another worker scheduled, a lease running out): no notification
    // will come for it, and the next poll is an hour away.
    db.conn()
        .execute_unprepared("UPDATE slack_events SET due_at = now() + interval '1 second'")
        .await
        .unwrap();
    let config = WorkerConfig {
        poll_interval: Duration::from_secs(3600),
        ..settings(Wakeup::PollOnly)
    };
    let (handler, _started) = reporting(Outcome::Processed);
    let (stop, run) = spawn(db.conn(), handler, config);
    until_count(&db, "status = 'processed'", 1, Duration::from_secs(30)).await;
    stop.cancel();
    run.await.unwrap();
}

/// Makes every event due: its backoff or its lease is over.
async fn make_due(db: &TestDb) {
    db.conn()
        .execute_unprepared("UPDATE slack_events SET due_at = now() - interval '1 second'")
        .await
        .unwrap();
}

#[tokio::test]
async fn claims_honour_due_times_and_leases_and_fence_moves_of_lost_claims() {
    let db = migrated().await;
    ingest(db.conn(), 0..1).await;
    let lease = ClaimOptions {
        limit: 10,
        lease: Duration::from_secs(300),
        max_attempts: Some(2),
    };
    let claim_due = || async {
        events::claim_with::<SlackEvents>(db.conn(), ORG, lease)
            .await
            .unwrap()
    };
    let first = claim_due().await;
    let claim = Claimed {
        id: first[0].id,
        attempt: 1,
    };
    let retry = Settle::Retry {
        after: Duration::from_secs(5),
        error: "timeout".into(),
    };
    assert_eq!(
        events::settle::<SlackEvents>(db.conn(), ORG, &[(claim, retry)])
            .await
            .unwrap(),
        [claim.id]
    );
    assert_eq!(
        text_rows(
            db.conn(),
            "SELECT (due_at - updated_at)::text FROM slack_events"
        )
        .await[0][0]
            .as_deref(),
        Some("00:00:05"),
        "due exactly the backoff after the failure"
    );
    assert!(claim_due().await.is_empty());
    make_due(&db).await;
    let second = claim_due().await;
    assert_eq!(second[0].attempts, 2);
    assert!(claim_due().await.is_empty(), "leased");
    // A move naming the old attempt changes nothing.
    assert!(
        events::settle::<SlackEvents>(db.conn(), ORG, &[(claim, Settle::Processed)])
            .await
            .unwrap()
            .is_empty()
    );
    // Its worker dies on the last attempt: when the lease ends, the event fails.
    make_due(&db).await;
    assert!(claim_due().await.is_empty());
    let row = text_rows(
        db.conn(),
        "SELECT status, attempts::text, last_error FROM slack_events",
    )
    .await;
    assert_eq!(row[0][0].as_deref(), Some("failed"));
    assert_eq!(row[0][1].as_deref(), Some("2"));
    assert!(row[0][2].as_deref().unwrap().contains("lease expired"));
}

#[test]
fn a_worker_killed_mid_handler_has_its_event_reclaimed_once_after_the_lease() {
    let main = tokio::runtime::Runtime::new().unwrap();
    let db = main.block_on(migrated());
    main.block_on(ingest(db.conn(), 0..1));
    // The doomed worker runs on a runtime of its own, dropped mid-handler as a crash would.
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    let url = db.url().clone();
    let doomed = tokio::runtime::Runtime::new().unwrap();
    doomed.spawn(async move {
        let pool = harness::connect(&url, 2).await;
        let handler = move |event: SlackEvent| {
            started_tx.send(event.attempts).ok();
            std::future::pending::<Result<Outcome, String>>()
        };
        let config = WorkerConfig {
            lease: Duration::from_secs(1),
            ..settings(Wakeup::Listen(url.clone()))
        };
        let worker = Worker::<SlackEvents, _>::new(pool, handler, config).unwrap();
        worker.run(CancellationToken::new()).await
    });
    assert_eq!(started_rx.recv_timeout(Duration::from_secs(30)), Ok(1));
    doomed.shutdown_background();
    main.block_on(async {
        let handled = Arc::new(Mutex::new(Vec::new()));
        let mut workers = Vec::new();
        for _ in 0..3 {
            let handled = handled.clone();
            let handler = move |event: SlackEvent| {
                handled.lock().unwrap().push(event.attempts);
                async { Ok::<_, String>(Outcome::Processed) }
            };
            let config = WorkerConfig {
                lease: Duration::from_secs(1),
                poll_interval: Duration::from_millis(100),
                ..settings(Wakeup::Listen(db.url().clone()))
            };
            workers.push(spawn(db.conn(), handler, config));
        }
        until_count(&db, "status = 'processed'", 1, Duration::from_secs(30)).await;
        // Long enough for a second reclaim, had the lease not been renewed or the claim not
        // been exclusive.
        tokio::time::sleep(Duration::from_secs(2)).await;
        for (stop, _) in &workers {
            stop.cancel();
        }
        for (_, run) in workers {
            run.await.unwrap();
        }
        assert_eq!(
            *handled.lock().unwrap(),
            [2],
            "reclaimed once, as attempt 2"
        );
    });
}

#[tokio::test]
async fn shutdown_lets_running_handlers_finish_and_gives_back_the_unstarted() {
    let db = migrated().await;
    ingest(db.conn(), 0..10).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let (tx, mut started) = mpsc::unbounded_channel();
    let handler = {
        let gate = gate.clone();
        move |event: SlackEvent| {
            let (gate, tx) = (gate.clone(), tx.clone());
            async move {
                tx.send(event.id).ok();
                gate.acquire().await.unwrap().forget();
                Ok::<_, String>(Outcome::Processed)
            }
        }
    };
    let config = WorkerConfig {
        concurrency: 2,
        prefetch: 4,
        ..settings(Wakeup::PollOnly)
    };
    let (stop, run) = spawn(db.conn(), handler, config);
    for _ in 0..2 {
        timeout(Duration::from_secs(30), started.recv())
            .await
            .unwrap();
    }
    until_count(&db, "status = 'processing'", 6, Duration::from_secs(30)).await;
    stop.cancel();
    // Unstarted events go back at once, while the two handlers are still running.
    until_count(
        &db,
        "status = 'pending' AND attempts = 0",
        8,
        Duration::from_secs(30),
    )
    .await;
    gate.add_permits(2);
    let summary = run.await.unwrap();
    assert_eq!((summary.processed, summary.released), (2, 4));
    assert!(
        started.try_recv().is_err(),
        "nothing started after the stop"
    );
    assert_eq!(count(&db, "status = 'processed'").await, 2);

    // A handler that outlives the grace period is interrupted; its attempt counts.
    let hang = |_: SlackEvent| std::future::pending::<Result<Outcome, String>>();
    let config = WorkerConfig {
        concurrency: 1,
        prefetch: 0,
        shutdown_grace: Duration::from_millis(300),
        ..settings(Wakeup::PollOnly)
    };
    let (stop, run) = spawn(db.conn(), hang, config);
    until_count(&db, "status = 'processing'", 1, Duration::from_secs(30)).await;
    stop.cancel();
    let summary = run.await.unwrap();
    assert_eq!(summary.interrupted, 1);
    let rows = text_rows(
        db.conn(),
        "SELECT attempts::text, last_error FROM slack_events WHERE last_error IS NOT NULL",
    )
    .await;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0][0].as_deref(), Some("1"));
    assert!(rows[0][1].as_deref().unwrap().starts_with("interrupted"));
    assert_eq!(count(&db, "status = 'pending'").await, 8);
}

#[tokio::test]
async fn eight_workers_handle_ten_thousand_events_of_fifty_organizations_exactly_once() {
    const EVENTS: usize = 10_000;
    const ORGANIZATIONS: usize = 50;
    let db = TestDb::migrated().await;
    // Organizations, teams and event ids of its own, so the race runs the same on a database
    // other tests share.
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let organization = |i: usize| format!("race_{run}_{i:02}");
    let team = |i: usize| format!("T_{run}_{i:02}");
    for i in 0..ORGANIZATIONS {
        fixtures::organization_with_teams(db.conn(), &organization(i), &team(i))
            .await
            .unwrap();
    }
    let prefix = format!("Ev{run}_");
    // Each handled event of this race: how often, and for which organization.
    let handled: Arc<Mutex<HashMap<String, (u32, String)>>> = Arc::default();
    let mut workers = Vec::new();
    for _ in 0..8 {
        let pool = db.new_pool(3).await;
        let (handled, prefix) = (handled.clone(), prefix.clone());
        let handler = move |event: SlackEvent| {
            if event.event_id.starts_with(&prefix) {
                let mut handled = handled.lock().unwrap();
                let seen = handled
                    .entry(event.event_id.clone())
                    .or_insert((0, event.organization_id.clone()));
                seen.0 += 1;
            }
            async { Ok::<_, String>(Outcome::Processed) }
        };
        workers.push(spawn(
            &pool,
            handler,
            settings(Wakeup::Listen(db.url().clone())),
        ));
    }
    let started = Instant::now();
    // Ingest while they run, from two writers, each batch spanning every organization, so
    // wake-ups (one per organization and batch) and claims interleave.
    let delivery_of = {
        let (prefix, run) = (prefix.clone(), run.clone());
        move |n: usize| SlackDelivery {
            event_id: format!("{prefix}{n:06}"),
            team_id: format!("T_{run}_{:02}", n % ORGANIZATIONS),
            ..delivery(n)
        }
    };
    let writers = harness::on_separate_connections(db.url(), 2, move |conn, w| {
        let delivery_of = delivery_of.clone();
        async move {
            for chunk in (w * EVENTS / 2..(w + 1) * EVENTS / 2).step_by(250) {
                let batch: Vec<_> = (chunk..chunk + 250).map(&delivery_of).collect();
                let stored = events::ingest_batch::<SlackEvents>(&conn, &batch)
                    .await
                    .unwrap();
                assert_eq!(stored.inserted.len(), 250, "every delivery routed");
            }
        }
    });
    writers.await;
    let ours = format!("organization_id LIKE 'race\\_{run}\\_%'");
    until_count(
        &db,
        &format!("status = 'processed' AND {ours}"),
        EVENTS as i64,
        Duration::from_secs(300),
    )
    .await;
    let took = started.elapsed();
    for (stop, _) in &workers {
        stop.cancel();
    }
    let mut total = RunSummary::default();
    for (_, run) in workers {
        let s = run.await.unwrap();
        total.processed += s.processed;
        total.lost_leases += s.lost_leases;
    }
    let handled = std::mem::take(&mut *handled.lock().unwrap());
    println!(
        "figure: {EVENTS} events of {ORGANIZATIONS} organizations ingested and handled by 8 workers \
         in {took:?} ({:.0} events/s)",
        EVENTS as f64 / took.as_secs_f64()
    );
    assert_eq!(handled.len(), EVENTS, "every event handled");
    assert!(handled.values().all(|(n, _)| *n == 1), "none handled twice");
    for (event_id, (_, organization_id)) in handled.iter() {
        let n: usize = event_id[prefix.len()..].parse().unwrap();
        assert_eq!(
            *organization_id,
            organization(n % ORGANIZATIONS),
            "{event_id} was routed to its team's organization"
        );
    }
    assert_eq!(total.lost_leases, 0);
    assert_eq!(
        count(&db, &format!("attempts = 1 AND {ours}")).await,
        EVENTS as i64,
        "each claimed once"
    );
}

#[tokio::test]
async fn prune_deletes_only_old_finished_events_and_keeps_runs_that_referenced_them() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    // The fixture's event, referenced by a run, finished long ago; then every status, old and new.
    db.conn()
        .execute_unprepared(&format!(
            "UPDATE slack_events SET status = 'processed', created_at = now() - interval '40 days'
             WHERE id = '{}';
             INSERT INTO slack_events (organization_id, event_id, event_type, team_id, payload, status,
                                       created_at)
             SELECT '{}', 'E' || s || a, 'message', 'T1', '{{}}', s, now() - a * interval '1 day'
             FROM unnest(ARRAY['pending', 'processing', 'processed', 'ignored', 'failed']) s,
                  unnest(ARRAY[1, 31, 60]) a",
            fixtures::SLACK_EVENT_ID,
            fixtures::ORG_ID
        ))
        .await
        .unwrap();
    // Another organization's old events are its own retention's business.
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO slack_events (organization_id, event_id, event_type, team_id, payload, status,
                                       created_at)
             VALUES ('{}', 'E_other', 'message', 'T_other', '{{}}', 'processed', now() - interval '60 days')",
            fixtures::OTHER_ORG_ID
        ))
        .await
        .unwrap();
    let org = fixtures::ORG_ID;
    let deleted = worker::prune::<SlackEvents>(db.conn(), org, Duration::from_secs(30 * 86400), 2)
        .await
        .unwrap();
    assert_eq!(
        deleted,
        3 * 2 + 1,
        "old processed, ignored and failed, and the fixture's"
    );
    let left = text_rows(
        db.conn(),
        &format!(
            "SELECT status || '/' || round(extract(epoch from now() - created_at) / 86400)
             FROM slack_events WHERE organization_id = '{org}' ORDER BY 1"
        ),
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect::<Vec<_>>();
    assert_eq!(
        left,
        [
            "failed/1",
            "ignored/1",
            "pending/1",
            "pending/31",
            "pending/60",
            "processed/1",
            "processing/1",
            "processing/31",
            "processing/60"
        ]
    );
    let run = text_rows(
        db.conn(),
        &format!(
            "SELECT slack_event_id::text FROM agent_runs WHERE id = '{}'",
            fixtures::AGENT_RUN_ID
        ),
    )
    .await;
    assert_eq!(run, [[None]], "the run stays, its reference cleared");
    assert_eq!(
        worker::prune::<SlackEvents>(db.conn(), org, Duration::from_secs(30 * 86400), 2)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM slack_events WHERE event_id = 'E_other'"
        )
        .await,
        1,
        "the other organization's event is left alone"
    );
}

#[test]
fn behind_a_transaction_pooler_without_a_direct_url_the_worker_refuses_to_start() {
    let vars: HashMap<&str, &str> = HashMap::from([
        ("DATABASE_URL", "postgresql://app:pw@pooler:6432/app"),
        ("DB_POOLER", "transaction"),
    ]);
    let topology =
        harness::db_connect::Topology::from_lookup(|v| vars.get(v).map(|s| s.to_string()))
            .unwrap()
            .unwrap();
    let err = Wakeup::from_topology(&topology).unwrap_err();
    let message = service::worker::WorkerError::from(err).to_string();
    assert!(message.contains("DATABASE_DIRECT_URL"), "{message}");
    assert!(message.contains("PollOnly"), "{message}");
    assert!(!message.contains("pw"), "{message}");
    let direct = HashMap::from([
        ("DATABASE_URL", "postgresql://app:pw@pooler:6432/app"),
        ("DB_POOLER", "transaction"),
        ("DATABASE_DIRECT_URL", "postgresql://app:pw@db:5432/app"),
    ]);
    let topology =
        harness::db_connect::Topology::from_lookup(|v| direct.get(v).map(|s| s.to_string()))
            .unwrap()
            .unwrap();
    match Wakeup::from_topology(&topology).unwrap() {
        Wakeup::Listen(url) => assert_eq!((url.host(), url.port()), ("db", 5432)),
        Wakeup::PollOnly => panic!("a direct URL is there"),
    }
}

#[tokio::test]
async fn settings_out_of_range_are_refused_naming_the_setting_and_the_limits_are_allowed() {
    let db = migrated().await;
    let base = || settings(Wakeup::PollOnly);
    let start = |config: WorkerConfig| {
        Worker::<SlackEvents, _>::new(db.conn().clone(), reporting(Outcome::Processed).0, config)
            .map(|_| ())
    };
    let refused = |config: WorkerConfig| match start(config) {
        Err(worker::WorkerError::Invalid { setting, .. }) => setting,
        other => panic!("expected a refused setting, got {other:?}"),
    };
    assert_eq!(
        refused(WorkerConfig {
            concurrency: 0,
            ..base()
        }),
        "concurrency"
    );
    assert_eq!(
        refused(WorkerConfig {
            concurrency: 8,
            prefetch: 993,
            ..base()
        }),
        "prefetch"
    );
    for max_attempts in [0, i32::MAX as u32 + 1] {
        assert_eq!(
            refused(WorkerConfig {
                max_attempts,
                ..base()
            }),
            "max_attempts"
        );
    }
    assert_eq!(
        refused(WorkerConfig {
            lease: Duration::from_millis(99),
            ..base()
        }),
        "lease"
    );
    assert_eq!(
        refused(WorkerConfig {
            poll_interval: Duration::ZERO,
            ..base()
        }),
        "poll_interval"
    );
    let shrinking = Backoff {
        factor: 0.5,
        ..Backoff::RETRIES
    };
    assert_eq!(
        refused(WorkerConfig {
            retry: shrinking,
            ..base()
        }),
        "retry"
    );
    assert_eq!(
        refused(WorkerConfig {
            reconnect: shrinking,
            ..base()
        }),
        "reconnect"
    );
    for (keep_for, every) in [
        (Duration::ZERO, Duration::from_secs(1)),
        (Duration::from_secs(1), Duration::ZERO),
    ] {
        assert_eq!(
            refused(WorkerConfig {
                retention: Some(worker::Retention { keep_for, every }),
                ..base()
            }),
            "retention"
        );
    }
    // The limits themselves are allowed.
    start(WorkerConfig {
        concurrency: 8,
        prefetch: 992,
        max_attempts: i32::MAX as u32,
        lease: Duration::from_millis(100),
        retention: Some(worker::Retention {
            keep_for: Duration::from_secs(1),
            every: Duration::from_secs(1),
        }),
        ..base()
    })
    .unwrap();
}

#[tokio::test]
async fn a_worker_with_retention_prunes_every_organization_and_old_unrouted_deliveries() {
    let db = migrated().await;
    fixtures::organization_with_teams(db.conn(), "org_workers_2", "T2")
        .await
        .unwrap();
    let batch: Vec<_> = (0..4)
        .map(|n| SlackDelivery {
            team_id: ["T1", "T2", "T_NOBODY", "T1"][n].into(),
            ..delivery(n)
        })
        .collect();
    events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    // Finished and old in both organizations, but one still pending; the unrouted one old too.
    db.conn()
        .execute_unprepared(
            "UPDATE slack_events SET created_at = now() - interval '2 days',
                                     status = CASE WHEN event_id = 'Ev000003' THEN 'pending' ELSE 'processed' END;
             UPDATE unrouted_events SET created_at = now() - interval '2 days'",
        )
        .await
        .unwrap();
    let config = WorkerConfig {
        retention: Some(worker::Retention {
            keep_for: Duration::from_secs(86_400),
            every: Duration::from_secs(3600),
        }),
        poll_interval: Duration::from_secs(3600),
        shutdown_grace: Duration::from_millis(100),
        ..settings(Wakeup::PollOnly)
    };
    // The handler never finishes, so the pending event stays claimed, not processed.
    let hang = |_: SlackEvent| std::future::pending::<Result<Outcome, String>>();
    let (stop, run) = spawn(db.conn(), hang, config);
    until_count(&db, "status = 'processed'", 0, Duration::from_secs(30)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while scalar(db.conn(), "SELECT count(*) FROM unrouted_events").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the unrouted delivery was not pruned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    run.await.unwrap();
    assert_eq!(count(&db, "true").await, 1, "the unfinished event stays");
}
