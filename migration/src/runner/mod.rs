//! Applies and rolls back migrations while holding the migration lock, so two deployments
//! migrating one database at once run one after the other: the second waits, then finds nothing
//! left to do. Every migration runs with a `lock_timeout` (and, if set, a `statement_timeout`) of
//! its own and is tried again when it times out waiting for a lock; a transactional one runs and
//! is recorded in one transaction, so a failed attempt leaves neither its changes nor its
//! `seaql_migrations` row.
//!
//! Modules: [`lock`] (the advisory lock on its dedicated connection), [`apply`] (one migration,
//! in a transaction or on a session of its own), [`blockers`] (who it waited for),
//! [`connection`] (connections safe through a transaction-mode pooler), [`options`].

use std::{collections::HashSet, time::Duration};

use db_connect::{ConnectError, DatabaseUrl};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use sea_orm_migration::{MigrationStatus, MigrationTrait, MigratorTrait};

mod apply;
pub mod blockers;
mod connection;
mod lock;
pub mod options;

pub use apply::CAPTURE_TARGET;
use apply::{Applier, Direction};
pub use blockers::Blocker;
pub use options::{OptionsError, RunOptions};

/// The advisory-lock key every migration run of this schema takes ("migratio" as ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x6d69_6772_6174_696f;

/// What to do to the schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Apply pending migrations (all, or the first N).
    Up(Option<u32>),
    /// Roll back applied migrations, newest first (N of them, default 1).
    Down(u32),
    /// Drop every table and function of the schema, then apply everything.
    Fresh,
    /// Roll back everything, then apply everything.
    Refresh,
    /// Roll back everything and remove the migration table.
    Reset,
}

/// One step of a run, for progress output.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    WaitingForLock,
    LockAcquired {
        waited: Duration,
    },
    DroppedEverything {
        tables: usize,
    },
    Applied {
        name: String,
        took: Duration,
    },
    RolledBack {
        name: String,
        took: Duration,
    },
    /// A migration timed out waiting for a lock (`attempt` of `attempts`); it was rolled back
    /// and runs again after `retry_in`.
    LockRetry {
        name: String,
        attempt: u32,
        attempts: u32,
        blockers: Vec<Blocker>,
        retry_in: Duration,
    },
    NothingToDo,
    Uninstalled,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A connection of the run could not open: its cause and the URL, password masked.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("could not take the migration lock: {0}")]
    Lock(#[source] DbErr),
    #[error(
        "lost the migration lock before {next}: {reason}. Stopped so that no other run applies migrations at the same time; run `up` again"
    )]
    LockLost { next: String, reason: String },
    #[error("migration {name} failed and was rolled back: {source}")]
    Migration {
        name: String,
        #[source]
        source: DbErr,
    },
    #[error(
        "migration {name} runs outside a transaction and failed: {source}. It is not recorded; what it completed stays (an index it left invalid is rebuilt by the next run)"
    )]
    NonTransactional {
        name: String,
        #[source]
        source: DbErr,
    },
    #[error(
        "migration {name} gave up after {attempts} attempts, each stopped by its lock timeout ({} ms) while waiting for a lock; nothing of it was applied. Blocked by: {}",
        lock_timeout.as_millis(),
        blockers::describe(blockers)
    )]
    LockTimeout {
        name: String,
        attempts: u32,
        lock_timeout: Duration,
        blockers: Vec<Blocker>,
        #[source]
        source: DbErr,
    },
    #[error(
        "migration {name} runs outside a transaction, so it needs a session of its own with the migration timeouts, which this URL did not give ({reason}); point MIGRATION_DATABASE_URL at PostgreSQL directly, not through a transaction-mode pooler"
    )]
    NeedsSession { name: String, reason: String },
    #[error("reading the migration state failed: {0}")]
    State(#[source] DbErr),
}

/// A migration's name and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// Runs `action` with the lock held and the default [`RunOptions`], reporting each step.
pub async fn run<M: MigratorTrait>(
    url: &DatabaseUrl,
    action: Action,
    progress: impl FnMut(Progress),
) -> Result<(), RunError> {
    run_with::<M>(url, action, &RunOptions::default(), progress).await
}

/// Runs `action` with the lock held, reporting each step to `progress`.
pub async fn run_with<M: MigratorTrait>(
    url: &DatabaseUrl,
    action: Action,
    options: &RunOptions,
    mut progress: impl FnMut(Progress),
) -> Result<(), RunError> {
    let lock = lock::MigrationLock::acquire(url, options, &mut progress).await?;
    let apply = match connection::single(url, connection::Role::Apply, &[], options.connect_timeout)
        .await
    {
        Ok(apply) => apply,
        Err(err) => {
            lock.release().await;
            return Err(err.into());
        }
    };
    let mut applier = Applier {
        url,
        options,
        table: M::migration_table_name(),
        apply,
        lock,
        watcher: blockers::Watcher::open(url, options).await,
    };
    let result = perform::<M>(&mut applier, action, &mut progress).await;
    applier.close().await;
    result
}

