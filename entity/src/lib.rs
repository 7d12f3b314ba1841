//! Typed rows of every table. `generated/` is `sea-orm-cli generate entity` output (regenerate
//! with `cargo xtask entities`, never edit); this file and its siblings are the hand-written face:
//!
//! - `entity::prelude::*` brings every entity (`Users`, `AgentRuns`, ...), every enum, and the
//!   row aliases: `User` is a row as read (`users::Model`), `NewUser` a row being written
//!   (`users::ActiveModel`), like Drizzle's `$inferSelect` / `$inferInsert`.
//! - [`enums`] holds a Rust enum for every `varchar` enumeration.
//! - No model serialises a secret column (`db_connect::secrets`' rule), and no model's `Debug`
//!   prints one or a secret inside JSON: `cargo xtask entities` writes that into `generated/`.

pub mod enums;
pub mod generated;
mod redact;
mod typed;

pub use enums::UnknownEnumValue;
pub use generated::{
    accounts, agent_runs, github_installations, invitations, linear_connections, linear_events,
    members, organizations, sessions, slack_connections, slack_events, tool_calls, tools,
    two_factors, unrouted_events, user_tools, users, verifications, webhook_routes,
};
pub use sea_orm;

macro_rules! row_aliases {
    ($($table:ident => $row:ident, $new:ident;)+) => {$(
        #[doc = concat!("A row of `", stringify!($table), "` as read.")]
        pub type $row = generated::$table::Model;
        #[doc = concat!("A row of `", stringify!($table), "` being inserted or updated.")]
        pub type $new = generated::$table::ActiveModel;
    )+};
}

row_aliases! {
    users => User, NewUser;
    sessions => Session, NewSession;
    accounts => Account, NewAccount;
    verifications => Verification, NewVerification;
    organizations => Organization, NewOrganization;
    members => Member, NewMember;
    invitations => Invitation, NewInvitation;
    two_factors => TwoFactor, NewTwoFactor;
    github_installations => GithubInstallation, NewGithubInstallation;
    slack_connections => SlackConnection, NewSlackConnection;
    linear_connections => LinearConnection, NewLinearConnection;
    slack_events => SlackEvent, NewSlackEvent;
    linear_events => LinearEvent, NewLinearEvent;
    agent_runs => AgentRun, NewAgentRun;
    tool_calls => ToolCall, NewToolCall;
    tools => Tool, NewTool;
    user_tools => UserTool, NewUserTool;
    webhook_routes => WebhookRoute, NewWebhookRoute;
    unrouted_events => UnroutedEvent, NewUnroutedEvent;
}

/// Everything a caller needs in one import.
pub mod prelude {
    pub use crate::enums::*;
    pub use crate::generated::prelude::*;
    pub use crate::{
        Account, AgentRun, GithubInstallation, Invitation, LinearConnection, LinearEvent, Member,
        NewAccount, NewAgentRun, NewGithubInstallation, NewInvitation, NewLinearConnection,
        NewLinearEvent, NewMember, NewOrganization, NewSession, NewSlackConnection, NewSlackEvent,
        NewTool, NewToolCall, NewTwoFactor, NewUnroutedEvent, NewUser, NewUserTool,
        NewVerification, NewWebhookRoute, Organization, Session, SlackConnection, SlackEvent, Tool,
        ToolCall, TwoFactor, UnroutedEvent, User, UserTool, Verification, WebhookRoute,
    };
}
