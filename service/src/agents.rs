//! Agent runs and their tool calls. Every state change is one guarded `UPDATE ... RETURNING`:
//! an illegal move changes nothing and is [`Error::InvalidTransition`] naming where the row is.
//! Every helper names the organization the run belongs to (one task on one node on Citus; a
//! run of another organization is [`Error::NotFound`]), and sets `updated_at` itself.
//!
//! ```text
//! run:        queued --start--> running --succeed--> succeeded
//!               |                  \-----fail-----> failed
//!               \--cancel--> cancelled <--cancel--/ (from running too)
//! tool call:  pending --start--> running --finish--> succeeded | failed (also from pending)
//! ```

use entity::{AgentRun, NewAgentRun, ToolCall, agent_runs, enums::TriggerSource, tool_calls};
use sea_orm::{
    ActiveModelTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryOrder,
    QueryResult, Set, Value,
    prelude::{DateTimeWithTimeZone, Json, Uuid},
    sqlx::{self, Row},
};
use serde::Serialize;

use crate::{
    Cursor, Error, Page,
    page::clamp_limit,
    sql::{self, columns, refused_transition},
};

/// What a run is created with.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRunInput {
    pub organization_id: String,
    pub user_id: Option<String>,
    pub trigger_source: TriggerSource,
    /// The delivery that triggered it; only with [`TriggerSource::Slack`].
    pub slack_event_id: Option<Uuid>,
    /// The delivery that triggered it; only with [`TriggerSource::Linear`].
    pub linear_event_id: Option<Uuid>,
    pub model: String,
    pub input: Json,
}

/// Tokens a run used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenCounts {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

fn token_value(field: &str, count: u32) -> Result<Value, Error> {
    i32::try_from(count)
        .map(Value::from)
        .map_err(|_| Error::invalid(field, format!("{count} exceeds {}", i32::MAX)))
}

/// Creates a `queued` run, linked to its triggering event if given, in one statement. The
/// event must be one of the run's organization ([`Error::MissingReference`] otherwise).
pub async fn create_run(db: &impl ConnectionTrait, input: NewRunInput) -> Result<AgentRun, Error> {
    if input.slack_event_id.is_some() && input.trigger_source != TriggerSource::Slack {
        return Err(Error::invalid(
            "slack_event_id",
            "only a Slack-triggered run links a Slack event",
        ));
    }
    if input.linear_event_id.is_some() && input.trigger_source != TriggerSource::Linear {
        return Err(Error::invalid(
            "linear_event_id",
            "only a Linear-triggered run links a Linear event",
        ));
    }
    if input.model.trim().is_empty() {
        return Err(Error::invalid("model", "it is empty"));
    }
    Ok(NewAgentRun {
        organization_id: Set(input.organization_id),
        user_id: Set(input.user_id),
        trigger_source: Set(input.trigger_source.into()),
        slack_event_id: Set(input.slack_event_id),
        linear_event_id: Set(input.linear_event_id),
        model: Set(input.model),
        input: Set(input.input),
        ..Default::default()
    }
    .insert(db)
    .await?)
}

/// A guarded move of a run: `set` applies only when its status is one of `from`; `extra`
/// values are `$3`, `$4`, ...
async fn move_run(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
    set: &str,
    from: &str,
    to: &'static str,
    extra: Vec<Value>,
) -> Result<AgentRun, Error> {
    let sql = format!(
        "UPDATE agent_runs SET {set}, updated_at = now()
         WHERE organization_id = $1 AND id = $2 AND status IN ({from}) RETURNING {}",
        columns::<agent_runs::Entity>(None)
    );
    let values = [organization_id.into(), id.into()].into_iter().chain(extra);
    match sql::one(db, &sql, values).await? {
        Some(run) => Ok(run),
        None => {
            Err(refused_transition(db, "agent_runs", "agent run", organization_id, id, to).await)
        }
    }
}

/// `queued` -> `running`, stamping `started_at`.
pub async fn start_run(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
) -> Result<AgentRun, Error> {
    move_run(
        db,
        organization_id,
        id,
        "status = 'running', started_at = now()",
        "'queued'",
        "running",
        vec![],
    )
    .await
}

/// `running` -> `to`, storing `value` in `column` (the output or the error) and the tokens.
async fn complete_run(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
    to: &'static str,
    column: &str,
    value: Value,
    tokens: TokenCounts,
) -> Result<AgentRun, Error> {
    let set = format!(
        "status = '{to}', {column} = $3, prompt_tokens = $4, completion_tokens = $5, \
         completed_at = now()"
    );
    let values = vec![
        value,
        token_value("prompt_tokens", tokens.prompt_tokens)?,
        token_value("completion_tokens", tokens.completion_tokens)?,
    ];
    move_run(db, organization_id, id, &set, "'running'", to, values).await
}

