//! Embedded adapter of [`SecretStore`]: one redb table of sealed blobs.
//!
//! ```text
//! secrets   (tenant, scope, name) -> sealed blob (see crate::secrets)
//! ```

use super::{EmbeddedStore, Inner};
use crate::port::StoreError;
use crate::secrets::{SecretInfo, SecretScope, SecretStore};
use async_trait::async_trait;
use clawhive_core::TenantId;
use redb::{ReadableDatabase, TableDefinition};

const SECRETS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("secrets");

/// Creates the secrets table.
pub(super) fn init(inner: &Inner) -> Result<(), StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin secrets init"))?;
    txn.open_table(SECRETS).map_err(inner.fail("create table secrets"))?;
    txn.commit().map_err(inner.fail("commit secrets init"))
}

#[async_trait]
impl SecretStore for EmbeddedStore {
    async fn put_secret_blob(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        name: &str,
        blob: Vec<u8>,
    ) -> Result<(), StoreError> {
        let (t, s, n) = (tenant.to_string(), scope.as_key(), name.to_string());
        self.run("put secret", move |inner: &Inner| {
            let txn = inner.db.begin_write().map_err(inner.fail("begin put secret"))?;
            {
                let mut table = txn.open_table(SECRETS).map_err(inner.fail("open secrets"))?;
                table
                    .insert((t.as_str(), s.as_str(), n.as_str()), blob.as_slice())
                    .map_err(inner.fail("write secret"))?;
            }
            txn.commit().map_err(inner.fail("commit put secret"))
        })
        .await
    }

    async fn get_secret_blob(
        &self,
        tenant: &TenantId,
        scope: &SecretScope,
        name: &str,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (t, s, n) = (tenant.to_string(), scope.as_key(), name.to_string());
        self.run("get secret", move |inner: &Inner| {
            let txn = inner.db.begin_read().map_err(inner.fail("begin get secret"))?;
            let table = txn.open_table(SECRETS).map_err(inner.fail("open secrets"))?;
            Ok(table
                .get((t.as_str(), s.as_str(), n.as_str()))
                .map_err(inner.fail("read secret"))?
                .map(|g| g.value().to_vec()))
        })
        .await
    }

    async fn delete_secret(&self, tenant: &TenantId, scope: &SecretScope, name: &str) -> Result<bool, StoreError> {
        let (t, s, n) = (tenant.to_string(), scope.as_key(), name.to_string());
        self.run("delete secret", move |inner: &Inner| {
            let txn = inner.db.begin_write().map_err(inner.fail("begin delete secret"))?;
            let existed = {
                let mut table = txn.open_table(SECRETS).map_err(inner.fail("open secrets"))?;
                table.remove((t.as_str(), s.as_str(), n.as_str())).map_err(inner.fail("delete secret"))?.is_some()
            };
            txn.commit().map_err(inner.fail("commit delete secret"))?;
            Ok(existed)
        })
        .await
    }

    async fn list_secrets(&self, tenant: &TenantId) -> Result<Vec<SecretInfo>, StoreError> {
        let t = tenant.to_string();
        self.run("list secrets", move |inner: &Inner| {
            let txn = inner.db.begin_read().map_err(inner.fail("begin list secrets"))?;
            let table = txn.open_table(SECRETS).map_err(inner.fail("open secrets"))?;
            let mut out = Vec::new();
            for entry in table.range((t.as_str(), "", "")..).map_err(inner.fail("scan secrets"))? {
                let (k, _) = entry.map_err(inner.fail("scan secrets"))?;
                let (tenant, scope, name) = k.value();
                if tenant != t {
                    break;
                }
                if let Some(scope) = SecretScope::from_key(scope) {
                    out.push(SecretInfo { scope, name: name.to_string() });
                }
            }
            out.sort_by(|a, b| (&a.name, &a.scope).cmp(&(&b.name, &b.scope)));
            Ok(out)
        })
        .await
    }
}
