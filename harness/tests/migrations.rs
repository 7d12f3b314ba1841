//! The migrations as a whole: reversible step by step, safe to run concurrently, atomic when
//! one fails, and every CLI action doing what it says.

use std::time::Instant;

use harness::{TestDb, scalar, text_rows};
use migration::{
    Migrator, MigratorTrait,
    runner::{self, Action, Progress, RunError},
};
use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

fn migrations() -> usize {
    Migrator::migrations().len()
}

async fn run(db: &TestDb, action: Action) -> Vec<Progress> {
    let mut steps = Vec::new();
    runner::run::<Migrator>(db.url(), action, |step| steps.push(step))
        .await
        .unwrap_or_else(|err| panic!("{action:?} failed: {err}"));
    steps
}

fn applied(steps: &[Progress]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| match s {
            Progress::Applied { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

fn rolled_back(steps: &[Progress]) -> Vec<String> {
    steps
        .iter()
        .filter_map(|s| match s {
            Progress::RolledBack { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect()
}

async fn user_tables(db: &TestDb) -> Vec<String> {
    text_rows(
        db.conn(),
        "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'seaql_migrations' ORDER BY 1",
    )
    .await
    .into_iter()
    .map(|r| r[0].clone().unwrap())
    .collect()
}

async fn recorded(db: &TestDb) -> i64 {
    scalar(db.conn(), "SELECT count(*) FROM seaql_migrations").await
}

#[tokio::test]
async fn up_applies_every_migration_in_order_then_finds_nothing_to_do() {
    let db = TestDb::empty().await;
    let first = run(&db, Action::Up(None)).await;
    let names: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(applied(&first), names);
    assert_eq!(user_tables(&db).await.len(), 19);
    let second = run(&db, Action::Up(None)).await;
    assert!(applied(&second).is_empty());
    assert!(second.contains(&Progress::NothingToDo));
    assert_eq!(recorded(&db).await, migrations() as i64);
}

#[tokio::test]
async fn up_down_all_up_again_leaves_an_identical_schema() {
    let db = TestDb::empty().await;
    run(&db, Action::Up(None)).await;
    let first = db.schema_dump();
    let down = run(&db, Action::Down(migrations() as u32)).await;
    assert_eq!(rolled_back(&down).len(), migrations());
    assert!(
        user_tables(&db).await.is_empty(),
        "down all the way leaves no table"
    );
    let functions = scalar(
        db.conn(),
        "SELECT count(*) FROM pg_proc WHERE pronamespace = 'public'::regnamespace",
    )
    .await;
    assert_eq!(functions, 0, "down all the way leaves no function");
    run(&db, Action::Up(None)).await;
    assert_eq!(db.schema_dump(), first);
}

#[tokio::test]
async fn each_down_removes_exactly_what_its_up_created() {
    let db = TestDb::empty().await;
    Migrator::install(db.conn()).await.unwrap();
    let mut schemas = vec![db.schema_dump()];
    for _ in 0..migrations() {
        run(&db, Action::Up(Some(1))).await;
        schemas.push(db.schema_dump());
    }
    for step in (0..migrations()).rev() {
        let down = run(&db, Action::Down(1)).await;
        assert_eq!(rolled_back(&down).len(), 1);
        assert!(
            db.schema_dump() == schemas[step],
            "rolling back {:?} did not restore the schema before it",
            rolled_back(&down)
        );
    }
}

#[tokio::test]
async fn concurrent_up_runs_wait_for_each_other_and_apply_each_migration_once() {
    let db = TestDb::empty().await;
    let runs: Vec<_> = (0..4)
        .map(|_| {
            let url = db.url().clone();
            tokio::spawn(async move {
                let mut steps = Vec::new();
                runner::run::<Migrator>(&url, Action::Up(None), |s| steps.push(s))
                    .await
                    .map(|()| steps)
            })
        })
        .collect();
    let mut total_applied = 0;
    for handle in runs {
        let steps = handle
            .await
            .unwrap()
            .expect("every concurrent run succeeds");
        total_applied += applied(&steps).len();
    }
    assert_eq!(
        total_applied,
        migrations(),
        "each migration applied by exactly one run"
    );
    assert_eq!(recorded(&db).await, migrations() as i64);
    let reference = TestDb::empty().await;
    run(&reference, Action::Up(None)).await;
    assert_eq!(db.schema_dump(), reference.schema_dump());
}

#[tokio::test]
async fn a_run_waits_while_another_session_holds_the_lock() {
    let db = TestDb::empty().await;
    let holder = db.new_pool(1).await;
    holder
        .execute_unprepared(&format!(
            "SELECT pg_advisory_lock({})",
            runner::MIGRATION_LOCK_KEY
        ))
        .await
        .unwrap();
    let url = db.url().clone();
    let waiting = tokio::spawn(async move {
        let mut steps = Vec::new();
        let started = Instant::now();
        runner::run::<Migrator>(&url, Action::Up(None), |s| steps.push(s))
            .await
            .unwrap();
        (steps, started.elapsed())
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the run must wait for the lock");
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        0
    );
    holder.close().await.unwrap();
    let (steps, _) = waiting.await.unwrap();
    assert_eq!(steps[0], Progress::WaitingForLock);
    assert_eq!(applied(&steps).len(), migrations());
}

/// A migrator whose second migration creates a table, then fails.
struct BrokenMigrator;

struct Good;
/// The second migration; `fails` makes it break after its first statements.
struct Second {
    fails: bool,
}

impl MigrationName for Good {
    fn name(&self) -> &str {
        "m20000101_000001_good"
    }
}

impl MigrationName for Second {
    fn name(&self) -> &str {
        "m20000101_000002_broken"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Good {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("CREATE TABLE good (id int PRIMARY KEY)")
            .await
            .map(drop)
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Second {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("CREATE TABLE half_made (id int PRIMARY KEY)")
            .await?;
        db.execute_unprepared("INSERT INTO half_made VALUES (1)")
            .await?;
        if self.fails {
            db.execute_unprepared("ALTER TABLE no_such_table ADD COLUMN x int")
                .await?;
        }
        Ok(())
    }
}

impl MigratorTrait for BrokenMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(Good), Box::new(Second { fails: true })]
    }
}

/// The same migrations after the second was fixed.
struct FixedMigrator;

impl MigratorTrait for FixedMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(Good), Box::new(Second { fails: false })]
    }
}

#[tokio::test]
async fn a_migration_failing_half_way_leaves_no_trace_and_names_itself() {
    let db = TestDb::empty().await;
    let err = runner::run::<BrokenMigrator>(db.url(), Action::Up(None), |_| {})
        .await
        .expect_err("the broken migration fails");
    match &err {
        RunError::Migration { name, .. } => assert_eq!(name, "m20000101_000002_broken"),
        other => panic!("expected a migration error, got {other:?}"),
    }
    assert!(err.to_string().contains("no_such_table"), "{err}");
    assert_eq!(user_tables(&db).await, vec!["good".to_owned()]);
    let versions = text_rows(db.conn(), "SELECT version FROM seaql_migrations").await;
    assert_eq!(
        versions,
        vec![vec![Some("m20000101_000001_good".to_owned())]]
    );
    // The lock was released, and once fixed the migration applies.
    let mut steps = Vec::new();
    runner::run::<FixedMigrator>(db.url(), Action::Up(None), |s| steps.push(s))
        .await
        .unwrap();
    assert_eq!(applied(&steps), ["m20000101_000002_broken"]);
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM half_made").await, 1);
}

#[tokio::test]
async fn status_lists_every_migration_without_changing_anything() {
    let db = TestDb::empty().await;
    let before = runner::status::<Migrator>(db.url()).await.unwrap();
    assert_eq!(before.len(), migrations());
    assert!(before.iter().all(|m| !m.applied));
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        0,
        "status creates nothing, not even the migration table"
    );
    run(&db, Action::Up(Some(3))).await;
    let after = runner::status::<Migrator>(db.url()).await.unwrap();
    let applied: Vec<bool> = after.iter().map(|m| m.applied).collect();
    let expected: Vec<bool> = (0..migrations()).map(|i| i < 3).collect();
    assert_eq!(applied, expected, "the first three, in order");
}

#[tokio::test]
async fn fresh_drops_every_table_then_applies_everything() {
    let db = TestDb::migrated().await;
    let expected = db.schema_dump();
    db.conn()
        .execute_unprepared("CREATE TABLE stray (id int); INSERT INTO users (id, name, email) VALUES ('u', 'U', 'u@x')")
        .await
        .unwrap();
    let steps = run(&db, Action::Fresh).await;
    assert_eq!(applied(&steps).len(), migrations());
    assert!(!user_tables(&db).await.contains(&"stray".to_owned()));
    assert_eq!(scalar(db.conn(), "SELECT count(*) FROM users").await, 0);
    assert_eq!(db.schema_dump(), expected);
}

#[tokio::test]
async fn refresh_rolls_everything_back_and_reapplies_it() {
    let db = TestDb::migrated().await;
    let expected = db.schema_dump();
    let steps = run(&db, Action::Refresh).await;
    assert_eq!(rolled_back(&steps).len(), migrations());
    assert_eq!(applied(&steps).len(), migrations());
    assert_eq!(db.schema_dump(), expected);
}

#[tokio::test]
async fn reset_removes_the_schema_and_the_migration_table() {
    let db = TestDb::migrated().await;
    let steps = run(&db, Action::Reset).await;
    assert_eq!(rolled_back(&steps).len(), migrations());
    assert!(steps.contains(&Progress::Uninstalled));
    assert_eq!(
        scalar(
            db.conn(),
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn down_n_rolls_back_exactly_the_n_newest() {
    let db = TestDb::migrated().await;
    let steps = run(&db, Action::Down(3)).await;
    let newest_first: Vec<String> = Migrator::migrations()
        .iter()
        .rev()
        .take(3)
        .map(|m| m.name().to_owned())
        .collect();
    assert_eq!(rolled_back(&steps), newest_first);
    assert_eq!(recorded(&db).await, migrations() as i64 - 3);

    let older = TestDb::empty().await;
    let limit = <u32 as TryFrom<usize>>::try_from(migrations() - 3).unwrap();
    run(&older, Action::Up(Some(limit))).await;
    assert_eq!(
        db.schema_dump(),
        older.schema_dump(),
        "after rolling back the 3 newest migrations the schema is the one the others create"
    );
}
