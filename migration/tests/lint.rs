//! `migration lint` on test-only migrations: each unsafe change to an existing table fails with
//! squawk's message; the safe ways of writing them pass; exceptions let a finding through only
//! with a reason, and a stale one fails the lint.

use harness::TestDb;
use migration::{
    MigrationTrait, MigratorTrait,
    lint::{self, Exceptions, LintReport},
};

mod support;

use support::{ConcurrentIndex, Sql, sql};

/// A table with its own index (fine: created in the same migration), then one migration per
/// unsafe change to it, then the safe forms.
struct Changes;

impl MigratorTrait for Changes {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            sql(
                "m20000101_000001_events",
                "CREATE TABLE events (id uuid PRIMARY KEY, team_id text NOT NULL, payload jsonb NOT NULL);
                 CREATE INDEX idx_events_payload ON events USING gin (payload)",
            ),
            sql(
                "m20000101_000002_plain_index",
                "CREATE INDEX idx_events_team_id ON events (team_id)",
            ),
            sql(
                "m20000101_000003_volatile_default",
                "ALTER TABLE events ADD COLUMN token uuid DEFAULT gen_random_uuid()",
            ),
            sql(
                "m20000101_000004_required_column",
                "ALTER TABLE events ADD COLUMN source text NOT NULL",
            ),
            sql(
                "m20000101_000005_type_change",
                "ALTER TABLE events ALTER COLUMN team_id TYPE varchar(64)",
            ),
            sql(
                "m20000101_000006_rename",
                "ALTER TABLE events RENAME COLUMN payload TO body",
            ),
            Box::new(ConcurrentIndex {
                name: "m20000101_000007_index_concurrently",
                table: "events",
                columns: &["source"],
            }),
            Box::new(Sql {
                name: "m20000101_000008_nullable_column",
                up: "ALTER TABLE events ADD COLUMN note text",
                transactional: true,
            }),
        ]
    }
}

async fn lint_changes(exceptions: &Exceptions) -> LintReport {
    let db = TestDb::empty().await;
    let squawk = lint::squawk::install().expect("squawk installs from migration/lint");
    let workdir = tempfile::tempdir().unwrap();
    lint::lint::<Changes>(db.url(), &squawk, exceptions, workdir.path())
        .await
        .expect("the lint runs")
}

fn rules_of<'a>(report: &'a LintReport, migration: &str) -> Vec<&'a str> {
    let mut rules: Vec<&str> = report
        .violations
        .iter()
        .filter(|v| v.migration == migration)
        .map(|v| v.rule.as_str())
        .collect();
    rules.sort();
    rules
}

#[tokio::test]
async fn each_unsafe_change_to_an_existing_table_fails_with_squawks_message() {
    let report = lint_changes(&Exceptions::default()).await;
    assert_eq!(report.files.len(), Changes::migrations().len());
    assert!(!report.passed());
    for (migration, rule, message) in [
        (
            "m20000101_000002_plain_index",
            "require-concurrent-index-creation",
            "During normal index creation, table updates are blocked",
        ),
        (
            "m20000101_000003_volatile_default",
            "adding-field-with-default",
            "non-VOLATILE DEFAULTs can be added without a rewrite",
        ),
        (
            "m20000101_000004_required_column",
            "adding-required-field",
            "Adding a new column that is `NOT NULL` and has no default value",
        ),
        (
            "m20000101_000005_type_change",
            "changing-column-type",
            "Changing a column type requires an `ACCESS EXCLUSIVE` lock",
        ),
        (
            "m20000101_000006_rename",
            "renaming-column",
            "Renaming a column may break existing clients",
        ),
    ] {
        let found = report
            .violations
            .iter()
            .find(|v| v.migration == migration && v.rule == rule)
            .unwrap_or_else(|| panic!("{migration} must fail {rule}: {:#?}", report.violations));
        assert!(found.message.contains(message), "{found}");
        assert!(found.to_string().contains(migration), "{found}");
    }
    for safe in [
        "m20000101_000001_events",
        "m20000101_000007_index_concurrently",
        "m20000101_000008_nullable_column",
    ] {
        assert_eq!(
            rules_of(&report, safe),
            Vec::<&str>::new(),
            "{safe} is safe"
        );
    }
}

#[tokio::test]
async fn an_exception_lets_one_finding_through_and_a_stale_one_fails_the_lint() {
    let exceptions = Exceptions::parse(
        r#"
[rules.require-concurrent-index-creation]
reason = "test"
[rules.adding-field-with-default]
reason = "test"
[rules.adding-required-field]
reason = "test"
[rules.changing-column-type]
reason = "test"
[rules.prefer-text-field]
reason = "test"

[[exception]]
migration = "m20000101_000006_rename"
rule = "renaming-column"
reason = "no client reads the old name"

[[exception]]
migration = "m20000101_000008_nullable_column"
rule = "renaming-column"
reason = "stale: this migration renames nothing"
"#,
    )
    .unwrap();
    let report = lint_changes(&exceptions).await;
    assert!(report.violations.is_empty(), "{:#?}", report.violations);
    assert_eq!(report.excepted.len(), 1);
    assert_eq!(report.excepted[0].1.reason, "no client reads the old name");
    assert_eq!(report.unused.len(), 1, "{:?}", report.unused);
    assert_eq!(
        report.unused[0].migration,
        "m20000101_000008_nullable_column"
    );
    assert!(!report.passed(), "a stale exception fails the lint");
}
