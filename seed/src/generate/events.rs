//! Slack and Linear webhook deliveries, spread evenly over the history, with payloads shaped
//! like the real ones (Slack's Events API envelope, Linear's webhook body). Their state follows
//! their age, as a queue worked in arrival order leaves it: old deliveries processed, ignored or
//! failed; a few just before the newest being processed; the newest still pending (some after
//! a failed attempt). Each is stored for the organization its team's connection belongs to;
//! those from a team or workspace no connection knows (one in a hundred) are kept in
//! `unrouted_events`, as the ingest keeps them.

use serde_json::{Value, json};
use uuid::Uuid;

use super::integrations::{Connections, LinearWorkspace, SlackTeam};
use crate::{
    copy::{Rows, Sink, Table},
    dice::Dice,
    scale::Sizes,
    time::{EPOCH, Time},
    words,
};

pub static SLACK_EVENTS: Table = Table {
    name: "slack_events",
    source: file!(),
    columns: &[
        "id",
        "organization_id",
        "slack_connection_id",
        "event_id",
        "event_type",
        "team_id",
        "channel_id",
        "slack_user_id",
        "payload",
        "status",
        "attempts",
        "last_error",
        "processed_at",
        "created_at",
        "updated_at",
        "due_at",
    ],
};

pub static LINEAR_EVENTS: Table = Table {
    name: "linear_events",
    source: file!(),
    columns: &[
        "id",
        "organization_id",
        "linear_connection_id",
        "event_id",
        "event_type",
        "action",
        "linear_organization_id",
        "payload",
        "status",
        "attempts",
        "last_error",
        "processed_at",
        "created_at",
        "updated_at",
        "due_at",
    ],
};

pub static UNROUTED_EVENTS: Table = Table {
    name: "unrouted_events",
    source: file!(),
    columns: &[
        "id",
        "provider",
        "event_id",
        "external_id",
        "event_type",
        "payload",
        "created_at",
    ],
};

/// A delivery no route claims: kept apart, as the ingest does.
struct Unrouted {
    id: Uuid,
    provider: &'static str,
    event_id: String,
    external_id: String,
    event_type: &'static str,
    payload: Value,
    created: Time,
}

/// The connection a routed delivery names: its route's, except for the first routed delivery
/// from the fourth on, which names none (an event written by something other than the ingest,
/// an import of history say: the column stays nullable, and both states appear).
#[derive(Default)]
struct NoConnectionYet {
    written: bool,
}

impl NoConnectionYet {
    fn connection(&mut self, i: u64, connection: Uuid) -> Option<Uuid> {
        if i >= 3 && !self.written {
            self.written = true;
            return None;
        }
        Some(connection)
    }
}

/// Attempts after which a worker gives a delivery up (`failed`).
const MAX_ATTEMPTS: i64 = 5;

const SLACK_TYPES: &[(&str, u64)] = &[
    ("message", 50),
    ("app_mention", 30),
    ("reaction_added", 10),
    ("member_joined_channel", 5),
    ("app_home_opened", 3),
    ("team_join", 1),
    ("app_uninstalled", 1),
];

const LINEAR_TYPES: &[(&str, u64)] = &[
    ("Issue", 50),
    ("Comment", 30),
    ("IssueLabel", 5),
    ("Project", 5),
    ("Cycle", 5),
    ("Reaction", 5),
];

const LINEAR_ACTIONS: [(&str, u64); 3] = [("create", 50), ("update", 40), ("remove", 10)];

/// A processed delivery an agent run can have been started by.
pub struct Trigger {
    pub event: Uuid,
    pub created: Time,
    pub organization: usize,
}

pub struct Triggers {
    pub slack: Vec<Trigger>,
    pub linear: Vec<Trigger>,
}

