//! The loop: one coordinating task claims in batches, one organization per claim (the
//! organizations a notification names, or those a look at the due index finds), hands events to
//! at most `concurrency` handler tasks, and sends their outcomes to a settling task that writes
//! them many per statement (one per organization). Alongside: the listener (wake-ups), a
//! heartbeat that renews the leases of what is in hand, and optional pruning.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    marker::PhantomData,
    sync::Arc,
    time::Duration,
};

use db_connect::Pool;
use sea_orm::sqlx::postgres::PgListener;
use tokio::{
    sync::mpsc,
    task::{self, JoinHandle, JoinSet},
    time::{Instant, MissedTickBehavior},
};
use tracing::{Instrument, Span, field};

use super::{
    Handler, Outcome, Wakeup, WorkerConfig, WorkerError,
    listener::{self, Wakeups},
    prune::prune_everything,
};
use crate::{
    Error,
    events::{self, ClaimOptions, Claimed, EventSource, Release, Settle},
};

/// Outcomes written per settling statement at most.
const MAX_SETTLE_BATCH: usize = 1000;
/// The shortest idle wait: when due events exist but other workers hold them.
const MIN_IDLE: Duration = Duration::from_millis(10);
/// Tries of a settling statement while the database is unavailable.
const SETTLE_TRIES: u32 = 8;
/// Due events a look at the due index reads to find the organizations to claim for.
const DUE_SCAN: u64 = 200;

/// What a run did, counted by this worker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunSummary {
    pub processed: u64,
    pub ignored: u64,
    /// Attempts that failed and were scheduled again.
    pub retried: u64,
    pub failed: u64,
    /// Claimed but not started when the worker stopped: given back.
    pub released: u64,
    /// Still running when the shutdown's grace ran out: stopped and given back.
    pub interrupted: u64,
    /// Outcomes not written because the lease had passed to another worker meanwhile.
    pub lost_leases: u64,
}

/// A worker for the events of `S`, running `H`.
pub struct Worker<S: EventSource, H> {
    db: Pool,
    handler: Arc<H>,
    config: WorkerConfig,
    /// The listener's session, when [`Worker::connect`] opened it.
    listening: Option<PgListener>,
    source: PhantomData<S>,
}

struct Running {
    organization_id: String,
    claim: Claimed,
    started: Instant,
    span: Span,
}

/// Claims under way at once: a busy worker starts the next while the last one's events run,
/// so handlers do not wait for a claim's round trip.
const MAX_CLAIMS_IN_FLIGHT: usize = 2;

/// The result of one claim: the organization, how many were asked for, the events.
type ClaimResult<Row> = (String, u64, Result<Vec<Row>, Error>);

async fn claim_batch<S: EventSource>(
    db: Pool,
    organization_id: String,
    options: ClaimOptions,
) -> ClaimResult<S::Row> {
    let claimed = events::claim_with::<S>(&db, &organization_id, options).await;
    (organization_id, options.limit, claimed)
}

/// Claims grouped by organization, for the statements that take one organization each.
fn by_organization<T>(items: impl IntoIterator<Item = (String, T)>) -> BTreeMap<String, Vec<T>> {
    let mut grouped: BTreeMap<String, Vec<T>> = BTreeMap::new();
    for (organization_id, item) in items {
        grouped.entry(organization_id).or_default().push(item);
    }
    grouped
}

/// Writes outcomes as they come, all those waiting in one statement per organization. Returns
/// the outcomes that found their lease gone.
async fn settle_all<S: EventSource>(
    db: Pool,
    mut outcomes: mpsc::UnboundedReceiver<(String, Claimed, Settle)>,
    backoff: super::Backoff,
) -> u64 {
    let mut lost = 0;
    let mut waiting = Vec::new();
    while let Some(first) = outcomes.recv().await {
        waiting.push(first);
        while waiting.len() < MAX_SETTLE_BATCH {
            match outcomes.try_recv() {
                Ok(next) => waiting.push(next),
                Err(_) => break,
            }
        }
        let grouped = by_organization(
            waiting
                .drain(..)
                .map(|(organization_id, claim, how)| (organization_id, (claim, how))),
        );
        for (organization_id, batch) in grouped {
            lost += settle_one::<S>(&db, &organization_id, &batch, backoff).await;
        }
    }
    lost
}

