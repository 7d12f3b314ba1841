//! A seeded user signs in through the real `better-auth` package (every release the
//! compatibility check installs) with the documented password: the seed's password hash is in
//! Better Auth's own format. The checks are in `compat/better-auth/sign-in-seeded.mjs`.

mod common;

use common::small_seed;
use harness::better_auth::{PACKAGES, run_script};
use seed::{DEMO_EMAIL, SEED_PASSWORD};

async fn sign_in(package: &str) {
    let (_, expect_version) = PACKAGES
        .iter()
        .find(|(name, _)| *name == package)
        .expect("an installed package");
    let (db, _) = small_seed(5).await;
    run_script(
        "sign-in-seeded.mjs",
        db.url(),
        package,
        expect_version,
        &[("SEED_EMAIL", DEMO_EMAIL), ("SEED_PASSWORD", SEED_PASSWORD)],
    );
}

#[tokio::test]
async fn a_seeded_user_signs_in_with_better_auth_1_7() {
    sign_in("better-auth").await;
}

#[tokio::test]
async fn a_seeded_user_signs_in_with_better_auth_1_4() {
    sign_in("better-auth-1-4").await;
}

#[tokio::test]
async fn a_seeded_user_signs_in_with_better_auth_1_3() {
    sign_in("better-auth-1-3").await;
}
