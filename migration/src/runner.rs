//! Applies and rolls back migrations while holding a PostgreSQL advisory lock, so two
//! deployments migrating one database at once run one after the other: the second waits, then
//! finds nothing left to do. Each migration runs in its own transaction (SeaORM's default on
//! PostgreSQL), so a failing one leaves neither its tables nor its `seaql_migrations` row.

use std::time::{Duration, Instant};

use db_support::{DatabaseUrl, PoolSettings};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, Statement};
use sea_orm_migration::{MigrationStatus, MigratorTrait};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    WaitingForLock,
    LockAcquired { waited: Duration },
    DroppedEverything { tables: usize },
    Applied { name: String, took: Duration },
    RolledBack { name: String, took: Duration },
    NothingToDo,
    Uninstalled,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("could not connect to {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: DbErr,
    },
    #[error("could not take the migration lock: {0}")]
    Lock(#[source] DbErr),
    #[error("migration {name} failed and was rolled back: {source}")]
    Migration {
        name: String,
        #[source]
        source: DbErr,
    },
    #[error("reading the migration state failed: {0}")]
    State(#[source] DbErr),
}

/// A migration's name and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

/// A connection of one: the advisory lock is per session, so it needs a session of its own.
async fn single_connection(url: &DatabaseUrl) -> Result<DatabaseConnection, RunError> {
    let settings = PoolSettings {
        max_connections: 1,
        ..PoolSettings::default()
    };
    db_support::connect(url, &settings)
        .await
        .map_err(|source| RunError::Connect {
            url: url.to_string(),
            source,
        })
}

async fn query_bool(db: &DatabaseConnection, sql: &str) -> Result<bool, DbErr> {
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            [MIGRATION_LOCK_KEY.into()],
        ))
        .await?
        .ok_or_else(|| DbErr::Custom(format!("`{sql}` returned no row")))?;
    row.try_get_by_index(0)
}

/// Runs `action` with the lock held, reporting each step to `progress`.
pub async fn run<M: MigratorTrait>(
    url: &DatabaseUrl,
    action: Action,
    mut progress: impl FnMut(Progress),
) -> Result<(), RunError> {
    let lock = single_connection(url).await?;
    let started = Instant::now();
    if !query_bool(&lock, "SELECT pg_try_advisory_lock($1)")
        .await
        .map_err(RunError::Lock)?
    {
        progress(Progress::WaitingForLock);
        // Polled, not a blocking pg_advisory_lock: a session blocked in that statement holds a
        // snapshot, and the other run's CREATE INDEX CONCURRENTLY waits for every older
        // snapshot to end, so the two would wait for each other for ever.
        let mut pause = Duration::from_millis(50);
        while !query_bool(&lock, "SELECT pg_try_advisory_lock($1)")
            .await
            .map_err(RunError::Lock)?
        {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
    progress(Progress::LockAcquired {
        waited: started.elapsed(),
    });

    let db = single_connection(url).await?;
    let result = apply::<M>(&db, action, &mut progress).await;
    db.close().await.ok();
    // Closing the session releases the lock even if the unlock below cannot be sent.
    let _ = query_bool(&lock, "SELECT pg_advisory_unlock($1)").await;
    lock.close().await.ok();
    result
}

async fn apply<M: MigratorTrait>(
    db: &DatabaseConnection,
    action: Action,
    progress: &mut impl FnMut(Progress),
) -> Result<(), RunError> {
    match action {
        Action::Up(limit) => up::<M>(db, limit, progress).await,
        Action::Down(count) => down::<M>(db, Some(count), progress).await,
        Action::Fresh => {
            let tables = drop_everything(db).await.map_err(RunError::State)?;
            progress(Progress::DroppedEverything { tables });
            up::<M>(db, None, progress).await
        }
        Action::Refresh => {
            down::<M>(db, None, progress).await?;
            up::<M>(db, None, progress).await
        }
        Action::Reset => {
            down::<M>(db, None, progress).await?;
            M::uninstall(db).await.map_err(RunError::State)?;
            progress(Progress::Uninstalled);
            Ok(())
        }
    }
}

async fn up<M: MigratorTrait>(
    db: &DatabaseConnection,
    limit: Option<u32>,
    progress: &mut impl FnMut(Progress),
) -> Result<(), RunError> {
    let pending = M::get_pending_migrations(db)
        .await
        .map_err(RunError::State)?;
    let take = limit.map_or(pending.len(), |n| n as usize);
    if pending.is_empty() || take == 0 {
        progress(Progress::NothingToDo);
    }
    for migration in pending.iter().take(take) {
        let name = migration.name().to_owned();
        let started = Instant::now();
        // One step at a time, so each migration is timed and runs in its own transaction.
        M::up(db, Some(1))
            .await
            .map_err(|source| RunError::Migration {
                name: name.clone(),
                source,
            })?;
        progress(Progress::Applied {
            name,
            took: started.elapsed(),
        });
    }
    Ok(())
}

async fn down<M: MigratorTrait>(
    db: &DatabaseConnection,
    limit: Option<u32>,
    progress: &mut impl FnMut(Progress),
) -> Result<(), RunError> {
    let applied = M::get_applied_migrations(db)
        .await
        .map_err(RunError::State)?;
    let take = limit.map_or(applied.len(), |n| n as usize);
    if applied.is_empty() || take == 0 {
        progress(Progress::NothingToDo);
    }
    for migration in applied.iter().rev().take(take) {
        let name = migration.name().to_owned();
        let started = Instant::now();
        M::down(db, Some(1))
            .await
            .map_err(|source| RunError::Migration {
                name: name.clone(),
                source,
            })?;
        progress(Progress::RolledBack {
            name,
            took: started.elapsed(),
        });
    }
    Ok(())
}

/// Drops every table and every function (except those of extensions) in the current schema,
/// in one transaction. Returns how many tables there were.
async fn drop_everything(db: &DatabaseConnection) -> Result<usize, DbErr> {
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
    let db = single_connection(url).await?;
    let states = M::get_migration_with_status_read_only(&db)
        .await
        .map_err(RunError::State)?
        .into_iter()
        .map(|m| MigrationState {
            name: m.name().to_owned(),
            applied: m.status() == MigrationStatus::Applied,
        })
        .collect();
    db.close().await.ok();
    Ok(states)
}
