//! Redis adapter of [`IdentityStore`].
//!
//! ```text
//! <prefix>:{<tenant>}:idn:users                 set of user ids
//! <prefix>:{<tenant>}:idn:user:<user>           JSON StoredUser
//! <prefix>:{<tenant>}:idn:tokens:<user>         set of the user's token ids
//! <prefix>:{<tenant>}:idn:links:<user>          set of "<provider> <external id>"
//! <prefix>:{<tenant>}:idn:token:<token id>      JSON StoredToken (SHA-256, never the plaintext)
//! <prefix>:tok:<sha256>                         JSON TokenRef: tenant, user, token id
//! <prefix>:ext:<provider>:<external id>         JSON ExternalRef: tenant, user, incarnation
//! ```
//!
//! A tenant's keys share the hash tag `{tenant}`, so the multi-key transactions
//! stay in one Redis Cluster slot; the two global indexes are single keys,
//! written after (and checked against) the tenant's records, so a lagging index
//! entry never resolves to a revoked token or a deleted user.

use super::RedisStore;
use super::errors::failed;
use crate::identity::{
    ExternalRef, IdentityStore, IssuedToken, ResolvedToken, StoredToken, StoredUser, TokenInfo, TokenRef, UserRecord,
    check_external, check_sha256, new_token, valid_token_id,
};
use crate::port::StoreError;
use async_trait::async_trait;
use clawhive_core::time::now_unix_ms;
use clawhive_core::token::hash_token;
use clawhive_core::{Principal, TenantId, UserId};
use redis::cmd;

impl RedisStore {
    /// Stores a token given by its SHA-256; `Conflict` if that hash is already registered.
    async fn store_token(
        &self,
        tenant: &TenantId,
        user: &UserId,
        sha256: &str,
        token_id: &str,
        expires_at_unix_ms: Option<i64>,
        label: &str,
    ) -> Result<(), StoreError> {
        let Some(owner) = self.get_json::<StoredUser>(&self.user_key(tenant, user)).await? else {
            return Err(StoreError::NotFound(format!("user {user} in tenant {tenant}")));
        };
        let exists: bool = cmd("EXISTS")
            .arg(self.hash_key(sha256))
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("check token hash"))?;
        if exists {
            return Err(StoreError::Conflict("this token is already registered".into()));
        }
        let stored = StoredToken {
            user: user.clone(),
            incarnation: owner.incarnation,
            sha256: sha256.to_string(),
            label: label.to_string(),
            created_unix_ms: now_unix_ms(),
            expires_at_unix_ms,
            revoked: false,
        };
        let token_key = self.token_key(tenant, token_id);
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&token_key)
            .arg(encode(&token_key, &stored)?)
            .ignore()
            .cmd("SADD")
            .arg(self.user_tokens_key(tenant, user))
            .arg(token_id)
            .ignore()
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("issue token"))?;
        let index = TokenRef { tenant: tenant.clone(), user: user.clone(), token_id: token_id.to_string() };
        self.set_json(&self.hash_key(sha256), &index).await
    }

    fn tenant_key(&self, tenant: &TenantId, rest: std::fmt::Arguments<'_>) -> String {
        format!("{}:{{{tenant}}}:idn:{rest}", self.keys.prefix())
    }

    fn users_key(&self, tenant: &TenantId) -> String {
        self.tenant_key(tenant, format_args!("users"))
    }

    fn user_key(&self, tenant: &TenantId, user: &UserId) -> String {
        self.tenant_key(tenant, format_args!("user:{user}"))
    }

    fn user_tokens_key(&self, tenant: &TenantId, user: &UserId) -> String {
        self.tenant_key(tenant, format_args!("tokens:{user}"))
    }

    fn user_links_key(&self, tenant: &TenantId, user: &UserId) -> String {
        self.tenant_key(tenant, format_args!("links:{user}"))
    }

    fn token_key(&self, tenant: &TenantId, token_id: &str) -> String {
        self.tenant_key(tenant, format_args!("token:{token_id}"))
    }

    fn hash_key(&self, sha256: &str) -> String {
        format!("{}:tok:{sha256}", self.keys.prefix())
    }

    fn external_key(&self, provider: &str, external_id: &str) -> String {
        format!("{}:ext:{provider}:{external_id}", self.keys.prefix())
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let json: Option<String> =
            cmd("GET").arg(key).query_async(&mut self.con.clone()).await.map_err(failed("GET identity record"))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))).transpose()
    }

    async fn set_json<T: serde::Serialize>(&self, key: &str, value: &T) -> Result<(), StoreError> {
        cmd("SET")
            .arg(key)
            .arg(encode(key, value)?)
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("SET identity record"))
    }

    async fn members(&self, key: &str) -> Result<Vec<String>, StoreError> {
        cmd("SMEMBERS").arg(key).query_async(&mut self.con.clone()).await.map_err(failed("SMEMBERS"))
    }

    async fn del(&self, key: &str) -> Result<(), StoreError> {
        cmd("DEL").arg(key).exec_async(&mut self.con.clone()).await.map_err(failed("DEL"))
    }

    /// The user's principal if the user exists in the given incarnation.
    async fn live_principal(
        &self,
        tenant: &TenantId,
        user: &UserId,
        check: impl FnOnce(&StoredUser) -> bool,
    ) -> Result<Option<Principal>, StoreError> {
        let Some(stored) = self.get_json::<StoredUser>(&self.user_key(tenant, user)).await? else {
            return Ok(None);
        };
        Ok(check(&stored).then(|| stored.record(tenant, user).principal()))
    }
}

