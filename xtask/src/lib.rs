//! Project tooling. `entities` regenerates `entity/src/generated` from the migrated schema with
//! a pinned `sea-orm-cli` (then keeps secret columns out of each model's `Serialize` and
//! `Debug`: [`redact`]), and `docs/erd.md` from the same schema's catalog; `entities --check`
//! regenerates both elsewhere and fails, showing the diff, when the committed files differ.

pub mod redact;

use std::{
    collections::BTreeSet,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use db_connect::DatabaseUrl;
use dev_servers::ThrowawayCluster;
use sea_orm::ConnectionTrait;
use secrecy::ExposeSecret;

/// The flags of `sea-orm-cli generate entity`, fixed so regeneration is reproducible:
/// serde both ways with camelCase JSON, chrono timestamps, a prelude, no migration table, and a
/// banner naming the exact generator version.
pub const GENERATE_FLAGS: &[&str] = &[
    "generate",
    "entity",
    "--with-serde",
    "both",
    "--model-extra-attributes",
    "serde(rename_all = \"camelCase\")",
    "--date-time-crate",
    "chrono",
    "--with-prelude",
    "all",
    "--ignore-tables",
    "seaql_migrations",
    "--banner-version",
    "patch",
];

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where the committed entities live.
pub fn generated_dir() -> PathBuf {
    workspace_root().join("entity/src/generated")
}

/// Runs `sea-orm-cli generate entity` (the pinned crate's own code, in this process) against
/// `url` into `out_dir` (emptied first), makes each model secret-safe
/// ([`redact::redact_model`]), and formats the output with rustfmt so it is what `cargo fmt`
/// would leave.
pub async fn generate(url: &DatabaseUrl, out_dir: &Path) -> Result<()> {
    if out_dir.exists() {
        fs::remove_dir_all(out_dir).with_context(|| format!("emptying {}", out_dir.display()))?;
    }
    fs::create_dir_all(out_dir)?;
    let out = out_dir
        .to_str()
        .context("the output folder's path is not UTF-8")?;
    let exposed = url.expose();
    let args = ["sea-orm-cli"]
        .into_iter()
        .chain(GENERATE_FLAGS.iter().copied())
        .chain([
            "--output-dir",
            out,
            "--database-url",
            exposed.expose_secret(),
        ]);
    let sea_orm_cli::Commands::Generate { command } = sea_orm_cli::Cli::try_parse_from(args)
        .context("the fixed generate flags no longer parse")?
        .command
    else {
        bail!("the fixed flags are not a generate command");
    };
    sea_orm_cli::run_generate_command(command, false)
        .await
        // Its errors name the failing step; none carries the URL.
        .map_err(|err| anyhow::anyhow!("sea-orm-cli generate entity failed: {err}"))?;
    let files: Vec<PathBuf> = rust_files(out_dir)?;
    ensure!(
        !files.is_empty(),
        "sea-orm-cli wrote no entity into {}",
        out_dir.display()
    );
    // Formatted first, so the redaction step reads the shape `cargo fmt` gives.
    rustfmt(&files)?;
    for file in &files {
        let source = fs::read_to_string(file)?;
        let name = file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if !source.contains("pub struct Model {") {
            continue; // mod.rs, prelude.rs
        }
        let redacted = redact::redact_model(name, &source)?;
        if redacted != source {
            fs::write(file, redacted)?;
        }
    }
    rustfmt(&files)
}

fn rustfmt(files: &[PathBuf]) -> Result<()> {
    let status = Command::new("rustfmt")
        .args(["--edition", "2024"])
        .args(files)
        .status()
        .context("running rustfmt")?;
    ensure!(status.success(), "rustfmt failed on the generated entities");
    Ok(())
}

fn rust_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// A unified diff from the `committed` folder to the `fresh` one, or `None` when they agree.
pub fn diff_dirs(committed: &Path, fresh: &Path) -> Result<Option<String>> {
    let names = |dir: &Path| -> Result<BTreeSet<String>> {
        Ok(rust_files(dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    };
    let all: BTreeSet<String> = names(committed)?.union(&names(fresh)?).cloned().collect();
    let mut out = String::new();
    for name in all {
        let read = |dir: &Path| fs::read_to_string(dir.join(&name)).unwrap_or_default();
        let (old, new) = (read(committed), read(fresh));
        if old != new {
            out.push_str(&unified_diff(&old, &new, &name));
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Where the committed ERD lives.
pub fn erd_path() -> PathBuf {
    workspace_root().join("docs/erd.md")
}

/// `docs/erd.md` as the catalog of the database at `url` draws it.
pub async fn erd(url: &DatabaseUrl) -> Result<String> {
    let db = db_connect::connect(url, &Default::default()).await?;
    let catalog = catalog::Catalog::load(&db).await?;
    db.close().await?;
    Ok(catalog::erd_markdown(&catalog))
}

/// A unified diff from the committed ERD to `fresh`, or `None` when they agree.
pub fn diff_erd(fresh: &str) -> Option<String> {
    let committed = fs::read_to_string(erd_path()).unwrap_or_default();
    (committed != fresh).then(|| unified_diff(&committed, fresh, "docs/erd.md"))
}

/// A unified diff of one file, headed `committed/<name>` and `regenerated/<name>`.
fn unified_diff(committed: &str, regenerated: &str, name: &str) -> String {
    similar::TextDiff::from_lines(committed, regenerated)
        .unified_diff()
        .context_radius(3)
        .header(&format!("committed/{name}"), &format!("regenerated/{name}"))
        .to_string()
}

/// A throwaway cluster with a database named `entities` that has every migration applied.
pub async fn migrated_database() -> Result<(ThrowawayCluster, DatabaseUrl)> {
    let cluster = ThrowawayCluster::start()?;
    let admin = db_connect::connect(&cluster.url("postgres")?, &Default::default()).await?;
    admin.execute_unprepared("CREATE DATABASE entities").await?;
    admin.close().await?;
    let url = cluster.url("entities")?;
    migration::apply_pending(&url).await?;
    Ok((cluster, url))
}
