//! service::integrations against real PostgreSQL; tokens only as ciphertext.

use entity::enums::{GithubAccountType, RepositorySelection};
use harness::{TestDb, fixtures, scalar};
use serde_json::json;
use service::{
    EncryptedToken, Error,
    integrations::{self, GithubInstallationInput, LinearConnectionInput, SlackConnectionInput},
};

fn installation(org: &str, login: &str) -> GithubInstallationInput {
    GithubInstallationInput {
        organization_id: org.to_owned(),
        installation_id: 777,
        account_login: login.to_owned(),
        account_type: GithubAccountType::Organization,
        repository_selection: RepositorySelection::Selected,
        permissions: json!({ "issues": "write" }),
        events: vec!["issues".into(), "pull_request".into()],
        installed_by_user_id: Some(fixtures::OWNER_ID.to_owned()),
    }
}

#[tokio::test]
async fn a_github_installation_is_upserted_suspended_and_removed() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let created =
        integrations::upsert_github_installation(db.conn(), installation(fixtures::ORG_ID, "acme"))
            .await
            .unwrap();
    assert_eq!(created.events, ["issues", "pull_request"]);
    let mut renamed = installation(fixtures::ORG_ID, "acme-renamed");
    renamed.installed_by_user_id = None;
    let updated = integrations::upsert_github_installation(db.conn(), renamed)
        .await
        .unwrap();
    assert_eq!(
        (updated.id, updated.account_login.as_str()),
        (created.id, "acme-renamed")
    );
    assert_eq!(
        updated.installed_by_user_id.as_deref(),
        Some(fixtures::OWNER_ID),
        "kept when not given"
    );
    let suspended = integrations::suspend_github_installation(db.conn(), 777)
        .await
        .unwrap();
    let first_suspension = suspended.suspended_at.unwrap();
    let again = integrations::suspend_github_installation(db.conn(), 777)
        .await
        .unwrap();
    assert_eq!(
        again.suspended_at,
        Some(first_suspension),
        "the first suspension time stays"
    );
    assert_eq!(
        integrations::unsuspend_github_installation(db.conn(), 777)
            .await
            .unwrap()
            .suspended_at,
        None
    );
    let found = integrations::find_github_installation(db.conn(), 777)
        .await
        .unwrap();
    assert_eq!(
        found.map(|i| (i.id, i.account_login)),
        Some((created.id, "acme-renamed".to_owned()))
    );
    integrations::remove_github_installation(db.conn(), 777)
        .await
        .unwrap();
    assert_eq!(
        integrations::find_github_installation(db.conn(), 777)
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        integrations::remove_github_installation(db.conn(), 777).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        integrations::suspend_github_installation(db.conn(), 1).await,
        Err(Error::NotFound { .. })
    ));
    let mut bad = installation("org_missing", "x");
    bad.installation_id = 778;
    assert!(matches!(
        integrations::upsert_github_installation(db.conn(), bad).await,
        Err(Error::MissingReference { .. })
    ));
    let mut negative = installation(fixtures::ORG_ID, "x");
    negative.installation_id = -1;
    assert!(matches!(
        integrations::upsert_github_installation(db.conn(), negative).await,
        Err(Error::Validation { .. })
    ));
}

#[test]
fn an_encrypted_token_refuses_plaintext_and_hides_itself() {
    for plaintext in [
        "xoxb-123-456-abc",
        "lin_api_abcdef",
        "ghs_abcdef",
        "github_pat_x",
        "  ",
    ] {
        let refused = EncryptedToken::from_ciphertext(plaintext.to_owned());
        assert!(
            matches!(&refused, Err(Error::Validation { .. })),
            "{plaintext}"
        );
        assert!(
            !refused.unwrap_err().to_string().contains(plaintext.trim())
                || plaintext.trim().is_empty()
        );
    }
    let token = EncryptedToken::from_ciphertext("v1:AAECAwQF".to_owned()).unwrap();
    assert_eq!(format!("{token:?}"), "EncryptedToken(****)");
    assert_eq!(token.ciphertext(), "v1:AAECAwQF");
}

fn slack_input(team_name: &str, ciphertext: &str) -> SlackConnectionInput {
    SlackConnectionInput {
        organization_id: fixtures::OTHER_ORG_ID.to_owned(),
        installed_by_user_id: Some(fixtures::OTHER_USER_ID.to_owned()),
        team_id: "T9".to_owned(),
        team_name: team_name.to_owned(),
        bot_user_id: Some("U_BOT".to_owned()),
        access_token: EncryptedToken::from_ciphertext(ciphertext.to_owned()).unwrap(),
        scopes: vec!["chat:write".into()],
    }
}

