//! service::events against real PostgreSQL: idempotent ingest under races, exactly-once claims
//! across workers, the status moves and keyset listing, for Slack and Linear alike.

use std::{collections::HashSet, time::Duration};

use entity::enums::{EventStatus, LinearEventAction};
use harness::{TestDb, fixtures, scalar};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;
use service::{
    Error,
    events::{
        self, EventFilter, EventSource, Ingested, LinearDelivery, LinearEvents, MAX_PAYLOAD_BYTES,
        SlackDelivery, SlackEvents,
    },
};

fn slack(event_id: &str, n: u32) -> SlackDelivery {
    SlackDelivery {
        event_id: event_id.to_owned(),
        event_type: if n.is_multiple_of(2) {
            "message"
        } else {
            "app_mention"
        }
        .to_owned(),
        team_id: "T1".to_owned(),
        channel_id: (!n.is_multiple_of(3)).then(|| "C1".to_owned()),
        slack_user_id: None,
        payload: json!({ "n": n, "text": "hello" }),
    }
}

/// The organization team `T1` and workspace `lin_T1` are routed to.
const ORG: &str = "org_events";

async fn migrated() -> TestDb {
    let db = TestDb::migrated().await;
    fixtures::organization_with_teams(db.conn(), ORG, "T1")
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn one_delivery_is_stored_once_and_retries_are_reported_as_duplicates() {
    let db = migrated().await;
    let first = events::ingest::<SlackEvents>(db.conn(), slack("Ev1", 1))
        .await
        .unwrap();
    let Ingested::Inserted {
        id,
        organization_id,
    } = first
    else {
        panic!("first delivery must insert")
    };
    assert_eq!(
        organization_id, ORG,
        "routed to the organization of team T1"
    );
    let retry = events::ingest::<SlackEvents>(db.conn(), slack("Ev1", 2))
        .await
        .unwrap();
    assert_eq!(retry, Ingested::Duplicate);
    let stored = events::find::<SlackEvents>(db.conn(), ORG, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.slack_connection_id,
        Some(connection_of(&db, ORG).await),
        "the route's connection"
    );
    assert_eq!(
        stored.payload,
        json!({ "n": 1, "text": "hello" }),
        "the first payload is kept"
    );
    assert_eq!(stored.channel_id.as_deref(), Some("C1"));
    assert_eq!(stored.slack_user_id, None, "NULLs survive the batch path");
    assert_eq!(stored.status(), Ok(EventStatus::Pending));
    assert!(matches!(
        events::ingest::<SlackEvents>(db.conn(), slack(" ", 1)).await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn a_batch_skips_stored_deliveries_and_repeats_within_itself() {
    let db = migrated().await;
    events::ingest::<SlackEvents>(db.conn(), slack("Ev2", 0))
        .await
        .unwrap();
    let batch = vec![
        slack("Ev1", 1),
        slack("Ev2", 2),
        slack("Ev3", 3),
        slack("Ev1", 4),
    ];
    let result = events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    let inserted: Vec<&str> = result
        .inserted
        .iter()
        .map(|e| e.event_id.as_str())
        .collect();
    assert_eq!(
        HashSet::<&str>::from_iter(inserted),
        HashSet::from(["Ev1", "Ev3"])
    );
    assert_eq!(result.duplicates, 2);
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM slack_events").await,
        3
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT (payload->>'n')::bigint FROM slack_events WHERE event_id = 'Ev1'"
        )
        .await,
        1,
        "the first occurrence in the batch wins"
    );
    assert_eq!(
        events::ingest_batch::<SlackEvents>(db.conn(), &[])
            .await
            .unwrap()
            .duplicates,
        0
    );
}

#[tokio::test]
async fn concurrent_retries_from_many_tasks_leave_one_row_per_delivery() {
    let db = migrated().await;
    let per_task = harness::on_separate_connections(db.url(), 8, |conn, task| async move {
        let task = task as u32;
        let mut duplicates = 0;
        for round in 0..10u32 {
            let ids: Vec<SlackDelivery> = (0..5u32)
                .map(|k| slack(&format!("Ev{}", (task + round + k) % 20), task))
                .collect();
            if round % 2 == 0 {
                duplicates += events::ingest_batch::<SlackEvents>(&conn, &ids)
                    .await
                    .unwrap()
                    .duplicates;
            } else {
                for delivery in ids {
                    if events::ingest::<SlackEvents>(&conn, delivery)
                        .await
                        .unwrap()
                        == Ingested::Duplicate
                    {
                        duplicates += 1;
                    }
                }
            }
        }
        duplicates
    })
    .await;
    let duplicates: usize = per_task.iter().sum();
    let rows = scalar(db.conn(), "SELECT count(*) FROM slack_events").await;
    assert_eq!(rows, 20);
    assert_eq!(
        duplicates as i64,
        8 * 10 * 5 - rows,
        "every delivery is inserted or reported duplicate"
    );
}

async fn seed_pending(db: &TestDb, n: u32) {
    let batch: Vec<SlackDelivery> = (0..n).map(|i| slack(&format!("Ev{i:05}"), i)).collect();
    events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
}

/// Gives the `n` seeded events arrival times in an order unrelated to the order they were
/// inserted in (and so to the order a scan without `ORDER BY` returns them): event `i` arrived
/// at second `(i * 419 + 250) % n / same` of 2026, `same` events sharing each second so that
/// the `id` tie-break matters too. Arrival sets both `created_at` and `due_at`, as ingest
/// does. `n` must be coprime with 419.
async fn shuffle_arrivals(db: &TestDb, n: u32, same: u32) {
    db.conn()
        .execute_unprepared(&format!(
            "UPDATE slack_events e SET created_at = a.arrived, due_at = a.arrived
             FROM (SELECT id, timestamptz '2026-01-01 00:00:00+00'
                       + ((substr(event_id, 3)::int * 419 + 250) % {n} / {same}) * interval '1 second'
                       AS arrived
                   FROM slack_events) a
             WHERE e.id = a.id"
        ))
        .await
        .unwrap();
}

/// `(created_at, id, event_id)` of every event in `status`, oldest first, sorted here rather
/// than by the database, so a statement's `ORDER BY` is checked against an independent order.
async fn oldest_first(db: &TestDb, status: &str) -> Vec<(i64, uuid::Uuid, String)> {
    let mut rows: Vec<_> = harness::text_rows(
        db.conn(),
        &format!(
            "SELECT (extract(epoch FROM created_at) * 1000000)::bigint::text, id::text, event_id
             FROM slack_events WHERE status = '{status}'"
        ),
    )
    .await
    .into_iter()
    .map(|row| {
        let text = |i: usize| row[i].clone().unwrap();
        (text(0).parse().unwrap(), text(1).parse().unwrap(), text(2))
    })
    .collect();
    rows.sort();
    rows
}

#[tokio::test]
async fn workers_claim_each_event_exactly_once_oldest_first() {
    let db = migrated().await;
    seed_pending(&db, 500).await;
    shuffle_arrivals(&db, 500, 1).await;
    // The two oldest events are already done: a claim must skip them, however old.
    db.conn()
        .execute_unprepared(
            "UPDATE slack_events SET status = 'processed' WHERE id IN (
                 SELECT id FROM slack_events ORDER BY created_at LIMIT 2)",
        )
        .await
        .unwrap();
    let oldest_pending: Vec<String> = oldest_first(&db, "pending")
        .await
        .into_iter()
        .take(3)
        .map(|(_, _, event_id)| event_id)
        .collect();
    // Without index scans the rows come in the order they were inserted, so only the claim's
    // own ORDER BY can give the oldest: the check holds whatever plan the server would pick.
    let txn = db.conn().begin().await.unwrap();
    txn.execute_unprepared(
        "SET LOCAL enable_indexscan = off; SET LOCAL enable_indexonlyscan = off;
         SET LOCAL enable_bitmapscan = off",
    )
    .await
    .unwrap();
    let first = events::claim::<SlackEvents>(&txn, ORG, 3).await.unwrap();
    txn.commit().await.unwrap();
    let firsts: Vec<&str> = first.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(
        firsts, oldest_pending,
        "a claim takes the oldest pending events, oldest first"
    );
    assert!(
        first
            .iter()
            .all(|e| e.attempts == 1 && e.status == "processing")
    );
    let per_worker = harness::on_separate_connections(db.url(), 6, |conn, _| async move {
        let mut mine = Vec::new();
        loop {
            let claimed = events::claim::<SlackEvents>(&conn, ORG, 25).await.unwrap();
            if claimed.is_empty() {
                return mine;
            }
            for event in claimed {
                events::mark_processed::<SlackEvents>(&conn, ORG, event.id)
                    .await
                    .unwrap();
                mine.push(event.id);
            }
        }
    })
    .await;
    let mut all = first.iter().map(|e| e.id).collect::<Vec<_>>();
    all.extend(per_worker.into_iter().flatten());
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(all.len(), 498, "every pending event claimed");
    assert_eq!(distinct.len(), all.len(), "no event claimed twice");
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM slack_events WHERE status = 'processing'"
        )
        .await,
        3
    );
}

