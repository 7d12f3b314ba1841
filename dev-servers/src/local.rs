//! The persistent cluster of a workspace (`.pgdata/`), like `prisma dev`.

use std::{
    fs,
    path::{Path, PathBuf},
};

use secrecy::{ExposeSecret, SecretString};

use crate::{
    ClusterError, LOCAL_PG_DIR_VAR, PgBinaries, SUPERUSER,
    files::{Owner, open_lock, read_no_follow, replace_file},
    free_port, io_err, port_is_free, random_password,
    run_as::RunAs,
    server::Server,
};
use db_connect::config::DatabaseUrl;

/// The persistent cluster of a workspace: created on first use in a git-ignored folder, started
/// when stopped, reused when running. Its superuser password is random and kept in that folder,
/// which (with the port, the lock and the `ready` marker) stays this process's user's: as root,
/// only `data/` and the log belong to `postgres`.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    dir: PathBuf,
    server: Server,
}

/// What [`LocalCluster::ensure_running`] found and did.
#[derive(Debug)]
pub struct LocalClusterStart {
    pub url: DatabaseUrl,
    pub created: bool,
    pub started: bool,
}

impl LocalCluster {
    /// The database created in a new local cluster for the application's tables.
    pub const DATABASE: &str = "app";
    /// The port a new local cluster takes when it is free (else any free port).
    pub const PREFERRED_PORT: u16 = 55432;

    /// The cluster of the workspace at `root`: `LOCAL_PG_DIR` when set, else `<root>/.pgdata`.
    pub fn for_workspace(root: &Path) -> Result<Self, ClusterError> {
        let dir = std::env::var_os(LOCAL_PG_DIR_VAR)
            .filter(|dir| !dir.is_empty())
            .map_or_else(|| root.join(".pgdata"), PathBuf::from);
        Self::new(dir)
    }

    /// The cluster kept in `dir` (e.g. `<workspace>/.pgdata`); touches nothing until used.
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, ClusterError> {
        let dir = dir.into();
        let server = Server {
            bins: PgBinaries::locate()?,
            run_as: RunAs::detect()?,
            data: dir.join("data"),
            log: dir.join("postgres.log"),
        };
        Ok(Self { dir, server })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The command that stops this cluster, for printing.
    pub fn stop_hint(&self) -> String {
        format!(
            "cargo run -p migration -- local stop   (or: {} stop -D {})",
            self.server.bins.tool("pg_ctl").display(),
            self.server.data.display()
        )
    }

    /// Creates the cluster if needed, starts it if stopped, and returns the URL of its
    /// application database. Serialised by a file lock, so concurrent callers cannot race.
    pub fn ensure_running(&self) -> Result<LocalClusterStart, ClusterError> {
        fs::create_dir_all(&self.dir)
            .map_err(io_err(format!("creating {}", self.dir.display())))?;
        self.server.run_as.keep_own(&self.dir)?;
        let lock_path = self.dir.join(".lock");
        let lock = open_lock(&lock_path)?;
        lock.lock()
            .map_err(io_err(format!("locking {}", lock_path.display())))?;

        // `ready` is written last: a cluster whose creation was interrupted is made anew.
        let ready = self.dir.join("ready");
        let created = !ready.is_file();
        if created {
            self.create()?;
            replace_file(&ready, "", 0o644, Owner::Me)?;
        }
        let url = self.url()?;
        let started = !self.server.is_running()?;
        if started {
            self.server.start()?;
        }
        Ok(LocalClusterStart {
            url,
            created,
            started,
        })
    }

    fn create(&self) -> Result<(), ClusterError> {
        if self.server.data.exists() {
            if self.server.is_running()? {
                self.server.stop("immediate")?;
            }
            fs::remove_dir_all(&self.server.data).map_err(io_err(format!(
                "removing half-made {}",
                self.server.data.display()
            )))?;
        }
        let password = random_password();
        let port = if port_is_free(Self::PREFERRED_PORT) {
            Self::PREFERRED_PORT
        } else {
            free_port()?
        };
        self.server.init(&password, port, "")?;
        replace_file(
            &self.dir.join("password"),
            password.expose_secret(),
            0o600,
            Owner::Me,
        )?;
        replace_file(&self.dir.join("port"), &port.to_string(), 0o644, Owner::Me)?;
        self.server.start()?;
        self.server.create_database(&self.url()?)
    }

    /// The URL of the application database, from the files the cluster keeps.
    pub fn url(&self) -> Result<DatabaseUrl, ClusterError> {
        let read = |name: &str| {
            read_no_follow(&self.dir.join(name))
                .map(|s| s.trim().to_owned())
                .map_err(|err| ClusterError::Damaged(self.dir.clone(), format!("{name}: {err}")))
        };
        let port = read("port")?.parse().map_err(|_| {
            ClusterError::Damaged(self.dir.clone(), "port file is not a number".into())
        })?;
        let password = SecretString::from(read("password")?);
        Ok(DatabaseUrl::new(
            SUPERUSER,
            password,
            "127.0.0.1",
            port,
            Self::DATABASE,
        )?)
    }

    /// Whether the cluster exists and whether it is running.
    pub fn status(&self) -> Result<(bool, bool), ClusterError> {
        let exists = self.server.data.join("PG_VERSION").is_file();
        Ok((exists, exists && self.server.is_running()?))
    }

    /// Stops the server (fast shutdown); `Ok(false)` when it was not running.
    pub fn stop(&self) -> Result<bool, ClusterError> {
        if !self.status()?.1 {
            return Ok(false);
        }
        self.server.stop("fast")?;
        Ok(true)
    }
}
