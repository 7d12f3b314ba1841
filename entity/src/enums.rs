//! A Rust enum for every `varchar` enumeration of the schema, with exactly the strings its CHECK
//! constraint allows. Each works directly in queries (`Column::Status.eq(AgentRunStatus::Running)`),
//! goes into an `ActiveModel` field with `.into()`, and (de)serialises in the same spelling.

use std::{fmt, str::FromStr};

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// A string from the database or a caller that is not one of an enumeration's values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {column} (expected one of: {expected})")]
pub struct UnknownEnumValue {
    /// `table.column` the value was meant for.
    pub column: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! string_enums {
    ($(
        $(#[$meta:meta])*
        $name:ident for $column:literal { $($variant:ident = $value:literal),+ $(,)? }
    )+) => {$(
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, Deserialize,
        )]
        #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
        pub enum $name {
            $(
                #[sea_orm(string_value = $value)]
                #[serde(rename = $value)]
                $variant,
            )+
        }

        impl $name {
            /// The `table.column` (or columns) this enumeration guards.
            pub const COLUMN: &'static str = $column;
            /// Every value, in the order of the schema.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The string stored in the database.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $value,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownEnumValue;

            fn from_str(value: &str) -> Result<Self, Self::Err> {
                match value {
                    $($value => Ok(Self::$variant),)+
                    _ => Err(UnknownEnumValue {
                        column: Self::COLUMN,
                        value: value.to_owned(),
                        expected: concat!($($value, " "),+).trim_ascii_end(),
                    }),
                }
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.as_str().to_owned()
            }
        }
    )+};
}

string_enums! {
    /// Where a webhook delivery is in its processing (`slack_events`, `linear_events`).
    EventStatus for "slack_events.status, linear_events.status" {
        Pending = "pending",
        Processing = "processing",
        Processed = "processed",
        Failed = "failed",
        Ignored = "ignored",
    }

    /// What a Linear webhook did to its object.
    LinearEventAction for "linear_events.action" {
        Create = "create",
        Update = "update",
        Remove = "remove",
    }

    /// The life of an agent run.
    AgentRunStatus for "agent_runs.status" {
        Queued = "queued",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Cancelled = "cancelled",
    }

    /// What started an agent run.
    TriggerSource for "agent_runs.trigger_source" {
        Slack = "slack",
        Linear = "linear",
        Github = "github",
        Api = "api",
        Schedule = "schedule",
    }

    /// The life of one tool call of a run.
    ToolCallStatus for "tool_calls.status" {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
    }

    /// Where a tool of the catalog comes from.
    ToolProvider for "tools.provider" {
        Builtin = "builtin",
        Github = "github",
        Slack = "slack",
        Linear = "linear",
        Mcp = "mcp",
    }

    /// An organization invitation's state (Better Auth's values).
    InvitationStatus for "invitations.status" {
        Pending = "pending",
        Accepted = "accepted",
        Rejected = "rejected",
        Canceled = "canceled",
    }

    /// The kind of GitHub account an app is installed on.
    GithubAccountType for "github_installations.account_type" {
        User = "user",
        Organization = "organization",
    }

    /// Which repositories a GitHub installation may see.
    RepositorySelection for "github_installations.repository_selection" {
        All = "all",
        Selected = "selected",
    }

    /// Whose webhooks a route sends to an organization.
    RouteProvider for "webhook_routes.provider" {
        Slack = "slack",
        Linear = "linear",
        Github = "github",
    }

    /// Where a webhook delivery that no route claimed came from.
    EventProvider for "unrouted_events.provider" {
        Slack = "slack",
        Linear = "linear",
    }
}
