//! A pooled transaction's edges, through the real PgBouncer: a first statement that fails
//! (its `BEGIN` rode with it), statements and commits cancelled mid-way (a future dropped, as
//! `tokio::time::timeout` does), and levels ended out of order. Each ends as it would on a
//! session of its own: nothing autocommits, nothing a caller rolled back or dropped is committed,
//! and no connection returns to the pool inside a transaction.
//!
//! Cancellation is made certain without timing: the statement cancelled waits for an advisory
//! lock a direct connection holds ([`Blocker`]), and is dropped once PostgreSQL shows it waiting.

use std::future::Future;

use db_connect::{DatabaseUrl, Pool, Pooler};
use harness::TestDb;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait, Value};
use secrecy::ExposeSecret;
use sqlx::{Connection, Executor};

const TABLE: &str = "CREATE TABLE probe (id int PRIMARY KEY, note text NOT NULL)";
/// Fails in the parser, before anything of its query string runs.
const SYNTAX_ERROR: &str = "SELEC 1";

fn insert(id: i32, note: &str) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "INSERT INTO probe (id, note) VALUES ($1, $2)",
        [Value::from(id), Value::from(note)],
    )
}

fn code<T>(result: Result<T, DbErr>) -> Option<String> {
    service::sqlstate(&result.err()?)
}

/// The committed ids of `probe`, read on a connection of its own straight to the database.
async fn committed(db: &TestDb) -> Vec<i32> {
    let direct = harness::connect(db.direct_url(), 1).await;
    let rows = direct
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT id FROM probe ORDER BY id",
        ))
        .await
        .unwrap();
    direct.close().await.unwrap();
    rows.iter()
        .map(|row| row.try_get_by_index(0).unwrap())
        .collect()
}

/// A database with the probe table, and a pool of one client connection through PgBouncer (so
/// the next user of the pool gets the connection the last one left).
async fn pooled() -> (TestDb, Pool) {
    let db = TestDb::migrated().await;
    db.conn().execute_unprepared(TABLE).await.unwrap();
    let pool = db.new_pool(1).await;
    assert_eq!(pool.pooler(), Pooler::Transaction);
    (db, pool)
}

/// A session advisory lock held on a direct connection: a statement that takes it waits on the
/// server until the lock is released.
struct Blocker {
    conn: sqlx::PgConnection,
    key: i64,
}

impl Blocker {
    async fn hold(url: &DatabaseUrl, key: i64) -> Self {
        let options: sqlx::postgres::PgConnectOptions =
            url.expose().expose_secret().parse().unwrap();
        let mut conn = sqlx::PgConnection::connect_with(&options.extra_float_digits(None))
            .await
            .unwrap();
        conn.execute(sqlx::AssertSqlSafe(format!(
            "SELECT pg_advisory_lock({key})"
        )))
        .await
        .unwrap();
        Self { conn, key }
    }

    /// A statement that waits for the lock.
    fn waiting_statement(&self) -> String {
        format!("SELECT pg_advisory_xact_lock({})", self.key)
    }

    /// Returns once some session waits for the lock.
    async fn until_waited_for(&mut self) {
        let sql = format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
             AND objid = {} AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            self.key
        );
        for _ in 0..3000 {
            let waiting: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql.clone()))
                .fetch_one(&mut self.conn)
                .await
                .unwrap();
            if waiting > 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("nothing waited for advisory lock {} within 30 s", self.key);
    }

    /// Drops `work` (cancels it) once a statement waits for the lock; `work` is polled first, so
    /// whatever it does before its first wait on the server has been done.
    async fn cancel_once_waiting<T>(&mut self, work: impl Future<Output = T>) {
        tokio::select! {
            biased;
            _ = work => panic!("the work finished while the lock was held"),
            () = self.until_waited_for() => {}
        }
    }

    /// Like [`Blocker::cancel_once_waiting`], but `work` may also finish first: its answer then.
    async fn run_or_cancel_once_waiting<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            answer = work => Some(answer),
            () = self.until_waited_for() => None,
        }
    }

    async fn release(self) {
        self.conn.close().await.unwrap();
    }
}

/// What each step of `steps_after_a_failed_first_statement` answered (`None`: no error).
type Outcomes = Vec<Option<String>>;

/// A transaction whose first statement fails (a NUL in a value, then a syntax error), then
/// another statement, then a rollback; returns each step's SQLSTATE.
async fn steps_after_a_failed_first_statement(pool: &Pool) -> Outcomes {
    let mut outcomes = Vec::new();
    let txn = pool.begin().await.unwrap();
    outcomes.push(code(txn.execute_raw(insert(1, "nul \0 in a value")).await));
    outcomes.push(code(txn.execute_raw(insert(2, "after the error")).await));
    outcomes.push(code(txn.rollback().await));

    let txn = pool.begin().await.unwrap();
    outcomes.push(code(txn.execute_unprepared(SYNTAX_ERROR).await));
    outcomes.push(code(txn.execute_raw(insert(3, "after the error")).await));
    outcomes.push(code(txn.rollback().await));
    outcomes
}