pub fn write(seed: u64, sizes: &Sizes, connections: &Connections, sink: &mut dyn Sink) -> Triggers {
    let mut unrouted = Vec::new();
    let triggers = Triggers {
        slack: slack(seed, sizes, &connections.slack, &mut unrouted, sink),
        linear: linear(seed, sizes, &connections.linear, &mut unrouted, sink),
    };
    let mut rows = Rows::start(sink, &UNROUTED_EVENTS, unrouted.len() as u64);
    for delivery in &unrouted {
        rows.row(|r| {
            r.uuid(delivery.id)
                .text(delivery.provider)
                .text(&delivery.event_id)
                .text(&delivery.external_id)
                .text(delivery.event_type)
                .json(&delivery.payload)
                .time(delivery.created);
        });
    }
    rows.finish();
    triggers
}

/// Where a delivery is in its processing, from its place in arrival order.
struct Lifecycle {
    status: &'static str,
    attempts: i64,
    last_error: Option<&'static str>,
    processed_at: Option<Time>,
    /// A pending delivery's next try (its arrival, or the end of a retry's backoff); a
    /// processing one's lease end; for the rest, their arrival.
    due_at: Time,
}

/// Deliveries `i` of `count`: the newest `pending_percent` pending (one in ten after a failed
/// attempt), a few before them processing, the oldest two failed and ignored, the rest mostly
/// processed.
struct Queue {
    pending_from: u64,
    processing_from: u64,
}

impl Queue {
    fn new(count: u64, pending_percent: u8) -> Self {
        let pending = (count * u64::from(pending_percent)).div_ceil(100);
        let pending_from = count - pending;
        Self {
            pending_from,
            processing_from: pending_from - pending_from.min(3 + count / 2000),
        }
    }

    fn lifecycle(&self, dice: &mut Dice, i: u64, created: Time) -> Lifecycle {
        let status = if i >= self.pending_from {
            "pending"
        } else if i >= self.processing_from {
            "processing"
        } else {
            match i {
                0 => "failed",
                1 => "ignored",
                _ => dice.weighted(&[("processed", 85), ("ignored", 8), ("failed", 7)]),
            }
        };
        let handled = created.plus(dice.between(Time::millis(200), Time::seconds(30)));
        match status {
            "pending" if dice.percent(10) => {
                let attempts = dice.between(1, MAX_ATTEMPTS - 1);
                Lifecycle {
                    status,
                    attempts,
                    last_error: Some(*dice.pick(words::EVENT_ERRORS)),
                    processed_at: None,
                    // The worker's exponential backoff after `attempts` failures, from 1 s.
                    due_at: handled.plus(Time::seconds(1 << attempts)),
                }
            }
            "pending" => Lifecycle {
                status,
                attempts: 0,
                last_error: None,
                processed_at: None,
                due_at: created,
            },
            "processing" => Lifecycle {
                status,
                attempts: 1,
                last_error: None,
                processed_at: None,
                // Claimed with the worker's default 5-minute lease.
                due_at: handled.plus(Time::minutes(5)),
            },
            "failed" => Lifecycle {
                status,
                attempts: MAX_ATTEMPTS,
                last_error: Some(*dice.pick(words::EVENT_ERRORS)),
                processed_at: None,
                due_at: created,
            },
            "ignored" => Lifecycle {
                status,
                attempts: 1,
                last_error: None,
                processed_at: Some(handled),
                due_at: created,
            },
            _ => Lifecycle {
                status,
                attempts: if dice.percent(95) { 1 } else { 2 },
                last_error: None,
                processed_at: Some(handled),
                due_at: created,
            },
        }
    }
}

/// Delivery `i` of `count`, evenly spread over the history: arrival order is time order.
fn arrival(dice: &mut Dice, i: u64, count: u64) -> Time {
    let span = (EPOCH.micros() - Time::history_start().micros()) as i128;
    let slot = span / i128::from(count.max(1));
    let offset = span * i128::from(i) / i128::from(count.max(1));
    Time::history_start().plus(offset as i64 + dice.between(0, slot as i64 - 1))
}

/// `Ev` and the index in base 36: unique, and shaped like Slack's event ids.
fn slack_event_id(dice: &mut Dice, i: u64) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let mut index = [b'0'; 8];
    let mut rest = i;
    for slot in index.iter_mut().rev() {
        *slot = DIGITS[(rest % 36) as usize];
        rest /= 36;
    }
    format!(
        "Ev{}{}",
        std::str::from_utf8(&index).expect("ASCII"),
        dice.upper_alphanumeric(2)
    )
}

