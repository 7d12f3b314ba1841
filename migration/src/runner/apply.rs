//! Applying (or rolling back) one migration at a time while the lock is held.
//!
//! A transactional migration runs in a transaction of the runner's own, with `SET LOCAL`
//! timeouts, and its `seaql_migrations` row is written in that same transaction (the row
//! sea-orm-migration writes: version and `applied_at` in seconds), so a failed or timed-out
//! attempt leaves nothing. The lock is checked before every attempt and again just before the
//! commit. The work runs inside a savepoint so that the transaction can always drop the
//! prepared statements it made before it ends (see [`super::connection`]).
//!
//! A migration whose `use_transaction()` is `Some(false)` (`CREATE INDEX CONCURRENTLY` and
//! friends) runs on a session of its own, opened for it with the timeouts as connection options:
//! a session-level `SET` could land, through a transaction-mode pooler, on a server session
//! other clients then inherit; connection options are either kept per client by the pooler or
//! refused by it, and the runner checks that they arrived before running anything. It is
//! recorded only once it completed.

use std::time::{Duration, Instant, SystemTime};

use db_connect::DatabaseUrl;
use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, DynIden, Statement,
    TransactionTrait,
    sea_query::{Expr, ExprTrait, Query},
};
use sea_orm_migration::{MigrationTrait, SchemaManager};

use super::{
    Progress, RunError, RunOptions,
    blockers::{Blocker, Watcher, watching},
    connection::{self, Role, is_lock_timeout},
    lock::MigrationLock,
};

/// Where the runner announces each migration's statements, for `migration lint` to collect them
/// (the driver logs each statement at TRACE under `sqlx::query`).
pub const CAPTURE_TARGET: &str = "migration::capture";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Up,
    Down,
}

impl Direction {
    fn verb(self) -> &'static str {
        match self {
            Self::Up => "applying",
            Self::Down => "rolling back",
        }
    }
}

/// Why one attempt failed.
enum Failure {
    Db(DbErr),
    Run(RunError),
}

/// Everything a run holds while it applies migrations.
pub(crate) struct Applier<'a> {
    pub(crate) url: &'a DatabaseUrl,
    pub(crate) options: &'a RunOptions,
    pub(crate) table: DynIden,
    pub(crate) apply: DatabaseConnection,
    pub(crate) lock: MigrationLock,
    pub(crate) watcher: Option<Watcher>,
}

/// The work of a transaction happens in a savepoint; `end` always removes the transaction's
/// prepared statements first, whether it commits or not.
async fn end(
    outer: DatabaseTransaction,
    inner: DatabaseTransaction,
    commit: bool,
) -> Result<(), DbErr> {
    if commit {
        inner.commit().await?;
    } else {
        inner.rollback().await?;
    }
    outer.execute_unprepared("DEALLOCATE ALL").await?;
    if commit {
        outer.commit().await
    } else {
        outer.rollback().await
    }
}

async fn backend_pid(conn: &impl ConnectionTrait) -> Result<i32, DbErr> {
    conn.query_one_raw(Statement::from_string(
        DbBackend::Postgres,
        "SELECT pg_backend_pid()",
    ))
    .await?
    .ok_or_else(|| DbErr::Custom("pg_backend_pid() returned no row".to_owned()))?
    .try_get_by_index(0)
}

/// Writes or removes the migration's row in the migration table.
async fn record(
    conn: &impl ConnectionTrait,
    table: DynIden,
    name: &str,
    direction: Direction,
) -> Result<(), DbErr> {
    match direction {
        Direction::Up => {
            let applied_at = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let insert = Query::insert()
                .into_table(table)
                .columns(["version", "applied_at"])
                .values_panic([name.into(), applied_at.into()])
                .to_owned();
            conn.execute(&insert).await?;
        }
        Direction::Down => {
            let delete = Query::delete()
                .from_table(table)
                .and_where(Expr::col("version").eq(name))
                .to_owned();
            conn.execute(&delete).await?;
        }
    }
    Ok(())
}

