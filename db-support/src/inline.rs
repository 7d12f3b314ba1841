//! A statement with its parameters written into the SQL text as typed literals, for the simple
//! query protocol: one message, one round trip, and nothing prepared on the server.
//!
//! Through a transaction-mode pooler this is what stays correct: sqlx prepares every statement
//! in a `Sync` of its own before binding it, and the pooler may hand the next `Sync` to another
//! server session (see `docs/deployment.md`). psycopg2, Rails without prepared statements and
//! pgx's simple-protocol mode do the same. Each literal is a quoted string with an explicit cast
//! to the type sqlx would have sent for the parameter (`E'...'::text`, `'...'::uuid`), so the
//! server parses the value exactly as it would parse the bound one, and no value can end the
//! literal early: quotes and backslashes are escaped inside an `E''` string, which means the
//! same whatever `standard_conforming_strings` says.

use std::fmt::Write as _;

use sea_orm::{
    Value,
    sea_query::{ArrayType, OptionEnum},
};

/// Why a statement could not be written out with its parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InlineError {
    #[error("the statement uses parameter ${0} but only {1} values were given")]
    MissingValue(usize, usize),
    #[error(
        "parameters of type {0} cannot be sent through a transaction-mode pooler by this workspace"
    )]
    Unsupported(&'static str),
    #[error("the value {0} is out of range for PostgreSQL's bigint")]
    OutOfRange(u64),
    #[error("the date {0} cannot be written as a PostgreSQL literal (years 1 to 9999 only)")]
    DateOutOfRange(String),
    #[error("the statement has an unterminated {0}")]
    Unterminated(&'static str),
}

/// `sql` with every `$n` placeholder outside strings, quoted identifiers and comments replaced
/// by the literal of `values[n - 1]`.
pub fn inline(sql: &str, values: &[Value]) -> Result<String, InlineError> {
    if values.is_empty() {
        return Ok(sql.to_owned());
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 16 * values.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let previous_is_word = i > 0 && is_word_byte(bytes[i - 1]);
        match bytes[i] {
            b'\'' => {
                let escapes =
                    i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !before_is_word(bytes, i - 1);
                i = skip_string(bytes, i + 1, escapes)?;
            }
            b'"' => i = skip_until_quote(bytes, i + 1, b'"', "quoted identifier")?,
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = bytes[i..]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(bytes.len(), |n| i + n + 1);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i + 2)?,
            b'$' if !previous_is_word && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                let end = i + 1 + digits;
                let index: usize = sql[i + 1..end]
                    .parse()
                    .map_err(|_| InlineError::MissingValue(usize::MAX, values.len()))?;
                let value = index
                    .checked_sub(1)
                    .and_then(|n| values.get(n))
                    .ok_or(InlineError::MissingValue(index, values.len()))?;
                out.push_str(&sql[copied..i]);
                literal(&mut out, value)?;
                copied = end;
                i = end;
            }
            b'$' if !previous_is_word => i = skip_dollar_quote(bytes, i)?,
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    Ok(out)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn before_is_word(bytes: &[u8], at: usize) -> bool {
    at > 0 && is_word_byte(bytes[at - 1])
}

/// The index after the `'` closing a string whose body starts at `from` (`''` is a quote; in
/// an `E''` string a backslash escapes the next byte).
fn skip_string(bytes: &[u8], mut from: usize, escapes: bool) -> Result<usize, InlineError> {
    while from < bytes.len() {
        match bytes[from] {
            b'\\' if escapes => from += 2,
            b'\'' if bytes.get(from + 1) == Some(&b'\'') => from += 2,
            b'\'' => return Ok(from + 1),
            _ => from += 1,
        }
    }
    Err(InlineError::Unterminated("string literal"))
}

fn skip_until_quote(
    bytes: &[u8],
    mut from: usize,
    quote: u8,
    what: &'static str,
) -> Result<usize, InlineError> {
    while from < bytes.len() {
        if bytes[from] == quote {
            if bytes.get(from + 1) == Some(&quote) {
                from += 2;
                continue;
            }
            return Ok(from + 1);
        }
        from += 1;
    }
    Err(InlineError::Unterminated(what))
}

/// Block comments nest in PostgreSQL.
fn skip_block_comment(bytes: &[u8], mut from: usize) -> Result<usize, InlineError> {
    let mut depth = 1;
    while from + 1 < bytes.len() {
        match (bytes[from], bytes[from + 1]) {
            (b'/', b'*') => {
                depth += 1;
                from += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                from += 2;
                if depth == 0 {
                    return Ok(from);
                }
            }
            _ => from += 1,
        }
    }
    Err(InlineError::Unterminated("block comment"))
}

/// `$tag$ ... $tag$` (the tag may be empty); a `$` that starts no such quote is skipped alone.
fn skip_dollar_quote(bytes: &[u8], start: usize) -> Result<usize, InlineError> {
    let tag_len = bytes[start + 1..]
        .iter()
        .take_while(|&&b| b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80)
        .count();
    let close = start + 1 + tag_len;
    if bytes.get(close) != Some(&b'$') || bytes.get(start + 1).is_some_and(u8::is_ascii_digit) {
        return Ok(start + 1);
    }
    let tag = &bytes[start..=close];
    bytes[close + 1..]
        .windows(tag.len())
        .position(|window| window == tag)
        .map(|n| close + 1 + n + tag.len())
        .ok_or(InlineError::Unterminated("dollar-quoted string"))
}

/// Writes `value` as a literal of the type sqlx binds it as (see sea-query-sqlx's encoding).
fn literal(out: &mut String, value: &Value) -> Result<(), InlineError> {
    let ty = type_name(value)?;
    if is_null(value) {
        let _ = write!(out, "NULL::{ty}");
        return Ok(());
    }
    match value {
        Value::Bool(Some(b)) => out.push_str(if *b { "true" } else { "false" }),
        Value::Array(element, Some(items)) => {
            if items.is_empty() {
                let _ = write!(out, "'{{}}'::{ty}");
                return Ok(());
            }
            out.push_str("ARRAY[");
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                if array_element_type(element)? != type_name(item)? {
                    return Err(InlineError::Unsupported("arrays of mixed types"));
                }
                literal(out, item)?;
            }
            let _ = write!(out, "]::{ty}");
        }
        _ => {
            quoted(out, &text_of(value)?);
            let _ = write!(out, "::{ty}");
        }
    }
    Ok(())
}

/// An `E''` string: backslashes and quotes doubled. A NUL is written as `\x00`, which the server
/// refuses with the same error a bound text parameter holding one gets (invalid byte sequence).
fn quoted(out: &mut String, text: &str) {
    out.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\x00"),
            c => out.push(c),
        }
    }
    out.push('\'');
}