fn slack_ts(time: Time) -> String {
    format!(
        "{}.{:06}",
        time.unix_seconds(),
        time.micros().rem_euclid(1_000_000)
    )
}

/// A team no connection knows (the app was removed, or the delivery is for another install).
fn unknown_team(dice: &mut Dice) -> SlackTeam {
    SlackTeam {
        id: Uuid::nil(),
        organization: usize::MAX,
        organization_id: String::new(),
        active: false,
        created: EPOCH,
        team_id: format!("T0{}", dice.upper_alphanumeric(8)),
        app_id: format!("A0{}", dice.upper_alphanumeric(8)),
        bot_user: None,
        channels: vec![format!("C0{}", dice.upper_alphanumeric(8))],
        people: vec![format!("U0{}", dice.upper_alphanumeric(8))],
    }
}

fn slack(
    seed: u64,
    sizes: &Sizes,
    teams: &[SlackTeam],
    unrouted: &mut Vec<Unrouted>,
    sink: &mut dyn Sink,
) -> Vec<Trigger> {
    let mut dice = Dice::new(seed, "slack_events");
    let count = sizes.slack_events;
    let queue = Queue::new(count, sizes.pending_percent);
    let mut triggers = Vec::new();
    let mut rows = Rows::start(sink, &SLACK_EVENTS, count);
    let mut without_connection = NoConnectionYet::default();
    for i in 0..count {
        let created = arrival(&mut dice, i, count);
        // The third delivery, and one in a hundred, comes from a team no connection knows.
        let stranger;
        let team = if teams.is_empty() || i == 2 || dice.percent(1) {
            stranger = unknown_team(&mut dice);
            &stranger
        } else {
            &teams[dice.skewed(teams.len())]
        };
        let event_type = match i {
            0 => "team_join",
            1 => "app_uninstalled",
            _ => dice.weighted(SLACK_TYPES),
        };
        let event_id = slack_event_id(&mut dice, i);
        let channel = match event_type {
            "team_join" | "app_uninstalled" => None,
            "app_home_opened" => Some(format!("D0{}", dice.upper_alphanumeric(8))),
            _ => Some(dice.pick(&team.channels).clone()),
        };
        let user = (event_type != "app_uninstalled").then(|| dice.pick(&team.people).clone());
        let payload = slack_payload(
            &mut dice,
            team,
            event_type,
            &event_id,
            created,
            channel.as_deref(),
            user.as_deref(),
        );
        let lifecycle = queue.lifecycle(&mut dice, i, created);
        let id = dice.uuid();
        let known = team.organization != usize::MAX;
        if known && lifecycle.status == "processed" && event_type == "app_mention" {
            triggers.push(Trigger {
                event: id,
                created,
                organization: team.organization,
            });
        }
        if !known {
            unrouted.push(Unrouted {
                id,
                provider: "slack",
                event_id,
                external_id: team.team_id.clone(),
                event_type,
                payload,
                created,
            });
            continue;
        }
        let connection = without_connection.connection(i, team.id);
        rows.row(|r| {
            r.uuid(id)
                .text(&team.organization_id)
                .opt_uuid(connection)
                .text(&event_id)
                .text(event_type)
                .text(&team.team_id)
                .opt_text(channel.as_deref())
                .opt_text(user.as_deref());
            write_lifecycle(r, &payload, &lifecycle, created);
        });
    }
    rows.finish();
    triggers
}

fn write_lifecycle(
    r: &mut crate::copy::Row<'_>,
    payload: &Value,
    lifecycle: &Lifecycle,
    created: Time,
) {
    r.json(payload)
        .text(lifecycle.status)
        .int(lifecycle.attempts)
        .opt_text(lifecycle.last_error)
        .opt_time(lifecycle.processed_at)
        .time(created)
        .time(lifecycle.processed_at.unwrap_or(created))
        .time(lifecycle.due_at);
}