#[tokio::test]
async fn a_claim_rolled_back_by_a_crashing_worker_is_claimed_again() {
    let db = migrated().await;
    seed_pending(&db, 10).await;
    let txn = db.conn().begin().await.unwrap();
    let crashed = events::claim::<SlackEvents>(&txn, ORG, 4).await.unwrap();
    // While that worker holds its rows, another skips them instead of waiting. A claim that
    // waited would hang on the open transaction: the lock timeout turns that into a failure.
    let other = harness::connect(db.url(), 1).await;
    other
        .execute_unprepared("SET lock_timeout = '2s'")
        .await
        .unwrap();
    let meanwhile = events::claim::<SlackEvents>(&other, ORG, 100)
        .await
        .unwrap_or_else(|err| {
            panic!("the claim waited for rows another worker holds instead of skipping them: {err}")
        });
    assert_eq!(meanwhile.len(), 6);
    txn.rollback().await.unwrap();
    let again = events::claim::<SlackEvents>(&other, ORG, 100)
        .await
        .unwrap();
    let ids = |v: &[entity::SlackEvent]| v.iter().map(|e| e.id).collect::<HashSet<_>>();
    assert_eq!(ids(&again), ids(&crashed));
    assert!(
        again.iter().all(|e| e.attempts == 1),
        "the rolled-back attempt did not count"
    );
}

