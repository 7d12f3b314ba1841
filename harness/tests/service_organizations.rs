//! service::organizations against real PostgreSQL, including the races the issue names.

use chrono::{Duration, Utc};
use harness::{TestDb, fixtures, scalar};
use sea_orm::ConnectionTrait;
use service::{
    Error,
    organizations::{self as orgs, NewOrganizationInput},
};

fn acme_two() -> NewOrganizationInput {
    NewOrganizationInput {
        name: "Acme Two".into(),
        slug: "acme-two".into(),
        logo: None,
        metadata: Some(serde_json::json!({ "plan": "team" })),
    }
}

#[tokio::test]
async fn an_organization_is_created_with_its_owner_or_not_at_all() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let (org, owner) = orgs::create_organization(db.conn(), acme_two(), fixtures::OWNER_ID)
        .await
        .unwrap();
    assert_eq!(org.slug, "acme-two");
    assert_eq!(org.metadata.as_deref(), Some(r#"{"plan":"team"}"#));
    assert_eq!(
        (owner.organization_id.as_str(), owner.role.as_str()),
        (org.id.as_str(), "owner")
    );
    assert_eq!(
        orgs::find_organization_by_slug(db.conn(), "acme-two")
            .await
            .unwrap(),
        Some(org)
    );

    let taken = orgs::create_organization(db.conn(), acme_two(), fixtures::OWNER_ID).await;
    assert!(
        matches!(&taken, Err(Error::Conflict { constraint, .. }) if constraint == "uq_organizations_slug"),
        "{taken:?}"
    );
    let mut input = acme_two();
    input.slug = "acme-three".into();
    let orphan = orgs::create_organization(db.conn(), input, "no_such_user").await;
    assert!(
        matches!(orphan, Err(Error::MissingReference { .. })),
        "{orphan:?}"
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM organizations WHERE slug = 'acme-three'"
        )
        .await,
        0,
        "no organization without its owner"
    );
    let mut blank = acme_two();
    blank.slug = "  ".into();
    assert!(matches!(
        orgs::create_organization(db.conn(), blank, fixtures::OWNER_ID).await,
        Err(Error::Validation { .. })
    ));
}

#[tokio::test]
async fn a_users_organizations_come_with_their_role() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let memberships = orgs::organizations_of_user(db.conn(), fixtures::OTHER_USER_ID)
        .await
        .unwrap();
    let seen: Vec<(&str, &str)> = memberships
        .iter()
        .map(|m| (m.organization.slug.as_str(), m.role.as_str()))
        .collect();
    assert_eq!(seen, [("acme", "member"), ("other", "owner")]);
    assert!(
        orgs::organizations_of_user(db.conn(), "nobody")
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn members_are_added_changed_and_removed_but_the_last_owner_stays() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let (org, other) = (fixtures::ORG_ID, fixtures::OTHER_USER_ID);
    assert!(matches!(
        orgs::add_member(db.conn(), org, other, "admin").await,
        Err(Error::Conflict { .. })
    ));
    assert!(matches!(
        orgs::add_member(db.conn(), org, "ghost", "member").await,
        Err(Error::MissingReference { .. })
    ));
    let still_owner = orgs::change_role(db.conn(), org, fixtures::OWNER_ID, "admin,owner")
        .await
        .unwrap();
    assert_eq!(
        still_owner.role, "admin,owner",
        "the last owner may take another role that includes owner"
    );
    orgs::change_role(db.conn(), org, fixtures::OWNER_ID, "owner")
        .await
        .unwrap();
    let promoted = orgs::change_role(db.conn(), org, other, "admin,owner")
        .await
        .unwrap();
    assert_eq!(promoted.role, "admin,owner");
    // Two owners: either may go, but not both.
    orgs::change_role(db.conn(), org, fixtures::OWNER_ID, "member")
        .await
        .unwrap();
    let last = orgs::change_role(db.conn(), org, other, "member").await;
    assert!(matches!(last, Err(Error::LastOwner { .. })), "{last:?}");
    assert!(matches!(
        orgs::remove_member(db.conn(), org, other).await,
        Err(Error::LastOwner { .. })
    ));
    assert_eq!(
        scalar(db.conn(), &format!("SELECT count(*) FROM members WHERE organization_id = '{org}' AND role LIKE '%owner%'")).await,
        1
    );
    let removed = orgs::remove_member(db.conn(), org, fixtures::OWNER_ID)
        .await
        .unwrap();
    assert_eq!(removed.user_id, fixtures::OWNER_ID);
    assert!(matches!(
        orgs::remove_member(db.conn(), org, fixtures::OWNER_ID).await,
        Err(Error::NotFound {
            entity: "member",
            ..
        })
    ));
    assert!(matches!(
        orgs::change_role(db.conn(), org, "ghost", "owner").await,
        Err(Error::NotFound { .. })
    ));
}

