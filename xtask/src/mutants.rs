//! `cargo xtask mutants`: cargo-mutants over the service, the migration runner and the pooler's
//! parts (db-connect's topology and pool, the PgBouncer test component), one source
//! file at a time with the test files that cover it, then a table of caught / missed /
//! unviable / timeout per file (docs/reliability.md).
//!
//! In place (`--in-place`): cargo-mutants mutates this checkout, restores each file after each
//! mutant and reuses `target/`, so every mutant is an incremental build. Do not edit or build in
//! the checkout while it runs.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::{Context, Result, bail};

/// One source file and the tests that cover it.
pub struct Target {
    pub package: &'static str,
    pub file: &'static str,
    /// Packages whose tests run (cargo-mutants' `--test-package`).
    pub test_packages: &'static str,
    /// Test targets (`cargo test --test ...`) of those packages.
    pub tests: &'static [&'static str],
}

const IT: &str = "harness";
/// In [`Target::tests`]: the unit tests of the mutated package (`cargo test --lib`).
const UNIT_TESTS: &str = "lib";
/// The runner's unit tests and its own tests, and the workspace's migration tests.
/// `connect_failures` is a test of both packages (the CLI's and the library's connections),
/// `startup` is `apply_pending`'s.
const RUNNER_TESTS: &[&str] = &[
    UNIT_TESTS,
    "faults",
    "cli",
    "lock",
    "online",
    "pooler",
    "startup",
    "connect_failures",
    "migrations",
];
/// Every test file that calls a service helper; `service_schema_changes` calls them all.
const HELPER_TESTS: &[&str] = &[
    "service_events",
    "service_organizations",
    "service_agents",
    "service_auth",
    "service_tools",
    "service_integrations",
    "service_schema_changes",
];

