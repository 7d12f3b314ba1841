//! One client connection through a transaction-mode pooler, in a transaction and its
//! savepoints. `BEGIN` and `SAVEPOINT` are not sent on their own: they wait and go out with the
//! next statement, in the same simple-protocol query, which saves a round trip per transaction.
//! The pooler keeps one server session from that query until `COMMIT` or `ROLLBACK`, so the
//! transaction sees what it would have seen with a separate `BEGIN`.

use sea_orm::{AccessMode, DbErr, ExecResult, IsolationLevel, QueryResult, sqlx};
use sqlx::{AssertSqlSafe, Postgres, pool::PoolConnection};

use super::{sqlx_error_to_exec_err, sqlx_error_to_query_err};

/// A pooled connection with the levels of the transaction open on it (level 1 the transaction
/// itself, 2 and up its savepoints).
#[derive(Debug)]
pub(super) struct Session {
    conn: PoolConnection<Postgres>,
    /// What goes out before the next statement, each with the level it belongs to: the
    /// `BEGIN` / `SAVEPOINT` of levels the server has not seen, and the rollbacks of savepoints
    /// dropped unfinished.
    pending: Vec<(usize, String)>,
    /// Levels open.
    depth: usize,
    /// Levels the server has seen begin.
    started: usize,
}

impl Session {
    pub(super) fn new(conn: PoolConnection<Postgres>) -> Self {
        Self {
            conn,
            pending: Vec::new(),
            depth: 0,
            started: 0,
        }
    }

    /// Opens a level and returns it; its `BEGIN` (or `SAVEPOINT`) waits for the next statement.
    pub(super) fn open(
        &mut self,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> usize {
        self.depth += 1;
        let level = self.depth;
        let mut settings = Vec::new();
        if let Some(isolation) = isolation_level {
            settings.push(format!("ISOLATION LEVEL {isolation}"));
        }
        if let Some(mode) = access_mode {
            settings.push(mode.to_string());
        }
        let settings = settings.join(" ");
        match level {
            1 => self.pending.push((level, format!("BEGIN {settings}"))),
            _ => {
                self.pending.push((level, savepoint("SAVEPOINT", level)));
                if !settings.is_empty() {
                    self.pending
                        .push((level, format!("SET TRANSACTION {settings}")));
                }
            }
        }
        level
    }

    /// `sql` after everything pending, as one query; from then on the server has seen every
    /// open level begin (a statement that fails after them leaves them begun, and aborted).
    fn with_pending(&mut self, sql: &str) -> AssertSqlSafe<String> {
        let mut text = String::new();
        for (_, statement) in self.pending.drain(..) {
            text.push_str(&statement);
            text.push_str(";\n");
        }
        text.push_str(sql);
        self.started = self.depth;
        AssertSqlSafe(text)
    }

    pub(super) async fn execute(&mut self, sql: &str) -> Result<ExecResult, DbErr> {
        let sql = self.with_pending(sql);
        sqlx::raw_sql(sql)
            .execute(&mut *self.conn)
            .await
            .map(ExecResult::from)
            .map_err(sqlx_error_to_exec_err)
    }

    pub(super) async fn query_one(&mut self, sql: &str) -> Result<Option<QueryResult>, DbErr> {
        let sql = self.with_pending(sql);
        sqlx::raw_sql(sql)
            .fetch_optional(&mut *self.conn)
            .await
            .map(|row| row.map(QueryResult::from))
            .map_err(sqlx_error_to_query_err)
    }

    pub(super) async fn query_all(&mut self, sql: &str) -> Result<Vec<QueryResult>, DbErr> {
        let sql = self.with_pending(sql);
        sqlx::raw_sql(sql)
            .fetch_all(&mut *self.conn)
            .await
            .map(|rows| rows.into_iter().map(QueryResult::from).collect())
            .map_err(sqlx_error_to_query_err)
    }

    /// Ends `level` (the innermost): `COMMIT` / `RELEASE SAVEPOINT`, or `ROLLBACK` /
    /// `ROLLBACK TO SAVEPOINT`; nothing at all when the server never saw it begin.
    pub(super) async fn close(&mut self, level: usize, commit: bool) -> Result<(), DbErr> {
        debug_assert_eq!(level, self.depth, "transactions end innermost first");
        self.depth = level - 1;
        if self.started < level {
            self.pending.retain(|(of, _)| *of < level);
            return Ok(());
        }
        let end = match (level, commit) {
            (1, true) => "COMMIT".to_owned(),
            (1, false) => "ROLLBACK".to_owned(),
            (_, true) => savepoint("RELEASE SAVEPOINT", level),
            (_, false) => savepoint("ROLLBACK TO SAVEPOINT", level),
        };
        // Sent with whatever is pending; afterwards the levels still open have all been seen.
        self.execute(&end).await.map(drop)
    }

    /// For `level` dropped unfinished: a savepoint's rollback is queued before whatever its
    /// transaction sends next. Returns whether the transaction itself (level 1, begun on the
    /// server) still needs a `ROLLBACK` before the connection may serve anyone else.
    pub(super) fn abandon(&mut self, level: usize) -> bool {
        if level == 1 && self.started >= 1 {
            return true;
        }
        self.depth = level - 1;
        if self.started < level {
            self.pending.retain(|(of, _)| *of < level);
        } else {
            self.pending
                .push((level - 1, savepoint("ROLLBACK TO SAVEPOINT", level)));
            self.started = level - 1;
        }
        false
    }

    /// Closes the client connection instead of returning it to the pool (the server rolls
    /// back what it holds).
    pub(super) fn discard(&mut self) {
        self.conn.close_on_drop();
    }
}

fn savepoint(command: &str, level: usize) -> String {
    format!("{command} savepoint_{level}")
}
