//! GitHub installations, Slack and Linear connections, and the routes that send each active
//! Slack team's, Linear workspace's and GitHub installation's webhooks to its organization. The
//! first organization has two of each (a current one and an old, inactive or suspended one), the
//! others one or none. Tokens are ciphertext-shaped (`v1:` + base64), never a provider's
//! plaintext token.

use uuid::Uuid;

use super::{organizations::Organizations, people::User};
use crate::{
    copy::{Rows, Sink, Table},
    dice::Dice,
    time::{EPOCH, STILL_VALID_UNTIL, Time},
    words,
};

pub static GITHUB_INSTALLATIONS: Table = Table {
    name: "github_installations",
    source: file!(),
    columns: &[
        "id",
        "organization_id",
        "installation_id",
        "account_login",
        "account_type",
        "repository_selection",
        "permissions",
        "events",
        "installed_by_user_id",
        "suspended_at",
        "created_at",
        "updated_at",
    ],
};

pub static SLACK_CONNECTIONS: Table = Table {
    name: "slack_connections",
    source: file!(),
    columns: &[
        "id",
        "organization_id",
        "installed_by_user_id",
        "team_id",
        "team_name",
        "bot_user_id",
        "access_token_encrypted",
        "scopes",
        "is_active",
        "created_at",
        "updated_at",
    ],
};

pub static LINEAR_CONNECTIONS: Table = Table {
    name: "linear_connections",
    source: file!(),
    columns: &[
        "id",
        "organization_id",
        "installed_by_user_id",
        "linear_organization_id",
        "linear_organization_name",
        "access_token_encrypted",
        "refresh_token_encrypted",
        "token_expires_at",
        "scopes",
        "is_active",
        "created_at",
        "updated_at",
    ],
};

pub static WEBHOOK_ROUTES: Table = Table {
    name: "webhook_routes",
    source: file!(),
    columns: &[
        "provider",
        "external_id",
        "organization_id",
        "connection_id",
        "created_at",
        "updated_at",
    ],
};

const SLACK_SCOPES: &[&str] = &[
    "app_mentions:read",
    "channels:history",
    "chat:write",
    "reactions:read",
    "users:read",
];
const LINEAR_SCOPES: &[&str] = &["read", "write", "issues:create", "comments:create"];
const GITHUB_EVENTS: &[&str] = &["issues", "issue_comment", "pull_request", "push"];

/// A Slack workspace connected to an organization, with the ids its webhooks mention.
pub struct SlackTeam {
    pub id: Uuid,
    pub organization: usize,
    /// `organizations.id` of `organization`.
    pub organization_id: String,
    /// Its connection is active, so the route of `team_id` names it.
    pub active: bool,
    pub created: Time,
    pub team_id: String,
    pub app_id: String,
    pub bot_user: Option<String>,
    pub channels: Vec<String>,
    pub people: Vec<String>,
}

/// A Linear workspace connected to an organization, with the ids its webhooks mention.
pub struct LinearWorkspace {
    pub id: Uuid,
    pub organization: usize,
    /// `organizations.id` of `organization`.
    pub organization_id: String,
    pub active: bool,
    pub created: Time,
    pub linear_organization_id: Uuid,
    pub url_key: String,
    pub teams: Vec<(&'static str, Uuid)>,
    pub people: Vec<(Uuid, String)>,
}

pub struct Connections {
    pub slack: Vec<SlackTeam>,
    pub linear: Vec<LinearWorkspace>,
}

/// Which connection of an organization: its current one, or the first organization's second,
/// old one (inactive, suspended, installed by someone since removed).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Generation {
    Current,
    Old,
}

fn generations(dice: &mut Dice, organization: usize, percent: u64) -> Vec<Generation> {
    match organization {
        0 => vec![Generation::Current, Generation::Old],
        _ if dice.percent(percent) => vec![Generation::Current],
        _ => Vec::new(),
    }
}

pub fn write(
    seed: u64,
    organizations: &Organizations,
    users: &[User],
    sink: &mut dyn Sink,
) -> Connections {
    let installations = github(seed, organizations, users, sink);
    let connections = Connections {
        slack: slack(seed, organizations, users, sink),
        linear: linear(seed, organizations, users, sink),
    };
    routes(&connections, &installations, sink);
    connections
}

