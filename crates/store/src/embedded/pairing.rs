//! Embedded adapter of [`PairingStore`] and [`MarkerStore`]: two more redb tables.
//!
//! ```text
//! pairings   (tenant, code)   -> JSON Pairing (expired ones are skipped and purged)
//! markers    key              -> JSON MarkerEntry: value + expiry
//! ```

use super::tables::{decode, encode};
use super::{EmbeddedStore, Inner};
use crate::markers::{MarkerStore, check_marker};
use crate::pairing::{Pairing, PairingStore, check_new, new_code, normalize_code};
use crate::port::StoreError;
use async_trait::async_trait;
use clawhive_core::TenantId;
use clawhive_core::time::now_unix_ms;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::time::Duration;

const PAIRINGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("pairings");
const MARKERS: TableDefinition<&str, &str> = TableDefinition::new("markers");

#[derive(serde::Serialize, serde::Deserialize)]
struct MarkerEntry {
    value: String,
    expires_unix_ms: i64,
}

/// Creates the tables.
pub(super) fn init(inner: &Inner) -> Result<(), StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin pairing init"))?;
    txn.open_table(PAIRINGS).map_err(inner.fail("create table pairings"))?;
    txn.open_table(MARKERS).map_err(inner.fail("create table markers"))?;
    txn.commit().map_err(inner.fail("commit pairing init"))
}

fn tenant_pairings(inner: &Inner, tenant: &TenantId) -> Result<Vec<Pairing>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read pairings"))?;
    let table = txn.open_table(PAIRINGS).map_err(inner.fail("open pairings"))?;
    let mut out = Vec::new();
    let range = table.range((tenant.as_str(), "")..).map_err(inner.fail("scan pairings"))?;
    for entry in range {
        let (k, v) = entry.map_err(inner.fail("scan pairings"))?;
        let (t, code) = k.value();
        if t != tenant.as_str() {
            break;
        }
        out.push(decode::<Pairing>("pairings", format_args!("{t}/{code}"), v.value())?);
    }
    Ok(out)
}

fn create(
    inner: &Inner,
    tenant: &TenantId,
    provider: &str,
    external_id: &str,
    display_name: &str,
    ttl: Duration,
) -> Result<Pairing, StoreError> {
    let now = now_unix_ms();
    let txn = inner.db.begin_write().map_err(inner.fail("begin create pairing"))?;
    let pairing = {
        let mut table = txn.open_table(PAIRINGS).map_err(inner.fail("open pairings"))?;
        let mut existing = None;
        let mut expired = Vec::new();
        for entry in table.range((tenant.as_str(), "")..).map_err(inner.fail("scan pairings"))? {
            let (k, v) = entry.map_err(inner.fail("scan pairings"))?;
            let (t, code) = k.value();
            if t != tenant.as_str() {
                break;
            }
            let p: Pairing = decode("pairings", format_args!("{t}/{code}"), v.value())?;
            if p.expires_unix_ms <= now {
                expired.push(p.code);
            } else if p.provider == provider && p.external_id == external_id {
                existing = Some(p);
            }
        }
        for code in expired {
            table.remove((tenant.as_str(), code.as_str())).map_err(inner.fail("purge pairing"))?;
        }
        match existing {
            Some(p) => p,
            None => {
                let p = Pairing {
                    code: new_code(),
                    tenant: tenant.clone(),
                    provider: provider.to_string(),
                    external_id: external_id.to_string(),
                    display_name: display_name.to_string(),
                    created_unix_ms: now,
                    expires_unix_ms: now + ttl.as_millis() as i64,
                };
                let json = encode("pairings", &p.code, &p)?;
                table.insert((tenant.as_str(), p.code.as_str()), json.as_str()).map_err(inner.fail("write pairing"))?;
                p
            }
        }
    };
    txn.commit().map_err(inner.fail("commit create pairing"))?;
    Ok(pairing)
}

fn take(inner: &Inner, tenant: &TenantId, code: &str) -> Result<Option<Pairing>, StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin take pairing"))?;
    let taken = {
        let mut table = txn.open_table(PAIRINGS).map_err(inner.fail("open pairings"))?;
        let removed = table.remove((tenant.as_str(), code)).map_err(inner.fail("take pairing"))?;
        match removed {
            Some(g) => Some(decode::<Pairing>("pairings", format_args!("{tenant}/{code}"), g.value())?),
            None => None,
        }
    };
    txn.commit().map_err(inner.fail("commit take pairing"))?;
    Ok(taken.filter(|p| p.expires_unix_ms > now_unix_ms()))
}

