//! GitHub app installations and Slack/Linear connections of organizations. Tokens go in only as
//! [`EncryptedToken`]s, so plaintext cannot reach a `*_encrypted` column by accident.
//!
//! Each helper keeps `webhook_routes` in step in the same statement: the route of a Slack team,
//! Linear workspace or GitHub installation names the organization and connection that receive
//! its webhooks (what the event ingest reads), always the most recently upserted active
//! connection; deactivating it moves the route to the next active one, or removes it. A GitHub
//! installation is found by its route, since GitHub names only the installation.

use entity::{
    GithubInstallation, LinearConnection, SlackConnection,
    enums::{GithubAccountType, RepositorySelection},
    github_installations, linear_connections, slack_connections,
};
use sea_orm::{
    ConnectionTrait, EntityTrait,
    prelude::{DateTimeWithTimeZone, Json, Uuid},
};

use crate::{
    EncryptedToken, Error,
    sql::{self, columns},
};

/// A GitHub App installation as its webhook or the API describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct GithubInstallationInput {
    pub organization_id: String,
    pub installation_id: i64,
    pub account_login: String,
    pub account_type: GithubAccountType,
    pub repository_selection: RepositorySelection,
    pub permissions: Json,
    pub events: Vec<String>,
    pub installed_by_user_id: Option<String>,
}

/// Creates or updates the installation with this `installation_id` for the organization, and
/// routes its webhooks there, in one statement. An installation another organization held moves
/// (its row there is deleted: on Citus a row cannot change organization). A new
/// `installed_by_user_id` of `None` keeps the one stored.
pub async fn upsert_github_installation(
    db: &impl ConnectionTrait,
    input: GithubInstallationInput,
) -> Result<GithubInstallation, Error> {
    if input.installation_id <= 0 {
        return Err(Error::invalid("installation_id", "it must be positive"));
    }
    let row = sql::one(
        db,
        &format!(
            "WITH previous AS (
             SELECT organization_id FROM webhook_routes
             WHERE provider = 'github' AND external_id = $2::text),
         moved AS (
             DELETE FROM github_installations g USING previous p
             WHERE g.organization_id = p.organization_id AND p.organization_id <> $1
               AND g.installation_id = $2
             RETURNING g.installed_by_user_id),
         up AS (
             INSERT INTO github_installations (organization_id, installation_id, account_login,
                 account_type, repository_selection, permissions, events, installed_by_user_id)
             SELECT $1, $2, $3, $4, $5, $6, $7,
                    COALESCE($8, (SELECT installed_by_user_id FROM moved LIMIT 1))
             ON CONFLICT (organization_id, installation_id) DO UPDATE SET
                 account_login = EXCLUDED.account_login,
                 account_type = EXCLUDED.account_type,
                 repository_selection = EXCLUDED.repository_selection,
                 permissions = EXCLUDED.permissions,
                 events = EXCLUDED.events,
                 installed_by_user_id = COALESCE(EXCLUDED.installed_by_user_id,
                                                 github_installations.installed_by_user_id),
                 updated_at = EXCLUDED.updated_at
             RETURNING {}),
         routed AS (
             INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id)
             SELECT 'github', up.installation_id::text, up.organization_id, up.id FROM up
             ON CONFLICT (provider, external_id) DO UPDATE SET
                 organization_id = EXCLUDED.organization_id,
                 connection_id = EXCLUDED.connection_id,
                 updated_at = EXCLUDED.updated_at
             RETURNING 1)
         SELECT up.*, (SELECT count(*) FROM routed) AS routed FROM up",
            columns::<github_installations::Entity>(None)
        ),
        [
            input.organization_id.into(),
            input.installation_id.into(),
            input.account_login.into(),
            input.account_type.as_str().into(),
            input.repository_selection.as_str().into(),
            input.permissions.into(),
            input.events.into(),
            input.installed_by_user_id.into(),
        ],
    )
    .await?;
    Ok(row.expect("INSERT ... ON CONFLICT DO UPDATE returns its row"))
}

