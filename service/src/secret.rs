//! Third-party tokens reach the database only as ciphertext made by the caller.

use std::fmt;

use db_connect::secrets::looks_like_provider_token;

use crate::Error;

/// An application-encrypted token for a `*_encrypted` column. It is built only from ciphertext
/// ([`EncryptedToken::from_ciphertext`]), never from a `&str`, and refuses values that look like a
/// provider's plaintext token (Slack, Linear and GitHub prefixes, rotated Slack tokens included:
/// `db_connect::secrets::PROVIDER_TOKEN_PREFIXES`). `Debug` shows nothing of it and it has no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedToken(String);

impl EncryptedToken {
    /// Wraps ciphertext produced by the caller's encryption (e.g. a KMS envelope).
    pub fn from_ciphertext(ciphertext: String) -> Result<Self, Error> {
        if ciphertext.trim().is_empty() {
            return Err(Error::invalid("encrypted token", "it is empty"));
        }
        if looks_like_provider_token(&ciphertext) {
            return Err(Error::invalid(
                "encrypted token",
                "it looks like a plaintext provider token; encrypt it first",
            ));
        }
        Ok(Self(ciphertext))
    }

    /// The ciphertext, for decrypting.
    pub fn ciphertext(&self) -> &str {
        &self.0
    }

    pub(crate) fn into_ciphertext(self) -> String {
        self.0
    }
}

impl fmt::Debug for EncryptedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptedToken(****)")
    }
}

#[cfg(test)]
mod tests {
    use super::EncryptedToken;

    /// Every well-known plaintext form of the three providers' tokens is refused, rotated Slack
    /// tokens (`xoxe.xoxp-`, `xoxe.xoxb-`, `xoxe-`) included; ciphertext is not.
    #[test]
    fn plaintext_provider_tokens_are_refused() {
        for plaintext in [
            "xoxb-1-2-abc",
            "xoxp-1-2-abc",
            "xoxe.xoxp-1-abc",
            "xoxe.xoxb-1-abc",
            "xoxe-1-abc",
            "xapp-1-abc",
            "xoxc-1-abc",
            "https://hooks.slack.com/services/T/B/x",
            "lin_api_abc",
            "lin_oauth_abc",
            "ghp_abc",
            "gho_abc",
            "ghu_abc",
            "ghs_abc",
            "ghr_abc",
            "github_pat_abc",
            " xoxb-leading-space",
        ] {
            assert!(
                EncryptedToken::from_ciphertext(plaintext.to_owned()).is_err(),
                "{plaintext} was accepted as ciphertext"
            );
        }
        for ciphertext in ["v1:AAECAwQF", "kms:eyJhbGciOi", "xox-not-a-prefix"] {
            assert!(
                EncryptedToken::from_ciphertext(ciphertext.to_owned()).is_ok(),
                "{ciphertext}"
            );
        }
    }
}
