//! Static API tokens → principals. Tokens are held only as SHA-256 digests and
//! compared in constant time; the clear token never reaches a log.

use crate::server::GatewayError;
use clawhive_core::config::GatewayConfig;
use clawhive_core::token::{hash_token, token_matches};
use clawhive_core::{ClawError, Principal};

struct Entry {
    sha256: String,
    principal: Principal,
}

/// Resolves bearer tokens to principals.
pub struct Authenticator {
    entries: Vec<Entry>,
}

impl Authenticator {
    /// Reads `token_env` variables now; a missing one fails start-up.
    pub fn from_config(cfg: &GatewayConfig) -> Result<Self, GatewayError> {
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
            tracing::warn!("No gateway.tokens are configured; every API call will be refused.");
        }
        Ok(Self { entries })
    }

    /// Checks an `Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, ClawError> {
        let header = header.map(str::trim).filter(|h| !h.is_empty()).ok_or_else(|| {
            ClawError::unauthenticated("missing credentials: send the header `Authorization: Bearer <token>`")
        })?;
        let token = match header.split_once(' ') {
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => token.trim(),
            _ => {
                return Err(ClawError::unauthenticated("malformed Authorization header: expected `Bearer <token>`"));
            }
        };
        // Check every entry, so the time taken does not reveal which one matched.
        let mut found = None;
        for e in &self.entries {
            if token_matches(token, &e.sha256) && found.is_none() {
                found = Some(&e.principal);
            }
        }
        found.cloned().ok_or_else(|| ClawError::unauthenticated("invalid API token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawhive_core::config::StaticToken;
    use clawhive_core::{TenantId, UserId};

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
}
