//! Opening connections and pools from a validated URL and pool settings, and the one place that
//! turns a failed first connection into a [`ConnectError`] naming its cause.
//!
//! A pool opens its first connection itself, here, before it is handed out: sqlx's own pool
//! retries a refused connection (and `too many connections`, and a server starting up) until its
//! acquire timeout and then reports only `pool timed out`, so a wrong port would look like a slow
//! server for ten seconds. A pool that opens nothing until its first statement is asked for by
//! name ([`Opening::Lazily`]).
//!
//! The pool is sqlx's, built here and handed to SeaORM whole: the password goes from the
//! [`DatabaseUrl`]'s secret straight into sqlx's `PgConnectOptions`, which nothing prints. (SeaORM's
//! own `Database::connect` takes a `ConnectOptions` holding the URL, and records its `Debug`, the
//! password included, in a TRACE span: visible to any subscriber that records span fields.)

use std::{fmt, str::FromStr, time::Duration};

use sea_orm::{
    ConnAcquireErr, DatabaseConnection, DbErr, RuntimeErr, SqlxPostgresConnector,
    sqlx::{
        self, ConnectOptions as _, Connection as _,
        postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions},
    },
};
use secrecy::ExposeSecret;

use crate::config::{DatabaseUrl, PoolSettings};

/// The setting that bounds a first connection, named in [`Cause::NoAnswer`].
pub const CONNECT_TIMEOUT_VAR: &str = "DB_CONNECT_TIMEOUT_SECS";
/// The setting that bounds a wait for a pooled connection, named in a pool's timeout.
pub const ACQUIRE_TIMEOUT_VAR: &str = "DB_ACQUIRE_TIMEOUT_SECS";
/// The setting that sizes a pool, named in a pool's timeout.
pub const MAX_CONNECTIONS_VAR: &str = "DB_MAX_CONNECTIONS";

/// What stopped a first connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing listens on the host and port.
    Refused,
    /// The host name does not resolve.
    HostNotFound,
    /// Nothing answered within the connect timeout (a listener that is not PostgreSQL, a
    /// network that drops packets, an overloaded server).
    NoAnswer,
    /// Another network failure (unreachable network, reset connection).
    Network,
    /// The server refused the user and password.
    PasswordRejected,
    /// The server refused the login for another reason (`pg_hba.conf`, a missing role).
    LoginRejected,
    /// The server accepts only TLS connections and the URL turned TLS off.
    TlsRequired,
    /// The URL requires TLS and the server does not offer it.
    TlsRefused,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The database named in the URL does not exist.
    DatabaseMissing,
    /// The server (or the role, or the database) takes no more connections.
    TooManyConnections,
    /// The server is starting up, shutting down or in recovery without hot standby.
    NotReady,
    /// `DB_POOLER_PREPARED_STATEMENTS=true`, and the pooler passes prepared statements through
    /// (PgBouncer before 1.21, `max_prepared_statements = 0`, or no pooler at all).
    PreparedStatementsNotKept,
    /// Anything else the driver or the server said.
    Other,
}

/// A first connection that failed, with its [`Cause`] and the URL it tried (password masked).
/// `Display` says both and what to check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("could not connect to {url}: {detail}")]
pub struct ConnectError {
    cause: Cause,
    url: String,
    detail: String,
}

