//! Named secrets, encrypted at rest: the [`SecretStore`] port (opaque blobs) and
//! the [`SecretVault`] that seals and opens them.
//!
//! A secret is shared by a tenant or belongs to one user (a personal API token).
//! The vault encrypts with ChaCha20-Poly1305 under a 32-byte key from the
//! environment; the associated data binds each blob to its tenant, scope and name,
//! so a blob copied to another user's slot fails to open. Adapters only ever see
//! ciphertext. Values are never logged: [`SecretValue`]'s `Debug` is redacted.

use crate::port::StoreError;
use async_trait::async_trait;
use clawhive_core::{Principal, TenantId, UserId};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::sync::Arc;

/// Longest secret value accepted (a token or a key, not a file).
pub const MAX_SECRET_BYTES: usize = 8 * 1024;
const BLOB_VERSION: u8 = 1;

/// Whose a secret is.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SecretScope {
    /// The whole tenant's (e.g. a team's API key).
    Shared,
    /// One user's own (e.g. a personal access token).
    User(UserId),
}

impl SecretScope {
    /// The scope as stored: `shared` or `user:<id>`.
    pub fn as_key(&self) -> String {
        match self {
            SecretScope::Shared => "shared".into(),
            SecretScope::User(u) => format!("user:{u}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Self> {
        match key.split_once(':') {
            None if key == "shared" => Some(SecretScope::Shared),
            Some(("user", u)) => UserId::new(u).ok().map(SecretScope::User),
            _ => None,
        }
    }
}

/// A secret's listing: never its value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecretInfo {
    pub scope: SecretScope,
    pub name: String,
}

/// Checks a secret name: 1–64 of `a-z 0-9 . _ -`, starting with a letter or digit.
pub fn check_secret_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!("secret name {name:?} must be 1-64 of a-z 0-9 . _ - (starting alphanumeric)")))
    }
}

/// Where sealed secrets live. Implemented by both adapters; sees ciphertext only.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    async fn put_secret_blob(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        name: &str,
        blob: Vec<u8>,
    ) -> Result<(), StoreError>;
    async fn get_secret_blob(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError>;
    /// `false` if there was no such secret.
    async fn delete_secret(&self, tenant: &TenantId, scope: &SecretScope, name: &str) -> Result<bool, StoreError>;
    /// Every secret of the tenant (names and scopes), sorted.
    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>, StoreError>;
}

/// A decrypted value; `Debug` and `Display` never show it.
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the secrets key must be 32 bytes, given as 64 hex digits or base64 (got {0} characters)")]
    BadKey(usize),
}

/// Seals and opens secrets with the tenant-independent master key.
#[derive(Clone)]
pub struct SecretVault {
    store: Arc<dyn SecretStore>,
    key: Arc<LessSafeKey>,
    rng: SystemRandom,
}

impl std::fmt::Debug for SecretVault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretVault(<key redacted>)")
    }
}

/// Parses a 32-byte key given as hex (64 digits) or standard/URL-safe base64.
pub fn parse_key(text: &str) -> Result<[u8; 32], KeyError> {
    use base64::Engine as _;
    let t = text.trim();
    let bytes = if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).ok()
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
            .ok()
    };
    bytes.and_then(|b| <[u8; 32]>::try_from(b).ok()).ok_or(KeyError::BadKey(t.len()))
}

/// The vault configured by `security.secrets_key_env` / `secrets_key_file`, or `None`
/// when neither is set. A key that is set but malformed fails start-up.
pub fn vault_from_config(
    cfg: &clawhive_core::config::SecurityConfig,
    store: Arc<dyn SecretStore>,
) -> Result<Option<SecretVault>, String> {
    let text = match std::env::var(&cfg.secrets_key_env).ok().filter(|v| !v.trim().is_empty()) {
        Some(v) => v,
        None if !cfg.secrets_key_file.is_empty() => std::fs::read_to_string(&cfg.secrets_key_file)
            .map_err(|e| format!("security.secrets_key_file {}: {e}", cfg.secrets_key_file))?,
        None => return Ok(None),
    };
    let key = parse_key(&text).map_err(|e| format!("secrets key ({}): {e}", cfg.secrets_key_env))?;
    Ok(Some(SecretVault::new(store, key)))
}

fn aad(tenant: &TenantId, scope: &SecretScope, name: &str) -> Vec<u8> {
    format!("clawhive-secret-v1\0{tenant}\0{}\0{name}", scope.as_key()).into_bytes()
}

