//! The migration lock: a transaction-scoped advisory lock inside a transaction that stays open on
//! a dedicated connection for the whole run.
//!
//! Why this shape: a session lock on a pooled connection is released when the pool closes that
//! connection (idle timeout, lifetime), and through a transaction-mode pooler a session lock
//! stays on a server session other clients then use. A transaction lock in an open transaction
//! pins one server session to this run through any pooler, and ends with it: when the runner
//! dies, the server (or pooler) ends the transaction and the lock goes too.
//!
//! Waiting runners poll `pg_try_advisory_xact_lock` and roll back between tries instead of
//! blocking, so they do not each pin a server connection: with a server pool of 5 and 8 runners,
//! blocked waiters would starve the holder's own statements.

use std::time::{Duration, Instant};

use sea_orm::{
    DbErr, RuntimeErr,
    sqlx::{self, AssertSqlSafe, Connection, PgConnection, Row},
};

use super::{
    MIGRATION_LOCK_KEY, Progress, RunError, RunOptions,
    connection::{self, Role},
};
use db_connect::DatabaseUrl;

/// The first pause between two tries for the lock; it doubles up to the run's `lock_poll`.
const FIRST_POLL: Duration = Duration::from_millis(25);

pub(crate) struct MigrationLock {
    conn: PgConnection,
    /// The server process holding the lock.
    pid: i32,
}

/// The session is gone (closed by the server, the network or a pooler), as opposed to a query
/// that failed on a live one. `57P01`: terminated by an administrator command or a timeout.
pub(crate) fn is_connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
        _ => false,
    }
}

fn db(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(err.into()))
}

impl MigrationLock {
    /// Waits until this run holds the lock.
    pub(crate) async fn acquire(
        url: &DatabaseUrl,
        options: &RunOptions,
        progress: &mut impl FnMut(Progress),
    ) -> Result<Self, RunError> {
        let (longest_poll, within) = (options.lock_poll, options.connect_timeout);
        let mut conn = connection::dedicated(url, Role::Lock, within).await?;
        let started = Instant::now();
        let mut pause = FIRST_POLL;
        let mut reported = false;
        // The transaction must not be ended by a server default meant for the application.
        let attempt = format!(
            "BEGIN; SET LOCAL idle_in_transaction_session_timeout = 0; \
             SELECT pg_try_advisory_xact_lock({MIGRATION_LOCK_KEY}), pg_backend_pid()"
        );
        loop {
            let tried = sqlx::raw_sql(AssertSqlSafe(attempt.clone()))
                .fetch_one(&mut conn)
                .await;
            let row = match tried {
                Ok(row) => row,
                // Between tries the connection sits idle, which a server or pooler may end
                // (`idle_session_timeout`); nothing is held yet, so a new one does.
                Err(err) if is_connection_lost(&err) => {
                    conn = connection::dedicated(url, Role::Lock, within).await?;
                    continue;
                }
                Err(err) => return Err(RunError::Lock(db(err))),
            };
            let held: bool = row.try_get(0).map_err(|e| RunError::Lock(db(e)))?;
            if held {
                let pid = row.try_get(1).map_err(|e| RunError::Lock(db(e)))?;
                progress(Progress::LockAcquired {
                    waited: started.elapsed(),
                });
                return Ok(Self { conn, pid });
            }
            sqlx::raw_sql("ROLLBACK")
                .execute(&mut conn)
                .await
                .map_err(|e| RunError::Lock(db(e)))?;
            if !reported {
                progress(Progress::WaitingForLock);
                reported = true;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(longest_poll.max(FIRST_POLL));
        }
    }

    /// Fails with [`RunError::LockLost`] unless this backend still holds the lock, checked in
    /// `pg_locks` on the lock's own connection. `next` says what was about to happen.
    pub(crate) async fn ensure_held(&mut self, next: &str) -> Result<(), RunError> {
        let key = MIGRATION_LOCK_KEY as u64;
        let (class, object) = (key >> 32, key & 0xffff_ffff);
        let sql = format!(
            "SELECT pg_backend_pid() = {pid} AND EXISTS (
                 SELECT 1 FROM pg_locks
                 WHERE locktype = 'advisory' AND granted AND pid = pg_backend_pid()
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND classid = {class} AND objid = {object} AND objsubid = 1)",
            pid = self.pid
        );
        let lost = |reason: String| RunError::LockLost {
            next: next.to_owned(),
            reason,
        };
        let row = sqlx::raw_sql(AssertSqlSafe(sql))
            .fetch_one(&mut self.conn)
            .await
            .map_err(|e| lost(format!("its connection failed: {e}")))?;
        match row.try_get::<bool, _>(0) {
            Ok(true) => Ok(()),
            Ok(false) => Err(lost(
                "its session no longer holds it (the transaction holding it ended)".to_owned(),
            )),
            Err(e) => Err(lost(e.to_string())),
        }
    }

    /// Ends the lock's transaction, which releases the lock, and closes the connection.
    pub(crate) async fn release(mut self) {
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sea_orm::sqlx::error::{DatabaseError, ErrorKind};

    use super::*;

    /// A server's error with `code`, as the driver reports one.
    #[derive(Debug, thiserror::Error)]
    #[error("SQLSTATE {0}")]
    struct Server(&'static str);

    impl DatabaseError for Server {
        fn message(&self) -> &str {
            self.0
        }

        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn server(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Server(code)))
    }

    #[test]
    fn a_session_that_is_gone_is_told_from_a_query_that_failed() {
        for lost in [
            sqlx::Error::Io(std::io::Error::other("reset")),
            sqlx::Error::Protocol("unexpected end".into()),
            sqlx::Error::Tls("closed".into()),
            server("57P01"),
            server("57P05"),
            server("08006"),
        ] {
            assert!(is_connection_lost(&lost), "{lost:?} is a lost session");
        }
        for failed in [
            server("55P03"),
            server("42P01"),
            server("40P01"),
            sqlx::Error::RowNotFound,
            sqlx::Error::PoolTimedOut,
        ] {
            assert!(!is_connection_lost(&failed), "{failed:?} is a failed query");
        }
    }
}
