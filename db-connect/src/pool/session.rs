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

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use sea_orm::{AccessMode, ExecResult, IsolationLevel, QueryResult, sqlx};
use sqlx::{
    AssertSqlSafe, Column, PgConnection, Postgres, Row, TypeInfo, ValueRef,
    pool::PoolConnection,
    postgres::{PgRow, PgValueFormat},
};

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
        let read = |row: PgRow| readable(&row).map(|()| QueryResult::from(row));
        Ok(match self {
            Self::Execute => Answer::Executed(query.execute(conn).await?.into()),
            Self::One => Answer::One(query.fetch_optional(conn).await?.map(read).transpose()?),
            Self::All => Answer::All(
                query
                    .fetch_all(conn)
                    .await?
                    .into_iter()
                    .map(read)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// Refuses a row sqlx would read otherwise than a bound query reads it, or would panic on:
/// through a transaction pooler rows come as text (which session settings change, and which
/// sqlx's text decoders cannot always read), directly in binary (where sqlx's chrono decoders
/// overflow). The error names the column and why, never the value.
pub(super) fn readable(row: &PgRow) -> Result<(), sqlx::Error> {
    for (index, column) in row.columns().iter().enumerate() {
        let value = row.try_get_raw(index)?;
        let Some(oid) = column.type_info().oid() else {
            continue;
        };
        let unreadable = match (value.is_null(), value.format()) {
            (true, _) => None,
            (false, PgValueFormat::Text) => value.as_str().ok().and_then(|text| {
                text_unreadable(oid.0, text)
                    .or_else(|| array_unreadable(column.type_info().name(), oid.0, text))
            }),
            (false, PgValueFormat::Binary) => value
                .as_bytes()
                .ok()
                .and_then(|bytes| binary_unreadable(oid.0, bytes)),
        };
        if let Some(unreadable) = unreadable {
            return Err(unreadable.error(column.name(), column.type_info().name()));
        }
    }
    Ok(())
}

/// Why sqlx cannot read a value as it reads the bound one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unreadable {
    /// `infinity`, or a date beyond chrono's years: sqlx's binary decoder panics.
    BeyondChrono,
    /// A year before 1 or after 9999, which sqlx's text decoders cannot parse.
    YearInText,
    /// `24:00:00`, which chrono has no time of day for (sqlx reads it as midnight in binary).
    EndOfDay,
    DateStyle,
    TimeZone,
    ByteaOutput,
    /// An element that is the text `NULL`, which sqlx's text decoder reads as a NULL element.
    NullText,
    /// More dimensions than one, or bounds other than 1, which sqlx's text decoder splits wrongly.
    ArrayShape,
}

impl Unreadable {
    fn error(self, column: &str, ty: &str) -> sqlx::Error {
        let (code, why) = match self {
            Self::BeyondChrono => (
                "22008",
                "infinity or a date beyond chrono's range (years -262143 to 262142), which sqlx \
                 cannot read: compare or convert it in SQL",
            ),
            Self::YearInText => (
                "22008",
                "a year before 1 or after 9999, which sqlx cannot read from the text a \
                 transaction pooler returns: convert it in SQL",
            ),
            Self::EndOfDay => (
                "22008",
                "24:00:00, which chrono has no time of day for: convert it in SQL",
            ),
            Self::DateStyle => (
                "0A000",
                "a date written in another DateStyle than ISO (the transaction set DateStyle?), \
                 which sqlx cannot read: keep DateStyle at ISO",
            ),
            Self::TimeZone => (
                "0A000",
                "a timestamptz written in another time zone than UTC (the transaction set \
                 TimeZone?), which sqlx reads otherwise than the bound value: keep TimeZone at \
                 UTC, or convert in SQL with AT TIME ZONE",
            ),
            Self::ByteaOutput => (
                "0A000",
                "bytes written with bytea_output = escape (the transaction set it?), which sqlx \
                 cannot read: keep bytea_output at hex",
            ),
            Self::NullText => (
                "0A000",
                "an element that is the text NULL, which sqlx reads from the text a transaction \
                 pooler returns as a NULL element: select it as JSON (to_jsonb) instead",
            ),
            Self::ArrayShape => (
                "0A000",
                "an array of more than one dimension or with bounds other than 1, which sqlx \
                 splits wrongly from the text a transaction pooler returns",
            ),
        };
        local_error(code, format!("column \"{column}\" ({ty}) holds {why}"))
    }
}

const BYTEA: u32 = 17;
const DATE: u32 = 1082;
const TIME: u32 = 1083;
const TIMESTAMP: u32 = 1114;
const TIMESTAMPTZ: u32 = 1184;

/// The element type of the arrays whose elements are checked one by one.
fn element_of(array: u32) -> Option<u32> {
    Some(match array {
        1001 => BYTEA,
        1182 => DATE,
        1183 => TIME,
        1115 => TIMESTAMP,
        1185 => TIMESTAMPTZ,
        _ => return None,
    })
}

fn text_unreadable(oid: u32, text: &str) -> Option<Unreadable> {
    match oid {
        BYTEA if !text.starts_with("\\x") => Some(Unreadable::ByteaOutput),
        TIME if text.starts_with("24:") => Some(Unreadable::EndOfDay),
        DATE | TIMESTAMP | TIMESTAMPTZ => datetime_unreadable(text, oid == TIMESTAMPTZ),
        _ => None,
    }
}

/// An ISO date or timestamp sqlx's text decoders read: four-digit years of our era, and (for a
/// timestamptz) UTC.
fn datetime_unreadable(text: &str, zoned: bool) -> Option<Unreadable> {
    if text == "infinity" || text == "-infinity" {
        return Some(Unreadable::BeyondChrono);
    }
    let (text, bc) = match text.strip_suffix(" BC") {
        Some(ours) => (ours, true),
        None => (text, false),
    };
    let year = text.bytes().take_while(u8::is_ascii_digit).count();
    let date = text.as_bytes().get(year..year + 6);
    let iso = year >= 4
        && date.is_some_and(|d| {
            d[0] == b'-' && d[3] == b'-' && [d[1], d[2], d[4], d[5]].iter().all(u8::is_ascii_digit)
        });
    if !iso {
        return Some(Unreadable::DateStyle);
    }
    if bc || year > 4 {
        return Some(Unreadable::YearInText);
    }
    let offset = text.rfind(['+', '-']).map(|at| &text[at..]);
    (zoned && offset != Some("+00")).then_some(Unreadable::TimeZone)
}

/// What sqlx's text array decoder would misread in an array of type `name` (built-in array
/// types are named `...[]`): it drops the outer braces, splits at every comma outside quotes,
/// and reads an element `NULL` as NULL whether it was quoted or not.
fn array_unreadable(name: &str, oid: u32, text: &str) -> Option<Unreadable> {
    if !name.ends_with("[]") {
        return None;
    }
    let Some(inner) = text.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return Some(Unreadable::ArrayShape);
    };
    let element_type = element_of(oid);
    let mut element = String::new();
    let (mut quoted, mut in_quotes, mut escaped) = (false, false, false);
    let mut chars = inner.chars();
    loop {
        let next = chars.next();
        match next {
            Some(c) if escaped => {
                element.push(c);
                escaped = false;
            }
            Some('\\') => escaped = true,
            Some('"') => {
                in_quotes = !in_quotes;
                quoted = true;
            }
            Some('{') if !in_quotes => return Some(Unreadable::ArrayShape),
            Some(',') | None if !in_quotes => {
                if quoted && element == "NULL" {
                    return Some(Unreadable::NullText);
                }
                let checked = element_type.filter(|_| quoted || element != "NULL");
                if let Some(unreadable) = checked.and_then(|ty| text_unreadable(ty, &element)) {
                    return Some(unreadable);
                }
                next?;
                element.clear();
                quoted = false;
            }
            Some(c) => element.push(c),
            None => return None,
        }
    }
}

fn binary_unreadable(oid: u32, bytes: &[u8]) -> Option<Unreadable> {
    let int = |bytes: &[u8]| -> Option<i64> {
        Some(match bytes.len() {
            4 => i32::from_be_bytes(bytes.try_into().ok()?).into(),
            8 => i64::from_be_bytes(bytes.try_into().ok()?),
            _ => return None,
        })
    };
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1)?;
    let midnight: NaiveDateTime = epoch.and_hms_opt(0, 0, 0)?;
    match oid {
        DATE => epoch
            .checked_add_signed(TimeDelta::try_days(int(bytes)?)?)
            .is_none()
            .then_some(Unreadable::BeyondChrono),
        TIMESTAMP | TIMESTAMPTZ => midnight
            .checked_add_signed(TimeDelta::microseconds(int(bytes)?))
            .is_none()
            .then_some(Unreadable::BeyondChrono),
        TIME => (int(bytes)? >= 86_400_000_000).then_some(Unreadable::EndOfDay),
        array => binary_elements_unreadable(element_of(array)?, bytes),
    }
}

