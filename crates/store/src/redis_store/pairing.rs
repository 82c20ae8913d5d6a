//! Redis adapter of [`PairingStore`] and [`MarkerStore`].
//!
//! ```text
//! <prefix>:{<tenant>}:pair:code:<code>                JSON Pairing (PX = its lifetime)
//! <prefix>:{<tenant>}:pair:ext:<provider>:<ext id>    the pending code of an external identity (PX)
//! <prefix>:{<tenant>}:pair:codes                      set of codes (pruned as they expire)
//! <prefix>:mark:<key>                                 a marker's value (PX)
//! ```

use super::RedisStore;
use super::errors::failed;
use crate::markers::{MarkerStore, check_marker};
use crate::pairing::{Pairing, PairingStore, check_new, new_code, normalize_code};
use crate::port::StoreError;
use async_trait::async_trait;
use clawhive_core::TenantId;
use clawhive_core::time::now_unix_ms;
use redis::cmd;
use std::time::Duration;

impl RedisStore {
    fn pair_key(&self, tenant: &TenantId, rest: &str) -> String {
        format!("{}:{{{tenant}}}:pair:{rest}", self.keys.prefix())
    }

    fn marker_key(&self, key: &str) -> String {
        format!("{}:mark:{key}", self.keys.prefix())
    }

    async fn pairing_at(&self, key: &str) -> Result<Option<Pairing>, StoreError> {
        let json: Option<String> =
            cmd("GET").arg(key).query_async(&mut self.con.clone()).await.map_err(failed("GET pairing"))?;
        json.map(|j| serde_json::from_str(&j).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))).transpose()
    }
}

fn ttl_ms(ttl: Duration) -> u64 {
    (ttl.as_millis() as u64).max(1)
}

#[async_trait]
impl PairingStore for RedisStore {
    async fn create_pairing(
        &self,
        tenant: &TenantId,
        provider: &str,
        external_id: &str,
        display_name: &str,
        ttl: Duration,
    ) -> Result<Pairing, StoreError> {
        check_new(provider, external_id, ttl)?;
        let ext_key = self.pair_key(tenant, &format!("ext:{provider}:{external_id}"));
        let pending: Option<String> =
            cmd("GET").arg(&ext_key).query_async(&mut self.con.clone()).await.map_err(failed("GET pairing index"))?;
        if let Some(code) = pending
            && let Some(p) = self.pairing_at(&self.pair_key(tenant, &format!("code:{code}"))).await?
        {
            return Ok(p);
        }
        let now = now_unix_ms();
        let pairing = Pairing {
            code: new_code(),
            tenant: tenant.clone(),
            provider: provider.to_string(),
            external_id: external_id.to_string(),
            display_name: display_name.to_string(),
            created_unix_ms: now,
            expires_unix_ms: now + ttl.as_millis() as i64,
        };
        let json = serde_json::to_string(&pairing).map_err(|e| StoreError::Corrupt(format!("encode pairing: {e}")))?;
        redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(self.pair_key(tenant, &format!("code:{}", pairing.code)))
            .arg(json)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .ignore()
            .cmd("SET")
            .arg(&ext_key)
            .arg(&pairing.code)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .ignore()
            .cmd("SADD")
            .arg(self.pair_key(tenant, "codes"))
            .arg(&pairing.code)
            .ignore()
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("create pairing"))?;
        Ok(pairing)
    }

    async fn list_pairings(&self, tenant: &TenantId) -> Result<Vec<Pairing>, StoreError> {
        let set = self.pair_key(tenant, "codes");
        let codes: Vec<String> =
            cmd("SMEMBERS").arg(&set).query_async(&mut self.con.clone()).await.map_err(failed("SMEMBERS pairings"))?;
        let mut out = Vec::new();
        for code in codes {
            match self.pairing_at(&self.pair_key(tenant, &format!("code:{code}"))).await? {
                Some(p) => out.push(p),
                None => {
                    cmd("SREM")
                        .arg(&set)
                        .arg(&code)
                        .exec_async(&mut self.con.clone())
                        .await
                        .map_err(failed("SREM pairing"))?;
                }
            }
        }
        out.sort_by(|a, b| (a.created_unix_ms, &a.code).cmp(&(b.created_unix_ms, &b.code)));
        Ok(out)
    }

    async fn take_pairing(&self, tenant: &TenantId, code: &str) -> Result<Option<Pairing>, StoreError> {
        let code = normalize_code(code)?;
        let key = self.pair_key(tenant, &format!("code:{code}"));
        // GETDEL: of two admins approving at once, one gets the pairing.
        let json: Option<String> =
            cmd("GETDEL").arg(&key).query_async(&mut self.con.clone()).await.map_err(failed("GETDEL pairing"))?;
        let Some(json) = json else { return Ok(None) };
        let p: Pairing = serde_json::from_str(&json).map_err(|e| StoreError::Corrupt(format!("{key}: {e}")))?;
        redis::pipe()
            .cmd("DEL")
            .arg(self.pair_key(tenant, &format!("ext:{}:{}", p.provider, p.external_id)))
            .ignore()
            .cmd("SREM")
            .arg(self.pair_key(tenant, "codes"))
            .arg(&code)
            .ignore()
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("drop taken pairing"))?;
        Ok(Some(p))
    }
}

#[async_trait]
impl MarkerStore for RedisStore {
    async fn claim_marker(&self, key: &str, value: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        check_marker(key, Some(ttl))?;
        let k = self.marker_key(key);
        // SET NX GET (Redis 7) would be one call; two keep Redis 6.2 working.
        let set: Option<String> = cmd("SET")
            .arg(&k)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(ttl_ms(ttl))
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("SET NX marker"))?;
        if set.is_some() {
            return Ok(None);
        }
        let existing: Option<String> =
            cmd("GET").arg(&k).query_async(&mut self.con.clone()).await.map_err(failed("GET marker"))?;
        // Expired between the two calls: report it as held with an empty value rather than racing.
        Ok(Some(existing.unwrap_or_default()))
    }

    async fn put_marker(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        check_marker(key, Some(ttl))?;
        cmd("SET")
            .arg(self.marker_key(key))
            .arg(value)
            .arg("PX")
            .arg(ttl_ms(ttl))
            .exec_async(&mut self.con.clone())
            .await
            .map_err(failed("SET marker"))
    }

    async fn get_marker(&self, key: &str) -> Result<Option<String>, StoreError> {
        check_marker(key, None)?;
        cmd("GET").arg(self.marker_key(key)).query_async(&mut self.con.clone()).await.map_err(failed("GET marker"))
    }

    async fn remove_marker(&self, key: &str) -> Result<(), StoreError> {
        check_marker(key, None)?;
        cmd("DEL").arg(self.marker_key(key)).exec_async(&mut self.con.clone()).await.map_err(failed("DEL marker"))
    }
}
