//! One client connection through a transaction-mode pooler, holding a transaction and its
//! savepoints (levels: 1 the transaction, 2 and up its savepoints).
//!
//! `BEGIN` is not sent on its own: it goes out with the transaction's first statement, in the same
//! simple-protocol query, which saves a round trip per transaction; the pooler keeps one server
//! session from that query until `COMMIT` or `ROLLBACK`. What that costs, and how each way it can
//! go wrong is closed:
//!
//! - PostgreSQL parses a whole query string before running any of it, so a first statement that
//!   fails to parse skips the `BEGIN` too, and one that fails later does not: when the query that
//!   carried `BEGIN` fails, which happened is unknown, so the transaction can only roll back
//!   (later statements fail here with 25P02, as the server would answer them; a commit rolls back
//!   and says so). Nothing of it can run outside a transaction.
//! - `SAVEPOINT` goes out on a round trip of its own before the savepoint's first statement, so
//!   the savepoint exists whenever a statement of it failed, and rolling back to it works.
//! - A query whose future is dropped before its answer (a timeout) may or may not have run, with
//!   whatever was sent ahead of it (a `BEGIN`, a dropped savepoint's rollback): the transaction can
//!   then only roll back. Nothing already taken from `pending` is ever sent again.
//! - Ending a level ends every level inside it; a handle whose level has ended (or whose
//!   transaction was dropped) gets 25000 for whatever it asks, never a statement outside its
//!   transaction.
//! - Dropped while the server may still be in its transaction (a rollback that could not be sent,
//!   an end cancelled half-way), the session closes its connection instead of returning it to the
//!   pool; the server (and PgBouncer, for a client gone in a transaction) rolls back.

use sea_orm::{AccessMode, ExecResult, IsolationLevel, QueryResult, sqlx};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, pool::PoolConnection};

use super::error::local_error;

/// A handle's claim on a level: its depth and the id it was opened with, so a handle whose level
/// ended is told apart from one opened later at the same depth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Level {
    depth: usize,
    id: u64,
}

/// A pooled connection with the levels of the transaction open on it.
#[derive(Debug)]
pub(super) struct Session {
    conn: PoolConnection<Postgres>,
    /// The id of each open level, outermost first.
    levels: Vec<u64>,
    next_id: u64,
    /// What goes out before the next statement: the `BEGIN` / `SAVEPOINT` of levels the server
    /// has not seen, and the rollbacks of savepoints dropped unfinished.
    pending: Vec<Pending>,
    /// Levels the server has (or may have) seen begin and not end.
    started: usize,
    /// A query was handed to the driver and its future dropped before the answer.
    in_flight: bool,
    /// Why the transaction can only roll back.
    doomed: Option<Doom>,
}

#[derive(Debug)]
struct Pending {
    /// The level in whose context it runs.
    level: usize,
    sql: String,
    /// Whether it begins a level (`BEGIN`, `SAVEPOINT`, `SET TRANSACTION`).
    begins: bool,
}

#[derive(Debug, Clone, Copy)]
enum Doom {
    FirstStatementFailed,
    Cancelled,
}

impl Doom {
    fn error(self) -> sqlx::Error {
        let why = match self {
            Self::FirstStatementFailed => "its first statement failed (and the BEGIN sent with it)",
            Self::Cancelled => "a query of it was cancelled before its answer came",
        };
        local_error(
            "25P02",
            format!(
                "current transaction is aborted, commands ignored until end of transaction block: \
                 {why}, so it can only roll back"
            ),
        )
    }
}

fn ended() -> sqlx::Error {
    local_error(
        "25000",
        "this transaction has already ended: it, or a transaction it is part of, was committed, \
         rolled back or dropped",
    )
}

/// What a query is asked for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fetch {
    Execute,
    One,
    All,
}

/// What it answered.
pub(super) enum Answer {
    Executed(ExecResult),
    One(Option<QueryResult>),
    All(Vec<QueryResult>),
}