/// Tasks in each race, each on its own connection.
/// The organization of the fixture's invitation `inv_1`.
const ORG: &str = fixtures::ORG_ID;

const RACERS: usize = 16;

/// Runs `work` in [`RACERS`] tasks at once. With `lock_rows`, every task is queued behind
/// those rows, locked, before any goes (the worst case, the same every time: a check-then-write
/// implementation always fails); without, the tasks are only released together and the server
/// interleaves them as it will.
async fn race<T, F, Fut>(db: &TestDb, lock_rows: Option<&str>, work: F) -> Vec<T>
where
    F: Fn(service::Pool, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    match lock_rows {
        Some(rows) => harness::behind_row_locks(db, rows, RACERS, work).await,
        None => harness::on_separate_connections(db.url(), RACERS, work).await,
    }
}

/// Every member row of `ORG_ID`, owners included.
const ORG_MEMBERS: &str = "SELECT id FROM members WHERE organization_id = 'org_acme' FOR UPDATE";
/// The fixture's invitation.
// With its organization, so that on Citus the lock is one shard's (a multi-shard FOR UPDATE is
// refused).
const INVITATION: &str =
    "SELECT id FROM invitations WHERE organization_id = 'org_acme' AND id = 'inv_1' FOR UPDATE";

/// `RACERS` owners of `ORG_ID`: the fixture's owner and `RACERS - 1` more.
async fn many_owners(db: &TestDb) -> Vec<String> {
    fixtures::seed_everything(db.conn()).await.unwrap();
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO users (id, name, email)
             SELECT 'racer_' || g, 'Racer', 'racer' || g || '@example.com' FROM generate_series(1, {n}) g;
             INSERT INTO members (id, organization_id, user_id, role)
             SELECT 'mem_racer_' || g, '{org}', 'racer_' || g, 'owner' FROM generate_series(1, {n}) g;",
            n = RACERS - 1,
            org = fixtures::ORG_ID,
        ))
        .await
        .unwrap();
    std::iter::once(fixtures::OWNER_ID.to_owned())
        .chain((1..RACERS).map(|g| format!("racer_{g}")))
        .collect()
}

async fn owners_left(db: &TestDb) -> i64 {
    scalar(
        db.conn(),
        &format!(
            "SELECT count(*) FROM members WHERE organization_id = '{}' AND role = 'owner'",
            fixtures::ORG_ID
        ),
    )
    .await
}

/// Every one of [`RACERS`] owners runs `leave(conn, user)` (a demotion or a removal of
/// themselves) at once, behind the member rows and then released by the barrier only: all but
/// one win, the last gets `LastOwner`, and exactly one owner is left.
async fn owners_leaving_at_once<F, Fut>(leave: F)
where
    F: Fn(service::Pool, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<entity::Member, Error>> + Send + 'static,
{
    for lock_rows in [Some(ORG_MEMBERS), None] {
        let db = TestDb::migrated().await;
        let owners = many_owners(&db).await;
        let leave = leave.clone();
        let results = race(&db, lock_rows, move |conn, i| {
            leave(conn, owners[i].clone())
        })
        .await;
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(Error::LastOwner { .. })))
            .count();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!((won, refused), (RACERS - 1, 1), "{results:?}");
        assert_eq!(owners_left(&db).await, 1);
    }
}

