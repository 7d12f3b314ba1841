//! The one rule for what is secret: which columns and which JSON object keys hold passwords,
//! tokens, keys or one-time codes. The studio (what it never shows), the entities (what
//! `cargo xtask entities` keeps out of `Serialize` and `Debug`) and anything that logs a row or
//! a payload ask here, so a secret column or key added later is covered without a change.
//!
//! The rule is by name. A name (column or JSON key, in any case style: `access_token`,
//! `accessToken`, `X-Api-Key`, `OPENAI_API_KEY`) is split into lowercase words, and it is
//! secret when
//!
//! - its last word is one of [`SECRET_WORDS`] (`token`, `secret`, `password`, `encrypted`,
//!   `authorization`, `cookie`, `credentials`, ...): `access_token`, `client_secret`,
//!   `refresh_token_encrypted`, `Set-Cookie`;
//! - or its last two words are one of [`SECRET_PAIRS`] (`api key`, `private key`,
//!   `backup codes`, `webhook url`, ...): `api_key`, `apiKey`, `AWS_SECRET_ACCESS_KEY`.
//!
//! A name whose first word is `has` or `is` is a flag about a secret (`has_password`), never
//! one. So a count of tokens (`prompt_tokens`), a token's expiry (`access_token_expires_at`), a key
//! that is not a credential (`idempotency_key`, `public_key`) and Slack's `authorizations` list
//! stay visible. On top of names, Better Auth's `verifications` table keeps one-time codes and
//! reset tokens in `identifier` and `value` whatever the plugin (`reset-password:<token>` as
//! identifier, the user id as value; an OTP as value): both are secret, and `identifier` may
//! show its part before the first `:`, which says what the row is for.
//!
//! A JSON string that starts like a provider's plaintext token
//! ([`looks_like_provider_token`]: `xoxb-`, `lin_api_`, `ghp_`, ...) is redacted whatever its
//! key.

use std::borrow::Cow;

use serde_json::Value;

/// What stands in for a redacted JSON value.
pub const REDACTED: &str = "[redacted]";

/// What stands in for a secret column's value in `Debug` output.
pub const MASK: &str = "****";

/// Last words that make a name secret.
pub const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "encrypted",
    "authorization",
    "cookie",
    "credential",
    "credentials",
    "apikey",
    "otp",
    "dsn",
];

/// Last two words that make a name secret.
pub const SECRET_PAIRS: &[(&str, &str)] = &[
    ("api", "key"),
    ("private", "key"),
    ("secret", "key"),
    ("access", "key"),
    ("signing", "key"),
    ("encryption", "key"),
    ("master", "key"),
    ("session", "key"),
    ("client", "key"),
    ("backup", "codes"),
    ("recovery", "codes"),
    ("password", "hash"),
    ("password", "digest"),
    ("webhook", "url"),
    ("database", "url"),
    ("connection", "string"),
];

/// Prefixes of plaintext credentials of the providers we connect to (Slack, Linear, GitHub):
/// a value starting with one of these is a live token, never ciphertext.
pub const PROVIDER_TOKEN_PREFIXES: &[&str] = &[
    // Slack: bot, user, app-level, configuration/refresh, legacy workspace, session tokens, and
    // the rotated forms of bot and user tokens (`xoxe.xoxb-1-...`, `xoxe.xoxp-1-...`).
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxr-",
    "xoxe-",
    "xoxe.",
    "xoxs-",
    "xoxc-",
    "xoxd-",
    "xoxo-",
    "xapp-",
    "https://hooks.slack.com/",
    // Linear: personal API keys, OAuth access and refresh tokens, webhook signing secrets.
    "lin_api_",
    "lin_oauth_",
    "lin_refresh_",
    "lin_wh_",
    // GitHub: personal, OAuth, user-to-server, server-to-server, refresh, fine-grained
    // personal tokens.
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
];

/// How much of a secret column may be shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretColumn {
    /// Nothing but whether it is set.
    Masked,
    /// The text up to and including the first `:` (what the row is for, e.g.
    /// `reset-password:`); nothing when there is no `:`.
    PrefixShown,
}

/// Whether column `column` of table `table` is secret, and how much of it may be shown.
pub fn secret_column(table: &str, column: &str) -> Option<SecretColumn> {
    match (table, column) {
        ("verifications", "identifier") => Some(SecretColumn::PrefixShown),
        ("verifications", "value") => Some(SecretColumn::Masked),
        _ => is_secret_name(column).then_some(SecretColumn::Masked),
    }
}

