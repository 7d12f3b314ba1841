//! The property behind every other pooler test: for any statement shape and any values, the
//! statement inlined through PgBouncer answers what it answers bound on a direct connection, or
//! both fail with an error of the same SQLSTATE class. The shapes hold literals of every kind
//! (`'...'`, `E'...'`, `E''` and `''` continued on a new line, `U&'...'`, `N'...'`, `B''`,
//! `X''`, dollar quotes with tags), quoted identifiers, `--` comments ending at `\n`, `\r` or
//! the end, nested `/* */` comments and CR/LF whitespace, all holding text that looks like
//! placeholders, quotes, tags and comment marks; the values are of every type the inliner
//! writes, NULLs and refused ones included.
//!
//! `POOLER_PROPERTY_CASES` sets how many cases run (default 300, a few seconds); see
//! docs/reliability.md for the long run.

use db_connect::Pool;
use harness::TestDb;
use proptest::{
    collection::vec,
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use sea_orm::{Value, sea_query::ArrayType};

use crate::pooler_values::{answer, both_ways};

const CASES: &str = "POOLER_PROPERTY_CASES";
const DEFAULT_CASES: u32 = 300;

/// Pieces of text that mean something somewhere in SQL.
fn content() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("'"),
        Just("''"),
        Just("\\"),
        Just("$"),
        Just("$1"),
        Just("$2"),
        Just("$v$"),
        Just("$t$"),
        Just("--"),
        Just("/*"),
        Just("*/"),
        Just("\n"),
        Just("\r"),
        Just("\""),
        Just(";"),
        Just("E'"),
        Just("é"),
        Just("a"),
        Just(" "),
    ];
    vec(piece, 0..8).prop_map(|pieces| pieces.concat())
}

/// Whitespace that may separate tokens, with or without a newline.
fn space() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(" "),
        Just("\n"),
        Just("\r"),
        Just("\r\n"),
        Just("\t"),
        Just("\u{c}"),
        Just(" \n "),
    ]
}

/// What may stand between two strings for the second to continue the first.
fn continuation() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("\n"),
        Just("\r"),
        Just(" \r\n\t"),
        Just(" -- c\n"),
        Just("\n-- c'\r  "),
        Just("\u{c}\n\n"),
    ]
}

fn without(text: &str, bytes: &[char]) -> String {
    text.chars().filter(|c| !bytes.contains(c)).collect()
}

