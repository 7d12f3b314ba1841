//! A real PgBouncer in transaction mode in front of a cluster, for tests and the bench: its own
//! configuration in a temporary folder, SCRAM authentication, a free port, a small server pool,
//! and a watchdog that stops it and removes the folder once this process is gone.
//!
//! Two releases are test components ([`PgBouncerRelease`]): Debian 12's 1.18, which passes named
//! prepared statements through to whichever server session it picks, and 1.25 (built from
//! `../shared/vendor` by `.ci/build-pgbouncer`), which tracks them (`max_prepared_statements`).
//! Each is found by its own variable or in its default places, and told apart by `--version`.

use std::{
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
/// Where `.ci/build-pgbouncer` puts the 1.25.2 it builds from `../shared/vendor`.
pub const BUILT_BINARY: &str = "/opt/pgbouncer-1.25.2/pgbouncer";
/// A PgBouncer binary to use for whichever release its `--version` says it is.
pub const PGBOUNCER_VAR: &str = "PGBOUNCER";

/// Which PgBouncer: the two the workspace tests through, each standing for the releases that
/// behave like it towards prepared statements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PgBouncerRelease {
    /// Debian 12's 1.18 (or any release before 1.21): a named prepared statement goes to the
    /// server session the client happens to have, under the client's name.
    #[default]
    V1_18,
    /// 1.25.2 (or any release from 1.21): tracks named prepared statements per client and
    /// prepares them, renamed, on whichever server session runs them (`max_prepared_statements`,
    /// 200 by default from 1.24).
    V1_25,
}

impl PgBouncerRelease {
    /// The variable naming this release's binary.
    pub fn var(self) -> &'static str {
        match self {
            Self::V1_18 => "PGBOUNCER_1_18",
            Self::V1_25 => "PGBOUNCER_1_25",
        }
    }

    /// Whether PgBouncer `major.minor` behaves as this release does.
    fn covers(self, version: (u32, u32)) -> bool {
        match self {
            Self::V1_18 => version < (1, 21),
            Self::V1_25 => version >= (1, 21),
        }
    }

    /// Where it is looked for when its variable is unset (then `PGBOUNCER`, then `PATH`).
    fn default_places(self) -> &'static [&'static str] {
        match self {
            Self::V1_18 => &[DEFAULT_BINARY],
            Self::V1_25 => &[BUILT_BINARY, "/usr/local/bin/pgbouncer", DEFAULT_BINARY],
        }
    }

    /// The command that installs it.
    fn install(self) -> &'static str {
        match self {
            Self::V1_18 => "install Debian 12's PgBouncer 1.18 with `apt-get install pgbouncer`",
            Self::V1_25 => {
                "build PgBouncer 1.25.2 from ../shared/vendor with `bash .ci/build-pgbouncer` (into /opt/pgbouncer-1.25.2), \
                 or install PgBouncer 1.21 or later from PgBouncer's own packages (the PostgreSQL project's apt repository)"
            }
        }
    }
}

impl std::fmt::Display for PgBouncerRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::V1_18 => "PgBouncer 1.18 (before 1.21)",
            Self::V1_25 => "PgBouncer 1.25 (1.21 or later)",
        })
    }
}

/// How big the pools are, and which PgBouncer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgBouncerSettings {
    /// Server connections per database and user (`default_pool_size`).
    pub server_pool_size: u32,
    /// Client connections PgBouncer accepts in all (`max_client_conn`).
    pub max_client_connections: u32,
    pub release: PgBouncerRelease,
    /// `max_prepared_statements` (1.21+ only); `None` leaves the release's default.
    pub max_prepared_statements: Option<u32>,
}