/// The installation's row in the organization its route names.
const ROUTED_INSTALLATION: &str = "organization_id = (SELECT organization_id FROM webhook_routes
                                     WHERE provider = 'github' AND external_id = $1::text)
     AND installation_id = $1";

/// Runs `change` (an `UPDATE` or `DELETE` of the routed installation `$1`, returning its row)
/// and returns the row.
async fn update_installation(
    db: &impl ConnectionTrait,
    installation_id: i64,
    change: &str,
) -> Result<GithubInstallation, Error> {
    sql::one(db, change, [installation_id.into()])
        .await?
        .ok_or_else(|| Error::not_found("github installation", installation_id))
}

/// The installation with this GitHub `installation_id`, in the organization its webhooks go to.
pub async fn find_github_installation(
    db: &impl ConnectionTrait,
    installation_id: i64,
) -> Result<Option<GithubInstallation>, Error> {
    sql::one(
        db,
        &format!(
            "SELECT {} FROM github_installations WHERE {ROUTED_INSTALLATION}",
            columns::<github_installations::Entity>(None)
        ),
        [installation_id.into()],
    )
    .await
}

/// Marks the installation suspended (keeps the first suspension time if already suspended).
pub async fn suspend_github_installation(
    db: &impl ConnectionTrait,
    installation_id: i64,
) -> Result<GithubInstallation, Error> {
    // LEAST, not COALESCE: Citus refuses now() inside COALESCE of a statement on every shard;
    // LEAST ignores the NULL of a first suspension and keeps an earlier one.
    update_installation(
        db,
        installation_id,
        &format!(
            "UPDATE github_installations SET suspended_at = LEAST(suspended_at, now()),
                                             updated_at = now()
             WHERE {ROUTED_INSTALLATION} RETURNING {}",
            columns::<github_installations::Entity>(None)
        ),
    )
    .await
}

/// Clears the installation's suspension.
pub async fn unsuspend_github_installation(
    db: &impl ConnectionTrait,
    installation_id: i64,
) -> Result<GithubInstallation, Error> {
    update_installation(
        db,
        installation_id,
        &format!(
            "UPDATE github_installations SET suspended_at = NULL, updated_at = now()
             WHERE {ROUTED_INSTALLATION} RETURNING {}",
            columns::<github_installations::Entity>(None)
        ),
    )
    .await
}

/// Deletes the installation (the app was uninstalled) and its route; returns the removed row.
pub async fn remove_github_installation(
    db: &impl ConnectionTrait,
    installation_id: i64,
) -> Result<GithubInstallation, Error> {
    update_installation(
        db,
        installation_id,
        &format!(
            "WITH gone AS (
                 DELETE FROM github_installations WHERE {ROUTED_INSTALLATION}
                 RETURNING {}),
             unrouted AS (
                 DELETE FROM webhook_routes r USING gone
                 WHERE r.provider = 'github' AND r.external_id = gone.installation_id::text
                   AND r.connection_id = gone.id
                 RETURNING 1)
             SELECT gone.*, (SELECT count(*) FROM unrouted) AS unrouted FROM gone",
            columns::<github_installations::Entity>(None)
        ),
    )
    .await
}

/// A Slack workspace connected to an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackConnectionInput {
    pub organization_id: String,
    pub installed_by_user_id: Option<String>,
    pub team_id: String,
    pub team_name: String,
    pub bot_user_id: Option<String>,
    pub access_token: EncryptedToken,
    pub scopes: Vec<String>,
}

/// `WITH c AS (<upsert of a connection RETURNING its columns>)`, then the route of its
/// `external_id` pointed at it: the upserted connection is the most recently updated active one.
fn with_route(provider: &str, external_id: &str, upsert: &str) -> String {
    format!(
        "WITH c AS ({upsert}),
         routed AS (
             INSERT INTO webhook_routes (provider, external_id, organization_id, connection_id)
             SELECT '{provider}', c.{external_id}, c.organization_id, c.id FROM c
             ON CONFLICT (provider, external_id) DO UPDATE SET
                 organization_id = EXCLUDED.organization_id,
                 connection_id = EXCLUDED.connection_id,
                 updated_at = EXCLUDED.updated_at
             RETURNING 1)
         SELECT c.*, (SELECT count(*) FROM routed) AS routed FROM c"
    )
}

