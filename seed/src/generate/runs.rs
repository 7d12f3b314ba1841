//! Agent runs, most started by a Slack mention or a Linear issue of their organization, and the
//! tool calls each made, numbered from 0. A run's state decides its calls' states: a succeeded
//! run's calls succeeded (now and then after a failed one), a failed run's last call failed, a
//! running run's last call is running or just queued.

use serde_json::json;
use uuid::Uuid;

use super::{
    events::{Trigger, Triggers},
    organizations::Organizations,
    people::User,
    tools::Tool,
};
use crate::{
    copy::{Rows, Sink, Table},
    dice::Dice,
    scale::Sizes,
    time::{EPOCH, Time},
    words,
};

pub static AGENT_RUNS: Table = Table {
    name: "agent_runs",
    source: file!(),
    columns: &[
        "id",
        "organization_id",
        "user_id",
        "trigger_source",
        "slack_event_id",
        "linear_event_id",
        "status",
        "model",
        "input",
        "output",
        "error",
        "prompt_tokens",
        "completion_tokens",
        "started_at",
        "completed_at",
        "created_at",
        "updated_at",
        "next_tool_call_sequence",
    ],
};

pub static TOOL_CALLS: Table = Table {
    name: "tool_calls",
    source: file!(),
    columns: &[
        "id",
        "organization_id",
        "agent_run_id",
        "tool_id",
        "tool_name",
        "sequence",
        "input",
        "output",
        "status",
        "error",
        "duration_ms",
        "started_at",
        "completed_at",
        "created_at",
        "updated_at",
    ],
};

/// Trigger and status of the first five runs, so that each value appears at any scale.
const FIRST_RUNS: [(&str, &str); 5] = [
    ("slack", "succeeded"),
    ("linear", "failed"),
    ("github", "cancelled"),
    ("api", "running"),
    ("schedule", "queued"),
];

const TRIGGERS: &[(&str, u64)] = &[
    ("slack", 40),
    ("linear", 25),
    ("github", 10),
    ("api", 15),
    ("schedule", 10),
];

const STATUSES: &[(&str, u64)] = &[
    ("succeeded", 80),
    ("failed", 8),
    ("cancelled", 5),
    ("running", 4),
    ("queued", 3),
];

/// What the tool calls of a run need to know about it.
struct Run {
    id: Uuid,
    status: &'static str,
    started: Option<Time>,
    completed: Option<Time>,
    calls: u64,
}

/// Both tables; returns the index of the organization with the most runs.
pub fn write(
    seed: u64,
    sizes: &Sizes,
    world: (&[User], &Organizations),
    triggers: &Triggers,
    catalog: &[Tool],
    sink: &mut dyn Sink,
) -> usize {
    let (users, organizations) = world;
    let mut dice = Dice::new(seed, "agent_runs");
    let mut runs: Vec<PlannedRun> = (0..sizes.agent_runs)
        .map(|i| plan_run(&mut dice, i, users, organizations, triggers))
        .collect();
    share_calls(
        &mut Dice::new(seed, "tool_call_counts"),
        &mut runs,
        sizes.tool_calls,
    );
    let mut per_organization = vec![0u64; organizations.all.len()];
    let mut rows = Rows::start(sink, &AGENT_RUNS, sizes.agent_runs);
    for PlannedRun {
        run,
        organization,
        row,
    } in &runs
    {
        per_organization[*organization] += 1;
        rows.row(|r| {
            r.uuid(run.id)
                .text(&organizations.all[*organization].id)
                .opt_text(row.user)
                .text(row.trigger)
                .opt_uuid(row.slack_event)
                .opt_uuid(row.linear_event)
                .text(run.status)
                .text(row.model)
                .json(&row.input)
                .opt_json(row.output.as_ref())
                .opt_text(row.error)
                .int(row.tokens.0)
                .int(row.tokens.1)
                .opt_time(run.started)
                .opt_time(run.completed)
                .time(row.created)
                .time(run.completed.or(run.started).unwrap_or(row.created))
                .int(run.calls as i64);
        });
    }
    rows.finish();

    tool_calls(
        seed,
        (&runs, organizations),
        catalog,
        sizes.tool_calls,
        sink,
    );
    // The first of the organizations with the most runs.
    per_organization
        .iter()
        .enumerate()
        .max_by_key(|(j, runs)| (**runs, std::cmp::Reverse(*j)))
        .map_or(0, |(j, _)| j)
}

