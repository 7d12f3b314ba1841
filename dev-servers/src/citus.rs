//! A Citus cluster for tests and the bench: a coordinator and workers on loopback, each a
//! throwaway server on a free port in one temporary folder, removed by a watchdog once this
//! process is gone.
//!
//! Clients (tests, the migration runner, the bench) connect over TCP with SCRAM as the
//! superuser, exactly as to a [`crate::ThrowawayCluster`]. Citus connects from node to node as
//! the current user, to the workers and to the coordinator itself, and has no way to hold a
//! password for that (`citus.node_conninfo` takes no `password`), so the nodes are registered by
//! their Unix socket directory, which `pg_hba.conf` trusts and only the servers' OS user can
//! reach (`unix_socket_permissions = 0700`).

use std::{
    fs::{self, Permissions},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Child, Command},
};

use secrecy::{ExposeSecret, SecretString};

use crate::{
    ClusterError, PgBinaries, SUPERUSER,
    files::{Owner, replace_file},
    free_port, io_err, random_password,
    run_as::RunAs,
    run_ok,
    server::Server,
    throwaway::spawn_watchdog_for,
};
use db_connect::config::DatabaseUrl;

/// The Citus release the workspace is built and tested against.
pub const CITUS_VERSION: &str = "13.2";

/// Unix sockets have a path limit of 107 bytes; a socket is `<dir>/.s.PGSQL.<port>`.
const SOCKET_PATH_LIMIT: usize = 107;
const SOCKET_FILE: &str = "/.s.PGSQL.65535";

/// How a cluster is sized. The defaults suit a test process: four shards per distributed table
/// (two per worker: multi-node behaviour at little fan-out), and room for the databases a test
/// process keeps at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CitusSettings {
    /// `citus.shard_count`: shards of a new distributed table (its co-location group's).
    pub shard_count: u32,
    /// `citus.max_adaptive_executor_pool_size`: connections one statement opens per worker.
    pub executor_pool_size: u32,
    /// `max_connections` of every node. Each Citus database keeps about three idle internal
    /// connections on each node, and every session caches one connection per worker.
    pub max_connections: u32,
    /// `max_worker_processes` of every node. Each Citus database runs a maintenance daemon on
    /// each node (two-phase commit recovery, distributed deadlock detection); logical shard
    /// moves and the rebalancer's tasks take workers of this pool too.
    pub max_worker_processes: u32,
}

impl Default for CitusSettings {
    fn default() -> Self {
        Self {
            shard_count: 4,
            executor_pool_size: 2,
            max_connections: 400,
            max_worker_processes: 96,
        }
    }
}

/// Where Citus must be installed for `bins`' server, and whether it is: its library in
/// `pg_config --pkglibdir` and its extension's control file in `pg_config --sharedir`.
pub fn check_citus_installed(bins: &PgBinaries) -> Result<(), ClusterError> {
    let pg_config = |flag: &str| -> Result<PathBuf, ClusterError> {
        let mut cmd = Command::new(bins.tool("pg_config"));
        cmd.arg(flag);
        let out = run_ok(cmd)?;
        Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
    };
    let required = [
        pg_config("--pkglibdir")?.join("citus.so"),
        pg_config("--sharedir")?.join("extension/citus.control"),
    ];
    match required.into_iter().find(|path| !path.is_file()) {
        None => Ok(()),
        Some(missing) => {
            let mut version = Command::new(bins.tool("pg_config"));
            version.arg("--version");
            let version = String::from_utf8_lossy(&run_ok(version)?.stdout).into_owned();
            Err(ClusterError::CitusNotInstalled {
                missing,
                postgres_major: postgres_major(&version).unwrap_or("<version>").to_owned(),
            })
        }
    }
}

/// `15` of `PostgreSQL 15.18 (Debian 15.18-0+deb12u1)`.
fn postgres_major(version: &str) -> Option<&str> {
    let number = version.strip_prefix("PostgreSQL ")?;
    let major = number.split(['.', ' ']).next()?;
    (!major.is_empty() && major.bytes().all(|b| b.is_ascii_digit())).then_some(major)
}

/// One PostgreSQL server of the cluster and its TCP port.
#[derive(Debug)]
struct Node {
    server: Server,
    port: u16,
}

/// A Citus cluster: a coordinator and its workers, all bootstrapped (`CREATE EXTENSION citus`
/// in each node's `postgres` database, the coordinator and the workers registered there), so
/// `CREATE ROLE` on the coordinator reaches every node.
#[derive(Debug)]
pub struct CitusCluster {
    dir: PathBuf,
    sockets: PathBuf,
    bins: PgBinaries,
    run_as: RunAs,
    password: SecretString,
    settings: CitusSettings,
    coordinator: Node,
    workers: Vec<Node>,
    watchdog: Child,
}

