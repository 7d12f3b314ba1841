//! `cargo run -p studio [-- --port N] [--host ADDR] [--allowed-host NAME] [--write]`: the studio
//! for the configured database, or the local cluster when `DATABASE_URL` is unset.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Parser;
use db_connect::{DatabaseUrl, Settings};
use dev_servers::topology_or_local;
use studio::{DEFAULT_STATEMENT_TIMEOUT, Options, Studio, allowed_hosts};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(about = "Browse the database in a browser")]
struct Cli {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 4983)]
    port: u16,
    /// Address to listen on. Anything but loopback exposes every row, without a login, to the
    /// network: a warning is printed.
    #[arg(long)]
    host: Option<IpAddr>,
    /// A host name (or name:port) the studio answers to besides its loopback names and the
    /// address it listens on, e.g. the machine's DNS name with --host 0.0.0.0. Repeatable.
    /// Requests for any other name are refused (DNS rebinding).
    #[arg(long = "allowed-host", value_name = "NAME")]
    allowed_hosts: Vec<String>,
    /// Allow editing and deleting rows, each behind a confirmation.
    #[arg(long)]
    write: bool,
    /// Seconds a statement may run before PostgreSQL cancels it (the page then says so).
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_STATEMENT_TIMEOUT.as_secs_f64(), value_parser = seconds)]
    statement_timeout: f64,
    /// The database; defaults to DATABASE_URL (environment or .env), else the local cluster.
    /// A URL given here, password included, is visible to every user of this machine in the
    /// process list (`ps`): prefer DATABASE_URL.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
}

fn seconds(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(s) if s > 0.0 && Duration::try_from_secs_f64(s).is_ok() => Ok(s),
        _ => Err(format!("`{raw}` is not a positive number of seconds")),
    }
}

/// `--database-url`, else where the environment's topology sends sessions (the statement
/// timeout is a connection option, which a transaction-mode pooler refuses), else the local
/// cluster.
fn resolve_url(flag: Option<&str>, settings: &Settings) -> Result<DatabaseUrl> {
    if let Some(raw) = flag {
        return DatabaseUrl::parse(raw).context("--database-url is invalid");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("studio lives in the workspace");
    let topology = topology_or_local(root, settings)
        .context("DATABASE_URL is unset and the local cluster could not start")?;
    Ok(topology
        .session_url("the studio (its statement timeout is a connection option)")?
        .clone())
}

/// A user's mistake (a wrong URL, a server that is down) is one line naming it, whatever
/// `RUST_BACKTRACE` says: anyhow would print a backtrace with it. Panics keep theirs.
#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from_env()?;
    let cli = Cli::parse();
    let url = resolve_url(cli.database_url.as_deref(), &settings)?;
    let timeout = Duration::from_secs_f64(cli.statement_timeout);
    let db = studio::connect(&url, &settings.pool, timeout).await?;
    let host = cli.host.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(host, cli.port))
        .await
        .with_context(|| format!("listening on {host}:{}", cli.port))?;
    let addr = listener.local_addr()?;
    let loopback = host.is_loopback();
    let hosts = allowed_hosts(addr, &cli.allowed_hosts);
    if !loopback {
        eprintln!(
            "WARNING: the studio listens on {addr}, reachable from other machines. It has no \
             login: anyone who can reach it can read every row{}. It answers only to the host \
             names {} (add one with --allowed-host NAME).",
            if cli.write {
                " and change or delete them"
            } else {
                ""
            },
            hosts.join(", ")
        );
    }
    let studio = Studio::new(
        db,
        Options {
            write: cli.write,
            allowed_hosts: hosts,
        },
    )
    .await
    .context("reading the schema catalog")?;
    println!(
        "Studio for {url}: http://{addr}/ ({})",
        if cli.write {
            "write mode: edits and deletes allowed"
        } else {
            "read-only"
        }
    );
    axum::serve(listener, studio.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
