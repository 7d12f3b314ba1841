//! Users, sessions, accounts and verifications (the Better Auth tables). Nothing here returns a
//! token, a password hash or a verification value: sessions and accounts come back as
//! [`SessionInfo`] and [`AccountInfo`].

use std::fmt;

use db_connect::secrets::masked_with_prefix;
use entity::{User, users};
use sea_orm::{
    ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter,
    prelude::{DateTimeWithTimeZone, Expr},
    sea_query::{ExprTrait, Func},
};
use serde::{Serialize, Serializer};

use crate::{
    Error,
    sql::{self, select_list},
};

/// A session without its token.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: String,
    pub user_id: String,
    pub expires_at: DateTimeWithTimeZone,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub active_organization_id: Option<String>,
    pub created_at: DateTimeWithTimeZone,
    pub updated_at: DateTimeWithTimeZone,
}

const SESSION_COLUMNS: &str = "s.id AS s_id, s.user_id AS s_user_id, s.expires_at AS s_expires_at, \
     s.ip_address AS s_ip_address, s.user_agent AS s_user_agent, \
     s.active_organization_id AS s_active_organization_id, s.created_at AS s_created_at, \
     s.updated_at AS s_updated_at";

/// A linked account without its tokens or password hash.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountInfo {
    pub id: String,
    pub account_id: String,
    pub provider_id: String,
    pub scope: Option<String>,
    pub access_token_expires_at: Option<DateTimeWithTimeZone>,
    pub refresh_token_expires_at: Option<DateTimeWithTimeZone>,
    /// Whether the account signs in with a password (`credential` accounts).
    pub has_password: bool,
    pub created_at: DateTimeWithTimeZone,
    pub updated_at: DateTimeWithTimeZone,
}

/// A valid session and the user it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionWithUser {
    pub session: SessionInfo,
    pub user: User,
}

/// A verification that was consumed (its value is gone with it). The identifier can hold a
/// one-time token (`reset-password:<token>`), so `Debug` and `Serialize` show only what
/// precedes its first `:`.
#[derive(Clone, PartialEq, Eq, FromQueryResult, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumedVerification {
    pub id: String,
    #[serde(serialize_with = "serialize_masked")]
    pub identifier: String,
    pub expires_at: DateTimeWithTimeZone,
    pub created_at: DateTimeWithTimeZone,
}

impl fmt::Debug for ConsumedVerification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumedVerification")
            .field("id", &self.id)
            .field("identifier", &masked_with_prefix(&self.identifier))
            .field("expires_at", &self.expires_at)
            .field("created_at", &self.created_at)
            .finish()
    }
}

fn serialize_masked<S: Serializer>(identifier: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&masked_with_prefix(identifier))
}

/// The user with this id.
pub async fn find_user(db: &impl ConnectionTrait, id: &str) -> Result<Option<User>, Error> {
    Ok(users::Entity::find_by_id(id).one(db).await?)
}

/// The user with this email, compared case-insensitively (through the `lower(email)` index).
pub async fn find_user_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Option<User>, Error> {
    Ok(users::Entity::find()
        .filter(Expr::expr(Func::lower(Expr::col(users::Column::Email))).eq(email.to_lowercase()))
        .one(db)
        .await?)
}

/// The user and their linked accounts (oldest first), in one query.
pub async fn user_with_accounts(
    db: &impl ConnectionTrait,
    user_id: &str,
) -> Result<(User, Vec<AccountInfo>), Error> {
    let sql = format!(
        "SELECT {}, a.id AS a_id, a.account_id AS a_account_id, a.provider_id AS a_provider_id,
                a.scope AS a_scope, a.access_token_expires_at AS a_access_token_expires_at,
                a.refresh_token_expires_at AS a_refresh_token_expires_at,
                a.password IS NOT NULL AS a_has_password, a.created_at AS a_created_at,
                a.updated_at AS a_updated_at
         FROM users u LEFT JOIN accounts a ON a.user_id = u.id
         WHERE u.id = $1
         ORDER BY a.created_at, a.id",
        select_list::<users::Entity>("u", "u_")
    );
    let rows = db
        .query_all_raw(sql::statement(&sql, [user_id.into()]))
        .await?;
    let Some(first) = rows.first() else {
        return Err(Error::not_found("user", user_id));
    };
    let user = User::from_query_result(first, "u_")?;
    let mut accounts = Vec::new();
    for row in &rows {
        if row.try_get::<Option<String>>("", "a_id")?.is_some() {
            accounts.push(AccountInfo::from_query_result(row, "a_")?);
        }
    }
    Ok((user, accounts))
}

