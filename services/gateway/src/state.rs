//! What the gRPC and HTTP APIs share.

use crate::auth::Authenticator;
use crate::fanin::FanIn;
use clawhive_bus::Bus;
use clawhive_bus::envelope::Envelopes;
use clawhive_core::ClawError;
use clawhive_core::config::Config;
use clawhive_store::{SessionStore, StoreError};
use std::sync::Arc;

pub struct Gateway {
    pub cfg: Config,
    pub instance_id: String,
    pub auth: Authenticator,
    pub bus: Arc<dyn Bus>,
    pub store: Arc<dyn SessionStore>,
    pub envelopes: Envelopes,
    pub fanin: FanIn,
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
    }
}
