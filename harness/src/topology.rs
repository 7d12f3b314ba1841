//! The production topology in the tests: a real PgBouncer in transaction mode in front of the
//! test server, started once per test process on first use and removed when the process ends,
//! and streaming replicas of the test server on request.
//!
//! A test binary whose name starts with `through_pgbouncer` (or any test process with
//! `TEST_THROUGH_PGBOUNCER=1`) gives every test database's [`crate::TestDb::url`] and
//! [`crate::TestDb::conn`] through PgBouncer, so the same test files run both ways.

use std::sync::OnceLock;

use dev_servers::{PgBinaries, PgBouncer, PgBouncerSettings, Replica};

use crate::server;

const THROUGH_PGBOUNCER_VAR: &str = "TEST_THROUGH_PGBOUNCER";
const THROUGH_PGBOUNCER_BINARY: &str = "through_pgbouncer";

/// Whether this test process reaches its databases through PgBouncer.
pub fn through_pgbouncer() -> bool {
    static THROUGH: OnceLock<bool> = OnceLock::new();
    *THROUGH.get_or_init(|| {
        let by_name = std::env::current_exe().ok().is_some_and(|exe| {
            exe.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(THROUGH_PGBOUNCER_BINARY))
        });
        by_name || std::env::var(THROUGH_PGBOUNCER_VAR).is_ok_and(|v| v == "1")
    })
}

/// A PgBouncer of its own in front of [`server`], for a test that needs its own pool sizes;
/// stopped when dropped.
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
/// per database), started on first use in front of [`server`].
pub fn pgbouncer() -> &'static PgBouncer {
    static PGBOUNCER: OnceLock<PgBouncer> = OnceLock::new();
    PGBOUNCER.get_or_init(|| start_pgbouncer(PgBouncerSettings::default()))
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
