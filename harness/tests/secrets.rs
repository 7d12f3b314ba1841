//! The one secret rule (`db_connect::secrets`) over the live schema, and what it guarantees
//! for the typed rows: no entity model serialises a secret column, and no model's `Debug`
//! prints one or a secret inside its JSON.

use std::collections::BTreeSet;

use catalog::{Catalog, Column, Table};
use db_connect::secrets::{REDACTED, is_secret_column};
use harness::{TestDb, fixtures::*};
use sea_orm::{ConnectionTrait, EntityTrait};
use serde::Serialize;

/// Every secret column of the migrated schema, as the rule decides from the catalog. A rule
/// change, or a migration adding a column the rule calls secret, shows up here.
#[tokio::test]
async fn the_secret_columns_of_the_schema_are_exactly_these() {
    let db = TestDb::migrated().await;
    let catalog = Catalog::load(db.conn()).await.unwrap();
    let secret: BTreeSet<String> = catalog
        .tables
        .iter()
        .flat_map(|t| t.columns.iter().map(move |c| (t, c)))
        .filter(|(t, c)| is_secret_column(&t.name, &c.name))
        .map(|(t, c)| format!("{}.{}", t.name, c.name))
        .collect();
    let expected: BTreeSet<String> = [
        "accounts.access_token",
        "accounts.id_token",
        "accounts.password",
        "accounts.refresh_token",
        "linear_connections.access_token_encrypted",
        "linear_connections.refresh_token_encrypted",
        "sessions.token",
        "slack_connections.access_token_encrypted",
        "two_factors.backup_codes",
        "two_factors.secret",
        "verifications.identifier",
        "verifications.value",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    assert_eq!(secret, expected);
}

/// `text` (an SQL expression of type text) as a value of `column`'s type.
fn as_type(column: &Column, text: &str) -> String {
    match (column.type_name.as_str(), column.is_array) {
        (_, true) => format!("ARRAY[{text}]::{}", column.sql_type),
        ("jsonb" | "json", false) => format!("to_jsonb({text})::{}", column.sql_type),
        _ => format!("({text})::{}", column.sql_type),
    }
}

/// `external_id` -> `externalId`, as the entities serialise a column.
fn camel(column: &str) -> String {
    let mut words = column.split('_');
    let first = words.next().unwrap_or_default().to_owned();
    words.fold(first, |mut out, word| {
        let mut chars = word.chars();
        out.extend(chars.next().map(|c| c.to_ascii_uppercase()));
        out.push_str(chars.as_str());
        out
    })
}

fn is_json(column: &Column) -> bool {
    matches!(column.type_name.as_str(), "jsonb" | "json") && !column.is_array
}

/// Each row of entity `E` as `serde_json::to_string` and `format!("{:?}")` give it.
async fn printed<E>(db: &impl ConnectionTrait) -> (String, Vec<(String, String)>)
where
    E: EntityTrait + Default,
    E::Model: Serialize,
{
    let rows = E::find().all(db).await.unwrap();
    let printed = rows
        .iter()
        .map(|row| (serde_json::to_string(row).unwrap(), format!("{row:?}")))
        .collect();
    (E::default().table_name().to_owned(), printed)
}

macro_rules! printed_models {
    ($db:expr, $($entity:ident),+ $(,)?) => {
        vec![$(printed::<entity::$entity::Entity>($db).await),+]
    };
}

/// A sentinel in every secret column of every table (found by the rule over the live catalog)
/// and under a secret key in every JSON column: no model's JSON carries a secret column, no
/// model's `Debug` shows either, and both still carry the rest of the row.
#[tokio::test]
async fn no_model_serialises_or_debug_prints_a_secret() {
    let db = TestDb::migrated().await;
    seed_everything(db.conn()).await.unwrap();
    let catalog = Catalog::load(db.conn()).await.unwrap();
    let mut secret_columns = 0;
    for table in &catalog.tables {
        let mut set = Vec::new();
        for column in &table.columns {
            let name = &column.name;
            if is_secret_column(&table.name, name) {
                secret_columns += 1;
                // Unique per row: some secret columns are unique keys.
                let sentinel = format!(
                    "'reset-password:COLUMNSENTINEL{}x{name}-' || md5(ctid::text)",
                    table.name
                );
                set.push(format!("\"{name}\" = {}", as_type(column, &sentinel)));
            } else if is_json(column) {
                set.push(format!(
                    "\"{name}\" = jsonb_build_object('token', 'JSONSENTINEL', 'data',
                         jsonb_build_array(jsonb_build_object('apiKey', 'JSONSENTINEL')))"
                ));
            }
        }
        if !set.is_empty() {
            let sql = format!("UPDATE \"{}\" SET {}", table.name, set.join(", "));
            db.conn().execute_unprepared(&sql).await.unwrap();
        }
    }
    assert!(secret_columns >= 12, "only {secret_columns} secret columns");

    let printed = printed_models!(
        db.conn(),
        accounts,
        agent_runs,
        github_installations,
        invitations,
        linear_connections,
        linear_events,
        members,
        organizations,
        sessions,
        slack_connections,
        slack_events,
        tool_calls,
        tools,
        two_factors,
        unrouted_events,
        user_tools,
        users,
        verifications,
        webhook_routes,
    );
    let checked: BTreeSet<&str> = printed.iter().map(|(t, _)| t.as_str()).collect();
    let tables: BTreeSet<&str> = catalog
        .tables
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| *name != catalog::MIGRATIONS_TABLE)
        .collect();
    assert_eq!(checked, tables, "every table's model is checked");
    for (table, rows) in &printed {
        assert!(!rows.is_empty(), "{table} has no seeded row to check");
        let schema: &Table = catalog.table(table).unwrap();
        for (json, debug) in rows {
            assert!(
                !json.contains("COLUMNSENTINEL"),
                "{table} serialises a secret: {json}"
            );
            assert!(
                !debug.contains("COLUMNSENTINEL"),
                "{table} prints a secret: {debug}"
            );
            assert!(
                !debug.contains("JSONSENTINEL"),
                "{table} prints JSON secrets: {debug}"
            );
            for key in &schema.primary_key {
                assert!(
                    json.contains(&format!("\"{}\":", camel(key))),
                    "{table}.{key}: {json}"
                );
            }
            for column in &schema.columns {
                if is_json(column) {
                    assert!(debug.contains(REDACTED), "{table}.{}: {debug}", column.name);
                }
            }
        }
    }
    let verification = &printed
        .iter()
        .find(|(t, _)| t == "verifications")
        .unwrap()
        .1[0]
        .1;
    assert!(
        verification.contains("identifier: reset-password:****"),
        "what a verification is for stays readable: {verification}"
    );
}