fn is_null(value: &Value) -> bool {
    match value {
        Value::Enum(e) => !e.is_some(),
        Value::Array(_, items) => items.is_none(),
        other => matches!(
            other,
            Value::Bool(None)
                | Value::TinyInt(None)
                | Value::SmallInt(None)
                | Value::Int(None)
                | Value::BigInt(None)
                | Value::TinyUnsigned(None)
                | Value::SmallUnsigned(None)
                | Value::Unsigned(None)
                | Value::BigUnsigned(None)
                | Value::Float(None)
                | Value::Double(None)
                | Value::String(None)
                | Value::Char(None)
                | Value::Bytes(None)
                | Value::Json(None)
                | Value::ChronoDate(None)
                | Value::ChronoTime(None)
                | Value::ChronoDateTime(None)
                | Value::ChronoDateTimeUtc(None)
                | Value::ChronoDateTimeLocal(None)
                | Value::ChronoDateTimeWithTimeZone(None)
                | Value::Uuid(None)
        ),
    }
}

/// The PostgreSQL type sqlx gives the parameter.
fn type_name(value: &Value) -> Result<&'static str, InlineError> {
    Ok(match value {
        Value::Bool(_) => "boolean",
        Value::TinyInt(_) => return Err(InlineError::Unsupported("i8 (PostgreSQL \"char\")")),
        Value::SmallInt(_) | Value::TinyUnsigned(_) => "int2",
        Value::Int(_) | Value::SmallUnsigned(_) => "int4",
        Value::BigInt(_) | Value::Unsigned(_) | Value::BigUnsigned(_) => "int8",
        Value::Float(_) => "float4",
        Value::Double(_) => "float8",
        Value::String(_) | Value::Char(_) | Value::Enum(_) => "text",
        Value::Bytes(_) => "bytea",
        Value::Json(_) => "jsonb",
        Value::ChronoDate(_) => "date",
        Value::ChronoTime(_) => "time",
        Value::ChronoDateTime(_) => "timestamp",
        Value::ChronoDateTimeUtc(_)
        | Value::ChronoDateTimeLocal(_)
        | Value::ChronoDateTimeWithTimeZone(_) => "timestamptz",
        Value::Uuid(_) => "uuid",
        Value::Array(element, _) => array_type_name(element)?,
        #[allow(unreachable_patterns)]
        _ => return Err(InlineError::Unsupported("this value")),
    })
}

