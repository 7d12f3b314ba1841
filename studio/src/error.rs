//! What goes wrong, as the page and status the browser gets. Database errors are explained by
//! SQLSTATE and name the constraint; the studio never selects a secret column, so no message
//! can carry one.

use std::ops::Deref;

use axum::{
    http::StatusCode,
    response::{IntoResponse, Response},
};
use catalog::CatalogError;
use sea_orm::{DbErr, RuntimeErr, sqlx};

use crate::html;

#[derive(Debug, thiserror::Error)]
pub enum StudioError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// A constraint or a concurrent change refused a write.
    #[error("{0}")]
    Conflict(String),
    #[error(
        "The query ran longer than the studio's statement timeout and PostgreSQL cancelled it; \
         nothing was changed. Narrow the page with a filter, or start the studio with a longer \
         --statement-timeout."
    )]
    Timeout,
    #[error("the database is unavailable: {0}")]
    Unavailable(DbErr),
    #[error("database error: {0}")]
    Database(DbErr),
}

impl StudioError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Database(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<CatalogError> for StudioError {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::Query(db) => db.into(),
            shape => Self::Database(DbErr::Custom(shape.to_string())),
        }
    }
}

impl From<DbErr> for StudioError {
    fn from(err: DbErr) -> Self {
        if matches!(err, DbErr::ConnectionAcquire(_) | DbErr::Conn(_)) {
            return Self::Unavailable(err);
        }
        let db_err = match &err {
            DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => {
                match e.deref() {
                    sqlx::Error::Database(db_err) => db_err,
                    sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                        return Self::Unavailable(err);
                    }
                    _ => return Self::Database(err),
                }
            }
            _ => return Self::Database(err),
        };
        let code = db_err.code().unwrap_or_default().into_owned();
        let table = db_err.table().unwrap_or("the table");
        let constraint = db_err.constraint().unwrap_or("a constraint");
        let column = db_err
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|pg| pg.column())
            .unwrap_or("a column");
        let message = match code.as_str() {
            "23505" => format!(
                "Rejected by unique constraint {constraint}: another row of {table} already has this value."
            ),
            // On insert/update the referenced row is missing; on delete, rows still point here.
            "23503" if db_err.message().starts_with("update or delete") => format!(
                "Rejected by foreign key {constraint}: rows of {table} still reference this row."
            ),
            "23503" => {
                format!("Rejected by foreign key {constraint}: the referenced row does not exist.")
            }
            "23514" => format!("Rejected by check constraint {constraint} on {table}."),
            "23502" => format!("Rejected: {table}.{column} cannot be NULL."),
            c if c.starts_with("22") => format!("Invalid value: {}.", db_err.message()),
            // query_canceled: the statement timeout fired.
            "57014" => return Self::Timeout,
            c if c.starts_with("08") || c.starts_with("57P") => return Self::Unavailable(err),
            _ => return Self::Database(err),
        };
        if code.starts_with("23") {
            Self::Conflict(message)
        } else {
            Self::BadRequest(message)
        }
    }
}

impl IntoResponse for StudioError {
    fn into_response(self) -> Response {
        if matches!(self, Self::Database(_) | Self::Unavailable(_)) {
            tracing::error!(error = %self, "studio request failed");
        }
        let status = self.status();
        let body = html::error_page(status, &self.to_string());
        (status, body).into_response()
    }
}
