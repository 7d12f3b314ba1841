//! The migrated schema, read from `pg_catalog`, against the contract of `docs/schema.md`.
//! The expectations below are written from the contract, not from the migration code.

use std::collections::{BTreeMap, BTreeSet};

use harness::{TestDb, fixtures, scalar, text_rows};
use sea_orm::{ConnectionTrait, DbErr, Statement, TransactionTrait};
use service::{
    Cursor,
    events::{self, EventFilter, SlackEvents},
};

const TS: &str = "timestamp with time zone";

/// `name type [null] [= default]`, with `ts` for timestamptz, `vc32`/`vc128` for varchars.
const COLUMNS: &[(&str, &[&str])] = &[
    (
        "users",
        &[
            "id text",
            "name text",
            "email text",
            "email_verified boolean = false",
            "image text null",
            "two_factor_enabled boolean = false",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "sessions",
        &[
            "id text",
            "expires_at ts",
            "token text",
            "ip_address text null",
            "user_agent text null",
            "user_id text",
            "active_organization_id text null",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "accounts",
        &[
            "id text",
            "account_id text",
            "provider_id text",
            "user_id text",
            "access_token text null",
            "refresh_token text null",
            "id_token text null",
            "access_token_expires_at ts null",
            "refresh_token_expires_at ts null",
            "scope text null",
            "password text null",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "verifications",
        &[
            "id text",
            "identifier text",
            "value text",
            "expires_at ts",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "organizations",
        &[
            "id text",
            "name text",
            "slug text",
            "logo text null",
            "metadata text null",
            "created_at ts = now()",
        ],
    ),
    (
        "members",
        &[
            "id text",
            "organization_id text",
            "user_id text",
            "role text = 'member'::text",
            "created_at ts = now()",
        ],
    ),
    (
        "invitations",
        &[
            "id text",
            "organization_id text",
            "email text",
            "role text null",
            "status vc32 = 'pending'::character varying",
            "expires_at ts",
            "inviter_id text",
            "created_at ts = now()",
        ],
    ),
    (
        "two_factors",
        &[
            "id text",
            "secret text",
            "backup_codes text",
            "user_id text",
            "verified boolean = true",
            "failed_verification_count integer = 0",
            "locked_until ts null",
        ],
    ),
    (
        "github_installations",
        &[
            "id uuid = gen_random_uuid()",
            "organization_id text",
            "installation_id bigint",
            "account_login text",
            "account_type vc32",
            "repository_selection vc32",
            "permissions jsonb = '{}'::jsonb",
            "events text[] = '{}'::text[]",
            "installed_by_user_id text null",
            "suspended_at ts null",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "slack_connections",
        &[
            "id uuid = gen_random_uuid()",
            "organization_id text",
            "installed_by_user_id text null",
            "team_id text",
            "team_name text",
            "bot_user_id text null",
            "access_token_encrypted text",
            "scopes text[] = '{}'::text[]",
            "is_active boolean = true",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "linear_connections",
        &[
            "id uuid = gen_random_uuid()",
            "organization_id text",
            "installed_by_user_id text null",
            "linear_organization_id text",
            "linear_organization_name text",
            "access_token_encrypted text",
            "refresh_token_encrypted text null",
            "token_expires_at ts null",
            "scopes text[] = '{}'::text[]",
            "is_active boolean = true",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "slack_events",
        &[
            "id uuid = gen_random_uuid()",
            "slack_connection_id uuid null",
            "event_id text",
            "event_type vc128",
            "team_id text",
            "channel_id text null",
            "slack_user_id text null",
            "payload jsonb",
            "status vc32 = 'pending'::character varying",
            "attempts integer = 0",
            "last_error text null",
            "processed_at ts null",
            "created_at ts = now()",
            "updated_at ts = now()",
            "due_at ts = now()",
            "organization_id text",
        ],
    ),
    (
        "linear_events",
        &[
            "id uuid = gen_random_uuid()",
            "linear_connection_id uuid null",
            "event_id text",
            "event_type vc128",
            "action vc32",
            "linear_organization_id text",
            "payload jsonb",
            "status vc32 = 'pending'::character varying",
            "attempts integer = 0",
            "last_error text null",
            "processed_at ts null",
            "created_at ts = now()",
            "updated_at ts = now()",
            "due_at ts = now()",
            "organization_id text",
        ],
    ),
    (
        "agent_runs",
        &[
            "id uuid = gen_random_uuid()",
            "organization_id text",
            "user_id text null",
            "trigger_source vc32",
            "slack_event_id uuid null",
            "linear_event_id uuid null",
            "status vc32 = 'queued'::character varying",
            "model vc128",
            "input jsonb = '{}'::jsonb",
            "output jsonb null",
            "error text null",
            "prompt_tokens integer = 0",
            "completion_tokens integer = 0",
            "started_at ts null",
            "completed_at ts null",
            "created_at ts = now()",
            "updated_at ts = now()",
            "next_tool_call_sequence integer = 0",
        ],
    ),
    (
        "tool_calls",
        &[
            "id uuid = gen_random_uuid()",
            "agent_run_id uuid",
            "tool_id uuid null",
            "tool_name vc128",
            "sequence integer",
            "input jsonb = '{}'::jsonb",
            "output jsonb null",
            "status vc32 = 'pending'::character varying",
            "error text null",
            "duration_ms integer null",
            "started_at ts null",
            "completed_at ts null",
            "created_at ts = now()",
            "updated_at ts = now()",
            "organization_id text",
        ],
    ),
    (
        "tools",
        &[
            "id uuid = gen_random_uuid()",
            "name vc128",
            "display_name text",
            "description text = ''::text",
            "provider vc32",
            "input_schema jsonb = '{}'::jsonb",
            "tags text[] = '{}'::text[]",
            "is_enabled boolean = true",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "user_tools",
        &[
            "id uuid = gen_random_uuid()",
            "user_id text",
            "tool_id uuid",
            "is_enabled boolean = true",
            "config jsonb = '{}'::jsonb",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "webhook_routes",
        &[
            "provider vc32",
            "external_id text",
            "organization_id text",
            "connection_id uuid",
            "created_at ts = now()",
            "updated_at ts = now()",
        ],
    ),
    (
        "unrouted_events",
        &[
            "id uuid = gen_random_uuid()",
            "provider vc32",
            "event_id text",
            "external_id text",
            "event_type vc128",
            "payload jsonb",
            "created_at ts = now()",
        ],
    ),
];

/// The tables Citus distributes by `organization_id`: their primary keys lead with it.
const TENANT_TABLES: &[&str] = &[
    "members",
    "invitations",
    "github_installations",
    "slack_connections",
    "linear_connections",
    "slack_events",
    "linear_events",
    "agent_runs",
    "tool_calls",
];

/// (table, columns, referenced table, ON DELETE); keys between two tenant tables hold the
/// organization too (docs/schema.md, "Deviations").
const FOREIGN_KEYS: &[(&str, &str, &str, &str)] = &[
    ("sessions", "user_id", "users", "CASCADE"),
    (
        "sessions",
        "active_organization_id",
        "organizations",
        "SET NULL",
    ),
    ("accounts", "user_id", "users", "CASCADE"),
    ("members", "organization_id", "organizations", "CASCADE"),
    ("members", "user_id", "users", "CASCADE"),
    ("invitations", "organization_id", "organizations", "CASCADE"),
    ("invitations", "inviter_id", "users", "CASCADE"),
    ("two_factors", "user_id", "users", "CASCADE"),
    (
        "github_installations",
        "organization_id",
        "organizations",
        "CASCADE",
    ),
    (
        "github_installations",
        "installed_by_user_id",
        "users",
        "SET NULL",
    ),
    (
        "slack_connections",
        "organization_id",
        "organizations",
        "CASCADE",
    ),
    (
        "slack_connections",
        "installed_by_user_id",
        "users",
        "SET NULL",
    ),
    (
        "linear_connections",
        "organization_id",
        "organizations",
        "CASCADE",
    ),
    (
        "linear_connections",
        "installed_by_user_id",
        "users",
        "SET NULL",
    ),
    (
        "slack_events",
        "organization_id,slack_connection_id",
        "slack_connections",
        "CASCADE",
    ),
    (
        "slack_events",
        "organization_id",
        "organizations",
        "CASCADE",
    ),
    (
        "linear_events",
        "organization_id,linear_connection_id",
        "linear_connections",
        "CASCADE",
    ),
    (
        "linear_events",
        "organization_id",
        "organizations",
        "CASCADE",
    ),
    ("agent_runs", "organization_id", "organizations", "CASCADE"),
    ("agent_runs", "user_id", "users", "SET NULL"),
    (
        "agent_runs",
        "organization_id,slack_event_id",
        "slack_events",
        "NO ACTION",
    ),
    (
        "agent_runs",
        "organization_id,linear_event_id",
        "linear_events",
        "NO ACTION",
    ),
    (
        "tool_calls",
        "organization_id,agent_run_id",
        "agent_runs",
        "CASCADE",
    ),
    ("tool_calls", "organization_id", "organizations", "CASCADE"),
    ("tool_calls", "tool_id", "tools", "SET NULL"),
    ("user_tools", "user_id", "users", "CASCADE"),
    ("user_tools", "tool_id", "tools", "CASCADE"),
    (
        "webhook_routes",
        "organization_id",
        "organizations",
        "CASCADE",
    ),
];

const UNIQUE: &[(&str, &str)] = &[
    ("users", "email"),
    ("sessions", "token"),
    ("accounts", "provider_id,account_id"),
    ("organizations", "slug"),
    ("members", "organization_id,user_id"),
    ("github_installations", "organization_id,installation_id"),
    ("slack_connections", "organization_id,team_id"),
    (
        "linear_connections",
        "organization_id,linear_organization_id",
    ),
    ("slack_events", "organization_id,event_id"),
    ("linear_events", "organization_id,event_id"),
    ("tool_calls", "organization_id,agent_run_id,sequence"),
    ("tools", "name"),
    ("user_tools", "user_id,tool_id"),
    ("unrouted_events", "provider,event_id"),
];

/// Columns the contract says are indexed (FK columns are checked separately, all of them).
const INDEXED: &[(&str, &str)] = &[
    ("sessions", "expires_at"),
    ("verifications", "identifier"),
    ("invitations", "email"),
    ("invitations", "status"),
    ("two_factors", "secret"),
    ("slack_connections", "team_id"),
    ("linear_connections", "linear_organization_id"),
    ("slack_events", "event_type"),
    ("slack_events", "status"),
    ("slack_events", "created_at"),
    ("linear_events", "event_type"),
    ("linear_events", "status"),
    ("linear_events", "created_at"),
    ("agent_runs", "status"),
    ("agent_runs", "created_at"),
    ("tool_calls", "status"),
    ("tool_calls", "created_at"),
    ("tools", "provider"),
    ("unrouted_events", "created_at"),
    // Lookups by id alone (Better Auth's `WHERE id = $1`) on tables keyed by organization.
    ("members", "id"),
    ("invitations", "id"),
];

/// (table, column, allowed values)
const ENUMERATIONS: &[(&str, &str, &[&str])] = &[
    (
        "invitations",
        "status",
        &["pending", "accepted", "rejected", "canceled"],
    ),
    (
        "github_installations",
        "account_type",
        &["user", "organization"],
    ),
    (
        "github_installations",
        "repository_selection",
        &["all", "selected"],
    ),
    (
        "slack_events",
        "status",
        &["pending", "processing", "processed", "failed", "ignored"],
    ),
    (
        "linear_events",
        "status",
        &["pending", "processing", "processed", "failed", "ignored"],
    ),
    ("linear_events", "action", &["create", "update", "remove"]),
    (
        "agent_runs",
        "trigger_source",
        &["slack", "linear", "github", "api", "schedule"],
    ),
    (
        "agent_runs",
        "status",
        &["queued", "running", "succeeded", "failed", "cancelled"],
    ),
    (
        "tool_calls",
        "status",
        &["pending", "running", "succeeded", "failed"],
    ),
    (
        "tools",
        "provider",
        &["builtin", "github", "slack", "linear", "mcp"],
    ),
    ("webhook_routes", "provider", &["slack", "linear", "github"]),
    ("unrouted_events", "provider", &["slack", "linear"]),
];

fn expand_type(short: &str) -> String {
    match short {
        "ts" => TS.to_owned(),
        "vc32" => "character varying(32)".to_owned(),
        "vc128" => "character varying(128)".to_owned(),
        other => other.to_owned(),
    }
}

/// (column, type, nullable, default) parsed from the notation of [`COLUMNS`].
fn expected_column(spec: &str) -> (String, String, bool, Option<String>) {
    let (head, default) = match spec.split_once(" = ") {
        Some((head, default)) => (head, Some(default.to_owned())),
        None => (spec, None),
    };
    let mut words = head.split_whitespace();
    let name = words.next().expect("a column name").to_owned();
    let ty = expand_type(words.next().expect("a column type"));
    let nullable = words.next() == Some("null");
    (name, ty, nullable, default)
}

#[tokio::test]
async fn the_contract_tables_exist_and_no_others() {
    let db = TestDb::migrated().await;
    let actual: BTreeSet<String> = text_rows(
        db.conn(),
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
    )
    .await
    .into_iter()
    .map(|row| row[0].clone().unwrap())
    .collect();
    let mut expected: BTreeSet<String> = COLUMNS.iter().map(|(t, _)| t.to_string()).collect();
    expected.insert("seaql_migrations".to_owned());
    let unlisted: Vec<&String> = actual.difference(&expected).collect();
    assert!(
        unlisted.is_empty(),
        "tables in the database that COLUMNS in harness/tests/schema.rs does not list: \
         {unlisted:?}; add an entry for each with its columns (and the table to docs/schema.md)"
    );
    let missing: Vec<&String> = expected.difference(&actual).collect();
    assert!(
        missing.is_empty(),
        "tables in COLUMNS (harness/tests/schema.rs) that no migration creates: {missing:?}"
    );
}

#[tokio::test]
async fn every_column_has_the_contract_type_nullability_and_default() {
    let db = TestDb::migrated().await;
    let rows = text_rows(
        db.conn(),
        "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                (NOT a.attnotnull)::text, pg_get_expr(d.adbin, d.adrelid)
         FROM pg_attribute a
         JOIN pg_class c ON c.oid = a.attrelid
         JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
         LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
           AND c.relname <> 'seaql_migrations'",
    )
    .await;
    let mut actual: BTreeMap<(String, String), (String, bool, Option<String>)> = BTreeMap::new();
    for row in rows {
        let [table, column, ty, nullable, default] = <[Option<String>; 5]>::try_from(row).unwrap();
        actual.insert(
            (table.unwrap(), column.unwrap()),
            (ty.unwrap(), nullable.as_deref() == Some("true"), default),
        );
    }
    let mut expected = BTreeMap::new();
    for (table, columns) in COLUMNS {
        for spec in *columns {
            let (column, ty, nullable, default) = expected_column(spec);
            expected.insert((table.to_string(), column), (ty, nullable, default));
        }
    }
    let differences: Vec<String> = expected
        .keys()
        .chain(actual.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|key| expected.get(*key) != actual.get(*key))
        .map(|key @ (table, column)| match (expected.get(key), actual.get(key)) {
            (None, Some((ty, nullable, default))) => format!(
                "{table}.{column} is in the database but not in COLUMNS: add \
                 \"{}\" to the \"{table}\" entry of COLUMNS in harness/tests/schema.rs \
                 (and the column to docs/schema.md)",
                notation(column, ty, *nullable, default.as_deref())
            ),
            (Some(_), None) => format!(
                "{table}.{column} is in COLUMNS (harness/tests/schema.rs) but not in the database: \
                 add it in a new migration, or remove it from COLUMNS and docs/schema.md"
            ),
            (contract, database) => format!(
                "{table}.{column}: COLUMNS in harness/tests/schema.rs says {contract:?}, the \
                 database has {database:?}"
            ),
        })
        .collect();
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

/// A column in the notation of [`COLUMNS`], the inverse of [`expected_column`].
fn notation(column: &str, ty: &str, nullable: bool, default: Option<&str>) -> String {
    let short = match ty {
        TS => "ts",
        "character varying(32)" => "vc32",
        "character varying(128)" => "vc128",
        other => other,
    };
    let mut spec = format!("{column} {short}");
    if nullable {
        spec.push_str(" null");
    }
    if let Some(default) = default {
        spec.push_str(" = ");
        spec.push_str(default);
    }
    spec
}

#[test]
fn notation_reads_back_as_the_column_it_describes() {
    for spec in COLUMNS.iter().flat_map(|(_, columns)| columns.iter()) {
        let (column, ty, nullable, default) = expected_column(spec);
        assert_eq!(notation(&column, &ty, nullable, default.as_deref()), *spec);
    }
}

#[tokio::test]
async fn every_table_is_keyed_by_id_within_its_organization_where_it_has_one() {
    let db = TestDb::migrated().await;
    let rows = text_rows(
        db.conn(),
        "SELECT c.relname::text,
                string_agg(a.attname, ',' ORDER BY array_position(k.conkey, a.attnum))
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = ANY (k.conkey)
         WHERE k.contype = 'p' AND c.relname <> 'seaql_migrations'
           AND k.connamespace = 'public'::regnamespace
         GROUP BY c.relname",
    )
    .await;
    assert_eq!(rows.len(), COLUMNS.len());
    for row in rows {
        let table = row[0].as_deref().unwrap();
        let expected = match table {
            t if TENANT_TABLES.contains(&t) => "organization_id,id",
            "webhook_routes" => "provider,external_id",
            _ => "id",
        };
        assert_eq!(row[1].as_deref(), Some(expected), "primary key of {table}");
    }
}

#[tokio::test]
async fn foreign_keys_match_the_contract_with_their_on_delete() {
    let db = TestDb::migrated().await;
    let actual: BTreeSet<(String, String, String, String)> = text_rows(
        db.conn(),
        "SELECT c.relname::text,
                (SELECT string_agg(a.attname, ',' ORDER BY p.n)
                 FROM unnest(k.conkey) WITH ORDINALITY AS p(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = p.attnum),
                r.relname::text,
                CASE k.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'n' THEN 'SET NULL'
                     WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' ELSE 'SET DEFAULT' END
         FROM pg_constraint k
         JOIN pg_class c ON c.oid = k.conrelid
         JOIN pg_class r ON r.oid = k.confrelid
         WHERE k.contype = 'f' AND k.connamespace = 'public'::regnamespace",
    )
    .await
    .into_iter()
    .map(|r| {
        let [t, c, rt, d] = <[Option<String>; 4]>::try_from(r)
            .unwrap()
            .map(Option::unwrap);
        (t, c, rt, d)
    })
    .collect();
    let expected: BTreeSet<(String, String, String, String)> = FOREIGN_KEYS
        .iter()
        .map(|(t, c, r, d)| (t.to_string(), c.to_string(), r.to_string(), d.to_string()))
        .collect();
    assert_eq!(actual, expected);
    // A key between two tenant tables references the organization's row, not any row.
    let composite = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_constraint k
         WHERE contype = 'f' AND connamespace = 'public'::regnamespace
           AND cardinality(conkey) = 2 AND confkey = (SELECT conkey FROM pg_constraint p
                                                     WHERE p.conrelid = k.confrelid AND p.contype = 'p')",
    )
    .await;
    assert_eq!(
        composite, 5,
        "each composite key references the primary key"
    );
}

#[tokio::test]
async fn every_foreign_key_leads_an_index() {
    let db = TestDb::migrated().await;
    // The key's columns, in its order, are the first columns of a full index.
    let unindexed = text_rows(
        db.conn(),
        "SELECT k.conname::text
         FROM pg_constraint k
         WHERE k.contype = 'f'
           AND NOT EXISTS (SELECT 1 FROM pg_index i
                           WHERE i.indrelid = k.conrelid AND i.indpred IS NULL
                             AND (string_to_array(i.indkey::text, ' ')::int2[])[1:cardinality(k.conkey)]
                                 = k.conkey)",
    )
    .await;
    assert!(
        unindexed.is_empty(),
        "foreign keys without an index: {unindexed:?}"
    );
}

async fn leading_index_columns(db: &TestDb, unique_only: bool) -> BTreeSet<(String, String)> {
    let filter = if unique_only {
        "AND i.indisunique AND NOT i.indisprimary"
    } else {
        ""
    };
    text_rows(
        db.conn(),
        &format!(
            "SELECT c.relname::text,
                    (SELECT string_agg(a.attname, ',' ORDER BY k.ord)
                     FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum)
             FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'
             WHERE i.indpred IS NULL AND i.indexprs IS NULL {filter}"
        ),
    )
    .await
    .into_iter()
    .map(|r| (r[0].clone().unwrap(), r[1].clone().unwrap()))
    .collect()
}

#[tokio::test]
async fn unique_keys_match_the_contract_and_are_constraints() {
    let db = TestDb::migrated().await;
    let actual = leading_index_columns(&db, true).await;
    let expected: BTreeSet<(String, String)> = UNIQUE
        .iter()
        .map(|(t, c)| (t.to_string(), c.to_string()))
        .collect();
    assert_eq!(actual, expected);
    // Constraints (not bare unique indexes), so ON CONFLICT and introspection both see them.
    let constraints = scalar(db.conn(), "SELECT count(*) FROM pg_constraint WHERE contype = 'u' AND connamespace = 'public'::regnamespace").await;
    assert_eq!(constraints, UNIQUE.len() as i64);
}

#[tokio::test]
async fn query_columns_lead_an_index() {
    let db = TestDb::migrated().await;
    let leading: BTreeSet<(String, String)> = leading_index_columns(&db, false)
        .await
        .into_iter()
        .map(|(t, cols)| (t, cols.split(',').next().unwrap().to_owned()))
        .collect();
    let missing: Vec<_> = INDEXED
        .iter()
        .filter(|(t, c)| !leading.contains(&(t.to_string(), c.to_string())))
        .collect();
    assert!(missing.is_empty(), "not indexed: {missing:?}");
}

#[tokio::test]
async fn due_events_are_found_and_claimed_through_partial_indexes() {
    let db = TestDb::migrated().await;
    let queued = "WHERE ((status)::text = ANY ((ARRAY['pending'::character varying, 'processing'::character varying])::text[]))";
    for table in ["slack_events", "linear_events"] {
        let rows = text_rows(
            db.conn(),
            &format!(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
                 WHERE i.indrelid = '{table}'::regclass AND i.indpred IS NOT NULL
                 ORDER BY 1"
            ),
        )
        .await;
        let definitions: Vec<String> = rows.into_iter().map(|r| r[0].clone().unwrap()).collect();
        assert_eq!(definitions.len(), 2, "{table}: {definitions:?}");
        // The claim: one organization's due events; which organizations are due, and when
        // the next event is: every organization's, in due order.
        assert!(
            definitions[0].contains(&format!("idx_{table}_claim"))
                && definitions[0].contains(&format!("(organization_id, due_at, id) {queued}")),
            "{definitions:?}"
        );
        assert!(
            definitions[1].contains(&format!("idx_{table}_due"))
                && definitions[1].contains(&format!("(due_at, id) {queued}")),
            "{definitions:?}"
        );
    }
    // With enough rows that the planner cares, the claim the service sends reads only the
    // claim index, the look for due organizations only the due index, and a page of the
    // listing walks the `created_at` index from the cursor.
    // Fifty organizations' events, the same number of each.
    db.conn()
        .execute_unprepared(
            "INSERT INTO organizations (id, name, slug)
             SELECT 'org_plan_' || o, 'Plan', 'plan-' || o FROM generate_series(0, 49) o",
        )
        .await
        .unwrap();
    db.conn()
        .execute_unprepared(
            "INSERT INTO slack_events (organization_id, event_id, event_type, team_id, payload,
                                       status, created_at)
             SELECT 'org_plan_' || g % 50, 'E' || g, 'message', 'T1', '{}',
                    CASE WHEN g % 7 = 0 THEN 'pending' ELSE 'processed' END,
                    now() - g * interval '1 second'
             FROM generate_series(1, 20000) g",
        )
        .await
        .unwrap();
    db.conn()
        .execute_unprepared("ANALYZE slack_events")
        .await
        .unwrap();
    let claim = plan_of(
        &db,
        events::claim_statement::<SlackEvents>("org_plan_7", events::ClaimOptions::new(10)),
    )
    .await;
    assert!(claim.contains("idx_slack_events_claim"), "{claim}");
    assert!(!claim.contains("Seq Scan"), "{claim}");
    let due = plan_of(&db, events::due_organizations_statement::<SlackEvents>(200)).await;
    assert!(due.contains("idx_slack_events_due"), "{due}");
    assert!(!due.contains("Seq Scan"), "{due}");
    let cursor = Cursor {
        created_at: (chrono::Utc::now() - chrono::Duration::seconds(10_000)).fixed_offset(),
        id: uuid::Uuid::nil(),
    };
    let page = events::list_statement::<SlackEvents>(
        "org_plan_7",
        &EventFilter::default(),
        Some(cursor),
        50,
    );
    let page = plan_of(&db, page).await;
    assert!(page.contains("idx_slack_events_created_at"), "{page}");
    assert!(!page.contains("Seq Scan"), "{page}");
}

/// The plan PostgreSQL chooses for `statement`, with its values bound as the service binds them.
async fn plan_of(db: &TestDb, statement: Statement) -> String {
    let explain = Statement {
        sql: format!("EXPLAIN {}", statement.sql),
        ..statement
    };
    db.conn()
        .query_all_raw(explain)
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).unwrap())
        .collect::<Vec<_>>()
        .join("\n")
}

fn sqlstate(err: &DbErr) -> Option<String> {
    match err {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned()),
        _ => None,
    }
}

#[tokio::test]
async fn each_enumeration_check_accepts_its_values_and_rejects_others() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    for (table, column, values) in ENUMERATIONS {
        for value in *values {
            let txn = db.conn().begin().await.unwrap();
            txn.execute_unprepared(&format!("UPDATE {table} SET {column} = '{value}'"))
                .await
                .unwrap_or_else(|err| panic!("{table}.{column} rejected '{value}': {err}"));
            txn.rollback().await.unwrap();
        }
        for bogus in ["bogus", "", "PENDING"] {
            if values.contains(&bogus) {
                continue;
            }
            let err = db
                .conn()
                .execute_unprepared(&format!("UPDATE {table} SET {column} = '{bogus}'"))
                .await
                .expect_err(&format!("{table}.{column} accepted '{bogus}'"));
            assert_eq!(
                sqlstate(&err).as_deref(),
                Some("23514"),
                "{table}.{column}: {err}"
            );
            assert!(
                err.to_string().contains(&format!("ck_{table}_{column}")),
                "the error names the constraint: {err}"
            );
        }
    }
}

#[tokio::test]
async fn counters_cannot_go_negative() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    for (table, column) in [
        ("slack_events", "attempts"),
        ("linear_events", "attempts"),
        ("agent_runs", "prompt_tokens"),
        ("agent_runs", "completion_tokens"),
        ("agent_runs", "next_tool_call_sequence"),
        ("tool_calls", "sequence"),
        ("tool_calls", "duration_ms"),
        ("two_factors", "failed_verification_count"),
    ] {
        let err = db
            .conn()
            .execute_unprepared(&format!("UPDATE {table} SET {column} = -1"))
            .await
            .expect_err(&format!("{table}.{column} accepted -1"));
        assert_eq!(
            sqlstate(&err).as_deref(),
            Some("23514"),
            "{table}.{column}: {err}"
        );
    }
}

#[tokio::test]
async fn no_table_has_a_trigger_and_the_schema_has_no_function() {
    // Citus refuses to distribute a table with triggers, and a trigger's NOTIFY would fire on
    // the worker node holding the shard: writers set `updated_at` and notify themselves
    // (harness/tests/service_events.rs checks every helper that moves an event).
    let db = TestDb::migrated().await;
    let triggers = text_rows(
        db.conn(),
        "SELECT tgrelid::regclass::text || '.' || tgname FROM pg_trigger
         WHERE NOT tgisinternal",
    )
    .await;
    assert!(triggers.is_empty(), "{triggers:?}");
    // The one function is what the row-level security policies read the organization
    // through (no trigger calls it).
    let functions = text_rows(
        db.conn(),
        "SELECT proname::text FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    )
    .await;
    assert_eq!(
        functions,
        [[Some(migration::tenancy::FUNCTION.to_owned())]],
        "functions of the public schema"
    );
    // An update that does not set updated_at leaves it: no trigger moves it behind its back.
    fixtures::seed_everything(db.conn()).await.unwrap();
    db.conn()
        .execute_unprepared(
            "UPDATE users SET updated_at = '2000-01-01T00:00:00Z';
             UPDATE users SET name = 'Renamed'",
        )
        .await
        .unwrap();
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM users WHERE updated_at = '2000-01-01T00:00:00Z'"
        )
        .await,
        2
    );
}

async fn count(db: &TestDb, table: &str, filter: &str) -> i64 {
    scalar(
        db.conn(),
        &format!("SELECT count(*) FROM {table} WHERE {filter}"),
    )
    .await
}

#[tokio::test]
async fn deleting_an_organization_removes_what_belongs_to_it() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let org = fixtures::ORG_ID;
    db.conn()
        .execute_unprepared(&format!("DELETE FROM organizations WHERE id = '{org}'"))
        .await
        .unwrap();
    for table in TENANT_TABLES.iter().chain(&["webhook_routes"]) {
        assert_eq!(
            count(&db, table, &format!("organization_id = '{org}'")).await,
            0,
            "{table}"
        );
    }
    assert_eq!(
        count(&db, "tool_calls", "true").await,
        0,
        "the run's tool calls went with it"
    );
    assert_eq!(
        count(&db, "sessions", "active_organization_id IS NOT NULL").await,
        0
    );
    assert_eq!(
        count(&db, "sessions", "true").await,
        2,
        "sessions themselves stay"
    );
    // Its webhook events went with it (they belong to it now); unrouted ones belong to no one.
    assert_eq!(count(&db, "slack_events", "true").await, 0);
    assert_eq!(count(&db, "linear_events", "true").await, 0);
    assert_eq!(count(&db, "unrouted_events", "true").await, 1);
    // The other organization is untouched.
    assert_eq!(
        count(
            &db,
            "members",
            &format!("organization_id = '{}'", fixtures::OTHER_ORG_ID)
        )
        .await,
        1
    );
    assert_eq!(count(&db, "agent_runs", "true").await, 1);
    assert_eq!(count(&db, "users", "true").await, 2);
}

#[tokio::test]
async fn deleting_a_user_leaves_no_row_pointing_at_them() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let owner = fixtures::OWNER_ID;
    let other = fixtures::OTHER_USER_ID;
    db.conn()
        .execute_unprepared(&format!(
            "DELETE FROM users WHERE id IN ('{owner}', '{other}')"
        ))
        .await
        .unwrap();
    for table in [
        "sessions",
        "accounts",
        "members",
        "two_factors",
        "user_tools",
        "invitations",
    ] {
        assert_eq!(count(&db, table, "true").await, 0, "{table}");
    }
    // What the users made for an organization stays, without its author.
    assert_eq!(count(&db, "agent_runs", "user_id IS NULL").await, 2);
    for table in [
        "github_installations",
        "slack_connections",
        "linear_connections",
    ] {
        assert_eq!(
            count(&db, table, "installed_by_user_id IS NULL").await,
            1,
            "{table}"
        );
    }
    // No column anywhere still holds either id (every text column of every table is checked).
    let columns = text_rows(
        db.conn(),
        "SELECT table_name::text, column_name::text FROM information_schema.columns
         WHERE table_schema = 'public' AND data_type = 'text'",
    )
    .await;
    for row in columns {
        let (table, column) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        let left = count(&db, &table, &format!("{column} IN ('{owner}', '{other}')")).await;
        assert_eq!(left, 0, "{table}.{column} still names a deleted user");
    }
}