impl Default for PgBouncerSettings {
    /// A pool small enough that many clients share few server connections, on Debian's 1.18.
    fn default() -> Self {
        Self {
            server_pool_size: 5,
            max_client_connections: 1000,
            release: PgBouncerRelease::V1_18,
            max_prepared_statements: None,
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
    version: String,
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
        let (binary, version) = locate(settings.release)?;
        if settings.max_prepared_statements.is_some() && settings.release == PgBouncerRelease::V1_18
        {
            return Err(ClusterError::PgBouncerSetting(format!(
                "max_prepared_statements needs PgBouncer 1.21 or later, not {version}"
            )));
        }
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
            match wait_until_listening(&mut process, port, &dir)
                .and_then(|()| first_login(upstream, port, bins))
            {
                Ok(()) => {
                    return Ok(Self {
                        dir,
                        port,
                        upstream: upstream.clone(),
                        settings,
                        version,
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

    /// What the binary's `--version` says, e.g. `PgBouncer 1.25.2`.
    pub fn version(&self) -> &str {
        &self.version
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

/// The binary of `release` and its version (`PgBouncer 1.25.2`): the release's own variable
/// (which must name that release), else the first of `PGBOUNCER`, the release's default places
/// and `pgbouncer` on `PATH` whose `--version` is that release.
fn locate(release: PgBouncerRelease) -> Result<(PathBuf, String), ClusterError> {
    find(release, |var| std::env::var_os(var))
}

/// [`locate`] with the environment read through `env`.
fn find(
    release: PgBouncerRelease,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(PathBuf, String), ClusterError> {
    if let Some(given) = env(release.var()).filter(|b| !b.is_empty()) {
        let given = PathBuf::from(given);
        let named = format!("{}={}", release.var(), given.display());
        return match version_of(&given) {
            Some(version) if is_release(&version, release) => Ok((given, version)),
            Some(version) => Err(not_found(release, format!("{named} is {version}"))),
            None => Err(not_found(
                release,
                format!("{named} does not run as PgBouncer"),
            )),
        };
    }
    let from_var = env(PGBOUNCER_VAR)
        .filter(|b| !b.is_empty())
        .map(PathBuf::from);
    let on_path = env("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|dir| dir.join("pgbouncer"));
    let candidates: Vec<PathBuf> = from_var
        .into_iter()
        .chain(release.default_places().iter().map(PathBuf::from))
        .chain(on_path)
        .collect();
    candidates
        .iter()
        .filter_map(|candidate| Some((candidate.clone(), version_of(candidate)?)))
        .find(|(_, version)| is_release(version, release))
        .ok_or_else(|| {
            let looked: Vec<_> = candidates.iter().map(|c| c.display().to_string()).collect();
            not_found(
                release,
                format!("{} unset; looked at {}", release.var(), looked.join(", ")),
            )
        })
}

fn not_found(release: PgBouncerRelease, looked: String) -> ClusterError {
    ClusterError::PgBouncerNotFound {
        release: release.to_string(),
        var: release.var(),
        looked,
        install: release.install(),
    }
}

fn is_release(version: &str, release: PgBouncerRelease) -> bool {
    parse_version(version).is_some_and(|v| release.covers(v))
}

/// The first line of `binary --version` (`PgBouncer 1.18.0`), if it runs and says so.
fn version_of(binary: &Path) -> Option<String> {
    let output = Command::new(binary)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next()?.trim();
    (output.status.success() && first.starts_with("PgBouncer ")).then(|| first.to_owned())
}

/// `(major, minor)` of `PgBouncer 1.25.2`.
fn parse_version(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.strip_prefix("PgBouncer ")?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// One client logs in and runs a statement before any other, on the upstream's own database.
/// PgBouncer keeps the SCRAM keys of a user's client login to log in to the server as that user,
/// but 1.25.2 saves them only from the first login it verifies against the auth file's secret
/// (later ones reuse a cached verifier and save nothing): had that first login been to the
/// admin console, or lost a race with a second one, no server login as the user would ever
/// succeed ("server login failed: wrong password type").
fn first_login(upstream: &DatabaseUrl, port: u16, bins: &PgBinaries) -> Result<(), ClusterError> {
    let mut psql = Command::new(bins.tool("psql"));
    psql.args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args([
            "--username",
            upstream.user(),
            "--dbname",
            upstream.database(),
        ])
        .args(["--command", "SELECT 1"])
        .env("PGPASSWORD", upstream.password().expose_secret())
        .env("PGCONNECT_TIMEOUT", "10");
    run_ok(psql).map(drop)
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
         log_disconnections = 0\n\
         {prepared}",
        host = upstream.host(),
        upstream_port = upstream.port(),
        auth = dir.join("userlist.txt").display(),
        user = upstream.user(),
        pool = settings.server_pool_size,
        clients = settings.max_client_connections,
        log = dir.join("pgbouncer.log").display(),
        prepared = settings
            .max_prepared_statements
            .map(|n| format!("max_prepared_statements = {n}\n"))
            .unwrap_or_default(),
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
    use std::{ffi::OsString, os::unix::fs::PermissionsExt};

    use super::*;

    /// A stand-in binary in `dir` that prints `version` as PgBouncer's `--version` does.
    fn fake(dir: &Path, name: &str, version: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(
            &path,
            format!("#!/bin/sh\necho '{version}'\necho 'libevent 2.1.12'\n"),
        )
        .unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn versions_read_as_their_release() {
        assert_eq!(parse_version("PgBouncer 1.18.0"), Some((1, 18)));
        assert_eq!(parse_version("PgBouncer 1.25.2"), Some((1, 25)));
        assert_eq!(parse_version("PgBouncer 2.0"), Some((2, 0)));
        assert_eq!(parse_version("pgbouncer 1.18.0"), None);
        assert_eq!(parse_version("PgBouncer x.1"), None);
        assert_eq!(parse_version("PgBouncer 1"), None);
        for (version, old) in [
            ((1, 18), true),
            ((1, 20), true),
            ((1, 21), false),
            ((1, 25), false),
        ] {
            assert_eq!(PgBouncerRelease::V1_18.covers(version), old, "{version:?}");
            assert_eq!(PgBouncerRelease::V1_25.covers(version), !old, "{version:?}");
        }
        assert_eq!(PgBouncerRelease::default(), PgBouncerRelease::V1_18);
        assert!(
            PgBouncerRelease::V1_25
                .to_string()
                .contains("1.21 or later")
        );
        assert!(PgBouncerRelease::V1_18.to_string().contains("before 1.21"));
    }

    #[test]
    fn each_release_is_found_by_its_version_wherever_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let old = fake(dir.path(), "old", "PgBouncer 1.18.0");
        let new = fake(dir.path(), "new", "PgBouncer 1.25.2");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fake(&bin, "pgbouncer", "PgBouncer 1.23.1");
        let env = |pairs: Vec<(&'static str, OsString)>| {
            move |var: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == var)
                    .map(|(_, v)| v.clone())
            }
        };
        // The release's own variable wins, and must be that release.
        let found = find(
            PgBouncerRelease::V1_25,
            env(vec![("PGBOUNCER_1_25", new.clone().into())]),
        );
        assert_eq!(found.unwrap(), (new.clone(), "PgBouncer 1.25.2".to_owned()));
        let wrong = find(
            PgBouncerRelease::V1_25,
            env(vec![("PGBOUNCER_1_25", old.clone().into())]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            wrong.contains("is PgBouncer 1.18.0") && wrong.contains("bash .ci/build-pgbouncer"),
            "{wrong}"
        );
        let missing = dir.path().join("nothing");
        let broken = find(
            PgBouncerRelease::V1_18,
            env(vec![("PGBOUNCER_1_18", missing.into())]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            broken.contains("does not run as PgBouncer")
                && broken.contains("apt-get install pgbouncer"),
            "{broken}"
        );
        // PGBOUNCER serves the release it is, and PATH the rest.
        let pgbouncer = env(vec![
            ("PGBOUNCER", old.clone().into()),
            ("PATH", bin.clone().into()),
        ]);
        assert_eq!(find(PgBouncerRelease::V1_18, &pgbouncer).unwrap().0, old);
        let on_path = find(
            PgBouncerRelease::V1_25,
            env(vec![("PATH", bin.clone().into())]),
        );
        if !Path::new(BUILT_BINARY).is_file() && !Path::new("/usr/local/bin/pgbouncer").is_file() {
            assert_eq!(on_path.unwrap().1, "PgBouncer 1.23.1");
        }
    }

    #[test]
    fn a_missing_release_names_where_it_looked_and_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        fake(dir.path(), "pgbouncer", "PgBouncer 1.18.0");
        let path: OsString = dir.path().into();
        let err = find(PgBouncerRelease::V1_25, |var| {
            (var == "PATH").then(|| path.clone())
        });
        if let Err(err) = err {
            let text = err.to_string();
            for part in [
                "PgBouncer 1.25",
                "PGBOUNCER_1_25 unset",
                "bash .ci/build-pgbouncer",
                "set PGBOUNCER_1_25",
            ] {
                assert!(text.contains(part), "{part}: {text}");
            }
        } else {
            // This machine has a 1.21+ in a default place; it must really be one.
            assert!(is_release(&err.unwrap().1, PgBouncerRelease::V1_25));
        }
    }

    #[test]
    fn the_configuration_sets_max_prepared_statements_only_when_asked() {
        let upstream = DatabaseUrl::parse("postgresql://app:pw@127.0.0.1:5432/app").unwrap();
        let settings = PgBouncerSettings::default();
        let plain = config_text(&upstream, 6432, Path::new("/tmp/b"), settings);
        assert!(!plain.contains("max_prepared_statements"), "{plain}");
        assert!(
            plain.contains("pool_mode = transaction") && plain.contains("default_pool_size = 5")
        );
        let asked = PgBouncerSettings {
            max_prepared_statements: Some(0),
            release: PgBouncerRelease::V1_25,
            ..settings
        };
        let text = config_text(&upstream, 6432, Path::new("/tmp/b"), asked);
        assert!(text.ends_with("max_prepared_statements = 0\n"), "{text}");
    }
}