/// `running` -> `succeeded` with its output and token counts, stamping `completed_at`.
pub async fn succeed_run(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
    output: Json,
    tokens: TokenCounts,
) -> Result<AgentRun, Error> {
    complete_run(
        db,
        organization_id,
        id,
        "succeeded",
        "output",
        output.into(),
        tokens,
    )
    .await
}

/// `running` -> `failed` with the error and the tokens used so far, stamping `completed_at`.
pub async fn fail_run(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
    error: &str,
    tokens: TokenCounts,
) -> Result<AgentRun, Error> {
    complete_run(
        db,
        organization_id,
        id,
        "failed",
        "error",
        error.into(),
        tokens,
    )
    .await
}

/// `queued` or `running` -> `cancelled`, stamping `completed_at`.
pub async fn cancel_run(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
) -> Result<AgentRun, Error> {
    move_run(
        db,
        organization_id,
        id,
        "status = 'cancelled', completed_at = now()",
        "'queued', 'running'",
        "cancelled",
        vec![],
    )
    .await
}

/// What a tool call is appended with.
#[derive(Debug, Clone, PartialEq)]
pub struct NewToolCallInput {
    pub tool_name: String,
    pub tool_id: Option<Uuid>,
    pub input: Json,
}

/// Appends a `pending` tool call to the organization's `running` run with the run's next
/// `sequence` (0, 1, ...), in one statement. Concurrent appends get distinct, gapless
/// sequences: each takes the run's counter under the run's row lock.
pub async fn append_tool_call(
    db: &impl ConnectionTrait,
    organization_id: &str,
    run_id: Uuid,
    call: NewToolCallInput,
) -> Result<ToolCall, Error> {
    if call.tool_name.trim().is_empty() {
        return Err(Error::invalid("tool_name", "it is empty"));
    }
    let appended = sql::one(
        db,
        &format!(
            "WITH seq AS (
             UPDATE agent_runs SET next_tool_call_sequence = next_tool_call_sequence + 1,
                                   updated_at = now()
             WHERE organization_id = $1 AND id = $2 AND status = 'running'
             RETURNING next_tool_call_sequence - 1 AS sequence)
         INSERT INTO tool_calls (organization_id, agent_run_id, tool_id, tool_name, sequence, input)
         SELECT $1, $2, $3, $4, seq.sequence, $5 FROM seq
         RETURNING {}",
            columns::<tool_calls::Entity>(None)
        ),
        [
            organization_id.into(),
            run_id.into(),
            call.tool_id.into(),
            call.tool_name.into(),
            call.input.into(),
        ],
    )
    .await?;
    match appended {
        Some(tool_call) => Ok(tool_call),
        None => Err(refused_transition(
            db,
            "agent_runs",
            "agent run",
            organization_id,
            run_id,
            "a new tool call",
        )
        .await),
    }
}

/// `pending` -> `running`, stamping `started_at`.
pub async fn start_tool_call(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
) -> Result<ToolCall, Error> {
    let started = sql::one(
        db,
        &format!(
            "UPDATE tool_calls SET status = 'running', started_at = now(), updated_at = now()
             WHERE organization_id = $1 AND id = $2 AND status = 'pending' RETURNING {}",
            columns::<tool_calls::Entity>(None)
        ),
        [organization_id.into(), id.into()],
    )
    .await?;
    match started {
        Some(call) => Ok(call),
        None => Err(refused_transition(
            db,
            "tool_calls",
            "tool call",
            organization_id,
            id,
            "running",
        )
        .await),
    }
}

/// How a tool call ended.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolCallOutcome {
    Succeeded(Json),
    Failed(String),
}

/// `pending` or `running` -> `succeeded` (with output) or `failed` (with error), with how long
/// it took; stamps `completed_at` (and `started_at` if it never had one).
pub async fn finish_tool_call(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
    outcome: ToolCallOutcome,
    duration_ms: u32,
) -> Result<ToolCall, Error> {
    let duration = i32::try_from(duration_ms).map_err(|_| {
        Error::invalid("duration_ms", format!("{duration_ms} exceeds {}", i32::MAX))
    })?;
    let (status, output, error): (&'static str, Option<Json>, Option<String>) = match outcome {
        ToolCallOutcome::Succeeded(output) => ("succeeded", Some(output), None),
        ToolCallOutcome::Failed(error) => ("failed", None, Some(error)),
    };
    // `now()` inside COALESCE as a subquery: Citus evaluates it on the coordinator then.
    let finished = sql::one(
        db,
        &format!(
            "UPDATE tool_calls
             SET status = $3, output = $4, error = $5, duration_ms = $6, completed_at = now(),
                 started_at = COALESCE(started_at, (SELECT now() - make_interval(secs => $6 / 1000.0))),
                 updated_at = now()
             WHERE organization_id = $1 AND id = $2 AND status IN ('pending', 'running')
             RETURNING {}",
            columns::<tool_calls::Entity>(None)
        ),
        [
            organization_id.into(),
            id.into(),
            status.into(),
            output.into(),
            error.into(),
            duration.into(),
        ],
    )
    .await?;
    match finished {
        Some(call) => Ok(call),
        None => Err(
            refused_transition(db, "tool_calls", "tool call", organization_id, id, status).await,
        ),
    }
}