/// The unexpired session with this token, with its user, in one query; `None` when the token
/// is unknown or expired.
pub async fn valid_session(
    db: &impl ConnectionTrait,
    token: &str,
) -> Result<Option<SessionWithUser>, Error> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS}, {}
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token = $1 AND s.expires_at > now()",
        select_list::<users::Entity>("u", "u_")
    );
    let Some(row) = db
        .query_one_raw(sql::statement(&sql, [token.into()]))
        .await?
    else {
        return Ok(None);
    };
    Ok(Some(SessionWithUser {
        session: SessionInfo::from_query_result(&row, "s_")?,
        user: User::from_query_result(&row, "u_")?,
    }))
}

/// The user's unexpired sessions, newest first.
pub async fn list_sessions(
    db: &impl ConnectionTrait,
    user_id: &str,
) -> Result<Vec<SessionInfo>, Error> {
    let sql = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s
         WHERE s.user_id = $1 AND s.expires_at > now()
         ORDER BY s.created_at DESC, s.id DESC"
    );
    let rows = db
        .query_all_raw(sql::statement(&sql, [user_id.into()]))
        .await?;
    rows.iter()
        .map(|row| Ok(SessionInfo::from_query_result(row, "s_")?))
        .collect()
}

/// Deletes one of the user's sessions; [`Error::NotFound`] if the user has no such session.
pub async fn revoke_session(
    db: &impl ConnectionTrait,
    user_id: &str,
    session_id: &str,
) -> Result<(), Error> {
    let deleted = sql::execute(
        db,
        "DELETE FROM sessions WHERE id = $1 AND user_id = $2",
        [session_id.into(), user_id.into()],
    )
    .await?;
    match deleted {
        0 => Err(Error::not_found("session", session_id)),
        _ => Ok(()),
    }
}

/// Deletes all of the user's sessions except `keep` (e.g. the current one); returns how many.
pub async fn revoke_sessions(
    db: &impl ConnectionTrait,
    user_id: &str,
    keep: Option<&str>,
) -> Result<u64, Error> {
    sql::execute(
        db,
        "DELETE FROM sessions WHERE user_id = $1 AND id IS DISTINCT FROM $2",
        [user_id.into(), keep.map(str::to_owned).into()],
    )
    .await
}

/// Deletes every expired session; returns how many.
pub async fn delete_expired_sessions(db: &impl ConnectionTrait) -> Result<u64, Error> {
    sql::execute(db, "DELETE FROM sessions WHERE expires_at <= now()", []).await
}

/// Deletes every expired verification; returns how many.
pub async fn delete_expired_verifications(db: &impl ConnectionTrait) -> Result<u64, Error> {
    sql::execute(
        db,
        "DELETE FROM verifications WHERE expires_at <= now()",
        [],
    )
    .await
}

/// Checks and deletes a verification in one statement, so it can be used once: the
/// `identifier` and `value` must match an unexpired row. [`Error::NotFound`] otherwise (wrong,
/// expired, or already used).
pub async fn consume_verification(
    db: &impl ConnectionTrait,
    identifier: &str,
    value: &str,
) -> Result<ConsumedVerification, Error> {
    sql::one(
        db,
        "DELETE FROM verifications
         WHERE identifier = $1 AND value = $2 AND expires_at > now()
         RETURNING id, identifier, expires_at, created_at",
        [identifier.into(), value.into()],
    )
    .await?
    // The identifier may be a token: the error names only what the verification is for.
    .ok_or_else(|| Error::not_found("verification", masked_with_prefix(identifier)))
}
