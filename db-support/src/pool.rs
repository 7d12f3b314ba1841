//! The connection pool services hold: one database, reached directly or through a
//! transaction-mode pooler. It implements SeaORM's `ConnectionTrait` and `TransactionTrait`, so
//! every helper (`&impl ConnectionTrait`) and every transaction works the same either way.
//!
//! Directly, it is SeaORM's own pool: statements are prepared once per connection and cached.
//! Through a transaction-mode pooler nothing may outlive a transaction on the server session,
//! and sqlx cannot send a statement's `Parse` and `Bind` in one `Sync` (the pooler may hand the
//! second to another session). So there every statement goes out in the simple query protocol
//! with its parameters written in as typed literals ([`crate::inline`]): one message, one round
//! trip, nothing named or prepared on the server; transactions are `BEGIN`/`COMMIT` on one
//! client connection, which the pooler pins to one server session until the transaction ends.

use std::{future::Future, pin::Pin, sync::Arc};

use sea_orm::{
    AccessMode, ConnAcquireErr, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction,
    DbBackend, DbErr, ExecResult, IsolationLevel, QueryResult, RuntimeErr, Statement,
    TransactionError, TransactionOptions, TransactionSession, TransactionTrait, sqlx,
};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, pool::PoolConnection, postgres::PgPool};
use sqlx_core::transaction::TransactionManager;
use tokio::sync::Mutex;

use crate::{
    config::{DatabaseUrl, PoolSettings},
    connect::connect_options,
    inline::inline,
    topology::Pooler,
};

type Manager = <Postgres as sqlx::Database>::TransactionManager;

/// A pool of connections to one database; see the module documentation.
#[derive(Debug, Clone)]
pub struct Pool {
    conn: DatabaseConnection,
    pooler: Pooler,
}

impl Pool {
    /// A pool for `url` with `settings`, safe for what sits in front of the database. Its first
    /// connection opens now, so a wrong URL or a down server fails here.
    pub async fn connect(
        url: &DatabaseUrl,
        pooler: Pooler,
        settings: &PoolSettings,
    ) -> Result<Self, DbErr> {
        Self::open(url, pooler, settings, false).await
    }

    /// Like [`Pool::connect`], but no connection opens until the first statement, so a server
    /// that is down now is not an error now (a replica that may come back).
    pub async fn connect_lazy(
        url: &DatabaseUrl,
        pooler: Pooler,
        settings: &PoolSettings,
    ) -> Result<Self, DbErr> {
        Self::open(url, pooler, settings, true).await
    }

    async fn open(
        url: &DatabaseUrl,
        pooler: Pooler,
        settings: &PoolSettings,
        lazy: bool,
    ) -> Result<Self, DbErr> {
        let mut options = connect_options(url, settings);
        options.connect_lazy(lazy);
        if pooler == Pooler::Transaction {
            // No statement is ever prepared by name, so there is nothing to cache. (This map
            // replaces the one of `connect_options`, so it leaves `extra_float_digits` out too.)
            options.map_sqlx_postgres_opts(|options| {
                options.extra_float_digits(None).statement_cache_capacity(0)
            });
        }
        Ok(Self {
            conn: Database::connect(options).await?,
            pooler,
        })
    }

    /// A pool around a SeaORM connection that reaches its database directly.
    pub fn direct(conn: DatabaseConnection) -> Self {
        Self {
            conn,
            pooler: Pooler::None,
        }
    }

    /// What sits between this pool and PostgreSQL.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// SeaORM's connection, when nothing sits between it and PostgreSQL (for what needs
    /// SeaORM's own type, such as the migrator); `None` through a transaction-mode pooler,
    /// where SeaORM's prepared statements break.
    pub fn as_direct(&self) -> Option<&DatabaseConnection> {
        (self.pooler == Pooler::None).then_some(&self.conn)
    }

    /// Checks that a connection can be used.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await
    }

    /// Closes every connection; later calls fail.
    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await
    }

    fn sqlx(&self) -> &PgPool {
        self.conn.get_postgres_connection_pool()
    }
}

// SeaORM's own mapping of sqlx errors (not public in SeaORM), so callers see the same `DbErr`s
// whichever way the pool reaches the database.
fn sqlx_error_to_exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(err.into()))
}

fn sqlx_error_to_query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(err.into()))
}

fn sqlx_conn_acquire_err(err: sqlx::Error) -> DbErr {
    match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(other.into())),
    }
}

/// The statement as one simple-protocol query.
fn simple(stmt: &Statement) -> Result<AssertSqlSafe<String>, DbErr> {
    let values = stmt.values.as_ref().map_or(&[][..], |v| &v.0[..]);
    inline(&stmt.sql, values)
        .map(AssertSqlSafe)
        .map_err(|err| DbErr::Custom(err.to_string()))
}

async fn execute_on(conn: &mut PgConnection, stmt: &Statement) -> Result<ExecResult, DbErr> {
    sqlx::raw_sql(simple(stmt)?)
        .execute(conn)
        .await
        .map(ExecResult::from)
        .map_err(sqlx_error_to_exec_err)
}

