//! What the gRPC and HTTP APIs share.

use crate::auth::Authenticator;
use crate::fanin::FanIn;
use clawhive_bus::Bus;
use clawhive_bus::envelope::Envelopes;
use clawhive_core::config::Config;
use clawhive_core::{ClawError, Principal, TenantId};
use clawhive_store::{IdentityStore, SessionStore, StoreError};
use std::sync::Arc;

pub struct Gateway {
    pub cfg: Config,
    pub instance_id: String,
    pub auth: Authenticator,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn SessionStore>,
    pub identity: Arc<dyn IdentityStore>,
    pub envelopes: Envelopes,
    pub fanin: FanIn,
    /// Signs the principal on every request envelope (when a key is configured).
    pub signer: Option<clawhive_core::signing::EnvelopeSigner>,
    /// Named secrets (Admin API); `None` without a secrets key.
    pub secrets: Option<clawhive_store::SecretVault>,
    /// Scheduled jobs (the `Schedules` API); `None` when the gateway has no schedule store.
    pub jobs: Option<clawhive_store::Jobs>,
    pub tokens: crate::cache::TokenCache,
    pub sessions: crate::cache::SessionCache,
}

impl Gateway {
    /// Checks an `Authorization` header value: the bootstrap admin's token
    /// first, then tokens issued through the Admin API (remembered for
    /// `gateway.auth_cache_ms`).
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, ClawError> {
        let token = crate::auth::bearer(header)?;
        if let Some(p) = self.auth.lookup(token) {
            return Ok(p);
        }
        if let Some(p) = self.tokens.get(token) {
            return Ok(p);
        }
        match self.identity.resolve_token_with_expiry(token).await {
            Ok(Some(r)) => {
                self.tokens.put(token, &r.principal, r.expires_at_unix_ms);
                Ok(r.principal)
            }
            Ok(None) => Err(ClawError::unauthenticated("invalid API token")),
            Err(e) => Err(store_error(e)),
        }
    }

    /// After a token was revoked or a user deleted in `tenant`: forgets the
    /// tenant's cached tokens here, and tells the other gateways to.
    pub async fn identity_changed(&self, tenant: &TenantId) {
        self.tokens.forget_tenant(tenant);
        let subject = self.envelopes.subjects().identity_changed();
        let payload = bytes::Bytes::copy_from_slice(tenant.as_str().as_bytes());
        if let Err(e) = self.bus.publish_ephemeral(&subject, Default::default(), payload).await {
            tracing::warn!(error = %e, %tenant, "Cannot tell the other gateways about an identity change; their caches expire it.");
        }
    }
}

/// Listens for identity changes made through other gateways and forgets the
/// tenant's cached tokens.
pub async fn spawn_identity_listener(
    gw: &std::sync::Arc<Gateway>,
) -> Result<tokio::task::JoinHandle<()>, clawhive_bus::BusError> {
    use futures::StreamExt;
    let mut changes = gw.bus.subscribe(&gw.envelopes.subjects().identity_changed()).await?;
    let gw = std::sync::Arc::downgrade(gw);
    Ok(tokio::spawn(async move {
        while let Some(msg) = changes.next().await {
            let Some(gw) = gw.upgrade() else { break };
            match std::str::from_utf8(&msg.payload).ok().and_then(|t| TenantId::new(t).ok()) {
                Some(tenant) => gw.tokens.forget_tenant(&tenant),
                None => tracing::warn!(subject = %msg.subject, "Ignoring a malformed identity change."),
            }
        }
    }))
}

/// Store failures as the caller sees them.
pub fn store_error(e: StoreError) -> ClawError {
    match e {
        StoreError::Unavailable(m) => {
            tracing::warn!(error = %m, "The session store is unavailable.");
            ClawError::unavailable("the session store is unavailable; try again shortly")
        }
        StoreError::Corrupt(m) => {
            tracing::error!(error = %m, "Stored session data is corrupt.");
            ClawError::internal("stored session data is corrupt")
        }
        StoreError::Conflict(m) => ClawError::new(clawhive_core::ErrorCode::Conflict, m),
        StoreError::NotFound(m) => ClawError::not_found(m),
        StoreError::Invalid(m) => ClawError::invalid(m),
    }
}
