//! The wake-up: a `LISTEN` on a connection of its own (a session, so never through a
//! transaction-mode pooler), reconnected with backoff. A notification names the organization
//! that got events (the ingest's payload), which the runtime then claims for; a notification
//! without one, or a reconnect (after which notifications sent while it was down are lost),
//! makes it look for every organization with due events. So no event waits on a lost
//! notification longer than the poll interval.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use db_connect::{ConnectError, DatabaseUrl, Opening, connect::open_sqlx_pool};
use sea_orm::sqlx::{
    self,
    postgres::{PgListener, PgPoolOptions},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::retry::Backoff;

/// The `application_name` of listener sessions, so operators (and tests) can find them in
/// `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "event-worker-listener";

/// Why the listener is not listening.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ListenError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("LISTEN failed: {0}")]
    Listen(#[from] sqlx::Error),
}

/// A session listening on `channel`, its connection given `within` to answer.
pub(crate) async fn connect(
    url: &DatabaseUrl,
    channel: &str,
    within: Duration,
) -> Result<PgListener, ListenError> {
    let pool = open_sqlx_pool(
        url,
        PgPoolOptions::new().max_connections(1),
        Opening::Now(within),
        |options| options.application_name(APPLICATION_NAME),
    )
    .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// What woke the runtime since it last looked: organizations named by notifications, and
/// whether it should look for due organizations itself.
#[derive(Default)]
pub(crate) struct Wakeups {
    notify: Notify,
    pending: Mutex<Pending>,
}

#[derive(Default)]
struct Pending {
    organizations: Vec<String>,
    look: bool,
}

impl Wakeups {
    /// Events arrived for this organization.
    pub(crate) fn organization(&self, organization_id: String) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if !pending.organizations.contains(&organization_id) {
            pending.organizations.push(organization_id);
        }
        drop(pending);
        self.notify.notify_one();
    }

    /// Events may be due anywhere: a notification without an organization, or a reconnect.
    pub(crate) fn look(&self) {
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).look = true;
        self.notify.notify_one();
    }

    /// The organizations named since the last call, and whether to look for due ones.
    pub(crate) fn take(&self) -> (Vec<String>, bool) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        (
            std::mem::take(&mut pending.organizations),
            std::mem::take(&mut pending.look),
        )
    }

    pub(crate) async fn notified(&self) {
        self.notify.notified().await
    }
}

/// How the listener reaches its session.
pub(crate) struct Session {
    pub(crate) url: DatabaseUrl,
    pub(crate) channel: &'static str,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect: Backoff,
    /// Already listening: the session [`crate::worker::Worker::connect`] opened.
    pub(crate) first: Option<PgListener>,
}

/// Listens on `channel` until `stop`: every notification and every (re)connect lands in `wake`.
pub(crate) async fn run(mut session: Session, wake: Arc<Wakeups>, stop: CancellationToken) {
    let (url, channel, reconnect) = (session.url.clone(), session.channel, session.reconnect);
    let mut failures = 0u32;
    loop {
        let connected = match session.first.take() {
            Some(listener) => Ok(listener),
            None => tokio::select! {
                _ = stop.cancelled() => return,
                connected = connect(&url, channel, session.connect_timeout) => connected,
            },
        };
        match connected {
            Ok(mut listener) => {
                failures = 0;
                tracing::debug!(channel, "listening");
                // Whatever was notified while we were not listening is found by this look.
                wake.look();
                let lost = loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        next = listener.try_recv() => match next {
                            Ok(Some(notification)) => match notification.payload() {
                                "" => wake.look(),
                                organization => wake.organization(organization.to_owned()),
                            },
                            Ok(None) => break "the connection was lost".to_owned(),
                            // The error names the server and the reason, never the password.
                            Err(err) => break err.to_string(),
                        },
                    }
                };
                tracing::warn!(channel, reason = %lost, "listener down; polling until it reconnects");
            }
            Err(err) => {
                tracing::warn!(channel, error = %err, "listener could not connect; polling meanwhile");
            }
        }
        failures = failures.saturating_add(1);
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(reconnect.delay(failures)) => {}
        }
    }
}
