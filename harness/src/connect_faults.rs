//! Every way a first connection fails, as real servers and sockets: a closed port, a host that
//! does not resolve, a wrong password, a missing database, a listener that accepts and never
//! answers, a role that may open no connection, TLS asked of a server without it, and a server
//! that accepts only TLS. The tests of each entry point (the libraries, the CLIs, the examples)
//! run it against each, and [`assert_failed_fast`] checks what every one of them must say.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use db_connect::{Cause, DatabaseUrl};
use dev_servers::ThrowawayCluster;
use sea_orm::ConnectionTrait;
use secrecy::{ExposeSecret, SecretString};

use crate::server;

/// The connect timeout the tests give every entry point (`DB_CONNECT_TIMEOUT_SECS`).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long any entry point may take to fail, generous for a busy machine: the connect timeout
/// of the listener that never answers, plus a process start, plus a lot of margin. Without the
/// fix, the pool's retries took the acquire timeout (10 s, 30 s for `migration status`).
pub const FAILS_WITHIN: Duration = Duration::from_secs(8);

/// One way to fail, and what the error must say.
pub struct Fault {
    pub name: &'static str,
    pub url: DatabaseUrl,
    pub cause: Cause,
    /// Words the message must hold, naming the cause.
    pub says: &'static str,
    /// Whatever must live while the fault is used (a listener, a cluster).
    _keep: Option<Box<dyn std::any::Any + Send + Sync>>,
}

impl Fault {
    fn new(name: &'static str, url: DatabaseUrl, cause: Cause, says: &'static str) -> Self {
        Self {
            name,
            url,
            cause,
            says,
            _keep: None,
        }
    }

    fn keeping(self, keep: impl Send + Sync + 'static) -> Self {
        Self {
            _keep: Some(Box::new(keep)),
            ..self
        }
    }

    /// The URL as a user would write it in `DATABASE_URL`.
    pub fn raw_url(&self) -> String {
        self.url.expose().expose_secret().to_owned()
    }

    /// A command for a CLI run against this fault: `DATABASE_URL` only (no `.env`: it runs in
    /// a folder of its own), the tests' connect timeout, and `RUST_BACKTRACE=1`, which must
    /// not make a user's error print a backtrace.
    pub fn command(&self, program: impl AsRef<Path>, args: &[&str]) -> Command {
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args)
            .current_dir(std::env::temp_dir())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", std::env::var_os("HOME").unwrap_or_default())
            .env("DATABASE_URL", self.raw_url())
            .env(
                "DB_CONNECT_TIMEOUT_SECS",
                CONNECT_TIMEOUT.as_secs().to_string(),
            )
            .env("RUST_BACKTRACE", "1")
            .env("RUST_LOG", "warn");
        cmd
    }
}

fn url(user: &str, password: &str, host: &str, port: u16, database: &str) -> DatabaseUrl {
    DatabaseUrl::new(
        user,
        SecretString::from(password.to_owned()),
        host,
        port,
        database,
    )
    .expect("a valid URL")
}

fn admin() -> &'static DatabaseUrl {
    server().admin_url()
}

