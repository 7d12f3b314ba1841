//! A statement with its parameters written into the SQL text as typed literals, for the simple
//! query protocol: one message, one round trip, and nothing prepared on the server.
//!
//! Through a transaction-mode pooler this is what stays correct: sqlx prepares every statement
//! in a `Sync` of its own before binding it, and the pooler may hand the next `Sync` to another
//! server session (see `docs/deployment.md`). psycopg2, Rails without prepared statements and
//! pgx's simple-protocol mode do the same.
//!
//! The statement is read as PostgreSQL's scanner (`scan.l`) reads it, so a placeholder is
//! replaced exactly where the server would have seen a parameter: strings of every kind
//! (`'...'`, `E'...'`, `B'...'`, `X'...'`, `N'...'`, `U&'...'`, and their continuations on a
//! new line, which keep the first part's escapes), dollar quotes, quoted identifiers, `--`
//! comments (ending at `\n` or `\r`) and nested `/* */` comments. What the server could read in
//! two ways is refused instead of guessed: a backslash in a plain `'...'` literal (an escape when
//! `standard_conforming_strings` is off), a backslash right after a non-ASCII character in an
//! `E'...'` literal (which a client encoding such as SJIS or GBK takes into that character), and
//! a vertical tab where a string might continue (whitespace there only from PostgreSQL 16). Other
//! than that no session setting changes how the statement reads, so none needs to be known.
//! What a bound statement cannot be is refused too: more than one statement, `$0`, a parameter
//! or number with letters glued to it, more than 65 535 values.
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
//! - it is `CAST(... AS type)` to the type sqlx would have bound, named in `pg_catalog`
//!   (`pg_catalog.text`), so no type another schema on the `search_path` declares can stand in for
//!   it, and like a parameter it cannot open a list (`VALUES $1`, `IN $1` stay errors); followed
//!   by `[` or `.` it stands in parentheses, so `$1[1]` and `$1.f` apply to the value;
//! - the text is what the type's input function reads as the very value sqlx sends in binary:
//!   timestamps cut to microseconds as sqlx cuts them, years before 1 written `BC`, floats in their
//!   shortest exact form (a negative NaN negated), a NUL in a string decoded at run time, where the
//!   server refuses it as it refuses one in a bound parameter (not when it parses the query string:
//!   a parse error would also skip a `BEGIN` sent in the same string); a date, time or timestamp
//!   the server cannot hold is an expression of its type that fails (22008) when the server runs
//!   the statement, as the bound one fails, but without its text in the message.
//!
//! [`check_values`] refuses, on both paths, what sea-query would panic on when binding (a `u64`
//! above `i64::MAX`, an array with a NULL element or elements of another type).

use std::{borrow::Cow, fmt::Write as _};

use chrono::{Datelike, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta};
use sea_orm::{
    Value,
    sea_query::{ArrayType, OptionEnum},
};

/// The most values one statement can bind: the extended protocol counts them in 16 bits.
pub const MAX_VALUES: usize = u16::MAX as usize;

/// Why a statement could not be written out with its parameters. It names parameters by their
/// position and type, never by their value (a value may be a secret).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InlineError {
    #[error("the statement uses parameter ${0} but only {1} values were given")]
    MissingValue(usize, usize),
    #[error("there is no parameter ${0}")]
    NoSuchParameter(String),
    #[error("the statement uses {used} parameters but {given} values were given")]
    UnusedValues { used: usize, given: usize },
    #[error("{0} values were given, but a statement takes at most 65535")]
    TooManyValues(usize),
    #[error("parameter ${parameter}: {what} cannot be bound by this workspace")]
    Unsupported {
        parameter: usize,
        what: &'static str,
    },
    #[error("parameter ${parameter} is out of range for PostgreSQL's {ty}")]
    OutOfRange { parameter: usize, ty: &'static str },
    #[error("the statement has an unterminated {0}")]
    Unterminated(&'static str),
    #[error("trailing junk after {0}")]
    TrailingJunk(&'static str),
    #[error("cannot insert multiple commands into a prepared statement")]
    MultipleStatements,
    #[error(
        "the statement cannot carry values through a transaction pooler: it has {0}, which the \
         server may read in another way than this workspace"
    )]
    Ambiguous(&'static str),
    #[error("{0}")]
    Setting(&'static str),
}

impl InlineError {
    /// The SQLSTATE PostgreSQL answers the same mistake with when the values are bound (for
    /// what only this path refuses, 0A000).
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Self::MissingValue(..) | Self::UnusedValues { .. } => "08P01",
            Self::NoSuchParameter(_) => "42P02",
            Self::TooManyValues(_) => "54000",
            Self::Unsupported { .. } | Self::Ambiguous(_) | Self::Setting(_) => "0A000",
            Self::OutOfRange { ty, .. } if ty.contains("time") || ty.contains("date") => "22008",
            Self::OutOfRange { .. } => "22003",
            Self::Unterminated(_) | Self::TrailingJunk(_) | Self::MultipleStatements => "42601",
        }
    }
}

const PLAIN_BACKSLASH: &str = "a backslash in a plain '...' literal (an escape when \
    standard_conforming_strings is off; write the literal as E'...')";
const ENCODING_BACKSLASH: &str = "a backslash right after a non-ASCII character in an E'...' \
    literal (part of that character in client encodings such as SJIS or GBK)";
const VERTICAL_TAB: &str = "a vertical tab between a string and a possible continuation of it \
    (whitespace there from PostgreSQL 16 only)";
const EXTRA_FLOAT_DIGITS: &str = "extra_float_digits may not be set below 1 through a transaction \
    pooler: rows come back as text there, and PostgreSQL then prints floats rounded, so they \
    would read back other than bound; leave it at its default (1)";

