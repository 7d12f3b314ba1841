//! The one error type of every helper. Database errors are classified by SQLSTATE into what a
//! caller can act on; no variant carries a row's values (a duplicate `sessions.token` names the
//! constraint, never the token).
//!
//! On Citus an error raised on a worker node reaches the client without its table, column and
//! constraint fields (only SQLSTATE, message, detail, hint and context are passed on), and its
//! message names the shard (`"uq_slack_events_organization_id_event_id_102381"`, `on table
//! "members_102221"`): the names are then read from the message, the shard's suffix removed.

use std::ops::Deref;

use db_connect::{ConfigError, ConnectError};
use sea_orm::{DbErr, RuntimeErr, sqlx};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database configuration: {0}")]
    Config(#[from] ConfigError),
    /// A first connection failed: its cause and the URL, password masked.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("{entity} `{key}` was not found")]
    NotFound { entity: &'static str, key: String },
    #[error("{table}: a row with the same key already exists ({constraint})")]
    Conflict { table: String, constraint: String },
    #[error("{table}: a referenced row does not exist ({constraint})")]
    MissingReference { table: String, constraint: String },
    #[error("{entity} `{id}` cannot go from {from} to {to}")]
    InvalidTransition {
        entity: &'static str,
        id: String,
        from: String,
        to: &'static str,
    },
    #[error("the last owner of organization `{organization_id}` cannot be removed or demoted")]
    LastOwner { organization_id: String },
    #[error("invalid {field}: {reason}")]
    Validation { field: String, reason: String },
    #[error("the database is unavailable (retry later): {0}")]
    Unavailable(#[source] DbErr),
    #[error("database error: {0}")]
    Database(#[source] DbErr),
}

impl Error {
    pub(crate) fn not_found(entity: &'static str, key: impl ToString) -> Self {
        Self::NotFound {
            entity,
            key: key.to_string(),
        }
    }

    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Whether the same call may succeed if retried: the server or the pool was unavailable,
    /// or the transaction lost a serialization race or a deadlock.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Unavailable(_) => true,
            Self::Database(err) => matches!(sqlstate(err).as_deref(), Some("40001" | "40P01")),
            _ => false,
        }
    }
}

fn sqlx_error(err: &DbErr) -> Option<&sqlx::Error> {
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(e))
        | DbErr::Query(RuntimeErr::SqlxError(e))
        | DbErr::Conn(RuntimeErr::SqlxError(e)) => Some(e.deref()),
        _ => None,
    }
}

/// The SQLSTATE of a database error, if the server sent one.
pub fn sqlstate(err: &DbErr) -> Option<String> {
    sqlx_error(err)?
        .as_database_error()?
        .code()
        .map(|code| code.into_owned())
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        if matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) {
            return Self::Unavailable(err);
        }
        let Some(sqlx_err) = sqlx_error(&err) else {
            return Self::Database(err);
        };
        if matches!(
            sqlx_err,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::WorkerCrashed
                | sqlx::Error::Tls(_)
        ) {
            return Self::Unavailable(err);
        }
        let Some(db_err) = sqlx_err.as_database_error() else {
            return Self::Database(err);
        };
        let code = db_err.code().map(|c| c.into_owned()).unwrap_or_default();
        let message = db_err.message();
        let table = db_err
            .table()
            .map(str::to_owned)
            .unwrap_or_else(|| named_in(message, &["on table ", "relation "]));
        let constraint = db_err
            .constraint()
            .map(str::to_owned)
            .unwrap_or_else(|| named_in(message, &["constraint "]));
        let (table, constraint) = without_common_shard_suffix(table, constraint);
        match code.as_str() {
            "23505" => Self::Conflict { table, constraint },
            "23503" => Self::MissingReference { table, constraint },
            "23514" => Self::Validation {
                field: constraint,
                reason: "the value is not allowed".to_owned(),
            },
            "23502" => {
                let column = db_err
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .and_then(|pg| pg.column())
                    .map(str::to_owned)
                    .unwrap_or_else(|| quoted_after(message, "column ").unwrap_or_default());
                Self::Validation {
                    field: format!("{table}.{column}"),
                    reason: "a value is required".to_owned(),
                }
            }
            // Data the column cannot hold: too long, out of range, malformed, NUL bytes, too deep.
            "22001" | "22003" | "22P02" | "22021" | "22P05" | "22023" | "54000" | "54001" => {
                Self::Validation {
                    field: if table.is_empty() {
                        "value".to_owned()
                    } else {
                        table
                    },
                    reason: db_err.message().to_owned(),
                }
            }
            c if c.starts_with("08") || c.starts_with("57P") => Self::Unavailable(err),
            _ => Self::Database(err),
        }
    }
}

