//! A statement with its parameters written into the SQL text as typed literals, for the simple
//! query protocol: one message, one round trip, and nothing prepared on the server.
//!
//! Through a transaction-mode pooler this is what stays correct: sqlx prepares every statement
//! in a `Sync` of its own before binding it, and the pooler may hand the next `Sync` to another
//! server session (see `docs/deployment.md`). psycopg2, Rails without prepared statements and
//! pgx's simple-protocol mode do the same.
//!
//! Each literal reads back as the value sqlx would have bound, whatever the server session holds
//! (the pooler hands over sessions with whatever other clients left in them):
//!
//! - its text is a dollar-quoted string (`$v$...$v$`, with a tag the text cannot close), which
//!   knows no escapes: no `standard_conforming_strings`, `backslash_quote` or `escape_string_warning`
//!   changes how it reads, and no client encoding whose multibyte characters can swallow a
//!   backslash (SJIS, BIG5, GBK, ...) can end it early, since `$` and the quote never occur inside
//!   another character in any encoding PostgreSQL accepts from clients. The text is UTF-8, so the
//!   session's `client_encoding` must be `UTF8`, as sqlx sets it at startup (and PgBouncer restores
//!   it for each client): with another encoding a value arrives garbled, or refused, but still
//!   cannot end its literal;
//! - it is cast to the type sqlx would have bound, named in `pg_catalog` (`::pg_catalog.text`), so
//!   no type another schema on the `search_path` declares can stand in for it;
//! - it stands in parentheses, so whatever follows the placeholder (`$1[1]`, `$1.f`) applies to the
//!   value, not to the type name;
//! - the text is what the type's input function reads as the very value sqlx sends in binary:
//!   timestamps cut to microseconds as sqlx cuts them, years before 1 written `BC`, floats in their
//!   shortest exact form (a negative NaN negated), a NUL in a string decoded at run time, where the
//!   server refuses it as it refuses one in a bound parameter (not when it parses the query string:
//!   a parse error would also skip a `BEGIN` sent in the same string).

use std::{borrow::Cow, fmt::Write as _};

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use sea_orm::{
    Value,
    sea_query::{ArrayType, OptionEnum},
};

/// Why a statement could not be written out with its parameters. It names parameters by their
/// position and type, never by their value (a value may be a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InlineError {
    #[error("the statement uses parameter ${0} but only {1} values were given")]
    MissingValue(usize, usize),
    #[error("the statement uses {used} parameters but {given} values were given")]
    UnusedValues { used: usize, given: usize },
    #[error(
        "parameter ${parameter}: {what} cannot be sent through a transaction-mode pooler by this workspace"
    )]
    Unsupported {
        parameter: usize,
        what: &'static str,
    },
    #[error("parameter ${parameter} is out of range for PostgreSQL's {ty}")]
    OutOfRange { parameter: usize, ty: &'static str },
    #[error("the statement has an unterminated {0}")]
    Unterminated(&'static str),
}

impl InlineError {
    /// The SQLSTATE PostgreSQL answers the same mistake with when the values are bound.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Self::MissingValue(..) | Self::UnusedValues { .. } => "08P01",
            Self::Unsupported { .. } => "0A000",
            Self::OutOfRange { ty, .. } if ty.contains("time") || ty.contains("date") => "22008",
            Self::OutOfRange { .. } => "22003",
            Self::Unterminated(_) => "42601",
        }
    }
}

