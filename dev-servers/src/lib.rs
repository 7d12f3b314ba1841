//! The PostgreSQL servers that development and the tests start, never linked by a service: a
//! cluster from the installed server binaries for when no `DATABASE_URL` is configured
//! ([`LocalCluster`] persists in a folder of the workspace, like `prisma dev`;
//! [`ThrowawayCluster`] lives in a temporary folder for one test process), and the production
//! topology as test components ([`PgBouncer`] in transaction mode, a streaming [`Replica`], a
//! [`CitusCluster`] of a coordinator and workers).
//! Each is removed by a watchdog process when the process that started it dies.
//!
//! PostgreSQL refuses to run as root, so when this process is root every server command runs as
//! the `postgres` OS user through `runuser`, on a data directory that user owns.

mod binaries;
mod citus;
mod files;
mod local;
mod pgbouncer;
mod replica;
mod run_as;
mod server;
mod throwaway;

use std::{
    fs, io,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
};

use rand::{Rng, distr::Alphanumeric};
use secrecy::SecretString;

pub use binaries::PgBinaries;
pub use citus::{CITUS_VERSION, CitusCluster, CitusSettings, CitusWorker, check_citus_installed};
pub use local::{LocalCluster, LocalClusterStart};
pub use pgbouncer::{BUILT_BINARY, PGBOUNCER_VAR, PgBouncer, PgBouncerRelease, PgBouncerSettings};
pub use replica::Replica;
pub use throwaway::ThrowawayCluster;

use db_connect::{
    Settings, Topology,
    config::{ConfigError, DatabaseUrl},
};

/// The superuser every cluster made here has; its password is random and kept beside the data.
pub const SUPERUSER: &str = "postgres";
/// The OS user that runs the server when this process is root.
pub const SERVER_OS_USER: &str = "postgres";
/// Overrides where a workspace's local cluster lives (default `<workspace>/.pgdata`).
pub const LOCAL_PG_DIR_VAR: &str = "LOCAL_PG_DIR";
/// Overrides where the server binaries are looked for.
pub const BINDIR_VAR: &str = "PG_BINDIR";

/// Every system package the tests need, in the one command README.md gives (Debian/Ubuntu).
/// Each "not found" error of a component names it.
pub const INSTALL_PREREQUISITES: &str =
    "apt-get install postgresql pgbouncer nodejs npm chromium chromium-driver openssl";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH, via `pg_config --bindir`, or under /usr/lib/postgresql/*/bin; install the prerequisites (`{INSTALL_PREREQUISITES}`; macOS: `brew install postgresql@17`), set PG_BINDIR to the folder holding initdb and pg_ctl, or set DATABASE_URL to an existing server"
    )]
    BinariesNotFound,
    #[error(
        "PG_BINDIR={0} does not hold initdb, pg_ctl and postgres; point it at the folder that does, or unset it and install the prerequisites (`{INSTALL_PREREQUISITES}`)"
    )]
    BadBindir(PathBuf),
    #[error(
        "this process runs as root and PostgreSQL refuses to; the `{SERVER_OS_USER}` OS user that should run it does not exist (create it, or run as a regular user)"
    )]
    NoServerUser,
    #[error(
        "the `{SERVER_OS_USER}` OS user, which runs the server because this process is root, cannot write to {0}; let it reach the folder (chmod o+x on each parent) or set LOCAL_PG_DIR to a folder it can use"
    )]
    Unreachable(PathBuf),
    #[error(
        "{release} was not found ({looked}); {install}, and set {var} to its binary if it is elsewhere"
    )]
    PgBouncerNotFound {
        release: String,
        var: &'static str,
        looked: String,
        install: &'static str,
    },
    #[error("PgBouncer cannot be configured so: {0}")]
    PgBouncerSetting(String),
    #[error(
        "Citus is not installed in this PostgreSQL ({missing} is missing); install Citus {CITUS_VERSION}: \
         `.ci/install-citus` builds it from ../shared/vendor, or from Citus's own packages \
         `curl https://install.citusdata.com/community/deb.sh | sudo bash && sudo apt-get install -y postgresql-{postgres_major}-citus-{CITUS_VERSION}` \
         (README, set-up)"
    )]
    CitusNotInstalled {
        missing: PathBuf,
        postgres_major: String,
    },
    #[error("{action} failed: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("the server did not start; last lines of {log}:\n{tail}")]
    StartFailed { log: PathBuf, tail: String },
    #[error(
        "the local cluster in {0} is damaged ({1}); stop it and remove the folder to start over"
    )]
    Damaged(PathBuf, String),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

pub(crate) fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}

/// `DATABASE_URL` (environment or `.env`) when set, else the running local cluster of the
/// workspace at `root` (created or started if needed).
pub fn database_url_or_local(root: &Path) -> Result<DatabaseUrl, ClusterError> {
    Ok(topology_or_local(root, &Settings::from_env()?)?.application)
}

/// The topology of `settings` when `DATABASE_URL` is set, else the running local cluster of
/// the workspace at `root` (created or started if needed), reached directly.
pub fn topology_or_local(root: &Path, settings: &Settings) -> Result<Topology, ClusterError> {
    match &settings.topology {
        Some(topology) => Ok(topology.clone()),
        None => Ok(Topology::direct(
            LocalCluster::for_workspace(root)?.ensure_running()?.url,
        )),
    }
}

/// A command as a person would type it, for error messages. Arguments never hold a secret:
/// passwords travel through files and the environment.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|part| part.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

pub(crate) fn run(mut cmd: Command) -> Result<Output, ClusterError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running `{}`", describe(&cmd))))
}

pub(crate) fn run_ok(cmd: Command) -> Result<Output, ClusterError> {
    let command = describe(&cmd);
    let output = run(cmd)?;
    if output.status.success() {
        return Ok(output);
    }
    let printed = [output.stdout.as_slice(), output.stderr.as_slice()]
        .map(String::from_utf8_lossy)
        .concat();
    Err(ClusterError::CommandFailed {
        command,
        status: output.status.to_string(),
        output: printed.trim().to_owned(),
    })
}

pub(crate) fn random_password() -> SecretString {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect::<String>()
        .into()
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> Result<u16, ClusterError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    Ok(listener
        .local_addr()
        .map_err(io_err("finding a free port"))?
        .port())
}

pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub(crate) fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_else(|err| format!("(log unreadable: {err})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_install_command_is_the_one_the_readme_gives() {
        let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
        let readme = fs::read_to_string(&readme).unwrap();
        assert!(
            readme.contains(INSTALL_PREREQUISITES),
            "README.md does not give `{INSTALL_PREREQUISITES}`; keep the two the same"
        );
    }

    #[test]
    fn server_binaries_not_found_name_the_install_command() {
        let empty = tempfile::tempdir().unwrap();
        let err = PgBinaries::search([empty.path().to_path_buf()]).unwrap_err();
        assert!(err.to_string().contains(INSTALL_PREREQUISITES), "{err}");
        let err = ClusterError::BadBindir(empty.path().to_path_buf());
        assert!(err.to_string().contains(INSTALL_PREREQUISITES), "{err}");
    }
}
