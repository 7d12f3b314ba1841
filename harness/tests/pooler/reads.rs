//! Every value reads back through the pooler as it does bound, or the read fails with a typed
//! error naming why: through a transaction pooler rows come back as text and sqlx decodes that
//! text, which depends on session settings a transaction may change, and which sqlx cannot
//! always read (a `text[]` element that is the string `NULL`, years before 1 or after 9999). On
//! the direct path values sqlx would panic on (binding or reading) are refused the same way.
//!
//! Each test reports every case that went wrong, not only the first.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use db_connect::Pool;
use harness::TestDb;
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, TransactionTrait, Value,
    sea_query::ArrayType,
};

use crate::pooler_values::both_ways;

/// The first row of `sql`, or the query's error.
async fn first_row(db: &impl ConnectionTrait, sql: &str) -> Result<QueryResult, DbErr> {
    db.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await
        .map(|row| row.expect("a row"))
}

/// What went wrong, case by case.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// Records `case` unless `err` has the SQLSTATE and its message the words naming the cause.
    fn unless_refused(&mut self, case: &str, err: &DbErr, sqlstate: &str, words: &[&str]) {
        let shown = err.to_string();
        if service::sqlstate(err).as_deref() != Some(sqlstate)
            || words.iter().any(|word| !shown.contains(word))
        {
            self.0.push(format!(
                "{case}: not refused with {sqlstate} {words:?}: {shown}"
            ));
        }
    }

    /// Records `case` as answered where it should have been refused.
    fn answered(&mut self, case: &str, what: impl std::fmt::Debug) {
        self.0.push(format!("{case}: answered {what:?}"));
    }

    fn none(self) {
        assert!(self.0.is_empty(), "{:#?}", self.0);
    }
}

/// The column `tags` as sqlx decodes a `text[]` with NULL elements (SeaORM has no such type).
fn elements(row: &QueryResult) -> Result<Vec<Option<String>>, sqlx::Error> {
    use sqlx::Row;
    row.try_as_pg_row()
        .expect("a PostgreSQL row")
        .try_get("tags")
}

#[tokio::test]
async fn a_text_array_element_that_is_the_string_null_is_never_read_as_null() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let sql = "SELECT ARRAY['NULL', 'null', NULL, 'x']::text[] AS tags";
    let bound = elements(&first_row(&direct, sql).await.unwrap()).unwrap();
    assert_eq!(
        bound,
        [Some("NULL"), Some("null"), None, Some("x")].map(|s| s.map(str::to_owned))
    );
    match first_row(pooled, sql).await {
        Ok(row) => assert_eq!(elements(&row).ok(), Some(bound)),
        Err(err) => {
            let mut problems = Problems::default();
            problems.unless_refused(sql, &err, "0A000", &["\"tags\"", "NULL", "to_jsonb"]);
            problems.none();
        }
    }
    // What the refusal points to reads the same both ways.
    let sql = "SELECT to_jsonb(ARRAY['NULL', NULL]::text[]) AS tags";
    let json = |row: QueryResult| row.try_get::<serde_json::Value>("", "tags").unwrap();
    assert_eq!(
        json(first_row(pooled, sql).await.unwrap()),
        json(first_row(&direct, sql).await.unwrap())
    );
}

#[tokio::test]
async fn a_stored_tag_named_null_reads_back_or_is_refused_through_the_pooler() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let tags: Vec<String> = vec!["NULL".into(), "ok".into()];
    let read = |db: Pool| async move {
        db.query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT $1::text[] AS tags",
            [Value::from(vec!["NULL".to_owned(), "ok".to_owned()])],
        ))
        .await
        .map(|row| row.unwrap().try_get::<Vec<String>>("", "tags"))
    };
    assert_eq!(read(direct).await.unwrap().unwrap(), tags);
    match read(pooled.clone()).await {
        Ok(decoded) => assert_eq!(decoded.unwrap(), tags),
        Err(err) => {
            let mut problems = Problems::default();
            problems.unless_refused("tags", &err, "0A000", &["\"tags\""]);
            problems.none();
        }
    }
}

