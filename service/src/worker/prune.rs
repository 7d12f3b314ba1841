//! Retention: finished events (processed, ignored, failed) older than an age are deleted in
//! small batches, each its own short statement that skips rows another session holds, so
//! pruning never waits on workers nor makes them wait. Agent runs that referenced a pruned
//! event keep their row; the reference becomes NULL (`ON DELETE SET NULL`).

use std::time::Duration;

use sea_orm::ConnectionTrait;

use crate::{Error, events::EventSource, sql};

/// Events deleted per statement unless told otherwise.
pub const DEFAULT_PRUNE_BATCH: u64 = 1_000;

/// Deletes `S`'s processed, ignored and failed events created more than `older_than` ago,
/// `batch` rows per statement (through the `created_at` index, oldest first), until none is
/// left. Pending and processing events are never touched, whatever their age. Returns how many
/// were deleted.
pub async fn prune<S: EventSource>(
    db: &impl ConnectionTrait,
    older_than: Duration,
    batch: u64,
) -> Result<u64, Error> {
    let batch = batch.clamp(1, 100_000);
    let sql = format!(
        "WITH doomed AS (
             SELECT id FROM {0}
             WHERE created_at < now() - make_interval(secs => $1)
               AND status IN ('processed', 'ignored', 'failed')
             ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED)
         DELETE FROM {0} e USING doomed WHERE e.id = doomed.id",
        S::TABLE
    );
    let mut total = 0;
    loop {
        let deleted = sql::execute(
            db,
            &sql,
            [older_than.as_secs_f64().into(), (batch as i64).into()],
        )
        .await?;
        total += deleted;
        if deleted < batch {
            return Ok(total);
        }
    }
}
