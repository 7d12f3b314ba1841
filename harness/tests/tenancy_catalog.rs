//! The catalog against `migration::tenancy`: every table of the public schema is classified,
//! every classified table exists, and every tenant (and routing) table has row-level security
//! enabled and forced with the isolation policy on the transaction's organization. A new table
//! nobody classified, or a tenant table that lost its protection, fails here by name.

use harness::{TestDb, text_rows};
use migration::tenancy::{self, FUNCTION};
use sea_orm::ConnectionTrait;

/// The ordinary and partitioned tables of the public schema that nobody classified.
async fn unclassified(db: &impl ConnectionTrait) -> Vec<String> {
    text_rows(
        db,
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
         ORDER BY 1",
    )
    .await
    .into_iter()
    .filter_map(|row| row[0].clone())
    .filter(|table| tenancy::classify(table).is_none())
    .collect()
}

/// Each guarded table that lacks ENABLE, FORCE, or a `tenant_isolation` policy for every
/// command whose USING and WITH CHECK both read the organization through the function, with
/// what it lacks.
async fn unprotected(db: &impl ConnectionTrait) -> Vec<String> {
    let mut problems = Vec::new();
    for table in tenancy::guarded() {
        let column = table.class.organization_column().expect("a guarded table");
        let rows = text_rows(
            db,
            &format!(
                "SELECT c.relrowsecurity::text, c.relforcerowsecurity::text,
                        (SELECT p.cmd || ' ' || array_to_string(p.roles, ',') || ' | ' || p.qual
                                || ' | ' || p.with_check
                           FROM pg_policies p
                          WHERE p.schemaname = 'public' AND p.tablename = c.relname
                            AND p.policyname = 'tenant_isolation' AND p.permissive = 'PERMISSIVE')
                 FROM pg_class c
                 WHERE c.oid = to_regclass('public.{}')",
                table.table
            ),
        )
        .await;
        let Some(row) = rows.first() else {
            problems.push(format!("{}: missing", table.table));
            continue;
        };
        if row[0].as_deref() != Some("true") {
            problems.push(format!("{}: row-level security not enabled", table.table));
        }
        if row[1].as_deref() != Some("true") {
            problems.push(format!("{}: row-level security not forced", table.table));
        }
        let expected = format!(
            "ALL public | ({column} = ( SELECT {FUNCTION}() AS {FUNCTION})) | ({column} = ( SELECT {FUNCTION}() AS {FUNCTION}))"
        );
        match row[2].as_deref() {
            Some(policy) if policy == expected => {}
            Some(policy) => problems.push(format!(
                "{}: tenant_isolation is `{policy}`, not `{expected}`",
                table.table
            )),
            None => problems.push(format!("{}: no tenant_isolation policy", table.table)),
        }
    }
    problems
}

#[tokio::test]
async fn every_table_of_the_catalog_is_classified() {
    let db = TestDb::migrated().await;
    let missing = unclassified(db.conn()).await;
    assert!(
        missing.is_empty(),
        "tables nobody classified in migration/src/tenancy.rs (add each to TABLES, and to the \
         isolation migration if it holds tenant rows): {missing:?}"
    );
    for table in &tenancy::TABLES {
        let found = text_rows(
            db.conn(),
            &format!("SELECT to_regclass('public.{}')::text", table.table),
        )
        .await;
        assert!(
            found[0][0].is_some(),
            "{} is classified but no such table exists",
            table.table
        );
    }
}

#[tokio::test]
async fn a_new_table_nobody_classified_is_named() {
    let db = TestDb::migrated().await;
    db.conn()
        .execute_unprepared("CREATE TABLE sneaky_notes (organization_id text, body text)")
        .await
        .unwrap();
    assert_eq!(unclassified(db.conn()).await, vec!["sneaky_notes"]);
}

#[tokio::test]
async fn every_tenant_table_forces_row_level_security_with_the_isolation_policy() {
    let db = TestDb::migrated().await;
    let problems = unprotected(db.conn()).await;
    assert!(problems.is_empty(), "{problems:#?}");
    let guarded = tenancy::guarded().count();
    assert_eq!(guarded, 11, "ten tenant tables and webhook_routes");
}

#[tokio::test]
async fn a_tenant_table_that_lost_its_protection_is_named() {
    let db = TestDb::migrated().await;
    for sql in [
        "ALTER TABLE agent_runs NO FORCE ROW LEVEL SECURITY",
        "ALTER TABLE tool_calls DISABLE ROW LEVEL SECURITY",
        "DROP POLICY tenant_isolation ON members",
        "ALTER POLICY tenant_isolation ON invitations USING (true)",
    ] {
        db.conn().execute_unprepared(sql).await.unwrap();
    }
    let problems = unprotected(db.conn()).await;
    let named: Vec<_> = problems
        .iter()
        .map(|p| p.split(':').next().unwrap())
        .collect();
    assert_eq!(
        named,
        ["members", "invitations", "agent_runs", "tool_calls"],
        "{problems:#?}"
    );
    assert!(problems[0].ends_with("no tenant_isolation policy"));
    assert!(problems[2].ends_with("not forced"));
    assert!(problems[3].ends_with("not enabled"));
}