/// The first double-quoted name after `marker` in `message` (`... constraint "name" ...`), if
/// any.
fn quoted_after(message: &str, marker: &str) -> Option<String> {
    let rest = &message[message.find(&format!("{marker}\""))? + marker.len() + 1..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// What a Citus worker's message names after the first of `markers` found, without the shard's
/// `_<shard id>` suffix; empty when it names nothing.
fn named_in(message: &str, markers: &[&str]) -> String {
    markers
        .iter()
        .find_map(|marker| quoted_after(message, marker))
        .map(|name| without_shard_suffix(&name).to_owned())
        .unwrap_or_default()
}

/// A table and constraint that both end in the same `_<shard id>` (a Citus local table's shard,
/// whose error the coordinator raises itself with its fields set) without it.
fn without_common_shard_suffix(table: String, constraint: String) -> (String, String) {
    let shard = |name: &str| {
        let base = without_shard_suffix(name);
        (base.len() < name.len()).then(|| name[base.len()..].to_owned())
    };
    match (shard(&table), shard(&constraint)) {
        (Some(a), Some(b)) if a == b => (
            without_shard_suffix(&table).to_owned(),
            without_shard_suffix(&constraint).to_owned(),
        ),
        _ => (table, constraint),
    }
}

/// `members_102221` -> `members`: a shard is its table's name, `_`, and the shard id.
fn without_shard_suffix(name: &str) -> &str {
    match name.rsplit_once('_') {
        Some((table, shard))
            if !table.is_empty()
                && !shard.is_empty()
                && shard.bytes().all(|b| b.is_ascii_digit()) =>
        {
            table
        }
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_read_from_a_citus_workers_message_without_the_shard() {
        let duplicate = "duplicate key value violates unique constraint \"uq_slack_events_organization_id_event_id_102381\"";
        assert_eq!(
            named_in(duplicate, &["constraint "]),
            "uq_slack_events_organization_id_event_id"
        );
        let missing = "insert or update on table \"members_102221\" violates foreign key constraint \"fk_members_user_id_102221\"";
        assert_eq!(named_in(missing, &["on table ", "relation "]), "members");
        assert_eq!(named_in(missing, &["constraint "]), "fk_members_user_id");
        let check = "new row for relation \"tool_calls_102300\" violates check constraint \"ck_tool_calls_status_102300\"";
        assert_eq!(named_in(check, &["on table ", "relation "]), "tool_calls");
        let null = "null value in column \"model\" of relation \"agent_runs_102290\" violates not-null constraint";
        assert_eq!(quoted_after(null, "column ").as_deref(), Some("model"));
        assert_eq!(named_in(null, &["on table ", "relation "]), "agent_runs");
    }

    #[test]
    fn a_local_shards_table_and_constraint_lose_their_common_suffix_only() {
        let named = |t: &str, c: &str| without_common_shard_suffix(t.to_owned(), c.to_owned());
        assert_eq!(
            named("sessions_102009", "uq_sessions_token_102009"),
            ("sessions".to_owned(), "uq_sessions_token".to_owned())
        );
        // Different numbers, or only one of them numbered: names of the schema, kept.
        assert_eq!(
            named("runs_2", "uq_runs_3"),
            ("runs_2".to_owned(), "uq_runs_3".to_owned())
        );
        assert_eq!(
            named("events_2026", "uq_events"),
            ("events_2026".to_owned(), "uq_events".to_owned())
        );
        assert_eq!(named("t", "c_1"), ("t".to_owned(), "c_1".to_owned()));
    }

    #[test]
    fn a_name_without_a_shard_suffix_is_kept_whole() {
        assert_eq!(without_shard_suffix("uq_users_email"), "uq_users_email");
        assert_eq!(without_shard_suffix("users"), "users");
        assert_eq!(without_shard_suffix("t_1a"), "t_1a");
        assert_eq!(without_shard_suffix("_123"), "_123");
        assert_eq!(without_shard_suffix("t_"), "t_");
        assert_eq!(named_in("no names here", &["constraint "]), "");
        assert_eq!(
            quoted_after("constraint \"unterminated", "constraint "),
            None
        );
    }
}
