//! `cargo run -p studio [-- --port N] [--host ADDR] [--allowed-host NAME] [--write]`: the studio
//! for the configured database, or the local cluster when `DATABASE_URL` is unset.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use clap::Parser;
use db_connect::{DatabaseUrl, PoolSettings, config::load_dotenv};
use dev_servers::database_url_or_local;
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

fn resolve_url(flag: Option<&str>) -> Result<DatabaseUrl> {
    if let Some(raw) = flag {
        return DatabaseUrl::parse(raw).context("--database-url is invalid");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("studio lives in the workspace");
    database_url_or_local(root)
        .context("DATABASE_URL is unset or invalid and the local cluster could not start")
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    load_dotenv()?;
    let cli = Cli::parse();
    let url = resolve_url(cli.database_url.as_deref())?;
    let settings = PoolSettings::from_env()?;
    let timeout = Duration::from_secs_f64(cli.statement_timeout);
    let db = studio::connect(&url, &settings, timeout)
        .await
        .with_context(|| format!("connecting to {url}"))?;
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