/// The Events API envelope Slack posts, around the event itself.
fn slack_payload(
    dice: &mut Dice,
    team: &SlackTeam,
    event_type: &str,
    event_id: &str,
    created: Time,
    channel: Option<&str>,
    user: Option<&str>,
) -> Value {
    let ts = slack_ts(created);
    let event = match event_type {
        "app_mention" => json!({
            "type": event_type, "user": user, "channel": channel, "ts": ts, "event_ts": ts,
            "text": format!("<@{}> {}", team.bot_user.as_deref().unwrap_or("U0BOT"), dice.pick(words::SLACK_MESSAGES)),
            "client_msg_id": dice.uuid().to_string(),
        }),
        "message" => json!({
            "type": event_type, "user": user, "channel": channel, "ts": ts, "event_ts": ts,
            "channel_type": "channel", "text": dice.pick(words::SLACK_MESSAGES),
            "client_msg_id": dice.uuid().to_string(),
        }),
        "reaction_added" => json!({
            "type": event_type, "user": user, "reaction": dice.pick(words::REACTIONS),
            "item": { "type": "message", "channel": channel, "ts": slack_ts(created.plus(-dice.between(1, Time::hours(2)))) },
            "item_user": dice.pick(&team.people), "event_ts": ts,
        }),
        "member_joined_channel" => json!({
            "type": event_type, "user": user, "channel": channel, "channel_type": "C",
            "team": team.team_id, "event_ts": ts,
        }),
        "app_home_opened" => json!({
            "type": event_type, "user": user, "channel": channel, "tab": "home", "event_ts": ts,
        }),
        "team_join" => json!({
            "type": event_type, "event_ts": ts,
            "user": { "id": user, "team_id": team.team_id, "is_bot": false,
                      "real_name": format!("{} {}", dice.pick(words::FIRST_NAMES), dice.pick(words::LAST_NAMES)) },
        }),
        _ => json!({ "type": event_type, "event_ts": ts }),
    };
    json!({
        "type": "event_callback",
        "team_id": team.team_id,
        "api_app_id": team.app_id,
        "event": event,
        "event_id": event_id,
        "event_time": created.unix_seconds(),
        "authorizations": [{
            "enterprise_id": null, "team_id": team.team_id, "user_id": team.bot_user,
            "is_bot": true, "is_enterprise_install": false,
        }],
        "is_ext_shared_channel": false,
    })
}

fn linear(
    seed: u64,
    sizes: &Sizes,
    workspaces: &[LinearWorkspace],
    unrouted: &mut Vec<Unrouted>,
    sink: &mut dyn Sink,
) -> Vec<Trigger> {
    let mut dice = Dice::new(seed, "linear_events");
    let count = sizes.linear_events;
    let queue = Queue::new(count, sizes.pending_percent);
    let mut triggers = Vec::new();
    let mut rows = Rows::start(sink, &LINEAR_EVENTS, count);
    let mut without_connection = NoConnectionYet::default();
    for i in 0..count {
        let created = arrival(&mut dice, i, count);
        // The first delivery, and one in a hundred, is for a workspace no connection knows.
        let workspace = (!workspaces.is_empty() && i != 0 && !dice.percent(1))
            .then(|| &workspaces[dice.skewed(workspaces.len())]);
        let event_type = *dice.weighted(LINEAR_TYPES);
        let action = match i {
            0..3 => LINEAR_ACTIONS[i as usize].0,
            _ => dice.weighted(&LINEAR_ACTIONS),
        };
        let linear_organization_id =
            workspace.map_or_else(|| dice.uuid(), |w| w.linear_organization_id);
        let payload = linear_payload(
            &mut dice,
            workspace,
            event_type,
            action,
            linear_organization_id,
            created,
        );
        let lifecycle = queue.lifecycle(&mut dice, i, created);
        let (id, delivery) = (dice.uuid(), dice.uuid());
        if let Some(workspace) = workspace
            && lifecycle.status == "processed"
            && matches!(event_type, "Issue" | "Comment")
            && action == "create"
        {
            triggers.push(Trigger {
                event: id,
                created,
                organization: workspace.organization,
            });
        }
        let Some(workspace) = workspace else {
            unrouted.push(Unrouted {
                id,
                provider: "linear",
                event_id: delivery.to_string(),
                external_id: linear_organization_id.to_string(),
                event_type,
                payload,
                created,
            });
            continue;
        };
        let connection = without_connection.connection(i, workspace.id);
        rows.row(|r| {
            r.uuid(id)
                .text(&workspace.organization_id)
                .opt_uuid(connection)
                .uuid(delivery)
                .text(event_type)
                .text(action)
                .uuid(linear_organization_id);
            write_lifecycle(r, &payload, &lifecycle, created);
        });
    }
    rows.finish();
    triggers
}

