//! The event worker runtime: runs a handler over [`SlackEvents`](crate::events::SlackEvents) or
//! [`LinearEvents`](crate::events::LinearEvents) with a concurrency limit, woken by `NOTIFY`
//! within milliseconds of an ingest, retrying failures with exponential backoff, reclaiming the
//! events of dead workers after their lease, and shutting down without losing or repeating
//! work. `events` holds the statements; this module is the loop around them.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use service::{events::SlackEvents, worker::{Outcome, Worker, WorkerConfig}};
//!
//! async fn handle(event: entity::SlackEvent) -> Result<Outcome, std::io::Error> {
//!     println!("{} {}", event.event_type, event.event_id);
//!     Ok(Outcome::Processed)
//! }
//!
//! let db = service::connect().await?;
//! let config = WorkerConfig::from_env()?; // LISTEN goes to DATABASE_DIRECT_URL behind a pooler
//! // Listening before it returns: a wrong URL fails here, naming the cause.
//! Worker::<SlackEvents, _>::connect(db, handle, config).await?.run_until_signal().await;
//! # Ok(()) }
//! ```
//!
//! How it works, and every setting: `docs/workers.md`.

use std::{fmt, future::Future, time::Duration};

use db_connect::{
    ConfigError, ConnectError, DatabaseUrl, NeedsDirectUrl, PoolSettings, Settings, Topology,
};

mod listener;
mod prune;
mod retry;
mod runtime;

pub use listener::APPLICATION_NAME as LISTENER_APPLICATION_NAME;
pub use prune::{DEFAULT_PRUNE_BATCH, prune, prune_unrouted};
pub use retry::Backoff;
pub use runtime::{RunSummary, Worker};
pub use tokio_util::sync::CancellationToken;

/// What a handler made of an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Handled: `processed`.
    Processed,
    /// Nothing to do for it: `ignored`.
    Ignored,
    /// Try again after this long (a rate limit's `Retry-After`); counts as an attempt, so the
    /// event fails once it has had `max_attempts`.
    RetryAfter(Duration),
    /// Never try again: `failed`, with this reason in `last_error` (secrets redacted).
    Failed(String),
}

/// Runs one event. Any `async fn(Event) -> Result<Outcome, E>` with a displayable `E` is one;
/// an `Err` is a failed attempt, retried after a backoff until the attempts run out.
pub trait Handler<Event>: Send + Sync + 'static {
    type Error: fmt::Display + Send + 'static;
    fn handle(&self, event: Event) -> impl Future<Output = Result<Outcome, Self::Error>> + Send;
}

impl<Event, F, Fut, E> Handler<Event> for F
where
    F: Fn(Event) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Outcome, E>> + Send,
    E: fmt::Display + Send + 'static,
{
    type Error = E;

    fn handle(&self, event: Event) -> impl Future<Output = Result<Outcome, E>> + Send {
        self(event)
    }
}

/// How an idle worker learns that events arrived.
#[derive(Debug, Clone)]
pub enum Wakeup {
    /// `LISTEN` on a session of its own to this URL (never a transaction-mode pooler), and poll
    /// only as a safety net and while that session is down.
    Listen(DatabaseUrl),
    /// Poll only: no session is needed, events wait up to the poll interval.
    PollOnly,
}

impl Wakeup {
    /// `LISTEN` where the topology sends sessions: `DATABASE_DIRECT_URL`, else `DATABASE_URL`
    /// unless it is a transaction-mode pooler, else the error naming `DATABASE_DIRECT_URL`.
    pub fn from_topology(topology: &Topology) -> Result<Self, NeedsDirectUrl> {
        topology
            .session_url("LISTEN (the event workers' wake-up)")
            .cloned()
            .map(Self::Listen)
    }
}

/// Retention run by the worker itself: every `every`, [`prune`] what finished more than
/// `keep_for` ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub keep_for: Duration,
    pub every: Duration,
}

