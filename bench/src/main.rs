//! `cargo run -p bench --release -- [--quick]`: the data layer against hand-written sqlx and
//! Drizzle, its ingest throughput, and its latency as the events table grows. Runs on a fresh
//! database of the configured server (DATABASE_URL, or the local cluster), dropped at the end.

mod citus;
mod drizzle;
mod online_migrations;
mod overhead;
mod scale;
mod seed;
mod stats;
mod studio_pages;
mod throughput;
mod topology;
mod versus;
mod workers;

use std::{fmt::Write as _, path::Path, process::ExitCode};

use anyhow::{Context, Result};
use clap::Parser;
use db_connect::{DatabaseUrl, PoolSettings, Settings};
use sea_orm::ConnectionTrait;
use stats::micros;

#[derive(Parser, Clone)]
#[command(about = "Benchmarks of the data layer")]
struct Args {
    /// Smaller sizes (ingest 50 000 rows, scale up to 100 000 events), a few minutes.
    #[arg(long)]
    quick: bool,
    /// Tiny sizes, for CI: checks the bench runs, proves nothing about speed.
    #[arg(long)]
    smoke: bool,
    /// Skip the Drizzle comparison (needs Node.js and npm).
    #[arg(long)]
    no_drizzle: bool,
    /// Run only section 7, migrations under load (at the size --smoke/--quick choose).
    #[arg(long)]
    online_migrations: bool,
    /// Run only section 6, PgBouncer and the replica (at the size --smoke/--quick choose).
    #[arg(long)]
    topology: bool,
    /// Run only section 9, Citus against one node (at the size --smoke/--quick choose).
    #[arg(long)]
    citus: bool,
    /// Run only section 8, the event workers (at the size --smoke/--quick choose).
    #[arg(long)]
    workers: bool,
    /// Run only section 1, the helpers against hand-written sqlx (at the size --smoke/--quick
    /// choose).
    #[arg(long)]
    overhead: bool,
    /// Skip the graphile-worker and pg-boss comparison of the event workers (needs Node.js and npm).
    #[arg(long)]
    no_node_workers: bool,
    /// Write the report to docs/benchmarks.md (default for a full run).
    #[arg(long)]
    write_docs: bool,
}

struct Plan {
    iterations: usize,
    ingest_rows: usize,
    sizes: Vec<usize>,
    pending: usize,
    topology: topology::Size,
    /// Measured rounds of each side of the ingest and Drizzle comparisons (after a warm-up).
    rounds: usize,
}

impl Args {
    fn plan(&self) -> Plan {
        match (self.smoke, self.quick) {
            (true, _) => Plan {
                iterations: 20,
                ingest_rows: 2_000,
                sizes: vec![1_000, 2_000],
                pending: 2_000,
                topology: topology::Size {
                    iterations: 20,
                    clients: 40,
                    ops_per_client: 4,
                    readers: 4,
                    pages_per_reader: 10,
                },
                rounds: 1,
            },
            (false, true) => Plan {
                iterations: 300,
                ingest_rows: 50_000,
                sizes: vec![10_000, 100_000],
                pending: 20_000,
                topology: topology::Size {
                    iterations: 300,
                    clients: 200,
                    ops_per_client: 10,
                    readers: 8,
                    pages_per_reader: 100,
                },
                rounds: 3,
            },
            (false, false) => Plan {
                iterations: 2_000,
                ingest_rows: 200_000,
                sizes: vec![10_000, 100_000, 1_000_000],
                pending: 60_000,
                topology: topology::Size {
                    iterations: 2_000,
                    clients: 500,
                    ops_per_client: 20,
                    readers: 16,
                    pages_per_reader: 300,
                },
                rounds: 5,
            },
        }
    }
}

fn ratio(a: std::time::Duration, b: std::time::Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64().max(1e-9)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines().next().map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<u64>()
                    .unwrap_or(0)
            })
        })
        .map_or("? GiB".into(), |kb| {
            format!("{:.0} GiB", kb as f64 / 1024.0 / 1024.0)
        });
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores ({cpu}), {memory} RAM")
}

fn build_profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// The server as it describes itself: version and the address this run reached it at.
async fn server_label(db: &sea_orm::DatabaseConnection) -> Result<String> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT current_setting('server_version'),
                    COALESCE(host(inet_server_addr()) || ':' || inet_server_port(), 'a Unix socket')",
        ))
        .await?
        .context("the server described itself")?;
    let (version, address): (String, String) = (row.try_get_by_index(0)?, row.try_get_by_index(1)?);
    Ok(format!("PostgreSQL {version} at {address}"))
}

/// A user's mistake (a wrong URL, a server that is down) is one line naming it, whatever
/// `RUST_BACKTRACE` says: anyhow would print a backtrace with it. Panics keep theirs.
#[tokio::main(flavor = "multi_thread")]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The server the bench creates its database on: where the environment's topology sends
/// sessions (it creates and drops a database, and starts a PgBouncer of its own for section 6),
/// else the local cluster.
fn server(settings: &Settings) -> Result<DatabaseUrl> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let topology = dev_servers::topology_or_local(&workspace, settings)?;
    Ok(topology
        .session_url("the bench (it creates and drops a database of its own)")?
        .clone())
}