/// Creates or updates (and reactivates) the organization's connection to this Slack team and
/// routes the team's webhooks to it, in one statement.
pub async fn upsert_slack_connection(
    db: &impl ConnectionTrait,
    input: SlackConnectionInput,
) -> Result<SlackConnection, Error> {
    let upsert = format!(
        "INSERT INTO slack_connections (organization_id, installed_by_user_id, team_id, team_name,
             bot_user_id, access_token_encrypted, scopes)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (organization_id, team_id) DO UPDATE SET
             installed_by_user_id = COALESCE(EXCLUDED.installed_by_user_id,
                                             slack_connections.installed_by_user_id),
             team_name = EXCLUDED.team_name,
             bot_user_id = EXCLUDED.bot_user_id,
             access_token_encrypted = EXCLUDED.access_token_encrypted,
             scopes = EXCLUDED.scopes,
             is_active = true,
             updated_at = EXCLUDED.updated_at
         RETURNING {}",
        columns::<slack_connections::Entity>(None)
    );
    let row = sql::one(
        db,
        &with_route("slack", "team_id", &upsert),
        [
            input.organization_id.into(),
            input.installed_by_user_id.into(),
            input.team_id.into(),
            input.team_name.into(),
            input.bot_user_id.into(),
            input.access_token.into_ciphertext().into(),
            input.scopes.into(),
        ],
    )
    .await?;
    Ok(row.expect("INSERT ... ON CONFLICT DO UPDATE returns its row"))
}

/// A Linear workspace connected to an organization.
#[derive(Debug, Clone, PartialEq)]
pub struct LinearConnectionInput {
    pub organization_id: String,
    pub installed_by_user_id: Option<String>,
    pub linear_organization_id: String,
    pub linear_organization_name: String,
    pub access_token: EncryptedToken,
    pub refresh_token: Option<EncryptedToken>,
    pub token_expires_at: Option<DateTimeWithTimeZone>,
    pub scopes: Vec<String>,
}

/// Creates or updates (and reactivates) the organization's connection to this Linear
/// workspace and routes the workspace's webhooks to it, in one statement.
pub async fn upsert_linear_connection(
    db: &impl ConnectionTrait,
    input: LinearConnectionInput,
) -> Result<LinearConnection, Error> {
    let upsert = format!(
        "INSERT INTO linear_connections (organization_id, installed_by_user_id,
             linear_organization_id, linear_organization_name, access_token_encrypted,
             refresh_token_encrypted, token_expires_at, scopes)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (organization_id, linear_organization_id) DO UPDATE SET
             installed_by_user_id = COALESCE(EXCLUDED.installed_by_user_id,
                                             linear_connections.installed_by_user_id),
             linear_organization_name = EXCLUDED.linear_organization_name,
             access_token_encrypted = EXCLUDED.access_token_encrypted,
             refresh_token_encrypted = EXCLUDED.refresh_token_encrypted,
             token_expires_at = EXCLUDED.token_expires_at,
             scopes = EXCLUDED.scopes,
             is_active = true,
             updated_at = EXCLUDED.updated_at
         RETURNING {}",
        columns::<linear_connections::Entity>(None)
    );
    let row = sql::one(
        db,
        &with_route("linear", "linear_organization_id", &upsert),
        [
            input.organization_id.into(),
            input.installed_by_user_id.into(),
            input.linear_organization_id.into(),
            input.linear_organization_name.into(),
            input.access_token.into_ciphertext().into(),
            input
                .refresh_token
                .map(EncryptedToken::into_ciphertext)
                .into(),
            input.token_expires_at.into(),
            input.scopes.into(),
        ],
    )
    .await?;
    Ok(row.expect("INSERT ... ON CONFLICT DO UPDATE returns its row"))
}