/// `sql` with every `$n` placeholder outside strings, quoted identifiers and comments replaced
/// by the literal of `values[n - 1]`; every value must be used.
pub fn inline(sql: &str, values: &[Value]) -> Result<String, InlineError> {
    if values.is_empty() {
        return Ok(sql.to_owned());
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 32 * values.len());
    let mut copied = 0;
    let mut highest = 0;
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
                literal(&mut out, value, index)?;
                highest = highest.max(index);
                copied = end;
                i = end;
            }
            b'$' if !previous_is_word => i = skip_dollar_quote(bytes, i)?,
            _ => i += 1,
        }
    }
    if highest < values.len() {
        return Err(InlineError::UnusedValues {
            used: highest,
            given: values.len(),
        });
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

/// Writes `value` as a literal of the type sqlx binds it as (see sea-query-sqlx's encoding), in
/// parentheses; `parameter` is its position, for errors.
fn literal(out: &mut String, value: &Value, parameter: usize) -> Result<(), InlineError> {
    let ty = type_name(value, parameter)?;
    out.push('(');
    if is_null(value) {
        let _ = write!(out, "NULL::{ty}");
    } else {
        match value {
            Value::Bool(Some(b)) => out.push_str(if *b { "true" } else { "false" }),
            Value::Array(_, Some(items)) => array(out, items, ty, parameter)?,
            _ => {
                if is_negative_nan(value) {
                    // No text reads as a NaN with its sign bit set; negating one sets it.
                    out.push_str("OPERATOR(pg_catalog.-) ");
                }
                string(out, &text_of(value, parameter)?);
                let _ = write!(out, "::{ty}");
            }
        }
    }
    out.push(')');
    Ok(())
}

fn array(
    out: &mut String,
    items: &[Value],
    ty: &'static str,
    parameter: usize,
) -> Result<(), InlineError> {
    if items.is_empty() {
        let _ = write!(out, "'{{}}'::{ty}");
        return Ok(());
    }
    let element = ty
        .strip_suffix("[]")
        .expect("an array type name ends in []");
    out.push_str("ARRAY[");
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        if type_name(item, parameter)? != element {
            return Err(InlineError::Unsupported {
                parameter,
                what: "an array of mixed types",
            });
        }
        literal(out, item, parameter)?;
    }
    let _ = write!(out, "]::{ty}");
    Ok(())
}

/// A string constant holding `text` as it is, whatever the session's escape settings and client
/// encoding (see the module documentation).
fn string(out: &mut String, text: &str) {
    if !text.contains('\0') {
        dollar_quoted(out, text);
        return;
    }
    // A query string cannot hold a NUL: the text goes as its UTF-8 bytes, decoded when the
    // statement runs, where the server refuses the NUL (22021) as it refuses one bound.
    let mut hex = String::with_capacity(2 + 2 * text.len());
    hex.push_str("\\x");
    for byte in text.bytes() {
        let _ = write!(hex, "{byte:02x}");
    }
    out.push_str("pg_catalog.convert_from(");
    dollar_quoted(out, &hex);
    out.push_str("::pg_catalog.bytea, 'UTF8')");
}

/// `text` between `$v$` tags (or `$v1$`, `$v2$`, ...: the first tag the text cannot close early).
fn dollar_quoted(out: &mut String, text: &str) {
    let mut tag = Cow::Borrowed("$v$");
    let mut n = 0;
    while !closes_only_at_end(text, &tag) {
        n += 1;
        tag = Cow::Owned(format!("$v{n}$"));
    }
    out.push_str(&tag);
    out.push_str(text);
    out.push_str(&tag);
}

/// Whether the server, reading `text` and then `tag`, finds the first `tag` at the end: `text`
/// holds none, and no end of `text` starts one (`...$v` followed by `$v$`).
fn closes_only_at_end(text: &str, tag: &str) -> bool {
    !text.contains(tag)
        && (1..tag.len()).all(|k| !text.ends_with(&tag[..k]) || tag[..tag.len() - k] != tag[k..])
}

