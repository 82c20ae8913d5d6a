//! The Admin API's secrets, audit and policy calls (served by [`crate::admin::AdminService`]).
//!
//! Secrets: values go in encrypted and never come back out; listing shows names
//! and scopes. Audit: reads the tenant's `CLAWHIVE_AUDIT` subject from a start
//! time, filtered by user and end time, oldest first.

use crate::grpc::status_of;
use crate::state::{Gateway, store_error};
use clawhive_bus::StreamKind;
use clawhive_core::{ClawError, ErrorCode, TenantId, UserId};
use clawhive_proto::v1 as pb;
use clawhive_store::{SecretScope, SecretVault};
use tonic::Status;

/// Default and maximum records one audit query returns.
const AUDIT_DEFAULT_LIMIT: u32 = 100;
const AUDIT_MAX_LIMIT: u32 = 1000;
/// Records one query scans at most (before the user and end-time filters).
const AUDIT_SCAN: usize = 20_000;

fn vault(gw: &Gateway) -> Result<&SecretVault, Status> {
    gw.secrets.as_ref().ok_or_else(|| {
        status_of(&ClawError::new(
            ErrorCode::Unavailable,
            "secret storage is not configured on this deployment: set the secrets key (security.secrets_key_env / secrets_key_file)",
        ))
    })
}

fn scope(user_id: &str) -> Result<SecretScope, Status> {
    if user_id.is_empty() {
        Ok(SecretScope::Shared)
    } else {
        UserId::new(user_id).map(SecretScope::User).map_err(|e| status_of(&ClawError::from(e)))
    }
}

fn store(e: clawhive_store::StoreError) -> Status {
    status_of(&store_error(e))
}

/// A per-user secret may only be set for a user who exists in the tenant.
async fn check_user(gw: &Gateway, tenant: &TenantId, scope: &SecretScope) -> Result<(), Status> {
    if let SecretScope::User(u) = scope
        && gw.identity.get_user(tenant, u).await.map_err(store)?.is_none()
    {
        return Err(status_of(&ClawError::not_found(format!("no user {u}"))));
    }
    Ok(())
}

pub async fn put_secret(gw: &Gateway, tenant: &TenantId, r: pb::PutSecretRequest) -> Result<(), Status> {
    let vault = vault(gw)?;
    let scope = scope(&r.user_id)?;
    check_user(gw, tenant, &scope).await?;
    vault.put(tenant, &scope, &r.name, &r.value).await.map_err(store)?;
    tracing::info!(tenant = %tenant, scope = %scope.as_key(), secret = %r.name, "Admin API: secret stored.");
    Ok(())
}

pub async fn delete_secret(gw: &Gateway, tenant: &TenantId, r: pb::DeleteSecretRequest) -> Result<(), Status> {
    let scope = scope(&r.user_id)?;
    if !vault(gw)?.delete(tenant, &scope, &r.name).await.map_err(store)? {
        return Err(status_of(&ClawError::not_found(format!("no secret {} ({})", r.name, scope.as_key()))));
    }
    tracing::info!(tenant = %tenant, scope = %scope.as_key(), secret = %r.name, "Admin API: secret deleted.");
    Ok(())
}

pub async fn list_secrets(gw: &Gateway, tenant: &TenantId) -> Result<pb::ListSecretsResponse, Status> {
    let list = vault(gw)?.list(tenant).await.map_err(store)?;
    let secrets = list
        .into_iter()
        .map(|i| pb::SecretInfo {
            name: i.name,
            user_id: match i.scope {
                SecretScope::Shared => String::new(),
                SecretScope::User(u) => u.to_string(),
            },
        })
        .collect();
    Ok(pb::ListSecretsResponse { secrets })
}

pub async fn query_audit(
    gw: &Gateway,
    tenant: &TenantId,
    r: pb::QueryAuditRequest,
) -> Result<pb::QueryAuditResponse, Status> {
    let invalid = |m: String| status_of(&ClawError::invalid(m));
    if r.since_unix_ms < 0 || r.until_unix_ms < 0 {
        return Err(invalid("since_unix_ms and until_unix_ms must not be negative".into()));
    }
    if r.until_unix_ms != 0 && r.until_unix_ms <= r.since_unix_ms {
        return Err(invalid("until_unix_ms must be after since_unix_ms".into()));
    }
    if r.limit > AUDIT_MAX_LIMIT {
        return Err(invalid(format!("limit must be at most {AUDIT_MAX_LIMIT}")));
    }
    let user = if r.user_id.is_empty() {
        None
    } else {
        Some(UserId::new(&r.user_id).map_err(|e| status_of(&ClawError::from(e)))?)
    };
    let limit = if r.limit == 0 { AUDIT_DEFAULT_LIMIT } else { r.limit } as usize;
    let subject = gw.envelopes.subjects().audit(tenant);
    let stored = gw.bus.read_stream(StreamKind::Audit, &subject, r.since_unix_ms, AUDIT_SCAN).await.map_err(|e| {
        tracing::warn!(error = %e, "Reading the audit stream failed.");
        status_of(&ClawError::unavailable("the audit trail is unavailable; try again shortly"))
    })?;
    let mut records = Vec::new();
    for m in stored {
        let rec = match clawhive_bus::envelope::decode_audit(&m.message.payload) {
            Ok(rec) => rec,
            Err(e) => {
                tracing::warn!(seq = m.seq, error = %e, "Skipping a malformed audit record.");
                continue;
            }
        };
        if r.until_unix_ms != 0 && rec.at_unix_ms >= r.until_unix_ms {
            break;
        }
        // Defence in depth: the subject already scopes the tenant.
        if rec.tenant_id != tenant.as_str() || user.as_ref().is_some_and(|u| rec.user_id != u.as_str()) {
            continue;
        }
        if rec.at_unix_ms < r.since_unix_ms {
            continue;
        }
        records.push(rec);
        if records.len() >= limit {
            break;
        }
    }
    Ok(pb::QueryAuditResponse { records })
}

pub async fn get_policy(gw: &Gateway, tenant: &TenantId) -> Result<pb::GetPolicyResponse, Status> {
    Ok(match gw.store.policy_doc(tenant).await.map_err(store)? {
        Some(d) => {
            pb::GetPolicyResponse { policy_toml: d.text, version: d.version, updated_unix_ms: d.updated_unix_ms }
        }
        None => pb::GetPolicyResponse::default(),
    })
}

/// Validates the document as the workers will parse it, then stores it.
pub async fn put_policy(gw: &Gateway, tenant: &TenantId, text: &str) -> Result<u64, Status> {
    if let Err(e) = clawhive_core::policy::Policy::parse(text) {
        let one_line = e.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        return Err(status_of(&ClawError::invalid(format!("policy rejected: {one_line}"))));
    }
    let version = gw.store.put_policy_doc(tenant, text).await.map_err(store)?;
    tracing::info!(tenant = %tenant, version, "Admin API: tenant policy replaced.");
    Ok(version)
}

pub async fn delete_policy(gw: &Gateway, tenant: &TenantId) -> Result<(), Status> {
    if !gw.store.delete_policy_doc(tenant).await.map_err(store)? {
        return Err(status_of(&ClawError::not_found("the tenant has no policy of its own")));
    }
    tracing::info!(tenant = %tenant, "Admin API: tenant policy removed; the deployment's applies.");
    Ok(())
}
