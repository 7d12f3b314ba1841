//! The webhook pipeline at production scale: retried deliveries from many tasks, and workers
//! that crash while claiming. Each test prints its figures (`cargo test -- --nocapture`).

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use harness::{TestDb, fixtures, scalar, text_rows};
use rand::{SeedableRng, rngs::StdRng, seq::SliceRandom};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;
use service::events::{self, Ingested, SlackDelivery, SlackEvents};

fn delivery(event: usize, copy: usize) -> SlackDelivery {
    SlackDelivery {
        event_id: format!("Ev{event:04}"),
        event_type: "message".into(),
        team_id: "T1".into(),
        channel_id: Some("C1".into()),
        slack_user_id: None,
        payload: json!({ "event": event, "copy": copy }),
    }
}

/// The organization team `T1` (every delivery here) is routed to.
const ORG: &str = "org_reliability";

async fn migrated() -> TestDb {
    let db = TestDb::migrated().await;
    fixtures::organization_with_teams(db.conn(), ORG, "T1")
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn a_thousand_retried_deliveries_from_sixteen_tasks_store_each_event_once() {
    const EVENTS: usize = 250;
    const COPIES: usize = 4;
    let db = migrated().await;
    let mut all: Vec<(usize, usize)> = (0..EVENTS)
        .flat_map(|e| (0..COPIES).map(move |c| (e, c)))
        .collect();
    all.shuffle(&mut StdRng::seed_from_u64(7));
    let shares: Vec<Vec<(usize, usize)>> = all
        .chunks(all.len().div_ceil(16))
        .map(<[_]>::to_vec)
        .collect();
    assert_eq!(shares.len(), 16);
    let started = Instant::now();
    let results = harness::on_separate_connections(db.url(), 16, move |conn, task| {
        let mine = shares[task].clone();
        async move {
            // (event, copy) of every row this task inserted, and how many it was told were duplicates.
            let mut inserted = Vec::new();
            let mut duplicates = 0;
            for (i, chunk) in mine.chunks(7).enumerate() {
                if i % 2 == 0 {
                    for &(event, copy) in chunk {
                        match events::ingest::<SlackEvents>(&conn, delivery(event, copy))
                            .await
                            .unwrap()
                        {
                            Ingested::Inserted { .. } => inserted.push((event, copy)),
                            Ingested::Duplicate => duplicates += 1,
                            Ingested::Unrouted(_) => panic!("T1 is routed"),
                        }
                    }
                } else {
                    let batch: Vec<_> = chunk.iter().map(|&(e, c)| delivery(e, c)).collect();
                    let result = events::ingest_batch::<SlackEvents>(&conn, &batch)
                        .await
                        .unwrap();
                    duplicates += result.duplicates;
                    for event_id in result.inserted.into_iter().map(|e| e.event_id) {
                        // Within a batch the first occurrence of an id is the one stored.
                        let &(e, c) = chunk
                            .iter()
                            .find(|(e, _)| format!("Ev{e:04}") == event_id)
                            .unwrap();
                        inserted.push((e, c));
                    }
                }
            }
            (inserted, duplicates)
        }
    })
    .await;
    let took = started.elapsed();
    let inserted: Vec<(usize, usize)> = results.iter().flat_map(|(i, _)| i.clone()).collect();
    let duplicates: usize = results.iter().map(|(_, d)| d).sum();
    println!(
        "figure: {} deliveries of {EVENTS} events from 16 tasks (single and batch mixed) in {took:?}: {} rows, {duplicates} duplicates reported",
        EVENTS * COPIES,
        inserted.len()
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM slack_events").await,
        EVENTS as i64
    );
    assert_eq!(
        inserted.len(),
        EVENTS,
        "each event inserted by exactly one call"
    );
    assert_eq!(duplicates, EVENTS * COPIES - EVENTS);
    let stored: HashMap<String, String> = text_rows(
        db.conn(),
        "SELECT event_id, payload->>'copy' FROM slack_events",
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
    .collect();
    for (event, copy) in inserted {
        assert_eq!(
            stored[&format!("Ev{event:04}")],
            copy.to_string(),
            "the payload of the insert that won is kept"
        );
    }
}

#[tokio::test]
async fn ten_thousand_events_are_processed_exactly_once_by_crashing_workers() {
    const EVENTS: usize = 10_000;
    let db = migrated().await;
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(1000) {
        let batch: Vec<_> = chunk.iter().map(|&e| delivery(e, 0)).collect();
        events::ingest_batch::<SlackEvents>(db.conn(), &batch)
            .await
            .unwrap();
    }
    let started = Instant::now();
    let results = harness::on_separate_connections(db.url(), 8, |conn, worker| async move {
        let mut processed = Vec::new();
        let mut crashes = 0;
        let mut batches = 0u64;
        loop {
            let txn = conn.begin().await.unwrap();
            let claimed = events::claim::<SlackEvents>(&txn, ORG, 50).await.unwrap();
            if claimed.is_empty() {
                txn.rollback().await.unwrap();
                return (processed, crashes);
            }
            batches += 1;
            // Every 7th batch of every worker "crashes": its transaction rolls back.
            if (batches + worker as u64).is_multiple_of(7) {
                txn.rollback().await.unwrap();
                crashes += 1;
                continue;
            }
            let ids: Vec<_> = claimed.iter().map(|e| e.id).collect();
            for id in &ids {
                events::mark_processed::<SlackEvents>(&txn, ORG, *id)
                    .await
                    .unwrap();
            }
            txn.commit().await.unwrap();
            processed.extend(ids);
        }
    })
    .await;
    let took = started.elapsed();
    let processed: Vec<_> = results.iter().flat_map(|(p, _)| p.clone()).collect();
    let crashes: usize = results.iter().map(|(_, c)| c).sum();
    let distinct: HashSet<_> = processed.iter().collect();
    println!(
        "figure: {EVENTS} events, 8 workers claiming 50 at a time, {crashes} crashed batches rolled back: {} processed, {} distinct, in {took:?} ({:.0} events/s)",
        processed.len(),
        distinct.len(),
        EVENTS as f64 / took.as_secs_f64()
    );
    assert!(crashes > 0, "some workers crashed");
    assert_eq!(processed.len(), EVENTS, "none lost");
    assert_eq!(distinct.len(), EVENTS, "none processed twice");
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM slack_events WHERE status = 'processed'"
        )
        .await,
        EVENTS as i64
    );
}