impl Fetch {
    /// Sends `sql` as one simple-protocol query on `conn`.
    pub(super) async fn run(
        self,
        conn: &mut PgConnection,
        sql: String,
    ) -> Result<Answer, sqlx::Error> {
        let query = sqlx::raw_sql(AssertSqlSafe(sql));
        Ok(match self {
            Self::Execute => Answer::Executed(query.execute(conn).await?.into()),
            Self::One => Answer::One(query.fetch_optional(conn).await?.map(QueryResult::from)),
            Self::All => Answer::All(
                query
                    .fetch_all(conn)
                    .await?
                    .into_iter()
                    .map(QueryResult::from)
                    .collect(),
            ),
        })
    }
}

impl Session {
    pub(super) fn new(conn: PoolConnection<Postgres>) -> Self {
        Self {
            conn,
            levels: Vec::new(),
            next_id: 0,
            pending: Vec::new(),
            started: 0,
            in_flight: false,
            doomed: None,
        }
    }

    fn is_open(&self, level: Level) -> bool {
        self.levels.get(level.depth.wrapping_sub(1)) == Some(&level.id)
    }

    /// Opens a level inside the innermost one (inside `parent`'s transaction, which must still be
    /// open); its `BEGIN` (or `SAVEPOINT`) waits for the next statement.
    pub(super) fn open(
        &mut self,
        parent: Option<Level>,
        isolation_level: Option<IsolationLevel>,
        access_mode: Option<AccessMode>,
    ) -> Result<Level, sqlx::Error> {
        if parent.is_some_and(|parent| !self.is_open(parent)) {
            return Err(ended());
        }
        self.next_id += 1;
        self.levels.push(self.next_id);
        let depth = self.levels.len();
        let mut settings = Vec::new();
        if let Some(isolation) = isolation_level {
            settings.push(format!("ISOLATION LEVEL {isolation}"));
        }
        if let Some(mode) = access_mode {
            settings.push(mode.to_string());
        }
        let settings = settings.join(" ");
        let mut begin = |sql| {
            self.pending.push(Pending {
                level: depth,
                sql,
                begins: true,
            })
        };
        match depth {
            1 => begin(format!("BEGIN {settings}")),
            _ => {
                begin(savepoint("SAVEPOINT", depth));
                if !settings.is_empty() {
                    begin(format!("SET TRANSACTION {settings}"));
                }
            }
        }
        Ok(Level {
            depth,
            id: self.next_id,
        })
    }

    /// A query that was cancelled leaves the transaction able only to roll back.
    fn notice_cancellation(&mut self) {
        if std::mem::take(&mut self.in_flight) {
            self.doomed = Some(Doom::Cancelled);
        }
    }

    /// Everything pending, as the start of a query; from then on the server may have seen every
    /// open level begin.
    fn take_pending(&mut self) -> String {
        let mut text = String::new();
        for pending in self.pending.drain(..) {
            text.push_str(&pending.sql);
            text.push_str(";\n");
        }
        self.started = self.started.max(self.levels.len());
        text
    }

    /// Sends `text`; if it carried the transaction's `BEGIN` and failed, the transaction is
    /// doomed (the `BEGIN` may not have run). Cancelled, it leaves `in_flight` set.
    async fn send(
        &mut self,
        text: String,
        carries_begin: bool,
        fetch: Fetch,
    ) -> Result<Answer, sqlx::Error> {
        self.in_flight = true;
        let answer = fetch.run(&mut self.conn, text).await;
        self.in_flight = false;
        if answer.is_err() && carries_begin {
            self.doomed = Some(Doom::FirstStatementFailed);
        }
        answer
    }

    /// Runs `sql` in `level`'s transaction.
    pub(super) async fn statement(
        &mut self,
        level: Level,
        sql: &str,
        fetch: Fetch,
    ) -> Result<Answer, sqlx::Error> {
        if !self.is_open(level) {
            return Err(ended());
        }
        self.notice_cancellation();
        if let Some(doom) = self.doomed {
            return Err(doom.error());
        }
        let begins_savepoint = self.pending.iter().any(|p| p.begins && p.level >= 2);
        if begins_savepoint {
            let carries_begin = self.started == 0;
            let mut text = self.take_pending();
            text.truncate(text.len() - ";\n".len());
            self.send(text, carries_begin, Fetch::Execute).await?;
        }
        let carries_begin = self.started == 0;
        let mut text = self.take_pending();
        text.push_str(sql);
        self.send(text, carries_begin, fetch).await
    }

