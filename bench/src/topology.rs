//! The production topology measured: the hot helpers through a transaction-mode PgBouncer (1.18
//! with values inlined, 1.25 inlined and with prepared statements) against the same helpers
//! direct; many clients, each with its own connection, through
//! PgBouncer's few server connections against the same clients straight at PostgreSQL; and
//! list reads on a primary alone against a primary with a streaming replica. The bench starts
//! its own PgBouncer in front of the bench server, and its own throwaway primary and replica.

use std::{
    fmt::Write as _,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use db_connect::{DatabaseUrl, Pool, PoolSettings, Pooler};
use dev_servers::{
    PgBinaries, PgBouncer, PgBouncerRelease, PgBouncerSettings, Replica, ThrowawayCluster,
};
use sea_orm::TransactionTrait;
use secrecy::ExposeSecret;
use service::{
    Cursor, Db, ReplicaState, Topology, agents, auth,
    events::{self, SlackEvents},
};
use sqlx::Connection;
use tokio::sync::Barrier;

use crate::{
    overhead::delivery,
    ratio,
    seed::BenchData,
    stats::{Samples, micros, timed},
};

/// How much of each measurement to do.
pub struct Size {
    /// Calls per helper and side in (a).
    pub iterations: usize,
    /// Clients in (b), each with a connection of its own.
    pub clients: usize,
    /// Session lookups and claims per client in (b).
    pub ops_per_client: usize,
    /// Concurrent readers in (c).
    pub readers: usize,
    /// Pages each reader lists in (c).
    pub pages_per_reader: usize,
}

/// Server connections PgBouncer keeps per database in (b), as the issue asks.
const SERVER_CONNECTIONS: u32 = 20;

/// Measures all three and writes a section of `report`; `url` is the bench database (seeded
/// with sessions, runs and pending events), reached as a user that may read `pg_authid`.
/// PgBouncer 1.18 and 1.25 both run, side by side, in front of the same database.
pub async fn run(
    size: &Size,
    url: &DatabaseUrl,
    data: &BenchData,
    report: &mut String,
) -> Result<()> {
    let bins = PgBinaries::locate()?;
    let start = |release| {
        PgBouncer::start(
            url,
            &bins,
            PgBouncerSettings {
                server_pool_size: SERVER_CONNECTIONS,
                max_client_connections: size.clients as u32 + 100,
                release,
                max_prepared_statements: match release {
                    PgBouncerRelease::V1_18 => None,
                    PgBouncerRelease::V1_25 => Some(200),
                },
            },
        )
    };
    let started = (
        start(PgBouncerRelease::V1_18),
        start(PgBouncerRelease::V1_25),
    );
    let versions = match &started {
        (Ok(old), Ok(new)) => format!(
            "{} and {}",
            pgbouncer_version(old).await?,
            pgbouncer_version(new).await?
        ),
        _ => "PgBouncer".to_owned(),
    };
    writeln!(
        report,
        "\n## 6. Topology: {versions} (transaction mode) and a streaming replica\n"
    )?;
    match started {
        (Ok(old), Ok(new)) => {
            let pooled = Pooled {
                old: old.url(url.database())?,
                new: new.url(url.database())?,
            };
            hot_helpers(size, url, &pooled, data, report).await?;
            many_clients(size, url, &pooled, data, report).await?;
        }
        (Err(err), _) | (_, Err(err)) => writeln!(
            report,
            "(a) and (b) skipped: PgBouncer did not start: {err}\n"
        )?,
    }
    match ThrowawayCluster::start() {
        Ok(cluster) => replica_reads(size, &cluster, report).await?,
        Err(err) => writeln!(report, "(c) skipped: no throwaway cluster: {err}")?,
    }
    Ok(())
}

/// The bench database through each PgBouncer.
struct Pooled {
    /// Debian's 1.18.
    old: DatabaseUrl,
    /// 1.25 with `max_prepared_statements = 200`.
    new: DatabaseUrl,
}

/// `PgBouncer 1.18.0`, as the running PgBouncer's admin console says.
async fn pgbouncer_version(bouncer: &PgBouncer) -> Result<String> {
    let options: sqlx::postgres::PgConnectOptions =
        bouncer.admin_url()?.expose().expose_secret().parse()?;
    let mut admin = sqlx::PgConnection::connect_with(&options.extra_float_digits(None)).await?;
    let row = sqlx::raw_sql("SHOW VERSION")
        .fetch_one(&mut admin)
        .await
        .context("PgBouncer's SHOW VERSION")?;
    Ok(sqlx::Row::try_get(&row, 0)?)
}

/// One helper call as a future on any connection.
type Call<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send + 'a>>;
/// A hot helper's call number `i` over the seeded rows, reading from `cursor` where it pages.
type HotHelper = for<'a> fn(&'a Pool, &'a BenchData, usize, Option<Cursor>) -> Call<'a>;

/// (a) Each hot helper on four pools, call by call in turn: SeaORM's prepared statements
/// direct (the baseline), values inlined through PgBouncer 1.18 and through 1.25, and the
/// driver's prepared statements through 1.25 (`DB_POOLER_PREPARED_STATEMENTS=true`).
async fn hot_helpers(
    size: &Size,
    direct_url: &DatabaseUrl,
    pooled: &Pooled,
    data: &BenchData,
    report: &mut String,
) -> Result<()> {
    eprintln!(
        "6/8 topology (a): hot helpers through PgBouncer ({} calls each)...",
        size.iterations
    );
    let settings = PoolSettings {
        max_connections: 2,
        ..PoolSettings::default()
    };
    let sides = [
        Pool::connect(direct_url, Pooler::None, &settings).await?,
        Pool::connect(&pooled.old, Pooler::Transaction, &settings).await?,
        Pool::connect(&pooled.new, Pooler::Transaction, &settings).await?,
        Pool::connect_prepared(&pooled.new, &settings).await?,
    ];
    let middle = agents::list_runs(&sides[0], &data.organization_id, None, 500)
        .await?
        .items
        .last()
        .map(|run| Cursor {
            created_at: run.created_at,
            id: run.id,
        });
    let cases: [(&str, HotHelper); 4] = [
        ("session by token + user", |db, data, i, _| {
            Box::pin(async move {
                let token = &data.session_tokens[i % data.session_tokens.len()];
                auth::valid_session(db, token)
                    .await?
                    .context("a seeded session")?;
                Ok(())
            })
        }),
        ("ingest one event", |db, _, i, _| {
            Box::pin(async move {
                let ingested = events::ingest::<SlackEvents>(db, delivery(40_000_000 + i)).await?;
                anyhow::ensure!(
                    matches!(ingested, events::Ingested::Inserted { .. }),
                    "a delivery of the bench's team was not routed: {ingested:?}"
                );
                Ok(())
            })
        }),
        ("claim 10 (BEGIN, claim, ROLLBACK)", |db, data, _, _| {
            Box::pin(async move {
                let txn = db.begin().await?;
                events::claim::<SlackEvents>(&txn, &data.organization_id, 10).await?;
                txn.rollback().await?;
                Ok(())
            })
        }),
        ("list runs page (50)", |db, data, _, cursor| {
            Box::pin(async move {
                agents::list_runs(db, &data.organization_id, cursor, 50).await?;
                Ok(())
            })
        }),
    ];
    writeln!(
        report,
        "### (a) Hot helpers through PgBouncer against direct (goal: prepared through 1.25 <= 1.2x direct)\n\n\
         Same database, calls interleaved (one call on each side in turn); ratios are p50 against \
         direct. Inlined: every statement one simple-protocol query with its values written in \
         (`DB_POOLER=transaction`); prepared: the driver's cached prepared statements, which 1.25 \
         tracks (`DB_POOLER_PREPARED_STATEMENTS=true`).\n"
    )?;
    writeln!(
        report,
        "| case | direct p50 | inlined through 1.18 p50 | inlined through 1.25 p50 | prepared through 1.25 p50 | prepared 1.25 p99 | ratio inlined 1.18 | ratio inlined 1.25 | ratio prepared 1.25 |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )?;
    let warm = size.iterations / 10 + 1;
    for (case, call) in cases {
        let mut samples: [Samples; 4] = Default::default();
        for i in 0..size.iterations + warm {
            for (side, db) in sides.iter().enumerate() {
                // Each side its own keys: the sides never insert the same event.
                let call = call(db, data, sides.len() * i + side, middle);
                timed(&mut samples[side], call).await?;
            }
        }
        samples.iter_mut().for_each(|s| s.skip_first(warm));
        writeln!(
            report,
            "| {case} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} |",
            micros(samples[0].p50()),
            micros(samples[1].p50()),
            micros(samples[2].p50()),
            micros(samples[3].p50()),
            micros(samples[3].p99()),
            ratio(samples[1].p50(), samples[0].p50()),
            ratio(samples[2].p50(), samples[0].p50()),
            ratio(samples[3].p50(), samples[0].p50())
        )?;
    }
    let (simple, wrapped) =
        protocols_compared(&pooled.old, &data.session_tokens, size.iterations).await?;
    writeln!(
        report,
        "\nThe two safe protocols through PgBouncer 1.18, raw sqlx, the session lookup's statement: \
         the simple protocol with inlined literals (what the pool does: 1 round trip) p50 {} \
         p99 {}; an unnamed statement in a transaction of its own (`BEGIN`, Parse/Describe/Sync, \
         Bind/Execute/Sync, `COMMIT`: 4 round trips) p50 {} p99 {}; ratio {:.2}.\n",
        micros(simple.p50()),
        micros(simple.p99()),
        micros(wrapped.p50()),
        micros(wrapped.p99()),
        ratio(wrapped.p50(), simple.p50())
    )?;
    for side in sides {
        side.close().await?;
    }
    Ok(())
}

const SESSION_LOOKUP: &str = "SELECT s.id, u.email FROM sessions s JOIN users u ON u.id = s.user_id
     WHERE s.token = $1 AND s.expires_at > now()";

/// The session lookup both safe ways through a transaction pooler, call by call on one
/// connection: in the simple protocol with its parameter inlined, and as an unnamed statement
/// (nothing outlives the transaction) inside a transaction (Parse and Bind on one session).
async fn protocols_compared(
    url: &DatabaseUrl,
    tokens: &[String],
    iterations: usize,
) -> Result<(Samples, Samples)> {
    let options: sqlx::postgres::PgConnectOptions = url.expose().expose_secret().parse()?;
    let mut conn = sqlx::PgConnection::connect_with(&options.extra_float_digits(None)).await?;
    let (mut simple, mut wrapped) = (Samples::default(), Samples::default());
    let warm = iterations / 10 + 1;
    for i in 0..iterations + warm {
        let token = &tokens[i % tokens.len()];
        let inlined = db_connect::inline::inline(SESSION_LOOKUP, &[token.clone().into()])?;
        let found = timed(
            &mut simple,
            sqlx::raw_sql(sqlx::AssertSqlSafe(inlined)).fetch_optional(&mut conn),
        )
        .await?;
        anyhow::ensure!(found.is_some(), "seeded session {token} not found");
        let started = Instant::now();
        let mut txn = conn.begin().await?;
        let found: Option<(String, String)> = sqlx::query_as(SESSION_LOOKUP)
            .bind(token)
            .persistent(false)
            .fetch_optional(&mut *txn)
            .await?;
        txn.commit().await?;
        wrapped.record(started.elapsed());
        anyhow::ensure!(found.is_some(), "seeded session {token} not found");
    }
    simple.skip_first(warm);
    wrapped.skip_first(warm);
    Ok((simple, wrapped))
}

/// What `clients` clients did: operations, their latencies, failed operations, refused
/// connections, and the wall time of the operations.
struct Crowd {
    ops: usize,
    latencies: Samples,
    errors: usize,
    refused: usize,
    took: Duration,
}

/// (b) `clients` clients at once, each with a connection of its own, each doing session
/// lookups and claims: straight at PostgreSQL, whose `max_connections` refuses some, and through
/// each PgBouncer's 20 server connections (1.18 inlined, 1.25 with prepared statements).
async fn many_clients(
    size: &Size,
    direct_url: &DatabaseUrl,
    pooled: &Pooled,
    data: &BenchData,
    report: &mut String,
) -> Result<()> {
    eprintln!(
        "6/8 topology (b): {} clients with a connection each, direct and through PgBouncer...",
        size.clients
    );
    let tokens = Arc::new(data.session_tokens.clone());
    let organization = data.organization_id.as_str();
    let direct = crowd(size, direct_url, Statements::Direct, &tokens, organization).await;
    let inlined = crowd(
        size,
        &pooled.old,
        Statements::Inlined,
        &tokens,
        organization,
    )
    .await;
    let prepared = crowd(
        size,
        &pooled.new,
        Statements::Prepared,
        &tokens,
        organization,
    )
    .await;
    writeln!(
        report,
        "### (b) {} clients, one connection each, {} session lookups + claims each\n\n\
         Direct: every client connects to PostgreSQL (its `max_connections` refuses the rest). \
         Through PgBouncer: every client connects to PgBouncer, which shares {SERVER_CONNECTIONS} \
         server connections among them. A claim is `BEGIN`, claim 1 of the organization's events, \
         `ROLLBACK`.\n",
        size.clients, size.ops_per_client
    )?;
    writeln!(
        report,
        "| path | clients refused | operations | errors | throughput (ops/s) | p50 | p99 |\n| --- | --- | --- | --- | --- | --- | --- |"
    )?;
    for (path, crowd) in [
        ("direct", direct),
        ("inlined through PgBouncer 1.18", inlined),
        ("prepared through PgBouncer 1.25", prepared),
    ] {
        writeln!(
            report,
            "| {path} | {} | {} | {} | {:.0} | {} | {} |",
            crowd.refused,
            crowd.ops,
            crowd.errors,
            crowd.ops as f64 / crowd.took.as_secs_f64().max(1e-9),
            micros(crowd.latencies.p50()),
            micros(crowd.latencies.p99())
        )?;
    }
    writeln!(report)?;
    Ok(())
}

/// How a crowd's clients reach the database.
#[derive(Clone, Copy)]
enum Statements {
    Direct,
    Inlined,
    Prepared,
}

async fn crowd(
    size: &Size,
    url: &DatabaseUrl,
    statements: Statements,
    tokens: &Arc<Vec<String>>,
    organization_id: &str,
) -> Crowd {
    let connected = Arc::new(Barrier::new(size.clients + 1));
    let settings = PoolSettings {
        max_connections: 1,
        connect_timeout: Duration::from_secs(30),
        acquire_timeout: Duration::from_secs(60),
        ..PoolSettings::default()
    };
    let clients: Vec<_> = (0..size.clients)
        .map(|client| {
            let (url, settings, connected) = (url.clone(), settings.clone(), connected.clone());
            let tokens = tokens.clone();
            let organization_id = organization_id.to_owned();
            let ops = size.ops_per_client;
            tokio::spawn(async move {
                let pool = match statements {
                    Statements::Direct => Pool::connect(&url, Pooler::None, &settings).await,
                    Statements::Inlined => {
                        Pool::connect(&url, Pooler::Transaction, &settings).await
                    }
                    Statements::Prepared => Pool::connect_prepared(&url, &settings).await,
                };
                connected.wait().await;
                let Ok(pool) = pool else {
                    return None;
                };
                let mut latencies = Samples::default();
                let mut errors = 0;
                for op in 0..ops {
                    let started = Instant::now();
                    let result = match op % 2 {
                        0 => auth::valid_session(&pool, &tokens[(client + op) % tokens.len()])
                            .await
                            .map(drop),
                        _ => claim_and_roll_back(&pool, &organization_id).await,
                    };
                    latencies.record(started.elapsed());
                    errors += usize::from(result.is_err());
                }
                pool.close().await.ok();
                Some((latencies, errors))
            })
        })
        .collect();
    connected.wait().await;
    let started = Instant::now();
    let mut out = Crowd {
        ops: 0,
        latencies: Samples::default(),
        errors: 0,
        refused: 0,
        took: Duration::ZERO,
    };
    for client in clients {
        match client.await.ok().flatten() {
            None => out.refused += 1,
            Some((latencies, errors)) => {
                out.ops += size.ops_per_client;
                out.errors += errors;
                out.latencies.extend(&latencies);
            }
        }
    }
    out.took = started.elapsed();
    out
}

async fn claim_and_roll_back(pool: &Pool, organization_id: &str) -> Result<(), service::Error> {
    let txn = pool.begin().await?;
    events::claim::<SlackEvents>(&txn, organization_id, 1).await?;
    txn.rollback().await?;
    Ok(())
}

/// (c) `readers` readers listing pages of runs at once: all on the primary, then half on the
/// primary and half on the replica (through [`Db::reads`]).
async fn replica_reads(size: &Size, cluster: &ThrowawayCluster, report: &mut String) -> Result<()> {
    eprintln!(
        "6/8 topology (c): {} readers, primary alone and with a replica...",
        size.readers
    );
    let url = cluster.url("postgres")?;
    migration::apply_pending(&url).await?;
    let copying = crate::seed::pool(&url, 1).await?;
    let setup = db_connect::connect(&url, &PoolSettings::default()).await?;
    let data = crate::seed::base(&setup, &copying, 0).await?;
    setup.close().await?;
    copying.close().await;
    let replica = Replica::start(cluster)?;
    replica.wait_until_caught_up().await?;
    let settings = PoolSettings {
        max_connections: size.readers as u32,
        ..PoolSettings::default()
    };
    let topology = Topology {
        replica: Some(replica.url("postgres")?),
        ..Topology::for_url(url.clone())
    };
    let db = service::connect_with(&topology, &settings).await?;
    anyhow::ensure!(
        db.replica_state().await == ReplicaState::Fresh,
        "the replica is not fresh after catching up"
    );
    let alone = readers(size, &db, &data.organization_id, false).await?;
    let both = readers(size, &db, &data.organization_id, true).await?;
    writeln!(
        report,
        "### (c) List reads: primary alone against primary + replica\n\n\
         {} readers at once, {} pages of 50 runs each (`agents::list_runs`); with the replica, \
         half the readers use `Db::reads()`. Both servers share this machine's cores.\n",
        size.readers, size.pages_per_reader
    )?;
    writeln!(
        report,
        "| servers | pages/s | p50 | p99 |\n| --- | --- | --- | --- |"
    )?;
    for (servers, (samples, rate)) in [("primary alone", &alone), ("primary + replica", &both)] {
        writeln!(
            report,
            "| {servers} | {rate:.0} | {} | {} |",
            micros(samples.p50()),
            micros(samples.p99())
        )?;
    }
    writeln!(
        report,
        "\nprimary + replica / primary alone throughput: {:.2}",
        both.1 / alone.1.max(1e-9)
    )?;
    db.close().await?;
    Ok(())
}

/// Pages per second and per-page latencies of `size.readers` concurrent readers.
async fn readers(
    size: &Size,
    db: &Db,
    organization_id: &str,
    use_replica: bool,
) -> Result<(Samples, f64)> {
    let started = Instant::now();
    let tasks: Vec<_> = (0..size.readers)
        .map(|reader| {
            let (db, pages) = (db.clone(), size.pages_per_reader);
            let organization_id = organization_id.to_owned();
            tokio::spawn(async move {
                let mut samples = Samples::default();
                for _ in 0..pages {
                    let t = Instant::now();
                    match use_replica && reader % 2 == 1 {
                        true => agents::list_runs(&db.reads(), &organization_id, None, 50).await?,
                        false => {
                            agents::list_runs(db.primary(), &organization_id, None, 50).await?
                        }
                    };
                    samples.record(t.elapsed());
                }
                Ok::<_, service::Error>(samples)
            })
        })
        .collect();
    let mut all = Samples::default();
    for task in tasks {
        all.extend(&task.await??);
    }
    let rate = (size.readers * size.pages_per_reader) as f64 / started.elapsed().as_secs_f64();
    Ok((all, rate))
}
