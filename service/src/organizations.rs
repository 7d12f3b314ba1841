//! Organizations, their members and invitations (Better Auth's organization plugin tables).
//! Every organization keeps at least one owner: removing or demoting the last one is
//! [`Error::LastOwner`], also when two such changes race.

use entity::{
    Invitation, Member, Organization, enums::InvitationStatus, invitations, members, organizations,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    prelude::{DateTimeWithTimeZone, Expr},
    sea_query::{ExprTrait, Func},
};
use serde::Serialize;

use crate::{
    Error,
    sql::{self, columns, new_text_id, select_list},
};

/// The role every organization keeps at least one member in.
pub const OWNER: &str = "owner";

/// Better Auth stores several roles comma-separated (`"admin,owner"`).
fn has_owner_role(role: &str) -> bool {
    role.split(',').any(|r| r.trim() == OWNER)
}

/// SQL: whether the roles in `$column` include the owner role.
macro_rules! is_owner {
    ($column:literal) => {
        concat!("'owner' = ANY (string_to_array(", $column, ", ','))")
    };
}

/// Locks the organization's (`$1`) owners, so concurrent changes to them run one after the
/// other and each sees the owners the previous one left.
const OWNERS_LOCKED: &str = concat!(
    "owners AS (SELECT user_id FROM members WHERE organization_id = $1 AND ",
    is_owner!("role"),
    " FOR UPDATE)"
);

/// SQL: the member `m` (user `$2`) may stop being an owner: it is none, or another one remains.
const ANOTHER_OWNER_REMAINS: &str = concat!(
    "(NOT (",
    is_owner!("m.role"),
    ") OR EXISTS (SELECT 1 FROM owners o WHERE o.user_id <> $2))"
);

/// What an organization is created with.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOrganizationInput {
    pub name: String,
    pub slug: String,
    pub logo: Option<String>,
    /// Stored as JSON text, as Better Auth does.
    pub metadata: Option<serde_json::Value>,
}

/// An organization a user belongs to, with their role in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Membership {
    pub organization: Organization,
    pub member_id: String,
    pub role: String,
    pub joined_at: DateTimeWithTimeZone,
}

fn required(field: &str, value: &str) -> Result<(), Error> {
    match value.trim().is_empty() {
        true => Err(Error::invalid(field, "it is empty")),
        false => Ok(()),
    }
}

/// Creates an organization with `owner_user_id` as its owner, in one statement (both rows or
/// neither). A taken slug is [`Error::Conflict`]; an unknown user [`Error::MissingReference`].
pub async fn create_organization(
    db: &impl ConnectionTrait,
    input: NewOrganizationInput,
    owner_user_id: &str,
) -> Result<(Organization, Member), Error> {
    required("organization name", &input.name)?;
    required("organization slug", &input.slug)?;
    let sql = format!(
        "WITH org AS (
             INSERT INTO organizations (id, name, slug, logo, metadata)
             VALUES ($1, $2, $3, $4, $5) RETURNING *),
         mem AS (
             INSERT INTO members (id, organization_id, user_id, role)
             SELECT $6, org.id, $7, '{OWNER}' FROM org RETURNING *)
         SELECT {}, {} FROM org, mem",
        select_list::<organizations::Entity>("org", "o_"),
        select_list::<members::Entity>("mem", "m_"),
    );
    let metadata = input.metadata.map(|m| m.to_string());
    let row = db
        .query_one_raw(sql::statement(
            &sql,
            [
                new_text_id().into(),
                input.name.into(),
                input.slug.into(),
                input.logo.into(),
                metadata.into(),
                new_text_id().into(),
                owner_user_id.into(),
            ],
        ))
        .await?
        .expect("an INSERT ... RETURNING that succeeded returns its row");
    Ok((
        Organization::from_query_result(&row, "o_")?,
        Member::from_query_result(&row, "m_")?,
    ))
}

/// The organization with this slug.
pub async fn find_organization_by_slug(
    db: &impl ConnectionTrait,
    slug: &str,
) -> Result<Option<Organization>, Error> {
    Ok(organizations::Entity::find()
        .filter(organizations::Column::Slug.eq(slug))
        .one(db)
        .await?)
}

/// The organizations the user belongs to, with their role, by name, in one query.
pub async fn organizations_of_user(
    db: &impl ConnectionTrait,
    user_id: &str,
) -> Result<Vec<Membership>, Error> {
    let sql = format!(
        "SELECT {}, m.id AS m_id, m.role AS m_role, m.created_at AS m_created_at
         FROM members m JOIN organizations o ON o.id = m.organization_id
         WHERE m.user_id = $1
         ORDER BY o.name, o.id",
        select_list::<organizations::Entity>("o", "o_")
    );
    let rows = db
        .query_all_raw(sql::statement(&sql, [user_id.into()]))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(Membership {
                organization: Organization::from_query_result(row, "o_")?,
                member_id: row.try_get("", "m_id")?,
                role: row.try_get("", "m_role")?,
                joined_at: row.try_get("", "m_created_at")?,
            })
        })
        .collect()
}

