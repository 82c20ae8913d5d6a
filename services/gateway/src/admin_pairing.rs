//! Admin API: pairing codes of unknown Slack users (list, approve). The
//! caller is an admin of `tenant` (checked by [`crate::admin`]).

use crate::grpc::status_of;
use crate::state::{Gateway, store_error};
use clawhive_core::{ClawError, TenantId, UserId};
use clawhive_proto::v1 as pb;
use clawhive_store::{Pairing, PairingStore, StoreError, approve_pairing};
use tonic::Status;

fn pairing_pb(p: Pairing) -> pb::Pairing {
    pb::Pairing {
        code: p.code,
        provider: p.provider,
        external_id: p.external_id,
        display_name: p.display_name,
        created_unix_ms: p.created_unix_ms,
        expires_unix_ms: p.expires_unix_ms,
    }
}

fn store(gw: &Gateway) -> Result<&dyn PairingStore, Status> {
    gw.identity.pairings().ok_or_else(|| status_of(&ClawError::unavailable("this store keeps no pairing codes")))
}

pub async fn list(gw: &Gateway, tenant: &TenantId) -> Result<pb::ListPairingsResponse, Status> {
    let list = store(gw)?.list_pairings(tenant).await.map_err(|e| status_of(&store_error(e)))?;
    Ok(pb::ListPairingsResponse { pairings: list.into_iter().map(pairing_pb).collect() })
}

pub async fn approve(
    gw: &Gateway,
    tenant: &TenantId,
    req: pb::ApprovePairingRequest,
) -> Result<pb::ApprovePairingResponse, Status> {
    let user = Some(req.user_id.as_str())
        .filter(|u| !u.is_empty())
        .map(UserId::new)
        .transpose()
        .map_err(|e| status_of(&ClawError::from(e)))?;
    let (pairing, record) =
        approve_pairing(gw.identity.as_ref(), store(gw)?, tenant, &req.code, user).await.map_err(|e| match e {
            StoreError::NotFound(m) => status_of(&ClawError::not_found(m)),
            e => status_of(&store_error(e)),
        })?;
    tracing::info!(tenant = %tenant, user = %record.user, provider = %pairing.provider,
        "Admin API: pairing approved, external identity linked.");
    Ok(pb::ApprovePairingResponse {
        pairing: Some(pairing_pb(pairing)),
        user: Some(pb::User {
            tenant_id: record.tenant.to_string(),
            user_id: record.user.to_string(),
            roles: record.roles,
            groups: record.groups,
            display_name: record.display_name,
            created_unix_ms: record.created_unix_ms,
        }),
    })
}
