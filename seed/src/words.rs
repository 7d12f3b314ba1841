//! The vocabulary seeded rows are made of. Only reserved example domains and documentation IP
//! ranges, so no seeded value points at a real person or host.

pub const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Alan",
    "Barbara",
    "Claude",
    "Dennis",
    "Donald",
    "Edsger",
    "Frances",
    "Grace",
    "Guido",
    "Hedy",
    "Ivan",
    "Jean",
    "John",
    "Ken",
    "Leslie",
    "Linus",
    "Margaret",
    "Mary",
    "Niklaus",
    "Radia",
    "Robin",
    "Shafi",
    "Sophie",
    "Tim",
    "Tony",
    "Vint",
    "Whitfield",
    "Yukihiro",
    "Zhang",
    "Amara",
    "Bjarne",
    "Carmen",
    "Dmitri",
    "Elena",
    "Farah",
    "Gustavo",
    "Hana",
    "Ines",
    "Jonas",
    "Kofi",
    "Lena",
    "Mateo",
    "Nadia",
    "Omar",
    "Priya",
    "Quentin",
    "Rosa",
    "Sven",
    "Tomoko",
];

pub const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Turing",
    "Liskov",
    "Shannon",
    "Ritchie",
    "Knuth",
    "Dijkstra",
    "Allen",
    "Hopper",
    "Rossum",
    "Lamarr",
    "Sutherland",
    "Sammet",
    "Backus",
    "Thompson",
    "Lamport",
    "Torvalds",
    "Hamilton",
    "Keller",
    "Wirth",
    "Perlman",
    "Milner",
    "Goldwasser",
    "Wilson",
    "Berners-Lee",
    "Hoare",
    "Cerf",
    "Diffie",
    "Matsumoto",
    "Wei",
    "Okafor",
    "Stroustrup",
    "Garcia",
    "Petrov",
    "Novak",
    "Haddad",
    "Silva",
    "Kim",
    "Moreau",
    "Weber",
    "Mensah",
    "Fischer",
    "Lopez",
    "Rahman",
    "Aziz",
    "Patel",
    "Dubois",
    "Romero",
    "Larsen",
    "Sato",
];

pub const EMAIL_DOMAINS: &[&str] = &["example.com", "example.org", "example.net"];

pub const COMPANY_ADJECTIVES: &[&str] = &[
    "Northwind",
    "Blue",
    "Quiet",
    "Bright",
    "Rapid",
    "Silver",
    "Granite",
    "Cobalt",
    "Amber",
    "Lunar",
    "Crimson",
    "Evergreen",
    "Polar",
    "Copper",
    "Velvet",
    "Iron",
    "Golden",
    "Misty",
];

pub const COMPANY_NOUNS: &[&str] = &[
    "Labs",
    "Systems",
    "Works",
    "Analytics",
    "Robotics",
    "Logistics",
    "Health",
    "Foods",
    "Studio",
    "Dynamics",
    "Networks",
    "Partners",
    "Cloud",
    "Bank",
    "Energy",
    "Games",
    "Media",
    "Bio",
];

pub const PLANS: &[&str] = &["free", "team", "business", "enterprise"];

pub const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "node-fetch/1.0 (agent-cli 0.9.2)",
];

pub const SLACK_MESSAGES: &[&str] = &[
    "can you summarize the incident from last night?",
    "what changed in the billing service this week?",
    "please open a Linear issue for the flaky login test",
    "draft release notes for 2.14",
    "why did the nightly build fail?",
    "find the PR that introduced the timeout regression",
    "how many customers hit the rate limit today?",
    "review my migration before I merge it",
    "post the on-call handover in #incidents",
    "translate this error for the customer: \"payment declined (code 51)\"",
];

pub const REACTIONS: &[&str] = &["eyes", "white_check_mark", "thumbsup", "rocket", "tada"];

pub const ISSUE_TITLES: &[&str] = &[
    "Login fails with SSO when the session cookie is stale",
    "Export to CSV drops the last row",
    "Add retry with backoff to the webhook sender",
    "Dashboard loads slowly for large organizations",
    "Flaky test: invitations expire too early",
    "Upgrade the PostgreSQL driver",
    "Agent run stays queued after a deploy",
    "Document the seed command",
    "Rate limit the public API per token",
    "Dark mode contrast on the settings page",
];

pub const COMMENTS: &[&str] = &[
    "I can reproduce this on staging.",
    "Fixed in the latest deploy, please verify.",
    "Could the agent take a first pass at this?",
    "Blocked on the vendor's API change.",
    "Added a failing test that shows the bug.",
];

pub const LINEAR_TEAM_KEYS: &[&str] = &["ENG", "OPS", "DES", "SUP"];

pub const LABELS: &[&str] = &["bug", "feature", "performance", "security", "docs"];

pub const PROMPTS: &[&str] = &[
    "Summarize the thread and propose next steps.",
    "Triage the new issue: find related code and suggest an owner.",
    "Review the pull request for correctness and tests.",
    "Write the weekly status report from the closed issues.",
    "Investigate the failing build and open an issue with the cause.",
    "Answer the customer's question from the documentation.",
];

pub const SUMMARIES: &[&str] = &[
    "Posted a summary with three action items.",
    "Opened an issue and linked the commits that caused the regression.",
    "Left five review comments; two are blocking.",
    "Wrote the report and shared it in the channel.",
    "Found the cause (a missing index) and proposed a migration.",
];

pub const RUN_ERRORS: &[&str] = &[
    "model provider returned 529 (overloaded) after 3 retries",
    "tool budget exceeded: 40 tool calls",
    "context window exceeded (200000 tokens)",
    "the Slack connection was revoked while the run was active",
    "timed out after 600 s",
];

pub const EVENT_ERRORS: &[&str] = &[
    "slack api: ratelimited (retry after 30 s)",
    "linear api: 503 Service Unavailable",
    "could not resolve the organization for team",
    "payload rejected: unsupported event subtype",
    "worker shut down before finishing",
];

pub const TOOL_ERRORS: &[&str] = &[
    "HTTP 404 Not Found",
    "permission denied: the installation cannot read this repository",
    "timed out after 30 s",
    "invalid input: `query` must not be empty",
    "rate limited by GitHub (secondary rate limit)",
];

pub const MODELS: &[(&str, u64)] = &[
    ("claude-sonnet-4-5", 70),
    ("claude-opus-4-1", 10),
    ("claude-haiku-4-5", 20),
];

pub const REPOSITORIES: &[&str] = &["api", "web", "infra", "docs", "mobile", "data-pipeline"];

pub const URLS: &[&str] = &[
    "https://docs.example.com/guides/webhooks",
    "https://status.example.com/incidents/2026-10-30",
    "https://example.com/pricing",
    "https://blog.example.org/postgres-queues",
];