async fn query_one_on(
    conn: &mut PgConnection,
    stmt: &Statement,
) -> Result<Option<QueryResult>, DbErr> {
    sqlx::raw_sql(simple(stmt)?)
        .fetch_optional(conn)
        .await
        .map(|row| row.map(QueryResult::from))
        .map_err(sqlx_error_to_query_err)
}

async fn query_all_on(
    conn: &mut PgConnection,
    stmt: &Statement,
) -> Result<Vec<QueryResult>, DbErr> {
    sqlx::raw_sql(simple(stmt)?)
        .fetch_all(conn)
        .await
        .map(|rows| rows.into_iter().map(QueryResult::from).collect())
        .map_err(sqlx_error_to_query_err)
}

#[async_trait::async_trait]
impl ConnectionTrait for Pool {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self.pooler {
            Pooler::None => self.conn.execute_raw(stmt).await,
            Pooler::Transaction => {
                let mut conn = self.sqlx().acquire().await.map_err(sqlx_conn_acquire_err)?;
                execute_on(&mut conn, &stmt).await
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        // Already one simple-protocol query, with nothing prepared.
        self.conn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.pooler {
            Pooler::None => self.conn.query_one_raw(stmt).await,
            Pooler::Transaction => {
                let mut conn = self.sqlx().acquire().await.map_err(sqlx_conn_acquire_err)?;
                query_one_on(&mut conn, &stmt).await
            }
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.pooler {
            Pooler::None => self.conn.query_all_raw(stmt).await,
            Pooler::Transaction => {
                let mut conn = self.sqlx().acquire().await.map_err(sqlx_conn_acquire_err)?;
                query_all_on(&mut conn, &stmt).await
            }
        }
    }
}

/// A transaction of a [`Pool`]: SeaORM's own directly, one pinned client connection through a
/// transaction-mode pooler. `begin` on it opens a savepoint; dropping it unfinished rolls back.
#[derive(Debug)]
pub struct PoolTransaction(Open);

#[derive(Debug)]
enum Open {
    Direct(DatabaseTransaction),
    Pooled(PooledTransaction),
}

/// One client connection in a transaction (or a savepoint of one), statements in the simple
/// protocol. Nested transactions share the connection; sqlx counts the depth on it.
#[derive(Debug)]
struct PooledTransaction {
    conn: Arc<Mutex<PoolConnection<Postgres>>>,
    open: bool,
}

impl PooledTransaction {
    async fn begin(
        conn: Arc<Mutex<PoolConnection<Postgres>>>,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<Self, DbErr> {
        {
            let mut guard = conn.lock().await;
            let top_level = Manager::get_transaction_depth(&guard) == 0;
            let mut settings = Vec::new();
            if let Some(level) = isolation_level {
                settings.push(format!("ISOLATION LEVEL {level}"));
            }
            if let Some(mode) = access_mode {
                settings.push(mode.to_string());
            }
            if top_level && !settings.is_empty() {
                // One round trip: the settings ride on BEGIN itself.
                let begin = format!("BEGIN {}", settings.join(" "));
                Manager::begin(
                    &mut guard,
                    Some(sqlx::SqlSafeStr::into_sql_str(AssertSqlSafe(begin))),
                )
                .await
                .map_err(sqlx_error_to_query_err)?;
            } else {
                Manager::begin(&mut guard, None)
                    .await
                    .map_err(sqlx_error_to_query_err)?;
                if !settings.is_empty() {
                    let set = format!("SET TRANSACTION {}", settings.join(" "));
                    sqlx::raw_sql(AssertSqlSafe(set))
                        .execute(&mut **guard)
                        .await
                        .map_err(sqlx_error_to_exec_err)?;
                }
            }
        }
        Ok(Self { conn, open: true })
    }

    async fn finish(mut self, commit: bool) -> Result<(), DbErr> {
        let mut guard = self.conn.lock().await;
        let result = match commit {
            true => Manager::commit(&mut guard).await,
            false => Manager::rollback(&mut guard).await,
        };
        drop(guard);
        self.open = false;
        result.map_err(sqlx_error_to_query_err)
    }
}

impl Drop for PooledTransaction {
    fn drop(&mut self) {
        if self.open {
            // Queued: sent before anything else on this connection, or when the pool takes it
            // back (it pings every returned connection).
            match self.conn.try_lock() {
                Ok(mut guard) => Manager::start_rollback(&mut guard),
                Err(_) => {
                    tracing::error!("a transaction was dropped while in use; not rolled back")
                }
            }
        }
    }
}

impl Pool {
    async fn begin_pool_transaction(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<PoolTransaction, DbErr> {
        Ok(PoolTransaction(match self.pooler {
            Pooler::None => Open::Direct(
                self.conn
                    .begin_with_config(isolation_level, access_mode)
                    .await?,
            ),
            Pooler::Transaction => {
                let conn = self.sqlx().acquire().await.map_err(sqlx_conn_acquire_err)?;
                Open::Pooled(
                    PooledTransaction::begin(
                        Arc::new(Mutex::new(conn)),
                        isolation_level,
                        access_mode,
                    )
                    .await?,
                )
            }
        }))
    }
}

impl PoolTransaction {
    /// Commits (or releases the savepoint of a nested transaction).
    pub async fn commit(self) -> Result<(), DbErr> {
        match self.0 {
            Open::Direct(txn) => txn.commit().await,
            Open::Pooled(txn) => txn.finish(true).await,
        }
    }