#[tokio::test]
async fn arrays_the_text_decoder_would_split_wrongly_are_refused() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let mut problems = Problems::default();
    for sql in [
        "SELECT ARRAY[['a', 'b'], ['c', 'd']] AS tags",
        "SELECT '[0:1]={a,b}'::text[] AS tags",
        "SELECT '{{\"x,y\"}}'::text[] AS tags",
    ] {
        let bound = first_row(&direct, sql)
            .await
            .unwrap()
            .try_get::<Vec<String>>("", "tags")
            .ok();
        match first_row(pooled, sql).await {
            Ok(row) => match row.try_get::<Vec<String>>("", "tags").ok() {
                same if same == bound => {}
                other => problems.answered(sql, other),
            },
            Err(err) => problems.unless_refused(sql, &err, "0A000", &["\"tags\"", "dimension"]),
        }
    }
    // One dimension, quoted commas and braces, escapes and real NULLs read as bound.
    let sql = "SELECT ARRAY['{', 'a,b', '\"', '\\', '', NULL, 'NUL'] AS tags";
    let row = first_row(pooled, sql).await.unwrap();
    assert_eq!(
        elements(&row).unwrap(),
        elements(&first_row(&direct, sql).await.unwrap()).unwrap()
    );
    problems.none();
}

#[tokio::test]
async fn dates_sqlx_cannot_read_as_text_are_refused_naming_the_column() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let mut problems = Problems::default();
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    for (sql, expected) in [
        ("SELECT '0044-03-15 BC'::date AS d", day(-43, 3, 15)),
        ("SELECT '12345-01-01'::date AS d", day(12345, 1, 1)),
        (
            "SELECT '0044-03-15 12:00:00 BC'::timestamp::date AS d, \
             '0044-03-15 12:00:00 BC'::timestamp AS t",
            day(-43, 3, 15),
        ),
        (
            "SELECT '0001-01-01'::date AS d, '12345-01-01 00:00:00+00'::timestamptz AS t",
            day(1, 1, 1),
        ),
        (
            "SELECT '2026-01-01'::date AS d, ARRAY['0001-01-01 BC'::date] AS t",
            day(2026, 1, 1),
        ),
    ] {
        let bound = first_row(&direct, sql).await.unwrap();
        assert_eq!(bound.try_get::<NaiveDate>("", "d").unwrap(), expected);
        match first_row(pooled, sql).await {
            Ok(row) => problems.answered(sql, row.try_get::<NaiveDate>("", "d")),
            Err(err) => problems.unless_refused(sql, &err, "22008", &["column", "year"]),
        }
    }
    // The years sqlx's text decoders read, both ways alike.
    let sql = "SELECT '0001-01-01'::date AS d, '9999-12-31 23:59:59.999999'::timestamp AS t";
    let read = |row: QueryResult| -> (NaiveDate, NaiveDateTime) {
        (row.try_get("", "d").unwrap(), row.try_get("", "t").unwrap())
    };
    assert_eq!(
        read(first_row(pooled, sql).await.unwrap()),
        read(first_row(&direct, sql).await.unwrap())
    );
    problems.none();
}

#[tokio::test]
async fn infinite_and_out_of_range_timestamps_are_refused_on_both_paths_instead_of_a_panic() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let mut problems = Problems::default();
    for sql in [
        "SELECT 'infinity'::timestamptz AS t",
        "SELECT '-infinity'::timestamp AS t",
        "SELECT 'infinity'::date AS t",
        "SELECT '290000-01-01'::timestamp AS t",
        "SELECT ARRAY['infinity'::timestamptz] AS t",
        "SELECT ARRAY[NULL, 'infinity'::timestamptz] AS t",
        "SELECT '24:00:00'::time AS t",
    ] {
        for pool in [direct.clone(), pooled.clone()] {
            let case = format!("{sql} ({:?})", pool.pooler());
            // sqlx's binary decoders overflow chrono's range, and panic.
            let read = tokio::spawn(async move {
                first_row(&pool, sql).await.map(|row| {
                    // Each as the type it can be read as; the others are type errors.
                    format!(
                        "{:?} {:?} {:?} {:?} {:?}",
                        row.try_get::<DateTime<Utc>>("", "t"),
                        row.try_get::<NaiveDateTime>("", "t"),
                        row.try_get::<NaiveDate>("", "t"),
                        row.try_get::<chrono::NaiveTime>("", "t"),
                        row.try_get::<Vec<DateTime<Utc>>>("", "t"),
                    )
                })
            })
            .await;
            match read {
                Err(panicked) => problems.answered(&case, panicked),
                Ok(Ok(read)) => problems.answered(&case, read),
                Ok(Err(err)) => problems.unless_refused(&case, &err, "22008", &["\"t\""]),
            }
        }
    }
    problems.none();
}

