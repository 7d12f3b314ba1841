//! Drives `bench/drizzle/bench.mjs` (Drizzle ORM on node-postgres): one Node process for the
//! whole run, asked for one round of one case at a time, so the Rust side and Drizzle run the
//! same rounds, interleaved, on the same table states the caller prepares.

use std::{
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use db_connect::DatabaseUrl;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::stats::Samples;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("drizzle")
}

/// The two ways a Drizzle user writes each case (see `bench.mjs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    /// The query builder as the Drizzle documentation writes it.
    Plain,
    /// `.prepare()`d statements, and the claim as one CTE statement.
    Prepared,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Plain, Variant::Prepared];

    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Prepared => "prepared",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Plain => "Drizzle",
            Self::Prepared => "Drizzle, prepared",
        }
    }
}

/// The versions the comparison ran with, read from the run, for the report.
pub struct Versions {
    pub drizzle_orm: String,
    pub pg: String,
    pub node: String,
}

/// The running `node bench.mjs`.
pub struct Drizzle {
    child: Child,
    input: BufWriter<ChildStdin>,
    output: BufReader<ChildStdout>,
    pub versions: Versions,
}

fn installed_version(package: &str) -> Result<String> {
    let manifest = dir()
        .join("node_modules")
        .join(package)
        .join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    let parsed: Value = serde_json::from_str(&text)?;
    Ok(parsed["version"].as_str().unwrap_or("?").to_owned())
}

impl Drizzle {
    /// Installs the pinned packages if needed and starts the Node side on `url`.
    pub fn start(url: &DatabaseUrl) -> Result<Self> {
        let dir = dir();
        if !dir.join("node_modules/drizzle-orm").is_dir() {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .context("npm is needed for the Drizzle comparison (apt-get install nodejs npm), or pass --no-drizzle")?;
            anyhow::ensure!(status.success(), "npm ci failed in {}", dir.display());
        }
        let node = Command::new("node").arg("--version").output()?;
        let versions = Versions {
            drizzle_orm: installed_version("drizzle-orm")?,
            pg: installed_version("pg")?,
            node: String::from_utf8_lossy(&node.stdout).trim().to_owned(),
        };
        let mut child = Command::new("node")
            .arg("bench.mjs")
            .current_dir(&dir)
            .env("DATABASE_URL", url.expose().expose_secret())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("running node bench.mjs")?;
        let mut drizzle = Self {
            input: BufWriter::new(child.stdin.take().expect("piped")),
            output: BufReader::new(child.stdout.take().expect("piped")),
            child,
            versions,
        };
        let ready = drizzle.read()?;
        anyhow::ensure!(ready == json!("ready"), "bench.mjs said {ready}");
        Ok(drizzle)
    }

    fn read(&mut self) -> Result<Value> {
        let mut line = String::new();
        if self.output.read_line(&mut line)? == 0 {
            bail!("bench.mjs exited (its error is above)");
        }
        serde_json::from_str(&line).with_context(|| format!("bench.mjs answered {line:?}"))
    }

    fn call(&mut self, command: Value) -> Result<Value> {
        // The Node side is a child process: block this worker thread, not the runtime.
        tokio::task::block_in_place(|| {
            writeln!(self.input, "{command}")?;
            self.input.flush()?;
            self.read()
        })
    }

    /// One ingest round of `rows` deliveries into the (emptied) table: rows per second.
    pub fn ingest(&mut self, variant: Variant, rows: usize) -> Result<f64> {
        let answer =
            self.call(json!({ "case": "ingest", "variant": variant.as_str(), "rows": rows }))?;
        let (seconds, delivered) = (
            answer["seconds"].as_f64().context("no seconds")?,
            answer["delivered"].as_f64().context("no delivered")?,
        );
        Ok(delivered / seconds)
    }

    /// Runs a latency case's `command`: its samples.
    fn samples(&mut self, command: Value) -> Result<Samples> {
        let answer = self.call(command)?;
        let mut samples = Samples::default();
        for micros in answer["micros"].as_array().context("no micros")? {
            samples.record(Duration::from_secs_f64(
                micros.as_f64().context("a sample")? / 1e6,
            ));
        }
        Ok(samples)
    }

    /// `iterations` session lookups by token, with the user.
    pub fn lookup(&mut self, variant: Variant, iterations: usize) -> Result<Samples> {
        self.samples(
            json!({ "case": "lookup", "variant": variant.as_str(), "iterations": iterations }),
        )
    }

    /// `iterations` claims of 10 of the organization's events (BEGIN + claim timed, rolled back).
    pub fn claim(
        &mut self,
        variant: Variant,
        organization_id: &str,
        iterations: usize,
    ) -> Result<Samples> {
        self.samples(json!({
            "case": "claim",
            "variant": variant.as_str(),
            "iterations": iterations,
            "organization": organization_id,
        }))
    }
}

impl Drop for Drizzle {
    fn drop(&mut self) {
        // Closing stdin ends its command loop; it then closes its pool and exits.
        let _ = self.input.flush();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
