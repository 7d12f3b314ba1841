//! How `Db::reads` decides, checked without forcing a recheck: the read side moves to the
//! replica by itself once its first check answered, a verdict is trusted for `VERDICT_TTL` and
//! no longer, the lag is read in milliseconds, a statement's own error is the caller's while a
//! replica that fails or hangs sends the read to the primary and is marked down.
//!
//! The tests of this file run one at a time: each pauses or delays replay on a replica of its
//! own, and the others' writes to the shared primary would reach it as WAL it holds.

use std::time::{Duration, Instant};

use db_connect::{Pool, PoolSettings, Pooler, Topology};
use dev_servers::Replica;
use harness::{
    TestDb, scalar, text_rows,
    topology::{pgbouncer, start_replica, wait_until_replayed},
};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use service::{
    Db, ReplicaState,
    events::{self, SlackDelivery, SlackEvents},
    routing::VERDICT_TTL,
};
use tokio::sync::{Mutex, MutexGuard};

async fn one_at_a_time() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::const_new(());
    SERIAL.lock().await
}

/// A replica, a database on it, and a `Db` reading from it with `max_lag`.
async fn setup(max_lag: Duration) -> (Replica, TestDb, Db, Pool) {
    let replica = start_replica();
    let test_db = TestDb::migrated().await;
    let topology = Topology {
        replica: Some(replica.url(test_db.name()).unwrap()),
        replica_max_lag: max_lag,
        ..Topology::for_url(test_db.url().clone())
    };
    let db = service::connect_with(&topology, &PoolSettings::default())
        .await
        .unwrap();
    wait_until_replayed(&replica).await;
    let standby = harness::connect(&replica.url(test_db.name()).unwrap(), 1).await;
    (replica, test_db, db, standby)
}

async fn on_replica(reads: &impl ConnectionTrait) -> bool {
    text_rows(reads, "SELECT pg_is_in_recovery()::text").await[0][0].as_deref() == Some("true")
}

async fn is(session: &impl ConnectionTrait, sql: &str) -> bool {
    text_rows(session, &format!("SELECT ({sql})::text")).await[0][0].as_deref() == Some("true")
}

