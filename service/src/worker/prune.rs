//! Retention: finished events (processed, ignored, failed) older than an age are deleted in
//! small batches, one organization at a time, each batch its own short statement that skips
//! rows another session holds, so pruning never waits on workers nor makes them wait. Agent runs
//! that referenced a pruned event keep their row; the same statement sets their reference to
//! NULL (the composite key to the event is `NO ACTION`: Citus refuses `SET NULL` on a key that
//! holds the distribution column). Deliveries no route claimed are pruned by age too.

use std::time::Duration;

use sea_orm::{ConnectionTrait, FromQueryResult};

use crate::{Error, events::EventSource, sql};

/// Events deleted per statement unless told otherwise.
pub const DEFAULT_PRUNE_BATCH: u64 = 1_000;

fn clamp_batch(batch: u64) -> u64 {
    batch.clamp(1, 100_000)
}

/// Deletes the organization's processed, ignored and failed events of `S` created more than
/// `older_than` ago, `batch` rows per statement (through the `created_at` index, oldest first),
/// until none is left, unlinking the agent runs that named them in the same statement. Pending
/// and processing events are never touched, whatever their age. Returns how many were deleted.
pub async fn prune<S: EventSource>(
    db: &impl ConnectionTrait,
    organization_id: &str,
    older_than: Duration,
    batch: u64,
) -> Result<u64, Error> {
    let batch = clamp_batch(batch);
    let link = S::RUN_LINK;
    let sql = format!(
        "WITH doomed AS (
             SELECT id FROM {0}
             WHERE organization_id = $1 AND created_at < now() - make_interval(secs => $2)
               AND status IN ('processed', 'ignored', 'failed')
             ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED),
         unlinked AS (
             UPDATE agent_runs r SET {link} = NULL, updated_at = now() FROM doomed
             WHERE r.organization_id = $1 AND r.{link} = doomed.id
             RETURNING r.id)
         DELETE FROM {0} e USING doomed WHERE e.organization_id = $1 AND e.id = doomed.id",
        S::TABLE
    );
    let mut total = 0;
    loop {
        let deleted = sql::execute(
            db,
            &sql,
            [
                organization_id.into(),
                older_than.as_secs_f64().into(),
                (batch as i64).into(),
            ],
        )
        .await?;
        total += deleted;
        if deleted < batch {
            return Ok(total);
        }
    }
}

/// Deletes `S`'s deliveries kept in `unrouted_events` that arrived more than `older_than` ago,
/// `batch` per statement, oldest first. Returns how many were deleted.
pub async fn prune_unrouted<S: EventSource>(
    db: &impl ConnectionTrait,
    older_than: Duration,
    batch: u64,
) -> Result<u64, Error> {
    let batch = clamp_batch(batch);
    let sql = "WITH doomed AS (
                   SELECT id FROM unrouted_events
                   WHERE provider = $1 AND created_at < now() - make_interval(secs => $2)
                   ORDER BY created_at LIMIT $3 FOR UPDATE SKIP LOCKED)
               DELETE FROM unrouted_events u USING doomed WHERE u.id = doomed.id";
    let mut total = 0;
    loop {
        let deleted = sql::execute(
            db,
            sql,
            [
                S::PROVIDER.into(),
                older_than.as_secs_f64().into(),
                (batch as i64).into(),
            ],
        )
        .await?;
        total += deleted;
        if deleted < batch {
            return Ok(total);
        }
    }
}

/// What the worker's retention does each time: [`prune`] for every organization, then
/// [`prune_unrouted`]. Returns how many rows were deleted.
pub(crate) async fn prune_everything<S: EventSource>(
    db: &impl ConnectionTrait,
    older_than: Duration,
    batch: u64,
) -> Result<u64, Error> {
    #[derive(FromQueryResult)]
    struct Organization {
        id: String,
    }
    let organizations: Vec<Organization> =
        sql::all(db, "SELECT id FROM organizations ORDER BY id", []).await?;
    let mut total = 0;
    for organization in organizations {
        total += prune::<S>(db, &organization.id, older_than, batch).await?;
    }
    Ok(total + prune_unrouted::<S>(db, older_than, batch).await?)
}