/// Adds a member. Already a member: [`Error::Conflict`]; unknown organization or user:
/// [`Error::MissingReference`].
pub async fn add_member(
    db: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
    role: &str,
) -> Result<Member, Error> {
    required("role", role)?;
    sql::one(
        db,
        &format!(
            "INSERT INTO members (id, organization_id, user_id, role) VALUES ($1, $2, $3, $4)
             RETURNING {}",
            columns::<members::Entity>(None)
        ),
        [
            new_text_id().into(),
            organization_id.into(),
            user_id.into(),
            role.into(),
        ],
    )
    .await
    .map(|m| m.expect("INSERT ... RETURNING returns its row"))
}

async fn refused_owner_change(
    db: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
) -> Error {
    let exists = members::Entity::find()
        .filter(members::Column::OrganizationId.eq(organization_id))
        .filter(members::Column::UserId.eq(user_id))
        .one(db)
        .await;
    match exists {
        Ok(Some(_)) => Error::LastOwner {
            organization_id: organization_id.to_owned(),
        },
        Ok(None) => Error::not_found("member", format!("{user_id} in {organization_id}")),
        Err(err) => err.into(),
    }
}

/// Changes a member's role. Demoting the last owner is [`Error::LastOwner`] and changes nothing.
pub async fn change_role(
    db: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
    role: &str,
) -> Result<Member, Error> {
    required("role", role)?;
    let sql = format!(
        "WITH {OWNERS_LOCKED}
         UPDATE members m SET role = $3
         WHERE m.organization_id = $1 AND m.user_id = $2 AND ($4 OR {ANOTHER_OWNER_REMAINS})
         RETURNING {}",
        columns::<members::Entity>(Some("m"))
    );
    let values = [
        organization_id.into(),
        user_id.into(),
        role.into(),
        has_owner_role(role).into(),
    ];
    match sql::one(db, &sql, values).await? {
        Some(member) => Ok(member),
        None => Err(refused_owner_change(db, organization_id, user_id).await),
    }
}

/// Removes a member. Removing the last owner is [`Error::LastOwner`] and changes nothing.
pub async fn remove_member(
    db: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
) -> Result<Member, Error> {
    let sql = format!(
        "WITH {OWNERS_LOCKED}
         DELETE FROM members m
         WHERE m.organization_id = $1 AND m.user_id = $2 AND {ANOTHER_OWNER_REMAINS}
         RETURNING {}",
        columns::<members::Entity>(Some("m"))
    );
    match sql::one(db, &sql, [organization_id.into(), user_id.into()]).await? {
        Some(member) => Ok(member),
        None => Err(refused_owner_change(db, organization_id, user_id).await),
    }
}

/// Invites `email` (stored lower-cased) to the organization. A pending, unexpired invitation
/// for the same email there is [`Error::Conflict`]; an expired one is canceled first, in the
/// same statement.
pub async fn create_invitation(
    db: &impl ConnectionTrait,
    organization_id: &str,
    email: &str,
    role: Option<&str>,
    inviter_id: &str,
    expires_at: DateTimeWithTimeZone,
) -> Result<Invitation, Error> {
    if !email.contains('@') {
        return Err(Error::invalid("email", "it has no @"));
    }
    if expires_at <= chrono::Utc::now() {
        return Err(Error::invalid("expires_at", "it is not in the future"));
    }
    sql::one(
        db,
        &format!(
            "WITH swept AS (
             UPDATE invitations SET status = 'canceled'
             WHERE organization_id = $2 AND lower(email) = lower($3)
               AND status = 'pending' AND expires_at <= now()
             RETURNING id)
         INSERT INTO invitations (id, organization_id, email, role, status, expires_at, inviter_id)
         SELECT $1, $2, lower($3), $4, 'pending', $5, $6 FROM (SELECT count(*) FROM swept) AS s
         RETURNING {}",
            columns::<invitations::Entity>(None)
        ),
        [
            new_text_id().into(),
            organization_id.into(),
            email.into(),
            role.map(str::to_owned).into(),
            expires_at.into(),
            inviter_id.into(),
        ],
    )
    .await
    .map(|i| i.expect("INSERT ... SELECT of one row returns it"))
}

