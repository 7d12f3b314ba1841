//! This workspace against Drizzle ORM on node-postgres: the session lookup and the claim, in
//! rounds (a warm-up round, then the same number of measured rounds per side, interleaved and
//! in a rotating order; each side's figure is the median over rounds of its per-round p50), and
//! the report of section 3 (with the ingest rounds of [`crate::throughput`]).

use std::fmt::Write as _;

use anyhow::Result;
use sea_orm::{DatabaseConnection, TransactionTrait};
use service::{
    auth,
    events::{self, SlackEvents},
};

use crate::{
    drizzle::{Drizzle, Variant},
    scale,
    stats::{RoundFigures, Samples, micros, timed},
    throughput::{Side, Throughput},
};

/// Who runs a latency case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Ours,
    Drizzle(Variant),
}

const WHO: [Who; 3] = [
    Who::Ours,
    Who::Drizzle(Variant::Plain),
    Who::Drizzle(Variant::Prepared),
];

/// Per-round figures of one case, per side, in [`WHO`] order.
pub struct Latencies {
    lookup: [RoundFigures; 3],
    claim: [RoundFigures; 3],
}

async fn our_lookups(
    db: &DatabaseConnection,
    tokens: &[String],
    iterations: usize,
) -> Result<Samples> {
    let mut samples = Samples::default();
    for i in 0..iterations {
        let token = &tokens[i % tokens.len()];
        let found = timed(&mut samples, auth::valid_session(db, token)).await?;
        anyhow::ensure!(found.is_some(), "seeded session {token} not found");
    }
    Ok(samples)
}

/// Our claim timed as Drizzle's is: BEGIN and the claim, then a rollback outside the timing.
async fn our_claims(
    db: &DatabaseConnection,
    organization_id: &str,
    iterations: usize,
) -> Result<Samples> {
    let mut samples = Samples::default();
    for _ in 0..iterations {
        let started = std::time::Instant::now();
        let txn = db.begin().await?;
        let claimed = events::claim::<SlackEvents>(&txn, organization_id, 10).await?;
        samples.record(started.elapsed());
        txn.rollback().await?;
        anyhow::ensure!(
            claimed.len() == 10,
            "claimed {} events, not 10",
            claimed.len()
        );
    }
    Ok(samples)
}

/// What a round reads: the seeded sessions' tokens, and the organization whose events are
/// claimed, in a table of `claim_table_rows` events.
pub struct Fixture<'a> {
    pub tokens: &'a [String],
    pub organization_id: &'a str,
    pub claim_table_rows: usize,
}

/// One side's lookups, or its claims of the organization's events on a table refilled for it
/// (the same rows, vacuumed and analysed), so the dead rows of the previous side's rolled-back
/// claims never reach it.
async fn round(
    who: Who,
    claims: bool,
    db: &DatabaseConnection,
    drizzle: &mut Drizzle,
    fixture: &Fixture<'_>,
    iterations: usize,
) -> Result<Samples> {
    let organization = fixture.organization_id;
    if claims {
        scale::fill(db, organization, fixture.claim_table_rows).await?;
    }
    match (who, claims) {
        (Who::Ours, false) => our_lookups(db, fixture.tokens, iterations).await,
        (Who::Ours, true) => our_claims(db, organization, iterations).await,
        (Who::Drizzle(variant), false) => drizzle.lookup(variant, iterations),
        (Who::Drizzle(variant), true) => drizzle.claim(variant, organization, iterations),
    }
}

/// `rounds` measured rounds of lookups and of claims per side, after a warm-up round.
pub async fn run(
    db: &DatabaseConnection,
    drizzle: &mut Drizzle,
    fixture: &Fixture<'_>,
    iterations: usize,
    rounds: usize,
) -> Result<Latencies> {
    let mut latencies = Latencies {
        lookup: Default::default(),
        claim: Default::default(),
    };
    for claims in [false, true] {
        for who in WHO {
            round(who, claims, db, drizzle, fixture, iterations / 10 + 1).await?;
        }
        for r in 0..rounds {
            for i in 0..WHO.len() {
                let k = (i + r) % WHO.len();
                let samples = round(WHO[k], claims, db, drizzle, fixture, iterations).await?;
                let figures = match claims {
                    false => &mut latencies.lookup[k],
                    true => &mut latencies.claim[k],
                };
                figures.add(&samples);
            }
        }
    }
    Ok(latencies)
}