/// Linear's webhook body: what happened (`action`, `type`), to what (`data`), by whom.
fn linear_payload(
    dice: &mut Dice,
    workspace: Option<&LinearWorkspace>,
    event_type: &str,
    action: &str,
    linear_organization_id: Uuid,
    created: Time,
) -> Value {
    let url_key = workspace.map_or("unknown", |w| w.url_key.as_str());
    let (team_key, team_id) = workspace.map_or(("ENG", Uuid::nil()), |w| *dice.pick(&w.teams));
    let (actor_id, actor_name) = match workspace {
        Some(w) => {
            let (id, name) = dice.pick(&w.people);
            (*id, name.clone())
        }
        None => (dice.uuid(), "Linear user".to_owned()),
    };
    let number = dice.between(1, 4000);
    let identifier = format!("{team_key}-{number}");
    let at = created.iso();
    let object_id = dice.uuid().to_string();
    let (data, url) = match event_type {
        "Issue" => (
            json!({
                "id": object_id, "identifier": identifier, "number": number,
                "title": dice.pick(words::ISSUE_TITLES), "priority": dice.between(0, 4),
                "teamId": team_id, "stateId": dice.uuid().to_string(), "creatorId": actor_id,
                "labelIds": [], "createdAt": at, "updatedAt": at,
            }),
            format!("https://linear.app/{url_key}/issue/{identifier}"),
        ),
        "Comment" => (
            json!({
                "id": object_id, "body": dice.pick(words::COMMENTS), "issueId": dice.uuid().to_string(),
                "userId": actor_id, "createdAt": at, "updatedAt": at,
            }),
            format!(
                "https://linear.app/{url_key}/issue/{identifier}#comment-{}",
                &object_id[..8]
            ),
        ),
        "IssueLabel" => (
            json!({ "id": object_id, "name": dice.pick(words::LABELS), "color": "#eb5757", "teamId": team_id }),
            format!("https://linear.app/{url_key}/settings/labels"),
        ),
        "Project" => (
            json!({ "id": object_id, "name": format!("Q{} roadmap", dice.between(1, 4)), "state": "started", "targetDate": "2026-12-15" }),
            format!("https://linear.app/{url_key}/project/{}", &object_id[..8]),
        ),
        "Cycle" => (
            json!({ "id": object_id, "number": dice.between(1, 60), "teamId": team_id, "startsAt": at,
                    "endsAt": created.plus(Time::days(14)).iso() }),
            format!("https://linear.app/{url_key}/team/{team_key}/cycle/{number}"),
        ),
        _ => (
            json!({ "id": object_id, "emoji": "+1", "userId": actor_id, "commentId": dice.uuid().to_string() }),
            format!("https://linear.app/{url_key}/issue/{identifier}"),
        ),
    };
    let mut body = json!({
        "action": action,
        "type": event_type,
        "createdAt": at,
        "data": data,
        "url": url,
        "organizationId": linear_organization_id,
        "webhookTimestamp": created.micros() / 1000,
        "webhookId": dice.uuid(),
        "actor": { "id": actor_id, "type": "user", "name": actor_name },
    });
    if action == "update" {
        body["updatedFrom"] = json!({ "updatedAt": created.plus(-Time::hours(3)).iso() });
    }
    body
}
