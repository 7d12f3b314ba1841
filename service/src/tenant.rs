//! Work as one organization: a transaction whose first statement is
//! `SET LOCAL app.organization_id = '<id>'`, which the row-level security policies of every
//! tenant table read (`migration::tenancy`). Helpers compose inside it as in any transaction.
//!
//! ```no_run
//! # async fn demo(db: &service::Db) -> Result<(), service::Error> {
//! use sea_orm::TransactionTrait as _;
//! let txn = service::tenant::begin(db, "org_acme").await?;
//! let runs = service::agents::list_runs(&txn, "org_acme", None, 50).await?;
//! txn.commit().await?;
//! # Ok(()) }
//! ```
//!
//! Why `SET LOCAL`, as its own statement, and never a session `SET`:
//! - It ends with the transaction (commit or rollback), so a pooler (PgBouncer in transaction
//!   mode) hands the server session to the next client with nothing set: that one reads `''`,
//!   which `current_organization_id()` turns into no rows.
//! - Citus forwards a `SET LOCAL` to its workers (with `citus.propagate_set_commands = 'local'`
//!   in the coordinator's configuration) when it is a query of its own after `BEGIN`;
//!   `set_config(.., true)` is a function call and is not forwarded, so on a worker the
//!   organization would be empty. Through the pool's transaction-mode path `BEGIN` rides in the
//!   same query string as the `SET LOCAL`, which Citus also forwards.
//! - `SET` takes no bind parameter, so the id is written into the statement: only ids of
//!   letters, digits, `_` and `-` (what Better Auth generates) are accepted, so no quoting rule
//!   (not even `standard_conforming_strings = off`) can change what the literal says.

use sea_orm::{ConnectionTrait, TransactionTrait};

use crate::Error;

/// The setting the policies read (`migration::tenancy::SETTING`).
pub const SETTING: &str = "app.organization_id";
/// The longest organization id accepted.
pub const MAX_ID_LEN: usize = 128;

/// `SET LOCAL app.organization_id = '<organization_id>'`, refusing an id that is empty, longer
/// than [`MAX_ID_LEN`] or holds anything but ASCII letters, digits, `_` and `-`.
pub fn set_local_statement(organization_id: &str) -> Result<String, Error> {
    if organization_id.is_empty() {
        return Err(Error::invalid("organization_id", "it is empty"));
    }
    if organization_id.len() > MAX_ID_LEN {
        return Err(Error::invalid(
            "organization_id",
            format!("it is longer than {MAX_ID_LEN} bytes"),
        ));
    }
    if let Some(bad) = organization_id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(Error::invalid(
            "organization_id",
            format!("it holds {bad:?}; only ASCII letters, digits, '_' and '-' are accepted"),
        ));
    }
    Ok(format!("SET LOCAL {SETTING} = '{organization_id}'"))
}

/// Makes the transaction `txn` work as `organization_id` from now until it ends (also inside a
/// savepoint: rolling back to one before it undoes it).
pub async fn enter(txn: &impl ConnectionTrait, organization_id: &str) -> Result<(), Error> {
    let statement = set_local_statement(organization_id)?;
    txn.execute_unprepared(&statement).await?;
    Ok(())
}

/// Begins a transaction on `db` that works as `organization_id`: commit or roll it back as any
/// transaction; what it did is confined to that organization's rows.
pub async fn begin<C: TransactionTrait>(
    db: &C,
    organization_id: &str,
) -> Result<C::Transaction, Error>
where
    C::Transaction: ConnectionTrait,
{
    // Checked before BEGIN, so a bad id costs no round trip.
    let statement = set_local_statement(organization_id)?;
    let txn = db.begin().await?;
    txn.execute_unprepared(&statement).await?;
    Ok(txn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_id_is_written_in_quotes() {
        assert_eq!(
            set_local_statement("org_Acme-1").unwrap().as_str(),
            "SET LOCAL app.organization_id = 'org_Acme-1'"
        );
        let longest = "a".repeat(MAX_ID_LEN);
        assert!(set_local_statement(&longest).is_ok());
    }

    #[test]
    fn ids_that_could_leave_the_literal_are_refused() {
        for bad in [
            "",
            "o'brien",
            "x\\",
            "x\\'; SET LOCAL app.organization_id = 'org_a",
            "$t$",
            "tab\there",
            "ünï",
            "a b",
        ] {
            let err = set_local_statement(bad).expect_err(bad);
            assert!(
                matches!(&err, Error::Validation { field, .. } if field == "organization_id"),
                "{bad:?}: {err}"
            );
        }
        let too_long = "a".repeat(MAX_ID_LEN + 1);
        assert!(set_local_statement(&too_long).is_err());
    }
}