/// The body of an `E'...'` string reading as `text` (non-ASCII written as `\u` escapes, so no
/// backslash follows a non-ASCII byte).
fn escaped(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\\' => "\\\\".to_owned(),
            '\'' => "\\'".to_owned(),
            c if (c as u32) > 0xffff => format!("\\U{:08x}", c as u32),
            c if !c.is_ascii() => format!("\\u{:04x}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

fn doubled(text: &str, quote: char) -> String {
    text.replace(quote, &format!("{quote}{quote}"))
}

/// A dollar-quoted string of `text`, with the characters that would close it early dropped.
fn dollar_quoted(tag: &str, text: &str) -> String {
    let delimiter = format!("${tag}$");
    let mut body = text.to_owned();
    while format!("{body}{delimiter}").find(&delimiter) != Some(body.len()) {
        body = body.replacen('$', "", 1);
    }
    format!("{delimiter}{body}{delimiter}")
}

/// One select-list item that holds no parameter, whatever text it holds.
fn decoy() -> impl Strategy<Value = String> {
    let tag = prop_oneof![Just(""), Just("t"), Just("v"), Just("é"), Just("_1")];
    prop_oneof![
        content().prop_map(|c| format!("'{}'::text", doubled(&without(&c, &['\\']), '\''))),
        content().prop_map(|c| format!("N'{}'::text", doubled(&without(&c, &['\\']), '\''))),
        content().prop_map(|c| format!("E'{}'::text", escaped(&c))),
        (content(), continuation(), content()).prop_map(|(a, between, b)| format!(
            "E'{}'{between}'{}'::text",
            escaped(&a),
            escaped(&b)
        )),
        (content(), continuation(), content()).prop_map(|(a, between, b)| format!(
            "'{}'{between}'{}'::text",
            doubled(&without(&a, &['\\']), '\''),
            doubled(&without(&b, &['\\']), '\'')
        )),
        content().prop_map(|c| format!("U&'{}'::text", doubled(&c.replace('\\', "\\\\"), '\''))),
        (tag, content()).prop_map(|(tag, c)| format!("{}::text", dollar_quoted(tag, &c))),
        (content(), content()).prop_map(|(alias, c)| format!(
            "'{}' AS \"x{}\"",
            doubled(&without(&c, &['\\']), '\''),
            doubled(&without(&alias, &['\0']), '"')
        )),
        (
            continuation(),
            prop_oneof![Just("0110"), Just(""), Just("1")]
        )
            .prop_map(|(between, bits)| format!("(B'1'{between}'{bits}')::text")),
        Just("(X'1f' || X'')::text".to_owned()),
    ]
}

/// What may separate two items: a comma with whitespace and comments around it.
fn separator() -> impl Strategy<Value = String> {
    let comment = prop_oneof![
        (content(), prop_oneof![Just("\n"), Just("\r"), Just("\r\n")])
            .prop_map(|(c, end)| format!("-- {}{end}", without(&c, &['\n', '\r']))),
        (content(), content()).prop_map(|(a, b)| format!(
            "/* {} /* {} */ */",
            without(&a, &['*', '/']),
            without(&b, &['*', '/'])
        )),
        space().prop_map(str::to_owned),
    ];
    (comment.clone(), comment).prop_map(|(before, after)| format!("{before},{after}"))
}

/// Where a parameter stands; every form reads as text.
fn parameter_site(n: usize, form: u8) -> String {
    match form % 6 {
        0 => format!("${n}::text"),
        1 => format!("(${n})::text"),
        2 => format!("pg_typeof(${n})::text"),
        3 => format!("(${n} IS NULL)::text"),
        4 => format!("${n}[1]::text"),
        _ => format!("CAST(${n} AS text)"),
    }
}

fn day() -> impl Strategy<Value = chrono::NaiveDate> {
    // Years PostgreSQL and chrono hold, and a few beyond PostgreSQL's first day.
    (-4800i32..12000, 1u32..=366).prop_filter_map("a day of that year", |(year, day)| {
        chrono::NaiveDate::from_yo_opt(year, day)
    })
}

fn time() -> impl Strategy<Value = chrono::NaiveTime> {
    // A nanosecond count past one second is a leap second.
    (0u32..86_400, 0u32..1_000_000_000, any::<bool>()).prop_filter_map(
        "a time of day",
        |(seconds, nanos, leap)| {
            let nanos = nanos
                + if leap && seconds % 60 == 59 {
                    1_000_000_000
                } else {
                    0
                };
            chrono::NaiveTime::from_num_seconds_from_midnight_opt(seconds, nanos)
        },
    )
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        (-1e300f64..1e300).prop_map(serde_json::Value::from),
        content().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(serde_json::Value::from),
            vec((content(), inner), 0..3)
                .prop_map(|entries| { serde_json::Value::Object(entries.into_iter().collect()) }),
        ]
    })
}

fn text_value() -> impl Strategy<Value = String> {
    prop_oneof![
        content(),
        vec(any::<char>(), 0..6).prop_map(String::from_iter)
    ]
}

