//! Embedded adapter of [`IdentityStore`]: four more redb tables.
//!
//! ```text
//! users          (tenant, user)           -> JSON StoredUser
//! tokens         (tenant, token_id)       -> JSON StoredToken (SHA-256, never the plaintext)
//! token_hashes   sha256                   -> JSON TokenRef: tenant, user, token id
//! external_ids   (provider, external_id)  -> JSON ExternalRef: tenant, user, incarnation
//! ```
//!
//! Every operation is one redb transaction, so the records and their indexes
//! change together.

use super::tables::{decode, encode};
use super::{EmbeddedStore, Inner};
use crate::identity::{
    ExternalRef, IdentityStore, IssuedToken, ResolvedToken, StoredToken, StoredUser, TokenInfo, TokenRef, UserRecord,
    check_external, check_sha256, new_token, valid_token_id,
};
use crate::port::StoreError;
use async_trait::async_trait;
use clawhive_core::time::now_unix_ms;
use clawhive_core::token::hash_token;
use clawhive_core::{Principal, TenantId, UserId};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};

const USERS: TableDefinition<(&str, &str), &str> = TableDefinition::new("users");
const TOKENS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tokens");
const TOKEN_HASHES: TableDefinition<&str, &str> = TableDefinition::new("token_hashes");
const EXTERNAL_IDS: TableDefinition<(&str, &str), &str> = TableDefinition::new("external_ids");

/// Creates the identity tables.
pub(super) fn init(inner: &Inner) -> Result<(), StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin identity init"))?;
    txn.open_table(USERS).map_err(inner.fail("create table users"))?;
    txn.open_table(TOKENS).map_err(inner.fail("create table tokens"))?;
    txn.open_table(TOKEN_HASHES).map_err(inner.fail("create table token_hashes"))?;
    txn.open_table(EXTERNAL_IDS).map_err(inner.fail("create table external_ids"))?;
    txn.commit().map_err(inner.fail("commit identity init"))
}

fn read<T: serde::de::DeserializeOwned, K: redb::Key + 'static>(
    inner: &Inner,
    table: &impl ReadableTable<K, &'static str>,
    name: &str,
    key: K::SelfType<'_>,
    shown: impl std::fmt::Display,
) -> Result<Option<T>, StoreError> {
    let guard = table.get(key).map_err(inner.fail("read identity table"))?;
    guard.map(|g| decode(name, shown, g.value())).transpose()
}

fn user_of(
    inner: &Inner,
    users: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Option<StoredUser>, StoreError> {
    read(inner, users, "users", (tenant.as_str(), user.as_str()), format_args!("{tenant}/{user}"))
}

fn create_user(inner: &Inner, tenant: &TenantId, user: &UserId, stored: &StoredUser) -> Result<UserRecord, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin create user"))?;
    {
        let mut users = txn.open_table(USERS).map_err(inner.fail("open users"))?;
        if user_of(inner, &users, tenant, user)?.is_some() {
            return Err(StoreError::Conflict(format!("user {user} exists in tenant {tenant}")));
        }
        let json = encode("users", format_args!("{tenant}/{user}"), stored)?;
        users.insert((tenant.as_str(), user.as_str()), json.as_str()).map_err(inner.fail("write user"))?;
    }
    txn.commit().map_err(inner.fail("commit create user"))?;
    Ok(stored.record(tenant, user))
}

fn get_user(inner: &Inner, tenant: &TenantId, user: &UserId) -> Result<Option<StoredUser>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    user_of(inner, &txn.open_table(USERS).map_err(inner.fail("open users"))?, tenant, user)
}

fn list_users(inner: &Inner, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    let users = txn.open_table(USERS).map_err(inner.fail("open users"))?;
    let t = tenant.as_str();
    let mut out = Vec::new();
    for entry in users.range((t, "")..).map_err(inner.fail("read users"))? {
        let (key, json) = entry.map_err(inner.fail("read users"))?;
        let (et, id) = key.value();
        if et != t {
            break;
        }
        let Ok(user) = UserId::new(id) else {
            tracing::warn!(tenant = t, id, "Skipping an invalid user id in the users table.");
            continue;
        };
        let stored: StoredUser = decode("users", format_args!("{t}/{id}"), json.value())?;
        out.push(stored.record(tenant, &user));
    }
    Ok(out)
}