fn encode<T: serde::Serialize>(key: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("{key}: cannot encode: {e}")))
}

#[async_trait]
impl IdentityStore for RedisStore {
    async fn create_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
        roles: &[String],
        groups: &[String],
        display_name: &str,
    ) -> Result<UserRecord, StoreError> {
        let stored = StoredUser::new(roles, groups, display_name);
        let key = self.user_key(tenant, user);
        let (created, _): (Option<String>, i64) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(encode(&key, &stored)?)
            .arg("NX")
            .cmd("SADD")
            .arg(self.users_key(tenant))
            .arg(user.as_str())
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("create user"))?;
        if created.is_none() {
            return Err(StoreError::Conflict(format!("user {user} exists in tenant {tenant}")));
        }
        Ok(stored.record(tenant, user))
    }

    async fn get_user(&self, tenant: &TenantId, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        Ok(self.get_json::<StoredUser>(&self.user_key(tenant, user)).await?.map(|s| s.record(tenant, user)))
    }

    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        let mut ids = self.members(&self.users_key(tenant)).await?;
        ids.sort();
        let mut users = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(user) = UserId::new(id.as_str()) else {
                tracing::warn!(tenant = %tenant, id, "Skipping an invalid user id in the user index.");
                continue;
            };
            if let Some(record) = self.get_user(tenant, &user).await? {
                users.push(record);
            }
        }
        Ok(users)
    }

    async fn delete_user(&self, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError> {
        let user_key = self.user_key(tenant, user);
        let Some(stored) = self.get_json::<StoredUser>(&user_key).await? else {
            return Ok(false);
        };
        // The user record goes first: from then on nothing of theirs resolves.
        redis::pipe()
            .atomic()
            .cmd("DEL")
            .arg(&user_key)
            .ignore()
            .cmd("SREM")
            .arg(self.users_key(tenant))
            .arg(user.as_str())
            .ignore()
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("delete user"))?;
        for token_id in self.members(&self.user_tokens_key(tenant, user)).await? {
            self.revoke_token(tenant, &token_id).await?;
        }
        let links_key = self.user_links_key(tenant, user);
        for link in self.members(&links_key).await? {
            let Some((provider, external_id)) = link.split_once(' ') else { continue };
            let ext_key = self.external_key(provider, external_id);
            let ours =
                ExternalRef { tenant: tenant.clone(), user: user.clone(), incarnation: stored.incarnation.clone() };
            if self.get_json::<ExternalRef>(&ext_key).await? == Some(ours) {
                self.del(&ext_key).await?;
            }
        }
        self.del(&links_key).await?;
        Ok(true)
    }

    async fn issue_token(
        &self,
        tenant: &TenantId,
        user: &UserId,
        expires_at_unix_ms: Option<i64>,
        label: &str,
    ) -> Result<IssuedToken, StoreError> {
        let (token_id, token) = new_token();
        self.store_token(tenant, user, &hash_token(&token), &token_id, expires_at_unix_ms, label).await?;
        Ok(IssuedToken { token_id, token })
    }

    async fn register_token(
        &self,
        tenant: &TenantId,
        user: &UserId,
        sha256: &str,
        expires_at_unix_ms: Option<i64>,
        label: &str,
    ) -> Result<String, StoreError> {
        check_sha256(sha256)?;
        let (token_id, _) = new_token();
        self.store_token(tenant, user, sha256, &token_id, expires_at_unix_ms, label).await?;
        Ok(token_id)
    }

    async fn resolve_token_with_expiry(&self, token: &str) -> Result<Option<ResolvedToken>, StoreError> {
        let sha256 = hash_token(token);
        let Some(index) = self.get_json::<TokenRef>(&self.hash_key(&sha256)).await? else {
            return Ok(None);
        };
        // The token and its user in one round trip (concurrent calls share the pipeline).
        let (token_key, user_key) =
            (self.token_key(&index.tenant, &index.token_id), self.user_key(&index.tenant, &index.user));
        let (stored, user) =
            tokio::join!(self.get_json::<StoredToken>(&token_key), self.get_json::<StoredUser>(&user_key));
        let Some(stored) = stored? else {
            return Ok(None);
        };
        if stored.sha256 != sha256 || stored.user != index.user {
            return Ok(None);
        }
        let Some(user) = user? else {
            return Ok(None);
        };
        let now = now_unix_ms();
        Ok(stored.usable_by(&user, now).then(|| ResolvedToken {
            principal: user.record(&index.tenant, &index.user).principal(),
            expires_at_unix_ms: stored.expires_at_unix_ms,
        }))
    }

    async fn revoke_token(&self, tenant: &TenantId, token_id: &str) -> Result<bool, StoreError> {
        if !valid_token_id(token_id) {
            return Ok(false);
        }
        let token_key = self.token_key(tenant, token_id);
        let Some(mut stored) = self.get_json::<StoredToken>(&token_key).await? else {
            return Ok(false);
        };
        if !stored.revoked {
            stored.revoked = true;
            self.set_json(&token_key, &stored).await?;
        }
        self.del(&self.hash_key(&stored.sha256)).await?;
        Ok(true)
    }

    async fn list_tokens(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<TokenInfo>, StoreError> {
        let mut tokens = Vec::new();
        for token_id in self.members(&self.user_tokens_key(tenant, user)).await? {
            if let Some(stored) = self.get_json::<StoredToken>(&self.token_key(tenant, &token_id)).await?
                && stored.user == *user
            {
                tokens.push(stored.info(&token_id));
            }
        }
        tokens.sort_by(|a, b| (a.created_unix_ms, &a.token_id).cmp(&(b.created_unix_ms, &b.token_id)));
        Ok(tokens)
    }

    async fn link_external(
        &self,
        tenant: &TenantId,
        user: &UserId,
        provider: &str,
        external_id: &str,
    ) -> Result<(), StoreError> {
        check_external(provider, external_id)?;
        let Some(owner) = self.get_json::<StoredUser>(&self.user_key(tenant, user)).await? else {
            return Err(StoreError::NotFound(format!("user {user} in tenant {tenant}")));
        };
        let ext_key = self.external_key(provider, external_id);
        let link = ExternalRef { tenant: tenant.clone(), user: user.clone(), incarnation: owner.incarnation };
        let set: Option<String> = cmd("SET")
            .arg(&ext_key)
            .arg(encode(&ext_key, &link)?)
            .arg("NX")
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("link external identity"))?;
        if set.is_none() {
            let current = self.get_json::<ExternalRef>(&ext_key).await?;
            let stale = match &current {
                None => true,
                Some(c) if *c == link => false,
                // Linked to a user that was since deleted (or re-created): take it over.
                Some(c) => self
                    .get_json::<StoredUser>(&self.user_key(&c.tenant, &c.user))
                    .await?
                    .is_none_or(|u| u.incarnation != c.incarnation),
            };
            if current.as_ref() != Some(&link) {
                if !stale {
                    return Err(StoreError::Conflict(format!(
                        "{provider} identity {external_id} is linked to another user"
                    )));
                }
                self.set_json(&ext_key, &link).await?;
            }
        }
        cmd("SADD")
            .arg(self.user_links_key(tenant, user))
            .arg(format!("{provider} {external_id}"))
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("SADD links"))
    }

    fn pairings(&self) -> Option<&dyn crate::pairing::PairingStore> {
        Some(self)
    }

    async fn resolve_external(&self, provider: &str, external_id: &str) -> Result<Option<Principal>, StoreError> {
        if check_external(provider, external_id).is_err() {
            return Ok(None);
        }
        let Some(link) = self.get_json::<ExternalRef>(&self.external_key(provider, external_id)).await? else {
            return Ok(None);
        };
        self.live_principal(&link.tenant, &link.user, |u| u.incarnation == link.incarnation).await
    }
}
