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

use std::time::{Duration, Instant};

use db_support::DatabaseUrl;
use secrecy::ExposeSecret;
use sqlx::{Connection, PgConnection};

pub use database::APPLICATION_TABLES;
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
/// rows), then loads every table with `COPY` and analyzes them.
pub async fn seed(
    conn: &mut PgConnection,
    options: &SeedOptions,
    progress: &dyn Progress,
) -> Result<Seeded, SeedError> {
    let started = Instant::now();
    let mut tx = conn.begin().await?;
    database::lock(&mut tx).await?;
    database::require_schema(&mut tx).await?;
    let emptied = if options.reset {
        let tables = database::empty_all(&mut tx).await?;
        progress.message(&format!(
            "Emptied {} tables ({}); seaql_migrations kept",
            tables.len(),
            tables.join(", ")
        ));
        tables
    } else {
        database::require_empty(&mut tx).await?;
        Vec::new()
    };
    let sizes = options.sizes.normalized();
    let (landmarks, rows) = database::load(&mut tx, options.seed, &sizes, progress).await?;
    progress.message("Analyzing the seeded tables");
    database::analyze(&mut tx).await?;
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
    let mut conn = PgConnection::connect(url.expose().expose_secret()).await?;
    let seeded = seed(&mut conn, options, progress).await;
    conn.close().await.ok();
    seeded
}
