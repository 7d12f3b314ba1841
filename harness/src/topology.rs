//! The production topology in the tests: a real PgBouncer in transaction mode in front of the
//! test server, started once per test process on first use and removed when the process ends,
//! and streaming replicas of the test server on request.
//!
//! A test binary whose name starts with `through_pgbouncer` (or any test process with
//! `TEST_THROUGH_PGBOUNCER=1`) gives every test database's [`crate::TestDb::url`] and
//! [`crate::TestDb::conn`] through PgBouncer, so the same test files run both ways. The binary's
//! name also says which PgBouncer and how statements cross it, for every PgBouncer the harness
//! starts: `pgbouncer_125` in it means 1.25 (else Debian's 1.18), a name ending in `_prepared`
//! means the driver's prepared statements ([`PooledStatements::Prepared`], else inlined). So
//! `through_pgbouncer_125_prepared` runs its tests through 1.25 with prepared statements.

use std::sync::OnceLock;

use db_connect::PooledStatements;
use dev_servers::{PgBinaries, PgBouncer, PgBouncerRelease, PgBouncerSettings, Replica};

use crate::server;

const THROUGH_PGBOUNCER_VAR: &str = "TEST_THROUGH_PGBOUNCER";
const THROUGH_PGBOUNCER_BINARY: &str = "through_pgbouncer";
const RELEASE_1_25_MARK: &str = "pgbouncer_125";
const PREPARED_SUFFIX: &str = "_prepared";

/// The name of this test binary, without cargo's hash (`through_pgbouncer_125_prepared`).
fn binary_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.file_stem()?.to_str().map(without_hash))
            .unwrap_or_default()
    })
}

/// `through_pgbouncer_125_prepared-0123abcd` without `-0123abcd`.
fn without_hash(stem: &str) -> String {
    match stem.rsplit_once('-') {
        Some((name, hash)) if !hash.is_empty() && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name.to_owned()
        }
        _ => stem.to_owned(),
    }
}

/// Whether this test process reaches its databases through PgBouncer.
pub fn through_pgbouncer() -> bool {
    static THROUGH: OnceLock<bool> = OnceLock::new();
    *THROUGH.get_or_init(|| {
        binary_name().starts_with(THROUGH_PGBOUNCER_BINARY)
            || std::env::var(THROUGH_PGBOUNCER_VAR).is_ok_and(|v| v == "1")
    })
}

/// The PgBouncer release this test process starts.
pub fn pgbouncer_release() -> PgBouncerRelease {
    release_of(binary_name())
}

fn release_of(name: &str) -> PgBouncerRelease {
    match name.contains(RELEASE_1_25_MARK) {
        true => PgBouncerRelease::V1_25,
        false => PgBouncerRelease::V1_18,
    }
}

/// How this test process's pools send statements through a transaction pooler.
pub fn pooled_statements() -> PooledStatements {
    statements_of(binary_name())
}

fn statements_of(name: &str) -> PooledStatements {
    match name.ends_with(PREPARED_SUFFIX) {
        true => PooledStatements::Prepared,
        false => PooledStatements::Inlined,
    }
}

/// A PgBouncer of its own in front of [`server`], for a test that needs its own pool sizes or
/// release; stopped when dropped. Panics, naming the command that installs it, when that
/// PgBouncer is missing.
pub fn start_pgbouncer(settings: PgBouncerSettings) -> PgBouncer {
    PgBouncer::start(server().admin_url(), &client_binaries(), settings)
        .unwrap_or_else(|err| panic!("could not start PgBouncer: {err}"))
}

fn client_binaries() -> PgBinaries {
    server()
        .binaries()
        .cloned()
        .or_else(|| PgBinaries::locate().ok())
        .expect("PgBouncer's auth file is written with psql, from the PostgreSQL binaries")
}

/// The PgBouncer of this test process (`pool_mode = transaction`, SCRAM, 5 server connections
/// per database, the binary's release), started on first use in front of [`server`].
pub fn pgbouncer() -> &'static PgBouncer {
    static PGBOUNCER: OnceLock<PgBouncer> = OnceLock::new();
    PGBOUNCER.get_or_init(|| {
        start_pgbouncer(PgBouncerSettings {
            release: pgbouncer_release(),
            ..PgBouncerSettings::default()
        })
    })
}

/// A streaming replica of this process's throwaway cluster (hot standby), stopped and removed
/// when dropped. Needs the throwaway cluster: a `TEST_DATABASE_URL` server cannot be copied.
pub fn start_replica() -> Replica {
    let cluster = server()
        .cluster()
        .expect("a replica is copied from the throwaway cluster; unset TEST_DATABASE_URL");
    Replica::start(cluster).unwrap_or_else(|err| panic!("could not start a replica: {err}"))
}

/// Waits until `replica` streams from the primary and has replayed everything the primary has
/// written so far.
pub async fn wait_until_replayed(replica: &Replica) {
    replica
        .wait_until_caught_up()
        .await
        .unwrap_or_else(|err| panic!("{err}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binary_name_picks_the_release_and_the_statements() {
        for (stem, release, statements) in [
            (
                "through_pgbouncer-0f3a9c",
                PgBouncerRelease::V1_18,
                PooledStatements::Inlined,
            ),
            (
                "through_pgbouncer_125_inlined-77aa",
                PgBouncerRelease::V1_25,
                PooledStatements::Inlined,
            ),
            (
                "through_pgbouncer_125_prepared-1b2c3d",
                PgBouncerRelease::V1_25,
                PooledStatements::Prepared,
            ),
            (
                "pooler_pgbouncer_125",
                PgBouncerRelease::V1_25,
                PooledStatements::Inlined,
            ),
            (
                "service_events-9e9e",
                PgBouncerRelease::V1_18,
                PooledStatements::Inlined,
            ),
        ] {
            let name = without_hash(stem);
            assert_eq!(release_of(&name), release, "{stem}");
            assert_eq!(statements_of(&name), statements, "{stem}");
        }
        assert_eq!(
            without_hash("through_pgbouncer_125_prepared"),
            "through_pgbouncer_125_prepared"
        );
        assert_eq!(without_hash("reliability-events"), "reliability-events");
    }
}
