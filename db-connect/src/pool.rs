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
//! client connection, which the pooler pins to one server session until the transaction ends
//! (`BEGIN` rides with the transaction's first statement: see `pool/session.rs`).
//!
//! Through a pooler that tracks protocol-level prepared statements, the pool may instead keep
//! SeaORM's own path, as directly ([`PooledStatements::Prepared`]: see `pool/prepared.rs`).

mod error;
mod prepared;
mod session;

use std::{future::Future, pin::Pin, sync::Arc};

use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, IsolationLevel, QueryResult, Statement, TransactionError, TransactionOptions,
    TransactionSession, TransactionTrait, sqlx,
};
use sqlx::postgres::PgPool;
use tokio::sync::Mutex;

use crate::{
    config::{DatabaseUrl, PoolSettings},
    connect::{ConnectError, Opening, name_acquire_timeout, open_pool, pool_options},
    inline::{InlineError, check_settings, check_values, inline},
    topology::{PooledStatements, Pooler},
};
use error::{local_error, sqlx_conn_acquire_err, sqlx_error_to_exec_err, sqlx_error_to_query_err};
use session::{Answer, Fetch, Level, Session, readable};

/// A pool of connections to one database; see the module documentation.
#[derive(Debug, Clone)]
pub struct Pool {
    conn: DatabaseConnection,
    pooler: Pooler,
    statements: PooledStatements,
}

impl Pool {
    /// A pool for `url` with `settings`, safe for what sits in front of the database. Its first
    /// connection opens now, within the connect timeout, so a wrong URL or a down server fails
    /// here, naming the cause.
    pub async fn connect(
        url: &DatabaseUrl,
        pooler: Pooler,
        settings: &PoolSettings,
    ) -> Result<Self, ConnectError> {
        Self::open(
            url,
            pooler,
            settings,
            Opening::Now(settings.connect_timeout),
        )
        .await
    }

    /// Like [`Pool::connect`], but no connection opens until the first statement, so a server
    /// that is down now is not an error now (a replica that may come back).
    pub async fn connect_lazy(
        url: &DatabaseUrl,
        pooler: Pooler,
        settings: &PoolSettings,
    ) -> Result<Self, ConnectError> {
        Self::open(url, pooler, settings, Opening::Lazily).await
    }

    async fn open(
        url: &DatabaseUrl,
        pooler: Pooler,
        settings: &PoolSettings,
        opening: Opening,
    ) -> Result<Self, ConnectError> {
        let pool = match pooler {
            // sqlx pings an idle connection before handing it out: through a transaction pooler
            // that ping is a round trip to PgBouncer, which assigns it a server connection, for
            // every statement, nearly doubling a short one's time. PgBouncer checks its server
            // connections itself (`server_check_delay`), and a client connection to it that broke
            // fails its statement with an I/O error the caller retries like any other.
            Pooler::Transaction => pool_options(settings).test_before_acquire(false),
            Pooler::None => pool_options(settings),
        };
        let conn = open_pool(url, pool, opening, |options| match pooler {
            // No statement is ever prepared by name, so there is nothing to cache.
            Pooler::Transaction => options.statement_cache_capacity(0),
            Pooler::None => options,
        })
        .await?;
        Ok(Self {
            conn,
            pooler,
            statements: PooledStatements::Inlined,
        })
    }

    /// A pool around a SeaORM connection that reaches its database directly.
    pub fn direct(conn: DatabaseConnection) -> Self {
        Self {
            conn,
            pooler: Pooler::None,
            statements: PooledStatements::Inlined,
        }
    }

    /// What sits between this pool and PostgreSQL.
    pub fn pooler(&self) -> Pooler {
        self.pooler
    }

    /// How statements cross the transaction-mode pooler, if there is one.
    pub fn pooled_statements(&self) -> PooledStatements {
        self.statements
    }

    /// Whether statements go out inlined (a transaction pooler that keeps no prepared
    /// statement), rather than on SeaORM's own path.
    fn inlines(&self) -> bool {
        self.pooler == Pooler::Transaction && self.statements == PooledStatements::Inlined
    }

    /// SeaORM's connection, when nothing sits between it and PostgreSQL (for what needs
    /// SeaORM's own type, such as the migrator); `None` through a transaction-mode pooler,
    /// where SeaORM's prepared statements break.
    pub fn as_direct(&self) -> Option<&DatabaseConnection> {
        (self.pooler == Pooler::None).then_some(&self.conn)
    }

    /// Checks that a connection can be used.
    pub async fn ping(&self) -> Result<(), DbErr> {
        self.conn.ping().await.map_err(|err| self.named(err))
    }

    /// `err`, where a wait for a connection timed out, saying what it waited for.
    fn named(&self, err: DbErr) -> DbErr {
        name_acquire_timeout(self.sqlx(), err)
    }

