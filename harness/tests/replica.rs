//! Reads from a real streaming replica of the test cluster (`pg_basebackup -R`, hot standby):
//! used while fresh, bypassed when paused, lagging or stopped, never an error; what must see
//! the caller's own write goes to the primary.

use std::time::Duration;

use db_connect::{PoolSettings, Topology};
use dev_servers::Replica;
use harness::{
    TestDb, scalar, text_rows,
    topology::{start_replica, wait_until_replayed},
};
use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;
use service::{
    Db, ReplicaState,
    events::{self, EventFilter, SlackDelivery, SlackEvents},
};

/// A `Db` for `db` with `replica` as its read replica.
async fn db_with_replica(db: &TestDb, replica: &Replica, max_lag: Duration) -> Db {
    let topology = Topology {
        replica: Some(replica.url(db.name()).unwrap()),
        replica_max_lag: max_lag,
        ..Topology::for_url(db.url().clone())
    };
    service::connect_with(&topology, &PoolSettings::default())
        .await
        .unwrap()
}

/// Whether a statement given to `reads` ran on the replica.
async fn reads_from_the_replica(reads: &impl ConnectionTrait) -> bool {
    text_rows(reads, "SELECT pg_is_in_recovery()::text").await[0][0].as_deref() == Some("true")
}

/// The organization team `T1` (every delivery here) is routed to.
const ORG: &str = "org_replica";

async fn migrated() -> TestDb {
    let db = TestDb::migrated().await;
    harness::fixtures::organization_with_teams(db.conn(), ORG, "T1")
        .await
        .unwrap();
    db
}

fn delivery(n: usize) -> SlackDelivery {
    SlackDelivery {
        event_id: format!("Ev{n:05}"),
        event_type: "message".into(),
        team_id: "T1".into(),
        channel_id: None,
        slack_user_id: None,
        payload: json!({ "n": n, "text": "it's \\ here" }),
    }
}

async fn ingest(db: &Db, range: std::ops::Range<usize>) {
    let deliveries: Vec<_> = range.map(delivery).collect();
    events::ingest_batch::<SlackEvents>(db, &deliveries)
        .await
        .unwrap();
}

/// A session on the replica in `db`, once the replica has caught up (and so has `db`).
async fn standby_session(replica: &Replica, db: &TestDb) -> db_connect::Pool {
    wait_until_replayed(replica).await;
    harness::connect(&replica.url(db.name()).unwrap(), 1).await
}

