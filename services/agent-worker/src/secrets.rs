//! Secrets for tools: resolved by name for the turn's principal, after a policy
//! check that is audited. The value goes to the tool only; the model, the
//! replies, the stored history and the logs never see it.

use crate::policy::TurnGuard;
use crate::tools::{Secret, SecretResolver};
use async_trait::async_trait;
use clawhive_store::SecretVault;

pub struct TurnSecrets<'a> {
    pub guard: &'a TurnGuard<'a>,
    pub vault: Option<&'a SecretVault>,
}

#[async_trait]
impl SecretResolver for TurnSecrets<'_> {
    async fn resolve(&self, name: &str) -> Result<Secret, String> {
        if !self.guard.check_secret(name).await.allowed {
            return Err(format!("permission denied: secret {name} is not granted to you"));
        }
        let Some(vault) = self.vault else {
            return Err("secrets are not configured on this deployment (no secrets key)".into());
        };
        match vault.resolve_for(self.guard.principal(), name).await {
            Ok(Some(v)) => Ok(Secret::new(v.expose().to_string())),
            Ok(None) => Err(format!("secret {name} is not set for you; ask an admin to add it")),
            Err(e) => {
                tracing::error!(error = %e, secret = %name, "reading a secret failed");
                Err(format!("secret {name} could not be read right now"))
            }
        }
    }
}