fn is_negative_nan(value: &Value) -> bool {
    match value {
        Value::Float(Some(v)) => v.is_nan() && v.is_sign_negative(),
        Value::Double(Some(v)) => v.is_nan() && v.is_sign_negative(),
        _ => false,
    }
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

/// The PostgreSQL type sqlx gives the parameter, named in `pg_catalog`.
fn type_name(value: &Value, parameter: usize) -> Result<&'static str, InlineError> {
    Ok(match value {
        Value::Bool(_) => "pg_catalog.bool",
        Value::TinyInt(_) => "pg_catalog.\"char\"",
        Value::SmallInt(_) | Value::TinyUnsigned(_) => "pg_catalog.int2",
        Value::Int(_) | Value::SmallUnsigned(_) => "pg_catalog.int4",
        Value::BigInt(_) | Value::Unsigned(_) | Value::BigUnsigned(_) => "pg_catalog.int8",
        Value::Float(_) => "pg_catalog.float4",
        Value::Double(_) => "pg_catalog.float8",
        Value::String(_) | Value::Char(_) | Value::Enum(_) => "pg_catalog.text",
        Value::Bytes(_) => "pg_catalog.bytea",
        Value::Json(_) => "pg_catalog.jsonb",
        Value::ChronoDate(_) => "pg_catalog.date",
        Value::ChronoTime(_) => "pg_catalog.time",
        Value::ChronoDateTime(_) => "pg_catalog.timestamp",
        Value::ChronoDateTimeUtc(_)
        | Value::ChronoDateTimeLocal(_)
        | Value::ChronoDateTimeWithTimeZone(_) => "pg_catalog.timestamptz",
        Value::Uuid(_) => "pg_catalog.uuid",
        Value::Array(element, _) => array_type_name(element, parameter)?,
        #[allow(unreachable_patterns)]
        _ => {
            return Err(InlineError::Unsupported {
                parameter,
                what: "values of this type",
            });
        }
    })
}

fn array_type_name(element: &ArrayType, parameter: usize) -> Result<&'static str, InlineError> {
    Ok(match element {
        ArrayType::Bool => "pg_catalog.bool[]",
        ArrayType::TinyInt => "pg_catalog.\"char\"[]",
        ArrayType::SmallInt | ArrayType::TinyUnsigned => "pg_catalog.int2[]",
        ArrayType::Int | ArrayType::SmallUnsigned => "pg_catalog.int4[]",
        ArrayType::BigInt | ArrayType::Unsigned | ArrayType::BigUnsigned => "pg_catalog.int8[]",
        ArrayType::Float => "pg_catalog.float4[]",
        ArrayType::Double => "pg_catalog.float8[]",
        ArrayType::String | ArrayType::Char | ArrayType::Enum(_) => "pg_catalog.text[]",
        ArrayType::Bytes => "pg_catalog.bytea[]",
        ArrayType::Json => "pg_catalog.jsonb[]",
        ArrayType::ChronoDate => "pg_catalog.date[]",
        ArrayType::ChronoTime => "pg_catalog.time[]",
        ArrayType::ChronoDateTime => "pg_catalog.timestamp[]",
        ArrayType::ChronoDateTimeUtc
        | ArrayType::ChronoDateTimeLocal
        | ArrayType::ChronoDateTimeWithTimeZone => "pg_catalog.timestamptz[]",
        ArrayType::Uuid => "pg_catalog.uuid[]",
        #[allow(unreachable_patterns)]
        _ => {
            return Err(InlineError::Unsupported {
                parameter,
                what: "arrays of this type",
            });
        }
    })
}

