//! Which columns the studio never shows, filters, sorts or edits. The rule is by name, so a
//! secret column added later is masked without a change here: encrypted tokens (`*_encrypted`),
//! passwords, secrets, tokens and backup codes, and Better Auth's `verifications.value`
//! (one-time codes and reset tokens).

pub fn is_secret(table: &str, column: &str) -> bool {
    column.ends_with("_encrypted")
        || column.ends_with("_token")
        || column.ends_with("_secret")
        || matches!(column, "password" | "secret" | "token" | "backup_codes")
        || (table, column) == ("verifications", "value")
}

#[cfg(test)]
mod tests {
    use super::is_secret;

    #[test]
    fn token_expiry_and_token_counts_are_not_secrets() {
        assert!(is_secret("accounts", "access_token"));
        assert!(!is_secret("accounts", "access_token_expires_at"));
        assert!(!is_secret("agent_runs", "prompt_tokens"));
        assert!(is_secret("verifications", "value"));
        assert!(!is_secret("user_tools", "value"));
    }
}