#[tokio::test]
async fn values_sea_query_would_panic_on_are_refused_on_both_paths() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let mut problems = Problems::default();
    let cases = [
        (Value::BigUnsigned(Some(u64::MAX)), "22003"),
        (
            Value::Array(
                ArrayType::String,
                Some(Box::new(vec!["a".into(), Value::String(None)])),
            ),
            "0A000",
        ),
        (
            Value::Array(
                ArrayType::Int,
                Some(Box::new(vec![Value::Int(Some(1)), "b".into()])),
            ),
            "0A000",
        ),
    ];
    for (n, (value, sqlstate)) in cases.into_iter().enumerate() {
        for pool in [direct.clone(), pooled.clone()] {
            let case = format!("case {n} ({:?})", pool.pooler());
            let value = value.clone();
            let sent = tokio::spawn(async move {
                pool.query_one_raw(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    format!("SELECT $1 IS NULL AS n -- {n}"),
                    [value],
                ))
                .await
                .map(drop)
            })
            .await;
            match sent {
                Err(panicked) => problems.answered(&case, panicked),
                Ok(Ok(())) => problems.answered(&case, "a row"),
                Ok(Err(err)) => problems.unless_refused(&case, &err, sqlstate, &["$1"]),
            }
        }
    }
    problems.none();
}

/// A pooled transaction with `settings`, reading `sql`'s first row (or refusing the settings).
async fn in_pooled_transaction(
    pool: &Pool,
    settings: &str,
    sql: &str,
) -> Result<QueryResult, DbErr> {
    let txn = pool.begin().await.unwrap();
    txn.execute_unprepared(settings).await?;
    let row = first_row(&txn, sql).await;
    txn.rollback().await.unwrap();
    row
}

#[tokio::test]
async fn extra_float_digits_below_one_is_refused_in_a_pooled_transaction() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let mut problems = Problems::default();
    let sql = "SELECT 1 / 3::float8 AS f, 0.1::float4 AS r";
    let read = |row: QueryResult| -> (f64, f32) {
        (row.try_get("", "f").unwrap(), row.try_get("", "r").unwrap())
    };
    let bound = read(first_row(&direct, sql).await.unwrap());
    assert_eq!(bound, (1.0 / 3.0, 0.1));
    for settings in [
        "SET LOCAL extra_float_digits = 0",
        "SET extra_float_digits TO -15",
        "SELECT set_config('extra_float_digits', '0', true)",
        "SELECT pg_catalog.set_config('EXTRA_FLOAT_DIGITS', '-3', false)",
    ] {
        match in_pooled_transaction(pooled, settings, sql).await {
            Ok(row) => match read(row) {
                same if same == bound => {}
                other => problems.answered(settings, other),
            },
            Err(err) => problems.unless_refused(settings, &err, "0A000", &["extra_float_digits"]),
        }
    }
    // Values of one and more print floats exactly.
    let row = in_pooled_transaction(pooled, "SET LOCAL extra_float_digits = 3", sql)
        .await
        .unwrap();
    assert_eq!(read(row), bound);
    // A session setting through the pooler would stay for the next client: refused too.
    match pooled
        .execute_unprepared("SET extra_float_digits = 0")
        .await
    {
        Ok(_) => problems.answered("a session setting", "set"),
        Err(err) => problems.unless_refused("session", &err, "0A000", &["extra_float_digits"]),
    }
    problems.none();
}