/// A worker started by [`CitusCluster::add_worker`]: running with the cluster's settings and
/// password, reachable over the cluster's socket directory, but in no database's metadata until
/// [`CitusCluster::register_worker`] puts it there. Stopped and removed when dropped.
#[derive(Debug)]
pub struct CitusWorker {
    dir: PathBuf,
    node: Node,
    url: DatabaseUrl,
    watchdog: Child,
}

impl CitusCluster {
    /// A coordinator and `workers` workers with [`CitusSettings::default`].
    pub fn start(workers: usize) -> Result<Self, ClusterError> {
        Self::start_with(workers, CitusSettings::default())
    }

    /// Starts and bootstraps the cluster. Fails with the command that installs Citus when the
    /// server binaries found lack it.
    pub fn start_with(workers: usize, settings: CitusSettings) -> Result<Self, ClusterError> {
        let bins = PgBinaries::locate()?;
        check_citus_installed(&bins)?;
        let run_as = RunAs::detect()?;
        let dir = short_temp_dir("citus-")?;
        run_as.keep_own(&dir)?;
        let sockets = dir.join("s");
        fs::create_dir(&sockets).map_err(io_err(format!("creating {}", sockets.display())))?;
        run_as.give(&sockets)?;
        fs::set_permissions(&sockets, Permissions::from_mode(0o700))
            .map_err(io_err(format!("closing {}", sockets.display())))?;
        let servers: Vec<Server> = std::iter::once("coordinator".to_owned())
            .chain((1..=workers).map(|i| format!("worker{i}")))
            .map(|name| node_server(&bins, &run_as, &dir.join(name)))
            .collect::<Result<_, _>>()?;
        let watchdog = spawn_watchdog_for(&servers.iter().collect::<Vec<_>>(), &dir)?;
        let password = random_password();
        let conf = node_conf(&sockets, &settings);
        let started = in_parallel(servers, |server| {
            init_and_start(server, &password, &conf, &run_as)
        });
        if started.iter().any(Result::is_err) {
            for node in started.iter().flatten() {
                let _ = node.server.stop("immediate");
            }
            let _ = fs::remove_dir_all(&dir);
            let mut watchdog = watchdog;
            let _ = watchdog.kill();
            let _ = watchdog.wait();
            return Err(started
                .into_iter()
                .find_map(Result::err)
                .expect("a node failed"));
        }
        let mut nodes: Vec<Node> = started.into_iter().flatten().collect();
        let mut cluster = Self {
            coordinator: nodes.remove(0),
            workers: nodes,
            dir,
            sockets,
            bins,
            run_as,
            password,
            settings,
            watchdog,
        };
        cluster.bootstrap()?;
        Ok(cluster)
    }

    /// Citus in every node's `postgres` database, then the nodes registered in the
    /// coordinator's: what makes `CREATE ROLE` there reach the workers.
    fn bootstrap(&mut self) -> Result<(), ClusterError> {
        let nodes: Vec<DatabaseUrl> = self.node_urls("postgres")?;
        parallel_ok(
            nodes
                .iter()
                .map(|url| self.psql(url, &["CREATE EXTENSION IF NOT EXISTS citus"]))
                .collect(),
        )?;
        run_ok(self.psql(
            &self.coordinator_url("postgres")?,
            &[&self.registration_sql(&self.worker_ports())],
        ))
        .map(drop)
    }

    /// `citus_set_coordinator_host` and `citus_add_node` for `workers` (ports), by socket
    /// directory.
    fn registration_sql(&self, workers: &[u16]) -> String {
        let host = self.node_host();
        let mut sql = format!(
            "SELECT citus_set_coordinator_host('{host}', {});",
            self.coordinator.port
        );
        for port in workers {
            sql.push_str(&format!(" SELECT citus_add_node('{host}', {port});"));
        }
        sql
    }