struct PlannedRun<'w> {
    run: Run,
    organization: usize,
    row: RunRow<'w>,
}

/// The columns of a run that only its own row needs.
struct RunRow<'w> {
    user: Option<&'w str>,
    trigger: &'static str,
    slack_event: Option<Uuid>,
    linear_event: Option<Uuid>,
    model: &'static str,
    input: serde_json::Value,
    output: Option<serde_json::Value>,
    error: Option<&'static str>,
    tokens: (i64, i64),
    created: Time,
}

fn plan_run<'w>(
    dice: &mut Dice,
    i: u64,
    users: &'w [User],
    organizations: &Organizations,
    triggers: &Triggers,
) -> PlannedRun<'w> {
    let (trigger, status) = match FIRST_RUNS.get(i as usize) {
        Some(&(trigger, status)) => (trigger, status),
        None => (*dice.weighted(TRIGGERS), *dice.weighted(STATUSES)),
    };
    let event = match trigger {
        "slack" => pick_trigger(dice, &triggers.slack),
        "linear" => pick_trigger(dice, &triggers.linear),
        _ => None,
    };
    let (organization, created) = match event {
        Some(event) => (
            event.organization,
            event
                .created
                .plus(dice.between(Time::seconds(1), Time::seconds(5))),
        ),
        None => {
            let organization = dice.skewed(organizations.all.len());
            let created = if matches!(status, "queued" | "running") {
                EPOCH.plus(-dice.between(Time::seconds(1), Time::minutes(10)))
            } else {
                dice.time_between(organizations.all[organization].created, EPOCH)
            };
            (organization, created)
        }
    };
    let members = &organizations.all[organization].members;
    let user = match trigger {
        "schedule" => None,
        "github" if dice.percent(50) => None,
        _ => Some(members[dice.index(members.len())].user),
    };
    let started = match status {
        "queued" => None,
        "cancelled" if dice.percent(40) => None,
        _ => Some(created.plus(dice.between(Time::millis(100), Time::seconds(3)))),
    };
    let completed = match status {
        "queued" | "running" => None,
        _ => Some(
            started
                .unwrap_or(created)
                .plus(dice.between(Time::seconds(2), Time::minutes(5))),
        ),
    };
    let tokens = match started {
        None => (0, 0),
        Some(_) => (dice.between(800, 40_000), dice.between(100, 6_000)),
    };
    let prompt = dice.pick(words::PROMPTS);
    let input = match event {
        Some(_) => json!({ "prompt": prompt, "trigger": trigger, "max_turns": 25 }),
        None => json!({ "prompt": prompt, "trigger": trigger }),
    };
    let output = (status == "succeeded").then(|| {
        json!({
            "summary": dice.pick(words::SUMMARIES),
            "turns": dice.between(1, 25),
            "stop_reason": "end_turn",
        })
    });
    let error = (status == "failed").then(|| *dice.pick(words::RUN_ERRORS));
    let model = *dice.weighted(words::MODELS);
    let id = dice.uuid();
    PlannedRun {
        run: Run {
            id,
            status,
            started,
            completed,
            calls: 0,
        },
        organization,
        row: RunRow {
            user: user.map(|u| users[u].id.as_str()),
            trigger,
            slack_event: event.filter(|_| trigger == "slack").map(|e| e.event),
            linear_event: event.filter(|_| trigger == "linear").map(|e| e.event),
            model,
            input,
            output,
            error,
            tokens,
            created,
        },
    }
}

