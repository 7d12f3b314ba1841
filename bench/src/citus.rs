//! Section 9, Citus: the hot helpers on a Citus cluster (a coordinator and two workers, four
//! shards per distributed table) against the same helpers on one PostgreSQL server, call by
//! call in interleaved rounds; batch ingest throughput both ways; and the stall of moving
//! tenants while they work (a worker added, shard groups moved under a workload of ingest,
//! claims and runs). The bench starts both servers itself, each with the same settings (no
//! fsync, loopback), sharing this machine's cores.

use std::{
    fmt::Write as _,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use db_connect::{DatabaseUrl, PoolSettings};
use dev_servers::{CitusCluster, CitusWorker, ThrowawayCluster};
use entity::enums::TriggerSource;
use harness::citus::load::{self, Load, LoadSettings, Outcome, Tally};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use service::{
    agents::{self, NewRunInput, NewToolCallInput},
    auth,
    events::{self, SlackDelivery, SlackEvents},
};
use uuid::Uuid;

use crate::{
    overhead::delivery,
    ratio,
    stats::{RoundFigures, Samples, micros, timed},
};

/// How much of each measurement to do.
pub struct Plan {
    /// Calls per helper, side and round in (a).
    iterations: usize,
    /// Rounds of (a) and (b), each side in turn.
    rounds: usize,
    /// Events per side and round in (b).
    ingest_rows: usize,
    /// Organizations the data and the workload spread over.
    organizations: usize,
    /// Whether (c) runs the rebalancer and a logical move too, or only the blocking move of one
    /// organization's shard group (the smoke run: the rebalancer alone takes tens of seconds).
    all_moves: bool,
}

impl Plan {
    pub fn new(smoke: bool, quick: bool) -> Self {
        match (smoke, quick) {
            (true, _) => Self {
                iterations: 20,
                rounds: 1,
                ingest_rows: 1_000,
                organizations: 8,
                all_moves: false,
            },
            (false, true) => Self {
                iterations: 200,
                rounds: 3,
                ingest_rows: 20_000,
                organizations: 50,
                all_moves: true,
            },
            (false, false) => Self {
                iterations: 1_000,
                rounds: 5,
                ingest_rows: 100_000,
                organizations: 50,
                all_moves: true,
            },
        }
    }
}

/// One side of the comparison: a database and what the cases read in it.
struct Side {
    db: DatabaseConnection,
    tokens: Vec<String>,
    organizations: Vec<String>,
    /// A running run per organization, for the appends.
    runs: Vec<Uuid>,
}

/// Runs the section, writing it into `report`. Without Citus installed the section says so and
/// how to install it, and the rest of the bench goes on.
pub async fn section(report: &mut String, plan: &Plan) -> Result<()> {
    writeln!(
        report,
        "\n## 9. Citus: the helpers on a distributed cluster against one node\n"
    )?;
    eprintln!("9. Citus: starting a coordinator, two workers and one plain server...");
    let cluster = match CitusCluster::start(2) {
        Ok(cluster) => cluster,
        Err(err) => {
            eprintln!("9. Citus skipped: {err}");
            writeln!(report, "Skipped: {err}")?;
            return Ok(());
        }
    };
    let single = ThrowawayCluster::start()?;
    cluster.create_database("bench")?;
    let citus_url = cluster.coordinator_url("bench")?;
    let single_url = single.url("postgres")?;
    migration::apply_pending(&citus_url).await?;
    migration::apply_pending(&single_url).await?;
    let citus = fill(&citus_url, plan.organizations).await?;
    let one = fill(&single_url, plan.organizations).await?;
    let placement = placement(&citus.db).await?;
    writeln!(
        report,
        "Citus {} (PostgreSQL {}), a coordinator and 2 workers, `citus.shard_count` {}, on this \
         machine's loopback like the one-node server; {} organizations in both. Placement of the \
         migrated schema: {placement}.\n",
        scalar_text(
            &citus.db,
            "SELECT extversion FROM pg_extension WHERE extname = 'citus'"
        )
        .await?,
        scalar_text(&citus.db, "SHOW server_version").await?,
        cluster.settings().shard_count,
        plan.organizations
    )?;
    let figures = hot_helpers(plan, &one, &citus, report).await?;
    ingest(plan, &one, &citus, report).await?;
    let distributed = scalar_i64(
        &citus.db,
        "SELECT count(*) FROM citus_tables WHERE citus_table_type = 'distributed'",
    )
    .await?;
    match distributed {
        0 => writeln!(
            report,
            "\n(c) skipped: no table is distributed, so there is no shard to move.\n"
        )?,
        _ => moves(plan, &cluster, &citus_url, report).await?,
    }
    match distributed {
        0 => writeln!(
            report,
            "\n(d) not estimated: with nothing distributed, (a) and (b) measured Citus's planner \
             over tables on the coordinator, not a distributed cluster."
        )?,
        _ => what_nodes_buy(&figures, cluster.settings().shard_count, report)?,
    }
    Ok(())
}

/// The Slack team each organization is connected to, whose deliveries are routed to it.
fn team_of(organization: &str) -> String {
    format!("T-{organization}")
}

/// Delivery `n`, of the Slack team of `organization`.
fn delivery_to(n: usize, organization: &str) -> SlackDelivery {
    SlackDelivery {
        team_id: team_of(organization),
        ..delivery(n)
    }
}

/// Users with a session each, the organizations, each connected to its Slack team (so its
/// deliveries are routed to it), a running run in each: the same rows on both sides.
async fn fill(url: &DatabaseUrl, organizations: usize) -> Result<Side> {
    let settings = PoolSettings {
        max_connections: 2,
        ..PoolSettings::default()
    };
    let db = db_connect::connect(url, &settings).await?;
    db.execute_unprepared(&format!(
        "INSERT INTO users (id, name, email)
              SELECT 'bench-user-' || g, 'User ' || g, 'user' || g || '@example.com'
                FROM generate_series(1, 200) g;
         INSERT INTO sessions (id, expires_at, token, user_id)
              SELECT 'bench-session-' || g, now() + interval '1 day', 'bench-token-' || g,
                     'bench-user-' || g FROM generate_series(1, 200) g;
         INSERT INTO organizations (id, name, slug)
              SELECT 'bench-org-' || g, 'Org ' || g, 'bench-org-' || g
                FROM generate_series(1, {organizations}) g"
    ))
    .await
    .context("filling users, sessions and organizations")?;
    let organizations: Vec<String> = (1..=organizations)
        .map(|g| format!("bench-org-{g}"))
        .collect();
    let mut runs = Vec::new();
    for organization in &organizations {
        crate::seed::connect_slack(&db, organization, &team_of(organization)).await?;
        runs.push(crate::seed::running_run(&db, organization).await?);
        for _ in 0..20 {
            let run = agents::create_run(&db, run_input(organization)).await?;
            agents::start_run(&db, organization, run.id).await?;
            agents::succeed_run(
                &db,
                organization,
                run.id,
                serde_json::json!({}),
                Default::default(),
            )
            .await?;
        }
    }
    Ok(Side {
        db,
        tokens: (1..=200).map(|g| format!("bench-token-{g}")).collect(),
        organizations,
        runs,
    })
}

fn run_input(organization: &str) -> NewRunInput {
    NewRunInput {
        organization_id: organization.into(),
        user_id: None,
        trigger_source: TriggerSource::Api,
        slack_event_id: None,
        linear_event_id: None,
        model: "claude-sonnet".into(),
        input: serde_json::json!({}),
    }
}

/// `N distributed, N reference, N local (in Citus's metadata), N plain` from `citus_tables`.
async fn placement(db: &DatabaseConnection) -> Result<String> {
    let counts = scalar_text(
        db,
        "SELECT concat_ws(', ',
                count(*) FILTER (WHERE citus_table_type = 'distributed') || ' distributed',
                count(*) FILTER (WHERE citus_table_type = 'reference') || ' reference',
                count(*) FILTER (WHERE citus_table_type = 'local') || ' Citus local')
           FROM citus_tables",
    )
    .await?;
    let plain = scalar_i64(
        db,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind = 'r'
            AND NOT EXISTS (SELECT FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)",
    )
    .await?;
    Ok(format!("{counts}, {plain} plain PostgreSQL tables"))
}