/// The organization's run with its tool calls in `sequence` order, in one query (joined on
/// `(organization_id, id)`, so on Citus one task on the organization's shard).
pub async fn run_with_tool_calls(
    db: &impl ConnectionTrait,
    organization_id: &str,
    run_id: Uuid,
) -> Result<(AgentRun, Vec<ToolCall>), Error> {
    let mut found = agent_runs::Entity::find_by_id((run_id, organization_id.to_owned()))
        .find_with_related(tool_calls::Entity)
        .order_by_asc(tool_calls::Column::Sequence)
        .all(db)
        .await?;
    let Some((run, mut calls)) = found.pop() else {
        return Err(Error::not_found("agent run", run_id));
    };
    calls.sort_by_key(|call| call.sequence);
    Ok((run, calls))
}

/// A run decoded straight from the PostgreSQL row, as hand-written sqlx would. SeaORM's generic
/// decoder formats an error string for every NULL column before turning it into `None`; a page
/// of runs has several NULL columns per row, which made `list_runs` 1.13x slower than sqlx.
fn decode_run(result: &QueryResult) -> Result<AgentRun, DbErr> {
    let Some(row) = result.try_as_pg_row() else {
        return AgentRun::from_query_result(result, "");
    };
    let get = |e: sqlx::Error| DbErr::Type(e.to_string());
    Ok(AgentRun {
        id: row.try_get("id").map_err(get)?,
        organization_id: row.try_get("organization_id").map_err(get)?,
        user_id: row.try_get("user_id").map_err(get)?,
        trigger_source: row.try_get("trigger_source").map_err(get)?,
        slack_event_id: row.try_get("slack_event_id").map_err(get)?,
        linear_event_id: row.try_get("linear_event_id").map_err(get)?,
        status: row.try_get("status").map_err(get)?,
        model: row.try_get("model").map_err(get)?,
        input: row.try_get("input").map_err(get)?,
        output: row.try_get("output").map_err(get)?,
        error: row.try_get("error").map_err(get)?,
        prompt_tokens: row.try_get("prompt_tokens").map_err(get)?,
        completion_tokens: row.try_get("completion_tokens").map_err(get)?,
        started_at: row.try_get("started_at").map_err(get)?,
        completed_at: row.try_get("completed_at").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
        next_tool_call_sequence: row.try_get("next_tool_call_sequence").map_err(get)?,
    })
}

/// An organization's runs, newest first, `limit` (at most 1000) per page; pass the previous
/// page's `next` as `after`.
pub async fn list_runs(
    db: &impl ConnectionTrait,
    organization_id: &str,
    after: Option<Cursor>,
    limit: u64,
) -> Result<Page<AgentRun>, Error> {
    let limit = clamp_limit(limit);
    let fetch: Value = ((limit + 1) as i64).into();
    let runs = columns::<agent_runs::Entity>(None);
    let statement = match after {
        None => sql::statement(
            &format!(
                "SELECT {runs} FROM agent_runs WHERE organization_id = $1
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            ),
            [organization_id.into(), fetch],
        ),
        Some(cursor) => sql::statement(
            &format!(
                "SELECT {runs} FROM agent_runs
                 WHERE organization_id = $1 AND (created_at, id) < ($2, $3)
                 ORDER BY created_at DESC, id DESC LIMIT $4"
            ),
            [
                organization_id.into(),
                cursor.created_at.into(),
                cursor.id.into(),
                fetch,
            ],
        ),
    };
    let rows = db
        .query_all_raw(statement)
        .await?
        .iter()
        .map(decode_run)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(rows, limit))
}

/// Token use of an organization's runs created in `[from, to)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromQueryResult, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenUsage {
    pub runs: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
}

/// Totals of the organization's runs created in `[from, to)`, in one query.
pub async fn token_usage(
    db: &impl ConnectionTrait,
    organization_id: &str,
    from: DateTimeWithTimeZone,
    to: DateTimeWithTimeZone,
) -> Result<TokenUsage, Error> {
    if to < from {
        return Err(Error::invalid("time range", "it ends before it starts"));
    }
    sql::one(
        db,
        "SELECT count(*) AS runs,
                COALESCE(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
                COALESCE(sum(completion_tokens), 0)::bigint AS completion_tokens
         FROM agent_runs
         WHERE organization_id = $1 AND created_at >= $2 AND created_at < $3",
        [organization_id.into(), from.into(), to.into()],
    )
    .await
    .map(Option::unwrap_or_default)
}
