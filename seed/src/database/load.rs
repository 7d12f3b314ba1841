//! Generation on a blocking thread while this task streams each table's rows with
//! `COPY ... FROM STDIN`, chunk by chunk, on the seed's connection.

use std::time::Instant;

use sqlx::PgConnection;
use tokio::sync::mpsc;

use crate::{
    SeedError,
    copy::{Chunk, Sink},
    generate::{self, Landmarks, TABLES},
    progress::Progress,
    scale::Sizes,
};

/// Chunks in flight between the generator and the connection: enough to keep both busy.
const CHUNKS_IN_FLIGHT: usize = 8;

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
