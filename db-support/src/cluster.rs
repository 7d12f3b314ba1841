//! A PostgreSQL cluster started from the installed server binaries, for when no `DATABASE_URL`
//! is configured: [`LocalCluster`] persists in a folder of the workspace (like `prisma dev`),
//! [`ThrowawayCluster`] lives in a temporary folder for one test process.
//!
//! PostgreSQL refuses to run as root, so when this process is root every server command runs as
//! the `postgres` OS user through `runuser`, on a data directory that user owns.

use std::{
    ffi::{CString, OsStr},
    fs::{self, File, OpenOptions},
    io::{self, Write},
    net::TcpListener,
    os::unix::{fs::OpenOptionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

use rand::{Rng, distr::Alphanumeric};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{ConfigError, DatabaseUrl};

/// The superuser every cluster made here has; its password is random and kept beside the data.
pub const SUPERUSER: &str = "postgres";
/// The OS user that runs the server when this process is root.
pub const SERVER_OS_USER: &str = "postgres";
/// Overrides where a workspace's local cluster lives (default `<workspace>/.pgdata`).
pub const LOCAL_PG_DIR_VAR: &str = "LOCAL_PG_DIR";
/// Overrides where the server binaries are looked for.
pub const BINDIR_VAR: &str = "PG_BINDIR";

const INSTALL_HINT: &str = "install them with `apt-get install postgresql` (Debian/Ubuntu), \
`dnf install postgresql-server` (Fedora), or `brew install postgresql@17` (macOS), \
set PG_BINDIR to the folder holding initdb and pg_ctl, or set DATABASE_URL to an existing server";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH, via `pg_config --bindir`, or under /usr/lib/postgresql/*/bin; {INSTALL_HINT}"
    )]
    BinariesNotFound,
    #[error("PG_BINDIR={0} does not hold initdb, pg_ctl and postgres")]
    BadBindir(PathBuf),
    #[error(
        "this process runs as root and PostgreSQL refuses to; the `{SERVER_OS_USER}` OS user that should run it does not exist (create it, or run as a regular user)"
    )]
    NoServerUser,
    #[error(
        "the `{SERVER_OS_USER}` OS user, which runs the server because this process is root, cannot write to {0}; let it reach the folder (chmod o+x on each parent) or set LOCAL_PG_DIR to a folder it can use"
    )]
    Unreachable(PathBuf),
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

fn io_err(action: impl Into<String>) -> impl FnOnce(io::Error) -> ClusterError {
    let action = action.into();
    move |source| ClusterError::Io { action, source }
}

/// The folder holding `initdb`, `pg_ctl`, `postgres` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    bindir: PathBuf,
}

impl PgBinaries {
    /// Finds the server binaries: `PG_BINDIR`, then `PATH`, then `pg_config --bindir`, then the
    /// newest `/usr/lib/postgresql/*/bin`.
    pub fn locate() -> Result<Self, ClusterError> {
        if let Some(dir) = std::env::var_os(BINDIR_VAR).filter(|d| !d.is_empty()) {
            let dir = PathBuf::from(dir);
            return Self::in_dir(&dir).ok_or(ClusterError::BadBindir(dir));
        }
        let on_path = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default();
        let from_pg_config = Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        let mut debian: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|entry| {
                let version = entry.file_name().to_str()?.parse().ok()?;
                Some((version, entry.path().join("bin")))
            })
            .collect();
        debian.sort_by_key(|(version, _)| std::cmp::Reverse(*version));
        Self::search(
            on_path
                .into_iter()
                .chain(from_pg_config)
                .chain(debian.into_iter().map(|(_, dir)| dir)),
        )
    }

    /// The first of `candidates` that holds a server installation.
    pub fn search(candidates: impl IntoIterator<Item = PathBuf>) -> Result<Self, ClusterError> {
        candidates
            .into_iter()
            .find_map(|dir| Self::in_dir(&dir))
            .ok_or(ClusterError::BinariesNotFound)
    }

    /// The installation `dir` belongs to. A PATH entry may hold only symlinks to a few tools,
    /// so the folder is the one `pg_ctl` really lives in, where its siblings (createdb) are.
    fn in_dir(dir: &Path) -> Option<Self> {
        let bindir = fs::canonicalize(dir.join("pg_ctl"))
            .ok()?
            .parent()?
            .to_path_buf();
        ["initdb", "pg_ctl", "postgres", "createdb"]
            .iter()
            .all(|tool| bindir.join(tool).is_file())
            .then_some(Self { bindir })
    }

    pub fn bindir(&self) -> &Path {
        &self.bindir
    }

    /// The path of one tool of this installation (`pg_dump`, `psql`, ...).
    pub fn tool(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// `DATABASE_URL` (environment or `.env`) when set, else the running local cluster of the
/// workspace at `root` (created or started if needed).
pub fn database_url_or_local(root: &Path) -> Result<DatabaseUrl, ClusterError> {
    match DatabaseUrl::from_env()? {
        Some(url) => Ok(url),
        None => Ok(LocalCluster::for_workspace(root)?.ensure_running()?.url),
    }
}

/// Who runs server commands: this process's user, or `postgres` when this process is root.
#[derive(Debug, Clone)]
enum RunAs {
    Me,
    ServerUser { uid: u32, gid: u32 },
}

impl RunAs {
    fn detect() -> Result<Self, ClusterError> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Self::Me);
        }
        let name = CString::new(SERVER_OS_USER).expect("no NUL in a constant");
        // SAFETY: `name` is a valid C string; the returned record is read before any other
        // getpw* call could overwrite it.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            return Err(ClusterError::NoServerUser);
        }
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(Self::ServerUser { uid, gid })
    }

    fn command(&self, program: impl AsRef<OsStr>) -> Command {
        match self {
            Self::Me => Command::new(program),
            Self::ServerUser { .. } => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", SERVER_OS_USER, "--"]).arg(program);
                cmd
            }
        }
    }

    /// Fails with [`ClusterError::Unreachable`] unless the server's user can write in `dir`.
    fn check_reach(&self, dir: &Path) -> Result<(), ClusterError> {
        if let Self::Me = self {
            return Ok(());
        }
        let mut probe = self.command("test");
        probe.arg("-w").arg(dir).arg("-a").arg("-x").arg(dir);
        match run(probe)?.status.success() {
            true => Ok(()),
            false => Err(ClusterError::Unreachable(dir.to_path_buf())),
        }
    }

    /// Hands a path this process created to the user that runs the server.
    fn give(&self, path: &Path) -> Result<(), ClusterError> {
        match self {
            Self::Me => Ok(()),
            Self::ServerUser { uid, gid } => std::os::unix::fs::chown(path, Some(*uid), Some(*gid))
                .map_err(io_err(format!(
                    "handing {} to {SERVER_OS_USER}",
                    path.display()
                ))),
        }
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

fn run(mut cmd: Command) -> Result<Output, ClusterError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(io_err(format!("running `{}`", describe(&cmd))))
}

fn run_ok(cmd: Command) -> Result<Output, ClusterError> {
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

fn random_password() -> SecretString {
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

fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

fn write_private(path: &Path, contents: &str) -> Result<(), ClusterError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(format!("writing {}", path.display())))?;
    file.write_all(contents.as_bytes())
        .map_err(io_err(format!("writing {}", path.display())))
}

/// One data directory and the commands that manage it; shared by both kinds of cluster.
#[derive(Debug, Clone)]
struct Server {
    bins: PgBinaries,
    run_as: RunAs,
    data: PathBuf,
    log: PathBuf,
}

/// Settings for throwaway clusters: no fsync (an OS crash may lose them, which costs nothing),
/// but commits still reach the WAL, so a killed server restarts with every committed row.
const UNDURABLE: &str = "fsync = off\nfull_page_writes = off\n";

impl Server {
    /// `initdb` with password authentication for every connection, then our settings.
    fn init(
        &self,
        password: &SecretString,
        port: u16,
        extra_conf: &str,
    ) -> Result<(), ClusterError> {
        let parent = self.data.parent().expect("data directory has a parent");
        let pwfile = parent.join(".initdb-password");
        write_private(&pwfile, password.expose_secret())?;
        self.run_as.give(&pwfile)?;
        let mut initdb = self.run_as.command(self.bins.tool("initdb"));
        initdb
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--username", SUPERUSER, "--auth", "scram-sha-256"])
            .args(["--encoding", "UTF8", "--locale", "C", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()));
        if !extra_conf.is_empty() {
            initdb.arg("--no-sync");
        }
        let result = run_ok(initdb);
        let _ = fs::remove_file(&pwfile);
        result?;
        self.set_port(port, extra_conf)
    }

    /// Writes the listening settings into `local.conf`, which `postgresql.conf` includes.
    fn set_port(&self, port: u16, extra_conf: &str) -> Result<(), ClusterError> {
        let conf = self.data.join("postgresql.conf");
        let main =
            fs::read_to_string(&conf).map_err(io_err(format!("reading {}", conf.display())))?;
        if !main.contains("include_if_exists = 'local.conf'") {
            fs::write(&conf, main + "\ninclude_if_exists = 'local.conf'\n")
                .map_err(io_err(format!("writing {}", conf.display())))?;
        }
        let local = self.data.join("local.conf");
        let settings = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n{extra_conf}"
        );
        fs::write(&local, settings).map_err(io_err(format!("writing {}", local.display())))?;
        self.run_as.give(&local)
    }

    fn is_running(&self) -> Result<bool, ClusterError> {
        let mut status = self.run_as.command(self.bins.tool("pg_ctl"));
        status.arg("status").arg("--pgdata").arg(&self.data);
        // pg_ctl status: 0 running, 3 not running, 4 no usable data directory.
        Ok(run(status)?.status.code() == Some(0))
    }

    fn start(&self) -> Result<(), ClusterError> {
        let mut start = self.run_as.command(self.bins.tool("pg_ctl"));
        start
            .arg("start")
            .arg("--pgdata")
            .arg(&self.data)
            .arg("--log")
            .arg(&self.log)
            .args(["--wait", "--timeout", "60", "--silent"])
            // Its own process group, so Ctrl-C in the caller's terminal does not reach the server.
            .process_group(0);
        match run_ok(start) {
            Ok(_) => Ok(()),
            Err(ClusterError::CommandFailed { .. }) => Err(ClusterError::StartFailed {
                log: self.log.clone(),
                tail: log_tail(&self.log),
            }),
            Err(other) => Err(other),
        }
    }

    fn stop(&self, mode: &str) -> Result<(), ClusterError> {
        let mut stop = self.run_as.command(self.bins.tool("pg_ctl"));
        stop.arg("stop")
            .arg("--pgdata")
            .arg(&self.data)
            .args(["--mode", mode, "--wait", "--silent"]);
        run_ok(stop).map(drop)
    }

    fn create_database(&self, url: &DatabaseUrl) -> Result<(), ClusterError> {
        let mut createdb = Command::new(self.bins.tool("createdb"));
        createdb
            .args(["--host", url.host(), "--port", &url.port().to_string()])
            .args(["--username", url.user(), url.database()])
            .env("PGPASSWORD", url.password().expose_secret());
        run_ok(createdb).map(drop)
    }
}

fn log_tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_else(|err| format!("(log unreadable: {err})"));
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The persistent cluster of a workspace: created on first use in a git-ignored folder, started
/// when stopped, reused when running. Its superuser password is random and kept in that folder.
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
        self.server.run_as.give(&self.dir)?;
        self.server.run_as.check_reach(&self.dir)?;
        let lock_path = self.dir.join(".lock");
        let lock = File::create(&lock_path)
            .map_err(io_err(format!("creating {}", lock_path.display())))?;
        lock.lock()
            .map_err(io_err(format!("locking {}", lock_path.display())))?;

        // `ready` is written last: a cluster whose creation was interrupted is made anew.
        let ready = self.dir.join("ready");
        let created = !ready.is_file();
        if created {
            self.create()?;
            fs::write(&ready, "").map_err(io_err(format!("writing {}", ready.display())))?;
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
        write_private(&self.dir.join("password"), password.expose_secret())?;
        fs::write(self.dir.join("port"), port.to_string())
            .map_err(io_err("writing the port file"))?;
        self.server.start()?;
        self.server.create_database(&self.url()?)
    }

    /// The URL of the application database, from the files the cluster keeps.
    pub fn url(&self) -> Result<DatabaseUrl, ClusterError> {
        let read = |name: &str| {
            fs::read_to_string(self.dir.join(name))
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
        run_as.give(&dir)?;
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

    fn spawn_watchdog(server: &Server, dir: &Path) -> Result<Child, ClusterError> {
        let stop = match server.run_as {
            RunAs::Me => String::new(),
            RunAs::ServerUser { .. } => format!("runuser -u {SERVER_OS_USER} -- "),
        };
        let script = format!(
            "while kill -0 \"$1\" 2>/dev/null; do sleep 0.2; done; \
             {stop}\"$2\" stop --pgdata \"$3\" --mode immediate --silent >/dev/null 2>&1; rm -rf \"$4\""
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("pg-throwaway-watchdog")
            .arg(std::process::id().to_string())
            .arg(server.bins.tool("pg_ctl"))
            .arg(&server.data)
            .arg(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(io_err("starting the cluster watchdog"))
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