impl ConnectError {
    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// The URL, its password masked.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub(crate) fn new(cause: Cause, url: &DatabaseUrl, detail: impl Into<String>) -> Self {
        Self {
            cause,
            url: url.to_string(),
            detail: detail.into(),
        }
    }

    /// `err`, the driver's answer to a connection attempt to `url`, named by its cause.
    pub async fn classify(url: &DatabaseUrl, err: sqlx::Error) -> Self {
        let at = format!("{}:{}", url.host(), url.port());
        match err {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => Self::new(
                Cause::Refused,
                url,
                format!(
                    "connection refused: nothing listens on {at} (is the server running, on that host and port?)"
                ),
            ),
            sqlx::Error::Io(io) => match resolves(url).await {
                Err(lookup) => Self::new(
                    Cause::HostNotFound,
                    url,
                    format!(
                        "host not found: `{}` does not resolve ({lookup})",
                        url.host()
                    ),
                ),
                Ok(()) => Self::new(Cause::Network, url, format!("network error at {at}: {io}")),
            },
            sqlx::Error::Tls(tls) if tls.to_string() == "server does not support TLS" => Self::new(
                Cause::TlsRefused,
                url,
                format!(
                    "the server at {at} does not offer TLS, which the URL's sslmode requires (enable ssl on the server, or lower sslmode)"
                ),
            ),
            sqlx::Error::Tls(tls) => Self::new(Cause::Tls, url, format!("TLS failed: {tls}")),
            sqlx::Error::Database(db) => {
                let message = db.message().to_owned();
                let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
                let (cause, hint) = match code.as_str() {
                    "28P01" => (Cause::PasswordRejected, "check the user and the password"),
                    "28000" if message.contains("no encryption") => (
                        Cause::TlsRequired,
                        "connect with TLS: remove sslmode=disable from the URL, or use sslmode=require",
                    ),
                    "28000" => (
                        Cause::LoginRejected,
                        "check the user and the server's pg_hba.conf",
                    ),
                    "3D000" => (
                        Cause::DatabaseMissing,
                        "create it, or fix the database name in the URL",
                    ),
                    "53300" => (
                        Cause::TooManyConnections,
                        "close idle connections, lower DB_MAX_CONNECTIONS of the services sharing the server, or raise its max_connections",
                    ),
                    "57P03" => (Cause::NotReady, "try again once the server is up"),
                    _ => (Cause::Other, ""),
                };
                let detail = match (cause, hint) {
                    (_, "") => format!("{message} (SQLSTATE {code})"),
                    (Cause::TlsRequired, hint) => {
                        format!("the server requires TLS: {message} ({hint})")
                    }
                    (_, hint) => format!("{message} ({hint})"),
                };
                Self::new(cause, url, detail)
            }
            other => Self::new(Cause::Other, url, other.to_string()),
        }
    }

    fn no_answer(url: &DatabaseUrl, within: Duration) -> Self {
        Self::new(
            Cause::NoAnswer,
            url,
            format!(
                "no answer from {}:{} within {} s ({CONNECT_TIMEOUT_VAR}): what listens there is not PostgreSQL, the network drops the connection, or the server is overloaded",
                url.host(),
                url.port(),
                seconds(within)
            ),
        )
    }

    fn unreadable(url: &DatabaseUrl) -> Self {
        Self::new(Cause::Other, url, "the driver cannot read the URL")
    }
}

/// For callers that report SeaORM's errors: the message, whole.
impl From<ConnectError> for DbErr {
    fn from(err: ConnectError) -> Self {
        DbErr::Conn(RuntimeErr::Internal(err.to_string()))
    }
}

/// Whether the URL's host resolves (an address always does).
async fn resolves(url: &DatabaseUrl) -> Result<(), std::io::Error> {
    tokio::net::lookup_host((url.host(), url.port()))
        .await
        .map(|_| ())
}

fn seconds(duration: Duration) -> String {
    let secs = duration.as_secs_f64();
    match secs.fract() == 0.0 {
        true => format!("{secs:.0}"),
        false => format!("{secs:.1}"),
    }
}

/// The driver's options for `url`. Statement logging stays off: services log through `tracing`
/// at their own level, and a statement can carry data we must not print.
///
/// sqlx's `extra_float_digits` startup parameter is left out: PostgreSQL 12 and later print
/// floats exactly without it, and PgBouncer refuses a connection that sends it (unless its
/// `ignore_startup_parameters` lists it), so a URL pointing at a pooler fails nowhere but where
/// a statement really cannot work there.
pub fn driver_connect_options(url: &DatabaseUrl) -> Result<PgConnectOptions, ConnectError> {
    let options = PgConnectOptions::from_str(url.expose().expose_secret())
        .map_err(|_| ConnectError::unreadable(url))?;
    Ok(driver_options(options).disable_statement_logging())
}

/// What every connection of the workspace changes in sqlx's options: `extra_float_digits` is
/// left out (see [`driver_connect_options`]). For connections opened with sqlx directly.
pub fn driver_options(options: PgConnectOptions) -> PgConnectOptions {
    options.extra_float_digits(None)
}

/// sqlx's pool options for `settings`: its acquire timeout bounds every wait for a pooled
/// connection, opening a new one included. (The connect timeout bounds the first connection,
/// which [`open_pool`] opens itself.)
pub fn pool_options(settings: &PoolSettings) -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .min_connections(settings.min_connections)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
}

/// One connection to `url` with `options` (made from `url`, e.g. by [`driver_connect_options`]),
/// given `within` to answer: the failure, if any, named by its cause.
pub async fn open_connection(
    url: &DatabaseUrl,
    options: &PgConnectOptions,
    within: Duration,
) -> Result<PgConnection, ConnectError> {
    match tokio::time::timeout(within, options.connect()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(ConnectError::classify(url, err).await),
        Err(_) => Err(ConnectError::no_answer(url, within)),
    }
}

