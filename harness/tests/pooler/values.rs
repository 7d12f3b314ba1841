//! What the inliner writes for a value means what the bound value means: wherever the
//! placeholder stands in the statement, for every date and time sqlx can bind, and whatever
//! session state (encoding, escapes, `search_path`) the server session carries. Each case runs
//! bound on a direct connection and inlined through PgBouncer, and the answers are compared.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use db_connect::{Pool, Pooler};
use harness::TestDb;
use sea_orm::{
    ConnectionTrait, DbBackend, Statement, TransactionTrait, Value, sea_query::ArrayType,
};

use crate::pooler::{as_the_server_sees_it, pool_through, warm_pgbouncer};

/// Every column of every row of `sql` with `values`, as text; an error as its SQLSTATE.
pub(crate) async fn answer(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<Vec<Option<String>>>, Option<String>> {
    let rows = db
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            sql,
            values,
        ))
        .await
        .map_err(|err| service::sqlstate(&err))?;
    Ok(rows
        .iter()
        .map(|row| {
            (0..row.column_names().len())
                .map(|i| row.try_get_by_index::<Option<String>>(i).unwrap())
                .collect()
        })
        .collect())
}

/// A direct pool (values bound) and the test's pool through PgBouncer (values inlined).
pub(crate) async fn both_ways(db: &TestDb) -> (Pool, &Pool) {
    let direct = harness::connect(db.direct_url(), 1).await;
    assert_eq!(direct.pooler(), Pooler::None);
    assert_eq!(db.conn().pooler(), Pooler::Transaction);
    (direct, db.conn())
}

/// Each value both ways, by its type and text on the server.
async fn assert_seen_alike(db: &TestDb, values: Vec<Value>) {
    let (direct, pooled) = both_ways(db).await;
    for (position, value) in values.into_iter().enumerate() {
        let bound = as_the_server_sees_it(&direct, position, value.clone()).await;
        let inlined = as_the_server_sees_it(pooled, position, value.clone()).await;
        assert_eq!(inlined, bound, "{value:?}");
    }
}

#[tokio::test]
async fn placeholders_read_as_values_wherever_they_stand() {
    let db = TestDb::migrated().await;
    let (direct, pooled) = both_ways(&db).await;
    let words = || {
        Value::Array(
            ArrayType::String,
            Some(Box::new(vec!["first".into(), "second".into()])),
        )
    };
    let cases: Vec<(&str, Vec<Value>)> = vec![
        ("SELECT ($1[1])::text", vec![words()]),
        ("SELECT ($1[2:2])::text", vec![words()]),
        ("SELECT ($1)[1], array_length($1, 1)::text", vec![words()]),
        ("SELECT (-$1)::text", vec![Value::Int(Some(i32::MIN))]),
        ("SELECT (-$1)::text", vec![Value::BigInt(Some(-5))]),
        ("SELECT ($1 IS NULL)::text", vec![Value::Int(None)]),
        ("SELECT ($1.x)::text", vec![Value::Int(Some(1))]),
        ("SELECT $1::text, $2::text", vec![Value::Int(Some(1))]),
    ];
    for (n, (sql, values)) in cases.into_iter().enumerate() {
        // sqlx prepares a statement with the parameter types of its first use: one text each.
        let sql = &format!("{sql} -- case {n}");
        let bound = answer(&direct, sql, values.clone()).await;
        let inlined = answer(pooled, sql, values).await;
        assert_eq!(inlined, bound, "{sql}");
    }
    // PostgreSQL ignores a bound value no placeholder uses; the inliner refuses it, as a sign
    // that it read the statement's placeholders otherwise than the caller meant.
    let unused = vec![Value::Int(Some(1)), Value::Int(Some(2))];
    assert_eq!(
        answer(pooled, "SELECT $1::text", unused).await,
        Err(Some("08P01".to_owned()))
    );
}

#[tokio::test]
async fn type_names_resolve_in_pg_catalog_whatever_search_path_another_client_left() {
    let db = TestDb::migrated().await;
    db.conn()
        .execute_unprepared(
            "CREATE SCHEMA evil;
             CREATE DOMAIN evil.text AS varchar(3);
             CREATE DOMAIN evil.timestamptz AS date",
        )
        .await
        .unwrap();
    let bouncer = warm_pgbouncer(&db, 1).await;
    let (other, ours) = (
        pool_through(&bouncer, &db).await,
        pool_through(&bouncer, &db).await,
    );
    other
        .execute_unprepared("SET search_path = evil, pg_catalog, public")
        .await
        .unwrap();
    assert_eq!(
        harness::text_rows(&ours, "SELECT current_setting('search_path')").await,
        [[Some("evil, pg_catalog, public".to_owned())]],
        "the setting stayed on the one server session"
    );
    let instant: DateTime<Utc> = "2026-03-04T05:06:07.123456Z".parse().unwrap();
    let sql = "SELECT ($1)::pg_catalog.text, pg_typeof($1)::pg_catalog.oid::pg_catalog.text";
    for (value, expected) in [
        (Value::from("abcdef"), ["abcdef", "25"]),
        (
            Value::from(instant),
            ["2026-03-04 05:06:07.123456+00", "1184"],
        ),
    ] {
        assert_eq!(
            answer(&ours, sql, vec![value]).await,
            Ok(vec![expected.map(|s| Some(s.to_owned())).to_vec()])
        );
    }
}