/// `sql` with every `$n` placeholder outside strings, quoted identifiers and comments replaced
/// by the literal of `values[n - 1]`; every value must be used.
pub fn inline(sql: &str, values: &[Value]) -> Result<String, InlineError> {
    check_values(values)?;
    let scan = match scan(sql) {
        Ok(scan) => scan,
        // With nothing to write in, the server reads the statement and reports what is wrong.
        Err(_) if values.is_empty() => return Ok(sql.to_owned()),
        Err(err) => return Err(err),
    };
    if statements(&scan.tokens) > 1 {
        return Err(InlineError::MultipleStatements);
    }
    settings(sql, &scan.tokens, values)?;
    if values.is_empty() {
        return Ok(sql.to_owned());
    }
    if let Some(hazard) = scan.hazard {
        return Err(InlineError::Ambiguous(hazard));
    }
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len() + 48 * values.len());
    let mut copied = 0;
    let mut highest = 0;
    for (n, token) in scan.tokens.iter().enumerate() {
        if token.kind != Kind::Param {
            continue;
        }
        let index = parameter_index(&sql[token.start + 1..token.end], values.len())?;
        out.push_str(&sql[copied..token.start]);
        // Only a number can stand right before a parameter: `1$1` stays two tokens.
        if token.start > 0 && is_ident_cont(bytes[token.start - 1]) {
            out.push(' ');
        }
        let indirection = matches!(
            scan.tokens.get(n + 1).map(|next| next.kind),
            Some(Kind::Other(b'[' | b'.'))
        );
        if indirection {
            out.push('(');
        }
        cast(&mut out, &values[index - 1], index)?;
        if indirection {
            out.push(')');
        }
        highest = highest.max(index);
        copied = token.end;
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

/// Refuses `sql` if it sets what makes values read back otherwise through the pooler
/// (`extra_float_digits` below 1); what cannot be read is left to the server.
pub fn check_settings(sql: &str) -> Result<(), InlineError> {
    match scan(sql) {
        Ok(scan) => settings(sql, &scan.tokens, &[]),
        Err(_) => Ok(()),
    }
}

/// Refuses, before anything is bound or written out, what sea-query would panic on when binding
/// `values` (the direct path) and what no statement can take.
pub fn check_values(values: &[Value]) -> Result<(), InlineError> {
    if values.len() > MAX_VALUES {
        return Err(InlineError::TooManyValues(values.len()));
    }
    for (n, value) in values.iter().enumerate() {
        let parameter = n + 1;
        check_value(value, parameter)?;
        if let Value::Array(ty, Some(items)) = value {
            for item in items.iter() {
                if is_null(item) {
                    return Err(InlineError::Unsupported {
                        parameter,
                        what: "an array with a NULL element",
                    });
                }
                if !element_fits(ty, item) {
                    return Err(InlineError::Unsupported {
                        parameter,
                        what: "an array of mixed types",
                    });
                }
                check_value(item, parameter)?;
            }
        }
    }
    Ok(())
}

fn check_value(value: &Value, parameter: usize) -> Result<(), InlineError> {
    match value {
        Value::BigUnsigned(Some(v)) if i64::try_from(*v).is_err() => Err(InlineError::OutOfRange {
            parameter,
            ty: "bigint",
        }),
        _ => Ok(()),
    }
}

/// Whether `item` is what sea-query binds an array of `ty` from.
fn element_fits(ty: &ArrayType, item: &Value) -> bool {
    matches!(
        (ty, item),
        (ArrayType::Bool, Value::Bool(_))
            | (ArrayType::TinyInt, Value::TinyInt(_))
            | (ArrayType::SmallInt, Value::SmallInt(_))
            | (ArrayType::Int, Value::Int(_))
            | (ArrayType::BigInt, Value::BigInt(_))
            | (ArrayType::TinyUnsigned, Value::TinyUnsigned(_))
            | (ArrayType::SmallUnsigned, Value::SmallUnsigned(_))
            | (ArrayType::Unsigned, Value::Unsigned(_))
            | (ArrayType::BigUnsigned, Value::BigUnsigned(_))
            | (ArrayType::Float, Value::Float(_))
            | (ArrayType::Double, Value::Double(_))
            | (ArrayType::String, Value::String(_))
            | (ArrayType::Enum(_), Value::Enum(_))
            | (ArrayType::Char, Value::Char(_))
            | (ArrayType::Bytes, Value::Bytes(_))
            | (ArrayType::Json, Value::Json(_))
            | (ArrayType::ChronoDate, Value::ChronoDate(_))
            | (ArrayType::ChronoTime, Value::ChronoTime(_))
            | (ArrayType::ChronoDateTime, Value::ChronoDateTime(_))
            | (ArrayType::ChronoDateTimeUtc, Value::ChronoDateTimeUtc(_))
            | (
                ArrayType::ChronoDateTimeLocal,
                Value::ChronoDateTimeLocal(_)
            )
            | (
                ArrayType::ChronoDateTimeWithTimeZone,
                Value::ChronoDateTimeWithTimeZone(_)
            )
            | (ArrayType::Uuid, Value::Uuid(_))
    )
}

/// The value `digits` (after `$`) names: 1 to `given`.
fn parameter_index(digits: &str, given: usize) -> Result<usize, InlineError> {
    let no_such = || InlineError::NoSuchParameter(digits.to_owned());
    let index: usize = digits.parse().map_err(|_| no_such())?;
    match index {
        0 => Err(no_such()),
        n if n > i32::MAX as usize => Err(no_such()),
        n if n > given => Err(InlineError::MissingValue(n, given)),
        n => Ok(n),
    }
}

/// How many statements `tokens` hold (what `;` separates, empty ones not counted).
fn statements(tokens: &[Token]) -> usize {
    tokens
        .split(|token| token.kind == Kind::Semicolon)
        .filter(|statement| !statement.is_empty())
        .count()
}

// ---------------------------------------------------------------------------------------------
// The scanner: the tokens of scan.l that decide where strings, comments and parameters are.

/// A token the server sees (whitespace and comments are none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `$n`.
    Param,
    Semicolon,
    /// An identifier or key word.
    Word,
    /// A quoted identifier (`"..."`).
    Quoted,
    /// A string constant of any kind; `body` is its text when it has one part and no escapes.
    Literal {
        body: Option<(usize, usize)>,
    },
    Number,
    /// Any other byte (operators, punctuation).
    Other(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    start: usize,
    end: usize,
    kind: Kind,
}

#[derive(Debug)]
struct Scan {
    tokens: Vec<Token>,
    /// The first thing the server could read in another way than this scanner.
    hazard: Option<&'static str>,
}

/// How a string constant's body reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// `'...'` and `N'...'`: `''` is a quote (with `standard_conforming_strings` on).
    Standard,
    /// `E'...'`: a backslash escapes the next byte as well.
    Escape,
    /// `B'...'` and `X'...'`: no quote inside at all.
    Bits,
    /// `U&'...'`: `''` is a quote; backslash escapes are decoded later and cannot end it.
    Unicode,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_cont(b: u8) -> bool {
    is_ident_start(b) || b.is_ascii_digit() || b == b'$'
}

fn scan(sql: &str) -> Result<Scan, InlineError> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut hazard = None;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let at = |n: usize| bytes.get(n).copied();
        let string = |from, mode, hazard: &mut Option<&'static str>| {
            string_end(bytes, from, mode, hazard).map(|(end, simple)| {
                let body = simple.then_some((from, end - 1));
                (end, Kind::Literal { body })
            })
        };
        let (end, kind) = match (bytes[i], at(i + 1)) {
            (b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c, _) => {
                i += 1;
                continue;
            }
            (b'-', Some(b'-')) => {
                i = line_end(bytes, i);
                continue;
            }
            (b'/', Some(b'*')) => {
                i = block_comment_end(bytes, i + 2)?;
                continue;
            }
            (b'\'', _) => string(i + 1, Mode::Standard, &mut hazard)?,
            (b'e' | b'E', Some(b'\'')) => string(i + 2, Mode::Escape, &mut hazard)?,
            (b'b' | b'B' | b'x' | b'X', Some(b'\'')) => string(i + 2, Mode::Bits, &mut hazard)?,
            (b'n' | b'N', Some(b'\'')) => string(i + 2, Mode::Standard, &mut hazard)?,
            (b'u' | b'U', Some(b'&')) if at(i + 2) == Some(b'\'') => {
                string(i + 3, Mode::Unicode, &mut hazard)?
            }
            // `U&"..."` needs no arm of its own: read as `U`, `&` and a quoted identifier, it
            // ends where the server ends it.
            (b'"', _) => (quoted_identifier_end(bytes, i + 1)?, Kind::Quoted),
            (b'$', Some(b'0'..=b'9')) => {
                let end = i + 1 + digits(bytes, i + 1);
                if at(end).is_some_and(is_ident_start) {
                    return Err(InlineError::TrailingJunk("parameter"));
                }
                (end, Kind::Param)
            }
            (b'$', _) => match dollar_delimiter_end(bytes, i) {
                Some(open) => {
                    let tag = &sql[i..open];
                    let close = sql[open..]
                        .find(tag)
                        .map(|n| open + n)
                        .ok_or(InlineError::Unterminated("dollar-quoted string"))?;
                    let body = Some((open, close));
                    (close + tag.len(), Kind::Literal { body })
                }
                // `$abc` not closed by `$`: the `$` alone, then an identifier.
                None => (i + 1, Kind::Other(b'$')),
            },
            (b, _) if is_ident_start(b) => {
                let run = bytes[i..].iter().take_while(|&&b| is_ident_cont(b)).count();
                (i + run, Kind::Word)
            }
            (b'0'..=b'9', _) | (b'.', Some(b'0'..=b'9')) => (number_end(bytes, i)?, Kind::Number),
            (b';', _) => (i + 1, Kind::Semicolon),
            (b, _) => (i + 1, Kind::Other(b)),
        };
        tokens.push(Token { start, end, kind });
        i = end;
    }
    Ok(Scan { tokens, hazard })
}

