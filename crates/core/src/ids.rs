//! Validated identifiers.
//!
//! Tenant and agent ids become NATS subject tokens (`clawhive.req.<tenant>.<agent>`),
//! so they are restricted to `[a-z0-9_-]`; session, user and request ids allow a
//! wider set but never whitespace, wildcards or separators that could confuse
//! subjects or Redis keys.

use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("{kind} must not be empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains {ch:?}; allowed: {allowed}")]
    BadChar { kind: &'static str, ch: char, allowed: &'static str },
}

fn validate(
    kind: &'static str,
    value: &str,
    max: usize,
    allowed: &'static str,
    ok: fn(char) -> bool,
) -> Result<(), IdError> {
    if value.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if value.chars().count() > max {
        return Err(IdError::TooLong { kind, max });
    }
    if let Some(ch) = value.chars().find(|c| !ok(*c)) {
        return Err(IdError::BadChar { kind, ch, allowed });
    }
    Ok(())
}

fn token_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
}

fn wide_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@' | '+' | '=')
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max:expr, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Result<Self, IdError> {
                let value = value.into();
                validate($kind, &value, $max, $allowed, $ok)?;
                Ok(Self(value))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(value: &str) -> Result<Self, IdError> {
                Self::new(value)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

id_type!(
    /// An organisation. A NATS subject token.
    TenantId, "tenant id", 64, "a-z 0-9 _ -", token_char
);
id_type!(
    /// An agent (model + system prompt + tools) within a tenant. A NATS subject token.
    AgentId, "agent id", 64, "a-z 0-9 _ -", token_char
);
id_type!(
    /// A user within a tenant.
    UserId, "user id", 128, "A-Z a-z 0-9 _ - : @ + =", wide_char
);
id_type!(
    /// A conversation within a tenant.
    SessionId, "session id", 128, "A-Z a-z 0-9 _ - : @ + =", wide_char
);
id_type!(
    /// One user intent; the bus dedupes on it.
    RequestId, "request id", 160, "A-Z a-z 0-9 _ - : @ + =", wide_char
);

impl RequestId {
    /// A fresh random request id (UUID v4, hyphenated).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        fill_random(&mut bytes);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let h = hex::encode(bytes);
        Self(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
    }
}

/// Randomness without a dependency on an RNG crate: hash a per-process counter,
/// the clock and a stack address. Ids only need to be unique, not secret;
/// secrets (tokens) are generated in the services with a CSPRNG.
fn fill_random(out: &mut [u8; 16]) {
    use sha2::{Digest, Sha256};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let local = 0u8;
    let addr = &local as *const u8 as usize;
    let mut h = Sha256::new();
    h.update(n.to_le_bytes());
    h.update(t.to_le_bytes());
    h.update(addr.to_le_bytes());
    h.update(std::process::id().to_le_bytes());
    out.copy_from_slice(&h.finalize()[..16]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_ids_are_subject_safe() {
        assert!(TenantId::new("acme-1").is_ok());
        assert_eq!(TenantId::new(""), Err(IdError::Empty { kind: "tenant id" }));
        for bad in ["a.b", "a*", "a>", "A", "a b"] {
            assert!(TenantId::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn session_ids_reject_separators() {
        assert!(SessionId::new("slack:T1:C2:1700000000.0001").is_err());
        assert!(SessionId::new("dm:alice@acme").is_ok());
        assert!(SessionId::new("x".repeat(129)).is_err());
        assert!(SessionId::new("a/b").is_err());
    }

    #[test]
    fn random_request_ids_are_unique_and_valid() {
        let a = RequestId::random();
        let b = RequestId::random();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 36);
    }
}
