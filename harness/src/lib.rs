//! The test harness: every test gets its own database, cloned from a template that was migrated
//! once per test process, so tests run in parallel, never share rows and never wait for
//! migrations.
//!
//! The server is `TEST_DATABASE_URL` when set (its database is used for CREATE/DROP DATABASE),
//! otherwise a [`ThrowawayCluster`] started once per test process and removed when the process
//! ends, however it ends.
//!
//! In a test binary named `through_citus*` every test database is on a Citus cluster instead
//! ([`citus`]).
//!
//! Set `TEST_KEEP_DATABASES=1` to keep each test's database for inspection.

use std::{
    process::Command,
    sync::{
        OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use db_connect::{DatabaseUrl, Pool, PoolSettings, Pooler};
use dev_servers::{PgBinaries, ThrowawayCluster};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use secrecy::ExposeSecret;
use tokio::sync::OnceCell;

pub use db_connect;

pub mod better_auth;
pub mod citus;
pub mod connect_faults;
pub mod fixtures;
pub mod topology;

const TEST_DATABASE_URL: &str = "TEST_DATABASE_URL";
const KEEP_DATABASES: &str = "TEST_KEEP_DATABASES";
/// Every database the harness creates starts with this, followed by the creating process's id.
const PREFIX: &str = "it_";

/// The PostgreSQL server the tests of this process use.
pub struct TestServer {
    admin: DatabaseUrl,
    cluster: Option<ThrowawayCluster>,
    binaries: Option<PgBinaries>,
}

impl TestServer {
    /// The URL of the maintenance database, where databases are created and dropped.
    pub fn admin_url(&self) -> &DatabaseUrl {
        &self.admin
    }

    /// The throwaway cluster, when the harness started one (not with `TEST_DATABASE_URL`).
    pub fn cluster(&self) -> Option<&ThrowawayCluster> {
        self.cluster.as_ref()
    }

    /// The client tools (`pg_dump`, `psql`) matching the server when the harness knows them.
    pub fn binaries(&self) -> Option<&PgBinaries> {
        self.binaries.as_ref()
    }
}

/// The server of this test process, started on first use.
pub fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| match std::env::var(TEST_DATABASE_URL) {
        Ok(raw) if !raw.trim().is_empty() => TestServer {
            admin: DatabaseUrl::parse(&raw)
                .unwrap_or_else(|err| panic!("{TEST_DATABASE_URL} is invalid: {err}")),
            cluster: None,
            binaries: PgBinaries::locate().ok(),
        },
        _ => {
            let cluster = ThrowawayCluster::start()
                .unwrap_or_else(|err| panic!("could not start a throwaway PostgreSQL: {err}"));
            TestServer {
                admin: cluster.url("postgres").expect("valid database name"),
                binaries: Some(cluster.binaries().clone()),
                cluster: Some(cluster),
            }
        }
    })
}

/// A small pool for `url`, for test code; through a transaction-mode pooler when the URL says
/// `pgbouncer=true` (as [`TestDb::url`] does in a test binary that runs through PgBouncer), with
/// statements crossing it as the binary's name says ([`topology::pooled_statements`]).
pub async fn connect(url: &DatabaseUrl, max_connections: u32) -> Pool {
    let settings = PoolSettings {
        max_connections,
        ..PoolSettings::default()
    };
    let pooler = match url.pooler_flag() {
        Some(true) => Pooler::Transaction,
        _ => Pooler::None,
    };
    Pool::connect_through(url, pooler, topology::pooled_statements(), &settings)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

async fn admin_execute(sql: &str) {
    let admin = connect(&server().admin, 1).await;
    admin
        .execute_unprepared(sql)
        .await
        .unwrap_or_else(|err| panic!("`{sql}` failed: {err}"));
    admin.close().await.ok();
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

fn process_is_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Drops databases left by earlier test processes that died before cleaning up (only possible
/// on a shared `TEST_DATABASE_URL` server; a throwaway cluster starts empty).
async fn drop_leftovers() {
    let admin = connect(&server().admin, 1).await;
    let rows = admin
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT datname FROM pg_database WHERE datname LIKE '{PREFIX}%'"),
        ))
        .await
        .expect("listing databases");
    for row in rows {
        let name: String = row.try_get_by_index(0).expect("datname");
        let pid = name[PREFIX.len()..]
            .split('_')
            .next()
            .and_then(|pid| pid.parse().ok());
        if pid.is_some_and(|pid| !process_is_alive(pid)) {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&name));
            admin.execute_unprepared(&sql).await.ok();
        }
    }
    admin.close().await.ok();
}

