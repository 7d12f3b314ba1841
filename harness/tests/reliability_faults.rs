//! Connection faults: the server dies and comes back while helpers run; the pool runs dry.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use db_connect::PoolSettings;
use dev_servers::ThrowawayCluster;
use harness::{TestDb, scalar};
use sea_orm::{ConnectionTrait, TransactionTrait};
use service::{
    Error, auth,
    organizations::{self, NewOrganizationInput},
};

fn impatient(max_connections: u32) -> PoolSettings {
    PoolSettings {
        max_connections,
        connect_timeout: Duration::from_secs(1),
        acquire_timeout: Duration::from_secs(1),
        ..PoolSettings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_gives_retryable_errors_then_success_and_no_partial_writes() {
    // A cluster of its own: restarting the shared one would break the other tests.
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .unwrap()
        .unwrap();
    let admin = harness::connect(&cluster.url("postgres").unwrap(), 1).await;
    admin
        .execute_unprepared("CREATE DATABASE app")
        .await
        .unwrap();
    admin.close().await.unwrap();
    let url = cluster.url("app").unwrap();
    let setup = harness::connect(&url, 1).await;
    migration::apply_pending(&url).await.unwrap();
    setup
        .execute_unprepared(
            "INSERT INTO users (id, name, email) VALUES ('u1', 'U', 'u@example.com')",
        )
        .await
        .unwrap();
    setup.close().await.unwrap();

    let db = service::connect_to(&url, &impatient(4)).await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (db, stop) = (db.clone(), stop.clone());
        tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let input = NewOrganizationInput {
                    name: format!("Org {i}"),
                    slug: format!("org-{i}"),
                    logo: None,
                    metadata: None,
                };
                outcomes.push((
                    i,
                    organizations::create_organization(&db, input, "u1")
                        .await
                        .map(|(o, _)| o.id),
                ));
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let down_at = Instant::now();
    tokio::task::block_in_place(|| cluster.kill()).unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    tokio::task::block_in_place(|| cluster.restart()).unwrap();
    let outage = down_at.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let outcomes = writer.await.unwrap();

    let failures: Vec<&Error> = outcomes
        .iter()
        .filter_map(|(_, r)| r.as_ref().err())
        .collect();
    let successes = outcomes.iter().filter(|(_, r)| r.is_ok()).count();
    let first_failure = outcomes
        .iter()
        .position(|(_, r)| r.is_err())
        .expect("the outage was noticed");
    let last_failure = outcomes.iter().rposition(|(_, r)| r.is_err()).unwrap();
    println!(
        "figure: server down for {outage:?} during {} create_organization calls: {} succeeded, {} failed (all retryable: {}), {} succeeded after the restart",
        outcomes.len(),
        successes,
        failures.len(),
        failures.iter().all(|e| e.is_retryable()),
        outcomes.len() - last_failure - 1
    );
    for err in &failures {
        assert!(err.is_retryable(), "not retryable: {err:?}");
        assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    }
    assert!(first_failure > 0, "calls succeeded before the outage");
    assert!(
        last_failure + 1 < outcomes.len(),
        "calls succeed again after the restart"
    );

    let check = harness::connect(&url, 1).await;
    let orphans = scalar(
        &check,
        "SELECT count(*) FROM organizations o
         WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.organization_id = o.id AND m.role = 'owner')",
    )
    .await;
    assert_eq!(
        orphans, 0,
        "no organization without its owner: no partial write"
    );
    for (i, result) in &outcomes {
        if result.is_ok() {
            let stored = scalar(
                &check,
                &format!("SELECT count(*) FROM organizations WHERE slug = 'org-{i}'"),
            )
            .await;
            assert_eq!(stored, 1, "a call that succeeded is stored");
        }
    }
}

#[tokio::test]
async fn an_exhausted_pool_fails_clearly_after_its_timeout_instead_of_hanging() {
    let db = TestDb::migrated().await;
    let pool = service::connect_to(db.url(), &impatient(1)).await.unwrap();
    let held = pool.begin().await.unwrap(); // the only connection
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(30), auth::find_user(&pool, "u")).await;
    let waited = started.elapsed();
    let err = result
        .expect("the call returned instead of hanging")
        .unwrap_err();
    println!(
        "figure: a call on an exhausted pool (1 connection, acquire timeout 1 s) failed after {waited:?} with: {err}"
    );
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("unavailable"), "{err}");
    held.rollback().await.unwrap();
    assert!(
        auth::find_user(&pool, "u").await.unwrap().is_none(),
        "fine again once a connection is free"
    );
}
