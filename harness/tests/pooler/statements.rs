//! No value may leave its literal, whatever the statement around it holds: the inliner reads a
//! statement as PostgreSQL's scanner does (`E''` continued on a new line, comments ending at a
//! lone `\r`, `standard_conforming_strings` off), or refuses it, and refuses what a bound
//! statement cannot be either (two statements, `VALUES $1`, `$0`, too many parameters). Each
//! case runs bound on a direct connection and inlined through PgBouncer.

use chrono::{NaiveDate, NaiveTime};
use harness::TestDb;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TransactionTrait, Value};

use crate::pooler::{pool_through, warm_pgbouncer};
use crate::pooler_values::{answer, both_ways};

/// A value that ends a string literal it was wrongly written into, stores a row and starts a
/// string that swallows the rest of the statement.
const STACKED_INSERT: &str = "' AS x; INSERT INTO audit VALUES ('pwned'); SELECT 'injected' --";

async fn with_audit_table() -> TestDb {
    let db = TestDb::migrated().await;
    db.conn()
        .execute_unprepared("CREATE TABLE audit (note text)")
        .await
        .unwrap();
    db
}

async fn audit_rows(db: &TestDb) -> i64 {
    harness::scalar(db.conn(), "SELECT count(*) FROM audit").await
}

async fn error_of(db: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> DbErr {
    db.query_all_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        values,
    ))
    .await
    .map(|rows| rows.len())
    .expect_err(sql)
}

#[tokio::test]
async fn a_backslash_in_a_plain_literal_is_refused_so_no_setting_lets_a_value_out() {
    let db = with_audit_table().await;
    let (direct, pooled) = both_ways(&db).await;
    let sql = "SELECT '\\' AS sep, $1 AS v";
    // With standard_conforming_strings off the server reads `\'` as a quote inside the string,
    // so the value would stand outside it.
    for pool in [&direct, pooled] {
        let txn = pool.begin().await.unwrap();
        txn.execute_unprepared("SET LOCAL standard_conforming_strings = off")
            .await
            .unwrap();
        let answered = answer(&txn, sql, vec![STACKED_INSERT.into()]).await;
        assert!(answered.is_err(), "{:?}: {answered:?}", pool.pooler());
        let _ = txn.commit().await;
    }
    assert_eq!(audit_rows(&db).await, 0, "no INSERT ran");

    // The same with the setting off for the whole database, on fresh server sessions.
    db.conn()
        .execute_unprepared(&format!(
            "ALTER DATABASE \"{}\" SET standard_conforming_strings = off",
            db.name()
        ))
        .await
        .unwrap();
    let bouncer = warm_pgbouncer(&db, 1).await;
    let fresh = pool_through(&bouncer, &db).await;
    assert_eq!(
        harness::text_rows(&fresh, "SHOW standard_conforming_strings").await,
        [[Some("off".to_owned())]]
    );
    let secret = "s3cret-value";
    let err = error_of(&fresh, sql, vec![secret.into()]).await;
    assert_eq!(service::sqlstate(&err).as_deref(), Some("0A000"), "{err}");
    let shown = err.to_string();
    assert!(shown.contains("backslash"), "{shown}");
    assert!(!shown.contains(secret), "{shown}");
    let err = error_of(&fresh, sql, vec![STACKED_INSERT.into()]).await;
    assert_eq!(service::sqlstate(&err).as_deref(), Some("0A000"), "{err}");
    assert_eq!(audit_rows(&db).await, 0, "no INSERT ran");

    // Whatever the setting, an E'' literal and a plain one without a backslash are read alike.
    let sql = "SELECT E'\\\\' AS sep, 'it''s' AS q, $1 AS v";
    assert_eq!(
        answer(&fresh, sql, vec![STACKED_INSERT.into()]).await,
        Ok(vec![vec![
            Some("\\".to_owned()),
            Some("it's".to_owned()),
            Some(STACKED_INSERT.to_owned())
        ]])
    );
}

