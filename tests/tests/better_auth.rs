//! The real `better-auth` package (current 1.7 and older 1.x releases) against the migrated
//! schema, configured with nothing but the plural/snake_case mapping. The checks themselves are
//! in `compat/better-auth/check.mjs`; this runs them, one release per test, each on a fresh
//! database. Needs Node.js 20+ and npm (the packages install from the committed lock file).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use harness::TestDb;
use secrecy::ExposeSecret;

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../compat/better-auth")
}

/// `npm ci` once per lock file: across the tests of this process and across processes.
fn install_packages() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let dir = compat_dir();
        let lock = File::create(dir.join(".install.lock")).expect("creating the install lock");
        lock.lock().expect("taking the install lock");
        let modified = |path: PathBuf| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let installed = modified(dir.join("node_modules/.package-lock.json"));
        let locked = modified(dir.join("package-lock.json"));
        if installed.is_none() || installed < locked {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .expect("npm is needed for the Better Auth checks: apt-get install nodejs npm");
            assert!(status.success(), "npm ci failed in {}", dir.display());
        }
    });
}

async fn check(package: &str, expect_version: &str) {
    install_packages();
    let db = TestDb::migrated().await;
    let output = Command::new("node")
        .arg("check.mjs")
        .current_dir(compat_dir())
        .env("DATABASE_URL", db.url().expose().expose_secret())
        .env("BETTER_AUTH_PACKAGE", package)
        .output()
        .expect("Node.js is needed for the Better Auth checks: apt-get install nodejs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "better-auth checks failed:\n{stdout}{stderr}"
    );
    assert!(
        stdout.starts_with(&format!("better-auth {expect_version}")),
        "{stdout}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

#[tokio::test]
async fn better_auth_1_7_runs_on_the_schema() {
    check("better-auth", "1.7.").await;
}

#[tokio::test]
async fn better_auth_1_4_runs_on_the_schema() {
    check("better-auth-1-4", "1.4.").await;
}

#[tokio::test]
async fn better_auth_1_3_runs_on_the_schema() {
    check("better-auth-1-3", "1.3.").await;
}