/// Marks a token revoked and drops its hash from the index; `false` if absent.
fn revoke_in(
    inner: &Inner,
    tokens: &mut redb::Table<'_, (&'static str, &'static str), &'static str>,
    hashes: &mut redb::Table<'_, &'static str, &'static str>,
    tenant: &TenantId,
    token_id: &str,
) -> Result<bool, StoreError> {
    let shown = format!("{tenant}/{token_id}");
    let Some(mut stored) = read::<StoredToken, _>(inner, &*tokens, "tokens", (tenant.as_str(), token_id), &shown)?
    else {
        return Ok(false);
    };
    hashes.remove(stored.sha256.as_str()).map_err(inner.fail("remove token hash"))?;
    if !stored.revoked {
        stored.revoked = true;
        let json = encode("tokens", &shown, &stored)?;
        tokens.insert((tenant.as_str(), token_id), json.as_str()).map_err(inner.fail("write token"))?;
    }
    Ok(true)
}

/// The ids and records of `user`'s tokens in `tenant`.
fn tokens_of(
    inner: &Inner,
    tokens: &impl ReadableTable<(&'static str, &'static str), &'static str>,
    tenant: &TenantId,
    user: &UserId,
) -> Result<Vec<(String, StoredToken)>, StoreError> {
    let t = tenant.as_str();
    let mut out = Vec::new();
    for entry in tokens.range((t, "")..).map_err(inner.fail("read tokens"))? {
        let (key, json) = entry.map_err(inner.fail("read tokens"))?;
        let (et, id) = key.value();
        if et != t {
            break;
        }
        let stored: StoredToken = decode("tokens", format_args!("{t}/{id}"), json.value())?;
        if stored.user == *user {
            out.push((id.to_string(), stored));
        }
    }
    Ok(out)
}

fn delete_user(inner: &Inner, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin delete user"))?;
    {
        let mut users = txn.open_table(USERS).map_err(inner.fail("open users"))?;
        let Some(stored) = user_of(inner, &users, tenant, user)? else {
            return Ok(false);
        };
        users.remove((tenant.as_str(), user.as_str())).map_err(inner.fail("remove user"))?;
        let mut tokens = txn.open_table(TOKENS).map_err(inner.fail("open tokens"))?;
        let mut hashes = txn.open_table(TOKEN_HASHES).map_err(inner.fail("open token_hashes"))?;
        for (id, _) in tokens_of(inner, &tokens, tenant, user)? {
            revoke_in(inner, &mut tokens, &mut hashes, tenant, &id)?;
        }
        let ours = ExternalRef { tenant: tenant.clone(), user: user.clone(), incarnation: stored.incarnation };
        let mut external = txn.open_table(EXTERNAL_IDS).map_err(inner.fail("open external_ids"))?;
        external
            .retain(|_, json| serde_json::from_str::<ExternalRef>(json).map_or(true, |r| r != ours))
            .map_err(inner.fail("remove external links"))?;
    }
    txn.commit().map_err(inner.fail("commit delete user"))?;
    Ok(true)
}

fn issue_token(
    inner: &Inner,
    tenant: &TenantId,
    user: &UserId,
    expires_at_unix_ms: Option<i64>,
    label: &str,
) -> Result<IssuedToken, StoreError> {
    let (token_id, token) = new_token();
    store_token(inner, tenant, user, &hash_token(&token), &token_id, expires_at_unix_ms, label)?;
    Ok(IssuedToken { token_id, token })
}

/// Stores a token given by its SHA-256; `Conflict` if that hash is already registered.
fn store_token(
    inner: &Inner,
    tenant: &TenantId,
    user: &UserId,
    sha256: &str,
    token_id: &str,
    expires_at_unix_ms: Option<i64>,
    label: &str,
) -> Result<(), StoreError> {
    let sha256 = sha256.to_string();
    let token_id = token_id.to_string();
    let txn = inner.db.begin_write().map_err(inner.fail("begin issue token"))?;
    {
        let users = txn.open_table(USERS).map_err(inner.fail("open users"))?;
        let Some(owner) = user_of(inner, &users, tenant, user)? else {
            return Err(StoreError::NotFound(format!("user {user} in tenant {tenant}")));
        };
        let stored = StoredToken {
            user: user.clone(),
            incarnation: owner.incarnation,
            sha256: sha256.clone(),
            label: label.to_string(),
            created_unix_ms: now_unix_ms(),
            expires_at_unix_ms,
            revoked: false,
        };
        let shown = format!("{tenant}/{token_id}");
        let mut tokens = txn.open_table(TOKENS).map_err(inner.fail("open tokens"))?;
        let json = encode("tokens", &shown, &stored)?;
        tokens.insert((tenant.as_str(), token_id.as_str()), json.as_str()).map_err(inner.fail("write token"))?;
        let index = TokenRef { tenant: tenant.clone(), user: user.clone(), token_id: token_id.clone() };
        let json = encode("token_hashes", &shown, &index)?;
        let mut hashes = txn.open_table(TOKEN_HASHES).map_err(inner.fail("open token_hashes"))?;
        if hashes.get(sha256.as_str()).map_err(inner.fail("read token hash"))?.is_some() {
            return Err(StoreError::Conflict("this token is already registered".into()));
        }
        hashes.insert(sha256.as_str(), json.as_str()).map_err(inner.fail("write token hash"))?;
    }
    txn.commit().map_err(inner.fail("commit issue token"))?;
    Ok(())
}

