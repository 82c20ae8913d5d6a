//! Bearer tokens → principals, before the identity store is asked.
//!
//! Users and their API tokens live in the identity store (created through the
//! Admin API, resolved by [`crate::state::Gateway::authenticate`]). The one token
//! outside it is the bootstrap admin's, for creating the first users: if
//! `CLAWHIVE_BOOTSTRAP_ADMIN_TOKEN` is set, it authenticates `bootstrap-admin`
//! (role `admin`) in the tenant `CLAWHIVE_BOOTSTRAP_TENANT` (default `default`).
//! It is held only as a SHA-256 digest and compared in constant time; the clear
//! token never reaches a log.

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

/// Resolves the bootstrap admin's bearer token.
pub struct Authenticator {
    bootstrap: Option<Entry>,
}

impl Authenticator {
    /// Reads the bootstrap admin variables now.
    pub fn from_config(cfg: &GatewayConfig) -> Result<Self, GatewayError> {
        Self::from_config_and_env(cfg, &|k| std::env::var(k).ok())
    }

    /// [`Authenticator::from_config`], reading the bootstrap variables through `env`.
    pub fn from_config_and_env(
        _cfg: &GatewayConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, GatewayError> {
        let Some(token) = env(BOOTSTRAP_TOKEN_ENV).filter(|t| !t.trim().is_empty()) else {
            return Ok(Self { bootstrap: None });
        };
        let tenant = env(BOOTSTRAP_TENANT_ENV).filter(|t| !t.is_empty());
        let tenant = TenantId::new(tenant.unwrap_or_else(|| "default".into()))
            .map_err(|e| GatewayError::Config(format!("{BOOTSTRAP_TENANT_ENV}: {e}")))?;
        let mut principal = Principal::new(tenant, UserId::new(BOOTSTRAP_USER).expect("valid user id"));
        principal.roles = vec!["admin".into()];
        Ok(Self { bootstrap: Some(Entry { sha256: hash_token(token.trim()), principal }) })
    }

    /// Checks an `Authorization` header value against the bootstrap token only.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ClawError> {
        let token = bearer(header)?;
        self.lookup(token).ok_or_else(|| ClawError::unauthenticated("invalid API token"))
    }

    /// The bootstrap admin, if `token` is theirs.
    pub fn lookup(&self, token: &str) -> Option<Principal> {
        let e = self.bootstrap.as_ref()?;
        token_matches(token, &e.sha256).then(|| e.principal.clone())
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

    #[test]
    fn bearer_headers_are_parsed_strictly() {
        let env = |k: &str| (k == BOOTSTRAP_TOKEN_ENV).then(|| "s3cret".to_string());
        let auth = Authenticator::from_config_and_env(&GatewayConfig::default(), &env).unwrap();
        assert!(auth.authenticate(Some("Bearer s3cret")).unwrap().is_admin());
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
