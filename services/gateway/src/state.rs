//! What the gRPC and HTTP APIs share.

use crate::auth::Authenticator;
use crate::fanin::FanIn;
use clawhive_bus::Bus;
use clawhive_bus::envelope::Envelopes;
use clawhive_core::config::Config;
use clawhive_core::{ClawError, Principal};
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
}

impl Gateway {
    /// Checks an `Authorization` header value: static tokens first, then tokens
    /// issued through the Admin API.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, ClawError> {
        let token = crate::auth::bearer(header)?;
        if let Some(p) = self.auth.lookup(token) {
            return Ok(p);
        }
        match self.identity.resolve_token(token).await {
            Ok(Some(p)) => Ok(p),
            Ok(None) => Err(ClawError::unauthenticated("invalid API token")),
            Err(e) => Err(store_error(e)),
        }
    }
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
