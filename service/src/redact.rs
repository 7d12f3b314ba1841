//! Error text that may be stored (`last_error`) or logged: secrets cut out, length bounded.
//!
//! Provider tokens are recognised by the workspace's one list
//! ([`db_connect::secrets::PROVIDER_TOKEN_PREFIXES`]). Key names use their own suffix words:
//! in free text a key arrives as `X-Api-Key:` or `client_signature=`, not as a column name.

use db_connect::secrets::looks_like_provider_token;

/// The longest error text kept; longer text is cut at a character boundary.
pub const MAX_ERROR_LEN: usize = 8 * 1024;

/// What stands in for a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Words that, at the end of a `key=value` or `key: value` name, make the value a secret.
const SECRET_KEY_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "authorization",
    "cookie",
    "apikey",
    "api_key",
    "api-key",
    "credentials",
    "signature",
];

/// A JSON Web Token's start (`{"` in base64url): error text may carry one whole.
const JWT_PREFIX: &str = "eyJ";

fn is_value_char(c: char) -> bool {
    !c.is_whitespace() && !matches!(c, '"' | '\'' | ',' | ';' | ')' | '}' | ']' | '&')
}

/// Splits `text` into runs of value characters and runs of the rest, in order.
fn runs(text: &str) -> impl Iterator<Item = (bool, &str)> {
    let mut rest = text;
    std::iter::from_fn(move || {
        let first = rest.chars().next()?;
        let kind = is_value_char(first);
        let end = rest
            .char_indices()
            .find(|&(_, c)| is_value_char(c) != kind)
            .map_or(rest.len(), |(i, _)| i);
        let (run, tail) = rest.split_at(end);
        rest = tail;
        Some((kind, run))
    })
}

fn names_a_secret(key: &str) -> bool {
    let key = key
        .trim_matches(|c: char| !c.is_alphanumeric())
        .to_ascii_lowercase();
    SECRET_KEY_WORDS.iter().any(|word| key.ends_with(word))
}

/// One word of value characters with its secrets replaced.
fn redact_word(word: &str) -> String {
    if looks_like_provider_token(word) || word.starts_with(JWT_PREFIX) {
        return REDACTED.to_owned();
    }
    // key=value and key:value inside one word (query strings, headers without a space).
    for separator in ['=', ':'] {
        if let Some((key, value)) = word.split_once(separator)
            && !value.is_empty()
            && !value.starts_with("//")
            && names_a_secret(key)
        {
            return format!("{key}{separator}{REDACTED}");
        }
    }
    // The password of a URL: scheme://user:password@host.
    if let Some((scheme, rest)) = word.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _password)) = userinfo.split_once(':')
    {
        return format!("{scheme}://{user}:{REDACTED}@{host}");
    }
    word.to_owned()
}

/// `raw` with what looks like a secret replaced by `[redacted]`: provider tokens and JWTs
/// wherever they are, the value after a secret-named key (`token=...`, `Authorization: Bearer
/// ...`, `"password": "..."`), and URL passwords. Then cut to [`MAX_ERROR_LEN`] bytes.
pub fn error_text(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len().min(MAX_ERROR_LEN));
    // Words still to redact: the value after a secret-named key, and after a scheme word
    // (`Authorization: Bearer <token>`).
    let mut pending = false;
    // The last word named a secret; a `:` or `=` before the next word makes that word its value.
    let mut secret_key = false;
    for (is_word, run) in runs(raw) {
        if !is_word || (secret_key && run.chars().all(|c| matches!(c, ':' | '='))) {
            pending |= secret_key && run.contains([':', '=']);
            out.push_str(run);
            continue;
        }
        secret_key = false;
        let scheme = matches!(run.to_ascii_lowercase().as_str(), "bearer" | "basic");
        if pending {
            pending = scheme;
            out.push_str(if scheme { run } else { REDACTED });
        } else if names_a_secret(run) {
            pending = run.ends_with([':', '=']);
            secret_key = !pending;
            out.push_str(run);
        } else {
            pending = scheme;
            out.push_str(&redact_word(run));
        }
    }
    truncate(out)
}

fn truncate(mut text: String) -> String {
    if text.len() > MAX_ERROR_LEN {
        let mut end = MAX_ERROR_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_tokens_and_jwts_are_redacted_wherever_they_are() {
        let text = error_text(
            "slack said invalid_auth for xoxb-123-456-abc, linear lin_api_Zk9 and eyJhbGciOi.eyJzdWIi.sig",
        );
        assert_eq!(
            text,
            "slack said invalid_auth for [redacted], linear [redacted] and [redacted]"
        );
    }

    #[test]
    fn values_after_secret_names_are_redacted() {
        for (raw, expected) in [
            (
                "GET /api?token=abc123&page=2 failed",
                "GET /api?token=[redacted]&page=2 failed",
            ),
            (
                "header Authorization: Bearer sk-live-1234 rejected",
                "header Authorization: Bearer [redacted] rejected",
            ),
            (
                r#"body {"password": "hunter2", "user": "ada"}"#,
                r#"body {"password": "[redacted]", "user": "ada"}"#,
            ),
            ("client_secret=s3cr3t", "client_secret=[redacted]"),
            (
                "connect postgresql://app:pa55@db:5432/app refused",
                "connect postgresql://app:[redacted]@db:5432/app refused",
            ),
        ] {
            assert_eq!(error_text(raw), expected, "{raw}");
        }
    }

    #[test]
    fn ordinary_text_is_kept_and_long_text_is_cut_at_a_character_boundary() {
        let plain = "timeout after 30s calling https://slack.com/api/chat.postMessage (event Ev1)";
        assert_eq!(error_text(plain), plain);
        assert_eq!(error_text("prompt_tokens: 12"), "prompt_tokens: 12");
        let long = "é".repeat(MAX_ERROR_LEN);
        let cut = error_text(&long);
        assert!(cut.len() <= MAX_ERROR_LEN && cut.len() > MAX_ERROR_LEN - 2);
    }
}