fn digits(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count()
}

/// Where a `--` comment starting at `from` ends: at the next `\n` or `\r`, or the end.
fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .map_or(bytes.len(), |n| from + n)
}

/// The end of a block comment whose body starts at `from`; they nest.
fn block_comment_end(bytes: &[u8], mut from: usize) -> Result<usize, InlineError> {
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
    Err(InlineError::Unterminated("/* comment"))
}

fn quoted_identifier_end(bytes: &[u8], mut from: usize) -> Result<usize, InlineError> {
    while from < bytes.len() {
        if bytes[from] == b'"' {
            if bytes.get(from + 1) != Some(&b'"') {
                return Ok(from + 1);
            }
            from += 1;
        }
        from += 1;
    }
    Err(InlineError::Unterminated("quoted identifier"))
}

/// The end of `$tag$` (the tag may be empty) starting at `start`, if one starts there.
fn dollar_delimiter_end(bytes: &[u8], start: usize) -> Option<usize> {
    let tag = &bytes[start + 1..];
    if tag
        .first()
        .is_some_and(|&b| !is_ident_start(b) && b != b'$')
    {
        return None;
    }
    let run = tag
        .iter()
        .take_while(|&&b| is_ident_start(b) || b.is_ascii_digit())
        .count();
    (tag.get(run) == Some(&b'$')).then_some(start + run + 2)
}

/// The end of a number starting at `from`; letters glued to it are refused, as PostgreSQL 15
/// refuses them (older versions split them off, newer ones read `0x1F` and `1_000`).
fn number_end(bytes: &[u8], from: usize) -> Result<usize, InlineError> {
    let junk = || InlineError::TrailingJunk("numeric literal");
    let mut i = from + digits(bytes, from);
    // `1..2` is the integer 1 and `..`.
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1) != Some(&b'.') {
        i += 1 + digits(bytes, i + 1);
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut exponent = i + 1;
        if matches!(bytes.get(exponent), Some(b'+' | b'-')) {
            exponent += 1;
        }
        match digits(bytes, exponent) {
            0 => return Err(junk()),
            n => i = exponent + n,
        }
    }
    match bytes.get(i) {
        Some(&b) if is_ident_start(b) => Err(junk()),
        _ => Ok(i),
    }
}

/// What follows a string constant's closing quote.
enum Continuation {
    /// The string ends there.
    No,
    /// It continues after the quote at this index (whitespace with a newline came between).
    At(usize),
    /// It does if a vertical tab is whitespace (PostgreSQL 16 and later).
    Unclear,
}

/// Whether the string whose closing quote is right before `from` continues: `{quote}
/// {whitespace_with_newline} {quote}` in scan.l, where comments count as whitespace.
fn continuation(bytes: &[u8], mut from: usize) -> Continuation {
    let mut newline = false;
    let mut vertical_tab = false;
    loop {
        match bytes.get(from) {
            Some(b' ' | b'\t' | 0x0c) => from += 1,
            Some(0x0b) => {
                vertical_tab = true;
                from += 1;
            }
            Some(b'\n' | b'\r') => {
                newline = true;
                from += 1;
            }
            Some(b'-') if bytes.get(from + 1) == Some(&b'-') => from = line_end(bytes, from),
            Some(b'\'') if newline && vertical_tab => return Continuation::Unclear,
            Some(b'\'') if newline => return Continuation::At(from),
            _ => return Continuation::No,
        }
    }
}