/// Accepts the organization's pending, unexpired invitation for the user whose email it was
/// sent to: the invitation becomes `accepted` and the member row is added in one statement,
/// exactly once even when accepted twice at once (the second gets [`Error::InvalidTransition`]).
pub async fn accept_invitation(
    db: &impl ConnectionTrait,
    organization_id: &str,
    invitation_id: &str,
    user_id: &str,
) -> Result<(Invitation, Member), Error> {
    let sql = format!(
        "WITH inv AS (
             UPDATE invitations i SET status = 'accepted'
             WHERE i.organization_id = $4 AND i.id = $1 AND i.status = 'pending'
               AND i.expires_at > now()
               AND lower(i.email) = (SELECT lower(u.email) FROM users u WHERE u.id = $2)
             RETURNING i.*),
         mem AS (
             INSERT INTO members (id, organization_id, user_id, role)
             SELECT $3, inv.organization_id, $2, COALESCE(inv.role, 'member') FROM inv
             RETURNING *)
         SELECT {}, {} FROM inv, mem",
        select_list::<invitations::Entity>("inv", "i_"),
        select_list::<members::Entity>("mem", "m_"),
    );
    let row = db
        .query_one_raw(sql::statement(
            &sql,
            [
                invitation_id.into(),
                user_id.into(),
                new_text_id().into(),
                organization_id.into(),
            ],
        ))
        .await?;
    if let Some(row) = row {
        return Ok((
            Invitation::from_query_result(&row, "i_")?,
            Member::from_query_result(&row, "m_")?,
        ));
    }
    Err(refused_acceptance(db, organization_id, invitation_id, user_id).await)
}

async fn refused_acceptance(
    db: &impl ConnectionTrait,
    organization_id: &str,
    invitation_id: &str,
    user_id: &str,
) -> Error {
    #[derive(FromQueryResult)]
    struct State {
        status: String,
        expired: bool,
        email_matches: bool,
    }
    let state = sql::one::<State>(
        db,
        "SELECT i.status, i.expires_at <= now() AS expired,
                COALESCE(lower(i.email) = (SELECT lower(u.email) FROM users u WHERE u.id = $2), false)
                    AS email_matches
         FROM invitations i WHERE i.organization_id = $3 AND i.id = $1",
        [invitation_id.into(), user_id.into(), organization_id.into()],
    )
    .await;
    let transition = |from: &str| Error::InvalidTransition {
        entity: "invitation",
        id: invitation_id.to_owned(),
        from: from.to_owned(),
        to: "accepted",
    };
    match state {
        Ok(None) => Error::not_found("invitation", invitation_id),
        Ok(Some(s)) if s.status != "pending" => transition(&s.status),
        Ok(Some(s)) if s.expired => transition("pending (expired)"),
        Ok(Some(s)) if !s.email_matches => {
            Error::invalid("user", "the invitation was sent to another email")
        }
        Ok(Some(_)) => transition("pending"),
        Err(err) => err,
    }
}

async fn close_invitation(
    db: &impl ConnectionTrait,
    organization_id: &str,
    invitation_id: &str,
    to: InvitationStatus,
) -> Result<Invitation, Error> {
    let updated = sql::one(
        db,
        &format!(
            "UPDATE invitations SET status = $3
             WHERE organization_id = $1 AND id = $2 AND status = 'pending' RETURNING {}",
            columns::<invitations::Entity>(None)
        ),
        [
            organization_id.into(),
            invitation_id.into(),
            to.as_str().into(),
        ],
    )
    .await?;
    match updated {
        Some(invitation) => Ok(invitation),
        None => Err(sql::refused_transition(
            db,
            "invitations",
            "invitation",
            organization_id,
            invitation_id,
            to.as_str(),
        )
        .await),
    }
}

/// The invitee declines the organization's pending invitation.
pub async fn reject_invitation(
    db: &impl ConnectionTrait,
    organization_id: &str,
    invitation_id: &str,
) -> Result<Invitation, Error> {
    close_invitation(
        db,
        organization_id,
        invitation_id,
        InvitationStatus::Rejected,
    )
    .await
}

/// The organization withdraws a pending invitation.
pub async fn cancel_invitation(
    db: &impl ConnectionTrait,
    organization_id: &str,
    invitation_id: &str,
) -> Result<Invitation, Error> {
    close_invitation(
        db,
        organization_id,
        invitation_id,
        InvitationStatus::Canceled,
    )
    .await
}

/// Cancels every pending invitation past its expiry (the schema has no `expired` status);
/// returns how many.
pub async fn expire_overdue_invitations(db: &impl ConnectionTrait) -> Result<u64, Error> {
    sql::execute(
        db,
        "UPDATE invitations SET status = 'canceled' WHERE status = 'pending' AND expires_at <= now()",
        [],
    )
    .await
}

/// The pending, unexpired invitations sent to `email` (any case), oldest first.
pub async fn pending_invitations_for_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> Result<Vec<Invitation>, Error> {
    Ok(invitations::Entity::find()
        .filter(
            Expr::expr(Func::lower(Expr::col(invitations::Column::Email))).eq(email.to_lowercase()),
        )
        .filter(invitations::Column::Status.eq(InvitationStatus::Pending))
        .filter(invitations::Column::ExpiresAt.gt(chrono::Utc::now()))
        .order_by_asc(invitations::Column::CreatedAt)
        .all(db)
        .await?)
}