#[tokio::test]
async fn a_string_continued_on_a_new_line_keeps_its_escapes_and_comments_end_at_a_lone_cr() {
    let db = with_audit_table().await;
    let (direct, pooled) = both_ways(&db).await;
    let cases: Vec<(&str, Vec<Value>)> = vec![
        // `'...'` after `E'a'` and a newline continues the E'' string: `\'` is a quote in it,
        // and `$1` stands inside the string.
        (
            "SELECT E'a'\n'\\' || $1 || ' -- '\n, $2",
            vec![
                "'; INSERT INTO audit VALUES ('pwned'); SELECT '".into(),
                "second".into(),
            ],
        ),
        // A `--` comment ends at `\r`: the `'` after it opens a string holding `$1`.
        (
            "SELECT $2 AS a, text -- c\r'\n || $1 || ' AS b -- '\n",
            vec!["', 'pwned' AS injected, '".into(), "second".into()],
        ),
        (
            "SELECT $1::text -- x\r, $2::text",
            vec!["a".into(), "b".into()],
        ),
        // Continuations of B'' and X'' strings, where `''` is no quote.
        (
            "SELECT (X'' || $1::bit varying || B'1'\n  -- c\n'0')::text, $2::text",
            vec![Value::String(Some("0".to_owned())), "b".into()],
        ),
        (
            "SELECT (B'1''0' = $1)::text",
            vec![Value::String(Some("1".to_owned()))],
        ),
        // U&'' strings read `\` as an escape of their own, which cannot end them.
        ("SELECT U&'\\0041\\\\' || $1", vec!["x".into()]),
        // Nested block comments, and a dollar quote whose tag a placeholder-like text follows.
        (
            "SELECT /* a /* $1 */ b */ $1::text, $x$ $2 $x$, $x$$y$ $1 $y$$x$",
            vec!["a".into()],
        ),
    ];
    let mut differ = Vec::new();
    for (n, (sql, values)) in cases.into_iter().enumerate() {
        let sql = &format!("{sql} -- case {n}\n");
        let bound = answer(&direct, sql, values.clone()).await;
        let inlined = answer(pooled, sql, values).await;
        if inlined != bound {
            differ.push(format!("{sql:?}: bound {bound:?}, inlined {inlined:?}"));
        }
    }
    assert_eq!(differ, Vec::<String>::new());
    assert_eq!(audit_rows(&db).await, 0, "no INSERT ran");
}

#[tokio::test]
async fn what_a_bound_statement_refuses_is_refused_inlined() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let many: Vec<Value> = (0..65_536).map(|n| Value::Int(Some(n))).collect();
    let cases: Vec<(&str, Vec<Value>)> = vec![
        ("SELECT $1::text; SELECT 2::text", vec!["a".into()]),
        (
            "SELECT $1::text;\n-- only a comment after\n;",
            vec!["a".into()],
        ),
        ("VALUES $1", vec!["a".into()]),
        ("SELECT (1 IN $1)::text", vec![Value::Int(Some(1))]),
        ("SELECT $0::text", vec![Value::Int(Some(1))]),
        ("SELECT $1x", vec!["a".into()]),
        ("SELECT 1$1", vec![Value::Int(Some(1))]),
        ("SELECT $65536::text", many),
    ];
    let class = |outcome: &Result<_, Option<String>>| match outcome {
        Ok(_) => None,
        Err(code) => Some(code.as_deref().map(|c| c[..2].to_owned())),
    };
    let mut differ = Vec::new();
    for (n, (sql, values)) in cases.into_iter().enumerate() {
        let sql = &format!("{sql} -- case {n}");
        let bound = answer(&direct, sql, values.clone()).await;
        let inlined = answer(pooled, sql, values).await;
        // sqlx refuses too many values itself, with no SQLSTATE.
        let refused_alike = match (&bound, &inlined) {
            (Err(None), Err(Some(_))) => true,
            _ => class(&inlined) == class(&bound),
        };
        if !refused_alike || (bound.is_ok() && inlined != bound) {
            differ.push(format!("{sql:?}: bound {bound:?}, inlined {inlined:?}"));
        }
    }
    assert_eq!(differ, Vec::<String>::new());
}

#[tokio::test]
async fn values_the_server_refuses_fail_without_their_text_and_after_the_statement_is_checked() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let leap_second = NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap();
    let values = [
        (Value::ChronoDate(Some(day(-4713, 11, 23))), "4714"),
        (
            Value::ChronoDateTime(Some(day(-4713, 1, 1).and_hms_opt(0, 0, 0).unwrap())),
            "4714",
        ),
        (Value::ChronoTime(Some(leap_second)), "24:00:00"),
    ];
    let mut shown_values = Vec::new();
    for (n, (value, text)) in values.into_iter().enumerate() {
        let sql = format!("SELECT $1::text -- {n}");
        let bound = error_of(&direct, &sql, vec![value.clone()]).await;
        let inlined = error_of(pooled, &sql, vec![value.clone()]).await;
        assert_eq!(service::sqlstate(&bound).as_deref(), Some("22008"));
        assert_eq!(service::sqlstate(&inlined).as_deref(), Some("22008"));
        let shown = format!("{inlined} {inlined:?}");
        if shown.contains(text) {
            shown_values.push(format!("{value:?}: {inlined}"));
        }
    }
    assert_eq!(shown_values, Vec::<String>::new());
    // As bound, a mistake in the statement is reported before the value that cannot be held.
    let value = Value::ChronoDate(Some(day(-4713, 11, 23)));
    let sql = "SELECT $1[1]::text";
    let bound = error_of(&direct, sql, vec![value.clone()]).await;
    let inlined = error_of(pooled, sql, vec![value]).await;
    assert_eq!(service::sqlstate(&bound).as_deref(), Some("42804"));
    assert_eq!(service::sqlstate(&inlined).as_deref(), Some("42804"));
}
