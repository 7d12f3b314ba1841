//! `migration lint`: every migration's SQL, captured from a real run on a scratch database and
//! wrapped the way the runner runs it (its transaction and `SET LOCAL` timeouts, or its
//! session settings), checked by squawk. A finding fails the lint unless
//! `migration/lint/exceptions.toml` lets it through with a reason; an exception that no longer
//! matches anything fails it too, so the list stays true.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use db_connect::DatabaseUrl;
use sea_orm_migration::MigratorTrait;
use tracing::instrument::WithSubscriber;

use crate::runner::{self, Action, RunError, RunOptions};

mod capture;
pub mod exceptions;
pub mod squawk;

pub use capture::Captured;
pub use exceptions::{Exception, Exceptions};

#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("could not install squawk: {reason}")]
    Install { reason: String },
    #[error("squawk failed: {reason}")]
    Squawk { reason: String },
    #[error("{path} is invalid: {reason}")]
    Exceptions { path: PathBuf, reason: String },
    #[error("applying the migrations to the scratch database failed: {0}")]
    Run(#[from] Box<RunError>),
    #[error("writing the captured SQL failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The reviewed list in the repository.
pub fn exceptions_path() -> PathBuf {
    squawk::tool_dir().join("exceptions.toml")
}

/// One squawk finding in one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub migration: String,
    pub rule: String,
    pub message: String,
    pub help: Option<String>,
    /// The line of the captured SQL it points at.
    pub line: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.migration, self.rule, self.message)?;
        if let Some(help) = &self.help {
            write!(f, " Help: {help}")?;
        }
        write!(f, "\n    at: {}", self.line)
    }
}

#[derive(Debug, Default)]
pub struct LintReport {
    /// Every migration linted, with the file its SQL was written to.
    pub files: Vec<(String, PathBuf)>,
    /// Findings nothing lets through: each fails the lint.
    pub violations: Vec<Violation>,
    /// Findings an exception lets through, with it.
    pub excepted: Vec<(Violation, Exception)>,
    /// Exceptions that matched no finding: stale, so they fail the lint too.
    pub unused: Vec<Exception>,
}

impl LintReport {
    pub fn passed(&self) -> bool {
        self.violations.is_empty() && self.unused.is_empty()
    }
}

/// What squawk reads for one migration: its statements as the runner runs them.
fn script(captured: &Captured, transactional: bool, options: &RunOptions) -> String {
    let mut out = format!("-- {}\n", captured.migration);
    if transactional {
        out.push_str("BEGIN;\n");
        out.push_str(&options.transaction_settings_sql());
    } else {
        out.push_str(&options.session_settings_sql());
    }
    out.push('\n');
    for statement in &captured.statements {
        let statement = statement.trim();
        out.push_str(statement);
        if !statement.ends_with(';') {
            out.push(';');
        }
        out.push('\n');
    }
    if transactional {
        out.push_str("COMMIT;\n");
    }
    out
}

/// Applies every migration of `M` to `scratch` (an empty database that is thrown away after),
/// captures their SQL into `workdir`, and checks it with `squawk`.
pub async fn lint<M: MigratorTrait>(
    scratch: &DatabaseUrl,
    squawk: &Path,
    exceptions: &Exceptions,
    workdir: &Path,
) -> Result<LintReport, LintError> {
    let options = RunOptions::default();
    let recorder = capture::Recorder::default();
    runner::run_with::<M>(scratch, Action::Up(None), &options, |_| {})
        .with_subscriber(recorder.dispatch())
        .await
        .map_err(Box::new)?;
    let captured = recorder.take();

    let mut report = LintReport::default();
    for migration in M::migrations() {
        let Some(sql) = captured.iter().find(|c| c.migration == migration.name()) else {
            continue;
        };
        let transactional = migration.use_transaction().unwrap_or(true);
        let path = workdir.join(format!("{}.sql", migration.name()));
        std::fs::write(&path, script(sql, transactional, &options))?;
        report.files.push((migration.name().to_owned(), path));
    }
    let files: Vec<PathBuf> = report.files.iter().map(|(_, p)| p.clone()).collect();
    let excluded: Vec<&str> = exceptions.rules.keys().map(String::as_str).collect();
    let findings = squawk::check(squawk, &files, &excluded, "15")?;

    for finding in findings {
        let Some((migration, path)) = report
            .files
            .iter()
            .find(|(_, p)| p.to_string_lossy() == finding.file || p.ends_with(&finding.file))
        else {
            continue;
        };
        let line = std::fs::read_to_string(path)?
            .lines()
            .nth(finding.line)
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect();
        let violation = Violation {
            migration: migration.clone(),
            rule: finding.rule_name,
            message: finding.message,
            help: finding.help,
            line,
        };
        match exceptions.find(&violation.migration, &violation.rule) {
            Some(exception) => report.excepted.push((violation, exception.clone())),
            None => report.violations.push(violation),
        }
    }
    report.unused = exceptions
        .exceptions
        .iter()
        .filter(|e| report.files.iter().any(|(name, _)| *name == e.migration))
        .filter(|e| !report.excepted.iter().any(|(_, used)| used == *e))
        .cloned()
        .collect();
    Ok(report)
}