fn array_element_type(element: &ArrayType) -> Result<&'static str, InlineError> {
    let name = array_type_name(element)?;
    Ok(&name[..name.len() - 2])
}

fn array_type_name(element: &ArrayType) -> Result<&'static str, InlineError> {
    Ok(match element {
        ArrayType::Bool => "boolean[]",
        ArrayType::TinyInt => return Err(InlineError::Unsupported("i8 (PostgreSQL \"char\")")),
        ArrayType::SmallInt | ArrayType::TinyUnsigned => "int2[]",
        ArrayType::Int | ArrayType::SmallUnsigned => "int4[]",
        ArrayType::BigInt | ArrayType::Unsigned | ArrayType::BigUnsigned => "int8[]",
        ArrayType::Float => "float4[]",
        ArrayType::Double => "float8[]",
        ArrayType::String | ArrayType::Char | ArrayType::Enum(_) => "text[]",
        ArrayType::Bytes => "bytea[]",
        ArrayType::Json => "jsonb[]",
        ArrayType::ChronoDate => "date[]",
        ArrayType::ChronoTime => "time[]",
        ArrayType::ChronoDateTime => "timestamp[]",
        ArrayType::ChronoDateTimeUtc
        | ArrayType::ChronoDateTimeLocal
        | ArrayType::ChronoDateTimeWithTimeZone => "timestamptz[]",
        ArrayType::Uuid => "uuid[]",
        #[allow(unreachable_patterns)]
        _ => return Err(InlineError::Unsupported("this array")),
    })
}

