//! What [`crate::connect`] returns: the primary's pool and, when `DATABASE_REPLICA_URL` is set,
//! a streaming replica's. Everything given the [`Db`] itself goes to the primary: writes, every
//! transaction and every read inside one. Read-only helpers (finds, lists, pages, counts) may be
//! given its read side, [`Db::reads`], which uses the replica while it is fresh and the primary
//! otherwise. A read that must see the caller's own write is given [`Db::primary`] (or the `Db`).
//!
//! Whether the replica is fresh is one cheap query on it (`pg_last_wal_receive_lsn()`,
//! `pg_last_wal_replay_lsn()`, `pg_last_xact_replay_timestamp()`), its verdict kept for
//! [`VERDICT_TTL`] and renewed in the background: never a query per read, and no read waits for
//! one. A replica that is down, paused with WAL to replay,
//! or further behind than `DB_REPLICA_MAX_LAG_MS` sends reads to the primary: never an error.

use std::{
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use db_connect::{ConnectError, Pool, PoolSettings, PoolTransaction, Pooler, Topology};
use sea_orm::{
    AccessMode, ConnectionTrait, DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult,
    RuntimeErr, Statement, TransactionError, TransactionOptions, TransactionTrait, sqlx,
};

/// How long a verdict on the replica's freshness is trusted before it is checked again.
pub const VERDICT_TTL: Duration = Duration::from_millis(200);
/// How long a read waits for the replica to answer before it goes to the primary.
const REPLICA_TIMEOUT: Duration = Duration::from_secs(2);

/// The primary's pool and an optional replica's; see the module documentation.
#[derive(Debug, Clone)]
pub struct Db {
    primary: Pool,
    replica: Option<Arc<Replica>>,
}

/// Where reads go right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaState {
    /// No replica is configured.
    None,
    /// Reads go to the replica.
    Fresh,
    /// The replica lags beyond the limit (or is paused with WAL still to replay): reads go to
    /// the primary.
    Lagging,
    /// The replica does not answer: reads go to the primary.
    Down,
}

#[derive(Debug)]
struct Replica {
    pool: Pool,
    max_lag: Duration,
    verdict: Mutex<Option<(Instant, ReplicaState)>>,
    /// A check runs in the background; reads never wait for one.
    checking: AtomicBool,
}

/// Whether the replica has replayed everything it received (`caught_up`; unknown until it
/// streams again after a restart, and after one the received position starts at the segment
/// boundary, behind the replayed one), and how old its last replayed commit is. The age alone
/// grows on an idle primary, so it counts only when WAL is waiting.
const FRESHNESS: &str = "SELECT pg_is_in_recovery() AS in_recovery,
        COALESCE(pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn(), false) AS caught_up,
        pg_is_wal_replay_paused() AS paused,
        (EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()) * 1000)::float8 AS lag_ms";

impl Db {
    /// The pools of `topology`: the application's URL, whose first connection opens now (a
    /// wrong URL or a down server fails here, naming the cause, and a pooler said to keep
    /// prepared statements is checked), and the replica's when set, opened lazily: a replica
    /// that is down now is no error, reads go to the primary until it answers (behind a pooler
    /// its statements are inlined, as no check of its pooler runs before its first read).
    pub async fn connect(
        topology: &Topology,
        settings: &PoolSettings,
    ) -> Result<Self, ConnectError> {
        let primary = Pool::connect_through(
            &topology.application,
            topology.pooler,
            topology.pooled_statements,
            settings,
        )
        .await?;
        Self::with_replica(primary, topology, settings).await
    }

    /// Like [`Db::connect`], but the primary's pool too opens nothing until its first statement;
    /// behind a pooler its statements are then inlined, since checking that the pooler keeps
    /// prepared statements takes a connection.
    pub async fn connect_lazy(
        topology: &Topology,
        settings: &PoolSettings,
    ) -> Result<Self, ConnectError> {
        let primary = Pool::connect_lazy(&topology.application, topology.pooler, settings).await?;
        Self::with_replica(primary, topology, settings).await
    }

    async fn with_replica(
        primary: Pool,
        topology: &Topology,
        settings: &PoolSettings,
    ) -> Result<Self, ConnectError> {
        let replica = match &topology.replica {
            None => None,
            // Every use of it is bounded by REPLICA_TIMEOUT, however long its pool would wait.
            Some(url) => Some(Arc::new(Replica {
                pool: Pool::connect_lazy(url, topology.replica_pooler(), settings).await?,
                max_lag: topology.replica_max_lag,
                verdict: Mutex::new(None),
                checking: AtomicBool::new(false),
            })),
        };
        Ok(Self { primary, replica })
    }