#[tokio::test]
async fn a_failed_first_statement_leaves_the_transaction_aborted_as_directly() {
    let (db, pool) = pooled().await;
    let direct = harness::connect(db.direct_url(), 1).await;
    assert_eq!(direct.pooler(), Pooler::None);
    let expected = [
        Some("22021"),
        Some("25P02"),
        None,
        Some("42601"),
        Some("25P02"),
        None,
    ]
    .map(|code| code.map(str::to_owned));
    assert_eq!(
        steps_after_a_failed_first_statement(&direct).await,
        expected
    );
    assert_eq!(steps_after_a_failed_first_statement(&pool).await, expected);
    assert_eq!(
        committed(&db).await,
        Vec::<i32>::new(),
        "nothing autocommitted"
    );

    // Committing it instead says it rolled back (directly PostgreSQL answers COMMIT with a
    // silent ROLLBACK).
    let txn = pool.begin().await.unwrap();
    txn.execute_unprepared(SYNTAX_ERROR).await.unwrap_err();
    assert_eq!(code(txn.commit().await).as_deref(), Some("25P02"));
    pool.execute_raw(insert(4, "next user")).await.unwrap();
    assert_eq!(committed(&db).await, [4]);
}

/// A savepoint whose first statement fails is rolled back to, and the transaction goes on.
async fn savepoint_after_a_failed_first_statement(pool: &Pool) -> Outcomes {
    let mut outcomes = Vec::new();
    let txn = pool.begin().await.unwrap();
    outcomes.push(code(txn.execute_raw(insert(50, "before")).await));
    let savepoint = txn.begin().await.unwrap();
    outcomes.push(code(savepoint.execute_raw(insert(51, "nul \0")).await));
    outcomes.push(code(savepoint.rollback().await));
    let savepoint = txn.begin().await.unwrap();
    outcomes.push(code(savepoint.execute_unprepared(SYNTAX_ERROR).await));
    outcomes.push(code(savepoint.rollback().await));
    outcomes.push(code(txn.execute_raw(insert(52, "after")).await));
    outcomes.push(code(txn.commit().await));
    outcomes
}

#[tokio::test]
async fn a_failed_first_statement_in_a_savepoint_is_rolled_back_to_as_directly() {
    let (db, pool) = pooled().await;
    let direct = harness::connect(db.direct_url(), 1).await;
    let expected = [None, Some("22021"), None, Some("42601"), None, None, None]
        .map(|code| code.map(str::to_owned));
    assert_eq!(
        savepoint_after_a_failed_first_statement(&direct).await,
        expected
    );
    assert_eq!(committed(&db).await, [50, 52]);
    direct.execute_unprepared("TRUNCATE probe").await.unwrap();
    assert_eq!(
        savepoint_after_a_failed_first_statement(&pool).await,
        expected
    );
    assert_eq!(committed(&db).await, [50, 52]);
}

#[tokio::test]
async fn a_commit_cancelled_behind_a_cancelled_statement_returns_no_open_transaction_to_the_pool() {
    let (db, pool) = pooled().await;
    let mut blocker = Blocker::hold(db.direct_url(), 101).await;
    let txn = pool.begin().await.unwrap();
    txn.execute_raw(insert(10, "user A")).await.unwrap();
    let waiting = blocker.waiting_statement();
    blocker
        .cancel_once_waiting(txn.execute_unprepared(&waiting))
        .await;
    // The commit waits behind the cancelled statement, still running on the server.
    blocker.cancel_once_waiting(txn.commit()).await;
    blocker.release().await;

    // The next user of the pool's one connection writes outside any transaction...
    pool.execute_raw(insert(11, "user B, autocommit"))
        .await
        .unwrap();
    // ...and a third one rolls its own transaction back.
    let txn = pool.begin().await.unwrap();
    txn.execute_raw(insert(12, "user C")).await.unwrap();
    txn.rollback().await.unwrap();
    assert_eq!(
        committed(&db).await,
        [11],
        "user B's write is committed; user A's commit never happened"
    );
}