/// When a pool opens its first connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Now, given this long to answer (the connect timeout): a wrong URL or a server that is
    /// down fails here, naming the cause.
    Now(Duration),
    /// At the first statement: a server that is down now is no error now (a replica that may
    /// come back). Its failures then surface as the pool's acquire timeout.
    Lazily,
}

/// A pool for `url` with `settings`; its first connection opens now, so a wrong URL or a down
/// server fails here, naming the cause.
pub async fn connect(
    url: &DatabaseUrl,
    settings: &PoolSettings,
) -> Result<DatabaseConnection, ConnectError> {
    open_pool(
        url,
        pool_options(settings),
        Opening::Now(settings.connect_timeout),
        |options| options,
    )
    .await
}

/// sqlx's pool for `url` with the pool options `pool` (usually [`pool_options`]) and the driver
/// options `adjust` makes of the workspace's ([`driver_connect_options`]), opened as `opening`
/// says. Opened now, a first connection is tried on its own, bounded by the connect timeout
/// (inside sqlx's pool its failure would be retried until the acquire timeout and reported as
/// a timeout); then the pool opens its own (`min_connections` of them, at least one), as
/// callers of a connected pool expect to find them.
pub async fn open_sqlx_pool(
    url: &DatabaseUrl,
    pool: PgPoolOptions,
    opening: Opening,
    adjust: impl FnOnce(PgConnectOptions) -> PgConnectOptions,
) -> Result<PgPool, ConnectError> {
    let options = adjust(driver_connect_options(url)?);
    let Opening::Now(within) = opening else {
        return Ok(pool.connect_lazy_with(options));
    };
    let first = open_connection(url, &options, within).await?;
    // Closing cleanly spares the server a "could not receive data" line in its log.
    let _ = first.close().await;
    match pool.connect_with(options).await {
        Ok(pool) => Ok(pool),
        // The server went away in between.
        Err(err) => Err(ConnectError::classify(url, err).await),
    }
}

/// [`open_sqlx_pool`] as a SeaORM connection.
pub async fn open_pool(
    url: &DatabaseUrl,
    pool: PgPoolOptions,
    opening: Opening,
    adjust: impl FnOnce(PgConnectOptions) -> PgConnectOptions,
) -> Result<DatabaseConnection, ConnectError> {
    let pool = open_sqlx_pool(url, pool, opening, adjust).await?;
    Ok(SqlxPostgresConnector::from_sqlx_postgres_pool(pool))
}

/// `err` as returned by a statement on `pool`; a wait for a connection that timed out says what
/// it waited for: the pool (its URL, password masked), its size and how long. (SeaORM and the
/// pooler-safe path both report that wait as `ConnectionAcquire(Timeout)`.)
pub fn name_acquire_timeout(pool: &PgPool, err: DbErr) -> DbErr {
    match err {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => {
            DbErr::Conn(RuntimeErr::Internal(AcquireTimeout::of(pool).to_string()))
        }
        other => other,
    }
}

/// What a wait for a pooled connection that timed out waited for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcquireTimeout {
    /// The pool's URL, password masked.
    pub url: String,
    pub waited: Duration,
    pub open: u32,
    pub max_connections: u32,
}

impl AcquireTimeout {
    pub fn of(pool: &PgPool) -> Self {
        let options = pool.connect_options();
        Self {
            url: format!(
                "postgresql://{}:****@{}:{}/{}",
                options.get_username(),
                options.get_host(),
                options.get_port(),
                options.get_database().unwrap_or_default()
            ),
            waited: pool.options().get_acquire_timeout(),
            open: pool.size(),
            max_connections: pool.options().get_max_connections(),
        }
    }
}

impl fmt::Display for AcquireTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {} s ({ACQUIRE_TIMEOUT_VAR}) waiting for a connection to {}: {} of at most {} ({MAX_CONNECTIONS_VAR}) open, ",
            seconds(self.waited),
            self.url,
            self.open,
            self.max_connections,
        )?;
        match self.open < self.max_connections {
            true => f.write_str(
                "and no new one could be opened in that time (is the server down or unreachable?)",
            ),
            false => f.write_str(
                "all in use the whole time (hold connections for less time, or raise DB_MAX_CONNECTIONS)",
            ),
        }
    }
}
