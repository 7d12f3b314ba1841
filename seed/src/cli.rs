//! `cargo run -p migration -- seed [--scale S] [--seed N] [--reset]`: the arguments and the run,
//! with progress bars on a terminal and one line a table otherwise.

use std::{io::IsTerminal, sync::Mutex, time::Duration};

use db_connect::{
    DatabaseUrl,
    connect::{driver_connect_options, open_connection},
};
use indicatif::{ProgressBar, ProgressStyle};

use crate::{DEMO_EMAIL, Progress, Scale, SeedError, SeedOptions, Seeded};

#[derive(clap::Args, Debug, Clone)]
pub struct SeedArgs {
    /// small (2 000 events), medium (100 000), large (1 000 000), or a number of webhook events;
    /// users, organizations, runs and tool calls scale with it.
    #[arg(long, default_value = "small")]
    pub scale: Scale,
    /// The seed number: the same seed and scale write the same rows, byte for byte.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Empty every application and auth table first (the migration history is kept).
    #[arg(long)]
    pub reset: bool,
}

/// Seeds the database at `url` as the arguments say and prints what it wrote. The connection
/// opens first, given `connect_timeout` to answer, so a wrong URL fails before anything is
/// printed but its cause.
pub async fn run(
    url: &DatabaseUrl,
    args: &SeedArgs,
    connect_timeout: Duration,
) -> Result<Seeded, SeedError> {
    let mut conn = open_connection(url, &driver_connect_options(url)?, connect_timeout).await?;
    let sizes = args.scale.sizes();
    println!(
        "Seeding seed {}, scale {}: {} users, {} organizations, {} Slack + {} Linear events, {} agent runs, {} tool calls",
        args.seed,
        args.scale,
        sizes.users,
        sizes.organizations,
        sizes.slack_events,
        sizes.linear_events,
        sizes.agent_runs,
        sizes.tool_calls
    );
    let progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(Bars::default())
    } else {
        Box::new(Lines)
    };
    let options = SeedOptions::new(args.seed, sizes).with_reset(args.reset);
    let seeded = crate::seed(&mut conn, &options, progress.as_ref()).await;
    close(conn).await;
    let seeded = seeded?;
    println!(
        "Seeded {} rows into {} tables in {:.1} s (seed {}, scale {})",
        seeded.total_rows(),
        seeded.rows.len(),
        seeded.took.as_secs_f64(),
        args.seed,
        args.scale
    );
    println!(
        "Sign in as {DEMO_EMAIL} with the seed password given in docs/seed.md; \
         `cargo run -p studio` shows the rows"
    );
    Ok(seeded)
}

async fn close(conn: sqlx::PgConnection) {
    use sqlx::Connection;
    conn.close().await.ok();
}

fn seconds(took: Duration) -> String {
    format!("{:.2} s", took.as_secs_f64())
}

/// One line a table, for logs and pipes.
struct Lines;

impl Progress for Lines {
    fn table_started(&self, _: &str, _: u64) {}

    fn rows_loaded(&self, _: u64) {}

    fn table_finished(&self, table: &str, rows: u64, took: Duration) {
        println!("{table:<22} {rows:>9} rows  {}", seconds(took));
    }

    fn message(&self, text: &str) {
        println!("{text}");
    }
}

/// A bar for the table being loaded, left on screen with its count and time once done.
#[derive(Default)]
struct Bars {
    current: Mutex<Option<ProgressBar>>,
}

impl Progress for Bars {
    fn table_started(&self, table: &str, expected: u64) {
        let style = ProgressStyle::with_template(
            "{prefix:<22} [{bar:32}] {human_pos:>9}/{human_len} rows  {elapsed}",
        )
        .expect("a valid template")
        .progress_chars("=> ");
        let bar = ProgressBar::new(expected.max(1))
            .with_style(style)
            .with_prefix(table.to_owned());
        *self.current.lock().expect("progress lock") = Some(bar);
    }

    fn rows_loaded(&self, rows: u64) {
        if let Some(bar) = &*self.current.lock().expect("progress lock") {
            bar.inc(rows);
        }
    }

    fn table_finished(&self, table: &str, rows: u64, took: Duration) {
        if let Some(bar) = self.current.lock().expect("progress lock").take() {
            bar.set_style(
                ProgressStyle::with_template("{prefix:<22} {msg}").expect("a valid template"),
            );
            bar.finish_with_message(format!("{rows:>9} rows  {}", seconds(took)));
        } else {
            Lines.table_finished(table, rows, took);
        }
    }

    fn message(&self, text: &str) {
        eprintln!("{text}");
    }
}