/// The text PostgreSQL's input function for the parameter's type reads back as the same value
/// sqlx would have sent in binary.
fn text_of(value: &Value, parameter: usize) -> Result<Cow<'_, str>, InlineError> {
    let out_of_range = |ty| InlineError::OutOfRange { parameter, ty };
    Ok(Cow::Owned(match value {
        Value::String(Some(s)) => return Ok(Cow::Borrowed(s.as_str())),
        Value::TinyInt(Some(v)) => char_text(*v),
        Value::SmallInt(Some(v)) => v.to_string(),
        Value::Int(Some(v)) => v.to_string(),
        Value::BigInt(Some(v)) => v.to_string(),
        Value::TinyUnsigned(Some(v)) => v.to_string(),
        Value::SmallUnsigned(Some(v)) => v.to_string(),
        Value::Unsigned(Some(v)) => v.to_string(),
        Value::BigUnsigned(Some(v)) => i64::try_from(*v)
            .map_err(|_| out_of_range("bigint"))?
            .to_string(),
        Value::Float(Some(v)) => float_text(f64::from(*v), v.to_string()),
        Value::Double(Some(v)) => float_text(*v, v.to_string()),
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
        Value::ChronoDate(Some(d)) => date_text(*d),
        Value::ChronoTime(Some(t)) => time_text(*t).ok_or_else(|| out_of_range("time"))?,
        Value::ChronoDateTime(Some(t)) => {
            timestamp_text(*t, "").ok_or_else(|| out_of_range("timestamp"))?
        }
        Value::ChronoDateTimeUtc(Some(t)) => {
            timestamp_text(t.naive_utc(), "+00").ok_or_else(|| out_of_range("timestamptz"))?
        }
        Value::ChronoDateTimeLocal(Some(t)) => {
            timestamp_text(t.naive_utc(), "+00").ok_or_else(|| out_of_range("timestamptz"))?
        }
        Value::ChronoDateTimeWithTimeZone(Some(t)) => {
            timestamp_text(t.naive_utc(), "+00").ok_or_else(|| out_of_range("timestamptz"))?
        }
        Value::Uuid(Some(u)) => u.to_string(),
        _ => {
            return Err(InlineError::Unsupported {
                parameter,
                what: "values of this type",
            });
        }
    }))
}

/// PostgreSQL's `"char"` (sqlx's `i8`) reads its first byte, `''` as 0, and (from PostgreSQL 15)
/// `\ooo` as the octal byte, the only way to write bytes beyond ASCII in a UTF-8 query.
fn char_text(value: i8) -> String {
    match value as u8 {
        0 => String::new(),
        byte @ 1..=127 => char::from(byte).to_string(),
        byte => format!("\\{byte:03o}"),
    }
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

/// 2000-01-01, from which sqlx counts the days of a date and the microseconds of a timestamp.
fn postgres_epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .expect("2000-01-01 is a date")
}

/// The year as PostgreSQL writes it (astronomical year 0 is 1 BC), and the era suffix.
fn year_and_era(year: i32) -> (i32, &'static str) {
    match year {
        ..=0 => (1 - year, " BC"),
        _ => (year, ""),
    }
}

fn date_text(day: NaiveDate) -> String {
    let (year, era) = year_and_era(day.year());
    format!("{year:04}-{}{era}", day.format("%m-%d"))
}

/// sqlx sends a timestamp as the whole microseconds from 2000-01-01 (`num_microseconds`, which
/// cuts sub-microsecond digits towards that instant, and counts a leap second as the next second):
/// the text of that very instant, with `offset` before the era.
fn timestamp_text(instant: NaiveDateTime, offset: &str) -> Option<String> {
    let micros = (instant - postgres_epoch()).num_microseconds()?;
    let sent = postgres_epoch().checked_add_signed(TimeDelta::microseconds(micros))?;
    let (year, era) = year_and_era(sent.year());
    Some(format!(
        "{year:04}-{}{offset}{era}",
        sent.format("%m-%d %H:%M:%S%.6f")
    ))
}