    /// The primary, for reads that must see the caller's own writes.
    pub fn primary(&self) -> &Pool {
        &self.primary
    }

    /// The read side, for read-only helpers: the replica while it is fresh, else the primary.
    pub fn reads(&self) -> Reads<'_> {
        Reads { db: self }
    }

    /// Where reads go now, checking the replica first (and waiting for the check) if the last
    /// verdict is older than [`VERDICT_TTL`].
    pub async fn replica_state(&self) -> ReplicaState {
        match &self.replica {
            None => ReplicaState::None,
            Some(replica) => replica.state().await,
        }
    }

    /// Forgets the last verdict: reads go to the primary until the next check says otherwise.
    pub fn recheck_replica(&self) {
        if let Some(replica) = &self.replica {
            *replica.verdict.lock().expect("verdict lock") = None;
        }
    }

    /// What the primary's URL goes through.
    pub fn pooler(&self) -> Pooler {
        self.primary.pooler()
    }

    /// Closes every connection of both pools (clones of this `Db` included).
    pub async fn close(self) -> Result<(), DbErr> {
        if let Some(replica) = &self.replica {
            replica.pool.clone().close().await?;
        }
        self.primary.close().await
    }
}

impl Replica {
    fn cached(&self) -> Option<(Instant, ReplicaState)> {
        *self.verdict.lock().expect("verdict lock")
    }

    fn store(&self, state: ReplicaState) {
        *self.verdict.lock().expect("verdict lock") = Some((Instant::now(), state));
    }

    /// The verdict, checked now if it is stale.
    async fn state(&self) -> ReplicaState {
        match self.cached() {
            Some((at, state)) if at.elapsed() < VERDICT_TTL => state,
            _ => {
                let state = self.check().await;
                self.store(state);
                state
            }
        }
    }

    /// The verdict at once, for a read: a stale one starts a check in the background (one at a
    /// time), so a replica that is slow to refuse costs no read a wait. Until the first check
    /// has answered, reads go to the primary.
    fn state_now(self: &Arc<Self>) -> ReplicaState {
        let cached = self.cached();
        let stale = cached.is_none_or(|(at, _)| at.elapsed() >= VERDICT_TTL);
        if stale && !self.checking.swap(true, Ordering::AcqRel) {
            let replica = Arc::clone(self);
            tokio::spawn(async move {
                let state = replica.check().await;
                replica.store(state);
                replica.checking.store(false, Ordering::Release);
            });
        }
        cached.map_or(ReplicaState::Down, |(_, state)| state)
    }

    async fn check(&self) -> ReplicaState {
        let checked = tokio::time::timeout(
            REPLICA_TIMEOUT,
            self.pool
                .query_one_raw(Statement::from_string(DbBackend::Postgres, FRESHNESS)),
        )
        .await;
        let row = match checked {
            Ok(Ok(Some(row))) => row,
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => return ReplicaState::Down,
        };
        let read = |column: &str| row.try_get::<Option<bool>>("", column).ok().flatten();
        let lag_ms = row.try_get::<Option<f64>>("", "lag_ms").ok().flatten();
        let fresh = read("in_recovery") == Some(true)
            && (read("caught_up") == Some(true)
                || (read("paused") == Some(false)
                    && lag_ms.is_some_and(|lag| lag <= self.max_lag.as_secs_f64() * 1000.0)));
        match fresh {
            true => ReplicaState::Fresh,
            false => ReplicaState::Lagging,
        }
    }

    fn mark_down(&self) {
        self.store(ReplicaState::Down);
    }
}

/// A failure of the replica itself rather than of the statement: the read is retried on the
/// primary.
fn replica_unavailable(err: &DbErr) -> bool {
    let sqlx_error = match err {
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => return true,
        DbErr::Query(RuntimeErr::SqlxError(e)) | DbErr::Exec(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match &**sqlx_error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        // Connection exceptions, shutdown, and a standby cancelling a query that conflicts
        // with replay.
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || code.starts_with("57P") || code == "40001"
        }),
        _ => false,
    }
}

/// The read side of a [`Db`]; see [`Db::reads`]. Statements that return rows go to the replica
/// while it is fresh; statements that return none (`execute`) always go to the primary. A
/// statement that writes and returns rows (`UPDATE ... RETURNING`) fails on the replica with
/// PostgreSQL's read-only error: give such helpers the `Db`.
#[derive(Debug, Clone, Copy)]
pub struct Reads<'a> {
    db: &'a Db,
}