#[tokio::test]
async fn slack_connections_upsert_deactivate_and_resolve_by_team() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let created = integrations::upsert_slack_connection(db.conn(), slack_input("Other", "v1:one"))
        .await
        .unwrap();
    assert_eq!(created.access_token_encrypted, "v1:one");
    let other = fixtures::OTHER_ORG_ID;
    let deactivated = integrations::deactivate_slack_connection(db.conn(), other, created.id)
        .await
        .unwrap();
    assert!(!deactivated.is_active);
    assert_eq!(
        integrations::active_slack_connection(db.conn(), "T9")
            .await
            .unwrap(),
        None
    );
    let reinstalled =
        integrations::upsert_slack_connection(db.conn(), slack_input("Other Co", "v1:two"))
            .await
            .unwrap();
    assert_eq!(
        reinstalled.id, created.id,
        "same organization and team: same row"
    );
    assert!(reinstalled.is_active);
    let found = integrations::active_slack_connection(db.conn(), "T9")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            found.team_name.as_str(),
            found.access_token_encrypted.as_str()
        ),
        ("Other Co", "v1:two")
    );
    let fixture = integrations::active_slack_connection(db.conn(), "T1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(fixture.id.to_string(), fixtures::SLACK_CONNECTION_ID);
    assert!(matches!(
        integrations::deactivate_slack_connection(db.conn(), other, uuid::Uuid::new_v4()).await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        matches!(
            integrations::deactivate_slack_connection(db.conn(), other, fixture.id).await,
            Err(Error::NotFound { .. })
        ),
        "another organization's connection is not found"
    );
}

#[tokio::test]
async fn linear_connections_upsert_deactivate_and_resolve_by_workspace() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let input = |name: &str| LinearConnectionInput {
        organization_id: fixtures::OTHER_ORG_ID.to_owned(),
        installed_by_user_id: None,
        linear_organization_id: "lin_9".to_owned(),
        linear_organization_name: name.to_owned(),
        access_token: EncryptedToken::from_ciphertext("v1:access".into()).unwrap(),
        refresh_token: Some(EncryptedToken::from_ciphertext("v1:refresh".into()).unwrap()),
        token_expires_at: None,
        scopes: vec!["read".into(), "write".into()],
    };
    let created = integrations::upsert_linear_connection(db.conn(), input("Other"))
        .await
        .unwrap();
    assert_eq!(
        created.refresh_token_encrypted.as_deref(),
        Some("v1:refresh")
    );
    integrations::deactivate_linear_connection(db.conn(), fixtures::OTHER_ORG_ID, created.id)
        .await
        .unwrap();
    assert_eq!(
        integrations::active_linear_connection(db.conn(), "lin_9")
            .await
            .unwrap(),
        None
    );
    let back = integrations::upsert_linear_connection(db.conn(), input("Other Inc"))
        .await
        .unwrap();
    assert_eq!((back.id, back.is_active), (created.id, true));
    assert_eq!(
        integrations::active_linear_connection(db.conn(), "lin_9")
            .await
            .unwrap()
            .unwrap()
            .linear_organization_name,
        "Other Inc"
    );
    assert_eq!(
        scalar(db.conn(), "SELECT count(*) FROM linear_connections").await,
        2
    );
}

async fn route(db: &TestDb, provider: &str, external_id: &str) -> Option<(String, String)> {
    harness::text_rows(
        db.conn(),
        &format!(
            "SELECT organization_id, connection_id::text FROM webhook_routes
             WHERE provider = '{provider}' AND external_id = '{external_id}'"
        ),
    )
    .await
    .into_iter()
    .next()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
}