/// sqlx sends a time of day as its microseconds from midnight, counted as for timestamps: a leap
/// second's 23:59:60.5 is 24:00:00.5, which PostgreSQL refuses either way.
fn time_text(time: NaiveTime) -> Option<String> {
    let micros = (time - NaiveTime::MIN).num_microseconds()?;
    Some(format!(
        "{:02}:{:02}:{:02}.{:06}",
        micros / 3_600_000_000,
        micros / 60_000_000 % 60,
        micros / 1_000_000 % 60,
        micros % 1_000_000
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inlined(sql: &str, values: Vec<Value>) -> String {
        inline(sql, &values).unwrap()
    }

    #[test]
    fn placeholders_become_typed_literals_in_parentheses() {
        assert_eq!(
            inlined(
                "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $10",
                (1..=10).map(|n| Value::Int(Some(n))).collect()
            ),
            "SELECT * FROM t WHERE a = ($v$1$v$::pg_catalog.int4) AND b = ($v$2$v$::pg_catalog.int4) \
             AND c = ($v$10$v$::pg_catalog.int4)"
        );
        assert_eq!(
            inlined("SELECT $1[1]", vec![vec!["a".to_owned()].into()]),
            "SELECT (ARRAY[($v$a$v$::pg_catalog.text)]::pg_catalog.text[])[1]"
        );
    }

    #[test]
    fn quotes_backslashes_and_tags_cannot_end_the_literal() {
        assert_eq!(
            inlined("SELECT $1", vec!["it's \\' ; DROP TABLE users; --".into()]),
            "SELECT ($v$it's \\' ; DROP TABLE users; --$v$::pg_catalog.text)"
        );
        assert_eq!(
            inlined("SELECT $1", vec!["a $v$ b $v1$ c".into()]),
            "SELECT ($v2$a $v$ b $v1$ c$v2$::pg_catalog.text)"
        );
        // `$v` at the end would close early on the closing tag's own `$v$`.
        assert_eq!(
            inlined("SELECT $1", vec!["ends in $v".into()]),
            "SELECT ($v1$ends in $v$v1$::pg_catalog.text)"
        );
        assert_eq!(
            inlined("SELECT $1", vec!["ends in $".into()]),
            "SELECT ($v$ends in $$v$::pg_catalog.text)"
        );
    }

    #[test]
    fn a_tag_is_chosen_only_where_the_text_cannot_close_it() {
        for text in [
            "",
            "$",
            "$v",
            "v$",
            "$v$",
            "x$v",
            "$v1",
            "$$v$$",
            "$v$v$v1$v2",
        ] {
            let mut out = String::new();
            dollar_quoted(&mut out, text);
            let tag_end = out[1..].find('$').unwrap() + 2;
            let tag = &out[..tag_end];
            let body_and_close = &out[tag_end..];
            assert_eq!(
                body_and_close.find(tag),
                Some(text.len()),
                "{text:?} in {out}"
            );
        }
    }

    #[test]
    fn a_nul_is_decoded_when_the_statement_runs() {
        assert_eq!(
            inlined("SELECT $1", vec!["a\0b".into()]),
            "SELECT (pg_catalog.convert_from($v$\\x610062$v$::pg_catalog.bytea, 'UTF8')::pg_catalog.text)"
        );
    }

    #[test]
    fn placeholders_inside_strings_identifiers_and_comments_are_left_alone() {
        let sql = "SELECT '$1', E'\\'$1', \"$1\", $$ $1 $$, $tag$ $1 $tag$, a$1 -- $1\n/* $1 /* $1 */ */ $1";
        assert_eq!(
            inlined(sql, vec![Value::Int(Some(7))]),
            "SELECT '$1', E'\\'$1', \"$1\", $$ $1 $$, $tag$ $1 $tag$, a$1 -- $1\n/* $1 /* $1 */ */ ($v$7$v$::pg_catalog.int4)"
        );
    }

    #[test]
    fn negative_numbers_stay_inside_quotes() {
        // `x-$1` with a bare -5 would read `x--5`, the start of a comment.
        assert_eq!(
            inlined("SELECT 1-$1", vec![Value::BigInt(Some(-5))]),
            "SELECT 1-($v$-5$v$::pg_catalog.int8)"
        );
    }

    #[test]
    fn nulls_keep_their_type() {
        assert_eq!(
            inlined(
                "SELECT $1, $2",
                vec![Value::String(None), Value::Uuid(None)]
            ),
            "SELECT (NULL::pg_catalog.text), (NULL::pg_catalog.uuid)"
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
            "SELECT (ARRAY[($v$a$v$::pg_catalog.text),($v$b'$v$::pg_catalog.text)]::pg_catalog.text[]), \
             ('{}'::pg_catalog.uuid[])"
        );
    }

    #[test]
    fn every_type_is_named_in_pg_catalog() {
        let values = vec![
            Value::Bool(Some(true)),
            Value::TinyInt(Some(1)),
            Value::SmallInt(Some(1)),
            Value::BigUnsigned(Some(1)),
            Value::Float(Some(1.0)),
            Value::Json(Some(Box::new(serde_json::json!({})))),
            Value::Bytes(Some(vec![1])),
            Value::ChronoTime(Some(NaiveTime::MIN)),
            Value::Uuid(Some(uuid_nil())),
            Value::Array(ArrayType::ChronoDateTimeUtc, Some(Box::new(vec![]))),
        ];
        for value in values {
            let ty = type_name(&value, 1).unwrap();
            assert!(ty.starts_with("pg_catalog."), "{ty}");
        }
    }

    fn uuid_nil() -> sea_orm::prelude::Uuid {
        sea_orm::prelude::Uuid::nil()
    }

    #[test]
    fn values_must_match_the_placeholders() {
        assert_eq!(
            inline("SELECT $2", &[Value::Int(Some(1))]),
            Err(InlineError::MissingValue(2, 1))
        );
        assert_eq!(
            inline("SELECT $1", &[Value::Int(Some(1)), Value::Int(Some(2))]),
            Err(InlineError::UnusedValues { used: 1, given: 2 })
        );
        assert_eq!(InlineError::MissingValue(2, 1).sqlstate(), "08P01");
    }

    #[test]
    fn errors_name_the_parameter_never_its_value() {
        let err = inline(
            "SELECT $1, $2",
            &[Value::Int(Some(1)), Value::BigUnsigned(Some(u64::MAX))],
        )
        .unwrap_err();
        assert_eq!(
            err,
            InlineError::OutOfRange {
                parameter: 2,
                ty: "bigint"
            }
        );
        assert_eq!(err.sqlstate(), "22003");
        let shown = err.to_string();
        assert!(!shown.contains(&u64::MAX.to_string()), "{shown}");
        assert!(shown.contains("$2"), "{shown}");
    }

    #[test]
    fn timestamps_are_cut_to_microseconds_like_sqlx() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            inlined("SELECT $1", vec![t.into()]),
            "SELECT ($v$2026-01-02 03:04:05.123456+00$v$::pg_catalog.timestamptz)"
        );
        // Before 2000 sqlx cuts towards 2000-01-01, that is upwards.
        let before = NaiveDate::from_ymd_opt(1999, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 500)
            .unwrap();
        assert_eq!(
            timestamp_text(before, "").as_deref(),
            Some("1999-12-31 23:59:59.000001")
        );
    }

    #[test]
    fn years_before_1_are_bc_and_after_9999_unpadded() {
        let day = |y| NaiveDate::from_ymd_opt(y, 3, 15).unwrap();
        assert_eq!(date_text(day(0)), "0001-03-15 BC");
        assert_eq!(date_text(day(-43)), "0044-03-15 BC");
        assert_eq!(date_text(day(12345)), "12345-03-15");
        assert_eq!(
            timestamp_text(day(-43).and_hms_opt(12, 0, 0).unwrap(), "+00").as_deref(),
            Some("0044-03-15 12:00:00.000000+00 BC")
        );
    }

    #[test]
    fn one_byte_integers_are_postgres_char() {
        assert_eq!(char_text(0), "");
        assert_eq!(char_text(65), "A");
        assert_eq!(char_text(-1), "\\377");
        assert_eq!(
            inlined("SELECT $1", vec![Value::TinyInt(Some(39))]),
            "SELECT ($v$'$v$::pg_catalog.\"char\")"
        );
    }

    #[test]
    fn a_negative_nan_is_negated() {
        assert_eq!(
            inlined("SELECT $1", vec![Value::Double(Some(-f64::NAN))]),
            "SELECT (OPERATOR(pg_catalog.-) $v$NaN$v$::pg_catalog.float8)"
        );
    }
}
