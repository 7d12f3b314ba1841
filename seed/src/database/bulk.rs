//! The biggest tables' indexes, key constraints and foreign keys, set aside for the load and
//! rebuilt after it, as PostgreSQL's manual advises for bulk loading ("Populating a Database"):
//! one sort per index and one join per foreign key instead of a B-tree insertion and a lookup
//! per row, several times faster. Rebuilding checks every row again (unique keys, foreign
//! keys), and everything comes back under its own name with its own definition, as PostgreSQL
//! prints it (`pg_get_constraintdef`, `pg_get_indexdef`).

use sqlx::PgConnection;

use super::{execute, quote};
use crate::SeedError;

/// The tables that get most of the rows.
pub const BULK_TABLES: [&str; 4] = ["slack_events", "linear_events", "agent_runs", "tool_calls"];

/// What [`set_aside`] dropped, as the statements that recreate it, in the order they must run.
pub struct SetAside {
    keys: Vec<String>,
    indexes: Vec<String>,
    foreign_keys: Vec<String>,
}

impl SetAside {
    pub fn describe(&self) -> String {
        format!(
            "{} keys, {} indexes and {} foreign keys",
            self.keys.len(),
            self.indexes.len(),
            self.foreign_keys.len()
        )
    }
}

/// Drops every foreign key from or to a bulk table, the bulk tables' primary and unique keys,
/// and their other full indexes. Left in place, and so never lost: anything with a comment, and
/// clustered, replica-identity, invalid or other-tablespace indexes, and partial indexes: they
/// cover only the queue, so maintaining them costs little, and PostgreSQL prints some of their
/// predicates in a form that reads back as a different, if equivalent, expression
/// (`status IN (...)` on a varchar column), which would change the schema.
pub async fn set_aside(conn: &mut PgConnection) -> Result<SetAside, SeedError> {
    let tables: Vec<String> = BULK_TABLES.iter().map(|t| (*t).to_owned()).collect();
    // (table as PostgreSQL names it, constraint, definition, kind)
    let constraints: Vec<(String, String, String, String)> = sqlx::query_as(
        "WITH bulk AS (SELECT oid FROM pg_class
                       WHERE relnamespace = current_schema()::regnamespace AND relname = ANY($1))
         SELECT c.conrelid::regclass::text, c.conname::text, pg_get_constraintdef(c.oid),
                c.contype::text
         FROM pg_constraint c
         WHERE obj_description(c.oid, 'pg_constraint') IS NULL
           AND (   (c.contype = 'f' AND (c.conrelid IN (SELECT oid FROM bulk)
                                          OR c.confrelid IN (SELECT oid FROM bulk)))
                OR (c.contype IN ('p', 'u') AND c.conrelid IN (SELECT oid FROM bulk)
                    AND obj_description(c.conindid, 'pg_class') IS NULL))
         ORDER BY 1, 2",
    )
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
         FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
         JOIN pg_class t ON t.oid = i.indrelid
         WHERE t.relnamespace = current_schema()::regnamespace AND t.relname = ANY($1)
           AND i.indisvalid AND NOT i.indisclustered AND NOT i.indisreplident
           AND i.indpred IS NULL
           AND x.reltablespace = 0 AND obj_description(i.indexrelid, 'pg_class') IS NULL
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid
                           AND c.contype IN ('p', 'u', 'x'))
         ORDER BY 1",
    )
    .bind(&tables)
    .fetch_all(&mut *conn)
    .await?;

    let mut set_aside = SetAside {
        keys: Vec::new(),
        indexes: Vec::new(),
        foreign_keys: Vec::new(),
    };
    // Foreign keys first: they depend on the keys they reference.
    let (foreign_keys, keys): (Vec<_>, Vec<_>) =
        constraints.into_iter().partition(|(.., kind)| kind == "f");
    for (table, name, definition, _) in foreign_keys.into_iter().chain(keys) {
        let name = quote(&name);
        execute(conn, format!("ALTER TABLE {table} DROP CONSTRAINT {name}")).await?;
        let add = format!("ALTER TABLE {table} ADD CONSTRAINT {name} {definition}");
        if definition.starts_with("FOREIGN KEY") {
            set_aside.foreign_keys.push(add);
        } else {
            set_aside.keys.push(add);
        }
    }
    for (name, definition) in indexes {
        execute(conn, format!("DROP INDEX {name}")).await?;
        set_aside.indexes.push(definition);
    }
    Ok(set_aside)
}

/// Recreates what [`set_aside`] dropped: keys, then indexes, then foreign keys (which look up the
/// keys they reference).
pub async fn restore(conn: &mut PgConnection, set_aside: SetAside) -> Result<(), SeedError> {
    // Index builds sort in memory up to this; the default (64 MB) spills the large scale to disk.
    sqlx::query("SET LOCAL maintenance_work_mem = '512MB'")
        .execute(&mut *conn)
        .await?;
    let SetAside {
        keys,
        indexes,
        foreign_keys,
    } = set_aside;
    for statement in keys.into_iter().chain(indexes).chain(foreign_keys) {
        execute(conn, statement).await?;
    }
    Ok(())
}