/// A small xorshift, so the random instants are the same on every run.
struct Xorshift(u64);

impl Xorshift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn naive(text: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").unwrap()
}

#[tokio::test]
async fn dates_times_and_timestamps_reach_the_server_as_sqlx_binds_them() {
    let db = TestDb::migrated().await;
    let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let leap_second = day(2016, 12, 31)
        .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
        .unwrap();
    let offset = |seconds| FixedOffset::east_opt(seconds).unwrap();
    let mut values = vec![
        // Before 2000, sqlx rounds sub-microsecond digits towards 2000-01-01.
        Value::ChronoDateTime(Some(naive("1999-12-31 23:59:59.0000005"))),
        Value::ChronoDateTime(Some(naive("1970-01-01 00:00:00.000000999"))),
        Value::ChronoDateTime(Some(naive("2000-01-01 00:00:00.000000999"))),
        Value::ChronoDateTimeUtc(Some(
            Utc.from_utc_datetime(&naive("1969-07-20 20:17:40.1234569")),
        )),
        Value::ChronoDateTime(Some(leap_second)),
        Value::ChronoTime(Some(
            NaiveTime::from_hms_nano_opt(23, 59, 59, 1_500_000_000).unwrap(),
        )),
        Value::ChronoTime(Some(
            NaiveTime::from_hms_nano_opt(23, 59, 59, 1_000_000_000).unwrap(),
        )),
        Value::ChronoTime(Some(
            NaiveTime::from_hms_nano_opt(23, 59, 59, 999_999_999).unwrap(),
        )),
        // Years PostgreSQL writes with BC, or with five digits and more.
        Value::ChronoDate(Some(day(0, 12, 31))),
        Value::ChronoDate(Some(day(-4712, 1, 1))),
        Value::ChronoDate(Some(day(-4713, 12, 31))),
        Value::ChronoDate(Some(day(-4713, 1, 1))),
        Value::ChronoDateTime(Some(day(-4713, 1, 1).and_hms_opt(0, 0, 0).unwrap())),
        Value::ChronoDate(Some(day(10000, 1, 1))),
        Value::ChronoDate(Some(day(262_000, 6, 30))),
        Value::ChronoDateTime(Some(
            day(-43, 3, 15).and_hms_milli_opt(12, 0, 0, 250).unwrap(),
        )),
        Value::ChronoDateTime(Some(
            day(12345, 1, 1).and_hms_nano_opt(0, 0, 0, 1_500).unwrap(),
        )),
        Value::ChronoDateTimeWithTimeZone(Some(
            offset(5 * 3600 + 45 * 60 + 17)
                .from_local_datetime(&naive("0001-01-01 03:00:00.5"))
                .unwrap(),
        )),
        Value::ChronoDateTimeWithTimeZone(Some(
            offset(-86399)
                .from_local_datetime(&naive("9999-12-31 00:00:00"))
                .unwrap(),
        )),
        Value::Array(
            ArrayType::ChronoDateTime,
            Some(Box::new(vec![
                Value::ChronoDateTime(Some(
                    day(0, 2, 29)
                        .and_hms_nano_opt(23, 59, 59, 999_999_900)
                        .unwrap(),
                )),
                Value::ChronoDateTime(Some(naive("1999-12-31 23:59:59.9999995"))),
            ])),
        ),
    ];
    let mut random = Xorshift(0x9e37_79b9_7f4a_7c15);
    for _ in 0..100 {
        let seconds = (random.next() % 70_000_000_000) as i64 - 65_000_000_000;
        let nanos = (random.next() % 1_000_000_000) as u32;
        values.push(Value::ChronoDateTimeUtc(Some(
            Utc.timestamp_opt(seconds, nanos).unwrap(),
        )));
    }
    assert_seen_alike(&db, values).await;
}

