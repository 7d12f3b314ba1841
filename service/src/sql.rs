//! Raw statements where SeaORM's builder cannot say it in one round trip (CTEs, `unnest`,
//! `FOR UPDATE SKIP LOCKED`), mapped into the generated models.

use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement, Value};

use crate::Error;

pub(crate) fn statement(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Every row of `sql` as `M`.
pub(crate) async fn all<M: FromQueryResult>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Vec<M>, Error> {
    Ok(M::find_by_statement(statement(sql, values)).all(db).await?)
}

/// The first row of `sql` as `M`, if any.
pub(crate) async fn one<M: FromQueryResult>(
    db: &impl ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<Option<M>, Error> {
    Ok(M::find_by_statement(statement(sql, values)).one(db).await?)
}

/// Runs `sql`, returning how many rows it changed.
pub(crate) async fn execute(
    db: &impl ConnectionTrait,
    sql: &str,
    values: impl IntoIterator<Item = Value>,
) -> Result<u64, Error> {
    Ok(db
        .execute_raw(statement(sql, values))
        .await?
        .rows_affected())
}

/// After a guarded `UPDATE ... WHERE organization_id = $1 AND id = $2 AND status IN (...)`
/// changed nothing: the organization has no such row ([`Error::NotFound`]) or its status does
/// not allow the move ([`Error::InvalidTransition`]).
pub(crate) async fn refused_transition(
    db: &impl ConnectionTrait,
    table: &'static str,
    entity: &'static str,
    organization_id: &str,
    id: impl Into<Value> + ToString + Copy,
    to: &'static str,
) -> Error {
    #[derive(FromQueryResult)]
    struct Current {
        status: String,
    }
    let sql = format!("SELECT status FROM {table} WHERE organization_id = $1 AND id = $2");
    match one::<Current>(db, &sql, [organization_id.into(), id.into()]).await {
        Ok(Some(current)) => Error::InvalidTransition {
            entity,
            id: id.to_string(),
            from: current.status,
            to,
        },
        Ok(None) => Error::not_found(entity, id),
        Err(err) => err,
    }
}

/// `col, ...` (or `alias.col, ...`) for every column of `E`: what a statement that returns `E`'s
/// rows selects or returns, never `*`. A prepared statement keeps its result type, and
/// PostgreSQL refuses to run a cached plan whose result type changed (`0A000`): with `*`, every
/// pooled connection of every running service would fail the statement once a migration adds a
/// column to the table.
pub(crate) fn columns<E: sea_orm::EntityTrait>(alias: Option<&str>) -> String {
    use sea_orm::{IdenStatic, Iterable};
    let qualifier = alias.map(|a| format!("{a}.")).unwrap_or_default();
    E::Column::iter()
        .map(|c| format!("{qualifier}{}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `alias.col AS prefixcol, ...` for every column of `E`, to read two entities from one joined
/// row with `FromQueryResult::from_query_result(row, prefix)`.
pub(crate) fn select_list<E: sea_orm::EntityTrait>(alias: &str, prefix: &str) -> String {
    use sea_orm::{IdenStatic, Iterable};
    E::Column::iter()
        .map(|c| format!("{alias}.{0} AS {prefix}{0}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new id for a Better Auth table, in Better Auth's own shape: 32 random alphanumerics.
pub(crate) fn new_text_id() -> String {
    use rand::{Rng, distr::Alphanumeric};
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}