async fn run_migration(
    migration: &dyn MigrationTrait,
    manager: &SchemaManager<'_>,
    direction: Direction,
) -> Result<(), DbErr> {
    tracing::trace!(target: CAPTURE_TARGET, migration = migration.name(), "begin");
    let result = match direction {
        Direction::Up => migration.up(manager).await,
        Direction::Down => migration.down(manager).await,
    };
    tracing::trace!(target: CAPTURE_TARGET, migration = migration.name(), "end");
    result
}

impl Applier<'_> {
    /// A transaction on the apply connection (with the migration timeouts set when `settings`),
    /// and the savepoint the work runs in.
    async fn begin(
        &self,
        settings: bool,
    ) -> Result<(DatabaseTransaction, DatabaseTransaction), DbErr> {
        let outer = self.apply.begin().await?;
        let inner = async {
            if settings {
                outer
                    .execute_unprepared(&self.options.transaction_settings_sql())
                    .await?;
            }
            outer.begin().await
        }
        .await;
        match inner {
            Ok(inner) => Ok((outer, inner)),
            Err(err) => {
                let _ = outer.rollback().await;
                Err(err)
            }
        }
    }

    /// Runs `work` in a transaction of the apply connection with the migration timeouts set.
    pub(crate) async fn in_transaction<T>(
        &self,
        work: impl AsyncFnOnce(&DatabaseTransaction) -> Result<T, DbErr>,
    ) -> Result<T, DbErr> {
        let (outer, inner) = self.begin(true).await?;
        match work(&inner).await {
            Ok(value) => end(outer, inner, true).await.map(|()| value),
            Err(err) => {
                let _ = end(outer, inner, false).await;
                Err(err)
            }
        }
    }

    /// Writes the migration's row, checks the lock is still held, and commits; or rolls back
    /// everything when `ran` failed or either of those does.
    async fn record_and_commit(
        &mut self,
        (outer, inner): (DatabaseTransaction, DatabaseTransaction),
        ran: Result<(), DbErr>,
        migration: &dyn MigrationTrait,
        direction: Direction,
    ) -> Result<(), Failure> {
        let recorded = match ran {
            Ok(()) => record(&inner, self.table.clone(), migration.name(), direction)
                .await
                .map_err(Failure::Db),
            Err(err) => Err(Failure::Db(err)),
        };
        let still_held = match recorded {
            Ok(()) => self
                .lock
                .ensure_held(&format!("recording {}", migration.name()))
                .await
                .map_err(Failure::Run),
            Err(failure) => Err(failure),
        };
        match still_held {
            Ok(()) => end(outer, inner, true).await.map_err(Failure::Db),
            Err(failure) => {
                let _ = end(outer, inner, false).await;
                Err(failure)
            }
        }
    }

    /// One migration, tried again after each lock timeout while retries remain. Returns how
    /// long it took, waits included.
    pub(crate) async fn step(
        &mut self,
        migration: &dyn MigrationTrait,
        direction: Direction,
        progress: &mut impl FnMut(Progress),
    ) -> Result<Duration, RunError> {
        let name = migration.name().to_owned();
        let transactional = migration.use_transaction().unwrap_or(true);
        let started = Instant::now();
        let attempts = self.options.lock_retries + 1;
        let mut attempt = 1;
        loop {
            self.lock
                .ensure_held(&format!("{} {name}", direction.verb()))
                .await?;
            let mut seen = Vec::new();
            let result = if transactional {
                self.transactional(migration, direction, &mut seen).await
            } else {
                self.outside_transaction(migration, direction, &mut seen)
                    .await
            };
            match result {
                Ok(()) => return Ok(started.elapsed()),
                Err(Failure::Db(err)) if is_lock_timeout(&err) && attempt < attempts => {
                    let retry_in = self.options.backoff(attempt);
                    progress(Progress::LockRetry {
                        name: name.clone(),
                        attempt,
                        attempts,
                        blockers: seen,
                        retry_in,
                    });
                    tokio::time::sleep(retry_in).await;
                    attempt += 1;
                }
                Err(Failure::Db(source)) if is_lock_timeout(&source) => {
                    return Err(RunError::LockTimeout {
                        name,
                        attempts,
                        lock_timeout: self.options.lock_timeout,
                        blockers: seen,
                        source,
                    });
                }
                Err(Failure::Db(source)) if transactional => {
                    return Err(RunError::Migration { name, source });
                }
                Err(Failure::Db(source)) => {
                    return Err(RunError::NonTransactional { name, source });
                }
                Err(Failure::Run(err)) => return Err(err),
            }
        }
    }

    async fn transactional(
        &mut self,
        migration: &dyn MigrationTrait,
        direction: Direction,
        seen: &mut Vec<Blocker>,
    ) -> Result<(), Failure> {
        let (outer, inner) = self.begin(true).await.map_err(Failure::Db)?;
        let pid = backend_pid(&inner).await;
        let ran = match pid {
            Ok(pid) => {
                let manager = SchemaManager::new(&inner);
                watching(
                    run_migration(migration, &manager, direction),
                    self.watcher.as_mut(),
                    Some(pid),
                    seen,
                )
                .await
            }
            Err(err) => Err(err),
        };
        self.record_and_commit((outer, inner), ran, migration, direction)
            .await
    }

    /// A session for a non-transactional migration, with the run's timeouts as connection
    /// options, checked to be in force before anything runs on it.
    async fn session(&self, name: &str) -> Result<DatabaseConnection, RunError> {
        let needs_session = |reason: String| RunError::NeedsSession {
            name: name.to_owned(),
            reason,
        };
        let timeouts = self.options.timeouts();
        let startup: Vec<(&str, String)> = timeouts
            .iter()
            .map(|(setting, ms)| (*setting, format!("{ms}ms")))
            .collect();
        let session = connection::single(
            self.url,
            Role::Session,
            &startup,
            self.options.connect_timeout,
        )
        .await
        .map_err(|e| needs_session(format!("the connection with them was refused: {e}")))?;
        let check = timeouts
            .iter()
            .map(|(setting, ms)| {
                format!("(SELECT setting FROM pg_settings WHERE name = '{setting}') = '{ms}'")
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let in_force: Result<bool, DbErr> = async {
            session
                .query_one_raw(Statement::from_string(
                    DbBackend::Postgres,
                    format!("SELECT {check}"),
                ))
                .await?
                .ok_or_else(|| DbErr::Custom("no row".to_owned()))?
                .try_get_by_index(0)
        }
        .await;
        match in_force {
            Ok(true) => Ok(session),
            Ok(false) => {
                let _ = session.close().await;
                Err(needs_session(
                    "the timeouts given as connection options did not arrive (a pooler dropped them)"
                        .to_owned(),
                ))
            }
            Err(err) => {
                let _ = session.close().await;
                Err(needs_session(err.to_string()))
            }
        }
    }

    /// Fails as [`Applier::session`] would, before anything is applied, when `migration` will
    /// need a session this URL cannot give (a transaction-mode pooler refuses or drops the
    /// timeouts), so a run through a pooler stops at once rather than half-way.
    pub(crate) async fn check_session_for(
        &self,
        migration: &dyn MigrationTrait,
    ) -> Result<(), RunError> {
        if migration.use_transaction().unwrap_or(true) {
            return Ok(());
        }
        let _ = self.session(migration.name()).await?.close().await;
        Ok(())
    }

    async fn outside_transaction(
        &mut self,
        migration: &dyn MigrationTrait,
        direction: Direction,
        seen: &mut Vec<Blocker>,
    ) -> Result<(), Failure> {
        let session = self.session(migration.name()).await.map_err(Failure::Run)?;
        let pid = backend_pid(&session).await.ok();
        let manager = SchemaManager::new(&session);
        let ran = watching(
            run_migration(migration, &manager, direction),
            self.watcher.as_mut(),
            pid,
            seen,
        )
        .await;
        drop(manager);
        let _ = session.close().await;
        ran.map_err(Failure::Db)?;
        let scope = self.begin(false).await.map_err(Failure::Db)?;
        self.record_and_commit(scope, Ok(()), migration, direction)
            .await
    }

    /// Closes every connection and releases the lock.
    pub(crate) async fn close(self) {
        let _ = self.apply.close().await;
        if let Some(watcher) = self.watcher {
            watcher.close().await;
        }
        self.lock.release().await;
    }
}