/// One organization's outcomes in one statement, retried while the database is unavailable.
/// Returns those that found their lease gone.
async fn settle_one<S: EventSource>(
    db: &Pool,
    organization_id: &str,
    batch: &[(Claimed, Settle)],
    backoff: super::Backoff,
) -> u64 {
    let mut lost = 0;
    {
        for tries in 1.. {
            match events::settle::<S>(db, organization_id, batch).await {
                Ok(held) => {
                    let gone = batch.len() - held.len();
                    if gone > 0 {
                        tracing::warn!(
                            source = S::TABLE,
                            gone,
                            "outcomes not written: their lease expired and another worker claimed them"
                        );
                    }
                    lost += gone as u64;
                    break;
                }
                Err(err) if err.is_retryable() && tries < SETTLE_TRIES => {
                    tracing::warn!(source = S::TABLE, error = %err, "settling failed; retrying");
                    tokio::time::sleep(backoff.delay(tries)).await;
                }
                Err(err) => {
                    // Their leases run out and they are claimed again: nothing is lost.
                    tracing::error!(source = S::TABLE, error = %err, outcomes = batch.len(), "outcomes not written");
                    break;
                }
            }
        }
    }
    lost
}

fn panic_message(err: task::JoinError) -> String {
    match err.try_into_panic() {
        Ok(payload) => {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            format!("the handler panicked: {text}")
        }
        Err(_) => "the handler was cancelled".to_owned(),
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

impl<S, H> Worker<S, H>
where
    S: EventSource,
    H: Handler<S::Row>,
{
    /// A worker over `db` (the application's pool: claims and outcomes are one statement each,
    /// so a transaction-mode pooler is fine) running `handler`; refuses invalid settings. Its
    /// listener connects once it runs, and a listener that cannot connect only logs and polls
    /// meanwhile: [`Worker::connect`] is the one that fails at once.
    pub fn new(db: impl Into<Pool>, handler: H, config: WorkerConfig) -> Result<Self, WorkerError> {
        config.validate()?;
        Ok(Self {
            db: db.into(),
            handler: Arc::new(handler),
            config,
            listening: None,
            source: PhantomData,
        })
    }

    /// Like [`Worker::new`], and listening before it returns: a listener URL that is wrong, or a
    /// server that is down, is [`WorkerError::Connect`] naming the cause, within the config's
    /// connect timeout, instead of a worker that polls with a warning in its log.
    pub async fn connect(
        db: impl Into<Pool>,
        handler: H,
        config: WorkerConfig,
    ) -> Result<Self, WorkerError> {
        let mut worker = Self::new(db, handler, config)?;
        if let Wakeup::Listen(url) = &worker.config.wakeup {
            let listening = listener::connect(url, S::TABLE, worker.config.connect_timeout)
                .await
                .map_err(|err| match err {
                    listener::ListenError::Connect(err) => WorkerError::Connect(err),
                    listener::ListenError::Listen(err) => WorkerError::Listen {
                        channel: S::TABLE,
                        reason: err.to_string(),
                    },
                })?;
            worker.listening = Some(listening);
        }
        Ok(worker)
    }

    /// Runs until Ctrl-C or SIGTERM, then shuts down as [`Worker::run`] does.
    pub async fn run_until_signal(self) -> RunSummary {
        let stop = super::CancellationToken::new();
        let on_signal = stop.clone();
        let signals = tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!(source = S::TABLE, "signal received: shutting down");
            on_signal.cancel();
        });
        let summary = self.run(stop).await;
        signals.abort();
        summary
    }

    /// Runs until `stop` is cancelled; then stops claiming, gives back what was claimed but not
    /// started, lets running handlers finish within the grace period, interrupts and gives back
    /// the rest, and writes every outcome before returning.
    pub async fn run(mut self, stop: super::CancellationToken) -> RunSummary {
        let first = self.listening.take();
        let config = &self.config;
        let background = super::CancellationToken::new();
        let wake = Arc::new(Wakeups::default());
        let listener = match &config.wakeup {
            Wakeup::Listen(url) => Some(tokio::spawn(listener::run(
                listener::Session {
                    url: url.clone(),
                    channel: S::TABLE,
                    connect_timeout: config.connect_timeout,
                    reconnect: config.reconnect,
                    first,
                },
                wake.clone(),
                background.clone(),
            ))),
            Wakeup::PollOnly => None,
        };
        let (settle_tx, settle_rx) = mpsc::unbounded_channel();
        let settler = tokio::spawn(settle_all::<S>(
            self.db.clone(),
            settle_rx,
            config.reconnect,
        ));
        let mut state = State::<S, H> {
            worker: &self,
            summary: RunSummary::default(),
            queue: VecDeque::new(),
            running: JoinSet::new(),
            in_flight: HashMap::new(),
            settle: settle_tx,
            heartbeat: None,
            pruning: None,
            idle_until: Instant::now() + config.poll_interval,
        };
        state.serve(&stop, &wake).await;
        state.shut_down().await;
        let State {
            mut summary,
            settle,
            heartbeat,
            pruning,
            ..
        } = state;
        drop(settle);
        summary.lost_leases += settler.await.unwrap_or_default();
        background.cancel();
        for task in [listener, heartbeat, pruning].into_iter().flatten() {
            let _ = task.await;
        }
        summary
    }
}

