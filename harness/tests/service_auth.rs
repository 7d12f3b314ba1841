//! service::auth against real PostgreSQL.

use harness::{TestDb, fixtures, scalar};
use sea_orm::ConnectionTrait;
use service::{Error, auth};

#[tokio::test]
async fn users_are_found_by_id_and_by_email_in_any_case() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let owner = auth::find_user(db.conn(), fixtures::OWNER_ID)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(owner.email, "owner@example.com");
    let by_email = auth::find_user_by_email(db.conn(), "OWNER@Example.COM")
        .await
        .unwrap();
    assert_eq!(by_email, Some(owner));
    assert_eq!(auth::find_user(db.conn(), "nobody").await.unwrap(), None);
    assert_eq!(
        auth::find_user_by_email(db.conn(), "nobody@example.com")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_user_comes_with_accounts_but_without_their_secrets() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO accounts (id, account_id, provider_id, user_id, access_token, refresh_token)
             VALUES ('acct_gh', '42', 'github', '{}', 'gho_plaintextsecret', 'ghr_refreshsecret')",
            fixtures::OWNER_ID
        ))
        .await
        .unwrap();
    let (user, accounts) = auth::user_with_accounts(db.conn(), fixtures::OWNER_ID)
        .await
        .unwrap();
    assert_eq!(user.id, fixtures::OWNER_ID);
    let providers: Vec<(&str, bool)> = accounts
        .iter()
        .map(|a| (a.provider_id.as_str(), a.has_password))
        .collect();
    assert_eq!(providers, [("credential", true), ("github", false)]);
    let shown = format!("{accounts:?}{}", serde_json_string(&accounts));
    for secret in ["gho_plaintextsecret", "ghr_refreshsecret", "scrypt:hash"] {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
    let (_, none) = auth::user_with_accounts(db.conn(), fixtures::OTHER_USER_ID)
        .await
        .unwrap();
    assert!(none.is_empty());
    assert!(matches!(
        auth::user_with_accounts(db.conn(), "nobody").await,
        Err(Error::NotFound { entity: "user", .. })
    ));
}

fn serde_json_string(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).unwrap()
}

#[tokio::test]
async fn a_valid_session_comes_with_its_user_and_expired_ones_do_not() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let found = auth::valid_session(db.conn(), "tok_owner")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.session.id, "sess_owner");
    assert_eq!(found.user.id, fixtures::OWNER_ID);
    assert_eq!(
        found.session.active_organization_id.as_deref(),
        Some(fixtures::ORG_ID)
    );
    assert!(
        !serde_json_string(&found).contains("tok_owner"),
        "the token is not returned"
    );
    db.conn()
        .execute_unprepared(
            "UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = 'sess_owner'",
        )
        .await
        .unwrap();
    assert_eq!(
        auth::valid_session(db.conn(), "tok_owner").await.unwrap(),
        None
    );
    assert_eq!(
        auth::valid_session(db.conn(), "unknown").await.unwrap(),
        None
    );
}

#[tokio::test]
async fn sessions_are_listed_and_revoked() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let owner = fixtures::OWNER_ID;
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO sessions (id, expires_at, token, user_id) VALUES
                 ('sess_2', now() + interval '1 day', 'tok_2', '{owner}'),
                 ('sess_3', now() + interval '1 day', 'tok_3', '{owner}'),
                 ('sess_old', now() - interval '1 day', 'tok_old', '{owner}')"
        ))
        .await
        .unwrap();
    let listed = auth::list_sessions(db.conn(), owner).await.unwrap();
    assert_eq!(listed.len(), 3, "expired sessions are not listed");
    auth::revoke_session(db.conn(), owner, "sess_2")
        .await
        .unwrap();
    assert!(matches!(
        auth::revoke_session(db.conn(), owner, "sess_2").await,
        Err(Error::NotFound {
            entity: "session",
            ..
        })
    ));
    assert!(
        matches!(
            auth::revoke_session(db.conn(), owner, "sess_other").await,
            Err(Error::NotFound { .. })
        ),
        "a user cannot revoke another user's session"
    );
    let revoked = auth::revoke_sessions(db.conn(), owner, Some("sess_owner"))
        .await
        .unwrap();
    assert_eq!(revoked, 2, "sess_3 and the expired one");
    let left: Vec<String> = auth::list_sessions(db.conn(), owner)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, ["sess_owner"]);
    assert_eq!(
        auth::revoke_sessions(db.conn(), owner, None).await.unwrap(),
        1
    );
}

#[tokio::test]
async fn expired_sessions_and_verifications_are_deleted_in_bulk() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO sessions (id, expires_at, token, user_id)
             SELECT 'old_' || g, now() - interval '1 hour', 'tok_old_' || g, '{}' FROM generate_series(1, 5) g;
             INSERT INTO verifications (id, identifier, value, expires_at)
             SELECT 'v_' || g, 'x', 'y', now() - interval '1 minute' FROM generate_series(1, 3) g;",
            fixtures::OWNER_ID
        ))
        .await
        .unwrap();
    assert_eq!(auth::delete_expired_sessions(db.conn()).await.unwrap(), 5);
    assert_eq!(
        auth::delete_expired_verifications(db.conn()).await.unwrap(),
        3
    );
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM sessions").await, 2);
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM verifications").await,
        1
    );
    assert_eq!(auth::delete_expired_sessions(db.conn()).await.unwrap(), 0);
}

#[tokio::test]
async fn a_verification_is_consumed_once_even_when_raced() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    assert!(matches!(
        auth::consume_verification(db.conn(), "owner@example.com", "wrong").await,
        Err(Error::NotFound {
            entity: "verification",
            ..
        })
    ));
    let results = harness::on_separate_connections(db.url(), 8, |conn, _| async move {
        auth::consume_verification(&conn, "owner@example.com", "code").await
    })
    .await;
    let mut consumed = 0;
    for result in results {
        match result {
            Ok(v) => {
                consumed += 1;
                assert_eq!(v.identifier, "owner@example.com");
            }
            Err(Error::NotFound { .. }) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(consumed, 1);
    db.conn()
        .execute_unprepared("INSERT INTO verifications (id, identifier, value, expires_at) VALUES ('late', 'i', 'v', now() - interval '1 s')")
        .await
        .unwrap();
    let expired = auth::consume_verification(db.conn(), "i", "v").await;
    assert!(
        // The key is masked: an identifier can hold a reset token (`reset-password:<token>`).
        matches!(&expired, Err(Error::NotFound { entity: "verification", key }) if key == "****"),
        "expired ones are refused as not found, without echoing the identifier: {expired:?}"
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM verifications WHERE id = 'late'"
        )
        .await,
        1,
        "and stay for delete_expired_verifications"
    );
}