async fn run() -> Result<()> {
    let args = Args::parse();
    let plan = args.plan();
    let settings = Settings::from_env()?;
    let server = server(&settings)?;
    let online = online_migrations::Plan::new(args.smoke, args.quick);
    if args.online_migrations {
        println!("{}", online_migrations::section(&server, &online).await?);
        return Ok(());
    }
    if args.citus {
        let mut report = String::new();
        citus::section(&mut report, &citus::Plan::new(args.smoke, args.quick)).await?;
        println!("{report}");
        return Ok(());
    }
    let name = format!("bench_{}", std::process::id());
    let admin = db_connect::connect(&server.with_database("postgres")?, &settings.pool).await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .context("creating the bench database")?;
    let url = server.with_database(&name)?;
    let result = bench(&args, &plan, &url).await;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    result
}

/// Section 1: each hot helper against the same statement sent with sqlx.
async fn overhead_section(
    report: &mut String,
    db: &sea_orm::DatabaseConnection,
    pool: &sqlx::PgPool,
    data: &seed::BenchData,
    iterations: usize,
) -> Result<()> {
    let comparisons = overhead::run(db, pool, data, iterations).await?;
    writeln!(
        report,
        "## 1. Helper overhead against hand-written sqlx (goal: ratio <= 1.10)\n"
    )?;
    writeln!(
        report,
        "| case | helper p50 | helper p99 | sqlx p50 | sqlx p99 | ratio p50 |\n| --- | --- | --- | --- | --- | --- |"
    )?;
    for c in &comparisons {
        writeln!(
            report,
            "| {} | {} | {} | {} | {} | {:.2} |",
            c.case,
            micros(c.helper.p50()),
            micros(c.helper.p99()),
            micros(c.raw.p50()),
            micros(c.raw.p99()),
            ratio(c.helper.p50(), c.raw.p50())
        )?;
    }
    Ok(())
}