    /// Rolls back (or back to the savepoint of a nested transaction).
    pub async fn rollback(self) -> Result<(), DbErr> {
        match self.0 {
            Open::Direct(txn) => txn.rollback().await,
            Open::Pooled(txn) => txn.finish(false).await,
        }
    }

    async fn nested(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<PoolTransaction, DbErr> {
        Ok(PoolTransaction(match &self.0 {
            Open::Direct(txn) => {
                Open::Direct(txn.begin_with_config(isolation_level, access_mode).await?)
            }
            Open::Pooled(txn) => Open::Pooled(
                PooledTransaction::begin(txn.conn.clone(), isolation_level, access_mode).await?,
            ),
        }))
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for PoolTransaction {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match &self.0 {
            Open::Direct(txn) => txn.execute_raw(stmt).await,
            Open::Pooled(txn) => execute_on(&mut **txn.conn.lock().await, &stmt).await,
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.0 {
            Open::Direct(txn) => txn.execute_unprepared(sql).await,
            Open::Pooled(txn) => sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
                .execute(&mut **txn.conn.lock().await)
                .await
                .map(ExecResult::from)
                .map_err(sqlx_error_to_exec_err),
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match &self.0 {
            Open::Direct(txn) => txn.query_one_raw(stmt).await,
            Open::Pooled(txn) => query_one_on(&mut **txn.conn.lock().await, &stmt).await,
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.0 {
            Open::Direct(txn) => txn.query_all_raw(stmt).await,
            Open::Pooled(txn) => query_all_on(&mut **txn.conn.lock().await, &stmt).await,
        }
    }
}

#[async_trait::async_trait]
impl TransactionSession for PoolTransaction {
    async fn commit(self) -> Result<(), DbErr> {
        PoolTransaction::commit(self).await
    }

    async fn rollback(self) -> Result<(), DbErr> {
        PoolTransaction::rollback(self).await
    }
}

type Callback<'c, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>;

/// Runs `callback` in `txn`, committing when it succeeds and rolling back when it fails.
async fn run_in<T, E>(
    txn: Result<PoolTransaction, DbErr>,
    callback: impl for<'c> FnOnce(&'c PoolTransaction) -> Callback<'c, T, E> + Send,
) -> Result<T, TransactionError<E>>
where
    T: Send,
    E: std::fmt::Display + std::fmt::Debug + Send,
{
    let txn = txn.map_err(TransactionError::Connection)?;
    let result = callback(&txn).await.map_err(TransactionError::Transaction);
    match result.is_ok() {
        true => txn.commit().await,
        false => txn.rollback().await,
    }
    .map_err(TransactionError::Connection)?;
    result
}

/// `TransactionTrait` for a type with a `begin_with(isolation, access)` of its own.
macro_rules! transaction_trait {
    ($type:ty, $begin:ident) => {
        #[async_trait::async_trait]
        impl TransactionTrait for $type {
            type Transaction = PoolTransaction;

            async fn begin(&self) -> Result<PoolTransaction, DbErr> {
                self.$begin(None, None).await
            }

            async fn begin_with_config(
                &self,
                isolation_level: Option<IsolationLevel>,
                access_mode: Option<AccessMode>,
            ) -> Result<PoolTransaction, DbErr> {
                self.$begin(isolation_level, access_mode).await
            }

            async fn begin_with_options(
                &self,
                options: TransactionOptions,
            ) -> Result<PoolTransaction, DbErr> {
                self.$begin(options.isolation_level, options.access_mode)
                    .await
            }

            async fn transaction<F, T, E>(&self, callback: F) -> Result<T, TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c PoolTransaction,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                run_in(self.$begin(None, None).await, callback).await
            }

            async fn transaction_with_config<F, T, E>(
                &self,
                callback: F,
                isolation_level: Option<IsolationLevel>,
                access_mode: Option<AccessMode>,
            ) -> Result<T, TransactionError<E>>
            where
                F: for<'c> FnOnce(
                        &'c PoolTransaction,
                    )
                        -> Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'c>>
                    + Send,
                T: Send,
                E: std::fmt::Display + std::fmt::Debug + Send,
            {
                run_in(self.$begin(isolation_level, access_mode).await, callback).await
            }
        }
    };
}

transaction_trait!(Pool, begin_pool_transaction);
transaction_trait!(PoolTransaction, nested);
