//! Static API tokens → principals. Tokens are held only as SHA-256 digests and
//! compared in constant time; the clear token never reaches a log.
//!
//! Static tokens are `[gateway.tokens]` plus, if `CLAWHIVE_BOOTSTRAP_ADMIN_TOKEN`
//! is set, a bootstrap admin (`bootstrap-admin`, role `admin`) in the tenant
//! `CLAWHIVE_BOOTSTRAP_TENANT` (default `default`). Tokens issued through the
//! Admin API are resolved after these, by [`crate::state::Gateway::authenticate`].

use crate::server::GatewayError;
use clawhive_core::config::GatewayConfig;
use clawhive_core::token::{hash_token, token_matches};
use clawhive_core::{ClawError, Principal, TenantId, UserId};

/// Env var holding a bootstrap admin token (for creating the first users).
pub const BOOTSTRAP_TOKEN_ENV: &str = "CLAWHIVE_BOOTSTRAP_ADMIN_TOKEN";
/// Env var naming the bootstrap admin's tenant (default `default`).
pub const BOOTSTRAP_TENANT_ENV: &str = "CLAWHIVE_BOOTSTRAP_TENANT";
/// The bootstrap admin's user id.
pub const BOOTSTRAP_USER: &str = "bootstrap-admin";

struct Entry {
    sha256: String,
    principal: Principal,
}

/// Resolves bearer tokens to principals.
pub struct Authenticator {
    entries: Vec<Entry>,
}

impl Authenticator {
    /// Reads `token_env` variables and the bootstrap admin variables now; a
    /// missing `token_env` one fails start-up.
    pub fn from_config(cfg: &GatewayConfig) -> Result<Self, GatewayError> {
        Self::from_config_and_env(cfg, &|k| std::env::var(k).ok())
    }

    /// [`Authenticator::from_config`], reading the bootstrap variables through `env`.
    pub fn from_config_and_env(
        cfg: &GatewayConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayError> {
        let mut auth = Self::from_static(cfg)?;
        if let Some(token) = env(BOOTSTRAP_TOKEN_ENV).filter(|t| !t.trim().is_empty()) {
            let tenant = env(BOOTSTRAP_TENANT_ENV).filter(|t| !t.is_empty());
            let tenant = TenantId::new(tenant.unwrap_or_else(|| "default".into()))
                .map_err(|e| GatewayError::Config(format!("{BOOTSTRAP_TENANT_ENV}: {e}")))?;
            let mut principal = Principal::new(tenant, UserId::new(BOOTSTRAP_USER).expect("valid user id"));
            principal.roles = vec!["admin".into()];
            auth.entries.push(Entry { sha256: hash_token(token.trim()), principal });
        }
        Ok(auth)
    }

    /// `[gateway.tokens]` only.
    fn from_static(cfg: &GatewayConfig) -> Result<Self, GatewayError> {
        let mut entries = Vec::with_capacity(cfg.tokens.len());
        for (i, t) in cfg.tokens.iter().enumerate() {
            let sha256 = match (&t.token_env, &t.token_sha256) {
                (Some(var), _) => match std::env::var(var) {
                    Ok(v) if !v.is_empty() => hash_token(&v),
                    _ => {
                        return Err(GatewayError::Config(format!(
                            "gateway.tokens[{i}].token_env: environment variable {var} is not set"
                        )));
                    }
                },
                (None, Some(h)) => h.to_ascii_lowercase(),
                (None, None) => {
                    return Err(GatewayError::Config(format!(
                        "gateway.tokens[{i}] needs one of token_env or token_sha256"
                    )));
                }
            };
            let mut principal = Principal::new(t.tenant.clone(), t.user.clone());
            principal.roles = t.roles.clone();
            principal.groups = t.groups.clone();
            entries.push(Entry { sha256, principal });
        }
        if entries.is_empty() {
            tracing::info!("No gateway.tokens are configured; only tokens issued through the Admin API will work.");
        }
        Ok(Self { entries })
    }

    /// Checks an `Authorization` header value against the static tokens only.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ClawError> {
        let token = bearer(header)?;
        self.lookup(token).ok_or_else(|| ClawError::unauthenticated("invalid API token"))
    }

