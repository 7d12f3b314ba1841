//! A real PgBouncer in transaction mode in front of a cluster, for tests and the bench: its own
//! configuration in a temporary folder, SCRAM authentication, a free port, a small server pool,
//! and a watchdog that stops it and removes the folder once this process is gone.

use std::{
    ffi::OsString,
    fs,
    net::TcpStream,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use secrecy::ExposeSecret;

use crate::{
    ClusterError, PgBinaries,
    files::{Owner, replace_file},
    free_port, io_err, log_tail,
    run_as::RunAs,
    run_ok,
};
use db_connect::config::DatabaseUrl;

/// Where Debian (and most distributions) install PgBouncer.
const DEFAULT_BINARY: &str = "/usr/sbin/pgbouncer";
/// Overrides which PgBouncer binary runs (e.g. one built from source).
pub const PGBOUNCER_VAR: &str = "PGBOUNCER";

/// How big the pools are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgBouncerSettings {
    /// Server connections per database and user (`default_pool_size`).
    pub server_pool_size: u32,
    /// Client connections PgBouncer accepts in all (`max_client_conn`).
    pub max_client_connections: u32,
}

impl Default for PgBouncerSettings {
    /// A pool small enough that many clients share few server connections.
    fn default() -> Self {
        Self {
            server_pool_size: 5,
            max_client_connections: 1000,
        }
    }
}

/// A PgBouncer process in `pool_mode = transaction` in front of one PostgreSQL server, reached
/// with the same user and password as the server (SCRAM pass-through), for every database of
/// that server (a wildcard entry).
#[derive(Debug)]
pub struct PgBouncer {
    dir: PathBuf,
    port: u16,
    upstream: DatabaseUrl,
    settings: PgBouncerSettings,
    process: Child,
    watchdog: Child,
}

impl PgBouncer {
    /// Starts PgBouncer in front of the server `upstream` (a superuser URL of it: its SCRAM
    /// secret is read from `pg_authid` for PgBouncer's auth file). `bins` provides `psql`.
    pub fn start(
        upstream: &DatabaseUrl,
        bins: &PgBinaries,
        settings: PgBouncerSettings,
    ) -> Result<Self, ClusterError> {
        let binary = locate()?;
        let run_as = RunAs::detect()?;
        let dir = run_as.temp_dir("pgbouncer-")?;
        let auth_file = dir.join("userlist.txt");
        let secret = scram_secret(upstream, bins)?;
        replace_file(
            &auth_file,
            &format!(
                "\"{}\" \"{secret}\"\n",
                upstream.user().replace('"', "\"\"")
            ),
            0o600,
            Owner::Server(&run_as),
        )?;

        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port()?;
            let config = dir.join("pgbouncer.ini");
            replace_file(
                &config,
                &config_text(upstream, port, &dir, settings),
                0o600,
                Owner::Server(&run_as),
            )?;
            let mut process = spawn(&binary, &config, &run_as, &dir)?;
            let watchdog = spawn_watchdog(process.id(), &dir)?;
            match wait_until_listening(&mut process, port, &dir) {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        port,
                        upstream: upstream.clone(),
                        settings,
                        process,
                        watchdog,
                    });
                }
                // Another process may take the port between our probe and PgBouncer's bind.
                Err(err) => {
                    stop_child(&mut process);
                    stop_child(&mut { watchdog });
                    if attempt == 3 {
                        let _ = fs::remove_dir_all(&dir);
                        return Err(err);
                    }
                }
            }
        }
    }

    /// The URL of `database` through PgBouncer, as the upstream user, marked `pgbouncer=true`.
    pub fn url(&self, database: &str) -> Result<DatabaseUrl, ClusterError> {
        Ok(self
            .upstream
            .with_database(database)?
            .with_host_port("127.0.0.1", self.port)
            .with_pooler_flag(Some(true)))
    }

    /// The URL of PgBouncer's admin console (`SHOW POOLS`, `SHOW SERVERS`; simple queries only).
    pub fn admin_url(&self) -> Result<DatabaseUrl, ClusterError> {
        self.url("pgbouncer")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn settings(&self) -> PgBouncerSettings {
        self.settings
    }

    /// The temporary folder holding the configuration, the auth file and the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The last lines of PgBouncer's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.dir.join("pgbouncer.log"))
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        stop_child(&mut self.process);
        let _ = fs::remove_dir_all(&self.dir);
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
    }
}

/// `PGBOUNCER`, else Debian's `/usr/sbin/pgbouncer`, else `pgbouncer` on `PATH`.
fn locate() -> Result<PathBuf, ClusterError> {
    locate_in(
        std::env::var_os(PGBOUNCER_VAR),
        std::env::var_os("PATH"),
        Path::new(DEFAULT_BINARY),
    )
}

/// [`locate`] with the variables' values and the default path given.
fn locate_in(
    given: Option<OsString>,
    path: Option<OsString>,
    default: &Path,
) -> Result<PathBuf, ClusterError> {
    if let Some(given) = given.filter(|b| !b.is_empty()) {
        let given = PathBuf::from(given);
        return match given.is_file() {
            true => Ok(given),
            false => Err(ClusterError::PgBouncerNotFound(given)),
        };
    }
    let on_path = path
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("pgbouncer"));
    std::iter::once(default.to_path_buf())
        .chain(on_path)
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| ClusterError::PgBouncerNotFound(default.to_path_buf()))
}