/// Deactivates the organization's connection `$2` of `table` (whose routed column is
/// `external_id`) and, if the route pointed at it, moves the route to the most recently updated
/// other active connection of the same team or workspace, or removes it; one statement.
async fn deactivate<E: EntityTrait>(
    db: &impl ConnectionTrait,
    table: &str,
    provider: &str,
    external_id: &str,
    entity: &'static str,
    organization_id: &str,
    id: Uuid,
) -> Result<E::Model, Error> {
    sql::one(
        db,
        &format!(
            "WITH c AS (
                 UPDATE {table} SET is_active = false, updated_at = now()
                 WHERE organization_id = $1 AND id = $2
                 RETURNING {columns}),
             next AS (
                 SELECT n.organization_id, n.id FROM {table} n JOIN c ON n.{external_id} = c.{external_id}
                 WHERE n.is_active AND n.id <> c.id
                 ORDER BY n.updated_at DESC, n.id DESC LIMIT 1),
             moved AS (
                 UPDATE webhook_routes r SET organization_id = next.organization_id,
                                             connection_id = next.id, updated_at = now()
                 FROM c, next
                 WHERE r.provider = '{provider}' AND r.external_id = c.{external_id}
                   AND r.connection_id = c.id
                 RETURNING 1),
             removed AS (
                 DELETE FROM webhook_routes r USING c
                 WHERE r.provider = '{provider}' AND r.external_id = c.{external_id}
                   AND r.connection_id = c.id AND NOT EXISTS (SELECT 1 FROM next)
                 RETURNING 1)
             SELECT c.*, (SELECT count(*) FROM moved) + (SELECT count(*) FROM removed) AS rerouted
             FROM c",
            columns = columns::<E>(None)
        ),
        [organization_id.into(), id.into()],
    )
    .await?
    .ok_or_else(|| Error::not_found(entity, id))
}

/// The connection stops being used (it stays for history; an upsert reactivates it); the
/// team's webhooks go to its next active connection, or nowhere (`unrouted_events`).
pub async fn deactivate_slack_connection(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
) -> Result<SlackConnection, Error> {
    deactivate::<slack_connections::Entity>(
        db,
        "slack_connections",
        "slack",
        "team_id",
        "slack connection",
        organization_id,
        id,
    )
    .await
}

/// The connection stops being used (it stays for history; an upsert reactivates it); the
/// workspace's webhooks go to its next active connection, or nowhere (`unrouted_events`).
pub async fn deactivate_linear_connection(
    db: &impl ConnectionTrait,
    organization_id: &str,
    id: Uuid,
) -> Result<LinearConnection, Error> {
    deactivate::<linear_connections::Entity>(
        db,
        "linear_connections",
        "linear",
        "linear_organization_id",
        "linear connection",
        organization_id,
        id,
    )
    .await
}

/// The connection the route of `external_id` names: the one that receives its webhooks.
async fn routed<E: EntityTrait>(
    db: &impl ConnectionTrait,
    table: &str,
    provider: &str,
    external_id: &str,
) -> Result<Option<E::Model>, Error> {
    sql::one(
        db,
        &format!(
            "SELECT {} FROM webhook_routes r
             JOIN {table} c ON c.organization_id = r.organization_id AND c.id = r.connection_id
             WHERE r.provider = '{provider}' AND r.external_id = $1",
            columns::<E>(Some("c"))
        ),
        [external_id.into()],
    )
    .await
}

/// The active connection that receives events for this Slack `team_id` (its route: the most
/// recently upserted, should several organizations have connected the same team).
pub async fn active_slack_connection(
    db: &impl ConnectionTrait,
    team_id: &str,
) -> Result<Option<SlackConnection>, Error> {
    routed::<slack_connections::Entity>(db, "slack_connections", "slack", team_id).await
}

/// The active connection that receives events for this Linear organization id (its route: the
/// most recently upserted, should several organizations have connected it).
pub async fn active_linear_connection(
    db: &impl ConnectionTrait,
    linear_organization_id: &str,
) -> Result<Option<LinearConnection>, Error> {
    routed::<linear_connections::Entity>(db, "linear_connections", "linear", linear_organization_id)
        .await
}
