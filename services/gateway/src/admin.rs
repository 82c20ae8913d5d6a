//! The `clawhive.v1.Admin` gRPC service: users, issued API tokens, external
//! identities, named secrets and audit queries (the last two in [`crate::admin_vault`]). Every call needs the role `admin`, and acts only within the
//! caller's tenant: a request naming another tenant is refused
//! (`PermissionDenied`), and another tenant's users are simply not there
//! (`NotFound`).

use crate::grpc::{authenticate, status_of};
use crate::state::{Gateway, store_error};
use clawhive_core::{ClawError, ErrorCode, Principal, TenantId, UserId};
use clawhive_proto::v1 as pb;
use clawhive_proto::v1::admin_server::Admin;
use clawhive_store::{TokenInfo, UserRecord};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct AdminService {
    gw: Arc<Gateway>,
}

impl AdminService {
    pub fn new(gw: Arc<Gateway>) -> Self {
        Self { gw }
    }

    /// The calling admin's tenant, checked against the request's `tenant_id`.
    async fn tenant<T>(&self, req: &Request<T>, requested: &str) -> Result<TenantId, Status> {
        let who: Principal = authenticate(&self.gw, req).await?;
        if !who.is_admin() {
            return Err(denied("the Admin API needs the role admin"));
        }
        if !requested.is_empty() && requested != who.tenant.as_str() {
            return Err(denied("admins act only within their own tenant"));
        }
        Ok(who.tenant)
    }
}

fn denied(message: &str) -> Status {
    status_of(&ClawError::new(ErrorCode::PermissionDenied, message))
}

fn user_id(id: &str) -> Result<UserId, Status> {
    UserId::new(id).map_err(|e| status_of(&ClawError::from(e)))
}

fn store(e: clawhive_store::StoreError) -> Status {
    status_of(&store_error(e))
}

fn not_found(what: String) -> Status {
    status_of(&ClawError::not_found(what))
}

fn user_pb(u: UserRecord) -> pb::User {
    pb::User {
        tenant_id: u.tenant.to_string(),
        user_id: u.user.to_string(),
        roles: u.roles,
        groups: u.groups,
        display_name: u.display_name,
        created_unix_ms: u.created_unix_ms,
    }
}

fn token_pb(t: TokenInfo) -> pb::TokenInfo {
    pb::TokenInfo {
        token_id: t.token_id,
        user_id: t.user.to_string(),
        label: t.label,
        created_unix_ms: t.created_unix_ms,
        expires_at_unix_ms: t.expires_at_unix_ms.unwrap_or(0),
        revoked: t.revoked,
    }
}