impl<'a> Reads<'a> {
    fn fresh_replica(&self) -> Option<&'a Replica> {
        let replica = self.db.replica.as_ref()?;
        (replica.state_now() == ReplicaState::Fresh).then_some(replica)
    }

    async fn read<T, F, Fut>(&self, stmt: Statement, run: F) -> Result<T, DbErr>
    where
        F: Fn(&'a Pool, Statement) -> Fut,
        Fut: Future<Output = Result<T, DbErr>>,
    {
        if let Some(replica) = self.fresh_replica() {
            match tokio::time::timeout(REPLICA_TIMEOUT, run(&replica.pool, stmt.clone())).await {
                Ok(Err(err)) if replica_unavailable(&err) => replica.mark_down(),
                Ok(result) => return result,
                Err(_) => replica.mark_down(),
            }
        }
        run(&self.db.primary, stmt).await
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Reads<'_> {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.db.primary.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.db.primary.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.read(stmt, |pool, stmt| pool.query_one_raw(stmt)).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.read(stmt, |pool, stmt| pool.query_all_raw(stmt)).await
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Db {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.primary.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.primary.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.primary.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.primary.query_all_raw(stmt).await
    }
}

type Callback<'c, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>;

/// Transactions run on the primary, every read in them included.
#[async_trait::async_trait]
impl TransactionTrait for Db {
    type Transaction = PoolTransaction;

    async fn begin(&self) -> Result<PoolTransaction, DbErr> {
        self.primary.begin().await
    }

    async fn begin_with_config(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<PoolTransaction, DbErr> {
        self.primary
            .begin_with_config(isolation_level, access_mode)
            .await
    }

    async fn begin_with_options(
        &self,
        options: TransactionOptions,
    ) -> Result<PoolTransaction, DbErr> {
        self.primary.begin_with_options(options).await
    }

    async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(&'c PoolTransaction) -> Callback<'c, T, E> + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.primary.transaction(callback).await
    }

    async fn transaction_with_config<F, T, E>(
        &self,
        callback: F,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<T, TransactionError<E>>
    where
        F: for<'c> FnOnce(&'c PoolTransaction) -> Callback<'c, T, E> + Send,
        T: Send,
        E: std::fmt::Display + std::fmt::Debug + Send,
    {
        self.primary
            .transaction_with_config(callback, isolation_level, access_mode)
            .await
    }
}

/// A `Db` of one pool, without a replica.
impl From<Db> for Pool {
    /// The primary's pool: what writers (a worker, say) hold.
    fn from(db: Db) -> Self {
        db.primary().clone()
    }
}

impl From<Pool> for Db {
    fn from(primary: Pool) -> Self {
        Self {
            primary,
            replica: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sea_orm::{ConnAcquireErr, sqlx::error::DatabaseError};

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

        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
    }

    fn query(err: sqlx::Error) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(err)))
    }

    fn exec(err: sqlx::Error) -> DbErr {
        DbErr::Exec(RuntimeErr::SqlxError(Arc::new(err)))
    }

    fn server(code: &'static str) -> sqlx::Error {
        sqlx::Error::Database(Box::new(Server(code)))
    }

    #[test]
    fn failures_of_the_replica_itself_send_the_read_to_the_primary() {
        let io = || sqlx::Error::Io(std::io::Error::other("connection reset"));
        for err in [
            DbErr::Conn(RuntimeErr::Internal("gone".into())),
            DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
            query(io()),
            exec(io()),
            query(sqlx::Error::Tls("handshake".into())),
            query(sqlx::Error::Protocol("unexpected message".into())),
            query(sqlx::Error::PoolTimedOut),
            query(sqlx::Error::PoolClosed),
            query(sqlx::Error::WorkerCrashed),
            // Connection exceptions, shutdown, a conflict with replay.
            query(server("08006")),
            query(server("57P01")),
            exec(server("57P03")),
            query(server("40001")),
        ] {
            assert!(
                replica_unavailable(&err),
                "{err:?} is the replica's failure"
            );
        }
    }

    #[test]
    fn a_statements_own_error_is_the_callers() {
        for err in [
            query(server("22012")),
            exec(server("23505")),
            query(server("42P01")),
            query(server("40P01")),
            query(sqlx::Error::RowNotFound),
            DbErr::Custom("no row".into()),
            DbErr::RecordNotFound("x".into()),
        ] {
            assert!(
                !replica_unavailable(&err),
                "{err:?} is the statement's error"
            );
        }
    }
}