    /// A database on every node with Citus in it and the nodes registered in its metadata: the
    /// database created on each node (not through Citus's propagation, which records it as a
    /// distributed object: a copy of it would carry the template's entry, and adding a node to
    /// the copy would then fail on the template's name), Citus on the workers first (or the
    /// coordinator's registration finds none there), then on the coordinator.
    pub fn create_database(&self, name: &str) -> Result<(), ClusterError> {
        let create = format!("CREATE DATABASE {}", quote(name));
        parallel_ok(
            self.node_urls("postgres")?
                .iter()
                .map(|url| self.psql(url, &[&create]))
                .collect(),
        )?;
        parallel_ok(
            self.worker_urls(name)?
                .iter()
                .map(|url| self.psql(url, &["CREATE EXTENSION citus"]))
                .collect(),
        )?;
        run_ok(self.psql(
            &self.coordinator_url(name)?,
            &[
                "CREATE EXTENSION citus",
                &self.registration_sql(&self.worker_ports()),
            ],
        ))
        .map(drop)
    }

    /// Makes `name` a template every node can copy: closed to connections on every node, then
    /// every session on it ended (Citus's maintenance daemons and cached connections hold some),
    /// on the coordinator first, whose daemon holds connections to the workers' copies.
    pub fn freeze_template(&self, name: &str) -> Result<(), ClusterError> {
        let close = format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            quote(name)
        );
        let terminate = format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
              WHERE datname = '{}' AND pid <> pg_backend_pid()",
            name.replace('\'', "''")
        );
        let nodes = self.node_urls("postgres")?;
        parallel_ok(nodes.iter().map(|url| self.psql(url, &[&close])).collect())?;
        run_ok(self.psql(&nodes[0], &[&terminate]))?;
        parallel_ok(
            nodes[1..]
                .iter()
                .map(|url| self.psql(url, &[&terminate]))
                .collect(),
        )
    }

    /// A copy of the frozen template `template` named `name` on every node, in parallel (Citus's
    /// propagation off): each node's copy holds that node's shards and the same metadata, so
    /// together they are a complete distributed database, sharing nothing with the template.
    /// The one entry of that metadata naming the template, the database itself as a
    /// distributed object, is pointed at the copy on each node, as if it had been built there
    /// (else adding a node to the copy fails: it looks for the template there).
    pub fn clone_database(&self, template: &str, name: &str) -> Result<(), ClusterError> {
        let sql = format!(
            "CREATE DATABASE {} TEMPLATE {}",
            quote(name),
            quote(template)
        );
        parallel_ok(
            self.node_urls("postgres")?
                .iter()
                .map(|url| self.psql(url, &[&sql]))
                .collect(),
        )?;
        let repoint = format!(
            "UPDATE pg_catalog.pg_dist_object
                SET objid = (SELECT oid FROM pg_database WHERE datname = current_database())
              WHERE classid = 'pg_database'::regclass
                AND objid = (SELECT oid FROM pg_database WHERE datname = '{}')",
            template.replace('\'', "''")
        );
        parallel_ok(
            self.node_urls(name)?
                .iter()
                .map(|url| self.psql(url, &[&repoint]))
                .collect(),
        )
    }

    /// Drops `name` everywhere, ending its sessions: on the coordinator first (whose sessions
    /// and daemon connect to the workers' copies), then on the workers at once.
    pub fn drop_database(&self, name: &str) -> Result<(), ClusterError> {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", quote(name));
        let nodes = self.node_urls("postgres")?;
        run_ok(self.psql(&nodes[0], &[&sql]))?;
        parallel_ok(
            nodes[1..]
                .iter()
                .map(|url| self.psql(url, &[&sql]))
                .collect(),
        )
    }

    /// Starts one more worker with the cluster's settings, in no database's metadata yet.
    pub fn add_worker(&self) -> Result<CitusWorker, ClusterError> {
        let dir = short_temp_dir("citus-worker-")?;
        self.run_as.keep_own(&dir)?;
        let server = node_server(&self.bins, &self.run_as, &dir.join("node"))?;
        let watchdog = spawn_watchdog_for(&[&server], &dir)?;
        let conf = node_conf(&self.sockets, &self.settings);
        let node = match init_and_start(server, &self.password, &conf, &self.run_as) {
            Ok(node) => node,
            Err(err) => {
                let _ = fs::remove_dir_all(&dir);
                return Err(err);
            }
        };
        let url = self.node_url(node.port, "postgres")?;
        let worker = CitusWorker {
            dir,
            node,
            url,
            watchdog,
        };
        run_ok(self.psql(&worker.url, &["CREATE EXTENSION citus"]))?;
        Ok(worker)
    }

    /// Puts `worker` into `database`'s cluster: the database and Citus on the worker, then
    /// `citus_add_node` on the coordinator (which copies roles and metadata to it). Placing
    /// shards there is the rebalancer's or `citus_move_shard_placement`'s work.
    pub fn register_worker(
        &self,
        worker: &CitusWorker,
        database: &str,
    ) -> Result<(), ClusterError> {
        run_ok(self.psql(
            &worker.url,
            &[&format!("CREATE DATABASE {}", quote(database))],
        ))?;
        run_ok(self.psql(&worker.url(database)?, &["CREATE EXTENSION citus"]))?;
        run_ok(self.psql(
            &self.coordinator_url(database)?,
            &[&format!(
                "SELECT citus_add_node('{}', {})",
                self.node_host(),
                worker.port()
            )],
        ))
        .map(drop)
    }

    fn node_url(&self, port: u16, database: &str) -> Result<DatabaseUrl, ClusterError> {
        Ok(DatabaseUrl::new(
            SUPERUSER,
            self.password.clone(),
            "127.0.0.1",
            port,
            database,
        )?)
    }

    /// The URL of `database` on the coordinator, as the superuser: what clients use.
    pub fn coordinator_url(&self, database: &str) -> Result<DatabaseUrl, ClusterError> {
        self.node_url(self.coordinator.port, database)
    }

    /// The URLs of `database` on each worker, for checks of what a worker holds.
    pub fn worker_urls(&self, database: &str) -> Result<Vec<DatabaseUrl>, ClusterError> {
        self.workers
            .iter()
            .map(|w| self.node_url(w.port, database))
            .collect()
    }

    /// The coordinator's URL of `database`, then the workers'.
    pub fn node_urls(&self, database: &str) -> Result<Vec<DatabaseUrl>, ClusterError> {
        let mut urls = vec![self.coordinator_url(database)?];
        urls.extend(self.worker_urls(database)?);
        Ok(urls)
    }

    pub fn coordinator_port(&self) -> u16 {
        self.coordinator.port
    }

    pub fn worker_ports(&self) -> Vec<u16> {
        self.workers.iter().map(|w| w.port).collect()
    }

    /// The host name the nodes know each other by (`pg_dist_node.nodename`): the socket
    /// directory.
    pub fn node_host(&self) -> String {
        self.sockets.display().to_string()
    }

    pub fn settings(&self) -> CitusSettings {
        self.settings
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.bins
    }

    /// The temporary folder holding every node's data directory and log, and the sockets.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `psql` on `url` as its user, running `commands` one by one (each its own transaction,
    /// as `CREATE DATABASE` needs), stopping at the first error.
    fn psql(&self, url: &DatabaseUrl, commands: &[&str]) -> Command {
        let mut psql = Command::new(self.bins.tool("psql"));
        psql.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["--host", url.host(), "--port", &url.port().to_string()])
            .args(["--username", url.user(), "--dbname", url.database()])
            .env("PGPASSWORD", url.password().expose_secret())
            .env("PGCONNECT_TIMEOUT", "10");
        for command in commands {
            psql.args(["--command", command]);
        }
        psql
    }
}

