//! The real `better-auth` npm packages of `compat/better-auth/` (current 1.7 and older 1.x
//! releases), and running one of the scripts there against a test database. Needs Node.js 20+
//! and npm (the packages install from the committed lock file).

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use db_connect::DatabaseUrl;
use secrecy::ExposeSecret;

/// Each installed package (an npm alias per older release) and the version prefix it reports.
pub const PACKAGES: [(&str, &str); 3] = [
    ("better-auth", "1.7."),
    ("better-auth-1-4", "1.4."),
    ("better-auth-1-3", "1.3."),
];

pub fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../compat/better-auth")
}

/// `npm ci` once per lock file: across the tests of this process and across processes.
pub fn install_packages() {
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
                .unwrap_or_else(|err| {
                    panic!(
                        "npm is needed for the Better Auth checks ({err}); install the prerequisites: `{}`",
                        dev_servers::INSTALL_PREREQUISITES
                    )
                });
            assert!(status.success(), "npm ci failed in {}", dir.display());
        }
    });
}

/// Runs `compat/better-auth/<script>` with `package` on the database at `url` (plus `env`), and
/// asserts it reported that package's version first and passed every check it printed.
pub fn run_script(
    script: &str,
    url: &DatabaseUrl,
    package: &str,
    expect_version: &str,
    env: &[(&str, &str)],
) {
    install_packages();
    let output = Command::new("node")
        .arg(script)
        .current_dir(compat_dir())
        .env("DATABASE_URL", url.expose().expose_secret())
        .env("BETTER_AUTH_PACKAGE", package)
        .envs(env.iter().copied())
        .output()
        .unwrap_or_else(|err| {
            panic!(
                "Node.js is needed for the Better Auth checks ({err}); install the prerequisites: `{}`",
                dev_servers::INSTALL_PREREQUISITES
            )
        });
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}{stderr}");
    assert!(
        output.status.success(),
        "{script} failed with {package}:\n{stdout}{stderr}"
    );
    assert!(
        stdout.starts_with(&format!("better-auth {expect_version}")),
        "{stdout}"
    );
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}
