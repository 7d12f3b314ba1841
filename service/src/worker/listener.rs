//! The wake-up: a `LISTEN` on a connection of its own (a session, so never through a
//! transaction-mode pooler), reconnected with backoff. A notification, or a reconnect (after
//! which notifications sent while it was down are lost), wakes the runtime, which then claims;
//! so no event waits on a lost notification longer than the poll interval.

use std::{str::FromStr, sync::Arc};

use db_connect::DatabaseUrl;
use sea_orm::sqlx::{
    self,
    postgres::{PgConnectOptions, PgListener, PgPoolOptions},
};
use secrecy::ExposeSecret;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::retry::Backoff;

/// The `application_name` of listener sessions, so operators (and tests) can find them in
/// `pg_stat_activity`.
pub const APPLICATION_NAME: &str = "event-worker-listener";

async fn connect(url: &DatabaseUrl, channel: &str) -> Result<PgListener, sqlx::Error> {
    let options = PgConnectOptions::from_str(url.expose().expose_secret())?
        .application_name(APPLICATION_NAME);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(channel).await?;
    Ok(listener)
}

/// Listens on `channel` until `stop`: every notification and every (re)connect wakes `wake`.
pub(crate) async fn run(
    url: DatabaseUrl,
    channel: &'static str,
    wake: Arc<Notify>,
    reconnect: Backoff,
    stop: CancellationToken,
) {
    let mut failures = 0u32;
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            connected = connect(&url, channel) => connected,
        };
        match connected {
            Ok(mut listener) => {
                failures = 0;
                tracing::debug!(channel, "listening");
                // Whatever was notified while we were not listening is caught by this claim.
                wake.notify_one();
                let lost = loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        next = listener.try_recv() => match next {
                            Ok(Some(_)) => wake.notify_one(),
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
