//! GitHub app installations and Slack/Linear connections of organizations. Tokens go in only as
//! [`EncryptedToken`]s, so plaintext cannot reach a `*_encrypted` column by accident.

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

/// Creates or updates the installation with this `installation_id`, in one statement. A new
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
            "INSERT INTO github_installations (organization_id, installation_id, account_login,
             account_type, repository_selection, permissions, events, installed_by_user_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (installation_id) DO UPDATE SET
             organization_id = EXCLUDED.organization_id,
             account_login = EXCLUDED.account_login,
             account_type = EXCLUDED.account_type,
             repository_selection = EXCLUDED.repository_selection,
             permissions = EXCLUDED.permissions,
             events = EXCLUDED.events,
             installed_by_user_id = COALESCE(EXCLUDED.installed_by_user_id,
                                             github_installations.installed_by_user_id)
         RETURNING {}",
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

/// Runs `change` (an `UPDATE` or `DELETE` of the installation `$1`) and returns the row.
async fn update_installation(
    db: &impl ConnectionTrait,
    installation_id: i64,
    change: &str,
) -> Result<GithubInstallation, Error> {
    let sql = format!(
        "{change} RETURNING {}",
        columns::<github_installations::Entity>(None)
    );
    sql::one(db, &sql, [installation_id.into()])
        .await?
        .ok_or_else(|| Error::not_found("github installation", installation_id))
}

/// The installation with this GitHub `installation_id`.
pub async fn find_github_installation(
    db: &impl ConnectionTrait,
    installation_id: i64,
) -> Result<Option<GithubInstallation>, Error> {
    sql::one(
        db,
        &format!(
            "SELECT {} FROM github_installations WHERE installation_id = $1",
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
    update_installation(
        db,
        installation_id,
        "UPDATE github_installations SET suspended_at = COALESCE(suspended_at, now())
         WHERE installation_id = $1",
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
        "UPDATE github_installations SET suspended_at = NULL WHERE installation_id = $1",
    )
    .await
}

/// Deletes the installation (the app was uninstalled); returns the removed row.
pub async fn remove_github_installation(
    db: &impl ConnectionTrait,
    installation_id: i64,
) -> Result<GithubInstallation, Error> {
    update_installation(
        db,
        installation_id,
        "DELETE FROM github_installations WHERE installation_id = $1",
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

/// Creates or updates (and reactivates) the organization's connection to this Slack team, in
/// one statement.
pub async fn upsert_slack_connection(
    db: &impl ConnectionTrait,
    input: SlackConnectionInput,
) -> Result<SlackConnection, Error> {
    let row = sql::one(
        db,
        &format!("INSERT INTO slack_connections (organization_id, installed_by_user_id, team_id, team_name,
             bot_user_id, access_token_encrypted, scopes)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (organization_id, team_id) DO UPDATE SET
             installed_by_user_id = COALESCE(EXCLUDED.installed_by_user_id,
                                             slack_connections.installed_by_user_id),
             team_name = EXCLUDED.team_name,
             bot_user_id = EXCLUDED.bot_user_id,
             access_token_encrypted = EXCLUDED.access_token_encrypted,
             scopes = EXCLUDED.scopes,
             is_active = true
         RETURNING {}", columns::<slack_connections::Entity>(None)),
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
/// workspace, in one statement.
pub async fn upsert_linear_connection(
    db: &impl ConnectionTrait,
    input: LinearConnectionInput,
) -> Result<LinearConnection, Error> {
    let row = sql::one(
        db,
        &format!(
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
             is_active = true
         RETURNING {}",
            columns::<linear_connections::Entity>(None)
        ),
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

async fn deactivate<E: EntityTrait>(
    db: &impl ConnectionTrait,
    table: &str,
    entity: &'static str,
    id: Uuid,
) -> Result<E::Model, Error> {
    sql::one(
        db,
        &format!(
            "UPDATE {table} SET is_active = false WHERE id = $1 RETURNING {}",
            columns::<E>(None)
        ),
        [id.into()],
    )
    .await?
    .ok_or_else(|| Error::not_found(entity, id))
}

/// The connection stops being used (it stays for history; an upsert reactivates it).
pub async fn deactivate_slack_connection(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<SlackConnection, Error> {
    deactivate::<slack_connections::Entity>(db, "slack_connections", "slack connection", id).await
}

/// The connection stops being used (it stays for history; an upsert reactivates it).
pub async fn deactivate_linear_connection(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<LinearConnection, Error> {
    deactivate::<linear_connections::Entity>(db, "linear_connections", "linear connection", id)
        .await
}

async fn active_for<E: EntityTrait>(
    db: &impl ConnectionTrait,
    table: &str,
    key_column: &str,
    key: &str,
) -> Result<Option<E::Model>, Error> {
    sql::one(
        db,
        &format!(
            "SELECT {} FROM {table} WHERE {key_column} = $1 AND is_active
             ORDER BY updated_at DESC, id DESC LIMIT 1",
            columns::<E>(None)
        ),
        [key.into()],
    )
    .await
}

/// The active connection that receives events for this Slack `team_id` (the most recently
/// updated, should several organizations have connected the same team).
pub async fn active_slack_connection(
    db: &impl ConnectionTrait,
    team_id: &str,
) -> Result<Option<SlackConnection>, Error> {
    active_for::<slack_connections::Entity>(db, "slack_connections", "team_id", team_id).await
}

/// The active connection that receives events for this Linear organization id (the most
/// recently updated, should several organizations have connected it).
pub async fn active_linear_connection(
    db: &impl ConnectionTrait,
    linear_organization_id: &str,
) -> Result<Option<LinearConnection>, Error> {
    active_for::<linear_connections::Entity>(
        db,
        "linear_connections",
        "linear_organization_id",
        linear_organization_id,
    )
    .await
}