/// The SCRAM secret PostgreSQL keeps for the URL's user, so the auth file holds no password.
fn scram_secret(upstream: &DatabaseUrl, bins: &PgBinaries) -> Result<String, ClusterError> {
    let mut psql = Command::new(bins.tool("psql"));
    psql.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["--host", upstream.host()])
        .args(["--port", &upstream.port().to_string()])
        .args([
            "--username",
            upstream.user(),
            "--dbname",
            upstream.database(),
        ])
        .args([
            "--command",
            "SELECT rolpassword FROM pg_authid WHERE rolname = current_user",
        ])
        .env("PGPASSWORD", upstream.password().expose_secret())
        .env("PGCONNECT_TIMEOUT", "10");
    let output = run_ok(psql)?;
    let secret = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !secret.starts_with("SCRAM-SHA-256$") {
        return Err(ClusterError::Damaged(
            PathBuf::from("pg_authid"),
            format!(
                "the password of {} is not a SCRAM secret; PgBouncer's auth file needs one",
                upstream.user()
            ),
        ));
    }
    Ok(secret)
}

/// `pool_mode = transaction` with nothing that would hide what a client does wrong:
/// `ignore_startup_parameters` stays empty (a client must not send `extra_float_digits`), and
/// the server reset query is not forced after every transaction (managed poolers do not let
/// users set it either).
fn config_text(
    upstream: &DatabaseUrl,
    port: u16,
    dir: &Path,
    settings: PgBouncerSettings,
) -> String {
    format!(
        "[databases]\n\
         * = host={host} port={upstream_port}\n\
         \n\
         [pgbouncer]\n\
         listen_addr = 127.0.0.1\n\
         listen_port = {port}\n\
         unix_socket_dir =\n\
         auth_type = scram-sha-256\n\
         auth_file = {auth}\n\
         admin_users = {user}\n\
         stats_users = {user}\n\
         pool_mode = transaction\n\
         default_pool_size = {pool}\n\
         min_pool_size = 0\n\
         reserve_pool_size = 0\n\
         max_client_conn = {clients}\n\
         max_db_connections = 0\n\
         server_round_robin = 0\n\
         logfile = {log}\n\
         log_connections = 0\n\
         log_disconnections = 0\n",
        host = upstream.host(),
        upstream_port = upstream.port(),
        auth = dir.join("userlist.txt").display(),
        user = upstream.user(),
        pool = settings.server_pool_size,
        clients = settings.max_client_connections,
        log = dir.join("pgbouncer.log").display(),
    )
}

/// PgBouncer in the foreground (so this process owns it), as the server's OS user when root
/// (PgBouncer refuses root), in its own process group so a terminal's Ctrl-C does not reach it.
fn spawn(binary: &Path, config: &Path, run_as: &RunAs, dir: &Path) -> Result<Child, ClusterError> {
    let mut cmd = Command::new(binary);
    cmd.arg(config)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    if let RunAs::ServerUser { uid, gid } = run_as {
        cmd.uid(*uid).gid(*gid);
    }
    cmd.spawn()
        .map_err(io_err(format!("starting {}", binary.display())))
}

/// Kills `pid` and removes `dir` once this process is gone, however it ends.
fn spawn_watchdog(pid: u32, dir: &Path) -> Result<Child, ClusterError> {
    Command::new("sh")
        .arg("-c")
        .arg(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.2; done; \
             kill \"$2\" 2>/dev/null; sleep 0.5; kill -9 \"$2\" 2>/dev/null; rm -rf \"$3\"",
        )
        .arg("pgbouncer-watchdog")
        .arg(std::process::id().to_string())
        .arg(pid.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(io_err("starting the PgBouncer watchdog"))
}

fn wait_until_listening(process: &mut Child, port: u16, dir: &Path) -> Result<(), ClusterError> {
    let log = dir.join("pgbouncer.log");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        let exited = process
            .try_wait()
            .map_err(io_err("checking on PgBouncer"))?
            .is_some();
        if exited || Instant::now() > deadline {
            return Err(ClusterError::StartFailed {
                tail: log_tail(&log),
                log,
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM (PgBouncer closes its connections and exits), then waits; SIGKILL if it lingers.
fn stop_child(child: &mut Child) {
    let pid = child.id() as i32;
    // SAFETY: signalling a child this process spawned and has not reaped yet.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::INSTALL_PREREQUISITES;

    #[test]
    fn a_missing_pgbouncer_names_the_install_command() {
        let empty = tempfile::tempdir().unwrap();
        let nowhere = empty.path().join("pgbouncer");
        for err in [
            locate_in(Some(nowhere.clone().into()), None, &nowhere),
            locate_in(None, Some(empty.path().into()), &nowhere),
        ] {
            let err = err.unwrap_err().to_string();
            assert!(err.contains(INSTALL_PREREQUISITES), "{err}");
            assert!(err.contains(&nowhere.display().to_string()), "{err}");
        }
        let found = tempfile::NamedTempFile::new_in(empty.path()).unwrap();
        assert_eq!(
            locate_in(Some(found.path().into()), None, &nowhere).unwrap(),
            found.path()
        );
    }
}