/// The template every test database is cloned from: migrated once, then closed to connections
/// so that concurrent `CREATE DATABASE ... TEMPLATE` never finds it busy.
async fn template() -> &'static str {
    static TEMPLATE: OnceCell<String> = OnceCell::const_new();
    TEMPLATE
        .get_or_init(|| async {
            if server().cluster.is_none() {
                drop_leftovers().await;
            }
            let name = format!("{PREFIX}{}_template", std::process::id());
            admin_execute(&format!("CREATE DATABASE {}", quote(&name))).await;
            let url = server().admin.with_database(&name).expect("valid name");
            migration::apply_pending(&url)
                .await
                .unwrap_or_else(|err| panic!("migrating the template failed: {err}"));
            admin_execute(&format!(
                "ALTER DATABASE {} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
                quote(&name)
            ))
            .await;
            name
        })
        .await
}

/// A database name unique to this process and test: `it_<pid>_<n>_<test name>`.
fn database_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let test = std::thread::current()
        .name()
        .unwrap_or("test")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect::<String>();
    let mut name = format!("{PREFIX}{}_{n}_{test}", std::process::id());
    name.truncate(63);
    name
}

/// A database of its own for one test, dropped when the value is dropped.
pub struct TestDb {
    name: String,
    url: DatabaseUrl,
    direct_url: DatabaseUrl,
    conn: Pool,
    /// On every node of the [`citus::cluster`], not on [`server`].
    on_citus: bool,
}

impl TestDb {
    /// A fresh database with every migration applied.
    pub async fn migrated() -> Self {
        if citus::enabled() {
            return citus::migrated().await;
        }
        let template = template().await;
        Self::create(&format!("TEMPLATE {}", quote(template))).await
    }

    /// A fresh database with nothing in it, for tests of the migrations themselves.
    pub async fn empty() -> Self {
        if citus::enabled() {
            return citus::empty().await;
        }
        Self::create("TEMPLATE template0").await
    }

    async fn create(clause: &str) -> Self {
        let name = database_name();
        admin_execute(&format!("CREATE DATABASE {} {clause}", quote(&name))).await;
        let direct_url = server().admin.with_database(&name).expect("valid name");
        let url = match topology::through_pgbouncer() {
            true => topology::pgbouncer().url(&name).expect("valid name"),
            false => direct_url.clone(),
        };
        let conn = connect(&url, 5).await;
        Self {
            name,
            url,
            direct_url,
            conn,
            on_citus: false,
        }
    }

    /// The test's pooled connection (up to 5 connections); through PgBouncer in a test binary
    /// that runs through it.
    pub fn conn(&self) -> &Pool {
        &self.conn
    }