/// Which statements each side sends: the comparison is of what a user of each writes, and
/// these are not the same statements.
const STATEMENTS: &str = "\
| case | this workspace | Drizzle | Drizzle, prepared |
| --- | --- | --- | --- |
| batch ingest (1 000 rows) | one statement: `WITH d AS (SELECT * FROM unnest($1::text[], ..., $6::jsonb[]) ...)`, then `INSERT INTO slack_events ... SELECT ... FROM d JOIN webhook_routes ... ON CONFLICT DO NOTHING`, `INSERT INTO unrouted_events` of the deliveries no route claims, and `pg_notify` per organization that got rows: 6 array parameters, payloads as JSON text; prepared once per connection (sqlx's statement cache) | three statements: `SELECT ... FROM webhook_routes WHERE provider = 'slack' AND external_id IN (...)` (the batch's teams), `INSERT ... VALUES (...), ... (the routed rows, each with its organization and connection) ON CONFLICT DO NOTHING RETURNING organization_id, id, event_id`: 8 000 parameters (`default` for the other columns), then `select pg_notify(...)` per organization that got rows (an `INSERT INTO unrouted_events` too, had any delivery no route); each parsed on every call (unnamed statements) | the same, the route lookup (`= any($2)`) and the `VALUES` statement with 8 000 placeholders `.prepare()`d: parsed once per connection |
| session by token + user | one `SELECT` of the session's columns but its token, and the user's, `JOIN users`, `expires_at > now()`; prepared once per connection | `select().from(sessions).innerJoin(users)...limit(1)`: every column of both, `expires_at > $2` (the client's clock); parsed on every call | the same, `.prepare()`d |
| claim 10 of one organization (BEGIN + claim; rolled back) | one statement: `WITH next AS (SELECT id ... WHERE organization_id = $1 ... ORDER BY due_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) UPDATE ... FROM next WHERE e.organization_id = $1 ... RETURNING e.id, ...` (every column named) | two statements: `SELECT id ... WHERE organization_id = $1 ... FOR UPDATE SKIP LOCKED`, then `UPDATE ... WHERE organization_id = $1 AND id IN ($2, ..., $11) RETURNING *` | one statement, as ours: `db.$with(...)` then `UPDATE ... WHERE id IN (SELECT id FROM next) RETURNING *`, `.prepare()`d |
";

/// `a / b` as `1.23x`.
fn times(a: f64, b: f64) -> String {
    format!("{:.2}x", a / b.max(1e-9))
}

/// Section 3 of the report.
pub fn report(
    out: &mut String,
    drizzle: &Drizzle,
    ingest: &Throughput,
    latencies: &Latencies,
    rounds: usize,
) -> Result<()> {
    let v = &drizzle.versions;
    writeln!(
        out,
        "\n## 3. Against Drizzle ORM {} on node-postgres {} (Node {}; goals: >= 3x ingest, lower lookup latency)\n",
        v.drizzle_orm, v.pg, v.node
    )?;
    writeln!(
        out,
        "Same data, same pool size (4), same server; {rounds} measured rounds per side after a warm-up round, \
         interleaved in a rotating order; each figure is the median over rounds (latencies: of each round's p50). \
         Claims run on a table refilled for each side's round (the same rows, vacuumed and analysed).\n"
    )?;
    writeln!(
        out,
        "| case | this workspace | Drizzle | Drizzle, prepared | this workspace's advantage over the faster Drizzle (> 1: ours is faster) |\n| --- | --- | --- | --- | --- |"
    )?;
    let ours = ingest.rows_per_s(Side::Helper).expect("the helper ran");
    let plain = ingest
        .rows_per_s(Side::Drizzle(Variant::Plain))
        .expect("Drizzle ran");
    let prepared = ingest
        .rows_per_s(Side::Drizzle(Variant::Prepared))
        .expect("Drizzle ran");
    writeln!(
        out,
        "| batch ingest rows/s | {ours:.0} | {plain:.0} | {prepared:.0} | {} |",
        times(ours, plain.max(prepared))
    )?;
    let cell = |f: &RoundFigures| format!("{} (p99 {})", micros(f.p50()), micros(f.p99()));
    for (case, figures) in [
        ("session by token + user, p50", &latencies.lookup),
        ("claim 10 (BEGIN + claim), p50", &latencies.claim),
    ] {
        let [ours, plain, prepared] = figures.each_ref().map(|f| f.p50().as_secs_f64());
        writeln!(
            out,
            "| {case} | {} | {} | {} | {} |",
            cell(&figures[0]),
            cell(&figures[1]),
            cell(&figures[2]),
            times(plain.min(prepared), ours)
        )?;
    }
    writeln!(out, "\nWhat each side sends:\n\n{STATEMENTS}")?;
    Ok(())
}