#[tokio::test]
async fn bytes_written_with_bytea_output_escape_are_refused_naming_it() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let mut problems = Problems::default();
    let row = first_row(&direct, "SELECT '\\x00ff'::bytea AS b")
        .await
        .unwrap();
    assert_eq!(row.try_get::<Vec<u8>>("", "b").unwrap(), [0, 255]);
    for sql in [
        "SELECT '\\x00ff'::bytea AS b",
        "SELECT ARRAY['\\x00ff'::bytea] AS b",
    ] {
        match in_pooled_transaction(pooled, "SET LOCAL bytea_output = escape", sql).await {
            Ok(row) => problems.answered(sql, row.try_get::<Vec<u8>>("", "b")),
            Err(err) => problems.unless_refused(sql, &err, "0A000", &["bytea_output", "\"b\""]),
        }
    }
    problems.none();
}

#[tokio::test]
async fn dates_in_a_date_style_other_than_iso_are_refused_naming_it() {
    let db = TestDb::migrated().await;
    let (_, pooled) = both_ways(&db).await;
    let mut problems = Problems::default();
    let dates = "SELECT '2026-03-15'::date AS d, '2026-03-15 12:00:00+00'::timestamptz AS t";
    for style in ["SQL, DMY", "German", "Postgres, MDY"] {
        let settings = format!("SET LOCAL DateStyle = '{style}'");
        match in_pooled_transaction(pooled, &settings, dates).await {
            Ok(row) => problems.answered(style, row.try_get::<NaiveDate>("", "d")),
            Err(err) => problems.unless_refused(style, &err, "0A000", &["DateStyle"]),
        }
    }
    // ISO with another field order prints the same.
    let row = in_pooled_transaction(pooled, "SET LOCAL DateStyle = 'ISO, DMY'", dates)
        .await
        .unwrap();
    assert_eq!(
        row.try_get::<NaiveDate>("", "d").unwrap(),
        NaiveDate::from_ymd_opt(2026, 3, 15).unwrap()
    );
    problems.none();
}

#[tokio::test]
async fn a_timestamptz_in_a_time_zone_other_than_utc_is_refused_naming_it() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let mut problems = Problems::default();
    // A timestamptz prints in the session's time zone: read as a NaiveDateTime (which sqlx
    // allows from text only), sqlx's text decoder keeps the local time, not the UTC one, and an
    // offset with seconds (LMT) fails.
    for (instant, zone) in [
        ("2026-01-01 00:00:00+00", "Asia/Kolkata"),
        ("2026-01-01 00:00:00+00", "America/New_York"),
        ("1800-01-01 00:00:00+00", "Asia/Kolkata"),
    ] {
        let sql = format!("SELECT '{instant}'::timestamptz AS t");
        let bound = first_row(&direct, &sql)
            .await
            .unwrap()
            .try_get::<DateTime<Utc>>("", "t")
            .unwrap()
            .naive_utc();
        let case = format!("{instant} in {zone}");
        let settings = format!("SET LOCAL TimeZone = '{zone}'");
        match in_pooled_transaction(pooled, &settings, &sql).await {
            Ok(row) => match row.try_get::<NaiveDateTime>("", "t").ok() {
                Some(same) if same == bound => {}
                other => problems.answered(&case, other),
            },
            Err(err) => problems.unless_refused(&case, &err, "0A000", &["TimeZone", "\"t\""]),
        }
    }
    // A zone at UTC's offset prints as UTC does; AT TIME ZONE gives the local time to read.
    let sql = "SELECT '2026-01-01 00:00:00+00'::timestamptz AS t, \
               '2026-01-01 00:00:00+00'::timestamptz AT TIME ZONE 'Asia/Kolkata' AS local";
    let row = in_pooled_transaction(pooled, "SET LOCAL TimeZone = 'Europe/London'", sql)
        .await
        .unwrap();
    assert_eq!(
        row.try_get::<NaiveDateTime>("", "local")
            .unwrap()
            .to_string(),
        "2026-01-01 05:30:00"
    );
    assert_eq!(
        row.try_get::<DateTime<Utc>>("", "t").unwrap().to_rfc3339(),
        "2026-01-01T00:00:00+00:00"
    );
    problems.none();
}