fn resolve_token(inner: &Inner, sha256: &str) -> Result<Option<ResolvedToken>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    let hashes = txn.open_table(TOKEN_HASHES).map_err(inner.fail("open token_hashes"))?;
    let Some(index) = read::<TokenRef, _>(inner, &hashes, "token_hashes", sha256, "<hash>")? else {
        return Ok(None);
    };
    let tokens = txn.open_table(TOKENS).map_err(inner.fail("open tokens"))?;
    let shown = format!("{}/{}", index.tenant, index.token_id);
    let key = (index.tenant.as_str(), index.token_id.as_str());
    let Some(stored) = read::<StoredToken, _>(inner, &tokens, "tokens", key, &shown)? else {
        return Ok(None);
    };
    if stored.sha256 != sha256 || stored.user != index.user {
        return Ok(None);
    }
    let users = txn.open_table(USERS).map_err(inner.fail("open users"))?;
    let Some(user) = user_of(inner, &users, &index.tenant, &index.user)? else {
        return Ok(None);
    };
    Ok(stored.usable_by(&user, now_unix_ms()).then(|| ResolvedToken {
        principal: user.record(&index.tenant, &index.user).principal(),
        expires_at_unix_ms: stored.expires_at_unix_ms,
    }))
}

fn revoke_token(inner: &Inner, tenant: &TenantId, token_id: &str) -> Result<bool, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin revoke token"))?;
    let found = {
        let mut tokens = txn.open_table(TOKENS).map_err(inner.fail("open tokens"))?;
        let mut hashes = txn.open_table(TOKEN_HASHES).map_err(inner.fail("open token_hashes"))?;
        revoke_in(inner, &mut tokens, &mut hashes, tenant, token_id)?
    };
    txn.commit().map_err(inner.fail("commit revoke token"))?;
    Ok(found)
}

fn list_tokens(inner: &Inner, tenant: &TenantId, user: &UserId) -> Result<Vec<TokenInfo>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    let tokens = txn.open_table(TOKENS).map_err(inner.fail("open tokens"))?;
    let mut out: Vec<TokenInfo> =
        tokens_of(inner, &tokens, tenant, user)?.iter().map(|(id, stored)| stored.info(id)).collect();
    out.sort_by(|a, b| (a.created_unix_ms, &a.token_id).cmp(&(b.created_unix_ms, &b.token_id)));
    Ok(out)
}

fn link_external(
    inner: &Inner,
    tenant: &TenantId,
    user: &UserId,
    provider: &str,
    external_id: &str,
) -> Result<(), StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin link external"))?;
    {
        let users = txn.open_table(USERS).map_err(inner.fail("open users"))?;
        let Some(owner) = user_of(inner, &users, tenant, user)? else {
            return Err(StoreError::NotFound(format!("user {user} in tenant {tenant}")));
        };
        let link = ExternalRef { tenant: tenant.clone(), user: user.clone(), incarnation: owner.incarnation };
        let mut external = txn.open_table(EXTERNAL_IDS).map_err(inner.fail("open external_ids"))?;
        let shown = format!("{provider}/{external_id}");
        let current: Option<ExternalRef> = read(inner, &external, "external_ids", (provider, external_id), &shown)?;
        if let Some(c) = &current
            && *c != link
            && user_of(inner, &users, &c.tenant, &c.user)?.is_some_and(|u| u.incarnation == c.incarnation)
        {
            return Err(StoreError::Conflict(format!("{provider} identity {external_id} is linked to another user")));
        }
        let json = encode("external_ids", &shown, &link)?;
        external.insert((provider, external_id), json.as_str()).map_err(inner.fail("write external link"))?;
    }
    txn.commit().map_err(inner.fail("commit link external"))
}

