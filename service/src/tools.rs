//! The tool catalog and each user's switches and settings for it. Writers set `updated_at`
//! (an upsert's is the inserted row's default, `EXCLUDED.updated_at`: Citus refuses `now()` in
//! `DO UPDATE SET`).

use std::collections::HashSet;

use entity::{Tool, UserTool, enums::ToolProvider, tools, user_tools};
use sea_orm::{
    ConnectionTrait, FromQueryResult,
    prelude::{Json, Uuid},
};
use serde::Serialize;

use crate::{
    Error,
    sql::{self, columns, select_list},
};

/// A catalog entry, as seeded by the services that provide tools.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    /// The stable slug (`github_search`).
    pub name: String,
    pub display_name: String,
    pub description: String,
    pub provider: ToolProvider,
    pub input_schema: Json,
    pub tags: Vec<String>,
}

/// Creates or updates catalog entries by `name`, all in one statement, and returns them in the
/// order given. An update leaves `is_enabled` alone, so re-seeding never re-enables a tool an
/// operator switched off.
pub async fn upsert_tools(
    db: &impl ConnectionTrait,
    specs: &[ToolSpec],
) -> Result<Vec<Tool>, Error> {
    let mut seen = HashSet::new();
    for spec in specs {
        if spec.name.trim().is_empty() {
            return Err(Error::invalid("tool name", "it is empty"));
        }
        if !seen.insert(spec.name.as_str()) {
            return Err(Error::invalid(
                "tool name",
                format!("`{}` is given twice", spec.name),
            ));
        }
    }
    if specs.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<String> = specs.iter().map(|s| s.name.clone()).collect();
    let display: Vec<String> = specs.iter().map(|s| s.display_name.clone()).collect();
    let descriptions: Vec<String> = specs.iter().map(|s| s.description.clone()).collect();
    let providers: Vec<String> = specs
        .iter()
        .map(|s| s.provider.as_str().to_owned())
        .collect();
    let schemas: Vec<Json> = specs.iter().map(|s| s.input_schema.clone()).collect();
    // Tags are a list per row; unnest would flatten a text[][], so they travel as JSON arrays.
    let tags: Vec<Json> = specs.iter().map(|s| Json::from(s.tags.clone())).collect();
    let mut rows: Vec<Tool> = sql::all(
        db,
        &format!(
            "INSERT INTO tools (name, display_name, description, provider, input_schema, tags)
         SELECT n, d, descr, p, s, ARRAY(SELECT jsonb_array_elements_text(t))
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::jsonb[], $6::jsonb[])
              AS x(n, d, descr, p, s, t)
         ON CONFLICT (name) DO UPDATE SET
             display_name = EXCLUDED.display_name,
             description = EXCLUDED.description,
             provider = EXCLUDED.provider,
             input_schema = EXCLUDED.input_schema,
             tags = EXCLUDED.tags,
             updated_at = EXCLUDED.updated_at
         RETURNING {}",
            columns::<tools::Entity>(None)
        ),
        [
            names.into(),
            display.into(),
            descriptions.into(),
            providers.into(),
            schemas.into(),
            tags.into(),
        ],
    )
    .await?;
    let order: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    rows.sort_by_key(|tool| order.iter().position(|n| *n == tool.name));
    Ok(rows)
}

/// Switches a catalog tool on or off for everyone.
pub async fn set_tool_enabled(
    db: &impl ConnectionTrait,
    name: &str,
    enabled: bool,
) -> Result<Tool, Error> {
    sql::one(
        db,
        &format!(
            "UPDATE tools SET is_enabled = $2, updated_at = now() WHERE name = $1 RETURNING {}",
            columns::<tools::Entity>(None)
        ),
        [name.into(), enabled.into()],
    )
    .await?
    .ok_or_else(|| Error::not_found("tool", name))
}

/// What to change in a user's settings for a tool; `None` keeps what is stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserToolSettings {
    pub enabled: Option<bool>,
    pub config: Option<Json>,
}

/// Creates or updates the user's settings for a tool, in one statement. Unknown user or tool:
/// [`Error::MissingReference`].
pub async fn set_user_tool(
    db: &impl ConnectionTrait,
    user_id: &str,
    tool_id: Uuid,
    settings: UserToolSettings,
) -> Result<UserTool, Error> {
    if settings.config.as_ref().is_some_and(|c| !c.is_object()) {
        return Err(Error::invalid("config", "it must be a JSON object"));
    }
    let row = sql::one(
        db,
        &format!(
            "INSERT INTO user_tools (user_id, tool_id, is_enabled, config)
         VALUES ($1, $2, COALESCE($3, true), COALESCE($4, '{{}}'::jsonb))
         ON CONFLICT (user_id, tool_id) DO UPDATE SET
             is_enabled = COALESCE($3, user_tools.is_enabled),
             config = COALESCE($4, user_tools.config),
             updated_at = EXCLUDED.updated_at
         RETURNING {}",
            columns::<user_tools::Entity>(None)
        ),
        [
            user_id.into(),
            tool_id.into(),
            settings.enabled.into(),
            settings.config.into(),
        ],
    )
    .await?;
    Ok(row.expect("INSERT ... ON CONFLICT DO UPDATE returns its row"))
}

/// A tool a user can call, with their configuration for it (`{}` if they set none).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EffectiveTool {
    pub tool: Tool,
    pub config: Json,
}

/// The tools the user can call: enabled in the catalog and not switched off by the user, by
/// name, with the user's configuration, in one query.
pub async fn effective_tools(
    db: &impl ConnectionTrait,
    user_id: &str,
) -> Result<Vec<EffectiveTool>, Error> {
    let sql = format!(
        "SELECT {}, COALESCE(ut.config, '{{}}'::jsonb) AS user_config
         FROM tools t LEFT JOIN user_tools ut ON ut.tool_id = t.id AND ut.user_id = $1
         WHERE t.is_enabled AND COALESCE(ut.is_enabled, true)
         ORDER BY t.name",
        select_list::<tools::Entity>("t", "t_")
    );
    let rows = db
        .query_all_raw(sql::statement(&sql, [user_id.into()]))
        .await?;
    rows.iter()
        .map(|row| {
            Ok(EffectiveTool {
                tool: Tool::from_query_result(row, "t_")?,
                config: row.try_get("", "user_config")?,
            })
        })
        .collect()
}