    /// Ends `level` and every level inside it: `COMMIT` / `RELEASE SAVEPOINT`, or `ROLLBACK` /
    /// `ROLLBACK TO SAVEPOINT`; nothing at all when the server never saw it begin. A doomed
    /// transaction rolls back, and a commit of it (or of a level in it) is an error.
    pub(super) async fn close(&mut self, level: Level, commit: bool) -> Result<(), sqlx::Error> {
        if !self.is_open(level) {
            return Err(ended());
        }
        self.notice_cancellation();
        let depth = level.depth;
        self.levels.truncate(depth - 1);
        let outcome = match self.doomed {
            Some(doom) if commit => Err(doom.error()),
            _ => Ok(()),
        };
        if self.started < depth {
            self.pending.retain(|p| p.level < depth);
            return outcome;
        }
        // Only the transaction itself can end a doomed one; a savepoint of it ends here.
        if self.doomed.is_some() && depth >= 2 {
            self.pending.retain(|p| p.level < depth);
            return outcome;
        }
        let end = match (depth, commit && self.doomed.is_none()) {
            (1, true) => "COMMIT".to_owned(),
            (1, false) => "ROLLBACK".to_owned(),
            (_, true) => savepoint("RELEASE SAVEPOINT", depth),
            (_, false) => savepoint("ROLLBACK TO SAVEPOINT", depth),
        };
        // Levels inside this one that the server never saw need no end; the rollbacks of
        // savepoints dropped inside it run first (a release would keep their work).
        self.pending.retain(|p| !p.begins);
        let mut text = match self.doomed {
            Some(_) => {
                self.pending.clear();
                String::new()
            }
            None => self.take_pending(),
        };
        text.push_str(&end);
        self.in_flight = true;
        let answer = Fetch::Execute.run(&mut self.conn, text).await;
        self.in_flight = false;
        // Failed or not, the level has ended on the server (a COMMIT that fails rolls back).
        self.started = depth - 1;
        if depth == 1 {
            self.doomed = None;
        }
        answer?;
        outcome
    }

    /// For `level` dropped unfinished: a savepoint's rollback is queued before whatever its
    /// transaction sends next. Returns whether the transaction itself (level 1, begun on the
    /// server) still needs [`Session::roll_back_abandoned`] before the connection may serve anyone
    /// else.
    pub(super) fn abandon(&mut self, level: Level) -> bool {
        if !self.is_open(level) {
            return false;
        }
        self.notice_cancellation();
        let depth = level.depth;
        self.levels.truncate(depth - 1);
        if self.started < depth {
            self.pending.retain(|p| p.level < depth);
            return false;
        }
        if depth == 1 {
            return true;
        }
        if self.doomed.is_none() {
            self.pending.push(Pending {
                level: depth - 1,
                sql: savepoint("ROLLBACK TO SAVEPOINT", depth),
                begins: false,
            });
        }
        self.started = depth - 1;
        false
    }

    /// Rolls back a transaction whose level 1 was abandoned, unless it has ended since; closes
    /// the connection instead when the rollback fails.
    pub(super) async fn roll_back_abandoned(&mut self) {
        if !self.levels.is_empty() || self.started == 0 {
            return;
        }
        self.notice_cancellation();
        self.pending.clear();
        self.in_flight = true;
        let answer = Fetch::Execute
            .run(&mut self.conn, "ROLLBACK".to_owned())
            .await;
        self.in_flight = false;
        self.started = 0;
        self.doomed = None;
        if answer.is_err() {
            self.conn.close_on_drop();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The server may still hold this connection's transaction: closing the connection is
        // the one way to be sure no one else gets it.
        if self.started > 0 {
            self.conn.close_on_drop();
        }
    }
}

fn savepoint(command: &str, level: usize) -> String {
    format!("{command} savepoint_{level}")
}