    /// Closes every connection; later calls fail.
    pub async fn close(self) -> Result<(), DbErr> {
        self.conn.close().await
    }

    fn sqlx(&self) -> &PgPool {
        self.conn.get_postgres_connection_pool()
    }

    /// Runs `stmt` through the pooler on a client connection of its own, outside any
    /// transaction.
    async fn pooled(&self, stmt: &Statement, fetch: Fetch) -> Result<Answer, sqlx::Error> {
        let sql = simple(stmt)?;
        let mut conn = self.sqlx().acquire().await?;
        fetch.run(&mut conn, sql).await
    }
}

/// The statement as one simple-protocol query.
fn simple(stmt: &Statement) -> Result<String, sqlx::Error> {
    inline(&stmt.sql, values_of(stmt)).map_err(refused)
}

fn values_of(stmt: &Statement) -> &[sea_orm::Value] {
    stmt.values.as_ref().map_or(&[][..], |v| &v.0[..])
}

fn refused(err: InlineError) -> sqlx::Error {
    local_error(err.sqlstate(), err.to_string())
}

/// On the direct path: values sea-query would panic binding are refused before SeaORM binds
/// them, and rows sqlx would panic reading after it fetched them.
fn bindable(stmt: &Statement, map: fn(sqlx::Error) -> DbErr) -> Result<(), DbErr> {
    check_values(values_of(stmt)).map_err(|err| map(refused(err)))
}

fn read<'r>(rows: impl IntoIterator<Item = &'r QueryResult>) -> Result<(), DbErr> {
    rows.into_iter()
        .filter_map(QueryResult::try_as_pg_row)
        .try_for_each(readable)
        .map_err(sqlx_error_to_query_err)
}

/// Through the pooler, what the caller's own SQL may not set (see [`check_settings`]).
fn settable(sql: &str) -> Result<(), DbErr> {
    check_settings(sql).map_err(|err| sqlx_error_to_exec_err(refused(err)))
}

/// What each `ConnectionTrait` method asks of a query, and how its answer and errors read.
fn executed(answer: Result<Answer, sqlx::Error>) -> Result<ExecResult, DbErr> {
    match answer.map_err(acquire_or(sqlx_error_to_exec_err))? {
        Answer::Executed(result) => Ok(result),
        _ => unreachable!("an execute answers with a result"),
    }
}

fn one(answer: Result<Answer, sqlx::Error>) -> Result<Option<QueryResult>, DbErr> {
    match answer.map_err(acquire_or(sqlx_error_to_query_err))? {
        Answer::One(row) => Ok(row),
        _ => unreachable!("a fetch of one row answers with at most one"),
    }
}

fn all(answer: Result<Answer, sqlx::Error>) -> Result<Vec<QueryResult>, DbErr> {
    match answer.map_err(acquire_or(sqlx_error_to_query_err))? {
        Answer::All(rows) => Ok(rows),
        _ => unreachable!("a fetch of all rows answers with rows"),
    }
}

/// A pool that gives no connection says so as SeaORM does; any other error as `map` says.
fn acquire_or(map: fn(sqlx::Error) -> DbErr) -> impl Fn(sqlx::Error) -> DbErr {
    move |err| match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => sqlx_conn_acquire_err(err),
        other => map(other),
    }
}

