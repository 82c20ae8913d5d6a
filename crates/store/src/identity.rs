//! The identity port: users, issued API tokens and external identities (Slack
//! users), per tenant.
//!
//! Invariants the adapters keep (and `tests/identity_conformance` checks):
//! - a token is stored only as its SHA-256 ([`clawhive_core::token::hash_token`]);
//!   the plaintext is returned once, by [`IdentityStore::issue_token`];
//! - a token resolves only while it is unrevoked, unexpired and its user exists
//!   (the same incarnation of the user: a deleted and re-created user does not
//!   inherit old tokens or links);
//! - a token resolves only into the tenant it was issued in.

use crate::port::StoreError;
use async_trait::async_trait;
use clawhive_core::{Principal, TenantId, UserId};

/// The prefix of every issued token, so they are recognisable (secret scanners, logs).
pub const TOKEN_PREFIX: &str = "chv1_";
/// The prefix of token ids (not secret).
pub const TOKEN_ID_PREFIX: &str = "tk_";

/// A user as the Admin API sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserRecord {
    pub tenant: TenantId,
    pub user: UserId,
    pub roles: Vec<String>,
    pub groups: Vec<String>,
    pub display_name: String,
    pub created_unix_ms: i64,
}

impl UserRecord {
    pub fn principal(&self) -> Principal {
        Principal {
            tenant: self.tenant.clone(),
            user: self.user.clone(),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
            display_name: self.display_name.clone(),
        }
    }
}

/// A freshly issued token. `token` is the plaintext: show it once, never store it.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token_id: String,
    pub token: String,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken").field("token_id", &self.token_id).field("token", &"<redacted>").finish()
    }
}

/// What may be listed about a token: never its hash or plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    pub token_id: String,
    pub user: UserId,
    pub label: String,
    pub created_unix_ms: i64,
    pub expires_at_unix_ms: Option<i64>,
    pub revoked: bool,
}

#[async_trait]
pub trait IdentityStore: Send + Sync + 'static {
    /// Creates `user` in `tenant`; [`StoreError::Conflict`] if it exists.
    async fn create_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
        roles: &[String],
        groups: &[String],
        display_name: &str,
    ) -> Result<UserRecord, StoreError>;

    async fn get_user(&self, tenant: &TenantId, user: &UserId) -> Result<Option<UserRecord>, StoreError>;

    /// The tenant's users, ordered by user id.
    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError>;

    /// Deletes the user, revoking their tokens and dropping their external links.
    /// `false` if there was no such user.
    async fn delete_user(&self, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError>;

    /// Issues a new token for an existing user ([`StoreError::NotFound`] otherwise).
    async fn issue_token(
        &self,
        tenant: &TenantId,
        user: &UserId,
        expires_at_unix_ms: Option<i64>,
        label: &str,
    ) -> Result<IssuedToken, StoreError>;

    /// Registers a token whose plaintext the caller already holds, given as its
    /// lowercase hex SHA-256 (provisioning: the `clawhive up` admin token, fixtures).
    /// Same rules as an issued token; `Conflict` if the hash is already registered.
    /// Returns the new token id.
    async fn register_token(
        &self,
        tenant: &TenantId,
        user: &UserId,
        sha256: &str,
        expires_at_unix_ms: Option<i64>,
        label: &str,
    ) -> Result<String, StoreError>;

    /// The principal behind a presented token; `None` when the token is unknown,
    /// revoked, expired, or its user was deleted.
    async fn resolve_token(&self, token: &str) -> Result<Option<Principal>, StoreError> {
        Ok(self.resolve_token_with_expiry(token).await?.map(|r| r.principal))
    }

    /// [`IdentityStore::resolve_token`], with the token's expiry (for callers that remember it).
    async fn resolve_token_with_expiry(&self, token: &str) -> Result<Option<ResolvedToken>, StoreError>;

    /// Revokes a token of `tenant`. `false` if the tenant has no such token.
    async fn revoke_token(&self, tenant: &TenantId, token_id: &str) -> Result<bool, StoreError>;

    /// The user's tokens (revoked ones included), oldest first.
    async fn list_tokens(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<TokenInfo>, StoreError>;

    /// Maps an external identity (`provider` "slack", `external_id` "T123:U456") to
    /// an existing user. [`StoreError::Conflict`] if it is linked to someone else.
    async fn link_external(
        &self,
        tenant: &TenantId,
        user: &UserId,
        provider: &str,
        external_id: &str,
    ) -> Result<(), StoreError>;

    async fn resolve_external(&self, provider: &str, external_id: &str) -> Result<Option<Principal>, StoreError>;

    /// The pairing codes kept beside these identities, when the adapter keeps them
    /// (both built-in adapters do), so the Admin API can approve them.
    fn pairings(&self) -> Option<&dyn crate::pairing::PairingStore> {
        None
    }
}

// ------------------------------------------------------------ shared by the adapters

/// A user as stored. `incarnation` changes when a user is deleted and created again.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredUser {
    pub(crate) roles: Vec<String>,
    pub(crate) groups: Vec<String>,
    pub(crate) display_name: String,
    pub(crate) created_unix_ms: i64,
    pub(crate) incarnation: String,
}

