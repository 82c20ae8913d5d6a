//! Pairing codes: how an unknown external user (a Slack user nobody linked yet)
//! gets access. The ingress hands them a short code; an admin approves it
//! (Admin API, `clawhive admin pairing approve CODE`, or a Slack admin command),
//! which links the external identity to a user of the admin's tenant.
//!
//! Codes live in the store (Redis / redb), never on a pod's disk, expire after
//! a TTL, and are single use: [`PairingStore::take_pairing`] removes the code
//! atomically, so two admins approving at once link it once.

use crate::identity::{IdentityStore, UserRecord, check_external};
use crate::port::StoreError;
use async_trait::async_trait;
use clawhive_core::{TenantId, UserId};
use std::time::Duration;

/// Characters of a code: no 0/O, 1/I/L, so it survives being read aloud.
const ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// Length of a code.
pub const CODE_LEN: usize = 8;

/// A pending pairing request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pairing {
    pub code: String,
    pub tenant: TenantId,
    /// `slack`.
    pub provider: String,
    /// `T123:U456`.
    pub external_id: String,
    /// What the external system calls the user, for the admin's eyes.
    pub display_name: String,
    pub created_unix_ms: i64,
    pub expires_unix_ms: i64,
}

#[async_trait]
pub trait PairingStore: Send + Sync + 'static {
    /// A code for `external_id` in `tenant`: the pending one if it has not
    /// expired, else a new one valid for `ttl`.
    async fn create_pairing(
        &self,
        tenant: &TenantId,
        provider: &str,
        external_id: &str,
        display_name: &str,
        ttl: Duration,
    ) -> Result<Pairing, StoreError>;

    /// The tenant's unexpired pairings, oldest first.
    async fn list_pairings(&self, tenant: &TenantId) -> Result<Vec<Pairing>, StoreError>;

    /// Removes and returns the unexpired pairing `code` of `tenant`; `None` if
    /// there is none (unknown, expired, already taken, or another tenant's).
    async fn take_pairing(&self, tenant: &TenantId, code: &str) -> Result<Option<Pairing>, StoreError>;
}

/// A fresh random code.
pub(crate) fn new_code() -> String {
    (0..CODE_LEN).map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char).collect()
}

/// `code` as stored: upper case, without spaces or dashes; an error if it cannot be a code.
pub fn normalize_code(code: &str) -> Result<String, StoreError> {
    let c: String = code.chars().filter(|c| !matches!(c, '-' | ' ')).map(|c| c.to_ascii_uppercase()).collect();
    if c.len() == CODE_LEN && c.bytes().all(|b| ALPHABET.contains(&b)) {
        Ok(c)
    } else {
        Err(StoreError::Invalid(format!("pairing code {code:?} must be {CODE_LEN} letters and digits, as posted")))
    }
}

/// Checks the inputs of [`PairingStore::create_pairing`].
pub(crate) fn check_new(provider: &str, external_id: &str, ttl: Duration) -> Result<(), StoreError> {
    check_external(provider, external_id)?;
    if ttl.is_zero() {
        return Err(StoreError::Invalid("a pairing code needs a positive lifetime".into()));
    }
    Ok(())
}

/// The user a pairing becomes when the admin names none: `<provider>:<external id>`
/// with characters user ids do not allow replaced by `-`.
pub fn default_user_for(p: &Pairing) -> Result<UserId, StoreError> {
    let raw: String = format!("{}:{}", p.provider, p.external_id)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '@' | '+' | '=') { c } else { '-' })
        .collect();
    UserId::new(raw).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// Approves `code` in `tenant`: takes it (single use), creates `user` (default
/// [`default_user_for`]) if it does not exist, and links the external identity to it.
pub async fn approve_pairing(
    identity: &dyn IdentityStore,
    pairings: &dyn PairingStore,
    tenant: &TenantId,
    code: &str,
    user: Option<UserId>,
) -> Result<(Pairing, UserRecord), StoreError> {
    let code = normalize_code(code)?;
    let pairing = pairings
        .take_pairing(tenant, &code)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("no pending pairing code {code} (wrong, expired or used)")))?;
    let user = match user {
        Some(u) => u,
        None => default_user_for(&pairing)?,
    };
    let record = match identity.get_user(tenant, &user).await? {
        Some(r) => r,
        None => match identity.create_user(tenant, &user, &[], &[], &pairing.display_name).await {
            Ok(r) => r,
            Err(StoreError::Conflict(_)) => identity
                .get_user(tenant, &user)
                .await?
                .ok_or_else(|| StoreError::Unavailable(format!("user {user} vanished while pairing")))?,
            Err(e) => return Err(e),
        },
    };
    identity.link_external(tenant, &user, &pairing.provider, &pairing.external_id).await?;
    Ok((pairing, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_random_readable_and_normalized() {
        let a = new_code();
        assert_eq!(a.len(), CODE_LEN);
        assert_ne!(a, new_code());
        assert_eq!(normalize_code(&a.to_lowercase()).unwrap(), a);
        assert_eq!(normalize_code(&format!("{}-{}", &a[..4], &a[4..])).unwrap(), a);
        assert!(normalize_code("short").is_err());
        assert!(normalize_code("OOOOOOOO").is_err());
    }

    #[test]
    fn default_users_are_valid_ids() {
        let p = Pairing {
            code: "X".into(),
            tenant: TenantId::new("acme").unwrap(),
            provider: "slack".into(),
            external_id: "T1:U2".into(),
            display_name: String::new(),
            created_unix_ms: 0,
            expires_unix_ms: 0,
        };
        assert_eq!(default_user_for(&p).unwrap().as_str(), "slack:T1:U2");
    }
}