/// Whether column `column` of table `table` is secret (see [`secret_column`]).
pub fn is_secret_column(table: &str, column: &str) -> bool {
    secret_column(table, column).is_some()
}

/// Whether a column name or a JSON object key names a secret (see the module's rule).
pub fn is_secret_name(name: &str) -> bool {
    let words = words(name);
    let Some(last) = words.last() else {
        return false;
    };
    // `has_password`, `isToken`: a flag about a secret, not the secret.
    if matches!(words[0].as_str(), "has" | "is") {
        return false;
    }
    if SECRET_WORDS.contains(&last.as_str()) {
        return true;
    }
    let [.., before, last] = words.as_slice() else {
        return false;
    };
    SECRET_PAIRS.contains(&(before.as_str(), last.as_str()))
}

/// `accessToken`, `access_token`, `X-Access-Token`, `ACCESS_TOKEN` -> `["access", "token"]`.
fn words(name: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let chars: Vec<char> = name.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            words.extend((!current.is_empty()).then(|| std::mem::take(&mut current)));
            continue;
        }
        // A word starts at an upper-case letter after a lower-case one (`accessToken`), or at
        // the last capital of a run followed by a lower-case one (`APIKey` -> API, Key).
        let prev = i.checked_sub(1).map(|p| chars[p]);
        let next = chars.get(i + 1);
        let boundary = c.is_uppercase()
            && (prev.is_some_and(|p| p.is_lowercase() || p.is_ascii_digit())
                || (prev.is_some_and(char::is_uppercase)
                    && next.is_some_and(|n| n.is_lowercase())));
        if boundary && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        current.extend(c.to_lowercase());
    }
    words.extend((!current.is_empty()).then_some(current));
    words
}

/// Whether `value` starts like a provider's plaintext token (see [`PROVIDER_TOKEN_PREFIXES`]).
pub fn looks_like_provider_token(value: &str) -> bool {
    let value = value.trim_start();
    PROVIDER_TOKEN_PREFIXES.iter().any(|p| value.starts_with(p))
}

/// What of a [`SecretColumn::PrefixShown`] value may be shown: up to and including its first
/// `:` (`reset-password:`), or nothing.
pub fn shown_prefix(value: &str) -> Option<&str> {
    value.find(':').map(|at| &value[..=at])
}

/// `value` as it may be printed: its shown prefix followed by [`MASK`], or the mask alone.
pub fn masked_with_prefix(value: &str) -> String {
    format!("{}{MASK}", shown_prefix(value).unwrap_or_default())
}

/// Replaces, at any depth, the value of every object key the rule names secret, and every
/// string that looks like a provider token, with [`REDACTED`]. Returns whether anything was
/// replaced. Walks with its own stack, so no nesting depth can overflow the thread's.
pub fn redact_json(value: &mut Value) -> bool {
    let mut redacted = false;
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if is_secret_name(key) && !is_redacted(child) {
                        *child = Value::String(REDACTED.to_owned());
                        redacted = true;
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            Value::String(text) if looks_like_provider_token(text) => {
                *text = REDACTED.to_owned();
                redacted = true;
            }
            _ => {}
        }
    }
    redacted
}

/// `value` with [`redact_json`] applied; borrowed, not copied, when nothing in it is secret.
pub fn redacted_json(value: &Value) -> Cow<'_, Value> {
    if !holds_secret(value) {
        return Cow::Borrowed(value);
    }
    let mut copy = value.clone();
    redact_json(&mut copy);
    Cow::Owned(copy)
}

/// Whether [`redact_json`] would replace anything in `value`.
pub fn holds_secret(value: &Value) -> bool {
    let mut stack = vec![value];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    if is_secret_name(key) && !is_redacted(child) {
                        return true;
                    }
                    stack.push(child);
                }
            }
            Value::Array(items) => stack.extend(items),
            Value::String(text) if looks_like_provider_token(text) => return true,
            _ => {}
        }
    }
    false
}