impl SecretVault {
    pub fn new(store: Arc<dyn SecretStore>, key: [u8; 32]) -> Self {
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &key).expect("a 32-byte key fits ChaCha20-Poly1305");
        Self { store, key: Arc::new(LessSafeKey::new(unbound)), rng: SystemRandom::new() }
    }

    /// Encrypts and stores `value` (replacing any previous value).
    pub async fn put(&self, tenant: &TenantId, scope: &SecretScope, name: &str, value: &str) -> Result<(), StoreError> {
        check_secret_name(name)?;
        if value.is_empty() || value.len() > MAX_SECRET_BYTES {
            return Err(StoreError::Invalid(format!("a secret value must be 1 to {MAX_SECRET_BYTES} bytes")));
        }
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).map_err(|_| StoreError::Unavailable("no randomness for a nonce".into()))?;
        let mut sealed = value.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(tenant, scope, name)),
                &mut sealed,
            )
            .map_err(|_| StoreError::Invalid("the secret could not be sealed".into()))?;
        let mut blob = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        blob.push(BLOB_VERSION);
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        self.store.put_secret_blob(tenant, scope, name, blob).await
    }

    /// Opens a secret of exactly this scope. A blob that fails to open (wrong key,
    /// moved between slots, tampered) is `Corrupt`, never returned.
    pub async fn get(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        name: &str,
    ) -> Result<Option<SecretValue>, StoreError> {
        check_secret_name(name)?;
        let Some(blob) = self.store.get_secret_blob(tenant, scope, name).await? else { return Ok(None) };
        let corrupt = || StoreError::Corrupt(format!("secret {name} ({}) cannot be decrypted", scope.as_key()));
        if blob.len() < 1 + NONCE_LEN || blob[0] != BLOB_VERSION {
            return Err(corrupt());
        }
        let nonce = <[u8; NONCE_LEN]>::try_from(&blob[1..1 + NONCE_LEN]).map_err(|_| corrupt())?;
        let mut sealed = blob[1 + NONCE_LEN..].to_vec();
        let plain = self
            .key
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(tenant, scope, name)), &mut sealed)
            .map_err(|_| corrupt())?;
        String::from_utf8(plain.to_vec()).map(|s| Some(SecretValue(s))).map_err(|_| corrupt())
    }

    /// The value `principal` gets for `name`: their own secret if they have one, else the tenant's.
    pub async fn resolve_for(&self, principal: &Principal, name: &str) -> Result<Option<SecretValue>, StoreError> {
        let own = SecretScope::User(principal.user.clone());
        if let Some(v) = self.get(&principal.tenant, &own, name).await? {
            return Ok(Some(v));
        }
        self.get(&principal.tenant, &SecretScope::Shared, name).await
    }

    pub async fn delete(&self, tenant: &TenantId, scope: &SecretScope, name: &str) -> Result<bool, StoreError> {
        check_secret_name(name)?;
        self.store.delete_secret(tenant, scope, name).await
    }

    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>, StoreError> {
        self.store.list_secrets(tenant).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_hex_or_base64_and_must_be_32_bytes() {
        let hex_key = "00".repeat(32);
        assert_eq!(parse_key(&hex_key).unwrap(), [0u8; 32]);
        assert_eq!(parse_key("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=").unwrap(), [1u8; 32]);
        assert!(matches!(parse_key("short"), Err(KeyError::BadKey(5))));
        assert!(parse_key(&"00".repeat(16)).is_err());
    }

    #[test]
    fn names_and_scopes() {
        assert!(check_secret_name("linkedin-token").is_ok());
        assert!(check_secret_name("a.b_c").is_ok());
        for bad in ["", "-x", "UPPER", "a b", "a:b", "{x}", &"x".repeat(65)] {
            assert!(check_secret_name(bad).is_err(), "{bad}");
        }
        let u = SecretScope::User(UserId::new("alice").unwrap());
        assert_eq!(SecretScope::from_key(&u.as_key()), Some(u));
        assert_eq!(SecretScope::from_key("shared"), Some(SecretScope::Shared));
        assert_eq!(SecretScope::from_key("other"), None);
    }

    #[test]
    fn values_never_show_in_debug() {
        assert_eq!(format!("{:?}", SecretValue("hunter2".into())), "<redacted>");
    }
}