async fn bench(args: &Args, plan: &Plan, url: &DatabaseUrl) -> Result<()> {
    let settings = PoolSettings {
        max_connections: 4,
        ..PoolSettings::default()
    };
    let db = db_connect::connect(url, &settings).await?;
    let pool = seed::pool(url, 4).await?;
    migration::apply_pending(url).await?;
    let data = seed::base(&db, &pool, plan.pending).await?;
    let mut report = String::new();
    if args.topology {
        topology::run(&plan.topology, url, &data, &mut report).await?;
        println!("{report}");
        return Ok(());
    }
    if args.workers {
        workers::section(
            &mut report,
            &db,
            url,
            &data.organization_id,
            &workers::Plan::new(args.smoke, args.quick),
            !args.no_node_workers,
        )
        .await?;
        println!("{report}");
        return Ok(());
    }
    let mode = if args.smoke {
        "--smoke"
    } else if args.quick {
        "--quick"
    } else {
        "(full)"
    };
    writeln!(
        report,
        "Machine: {}; {}; {} build; mode {mode}",
        machine(),
        server_label(&db).await?,
        build_profile()
    )?;
    writeln!(
        report,
        "Date: {}\n",
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    )?;

    eprintln!(
        "1/8 helpers against hand-written sqlx ({} calls each)...",
        plan.iterations
    );
    overhead_section(&mut report, &db, &pool, &data, plan.iterations).await?;
    if args.overhead {
        println!("{report}");
        return Ok(());
    }

    let mut drizzle = match args.no_drizzle {
        true => None,
        false => Some(drizzle::Drizzle::start(url)?),
    };
    eprintln!(
        "2/8 ingest throughput ({} rows, {} rounds per side)...",
        plan.ingest_rows, plan.rounds
    );
    let t = throughput::run(&db, &pool, drizzle.as_mut(), plan.ingest_rows, plan.rounds).await?;
    writeln!(
        report,
        "\n## 2. Batch ingest throughput (1 000-row batches, 10% duplicates; goal: >= 0.8x the best ceiling)\n"
    )?;
    writeln!(
        report,
        "{} rows a round; {} measured rounds per side after a warm-up round, interleaved in a rotating order; the median round.\n",
        t.rows, plan.rounds
    )?;
    writeln!(report, "| side | rows/s |\n| --- | --- |")?;
    for side in [
        throughput::Side::Helper,
        throughput::Side::Unnest,
        throughput::Side::Copy,
    ] {
        let rows_per_s = t.rows_per_s(side).expect("every side ran");
        writeln!(report, "| {} | {rows_per_s:.0} |", side.label())?;
    }
    let (best, ceiling) = t.best_ceiling();
    writeln!(
        report,
        "\nhelper / best ceiling ({}): {:.2}",
        best.label(),
        t.rows_per_s(throughput::Side::Helper)
            .expect("the helper ran")
            / ceiling
    )?;

    if let Some(drizzle) = drizzle.as_mut() {
        eprintln!(
            "3/8 Drizzle ORM on node-postgres ({} rounds per side)...",
            plan.rounds
        );
        // A claim of 10 needs 10 due events, and the filled table has one in 200 rows.
        let claim_table_rows = plan.sizes[0].max(2_000);
        let fixture = versus::Fixture {
            tokens: &data.session_tokens,
            organization_id: &data.organization_id,
            claim_table_rows,
        };
        let latencies = versus::run(&db, drizzle, &fixture, plan.iterations, plan.rounds).await?;
        versus::report(&mut report, drizzle, &t, &latencies, plan.rounds)?;
    }
    drop(drizzle);

    eprintln!("4/8 scale: {:?} events...", plan.sizes);
    let mut points = Vec::new();
    for &rows in &plan.sizes {
        points.push(
            scale::measure(&db, &data.organization_id, rows, plan.iterations.min(500)).await?,
        );
    }
    let largest = *plan.sizes.last().expect("sizes");
    let (claim_plan, page_plan) = scale::explain(&db, &data.organization_id, largest).await?;
    writeln!(
        report,
        "\n## 4. Scale (one organization's events, 1% pending; goal: p50 at the largest size <= 1.5x p50 at the smallest)\n"
    )?;
    writeln!(
        report,
        "| events | claim 10 p50 | claim 10 p99 | keyset page (50) p50 | page p99 |\n| --- | --- | --- | --- | --- |"
    )?;
    for p in &points {
        writeln!(
            report,
            "| {} | {} | {} | {} | {} |",
            p.rows,
            micros(p.claim.p50()),
            micros(p.claim.p99()),
            micros(p.page.p50()),
            micros(p.page.p99())
        )?;
    }
    let (first, last) = (&points[0], points.last().expect("points"));
    writeln!(
        report,
        "\nlargest / smallest p50: claim {:.2}, page {:.2}\n",
        ratio(last.claim.p50(), first.claim.p50()),
        ratio(last.page.p50(), first.page.p50())
    )?;
    writeln!(
        report,
        "`EXPLAIN (ANALYZE, BUFFERS)` at {largest} events, claim:\n\n```\n{claim_plan}\n```\n\npage:\n\n```\n{page_plan}\n```"
    )?;

    eprintln!("5/8 studio table page at {largest} events...");
    let pages = studio_pages::measure(&db, url, largest, plan.iterations.min(200)).await?;
    writeln!(
        report,
        "\n## 5. Studio table page at {} events (goal: half-way page p50 <= 1.5x the first page)\n",
        pages.rows
    )?;
    writeln!(
        report,
        "| page (50 rows, rendered HTML) | p50 | p99 |\n| --- | --- | --- |"
    )?;
    for (name, samples) in [
        ("first page", &pages.first),
        ("half-way, keyset cursor", &pages.deep),
        (
            "baseline: the half-way rows by OFFSET, query only",
            &pages.offset,
        ),
    ] {
        writeln!(
            report,
            "| {name} | {} | {} |",
            micros(samples.p50()),
            micros(samples.p99())
        )?;
    }
    writeln!(
        report,
        "\nhalf-way / first p50: {:.2}; OFFSET query alone / whole keyset page p50: {:.2}",
        ratio(pages.deep.p50(), pages.first.p50()),
        ratio(pages.offset.p50(), pages.deep.p50())
    )?;
    topology::run(&plan.topology, url, &data, &mut report).await?;
    report.push_str(
        &online_migrations::section(url, &online_migrations::Plan::new(args.smoke, args.quick))
            .await?,
    );
    eprintln!("8/8 event workers against graphile-worker and pg-boss...");
    let workers_plan = workers::Plan::new(args.smoke, args.quick);
    workers::section(
        &mut report,
        &db,
        url,
        &data.organization_id,
        &workers_plan,
        !args.no_node_workers,
    )
    .await?;
    citus::section(&mut report, &citus::Plan::new(args.smoke, args.quick)).await?;
    println!("{report}");
    if largest >= 100_000 {
        scale::require_index_only(&claim_plan, &page_plan)?;
    }
    if args.write_docs || (!args.quick && !args.smoke) {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/benchmarks.md");
        let previous = std::fs::read_to_string(&path).unwrap_or_default();
        let notes = previous
            .split_once("<!-- notes -->")
            .map(|(_, n)| n.to_owned())
            .unwrap_or_default();
        let command = format!(
            "cargo run -p bench{} -- {}",
            if cfg!(debug_assertions) {
                ""
            } else {
                " --release"
            },
            std::env::args().skip(1).collect::<Vec<_>>().join(" ")
        );
        std::fs::write(
            &path,
            format!(
                "# Benchmarks\n\nCommand: `{}`\n\n{report}\n<!-- notes -->{notes}",
                command.trim_end()
            ),
        )?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
