//! The harness on Citus: one [`CitusCluster`] per test process (a coordinator and two workers),
//! a template database built once on it by the real `migration::apply_pending` (which
//! distributes the tables where Citus is present), and per test a copy of that template on every
//! node, dropped on every node at the end.
//!
//! `CREATE DATABASE ... TEMPLATE` copies one node's databases only, and only while nobody is
//! connected to the template; so the template is frozen once (closed to connections, every
//! session on it ended on every node), and each test's database is copied from it on each node:
//! every node's copy holds that node's shards and the same metadata, so the copies together are
//! a complete distributed database (about a tenth of what building one costs).
//!
//! A test binary whose name starts with `through_citus` (or any test process with
//! `TEST_THROUGH_CITUS=1`) gets every [`TestDb`] on Citus, so the same test files run on one node
//! and on the cluster.

pub mod load;

use std::sync::OnceLock;

use dev_servers::CitusCluster;
use tokio::sync::OnceCell;

use crate::{PREFIX, TestDb, connect, database_name};

const THROUGH_CITUS_VAR: &str = "TEST_THROUGH_CITUS";
const THROUGH_CITUS_BINARY: &str = "through_citus";
/// Workers of the test process's cluster: two, so shards and two-phase commits span nodes.
pub const WORKERS: usize = 2;

/// Whether this test process puts its test databases on Citus.
pub fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        let by_name = std::env::current_exe().ok().is_some_and(|exe| {
            exe.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(THROUGH_CITUS_BINARY))
        });
        by_name || std::env::var(THROUGH_CITUS_VAR).is_ok_and(|v| v == "1")
    })
}

/// The Citus cluster of this test process, started on first use; removed when the process
/// ends, however it ends. Without Citus installed it panics with the command that installs it.
pub fn cluster() -> &'static CitusCluster {
    static CLUSTER: OnceLock<CitusCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        CitusCluster::start(WORKERS)
            .unwrap_or_else(|err| panic!("could not start a Citus cluster: {err}"))
    })
}

/// The template of this process's test databases on the cluster: created with Citus on every
/// node, migrated by `migration::apply_pending` on the coordinator, then frozen.
pub async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("{PREFIX}{}_citus_template", std::process::id());
            let creating = name.clone();
            blocking(move || cluster().create_database(&creating)).await;
            let url = cluster()
                .coordinator_url(&name)
                .expect("a valid database name");
            migration::apply_pending(&url)
                .await
                .unwrap_or_else(|err| panic!("migrating the Citus template failed: {err}"));
            let freezing = name.clone();
            blocking(move || cluster().freeze_template(&freezing)).await;
            name
        })
        .await
}

/// A copy of the migrated template on every node, for one test.
pub async fn migrated() -> TestDb {
    let template = template().await;
    let name = database_name();
    let cloning = name.clone();
    blocking(move || cluster().clone_database(template, &cloning)).await;
    on_cluster(name).await
}

/// A new database on every node with Citus in it and nothing else, for one test.
pub async fn empty() -> TestDb {
    let name = database_name();
    let creating = name.clone();
    blocking(move || cluster().create_database(&creating)).await;
    on_cluster(name).await
}

async fn on_cluster(name: String) -> TestDb {
    let url = cluster()
        .coordinator_url(&name)
        .expect("a valid database name");
    let conn = connect(&url, 5).await;
    TestDb {
        name,
        direct_url: url.clone(),
        url,
        conn,
        on_citus: true,
    }
}

/// Drops a test database from every node.
pub(crate) fn drop_database(name: &str) {
    cluster()
        .drop_database(name)
        .unwrap_or_else(|err| panic!("could not drop {name} from the Citus cluster: {err}"));
}

/// Sessions of the current database waiting for a row lock on any node, each counted once: a
/// statement on the coordinator waits on the worker holding the row, under its global pid.
pub(crate) const LOCK_WAITERS: &str = "SELECT count(DISTINCT global_pid) FROM citus_stat_activity
     WHERE datname = current_database() AND wait_event_type = 'Lock'";

/// Runs the cluster's (blocking) commands off the test's runtime thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, dev_servers::ClusterError> + Send + 'static,
) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("the Citus cluster's command panicked")
        .unwrap_or_else(|err| panic!("{err}"))
}