    /// The static token's principal, if `token` is one.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        // Check every entry, so the time taken does not reveal which one matched.
        let mut found = None;
        for e in &self.entries {
            if token_matches(token, &e.sha256) && found.is_none() {
                found = Some(&e.principal);
            }
        }
        found.cloned()
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: Option<&str>) -> Result<&str, ClawError> {
    let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or_else(|| {
        ClawError::unauthenticated("missing credentials: send the header `Authorization: Bearer <token>`")
    })?;
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
        _ => {
            return Err(ClawError::unauthenticated("malformed Authorization header: expected `Bearer <token>`"));
        }
    };
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawhive_core::config::StaticToken;

    fn entry(env: Option<&str>, sha: Option<String>) -> StaticToken {
        StaticToken {
            token_env: env.map(str::to_string),
            token_sha256: sha,
            tenant: TenantId::new("acme").unwrap(),
            user: UserId::new("alice").unwrap(),
            roles: vec!["admin".into()],
            groups: vec![],
        }
    }

    #[test]
    fn a_missing_token_env_fails_start_up_with_one_line() {
        let cfg = GatewayConfig {
            tokens: vec![entry(Some("CLAWHIVE_TEST_SURELY_UNSET_TOKEN_VAR"), None)],
            ..GatewayConfig::default()
        };
        let e = Authenticator::from_config(&cfg).err().expect("fails");
        assert_eq!(
            e.to_string(),
            "gateway.tokens[0].token_env: environment variable CLAWHIVE_TEST_SURELY_UNSET_TOKEN_VAR is not set"
        );
    }

    #[test]
    fn bearer_tokens_resolve_to_principals() {
        let cfg = GatewayConfig { tokens: vec![entry(None, Some(hash_token("s3cret")))], ..GatewayConfig::default() };
        let auth = Authenticator::from_config(&cfg).unwrap();
        let p = auth.authenticate(Some("Bearer s3cret")).unwrap();
        assert_eq!((p.tenant.as_str(), p.user.as_str()), ("acme", "alice"));
        assert!(p.is_admin());
        assert!(auth.authenticate(Some("bearer  s3cret ")).is_ok());
        for bad in [None, Some(""), Some("s3cret"), Some("Basic s3cret"), Some("Bearer "), Some("Bearer s3cre")] {
            let e = auth.authenticate(bad).unwrap_err();
            assert_eq!(e.code, clawhive_core::ErrorCode::Unauthenticated, "{bad:?}");
        }
    }

    #[test]
    fn the_bootstrap_admin_comes_from_the_environment() {
        let cfg = GatewayConfig::default();
        let env = |k: &str| (k == BOOTSTRAP_TOKEN_ENV).then(|| "boot".to_string());
        let p = Authenticator::from_config_and_env(&cfg, &env).unwrap().authenticate(Some("Bearer boot")).unwrap();
        assert_eq!((p.tenant.as_str(), p.user.as_str(), p.is_admin()), ("default", BOOTSTRAP_USER, true));
        let env = |k: &str| match k {
            BOOTSTRAP_TOKEN_ENV => Some("boot".to_string()),
            BOOTSTRAP_TENANT_ENV => Some("acme".to_string()),
            _ => None,
        };
        let p = Authenticator::from_config_and_env(&cfg, &env).unwrap().authenticate(Some("Bearer boot")).unwrap();
        assert_eq!(p.tenant.as_str(), "acme");
        let none = Authenticator::from_config_and_env(&cfg, &|_| None).unwrap();
        assert!(none.authenticate(Some("Bearer boot")).is_err());
        let bad = |k: &str| (k != "x").then(|| "Bad Tenant".to_string());
        assert!(Authenticator::from_config_and_env(&cfg, &bad).is_err());
    }
}
