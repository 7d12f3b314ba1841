//! service::tools against real PostgreSQL.

use entity::enums::ToolProvider;
use harness::{TestDb, fixtures};
use serde_json::json;
use service::{
    Error,
    tools::{self, ToolSpec, UserToolSettings},
};

fn spec(name: &str, provider: ToolProvider) -> ToolSpec {
    ToolSpec {
        name: name.to_owned(),
        display_name: name.replace('_', " "),
        description: format!("{name} tool"),
        provider,
        input_schema: json!({ "type": "object" }),
        tags: vec!["seed".into(), provider.as_str().into()],
    }
}

#[tokio::test]
async fn the_catalog_is_seeded_by_name_without_re_enabling_switched_off_tools() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let specs = [
        spec("web_fetch", ToolProvider::Builtin),
        spec("github_search", ToolProvider::Github),
    ];
    let seeded = tools::upsert_tools(db.conn(), &specs).await.unwrap();
    assert_eq!(
        seeded.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(),
        ["web_fetch", "github_search"]
    );
    assert_eq!(seeded[0].tags, ["seed", "builtin"]);
    assert_eq!(
        seeded[1].id.to_string(),
        fixtures::TOOL_ID,
        "an existing name keeps its row"
    );
    assert_eq!(seeded[1].display_name, "github search");
    tools::set_tool_enabled(db.conn(), "web_fetch", false)
        .await
        .unwrap();
    let reseeded = tools::upsert_tools(db.conn(), &specs).await.unwrap();
    assert!(
        !reseeded[0].is_enabled,
        "re-seeding leaves the switch alone"
    );
    let twice = tools::upsert_tools(
        db.conn(),
        &[spec("a", ToolProvider::Mcp), spec("a", ToolProvider::Mcp)],
    )
    .await;
    assert!(matches!(twice, Err(Error::Validation { .. })));
    assert!(
        tools::upsert_tools(db.conn(), &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        tools::set_tool_enabled(db.conn(), "nope", true).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn effective_tools_are_enabled_ones_minus_the_users_switched_off_with_their_config() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let seeded = tools::upsert_tools(
        db.conn(),
        &[
            spec("web_fetch", ToolProvider::Builtin),
            spec("slack_post", ToolProvider::Slack),
            spec("linear_create", ToolProvider::Linear),
        ],
    )
    .await
    .unwrap();
    let user = fixtures::OWNER_ID;
    let names = |tools: &[tools::EffectiveTool]| {
        tools
            .iter()
            .map(|t| t.tool.name.clone())
            .collect::<Vec<_>>()
    };
    let all = tools::effective_tools(db.conn(), user).await.unwrap();
    assert_eq!(
        names(&all),
        ["github_search", "linear_create", "slack_post", "web_fetch"]
    );
    assert!(all.iter().all(|t| t.config == json!({})));

    tools::set_tool_enabled(db.conn(), "linear_create", false)
        .await
        .unwrap();
    tools::set_user_tool(
        db.conn(),
        user,
        seeded[0].id,
        UserToolSettings {
            enabled: Some(false),
            config: None,
        },
    )
    .await
    .unwrap();
    let configured = tools::set_user_tool(
        db.conn(),
        user,
        seeded[1].id,
        UserToolSettings {
            enabled: None,
            config: Some(json!({ "channel": "#ops" })),
        },
    )
    .await
    .unwrap();
    assert!(configured.is_enabled, "no switch given: enabled by default");
    let effective = tools::effective_tools(db.conn(), user).await.unwrap();
    assert_eq!(names(&effective), ["github_search", "slack_post"]);
    assert_eq!(effective[1].config, json!({ "channel": "#ops" }));
    // Changing only the switch keeps the config.
    let off = tools::set_user_tool(
        db.conn(),
        user,
        seeded[1].id,
        UserToolSettings {
            enabled: Some(false),
            config: None,
        },
    )
    .await
    .unwrap();
    assert_eq!(off.config, json!({ "channel": "#ops" }));
    // And changing only the config keeps the switch.
    let reconfigured = tools::set_user_tool(
        db.conn(),
        user,
        seeded[1].id,
        UserToolSettings {
            enabled: None,
            config: Some(json!({ "channel": "#alerts" })),
        },
    )
    .await
    .unwrap();
    assert!(!reconfigured.is_enabled, "still switched off");
    let bad = tools::set_user_tool(
        db.conn(),
        user,
        seeded[1].id,
        UserToolSettings {
            enabled: None,
            config: Some(json!([1])),
        },
    )
    .await;
    assert!(matches!(bad, Err(Error::Validation { .. })));
    let missing = tools::set_user_tool(
        db.conn(),
        "ghost",
        seeded[1].id,
        UserToolSettings::default(),
    )
    .await;
    assert!(matches!(missing, Err(Error::MissingReference { .. })));
}