#[tokio::test]
async fn a_claim_leases_its_events_for_five_minutes() {
    let db = migrated().await;
    seed_pending(&db, 2).await;
    events::claim::<SlackEvents>(db.conn(), ORG, 2)
        .await
        .unwrap();
    // The lease is what keeps a slow handler's event from a second worker: the documented five
    // minutes, counted from the claim.
    let leased = harness::text_rows(
        db.conn(),
        "SELECT (due_at - now() BETWEEN interval '4 minutes 50 seconds' AND interval '5 minutes')::text
         FROM slack_events",
    )
    .await;
    assert_eq!(leased, vec![vec![Some("true".to_owned())]; 2]);
}

#[tokio::test]
async fn failures_retry_until_the_limit_then_stay_failed() {
    let db = migrated().await;
    seed_pending(&db, 1).await;
    for attempt in 1..=3 {
        let claimed = events::claim::<SlackEvents>(db.conn(), ORG, 1)
            .await
            .unwrap();
        assert_eq!(claimed[0].attempts, attempt);
        let failed =
            events::mark_failed::<SlackEvents>(db.conn(), ORG, claimed[0].id, "timeout", 3)
                .await
                .unwrap();
        let expected = if attempt < 3 {
            EventStatus::Pending
        } else {
            EventStatus::Failed
        };
        assert_eq!(failed.status(), Ok(expected));
        assert_eq!(failed.last_error.as_deref(), Some("timeout"));
    }
    assert!(
        events::claim::<SlackEvents>(db.conn(), ORG, 1)
            .await
            .unwrap()
            .is_empty()
    );
    let id = uuid_of(&db, "Ev00000").await;
    let again = events::mark_failed::<SlackEvents>(db.conn(), ORG, id, "x", 3).await;
    assert!(
        matches!(&again, Err(Error::InvalidTransition { from, .. }) if from == "failed"),
        "{again:?}"
    );
    let huge = "é".repeat(10_000);
    seed_pending(&db, 2).await;
    let claimed = events::claim::<SlackEvents>(db.conn(), ORG, 1)
        .await
        .unwrap();
    let failed = events::mark_failed::<SlackEvents>(db.conn(), ORG, claimed[0].id, &huge, 3)
        .await
        .unwrap();
    assert!(failed.last_error.unwrap().len() <= events::MAX_ERROR_LEN);
}