impl From<DatabaseConnection> for Pool {
    /// A SeaORM pool that reaches its database directly.
    fn from(conn: DatabaseConnection) -> Self {
        Self::direct(conn)
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Pool {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self.inlines() {
            false => {
                bindable(&stmt, sqlx_error_to_exec_err)?;
                self.conn.execute_raw(stmt).await
            }
            true => executed(self.pooled(&stmt, Fetch::Execute).await),
        }
        .map_err(|err| self.named(err))
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        if self.pooler == Pooler::Transaction {
            settable(sql)?;
        }
        // Already one simple-protocol query, with nothing prepared.
        self.conn
            .execute_unprepared(sql)
            .await
            .map_err(|err| self.named(err))
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self.inlines() {
            false => {
                bindable(&stmt, sqlx_error_to_query_err)?;
                let row = self.conn.query_one_raw(stmt).await?;
                read(&row).map(|()| row)
            }
            true => one(self.pooled(&stmt, Fetch::One).await),
        }
        .map_err(|err| self.named(err))
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self.inlines() {
            false => {
                bindable(&stmt, sqlx_error_to_query_err)?;
                let rows = self.conn.query_all_raw(stmt).await?;
                read(&rows).map(|()| rows)
            }
            true => all(self.pooled(&stmt, Fetch::All).await),
        }
        .map_err(|err| self.named(err))
    }
}

/// A transaction of a [`Pool`]: SeaORM's own directly (and through a pooler that keeps prepared
/// statements), one pinned client connection through a transaction-mode pooler. `begin` on it opens a savepoint; dropping it unfinished rolls back.
#[derive(Debug)]
pub struct PoolTransaction(Open);

#[derive(Debug)]
enum Open {
    Direct(DatabaseTransaction),
    Pooled(PooledTransaction),
}

/// A level of a transaction on a pooled client connection ([`Session`]); nested transactions
/// share the session.
#[derive(Debug)]
struct PooledTransaction {
    session: Arc<Mutex<Session>>,
    level: Level,
    /// Until its end has returned: a commit or rollback cancelled half-way leaves it open, so
    /// dropping it still ends it.
    open: bool,
}

impl PooledTransaction {
    async fn begin(
        session: Arc<Mutex<Session>>,
        parent: Option<Level>,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<Self, DbErr> {
        let level = session
            .lock()
            .await
            .open(parent, isolation_level, access_mode)
            .map_err(sqlx_error_to_exec_err)?;
        Ok(Self {
            session,
            level,
            open: true,
        })
    }

    async fn run_statement(&self, stmt: &Statement, fetch: Fetch) -> Result<Answer, sqlx::Error> {
        self.run(&simple(stmt)?, fetch).await
    }

    async fn run(&self, sql: &str, fetch: Fetch) -> Result<Answer, sqlx::Error> {
        let mut session = self.session.lock().await;
        session.statement(self.level, sql, fetch).await
    }

    async fn finish(mut self, commit: bool) -> Result<(), DbErr> {
        let ended = self.session.lock().await.close(self.level, commit).await;
        self.open = false;
        ended.map_err(sqlx_error_to_exec_err)
    }
}

impl Drop for PooledTransaction {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let level = self.level;
        let runtime = tokio::runtime::Handle::try_current();
        // The server may hold the transaction: roll it back before the connection serves anyone
        // else. Without a runtime to do it on, the session closes its connection once the last
        // handle to it goes (see `Session`'s `Drop`), and the server rolls back.
        let needs_rollback = match self.session.try_lock() {
            Ok(mut session) => session.abandon(level),
            // Another handle's statement holds the session: end this level once it lets go.
            Err(_) => {
                if let Ok(runtime) = runtime {
                    let session = Arc::clone(&self.session);
                    runtime.spawn(async move {
                        let mut session = session.lock().await;
                        if session.abandon(level) {
                            session.roll_back_abandoned().await;
                        }
                    });
                }
                return;
            }
        };
        if let (true, Ok(runtime)) = (needs_rollback, runtime) {
            let session = Arc::clone(&self.session);
            runtime.spawn(async move { session.lock().await.roll_back_abandoned().await });
        }
    }
}

impl Pool {
    async fn begin_pool_transaction(
        &self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<PoolTransaction, DbErr> {
        Ok(PoolTransaction(match self.inlines() {
            false => Open::Direct(
                self.conn
                    .begin_with_config(isolation_level, access_mode)
                    .await
                    .map_err(|err| self.named(err))?,
            ),
            true => {
                let conn = self
                    .sqlx()
                    .acquire()
                    .await
                    .map_err(|err| self.named(sqlx_conn_acquire_err(err)))?;
                Open::Pooled(
                    PooledTransaction::begin(
                        Arc::new(Mutex::new(Session::new(conn))),
                        None,
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
                PooledTransaction::begin(
                    txn.session.clone(),
                    Some(txn.level),
                    isolation_level,
                    access_mode,
                )
                .await?,
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
            Open::Direct(txn) => {
                bindable(&stmt, sqlx_error_to_exec_err)?;
                txn.execute_raw(stmt).await
            }
            Open::Pooled(txn) => executed(txn.run_statement(&stmt, Fetch::Execute).await),
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match &self.0 {
            Open::Direct(txn) => txn.execute_unprepared(sql).await,
            Open::Pooled(txn) => {
                settable(sql)?;
                executed(txn.run(sql, Fetch::Execute).await)
            }
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match &self.0 {
            Open::Direct(txn) => {
                bindable(&stmt, sqlx_error_to_query_err)?;
                let row = txn.query_one_raw(stmt).await?;
                read(&row).map(|()| row)
            }
            Open::Pooled(txn) => one(txn.run_statement(&stmt, Fetch::One).await),
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match &self.0 {
            Open::Direct(txn) => {
                bindable(&stmt, sqlx_error_to_query_err)?;
                let rows = txn.query_all_raw(stmt).await?;
                read(&rows).map(|()| rows)
            }
            Open::Pooled(txn) => all(txn.run_statement(&stmt, Fetch::All).await),
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
