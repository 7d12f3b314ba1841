//! squawk, installed from `migration/lint/package-lock.json` like the workspace's other Node
//! tools, and run over the captured SQL.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
};

use serde::Deserialize;

use super::LintError;

/// `migration/lint`: squawk's package.json and lock file.
pub fn tool_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lint")
}

/// Overrides the pinned binary, e.g. on a machine that is not linux-x64.
pub const SQUAWK_VAR: &str = "SQUAWK";

/// The squawk binary: `SQUAWK` when set, else the pinned linux-x64 build after `npm ci` if the
/// installed packages are missing or older than the lock file (serialised across processes by a
/// file lock). The platform package is pinned rather than the `squawk-cli` wrapper because the
/// wrapper's lock file must list every platform's package, which a registry mirror may not carry.
pub fn install() -> Result<PathBuf, LintError> {
    let failed = |reason: String| LintError::Install { reason };
    if let Some(binary) = std::env::var_os(SQUAWK_VAR).filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(binary));
    }
    if !(cfg!(target_os = "linux") && cfg!(target_arch = "x86_64")) {
        return Err(failed(format!(
            "the pinned squawk is the linux-x64 build; install squawk-cli 2.66 and set {SQUAWK_VAR} to its binary"
        )));
    }
    let dir = tool_dir();
    let lock = File::create(dir.join(".install.lock")).map_err(|e| failed(e.to_string()))?;
    lock.lock().map_err(|e| failed(e.to_string()))?;
    let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
    let installed = modified(dir.join("node_modules/.package-lock.json"));
    let locked = modified(dir.join("package-lock.json"));
    let binary = dir.join("node_modules/@squawk-cli/linux-x64/bin/squawk");
    if installed.is_none() || installed < locked || !binary.exists() {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .map_err(|e| {
                failed(format!(
                    "npm could not run ({e}); install Node.js 20+ and npm"
                ))
            })?;
        if !status.success() {
            return Err(failed(format!("npm ci failed in {}", dir.display())));
        }
    }
    Ok(binary)
}

/// One finding as squawk's JSON reporter gives it.
#[derive(Debug, Clone, Deserialize)]
pub struct Finding {
    pub file: String,
    /// 0-based.
    pub line: usize,
    pub message: String,
    pub help: Option<String>,
    pub rule_name: String,
}

/// Runs squawk on `files`, rules in `excluded` off.
pub fn check(
    squawk: &Path,
    files: &[PathBuf],
    excluded: &[&str],
    pg_version: &str,
) -> Result<Vec<Finding>, LintError> {
    let mut command = Command::new(squawk);
    command
        .args(["--reporter", "json", "--pg-version", pg_version])
        .args(files);
    if !excluded.is_empty() {
        command.arg(format!("--exclude={}", excluded.join(",")));
    }
    let output = command.output().map_err(|e| LintError::Squawk {
        reason: format!("could not run {}: {e}", squawk.display()),
    })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    // squawk exits non-zero when it finds something; what it found is on stdout either way.
    serde_json::from_str(stdout.trim()).map_err(|e| LintError::Squawk {
        reason: format!(
            "unreadable output ({e}): {}{}",
            stdout.chars().take(500).collect::<String>(),
            String::from_utf8_lossy(&output.stderr)
        ),
    })
}