fn resolve_external(inner: &Inner, provider: &str, external_id: &str) -> Result<Option<Principal>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read"))?;
    let external = txn.open_table(EXTERNAL_IDS).map_err(inner.fail("open external_ids"))?;
    let shown = format!("{provider}/{external_id}");
    let Some(link) = read::<ExternalRef, _>(inner, &external, "external_ids", (provider, external_id), &shown)? else {
        return Ok(None);
    };
    let users = txn.open_table(USERS).map_err(inner.fail("open users"))?;
    let Some(user) = user_of(inner, &users, &link.tenant, &link.user)? else {
        return Ok(None);
    };
    Ok((user.incarnation == link.incarnation).then(|| user.record(&link.tenant, &link.user).principal()))
}

#[async_trait]
impl IdentityStore for EmbeddedStore {
    async fn create_user(
        &self,
        tenant: &TenantId,
        user: &UserId,
        roles: &[String],
        groups: &[String],
        display_name: &str,
    ) -> Result<UserRecord, StoreError> {
        let stored = StoredUser::new(roles, groups, display_name);
        let (tenant, user) = (tenant.clone(), user.clone());
        self.run("create user", move |inner| create_user(inner, &tenant, &user, &stored)).await
    }

    async fn get_user(&self, tenant: &TenantId, user: &UserId) -> Result<Option<UserRecord>, StoreError> {
        let (tenant, user) = (tenant.clone(), user.clone());
        self.run("read user", move |inner| Ok(get_user(inner, &tenant, &user)?.map(|s| s.record(&tenant, &user)))).await
    }

    async fn list_users(&self, tenant: &TenantId) -> Result<Vec<UserRecord>, StoreError> {
        let tenant = tenant.clone();
        self.run("list users", move |inner| list_users(inner, &tenant)).await
    }

    async fn delete_user(&self, tenant: &TenantId, user: &UserId) -> Result<bool, StoreError> {
        let (tenant, user) = (tenant.clone(), user.clone());
        self.run("delete user", move |inner| delete_user(inner, &tenant, &user)).await
    }

    async fn issue_token(
        &self,
        tenant: &TenantId,
        user: &UserId,
        expires_at_unix_ms: Option<i64>,
        label: &str,
    ) -> Result<IssuedToken, StoreError> {
        let (tenant, user, label) = (tenant.clone(), user.clone(), label.to_string());
        self.run("issue token", move |inner| issue_token(inner, &tenant, &user, expires_at_unix_ms, &label)).await
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
        let (tenant, user, label, sha) = (tenant.clone(), user.clone(), label.to_string(), sha256.to_string());
        let id = token_id.clone();
        self.run("register token", move |inner| {
            store_token(inner, &tenant, &user, &sha, &id, expires_at_unix_ms, &label)
        })
        .await?;
        Ok(token_id)
    }

    async fn resolve_token_with_expiry(&self, token: &str) -> Result<Option<ResolvedToken>, StoreError> {
        let sha256 = hash_token(token);
        self.run("resolve token", move |inner| resolve_token(inner, &sha256)).await
    }

    async fn revoke_token(&self, tenant: &TenantId, token_id: &str) -> Result<bool, StoreError> {
        if !valid_token_id(token_id) {
            return Ok(false);
        }
        let (tenant, token_id) = (tenant.clone(), token_id.to_string());
        self.run("revoke token", move |inner| revoke_token(inner, &tenant, &token_id)).await
    }

    async fn list_tokens(&self, tenant: &TenantId, user: &UserId) -> Result<Vec<TokenInfo>, StoreError> {
        let (tenant, user) = (tenant.clone(), user.clone());
        self.run("list tokens", move |inner| list_tokens(inner, &tenant, &user)).await
    }

    async fn link_external(
        &self,
        tenant: &TenantId,
        user: &UserId,
        provider: &str,
        external_id: &str,
    ) -> Result<(), StoreError> {
        check_external(provider, external_id)?;
        let (tenant, user) = (tenant.clone(), user.clone());
        let (provider, external_id) = (provider.to_string(), external_id.to_string());
        self.run("link external identity", move |inner| link_external(inner, &tenant, &user, &provider, &external_id))
            .await
    }

    fn pairings(&self) -> Option<&dyn crate::pairing::PairingStore> {
        Some(self)
    }

    async fn resolve_external(&self, provider: &str, external_id: &str) -> Result<Option<Principal>, StoreError> {
        if check_external(provider, external_id).is_err() {
            return Ok(None);
        }
        let (provider, external_id) = (provider.to_string(), external_id.to_string());
        self.run("resolve external identity", move |inner| resolve_external(inner, &provider, &external_id)).await
    }
}