/// The text PostgreSQL's input function for the parameter's type reads back as the same value
/// sqlx would have sent in binary.
fn text_of(value: &Value) -> Result<String, InlineError> {
    use chrono::{NaiveDateTime, Timelike};
    // sqlx sends timestamps as whole microseconds, dropping finer digits.
    let micros = |t: NaiveDateTime| -> Result<String, InlineError> {
        if !(1..=9999).contains(&chrono::Datelike::year(&t)) {
            return Err(InlineError::DateOutOfRange(t.to_string()));
        }
        let t = t
            .with_nanosecond(t.nanosecond() / 1000 * 1000)
            .expect("fewer nanoseconds is still valid");
        Ok(t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
    };
    Ok(match value {
        Value::SmallInt(Some(v)) => v.to_string(),
        Value::Int(Some(v)) => v.to_string(),
        Value::BigInt(Some(v)) => v.to_string(),
        Value::TinyUnsigned(Some(v)) => v.to_string(),
        Value::SmallUnsigned(Some(v)) => v.to_string(),
        Value::Unsigned(Some(v)) => v.to_string(),
        Value::BigUnsigned(Some(v)) => i64::try_from(*v)
            .map_err(|_| InlineError::OutOfRange(*v))?
            .to_string(),
        Value::Float(Some(v)) => float_text(f64::from(*v), v.to_string()),
        Value::Double(Some(v)) => float_text(*v, v.to_string()),
        Value::String(Some(s)) => s.clone(),
        Value::Char(Some(c)) => c.to_string(),
        Value::Enum(OptionEnum::Some(e)) => e.value.to_string(),
        Value::Bytes(Some(b)) => {
            let mut hex = String::with_capacity(2 + 2 * b.len());
            hex.push_str("\\x");
            for byte in b {
                let _ = write!(hex, "{byte:02x}");
            }
            hex
        }
        Value::Json(Some(j)) => j.to_string(),
        Value::ChronoDate(Some(d)) => {
            micros(d.and_hms_opt(0, 0, 0).expect("midnight"))?[..10].to_owned()
        }
        Value::ChronoTime(Some(t)) => t
            .with_nanosecond(t.nanosecond() / 1000 * 1000)
            .expect("fewer nanoseconds is still valid")
            .format("%H:%M:%S%.6f")
            .to_string(),
        Value::ChronoDateTime(Some(t)) => micros(*t)?,
        Value::ChronoDateTimeUtc(Some(t)) => micros(t.naive_utc())? + "+00",
        Value::ChronoDateTimeLocal(Some(t)) => micros(t.naive_utc())? + "+00",
        Value::ChronoDateTimeWithTimeZone(Some(t)) => micros(t.naive_utc())? + "+00",
        Value::Uuid(Some(u)) => u.to_string(),
        _ => return Err(InlineError::Unsupported("this value")),
    })
}

/// Rust spells the special values `NaN`, `inf` and `-inf`; PostgreSQL reads `NaN`, `Infinity`
/// and `-Infinity`.
fn float_text(value: f64, shortest: String) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "Infinity".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Infinity".to_owned()
    } else {
        shortest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inlined(sql: &str, values: Vec<Value>) -> String {
        inline(sql, &values).unwrap()
    }

    #[test]
    fn placeholders_become_typed_literals() {
        assert_eq!(
            inlined(
                "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $10",
                (1..=10).map(|n| Value::Int(Some(n))).collect()
            ),
            "SELECT * FROM t WHERE a = E'1'::int4 AND b = E'2'::int4 AND c = E'10'::int4"
        );
    }

    #[test]
    fn quotes_and_backslashes_cannot_end_the_literal() {
        assert_eq!(
            inlined("SELECT $1", vec!["it's \\' ; DROP TABLE users; --".into()]),
            "SELECT E'it''s \\\\'' ; DROP TABLE users; --'::text"
        );
    }

    #[test]
    fn placeholders_inside_strings_identifiers_and_comments_are_left_alone() {
        let sql = "SELECT '$1', E'\\'$1', \"$1\", $$ $1 $$, $tag$ $1 $tag$, a$1 -- $1\n/* $1 /* $1 */ */ $1";
        assert_eq!(
            inlined(sql, vec![Value::Int(Some(7))]),
            "SELECT '$1', E'\\'$1', \"$1\", $$ $1 $$, $tag$ $1 $tag$, a$1 -- $1\n/* $1 /* $1 */ */ E'7'::int4"
        );
    }

    #[test]
    fn negative_numbers_stay_inside_quotes() {
        // `x-$1` with a bare -5 would read `x--5`, the start of a comment.
        assert_eq!(
            inlined("SELECT 1-$1", vec![Value::BigInt(Some(-5))]),
            "SELECT 1-E'-5'::int8"
        );
    }

    #[test]
    fn nulls_keep_their_type() {
        assert_eq!(
            inlined(
                "SELECT $1, $2",
                vec![Value::String(None), Value::Uuid(None)]
            ),
            "SELECT NULL::text, NULL::uuid"
        );
    }

    #[test]
    fn arrays_are_array_constructors() {
        let strings = Value::Array(
            ArrayType::String,
            Some(Box::new(vec!["a".into(), "b'".into()])),
        );
        let empty = Value::Array(ArrayType::Uuid, Some(Box::new(vec![])));
        assert_eq!(
            inlined("SELECT $1, $2", vec![strings, empty]),
            "SELECT ARRAY[E'a'::text,E'b'''::text]::text[], '{}'::uuid[]"
        );
    }

    #[test]
    fn a_missing_value_is_an_error() {
        assert_eq!(
            inline("SELECT $2", &[Value::Int(Some(1))]),
            Err(InlineError::MissingValue(2, 1))
        );
    }

    #[test]
    fn timestamps_are_cut_to_microseconds_like_sqlx() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            inlined("SELECT $1", vec![t.into()]),
            "SELECT E'2026-01-02 03:04:05.123456+00'::timestamptz"
        );
    }
}