/// A value of every type the inliner writes (NULLs, and values both paths refuse, included).
fn value() -> impl Strategy<Value = Value> {
    let array = |ty: ArrayType, items: BoxedStrategy<Value>| {
        vec(items, 0..4).prop_map(move |items| Value::Array(ty.clone(), Some(Box::new(items))))
    };
    prop_oneof![
        any::<Option<bool>>().prop_map(Value::Bool),
        any::<Option<i8>>().prop_map(Value::TinyInt),
        any::<Option<i16>>().prop_map(Value::SmallInt),
        any::<Option<i32>>().prop_map(Value::Int),
        any::<Option<i64>>().prop_map(Value::BigInt),
        any::<Option<u8>>().prop_map(Value::TinyUnsigned),
        any::<Option<u16>>().prop_map(Value::SmallUnsigned),
        any::<Option<u32>>().prop_map(Value::Unsigned),
        any::<Option<u64>>().prop_map(Value::BigUnsigned),
        any::<Option<f32>>().prop_map(Value::Float),
        any::<Option<f64>>().prop_map(Value::Double),
        proptest::option::of(text_value()).prop_map(Value::String),
        any::<Option<char>>().prop_map(Value::Char),
        proptest::option::of(vec(any::<u8>(), 0..12)).prop_map(Value::Bytes),
        proptest::option::of(json()).prop_map(|j| Value::Json(j.map(Box::new))),
        proptest::option::of(day()).prop_map(Value::ChronoDate),
        proptest::option::of(time()).prop_map(Value::ChronoTime),
        proptest::option::of((day(), time()).prop_map(|(d, t)| d.and_time(t)))
            .prop_map(Value::ChronoDateTime),
        proptest::option::of((day(), time()).prop_map(|(d, t)| d.and_time(t).and_utc()))
            .prop_map(Value::ChronoDateTimeUtc),
        proptest::option::of(any::<[u8; 16]>().prop_map(uuid::Uuid::from_bytes))
            .prop_map(Value::Uuid),
        array(
            ArrayType::String,
            text_value().prop_map(Value::from).boxed()
        ),
        array(ArrayType::Int, any::<i32>().prop_map(Value::from).boxed()),
        array(
            ArrayType::Double,
            any::<f64>().prop_map(Value::from).boxed()
        ),
        array(
            ArrayType::ChronoDateTimeUtc,
            (day(), time())
                .prop_map(|(d, t)| Value::from(d.and_time(t).and_utc()))
                .boxed()
        ),
        array(
            ArrayType::Json,
            json().prop_map(|j| Value::Json(Some(Box::new(j)))).boxed()
        ),
        // Refused both ways: a NULL element.
        array(
            ArrayType::String,
            proptest::option::of(text_value())
                .prop_map(Value::String)
                .boxed()
        ),
        Just(Value::Array(ArrayType::Uuid, None)),
    ]
}

/// A statement of decoys and parameter sites, every value used at least once.
#[derive(Debug, Clone)]
struct Case {
    sql: String,
    values: Vec<Value>,
}

fn case() -> impl Strategy<Value = Case> {
    let item = prop_oneof![
        decoy().prop_map(Err),
        (any::<usize>(), any::<u8>()).prop_map(Ok),
    ];
    (
        vec(value(), 1..4),
        vec((item, separator()), 0..6),
        prop_oneof![
            Just(""),
            Just(";"),
            Just(" ;\n-- end"),
            Just("\n-- end $1 '")
        ],
    )
        .prop_map(|(values, items, end)| {
            let mut used = vec![false; values.len()];
            let mut sql = String::from("SELECT ");
            for (item, separator) in items {
                match item {
                    Err(decoy) => sql.push_str(&decoy),
                    Ok((n, form)) => {
                        let n = n % values.len() + 1;
                        used[n - 1] = true;
                        sql.push_str(&parameter_site(n, form));
                    }
                }
                sql.push_str(&separator);
            }
            for (n, used) in used.into_iter().enumerate() {
                if !used {
                    sql.push_str(&parameter_site(n + 1, n as u8));
                    sql.push_str(", ");
                }
            }
            sql.push_str("1::text");
            sql.push_str(end);
            Case { sql, values }
        })
}

async fn agree(direct: &Pool, pooled: &Pool, case: &Case, n: usize) -> Result<(), TestCaseError> {
    // sqlx caches a statement by its text with the parameter types of its first use.
    let sql = format!("{}\n-- case {n}", case.sql);
    let bound = answer(direct, &sql, case.values.clone()).await;
    let inlined = answer(pooled, &sql, case.values.clone()).await;
    let class = |code: &Option<String>| code.as_deref().map(|c| c[..2].to_owned());
    let agreed = match (&bound, &inlined) {
        (Ok(_), Ok(_)) => bound == inlined,
        (Err(bound), Err(inlined)) => class(bound) == class(inlined),
        _ => false,
    };
    prop_assert!(
        agreed,
        "{sql:?} with {:?}: bound {bound:?}, inlined {inlined:?}",
        case.values
    );
    Ok(())
}

#[test]
fn any_statement_inlined_through_pgbouncer_answers_as_it_does_bound() {
    let cases = std::env::var(CASES)
        .ok()
        .map(|n| {
            n.parse()
                .unwrap_or_else(|_| panic!("{CASES}={n} is not a count"))
        })
        .unwrap_or(DEFAULT_CASES);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::migrated());
    let (direct, pooled) = runtime.block_on(async {
        let (direct, pooled) = both_ways(&db).await;
        (direct, pooled.clone())
    });
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = std::time::Instant::now();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let outcome = runner.run(&case(), |case| {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        runtime.block_on(agree(&direct, &pooled, &case, n))
    });
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
    println!(
        "figure: {cases} generated statements agreed inlined and bound in {:?}",
        started.elapsed()
    );
}