#[tokio::test]
async fn replica_reads_of_a_list_equal_the_primarys_once_caught_up() {
    let replica = start_replica();
    let test_db = migrated().await;
    let db = db_with_replica(&test_db, &replica, Duration::from_secs(1)).await;
    ingest(&db, 0..120).await;
    wait_until_replayed(&replica).await;
    becomes_fresh(&db).await;
    assert!(reads_from_the_replica(&db.reads()).await);
    assert!(
        !reads_from_the_replica(&db).await,
        "the Db itself is the primary"
    );
    let filter = EventFilter::default();
    let mut after = None;
    loop {
        let from_replica = events::list::<SlackEvents>(&db.reads(), ORG, &filter, after, 50)
            .await
            .unwrap();
        let from_primary = events::list::<SlackEvents>(db.primary(), ORG, &filter, after, 50)
            .await
            .unwrap();
        assert_eq!(from_replica.items, from_primary.items);
        assert_eq!(from_replica.next, from_primary.next);
        match from_replica.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    // Every read inside a transaction is the primary's.
    let txn = db.begin().await.unwrap();
    assert!(!reads_from_the_replica(&txn).await);
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn a_write_then_a_read_on_the_primary_sees_the_write() {
    let replica = start_replica();
    let test_db = migrated().await;
    let db = db_with_replica(&test_db, &replica, Duration::from_secs(3600)).await;
    let standby = standby_session(&replica, &test_db).await;
    // The replica will not show anything written from now on.
    standby
        .execute_unprepared("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    for n in 0..20 {
        ingest(&db, n..n + 1).await;
        let id = events::list::<SlackEvents>(db.primary(), ORG, &EventFilter::default(), None, 1)
            .await
            .unwrap()
            .items[0]
            .id;
        let seen = events::find::<SlackEvents>(db.primary(), ORG, id)
            .await
            .unwrap();
        assert_eq!(seen.map(|e| e.event_id), Some(format!("Ev{n:05}")));
    }
    assert_eq!(
        scalar(&standby, "SELECT count(*) FROM slack_events").await,
        0,
        "the paused replica has none of them"
    );
}

#[tokio::test]
async fn a_paused_replica_is_detected_and_bypassed() {
    let replica = start_replica();
    let test_db = migrated().await;
    let db = db_with_replica(&test_db, &replica, Duration::from_secs(3600)).await;
    ingest(&db, 0..10).await;
    let standby = standby_session(&replica, &test_db).await;
    becomes_fresh(&db).await;

    standby
        .execute_unprepared("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    ingest(&db, 10..20).await;
    // The WAL of the new rows has reached the replica, which holds it unreplayed.
    loop {
        let received = text_rows(
            &standby,
            "SELECT (pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn())::text",
        )
        .await;
        if received[0][0].as_deref() == Some("true") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    db.recheck_replica();
    assert_eq!(db.replica_state().await, ReplicaState::Lagging);
    assert!(!reads_from_the_replica(&db.reads()).await);
    let listed = events::list::<SlackEvents>(&db.reads(), ORG, &EventFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 20, "the reads saw the primary's rows");

    standby
        .execute_unprepared("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    wait_until_replayed(&replica).await;
    becomes_fresh(&db).await;
    assert!(reads_from_the_replica(&db.reads()).await);
}

/// Rechecks the replica until it is judged fresh, which is what a caught-up replica must become.
/// A single check may see it a little behind again: the other tests of this process keep writing
/// to the shared primary, and a transaction in flight there streams WAL that no commit timestamp
/// covers yet.
async fn becomes_fresh(db: &Db) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        db.recheck_replica();
        let state = db.replica_state().await;
        if state == ReplicaState::Fresh {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a caught-up replica was still judged {state:?} after 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `sql` (a boolean) on `session` until it is true.
async fn until(session: &impl ConnectionTrait, sql: &str) {
    while text_rows(session, &format!("SELECT ({sql})::text")).await[0][0].as_deref()
        != Some("true")
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_replica_further_behind_than_the_limit_is_bypassed() {
    let replica = start_replica();
    let test_db = migrated().await;
    let db = db_with_replica(&test_db, &replica, Duration::from_millis(100)).await;
    ingest(&db, 0..5).await;
    let standby = standby_session(&replica, &test_db).await;
    becomes_fresh(&db).await;

    // Replay keeps running, an hour behind: lag, not a pause.
    for sql in [
        "ALTER SYSTEM SET recovery_min_apply_delay = '1h'",
        "SELECT pg_reload_conf()",
    ] {
        standby.execute_unprepared(sql).await.unwrap();
    }
    until(
        &standby,
        "current_setting('recovery_min_apply_delay') = '1h'",
    )
    .await;
    ingest(&db, 5..10).await;
    until(
        &standby,
        "pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()
         AND now() - pg_last_xact_replay_timestamp() > interval '100 ms'
         AND NOT pg_is_wal_replay_paused()",
    )
    .await;
    db.recheck_replica();
    assert_eq!(db.replica_state().await, ReplicaState::Lagging);
    let listed = events::list::<SlackEvents>(&db.reads(), ORG, &EventFilter::default(), None, 100)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 10, "the reads saw the primary's rows");

    for sql in [
        "ALTER SYSTEM RESET recovery_min_apply_delay",
        "SELECT pg_reload_conf()",
    ] {
        standby.execute_unprepared(sql).await.unwrap();
    }
    wait_until_replayed(&replica).await;
    becomes_fresh(&db).await;
}

#[tokio::test]
async fn an_idle_primary_does_not_make_a_caught_up_replica_look_lagging() {
    let replica = start_replica();
    let test_db = migrated().await;
    let max_lag = Duration::from_millis(50);
    let db = db_with_replica(&test_db, &replica, max_lag).await;
    ingest(&db, 0..1).await;
    let standby = standby_session(&replica, &test_db).await;
    // The last replayed transaction grows older than the limit while nothing is written. The
    // other tests of this process write to the same primary, so a check only counts when the
    // replica received nothing new while it ran: then it was caught up, and must be fresh.
    let idle_and_caught_up = "SELECT (now() - pg_last_xact_replay_timestamp()
                > interval '200 ms')::text,
            (pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn())::text,
            pg_last_wal_receive_lsn()::text";
    let idle = || async {
        let row = &text_rows(&standby, idle_and_caught_up).await[0];
        let yes = |i: usize| row[i].as_deref() == Some("true");
        (yes(0) && yes(1), row[2].clone())
    };
    let mut attempts = 0;
    loop {
        let (idle_before, received_before) = idle().await;
        if !idle_before {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        db.recheck_replica();
        let state = db.replica_state().await;
        let (idle_after, received_after) = idle().await;
        if idle_after && received_before == received_after {
            assert_eq!(state, ReplicaState::Fresh, "an idle, caught-up replica");
            break;
        }
        attempts += 1;
        assert!(attempts < 100, "the primary was never idle long enough");
    }
    assert!(reads_from_the_replica(&db.reads()).await);
}

#[tokio::test]
async fn a_stopped_replica_is_bypassed_without_an_error() {
    let replica = start_replica();
    let test_db = migrated().await;
    let db = db_with_replica(&test_db, &replica, Duration::from_secs(1)).await;
    ingest(&db, 0..5).await;
    wait_until_replayed(&replica).await;
    becomes_fresh(&db).await;
    assert!(reads_from_the_replica(&db.reads()).await);

    replica.stop().unwrap();
    // Reads right away, before any check has noticed: each falls back to the primary.
    for _ in 0..3 {
        let listed =
            events::list::<SlackEvents>(&db.reads(), ORG, &EventFilter::default(), None, 10)
                .await
                .unwrap();
        assert_eq!(listed.items.len(), 5);
    }
    assert!(!reads_from_the_replica(&db.reads()).await);
    db.recheck_replica();
    assert_eq!(db.replica_state().await, ReplicaState::Down);

    replica.restart().unwrap();
    wait_until_replayed(&replica).await;
    becomes_fresh(&db).await;
}

#[tokio::test]
async fn a_replica_that_is_down_at_start_is_no_error() {
    let replica = start_replica();
    let test_db = migrated().await;
    replica.stop().unwrap();
    let db = db_with_replica(&test_db, &replica, Duration::from_secs(1)).await;
    assert_eq!(db.replica_state().await, ReplicaState::Down);
    ingest(&db, 0..3).await;
    let listed = events::list::<SlackEvents>(&db.reads(), ORG, &EventFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 3);
}
