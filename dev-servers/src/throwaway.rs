//! The tests' cluster: a temporary folder, a free port, no durability, and a watchdog.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
};

use secrecy::SecretString;

use crate::{
    ClusterError, PgBinaries, SERVER_OS_USER, SUPERUSER, free_port, io_err, random_password,
    run_as::RunAs,
    server::{Server, UNDURABLE},
};
use db_connect::config::DatabaseUrl;

/// A cluster for one test process: a temporary folder, a free port, no durability. A watchdog
/// process stops it and removes the folder once this process is gone, however it ends.
#[derive(Debug)]
pub struct ThrowawayCluster {
    dir: PathBuf,
    server: Server,
    port: u16,
    password: SecretString,
    watchdog: Child,
}

impl ThrowawayCluster {
    pub fn start() -> Result<Self, ClusterError> {
        let bins = PgBinaries::locate()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("pg-throwaway-")
            .tempdir()
            .map_err(io_err("creating a temporary directory"))?
            .keep();
        // This process's folder, which the server's user may enter but not write.
        run_as.keep_own(&dir)?;
        let server = Server {
            bins,
            run_as,
            data: dir.join("data"),
            log: dir.join("postgres.log"),
        };
        let watchdog = Self::spawn_watchdog(&server, &dir)?;
        let password = random_password();
        let mut port = free_port()?;
        server.init(&password, port, UNDURABLE)?;
        // Another process may take the port between our probe and the server's bind.
        let mut attempts = 0;
        while let Err(err) = server.start() {
            attempts += 1;
            if attempts == 3 {
                return Err(err);
            }
            port = free_port()?;
            server.set_port(port, UNDURABLE)?;
        }
        Ok(Self {
            dir,
            server,
            port,
            password,
            watchdog,
        })
    }

    pub(super) fn spawn_watchdog(server: &Server, dir: &Path) -> Result<Child, ClusterError> {
        spawn_watchdog_for(&[server], dir)
    }

    /// The URL of `database` on this cluster, as its superuser.
    pub fn url(&self, database: &str) -> Result<DatabaseUrl, ClusterError> {
        Ok(DatabaseUrl::new(
            SUPERUSER,
            self.password.clone(),
            "127.0.0.1",
            self.port,
            database,
        )?)
    }

    pub fn binaries(&self) -> &PgBinaries {
        &self.server.bins
    }

    /// The temporary folder holding the data directory and the server log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the server at once, as a crash would (`immediate` mode).
    pub fn kill(&self) -> Result<(), ClusterError> {
        self.server.stop("immediate")
    }

    /// Starts the server again on the same port after [`ThrowawayCluster::kill`].
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.server.start()
    }
}

impl Drop for ThrowawayCluster {
    fn drop(&mut self) {
        let _ = self.server.stop("immediate");
        let _ = fs::remove_dir_all(&self.dir);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// A watchdog for `servers` (sharing one binary installation and OS user): once this process is
/// gone, however it ended, it stops them all (immediate mode) and removes `dir`.
pub(crate) fn spawn_watchdog_for(servers: &[&Server], dir: &Path) -> Result<Child, ClusterError> {
    let first = servers
        .first()
        .expect("a watchdog watches at least one server");
    let stop = match first.run_as {
        RunAs::Me => String::new(),
        RunAs::ServerUser { .. } => format!("runuser -u {SERVER_OS_USER} -- "),
    };
    let script = format!(
        "pid=$1 ctl=$2 dir=$3; shift 3; \
         while kill -0 \"$pid\" 2>/dev/null; do sleep 0.2; done; \
         for data in \"$@\"; do \
             {stop}\"$ctl\" stop --pgdata \"$data\" --mode immediate --silent >/dev/null 2>&1 & \
         done; wait; rm -rf \"$dir\""
    );
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("pg-throwaway-watchdog")
        .arg(std::process::id().to_string())
        .arg(first.bins.tool("pg_ctl"))
        .arg(dir)
        .args(servers.iter().map(|server| &server.data))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(io_err("starting the cluster watchdog"))
}
