//! Better Auth's password hash, made in Rust: `better-auth` 1.3 to 1.7 (`crypto/password`) hash
//! with scrypt N = 16384, r = 16, p = 1 into 64 bytes, the salt being the 32-character hex text of
//! 16 random bytes (its UTF-8 bytes are the scrypt salt), and store `<salt hex>:<key hex>`.
//! The password is NFKC-normalised first; the seed's password is ASCII, which NFKC leaves alone.

use scrypt::{Params, scrypt};

const LOG_N: u8 = 14;
const R: u32 = 16;
const P: u32 = 1;
const KEY_BYTES: usize = 64;

/// The `accounts.password` value Better Auth would store for `password` with this salt.
pub fn better_auth_hash(password: &str, salt: [u8; 16]) -> String {
    assert!(
        password.is_ascii(),
        "only ASCII passwords, which NFKC normalisation leaves unchanged"
    );
    let salt = to_hex(&salt);
    let params = Params::new(LOG_N, R, P).expect("Better Auth's scrypt parameters are valid");
    let mut key = [0u8; KEY_BYTES];
    scrypt(password.as_bytes(), salt.as_bytes(), &params, &mut key)
        .expect("a 64-byte output is valid");
    format!("{salt}:{}", to_hex(&key))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_a_hash_made_by_better_auth() {
        // Node's crypto.scrypt with better-auth 1.7.25's parameters and salt handling
        // (`@better-auth/utils/password.node.mjs`), for a fixed salt. That Better Auth itself
        // accepts the hash is shown by `seed/tests/better_auth.rs`.
        assert_eq!(
            better_auth_hash("correct-horse-battery-staple", [0x11; 16]),
            PINNED
        );
    }

    const PINNED: &str = "11111111111111111111111111111111:c1442d91e01e7018ff53675ebde41adc70390c4e909c1d1c5d15f855b7b7ed54ed467e15e76b84ac2644ecb8d9914ab5c6d48046562e10895a4fac169cf4768a";
}
