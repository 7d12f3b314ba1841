//! How the table list is grouped: the schema contract's domains, in its order.

use catalog::MIGRATIONS_TABLE;

pub const DOMAINS: &[(&str, &[&str])] = &[
    (
        "Auth (Better Auth)",
        &[
            "users",
            "sessions",
            "accounts",
            "verifications",
            "two_factors",
        ],
    ),
    (
        "Organizations",
        &["organizations", "members", "invitations"],
    ),
    (
        "Integrations",
        &[
            "github_installations",
            "slack_connections",
            "linear_connections",
        ],
    ),
    ("Webhook events", &["slack_events", "linear_events"]),
    ("Tools", &["tools", "user_tools"]),
    ("Agents", &["agent_runs", "tool_calls"]),
    ("Migrations", &[MIGRATIONS_TABLE]),
];

/// Where a table not in [`DOMAINS`] is listed.
pub const OTHER: &str = "Other";

pub fn domain_of(table: &str) -> &'static str {
    DOMAINS
        .iter()
        .find(|(_, tables)| tables.contains(&table))
        .map_or(OTHER, |(domain, _)| domain)
}
