//! One row (or two) in every table, linked the way production data is, with fixed ids: each
//! test has its own database, so fixed ids cannot collide.

use sea_orm::{ConnectionTrait, DbErr};

pub const OWNER_ID: &str = "user_owner";
pub const OTHER_USER_ID: &str = "user_other";
pub const ORG_ID: &str = "org_acme";
pub const OTHER_ORG_ID: &str = "org_other";
pub const SLACK_CONNECTION_ID: &str = "00000000-0000-4000-8000-000000000001";
pub const LINEAR_CONNECTION_ID: &str = "00000000-0000-4000-8000-000000000002";
pub const GITHUB_INSTALLATION_ID: &str = "00000000-0000-4000-8000-000000000003";
pub const SLACK_EVENT_ID: &str = "00000000-0000-4000-8000-000000000004";
pub const LINEAR_EVENT_ID: &str = "00000000-0000-4000-8000-000000000005";
pub const TOOL_ID: &str = "00000000-0000-4000-8000-000000000006";
pub const USER_TOOL_ID: &str = "00000000-0000-4000-8000-000000000007";
pub const AGENT_RUN_ID: &str = "00000000-0000-4000-8000-000000000008";
pub const TOOL_CALL_ID: &str = "00000000-0000-4000-8000-000000000009";
pub const OTHER_ORG_RUN_ID: &str = "00000000-0000-4000-8000-00000000000a";

pub const UNROUTED_EVENT_ID: &str = "00000000-0000-4000-8000-00000000000b";

/// Two users and two organizations; the owner belongs to `ORG_ID` and owns everything in it
/// (its connections route team `T1`, Linear workspace `lin_1` and installation 4242 there),
/// the other user is a member of both and has a run in `OTHER_ORG_ID`; one Slack delivery from
/// a team nobody connected is unrouted.
///
/// One statement per `execute`, so that it runs the same on Citus.
pub async fn seed_everything(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let statements = format!(
        "INSERT INTO users (id, name, email) VALUES
             ('{OWNER_ID}', 'Owner', 'owner@example.com'),
             ('{OTHER_USER_ID}', 'Other', 'other@example.com');
         INSERT INTO organizations (id, name, slug) VALUES
             ('{ORG_ID}', 'Acme', 'acme'), ('{OTHER_ORG_ID}', 'Other', 'other');
         INSERT INTO sessions (id, expires_at, token, user_id, active_organization_id) VALUES
             ('sess_owner', now() + interval '1 day', 'tok_owner', '{OWNER_ID}', '{ORG_ID}'),
             ('sess_other', now() + interval '1 day', 'tok_other', '{OTHER_USER_ID}', '{ORG_ID}');
         INSERT INTO accounts (id, account_id, provider_id, user_id, password) VALUES
             ('acct_owner', '{OWNER_ID}', 'credential', '{OWNER_ID}', 'scrypt:hash');
         INSERT INTO verifications (id, identifier, value, expires_at) VALUES
             ('ver_1', 'owner@example.com', 'code', now() + interval '1 hour');
         INSERT INTO members (id, organization_id, user_id, role) VALUES
             ('mem_owner', '{ORG_ID}', '{OWNER_ID}', 'owner'),
             ('mem_other', '{ORG_ID}', '{OTHER_USER_ID}', 'member'),
             ('mem_other_2', '{OTHER_ORG_ID}', '{OTHER_USER_ID}', 'owner');
         INSERT INTO invitations (id, organization_id, email, role, expires_at, inviter_id) VALUES
             ('inv_1', '{ORG_ID}', 'new@example.com', 'member', now() + interval '7 days', '{OWNER_ID}');
         INSERT INTO two_factors (id, secret, backup_codes, user_id) VALUES
             ('tf_owner', 'secret', 'codes', '{OWNER_ID}');
         INSERT INTO github_installations (id, organization_id, installation_id, account_login,
                 account_type, repository_selection, installed_by_user_id) VALUES
             ('{GITHUB_INSTALLATION_ID}', '{ORG_ID}', 4242, 'acme', 'organization', 'all', '{OTHER_USER_ID}');
         INSERT INTO slack_connections (id, organization_id, installed_by_user_id, team_id, team_name,
                 access_token_encrypted) VALUES
             ('{SLACK_CONNECTION_ID}', '{ORG_ID}', '{OTHER_USER_ID}', 'T1', 'Acme', 'v1:ciphertext');
         INSERT INTO linear_connections (id, organization_id, installed_by_user_id, linear_organization_id,
                 linear_organization_name, access_token_encrypted) VALUES
             ('{LINEAR_CONNECTION_ID}', '{ORG_ID}', '{OTHER_USER_ID}', 'lin_1', 'Acme', 'v1:ciphertext');
         INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id) VALUES
             ('slack', 'T1', '{ORG_ID}', '{SLACK_CONNECTION_ID}'),
             ('linear', 'lin_1', '{ORG_ID}', '{LINEAR_CONNECTION_ID}'),
             ('github', '4242', '{ORG_ID}', '{GITHUB_INSTALLATION_ID}');
         INSERT INTO slack_events (id, organization_id, slack_connection_id, event_id, event_type,
                 team_id, payload) VALUES
             ('{SLACK_EVENT_ID}', '{ORG_ID}', '{SLACK_CONNECTION_ID}', 'Ev1', 'app_mention', 'T1', '{{}}');
         INSERT INTO linear_events (id, organization_id, linear_connection_id, event_id, event_type,
                 action, linear_organization_id, payload) VALUES
             ('{LINEAR_EVENT_ID}', '{ORG_ID}', '{LINEAR_CONNECTION_ID}', 'delivery-1', 'Issue', 'create',
              'lin_1', '{{}}');
         INSERT INTO unrouted_events (id, provider, event_id, external_id, event_type, payload) VALUES
             ('{UNROUTED_EVENT_ID}', 'slack', 'EvUnrouted', 'T_NOBODY', 'message', '{{}}');
         INSERT INTO tools (id, name, display_name, provider) VALUES
             ('{TOOL_ID}', 'github_search', 'GitHub search', 'github');
         INSERT INTO user_tools (id, user_id, tool_id) VALUES ('{USER_TOOL_ID}', '{OTHER_USER_ID}', '{TOOL_ID}');
         INSERT INTO agent_runs (id, organization_id, user_id, trigger_source, slack_event_id,
                 linear_event_id, model) VALUES
             ('{AGENT_RUN_ID}', '{ORG_ID}', '{OTHER_USER_ID}', 'slack', '{SLACK_EVENT_ID}',
              '{LINEAR_EVENT_ID}', 'claude-sonnet'),
             ('{OTHER_ORG_RUN_ID}', '{OTHER_ORG_ID}', '{OTHER_USER_ID}', 'api', NULL, NULL, 'claude-sonnet');
         INSERT INTO tool_calls (id, organization_id, agent_run_id, tool_id, tool_name, sequence) VALUES
             ('{TOOL_CALL_ID}', '{ORG_ID}', '{AGENT_RUN_ID}', '{TOOL_ID}', 'github_search', 0);"
    );
    for statement in statements.split(";\n") {
        db.execute_unprepared(statement).await?;
    }
    Ok(())
}