#[tokio::test]
async fn events_of_a_worker_that_died_after_claiming_are_requeued_and_finished() {
    let db = migrated().await;
    let batch: Vec<_> = (0..200).map(|e| delivery(e, 0)).collect();
    events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    // A worker claims (autocommit) and its process dies: the rows stay `processing`.
    let doomed = harness::connect(db.url(), 1).await;
    let orphaned = events::claim::<SlackEvents>(&doomed, ORG, 60)
        .await
        .unwrap();
    doomed.close().await.unwrap();
    // A live worker handles everything else.
    let live = events::claim::<SlackEvents>(db.conn(), ORG, 1000)
        .await
        .unwrap();
    assert_eq!(live.len(), 140);
    for event in live {
        events::mark_processed::<SlackEvents>(db.conn(), ORG, event.id)
            .await
            .unwrap();
    }
    // Time passes.
    db.conn()
        .execute_unprepared("UPDATE slack_events SET updated_at = now() - interval '15 minutes' WHERE status = 'processing'")
        .await
        .unwrap();
    let requeued = events::requeue_stuck::<SlackEvents>(db.conn(), Duration::from_secs(600), 5)
        .await
        .unwrap();
    assert_eq!(requeued, orphaned.len() as u64);
    let again = events::claim::<SlackEvents>(db.conn(), ORG, 1000)
        .await
        .unwrap();
    let ids = |v: &[entity::SlackEvent]| v.iter().map(|e| e.id).collect::<HashSet<_>>();
    assert_eq!(ids(&again), ids(&orphaned));
    assert!(
        again.iter().all(|e| e.attempts == 2),
        "the lost attempt counts"
    );
    println!(
        "figure: a worker died holding {} claimed events; requeue_stuck returned all {} to pending and they were claimed again",
        orphaned.len(),
        requeued
    );
}

// Several runtime threads, so the sixteen statements reach the server interleaved: on one
// thread they arrive in turn and, unsorted, deadlocked in none of several runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_in_any_order_from_sixteen_tasks_never_deadlock() {
    const ROUNDS: usize = 60;
    const BATCH: usize = 50;
    let db = migrated().await;
    // In each round every task sends the same fifty deliveries, each task in an order of its
    // own: without one lock order for every batch, two statements each holding a key the
    // other inserts next deadlock (40P01).
    let started = Instant::now();
    let results = harness::on_separate_connections(db.url(), 16, move |conn, task| async move {
        let mut stored = 0;
        let mut shuffle = StdRng::seed_from_u64(task as u64);
        for round in 0..ROUNDS {
            let mut batch: Vec<_> = (round * BATCH..(round + 1) * BATCH)
                .map(|e| delivery(e, task))
                .collect();
            batch.shuffle(&mut shuffle);
            match events::ingest_batch::<SlackEvents>(&conn, &batch).await {
                Ok(result) => stored += result.inserted.len(),
                Err(err) => return Err(err.to_string()),
            }
        }
        Ok(stored)
    })
    .await;
    println!(
        "figure: 16 tasks x {ROUNDS} rounds of the same {BATCH} deliveries, shuffled, in {:?}",
        started.elapsed()
    );
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failures.is_empty(), "ingest failed: {failures:?}");
    let stored: usize = results.iter().map(|r| *r.as_ref().unwrap()).sum();
    assert_eq!(
        stored,
        ROUNDS * BATCH,
        "each delivery stored by exactly one batch"
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM slack_events").await,
        (ROUNDS * BATCH) as i64
    );
}