    /// The URL the application would use: the database itself, or PgBouncer in front of it
    /// (marked `pgbouncer=true`) in a test binary that runs through it.
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }

    /// The database itself, never through PgBouncer (for what needs a session of its own).
    pub fn direct_url(&self) -> &DatabaseUrl {
        &self.direct_url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this database is on the Citus cluster ([`citus`]), on every node.
    pub fn on_citus(&self) -> bool {
        self.on_citus
    }

    /// A login role that is a member of `group` (one of `migration::tenancy::ROLES`), and the
    /// URL of this database (never through PgBouncer) as it: how a service connects in
    /// production. Roles belong to the cluster, so each call makes a role of its own.
    pub async fn login_as(&self, group: &str) -> DatabaseUrl {
        use std::hash::{BuildHasher, Hasher};
        static LOGINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = LOGINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("login_{}_{n}", std::process::id());
        let password = format!(
            "{:016x}",
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        );
        self.conn
            .execute_unprepared(&format!(
                "CREATE ROLE {name} LOGIN PASSWORD '{password}' IN ROLE {group}"
            ))
            .await
            .unwrap_or_else(|err| panic!("creating a login member of {group} failed: {err}"));
        DatabaseUrl::new(
            name,
            secrecy::SecretString::from(password),
            self.direct_url.host(),
            self.direct_url.port(),
            &self.name,
        )
        .expect("a valid URL")
    }

    /// A new pool of its own, for tests that need truly separate sessions.
    pub async fn new_pool(&self, max_connections: u32) -> Pool {
        connect(&self.url, max_connections).await
    }

    /// A new SeaORM pool straight to the database (never through PgBouncer), for code that
    /// takes SeaORM's own connection type (the migrator, the studio).
    pub async fn new_direct_pool(&self, max_connections: u32) -> sea_orm::DatabaseConnection {
        let settings = PoolSettings {
            max_connections,
            ..PoolSettings::default()
        };
        db_connect::connect(&self.direct_url, &settings)
            .await
            .unwrap_or_else(|err| panic!("could not connect to {}: {err}", self.direct_url))
    }

    /// `pg_dump --schema-only` of this database without what differs between two dumps of the
    /// same schema (comments, blank lines, the per-dump `\restrict` keys), for comparing schemas.
    pub fn schema_dump(&self) -> String {
        let bins = server()
            .binaries()
            .cloned()
            .or_else(|| PgBinaries::locate().ok())
            .expect("pg_dump needs the PostgreSQL binaries");
        let output = Command::new(bins.tool("pg_dump"))
            .args(["--schema-only", "--no-owner", "--no-privileges"])
            .args([
                "--host",
                self.direct_url.host(),
                "--port",
                &self.direct_url.port().to_string(),
            ])
            .args(["--username", self.direct_url.user(), &self.name])
            .env("PGPASSWORD", self.direct_url.password().expose_secret())
            .output()
            .expect("running pg_dump");
        assert!(
            output.status.success(),
            "pg_dump failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout)
            .expect("pg_dump prints UTF-8")
            .lines()
            .filter(|line| {
                !line.trim().is_empty()
                    && !line.starts_with("--")
                    && !line.starts_with("\\restrict")
                    && !line.starts_with("\\unrestrict")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DATABASES).is_some() {
            eprintln!("keeping test database {} ({})", self.name, self.url);
            return;
        }
        // Drop cannot await, so the DROP gets a thread and a runtime of its own.
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(&self.name));
        let (name, on_citus) = (self.name.clone(), self.on_citus);
        let dropping = std::thread::spawn(move || match on_citus {
            true => citus::drop_database(&name),
            false => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for the DROP")
                .block_on(admin_execute(&sql)),
        });
        // Inside a test's runtime, waiting here would stop that runtime's thread, and with it
        // this database's pool, which may be half-way through opening a connection: the
        // server then holds that backend in authentication for `authentication_timeout`
        // (60 s), and `DROP ... WITH (FORCE)` waits for it, while every other future of the
        // test (a `join!`) is stopped too. So there the DROP finishes on its own; a database
        // it leaves when the process ends goes with the throwaway cluster, or is dropped by the
        // next run on a `TEST_DATABASE_URL` server (`drop_leftovers`).
        if tokio::runtime::Handle::try_current().is_ok() {
            return;
        }
        if dropping.join().is_err() && !std::thread::panicking() {
            panic!("could not drop test database {}", self.name);
        }
    }
}

/// Runs `sql` and returns every row as text columns (`NULL` as `None`); the query casts what it
/// selects to `text`.
pub async fn text_rows(db: &impl ConnectionTrait, sql: &str) -> Vec<Vec<Option<String>>> {
    let rows = db
        .query_all_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|err| panic!("`{sql}` failed: {err}"));
    rows.iter()
        .map(|row| {
            (0..row.column_names().len())
                .map(|i| {
                    row.try_get_by_index::<Option<String>>(i)
                        .unwrap_or_else(|err| panic!("column {i} of `{sql}` is not text: {err}"))
                })
                .collect()
        })
        .collect()
}

/// The single `bigint` that `sql` returns (e.g. a `count(*)`).
pub async fn scalar(db: &impl ConnectionTrait, sql: &str) -> i64 {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .unwrap_or_else(|err| panic!("`{sql}` failed: {err}"))
        .unwrap_or_else(|| panic!("`{sql}` returned no row"))
        .try_get_by_index(0)
        .unwrap_or_else(|err| panic!("`{sql}` did not return a bigint: {err}"))
}