/// Better Auth's reset tokens live in `verifications.identifier`: neither the `NotFound` of a
/// wrong one nor a consumed verification's `Debug` or JSON may echo it.
#[tokio::test]
async fn service_auth_never_echoes_a_verification_identifier() {
    let db = TestDb::migrated().await;
    seed_everything(db.conn()).await.unwrap();
    let err = service::auth::consume_verification(db.conn(), "reset-password:TOKEN5e1a", "x")
        .await
        .unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("TOKEN5e1a"), "{shown}");
    assert!(
        shown.contains("reset-password:"),
        "it still says which kind: {shown}"
    );
    db.conn()
        .execute_unprepared(&format!(
            "INSERT INTO verifications (id, identifier, value, expires_at) VALUES
             ('reset', 'reset-password:TOKEN7c2b', '{OWNER_ID}', now() + interval '1 h')"
        ))
        .await
        .unwrap();
    let consumed =
        service::auth::consume_verification(db.conn(), "reset-password:TOKEN7c2b", OWNER_ID)
            .await
            .unwrap();
    assert_eq!(
        consumed.identifier, "reset-password:TOKEN7c2b",
        "the caller's own value"
    );
    let shown = format!("{consumed:?} {}", serde_json::to_string(&consumed).unwrap());
    assert!(!shown.contains("TOKEN7c2b"), "{shown}");
    assert!(shown.contains("reset-password:****"), "{shown}");
}
