//! The tool catalog (the same tools whatever the seed, from every provider) and each user's
//! settings for a few of them.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::people::User;
use crate::{
    copy::{Rows, Sink, Table},
    dice::Dice,
    time::{EPOCH, Time},
    words,
};

pub static TOOLS: Table = Table {
    name: "tools",
    source: file!(),
    columns: &[
        "id",
        "name",
        "display_name",
        "description",
        "provider",
        "input_schema",
        "tags",
        "is_enabled",
        "created_at",
        "updated_at",
    ],
};

pub static USER_TOOLS: Table = Table {
    name: "user_tools",
    source: file!(),
    columns: &[
        "id",
        "user_id",
        "tool_id",
        "is_enabled",
        "config",
        "created_at",
        "updated_at",
    ],
};

pub struct ToolSpec {
    pub name: &'static str,
    display_name: &'static str,
    description: &'static str,
    provider: &'static str,
    tags: &'static [&'static str],
    /// Parameter names and JSON types; all required.
    params: &'static [(&'static str, &'static str)],
    pub enabled: bool,
}

const CATALOG: &[ToolSpec] = &[
    ToolSpec {
        name: "web_fetch",
        display_name: "Fetch a web page",
        description: "Downloads a URL and returns its text.",
        provider: "builtin",
        tags: &["web", "read"],
        params: &[("url", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "web_search",
        display_name: "Web search",
        description: "Searches the web and returns the top results.",
        provider: "builtin",
        tags: &["web", "read"],
        params: &[("query", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "code_interpreter",
        display_name: "Run Python",
        description: "Runs Python in a sandbox and returns its output.",
        provider: "builtin",
        tags: &["compute"],
        params: &[("code", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "github_search_code",
        display_name: "Search code on GitHub",
        description: "Searches the installation's repositories.",
        provider: "github",
        tags: &["code", "read"],
        params: &[("repo", "string"), ("query", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "github_read_file",
        display_name: "Read a file on GitHub",
        description: "Reads one file at a ref.",
        provider: "github",
        tags: &["code", "read"],
        params: &[("repo", "string"), ("path", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "github_create_issue",
        display_name: "Open a GitHub issue",
        description: "Opens an issue in a repository.",
        provider: "github",
        tags: &["code", "write"],
        params: &[("repo", "string"), ("title", "string"), ("body", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "slack_post_message",
        display_name: "Post to Slack",
        description: "Posts a message in a channel or thread.",
        provider: "slack",
        tags: &["chat", "write"],
        params: &[("channel", "string"), ("text", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "slack_read_thread",
        display_name: "Read a Slack thread",
        description: "Returns the messages of a thread.",
        provider: "slack",
        tags: &["chat", "read"],
        params: &[("channel", "string"), ("ts", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "linear_create_issue",
        display_name: "Create a Linear issue",
        description: "Creates an issue in a team.",
        provider: "linear",
        tags: &["tracker", "write"],
        params: &[("team", "string"), ("title", "string"), ("body", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "linear_search_issues",
        display_name: "Search Linear issues",
        description: "Finds issues by text.",
        provider: "linear",
        tags: &["tracker", "read"],
        params: &[("query", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "mcp_postgres_query",
        display_name: "Query PostgreSQL (MCP)",
        description: "Runs a read-only SQL query through an MCP server.",
        provider: "mcp",
        tags: &["data", "read", "mcp"],
        params: &[("sql", "string")],
        enabled: true,
    },
    ToolSpec {
        name: "mcp_sentry_issues",
        display_name: "Sentry issues (MCP)",
        description: "Lists recent Sentry issues through an MCP server. Disabled while the server is upgraded.",
        provider: "mcp",
        tags: &["observability", "mcp"],
        params: &[("project", "string")],
        enabled: false,
    },
];

/// A tool of the catalog as seeded.
pub struct Tool {
    pub id: Uuid,
    pub spec: &'static ToolSpec,
}

impl ToolSpec {
    fn input_schema(&self) -> Value {
        let properties: Map<String, Value> = self
            .params
            .iter()
            .map(|(name, kind)| ((*name).to_owned(), json!({ "type": kind })))
            .collect();
        let required: Vec<&str> = self.params.iter().map(|(name, _)| *name).collect();
        json!({ "type": "object", "properties": properties, "required": required })
    }

    /// Arguments a model would pass.
    pub fn input(&self, dice: &mut Dice) -> Value {
        let arguments: Map<String, Value> = self
            .params
            .iter()
            .map(|(name, _)| ((*name).to_owned(), Value::String(argument(name, dice))))
            .collect();
        Value::Object(arguments)
    }

    /// What the tool returned.
    pub fn output(&self, dice: &mut Dice) -> Value {
        match self.provider {
            "github" => json!({
                "items": dice.between(0, 30),
                "html_url": format!("https://github.com/acme/{}/issues/{}", dice.pick(words::REPOSITORIES), dice.between(1, 4000)),
            }),
            "slack" => {
                json!({ "ok": true, "ts": format!("{}.{:06}", EPOCH.unix_seconds() - dice.between(0, 1_000_000), dice.below(1_000_000)) })
            }
            "linear" => {
                json!({ "success": true, "identifier": format!("{}-{}", dice.pick(words::LINEAR_TEAM_KEYS), dice.between(1, 2000)) })
            }
            "mcp" => json!({ "rows": dice.between(0, 200), "truncated": dice.percent(10) }),
            _ => {
                json!({ "status": 200, "bytes": dice.between(200, 400_000), "text": dice.pick(words::SUMMARIES) })
            }
        }
    }
}

fn argument(name: &str, dice: &mut Dice) -> String {
    match name {
        "url" => (*dice.pick(words::URLS)).to_owned(),
        "query" | "title" => (*dice.pick(words::ISSUE_TITLES)).to_owned(),
        "repo" => format!("acme/{}", dice.pick(words::REPOSITORIES)),
        "path" => (*dice.pick(&[
            "src/main.rs",
            "README.md",
            "migrations/0042_add_index.sql",
            "web/app.tsx",
        ]))
        .to_owned(),
        "channel" => format!("C0{}", dice.upper_alphanumeric(8)),
        "ts" => format!(
            "{}.{:06}",
            EPOCH.unix_seconds() - dice.between(0, 1_000_000),
            dice.below(1_000_000)
        ),
        "team" => (*dice.pick(words::LINEAR_TEAM_KEYS)).to_owned(),
        "sql" => "SELECT status, count(*) FROM agent_runs GROUP BY status".to_owned(),
        "code" => "import statistics\nprint(statistics.median([3, 1, 4, 1, 5]))".to_owned(),
        _ => (*dice.pick(words::SLACK_MESSAGES)).to_owned(),
    }
}

/// The catalog, then up to three settings a user (none for a third of them).
pub fn write(seed: u64, users: &[User], sink: &mut dyn Sink) -> Vec<Tool> {
    let mut dice = Dice::new(seed, "tools");
    let created = Time::history_start().plus(-Time::days(30));
    let mut rows = Rows::start(sink, &TOOLS, CATALOG.len() as u64);
    let catalog: Vec<Tool> = CATALOG
        .iter()
        .map(|spec| {
            let id = dice.uuid();
            let updated = created.plus(dice.between(0, Time::days(60)));
            rows.row(|r| {
                r.uuid(id)
                    .text(spec.name)
                    .text(spec.display_name)
                    .text(spec.description)
                    .text(spec.provider)
                    .json(&spec.input_schema())
                    .text_array(spec.tags)
                    .bool(spec.enabled)
                    .time(created)
                    .time(updated);
            });
            Tool { id, spec }
        })
        .collect();
    rows.finish();

    let mut dice = Dice::new(seed, "user_tools");
    let mut rows = Rows::start(sink, &USER_TOOLS, users.len() as u64 * 4 / 3);
    for (i, user) in users.iter().enumerate() {
        let count = if i == 0 { 3 } else { dice.below(4) as usize };
        // Distinct tools: consecutive ones from a random start.
        let start = dice.index(catalog.len());
        for n in 0..count.min(catalog.len()) {
            let tool = &catalog[(start + n) % catalog.len()];
            let enabled = match (i, n) {
                (0, 0) => true,
                (0, 1) => false,
                _ => dice.percent(80),
            };
            let config = if dice.percent(50) {
                json!({})
            } else {
                json!({ "default_repo": format!("acme/{}", dice.pick(words::REPOSITORIES)), "confirm_writes": dice.percent(50) })
            };
            let created = dice.time_between(user.created, EPOCH);
            let id = dice.uuid();
            rows.row(|r| {
                r.uuid(id)
                    .text(&user.id)
                    .uuid(tool.id)
                    .bool(enabled)
                    .json(&config)
                    .time(created)
                    .time(created.plus(Time::hours(n as i64)).min(EPOCH));
            });
        }
    }
    rows.finish();
    catalog
}