impl Drop for CitusCluster {
    fn drop(&mut self) {
        let servers = std::iter::once(&self.coordinator)
            .chain(&self.workers)
            .map(|node| node.server.clone())
            .collect();
        in_parallel(servers, |server| server.stop("immediate"));
        let _ = fs::remove_dir_all(&self.dir);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

impl CitusWorker {
    /// The URL of `database` on this worker, as the superuser.
    pub fn url(&self, database: &str) -> Result<DatabaseUrl, ClusterError> {
        Ok(self.url.with_database(database)?)
    }

    pub fn port(&self) -> u16 {
        self.node.port
    }

    /// The temporary folder holding this worker's data directory and log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for CitusWorker {
    fn drop(&mut self) {
        let _ = self.node.server.stop("immediate");
        let _ = fs::remove_dir_all(&self.dir);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// A new temporary folder short enough for the socket paths inside it: in the system's
/// temporary folder, or `/tmp` when that one's path is too long.
fn short_temp_dir(prefix: &str) -> Result<PathBuf, ClusterError> {
    let system = std::env::temp_dir();
    let base = match sockets_fit(&system, prefix) {
        true => system,
        false => PathBuf::from("/tmp"),
    };
    Ok(tempfile::Builder::new()
        .prefix(prefix)
        .rand_bytes(RANDOM_CHARS)
        .tempdir_in(base)
        .map_err(io_err("creating a temporary directory"))?
        .keep())
}

/// Characters of a temporary folder's name after its prefix.
const RANDOM_CHARS: usize = 6;

/// Whether sockets fit in `<base>/<prefix><random>/s/`.
fn sockets_fit(base: &Path, prefix: &str) -> bool {
    base.as_os_str().len() + 1 + prefix.len() + RANDOM_CHARS + "/s".len() + SOCKET_FILE.len()
        <= SOCKET_PATH_LIMIT
}

/// A node's folder (this process's; the data directory inside becomes the server user's).
fn node_server(bins: &PgBinaries, run_as: &RunAs, dir: &Path) -> Result<Server, ClusterError> {
    if !dir.exists() {
        fs::create_dir(dir).map_err(io_err(format!("creating {}", dir.display())))?;
    }
    run_as.keep_own(dir)?;
    Ok(Server {
        bins: bins.clone(),
        run_as: run_as.clone(),
        data: dir.join("data"),
        log: dir.join("postgres.log"),
    })
}

/// What every node's `local.conf` holds after the port (later lines win). Set commands are
/// propagated so that a tenant transaction's `SET LOCAL` of its organization reaches the
/// workers its statements run on.
fn node_conf(sockets: &Path, settings: &CitusSettings) -> String {
    let sockets = sockets.display();
    format!(
        "unix_socket_directories = '{sockets}'\n\
         unix_socket_permissions = 0700\n\
         shared_preload_libraries = 'citus'\n\
         citus.node_conninfo = 'sslmode=disable'\n\
         citus.local_hostname = '{sockets}'\n\
         citus.shard_count = {shards}\n\
         citus.max_adaptive_executor_pool_size = {pool}\n\
         citus.propagate_set_commands = 'local'\n\
         wal_level = logical\n\
         max_replication_slots = 16\n\
         max_wal_senders = 16\n\
         max_connections = {connections}\n\
         max_worker_processes = {workers}\n\
         fsync = off\n\
         full_page_writes = off\n",
        shards = settings.shard_count,
        pool = settings.executor_pool_size,
        connections = settings.max_connections,
        workers = settings.max_worker_processes,
    )
}

/// Clients over TCP with SCRAM; the nodes themselves over the socket, trusted.
const HBA: &str = "local all all trust\n\
                   local replication all trust\n\
                   host all all 127.0.0.1/32 scram-sha-256\n\
                   host all all ::1/128 scram-sha-256\n";

/// `initdb`, our configuration and `pg_hba.conf`, then a start on a free port (another one if
/// something took it in between).
fn init_and_start(
    server: Server,
    password: &SecretString,
    conf: &str,
    run_as: &RunAs,
) -> Result<Node, ClusterError> {
    let mut port = free_port()?;
    server.init(password, port, conf)?;
    replace_file(
        &server.data.join("pg_hba.conf"),
        HBA,
        0o600,
        Owner::Server(run_as),
    )?;
    let mut attempts = 0;
    while let Err(err) = server.start() {
        attempts += 1;
        if attempts == 3 {
            return Err(err);
        }
        port = free_port()?;
        server.set_port(port, conf)?;
    }
    Ok(Node { server, port })
}

/// `work` on each item in a thread of its own; the results in the items' order.
fn in_parallel<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .into_iter()
            .map(|item| scope.spawn(move || work(item)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a node thread panicked"))
            .collect()
    })
}

/// Runs every command at once; the first failure, if any.
fn parallel_ok(commands: Vec<Command>) -> Result<(), ClusterError> {
    in_parallel(commands, run_ok)
        .into_iter()
        .try_for_each(|r| r.map(drop))
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_major_version_is_read_from_pg_config() {
        assert_eq!(
            postgres_major("PostgreSQL 15.18 (Debian 15.18-0+deb12u1)"),
            Some("15")
        );
        assert_eq!(postgres_major("PostgreSQL 17beta1"), None);
        assert_eq!(postgres_major("PostgreSQL 16.2"), Some("16"));
        assert_eq!(postgres_major("postgres (PostgreSQL) 15.18"), None);
        assert_eq!(postgres_major("PostgreSQL "), None);
    }

    #[test]
    fn the_socket_folder_moves_to_tmp_when_the_temporary_folder_is_too_long() {
        // 1 + "citus-" + 6 random + "/s" + "/.s.PGSQL.65535" = 30 bytes after the base.
        let base = |len: usize| PathBuf::from(format!("/{}", "t".repeat(len - 1)));
        assert!(sockets_fit(&base(77), "citus-"));
        assert!(!sockets_fit(&base(78), "citus-"));
        assert!(sockets_fit(&base(70), "citus-worker-"));
        assert!(!sockets_fit(&base(71), "citus-worker-"));
        assert!(sockets_fit(Path::new("/tmp"), "citus-"));
    }
}
