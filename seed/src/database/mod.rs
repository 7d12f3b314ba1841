//! The seed's statements, all in its one transaction: the checks and the emptying before it
//! ([`prepare`]), the indexes and foreign keys set aside during the load ([`bulk`]), the `COPY`
//! loading ([`load`]) and the `ANALYZE` after.

pub mod bulk;
mod load;

use sqlx::{AssertSqlSafe, PgConnection};

pub use load::load;

use crate::{SeedError, generate::TABLES};

/// Every table the seed writes, in the order it writes them.
pub const APPLICATION_TABLES: [&str; 19] = {
    let mut names = [""; 19];
    let mut i = 0;
    while i < TABLES.len() {
        names[i] = TABLES[i].name;
        i += 1;
    }
    names
};

/// The table the migrator keeps its history in: never emptied, never counted as data.
const MIGRATION_TABLE: &str = "seaql_migrations";

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A statement naming tables: names from the catalog, always through [`quote`] (or as
/// PostgreSQL itself prints them), definitions as PostgreSQL prints them, or the seed's own
/// constants; never a value from outside.
fn naming_tables(sql: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql)
}

async fn execute(conn: &mut PgConnection, statement: String) -> Result<(), SeedError> {
    sqlx::query(naming_tables(statement))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The tables of the current schema, except the migration history.
async fn schema_tables(conn: &mut PgConnection) -> Result<Vec<String>, SeedError> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c
         WHERE c.relnamespace = current_schema()::regnamespace
           AND c.relkind IN ('r', 'p') AND NOT c.relispartition AND c.relname <> $1
         ORDER BY 1",
    )
    .bind(MIGRATION_TABLE)
    .fetch_all(conn)
    .await?)
}

/// Makes the database ready for the load: one seed at a time, the schema migrated, every table
/// but the migration history locked, refused when one holds a row unless `reset`, then emptied
/// (when already empty, still truncated in this transaction: that lets `COPY ... FREEZE` write
/// rows that need no later vacuum). Returns the tables it emptied when `reset`.
pub async fn prepare(conn: &mut PgConnection, reset: bool) -> Result<Vec<String>, SeedError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('seed'))")
        .execute(&mut *conn)
        .await?;
    let tables = schema_tables(conn).await?;
    let missing: Vec<String> = APPLICATION_TABLES
        .iter()
        .filter(|table| !tables.iter().any(|t| t == *table))
        .map(|table| (*table).to_owned())
        .collect();
    if !missing.is_empty() {
        return Err(SeedError::NotMigrated { missing });
    }
    let list = tables
        .iter()
        .map(|t| quote(t))
        .collect::<Vec<_>>()
        .join(", ");
    // Locked before they are looked at, so no row can arrive between the check and the TRUNCATE.
    execute(conn, format!("LOCK TABLE {list} IN ACCESS EXCLUSIVE MODE")).await?;
    if !reset {
        require_empty(conn, &tables).await?;
    }
    // One statement for all, so foreign keys between them need no CASCADE (which could reach
    // further than these tables).
    execute(conn, format!("TRUNCATE {list} RESTART IDENTITY")).await?;
    Ok(if reset { tables } else { Vec::new() })
}

/// Fails naming every table (of the schema, not only the seeded ones) that holds a row.
async fn require_empty(conn: &mut PgConnection, tables: &[String]) -> Result<(), SeedError> {
    let mut holding = Vec::new();
    for table in tables {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", quote(table));
        if sqlx::query_scalar::<_, bool>(naming_tables(sql))
            .fetch_one(&mut *conn)
            .await?
        {
            holding.push(table.clone());
        }
    }
    if holding.is_empty() {
        Ok(())
    } else {
        Err(SeedError::NotEmpty { tables: holding })
    }
}

/// Fresh statistics, so the first queries on the seed are planned for its sizes.
pub async fn analyze(conn: &mut PgConnection) -> Result<(), SeedError> {
    execute(conn, format!("ANALYZE {}", APPLICATION_TABLES.join(", "))).await
}