#[tokio::test]
async fn owners_demoting_themselves_all_at_once_leave_exactly_one_owner() {
    owners_leaving_at_once(|conn, user| async move {
        orgs::change_role(&conn, fixtures::ORG_ID, &user, "member").await
    })
    .await;
}

#[tokio::test]
async fn owners_leaving_all_at_once_leave_exactly_one_owner() {
    owners_leaving_at_once(|conn, user| async move {
        orgs::remove_member(&conn, fixtures::ORG_ID, &user).await
    })
    .await;
}

fn in_days(days: i64) -> chrono::DateTime<chrono::FixedOffset> {
    (Utc::now() + Duration::days(days)).fixed_offset()
}

#[tokio::test]
async fn a_second_pending_invitation_for_the_same_email_is_a_conflict() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    // The fixture already invited new@example.com to ORG_ID.
    let again = orgs::create_invitation(
        db.conn(),
        fixtures::ORG_ID,
        "NEW@example.com",
        None,
        fixtures::OWNER_ID,
        in_days(7),
    )
    .await;
    assert!(
        matches!(&again, Err(Error::Conflict { constraint, .. }) if constraint == "uq_invitations_pending_email"),
        "{again:?}"
    );
    let elsewhere = orgs::create_invitation(
        db.conn(),
        fixtures::OTHER_ORG_ID,
        "new@example.com",
        Some("admin"),
        fixtures::OTHER_USER_ID,
        in_days(7),
    )
    .await
    .unwrap();
    assert_eq!(elsewhere.email, "new@example.com");
    // Once the old one expired, a new invitation replaces it.
    db.conn()
        .execute_unprepared(
            "UPDATE invitations SET expires_at = now() - interval '1 s' WHERE id = 'inv_1'",
        )
        .await
        .unwrap();
    let fresh = orgs::create_invitation(
        db.conn(),
        fixtures::ORG_ID,
        "new@example.com",
        None,
        fixtures::OWNER_ID,
        in_days(7),
    )
    .await
    .unwrap();
    assert_eq!(fresh.status, "pending");
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM invitations WHERE id = 'inv_1' AND status = 'canceled'"
        )
        .await,
        1
    );
    assert!(matches!(
        orgs::create_invitation(
            db.conn(),
            fixtures::ORG_ID,
            "x@example.com",
            None,
            fixtures::OWNER_ID,
            in_days(-1)
        )
        .await,
        Err(Error::Validation { .. })
    ));
    assert!(matches!(
        orgs::create_invitation(
            db.conn(),
            fixtures::ORG_ID,
            "not-an-email",
            None,
            fixtures::OWNER_ID,
            in_days(1)
        )
        .await,
        Err(Error::Validation { .. })
    ));
}

async fn invite_new_user(db: &TestDb) -> String {
    db.conn()
        .execute_unprepared(
            "INSERT INTO users (id, name, email) VALUES ('user_new', 'New', 'New@Example.com')",
        )
        .await
        .unwrap();
    "inv_1".to_owned()
}