/// Every setting of a worker; [`WorkerConfig::new`] gives the defaults.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub wakeup: Wakeup,
    /// Handlers running at once. Default 8.
    pub concurrency: usize,
    /// Events claimed ahead of free handlers, so a busy worker claims in batches. They are
    /// leased like running ones and released, unstarted, at shutdown. Default 8.
    pub prefetch: usize,
    /// How often an idle worker looks for due events without a notification: the wake-up
    /// while the listener is down, and a safety net for writers that do not notify (e.g.
    /// [`crate::events::requeue_stuck`]). Default 2 s.
    pub poll_interval: Duration,
    /// How long a claim keeps its events from other workers; a running worker renews it every
    /// third of it, so only a dead worker's events come back. Default 60 s.
    pub lease: Duration,
    /// Attempts per event, the first included; then `failed`. Default 8.
    pub max_attempts: u32,
    /// The delay before each retry. Default [`Backoff::RETRIES`].
    pub retry: Backoff,
    /// The delay before each reconnect of the listener. Default [`Backoff::RECONNECTS`].
    pub reconnect: Backoff,
    /// How long a shutdown waits for running handlers before it interrupts them. Default 30 s.
    pub shutdown_grace: Duration,
    /// Prune finished events now and then. Default none.
    pub retention: Option<Retention>,
    /// How long the listener's session is given to answer when it (re)connects. Default the
    /// pools' (`DB_CONNECT_TIMEOUT_SECS`, 10 s).
    pub connect_timeout: Duration,
}

/// Why a worker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("{0} (or choose Wakeup::PollOnly explicitly)")]
    NeedsDirectUrl(#[from] NeedsDirectUrl),
    #[error("database configuration: {0}")]
    Config(#[from] ConfigError),
    #[error("DATABASE_URL is not set; the worker's listener needs it (or DATABASE_DIRECT_URL)")]
    MissingDatabaseUrl,
    #[error("invalid worker setting {setting}: {reason}")]
    Invalid {
        setting: &'static str,
        reason: String,
    },
    /// The listener's first connection failed (see [`Worker::connect`](crate::worker::Worker::connect)).
    #[error("the worker's listener: {0}")]
    Connect(#[from] ConnectError),
    #[error("the worker's listener connected but LISTEN {channel} failed: {reason}")]
    Listen {
        channel: &'static str,
        reason: String,
    },
}

impl WorkerConfig {
    /// The defaults, waking up as `wakeup` says.
    pub fn new(wakeup: Wakeup) -> Self {
        Self {
            wakeup,
            concurrency: 8,
            prefetch: 8,
            poll_interval: Duration::from_secs(2),
            lease: Duration::from_secs(60),
            max_attempts: 8,
            retry: Backoff::RETRIES,
            reconnect: Backoff::RECONNECTS,
            shutdown_grace: Duration::from_secs(30),
            retention: None,
            connect_timeout: PoolSettings::default().connect_timeout,
        }
    }

    /// The defaults, listening where the environment's topology sends sessions (see
    /// [`Wakeup::from_topology`]). Refuses to start when `DATABASE_URL` is a transaction-mode
    /// pooler and `DATABASE_DIRECT_URL` is unset, rather than silently polling.
    pub fn from_env() -> Result<Self, WorkerError> {
        let settings = Settings::from_env()?;
        let topology = settings
            .topology
            .as_ref()
            .ok_or(WorkerError::MissingDatabaseUrl)?;
        Self::for_topology(topology, &settings.pool)
    }

    /// The defaults, listening where `topology` sends sessions, connecting within `pool`'s
    /// connect timeout.
    pub fn for_topology(topology: &Topology, pool: &PoolSettings) -> Result<Self, WorkerError> {
        Ok(Self {
            connect_timeout: pool.connect_timeout,
            ..Self::new(Wakeup::from_topology(topology)?)
        })
    }

    pub(crate) fn validate(&self) -> Result<(), WorkerError> {
        let invalid = |setting, reason: &str| {
            Err(WorkerError::Invalid {
                setting,
                reason: reason.to_owned(),
            })
        };
        if self.concurrency == 0 {
            return invalid("concurrency", "at least one handler must run");
        }
        if self.concurrency + self.prefetch > 1000 {
            return invalid(
                "prefetch",
                "concurrency + prefetch is at most 1000 (one claim)",
            );
        }
        if self.max_attempts == 0 || self.max_attempts > i32::MAX as u32 {
            return invalid("max_attempts", "at least 1");
        }
        if self.lease < Duration::from_millis(100) {
            return invalid("lease", "at least 100 ms");
        }
        if self.poll_interval.is_zero() {
            return invalid("poll_interval", "above zero");
        }
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout", "above zero");
        }
        for (setting, backoff) in [("retry", &self.retry), ("reconnect", &self.reconnect)] {
            if let Err(reason) = backoff.validate(setting) {
                return invalid(setting, &reason);
            }
        }
        if let Some(r) = self.retention
            && (r.every.is_zero() || r.keep_for.is_zero())
        {
            return invalid("retention", "keep_for and every above zero");
        }
        Ok(())
    }
}