/// A module of the service's worker runtime or routing, with its unit tests too.
const fn worker(file: &'static str, tests: &'static [&'static str]) -> Target {
    Target {
        package: "service",
        file,
        test_packages: "service,harness",
        tests,
    }
}

/// A module of the migration runner: the `migration` package's tests and the workspace's.
const fn runner(file: &'static str, tests: &'static [&'static str]) -> Target {
    Target {
        package: "migration",
        file,
        test_packages: "migration,harness",
        tests,
    }
}

/// A module of db-connect's pooler-safe path: its unit tests, and the pooler tests that
/// `through_pgbouncer` holds (see [`FILTERS`]).
const fn pooler(file: &'static str) -> Target {
    Target {
        package: "db-connect",
        file,
        test_packages: "db-connect,harness",
        tests: &[UNIT_TESTS, "through_pgbouncer"],
    }
}

/// Test-name filters of a file whose test files also hold tests that never reach it
/// (`through_pgbouncer` runs every service test again): only tests whose names hold one run.
const FILTERS: &[(&str, &[&str])] = &[
    ("db-connect/src/inline.rs", POOLER_TESTS),
    ("db-connect/src/pool/session.rs", POOLER_TESTS),
];
const POOLER_TESTS: &[&str] = &["inline::", "pool::", "pooler"];

/// Every file measured. A new module gets a row here with the test files that call it.
pub const TARGETS: &[Target] = &[
    // The first connection of every entry point, and the one reader of the environment.
    Target {
        package: "db-connect",
        file: "db-connect/src/connect.rs",
        test_packages: "db-connect,harness",
        tests: &[
            UNIT_TESTS,
            "connect_failures",
            "service_errors",
            "reliability_faults",
        ],
    },
    Target {
        package: "db-connect",
        file: "db-connect/src/settings.rs",
        test_packages: "db-connect,harness",
        tests: &[UNIT_TESTS, "config"],
    },
    Target {
        package: "service",
        file: "service/src/events.rs",
        test_packages: IT,
        tests: &[
            "service_events",
            "reliability_events",
            "reliability_input",
            "workers",
        ],
    },
    Target {
        package: "service",
        file: "service/src/auth.rs",
        test_packages: IT,
        tests: &["service_auth"],
    },
    Target {
        package: "service",
        file: "service/src/organizations.rs",
        test_packages: IT,
        tests: &["service_organizations"],
    },
    Target {
        package: "service",
        file: "service/src/agents.rs",
        test_packages: IT,
        tests: &["service_agents"],
    },
    Target {
        package: "service",
        file: "service/src/tools.rs",
        test_packages: IT,
        tests: &["service_tools"],
    },
    Target {
        package: "service",
        file: "service/src/integrations.rs",
        test_packages: IT,
        tests: &["service_integrations"],
    },
    Target {
        package: "service",
        file: "service/src/secret.rs",
        test_packages: "service,harness",
        tests: &[
            UNIT_TESTS,
            "service_integrations",
            "reliability_input",
            "service_schema_changes",
        ],
    },
    Target {
        package: "service",
        file: "service/src/error.rs",
        test_packages: IT,
        tests: &["service_errors", "reliability_faults", "reliability_input"],
    },
    Target {
        package: "service",
        file: "service/src/sql.rs",
        test_packages: IT,
        tests: HELPER_TESTS,
    },
    Target {
        package: "service",
        file: "service/src/page.rs",
        test_packages: IT,
        tests: &["service_events", "service_agents"],
    },
    // Not the `examples` test of `service`: it runs the example binaries, which `cargo test
    // --test` does not rebuild, so every mutant would look caught.
    Target {
        package: "service",
        file: "service/src/lib.rs",
        test_packages: IT,
        tests: &[
            "service_errors",
            "reliability_faults",
            "connect_failures",
            "replica",
        ],
    },
    worker(
        "service/src/worker/runtime.rs",
        &["workers", "worker_faults", "connect_failures"],
    ),
    worker("service/src/worker/retry.rs", &[UNIT_TESTS, "workers"]),
    worker(
        "service/src/worker/listener.rs",
        &["workers", "connect_failures"],
    ),
    worker("service/src/worker/prune.rs", &["workers"]),
    worker(
        "service/src/worker/mod.rs",
        &["workers", "connect_failures"],
    ),
    worker(
        "service/src/routing.rs",
        &[UNIT_TESTS, "replica", "routing", "connect_failures"],
    ),
    worker("service/src/tenant.rs", &[UNIT_TESTS, "tenant_isolation"]),
    Target {
        package: "migration",
        file: "migration/src/tenancy.rs",
        test_packages: "migration,harness",
        tests: &[
            UNIT_TESTS,
            "tenancy_catalog",
            "tenant_isolation",
            "tenant_roles",
        ],
    },
    runner("migration/src/runner/lock.rs", RUNNER_TESTS),
    runner("migration/src/runner/apply.rs", RUNNER_TESTS),
    runner("migration/src/runner/blockers.rs", RUNNER_TESTS),
    runner("migration/src/runner/connection.rs", RUNNER_TESTS),
    runner("migration/src/runner/options.rs", RUNNER_TESTS),
    runner("migration/src/runner/mod.rs", RUNNER_TESTS),
    pooler("db-connect/src/inline.rs"),
    pooler("db-connect/src/pool/session.rs"),
    Target {
        package: "db-connect",
        file: "db-connect/src/topology.rs",
        test_packages: "db-connect,harness",
        tests: &[UNIT_TESTS, "config"],
    },
    Target {
        package: "db-connect",
        file: "db-connect/src/pool/prepared.rs",
        test_packages: "db-connect,harness",
        tests: &[UNIT_TESTS, "through_pgbouncer_125_prepared"],
    },
    Target {
        package: "db-connect",
        file: "db-connect/src/pool.rs",
        test_packages: IT,
        tests: &["through_pgbouncer", "through_pgbouncer_125_prepared"],
    },
    Target {
        package: "dev-servers",
        file: "dev-servers/src/pgbouncer.rs",
        test_packages: "dev-servers,harness",
        tests: &[UNIT_TESTS, "through_pgbouncer_125_prepared"],
    },
    Target {
        package: "harness",
        file: "harness/src/topology.rs",
        test_packages: IT,
        tests: &[
            UNIT_TESTS,
            "through_pgbouncer_125_prepared",
            "through_pgbouncer_125_inlined",
        ],
    },
];

pub struct Options {
    /// Only these files (as in [`Target::file`]); all when empty.
    pub only: Vec<String>,
    /// Rerun only the mutants a previous run did not catch.
    pub iterate: bool,
}

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `target/mutants/events` for `service/src/events.rs`, `target/mutants/worker-mod` for
/// `service/src/worker/mod.rs`, `target/mutants/harness-topology` for `harness/src/topology.rs`
/// (two modules may share a file name).
fn output_dir(target: &Target) -> std::path::PathBuf {
    let path = Path::new(target.file);
    let name = |p: Option<&std::ffi::OsStr>| p.expect("a file path").to_string_lossy().into_owned();
    let stem = name(path.file_stem());
    let parent = name(path.parent().and_then(Path::file_name));
    let dir = match parent.as_str() {
        "src" if target.package == "service" => stem,
        // db-connect's and the harness's `topology.rs` apart.
        "src" => format!("{}-{stem}", target.package),
        _ => format!("{parent}-{stem}"),
    };
    workspace().join("target/mutants").join(dir)
}

/// Lines of `mutants.out/<outcome>.txt`: how many mutants had that outcome.
fn count(target: &Target, outcome: &str) -> usize {
    std::fs::read_to_string(
        output_dir(target)
            .join("mutants.out")
            .join(format!("{outcome}.txt")),
    )
    .map(|text| text.lines().filter(|l| !l.trim().is_empty()).count())
    .unwrap_or(0)
}

pub fn run(options: &Options) -> Result<()> {
    let version = Command::new("cargo")
        .args(["mutants", "--version"])
        .output();
    if !version.is_ok_and(|v| v.status.success()) {
        bail!("cargo-mutants is missing: cargo install cargo-mutants --locked");
    }
    let chosen: Vec<&Target> = TARGETS
        .iter()
        .filter(|t| options.only.is_empty() || options.only.iter().any(|o| o == t.file))
        .collect();
    if chosen.is_empty() {
        bail!(
            "no target {:?}; the files are listed in xtask/src/mutants.rs",
            options.only
        );
    }
    for target in &chosen {
        let out = output_dir(target);
        std::fs::create_dir_all(&out)?;
        eprintln!("==> {} ({})", target.file, target.tests.join(", "));
        let mut cargo = Command::new("cargo");
        cargo
            .current_dir(workspace())
            .args(["mutants", "--in-place", "--package", target.package])
            .args([
                "--file",
                target.file,
                "--test-package",
                target.test_packages,
            ])
            .args(["--baseline", "skip", "--timeout", "240", "--output"])
            .arg(&out);
        if options.iterate {
            cargo.arg("--iterate");
        }
        cargo.arg("--");
        for test in target.tests {
            match *test {
                UNIT_TESTS => cargo.arg("--lib"),
                test => cargo.args(["--test", test]),
            };
        }
        if let Some((_, filters)) = FILTERS.iter().find(|(file, _)| *file == target.file) {
            cargo.arg("--").args(*filters);
        }
        // Non-zero when a mutant is missed or timed out: reported in the table, not an error.
        cargo.status().context("running cargo mutants")?;
    }
    let mut table = String::from(
        "| file | caught | missed | unviable | timeout |\n| --- | --- | --- | --- | --- |\n",
    );
    for target in &chosen {
        let _ = writeln!(
            table,
            "| `{}` | {} | {} | {} | {} |",
            target.file,
            count(target, "caught"),
            count(target, "missed"),
            count(target, "unviable"),
            count(target, "timeout"),
        );
    }
    println!("{table}");
    println!("missed mutants: target/mutants/<file>/mutants.out/missed.txt");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test named in a row that no package of the row has would fail every mutant's run,
    /// so every mutant would look caught.
    #[test]
    fn every_row_names_files_and_tests_that_exist() {
        for target in TARGETS {
            assert!(
                workspace().join(target.file).is_file(),
                "{} does not exist",
                target.file
            );
            let packages: Vec<&str> = target.test_packages.split(',').collect();
            for test in target.tests.iter().filter(|t| **t != UNIT_TESTS) {
                assert!(
                    packages.iter().any(|package| workspace()
                        .join(package)
                        .join("tests")
                        .join(format!("{test}.rs"))
                        .is_file()),
                    "{}: no package of {} has the test {test}",
                    target.file,
                    target.test_packages
                );
            }
        }
    }
}
