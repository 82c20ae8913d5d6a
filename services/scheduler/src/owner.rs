//! Who a job runs as: its owner, re-resolved at every fire, so a deleted
//! user's jobs stop and changed roles apply.

use clawhive_core::config::Config;
use clawhive_core::{Principal, TenantId, UserId};
use clawhive_store::{IdentityStore, StoreError};

/// The owner's current principal; `None` when the user no longer exists.
pub async fn resolve(
    identity: &dyn IdentityStore,
    _cfg: &Config,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Option<Principal>, StoreError> {
    Ok(identity.get_user(tenant, user).await?.map(|r| r.principal()))
}
