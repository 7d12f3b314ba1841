//! Typed reads of the enumeration columns: `run.status()` is an [`AgentRunStatus`], where the
//! generated field `run.status` is the stored string.

use crate::{
    enums::*,
    generated::{
        agent_runs, github_installations, invitations, linear_events, slack_events, tool_calls,
        tools, unrouted_events, webhook_routes,
    },
};

macro_rules! typed_columns {
    ($($model:path { $($column:ident: $enum:ty),+ $(,)? })+) => {$(
        impl $model {
            $(
                #[doc = concat!("`", stringify!($column), "` as a [`", stringify!($enum), "`].")]
                pub fn $column(&self) -> Result<$enum, UnknownEnumValue> {
                    self.$column.parse()
                }
            )+
        }
    )+};
}

typed_columns! {
    slack_events::Model { status: EventStatus }
    linear_events::Model { status: EventStatus, action: LinearEventAction }
    agent_runs::Model { status: AgentRunStatus, trigger_source: TriggerSource }
    tool_calls::Model { status: ToolCallStatus }
    tools::Model { provider: ToolProvider }
    invitations::Model { status: InvitationStatus }
    github_installations::Model {
        account_type: GithubAccountType,
        repository_selection: RepositorySelection,
    }
    webhook_routes::Model { provider: RouteProvider }
    unrouted_events::Model { provider: EventProvider }
}