/// Polls `sql` (a boolean) on `session` until it is true, for at most 30 s.
async fn until(session: &impl ConnectionTrait, sql: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !is(session, sql).await {
        assert!(Instant::now() < deadline, "never true: {sql}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the read side until it is (or is not) on the replica, for at most `within`; whether
/// it got there.
async fn reads_settle_on_replica(db: &Db, replica: bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if on_replica(&db.reads()).await == replica {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// One delivery of a team no organization connected (stored in `unrouted_events`): a write the
/// replica must replay, whoever it belongs to.
async fn ingest(db: &Db, id: &str) {
    let delivery = SlackDelivery {
        event_id: id.to_owned(),
        event_type: "message".into(),
        team_id: "T1".into(),
        channel_id: None,
        slack_user_id: None,
        payload: serde_json::json!({ "id": id }),
    };
    events::ingest::<SlackEvents>(db, delivery).await.unwrap();
}

const WAL_WAITING: &str = "pg_last_wal_receive_lsn() > pg_last_wal_replay_lsn()";

#[tokio::test]
async fn reads_move_to_the_replica_by_themselves_and_off_it_once_a_stale_verdict_is_rechecked() {
    let _serial = one_at_a_time().await;
    let (_replica, _test_db, db, standby) = setup(Duration::from_secs(3600)).await;
    // No verdict yet: the primary answers, and a check starts in the background.
    assert!(
        reads_settle_on_replica(&db, true, Duration::from_secs(10)).await,
        "the reads never reached a fresh replica without a recheck"
    );
    standby
        .execute_unprepared("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    ingest(&db, "Ev-paused").await;
    until(&standby, WAL_WAITING).await;
    // Reads keep going to the replica only until its verdict is older than VERDICT_TTL.
    assert!(
        reads_settle_on_replica(&db, false, Duration::from_secs(10)).await,
        "the reads stayed on a paused replica holding WAL"
    );
    standby
        .execute_unprepared("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    assert!(
        reads_settle_on_replica(&db, true, Duration::from_secs(10)).await,
        "the reads did not come back once the replica caught up"
    );
}

#[tokio::test]
async fn a_verdict_is_trusted_for_the_ttl_and_rechecked_after_it() {
    let _serial = one_at_a_time().await;
    let (replica, _test_db, db, standby) = setup(Duration::from_secs(3600)).await;
    let mut inside_the_ttl = false;
    for attempt in 0..30 {
        if attempt > 0 {
            standby
                .execute_unprepared("SELECT pg_wal_replay_resume()")
                .await
                .unwrap();
            until(&standby, &format!("NOT ({WAL_WAITING})")).await;
        }
        // Paused with nothing to replay yet: fresh. The verdict is stored at `checked`.
        standby
            .execute_unprepared("SELECT pg_wal_replay_pause()")
            .await
            .unwrap();
        db.recheck_replica();
        let checked = Instant::now();
        if db.replica_state().await != ReplicaState::Fresh {
            continue;
        }
        // Now it is not: WAL waits that it does not replay.
        ingest(&db, &format!("Ev-ttl-{attempt}")).await;
        until(&standby, WAL_WAITING).await;
        let cached = db.replica_state().await;
        let first_read = on_replica(&db.reads()).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        let second_read = on_replica(&db.reads()).await;
        db.recheck_replica();
        let rechecked = db.replica_state().await;
        // Only a run that fit inside the TTL on this (busy) machine says anything.
        if checked.elapsed() >= VERDICT_TTL * 3 / 4 {
            continue;
        }
        assert_eq!(
            cached,
            ReplicaState::Fresh,
            "a verdict younger than the TTL was checked again"
        );
        assert!(
            first_read && second_read,
            "a read rechecked a verdict younger than the TTL"
        );
        assert_eq!(
            rechecked,
            ReplicaState::Lagging,
            "recheck_replica did not forget the verdict"
        );
        inside_the_ttl = true;
        break;
    }
    assert!(
        inside_the_ttl,
        "no attempt fit inside the {VERDICT_TTL:?} verdict"
    );

    // Older than the TTL, the same question is checked again (no recheck asked).
    standby
        .execute_unprepared("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    wait_until_replayed(&replica).await;
    tokio::time::sleep(VERDICT_TTL + Duration::from_millis(50)).await;
    assert_eq!(db.replica_state().await, ReplicaState::Fresh);
    standby
        .execute_unprepared("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    ingest(&db, "Ev-after-ttl").await;
    until(&standby, WAL_WAITING).await;
    tokio::time::sleep(VERDICT_TTL + Duration::from_millis(50)).await;
    assert_eq!(
        db.replica_state().await,
        ReplicaState::Lagging,
        "a verdict older than the TTL was trusted"
    );
    standby
        .execute_unprepared("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_replica_behind_by_less_than_the_limit_is_fresh_and_by_more_is_lagging() {
    let _serial = one_at_a_time().await;
    let (replica, test_db, db, standby) = setup(Duration::from_secs(3600)).await;
    // Replay keeps running, a minute behind: lag, not a pause.
    for sql in [
        "ALTER SYSTEM SET recovery_min_apply_delay = '1min'",
        "SELECT pg_reload_conf()",
    ] {
        standby.execute_unprepared(sql).await.unwrap();
    }
    until(
        &standby,
        "current_setting('recovery_min_apply_delay') = '1min'",
    )
    .await;
    ingest(&db, "Ev-delayed").await;
    until(
        &standby,
        &format!(
            "{WAL_WAITING} AND NOT pg_is_wal_replay_paused()
             AND now() - pg_last_xact_replay_timestamp() > interval '50 ms'"
        ),
    )
    .await;
    db.recheck_replica();
    assert_eq!(
        db.replica_state().await,
        ReplicaState::Fresh,
        "behind by less than the hour allowed"
    );
    // The same replica with a limit below its lag.
    let strict = service::connect_with(
        &Topology {
            replica: Some(replica.url(test_db.name()).unwrap()),
            replica_max_lag: Duration::from_millis(20),
            ..Topology::for_url(test_db.url().clone())
        },
        &PoolSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(strict.replica_state().await, ReplicaState::Lagging);
    for sql in [
        "ALTER SYSTEM RESET recovery_min_apply_delay",
        "SELECT pg_reload_conf()",
    ] {
        standby.execute_unprepared(sql).await.unwrap();
    }
    wait_until_replayed(&replica).await;
}

async fn fresh(db: &Db) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        db.recheck_replica();
        if db.replica_state().await == ReplicaState::Fresh {
            return;
        }
        assert!(Instant::now() < deadline, "the replica never became fresh");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_statements_own_error_on_the_replica_is_the_callers_not_a_reason_to_retry() {
    let _serial = one_at_a_time().await;
    let (_replica, _test_db, db, _standby) = setup(Duration::from_secs(3600)).await;
    fresh(&db).await;
    // Fails on the replica only: were it retried on the primary, it would answer 1.
    let err = db
        .reads()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT CASE WHEN pg_is_in_recovery() THEN 1 / 0 ELSE 1 END",
        ))
        .await
        .unwrap_err();
    assert_eq!(service::sqlstate(&err).as_deref(), Some("22012"), "{err}");
    assert_eq!(
        db.replica_state().await,
        ReplicaState::Fresh,
        "not marked down"
    );
    // One row through the read side is the row.
    assert_eq!(scalar(&db.reads(), "SELECT 42::int8").await, 42);
    // What returns no rows goes to the primary: the replica would refuse the write.
    db.reads()
        .execute_unprepared("CREATE TABLE written_through_reads (n int)")
        .await
        .unwrap();
    db.reads()
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            "INSERT INTO written_through_reads VALUES (1)",
        ))
        .await
        .unwrap();
    assert_eq!(
        scalar(db.primary(), "SELECT count(*) FROM written_through_reads").await,
        1
    );
}

#[tokio::test]
async fn a_read_the_replica_ends_or_holds_goes_to_the_primary_and_marks_it_down() {
    let _serial = one_at_a_time().await;
    let (_replica, test_db, db, standby) = setup(Duration::from_secs(3600)).await;
    // Sleeps on the replica only.
    let sleeper = "SELECT pg_sleep(CASE WHEN pg_is_in_recovery() THEN 30 ELSE 0 END)::text";
    for ending in ["terminated", "held"] {
        fresh(&db).await;
        let read = {
            let db = db.clone();
            tokio::spawn(async move { text_rows(&db.reads(), sleeper).await })
        };
        let sleeping = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND query LIKE '%pg_sleep(CASE%' AND pid <> pg_backend_pid()",
            test_db.name()
        );
        until(&standby, &format!("({sleeping}) = 1")).await;
        if ending == "terminated" {
            standby
                .execute_unprepared(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND query LIKE '%pg_sleep(CASE%' AND pid <> pg_backend_pid()",
                    test_db.name()
                ))
                .await
                .unwrap();
        }
        // Held: the read gives up on the replica after its timeout (2 s).
        let started = Instant::now();
        let rows = read.await.unwrap();
        assert_eq!(rows.len(), 1, "the primary answered");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            db.replica_state().await,
            ReplicaState::Down,
            "a replica that {ending} a read is marked down"
        );
        standby
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND query LIKE '%pg_sleep(CASE%' AND pid <> pg_backend_pid()",
                test_db.name()
            ))
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_db_says_its_pooler_and_closing_it_closes_both_pools_for_every_clone() {
    let _serial = one_at_a_time().await;
    let (_replica, test_db, db, standby) = setup(Duration::from_secs(3600)).await;
    assert_eq!(db.pooler(), Pooler::None);
    fresh(&db).await;
    assert!(on_replica(&db.reads()).await);
    let sessions = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        test_db.name()
    );
    assert!(scalar(&standby, &sessions).await >= 1);
    // A clone keeps both pools alive, so only `close` itself can end their sessions.
    let kept = db.clone();
    db.close().await.unwrap();
    until(&standby, &format!("({sessions}) = 0")).await;
    let after = kept.primary().execute_unprepared("SELECT 1").await;
    assert!(
        after.is_err(),
        "the primary's pool still answers: {after:?}"
    );

    let through = service::connect_to(
        &pgbouncer().url(test_db.name()).unwrap(),
        &PoolSettings::default(),
    )
    .await
    .unwrap();
    assert_eq!(through.pooler(), Pooler::Transaction);
    assert_eq!(through.replica_state().await, ReplicaState::None);
}