#[tokio::test]
async fn accepting_makes_a_member_and_only_for_the_invited_email() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let invitation = invite_new_user(&db).await;
    let wrong = orgs::accept_invitation(db.conn(), ORG, &invitation, fixtures::OTHER_USER_ID).await;
    assert!(matches!(wrong, Err(Error::Validation { .. })), "{wrong:?}");
    let (accepted, member) = orgs::accept_invitation(db.conn(), ORG, &invitation, "user_new")
        .await
        .unwrap();
    assert_eq!(accepted.status, "accepted");
    assert_eq!(
        (member.user_id.as_str(), member.role.as_str()),
        ("user_new", "member")
    );
    let twice = orgs::accept_invitation(db.conn(), ORG, &invitation, "user_new").await;
    assert!(
        matches!(&twice, Err(Error::InvalidTransition { from, .. }) if from == "accepted"),
        "{twice:?}"
    );
    assert!(matches!(
        orgs::accept_invitation(db.conn(), ORG, "nope", "user_new").await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        matches!(
            orgs::accept_invitation(db.conn(), fixtures::OTHER_ORG_ID, "inv_1", "user_new").await,
            Err(Error::NotFound { .. })
        ),
        "an invitation is found only in its own organization"
    );
}

#[tokio::test]
async fn an_expired_invitation_cannot_be_accepted() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let invitation = invite_new_user(&db).await;
    db.conn()
        .execute_unprepared("UPDATE invitations SET expires_at = now() - interval '1 s'")
        .await
        .unwrap();
    let late = orgs::accept_invitation(db.conn(), ORG, &invitation, "user_new").await;
    assert!(
        matches!(&late, Err(Error::InvalidTransition { from, .. }) if from == "pending (expired)"),
        "{late:?}"
    );
    assert_eq!(
        orgs::expire_overdue_invitations(db.conn()).await.unwrap(),
        1
    );
    assert_eq!(
        orgs::expire_overdue_invitations(db.conn()).await.unwrap(),
        0,
        "nothing left to expire"
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM members WHERE user_id = 'user_new'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn concurrent_accepts_make_one_member_and_typed_errors_for_the_rest() {
    for lock_rows in [Some(INVITATION), None] {
        let db = TestDb::migrated().await;
        fixtures::seed_everything(db.conn()).await.unwrap();
        let invitation = invite_new_user(&db).await;
        let results = race(&db, lock_rows, move |conn, _| {
            let invitation = invitation.clone();
            async move { orgs::accept_invitation(&conn, ORG, &invitation, "user_new").await }
        })
        .await;
        let refused = results
            .iter()
            .filter(
                |r| matches!(r, Err(Error::InvalidTransition { from, .. }) if from == "accepted"),
            )
            .count();
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!((won, refused), (1, RACERS - 1), "{results:?}");
        assert_eq!(
            scalar(
                db.conn(),
                "SELECT count(*) FROM members WHERE user_id = 'user_new'"
            )
            .await,
            1
        );
    }
}

#[tokio::test]
async fn invitations_are_rejected_canceled_and_listed_by_email() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let other = orgs::create_invitation(
        db.conn(),
        fixtures::OTHER_ORG_ID,
        "new@example.com",
        None,
        fixtures::OTHER_USER_ID,
        in_days(3),
    )
    .await
    .unwrap();
    let pending = orgs::pending_invitations_for_email(db.conn(), "NEW@EXAMPLE.COM")
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        ["inv_1", other.id.as_str()]
    );
    assert_eq!(
        orgs::reject_invitation(db.conn(), ORG, "inv_1")
            .await
            .unwrap()
            .status,
        "rejected"
    );
    assert_eq!(
        orgs::cancel_invitation(db.conn(), fixtures::OTHER_ORG_ID, &other.id)
            .await
            .unwrap()
            .status,
        "canceled"
    );
    let again = orgs::cancel_invitation(db.conn(), ORG, "inv_1").await;
    assert!(
        matches!(&again, Err(Error::InvalidTransition { from, to: "canceled", .. }) if from == "rejected"),
        "{again:?}"
    );
    assert!(
        orgs::pending_invitations_for_email(db.conn(), "new@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        orgs::reject_invitation(db.conn(), ORG, "nope").await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        orgs::reject_invitation(db.conn(), fixtures::OTHER_ORG_ID, "inv_1").await,
        Err(Error::NotFound { .. })
    ));
}
