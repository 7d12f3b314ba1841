//! `cargo run -p bench --release --bin rls`: the hot helpers under row-level security (issue
//! 22) against the same calls without it, interleaved call by call on one database, and the
//! plans showing the policy is served by the organization's index.
//!
//! Three sides per case, each on a pool of its own to the same database:
//! - **rls**: a login member of `app_service` (`NOBYPASSRLS`), `tenant::begin` (BEGIN, SET
//!   LOCAL), the helper, COMMIT: production's path.
//! - **same statements, no RLS**: the superuser (RLS never applies to it) sends the very same
//!   BEGIN, SET LOCAL, helper, COMMIT: the ratio rls / this is the policies' cost alone.
//! - **helper alone, no RLS**: the superuser calls the helper outside a transaction, as services
//!   did before issue 22: rls / this is the whole cost of working as one organization (the
//!   policies plus the transaction's extra round trips).
//!
//! A throwaway cluster of its own, seeded by the workspace's generator: 50 organizations,
//! 20 000 runs, 20 000 pending Slack events.

#[path = "../stats.rs"]
#[allow(dead_code)]
mod stats;

use anyhow::{Context, Result};
use db_connect::{DatabaseUrl, PoolSettings};
use entity::enums::TriggerSource;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};
use secrecy::{ExposeSecret, SecretString};
use seed::{SeedOptions, Silent, Sizes};
use serde_json::json;
use service::{
    agents::{self, NewRunInput, NewToolCallInput},
    events::{self, SlackEvents},
    tenant,
};
use stats::{Samples, micros};
use uuid::Uuid;

#[derive(clap::Parser)]
#[command(about = "Row-level security on the hot helpers, against the same calls without it")]
struct Args {
    /// Tiny sizes, for CI: checks the bench runs, proves nothing about speed.
    #[arg(long)]
    smoke: bool,
}

/// Calls per side and warm-up calls, and the seed's size of each table.
#[derive(Clone, Copy)]
struct Size {
    iterations: usize,
    warm_up: usize,
    rows: u64,
}

impl Size {
    fn of(args: &Args) -> Self {
        match args.smoke {
            true => Self {
                iterations: 10,
                warm_up: 2,
                rows: 500,
            },
            false => Self {
                iterations: 300,
                warm_up: 30,
                rows: 20_000,
            },
        }
    }
}

#[derive(Default)]
struct Case {
    rls: Samples,
    same: Samples,
    alone: Samples,
}

/// Which helper a case calls, given the organization.
#[derive(Clone, Copy)]
enum Helper {
    ListRuns,
    TokenUsage,
    FindEvent(Uuid),
    Claim,
    AppendToolCall(Uuid),
}

async fn call(db: &impl ConnectionTrait, helper: Helper, org: &str) -> Result<()> {
    match helper {
        Helper::ListRuns => drop(agents::list_runs(db, org, None, 50).await?),
        Helper::TokenUsage => {
            let now = chrono::Utc::now().fixed_offset();
            let _usage =
                agents::token_usage(db, org, now - chrono::Duration::days(30), now).await?;
        }
        Helper::FindEvent(id) => {
            events::find::<SlackEvents>(db, org, id)
                .await?
                .context("the event is the organization's")?;
        }
        Helper::Claim => drop(events::claim::<SlackEvents>(db, org, 10).await?),
        Helper::AppendToolCall(run) => drop(
            agents::append_tool_call(
                db,
                org,
                run,
                NewToolCallInput {
                    tool_name: "search".into(),
                    tool_id: None,
                    input: json!({"q": "x"}),
                },
            )
            .await?,
        ),
    }
    Ok(())
}

async fn timed(
    samples: &mut Samples,
    work: impl std::future::Future<Output = Result<()>>,
) -> Result<()> {
    let started = std::time::Instant::now();
    work.await?;
    samples.record(started.elapsed());
    Ok(())
}

async fn measure(
    app: &DatabaseConnection,
    owner: &DatabaseConnection,
    helper: Helper,
    org: &str,
    size: Size,
) -> Result<Case> {
    let mut case = Case::default();
    let set = tenant::set_local_statement(org)?;
    let (rls, same, alone) = (&mut case.rls, &mut case.same, &mut case.alone);
    for i in 0..size.iterations + size.warm_up {
        // Rotate which side goes first, so none always meets the warmest cache.
        for side in 0..3 {
            match (side + i) % 3 {
                0 => {
                    timed(rls, async {
                        let txn = tenant::begin(app, org).await?;
                        call(&txn, helper, org).await?;
                        Ok(txn.commit().await?)
                    })
                    .await?
                }
                1 => {
                    timed(same, async {
                        let txn = owner.begin().await?;
                        txn.execute_unprepared(&set).await?;
                        call(&txn, helper, org).await?;
                        Ok(txn.commit().await?)
                    })
                    .await?
                }
                _ => timed(alone, call(owner, helper, org)).await?,
            }
        }
    }
    for side in [&mut case.rls, &mut case.same, &mut case.alone] {
        side.skip_first(size.warm_up);
    }
    Ok(case)
}