impl StoredUser {
    pub(crate) fn new(roles: &[String], groups: &[String], display_name: &str) -> StoredUser {
        StoredUser {
            roles: roles.to_vec(),
            groups: groups.to_vec(),
            display_name: display_name.to_string(),
            created_unix_ms: clawhive_core::time::now_unix_ms(),
            incarnation: hex::encode(rand::random::<[u8; 8]>()),
        }
    }

    pub(crate) fn record(&self, tenant: &TenantId, user: &UserId) -> UserRecord {
        UserRecord {
            tenant: tenant.clone(),
            user: user.clone(),
            roles: self.roles.clone(),
            groups: self.groups.clone(),
            display_name: self.display_name.clone(),
            created_unix_ms: self.created_unix_ms,
        }
    }
}

/// A token as stored: its hash, never its plaintext.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredToken {
    pub(crate) user: UserId,
    pub(crate) incarnation: String,
    pub(crate) sha256: String,
    pub(crate) label: String,
    pub(crate) created_unix_ms: i64,
    pub(crate) expires_at_unix_ms: Option<i64>,
    pub(crate) revoked: bool,
}

impl StoredToken {
    pub(crate) fn info(&self, token_id: &str) -> TokenInfo {
        TokenInfo {
            token_id: token_id.to_string(),
            user: self.user.clone(),
            label: self.label.clone(),
            created_unix_ms: self.created_unix_ms,
            expires_at_unix_ms: self.expires_at_unix_ms,
            revoked: self.revoked,
        }
    }

    /// Whether the token may be used now by `user` (the current incarnation).
    pub(crate) fn usable_by(&self, user: &StoredUser, now_ms: i64) -> bool {
        !self.revoked && self.incarnation == user.incarnation && self.expires_at_unix_ms.is_none_or(|e| e > now_ms)
    }
}

/// A token that authenticates now.
#[derive(Clone, Debug, PartialEq)]
pub struct ResolvedToken {
    pub principal: Principal,
    /// When it stops authenticating, if it expires.
    pub expires_at_unix_ms: Option<i64>,
}

/// The hash index entry: which tenant's token a hash belongs to.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct TokenRef {
    pub(crate) tenant: TenantId,
    pub(crate) user: UserId,
    pub(crate) token_id: String,
}

/// An external identity's link.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExternalRef {
    pub(crate) tenant: TenantId,
    pub(crate) user: UserId,
    pub(crate) incarnation: String,
}

/// A new token: `(token id, plaintext)`, from the OS-seeded CSPRNG.
pub(crate) fn new_token() -> (String, String) {
    let id = format!("{TOKEN_ID_PREFIX}{}", hex::encode(rand::random::<[u8; 12]>()));
    let token = format!("{TOKEN_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    (id, token)
}

/// Whether `id` has the shape of a token id (anything else cannot exist).
pub(crate) fn valid_token_id(id: &str) -> bool {
    id.strip_prefix(TOKEN_ID_PREFIX).is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Checks a provider name (`[a-z0-9_-]`, ≤ 32) and an external id (printable
/// ASCII, no whitespace or braces, ≤ 256).
/// Checks a token digest: 64 lowercase hex digits (as [`clawhive_core::token::hash_token`] makes).
pub(crate) fn check_sha256(sha256: &str) -> Result<(), StoreError> {
    if sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        Ok(())
    } else {
        Err(StoreError::Invalid("a token digest must be 64 lowercase hex digits".into()))
    }
}

pub(crate) fn check_external(provider: &str, external_id: &str) -> Result<(), StoreError> {
    let ok_provider = !provider.is_empty()
        && provider.len() <= 32
        && provider.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !ok_provider {
        return Err(StoreError::Invalid(format!("provider {provider:?} must be 1-32 characters of a-z 0-9 _ -")));
    }
    let ok_id = !external_id.is_empty()
        && external_id.len() <= 256
        && external_id.chars().all(|c| c.is_ascii_graphic() && c != '{' && c != '}');
    if !ok_id {
        return Err(StoreError::Invalid(format!(
            "external id {external_id:?} must be 1-256 printable characters without spaces or braces"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_and_random() {
        let (id1, t1) = new_token();
        let (id2, t2) = new_token();
        assert_ne!(t1, t2);
        assert_ne!(id1, id2);
        assert!(t1.starts_with(TOKEN_PREFIX) && t1.len() == TOKEN_PREFIX.len() + 64);
        assert!(valid_token_id(&id1));
        assert!(!valid_token_id("tk_"));
        assert!(!valid_token_id("x_12"));
        assert!(format!("{:?}", IssuedToken { token_id: id1, token: t1.clone() }).contains("redacted"));
    }

    #[test]
    fn external_ids_are_checked() {
        assert!(check_external("slack", "T123:U456").is_ok());
        assert!(check_external("Slack", "T1").is_err());
        assert!(check_external("slack", "a b").is_err());
        assert!(check_external("slack", "{x}").is_err());
    }
}
