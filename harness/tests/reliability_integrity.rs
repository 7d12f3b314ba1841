//! Integrity: no orphans after deletions (checked generically over every foreign key in
//! `pg_catalog`), secrets only where they belong, and no secret in the repository.

use std::path::Path;

use harness::{TestDb, fixtures, scalar, text_rows};
use sea_orm::{ConnectionTrait, TransactionTrait};

/// Rows whose foreign key points at nothing, for every foreign key of the schema (all of its
/// columns: a key between tenant tables holds the organization too).
async fn orphans(db: &TestDb) -> Vec<String> {
    let keys = text_rows(
        db.conn(),
        "SELECT k.conrelid::regclass::text, k.confrelid::regclass::text,
                string_agg(a.attname, ',' ORDER BY p.n), string_agg(r.attname, ',' ORDER BY p.n)
         FROM pg_constraint k
         CROSS JOIN LATERAL unnest(k.conkey, k.confkey) WITH ORDINALITY AS p(attnum, refnum, n)
         JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = p.attnum
         JOIN pg_attribute r ON r.attrelid = k.confrelid AND r.attnum = p.refnum
         WHERE k.contype = 'f' AND k.connamespace = 'public'::regnamespace
         GROUP BY k.oid, k.conrelid, k.confrelid",
    )
    .await;
    assert!(keys.len() >= 28, "every foreign key is checked");
    let mut found = Vec::new();
    for key in keys {
        let [table, target, columns, target_columns] = <[Option<String>; 4]>::try_from(key)
            .unwrap()
            .map(Option::unwrap);
        let pairs: Vec<(&str, &str)> = columns.split(',').zip(target_columns.split(',')).collect();
        // MATCH SIMPLE: a key with a NULL column references nothing.
        let set = pairs
            .iter()
            .map(|(c, _)| format!("t.{c} IS NOT NULL"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let matches = pairs
            .iter()
            .map(|(c, r)| format!("x.{r} = t.{c}"))
            .collect::<Vec<_>>()
            .join(" AND ");
        let n = scalar(
            db.conn(),
            &format!(
                "SELECT count(*) FROM {table} t WHERE {set}
                 AND NOT EXISTS (SELECT 1 FROM {target} x WHERE {matches})"
            ),
        )
        .await;
        if n > 0 {
            found.push(format!("{table}.{columns}: {n}"));
        }
    }
    found
}

#[tokio::test]
async fn the_orphan_check_finds_an_orphan_when_foreign_keys_are_bypassed() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    assert!(orphans(&db).await.is_empty());
    let bypass = db.new_pool(1).await;
    let txn = bypass.begin().await.unwrap();
    // On Citus the foreign key is checked on the worker holding the shard: `SET LOCAL`, each its
    // own statement, is what Citus forwards there (plain PostgreSQL keeps the `citus.` setting
    // as a placeholder).
    for sql in [
        "SET LOCAL citus.propagate_set_commands = 'local'",
        "SET LOCAL session_replication_role = replica",
        "INSERT INTO members (id, organization_id, user_id) VALUES ('ghost', 'org_gone', 'user_owner')",
    ] {
        txn.execute_unprepared(sql).await.unwrap();
    }
    txn.commit().await.unwrap();
    assert_eq!(orphans(&db).await, ["members.organization_id: 1"]);
}

#[tokio::test]
async fn deleting_users_and_an_organization_with_data_everywhere_leaves_no_orphan() {
    let db = TestDb::migrated().await;
    fixtures::seed_everything(db.conn()).await.unwrap();
    let tables = text_rows(
        db.conn(),
        "SELECT tablename::text FROM pg_tables
         WHERE schemaname = 'public' AND tablename <> 'seaql_migrations'",
    )
    .await;
    assert_eq!(tables.len(), 19);
    for table in tables {
        let table = table[0].clone().unwrap();
        let rows = scalar(db.conn(), &format!("SELECT count(*) FROM {table}")).await;
        assert!(rows > 0, "the fixture leaves {table} empty");
    }
    db.conn()
        .execute_unprepared(&format!(
            "DELETE FROM organizations WHERE id = '{}'",
            fixtures::ORG_ID
        ))
        .await
        .unwrap();
    assert!(orphans(&db).await.is_empty());
    db.conn()
        .execute_unprepared(&format!(
            "DELETE FROM users WHERE id IN ('{}', '{}')",
            fixtures::OWNER_ID,
            fixtures::OTHER_USER_ID
        ))
        .await
        .unwrap();
    assert!(orphans(&db).await.is_empty());
    println!(
        "figure: deleted an organization and both users with rows in all 19 tables: 0 orphans over every foreign key"
    );
}

#[tokio::test]
async fn secrets_live_only_in_encrypted_columns_and_the_better_auth_tables() {
    let db = TestDb::migrated().await;
    let suspicious = text_rows(
        db.conn(),
        "SELECT table_name::text || '.' || column_name::text FROM information_schema.columns
         WHERE table_schema = 'public'
           AND column_name ~ '(^|_)(token|secret|password|api_key|private_key|credential)($|_)'
           AND column_name NOT LIKE '%\\_encrypted' AND column_name NOT LIKE '%\\_expires\\_at'
           AND table_name NOT IN ('accounts', 'two_factors')",
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect::<Vec<_>>();
    // Better Auth's session token is its bearer credential and lives in `sessions`, by design.
    assert_eq!(suspicious, ["sessions.token"]);
}

#[test]
fn the_repository_ignores_env_and_its_example_holds_no_secret() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for path in [
        ".env",
        ".pgdata/password",
        "compat/better-auth/node_modules/x",
    ] {
        let ignored = std::process::Command::new("git")
            .args(["check-ignore", "-q", path])
            .current_dir(&root)
            .status()
            .expect("git runs");
        assert!(ignored.success(), "{path} must be git-ignored");
    }
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let set: Vec<&str> = example
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        set.is_empty(),
        "`.env.example` must set nothing, only show: {set:?}"
    );
    let urls: Vec<&str> = example
        .lines()
        .filter_map(|l| l.trim_start_matches('#').trim().split_once('='))
        .filter(|(name, value)| {
            name.chars().all(|c| c.is_ascii_uppercase() || c == '_') && value.contains("://")
        })
        .map(|(_, value)| value)
        .collect();
    assert!(!urls.is_empty(), "the example shows DATABASE_URL");
    for url in urls {
        let parsed = db_connect::DatabaseUrl::parse(url).expect("the example URL is valid");
        let password = secrecy::ExposeSecret::expose_secret(parsed.password());
        assert_eq!(
            password, "change-me",
            "the example's password is a placeholder"
        );
    }
}