fn marker_get(inner: &Inner, key: &str) -> Result<Option<String>, StoreError> {
    let txn = inner.db.begin_read().map_err(inner.fail("begin read marker"))?;
    let table = txn.open_table(MARKERS).map_err(inner.fail("open markers"))?;
    let entry = table.get(key).map_err(inner.fail("read marker"))?;
    let entry = entry.map(|g| decode::<MarkerEntry>("markers", key, g.value())).transpose()?;
    Ok(entry.filter(|e| e.expires_unix_ms > now_unix_ms()).map(|e| e.value))
}

fn marker_set(
    inner: &Inner,
    key: &str,
    value: &str,
    ttl: Duration,
    only_new: bool,
) -> Result<Option<String>, StoreError> {
    let now = now_unix_ms();
    let txn = inner.db.begin_write().map_err(inner.fail("begin write marker"))?;
    let held = {
        let mut table = txn.open_table(MARKERS).map_err(inner.fail("open markers"))?;
        let current = table
            .get(key)
            .map_err(inner.fail("read marker"))?
            .map(|g| decode::<MarkerEntry>("markers", key, g.value()))
            .transpose()?
            .filter(|e| e.expires_unix_ms > now);
        match current {
            Some(e) if only_new => Some(e.value),
            _ => {
                let entry = MarkerEntry { value: value.to_string(), expires_unix_ms: now + ttl.as_millis() as i64 };
                let json = encode("markers", key, &entry)?;
                table.insert(key, json.as_str()).map_err(inner.fail("write marker"))?;
                None
            }
        }
    };
    txn.commit().map_err(inner.fail("commit marker"))?;
    Ok(held)
}

fn marker_remove(inner: &Inner, key: &str) -> Result<(), StoreError> {
    let txn = inner.db.begin_write().map_err(inner.fail("begin remove marker"))?;
    txn.open_table(MARKERS).map_err(inner.fail("open markers"))?.remove(key).map_err(inner.fail("remove marker"))?;
    txn.commit().map_err(inner.fail("commit remove marker"))
}

#[async_trait]
impl PairingStore for EmbeddedStore {
    async fn create_pairing(
        &self,
        tenant: &TenantId,
        provider: &str,
        external_id: &str,
        display_name: &str,
        ttl: Duration,
    ) -> Result<Pairing, StoreError> {
        check_new(provider, external_id, ttl)?;
        let (t, p, e, d) = (tenant.clone(), provider.to_string(), external_id.to_string(), display_name.to_string());
        self.run("create pairing", move |inner| create(inner, &t, &p, &e, &d, ttl)).await
    }

    async fn list_pairings(&self, tenant: &TenantId) -> Result<Vec<Pairing>, StoreError> {
        let t = tenant.clone();
        let mut all = self.run("list pairings", move |inner| tenant_pairings(inner, &t)).await?;
        let now = now_unix_ms();
        all.retain(|p| p.expires_unix_ms > now);
        all.sort_by(|a, b| (a.created_unix_ms, &a.code).cmp(&(b.created_unix_ms, &b.code)));
        Ok(all)
    }

    async fn take_pairing(&self, tenant: &TenantId, code: &str) -> Result<Option<Pairing>, StoreError> {
        let code = normalize_code(code)?;
        let t = tenant.clone();
        self.run("take pairing", move |inner| take(inner, &t, &code)).await
    }
}

#[async_trait]
impl MarkerStore for EmbeddedStore {
    async fn claim_marker(&self, key: &str, value: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        check_marker(key, Some(ttl))?;
        let (k, v) = (key.to_string(), value.to_string());
        self.run("claim marker", move |inner| marker_set(inner, &k, &v, ttl, true)).await
    }

    async fn put_marker(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        check_marker(key, Some(ttl))?;
        let (k, v) = (key.to_string(), value.to_string());
        self.run("put marker", move |inner| marker_set(inner, &k, &v, ttl, false).map(|_| ())).await
    }

    async fn get_marker(&self, key: &str) -> Result<Option<String>, StoreError> {
        check_marker(key, None)?;
        let k = key.to_string();
        self.run("read marker", move |inner| marker_get(inner, &k)).await
    }

    async fn remove_marker(&self, key: &str) -> Result<(), StoreError> {
        check_marker(key, None)?;
        let k = key.to_string();
        self.run("remove marker", move |inner| marker_remove(inner, &k)).await
    }
}