fn random(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// A TCP port nothing listens on.
pub fn refused() -> Fault {
    let port = dev_servers::free_port().expect("a free port");
    let url = url("app", "pw-refused", "127.0.0.1", port, "app");
    Fault::new("refused", url, Cause::Refused, "connection refused")
}

/// A host name that cannot resolve (`.invalid` is reserved for that, RFC 6761).
pub fn unknown_host() -> Fault {
    let url = url("app", "pw-unknown", "db.connect-fault.invalid", 5432, "app");
    Fault::new("unknown host", url, Cause::HostNotFound, "host not found")
}

/// The test server with a password that is not the user's.
pub fn wrong_password() -> Fault {
    let admin = admin();
    let url = url(
        admin.user(),
        "not-the-password",
        admin.host(),
        admin.port(),
        admin.database(),
    );
    Fault::new(
        "wrong password",
        url,
        Cause::PasswordRejected,
        "password authentication failed",
    )
}

/// The test server, a database it does not have.
pub fn missing_database() -> Fault {
    let url = admin()
        .with_database(&random("missing"))
        .expect("a valid name");
    Fault::new(
        "missing database",
        url,
        Cause::DatabaseMissing,
        "does not exist",
    )
}

/// A listener that accepts connections and never answers: only the connect timeout ends the
/// wait.
pub fn never_answers() -> Fault {
    let silent = SilentListener::start();
    let url = url("app", "pw-silent", "127.0.0.1", silent.port, "app");
    Fault::new("never answers", url, Cause::NoAnswer, "no answer from").keeping(silent)
}

/// A role of the test server that may open no connection (`CONNECTION LIMIT 0`): the server
/// answers `too many connections`, as a full one does.
pub async fn too_many_connections() -> Fault {
    let role = random("no_slots");
    let password = random("pw");
    let admin_pool = crate::connect(admin(), 1).await;
    admin_pool
        .execute_unprepared(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD '{password}' CONNECTION LIMIT 0"
        ))
        .await
        .expect("creating the role");
    admin_pool.close().await.ok();
    let admin = admin();
    let url = url(
        &role,
        &password,
        admin.host(),
        admin.port(),
        admin.database(),
    );
    Fault::new(
        "too many connections",
        url,
        Cause::TooManyConnections,
        "too many connections",
    )
}

/// The test server (which has no TLS) with `sslmode=require`.
pub fn tls_refused() -> Fault {
    let raw = format!("{}?sslmode=require", admin().expose().expose_secret());
    let url = DatabaseUrl::parse(&raw).expect("a valid URL");
    Fault::new("TLS refused", url, Cause::TlsRefused, "does not offer TLS")
}

/// Every fault on the shared test server and sockets (not [`tls_required`], which needs a
/// cluster of its own).
pub async fn all() -> Vec<Fault> {
    vec![
        refused(),
        unknown_host(),
        wrong_password(),
        missing_database(),
        never_answers(),
        too_many_connections().await,
        tls_refused(),
    ]
}

/// The user the cluster of [`tls_required`] refuses by a `reject` line of `pg_hba.conf`, with
/// TLS or without.
pub const REFUSED_LOGIN: &str = "refused_login";

/// A cluster of its own that accepts only TLS (`hostssl` lines, a self-signed certificate made
/// with `openssl`), and a URL to it with `sslmode=disable`.
pub async fn tls_required() -> Fault {
    let cluster = tokio::task::spawn_blocking(ThrowawayCluster::start)
        .await
        .expect("starting the cluster")
        .expect("a throwaway cluster");
    let files = TlsFiles::make();
    let pool = crate::connect(&cluster.url("postgres").expect("a URL"), 1).await;
    for sql in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            files.cert.display()
        ),
        format!("ALTER SYSTEM SET ssl_key_file = '{}'", files.key.display()),
        "ALTER SYSTEM SET ssl = on".to_owned(),
        format!("ALTER SYSTEM SET hba_file = '{}'", files.hba.display()),
    ] {
        pool.execute_unprepared(&sql)
            .await
            .unwrap_or_else(|err| panic!("{sql}: {err}"));
    }
    pool.close().await.ok();
    // hba_file is read at start only.
    cluster.kill().expect("stopping the cluster");
    cluster.restart().unwrap_or_else(|err| panic!("{err}"));
    let raw = format!(
        "{}?sslmode=disable",
        cluster
            .url("postgres")
            .expect("a URL")
            .expose()
            .expose_secret()
    );
    let url = DatabaseUrl::parse(&raw).expect("a valid URL");
    Fault::new(
        "TLS required",
        url,
        Cause::TlsRequired,
        "the server requires TLS",
    )
    .keeping((cluster, files))
}

/// A certificate, its key and a `pg_hba.conf` of `hostssl` lines, in a folder the server's OS
/// user can read.
struct TlsFiles {
    _dir: tempfile::TempDir,
    cert: PathBuf,
    key: PathBuf,
    hba: PathBuf,
}