/// Each element of a one-dimensional array in binary: its dimensions, flags and element type,
/// a length and lower bound per dimension, then each element's length (-1: NULL) and bytes.
fn binary_elements_unreadable(element: u32, bytes: &[u8]) -> Option<Unreadable> {
    let word = |at: usize| -> Option<i32> {
        Some(i32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    if word(0)? != 1 {
        return None;
    }
    let mut at = 20;
    for _ in 0..word(12)? {
        let len = word(at)?;
        at += 4;
        if len >= 0 {
            let end = at + len as usize;
            if let Some(unreadable) = binary_unreadable(element, bytes.get(at..end)?) {
                return Some(unreadable);
            }
            at = end;
        }
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_that_sqlx_reads_as_bound_passes() {
        for (oid, text) in [
            (BYTEA, "\\x00ff"),
            (TIME, "23:59:59.999999"),
            (DATE, "2026-03-15"),
            (DATE, "0001-01-01"),
            (TIMESTAMP, "9999-12-31 23:59:59.999999"),
            (TIMESTAMPTZ, "2026-03-15 12:00:00.5+00"),
            (25, "infinity"),
        ] {
            assert_eq!(text_unreadable(oid, text), None, "{oid} {text}");
        }
    }

    #[test]
    fn text_that_sqlx_reads_otherwise_or_not_at_all_is_named() {
        use Unreadable::*;
        for (oid, text, why) in [
            (BYTEA, "\\000\\377", ByteaOutput),
            (TIME, "24:00:00", EndOfDay),
            (DATE, "infinity", BeyondChrono),
            (TIMESTAMPTZ, "-infinity", BeyondChrono),
            (DATE, "0044-03-15 BC", YearInText),
            (DATE, "12345-01-01", YearInText),
            (TIMESTAMP, "0044-03-15 12:00:00 BC", YearInText),
            (TIMESTAMPTZ, "0044-03-15 12:00:00+00 BC", YearInText),
            (DATE, "03/15/2026", DateStyle),
            (DATE, "15.03.2026", DateStyle),
            (DATE, "2026-3-15", DateStyle),
            (DATE, "2026-03-1", DateStyle),
            (DATE, "2026/03/15", DateStyle),
            (DATE, "2026-03/15", DateStyle),
            (DATE, "026-03-15", DateStyle),
            (TIMESTAMPTZ, "Sun Mar 15 12:00:00 2026 UTC", DateStyle),
            (TIMESTAMPTZ, "2026-03-15 17:30:00+05:30", TimeZone),
            (TIMESTAMPTZ, "2026-03-15 07:00:00-05", TimeZone),
            (TIMESTAMPTZ, "1800-01-01 05:53:28+05:53:28", TimeZone),
        ] {
            assert_eq!(text_unreadable(oid, text), Some(why), "{oid} {text}");
        }
    }

    #[test]
    fn arrays_are_split_as_sqlx_splits_them() {
        use Unreadable::*;
        for (name, oid, text, expected) in [
            ("TEXT", 25, "{\"NULL\"}", None),
            (
                "TEXT[]",
                1009,
                "{a,b,NULL,\"\",\"a,\\\"NULL\\\"\",\"{\"}",
                None,
            ),
            ("TEXT[]", 1009, "{}", None),
            ("TEXT[]", 1009, "{\"NULL,x\"}", None),
            ("TEXT[]", 1009, "{\"NULL\"}", Some(NullText)),
            ("TEXT[]", 1009, "{a,\"NULL\"}", Some(NullText)),
            ("TEXT[]", 1009, "{{a,b},{c,d}}", Some(ArrayShape)),
            ("TEXT[]", 1009, "[0:1]={a,b}", Some(ArrayShape)),
            ("TEXT[]", 1009, "{a", Some(ArrayShape)),
            ("DATE[]", 1182, "{2026-01-01,NULL}", None),
            (
                "DATE[]",
                1182,
                "{2026-01-01,\"0001-01-01 BC\"}",
                Some(YearInText),
            ),
            (
                "TIMESTAMPTZ[]",
                1185,
                "{\"2026-01-01 00:00:00+05\"}",
                Some(TimeZone),
            ),
            ("BYTEA[]", 1001, "{\"\\\\x00\"}", None),
            ("BYTEA[]", 1001, "{\"\\\\000\"}", Some(ByteaOutput)),
            ("TIME[]", 1183, "{24:00:00}", Some(EndOfDay)),
            ("TIMESTAMP[]", 1115, "{infinity}", Some(BeyondChrono)),
        ] {
            assert_eq!(array_unreadable(name, oid, text), expected, "{name} {text}");
        }
    }

    fn binary_array(element: u32, items: &[Option<Vec<u8>>]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [1, 0, element as i32, items.len() as i32, 1] {
            bytes.extend(word.to_be_bytes());
        }
        for item in items {
            match item {
                None => bytes.extend((-1i32).to_be_bytes()),
                Some(item) => {
                    bytes.extend((item.len() as i32).to_be_bytes());
                    bytes.extend(item);
                }
            }
        }
        bytes
    }

    #[test]
    fn binary_values_beyond_chrono_or_midnight_are_named() {
        use Unreadable::*;
        let int = |n: i32| n.to_be_bytes().to_vec();
        let long = |n: i64| n.to_be_bytes().to_vec();
        let last_day = (NaiveDate::MAX - NaiveDate::from_ymd_opt(2000, 1, 1).unwrap()).num_days();
        for (oid, bytes, expected) in [
            (DATE, int(0), None),
            (DATE, int(last_day as i32), None),
            (DATE, int(last_day as i32 + 1), Some(BeyondChrono)),
            (DATE, int(i32::MAX), Some(BeyondChrono)),
            (DATE, int(i32::MIN), Some(BeyondChrono)),
            (TIMESTAMP, long(0), None),
            (TIMESTAMPTZ, long(-1), None),
            (TIMESTAMPTZ, long(i64::MAX), Some(BeyondChrono)),
            (TIMESTAMP, long(i64::MIN), Some(BeyondChrono)),
            (TIME, long(86_399_999_999), None),
            (TIME, long(86_400_000_000), Some(EndOfDay)),
            (25, long(i64::MAX), None),
            (
                1185,
                binary_array(TIMESTAMPTZ, &[None, Some(long(0))]),
                None,
            ),
            (
                1185,
                binary_array(TIMESTAMPTZ, &[None, Some(long(0)), Some(long(i64::MAX))]),
                Some(BeyondChrono),
            ),
            (
                1182,
                binary_array(DATE, &[Some(int(i32::MAX))]),
                Some(BeyondChrono),
            ),
            (
                1183,
                binary_array(TIME, &[Some(long(86_400_000_000))]),
                Some(EndOfDay),
            ),
            (1007, binary_array(23, &[Some(int(i32::MAX))]), None),
        ] {
            assert_eq!(binary_unreadable(oid, &bytes), expected, "{oid} {bytes:?}");
        }
        // Two dimensions are left to sqlx, which refuses them.
        let mut two = binary_array(TIMESTAMPTZ, &[Some(long(i64::MAX))]);
        two[3] = 2;
        assert_eq!(binary_unreadable(1185, &two), None);
    }

    #[test]
    fn a_refusal_names_the_column_and_the_cause_with_its_sqlstate() {
        use Unreadable::*;
        for (why, code, words) in [
            (BeyondChrono, "22008", "infinity"),
            (YearInText, "22008", "year"),
            (EndOfDay, "22008", "24:00:00"),
            (DateStyle, "0A000", "DateStyle"),
            (TimeZone, "0A000", "TimeZone"),
            (ByteaOutput, "0A000", "bytea_output"),
            (NullText, "0A000", "NULL"),
            (ArrayShape, "0A000", "dimension"),
        ] {
            let err = why.error("due_at", "TIMESTAMPTZ");
            let db = err.as_database_error().unwrap();
            assert_eq!(db.code().as_deref(), Some(code));
            let shown = db.message();
            assert!(
                shown.starts_with("column \"due_at\" (TIMESTAMPTZ) holds"),
                "{shown}"
            );
            assert!(shown.contains(words), "{shown}");
        }
    }
}