async fn text(db: &impl ConnectionTrait, sql: &str) -> Result<Vec<String>> {
    Ok(db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .iter()
        .map(|row| row.try_get_by_index::<String>(0))
        .collect::<Result<_, _>>()?)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<()> {
    let size = Size::of(&<Args as clap::Parser>::parse());
    let cluster = dev_servers::ThrowawayCluster::start()?;
    let admin_url = cluster.url("postgres")?;
    let admin = db_connect::connect(&admin_url, &PoolSettings::default()).await?;
    admin
        .execute_unprepared("CREATE DATABASE bench_rls")
        .await?;
    let url = cluster.url("bench_rls")?;
    migration::apply_pending(&url).await?;

    eprintln!("seeding...");
    let options: sqlx::postgres::PgConnectOptions = url.expose().expose_secret().parse()?;
    let mut conn =
        sqlx::ConnectOptions::connect(&db_connect::connect::driver_options(options)).await?;
    let sizes = Sizes {
        users: 1_000,
        organizations: 50,
        slack_events: size.rows,
        linear_events: 0,
        agent_runs: size.rows,
        tool_calls: 0,
        pending_percent: 100,
    };
    let seeded = seed::seed(&mut conn, &SeedOptions::new(1, sizes), &Silent).await?;
    let org = seeded.busiest_organization_id;

    let settings = PoolSettings {
        max_connections: 2,
        ..PoolSettings::default()
    };
    let owner = db_connect::connect(&url, &settings).await?;
    owner
        .execute_unprepared(&format!(
            "CREATE ROLE bench_app LOGIN PASSWORD 'bench-only' IN ROLE {}",
            migration::tenancy::APP_ROLE
        ))
        .await?;
    let app_url = DatabaseUrl::new(
        "bench_app",
        SecretString::from("bench-only"),
        url.host(),
        url.port(),
        url.database(),
    )?;
    let app = db_connect::connect(&app_url, &settings).await?;

    let event = Uuid::parse_str(
        &text(
            &owner,
            &format!("SELECT id::text FROM slack_events WHERE organization_id = '{org}' ORDER BY id LIMIT 1"),
        )
        .await?[0],
    )?;
    let run = agents::create_run(
        &owner,
        NewRunInput {
            organization_id: org.clone(),
            user_id: None,
            trigger_source: TriggerSource::Api,
            slack_event_id: None,
            linear_event_id: None,
            model: "claude-sonnet".into(),
            input: json!({}),
        },
    )
    .await?;
    agents::start_run(&owner, &org, run.id).await?;
    owner.execute_unprepared("ANALYZE").await?;

    let cases = [
        ("list_runs (page of 50)", Helper::ListRuns),
        ("token_usage (30 days)", Helper::TokenUsage),
        ("events::find", Helper::FindEvent(event)),
        ("events::claim 10", Helper::Claim),
        ("append_tool_call", Helper::AppendToolCall(run.id)),
    ];
    println!(
        "Row-level security on the hot helpers: {} calls per side after {} warm-up, interleaved; \
         organization {org} of 50 ({} runs, {} pending events); {} build\n",
        size.iterations,
        size.warm_up,
        size.rows,
        size.rows,
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "| helper | rls p50 | same statements, no RLS p50 | helper alone, no RLS p50 | policies (rls / same) | tenant context (rls / alone) |\n| --- | --- | --- | --- | --- | --- |"
    );
    for (name, helper) in cases {
        eprintln!("{name}...");
        let case = measure(&app, &owner, helper, &org, size).await?;
        let ratio = |a: &Samples, b: &Samples| a.p50().as_secs_f64() / b.p50().as_secs_f64();
        println!(
            "| {name} | {} | {} | {} | {:.2} | {:.2} |",
            micros(case.rls.p50()),
            micros(case.same.p50()),
            micros(case.alone.p50()),
            ratio(&case.rls, &case.same),
            ratio(&case.rls, &case.alone)
        );
    }

    println!("\nPlans as the application role, inside `tenant::begin`:\n");
    let txn = tenant::begin(&app, &org).await?;
    for sql in [
        format!(
            "SELECT * FROM agent_runs WHERE organization_id = '{org}' ORDER BY created_at DESC, id DESC LIMIT 50"
        ),
        "SELECT * FROM agent_runs ORDER BY created_at DESC, id DESC LIMIT 50".to_owned(),
        "SELECT count(*) FROM slack_events".to_owned(),
    ] {
        println!("```\n{sql}");
        for line in text(
            &txn,
            &format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY OFF) {sql}"),
        )
        .await?
        {
            println!("{line}");
        }
        println!("```");
    }
    txn.rollback().await?;
    drop((app, owner, admin));
    Ok(())
}