async fn perform<M: MigratorTrait>(
    applier: &mut Applier<'_>,
    action: Action,
    progress: &mut impl FnMut(Progress),
) -> Result<(), RunError> {
    match action {
        Action::Up(limit) => up::<M>(applier, limit, progress).await,
        Action::Down(count) => down::<M>(applier, Some(count), progress).await,
        Action::Fresh => {
            let tables = applier
                .in_transaction(async |txn| drop_everything(txn).await)
                .await
                .map_err(RunError::State)?;
            progress(Progress::DroppedEverything { tables });
            up::<M>(applier, None, progress).await
        }
        Action::Refresh => {
            down::<M>(applier, None, progress).await?;
            up::<M>(applier, None, progress).await
        }
        Action::Reset => {
            down::<M>(applier, None, progress).await?;
            applier
                .in_transaction(async |txn| M::uninstall(txn).await)
                .await
                .map_err(RunError::State)?;
            progress(Progress::Uninstalled);
            Ok(())
        }
    }
}

/// The names of the applied migrations (creating the migration table if needed).
async fn applied_names<M: MigratorTrait>(
    applier: &Applier<'_>,
) -> Result<HashSet<String>, RunError> {
    applier
        .in_transaction(async |txn| M::get_migration_with_status(txn).await)
        .await
        .map(|all| {
            all.iter()
                .filter(|m| m.status() == MigrationStatus::Applied)
                .map(|m| m.name().to_owned())
                .collect()
        })
        .map_err(RunError::State)
}

async fn up<M: MigratorTrait>(
    applier: &mut Applier<'_>,
    limit: Option<u32>,
    progress: &mut impl FnMut(Progress),
) -> Result<(), RunError> {
    steps::<M>(applier, Direction::Up, limit, progress).await
}

async fn down<M: MigratorTrait>(
    applier: &mut Applier<'_>,
    limit: Option<u32>,
    progress: &mut impl FnMut(Progress),
) -> Result<(), RunError> {
    steps::<M>(applier, Direction::Down, limit, progress).await
}

/// Applies the pending migrations in order, or rolls back the applied ones newest first.
async fn steps<M: MigratorTrait>(
    applier: &mut Applier<'_>,
    direction: Direction,
    limit: Option<u32>,
    progress: &mut impl FnMut(Progress),
) -> Result<(), RunError> {
    let applied = applied_names::<M>(applier).await?;
    let mut all = M::migrations();
    if direction == Direction::Down {
        all.reverse();
    }
    let todo: Vec<Box<dyn MigrationTrait>> = all
        .into_iter()
        .filter(|m| applied.contains(m.name()) == (direction == Direction::Down))
        .take(limit.map_or(usize::MAX, |n| n as usize))
        .collect();
    if todo.is_empty() {
        progress(Progress::NothingToDo);
    }
    if let Some(first) = todo.iter().find(|m| m.use_transaction() == Some(false)) {
        applier.check_session_for(first.as_ref()).await?;
    }
    for migration in todo {
        let took = applier
            .step(migration.as_ref(), direction, progress)
            .await?;
        let name = migration.name().to_owned();
        progress(match direction {
            Direction::Up => Progress::Applied { name, took },
            Direction::Down => Progress::RolledBack { name, took },
        });
    }
    Ok(())
}

/// Drops every table and every function (except those of extensions) in the current schema,
/// in the caller's transaction. Returns how many tables there were.
async fn drop_everything(db: &impl ConnectionTrait) -> Result<usize, DbErr> {
    let tables = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()",
        ))
        .await?
        .len();
    db.execute_unprepared(
        "DO $$
         DECLARE r record;
         BEGIN
             FOR r IN SELECT tablename FROM pg_tables WHERE schemaname = current_schema() LOOP
                 EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', r.tablename);
             END LOOP;
             FOR r IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                      WHERE p.pronamespace = current_schema()::regnamespace
                        AND NOT EXISTS (SELECT 1 FROM pg_depend d
                                        WHERE d.objid = p.oid AND d.deptype = 'e') LOOP
                 EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', r.signature);
             END LOOP;
         END
         $$",
    )
    .await?;
    Ok(tables)
}

/// Every migration with whether it is applied, without creating or changing anything.
pub async fn status<M: MigratorTrait>(url: &DatabaseUrl) -> Result<Vec<MigrationState>, RunError> {
    status_with::<M>(url, &RunOptions::default()).await
}

/// [`status`], connecting within `options`' connect timeout.
pub async fn status_with<M: MigratorTrait>(
    url: &DatabaseUrl,
    options: &RunOptions,
) -> Result<Vec<MigrationState>, RunError> {
    let db = connection::single(url, connection::Role::Apply, &[], options.connect_timeout).await?;
    let read = async {
        let txn = sea_orm::TransactionTrait::begin(&db).await?;
        let states = M::get_migration_with_status_read_only(&txn).await;
        // Through a transaction-mode pooler, prepared statements must not outlive the transaction.
        let _ = txn.execute_unprepared("DEALLOCATE ALL").await;
        txn.rollback().await?;
        states
    }
    .await;
    db.close().await.ok();
    Ok(read
        .map_err(RunError::State)?
        .into_iter()
        .map(|m| MigrationState {
            name: m.name().to_owned(),
            applied: m.status() == MigrationStatus::Applied,
        })
        .collect())
}