/// Null and an already redacted value reveal nothing, so replacing them would only make a
/// second redaction look like a change.
fn is_redacted(value: &Value) -> bool {
    value.is_null() || value.as_str() == Some(REDACTED)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names_split_into_words_in_every_case_style() {
        for (name, expected) in [
            ("access_token", vec!["access", "token"]),
            ("accessToken", vec!["access", "token"]),
            ("X-Api-Key", vec!["x", "api", "key"]),
            ("OPENAI_API_KEY", vec!["openai", "api", "key"]),
            ("APIKey", vec!["api", "key"]),
            ("oauth2Token", vec!["oauth2", "token"]),
            ("", vec![]),
        ] {
            assert_eq!(words(name), expected, "{name}");
        }
    }

    #[test]
    fn credentials_are_secret_and_their_metadata_is_not() {
        for name in [
            "token",
            "access_token",
            "refreshToken",
            "id_token",
            "client_secret",
            "password",
            "access_token_encrypted",
            "Authorization",
            "set-cookie",
            "api_key",
            "apiKey",
            "x-api-key",
            "AWS_SECRET_ACCESS_KEY",
            "private_key",
            "backup_codes",
            "password_hash",
            "credentials",
            "webhook_url",
            "GITHUB_TOKEN",
        ] {
            assert!(is_secret_name(name), "{name} should be secret");
        }
        for name in [
            "prompt_tokens",
            "completion_tokens",
            "access_token_expires_at",
            "token_type",
            "has_password",
            "authorizations",
            "idempotency_key",
            "public_key",
            "key",
            "AWS_ACCESS_KEY_ID",
            "api_app_id",
            "value",
            "identifier",
            "url",
        ] {
            assert!(!is_secret_name(name), "{name} should not be secret");
        }
    }

    #[test]
    fn verifications_are_secret_and_show_what_they_are_for() {
        assert_eq!(
            secret_column("verifications", "identifier"),
            Some(SecretColumn::PrefixShown)
        );
        assert_eq!(
            secret_column("verifications", "value"),
            Some(SecretColumn::Masked)
        );
        assert_eq!(secret_column("user_tools", "value"), None);
        assert_eq!(
            shown_prefix("reset-password:abc:def"),
            Some("reset-password:")
        );
        assert_eq!(shown_prefix("owner@example.com"), None);
        assert_eq!(
            masked_with_prefix("reset-password:abc"),
            "reset-password:****"
        );
        assert_eq!(masked_with_prefix("sign-in-otp-a@b.c"), "****");
    }

    #[test]
    fn rotated_slack_tokens_look_like_provider_tokens() {
        for token in [
            "xoxe.xoxp-1-abc",
            "xoxe.xoxb-1-abc",
            "xoxe-1-abc",
            "xoxb-1",
            "lin_oauth_x",
            "github_pat_x",
        ] {
            assert!(looks_like_provider_token(token), "{token}");
        }
        assert!(!looks_like_provider_token("v1:AAECAwQF"));
    }

    #[test]
    fn json_is_redacted_at_any_depth_by_key_and_by_token_prefix() {
        let mut payload = json!({
            "token": "slack-verification-token",
            "team_id": "T1",
            "authorizations": [{ "team_id": "T1", "is_bot": true }],
            "event": {
                "text": "hello",
                "files": [{ "headers": { "Authorization": "Bearer abc" } }],
                "bot": "xoxb-123",
            },
            "config": { "apiKey": { "nested": "object" }, "prompt_tokens": 12 },
            "none": { "password": null },
        });
        assert!(holds_secret(&payload));
        assert!(matches!(redacted_json(&payload), Cow::Owned(_)));
        assert!(redact_json(&mut payload));
        assert!(!holds_secret(&payload));
        assert!(matches!(redacted_json(&payload), Cow::Borrowed(_)));
        assert_eq!(
            payload,
            json!({
                "token": REDACTED,
                "team_id": "T1",
                "authorizations": [{ "team_id": "T1", "is_bot": true }],
                "event": {
                    "text": "hello",
                    "files": [{ "headers": { "Authorization": REDACTED } }],
                    "bot": REDACTED,
                },
                "config": { "apiKey": REDACTED, "prompt_tokens": 12 },
                "none": { "password": null },
            })
        );
        assert!(!redact_json(&mut payload), "a second pass changes nothing");
    }

    #[test]
    fn deep_json_does_not_overflow_the_stack() {
        let mut value = json!("xoxb-deep");
        for _ in 0..100_000 {
            value = Value::Array(vec![value]);
        }
        assert!(redact_json(&mut value));
        // Dropping a deeply nested value recurses in serde_json; unnest it first.
        while let Value::Array(mut items) = value {
            value = items.pop().unwrap();
        }
        assert_eq!(value, json!(REDACTED));
    }
}
