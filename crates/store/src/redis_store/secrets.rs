//! Redis adapter of [`SecretStore`]: one hash per tenant, sealed blobs only.
//!
//! ```text
//! <prefix>:{<tenant>}:secrets     hash: "<scope>/<name>" -> sealed blob (see crate::secrets)
//! ```

use super::RedisStore;
use super::errors::failed;
use crate::port::StoreError;
use crate::secrets::{SecretInfo, SecretScope, SecretStore};
use async_trait::async_trait;
use clawhive_core::TenantId;
use redis::cmd;

impl RedisStore {
    fn secrets_key(&self, tenant: &TenantId) -> String {
        format!("{}:{{{tenant}}}:secrets", self.keys.prefix())
    }
}

fn field(scope: &SecretScope, name: &str) -> String {
    format!("{}/{name}", scope.as_key())
}

#[async_trait]
impl SecretStore for RedisStore {
    async fn put_secret_blob(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        name: &str,
        blob: Vec<u8>,
    ) -> Result<(), StoreError> {
        let _: i64 = cmd("HSET")
            .arg(self.secrets_key(tenant))
            .arg(field(scope, name))
            .arg(blob)
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("HSET secret"))?;
        Ok(())
    }

    async fn get_secret_blob(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        cmd("HGET")
            .arg(self.secrets_key(tenant))
            .arg(field(scope, name))
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("HGET secret"))
    }

    async fn delete_secret(&self, tenant: &TenantId, scope: &SecretScope, name: &str) -> Result<bool, StoreError> {
        let n: i64 = cmd("HDEL")
            .arg(self.secrets_key(tenant))
            .arg(field(scope, name))
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("HDEL secret"))?;
        Ok(n == 1)
    }

    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>, StoreError> {
        let fields: Vec<String> = cmd("HKEYS")
            .arg(self.secrets_key(tenant))
            .query_async(&mut self.con.clone())
            .await
            .map_err(failed("HKEYS secrets"))?;
        let mut out: Vec<SecretInfo> = fields
            .iter()
            .filter_map(|f| {
                let (scope, name) = f.split_once('/')?;
                Some(SecretInfo { scope: SecretScope::from_key(scope)?, name: name.to_string() })
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.scope).cmp(&(&b.name, &b.scope)));
        Ok(out)
    }
}
