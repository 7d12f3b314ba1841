//! The seed's statements: the checks before it, the reset, the `COPY` loading that streams the
//! generator's chunks as they come, and the `ANALYZE` after.

use std::time::Instant;

use sqlx::{AssertSqlSafe, PgConnection};
use tokio::sync::mpsc;

use crate::{
    SeedError,
    copy::{Chunk, Sink},
    generate::{self, Landmarks, TABLES},
    progress::Progress,
    scale::Sizes,
};

/// Every table the seed writes, in the order it writes them.
pub const APPLICATION_TABLES: [&str; 17] = {
    let mut names = [""; 17];
    let mut i = 0;
    while i < TABLES.len() {
        names[i] = TABLES[i].name;
        i += 1;
    }
    names
};

/// The table the migrator keeps its history in: never emptied, never counted as data.
const MIGRATION_TABLE: &str = "seaql_migrations";

/// Chunks in flight between the generator and the connection: enough to keep both busy.
const CHUNKS_IN_FLIGHT: usize = 8;

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// A statement naming tables: names from the catalog, always through [`quote`], or the seed's
/// own constants; never a value from outside.
fn naming_tables(sql: String) -> AssertSqlSafe<String> {
    AssertSqlSafe(sql)
}

/// Two seeds of the same database run one after the other (the second then finds rows).
pub async fn lock(conn: &mut PgConnection) -> Result<(), SeedError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('seed'))")
        .execute(conn)
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

/// Fails naming the tables the seed writes that the schema lacks.
pub async fn require_schema(conn: &mut PgConnection) -> Result<(), SeedError> {
    let present = schema_tables(conn).await?;
    let missing: Vec<String> = APPLICATION_TABLES
        .iter()
        .filter(|table| !present.iter().any(|p| p == *table))
        .map(|table| (*table).to_owned())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(SeedError::NotMigrated { missing })
    }
}

/// Fails naming every table (of the schema, not only the seeded ones) that holds a row.
pub async fn require_empty(conn: &mut PgConnection) -> Result<(), SeedError> {
    let mut tables = Vec::new();
    for table in schema_tables(conn).await? {
        let sql = format!("SELECT EXISTS (SELECT 1 FROM {})", quote(&table));
        if sqlx::query_scalar::<_, bool>(naming_tables(sql))
            .fetch_one(&mut *conn)
            .await?
        {
            tables.push(table);
        }
    }
    if tables.is_empty() {
        Ok(())
    } else {
        Err(SeedError::NotEmpty { tables })
    }
}

/// Empties every table of the schema but the migration history, in one statement (so foreign
/// keys between them need no CASCADE, which could reach further); returns their names.
pub async fn empty_all(conn: &mut PgConnection) -> Result<Vec<String>, SeedError> {
    let tables = schema_tables(conn).await?;
    if !tables.is_empty() {
        let list: Vec<String> = tables.iter().map(|t| quote(t)).collect();
        sqlx::query(naming_tables(format!(
            "TRUNCATE {} RESTART IDENTITY",
            list.join(", ")
        )))
        .execute(conn)
        .await?;
    }
    Ok(tables)
}

/// Fresh statistics, so the first queries on the seed are planned for its sizes.
pub async fn analyze(conn: &mut PgConnection) -> Result<(), SeedError> {
    sqlx::query(naming_tables(format!(
        "ANALYZE {}",
        APPLICATION_TABLES.join(", ")
    )))
    .execute(conn)
    .await?;
    Ok(())
}

/// Chunks go to the loading task; a closed channel means the loader failed.
struct ChannelSink(mpsc::Sender<Chunk>);

impl Sink for ChannelSink {
    fn send(&mut self, chunk: Chunk) -> bool {
        self.0.blocking_send(chunk).is_ok()
    }
}

/// Generates on a blocking thread while this task streams each table's rows with `COPY`.
/// Returns the landmarks and the rows PostgreSQL counted, by table.
pub async fn load(
    conn: &mut PgConnection,
    seed: u64,
    sizes: &Sizes,
    progress: &dyn Progress,
) -> Result<(Landmarks, Vec<(&'static str, u64)>), SeedError> {
    let (sender, mut receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let sizes = *sizes;
    let generator =
        tokio::task::spawn_blocking(move || generate::all(seed, &sizes, &mut ChannelSink(sender)));
    let mut written = Vec::with_capacity(TABLES.len());
    while let Some(chunk) = receiver.recv().await {
        let Chunk::Start { table, expected } = chunk else {
            return Err(out_of_order());
        };
        progress.table_started(table.name, expected);
        let started = Instant::now();
        let mut copy = conn.copy_in_raw(&table.copy_statement()).await?;
        loop {
            match receiver.recv().await {
                Some(Chunk::Rows { data, rows }) => {
                    copy.send(data).await?;
                    progress.rows_loaded(rows);
                }
                Some(Chunk::End) => break,
                Some(Chunk::Start { .. }) => {
                    copy.abort("the seed generator started a table twice")
                        .await?;
                    return Err(out_of_order());
                }
                None => {
                    copy.abort("the seed generator stopped").await?;
                    return Err(match generator.await {
                        Err(err) => SeedError::Generator(err.to_string()),
                        Ok(_) => out_of_order(),
                    });
                }
            }
        }
        let rows = copy.finish().await?;
        progress.table_finished(table.name, rows, started.elapsed());
        written.push((table.name, rows));
    }
    let landmarks = generator
        .await
        .map_err(|err| SeedError::Generator(err.to_string()))?;
    Ok((landmarks, written))
}

fn out_of_order() -> SeedError {
    SeedError::Generator("rows arrived outside a table".into())
}