struct State<'w, S: EventSource, H> {
    worker: &'w Worker<S, H>,
    summary: RunSummary,
    /// Claimed, not started.
    queue: VecDeque<S::Row>,
    running: JoinSet<Result<Outcome, String>>,
    in_flight: HashMap<task::Id, Running>,
    settle: mpsc::UnboundedSender<(String, Claimed, Settle)>,
    heartbeat: Option<JoinHandle<()>>,
    pruning: Option<JoinHandle<()>>,
    idle_until: Instant,
}

impl<S, H> State<'_, S, H>
where
    S: EventSource,
    H: Handler<S::Row>,
{
    fn config(&self) -> &WorkerConfig {
        &self.worker.config
    }

    fn in_hand(&self) -> Vec<(String, Claimed)> {
        self.queue
            .iter()
            .map(|e| (S::organization_id(e).to_owned(), S::claimed(e)))
            .chain(
                self.in_flight
                    .values()
                    .map(|r| (r.organization_id.clone(), r.claim)),
            )
            .collect()
    }

    fn start(&mut self, event: S::Row) {
        let claim = S::claimed(&event);
        let organization_id = S::organization_id(&event).to_owned();
        let span = tracing::info_span!(
            "event",
            source = S::TABLE,
            organization = %organization_id,
            id = %claim.id,
            attempt = claim.attempt,
            outcome = field::Empty,
            duration_ms = field::Empty,
        );
        let handler = self.worker.handler.clone();
        let handle = self.running.spawn(
            async move { handler.handle(event).await.map_err(|e| e.to_string()) }
                .instrument(span.clone()),
        );
        self.in_flight.insert(
            handle.id(),
            Running {
                organization_id,
                claim,
                started: Instant::now(),
                span,
            },
        );
    }

    /// The outcome of a finished handler, as the move it makes.
    fn settlement(&self, attempt: i32, result: Result<Outcome, String>) -> Settle {
        let config = self.config();
        let last = attempt.max(0) as u32 >= config.max_attempts;
        match result {
            Ok(Outcome::Processed) => Settle::Processed,
            Ok(Outcome::Ignored) => Settle::Ignored,
            Ok(Outcome::Failed(reason)) => Settle::Failed { error: reason },
            Ok(Outcome::RetryAfter(after)) if !last => Settle::Retry {
                after,
                error: String::new(),
            },
            Ok(Outcome::RetryAfter(_)) => Settle::Failed {
                error: format!(
                    "the handler asked to retry after the last of {} attempts",
                    config.max_attempts
                ),
            },
            Err(error) if !last => Settle::Retry {
                after: config.retry.delay(attempt.max(1) as u32),
                error,
            },
            Err(error) => Settle::Failed { error },
        }
    }

    fn finish(&mut self, done: Result<(task::Id, Result<Outcome, String>), task::JoinError>) {
        let (id, result) = match done {
            Ok((id, result)) => (id, result),
            Err(err) => (err.id(), Err(panic_message(err))),
        };
        let Some(running) = self.in_flight.remove(&id) else {
            return;
        };
        let settle = self.settlement(running.claim.attempt, result);
        let (outcome, counter) = match &settle {
            Settle::Processed => ("processed", &mut self.summary.processed),
            Settle::Ignored => ("ignored", &mut self.summary.ignored),
            Settle::Retry { .. } => ("retry", &mut self.summary.retried),
            Settle::Failed { .. } => ("failed", &mut self.summary.failed),
        };
        *counter += 1;
        let took = running.started.elapsed();
        running.span.record("outcome", outcome);
        running.span.record("duration_ms", took.as_secs_f64() * 1e3);
        tracing::debug!(parent: &running.span, outcome, "event handled");
        if let Settle::Retry { after, .. } = &settle {
            // Come back for it ourselves if nothing else wakes us first.
            self.idle_until = self.idle_until.min(Instant::now() + *after);
        }
        // The settler outlives this state; a closed channel only happens after shutdown.
        let _ = self
            .settle
            .send((running.organization_id, running.claim, settle));
    }

    fn renew_leases(&mut self) {
        if self.heartbeat.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let claims = self.in_hand();
        if claims.is_empty() {
            return;
        }
        let db = self.worker.db.clone();
        let lease = self.config().lease;
        self.heartbeat = Some(tokio::spawn(async move {
            for (organization_id, claims) in by_organization(claims) {
                match events::extend_leases::<S>(&db, &organization_id, &claims, lease).await {
                    Ok(held) if held.len() < claims.len() => tracing::warn!(
                        source = S::TABLE,
                        organization = %organization_id,
                        lost = claims.len() - held.len(),
                        "leases lost: another worker claimed these events again"
                    ),
                    Ok(_) => {}
                    Err(err) => {
                        tracing::warn!(source = S::TABLE, error = %err, "renewing leases failed")
                    }
                }
            }
        }));
    }

    fn prune_now(&mut self) {
        let Some(retention) = self.config().retention else {
            return;
        };
        if self.pruning.as_ref().is_some_and(|p| !p.is_finished()) {
            return;
        }
        let db = self.worker.db.clone();
        self.pruning = Some(tokio::spawn(async move {
            match prune_everything::<S>(&db, retention.keep_for, super::DEFAULT_PRUNE_BATCH).await {
                Ok(deleted) => tracing::info!(source = S::TABLE, deleted, "pruned finished events"),
                Err(err) => tracing::warn!(source = S::TABLE, error = %err, "pruning failed"),
            }
        }));
    }

    /// Claims and runs events until `stop`.
    async fn serve(&mut self, stop: &super::CancellationToken, wake: &Wakeups) {
        let config = self.config().clone();
        let capacity = config.concurrency + config.prefetch;
        // Busy workers claim in batches of at least half the prefetch, not one by one.
        let batch_at_least = (config.prefetch / 2).max(1);
        let mut heartbeat = tokio::time::interval(config.lease / 3);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut retention = tokio::time::interval(
            config
                .retention
                .map_or(Duration::from_secs(3600), |r| r.every),
        );
        let mut claiming = JoinSet::new();
        // Events asked for by the claims under way, by claim task.
        let mut reserved: HashMap<task::Id, usize> = HashMap::new();
        // Organizations to claim for, in turn: named by a notification, found by a look at the
        // due index, or left with more after a full claim.
        let mut due: VecDeque<String> = VecDeque::new();
        // Organizations whose last claim came back full: a second claim for one may start
        // before the first returns, so handlers do not wait for a claim's round trip.
        let mut busy: HashSet<String> = HashSet::new();
        // A look at the due index under way: which organizations have due events.
        let mut looking: Option<JoinHandle<Result<Vec<String>, Error>>> = None;
        // After a short claim: when the next event is due, asked after the claimed ones started.
        let mut probing: Option<JoinHandle<Result<Option<Duration>, Error>>> = None;
        // Woken without an organization (a poll, a reconnect, a retry coming due) since the
        // last look began.
        let mut woken = true;
        let mut claim_failures = 0u32;
        loop {
            while self.running.len() < config.concurrency
                && let Some(event) = self.queue.pop_front()
            {
                self.start(event);
            }
            if woken && looking.is_none() {
                let db = self.worker.db.clone();
                looking = Some(tokio::spawn(async move {
                    events::due_organizations::<S>(&db, DUE_SCAN).await
                }));
                woken = false;
            }
            let in_hand = self.queue.len() + self.running.len() + reserved.values().sum::<usize>();
            let room = capacity.saturating_sub(in_hand);
            if claiming.len() < MAX_CLAIMS_IN_FLIGHT
                && room >= batch_at_least.min(config.concurrency)
                && let Some(organization_id) = due.pop_front()
            {
                if busy.contains(&organization_id) {
                    // More is likely due there: another claim may follow this one.
                    due.push_back(organization_id.clone());
                }
                let options = ClaimOptions {
                    limit: room as u64,
                    lease: config.lease,
                    max_attempts: Some(config.max_attempts),
                };
                let claim = claiming.spawn(claim_batch::<S>(
                    self.worker.db.clone(),
                    organization_id,
                    options,
                ));
                reserved.insert(claim.id(), room);
            }
            let idle = due.is_empty() && claiming.is_empty() && looking.is_none() && !woken;
            tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                Some(done) = self.running.join_next_with_id() => self.finish(done),
                Some(claimed) = claiming.join_next_with_id() => {
                    let claimed = claimed.map(|(id, result)| {
                        reserved.remove(&id);
                        result
                    });
                    match claimed {
                        Ok((organization_id, asked, Ok(events))) => {
                            claim_failures = 0;
                            // A full batch: there may be more. A short one: that organization's
                            // queue is drained.
                            if events.len() as u64 == asked {
                                if !due.contains(&organization_id) {
                                    due.push_back(organization_id.clone());
                                }
                                busy.insert(organization_id);
                            } else {
                                busy.remove(&organization_id);
                                if due.is_empty() {
                                    self.drained(&mut probing);
                                }
                            }
                            self.queue.extend(events);
                        }
                        Ok((organization_id, _, Err(err))) => {
                            busy.remove(&organization_id);
                            claim_failures += 1;
                            tracing::warn!(source = S::TABLE, organization = %organization_id, error = %err, "claiming failed; backing off");
                            self.idle_until = Instant::now() + config.reconnect.delay(claim_failures);
                        }
                        Err(err) => {
                            reserved.remove(&err.id());
                            claim_failures += 1;
                            tracing::error!(source = S::TABLE, error = %err, "the claim task failed");
                            self.idle_until = Instant::now() + config.reconnect.delay(claim_failures);
                        }
                    }
                }
                found = async { looking.as_mut().expect("guarded").await }, if looking.is_some() => {
                    looking = None;
                    match found {
                        Ok(Ok(organizations)) => {
                            claim_failures = 0;
                            let none = organizations.is_empty();
                            for organization_id in organizations {
                                if !due.contains(&organization_id) {
                                    due.push_back(organization_id);
                                }
                            }
                            if none && due.is_empty() {
                                self.drained(&mut probing);
                            }
                        }
                        Ok(Err(err)) => {
                            claim_failures += 1;
                            tracing::warn!(source = S::TABLE, error = %err, "looking for due events failed; backing off");
                            self.idle_until = Instant::now() + config.reconnect.delay(claim_failures);
                        }
                        Err(err) => {
                            claim_failures += 1;
                            tracing::error!(source = S::TABLE, error = %err, "the look for due events failed");
                            self.idle_until = Instant::now() + config.reconnect.delay(claim_failures);
                        }
                    }
                }
                due_in = async { probing.as_mut().expect("guarded").await }, if probing.is_some() => {
                    probing = None;
                    if let Ok(Ok(Some(due_in))) = due_in {
                        let at = Instant::now() + due_in.max(MIN_IDLE);
                        self.idle_until = self.idle_until.min(at);
                    }
                }
                _ = wake.notified() => {
                    let (organizations, look) = wake.take();
                    for organization_id in organizations {
                        if !due.contains(&organization_id) {
                            due.push_back(organization_id);
                        }
                    }
                    woken |= look;
                }
                _ = tokio::time::sleep_until(self.idle_until), if idle => {
                    woken = true;
                    self.idle_until = Instant::now() + config.poll_interval;
                }
                _ = heartbeat.tick() => self.renew_leases(),
                _ = retention.tick(), if config.retention.is_some() => self.prune_now(),
            }
        }
        // Claims under way still hand their events over: they are released below.
        while let Some(claimed) = claiming.join_next().await {
            if let Ok((_, _, Ok(events))) = claimed {
                self.queue.extend(events);
            }
        }
    }

    /// Nothing more to claim for now: sleep until the next poll, or sooner when something is
    /// known to come due first (a retry of ours, which may have been settled while the last
    /// claim was under way), which one probe of the due index tells.
    fn drained(&mut self, probing: &mut Option<JoinHandle<Result<Option<Duration>, Error>>>) {
        let now = Instant::now();
        let poll = self.config().poll_interval;
        self.idle_until = self.idle_until.clamp(now, now + poll);
        if probing.is_none() {
            let db = self.worker.db.clone();
            *probing = Some(tokio::spawn(
                async move { events::next_due::<S>(&db).await },
            ));
        }
    }

    /// Gives claims back, one statement (and notification) per organization; returns how many
    /// went back.
    async fn give_back(&mut self, claims: Vec<(String, Claimed)>, why: Release) -> u64 {
        let mut released = 0;
        for (organization_id, claims) in by_organization(claims) {
            released += self.give_back_one(&organization_id, &claims, why).await;
        }
        released
    }

    async fn give_back_one(
        &mut self,
        organization_id: &str,
        claims: &[Claimed],
        why: Release,
    ) -> u64 {
        for tries in 1..=SETTLE_TRIES {
            match events::release::<S>(&self.worker.db, organization_id, claims, why).await {
                Ok(released) => return released,
                Err(err) if err.is_retryable() && tries < SETTLE_TRIES => {
                    tokio::time::sleep(self.config().reconnect.delay(tries)).await
                }
                Err(err) => {
                    // Their leases run out and they are claimed again.
                    tracing::error!(source = S::TABLE, organization = %organization_id, error = %err, "giving events back failed");
                    return 0;
                }
            }
        }
        0
    }

    /// Gives back the unstarted, waits for the running within the grace period, then
    /// interrupts and gives back the rest.
    async fn shut_down(&mut self) {
        let unstarted: Vec<(String, Claimed)> = self
            .queue
            .drain(..)
            .map(|e| (S::organization_id(&e).to_owned(), S::claimed(&e)))
            .collect();
        if !unstarted.is_empty() {
            self.summary.released += self.give_back(unstarted, Release::NotStarted).await;
        }
        let deadline = Instant::now() + self.config().shutdown_grace;
        let mut heartbeat = tokio::time::interval(self.config().lease / 3);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        while !self.running.is_empty() {
            tokio::select! {
                Some(done) = self.running.join_next_with_id() => self.finish(done),
                _ = tokio::time::sleep_until(deadline) => break,
                _ = heartbeat.tick() => self.renew_leases(),
            }
        }
        if self.running.is_empty() {
            return;
        }
        self.running.abort_all();
        while let Some(done) = self.running.join_next_with_id().await {
            match done {
                Err(err) if err.is_cancelled() => {}
                // Finished (or panicked) just before it was stopped: its outcome stands.
                done => self.finish(done),
            }
        }
        let interrupted: Vec<(String, Claimed)> = self
            .in_flight
            .drain()
            .map(|(_, r)| (r.organization_id, r.claim))
            .collect();
        tracing::warn!(
            source = S::TABLE,
            handlers = interrupted.len(),
            "shutdown grace period over: interrupting handlers"
        );
        self.summary.interrupted += self.give_back(interrupted, Release::Interrupted).await;
    }
}