#[tokio::test]
async fn a_teams_route_follows_its_latest_active_connection_and_goes_when_none_is_left() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let (acme, other) = (fixtures::ORG_ID, fixtures::OTHER_ORG_ID);
    // Team T1 is routed to the fixture's connection of ACME; another organization connects it.
    let mut input = slack_input("Shared", "v1:one");
    input.team_id = "T1".into();
    let theirs = integrations::upsert_slack_connection(db.conn(), input)
        .await
        .unwrap();
    assert_eq!(
        route(&db, "slack", "T1").await,
        Some((other.to_owned(), theirs.id.to_string())),
        "the latest connection receives the team's webhooks"
    );
    // ACME's connection goes: the route, not pointing at it, stays.
    let acme_connection: uuid::Uuid = fixtures::SLACK_CONNECTION_ID.parse().unwrap();
    integrations::deactivate_slack_connection(db.conn(), acme, acme_connection)
        .await
        .unwrap();
    assert_eq!(
        route(&db, "slack", "T1").await,
        Some((other.to_owned(), theirs.id.to_string()))
    );
    // ACME reconnects (latest again), then the other organization's connection goes too.
    let mut again = slack_input("Acme", "v1:two");
    again.team_id = "T1".into();
    again.organization_id = acme.into();
    integrations::upsert_slack_connection(db.conn(), again)
        .await
        .unwrap();
    assert_eq!(
        route(&db, "slack", "T1").await.map(|r| r.0).as_deref(),
        Some(acme)
    );
    integrations::deactivate_slack_connection(db.conn(), acme, acme_connection)
        .await
        .unwrap();
    assert_eq!(
        route(&db, "slack", "T1").await,
        Some((other.to_owned(), theirs.id.to_string())),
        "moved to the other active connection"
    );
    assert_eq!(
        integrations::active_slack_connection(db.conn(), "T1")
            .await
            .unwrap()
            .map(|c| c.id),
        Some(theirs.id)
    );
    integrations::deactivate_slack_connection(db.conn(), other, theirs.id)
        .await
        .unwrap();
    assert_eq!(
        route(&db, "slack", "T1").await,
        None,
        "no active connection left"
    );
    assert_eq!(
        integrations::active_slack_connection(db.conn(), "T1")
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_linear_workspaces_route_follows_its_connections_too() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    assert_eq!(
        route(&db, "linear", "lin_1").await.map(|r| r.0).as_deref(),
        Some(fixtures::ORG_ID)
    );
    let theirs = integrations::upsert_linear_connection(
        db.conn(),
        LinearConnectionInput {
            organization_id: fixtures::OTHER_ORG_ID.to_owned(),
            installed_by_user_id: None,
            linear_organization_id: "lin_1".to_owned(),
            linear_organization_name: "Shared".to_owned(),
            access_token: EncryptedToken::from_ciphertext("v1:access".into()).unwrap(),
            refresh_token: None,
            token_expires_at: None,
            scopes: vec![],
        },
    )
    .await
    .unwrap();
    assert_eq!(
        route(&db, "linear", "lin_1").await,
        Some((fixtures::OTHER_ORG_ID.to_owned(), theirs.id.to_string()))
    );
    integrations::deactivate_linear_connection(db.conn(), fixtures::OTHER_ORG_ID, theirs.id)
        .await
        .unwrap();
    assert_eq!(
        route(&db, "linear", "lin_1").await,
        Some((
            fixtures::ORG_ID.to_owned(),
            fixtures::LINEAR_CONNECTION_ID.to_owned()
        )),
        "back to the fixture's connection"
    );
    assert_eq!(
        integrations::active_linear_connection(db.conn(), "lin_1")
            .await
            .unwrap()
            .map(|c| c.id.to_string())
            .as_deref(),
        Some(fixtures::LINEAR_CONNECTION_ID)
    );
}

#[tokio::test]
async fn a_github_installation_moves_to_the_organization_that_upserts_it_with_its_route() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let first =
        integrations::upsert_github_installation(db.conn(), installation(fixtures::ORG_ID, "acme"))
            .await
            .unwrap();
    assert_eq!(
        route(&db, "github", "777").await,
        Some((fixtures::ORG_ID.to_owned(), first.id.to_string()))
    );
    let mut moved = installation(fixtures::OTHER_ORG_ID, "acme");
    moved.installed_by_user_id = None;
    let second = integrations::upsert_github_installation(db.conn(), moved)
        .await
        .unwrap();
    assert_eq!(second.organization_id, fixtures::OTHER_ORG_ID);
    assert_eq!(
        second.installed_by_user_id.as_deref(),
        Some(fixtures::OWNER_ID),
        "who installed it is kept across the move"
    );
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM github_installations WHERE installation_id = 777"
        )
        .await,
        1,
        "one row, in its new organization"
    );
    assert_eq!(
        route(&db, "github", "777").await,
        Some((fixtures::OTHER_ORG_ID.to_owned(), second.id.to_string()))
    );
    let found = integrations::find_github_installation(db.conn(), 777)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.organization_id, fixtures::OTHER_ORG_ID);
    integrations::remove_github_installation(db.conn(), 777)
        .await
        .unwrap();
    assert_eq!(
        route(&db, "github", "777").await,
        None,
        "the route goes with it"
    );
    assert!(
        route(&db, "github", "4242").await.is_some(),
        "the fixture's installation keeps its route"
    );
}
