//! API tokens are never stored or compared in the clear: we keep their
//! SHA-256 and compare digests in constant time.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Hex SHA-256 of a token.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Constant-time comparison of a presented token against a stored hex digest.
pub fn token_matches(presented: &str, stored_hex_sha256: &str) -> bool {
    let Ok(stored) = hex::decode(stored_hex_sha256) else {
        return false;
    };
    let digest = Sha256::digest(presented.as_bytes());
    stored.len() == digest.len() && bool::from(digest.as_slice().ct_eq(&stored))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_compare() {
        let h = hash_token("s3cret");
        assert!(token_matches("s3cret", &h));
        assert!(!token_matches("s3cre", &h));
        assert!(!token_matches("s3cret", "zz"));
    }
}