/// Runs `work(connection, task_index)` in `tasks` spawned tasks at once, each on a connection
/// of its own to `url` (separate sessions, as separate service instances would have), and
/// returns their results in task order.
///
/// Every connection is open before any task starts, and the tasks pass a barrier together, so
/// their first statements leave at the same moment: a race between them is run, not left to
/// whether connecting happened to overlap. How they then interleave is up to the server; for
/// one fixed, worst-case interleaving use [`behind_row_locks`].
pub async fn on_separate_connections<T, F, Fut>(url: &DatabaseUrl, tasks: usize, work: F) -> Vec<T>
where
    F: Fn(Pool, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    join_racers(start_racers(url, tasks, work).await).await
}

/// Like [`on_separate_connections`] on `db`'s URL, but a transaction of the harness first locks
/// the rows that `lock_rows` selects (a `SELECT ... FOR UPDATE`) and keeps them locked until
/// every task is waiting for a lock (or has already finished); then it lets them all go at once.
///
/// So every task has done whatever it does before its first write to those rows (a read, a
/// check) before any task writes: a check-then-write implementation fails every time instead
/// of when the timing happens to allow it, and a correct one meets its worst case, every task
/// queued on the same rows.
///
/// Through PgBouncer only as many tasks as it has server connections can reach the server at
/// once (the rest queue in PgBouncer), so there the rows are let go once that many wait. The
/// lock holder and the watcher reach the database directly, taking none of those connections.
pub async fn behind_row_locks<T, F, Fut>(
    db: &TestDb,
    lock_rows: &str,
    tasks: usize,
    work: F,
) -> Vec<T>
where
    F: Fn(Pool, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    use sea_orm::TransactionTrait;
    let at_once = match topology::through_pgbouncer() {
        true => tasks.min(topology::pgbouncer().settings().server_pool_size as usize),
        false => tasks,
    };
    let gate = connect(db.direct_url(), 1).await;
    let held = gate.begin().await.expect("BEGIN of the lock holder");
    let locked = held
        .query_all_raw(Statement::from_string(DbBackend::Postgres, lock_rows))
        .await
        .unwrap_or_else(|err| panic!("`{lock_rows}` failed: {err}"));
    assert!(!locked.is_empty(), "`{lock_rows}` locked no row");
    let racers = start_racers(db.url(), tasks, work).await;
    let monitor = connect(db.direct_url(), 1).await;
    let started = std::time::Instant::now();
    loop {
        let waiting = match db.on_citus {
            true => citus::LOCK_WAITERS,
            false => {
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND backend_type = 'client backend'
                   AND wait_event_type = 'Lock'"
            }
        };
        let waiting = scalar(&monitor, waiting).await as usize;
        let finished = racers.iter().filter(|r| r.is_finished()).count();
        if waiting + finished >= at_once {
            break;
        }
        // Not a timing assertion: only a bound on a hang, should a task wait on something else.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "after 60 s only {waiting} of {at_once} tasks wait for the locked rows ({finished} finished)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    held.rollback().await.expect("releasing the locked rows");
    let results = join_racers(racers).await;
    monitor.close().await.ok();
    gate.close().await.ok();
    results
}

/// Connects `tasks` sessions, then spawns one task per session that waits at a common barrier
/// before running `work`.
async fn start_racers<T, F, Fut>(
    url: &DatabaseUrl,
    tasks: usize,
    work: F,
) -> Vec<tokio::task::JoinHandle<T>>
where
    F: Fn(Pool, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    // Connected here, not in the tasks: a task that failed before the barrier would leave the
    // others waiting at it forever.
    let mut connections = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let conn = connect(url, 1).await;
        conn.ping()
            .await
            .unwrap_or_else(|err| panic!("a racing connection to {url} failed: {err}"));
        connections.push(conn);
    }
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(tasks));
    connections
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            let (start, work) = (start.clone(), work.clone());
            tokio::spawn(async move {
                start.wait().await;
                work(conn, i).await
            })
        })
        .collect()
}

async fn join_racers<T>(racers: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(racers.len());
    for racer in racers {
        results.push(racer.await.expect("a racing task panicked"));
    }
    results
}
