//! Who keeps a migration waiting for a lock. Sampled while the migration runs, since once its
//! `lock_timeout` fires it no longer waits and `pg_blocking_pids` has nothing left to say.

use std::{fmt, future::Future, time::Duration};

use sea_orm::sqlx::{self, AssertSqlSafe, Connection, PgConnection, Row};

use super::{
    RunOptions,
    connection::{self, Role},
    lock::is_connection_lost,
};
use db_connect::DatabaseUrl;

/// How much of a blocker's query is shown: enough to recognise it, little enough that a value
/// written into a long statement is mostly cut.
pub const QUERY_CHARS: usize = 120;

/// A session that held a lock the migration waited for.
#[derive(Debug, Clone, PartialEq)]
pub struct Blocker {
    pub pid: i32,
    pub application_name: String,
    /// `pg_stat_activity.state`: `idle in transaction`, `active`, ...
    pub state: String,
    /// How long its transaction had been open, in seconds, if it had one.
    pub transaction_age_secs: Option<f64>,
    /// The first [`QUERY_CHARS`] characters of its current or last query.
    pub query: String,
}

impl fmt::Display for Blocker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (application {:?}, {}",
            self.pid, self.application_name, self.state
        )?;
        if let Some(age) = self.transaction_age_secs {
            write!(f, ", transaction open {age:.1} s")?;
        }
        write!(f, ") last query: {:?}", self.query)
    }
}

/// Blockers as one line for an error message.
pub fn describe(blockers: &[Blocker]) -> String {
    if blockers.is_empty() {
        return "no blocking session was seen (it may have ended, or the wait was too short to sample)"
            .to_owned();
    }
    blockers
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// A connection of its own that samples the blockers of a backend.
pub(crate) struct Watcher {
    conn: PgConnection,
    url: DatabaseUrl,
    interval: Duration,
    connect_timeout: Duration,
}

impl Watcher {
    /// `None` when it cannot connect: the blockers then go unnamed, the migration still runs.
    pub(crate) async fn open(url: &DatabaseUrl, options: &RunOptions) -> Option<Self> {
        let connect_timeout = options.connect_timeout;
        let conn = connection::dedicated(url, Role::Watch, connect_timeout)
            .await
            .ok()?;
        let interval =
            (options.lock_timeout / 5).clamp(Duration::from_millis(10), Duration::from_millis(200));
        Some(Self {
            conn,
            url: url.clone(),
            interval,
            connect_timeout,
        })
    }

    async fn blockers_of(&mut self, pid: i32) -> Result<Vec<Blocker>, sqlx::Error> {
        let sql = format!(
            "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''),
                    extract(epoch FROM now() - a.xact_start)::float8,
                    left(coalesce(a.query, ''), {chars}), length(coalesce(a.query, '')) > {chars}
             FROM pg_stat_activity a
             WHERE a.pid = ANY (pg_blocking_pids({pid}))
             ORDER BY a.pid",
            chars = QUERY_CHARS
        );
        let rows = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_all(&mut self.conn)
            .await?;
        rows.iter()
            .map(|row| {
                let mut query: String = row.try_get(4)?;
                if row.try_get::<bool, _>(5)? {
                    query.push('…');
                }
                Ok(Blocker {
                    pid: row.try_get(0)?,
                    application_name: row.try_get(1)?,
                    state: row.try_get(2)?,
                    transaction_age_secs: row.try_get(3)?,
                    query,
                })
            })
            .collect()
    }

    pub(crate) async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// Runs `work` while sampling who blocks backend `pid`; `seen` keeps the last non-empty sample.
pub(crate) async fn watching<F: Future>(
    work: F,
    watcher: Option<&mut Watcher>,
    pid: Option<i32>,
    seen: &mut Vec<Blocker>,
) -> F::Output {
    let (Some(watcher), Some(pid)) = (watcher, pid) else {
        return work.await;
    };
    tokio::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            () = tokio::time::sleep(watcher.interval) => {
                match watcher.blockers_of(pid).await {
                    Ok(blockers) if !blockers.is_empty() => *seen = blockers,
                    Ok(_) => {}
                    // Idle between samples, its session may be ended by an idle timeout.
                    Err(err) if is_connection_lost(&err) => {
                        let (url, within) = (&watcher.url, watcher.connect_timeout);
                        if let Ok(conn) = connection::dedicated(url, Role::Watch, within).await {
                            watcher.conn = conn;
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }
}
