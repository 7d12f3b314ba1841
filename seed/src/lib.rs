//! The one generator of seed data, used by `cargo run -p migration -- seed`, the bench and the
//! studio's end-to-end test.
//!
//! Rows are realistic (organizations with owners, admins and members; Slack and Linear webhook
//! deliveries in every state; agent runs with their tool calls) and deterministic: the same
//! [`Sizes`] and seed give the same rows byte for byte, because every value (ids included) comes
//! from a ChaCha stream keyed by the seed and every timestamp is an offset from [`EPOCH`]. They
//! are written with `COPY` in one transaction, so a failed seed leaves nothing behind.
//!
//! ```no_run
//! # async fn demo(conn: &mut sqlx::PgConnection) -> Result<(), seed::SeedError> {
//! let seeded = seed::seed(conn, &seed::SeedOptions::new(7, seed::Scale::Medium.sizes()), &seed::Silent).await?;
//! println!("sign in as {}", seed::DEMO_EMAIL);
//! # Ok(()) }
//! ```

pub mod cli;
mod copy;
mod database;
mod dice;
mod error;
mod generate;
mod password;
mod progress;
mod scale;
mod time;
mod words;

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use db_connect::DatabaseUrl;
use secrecy::ExposeSecret;
use sqlx::{ConnectOptions, Connection, PgConnection, postgres::PgConnectOptions};

pub use database::APPLICATION_TABLES;

/// The file whose generator writes `table`'s rows, if the seed writes it.
pub fn generator_of(table: &str) -> Option<&'static str> {
    generate::TABLES
        .iter()
        .find(|t| t.name == table)
        .map(|t| t.source)
}
pub use error::SeedError;
pub use password::better_auth_hash;
pub use progress::{Progress, Silent};
pub use scale::{Scale, Sizes};
pub use time::{EPOCH, STILL_VALID_UNTIL};

/// The email of the seeded user documented for signing in: the owner of the first organization,
/// without two-factor authentication, whatever the seed.
pub const DEMO_EMAIL: &str = "demo@example.com";

/// The password of every seeded user with an email-and-password account. It is published in
/// `docs/seed.md`: seed data is for development databases only.
pub const SEED_PASSWORD: &str = "correct-horse-battery-staple";

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedOptions {
    pub seed: u64,
    pub sizes: Sizes,
    /// Empty every application and auth table first (never `seaql_migrations`); without it a
    /// database that holds rows is refused.
    pub reset: bool,
}

impl SeedOptions {
    pub fn new(seed: u64, sizes: Sizes) -> Self {
        Self {
            seed,
            sizes,
            reset: false,
        }
    }

    pub fn with_reset(mut self, reset: bool) -> Self {
        self.reset = reset;
        self
    }
}

/// What a seed run wrote, and the rows other code starts from.
#[derive(Debug, Clone)]
pub struct Seeded {
    /// Rows written, by table, in the order they were written.
    pub rows: Vec<(&'static str, u64)>,
    /// The tables `reset` emptied (empty without `reset`).
    pub emptied: Vec<String>,
    /// The id of the user signed in as [`DEMO_EMAIL`].
    pub demo_user_id: String,
    /// The organization the demo user owns.
    pub demo_organization_id: String,
    /// The organization with the most agent runs.
    pub busiest_organization_id: String,
    pub took: Duration,
}

impl Seeded {
    /// Rows written into `table` (0 for a table the seed does not write).
    pub fn rows_in(&self, table: &str) -> u64 {
        self.rows
            .iter()
            .find(|(name, _)| *name == table)
            .map_or(0, |(_, rows)| *rows)
    }

    pub fn total_rows(&self) -> u64 {
        self.rows.iter().map(|(_, rows)| rows).sum()
    }
}

/// Writes the seed into the database `conn` is connected to, in one transaction: checks the
/// schema is migrated, empties the tables when `options.reset` (else refuses a database holding
/// rows), sets the big tables' keys, indexes and foreign keys aside, loads every table with
/// `COPY`, rebuilds what it set aside (checking every row against them again) and analyzes the
/// tables.
pub async fn seed(
    conn: &mut PgConnection,
    options: &SeedOptions,
    progress: &dyn Progress,
) -> Result<Seeded, SeedError> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    let emptied = database::prepare(&mut tx, options.reset).await?;
    if options.reset {
        progress.message(&format!(
            "Emptied {} tables ({}); seaql_migrations kept",
            emptied.len(),
            emptied.join(", ")
        ));
    }
    let sizes = options.sizes.normalized();
    let set_aside = database::bulk::set_aside(&mut tx).await?;
    let (landmarks, rows) = database::load(&mut tx, options.seed, &sizes, progress).await?;
    let step = Instant::now();
    let rebuilt = set_aside.describe();
    database::bulk::restore(&mut tx, set_aside).await?;
    progress.message(&format!("Rebuilt {rebuilt} in {}", seconds(step)));
    let step = Instant::now();
    database::analyze(&mut tx).await?;
    progress.message(&format!("Analyzed the tables in {}", seconds(step)));
    tx.commit().await?;
    Ok(Seeded {
        rows,
        emptied,
        demo_user_id: landmarks.demo_user_id,
        demo_organization_id: landmarks.demo_organization_id,
        busiest_organization_id: landmarks.busiest_organization_id,
        took: started.elapsed(),
    })
}

/// [`seed`] on a connection of its own to the database at `url`.
pub async fn seed_database(
    url: &DatabaseUrl,
    options: &SeedOptions,
    progress: &dyn Progress,
) -> Result<Seeded, SeedError> {
    // Index builds and ANALYZE of the large scale take seconds by design: no slow-statement
    // warnings (the progress says what is happening).
    let mut conn = PgConnectOptions::from_str(url.expose().expose_secret())?
        .disable_statement_logging()
        .connect()
        .await?;
    let seeded = seed(&mut conn, options, progress).await;
    conn.close().await.ok();
    seeded
}

fn seconds(since: Instant) -> String {
    format!("{:.1} s", since.elapsed().as_secs_f64())
}