/// An organization `organization_id` (named and slugged after it) connected to the Slack team
/// `team_id` and the Linear workspace `lin_<team_id>`, with the routes that send their webhooks
/// to it: what a test that ingests events needs, without the rest of [`seed_everything`].
/// Returns the Slack connection's id.
pub async fn organization_with_teams(
    db: &impl ConnectionTrait,
    organization_id: &str,
    team_id: &str,
) -> Result<sea_orm::prelude::Uuid, DbErr> {
    let slack = sea_orm::prelude::Uuid::new_v4();
    let linear = sea_orm::prelude::Uuid::new_v4();
    let statements = [
        format!(
            "INSERT INTO organizations (id, name, slug) VALUES ('{organization_id}', '{organization_id}', '{organization_id}')"
        ),
        format!(
            "INSERT INTO slack_connections (id, organization_id, team_id, team_name, access_token_encrypted)
             VALUES ('{slack}', '{organization_id}', '{team_id}', '{team_id}', 'v1:ciphertext')"
        ),
        format!(
            "INSERT INTO linear_connections (id, organization_id, linear_organization_id,
                 linear_organization_name, access_token_encrypted)
             VALUES ('{linear}', '{organization_id}', 'lin_{team_id}', '{team_id}', 'v1:ciphertext')"
        ),
        format!(
            "INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id) VALUES
                 ('slack', '{team_id}', '{organization_id}', '{slack}'),
                 ('linear', 'lin_{team_id}', '{organization_id}', '{linear}')"
        ),
    ];
    for statement in statements {
        db.execute_unprepared(&statement).await?;
    }
    Ok(slack)
}