/// A GitHub installation as its route names it.
struct Installation {
    id: Uuid,
    installation_id: i64,
    organization_id: String,
    created: Time,
}

/// One route per active connection's team or workspace (each is connected once here) and per
/// installation, dated from the connection.
fn routes(connections: &Connections, installations: &[Installation], sink: &mut dyn Sink) {
    let slack = connections.slack.iter().filter(|t| t.active);
    let linear = connections.linear.iter().filter(|w| w.active);
    let count = slack.clone().count() + linear.clone().count() + installations.len();
    let mut rows = Rows::start(sink, &WEBHOOK_ROUTES, count as u64);
    for team in slack {
        rows.row(|r| {
            r.text("slack")
                .text(&team.team_id)
                .text(&team.organization_id)
                .uuid(team.id)
                .time(team.created)
                .time(team.created);
        });
    }
    for workspace in linear {
        rows.row(|r| {
            r.text("linear")
                .text(&workspace.linear_organization_id.to_string())
                .text(&workspace.organization_id)
                .uuid(workspace.id)
                .time(workspace.created)
                .time(workspace.created);
        });
    }
    for installation in installations {
        rows.row(|r| {
            r.text("github")
                .text(&installation.installation_id.to_string())
                .text(&installation.organization_id)
                .uuid(installation.id)
                .time(installation.created)
                .time(installation.created);
        });
    }
    rows.finish();
}

fn github(
    seed: u64,
    organizations: &Organizations,
    users: &[User],
    sink: &mut dyn Sink,
) -> Vec<Installation> {
    let mut dice = Dice::new(seed, "github_installations");
    let mut rows = Rows::start(sink, &GITHUB_INSTALLATIONS, organizations.all.len() as u64);
    let mut installations = Vec::new();
    for (j, org) in organizations.all.iter().enumerate() {
        for (n, generation) in generations(&mut dice, j, 60).into_iter().enumerate() {
            let owner = &users[org.owner()];
            let on_user = generation == Generation::Old || dice.percent(20);
            let (login, account_type) = if on_user {
                let local = owner.email.split('@').next().unwrap_or("user");
                (local.replace('.', "-"), "user")
            } else {
                (org.slug.clone(), "organization")
            };
            let selection = if on_user || dice.percent(30) {
                "selected"
            } else {
                "all"
            };
            let created = dice.time_between(org.created, EPOCH);
            let suspended = (generation == Generation::Old || dice.percent(5))
                .then(|| dice.time_between(created, EPOCH));
            let installer = (generation == Generation::Current && dice.percent(90))
                .then_some(owner.id.as_str());
            let permissions = serde_json::json!({
                "metadata": "read",
                "contents": if dice.percent(50) { "write" } else { "read" },
                "issues": "write",
                "pull_requests": "write",
            });
            let events = &GITHUB_EVENTS[..2 + dice.index(GITHUB_EVENTS.len() - 1)];
            let id = dice.uuid();
            // Unique by construction, like GitHub's own.
            let installation_id = 40_000_000 + j as i64 * 10 + n as i64;
            installations.push(Installation {
                id,
                installation_id,
                organization_id: org.id.clone(),
                created,
            });
            rows.row(|r| {
                r.uuid(id)
                    .text(&org.id)
                    .int(installation_id)
                    .text(&login)
                    .text(account_type)
                    .text(selection)
                    .json(&permissions)
                    .text_array(events)
                    .opt_text(installer)
                    .opt_time(suspended)
                    .time(created)
                    .time(suspended.unwrap_or(created));
            });
        }
    }
    rows.finish();
    installations
}

