//! Errors of the pooler-safe path as SeaORM reports database errors: a `DbErr` around an sqlx
//! error. What the pool itself refuses (a statement of a transaction that has ended, a value
//! that cannot be written out) is a database error with the SQLSTATE PostgreSQL would have
//! answered, so callers that classify errors by SQLSTATE see the same either way.

use std::borrow::Cow;

use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr, sqlx};
use sqlx::error::{DatabaseError, ErrorKind};

// SeaORM's own mapping of sqlx errors (not public in SeaORM), so callers see the same `DbErr`s
// whichever way the pool reaches the database.
pub(super) fn sqlx_error_to_exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(err.into()))
}

pub(super) fn sqlx_error_to_query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(err.into()))
}

pub(super) fn sqlx_conn_acquire_err(err: sqlx::Error) -> DbErr {
    match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        other => DbErr::Conn(RuntimeErr::SqlxError(other.into())),
    }
}

/// An error the pool raises itself, with the SQLSTATE `code`, as the driver's database error.
pub(super) fn local_error(
    code: &'static str,
    message: impl Into<Cow<'static, str>>,
) -> sqlx::Error {
    sqlx::Error::Database(Box::new(LocalError {
        code,
        message: message.into(),
    }))
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct LocalError {
    code: &'static str,
    message: Cow<'static, str>,
}

impl DatabaseError for LocalError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<Cow<'_, str>> {
        Some(Cow::Borrowed(self.code))
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

    fn kind(&self) -> ErrorKind {
        ErrorKind::Other
    }
}