#[tokio::test]
async fn one_byte_integers_and_negative_nan_reach_the_server_as_bound() {
    let db = TestDb::migrated().await;
    let bytes = [-128, -1, 0, 1, 39, 92, 127];
    let mut values: Vec<Value> = bytes.iter().map(|&b| Value::TinyInt(Some(b))).collect();
    values.push(Value::TinyInt(None));
    values.push(Value::Array(
        ArrayType::TinyInt,
        Some(Box::new(
            bytes.iter().map(|&b| Value::TinyInt(Some(b))).collect(),
        )),
    ));
    assert_seen_alike(&db, values).await;

    // The bits of floats, sign of NaN included.
    let (direct, pooled) = both_ways(&db).await;
    for (n, value) in [
        Value::Double(Some(-f64::NAN)),
        Value::Double(Some(f64::NAN)),
        Value::Float(Some(-f32::NAN)),
        Value::Double(Some(-0.0)),
        Value::Float(Some(f32::NEG_INFINITY)),
    ]
    .into_iter()
    .enumerate()
    {
        let send = match value {
            Value::Float(_) => "float4send",
            _ => "float8send",
        };
        let sql = format!("SELECT {send}($1)::text -- {n}");
        let bound = answer(&direct, &sql, vec![value.clone()]).await;
        let inlined = answer(pooled, &sql, vec![value.clone()]).await;
        assert_eq!(inlined, bound, "{value:?}");
    }
}

#[tokio::test]
async fn no_session_encoding_or_escape_setting_lets_a_value_end_its_literal() {
    let db = TestDb::migrated().await;
    // In SJIS the bytes of `Á` end in a lead byte, in GBK those of `丁`: either swallows the
    // backslash an escaping quoter would put before the quote.
    let cases = [
        (
            "SET LOCAL client_encoding = 'GBK'; SET LOCAL backslash_quote = on",
            "\u{4e01}\\'; SELECT 42 AS pwned; --",
        ),
        (
            "SET LOCAL client_encoding = 'SJIS'; SET LOCAL backslash_quote = on",
            "\u{c1}\\'; SELECT 42 AS pwned; --",
        ),
        (
            "SET LOCAL standard_conforming_strings = off",
            "\\'; SELECT 42 AS pwned; --",
        ),
    ];
    for (settings, payload) in cases {
        let txn = db.conn().begin().await.unwrap();
        txn.execute_unprepared(settings).await.unwrap();
        let rows = txn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT $1 AS v",
                [Value::from(payload)],
            ))
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{settings}: one statement ran");
        assert_eq!(rows[0].column_names(), ["v"], "{settings}");
        txn.rollback().await.unwrap();
    }
}

/// A Slack delivery whose payload is one string of about `bytes` bytes.
fn delivery_of(event_id: String, text: String) -> service::events::SlackDelivery {
    service::events::SlackDelivery {
        event_id,
        event_type: "message".into(),
        team_id: "T1".into(),
        channel_id: None,
        slack_user_id: None,
        payload: serde_json::json!({ "text": text }),
    }
}

#[tokio::test]
async fn a_payload_of_dollar_quote_tags_ingests_about_as_fast_as_a_plain_one() {
    use service::events::{self, SlackEvents};
    use std::time::{Duration, Instant};
    const BYTES: usize = 64 * 1024;
    let db = TestDb::migrated().await;
    assert_eq!(db.conn().pooler(), Pooler::Transaction);
    harness::fixtures::organization_with_teams(db.conn(), "org_payloads", "T1")
        .await
        .unwrap();
    // Every tag the inliner might pick, in order: `$v$`, `$v1$`, `$v2$`, ...
    let mut tags = String::from("$v$");
    for n in 1.. {
        if tags.len() >= BYTES {
            break;
        }
        tags.push_str(&format!("$v{n}$"));
    }
    let plain = "x".repeat(tags.len());
    let mut fastest = [Duration::MAX; 2];
    for round in 0..3 {
        for (kind, text) in [&plain, &tags].into_iter().enumerate() {
            let batch = [delivery_of(format!("Ev{round}-{kind}"), text.clone())];
            let started = Instant::now();
            let ingested = events::ingest_batch::<SlackEvents>(db.conn(), &batch)
                .await
                .unwrap();
            fastest[kind] = fastest[kind].min(started.elapsed());
            assert_eq!(ingested.inserted.len(), 1);
        }
    }
    let [plain_time, tags_time] = fastest;
    println!(
        "figure: a 64 KiB payload ingests in {plain_time:?} plain, {tags_time:?} of dollar tags"
    );
    // Generous for a busy machine; a tag search that rescans the text per candidate tag takes
    // over a second here.
    assert!(
        tags_time <= plain_time * 10 + Duration::from_millis(100),
        "{tags_time:?} against {plain_time:?}"
    );
    let stored: String = db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT payload->>'text' FROM slack_events WHERE event_id = 'Ev0-1'",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get_by_index(0)
        .unwrap();
    assert!(stored == tags, "the payload of tags is stored as sent");
}