impl TlsFiles {
    fn make() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("opening the folder");
        let (cert, key, hba) = (
            dir.path().join("server.crt"),
            dir.path().join("server.key"),
            dir.path().join("pg_hba.conf"),
        );
        let made = Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            ])
            .args(["-subj", "/CN=127.0.0.1", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap_or_else(|err| {
                panic!(
                    "openssl makes the test certificate ({err}); install the prerequisites: `{}`",
                    dev_servers::INSTALL_PREREQUISITES
                )
            });
        assert!(made.status.success(), "openssl failed: {}", lossy(&made));
        std::fs::write(
            &hba,
            format!(
                "hostssl all {REFUSED_LOGIN} 127.0.0.1/32 reject\n\
                 hostssl all all 127.0.0.1/32 scram-sha-256\nhostssl all all ::1/128 scram-sha-256\n"
            ),
        )
        .expect("writing pg_hba.conf");
        for file in [&cert, &hba] {
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644))
                .expect("opening the file");
        }
        give_to_server(&key);
        Self {
            _dir: dir,
            cert,
            key,
            hba,
        }
    }
}

/// The key, readable by the server alone (PostgreSQL refuses a key others can read); as root,
/// the server runs as `postgres`, which must own it.
fn give_to_server(key: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(key, std::fs::Permissions::from_mode(0o600)).expect("closing the key");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let chown = Command::new("chown")
            .arg(dev_servers::SERVER_OS_USER)
            .arg(key)
            .output()
            .expect("chown runs");
        assert!(chown.status.success(), "chown failed: {}", lossy(&chown));
    }
}

/// A TCP listener that accepts every connection and says nothing, until dropped.
struct SilentListener {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentListener {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a listener");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let port = listener.local_addr().expect("its address").port();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => held.push(stream),
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Self {
            port,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for SilentListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lossy(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What every entry point must do with `fault`: fail within [`FAILS_WITHIN`] (`took`), with a
/// message (`message`, printed or returned) that names the cause and the URL with its password
/// masked, and never the password.
pub fn assert_failed_fast(entry: &str, fault: &Fault, took: Duration, message: &str) {
    let context = format!("{entry} against {} ({took:?}): {message}", fault.name);
    assert!(took < FAILS_WITHIN, "too slow to fail: {context}");
    assert!(
        message.contains(fault.says),
        "the cause is not named: {context}"
    );
    let masked = fault.url.to_string();
    let (shown, _) = masked.split_once('?').unwrap_or((&masked, ""));
    // An entry point that uses only the server (the bench) names its own database.
    let server = match shown.rsplit_once('/') {
        Some((server, _)) => format!("{server}/"),
        None => shown.to_owned(),
    };
    assert!(
        message.contains(shown) || message.contains(&server),
        "the URL ({masked}) is not named: {context}"
    );
    let password = fault.url.password().expose_secret();
    assert!(
        !message.contains(password),
        "the password is shown: {context}"
    );
    assert!(
        !message.contains(admin().password().expose_secret()),
        "the server's password is shown: {context}"
    );
}

/// [`assert_failed_fast`] for a CLI's run: it exited 1, printed the error on one line starting
/// `Error: ` and no backtrace (the command set `RUST_BACKTRACE=1`).
pub fn assert_cli_failed_fast(entry: &str, fault: &Fault, took: Duration, output: &Output) {
    let text = lossy(output);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{entry} against {}: {text}",
        fault.name
    );
    assert!(
        !text.contains("stack backtrace") && !text.contains("Stack backtrace"),
        "{entry} against {} printed a backtrace: {text}",
        fault.name
    );
    let error = text
        .lines()
        .find(|line| line.starts_with("Error: "))
        .unwrap_or_else(|| {
            panic!(
                "{entry} against {}: no `Error: ` line in {text}",
                fault.name
            )
        });
    assert_failed_fast(entry, fault, took, error);
}

/// Runs `cmd` and measures it.
pub fn run_timed(cmd: &mut Command) -> (Duration, Output) {
    let started = std::time::Instant::now();
    let output = cmd.output().expect("the program runs");
    (started.elapsed(), output)
}