async fn uuid_of(db: &TestDb, event_id: &str) -> uuid::Uuid {
    harness::text_rows(
        db.conn(),
        &format!("SELECT id::text FROM slack_events WHERE event_id = '{event_id}'"),
    )
    .await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn status_moves_are_guarded() {
    let db = migrated().await;
    seed_pending(&db, 2).await;
    let pending = uuid_of(&db, "Ev00000").await;
    let processed = events::mark_processed::<SlackEvents>(db.conn(), ORG, pending).await;
    assert!(
        matches!(&processed, Err(Error::InvalidTransition { from, to: "processed", .. }) if from == "pending")
    );
    let ignored = events::mark_ignored::<SlackEvents>(db.conn(), ORG, pending)
        .await
        .unwrap();
    assert_eq!(ignored.status(), Ok(EventStatus::Ignored));
    assert!(ignored.processed_at.is_some());
    let missing = events::mark_processed::<SlackEvents>(db.conn(), ORG, uuid::Uuid::new_v4()).await;
    assert!(matches!(
        missing,
        Err(Error::NotFound {
            entity: "slack event",
            ..
        })
    ));
}

#[tokio::test]
async fn events_stuck_in_processing_are_requeued_after_a_worker_dies() {
    let db = migrated().await;
    seed_pending(&db, 3).await;
    let claimed = events::claim::<SlackEvents>(db.conn(), ORG, 3)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    assert_eq!(
        events::requeue_stuck::<SlackEvents>(db.conn(), Duration::from_secs(60), 5)
            .await
            .unwrap(),
        0,
        "not stuck yet"
    );
    // The worker died a while ago.
    db.conn()
        .execute_unprepared("UPDATE slack_events SET updated_at = now() - interval '10 minutes' WHERE event_id <> 'Ev00002'")
        .await
        .unwrap();
    db.conn().execute_unprepared("UPDATE slack_events SET attempts = 5, updated_at = now() - interval '10 minutes' WHERE event_id = 'Ev00001'").await.unwrap();
    assert_eq!(
        events::requeue_stuck::<SlackEvents>(db.conn(), Duration::from_secs(60), 5)
            .await
            .unwrap(),
        2
    );
    let again = events::claim::<SlackEvents>(db.conn(), ORG, 10)
        .await
        .unwrap();
    assert_eq!(
        again
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["Ev00000"]
    );
    assert_eq!(again[0].attempts, 2);
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM slack_events WHERE status = 'failed'"
        )
        .await,
        1,
        "out of attempts"
    );
}