/// The end of a string constant whose body starts at `from`, across its continuations, and
/// whether it is one part without escapes; records what the server could read otherwise.
fn string_end(
    bytes: &[u8],
    mut from: usize,
    mode: Mode,
    hazard: &mut Option<&'static str>,
) -> Result<(usize, bool), InlineError> {
    let mut simple = true;
    loop {
        let mut i = from;
        loop {
            match bytes.get(i) {
                None => return Err(InlineError::Unterminated("quoted string")),
                Some(b'\'') if mode != Mode::Bits && bytes.get(i + 1) == Some(&b'\'') => {
                    simple = false;
                    i += 2;
                }
                Some(b'\'') => {
                    i += 1;
                    break;
                }
                Some(b'\\') if mode == Mode::Escape => {
                    if bytes[i - 1] >= 0x80 {
                        hazard.get_or_insert(ENCODING_BACKSLASH);
                    }
                    simple = false;
                    i += 2;
                }
                Some(b'\\') if mode == Mode::Standard => {
                    hazard.get_or_insert(PLAIN_BACKSLASH);
                    simple = false;
                    i += 1;
                }
                Some(_) => i += 1,
            }
        }
        match continuation(bytes, i) {
            Continuation::No => return Ok((i, simple)),
            Continuation::At(quote) => {
                simple = false;
                from = quote + 1;
            }
            Continuation::Unclear => {
                hazard.get_or_insert(VERTICAL_TAB);
                return Ok((i, false));
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Settings that change how values read back as text.

/// Refuses a statement of `tokens` that sets `extra_float_digits` below 1 (`SET`, or
/// `set_config` with its name and value as literals or values).
fn settings(sql: &str, tokens: &[Token], values: &[Value]) -> Result<(), InlineError> {
    let text = |token: &Token| -> Option<Cow<'_, str>> {
        match token.kind {
            Kind::Word => Some(Cow::Borrowed(&sql[token.start..token.end])),
            Kind::Quoted if sql.as_bytes()[token.start] == b'"' => {
                Some(Cow::Borrowed(&sql[token.start + 1..token.end - 1]))
            }
            Kind::Literal {
                body: Some((from, to)),
            } => Some(Cow::Borrowed(&sql[from..to])),
            Kind::Param => {
                let index: usize = sql[token.start + 1..token.end].parse().ok()?;
                match values.get(index.checked_sub(1)?)? {
                    Value::String(Some(s)) => Some(Cow::Borrowed(s.as_str())),
                    Value::Int(Some(n)) => Some(Cow::Owned(n.to_string())),
                    _ => None,
                }
            }
            _ => None,
        }
    };
    let is = |token: Option<&Token>, word: &str| {
        token
            .and_then(&text)
            .is_some_and(|t| t.eq_ignore_ascii_case(word))
    };
    let at_least_one = |value: &[Token]| -> bool {
        let digits = match value {
            [one] if is(Some(one), "default") => return true,
            [
                Token {
                    kind: Kind::Other(b'+'),
                    ..
                },
                number,
            ]
            | [number] => text(number).or_else(|| {
                (number.kind == Kind::Number).then(|| Cow::Borrowed(&sql[number.start..number.end]))
            }),
            _ => None,
        };
        digits.is_some_and(|d| d.trim().parse::<i64>().is_ok_and(|n| n >= 1))
    };
    for statement in tokens.split(|token| token.kind == Kind::Semicolon) {
        if is(statement.first(), "set") {
            let name = match is(statement.get(1), "session") || is(statement.get(1), "local") {
                true => 2,
                false => 1,
            };
            if is(statement.get(name), "extra_float_digits")
                && !statement.get(name + 2..).is_some_and(&at_least_one)
            {
                return Err(InlineError::Setting(EXTRA_FLOAT_DIGITS));
            }
        }
        for (n, token) in statement.iter().enumerate() {
            let call = token.kind == Kind::Word && is(Some(token), "set_config")
                || token.kind == Kind::Quoted && text(token).as_deref() == Some("set_config");
            if call
                && statement.get(n + 1).map(|t| t.kind) == Some(Kind::Other(b'('))
                && is(statement.get(n + 2), "extra_float_digits")
                && !statement.get(n + 4..n + 5).is_some_and(&at_least_one)
            {
                return Err(InlineError::Setting(EXTRA_FLOAT_DIGITS));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Literals.

/// What stands for a date, time or timestamp PostgreSQL cannot hold: an expression of the same
/// type (the `CAST` around it) that fails with 22008 "timestamp out of range" when the server
/// folds it, after it has checked the statement, as a bound one fails when the server reads it,
/// and without its text in the message.
const BEYOND_POSTGRES: &str = "CAST($v$4714-11-24 00:00:00 BC$v$ AS pg_catalog.timestamp) \
    OPERATOR(pg_catalog.-) CAST($v$1 microsecond$v$ AS pg_catalog.interval)";

/// Writes `value` as `CAST(text AS type)`, the type sqlx binds it as (see sea-query-sqlx's
/// encoding); `parameter` is its position, for errors.
fn cast(out: &mut String, value: &Value, parameter: usize) -> Result<(), InlineError> {
    let ty = type_name(value, parameter)?;
    out.push_str("CAST(");
    if is_null(value) {
        out.push_str("NULL");
    } else {
        match value {
            Value::Bool(Some(b)) => out.push_str(if *b { "true" } else { "false" }),
            Value::Array(_, Some(items)) => array(out, items, parameter)?,
            _ => {
                let text = match text_of(value, parameter) {
                    Err(InlineError::OutOfRange { ty: range, .. }) if range != "bigint" => {
                        out.push_str(BEYOND_POSTGRES);
                        let _ = write!(out, " AS {ty})");
                        return Ok(());
                    }
                    text => text?,
                };
                if is_negative_nan(value) {
                    // No text reads as a NaN with its sign bit set; negating one sets it.
                    out.push_str("OPERATOR(pg_catalog.-) CAST(");
                    string(out, &text);
                    let _ = write!(out, " AS {ty})");
                } else {
                    string(out, &text);
                }
            }
        }
    }
    let _ = write!(out, " AS {ty})");
    Ok(())
}

/// The elements of an array (checked by [`check_values`]: none NULL, all of its type).
fn array(out: &mut String, items: &[Value], parameter: usize) -> Result<(), InlineError> {
    if items.is_empty() {
        out.push_str("'{}'");
        return Ok(());
    }
    out.push_str("ARRAY[");
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        cast(out, item, parameter)?;
    }
    out.push(']');
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
    out.push_str("pg_catalog.convert_from(CAST(");
    dollar_quoted(out, &hex);
    out.push_str(" AS pg_catalog.bytea), 'UTF8')");
}

/// `text` between `$v$` tags (or `$v1$`, `$v2$`, ...: the first tag the text cannot close early).
fn dollar_quoted(out: &mut String, text: &str) {
    let tag = match free_tag(text) {
        0 => Cow::Borrowed("$v$"),
        n => Cow::Owned(format!("$v{n}$")),
    };
    out.push_str(&tag);
    out.push_str(text);
    out.push_str(&tag);
}

/// The smallest `n` whose tag (`$v$` for 0, `$v{n}$` after) the server, reading `text` and then
/// the tag, finds first at the end: `text` holds no such tag, and does not end in `$v{n}`, which
/// the tag's own `$` would close. One pass over the text, however many tags it holds.
fn free_tag(text: &str) -> usize {
    let bytes = text.as_bytes();
    // Each tag the text holds starts at a `$` followed by `v`: fewer than len / 2 + 1 of them.
    let mut taken = vec![false; bytes.len() / 2 + 2];
    for (at, _) in text.match_indices('$') {
        if bytes.get(at + 1) != Some(&b'v') {
            continue;
        }
        let from = at + 2;
        let end = from + digits(bytes, from);
        let closes = end == bytes.len() || bytes[end] == b'$';
        let number = match &text[from..end] {
            "" => Some(0),
            n if n.starts_with('0') => None,
            n => n.parse::<usize>().ok(),
        };
        if let (true, Some(n)) = (closes, number)
            && let Some(slot) = taken.get_mut(n)
        {
            *slot = true;
        }
    }
    taken
        .iter()
        .position(|taken| !taken)
        .expect("more tags than the text can hold")
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
        Value::ChronoDate(Some(d)) => date_text(*d).ok_or_else(|| out_of_range("date"))?,
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

/// The first day PostgreSQL's dates and timestamps hold (4714-11-24 BC, Julian day 0), in days
/// from 2000-01-01; chrono's last day is before PostgreSQL's.
const FIRST_DAY: i64 = -2_451_545;
const MICROSECONDS_A_DAY: i64 = 86_400_000_000;

/// The year as PostgreSQL writes it (astronomical year 0 is 1 BC), and the era suffix.
fn year_and_era(year: i32) -> (i32, &'static str) {
    match year {
        ..=0 => (1 - year, " BC"),
        _ => (year, ""),
    }
}

fn date_text(day: NaiveDate) -> Option<String> {
    if (day - postgres_epoch().date()).num_days() < FIRST_DAY {
        return None;
    }
    let (year, era) = year_and_era(day.year());
    Some(format!("{year:04}-{}{era}", day.format("%m-%d")))
}

/// sqlx sends a timestamp as the whole microseconds from 2000-01-01 (`num_microseconds`, which
/// cuts sub-microsecond digits towards that instant, and counts a leap second as the next second):
/// the text of that very instant, with `offset` before the era.
fn timestamp_text(instant: NaiveDateTime, offset: &str) -> Option<String> {
    let micros = (instant - postgres_epoch()).num_microseconds()?;
    if micros < FIRST_DAY * MICROSECONDS_A_DAY {
        return None;
    }
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
    if micros > MICROSECONDS_A_DAY {
        return None;
    }
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

    fn text(s: &str) -> Value {
        Value::String(Some(s.to_owned()))
    }

    #[test]
    fn placeholders_become_casts_in_pg_catalog() {
        assert_eq!(
            inlined(
                "SELECT * FROM t WHERE a = $1 AND b = $2 AND c = $10",
                (1..=10).map(|n| Value::Int(Some(n))).collect()
            ),
            "SELECT * FROM t WHERE a = CAST($v$1$v$ AS pg_catalog.int4) AND b = CAST($v$2$v$ AS \
             pg_catalog.int4) AND c = CAST($v$10$v$ AS pg_catalog.int4)"
        );
        assert_eq!(
            inlined("SELECT $1::text, $1", vec![Value::Bool(Some(false))]),
            "SELECT CAST(false AS pg_catalog.bool)::text, CAST(false AS pg_catalog.bool)"
        );
    }

    #[test]
    fn a_placeholder_followed_by_a_subscript_or_field_stands_in_parentheses() {
        assert_eq!(
            inlined("SELECT $1[1]", vec![vec!["a".to_owned()].into()]),
            "SELECT (CAST(ARRAY[CAST($v$a$v$ AS pg_catalog.text)] AS pg_catalog.text[]))[1]"
        );
        assert_eq!(
            inlined(
                "SELECT $1 /* c */ -- d\n .f, $1.5",
                vec![Value::Int(Some(1))]
            ),
            "SELECT (CAST($v$1$v$ AS pg_catalog.int4)) /* c */ -- d\n .f, \
             CAST($v$1$v$ AS pg_catalog.int4).5"
        );
        // A statement may start with a parameter (and fail on the server).
        assert_eq!(
            inlined("$1", vec![Value::Int(Some(2))]),
            "CAST($v$2$v$ AS pg_catalog.int4)"
        );
        // A parameter right after a number stays a token of its own.
        assert_eq!(
            inlined("SELECT 1$1", vec![Value::Int(Some(2))]),
            "SELECT 1 CAST($v$2$v$ AS pg_catalog.int4)"
        );
    }

    #[test]
    fn quotes_backslashes_and_tags_cannot_end_the_literal() {
        assert_eq!(
            inlined("SELECT $1", vec!["it's \\' ; DROP TABLE users; --".into()]),
            "SELECT CAST($v$it's \\' ; DROP TABLE users; --$v$ AS pg_catalog.text)"
        );
        assert_eq!(
            inlined("SELECT $1", vec!["a $v$ b $v1$ c".into()]),
            "SELECT CAST($v2$a $v$ b $v1$ c$v2$ AS pg_catalog.text)"
        );
        // `$v` at the end would close early on the closing tag's own `$v$`.
        assert_eq!(
            inlined("SELECT $1", vec!["ends in $v".into()]),
            "SELECT CAST($v1$ends in $v$v1$ AS pg_catalog.text)"
        );
        assert_eq!(
            inlined("SELECT $1", vec!["ends in $".into()]),
            "SELECT CAST($v$ends in $$v$ AS pg_catalog.text)"
        );
    }

    /// Where the server, reading `text` and then `tag`, finds the first `tag`.
    fn closes_at(text: &str, tag: &str) -> Option<usize> {
        format!("{text}{tag}").find(tag)
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
            "$v0$ $v01$ $v1",
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
    fn the_tag_is_the_first_free_one_for_any_text() {
        // Texts of `$`, `v`, digits and `x`, against the first tag found by trying each in turn.
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..2000 {
            let len = (next() % 24) as usize;
            let text: String = (0..len)
                .map(|_| ['$', 'v', '1', '2', '0', 'x'][(next() % 6) as usize])
                .collect();
            let expected = (0..)
                .find(|&n| {
                    let tag = match n {
                        0 => "$v$".to_owned(),
                        n => format!("$v{n}$"),
                    };
                    closes_at(&text, &tag) == Some(text.len())
                })
                .unwrap();
            assert_eq!(free_tag(&text), expected, "{text:?}");
        }
        // Every tag taken in turn, in one pass.
        let mut tags = String::from("$v$");
        for n in 1..5000 {
            tags.push_str(&format!("$v{n}$"));
        }
        assert_eq!(free_tag(&tags), 5000);
    }

    #[test]
    fn a_nul_is_decoded_when_the_statement_runs() {
        assert_eq!(
            inlined("SELECT $1", vec!["a\0b".into()]),
            "SELECT CAST(pg_catalog.convert_from(CAST($v$\\x610062$v$ AS pg_catalog.bytea), \
             'UTF8') AS pg_catalog.text)"
        );
    }

    #[test]
    fn placeholders_inside_strings_identifiers_and_comments_are_left_alone() {
        let sql = "SELECT '$1', E'\\'$1', \"$1\", $$ $1 $$, $tag$ $1 $tag$, a$1 -- $1\n\
                   /* $1 /* $1 */ */ N'$1', U&'\\0041 $1', U&\"$1\", B'1''$1', X'' $1";
        assert_eq!(
            inlined(sql, vec![Value::Int(Some(7))]),
            sql.replace("X'' $1", "X'' CAST($v$7$v$ AS pg_catalog.int4)")
        );
        // `B'1''$1'` is B'1' and then '$1': no quote is doubled in a bit string.
        assert_eq!(inlined("SELECT B'1'' $1 '", vec![]), "SELECT B'1'' $1 '");
        let (bits, value) = ("SELECT B'1'' || $1", vec![Value::Int(Some(1))]);
        assert!(matches!(
            inline(bits, &value),
            Err(InlineError::Unterminated("quoted string"))
        ));
    }

    #[test]
    fn a_string_continued_on_a_new_line_keeps_the_escapes_of_its_first_part() {
        let values = vec![text("a"), text("b")];
        // The second part of the E'' string holds `\'`, a quote: `$1` is inside it.
        let sql = "SELECT E'a'\n'\\' || $1 || ' -- '\n, $2";
        assert_eq!(
            inlined(sql, values.clone()),
            sql.replace("$2", "CAST($v$b$v$ AS pg_catalog.text)")
        );
        // A comment after the quote, and CR alone as the newline.
        let sql = "SELECT E'a' -- c\r  \t'\\' $1 ', $2, $1";
        assert_eq!(
            inlined(sql, values.clone()),
            "SELECT E'a' -- c\r  \t'\\' $1 ', CAST($v$b$v$ AS pg_catalog.text), \
             CAST($v$a$v$ AS pg_catalog.text)"
        );
        // Without a newline between, or with a block comment, a second string starts.
        for sql in ["SELECT E'a' '\\', $1", "SELECT E'a' /*\n*/ '\\', $1"] {
            assert_eq!(
                inline(sql, &values[..1]),
                Err(InlineError::Ambiguous(PLAIN_BACKSLASH)),
                "{sql:?}"
            );
        }
        // A comment at the end leaves no quote to continue with.
        assert_eq!(
            inlined("SELECT 'a', $1\n-- 'b", vec![text("x")]),
            "SELECT 'a', CAST($v$x$v$ AS pg_catalog.text)\n-- 'b"
        );
        assert_eq!(inlined("SELECT 'a'\n-- 'b", vec![]), "SELECT 'a'\n-- 'b");
        // A comment after the newline must end in a newline too.
        assert_eq!(
            inlined("SELECT 'a'\n  -- c\n'$1' || $1", vec![text("x")]),
            "SELECT 'a'\n  -- c\n'$1' || CAST($v$x$v$ AS pg_catalog.text)"
        );
    }

    #[test]
    fn a_comment_ends_at_a_lone_carriage_return() {
        assert_eq!(
            inlined("SELECT $1 -- x\r, $2", vec![text("a"), text("b")]),
            "SELECT CAST($v$a$v$ AS pg_catalog.text) -- x\r, CAST($v$b$v$ AS pg_catalog.text)"
        );
        assert_eq!(
            inlined("SELECT $2 -- c\r'$1' AS b", vec![text("a"), text("b")]),
            "SELECT CAST($v$b$v$ AS pg_catalog.text) -- c\r'$1' AS b"
        );
    }

    #[test]
    fn what_the_server_could_read_otherwise_is_refused_only_with_values() {
        let one = vec![text("x")];
        for (sql, hazard) in [
            ("SELECT '\\', $1", PLAIN_BACKSLASH),
            ("SELECT N'\\', $1", PLAIN_BACKSLASH),
            ("SELECT 'a'\n'\\', $1", PLAIN_BACKSLASH),
            ("SELECT E'\u{e9}\\'', $1", ENCODING_BACKSLASH),
            ("SELECT E'a'\x0b\n'b', $1", VERTICAL_TAB),
        ] {
            assert_eq!(
                inline(sql, &one),
                Err(InlineError::Ambiguous(hazard)),
                "{sql:?}"
            );
            assert_eq!(InlineError::Ambiguous(hazard).sqlstate(), "0A000");
            let sql = sql.replace(", $1", "");
            assert_eq!(inline(&sql, &[]).as_deref(), Ok(sql.as_str()));
        }
        // What is no hazard: a backslash in E'' after ASCII, in U&'', in a dollar quote, and a
        // vertical tab that no quote follows.
        for sql in [
            "SELECT E'\\\\', $1",
            "SELECT U&'\\0041', $1",
            "SELECT $q$\\$q$, $1",
            "SELECT 'a'\x0b, $1",
            "SELECT 'a'\x0b\n, $1",
        ] {
            assert!(inline(sql, &one).is_ok(), "{sql:?}");
        }
    }

    #[test]
    fn one_statement_at_most() {
        for sql in ["SELECT $1; SELECT 2", "; SELECT 1 ;; SELECT $1 ;"] {
            assert_eq!(
                inline(sql, &[text("x")]),
                Err(InlineError::MultipleStatements)
            );
            assert_eq!(InlineError::MultipleStatements.sqlstate(), "42601");
        }
        assert_eq!(
            inline("SELECT 1; SELECT 2", &[]),
            Err(InlineError::MultipleStatements)
        );
        for sql in [
            "SELECT $1;",
            ";;SELECT $1; -- c\n ; /* */",
            "SELECT ';', $1",
        ] {
            assert!(inline(sql, &[text("x")]).is_ok(), "{sql:?}");
        }
    }

    #[test]
    fn parameters_and_numbers_are_read_as_postgresql_15_reads_them() {
        let one = vec![Value::Int(Some(1))];
        for (sql, err) in [
            ("SELECT $0", InlineError::NoSuchParameter("0".into())),
            ("SELECT $00", InlineError::NoSuchParameter("00".into())),
            (
                "SELECT $99999999999",
                InlineError::NoSuchParameter("99999999999".into()),
            ),
            ("SELECT $2", InlineError::MissingValue(2, 1)),
            (
                "SELECT $2147483647",
                InlineError::MissingValue(2_147_483_647, 1),
            ),
            (
                "SELECT $2147483648",
                InlineError::NoSuchParameter("2147483648".into()),
            ),
            ("SELECT $1x", InlineError::TrailingJunk("parameter")),
            ("SELECT $1_0", InlineError::TrailingJunk("parameter")),
            (
                "SELECT 1x, $1",
                InlineError::TrailingJunk("numeric literal"),
            ),
            (
                "SELECT 0x1F, $1",
                InlineError::TrailingJunk("numeric literal"),
            ),
            (
                "SELECT 1_000, $1",
                InlineError::TrailingJunk("numeric literal"),
            ),
            (
                "SELECT 1e, $1",
                InlineError::TrailingJunk("numeric literal"),
            ),
            (
                "SELECT 1.5e+, $1",
                InlineError::TrailingJunk("numeric literal"),
            ),
            (
                "SELECT 1.x, $1",
                InlineError::TrailingJunk("numeric literal"),
            ),
            (
                "SELECT 1e5x, $1",
                InlineError::TrailingJunk("numeric literal"),
            ),
            ("SELECT $1 '", InlineError::Unterminated("quoted string")),
            ("SELECT $1 E'\\", InlineError::Unterminated("quoted string")),
            (
                "SELECT $1 \"",
                InlineError::Unterminated("quoted identifier"),
            ),
            (
                "SELECT $1 /* /* */",
                InlineError::Unterminated("/* comment"),
            ),
            (
                "SELECT $1 $a$ $b$",
                InlineError::Unterminated("dollar-quoted string"),
            ),
        ] {
            assert_eq!(inline(sql, &one), Err(err.clone()), "{sql:?}");
        }
        assert_eq!(InlineError::NoSuchParameter("0".into()).sqlstate(), "42P02");
        assert_eq!(InlineError::TrailingJunk("parameter").sqlstate(), "42601");
        assert_eq!(InlineError::Unterminated("x").sqlstate(), "42601");
        for sql in [
            "SELECT 1..2, $1",
            "SELECT .5e-3, 1.e5, 7., $1",
            "SELECT $1$$ $$",
            "SELECT $1 $$ $1 $$",
            "SELECT $ , $1",
            "SELECT $a, $1",
            "SELECT a$b$1, $1",
            "SELECT $\u{e9}$ $1 $\u{e9}$, $1",
            "SELECT $_1$ $1 $_1$, $1",
            "SELECT x$1y, $1",
            "SELECT 1+$1",
            "SELECT u&1, $1",
        ] {
            let out = inline(sql, &one).unwrap_or_else(|err| panic!("{sql:?}: {err}"));
            assert_eq!(out.matches("CAST(").count(), 1, "{sql:?}: {out}");
        }
        // Without values the server reports what it cannot read itself.
        assert_eq!(inline("SELECT 'x", &[]).as_deref(), Ok("SELECT 'x"));
    }

    #[test]
    fn values_sea_query_cannot_bind_are_refused_before_anything_is_sent() {
        assert_eq!(
            check_values(&vec![Value::Int(None); MAX_VALUES + 1]),
            Err(InlineError::TooManyValues(MAX_VALUES + 1))
        );
        assert!(check_values(&vec![Value::Int(None); MAX_VALUES]).is_ok());
        assert_eq!(InlineError::TooManyValues(1).sqlstate(), "54000");
        let array = |ty, items: Vec<Value>| Value::Array(ty, Some(Box::new(items)));
        for (value, err) in [
            (
                Value::BigUnsigned(Some(1 << 63)),
                InlineError::OutOfRange {
                    parameter: 2,
                    ty: "bigint",
                },
            ),
            (
                array(ArrayType::String, vec![text("a"), Value::String(None)]),
                InlineError::Unsupported {
                    parameter: 2,
                    what: "an array with a NULL element",
                },
            ),
            (
                array(ArrayType::String, vec![Value::Char(Some('a'))]),
                InlineError::Unsupported {
                    parameter: 2,
                    what: "an array of mixed types",
                },
            ),
            (
                array(
                    ArrayType::BigUnsigned,
                    vec![Value::BigUnsigned(Some(u64::MAX))],
                ),
                InlineError::OutOfRange {
                    parameter: 2,
                    ty: "bigint",
                },
            ),
        ] {
            let values = [Value::Int(Some(1)), value];
            assert_eq!(check_values(&values), Err(err.clone()));
            assert_eq!(inline("SELECT $1, $2", &values), Err(err));
        }
        let fine = [
            Value::BigUnsigned(Some(i64::MAX as u64)),
            array(ArrayType::BigUnsigned, vec![Value::BigUnsigned(Some(1))]),
            array(ArrayType::Int, vec![]),
            Value::Array(ArrayType::Int, None),
        ];
        assert_eq!(check_values(&fine), Ok(()));
    }

    #[test]
    fn every_array_element_is_checked_against_the_array_type() {
        let samples = [
            (ArrayType::Bool, Value::Bool(Some(true))),
            (ArrayType::TinyInt, Value::TinyInt(Some(1))),
            (ArrayType::SmallInt, Value::SmallInt(Some(1))),
            (ArrayType::Int, Value::Int(Some(1))),
            (ArrayType::BigInt, Value::BigInt(Some(1))),
            (ArrayType::TinyUnsigned, Value::TinyUnsigned(Some(1))),
            (ArrayType::SmallUnsigned, Value::SmallUnsigned(Some(1))),
            (ArrayType::Unsigned, Value::Unsigned(Some(1))),
            (ArrayType::BigUnsigned, Value::BigUnsigned(Some(1))),
            (ArrayType::Float, Value::Float(Some(1.0))),
            (ArrayType::Double, Value::Double(Some(1.0))),
            (ArrayType::String, text("a")),
            (ArrayType::Char, Value::Char(Some('a'))),
            (ArrayType::Bytes, Value::Bytes(Some(vec![1]))),
            (
                ArrayType::Json,
                Value::Json(Some(Box::new(serde_json::json!(1)))),
            ),
            (
                ArrayType::ChronoDate,
                Value::ChronoDate(Some(NaiveDate::MIN)),
            ),
            (
                ArrayType::ChronoTime,
                Value::ChronoTime(Some(NaiveTime::MIN)),
            ),
            (
                ArrayType::ChronoDateTime,
                Value::ChronoDateTime(Some(postgres_epoch())),
            ),
            (
                ArrayType::ChronoDateTimeUtc,
                Value::ChronoDateTimeUtc(Some(postgres_epoch().and_utc())),
            ),
            (
                ArrayType::ChronoDateTimeLocal,
                Value::ChronoDateTimeLocal(Some(postgres_epoch().and_utc().into())),
            ),
            (
                ArrayType::ChronoDateTimeWithTimeZone,
                Value::ChronoDateTimeWithTimeZone(Some(postgres_epoch().and_utc().into())),
            ),
            (ArrayType::Uuid, Value::Uuid(Some(uuid_nil()))),
        ];
        for (n, (ty, _)) in samples.iter().enumerate() {
            for (m, (_, item)) in samples.iter().enumerate() {
                assert_eq!(element_fits(ty, item), n == m, "{ty:?} of {item:?}");
            }
        }
    }

    #[test]
    fn setting_extra_float_digits_below_one_is_refused() {
        for sql in [
            "SET extra_float_digits = 0",
            "set local EXTRA_FLOAT_DIGITS to -3",
            "SET SESSION \"extra_float_digits\" = '0'",
            "SET extra_float_digits = 1.5",
            "SET extra_float_digits",
            "SELECT 1; SET LOCAL extra_float_digits = 0",
            "SELECT set_config('extra_float_digits', '0', true)",
            "SELECT pg_catalog.\"set_config\"(E'extra_float_digits', '-1', false)",
            "SELECT set_config('extra_float_digits', $$0$$, false), 1",
            "SELECT set_config('extra_float_digits', x, false)",
            "SELECT set_config('extra_float_digits'",
        ] {
            assert_eq!(
                check_settings(sql),
                Err(InlineError::Setting(EXTRA_FLOAT_DIGITS)),
                "{sql:?}"
            );
        }
        assert_eq!(InlineError::Setting(EXTRA_FLOAT_DIGITS).sqlstate(), "0A000");
        for sql in [
            "SET extra_float_digits = 1",
            "SET LOCAL extra_float_digits TO +3",
            "SET extra_float_digits = '2'",
            "SET extra_float_digits = DEFAULT",
            "RESET extra_float_digits",
            "SET search_path = public",
            "SET LOCAL TimeZone = 'UTC'",
            "SELECT 'SET extra_float_digits = 0'",
            "SELECT set_config('extra_float_digits', '3', true)",
            "SELECT set_config('app.setting', '0', true)",
            "SELECT set_config",
            "SELECT 'unterminated",
        ] {
            assert_eq!(check_settings(sql), Ok(()), "{sql:?}");
        }
        // Through values too.
        let sql = "SELECT set_config($1, $2, true)";
        assert_eq!(
            inline(sql, &[text("extra_float_digits"), text("0")]),
            Err(InlineError::Setting(EXTRA_FLOAT_DIGITS))
        );
        assert!(inline(sql, &[text("extra_float_digits"), text("2")]).is_ok());
        assert!(inline(sql, &[text("statement_timeout"), text("0")]).is_ok());
        assert_eq!(
            inline("SET extra_float_digits = $1", &[Value::Int(Some(0))]),
            Err(InlineError::Setting(EXTRA_FLOAT_DIGITS))
        );
    }

    #[test]
    fn negative_numbers_stay_inside_quotes() {
        // `x-$1` with a bare -5 would read `x--5`, the start of a comment.
        assert_eq!(
            inlined("SELECT 1-$1", vec![Value::BigInt(Some(-5))]),
            "SELECT 1-CAST($v$-5$v$ AS pg_catalog.int8)"
        );
    }

    #[test]
    fn nulls_keep_their_type() {
        assert_eq!(
            inlined(
                "SELECT $1, $2, $3",
                vec![
                    Value::String(None),
                    Value::Uuid(None),
                    Value::Array(ArrayType::Int, None)
                ]
            ),
            "SELECT CAST(NULL AS pg_catalog.text), CAST(NULL AS pg_catalog.uuid), \
             CAST(NULL AS pg_catalog.int4[])"
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
            "SELECT CAST(ARRAY[CAST($v$a$v$ AS pg_catalog.text),CAST($v$b'$v$ AS \
             pg_catalog.text)] AS pg_catalog.text[]), CAST('{}' AS pg_catalog.uuid[])"
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
        assert_eq!(
            InlineError::UnusedValues { used: 1, given: 2 }.sqlstate(),
            "08P01"
        );
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
        assert_eq!(
            InlineError::Unsupported {
                parameter: 1,
                what: "x"
            }
            .sqlstate(),
            "0A000"
        );
    }

    #[test]
    fn dates_times_and_timestamps_the_server_refuses_fail_when_it_runs_the_statement() {
        let day = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        let first = day(-4713, 11, 24);
        assert_eq!(date_text(first).as_deref(), Some("4714-11-24 BC"));
        assert_eq!(date_text(first.pred_opt().unwrap()), None);
        let midnight = first.and_hms_opt(0, 0, 0).unwrap();
        assert_eq!(
            timestamp_text(midnight, "+00").as_deref(),
            Some("4714-11-24 00:00:00.000000+00 BC")
        );
        assert_eq!(
            timestamp_text(midnight - TimeDelta::microseconds(1), ""),
            None
        );
        let leap = |nanos| NaiveTime::from_hms_nano_opt(23, 59, 59, nanos).unwrap();
        assert_eq!(
            time_text(leap(1_000_000_000)).as_deref(),
            Some("24:00:00.000000")
        );
        assert_eq!(time_text(leap(1_000_001_000)), None);
        let before = day(-5000, 1, 1).and_hms_opt(0, 0, 0).unwrap();
        for (value, ty) in [
            (Value::ChronoDate(Some(day(-5000, 1, 1))), "date"),
            (Value::ChronoTime(Some(leap(1_500_000_000))), "time"),
            (Value::ChronoDateTime(Some(before)), "timestamp"),
            (
                Value::ChronoDateTimeUtc(Some(before.and_utc())),
                "timestamptz",
            ),
        ] {
            assert_eq!(
                inline("SELECT $1", &[value]).unwrap(),
                format!("SELECT CAST({BEYOND_POSTGRES} AS pg_catalog.{ty})")
            );
        }
        let array = Value::Array(
            ArrayType::ChronoDate,
            Some(Box::new(vec![Value::ChronoDate(Some(day(-5000, 1, 1)))])),
        );
        assert_eq!(
            inline("SELECT $1", &[array]).unwrap(),
            format!(
                "SELECT CAST(ARRAY[CAST({BEYOND_POSTGRES} AS pg_catalog.date)] AS pg_catalog.date[])"
            )
        );
        assert_eq!(
            InlineError::OutOfRange {
                parameter: 1,
                ty: "date"
            }
            .sqlstate(),
            "22008"
        );
    }

    #[test]
    fn timestamps_are_cut_to_microseconds_like_sqlx() {
        let t = chrono::DateTime::parse_from_rfc3339("2026-01-02T03:04:05.123456789Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            inlined("SELECT $1", vec![t.into()]),
            "SELECT CAST($v$2026-01-02 03:04:05.123456+00$v$ AS pg_catalog.timestamptz)"
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
        assert_eq!(date_text(day(0)).as_deref(), Some("0001-03-15 BC"));
        assert_eq!(date_text(day(-43)).as_deref(), Some("0044-03-15 BC"));
        assert_eq!(date_text(day(12345)).as_deref(), Some("12345-03-15"));
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
            "SELECT CAST($v$'$v$ AS pg_catalog.\"char\")"
        );
    }

    #[test]
    fn a_negative_nan_is_negated() {
        assert_eq!(
            inlined("SELECT $1", vec![Value::Double(Some(-f64::NAN))]),
            "SELECT CAST(OPERATOR(pg_catalog.-) CAST($v$NaN$v$ AS pg_catalog.float8) AS \
             pg_catalog.float8)"
        );
        assert_eq!(
            inlined("SELECT $1", vec![Value::Float(Some(-f32::NAN))]),
            "SELECT CAST(OPERATOR(pg_catalog.-) CAST($v$NaN$v$ AS pg_catalog.float4) AS \
             pg_catalog.float4)"
        );
        assert_eq!(
            inlined(
                "SELECT $1, $2",
                vec![
                    Value::Double(Some(f64::NAN)),
                    Value::Float(Some(f32::INFINITY))
                ]
            ),
            "SELECT CAST($v$NaN$v$ AS pg_catalog.float8), CAST($v$Infinity$v$ AS pg_catalog.float4)"
        );
    }
}
