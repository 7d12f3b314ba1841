//! Third-party tokens reach the database only as ciphertext made by the caller.

use std::fmt;

use crate::Error;

/// Prefixes of plaintext tokens from the providers we connect to: a value starting with one of
/// these was not encrypted.
const PLAINTEXT_PREFIXES: &[&str] = &[
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxe-",
    "xoxr-",
    "xapp-",
    "lin_api_",
    "lin_oauth_",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
];

/// An application-encrypted token for a `*_encrypted` column. It is built only from ciphertext
/// ([`EncryptedToken::from_ciphertext`]), never from a `&str`, and refuses values that look like a
/// provider's plaintext token. `Debug` shows nothing of it and it has no `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptedToken(String);

impl EncryptedToken {
    /// Wraps ciphertext produced by the caller's encryption (e.g. a KMS envelope).
    pub fn from_ciphertext(ciphertext: String) -> Result<Self, Error> {
        if ciphertext.trim().is_empty() {
            return Err(Error::invalid("encrypted token", "it is empty"));
        }
        if PLAINTEXT_PREFIXES.iter().any(|p| ciphertext.starts_with(p)) {
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