fn slack(
    seed: u64,
    organizations: &Organizations,
    users: &[User],
    sink: &mut dyn Sink,
) -> Vec<SlackTeam> {
    let mut dice = Dice::new(seed, "slack_connections");
    let mut rows = Rows::start(sink, &SLACK_CONNECTIONS, organizations.all.len() as u64);
    let mut teams = Vec::new();
    for (j, org) in organizations.all.iter().enumerate() {
        for generation in generations(&mut dice, j, 70) {
            let current = generation == Generation::Current;
            let team = SlackTeam {
                id: dice.uuid(),
                organization: j,
                organization_id: org.id.clone(),
                active: current,
                created: EPOCH,
                team_id: format!("T0{}", dice.upper_alphanumeric(8)),
                app_id: format!("A0{}", dice.upper_alphanumeric(8)),
                bot_user: (current && dice.percent(95))
                    .then(|| format!("U0{}", dice.upper_alphanumeric(8))),
                channels: (0..dice.between(3, 8))
                    .map(|_| format!("C0{}", dice.upper_alphanumeric(8)))
                    .collect(),
                people: (0..dice.between(5, 20))
                    .map(|_| format!("U0{}", dice.upper_alphanumeric(8)))
                    .collect(),
            };
            let name = if current {
                org.name.clone()
            } else {
                format!("{} (old workspace)", org.name)
            };
            let installer = (current && dice.percent(90)).then(|| users[org.owner()].id.as_str());
            let token = dice.ciphertext(72);
            let created = dice.time_between(org.created, EPOCH);
            let updated = dice.time_between(created, EPOCH);
            let team = SlackTeam { created, ..team };
            rows.row(|r| {
                r.uuid(team.id)
                    .text(&org.id)
                    .opt_text(installer)
                    .text(&team.team_id)
                    .text(&name)
                    .opt_text(team.bot_user.as_deref())
                    .text(&token)
                    .text_array(SLACK_SCOPES)
                    .bool(current)
                    .time(created)
                    .time(updated);
            });
            teams.push(team);
        }
    }
    rows.finish();
    teams
}

fn linear(
    seed: u64,
    organizations: &Organizations,
    users: &[User],
    sink: &mut dyn Sink,
) -> Vec<LinearWorkspace> {
    let mut dice = Dice::new(seed, "linear_connections");
    let mut rows = Rows::start(
        sink,
        &LINEAR_CONNECTIONS,
        organizations.all.len() as u64 / 2,
    );
    let mut workspaces = Vec::new();
    for (j, org) in organizations.all.iter().enumerate() {
        for generation in generations(&mut dice, j, 50) {
            let current = generation == Generation::Current;
            let workspace = LinearWorkspace {
                id: dice.uuid(),
                organization: j,
                organization_id: org.id.clone(),
                active: current,
                created: EPOCH,
                linear_organization_id: dice.uuid(),
                url_key: if current {
                    org.slug.clone()
                } else {
                    format!("{}-archive", org.slug)
                },
                teams: words::LINEAR_TEAM_KEYS[..1 + dice.index(3)]
                    .iter()
                    .map(|key| (*key, dice.uuid()))
                    .collect(),
                people: (0..dice.between(3, 10))
                    .map(|_| {
                        let name = format!(
                            "{} {}",
                            dice.pick(words::FIRST_NAMES),
                            dice.pick(words::LAST_NAMES)
                        );
                        (dice.uuid(), name)
                    })
                    .collect(),
            };
            // Linear's OAuth tokens with a refresh token expire; this one stays valid for as
            // long as the seed is used. Older, long-lived tokens have neither.
            let refreshable = current && (j == 0 || dice.percent(50));
            let installer = (current && dice.percent(90)).then(|| users[org.owner()].id.as_str());
            let (access, refresh) = (
                dice.ciphertext(72),
                refreshable.then(|| dice.ciphertext(72)),
            );
            let created = dice.time_between(org.created, EPOCH);
            let updated = dice.time_between(created, EPOCH);
            let workspace = LinearWorkspace {
                created,
                ..workspace
            };
            rows.row(|r| {
                r.uuid(workspace.id)
                    .text(&org.id)
                    .opt_text(installer)
                    .uuid(workspace.linear_organization_id)
                    .text(&org.name)
                    .text(&access)
                    .opt_text(refresh.as_deref())
                    .opt_time(refreshable.then_some(STILL_VALID_UNTIL))
                    .text_array(LINEAR_SCOPES)
                    .bool(current)
                    .time(created)
                    .time(updated);
            });
            workspaces.push(workspace);
        }
    }
    rows.finish();
    workspaces
}