fn pick_trigger<'t>(dice: &mut Dice, triggers: &'t [Trigger]) -> Option<&'t Trigger> {
    (!triggers.is_empty()).then(|| dice.pick(triggers))
}

/// Shares `total` tool calls among the runs that started, each weighted 1 to 5, exactly.
fn share_calls(dice: &mut Dice, runs: &mut [PlannedRun], total: u64) {
    let weights: Vec<u64> = runs
        .iter()
        .map(|planned| match planned.run.started {
            Some(_) => 1 + dice.below(5),
            None => 0,
        })
        .collect();
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return;
    }
    let (mut before, mut running) = (0u64, 0u128);
    for (planned, weight) in runs.iter_mut().zip(weights) {
        running += u128::from(weight);
        let upto = (u128::from(total) * running / sum) as u64;
        planned.run.calls = upto - before;
        before = upto;
    }
}

/// The calls of every run, each in its run's organization.
fn tool_calls(
    seed: u64,
    (runs, organizations): (&[PlannedRun], &Organizations),
    catalog: &[Tool],
    total: u64,
    sink: &mut dyn Sink,
) {
    let mut dice = Dice::new(seed, "tool_calls");
    let enabled: Vec<&Tool> = catalog.iter().filter(|t| t.spec.enabled).collect();
    let mut rows = Rows::start(sink, &TOOL_CALLS, total);
    for (run, organization) in runs
        .iter()
        .map(|p| (&p.run, &organizations.all[p.organization].id))
        .filter(|(run, _)| run.calls > 0)
    {
        let started = run.started.expect("only started runs have tool calls");
        let end = run
            .completed
            .unwrap_or(EPOCH)
            .max(started.plus(run.calls as i64));
        let slot = (end.micros() - started.micros()) / run.calls as i64;
        for sequence in 0..run.calls {
            let last = sequence == run.calls - 1;
            let status = match (run.status, last) {
                ("failed", true) => "failed",
                ("running", true) => {
                    if dice.percent(70) {
                        "running"
                    } else {
                        "pending"
                    }
                }
                ("cancelled", true) => "pending",
                ("succeeded" | "failed", false) if dice.percent(4) => "failed",
                _ => "succeeded",
            };
            // One call in thirty goes to a tool that is not in the catalog (an MCP server's own).
            let tool = (!dice.percent(3)).then(|| *dice.pick(&enabled));
            let name = tool.map_or("mcp_custom_lookup", |t| t.spec.name);
            let input = match tool {
                Some(tool) => tool.spec.input(&mut dice),
                None => json!({ "key": dice.hex(8) }),
            };
            let created = started.plus(slot * sequence as i64);
            let call_started = (status != "pending").then_some(created);
            let finished = matches!(status, "succeeded" | "failed");
            let duration = finished.then(|| dice.between(20, (slot / 1000).clamp(21, 60_000)));
            let completed = duration.map(|ms| created.plus(Time::millis(ms)));
            let output = (status == "succeeded").then(|| match tool {
                Some(tool) => tool.spec.output(&mut dice),
                None => json!({ "value": dice.hex(16) }),
            });
            let error = (status == "failed").then(|| *dice.pick(words::TOOL_ERRORS));
            let id = dice.uuid();
            rows.row(|r| {
                r.uuid(id)
                    .text(organization)
                    .uuid(run.id)
                    .opt_uuid(tool.map(|t| t.id))
                    .text(name)
                    .int(sequence as i64)
                    .json(&input)
                    .opt_json(output.as_ref())
                    .text(status)
                    .opt_text(error)
                    .opt_int(duration)
                    .opt_time(call_started)
                    .opt_time(completed)
                    .time(created)
                    .time(completed.unwrap_or(created));
            });
        }
    }
    rows.finish();
}
