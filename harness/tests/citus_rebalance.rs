//! Moving tenants while they work (issue 21): with webhook ingest, claims and agent runs going on
//! over 50 organizations, a third worker joins the cluster and the rebalancer moves shard groups
//! onto it, then one organization's shard group moves again, blocking its writes while it is
//! copied. Nothing acknowledged is lost or stored twice, nothing is claimed twice, tool call
//! sequences stay gapless, no statement fails but with an error a caller retries, and the
//! longest stall of each move is printed (`cargo test -- --nocapture`); the bench measures it.

use std::time::Duration;

use harness::{
    TestDb,
    citus::{
        self,
        load::{self, Load, LoadSettings, Outcome},
    },
    scalar, text_rows,
};
use sea_orm::ConnectionTrait;

/// Fails, saying why, unless the migrated schema is distributed: this test needs the tenant
/// tables sharded by organization.
async fn require_distributed(db: &TestDb) {
    let distributed = scalar(
        db.conn(),
        "SELECT count(*) FROM citus_tables
          WHERE citus_table_type = 'distributed' AND distribution_column = 'organization_id'
            AND table_name::text IN ('slack_events', 'agent_runs', 'tool_calls')",
    )
    .await;
    assert_eq!(
        distributed, 3,
        "slack_events, agent_runs and tool_calls are not distributed by organization_id: \
         the migrations did not distribute the schema on Citus"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_move_to_a_new_worker_and_back_while_ingest_claims_and_runs_go_on() {
    let db = citus::migrated().await;
    require_distributed(&db).await;
    let cluster = citus::cluster();
    let organizations = load::organizations(db.conn(), 50).await;
    let load = Load::start(db.url(), organizations, LoadSettings::default()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // The rebalancer: a worker started and registered, then reference tables copied to it and
    // shard groups moved (logically: writes go on until each group's cut-over).
    let joining = load.elapsed();
    let worker = tokio::task::spawn_blocking(|| citus::cluster().add_worker().unwrap())
        .await
        .unwrap();
    let (port, name) = (worker.port(), db.name().to_owned());
    let _worker = tokio::task::spawn_blocking(move || {
        citus::cluster().register_worker(&worker, &name).unwrap();
        worker
    })
    .await
    .unwrap();
    let joined = load.elapsed();
    let mover = harness::connect(db.url(), 1).await;
    let rebalance_from = load.elapsed();
    mover
        .execute_unprepared("SELECT citus_rebalance_start()")
        .await
        .unwrap();
    mover
        .execute_unprepared("SELECT citus_rebalance_wait()")
        .await
        .unwrap();
    let rebalance_to = load.elapsed();
    let on_new = scalar(
        db.conn(),
        &format!(
            "SELECT count(*) FROM citus_shards
              WHERE nodeport = {port} AND citus_table_type = 'distributed'"
        ),
    )
    .await;
    assert!(
        on_new > 0,
        "the rebalancer moved no shard to the new worker"
    );
    let failed_tasks = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_dist_background_task WHERE status <> 'done'",
    )
    .await;
    assert_eq!(failed_tasks, 0, "every task of the rebalance finished");
    tokio::time::sleep(Duration::from_secs(1)).await;

    // One organization's shard group, wherever it is now, to another worker, blocking its writes
    // while its rows are copied.
    let placement = text_rows(
        db.conn(),
        "SELECT shardid::text, nodeport::text FROM citus_shards
          WHERE shardid = get_shard_id_for_distribution_column('slack_events', 'load-org-007')",
    )
    .await;
    let (shard, from) = (
        placement[0][0].clone().unwrap(),
        placement[0][1].clone().unwrap(),
    );
    let to = cluster
        .worker_ports()
        .into_iter()
        .chain([port])
        .find(|p| p.to_string() != from)
        .unwrap();
    let move_from = load.elapsed();
    mover
        .execute_unprepared(&format!(
            "SELECT citus_move_shard_placement({shard}, '{host}', {from}, '{host}', {to},
                 shard_transfer_mode => 'block_writes')",
            host = cluster.node_host()
        ))
        .await
        .unwrap();
    let move_to = load.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let tally = load.stop().await;
    mover.close().await.ok();

    let outcome = load::check(db.conn(), &tally).await;
    let (join_stall, _) = tally.stall(joining, joined);
    let (rebalance_stall, rebalance_p99) = tally.stall(rebalance_from, rebalance_to);
    let (move_stall, move_p99) = tally.stall(move_from, move_to);
    eprintln!(
        "{} events acknowledged, {} runs; a worker started and added in {:.1} s, longest statement {:?}; rebalance {:.1} s, longest statement {:?}, p99 outside {:?}; \
         block_writes move of one group {:.1} s, longest statement {:?}, p99 outside {:?}; \
         errors {:?}",
        tally.acknowledged.len(),
        tally.runs.len(),
        (joined - joining).as_secs_f64(),
        join_stall,
        (rebalance_to - rebalance_from).as_secs_f64(),
        rebalance_stall,
        rebalance_p99,
        (move_to - move_from).as_secs_f64(),
        move_stall,
        move_p99,
        tally.errors
    );
    assert_eq!(outcome, Outcome::CLEAN);
    assert!(
        tally.acknowledged.len() > 100 && tally.runs.len() > 10,
        "the workload ran: {} events, {} runs",
        tally.acknowledged.len(),
        tally.runs.len()
    );
    assert_eq!(
        tally.unexpected_errors(),
        Vec::<(&String, &(usize, String))>::new(),
        "only errors a caller retries"
    );
    // Statements ran during both moves, so the moves were made under load.
    for (from, to) in [(rebalance_from, rebalance_to), (move_from, move_to)] {
        assert!(
            tally
                .statements
                .iter()
                .any(|t| t.at >= from && t.at + t.took <= to),
            "no statement ran during a move"
        );
    }
}

#[tokio::test]
async fn the_check_finds_lost_stray_duplicated_unprocessed_and_twice_claimed_events_and_broken_runs()
 {
    let db = citus::migrated().await;
    require_distributed(&db).await;
    load::organizations(db.conn(), 2).await;
    // What no working schema allows, so the check is seen to find it: a key stored twice.
    let unique = text_rows(
        db.conn(),
        "SELECT conname::text FROM pg_constraint
          WHERE conrelid = 'slack_events'::regclass AND contype = 'u'",
    )
    .await;
    for constraint in unique {
        db.conn()
            .execute_unprepared(&format!(
                "ALTER TABLE slack_events DROP CONSTRAINT {}",
                constraint[0].clone().unwrap()
            ))
            .await
            .unwrap();
    }
    db.conn()
        .execute_unprepared(
            "INSERT INTO slack_events (organization_id, event_id, event_type, team_id, payload, status)
             VALUES ('load-org-000', 'kept', 'message', 'T', '{}', 'processed'),
                    ('load-org-000', 'twice', 'message', 'T', '{}', 'processed'),
                    ('load-org-000', 'twice', 'message', 'T', '{}', 'processed'),
                    ('load-org-001', 'pending', 'message', 'T', '{}', 'pending'),
                    ('load-org-001', 'stray', 'message', 'T', '{}', 'processed')",
        )
        .await
        .unwrap();
    let mut tally = load::Tally::default();
    for (organization, event) in [
        ("load-org-000", "kept"),
        ("load-org-000", "twice"),
        ("load-org-001", "pending"),
        ("load-org-001", "lost"),
    ] {
        tally
            .acknowledged
            .insert((organization.into(), event.into()));
    }
    for (n, claims) in [1, 2, 3].into_iter().enumerate() {
        tally
            .claimed
            .insert(sea_orm::prelude::Uuid::from_u128(n as u128), claims);
    }
    // Runs: gapless as reported, a gap, fewer calls than reported, none at all.
    for (sequences, reported) in [
        (&[0, 1][..], Some(2)),
        (&[0, 2], Some(2)),
        (&[0, 1], Some(3)),
        (&[], None),
    ] {
        let run = text_rows(
            db.conn(),
            "INSERT INTO agent_runs (organization_id, trigger_source, model, status)
             VALUES ('load-org-001', 'api', 'm', 'running') RETURNING id::text",
        )
        .await[0][0]
            .clone()
            .unwrap();
        for sequence in sequences {
            db.conn()
                .execute_unprepared(&format!(
                    "INSERT INTO tool_calls (organization_id, agent_run_id, tool_name, sequence)
                     VALUES ('load-org-001', '{run}', 'search', {sequence})"
                ))
                .await
                .unwrap();
        }
        if let Some(reported) = reported {
            tally.runs.insert(run.parse().unwrap(), reported);
        }
    }
    assert_eq!(
        load::check(db.conn(), &tally).await,
        Outcome {
            lost: 1,
            unacknowledged: 1,
            duplicated: 1,
            unprocessed: 1,
            claimed_twice: 2,
            broken_runs: 2,
        }
    );
}
