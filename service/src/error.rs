//! The one error type of every helper. Database errors are classified by SQLSTATE into what a
//! caller can act on; no variant carries a row's values (a duplicate `sessions.token` names the
//! constraint, never the token).

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
        let table = db_err.table().unwrap_or_default().to_owned();
        let constraint = db_err.constraint().unwrap_or_default().to_owned();
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
                    .unwrap_or_default();
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