async fn scalar_text(db: &DatabaseConnection, sql: &str) -> Result<String> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .with_context(|| format!("`{sql}` returned no row"))?;
    Ok(row.try_get_by_index(0)?)
}

async fn scalar_i64(db: &DatabaseConnection, sql: &str) -> Result<i64> {
    let row = db
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .with_context(|| format!("`{sql}` returned no row"))?;
    Ok(row.try_get_by_index(0)?)
}

/// The case that reads every organization (on Citus, every shard): which organizations have
/// events due, as a worker asks before it claims for each.
const FAN_OUT: &str = "due organizations (first 100 due events), every organization";

/// One helper call on a side, as a future.
type Call<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;
/// A hot helper's call number `i` on a side.
type HotHelper = for<'a> fn(&'a Side, usize) -> Call<'a>;

/// A case's figures on both sides (medians over rounds of each round's p50 and p99).
struct CaseFigures {
    case: &'static str,
    one: RoundFigures,
    citus: RoundFigures,
}

/// (a) Each hot helper on both sides, call by call in turn, the side that goes first
/// alternating, in `plan.rounds` rounds after a warm-up.
async fn hot_helpers(
    plan: &Plan,
    one: &Side,
    citus: &Side,
    report: &mut String,
) -> Result<Vec<CaseFigures>> {
    eprintln!(
        "9. Citus (a): hot helpers, {} calls a side in {} rounds...",
        plan.iterations, plan.rounds
    );
    let cases: [(&'static str, HotHelper); 6] = [
        ("session by token + user", |side, i| {
            Box::pin(async move {
                auth::valid_session(&side.db, &side.tokens[i % side.tokens.len()])
                    .await?
                    .context("a seeded session")?;
                Ok(())
            })
        }),
        ("ingest one event", |side, i| {
            Box::pin(async move {
                let organization = &side.organizations[i % side.organizations.len()];
                let delivery = delivery_to(50_000_000 + i, organization);
                let ingested = events::ingest::<SlackEvents>(&side.db, delivery).await?;
                anyhow::ensure!(
                    matches!(ingested, events::Ingested::Inserted { .. }),
                    "a delivery to {organization} was not routed: {ingested:?}"
                );
                Ok(())
            })
        }),
        ("claim 10 (BEGIN, claim, ROLLBACK)", |side, i| {
            Box::pin(async move {
                let organization = &side.organizations[i % side.organizations.len()];
                let txn = side.db.begin().await?;
                events::claim::<SlackEvents>(&txn, organization, 10).await?;
                txn.rollback().await?;
                Ok(())
            })
        }),
        ("list runs page (50)", |side, i| {
            Box::pin(async move {
                let organization = &side.organizations[i % side.organizations.len()];
                agents::list_runs(&side.db, organization, None, 50).await?;
                Ok(())
            })
        }),
        ("append a tool call", |side, i| {
            Box::pin(async move {
                let call = NewToolCallInput {
                    tool_name: "search".into(),
                    tool_id: None,
                    input: serde_json::json!({}),
                };
                // The organization's own running run.
                let k = i % side.runs.len();
                agents::append_tool_call(&side.db, &side.organizations[k], side.runs[k], call)
                    .await?;
                Ok(())
            })
        }),
        (FAN_OUT, |side, _| {
            Box::pin(async move {
                events::due_organizations::<SlackEvents>(&side.db, 100).await?;
                Ok(())
            })
        }),
    ];
    writeln!(
        report,
        "### (a) Hot helpers on Citus against one node\n\n\
         The same helper on both, call by call, the side going first alternating; {} calls a \
         side in each of {} rounds after a warm-up; the median over rounds of each round's p50 \
         and p99.\n",
        plan.iterations, plan.rounds
    )?;
    writeln!(
        report,
        "| case | one node p50 | one node p99 | Citus p50 | Citus p99 | ratio p50 | ratio p99 |\n\
         | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    let mut all = Vec::new();
    let mut n = 0;
    for (case, call) in cases {
        let (mut one_figures, mut citus_figures) =
            (RoundFigures::default(), RoundFigures::default());
        for round in 0..plan.rounds + 1 {
            let (mut one_samples, mut citus_samples) = (Samples::default(), Samples::default());
            for i in 0..plan.iterations {
                n += 1;
                let sides = [(one, &mut one_samples), (citus, &mut citus_samples)];
                let [first, second] = sides;
                let ordered = match i % 2 {
                    0 => [first, second],
                    _ => [second, first],
                };
                for (side, samples) in ordered {
                    timed(samples, call(side, 2 * n)).await?;
                }
            }
            // Round 0 warms both sides up.
            if round > 0 {
                one_figures.add(&one_samples);
                citus_figures.add(&citus_samples);
            }
        }
        writeln!(
            report,
            "| {case} | {} | {} | {} | {} | {:.2} | {:.2} |",
            micros(one_figures.p50()),
            micros(one_figures.p99()),
            micros(citus_figures.p50()),
            micros(citus_figures.p99()),
            ratio(citus_figures.p50(), one_figures.p50()),
            ratio(citus_figures.p99(), one_figures.p99())
        )?;
        all.push(CaseFigures {
            case,
            one: one_figures,
            citus: citus_figures,
        });
    }
    Ok(all)
}

/// (b) Batches of 100 deliveries, spread over the organizations, rows per second on each side,
/// rounds interleaved.
async fn ingest(plan: &Plan, one: &Side, citus: &Side, report: &mut String) -> Result<()> {
    eprintln!(
        "9. Citus (b): ingest of {} events a side in {} rounds...",
        plan.ingest_rows, plan.rounds
    );
    let mut rates = [Vec::new(), Vec::new()];
    let mut next = 60_000_000;
    for round in 0..plan.rounds + 1 {
        for (index, side) in [one, citus].into_iter().enumerate() {
            let started = Instant::now();
            for _ in 0..plan.ingest_rows / 100 {
                let batch: Vec<_> = (next..next + 100)
                    .map(|n| delivery_to(n, &side.organizations[n % side.organizations.len()]))
                    .collect();
                next += 100;
                let ingested = events::ingest_batch::<SlackEvents>(&side.db, &batch).await?;
                anyhow::ensure!(
                    ingested.inserted.len() == batch.len(),
                    "{} of {} deliveries routed",
                    ingested.inserted.len(),
                    batch.len()
                );
            }
            let rate = plan.ingest_rows as f64 / started.elapsed().as_secs_f64();
            if round > 0 {
                rates[index].push(rate);
            }
        }
    }
    let [one_rate, citus_rate] = rates.map(|r| crate::stats::median(&r));
    writeln!(
        report,
        "\n### (b) Batch ingest throughput\n\n\
         Batches of 100 deliveries (`events::ingest_batch`), each batch spread over every \
         organization's Slack team (so routed to all of them), one client, {} events a side and \
         round, {} rounds after a warm-up, the sides in turn; the median round.\n\n\
         | side | rows/s |\n| --- | --- |\n| one node | {one_rate:.0} |\n| Citus | {citus_rate:.0} |\n\n\
         Citus / one node: {:.2}\n",
        plan.ingest_rows,
        plan.rounds,
        citus_rate / one_rate.max(1e-9)
    )?;
    Ok(())
}

/// What one move did to the workload: how long it took, the longest statement overlapping it,
/// and the p99 of the statements that did not overlap it.
struct Move {
    what: String,
    took: Duration,
    longest: Option<load::Timed>,
    p99_outside: Duration,
}

/// (c) A workload of ingest, claims and runs over the organizations while a worker joins and
/// shard groups move: the rebalancer (logical moves), and one organization's group moved
/// blocking its writes, then back logically.
async fn moves(
    plan: &Plan,
    cluster: &CitusCluster,
    url: &DatabaseUrl,
    report: &mut String,
) -> Result<()> {
    eprintln!("9. Citus (c): moving shards under load...");
    let setup = db_connect::connect(url, &PoolSettings::default()).await?;
    let organizations = load::organizations(&setup, plan.organizations.max(50)).await;
    let workload = Load::start(url, organizations, LoadSettings::default()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut windows = Vec::new();
    let started = workload.elapsed();
    let worker = tokio::task::block_in_place(|| -> Result<CitusWorker> {
        let worker = cluster.add_worker()?;
        cluster.register_worker(&worker, url.database())?;
        Ok(worker)
    })?;
    windows.push((
        "a worker started and added (`citus_add_node`)".to_owned(),
        started,
        workload.elapsed(),
    ));
    let host = cluster.node_host();
    if plan.all_moves {
        let from = workload.elapsed();
        setup
            .execute_unprepared("SELECT citus_rebalance_start()")
            .await?;
        setup
            .execute_unprepared("SELECT citus_rebalance_wait()")
            .await?;
        windows.push((
            "rebalance onto it (`citus_rebalance_start`, logical moves)".to_owned(),
            from,
            workload.elapsed(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
    } else {
        // The rebalancer copies the reference tables to a new worker first; without it, Citus
        // refuses to move a shard until they are copied.
        let from = workload.elapsed();
        setup
            .execute_unprepared("SELECT replicate_reference_tables()")
            .await?;
        windows.push((
            "reference tables copied to it (`replicate_reference_tables`)".to_owned(),
            from,
            workload.elapsed(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (shard, at) = group_of(&setup, "load-org-007").await?;
    let to = cluster
        .worker_ports()
        .into_iter()
        .chain([worker.port()])
        .find(|&p| p != at)
        .context("another worker")?;
    let mut transfers = vec![("block_writes", at, to)];
    if plan.all_moves {
        transfers.push(("force_logical", to, at));
    }
    for (mode, from_port, to_port) in transfers {
        let from = workload.elapsed();
        setup
            .execute_unprepared(&format!(
                "SELECT citus_move_shard_placement({shard}, '{host}', {from_port}, '{host}', {to_port},
                     shard_transfer_mode => '{mode}')"
            ))
            .await?;
        windows.push((
            format!("one organization's shard group moved, `{mode}`"),
            from,
            workload.elapsed(),
        ));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let tally = workload.stop().await;
    let outcome = load::check(&setup, &tally).await;
    let moved: Vec<Move> = windows
        .into_iter()
        .map(|(what, from, to)| {
            let (longest, p99_outside) = tally.stall(from, to);
            Move {
                what,
                took: to - from,
                longest,
                p99_outside,
            }
        })
        .collect();
    report_moves(&tally, &outcome, &moved, report)?;
    setup.close().await?;
    drop(worker);
    Ok(())
}

/// The shard of `organization`'s group in `slack_events` and the port of the worker holding it.
async fn group_of(db: &DatabaseConnection, organization: &str) -> Result<(i64, u16)> {
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT shardid, nodeport FROM citus_shards
                  WHERE shardid = get_shard_id_for_distribution_column('slack_events', '{organization}')"
            ),
        ))
        .await?
        .context("the organization's shard")?;
    let port: i32 = row.try_get_by_index(1)?;
    Ok((row.try_get_by_index(0)?, u16::try_from(port)?))
}

fn report_moves(
    tally: &Tally,
    outcome: &Outcome,
    moved: &[Move],
    report: &mut String,
) -> Result<()> {
    let errors = match tally.errors.is_empty() {
        true => "none".to_owned(),
        false => tally
            .errors
            .iter()
            .map(|(kind, (n, _))| format!("{kind} x{n}"))
            .collect::<Vec<_>>()
            .join(", "),
    };
    writeln!(
        report,
        "\n### (c) Moving tenants while they work\n\n\
         Two ingesters (batches of 5, with the coordinator's notification), two claimers (claim \
         20 per organization, settle), one runner (a run, three tool calls, success), each on its \
         own connection, over 50 organizations; {} events acknowledged, {} runs. Afterwards: \
         lost {}, stored twice {}, claimed twice {}, unprocessed {}, runs with broken tool call \
         sequences {}; errors: {errors}.\n",
        tally.acknowledged.len(),
        tally.runs.len(),
        outcome.lost,
        outcome.duplicated,
        outcome.claimed_twice,
        outcome.unprocessed,
        outcome.broken_runs
    )?;
    writeln!(
        report,
        "| step | took | longest statement during it (the stall) | p99 of the statements outside it |\n\
         | --- | --- | --- | --- |"
    )?;
    for m in moved {
        let longest = m.longest.map_or("-".to_owned(), |t| {
            format!("{} ({})", millis(t.took), t.kind)
        });
        writeln!(
            report,
            "| {} | {:.1} s | {longest} | {} |",
            m.what,
            m.took.as_secs_f64(),
            millis(m.p99_outside)
        )?;
    }
    Ok(())
}

fn millis(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// (d) What more nodes would buy, from (a)'s figures: what a router statement adds on Citus
/// (the coordinator's planning and one hop to a worker, paid whatever the node count), and what
/// a statement over every shard adds per shard (which grows with the shard count, not with the
/// nodes).
fn what_nodes_buy(figures: &[CaseFigures], shards: u32, report: &mut String) -> Result<()> {
    let extra = |case: &str| {
        figures
            .iter()
            .find(|f| f.case == case)
            .map(|f| f.citus.p50().as_secs_f64() * 1e6 - f.one.p50().as_secs_f64() * 1e6)
    };
    let router: Vec<f64> = [
        "ingest one event",
        "claim 10 (BEGIN, claim, ROLLBACK)",
        "list runs page (50)",
    ]
    .iter()
    .filter_map(|c| extra(c))
    .collect();
    let router = router.iter().sum::<f64>() / router.len().max(1) as f64;
    let fan_out = extra(FAN_OUT).unwrap_or(0.0);
    writeln!(
        report,
        "\n### (d) What a node count would buy (an estimate from (a), not a measurement of \
         scaling: every node here shares the same 2 cores)\n\n\
         A statement inside one organization costs {router:.0} µs more at p50 on Citus than on one \
         node (the mean over ingest, claim and the runs page): the coordinator's planning and one \
         hop to the worker holding the organization. That cost does not grow with the node \
         count, and the worker's share of the work is the one-node cost, so with N workers the \
         statements of different organizations run on N servers' cores and disks: throughput \
         grows with N until the coordinator, which plans every statement, is the bottleneck \
         (more coordinator cores, or Citus's routing from the workers, then). A read over every \
         organization costs {fan_out:.0} µs more, about {:.0} µs per shard over {shards} shards: it \
         grows with the shard count, whatever the nodes, so such reads stay rare (the due \
         organizations' probe of the workers, lists in the studio).\n",
        fan_out / f64::from(shards.max(1))
    )?;
    Ok(())
}
