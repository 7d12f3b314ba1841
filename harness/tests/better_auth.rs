//! The real `better-auth` package (current 1.7 and older 1.x releases) against the migrated
//! schema, configured with nothing but the plural/snake_case mapping. The checks themselves are
//! in `compat/better-auth/check.mjs`; this runs them, one release per test, each on a fresh
//! database. Needs Node.js 20+ and npm (the packages install from the committed lock file).

use harness::{TestDb, better_auth};

async fn check(package: &str, expect_version: &str) {
    let db = TestDb::migrated().await;
    better_auth::run_script("check.mjs", db.url(), package, expect_version, &[]);
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