#[tokio::test]
async fn listing_pages_through_everything_newest_first_with_filters() {
    let db = migrated().await;
    seed_pending(&db, 45).await;
    // 15 distinct times, 3 events each, unrelated to the insertion order: pages (of 10) end
    // inside a group of equal times, where only the `id` tie-break continues correctly.
    shuffle_arrivals(&db, 45, 3).await;
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = events::list::<SlackEvents>(db.conn(), ORG, &EventFilter::default(), after, 10)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|e| (e.created_at, e.id)));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 45);
    let whole = events::list::<SlackEvents>(db.conn(), ORG, &EventFilter::default(), None, 45)
        .await
        .unwrap();
    assert_eq!(
        (whole.items.len(), whole.next),
        (45, None),
        "a page holding exactly the rest has no next page"
    );
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "strictly newest first, no repeats"
    );
    let filter = EventFilter {
        event_type: Some("app_mention".into()),
        status: Some(EventStatus::Pending),
    };
    let mentions = events::list::<SlackEvents>(db.conn(), ORG, &filter, None, 100)
        .await
        .unwrap();
    assert_eq!(mentions.items.len(), 22);
    assert!(mentions.next.is_none());
    let processed = EventFilter {
        status: Some(EventStatus::Processed),
        ..Default::default()
    };
    assert!(
        events::list::<SlackEvents>(db.conn(), ORG, &processed, None, 100)
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn linear_events_share_the_same_helpers() {
    let db = migrated().await;
    let delivery = |id: &str| LinearDelivery {
        event_id: id.to_owned(),
        event_type: "Issue".to_owned(),
        action: LinearEventAction::Update,
        linear_organization_id: "lin_T1".to_owned(),
        payload: json!({ "data": { "id": id } }),
    };
    assert!(matches!(
        events::ingest::<LinearEvents>(db.conn(), delivery("d1"))
            .await
            .unwrap(),
        Ingested::Inserted { .. }
    ));
    let batch = events::ingest_batch::<LinearEvents>(db.conn(), &[delivery("d1"), delivery("d2")])
        .await
        .unwrap();
    assert_eq!((batch.inserted.len(), batch.duplicates), (1, 1));
    let claimed = events::claim::<LinearEvents>(db.conn(), ORG, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    assert_eq!(claimed[0].action(), Ok(LinearEventAction::Update));
    for event in &claimed {
        assert_eq!(event.payload, json!({ "data": { "id": event.event_id } }));
    }
    let huge = LinearDelivery {
        payload: json!({ "text": "x".repeat(MAX_PAYLOAD_BYTES) }),
        ..delivery("d_huge")
    };
    let err = events::ingest::<LinearEvents>(db.conn(), huge)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("d_huge"), "{err}");
    let done = events::mark_processed::<LinearEvents>(db.conn(), ORG, claimed[0].id)
        .await
        .unwrap();
    assert_eq!(done.status(), Ok(EventStatus::Processed));
}

/// The Slack connection the fixture gave `organization`.
async fn connection_of(db: &TestDb, organization: &str) -> uuid::Uuid {
    harness::text_rows(
        db.conn(),
        &format!("SELECT id::text FROM slack_connections WHERE organization_id = '{organization}'"),
    )
    .await[0][0]
        .as_deref()
        .unwrap()
        .parse()
        .unwrap()
}

fn from_team(event_id: &str, team: &str) -> SlackDelivery {
    SlackDelivery {
        team_id: team.to_owned(),
        ..slack(event_id, 1)
    }
}

#[tokio::test]
async fn each_delivery_goes_to_the_organization_its_team_is_routed_to_or_is_kept_unrouted() {
    let db = migrated().await;
    fixtures::organization_with_teams(db.conn(), "org_second", "T2")
        .await
        .unwrap();
    let batch = [
        from_team("EvA", "T2"),
        from_team("EvB", "T_NOBODY"),
        from_team("EvC", "T1"),
        from_team("EvD", "T2"),
    ];
    let result = events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    let routed: Vec<(&str, &str)> = result
        .inserted
        .iter()
        .map(|e| (e.event_id.as_str(), e.organization_id.as_str()))
        .collect();
    assert_eq!(
        routed,
        [("EvA", "org_second"), ("EvC", ORG), ("EvD", "org_second")],
        "in event id order, each to its team's organization"
    );
    assert_eq!(
        result
            .unrouted
            .iter()
            .map(|(e, _)| e.as_str())
            .collect::<Vec<_>>(),
        ["EvB"]
    );
    assert_eq!(result.duplicates, 0);
    let unrouted = harness::text_rows(
        db.conn(),
        "SELECT provider, event_id, external_id, event_type, payload->>'n' FROM unrouted_events",
    )
    .await;
    assert_eq!(
        unrouted,
        [[
            Some("slack".to_owned()),
            Some("EvB".to_owned()),
            Some("T_NOBODY".to_owned()),
            Some("app_mention".to_owned()),
            Some("1".to_owned())
        ]]
    );
    for (organization, expected) in [(ORG, 1), ("org_second", 2)] {
        assert_eq!(
            scalar(
                db.conn(),
                &format!(
                    "SELECT count(*) FROM slack_events e JOIN slack_connections c
                     ON c.organization_id = e.organization_id AND c.id = e.slack_connection_id
                     WHERE e.organization_id = '{organization}'"
                )
            )
            .await,
            expected,
            "{organization}'s events name its connection"
        );
    }
    // A retried unrouted delivery is a duplicate too, single or in a batch.
    assert_eq!(
        events::ingest::<SlackEvents>(db.conn(), from_team("EvB", "T_NOBODY"))
            .await
            .unwrap(),
        Ingested::Duplicate
    );
    let again = events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    assert_eq!(
        (again.inserted.len(), again.unrouted.len(), again.duplicates),
        (0, 0, 4)
    );
    let single = events::ingest::<SlackEvents>(db.conn(), from_team("EvE", "T_NOBODY"))
        .await
        .unwrap();
    assert!(matches!(single, Ingested::Unrouted(_)), "{single:?}");
    // The other organization's events are neither claimed, found nor moved through ours.
    let ours = events::claim::<SlackEvents>(db.conn(), ORG, 10)
        .await
        .unwrap();
    assert_eq!(
        ours.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(),
        ["EvC"]
    );
    let theirs = result.inserted[0].id;
    assert_eq!(
        events::find::<SlackEvents>(db.conn(), ORG, theirs)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        events::mark_ignored::<SlackEvents>(db.conn(), ORG, theirs).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(
        events::claim::<SlackEvents>(db.conn(), "org_second", 10)
            .await
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn the_ingest_wakes_listeners_once_per_organization_with_new_events() {
    let db = migrated().await;
    fixtures::organization_with_teams(db.conn(), "org_second", "T2")
        .await
        .unwrap();
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect(
        secrecy::ExposeSecret::expose_secret(&db.direct_url().expose()),
    )
    .await
    .unwrap();
    listener.listen("slack_events").await.unwrap();
    let batch = [
        from_team("EvA", "T2"),
        from_team("EvB", "T1"),
        from_team("EvC", "T2"),
        from_team("EvD", "T_NOBODY"),
    ];
    events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    let mut heard = Vec::new();
    for _ in 0..2 {
        let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
            .await
            .expect("a notification per organization")
            .unwrap();
        heard.push(notification.payload().to_owned());
    }
    heard.sort();
    assert_eq!(heard, [ORG, "org_second"]);
    // Only duplicates and unrouted deliveries: no new event, no notification.
    events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    events::ingest::<SlackEvents>(db.conn(), from_team("EvE", "T_NOBODY"))
        .await
        .unwrap();
    // Giving claims back wakes the organization's workers, once.
    let claimed = events::claim::<SlackEvents>(db.conn(), ORG, 10)
        .await
        .unwrap();
    let claims: Vec<_> = claimed.iter().map(SlackEvents::claimed).collect();
    let released =
        events::release::<SlackEvents>(db.conn(), ORG, &claims, events::Release::NotStarted)
            .await
            .unwrap();
    assert_eq!(released, 1);
    let next = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("the release notifies")
        .unwrap();
    assert_eq!(next.payload(), ORG, "nothing in between, then the release");
    assert_eq!(
        events::release::<SlackEvents>(db.conn(), ORG, &claims, events::Release::NotStarted)
            .await
            .unwrap(),
        0,
        "no longer held"
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), listener.recv())
            .await
            .is_err(),
        "nothing went back, so nobody is woken"
    );
}

#[tokio::test]
async fn every_move_of_an_event_stamps_updated_at() {
    let db = migrated().await;
    seed_pending(&db, 3).await;
    let stale = || async {
        db.conn()
            .execute_unprepared("UPDATE slack_events SET updated_at = now() - interval '1 day'")
            .await
            .unwrap();
    };
    let fresh = || async {
        scalar(
            db.conn(),
            "SELECT count(*) FROM slack_events WHERE updated_at > now() - interval '1 minute'",
        )
        .await
    };
    stale().await;
    let claimed = events::claim::<SlackEvents>(db.conn(), ORG, 3)
        .await
        .unwrap();
    assert_eq!(fresh().await, 3, "the claim (requeue_stuck reads it)");
    let claims: Vec<_> = claimed.iter().map(SlackEvents::claimed).collect();
    stale().await;
    events::extend_leases::<SlackEvents>(db.conn(), ORG, &claims, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(fresh().await, 3, "renewing a lease");
    stale().await;
    events::settle::<SlackEvents>(db.conn(), ORG, &[(claims[0], events::Settle::Processed)])
        .await
        .unwrap();
    events::release::<SlackEvents>(db.conn(), ORG, &claims[1..2], events::Release::Interrupted)
        .await
        .unwrap();
    events::mark_failed::<SlackEvents>(db.conn(), ORG, claims[2].id, "x", 5)
        .await
        .unwrap();
    assert_eq!(fresh().await, 3, "settle, release and mark");
    stale().await;
    db.conn()
        .execute_unprepared("UPDATE slack_events SET status = 'processing'")
        .await
        .unwrap();
    events::requeue_stuck::<SlackEvents>(db.conn(), Duration::from_secs(60), 5)
        .await
        .unwrap();
    assert_eq!(fresh().await, 3, "requeueing");
    stale().await;
    events::mark_ignored::<SlackEvents>(db.conn(), ORG, claims[0].id)
        .await
        .unwrap();
    assert_eq!(fresh().await, 1, "only the row moved");
}

#[tokio::test]
async fn the_organizations_with_due_events_come_longest_due_first() {
    let db = migrated().await;
    for (organization, team) in [("org_b", "TB"), ("org_c", "TC")] {
        fixtures::organization_with_teams(db.conn(), organization, team)
            .await
            .unwrap();
    }
    let batch = [
        from_team("Ev1", "TB"),
        from_team("Ev2", "T1"),
        from_team("Ev3", "TC"),
        from_team("Ev4", "TB"),
    ];
    events::ingest_batch::<SlackEvents>(db.conn(), &batch)
        .await
        .unwrap();
    db.conn()
        .execute_unprepared(
            // A searched CASE: Citus 13.2 deparses `CASE event_id WHEN ...` of a multi-shard
            // UPDATE into `text = boolean` (42883).
            "UPDATE slack_events SET due_at = now() - CASE
                 WHEN event_id = 'Ev1' THEN interval '1 minute'
                 WHEN event_id = 'Ev2' THEN interval '3 minutes'
                 WHEN event_id = 'Ev3' THEN interval '2 minutes' ELSE interval '-1 hour' END",
        )
        .await
        .unwrap();
    assert_eq!(
        events::due_organizations::<SlackEvents>(db.conn(), 10)
            .await
            .unwrap(),
        [ORG, "org_c", "org_b"]
    );
    // Ev4 is due in an hour; once Ev1 is claimed, org_b has nothing due.
    events::claim::<SlackEvents>(db.conn(), "org_b", 10)
        .await
        .unwrap();
    assert_eq!(
        events::due_organizations::<SlackEvents>(db.conn(), 10)
            .await
            .unwrap(),
        [ORG, "org_c"]
    );
    assert_eq!(
        events::due_organizations::<SlackEvents>(db.conn(), 1)
            .await
            .unwrap(),
        [ORG],
        "the scan reads only the longest-due events"
    );
}