#[tokio::test]
async fn a_dropped_savepoint_stays_rolled_back_when_the_next_statement_is_cancelled() {
    let (db, pool) = pooled().await;
    let mut blocker = Blocker::hold(db.direct_url(), 102).await;
    let txn = pool.begin().await.unwrap();
    txn.execute_raw(insert(60, "outer")).await.unwrap();
    let savepoint = txn.begin().await.unwrap();
    savepoint
        .execute_raw(insert(61, "inside the savepoint, must be undone"))
        .await
        .unwrap();
    let waiting = blocker.waiting_statement();
    blocker
        .cancel_once_waiting(savepoint.execute_unprepared(&waiting))
        .await;
    drop(savepoint);
    // The savepoint's rollback rides with the next statement, which waits behind the cancelled
    // one (on the client) and is cancelled in turn, unless it is refused at once.
    let next = blocker
        .run_or_cancel_once_waiting(txn.execute_raw(insert(62, "outer, cancelled")))
        .await;
    assert!(
        next.is_none_or(|result| code(result).as_deref() == Some("25P02")),
        "the statement after a cancelled one is cancelled too, or refused"
    );
    blocker.release().await;
    assert_eq!(
        code(txn.commit().await).as_deref(),
        Some("25P02"),
        "a transaction that lost track of what ran can only roll back"
    );
    assert_eq!(committed(&db).await, Vec::<i32>::new());
    pool.execute_raw(insert(63, "next user")).await.unwrap();
    assert_eq!(committed(&db).await, [63]);
}

#[tokio::test]
async fn a_savepoint_outliving_its_dropped_transaction_fails_and_nothing_stays_open() {
    let (db, pool) = pooled().await;
    let txn = pool.begin().await.unwrap();
    txn.execute_raw(insert(20, "parent")).await.unwrap();
    let child = txn.begin().await.unwrap();
    child.execute_raw(insert(21, "child")).await.unwrap();
    drop(txn);
    assert_eq!(
        code(
            child
                .execute_raw(insert(22, "child after its parent"))
                .await
        )
        .as_deref(),
        Some("25000"),
        "the savepoint ended with its transaction"
    );
    drop(child);
    pool.execute_raw(insert(23, "next user")).await.unwrap();
    assert_eq!(committed(&db).await, [23]);
}

#[tokio::test]
async fn committing_a_transaction_ends_its_open_savepoints() {
    let (db, pool) = pooled().await;
    let txn = pool.begin().await.unwrap();
    txn.execute_raw(insert(30, "parent")).await.unwrap();
    let child = txn.begin().await.unwrap();
    child.execute_raw(insert(31, "child")).await.unwrap();
    let grandchild = child.begin().await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(
        code(child.execute_raw(insert(32, "after the commit")).await).as_deref(),
        Some("25000")
    );
    assert_eq!(code(grandchild.commit().await).as_deref(), Some("25000"));
    assert_eq!(code(child.rollback().await).as_deref(), Some("25000"));
    pool.execute_raw(insert(33, "next user")).await.unwrap();
    assert_eq!(committed(&db).await, [30, 31, 33]);

    // A savepoint committed while its own savepoint is open releases both; a handle to the
    // inner one, and a new savepoint at the same depth, stay apart.
    let txn = pool.begin().await.unwrap();
    let child = txn.begin().await.unwrap();
    let stale = child.begin().await.unwrap();
    stale.execute_raw(insert(34, "kept")).await.unwrap();
    child.commit().await.unwrap();
    let fresh = txn.begin().await.unwrap();
    let same_depth = fresh.begin().await.unwrap();
    assert_eq!(
        code(stale.execute_raw(insert(35, "stale")).await).as_deref(),
        Some("25000")
    );
    same_depth.execute_raw(insert(36, "fresh")).await.unwrap();
    same_depth.commit().await.unwrap();
    fresh.commit().await.unwrap();
    txn.commit().await.unwrap();
    assert_eq!(committed(&db).await, [30, 31, 33, 34, 36]);
}

#[tokio::test]
async fn a_transaction_dropped_while_its_savepoint_runs_a_statement_is_rolled_back() {
    let (db, pool) = pooled().await;
    let mut blocker = Blocker::hold(db.direct_url(), 103).await;
    let txn = pool.begin().await.unwrap();
    txn.execute_raw(insert(40, "parent")).await.unwrap();
    let child = txn.begin().await.unwrap();
    let waiting = blocker.waiting_statement();
    let running = tokio::spawn(async move {
        let result = child.execute_unprepared(&waiting).await.map(drop);
        (child, result)
    });
    blocker.until_waited_for().await;
    // The child's statement holds the connection: the drop cannot end the transaction now.
    drop(txn);
    blocker.release().await;
    let (child, result) = running.await.unwrap();
    result.unwrap();
    assert_eq!(
        code(
            child
                .execute_raw(insert(41, "child after its parent"))
                .await
        )
        .as_deref(),
        Some("25000")
    );
    drop(child);
    pool.execute_raw(insert(42, "next user")).await.unwrap();
    assert_eq!(committed(&db).await, [42]);
}