/// Roles and groups: non-empty, no whitespace, at most 64 characters.
fn names(kind: &str, values: Vec<String>) -> Result<Vec<String>, Status> {
    for v in &values {
        if v.is_empty() || v.len() > 64 || v.chars().any(char::is_whitespace) {
            return Err(status_of(&ClawError::invalid(format!(
                "{kind} {v:?} must be 1-64 characters without whitespace"
            ))));
        }
    }
    Ok(values)
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_user(
        &self,
        req: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let user = user_id(&r.user_id)?;
        let (roles, groups) = (names("role", r.roles)?, names("group", r.groups)?);
        let created =
            self.gw.identity.create_user(&tenant, &user, &roles, &groups, &r.display_name).await.map_err(store)?;
        tracing::info!(tenant = %tenant, user = %user, ?roles, "Admin API: user created.");
        Ok(Response::new(pb::CreateUserResponse { user: Some(user_pb(created)) }))
    }

    async fn list_users(&self, req: Request<pb::ListUsersRequest>) -> Result<Response<pb::ListUsersResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        let users = self.gw.identity.list_users(&tenant).await.map_err(store)?;
        Ok(Response::new(pb::ListUsersResponse { users: users.into_iter().map(user_pb).collect() }))
    }

    async fn delete_user(
        &self,
        req: Request<pb::DeleteUserRequest>,
    ) -> Result<Response<pb::DeleteUserResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        let user = user_id(&req.get_ref().user_id)?;
        if !self.gw.identity.delete_user(&tenant, &user).await.map_err(store)? {
            return Err(not_found(format!("no user {user}")));
        }
        self.gw.identity_changed(&tenant).await;
        tracing::info!(tenant = %tenant, user = %user, "Admin API: user deleted, tokens revoked.");
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn issue_token(
        &self,
        req: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::IssueTokenResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let user = user_id(&r.user_id)?;
        let expires = Some(r.expires_at_unix_ms).filter(|e| *e != 0);
        let issued = self.gw.identity.issue_token(&tenant, &user, expires, &r.label).await.map_err(|e| match e {
            clawhive_store::StoreError::NotFound(_) => not_found(format!("no user {user}")),
            e => store(e),
        })?;
        tracing::info!(tenant = %tenant, user = %user, token_id = %issued.token_id, "Admin API: token issued.");
        Ok(Response::new(pb::IssueTokenResponse { token_id: issued.token_id, token: issued.token }))
    }

    async fn revoke_token(
        &self,
        req: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        let token_id = req.into_inner().token_id;
        if !self.gw.identity.revoke_token(&tenant, &token_id).await.map_err(store)? {
            return Err(not_found(format!("no token {token_id}")));
        }
        self.gw.identity_changed(&tenant).await;
        tracing::info!(tenant = %tenant, token_id, "Admin API: token revoked.");
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn list_tokens(
        &self,
        req: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        let user = user_id(&req.get_ref().user_id)?;
        if self.gw.identity.get_user(&tenant, &user).await.map_err(store)?.is_none() {
            return Err(not_found(format!("no user {user}")));
        }
        let tokens = self.gw.identity.list_tokens(&tenant, &user).await.map_err(store)?;
        Ok(Response::new(pb::ListTokensResponse { tokens: tokens.into_iter().map(token_pb).collect() }))
    }

    async fn link_identity(
        &self,
        req: Request<pb::LinkIdentityRequest>,
    ) -> Result<Response<pb::LinkIdentityResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        let r = req.into_inner();
        let user = user_id(&r.user_id)?;
        self.gw.identity.link_external(&tenant, &user, &r.provider, &r.external_id).await.map_err(|e| match e {
            clawhive_store::StoreError::NotFound(_) => not_found(format!("no user {user}")),
            e => store(e),
        })?;
        tracing::info!(tenant = %tenant, user = %user, provider = %r.provider, "Admin API: external identity linked.");
        Ok(Response::new(pb::LinkIdentityResponse {}))
    }

    async fn put_secret(&self, req: Request<pb::PutSecretRequest>) -> Result<Response<pb::PutSecretResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        crate::admin_vault::put_secret(&self.gw, &tenant, req.into_inner()).await?;
        Ok(Response::new(pb::PutSecretResponse {}))
    }

    async fn delete_secret(
        &self,
        req: Request<pb::DeleteSecretRequest>,
    ) -> Result<Response<pb::DeleteSecretResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        crate::admin_vault::delete_secret(&self.gw, &tenant, req.into_inner()).await?;
        Ok(Response::new(pb::DeleteSecretResponse {}))
    }

    async fn list_secrets(
        &self,
        req: Request<pb::ListSecretsRequest>,
    ) -> Result<Response<pb::ListSecretsResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        Ok(Response::new(crate::admin_vault::list_secrets(&self.gw, &tenant).await?))
    }

    async fn query_audit(
        &self,
        req: Request<pb::QueryAuditRequest>,
    ) -> Result<Response<pb::QueryAuditResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        Ok(Response::new(crate::admin_vault::query_audit(&self.gw, &tenant, req.into_inner()).await?))
    }

    async fn list_pairings(
        &self,
        req: Request<pb::ListPairingsRequest>,
    ) -> Result<Response<pb::ListPairingsResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        Ok(Response::new(crate::admin_pairing::list(&self.gw, &tenant).await?))
    }

    async fn approve_pairing(
        &self,
        req: Request<pb::ApprovePairingRequest>,
    ) -> Result<Response<pb::ApprovePairingResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        Ok(Response::new(crate::admin_pairing::approve(&self.gw, &tenant, req.into_inner()).await?))
    }

    async fn get_policy(&self, req: Request<pb::GetPolicyRequest>) -> Result<Response<pb::GetPolicyResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        Ok(Response::new(crate::admin_vault::get_policy(&self.gw, &tenant).await?))
    }

    async fn put_policy(&self, req: Request<pb::PutPolicyRequest>) -> Result<Response<pb::PutPolicyResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        let version = crate::admin_vault::put_policy(&self.gw, &tenant, &req.get_ref().policy_toml).await?;
        Ok(Response::new(pb::PutPolicyResponse { version }))
    }

    async fn delete_policy(
        &self,
        req: Request<pb::DeletePolicyRequest>,
    ) -> Result<Response<pb::DeletePolicyResponse>, Status> {
        let tenant = self.tenant(&req, &req.get_ref().tenant_id).await?;
        crate::admin_vault::delete_policy(&self.gw, &tenant).await?;
        Ok(Response::new(pb::DeletePolicyResponse {}))
    }
}
